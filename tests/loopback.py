"""Small HTTP servers on 127.0.0.1 that speak the parts of the Hugging Face Hub and GitHub REST APIs
secai-push and secai-fetch use, so that tests exercise the real clients (huggingface_hub, httpx2)
over real sockets and assert what the servers actually received.

FakeHub — the endpoints `HfApi.create_repo`, `repo_info`, `create_branch`, `list_repo_files` and
`create_commit` call (huggingface_hub 2.x, see _commit_api.py and lfs.py there):
  POST /api/repos/create                                  create (409 when it exists)
  GET  /api/{type}s/{repo}[/revision/{rev}]               repo info (sha, private, siblings)
  POST /api/{type}s/{repo}/branch/{branch}                create a branch (409 when it exists)
  GET  /api/{type}s/{repo}/tree/{rev}[/{path}]            list files (recursive)
  POST /api/validate-yaml                                 README.md front matter check
  POST /api/{type}s/{repo}/preupload/{rev}                upload mode per file (regular | lfs) + remote oid
  POST /{datasets/}{repo}.git/info/lfs/objects/batch      LFS batch API (basic transfer)
  PUT  /lfs-upload/{oid}  POST /lfs-verify                LFS object upload and verification
  POST /api/{type}s/{repo}/commit/{rev}                   NDJSON commit: header, file, lfsFile, deletedFile
Every /api and LFS batch call must carry `Authorization: Bearer <token>`.

FakeGitHub — the Actions endpoints secai-fetch calls:
  GET /repos/{o}/{r}/actions/runs  and  /repos/{o}/{r}/actions/workflows/{wf}/runs
      (branch, status, created=>=..., per_page, page; Link rel="next" pagination)
  GET /repos/{o}/{r}/actions/runs/{id}/artifacts
  GET /repos/{o}/{r}/actions/artifacts/{id}/zip  -> 302 to /blob/{id} (a storage URL that refuses
      an Authorization header, as Azure blob storage does), which serves the zip
with x-ratelimit-* headers on every API answer and injectable failures (5xx, rate limits) and a
gate that stalls a download halfway.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import io
import json
import re
import threading
import time
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

import yaml


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):  # quiet
        pass

    def body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            out = bytearray()
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return bytes(out)
                out += self.rfile.read(size)
                self.rfile.readline()
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def send(self, status: int, payload=None, headers: dict | None = None, raw: bytes | None = None):
        data = raw if raw is not None else (b"" if payload is None else json.dumps(payload).encode())
        self.send_response(status)
        if raw is None and payload is not None:
            self.send_header("Content-Type", "application/json")
        for k, v in (headers or {}).items():
            self.send_header(k, str(v))
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if data and self.command != "HEAD":
            self.wfile.write(data)

    def do_GET(self):
        self.server.app.handle(self, "GET")

    def do_POST(self):
        self.server.app.handle(self, "POST")

    def do_PUT(self):
        self.server.app.handle(self, "PUT")


class _Server:
    """An HTTP server in a daemon thread on 127.0.0.1, port chosen by the OS."""

    def __enter__(self):
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.httpd.daemon_threads = True
        self.httpd.app = self
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()

    def handle(self, h: _Handler, method: str):
        try:
            self.route(h, method)
        except (BrokenPipeError, ConnectionResetError):
            pass


# ---------------------------------------------------------------- Hugging Face Hub

def git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\x00" % len(data) + data).hexdigest()


class FakeHub(_Server):
    def __init__(self, token: str, user: str = "octo"):
        self.token, self.user = token, user
        self.lock = threading.Lock()
        self.repos: dict[tuple[str, str], dict] = {}   # (type, repo_id) -> {private, branches{name: [commits]}}
        self.lfs: dict[str, bytes] = {}                 # oid -> content
        self.requests: list[tuple[str, str]] = []       # (method, path) of every call
        self.auth_headers: list[str | None] = []
        self.commits: list[dict] = []                   # every commit received: repo, branch, header, ops

    # -- state helpers
    def files(self, repo_type: str, repo_id: str, branch: str = "main") -> dict[str, bytes]:
        """The files at the head of a branch: path -> bytes (LFS files resolved)."""
        return dict(self.repos[(repo_type, repo_id)]["branches"][branch][-1]["files"])

    def _new_commit(self, parent: dict | None, files: dict, summary: str) -> dict:
        oid = hashlib.sha1(f"{time.time_ns()}{summary}{len(self.commits)}".encode()).hexdigest()
        return {"oid": oid, "files": files, "summary": summary, "parent": parent["oid"] if parent else None}

    def _auth_ok(self, h) -> bool:
        got = h.headers.get("Authorization")
        self.auth_headers.append(got)
        return got == f"Bearer {self.token}"

    @staticmethod
    def _err(h, status, message, code=None):
        h.send(status, {"error": message}, {"X-Error-Code": code} if code else None)

    # -- routing
    def route(self, h, method):
        url = urlsplit(h.path)
        path = unquote(url.path)
        body = h.body()
        with self.lock:
            self.requests.append((method, url.path))
        if path.startswith("/lfs-upload/") and method == "PUT":
            return self._lfs_put(h, path.rsplit("/", 1)[1], body)
        if not self._auth_ok(h):
            return self._err(h, 401, "Invalid credentials in Authorization header")
        if path == "/api/repos/create" and method == "POST":
            return self._create(h, json.loads(body))
        if path == "/api/validate-yaml" and method == "POST":
            return self._validate_yaml(h, json.loads(body))
        if path == "/lfs-verify" and method == "POST":
            req = json.loads(body)
            ok = req["oid"] in self.lfs and len(self.lfs[req["oid"]]) == req["size"]
            return h.send(200 if ok else 404, {"ok": ok})
        m = re.fullmatch(r"/(?:(datasets|spaces)/)?([^/]+/[^/]+)\.git/info/lfs/objects/batch", path)
        if m and method == "POST":
            return self._lfs_batch(h, json.loads(body))
        m = re.fullmatch(r"/api/(models|datasets)/([^/]+/[^/]+)(?:/(revision|preupload|commit|branch|tree)/(.+))?",
                         path)
        if not m:
            return self._err(h, 404, f"no route {method} {path}")
        repo_type, repo_id, action, rest = m.group(1)[:-1], m.group(2), m.group(3), m.group(4)
        repo = self.repos.get((repo_type, repo_id))
        if repo is None:
            return self._err(h, 404, "Repository not found", "RepoNotFound")
        if action == "branch" and method == "POST":
            return self._branch(h, repo, rest)
        rev = rest.split("/", 1)[0] if rest else "main"
        if rev not in repo["branches"]:
            return self._err(h, 404, f"Invalid rev id: {rev}", "RevisionNotFound")
        head = repo["branches"][rev][-1]
        if action in (None, "revision") and method == "GET":
            return h.send(200, {"id": repo_id, "sha": head["oid"], "private": repo["private"],
                                "siblings": [{"rfilename": p} for p in sorted(head["files"])]})
        if action == "tree" and method == "GET":
            return h.send(200, [{"type": "file", "path": p, "size": len(b), "oid": git_blob_sha1(b)}
                                for p, b in sorted(head["files"].items())])
        if action == "preupload" and method == "POST":
            return self._preupload(h, head, json.loads(body))
        if action == "commit" and method == "POST":
            return self._commit(h, repo_type, repo_id, repo, rev, body)
        return self._err(h, 404, f"no route {method} {path}")

    def _create(self, h, req):
        repo_type = req.get("type") or "model"
        repo_id = f"{req['organization']}/{req['name']}"
        key = (repo_type, repo_id)
        prefix = "" if repo_type == "model" else f"{repo_type}s/"
        if key in self.repos:
            return h.send(409, {"error": "You already created this repo", "url": f"{self.url}/{prefix}{repo_id}"})
        private = req.get("visibility", "private" if req.get("private") else "public") == "private"
        first = self._new_commit(None, {".gitattributes": b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n"},
                                 "initial commit")
        self.repos[key] = {"private": private, "branches": {"main": [first]}, "created": req}
        h.send(200, {"url": f"{self.url}/{prefix}{repo_id}"})

    def _branch(self, h, repo, branch):
        if branch in repo["branches"]:
            return h.send(409, {"error": f"Reference refs/heads/{branch} already exists"})
        repo["branches"][branch] = [repo["branches"]["main"][-1]]
        h.send(200, {})

    def _validate_yaml(self, h, req):
        text = req["content"]
        m = re.match(r"---\n(.*?)\n---\n", text, re.S)
        try:
            meta = yaml.safe_load(m.group(1)) if m else {}
        except yaml.YAMLError as exc:
            return h.send(400, {"errors": [{"message": f"invalid YAML: {exc}"}], "warnings": []})
        if not isinstance(meta, dict):
            return h.send(400, {"errors": [{"message": "metadata is not a mapping"}], "warnings": []})
        h.send(200, {"errors": [], "warnings": []})

    @staticmethod
    def _mode(path: str, size: int, sample: bytes) -> str:
        """As the Hub decides: binary content, large files and *.safetensors go to LFS."""
        return "lfs" if path.endswith(".safetensors") or b"\x00" in sample or size > 10 * 2**20 else "regular"

    def _preupload(self, h, head, req):
        out = []
        for f in req["files"]:
            sample = base64.b64decode(f["sample"])
            mode = self._mode(f["path"], f["size"], sample)
            old = head["files"].get(f["path"])
            oid = None if old is None else (hashlib.sha256(old).hexdigest() if mode == "lfs" else git_blob_sha1(old))
            out.append({"path": f["path"], "uploadMode": mode, "shouldIgnore": False, "oid": oid})
        h.send(200, {"files": out, "commitOid": head["oid"]})

    def _lfs_batch(self, h, req):
        assert req["operation"] == "upload" and req["hash_algo"] == "sha256"
        objects = []
        for o in req["objects"]:
            item = {"oid": o["oid"], "size": o["size"], "authenticated": True}
            if o["oid"] not in self.lfs:
                item["actions"] = {"upload": {"href": f"{self.url}/lfs-upload/{o['oid']}"},
                                   "verify": {"href": f"{self.url}/lfs-verify"}}
            objects.append(item)
        h.send(200, {"transfer": "basic", "objects": objects}, {"Content-Type": "application/vnd.git-lfs+json"})

    def _lfs_put(self, h, oid, body):
        if hashlib.sha256(body).hexdigest() != oid:
            return h.send(400, {"error": "content does not match its oid"})
        with self.lock:
            self.lfs[oid] = body
        h.send(200, {})

    def _commit(self, h, repo_type, repo_id, repo, rev, body):
        if "ndjson" not in h.headers.get("Content-Type", ""):
            return self._err(h, 400, "expected application/x-ndjson")
        lines = [json.loads(line) for line in body.splitlines() if line.strip()]
        header = lines[0]
        if header["key"] != "header":
            return self._err(h, 400, "first line must be the header")
        head = repo["branches"][rev][-1]
        parent = header["value"].get("parentCommit")
        if parent and not head["oid"].startswith(parent):
            return self._err(h, 412, "A commit has happened since. Please refresh and try again.")
        files = dict(head["files"])
        for op in lines[1:]:
            v = op["value"]
            if op["key"] == "file":
                files[v["path"]] = base64.b64decode(v["content"])
            elif op["key"] == "lfsFile":
                if v["oid"] not in self.lfs:
                    return self._err(h, 422, f"LFS object {v['oid']} was never uploaded")
                files[v["path"]] = self.lfs[v["oid"]]
            elif op["key"] == "deletedFile":
                if v["path"] not in files:
                    return self._err(h, 404, "A file with this name doesn't exist", "EntryNotFound")
                del files[v["path"]]
            elif op["key"] == "deletedFolder":
                files = {p: b for p, b in files.items() if not p.startswith(v["path"].rstrip("/") + "/")}
            else:
                return self._err(h, 400, f"unknown operation {op['key']}")
        commit = self._new_commit(head, files, header["value"]["summary"])
        repo["branches"][rev].append(commit)
        self.commits.append({"repo": (repo_type, repo_id), "branch": rev, "header": header["value"],
                             "ops": lines[1:], "oid": commit["oid"]})
        prefix = "" if repo_type == "model" else f"{repo_type}s/"
        h.send(200, {"commitUrl": f"{self.url}/{prefix}{repo_id}/commit/{commit['oid']}",
                     "commitOid": commit["oid"], "pullRequestUrl": None})


# ---------------------------------------------------------------- GitHub

def make_zip(members: dict[str, bytes], symlinks: dict[str, str] | None = None) -> bytes:
    """A zip of name -> bytes (names taken as given, '../x' included), plus symlink entries."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            info = zipfile.ZipInfo(name, date_time=(2024, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, data)
        for name, target in (symlinks or {}).items():
            info = zipfile.ZipInfo(name, date_time=(2024, 1, 1, 0, 0, 0))
            info.external_attr = (0o120777 << 16)
            zf.writestr(info, target)
    return buf.getvalue()


