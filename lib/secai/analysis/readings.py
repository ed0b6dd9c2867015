"""What the composer reads off a finding, its rule's knowledge and its code before it writes: the
frameworks the advice must be in, the flagged lines, whether a "secret" is evidently none, and
how a checkov check's declared expectation compares with what the code sets.

    frameworks_of(finding, rule, context)   # ('django', 'python'): most specific first
    project_frameworks(root, path)          # frozenset({'express'}): what the project's manifests name
    not_a_secret(finding, flagged)          # ('placeholder', 'the value is ...') or None
    expectation(rule, flagged, ...)         # what the check expects, what the code sets, what to change

Everything here works on redacted text (secai.secrets): a secret's value is never read back; what
is left of it (its key, the shape of the line, the finding's SHA-256 of it) is enough to tell a
placeholder, a class name or an environment lookup from a credential.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import re
from functools import cache, lru_cache
from pathlib import Path
from typing import NamedTuple

from secai.analysis.languages import detect_language
from secai.secrets import REDACTED

# Frameworks whose APIs advice may name, in the words rule metadata (semgrep `technology`), semgrep
# rule ids (semgrep-rules.python.django.security...) and kb `remediation_by` keys use.
FRAMEWORKS = frozenset({"django", "flask", "fastapi", "pyramid", "tornado", "express", "koa", "nestjs", "react",
                        "angular", "vue", "browser", "spring", "ktor", "rails", "laravel", "symfony", "gin", "echo",
                        "kubernetes"})
LANGUAGES = frozenset({"python", "javascript", "typescript", "java", "kotlin", "go", "ruby", "php", "csharp",
                       "scala", "rust", "c", "cpp", "swift", "hcl", "yaml", "dockerfile", "shell"})
# An import in the lines shown that names the framework the code uses
_IMPORTS = ((re.compile(r"^\s*(from|import)\s+django\b", re.M), "django"),
            (re.compile(r"^\s*(from|import)\s+flask\b", re.M), "flask"),
            (re.compile(r"^\s*(from|import)\s+fastapi\b", re.M), "fastapi"),
            (re.compile(r"require\(\s*['\"]express['\"]\s*\)|from\s+['\"]express['\"]"), "express"),
            (re.compile(r"^\s*import\s+org\.springframework\b", re.M), "spring"),
            (re.compile(r"^\s*import\s+io\.ktor\b", re.M), "ktor"),
            # a Kubernetes object: its apiVersion and kind at the top level of a YAML document
            (re.compile(r"\A(?=[\s\S]*^apiVersion:[ \t]*\S)(?=[\s\S]*^kind:[ \t]*[A-Z]\w*[ \t]*$)", re.M), "kubernetes"))


def _ruled(finding: dict, rule: dict | None) -> list[str]:
    """The frameworks and languages the rule is written for: its knowledge (semgrep: languages +
    metadata.technology) and the semgrep rule id's path."""
    names = [str(n).lower() for n in (rule or {}).get("frameworks") or ()]
    if finding.get("tool") == "semgrep":
        names += [p for p in finding.get("rule_id", "").lower().split(".")[:-1] if p in FRAMEWORKS | LANGUAGES]
    return names


def _imported(context: dict | None) -> list[str]:
    code = (context or {}).get("code") or ""
    return list(_imports_in(code) if len(code) < 65536 else _imports_of(code))


@lru_cache(maxsize=1024)  # the lines shown, asked for several times per finding and again by the file's others
def _imports_in(code: str) -> tuple[str, ...]:
    return _imports_of(code)


def _imports_of(code: str) -> tuple[str, ...]:
    return tuple(name for pattern, name in _IMPORTS if pattern.search(code))


