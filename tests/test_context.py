"""Code context (secai.analysis.context): lines, language and enclosing unit per language; paths that
escape the source root; files that give no context; parses(); secrets kept out of the code."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import jsonschema
import pytest
from conftest import FIXTURES, ROOT, run_command

from secai import secrets
from secai.analysis import context, languages
from secai.analysis.context import code_context, locate, read_context
from secai.analysis.languages import detect_language, parses
from secai.commands.parse import Parse

CTX = FIXTURES / "context"
CODE_CONTEXT_SCHEMA = json.loads((ROOT / "schemas" / "analysis.schema.json").read_text())["properties"]["code_context"]
VALIDATOR = jsonschema.Draft202012Validator(CODE_CONTEXT_SCHEMA)


def finding(path: str, start: int | None = 1, end: int | None = None, **extra) -> dict:
    loc = {"path": path}
    if start is not None:
        loc["start_line"] = start
    if end is not None:
        loc["end_line"] = end
    return {"location": loc, **extra}


def lines_of(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").split("\n")[:-1]


def valid(ctx: dict) -> dict:
    VALIDATOR.validate(ctx)
    return ctx


# ---------------------------------------------------------------- enclosing, per language

# (file, finding lines, language, expected enclosing: (kind, name, start, end) or None)
ENCLOSING = [
    ("python/service.py", (6, 6), "python", None),  # module level
    ("python/service.py", (10, 10), "python", ("function", "retry", 9, 10)),
    ("python/service.py", (14, 14), "python", ("class", "UserStore", 13, 27)),
    ("python/service.py", (17, 17), "python", ("method", "UserStore.__init__", 16, 17)),
    ("python/service.py", (21, 21), "python", ("method", "UserStore.find", 19, 22)),  # decorator included
    ("python/service.py", (19, 19), "python", ("method", "UserStore.find", 19, 22)),  # on the decorator
    ("python/service.py", (26, 26), "python", ("function", "run", 25, 26)),  # nested function
    ("python/service.py", (31, 31), "python", ("function", "ping", 30, 31)),
    ("java/UserController.java", (16, 16), "java", ("method", "UserController.find", 14, 17)),
    ("java/UserController.java", (11, 11), "java", ("constructor", "UserController.UserController", 10, 12)),
    ("java/UserController.java", (21, 21), "java", ("method", "UserController.Audit.log", 20, 22)),
    ("java/UserController.java", (8, 8), "java", ("class", "UserController", 7, 24)),
    ("kotlin/Repository.kt", (7, 7), "kotlin", ("method", "UserRepository.find", 6, 9)),
    ("kotlin/Repository.kt", (13, 13), "kotlin", ("function", "runShell", 12, 14)),
    ("javascript/server.js", (7, 7), "javascript", ("function", "render", 6, 8)),
    ("javascript/server.js", (11, 11), "javascript", ("function", "evaluate", 10, 12)),  # arrow, named by its variable
    ("javascript/server.js", (15, 15), "javascript", ("callback", "app.get", 14, 16)),
    ("javascript/server.js", (4, 4), "javascript", None),
    ("typescript/user-service.ts", (12, 12), "typescript", ("method", "UserService.findByName", 11, 15)),
    ("typescript/user-service.ts", (9, 9), "typescript", ("constructor", "UserService.constructor", 9, 9)),
    ("typescript/user-service.ts", (4, 4), "typescript", ("interface", "User", 3, 6)),
    ("typescript/Greeting.tsx", (4, 4), "typescript", ("function", "Greeting", 3, 5)),
    ("go/handler.go", (15, 15), "go", ("method", "Server.FindUser", 13, 17)),
    ("go/handler.go", (20, 20), "go", ("function", "Ping", 19, 21)),
    ("go/handler.go", (10, 10), "go", ("type", "Server", 9, 11)),
    ("k8s/deployment.yaml", (18, 18), "yaml", ("container", "app", 15, 18)),
    ("k8s/deployment.yaml", (13, 13), "yaml", ("container", "migrate", 12, 13)),  # init container
    ("k8s/deployment.yaml", (22, 22), "yaml", ("container", "sidecar", 19, 22)),
    ("k8s/deployment.yaml", (8, 8), "yaml", ("Deployment", "shop/web", 2, 22)),
    ("k8s/deployment.yaml", (2, 22), "yaml", ("Deployment", "shop/web", 2, 22)),  # Checkov: the whole object
    ("k8s/deployment.yaml", (1, 22), "yaml", ("Deployment", "shop/web", 2, 22)),  # leading comment not counted
    ("k8s/deployment.yaml", (15, 22), "yaml", ("Deployment", "shop/web", 2, 22)),  # two containers
    ("k8s/deployment.yaml", (2, 23), "yaml", ("Deployment", "shop/web", 2, 22)),  # Checkov: up to the next `---`
    ("k8s/deployment.yaml", (23, 30), "yaml", ("Service", "web", 24, 30)),  # from its own `---`
    ("k8s/deployment.yaml", (8, 30), "yaml", None),  # two objects
    ("k8s/deployment.yaml", (30, 30), "yaml", ("Service", "web", 24, 30)),  # second document
    (".github/workflows/ci.yml", (18, 18), "yaml", ("step", "Greet", 16, 18)),
    (".github/workflows/ci.yml", (15, 15), "yaml", ("step", "actions/checkout@v4", 13, 15)),
    (".github/workflows/ci.yml", (24, 24), "yaml", ("step", "push", 23, 24)),
    (".github/workflows/ci.yml", (11, 11), "yaml", ("job", "build", 10, 18)),
    (".github/workflows/ci.yml", (13, 18), "yaml", ("job", "build", 10, 18)),
    (".github/workflows/ci.yml", (7, 7), "yaml", ("workflow", "ci", 2, 24)),
    ("yaml/compose.yaml", (5, 5), "yaml", ("service", "web", 3, 5)),
    ("yaml/compose.yaml", (9, 9), "yaml", ("service", "db", 6, 9)),
    ("yaml/settings.yaml", (4, 4), "yaml", ("key", "server.tls", 3, 7)),
    ("yaml/settings.yaml", (6, 6), "yaml", ("key", "server.tls.ciphers", 5, 7)),
    ("terraform/main.tf", (9, 9), "hcl", ("resource", "aws_s3_bucket.logs", 7, 10)),
    ("terraform/main.tf", (7, 10), "hcl", ("resource", "aws_s3_bucket.logs", 7, 10)),
    ("terraform/main.tf", (18, 18), "hcl", ("resource", "aws_security_group.ssh", 12, 21)),  # nested block
    ("terraform/main.tf", (4, 4), "hcl", ("variable", "region", 3, 5)),
    ("terraform/main.tf", (1, 1), "hcl", None),
    ("docker/Dockerfile", (7, 7), "dockerfile", ("stage", "build", 3, 7)),
    ("docker/Dockerfile", (11, 11), "dockerfile", ("stage", "debian:bookworm-slim", 9, 12)),
    ("docker/Dockerfile", (2, 2), "dockerfile", ("instruction", "ARG", 2, 2)),  # before the first FROM
    ("docker/Dockerfile", (5, 10), "dockerfile", None),  # across two stages
    ("shell/deploy.sh", (5, 5), "shell", ("function", "fetch", 4, 6)),
    ("plain/settings.env", (3, 3), "dotenv", None),
]


@pytest.mark.parametrize("path,lines,language,expected", ENCLOSING,
                         ids=[f"{p}:{a}-{b}" for p, (a, b), _, _ in ENCLOSING])
def test_enclosing(path, lines, language, expected):
    ctx = valid(code_context(finding(path, *lines), CTX, radius=2))
    assert ctx["path"] == path and ctx["language"] == language
    assert ctx["finding_lines"] == list(lines)
    if expected is None:
        assert "enclosing" not in ctx
    else:
        kind, name, start, end = expected
        assert ctx["enclosing"] == {"kind": kind, "name": name, "start_line": start, "end_line": end}


def test_every_language_has_its_grammar():
    for language in ("python", "java", "kotlin", "javascript", "typescript", "go", "yaml", "hcl", "dockerfile"):
        assert languages.has_grammar(language), language


def test_parsers_are_created_once():
    assert languages.parser_for("python") is languages.parser_for("python")
    assert languages.parser_for("tsx") is not languages.parser_for("typescript")


# ---------------------------------------------------------------- the lines shown

def test_lines_and_radius():
    path = CTX / "python" / "service.py"
    ctx = valid(code_context(finding("python/service.py", 21, 22), CTX, radius=3))
    assert (ctx["start_line"], ctx["end_line"]) == (18, 25)
    assert ctx["code"] == "\n".join(lines_of(path)[17:25])


@pytest.mark.parametrize("start,end,radius,window", [
    (2, 2, 5, (1, 7)),      # clipped at the first line
    (34, 35, 5, (29, 35)),  # clipped at the last line (the file has 35)
    (1, 35, 5, (1, 35)),    # whole file
    (10, 10, 0, (10, 10)),  # radius 0: the finding's lines only
    (35, 99, 2, (33, 35)),  # an end past the file is clipped; finding_lines keep what was reported
])
def test_radius_is_clipped_to_the_file(start, end, radius, window):
    ctx = valid(code_context(finding("python/service.py", start, end), CTX, radius=radius))
    assert (ctx["start_line"], ctx["end_line"]) == window
    assert ctx["finding_lines"] == [start, end]
    assert len(ctx["code"].split("\n")) == window[1] - window[0] + 1


def test_max_lines_cuts_a_huge_range():
    ctx = valid(code_context(finding("python/service.py", 1, 35), CTX, radius=0, max_lines=10))
    assert (ctx["start_line"], ctx["end_line"]) == (1, 10)


def test_crlf_and_bom(tmp_path):
    (tmp_path / "w.py").write_bytes(b"\xef\xbb\xbfdef f():\r\n    return 1\r\n\r\nx = f()\r\n")
    ctx = valid(code_context(finding("w.py", 2), tmp_path, radius=5))
    assert ctx["code"] == "def f():\n    return 1\n\nx = f()"
    assert ctx["enclosing"] == {"kind": "function", "name": "f", "start_line": 1, "end_line": 2}


def test_deterministic():
    f = finding("k8s/deployment.yaml", 2, 22)
    assert code_context(f, CTX) == code_context(f, CTX)


# ---------------------------------------------------------------- paths

@pytest.fixture
def tree(tmp_path):
    """root/ (the source root) with app.py and sub/mod.py; outside.py beside the root."""
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    (root / "app.py").write_text("print('inside')\n")
    (root / "sub" / "mod.py").write_text("def f():\n    return 'inside sub'\n")
    (tmp_path / "outside.py").write_text("SECRET = 'outside the root'\n")
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "mod.py").write_text("print('elsewhere')\n")
    return root


@pytest.mark.parametrize("path", ["../outside.py", "sub/../../outside.py", "./../outside.py", "..\\outside.py",
                                  "sub/../app.py"])
def test_dotdot_is_refused(tree, path):
    ctx, skip = read_context(finding(path), tree)
    assert ctx is None and skip.code == "refused" and skip.refused


def test_absolute_path_outside_root_is_never_read(tree):
    outside = tree.parent / "outside.py"
    ctx, skip = read_context(finding(str(outside)), tree)
    assert ctx is None and skip.code == "missing" and not skip.refused
    # a suffix of an outside path that exists under the root names the file under the root
    ctx = code_context(finding(str(tree.parent / "elsewhere" / "sub" / "mod.py")), tree)
    assert ctx["path"] == "sub/mod.py" and "inside sub" in ctx["code"]


def test_symlink_out_of_the_root_is_refused(tree):
    (tree / "link.py").symlink_to(tree.parent / "outside.py")
    (tree / "linkdir").symlink_to(tree.parent / "elsewhere", target_is_directory=True)
    for path in ("link.py", "linkdir/mod.py", str(tree / "link.py")):
        ctx, skip = read_context(finding(path), tree)
        assert ctx is None and skip.code == "refused", path
    # a symlink that stays inside is followed
    (tree / "alias.py").symlink_to(tree / "sub" / "mod.py")
    assert code_context(finding("alias.py", 2), tree)["path"] == "alias.py"


def test_symlinked_root_is_fine(tree):
    link = tree.parent / "rootlink"
    link.symlink_to(tree, target_is_directory=True)
    assert code_context(finding("sub/mod.py", 2), link)["path"] == "sub/mod.py"
    assert code_context(finding(str(link / "app.py")), link)["path"] == "app.py"


@pytest.mark.parametrize("scanner_path,expected", [
    ("/home/runner/work/shop/shop/python/service.py", "python/service.py"),  # CI checkout
    ("/tmp/demo/terraform/main.tf", "terraform/main.tf"),
    ("/terraform/main.tf", "terraform/main.tf"),                            # Checkov's leading /
    ("file:///src/go/handler.go", "go/handler.go"),
    ("C:\\work\\shop\\java\\UserController.java", "java/UserController.java"),
    ("shop/k8s/deployment.yaml", "k8s/deployment.yaml"),                    # scanned from the parent
    ("./python//service.py", "python/service.py"),
])
def test_scanner_paths_map_under_the_root(scanner_path, expected):
    ctx = valid(code_context(finding(scanner_path, 1), CTX))
    assert ctx["path"] == expected


def test_absolute_path_under_the_root():
    ctx = code_context(finding(str((CTX / "go" / "handler.go").resolve()), 1), CTX)
    assert ctx["path"] == "go/handler.go"


def test_longest_suffix_wins(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "b.py").write_text("x = 'a/b'\n")
    (tmp_path / "b.py").write_text("x = 'b'\n")
    assert locate(tmp_path, "/ci/checkout/a/b.py")[1] == "a/b.py"
    assert locate(tmp_path, "/ci/checkout/c/b.py")[1] == "b.py"


# ---------------------------------------------------------------- no context

def test_files_that_give_no_context(tmp_path):
    (tmp_path / "blob.bin").write_bytes(b"\x7fELF\x00\x00\x01" + bytes(range(256)))
    (tmp_path / "huge.py").write_bytes(b"x = 1\n" * (context.MAX_BYTES // 6 + 10))
    (tmp_path / "dir.py").mkdir()
    (tmp_path / "short.py").write_text("x = 1\n")
    cases = {
        "binary": finding("blob.bin"),
        "too-large": finding("huge.py"),
        "missing": finding("nope.py"),
        "not-a-file": finding("dir.py"),
        "no-lines": finding("short.py", None),
        "no-location": {"package": {"name": "x"}},
        "out-of-range": finding("short.py", 5),
    }
    for code, f in cases.items():
        ctx, skip = read_context(f, tmp_path)
        assert ctx is None and skip.code == code, (code, skip)
        assert code_context(f, tmp_path) is None
    assert read_context(finding("https://example.com/app.py"), tmp_path)[1].code == "not-a-file"
    assert read_context(finding("short.py"), tmp_path / "no-root")[1].code == "missing"
    assert read_context(finding("huge.py"), tmp_path, max_bytes=100)[1].code == "too-large"


def test_zero_line_is_no_line(tmp_path):
    (tmp_path / "a.py").write_text("x = 1\n")
    assert read_context(finding("a.py", 0), tmp_path)[1].code == "no-lines"


def test_a_file_changed_since_it_was_read(tmp_path):
    p = tmp_path / "a.py"
    p.write_text("x = 1\n")
    assert code_context(finding("a.py"), tmp_path)["code"] == "x = 1"
    p.write_text("def g():\n    y = 2\n")
    os.utime(p, ns=(p.stat().st_atime_ns, p.stat().st_mtime_ns + 10**9))
    ctx = code_context(finding("a.py", 2), tmp_path)
    assert ctx["code"] == "def g():\n    y = 2" and ctx["enclosing"]["name"] == "g"


# ---------------------------------------------------------------- languages

@pytest.mark.parametrize("path,head,language", [
    ("app.py", b"", "python"), ("Main.java", b"", "java"), ("build.gradle.kts", b"", "kotlin"),
    ("a.kt", b"", "kotlin"), ("index.mjs", b"", "javascript"), ("App.jsx", b"", "javascript"),
    ("a.ts", b"", "typescript"), ("View.tsx", b"", "typescript"), ("main.go", b"", "go"),
    ("k8s/deploy.yml", b"", "yaml"), (".github/workflows/ci.yaml", b"", "yaml"),
    ("main.tf", b"", "hcl"), ("prod.tfvars", b"", "hcl"), ("terragrunt.hcl", b"", "hcl"),
    ("main.tf.json", b"", "json"), ("Dockerfile", b"", "dockerfile"), ("api.Dockerfile", b"", "dockerfile"),
    ("Dockerfile.prod", b"", "dockerfile"), ("Containerfile", b"", "dockerfile"), ("package.json", b"", "json"),
    ("deploy.sh", b"", "shell"), ("requirements.txt", b"", "requirements"),
    ("requirements-dev.txt", b"", "requirements"), ("requirements/prod.txt", b"", "requirements"),
    ("pyproject.toml", b"", "toml"), ("Pipfile", b"", "toml"), ("notes.txt", b"", "text"),
    ("bin/tool", b"#!/usr/bin/env python3\n", "python"), ("bin/run", b"#!/bin/bash -e\n", "shell"),
    ("bin/srv", b"#!/usr/bin/env -S node --harmony\n", "javascript"), ("bin/x", b"", "text"),
])
def test_detect_language(path, head, language):
    assert detect_language(path, head) == language


def test_shebang_file_gets_its_language():
    assert code_context(finding("shell/install", 2), CTX)["language"] == "shell"


# ---------------------------------------------------------------- parses()

PARSES = [
    ("python", "def f(x):\n    return x\n", True),
    ("python", "    return yaml.safe_load(data)\n", True),  # an indented fragment
    ("python", "def f(x)\n    return x\n", False),
    ("java", "public class A { void m() { int x = 1; } }", True),
    ("java", "public String run(String q) { return q.trim(); }", True),  # a class member
    ("java", "String s = q.trim();", True),  # a statement
    ("java", "int x = ;", False),
    ("java", "} class X {", False),  # would close the wrapper
    ("kotlin", "fun f(a: Int): Int {\n    return a\n}\n", True),
    ("kotlin", "fun f( {", False),
    ("javascript", "function f(a) { return a; }", True),
    ("javascript", "get(a) { return a; }", True),
    ("javascript", "function (", False),
    ("typescript", "async find(id: string): Promise<void> { await q(id); }", True),
    ("typescript", "const a = <div>{x}</div>;", True),  # TSX
    ("typescript", "let x: = 1;", False),
    ("go", "func f() {}", True),
    ("go", "rows, err := db.Query(\"SELECT 1\", id)", True),
    ("go", "func f( {", False),
    ("yaml", "securityContext:\n  runAsNonRoot: true\n", True),
    ("yaml", "a: [1, 2\n", False),
    ("yaml", "key: value\n  bad: indent\n", False),
    ("hcl", 'resource "aws_s3_bucket" "b" {\n  acl = "private"\n}\n', True),
    ("hcl", 'resource "a" {\n  x = \n}\n', False),
    ("terraform", 'acl = "private"', True),
    ("dockerfile", "FROM python:3.12-slim\nUSER app\n", True),
    ("dockerfile", "FROM\n", False),
    ("json", '{"a": 1}', True),
    ("json", "{a: 1}", False),
    ("toml", "a = 1\n", True),
    ("toml", "a = \n", False),
    ("requirements", "requests>=2.32.0\nflask==3.0.3  # pinned\nuvicorn[standard]>=0.30; python_version >= '3.9'\n", True),
    ("requirements", "requests >== 2\n", False),
    ("shell", "f() { echo hi; }", True),
    ("shell", "if [ x ]; then\n", False),
    ("python", "   \n", False),  # blank code is no fix
    ("cobol", "DISPLAY 'HI'.", False),  # no checker
]


@pytest.mark.parametrize("language,code,expected", PARSES, ids=[f"{lang}-{i}" for i, (lang, _, _) in enumerate(PARSES)])
def test_parses(language, code, expected):
    assert parses(code, language) is expected


def test_fixtures_parse():
    for path, language in [("python/service.py", "python"), ("java/UserController.java", "java"),
                           ("kotlin/Repository.kt", "kotlin"), ("javascript/server.js", "javascript"),
                           ("typescript/user-service.ts", "typescript"), ("typescript/Greeting.tsx", "tsx"),
                           ("go/handler.go", "go"), ("k8s/deployment.yaml", "yaml"),
                           (".github/workflows/ci.yml", "yaml"), ("terraform/main.tf", "hcl"),
                           ("docker/Dockerfile", "dockerfile"), ("shell/deploy.sh", "shell")]:
        assert parses((CTX / path).read_text(), language), path


# ---------------------------------------------------------------- secrets

def test_secret_finding_lines_are_blanked():
    f = finding("plain/settings.env", 3, category="secret")
    ctx = valid(code_context(f, CTX, radius=1))
    assert ctx["code"] == "DEBUG=false\nAPI_TOKEN=[REDACTED]\nLOG_LEVEL=info"
    assert "fixture-not-a-real-token" not in ctx["code"]


def test_hashed_secret_is_redacted_wherever_it_is(tmp_path):
    secret = "fixture-value-0123"
    (tmp_path / "conf.py").write_text(f'PASSWORD = "{secret}"\nBACKUP = PASSWORD or "{secret}"\nX = 1\n')
    digest = hashlib.sha256(secret.encode()).hexdigest()
    # a code finding that carries the secret's hash (Bandit B105): the value goes, quotes stay
    ctx = code_context(finding("conf.py", 1, category="sast", secret={"sha256": digest}), tmp_path)
    assert ctx["code"] == 'PASSWORD = "[REDACTED]"\nBACKUP = PASSWORD or "[REDACTED]"\nX = 1'
    # another scanner's finding on the same line, with the run's hashes passed in
    assert secret not in code_context(finding("conf.py", 1), tmp_path, hashes=[digest])["code"]
    assert secret in code_context(finding("conf.py", 1), tmp_path)["code"]
    # plain strings to blank
    assert secret not in code_context(finding("conf.py", 3), tmp_path, redact=[secret])["code"]


@pytest.mark.parametrize("line,blanked", [
    ('    api_key = "abcd1234efgh"', "    api_key = [REDACTED]"),
    ("  password: hunter2hunter2", "  password: [REDACTED]"),
    ('token := "abcd1234"', "token := [REDACTED]"),
    ("private static final String KEY = \"abcd1234\";", "private static final String KEY = [REDACTED]"),
    ("  - AWS_SECRET=abcd1234", "  - AWS_SECRET=[REDACTED]"),
    ("postgres://admin:s3cr3tpass@db/shop", "[REDACTED]"),
    ("    MIIEvQIBADANBgkqhkiG9w0BAQEFAASC", "    [REDACTED]"),
    ("", ""),
    ("---", "---"), ("  },", "  },"),          # structure beside a secret, no secret in it
])
def test_blank(line, blanked):
    assert secrets.blank_value(line) == blanked


def test_private_key_blocks_are_blanked(tmp_path):
    body = ["MIIBOgIBAAJBAK" + "x" * 40, "y" * 54, "z" * 20 + "=="]
    pem = ["-----BEGIN RSA PRIVATE KEY-----", *body, "-----END RSA PRIVATE KEY-----"]
    (tmp_path / "deploy.yaml").write_text("key: |\n" + "".join(f"  {line}\n" for line in pem) + "other: 1\n")
    ctx = code_context(finding("deploy.yaml", 1), tmp_path, radius=10)
    assert not any(b in ctx["code"] for b in body)
    assert "  -----BEGIN RSA PRIVATE KEY-----\n  [REDACTED]\n" in ctx["code"] and "other: 1" in ctx["code"]
    inline = '{"key": "-----BEGIN PRIVATE KEY-----\\nMIIBVQ' + "q" * 30 + '\\n-----END PRIVATE KEY-----\\n"}\n'
    (tmp_path / "sa.json").write_text(inline)
    code = code_context(finding("sa.json", 1), tmp_path)["code"]
    assert "q" * 30 not in code and "-----BEGIN PRIVATE KEY-----\\n[REDACTED]\\n-----END PRIVATE KEY-----" in code


# ---------------------------------------------------------------- the shipped examples

def test_examples_every_located_finding_gets_a_context():
    code, findings, err = run_command(Parse, ["-q", str(ROOT / "examples" / "artifacts")])
    assert code == 0, err
    located = [f for f in findings if (f.get("location") or {}).get("path") and f["location"].get("start_line")]
    assert len(located) == len(findings) > 50
    contexts = [code_context(f, ROOT / "examples" / "demo-app") for f in located]
    assert all(c is not None for c in contexts)
    for c in contexts:
        valid(c)
    enclosed = [c for c in contexts if "enclosing" in c]
    # module-level Python (imports, a constant, the __main__ block) is the only code with no unit around it
    assert {c["path"] for c in contexts if "enclosing" not in c} == {"app.py"}
    assert len(enclosed) >= 0.8 * len(contexts)
    kinds = {(c["language"], c["enclosing"]["kind"]) for c in enclosed}
    assert {("python", "function"), ("hcl", "resource"), ("yaml", "Deployment"), ("dockerfile", "stage"),
            ("yaml", "job"), ("yaml", "workflow")} <= kinds
    # Bandit hashes the hard-coded password: it is in no context, including Semgrep's (given the hashes)
    hashes = [f["secret"]["sha256"] for f in findings if f.get("secret")]
    assert hashes
    for f in located:
        assert "hunter2" not in code_context(f, ROOT / "examples" / "demo-app", hashes=hashes)["code"]
