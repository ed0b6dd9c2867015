"""The `kb` backend: an analysis composed from the knowledge base and the finding's own texts.

Offline and deterministic. The knowledge-base entry the finding matches gives the explanation of
its family; the finding gives what makes it specific: tool, rule, place, package and versions,
the scanner's message and fix hint, its references. For a vulnerable dependency whose manifest is
under the source root, the remediation names the file and line to change and the fix shows it.
For a finding with code context, a fix rule (lib/secai/analysis/kb/fixes/*.yaml, see `FixRule`) rewrites
the lines the context shows into the fix: `original` (lines copied from the file) and `code`
(what replaces them), so that secai.analysis.verify can apply it to a copy and re-run the scanner.
"""

from __future__ import annotations

import ast
import hashlib
import re
import shlex
from functools import cache, lru_cache
from pathlib import Path

from secai.analysis import kb as knowledge
from secai.records import REDACTED

COMPOSER_VERSION = "kb-compose-2"
_STEP_DOWN = {"critical": "high", "high": "medium", "medium": "low", "low": "info", "info": "info"}


def _numbers(version: str) -> tuple[int, ...]:
    return tuple(int(n) for n in re.findall(r"\d+", version)[:4])


def upgrade_target(installed: str | None, fixed: list[str]) -> str | None:
    """The fixed version to move to: the lowest above the installed one on its own major line
    (9.0.109 -> 9.0.112 when 11.0.14, 10.1.49 and 9.0.112 fix it), else the lowest above it."""
    if not fixed:
        return None
    if not installed or not _numbers(installed):
        return fixed[0]
    now = _numbers(installed)
    above = [v for v in fixed if _numbers(v) > now]
    same_line = [v for v in above if _numbers(v)[:1] == now[:1]]
    return min(same_line or above or fixed, key=_numbers)


def facts_of(finding: dict) -> dict:
    """The finding facts the knowledge-base templates may use (see secai.analysis.kb.MISSING)."""
    loc, pkg = finding.get("location") or {}, finding.get("package") or {}
    return {
        "title": finding["title"], "rule_id": finding["rule_id"], "tool": finding["tool"],
        "path": loc.get("path") or (finding.get("endpoint") or {}).get("url"),
        "line": loc.get("start_line"), "resource": loc.get("resource"),
        "package": pkg.get("name"), "installed": pkg.get("version"),
        "fixed": upgrade_target(pkg.get("version"), pkg.get("fixed_versions", [])),
        "cve": ", ".join(finding.get("cve", [])),
        "severity": finding["severity"],
    }


def _place(finding: dict) -> str:
    loc = finding.get("location") or {}
    if loc.get("path"):
        where = f"{loc['path']}:{loc['start_line']}" if loc.get("start_line") else loc["path"]
        return f"{where} ({loc['resource']})" if loc.get("resource") else where
    endpoint = finding.get("endpoint") or {}
    return " ".join(v for v in (endpoint.get("method"), endpoint.get("url")) if v) or "the scanned target"


def manifest_line(root: Path | None, finding: dict) -> tuple[str, int, str] | None:
    """(path, line number, line) of the dependency's declaration in its manifest under `root`."""
    pkg, loc = finding.get("package") or {}, finding.get("location") or {}
    if root is None or not pkg.get("name") or not loc.get("path"):
        return None
    from secai.analysis.context import NoContext, locate  # imported here: only needed with a source root

    try:
        path, rel = locate(root, loc["path"])
    except NoContext:
        return None
    if path.stat().st_size > 2_000_000:
        return None
    name = re.escape(pkg["name"].split(":")[-1].split("/")[-1])
    pattern = re.compile(rf"(?<![\w.-]){name}(?![\w-])", re.IGNORECASE)
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    hits = [(n, text) for n, text in enumerate(lines, 1) if pattern.search(text)]
    exact = [h for h in hits if pkg.get("version") and pkg["version"] in h[1]]
    if not (exact or hits):
        return None
    n, text = (exact or hits)[0]
    return rel, n, text


