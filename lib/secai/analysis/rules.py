"""Rule knowledge: what the scanners' own authors say about a rule, for the finding it reported.

`rule_knowledge(finding, semgrep_rules)` gives one record (RULE_KEYS) for the finding's tool and
rule id, or None when nothing is known about it:
- checkov (check id, CKV_AWS_36, CKV2_K8S_5) and bandit (test id, B602): from the data `secai-kb
  harvest` read out of the installed scanners (lib/secai/analysis/kb/harvested/*.json, committed,
  so a clone without scanners has them; secai.analysis.harvest writes them);
- semgrep: from the rule files the report was made with (`semgrep_rules`, a folder of rule YAML),
  read at analysis time. Semgrep prefixes a rule's id with its config folder's dotted path, so
  `semgrep-rules.python.django.security.audit.no-csrf-exempt` is rule `no-csrf-exempt` of a YAML
  file in `python/django/security/audit/` under the folder (the folder's own name, or any leading
  parts, may be in front). Rule files are untrusted data: yaml.safe_load, bounded sizes, only plain
  fields copied; a file that cannot be read or parsed yields nothing, never an error.
`cwe_entry("CWE-79")` gives the MITRE catalogue's entry (harvested from the `cwe2` package).

Everything loaded is cached per process: the harvested files are read once (a few MB of JSON),
a semgrep rule folder is read one directory at a time, the first time a rule in it is asked for.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path, PurePosixPath

import orjson
import yaml

from secai.files import shipped
from secai.untrusted import http_links

HARVESTED = shipped("analysis", "kb", "harvested")
SOURCES = ("checkov", "bandit", "cwe")  # HARVESTED/<name>.json
RULE_KEYS = ("tool", "rule_id", "name", "what", "why", "advice", "frameworks", "resources", "expects",
             "categories", "cwe", "references", "autofix", "matches", "source")
MAX_RULE_FILE = 512 * 1024   # bytes: a larger YAML file is not a rule file we read
MAX_DIR_FILES = 2000         # YAML files read from one rule directory
MAX_TEXT = 4000              # characters kept of one rule text (message)
MAX_MATCHES = 2000           # characters of a rule's patterns, as YAML text
PATTERN_KEYS = ("pattern", "patterns", "pattern-either", "pattern-regex", "pattern-not", "pattern-inside",
                "pattern-not-inside", "pattern-sources", "pattern-sinks", "pattern-sanitizers", "mode",
                "taint", "match")
_CWE = re.compile(r"CWE-(\d+)", re.IGNORECASE)
# A sentence of an author's text that says what to do: where `advice` comes from (the authors' words)
_ADVICE = re.compile(r"\b(instead|consider|recommend(?:ed|s)?|should|ensure|make sure|avoid|prefer|"
                     r"use (?:a|an|the)\b|set (?:the|it|this)\b|remove|disable|enable|replace)\b", re.IGNORECASE)
# A sentence that says what can go wrong: where `why` comes from
_WHY = re.compile(r"\b(vulnerab\w*|attack\w*|dangerous|unsafe|insecure|risk\w*|exploit\w*|lead to|leads to|"
                  r"allow(?:s|ing)? (?:an? )?(?:attacker|remote|arbitrary|malicious)|arbitrary code|compromise\w*|"
                  r"expos\w+|leak\w*|bypass\w*)\b", re.IGNORECASE)
_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z`'\"(])")
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # safe either way; libyaml when present


# ---------------------------------------------------------------- the harvested data
@cache
def harvested(name: str) -> dict:
    """HARVESTED/<name>.json ({"schema", "source", "records"}), or an empty one when it is absent."""
    path = HARVESTED / f"{name}.json"
    if not path.is_file():
        return {"source": {}, "records": []}
    return orjson.loads(path.read_bytes())


@cache
def _index(name: str) -> dict[str, list[dict]]:
    """The harvested records of `name` by id (checkov: one per framework that ships the id)."""
    out: dict[str, list[dict]] = {}
    for record in harvested(name)["records"]:
        out.setdefault(record["id"], []).append(record)
    return out


def source_line(name: str) -> str:
    """How a harvested source is attributed: "checkov 3.3.30, Apache-2.0"."""
    s = harvested(name)["source"]
    return ", ".join(p for p in (f"{s.get('name', name)} {s.get('version', '')}".strip(), s.get("licence")) if p)


def advice_of(text: str | None) -> str | None:
    """The sentences of `text` that say what to do (a recommendation's words: instead, consider,
    should, use a, ...), joined; None when it has none."""
    if not text:
        return None
    found = [s for s in _SENTENCE.split(" ".join(text.split())) if _ADVICE.search(s)]
    return " ".join(found) or None


def why_of(text: str | None) -> str | None:
    """The sentences of `text` that say what can go wrong (vulnerable, attacker, lead to, ...) and
    are not advice, joined; None when it has none."""
    if not text:
        return None
    found = [s for s in _SENTENCE.split(" ".join(text.split())) if _WHY.search(s) and not _ADVICE.search(s)]
    return " ".join(found) or None


def cwe_entry(cwe_id: str) -> dict | None:
    """The catalogue's entry for "CWE-79" (also "79", "cwe-79"): id, name, abstraction, status,
    description, extended, consequences [{scope, impact}], mitigations [{phase, strategy,
    description}], languages, technologies; None for an id the catalogue does not hold (or a
    view, category or deprecated entry, which are not harvested)."""
    m = _CWE.fullmatch(cwe_id.strip()) if isinstance(cwe_id, str) else None
    if m is None and isinstance(cwe_id, str) and cwe_id.strip().isdigit():
        m = _CWE.fullmatch(f"CWE-{cwe_id.strip()}")
    found = _index("cwe").get(f"CWE-{int(m[1])}") if m else None
    return dict(found[0]) if found else None


# ---------------------------------------------------------------- the lookup
def rule_knowledge(finding: dict, semgrep_rules: Path | None = None) -> dict | None:
    """The knowledge of the finding's rule (RULE_KEYS), or None for a tool or rule id unknown here."""
    tool, rule_id = finding.get("tool"), finding.get("rule_id")
    if not isinstance(rule_id, str) or not rule_id:
        return None
    if tool == "checkov":
        return _checkov(finding, rule_id)
    if tool == "bandit":
        return _bandit(rule_id)
    if tool == "semgrep" and semgrep_rules is not None:
        return _semgrep(Path(semgrep_rules), rule_id)
    return None


