r"""Fix rules (lib/secai/analysis/kb/fixes/*.yaml, format: schemas/fixrule.schema.json): the kb
backend's code fixes, made from a finding's code context.

    fix, rule_id = rule_fix(finding, context, Path("src"))   # or None: no rule applies

A fix rule is data: which findings it applies to, and a list of line edits to make to the code the
finding's context shows. Nothing in a rule is executed: patterns are Python regular expressions
(searched line by line), replacements and inserted lines are templates in which only
`\g<name>` and `\g<name|filter>` are special (a named group of the rule's patterns, or a fact
below, through one of FILTERS). The edited lines become the fix: `original` is the smallest run
of context lines that holds every change (widened to the enclosing function/block when the
context shows all of it), `code` is what replaces them, and the code must parse.
"""

from __future__ import annotations

import ast
import re
import shlex
from functools import cache, lru_cache
from pathlib import Path

from secai.analysis import kb as knowledge
from secai.analysis import pyfix
from secai.analysis import fixgates, yamlset
from secai.analysis.languages import canonical as canonical_language
from secai.analysis.fixlines import (BRACES, Line, blank_comments, block_end, comment_lines, indent_step, inner_indent,
                                     key_indent, leading_space)
from secai.analysis.iacedit import Unfixable
from secai.records import schema_error
from secai.errors import UserError
from secai.secrets import REDACTED

FIXES_DIR = knowledge.KB_DIR / "fixes"
BUILTIN_FACTS = {
    "indent": "leading whitespace of the line an edit matched (YAML: up to the key, past any '- ')",
    "inner": "indentation of the first line inside the block an edit matched (else indent + unit)",
    "unit": "the file's indentation step as spaces (the least indentation in the context)",
    "name": "the enclosing unit's own name: 'demo' of aws_s3_bucket.demo, 'ping' of def ping",
    "address": "the enclosing unit's full name (aws_s3_bucket.demo)",
    "path": "the file's path relative to the source root",
}


class FixRuleError(UserError, ValueError):
    """A fix-rule file or rule that cannot be used (a user error); the message names file and rule."""


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


def _groups(m: re.Match) -> dict:
    """The named groups that matched (facts kept for later edits)."""
    return {k: v for k, v in m.groupdict().items() if v is not None}