def _risk(finding: dict, entry: dict) -> dict:
    rating, reasons = finding["severity"], [f"{finding['tool']} rates it {finding.get('tool_severity', finding['severity'])}"]
    if finding.get("suppressed"):
        rating = _STEP_DOWN[rating]
        why = (finding.get("suppression") or {}).get("justification")
        reasons.append("it is suppressed" + (f" ({why})" if why else "") + ", so it was reviewed and accepted")
    if finding.get("confidence") == "low":
        rating = _STEP_DOWN[rating]
        reasons.append("the scanner's confidence is low")
    pkg = finding.get("package")
    if pkg is not None and finding["category"] in ("sca", "container"):
        reasons.append(f"a fixed version exists ({', '.join(pkg['fixed_versions'])})" if pkg.get("fixed_versions")
                       else "no fixed version is known yet")
    if finding.get("secret"):
        reasons.append("a committed credential stays usable until it is revoked, whatever the code does later")
    reasons.append("it is worse when " + entry["risk_factors"]["raises"][0])
    reasons.append("less so when " + entry["risk_factors"]["lowers"][0])
    return {"rating": rating, "rationale": "; ".join(reasons) + "."}


def _fix(finding: dict, manifest) -> dict | None:
    pkg = finding.get("package") or {}
    fixed = upgrade_target(pkg.get("version"), pkg.get("fixed_versions", []))
    if manifest and pkg.get("version") and fixed:
        path, n, line = manifest
        if pkg["version"] in line:
            return {"language": "requirements" if path.endswith(".txt") else Path(path).suffix.lstrip(".") or "text",
                    "original": line, "code": line.replace(pkg["version"], fixed, 1),
                    "explanation": f"Raises {pkg['name']} from {pkg['version']} to {fixed} in {path} line {n}.",
                    "verification": f"Reinstall from {path} and re-run {finding['tool']}: {finding['rule_id']} must be gone."}
    return None  # the knowledge base's examples are generic: a fix is given only when it is this finding's


# ---------------------------------------------------------------- fix rules (lib/secai/analysis/kb/fixes/*.yaml)
#
# A fix rule is data: which findings it applies to, and a list of line edits to make to the code the
# finding's context shows. Nothing in a rule is executed: patterns are Python regular expressions
# (searched line by line), replacements and inserted lines are templates in which only
# `\g<name>` and `\g<name|filter>` are special (a named group of the rule's patterns, or a fact
# below, through one of FILTERS). The edited lines become the fix: `original` is the smallest run
# of context lines that holds every change (widened to the enclosing function/block when the
# context shows all of it), `code` is what replaces them, and the code must parse.

FIXES_DIR = knowledge.KB_DIR / "fixes"
BUILTIN_FACTS = {
    "indent": "leading whitespace of the line an edit matched (YAML: up to the key, past any '- ')",
    "inner": "indentation of the first line inside the block an edit matched (else indent + unit)",
    "unit": "the file's indentation step as spaces (the least indentation in the context)",
    "name": "the enclosing unit's own name: 'demo' of aws_s3_bucket.demo, 'ping' of def ping",
    "address": "the enclosing unit's full name (aws_s3_bucket.demo)",
    "path": "the file's path relative to the source root",
}
_RE = {"type": "string", "minLength": 1, "description": "A Python regular expression, searched in each line."}
_LINES = {"description": "Lines to insert: a template, or a list of templates (one per line; a template "
                         "may itself hold several lines).",
          "oneOf": [{"type": "string", "minLength": 1}, {"type": "array", "minItems": 1, "items": {"type": "string"}}]}
_WITHIN = {**_RE, "description": "Only lines inside blocks whose first line matches this (an HCL `ingress {` "
                                 "block to its closing brace, a YAML key to its last more-indented line)."}


def _op(key: str, description: str, required=(), **props) -> dict:
    return {"type": "object", "additionalProperties": False, "required": [key, *required],
            "description": description, "properties": props}