def iso(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class FakeGitHub(_Server):
    def __init__(self, token: str, repo: str = "octo/app", page_size: int = 100):
        self.token, self.repo, self.page_size = token, repo, page_size
        self.lock = threading.Lock()
        self.runs: list[dict] = []
        self.artifacts: dict[int, list[dict]] = {}
        self.blobs: dict[int, bytes] = {}
        self.requests: list[tuple[str, str]] = []    # (method, path?query)
        self.downloads: list[int] = []                # artifact ids whose blob was served in full
        self.failures: list[dict] = []                # injected: {pattern, status, headers, body, count}
        self.stall: set[int] = set()                  # artifact ids whose blob stalls halfway until released
        self.stalled = threading.Event()              # set when a stalled download has sent its first half
        self.release = threading.Event()
        self.blob_auth: list[str | None] = []
        self.truncate: set[int] = set()               # artifact ids whose next download breaks off halfway
        self.exhaust_in: float | None = None          # the next API answer says 0 requests left, reset in N s

    def add_run(self, run_id: int, *, sha: str, branch: str = "main", conclusion: str = "success",
                created: float | None = None, workflow: str = ".github/workflows/security.yml",
                artifacts: dict[str, bytes] | None = None, expired: tuple[str, ...] = ()) -> None:
        created = created if created is not None else time.time() - 3600 + run_id
        self.runs.append({"id": run_id, "run_number": run_id % 1000, "head_sha": sha, "head_branch": branch,
                          "status": "completed", "conclusion": conclusion, "created_at": iso(created),
                          "updated_at": iso(created + 60), "path": workflow, "name": "security",
                          "event": "push", "html_url": f"https://github.com/{self.repo}/actions/runs/{run_id}"})
        arts = []
        for i, (name, data) in enumerate((artifacts or {}).items()):
            aid = run_id * 100 + i
            self.blobs[aid] = data
            arts.append({"id": aid, "name": name, "size_in_bytes": len(data), "expired": name in expired,
                         "digest": "sha256:" + hashlib.sha256(data).hexdigest(),
                         "archive_download_url": f"{self.url}/repos/{self.repo}/actions/artifacts/{aid}/zip"})
        self.artifacts[run_id] = arts

    def fail(self, pattern: str, status: int, count: int = 1, headers: dict | None = None, body=None):
        """The next `count` requests whose path matches `pattern` get `status`."""
        self.failures.append({"pattern": re.compile(pattern), "status": status, "count": count,
                              "headers": headers or {}, "body": body or {"message": "injected failure"}})

    def _rate_headers(self):
        if self.exhaust_in is not None:
            reset, self.exhaust_in = int(time.time() + self.exhaust_in), None
            return {"x-ratelimit-limit": "5000", "x-ratelimit-remaining": "0", "x-ratelimit-reset": str(reset),
                    "x-ratelimit-resource": "core"}
        return {"x-ratelimit-limit": "5000", "x-ratelimit-remaining": "4999",
                "x-ratelimit-reset": str(int(time.time()) + 3600), "x-ratelimit-resource": "core"}

    def route(self, h, method):
        url = urlsplit(h.path)
        path, query = url.path, {k: v[-1] for k, v in parse_qs(url.query).items()}
        with self.lock:
            self.requests.append((method, h.path))
            for f in self.failures:
                if f["count"] > 0 and f["pattern"].search(path):
                    f["count"] -= 1
                    return h.send(f["status"], f["body"], f["headers"])
        if path.startswith("/blob/"):
            return self._blob(h, int(path.rsplit("/", 1)[1]))
        if h.headers.get("Authorization") != f"Bearer {self.token}":
            return h.send(401, {"message": "Bad credentials"})
        if h.headers.get("X-GitHub-Api-Version") != "2022-11-28" or "github" not in h.headers.get("Accept", ""):
            return h.send(400, {"message": "missing API version or Accept header"})
        base = f"/repos/{self.repo}/actions"
        m = re.fullmatch(re.escape(base) + r"(?:/workflows/([^/]+))?/runs", path)
        if m:
            return self._runs(h, m.group(1), query)
        m = re.fullmatch(re.escape(base) + r"/runs/(\d+)/artifacts", path)
        if m:
            arts = self.artifacts.get(int(m.group(1)))
            if arts is None:
                return h.send(404, {"message": "Not Found"})
            return self._page(h, "artifacts", arts, query)
        m = re.fullmatch(re.escape(base) + r"/artifacts/(\d+)/zip", path)
        if m:
            aid = int(m.group(1))
            if aid not in self.blobs:
                return h.send(404, {"message": "Not Found"})
            return h.send(302, None, {"Location": f"{self.url}/blob/{aid}?sig=signed", **self._rate_headers()})
        h.send(404, {"message": "Not Found"})

    def _runs(self, h, workflow, q):
        runs = sorted(self.runs, key=lambda r: (r["created_at"], r["id"]), reverse=True)
        if workflow:
            runs = [r for r in runs if r["path"].endswith("/" + workflow)]
        if q.get("branch"):
            runs = [r for r in runs if r["head_branch"] == q["branch"]]
        if q.get("status"):
            runs = [r for r in runs if q["status"] in (r["status"], r["conclusion"])]
        if q.get("created", "").startswith(">="):
            runs = [r for r in runs if r["created_at"] >= q["created"][2:]]
        self._page(h, "workflow_runs", runs, q)

    def _page(self, h, key, items, q):
        per_page = min(int(q.get("per_page", 30)), self.page_size)
        page = int(q.get("page", 1))
        chunk = items[(page - 1) * per_page: page * per_page]
        headers = self._rate_headers()
        if page * per_page < len(items):
            nq = "&".join(f"{k}={v}" for k, v in {**q, "page": page + 1}.items())
            headers["Link"] = f'<{self.url}{urlsplit(h.path).path}?{nq}>; rel="next"'
        h.send(200, {"total_count": len(items), key: chunk}, headers)

    def _blob(self, h, aid):
        self.blob_auth.append(h.headers.get("Authorization"))
        if h.headers.get("Authorization"):  # storage URLs are pre-signed: a token sent along is refused
            return h.send(400, {"message": "authorization header not allowed on a signed URL"})
        data = self.blobs[aid]
        h.send_response(200)
        h.send_header("Content-Type", "application/zip")
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        if aid in self.truncate:  # the connection drops mid-body: Content-Length promised more
            self.truncate.discard(aid)
            h.wfile.write(data[: len(data) // 2])
            h.wfile.flush()
            h.close_connection = True
            h.connection.shutdown(2)
            return
        if aid in self.stall:
            h.wfile.write(data[: len(data) // 2])
            h.wfile.flush()
            self.stalled.set()
            self.release.wait(30)
            h.wfile.write(data[len(data) // 2:])
        else:
            h.wfile.write(data)
        with self.lock:
            self.downloads.append(aid)
