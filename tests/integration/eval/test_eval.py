"""Eval tools use endpoints by name: real verifiers (vf-eval 0.3.x), real stand-in.

Every test drives the installed CLIs (``hpclaunch``, ``vf-eval``) as subprocesses
against ``hpclaunch submit --simulate`` servers; the stand-in records each request
it receives (HPCLAUNCH_STANDIN_RECORD), which is where the model name and the key
that really arrived are checked. The environment is tests/data/evalenv (dataset
built in code, no downloads). vf-eval costs seconds to start, so each run
evaluates 2 examples once (-n 2 -r 1) without its env server.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import HPC, hpclaunch_argv, require

pytestmark = pytest.mark.vfeval

REPO = Path(__file__).resolve().parents[3]
EVALENV = REPO / "tests" / "data" / "evalenv"
ENV_ID = "hpclaunch-echo-env"
FAST = ["-n", "2", "-r", "1", "-c", "2", "--disable-tui", "--disable-env-server"]
# The test environment parses <think> tags unless told otherwise (like many real ones), and a
# server without --reasoning-parser sends none, so plain runs say use_think false themselves.
PLAIN = [*FAST, "-a", '{"use_think": false}']
INSTALL = ".venv/bin/pip install 'verifiers==0.3.1' datasets"


def vf_eval_path() -> Path:
    return Path(sys.executable).with_name("vf-eval")


@pytest.fixture
def vf(hpc: HPC, tmp_path: Path) -> Path:
    """hpclaunch with vf-eval available and the test environment importable."""
    path = vf_eval_path()
    require(path.exists(), "verifiers (vf-eval)", INSTALL)
    hpc.env["PYTHONPATH"] = os.pathsep.join(
        [str(EVALENV), *filter(None, [hpc.env.get("PYTHONPATH")])])
    hpc.env["HPCLAUNCH_EVALENV_RECORD"] = str(tmp_path / "env_args.jsonl")
    return path


def serve(hpc: HPC, tmp_path: Path, name: str, *extra: str, model: str = "Qwen3-VL-2B",
          preset: str = "single-gpu", ok: bool = True) -> Path:
    """Submit a stand-in server that records its requests; wait for READY."""
    record = tmp_path / f"{name}.requests.jsonl"
    hpc("submit", model, "--preset", preset, "--scheduler", "local", "--simulate",
        "--name", name, "--env", f"HPCLAUNCH_STANDIN_RECORD={record}", *extra,
        "--wait", "--timeout", "60", ok=ok)
    return record


def chat_requests(record: Path) -> list[dict]:
    if not record.exists():
        return []
    lines = [json.loads(line) for line in record.read_text().splitlines() if line.strip()]
    return [r for r in lines if r["path"] == "/v1/chat/completions"]


def results(out: Path) -> tuple[dict, list[dict]]:
    """vf-eval's saved metadata and rollouts (-s -o OUT)."""
    (meta,) = out.rglob("metadata.json")
    rollouts = [json.loads(line) for line in
                meta.with_name("results.jsonl").read_text().splitlines()]
    return json.loads(meta.read_text()), rollouts


def env_args_seen(tmp_path: Path) -> list[dict]:
    path = tmp_path / "env_args.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def assert_served_by(record: Path, hpc: HPC, name: str, count: int = 2) -> None:
    requests = chat_requests(record)
    key = hpc.registry()[name]["api_key"]
    assert len(requests) == count
    assert {r["model"] for r in requests} == {name}
    assert {r["authorization"] for r in requests} == {f"Bearer {key}"}


USER_ENTRY = """\
# my own entry, kept by hpclaunch export
[[endpoint]]
endpoint_id = "hosted"
model = "openai/gpt-4.1-mini"
url = "https://api.openai.com/v1"
key = "OPENAI_API_KEY"
"""


def test_vf_eval_finds_the_exported_name_and_sends_its_model_and_key(
        hpc: HPC, vf: Path, tmp_path: Path) -> None:
    record = serve(hpc, tmp_path, "qa")
    work = tmp_path / "project"
    registry = work / "configs" / "endpoints.toml"
    registry.parent.mkdir(parents=True)
    registry.write_text(USER_ENTRY)
    hpc("export", "--format", "vf-eval", "--path", str(registry))
    text = registry.read_text()
    assert text.startswith(USER_ENTRY) and 'endpoint_id = "qa"' in text
    assert hpc.registry()["qa"]["api_key"] not in text

    # The guides' workflow: keys from `hpclaunch env --all`, then plain vf-eval -m NAME.
    hpclaunch = " ".join(hpclaunch_argv())
    script = (f'eval "$({hpclaunch} env --all)" && exec {vf} {ENV_ID} -m qa '
              f'-e configs/endpoints.toml {shlex.join(PLAIN)} -s -o out')
    proc = subprocess.run(["bash", "-c", script], cwd=work, env=hpc.env, capture_output=True,
                          text=True, timeout=180, check=False)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert_served_by(record, hpc, "qa")
    meta, rollouts = results(work / "out")
    rec = hpc.registry()["qa"]
    assert (meta["model"], meta["base_url"]) == ("qa", f"http://{rec['host']}:{rec['port']}/v1")
    assert [r["reward"] for r in rollouts] == [1.0, 1.0]  # the server got the questions


