"""The daemon's launchd agent (macOS) and systemd user service and timer (Linux): rendering them,
installing and uninstalling them, and the launchctl/systemctl calls that load them. They run
`make daemon-cycle` (secai.ops.cycle) every daemon.interval_s seconds."""

from __future__ import annotations

import os
import plistlib
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from secai import config
from secai.errors import InputError
from secai.files import write_atomic


def platform_name(choice: str = "auto") -> str:
    if choice != "auto":
        return choice
    return "macos" if sys.platform == "darwin" else "linux"


def unit_dir(platform: str, override: str | None = None) -> Path:
    chosen = override or config.get("daemon", "unit_dir")
    if chosen:
        return Path(chosen).expanduser()
    if platform == "macos":
        return Path.home() / "Library" / "LaunchAgents"
    return Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "systemd" / "user"


def label(name: str) -> str:
    return f"local.{name}.daemon"


def _paths() -> dict:
    root = config.CHECKOUT
    if root is None:
        raise InputError(str(Path(__file__).resolve().parents[1]), None,
                         "an installed package: the daemon runs `make daemon-cycle` in a secai checkout "
                         "(clone the repository and run `make daemon-install` there)")
    log_dir = (root / config.get("daemon", "log")).parent
    make = shutil.which("make") or "/usr/bin/make"
    return {"root": root, "log_dir": log_dir, "make": make, "name": config.get("daemon", "name"),
            "interval": int(config.get("daemon", "interval_s"))}


def render_launchd(p: dict) -> dict[str, bytes]:
    """{<label>.plist: bytes}: a LaunchAgent running `make daemon-cycle` every interval seconds."""
    path_dirs = [str(Path(p["make"]).parent), "/opt/homebrew/bin", "/usr/local/bin", "/usr/bin", "/bin",
                 "/usr/sbin", "/sbin"]
    plist = {
        "Label": label(p["name"]),
        "ProgramArguments": [p["make"], "-C", str(p["root"]), "--no-print-directory", "daemon-cycle"],
        "WorkingDirectory": str(p["root"]),
        "StartInterval": p["interval"],
        "RunAtLoad": True,
        "StandardOutPath": str(p["log_dir"] / "daemon.out.log"),
        "StandardErrorPath": str(p["log_dir"] / "daemon.err.log"),
        "EnvironmentVariables": {"PATH": ":".join(dict.fromkeys(path_dirs))},
        "ProcessType": "Background",
        "LowPriorityIO": True,
        "Nice": 10,
    }
    return {f"{label(p['name'])}.plist": plistlib.dumps(plist, fmt=plistlib.FMT_XML, sort_keys=True)}


def _unit_path(path) -> str:
    text = str(path)
    if any(c.isspace() for c in text) or any(c in text for c in "\"'\\"):
        raise InputError(text, None, "systemd units here cannot name a path with spaces or quotes; "
                                     "move the project")
    return text.replace("%", "%%")


def render_systemd(p: dict) -> dict[str, bytes]:
    """{<name>.service, <name>.timer}: a oneshot service running `make daemon-cycle` and a timer
    starting it every interval seconds (the first one a minute after the timer starts)."""
    root, logs, make = _unit_path(p["root"]), _unit_path(p["log_dir"]), _unit_path(p["make"])
    name = p["name"]
    service = f"""\
[Unit]
Description=secai daemon cycle: fetch CI artifacts, build, publish ({root})

[Service]
Type=oneshot
WorkingDirectory={root}
ExecStart={make} -C {root} --no-print-directory daemon-cycle
StandardOutput=append:{logs}/daemon.out.log
StandardError=append:{logs}/daemon.err.log
Nice=10
IOSchedulingClass=idle
"""
    timer = f"""\
[Unit]
Description=secai daemon cycle every {p['interval']} s ({root})

[Timer]
OnActiveSec=60
OnUnitActiveSec={p['interval']}
AccuracySec=15
Unit={name}.service

[Install]
WantedBy=timers.target
"""
    return {f"{name}.service": service.encode(), f"{name}.timer": timer.encode()}


