"""Fleet pieces that need no process: the agent's metrics reading, registry compatibility,
GPU-hours, Slurm's times, the router job's directives and the CLI's durations."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from hpclaunch.cli.fleet import parse_duration
from hpclaunch.config import ClusterProfile
from hpclaunch.errors import UserError
from hpclaunch.fleet import router
from hpclaunch.fleet.agent import human, load_counters, preempt_time, router_base
from hpclaunch.fleet.view import gpu_hours
from hpclaunch.registry import ENDED, Record, Registry, decode_records
from hpclaunch.schedulers.base import DONE, RUNNING
from hpclaunch.schedulers.slurm import parse_sacct, parse_squeue, slurm_time

METRICS = """\
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="q"} 1.0
vllm:num_requests_running{engine="1",model_name="q"} 2.0
vllm:num_requests_waiting{engine="0",model_name="q"} 3.0
vllm:request_success_total{finished_reason="stop",engine="0",model_name="q"} 10.0
vllm:request_success_total{finished_reason="length",engine="1",model_name="q"} 5.0
vllm:generation_tokens_total{engine="0",model_name="q"} 999.0
"""


def test_agent_counts_finished_and_in_flight_requests_over_all_engines() -> None:
    assert load_counters(METRICS) == (15.0, 6.0)
    assert load_counters("") == (0.0, 0.0)


def test_agent_reads_the_router_from_its_endpoint_file(tmp_path) -> None:
    path = tmp_path / "r.endpoint.json"
    assert router_base(str(path)) == ("", "")  # not written yet: ask again later
    path.write_text(json.dumps({"host": "node7", "port": 30001, "job_id": "42"}))
    assert router_base(str(path)) == ("http://node7:30001", "42:30001")
    path.write_text("{half")
    assert router_base(str(path)) == ("", "")


def test_idle_reason_reads_as_the_option_was_written() -> None:
    assert [human(s) for s in (1800, 5400, 4, 90)] == ["30m", "1h30m", "4s", "1m30s"]


def test_durations_for_idle_stop() -> None:
    assert parse_duration("30m", "--idle-stop") == 1800
    assert parse_duration("2h", "--idle-stop") == 7200
    assert parse_duration("45", "--idle-stop") == 45
    for bad in ("", "soon", "-5m", "0"):
        with pytest.raises(UserError, match="--idle-stop"):
            parse_duration(bad, "--idle-stop")


def test_a_registry_written_before_fleets_still_loads_with_empty_fleet_fields() -> None:
    old = {"name": "a", "model": "m", "model_id": "m", "served_model_name": "a",
           "preset": "p", "cluster": "local", "scheduler": "local", "state": "READY"}
    rec = decode_records(json.dumps({"schema": 1, "endpoints": {"a": old}}).encode())["a"]
    assert (rec.role, rec.fleet, rec.replicas, rec.gpus, rec.started) == ("", "", 0, 0, 0.0)


def test_fleet_fields_are_type_checked_like_the_rest(tmp_path) -> None:
    bad = {"name": "a", "model": "m", "model_id": "m", "served_model_name": "a", "preset": "p",
           "cluster": "local", "scheduler": "local", "replicas": "two"}
    with pytest.raises(ValueError, match="replicas"):
        decode_records(json.dumps({"schema": 1, "endpoints": {"a": bad}}).encode())


def test_fleet_records_round_trip(tmp_path) -> None:
    reg = Registry(tmp_path / "registry.json")
    reg.add(Record(name="f", model="m", model_id="m", served_model_name="f", preset="p",
                   cluster="local", scheduler="local", role="fleet", replicas=2,
                   spec={"model": "m", "overrides": {"max-num-seqs": 8}, "restart": True}))
    got = reg.get("f")
    assert (got.role, got.replicas, got.spec["overrides"]) == ("fleet", 2, {"max-num-seqs": 8})


def _rec(**kw) -> Record:
    return Record(name="e", model="m", model_id="m", served_model_name="e", preset="p",
                  cluster="c", scheduler="slurm", **kw)


def test_gpu_hours_are_gpus_times_the_schedulers_wall_time() -> None:
    assert gpu_hours(_rec(gpus=4, started=1000.0, finished=1000.0 + 1800)) == 2.0
    # Still running: counted up to now; not started yet: nothing.
    assert gpu_hours(_rec(gpus=2, started=1000.0), now=1000.0 + 3600) == 2.0
    assert gpu_hours(_rec(gpus=2)) == 0.0
    # Stopped by hpclaunch before the scheduler reported an end: the stop time.
    assert gpu_hours(_rec(gpus=1, started=0.5, state=ENDED, ended=3600.5)) == 1.0


def test_slurm_start_and_end_times_come_with_the_state() -> None:
    text = ("7|RUNNING|None|vm|0|2026-11-27T09:50:00|2026-11-27T10:00:00|\n"
            "8|COMPLETED|None|vm|0|2026-11-27T09:50:00|2026-11-27T09:55:00|\n"
            "9|PENDING|Resources|(null)|0|N/A|N/A|\n")
    states = parse_squeue(text, ["7", "8", "9"])
    start = slurm_time("2026-11-27T09:50:00")
    assert states["7"].state == RUNNING and states["7"].start == start
    assert states["7"].end == 0.0  # a running job's EndTime is only its time limit
    assert states["8"].state == DONE and states["8"].end - states["8"].start == 300
    assert states["9"].start == 0.0
    done = parse_sacct("8|CANCELLED by 0|0:15|None|2026-11-27T09:50:00|2026-11-27T09:51:00",
                       ["8"])
    assert done["8"].end - done["8"].start == 60
    # Older 5-column squeue output (no times) still parses.
    assert parse_squeue("7|RUNNING|None|vm|0|\n", ["7"])["7"].start == 0.0


def test_router_job_on_slurm_is_a_small_cpu_job_from_the_profiles_router_settings() -> None:
    profile = ClusterProfile(name="hpc", scheduler="slurm", partition="gpu",
                             router={"partition": "cpu", "time-limit": "2-00:00:00"})
    lines = router.directives(profile, "q", "/scratch/r")
    assert "#SBATCH --partition=cpu" in lines
    assert "#SBATCH --time=2-00:00:00" in lines
    assert not any("gres" in line or "gpus" in line for line in lines)


def test_router_job_script_keeps_the_key_off_the_command_line() -> None:
    profile = ClusterProfile(name="local", scheduler="local", bind_host="127.0.0.1",
                             router={"health-check-interval": 2})
    script = router.render(profile, "q", "q.abcd", "/tmp/r")
    assert "--health-check-interval-secs 2" in script
    assert "HPCLAUNCH_ROUTER_KEY_FILE" in script
    assert not [ln for ln in script.splitlines() if "--api-key" in ln and not ln.startswith("#")]


def test_fleets_on_pbs_are_refused_with_the_reason() -> None:
    profile = replace(ClusterProfile(name="p"), scheduler="pbs")
    with pytest.raises(UserError, match="fleets run their router on Slurm or"):
        router.directives(profile, "q", "/r")


def test_agent_sees_a_slurm_preemption_by_its_preempt_time() -> None:
    """Set at the start of the grace time (seen on Slurm 22.05), "None" before."""
    running = "JobId=7 JobState=RUNNING PreemptEligibleTime=2026-11-27T10:48:58 PreemptTime=None"
    assert preempt_time(running) == ""
    told = running.replace("PreemptTime=None", "PreemptTime=2026-11-27T10:49:01")
    assert preempt_time(told) == "2026-11-27T10:49:01"
    assert preempt_time("") == ""
