"""Code context for a finding: the lines it points at, read from a source root, and the function,
class or block around them, found with tree-sitter.

    ctx = code_context(finding, Path("src"))            # analysis/1 `code_context`, or None
    ctx, skip = read_context(finding, Path("src"))      # the same, with why there is none
    parses("def f():\n    return 1\n", "python")       # True: no ERROR/MISSING node

Paths. A scanner path is read only under the root, never outside it:
- a path with a `..` component is refused; so is one that resolves (through a symlink, anywhere
  along it) to a place outside the root;
- an absolute path (`/main.tf` as Checkov writes it, `/home/runner/work/x/x/app.py` from CI,
  `C:/src/app.py`) is never opened as such: it names a file under the root when the root holds a
  suffix of it. So does a relative path that is not under the root as given (a scan of the parent
  directory). The longest suffix that exists under the root wins, which is deterministic;
- `path` in the result is the path relative to the root that was read.

Why there is no context is a `Skip(code, detail)`: `read_context` returns it beside None.
`Skip.code` is one of SKIP_CODES; `refused` (an escape from the root: worth a warning) is the
only one that says something is wrong rather than absent.

Languages come from the file name (extension, Dockerfile/Containerfile, requirements*.txt,
GitHub workflow folder) and else the shebang. Grammars are the per-language wheels from PyPI
(tree-sitter-python, -java, -kotlin, -javascript, -typescript, -go, -yaml, -hcl, -dockerfile,
-bash), each loaded once on first use; a language whose grammar package is not installed still gets
its lines, without `enclosing`. json, toml, requirements, ini, ... are plain languages (no grammar).

`enclosing` is the innermost unit a person would name around the finding's lines (leading and
trailing blank or comment lines of the reported range are not counted, so a range that begins
on a comment above a block still finds the block):
- code: function / method / constructor / class / interface / enum / object (Kotlin) / type (Go);
  a method is named `Class.method` (qualified by its enclosing classes only); a JavaScript or Go
  function without a name of its own takes the name it is assigned to, and one passed as an
  argument is a `callback` named after the function it is passed to (`app.get`); other anonymous
  functions and lambdas are not units;
- Terraform/HCL: the top-level block: `resource` `aws_s3_bucket.x`, `data` `aws_iam_policy.p`,
  `module` `vpc`, `variable`, `output`, `provider`, `locals`, `terraform`;
- YAML: Kubernetes: the innermost container (`containers`, `initContainers`,
  `ephemeralContainers` items: kind `container`, its name), else the object (kind: its `kind`
  such as `Deployment`, name `metadata.name`, `namespace/name` when namespaced); GitHub
  workflows: `step` (its name, else id, else `uses`), else `job` (its id), else `workflow` (its
  name); Compose files: `service`; any other YAML: the innermost key whose value is a mapping or
  list, kind `key`, name the dotted key path (`[i]` for list items);
- Dockerfile: the build stage, kind `stage`, named by its `AS` alias, else its image; lines
  before the first FROM (global ARGs): the `instruction` (named by its keyword).

Secrets. `code` never carries a secret the finding hashes: for a finding with `secret.sha256`,
every string in the lines shown whose SHA-256 is that digest is replaced by [REDACTED]; the
strings in `redact` (e.g. secrets collected from other findings) are blanked with
secai.records.redact; for a finding of category `secret` the finding's own lines are blanked
after their key (`password: [REDACTED]`, `KEY = [REDACTED]`; a line without a key becomes
`[REDACTED]`, indentation kept) whether or not the value was recognised; and the body of a PEM
private key block is always blanked.
"""

from __future__ import annotations

import ast
import hashlib
import importlib
import json
import os
import re
import textwrap
import tomllib
import warnings
from collections.abc import Iterable
from functools import cache, lru_cache
from pathlib import Path, PurePosixPath
from typing import NamedTuple

import yaml

from secai.records import REDACTED, norm_path, positive_int
from secai.records import redact as redact_text

RADIUS = 5                     # lines shown before and after the finding's lines
MAX_BYTES = 2 * 1024 * 1024    # a larger file gets no context
MAX_LINES = 200                # at most this many lines of code (a huge resource is cut)
BINARY_SNIFF = 8192            # a NUL byte in this many leading bytes makes a file binary

SKIP_CODES = ("no-location", "no-lines", "refused", "missing", "not-a-file", "too-large",
              "binary", "unreadable", "out-of-range")


class Skip(NamedTuple):
    """Why a finding has no code context: `code` (one of SKIP_CODES) and a one-line detail."""

    code: str
    detail: str

    def __str__(self) -> str:
        return self.detail

    @property
    def refused(self) -> bool:
        """True when the path tried to leave the source root."""
        return self.code == "refused"


class NoContext(Exception):
    """Raised inside this module; `read_context` turns it into a Skip."""

    def __init__(self, code: str, detail: str):
        super().__init__(detail)
        self.skip = Skip(code, detail)


# ---------------------------------------------------------------- languages

