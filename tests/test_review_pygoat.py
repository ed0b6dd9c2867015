"""What a review of pygoat's analyses (issue 14: 10 per tool, read against the code) found wrong,
as general cases: subprocess calls without a shell explained as shell injection, another
language's APIs in a Python finding, a code-quality rule given dead-code consequences, a false
positive given the rule's impact. Findings and code are made here."""

from __future__ import annotations

from secai.analysis.compose import compose


def finding(rule_id: str, tool: str = "semgrep", cwe=(), path: str = "app/views.py", line: int = 3,
            severity: str = "medium", own: str = "WARNING") -> dict:
    return {"id": f"{tool}-{rule_id}", "tool": tool, "rule_id": rule_id, "title": "A finding", "category": "sast",
            "severity": severity, "tool_severity": own, "cwe": list(cwe), "references": [],
            "location": {"path": path, "start_line": line, "end_line": line}}


def context(code: str, line: int = 3, path: str = "app/views.py") -> dict:
    n = code.count("\n") + 1
    return {"path": path, "language": "python", "start_line": 1, "end_line": n, "code": code,
            "finding_lines": [line, line]}


def text(analysis: dict) -> str:
    return " ".join([analysis["summary"], analysis["impact"], analysis["remediation"], analysis["risk"]["rationale"]])


def test_b606_is_a_process_started_without_a_shell():
    code = "import os\n\nos.execv('/usr/bin/git', ['git', 'status'])\n"
    a = compose(finding("B606", "bandit", ("CWE-78",), own="LOW", severity="low"), context(code), None)
    assert "without a shell" in a["summary"] and "no shell parses them" in a["summary"]
    assert "handed to a shell" not in a["summary"] and "metacharacters in the input" not in a["impact"]
    assert "shell=False" not in a["remediation"] and "# nosec B606" in a["remediation"]
    assert "worse when the program path or an argument" in a["risk"]["rationale"]


AUDIT = "semgrep-rules.python.lang.security.audit.dangerous-subprocess-use-audit"


def test_an_argument_list_flagged_by_a_subprocess_audit_rule_is_no_shell_call():
    listed = "import subprocess, sys\n\nsubprocess.check_call([sys.executable, '-m', 'pip', 'list'])\n"
    a = compose(finding(AUDIT, cwe=("CWE-78",)), context(listed), None)
    assert "no shell is involved" in a["summary"] and "handed to a shell" not in a["summary"]
    assert "keep the argument list" in a["remediation"] and "shell=False (the default), e.g." not in a["remediation"]
    split = "import subprocess\n\np = subprocess.Popen(command.split(' '), stdout=subprocess.PIPE)\n"
    a = compose(finding(AUDIT, cwe=("CWE-78",)), context(split), None)
    assert "splitting a string" in a["summary"] and "item by item" in a["remediation"]
    shell = "import subprocess\n\np = subprocess.Popen(command, shell=True)\n"
    a = compose(finding(AUDIT, cwe=("CWE-78",)), context(shell), None)
    assert "handed to a shell" in a["summary"] and "shlex.quote" in a["remediation"]  # the Python variant


def test_a_python_shell_finding_names_no_other_languages_api():
    shell = "import subprocess\n\np = subprocess.Popen(command, shell=True)\n"
    for rule_id, tool in (("B602", "bandit"), ("semgrep-rules.python.lang.security.audit.subprocess-shell-true",
                                                "semgrep")):
        a = compose(finding(rule_id, tool, ("CWE-78",)), context(shell), None)
        assert not any(api in text(a) for api in ("Runtime.exec", "child_process", "execFile")), rule_id


def test_python_random_is_advised_pythons_csprng_only():
    code = "from random import randint\n\notp = randint(100, 999)\n"
    a = compose(finding("B311", "bandit", ("CWE-330",), own="LOW", severity="low"), context(code), None)
    assert "Python's random module" in a["summary"] and "secrets.SystemRandom()" in a["remediation"]
    assert not any(api in text(a) for api in ("Math.random", "java.util", "SecureRandom", "crypto.random"))


OPEN = "semgrep-rules.python.lang.best-practice.unspecified-open-encoding"


