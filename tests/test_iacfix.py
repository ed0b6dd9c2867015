"""Fixes from checkov's declared expectations (secai.analysis.iacfix, iacedit, yamlset): what a value or
forbidden-value check expects is set, added (with its blocks) or removed from a list, in Terraform,
CloudFormation YAML and Kubernetes; a KMS key is added where the check asks for one; nothing is
guessed (any value, several values, a forbidden string, a key a service must be named in). The
records are written here in rules.rule_knowledge's shape, so these tests do not depend on the
harvested data. With checkov installed, every fix is applied to a copy and confirmed by checkov."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from conftest import ROOT

from secai.analysis import fixrules
from secai.analysis.context import code_context
from secai.analysis.iacedit import Change, Unfixable, hcl_change
from secai.analysis.yamlset import yaml_change
from secai.analysis.iacfix import EXPECTATION, expectation_fix, plan
from secai.analysis.languages import parses
from secai.analysis.verify import VERIFIED, Candidate, Scanners, verify

TERRAFORM = """\
resource "aws_cloudtrail" "main" {
  name           = "main"
  s3_bucket_name = "logs"
}

resource "aws_db_instance" "db" {
  engine              = "postgres"
  instance_class      = "db.t3.micro"
  publicly_accessible = true # for now
}

resource "aws_ebs_volume" "data" {
  availability_zone = "eu-west-1a"
  size              = 10
  encrypted         = true
}

resource "aws_s3_bucket" "b" {
  bucket = "b"

  versioning {
    enabled = false
  }
}

resource "azurerm_mysql_firewall_rule" "r" {
  allowed_ips = [
    "10.0.0.0/8",
    "0.0.0.0/0",
  ]
  retention = var.days
}

resource "aws_s3_bucket_ownership_controls" "b" {
  bucket = aws_s3_bucket.b.id

  rule {
    object_ownership = "ObjectWriter"
  }
}
"""

CLOUDFORMATION = """\
AWSTemplateFormatVersion: "2010-09-09"
Resources:
  Trail:
    Type: AWS::CloudTrail::Trail
    Properties:
      IsLogging: true
      S3BucketName: !Ref LogBucket
  Queue:
    Type: AWS::SQS::Queue
    Properties:
      QueueName: jobs
  Db:
    Type: AWS::RDS::DBInstance
    Properties:
      Engine: postgres
      DBInstanceClass: db.t3.micro
      PubliclyAccessible: true
"""

KUBERNETES = """\
apiVersion: v1
kind: Namespace
metadata:
  name: web
---
apiVersion: policy/v1beta1
kind: PodSecurityPolicy
metadata:
  name: open
spec:
  privileged: true
  hostNetwork: true