def _all_groups(m: re.Match) -> dict:
    """Every named group of the match; one that did not take part reads as ''."""
    return {k: v or "" for k, v in m.groupdict().items()}


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
            for key in ("find", "sub", "delete", "within", "after", "before", "end_of", "unless", "each", "beside",
                        "keep", "item_find", "item_unless"):
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

        language = self.language
        if self.when_file and not (file_text and self.when_file.search(blank_comments(file_text, language))):
            raise _NoFix("when_file does not match")
        base = context["start_line"]
        texts = context["code"].split("\n")
        first, last = self._scope(context)
        hidden = comment_lines(texts, language)  # commented-out code is never matched nor edited
        lines = [Line(i, t, first <= i <= last and i not in hidden) for i, t in enumerate(texts)]
        if self.unless and any(self.unless.search(ln.text) for ln in lines if ln.scope):
            raise _NoFix("unless matches")
        enclosing = context.get("enclosing") or {}
        name = enclosing.get("name")
        unit = " " * indent_step(texts, language)
        facts = {"unit": unit, "path": context["path"]}
        if name:
            facts.update(name=re.split(r"[./]", name)[-1], address=name)
        deleted: set[int] = set()
        # the file goes on below the lines shown: a block reaching the last of them may not end there
        open_end = file_text is not None and base + len(texts) - 1 < len(file_text.splitlines())
        for op in self.edits:
            if "rewrite" in op:  # Python, from its parse tree (secai.analysis.pyfix)
                try:
                    lines = pyfix.edit_lines(op, lines, facts, deleted, context, file_text)
                except pyfix.NoRewrite as exc:
                    raise _NoFix(f"rewrite {op['rewrite']}: {exc}") from None
                continue
            lines = self._edit(op, lines, facts, deleted, language, unit, file_text, open_end)
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
        if language in BRACES:  # else the smallest bracketed block of the context around the change
            spans += _bracketed(lines, a, b, language)
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

    def _edit(self, op: dict, lines: list, facts: dict, deleted: set, language: str, unit: str, file_text,
              open_end: bool = False) -> list:
        positions = [i for i, ln in enumerate(lines) if ln.scope]
        if op.get("within") is not None:
            keep = set()
            for i in positions:
                if op["within"].search(lines[i].text):
                    keep.update(range(i, block_end(lines, i, language) + 1))
            positions = [i for i in positions if i in keep]
        if "find" in op:
            found = [m for i in positions if (m := op["find"].search(lines[i].text))]
            if not found:
                raise _NoFix(f"find: no line matches {op['find'].pattern!r}")
            if op.get("only") and len(found) > 1:
                raise _NoFix(f"find: {len(found)} lines match {op['find'].pattern!r}, not one")
            facts.update(_groups(found[0]))
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
            return self._insert(op, lines, positions, facts, language, unit, open_end)
        if "set" in op:
            return self._set(op, lines, positions, facts, unit)
        if "append" in op:
            if not positions:
                raise _NoFix("append: nothing in scope")
            at = positions[-1]
            new = [Line(None, "", False, True, lines[at].home)]
            for t in op["append"]:
                new += [Line(None, s, False, True, lines[at].home) for s in _expand(t, facts).split("\n")]
            return lines[:at + 1] + new + lines[at + 1:]
        module = op["import"]
        imported = re.compile(rf"^(?:import\s+(?:[\w.]+\s*,\s*)*{re.escape(module)}\s*(?:,|#|$)"
                              rf"|from\s+{re.escape(module)}\s+import\b)", re.M)
        if file_text is not None and imported.search(file_text):
            return lines
        at = next((i for i, ln in enumerate(lines) if ln.changed), None)
        if at is None:
            raise _NoFix("import: no changed line to put it before")
        line = Line(None, f"{leading_space(lines[at].text)}import {module}", True, True, lines[at].home)
        return lines[:at] + [line] + lines[at:]

    def _sub(self, op, lines, positions, facts, language):
        left, first = op.get("count"), {}
        out = {}
        for i in positions:
            if left is not None and left <= 0:
                break
            text = lines[i].text
            local = {**facts, "indent": key_indent(text, language)}

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
            result += [Line(None, t, ln.scope, True, ln.home) for t in rest]
        return result

    def _set(self, op, lines, positions, facts, unit):
        """YAML: a key path set in each item of the lists `each` opens, or in the mapping that holds
        the `beside` line (secai.analysis.yamlset)."""
        anchor = op["each"] if "each" in op else op["beside"]
        try:
            targets = sorted({t for i in positions if anchor.search(lines[i].text)
                              for t in (yamlset.items(lines, i) if "each" in op else [yamlset.holder(lines, i)])})
            if not targets:
                raise _NoFix(f"set: no line matches {anchor.pattern!r}")
            return yamlset.set_key(lines, tuple(op["set"].split(".")), _expand(op["to"], facts), targets,
                                   op.get("keep"), unit)
        except Unfixable as exc:
            raise _NoFix(f"set: {exc}") from None

    def _insert(self, op, lines, positions, facts, language, unit, open_end=False):
        where = next(k for k in ("after", "before", "end_of") if k in op)
        anchors = [(i, m) for i in positions if (m := op[where].search(lines[i].text))]
        if op.get("unless") is not None:
            anchors = [(i, m) for i, m in anchors
                       if not any(op["unless"].search(ln.text) for ln in lines[i:block_end(lines, i, language) + 1])]
        per = {}  # YAML: facts of each anchor's own item (secai.analysis.yamlset.item_facts)
        if op.get("item_find") is not None or op.get("item_unless") is not None:
            try:
                per = yamlset.item_facts(lines, [i for i, _ in anchors], op.get("item_find"), op.get("item_unless"))
            except Unfixable as exc:
                raise _NoFix(f"insert: {exc}") from None
            anchors = [(i, m) for i, m in anchors if i in per]
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
            end = block_end(lines, i, language)
            if where != "before" and open_end and end == len(lines) - 1 and \
                    (end > i or lines[i].text.rstrip().endswith((":", "{", "[", "(", "\\"))):
                # e.g. a workflow's `on:` shown as the context's last line: its block is below it
                raise _NoFix("insert: the anchor's block may go on past the lines the context shows")
            local = {**facts, **_all_groups(m), **per.get(i, {}), "indent": key_indent(lines[i].text, language),
                     "inner": inner_indent(lines, i, end, language, unit)}
            texts = [s for t in op["insert"] for s in _expand(t, local).split("\n")]
            if where == "before":
                at, home = i, lines[i].home
            elif where == "after":
                at, home = end + 1, lines[end].home
            else:
                if end == i:
                    raise _NoFix("insert: the anchor opens no block")
                closing = language in BRACES
                at = end if closing else end + 1
                home = lines[at - 1].home
            new = [Line(None, t, True, True, home) for t in texts]
            lines = lines[:at] + new + lines[at:]
            if len(anchors) == 1:
                facts.update(_groups(m))
        facts.update(yamlset.joined([per[i] for i, _ in anchors if i in per]))
        return lines


def _bracketed(lines: list, a: int, b: int, language: str) -> list[tuple[int, int]]:
    """[(first, last)] context lines of the innermost block that opens at or above line `a` and
    closes at or below `b` (a call spanning lines, an object literal), by the edited lines' homes; []
    when there is none."""
    top = next(i for i, ln in enumerate(lines) if ln.home >= a)
    for i in range(top, -1, -1):
        if lines[i].orig is None:
            continue
        end = block_end(lines, i, language)
        if end > i and lines[end].home >= b and lines[end].orig is not None:
            return [(lines[i].home, lines[end].home)]
    return []


