"""``container:``, ``hf-home`` and ``offline`` in clusters.yaml: checked where written, and
each error names the field's path and the fix in one line."""

from __future__ import annotations

from pathlib import Path

import pytest

from hpclaunch.config import load_clusters
from hpclaunch.errors import UserError


def clusters(tmp_path: Path, body: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HPCLAUNCH_HOME", str(tmp_path))
    (tmp_path / "config").mkdir(exist_ok=True)
    (tmp_path / "config" / "clusters.yaml").write_text("clusters:\n  c:\n" + body)


def test_a_container_profile_is_read_into_checked_keys(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    clusters(tmp_path, "    hf_home: /scratch/hf\n    offline: true\n"
                       "    container:\n      runtime: apptainer\n      image: /i/v.sif\n"
                       "      binds: [/scratch, '/models:/m:ro']\n      shm_size: 16g\n",
             monkeypatch)
    profile = load_clusters()[0]["c"]
    assert profile.hf_home == "/scratch/hf" and profile.offline is True
    assert profile.container == {"runtime": "apptainer", "image": "/i/v.sif",
                                 "binds": ("/scratch:/scratch", "/models:/m:ro"),
                                 "shm_size": "16G"}


@pytest.mark.parametrize(("body", "message"), [
    ("    container: {runtime: podman, image: [a]}\n",
     "clusters.c.container.image: expected an image"),
    ("    container: {runtime: rkt, image: a}\n", "clusters.c.container.runtime: expected one of"),
    ("    container: {runtime: podman, image: a, binds: [rel/dir]}\n",
     "clusters.c.container.binds: expected a bind SRC[:DST[:ro]]"),
    ("    container: {runtime: podman, image: a, binds: ['/a:/b:rx']}\n", "expected a bind"),
    ("    container: {runtime: podman, image: a, options: ['']}\n",
     "clusters.c.container.options: expected one runtime option"),
    ("    container: {runtime: podman, imgae: a}\n",
     "clusters.c.container.imgae: unknown key (did you mean 'image'?)"),
    ("    container: [podman]\n", "clusters.c.container: expected a mapping"),
    ("    hf-home: hf\n", "clusters.c.hf-home: expected an absolute path"),
    ("    hf-home: ~/hf\n", "clusters.c.hf-home: expected an absolute path"),
    ("    offline: yes please\n", "clusters.c.offline: expected true or false"),
])
def test_bad_values_are_one_line_errors_naming_the_field(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, body: str, message: str) -> None:
    clusters(tmp_path, body, monkeypatch)
    with pytest.raises(UserError) as err:
        load_clusters()
    assert message in str(err.value), str(err.value)
    assert "\n" not in str(err.value)
