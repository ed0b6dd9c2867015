"""The daemon's cycle (fetch, build, publish) under a lock, and its status: what `secai-daemon cycle`
and `secai-daemon status` run (the command: secai.commands.daemon; the launchd/systemd units that
run a cycle every 5 minutes: secai.ops.units).

A cycle:
1. Takes an exclusive, non-blocking flock on daemon.lock (build/state/daemon.lock). When another
   cycle holds it, this one says so and exits 0 at once. The lock's descriptor is passed to the
   build, so a build left running by a killed cycle still holds it: two builds never overlap.
2. Loads daemon.env_file (KEY=VALUE lines, e.g. GITHUB_TOKEN; only when readable by its owner
   alone; variables already set win) — launchd and systemd start the cycle without your shell's
   environment.
3. Fetch: secai-fetch with the fetch: settings (when fetch.repo is set): new runs only.
4. Build: daemon.build (default `make all`), with ARTIFACTS=fetch.dest (when fetching) and
   SKIP_FINETUNE=1 when daemon.skip_finetune is true — as make variables when the command is make,
   and always as environment variables.
   make's incremental rebuilds and the per-finding analysis cache mean only new work is done;
   a build a killed cycle left unfinished is finished by the next one. Skipped while fetch.dest
   holds no run.
5. Push (when push.enabled and the build did not fail): the dataset (push.dataset_dir to
   push.dataset_repo) and the model (push.model_dir to push.model_repo) when set, each skipped
   when unchanged since its last push, naming the fetched runs' head commits as source commits.
6. One log line, on stderr and appended to daemon.log (build/logs/daemon.log):
   `TIME cycle=ok fetch=ok runs=N artifacts=N files=N fetch_s=S build=ok build_s=S push=... push_s=S total_s=S`.
A step that fails is logged (`fetch=error`, `build=exit-2`, ...) and makes the cycle exit 1; a
failed fetch still lets the build finish earlier work.
"""

from __future__ import annotations

import os
import shlex
import stat
import subprocess
import sys
import time
from pathlib import Path

from secai import config
from secai.errors import InputError
from secai.files import now_iso, try_lock
from secai.ops.units import control_commands, label, linger, render, run_control

# ---------------------------------------------------------------- environment file

def load_env_file(path: Path, log) -> list[str]:
    """Set the KEY=VALUE lines of `path` (if it exists) that are not set yet; the names set.
    Refuses a file that others may read: it holds tokens."""
    path = Path(path).expanduser()
    if not path.is_file():
        return []
    st = path.stat()
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise InputError(str(path), None, "readable by others; it holds tokens: chmod 600 it")
    names = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.removeprefix("export ").partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not key.isidentifier():
            raise InputError(str(path), lineno, "expected KEY=VALUE")
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        if key not in os.environ:
            os.environ[key] = value
            names.append(key)
    if names:
        log(f"loaded {', '.join(names)} from {path}")
    return names


# ---------------------------------------------------------------- the cycle

def _holder(lock_path: Path) -> str:
    try:
        text = lock_path.read_text().strip()
    except OSError:
        text = ""
    return text or "holder unknown"


def _fmt(seconds: float) -> str:
    return f"{seconds:.1f}"


def log_line(fields: dict, log_path: Path) -> str:
    """The cycle's one line (logfmt), appended to `log_path` in a single write."""
    line = f"{now_iso()} " + " ".join(f"{k}={v}" for k, v in fields.items())
    log_path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)
    return line


def _has_runs(dest: Path) -> bool:
    return dest.is_dir() and any(p.is_dir() and not p.name.startswith(".") for p in dest.iterdir())


def build_command(build: str, artifacts: str | None, skip_finetune: bool) -> tuple[list[str], dict]:
    """The build step's argv and environment (see the module docstring)."""
    argv = shlex.split(build)
    if not argv:
        raise InputError("daemon.build", None, "empty build command")
    variables = {}
    if artifacts:
        variables["ARTIFACTS"] = artifacts
    if skip_finetune:
        variables["SKIP_FINETUNE"] = "1"
    if Path(argv[0]).name in ("make", "gmake"):
        argv += [f"{k}={v}" for k, v in variables.items()]
    return argv, {**os.environ, **variables}


