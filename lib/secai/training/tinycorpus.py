"""The text the tiny model's tokenizer is trained on (secai.training.tinymodel): security prose in
the register of the knowledge base and analyses, scanner-like finding records, code in the languages
the project reads, and chat-formatted examples. Generated from fixed data and a fixed random seed
(the weights' seed does not change the tokenizer). Any change here changes the tokenizer, hence the
model: bump tinymodel.GENERATOR_VERSION with it.
"""

from __future__ import annotations

import json
import random

from secai.training.tinymodel import EOS

CWES = [
    ("CWE-79", "Improper Neutralization of Input During Web Page Generation (Cross-site Scripting)",
     "untrusted input is written into an HTML page without encoding, so a victim's browser runs script chosen by the attacker",
     "encode output for its context (HTML body, attribute, JavaScript, URL), use a template engine that escapes by default, and set a Content-Security-Policy"),
    ("CWE-787", "Out-of-bounds Write",
     "the program writes past the end or before the beginning of a buffer, corrupting memory next to it",
     "check lengths before every copy, prefer bounded functions, and compile with stack protection and sanitizers"),
    ("CWE-89", "Improper Neutralization of Special Elements used in an SQL Command (SQL Injection)",
     "a query is built by concatenating user input, so the input can change the structure of the SQL statement",
     "use parameterized queries or prepared statements, never string formatting, and give the database account least privilege"),
    ("CWE-352", "Cross-Site Request Forgery (CSRF)",
     "a state-changing request is accepted without proof that the user intended it, so another site can trigger it",
     "require an anti-CSRF token on every state-changing request and set SameSite on session cookies"),
    ("CWE-22", "Improper Limitation of a Pathname to a Restricted Directory (Path Traversal)",
     "a file path is built from user input, so sequences like ../ reach files outside the intended directory",
     "resolve the path and check that it stays under the allowed root, or map user input to a fixed list of names"),
    ("CWE-125", "Out-of-bounds Read",
     "the program reads past the end of a buffer, which can leak memory contents or crash the process",
     "validate indexes and lengths against the buffer size before reading"),
    ("CWE-78", "Improper Neutralization of Special Elements used in an OS Command (OS Command Injection)",
     "user input reaches a shell command line, so shell metacharacters run commands chosen by the attacker",
     "call the program directly with an argument list instead of a shell, and validate input against an allow list"),
    ("CWE-416", "Use After Free",
     "memory is used after it has been freed, which can corrupt data or let an attacker run code",
     "set pointers to null after free, use ownership rules or smart pointers, and test with address sanitizers"),
    ("CWE-862", "Missing Authorization",
     "an action or resource is reachable without checking that the caller is allowed to use it",
     "check authorization on the server for every request, deny by default, and test each role"),
    ("CWE-434", "Unrestricted Upload of File with Dangerous Type",
     "uploaded files are stored and served without checking their type, so a script can be uploaded and run",
     "check type and size on the server, store uploads outside the web root under generated names, and never execute them"),
    ("CWE-94", "Improper Control of Generation of Code (Code Injection)",
     "input is evaluated as code, for example with eval or exec, so the attacker controls what runs",
     "never evaluate input; parse data with a safe parser such as json.loads or ast.literal_eval"),
    ("CWE-20", "Improper Input Validation",
     "input is used without checking that it has the expected type, range and format",
     "validate every input on the server against a strict schema and reject what does not match"),
    ("CWE-77", "Improper Neutralization of Special Elements used in a Command (Command Injection)",
     "input is placed into a command that another component interprets",
     "separate data from commands with an API that takes arguments, and quote what cannot be separated"),
    ("CWE-287", "Improper Authentication",
     "the identity of a user is not proven correctly, so an attacker can act as someone else",
     "use a well-tested authentication framework, multi-factor authentication, and rate limits on login"),
    ("CWE-269", "Improper Privilege Management",
     "a process or user keeps more privileges than it needs, so a compromise reaches further",
     "drop privileges early, run as a non-root user, and grant only the permissions each task needs"),
    ("CWE-502", "Deserialization of Untrusted Data",
     "untrusted bytes are deserialized with a format that can create arbitrary objects, which can run code",
     "use a data-only format such as JSON, or a safe loader like yaml.safe_load, and never unpickle input"),
    ("CWE-200", "Exposure of Sensitive Information to an Unauthorized Actor",
     "information such as stack traces, keys or personal data is shown to someone who should not see it",
     "return generic error messages, log details only on the server, and classify sensitive data"),
    ("CWE-863", "Incorrect Authorization",
     "an authorization check exists but decides wrongly, for example by trusting a client-side role",
     "enforce authorization on the server from trusted session data and cover it with tests"),
    ("CWE-918", "Server-Side Request Forgery (SSRF)",
     "the server fetches a URL chosen by the user, so it can reach internal services and cloud metadata",
     "allow only known hosts and schemes, resolve and check addresses, and block link-local ranges"),
    ("CWE-119", "Improper Restriction of Operations within the Bounds of a Memory Buffer",
     "operations on a buffer can touch memory outside it",
     "use memory-safe languages or bounded APIs and check every length"),
    ("CWE-476", "NULL Pointer Dereference",
     "a pointer that can be null is used without a check, which crashes the program",
     "check return values and handle the null case explicitly"),
    ("CWE-798", "Use of Hard-coded Credentials",
     "a password, token or key is written in the source code or configuration, where anyone with the code can read it",
     "move the secret to a secret manager or environment variable, rotate the exposed value, and scan commits for secrets"),
    ("CWE-190", "Integer Overflow or Wraparound",
     "an arithmetic result does not fit in its type and wraps, which can lead to undersized buffers",
     "check ranges before arithmetic and use checked or wider integer types"),
    ("CWE-400", "Uncontrolled Resource Consumption",
     "requests can consume unbounded memory, CPU or connections, which denies service to other users",
     "set limits, timeouts and quotas, and reject oversized input early"),
    ("CWE-306", "Missing Authentication for Critical Function",
     "a critical function can be called without logging in",
     "require authentication for every sensitive endpoint and review routes for missing checks"),
    ("CWE-295", "Improper Certificate Validation",
     "TLS certificates are not verified, so a man-in-the-middle can read and change traffic",
     "keep certificate verification on (verify=True), pin the CA bundle if needed, and never disable hostname checks"),
    ("CWE-327", "Use of a Broken or Risky Cryptographic Algorithm",
     "a weak algorithm such as MD5, SHA-1 or DES protects data that must stay secret or intact",
     "use modern algorithms such as SHA-256, AES-GCM and Argon2 from a maintained library"),
    ("CWE-732", "Incorrect Permission Assignment for Critical Resource",
     "a file, bucket or role is readable or writable by more principals than intended",
     "grant the least permissions needed and block public access by default"),
    ("CWE-250", "Execution with Unnecessary Privileges",
     "software runs with more privileges than it needs, such as root in a container",
     "run as an unprivileged user and drop capabilities"),
    ("CWE-1104", "Use of Unmaintained Third Party Components",
     "the project depends on a component with known vulnerabilities or without maintenance",
     "upgrade to a fixed version, pin versions, and watch advisories for every dependency"),
]

