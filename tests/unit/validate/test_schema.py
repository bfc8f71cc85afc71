"""The schemas of clusters.yaml and presets: structure and types by msgspec, values by
:mod:`hpclaunch.validate.units`, every error one line with the file and the field's path."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import msgspec
import pytest

from hpclaunch.config import ClusterProfile, load_clusters
from hpclaunch.errors import UserError
from hpclaunch.planning.presets import parse_preset
from hpclaunch.validate import schema


def test_the_cluster_schema_has_every_profile_field() -> None:
    """A field added to ClusterProfile must be writable in clusters.yaml (and the reverse)."""
    profile = {f.name for f in dataclasses.fields(ClusterProfile)} - {"name"}
    spec = {f.name for f in msgspec.structs.fields(schema.ClusterSpec)}
    assert profile == spec


def clusters(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str | bytes) -> Path:
    monkeypatch.setenv("HPCLAUNCH_HOME", str(tmp_path))
    path = tmp_path / "config" / "clusters.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return path


def test_a_good_profile_loads_with_its_types(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    clusters(tmp_path, monkeypatch, """
default: polaris
clusters:
  polaris:
    scheduler: pbs
    host: me@polaris
    account: 12345
    gpus_per_node: 4
    time-limit: 1:00:00
    mem: 64G
    filesystems: home:eagle
    env: {OMP_NUM_THREADS: 4}
    setup: [module load conda]
    vllm-command: python -m vllm.entrypoints.cli.main
""")
    profiles, default = load_clusters()
    polaris = profiles[default]
    assert (polaris.user, polaris.host, polaris.account) == ("me", "polaris", "12345")
    assert polaris.gpus_per_node == 4 and polaris.time_limit == "01:00:00"
    assert polaris.mem == "64gb" and polaris.env == {"OMP_NUM_THREADS": "4"}
    assert polaris.vllm_command == ["python", "-m", "vllm.entrypoints.cli.main"]


@pytest.mark.parametrize(("text", "error"), [
    ("clusters:\n  a: {gpus-per-node: four}\n",
     "clusters.a.gpus-per-node: expected a positive integer, got 'four'"),
    ("clusters:\n  a: {port: 70000}\n", "clusters.a.port: expected a port number 1-65535"),
    ("clusters:\n  a: {scheduler: sge}\n",
     "clusters.a.scheduler: expected one of local, slurm, pbs, got 'sge'"),
    ("clusters:\n  a: {pbs-dialect: moab}\n", "clusters.a.pbs-dialect: expected one of pbspro"),
    ("clusters:\n  a: {setup: [ok, {x: 1}]}\n", "clusters.a.setup[1]: expected a string"),
    ("clusters:\n  a: {env: {A: [1]}}\n", "clusters.a.env.A: expected a string or a number"),
    ("clusters:\n  a: {simulate: maybe}\n", "clusters.a.simulate: expected true or false"),
    ("clusters:\n  a: {vllm-command: \"vllm 'serve\"}\n", "clusters.a.vllm-command: cannot split"),
    ("clusters:\n  1: {}\n", "clusters: keys must be strings"),
    ("clusters: {}\ndefault: [a]\n", "default: expected a string"),
    ("clusters: {}\nextra: 1\n", "extra: unknown key"),
    ("default: nowhere\n", "default cluster 'nowhere' is not defined"),
])
def test_bad_clusters_yaml_is_one_line_with_the_path(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch,
                                                     text: str, error: str) -> None:
    path = clusters(tmp_path, monkeypatch, text)
    with pytest.raises(UserError) as err:
        load_clusters()
    message = str(err.value)
    assert message.startswith(f"{path}: {error}"), message
    assert "\n" not in message


def test_unreadable_files_are_named(tmp_path: Path) -> None:
    folder = tmp_path / "clusters.yaml"
    folder.mkdir()
    with pytest.raises(UserError, match="is a directory, not a YAML file"):
        schema.read_yaml(folder)
    latin = tmp_path / "latin.yaml"
    latin.write_bytes(b"a: 1\nb: caf\xe9\n")
    with pytest.raises(UserError, match=r"latin.yaml:2: not UTF-8 text \(byte 0xe9\)"):
        schema.read_yaml(latin)
    broken = tmp_path / "broken.yaml"
    broken.write_text("a: [1,\n")
    with pytest.raises(UserError, match=r"broken.yaml:2: not valid YAML"):
        schema.read_yaml(broken)


def test_base_60_numbers_stay_text(tmp_path: Path) -> None:
    path = tmp_path / "t.yaml"
    path.write_text("a: 1:00:00\nb: 90:00\nc: 60\nd: 0.5\n")
    assert schema.read_yaml(path) == {"a": "1:00:00", "b": "90:00", "c": 60, "d": 0.5}


@pytest.mark.parametrize(("text", "error"), [
    ("vllm: [a, b]\n", "vllm: expected a mapping"),
    ("tags: 5\n", "tags: expected a list of strings, got 5"),
    ("tags: [a, 5]\n", "tags[1]: expected a string, got 5"),
    ("description: [x]\n", "description: expected a string"),
    ("requires: yes\n", "requires: expected a mapping"),
    ("layout: {dp: two}\n", "layout.dp: expected a positive integer, got 'two'"),
    ("layout: {ep: 2}\n", "layout.ep: unknown layout key"),
    ("vllm: {tensor-parallel-size: 0}\n", "vllm.tensor-parallel-size: expected a positive"),
    ("vllm: {gpu-memory-utilization: 0}\n", "vllm.gpu-memory-utilization: expected a fraction"),
    ("vllm: {max-num-seqs: -1}\n", "vllm.max-num-seqs: expected a positive integer, got -1"),
    ("- a\n", "expected a mapping"),
])
def test_bad_presets_are_one_line_with_the_path(tmp_path: Path, text: str, error: str) -> None:
    path = tmp_path / "mine.yaml"
    path.write_text(text)
    with pytest.raises(UserError) as err:
        parse_preset("mine", path)
    assert str(err.value).startswith(f"{path}: {error}"), str(err.value)
