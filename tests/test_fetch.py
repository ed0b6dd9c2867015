"""secai-fetch against a loopback GitHub (tests/loopback.py): new successful runs only, each unpacked
whole and safely, the state written atomically, no run downloaded twice, the token never sent to
storage nor printed; 5xx answers and broken downloads retried with backoff; rate limits waited out
(or refused beyond fetch.max_wait_s)."""

from __future__ import annotations

import time
from pathlib import Path

import orjson
import pytest
from conftest import ROOT, run_command
from loopback import FakeGitHub, make_zip

from secai import config
from secai.commands.fetch import Fetch
from secai.ops.github import RUN_FILE, extract_zip

TOKEN = "ghp_" + "F4k3T0k3n" * 4
SEMGREP = (ROOT / "examples" / "artifacts" / "semgrep.json").read_bytes()


@pytest.fixture
def sleeps(monkeypatch):
    """time.sleep recorded instead of slept (the retry and rate-limit waits)."""
    calls = []
    monkeypatch.setattr(time, "sleep", lambda s: calls.append(s))
    return calls


@pytest.fixture
def github(monkeypatch, tmp_path):
    with FakeGitHub(TOKEN) as gh:
        monkeypatch.setenv("GITHUB_TOKEN", TOKEN)
        monkeypatch.delenv("GH_TOKEN", raising=False)
        monkeypatch.setenv("SECAI_FETCH_API_URL", gh.url)
        monkeypatch.setenv("SECAI_FETCH_BACKOFF_S", "0.5")
        config.load.cache_clear()
        yield gh
    config.load.cache_clear()


def fetch(tmp_path, *argv):
    code, out, err = run_command(Fetch, ["--repo", "octo/app", *argv], cwd=tmp_path, raw=True)
    return code, [orjson.loads(line) for line in out.splitlines()], err


def state(tmp_path) -> dict:
    return orjson.loads((tmp_path / "build" / "state" / "fetch.json").read_bytes())["repos"]["octo/app"]


def visible(d: Path) -> list[str]:
    return sorted(p.name for p in d.iterdir() if not p.name.startswith("."))


def test_new_successful_runs_are_unpacked_whole_and_never_downloaded_twice(tmp_path, github, sleeps):
    github.add_run(101, sha="a" * 40, artifacts={"semgrep-report": make_zip({"semgrep.json": SEMGREP}),
                                                 "sarif": make_zip({"out/semgrep.sarif": b'{"runs": []}'})})
    github.add_run(102, sha="b" * 40, conclusion="failure", artifacts={"x": make_zip({"x.json": b"{}"})})
    github.add_run(103, sha="c" * 40, branch="feature", artifacts={"x": make_zip({"x.json": b"{}"})})
    github.add_run(104, sha="d" * 40, artifacts={"semgrep-report": make_zip({"semgrep.json": SEMGREP}),
                                                 "old": make_zip({"o.json": b"{}"})}, expired=("old",))
    code, runs, err = fetch(tmp_path)
    assert code == 0, err
    assert [r["run_id"] for r in runs] == [101, 104]  # oldest first; failed and other-branch runs left out
    dest = tmp_path / "artifacts" / "runs"
    assert visible(dest) == ["101", "104"]
    assert (dest / "101" / "semgrep-report" / "semgrep.json").read_bytes() == SEMGREP
    assert (dest / "101" / "sarif" / "out" / "semgrep.sarif").read_bytes() == b'{"runs": []}'
    assert visible(dest / "104") == ["semgrep-report"] and runs[1]["expired"] == ["old"]
    meta = orjson.loads((dest / "101" / RUN_FILE).read_bytes())
    assert meta["head_sha"] == "a" * 40 and meta["branch"] == "main" and meta["complete"] is True
    assert {a["name"]: a["files"] for a in meta["artifacts"]} == {"semgrep-report": 1, "sarif": 1}
    s = state(tmp_path)["runs"]
    assert sorted(s) == ["101", "104"]
    assert s["101"]["head_sha"] == "a" * 40 and s["101"]["branch"] == "main" and s["104"]["files"] == 1
    assert sorted(github.downloads) == [10100, 10101, 10400]
    # the token goes to the API only: never to the signed storage URL, never to stdout or stderr
    assert github.blob_auth == [None, None, None]
    assert TOKEN not in err and TOKEN not in orjson.dumps(runs).decode()
    assert TOKEN not in (tmp_path / "build" / "state" / "fetch.json").read_text()

    code, runs, err = fetch(tmp_path)  # nothing new: nothing downloaded
    assert code == 0 and runs == [] and len(github.downloads) == 3
    github.add_run(105, sha="e" * 40, artifacts={"semgrep-report": make_zip({"semgrep.json": SEMGREP})})
    code, runs, err = fetch(tmp_path)
    assert code == 0 and [r["run_id"] for r in runs] == [105]
    assert sorted(github.downloads) == [10100, 10101, 10400, 10500]
    assert sorted(state(tmp_path)["runs"]) == ["101", "104", "105"]
    assert sleeps == []