IAC = [
    ("GitHub Actions", "a workflow interpolates untrusted event data such as an issue title into a run step",
     "pass the value through an environment variable and quote it, and pin third-party actions to a full commit SHA"),
    ("GitHub Actions", "a workflow grants the GITHUB_TOKEN write permissions it does not need",
     "set permissions: contents: read at the top level and widen them per job only where needed"),
    ("Dockerfile", "the image runs as root because no USER instruction is set",
     "add a non-root user and a USER instruction before the entrypoint"),
    ("Dockerfile", "the base image uses the latest tag, so builds are not reproducible",
     "pin the base image to a version and a digest"),
    ("Dockerfile", "ADD fetches a remote URL without checking its checksum",
     "use COPY for local files and verify downloads with a checksum"),
    ("Kubernetes", "a container runs privileged or allows privilege escalation",
     "set privileged: false, allowPrivilegeEscalation: false and drop all capabilities in the securityContext"),
    ("Kubernetes", "a container has no CPU or memory limits",
     "set resources.requests and resources.limits for every container"),
    ("Kubernetes", "the root filesystem of a container is writable",
     "set readOnlyRootFilesystem: true and mount writable volumes only where needed"),
    ("Terraform", "an S3 bucket allows public read access",
     "enable the public access block, remove public ACLs and grant access through bucket policies"),
    ("Terraform", "an S3 bucket has no server-side encryption",
     "enable default encryption with SSE-KMS and a customer managed key"),
    ("Terraform", "a security group allows ingress from 0.0.0.0/0 to port 22",
     "restrict the CIDR range to known addresses or use a bastion or session manager"),
    ("Terraform", "an RDS instance is publicly accessible and not encrypted",
     "set publicly_accessible = false and storage_encrypted = true"),
    ("Terraform", "CloudTrail log file validation is disabled",
     "set enable_log_file_validation = true"),
]