def foreign_frameworks(finding: dict, rule: dict | None, context: dict | None,
                       project: frozenset[str] | None) -> tuple[str, ...]:
    """The frameworks the rule is written for that the flagged file's project does not use: its
    manifests (project_frameworks) name frameworks, none of the rule's, and the code shown imports
    none of them (a Django template rule on the HTML templates of an Express app). Only
    frameworks a manifest can name count (not 'browser', which no manifest declares)."""
    if not project:
        return ()
    used, declarable = project | set(_imported(context)), {n for _, _, n in _MANIFESTS} | set(_NPM.values())
    written_for = [n for n in dict.fromkeys(_ruled(finding, rule)) if n in declarable]
    return () if used.intersection(written_for) else tuple(written_for)


def frameworks_of(finding: dict, rule: dict | None, context: dict | None,
                  project: frozenset[str] | None = None) -> tuple[str, ...]:
    """The finding's frameworks, then its languages, most specific first: from the rule's knowledge
    (semgrep: languages + metadata.technology), the semgrep rule id's path, imports in the code
    shown, and the file's language. Names outside FRAMEWORKS and LANGUAGES (a rule's own
    technology words) are kept: they match no variant, so they cannot select another's. When the
    rule is written for a framework the file's project does not use (foreign_frameworks), the
    rule's frameworks and languages give way to the project's (`project`: project_frameworks); else
    the project's come after the rule's and the code's own (a bandit finding in a Django project's
    view gets the Django variant although the lines shown import nothing)."""
    names = _ruled(finding, rule)
    if foreign_frameworks(finding, rule, context, project):
        names = sorted(project or ())
    names += _imported(context) + sorted(project or ())
    path = (finding.get("location") or {}).get("path")
    language = (context or {}).get("language") or (detect_language(path) if path else None)
    if language and language != "text":
        names.append(language)
    names = list(dict.fromkeys(names))
    return tuple(sorted(names, key=lambda n: (n in LANGUAGES, names.index(n))))


# Manifests that name a project's framework: (file name glob, regex over its text, framework).
_PY_DEP = r"(?im)(?<![\w.-]){}(?![\w.-])"
_PY_FILES = ("requirements*.txt", "pyproject.toml", "Pipfile", "setup.py", "setup.cfg")
_MANIFESTS = tuple((f, re.compile(_PY_DEP.format(n)), n) for f in _PY_FILES
                   for n in ("django", "flask", "fastapi", "pyramid", "tornado")) + (
    ("manage.py", re.compile(r"\bdjango\b"), "django"),
    *((f, re.compile(r"org\.springframework"), "spring") for f in ("pom.xml", "build.gradle", "build.gradle.kts")),
    *((f, re.compile(r"io\.ktor"), "ktor") for f in ("pom.xml", "build.gradle", "build.gradle.kts")),
    ("Gemfile", re.compile(r"""(?m)^\s*gem\s+['"]rails['"]"""), "rails"),
    ("composer.json", re.compile(r'"laravel/framework"'), "laravel"),
    ("composer.json", re.compile(r'"symfony/'), "symfony"),
    ("go.mod", re.compile(r"github\.com/gin-gonic/gin\b"), "gin"),
    ("go.mod", re.compile(r"github\.com/labstack/echo\b"), "echo"))
_NPM = {"express": "express", "koa": "koa", "@nestjs/core": "nestjs", "react": "react",
        "@angular/core": "angular", "vue": "vue"}


def _package_json(path: Path) -> set[str]:
    try:
        data = json.loads(path.read_text(encoding="utf-8", errors="replace"))
    except (OSError, ValueError):
        return set()
    if not isinstance(data, dict):
        return set()
    deps = [data.get(k) for k in ("dependencies", "devDependencies", "peerDependencies")]
    return {_NPM[name] for d in deps if isinstance(d, dict) for name in d if name in _NPM}


@cache
def _declared(directory: Path) -> frozenset[str]:
    """The frameworks the manifests in `directory` (not below it) name."""
    try:  # one listing of the folder, matched as Path.glob matches (fnmatch, case-sensitive here)
        names = os.listdir(directory)
    except (OSError, ValueError):
        return frozenset()
    found = _package_json(directory / "package.json") if (directory / "package.json").is_file() else set()
    texts: dict[str, str] = {}
    for glob, pattern, name in _MANIFESTS:
        for file in fnmatch.filter(names, glob):
            path = directory / file
            if file not in texts:
                texts[file] = path.read_text(encoding="utf-8", errors="replace") \
                    if path.is_file() and path.stat().st_size < 1_000_000 else ""
            if texts[file] and pattern.search(texts[file]):
                found.add(name)
    return frozenset(found)


