"""Rewrites of Python code that need its parse tree: the `rewrite:` edits of fix rules
(lib/secai/analysis/kb/fixes/*.yaml, secai.analysis.fixrules).

A line pattern sees one line as text. A call spread over several lines, keywords in any order, a
module imported under another name (`from random import randint`), a value that must be read
before anything is changed (a file mode, a keyword already given) need the tree. Each rewrite here
finds its construct on the finding's lines of the parsed file (Python's `ast`: the code is parsed,
never run), decides whether it can be fixed as it stands, and makes text edits at the nodes'
positions, so everything else on those lines keeps its layout:

    found = rewrite("open-encoding", Source(text), first=12, last=12, options={})
    found.start, found.end, found.lines, found.facts   # file lines start..end become found.lines

A rewrite that does not apply raises NoRewrite with the reason (binary mode, the keyword is there
already, the query's driver is unknown, ...): no fix is better than a wrong one.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Callable

from secai.analysis.fixlines import Line
from secai.analysis.pysource import Edit, NoRewrite, Source, after_arguments, block_unit, literal, plain_arguments
from secai.analysis.pyhash import hash_not_for_security
from secai.analysis.pysql import sql_parameters
from secai.analysis.pytemp import temp_file_handle, temp_file_name

@dataclass(frozen=True)
class Rewritten:
    start: int                      # first line replaced (the source's numbering)
    end: int                        # last line replaced
    lines: list[str]                # what replaces them
    facts: dict = field(default_factory=dict)



# ---------------------------------------------------------------- the rewrites

OPENERS = ("open", "io.open", "builtins.open")


def open_encoding(src: Source, first: int, last: int, options: dict) -> tuple[list[Edit], dict]:
    """open(path, "r") -> open(path, "r", encoding="utf-8"): text mode only (a binary mode takes no
    encoding), never where an encoding is given (by keyword, or fourth positional argument)."""
    edits, why = [], "no open() call on the finding's lines"
    for call in src.calls(first, last):
        if src.qualname(call.func) not in options.get("names", OPENERS):
            continue
        keywords = {k.arg: k.value for k in call.keywords}
        mode = call.args[1] if len(call.args) > 1 else keywords.get("mode")
        if not plain_arguments(call):
            why = "the call passes *args or **kwargs"
        elif "encoding" in keywords or len(call.args) >= 4:
            why = "the encoding is given"
        elif mode is not None and not (isinstance(mode, ast.Constant) and isinstance(mode.value, str)):
            why = "the mode is not a literal, so it may be binary"
        elif mode is not None and "b" in mode.value:
            why = "binary mode takes no encoding"
        elif call.args or "file" in keywords:
            q = src.quote(mode)
            edits.append(after_arguments(src, call, f", encoding={q}utf-8{q}"))
    if not edits:
        raise NoRewrite(why)
    return edits, {}


COOKIE_FLAGS = (("secure", True), ("httponly", True), ("samesite", "Lax"))


def cookie_flags(src: Source, first: int, last: int, options: dict) -> tuple[list[Edit], dict]:
    """response.set_cookie(...) gets secure=True, httponly=True, samesite="Lax": a keyword that is
    missing is added, one set to a weaker literal (False, None, "None") is changed, one set to an
    expression (the code's own decision) stays; never a keyword twice."""
    edits, why = [], "no set_cookie() call on the finding's lines"
    for call in src.calls(first, last):
        if not (isinstance(call.func, ast.Attribute) and call.func.attr == "set_cookie"):
            continue
        if not plain_arguments(call) or len(call.args) > 6:  # key, value, max_age, expires, path, domain
            why = "the flags may be given positionally or in **kwargs"
            continue
        given = {k.arg: k.value for k in call.keywords}
        quote = src.quote(next((a for a in [*call.args, *given.values()]
                                if isinstance(a, ast.Constant) and isinstance(a.value, str)), None))
        missing, mine = [], []
        for name, want in COOKIE_FLAGS:
            text = literal(want, quote) if isinstance(want, str) else repr(want)
            value = given.get(name)
            if value is None:
                missing.append(f"{name}={text}")
            elif isinstance(value, ast.Constant) and not _strong(name, value.value):
                mine.append(src.replace(value, text))
        if missing:
            mine.append(after_arguments(src, call, ", " + ", ".join(missing)))
        if not mine:
            why = "the cookie's flags are set already"
        edits += mine
    if not edits:
        raise NoRewrite(why)
    return edits, {}


def _strong(name: str, value) -> bool:
    return str(value).lower() in ("lax", "strict") if name == "samesite" else value is True


def drop_decorator(src: Source, first: int, last: int, options: dict) -> tuple[list[Edit], dict]:
    """Removes the decorators named in options["names"] (qualified: django.views.decorators.csrf.csrf_exempt)
    from the function or class defined on the finding's lines; each on a line of its own."""
    names = set(options.get("names", ()))
    for node in ast.walk(src.tree):
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            continue
        top = min([node.lineno, *(d.lineno for d in node.decorator_list)])
        if not (first <= top <= last or first <= node.lineno <= last):
            continue
        edits = []
        for d in node.decorator_list:
            if src.qualname(d.func if isinstance(d, ast.Call) else d) not in names:
                continue
            line, col = src.start(d)
            end_line, end_col = src.end(d)
            before, after = src.lines[line - 1][:col], src.lines[end_line - 1][end_col:]
            if before.strip() != "@" or after.strip() and not after.strip().startswith("#"):
                raise NoRewrite("the decorator shares its line with other code")
            edits.append((line, 0, end_line + 1, 0, ""))  # its whole lines, up to the next one
        if edits:
            return edits, {"function": node.name}
    raise NoRewrite("no such decorator on the finding's lines")


RANDOM = frozenset(f"random.{f}" for f in ("random", "randint", "randrange", "choice", "choices", "sample",
                                              "shuffle", "uniform", "triangular", "randbytes", "getrandbits"))
_SECRETS = {"random.choice": "secrets.choice", "random.getrandbits": "secrets.randbits"}


def random_secrets(src: Source, first: int, last: int, options: dict) -> tuple[list[Edit], dict]:
    """random.choices(abc, k=16) -> secrets.SystemRandom().choices(abc, k=16), random.choice ->
    secrets.choice: the same values and distribution, drawn from the operating system's CSPRNG.
    Refused when the file seeds `random` (it wants a repeatable sequence) or makes its own Random."""
    if any(src.qualname(c.func) in ("random.seed", "random.Random") for c in src.calls(1, len(src.lines))):
        raise NoRewrite("the file seeds random or makes its own generator: it may want repeatable numbers")
    edits, made = [], []
    for call in src.calls(first, last):
        name = src.qualname(call.func)
        if name in RANDOM:
            edits.append(src.replace(call.func, _SECRETS.get(name, f"secrets.SystemRandom().{name[7:]}")))
            made.append(name)
    if not edits:
        raise NoRewrite("no call of random's module functions on the finding's lines")
    return edits, {"calls": ", ".join(dict.fromkeys(made))}


YAML_LOADS = {"yaml.load": "safe_load", "yaml.load_all": "safe_load_all", "yaml.unsafe_load": "safe_load",
              "yaml.unsafe_load_all": "safe_load_all", "yaml.full_load": "safe_load",
              "yaml.full_load_all": "safe_load_all"}
SAFE_LOADERS = ("SafeLoader", "CSafeLoader", "BaseLoader", "CBaseLoader")


def yaml_safe_load(src: Source, first: int, last: int, options: dict) -> tuple[list[Edit], dict]:
    """yaml.load(stream, Loader=...) in any spelling (positional or keyword Loader, yaml imported
    under another name) -> yaml.safe_load(stream)."""
    for call in src.calls(first, last):
        safe = YAML_LOADS.get(src.qualname(call.func) or "")
        if not safe or not isinstance(call.func, ast.Attribute) or not plain_arguments(call):
            continue
        keywords = {k.arg: k.value for k in call.keywords}
        stream = call.args[0] if call.args else keywords.get("stream")
        loader = call.args[1] if len(call.args) > 1 else keywords.get("Loader")
        if stream is None or len(call.args) > 2 or set(keywords) - {"stream", "Loader"}:
            continue
        if loader is not None and (src.segment(loader).rsplit(".", 1)[-1] in SAFE_LOADERS):
            raise NoRewrite("the loader is a safe one already")
        return [src.replace(call, f"{src.segment(call.func.value)}.{safe}({src.segment(stream)})")], {"safe": safe}
    raise NoRewrite("no yaml.load() call on the finding's lines")


REQUESTS = frozenset(f"requests.{m}" for m in ("get", "post", "put", "patch", "delete", "head", "options", "request"))


def raise_for_status(src: Source, first: int, last: int, options: dict) -> tuple[list[Edit], dict]:
    """`r = requests.get(url)` gets `r.raise_for_status()` on the next line, so an error status
    raises instead of passing for a response. A call whose response is not kept is left alone."""
    for call in src.calls(first, last):
        stmt = src.statement(call)
        if (src.qualname(call.func) in REQUESTS and isinstance(stmt, ast.Assign) and stmt.value is call
                and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name)):
            name = stmt.targets[0].id
            end = (stmt.end_lineno, len(src.lines[stmt.end_lineno - 1]))
            return [src.insert_at(end, f"\n{src.indent(stmt.lineno)}{name}.raise_for_status()")], {"response": name}
    raise NoRewrite("no requests call whose response is assigned to a name")


