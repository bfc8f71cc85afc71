"""Reading vLLM's source with ``ast``: messages as templates, where they are, what takes them.

Shared by ``refresh_vllm_facts.py`` (log facts) and ``vllm_facts_api.py`` (metrics, routes,
flags).  Nothing here imports vLLM.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

Files = list[tuple[str, str, ast.AST]]  # (path in the package, text, tree)

# Sites on other hardware (TPU, HPU, XPU, Neuron, CPU-only workers) print variants hpclaunch
# does not target; tests, benchmarks and vendored code are not vLLM's messages.
SKIP = re.compile(r"/(tests?|benchmarks|third_party)/|/(tpu|hpu|xpu|neuron|openvino)_|"
                  r"/platforms/(?!cuda|interface)|/(tpu|hpu|xpu|neuron)/")

def template(node: ast.expr) -> tuple[str, str] | None:
    """(style, text) of a message expression: "percent"/"literal" text, or an f-string/.format
    text with ``{expression}`` placeholders; None when it is not built from literals."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return ("percent" if re.search(r"%[-#0 +]*\d*(?:\.\d+)?[sdfrx%]", node.value)
                else "literal", node.value)
    if isinstance(node, ast.JoinedStr):
        out = []
        for part in node.values:
            if isinstance(part, ast.Constant):
                out.append(str(part.value).replace("{", "{{").replace("}", "}}"))
            elif isinstance(part, ast.FormattedValue):
                spec = ""
                if isinstance(part.format_spec, ast.JoinedStr):
                    pieces = part.format_spec.values
                    spec = ":" + "".join(str(getattr(v, "value", "")) for v in pieces)
                out.append("{" + ast.unparse(part.value) + spec + "}")
        return "fstring", "".join(out)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        left, right = template(node.left), template(node.right)
        if left or right:  # a computed operand (an IfExp, a call) becomes a placeholder
            left = left or ("fstring", "{" + ast.unparse(node.left) + "}")
            right = right or ("fstring", "{" + ast.unparse(node.right) + "}")
            styles = {left[0], right[0]} - {"literal"}
            style = styles.pop() if len(styles) == 1 else ("mixed" if styles else "literal")
            return style, left[1] + right[1]
    if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
            and node.func.attr == "format" and isinstance(node.func.value, ast.Constant)):
        return "format", str(node.func.value.value)
    return None


def parents(tree: ast.AST) -> dict[ast.AST, ast.AST]:
    return {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}


def message_site(const: ast.expr, up: dict[ast.AST, ast.AST]) -> tuple[ast.expr, ast.AST]:
    """Grow a string constant to its whole message expression, and the statement around it."""
    node: ast.AST = const
    while isinstance(up.get(node), (ast.JoinedStr, ast.BinOp, ast.FormattedValue)) or (
        isinstance(up.get(node), ast.Attribute) and getattr(up[node], "attr", "") == "format"
    ):
        node = up[node]
        if isinstance(node, ast.Attribute):
            node = up[node]  # the .format(...) call
    expr = node
    while not isinstance(node, ast.stmt):
        node = up[node]
    assert isinstance(expr, ast.expr)
    return expr, node


def call_name(stmt: ast.AST, expr: ast.expr, up: dict[ast.AST, ast.AST]) -> str:
    """What the message is given to: ``logger.info``, ``raise ValueError``, ``assign msg``..."""
    node: ast.AST | None = up.get(expr)
    while node is not None and not isinstance(node, ast.stmt):
        if isinstance(node, ast.Call):
            return ast.unparse(node.func)
        node = up.get(node)
    if isinstance(stmt, ast.Raise) and stmt.exc is not None:
        return "raise"
    return type(stmt).__name__.lower()


def excerpt(lines: list[str], stmt: ast.AST) -> str:
    start, end = stmt.lineno, getattr(stmt, "end_lineno", stmt.lineno) or stmt.lineno
    return "\n".join(lines[start - 1 : min(end, start + 14)])


def package_files(root: Path, package: str) -> Files:
    out = []
    for path in sorted((root / package).rglob("*.py")):
        rel = path.relative_to(root).as_posix()
        if SKIP.search("/" + rel):
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        try:
            out.append((rel, text, ast.parse(text)))
        except SyntaxError:
            continue
    return out


def dataclass_fields(files: Files, rel: str, cls: str) -> list[str]:
    for name, _text, tree in files:
        if name != rel:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef) and node.name == cls:
                return [s.target.id for s in node.body if isinstance(s, ast.AnnAssign)
                        and isinstance(s.target, ast.Name) and not s.target.id.startswith("_")
                        and "ClassVar" not in ast.unparse(s.annotation)]
    return []

