"""The kb's JavaScript and Dockerfile fix rules (kb/fixes/60_javascript.yaml, 20_dockerfile.yaml) and the
GitHub Actions permissions rule, on code of their own: each rule's exact fix, and the cases where no
fix is the right answer (a value the code does not state, a user the image may not have, a port an
unprivileged process cannot bind, commented-out code)."""

from __future__ import annotations

import pytest
from test_verify import SCANNERS, need

from secai.analysis import fixrules
from secai.analysis.context import code_context
from secai.analysis.fixlines import blank_comments, comment_lines
from secai.analysis.verify import VERIFIED, Candidate, place, verify

SERVER = """\
const express = require("express");
const session = require("express-session");
const app = express();

app.use(session({
    secret: cookieSecret,
    resave: true
    /*
    cookie: {
        httpOnly: true
    }
    */
}));

http.createServer(app).listen(port);
"""


def fixed(tmp_path, text: str, rule_id: str, name: str, start: int = 1, end: int | None = None,
          tool: str = "semgrep"):
    """(the fixed file, the fix rule's id) of the kb's rules for a finding at start..end, or (None, None)."""
    (tmp_path / name).write_text(text)
    finding = {"id": "f", "tool": tool, "rule_id": rule_id, "cwe": [],
               "location": {"path": name, "start_line": start, "end_line": end or start}}
    context = code_context(finding, tmp_path)
    made = fixrules.rule_fix(finding, context, tmp_path)
    return (place(text, context, made[0])[0], made[1]) if made else (None, None)


def session_fix(tmp_path, text, check):
    return fixed(tmp_path, text, f"semgrep-rules.javascript.express.security.audit.{check}", "server.js", 5, 13)


def test_comments_are_blanked_not_strings():
    text = 'a = "//x"; // note {\n/* b {\n c */ d = `/* e */`;'
    assert blank_comments(text, "javascript") == 'a = "//x";' + " " * 10 + "\n" + " " * 6 + "\n" + " " * 6 + "d = `/* e */`;"
    assert comment_lines(text.split("\n"), "javascript") == {1}
    assert blank_comments(text, "python") == text


def test_session_cookie_name_path_and_httponly_each_set_their_own_option(tmp_path):
    text, rule = session_fix(tmp_path, SERVER, "express-cookie-session-default-name")
    assert rule == "js-session-cookie-name"
    assert text == SERVER.replace("session({\n", 'session({\n    name: "sessionId",\n')
    text, rule = session_fix(tmp_path, SERVER, "express-cookie-session-no-httponly")
    # the commented-out cookie block is not code: a cookie option is added
    assert (text, rule) == (SERVER.replace("session({\n", "session({\n    cookie: { httpOnly: true },\n"),
                            "js-session-cookie-httponly")
    text, _ = session_fix(tmp_path, SERVER, "express-cookie-session-no-path")
    assert text == SERVER.replace("session({\n", 'session({\n    cookie: { path: "/" },\n')


def test_session_cookie_options_go_into_an_existing_cookie_object(tmp_path):
    code = SERVER.replace("    resave: true\n", "    resave: true,\n    cookie: { httpOnly: false }\n")
    text, rule = session_fix(tmp_path, code, "express-cookie-session-no-httponly")
    assert (text, rule) == (code.replace("httpOnly: false", "httpOnly: true"), "js-session-cookie-httponly-false")
    text, _ = session_fix(tmp_path, code, "express-cookie-session-no-path")
    assert text == code.replace("cookie: {", 'cookie: { path: "/",', 1)


@pytest.mark.parametrize("check", ["express-cookie-session-no-secure", "express-cookie-session-no-domain",
                                   "express-cookie-session-no-expires"])
def test_no_session_cookie_value_the_code_does_not_support(tmp_path, check):
    # plain HTTP (https only in a comment): secure would lock everyone out; domain and expires: no right value
    code = SERVER + "/*\nhttps.createServer(options, app).listen(port);\n*/\n"
    assert session_fix(tmp_path, code, check) == (None, None)


