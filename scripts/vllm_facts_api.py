"""What a vLLM server exposes, read from its source: /metrics series, HTTP routes, serve flags."""

from __future__ import annotations

import ast
import re
from typing import Any

from vllm_facts_ast import Files, dataclass_fields, parents

ROUTE_METHODS = {"get", "post", "put", "delete", "api_route"}
FLAG_FILES = ("vllm/engine/arg_utils.py", "vllm/entrypoints/openai/cli_args.py",
              "vllm/entrypoints/common/cli_args.py", "vllm/entrypoints/cli/serve.py")


def _labels(node: ast.expr | None, fn: ast.AST | None) -> list[str] | str | None:
    if node is None:
        return None
    if isinstance(node, (ast.List, ast.Tuple)):
        vals = [e.value for e in node.elts if isinstance(e, ast.Constant)]
        return [str(v) for v in vals] if len(vals) == len(node.elts) else ast.unparse(node)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        left, right = _labels(node.left, fn), _labels(node.right, fn)
        if isinstance(left, list) and isinstance(right, list):
            return left + right
    if isinstance(node, ast.Name) and fn is not None:
        for stmt in ast.walk(fn):
            if (isinstance(stmt, ast.Assign) and len(stmt.targets) == 1
                    and isinstance(stmt.targets[0], ast.Name) and stmt.targets[0].id == node.id):
                return _labels(stmt.value, None)
    return ast.unparse(node)


def metrics(files: Files) -> dict[str, list[dict[str, Any]]]:
    """Every definition of every ``vllm:`` metric (V0 and V1 engines may both define one)."""
    out: dict[str, list[dict[str, Any]]] = {}
    for rel, text, tree in files:
        if '"vllm:' not in text:
            continue
        up = parents(tree)
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            kw = {k.arg: k.value for k in node.keywords if k.arg}
            name = kw.get("name") or (node.args[0] if node.args else None)
            if not (isinstance(name, ast.Constant) and str(name.value).startswith("vllm:")):
                continue
            func = ast.unparse(node.func).lower()
            kind = next((k for k in ("counter", "gauge", "histogram") if k in func), None)
            if kind is None:
                continue
            fn: ast.AST | None = node
            while fn is not None and not isinstance(fn, ast.FunctionDef):
                fn = up.get(fn)
            # prometheus_client exposes a Counter as <name>_total.
            exposed = str(name.value).removesuffix("_total") + "_total" if kind == "counter" \
                else str(name.value)
            out.setdefault(exposed, []).append({"file": rel, "line": node.lineno, "kind": kind,
                                                "labels": _labels(kw.get("labelnames"), fn)})
        for node in ast.walk(tree):  # vllm:cache_config_info: one label per CacheConfig field
            if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant) \
                    and node.value.value == "vllm:cache_config_info":
                labels = dataclass_fields(files, "vllm/config/cache.py", "CacheConfig") or \
                    dataclass_fields(files, "vllm/config.py", "CacheConfig")
                out["vllm:cache_config_info"] = [{"file": rel, "line": node.lineno,
                                                  "kind": "gauge",
                                                  "labels": sorted({*labels, "engine"})}]
    return dict(sorted(out.items()))


# ------------------------------------------------------------------------------ routes, flags


