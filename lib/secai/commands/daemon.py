"""secai-daemon: one daemon cycle (fetch, build, publish) under a lock, and its launchd/systemd units
(the cycle: secai.ops.cycle; its launchd/systemd units: secai.ops.units)."""

from __future__ import annotations

import sys

from secai import config
from secai.cli import Command, entry
from secai.errors import EXIT_ERROR, EXIT_OK
from secai.ops.cycle import cycle, status
from secai.ops.units import install, platform_name, uninstall, unit_dir


class Daemon(Command):
    name = "secai-daemon"
    description = ("Run one daemon cycle — under a lock, fetch new CI artifacts (secai-fetch), build "
                   "incrementally (make all), publish when push.enabled (secai-push), and log one line — or "
                   "install, uninstall or report the launchd LaunchAgent (macOS) or systemd user service and "
                   "timer (Linux) that run `make daemon-cycle` every daemon.interval_s seconds (300).")
    examples = """\
  secai-daemon cycle                      # what `make daemon-cycle` runs
  SECAI_DAEMON_BUILD='make parse' secai-daemon cycle --no-push
  secai-daemon install --dry-run          # print the unit files and the commands, change nothing
  secai-daemon install                    # write them and load them (launchctl / systemctl --user)
  secai-daemon status
  secai-daemon uninstall

A second cycle while one runs (or while a killed cycle's build still runs) exits 0 at once,
saying so. Exit status: 0 ok (or skipped), 1 a step failed, 2 a usage error. Settings: the
daemon:, fetch: and push: sections of config/secai.yaml (SECAI_DAEMON_BUILD=..., etc.)."""
    reads = False
    writes = None
    subcommands = {
        "cycle": "fetch new artifacts, build incrementally and publish, under a lock; one log line",
        "install": "write and load the launchd LaunchAgent (macOS) or systemd user service and timer (Linux)",
        "uninstall": "stop and remove them",
        "status": "installed? running? the last cycles, fetched runs and pushes",
    }

    def add_subcommand_arguments(self, action, p):
        if action == "cycle":
            p.add_argument("--build", metavar="COMMAND", help="the build step "
                           f"(default: daemon.build, `{config.default('daemon', 'build')}`)")
            p.add_argument("--no-fetch", action="store_true", help="skip the fetch step")
            p.add_argument("--no-push", action="store_true", help="skip the push step")
            return
        p.add_argument("--platform", choices=("auto", "macos", "linux"), default="auto",
                       help="launchd (macos) or systemd (linux); default: this system")
        p.add_argument("--unit-dir", metavar="DIR", help="where the unit files go (default: daemon.unit_dir, else "
                                                         "~/Library/LaunchAgents or ~/.config/systemd/user)")
        p.add_argument("--no-control", action="store_true",
                       help="do not call launchctl or systemctl (default: daemon.control)")
        if action == "install":
            p.add_argument("--dry-run", action="store_true", help="print the files and commands only")

    def run(self) -> int:
        a = self.args
        if a.action == "cycle":
            code, line = cycle(self.log, build=a.build, do_fetch=not a.no_fetch, do_push=not a.no_push)
            if code:
                self.error(f"cycle: failed: {line.split(' ', 1)[1]}")
                return EXIT_ERROR
            return EXIT_OK
        platform = platform_name(a.platform)
        directory = unit_dir(platform, a.unit_dir)
        control = bool(config.get("daemon", "control")) and not a.no_control
        if a.action == "install":
            install(platform, directory, control, a.dry_run, self.log, sys.stdout)
        elif a.action == "uninstall":
            uninstall(platform, directory, control, self.log)
        else:
            sys.stdout.write(status(platform, directory, control, self.log))
        sys.stdout.flush()
        return EXIT_OK


def main():
    entry(Daemon)


if __name__ == "__main__":
    main()