FIX_RULE_SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "kb fix rule",
    "description": "A rule of lib/secai/analysis/kb/fixes/*.yaml (each file a YAML list of rules, read in file-name "
                   "order): which findings it fixes and the line edits that fix them in the code context.",
    "type": "object",
    "additionalProperties": False,
    "required": ["id", "match", "language", "edits", "explanation"],
    "properties": {
        "id": {"type": "string", "pattern": "^[a-z0-9]+(-[a-z0-9]+)*$", "description": "Unique slug of the rule."},
        "match": {
            "type": "object", "additionalProperties": False,
            "description": "Findings the rule is for: an exact rule id beats a rule pattern, a pattern beats a CWE; "
                           "`tools` filters all three. Rules of one level are tried in file order until one applies.",
            "anyOf": [{"required": ["rule_ids"]}, {"required": ["rule_patterns"]}, {"required": ["cwe"]}],
            "properties": {
                "tools": {"type": "array", "minItems": 1, "items": {"type": "string", "minLength": 1},
                          "description": "Only findings of these tools (finding.tool)."},
                "rule_ids": {"type": "array", "minItems": 1, "items": {"type": "string", "minLength": 1},
                             "description": "Exact rule ids (CKV_AWS_20, B602)."},
                "rule_patterns": {"type": "array", "minItems": 1, "items": _RE,
                                  "description": "Regular expressions searched in the rule id (a Semgrep id "
                                                 "carries its config's path: '(^|\\\\.)eval-of-input$')."},
                "cwe": {"type": "array", "minItems": 1, "items": {"type": "string", "pattern": "^CWE-[0-9]+$"},
                        "description": "CWE ids of the finding."},
            },
        },
        "language": {"type": "string", "pattern": "^[a-z][a-z0-9+-]*$",
                     "description": "The code context's language (python, hcl, dockerfile, yaml, ...)."},
        "scope": {"enum": ["finding", "enclosing", "context"],
                  "description": "Lines the edits see: the finding's lines (default), the enclosing unit's, or "
                                 "all the context shows; always within the context."},
        "when_file": {**_RE, "description": "The rule applies only when the whole file has a line matching this."},
        "unless": {**_RE, "description": "The rule does not apply when a line in scope matches this."},
        "edits": {
            "type": "array", "minItems": 1,
            "description": "Edits made in order; each must apply, else the rule does not.",
            "items": {"oneOf": [
                _op("find", "Capture facts: the first line in scope matching `find` must exist; its named "
                            "groups become facts for later templates.", find=_RE, within=_WITHIN),
                _op("sub", "Replace every match (at most `count`) in the lines in scope by the template `to` "
                           "(the match's named groups are facts); at least one line must change.",
                    required=("to",), sub=_RE, within=_WITHIN,
                    to={"type": "string", "description": "Replacement template; may hold newlines."},
                    count={"type": "integer", "minimum": 1, "description": "At most this many replacements."}),
                _op("delete", "Delete the lines in scope that match; at least one.", delete=_RE, within=_WITHIN),
                {**_op("insert", "Insert lines relative to an anchor line in scope: `before` it, `after` it (after "
                                 "its whole block), or at the `end_of` its block (before an HCL closing brace).",
                       insert=_LINES, within=_WITHIN,
                       after={**_RE, "description": "Anchor: insert after this line's block."},
                       before={**_RE, "description": "Anchor: insert before this line."},
                       end_of={**_RE, "description": "Anchor: insert as the last lines inside this line's block."},
                       unless={**_RE, "description": "Skip an anchor whose block has a line matching this."},
                       pick={"enum": ["first", "last", "each", "near-change"],
                             "description": "Which anchor: the first (default), the last, each one, or the last "
                                            "one at or above the first line changed so far."}),
                 "oneOf": [{"required": ["after"]}, {"required": ["before"]}, {"required": ["end_of"]}]},
                _op("append", "Add lines after the scope, after a blank line (a companion resource).", append=_LINES),
                _op("import", "Python: unless the file imports this module at top level, insert `import MODULE` "
                              "before the first changed line, at its indentation.",
                    **{"import": {"type": "string", "pattern": r"^[A-Za-z_][\w.]*$",
                                  "description": "The module the fixed code uses."}}),
            ]},
        },
        "explanation": {"type": "string", "minLength": 20,
                        "description": "Template: what the change does and why it closes the weakness."},
    },
}


class FixRuleError(ValueError):
    """A fix-rule file or rule that cannot be used; the message names file and rule."""


