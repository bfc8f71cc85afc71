"""The endpoint registry: endpoint name -> job, node, port, URL, model, key.

One JSON file under the state dir. Every change takes an exclusive ``flock`` on a
side lock file, re-reads the file, applies the change and atomically replaces the
file, so two CLI calls racing (two ``submit`` in two terminals) cannot lose an
entry. The file holds API keys, so it is created 0600. A file that does not parse
is reported and left exactly as it is: the user's records are worth more than our
convenience.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from hpclaunch.config import state_dir
from hpclaunch.errors import NotFoundError, UserError

SCHEMA_VERSION = 1
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")

# Lifecycle of an endpoint; ENDED and FAILED are final and never re-queried.
# UNHEALTHY: was READY, the job still runs, but /health stopped answering (hung).
PENDING, STARTING, READY, UNHEALTHY, FAILED, ENDED, UNKNOWN = (
    "PENDING", "STARTING", "READY", "UNHEALTHY", "FAILED", "ENDED", "UNKNOWN",
)
FINAL_STATES = frozenset({FAILED, ENDED})
RUNNING = "RUNNING"  # an eval job (kind "eval") whose vf-eval runs


def check_name(name: str) -> str:
    """Endpoint names end up in file names, job names and env var names."""
    if not NAME_RE.match(name or ""):
        raise UserError(
            f"invalid endpoint name {name!r}: use letters, digits, '.', '_' or '-' "
            "(start with a letter or digit, at most 63 characters)"
        )
    return name


@dataclass(kw_only=True)
class Record:
    """What hpclaunch remembers about one endpoint."""

    name: str
    kind: str = "endpoint"  # or "eval": a vf-eval batch job (hpclaunch eval --submit)
    model: str
    model_id: str
    served_model_name: str
    preset: str
    cluster: str
    scheduler: str
    pbs_dialect: str = ""
    job_id: str = ""
    state: str = PENDING
    reason: str = ""
    host: str = ""
    port: int = 0
    results_dir: str = ""
    log_path: str = ""
    script_path: str = ""
    api_key: str = ""
    simulated: bool = False
    layout: dict[str, int] = field(default_factory=dict)
    vllm_args: list[str] = field(default_factory=list)
    created: float = 0.0
    updated: float = 0.0
    ended: float = 0.0

    @property
    def url(self) -> str:
        """Base URL an OpenAI client uses (with ``/v1``); empty until the job reports a port."""
        if not self.host or not self.port:
            return ""
        return f"http://{self.host}:{self.port}/v1"

    @property
    def final(self) -> bool:
        return self.state in FINAL_STATES

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Record:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def public(self) -> dict[str, Any]:
        """The record without its API key, for printing and ``--json``."""
        data = self.to_json()
        data.pop("api_key", None)
        data["url"] = self.url
        return data


class Registry:
    """Locked, atomic, versioned store of :class:`Record` by endpoint name."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or state_dir() / "registry.json"
        self.lock_path = self.path.with_name(self.path.name + ".lock")

    # -- reading -----------------------------------------------------------------
    def _read(self) -> dict[str, Record]:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return {}
        try:
            data = json.loads(raw.decode("utf-8"))
            if not isinstance(data, dict) or not isinstance(data.get("endpoints"), dict):
                raise ValueError("missing 'endpoints' mapping")
            version = data.get("schema")
            if version != SCHEMA_VERSION:
                raise ValueError(
                    f"schema version {version!r}, this hpclaunch reads {SCHEMA_VERSION}"
                )
            return {name: Record.from_json(rec) for name, rec in data["endpoints"].items()}
        except (ValueError, TypeError, UnicodeDecodeError) as exc:
            raise UserError(
                f"registry {self.path} is corrupt ({exc}); it was left untouched: repair it, "
                f"or move it aside to start a new one"
            ) from exc

    def load(self) -> dict[str, Record]:
        """A snapshot without taking the lock: readers never block writers for long,
        and ``os.replace`` means they always see a whole file."""
        return self._read()

    def get(self, name: str) -> Record:
        records = self.load()
        if name not in records:
            raise NotFoundError(unknown_name_message(name, records))
        return records[name]

    # -- writing -----------------------------------------------------------------
    @contextlib.contextmanager
    def transaction(self) -> Iterator[dict[str, Record]]:
        """Lock, yield the records for in-place change, then write them atomically."""
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            records = self._read()
            before = json.dumps({k: v.to_json() for k, v in records.items()}, sort_keys=True)
            yield records
            after = json.dumps({k: v.to_json() for k, v in records.items()}, sort_keys=True)
            if after != before:
                self._write(records)
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def _write(self, records: dict[str, Record]) -> None:
        payload = {
            "schema": SCHEMA_VERSION,
            "endpoints": {name: rec.to_json() for name, rec in sorted(records.items())},
        }
        import tempfile  # only writers pay for it; reads stay fast

        fd, tmp = tempfile.mkstemp(prefix=".registry.", dir=self.path.parent)
        try:
            os.fchmod(fd, 0o600)
            with os.fdopen(fd, "w") as fh:
                json.dump(payload, fh, indent=1, sort_keys=True)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise

    def add(self, record: Record) -> None:
        """Insert a new endpoint; a live entry of the same name is refused."""
        with self.transaction() as records:
            old = records.get(record.name)
            if old is not None and not old.final:
                raise UserError(
                    f"endpoint {record.name!r} already exists ({old.state}, job {old.job_id}); "
                    f"stop it first (hpclaunch stop {record.name}) or pick another --name"
                )
            now = time.time()
            record.created = record.created or now
            record.updated = now
            records[record.name] = record

    def update(self, name: str, **changes: Any) -> Record | None:
        """Change fields of one entry; returns the new record (None if it vanished)."""
        with self.transaction() as records:
            rec = records.get(name)
            if rec is None:
                return None
            for key, value in changes.items():
                setattr(rec, key, value)
            rec.updated = time.time()
            return rec

    def remove(self, name: str) -> Record:
        with self.transaction() as records:
            if name not in records:
                raise NotFoundError(unknown_name_message(name, records))
            rec = records[name]
            if not rec.final:
                raise UserError(
                    f"endpoint {name!r} is {rec.state}; stop it first (hpclaunch stop {name})"
                )
            del records[name]
            return rec


def unknown_name_message(name: str, records: dict[str, Record]) -> str:
    import difflib

    near = difflib.get_close_matches(name, list(records), n=3)
    hint = f"; did you mean {', '.join(near)}?" if near else ""
    if not records:
        return f"no endpoint named {name!r}: none are registered (hpclaunch submit MODEL ...)"
    return f"no endpoint named {name!r}{hint} (hpclaunch endpoints --all lists them)"
