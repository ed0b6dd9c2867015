"""The `hash-not-for-security` rewrite (secai.analysis.pyfix): hashlib.md5(data) ->
hashlib.md5(data, usedforsecurity=False) where the digest is evidently not a security use.

MD5 and SHA-1 are fine for a cache key, an ETag, a checksum against accidental corruption or a
dedup key; what is broken is their collision resistance, which only a security use relies on.
Python 3.9 added `usedforsecurity=False` to say so (and FIPS builds then allow the call). Whether a
use is a security one is read from names the code gives it, nothing else:

- the names it is stored under (`cache_key = ...`, `self.etag = ...`, `etags[path] = ...`), the
  enclosing function's name and the names in the hashed expression: a security word among them
  (password, token, secret, sign, auth, session, otp, reset, key, ...) means no fix: changing a
  stored password hash or a token's algorithm breaks what was stored, and the analysis says what
  to do instead. The `key` of `cache_key` or `dedup_key` is the cache's key, not a security word;
- else a name saying cache, etag, checksum, fingerprint, dedup, content hash or digest of file, or
  the digest being looked up in a dict (`seen[digest]`, `cache.get(digest)`, `digest in seen`, by
  itself or through the name it is assigned to) makes the fix;
- else the purpose is unknown: no fix.
"""

from __future__ import annotations

import ast
import re

from secai.analysis.pysource import Edit, NoRewrite, Source, after_arguments, plain_arguments

WEAK = ("md4", "md5", "sha", "sha1")           # bandit B324's weak hashes
SECURITY = re.compile(r"pass(?:wd|word)?|pwd|token|secret|sign|auth|session|otp|reset|key|salt|nonce|credential|hmac")
NOT_SECURITY = re.compile(r"(?:cache|etag|checksum|fingerprint|digest_?of_?file|dedup|content_?hash)(?:_?keys?)?")
LOOKUPS = ("get", "setdefault", "pop", "__contains__")


def hash_not_for_security(src: Source, first: int, last: int, options: dict) -> tuple[list[Edit], dict]:
    why = "no weak hashlib call (md5, sha1, new('md5')) on the finding's lines"
    for call in src.calls(first, last):
        name = _weak(src, call)
        if not name:
            continue
        if not plain_arguments(call):
            why = "the call passes *args or **kwargs"
            continue
        if any(k.arg == "usedforsecurity" for k in call.keywords):
            raise NoRewrite("usedforsecurity is given: the code has decided")
        names = _names(src, call)
        security = [n for n in names if SECURITY.search(NOT_SECURITY.sub("", _words(n)))]
        if security:
            raise NoRewrite(f"the digest is named for a security use ({security[0]}): no flag, a real fix")
        said = next((n for n in names if NOT_SECURITY.search(_words(n))), None)
        if said:
            use = f"named {said}"
        elif _looked_up(src, call):
            use = "a key looked up in a dict"
        else:
            raise NoRewrite("the digest's purpose is unknown")
        if call.args or call.keywords:
            edit = after_arguments(src, call, ", usedforsecurity=False")
        else:
            line, col = src.end(call)
            edit = src.insert_at((line, col - 1), "usedforsecurity=False")
        return [edit], {"call": name, "use": use}
    raise NoRewrite(why)


def _weak(src: Source, call: ast.Call) -> str | None:
    """'hashlib.md5' (also after `from hashlib import md5`), "hashlib.new('sha1')", or None."""
    qual = src.qualname(call.func) or ""
    if not qual.startswith("hashlib."):
        return None
    func = qual.split(".", 1)[1]
    if func in WEAK:
        return qual
    if func == "new":
        first = call.args[0] if call.args else next((k.value for k in call.keywords if k.arg == "name"), None)
        if isinstance(first, ast.Constant) and isinstance(first.value, str) and first.value.lower() in WEAK:
            return f"hashlib.new({first.value!r})"
    return None


def _words(name: str) -> str:
    """cacheKey, CACHE_KEY, cache_key -> 'cache_key'."""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name).lower()


def _names(src: Source, call: ast.Call) -> list[str]:
    """The names the digest is stored under, the enclosing function's, and those in its input."""
    stmt = src.statement(call)
    targets = []
    if isinstance(stmt, ast.Assign):
        targets = stmt.targets
    elif isinstance(stmt, (ast.AnnAssign, ast.AugAssign)):
        targets = [stmt.target]
    names = [n for t in targets for n in _target_names(t)]
    scope = src.scope(call)
    if isinstance(scope, (ast.FunctionDef, ast.AsyncFunctionDef)):
        names.append(scope.name)
    for arg in [*call.args, *(k.value for k in call.keywords)]:
        names += [n.id if isinstance(n, ast.Name) else n.attr for n in ast.walk(arg)
                  if isinstance(n, (ast.Name, ast.Attribute))]
    return names


def _target_names(target: ast.AST) -> list[str]:
    if isinstance(target, ast.Name):
        return [target.id]
    if isinstance(target, ast.Attribute):
        return [target.attr]
    if isinstance(target, ast.Subscript):
        return _target_names(target.value)
    if isinstance(target, (ast.Tuple, ast.List)):
        return [n for t in target.elts for n in _target_names(t)]
    return []


def _looked_up(src: Source, call: ast.Call) -> bool:
    """The digest (the call, its .hexdigest(), a slice of that) is a dict key where it is made or
    through the one name it is assigned to, in the same function."""
    value = _outermost(src, call)
    if _is_key(src, value):
        return True
    stmt = src.parents.get(value)
    if not (isinstance(stmt, ast.Assign) and stmt.value is value and len(stmt.targets) == 1
            and isinstance(stmt.targets[0], ast.Name)):
        return False
    name = stmt.targets[0].id
    return any(isinstance(n, ast.Name) and n.id == name and isinstance(n.ctx, ast.Load) and _is_key(src, n)
               for n in ast.walk(src.scope(call)))


def _outermost(src: Source, node: ast.AST) -> ast.AST:
    """md5(x) -> md5(x).hexdigest() -> md5(x).hexdigest()[:8]: the expression the digest ends as."""
    while True:
        parent = src.parents.get(node)
        if isinstance(parent, ast.Attribute) and isinstance(src.parents.get(parent), ast.Call) \
                and src.parents[parent].func is parent:
            node = src.parents[parent]
        elif isinstance(parent, ast.Subscript) and parent.value is node:
            node = parent
        else:
            return node


def _is_key(src: Source, node: ast.AST) -> bool:
    parent = src.parents.get(node)
    if isinstance(parent, ast.Subscript) and parent.slice is node:
        return True
    if isinstance(parent, ast.Compare) and parent.left is node and isinstance(parent.ops[0], (ast.In, ast.NotIn)):
        return True
    return (isinstance(parent, ast.Call) and isinstance(parent.func, ast.Attribute) and parent.func.attr in LOOKUPS
            and bool(parent.args) and parent.args[0] is node)
