"""The verification gate's "no new finding" half (secai.analysis.verify with secai.analysis.rescan):
the reporting scanner re-runs with its whole rule set for the file, on the fixed copy and on one
unmodified copy of each source file in the same run, and a fix whose file has a finding (rule id,
counted) that the unmodified file does not have is rejected as NEW_FINDING, naming the rule.

Real scanners (Bandit, Checkov, Semgrep): each test skips with the reason when its scanner is not
installed (verify.scanners_dir, .scanners/ from `make scanners`, or PATH). The sources are written
here, so nothing depends on the shipped examples' fixes."""

from __future__ import annotations

from pathlib import Path

from conftest import ROOT
from test_verify import SCANNERS, need

from secai.analysis import rescan
from secai.analysis.verify import (FAILED, NEW_FINDING, VERIFIED, Candidate, Scanners, describe,
                                   summary, verify)

PYTHON = """\
import subprocess

import yaml


def ping(host):
    return subprocess.check_output("ping -c 1 " + host, shell=True)


def settings(text):
    return yaml.load(text)
"""

POD = """\
apiVersion: v1
kind: Pod
metadata:
  name: web
  namespace: shop
spec:
  containers:
    - name: web
      image: nginx:1.25.3
"""


def candidate(key: str, tool: str, rule_id: str, path: str, language: str, source: str, original: str, code: str,
              **finding) -> Candidate:
    """A fix of the finding at `original` (its first line in `source`), read from the whole file."""
    line = source.split("\n").index(original.split("\n")[0]) + 1
    end = source.rstrip("\n").count("\n") + 1
    context = {"path": path, "language": language, "start_line": 1, "end_line": end, "code": source.rstrip("\n"),
               "finding_lines": [line, line + original.count("\n")]}
    location = {"path": path, "start_line": line, "end_line": line + original.count("\n")}
    return Candidate(key, {"id": key, "tool": tool, "rule_id": rule_id, "location": location, **finding}, context,
                     {"language": language, "original": original, "code": code})


def counting_runs(monkeypatch) -> list[list[str]]:
    """Every scanner command verify starts, in order (each still runs)."""
    started: list[list[str]] = []
    real = rescan.run_scanner

    def run(argv, cwd, timeout):
        started.append(argv)
        return real(argv, cwd, timeout)

    monkeypatch.setattr(rescan, "run_scanner", run)
    return started


def test_a_bandit_fix_that_trades_b602_for_b603_is_rejected_and_a_clean_one_verifies(tmp_path, monkeypatch):
    need("bandit")
    (tmp_path / "svc").mkdir()
    (tmp_path / "svc" / "tools.py").write_text(PYTHON)
    shell = '    return subprocess.check_output("ping -c 1 " + host, shell=True)'
    traded = candidate("b602", "bandit", "B602", "svc/tools.py", "python", PYTHON, shell,
                       '    return subprocess.check_output(["/usr/bin/ping", "-c", "1", host])')
    clean = candidate("b506", "bandit", "B506", "svc/tools.py", "python", PYTHON, "    return yaml.load(text)",
                      "    return yaml.safe_load(text)")
    started = counting_runs(monkeypatch)
    v = verify([traded, clean], tmp_path, Scanners({"bandit": SCANNERS.paths["bandit"]}))
    # B602 is gone from the fixed lines, but the argument list is B603's case: a finding the file did not have
    assert v["b602"] == v["b602"].__class__(False, NEW_FINDING, "bandit", "B603 (+1)")
    # B404 (the import) and B602 stay in that copy, as in the unmodified file: nothing new
    assert v["b506"].verified and v["b506"].reason == VERIFIED
    assert len([argv for argv in started if "-r" in argv]) == 1  # one run for both (and one --help)
    counts = summary([traded, clean], v)
    assert counts["not_verified"] == {NEW_FINDING: 1}
    assert counts["not_verified_by_tool"] == {"bandit": {NEW_FINDING: 1}}
    assert counts["not_verified_by_language"] == {"python": {NEW_FINDING: 1}}
    assert describe(counts).endswith("not verified: 1 fix adds a new finding")


def test_a_checkov_kubernetes_fix_that_trips_another_check_is_rejected(tmp_path, monkeypatch):
    need("checkov")
    (tmp_path / "k8s").mkdir()
    (tmp_path / "k8s" / "web.yaml").write_text(POD)
    image = "      image: nginx:1.25.3"
    tags = {"tags": ["kubernetes"]}
    good = candidate("rofs", "checkov", "CKV_K8S_22", "k8s/web.yaml", "yaml", POD, image,
                     image + "\n      securityContext:\n        readOnlyRootFilesystem: true", **tags)
    bad = candidate("rofs-sysadmin", "checkov", "CKV_K8S_22", "k8s/web.yaml", "yaml", POD, image,
                    image + "\n      securityContext:\n        readOnlyRootFilesystem: true\n"
                            "        capabilities:\n          add: [SYS_ADMIN]", **tags)
    started = counting_runs(monkeypatch)
    v = verify([good, bad], tmp_path, Scanners({"checkov": SCANNERS.paths["checkov"]}))
    assert v["rofs"].verified, v["rofs"]
    added = "CKV_K8S_25 (+1), CKV_K8S_39 (+1)"  # an added capability; SYS_ADMIN itself
    assert (v["rofs-sysadmin"].reason, v["rofs-sysadmin"].detail) == (NEW_FINDING, added)
    assert len(started) == 1 and "--check" not in started[0]  # every check, one run
    assert started[0][started[0].index("--framework") + 1] == "kubernetes"


