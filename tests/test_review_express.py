"""What a review of analyses of an Express app (issue 14, "Done when": a sample read against the code)
found wrong, each checked here on findings made in the test: a rule written for another framework
than the project's (a Django template rule on an Express app's templates), two const declarations
read as a useless assignment, Express session-cookie rules that must speak of their own option only,
Python APIs in the advice for JavaScript code, checkov's negative check on a key the workflow does
not set, and a digest rule said to let a version tag move to a new major version."""

from __future__ import annotations

import json

import pytest

from secai.analysis import kb
from secai.analysis.compose import compose
from secai.analysis.readings import expectation, foreign_frameworks, frameworks_of, project_frameworks

COOKIE = "semgrep-rules.javascript.express.security.audit.express-cookie-session-"
SESSION = 'app.use(session({\n    secret: cookieSecret,\n    saveUninitialized: true,\n    resave: true\n}));'


def finding(rule_id: str, path: str, cwe=(), tool="semgrep", line=3, category="sast", **extra) -> dict:
    return {"id": f"{tool}-{rule_id}-{path}", "tool": tool, "rule_id": rule_id, "title": "A finding",
            "category": category, "severity": "medium", "tool_severity": "WARNING", "cwe": list(cwe),
            "references": [], "location": {"path": path, "start_line": line}, **extra}


def context(code: str, language: str, first: int = 1, last: int | None = None) -> dict:
    n = len(code.split("\n"))
    return {"path": "x", "language": language, "start_line": 1, "end_line": n, "code": code,
            "finding_lines": [first, last or n]}


def express_app(root):
    (root / "package.json").write_text(json.dumps({"dependencies": {"express": "^4", "swig": "^1"}}))
    (root / "app" / "views").mkdir(parents=True)
    (root / "app" / "views" / "form.html").write_text('<form method="POST" action="/x"></form>\n')
    return root


# ---------------------------------------------------------------- a rule of another framework

def test_project_frameworks_come_from_the_manifests_up_the_tree_and_the_files_imports(tmp_path):
    express_app(tmp_path)
    assert project_frameworks(tmp_path, "app/views/form.html") == {"express"}
    service = tmp_path / "svc"
    service.mkdir()
    (service / "requirements.txt").write_text("Django==4.2\nflask-wtf==1.0\n")  # flask-wtf is not flask
    (service / "tool.py").write_text("import fastapi\n")
    # a project nested in another is its own: svc/ names its frameworks, the Express root's are not its
    assert project_frameworks(tmp_path, "svc/tool.py") == {"django", "fastapi"}
    assert project_frameworks(tmp_path / "app", "views/form.html") is None  # nothing names one below app/
    assert project_frameworks(None, "app/views/form.html") is None


def test_a_django_template_rule_on_an_express_apps_template_gets_express_advice(tmp_path):
    root = express_app(tmp_path)
    f = finding("semgrep-rules.python.django.security.django-no-csrf-token", "app/views/form.html",
                cwe=("CWE-352",))
    rule = {"frameworks": ["django"], "advice": "Manually-created forms in django templates should specify a "
            "csrf_token.", "source": "semgrep rule file"}
    a = compose(f, context('<form method="POST" action="/x"></form>', "html"), root, rule=rule)
    assert "The rule is written for Django, but app/views/form.html is part of a project built on Express" \
        in a["summary"]
    assert "Express app" in a["remediation"] and "csrf-csrf" in a["remediation"]
    for django in ("CsrfViewMiddleware", "csrf_token", "@csrf_exempt", "settings"):
        assert django not in a["remediation"]
    # in a Django project the same finding keeps Django's advice and says nothing of another framework
    django_root = tmp_path / "dj"
    (django_root / "app" / "views").mkdir(parents=True)
    (django_root / "manage.py").write_text("import django\n")
    b = compose(f, context('<form method="POST"></form>', "html"), django_root, rule=rule)
    assert "CsrfViewMiddleware" in b["remediation"] and "written for" not in b["summary"]


def test_a_rule_for_several_frameworks_or_for_the_browser_is_not_foreign(tmp_path):
    express_app(tmp_path)
    project = project_frameworks(tmp_path, "app/views/form.html")
    both = finding("semgrep-rules.javascript.express.x", "app/r.js")
    assert foreign_frameworks(both, {"frameworks": ["django", "express"]}, None, project) == ()
    browser = finding("semgrep-rules.javascript.browser.security.eval-detected", "app/r.js")
    assert foreign_frameworks(browser, {"frameworks": ["browser"]}, None, project) == ()
    assert frameworks_of(browser, {"frameworks": ["browser"]}, None, project)[0] == "browser"
    flask = finding("semgrep-rules.python.flask.security.x", "app/views/form.html")
    assert foreign_frameworks(flask, None, None, project) == ("flask",)
    assert frameworks_of(flask, None, None, project) == ("express", "html")


# ---------------------------------------------------------------- two declarations, no reassignment

USELESS = "semgrep-rules.javascript.lang.correctness.useless-assignment"


def test_two_const_declarations_are_no_useless_assignment():
    code = 'const {\n    BenefitsDAO\n} = require("../data/benefits-dao");\nconst {\n    scripts\n} = require("../config");'
    a = compose(finding(USELESS, "app/routes/b.js", line=1), context(code, "javascript"), None)
    assert "false positive" in a["summary"] and "const or let" in a["summary"]
    assert "nosemgrep" in a["remediation"] and a["risk"]["rating"] == "low"  # one step below medium
    assert "no weakness here" in a["risk"]["rationale"]
    plain = compose(finding(USELESS, "app/routes/b.js", line=1), context("x = 1;\nx = 2;", "javascript"), None)
    assert "false positive" not in plain["summary"]


