"""Rendering: every value reaching bash is quoted; undefined variables are errors."""

from __future__ import annotations

import os
import shlex
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from hpclaunch.config import ClusterProfile
from hpclaunch.errors import UserError
from hpclaunch.planning.plan import build
from hpclaunch.planning.presets import load_preset
from hpclaunch.remote.transport import LocalTransport
from hpclaunch.schedulers.local import LocalScheduler
from hpclaunch.schedulers.render import render_template

HOSTILE = ["a'; echo pwned; '", 'a"=0"', "a\n0", "$(touch /tmp/hpclaunch-pwned)", "sp ace"]


def fake_vllm(tmp_path: Path) -> Path:
    """An executable that records its argv and environment key, then exits."""
    exe = tmp_path / "fake-vllm"
    exe.write_text(
        f"#!{sys.executable}\n"
        "import json, os, sys\n"
        "open(os.environ['ARGV_OUT'], 'w').write(json.dumps({'argv': sys.argv[1:],"
        " 'key': os.environ.get('VLLM_API_KEY')}))\n"
    )
    exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    return exe


@pytest.mark.parametrize("weird", HOSTILE)
def test_hostile_values_survive_as_data(tmp_path: Path, weird: str) -> None:
    results = tmp_path / f"res {weird[:3]}'x"
    results.mkdir()
    out = tmp_path / "argv.json"
    cluster = ClusterProfile(name="local", vllm_command=[str(fake_vllm(tmp_path))],
                             gpus_per_node=1, url_host="127.0.0.1", python=sys.executable,
                             env={"ARGV_OUT": str(out)})
    model_dir = tmp_path / "models" / weird
    model_dir.mkdir(parents=True)
    plan = build(model=str(model_dir), preset=load_preset("single-gpu"), cluster=cluster,
                 name="hostile", vllm_args=f"--chat-template {shlex.quote(weird)}")
    script = LocalScheduler(cluster, LocalTransport()).render(plan, str(results))
    subprocess.run(["bash", "-n"], input=script, text=True, check=True)
    (results / "hostile.key").write_text("the-key")
    path = results / "job.sh"
    path.write_text(script)
    proc = subprocess.run(["bash", str(path)], capture_output=True, text=True, timeout=60,
                          check=False)
    assert proc.returncode == 0, proc.stderr
    import json

    seen = json.loads(out.read_text())
    assert seen["argv"][:2] == ["serve", str(model_dir)]
    assert seen["argv"][seen["argv"].index("--chat-template") + 1] == weird
    assert seen["key"] == "the-key"
    assert "the-key" not in script
    assert not os.path.exists("/tmp/hpclaunch-pwned")
    assert (results / "hostile.exit").read_text().strip() == "0"


def test_undefined_template_variable_is_an_error() -> None:
    with pytest.raises(UserError, match="undefined"):
        render_template("local.sh.j2", {"name": "x"})


def test_time_limits_stay_as_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """YAML 1.1 reads 1:00:00 as 3600; --set and clusters.yaml must not turn it into hours."""
    from hpclaunch.config import load_clusters
    from hpclaunch.planning.plan import parse_assignments

    assert parse_assignments(["time-limit=1:00:00"]) == {"time-limit": "1:00:00"}
    assert parse_assignments(["max-num-seqs=64"]) == {"max-num-seqs": 64}
    monkeypatch.setenv("HPCLAUNCH_HOME", str(tmp_path))
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "clusters.yaml").write_text(
        "clusters:\n  c: {scheduler: slurm, time-limit: 1:30:00}\n")
    assert load_clusters()[0]["c"].time_limit == "1:30:00"
