"""Nothing private in training data: no local directory in a finding's path or provenance, no
personal e-mail address in any text (issue 14, item 4)."""

from __future__ import annotations

import io
import json
import shutil
import sys
import zipfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from conftest import FIXTURES, run_command  # noqa: E402

from secai import secrets  # noqa: E402
from secai.analysis.context import under_root  # noqa: E402
from secai.commands.parse import Parse  # noqa: E402
from secai.parsing.finding import fingerprint, relative_paths, scan_root  # noqa: E402

TFSEC = FIXTURES / "parse" / "tfsec-json" / "v1.json"  # absolute paths under /home/runner/work/shop/shop/infra
SEMGREP = sorted((FIXTURES / "parse").glob("semgrep-json/*.json"))[0]  # relative paths


# ---------------------------------------------------------------- e-mail addresses

@pytest.mark.parametrize("text, kept", [
    ("Author: Jane Doe <jane.doe@gmail.com>", "Author: Jane Doe <[REDACTED]>"),
    ("maintainer=\"ops+alerts@acme-corp.co.uk\"", "maintainer=\"[REDACTED]\""),
    ("contact 12345+jdoe@users.noreply.github.com", "contact [REDACTED]"),
    ("ssh://deploy@prod.acme.io/srv/app", "ssh://[REDACTED]/srv/app"),
    ('{\\"email\\": \\"bob@company.com\\"}', '{\\"email\\": \\"[REDACTED]\\"}'),  # JSON-escaped
])
def test_real_addresses_are_redacted(text, kept):
    assert secrets.scrub(text) == kept
    assert secrets.find(text) == ["email-address"]
    assert secrets.find(kept) == [] and secrets.scrub(kept) == kept  # idempotent


@pytest.mark.parametrize("text", [
    "user@example.com", "admin@mail.example.org", "x@example.net",          # RFC 2606 example domains
    "a@host.test", "b@site.example", "c@nowhere.invalid", "root@localhost",  # reserved names: no public suffix
    "git@github.com:org/repo.git",                                           # an ssh remote's service account
    "@app.route('/login')", '"@types/node": "^20"', "npm i lodash@4.17.21",  # decorators, scopes, versions
    "y = x@self.weight", "z = a@b.T", "image@sha256:0123abcd",               # matrix products, digests
])
def test_not_personal_addresses_are_kept(text):
    assert secrets.scrub(text) == text
    assert secrets.find(text) == []


def test_addresses_in_code_context_are_blanked():
    lines = ["# Copyright 2021 Jane Doe <jane@janedoe.dev>", 'if email == "admin@pygoat.com":', "    send(user@example.com)"]
    assert secrets.blank_lines(lines, 1) == ["# Copyright 2021 Jane Doe <[REDACTED]>", 'if email == "[REDACTED]":',
                                             "    send(user@example.com)"]


# ---------------------------------------------------------------- home folders' user names

@pytest.mark.parametrize("text, kept", [
    ("open('/home/fox/test.yaml')", "open('/home/[REDACTED]/test.yaml')"),
    ("cd /Users/jane.doe/src && make", "cd /Users/[REDACTED]/src && make"),
    (r"C:\\Users\\Bob\\app.ini", r"C:\\Users\\[REDACTED]\\app.ini"),       # JSON-escaped backslashes
    ("log at C:/Users/bob/AppData/x.log", "log at C:/Users/[REDACTED]/AppData/x.log"),
])
def test_home_folder_user_names_are_redacted(text, kept):
    assert secrets.scrub(text) == kept
    assert secrets.find(text) == ["home-directory"]
    assert secrets.find(kept) == [] and secrets.scrub(kept) == kept  # idempotent


@pytest.mark.parametrize("text", [
    "/home/user/project", "/Users/username/.ssh", "~/src and $HOME/x",             # placeholders name nobody
    "https://shop.example.com/home/offers", "GET /home/", "/var/home/x",           # a URL's path, a route, no home
])
def test_not_personal_home_paths_are_kept(text):
    assert secrets.scrub(text) == text
    assert secrets.find(text) == []


def test_quality_counts_what_redaction_leaves():
    from secai.dataset.quality import private_text

    assert private_text("open('/home/fox/test.yaml')", ())["local_paths"] == 1
    assert private_text(secrets.scrub("open('/home/fox/test.yaml')"), ())["local_paths"] == 0
    assert private_text("see /home/user/x", ())["local_paths"] == 0


