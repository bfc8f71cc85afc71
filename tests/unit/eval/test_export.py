"""Specification of the exports (hpclaunch.eval.vf03_registry, vf04_configs, shell)
and the pure half of hpclaunch.eval.runner.

Registry merging, the 0.4 config shape, shell quoting, the reasoning rule and the
A/B table are pure functions of their inputs, so they are tested on canned
records. That vf-eval really reads what we write is checked twice: here with
verifiers' own registry loader, and end to end in tests/integration/eval/test_eval.py.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
from pathlib import Path

import pytest
import tomllib

from hpclaunch.endpoints.resolve import Endpoint, key_var
from hpclaunch.errors import UserError
from hpclaunch.eval.files import atomic_write
from hpclaunch.eval.measure import RunStats, compare_table, parse_metrics
from hpclaunch.eval.runner import build_command
from hpclaunch.eval.shell import env_text
from hpclaunch.eval.vf03_registry import merge_registry, split_registry, write_registry
from hpclaunch.eval.vf04_configs import v1_config, write_v1_dir
from hpclaunch.eval.vfeval import VfEval, generation_from_script, reasoning_max_tokens
from hpclaunch.registry import ENDED, FAILED, READY, STARTING, Record

USER_ENTRIES = """\
# my hosted models; hand-written, keep my comments
[[endpoint]]
endpoint_id = "gpt-mini"   # trailing comment
model = "openai/gpt-4.1-mini"
url = "https://api.openai.com/v1"
key = "OPENAI_API_KEY"
"""


def record(name: str, state: str = READY, port: int = 8001, args: tuple[str, ...] = (),
           **extra: object) -> Record:
    return Record(name=name, model="Qwen3-8B", model_id="Qwen/Qwen3-8B",
                  served_model_name=name, preset="single-gpu", cluster="local",
                  scheduler="local", state=state, host="127.0.0.1", port=port,
                  api_key=f"key-of-{name}", vllm_args=["--served-model-name", name, *args],
                  layout={"dp": 1, "tp": 1, "pp": 1}, **extra)  # type: ignore[arg-type]


def ep(name: str, *args: str, **extra: object) -> Endpoint:
    return Endpoint.from_record(record(name, args=args, **extra))


def entries(text: str) -> dict[str, dict]:
    return {e["endpoint_id"]: e for e in tomllib.loads(text).get("endpoint", [])}


# -- the 0.3.x registry --


def test_key_variable_names_are_shell_safe_and_predictable() -> None:
    assert key_var("qwen3-thinking") == "HPCLAUNCH_KEY_QWEN3_THINKING"
    assert key_var("q.v1_a") == "HPCLAUNCH_KEY_Q_V1_A"


def test_new_registry_has_one_entry_per_ready_endpoint_in_vf_eval_shape() -> None:
    text, result = merge_registry("", [ep("qa"), ep("qb", port=8002)],
                                  {"qa": record("qa"), "qb": record("qb", port=8002)})
    assert result.written == ["qa", "qb"] and not result.refused
    got = entries(text)
    assert got["qa"] == {"endpoint_id": "qa", "model": "qa", "url": "http://127.0.0.1:8001/v1",
                         "key": "HPCLAUNCH_KEY_QA"}
    assert got["qb"]["url"] == "http://127.0.0.1:8002/v1"
    assert "key-of-qa" not in text  # a variable name, never the key


def test_merge_keeps_the_users_entries_byte_for_byte() -> None:
    first, _ = merge_registry(USER_ENTRIES, [ep("qa")], {"qa": record("qa")})
    assert first.startswith(USER_ENTRIES)
    user_part, ours = split_registry(first)
    assert user_part.rstrip("\n") == USER_ENTRIES.rstrip("\n") and list(ours) == ["qa"]
    assert set(entries(first)) == {"gpt-mini", "qa"}
    # The user adds an entry after ours; the next export keeps it too.
    edited = first + '\n[[endpoint]]\nendpoint_id = "mine"\nmodel = "m"\nurl = "http://x/v1"\n' \
        'key = "K"\n'
    second, _ = merge_registry(edited, [ep("qa")], {"qa": record("qa")})
    assert set(entries(second)) == {"gpt-mini", "mine", "qa"}
    assert "# trailing comment" in second and "hand-written, keep my comments" in second


def test_merge_is_idempotent_even_with_user_text_after_our_blocks() -> None:
    records = {"qa": record("qa"), "qb": record("qb")}
    once, _ = merge_registry(USER_ENTRIES, [ep("qa"), ep("qb")], records)
    once += '\n[[endpoint]]\nendpoint_id = "late"\nmodel = "m"\nurl = "u"\nkey = "K"\n'
    twice, _ = merge_registry(once, [ep("qa"), ep("qb")], records)
    thrice, _ = merge_registry(twice, [ep("qa"), ep("qb")], records)
    assert thrice == twice
    assert "\n\n\n" not in thrice  # blank lines do not pile up


def test_entries_of_ended_failed_or_removed_endpoints_fail_closed_instead_of_vanishing() -> None:
    records = {"qa": record("qa"), "old": record("old"), "bad": record("bad"),
               "gone": record("gone")}
    text, _ = merge_registry(USER_ENTRIES, [ep(n) for n in records], records)
    records["old"].state = ENDED
    records["bad"].state, records["bad"].reason = FAILED, "CUDA out of memory"
    del records["gone"]
    text, result = merge_registry(text, [ep("qa")], records)
    assert result.refused == {"bad": FAILED, "gone": "UNKNOWN", "old": ENDED}
    assert "dropped" not in result.summary() and "bad FAILED" in result.summary()
    groups: dict[str, list[dict]] = {}
    for entry in tomllib.loads(text)["endpoint"]:
        groups.setdefault(entry["endpoint_id"], []).append(entry)
    assert set(groups) == {"gpt-mini", "qa", "old", "bad", "gone"}
    for name in ("old", "bad", "gone"):
        # Two models for one id: vf-eval 0.3.1 stops before any request and prints both.
        models = {e["model"] for e in groups[name]}
        assert len(groups[name]) == 2 and len(models) == 2
        assert {e["url"] for e in groups[name]} == {"http://127.0.0.1:9/v1"}
    assert any("FAILED (CUDA out of memory)" in m for m in (e["model"] for e in groups["bad"]))
    assert any("not known to hpclaunch" in e["model"] for e in groups["gone"])
    again, _ = merge_registry(text, [ep("qa")], records)
    assert again == text  # the refusal is stable; it does not pile up


def test_a_refused_name_works_again_once_it_is_ready() -> None:
    records = {"qa": record("qa", state=ENDED)}
    text, _ = merge_registry("", [], records)
    assert len(tomllib.loads(text)["endpoint"]) == 2
    records["qa"] = record("qa", port=8005)
    text, result = merge_registry(text, [ep("qa", port=8005)], records)
    assert result.written == ["qa"] and not result.refused
    assert entries(text)["qa"]["url"] == "http://127.0.0.1:8005/v1"


def test_failed_endpoints_never_exported_fail_closed_too_but_user_entries_win() -> None:
    user = '[[endpoint]]\nendpoint_id = "mine"\nmodel = "m"\nurl = "http://mine/v1"\nkey = "K"\n'
    records = {"qf": record("qf", state=FAILED), "mine": record("mine", state=ENDED)}
    text, result = merge_registry(user, [], records)
    assert result.refused == {"qf": FAILED}
    assert entries(text)["mine"]["url"] == "http://mine/v1"


def test_live_endpoint_that_is_not_ready_this_moment_keeps_its_entry() -> None:
    records = {"qa": record("qa")}
    text, _ = merge_registry("", [ep("qa")], records)
    records["qa"].state = STARTING  # e.g. one /health probe timed out
    records["qa"].port = 8009
    text, result = merge_registry(text, [], records)
    assert result.kept == ["qa"]
    assert entries(text)["qa"]["url"] == "http://127.0.0.1:8009/v1"  # rewritten from the record


def test_a_user_entry_with_the_same_id_wins_and_is_reported() -> None:
    user = '[[endpoint]]\nendpoint_id = "qa"\nmodel = "qa"\nurl = "http://mine/v1"\nkey = "K"\n'
    text, result = merge_registry(user, [ep("qa")], {"qa": record("qa")})
    assert [e["url"] for e in tomllib.loads(text)["endpoint"]] == ["http://mine/v1"]
    assert result.written == [] and "one of your own entries" in result.warnings[0]


def test_write_registry_replaces_atomically_and_leaves_a_broken_file_alone(tmp_path: Path) -> None:
    path = tmp_path / "configs" / "endpoints.toml"
    result = write_registry(path, [ep("qa")], {"qa": record("qa")})
    assert result.path == path and set(entries(path.read_text())) == {"qa"}
    assert not [p for p in path.parent.iterdir() if p.name != "endpoints.toml"]  # no temp left
    # vf-eval's -e DIR means DIR/endpoints.toml; so does ours.
    assert write_registry(path.parent, [ep("qa")], {"qa": record("qa")}).path == path
    broken = 'this is [not toml\n'
    path.write_text(broken)
    with pytest.raises(UserError, match="not valid TOML.*left untouched"):
        write_registry(path, [ep("qa")], {"qa": record("qa")})
    assert path.read_text() == broken


def test_a_block_missing_its_end_line_is_refused_not_guessed() -> None:
    text, _ = merge_registry(USER_ENTRIES, [ep("qa")], {"qa": record("qa")})
    cut = "\n".join(line for line in text.splitlines() if not line.startswith("# <<<"))
    with pytest.raises(UserError, match="has no '# <<< hpclaunch: endpoint qa' line"):
        merge_registry(cut, [ep("qa")], {"qa": record("qa")})


# -- the 0.4.x per-endpoint files --


SELF_HOSTED = {"agent": {"harness": {"id": "null"}, "runtime": {"type": "subprocess"}}}


def test_v1_config_has_the_structure_verifiers_0_4_reads() -> None:
    plain = tomllib.loads(v1_config(ep("qa")))
    assert plain == {"model": "qa", "push": False,
                     "client": {"base_url": "http://127.0.0.1:8001/v1",
                                "api_key_var": "HPCLAUNCH_KEY_QA"},
                     "env": SELF_HOSTED}  # = --env.agent.harness.id null ...runtime.type subprocess
    thinking = tomllib.loads(v1_config(ep("qt", "--reasoning-parser", "qwen3")))
    assert thinking["sampling"] == {"max_tokens": 32768}


def test_v1_dir_writes_ours_refuses_ended_ones_and_never_touches_user_files(
        tmp_path: Path) -> None:
    records = {"qa": record("qa"), "old": record("old")}
    write_v1_dir(tmp_path, [ep("qa"), ep("old")], records)
    (tmp_path / "mine.toml").write_text('model = "x"\n')
    (tmp_path / "qb.toml").write_text('model = "hand-made"\n')
    records["old"].state = ENDED
    records["qb"] = record("qb")
    result = write_v1_dir(tmp_path, [ep("qa"), ep("qb")], records)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "mine.toml", "old.toml", "qa.toml", "qb.toml"]
    assert result.refused == {"old": ENDED} and result.written == ["qa"]
    refused = tomllib.loads((tmp_path / "old.toml").read_text())
    # A key 0.4's config model forbids: it refuses the file and prints this text.
    assert "endpoint old is ENDED" in refused["hpclaunch_refused"]
    assert refused["client"]["base_url"] == "http://127.0.0.1:9/v1"
    assert (tmp_path / "qb.toml").read_text() == 'model = "hand-made"\n'
    assert "not written by hpclaunch" in result.warnings[0]


# -- shell exports --


def test_env_lines_survive_hostile_values_in_a_real_shell(tmp_path: Path) -> None:
    hostile = "k'ey\"; touch pwned; $(echo x) `id`"
    endpoint = Endpoint(name="qa", base_url="http://h:1/v1", model="m o'del", api_key=hostile,
                        state=READY)
    script = env_text(endpoint) + 'printf "%s\\n%s\\n%s" "$OPENAI_API_KEY" ' \
        '"$HPCLAUNCH_KEY_QA" "$HPCLAUNCH_MODEL"'
    out = subprocess.run(["bash", "-c", script], cwd=tmp_path, capture_output=True, text=True,
                         check=True).stdout
    assert out.split("\n") == [hostile, hostile, "m o'del"]
    assert not (tmp_path / "pwned").exists()
    assert "OPENAI_BASE_URL=http://h:1/v1" in env_text(endpoint)


# -- the reasoning rule and vf-eval arguments --

LEGACY = VfEval(path="vf-eval", generation="0.3")
V1 = VfEval(path="vf-eval", generation="0.4")
THINKING = ("--reasoning-parser", "qwen3", "--max-model-len", "40960")


def legacy_args(endpoint: Endpoint, *args: str, context: int | None = None) -> list[str]:
    cmd = build_command(endpoint, "my-env", list(args), LEGACY, Path("/w"), context=context)
    return cmd.argv


def test_plain_server_gets_the_registry_and_the_key_only_in_the_environment() -> None:
    cmd = build_command(ep("qa"), "my-env", ["-n", "2"], LEGACY, Path("/w"))
    assert cmd.argv == ["vf-eval", "my-env", "-m", "qa", "-e", "/w/endpoints.toml", "-n", "2"]
    assert cmd.env == {"HPCLAUNCH_KEY_QA": "key-of-qa"}
    assert "key-of-qa" not in " ".join(cmd.argv)
    assert entries(cmd.files[Path("/w/endpoints.toml")])["qa"]["key"] == "HPCLAUNCH_KEY_QA"


def test_reasoning_server_gets_use_think_false_and_32768_tokens() -> None:
    argv = legacy_args(ep("qt", *THINKING), "-n", "2")
    assert argv[argv.index("-t") + 1] == "32768"
    assert json.loads(argv[argv.index("-a") + 1]) == {"use_think": False}


def test_reasoning_rule_merges_with_the_users_env_args_and_keeps_their_max_tokens() -> None:
    argv = legacy_args(ep("qt", *THINKING), "--env-args", '{"difficulty": "hard"}', "-t", "4096")
    assert json.loads(argv[argv.index("-a") + 1]) == {"difficulty": "hard", "use_think": False}
    assert argv.count("-t") == 1 and argv[argv.index("-t") + 1] == "4096"
    assert "--env-args" not in argv


def test_use_think_true_against_a_reasoning_parser_is_refused() -> None:
    with pytest.raises(UserError, match="--reasoning-parser qwen3.*use_think.*<think>"):
        legacy_args(ep("qt", *THINKING), "-a", '{"use_think": true}')
    with pytest.raises(UserError, match="--reasoning-parser qwen3"):
        build_command(ep("qt", *THINKING), "t", ["--env.taskset.use_think", "true"], V1,
                      Path("/w"))


def test_max_tokens_the_server_would_reject_is_refused() -> None:
    with pytest.raises(UserError, match="-t/--max-tokens 65536 .* context of 40960"):
        legacy_args(ep("qt", *THINKING), "-t", "65536")
    with pytest.raises(UserError, match="-S max_tokens 50000"):
        legacy_args(ep("qt", *THINKING), "-S", '{"max_tokens": 50000}')


def test_default_max_tokens_fits_a_small_context() -> None:
    assert reasoning_max_tokens(ep("qt", *THINKING)) == 32768
    assert reasoning_max_tokens(ep("qt", "--reasoning-parser", "qwen3", "--max-model-len",
                                   "16384")) == 8192
    # The server's own report (/v1/models) wins over the flags.
    argv = legacy_args(ep("qt", *THINKING), context=4096)
    assert argv[argv.index("-t") + 1] == "2048"


def test_plain_server_gets_no_reasoning_arguments() -> None:
    argv = legacy_args(ep("qa"), "-a", '{"use_think": true}')
    assert argv[-2:] == ["-a", '{"use_think": true}'] and "-t" not in argv


@pytest.mark.parametrize("args", [["-m", "other"], ["--model=other"], ["-b", "http://x"],
                                  ["-e", "x.toml"], ["-kMY_KEY"], ["-p", "openai"]])
def test_options_hpclaunch_sets_are_refused_in_passthrough(args: list[str]) -> None:
    with pytest.raises(UserError, match="hpclaunch eval sets vf-eval's"):
        legacy_args(ep("qa"), *args)


def test_v1_command_uses_a_config_file_and_never_pushes_by_default() -> None:
    cmd = build_command(ep("qt", *THINKING), "my-taskset", ["-n", "2"], V1, Path("/w"))
    assert cmd.argv == ["vf-eval", "my-taskset", "@", "/w/qt.toml", "-n", "2", "--no-push"]
    config = tomllib.loads(cmd.files[Path("/w/qt.toml")])
    assert config["client"]["api_key_var"] == "HPCLAUNCH_KEY_QT"
    assert config["sampling"]["max_tokens"] == 32768
    pushed = build_command(ep("qa"), "t", ["--push"], V1, Path("/w")).argv
    assert "--no-push" not in pushed
    with pytest.raises(UserError, match="no -a/--env-args"):
        build_command(ep("qa"), "t", ["-a", "{}"], V1, Path("/w"))


def test_generation_is_read_from_the_console_script(tmp_path: Path) -> None:
    legacy = tmp_path / "old"
    legacy.write_text("#!/usr/bin/python\nfrom verifiers.legacy.scripts.eval import main\n")
    v1 = tmp_path / "new"
    v1.write_text("#!/usr/bin/python\nfrom verifiers.v1.cli.eval.main import main\n")
    other = tmp_path / "shim"
    other.write_text("#!/bin/sh\nexec uv run vf-eval \"$@\"\n")
    assert generation_from_script(str(legacy)) == "0.3"
    assert generation_from_script(str(v1)) == "0.4"
    assert generation_from_script(str(other)) is None


def test_installed_vf_eval_is_detected_as_its_generation() -> None:
    from importlib.metadata import version

    import verifiers  # noqa: F401 - a test dependency: missing means a broken install

    from hpclaunch.eval.vfeval import detect_vf_eval

    found = detect_vf_eval()
    assert found is not None and os.access(found.path, os.X_OK)
    assert found.version == version("verifiers")
    assert found.generation == ("0.4" if found.version >= "0.4" else "0.3")


# -- A/B measurements --

METRICS = """\
# HELP vllm:request_success_total Count of successfully processed requests.
# TYPE vllm:request_success_total counter
vllm:request_success_total{engine="0",finished_reason="stop",model_name="qa"} 7.0
vllm:request_success_total{engine="1",finished_reason="length",model_name="qa"} 3.0
vllm:generation_tokens_total{engine="0",model_name="qa"} 120.0 1700000000000
vllm:generation_tokens_total{engine="1",model_name="qa"} 80.0
vllm:num_requests_running{engine="0",model_name="qa"} 2.0
vllm:prompt_tokens_total 50
"""


def test_metrics_are_summed_over_engines_and_reasons() -> None:
    assert parse_metrics(METRICS) == {"requests": 10.0, "gen_tokens": 200.0,
                                      "prompt_tokens": 50.0, "running": 2.0}


def test_compare_table_puts_endpoints_side_by_side_with_a_ratio() -> None:
    runs = [RunStats("qwen-tp", "Qwen/Qwen3-8B", "dp1 tp4 pp1", 0, 12.0, 4.0, 100, 2000),
            RunStats("qwen-dp", "Qwen/Qwen3-8B", "dp4 tp1 pp1", 0, 9.0, 1.0, 100, 2000)]
    lines = compare_table(runs).splitlines()
    assert lines[0].split() == ["qwen-tp", "qwen-dp", "qwen-dp/qwen-tp"]
    rows = {line.split("  ")[0]: line.split() for line in lines[1:]}
    assert rows["layout"][-2:] == ["tp1", "pp1"] and "dp4" in rows["layout"]
    assert rows["requests/s"][-3:] == ["25.00", "100.00", "4.00x"]
    assert rows["gen tokens/s"][-3:] == ["500.0", "2,000.0", "4.00x"]
    assert rows["wall time s"][-3:] == ["12.0", "9.0", "0.75x"]


def test_exported_env_file_is_private(tmp_path: Path) -> None:

    target = tmp_path / "keys.sh"
    atomic_write(target, "export K=v\n", secret=True)
    assert stat.S_IMODE(target.stat().st_mode) == 0o600


def test_default_export_paths_are_absolute_wherever_hpclaunch_runs(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from hpclaunch.eval.export import default_path, usage_lines
    from hpclaunch.eval.files import ExportResult

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HPCLAUNCH_VF_ENDPOINTS", "relative/endpoints.toml")
    assert default_path("vf-eval") == tmp_path / "relative" / "endpoints.toml"
    monkeypatch.delenv("HPCLAUNCH_VF_ENDPOINTS")
    registry = default_path("vf-eval")
    assert registry is not None and registry.is_absolute() and registry.name == "endpoints.toml"
    assert default_path("json") is None  # stdout
    spaced = tmp_path / "my dir" / "endpoints.toml"
    lines = usage_lines(ExportResult(spaced, "vf-eval", written=["qa"]))
    assert lines[-1] == f"vf-eval ENV -m qa -e '{spaced}'"
    v04 = usage_lines(ExportResult(tmp_path, "vf-eval-v1", written=["qa", "qb"]))
    assert v04[1:] == [f"vf-eval TASKSET @ {tmp_path}/qa.toml",
                       f"vf-eval TASKSET @ {tmp_path}/qb.toml"]


def test_refused_env_text_fails_and_points_clients_nowhere() -> None:
    from hpclaunch.eval.shell import refused_env_text

    text = refused_env_text("no endpoint named 'x'\nsecond line $(rm -rf ~)", 3)
    lines = text.splitlines()
    assert lines[0].startswith("# hpclaunch env refused: no endpoint named 'x' second line")
    assert lines[1].endswith("(exit 3)") and "OPENAI_BASE_URL=http://127.0.0.1:9/v1" in lines[1]
    assert len(lines) == 2  # the message cannot break out of its comment