def open_with(src: Source, first: int, last: int, options: dict) -> tuple[list[Edit], dict]:
    """`f = open(...)` and the statements right after it that use f become `with open(...) as f:`
    over those statements, so the file is closed when they are done. Refused when f is used later,
    leaves those statements in any other way than a method call or a call's argument (returned,
    stored), or when a moved line is inside a string that spans lines."""
    for node in ast.walk(src.tree):
        if not (isinstance(node, ast.Assign) and first <= node.lineno <= last and len(node.targets) == 1
                and isinstance(node.targets[0], ast.Name) and isinstance(node.value, ast.Call)
                and src.qualname(node.value.func) in OPENERS):
            continue
        name, body = node.targets[0].id, next(v for v in vars(src.parents[node]).values()
                                                if isinstance(v, list) and node in v)
        rest = body[body.index(node) + 1:]
        run = []
        for stmt in rest:
            if not any(isinstance(n, ast.Name) and n.id == name for n in ast.walk(stmt)):
                break
            run.append(stmt)
        if not run or run[0].lineno <= node.end_lineno:
            raise NoRewrite(f"{name} is not used by the statements that follow")
        end = (run[-1].end_lineno, run[-1].end_col_offset)
        later = [n for n in ast.walk(src.scope(node)) if isinstance(n, ast.Name) and n.id == name
                 and (n.lineno, n.col_offset) > end]
        inside = [n for stmt in run for n in ast.walk(stmt) if isinstance(n, ast.Name) and n.id == name]
        if later or not all(_only_used(src, n) for n in inside):
            raise NoRewrite(f"{name} is used after those statements or leaves them")
        if any(isinstance(n, (ast.Constant, ast.JoinedStr)) and n.end_lineno > n.lineno for st in run for n in ast.walk(st)):
            raise NoRewrite("a string spans lines: indenting it would change it")
        unit = block_unit(src, node)
        edits = [src.replace(node, f"with {src.segment(node.value)} as {name}:")]
        edits += [src.insert_at((n, 0), unit) for n in range(run[0].lineno, run[-1].end_lineno + 1)
                  if src.lines[n - 1].strip()]
        return edits, {"file": name}
    raise NoRewrite("no `name = open(...)` on the finding's lines")


