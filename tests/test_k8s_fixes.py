"""The kb's Kubernetes fix rules (lib/secai/analysis/kb/fixes/40_kubernetes.yaml) on manifests of
their own: each rule's exact fixed YAML (the `set` edit of secai.analysis.yamlset: every container,
a missing securityContext added, list members kept), the cases it must refuse (a privileged
container, host paths, objects that must move between namespaces together, several ports), the
namespace rules of the platform gate (secai.analysis.platform), and fixrules.rule_fix dropping a
fix that the gate refuses. With checkov installed, every fix made here is confirmed by checkov."""

from __future__ import annotations

import textwrap

import pytest
from test_verify import SCANNERS, need

from secai.analysis import fixrules
from secai.analysis.context import code_context
from secai.analysis.platform import NO_EFFECT, REJECTED, introduced, problems
from secai.analysis.verify import VERIFIED, Candidate, place, verify

DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: shop
spec:
  selector:
    matchLabels:
      app: shop
  template:
    metadata:
      labels:
        app: shop
    spec:
      containers:
      - name: web
        image: shop/web:1.2
        ports:
        - containerPort: 80
        securityContext:
          allowPrivilegeEscalation: true
          capabilities:
            drop: [CHOWN]
      - name: worker
        image: shop/worker:1.2
        env:
        - name: MODE
          value: batch
