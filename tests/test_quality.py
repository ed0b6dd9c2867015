"""The quality report (secai.dataset.quality): templates, verified fixes, private text and severity
claims, computed from what the pipeline wrote. The realscans yardstick runs in `make quality-realscans`."""

from __future__ import annotations

import orjson
from conftest import ROOT, run_command

from secai.commands.analyze import Analyze
from secai.commands.narrate import Narrate
from secai.dataset import quality


def analysis(tool: str, rule: str, remediation: str, path: str = "app.py", **finding) -> dict:
    f = {"id": f"{tool}-{rule}-{path}", "tool": tool, "rule_id": rule, "title": f"title of {rule}",
         "location": {"path": path, "start_line": 3}, **finding}
    return {"finding": f, "analysis": {"remediation": remediation, "risk": {"rationale": "x"}}}


def test_template_key_removes_what_is_the_findings_own():
    a = analysis("checkov", "CKV_AWS_1", "Set `enabled = true` on aws_s3_bucket.a in main.tf (line 12) for CKV_AWS_1.",
                 path="main.tf")
    b = analysis("checkov", "CKV_AWS_2", "Set `versioning = true` on aws_s3_bucket.b in infra/s3.tf (line 40) for CKV_AWS_2.",
                 path="infra/s3.tf")
    assert quality.template_key(a) == quality.template_key(b) == "Set Q on D in (line N) for ."
    c = analysis("bandit", "B602", "Pass the arguments as a list and drop shell=True.")
    assert quality.template_key(c) != quality.template_key(a)


def test_templates_are_advice_shared_by_three_rules():
    same = "Change the setting as the check recommends (usually one attribute or block)."
    analyses = [analysis("checkov", f"CKV_{i}", same, path=f"m{i}.tf") for i in range(3)]
    analyses.append(analysis("checkov", "CKV_9", "Set `kms_key_id` to a customer-managed key.", path="k.tf"))
    analyses += [analysis("bandit", "B1", "Use yaml.safe_load."), analysis("bandit", "B1", "Use yaml.safe_load.", path="b.py")]
    q = quality.figures(analyses, [], None)
    rows = {(r["tool"], r["language"]): r for r in q["by_tool_language"]}
    assert rows[("checkov", "hcl")]["template_share"] == 0.75 and rows[("checkov", "hcl")]["rules"] == 4
    assert rows[("bandit", "python")]["template_share"] == 0.0  # one rule twice is no template
    assert q["total"]["findings"] == 6 and q["total"]["rules"] == 5 and q["verification"] is False
    assert q["total"]["verified_fix_share"] is None  # without a verification report nothing is verified


def test_verified_fixes_come_from_the_verification_report():
    analyses = [analysis("bandit", "B602", "x"), analysis("bandit", "B105", "y")]
    verify = {"fixes": [{"finding_id": "bandit-B602-app.py", "verified": True},
                        {"finding_id": "bandit-B105-app.py", "verified": False}]}
    examples = [{"stage": "codefix", "metadata": {"finding_id": "bandit-B602-app.py"}, "messages": []}]
    total = quality.figures(analyses, examples, verify)["total"]
    assert total["verified_fix_share"] == 0.5 and total["fixes"] == 1


def test_private_text_counts_local_paths_and_real_addresses_only():
    prefixes = quality.local_prefixes()
    leaky = (f"source {ROOT}/examples/artifacts/bandit.json; seen in /home/alice/app/x.py and /Users/bob/y.py; "
             "mail alice@corp.io or ops@mail.acme-bank.de")
    assert quality.private_text(leaky, prefixes) == {"local_paths": 3, "emails": 2}
    harmless = ("download to /tmp/x.tgz, read /etc/passwd, run /usr/bin/python; user@example.com, "
                "admin@example.org, a@b.test; @app.route('/x'); res.redirect('/home/'); npm @types/node")
    assert quality.private_text(harmless, prefixes) == {"local_paths": 0, "emails": 0}


def test_a_rating_the_scanner_never_gave_is_an_unsupported_claim():
    rated = analysis("semgrep", "R", "x", tool_severity="ERROR")
    rated["analysis"]["risk"]["rationale"] = "semgrep rates it ERROR; worse when ..."
    claimed = analysis("checkov", "C", "x")
    claimed["analysis"]["risk"]["rationale"] = "checkov rates it medium; worse when ..."
    assert [quality.severity_claim_unsupported(a) for a in (rated, claimed)] == [False, True]


def test_the_shipped_examples(findings, tmp_path):
    """The report of the demo build: every finding counted once, per tool and language, and the kb
    analyses make no severity claim the scanner did not make."""
    rows = b"".join(orjson.dumps(f) + b"\n" for f in findings)
    code, analyses, err = run_command(Analyze, ["-q", "--no-cache", "--source-root", str(ROOT / "examples" / "demo-app")],
                                      stdin=rows)
    assert code == 0, err
    rows = b"".join(orjson.dumps(a) + b"\n" for a in analyses)
    code, examples, err = run_command(Narrate, ["--stage", "analysis", "-q"], stdin=rows)
    assert code == 0, err
    q = quality.figures(analyses, examples, None, quality.local_prefixes())
    assert q["total"]["findings"] == len(findings) == sum(r["findings"] for r in q["by_tool_language"])
    assert {r["tool"] for r in q["by_tool_language"]} == {f["tool"] for f in findings}
    assert q["total"]["unsupported_severity_claims"] == 0
    assert q["total"]["local_paths"] == 0 and q["total"]["emails"] == 0
    assert "quality of" in quality.render({"build": "demo", **q})
