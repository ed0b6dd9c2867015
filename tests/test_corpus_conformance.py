"""Conformance over ../shared/corpus (real scanner reports with DefectDojo's reference counts).

Each file must parse (or fail with one clear line where the manifest says `error`), and its count
must equal `expected_findings` or differ by one of secai's named rules below. Skipped cleanly when
the corpus is absent. `python tests/test_corpus_conformance.py` prints the table per tool.
"""

from __future__ import annotations

import csv
import sys
from collections import defaultdict
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from conftest import CORPUS, run_command  # noqa: E402

from secai.parsing import formats as parsers  # noqa: E402
from secai.records import schema_error  # noqa: E402
from secai.commands.parse import Parse  # noqa: E402
from secai.parsing.reports import Unit, load  # noqa: E402

# corpus tool -> the formats its files must be detected as
FORMATS_OF = {
    "sarif": {"sarif"}, "trivy": {"trivy-json"}, "checkov": {"checkov-json"}, "semgrep": {"semgrep-json"},
    "osv_scanner": {"osv-scanner-json"}, "gitleaks": {"gitleaks-json"}, "zap": {"zap-xml", "zap-json"},
    "anchore_grype": {"grype-json"}, "dockle": {"dockle-json"}, "hadolint": {"hadolint-json"},
    "bandit": {"bandit-json"}, "tfsec": {"tfsec-json"}, "kics": {"kics-json"}, "snyk": {"snyk-json"},
    "trufflehog": {"trufflehog-v2-jsonl", "trufflehog-v3-jsonl"}, "trufflehog3": {"trufflehog3-json"},
    "dependency_check": {"dependency-check-xml", "dependency-check-json"},
    "npm_audit": {"npm-audit-json"}, "npm_audit_7_plus": {"npm-audit-v7-json"},
}
TOOLS = set(FORMATS_OF)

# secai's rules that make a count differ from DefectDojo's
SAME_PLACE = ("fingerprint dedup: results of one tool and rule at the same path, line and column "
              "(or the same package and version at the same path) are one finding; the repeats "
              "are counted in `occurrences`")
COLUMNS = ("the start column is part of the id (above column 1): two results of one rule on one "
           "line at different columns are two findings")
ZAP_CONFIDENCE_SPLIT = ("fingerprint dedup: one ZAP alert on one site is one finding; ZAP lists an alert "
                        "twice for a site when its instances differ in confidence, and their instances are joined")
SECRET_ACROSS_COMMITS = ("fingerprint dedup: one secret at one place found in several commits of a "
                         "history scan is one finding (commit is not part of the id)")

SNYK_PATHS = ("fingerprint dedup: one vulnerability of one package version in one manifest or image is one "
              "finding; Snyk's per-dependency-path entries (and in container reports its per-binary-package "
              "entries of one source package) are counted in `occurrences`")
SNYK_APPLICATIONS = ("Snyk Container's `applications` (language packages found in the image) are read as sca "
                     "findings too; the reference counts only the image's OS packages")

NPM6_PER_VERSION = ("npm audit 6: one finding per advisory per installed version (findings[].version), as the "
                    "fix differs per version; DefectDojo counts one per advisory")
NPM7_TRANSITIVE = ("npm audit 7+: a `vulnerabilities` entry whose `via` names only other packages is a transitive "
                   "effect of a vulnerable dependency that has its own finding, not a finding itself")
NPM7_PER_ADVISORY = "npm audit 7+: one finding per advisory in `via`; DefectDojo counts one per `vulnerabilities` key"

