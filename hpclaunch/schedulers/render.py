"""Turn a Plan into a job script with Jinja2.

Every ``{{ value }}`` is shell-quoted by default (``finalize``), so a model name
or results path containing quotes, spaces or ``$(...)`` arrives in bash as data.
Only values marked :class:`Raw` (directive lines Python already built, the user's
own setup lines) pass through unchanged. Undefined variables are errors.
"""

from __future__ import annotations

import json
import shlex
from typing import Any

from hpclaunch.config import builtin_dir
from hpclaunch.errors import UserError


class Raw(str):
    """A string that is already valid shell and must not be quoted again."""


def _finalize(value: Any) -> str:
    if isinstance(value, Raw):
        return value
    if isinstance(value, bool):
        raise TypeError("refusing to render a bare boolean into a shell script")
    if isinstance(value, int):
        return str(value)
    return shlex.quote(str(value))


def _shjoin(argv: list[str]) -> Raw:
    return Raw(shlex.join(str(a) for a in argv))


def _environment() -> Any:
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(builtin_dir("job_templates"))),
        undefined=jinja2.StrictUndefined,
        finalize=_finalize,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,
    )
    env.filters["raw"] = Raw
    env.filters["shjoin"] = _shjoin
    env.filters["q"] = lambda v: Raw(shlex.quote(str(v)))
    # Inside a comment a newline would end the comment and start code: JSON-escape.
    env.filters["comment"] = lambda v: Raw(json.dumps(str(v))[1:-1])
    return env


def render_template(template: str, context: dict[str, Any]) -> str:
    import jinja2

    try:
        return _environment().get_template(template).render(**context)
    except jinja2.UndefinedError as exc:
        raise UserError(f"template {template}: {exc.message}") from exc
    except jinja2.TemplateNotFound as exc:
        raise UserError(f"no job template {exc.name!r} in {builtin_dir('job_templates')}") from exc