"""


def made(tmp_path, text: str, rule_id: str, name: str = "app.yaml", start: int = 1, end: int | None = None):
    """(finding, context, fix, rule) of the kb's rules for a checkov finding on the object at
    lines start..end of `text` (the whole file by default)."""
    (tmp_path / name).write_text(text)
    finding = {"id": f"{rule_id}-{start}", "tool": "checkov", "rule_id": rule_id, "cwe": [],
               "location": {"path": name, "start_line": start, "end_line": end or text.count("\n")}}
    context = code_context(finding, tmp_path)
    result = fixrules.rule_fix(finding, context, tmp_path)
    return finding, context, *(result or (None, None))


def fixed_file(tmp_path, text, context, fix) -> str:
    return place(text, context, fix)[0]


# ---------------------------------------------------------------- the settings of every container

def test_every_container_gets_the_setting_and_a_securitycontext_where_it_has_none(tmp_path):
    _, context, fix, rule = made(tmp_path, DEPLOYMENT, "CKV_K8S_20")
    assert rule == "k8s-no-privilege-escalation"
    assert fixed_file(tmp_path, DEPLOYMENT, context, fix) == DEPLOYMENT.replace(
        "allowPrivilegeEscalation: true", "allowPrivilegeEscalation: false").replace(
        "          value: batch\n", "          value: batch\n        securityContext:\n"
                                   "          allowPrivilegeEscalation: false\n")


def test_a_capability_list_keeps_its_members(tmp_path):
    _, context, fix, _ = made(tmp_path, DEPLOYMENT, "CKV_K8S_28")
    text = fixed_file(tmp_path, DEPLOYMENT, context, fix)
    assert "drop: [CHOWN, NET_RAW]" in text and text.endswith(
        "        securityContext:\n          capabilities:\n            drop: [NET_RAW]\n")
    high = DEPLOYMENT.replace("containerPort: 80", "containerPort: 8080")
    _, context, fix, _ = made(tmp_path, high, "CKV_K8S_37")
    text = fixed_file(tmp_path, high, context, fix)
    assert "          capabilities:\n            drop: [CHOWN, ALL]\n      - name: worker" in text
    assert text.endswith("        securityContext:\n          capabilities:\n            drop: [ALL]\n")
    block = DEPLOYMENT.replace("drop: [CHOWN]", "drop:\n            - CHOWN")
    _, context, fix, _ = made(tmp_path, block, "CKV_K8S_28")
    assert "            drop:\n            - CHOWN\n            - NET_RAW\n" in fixed_file(tmp_path, block, context, fix)


def test_a_port_below_1024_keeps_the_capability_that_binds_it(tmp_path):
    """Dropping ALL would stop it binding port 80; adding NET_BIND_SERVICE back is a finding of its own."""
    assert made(tmp_path, DEPLOYMENT, "CKV_K8S_37")[2] is None


def test_the_user_is_raised_to_a_high_uid_unless_it_is_one(tmp_path):
    text = DEPLOYMENT.replace("allowPrivilegeEscalation: true", "runAsUser: 0").replace(
        "        env:", "        securityContext:\n          runAsUser: 20000  # the image's own user\n        env:")
    _, context, fix, rule = made(tmp_path, text, "CKV_K8S_40")
    assert rule == "k8s-run-as-high-uid"
    out = fixed_file(tmp_path, text, context, fix)
    assert "          runAsUser: 10001\n          capabilities:\n            drop: [CHOWN]\n" \
           "          runAsNonRoot: true\n" in out
    assert "          runAsUser: 20000  # the image's own user\n          runAsNonRoot: true\n" in out
    assert introduced(text, out) == []


def test_read_only_root_and_the_pod_seccomp_profile(tmp_path):
    _, context, fix, _ = made(tmp_path, DEPLOYMENT, "CKV_K8S_22")
    assert fixed_file(tmp_path, DEPLOYMENT, context, fix).count("readOnlyRootFilesystem: true") == 2
    assert "emptyDir" in fix["explanation"]
    _, context, fix, rule = made(tmp_path, DEPLOYMENT, "CKV_K8S_31")
    assert rule == "k8s-seccomp-runtime-default"
    assert fixed_file(tmp_path, DEPLOYMENT, context, fix) == DEPLOYMENT + (
        "      securityContext:\n        seccompProfile:\n          type: RuntimeDefault\n")


def test_an_object_that_ends_at_the_next_documents_marker_is_fixed(tmp_path):
    """Checkov's range of an object runs to the next document's `---` line."""
    text = DEPLOYMENT + "---\napiVersion: v1\nkind: Service\nmetadata:\n  name: shop\nspec:\n  selector:\n" \
                        "    app: shop\n  ports:\n  - port: 80\n"
    n = DEPLOYMENT.count("\n") + 1
    _, context, fix, rule = made(tmp_path, text, "CKV_K8S_30", end=n)
    assert context["enclosing"] == {"kind": "Deployment", "name": "shop", "start_line": 1, "end_line": n - 1}
    assert rule == "k8s-no-privilege-escalation"


# ---------------------------------------------------------------- what gets no fix

PRIVILEGED = DEPLOYMENT.replace("allowPrivilegeEscalation: true", "privileged: true")


@pytest.mark.parametrize("rule_id", ["CKV_K8S_20", "CKV_K8S_22", "CKV_K8S_28", "CKV_K8S_37", "CKV_K8S_31"])
def test_no_fix_that_a_privileged_container_cannot_use(tmp_path, rule_id):
    assert made(tmp_path, PRIVILEGED, rule_id)[2] is None
    # the same fix made anyway is refused or ignored by the platform
    text = PRIVILEGED.replace("          privileged: true\n", "          privileged: true\n"
                              "          allowPrivilegeEscalation: false\n          readOnlyRootFilesystem: true\n")
    assert {(p.kind, p.rule) for p in introduced(PRIVILEGED, text)} == {
        (REJECTED, "no-escalation-privileged"), (NO_EFFECT, "privileged-read-only-root")}


def test_a_pod_that_mounts_host_paths_keeps_its_user_and_capabilities(tmp_path):
    text = DEPLOYMENT.replace("      containers:\n", "      volumes:\n      - name: host\n        hostPath:\n"
                                                    "          path: /etc\n      containers:\n")
    for rule_id in ("CKV_K8S_23", "CKV_K8S_40", "CKV_K8S_37"):
        assert made(tmp_path, text, rule_id)[2] is None, rule_id
    assert made(tmp_path, text, "CKV_K8S_28")[3] == "k8s-drop-net-raw"


def test_a_pod_with_a_service_account_of_its_own_keeps_its_token(tmp_path):
    own = DEPLOYMENT.replace("      containers:\n", "      serviceAccountName: shop-api\n      containers:\n")
    assert made(tmp_path, own, "CKV_K8S_38")[2] is None
    _, context, fix, rule = made(tmp_path, own.replace("shop-api", "default"), "CKV_K8S_38")
    assert rule == "k8s-no-service-account-token" and "automountServiceAccountToken: false" in fix["code"]


def test_a_flow_mapping_in_the_way_is_no_mechanical_edit(tmp_path):
    text = DEPLOYMENT.replace("        env:", "        securityContext: {runAsUser: 1000}\n        env:")
    assert made(tmp_path, text, "CKV_K8S_22")[2] is None


def test_a_fix_the_platform_refuses_is_dropped_whatever_the_rule(tmp_path):
    """CAP_SYS_ADMIN with allowPrivilegeEscalation false is refused by the API server."""
    text = DEPLOYMENT.replace("drop: [CHOWN]", "add: [CAP_SYS_ADMIN]")
    assert made(tmp_path, text, "CKV_K8S_20")[2] is None


# ---------------------------------------------------------------- namespaces

JOB = """\
apiVersion: batch/v1
kind: Job
metadata:
  name: report
