"""The registry keeps every record through races, crashes and bad files."""

from __future__ import annotations

import json
import multiprocessing
import stat
from pathlib import Path

import pytest

from hpclaunch.errors import UserError
from hpclaunch.registry import ENDED, READY, Record, Registry, check_name


def record(name: str, state: str = "PENDING") -> Record:
    return Record(name=name, model="m", model_id="org/m", served_model_name=name,
                  preset="single-gpu", cluster="local", scheduler="local", state=state,
                  job_id="1", api_key="k" * 32)


def _add_many(path: str, prefix: str, count: int) -> None:
    reg = Registry(Path(path))
    for i in range(count):
        reg.add(record(f"{prefix}-{i}"))


def test_concurrent_writers_lose_nothing(tmp_path: Path) -> None:
    path = tmp_path / "registry.json"
    procs = [multiprocessing.Process(target=_add_many, args=(str(path), f"w{n}", 25))
             for n in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    names = set(Registry(path).load())
    assert names == {f"w{n}-{i}" for n in range(4) for i in range(25)}


def test_file_is_private_versioned_and_replaced_atomically(tmp_path: Path) -> None:
    reg = Registry(tmp_path / "registry.json")
    reg.add(record("a"))
    data = json.loads(reg.path.read_text())
    assert data["schema"] == 1 and set(data["endpoints"]) == {"a"}
    assert stat.S_IMODE(reg.path.stat().st_mode) == 0o600
    reg.update("a", state=READY)
    assert not list(tmp_path.glob(".registry.*")), "temporary files must not be left behind"
    assert reg.get("a").state == READY


def test_corrupt_file_is_reported_and_never_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "registry.json"
    path.write_text("{not json")
    reg = Registry(path)
    with pytest.raises(UserError, match="corrupt"):
        reg.load()
    with pytest.raises(UserError, match="corrupt"):
        reg.add(record("b"))
    assert path.read_text() == "{not json"


def test_newer_schema_is_not_clobbered(tmp_path: Path) -> None:
    path = tmp_path / "registry.json"
    path.write_text(json.dumps({"schema": 99, "endpoints": {}}))
    with pytest.raises(UserError, match="schema version 99"):
        Registry(path).add(record("c"))
    assert json.loads(path.read_text())["schema"] == 99


def test_live_names_are_unique_but_ended_names_can_be_reused(tmp_path: Path) -> None:
    reg = Registry(tmp_path / "registry.json")
    reg.add(record("x"))
    with pytest.raises(UserError, match="already exists"):
        reg.add(record("x"))
    reg.update("x", state=ENDED)
    reg.add(record("x"))
    assert reg.get("x").state == "PENDING"


def test_remove_refuses_live_entries(tmp_path: Path) -> None:
    reg = Registry(tmp_path / "registry.json")
    reg.add(record("live"))
    with pytest.raises(UserError, match="stop it first"):
        reg.remove("live")
    reg.update("live", state=ENDED)
    reg.remove("live")
    assert reg.load() == {}


def test_unknown_name_suggests_near_names(tmp_path: Path) -> None:
    reg = Registry(tmp_path / "registry.json")
    reg.add(record("qwen-vl"))
    with pytest.raises(UserError, match="did you mean qwen-vl"):
        reg.get("qwen-v")


@pytest.mark.parametrize("name", ["ok", "a.b-c_d", "Q3", "x" * 63])
def test_valid_names(name: str) -> None:
    assert check_name(name) == name


@pytest.mark.parametrize("name", ["", "-x", "a b", "a/b", "a;b", "$(x)", "x" * 64, "ä"])
def test_invalid_names(name: str) -> None:
    with pytest.raises(UserError):
        check_name(name)


def test_public_view_hides_the_key() -> None:
    rec = record("p")
    rec.host, rec.port = "node1", 8001
    view = rec.public()
    assert "api_key" not in view and view["url"] == "http://node1:8001/v1"


# -- reserve first, then act ------------------------------------------------------------


def reservation(name: str, submission: str) -> Record:
    rec = record(name)
    rec.job_id, rec.submission = "", submission
    return rec


def test_a_reservation_blocks_the_name_until_released(tmp_path: Path) -> None:
    reg = Registry(tmp_path / "registry.json")
    assert reg.reserve(reservation("n", "s1")) is None
    with pytest.raises(UserError, match="already exists .PENDING, being submitted"):
        reg.reserve(reservation("n", "s2"))
    assert reg.release("n", "s2", None) is False  # not s2's to release
    assert reg.release("n", "s1", None) is True
    assert reg.load() == {}


def test_release_puts_back_the_ended_entry_it_replaced(tmp_path: Path) -> None:
    reg = Registry(tmp_path / "registry.json")
    reg.add(record("n", state=ENDED))
    previous = reg.reserve(reservation("n", "s1"))
    assert previous is not None and previous.state == ENDED
    reg.release("n", "s1", previous)
    assert reg.get("n").state == ENDED


def test_a_recorded_job_is_never_released(tmp_path: Path) -> None:
    reg = Registry(tmp_path / "registry.json")
    reg.reserve(reservation("n", "s1"))
    assert reg.claimed("n", "s1", job_id="77") is not None
    assert reg.release("n", "s1", None) is False
    assert reg.get("n").job_id == "77"


def test_claimed_refuses_a_stopped_or_replaced_reservation(tmp_path: Path) -> None:
    reg = Registry(tmp_path / "registry.json")
    reg.reserve(reservation("n", "s1"))
    reg.update("n", state=ENDED)
    assert reg.claimed("n", "s1", job_id="77") is None  # the submit must cancel its job
    assert reg.claimed("n", "other", job_id="77") is None


def test_stop_ends_a_reservation_only_while_it_has_no_job(tmp_path: Path) -> None:
    reg = Registry(tmp_path / "registry.json")
    reg.reserve(reservation("n", "s1"))
    ended = reg.end_unqueued("n", "stopped")
    assert ended is not None and ended.state == ENDED and ended.reason == "stopped"
    assert reg.claimed("n", "s1", job_id="77") is None  # so its submit cancels the job
    reg.reserve(reservation("m", "s2"))
    reg.claimed("m", "s2", job_id="78")  # the job id landed first: stop must cancel it
    assert reg.end_unqueued("m", "stopped") is None
    assert reg.get("m").state != ENDED and reg.get("m").job_id == "78"
    assert reg.release("n", "s1", None) is False  # the failed submit keeps the stop
    assert reg.get("n").state == ENDED and reg.get("n").reason == "stopped"


def test_an_unwritable_registry_is_one_user_error(tmp_path: Path) -> None:
    reg = Registry(tmp_path / "registry.json")
    (tmp_path / "registry.json.lock").mkdir()
    with pytest.raises(UserError, match="cannot write the registry"):
        reg.reserve(reservation("n", "s1"))


@pytest.mark.parametrize(("change", "words"), [
    ({"port": "x"}, "endpoints.'a': port: expected int, got str"),
    ({"layout": {"dp": True}}, "layout"),
    ({"vllm_args": "--x"}, "vllm_args: expected array"),
    ({"state": "BOGUS"}, "state: 'BOGUS' is not one of"),
    ({"name": "b"}, "its name field says 'b'"),
    ({"port": 70000}, "not a port number"),
])
def test_entries_of_the_wrong_shape_are_named(tmp_path: Path, change: dict, words: str) -> None:
    entry = {**record("a").to_json(), **change}
    path = tmp_path / "registry.json"
    text = json.dumps({"schema": 1, "endpoints": {"a": entry}})
    path.write_text(text)
    with pytest.raises(UserError, match="corrupt") as info:
        Registry(path).load()
    assert words in str(info.value)
    assert path.read_text() == text


def test_fields_from_a_newer_hpclaunch_are_ignored(tmp_path: Path) -> None:
    path = tmp_path / "registry.json"
    entry = {**record("a").to_json(), "written_by_a_later_version": {"x": 2}}
    path.write_text(json.dumps({"schema": 1, "endpoints": {"a": entry}}))
    assert Registry(path).get("a").name == "a"


@pytest.mark.parametrize("name", ["nl\n", "a b", "-x", "x" * 64, "", "a/b"])
def test_names_must_match_whole(name: str) -> None:
    with pytest.raises(UserError, match="invalid endpoint name"):
        check_name(name)
