"""The daemon: a cycle under a lock (a second one exits at once), kill -9 in the middle of a download
and of a build leaving no partial output and the next cycle finishing without duplicates, the
SKIP_FINETUNE kill switch, the push step, one log line per cycle; launchd and systemd units rendered
and validated (plistlib round trip / plutil -lint, systemd-analyze verify) and installed into a
temporary directory without calling launchctl or systemctl; and one real `make daemon-cycle`
(loopback GitHub -> make all -> loopback Hub) in a small copy of the project."""

from __future__ import annotations

import os
import plistlib
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest
from conftest import ROOT, run_command
from loopback import FakeGitHub, FakeHub, make_zip
from test_push import TOKEN as HF_TOKEN, make_dataset

from secai import config
from secai.ops import cycle as daemon
from secai.commands.daemon import Daemon
from secai.ops.cycle import build_command, load_env_file
from secai.ops.units import render_launchd, render_systemd
from secai.ops.github import try_lock
from secai.commands.parse import Parse

GH_TOKEN = "ghp_" + "D43m0nT0k" * 4
SEMGREP = (ROOT / "examples" / "artifacts" / "semgrep.json").read_bytes()
PY = sys.executable


def env_for(tmp_path: Path, gh: FakeGitHub | None = None, **extra) -> dict:
    """A clean environment for a cycle subprocess run in tmp_path (its build/, artifacts/ go there)."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SECAI_", "HF_", "MAKE", "GITHUB_", "GH_"))
           and k not in ("MFLAGS", "ARTIFACTS", "SKIP_FINETUNE", "TRANSFORMERS_OFFLINE")}
    env.update(PYTHONPATH=str(ROOT / "lib"), SECAI_DAEMON_ENV_FILE=str(tmp_path / "no-env-file"),
               HF_HOME=str(tmp_path / "hf-home"))
    if gh:
        env.update(SECAI_FETCH_REPO="octo/app", SECAI_FETCH_API_URL=gh.url, SECAI_FETCH_BACKOFF_S="0.1",
                   GITHUB_TOKEN=GH_TOKEN)
    env.update(extra)
    return env


def cycle_cmd(*args):
    return [PY, "-m", "secai.commands.daemon", "cycle", *args]


def visible(d: Path) -> list[str]:
    return sorted(p.name for p in d.iterdir() if not p.name.startswith(".")) if d.exists() else []


def log_lines(tmp_path: Path) -> list[str]:
    p = tmp_path / "build" / "logs" / "daemon.log"
    return p.read_text().splitlines() if p.exists() else []


def fields(line: str) -> dict:
    return dict(part.split("=", 1) for part in line.split()[1:] if "=" in part)


def semgrep_ids() -> set[str]:
    code, records, err = run_command(Parse, ["-q", str(ROOT / "examples" / "artifacts" / "semgrep.json")])
    assert code == 0, err
    return {r["id"] for r in records}


# ---------------------------------------------------------------- kill -9, the lock, recovery

def test_kill_9_during_a_download_and_a_second_cycle_while_one_runs(tmp_path):
    """Cycle 1 stalls in run 102's download; cycle 2 meanwhile exits at once; cycle 1 is killed -9;
    cycle 3 finishes: run 102 whole, each run once in the state, findings without duplicates."""
    build = f"{PY} -m secai.commands.parse -q artifacts/runs -o build/findings.jsonl"
    with FakeGitHub(GH_TOKEN) as gh:
        gh.add_run(101, sha="a" * 40, artifacts={"scan": make_zip({"semgrep.json": SEMGREP})})
        pad = b"\x00" + os.urandom(200_000)  # binary (parse skips it): makes "halfway" a real mid-download
        gh.add_run(102, sha="b" * 40, artifacts={"scan": make_zip({"semgrep.json": SEMGREP, "pad.bin": pad})})
        gh.stall.add(10200)
        env = env_for(tmp_path, gh, SECAI_DAEMON_BUILD=build)
        first = subprocess.Popen(cycle_cmd(), cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            assert gh.stalled.wait(60), "the first cycle never reached the stalled download"
            second = subprocess.run(cycle_cmd(), cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
            assert second.returncode == 0 and second.stdout == ""
            assert f"a cycle is already running (pid {first.pid} since " in second.stderr
            assert first.poll() is None  # still in its download
            os.kill(first.pid, signal.SIGKILL)
            first.wait(10)
        finally:
            if first.poll() is None:
                first.kill()
            gh.stall.clear()
            gh.release.set()
        runs = tmp_path / "artifacts" / "runs"
        # no partial output: run 101 finished before the kill and is recorded; of 102 nothing but a hidden folder
        assert visible(runs) == ["101"]
        assert [p.name for p in runs.iterdir() if p.name.startswith(".")][0].startswith(".102.tmp-")
        state = orjson.loads((tmp_path / "build" / "state" / "fetch.json").read_bytes())["repos"]["octo/app"]["runs"]
        assert sorted(state) == ["101"]
        assert not (tmp_path / "build" / "findings.jsonl").exists()  # the build was never reached
        lines = log_lines(tmp_path)
        assert len(lines) == 1 and fields(lines[0])["cycle"] == "skipped"  # the killed cycle logged nothing

        third = subprocess.run(cycle_cmd(), cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
        assert third.returncode == 0, third.stderr
        assert third.stdout == ""
        assert visible(runs) == ["101", "102"] and [p.name for p in runs.iterdir() if p.name.startswith(".")] == []
        assert (runs / "102" / "scan" / "semgrep.json").read_bytes() == SEMGREP
        state = orjson.loads((tmp_path / "build" / "state" / "fetch.json").read_bytes())["repos"]["octo/app"]["runs"]
        assert sorted(state) == ["101", "102"] and state["102"]["head_sha"] == "b" * 40
        assert gh.downloads.count(10100) == 1  # run 101 was never fetched again
        ids = [orjson.loads(line)["id"] for line in (tmp_path / "build" / "findings.jsonl").read_bytes().splitlines()]
        assert len(ids) == len(set(ids)) and set(ids) == semgrep_ids()  # both runs, each finding once
        f = fields(log_lines(tmp_path)[-1])
        assert (f["cycle"], f["fetch"], f["runs"], f["artifacts"], f["build"], f["push"]) == \
               ("ok", "ok", "1", "1", "ok", "off")
        assert float(f["total_s"]) >= float(f["fetch_s"]) and "build_s" in f

        n = len(gh.downloads)
        fourth = subprocess.run(cycle_cmd(), cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
        assert fourth.returncode == 0 and fields(log_lines(tmp_path)[-1])["runs"] == "0" and len(gh.downloads) == n


BUILD_SCRIPT = """\
import os, pathlib, sys, time
pathlib.Path("started.tmp").write_text(str(os.getpid()))
os.replace("started.tmp", "started")
deadline = time.time() + 30
while not pathlib.Path("go").exists() and time.time() < deadline:
    time.sleep(0.05)