class _NoFix(Exception):
    """A rule that does not apply to this code (the message says why)."""


def _argv(literal: str) -> str:
    """A Python string literal holding a plain command line -> the words as list items:
    '"ping -c 1 "' -> '"ping", "-c", "1"'. Shell syntax in it (pipes, $, globs, quotes) is refused."""
    try:
        value = ast.literal_eval(literal)  # a literal only: never runs code
    except (ValueError, SyntaxError):
        raise _NoFix(f"not a string literal: {literal[:40]!r}") from None
    if not isinstance(value, str) or re.search(r"[|&;<>()$`\\\"'*?\[\]{}~!#]", value) or not value.strip():
        raise _NoFix("the command line uses shell syntax")
    return ", ".join('"' + word + '"' for word in shlex.split(value))


def _env_name(expression: str) -> str:
    """An expression's environment-variable name: github.event.issue.title -> ISSUE_TITLE."""
    return re.sub(r"\W+", "_", "_".join(expression.split(".")[-2:])).strip("_").upper()


FILTERS = {"argv": _argv, "env": _env_name, "upper": str.upper, "lower": str.lower}
_REF = re.compile(r"\\g<(\w+)(?:\|(\w+))?>")


def _expand(template: str, facts: dict) -> str:
    def one(m):
        value = facts.get(m.group(1))
        if value is None:
            raise _NoFix(f"no value for \\g<{m.group(1)}>")
        return FILTERS[m.group(2)](value) if m.group(2) else value
    return _REF.sub(one, template)


class _Line:
    """A line being edited: its index in the context (None when inserted), the index it is attached
    to when inserted, whether the edits see it, and whether it changed."""
    __slots__ = ("orig", "text", "scope", "changed", "anchor")

    def __init__(self, orig, text, scope, changed=False, anchor=None):
        self.orig, self.text, self.scope, self.changed, self.anchor = orig, text, scope, changed, anchor

    @property
    def home(self) -> int:
        return self.orig if self.orig is not None else self.anchor


_BRACES = frozenset({"hcl", "java", "javascript", "typescript", "go", "kotlin", "json"})
_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'')


def _lead(text: str) -> str:
    return text[:len(text) - len(text.lstrip())]


def _key_indent(text: str, language: str) -> str:
    """Leading whitespace up to the line's first token; YAML: past list markers ('- ')."""
    lead = _lead(text)
    if language == "yaml":
        marks = re.match(r"(?:-[ \t]+)*", text[len(lead):]).group(0)
        return lead + " " * len(marks)
    return lead


def _neutral(text: str, language: str) -> bool:
    s = text.strip()
    return not s or (s.startswith("#") and language in ("yaml", "python", "dockerfile"))


def _block_end(lines: list, i: int, language: str) -> int:
    """Index of the last line of the block that lines[i] opens (i for a one-line statement)."""
    if language in _BRACES:
        depth, opened = 0, False
        for j in range(i, len(lines)):
            text = _STRINGS.sub('""', lines[j].text.split("#")[0] if language == "hcl" else lines[j].text)
            for ch in text:
                if ch in "{[(":
                    depth, opened = depth + 1, True
                elif ch in "}])":
                    depth -= 1
            if not opened or depth <= 0:
                return j
        return len(lines) - 1
    if language == "dockerfile":
        j = i
        while j + 1 < len(lines) and lines[j].text.rstrip().endswith("\\"):
            j += 1
        return j
    base, end = len(_lead(lines[i].text)), i
    key = lines[i].text.rstrip().endswith(":")
    for j in range(i + 1, len(lines)):
        text = lines[j].text
        if _neutral(text, language):
            continue
        depth = len(_lead(text))
        if depth > base or (language == "yaml" and key and depth == base and text.lstrip().startswith("- ")):
            end = j
        else:
            break
    return end


def _inner(lines: list, i: int, end: int, language: str, unit: str) -> str:
    for j in range(i + 1, end + 1):
        if not _neutral(lines[j].text, language) and not (language in _BRACES and lines[j].text.strip() in "}])"):
            return _key_indent(lines[j].text, language)
    return _key_indent(lines[i].text, language) + unit