def _only_used(src: Source, name: ast.Name) -> bool:
    """The name is a method call's object (f.read()) or a call's argument (json.load(f))."""
    parent = src.parents.get(name)
    if isinstance(parent, ast.Attribute) and isinstance(src.parents.get(parent), ast.Call):
        return src.parents[parent].func is parent
    return isinstance(parent, ast.Call) and name in parent.args


_PURE = (ast.Constant, ast.Name, ast.Attribute, ast.JoinedStr, ast.FormattedValue, ast.BinOp, ast.UnaryOp,
         ast.Tuple, ast.List, ast.Dict, ast.Set, ast.Subscript, ast.keyword, ast.Load, ast.operator, ast.unaryop)


def dict_duplicate_keys(src: Source, first: int, last: int, options: dict) -> tuple[list[Edit], dict]:
    """{"a": 1, "b": 2, "a": 3} -> {"b": 2, "a": 3}: Python keeps a repeated key's last value, so
    dropping the earlier entries leaves the same dict; refused when a dropped value could do
    something as it is computed (a call, an await)."""
    for node in ast.walk(src.tree):
        if not (isinstance(node, ast.Dict) and first <= node.lineno <= last):
            continue
        seen, edits, dropped = {}, [], []
        for i, key in enumerate(node.keys):
            if isinstance(key, ast.Constant):
                seen.setdefault(repr(key.value), []).append(i)
        for key, places in seen.items():
            for i in places[:-1]:
                following = node.keys[i + 1]
                if following is None or not all(isinstance(n, _PURE) for n in ast.walk(node.values[i])):
                    raise NoRewrite("a dropped value is computed by a call, or a ** entry follows it")
                edits.append((*src.start(node.keys[i]), *src.start(following), ""))
                dropped.append(key)
        if edits:
            return edits, {"keys": ", ".join(dropped)}
    raise NoRewrite("no dict literal with a repeated key on the finding's lines")