def routes(files: Files) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for rel, _text, tree in files:
        if not rel.startswith("vllm/entrypoints/"):
            continue
        for fn in ast.walk(tree):
            if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for deco in fn.decorator_list:
                if not (isinstance(deco, ast.Call) and isinstance(deco.func, ast.Attribute)
                        and deco.func.attr in ROUTE_METHODS and deco.args
                        and isinstance(deco.args[0], ast.Constant)
                        and str(deco.args[0].value).startswith("/")):
                    continue
                path = str(deco.args[0].value)
                entry = out.setdefault(path, {"methods": [], "file": rel, "line": deco.lineno,
                                              "handler": fn.name})
                methods = [deco.func.attr.upper()]
                for kw in deco.keywords:
                    if kw.arg == "methods" and isinstance(kw.value, (ast.List, ast.Tuple)):
                        methods = [str(getattr(e, "value", "?")) for e in kw.value.elts]
                for method in methods:
                    if method not in entry["methods"]:
                        entry["methods"].append(method)
                if path == "/health":
                    body = ast.unparse(fn)
                    entry["status_codes"] = sorted({int(c) for c in re.findall(
                        r"status_code=(\d{3})", body)} | {200})
        for node in ast.walk(tree):  # /metrics is prometheus_client's app, mounted
            if (isinstance(node, ast.Call) and ast.unparse(node.func).endswith("Mount")
                    and node.args and isinstance(node.args[0], ast.Constant)):
                out.setdefault(str(node.args[0].value), {"methods": ["GET"], "file": rel,
                                                         "line": node.lineno, "handler": "Mount"})
    return dict(sorted(out.items()))


def _class_fields(files: Files) -> dict[str, tuple[list[str], dict[str, str]]]:
    """Config and Args dataclasses: name -> (base class names, field -> annotation text)."""
    out: dict[str, tuple[list[str], dict[str, str]]] = {}
    for _rel, _text, tree in files:
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef) and node.name.endswith(("Config", "Args")):
                own = {st.target.id: ast.unparse(st.annotation) for st in node.body
                       if isinstance(st, ast.AnnAssign) and isinstance(st.target, ast.Name)}
                out.setdefault(node.name, ([ast.unparse(b) for b in node.bases], own))
    return out


_UNKNOWN = object()


def _constant(node: ast.expr | None) -> Any:
    """A literal default (``0.92``, ``Field(default=0.92, gt=0)``), or _UNKNOWN."""
    if isinstance(node, ast.Call) and ast.unparse(node.func) in ("Field", "field"):
        node = next((k.value for k in node.keywords if k.arg == "default"), None)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub) \
            and isinstance(node.operand, ast.Constant):
        return -node.operand.value
    return node.value if isinstance(node, ast.Constant) else _UNKNOWN


def _class_defaults(files: Files) -> dict[str, tuple[list[str], dict[str, Any]]]:
    """Config and Args dataclasses: name -> (base class names, field -> literal default)."""
    out: dict[str, tuple[list[str], dict[str, Any]]] = {}
    for _rel, _text, tree in files:
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef) and node.name.endswith(("Config", "Args")):
                own = {st.target.id: _constant(st.value) for st in node.body
                       if isinstance(st, ast.AnnAssign) and isinstance(st.target, ast.Name)}
                out.setdefault(node.name, ([ast.unparse(b) for b in node.bases], own))
    return out


def _annotation(classes: dict[str, tuple[list[str], dict[str, str]]], cls: str,
                field: str) -> str | None:
    bases, own = classes.get(cls, ([], {}))
    if field in own:
        return own[field]
    return next((a for b in bases if (a := _annotation(classes, b, field))), None)


def _lookup(defaults: dict[str, tuple[list[str], dict[str, Any]]], cls: str,
            field: str) -> Any:
    bases, own = defaults.get(cls, ([], {}))
    if field in own:
        return own[field]
    for base in bases:
        if (found := _lookup(defaults, base, field)) is not _UNKNOWN:
            return found
    return _UNKNOWN


def _call_default(node: ast.Call, field: str,
                  defaults: dict[str, tuple[list[str], dict[str, Any]]]) -> Any:
    """An add_argument call's default: ``default=``, a ``"default"`` key next to the
    unpacked kwargs, else the config field's own literal default."""
    for kw in node.keywords:
        if kw.arg == "default":
            return _constant(kw.value)
        if kw.arg is None and isinstance(kw.value, ast.Dict):
            for key, value in zip(kw.value.keys, kw.value.values, strict=True):
                if isinstance(key, ast.Constant) and key.value == "default":
                    return _constant(value)
    if not field:
        return _UNKNOWN
    cls, _, name = field.partition(".")
    return _lookup(defaults, cls, name)