"""


def record(rule_id: str, framework: str, resource: str, key: str, **expect) -> dict:
    """A checkov record as secai.analysis.rules.rule_knowledge gives it."""
    return {"tool": "checkov", "rule_id": rule_id, "name": f"check {rule_id}", "frameworks": [framework],
            "resources": [resource], "expects": [{"key": key, **expect}]}


def finding(rule_id: str, path: str, lines: tuple[int, int], resource: str) -> dict:
    """A checkov finding as secai-parse writes it: its check type is a tag."""
    framework = "terraform" if path.endswith(".tf") else "kubernetes" if resource.count(".") == 2 else "cloudformation"
    return {"id": f"{rule_id}-{resource}", "tool": "checkov", "rule_id": rule_id, "category": "iac", "tags": [framework],
            "location": {"path": path, "start_line": lines[0], "end_line": lines[1], "resource": resource}}


# rule id, file, lines, resource, record, what the fixed resource must hold
CASES = [
    ("CKV_AWS_36", "main.tf", (1, 4), "aws_cloudtrail.main",
     record("CKV_AWS_36", "terraform", "aws_cloudtrail", "enable_log_file_validation", values=[True]),
     ["  enable_log_file_validation = true\n}"]),
    ("CKV_AWS_17", "main.tf", (6, 10), "aws_db_instance.db",
     record("CKV_AWS_17", "terraform", "aws_db_instance", "publicly_accessible", forbidden=[True]),
     ["  publicly_accessible = false # for now"]),
    ("CKV_AWS_189", "main.tf", (12, 16), "aws_ebs_volume.data",
     record("CKV_AWS_189", "terraform", "aws_ebs_volume", "kms_key_id", values=["CKV_ANY"]),
     ["kms_key_id = aws_kms_key.data.arn", 'resource "aws_kms_key" "data" {', "enable_key_rotation = true",
      'data "aws_caller_identity" "current" {}']),
    ("CKV_AWS_21", "main.tf", (18, 24), "aws_s3_bucket.b",
     record("CKV_AWS_21", "terraform", "aws_s3_bucket", "versioning/[0]/enabled", values=[True]),
     ["  versioning {\n    enabled = true\n  }"]),
    ("CKV_AWS_145", "main.tf", (18, 24), "aws_s3_bucket.b",
     record("CKV_AWS_145", "terraform", "aws_s3_bucket",
            "server_side_encryption_configuration/[0]/rule/[0]/apply_server_side_encryption_by_default/[0]/sse_algorithm",
            values=["aws:kms"]),
     ["  }\n\n  server_side_encryption_configuration {\n    rule {\n      apply_server_side_encryption_by_default {\n"
      '        sse_algorithm = "aws:kms"\n      }\n    }\n  }\n}']),
    ("CKV_AZURE_210", "main.tf", (26, 32), "azurerm_mysql_firewall_rule.r",
     record("CKV_AZURE_210", "terraform", "azurerm_mysql_firewall_rule", "allowed_ips", forbidden=["0.0.0.0/0"]),
     ['  allowed_ips = [\n    "10.0.0.0/8",\n  ]']),
    ("CKV2_AWS_65", "main.tf", (34, 40), "aws_s3_bucket_ownership_controls.b",  # a graph check's one condition
     {**record("CKV2_AWS_65", "terraform", "aws_s3_bucket_ownership_controls", "rule"), "expects": [
         {"key": "rule.object_ownership", "operator": "equals", "values": ["BucketOwnerEnforced"],
          "resource_types": ["aws_s3_bucket_ownership_controls"]}]},
     ['    object_ownership = "BucketOwnerEnforced"']),
    ("CKV_AWS_36", "template.yaml", (3, 7), "AWS::CloudTrail::Trail.Trail",
     record("CKV_AWS_36", "cloudformation", "AWS::CloudTrail::Trail", "Properties/EnableLogFileValidation",
            values=[True]),
     ["      S3BucketName: !Ref LogBucket\n      EnableLogFileValidation: true"]),
    ("CKV_AWS_17", "template.yaml", (12, 17), "AWS::RDS::DBInstance.Db",
     record("CKV_AWS_17", "cloudformation", "AWS::RDS::DBInstance", "Properties/PubliclyAccessible",
            forbidden=[True, "true"]),
     ["      PubliclyAccessible: false"]),
    ("CKV_AWS_27", "template.yaml", (8, 11), "AWS::SQS::Queue.Queue",
     record("CKV_AWS_27", "cloudformation", "AWS::SQS::Queue", "Properties/KmsMasterKeyId", values=["CKV_ANY"]),
     ["      KmsMasterKeyId: !GetAtt QueueKey.Arn", "  QueueKey:\n    Type: AWS::KMS::Key\n    Properties:\n"
      "      EnableKeyRotation: true"]),
    ("CKV_K8S_2", "psp.yaml", (6, 12), "PodSecurityPolicy.default.open",
     record("CKV_K8S_2", "kubernetes", "PodSecurityPolicy", "spec/privileged", values=[False]),
     ["  privileged: false\n  hostNetwork: true"]),
]


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("iac")
    (root / "main.tf").write_text(TERRAFORM)
    (root / "template.yaml").write_text(CLOUDFORMATION)
    (root / "psp.yaml").write_text(KUBERNETES)
    return root


@pytest.fixture(scope="module")
def made(source):
    out = []
    for rule_id, path, lines, resource, rec, wants in CASES:
        f = finding(rule_id, path, lines, resource)
        context = code_context(f, source)
        out.append((f, context, rec, expectation_fix(f, context, source, rec), wants))
    return out


@pytest.mark.parametrize("n", range(len(CASES)), ids=[f"{c[0]}-{c[3]}" for c in CASES])
def test_the_expectation_is_written_into_the_resource(made, n):
    f, context, rec, fix, wants = made[n]
    assert fix is not None, f"no fix for {f['rule_id']}"
    for want in wants:
        assert want in fix["code"]
    assert fix["original"] in context["code"]
    assert parses(fix["code"], context["language"])
    assert rec["rule_id"] in fix["explanation"]


def test_only_the_named_attribute_changes(made):
    f, context, rec, fix, _ = made[1]  # publicly_accessible: one line differs, the comment stays
    before, after = fix["original"].split("\n"), fix["code"].split("\n")
    assert len(before) == len(after) and sum(a != b for a, b in zip(before, after)) == 1
    assert "Sets publicly_accessible = false on aws_db_instance.db" in fix["explanation"]
    assert "Adds enable_log_file_validation = true to aws_cloudtrail.main" in made[0][3]["explanation"]


@pytest.mark.parametrize("expect, why", [
    ({"values": ["CKV_ANY"]}, "owner's choice"),                      # any log bucket: not ours to pick
    ({"any_value": True}, "owner's choice"),
    ({"values": [1, 5, 10, 15, 30, 60]}, "several values"),           # monitoring_interval: a choice
    ({"forbidden": ["CKV_ANY"]}, "any value is forbidden"),           # removing a secret is no fix
    ({"forbidden": []}, "any value is forbidden"),
    ({"key": "metadata/[0]/enable-oslogin", "values": ["TRUE"]}, "map attribute"),  # metadata = {...}, no block
    ({"key": "x", "operator": "not_contains", "values": ["a"], "resource_types": ["aws_s3_bucket"]},
     "graph condition"),
    ({"key": "x", "operator": "equals", "values": [True], "resource_types": ["aws_s3_bucket"]},
     "joined with connections"),  # CKV_X has no harvested condition that is one attribute test
])
def test_refusals_are_planned_with_the_reason(expect, why):
    rec = record("CKV_X", "terraform", "aws_s3_bucket", expect.pop("key", "logging/[0]/target_bucket"), **expect)
    p, reason = plan(rec)
    assert p is None and why in reason


def test_a_path_through_a_list_item_is_not_followed():
    # CloudFormation's Replicas/[0] is a list item (it needs a Region of its own); HCL's [1] the second block
    cfn = record("CKV_AWS_165", "cloudformation", "AWS::DynamoDB::GlobalTable",
                 "Properties/Replicas/[0]/PointInTimeRecoverySpecification/PointInTimeRecoveryEnabled", values=[True])
    tf = record("CKV_X", "terraform", "aws_x", "rule/[1]/enabled", values=[True])
    assert all("list item" in plan(r)[1] for r in (cfn, tf))
    assert plan(record("CKV_X", "terraform", "aws_x", "rule/[0]/enabled", values=[True]))[0].path == ("rule", "enabled")


def test_a_graph_check_counts_only_when_its_whole_condition_is_one_attribute():
    one = {"key": "rule.object_ownership", "operator": "equals", "values": ["BucketOwnerEnforced"],
           "resource_types": ["aws_s3_bucket_ownership_controls"]}
    assert plan({**record("CKV2_AWS_65", "terraform", "aws_s3_bucket_ownership_controls", "rule"),
                 "expects": [one]})[0].path == ("rule", "object_ownership")
    # CKV2_AWS_3 also needs a connected organisation configuration: `enable = true` alone is not the check
    joined = {"key": "enable", "operator": "equals", "values": [True], "resource_types": ["aws_guardduty_detector"]}
    assert plan({**record("CKV2_AWS_3", "terraform", "aws_guardduty_detector", "enable"), "expects": [joined]})[0] \
        is None


def test_a_key_is_not_added_where_the_service_must_be_named_in_its_policy(source):
    rec = record("CKV_AWS_35", "terraform", "aws_cloudtrail", "kms_key_id", values=["CKV_ANY"])
    assert plan(rec)[0] is None
    f = finding("CKV_AWS_35", "main.tf", (1, 4), "aws_cloudtrail.main")
    assert expectation_fix(f, code_context(f, source), source, rec) is None


def test_a_key_is_not_added_twice_and_an_identity_source_is_reused(tmp_path):
    (tmp_path / "main.tf").write_text(TERRAFORM)
    (tmp_path / "keys.tf").write_text('data "aws_caller_identity" "me" {}\n')
    rec = record("CKV_AWS_189", "terraform", "aws_ebs_volume", "kms_key_id", values=["CKV_ANY"])
    f = finding("CKV_AWS_189", "main.tf", (12, 16), "aws_ebs_volume.data")
    fix = expectation_fix(f, code_context(f, tmp_path), tmp_path, rec)
    assert "data.aws_caller_identity.me.account_id" in fix["code"] and 'data "aws_caller_identity"' not in fix["code"]
    (tmp_path / "keys.tf").write_text('resource "aws_kms_key" "data" {}\n')
    assert expectation_fix(f, code_context(f, tmp_path), tmp_path, rec) is None
    assert expectation_fix(f, code_context(f, tmp_path), None, rec) is None  # no root: existing keys unknown


def test_values_of_another_kind_and_expressions_are_left_alone(source):
    f = finding("CKV_X", "main.tf", (26, 32), "azurerm_mysql_firewall_rule.r")
    context = code_context(f, source)
    for key, expect in (("retention", {"values": [30]}),        # var.days: an expression
                        ("allowed_ips", {"values": [True]}),   # a list is not turned into true
                        ("allowed_ips", {"forbidden": ["10.0.0.0/8", "0.0.0.0/0"]})):  # nothing would be left
        rec = record("CKV_X", "terraform", "azurerm_mysql_firewall_rule", key, **expect)
        assert plan(rec)[0] is not None
        assert expectation_fix(f, context, source, rec) is None, key


def test_the_editors_refuse_what_is_not_mechanical():
    block = ['resource "x" "y" {', '  logging { enabled = false }', '  tags = { a = "b" }',
             '  dynamic "rule" {', "  }", "}"]
    for path in (("logging", "enabled"), ("tags", "a"), ("rule", "x")):
        with pytest.raises(Unfixable):
            hcl_change(block, 0, path, Change("set", True))
    with pytest.raises(Unfixable):  # the block is cut off in the lines shown
        hcl_change(block[:3], 0, ("a",), Change("set", True))
    doc = ["spec:", "  flow: {a: 1}", "  list:", "    - a: 1"]
    with pytest.raises(Unfixable):
        yaml_change(doc, 0, 3, ("spec", "flow", "a"), Change("set", 2))
    with pytest.raises(Unfixable):
        yaml_change(doc, 0, 3, ("spec", "list"), Change("drop", ["x"]))
    assert yaml_change(doc, 0, 3, ("spec", "new", "deep"), Change("set", "on")) == \
        doc + ["  new:", '    deep: "on"']  # a string that YAML would read as a boolean is quoted


def test_hand_written_rules_keep_precedence_and_the_fallback_needs_a_record(source, monkeypatch):
    f = finding("CKV_AWS_21", "main.tf", (18, 24), "aws_s3_bucket.b")
    context = code_context(f, source)
    fix, rule = fixrules.rule_fix(f, context, source)
    assert rule != EXPECTATION  # kb/fixes has a rule for CKV_AWS_21: its companion resource, not this
    rec = record("CKV_AWS_36", "terraform", "aws_cloudtrail", "enable_log_file_validation", values=[True])
    monkeypatch.setattr("secai.analysis.rules.rule_knowledge", lambda finding, semgrep_rules=None: rec)
    f = finding("CKV_AWS_36", "main.tf", (1, 4), "aws_cloudtrail.main")
    fix, rule = fixrules.rule_fix(f, code_context(f, source), source)
    assert rule == EXPECTATION and "enable_log_file_validation = true" in fix["code"]
    assert fix["language"] == "hcl" and "CKV_AWS_36" in fix["verification"]
    monkeypatch.setattr("secai.analysis.rules.rule_knowledge", lambda finding, semgrep_rules=None: None)
    assert fixrules.rule_fix(f, code_context(f, source), source) is None


def test_the_harvested_records_drive_the_fallback(source):
    from secai.analysis import rules

    records = rules.harvested("checkov")["records"]
    if not records:
        pytest.skip("no harvested checkov records (secai-kb harvest)")
    f = finding("CKV_AWS_17", "main.tf", (6, 10), "aws_db_instance.db")
    fix, rule = fixrules.rule_fix(f, code_context(f, source), source)
    assert rule == EXPECTATION and "publicly_accessible = false # for now" in fix["code"]
    planned = {}
    for r in records:
        known = rules.rule_knowledge({"tool": "checkov", "rule_id": r["id"], "tags": [r["framework"]]})
        planned[r["framework"]] = planned.get(r["framework"], 0) + (plan(known)[0] is not None)
    assert planned["terraform"] > 400 and planned["cloudformation"] > 50 and planned["kubernetes"] >= 4


def _checkov() -> Scanners:
    scanners = Scanners.find(ROOT / ".scanners" if (ROOT / ".scanners" / "bin").is_dir() else None)
    if "checkov" not in scanners.paths:
        pytest.skip("checkov not installed (run `make scanners`)")
    return scanners


def test_checkov_confirms_every_fix(made, source):
    scanners = _checkov()
    candidates = [Candidate(f"{n}", f, context, {"language": context["language"], **fix})
                  for n, (f, context, _, fix, _) in enumerate(made) if fix]
    verdicts = verify(candidates, source, scanners)
    wrong = {c.finding["rule_id"] + " " + c.finding["location"]["resource"]: verdicts[c.key].reason
             for c in candidates if verdicts[c.key].reason != VERIFIED}
    assert not wrong and len(candidates) == len(CASES)


def test_checkov_refuses_a_fix_of_the_wrong_attribute(source):
    """The gate is real: writing an attribute the check does not inspect leaves the finding."""
    scanners = _checkov()
    f = finding("CKV_AWS_36", "main.tf", (1, 4), "aws_cloudtrail.main")
    context = code_context(f, source)
    fix = expectation_fix(f, context, source, record("CKV_AWS_36", "terraform", "aws_cloudtrail",
                                                     "include_global_service_events", values=[True]))
    verdict = verify([Candidate("k", f, context, {"language": "hcl", **fix})], source, scanners)["k"]
    assert not verdict.verified and textwrap.shorten(verdict.reason, 40) == "finding still reported"
