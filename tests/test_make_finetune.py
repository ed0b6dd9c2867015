"""`make all` with fine-tuning, and its modes, on a small copy of the project (see test_make.py):
stage 1 then stage 2 then eval on the tiny model, incremental (a second run does nothing), the
summary; SKIP_FINETUNE=1 builds the data only; NAME names the models; stage 2 alone brings stage 1.
Training is cut to a few steps (FT_ARGS), so each make run takes about a minute."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from conftest import ROOT
from test_make import make as make_data
from test_make import project_copy, pytestmark  # noqa: F401  (the same skip conditions)

REPORTS = ["bandit.json"]  # Python findings: analyses with code context, fixes, code-fix examples
FT = "FT_ARGS=--iters 2 --steps-per-eval 2 --steps-per-report 1 --batch-size 2"


def make(tree: Path, *args: str, check: bool = True):
    """make with fine-tuning (test_make's helper turns it off) and a short eval."""
    import subprocess

    from test_make import _env

    env = {**_env(tree), "SECAI_LORA_EVAL_SAMPLES": "2", "SECAI_LORA_EVAL_MAX_TOKENS": "8"}
    proc = subprocess.run(["make", "--no-print-directory", "ARTIFACTS=artifacts", f"MODELS_DIR={tree / 'models'}",
                           f"SOURCE_ROOT={ROOT / 'examples' / 'demo-app'}", FT, *args], cwd=tree, env=env,
                          capture_output=True, text=True, timeout=900)
    if check and proc.returncode != 0:
        raise AssertionError(f"make {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}{proc.stderr[-3000:]}")
    return proc


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    tree = project_copy(tmp_path_factory.mktemp("ft"), REPORTS)
    proc = make(tree, "all")
    return tree, proc


def test_all_trains_both_stages_evaluates_and_summarises(built):
    tree, proc = built
    ft = tree / "build" / "finetune"
    s1, s2 = (orjson.loads((ft / f"{n}.json").read_bytes()) for n in ("analysis", "codefix"))
    assert s1["stage"] == "analysis" and s2["stage"] == "codefix"
    assert s2["from_adapter"]["path"] == s1["path"]  # stage 2 continued from stage 1
    for meta in (s1, s2):
        d = Path(meta["path"])
        assert d.parent == tree / "models" / "fine-tuned" and (d / "adapters" / "adapters.safetensors").is_file()
        assert meta["base_model"]["test_model"] and meta["training"]["steps"] == 2
        report = orjson.loads((ft / f"eval-{meta['stage']}.json").read_bytes())
        assert report == orjson.loads((d / "eval.json").read_bytes()) and (d / "loss.png").is_file()
    assert orjson.loads((ft / "eval-codefix.json").read_bytes())["forgetting"]["stage1_model"] == s1["name"]
    assert "RANDOM-WEIGHT test model" in proc.stderr  # the loud notice
    summary = orjson.loads((tree / "build" / "summary.json").read_bytes())
    assert [m["stage"] for m in summary["models"]] == ["analysis", "codefix"]
    counts = {s["stage"]: s["count"] for s in summary["stages"]}
    assert counts["parse"] > 0 and counts["narrate codefix"] > 0 and counts["sarif"] > 0
    assert "model codefix:" in proc.stdout  # the summary is printed at the end


def test_a_second_make_all_does_nothing(built):
    tree, _ = built
    assert make(tree, "-q", "all", check=False).returncode == 0
    assert "Nothing to be done" in make(tree, "all").stdout


def test_status_shows_the_models(built):
    tree, _ = built
    out = make(tree, "status").stdout
    assert "model analysis:" in out and "model codefix:" in out and "findings" in out


def test_name_names_the_models_and_stage2_brings_stage1(built):
    tree, _ = built
    for f in (tree / "build" / "finetune").glob("*.json"):
        f.unlink()
    make(tree, "finetune-stage2", "NAME=demo")
    assert (tree / "models" / "fine-tuned" / "demo-analysis" / "metadata.json").is_file()
    assert (tree / "models" / "fine-tuned" / "demo-codefix" / "metadata.json").is_file()
    assert not (tree / "build" / "finetune" / "eval-codefix.json").exists()  # eval was not asked for


def test_skip_finetune_builds_the_data_only(tmp_path):
    tree = project_copy(tmp_path, REPORTS)
    make_data(tree, "all", timeout=600)  # SKIP_FINETUNE=1
    assert (tree / "build" / "datasets" / "analysis" / "manifest.json").is_file()
    assert (tree / "build" / "analyses.sarif").is_file()
    assert not (tree / "build" / "finetune").exists() and not (tree / "models").exists()
    summary = orjson.loads((tree / "build" / "summary.json").read_bytes())
    assert summary["models"] == []