def _groups(m: re.Match) -> dict:
    """The named groups that matched (facts kept for later edits)."""
    return {k: v for k, v in m.groupdict().items() if v is not None}


def _all_groups(m: re.Match) -> dict:
    """Every named group of the match; one that did not take part reads as ''."""
    return {k: v or "" for k, v in m.groupdict().items()}


def _indent_step(texts: list[str], language: str) -> int:
    """The indentation step of the code: the least difference between its indentation levels."""
    levels = sorted({len(_key_indent(t, language)) for t in texts if t.strip() and "\t" not in _lead(t)})
    steps = [b - a for a, b in zip(levels, levels[1:]) if 0 < b - a <= 8]
    return min(steps) if steps else (4 if language == "python" else 2)


class FixRule:
    """One rule of lib/secai/analysis/kb/fixes/*.yaml, compiled."""

    def __init__(self, data: dict, file: str):
        self.data, self.file, self.id = data, file, data["id"]
        m = data["match"]
        self.tools, self.rule_ids = frozenset(m.get("tools", ())), frozenset(m.get("rule_ids", ()))
        self.patterns = tuple(re.compile(p) for p in m.get("rule_patterns", ()))
        self.cwe = frozenset(m.get("cwe", ()))
        self.language, self.scope = data["language"], data.get("scope", "finding")
        self.when_file = re.compile(data["when_file"], re.M) if "when_file" in data else None
        self.unless = re.compile(data["unless"]) if "unless" in data else None
        self.edits = []
        for raw in data["edits"]:
            op = dict(raw)
            for key in ("find", "sub", "delete", "within", "after", "before", "end_of", "unless"):
                if key in op:
                    op[key] = re.compile(op[key])
            for key in ("insert", "append"):
                if key in op and isinstance(op[key], str):
                    op[key] = [op[key]]
            self.edits.append(op)

    def level(self, finding: dict) -> int | None:
        """0 (exact rule id), 1 (rule pattern), 2 (CWE) when the rule is for this finding, else None."""
        if self.tools and finding.get("tool") not in self.tools:
            return None
        rid = finding.get("rule_id", "")
        if rid in self.rule_ids:
            return 0
        if any(p.search(rid) for p in self.patterns):
            return 1
        if self.cwe.intersection(finding.get("cwe", ())):
            return 2
        return None

    def templates(self) -> list[str]:
        out = [self.data["explanation"]]
        for op in self.data["edits"]:
            for key in ("to", "insert", "append"):
                value = op.get(key)
                out += [value] if isinstance(value, str) else (value or [])
        return out

    def group_names(self) -> set[str]:
        names = set()
        for op in self.edits:
            for value in op.values():
                if isinstance(value, re.Pattern):
                    names.update(value.groupindex)
        return names

    # -- applying
    def apply(self, context: dict, file_text: str | None) -> dict:
        """{original, code, explanation} for the context's code, or _NoFix."""
        from secai.analysis.languages import parses

        if self.when_file and not (file_text and self.when_file.search(file_text)):
            raise _NoFix("when_file does not match")
        language = self.language
        base = context["start_line"]
        texts = context["code"].split("\n")
        first, last = self._scope(context)
        lines = [_Line(i, t, first <= i <= last) for i, t in enumerate(texts)]
        if self.unless and any(self.unless.search(ln.text) for ln in lines if ln.scope):
            raise _NoFix("unless matches")
        enclosing = context.get("enclosing") or {}
        name = enclosing.get("name")
        unit = " " * _indent_step(texts, language)
        facts = {"unit": unit, "path": context["path"]}
        if name:
            facts.update(name=re.split(r"[./]", name)[-1], address=name)
        deleted: set[int] = set()
        for op in self.edits:
            lines = self._edit(op, lines, facts, deleted, language, unit, file_text)
        touched = {ln.home for ln in lines if ln.changed} | deleted
        if not touched:
            raise _NoFix("the edits changed nothing")
        a, b = min(touched), max(touched)
        spans = []
        if enclosing:
            ea, eb = enclosing["start_line"] - base, enclosing["end_line"] - base
            if 0 <= ea and eb < len(texts):
                spans.append((min(a, ea), max(b, eb)))
        spans.append((a, b))
        for lo, hi in dict.fromkeys(spans):
            code = "\n".join(ln.text for ln in lines if lo <= ln.home <= hi)
            original = "\n".join(texts[lo:hi + 1])
            if REDACTED in code:  # the file holds a secret there: code that keeps the marker is no fix
                continue
            if code.strip() and code != original and parses(code, language):
                return {"original": original, "code": code, "explanation": _expand(self.data["explanation"], facts)}
        raise _NoFix("the fixed code does not parse")

    def _scope(self, context: dict) -> tuple[int, int]:
        base, n = context["start_line"], context["code"].count("\n") + 1
        if self.scope == "context":
            return 0, n - 1
        unit = context.get("enclosing") if self.scope == "enclosing" else None
        if self.scope == "enclosing" and not unit:
            raise _NoFix("no enclosing unit")
        if unit:
            lo, hi = unit["start_line"], unit["end_line"]
        else:
            lo, hi = context.get("finding_lines") or (base, base + n - 1)
        lo, hi = max(lo - base, 0), min(hi - base, n - 1)
        if lo > hi:
            raise _NoFix("the finding's lines are not in the context")
        return lo, hi

    def _edit(self, op: dict, lines: list, facts: dict, deleted: set, language: str, unit: str, file_text) -> list:
        positions = [i for i, ln in enumerate(lines) if ln.scope]
        if op.get("within") is not None:
            keep = set()
            for i in positions:
                if op["within"].search(lines[i].text):
                    keep.update(range(i, _block_end(lines, i, language) + 1))
            positions = [i for i in positions if i in keep]
        if "find" in op:
            m = next((m for i in positions if (m := op["find"].search(lines[i].text))), None)
            if m is None:
                raise _NoFix(f"find: no line matches {op['find'].pattern!r}")
            facts.update(_groups(m))
            return lines
        if "sub" in op:
            return self._sub(op, lines, positions, facts, language)
        if "delete" in op:
            gone = {i for i in positions if op["delete"].search(lines[i].text)}
            if not gone:
                raise _NoFix(f"delete: no line matches {op['delete'].pattern!r}")
            deleted.update(lines[i].home for i in gone)
            return [ln for i, ln in enumerate(lines) if i not in gone]
        if "insert" in op:
            return self._insert(op, lines, positions, facts, language, unit)
        if "append" in op:
            if not positions:
                raise _NoFix("append: nothing in scope")
            at = positions[-1]
            new = [_Line(None, "", False, True, lines[at].home)]
            for t in op["append"]:
                new += [_Line(None, s, False, True, lines[at].home) for s in _expand(t, facts).split("\n")]
            return lines[:at + 1] + new + lines[at + 1:]
        module = op["import"]
        imported = re.compile(rf"^(?:import\s+(?:[\w.]+\s*,\s*)*{re.escape(module)}\s*(?:,|#|$)"
                              rf"|from\s+{re.escape(module)}\s+import\b)", re.M)
        if file_text is not None and imported.search(file_text):
            return lines
        at = next((i for i, ln in enumerate(lines) if ln.changed), None)
        if at is None:
            raise _NoFix("import: no changed line to put it before")
        line = _Line(None, f"{_lead(lines[at].text)}import {module}", True, True, lines[at].home)
        return lines[:at] + [line] + lines[at:]

    def _sub(self, op, lines, positions, facts, language):
        left, first = op.get("count"), {}
        out = {}
        for i in positions:
            if left is not None and left <= 0:
                break
            text = lines[i].text
            local = {**facts, "indent": _key_indent(text, language)}

            def repl(m, local=local):
                if not first:
                    first.update(_groups(m))
                return _expand(op["to"], {**local, **_all_groups(m)})
            new, n = op["sub"].subn(repl, text, count=left or 0)
            if n and new != text:
                out[i] = new
                if left is not None:
                    left -= n
        if not out:
            raise _NoFix(f"sub: no line matches {op['sub'].pattern!r}")
        facts.update(first)
        result = []
        for i, ln in enumerate(lines):
            if i not in out:
                result.append(ln)
                continue
            head, *rest = out[i].split("\n")
            ln.text, ln.changed = head, True
            result.append(ln)
            result += [_Line(None, t, ln.scope, True, ln.home) for t in rest]
        return result

    def _insert(self, op, lines, positions, facts, language, unit):
        where = next(k for k in ("after", "before", "end_of") if k in op)
        anchors = [(i, m) for i in positions if (m := op[where].search(lines[i].text))]
        if op.get("unless") is not None:
            anchors = [(i, m) for i, m in anchors
                       if not any(op["unless"].search(ln.text) for ln in lines[i:_block_end(lines, i, language) + 1])]
        if not anchors:
            raise _NoFix(f"insert: no anchor line matches {op[where].pattern!r}")
        pick = op.get("pick", "first")
        if pick == "last":
            anchors = anchors[-1:]
        elif pick == "near-change":
            changed = next((i for i, ln in enumerate(lines) if ln.changed), None)
            anchors = [a for a in anchors if changed is not None and a[0] <= changed][-1:]
            if not anchors:
                raise _NoFix("insert: no anchor above the change")
        elif pick == "first":
            anchors = anchors[:1]
        for i, m in reversed(anchors):  # bottom-up: earlier indexes stay valid
            end = _block_end(lines, i, language)
            local = {**facts, **_all_groups(m), "indent": _key_indent(lines[i].text, language),
                     "inner": _inner(lines, i, end, language, unit)}
            texts = [s for t in op["insert"] for s in _expand(t, local).split("\n")]
            if where == "before":
                at, home = i, lines[i].home
            elif where == "after":
                at, home = end + 1, lines[end].home
            else:
                if end == i:
                    raise _NoFix("insert: the anchor opens no block")
                closing = language in _BRACES
                at = end if closing else end + 1
                home = lines[at - 1].home
            new = [_Line(None, t, True, True, home) for t in texts]
            lines = lines[:at] + new + lines[at:]
            if len(anchors) == 1:
                facts.update(_groups(m))
        return lines