def test_hpclaunch_eval_runs_vf_eval_with_the_key_only_in_its_environment(
        hpc: HPC, vf: Path, tmp_path: Path) -> None:
    record = serve(hpc, tmp_path, "qa")
    out = hpc("eval", "qa", ENV_ID, *PLAIN, "-s", "-o", str(tmp_path / "out"), timeout=180)
    assert_served_by(record, hpc, "qa")
    _, rollouts = results(tmp_path / "out")
    assert [r["reward"] for r in rollouts] == [1.0, 1.0]
    key = hpc.registry()["qa"]["api_key"]
    assert "running (verifiers 0.3" in out.stderr and key not in out.stderr + out.stdout
    assert not any(k.startswith("HPCLAUNCH_KEY_") for k in hpc.env)  # nobody exported it

    dry = hpc("eval", "qa", ENV_ID, "-n", "2", "--dry-run")
    assert f"{ENV_ID} -m qa -e " in dry.stdout and key not in dry.stdout + dry.stderr


def test_eval_refuses_names_that_are_unknown_failed_ended_or_never_ready(
        hpc: HPC, vf: Path, tmp_path: Path) -> None:
    record = serve(hpc, tmp_path, "qa")
    typo = hpc("eval", "qaa", ENV_ID, *FAST, ok=False)
    assert "no endpoint named 'qaa'" in typo.stderr and "did you mean qa" in typo.stderr

    serve(hpc, tmp_path, "oom", "--env", "HPCLAUNCH_STANDIN_FAIL=oom", ok=False)
    failed = hpc("eval", "oom", ENV_ID, *FAST, ok=False)
    assert "'oom' is FAILED" in failed.stderr and "out of memory" in failed.stderr.lower()

    hpc("submit", "Qwen3-VL-2B", "--preset", "single-gpu", "--scheduler", "local",
        "--simulate", "--name", "slow", "--env", "HPCLAUNCH_STANDIN_STARTUP_DELAY=60")
    slow = hpc("eval", "slow", ENV_ID, *FAST, "--wait-timeout", "2", ok=False)
    assert "waiting for slow" in slow.stderr and "after 2 s" in slow.stderr
    hpc("env", "slow", ok=False)

    hpc("stop", "qa")
    ended = hpc("eval", "qa", ENV_ID, *FAST, ok=False)
    assert "'qa' is ENDED" in ended.stderr
    assert "is ENDED" in hpc("env", "qa", ok=False).stderr
    assert chat_requests(record) == []  # vf-eval never ran
    assert env_args_seen(tmp_path) == []


def test_reasoning_server_gets_use_think_false_and_32768_tokens(
        hpc: HPC, vf: Path, tmp_path: Path) -> None:
    record = serve(hpc, tmp_path, "qt", "--set", "reasoning-parser=qwen3",
                   "--set", "max-model-len=40960", model="Qwen3-VL-2B-Thinking")
    out = hpc("eval", "qt", ENV_ID, *FAST, "-s", "-o", str(tmp_path / "out"), timeout=180)
    assert "use_think false, max tokens 32768" in out.stderr
    assert env_args_seen(tmp_path) == [{"use_think": False}]
    meta, rollouts = results(tmp_path / "out")
    assert meta["sampling_args"]["max_tokens"] == 32768
    assert [r["reward"] for r in rollouts] == [1.0, 1.0]  # the server accepted 32768
    assert_served_by(record, hpc, "qt")

    think = hpc("eval", "qt", ENV_ID, *FAST, "-a", '{"use_think": true}', ok=False)
    assert "--reasoning-parser qwen3" in think.stderr and "<think>" in think.stderr
    assert len(think.stderr.strip().splitlines()) == 1
    too_long = hpc("eval", "qt", ENV_ID, *FAST, "-t", "40960", ok=False)
    assert "context of 40960 tokens" in too_long.stderr
    assert len(chat_requests(record)) == 2  # the refused runs sent nothing