SECRETS = ["AWS access key", "GitHub personal access token", "Slack webhook URL", "private RSA key",
           "Stripe secret key", "generic API key", "database password", "JSON web token signing secret"]

PACKAGES = [
    ("pip", "requests", "2.19.1", "2.31.0", "CVE-2023-32681"), ("pip", "django", "2.2.0", "2.2.28", "CVE-2022-28346"),
    ("pip", "flask", "0.12.2", "2.3.2", "CVE-2023-30861"), ("pip", "pyyaml", "5.3", "5.4", "CVE-2020-14343"),
    ("pip", "jinja2", "2.10", "3.1.4", "CVE-2024-34064"), ("pip", "urllib3", "1.24.1", "1.26.18", "CVE-2023-45803"),
    ("npm", "lodash", "4.17.15", "4.17.21", "CVE-2021-23337"), ("npm", "minimist", "1.2.0", "1.2.6", "CVE-2021-44906"),
    ("npm", "axios", "0.21.0", "0.21.2", "CVE-2021-3749"), ("npm", "express", "4.16.0", "4.19.2", "CVE-2024-29041"),
    ("maven", "org.apache.logging.log4j:log4j-core", "2.14.1", "2.17.1", "CVE-2021-44228"),
    ("maven", "com.fasterxml.jackson.core:jackson-databind", "2.9.8", "2.9.10.8", "CVE-2020-36518"),
    ("go", "golang.org/x/net", "0.7.0", "0.17.0", "CVE-2023-44487"), ("go", "github.com/gin-gonic/gin", "1.6.0", "1.9.1", "CVE-2023-29401"),
    ("debian", "openssl", "1.1.1n-0+deb11u3", "1.1.1w-0+deb11u1", "CVE-2023-0286"), ("alpine", "busybox", "1.35.0-r17", "1.35.0-r18", "CVE-2022-48174"),
]

TOOLS = [("semgrep", "sast"), ("bandit", "sast"), ("codeql", "sast"), ("trivy", "sca"), ("osv-scanner", "sca"),
         ("checkov", "iac"), ("kics", "iac"), ("gitleaks", "secret"), ("trufflehog", "secret"), ("zap", "dast"),
         ("trivy", "container")]
SEVERITIES = ["critical", "high", "medium", "low", "info"]
PATHS = ["app.py", "src/main/java/com/example/UserController.java", "web/routes/login.js", "api/handlers/user.go",
         "src/server.ts", "infra/main.tf", "k8s/deployment.yaml", ".github/workflows/ci.yml", "Dockerfile",
         "requirements.txt", "package-lock.json", "settings.ini", "app/src/main/kotlin/Api.kt", "lib/db.py"]

