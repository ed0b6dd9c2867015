"""Kubernetes platform rules (secai.analysis.platform) and their place in the fix verification: each
rule refuses what the API server, the kubelet or the runtime would (and accepts its neighbours);
a problem the original already had is never held against a fix; the kb's Kubernetes fix rules make
no fix that cannot work on a privileged container; no stage-2 example made from the shipped
examples holds a fix the platform would refuse or ignore."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
from conftest import ROOT, run_command
from test_verify import DEMO, SCANNERS, jsonl, need

from secai.analysis import fixrules, platform
from secai.analysis.platform import NO_EFFECT, REJECTED, introduced, problems
from secai.analysis.verify import NO_EFFECT as NO_EFFECT_REASON
from secai.analysis.verify import PLATFORM_REJECTED, Candidate, Scanners, place, summary, verify
from secai.commands.analyze import Analyze
from secai.commands.narrate import Narrate
from secai.commands.parse import Parse
from secai.dataset.examples import Skip, codefix_candidate

MANIFEST = DEMO / "k8s" / "deployment.yaml"


def pod(container_sc: str = "", pod_sc: str = "", kind: str = "Pod", extra: str = "") -> str:
    """A manifest of `kind` with one container; the securityContexts as YAML mapping bodies."""
    def block(body: str, indent: int) -> str:
        return textwrap.indent("securityContext:\n" + textwrap.indent(textwrap.dedent(body).strip(), "  "),
                               " " * indent) + "\n" if body.strip() else ""
    spec = block(pod_sc, 0) + "containers:\n  - name: app\n    image: app:1\n" + block(container_sc, 4) + extra
    if kind == "Pod":
        return "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\nspec:\n" + textwrap.indent(spec, "  ")
    if kind == "CronJob":
        return ("apiVersion: batch/v1\nkind: CronJob\nmetadata:\n  name: p\nspec:\n  schedule: '* * * * *'\n"
                "  jobTemplate:\n    spec:\n      template:\n        spec:\n" + textwrap.indent(spec, " " * 10))
    return (f"apiVersion: apps/v1\nkind: {kind}\nmetadata:\n  name: p\nspec:\n  template:\n    spec:\n"
            + textwrap.indent(spec, " " * 6))


def rules(text: str) -> set[tuple[str, str]]:
    return {(p.kind, p.rule) for p in problems(text)}


# ---------------------------------------------------------------- each rule: refused, and accepted

@pytest.mark.parametrize("container_sc,pod_sc,expected", [
    # the API server: allowPrivilegeEscalation false next to privileged true, or CAP_SYS_ADMIN added
    ("privileged: true\nallowPrivilegeEscalation: false", "", {(REJECTED, "no-escalation-privileged")}),
    ("privileged: false\nallowPrivilegeEscalation: false", "", set()),
    ("privileged: true\nallowPrivilegeEscalation: true", "", set()),
    ("allowPrivilegeEscalation: false\ncapabilities:\n  add: [CAP_SYS_ADMIN]", "",
     {(REJECTED, "no-escalation-sys-admin")}),
    ("allowPrivilegeEscalation: false\ncapabilities:\n  add: [NET_BIND_SERVICE]", "", set()),
    # the kubelet: runAsNonRoot with uid 0, in the container or merged from the pod
    ("runAsNonRoot: true\nrunAsUser: 0", "", {(REJECTED, "non-root-uid-0")}),
    ("runAsUser: 0", "runAsNonRoot: true", {(REJECTED, "non-root-uid-0")}),
    ("runAsNonRoot: true", "runAsUser: 0", {(REJECTED, "non-root-uid-0")}),
    ("runAsNonRoot: false\nrunAsUser: 0", "runAsNonRoot: true", set()),        # the container's own wins
    ("runAsUser: 10001", "runAsNonRoot: true\nrunAsUser: 0", set()),
    ("runAsNonRoot: true\nrunAsUser: 10001", "", set()),
    ("runAsUser: false", "runAsNonRoot: true", set()),                           # not a uid: not 0
    # the runtime ignores these on a privileged container
    ("privileged: true\ncapabilities:\n  drop: [ALL]", "", {(NO_EFFECT, "privileged-drop")}),
    ("privileged: false\ncapabilities:\n  drop: [ALL]", "", set()),
    ("privileged: true\ncapabilities:\n  drop: []", "", set()),
    ("privileged: true\nseccompProfile:\n  type: RuntimeDefault", "", {(NO_EFFECT, "privileged-seccomp")}),
    ("privileged: true\nseccompProfile:\n  type: Unconfined", "", set()),
    ("privileged: true", "seccompProfile:\n  type: RuntimeDefault", {(NO_EFFECT, "privileged-seccomp")}),
    ("privileged: false", "seccompProfile:\n  type: RuntimeDefault", set()),
    ("privileged: true\nreadOnlyRootFilesystem: true", "", {(NO_EFFECT, "privileged-read-only-root")}),
    ("privileged: true\nreadOnlyRootFilesystem: false", "", set()),
    ("readOnlyRootFilesystem: true\nrunAsUser: 10001", "", set()),
    ("privileged: yes\nallowPrivilegeEscalation: no", "", {(REJECTED, "no-escalation-privileged")}),  # YAML 1.1
])
def test_each_rule_refuses_what_the_platform_refuses(container_sc, pod_sc, expected):
    assert rules(pod(container_sc, pod_sc)) == expected


@pytest.mark.parametrize("kind", ["Pod", "Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "CronJob"])
def test_every_kind_with_a_pod_spec_is_checked(kind):
    assert rules(pod("privileged: true\nallowPrivilegeEscalation: false", kind=kind)) == {
        (REJECTED, "no-escalation-privileged")}


def test_init_and_ephemeral_containers_lists_and_every_document_are_checked():
    init = pod(extra="initContainers:\n  - name: init\n    image: busybox\n    securityContext:\n"
                     "      privileged: true\n      readOnlyRootFilesystem: true\n")
    assert {(p.where, p.rule) for p in problems(init)} == {("Pod p, init container init", "privileged-read-only-root")}
    ephemeral = pod(extra="ephemeralContainers:\n  - name: debug\n    image: busybox\n    securityContext:\n"
                          "      runAsNonRoot: true\n      runAsUser: 0\n")
    assert rules(ephemeral) == {(REJECTED, "non-root-uid-0")}
    two = pod() + "---\n" + pod("privileged: true\nallowPrivilegeEscalation: false", kind="Deployment")
    assert {p.where for p in problems(two)} == {"Deployment p, container app"}
    listed = {"apiVersion": "v1", "kind": "List", "items": [
        {"kind": "Pod", "metadata": {"name": "q"}, "spec": {"containers": [
            {"name": "c", "securityContext": {"privileged": True, "allowPrivilegeEscalation": False}}]}}]}
    assert rules(json.dumps(listed)) == {(REJECTED, "no-escalation-privileged")}  # JSON is read the same way


def test_a_pod_seccomp_profile_counts_as_ignored_only_when_every_inheritor_is_privileged():
    def two(first_sc: str, second_sc: str) -> str:
        return textwrap.dedent(f"""\
            apiVersion: v1
            kind: Pod
            metadata:
              name: p
            spec:
              securityContext:
                seccompProfile:
                  type: RuntimeDefault
              containers:
                - name: root
                  image: r:1
                  securityContext: {first_sc}
                - name: web
                  image: w:1
                  securityContext: {second_sc}
            """)
    assert rules(two("{privileged: true}", "{}")) == set()  # it still confines `web`
    assert rules(two("{privileged: true}", "{privileged: true}")) == {(NO_EFFECT, "privileged-seccomp")}
    # `web` has its own profile: only the privileged container inherits the pod's
    assert rules(two("{privileged: true}", "{seccompProfile: {type: Localhost, localhostProfile: p.json}}")) == {
        (NO_EFFECT, "privileged-seccomp")}


def test_what_is_not_a_manifest_has_no_problems():
    assert problems("on: push\njobs:\n  build:\n    runs-on: ubuntu-latest\n") == set()
    assert problems("{{ .Values.broken: [") == set()
    assert problems("kind: Deployment\nspec: 3\n") == set()
    assert problems(pod("privileged: true\nallowPrivilegeEscalation: false").replace("kind: Pod", "kind: Widget")) \
        == set()


def test_a_fix_is_held_only_to_the_problems_it_brings_in():
    original = pod("privileged: true\nseccompProfile:\n  type: RuntimeDefault\nallowPrivilegeEscalation: true")
    assert rules(original) == {(NO_EFFECT, "privileged-seccomp")}
    # a fix for something else keeps the old problem: not the fix's
    assert introduced(original, original.replace("image: app:1", "image: app:1.2.3")) == []
    # switching privileged mode off removes problems, brings none
    assert introduced(original, original.replace("privileged: true", "privileged: false")) == []
    # turning escalation off next to privileged brings a refusal, listed before the ignored setting
    indent = next(ln for ln in original.splitlines() if "allowPrivilegeEscalation" in ln).split("a")[0]
    fixed = original.replace("allowPrivilegeEscalation: true", "allowPrivilegeEscalation: false\n"
                             f"{indent}readOnlyRootFilesystem: true")
    assert [(p.kind, p.rule) for p in introduced(original, fixed)] == [
        (REJECTED, "no-escalation-privileged"), (NO_EFFECT, "privileged-read-only-root")]
    assert str(introduced(original, fixed)[0]).startswith("Pod p, container app: cannot set `allowPrivilegeEscalation`")


# ---------------------------------------------------------------- the verification gate

def demo_fix(code: str) -> Candidate:
    text = MANIFEST.read_text()
    lines = text.count("\n")
    finding = {"id": "f", "tool": "checkov", "rule_id": "CKV_K8S_20", "location": {"path": "k8s/deployment.yaml"}}
    context = {"path": "k8s/deployment.yaml", "language": "yaml", "start_line": 1, "end_line": lines,
               "code": text.rstrip("\n"), "finding_lines": [3, lines]}
    original = "            allowPrivilegeEscalation: true"
    return Candidate("k", finding, context, {"language": "yaml", "original": original, "code": code})


def test_verify_rejects_a_platform_problem_before_any_scanner_runs():
    assert "privileged: true" in MANIFEST.read_text()
    v = verify([demo_fix("            allowPrivilegeEscalation: false")], DEMO, Scanners({}))["k"]
    assert (v.verified, v.reason, v.scanner) == (False, PLATFORM_REJECTED, "checkov")
    assert "cannot set `allowPrivilegeEscalation` to false and `privileged` to true" in v.detail
    drop = "            allowPrivilegeEscalation: true\n            capabilities:\n              drop:\n                - ALL"
    v = verify([demo_fix(drop)], DEMO, Scanners({}))["k"]
    assert (v.reason, v.detail) == (NO_EFFECT_REASON, "Deployment demo-app, container demo-app: capabilities.drop "
                                                      "has no effect: a privileged container has every capability")
    # a fix without platform problems goes on to the scanner (here: none installed)
    assert verify([demo_fix("            allowPrivilegeEscalation: true\n            runAsNonRoot: false")],
                  DEMO, Scanners({}))["k"].reason == "scanner not installed"


def test_the_counts_are_per_tool_and_per_language():
    cands = [demo_fix("            allowPrivilegeEscalation: false")]
    counts = summary(cands, verify(cands, DEMO, Scanners({})))
    assert counts["by_tool"] == {"checkov": {"verified": 0, "total": 1}}
    assert counts["by_language"] == {"yaml": {"verified": 0, "total": 1}}
    assert counts["not_verified"] == {PLATFORM_REJECTED: 1}


# ---------------------------------------------------------------- the kb's rules and the shipped data

@pytest.fixture(scope="module")
def analyses():
    code, findings, err = run_command(Parse, ["-q", str(ROOT / "examples" / "artifacts")])
    assert code == 0, err
    code, out, err = run_command(Analyze, ["-q", "--source-root", str(DEMO), "--no-cache"], stdin=jsonl(findings))
    assert code == 0, err
    return out


def k8s(analyses, rule_id: str) -> dict:
    return next(r for r in analyses if r["finding"]["rule_id"] == rule_id and r["code_context"]["path"].endswith(
        "deployment.yaml"))


SETTINGS_A_PRIVILEGED_CONTAINER_CANNOT_USE = ("CKV_K8S_20", "CKV_K8S_22", "CKV_K8S_28", "CKV_K8S_31", "CKV_K8S_37",
                                             "CKV_K8S_29")


def test_the_privileged_findings_fix_is_the_only_fix_while_the_container_is_privileged(analyses):
    assert "fix" in k8s(analyses, "CKV_K8S_16")["analysis"]
    assert "privileged: false" in k8s(analyses, "CKV_K8S_16")["analysis"]["fix"]["code"]
    for rule_id in SETTINGS_A_PRIVILEGED_CONTAINER_CANNOT_USE:
        assert "fix" not in k8s(analyses, rule_id)["analysis"], rule_id
    # the analysis says why: the container is privileged, and that finding's fix comes first
    for rule_id in ("CKV_K8S_20", "CKV_K8S_22", "CKV_K8S_28", "CKV_K8S_31", "CKV_K8S_37"):
        analysis = k8s(analyses, rule_id)["analysis"]
        assert "runs privileged (securityContext.privileged: true)" in analysis["summary"], rule_id
        assert analysis["remediation"].startswith("Turn privileged mode off first"), rule_id
        assert "(CKV_K8S_16)" in analysis["remediation"] and "secai offers no fix" in analysis["remediation"]


def test_the_shipped_namespace_fix_creates_its_namespace_first(analyses):
    rec = k8s(analyses, "CKV_K8S_21")
    text = MANIFEST.read_text()
    fixed, _, _ = place(text, rec["code_context"], rec["analysis"]["fix"])
    assert "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: demo-app\n---\napiVersion: apps/v1\n" in fixed
    assert "metadata:\n  name: demo-app\n  namespace: demo-app\nspec:" in fixed
    assert introduced(text, fixed) == []
    # the same move without the Namespace object is one the API server refuses
    alone = text.replace("  name: demo-app\nspec:", "  name: demo-app\n  namespace: demo-app\nspec:")
    assert [p.rule for p in introduced(text, alone)] == ["namespace-not-created"]


def test_the_same_rules_fix_the_container_once_it_is_not_privileged(analyses):
    """The rules decline on privileged containers only: on the manifest with privileged mode off
    (the CKV_K8S_16 fix applied), each makes a fix the platform accepts."""
    for rule_id in SETTINGS_A_PRIVILEGED_CONTAINER_CANNOT_USE:
        rec = k8s(analyses, rule_id)
        context = {**rec["code_context"], "code": rec["code_context"]["code"].replace("privileged: true",
                                                                                      "privileged: false")}
        made = fixrules.rule_fix(rec["finding"], context, None)
        assert made, rule_id
        fix, rule = made
        text = MANIFEST.read_text().replace("privileged: true", "privileged: false")
        fixed, _, _ = place(text, context, fix)
        assert introduced(text, fixed) == [], (rule_id, rule)
    # the pod-level context: no runAsNonRoot next to a container running as uid 0 (the kubelet refuses it)
    rec = k8s(analyses, "CKV_K8S_29")
    context = {**rec["code_context"], "code": rec["code_context"]["code"].replace("privileged: true",
                                                                                  "privileged: false")}
    fix, rule = fixrules.rule_fix(rec["finding"], context, None)
    assert rule == "k8s-pod-security-context-seccomp" and "runAsNonRoot" not in fix["code"]
    context = {**context, "code": context["code"].replace("runAsUser: 0", "runAsUser: 10001")}
    fix, rule = fixrules.rule_fix(rec["finding"], context, None)
    assert rule == "k8s-pod-security-context" and "runAsNonRoot: true" in fix["code"]


def test_no_stage2_example_of_the_shipped_examples_holds_a_platform_problem(analyses):
    """Every fix a stage-2 example shows, placed in its file, brings in no platform problem."""
    checked = 0
    for rec in analyses:
        try:
            example, fix = codefix_candidate(rec)
        except Skip:
            continue
        if rec["code_context"]["language"] not in platform.LANGUAGES:
            continue
        text = (DEMO / rec["code_context"]["path"]).read_text()
        fixed, _, _ = place(text, rec["code_context"], fix)
        assert introduced(text, fixed) == [], (rec["finding"]["rule_id"], example["id"])
        checked += 1
    assert checked >= 10


def test_narrate_verify_fixes_keeps_no_platform_rejected_fix_in_the_shipped_stage2_data(analyses, tmp_path):
    """The Makefile's verified run (VERIFY_ARGS) on the shipped examples: every fix passes the whole
    gate, and what reaches codefix.jsonl is only what passed."""
    need("bandit", "checkov", "semgrep")
    report = tmp_path / "verify.json"
    code, out, err = run_command(Narrate, [
        "--stage", "codefix", "--verify-fixes", "--source-root", str(DEMO), "--verify-report", str(report),
        "--scanners-dir", str(Path(SCANNERS.paths["checkov"]).parent),
        "--semgrep-config", str(ROOT / "examples" / "semgrep-rules")], stdin=jsonl(analyses))
    assert code == 0, err
    data = json.loads(report.read_text())
    assert not {f["reason"] for f in data["fixes"]} & {PLATFORM_REJECTED, NO_EFFECT_REASON}, data["not_verified"]
    assert data["by_language"]["yaml"]["total"] >= 10 and set(data["by_language"]) >= {"python", "yaml", "hcl"}
    kept = {e["id"] for e in out}
    assert kept == {f["example_id"] for f in data["fixes"] if f["verified"]}
    assert all("language" in f for f in data["fixes"])