def test_secure_where_the_file_serves_https(tmp_path):
    code = SERVER.replace("http.createServer(app)", "https.createServer(options, app)")
    text, rule = session_fix(tmp_path, code, "express-cookie-session-no-secure")
    assert (text, rule) == (code.replace("session({\n", "session({\n    cookie: { secure: true },\n"),
                            "js-session-cookie-secure")


def test_eval_of_request_data_becomes_json_parse_and_nothing_else_does(tmp_path):
    code = "function h(req, res) {\n    const n = eval(req.body.preTax);\n    const m = eval('1+' + req.body.x);\n}\n"
    text, _ = fixed(tmp_path, code, "semgrep-rules.javascript.browser.security.eval-detected", "a.js", 2)
    assert text == code.replace("eval(req.body.preTax)", "JSON.parse(req.body.preTax)")
    assert fixed(tmp_path, code, "semgrep-rules.javascript.browser.security.eval-detected", "a.js", 3) == (None, None)


def test_nested_quantifier_is_dropped_where_the_regex_is_defined(tmp_path):
    code = "function f(s) {\n    // was /(a+)+b/\n    const re = /([0-9]+)+\\#/;\n    return re.test(s);\n}\n"
    text, _ = fixed(tmp_path, code, "semgrep-rules.javascript.lang.security.audit.detect-redos", "a.js", 4)
    assert text == code.replace("/([0-9]+)+\\#/", "/([0-9]+)\\#/")


def test_plain_data_is_sent_as_text_and_built_html_is_left_alone(tmp_path):
    code = "app.post('/', function (req, res) {\n    res.send(child.stdout)\n    res.send('<b>' + req.body.x)\n});\n"
    rule = "semgrep-rules.javascript.express.security.audit.xss.direct-response-write"
    text, _ = fixed(tmp_path, code, rule, "s.js", 2)
    assert text == code.replace("res.send(child.stdout)", "res.type('text/plain').send(child.stdout)")
    assert fixed(tmp_path, code, rule, "s.js", 3) == (None, None)


# ---------------------------------------------------------------- Dockerfiles

MISSING_USER = "semgrep-rules.dockerfile.security.missing-user"


def dockerfile(base: str, expose: str = "EXPOSE 3000", cmd: str = 'CMD ["npm", "start"]') -> str:
    return f"FROM {base}\nWORKDIR /app\nCOPY . .\n{expose}\n{cmd}\n"


@pytest.mark.parametrize("base, lines", [
    ("node:20-alpine", ["USER node"]),
    ("redis:7", ["USER redis"]),
    ("python:alpine", ["RUN addgroup -S -g 10001 app && adduser -S -D -H -u 10001 -G app app && chown -R 10001:10001 .",
                       "USER 10001:10001"]),
    ("ubuntu:noble", ["RUN groupadd --gid 10001 app && useradd --uid 10001 --gid app --no-create-home "
                      "--shell /usr/sbin/nologin app && chown -R 10001:10001 .", "USER 10001:10001"]),
])
def test_a_non_root_user_that_exists_in_the_image(tmp_path, base, lines):
    text = dockerfile(base)
    for rule_id, tool, start, end in ((MISSING_USER, "semgrep", 5, 5), ("CKV_DOCKER_3", "checkov", 1, 5)):
        out, _ = fixed(tmp_path, text, rule_id, "Dockerfile", start, end, tool)
        assert out == text.replace("CMD", "\n".join(lines) + "\nCMD")


@pytest.mark.parametrize("text", [
    dockerfile("registry:2"),                                  # what users the image has is unknown
    dockerfile("golang:1.22", expose="EXPOSE 80"),             # only a port below 1024
    dockerfile("debian:12", cmd='CMD ["nginx", "-g", "daemon off;"]'),  # a daemon that needs root
    "FROM node:20 AS build\nRUN npm ci\nFROM scratch\nCMD [\"/app\"]\n",  # the last stage is not node's
])
def test_no_user_where_it_would_not_work(tmp_path, text):
    assert fixed(tmp_path, text, MISSING_USER, "Dockerfile", text.count("\n"))[0] is None


