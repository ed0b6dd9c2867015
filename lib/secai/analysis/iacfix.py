"""Fixes from what a checkov check declares it expects: the long tail of IaC findings that no
hand-written fix rule (kb/fixes/*.yaml) covers.

    fix = expectation_fix(finding, context, Path("src"))   # {original, code, explanation} or None
    p, why = plan(record)                                  # what would be changed, or why nothing

The knowledge is the check's harvested record (secai.analysis.rules.rule_knowledge): its
framework, its resource types and one expectation {key, values | forbidden | any_value}, where the
key is checkov's inspected path (`versioning/[0]/enabled`: in Terraform, [0] is the first of the
blocks, the other steps nest blocks; in CloudFormation YAML and Kubernetes the steps nest mappings,
and a path through a list item is not followed). What is done
with it, and only when the value to write follows from the check itself:
- a value check with one passing value (true and "true" count as one): the attribute is set to it,
  added when missing, with the blocks or mappings on its path; an existing value is only replaced
  by one of its own kind (a number is never turned into true), and never when it is an expression;
- a forbidden-value check on a boolean: the other boolean; on a list: the forbidden members are
  removed, when others remain (what to allow instead of all of them is a choice);
- an encryption-key check that accepts any value (`kms_key_id` of an AWS resource): a new
  customer-managed KMS key is added beside the resource (rotation on; in Terraform with the key
  policy AWS would write by default, so the account's IAM policies govern it) and the attribute
  refers to its ARN — except for services that need the key policy to name them (CloudWatch Logs,
  CloudTrail: KMS_NEEDS_POLICY), where a key without that grant breaks the resource;
- anything else gets no fix: several passing values or any value (which one is the owner's
  choice: a log bucket, a subnet, a version), a forbidden string (its replacement is a choice), a
  check that forbids any value (removing a hard-coded secret or an inline node pool is no fix by
  itself), a graph check of several conditions or of another operator.
A graph check (CKV2_*) whose whole condition is one attribute test (equals, not_equals, exists on
one attribute path, `a.b` for `a/b`; a resource-type filter beside it aside) counts as the value
check it amounts to, for the resource types it names only.
The result is checked like every fix (secai.analysis.verify): it must parse, and checkov, re-run
on a fixed copy, must no longer report the finding.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from secai.analysis.iacedit import Change, Unfixable, hcl_block_end, hcl_block_start, hcl_change, hcl_literal
from secai.analysis.yamlset import yaml_change, yaml_children, yaml_literal, yaml_scalar
from secai.secrets import REDACTED
from secai.untrusted import quote

EXPECTATION = "checkov-expectation"  # the rule id secai.analysis.fixrules.rule_fix gives these fixes
ANY_VALUE = "CKV_ANY"        # checkov.common.models.consts.ANY_VALUE, as the harvested data keeps it
LANGUAGE = {"terraform": "hcl", "cloudformation": "yaml", "kubernetes": "yaml"}  # what this module edits
KMS_ATTRIBUTE = re.compile(r"kms_?(?:master_?)?key_?(?:id|arn)$|kms_?arn$", re.IGNORECASE)
KMS_NEEDS_POLICY = frozenset({  # services that use a key only when its key policy names them
    "aws_cloudwatch_log_group", "aws_cloudtrail", "aws_cloudtrail_event_data_store",
    "AWS::Logs::LogGroup", "AWS::CloudTrail::Trail", "AWS::CloudTrail::EventDataStore"})
_INDEX = re.compile(r"^\[?\d+\]?$")
GRAPH_OPERATORS = {"equals": "values", "not_equals": "forbidden", "exists": "any_value"}  # as value checks


@dataclass(frozen=True)
class Plan:
    """What a check's expectation asks for: the change at `path`, and `how` it was decided
    (set, flip, drop, kms)."""

    path: tuple[str, ...]
    change: Change
    how: str
    resources: tuple[str, ...] = ()  # the resource types it is for, when not all the check's


def _truth(value) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    return None


def plan(record: dict | None) -> tuple[Plan | None, str]:
    """(the plan, "") for a check whose expectation fixes mechanically, else (None, why not)."""
    if not record or record.get("tool") != "checkov":
        return None, "no checkov record"
    frameworks = [f for f in record.get("frameworks") or () if f in LANGUAGE]
    if not frameworks:
        return None, f"framework not covered: {', '.join(record.get('frameworks') or ()) or 'none'}"
    expects = record.get("expects") or []
    if len(expects) != 1 or not isinstance(expects[0].get("key"), str):
        return None, "not a single declared expectation"
    e, types = expects[0], ()
    if "operator" in e:  # a graph check's one attribute condition, on the resource types it names
        if e["operator"] not in GRAPH_OPERATORS or not e.get("resource_types"):
            return None, f"a graph condition ({e['operator']})"
        if not _one_attribute(record["rule_id"], record["frameworks"][0]):
            return None, "a graph condition joined with connections or alternatives"
        types = tuple(e["resource_types"])
        kind = GRAPH_OPERATORS[e["operator"]]
        e = {"key": e["key"].replace(".", "/"), kind: True if kind == "any_value" else e.get(kind)}
    indexes = [s.strip("[]") for s in e["key"].split("/") if _INDEX.match(s)]
    if indexes and (LANGUAGE[frameworks[0]] == "yaml" or set(indexes) != {"0"}):
        return None, f"a path through a list item: {e['key']}"  # HCL's [0] is the (first) block, no list
    steps = tuple(s for s in e["key"].split("/") if not _INDEX.match(s))
    if not steps or any(not re.fullmatch(r"[A-Za-z_][\w-]*", s) for s in steps):
        return None, f"a path that is not plain names: {e['key']}"
    if LANGUAGE[frameworks[0]] == "hcl" and any("-" in s for s in steps):  # no provider names a block so
        return None, f"a key of a map attribute: {e['key']}"
    p, why = _decide(e, steps, record)
    return (Plan(p.path, p.change, p.how, types) if p and types else p), why


@cache
def _graph_conditions() -> dict[tuple[str, str], dict]:
    from secai.analysis.rules import harvested

    return {(r["id"], r["framework"]): r["condition"] for r in harvested("checkov")["records"]
            if r.get("check") == "graph" and isinstance(r.get("condition"), dict)}


def _one_attribute(rule_id: str, framework: str) -> bool:
    """Whether the graph check's whole condition is one attribute test (the harvested record's
    `conditions` lists the attribute tests of a tree that may also hold connections and `or`s)."""
    def attributes(c: dict) -> int | None:  # how many attribute tests an `and` of them holds; None: more than that
        if c.get("type") == "ATTRIBUTE":
            return 1
        if c.get("type") == "FILTER":
            return 0
        if c.get("type") == "COMPLEX" and c.get("operator") == "and":
            counts = [attributes(x) for x in c.get("checks") or ()]
            return None if None in counts else sum(counts)
        return None
    condition = _graph_conditions().get((rule_id, framework))
    return condition is not None and attributes(condition) == 1


def _decide(e: dict, steps: tuple[str, ...], record: dict) -> tuple[Plan | None, str]:
    if "forbidden" in e:
        forbidden = e["forbidden"] if isinstance(e["forbidden"], list) else [e["forbidden"]]
        if e.get("any_value") or ANY_VALUE in forbidden or not forbidden:  # removing it is no fix: a secret
            return None, "any value is forbidden: what replaces the setting is the owner's choice"
        truths = {_truth(v) for v in forbidden}
        if len(truths) == 1 and None not in truths:
            return Plan(steps, Change("set", not truths.pop()), "flip"), ""
        return Plan(steps, Change("drop", forbidden), "drop"), ""
    values = e.get("values") if isinstance(e.get("values"), list) else []
    if e.get("any_value") or ANY_VALUE in values:
        if KMS_ATTRIBUTE.search(steps[-1]) and not set(record.get("resources") or ()) & KMS_NEEDS_POLICY:
            return Plan(steps, Change("expr"), "kms"), ""
        return None, "any value passes: which one is the owner's choice"
    if not values:
        return None, "no expected value"
    truths = {_truth(v) for v in values}
    if len(truths) == 1 and None not in truths:
        return Plan(steps, Change("set", truths.pop()), "set"), ""
    if len({json.dumps(v, sort_keys=True) for v in values}) == 1 and not isinstance(values[0], dict):
        return Plan(steps, Change("set", values[0]), "set"), ""
    return None, "several values pass: which one is the owner's choice"


def expectation_fix(finding: dict, context: dict | None, root: Path | None, record: dict | None = None) -> dict | None:
    """{original, code, explanation} made from the finding's check expectation (the harvested
    record, looked up when not given), or None when it gives no mechanical fix for this code."""
    if finding.get("tool") != "checkov" or not context or not context.get("code", "").strip():
        return None
    if record is None:
        from secai.analysis.rules import rule_knowledge

        record = rule_knowledge(finding)
    p, _ = plan(record)
    if p is None:
        return None
    from secai.analysis.languages import canonical

    framework = next(f for f in record["frameworks"] if f in LANGUAGE)
    if canonical(context.get("language", "")) != LANGUAGE[framework]:
        return None
    texts = context["code"].split("\n")
    resource = (finding.get("location") or {}).get("resource") or (context.get("enclosing") or {}).get("name") or ""
    try:
        edit = {"terraform": _terraform, "cloudformation": _cloudformation, "kubernetes": _kubernetes}[framework]
        lo, hi, new, target, extra = edit(texts, resource, record, p, context, finding, root)
    except Unfixable:
        return None
    added = len(new) > hi - lo + 1  # a set that added the attribute (or its blocks): the unit grew
    if extra:
        new = new + extra["lines"]
    original, code = "\n".join(texts[lo:hi + 1]), "\n".join(new)
    if REDACTED in original or code == original:
        return None
    return {"original": original, "code": code, "explanation": _explain(p, record, target, extra, added, LANGUAGE[framework])}


# ---------------------------------------------------------------- the frameworks

def _check_type(p: Plan, record: dict, kind: str) -> None:
    if kind not in (p.resources or record.get("resources") or (kind,)):
        raise Unfixable(f"{kind} is not a resource type of the check")


def _terraform(texts, resource, record, p: Plan, context, finding, root):
    parts = re.sub(r"\[[^\]]*\]", "", resource).split(".")
    if len(parts) < 2:
        raise Unfixable("no resource address")
    kind, name = parts[-2], parts[-1]
    _check_type(p, record, kind)
    start = hcl_block_start(texts, "resource", (kind, name))
    change, extra = p.change, None
    if p.how == "kms":
        if not kind.startswith("aws_"):
            raise Unfixable("a key for another cloud than AWS")
        change, extra = _kms_terraform(kind, name, texts, start, context, root)
    new = hcl_change(texts, start, p.path, change)
    return start, hcl_block_end(texts, start), new, f"{kind}.{name}", extra


def _siblings(context: dict, root: Path | None, pattern: str) -> list[str]:
    """The texts of the files matching `pattern` in the directory of the context's file."""
    if root is None:
        raise Unfixable("no source root to look for existing resources in")
    from secai.analysis.context import NoContext, locate

    try:
        real, _ = locate(root, context["path"])
    except NoContext as exc:
        raise Unfixable(str(exc)) from None
    return [f.read_text(encoding="utf-8", errors="replace") for f in sorted(real.parent.glob(pattern))
            if f.is_file() and f.stat().st_size <= 2_000_000]