def render(platform: str) -> dict[str, bytes]:
    p = _paths()
    return render_launchd(p) if platform == "macos" else render_systemd(p)


def control_commands(platform: str, action: str, directory: Path) -> list[list[str]]:
    """The launchctl / systemctl calls of install, uninstall and status."""
    name = config.get("daemon", "name")
    if platform == "macos":
        target = f"gui/{os.getuid()}/{label(name)}"
        plist = str(directory / f"{label(name)}.plist")
        return {"install": [["launchctl", "bootout", target], ["launchctl", "bootstrap", f"gui/{os.getuid()}", plist]],
                "uninstall": [["launchctl", "bootout", target]],
                "status": [["launchctl", "list", label(name)]]}[action]
    return {"install": [["systemctl", "--user", "daemon-reload"],
                        ["systemctl", "--user", "enable", "--now", f"{name}.timer"]],
            "uninstall": [["systemctl", "--user", "disable", "--now", f"{name}.timer"],
                          ["systemctl", "--user", "daemon-reload"]],
            "status": [["systemctl", "--user", "list-timers", f"{name}.timer", "--no-pager"],
                       ["systemctl", "--user", "status", f"{name}.service", "--no-pager", "--lines=0"]]}[action]


def run_control(commands: list[list[str]], enabled: bool, log, check: set[int] = frozenset()) -> list[str]:
    """Run the launchctl/systemctl commands (or, disabled, only say them); the outputs. A command whose index is in
    `check` must succeed."""
    outputs = []
    for i, argv in enumerate(commands):
        if not enabled:
            log(f"not run (control off): {shlex.join(argv)}")
            continue
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise InputError(argv[0], None, f"cannot run {shlex.join(argv)}: {exc}") from None
        if proc.returncode != 0 and i in check:
            raise InputError(argv[0], None, f"{shlex.join(argv)} exited {proc.returncode}: "
                                            f"{(proc.stderr or proc.stdout).strip().splitlines()[-1:] or ''}")
        outputs.append((proc.stdout + proc.stderr).strip())
    return outputs


def linger(user: str | None = None) -> str | None:
    """Linux: systemd stops a user's timers when that user's last session ends (logging out of a
    headless box) unless lingering is on for the user. A line saying so and how to turn it on when it
    is off; None when it is on or loginctl cannot tell."""
    user = user or os.environ.get("USER") or os.environ.get("LOGNAME")
    if not user or not shutil.which("loginctl"):
        return None
    try:
        proc = subprocess.run(["loginctl", "show-user", user, "--property=Linger", "--value"],
                              capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if proc.returncode != 0 or proc.stdout.strip() != "no":
        return None
    return (f"linger is off for {user}: the timer stops when {user} logs out; "
            f"`loginctl enable-linger {user}` keeps it running")


def install(platform: str, directory: Path, control: bool, dry_run: bool, log, out) -> list[Path]:
    files = render(platform)
    paths = [directory / n for n in files]
    if dry_run:
        for n, data in files.items():
            out.write(f"# {directory / n}\n{data.decode()}\n")
        for argv in control_commands(platform, "install", directory):
            out.write(f"# then: {shlex.join(argv)}\n")
        return paths
    directory.mkdir(parents=True, exist_ok=True)
    _paths()["log_dir"].mkdir(parents=True, exist_ok=True)
    for n, data in files.items():
        write_atomic(directory / n, data)
        log(f"wrote {directory / n}")
    cmds = control_commands(platform, "install", directory)
    run_control(cmds, control, log, check={len(cmds) - 1})
    note = linger() if control and platform == "linux" else None
    if note:
        log(note)
    return paths


def uninstall(platform: str, directory: Path, control: bool, log) -> list[Path]:
    cmds = control_commands(platform, "uninstall", directory)
    run_control(cmds[:1], control, log)  # stopping what is not loaded is no error
    removed = []
    for n in render(platform):
        p = directory / n
        if p.exists():
            p.unlink()
            removed.append(p)
            log(f"removed {p}")
    run_control(cmds[1:], control, log)
    return removed
