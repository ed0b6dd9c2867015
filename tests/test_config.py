"""secai.config: config/secai.yaml holds every default and no module keeps a copy; a user file
(config.use, else SECAI_CONFIG, else ~/.config/secai/secai.yaml) sets a subset; SECAI_* values are
typed by the default's type, never read as YAML; every mistake is one ConfigError naming the setting
and where it came from."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import yaml

from conftest import ROOT
from secai import config
from secai.config import ConfigError
from secai.errors import InputError

LIB = Path(config.__file__).resolve().parent


@pytest.fixture(autouse=True)
def clean(monkeypatch, tmp_path_factory):
    """No SECAI_* variable, no chosen file and no file in the user's config folder leak in or out;
    the cache is read afresh."""
    for name in [n for n in os.environ if n.startswith("SECAI_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path_factory.mktemp("no-user-config")))
    config.use(None)
    yield
    config.use(None)
    config.load.cache_clear()


def user_file(tmp_path, text: str) -> Path:
    p = tmp_path / "mine.yaml"
    p.write_text(text)
    return p


def raised(section: str, key: str) -> ConfigError:
    with pytest.raises(ConfigError) as exc:
        config.get(section, key)
    return exc.value


# ---------------------------------------------------------------- one source of defaults

def test_the_shipped_file_is_valid_and_gives_every_setting_a_type():
    assert config.problems() == []
    shipped = yaml.safe_load(config.SHIPPED.read_text())
    types = shipped.pop("types")
    st = config.load()
    for section, keys in shipped.items():
        for key, value in keys.items():
            assert config.get(section, key) == value, f"{section}.{key}"
            assert st.kinds[f"{section}.{key}"] in config.KINDS
            if value is None:
                assert f"{section}.{key}" in types, f"{section}.{key}: a null default needs its type in types:"
    assert set(types) <= set(st.kinds)  # types: names real settings only
    assert set(config.RULES) <= set(st.kinds)


def test_modules_keep_no_copy_of_a_default():
    """No DEFAULTS table (tinymodel's are model sizes, not settings), no lenient `.get` on sections."""
    offenders = []
    for path in sorted(LIB.rglob("*.py")):
        if path.name == "config.py":
            continue
        text = path.read_text()
        for pattern in (r"^DEFAULTS\s*=", r"config\.load\(\)\.", r"config\.section\([^)]*\)\.get\("):
            if re.search(pattern, text, re.M) and path.name != "tinymodel.py":
                offenders.append(f"{path.relative_to(LIB)}: {pattern}")
    assert offenders == []


def test_an_unknown_setting_is_a_bug_not_a_default():
    with pytest.raises(KeyError, match="parse.nope"):
        config.get("parse", "nope")


def test_default_is_the_shipped_value_whatever_overrides_it(monkeypatch):
    monkeypatch.setenv("SECAI_LORA_RANK", "16")
    assert config.get("lora", "rank") == 16 and config.default("lora", "rank") == 8


# ---------------------------------------------------------------- the environment, typed

@pytest.mark.parametrize("var,text,value", [
    ("SECAI_SPLIT_NAME", "yes", "yes"),             # a string stays a string (was the boolean True)
    ("SECAI_SPLIT_LICENSE", "null", "null"),
    ("SECAI_LORA_RANK", "16", 16),
    ("SECAI_LORA_RANK", " -1 ", -1),
    ("SECAI_LORA_SCALE", "10", 10.0),               # a whole number is a number
    ("SECAI_LORA_LEARNING_RATE", "1e-5", 1e-5),
    *[("SECAI_LORA_PACK", word, True) for word in ("true", "1", "yes", "on", "TRUE", "On")],
    *[("SECAI_LORA_PACK", word, False) for word in ("false", "0", "no", "off", "False")],
    ("SECAI_LORA_TARGET_MODULES", "self_attn.q_proj, self_attn.v_proj", ["self_attn.q_proj", "self_attn.v_proj"]),
    ("SECAI_ANALYZE_MODEL", "/some/model", "/some/model"),
    ("SECAI_ANALYZE_MODEL", "", None),              # empty: not set, where null is allowed
    ("SECAI_FETCH_ARTIFACT", "sarif-*", "sarif-*"),
    ("SECAI_FETCH_BRANCH", "", ""),                 # '' is a value here: every branch
    ("SECAI_PATHS_MODELS_DIR", "[a, b]", "[a, b]"),  # not YAML: a folder name as written
])
def test_an_environment_value_takes_the_type_of_the_default(monkeypatch, var, text, value):
    monkeypatch.setenv(var, text)
    section, key = var[len("SECAI_"):].lower().split("_", 1)
    got = config.get(section, key)
    assert got == value and type(got) is type(value)
    assert config.source(section, key) == var


@pytest.mark.parametrize("var,text,message", [
    ("SECAI_PARSE_MAX_FILE_MB", "abc", "SECAI_PARSE_MAX_FILE_MB: expected a number, got 'abc'"),
    ("SECAI_LORA_RANK", "abc", "SECAI_LORA_RANK: expected an integer, got 'abc'"),
    ("SECAI_LORA_RANK", "1.5", "SECAI_LORA_RANK: expected an integer, got '1.5'"),
    ("SECAI_LORA_RANK", "1_000", "SECAI_LORA_RANK: expected an integer, got '1_000'"),
    ("SECAI_LORA_SCALE", "nan", "SECAI_LORA_SCALE: expected a number, got 'nan'"),
    ("SECAI_LORA_PACK", "sometimes",
     "SECAI_LORA_PACK: expected true or false (or 1/0, yes/no, on/off), got 'sometimes'"),
    ("SECAI_LORA_RANK", "", "SECAI_LORA_RANK: expected an integer, got ''"),  # only a null default takes ''
    ("SECAI_ANALYZE_BACKEND", "gpt", "SECAI_ANALYZE_BACKEND: must be kb or mlx, got 'gpt'"),
    ("SECAI_SPLIT_VALID", "1.5", "SECAI_SPLIT_VALID: must be in [0, 1), got 1.5"),
])
def test_a_bad_environment_value_is_one_line_naming_the_variable(monkeypatch, var, text, message):
    monkeypatch.setenv(var, text)
    section, key = var[len("SECAI_"):].lower().split("_", 1)
    err = raised(section, key)
    assert str(err) == message and isinstance(err, InputError)
    assert err.setting == f"{section}.{key}" and err.env


def test_a_long_bad_value_is_shown_short(monkeypatch):
    monkeypatch.setenv("SECAI_PARSE_MAX_FILE_MB", "abc" * 1000)
    text = str(raised("parse", "max_file_mb"))
    assert text.startswith("SECAI_PARSE_MAX_FILE_MB: expected a number, got 'abcabc") and len(text) < 120


def test_an_unknown_variable_of_a_section_is_an_error_with_a_suggestion(monkeypatch):
    monkeypatch.setenv("SECAI_LORA_RANKK", "4")
    monkeypatch.setenv("SECAI_X", "1")                 # no section x: not a setting, left alone
    monkeypatch.setenv("SECAI_MODELS_DIR", "/store")   # the short name of paths.models_dir
    with pytest.raises(ConfigError, match=r"^SECAI_LORA_RANKK: no setting lora.rankk \(did you mean SECAI_LORA_RANK\?\)$"):
        config.get("parse", "max_file_mb")
    assert [str(p) for p in config.problems()] == [
        "SECAI_LORA_RANKK: no setting lora.rankk (did you mean SECAI_LORA_RANK?)"]


def test_secai_models_dir_wins_over_the_long_name(monkeypatch):
    monkeypatch.setenv("SECAI_PATHS_MODELS_DIR", "/long")
    monkeypatch.setenv("SECAI_MODELS_DIR", "/short")
    assert config.get("paths", "models_dir") == "/short" and config.source("paths", "models_dir") == "SECAI_MODELS_DIR"


def test_a_bad_value_spoils_only_its_own_setting(monkeypatch):
    monkeypatch.setenv("SECAI_FETCH_MAX_RUNS", "many")
    assert config.get("parse", "max_file_mb") == 1024.0
    assert str(raised("fetch", "max_runs")) == "SECAI_FETCH_MAX_RUNS: expected an integer, got 'many'"
    with pytest.raises(ConfigError, match="SECAI_FETCH_MAX_RUNS"):
        config.section("fetch")


# ---------------------------------------------------------------- a file of one's own

def test_a_user_file_sets_a_subset_and_the_shipped_file_the_rest(tmp_path, monkeypatch):
    mine = user_file(tmp_path, "lora:\n  rank: 4\n")   # no parse: section (was KeyError: 'parse')
    monkeypatch.setenv("SECAI_CONFIG", str(mine))
    assert config.get("lora", "rank") == 4 and config.source("lora", "rank") == f"{mine}:2"
    assert config.get("parse", "max_file_mb") == 1024.0 and config.source("parse", "max_file_mb").startswith(
        "config/secai.yaml:")
    assert config.files() == ["config/secai.yaml", str(mine)]
    monkeypatch.setenv("SECAI_LORA_RANK", "32")        # the environment overrides the file
    config.load.cache_clear()
    assert config.get("lora", "rank") == 32


def test_use_chooses_the_file_over_secai_config(tmp_path, monkeypatch):
    monkeypatch.setenv("SECAI_CONFIG", str(user_file(tmp_path, "lora:\n  rank: 4\n")))
    other = tmp_path / "other.yaml"
    other.write_text("lora:\n  rank: 2\n")
    config.use(other)
    assert config.get("lora", "rank") == 2 and config.user_file() == (other, "--config")
    config.use(None)
    assert config.get("lora", "rank") == 4 and config.user_file()[1] == "SECAI_CONFIG"


def folder_file(folder: Path, text: str) -> Path:
    """secai/secai.yaml in a config folder (~/.config or $XDG_CONFIG_HOME)."""
    p = folder / "secai" / "secai.yaml"
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text)
    return p