def project_frameworks(root: Path | None, path: str | None) -> frozenset[str] | None:
    """The frameworks the manifests of the flagged file's project name (package.json dependencies,
    requirements and pyproject entries, manage.py, pom.xml, build.gradle, Gemfile, composer.json,
    go.mod) nearest to it: in its directory or, where those name none, the closest one above it up
    to `root` (a project nested in another, such as an app with a requirements.txt of its own, is
    its own project), and the framework imports of the file itself; None when they name none."""
    if root is None or not path:
        return None
    try:  # what decides the answer, but for the manifests (_declared reads each folder's once)
        st = os.stat(os.path.join(root, path))
        mark = (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size)
    except (OSError, ValueError):
        mark = None
    return _project_frameworks(str(root), path, mark)


@lru_cache(maxsize=4096)  # one run's findings name the same files again and again
def _project_frameworks(root: str, path: str, mark) -> frozenset[str] | None:
    root = Path(root).resolve()
    file = (root / path).resolve()
    directory = file.parent
    if not directory.is_relative_to(root):
        return None
    try:
        text = file.read_text(encoding="utf-8", errors="replace") if file.stat().st_size < 2_000_000 else ""
    except OSError:
        text = ""
    found = set(_imports_of(text))
    while not (declared := _declared(directory)) and directory != root:
        directory = directory.parent
    return frozenset(found | declared) or None


def flagged(context: dict | None) -> str | None:
    """The finding's own lines of its code context (the lines around them cut away)."""
    if not context or not context.get("code") or not context.get("finding_lines"):
        return None
    first, last = context["finding_lines"]
    lines = context["code"].split("\n")
    start = context.get("start_line", 1)
    own = lines[max(0, first - start): max(0, last - start + 1)]
    return "\n".join(own) or None


# ---------------------------------------------------------------- secrets that are none
# Values that are no secret: placeholders left for the user to fill in, and the default passwords
# that every password list and scanner tries first. Compared by SHA-256 with the finding's
# secret.sha256, so the value itself is never read.
PLACEHOLDERS = ("changeme", "change-me", "change_me", "changeit", "replaceme", "replace-me", "placeholder",
                "example", "dummy", "xxx", "xxxx", "xxxxx", "xxxxxxxx", "todo", "tbd", "none", "null", "redacted",
                "your-api-key", "your_api_key", "<your-key>", "<your-api-key>", "<password>", "<secret>",
                "your-secret", "your_secret", "your-password", "your_password", "***", "****", "********")
DEFAULT_PASSWORDS = ("admin", "admin123", "password", "password1", "password123", "passw0rd", "123456",
                     "12345678", "12345", "1234", "root", "toor", "test", "test123", "guest", "secret",
                     "letmein", "qwerty", "default", "pass", "user", "demo")
_DIGESTS = {hashlib.sha256(v.encode()).hexdigest(): kind for kinds, kind in
            ((PLACEHOLDERS, "placeholder"), (DEFAULT_PASSWORDS, "default")) for v in kinds}
_KEY = re.compile(r"""([A-Za-z_][\w.-]*)["']?\s*(?:[:=]|==|!=)\s*["']?""" + re.escape(REDACTED))
# A key whose value names something (a class, a type, a file, a field), not a credential
_NAMING_KEY = re.compile(r"(?i)(?:^|[_.-])(class|classname|class_name|name|type|kind|path|file|filename|dir|format"
                         r"|mode|version|label|field|header|algorithm|alg|model|tokenizer|provider|ref)$")
