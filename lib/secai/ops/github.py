"""GitHub Actions artifacts: download those of new successful runs into artifacts/runs/<run-id>/
(what secai-fetch runs; the command: secai.commands.fetch).

How:
- Runs: GitHub REST API `GET /repos/{owner}/{repo}/actions[/workflows/{workflow}]/runs` with
  status=success and the branch, newest first, following Link pagination. With no state yet, the
  newest fetch.max_runs runs are taken (older ones are never looked for); afterwards, every
  successful run created since the newest one fetched (less fetch.lookback_hours, for runs that
  finished late) that the state does not hold. They are processed oldest first, at most
  fetch.max_runs per call.
- Artifacts: `GET .../runs/{id}/artifacts`; expired ones, and names not matching --artifact, are
  skipped. Each is downloaded from `.../artifacts/{id}/zip` (a redirect to a signed storage URL,
  which is followed WITHOUT the token), checked against its `digest` when GitHub gives one, and
  unzipped safely under secai.files' zip policy (the one secai-parse reads zips by): no absolute
  paths, no `..`, no symlinks, special files or encrypted members, no member over
  parse.max_file_mb, no member compressed more than parse.max_zip_ratio:1 (above 10 MB), no more
  than fetch.max_artifact_mb per artifact (zip and content) — refused members (and members that
  cannot be read) are skipped and listed, the rest kept.
- A run is built in a hidden folder next to artifacts/runs/<run-id> and renamed into place whole,
  with a `.secai-run.json` describing it (run id, head sha, branch, artifacts, files); only then is
  the run recorded in the state file (fetch.state, JSON, written to a temporary file and renamed).
  A killed fetch leaves at most a hidden folder, which the next fetch removes; a run folder whose
  state entry was lost is recognised by its `.secai-run.json` and recorded without a download. A
  run in the state is never downloaded again.
- HTTP: token from GITHUB_TOKEN or GH_TOKEN (never printed); 5xx answers and network errors are
  retried fetch.retries times with exponential backoff (fetch.backoff_s, doubled each time);
  rate limits are honoured: a 403/429 with `retry-after` waits that long, one with
  `x-ratelimit-remaining: 0` waits until `x-ratelimit-reset`, and an answer that leaves no
  requests makes the next call wait for the reset — up to fetch.max_wait_s, else it stops with
  an error saying when the limit resets.
- One fetch at a time: a second one, while a first holds the lock next to the state file, stops
  with an error.

stdout: one JSON line per run fetched (run id, head sha, branch, folder, artifacts, files).
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import hashlib
import os
import random
import re
import time
import zipfile
from pathlib import Path

import orjson

from secai import __version__
from secai import config
from secai.errors import InputError
from secai.files import building, extract_zip, now_iso, read_state, remove_stale, try_lock, write_state

API_VERSION = "2022-11-28"
RUN_FILE = ".secai-run.json"
REPO = re.compile(r"[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+")
# ---------------------------------------------------------------- small shared pieces

def _parse_time(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


class FetchError(InputError):
    """A failure talking to GitHub, reported as `secai-fetch: error: WHERE: reason`."""


# ---------------------------------------------------------------- GitHub client

class GitHub:
    """The few GitHub REST calls secai-fetch makes, with retries and rate-limit waits."""

    def __init__(self, repo: str, token: str, api_url: str, *, retries: int, backoff_s: float, max_wait_s: float,
                 timeout_s: float, log=lambda m: None, sleep=None, clock=None):
        import httpx2

        self.httpx = httpx2
        self.repo, self.api = repo, api_url.rstrip("/")
        self.retries, self.backoff_s, self.max_wait_s = retries, backoff_s, max_wait_s
        self.log, self.sleep, self.clock = log, sleep or time.sleep, clock or time.time
        self.blocked_until = 0.0        # set when an answer said no requests are left until a reset
        self._auth = {"Authorization": f"Bearer {token}"}
        self.client = httpx2.Client(timeout=timeout_s, follow_redirects=False,
                                    headers={"Accept": "application/vnd.github+json",
                                             "X-GitHub-Api-Version": API_VERSION,
                                             "User-Agent": f"secai-fetch/{__version__}"})

    def close(self):
        self.client.close()

    # -- one request, retried
    def _wait_for(self, seconds: float, why: str) -> None:
        if seconds > self.max_wait_s:
            at = dt.datetime.fromtimestamp(self.clock() + seconds, dt.timezone.utc).strftime("%H:%M:%S UTC")
            raise FetchError(self.repo, None, f"{why}; it resets at {at}, in {seconds:.0f} s, longer than "
                                              f"fetch.max_wait_s ({self.max_wait_s:g} s): try again later")
        self.log(f"{why}; waiting {seconds:.0f} s")
        self.sleep(seconds)

    def _rate_limit_wait(self, resp) -> float | None:
        """Seconds to wait before retrying a rate-limited answer (403/429), or None when it is not one."""
        if resp.status_code not in (403, 429):
            return None
        h = resp.headers
        if h.get("retry-after", "").strip().isdigit():
            return float(h["retry-after"])
        if h.get("x-ratelimit-remaining") == "0" and h.get("x-ratelimit-reset", "").isdigit():
            return max(0.0, int(h["x-ratelimit-reset"]) - self.clock()) + 1
        if resp.status_code == 429 or "rate limit" in resp.text.lower():
            return 60.0  # a secondary limit without headers: GitHub asks for at least a minute
        return None

    def request(self, method: str, url: str, *, params: dict | None = None, auth: bool = True,
                stream: bool = False):
        """One call, retried on network errors and 5xx with backoff, waiting out rate limits.
        Returns the response (streamed if asked; the caller closes it); FetchError otherwise."""
        url = url if url.startswith(("http://", "https://")) else self.api + url
        where = url.split("?")[0]
        attempt, limited = 0, 0
        while True:
            if self.blocked_until > self.clock():
                self._wait_for(self.blocked_until - self.clock(), "GitHub API rate limit used up")
                self.blocked_until = 0.0  # reset by now
            try:
                req = self.client.build_request(method, url, params=params, headers=self._auth if auth else None)
                resp = self.client.send(req, stream=stream)
                if stream and resp.status_code >= 400:
                    resp.read()  # an error's body is small: read it for the checks below
            except self.httpx.TransportError as exc:
                if attempt >= self.retries:
                    raise FetchError(where, None, f"network error after {attempt + 1} tries: "
                                                  f"{type(exc).__name__}: {exc}") from None
                delay = self._backoff(attempt)
                self.log(f"{where}: {type(exc).__name__}: {exc}; retrying in {delay:.1f} s")
                self.sleep(delay)
                attempt += 1
                continue
            wait = self._rate_limit_wait(resp)
            if wait is not None:
                resp.close()
                limited += 1
                if limited > self.retries + 1:
                    raise FetchError(where, None, f"still rate limited after {limited} waits")
                self._wait_for(wait, f"GitHub rate limit ({resp.status_code})")
                continue
            if resp.status_code >= 500:
                resp.close()
                if attempt >= self.retries:
                    raise FetchError(where, None, f"HTTP {resp.status_code} after {attempt + 1} tries")
                retry_after = resp.headers.get("retry-after", "")
                delay = float(retry_after) if retry_after.isdigit() else self._backoff(attempt)
                self.log(f"{where}: HTTP {resp.status_code}; retrying in {delay:.1f} s")
                self.sleep(delay)
                attempt += 1
                continue
            if resp.headers.get("x-ratelimit-remaining") == "0" and resp.headers.get("x-ratelimit-reset", "").isdigit():
                self.blocked_until = int(resp.headers["x-ratelimit-reset"]) + 1
            return resp

    def _backoff(self, attempt: int) -> float:
        return self.backoff_s * (2 ** attempt) * (1 + random.random() * 0.1)

    def _check(self, resp, where: str):
        if resp.status_code == 401:
            raise FetchError(where, None, "GitHub refused the token (401): check GITHUB_TOKEN or GH_TOKEN")
        if resp.status_code == 404:
            raise FetchError(where, None, "not found (404): check the repository and workflow, and that the "
                                          "token may read its Actions")
        if resp.status_code >= 400:
            try:
                message = resp.json().get("message", "")
            except ValueError:
                message = resp.text[:200]
            raise FetchError(where, None, f"HTTP {resp.status_code}: {message}")

    def get_json(self, url: str, params: dict | None = None):
        resp = self.request("GET", url, params=params)
        self._check(resp, url.split("?")[0])
        return resp.json(), resp.links.get("next", {}).get("url")

    def paginate(self, path: str, key: str, params: dict):
        """The items under `key` of every page (following Link rel="next")."""
        data, nxt = self.get_json(path, {**params, "per_page": 100})
        yield from data.get(key) or []
        while nxt:
            data, nxt = self.get_json(nxt)
            yield from data.get(key) or []

    # -- the calls
    def runs(self, workflow: str | None, branch: str | None, created_since: str | None):
        base = f"/repos/{self.repo}/actions" + (f"/workflows/{workflow}" if workflow else "")
        params = {"status": "success"}
        if branch:
            params["branch"] = branch
        if created_since:
            params["created"] = f">={created_since}"
        return self.paginate(f"{base}/runs", "workflow_runs", params)

    def artifacts(self, run_id: int) -> list[dict]:
        return list(self.paginate(f"/repos/{self.repo}/actions/runs/{run_id}/artifacts", "artifacts", {}))

    def download(self, artifact: dict, dest: Path, limit: int) -> str:
        """Download an artifact's zip into `dest` (at most `limit` bytes); its SHA-256. Retried whole
        on a network error mid-stream."""
        url = f"/repos/{self.repo}/actions/artifacts/{artifact['id']}/zip"
        for attempt in range(self.retries + 1):
            resp = self.request("GET", url, stream=True)
            if resp.status_code in (301, 302, 303, 307, 308):
                resp.close()
                location = resp.headers.get("location")
                if not location:
                    raise FetchError(url, None, "redirect without a Location")
                # a signed storage URL: the token must not go along (and storage refuses it)
                resp = self.request("GET", location, auth=False, stream=True)
            try:
                self._check(resp, f"artifact {artifact['name']} ({artifact['id']})")
                h, size = hashlib.sha256(), 0
                with open(dest, "wb") as fh:
                    for block in resp.iter_bytes(1 << 20):
                        size += len(block)
                        if size > limit:
                            raise FetchError(f"artifact {artifact['name']}", None,
                                             f"larger than fetch.max_artifact_mb ({limit >> 20} MB)")
                        h.update(block)
                        fh.write(block)
                return h.hexdigest()
            except self.httpx.TransportError as exc:
                if attempt >= self.retries:
                    raise FetchError(f"artifact {artifact['name']}", None, f"download failed: {exc}") from None
                delay = self._backoff(attempt)
                self.log(f"artifact {artifact['name']}: download interrupted ({exc}); retrying in {delay:.1f} s")
                self.sleep(delay)
            finally:
                resp.close()
        raise AssertionError("unreachable")


def safe_name(name: str, taken: set[str]) -> str:
    """A folder name for an artifact: its name with anything but [A-Za-z0-9._ -] replaced, never
    hidden, never a duplicate."""
    clean = re.sub(r"[^A-Za-z0-9._ -]", "_", name).strip(" ") or "artifact"
    if clean.startswith("."):
        clean = "_" + clean[1:]
    out, n = clean, 2
    while out in taken:
        out, n = f"{clean}-{n}", n + 1
    taken.add(out)
    return out


# ---------------------------------------------------------------- state and the fetch itself

def load_state(path: Path) -> dict:
    """The fetch state (runs fetched per repository); a corrupt one is an error naming the file."""
    return read_state(path, {"version": 1, "repos": {}}, {"repos": dict})


def clean_leftovers(dest: Path, log) -> None:
    """Remove the hidden folders killed fetches left in `dest`, for every run folder named there, also
    runs not fetched again (secai.files.remove_stale: what no live process holds)."""
    if not dest.is_dir():
        return
    names = {m.group(1) for p in dest.iterdir() if (m := re.fullmatch(r"\.(.+)\.(?:tmp|old)-\d+-[0-9a-f]{8}", p.name))}
    for name in sorted(names):
        for p in remove_stale(dest / name):
            log(f"removed {p.name}, left by an interrupted fetch")


def _run_file(folder: Path) -> dict | None:
    try:
        data = orjson.loads((folder / RUN_FILE).read_bytes())
        return data if isinstance(data, dict) else None
    except (OSError, orjson.JSONDecodeError):
        return None


def fetch(repo: str, *, token: str, workflow: str | None = None, branch: str | None = "main",
          artifact_globs: list[str] = ("*",), dest: Path, state_path: Path, max_runs: int, lookback_hours: float,
          api_url: str, retries: int, backoff_s: float, max_wait_s: float, timeout_s: float,
          max_artifact_mb: float, max_member_mb: float, max_ratio: float, log=lambda m: None,
          sleep=None, clock=None) -> list[dict]:
    """Fetch new successful runs of `repo` (see the module docstring); one report per run fetched."""
    dest, state_path = Path(dest), Path(state_path)
    lock = try_lock(state_path.with_name(state_path.name + ".lock"))
    if lock is None:
        raise InputError(str(state_path), None, "another secai-fetch is running (it holds the lock); not starting a second")
    gh = GitHub(repo, token, api_url, retries=retries, backoff_s=backoff_s, max_wait_s=max_wait_s,
                timeout_s=timeout_s, log=log, sleep=sleep, clock=clock)
    try:
        dest.mkdir(parents=True, exist_ok=True)
        clean_leftovers(dest, log)
        state = load_state(state_path)
        mine = state["repos"].setdefault(repo, {"runs": {}})
        done = mine["runs"]
        since = None
        if done:  # runs since the newest fetched one, less the lookback, never before the first fetch's oldest
            newest = max(_parse_time(r["created_at"]) for r in done.values())
            since = (newest - dt.timedelta(hours=lookback_hours)).strftime("%Y-%m-%dT%H:%M:%SZ")
            since = max(since, mine.get("floor") or since)
        new = []
        for run in gh.runs(workflow, branch, since):
            if run.get("conclusion") != "success" or str(run["id"]) in done:
                continue
            if since and run["created_at"] < since:
                continue
            if branch and run.get("head_branch") != branch:
                continue
            new.append(run)
            if not done and len(new) >= max_runs:  # first fetch: the newest max_runs only
                break
        new.sort(key=lambda r: (r["created_at"], r["id"]))
        if len(new) > max_runs:
            log(f"{len(new)} new runs; fetching the oldest {max_runs} now, the rest next time")
            new = new[:max_runs]
        if not done and new:
            mine["floor"] = new[0]["created_at"]  # older runs than the first fetch took are never looked for
        reports = []
        for run in new:
            report = _fetch_run(gh, run, dest, artifact_globs, log, limits=(int(max_artifact_mb * 2**20),
                                                                            int(max_member_mb * 2**20), max_ratio))
            done[str(run["id"])] = {"head_sha": run["head_sha"], "branch": run.get("head_branch"),
                                    "created_at": run["created_at"], "fetched_at": now_iso(),
                                    "workflow": run.get("path"), "dir": report["dir"],
                                    "artifacts": len(report["artifacts"]), "files": report["files"]}
            mine["updated_at"] = now_iso()
            write_state(state_path, state)
            reports.append(report)
        return reports
    finally:
        gh.close()
        os.close(lock)


def _fetch_run(gh: GitHub, run: dict, dest: Path, globs, log, limits) -> dict:
    max_artifact, max_member, max_ratio = limits
    run_id = int(run["id"])
    final = dest / str(run_id)
    base = {"run_id": run_id, "run_number": run.get("run_number"), "head_sha": run["head_sha"],
            "branch": run.get("head_branch"), "created_at": run["created_at"], "workflow": run.get("path"),
            "html_url": run.get("html_url")}
    previous = _run_file(final)
    if previous and previous.get("run_id") == run_id and previous.get("complete"):
        log(f"run {run_id}: already unpacked in {final} (its state entry was lost); recorded without a download")
        return {**previous, "dir": str(final), "recovered": True}
    wanted, expired = [], []
    for art in gh.artifacts(run_id):
        if not any(fnmatch.fnmatchcase(art["name"], g) for g in globs):
            continue
        (expired if art.get("expired") else wanted).append(art)
    for art in expired:
        log(f"run {run_id}: artifact {art['name']} has expired; skipped")
    if not wanted:
        log(f"run {run_id} ({run['head_sha'][:12]}): no artifact to download")
        return {**base, "dir": None, "artifacts": [], "files": 0, "expired": [a["name"] for a in expired]}
    with building(final) as tmp:
        arts, names = [], set()
        for art in sorted(wanted, key=lambda a: (a["name"], a["id"])):
            zip_path = tmp / f".download-{art['id']}.zip"
            sha = gh.download(art, zip_path, max_artifact)
            want = (art.get("digest") or "").removeprefix("sha256:")
            if want and want != sha:
                raise FetchError(f"artifact {art['name']} ({art['id']})", None,
                                 "downloaded zip does not match the digest GitHub gives")
            folder = safe_name(art["name"], names)
            try:
                info = extract_zip(zip_path, tmp / folder, max_member=max_member, max_ratio=max_ratio,
                                   max_total=max_artifact)
            except (zipfile.BadZipFile, EOFError, OSError, RuntimeError, NotImplementedError) as exc:
                raise FetchError(f"artifact {art['name']} ({art['id']})", None, f"bad zip: {exc}") from None
            zip_path.unlink()
            for s in info["skipped"]:
                log(f"run {run_id}: artifact {art['name']}: skipped member {s['name']!r}: {s['reason']}")
            arts.append({"id": art["id"], "name": art["name"], "dir": folder, "zip_sha256": sha,
                         "zip_bytes": art.get("size_in_bytes"), **info})
        report = {**base, "artifacts": arts, "files": sum(a["files"] for a in arts),
                  "expired": [a["name"] for a in expired], "fetched_at": now_iso(), "complete": True}
        (tmp / RUN_FILE).write_bytes(orjson.dumps(report, option=orjson.OPT_SORT_KEYS | orjson.OPT_INDENT_2))
    log(f"run {run_id} ({run['head_sha'][:12]}, {run.get('head_branch')}): {len(arts)} artifacts, "
        f"{report['files']} files -> {final}")
    return {**report, "dir": str(final)}


def github_token() -> str | None:
    return os.environ.get("GITHUB_TOKEN") or os.environ.get("GH_TOKEN") or None


def fetch_from_config(log=lambda m: None, **overrides) -> list[dict]:
    """fetch() with every setting from config/secai.yaml (fetch: and parse:), then `overrides`."""
    opts = config.section("fetch")
    opts.update({k: v for k, v in overrides.items() if v is not None})
    repo = opts["repo"]
    if not repo:
        raise InputError("fetch.repo", None, "no repository: pass --repo OWNER/NAME or set fetch.repo")
    if not REPO.fullmatch(repo):
        raise InputError(repo, None, "not a GitHub repository (OWNER/NAME)")
    token = github_token()
    if not token:
        raise InputError("GITHUB_TOKEN", None, "no GitHub token: set GITHUB_TOKEN or GH_TOKEN (read access to "
                                               "the repository's Actions)")
    globs = opts["artifact"]
    globs = [globs] if isinstance(globs, str) else list(globs)
    return fetch(repo, token=token, workflow=opts["workflow"], branch=opts["branch"] or None,
                 artifact_globs=globs, dest=Path(opts["dest"]), state_path=Path(opts["state"]),
                 max_runs=opts["max_runs"], lookback_hours=opts["lookback_hours"], api_url=opts["api_url"],
                 retries=opts["retries"], backoff_s=opts["backoff_s"], max_wait_s=opts["max_wait_s"],
                 timeout_s=opts["timeout_s"], max_artifact_mb=opts["max_artifact_mb"],
                 max_member_mb=config.get("parse", "max_file_mb"),
                 max_ratio=float(config.get("parse", "max_zip_ratio")), log=log)