def _kind(annotation: str | None) -> str | None:
    """What vLLM's get_kwargs makes of a field: a --x/--no-x switch ("bool") for a bool,
    a value for the rest (bool | str | None is a value with an optional argument)."""
    if annotation is None:
        return None
    names = set(re.findall(r"\w+", annotation)) - {"Optional", "Union", "None", "SkipValidation"}
    if names == {"bool", "str"}:
        return "value"
    return "bool" if names == {"bool"} else "value"


_NUMBERS = {"int", "float", "human_readable_int", "human_readable_int_or_auto"}


def _value_type(annotation: str | None, field: str, readable: set[str]) -> str | None:
    """The number type get_kwargs gives a plain int or float field; None for anything else
    (strings, literals, JSON, unions), which this script does not derive."""
    if annotation is None:
        return None
    names = set(re.findall(r"\w+", annotation)) - {"Optional", "Union", "None", "SkipValidation"}
    if names == {"float"}:
        return "float"
    if names != {"int"}:
        return None
    if field == "max_model_len" and "<auto>" in readable:  # 0.2x: "auto" or -1 fits the cache
        return "human_readable_int_or_auto"
    return "human_readable_int" if field in readable else "int"


def _readable_ints(files: Files) -> set[str]:
    """Fields vLLM parses with human_readable_int (``human_readable_int_args = {...}``, in
    0.11 ``human_readable_ints``), plus "<auto>" where max_model_len also takes "auto"."""
    out: set[str] = set()
    for rel, text, tree in files:
        if rel != "vllm/engine/arg_utils.py":
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Assign) and isinstance(node.value, ast.Set) \
                    and ast.unparse(node.targets[0]).startswith("human_readable_int"):
                out |= {str(e.value) for e in node.value.elts if isinstance(e, ast.Constant)}
        if "human_readable_int_or_auto" in text:
            out.add("<auto>")
    return out


def _negations(name: str, kind: str | None, pairs: bool) -> list[str]:
    """argparse's BooleanOptionalAction adds --no-x; from 0.2x vLLM registers its
    EnableDisableAction instead, which also pairs --enable-x with --disable-x."""
    if kind != "bool":
        return []
    out = ["--no-" + name[2:]]
    for prefix, inverse in (("--enable-", "--disable-"), ("--disable-", "--enable-")):
        if pairs and name.startswith(prefix):
            out.append(inverse + name[len(prefix):])
    return out


def _call_kind(node: ast.Call, sources: dict[str, str],
               classes: dict[str, tuple[list[str], dict[str, str]]],
               readable: set[str]) -> tuple[str | None, str, str | None]:
    """(kind, "Class.field" or "", number type or None) of one add_argument call."""
    for kw in node.keywords:
        if kw.arg == "action":
            text = ast.unparse(kw.value)
            kind = ("store_true" if "store_true" in text else
                    "bool" if "BooleanOptionalAction" in text else "value")
            return kind, "", None
    for kw in node.keywords:
        if kw.arg == "type" and ast.unparse(kw.value) in _NUMBERS:
            return "value", "", ast.unparse(kw.value)
    for kw in node.keywords:  # **model_kwargs["x"], or **{**model_kwargs["x"], "default": ..}
        if kw.arg is not None:
            continue
        inner = kw.value.values if isinstance(kw.value, ast.Dict) else [kw.value]
        for sub in inner:
            if isinstance(sub, ast.Subscript) and isinstance(sub.value, ast.Name) \
                    and sub.value.id in sources and isinstance(sub.slice, ast.Constant):
                cls, field = sources[sub.value.id], str(sub.slice.value)
                annotation = _annotation(classes, cls, field)
                return (_kind(annotation), f"{cls}.{field}",
                        _value_type(annotation, field, readable))
    return "value", "", None


