"""secai.secrets, the one secrets policy: every form real code carries is blanked with its key kept,
ordinary text survives, adversarial inputs take linear time, and the corpus under
tests/fixtures/secrets/ (source files in several languages, a report quoting their secrets) leaves
no secret value in any byte of any output of parse, analyze, narrate, split, SARIF and the push
staging; secai-push checks every field of every example, metadata included, dry run or not."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import textwrap

import orjson
import pytest
from conftest import FIXTURES, ROOT, run_command

from secai.records import dumps
from secai.commands.analyze import Analyze
from secai.commands.narrate import Narrate
from secai.commands.push import Push
from secai.commands.sarif import Sarif
from secai.commands.split import Split
from secai.commands.parse import Parse
from secai.secrets import REDACTED, blank_lines, find, find_tree, record_secrets, scrub, scrub_tree

CORPUS = FIXTURES / "secrets"
VALUES: dict[str, str] = json.loads((CORPUS / "values.json").read_text())


# ---------------------------------------------------------------- the forms

@pytest.mark.parametrize("text, scrubbed", [
    ("POSTGRES_PASSWORD: Zx9qLm2vRtAb", "POSTGRES_PASSWORD: [REDACTED]"),
    ('db = connect("db.internal","admin","Qw7!pLo#9xZe")', 'db = connect("db.internal","admin","[REDACTED]")'),
    ('smtp.login("alerts@x.example", "Hy6%uJm3Lq9t")', 'smtp.login("alerts@x.example", "[REDACTED]")'),
    ('requests.get(u, auth=("svc", "Gx5$rNp2Kw8v"))', 'requests.get(u, auth=("svc", "[REDACTED]"))'),
    ('"Server=db;Database=Shop;User Id=sa;Password=Vb3#nQ8zLk1w;"', '"Server=db;Database=Shop;User Id=sa;Password=[REDACTED];"'),
    ('"Server=db;Uid=app;Pwd=abc"', '"Server=db;Uid=app;Pwd=[REDACTED]"'),
    ("mysql -h db -u root -pM7yq2Lp0Wxk3 shop", "mysql -h db -u root -p[REDACTED] shop"),
    ("mysql -u root -pPASS", "mysql -u root -p[REDACTED]"),
    ("curl -fsS -u deploy:Hk4vT9qWm2Zp https://x/upload", "curl -fsS -u deploy:[REDACTED] https://x/upload"),
    ("sshpass -p Tz8wMn2s ssh host", "sshpass -p [REDACTED] ssh host"),
    ("app --password=hunter2 --user bob", "app --password=[REDACTED] --user bob"),
    ("<password>Rq8wE2nZx5Lt</password>", "<password>[REDACTED]</password>"),
    ('<ns:apiKey id="1">k3y-Value-9</ns:apiKey>', '<ns:apiKey id="1">[REDACTED]</ns:apiKey>'),
    (":password => \"Lm3kD7sQa9Vx\"", ':password => "[REDACTED]"'),
    ("'password' => 'Nf2hG5jWe8Rb',", "'password' => '[REDACTED]',"),
    ("password => Zx9qLm2v1", "password => [REDACTED]"),
    ("AccountName=shop;AccountKey=" + "Ab9+" * 21 + "Ab==;EndpointSuffix=core.windows.net",
     "AccountName=shop;AccountKey=[REDACTED];EndpointSuffix=core.windows.net"),
    ("https://shop.blob.core.windows.net/c?sv=2022-11-02&sig=" + "aB3%2F" * 8, "https://shop.blob.core.windows.net/c?sv=2022-11-02&sig=[REDACTED]"),
    ("key " + VALUES["sendgrid"], "key [REDACTED]"),
    ("key " + VALUES["anthropic"], "key [REDACTED]"),
    ("Cookie: session=0fa106cf4089; theme=dark", "Cookie: session=[REDACTED]; theme=dark"),
    ("Set-Cookie: sessionid=ec4u8w0vz; Path=/; HttpOnly", "Set-Cookie: sessionid=[REDACTED]; Path=/; HttpOnly"),
    ('res.setHeader("Set-Cookie", "sessionid=ec4u8w0vz; Path=/")', 'res.setHeader("Set-Cookie", "sessionid=[REDACTED]; Path=/")'),
    ("SESSION_SECRET=t8Kq2WmZ4vRn6YpL", "SESSION_SECRET=[REDACTED]"),
    ('password = "Tr0ub4dor&3"', 'password = "[REDACTED]"'),
    ("postgres://app:s3cretPa55@db:5432/app", "postgres://app:[REDACTED]@db:5432/app"),
])
def test_each_form_is_blanked_and_its_key_stays(text, scrubbed):
    assert scrub(text) == scrubbed
    assert find(text) and find(scrubbed) == [] and scrub(scrubbed) == scrubbed
    as_json = orjson.dumps({"x": text}).decode()  # in JSON-escaped text too, and it stays JSON
    assert orjson.loads(scrub(as_json))["x"] == scrubbed


@pytest.mark.parametrize("text", [
    "Use a strong password: the one in the vault, never in code.",
    "password_hash: 5f4dcc3b5aa765d61d8327deb882cf99",
    "user.password_hash = bcrypt(pw)",
    "DB_PASSWORD: ${{ secrets.DB_PASSWORD }}",
    'password = os.environ["PASSWORD"]',
    "password: <your-password>",
    'password = "changeme"',
    "token_url: https://login.example/oauth2/token",
    "secret_name: db-creds-v2",
    "password_file: /run/secrets/db_password",
    "app --password PASSWORD",
    "curl -u $USER:$TOKEN https://x",
    "mysql -u root -p shop",
    'connect("db.internal", "admin", "shop")',
    "Cookie: theme=dark; lang=en",
    "the session cookie, which the browser keeps",
    "max_tokens = 512",
    "sha256: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
    "password = self.password2",
    "<passwordPolicy>strict</passwordPolicy>",
    "Password=;",
    "-----BEGIN RSA PRIVATE KEY-----\n[REDACTED]\n-----END RSA PRIVATE KEY-----",
])
def test_ordinary_text_is_left_as_it_is(text):
    assert find(text) == [] and scrub(text) == text


def test_a_private_key_keeps_its_lines_and_hashed_values_are_blanked():
    key = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\nAAAEbm9uZQAAAARub25l\n-----END OPENSSH PRIVATE KEY-----"
    assert scrub(key) == "-----BEGIN OPENSSH PRIVATE KEY-----\n[REDACTED]\n[REDACTED]\n-----END OPENSSH PRIVATE KEY-----"
    digest = hashlib.sha256(b"Zx9-totally-secret-42").hexdigest()
    assert scrub("a value Zx9-totally-secret-42 quoted", [digest]) == "a value [REDACTED] quoted"


def test_code_lines_are_blanked_by_pattern_value_digest_own_line_and_key_block():
    lines = ["x = 1", 'api = "not-hashed-but-known"', "token: t8Kq2WmZ4vRn6YpL", "MIIEvQIBADANBgkqhkiG9w0B",
             "name = hashme42", "user: bob"]
    out = blank_lines(lines, 10, values=["not-hashed-but-known"], digests=[hashlib.sha256(b"hashme42").hexdigest()],
                      own=range(15, 16), key_rows={13})
    assert out == ["x = 1", 'api = "[REDACTED]"', "token: [REDACTED]", "[REDACTED]", "name = [REDACTED]",
                   "user: [REDACTED]"]


def test_find_tree_names_every_field_and_record_secrets_names_the_message():
    rec = {"messages": [{"role": "user", "content": "ok"}, {"role": "assistant", "content": "key " + VALUES["github-token"]}],
           "metadata": {"provenance": {"branch": "fix/" + VALUES["aws-access-key-id"]}}}
    assert find_tree(rec) == [("messages[1].content", ["github-token"]), ("metadata.provenance.branch", ["aws-access-key-id"])]
    assert record_secrets(rec)[0] == ("messages[1] (assistant)", ["github-token"])
    assert find_tree(scrub_tree(rec)) == []


# ---------------------------------------------------------------- linear time

ADVERSARIAL = textwrap.dedent("""
    import sys
    from secai.secrets import blank_lines, find, hashed_values, scrub
    n = 1 << 20
    units = ["pwd", "pwd=", "password=", "password: a1", "-----BEGIN PRIVATE KEY-----", "connect(", 'connect("a",',
             "<a>", "<password>", "mysql ", "curl ", "curl -u a:", '"\\\\', "a.", "x://u:", "Cookie: a=b;", "sk-ant-",
             ";pwd=", "--password=a", "AccountKey=", "ghp_", " ", "\\n", "password password ", "secret_access_key="]
    for i, u in enumerate(units):
        text = u * (n // len(u))
        scrub(text, {"0" * 64}); find(text); hashed_values(text, {"0" * 64}, 4); blank_lines([text], 1, own=range(1, 2))
        print(i, flush=True)
""")


def test_adversarial_megabyte_inputs_finish(tmp_path):
    """About 1 MB of each repetition that made the old patterns quadratic (24 KB of `pwd` took
    7 s): linear patterns finish in seconds; the timeout only guards against a quadratic one."""
    run = subprocess.run([sys.executable, "-c", ADVERSARIAL], capture_output=True, text=True, timeout=900,
                         cwd=tmp_path, env={"PYTHONPATH": str(ROOT / "lib"), "PATH": "/usr/bin:/bin"})
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == [str(i) for i in range(25)]


# ---------------------------------------------------------------- the corpus through the whole pipeline

def _ok(result):
    code, out, err = result
    assert code == 0, err
    return out


@pytest.fixture(scope="module")
def outputs(tmp_path_factory):
    """Every output of the pipeline on the corpus: {name: bytes}."""
    tmp = tmp_path_factory.mktemp("pipeline")
    b = tmp / "build"
    b.mkdir()
    _ok(run_command(Parse, ["-q", str(CORPUS / "report.sarif"), "-o", str(b / "findings.jsonl")]))
    _ok(run_command(Analyze, ["-q", "--no-cache", "--source-root", str(CORPUS / "src"), str(b / "findings.jsonl"),
                              "-o", str(b / "analyses.jsonl")]))
    for stage in ("analysis", "codefix"):
        _ok(run_command(Narrate, ["-q", "--stage", stage, str(b / "analyses.jsonl"), "-o", str(b / f"{stage}.jsonl")]))
    _ok(run_command(Split, ["-q", str(b / "analysis.jsonl"), "-o", str(b / "dataset")]))
    _ok(run_command(Sarif, ["-q", str(b / "analyses.jsonl"), "-o", str(b / "analyses.sarif")]))
    _ok(run_command(Push, ["dataset", str(b / "dataset"), "--repo", "octo/findings", "--dry-run",
                           "--stage", str(b / "staged")], cwd=tmp))
    files = {p.relative_to(b).as_posix(): p.read_bytes() for p in sorted(b.rglob("*")) if p.is_file()}
    assert {"findings.jsonl", "analyses.jsonl", "analysis.jsonl", "codefix.jsonl", "dataset/train.jsonl",
            "analyses.sarif", "staged/train.jsonl", "staged/README.md"} <= set(files)
    return files


def test_every_corpus_secret_is_in_the_sources_and_the_report():
    sources = b"".join(p.read_bytes() for p in (CORPUS / "src").iterdir())
    report = (CORPUS / "report.sarif").read_bytes()
    for name, value in VALUES.items():
        assert value.encode() in sources and value.encode() in report, name


def test_no_corpus_secret_survives_in_any_output_byte(outputs):
    analyses = [orjson.loads(line) for line in outputs["analyses.jsonl"].splitlines()]
    assert len(analyses) == 29 and sum("code_context" in a for a in analyses) == 29  # every finding has its code
    for name, data in outputs.items():
        for form, value in VALUES.items():
            for shape in {value, json.dumps(value)[1:-1], value.replace("/", "\\/")}:
                assert shape.encode() not in data, (name, form)
    assert REDACTED.encode() in outputs["staged/train.jsonl"]


def test_the_corpus_outputs_keep_what_is_not_secret(outputs):
    analyses = outputs["analyses.jsonl"].decode()
    for kept in ("POSTGRES_USER: shop", "${{ secrets.DB_PASSWORD }}", 'os.environ[\\"PASSWORD\\"]', "theme=dark",
                 "LOG_LEVEL=info", "-----BEGIN OPENSSH PRIVATE KEY-----", "Path=/; HttpOnly", "region = eu-west-1",
                 "POSTGRES_PASSWORD: [REDACTED]", '\\"admin\\", \\"[REDACTED]\\"'):
        assert kept in analyses, kept


# ---------------------------------------------------------------- push checks every field

def test_push_refuses_a_secret_in_metadata_dry_run_or_not(tmp_path, outputs):
    ds = tmp_path / "dataset"
    ds.mkdir()
    for name in ("README.md", "manifest.json", "train.jsonl", "valid.jsonl"):
        if f"dataset/{name}" in outputs:
            (ds / name).write_bytes(outputs[f"dataset/{name}"])
    lines = (ds / "train.jsonl").read_bytes().splitlines(keepends=True)
    rec = orjson.loads(lines[0])
    rec["metadata"]["rule_id"] = "leak " + VALUES["aws-access-key-id"]
    lines[0] = dumps(rec)
    (ds / "train.jsonl").write_bytes(b"".join(lines))
    manifest = orjson.loads((ds / "manifest.json").read_bytes())
    manifest["files"]["train.jsonl"] = hashlib.sha256((ds / "train.jsonl").read_bytes()).hexdigest()
    (ds / "manifest.json").write_bytes(orjson.dumps(manifest))
    for extra in (["--dry-run"], []):
        code, out, err = run_command(Push, ["dataset", str(ds), "--repo", "octo/findings", *extra], cwd=tmp_path, raw=True)
        assert code == 1 and out == "", err
        assert err.strip() == (f"secai-push: error: {ds / 'train.jsonl'}:1: metadata.rule_id: secret pattern "
                               "aws-access-key-id found; a dataset that fails the secret-redaction check is not published")
        assert VALUES["aws-access-key-id"] not in err
    assert not (tmp_path / "build").exists()


def test_split_refuses_a_secret_in_metadata(tmp_path, outputs):
    lines = outputs["analysis.jsonl"].splitlines(keepends=True)
    rec = orjson.loads(lines[0])
    rec["metadata"]["rule_id"] = VALUES["github-token"]
    (tmp_path / "in.jsonl").write_bytes(dumps(rec) + b"".join(lines[1:]))
    code, _, err = run_command(Split, [str(tmp_path / "in.jsonl"), "-o", str(tmp_path / "d")], raw=True)
    assert code == 1 and "metadata.rule_id: secret pattern github-token found" in err
    assert VALUES["github-token"] not in err and not (tmp_path / "d").exists()