def test_a_semgrep_fix_is_checked_against_the_whole_config(tmp_path):
    need("semgrep")
    (tmp_path / "tools.py").write_text(PYTHON)
    rules = ROOT / "examples" / "semgrep-rules"
    load = "    return yaml.load(text)"
    rule = "semgrep-rules.yaml-load-unsafe"
    safe = candidate("safe", "semgrep", rule, "tools.py", "python", PYTHON, load, "    return yaml.safe_load(text)")
    pickled = candidate("pickled", "semgrep", rule, "tools.py", "python", PYTHON, load,
                        "    import pickle\n    return pickle.loads(text)")
    v = verify([safe, pickled], tmp_path, Scanners({"semgrep": SCANNERS.paths["semgrep"]}, (str(rules),)))
    assert v["safe"].verified, v["safe"]
    # the rule id as the report names it (the config folder's own name first), no local path
    assert (v["pickled"].reason, v["pickled"].detail) == (NEW_FINDING, "semgrep-rules.pickle-loads-untrusted (+1)")


def test_a_scanner_that_gives_no_report_fails_every_fix_it_was_to_check(tmp_path):
    fake = tmp_path / "bin" / "bandit"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\nexit 0\n")  # knows no test, prints no report
    fake.chmod(0o755)
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "tools.py").write_text(PYTHON)
    clean = candidate("b506", "bandit", "B506", "tools.py", "python", PYTHON, "    return yaml.load(text)",
                      "    return yaml.safe_load(text)")
    v = verify([clean], tmp_path / "src", Scanners({"bandit": str(fake)}))
    assert not v["b506"].verified and v["b506"].reason == f"{FAILED}: no JSON in the scanner's output"


def test_semgrep_rule_ids_lose_the_config_folders_location(tmp_path):
    configs = [str(tmp_path / "cfg" / "semgrep-rules")]
    where = ".".join(Path(configs[0]).resolve().parent.parts[1:])
    assert rescan._unplaced(f"{where}.semgrep-rules.python.x", configs) == "semgrep-rules.python.x"
    assert rescan._unplaced("other.rule", configs) == "other.rule"
    assert rescan.own_id("semgrep-rules.python.lang.x") == "x"


def test_the_judgement_of_one_copy_against_its_baseline():
    """secai.analysis.verify._judge over a made-up scan: read or not, the rule on the fixed lines or
    resource, an unread baseline, and findings counted per rule id wherever they moved."""
    from secai.analysis.verify import NO_BASELINE, NOT_CHECKED, STILL_REPORTED, _judge, _Job

    def job(rule_id: str, resource: str | None = None) -> _Job:
        return _Job("k", 1, "", Path("x"), "a.yaml", "", (5, 8), rule_id, resource, None, "1/a.yaml")

    hit = rescan.Hit
    scan = rescan.Scan({"1/a.yaml", "b0/a.yaml"}, {
        "1/a.yaml": [hit("CKV_1", (1, 2)), hit("CKV_2", (20, 30), "Pod.web")],
        "b0/a.yaml": [hit("CKV_1", (9, 9)), hit("CKV_2", (3, 9), "Pod.web")]})
    assert _judge("checkov", job("CKV_1"), scan, "b0/a.yaml").reason == VERIFIED  # moved from line 9 to 1: the same one
    assert _judge("checkov", job("CKV_2", "Pod.web"), scan, "b0/a.yaml").reason == STILL_REPORTED  # on its resource
    assert _judge("checkov", job("CKV_3", "Pod.x"), scan, "b1/a.yaml").reason == NO_BASELINE
    assert _judge("checkov", job("CKV_3"), rescan.Scan({"b0/a.yaml"}), "b0/a.yaml").reason == NOT_CHECKED
    scan.hits["1/a.yaml"][1] = hit("CKV_2", (40, 41), "Pod.db")  # one CKV_2 as in the baseline: counts, not places
    assert _judge("checkov", job("CKV_2", "Pod.web"), scan, "b0/a.yaml").reason == VERIFIED
    scan.hits["1/a.yaml"] += [hit("CKV_2", (50, 51), "Pod.cache"), hit("CKV_4", (50, 51), "Pod.cache")]
    verdict = _judge("checkov", job("CKV_2", "Pod.web"), scan, "b0/a.yaml")
    assert (verdict.verified, verdict.reason, verdict.detail) == (False, NEW_FINDING, "CKV_2 (+1), CKV_4 (+1)")
    semgrep = rescan.Scan({"1/a.yaml", "b0/a.yaml"}, {"1/a.yaml": [hit("rules.python.x", (6, 6))]})
    assert _judge("semgrep", job("semgrep-rules.python.x"), semgrep, "b0/a.yaml").reason == STILL_REPORTED