# file -> (secai's count, rule)
DIFFERENCES = {
    "sarif/bash-report.sarif": (12, SAME_PLACE),
    "sarif/gitleaks_7.5.0.sarif": (4, SECRET_ACROSS_COMMITS),
    "gitleaks/gitleaks8_many.json": (4, COLUMNS),
    "semgrep/sca-deployments-vulns.json": (8, SAME_PLACE),
    "zap/dvwa_baseline_dojo.xml": (18, ZAP_CONFIDENCE_SPLIT),
    "bandit/many_vulns.json": (213, SAME_PLACE),
    "bandit/dd2.json": (164, SAME_PLACE),
    "kics/many_findings.json": (15, SAME_PLACE),
    "snyk/all_containers_target_output.json": (17, SNYK_PATHS),
    "snyk/all_projects_issue4277.json": (50, SNYK_PATHS),
    "snyk/snykcontainer_issue_epss.json": (13, SNYK_APPLICATIONS),
    "npm_audit/multiple_cwes.json": (44, NPM6_PER_VERSION),
    "npm_audit/multiple_cwes2.json": (7, NPM6_PER_VERSION),
    "npm_audit_7_plus/many_vulns.json": (3, NPM7_TRANSITIVE),
    "npm_audit_7_plus/one_vuln.json": (2, NPM7_PER_ADVISORY),
}


def manifest():
    if not CORPUS.is_dir():
        return []
    with open(CORPUS / "MANIFEST.tsv", newline="") as fh:
        return [row for row in csv.DictReader(fh, delimiter="\t") if row["tool"] in TOOLS]


ROWS = manifest()


def detected_as(path: Path) -> set[str]:
    """The format a report is detected as, also when it holds no finding (none for an empty document)."""
    syntax, doc = load(Unit(str(path), path.read_bytes(), True))
    if doc in (None, [], {}):
        return set()
    fmt, _ = parsers.detect(doc, syntax)
    return {fmt.name if fmt else "nothing"}


def check(row) -> tuple[str, int | None, str]:
    """(verdict, count, detail) for one manifest row: verdict is match, rule, error-ok or FAIL."""
    path = CORPUS / row["file"]
    code, records, err = run_command(Parse, ["-q", str(path)])
    expected = row["expected_findings"]
    if "Traceback" in err:
        return "FAIL", None, "traceback"
    if expected == "error":
        ok = code == 1 and len(err.strip().splitlines()) == 1 and str(path) in err
        return ("error-ok" if ok else "FAIL"), None, err.strip()
    if code != 0:
        return "FAIL", None, err.strip()
    bad = [schema_error("finding/1", r) for r in records if schema_error("finding/1", r)]
    if bad:
        return "FAIL", len(records), bad[0]
    n = len(records)
    wrong = ({r["source"]["format"] for r in records} | detected_as(path)) - FORMATS_OF[row["tool"]]
    if wrong:
        return "FAIL", n, f"detected as {', '.join(sorted(wrong))}"
    if expected == "unknown":
        return "match", n, "no reference count"
    if expected.startswith(">"):
        return ("match" if n > int(expected[1:]) else "FAIL"), n, expected
    if n == int(expected):
        return "match", n, ""
    if DIFFERENCES.get(row["file"], (None,))[0] == n:
        return "rule", n, DIFFERENCES[row["file"]][1]
    return "FAIL", n, f"expected {expected}"


@pytest.mark.parametrize("row", ROWS, ids=[r["file"] for r in ROWS])
def test_corpus_file(row):
    verdict, count, detail = check(row)
    assert verdict != "FAIL", f"{row['file']}: got {count}: {detail}"


def test_corpus_present_or_skipped(corpus):
    assert ROWS, "the manifest lists no file for this issue's tools"


if __name__ == "__main__":
    per_tool = defaultdict(lambda: defaultdict(int))
    for row in ROWS:
        verdict, count, detail = check(row)
        per_tool[row["tool"]][verdict] += 1
        if verdict != "match":
            print(f"{verdict:8} {row['file']}: {count} (reference {row['expected_findings']}) {detail[:100]}")
    print(f"\n{'tool':<14}{'files':>6}{'match':>7}{'rule':>6}{'error-ok':>9}{'FAIL':>6}")
    for tool, v in sorted(per_tool.items()):
        print(f"{tool:<14}{sum(v.values()):>6}{v['match']:>7}{v['rule']:>6}{v['error-ok']:>9}{v['FAIL']:>6}")