def test_a_code_quality_rule_gets_its_own_consequences_not_dead_codes():
    code = "import json\n\nwith open('c.json', 'r') as f:\n    data = json.load(f)\n"
    a = compose(finding(OPEN), context(code), None)
    assert "UnicodeDecodeError" in a["impact"] and "locale" in a["risk"]["rationale"]
    assert not any(w in text(a) for w in ("unused variable", "unreachable", "dead or unreachable", "mutable state"))


def test_a_false_positive_has_no_impact_of_the_rules_kind():
    rule_id = "semgrep-rules.python.lang.maintainability.is-function-without-parentheses"
    code = "def get(self, request):\n    x = 1\n    if not request.user.is_authenticated:\n        return None\n"
    a = compose(finding(rule_id), context(code), None)
    assert a["impact"].startswith("None:") and "unused variable" not in a["impact"]
    assert "is right as it is" in a["risk"]["rationale"] and "does what the rule wants" not in a["risk"]["rationale"]


def test_the_frameworks_own_csrf_token_rendered_safe_is_no_xss():
    rule_id = "semgrep-rules.python.flask.security.xss.audit.template-unescaped-with-safe"
    code = "<script>\n    var url = null;\n    const csrf_token = \"{{ csrf_token|safe }}\";\n</script>\n"
    ctx = {**context(code, path="challenge/templates/challenge.html"), "language": "html"}
    a = compose(finding(rule_id, cwe=("CWE-79",), path="challenge/templates/challenge.html"), ctx, None)
    assert "false positive" in a["summary"] and a["impact"].startswith("None:")
    assert "Drop the |safe filter" in a["remediation"] and "render_template" not in a["remediation"]
    assert "no weakness here" in a["risk"]["rationale"] and a["risk"]["rating"] == "low"


def test_a_nested_flask_app_under_a_django_project_is_a_flask_project(tmp_path):
    """A Django rule on the template of a Flask app that lives, with a requirements.txt of its own,
    inside a Django project's tree (whose requirements also list Flask for it) gets Flask advice."""
    (tmp_path / "manage.py").write_text("import django\n")
    (tmp_path / "requirements.txt").write_text("Django==4.2\nFlask==2.3.3\n")
    lab = tmp_path / "labs" / "auth"
    (lab / "templates").mkdir(parents=True)
    (lab / "requirements.txt").write_text("Flask==2.3.3\nJinja2==3.1.2\n")
    (lab / "templates" / "lab.html").write_text('<form method="POST" action="/login">\n</form>\n')
    path = "labs/auth/templates/lab.html"
    f = finding("semgrep-rules.python.django.security.django-no-csrf-token", cwe=("CWE-352",), path=path, line=1)
    ctx = {**context('<form method="POST" action="/login">\n</form>', line=1, path=path), "language": "html"}
    a = compose(f, ctx, tmp_path)
    assert "CSRFProtect" in a["remediation"] and "CsrfViewMiddleware" not in a["remediation"]
    assert "project built on Flask" in a["summary"]


def test_django_csrf_advice_on_a_template_calls_it_no_view():
    path = "introduction/templates/Lab/login.html"
    f = finding("semgrep-rules.python.django.security.django-no-csrf-token", cwe=("CWE-352",), path=path, line=1)
    ctx = {**context('<form method="POST" action="/login">\n</form>', line=1, path=path), "language": "html"}
    a = compose(f, ctx, None)
    assert "{% csrf_token %} inside every" in a["remediation"] and "the view at" not in a["remediation"]


def test_a_rule_of_no_framework_gets_the_projects_variant(tmp_path):
    (tmp_path / "manage.py").write_text("import django\n")
    (tmp_path / "app").mkdir()
    code = "def sql_lab(request):\n    name = request.POST.get('name')\n    q = \"SELECT * FROM t WHERE user='\" + name + \"'\"\n"
    (tmp_path / "app" / "views.py").write_text(code)
    a = compose(finding("B608", "bandit", ("CWE-89",)), context(code), tmp_path)
    assert "Model.objects.raw(" in a["remediation"] and "project built on" not in a["summary"]