_EXTENSIONS = {
    ".py": "python", ".pyi": "python", ".pyw": "python",
    ".java": "java",
    ".kt": "kotlin", ".kts": "kotlin",
    ".js": "javascript", ".mjs": "javascript", ".cjs": "javascript", ".jsx": "javascript",
    ".ts": "typescript", ".mts": "typescript", ".cts": "typescript", ".tsx": "typescript",
    ".go": "go",
    ".yaml": "yaml", ".yml": "yaml",
    ".tf": "hcl", ".tfvars": "hcl", ".hcl": "hcl",
    ".dockerfile": "dockerfile", ".containerfile": "dockerfile",
    ".json": "json", ".jsonc": "json",
    ".sh": "shell", ".bash": "shell", ".ksh": "shell", ".zsh": "shell",
    ".toml": "toml",
    # plain languages: lines, no grammar
    ".ini": "ini", ".cfg": "ini", ".conf": "ini", ".properties": "properties", ".env": "dotenv",
    ".xml": "xml", ".html": "html", ".htm": "html", ".md": "markdown", ".sql": "sql",
    ".rb": "ruby", ".php": "php", ".cs": "csharp", ".c": "c", ".h": "c", ".cpp": "cpp",
    ".cc": "cpp", ".hpp": "cpp", ".rs": "rust", ".swift": "swift", ".scala": "scala",
    ".groovy": "groovy", ".gradle": "groovy", ".lock": "lockfile", ".mod": "gomod",
}
_NAMES = {
    "dockerfile": "dockerfile", "containerfile": "dockerfile", "pipfile": "toml",
    "go.mod": "gomod", "go.sum": "gomod", "gemfile": "ruby", "jenkinsfile": "groovy",
    "makefile": "make", ".env": "dotenv", "cargo.lock": "toml", "poetry.lock": "toml",
}
_SHEBANG = (
    (re.compile(r"python[\d.]*$"), "python"),
    (re.compile(r"(ba|da|k|z)?sh$"), "shell"),
    (re.compile(r"(node|nodejs)$"), "javascript"),
    (re.compile(r"(deno|ts-node|tsx|bun)$"), "typescript"),
)
_ALIASES = {
    "py": "python", "python3": "python", "js": "javascript", "jsx": "javascript", "node": "javascript",
    "ts": "typescript", "golang": "go", "kt": "kotlin", "yml": "yaml", "terraform": "hcl", "tf": "hcl",
    "docker": "dockerfile", "containerfile": "dockerfile", "sh": "shell", "bash": "shell", "zsh": "shell",
    "requirements.txt": "requirements", "pip": "requirements",
}

# language -> (grammar module, function returning the language)
_GRAMMARS = {
    "python": ("tree_sitter_python", "language"),
    "java": ("tree_sitter_java", "language"),
    "kotlin": ("tree_sitter_kotlin", "language"),
    "javascript": ("tree_sitter_javascript", "language"),
    "typescript": ("tree_sitter_typescript", "language_typescript"),
    "tsx": ("tree_sitter_typescript", "language_tsx"),
    "go": ("tree_sitter_go", "language"),
    "yaml": ("tree_sitter_yaml", "language"),
    "hcl": ("tree_sitter_hcl", "language"),
    "dockerfile": ("tree_sitter_dockerfile", "language"),
    "shell": ("tree_sitter_bash", "language"),
}
_COMMENTS = {
    "python": ("#",), "yaml": ("#",), "dockerfile": ("#",), "shell": ("#",), "toml": ("#",),
    "requirements": ("#",), "ini": ("#", ";"), "dotenv": ("#",), "hcl": ("#", "//", "/*", "*"),
    "java": ("//", "/*", "*"), "kotlin": ("//", "/*", "*"), "javascript": ("//", "/*", "*"),
    "typescript": ("//", "/*", "*"), "go": ("//", "/*", "*"),
}


def detect_language(path: str, head: bytes = b"") -> str:
    """The language of a file from its name, else from the shebang in `head`; 'text' when unknown."""
    p = PurePosixPath(norm_path(path))
    name = p.name.lower()
    if name in _NAMES:
        return _NAMES[name]
    if name.startswith(("dockerfile.", "containerfile.")) or name.endswith((".dockerfile", ".containerfile")):
        return "dockerfile"
    if re.fullmatch(r"(requirements|constraints)([-_.\w]*)\.(txt|in)", name) or (
            p.suffix.lower() in (".txt", ".in") and p.parent.name.lower() == "requirements"):
        return "requirements"
    if name.endswith(".tf.json"):
        return "json"
    if p.suffix.lower() in _EXTENSIONS:
        return _EXTENSIONS[p.suffix.lower()]
    if head.startswith(b"#!"):
        words = head[2:].split(b"\n", 1)[0].decode("utf-8", "replace").split()
        if words and words[0].endswith("/env") and len(words) > 1:
            words = [w for w in words[1:] if not w.startswith("-")] or [""]
        interpreter = words[0].rsplit("/", 1)[-1] if words else ""
        for pattern, language in _SHEBANG:
            if pattern.match(interpreter):
                return language
    return "text"


def _grammar_key(language: str, path: str = "") -> str:
    if language == "typescript" and path.lower().endswith(".tsx"):
        return "tsx"
    return language