def _kms_terraform(kind: str, name: str, texts, start: int, context, root):
    files = _siblings(context, root, "*.tf")
    if any(re.search(rf'^\s*resource\s+"aws_kms_key"\s+"{re.escape(name)}"', t, re.M) for t in files):
        raise Unfixable(f"aws_kms_key.{name} exists already")
    found = next((m[1] for t in files for m in re.finditer(r'^\s*data\s+"aws_caller_identity"\s+"([\w-]+)"', t, re.M)),
                 None)
    who = found or "current"
    unit = re.match(r"\s*", next((t for t in texts[start + 1:] if t.strip()), "  "))[0] or "  "
    u = lambda n: unit * n  # noqa: E731 - indentation levels of the new resource
    lines = ["", f'resource "aws_kms_key" "{name}" {{',
             f'{u(1)}description         = {hcl_literal(f"Encrypts {kind}.{name}")}',
             f"{u(1)}enable_key_rotation = true",
             f"{u(1)}policy = jsonencode({{",
             f'{u(2)}Version = "2012-10-17"',
             f"{u(2)}Statement = [{{",
             f'{u(3)}Sid       = "AccountIAMPolicies"',
             f'{u(3)}Effect    = "Allow"',
             f"{u(3)}Principal = {{ AWS = data.aws_caller_identity.{who}.account_id }}",
             f'{u(3)}Action    = "kms:*"',
             f'{u(3)}Resource  = "*"',
             f"{u(2)}}}]",
             f"{u(1)}}})",
             "}"]
    if not found:
        lines += ["", 'data "aws_caller_identity" "current" {}']
    return Change("expr", f"aws_kms_key.{name}.arn"), {"key": f"aws_kms_key.{name}", "lines": lines}


