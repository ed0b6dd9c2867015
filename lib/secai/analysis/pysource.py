"""Python source as the tree-aware fix rewrites see it (secai.analysis.pyfix, secai.analysis.pysql):
the file's lines and its parse tree (Python's `ast`: parsed, never run), what its imports make of a
name, node positions in characters, and text edits at those positions.

    src = Source(text)
    src.qualname(call.func)          # 'random.randint' for randint after `from random import randint`
    src.replace(node, "new text")    # an Edit: (line, column, end line, end column, text)
"""

from __future__ import annotations

import ast
import re


class NoRewrite(Exception):
    """The rewrite does not apply to this code; the message says why."""


Edit = tuple[int, int, int, int, str]   # line, column, end line, end column (characters), new text


class Source:
    """A parsed Python file: its lines, tree, and what its imports make of a name."""

    def __init__(self, text: str):
        self.text = text
        self.lines = text.split("\n")
        self.tree = ast.parse(text)   # SyntaxError / ValueError: not Python
        self.names: dict[str, str] = {}
        self.parents: dict[ast.AST, ast.AST] = {}
        for node in ast.walk(self.tree):
            for child in ast.iter_child_nodes(node):
                self.parents[child] = node
            if isinstance(node, ast.Import):
                for a in node.names:
                    self.names[a.asname or a.name.split(".")[0]] = a.name if a.asname else a.name.split(".")[0]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                for a in node.names:
                    if a.name != "*":
                        self.names[a.asname or a.name] = f"{node.module}.{a.name}"

    def qualname(self, node: ast.AST) -> str | None:
        """`random.randint` for randint after `from random import randint`, r.randint after
        `import random as r`, random.randint itself; a name not imported stays itself (open)."""
        if isinstance(node, ast.Name):
            return self.names.get(node.id, node.id)
        if isinstance(node, ast.Attribute):
            base = self.qualname(node.value)
            return f"{base}.{node.attr}" if base else None
        return None

    def imports(self, *modules: str) -> bool:
        return any(m == name or m.startswith(name + ".") or name.startswith(m + ".")
                   for m in self.names.values() for name in modules)

    def col(self, line: int, byte_col: int) -> int:
        """A column in characters for ast's UTF-8 byte offset."""
        return len(self.lines[line - 1].encode("utf-8")[:byte_col].decode("utf-8", "ignore"))

    def start(self, node) -> tuple[int, int]:
        return node.lineno, self.col(node.lineno, node.col_offset)

    def end(self, node) -> tuple[int, int]:
        return node.end_lineno, self.col(node.end_lineno, node.end_col_offset)

    def segment(self, node) -> str:
        return ast.get_source_segment(self.text, node) or ""

    def replace(self, node, text: str) -> Edit:
        return (*self.start(node), *self.end(node), text)

    def insert_at(self, where: tuple[int, int], text: str) -> Edit:
        return (*where, *where, text)

    def quote(self, node: ast.AST | None) -> str:
        """The quote character a string literal was written with ('"' when there is none)."""
        m = re.match(r"[rRbBuUfF]*(['\"])", self.segment(node)) if node is not None else None
        return m.group(1) if m else '"'

    def calls(self, first: int, last: int):
        """Calls that start on lines first..last, outermost first."""
        return sorted((n for n in ast.walk(self.tree) if isinstance(n, ast.Call) and first <= n.lineno <= last),
                      key=lambda n: (n.lineno, n.col_offset))

    def statement(self, node: ast.AST) -> ast.stmt:
        while not isinstance(node, ast.stmt):
            node = self.parents[node]
        return node

    def scope(self, node: ast.AST) -> ast.AST:
        """The function (or module) a node runs in."""
        while node in self.parents and not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            node = self.parents[node]
        return node

    def indent(self, line: int) -> str:
        text = self.lines[line - 1]
        return text[:len(text) - len(text.lstrip())]


def block_unit(src: Source, node: ast.stmt) -> str:
    """One level of indentation as this code writes it: a block's own step past its header."""
    parent = src.parents.get(node)
    headers = [parent] if isinstance(parent, ast.stmt) else \
        [n for n in ast.walk(src.tree) if isinstance(n, ast.stmt) and isinstance(getattr(n, "body", None), list)]
    for header in headers:
        inner, outer = src.indent(header.body[0].lineno), src.indent(header.lineno)
        if header.body[0].lineno > header.lineno and inner.startswith(outer) and len(inner) > len(outer):
            return inner[len(outer):]
    return "    "


def after_arguments(src: Source, call: ast.Call, text: str) -> Edit:
    """Insert `text` (', name=value') after a call's last argument."""
    args = [*call.args, *call.keywords]
    if not args:
        raise NoRewrite("the call has no arguments")
    return src.insert_at(max(src.end(a) for a in args), text)


def plain_arguments(call: ast.Call) -> bool:
    """No *args or **kwargs (which may hold anything, the keyword being added included)."""
    return not any(isinstance(a, ast.Starred) for a in call.args) and all(k.arg for k in call.keywords)


def literal(value: str, quote: str) -> str:
    """A Python string literal for `value`, in the given quote where it can be."""
    text = repr(value)
    if text[0] != quote and quote not in value and "\\" not in text:
        text = quote + value + quote
    return text
