"""Docs that cannot drift: every command in pyproject's [project.scripts] has docs/commands/<name>.md,
its `--help` exits 0 with a description, and its page mentions every long option `--help` lists
(of each sub-command too, when the command has any)."""

from __future__ import annotations

import contextlib
import importlib
import io
import re
import sys
import tomllib

import pytest
from conftest import ROOT

DOCS = ROOT / "docs" / "commands"
SCRIPTS = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
SECTION = re.compile(r"^\S.*:$")                        # "options:", "positional arguments:", ...
OPTION_LINE = re.compile(r"^ {2}(-\S.*?)(?: {2,}|$)")   # "  -o FILE, --output FILE   help..."
LONG = re.compile(r"(?<![\w-])--[A-Za-z0-9][\w-]*")


def help_of(target: str, *argv: str, monkeypatch) -> tuple[int, str]:
    """(exit code, stdout) of the command's `main` run in-process with `argv`."""
    module, func = target.split(":")
    main = getattr(importlib.import_module(module), func)
    out = io.StringIO()
    monkeypatch.setenv("COLUMNS", "100")
    monkeypatch.setattr(sys, "argv", [target, *argv])
    torch = sys.modules.get("torch", "absent")
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        try:
            code = main()
        except SystemExit as exc:
            code = exc.code
        finally:  # a process's entry point: secai-lora's marks torch absent for the process (run.without_torch)
            if torch == "absent":
                sys.modules.pop("torch", None)
    return int(code or 0), out.getvalue()


def sections(text: str) -> dict[str, list[str]]:
    """argparse help split at its section headings ("usage", then "options:", ...)."""
    out, current = {"usage": []}, "usage"
    for line in text.splitlines():
        if SECTION.match(line) and not line.startswith("usage:"):
            current = line[:-1]
            out.setdefault(current, [])
        else:
            out[current].append(line)
    return out


def long_options(text: str) -> set[str]:
    """The long options an argparse help lists in its option sections (not those its prose names)."""
    found = set()
    for name, lines in sections(text).items():
        if name == "usage":
            continue
        for line in lines:
            m = OPTION_LINE.match(line)
            if m:
                found.update(LONG.findall(m.group(1)))
    return found


def subcommands(text: str) -> list[str]:
    """Choices of a positional {a,b,c} argument (sub-commands or actions), from the help's
    positional section."""
    for line in sections(text).get("positional arguments", []):
        m = re.match(r"^ {2}\{([\w,-]+)\}", line)
        if m:
            return m.group(1).split(",")
    return []


def description(text: str) -> str:
    """The text between the usage block and the first section."""
    lines = sections(text)["usage"]
    body = "\n".join(lines).split("\n\n", 1)
    return body[1].strip() if len(body) > 1 else ""


@pytest.mark.parametrize("command", sorted(SCRIPTS))
def test_command_has_help_and_a_page_that_documents_every_option(command, monkeypatch):
    code, text = help_of(SCRIPTS[command], "--help", monkeypatch=monkeypatch)
    assert code == 0 and text.startswith(f"usage: {command}"), f"{command} --help failed (exit {code})"
    assert len(description(text)) >= 20, f"{command} --help has no description"
    options = long_options(text)
    assert "--help" in options
    for sub in subcommands(text):
        code, sub_text = help_of(SCRIPTS[command], sub, "--help", monkeypatch=monkeypatch)
        assert code == 0, f"{command} {sub} --help failed (exit {code})"
        options |= long_options(sub_text)
    page = DOCS / f"{command}.md"
    assert page.is_file(), f"{page.relative_to(ROOT)} is missing: every command needs a page"
    doc = page.read_text(encoding="utf-8")
    assert doc.startswith(f"# {command}\n"), f"{page.name} must start with '# {command}'"
    missing = sorted(o for o in options if not re.search(re.escape(o) + r"(?![\w-])", doc))
    assert not missing, f"{page.name} does not mention {', '.join(missing)}"
    for sub in subcommands(text):
        assert f"`{sub}`" in doc or f"{command} {sub}" in doc, f"{page.name} does not describe {sub}"


def test_no_page_for_a_command_that_does_not_exist():
    pages = {p.stem for p in DOCS.glob("secai-*.md")}
    assert pages <= set(SCRIPTS), f"pages without a command: {sorted(pages - set(SCRIPTS))}"


def test_option_parsing_reads_option_lines_only():
    text = ("usage: x [-h] [--alpha A]\n\nDescribes x; see `tool --data DIR`.\n\n"
            "options:\n  -h, --help            show this help\n  --alpha A             a\n"
            "  --format {a,b,c}\n                        pick one; like --not-an-option\n"
            "\npositional arguments:\n  {build,query}  what to do\n")
    assert long_options(text) == {"--help", "--alpha", "--format"}
    assert subcommands(text) == ["build", "query"]
    assert description(text) == "Describes x; see `tool --data DIR`."