@cache
def _parser(key: str):
    """A tree-sitter parser for a grammar key, or None when its grammar package is absent."""
    spec = _GRAMMARS.get(key)
    if spec is None:
        return None
    try:
        import tree_sitter
        pointer = getattr(importlib.import_module(spec[0]), spec[1])()
        with warnings.catch_warnings():  # older grammar wheels hand over an int, which 0.25+ deprecates
            warnings.simplefilter("ignore", DeprecationWarning)
            language = tree_sitter.Language(pointer)
        return tree_sitter.Parser(language)
    except (ImportError, AttributeError, ValueError, TypeError):
        return None


def has_grammar(language: str) -> bool:
    """True when a tree-sitter grammar for `language` is installed."""
    return _parser(_canonical(language)) is not None


def _canonical(language: str) -> str:
    language = (language or "").strip().lower()
    return _ALIASES.get(language, language)


# ---------------------------------------------------------------- paths

_DRIVE = re.compile(r"^[A-Za-z]:/")


def locate(root: Path, scanner_path: str) -> tuple[Path, str]:
    """(real path of the file, path relative to the root) for a scanner's path; NoContext when it
    is refused (`..`, a symlink out of the root), missing or not a regular file."""
    p = norm_path(scanner_path)
    if not p or "\x00" in p or re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", p):
        raise NoContext("not-a-file", f"not a file path: {scanner_path!r}")
    absolute = p.startswith("/") or bool(_DRIVE.match(p))
    if _DRIVE.match(p):
        p = p[2:]
    parts = [part for part in p.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise NoContext("refused", f"refused {scanner_path!r}: a '..' component leaves the source root")
    if not parts:
        raise NoContext("not-a-file", f"not a file path: {scanner_path!r}")
    try:
        base = root.resolve(strict=True)
    except OSError as exc:
        raise NoContext("missing", f"source root {str(root)!r}: {exc.strerror or exc}") from None
    if not base.is_dir():
        raise NoContext("missing", f"source root {str(root)!r} is not a directory")
    candidates = [parts[i:] for i in range(len(parts))]
    if absolute:  # the absolute path itself, when it lies under the root as given or as resolved
        for prefix in dict.fromkeys((tuple(root.absolute().parts), tuple(base.parts))):
            whole = ("/",) + tuple(parts)
            if whole[:len(prefix)] == prefix and len(whole) > len(prefix):
                candidates.insert(0, list(whole[len(prefix):]))
    for candidate in candidates:
        full = base.joinpath(*candidate)
        try:
            if not os.path.lexists(full):
                continue
            real = full.resolve(strict=False)
        except (OSError, RuntimeError, ValueError) as exc:
            raise NoContext("unreadable", f"{'/'.join(candidate)}: {exc}") from None
        rel = "/".join(candidate)
        if not real.is_relative_to(base):
            raise NoContext("refused", f"refused {scanner_path!r}: {rel} resolves outside the source root")
        if not real.is_file():
            raise NoContext("not-a-file", f"{rel}: not a regular file")
        return real, rel
    where = "no suffix of it exists under" if len(parts) > 1 or absolute else "not found under"
    raise NoContext("missing", f"{scanner_path}: {where} the source root")


# ---------------------------------------------------------------- reading and parsing files

class _Source(NamedTuple):
    lines: list[str]
    data: bytes        # the text as parsed: UTF-8, \n line ends
    head: bytes        # the file's first bytes, for the shebang


@lru_cache(maxsize=32)
def _read(real: Path, mtime_ns: int, size: int, max_bytes: int) -> _Source:
    if size > max_bytes:
        raise NoContext("too-large", f"{real.name}: {size} bytes, more than {max_bytes}")
    try:
        raw = real.read_bytes()
    except OSError as exc:
        raise NoContext("unreadable", f"{real.name}: {exc.strerror or exc}") from None
    if len(raw) > max_bytes:
        raise NoContext("too-large", f"{real.name}: more than {max_bytes} bytes")
    if b"\x00" in raw[:BINARY_SNIFF]:
        raise NoContext("binary", f"{real.name}: binary file")
    text = raw.decode("utf-8", "replace").removeprefix("\ufeff").replace("\r\n", "\n")
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return _Source(lines, text.encode("utf-8"), raw[:256])


@lru_cache(maxsize=32)
def _tree(real: Path, mtime_ns: int, size: int, max_bytes: int, grammar: str):
    parser = _parser(grammar)
    return parser.parse(_read(real, mtime_ns, size, max_bytes).data) if parser else None


def _rows(node) -> tuple[int, int]:
    """1-based first and last line of a node (a node ending at column 0 ends on the line before)."""
    first, last = node.start_point[0] + 1, node.end_point[0] + 1
    if node.end_point[1] == 0 and last > first:
        last -= 1
    return first, last


def _text(node) -> str:
    return node.text.decode("utf-8", "replace") if node is not None else ""


def _contains(node, first: int, last: int) -> bool:
    a, b = _rows(node)
    return a <= first and last <= b


# ---------------------------------------------------------------- enclosing: code

_CODE_KINDS = {
    "python": {"function_definition": "function", "class_definition": "class"},
    "java": {"class_declaration": "class", "record_declaration": "record", "interface_declaration": "interface",
             "enum_declaration": "enum", "annotation_type_declaration": "interface",
             "method_declaration": "method", "constructor_declaration": "constructor",
             "compact_constructor_declaration": "constructor"},
    "kotlin": {"class_declaration": "class", "object_declaration": "object", "companion_object": "object",
               "function_declaration": "function", "secondary_constructor": "constructor"},
    "javascript": {"function_declaration": "function", "generator_function_declaration": "function",
                   "function_expression": "function", "function": "function", "generator_function": "function",
                   "arrow_function": "function", "method_definition": "method", "class_declaration": "class",
                   "class": "class"},
    "go": {"function_declaration": "function", "method_declaration": "method", "func_literal": "function",
           "type_spec": "type"},
    "shell": {"function_definition": "function"},
}
_CODE_KINDS["typescript"] = _CODE_KINDS["tsx"] = {
    **_CODE_KINDS["javascript"], "abstract_class_declaration": "class", "interface_declaration": "interface",
    "enum_declaration": "enum",
}
_CLASSLIKE = {"class", "record", "interface", "enum", "object", "type"}
_ANONYMOUS = {"function_expression", "function", "generator_function", "arrow_function", "class", "func_literal"}


def _assigned_name(node) -> tuple[str, str] | None:
    """(kind, name) of an anonymous function or class from where it stands: assigned to a variable,
    a property or a field, or passed as an argument (a callback, named after the callee)."""
    parent = node.parent
    if parent is None:
        return None
    if parent.type == "expression_list" and parent.named_child_count == 1:  # Go: x := func() {}
        parent = parent.parent
    t = parent.type
    if t == "variable_declarator":
        return "", _text(parent.child_by_field_name("name"))
    if t == "pair":
        return "", _text(parent.child_by_field_name("key")).strip("\"'`")
    if t in ("assignment_expression", "assignment_statement", "short_var_declaration", "var_spec"):
        left = parent.child_by_field_name("left") or parent.child_by_field_name("name")
        return ("", _text(left)) if left is not None and left.end_byte <= node.start_byte else None
    if t in ("public_field_definition", "field_definition"):
        key = parent.child_by_field_name("name") or parent.child_by_field_name("property")
        return ("method", _text(key)) if key is not None else None
    if t in ("arguments", "argument_list") and parent.parent is not None:
        callee = parent.parent.child_by_field_name("function")
        if callee is not None:
            return "callback", " ".join(_text(callee).split())[:80]
    return None


def _code_unit(node, grammar: str, kinds: dict) -> tuple[str, str | None, tuple[int, int]] | None:
    """(kind, own name, rows) when `node` is a unit of this grammar, else None."""
    kind = kinds.get(node.type)
    if kind is None:
        return None
    rows = _rows(node)
    if node.parent is not None and node.parent.type == "decorated_definition":  # Python decorators
        rows = (_rows(node.parent)[0], rows[1])
    name_node = node.child_by_field_name("name")
    name = _text(name_node) or None
    if grammar == "go" and node.type == "method_declaration":
        receiver = node.child_by_field_name("receiver")
        types = [d.child_by_field_name("type") for d in (receiver.named_children if receiver else [])]
        recv = re.sub(r"\[.*\]$", "", _text(types[0]).lstrip("*").strip()) if types and types[0] else ""
        name = f"{recv}.{name}" if recv and name else name
    elif grammar == "kotlin" and node.type == "class_declaration":
        if any(c.type == "interface" for c in node.children):
            kind = "interface"
    elif grammar == "kotlin" and node.type == "companion_object":
        name = name or "Companion"
    if kind == "method" and name == "constructor" and grammar in ("javascript", "typescript", "tsx"):
        kind = "constructor"
    if name is None and node.type in _ANONYMOUS:
        assigned = _assigned_name(node)
        if assigned is None or not assigned[1]:
            return None
        kind, name = assigned[0] or kind, assigned[1]
    return kind, name, rows


def _enclosing_code(tree, grammar: str, first: int, last: int) -> dict | None:
    kinds = _CODE_KINDS[grammar]
    found = None           # the innermost unit so far
    scope: list[str] = []  # names of the class-like units around it (a function resets it)
    node = tree.root_node
    while True:
        child = next((c for c in node.named_children if _contains(c, first, last)), None)
        if child is None:
            return found
        if child.type == "decorated_definition":  # Python: the definition, with its decorators' lines
            child = child.child_by_field_name("definition") or child
        unit = _code_unit(child, grammar, kinds)
        if unit is not None:
            kind, name, rows = unit
            if kind == "function" and found and found["kind"] in _CLASSLIKE - {"type"}:
                kind = "method"  # a function directly in a class body (Python, Kotlin)
            qualified = ".".join(scope + [name]) if name and kind in _CLASSLIKE | {"method", "constructor"} else name
            found = {"kind": kind, "start_line": rows[0], "end_line": rows[1]}
            if qualified:
                found["name"] = qualified
            if kind not in _CLASSLIKE:
                scope = []  # units inside a function are named on their own
            elif name:
                scope = scope + [name]
        node = child


# ---------------------------------------------------------------- enclosing: HCL / Terraform

def _enclosing_hcl(tree, first: int, last: int) -> dict | None:
    body = next((c for c in tree.root_node.named_children if c.type == "body"), None)
    for block in (body.named_children if body is not None else []):
        if block.type != "block" or not _contains(block, first, last):
            continue
        kind, labels = "", []
        for c in block.named_children:
            if c.type == "identifier" and not kind:
                kind = _text(c)
            elif c.type in ("string_lit", "identifier"):
                labels.append(_text(c).strip('"'))
            elif c.type in ("block_start", "body"):
                break
        if not kind:
            return None
        rows = _rows(block)
        found = {"kind": kind, "start_line": rows[0], "end_line": rows[1]}
        name = ".".join(labels)
        if name:
            found["name"] = name
        return found
    return None


# ---------------------------------------------------------------- enclosing: YAML

_YAML_WRAPPERS = ("block_node", "flow_node")
_YAML_EXTRAS = ("anchor", "tag", "comment")
_CONTAINER_KEYS = ("containers", "initContainers", "ephemeralContainers")


def _yval(node):
    """The collection or scalar inside block_node/flow_node wrappers (anchors and tags skipped)."""
    while node is not None and node.type in _YAML_WRAPPERS:
        node = next((c for c in node.named_children if c.type not in _YAML_EXTRAS), None)
    return node


def _yscalar(node) -> str | None:
    node = _yval(node)
    if node is None:
        return None
    raw = _text(node)
    if node.type == "plain_scalar":
        return raw.strip()
    if node.type == "double_quote_scalar":
        try:
            return json.loads(raw)
        except ValueError:
            return raw[1:-1]
    if node.type == "single_quote_scalar":
        return raw[1:-1].replace("''", "'")
    return None


def _ypairs(node) -> list[tuple[str | None, object, object]]:
    """(key, value node, pair node) of a mapping node; [] for anything else."""
    node = _yval(node)
    if node is None or node.type not in ("block_mapping", "flow_mapping"):
        return []
    return [(_yscalar(p.child_by_field_name("key")), p.child_by_field_name("value"), p)
            for p in node.named_children if p.type in ("block_mapping_pair", "flow_pair")]


def _yitems(node) -> list:
    """(item value, item node) of a sequence node; [] for anything else."""
    node = _yval(node)
    if node is None:
        return []
    if node.type == "block_sequence":
        return [(next((c for c in item.named_children if c.type != "comment"), None), item)
                for item in node.named_children if item.type == "block_sequence_item"]
    if node.type == "flow_sequence":
        return [(c, c) for c in node.named_children if c.type == "flow_node"]
    return []


def _ymap(node) -> dict:
    return {k: v for k, v, _ in _ypairs(node) if k is not None}


def _is_collection(node) -> bool:
    node = _yval(node)
    return node is not None and node.type in ("block_mapping", "flow_mapping", "block_sequence", "flow_sequence")


def _k8s_object(node) -> tuple[str, str | None] | None:
    m = _ymap(node)
    kind = _yscalar(m.get("kind")) if "apiVersion" in m and "kind" in m else None
    if not kind:
        return None
    meta = _ymap(m.get("metadata"))
    name, namespace = _yscalar(meta.get("name")), _yscalar(meta.get("namespace"))
    return kind, (f"{namespace}/{name}" if namespace and name else name)


def _enclosing_yaml(tree, path: str, first: int, last: int) -> dict | None:
    name = PurePosixPath(path).name.lower()
    workflow_dir = "/.github/workflows/" in "/" + path
    action = name in ("action.yml", "action.yaml")
    compose = bool(re.fullmatch(r"(docker-)?compose([-.\w]*)\.ya?ml", name))
    found: list[tuple[str, str | None, tuple[int, int]]] = []

    def hit(kind, unit_name, node):
        found.append((kind, unit_name or None, _rows(node)))

    def walk(value, keypath: str, doc: str, depth: int) -> None:
        obj = _k8s_object(value)
        if obj is not None:
            hit(obj[0], obj[1], _yval(value))
        for key, child, pair in _ypairs(value):
            if not _contains(pair, first, last):
                continue
            sub = f"{keypath}.{key}" if keypath else str(key)
            if doc == "workflow" and depth == 0 and key == "jobs":
                for job, job_value, job_pair in _ypairs(child):
                    if _contains(job_pair, first, last):
                        hit("job", job, job_pair)
                        walk(job_value, f"jobs.{job}", "job", 1)
                return
            if doc == "compose" and depth == 0 and key == "services":
                for svc, svc_value, svc_pair in _ypairs(child):
                    if _contains(svc_pair, first, last):
                        hit("service", svc, svc_pair)
                        walk(svc_value, f"services.{svc}", "service", 1)
                return
            if key == "steps" and (doc == "job" or (action and keypath == "runs")):
                for item_value, item in _yitems(child):
                    if _contains(item, first, last):
                        step = _ymap(item_value)
                        label = next((_yscalar(step.get(k)) for k in ("name", "id", "uses") if _yscalar(step.get(k))), None)
                        hit("step", label, item)
                return
            if key in _CONTAINER_KEYS and doc == "k8s":
                for item_value, item in _yitems(child):
                    if _contains(item, first, last):
                        hit("container", _yscalar(_ymap(item_value).get("name")), item)
                        walk(item_value, sub, doc, depth + 1)
                return
            if doc == "generic" and _is_collection(child):
                hit("key", sub, pair)
            walk(child, sub, doc, depth + 1)
            return
        for i, (item_value, item) in enumerate(_yitems(value)):
            if _contains(item, first, last):
                sub = f"{keypath}[{i}]"
                if doc == "generic" and _is_collection(item_value):
                    hit("key", sub, item)
                walk(item_value, sub, doc, depth + 1)
                return

    for document in tree.root_node.named_children:
        if document.type != "document":
            continue
        top = next((c for c in document.named_children if c.type in _YAML_WRAPPERS), None)
        if top is None or not _contains(top, first, last):
            continue
        keys = _ymap(top)
        if "jobs" in keys and ("on" in keys or workflow_dir):
            doc = "workflow"
            hit("workflow", _yscalar(keys.get("name")), _yval(top))
        elif compose or (workflow_dir is False and "services" in keys and _is_collection(keys["services"])
                         and "apiVersion" not in keys and "openapi" not in keys and "swagger" not in keys):
            doc = "compose"
        elif _k8s_object(top) is not None or "apiVersion" in keys:
            doc = "k8s"
        else:
            doc = "generic"
        walk(top, "", doc, 0)
        break
    if not found:
        return None
    kind, unit_name, rows = found[-1]
    out = {"kind": kind, "start_line": rows[0], "end_line": rows[1]}
    if unit_name:
        out["name"] = unit_name
    return out


# ---------------------------------------------------------------- enclosing: Dockerfile

def _enclosing_dockerfile(tree, first: int, last: int) -> dict | None:
    instructions = [c for c in tree.root_node.named_children if c.type.endswith("_instruction")]
    stages: list[tuple[object, list]] = []
    for node in instructions:
        if node.type == "from_instruction":
            stages.append((node, [node]))
        elif stages:
            stages[-1][1].append(node)
    for frm, members in stages:
        a, b = _rows(frm)[0], _rows(members[-1])[1]
        if a <= first and last <= b:
            alias = frm.child_by_field_name("as")
            image = next((c for c in frm.named_children if c.type == "image_spec"), None)
            name = _text(alias) or _text(image)
            out = {"kind": "stage", "start_line": a, "end_line": b}
            if name:
                out["name"] = name
            return out
    for node in instructions:
        if _contains(node, first, last):
            a, b = _rows(node)
            return {"kind": "instruction", "name": node.type.removesuffix("_instruction").upper(),
                    "start_line": a, "end_line": b}
    return None


def _enclosing(tree, grammar: str, path: str, first: int, last: int) -> dict | None:
    if tree is None:
        return None
    if grammar in _CODE_KINDS:
        return _enclosing_code(tree, grammar, first, last)
    if grammar == "hcl":
        return _enclosing_hcl(tree, first, last)
    if grammar == "yaml":
        return _enclosing_yaml(tree, path, first, last)
    if grammar == "dockerfile":
        return _enclosing_dockerfile(tree, first, last)
    return None


def _trim(lines: list[str], language: str, first: int, last: int) -> tuple[int, int]:
    """The finding's range without leading and trailing blank or whole-line comment lines."""
    prefixes = _COMMENTS.get(language, ())

    def ignorable(n: int) -> bool:
        s = lines[n - 1].strip()
        return not s or (bool(prefixes) and s.startswith(prefixes))

    a, b = first, last
    while a < b and ignorable(a):
        a += 1
    while b > a and ignorable(b):
        b -= 1
    return a, b


# ---------------------------------------------------------------- secrets

_KEY_PREFIX = re.compile(r"""^\s*(?:-\s+)?(?P<key>[\w$@.\-\[\]"' ]{1,120}?)\s*(?::=|=>|=|:(?!//))\s*""")
_CANDIDATE_SPLIT = re.compile(r"""[\s=:,;'"`()\[\]{}<>]+""")
_QUOTED = re.compile(r""""((?:[^"\\]|\\.)*)"|'((?:[^'\\]|\\.)*)'|`([^`]*)`""")
_PEM_BEGIN = re.compile(r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----")
_PEM_END = re.compile(r"-----END [A-Z0-9 ]*PRIVATE KEY-----")
_PEM_INLINE = re.compile(r"(-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----)(.*?)(-----END [A-Z0-9 ]*PRIVATE KEY-----)")


def _key_prefix(line: str) -> int | None:
    """Where the value starts in a `key = value` / `key: value` line, or None."""
    m = _KEY_PREFIX.match(line)
    return m.end() if m and re.search(r"\w", m.group("key")) else None


def _hashed_values(lines: Iterable[str], digests: set[str]) -> set[str]:
    """The strings in `lines` whose SHA-256 is one of `digests` (quoted strings, values after a
    key, tokens)."""
    found: set[str] = set()
    for line in lines:
        candidates = {line.strip()}
        candidates.update(g for m in _QUOTED.finditer(line) for g in m.groups() if g)
        at = _key_prefix(line)
        if at is not None:
            rest = line[at:].strip()
            candidates.update((rest, rest.rstrip(",;"), rest.strip("\"'`,;")))
        candidates.update(_CANDIDATE_SPLIT.split(line))
        for c in candidates:
            if len(c) >= 4 and hashlib.sha256(c.encode("utf-8", "surrogatepass")).hexdigest() in digests:
                found.add(c)
    return found


def _blank(line: str) -> str:
    """A secret's line with everything after its key replaced by [REDACTED]."""
    if not line.strip():
        return line
    at = _key_prefix(line)
    if at is not None:
        return line[:at] + REDACTED
    return line[:len(line) - len(line.lstrip())] + REDACTED


def _pem_rows(lines: list[str]) -> set[int]:
    """1-based lines strictly inside multi-line PEM private key blocks."""
    rows, inside = set(), False
    for n, line in enumerate(lines, 1):
        if inside:
            if _PEM_END.search(line):
                inside = False
            else:
                rows.add(n)
        elif (m := _PEM_BEGIN.search(line)) and not _PEM_END.search(line, m.end()):
            inside = True
    return rows


def _secure(source: _Source, start: int, end: int, finding: dict, first: int, last: int,
            extra: Iterable[str], hashes: Iterable[str]) -> list[str]:
    """The lines start..end with the finding's secrets and private keys blanked."""
    lines = source.lines[start - 1:end]
    secrets = {s for s in extra if s}
    digests = {h.lower() for h in hashes if isinstance(h, str) and len(h) == 64}
    digest = (finding.get("secret") or {}).get("sha256")
    if isinstance(digest, str) and len(digest) == 64:
        digests.add(digest.lower())
    if digests:
        secrets |= _hashed_values(lines, digests)
    blank_rows = range(first, last + 1) if finding.get("category") == "secret" else range(0)
    pem = _pem_rows(source.lines) if b"PRIVATE KEY-----" in source.data else set()
    out = []
    for n, line in enumerate(lines, start):
        if n in blank_rows:
            line = _blank(line)
        if secrets:
            line = redact_text(line, secrets)
        if n in pem and line.strip():
            line = line[:len(line) - len(line.lstrip())] + REDACTED
        elif pem or "PRIVATE KEY-----" in line:
            line = _PEM_INLINE.sub(rf"\1{REDACTED}\3", line)
        out.append(line)
    return out


# ---------------------------------------------------------------- the code context

def read_context(finding: dict, root: Path, radius: int = RADIUS, redact: Iterable[str] = (), *,
                 hashes: Iterable[str] = (), max_bytes: int = MAX_BYTES,
                 max_lines: int = MAX_LINES) -> tuple[dict | None, Skip | None]:
    """(code_context, None) for a finding whose file is under `root`, else (None, Skip).

    `radius` lines are shown before and after the finding's lines (clipped to the file, at most
    `max_lines` in all); `redact`: strings to blank; `hashes`: more SHA-256 digests of secrets
    to blank wherever they appear (e.g. every `secret.sha256` of the run, so that a scanner that
    does not hash the secret it reports still gets it blanked)."""
    try:
        return _context(finding, Path(root), radius, tuple(redact), tuple(hashes), max_bytes, max_lines), None
    except NoContext as exc:
        return None, exc.skip


def code_context(finding: dict, root: Path, radius: int = RADIUS, redact: Iterable[str] = (), *,
                 hashes: Iterable[str] = (), max_bytes: int = MAX_BYTES, max_lines: int = MAX_LINES) -> dict | None:
    """The analysis/1 `code_context` of a finding read under `root`, or None (see read_context)."""
    return read_context(finding, root, radius, redact, hashes=hashes, max_bytes=max_bytes, max_lines=max_lines)[0]


def _context(finding: dict, root: Path, radius: int, redact: tuple, hashes: tuple, max_bytes: int,
             max_lines: int) -> dict:
    loc = finding.get("location") or {}
    if not isinstance(loc, dict) or not loc.get("path"):
        raise NoContext("no-location", "the finding has no file location")
    first = positive_int(loc.get("start_line"))
    if first is None:
        raise NoContext("no-lines", f"{loc['path']}: the finding has no line")
    last = max(positive_int(loc.get("end_line")) or first, first)
    real, rel = locate(root, str(loc["path"]))
    try:
        st = real.stat()
    except OSError as exc:
        raise NoContext("unreadable", f"{rel}: {exc.strerror or exc}") from None
    source = _read(real, st.st_mtime_ns, st.st_size, max_bytes)
    n = len(source.lines)
    if first > n:
        raise NoContext("out-of-range", f"{rel}: line {first} is past the end of the file ({n} lines)")
    radius = max(0, int(radius))
    start, end = max(1, first - radius), min(n, last + radius)
    end = min(end, start + max(1, max_lines) - 1)
    code = _secure(source, start, end, finding, first, min(last, n), redact, hashes)
    language = detect_language(rel, source.head)
    grammar = _grammar_key(language, rel)
    ctx = {
        "path": rel, "language": language, "start_line": start, "end_line": end,
        "code": "\n".join(code), "finding_lines": [first, last],
    }
    a, b = _trim(source.lines, language, first, min(last, n))
    enclosing = _enclosing(_tree(real, st.st_mtime_ns, st.st_size, max_bytes, grammar), grammar, rel, a, b)
    if enclosing:
        if "name" in enclosing and redact:
            enclosing["name"] = redact_text(enclosing["name"], redact) or enclosing["name"]
        ctx["enclosing"] = enclosing
    return ctx


# ---------------------------------------------------------------- does code parse?

_WRAPPERS = {  # a fix is often a fragment: a class member or a function body
    "java": ("class _Fix {\n", "\n}\n", "class _Fix { void _fix() {\n", "\n} }\n"),
    "kotlin": ("fun _fix() {\n", "\n}\n", "class _Fix {\n", "\n}\n"),
    "javascript": ("class _Fix {\n", "\n}\n", "function _fix() {\n", "\n}\n"),
    "typescript": ("class _Fix {\n", "\n}\n", "function _fix() {\n", "\n}\n"),
    "tsx": ("class _Fix {\n", "\n}\n", "function _fix() {\n", "\n}\n"),
    "go": ("func _fix() {\n", "\n}\n", "type _Fix struct {\n", "\n}\n"),
}
_REQUIREMENT = re.compile(
    r"^(?:(?:-r|-c|--requirement|--constraint|-i|--index-url|--extra-index-url|-f|--find-links|--trusted-host"
    r"|--pre|--no-binary|--only-binary|--prefer-binary|--require-hashes|--no-index)\b.*"
    r"|-e\s+\S+|(?:git\+|https?://|file:)\S+"
    r"|[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?\s*(?:\[[\w\s,.-]*\])?\s*"
    r"(?:@\s*\S+|(?:\(?\s*(?:~=|==|!=|<=|>=|<|>|===)\s*[\w.*+!-]+(?:\s*,\s*(?:~=|==|!=|<=|>=|<|>|===)\s*[\w.*+!-]+)*\s*\)?))?"
    r"\s*(?:;\s*[^#]+)?(?:\s+--hash=\S+)*)$")


def _clean_tree(parser, code: str) -> bool:
    return not parser.parse(code.encode("utf-8")).root_node.has_error


def _clean_wrapped(parser, code: str, head: str, tail: str) -> bool:
    """True when `code` parses inside the wrapper and fits it: no node opened by the wrapper's
    head closes inside the code, and no node opened in the code closes in the wrapper's tail
    (`} class X {` must not pass as a class member)."""
    begin = len(head.encode("utf-8"))
    end = begin + len(code.encode("utf-8"))
    root = parser.parse((head + code + tail).encode("utf-8")).root_node
    if root.has_error:
        return False
    stack = list(root.children)
    while stack:
        node = stack.pop()
        if node.start_byte < begin < node.end_byte <= end:
            return False
        if begin <= node.start_byte < end < node.end_byte:
            return False
        if node.start_byte < end and node.end_byte > begin:
            stack.extend(node.children)
    return True


def _tree_sitter_parses(code: str, key: str) -> bool | None:
    parser = _parser(key)
    if parser is None:
        return None
    if _clean_tree(parser, code):
        return True
    wrappers = _WRAPPERS.get(key, ())
    return any(_clean_wrapped(parser, code, wrappers[i], wrappers[i + 1]) for i in range(0, len(wrappers), 2))


def _requirements_parse(code: str) -> bool:
    for raw in code.replace("\\\n", " ").split("\n"):
        line = re.sub(r"(^|\s)#.*$", "", raw).strip()
        if line and not _REQUIREMENT.match(line):
            return False
    return True


def can_check(language: str) -> bool:
    """True when `parses` can check code of this language on this install."""
    language = _canonical(language)
    return language in ("json", "toml", "requirements") or has_grammar(language) or language == "python"


def parses(code: str, language: str) -> bool:
    """True when `code` is well-formed `language`: tree-sitter finds no ERROR or MISSING node
    (with Python also `ast`, with YAML also `yaml.safe_load_all`); json/toml with their standard
    library parsers; requirements line by line (PEP 508 requirements and pip options). The code
    may be indented (it is dedented first) or a fragment: a Java/JS/TS class member, a Kotlin/Go/JS
    function body. False for blank code, and for a language that cannot be checked (see can_check)."""
    language = _canonical(language)
    if not code.strip():
        return False
    code = textwrap.dedent(code.replace("\r\n", "\n"))
    if not code.endswith("\n"):  # some grammars (Go) want a last statement ended
        code += "\n"
    if language == "json":
        try:
            json.loads(code)
            return True
        except ValueError:
            return False
    if language == "toml":
        try:
            tomllib.loads(code)
            return True
        except tomllib.TOMLDecodeError:
            return False
    if language == "requirements":
        return _requirements_parse(code)
    if language == "python":
        try:
            ast.parse(code)
        except (SyntaxError, ValueError):
            return False
    if language == "yaml":
        try:
            for _ in yaml.safe_load_all(code):
                pass
        except yaml.YAMLError:
            return False
    if language == "typescript":
        result = _tree_sitter_parses(code, "typescript")
        return bool(result) or bool(_tree_sitter_parses(code, "tsx"))
    result = _tree_sitter_parses(code, language)
    if result is None:
        return language in ("python", "yaml")  # checked above without a grammar
    return result
