"""secai-doctor: `--json` on this machine (every check of the issue, nothing blocking), a broken
config failing with its reason and exit 1, a missing model store only warning, token values never
appearing in any output, the human report naming every check, and each check's warn/fail rules."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from conftest import run_command

from secai import config
from secai.ops import checks as doctor, machine
from secai.training import store as models
from secai.commands.doctor import Doctor
from secai.ops.verdict import FAIL, GIB, OK, WARN

# what issue 9 asks the doctor to report, by check name
ISSUE_CHECKS = {"platform", "mlx", "packages", "tree-sitter", "memory", "disk", "base-models", "config",
                "hf-token", "github-token", "scanners", "daemon", "embedder"}
HF_FAKE = "hf_" + "D0ct0rF4keT0ken" * 3
GH_FAKE = "ghp_" + "D0ct0rGhF4ke" * 3


@pytest.fixture(autouse=True)
def fresh_config(monkeypatch):
    """config.load() is cached: every test sees its own SECAI_* variables (none from outside), and
    leaves none behind."""
    for name in [n for n in os.environ if n.startswith("SECAI_")]:
        monkeypatch.delenv(name)
    config.use(None)
    config.load.cache_clear()
    yield
    config.load.cache_clear()


def doctor_json(*argv: str) -> tuple[int, dict, str]:
    code, out, err = run_command(Doctor, ["--json", *argv], raw=True)
    assert len(out.strip().splitlines()) == 1, out   # one JSON object, one line
    return code, json.loads(out), err


def by_name(report: dict) -> dict:
    return {c["name"]: c for c in report["checks"]}


# ---------------------------------------------------------------- this machine

def test_json_on_this_machine_has_every_check_and_nothing_blocks():
    code, report, err = doctor_json()
    checks = by_name(report)
    assert set(checks) == ISSUE_CHECKS == set(doctor.NAMES)
    blocking = {n: (c["detail"], c["fix"]) for n, c in checks.items() if c["status"] == FAIL}
    assert report["ok"] is True and report["blocking"] == [] and code == 0, blocking
    assert err == ""
    for c in report["checks"]:
        assert c["status"] in (OK, WARN, FAIL) and c["detail"] and c["group"]
        assert (c["fix"] is None) == (c["status"] == OK), c   # every problem says what to do
    assert report["warnings"] == [c["name"] for c in report["checks"] if c["status"] == WARN]

    versions = checks["packages"]["data"]["versions"]
    for dist in ("mlx", "mlx-lm", "torch", "faiss-cpu", "sentence-transformers", "transformers", "tree-sitter",
                 "huggingface-hub"):
        assert versions.get(dist), dist
    mlx = checks["mlx"]["data"]
    assert mlx["type"] in ("cpu", "gpu") and mlx["result"] == pytest.approx(14.0)
    assert isinstance(mlx["metal"], bool) and isinstance(mlx["cuda"], bool)
    assert mlx["device_name"] in checks["mlx"]["detail"]
    grammars = checks["tree-sitter"]["data"]["grammars"]
    assert grammars["tree-sitter-python"] and grammars["tree-sitter-hcl"] and not checks["tree-sitter"]["data"]["broken"]
    assert checks["memory"]["data"]["available_bytes"] > 0
    assert checks["base-models"]["data"]["models_dir"] == str(models.models_dir())
    assert checks["embedder"]["data"]["dimension"] == 384


def test_human_output_names_every_check_and_never_shows_a_token(monkeypatch, tmp_path):
    env_file = tmp_path / "daemon.env"
    env_file.write_text(f"GITHUB_TOKEN={GH_FAKE}\nHF_TOKEN={HF_FAKE}\n")
    env_file.chmod(0o600)
    monkeypatch.setenv("SECAI_DAEMON_ENV_FILE", str(env_file))
    monkeypatch.setenv("HF_TOKEN", HF_FAKE)
    monkeypatch.setenv("GITHUB_TOKEN", GH_FAKE)
    monkeypatch.setenv("GH_TOKEN", GH_FAKE[::-1])
    code, out, err = run_command(Doctor, [], raw=True)
    assert code == 0, out + err
    for name in doctor.NAMES:
        assert f" {name} " in out, name
    for group in ("system", "python", "config", "models", "optional"):
        assert f"\n{group}\n" in out
    assert "verdict: ready" in out.splitlines()[-1]
    code, report, err2 = doctor_json()
    checks = by_name(report)
    assert checks["hf-token"]["status"] == OK and "HF_TOKEN" in checks["hf-token"]["data"]["sources"]
    assert checks["github-token"]["status"] == OK
    assert {"GITHUB_TOKEN", "GH_TOKEN"} <= set(checks["github-token"]["data"]["sources"])
    everything = out + err + json.dumps(report) + err2
    for secret in (HF_FAKE, GH_FAKE, GH_FAKE[::-1]):
        assert secret not in everything
        assert secret[4:16] not in everything   # not even a part of it


def test_quiet_shows_only_problems_and_the_verdict():
    code, out, _ = run_command(Doctor, ["-q", "--check", "platform", "--check", "daemon"], raw=True)
    assert code == 0
    assert " platform " not in out and "verdict:" in out.splitlines()[-1]


# ---------------------------------------------------------------- config

def test_a_broken_config_value_fails_with_its_reason_and_exit_1(monkeypatch):
    monkeypatch.setenv("SECAI_LORA_RANK", "abc")
    code, report, err = doctor_json("--check", "config")
    c = by_name(report)["config"]
    assert code == 1 and report["ok"] is False and report["blocking"] == ["config"]
    assert c["status"] == FAIL and c["detail"] == "SECAI_LORA_RANK: expected an integer, got 'abc'"
    assert c["fix"] == "fix or unset SECAI_LORA_RANK" and c["data"]["problems"] == [c["detail"]]
    assert len(err.strip().splitlines()) == 1 and err.startswith("secai-doctor: error: ") and "SECAI_LORA_RANK" in err
    code, out, _ = run_command(Doctor, ["--check", "config"], raw=True)
    assert code == 1 and "BLOCKED by config" in out and "SECAI_LORA_RANK" in out


@pytest.mark.parametrize("var,value,words", [
    ("SECAI_LORA_DROPOUT", "2", "dropout must be in [0, 1)"),        # right type, refused by secai.training.run.settings()
    ("SECAI_ANALYZE_BACKEND", "gpt", "must be kb or mlx"),
    ("SECAI_SPLIT_VALID", "1.5", "must be in [0, 1)"),
    ("SECAI_PARSE_MAX_FILE_MB", "[1, 2", "expected a number, got '[1, 2'"),  # not read as YAML
    ("SECAI_PARSE_MAX_INSTANCES", "0", "must be positive"),
    ("SECAI_LORA_PACK", "sometimes", "expected true or false"),
    ("SECAI_LORA_RANKK", "4", "no setting lora.rankk (did you mean SECAI_LORA_RANK?)"),
])
def test_config_values_make_all_would_refuse_fail(monkeypatch, var, value, words):
    monkeypatch.setenv(var, value)
    code, report, _ = doctor_json("--check", "config")
    c = by_name(report)["config"]
    assert code == 1 and c["status"] == FAIL and words in c["detail"] and var in c["fix"]


def test_a_bad_value_outside_the_pipeline_only_warns(monkeypatch):
    monkeypatch.setenv("SECAI_FETCH_MAX_RUNS", "many")
    code, report, _ = doctor_json("--check", "config")
    c = by_name(report)["config"]
    assert code == 0 and report["ok"] and c["status"] == WARN
    assert c["detail"] == "SECAI_FETCH_MAX_RUNS: expected an integer, got 'many'"
    assert c["fix"] == "fix or unset SECAI_FETCH_MAX_RUNS"


def test_valid_overrides_pass(monkeypatch):
    monkeypatch.setenv("SECAI_LORA_RANK", "16")
    monkeypatch.setenv("SECAI_LORA_SCALE", "10")      # an int where a float is expected is fine
    monkeypatch.setenv("SECAI_ANALYZE_MODEL", "/some/model")  # null default: a string
    monkeypatch.setenv("SECAI_PATHS_MODELS_DIR", "[a, b]")    # a string as written, never YAML
    code, report, _ = doctor_json("--check", "config")
    assert code == 0 and by_name(report)["config"]["status"] == OK


def test_every_config_problem_is_reported_with_where_it_came_from(monkeypatch, tmp_path):
    """The doctor shows all of secai.config's problems (its own rules, not a copy), not only the first;
    the fix names each variable and the file to edit."""
    mine = tmp_path / "mine.yaml"
    mine.write_text("lora:\n  rnak: 4\nanalyze:\n  backend: gpt\nfetch:\n  max_runs: 0\n")
    monkeypatch.setenv("SECAI_CONFIG", str(mine))
    monkeypatch.setenv("SECAI_SPLIT_VALID", "abc")
    code, report, _ = doctor_json("--check", "config")
    c = by_name(report)["config"]
    problems = [str(p) for p in config.problems()]
    assert c["data"]["problems"] == problems and len(problems) == 4
    assert problems == [f"{mine}:2: lora.rnak: unknown setting (did you mean lora.rank?)",
                        f"{mine}:4: analyze.backend: must be kb or mlx, got 'gpt'",
                        f"{mine}:6: fetch.max_runs: must be at least 1, got 0",
                        "SECAI_SPLIT_VALID: expected a number, got 'abc'"]
    assert code == 1 and c["status"] == FAIL and c["detail"] == "; ".join(problems)
    assert c["fix"] == f"fix or unset SECAI_SPLIT_VALID; fix {mine}" and c["data"]["user_file"] == str(mine)


def test_a_bad_value_outside_the_pipeline_in_a_user_file_only_warns(monkeypatch, tmp_path):
    mine = tmp_path / "mine.yaml"
    mine.write_text("daemon:\n  interval_s: 0\n")
    monkeypatch.setenv("SECAI_CONFIG", str(mine))
    code, report, _ = doctor_json("--check", "config")
    c = by_name(report)["config"]
    assert code == 0 and c["status"] == WARN
    assert c["detail"] == f"{mine}:2: daemon.interval_s: must be at least 1, got 0" and c["fix"] == f"fix {mine}"


# ---------------------------------------------------------------- models

def test_a_missing_model_store_warns_not_fails(monkeypatch, tmp_path):
    monkeypatch.setenv("SECAI_MODELS_DIR", str(tmp_path / "no" / "store"))
    code, report, _ = doctor_json("--check", "base-models", "--check", "disk")
    c = by_name(report)["base-models"]
    assert code == 0 and report["ok"] is True
    assert c["status"] == WARN and "no model store" in c["detail"] and "make base-model" in c["fix"]
    assert c["data"]["exists"] is False and c["data"]["base"] == []
    assert by_name(report)["disk"]["status"] in (OK, WARN)


def _model(folder: Path, weights: bool = True) -> Path:
    folder.mkdir(parents=True)
    (folder / "config.json").write_text('{"model_type": "olmo2"}')
    (folder / "tokenizer.json").write_text("{}")
    if weights:
        (folder / "model.safetensors").write_bytes(b"\0" * 2048)
    return folder


def test_base_models_are_listed_with_size_and_optional_hash(monkeypatch, tmp_path):
    monkeypatch.setenv("SECAI_MODELS_DIR", str(tmp_path))
    real = _model(tmp_path / "base" / models.REAL_BASE)
    _model(tmp_path / "base" / "other-model")
    (tmp_path / "base" / "not-a-model").mkdir()
    code, report, _ = doctor_json("--check", "base-models", "--hash")
    c = by_name(report)["base-models"]
    assert code == 0 and c["status"] == OK and c["fix"] is None
    assert [m["name"] for m in c["data"]["base"]] == [models.REAL_BASE, "other-model"]
    first = c["data"]["base"][0]
    assert first["bytes"] > 2048 and first["content_hash"] == models.content_hash(real)
    assert first["content_hash"][:12] in c["detail"]
    _, report, _ = doctor_json("--check", "base-models")
    assert "content_hash" not in by_name(report)["base-models"]["data"]["base"][0]


def test_a_real_base_model_without_weights_blocks(monkeypatch, tmp_path):
    monkeypatch.setenv("SECAI_MODELS_DIR", str(tmp_path))
    _model(tmp_path / "base" / models.REAL_BASE, weights=False)
    code, report, _ = doctor_json("--check", "base-models")
    c = by_name(report)["base-models"]
    assert code == 1 and c["status"] == FAIL and "no weights" in c["detail"] and "make base-model" in c["fix"]


# ---------------------------------------------------------------- optional integrations

def _fake_tool(directory: Path, name: str) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    p = directory / name
    p.write_text("#!/bin/sh\nexit 0\n")
    p.chmod(0o755)


def test_scanners_found_in_the_configured_directory(monkeypatch, tmp_path):
    monkeypatch.setenv("SECAI_VERIFY_SCANNERS_DIR", str(tmp_path))
    _fake_tool(tmp_path / "bin", "bandit")
    _, report, _ = doctor_json("--check", "scanners")
    c = by_name(report)["scanners"]
    assert c["status"] == WARN and "checkov, semgrep not in" in c["detail"] and "scanners_dir" in c["fix"]
    assert report["ok"] is True
    _fake_tool(tmp_path / "bin", "checkov")
    _fake_tool(tmp_path, "semgrep")
    _, report, _ = doctor_json("--check", "scanners")
    c = by_name(report)["scanners"]
    assert c["status"] == OK and set(c["data"]["scanners"]) == {"bandit", "checkov", "semgrep"}


def test_no_tokens_warn_and_say_how_to_get_them(monkeypatch, tmp_path):
    import huggingface_hub

    for var in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "GITHUB_TOKEN", "GH_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(huggingface_hub, "get_token", lambda: None)
    monkeypatch.setenv("SECAI_DAEMON_ENV_FILE", str(tmp_path / "none.env"))
    code, report, _ = doctor_json("--check", "hf-token", "--check", "github-token")
    checks = by_name(report)
    assert code == 0 and report["ok"] is True
    assert checks["hf-token"]["status"] == WARN and "hf auth login" in checks["hf-token"]["fix"]
    assert checks["github-token"]["status"] == WARN and "GITHUB_TOKEN" in checks["github-token"]["fix"]
    monkeypatch.setattr(huggingface_hub, "get_token", lambda: HF_FAKE)   # a stored login
    _, report, _ = doctor_json("--check", "hf-token")
    assert by_name(report)["hf-token"]["status"] == OK and HF_FAKE not in json.dumps(report)


def test_an_env_file_others_can_read_warns(monkeypatch, tmp_path):
    for var in ("GITHUB_TOKEN", "GH_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    env_file = tmp_path / "daemon.env"
    env_file.write_text(f"export GITHUB_TOKEN='{GH_FAKE}'\n")
    env_file.chmod(0o644)
    monkeypatch.setenv("SECAI_DAEMON_ENV_FILE", str(env_file))
    _, report, _ = doctor_json("--check", "github-token")
    c = by_name(report)["github-token"]
    assert c["status"] == WARN and "chmod 600" in c["fix"] and GH_FAKE not in json.dumps(report)
    env_file.chmod(stat.S_IRUSR | stat.S_IWUSR)
    _, report, _ = doctor_json("--check", "github-token")
    assert by_name(report)["github-token"]["status"] == OK


def test_daemon_installed_or_not(monkeypatch, tmp_path):
    from secai.ops import units

    monkeypatch.setenv("SECAI_DAEMON_UNIT_DIR", str(tmp_path))
    _, report, _ = doctor_json("--check", "daemon")
    c = by_name(report)["daemon"]
    assert c["status"] == WARN and "not installed" in c["detail"] and "daemon-install" in c["fix"]
    names = list(units.render(units.platform_name()))
    for n in names:
        (tmp_path / n).write_text("")
    _, report, _ = doctor_json("--check", "daemon")
    c = by_name(report)["daemon"]
    assert c["status"] == OK and c["data"]["installed"] is True


# ---------------------------------------------------------------- fail rules of the system checks

def test_low_memory_fails_and_some_memory_warns(monkeypatch):
    monkeypatch.setattr(machine, "_memory", lambda: (512 * 1024 ** 2, 8 * GIB))
    code, report, _ = doctor_json("--check", "memory")
    assert code == 1 and by_name(report)["memory"]["status"] == FAIL
    monkeypatch.setattr(machine, "_memory", lambda: (2 * GIB, 8 * GIB))
    code, report, _ = doctor_json("--check", "memory")
    assert code == 0 and by_name(report)["memory"]["status"] == WARN


def test_a_full_disk_under_build_fails(monkeypatch):
    real = machine.shutil.disk_usage
    monkeypatch.setattr(machine.shutil, "disk_usage", lambda p: real(p)._replace(free=100 * 1024 ** 2))
    code, report, _ = doctor_json("--check", "disk")
    c = by_name(report)["disk"]
    assert code == 1 and c["status"] == FAIL and "make clean" in c["fix"]


def test_mlx_that_cannot_run_blocks(monkeypatch):
    monkeypatch.setattr(machine, "MLX_PROBE", "raise SystemExit('Metal device lost')")
    code, report, _ = doctor_json("--check", "mlx")
    c = by_name(report)["mlx"]
    assert code == 1 and c["status"] == FAIL and "Metal device lost" in c["detail"]


def test_a_missing_package_blocks(monkeypatch):
    monkeypatch.setattr(machine, "requirements", lambda: ["numpy>=1", "no-such-package-for-secai>=1.0"])
    code, report, _ = doctor_json("--check", "packages")
    c = by_name(report)["packages"]
    assert code == 1 and c["status"] == FAIL and "no-such-package-for-secai" in c["detail"] and "make install" in c["fix"]


def test_a_check_that_crashes_fails_only_where_it_guards_the_pipeline():
    def boom(opts):
        raise OSError("unreadable")

    opts = doctor.Options()
    assert doctor.run_check("x", "g", True, boom, opts).status == FAIL
    optional = doctor.run_check("y", "g", False, boom, opts)
    assert optional.status == WARN and "unreadable" in optional.detail and optional.fix


def test_a_check_stopped_by_a_user_error_says_so_without_a_type_name():
    def bad_setting(opts):
        raise config.ConfigError("SECAI_LORA_RANK", None, "expected an integer, got 'abc'")

    c = doctor.run_check("x", "g", True, bad_setting, doctor.Options())
    assert c.status == FAIL and c.detail == "could not check: SECAI_LORA_RANK: expected an integer, got 'abc'"
    assert "-v" not in c.fix


def test_version_and_usage_error():
    code, out, _ = run_command(Doctor, ["--version"], raw=True)
    assert code == 0 and "secai-doctor" in out
    code, _, err = run_command(Doctor, ["--check", "nonsense"], raw=True)
    assert code == 2 and err.startswith("secai-doctor: error: argument --check: invalid choice") and len(err.splitlines()) == 1
