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
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from hpclaunch.config import state_dir
from hpclaunch.errors import NotFoundError, UserError

SCHEMA_VERSION = 1
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")  # always fullmatch: "$" admits "\n"

# Lifecycle of an endpoint; ENDED and FAILED are final and never re-queried.
# UNHEALTHY: was READY, the job still runs, but /health stopped answering (hung).
PENDING, STARTING, READY, UNHEALTHY, FAILED, ENDED, UNKNOWN = (
    "PENDING", "STARTING", "READY", "UNHEALTHY", "FAILED", "ENDED", "UNKNOWN",
)
FINAL_STATES = frozenset({FAILED, ENDED})
RUNNING = "RUNNING"  # an eval job (kind "eval") whose vf-eval runs
STATES = (PENDING, STARTING, READY, UNHEALTHY, FAILED, ENDED, UNKNOWN, RUNNING)


def check_name(name: str) -> str:
    """Endpoint names end up in file names, job names and env var names."""
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
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
    submission: str = ""  # id of the submit that owns this name's files and job
    # Fleets (hpclaunch.fleet); all optional, so registries written before them still load.
    role: str = ""  # "" one endpoint, "fleet" the router in front of replicas, "replica"
    fleet: str = ""  # a replica's fleet name
    replicas: int = 0  # a fleet's wanted replica count
    spec: dict[str, Any] = field(default_factory=dict)  # how a fleet queues more replicas
    gpus: int = 0  # GPUs the job holds, for GPU-hours
    started: float = 0.0  # when the job started running, by the scheduler's clock
    finished: float = 0.0  # when it stopped running, by the scheduler's clock
    ready_at: float = 0.0  # first seen READY: startup time = ready_at - started
    successor: str = ""  # a relayed replica's successor (walltime relay)

    @property
    def url(self) -> str:
        """Base URL an OpenAI client uses (with ``/v1``); empty until the job reports a port."""
        if not self.host or not self.port:
            return ""
        return f"http://{self.host}:{self.port}/v1"

    @property
    def final(self) -> bool:
        return self.state in FINAL_STATES

    @property
    def files(self) -> str:
        """Path prefix of this submission's own files (key, endpoint file, exit file).

        The submission id in it means a later or a concurrent submission of the same
        name can never overwrite or delete them; records from before it had none.
        """
        tag = f"{self.name}.{self.submission}" if self.submission else self.name
        return f"{self.results_dir}/{tag}"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Record:
        """A record from its JSON form, each field checked against its type.

        Unknown keys (written by a newer hpclaunch) are ignored; a wrong type raises
        ``ValueError`` naming the field.
        """
        import msgspec  # where files are read, not at import: --help stays fast

        try:
            rec = msgspec.convert(data, cls, strict=True)
        except msgspec.ValidationError as exc:
            raise ValueError(_schema_error(exc)) from None
        check_name(rec.name)
        if rec.state not in STATES:
            raise ValueError(f"state: {rec.state!r} is not one of {', '.join(STATES)}")
        if rec.port and not 0 < rec.port < 65536:
            raise ValueError(f"port: {rec.port} is not a port number")
        return rec

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
        except OSError as exc:
            raise UserError(f"registry {self.path} cannot be read ({exc.strerror}); "
                            "check its permissions") from exc
        try:
            return decode_records(raw)
        except ValueError as exc:
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
        """Lock, yield the records for in-place change, then write them atomically.

        A registry that cannot be locked or written (read-only, full disk, a directory
        where the lock file goes) is a :class:`UserError`, raised before the body runs
        or instead of the write: the caller has not acted on a change nobody recorded.
        """
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise UserError(self._unwritable(exc)) from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            records = self._read()
            before = json.dumps({k: v.to_json() for k, v in records.items()}, sort_keys=True)
            yield records
            after = json.dumps({k: v.to_json() for k, v in records.items()}, sort_keys=True)
            if after != before:
                try:
                    self._write(records)
                except OSError as exc:
                    raise UserError(self._unwritable(exc)) from exc
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def _unwritable(self, exc: OSError) -> str:
        where = exc.filename or self.path
        return (f"cannot write the registry ({where}: {exc.strerror or exc}); free disk space "
                f"or fix the permissions of {self.path.parent}")

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
        self.reserve(record)

    def reserve(self, record: Record) -> Record | None:
        """Claim ``record.name`` for one submission, before any file or job exists.

        A live entry of that name is refused; an ended one is replaced and returned, so
        that :meth:`release` can put it back if the submission fails. Under the lock,
        so of many concurrent submits exactly one wins a name.
        """
        with self.transaction() as records:
            old = records.get(record.name)
            if old is not None and not old.final:
                what = f"job {old.job_id}" if old.job_id else "being submitted"
                raise UserError(
                    f"endpoint {record.name!r} already exists ({old.state}, {what}); "
                    f"stop it first (hpclaunch stop {record.name}) or pick another --name"
                )
            now = time.time()
            record.created = record.created or now
            record.updated = now
            records[record.name] = record
            return old

    def claimed(self, name: str, submission: str, **changes: Any) -> Record | None:
        """Update ``name`` only while ``submission`` still owns it and it is not final
        (None otherwise: stopped or replaced meanwhile)."""
        with self.transaction() as records:
            rec = records.get(name)
            if rec is None or rec.submission != submission or rec.final:
                return None
            for key, value in changes.items():
                setattr(rec, key, value)
            rec.updated = time.time()
            return rec

    def end_unqueued(self, name: str, reason: str) -> Record | None:
        """End ``name`` only while its submit has recorded no job (else None: ``stop`` then
        cancels that job). A blind update after reading "no job yet" orphaned a job recorded
        in between; ended here, the submit cancels what it queues (:meth:`claimed`)."""
        with self.transaction() as records:
            rec = records.get(name)
            if rec is None or rec.final or rec.job_id:
                return None
            rec.state, rec.reason = ENDED, reason
            rec.ended = rec.updated = time.time()
            return rec

    def release(self, name: str, submission: str, previous: Record | None) -> bool:
        """Undo :meth:`reserve` of a submission that queued nothing; True if undone.

        An entry with a job id is kept (a job the registry knows is one ``stop`` can reach),
        and so is one ``stop`` ended meanwhile: that stop is what happened to the name.
        """
        with self.transaction() as records:
            rec = records.get(name)
            if rec is None or rec.submission != submission or rec.job_id or rec.final:
                return False
            if previous is None:
                del records[name]
            else:
                records[name] = previous
            return True

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