def skip_finetune() -> bool:
    return config.get("daemon", "skip_finetune")


def cycle(log, *, build: str | None = None, do_fetch: bool = True, do_push: bool = True) -> tuple[int, str]:
    """Run one cycle; (exit code, its log line)."""
    t0 = time.monotonic()
    lock_path, log_path = Path(config.get("daemon", "lock")), Path(config.get("daemon", "log"))
    fd = try_lock(lock_path)
    if fd is None:
        line = log_line({"cycle": "skipped", "reason": "locked", "holder": f'"{_holder(lock_path)}"'}, log_path)
        log(f"a cycle is already running ({_holder(lock_path)}); this one exits")
        return 0, line
    fields: dict[str, str] = {"cycle": "ok"}
    failed = []
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} since {now_iso()}\n".encode(), 0)
        try:
            if load_env_file(Path(config.get("daemon", "env_file")), log):
                config.load.cache_clear()  # SECAI_* lines in the file override settings too
        except InputError as err:
            failed.append("env")
            log(f"error: {err}")

        # 1. fetch
        fetch_cfg = config.section("fetch")
        fetching = do_fetch and bool(fetch_cfg["repo"])
        t = time.monotonic()
        if not fetching:
            fields["fetch"] = "off"
        else:
            from secai.ops.github import fetch_from_config

            try:
                reports = fetch_from_config(log=log)
                fields.update(fetch="ok", runs=str(len(reports)),
                              artifacts=str(sum(len(r["artifacts"]) for r in reports)),
                              files=str(sum(r["files"] for r in reports)))
            except InputError as err:
                fields["fetch"] = "error"
                failed.append("fetch")
                log(f"fetch error: {err}")
            except Exception as exc:  # keep going: the build may still finish earlier work
                fields["fetch"] = "error"
                failed.append("fetch")
                log(f"fetch error: {type(exc).__name__}: {exc}")
            fields["fetch_s"] = _fmt(time.monotonic() - t)

        # 2. build
        t = time.monotonic()
        dest = fetch_cfg["dest"]
        if fetching and not _has_runs(Path(dest)):
            fields["build"] = "skipped"
            log(f"build skipped: no fetched run in {dest} yet")
        else:
            argv, env = build_command(build or config.get("daemon", "build"), dest if fetching else None, skip_finetune())
            log(f"build: {shlex.join(argv)}")
            try:
                rc = _run_to_stderr(argv, env, fd)
            except OSError as exc:
                rc = 127
                log(f"build error: {exc}")
            fields["build"] = "ok" if rc == 0 else f"exit-{rc}"
            if rc != 0:
                failed.append("build")
        fields["build_s"] = _fmt(time.monotonic() - t)

        # 3. push
        t = time.monotonic()
        fields["push"] = _push_step(log, fields["build"] not in ("ok", "skipped"), do_push, failed)
        fields["push_s"] = _fmt(time.monotonic() - t)
    finally:
        if failed:
            fields["cycle"] = "error"
            fields["failed"] = ",".join(failed)
        fields["total_s"] = _fmt(time.monotonic() - t0)
        try:
            line = log_line(fields, log_path)
            log(line)
            os.ftruncate(fd, 0)  # no holder: status reads the cycle as finished
        finally:
            os.close(fd)
    return (1 if failed else 0), line


