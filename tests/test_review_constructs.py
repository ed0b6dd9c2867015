"""Analyses read against real code (issue 14's review): rule texts that say what each rule matches,
and readings of the constructs where the rule's concern does not hold or needs other advice —
Mustache tags in a template literal, a copyright year in HTML, an idle container, a Dockerfile ENV
secret, node agents that mount host paths — and a distrusted autofix that is no advice either."""

from __future__ import annotations

import pytest

from secai.analysis import kb
from secai.analysis.compose import compose


LEVELS = {"INFO": "low", "WARNING": "medium", "ERROR": "high", "MEDIUM": "medium", "HIGH": "high", None: "medium"}


def finding(tool: str, rule_id: str, path: str, line: int = 1, end: int | None = None, category: str = "sast",
            title: str = "a finding", severity: str | None = "WARNING", **extra) -> dict:
    return {"id": f"{rule_id}-{path}-{line}", "tool": tool, "rule_id": rule_id, "title": title, "category": category,
            "severity": LEVELS[severity], "tool_severity": severity, "cwe": [], "references": [],
            "location": {"path": path, "start_line": line, "end_line": end or line}, **extra}


def context(path: str, code: str, language: str, first: int = 1, last: int | None = None) -> dict:
    n = code.count("\n") + 1
    return {"path": path, "language": language, "start_line": 1, "end_line": n, "code": code,
            "finding_lines": [first, last or n]}


def words(analysis: dict) -> str:
    return " ".join(analysis[k] for k in ("summary", "impact", "remediation", "prevention"))


TEMPLATE_RULE = "semgrep-rules.javascript.lang.correctness.missing-template-string-indicator"
MUSTACHE = ('const t = {\n  item: `\n  <a class="${prefix}\n    {{#isHeader}}${prefix}__main{{/isHeader}}"\n'
            '    href="{{{url}}}">{{title}}</a>\n  `,\n};')


def test_mustache_tags_in_a_template_literal_are_a_false_positive_of_the_missing_dollar_rule():
    f = finding("semgrep", TEMPLATE_RULE, "src/templates.js", 2, 6, severity="INFO")
    analysis = compose(f, context("src/templates.js", MUSTACHE, "javascript", 2, 6), None)
    assert "Mustache or Handlebars tag" in analysis["summary"] and "false positive" in analysis["summary"]
    assert "{{#section}}" in analysis["summary"] and "dead or unreachable code" not in words(analysis)
    assert "Leave the code" in analysis["remediation"] and "nosemgrep" in analysis["remediation"]
    assert analysis["risk"]["rating"] == "info"  # INFO is low; a false positive is one step lower


@pytest.mark.parametrize("code", ["const s = `Hello {name}, you have ${count} items`;",
                                  "const s = `{{#list}}{item}{{/list}}`;"])  # a bare {item} beside the tags
def test_a_brace_without_dollar_that_is_no_template_tag_reads_as_the_missing_dollar(code):
    f = finding("semgrep", TEMPLATE_RULE, "src/a.js", 1, 1, severity="INFO")
    analysis = compose(f, context("src/a.js", code, "javascript"), None)
    assert "false positive" not in analysis["summary"]
    assert "the $ is missing" in analysis["summary"] and "add the $ (${name})" in analysis["remediation"]
    assert "unused imports" not in analysis["remediation"]


HTML_RULE = "semgrep-rules.javascript.lang.security.html-in-template-string"


def test_html_with_only_the_current_year_interpolated_is_a_false_positive():
    code = ("copyright: `Copyright © ${new Date().getFullYear()\n"
            "  } - <a href=\"https://example.com\">Example</a>`,")
    analysis = compose(finding("semgrep", HTML_RULE, "site.config.js", 1, 2), context("site.config.js", code, "javascript"), None)
    assert "getter of the current date" in analysis["summary"] and "false positive" in analysis["summary"]
    assert "character encoding" not in words(analysis)  # the CWE-116 catalogue's text is not used


def test_html_with_another_value_interpolated_says_where_values_must_be_encoded():
    code = "el.innerHTML = `<b>${user.name}</b> since ${new Date().getFullYear()}`;"
    analysis = compose(finding("semgrep", HTML_RULE, "ui.js"), context("ui.js", code, "javascript"), None)
    assert kb.load().match(finding("semgrep", HTML_RULE, "ui.js")).id == "cwe-79-cross-site-scripting"
    assert "false positive" not in analysis["summary"] and "without HTML encoding" in analysis["summary"]
    assert "constants of the code or numbers need nothing" in analysis["remediation"]