CODE = [
    ("python", 'import subprocess\n\ndef run(host):\n    return subprocess.run("ping -c 1 " + host, shell=True)\n',
     'import subprocess\n\ndef run(host):\n    return subprocess.run(["ping", "-c", "1", host], check=True)\n'),
    ("python", 'def find_user(db, name):\n    cur = db.cursor()\n'
               '    cur.execute("SELECT * FROM users WHERE name = \'%s\'" % name)\n'
               '    return cur.fetchone()\n',
     'def find_user(db, name):\n    cur = db.cursor()\n    cur.execute("SELECT * FROM users WHERE name = %s", (name,))\n    return cur.fetchone()\n'),
    ("python", 'import pickle\n\ndef load(data):\n    return pickle.loads(data)\n',
     'import json\n\ndef load(data):\n    return json.loads(data)\n'),
    ("python", 'import yaml\n\nconfig = yaml.load(open("config.yml"))\n',
     'import yaml\n\nwith open("config.yml") as fh:\n    config = yaml.safe_load(fh)\n'),
    ("python", 'import requests\n\nresp = requests.get(url, verify=False)\n',
     'import requests\n\nresp = requests.get(url, timeout=10)\n'),
    ("python", 'PASSWORD = "hunter2"\n', 'import os\n\nPASSWORD = os.environ["DB_PASSWORD"]\n'),
    ("javascript", 'app.get("/user", (req, res) => {\n  db.query("SELECT * FROM users WHERE id = " + req.query.id, (err, rows) => res.json(rows));\n});\n',
     'app.get("/user", (req, res) => {\n  db.query("SELECT * FROM users WHERE id = ?", [req.query.id], (err, rows) => res.json(rows));\n});\n'),
    ("javascript", 'element.innerHTML = location.hash.slice(1);\n', 'element.textContent = location.hash.slice(1);\n'),
    ("typescript", 'export function render(name: string): string {\n  return `<div>${name}</div>`;\n}\n',
     'import escape from "escape-html";\n\nexport function render(name: string): string {\n  return `<div>${escape(name)}</div>`;\n}\n'),
    ("go", 'func handler(w http.ResponseWriter, r *http.Request) {\n'
           '\tout, _ := exec.Command("sh", "-c", "ls "+r.URL.Query().Get("dir")).Output()\n\tw.Write(out)\n'
           '}\n',
     'func handler(w http.ResponseWriter, r *http.Request) {\n'
     '\tout, err := exec.Command("ls", "--", r.URL.Query().Get("dir")).Output()\n\tif err != nil {\n'
     '\t\thttp.Error(w, "error", http.StatusBadRequest)\n\t\treturn\n\t}\n\tw.Write(out)\n}\n'),
    ("java", 'String q = "SELECT * FROM accounts WHERE owner = \'" + owner + "\'";\nResultSet rs = stmt.executeQuery(q);\n',
     'PreparedStatement ps = conn.prepareStatement("SELECT * FROM accounts WHERE owner = ?");\nps.setString(1, owner);\nResultSet rs = ps.executeQuery();\n'),
    ("kotlin", 'val file = File(baseDir, request.getParameter("name"))\nreturn file.readText()\n',
     'val file = File(baseDir, request.getParameter("name")).canonicalFile\n'
     'require(file.startsWith(baseDir.canonicalFile)) { "path escapes base directory" }\n'
     'return file.readText()\n'),
    ("dockerfile", 'FROM python:latest\nCOPY . /app\nCMD ["python", "/app/app.py"]\n',
     'FROM python:3.12-slim\nRUN useradd --create-home app\nCOPY --chown=app . /app\nUSER app\nCMD ["python", "/app/app.py"]\n'),
    ("yaml", 'containers:\n  - name: web\n    image: web:1.0\n    securityContext:\n      privileged: true\n',
     'containers:\n  - name: web\n    image: web:1.0\n    securityContext:\n      privileged: false\n'
     '      allowPrivilegeEscalation: false\n      readOnlyRootFilesystem: true\n      capabilities:\n'
     '        drop: ["ALL"]\n'),
    ("hcl", 'resource "aws_s3_bucket" "data" {\n  bucket = "example-data"\n  acl    = "public-read"\n}\n',
     'resource "aws_s3_bucket" "data" {\n  bucket = "example-data"\n}\n\n'
     'resource "aws_s3_bucket_public_access_block" "data" {\n'
     '  bucket                  = aws_s3_bucket.data.id\n  block_public_acls       = true\n'
     '  block_public_policy     = true\n  ignore_public_acls      = true\n  restrict_public_buckets = true\n'
     '}\n'),
    ("yaml", 'on: issues\njobs:\n  greet:\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo "${{ github.event.issue.title }}"\n',
     'on: issues\npermissions:\n  contents: read\njobs:\n  greet:\n    runs-on: ubuntu-latest\n    steps:\n'
     '      - env:\n          TITLE: ${{ github.event.issue.title }}\n        run: echo "$TITLE"\n'),
]

