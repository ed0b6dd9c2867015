"""The kb's HTML-template fix rules (kb/fixes/56_templates.yaml) and their gate on the project's
framework (secai.analysis.fixgates): {% csrf_token %} in a Django form, none in a Flask (Jinja) one,
one whose framework is unknown or one that already sends the token; |safe removed; an HTML file's
parse check (its template tags); and Semgrep confirming both fixes when it is installed."""

from __future__ import annotations

import pytest

from secai.analysis import fixgates, fixrules
from secai.analysis.context import code_context
from secai.analysis.languages import can_check, parses
from secai.analysis.verify import VERIFIED, Candidate, Scanners, place, verify

CSRF = "semgrep-rules.python.django.security.django-no-csrf-token"
SAFE = "semgrep-rules.python.flask.security.xss.audit.template-unescaped-with-safe"
FORM = """\
{% extends "base.html" %}
{% block content %}
<form method="post" action="/comment">
    <input type="text" name="body">
    <button type="submit">Send</button>
</form>
<p>Hello, {{ name|safe }} and {{ title | safe }}</p>
{% endblock %}
"""


def project(tmp_path, manifest: str | None, text: str = FORM, name: str = "templates/page.html"):
    """A project under tmp_path with `manifest` as its requirements.txt (None: no manifest)."""
    if manifest is not None:
        (tmp_path / "requirements.txt").write_text(manifest)
    (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / name).write_text(text)
    return name


def fixed(tmp_path, rule_id: str, start: int, end: int, name: str = "templates/page.html"):
    """(the fixed file, the fix rule's id, the fix, finding, context) or Nones."""
    finding = {"id": "f", "tool": "semgrep", "rule_id": rule_id, "cwe": [],
               "location": {"path": name, "start_line": start, "end_line": end}}
    context = code_context(finding, tmp_path)
    made = fixrules.rule_fix(finding, context, tmp_path)
    if not made:
        return None, None, None, finding, context
    text = (tmp_path / name).read_text()
    return place(text, context, made[0])[0], made[1], made[0], finding, context


def test_a_django_form_gets_the_token_after_its_opening_tag(tmp_path):
    project(tmp_path, "Django==4.2.7\n")
    text, rule, fix, _, _ = fixed(tmp_path, CSRF, 3, 6)
    assert rule == "django-form-csrf-token"
    assert text == FORM.replace('action="/comment">', 'action="/comment">{% csrf_token %}')
    assert "CsrfViewMiddleware" in fix["explanation"]


@pytest.mark.parametrize("manifest", ["Flask==3.0.0\n", "Django==4.2\nFlask==3.0\n", None])
def test_no_token_for_a_jinja_template_or_an_unknown_framework(tmp_path, manifest):
    project(tmp_path, manifest)
    assert fixed(tmp_path, CSRF, 3, 6)[1] is None


def test_no_token_for_a_form_that_sends_it_or_posts_to_another_site(tmp_path):
    project(tmp_path, "django\n", FORM.replace("    <input", "    {% csrf_token %}\n    <input"))
    assert fixed(tmp_path, CSRF, 3, 7)[1] is None
    project(tmp_path, "django\n", FORM.replace('action="/comment"', 'action="https://pay.example.com/"'))
    assert fixed(tmp_path, CSRF, 3, 6)[1] is None


def test_the_safe_filter_is_removed_in_django_and_flask_templates(tmp_path):
    for n, manifest in enumerate(("django\n", "flask\n")):
        root = tmp_path / str(n)
        root.mkdir()
        project(root, manifest)
        text, rule, _, _, _ = fixed(root, SAFE, 7, 7)
        assert rule == "template-drop-safe-filter"
        assert text == FORM.replace("{{ name|safe }} and {{ title | safe }}", "{{ name }} and {{ title }}")


def test_no_safe_removal_where_autoescaping_is_off_or_for_safeseq(tmp_path):
    project(tmp_path, "django\n", "{% autoescape off %}\n<p>{{ name|safe }}</p>\n{% endautoescape %}\n")
    assert fixed(tmp_path, SAFE, 2, 2)[1] is None
    project(tmp_path, "django\n", "<p>{{ names|safeseq|join:', ' }}</p>\n")
    assert fixed(tmp_path, SAFE, 1, 1)[1] is None


def test_an_html_file_parses_when_its_template_tags_close():
    assert can_check("html")
    assert parses(FORM, "html")
    assert parses("<script>if (a) { b({c: 1}}) }</script>\n{# {{ a note #}\n", "html")  # JavaScript's }}, a comment
    assert not parses("<p>{{ name </p>\n", "html")
    assert not parses("<p>{% if a %}{{ b %}</p>\n", "html")


def test_the_framework_gate_says_why(tmp_path):
    name = project(tmp_path, "flask\n")
    assert fixgates.declines({"frameworks": ["django"]}, tmp_path, name) == "the project uses flask"
    assert fixgates.declines({"frameworks": ["django", "flask"]}, tmp_path, name) is None
    assert fixgates.declines({"frameworks": ["django"]}, None, name) == "the project's framework is unknown"


CSRF_RULE = """\
rules:
  - id: django-no-csrf-token
    patterns:
      - pattern: "<form...>...</form>"
      - pattern-either:
          - pattern: <form ... method="$METHOD" ...>...</form>
          - pattern: <form ... method='$METHOD' ...>...</form>
          - pattern: <form ... method=$METHOD ...>...</form>
      - metavariable-regex:
          metavariable: $METHOD
          regex: (?i)(post|put|delete|patch)
      - pattern-not-inside: "<form...>...{% csrf_token %}...</form>"
    message: Manually-created forms in django templates should specify a csrf_token.
    languages: [generic]
    severity: WARNING
    paths:
      include: ["*.html"]
  - id: template-unescaped-with-safe
    message: autoescaping is disabled with '| safe'
    languages: [regex]
    severity: WARNING
    paths:
      include: ["*.html"]
    pattern-regex: '{{.*?\\|\\s*safe(\\s*}})?'
"""


def test_semgrep_confirms_both_fixes(tmp_path):
    found = Scanners.find()
    if "semgrep" not in found.paths:
        pytest.skip("semgrep not installed (run `make scanners`)")
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "templates.yaml").write_text(CSRF_RULE)
    root = tmp_path / "src"
    root.mkdir()
    project(root, "django\n")
    scanners = Scanners({"semgrep": found.paths["semgrep"]}, (str(rules),), 600)
    candidates = []
    for rule_id, start, end in ((CSRF, 3, 6), (SAFE, 7, 7)):
        _, _, fix, finding, context = fixed(root, rule_id, start, end)
        candidates.append(Candidate(rule_id, finding, context, fix))
    verdicts = verify(candidates, root, scanners)
    assert {k: v.reason for k, v in verdicts.items()} == {CSRF: VERIFIED, SAFE: VERIFIED}