_DIGEST_KEY = re.compile(r"(?i)(?:^|[_.-])(integrity|checksum|sha1|sha256|sha512|md5|digest|hash|fingerprint)$")
_LOOKUP = re.compile(r"\$\{[^}]+\}|\$[A-Z_][A-Z0-9_]*\b|os\.environ|os\.getenv|getenv\(|process\.env\."
                     r"|System\.getenv|secretKeyRef|valueFrom|\{\{\s*\.?(Values|secrets|env)\b")


class NotSecret(NamedTuple):
    kind: str     # placeholder | default | name | digest | lookup
    reason: str   # one sentence: why the flagged value is no secret to rotate


def not_a_secret(finding: dict, flagged_code: str | None) -> NotSecret | None:
    """Why the finding's "secret" is evidently none, or None when it may be one. Read from the
    finding's SHA-256 of the value (a known placeholder or default password), the key it is
    assigned to (a class, name or path; a checksum) and the visible line (an environment lookup)."""
    digest = (finding.get("secret") or {}).get("sha256")
    kind = _DIGESTS.get(digest) if isinstance(digest, str) else None
    if kind == "placeholder":
        return NotSecret(kind, "The flagged value is a well-known placeholder, left to be replaced by a real value, "
                               "not a secret: there is nothing to rotate.")
    if kind == "default":
        return NotSecret(kind, "The flagged value is one of the well-known default passwords that every password "
                               "list tries first: it protects nothing, and no secret leaked that rotating would "
                               "contain; the weakness is that the code accepts or sets a guessable credential.")
    line = flagged_code or ""
    keys = _KEY.findall(line)
    if keys and all(_NAMING_KEY.search(k) for k in keys):
        return NotSecret("name", f"The flagged value is assigned to {keys[0]}, which holds a name (a class, type, "
                                 f"file or setting), not a credential: a long identifier looks random to an entropy "
                                 f"check, but it is no secret and there is nothing to rotate.")
    if keys and all(_DIGEST_KEY.search(k) for k in keys):
        return NotSecret("digest", f"The flagged value is assigned to {keys[0]}, a digest of public content (a "
                                   f"checksum or integrity hash), which anyone can compute: it is no secret and "
                                   f"there is nothing to rotate.")
    if line and REDACTED not in line and _LOOKUP.search(line):
        return NotSecret("lookup", "The flagged line reads the value from the environment or a secret store at run "
                                   "time; it writes no secret into the file, so there is nothing to rotate.")
    return None


SUPPRESS = {  # how each tool is told, at the line, that a finding was reviewed
    "bandit": "# nosec {rule_id}", "semgrep": "nosemgrep: {rule_id}", "checkov": "checkov:skip={rule_id}: <reason>",
    "gitleaks": "gitleaks:allow", "trivy": "trivy:ignore:{rule_id}", "detect-secrets": "pragma: allowlist secret",
}


# ---------------------------------------------------------------- checkov's declared expectations
_OPERATORS = {"exists": "to be set", "not_exists": "not to be set", "contains": "to contain {v}",
              "not_contains": "not to contain {v}", "greater_than": "to be greater than {v}",
              "greater_than_or_equal": "to be at least {v}", "less_than": "to be less than {v}",
              "less_than_or_equal": "to be at most {v}", "starting_with": "to start with {v}",
              "not_starting_with": "not to start with {v}", "regex_match": "to match {v}",
              "length_greater_than": "to have more than {v} items", "is_true": "to be true",
              "is_false": "to be false", "is_not_empty": "to be set and not empty", "is_empty": "to be empty"}


class Expectation(NamedTuple):
    expects: str        # "checkov's CKV_AWS_36 expects enable_log_file_validation to be true"
    reading: str | None  # what the flagged code sets, where the lines shown tell
    change: str         # "Set enable_log_file_validation to true on aws_cloudtrail.main."


def _parts(key: str) -> list[str]:
    return [p for p in re.split(r"[/.]", key) if p and p not in ("*", "[*]") and not p.strip("[]").isdigit()]