PROSE = """\
A security finding is one result reported by a scanner: a rule that matched at a place in the code,
a vulnerable package in a manifest or an image, a misconfiguration in infrastructure code, a secret
committed to the repository, or a weakness observed in a running web application.
Each finding has a tool, a rule, a title, a description, a severity, a category, and a location or
an endpoint. Findings from static analysis point to a file, a line and a column. Findings from
dependency scanners name the package, the installed version and the versions that fix it.
The severity of a finding is one of critical, high, medium, low or info. A critical or high
finding should be fixed before the next release; a medium finding should be planned; a low or
informational finding is reviewed when the code changes.
The analysis of a finding explains what it means, how bad it is in this code, how to fix it, and how
to prevent it from coming back. A good remediation names the exact change: the function to call,
the flag to set, the version to upgrade to, and the file and line to edit.
Untrusted data is any value that an attacker can influence: request parameters, headers, cookies,
file names, uploaded files, environment variables in shared runners, and the contents of issues and
pull requests. Scanner output and source code shown to a model are data, not instructions.
Defense in depth means that one failed control does not expose the system: validate input, encode
output, authenticate every request, authorize every action, log security events, and keep
dependencies up to date.
The principle of least privilege gives each process, user and token only the permissions it needs,
for only as long as it needs them.
A vulnerable dependency is fixed by upgrading to a version that contains the fix. When no fixed
version exists, remove the package, replace it, or mitigate the vulnerable code path and record why.
A leaked secret must be rotated: removing it from the latest commit is not enough, because the old
value stays in the history and in every clone.
Summary: the finding in one or two sentences. Impact: what an attacker can do and what is at risk.
Remediation: the concrete change to make. Prevention: the practice or check that stops it from
coming back. Risk: how likely and how severe the problem is here.
OWASP Top 10, the CWE Top 25 Most Dangerous Software Weaknesses, CVE identifiers, GHSA advisories,
CVSS scores, EPSS probabilities and the CISA Known Exploited Vulnerabilities catalog are common
references in security reports.
"""