def test_workflow_filter_pagination_and_the_first_fetch_taking_the_newest_only(tmp_path, github, sleeps):
    github.page_size = 2
    for i in range(6):
        github.add_run(200 + i, sha=f"{i:040d}", workflow=".github/workflows/security.yml" if i != 5 else
                       ".github/workflows/other.yml", artifacts={"r": make_zip({"r.json": b"{}"})})
    code, runs, err = fetch(tmp_path, "--workflow", "security.yml", "--max-runs", "3")
    assert code == 0, err
    assert [r["run_id"] for r in runs] == [202, 203, 204]  # the newest 3 of security.yml, oldest first
    assert any("/actions/workflows/security.yml/runs" in p for _, p in github.requests)
    code, runs, err = fetch(tmp_path, "--workflow", "security.yml")
    assert code == 0 and runs == []  # runs older than the first fetch's are never looked for
    for i in range(6, 11):
        github.add_run(200 + i, sha=f"{i:040d}", artifacts={"r": make_zip({"r.json": b"{}"})})
    code, runs, err = fetch(tmp_path, "--workflow", "security.yml")  # 5 new, over 3 pages of 2
    assert code == 0 and [r["run_id"] for r in runs] == [206, 207, 208, 209, 210]
    assert any("page=3" in p for _, p in github.requests)


def test_5xx_answers_and_a_broken_download_are_retried_with_backoff(tmp_path, github, sleeps):
    github.add_run(301, sha="f" * 40, artifacts={"rep": make_zip({"semgrep.json": SEMGREP})})
    github.fail(r"/actions/runs$", 502, count=2)
    github.fail(r"/runs/301/artifacts$", 503, count=1)
    github.truncate.add(30100)
    code, runs, err = fetch(tmp_path)
    assert code == 0, err
    assert [r["run_id"] for r in runs] == [301]
    assert (tmp_path / "artifacts" / "runs" / "301" / "rep" / "semgrep.json").read_bytes() == SEMGREP
    assert err.count("HTTP 502; retrying") == 2 and "HTTP 503; retrying" in err and "download interrupted" in err
    # exponential: 0.5, 1.0 for the two 502s (10% jitter at most), 0.5 for the 503, 0.5 for the download
    assert len(sleeps) == 4 and 0.5 <= sleeps[0] <= 0.55 and 1.0 <= sleeps[1] <= 1.1
    assert github.downloads == [30100]


def test_5xx_beyond_the_retries_is_an_error_and_records_nothing(tmp_path, github, sleeps, monkeypatch):
    monkeypatch.setenv("SECAI_FETCH_RETRIES", "2")
    config.load.cache_clear()
    github.add_run(311, sha="f" * 40, artifacts={"rep": make_zip({"a.json": b"{}"})})
    github.fail(r"/artifacts/31100/zip$", 500, count=10)
    code, runs, err = fetch(tmp_path)
    assert code == 1 and runs == []
    assert err.strip().endswith("/repos/octo/app/actions/artifacts/31100/zip: HTTP 500 after 3 tries")
    assert len(sleeps) == 2
    assert visible(tmp_path / "artifacts" / "runs") == []
    assert not (tmp_path / "build" / "state" / "fetch.json").exists()