def _yaml_unit(texts: list[str]) -> str:
    from secai.analysis.fixlines import indent_step

    return " " * indent_step(texts, "yaml")


def _cloudformation(texts, resource, record, p: Plan, context, finding, root):
    kind, _, logical = resource.rpartition(".")
    if not logical or not re.fullmatch(r"[A-Za-z0-9]+", logical):
        raise Unfixable("no logical id")
    _check_type(p, record, kind)
    heads = [i for i, t in enumerate(texts) if re.match(rf"^\s+{logical}:\s*(?:#.*)?$", t)]
    if len(heads) != 1:
        raise Unfixable(f"{logical} is {'not' if not heads else 'more than once'} in the code shown")
    head = heads[0]
    _, keys = yaml_children(texts, head, len(texts) - 1)
    j, end, _ = keys[logical]
    _, own = yaml_children(texts, head + 1, end)
    if "Type" not in own or yaml_scalar(own["Type"][2]) != kind:
        raise Unfixable(f"{logical} is not of type {kind} in the code shown")
    unit = _yaml_unit(texts)
    change, extra = p.change, None
    if p.how == "kms":
        key = f"{logical}Key"
        if any(re.match(rf"^\s+{key}:", t) for t in _siblings_text(context, root)):
            raise Unfixable(f"{key} exists already")
        change = Change("expr", f"!GetAtt {key}.Arn")
        pad = texts[head][:len(texts[head]) - len(texts[head].lstrip())]
        extra = {"key": key, "lines": [f"{pad}{key}:", f"{pad}{unit}Type: AWS::KMS::Key", f"{pad}{unit}Properties:",
                                       f"{pad}{unit * 2}EnableKeyRotation: true"]}
    new = yaml_change(texts, head, end, (logical, *p.path), change, unit)
    return head, end, new, f"{kind} {logical}", extra


