"""SQL built from strings, rewritten to pass its values as query parameters (the `sql-parameters`
rewrite of secai.analysis.pyfix): the query's literal text keeps its words, each value becomes the
driver's placeholder (Django's Manager.raw and most drivers: %s; sqlite3: ?) where a value may
stand, and the values go to execute()/raw() as their second argument. A value in a place no
parameter can take (a table or column name, a list for IN, part of a longer quoted string) and a
driver whose placeholder is not known make no rewrite.
"""

from __future__ import annotations

import ast
import re
import string

from secai.analysis.pysource import Edit, NoRewrite, Source, after_arguments, literal, plain_arguments


# SQL built from strings: the pieces, and where a value may become a query parameter
_SQL = re.compile(r"(?i)\b(select|insert|update|delete|replace)\b")
_VALUE_AFTER = re.compile(r"(?i)(?:=|<>|!=|<|>|\blike|\blimit|\boffset)\s*$")
EXECUTORS = ("execute", "raw")


def _pieces(node: ast.AST) -> list | None:
    """A string made of literal text and values: + of strings, an f-string, "..." % values or
    "...".format(values) -> [text or value node, ...]; None for anything else."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        left, right = _pieces(node.left), _pieces(node.right)
        if left is None or right is None:
            return None
        return left + right
    if isinstance(node, ast.JoinedStr):
        out = []
        for v in node.values:
            if isinstance(v, ast.Constant):
                out.append(v.value)
            elif isinstance(v, ast.FormattedValue) and v.conversion == -1 and v.format_spec is None:
                out.append(v.value)
            else:
                return None
        return out
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mod) and isinstance(node.left, ast.Constant) \
            and isinstance(node.left.value, str):
        values = node.right.elts if isinstance(node.right, ast.Tuple) else [node.right]
        parts = re.split(r"(%%|%s)", node.left.value)
        if re.search(r"%[^%s]", re.sub(r"%%|%s", "", node.left.value)) or parts.count("%s") != len(values):
            return None
        out, it = [], iter(values)
        for p in parts:
            out.append(next(it) if p == "%s" else "%" if p == "%%" else p)
        return out
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "format" \
            and isinstance(node.func.value, ast.Constant) and isinstance(node.func.value.value, str) \
            and plain_arguments(node) and not node.keywords:
        out, auto = [], 0
        try:
            fields = list(string.Formatter().parse(node.func.value.value))
        except ValueError:
            return None
        for text, name, spec, conversion in fields:
            out.append(text)
            if name is None:
                continue
            if spec or conversion or not (name == "" or name.isdigit()):
                return None
            index = auto if name == "" else int(name)
            auto += 1
            if index >= len(node.args):
                return None
            out.append(node.args[index])
        return out
    if isinstance(node, (ast.Name, ast.Attribute, ast.Subscript, ast.Call)):
        return [node]
    return None


def _parameterized(pieces: list, placeholder: str) -> tuple[str, list] | None:
    """(the query with placeholders, the values in order), or None when a value is not in a place a
    parameter can take (a table or column name, a list for IN, part of a quoted string)."""
    pieces = [p for p in pieces if not (isinstance(p, str) and not p)]
    if placeholder == "?" and any(isinstance(p, str) and "?" in p for p in pieces):
        return None
    text, values = "", []
    for i, p in enumerate(pieces):
        if isinstance(p, str):
            text += p.replace("%", "%%") if placeholder == "%s" else p
            continue
        after = pieces[i + 1] if i + 1 < len(pieces) and isinstance(pieces[i + 1], str) else ""
        if text.endswith("'") and after.startswith("'"):
            text, after = text[:-1], after[1:]
        elif text.endswith(("'", '"')) or after.startswith(("'", '"')) or not _VALUE_AFTER.search(text):
            return None
        if after[:1].isalnum() or after[:1] == "_":
            after = " " + after
        if i + 1 < len(pieces) and isinstance(pieces[i + 1], str):
            pieces[i + 1] = after
        text += placeholder
        values.append(p)
    if not values or not _SQL.search(text):
        return None
    return text, values


def _placeholder(src: Source, call: ast.Call) -> str:
    """The parameter style of the driver a query is given to."""
    if call.func.attr == "raw":
        return "%s"   # Django's Manager.raw, whatever the database
    drivers = {"?": src.imports("sqlite3"),
               "%s": src.imports("django.db", "psycopg2", "psycopg", "pymysql", "MySQLdb", "mysql.connector")}
    styles = [style for style, used in drivers.items() if used]
    if len(styles) != 1:
        raise NoRewrite("the database driver (and so its placeholder) is not known")
    return styles[0]


def _executes(call: ast.AST) -> bool:
    return (isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute) and call.func.attr in EXECUTORS
            and len(call.args) == 1 and not call.keywords)


def sql_parameters(src: Source, first: int, last: int, options: dict) -> tuple[list[Edit], dict]:
    """A query built from strings and values, given to cursor.execute or Model.objects.raw, is
    written with the driver's placeholders and the values are passed as parameters:
    `q = "... WHERE id='" + x + "'"` ... `execute(q)` -> `q = "... WHERE id=%s"` ... `execute(q, (x,))`."""
    for node in ast.walk(src.tree):
        if isinstance(node, ast.Assign) and first <= node.lineno <= last and len(node.targets) == 1 \
                and isinstance(node.targets[0], ast.Name) and _is_query(pieces := _pieces(node.value)):
            name = node.targets[0].id
            uses = _later_executions(src, src.scope(node), node, name)
            if not uses:
                raise NoRewrite(f"{name} is not given to execute() or raw() in the code that follows")
            styles = {_placeholder(src, c) for c in uses}
            if len(styles) != 1:
                raise NoRewrite("the query goes to drivers of different placeholder styles")
            built = _parameterized(pieces, styles.pop())
            if built is None:
                raise NoRewrite("a value is not in a place a query parameter can take")
            query, values = built
            params = _params(src, values)
            edits = [src.replace(node.value, literal(query, src.quote(_first_literal(node.value))))]
            edits += [after_arguments(src, c, f", {params}") for c in uses]
            return edits, {"query": name, "values": params}
        if _executes(node) and first <= node.lineno <= last and _is_query(pieces := _pieces(node.args[0])):
            built = _parameterized(pieces, _placeholder(src, node))
            if built is None:
                raise NoRewrite("a value is not in a place a query parameter can take")
            params = _params(src, built[1])
            arg = node.args[0]
            return [src.replace(arg, f"{literal(built[0], src.quote(_first_literal(arg)))}, {params}")], \
                {"query": "the query", "values": params}
    raise NoRewrite("no query built from strings on the finding's lines")


def _is_query(pieces: list | None) -> bool:
    """SQL words in the literal text, and values pasted in."""
    return bool(pieces) and any(not isinstance(p, str) for p in pieces) \
        and bool(_SQL.search(" ".join(p for p in pieces if isinstance(p, str))))


def _first_literal(node: ast.AST):
    return next((n for n in ast.walk(node) if isinstance(n, (ast.Constant, ast.JoinedStr))), None)


def _params(src: Source, values: list) -> str:
    texts = [src.segment(v) for v in values]
    return f"({texts[0]},)" if len(texts) == 1 else f"({', '.join(texts)})"


def _later_executions(src: Source, scope: ast.AST, assign: ast.Assign, name: str) -> list[ast.Call]:
    """The execute/raw calls given `name` after `assign` in its function (or module), up to the
    next assignment of the name; none when the name is passed to one with more arguments."""
    after = (assign.end_lineno, assign.end_col_offset)
    events = []
    for n in ast.walk(scope):
        if not hasattr(n, "lineno") or (n.lineno, n.col_offset) <= after:
            continue
        if isinstance(n, ast.Name) and n.id == name and isinstance(n.ctx, ast.Store):
            events.append(((n.lineno, n.col_offset), None))
        elif isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and n.func.attr in EXECUTORS \
                and any(isinstance(a, ast.Name) and a.id == name for a in n.args):
            if not _executes(n):
                return []
            events.append(((n.lineno, n.col_offset), n))
    calls = []
    for _, call in sorted(events, key=lambda e: e[0]):
        if call is None:
            break
        calls.append(call)
    return calls
