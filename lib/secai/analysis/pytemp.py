"""The `temp-file-handle` and `temp-file-name` rewrites (secai.analysis.pyfix): a hard-coded temporary path (bandit B108:
"/tmp/...", "/var/tmp/...", "/dev/shm/...") that is only one function's scratch file becomes a
private temporary file. Two shapes, nothing else:

    path = "/tmp/report.csv"                 fd, path = tempfile.mkstemp(suffix=".csv")
    with open(path, "w") as f: ...      ->   os.close(fd)
    with open(path) as f: ...                try:
                                                 <the statements through the last use of path>
                                             finally:
                                                 os.remove(path)

    with open("/tmp/scratch", "w+") as f ->  with tempfile.TemporaryFile("w+") as f

A path is a scratch file when its literal appears once in the file, inside a function, and the
name it is assigned to is only ever opened there (never returned, stored, passed to another call
or a subprocess, nor declared global), the first open writing it; or when the literal itself is
opened for writing and reading back through the same handle ("w+", "a+"). A path written and
left for someone to read by its name, read without being written first, used at module level or
written twice is shared with another process: its name is the contract, and it gets no fix.
"""

from __future__ import annotations

import ast
import posixpath

from secai.analysis.pysource import Edit, NoRewrite, Source, block_unit, literal

TEMP_DIRS = ("/tmp", "/var/tmp", "/dev/shm")   # bandit's hardcoded_tmp_directory defaults
OPENERS = ("open", "io.open", "builtins.open")
FUNCTIONS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)


def temp_file_handle(src: Source, first: int, last: int, options: dict) -> tuple[list[Edit], dict]:
    """open("/tmp/x", "w+", ...) -> tempfile.TemporaryFile("w+", ...): written and read back
    through one handle, the file needs no name; it is removed when closed."""
    node, _ = _scratch(src, first, last)
    call = src.parents.get(node)
    if not (isinstance(call, ast.Call) and _opened(src, call, node)):
        raise NoRewrite("the path is not opened where it is written")
    mode = _mode(call)
    if not mode or mode[0] not in "wa" or "+" not in mode:
        raise NoRewrite("the file is written for someone to read by its name (or read without being written)")
    keywords = {k.arg for k in call.keywords}
    if len(call.args) > 3 or None in keywords or keywords - {"mode", "buffering", "encoding", "errors", "newline"}:
        raise NoRewrite("open() is given arguments TemporaryFile does not take")
    rest = [*call.args[1:], *call.keywords]
    return [(*src.start(call), *src.start(rest[0]), "tempfile.TemporaryFile(")], {}


def temp_file_name(src: Source, first: int, last: int, options: dict) -> tuple[list[Edit], dict]:
    """name = "/tmp/x.csv" -> a file of tempfile.mkstemp's, removed after the statements that use it."""
    node, scope = _scratch(src, first, last)
    assign = src.parents.get(node)
    if not (isinstance(assign, ast.Assign) and assign.value is node and len(assign.targets) == 1
            and isinstance(assign.targets[0], ast.Name)):
        raise NoRewrite("the path is not assigned to one name")
    return _mkstemp(src, assign, scope, posixpath.splitext(posixpath.basename(node.value))[1])


def _scratch(src: Source, first: int, last: int) -> tuple[ast.Constant, ast.AST]:
    """The one temporary path on the lines, once in the file and inside a function, and that function."""
    found = [n for n in ast.walk(src.tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)
             and first <= n.lineno <= last and n.value.startswith(TEMP_DIRS)]
    if len(found) != 1:
        raise NoRewrite("not one hard-coded temporary path on the finding's lines")
    node = found[0]
    path = node.value
    if isinstance(src.parents.get(node), ast.JoinedStr):
        raise NoRewrite("the path is built from other values")
    if src.text.count(path) != 1:
        raise NoRewrite("the path appears more than once in the file: something else names it")
    if path.endswith("/") or path in TEMP_DIRS:
        raise NoRewrite("the path is a directory")
    scope = src.scope(node)
    if not isinstance(scope, (ast.FunctionDef, ast.AsyncFunctionDef)):
        raise NoRewrite("the path is used at module level")
    for module in ("os", "tempfile"):
        if src.names.get(module, module) != module or module not in src.names and any(
                isinstance(n, ast.ImportFrom) and n.module == module for n in ast.walk(src.tree)):
            raise NoRewrite(f"the file binds {module} otherwise or imports from it without importing it")
    return node, scope