def _value(v, language: str) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return json.dumps(v) if language == "hcl" else v
    return json.dumps(v, separators=(", ", ": "))


def _either(values: list, language: str) -> str:
    shown = [_value(v, language) for v in values[:4]]
    return shown[0] if len(shown) == 1 else "one of " + ", ".join(shown)


def current_value(name: str, code: str | None) -> str | None:
    """The value the code assigns to attribute `name` (HCL `name = v`, YAML `name: v`), if shown."""
    if not code:
        return None
    m = re.search(rf"""(?m)^\s*-?\s*["']?{re.escape(name)}["']?\s*[:=]\s*(.+?)\s*,?\s*(?:#.*)?$""", code)
    return m[1].strip() if m and m[1].strip() not in ("{", "[", "|", ">") else None


def _same(code_value: str, wanted) -> bool:
    return code_value.strip("\"'").lower() == _value(wanted, "yaml").strip("\"'").lower()


def expectation(rule: dict, code: str | None, resource: str | None, language: str,
                whole: bool) -> Expectation | None:
    """What the rule's first declared expectation (rule["expects"]) asks of the resource, what the
    flagged `code` sets (`whole`: the lines shown hold the whole resource, so an attribute not in
    them is not set), and the change to make; None for a check that declares none."""
    e = next((x for x in rule.get("expects") or () if x.get("key")), None)
    if e is None:
        return None
    parts = _parts(e["key"]) or [e["key"]]
    name, parent = parts[-1], " > ".join(parts[:-1])
    kinds = [t for t in e.get("resource_types") or () if t != name]
    own_kind = (resource or "").split(".")[0]
    if kinds and own_kind not in kinds:  # a graph check: the attribute belongs to a connected resource
        resource, code, whole = f"the {' or '.join(kinds[:2])} connected to {resource or 'the resource'}", None, False
    workflow = re.fullmatch(r"on\((.+)\)", resource or "")  # checkov's name of a GitHub workflow's top level
    where = (f" in the {parent} block" + (f" of {resource}" if resource else "") if parent
             else f" at the top level of workflow {workflow[1]}" if workflow
             else f" on {resource}" if resource else "")
    now = current_value(name, code)
    subject = f"{rule.get('tool', 'the scanner')}'s {rule['rule_id']} expects {name}{where}"
    reading = (f"The flagged code sets {name} to {now}." if now is not None
               else f"The flagged code does not set {name}." if whole and code else None)
    if e.get("values"):
        wanted = _either(e["values"], language)
        if now is not None and any(_same(now, v) for v in e["values"]):
            reading = None  # the value shown is the one expected: the check reads another block or a variable
        return Expectation(f"{subject} to be {wanted}.", reading, f"Set {name} to {wanted}{where}.")
    if e.get("forbidden"):
        bad = ", ".join(_value(v, language) for v in e["forbidden"][:4])
        if now is not None and any(_same(now, v) for v in e["forbidden"]):
            return Expectation(f"{subject} not to be {bad}.", f"The flagged code sets {name} to {now}, which the "
                               f"check forbids.", f"Change {name}{where} from {now} to a value the check allows "
                               f"(anything but {bad}).")
        if reading and now is None:  # not set in the whole resource shown: the check fails on the missing key
            return Expectation(f"{subject} not to be {bad}.", reading, f"Set {name}{where} to a value the check "
                               f"allows (anything but {bad}).")
        return Expectation(f"{subject} not to be {bad}.", reading, f"Make sure {name}{where} is not {bad}.")
    if e.get("any_value") or e.get("operator") == "exists":
        return Expectation(f"{subject} to be set.", reading, f"Set {name}{where}.")
    if e.get("operator") == "not_exists":
        return Expectation(f"{subject} not to be set.", reading, f"Remove {name}{where}.")
    if e.get("operator") in _OPERATORS:
        words = _OPERATORS[e["operator"]].format(v=_value(e.get("value"), language))
        return Expectation(f"{subject} {words}.", reading, f"Change {name}{where}: the check wants it {words}.")
    return None
