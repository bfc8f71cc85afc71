"""vllm serve flags: what each vLLM version accepts, and what we say about the rest."""

from __future__ import annotations

import json
import shlex

import pytest

from hpclaunch.errors import UserError
from hpclaunch.vllm.flags.argparser import build_serve_parser, parse_serve_args
from hpclaunch.vllm.flags.catalogue import (
    available_versions,
    flag_spec,
    known_flags,
    serve_defaults,
)
from hpclaunch.vllm.flags.check import REMOVED, FlagProblem, check_args
from hpclaunch.vllm.flags.values import human_readable_int


def problems(cmdline: str, version: str = "0.33.0") -> list[FlagProblem]:
    return check_args(shlex.split(cmdline), version)


def only(cmdline: str, version: str = "0.33.0") -> FlagProblem:
    found = problems(cmdline, version)
    assert len(found) == 1, found
    return found[0]


# ----------------------------------------------------------------- snapshots


def test_both_bundled_versions_load_and_differ() -> None:
    assert {"0.11.0", "0.33.0"} <= set(available_versions())
    new, old = known_flags("0.33.0"), known_flags("0.11.0")
    assert "--kv-offloading-size" in new and "--kv-offloading-size" not in old
    assert "--swap-space" in old and "--swap-space" not in new
    for flag in ("--tensor-parallel-size", "--data-parallel-size", "--max-model-len",
                 "--gpu-memory-utilization", "--reasoning-parser", "--speculative-config",
                 "--api-server-count", "--served-model-name", "--enforce-eager"):
        assert flag in new and flag in old


def test_known_flags_are_long_names_only() -> None:
    flags = known_flags()
    assert all(f.startswith("--") for f in flags)
    assert "-tp" not in flags and "--no-enforce-eager" not in flags
    assert len(flags) > 300


def test_a_short_version_means_that_minor_release_and_others_are_refused() -> None:
    assert known_flags("0.33") == known_flags("v0.33.0")
    with pytest.raises(UserError, match="0.11.0, 0.33.0"):
        known_flags("0.10.2")


def test_defaults_come_from_the_snapshot() -> None:
    assert serve_defaults()["gpu_memory_utilization"] == 0.92  # 0.9 before 0.33
    assert serve_defaults("0.11.0")["api_server_count"] == 1
    assert serve_defaults()["api_server_count"] is None  # 0.33: defaults to the DP size


# ----------------------------------------------------------------- accepted spellings


@pytest.mark.parametrize("cmdline", [
    "Qwen/Qwen3-8B --tensor-parallel-size 2 --max-model-len 32768",
    "-tp 2 -dp=4 --api-server-count 1",
    "--max_model_len=32k --gpu_memory_utilization 0.95",      # underscores, =, 32k
    "--enforce-eager --no-enable-prefix-caching --disable-chunked-prefill",
    "--enable-prefix --max-num-seq 64",                        # unambiguous prefixes
    "--served-model-name qwen-a qwen-b --port 8001",           # nargs=+
    "--max-model-len auto --max-num-batched-tokens 8k",
    "--speculative-config '{\"model\": \"draft\", \"num_speculative_tokens\": 5}'",
    "--compilation-config.cudagraph_mode FULL --compilation-config '{\"level\": 3}'",
    "--reasoning-parser deepseek_r1 --kv-cache-dtype fp8 -q awq",
    "--device-memory-utilization 0.9 --headless -dpa 10.0.0.1 -dpl 4 -dpr 4",
])
def test_what_vllm_accepts_raises_no_problem(cmdline: str) -> None:
    assert problems(cmdline) == []


def test_every_snapshot_option_string_is_accepted_by_the_parser() -> None:
    # "Exactly the flags of that version": every name, alias and negation parses.
    parser = build_serve_parser("0.33.0", raise_errors=True)
    for flag in sorted(known_flags("0.33.0")):
        spec = flag_spec(flag)
        assert spec is not None and spec.name == flag
        for option in (spec.name, *spec.aliases, *spec.negations):
            argv = [option] if spec.kind != "value" else [option, _sample_value(spec)]
            parser.parse_args(argv)


def _sample_value(spec: object) -> str:
    choices = getattr(spec, "choices", None)
    if choices:
        return choices[0]
    kind = str(getattr(spec, "type", ""))
    if "json" in kind:
        return "{}"
    if "int" in kind or "float" in kind:
        return "1"
    return "x"


# ----------------------------------------------------------------- removed flags


@pytest.mark.parametrize("flag", sorted(REMOVED))
def test_every_removed_flag_is_reported_with_a_hint(flag: str) -> None:
    problem = only(f"{flag} 4")
    assert problem.flag == flag
    assert flag in problem.message
    assert REMOVED[flag] in problem.message


def test_removed_flags_from_the_guides_come_with_their_replacement() -> None:
    assert only("--swap-space 4").suggestion == "--kv-offloading-size <GiB>"
    assert only("--quantized-kv-cache").suggestion == "--kv-cache-dtype fp8"
    assert "never existed" in only("--quantized-kv-cache").message
    assert "--reasoning-parser" in (only("--enable-reasoning").suggestion or "")
    for flag in ("--calculate-kv-scales", "--num-scheduler-steps", "--max-seq-len-to-capture",
                 "--preemption-mode"):
        assert "removed" in only(f"{flag} 1").message