@dataclass(frozen=True)
class Rewrite:
    make: Callable[[Source, int, int, dict], tuple[list[Edit], dict]]
    facts: tuple[str, ...]        # the facts it gives the rule's explanation


REWRITES = {
    "open-encoding": Rewrite(open_encoding, ()),
    "cookie-flags": Rewrite(cookie_flags, ()),
    "drop-decorator": Rewrite(drop_decorator, ("function",)),
    "random-secrets": Rewrite(random_secrets, ("calls",)),
    "yaml-safe-load": Rewrite(yaml_safe_load, ("safe",)),
    "raise-for-status": Rewrite(raise_for_status, ("response",)),
    "sql-parameters": Rewrite(sql_parameters, ("query", "values")),
    "open-with": Rewrite(open_with, ("file",)),
    "dict-duplicate-keys": Rewrite(dict_duplicate_keys, ("keys",)),
    "hash-not-for-security": Rewrite(hash_not_for_security, ("call", "use")),
    "temp-file-handle": Rewrite(temp_file_handle, ()),
    "temp-file-name": Rewrite(temp_file_name, ("name",)),
}


def _statements(src: Source, first: tuple[int, int], last: tuple[int, int]) -> tuple[int, int]:
    """The lines of the whole statements that hold positions first..last, siblings in one block:
    an edit in a header (with ...:, a decorator) takes its block along, and edits in two statements
    take the block level both are in."""
    def top(node) -> tuple[int, int]:
        return min([src.start(node), *((d.lineno, 0) for d in getattr(node, "decorator_list", ()))])

    def chain(pos) -> list[ast.stmt]:
        holders = [n for n in ast.walk(src.tree) if isinstance(n, ast.stmt) and top(n) <= pos <= src.end(n)]
        out = sorted(holders, key=top)[-1:]
        while out and out[-1] in src.parents and isinstance(src.parents[out[-1]], ast.stmt):
            out.append(src.parents[out[-1]])
        return out

    for a in chain(first):
        for b in chain(last):
            parent = src.parents.get(a)
            if parent is src.parents.get(b) and any(isinstance(v, list) and a in v and b in v
                                                    for v in vars(parent).values()):
                return top(a)[0], b.end_lineno
    raise NoRewrite("the change is not inside whole statements")


