"""The job's own files, read while the job may still be writing them.

A job writes ``<name>.<submission>.endpoint.json`` through a temporary file and ``mv``, but
a file copied by hand, truncated by a full disk or left by an older job must never crash
``status`` or send clients to a wrong port: anything but a whole, well-typed report reads as
"not reported yet".
"""

from __future__ import annotations

from pathlib import Path

import pytest

from hpclaunch.endpoints.status import endpoint_file, read_endpoint_file
from hpclaunch.registry import Record
from hpclaunch.remote.transport import LocalTransport


def record(tmp_path: Path) -> Record:
    return Record(name="ep", model="m", model_id="m", served_model_name="ep", preset="p",
                  cluster="local", scheduler="local", job_id="42", submission="ab12cd34",
                  results_dir=str(tmp_path))


@pytest.mark.parametrize("text", [
    '{"host": "n1", "po',                                   # cut mid-write
    "",                                                      # created, nothing in it yet
    '["n1", 8000]',                                          # not an object
    '{"host": "n1", "port": "8000", "job_id": "42"}',       # port as text
    '{"host": "n1", "port": 0, "job_id": "42"}',            # no port
    '{"host": "n1", "port": 70000, "job_id": "42"}',        # not a port
    '{"host": "", "port": 8000, "job_id": "42"}',           # no host
    '{"host": "n1", "port": true, "job_id": "42"}',         # a bool is not a port
    '{"host": "n1", "port": 8000, "job_id": "41"}',         # another job's report
])
def test_anything_but_a_whole_report_reads_as_not_yet(tmp_path: Path, text: str) -> None:
    rec = record(tmp_path)
    Path(endpoint_file(rec)).write_text(text)
    assert read_endpoint_file(LocalTransport(), rec) is None


def test_a_whole_report_is_read(tmp_path: Path) -> None:
    rec = record(tmp_path)
    assert endpoint_file(rec) == f"{tmp_path}/ep.ab12cd34.endpoint.json"
    Path(endpoint_file(rec)).write_text('{"host": "n1", "port": 8001, "job_id": "42"}')
    assert read_endpoint_file(LocalTransport(), rec) == {"host": "n1", "port": 8001,
                                                           "job_id": "42"}


def test_a_record_from_before_submission_ids_reads_the_old_names(tmp_path: Path) -> None:
    rec = record(tmp_path)
    rec.submission = ""
    assert endpoint_file(rec) == f"{tmp_path}/ep.endpoint.json"