def test_a_distrusted_autofix_is_not_quoted_as_the_scanners_advice():
    code = "FROM alpine:3.20\nRUN apk add --no-cache curl\nCMD [\"ps\", \"aux\"]"
    rule = "semgrep-rules.dockerfile.security.missing-user"
    f = finding("semgrep", rule, "Dockerfile", 3, severity="ERROR", fix_hint='USER non-root\nCMD ["ps", "aux"]')
    analysis = compose(f, context("Dockerfile", code, "dockerfile", 3, 3), None)
    assert kb.load().match(f).id == "docker-root-user"
    assert "non-root CMD" not in analysis["remediation"] and "semgrep advises" not in analysis["remediation"]
    assert "on Alpine (busybox) RUN addgroup" in analysis["remediation"]
    kept = compose({**f, "rule_id": "semgrep-rules.dockerfile.best-practice.prefer-apt-get", "fix_hint": "apt-get"},
                   context("Dockerfile", code, "dockerfile", 2, 2), None)
    assert "semgrep advises: “apt-get”" in kept["remediation"]


@pytest.mark.parametrize("rule, said", [("prefer-apt-get", "calls apt, the interactive front end"),
                                        ("missing-pip-no-cache-dir", "without --no-cache-dir")])
def test_dockerfile_best_practice_rules_get_their_own_texts_not_the_injection_fallback(rule, said):
    f = finding("semgrep", f"semgrep-rules.dockerfile.best-practice.{rule}", "Dockerfile", 2, severity="INFO")
    analysis = compose(f, context("Dockerfile", "FROM debian:12\nRUN apt update && pip install x", "dockerfile", 2, 2), None)
    assert kb.load().match(f).id == "docker-package-install-hygiene"
    assert said in analysis["summary"] and "not a vulnerability" in analysis["impact"]
    assert "untrusted input" not in words(analysis)


@pytest.mark.parametrize("rule_id", ["B201", "semgrep-rules.python.flask.security.audit.debug-enabled"])
def test_flask_debug_names_no_django(rule_id):
    f = finding("bandit" if rule_id == "B201" else "semgrep", rule_id, "app.py", 11, severity="HIGH")
    analysis = compose(f, context("app.py", "app.run(host='0.0.0.0', debug=True)", "python"), None)
    assert "Django" not in " ".join((analysis["summary"], analysis["impact"], analysis["remediation"]))
    assert "Werkzeug debugger" in analysis["impact"] and "flask run --debug" in analysis["remediation"]


def test_b113_speaks_of_the_request_timeout_only():
    f = finding("bandit", "B113", "cli.py", 16, 18, severity="MEDIUM", cwe=["CWE-400"])
    analysis = compose(f, context("cli.py", "r = requests.get(\n    url, headers=h\n)", "python"), None)
    assert "without a timeout= argument" in analysis["summary"] and "recursion" not in analysis["summary"]
    assert "pass timeout= to the call" in analysis["remediation"] and "upload sizes" not in analysis["remediation"]


NODE_AGENT = """apiVersion: batch/v1
kind: Job
metadata:
  name: bench
spec:
  template:
    spec:
      hostPID: true
      hostIPC: true
      containers:
        - name: bench
          image: example/bench:1.0
          volumeMounts:
            - name: etc
              mountPath: /etc/kubernetes
              readOnly: true
      volumes:
        - name: etc
          hostPath:
            path: /etc/kubernetes"""


def checkov(rule_id: str) -> dict:
    return finding("checkov", rule_id, "job.yaml", 1, 20, category="iac", severity=None, resource="Job.default.bench")


def test_privilege_escalation_on_a_node_agent_does_not_advise_running_as_non_root():
    analysis = compose(checkov("CKV_K8S_20"), context("job.yaml", NODE_AGENT, "yaml"), None)
    assert "mounts host paths" in analysis["summary"]
    assert "allowPrivilegeEscalation: false" in analysis["remediation"]
    assert "runAsNonRoot: true" not in analysis["remediation"] and "Leave that user as it is" in analysis["remediation"]
    privileged = NODE_AGENT.replace("          volumeMounts:", "          securityContext:\n            privileged: true\n"
                                    "          volumeMounts:")
    first = compose(checkov("CKV_K8S_20"), context("job.yaml", privileged, "yaml"), None)
    assert "runs privileged" in first["summary"] and "API server refuses" in first["summary"]  # privileged comes first