def test_small_context_reasoning_server_gets_a_max_tokens_it_accepts(
        hpc: HPC, vf: Path, tmp_path: Path) -> None:
    serve(hpc, tmp_path, "qs", "--set", "reasoning-parser=qwen3",
          "--set", "max-model-len=8192", model="Qwen3-VL-2B-Thinking")
    dry = hpc("eval", "qs", ENV_ID, "--dry-run")
    assert " -t 4096 " in dry.stdout  # the server's /v1/models says 8192


def test_ab_compare_prints_a_side_by_side_table(hpc: HPC, vf: Path, tmp_path: Path) -> None:
    rec_a = serve(hpc, tmp_path, "qa")
    rec_b = serve(hpc, tmp_path, "qb", preset="dp4-throughput")
    out = hpc("eval", "qa", ENV_ID, *PLAIN, "--compare", "qb", timeout=300)
    lines = out.stdout.splitlines()  # vf-eval's own output first, the table last
    header = [i for i, line in enumerate(lines) if line.split() == ["qa", "qb", "qb/qa"]]
    assert len(header) == 1, out.stdout[-3000:]
    rows = {line.split("  ")[0]: line.split() for line in lines[header[0] + 1:]}
    assert "dp1" in rows["layout"] and "dp4" in rows["layout"]
    assert rows["requests"][-3:] == ["2", "2", "1.00x"]  # counted by the servers
    for label in ("wall time s", "requests/s", "gen tokens/s"):
        a, b = rows[label][-3:-1]
        assert float(a.replace(",", "")) > 0 and float(b.replace(",", "")) > 0
    assert_served_by(rec_a, hpc, "qa")
    assert_served_by(rec_b, hpc, "qb")


def test_submit_and_wait_export_keep_the_registry_current(hpc: HPC, tmp_path: Path) -> None:
    registry = tmp_path / "configs" / "endpoints.toml"
    registry.parent.mkdir()
    registry.write_text(USER_ENTRY)
    hpc.env["HPCLAUNCH_VF_ENDPOINTS"] = str(registry)
    sub = hpc("submit", "Qwen3-VL-2B", "--preset", "single-gpu", "--scheduler", "local",
              "--simulate", "--name", "qa", "--export")
    assert "qa is added once READY: hpclaunch wait qa --export" in sub.stderr
    hpc("wait", "qa", "--timeout", "60", "--export")
    text = registry.read_text()
    assert text.startswith(USER_ENTRY) and 'endpoint_id = "qa"' in text

    hpc("stop", "qa")
    refused = hpc("export", "--path", str(registry))
    assert "fail closed (vf-eval stops on these names): qa ENDED" in refused.stderr
    assert f"vf-eval ENV -m NAME -e {registry}" in refused.stdout
    text = registry.read_text()
    assert text.startswith(USER_ENTRY) and "refused by hpclaunch: endpoint qa is ENDED" in text


