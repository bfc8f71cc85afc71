"""The bundled model catalogue, and the one lookup that tries every offline source.

The planner needs a handful of numbers from a model's ``config.json`` to size the KV cache,
pick a reasoning parser and refuse impossible layouts before anything is queued. Login
nodes often have no internet, so the facts come from three offline places, in order:

1. the bundled catalog (``hpclaunch/planning/data/model_catalog.json``), which also defines short
   aliases such as ``Qwen3-VL-2B``;
2. a local model directory that holds a ``config.json``;
3. the Hugging Face cache (see :mod:`hpclaunch.planning.modelconfig`).

Nothing here downloads: an id that is in none of them gives ``None`` and the caller decides.
"""

from __future__ import annotations

import difflib
import json
import os
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path

from hpclaunch.errors import UserError
from hpclaunch.planning.modelconfig import cached_snapshot, info_from_dir
from hpclaunch.planning.modelinfo import ModelInfo, RecurrentState
from hpclaunch.validate import units

__all__ = ["catalog_names", "model_info", "resolve_model_id"]


@dataclass(frozen=True)
class _Catalog:
    models: tuple[ModelInfo, ...]
    by_key: dict[str, ModelInfo]  # lower-cased id, id tail and alias -> info
    names: tuple[str, ...]  # canonical short names (id tails + explicit aliases)


def _data_text(name: str) -> str:
    """A bundled data file, through importlib.resources so zipped installs work too; falls
    back to the file beside this module while ``hpclaunch`` is an implicit namespace package
    (3.11's resources cannot read those when sys.path holds a relative entry)."""
    try:
        data = resources.files("hpclaunch.planning").joinpath("data")
        return data.joinpath(name).read_text("utf-8")
    except (NotADirectoryError, FileNotFoundError, TypeError):
        return (Path(__file__).resolve().parent / "data" / name).read_text("utf-8")


@lru_cache(maxsize=1)
def _catalog() -> _Catalog:
    raw = json.loads(_data_text("model_catalog.json"))
    models: list[ModelInfo] = []
    by_key: dict[str, ModelInfo] = {}
    names: list[str] = []
    for entry in raw["models"]:
        fields = dict(entry)
        aliases = fields.pop("aliases", [])
        for key in ("layer_types", "padded_experts"):
            if key in fields:  # JSON has lists; the record is hashable and frozen
                fields[key] = tuple(fields[key])
        if isinstance(fields.get("recurrent"), dict):  # a hybrid's state shape
            fields["recurrent"] = RecurrentState(**fields["recurrent"])
        info = ModelInfo(**fields)
        models.append(info)
        tail = info.model_id.rsplit("/", 1)[-1]
        for key in (info.model_id, tail, *aliases):
            existing = by_key.get(key.lower())
            if existing is not None and existing is not info:
                raise ValueError(f"model_catalog.json: {key!r} names two models")
            by_key[key.lower()] = info
        names.extend([tail, *aliases])
    return _Catalog(tuple(models), by_key, tuple(names))


def catalog_names() -> list[str]:
    """Short names the bundled catalog accepts (id tails and aliases), sorted case-insensitively."""
    return sorted(set(_catalog().names), key=str.lower)


def _looks_like_path(name: str) -> bool:
    return name.startswith(("/", "./", "../", "~")) or name in (".", "..")


def resolve_model_id(name: str) -> str:
    """Turn what a user typed into the id vLLM should be given.

    A catalog alias (``Qwen3-VL-2B``, any case) becomes its full id
    (``Qwen/Qwen3-VL-2B-Instruct``). An existing local path or an ``org/name`` id is returned
    unchanged: vLLM accepts any Hub id and we must not second-guess private models.

    Raises
    ------
    UserError
        For an unknown bare name (with the closest catalog names), a path that does not exist,
        or something that is neither a path nor ``org/name``.
    """
    text = name.strip()
    if not text:
        raise UserError("model name is empty: give a Hugging Face id (org/name), a local "
                        "directory or a catalog name such as Qwen3-8B")
    units.check(text, units.model_name, "model")
    if os.path.exists(os.path.expanduser(text)):
        return text
    if _looks_like_path(text):
        raise UserError(f"model directory {text!r} does not exist: check the path, or give a "
                        "Hugging Face id (org/name)")
    hit = _catalog().by_key.get(text.lower())
    if hit is not None and "/" not in text:
        return hit.model_id
    if "/" in text:
        org, _, rest = text.partition("/")
        if org and rest and "/" not in rest:
            return text
        raise UserError(f"model {text!r} is neither an existing directory nor a Hugging Face "
                        "id of the form org/name")
    names = catalog_names()
    lowered = {n.lower(): n for n in names}
    near = [lowered[n] for n in difflib.get_close_matches(text.lower(), list(lowered), n=4,
                                                           cutoff=0.5)]
    hint = f"; did you mean {', '.join(near)}?" if near else ""
    raise UserError(f"unknown model {text!r}{hint} Give a full Hugging Face id (org/name), a "
                    "local directory, or one of hpclaunch's catalog names")


def model_info(name_or_id: str) -> ModelInfo | None:
    """Facts about a model from the catalog, a local directory or the HF cache; never the network.

    Returns ``None`` when the model is in none of them (or its config.json is unreadable), so
    callers can say "estimate unavailable" instead of guessing.
    """
    text = name_or_id.strip()
    hit = _catalog().by_key.get(text.lower())
    if hit is not None:
        return hit
    local = Path(text).expanduser()
    if (local / "config.json").is_file():
        return info_from_dir(local, text)
    if text.count("/") == 1 and not _looks_like_path(text):
        snapshot = cached_snapshot(text)
        if snapshot is not None:
            return info_from_dir(snapshot, text)
    return None