def test_addresses_in_scanner_text_are_blanked_at_parse(tmp_path):
    doc = json.loads(SEMGREP.read_text())
    doc["results"][0]["extra"]["message"] = "Reported by alice@corp.com: " + doc["results"][0]["extra"]["message"]
    report = tmp_path / "semgrep.json"
    report.write_text(json.dumps(doc))
    code, records, err = run_command(Parse, ["-q", str(report)])
    assert code == 0, err
    assert "alice@corp.com" not in str(records) and "Reported by [REDACTED]: " in str(records)


# ---------------------------------------------------------------- report paths

def test_scan_root_is_the_deepest_shared_directory():
    assert scan_root(["/home/u/app/src/a.py", "/home/u/app/src/lib/b.py"]) == {"/": "/home/u/app/src"}
    assert scan_root(["/main.tf"]) == {"/": "/"}
    assert scan_root(["C:/w/app/x.py", "/opt/y.py"]) == {"C:": "C:/w/app", "/": "/opt"}


def test_absolute_paths_become_relative_to_the_scan_root_in_order():
    found = [{"location": {"path": "kept/as.py"}}, {"location": {"path": "/home/runner/work/app/app/src/x.py"}},
             {"location": {"path": "relative/after.py"}}, {"location": {"path": "/home/runner/work/app/app/lib/y.py"}},
             {"category": "container", "location": {"path": "/usr/lib/libssl.so"}}, {"rule_id": "no-location"}]
    out = [f.get("location", {}).get("path") for f in relative_paths(found)]
    assert out == ["kept/as.py", "src/x.py", "relative/after.py", "lib/y.py", "/usr/lib/libssl.so", None]


def test_ids_of_relative_paths_do_not_change_and_absolute_ones_lose_the_root():
    rel = {"tool": "bandit", "rule_id": "B602", "location": {"path": "src/x.py", "start_line": 3}}
    before = fingerprint(rel)
    assert fingerprint(next(relative_paths([dict(rel, location=dict(rel["location"]))]))) == before
    absolute = {"tool": "bandit", "rule_id": "B602", "location": {"path": "/home/u/app/src/x.py", "start_line": 3}}
    assert next(relative_paths([absolute]))["location"]["path"] == "x.py"


def test_parse_writes_no_local_directory(tmp_path):
    code, records, err = run_command(Parse, ["-q", str(TFSEC)])
    assert code == 0, err
    assert [r["location"]["path"] for r in records] == ["s3.tf", "s3.tf", "network.tf", "logs.tf"]
    assert "/home/" not in str(records)


def test_absolute_paths_under_the_source_root_become_relative_at_analysis(tmp_path):
    f = {"id": "x", "location": {"path": f"{tmp_path}/src/app.py", "start_line": 1}}
    assert under_root(f, tmp_path)["location"] == {"path": "src/app.py", "start_line": 1}
    assert under_root(f, tmp_path / "other") is f
    assert under_root({"id": "y", "location": {"path": "src/app.py"}}, tmp_path)["location"]["path"] == "src/app.py"
    assert under_root(f, None) is f


# ---------------------------------------------------------------- provenance

def _sources(argv, cwd=None) -> set[str]:
    code, records, err = run_command(Parse, ["-q", *argv], cwd=cwd)
    assert code == 0, err
    return {r["source"]["file"] for r in records}


def test_provenance_is_relative_to_the_argument(tmp_path):
    reports = tmp_path / "alice" / "reports"
    (reports / "iac").mkdir(parents=True)
    shutil.copy(TFSEC, reports / "iac" / "tfsec.json")
    shutil.copy(SEMGREP, reports / "semgrep.json")
    assert _sources([str(reports)]) == {"iac/tfsec.json", "semgrep.json"}          # a directory, given absolute
    assert _sources([str(reports / "semgrep.json")]) == {"semgrep.json"}          # a file, given absolute
    assert _sources(["../alice/reports"], cwd=reports.parent) == {"iac/tfsec.json", "semgrep.json"}  # leaves the cwd
    assert _sources(["reports"], cwd=reports.parent) == {"reports/iac/tfsec.json", "reports/semgrep.json"}  # as given


def test_provenance_of_zip_members(tmp_path):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("out/tfsec.json", TFSEC.read_bytes())
    (tmp_path / "artifact.zip").write_bytes(buf.getvalue())
    assert _sources([str(tmp_path / "artifact.zip")]) == {"artifact.zip!out/tfsec.json"}
    assert _sources([str(tmp_path)]) == {"artifact.zip!out/tfsec.json"}
