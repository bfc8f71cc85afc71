"""One rule per hand-written value: what each scheduler accepts, what vLLM accepts, and the
words used when a value is refused (``expected X, got Y``)."""

from __future__ import annotations

import pytest

from hpclaunch.errors import UserError
from hpclaunch.validate import units


@pytest.mark.parametrize("text", ["60", "0", "90:00", "1:30:00", "04:00:00", "48:00:00", "2-12",
                                  "2-12:30", "1-00:00:00", "UNLIMITED"])
def test_slurm_time_forms_are_accepted_as_written(text: str) -> None:
    assert units.time_limit(text, "slurm") == text
    assert units.time_limit(text, "local") == text


@pytest.mark.parametrize("text", ["25:99", "abc", "-1", "1:60:00", "2-24", "1 hour", "1:00:00:00",
                                  ""])
def test_bad_slurm_time_limits_are_refused(text: str) -> None:
    if text == "":
        assert units.time_limit(text, "slurm") == ""  # no limit: the profile's default
        return
    with pytest.raises(units.Invalid, match=r"expected a Slurm time limit .*, got"):
        units.time_limit(text, "slurm")
    with pytest.raises(units.Invalid):
        units.time_limit(text, "local")


@pytest.mark.parametrize(("text", "walltime"), [
    ("3600", "01:00:00"), ("90:00", "01:30:00"), ("1:30:00", "01:30:00"),
    ("1-00:00:00", "24:00:00"), (45, "00:00:45"),
])
def test_pbs_walltime_forms_become_hh_mm_ss(text: str | int, walltime: str) -> None:
    assert units.time_limit(text, "pbs") == walltime


@pytest.mark.parametrize("text", ["25:99", "abc", "-1", "1:99:00", True, 2.5])
def test_bad_pbs_walltimes_are_refused(text: object) -> None:
    with pytest.raises(units.Invalid, match=r"expected a PBS walltime"):
        units.time_limit(text, "pbs")


@pytest.mark.parametrize(("value", "slurm", "pbs"), [
    ("64G", "64G", "64gb"), ("64gb", "64G", "64gb"), ("512", "512", "512mb"), (0, "0", "0mb"),
    ("1t", "1T", "1tb"),
])
def test_memory_in_each_schedulers_syntax(value: object, slurm: str, pbs: str) -> None:
    assert units.memory(value, "slurm") == slurm
    assert units.memory(value, "pbs") == pbs


@pytest.mark.parametrize("value", ["lots", "64 gigs", "-1G", "1.5G", True, None])
def test_bad_memory_is_refused(value: object) -> None:
    with pytest.raises(units.Invalid, match="expected a memory size such as 64G"):
        units.memory(value, "slurm")


@pytest.mark.parametrize("value", ["abc", 0, -3, 2.5, True, "4", None])
def test_counts_are_positive_integers(value: object) -> None:
    with pytest.raises(units.Invalid, match="expected a positive integer, got"):
        units.positive_int(value)


@pytest.mark.parametrize("value", [1.5, 0, -1, True, "0.9"])
def test_fractions_are_in_zero_one(value: object) -> None:
    with pytest.raises(units.Invalid, match=r"expected a fraction in \(0, 1\]"):
        units.fraction(value)
    assert units.fraction(1) == 1.0 and units.fraction(0.9) == 0.9


def test_vllm_flag_ranges_apply_to_numbers_and_leave_other_text_to_the_type_check() -> None:
    rule = units.FLAG_RULES["gpu-memory-utilization"]
    for bad in (1.5, "1.5", 0, -1):
        with pytest.raises(units.Invalid):
            rule(bad)
    assert rule("lots") == "lots"  # vllm.flags says "expects a number"
    assert units.FLAG_RULES["max-model-len"]("32k") == "32k"
    with pytest.raises(units.Invalid):
        units.FLAG_RULES["max-num-seqs"](0)


@pytest.mark.parametrize("name", ["É", "1A", "A-B", "A B", "", "A=B", 5])
def test_env_names_are_shell_identifiers(name: object) -> None:
    with pytest.raises(units.Invalid, match="expected a shell variable name"):
        units.env_name(name)
    assert units.env_name("_OMP_NUM_THREADS2") == "_OMP_NUM_THREADS2"


@pytest.mark.parametrize("value", ["home,walltime=999:00:00", "home grand", "a;b", "$(id)", ""])
def test_pbs_resource_values_carry_one_resource(value: str) -> None:
    with pytest.raises(units.Invalid, match="without commas, spaces or shell characters"):
        units.pbs_resource(value)
    assert units.pbs_resource("home:grand:eagle") == "home:grand:eagle"


def test_gpu_requests_take_a_count_or_type_and_count() -> None:
    assert units.gpu_request(4) == 4 and units.gpu_request("h100:4") == "h100:4"
    for bad in (0, 2.5, True, "h100:0", "h;x:2", "four"):
        with pytest.raises(units.Invalid):
            units.gpu_request(bad)


def test_a_long_value_is_quoted_short_with_its_length() -> None:
    with pytest.raises(units.Invalid) as err:
        units.model_name("/" + "a" * 100_000)
    assert "(100,001 characters)" in str(err.value) and len(str(err.value)) < 250
    assert units.model_name("/models/" + "b" * 255) and units.model_name("a\n0")


def test_check_names_the_place_in_one_line() -> None:
    with pytest.raises(UserError) as err:
        units.check("four", units.positive_int, "clusters.yaml: clusters.a.gpus-per-node")
    assert str(err.value) == ("clusters.yaml: clusters.a.gpus-per-node: expected a positive "
                              "integer, got 'four'")
