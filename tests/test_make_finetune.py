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
        # recorded relative to MODELS_DIR and to the project (secai.training.store.portable), never absolute
        assert meta["path"] == f"fine-tuned/{meta['name']}" and meta["base_model"]["path"] == "build/models/base/tiny-olmo2"
        assert meta["dataset"]["path"] == f"build/datasets/{meta['stage']}"
        d = tree / "models" / meta["path"]
        assert (d / "adapters" / "adapters.safetensors").is_file()
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


def test_all_ends_with_the_report_and_it_renders(built):
    """make all ends by writing build/report.html; headless Chromium shows every finding, the loss
    curves of both stages and the eval table, and its filters hide the right findings."""
    from test_report import check_rendered

    tree, _ = built
    report = tree / "build" / "report.html"
    assert report.stat().st_mtime_ns >= (tree / "build" / "summary.json").stat().st_mtime_ns
    check_rendered(report, tree / "build")


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
    assert "No model was trained in this build" in (tree / "build" / "report.html").read_text()  # absent, no error


def test_stages_1_trains_one_model_on_both_kinds(built):
    tree, _ = built
    make(tree, "finetune", "eval", "STAGES=1")
    ft = tree / "build" / "finetune"
    meta = orjson.loads((ft / "combined.json").read_bytes())
    assert meta["stage"] == "combined" and meta["from_adapter"] is None
    stages = orjson.loads((tree / "build" / "datasets" / "combined" / "manifest.json").read_bytes())["stages"]
    assert stages["analysis"] > 0 and stages["codefix"] > 0
    report = orjson.loads((ft / "eval-combined.json").read_bytes())
    assert report["stage"] == "combined" and report["loss"]["adapter"] is not None


def test_push_modes_stage_the_dataset_and_the_latest_model(built):
    """PUSH=1 ends `all` by publishing (here --dry-run: staged and listed, nothing sent; the upload
    itself is tested against a loopback Hub in test_push.py); PUSH_MODEL=0 publishes the dataset only."""
    tree, _ = built
    staging = tree / "build" / "push"
    flags = ["PUSH=1", "PUSH_FLAGS=--dry-run", "DATASET_REPO=acme/findings", "MODEL_REPO=acme/secai-lora"]
    make(tree, "all", *flags, "PUSH_MODEL=0")
    assert (staging / "dataset-acme--findings" / "README.md").is_file()
    assert not (staging / "model-acme--secai-lora").exists()
    make(tree, "all", *flags)
    latest = max((orjson.loads(f.read_bytes()) for f in (tree / "build" / "finetune").glob("[!e]*.json")),
                 key=lambda m: m.get("created", ""))
    staged = staging / "model-acme--secai-lora"
    assert (staged / "README.md").is_file() and orjson.loads((staged / "metadata.json").read_bytes())["name"] == latest["name"]


def test_base_model_picks_the_model_fine_tuned(built, tmp_path):
    from secai.training.store import content_hash
    from secai.training.tinymodel import build

    tree, _ = built
    other = build(tmp_path / "other-base", seed=1)
    (tree / "build" / "finetune" / "analysis.json").unlink(missing_ok=True)
    make(tree, "finetune-stage1", f"BASE_MODEL={other}", "NAME=other")
    meta = orjson.loads((tree / "build" / "finetune" / "analysis.json").read_bytes())
    assert meta["name"] == "other-analysis" and not Path(meta["base_model"]["path"]).is_absolute()
    assert (tree / "models" / meta["path"] / meta["base_model"]["path"]).resolve() == other.resolve()
    assert meta["base_model"]["content_hash"] == content_hash(other)


def test_backend_mlx_and_no_source_root(tmp_path):
    """BACKEND=mlx: the tiny model writes the analyses (its replies are not valid analyses, so each
    falls back to the knowledge base, saying why); SOURCE_ROOT empty: no code context, hence no
    code-fix examples and stage 2 is skipped."""
    tree = project_copy(tmp_path, REPORTS)
    import subprocess

    from test_make import _env

    env = {**_env(tree), "SECAI_ANALYZE_MAX_TOKENS": "8"}
    proc = subprocess.run(["make", "--no-print-directory", "ARTIFACTS=artifacts", f"MODELS_DIR={tree / 'models'}",
                           "BACKEND=mlx", "SOURCE_ROOT=", "analyze", "dataset"], cwd=tree, env=env,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    analyses = [orjson.loads(line) for line in (tree / "build" / "analyses.jsonl").read_bytes().splitlines()]
    assert analyses and all(a["producer"]["backend"] == "mlx" for a in analyses)
    assert all("code_context" not in a for a in analyses)
    assert (tree / "build" / "training" / "codefix.jsonl").read_bytes() == b""
    assert (tree / "build" / "models" / "base" / "tiny-olmo2" / "config.json").is_file()  # built for the backend