def test_network_errors_are_retried_then_reported(tmp_path, sleeps, monkeypatch):
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there: connection refused
    monkeypatch.setenv("SECAI_FETCH_API_URL", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("SECAI_FETCH_RETRIES", "3")
    monkeypatch.setenv("GITHUB_TOKEN", TOKEN)
    config.load.cache_clear()
    try:
        code, runs, err = fetch(tmp_path)
    finally:
        config.load.cache_clear()
    assert code == 1 and "network error after 4 tries: ConnectError" in err
    assert len(sleeps) == 3 and sleeps[2] >= 4 * sleeps[0] * 0.9


def test_rate_limits_are_waited_out(tmp_path, github, sleeps):
    github.add_run(401, sha="1" * 40, artifacts={"rep": make_zip({"a.json": b"{}"})})
    reset = int(time.time()) + 30
    github.fail(r"/actions/runs$", 403, headers={"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(reset)},
                body={"message": "API rate limit exceeded for user ID 1."})
    github.fail(r"/runs/401/artifacts$", 429, headers={"retry-after": "7"},
                body={"message": "You have exceeded a secondary rate limit."})
    code, runs, err = fetch(tmp_path)
    assert code == 0, err
    assert [r["run_id"] for r in runs] == [401]
    assert len(sleeps) == 2
    assert 25 <= sleeps[0] <= 32  # until x-ratelimit-reset (+1 s)
    assert sleeps[1] == 7          # retry-after
    assert "GitHub rate limit (403); waiting" in err and "GitHub rate limit (429); waiting 7 s" in err


def test_an_answer_using_up_the_limit_delays_the_next_call(tmp_path, github, sleeps):
    github.add_run(402, sha="2" * 40, artifacts={"rep": make_zip({"a.json": b"{}"})})
    github.exhaust_in = 20  # the runs listing says: 0 requests left, reset in 20 s
    code, runs, err = fetch(tmp_path)
    assert code == 0 and [r["run_id"] for r in runs] == [402]
    assert len(sleeps) == 1 and 18 <= sleeps[0] <= 22 and "rate limit used up" in err


def test_a_rate_limit_resetting_beyond_max_wait_stops_with_a_clear_error(tmp_path, github, sleeps):
    github.add_run(403, sha="3" * 40, artifacts={"rep": make_zip({"a.json": b"{}"})})
    github.fail(r"/actions/runs$", 403, headers={"x-ratelimit-remaining": "0",
                                                 "x-ratelimit-reset": str(int(time.time()) + 4000)},
                body={"message": "API rate limit exceeded"})
    code, runs, err = fetch(tmp_path)
    assert code == 1 and sleeps == [] and len(err.strip().splitlines()) == 1
    assert "GitHub rate limit (403); it resets at" in err and "longer than fetch.max_wait_s (900 s)" in err


def test_unsafe_zip_members_are_skipped_and_the_rest_kept(tmp_path, github, sleeps):
    bomb = b"\0" * (11 * 2**20)  # 11 MB of zeros: compresses over 1000:1
    evil = make_zip({"ok/report.json": b'{"ok": true}', "../escape.txt": b"x", "/abs.txt": b"x",
                     "C:/win.txt": b"x", "bomb.bin": bomb}, symlinks={"link": "/etc/passwd"})
    github.add_run(501, sha="5" * 40, artifacts={"evil": evil})
    code, runs, err = fetch(tmp_path)
    assert code == 0, err
    run = tmp_path / "artifacts" / "runs" / "501"
    files = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file() or p.is_symlink())
    assert [f for f in files if not f.startswith("build/")] == ["artifacts/runs/501/.secai-run.json",
                                                               "artifacts/runs/501/evil/ok/report.json"]
    skipped = {s["name"]: s["reason"] for s in runs[0]["artifacts"][0]["skipped"]}
    assert skipped == {"../escape.txt": "path escapes the archive", "/abs.txt": "path escapes the archive",
                       "C:/win.txt": "path escapes the archive", "bomb.bin": "compression ratio over 200:1 (zip bomb?)",
                       "link": "a symlink"}
    assert not any(p.is_symlink() for p in run.rglob("*"))
    assert "skipped member 'link': a symlink" in err


def test_extract_zip_limits(tmp_path):
    z = tmp_path / "a.zip"
    z.write_bytes(make_zip({"a.txt": b"a" * 1000, "b.txt": b"b" * 1000, "c/d.txt": b"d"}))
    info = extract_zip(z, tmp_path / "out", max_member=500, max_ratio=200, max_total=10**6)
    assert info["files"] == 1 and [s["name"] for s in info["skipped"]] == ["a.txt", "b.txt"]
    info = extract_zip(z, tmp_path / "out2", max_member=10**6, max_ratio=200, max_total=1500)
    assert info["files"] == 2 and [s["name"] for s in info["skipped"]] == ["b.txt"]
    assert (tmp_path / "out2" / "c" / "d.txt").read_bytes() == b"d"


def test_a_zip_not_matching_its_digest_is_refused_whole(tmp_path, github, sleeps):
    github.add_run(601, sha="6" * 40, artifacts={"rep": make_zip({"a.json": b"{}"})})
    github.artifacts[601][0]["digest"] = "sha256:" + "0" * 64
    code, runs, err = fetch(tmp_path)
    assert code == 1 and "artifact rep (60100): downloaded zip does not match the digest GitHub gives" in err
    assert list((tmp_path / "artifacts" / "runs").iterdir()) == []  # not even a hidden leftover
    assert not (tmp_path / "build" / "state" / "fetch.json").exists()


def test_a_run_folder_whose_state_entry_was_lost_is_recorded_without_a_download(tmp_path, github, sleeps):
    github.add_run(701, sha="7" * 40, artifacts={"rep": make_zip({"a.json": b"{}"})})
    assert fetch(tmp_path)[0] == 0
    (tmp_path / "build" / "state" / "fetch.json").unlink()  # as if killed between the rename and the state write
    leftover = tmp_path / "artifacts" / "runs" / ".702.tmp-999-0123abcd"
    leftover.mkdir()
    (leftover / "half.json").write_text("{")
    code, runs, err = fetch(tmp_path)
    assert code == 0 and runs[0]["recovered"] is True and "recorded without a download" in err
    assert github.downloads == [70100] and sorted(state(tmp_path)["runs"]) == ["701"]
    assert not leftover.exists() and "left by an interrupted fetch" in err


def test_token_and_repository_errors(tmp_path, github, sleeps, monkeypatch):
    code, _, err = run_command(Fetch, [], cwd=tmp_path, raw=True)
    assert code == 1 and "no repository: pass --repo OWNER/NAME or set fetch.repo" in err
    code, _, err = run_command(Fetch, ["--repo", "bad repo"], cwd=tmp_path, raw=True)
    assert code == 1 and "not a GitHub repository" in err
    code, _, err = fetch(tmp_path, "--repo", "octo/missing")
    assert code == 1 and "not found (404)" in err
    monkeypatch.setenv("GITHUB_TOKEN", "ghp_" + "W" * 36)
    code, _, err = fetch(tmp_path)
    assert code == 1 and err.strip().endswith("GitHub refused the token (401): check GITHUB_TOKEN or GH_TOKEN")
    assert "W" * 36 not in err
    monkeypatch.delenv("GITHUB_TOKEN")
    monkeypatch.setenv("GH_TOKEN", TOKEN)
    github.add_run(801, sha="8" * 40, artifacts={"rep": make_zip({"a.json": b"{}"})})
    assert fetch(tmp_path)[0] == 0  # GH_TOKEN works as well
    monkeypatch.delenv("GH_TOKEN")
    code, _, err = fetch(tmp_path)
    assert code == 1 and "no GitHub token: set GITHUB_TOKEN or GH_TOKEN" in err