def _siblings_text(context, root) -> list[str]:
    return [line for text in _siblings(context, root, Path(context["path"]).name) for line in text.split("\n")]


def _kubernetes(texts, resource, record, p: Plan, context, finding, root):
    if p.how == "kms":
        raise Unfixable("no key to add in Kubernetes")
    base = context["start_line"]
    first, last = (context.get("finding_lines") or [base, base])[:2]
    a, b = first - base, last - base
    breaks = [i for i, t in enumerate(texts) if t.strip() == "---"]
    start = max((i + 1 for i in breaks if i < a), default=0 if base == 1 else None)
    if start is None:
        raise Unfixable("the object does not begin in the code shown")
    end = min((i - 1 for i in breaks if i > a), default=len(texts) - 1)
    if end < b:
        raise Unfixable("the object does not end in the code shown")
    _, keys = yaml_children(texts, start, end)
    kind = yaml_scalar(keys["kind"][2]) if "kind" in keys else None
    _check_type(p, record, kind or "")
    new = yaml_change(texts, start, end, p.path, p.change, _yaml_unit(texts))
    return start, end, new, f"{kind} {resource.split('.')[-1]}" if kind else resource, None


# ---------------------------------------------------------------- what the fix says

def _explain(p: Plan, record: dict, target: str, extra: dict | None, added: bool, language: str) -> str:
    attr = ".".join(p.path)
    check = f"checkov's {record['rule_id']}" + (f" ({quote(record['name'])})" if record.get("name") else "")
    if p.how == "kms":
        what = (f"Encrypts {target} with a new customer-managed KMS key, {extra['key']}, with automatic "
                f"rotation on, and sets {attr} to its ARN, as {check} asks")
        what += ("; its key policy is the one AWS writes by default (the account's IAM policies decide who may use "
                 "the key), " + ("written out so that it is reviewed with the code" if target.startswith("aws_") else
                                 "which CloudFormation applies when KeyPolicy is left out"))
        return what + (". A service that uses the data on its own behalf (one that publishes to a topic, say) also "
                       "needs a statement naming it in the key policy.")
    if p.how == "drop":
        gone = ", ".join(json.dumps(v) for v in p.change.value)
        return f"Removes what {check} forbids ({gone}) from {attr} of {target} and keeps its other members."
    literal = hcl_literal if language == "hcl" else yaml_literal
    setting = f"{attr} = {literal(p.change.value)}" if language == "hcl" else f"{attr}: {literal(p.change.value)}"
    if p.how == "flip":
        return f"Sets {setting} on {target}: {check} fails when it is {literal(not p.change.value)}."
    return f"{'Adds' if added else 'Sets'} {setting} {'to' if added else 'on'} {target}, the value {check} expects."