def decode_records(raw: bytes) -> dict[str, Record]:
    """The registry file's records; ``ValueError`` names the first bad entry and field.

    Every command reads the registry, so the good case is one typed msgspec decode of the
    whole file (a few ms for 1,000 entries); only a file that fails it is walked entry by
    entry, to name the entry and the field.
    """
    import msgspec  # where files are read, not at import: --help stays fast

    try:
        data = msgspec.json.decode(raw, type=_RegistryFile, strict=True)
    except (msgspec.ValidationError, msgspec.DecodeError):
        return _decode_slowly(raw)
    if data.schema != SCHEMA_VERSION:
        raise ValueError(f"schema version {data.schema!r}, this hpclaunch reads {SCHEMA_VERSION}")
    for name, rec in data.endpoints.items():
        _check_record(name, rec)
    return data.endpoints


@dataclass
class _RegistryFile:
    schema: Any = None
    endpoints: dict[str, Record] = field(default_factory=dict)


def _check_record(name: str, rec: Record) -> None:
    """What types alone do not say: the name rule, the key, known states, a real port."""
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise ValueError(f"endpoints.{name!r}: invalid endpoint name {name!r}")
    if rec.name != name:
        raise ValueError(f"endpoints.{name!r}: its name field says {rec.name!r}")
    if rec.state not in STATES:
        raise ValueError(f"endpoints.{name!r}: state: {rec.state!r} is not one of "
                         f"{', '.join(STATES)}")
    if rec.port and not 0 < rec.port < 65536:
        raise ValueError(f"endpoints.{name!r}: port: {rec.port} is not a port number")


def _decode_slowly(raw: bytes) -> dict[str, Record]:
    """Entry by entry, so that the error names the entry (msgspec's path does not)."""
    try:
        data = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ValueError("not UTF-8 text") from None
    if not isinstance(data, dict) or not isinstance(data.get("endpoints"), dict):
        raise ValueError("missing 'endpoints' mapping")
    version = data.get("schema")
    if version != SCHEMA_VERSION:
        raise ValueError(f"schema version {version!r}, this hpclaunch reads {SCHEMA_VERSION}")
    records: dict[str, Record] = {}
    for name, entry in data["endpoints"].items():
        if not isinstance(entry, dict):
            raise ValueError(f"endpoints.{name!r}: expected an object, got {entry!r:.40}")
        try:
            rec = Record.from_json(entry)
        except (ValueError, UserError) as exc:
            raise ValueError(f"endpoints.{name!r}: {exc}") from None
        _check_record(name, rec)
        records[name] = rec
    return records


def _schema_error(exc: Exception) -> str:
    """msgspec's "Expected `int`, got `str` - at `$.port`" as "port: expected int, got str"."""
    text = str(exc)
    message, _, where = text.partition(" - at `$")
    field_path = where.rstrip("`").lstrip(".") or "entry"
    return f"{field_path}: {message[:1].lower()}{message[1:]}".replace("`", "")


def unknown_name_message(name: str, records: dict[str, Record]) -> str:
    import difflib

    near = difflib.get_close_matches(name, list(records), n=3)
    hint = f"; did you mean {', '.join(near)}?" if near else ""
    if not records:
        return f"no endpoint named {name!r}: none are registered (hpclaunch submit MODEL ...)"
    return f"no endpoint named {name!r}{hint} (hpclaunch endpoints --all lists them)"