def _run_to_stderr(argv: list[str], env: dict, lock_fd: int) -> int:
    """Run the build with its output on our stderr (stdout stays data-only) and the lock's
    descriptor inherited; its exit status."""
    try:
        err = sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):  # stderr is not a file (in-process tests): relay it
        proc = subprocess.run(argv, env=env, pass_fds=(lock_fd,), stdin=subprocess.DEVNULL,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        sys.stderr.write(proc.stdout.decode(errors="replace"))
        return proc.returncode
    sys.stderr.flush()
    return subprocess.run(argv, env=env, pass_fds=(lock_fd,), stdin=subprocess.DEVNULL, stdout=err).returncode


def _push_step(log, build_failed: bool, do_push: bool, failed: list) -> str:
    cfg = config.section("push")
    if not do_push or not cfg["enabled"]:
        return "off"
    if build_failed:
        return "skipped"
    from secai.ops.github import load_state
    from secai.publishing.hub import publish

    fetch_cfg = config.section("fetch")
    commits = []
    if fetch_cfg["repo"]:  # a corrupt fetch state is an error here too: no provenance is silently dropped
        runs = load_state(Path(fetch_cfg["state"]))["repos"].get(fetch_cfg["repo"], {}).get("runs", {})
        commits = sorted({r["head_sha"] for r in runs.values() if r.get("head_sha")})
    parts = []
    for kind in ("dataset", "model"):
        repo, folder = cfg[f"{kind}_repo"], cfg[f"{kind}_dir"]
        if not repo or not folder:
            parts.append(f"{kind}:off")
            continue
        if not Path(folder).expanduser().is_dir():
            parts.append(f"{kind}:absent")
            continue
        try:
            report = publish(kind, Path(folder).expanduser(), repo, skip_unchanged=True, source_commits=commits,
                             log=log)
            parts.append(f"{kind}:{report['status']}")
        except InputError as err:
            failed.append(f"push-{kind}")
            parts.append(f"{kind}:error")
            log(f"push {kind} error: {err}")
    return ",".join(parts)


# ---------------------------------------------------------------- status

def status(platform: str, directory: Path, control: bool, log, lines: int = 5) -> str:
    from secai.ops.github import load_state
    from secai.publishing import hub

    name = config.get("daemon", "name")
    files = [directory / n for n in render(platform)]
    present = [p for p in files if p.exists()]
    kind = "launchd agent" if platform == "macos" else "systemd user units"
    state = "installed" if len(present) == len(files) else "partly installed" if present else "not installed"
    out = [f"secai daemon ({kind}, {label(name) if platform == 'macos' else name + '.timer'}): {state}",
           "  files: " + ", ".join(str(p) for p in files)]
    if control:
        for text in run_control(control_commands(platform, "status", directory), True, log):
            out += ["  " + line for line in text.splitlines()[:12]]
        note = linger() if platform == "linux" else None
        if note:
            out.append("  " + note)
    else:
        out.append("  scheduler: not asked (control off)")
    holder = _holder(Path(config.get("daemon", "lock"))) if Path(config.get("daemon", "lock")).exists() else ""
    running = False
    if holder.startswith("pid "):
        pid = int(holder.split()[1])
        try:
            os.kill(pid, 0)
            running = True
        except ProcessLookupError:
            pass
        except PermissionError:
            running = True
    out.append(f"  cycle: running ({holder})" if running else
               f"  cycle: idle (the cycle of {holder} ended without finishing)" if holder.startswith("pid ")
               else "  cycle: idle")
    log_path = Path(config.get("daemon", "log"))
    if log_path.is_file():
        tail = log_path.read_text(errors="replace").splitlines()[-lines:]
        out.append(f"  last cycles ({log_path}):")
        out += ["    " + t for t in tail]
    else:
        out.append(f"  last cycles: none logged yet ({log_path})")
    fetch_state = Path(config.get("fetch", "state"))
    try:
        repos = load_state(fetch_state)["repos"]
    except InputError as err:
        repos = {}
        out.append(f"  fetch state: {err}")
    for repo, data in sorted(repos.items()):
        runs = data.get("runs", {})
        if runs:
            rid, r = max(runs.items(), key=lambda kv: (kv[1]["created_at"], int(kv[0])))
            out.append(f"  fetched from {repo}: {len(runs)} runs; newest {rid} ({r['head_sha'][:12]}, "
                       f"{r.get('branch')}, created {r['created_at']})")
    try:
        pushed = hub.load_state(Path(config.get("push", "state")))
    except InputError as err:
        pushed = {}
        out.append(f"  push state: {err}")
    for key, p in sorted(pushed.items()):
        out.append(f"  pushed {key}: commit {str(p.get('commit'))[:12]} at {p.get('pushed_at')}")
    return "\n".join(out) + "\n"