def test_env_gives_an_openai_client_everything_it_needs(hpc: HPC, tmp_path: Path) -> None:
    import openai  # noqa: F401 - a test dependency: missing means a broken install
    record = serve(hpc, tmp_path, "qa")
    client = ("import os, openai; c = openai.OpenAI(); r = c.chat.completions.create("
              "model=os.environ['HPCLAUNCH_MODEL'], max_tokens=16, "
              "messages=[{'role': 'user', 'content': 'ping pong'}]); "
              "print(r.choices[0].message.content)")
    script = f'eval "$({" ".join(hpclaunch_argv())} env qa)" && exec {sys.executable} -c "{client}"'
    proc = subprocess.run(["bash", "-c", script], env=hpc.env, capture_output=True, text=True,
                          timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "ping pong" in proc.stdout
    assert_served_by(record, hpc, "qa", count=1)


def test_verifiers_own_loader_reads_a_merged_registry(hpc: HPC, vf: Path,
                                                      tmp_path: Path) -> None:
    serve(hpc, tmp_path, "qa")
    registry = tmp_path / "endpoints.toml"
    registry.write_text(USER_ENTRY)
    hpc("export", "--path", str(registry))
    code = ("import sys, json; from verifiers.legacy.utils.eval_utils import load_endpoints; "
            "e = load_endpoints(sys.argv[1]); "
            "print(json.dumps({k: [[x.model, x.base_url, x.api_key_var] for x in v] "
            "for k, v in e.items()}))")
    proc = subprocess.run([sys.executable, "-c", code, str(registry)], capture_output=True,
                          text=True, timeout=60, check=True)
    loaded = json.loads(proc.stdout.strip().splitlines()[-1])
    rec = hpc.registry()["qa"]
    assert loaded == {
        "hosted": [["openai/gpt-4.1-mini", "https://api.openai.com/v1", "OPENAI_API_KEY"]],
        "qa": [["qa", f"http://{rec['host']}:{rec['port']}/v1", "HPCLAUNCH_KEY_QA"]],
    }


def vf04_venv() -> Path | None:
    """The cached verifiers 0.4 venv (tests/data/evalenv/make_vf04_venv.sh builds it)."""
    path = Path(os.environ.get("HPCLAUNCH_VF04_VENV", REPO / ".venv-vf04"))
    return path if (path / ".complete").exists() else None


def test_verifiers_0_4_runs_from_the_per_endpoint_config(hpc: HPC, tmp_path: Path) -> None:
    venv = vf04_venv()
    # 0.4 cannot share the test venv with 0.3; scripts/test.sh builds this one.
    require(venv is not None, "a verifiers 0.4 venv",
            "bash tests/data/evalenv/make_vf04_venv.sh .venv-vf04 "
            "and HPCLAUNCH_VF04_VENV=.venv-vf04")
    assert venv is not None
    hpc.env["PYTHONPATH"] = os.pathsep.join(  # keep the hpclaunch under test importable
        [str(EVALENV), *filter(None, [hpc.env.get("PYTHONPATH")])])
    record = serve(hpc, tmp_path, "qt", "--set", "reasoning-parser=qwen3",
                   "--set", "max-model-len=40960", model="Qwen3-VL-2B-Thinking")
    local = ["-n", "2", "-r", "1", "--no-rich"]  # out of the box: no harness/runtime flags
    vf = str(venv / "bin" / "vf-eval")
    out = hpc("eval", "--vf-eval", vf, "qt", "hpclaunch-echo-taskset", *local,
              "-o", str(tmp_path / "out"), timeout=240)
    assert "(verifiers 0.4.x)" in out.stderr and " @ " in out.stderr and "--no-push" in out.stderr
    (resolved,) = (tmp_path / "out").rglob("configs/resolved/eval.json")
    config = json.loads(resolved.read_text())
    rec = hpc.registry()["qt"]
    assert config["model"] == "qt" and config["push"] is False
    assert config["client"]["base_url"] == f"http://{rec['host']}:{rec['port']}/v1"
    assert config["client"]["api_key_var"] == "HPCLAUNCH_KEY_QT"
    assert config["sampling"]["max_tokens"] == 32768
    assert (config["env"]["agent"]["harness"]["id"],
            config["env"]["agent"]["runtime"]["type"]) == ("null", "subprocess")
    (traces,) = (tmp_path / "out").rglob("traces.jsonl")
    scores = [json.loads(line)["traces"][0]["rewards"]["echoed"]["score"]
              for line in traces.read_text().splitlines()]
    assert scores == [1.0, 1.0]
    assert_served_by(record, hpc, "qt")

    think = hpc("eval", "--vf-eval", vf, "qt", "hpclaunch-echo-taskset",
                "--env.taskset.use_think", "true", ok=False)
    assert "--reasoning-parser qwen3" in think.stderr

    # The plain flow: the exported file, the command export prints, no extra flags.
    exported = hpc("export", "--format", "vf-eval-v1")
    command = [x for x in exported.stdout.splitlines() if x.startswith("vf-eval TASKSET @ ")]
    assert command == [f"vf-eval TASKSET @ {hpc.home / 'exports' / 'vf04' / 'qt.toml'}"]
    keys = f'eval "$({" ".join(hpclaunch_argv())} env --all)"'
    run = (command[0].replace("vf-eval TASKSET", f"{vf} hpclaunch-echo-taskset", 1)
           + " " + shlex.join([*local, "-o", str(tmp_path / "plain")]))
    plain = subprocess.run(["bash", "-c", f"{keys} && {run}"], cwd=tmp_path, env=hpc.env,
                           capture_output=True, text=True, timeout=240, check=False)
    assert plain.returncode == 0, plain.stderr[-3000:]
    assert len(chat_requests(record)) == 4

    hpc("stop", "qt")
    hpc("export", "--format", "vf-eval-v1")
    refused = subprocess.run(["bash", "-c", f"{keys}; {run}"], cwd=tmp_path, env=hpc.env,
                             capture_output=True, text=True, timeout=120, check=False)
    assert refused.returncode != 0
    assert "endpoint qt is ENDED" in refused.stdout + refused.stderr
    assert "pinference" not in refused.stdout + refused.stderr
    assert len(chat_requests(record)) == 4