with open("builds.log", "a") as fh:
    fh.write(" ".join(sys.argv[1:]) + " SKIP_FINETUNE=" + os.environ.get("SKIP_FINETUNE", "-") + "\\n")
"""


def test_a_build_left_running_by_a_killed_cycle_keeps_the_lock(tmp_path):
    """kill -9 of the cycle during its build: the build (which holds the lock's descriptor) goes on,
    and no other cycle starts a second build until it ends."""
    (tmp_path / "build.py").write_text(BUILD_SCRIPT)
    env = env_for(tmp_path, SECAI_DAEMON_BUILD=f"{PY} build.py one")
    first = subprocess.Popen(cycle_cmd(), cwd=tmp_path, env=env, stderr=subprocess.DEVNULL)
    try:
        for _ in range(600):
            if (tmp_path / "started").exists():
                break
            time.sleep(0.05)
        build_pid = int((tmp_path / "started").read_text())
        os.kill(first.pid, signal.SIGKILL)
        first.wait(10)
        os.kill(build_pid, 0)  # the orphaned build still runs
        second = subprocess.run(cycle_cmd(), cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
        assert second.returncode == 0 and "a cycle is already running" in second.stderr
        (tmp_path / "go").touch()
        for _ in range(600):  # the orphan is not our child: wait until its exit releases the lock
            fd = try_lock(tmp_path / "build" / "state" / "daemon.lock")
            if fd is not None:
                os.close(fd)
                break
            time.sleep(0.05)
    finally:
        if first.poll() is None:
            first.kill()
        (tmp_path / "go").touch()
    third = subprocess.run(cycle_cmd(), cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert third.returncode == 0, third.stderr
    assert (tmp_path / "builds.log").read_text().splitlines() == ["one SKIP_FINETUNE=-", "one SKIP_FINETUNE=-"]
    assert [fields(x)["cycle"] for x in log_lines(tmp_path)] == ["skipped", "ok"]


# ---------------------------------------------------------------- the cycle in-process

@pytest.fixture
def incwd(tmp_path, monkeypatch):
    """Run in tmp_path with a clean SECAI_* environment (config cache cleared around the test)."""
    for k in list(os.environ):
        if k.startswith("SECAI_") or k in ("GITHUB_TOKEN", "GH_TOKEN", "HF_TOKEN", "SKIP_FINETUNE", "ARTIFACTS"):
            monkeypatch.delenv(k)
    monkeypatch.setenv("SECAI_DAEMON_ENV_FILE", str(tmp_path / "no-env-file"))
    monkeypatch.chdir(tmp_path)
    config.load.cache_clear()
    yield tmp_path
    config.load.cache_clear()


def test_build_command_passes_artifacts_and_the_finetune_kill_switch():
    argv, env = build_command("make all", "artifacts/runs", True)
    assert argv == ["make", "all", "ARTIFACTS=artifacts/runs", "SKIP_FINETUNE=1"]
    assert env["ARTIFACTS"] == "artifacts/runs" and env["SKIP_FINETUNE"] == "1"
    argv, env = build_command("python build.py --fast", None, False)
    assert argv == ["python", "build.py", "--fast"]
    assert env.get("SKIP_FINETUNE") == os.environ.get("SKIP_FINETUNE") and env.get("ARTIFACTS") == os.environ.get("ARTIFACTS")
    argv, env = build_command("python build.py", "runs", True)  # not make: environment variables only
    assert argv == ["python", "build.py"] and env["ARTIFACTS"] == "runs" and env["SKIP_FINETUNE"] == "1"


def test_skip_in_daemon_reaches_the_build_and_a_failed_build_fails_the_cycle(incwd, monkeypatch):
    (incwd / "go").touch()
    (incwd / "build.py").write_text(BUILD_SCRIPT)
    monkeypatch.setenv("SECAI_DAEMON_BUILD", f"{PY} build.py")
    monkeypatch.setenv("SECAI_DAEMON_SKIP_FINETUNE", "true")
    config.load.cache_clear()
    code, out, err = run_command(Daemon, ["cycle"], raw=True)
    assert code == 0 and out == "", err
    assert (incwd / "builds.log").read_text() == " SKIP_FINETUNE=1\n"
    f = fields(log_lines(incwd)[-1])
    assert (f["cycle"], f["fetch"], f["build"], f["push"]) == ("ok", "off", "ok", "off")
    monkeypatch.setenv("SECAI_DAEMON_BUILD", f"{PY} -c 'import sys; sys.exit(3)'")
    config.load.cache_clear()
    code, out, err = run_command(Daemon, ["cycle"], raw=True)
    assert code == 1
    assert err.strip().splitlines()[-1].startswith("secai-daemon: error: cycle: failed: cycle=error ")
    f = fields(log_lines(incwd)[-1])
    assert (f["cycle"], f["build"], f["failed"]) == ("error", "exit-3", "build")
    assert len(log_lines(incwd)) == 2  # one line per cycle


def test_a_cycle_pushes_the_dataset_once_naming_the_fetched_commits(incwd, monkeypatch):
    import huggingface_hub.constants as constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(incwd / "no-stored-token"))
    dataset = make_dataset(incwd, "dataset")
    with FakeGitHub(GH_TOKEN) as gh, FakeHub(HF_TOKEN) as hub:
        gh.add_run(901, sha="9" * 40, artifacts={"scan": make_zip({"semgrep.json": SEMGREP})})
        for k, v in {"SECAI_FETCH_REPO": "octo/app", "SECAI_FETCH_API_URL": gh.url, "GITHUB_TOKEN": GH_TOKEN,
                     "HF_TOKEN": HF_TOKEN, "HF_ENDPOINT": hub.url, "SECAI_DAEMON_BUILD": f"{PY} -c pass",
                     "SECAI_PUSH_ENABLED": "true", "SECAI_PUSH_DATASET_REPO": "octo/findings",
                     "SECAI_PUSH_DATASET_DIR": str(dataset)}.items():
            monkeypatch.setenv(k, v)
        config.load.cache_clear()
        code, out, err = run_command(Daemon, ["cycle"], raw=True)
        assert code == 0, err
        f = fields(log_lines(incwd)[-1])
        assert (f["fetch"], f["runs"], f["build"], f["push"]) == ("ok", "1", "ok", "dataset:pushed,model:off")
        (commit,) = hub.commits
        assert "9" * 40 in commit["header"]["description"]  # the fetched run's head commit is named
        assert hub.files("dataset", "octo/findings")["README.md"] == (dataset / "README.md").read_bytes()
        code, out, err = run_command(Daemon, ["cycle"], raw=True)
        assert code == 0, err
        f = fields(log_lines(incwd)[-1])
        assert (f["runs"], f["push"]) == ("0", "dataset:unchanged,model:off") and len(hub.commits) == 1
        assert HF_TOKEN not in err and GH_TOKEN not in err and GH_TOKEN not in "".join(log_lines(incwd))


def test_the_env_file_is_loaded_only_when_private(incwd, monkeypatch):
    f = incwd / "daemon.env"
    f.write_text("# tokens\nexport GITHUB_TOKEN='ghp_fromfile'\nSECAI_X=1\nHOME_ALREADY=ignored\n")
    monkeypatch.setenv("HOME_ALREADY", "kept")
    for name in ("GITHUB_TOKEN", "SECAI_X"):  # restored by monkeypatch after the test, whatever happens
        monkeypatch.setenv(name, "placeholder")
        monkeypatch.delenv(name)
    f.chmod(0o644)
    with pytest.raises(daemon.InputError, match="readable by others"):
        load_env_file(f, print)
    f.chmod(0o600)
    names = load_env_file(f, lambda m: None)
    assert names == ["GITHUB_TOKEN", "SECAI_X"]
    assert os.environ["GITHUB_TOKEN"] == "ghp_fromfile" and os.environ["HOME_ALREADY"] == "kept"
    f.write_text("not a pair\n")
    with pytest.raises(daemon.InputError, match="expected KEY=VALUE"):
        load_env_file(f, print)


# ---------------------------------------------------------------- launchd and systemd

PATHS = {"root": Path("/Users/dev/secai"), "log_dir": Path("/Users/dev/secai/build/logs"), "make": "/usr/bin/make",
         "name": "secai", "interval": 300}


def test_launchd_plist_round_trips_and_says_what_launchd_needs(tmp_path):
    (name, data), = render_launchd(PATHS).items()
    assert name == "local.secai.daemon.plist"
    plist = plistlib.loads(data)
    assert plistlib.loads(plistlib.dumps(plist, sort_keys=True)) == plist
    assert plistlib.dumps(plist, sort_keys=True) == data  # rendered deterministically
    assert plist["Label"] == "local.secai.daemon" and plist["StartInterval"] == 300 and plist["RunAtLoad"] is True
    assert plist["ProgramArguments"] == ["/usr/bin/make", "-C", "/Users/dev/secai", "--no-print-directory",
                                         "daemon-cycle"]
    assert plist["WorkingDirectory"] == "/Users/dev/secai"
    assert plist["StandardOutPath"] == "/Users/dev/secai/build/logs/daemon.out.log"
    assert plist["StandardErrorPath"] == "/Users/dev/secai/build/logs/daemon.err.log"
    assert all(isinstance(v, str) for v in plist["ProgramArguments"]) and "/usr/bin" in plist["EnvironmentVariables"]["PATH"]
    assert "TOKEN" not in data.decode()
    if shutil.which("plutil"):
        (tmp_path / name).write_bytes(data)
        lint = subprocess.run(["plutil", "-lint", str(tmp_path / name)], capture_output=True, text=True)
        assert lint.returncode == 0, lint.stdout + lint.stderr


def test_systemd_units_verify(tmp_path):
    files = render_systemd({**PATHS, "root": tmp_path / "project", "log_dir": tmp_path / "project" / "build" / "logs",
                            "make": shutil.which("make") or "/usr/bin/make"})
    assert sorted(files) == ["secai.service", "secai.timer"]
    service, timer = files["secai.service"].decode(), files["secai.timer"].decode()
    assert "Type=oneshot" in service and f"WorkingDirectory={tmp_path / 'project'}" in service
    assert f"-C {tmp_path / 'project'} --no-print-directory daemon-cycle" in service
    assert f"StandardOutput=append:{tmp_path / 'project/build/logs/daemon.out.log'}" in service
    assert "OnUnitActiveSec=300" in timer and "Unit=secai.service" in timer and "WantedBy=timers.target" in timer
    with pytest.raises(daemon.InputError, match="spaces"):
        render_systemd({**PATHS, "root": Path("/home/dev/my project")})
    if not shutil.which("systemd-analyze"):
        pytest.skip("systemd-analyze is not installed: the files were checked by content only")
    for n, data in files.items():
        (tmp_path / n).write_bytes(data)
    paths = [str(tmp_path / n) for n in files]
    proc = subprocess.run(["systemd-analyze", "--user", "verify", *paths], capture_output=True, text=True)
    if proc.returncode != 0 and "Failed to initialize manager" in proc.stderr:  # no user manager (a container)
        proc = subprocess.run(["systemd-analyze", "verify", *paths], capture_output=True, text=True)
    # verify reports bad keys and values as warnings naming the file, with exit status 0
    assert proc.returncode == 0 and "secai." not in proc.stdout + proc.stderr, proc.stdout + proc.stderr


@pytest.mark.parametrize("platform,names", [("linux", ["secai.service", "secai.timer"]),
                                            ("macos", ["local.secai.daemon.plist"])])
def test_install_status_uninstall_in_a_temporary_directory_without_launchctl_or_systemctl(incwd, platform, names,
                                                                                       monkeypatch):
    units = incwd / "units"
    monkeypatch.setenv("SECAI_DAEMON_LOG", str(incwd / "build" / "logs" / "daemon.log"))  # not the project's
    config.load.cache_clear()
    common = ["--platform", platform, "--unit-dir", str(units), "--no-control"]
    code, out, err = run_command(Daemon, ["install", "--dry-run", *common], raw=True)
    assert code == 0 and not units.exists()
    assert all(f"# {units / n}" in out for n in names)
    assert ("systemctl --user enable --now secai.timer" if platform == "linux" else "launchctl bootstrap") in out
    code, out, err = run_command(Daemon, ["install", *common], raw=True)
    assert code == 0, err
    assert sorted(p.name for p in units.iterdir()) == names
    assert "not run (control off): " + ("systemctl --user enable --now secai.timer" if platform == "linux"
                                        else "launchctl bootstrap") in err
    assert (incwd / "build" / "logs").is_dir()  # made for the units' output
    if platform == "macos":
        plist = plistlib.loads((units / names[0]).read_bytes())
        assert plist["StartInterval"] == 300 and plist["StandardErrorPath"] == str(incwd / "build/logs/daemon.err.log")
    else:
        assert f"StandardError=append:{incwd / 'build/logs/daemon.err.log'}" in (units / "secai.service").read_text()
    (incwd / "build" / "state").mkdir(parents=True)
    (incwd / "build" / "state" / "daemon.lock").write_text(f"pid {os.getpid()} since 2025-01-01T00:00:00Z\n")
    code, out, err = run_command(Daemon, ["status", *common], raw=True)
    assert code == 0 and ": installed" in out and f"cycle: running (pid {os.getpid()}" in out
    code, _, err = run_command(Daemon, ["uninstall", *common], raw=True)
    assert code == 0 and list(units.iterdir()) == []
    code, out, err = run_command(Daemon, ["status", *common], raw=True)
    assert code == 0 and ": not installed" in out


# ---------------------------------------------------------------- make daemon-cycle, for real

STAMP = ROOT / ".venv" / ".installed"


@pytest.mark.skipif(shutil.which("make") is None or not STAMP.is_file(), reason="needs make and an installed .venv")
def test_make_daemon_cycle_fetches_builds_and_pushes(tmp_path):
    """`make daemon-cycle` in a small copy of the project (as tests/test_make.py builds it): fetch
    from the loopback GitHub, the real `make all` on what was fetched, push of the dataset it made
    to the loopback Hub; the second cycle finds nothing new and pushes nothing."""
    from test_make import project_copy

    project_copy(tmp_path, [])  # the project's code, no reports; the venv is borrowed, never reinstalled
    with FakeGitHub(GH_TOKEN) as gh, FakeHub(HF_TOKEN) as hub:
        gh.add_run(1001, sha="c" * 40, artifacts={"semgrep": make_zip({"semgrep.json": SEMGREP})})
        env = env_for(tmp_path, gh, PYTHONPATH=str(tmp_path / "lib"), HF_TOKEN=HF_TOKEN, HF_ENDPOINT=hub.url,
                      SECAI_PUSH_ENABLED="true", SECAI_PUSH_DATASET_REPO="octo/findings",
                      SECAI_DAEMON_SKIP_FINETUNE="true")
        assert subprocess.run(["make", "-q", "install"], cwd=tmp_path, env=env).returncode == 0
        proc = subprocess.run(["make", "--no-print-directory", "daemon-cycle"], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=240)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "ARTIFACTS=artifacts/runs SKIP_FINETUNE=1" in proc.stderr
        f = fields(log_lines(tmp_path)[-1])
        assert (f["cycle"], f["runs"], f["build"], f["push"]) == ("ok", "1", "ok", "dataset:pushed,model:off")
        manifest = orjson.loads((tmp_path / "build" / "datasets" / "analysis" / "manifest.json").read_bytes())
        received = hub.files("dataset", "octo/findings")
        assert received["manifest.json"] == (tmp_path / "build" / "datasets" / "analysis" / "manifest.json").read_bytes()
        assert set(received) == {".gitattributes", "manifest.json", *manifest["files"]}
        ids = {orjson.loads(x)["id"] for x in (tmp_path / "build" / "findings.jsonl").read_bytes().splitlines()}
        assert ids == semgrep_ids()
        proc = subprocess.run(["make", "--no-print-directory", "daemon-cycle"], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=240)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        f = fields(log_lines(tmp_path)[-1])
        assert (f["runs"], f["build"], f["push"]) == ("0", "ok", "dataset:unchanged,model:off")
        assert len(hub.commits) == 1 and gh.downloads == [100100]
        assert HF_TOKEN not in proc.stdout + proc.stderr and GH_TOKEN not in proc.stdout + proc.stderr


@pytest.mark.parametrize("answer,rc,said", [("no", 0, True), ("yes", 0, False), ("", 1, False)])
def test_linger_off_is_told_with_the_command_that_turns_it_on(tmp_path, monkeypatch, answer, rc, said):
    """systemd stops a user's timers at logout unless linger is on: loginctl (here a stand-in on PATH)
    is asked about the user, and only a plain "no" gives the note."""
    from secai.ops.units import linger

    fake = tmp_path / "loginctl"
    fake.write_text(f"#!/bin/sh\n[ \"$2\" = alice ] && [ \"$3\" = --property=Linger ] || exit 9\necho {answer}\nexit {rc}\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    note = linger("alice")
    assert (note == "linger is off for alice: the timer stops when alice logs out; "
                    "`loginctl enable-linger alice` keeps it running") if said else note is None
    monkeypatch.setenv("PATH", str(tmp_path / "nothing-here"))
    assert linger("alice") is None