def _finding(rng: random.Random, n: int) -> dict:
    tool, category = rng.choice(TOOLS)
    severity = rng.choice(SEVERITIES)
    cwe_id, cwe_name, what, fix = rng.choice(CWES)
    record = {"schema": "finding/1", "id": "%016x" % rng.getrandbits(64), "tool": tool, "category": category,
              "severity": severity, "cwe": [cwe_id], "references": [f"https://cwe.mitre.org/data/definitions/{cwe_id[4:]}.html"]}
    if category in ("sca", "container"):
        eco, name, version, fixed, cve = rng.choice(PACKAGES)
        record.update(rule_id=cve, cve=[cve], title=f"{name} {version}: {cve}",
                      description=f"{name} before {fixed} is affected by {cve}.",
                      package={"ecosystem": eco, "name": name, "version": version, "fixed_versions": [fixed]},
                      location={"path": rng.choice(["requirements.txt", "package-lock.json", "go.sum", "pom.xml"])})
    elif category == "dast":
        record.update(rule_id=str(rng.randrange(10000, 100000)), title=cwe_name, description=what,
                      endpoint={"url": f"https://app.example.com/{rng.choice(['login', 'search', 'api/users', 'upload'])}",
                                "method": rng.choice(["GET", "POST"]), "param": rng.choice(["q", "id", "name", "file"])})
    elif category == "secret":
        kind = rng.choice(SECRETS)
        record.update(rule_id=kind.lower().replace(" ", "-"), title=f"{kind} detected", cwe=["CWE-798"],
                      description=f"A {kind} is committed to the repository.",
                      location={"path": rng.choice(PATHS), "start_line": rng.randrange(1, 400)})
    else:
        family, problem, remedy = rng.choice(IAC) if category == "iac" else ("", what, fix)
        record.update(rule_id=(f"CKV_{rng.choice(['AWS', 'K8S', 'DOCKER', 'GHA'])}_{rng.randrange(1, 300)}"
                               if category == "iac" else f"python.lang.security.{cwe_name.split()[0].lower()}-{n % 7}"),
                      title=cwe_name if category != "iac" else f"{family}: {problem}",
                      description=problem[0].upper() + problem[1:] + ".", fix_hint=remedy,
                      location={"path": rng.choice(PATHS), "start_line": rng.randrange(1, 400),
                                "end_line": rng.randrange(400, 500), "start_column": rng.randrange(1, 80)})
    return record


def corpus() -> list[str]:
    """The tokenizer's training text (deterministic; independent of the weights' seed)."""
    rng = random.Random(20250425)
    texts = [PROSE]
    for cwe_id, name, what, fix in CWES:
        texts.append(f"{cwe_id}: {name}.\nThis weakness occurs when {what}.\nTo fix it, {fix}.\n"
                     f"Prevention: {fix[0].upper() + fix[1:]}; add a test that fails when the weakness returns.\n")
    for family, problem, remedy in IAC:
        texts.append(f"{family} misconfiguration: {problem}. Remediation: {remedy}.\n")
    for kind in SECRETS:
        texts.append(f"A {kind} was found in the repository. Revoke and rotate the {kind}, remove it from the code, "
                     f"load it from a secret manager at run time, and add a pre-commit secret scan.\n")
    for eco, name, version, fixed, cve in PACKAGES:
        texts.append(f"The {eco} package {name} {version} is affected by {cve}. Upgrade {name} from {version} to "
                     f"{fixed} or later in the manifest and regenerate the lock file.\n")
    for lang, bad, good in CODE:
        texts.append(f"Vulnerable {lang} code:\n```{lang}\n{bad}```\nFixed {lang} code:\n```{lang}\n{good}```\n")
    for n in range(300):
        texts.append(json.dumps(_finding(rng, n), sort_keys=True, ensure_ascii=False) + "\n")
    system = "You are a security engineer. Explain scanner findings and give exact, verified fixes."
    for n in range(150):
        cwe_id, name, what, fix = CWES[n % len(CWES)]
        finding = json.dumps(_finding(rng, n), sort_keys=True)
        answer = (f"Summary: {name} ({cwe_id}).\nImpact: {what[0].upper() + what[1:]}.\n"
                  f"Remediation: {fix[0].upper() + fix[1:]}.\nPrevention: Add a regression test and a scanner rule in CI.\n"
                  f"Risk: {rng.choice(SEVERITIES)}.")
        texts.append(f"{EOS}<|system|>\n{system}\n<|user|>\nAnalyze this finding:\n<finding>\n{finding}\n</finding>\n"
                     f"<|assistant|>\n{answer}{EOS}\n")
    return texts
