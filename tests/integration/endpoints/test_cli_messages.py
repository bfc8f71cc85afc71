"""Messages that must say what is true: hidden FAILED entries, next steps, vf-eval arguments."""

from __future__ import annotations

from tests.conftest import HPC, one_line_error

SIM = ("--preset", "single-gpu", "--scheduler", "local", "--simulate")


def test_endpoints_says_failed_ones_are_hidden_not_only_ended_ones(hpc: HPC) -> None:
    assert hpc("endpoints", "--cached").stdout.strip() == "no endpoints"
    hpc("submit", "Qwen3-0.6B", *SIM, "--name", "oom", "--env", "HPCLAUNCH_STANDIN_FAIL=oom",
        "--wait", "--timeout", "60", ok=False)
    listed = hpc("endpoints").stdout.strip()
    assert listed == "no live endpoints (1 FAILED: hpclaunch endpoints --all shows them)"
    assert "oom" in hpc("endpoints", "--all").stdout


def test_submit_wait_does_not_tell_the_user_to_wait_again(hpc: HPC) -> None:
    waited = hpc("submit", "Qwen3-0.6B", *SIM, "--name", "qw", "--wait", "--timeout", "60")
    assert "next: hpclaunch wait" not in waited.stdout + waited.stderr
    assert "qw is READY" in waited.stdout
    plain = hpc("submit", "Qwen3-0.6B", *SIM, "--name", "qn")
    assert "next: hpclaunch wait qn" in plain.stdout


def test_a_vf_eval_argument_is_never_read_as_bundled_hpclaunch_flags(hpc: HPC) -> None:
    # click would read -mother as -m -o -t -h -e -r: help, exit 0, nothing evaluated.
    bundled = hpc("eval", "qa", "my-env", "-mother", ok=False)
    assert "leave -m out" in one_line_error(bundled) and bundled.returncode == 1
    assert hpc("eval", "-h").stdout.startswith("Usage: hpclaunch eval")
    assert hpc("eval", "qa", "my-env", "--help").returncode == 0