def rewrite(name: str, src: Source, first: int, last: int, options: dict) -> Rewritten:
    """Run one rewrite on lines first..last of `src`: the lines it changes, from the start of the
    first statement it touches (so an import put before them lands between statements)."""
    edits, facts = REWRITES[name].make(src, first, last, options)
    edits = sorted(edits, key=lambda e: e[:2])
    if any(a[2:4] > b[:2] for a, b in zip(edits, edits[1:])):
        raise NoRewrite("the edits overlap")
    start, end = _statements(src, edits[0][:2], max(e[2:4] for e in edits))
    block = "\n".join(src.lines[start - 1:end])
    offsets = [0]
    for line in src.lines[start - 1:end]:
        offsets.append(offsets[-1] + len(line) + 1)
    for line, col, end_line, end_col, text in reversed(edits):
        a = offsets[line - start] + col
        b = offsets[end_line - start] + end_col if end_line <= end else len(block)
        block = block[:a] + text + block[b:]
    return Rewritten(start, end, block.split("\n"), facts)



# ---------------------------------------------------------------- as a fix rule's edit

@lru_cache(maxsize=8)
def _parsed(text: str) -> Source:
    return Source(text)


def _source(context: dict, file_text: str | None) -> tuple[Source, str]:
    """The parsed file (else the code context alone, numbered as in the file, when it parses) and
    the indentation taken off the context's lines to parse them."""
    try:
        if file_text is not None:
            return _parsed(file_text), ""
        texts = context["code"].split("\n")
        pad = min((t[:len(t) - len(t.lstrip())] for t in texts if t.strip()), key=len, default="")
        body = [t[len(pad):] if t.startswith(pad) else t.lstrip() for t in texts]
        return _parsed("\n" * (context["start_line"] - 1) + "\n".join(body)), pad
    except (SyntaxError, ValueError):
        raise NoRewrite("the code does not parse as Python") from None


def edit_lines(op: dict, lines: list[Line], facts: dict, deleted: set, context: dict, file_text: str | None) -> list:
    """A fix rule's `rewrite:` edit on the lines being edited (secai.analysis.fixrules): the rewrite
    runs on the finding's lines in scope, and the file lines it changes replace those lines."""
    base = context["start_line"]
    scope = [ln.orig for ln in lines if ln.scope and ln.orig is not None]
    if not scope:
        raise NoRewrite("nothing in scope")
    src, pad = _source(context, file_text)
    found = rewrite(op["rewrite"], src, base + min(scope), base + max(scope),
                    {k: v for k, v in op.items() if k != "rewrite"})
    texts = context["code"].split("\n")
    for n in range(found.start, found.end + 1):
        shown = texts[n - base] if 0 <= n - base < len(texts) else None
        if shown is None or shown != (pad + src.lines[n - 1] if src.lines[n - 1] else shown):
            raise NoRewrite("the lines to change are not the code context's")
    at = [i for i, ln in enumerate(lines) if ln.orig is not None and found.start - base <= ln.orig <= found.end - base]
    if len(at) != found.end - found.start + 1 or at != list(range(at[0], at[0] + len(at))) \
            or any(lines[i].changed for i in at):
        raise NoRewrite("the lines to change were edited already")
    new = [pad + t if t.strip() else t for t in found.lines]
    kept, out = lines[at[0]:at[-1] + 1], []
    for k, ln in enumerate(kept):
        if k < len(new):
            ln.text, ln.changed = new[k], True
            out.append(ln)
        else:
            deleted.add(ln.home)
    out += [Line(None, t, kept[-1].scope, True, kept[-1].home) for t in new[len(kept):]]
    facts.update(found.facts)
    return lines[:at[0]] + out + lines[at[-1] + 1:]
