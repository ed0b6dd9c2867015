"""Languages of source files, their tree-sitter grammars, and whether code parses.

    detect_language("infra/main.tf")                   # 'hcl'
    parses("def f():\n    return 1\n", "python")       # True: no ERROR/MISSING node
    is_test_path("tests/test_app.py")                  # True: test code, not shipped code
    code_role("app/migrations/0001_initial.py")        # 'generated' (also 'test', 'example', None)
    built_into_image(Path("src"), "app/main.py")       # True: a Dockerfile in app/ or above builds it

Languages come from the file name (extension, Dockerfile/Containerfile, requirements*.txt,
GitHub workflow folder) and else the shebang. Grammars are the per-language wheels from PyPI
(tree-sitter-python, -java, -kotlin, -javascript, -typescript, -go, -yaml, -hcl, -dockerfile,
-bash), each loaded once on first use; a language whose grammar package is not installed still gets
its lines, without `enclosing`. json, toml, requirements, ini, ... are plain languages (no grammar).
"""

from __future__ import annotations

import ast
import importlib
import json
import re
import textwrap
import tomllib
import warnings
from functools import cache, lru_cache
from pathlib import Path, PurePosixPath

import yaml

from secai.parsing.finding import norm_path

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

# Test code: a folder that holds tests or their data, or a test file by the naming conventions of
# pytest/unittest, Go, Jest/Mocha/Jasmine/Vitest, JUnit/Kotest and RSpec.
_TEST_DIRS = frozenset({"test", "tests", "__tests__", "__test__", "spec", "specs", "testdata", "test_data"})
_TEST_FILE = re.compile(r"(test_.*\.py|.*_tests?\.py|conftest\.py|.*_test\.go|.*\.(spec|test)\.[cm]?[jt]sx?"
                        r"|.*Tests?\.(java|kt)|.*_spec\.rb)")


def is_test_path(path: str | None) -> bool:
    """Whether `path` is test code (tests/x.py, pkg/test_x.py, x_test.go, src/a.spec.ts, __tests__/,
    testdata/, ...): code that checks the application, not code the application runs."""
    if not path:
        return False
    p = PurePosixPath(norm_path(path))
    return bool(_TEST_DIRS.intersection(d.lower() for d in p.parts[:-1]) or _TEST_FILE.fullmatch(p.name))


# Example and sample code (shipped to show usage, not run by the application), and generated code:
# by folder, by the generators' file names (protobuf/gRPC, minified and bundled JavaScript, Django
# migrations, lock-step snapshots), or by the "generated" marker the generators write at the top.
_EXAMPLE_DIRS = frozenset({"example", "examples", "sample", "samples", "demo", "demos", "_examples"})
_GENERATED_DIRS = frozenset({"migrations", "__snapshots__", "generated", "__generated__"})
_GENERATED_FILE = re.compile(r".*(_pb2(_grpc)?\.pyi?|\.pb(\.gw)?\.go|_grpc\.pb\.go|\.min\.[cm]?js|\.bundle\.js"
                             r"|\.generated\.\w+|_generated\.\w+|\.g\.dart|\.designer\.cs)")
_GENERATED_MARK = re.compile(r"(?i)(code generated .{0,80}do not edit|@generated\b|generated by (django|the protocol "
                             r"buffer compiler|protoc)|auto-?generated (file|code)|this file (is|was) (automatically )?generated)")


@lru_cache(maxsize=4096)  # one run's findings name the same files again and again
def code_role(path: str | None, head: str = "") -> str | None:
    """What a file is, when it is not application code: 'test' (is_test_path), 'example' (an
    examples/ or samples/ folder) or 'generated' (a generator's file name or folder, e.g. Django's
    migrations/, x_pb2.py, app.min.js, or its marker in `head`, the file's first lines); else None."""
    if not path:
        return None
    if is_test_path(path):
        return "test"
    p = PurePosixPath(norm_path(path))
    folders = {d.lower() for d in p.parts[:-1]}
    if folders & _EXAMPLE_DIRS:
        return "example"
    if folders & _GENERATED_DIRS or _GENERATED_FILE.fullmatch(p.name) or _GENERATED_MARK.search(head[:2000]):
        return "generated"
    return None


@lru_cache(maxsize=4096)  # one run's findings name the same files again and again
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


def grammar_key(language: str, path: str = "") -> str:
    """The grammar that parses a file of `language` at `path` (TypeScript's .tsx has its own)."""
    if language == "typescript" and path.lower().endswith(".tsx"):
        return "tsx"
    return language


@cache
def parser_for(key: str):
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
    return parser_for(canonical(language)) is not None


def canonical(language: str) -> str:
    """The language's own name for a name or alias as scanners and fixes write it (`py`, `tf`, `yml`)."""
    language = (language or "").strip().lower()
    return _ALIASES.get(language, language)