def _opened(src: Source, call: ast.Call, node: ast.AST) -> bool:
    return src.qualname(call.func) in OPENERS and bool(call.args) and call.args[0] is node


def _mode(call: ast.Call) -> str | None:
    mode = call.args[1] if len(call.args) > 1 else next((k.value for k in call.keywords if k.arg == "mode"), None)
    if mode is None:
        return "r"
    return mode.value if isinstance(mode, ast.Constant) and isinstance(mode.value, str) else None


def _mkstemp(src: Source, assign: ast.Assign, scope: ast.AST, suffix: str) -> tuple[list[Edit], dict]:
    name = assign.targets[0].id
    after = src.end(assign)
    uses, bad = [], None
    for n in ast.walk(scope):
        if isinstance(n, (ast.Global, ast.Nonlocal)) and name in n.names:
            bad = "the name is declared global"
        elif isinstance(n, ast.arg) and n.arg == name:
            bad = "the name is also a parameter"
        elif isinstance(n, ast.Name) and n.id == name and n is not assign.targets[0]:
            parent = src.parents.get(n)
            if not isinstance(n.ctx, ast.Load):
                bad = "the name is assigned again"
            elif not (isinstance(parent, ast.Call) and _opened(src, parent, n)) or src.start(n) < after:
                bad = "the name leaves open(): returned, stored or passed on"
            elif _nested(src, n, scope):
                bad = "a nested function uses the name"
            else:
                uses.append(parent)
    if bad or not uses:
        raise NoRewrite(bad or "the name is never opened")
    uses.sort(key=src.start)
    mode = _mode(uses[0])
    if not mode or mode[0] not in "wa":
        raise NoRewrite("the file is read before this function writes it: someone else makes it")
    body = next(v for v in vars(src.parents[assign]).values() if isinstance(v, list) and assign in v)
    rest = body[body.index(assign) + 1:]
    holders = [s for s in rest if any(u in ast.walk(s) for u in uses)]
    if len({id(u) for s in holders for u in uses if u in ast.walk(s)}) != len(uses):
        raise NoRewrite("a use is outside the statements after the assignment")
    run = rest[:rest.index(holders[-1]) + 1]
    if any(isinstance(n, (ast.Constant, ast.JoinedStr)) and n.end_lineno > n.lineno for s in run for n in ast.walk(s)):
        raise NoRewrite("a string spans lines: indenting it would change it")
    taken = {n.id for n in ast.walk(scope) if isinstance(n, ast.Name)} | {a.arg for a in ast.walk(scope)
                                                                          if isinstance(a, ast.arg)}
    fd = next((f for f in ("fd", f"{name}_fd") if f not in taken), None)
    if fd is None:
        raise NoRewrite("no free name for the file descriptor")
    indent, unit = src.indent(assign.lineno), block_unit(src, assign)
    args = f"suffix={literal(suffix, src.quote(assign.value))}" if suffix else ""
    edits = [src.replace(assign, f"{fd}, {name} = tempfile.mkstemp({args})\n{indent}os.close({fd})\n{indent}try:")]
    edits += [src.insert_at((n, 0), unit) for n in range(run[0].lineno, run[-1].end_lineno + 1)
              if src.lines[n - 1].strip()]
    end = run[-1].end_lineno
    if any(s.lineno == end for s in rest[len(run):]):
        raise NoRewrite("another statement shares the last line")
    edits.append(src.insert_at((end, len(src.lines[end - 1])), f"\n{indent}finally:\n{indent}{unit}os.remove({name})"))
    return edits, {"name": name}


def _nested(src: Source, node: ast.AST, scope: ast.AST) -> bool:
    node = src.parents.get(node)
    while node is not None and node is not scope:
        if isinstance(node, FUNCTIONS):
            return True
        node = src.parents.get(node)
    return False
