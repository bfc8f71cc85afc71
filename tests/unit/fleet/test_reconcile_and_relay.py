"""What a refresh does to a fleet (replace, end, relay), and the relay's Slurm directives."""

from __future__ import annotations

import pytest

from hpclaunch.errors import UserError
from hpclaunch.fleet import launch, relay
from hpclaunch.registry import ENDED, FAILED, READY, Record, Registry


def rec(name: str, **kw) -> Record:
    return Record(name=name, model="m", model_id="m", served_model_name="f", preset="p",
                  cluster="local", scheduler="slurm", **kw)


@pytest.fixture
def calls(monkeypatch):
    """add_replicas and stop are recorded instead of queueing or cancelling jobs."""
    made: list[tuple] = []

    def add(fleet, count, *, registry, predecessor=None):
        made.append(("add", count, predecessor.name if predecessor else None))
        return [rec(f"{fleet.name}.new{len(made)}")]

    def stop(name, *, registry):
        made.append(("stop", name))
        return registry.update(name, state=ENDED, reason="stopped by hpclaunch stop")

    monkeypatch.setattr(launch, "add_replicas", add)
    monkeypatch.setattr(launch, "stop_one", stop)
    return made


def fleet_registry(tmp_path, *replicas: Record, **fleet_kw) -> Registry:
    reg = Registry(tmp_path / "registry.json")
    reg.add(rec("f", role="fleet", replicas=2, job_id="1", **fleet_kw))
    for r in replicas:
        reg.add(r)
    return reg


def replica(i: int, state: str, reason: str = "", **kw) -> Record:
    return rec(f"f.r{i}", role="replica", fleet="f", state=state, reason=reason,
               job_id=str(10 + i), **kw)


def test_a_failed_replica_is_replaced_only_with_restart(tmp_path, calls):
    reg = fleet_registry(tmp_path, replica(0, READY), replica(1, FAILED, "killed"))
    assert launch.reconcile(reg) == [] and calls == []
    reg.update("f", spec={"restart": True})
    assert launch.reconcile(reg)
    assert calls == [("add", 1, None)]


def test_a_fleet_whose_replicas_all_idled_ends_with_their_reason(tmp_path, calls):
    why = "idle stop: no requests for 30m"
    reg = fleet_registry(tmp_path, replica(0, ENDED, why), replica(1, ENDED, why),
                         spec={"restart": True})
    launch.reconcile(reg)
    assert calls == [("stop", "f")]  # idle replicas are not "restarted"
    assert (reg.get("f").state, reg.get("f").reason) == (ENDED, why)


def test_a_fleet_whose_replicas_all_failed_is_failed(tmp_path, calls):
    reg = fleet_registry(tmp_path, replica(0, FAILED, "oom"), replica(1, FAILED, "oom"))
    launch.reconcile(reg)
    assert reg.get("f").state == FAILED


def test_relay_queues_one_successor_per_running_replica(tmp_path, calls):
    reg = fleet_registry(tmp_path, replica(0, READY, successor="f.r2"),
                         replica(1, READY), replica(2, "PENDING"),
                         spec={"relay": True})
    launch.reconcile(reg)
    # r0 has a live successor, r2 is not running yet: only r1 gets one.
    assert calls == [("add", 1, "f.r1")]


def test_slurm_time_limits_in_seconds():
    assert [relay.slurm_seconds(t) for t in ("1", "90:00", "4:00:00", "1-00", "2-03:04:05")] \
        == [60, 5400, 14400, 86400, 183845]
    with pytest.raises(UserError, match="needs a time limit"):
        relay.slurm_seconds("")


def test_successor_becomes_eligible_limit_minus_lead_minus_startup_after_its_predecessor():
    lead = relay.lead_s(4 * 3600, startup=300)
    assert lead == 150
    lines = relay.directives(4 * 3600, lead, 300, "42")
    assert lines == ["#SBATCH --signal=B:USR1@150",
                     f"#SBATCH --dependency=after:42+{(4 * 3600 - 150 - 300) // 60}"]
    # Too short a limit to wait: eligible as soon as the predecessor starts.
    assert relay.directives(60, 30, 120, "42")[1] == "#SBATCH --dependency=after:42"
    assert relay.lead_s(60, startup=300) == 30  # never more than half the limit


def test_measured_startup_is_the_median_over_replicas_that_became_ready():
    reps = [rec("a", started=100, ready_at=130), rec("b", started=100, ready_at=190),
            rec("c", started=100, ready_at=110), rec("d", started=100)]
    assert relay.startup_s(reps) == 30
    assert relay.startup_s([]) == relay.DEFAULT_STARTUP_S