@pytest.mark.parametrize("text", [
    "FROM python:3.12-slim\nCOPY . /app\nEXPOSE 8000\nCMD [\"python\", \"/app/manage.py\", \"runserver\"]\n",  # no WORKDIR
    "FROM python:3.12-slim\nWORKDIR /usr\nCOPY . .\nEXPOSE 8000\nCMD [\"python\", \"app.py\"]\n",  # a system dir
    "FROM python:3.12-slim\nWORKDIR /app\nCOPY . .\nVOLUME /data\nEXPOSE 8000\nCMD [\"python\", \"app.py\"]\n",
    "FROM python:3.12-slim\nWORKDIR /app\nWORKDIR $HOME\nCOPY . .\nEXPOSE 8000\nCMD [\"python\", \"app.py\"]\n",
])
def test_no_created_user_where_what_the_application_writes_is_unknown(tmp_path, text):
    """The created user gets the WORKDIR (a Django app migrates its SQLite database there); without an
    application WORKDIR, or with a VOLUME (root-owned), it may lose the write access root had."""
    assert fixed(tmp_path, text, MISSING_USER, "Dockerfile", text.count("\n"))[0] is None
    assert fixed(tmp_path, text, "CKV_DOCKER_3", "Dockerfile", 1, text.count("\n"), "checkov")[0] is None


def test_the_created_user_owns_the_working_directory_it_writes(tmp_path):
    text = ("FROM python:3.11-buster\nWORKDIR /app\nCOPY . /app/\nRUN python3 /app/manage.py migrate\nWORKDIR /app\n"
            "EXPOSE 8000\nCMD [\"gunicorn\", \"--bind\", \"0.0.0.0:8000\", \"pygoat.wsgi\"]\n")
    out, rule = fixed(tmp_path, text, "CKV_DOCKER_3", "Dockerfile", 1, 7, "checkov")
    assert rule == "dockerfile-non-root-user-debian"
    assert "migrate\nWORKDIR /app\nEXPOSE 8000\nRUN groupadd" in out and "&& chown -R 10001:10001 .\nUSER 10001:10001\nCMD" in out


def test_a_privileged_port_beside_the_apps_own_one_does_not_stop_the_fix(tmp_path):
    text = dockerfile("python:3.12-slim", expose="EXPOSE 5000 22")
    assert fixed(tmp_path, text, MISSING_USER, "Dockerfile", 5)[1] == "dockerfile-non-root-user-debian"


def test_dockerfile_one_line_fixes(tmp_path):
    text = "FROM debian:12\nRUN apt update && apt install -y curl\nRUN pip install flask\nADD conf.ini /etc/a.ini\n"
    assert fixed(tmp_path, text, "semgrep-rules.dockerfile.best-practice.prefer-apt-get", "Dockerfile", 2)[0] == \
        text.replace("apt update && apt install", "apt-get update && apt-get install")
    assert fixed(tmp_path, text, "semgrep-rules.dockerfile.best-practice.missing-pip-no-cache-dir", "Dockerfile",
                 3)[0] == text.replace("pip install", "pip install --no-cache-dir")
    assert fixed(tmp_path, text, "CKV_DOCKER_4", "Dockerfile", 4, tool="checkov")[0] == text.replace("ADD", "COPY")
    archive = text.replace("conf.ini", "tools.tar.gz")  # ADD unpacks it: COPY would not
    assert fixed(tmp_path, archive, "CKV_DOCKER_4", "Dockerfile", 4, tool="checkov")[0] is None


def test_healthchecks_accept_any_http_answer(tmp_path):
    text = "FROM node:12-alpine\nCOPY . .\nEXPOSE 4000\n"
    out, rule = fixed(tmp_path, text, "CKV_DOCKER_2", "Dockerfile", 1, 3, "checkov")
    assert rule == "dockerfile-healthcheck-node"
    assert out == text + ("HEALTHCHECK --interval=30s --timeout=5s --retries=3 CMD [\"node\", \"-e\", \"require('http')"
                          ".get('http://127.0.0.1:4000/', () => process.exit(0)).on('error', () => process.exit(1))\"]\n")
    text = "FROM debian:12\nRUN apt-get update && apt-get install -y curl\nEXPOSE 8080\nCMD [\"app\"]\n"
    out, _ = fixed(tmp_path, text, "CKV_DOCKER_2", "Dockerfile", 1, 4, "checkov")
    assert "CMD curl -sS -o /dev/null http://127.0.0.1:8080/ || exit 1\nCMD" in out