def trim_range(lines: list[str], language: str, first: int, last: int) -> tuple[int, int]:
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


class _AnyTagLoader(yaml.SafeLoader):
    """yaml.SafeLoader that reads a local tag it does not know (`!Ref`, `!GetAtt`, `!Sub` ...) as
    nothing: whether YAML is well-formed does not depend on what an application makes of its tags."""


class _FastAnyTagLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):
    """_AnyTagLoader on libyaml (the same documents, ~10x faster); what it refuses, _AnyTagLoader decides."""


for _loader in (_AnyTagLoader, _FastAnyTagLoader):
    _loader.add_multi_constructor("!", lambda loader, suffix, node: None)


def _yaml_parses(code: str) -> bool:
    for loader in (_FastAnyTagLoader, _AnyTagLoader):
        try:
            for _ in yaml.load_all(code, Loader=loader):
                pass
            return True
        except yaml.YAMLError:
            continue
    return False


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
    parser = parser_for(key)
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
    language = canonical(language)
    return language in ("json", "toml", "requirements", "html") or has_grammar(language) or language == "python"


# An HTML file cannot fail to parse (HTML5 defines a result for every input), so what an HTML file's
# check can catch is its template tags: each {{ }}, {% %} or {# #} (Django, Jinja, Nunjucks, Swig;
# Vue's and Angular's {{ }}) closed before the next one opens; a lone }} is JavaScript's, not a tag.
_TAG_OPEN = re.compile(r"\{[{%#]")
_TAG_CLOSE = {"{{": "}}", "{%": "%}", "{#": "#}"}


def _template_tags_close(code: str) -> bool:
    at = 0
    while opened := _TAG_OPEN.search(code, at):
        end = code.find(_TAG_CLOSE[opened.group()], opened.end())
        if end < 0 or (opened.group() != "{#" and _TAG_OPEN.search(code, opened.end(), end)):
            return False
        at = end + 2
    return True


def parses(code: str, language: str) -> bool:
    """True when `code` is well-formed `language`: tree-sitter finds no ERROR or MISSING node
    (with Python also `ast`, with YAML also a safe load that takes any local tag, such as
    CloudFormation's `!Ref`, as plain data); json/toml with their standard
    library parsers; requirements line by line (PEP 508 requirements and pip options); html by its
    template tags (_template_tags_close: HTML itself parses whatever it is given). The code
    may be indented (it is dedented first) or a fragment: a Java/JS/TS class member, a Kotlin/Go/JS
    function body. False for blank code, and for a language that cannot be checked (see can_check).
    A snippet's answer is remembered: the same fixed code is checked again and again (a fix rule's
    candidate spans, the same fix in finding after finding)."""
    return (_parses_snippet if len(code) <= _SNIPPET_CHARS else _parses)(code, language)


_SNIPPET_CHARS = 65536  # longer code (a whole file being verified) is parsed each time, not kept


def _parses(code: str, language: str) -> bool:
    language = canonical(language)
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
    if language == "html":
        return _template_tags_close(code)
    if language == "python":
        try:
            ast.parse(code)
        except (SyntaxError, ValueError):
            return False
    if language == "yaml" and not _yaml_parses(code):
        return False
    if language == "typescript":
        result = _tree_sitter_parses(code, "typescript")
        return bool(result) or bool(_tree_sitter_parses(code, "tsx"))
    result = _tree_sitter_parses(code, language)
    if result is None:
        return language in ("python", "yaml")  # checked above without a grammar
    return result


_parses_snippet = lru_cache(maxsize=4096)(_parses)


_IMAGE_FILES = re.compile(r"(?i)^(?:dockerfile|containerfile)(?:\..+)?$|\.(?:dockerfile|containerfile)$")


def built_into_image(root: Path | None, rel: str) -> bool:
    """Whether a Dockerfile or Containerfile in the directory of `rel` or one above it, up to the
    source root, builds the file into a container image (an unknown root: False)."""
    if root is None:
        return False
    base = Path(root).resolve()
    try:
        directory = (base / rel).resolve().parent
    except (OSError, RuntimeError):
        return False
    if not directory.is_relative_to(base):
        return False
    while True:
        try:
            listed = directory.stat().st_mtime_ns  # a directory's mtime changes when a file is added
        except OSError:
            return False
        if _has_image_file(directory, listed):
            return True
        if directory == base:
            return False
        directory = directory.parent


@lru_cache(maxsize=256)
def _has_image_file(directory: Path, mtime_ns: int) -> bool:
    try:
        return any(_IMAGE_FILES.match(p.name) and p.is_file() for p in directory.iterdir())
    except OSError:
        return False