def test_speculative_flags_become_one_speculative_config_json() -> None:
    found = problems("--speculative-model Qwen/Qwen3-0.6B --num-speculative-tokens 5")
    assert [p.flag for p in found] == ["--speculative-model", "--num-speculative-tokens"]
    suggestion = found[0].suggestion or ""
    assert suggestion.startswith("--speculative-config ")
    body = json.loads(shlex.split(suggestion)[1])
    assert body == {"model": "Qwen/Qwen3-0.6B", "num_speculative_tokens": 5}
    # ...and the suggested flag itself passes the check.
    assert problems(suggestion) == []


def test_a_flag_removed_later_is_still_fine_for_the_older_version() -> None:
    assert problems("--swap-space 4", "0.11.0") == []
    assert "0.11.0" in only("--disable-mm-preprocessor-cache", "0.33.0").message


# ----------------------------------------------------------------- near misses


def test_a_misspelt_flag_gets_did_you_mean() -> None:
    problem = only("--gpu-memory-utilisation 0.9")
    assert problem.suggestion == "--gpu-memory-utilization"
    assert "did you mean" in problem.message


def test_an_ambiguous_prefix_is_an_error_like_argparses() -> None:
    problem = only("--enable-p")
    assert "ambiguous" in problem.message
    assert "--enable-prefix-caching" in problem.message


def test_no_form_of_a_plain_switch_does_not_exist() -> None:
    assert "no --no- form" in only("--no-headless").message


def test_a_switch_given_a_value_is_refused() -> None:
    assert "takes no value" in only("--enforce-eager=true").message


@pytest.mark.parametrize("cmdline, fragment", [
    ("-tp two", "whole number"),
    ("--max-model-len 32x", "32k"),
    ("--gpu-memory-utilization high", "number"),
    ("--speculative-config '{model: draft}'", "valid JSON"),
    ("--dtype bf16", "bfloat16"),
    ("--max-model-len", "expects a value"),
])
def test_values_are_checked_like_vllms_types(cmdline: str, fragment: str) -> None:
    problem = only(cmdline)
    assert fragment in str(problem)


def test_the_guides_reasoning_parser_name_is_corrected() -> None:
    problem = only("--reasoning-parser deepseek-r1")
    assert problem.suggestion == "--reasoning-parser deepseek_r1"


def test_a_stray_positional_after_the_model_is_reported() -> None:
    problem = only("Qwen/Qwen3-8B --enforce-eager 4")
    assert problem.flag == "4"


# ----------------------------------------------------------------- the parser itself


def test_an_unknown_flag_exits_2_with_vllms_own_message(capsys: pytest.CaptureFixture[str]
                                                        ) -> None:
    parser = build_serve_parser()
    with pytest.raises(SystemExit) as exit_info:
        parser.parse_args(["Qwen/Qwen3-8B", "--swap-space", "4"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.splitlines()[-1] == "vllm serve: error: unrecognized arguments: --swap-space 4"


def test_parse_serve_args_reports_only_what_was_set() -> None:
    args = parse_serve_args(shlex.split(
        "Qwen/Qwen3-8B -tp 2 --no-enable-prefix-caching --served_model_name a b "
        "--max-model-len=32k --enforce-eager --compilation-config.cudagraph_mode FULL"))
    assert args == {
        "model_tag": "Qwen/Qwen3-8B",
        "tensor_parallel_size": "2",
        "enable_prefix_caching": False,
        "served_model_name": ["a", "b"],
        "max_model_len": "32k",
        "enforce_eager": True,
        "compilation_config": '{"cudagraph_mode": "FULL"}',
    }


def test_the_gpu_memory_alias_shares_its_dest() -> None:
    assert parse_serve_args(["--device-memory-utilization", "0.8"]) == \
        {"gpu_memory_utilization": "0.8"}


def test_parse_serve_args_raises_a_user_error_with_the_hint() -> None:
    with pytest.raises(UserError) as err:
        parse_serve_args(["Qwen/Qwen3-8B", "--num-scheduler-steps", "8"])
    message = str(err.value)
    assert "unrecognized arguments: --num-scheduler-steps 8" in message
    assert "removed" in message


def test_human_readable_ints_follow_vllm_lower_decimal_upper_binary() -> None:
    assert human_readable_int("32k") == 32_000
    assert human_readable_int("32K") == 32_768
    assert human_readable_int("1.5m") == 1_500_000
    assert human_readable_int("2G") == 2 * 1024**3
    assert human_readable_int("40960") == 40_960
    with pytest.raises(ValueError):
        human_readable_int("1.5K")


def test_vllm_0_11_switches_have_only_the_no_form() -> None:
    # 0.11 used argparse's BooleanOptionalAction: --no-enable-prefix-caching, but no
    # --disable-prefix-caching (0.33's EnableDisableAction added that pair).
    problem = only("--disable-prefix-caching", "0.11.0")
    assert "--no-enable-prefix-caching" in str(problem)
    assert problem.suggestion == "--no-enable-prefix-caching"
    assert problems("--no-enable-prefix-caching", "0.11.0") == []
    assert problems("--disable-prefix-caching", "0.33.0") == []


def test_reasoning_parsers_are_checked_against_the_version_that_runs() -> None:
    assert problems("--reasoning-parser qwen3", "0.11.0") == []
    assert "not a registered reasoning parser" in str(only("--reasoning-parser deepseek_v3",
                                                           "0.11.0"))
    assert problems("--reasoning-parser deepseek_v3", "0.33.0") == []


def test_max_model_len_auto_is_a_0_33_value_only() -> None:
    # 0.11 parses --max-model-len with plain human_readable_int: "auto" dies on the node.
    assert "whole number" in str(only("--max-model-len auto", "0.11.0"))
    assert problems("--max-model-len 32k", "0.11.0") == []
    assert problems("--max-model-len auto", "0.33.0") == []
