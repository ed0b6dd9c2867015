"""Python fixes from the parse tree (secai.analysis.pyfix, the `rewrite:` edits of the fix rules in
lib/secai/analysis/kb/fixes/50_python.yaml and 55_django_flask.yaml): each rewrite makes exactly the
fix shown on code a line pattern cannot read (calls over several lines, keywords in any order,
imported aliases), and makes none where the fix would be wrong for that code (a binary file, a
keyword already there, a seeded random, a value that cannot be a query parameter, ...). With
bandit installed, the fixes are confirmed by it like every other fix (skipped without it)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from secai.analysis import fixrules, pyfix
from secai.analysis.languages import built_into_image
from secai.analysis.verify import VERIFIED, Candidate, Scanners, verify

SEMGREP = "semgrep-rules.python."


def fix(tmp_path: Path, code: str, rule_id: str, line: int, last: int | None = None, tool: str = "semgrep"):
    """(fixed code, rule, explanation) the fix rules make for a finding on lines line..last of app.py
    holding `code` (the whole file is the code context), or None."""
    text = textwrap.dedent(code).lstrip("\n")
    (tmp_path / "app.py").write_text(text)
    context = {"path": "app.py", "language": "python", "start_line": 1, "end_line": text.count("\n") + 1,
               "code": text.rstrip("\n"), "finding_lines": [line, last or line]}
    made = fixrules.rule_fix({"tool": tool, "rule_id": rule_id, "cwe": []}, context, tmp_path)
    return (made[0]["code"], made[1], made[0]["explanation"]) if made else None


OPEN = SEMGREP + "lang.best-practice.unspecified-open-encoding"


def test_open_gets_an_encoding_after_its_last_argument_whatever_the_layout(tmp_path):
    code, rule, _ = fix(tmp_path, '''
        with open(
            path,
            mode="w",
        ) as f:
            f.write(text)
        ''', OPEN, 1, 4)
    assert rule == "python-open-text-encoding"
    assert code == 'with open(\n    path,\n    mode="w", encoding="utf-8",\n) as f:\n    f.write(text)'
    assert fix(tmp_path, "data = open('a.txt').read()\n", OPEN, 1)[0] == \
        "data = open('a.txt', encoding=\"utf-8\").read()"


@pytest.mark.parametrize("call", ["open(p, 'rb')", "open(p, mode='wb')", "open(p, 'r', encoding='latin-1')",
                                  "open(p, 'r', -1, 'latin-1')", "open(p, mode)", "open(p, **options)"],
                         ids=["binary", "binary-keyword", "has-encoding", "positional-encoding", "unknown-mode",
                              "kwargs"])
def test_open_keeps_binary_modes_and_given_encodings(tmp_path, call):
    assert fix(tmp_path, f"f = {call}\n", OPEN, 1) is None


COOKIE = SEMGREP + "django.security.audit.secure-cookies.django-secure-set-cookie"


def test_cookie_flags_are_added_or_strengthened_never_repeated(tmp_path):
    code, rule, explanation = fix(tmp_path, '''
        response.set_cookie('userid', uid, samesite=None,
                            secure=False)
        ''', COOKIE, 1, 2)
    assert rule == "python-cookie-secure-httponly-samesite" and "HttpOnly" in explanation
    assert code == "response.set_cookie('userid', uid, samesite='Lax',\n                    secure=True, httponly=True)"
    kept = fix(tmp_path, "response.set_cookie('k', v, secure=settings.HTTPS)\n", COOKIE, 1)[0]
    assert kept == "response.set_cookie('k', v, secure=settings.HTTPS, httponly=True, samesite='Lax')"  # the code's choice
    assert fix(tmp_path, "r.set_cookie('k', v, secure=True, httponly=True, samesite='Strict')\n", COOKIE, 1) is None
    assert fix(tmp_path, "r.set_cookie('k', v, **flags)\n", COOKIE, 1) is None


CSRF = SEMGREP + "django.security.audit.csrf-exempt.no-csrf-exempt"


def test_csrf_exempt_is_removed_under_any_import_name_and_the_token_is_asked_for(tmp_path):
    code, rule, explanation = fix(tmp_path, '''
        from django.views.decorators.csrf import csrf_exempt as exempt

        @login_required
        @exempt
        def transfer(request):
            return do(request.POST)
        ''', CSRF, 3, 6)
    assert rule == "django-drop-csrf-exempt"
    assert code == "@login_required\ndef transfer(request):\n    return do(request.POST)"
    assert "{% csrf_token %}" in explanation and "X-CSRFToken" in explanation and "transfer" in explanation
    assert fix(tmp_path, '''
        from myapp.util import csrf_exempt

        @csrf_exempt
        def view(request):
            return 1
        ''', CSRF, 3, 5) is None  # not Django's decorator


RANDOM = "B311"


def test_random_draws_from_secrets_with_the_same_arguments(tmp_path):
    code, rule, _ = fix(tmp_path, '''
        from random import randint as pick

        def otp():
            return pick(100,
                        999)
        ''', RANDOM, 4, 5, tool="bandit")
    assert rule == "python-random-to-secrets"
    assert code == "    import secrets\n    return secrets.SystemRandom().randint(100,\n                999)"  # layout kept
    code, _, _ = fix(tmp_path, "import random\nimport secrets\ntoken = random.choice(ALPHABET)\n", RANDOM, 3,
                     tool="bandit")
    assert code == "token = secrets.choice(ALPHABET)"   # the file imports secrets already
    assert fix(tmp_path, "import random\nrandom.seed(7)\nx = random.random()\n", RANDOM, 3, tool="bandit") is None


def test_yaml_load_in_any_spelling_becomes_safe_load(tmp_path):
    code, rule, _ = fix(tmp_path, "import yaml as y\ndata = y.load(\n    stream,\n    y.FullLoader)\n", "B506", 2, 4,
                        tool="bandit")
    assert (code, rule) == ("data = y.safe_load(stream)", "python-yaml-safe-load-any-spelling")
    with pytest.raises(pyfix.NoRewrite, match="safe one"):
        pyfix.rewrite("yaml-safe-load", pyfix.Source("import yaml\nyaml.load(s, Loader=yaml.SafeLoader)\n"), 2, 2, {})


def test_sql_built_from_strings_passes_its_values_as_parameters(tmp_path):
    code, rule, explanation = fix(tmp_path, '''
        import sqlite3
        q = "SELECT * FROM users WHERE name='" + name + "'AND age>" + str(age)
        cur.execute(q)
        ''', "B608", 2, tool="bandit")
    assert rule == "python-query-parameters" and "(name, str(age))" in explanation
    assert code == "q = \"SELECT * FROM users WHERE name=? AND age>?\"\ncur.execute(q, (name, str(age)))"
    code, _, _ = fix(tmp_path, '''
        from django.db import models
        rows = User.objects.raw(f"SELECT * FROM auth_user WHERE id = {uid} AND name LIKE 'a%'")
        ''', "B608", 2, tool="bandit")
    assert code == "rows = User.objects.raw(\"SELECT * FROM auth_user WHERE id = %s AND name LIKE 'a%%'\", (uid,))"


@pytest.mark.parametrize("code", [
    'import sqlite3\nq = "SELECT * FROM " + table\ncur.execute(q)\n',                     # a table name
    'import sqlite3\nq = "SELECT * FROM t WHERE id IN (" + ids + ")"\ncur.execute(q)\n',  # a list for IN
    'import sqlite3\nq = "SELECT * FROM t WHERE n LIKE \'%" + s + "%\'"\ncur.execute(q)\n',  # part of a string
    'q = "SELECT * FROM t WHERE id=" + uid\ncur.execute(q)\n',                           # driver unknown
    'import sqlite3\nq = "SELECT * FROM t WHERE id=" + uid\ncur.execute(q, extra)\n',     # params given
], ids=["table", "in-list", "like-part", "no-driver", "has-params"])
def test_sql_values_that_cannot_be_parameters_make_no_fix(tmp_path, code):
    assert fix(tmp_path, code, "B608", 2, tool="bandit") is None


RAISE = SEMGREP + "requests.best-practice.use-raise-for-status.use-raise-for-status"


def test_a_kept_response_raises_for_its_status(tmp_path):
    code, rule, _ = fix(tmp_path, "def f(url):\n    r = requests.get(url,\n                     timeout=5)\n    return r.json()\n",
                        RAISE, 2, 3)
    assert rule == "python-requests-raise-for-status"
    assert code == "    r = requests.get(url,\n                     timeout=5)\n    r.raise_for_status()"
    assert fix(tmp_path, "requests.post(url, timeout=5)\n", RAISE, 1) is None  # the response is not kept


NEVER_CLOSED = SEMGREP + "lang.best-practice.open-never-closed.open-never-closed"


def test_an_open_file_is_closed_by_a_with_block_over_its_uses(tmp_path):
    code, rule, _ = fix(tmp_path, '''
        def read(p):
            try:
                f = open(p)
                data = f.read()
                return data
            except OSError:
                return ""
        ''', NEVER_CLOSED, 3)
    assert rule == "python-open-in-with"
    assert code == ("    try:\n        with open(p) as f:\n            data = f.read()\n        return data\n"
                    "    except OSError:\n        return \"\"")
    assert fix(tmp_path, "def g(p):\n    f = open(p)\n    f.readline()\n    return f\n", NEVER_CLOSED, 2) is None


def test_a_repeated_dict_key_keeps_only_the_value_python_keeps(tmp_path):
    rule_id = SEMGREP + "lang.maintainability.useless-literal.useless-literal"
    code, rule, _ = fix(tmp_path, 'ctx = {"error": "old", "n": 1, "error": msg}\n', rule_id, 1)
    assert (code, rule) == ('ctx = {"n": 1, "error": msg}', "python-dict-drop-overwritten-keys")
    assert fix(tmp_path, 'ctx = {"error": log(), "error": msg}\n', rule_id, 1) is None  # the call would go


def test_a_secret_attribute_comes_from_the_environment(tmp_path):
    code, rule, _ = fix(tmp_path, "app.secret_key = 'dev-key'  # change me\n", "B105", 1, tool="bandit")
    assert (code, rule) == ('import os\napp.secret_key = os.environ["SECRET_KEY"]',
                            "python-secret-attribute-from-environment")


def test_an_unknown_rewrite_is_refused_when_the_rules_load(tmp_path):
    import yaml

    (tmp_path / "r.yaml").write_text(yaml.safe_dump([{"id": "r", "match": {"rule_ids": ["X"]}, "language": "python",
                                                      "edits": [{"rewrite": "exec-it"}],
                                                      "explanation": "Does something it cannot."}]))
    with pytest.raises(fixrules.FixRuleError, match="unknown rewrite 'exec-it'"):
        fixrules.fix_rules(tmp_path)


def test_bandit_confirms_the_tree_rewrites(tmp_path):
    scanners = Scanners.find()
    if "bandit" not in scanners.paths:
        pytest.skip("bandit not installed (run `make scanners`)")
    cases = {
        "B311": "import random\n\ndef otp():\n    return random.randint(100, 999)\n",
        "B608": "import sqlite3\n\ndef find(cur, name):\n    q = \"SELECT * FROM users WHERE name='\" + name + \"'\"\n"
                "    return cur.execute(q)\n",
        "B506": "import yaml\n\ndef read(f):\n    return yaml.load(\n        f, Loader=yaml.Loader)\n",
    }
    candidates = []
    for n, (rule_id, text) in enumerate(cases.items()):
        root = tmp_path / str(n)
        root.mkdir()
        (root / "app.py").write_text(text)
        line = next(i for i, t in enumerate(text.split("\n"), 1) if "random" in t and "import" not in t
                    or "SELECT" in t or "yaml.load" in t)
        context = {"path": "app.py", "language": "python", "start_line": 1, "end_line": text.count("\n"),
                   "code": text.rstrip("\n"), "finding_lines": [line, line]}
        finding = {"id": rule_id, "tool": "bandit", "rule_id": rule_id, "cwe": []}
        made, _ = fixrules.rule_fix(finding, context, root)
        candidates.append((root, Candidate(rule_id, finding, context, made)))
    for root, c in candidates:
        assert verify([c], root, scanners)[c.key].reason == VERIFIED, (c.key, c.fix["code"])


PICKLE = SEMGREP + "lang.security.deserialization.avoid-pickle"


def test_pickle_reads_become_json_only_where_nothing_writes_pickles(tmp_path):
    reader = '''
        import pickle

        def load(blob):
            return pickle.loads(blob)
        '''
    code, rule, _ = fix(tmp_path, reader, PICKLE, 4)
    assert rule == "python-pickle-to-json" and "json.loads(blob)" in code and "pickle.loads" not in code
    # the same module writes the pickles it reads back as objects: JSON on one side only breaks it
    both = reader + '''
        token = pickle.dumps(User())
        '''
    assert fix(tmp_path, both, PICKLE, 4) is None


def test_the_listen_address_stays_all_interfaces_in_code_built_into_an_image(tmp_path):
    """Inside a container the server must listen on all interfaces for the published port to reach
    it: code that a Dockerfile of its tree builds gets no loopback default."""
    code = "from flask import Flask\napp = Flask(__name__)\nif __name__ == '__main__':\n    app.run(host='0.0.0.0', port=5000)\n"
    made = fix(tmp_path, code, "B104", 4, tool="bandit")
    assert made and made[1] == "python-bind-address-from-environment" and 'os.environ.get("HOST", "127.0.0.1")' in made[0]
    (tmp_path / "Dockerfile").write_text('FROM python:3.12-slim\nWORKDIR /app\nCOPY . .\nCMD ["python", "app.py"]\n')
    assert fix(tmp_path, code, "B104", 4, tool="bandit") is None
    assert built_into_image(tmp_path, "app.py") and not built_into_image(tmp_path / "elsewhere", "app.py")


HASH = "B324"


def test_a_weak_hash_named_for_a_cache_or_looked_up_as_a_key_is_declared_not_for_security(tmp_path):
    code, rule, explanation = fix(tmp_path, '''
        import hashlib

        def cache_key(url):
            return hashlib.md5(
                url.encode()).hexdigest()
        ''', HASH, 4, 5, tool="bandit")
    assert rule == "python-weak-hash-not-for-security" and "Python 3.9" in explanation and "cache_key" in explanation
    assert code == "    return hashlib.md5(\n        url.encode(), usedforsecurity=False).hexdigest()"
    code, _, explanation = fix(tmp_path, '''
        from hashlib import sha1
        seen = {}

        def add(blob):
            h = sha1(blob).hexdigest()
            if h in seen:
                return
            seen[h] = blob
        ''', HASH, 5, tool="bandit")
    assert code == "    h = sha1(blob, usedforsecurity=False).hexdigest()" and "looked up in a dict" in explanation
    code, _, _ = fix(tmp_path, "import hashlib\netag = hashlib.new('md5')\n", HASH, 2, tool="bandit")
    assert code == "etag = hashlib.new('md5', usedforsecurity=False)"
    code, _, _ = fix(tmp_path, "import hashlib\n\ndef file_checksum(f):\n    h = hashlib.md5()\n", HASH, 4,
                     tool="bandit")
    assert code == "    h = hashlib.md5(usedforsecurity=False)"


@pytest.mark.parametrize("code", [
    "import hashlib\n\ndef store(user, password):\n    user.pw = hashlib.md5(password.encode()).hexdigest()\n",
    "import hashlib\n\ndef make_reset_token(user):\n    return hashlib.sha1(user.email.encode()).hexdigest()\n",
    "import hashlib\n\ndef cache_entry(secret):\n    return hashlib.md5(secret).hexdigest()\n",     # a cache of a secret
    "import hashlib\nsession_key = hashlib.md5(os.urandom(16)).hexdigest()\n",
    "import hashlib\n\ndef f(blob):\n    return hashlib.md5(blob).hexdigest()\n",              # purpose unknown
    "import hashlib\ncache = hashlib.md5(b, usedforsecurity=True)\n",                         # the code decided
    "import hashlib\ncache = hashlib.sha256(b)\n",                                            # not a weak hash
], ids=["password", "reset-token", "secret-input", "session-key", "unknown", "flag-given", "sha256"])
def test_a_weak_hash_for_a_security_use_or_an_unknown_one_gets_no_flag(tmp_path, code):
    line = next(i for i, t in enumerate(code.split("\n"), 1) if "hashlib." in t and "import" not in t)
    assert fix(tmp_path, code, HASH, line, tool="bandit") is None


TEMP = "B108"


def test_a_scratch_file_at_a_fixed_temp_path_becomes_a_private_temporary_file(tmp_path):
    code, rule, explanation = fix(tmp_path, '''
        import csv

        def report(rows):
            path = "/tmp/report.csv"
            with open(path, "w", newline="") as f:
                csv.writer(f).writerows(rows)
            with open(path) as f:  # read back
                return f.read()
        ''', TEMP, 4, tool="bandit")
    assert rule == "python-temp-path-to-mkstemp" and "0600" in explanation
    assert code == ('    import os\n    import tempfile\n    fd, path = tempfile.mkstemp(suffix=".csv")\n    os.close(fd)\n'
                    '    try:\n        with open(path, "w", newline="") as f:\n            csv.writer(f).writerows(rows)\n'
                    '        with open(path) as f:  # read back\n            return f.read()\n'
                    '    finally:\n        os.remove(path)')
    code, rule, _ = fix(tmp_path, '''
        import tempfile

        def roundtrip(data):
            with open('/var/tmp/scratch', 'w+', encoding='utf-8') as f:
                f.write(data)
                f.seek(0)
                return f.read()
        ''', TEMP, 4, tool="bandit")
    assert rule == "python-temp-path-to-temporary-file"
    assert code == ("    with tempfile.TemporaryFile('w+', encoding='utf-8') as f:\n        f.write(data)\n        f.seek(0)\n"
                    "        return f.read()")  # the file imports tempfile already


@pytest.mark.parametrize("code", [
    'import subprocess\n\ndef run(d):\n    p = "/tmp/in.txt"\n    with open(p, "w") as f:\n        f.write(d)\n'
    '    subprocess.run(["wc", p])\n',                                                   # another process reads it
    'def save(d):\n    p = "/tmp/out.txt"\n    with open(p, "w") as f:\n        f.write(d)\n    return p\n',  # returned
    'def load():\n    p = "/tmp/state.json"\n    with open(p) as f:\n        return f.read()\n',     # someone else wrote it
    'def log(m):\n    with open("/tmp/app.log", "a") as f:\n        f.write(m)\n',                 # read by its name
    'LOG = "/tmp/app.log"\n\ndef log(m):\n    with open(LOG, "a+") as f:\n        f.write(m)\n',      # module level
    'def a(d):\n    p = "/tmp/x.txt"\n    with open(p, "w") as f:\n        f.write(d)\n\n'
    'def b():\n    return open("/tmp/x.txt").read()\n',                                       # appears twice
    'def a(d):\n    global p\n    p = "/tmp/x.txt"\n    with open(p, "w") as f:\n        f.write(d)\n',  # global
    'def a(d):\n    with open("/tmp/x", "w+") as f:\n        f.write(d)\n    os.chmod("/tmp/x", 0o600)\n',
], ids=["subprocess", "returned", "read-only", "append-by-name", "module-level", "twice", "global", "named-again"])
def test_a_temp_path_something_else_names_gets_no_fix(tmp_path, code):
    line = next(i for i, t in enumerate(code.split("\n"), 1) if "/tmp/" in t)
    assert fix(tmp_path, code, TEMP, line, tool="bandit") is None


def test_bandit_confirms_the_weak_hash_and_temp_file_rewrites(tmp_path):
    scanners = Scanners.find()
    if "bandit" not in scanners.paths:
        pytest.skip("bandit not installed (run `make scanners`)")
    cases = {
        "B324": ("import hashlib\n\n\ndef etag(body):\n    return hashlib.md5(body).hexdigest()\n", 5),
        "B108": ("def roundtrip(rows):\n    path = '/tmp/rows.txt'\n    with open(path, 'w') as f:\n"
                 "        f.write(rows)\n    with open(path) as f:\n        return f.read()\n", 2),
    }
    for rule_id, (text, line) in cases.items():
        root = tmp_path / rule_id
        root.mkdir()
        (root / "app.py").write_text(text)
        context = {"path": "app.py", "language": "python", "start_line": 1, "end_line": text.count("\n"),
                   "code": text.rstrip("\n"), "finding_lines": [line, line]}
        finding = {"id": rule_id, "tool": "bandit", "rule_id": rule_id, "cwe": []}
        made, _ = fixrules.rule_fix(finding, context, root)
        c = Candidate(rule_id, finding, context, made)
        assert verify([c], root, scanners)[c.key].reason == VERIFIED, (c.key, c.fix["code"])