def _record(tool: str, rule_id: str, **fields) -> dict:
    out = dict.fromkeys(RULE_KEYS)
    out.update(tool=tool, rule_id=rule_id, frameworks=[], resources=[], expects=[], categories=[], cwe=[],
               references=[])
    out.update(fields)
    return out


# The checkov framework a finding's file belongs to, when its tags do not say (an id such as
# CKV_AWS_36 is shipped by terraform, cloudformation and serverless alike).
_FRAMEWORK_BY_PATH = ((re.compile(r"(^|/)\.github/workflows/[^/]+\.ya?ml$"), "github_actions"),
                      (re.compile(r"(^|/)\.gitlab-ci\.ya?ml$"), "gitlab_ci"),
                      (re.compile(r"(^|/)(bitbucket-pipelines\.ya?ml)$"), "bitbucket_pipelines"),
                      (re.compile(r"(^|/)azure-pipelines\.ya?ml$"), "azure_pipelines"),
                      (re.compile(r"(^|/)serverless\.ya?ml$"), "serverless"),
                      (re.compile(r"(^|/)([^/]*\.)?dockerfile(\.[^/]*)?$", re.IGNORECASE), "dockerfile"),
                      (re.compile(r"\.tf$|\.tofu$"), "terraform"),
                      (re.compile(r"\.tf\.json$"), "terraform_json"),
                      (re.compile(r"\.bicep$"), "bicep"))