REDIS_CHECK = "HEALTHCHECK --interval=30s --timeout=5s --retries=3 CMD redis-cli ping || exit 1\n"
REDIS = "FROM redis:6-alpine\nCOPY data.redis /data.redis\nEXPOSE 6379\nCMD [ \"/bin/sh\", \"/start.sh\" ]\n"


def test_a_redis_image_is_checked_with_its_own_redis_cli(tmp_path):
    out, rule = fixed(tmp_path, REDIS, "CKV_DOCKER_2", "Dockerfile", 1, 4, "checkov")
    assert (out, rule) == (REDIS.replace("CMD", REDIS_CHECK + "CMD"), "dockerfile-healthcheck-redis")
    bare = "FROM redis:7 AS cache\nCOPY data /data\n"  # the image's own CMD runs redis-server
    out, rule = fixed(tmp_path, bare, "CKV_DOCKER_2", "Dockerfile", 1, 2, "checkov")
    assert (out, rule) == (bare + REDIS_CHECK, "dockerfile-healthcheck-redis-image-command")


@pytest.mark.parametrize("text", [
    'FROM redis:7\nCMD ["redis-server", "--port", "6380"]\n',
    "FROM redis:7\nCOPY redis.conf /usr/local/etc/redis/redis.conf\n",
    "FROM redis:7\nEXPOSE 6379 7000\n",
    "FROM redis:7\nCMD redis-server --requirepass secret\n",
    "FROM redis:7\nRUN apk add curl\nEXPOSE 6380\n",  # nor the HTTP check: Redis answers no HTTP request
    "FROM redis:7\nHEALTHCHECK CMD redis-cli ping\n",
    "FROM redis:7 AS data\nFROM alpine:3\nCMD [\"sh\"]\n",
])
def test_no_redis_check_that_would_ask_the_wrong_server(tmp_path, text):
    assert fixed(tmp_path, text, "CKV_DOCKER_2", "Dockerfile", 1, text.count("\n"), "checkov") == (None, None)


def test_checkov_confirms_the_redis_checks(tmp_path):
    need("checkov")
    candidates = []
    for n, text in enumerate([REDIS, "FROM redis:7\nCOPY data /data\n"]):
        (tmp_path / str(n)).mkdir()
        (tmp_path / str(n) / "Dockerfile").write_text(text)
        finding = {"id": f"f{n}", "tool": "checkov", "rule_id": "CKV_DOCKER_2", "cwe": [],
                   "location": {"path": f"{n}/Dockerfile", "start_line": 1, "end_line": text.count("\n")}}
        context = code_context(finding, tmp_path)
        fix, _ = fixrules.rule_fix(finding, context, tmp_path)
        candidates.append(Candidate("CKV_DOCKER_2", finding, context, fix))
    verdicts = verify(candidates, tmp_path, SCANNERS)
    assert {k: v.reason for k, v in verdicts.items()} == {c.key: VERIFIED for c in candidates}


ALPINE_USER = "RUN addgroup -S -g 10001 app && adduser -S -D -H -u 10001 -G app app\nUSER 10001:10001\n"
DEBIAN_USER = ("RUN groupadd --gid 10001 app && useradd --uid 10001 --gid app --no-create-home "
               "--shell /usr/sbin/nologin app\nUSER 10001:10001\n")