def _check_rule(data, name: str, index: int, seen: dict) -> FixRule:
    ident = data.get("id") if isinstance(data, dict) else None
    label = f"fixes/{name}: rule {ident if isinstance(ident, str) else f'#{index + 1}'}"
    try:
        reason = schema_error("fixrule", data)
    except ValueError as exc:  # YAML that is no JSON data: a date, a key that is not a string
        reason = f"not JSON data: {exc}"
    if reason:
        raise FixRuleError(f"{label}: {reason}")
    if ident in seen:
        raise FixRuleError(f"{label}: duplicate id (first defined in {seen[ident]})")
    try:
        rule = FixRule(data, name)
    except re.error as exc:
        raise FixRuleError(f"{label}: bad pattern {exc.pattern!r}: {exc}") from None
    known = set(BUILTIN_FACTS) | rule.group_names()
    for op in rule.edits:
        if "rewrite" in op:
            if op["rewrite"] not in pyfix.REWRITES:
                raise FixRuleError(f"{label}: unknown rewrite {op['rewrite']!r} (known: {sorted(pyfix.REWRITES)})")
            known.update(pyfix.REWRITES[op["rewrite"]].facts)
    for template in rule.templates():
        for m in _REF.finditer(template):
            if m.group(1) not in known:
                raise FixRuleError(f"{label}: unknown fact \\g<{m.group(1)}> (known: {sorted(known)})")
            if m.group(2) and m.group(2) not in FILTERS:
                raise FixRuleError(f"{label}: unknown filter |{m.group(2)} (known: {sorted(FILTERS)})")
    seen[ident] = name
    return rule


@cache
def fix_rules(directory: Path | str = FIXES_DIR) -> tuple[FixRule, ...]:
    """The fix rules in `directory` (every *.yaml, in name order), validated and cached."""
    import yaml

    rules, seen = [], {}
    for path in sorted(Path(directory).glob("*.yaml")):
        try:
            doc = yaml.load(path.read_bytes(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))  # libyaml if any
        except yaml.YAMLError as exc:
            raise FixRuleError(f"fixes/{path.name}: invalid YAML: {exc}") from None
        if not isinstance(doc, list):
            raise FixRuleError(f"fixes/{path.name}: expected a list of rules")
        rules += [_check_rule(d, path.name, i, seen) for i, d in enumerate(doc)]
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
    """(the fix, the rule id) the first applicable fix rule makes from the finding's code context, or None.
    When no rule is written for the finding's rule id, a Checkov finding may get the fix its check's
    declared expectation makes (secai.analysis.iacfix, rule id EXPECTATION); a rule written for the id
    that declines (e.g. on a privileged container) is the rule authors' decision, and stands."""
    if not context or not context.get("code", "").strip():
        return None
    candidates = _candidates(fix_rules() if rules is None else tuple(rules), context.get("language", ""),
                             finding.get("tool"), finding.get("rule_id", ""), tuple(finding.get("cwe", ())))
    file_text = _file_text(root, context["path"]) if candidates else None
    for _, _, rule in candidates:
        if fixgates.declines(rule.data, root, context["path"]):
            continue
        try:
            fix = rule.apply(context, file_text)
        except _NoFix:
            continue
        if not platform_problems(context, fix, file_text):
            return _made(finding, context, fix), rule.id
    if any(level == 0 for level, _, _ in candidates):
        return None
    from secai.analysis.iacfix import EXPECTATION, expectation_fix

    fix = expectation_fix(finding, context, root)
    if fix and platform_problems(context, fix, _file_text(root, context["path"])):
        return None
    return (_made(finding, context, fix), EXPECTATION) if fix else None


@lru_cache(maxsize=4096)  # (level, index, rule) of the rules for findings of a tool's rule and CWE in a language
def _candidates(rules: tuple, language: str, tool: str | None, rule_id: str, cwe: tuple) -> list:
    language, finding = canonical_language(language), {"tool": tool, "rule_id": rule_id, "cwe": cwe}
    return sorted((level, n, rule) for n, rule in enumerate(rules)
                  if rule.language == language and (level := rule.level(finding)) is not None)


def platform_problems(context: dict, fix: dict, file_text: str | None) -> list:
    """What a Kubernetes manifest's fix brings in that the platform refuses or ignores
    (secai.analysis.platform, the gate verification applies to every fix), judged on the whole file
    when it was read, else on the lines the context shows: a rule's fix it finds is no fix."""
    from secai.analysis import placement, platform

    if canonical_language(context.get("language", "")) not in platform.LANGUAGES:
        return []
    first, text = (1, file_text) if file_text is not None else (context["start_line"], context["code"])
    lines = text.split("\n")
    try:
        fixed = placement.place(lines, context, fix, first).apply(lines, first)
    except placement.NotPlaced:
        return []  # verification refuses it for that
    return platform.introduced(text, "\n".join(fixed))


def _made(finding: dict, context: dict, fix: dict) -> dict:
    return {"language": context["language"], **fix,
            "verification": f"Re-run {finding['tool']} on {context['path']}: {finding['rule_id']} must no longer "
                            f"be reported there, and the file must still parse."}