def serve_flags(files: Files) -> dict[str, dict[str, Any]]:
    """Flag names with aliases, and whether each is a switch: explicit add_argument calls
    (their action, or the field their ``**X_kwargs["field"]`` comes from), and one
    ``--field-name`` per field of the FrontendArgs dataclasses (vLLM derives those flags
    from the fields).  ``kind`` is None where the source does not say."""
    classes = _class_fields(files)
    defaults = _class_defaults(files)
    pairs = any("EnableDisableAction" in text for _rel, text, _tree in files)
    readable = _readable_ints(files)
    out: dict[str, dict[str, Any]] = {}
    for rel, _text, tree in files:
        if rel not in FLAG_FILES:
            continue
        sources = {}  # model_kwargs = get_kwargs(ModelConfig)
        for node in ast.walk(tree):
            if isinstance(node, ast.Assign) and isinstance(node.value, ast.Call) \
                    and ast.unparse(node.value.func) == "get_kwargs" and node.value.args \
                    and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
                sources[node.targets[0].id] = ast.unparse(node.value.args[0])
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                    and node.func.attr == "add_argument":
                names = [a.value for a in node.args if isinstance(a, ast.Constant)
                         and str(a.value).startswith("-")]
                if names and rel != "vllm/entrypoints/cli/serve.py":
                    longs = [n for n in names if n.startswith("--")] or names
                    kind, field, number = _call_kind(node, sources, classes, readable)
                    default = _call_default(node, field, defaults)
                    out.setdefault(longs[0], {"aliases": [n for n in names if n != longs[0]],
                                              "kind": kind, "number_type": number,
                                              **({} if default is _UNKNOWN
                                                 else {"default": default}),
                                              "negations": _negations(longs[0], kind, pairs),
                                              "field": field, "file": rel,
                                              "line": node.lineno})
            if isinstance(node, ast.ClassDef) and node.name.endswith("FrontendArgs"):
                for field in dataclass_fields(files, rel, node.name):
                    name = "--" + field.replace("_", "-")
                    annotation = _annotation(classes, node.name, field)
                    kind = _kind(annotation)
                    default = _lookup(defaults, node.name, field)
                    out.setdefault(name, {"aliases": [], "kind": kind,
                                          **({} if default is _UNKNOWN
                                             else {"default": default}),
                                          "number_type": _value_type(annotation, field, set()),
                                          "negations": _negations(name, kind, pairs),
                                          "field": f"{node.name}.{field}", "file": rel,
                                          "line": node.lineno})
    return dict(sorted(out.items()))


def parser_names(files: Files) -> dict[str, list[str]]:
    """Registered ``--reasoning-parser`` and ``--tool-call-parser`` names: the keys of
    ``_REASONING_PARSERS_TO_REGISTER`` / ``_TOOL_PARSERS_TO_REGISTER`` (0.2x), and
    ``@ReasoningParserManager.register_module("name")`` decorators (0.11 and before)."""
    found: dict[str, set[str]] = {"reasoning": set(), "tool": set()}
    for rel, text, tree in files:
        if "PARSERS_TO_REGISTER" not in text and "register_module(" not in text:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Assign) and isinstance(node.value, ast.Dict) \
                    and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
                target = node.targets[0].id
                kind = ("reasoning" if target == "_REASONING_PARSERS_TO_REGISTER" else
                        "tool" if target == "_TOOL_PARSERS_TO_REGISTER" else None)
                if kind:
                    found[kind] |= {str(k.value) for k in node.value.keys
                                    if isinstance(k, ast.Constant)}
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                    and node.func.attr == "register_module" and "/tests/" not in "/" + rel \
                    and not rel.endswith("abs_reasoning_parsers.py") \
                    and not rel.endswith("abstract_tool_parser.py"):
                manager = ast.unparse(node.func.value)
                kind = ("reasoning" if "Reasoning" in manager else
                        "tool" if "Tool" in manager else None)
                args = [*node.args, *(k.value for k in node.keywords if k.arg == "name")]
                for arg in args[:1]:
                    items = arg.elts if isinstance(arg, (ast.List, ast.Tuple)) else [arg]
                    names = {str(i.value) for i in items if isinstance(i, ast.Constant)}
                    if kind:
                        found[kind] |= names
    return {kind: sorted(names) for kind, names in found.items()}
