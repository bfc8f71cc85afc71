"""``stop`` racing a submit that is still recording its job: whichever lands first, the job is
cancelled and nothing keeps running (a server orphaned this way was seen in the 50-call
concurrency test: stop read "no job yet", the submit then recorded its job, stop ended it)."""

from __future__ import annotations

from pathlib import Path

import pytest

from hpclaunch.endpoints import lifecycle
from hpclaunch.registry import ENDED, Record, Registry


def reservation(name: str) -> Record:
    return Record(name=name, model="m", model_id="org/m", served_model_name=name,
                  preset="single-gpu", cluster="local", scheduler="local", state="PENDING",
                  job_id="", submission="s1", api_key="k" * 32)


class _Scheduler:
    cancelled: list[str] = []

    def cancel(self, job_id: str) -> None:
        self.cancelled.append(job_id)


class _Transport:
    def close(self) -> None:
        pass


@pytest.fixture
def fakes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    _Scheduler.cancelled = []
    monkeypatch.setattr("hpclaunch.schedulers.scheduler_for", lambda *a: _Scheduler())
    monkeypatch.setattr("hpclaunch.remote.connect.transport_for", lambda *a: _Transport())
    monkeypatch.setattr(lifecycle, "profile_of", lambda rec, profiles: object())
    monkeypatch.setattr(lifecycle, "load_profiles", dict)
    return _Scheduler.cancelled


class _SubmitLandsAfterTheRead(Registry):
    """The submit records job 4242 right after ``stop`` read the entry without one."""

    def get(self, name: str) -> Record:
        rec = super().get(name)
        if not rec.job_id and rec.submission == "s1" and not getattr(self, "landed", False):
            self.landed = True
            self.claimed(name, "s1", job_id="4242")
        return rec


def test_a_job_recorded_between_stops_read_and_write_is_cancelled(
        tmp_path: Path, fakes: list[str]) -> None:
    reg = _SubmitLandsAfterTheRead(tmp_path / "registry.json")
    reg.reserve(reservation("n"))
    rec = lifecycle.stop("n", registry=reg)
    assert fakes == ["4242"]
    assert rec.state == ENDED and Registry(reg.path).get("n").state == ENDED


def test_a_stop_before_the_job_exists_leaves_the_cancel_to_the_submit(
        tmp_path: Path, fakes: list[str]) -> None:
    reg = Registry(tmp_path / "registry.json")
    reg.reserve(reservation("n"))
    assert lifecycle.stop("n", registry=reg).state == ENDED
    assert fakes == []
    assert reg.claimed("n", "s1", job_id="4242") is None  # the submit is told to cancel


class _Backend:
    def __init__(self) -> None:
        self.cancelled: list[str] = []

    def submit(self, script: str) -> str:
        return "4243"

    def cancel(self, job_id: str) -> None:
        self.cancelled.append(job_id)


class _Files:
    def makedirs(self, path: str) -> None:
        pass

    def write_file(self, path: str, data: bytes, mode: int) -> None:
        pass


def test_a_submit_stopped_before_its_job_is_recorded_cancels_it_and_says_stopped(
        tmp_path: Path) -> None:
    from hpclaunch.endpoints.launch import _queue
    from hpclaunch.errors import UserError

    reg = Registry(tmp_path / "registry.json")
    rec = reservation("n")
    rec.results_dir, rec.script_path = str(tmp_path), str(tmp_path / "n.sh")
    reg.reserve(rec)
    lifecycle.stop("n", registry=reg)  # lands before the job id: the entry ends unqueued
    backend = _Backend()
    with pytest.raises(UserError) as err:
        _queue(rec, "#!/bin/bash\n", backend, _Files(), reg)
    assert backend.cancelled == ["4243"]
    assert "was stopped (hpclaunch stop) while its job was being queued" in str(err.value)
    assert "it was cancelled" in str(err.value)
    assert reg.release("n", "s1", None) is False  # what submit does next: the stop stays
    assert reg.get("n").state == ENDED


def test_stopping_a_queued_job_cancels_it(tmp_path: Path, fakes: list[str]) -> None:
    reg = Registry(tmp_path / "registry.json")
    reg.reserve(reservation("n"))
    reg.claimed("n", "s1", job_id="7")
    lifecycle.stop("n", registry=reg)
    assert fakes == ["7"]