# ---------------------------------------------------------------- session-cookie options

OPTIONS = {"no-secure": "secure", "no-httponly": "httpOnly", "no-domain": "domain", "no-path": "path",
           "no-expires": "expires", "default-name": "name"}


@pytest.mark.parametrize("rule", sorted(OPTIONS))
def test_each_session_cookie_rule_speaks_of_its_own_option_only(rule):
    a = compose(finding(COOKIE + rule, "server.js", cwe=("CWE-522",)), context(SESSION, "javascript"), None)
    others = {"secure": "Secure", "httpOnly": "HttpOnly", "sameSite": "SameSite"}
    own = OPTIONS[rule]
    for option, attribute in others.items():
        if option != own:
            assert attribute not in a["impact"] and f"{option}:" not in a["impact"]
    assert "non-sensitive preference" not in a["risk"]["rationale"]  # a session cookie carries a session id
    assert "Without Secure, the cookie" not in a["impact"]


def test_session_cookie_defaults_are_said_as_the_middleware_has_them():
    def of(rule, code=SESSION):
        return compose(finding(COOKIE + rule, "server.js", cwe=("CWE-522",)), context(code, "javascript"), None)
    domain = of("no-domain")
    assert "host-only" in domain["summary"] and domain["remediation"].startswith("Leave domain unset")
    assert "defaults to true" in of("no-httponly")["summary"]
    assert 'the path is "/"' in of("no-path")["summary"]
    assert "secure: false" in of("no-secure")["summary"]
    with_max_age = of("no-expires", SESSION.replace("resave: true", "resave: true,\n    cookie: { maxAge: 60000 }"))
    assert "options set maxAge, which gives the cookie its lifetime" in with_max_age["summary"]
    assert with_max_age["risk"]["rating"] == "low"  # a false positive: one step below medium
    commented = of("no-expires", SESSION.replace("resave: true", "resave: true\n    // cookie: { maxAge: 60000 }"))
    assert "options set maxAge, which" not in commented["summary"]
    off = of("no-httponly", SESSION.replace("resave: true", "resave: true,\n    cookie: { httpOnly: false }"))
    assert "set httpOnly: false" in off["summary"] and "change httpOnly: false" in off["remediation"]


def test_by_rule_risk_factors_replace_the_entrys():
    entry = kb.load().by_id["cookie-security-attributes"]
    rendered = entry.render({"tool": "semgrep"}, rule_id=COOKIE + "no-secure")
    assert rendered["risk_factors"]["raises"][0].startswith("the site is also reachable over plain HTTP")
    assert entry.render({"tool": "semgrep"}, rule_id="some.other.cookie-missing-secure")["risk_factors"] \
        == entry.data["risk_factors"]


# ---------------------------------------------------------------- advice in the code's language

@pytest.mark.parametrize("rule_id, cwe, code, python_words", [
    ("semgrep-rules.javascript.browser.security.eval-detected", "CWE-95", "const a = eval(req.body.a);",
     ("ast.literal_eval", "json.loads", "jinja2")),
    ("semgrep-rules.javascript.lang.security.audit.detect-redos", "CWE-1333", "const r = /([0-9]+)+#/;",
     ("re.escape", "google-re2")),
])
def test_javascript_findings_get_no_python_api(rule_id, cwe, code, python_words):
    a = compose(finding(rule_id, "app/routes/c.js", cwe=(cwe,)), context(code, "javascript"), None)
    for word in python_words:
        assert word not in a["remediation"]
    assert "JavaScript" in a["remediation"] or "JSON.parse" in a["remediation"]
    py = compose(finding("semgrep-rules.python.lang.security.audit.x-" + rule_id.rsplit("-", 1)[-1], "app/c.py",
                         cwe=(cwe,)), context("x = 1", "python"), None)
    assert python_words[0] in py["remediation"]


# ---------------------------------------------------------------- checkov and Dockerfiles

def test_a_negative_check_on_a_key_the_workflow_does_not_set_says_to_set_it():
    rule = {"tool": "checkov", "rule_id": "CKV2_GHA_1",
            "expects": [{"key": "permissions", "forbidden": ["write-all"], "resource_types": ["permissions"]}]}
    e = expectation(rule, "name: Lint\non: [push]\njobs: {}", "on(Lint)", "yaml", whole=True)
    assert e.expects == "checkov's CKV2_GHA_1 expects permissions at the top level of workflow Lint not to be write-all."
    assert e.reading == "The flagged code does not set permissions."
    assert e.change.startswith("Set permissions at the top level of workflow Lint to a value the check allows")
    unseen = expectation(rule, "name: Lint", "on(Lint)", "yaml", whole=False)
    assert unseen.change.startswith("Make sure permissions")
    a = compose(finding("CKV2_GHA_1", ".github/workflows/lint.yml", tool="checkov", category="iac", line=1),
                None, None)
    assert "Remove write-all" not in a["remediation"] and "sets no top-level permissions" in a["summary"]


def test_the_digest_rule_does_not_say_a_version_tag_moves_to_a_new_major_version():
    a = compose(finding("semgrep-rules.dockerfile.audit.dockerfile-source-not-pinned", "Dockerfile", line=1),
                context("FROM node:12-alpine", "dockerfile"), None)
    assert "major version" not in a["impact"] and "without a digest" in a["summary"]
    assert ":latest" not in a["prevention"]
