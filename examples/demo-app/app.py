# INTENTIONALLY INSECURE DEMO CODE for secai's examples — do not deploy, do not copy.
# Every function below contains a vulnerability on purpose, so that scanners (Semgrep, Bandit)
# have something to report when `make examples` regenerates examples/artifacts/.
"""A tiny Flask service with one textbook vulnerability per endpoint."""

import pickle
import sqlite3
import subprocess

import requests
import yaml
from flask import Flask, request

app = Flask(__name__)

# Hard-coded credential (CWE-798). A placeholder, not a real secret.
DB_PASSWORD = "hunter2-demo-only"


def db():
    conn = sqlite3.connect("demo.db")
    return conn


@app.route("/ping")
def ping():
    host = request.args.get("host", "localhost")
    # OS command injection (CWE-78): shell=True with a command built from input.
    out = subprocess.check_output("ping -c 1 " + host, shell=True)
    return out


@app.route("/calc")
def calc():
    expr = request.args.get("expr", "1+1")
    # Code injection (CWE-95): eval of request input.
    return str(eval(expr))


@app.route("/user")
def user():
    name = request.args.get("name", "")
    cur = db().cursor()
    # SQL injection (CWE-89): query built with string formatting.
    cur.execute("SELECT id, email FROM users WHERE name = '%s'" % name)
    return str(cur.fetchall())


@app.route("/config", methods=["POST"])
def load_config():
    # Unsafe deserialization (CWE-502): yaml.load without SafeLoader.
    settings = yaml.load(request.data, Loader=yaml.Loader)
    return str(settings)


@app.route("/session", methods=["POST"])
def restore_session():
    # Unsafe deserialization (CWE-502): pickle.loads of request data.
    state = pickle.loads(request.get_data())
    return str(state)


@app.route("/proxy")
def proxy():
    url = request.args.get("url", "https://example.com")
    # Certificate validation disabled (CWE-295).
    resp = requests.get(url, verify=False)
    return resp.text


if __name__ == "__main__":
    app.run(host="0.0.0.0", debug=True)