def _framework_of(finding: dict, frameworks: list[str]) -> str:
    tags = [t for t in finding.get("tags") or () if isinstance(t, str)]
    for tag in tags:
        if tag in frameworks:
            return tag
    path = (finding.get("location") or {}).get("path") or ""
    for pattern, name in _FRAMEWORK_BY_PATH:
        if pattern.search(path) and name in frameworks:
            return name
    for preferred in ("terraform", "kubernetes", "cloudformation"):
        if preferred in frameworks:
            return preferred
    return frameworks[0]


def _checkov(finding: dict, rule_id: str) -> dict | None:
    found = _index("checkov").get(rule_id)
    if not found:
        return None
    frameworks = [r["framework"] for r in found]
    r = found[frameworks.index(_framework_of(finding, frameworks))]
    return _record("checkov", rule_id, name=r["name"], what=r["name"], frameworks=[r["framework"]],
                   resources=list(r["resources"]), expects=_expects(r), categories=list(r["categories"]),
                   references=http_links([r.get("guideline")]), source=source_line("checkov"))


def _expects(r: dict) -> list[dict]:
    """A check's declared expectation: [{key, values | forbidden | any_value, when_missing}] from a
    value check's inspected key, or the graph check's attribute conditions."""
    out = []
    if r.get("inspected_key"):
        e: dict = {"key": r["inspected_key"]}
        if r.get("forbidden") is not None:
            e["forbidden"] = r["forbidden"]
        elif r.get("any_value"):
            e["any_value"] = True
        elif r.get("expected") is not None:
            e["values"] = r["expected"]
        if r.get("missing"):
            e["when_missing"] = r["missing"]
        out.append(e)
    for c in r.get("conditions") or ():
        e = {"key": c["attribute"], "operator": c["operator"]}
        if c["operator"] in ("equals", "within") and "value" in c:
            e["values"] = c["value"] if isinstance(c["value"], list) else [c["value"]]
        elif c["operator"] in ("not_equals", "not_within") and "value" in c:
            e["forbidden"] = c["value"] if isinstance(c["value"], list) else [c["value"]]
        elif "value" in c:
            e["value"] = c["value"]
        if c.get("resource_types"):
            e["resource_types"] = c["resource_types"]
        out.append(e)
    return out


def _bandit(rule_id: str) -> dict | None:
    found = _index("bandit").get(rule_id)
    if not found:
        return None
    r = found[0]
    return _record("bandit", rule_id, name=r["title"], what=r["what"], why=r["why"], advice=r["advice"],
                   frameworks=["python"], categories=[f"blacklist {r['blacklist']}"] if r["blacklist"] else [],
                   cwe=list(r["cwe"]), references=http_links(r["references"]),
                   source=source_line("bandit"))


# ---------------------------------------------------------------- semgrep rule files
def _semgrep(root: Path, rule_id: str) -> dict | None:
    found = semgrep_rule(root, rule_id)
    return _semgrep_record(found[0], rule_id, found[1]) if found else None


def semgrep_rule(semgrep_rules: Path, rule_id: str) -> tuple[dict, str] | None:
    """(the rule as its file holds it, that file relative to `semgrep_rules`) of a semgrep finding's
    rule id, or None. The mapping is untrusted data, shared with this module's cache: not to be
    changed; secai.analysis.autofix hands it back to semgrep."""
    root = Path(semgrep_rules)
    parts = rule_id.split(".")
    if root.is_file():  # one rule file as the config: ids carry no folder, or the file's dotted path
        rules = _rules_in_file(root.resolve())
        return next(((rules[rid], root.name)
                     for rid in (".".join(parts[i:]) for i in range(len(parts))) if rid in rules), None)
    # (leading parts semgrep put in front, the folder under root, the rule's own id): the deepest folder first
    for start in range(len(parts)):
        for end in range(len(parts) - 1, start - 1, -1):
            folder, rid = parts[start:end], ".".join(parts[end:])
            if any(p in ("", ".", "..") or "/" in p or "\\" in p for p in folder):
                continue
            rules = _rules_in_dir(root.resolve(), tuple(folder))
            if rid in rules:
                return rules[rid]
    return None