@pytest.mark.parametrize("text, user", [
    ('FROM alpine:latest\nRUN apk add --no-cache htop\nCMD ["ps", "auxx"]\n', ALPINE_USER),
    ('FROM ubuntu:22.04\nRUN apt-get update\nCMD ["tail", "-f", "/dev/null"]\n', DEBIAN_USER),
    ('FROM debian:12\nCMD sh -c "sleep infinity"\n', DEBIAN_USER),
    ('FROM python:3.12-alpine\nCOPY . /app\nCMD ["/bin/sh", "-c", "sleep 3600"]\n', ALPINE_USER),
    ('FROM example/tools-alpine\nENTRYPOINT ["cat", "/etc/os-release"]\n', ALPINE_USER),  # its own ENTRYPOINT
])
def test_a_command_that_writes_nothing_needs_no_workdir_for_its_user(tmp_path, text, user):
    """tail -f /dev/null, sleep, ps, cat, ... write no file: the created user is given no directory."""
    n = text.count("\n")
    for rule_id, tool, start in ((MISSING_USER, "semgrep", n), ("CKV_DOCKER_3", "checkov", 1)):
        out, rule = fixed(tmp_path, text, rule_id, "Dockerfile", start, n, tool)
        assert out == text.replace("\nCMD", "\n" + user + "CMD").replace("\nENTRYPOINT", "\n" + user + "ENTRYPOINT")
        assert rule.endswith("-idle")


@pytest.mark.parametrize("text", [
    'FROM alpine:3\nCMD ["python", "/app.py"]\n',                # an application: where it writes is unknown
    "FROM alpine:3\nCMD echo ready > /tmp/state\n",              # the shell writes a file
    'FROM alpine:3\nCMD ["sh", "-c", "sleep 1; ./run"]\n',       # not exactly an idle command
    'FROM alpine:3\nENTRYPOINT ["/start.sh"]\nCMD ["sleep", "infinity"]\n',
    'FROM example/tools-alpine\nCMD ["sleep", "infinity"]\n',    # the image's own ENTRYPOINT runs first
    'FROM debian:12\nEXPOSE 80\nCMD ["sleep", "infinity"]\n',    # only a port below 1024
    'FROM debian:12\nVOLUME /data\nCMD ["sleep", "infinity"]\n',
    'FROM debian:12\nUSER 1000\nCMD ["sleep", "infinity"]\n',
    'FROM registry:2\nCMD ["sleep", "infinity"]\n',              # no known way to create the user
])
def test_no_user_without_workdir_unless_the_command_writes_nothing(tmp_path, text):
    n = text.count("\n")
    assert fixed(tmp_path, text, "CKV_DOCKER_3", "Dockerfile", 1, n, "checkov") == (None, None)


NGINX_CHECK = "HEALTHCHECK --interval=30s --timeout=5s --retries=3 CMD wget -q --spider http://127.0.0.1/ || exit 1\n"
NGINX_SITE = ("FROM alpine AS build\nWORKDIR /build\nCOPY home .\nRUN hugo\n\nFROM nginx:alpine-slim\n"
              "COPY --from=build /build/public /usr/share/nginx/html\n")
NGINX_CMD = 'FROM nginx:1.27-alpine\nCOPY site /usr/share/nginx/html\nEXPOSE 80\nCMD ["nginx", "-g", "daemon off;"]\n'


def test_an_alpine_nginx_with_its_default_configuration_is_checked_with_busybox_wget(tmp_path):
    out, rule = fixed(tmp_path, NGINX_SITE, "CKV_DOCKER_2", "Dockerfile", 1, 7, "checkov")
    assert (out, rule) == (NGINX_SITE + NGINX_CHECK, "dockerfile-healthcheck-nginx-alpine-image-command")
    out, rule = fixed(tmp_path, NGINX_CMD, "CKV_DOCKER_2", "Dockerfile", 1, 4, "checkov")
    assert (out, rule) == (NGINX_CMD.replace("CMD [", NGINX_CHECK + "CMD ["), "dockerfile-healthcheck-nginx-alpine")
    docs = 'FROM python:3.12 AS docs\nRUN mkdocs build\nFROM nginx:alpine\nCMD ["nginx", "-g", "daemon off;"]\n'
    out, rule = fixed(tmp_path, docs, "CKV_DOCKER_2", "Dockerfile", 1, 4, "checkov")  # not python's check
    assert (out, rule) == (docs.replace("CMD [", NGINX_CHECK + "CMD ["), "dockerfile-healthcheck-nginx-alpine")


