"""The command base every secai command shares (csvkit's idea: one base, each command switching
off what it does not use).

A command subclasses `Command`, sets `name`, `description`, `examples`, and declares its shape:
- `reads`: it reads records from FILE... (default stdin) and takes `--rejects FILE`; `input_kind` is
  the record kind (or kinds) each line must be;
- `writes`: "stream" (`-o FILE`, default stdout), "dir" (`-o DIR`, required) or None;
- `subcommands`: {name: help or (help, description)}, each given the same common flags.
It implements `add_arguments(p)` (or `add_subcommand_arguments(action, p)`), `check(args)` for flag
combinations (raise UsageError), and `process(records)` or `run()`, which returns the exit code.
The base gives it: the common flags (-q, -v, --config FILE, --version), the one lazy JSONL reader of secai.records, which
yields every bad line as a reject and goes on, deterministic JSONL output validated record by record
and written atomically, `--rejects`, the error model of secai.errors (one line, no type name; exit
codes 0/1/2, 130 on Ctrl-C), progress on stderr only on a terminal, quiet SIGPIPE handling, and
`escape`, through which every message that can carry untrusted text reaches the terminal.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import sys
import traceback
from collections.abc import Iterable, Iterator


from secai import __version__
from secai import config
from secai.errors import EXIT_ERROR, EXIT_INTERRUPTED, EXIT_OK, InputError, UsageError, UserError
from secai.files import AtomicOutput
from secai.records import Kinds, dumps, read_jsonl, render

__all__ = ["Command", "entry", "escape"]


# ---------------------------------------------------------------- terminal text

# C0 and C1 controls, DEL, and the bidirectional overrides and isolates (text that reorders itself)
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def escape(text) -> str:
    """`text` safe to print on a terminal as one line: every control character (escape sequences,
    carriage returns, newlines, bidi overrides) is shown as its Python escape (ESC as `\\x1b`)."""
    text = str(text)
    return _CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)


# ---------------------------------------------------------------- the base command

class ArgumentParser(argparse.ArgumentParser):
    """argparse, with its usage errors raised as UsageError (so that they are reported like every
    other error: one line, exit 2) instead of printed with the usage and exited."""

    def error(self, message: str):
        raise UsageError(f"{message} (see {self.prog} --help)")


class Command:
    name = "secai"
    description = ""
    examples = ""            # shown under --help
    reads = True             # FILE... (default stdin) and --rejects
    input_kind: Kinds = None  # record kind(s) read from FILE... (None: any JSON object)
    writes: str | None = "stream"   # "stream": -o FILE (default stdout); "dir": -o DIR, required; None
    output_kind: str | None = None  # record kind written
    subcommands: dict = {}   # name -> help, or (help, description); the chosen one is args.action
    config_section: str | None = None  # the section of config/secai.yaml whose settings its flags override

    def __init__(self):
        self.args = None
        self.rejects = []        # InputErrors of inputs set aside with --rejects

    # -- to implement
    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        """Add the command's own flags."""

    def add_subcommand_arguments(self, action: str, parser: argparse.ArgumentParser) -> None:
        """Add one subcommand's own flags (default: add_arguments, for flags they all share)."""
        self.add_arguments(parser)

    def check(self, args: argparse.Namespace) -> None:
        """Check flag combinations (and the settings they default to); raise UsageError."""

    def process(self, records: Iterable[dict]) -> Iterable[dict]:
        """Turn input records into output records."""
        return records

    def run(self) -> int:
        """Do the work; return the exit code (EXIT_OK, or EXIT_ERROR for a verdict such as doctor's)."""
        records = self.process(self.read_inputs())
        try:
            self.write(records)
        finally:  # a generator stopped by an error is closed now, so its own clean-up (worker processes) runs first
            if hasattr(records, "close"):
                records.close()
        return EXIT_OK

    # -- shared behaviour
    def parser(self) -> argparse.ArgumentParser:
        p = ArgumentParser(prog=self.name, description=self.description,
                           epilog=("examples:\n" + self.examples) if self.examples else None,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        if not self.subcommands:
            self._common_flags(p)
            self.add_arguments(p)
            return p
        p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
        sub = p.add_subparsers(dest="action", required=True, metavar="{" + ",".join(self.subcommands) + "}")
        for action, about in self.subcommands.items():
            short, long = about if isinstance(about, tuple) else (about, about)
            sp = sub.add_parser(action, help=short, description=long, formatter_class=argparse.RawDescriptionHelpFormatter)
            self._common_flags(sp)
            self.add_subcommand_arguments(action, sp)
        return p

    def _common_flags(self, p: argparse.ArgumentParser) -> None:
        if self.reads:
            p.add_argument("inputs", nargs="*", default=["-"], metavar="FILE", help="input files ('-' or none: stdin)")
        if self.writes == "stream":
            p.add_argument("-o", "--output", metavar="FILE", help="write here (atomically) instead of stdout")
        elif self.writes == "dir":
            p.add_argument("-o", "--output", metavar="DIR", required=True,
                           help="the directory to write (replaced atomically; required)")
        if self.reads:
            p.add_argument("--rejects", metavar="FILE",
                           help="set bad inputs aside here (JSONL: file, line, reason) and keep going, "
                                "instead of stopping at the first")
        p.add_argument("-q", "--quiet", action="store_true", help="no progress or summary on stderr")
        p.add_argument("-v", "--verbose", action="store_true", help="more detail on stderr; tracebacks on errors")
        p.add_argument("--config", metavar="FILE", help="your settings file, over the defaults, instead of "
                                                        "SECAI_CONFIG or ~/.config/secai/secai.yaml "
                                                        "(SECAI_* variables and flags still override it)")
        p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")

    def _check(self, args) -> None:
        if self.writes == "dir" and args.output == "-":
            raise UsageError("-o/--output must be a directory, not stdout")
        self.check(args)

    def setting(self, flag: str, key: str | None = None):
        """The value of the flag `flag` when it was given, else the setting `key` (default: the
        flag's own name) of the command's section of config/secai.yaml (`config_section`)."""
        value = getattr(self.args, flag)
        return config.get(self.config_section, key or flag) if value is None else value

    # -- messages: every one goes through escape(), since file names, member names, JSON keys and
    #    reasons quoting data are untrusted text
    def say(self, message: str) -> None:
        """A line on stderr, even under -q (a reject, a problem found, a warning that matters)."""
        print(f"{self.name}: {escape(message)}", file=sys.stderr)

    def log(self, message: str) -> None:
        """A line on stderr unless -q (progress notes, summaries)."""
        if not getattr(self.args, "quiet", False):
            self.say(message)

    def reject(self, err: InputError) -> None:
        """Record a bad input when --rejects is on; otherwise stop with its error."""
        if not getattr(self.args, "rejects", None):
            raise err
        self.rejects.append(err)
        self.say(f"rejected: {err}")

    def progress(self, iterable, unit: str = "record", total: int | None = None):
        """`iterable` with a tqdm bar on stderr, shown only when stderr is a terminal and -q is off."""
        from tqdm import tqdm

        return tqdm(iterable, total=total, unit=unit, file=sys.stderr, leave=False,
                    disable=self.args.quiet or not sys.stderr.isatty())

    # -- records in and out
    def read_inputs(self) -> Iterator[dict]:
        """Records of `input_kind` from every FILE, lazily; each bad line is rejected (or, without
        --rejects, raised) and the lines after it are still read."""
        for name in self.args.inputs:
            for _lineno, rec in read_jsonl(name, self.input_kind):
                if isinstance(rec, InputError):
                    self.reject(rec)
                else:
                    yield rec

    def write(self, records: Iterable[dict]) -> int:
        kind = self.output_kind
        return self.write_lines(render(kind, rec) for rec in records)

    def write_lines(self, lines: Iterable[bytes]) -> int:
        """Write rendered JSONL lines to the output, atomically; returns how many."""
        count = 0
        with AtomicOutput(getattr(self.args, "output", None)) as out:
            for line in lines:
                out.write(line)
                count += 1
        return count

    def write_rejects(self) -> None:
        if not getattr(self.args, "rejects", None):
            return
        with AtomicOutput(self.args.rejects) as out:
            for err in self.rejects:
                out.write(dumps({"file": err.file, "line": err.line, "reason": err.reason}))

    # -- the one error rule (secai.errors)
    def main(self, argv: list[str] | None = None) -> int:
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # `| head` ends us quietly
        self.args = None
        try:
            self.args = self.parser().parse_args(argv)
            if self.args.config:  # chosen for this run only (in-process callers run several)
                config.use(self.args.config)
            self._check(self.args)
            code = self.run()
            if code not in (EXIT_OK, EXIT_ERROR):
                raise RuntimeError(f"run() returned {code!r}, not an exit code")
            self.write_rejects()
            return code
        except SystemExit as exc:  # --help and --version (0)
            return int(exc.code or 0) if isinstance(exc.code, (int, type(None))) else EXIT_ERROR
        except UserError as err:
            self.error(str(err))
            return err.exit_code
        except KeyboardInterrupt:
            self.error("interrupted")
            return EXIT_INTERRUPTED
        except BrokenPipeError:  # where SIGPIPE was ignored for a while (secai.analysis.explain's workers)
            signal.signal(signal.SIGPIPE, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGPIPE)  # ends as `| head` ends us elsewhere: quietly, 128 + SIGPIPE
            raise
        except Exception as exc:  # a bug: one line, the traceback only with -v
            verbose = getattr(self.args, "verbose", False)
            if verbose:
                traceback.print_exc()
            self.error(f"internal error: {type(exc).__name__}: {exc}" + ("" if verbose else " (-v shows the traceback)"))
            return EXIT_ERROR
        finally:
            if getattr(self.args, "config", None):
                config.use(None)

    def error(self, message: str) -> None:
        print(f"{self.name}: error: {escape(message)}", file=sys.stderr)


def entry(command_class) -> None:
    """`main()` of a command module: run it and exit with its code."""
    sys.exit(command_class().main())