spec:
  template:
    spec:
      containers:
      - name: report
        image: tools/report:3
      restartPolicy: Never
"""
SERVICE = "apiVersion: v1\nkind: Service\nmetadata:\n  name: shop\nspec:\n  selector:\n    app: shop\n  ports:\n" \
          "  - port: 80\n"


def test_a_lone_workload_moves_into_a_namespace_created_before_it(tmp_path):
    _, context, fix, rule = made(tmp_path, JOB, "CKV_K8S_21")
    assert rule == "k8s-namespace"
    out = fixed_file(tmp_path, JOB, context, fix)
    assert out == "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: report\n---\n" + JOB.replace(
        "  name: report\nspec:", "  name: report\n  namespace: report\nspec:")
    assert introduced(JOB, out) == []
    # without the Namespace object the API server refuses the moved Job
    alone = JOB.replace("  name: report\nspec:", "  name: report\n  namespace: report\nspec:")
    assert [(p.kind, p.rule, p.where) for p in introduced(JOB, alone)] == [
        (REJECTED, "namespace-not-created", "namespace report")]


def test_objects_that_belong_together_are_not_split(tmp_path):
    pair = DEPLOYMENT + "---\n" + SERVICE
    n = DEPLOYMENT.count("\n")
    assert made(tmp_path, pair, "CKV_K8S_21", end=n)[2] is None        # the Service would lose its pods
    assert made(tmp_path, pair, "CKV_K8S_21", start=n + 2)[2] is None  # a Service never moves alone
    secret = DEPLOYMENT.replace("          value: batch\n", "          valueFrom:\n            secretKeyRef:\n"
                                "              name: db\n              key: password\n")
    assert made(tmp_path, secret, "CKV_K8S_21")[2] is None            # its Secret stays in default


def test_the_namespace_rules_of_the_gate():
    pair = DEPLOYMENT + "---\n" + SERVICE
    moved = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: shop\n---\n" + pair.replace(
        "  name: shop\nspec:\n  selector:\n    matchLabels", "  name: shop\n  namespace: shop\nspec:\n  selector:\n"
                                                          "    matchLabels", 1)
    assert [(p.kind, p.rule, p.where) for p in introduced(pair, moved)] == [
        (NO_EFFECT, "selects-other-namespace", "Service shop")]
    both = moved.replace("kind: Service\nmetadata:\n  name: shop\n", "kind: Service\nmetadata:\n  name: shop\n"
                                                                    "  namespace: shop\n")
    assert introduced(pair, both) == []
    policy = pair + "---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  name: p\n" \
                    "  namespace: other\nspec:\n  podSelector:\n    matchLabels:\n      app: shop\n"
    assert {(p.rule, p.where) for p in problems(policy)} == {
        ("selects-other-namespace", "NetworkPolicy p"), ("namespace-not-created", "namespace other")}
    uses = DEPLOYMENT.replace("          value: batch\n", "          valueFrom:\n            configMapKeyRef:\n"
                              "              name: cfg\n              key: mode\n")
    cfg = "---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cfg\n  namespace: kube-system\n"
    assert {(p.kind, p.rule) for p in problems(uses + cfg)} == {(REJECTED, "reference-namespace")}
    assert problems(uses + cfg.replace("  namespace: kube-system\n", "")) == set()
    # a namespace the original already used without creating it is not held against a fix
    used = JOB.replace("  name: report\nspec:", "  name: report\n  namespace: tools\nspec:")
    assert introduced(used, used.replace("image: tools/report:3", "image: tools/report:3.1")) == []


def test_a_network_policy_goes_into_its_pods_namespace_and_admits_their_one_port(tmp_path):
    text = textwrap.dedent("""\
        apiVersion: apps/v1
        kind: Deployment
        metadata:
          name: cache
          namespace: data
        spec:
          selector:
            matchLabels:
              app: cache
          template:
            metadata:
              labels:
                app: cache
            spec:
              containers:
              - name: redis
                image: redis:7
                ports:
                - containerPort: 6379
        """)
    _, context, fix, rule = made(tmp_path, text, "CKV2_K8S_6")
    assert rule == "k8s-network-policy-namespaced"
    assert fix["code"].endswith("kind: NetworkPolicy\nmetadata:\n  name: cache\n  namespace: data\nspec:\n"
                                "  podSelector:\n    matchLabels:\n      app: cache\n  policyTypes:\n"
                                "    - Ingress\n  ingress:\n    - ports:\n        - port: 6379\n"
                                "          protocol: TCP")
    two = text.replace("        - containerPort: 6379\n", "        - containerPort: 6379\n"
                       "      - name: exporter\n        image: redis-exporter:1\n        ports:\n"
                       "        - containerPort: 9121\n")
    assert made(tmp_path, two, "CKV2_K8S_6")[2] is None  # a policy for one port would cut off the other


# ---------------------------------------------------------------- probes: each container on its own port

WEB = DEPLOYMENT.split("      - name: worker")[0]  # one container, one port
PAIR = DEPLOYMENT.replace("        env:\n", "        ports:\n        - containerPort: 9000\n        env:\n")


def probe(kind: str, port: int, indent: str = "        ", period: int = 10) -> str:
    return (f"{indent}{kind}Probe:\n{indent}  tcpSocket:\n{indent}    port: {port}\n"
            f"{indent}  periodSeconds: {period}\n")


def test_a_lone_container_gets_a_probe_on_its_port_below_its_image(tmp_path):
    _, context, fix, rule = made(tmp_path, WEB, "CKV_K8S_8")
    assert rule == "k8s-liveness-probe"
    assert fixed_file(tmp_path, WEB, context, fix) == WEB.replace(
        "image: shop/web:1.2\n", "image: shop/web:1.2\n" + probe("liveness", 80))
    assert "own port (80)" in fix["explanation"]


def test_each_container_gets_a_probe_on_its_own_port(tmp_path):
    _, context, fix, rule = made(tmp_path, PAIR, "CKV_K8S_9")
    assert rule == "k8s-readiness-probe"
    assert fixed_file(tmp_path, PAIR, context, fix) == PAIR.replace(
        "image: shop/web:1.2\n", "image: shop/web:1.2\n" + probe("readiness", 80, period=5)).replace(
        "image: shop/worker:1.2\n", "image: shop/worker:1.2\n" + probe("readiness", 9000, period=5))
    assert "own port (80, 9000)" in fix["explanation"]
    has_one = PAIR.replace("image: shop/web:1.2\n", "image: shop/web:1.2\n" + probe("liveness", 8081))
    _, context, fix, _ = made(tmp_path, has_one, "CKV_K8S_8")  # the container that has one keeps it
    assert fixed_file(tmp_path, has_one, context, fix) == has_one.replace(
        "image: shop/worker:1.2\n", "image: shop/worker:1.2\n" + probe("liveness", 9000))
    assert "own port (9000)" in fix["explanation"]


@pytest.mark.parametrize("text", [
    DEPLOYMENT,  # the worker has no port: what to probe there is not known
    PAIR.replace("        - containerPort: 9000\n", "        - containerPort: 9000\n        - containerPort: 9001\n"),
])
def test_no_probe_for_a_container_without_its_one_port(tmp_path, text):
    for rule_id in ("CKV_K8S_8", "CKV_K8S_9"):
        assert made(tmp_path, text, rule_id)[2] is None


def test_checkov_confirms_the_probes(tmp_path):
    need("checkov")
    candidates = []
    for n, (text, rule_id) in enumerate([(WEB, "CKV_K8S_8"), (PAIR, "CKV_K8S_8"), (PAIR, "CKV_K8S_9")]):
        finding, context, fix, _ = made(tmp_path, text, rule_id, name=f"p{n}.yaml")
        candidates.append(Candidate(rule_id, finding, context, fix))
    verdicts = verify(candidates, tmp_path, SCANNERS)
    assert {k: v.reason for k, v in verdicts.items()} == {c.key: VERIFIED for c in candidates}


# ---------------------------------------------------------------- checkov agrees

def test_checkov_confirms_every_fix(tmp_path):
    need("checkov")
    cases = [(DEPLOYMENT, r) for r in ("CKV_K8S_20", "CKV_K8S_22", "CKV_K8S_23", "CKV_K8S_28", "CKV_K8S_30",
                                       "CKV_K8S_31", "CKV_K8S_40")] + [(JOB, "CKV_K8S_21")] + [
        (DEPLOYMENT.replace("containerPort: 80", "containerPort: 8080"), "CKV_K8S_37")]
    candidates = []
    for n, (text, rule_id) in enumerate(cases):
        finding, context, fix, _ = made(tmp_path, text, rule_id, name=f"m{n}.yaml")
        assert fix, rule_id
        candidates.append(Candidate(rule_id, finding, context, fix))
    verdicts = verify(candidates, tmp_path, SCANNERS)
    assert {k: v.reason for k, v in verdicts.items()} == {c.key: VERIFIED for c in candidates}