def test_the_file_in_the_users_config_folder_is_read_when_nothing_chooses_one(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("XDG_CONFIG_HOME")
    assert config.user_file() is None and config.files() == ["config/secai.yaml"]  # none there: the defaults
    mine = folder_file(tmp_path / "home" / ".config", "lora:\n  rank: 4\n")
    config.load.cache_clear()
    assert config.user_file() == (mine, config.USER_FOLDER)
    assert config.get("lora", "rank") == 4 and config.source("lora", "rank") == f"{mine}:2"
    assert config.get("lora", "scale") == config.default("lora", "scale")  # the rest: the shipped defaults
    assert config.files() == ["config/secai.yaml", str(mine)]


def test_xdg_config_home_is_the_users_config_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    folder_file(tmp_path / "home" / ".config", "lora:\n  rank: 4\n")   # not read: XDG_CONFIG_HOME is set
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    assert config.user_file() is None and config.get("lora", "rank") == config.default("lora", "rank")
    mine = folder_file(tmp_path / "xdg", "lora:\n  rank: 2\n")
    config.load.cache_clear()
    assert config.user_file() == (mine, config.USER_FOLDER) and config.get("lora", "rank") == 2


def test_secai_config_and_the_flag_win_over_the_users_config_folder(tmp_path, monkeypatch):
    folder_file(tmp_path / "xdg", "lora:\n  rank: 2\n")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("SECAI_CONFIG", str(user_file(tmp_path, "lora:\n  scale: 3.0\n")))
    assert config.get("lora", "scale") == 3.0
    assert config.get("lora", "rank") == config.default("lora", "rank")  # the folder's file is not a layer
    config.use(folder_file(tmp_path / "other", "lora:\n  rank: 6\n"))
    assert config.get("lora", "rank") == 6


def test_a_bad_value_in_the_users_config_folder_names_that_file(tmp_path, monkeypatch):
    mine = folder_file(tmp_path / "xdg", "parse:\n  max_file_mb: abc\n")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    line = f"{mine}:2: parse.max_file_mb: expected a number, got 'abc'"
    assert str(raised("parse", "max_file_mb")) == line
    code, out, err = secai("secai-parse", "-", env={"XDG_CONFIG_HOME": str(tmp_path / "xdg")})  # a command reads it
    assert (code, err) == (1, f"secai-parse: error: {line}\n")
    mine.chmod(0)
    if not os.access(mine, os.R_OK):  # root reads it anyway
        config.load.cache_clear()
        assert str(raised("lora", "rank")) == f"{mine}: Permission denied"  # the folder chose it, not a variable


def test_an_empty_user_file_or_section_changes_nothing(tmp_path):
    config.use(user_file(tmp_path, "# nothing yet\nlora:\n"))
    assert config.problems() == [] and config.get("lora", "rank") == 8


@pytest.mark.parametrize("text,message", [
    ("parse:\n  max_file_mb: abc\n", "parse.max_file_mb: expected a number, got 'abc'"),
    ("parse:\n  max_instances: 2.5\n", "parse.max_instances: expected an integer, got 2.5"),
    ("split:\n  name: yes\n", "split.name: expected a string, got True"),
    ("lora:\n  rank: null\n", "lora.rank: expected an integer, got null"),
    ("lora:\n  target_modules: q_proj\n", "lora.target_modules: expected a list of strings, got 'q_proj'"),
    ("fetch:\n  artifact: [sarif-*, 3]\n", "fetch.artifact: expected a string or a list of strings, got ['sarif-*', 3]"),
    ("split:\n  group_by: file\n", "split.group_by: must be finding or rule, got 'file'"),
])
def test_a_bad_value_in_a_file_names_the_file_line_and_setting(tmp_path, text, message):
    mine = user_file(tmp_path, "# mine\n" + text)
    config.use(mine)
    section, key = message.split(":")[0].split(".")
    err = raised(section, key)
    assert str(err) == f"{mine}:3: {message}" and not err.env


@pytest.mark.parametrize("text,line,message", [
    ("lorra:\n  rank: 4\n", 1, "unknown section 'lorra' (did you mean lora?)"),
    ("lora:\n  rnak: 4\n", 2, "lora.rnak: unknown setting (did you mean lora.rank?)"),
    ("types:\n  lora.rank: str\n", 1, "unknown section 'types'"),
    ("lora:\n  rank: 4\n  rank: 5\n", 3, "lora.rank: set twice (first at line 2)"),
    ("lora: {}\nlora: {}\n", 2, "lora: set twice (first at line 1)"),
    ("? [a, b]\n: {x: 1}\n", 1, "['a', 'b']: a section name must be a string"),  # a list key, not a TypeError
    ("parse:\n  ? [a, b]\n  : 1\n", 2, "parse: ['a', 'b']: a setting name must be a string"),
    ("lora: 4\n", 1, "lora: expected a mapping of settings"),
    ("- lora\n", 1, "expected sections of `key: value` settings"),
    ("lora:\n  rank: [4\n", 3, "not valid YAML: expected ',' or ']', but got '<stream end>'"),
])
def test_a_broken_file_is_an_error_for_every_setting(tmp_path, text, line, message):
    mine = user_file(tmp_path, text)
    config.use(mine)
    with pytest.raises(ConfigError) as exc:
        config.get("parse", "max_file_mb")
    assert str(exc.value) == f"{mine}:{line}: {message}" and exc.value.setting is None


def test_a_missing_chosen_file_names_the_variable(tmp_path, monkeypatch):
    monkeypatch.setenv("SECAI_CONFIG", str(tmp_path / "none.yaml"))
    assert str(raised("lora", "rank")) == f"{tmp_path / 'none.yaml'}: No such file or directory (the file SECAI_CONFIG names)"


def test_every_problem_is_listed_not_only_the_first(tmp_path, monkeypatch):
    config.use(user_file(tmp_path, "lora:\n  rnak: 4\n  rank: x\nsplit:\n  valid: 0.6\n  test: 0.5\n"))
    monkeypatch.setenv("SECAI_PARSE_MAX_FILE_MB", "-1")
    monkeypatch.setenv("SECAI_FETCH_RETRIES", "some")
    found = [str(p) for p in config.problems()]
    mine = tmp_path / "mine.yaml"
    assert found == [f"{mine}:2: lora.rnak: unknown setting (did you mean lora.rank?)",
                     f"{mine}:3: lora.rank: expected an integer, got 'x'",
                     "SECAI_FETCH_RETRIES: expected an integer, got 'some'",
                     "SECAI_PARSE_MAX_FILE_MB: must be positive, got -1.0",
                     f"{mine}:6: split.valid + split.test = 0.6 + 0.5 leave nothing for train"]


def test_a_value_a_later_layer_replaces_is_still_reported(tmp_path, monkeypatch):
    config.use(user_file(tmp_path, "lora:\n  rank: x\n"))
    monkeypatch.setenv("SECAI_LORA_RANK", "4")
    assert config.get("lora", "rank") == 4
    assert [str(p) for p in config.problems()] == [f"{tmp_path / 'mine.yaml'}:2: lora.rank: expected an integer, got 'x'"]


# ---------------------------------------------------------------- what a command prints

def secai(command: str, *argv: str, env: dict, stdin: bytes = b"") -> tuple[int, str, str]:
    import subprocess

    clean_env = {k: v for k, v in os.environ.items() if not k.startswith("SECAI_")}
    p = subprocess.run([str(ROOT / "bin" / command), *argv], input=stdin, capture_output=True,
                       env={**clean_env, **env}, cwd=ROOT, timeout=120)
    return p.returncode, p.stdout.decode(), p.stderr.decode()


@pytest.mark.parametrize("command,argv,env,line", [
    # was `invalid literal for int() ... 'abcabc...'`
    ("secai-parse", [], {"SECAI_PARSE_MAX_FILE_MB": "abc"}, "SECAI_PARSE_MAX_FILE_MB: expected a number, got 'abc'"),
    # was `TypeError: '<=' not supported between instances of 'int' and 'str'`
    ("secai-split", ["-o", "build/never"], {"SECAI_SPLIT_VALID": "abc"}, "SECAI_SPLIT_VALID: expected a number, got 'abc'"),
])
def test_a_command_prints_a_bad_setting_as_one_line(command, argv, env, line):
    code, out, err = secai(command, *argv, env=env, stdin=b"")
    assert (code, out, err) == (1, "", f"{command}: error: {line}\n")


def test_secai_config_and_the_config_flag_reach_a_command(tmp_path):
    mine = user_file(tmp_path, "lora:\n  rank: 4\n")   # was KeyError: 'parse'
    code, out, err = secai("secai-parse", str(ROOT / "examples" / "artifacts" / "bandit.json"),
                           env={"SECAI_CONFIG": str(mine)})
    assert code == 0 and out.count("\n") > 0, err
    mine.write_text("parse:\n  max_file_mb: abc\n")
    code, out, err = secai("secai-parse", "-", env={"SECAI_CONFIG": str(mine)})
    assert (code, err) == (1, f"secai-parse: error: {mine}:2: parse.max_file_mb: expected a number, got 'abc'\n")
    code, out, err = secai("secai-parse", "--config", str(mine), "-", env={})  # the flag does what the variable does
    assert (code, err) == (1, f"secai-parse: error: {mine}:2: parse.max_file_mb: expected a number, got 'abc'\n")