def _check_rule(data, name: str, index: int, errors, seen: dict) -> FixRule:
    ident = data.get("id") if isinstance(data, dict) else None
    label = f"fixes/{name}: rule {ident if isinstance(ident, str) else f'#{index + 1}'}"
    if error := errors(data):
        raise FixRuleError(f"{label}: {error.json_path}: {error.message}")
    if ident in seen:
        raise FixRuleError(f"{label}: duplicate id (first defined in {seen[ident]})")
    try:
        rule = FixRule(data, name)
    except re.error as exc:
        raise FixRuleError(f"{label}: bad pattern {exc.pattern!r}: {exc}") from None
    known = set(BUILTIN_FACTS) | rule.group_names()
    for template in rule.templates():
        for m in _REF.finditer(template):
            if m.group(1) not in known:
                raise FixRuleError(f"{label}: unknown fact \\g<{m.group(1)}> (known: {sorted(known)})")
            if m.group(2) and m.group(2) not in FILTERS:
                raise FixRuleError(f"{label}: unknown filter |{m.group(2)} (known: {sorted(FILTERS)})")
    seen[ident] = name
    return rule


@cache
def fixes_version(directory: Path | str = FIXES_DIR) -> str:
    """A hash of the fix-rule files' names and contents."""
    digest = hashlib.sha256()
    for path in sorted(Path(directory).glob("*.yaml")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


@cache
def fix_rules(directory: Path | str = FIXES_DIR) -> tuple[FixRule, ...]:
    """The fix rules in `directory` (every *.yaml, in name order), validated and cached."""
    import yaml
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import best_match

    validator = Draft202012Validator(FIX_RULE_SCHEMA)
    errors = lambda data: best_match(validator.iter_errors(data))  # noqa: E731
    rules, seen = [], {}
    for path in sorted(Path(directory).glob("*.yaml")):
        try:
            doc = yaml.safe_load(path.read_bytes())
        except yaml.YAMLError as exc:
            raise FixRuleError(f"fixes/{path.name}: invalid YAML: {exc}") from None
        if not isinstance(doc, list):
            raise FixRuleError(f"fixes/{path.name}: expected a list of rules")
        rules += [_check_rule(d, path.name, i, errors, seen) for i, d in enumerate(doc)]
    return tuple(rules)


def _file_text(root: Path | None, rel: str) -> str | None:
    """The text of a file under the root (for `when_file` and `import`), or None."""
    if root is None:
        return None
    from secai.analysis.context import NoContext, locate

    try:
        path, _ = locate(root, rel)
        st = path.stat()
        return _read_text(path, st.st_mtime_ns, st.st_size)
    except (NoContext, OSError):
        return None


@lru_cache(maxsize=64)
def _read_text(path: Path, mtime_ns: int, size: int) -> str | None:
    if size > 2_000_000:
        return None
    return path.read_text(encoding="utf-8", errors="replace").replace("\r\n", "\n")


def rule_fix(finding: dict, context: dict | None, root: Path | None, rules=None) -> tuple[dict, str] | None:
    """(the fix, the rule id) the first applicable fix rule makes from the finding's code context, or None."""
    if not context or not context.get("code", "").strip():
        return None
    from secai.analysis.languages import canonical

    language = canonical(context.get("language", ""))
    candidates = sorted(((level, n, rule) for n, rule in enumerate(fix_rules() if rules is None else rules)
                         if rule.language == language and (level := rule.level(finding)) is not None),
                        key=lambda c: c[:2])
    file_text = _file_text(root, context["path"]) if candidates else None
    for _, _, rule in candidates:
        try:
            fix = rule.apply(context, file_text)
        except _NoFix:
            continue
        return {"language": context["language"], **fix,
                "verification": f"Re-run {finding['tool']} on {context['path']}: {finding['rule_id']} must no longer "
                                f"be reported there, and the file must still parse."}, rule.id
    return None


def compose(finding: dict, context: dict | None, root: Path | None) -> dict:
    """The `analysis` object of analysis/1 for a finding (and its code context, when read)."""
    entry = knowledge.load().match(finding).render(facts_of(finding))
    summary = entry["summary"]
    place = _place(finding)
    if ((finding.get("location") or {}).get("path") or place) not in summary:
        summary += f" It is at {place}."
    enclosing = (context or {}).get("enclosing")
    if enclosing and enclosing.get("name") and enclosing["name"] not in summary:
        summary += f" The code is in {enclosing['kind']} {enclosing['name']}."
    if finding.get("message") and finding["message"] not in (finding["title"], finding.get("description")):
        summary += f" {finding['tool']} says: {finding['message'].strip()[:400]}"
    remediation = entry["remediation"]
    pkg = finding.get("package") or {}
    manifest = manifest_line(root, finding)
    if pkg.get("name") and finding["category"] in ("sca", "container"):
        if pkg["name"] not in remediation:  # the entry's template did not already name the upgrade
            target = upgrade_target(pkg.get("version"), pkg.get("fixed_versions", []))
            remediation = (f"Upgrade {pkg['name']} from {pkg.get('version', 'the installed version')} to "
                           f"{target or 'a version without this vulnerability (none is published yet)'}. {remediation}")
        if manifest:
            remediation = f"It is declared in {manifest[0]} line {manifest[1]} (`{manifest[2].strip()}`). {remediation}"
    if finding.get("fix_hint") and REDACTED not in finding["fix_hint"]:
        remediation += f" The scanner's advice: {finding['fix_hint'].strip()[:600]}"
    analysis = {
        "summary": summary,
        "impact": entry["impact"],
        "remediation": remediation,
        "prevention": entry["prevention"],
        "risk": _risk(finding, entry),
        "references": list(dict.fromkeys([*finding.get("references", []), *entry["references"]])),
    }
    fix = _fix(finding, manifest)
    if fix is None and (made := rule_fix(finding, context, root)):
        fix = made[0]
    if fix:
        analysis["fix"] = {k: v for k, v in fix.items() if v}
    return analysis


def kb_version() -> str:
    """The knowledge base's version: its entries' and its fix rules' content hashes, together."""
    return hashlib.sha256(f"{knowledge.version()}:{fixes_version()}".encode()).hexdigest()[:16]