def test_host_ipc_and_host_pid_on_a_node_agent_are_read_apart_and_never_called_safe_to_remove():
    ipc = compose(checkov("CKV_K8S_18"), context("job.yaml", NODE_AGENT, "yaml"), None)
    pid = compose(checkov("CKV_K8S_17"), context("job.yaml", NODE_AGENT, "yaml"), None)
    assert "IPC namespace" in ipc["summary"] and "kube-bench reads" not in ipc["summary"]
    assert "shared memory" in ipc["impact"] and "hostNetwork" not in ipc["impact"]
    assert "kube-bench reads the kubelet's" in pid["summary"] and "command lines" in pid["impact"]
    for analysis in (ipc, pid):
        assert "secai offers no fix here" in analysis["remediation"] and "fix" not in analysis
        assert "safe to remove" not in words(analysis)
    assert "check on a test node" in ipc["remediation"]


@pytest.mark.parametrize("cmd, idle", [('CMD ["sh", "-c", "tail -f /dev/null"]', True), ("CMD sleep infinity", True),
                                       ('CMD ["python", "/app.py"]', False)])
def test_a_healthcheck_finding_on_an_idle_container_says_there_is_no_service(cmd, idle):
    code = f"FROM alpine:3.20\nRUN echo hi\n{cmd}"
    f = finding("checkov", "CKV_DOCKER_2", "Dockerfile", 1, 3, category="iac", severity=None)
    analysis = compose(f, context("Dockerfile", code, "dockerfile"), None)
    assert ("serves nothing" in analysis["summary"]) is idle
    assert ("Add a HEALTHCHECK" in analysis["remediation"]) is not idle


def test_a_secret_set_by_dockerfile_env_is_explained_as_part_of_the_image():
    f = finding("checkov", "CKV_SECRET_6", "Dockerfile", 3, 4, category="secret", severity=None,
                title="Base64 High Entropy String", secret={"sha256": "0" * 64})
    analysis = compose(f, context("Dockerfile", 'FROM python:3.12\nLABEL a="b"\nENV API_KEY=[REDACTED]\n', "dockerfile", 3, 4), None)
    assert "docker inspect" in analysis["summary"] and "Later layers cannot take either back" in analysis["summary"]
    assert "secretKeyRef" in analysis["remediation"] and "RUN --mount=type=secret" in analysis["remediation"]
    assert "rotate it at its issuer" in analysis["remediation"]


@pytest.mark.parametrize("rule, said", [
    ("javascript.express.security.audit.express-check-csurf-middleware-usage", "uses no CSRF middleware"),
    ("javascript.express.security.audit.xss.direct-response-write", "Express sends a string as text/html"),
    ("javascript.jquery.security.audit.jquery-insecure-selector", "parses a string that starts with < as HTML"),
])
def test_javascript_rules_say_what_they_match(rule, said):
    f = finding("semgrep", f"semgrep-rules.{rule}", "server.js", 7)
    assert said in compose(f, context("server.js", "const app = express();", "javascript"), None)["summary"]


SECRET_MANIFEST = ("apiVersion: v1\nkind: Secret\nmetadata:\n  name: vaultapikey\n  namespace: big-monolith\n"
                   "type: Opaque\ndata:\n  k8svaultapikey: [REDACTED]")


def test_a_secret_in_a_kubernetes_manifest_gets_kubernetes_advice_not_a_run_time_lookup():
    f = finding("checkov", "CKV_SECRET_6", "deploy/secrets.yaml", 8, 8, category="secret",
                title="Base64 High Entropy String", severity=None)
    analysis = compose(f, context("deploy/secrets.yaml", SECRET_MANIFEST, "yaml", 8, 8), None)
    assert "out of the manifest" in analysis["remediation"] and "secretKeyRef" in analysis["remediation"]
    assert "base64 is an encoding" in analysis["remediation"] and "run-time lookup" not in analysis["remediation"]
    # the same rule in application code keeps the language-neutral advice
    code = compose(f | {"location": {"path": "app/settings.py", "start_line": 1, "end_line": 1}},
                   context("app/settings.py", "API_KEY = [REDACTED]", "python", 1, 1), None)
    assert "run-time lookup" in code["remediation"] and "manifest" not in code["remediation"]