@pytest.mark.parametrize("text", [
    "FROM nginx:alpine\nCOPY default.conf /etc/nginx/conf.d/default.conf\n",
    "FROM nginx:alpine\nCOPY site.conf /tmp/\n",
    "FROM nginx:1.27\nCOPY site /usr/share/nginx/html\n",        # Debian: which client it has varies
    "FROM nginx:alpine\nEXPOSE 8080\n",
    "FROM nginx:alpine\nEXPOSE 80 443\n",
    "FROM nginx:alpine\nRUN rm -rf /usr/share/nginx/html/*\n",   # the shipped index.html is gone
    'FROM nginx:alpine\nCMD ["/start.sh"]\n',                    # a script may configure it otherwise
    "FROM nginx:alpine\nHEALTHCHECK CMD wget -q -O- http://127.0.0.1/\n",
])
def test_no_nginx_check_where_the_configuration_is_not_the_default(tmp_path, text):
    assert fixed(tmp_path, text, "CKV_DOCKER_2", "Dockerfile", 1, text.count("\n"), "checkov") == (None, None)


def test_checkov_confirms_the_user_and_nginx_fixes(tmp_path):
    need("checkov")
    candidates = []
    for n, (rule_id, text) in enumerate([("CKV_DOCKER_3", 'FROM alpine:3\nCMD ["ps", "auxx"]\n'),
                                         ("CKV_DOCKER_3", 'FROM debian:12\nCMD tail -f /dev/null\n'),
                                         ("CKV_DOCKER_2", NGINX_SITE), ("CKV_DOCKER_2", NGINX_CMD)]):
        (tmp_path / str(n)).mkdir()
        (tmp_path / str(n) / "Dockerfile").write_text(text)
        finding = {"id": f"f{n}", "tool": "checkov", "rule_id": rule_id, "cwe": [],
                   "location": {"path": f"{n}/Dockerfile", "start_line": 1, "end_line": text.count("\n")}}
        context = code_context(finding, tmp_path)
        fix, _ = fixrules.rule_fix(finding, context, tmp_path)
        candidates.append(Candidate(rule_id, finding, context, fix))
    verdicts = verify(candidates, tmp_path, SCANNERS)
    assert {k: v.reason for k, v in verdicts.items()} == {c.key: VERIFIED for c in candidates}


def test_no_guessed_base_image_version(tmp_path):
    text = "FROM python:latest\nCMD [\"python\"]\n"
    assert fixed(tmp_path, text, "CKV_DOCKER_7", "Dockerfile", 1, 2, "checkov") == (None, None)


def test_workflow_permissions_added_only_when_no_step_writes(tmp_path):
    text = "name: Lint\non: [push]\njobs:\n  lint:\n    runs-on: ubuntu-latest\n    steps:\n      - run: make lint\n"
    out, rule = fixed(tmp_path, text, "CKV2_GHA_1", "wf.yml", 1, tool="checkov")
    assert (out, rule) == (text.replace("on: [push]\n", "on: [push]\npermissions:\n  contents: read\n"),
                           "gha-top-level-permissions-read-added")
    pushing = text.replace("make lint", "git push origin HEAD")
    assert fixed(tmp_path, pushing, "CKV2_GHA_1", "wf.yml", 1, tool="checkov") == (None, None)


def test_no_insert_after_a_block_the_context_cuts_off(tmp_path):
    """The context of a finding on line 1 ends at `on:`, whose triggers are below it: a permissions
    block put right after that line would take them over (on: null, permissions.push: ...)."""
    text = ("# lint\n#\n\nname: Flake8\n\non:\n  push:\n    branches: [ master ]\n\njobs:\n  build:\n"
            "    runs-on: ubuntu-latest\n    steps:\n    - run: flake8 .\n")
    assert fixed(tmp_path, text, "CKV2_GHA_1", "wf.yml", 1, tool="checkov") == (None, None)
    whole = fixed(tmp_path, text, "CKV2_GHA_1", "wf.yml", 1, 14, "checkov")[0]  # the whole block shown
    assert whole == text.replace("    branches: [ master ]\n", "    branches: [ master ]\npermissions:\n  contents: read\n")
