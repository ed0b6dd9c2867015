"""The contract every secai command keeps (HOUSE_STYLE): --help with examples, --version, usage
errors exit 2, empty and malformed input give one stderr line, output validates, SIGPIPE is quiet."""

from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import FIXTURES, ROOT, run_command

from secai import __version__
from secai.cli import schema, schema_error
from secai.commands.analyze import Analyze
from secai.commands.narrate import Narrate
from secai.parsing.reports import Parse

SPEC = (FIXTURES / "parse" / "sarif" / "spec-features.sarif").read_bytes()


def _findings() -> bytes:
    code, out, err = run_command(Parse, ["-q"], stdin=SPEC, raw=True)
    return out.encode()


def _analyses() -> bytes:
    code, out, err = run_command(Analyze, ["-q", "--no-cache"], stdin=_findings(), raw=True)
    return out.encode()


# (command class, a valid input, input that is malformed for it, whether empty input is an error)
COMMANDS = [
    (Parse, SPEC, b'{"runs": [', True),
    (Analyze, _findings(), b'{"schema": "finding/1", ', False),
    (Narrate, _analyses(), b'{"schema": "analysis/1", ', False),
]
IDS = [c[0].name for c in COMMANDS]
ISOLATED = {Analyze: ["--no-cache"]}  # flags that keep a command's run out of the project's build/


@pytest.mark.parametrize("cmd,good,bad,empty_is_error", COMMANDS, ids=IDS)
def test_help_has_description_and_examples(cmd, good, bad, empty_is_error):
    code, out, _ = run_command(cmd, ["--help"], raw=True)
    assert code == 0
    assert cmd.name in out and "examples:" in out and cmd.description.split()[0] in out


@pytest.mark.parametrize("cmd,good,bad,empty_is_error", COMMANDS, ids=IDS)
def test_version_and_usage_error(cmd, good, bad, empty_is_error):
    code, out, _ = run_command(cmd, ["--version"], raw=True)
    assert code == 0 and __version__ in out
    code, _, err = run_command(cmd, ["--no-such-flag"], raw=True)
    assert code == 2 and "usage" in err


@pytest.mark.parametrize("cmd,good,bad,empty_is_error", COMMANDS, ids=IDS)
def test_empty_input(cmd, good, bad, empty_is_error):
    code, records, err = run_command(cmd, [], stdin=b"")
    assert records == []
    if empty_is_error:
        assert code == 1 and len(err.strip().splitlines()) == 1 and err.startswith(f"{cmd.name}: error: -")
    else:
        assert code == 0


@pytest.mark.parametrize("cmd,good,bad,empty_is_error", COMMANDS, ids=IDS)
def test_malformed_input(cmd, good, bad, empty_is_error):
    code, records, err = run_command(cmd, [], stdin=bad)
    assert code == 1 and records == []
    assert len(err.strip().splitlines()) == 1 and err.startswith(f"{cmd.name}: error: -:1: ")
    assert "Traceback" not in err


@pytest.mark.parametrize("cmd,good,bad,empty_is_error", COMMANDS, ids=IDS)
def test_output_is_valid_and_deterministic(cmd, good, bad, empty_is_error, tmp_path):
    argv = ["-q", *ISOLATED.get(cmd, [])]
    code, records, err = run_command(cmd, argv, stdin=good)
    assert code == 0 and records, err
    assert all(schema_error(cmd.output_kind, r) is None for r in records)
    assert run_command(cmd, argv, stdin=good)[1] == records


def test_schemas_are_valid_draft_2020_12_and_describe_every_field():
    import jsonschema

    def walk(node, path):
        for name, prop in node.get("properties", {}).items():
            assert "description" in prop or "$ref" in prop, f"{path}.{name} has no description"
            walk(prop, f"{path}.{name}")
            if isinstance(prop.get("items"), dict):
                walk(prop["items"], f"{path}.{name}[]")
        for name, sub in node.get("$defs", {}).items():
            walk(sub, f"{path}.$defs.{name}")

    for kind in ("finding/1", "analysis/1", "example/1", "dataset/1", "similar/1"):
        s = schema(kind)
        jsonschema.Draft202012Validator.check_schema(s)
        walk(s, kind)


def test_sigpipe_is_quiet():
    """`secai-parse ... | head -1` prints one line and no BrokenPipeError."""
    spec = FIXTURES / "parse" / "sarif" / "spec-features.sarif"
    proc = subprocess.run(f"'{ROOT}/bin/secai-parse' '{spec}' '{spec}' | head -1", shell=True,
                          capture_output=True, text=True, executable="/bin/bash")
    assert proc.stdout.count("\n") == 1
    assert "BrokenPipe" not in proc.stderr and "Traceback" not in proc.stderr


def test_bin_scripts_match_entry_points():
    import tomllib

    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert sorted(scripts) == sorted(p.name for p in (ROOT / "bin").iterdir())
    for name, target in scripts.items():
        module = target.split(":")[0]
        assert f"-m {module} " in (ROOT / "bin" / name).read_text()