@cache
def _rules_in_dir(root: Path, folder: tuple[str, ...]) -> dict[str, tuple[dict, str]]:
    """{rule id: (rule, file relative to root)} of the YAML files directly in root/folder."""
    directory = root.joinpath(*folder)
    if not directory.is_dir():
        return {}
    out: dict[str, tuple[dict, str]] = {}
    files = sorted(p for p in directory.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())
    for path in files[:MAX_DIR_FILES]:
        rel = str(PurePosixPath(*folder, path.name))
        for rid, rule in _rules_in_file(path).items():
            out.setdefault(rid, (rule, rel))
    return out


@cache
def _rules_in_file(path: Path) -> dict[str, dict]:
    """{rule id: rule mapping} of one semgrep rule file; {} when it is too big, unreadable or broken."""
    try:
        if path.stat().st_size > MAX_RULE_FILE:
            return {}
        doc = yaml.load(path.read_bytes(), Loader=_YAML_LOADER)
    except (OSError, yaml.YAMLError, ValueError, RecursionError):
        return {}
    rules = doc.get("rules") if isinstance(doc, dict) else None
    return {r["id"]: r for r in rules if isinstance(r, dict) and isinstance(r.get("id"), str)} \
        if isinstance(rules, list) else {}


def _strings(value) -> list[str]:
    items = value if isinstance(value, list) else [value]
    return [s.strip() for s in items if isinstance(s, str) and s.strip()]


def _semgrep_record(rule: dict, rule_id: str, file: str) -> dict:
    meta = rule.get("metadata") if isinstance(rule.get("metadata"), dict) else {}
    message = (_strings(rule.get("message")) or [None])[0]
    cwe = list(dict.fromkeys(f"CWE-{int(n)}" for c in _strings(meta.get("cwe")) for n in _CWE.findall(c)[:1]))
    categories = _strings(meta.get("category")) + _strings(meta.get("subcategory")) + _strings(meta.get("owasp"))
    what = message[:MAX_TEXT] if message else None
    return _record("semgrep", rule_id, name=rule["id"], what=what, why=why_of(what), advice=advice_of(what),
                   frameworks=list(dict.fromkeys(_strings(rule.get("languages")) + _strings(meta.get("technology")))),
                   categories=list(dict.fromkeys(categories)), cwe=cwe,
                   references=http_links(_strings(meta.get("references")) + _strings(meta.get("source-rule-url"))),
                   autofix=_autofix(rule), matches=_matches(rule), source=f"semgrep rule file {file}")


def _autofix(rule: dict) -> dict | None:
    fix, fix_regex = rule.get("fix"), rule.get("fix-regex")
    if isinstance(fix, str):
        return {"fix": fix[:MAX_TEXT]}
    if isinstance(fix_regex, dict) and isinstance(fix_regex.get("regex"), str) \
            and isinstance(fix_regex.get("replacement"), str):
        return {"regex": fix_regex["regex"][:MAX_TEXT], "replacement": fix_regex["replacement"][:MAX_TEXT]}
    return None


def _matches(rule: dict) -> str | None:
    """The rule's matching part (its pattern keys) as YAML text, at most MAX_MATCHES characters."""
    part = {k: rule[k] for k in PATTERN_KEYS if k in rule}
    if not part:
        return None
    try:
        text = yaml.safe_dump(part, sort_keys=False, allow_unicode=True, width=100)
    except yaml.YAMLError:
        return None
    return text if len(text) <= MAX_MATCHES else text[:MAX_MATCHES].rsplit("\n", 1)[0] + "\n..."
