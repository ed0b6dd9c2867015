"""secai-lora and its engine (secai.training.engine) on the tiny random-weight OLMo-2 model: real MLX
training on small learnable datasets — stage 1, stage 2 from its adapter, resume after kill -9,
packing and masking exact, best checkpoint, early stop, eval report and plot, mlx_lm loading the
result, and a 2-process data-parallel run under mlx.launch."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import orjson
import pytest

from conftest import ROOT, run_command

pytestmark = pytest.mark.usefixtures("no_network")

from secai.training import adapters, batches, evaluate, run as lora  # noqa: E402
from secai.training.settings import TrainError  # noqa: E402
from secai.records import schema_error  # noqa: E402
from secai.commands.lora import Lora  # noqa: E402

RULES = ["sql injection", "cross-site scripting", "path traversal", "hardcoded secret", "open redirect",
         "command injection", "weak hash", "insecure tls", "xml external entity", "deserialization"]
CWES = ["CWE-89", "CWE-79", "CWE-22", "CWE-798", "CWE-601", "CWE-78", "CWE-328", "CWE-295", "CWE-611", "CWE-502"]


def conversation(i: int, stage: str) -> dict:
    """A short, learnable example: the answer is a fixed function of the question."""
    k = i % len(RULES)
    if stage == "analysis":
        # every fifth example is long, so short ones can share packed rows
        detail = f" Because {RULES[k]} lets an attacker in, validate input at line {i}." * (8 if i % 5 == 0 else 0)
        user, reply = f"Finding {i}: {RULES[k]} in app.py. Which CWE?", f"{CWES[k]}: {RULES[k]}.{detail}"
    else:
        user, reply = f"Fix {RULES[k]} at line {i}.", f"```python\nsafe_{k} = check({i})\n```\nValidated."
    return {"messages": [{"role": "system", "content": "You are a security engineer."},
                         {"role": "user", "content": user}, {"role": "assistant", "content": reply}]}


def write_dataset(d: Path, stage: str, n_train: int = 40, n_valid: int = 10, start: int = 0) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    for split, rng in (("train", range(start, start + n_train)), ("valid", range(start + 1000, start + 1000 + n_valid))):
        (d / f"{split}.jsonl").write_bytes(b"".join(orjson.dumps(conversation(i, stage)) + b"\n" for i in rng))
    (d / "manifest.json").write_bytes(orjson.dumps({"name": f"test-{stage}", "stages": {stage: n_train + n_valid}}))
    return d


FAST = ["--iters", "24", "--batch-size", "4", "--learning-rate", "1e-3", "--warmup", "2", "--steps-per-eval", "8",
        "--steps-per-report", "8", "-q"]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    d = tmp_path_factory.mktemp("store")
    os.environ["SECAI_MODELS_DIR"] = str(d)
    lora.config.load.cache_clear()
    yield d
    os.environ.pop("SECAI_MODELS_DIR", None)
    lora.config.load.cache_clear()


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    return {"analysis": write_dataset(root / "analysis", "analysis"),
            "codefix": write_dataset(root / "codefix", "codefix", n_train=24, n_valid=8)}


def train(argv):
    code, out, err = run_command(Lora, ["train", *argv], raw=True)
    assert code == 0, err
    return orjson.loads(out)


def where(meta: dict) -> str:
    """The folder of a model whose metadata `secai-lora train` printed (its path is recorded portably)."""
    found = lora.models.local(meta["path"])
    assert found is not None, meta["path"]
    return str(found)


@pytest.fixture(scope="module")
def stage1(tiny_model, store, data):
    return train(["--stage", "analysis", "--data", str(data["analysis"]), "--base-model", str(tiny_model),
                  "--name", "s1", *FAST])


@pytest.fixture(scope="module")
def stage2(tiny_model, stage1, data):
    return train(["--stage", "codefix", "--data", str(data["codefix"]), "--base-model", str(tiny_model),
                  "--from-adapter", where(stage1), "--name", "s2", *FAST])


# ---------------------------------------------------------------- stage 1 and 2

def test_stage1_learns_and_writes_a_complete_model_dir(stage1, store):
    d = Path(where(stage1))
    assert d == store / "fine-tuned" / "s1"
    assert {p.name for p in d.iterdir()} == {"adapters", "metadata.json", "training_log.jsonl", "loss.png", "README.md"}
    assert not list(d.parent.glob(".run-*")), "the work folder is removed once the model is in place"
    meta = orjson.loads((d / "metadata.json").read_bytes())
    assert meta == stage1 and schema_error("model/1", meta) is None
    ev = meta["eval"]
    # a learnable dataset: the loss drops (the random tiny model can only move its near-uniform
    # output so far — its untrained output head is not adapted — so the drop is small but real)
    assert ev["val_loss_after"] < ev["val_loss_before"] - 0.05, ev
    t = meta["training"]
    assert t["steps"] == 24 and t["best_step"] in (8, 16, 24) and t["tokens_per_second"] > 0 and t["peak_memory_bytes"] > 0
    assert t["padding_fraction"] < 0.3
    s = meta["settings"]
    assert (s["rank"], s["learning_rate"], s["iters"], s["alpha"]) == (8, 1e-3, 24, s["scale"] * 8)
    assert meta["base_model"]["test_model"] is True and meta["from_adapter"] is None
    log = [orjson.loads(line) for line in (d / "training_log.jsonl").read_bytes().splitlines()]
    assert [e["step"] for e in log if "val_loss" in e] == [0, 8, 16, 24]
    assert [e["step"] for e in log if "train_loss" in e] == [8, 16, 24]
    cfg = orjson.loads((d / "adapters" / "adapter_config.json").read_bytes())
    assert cfg["fine_tune_type"] == "lora" and cfg["num_layers"] == 2 and cfg["lora_parameters"]["rank"] == 8
    assert meta["files"]["adapters/adapters.safetensors"] == meta["adapter_sha256"]
    readme = (d / "README.md").read_text()
    assert readme.startswith("---\n") and "library_name: mlx" in readme and "Test device, not a useful model" in readme
    assert f"{ev['val_loss_after']:.4f}" in readme


def test_stage2_continues_from_the_stage1_adapter(stage1, stage2):
    assert stage2["stage"] == "codefix" and stage2["from_adapter"]["name"] == "s1"
    assert stage2["from_adapter"]["adapter_sha256"] == stage1["adapter_sha256"]
    assert stage2["eval"]["val_loss_after"] < stage2["eval"]["val_loss_before"]
    assert stage2["adapter_sha256"] != stage1["adapter_sha256"]


def test_stage2_starts_from_stage1_weights_not_from_scratch(tiny_model, stage1, data, tmp_path):
    """Validation loss before any stage-2 step differs from a fresh adapter's: the weights were loaded."""
    fresh = train(["--stage", "codefix", "--data", str(data["codefix"]), "--base-model", str(tiny_model),
                   "--name", "fresh", "--out", str(tmp_path), "--iters", "2", *FAST[2:]])
    cont = train(["--stage", "codefix", "--data", str(data["codefix"]), "--base-model", str(tiny_model),
                  "--from-adapter", where(stage1), "--name", "cont", "--out", str(tmp_path), "--iters", "2", *FAST[2:]])
    assert abs(fresh["eval"]["val_loss_before"] - cont["eval"]["val_loss_before"]) > 1e-3


def test_a_mismatched_stage1_adapter_is_a_clear_error(tiny_model, stage1, data, tmp_path):
    code, out, err = run_command(Lora, ["train", "--stage", "codefix", "--data", str(data["codefix"]),
                                        "--base-model", str(tiny_model), "--from-adapter", where(stage1),
                                        "--rank", "4", "--out", str(tmp_path), *FAST], raw=True)
    assert code == 1 and out == ""
    last = err.splitlines()[-1]
    assert "does not fit this model and LoRA settings" in last and "shape" in last


def test_mlx_lm_generate_loads_the_adapter(tiny_model, stage1):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-m", "mlx_lm", "generate", "--model", str(tiny_model), "--adapter-path",
                           str(Path(where(stage1)) / "adapters"), "--prompt", "Finding 3: path traversal. Which CWE?",
                           "--max-tokens", "8"], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "Generation:" in proc.stdout


# ---------------------------------------------------------------- the engine

@pytest.fixture(scope="module")
def loaded(tiny_model):
    model, tok, _ = lora.load_base(tiny_model)
    return model, tok


def settings(**kw):
    return lora.settings({"iters": 12, "batch_size": 4, "learning_rate": 3e-3, "warmup": 2, **kw})


def test_the_loss_covers_exactly_the_final_assistant_turn(loaded):
    _, tok = loaded
    conv = conversation(3, "analysis")["messages"]
    data = batches.encode_all(tok, [conv], settings())
    b = batches.make_batch(data, [[0]], None, 1)
    learned = b.targets[0][b.weights[0] == 1].tolist()
    assert tok.decode(learned) == conv[-1]["content"] + "<|endoftext|>"
    positions = b.index[0][b.weights[0] == 1]
    assert positions.max() == b.tokens - 1  # the last input position predicts EOS; no padding target
    assert (b.inputs[0][positions + 1][:-1] == learned[:-1]).all()


def test_packing_keeps_each_example_to_itself(loaded):
    """The packed loss equals the unpacked loss: the segment mask hides the other examples."""
    model, tok = loaded
    data = batches.encode_all(tok, [conversation(i, "analysis")["messages"] for i in range(12)], settings())
    packed = batches.make_batch(data, [[0, 1, 2, 3], [4, 5, 6, 7, 8, 9, 10, 11]], None, 2)
    single = batches.make_batch(data, [[i] for i in range(12)], None, 12)
    losses = []
    for b, pack, direct in ((packed, True, True), (single, False, True), (single, False, False)):
        s, n = adapters.loss_sum(model, *batches.batch_arrays(b), packed=pack, direct=direct)
        losses.append((s.item(), n.item()))
    assert losses[0][1] == losses[1][1] == losses[2][1]
    assert losses[0][0] == pytest.approx(losses[1][0], rel=1e-4)
    # the model's own forward pass (full logits, then gathered) gives the same loss
    assert losses[2][0] == pytest.approx(losses[1][0], rel=1e-4)
    # without the segment mask the examples would see each other and the loss would differ
    packed.segments[packed.segments > 0] = 1
    s, _ = adapters.loss_sum(model, *batches.batch_arrays(packed), packed=True, direct=True)
    assert abs(s.item() - losses[1][0]) > 1e-3


def test_packing_is_used_only_when_it_saves_work(loaded):
    _, tok = loaded
    s, shape = settings(), batches.Shape.of(loaded[0].args)
    # one long example and three short ones in a batch of four: unpacked, four rows of the long one's
    # width; packed, two (the short ones share one)
    few = batches.encode_all(tok, [conversation(i, "analysis")["messages"] for i in range(4)], s)
    assert batches.packing_pays(few, s, shape)
    alike = batches.Encoded([list(range(100))] * 8, [50] * 8)
    assert not batches.packing_pays(alike, s, shape)
    # one long example setting the row width and sixteen short ones: sorted unpacked batches pad
    # little, while every packed row would pay the long one's width and attention
    mixed = batches.encode_all(tok, [conversation(i, "analysis")["messages"] for i in range(20) if i == 0 or i % 5], s)
    assert not batches.packing_pays(mixed, s, shape)


def test_epoch_plans_are_deterministic_and_cover_every_example(loaded):
    _, tok = loaded
    s = settings()
    data = batches.encode_all(tok, [conversation(i, "analysis")["messages"] for i in range(30)], s)
    for pack in (True, False):
        s2 = dataclasses.replace(s, pack=pack)
        p0, p0b, p1 = batches.plan_epoch(data, s2, 0), batches.plan_epoch(data, s2, 0), batches.plan_epoch(data, s2, 1)
        assert p0 == p0b and p0 != p1
        assert sorted(i for batch in p0 for row in batch for i in row) == list(range(30))


def test_a_chat_template_that_never_emits_eos_is_refused(loaded):
    _, tok = loaded
    saved = tok._tokenizer.chat_template
    tok._tokenizer.chat_template = "{% for m in messages %}{{ m['content'] }}\n{% endfor %}"
    try:
        with pytest.raises(TrainError, match="never stop generating"):
            batches.check_chat_template(tok)
    finally:
        tok._tokenizer.chat_template = saved
    batches.check_chat_template(tok)


def test_best_checkpoint_and_early_stop(tiny_model, store, data, tmp_path):
    """A learning rate far too high makes validation worse: training stops after `patience`
    evaluations without improvement and keeps the best (earliest) weights."""
    meta = train(["--stage", "analysis", "--data", str(data["analysis"]), "--base-model", str(tiny_model),
                  "--out", str(tmp_path), "--name", "hot", "--learning-rate", "3", "--iters", "40", "--warmup", "0",
                  "--steps-per-eval", "2", "--patience", "2", "-q"])
    t = meta["training"]
    assert t["stopped_early"] and t["steps"] < 40
    log = [orjson.loads(line) for line in (tmp_path / "hot" / "training_log.jsonl").read_bytes().splitlines()]
    vals = {e["step"]: e["val_loss"] for e in log if "val_loss" in e and e["step"] > 0}
    assert t["best_step"] == min(vals, key=vals.get) and meta["eval"]["val_loss_after"] == min(vals.values())


# ---------------------------------------------------------------- resume

def test_resume_after_kill_ends_where_an_uninterrupted_run_ends(tiny_model, data, tmp_path):
    common = ["train", "--stage", "analysis", "--data", str(data["analysis"]), "--base-model", str(tiny_model),
              "--iters", "16", "--batch-size", "4", "--learning-rate", "3e-3", "--warmup", "4", "--steps-per-eval", "8",
              "--steps-per-save", "2", "--dropout", "0.1", "-q"]
    whole = orjson.loads(run_command(Lora, [*common, "--out", str(tmp_path / "a"), "--name", "m"], raw=True)[1])

    out = tmp_path / "b"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT / "lib")}
    proc = subprocess.Popen([sys.executable, "-m", "secai.commands.lora", *common, "--out", str(out), "--name", "m"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    state = None
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        found = list(out.glob(".run-*/checkpoint/state.json"))
        if found and orjson.loads(found[0].read_bytes())["step"] >= 6:
            proc.send_signal(signal.SIGKILL)
            state = orjson.loads(found[0].read_bytes())
            break
        time.sleep(0.05)
    proc.wait()
    assert state is not None, f"no checkpoint before the run ended: {proc.stderr.read().decode()[-500:]}"
    assert not (out / "m").exists(), "a killed run leaves no model"

    code, text, err = run_command(Lora, [*common, "--out", str(out), "--name", "m", "--resume"], raw=True)
    assert code == 0, err
    resumed = orjson.loads(text)
    assert resumed["training"]["resumed"] is True
    assert resumed["training"]["steps"] == whole["training"]["steps"] == 16
    import mlx.core as mx

    a = mx.load(str(tmp_path / "a" / "m" / "adapters" / "adapters.safetensors"))
    b = mx.load(str(out / "m" / "adapters" / "adapters.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        assert np.allclose(np.array(a[k]), np.array(b[k]), atol=1e-4), k
    assert resumed["eval"]["val_loss_after"] == pytest.approx(whole["eval"]["val_loss_after"], abs=1e-5)
    logs = [(tmp_path / d / "m" / "training_log.jsonl").read_bytes().splitlines() for d in ("a", "b")]
    assert [orjson.loads(x)["step"] for x in logs[0]] == [orjson.loads(x)["step"] for x in logs[1]]


# ---------------------------------------------------------------- the process

# run secai-lora as its bin script does (python -m), and say at exit what the process imported
AS_MAIN = ("import atexit, runpy, sys\n"
           "atexit.register(lambda: print('IMPORTED', sys.modules.get('torch', 'never'), 'transformers' in sys.modules, "
           "file=sys.stderr))\n"
           "sys.argv = ['secai-lora', *sys.argv[1:]]\n"
           "runpy.run_module('secai.commands.lora', run_name='__main__', alter_sys=True)\n")


def test_a_training_process_never_imports_torch(tiny_model, data, tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT / "lib")}
    proc = subprocess.run([sys.executable, "-c", AS_MAIN, "train", "--stage", "analysis", "--data", str(data["analysis"]),
                           "--base-model", str(tiny_model), "--iters", "2", "--batch-size", "2", "--out", str(tmp_path),
                           "--name", "m", "-q"], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "IMPORTED None True" in proc.stderr  # transformers loaded the tokenizer; torch was marked absent
    meta = orjson.loads((tmp_path / "m" / "metadata.json").read_bytes())
    assert schema_error("model/1", meta) is None and meta["training"]["steps"] == 2


def test_torch_is_left_alone_where_it_is_already_imported():
    code = ("import sys, torch\nfrom secai.training.run import without_torch\nwithout_torch()\n"
            "assert sys.modules['torch'] is torch\nprint('kept')")
    proc = subprocess.run([sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": str(ROOT / "lib")},
                          capture_output=True, text=True, timeout=120)
    assert proc.stdout.strip() == "kept", proc.stderr[-2000:]


# ---------------------------------------------------------------- eval

def test_eval_reports_base_vs_adapter_with_a_plot_and_forgetting(stage2, stage1):
    d = Path(where(stage2))
    code, out, err = run_command(Lora, ["eval", "--adapter", str(d), "--samples", "4", "--max-tokens", "24"], raw=True)
    assert code == 0, err
    report = orjson.loads((d / "eval.json").read_bytes())
    assert report["split"] == "valid" and report["examples"] == 8 and report["stage"] == "codefix"
    assert report["loss"]["adapter"] < report["loss"]["base"]
    assert report["perplexity"]["adapter"] == pytest.approx(np.exp(report["loss"]["adapter"]))
    g = report["generation"]
    assert g["prompts"] == 4 and 0 <= g["base"] <= 1 and 0 <= g["adapter"] <= 1
    f = report["forgetting"]
    assert f["stage1_model"] == "s1" and f["examples"] == 10 and f["increase"] == pytest.approx(f["after"] - f["before"])
    png = (d / "loss.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 5000
    readme = (d / "README.md").read_text()
    assert "forgetting check" in readme and f"{f['after']:.4f}" in readme


def test_answer_scoring():
    good = '{"summary": "x"}'
    assert not evaluate.answer_ok("analysis", good)  # missing sections
    assert evaluate.answer_ok("codefix", "```python\nx = 1\n```\nok")
    assert not evaluate.answer_ok("codefix", "```python\ndef (:\n```")
    assert not evaluate.answer_ok("codefix", "no code here")


# ---------------------------------------------------------------- errors

def test_bad_dataset_line_names_file_and_line(tiny_model, tmp_path):
    d = write_dataset(tmp_path / "d", "analysis")
    with open(d / "train.jsonl", "ab") as fh:
        fh.write(b'{"messages": [{"role": "user", "content": "no answer"}]}\n')
    code, out, err = run_command(Lora, ["train", "--stage", "analysis", "--data", str(d), "--base-model", str(tiny_model),
                                        "--out", str(tmp_path), *FAST], raw=True)
    assert code == 1 and out == ""
    assert err.splitlines()[-1].startswith(f"secai-lora: error: {d / 'train.jsonl'}:41: ")
    assert not [p for p in tmp_path.iterdir() if p.name not in ("d",)]


def test_missing_base_model_is_refused_without_download(data, tmp_path):
    code, _, err = run_command(Lora, ["train", "--stage", "analysis", "--data", str(data["analysis"]),
                                      "--base-model", str(tmp_path / "nope"), "--out", str(tmp_path)], raw=True)
    assert code == 1 and "not a model folder" in err and err.count("\n") == 1


def test_existing_name_is_not_overwritten(tiny_model, stage1, data):
    code, _, err = run_command(Lora, ["train", "--stage", "analysis", "--data", str(data["analysis"]),
                                      "--base-model", str(tiny_model), "--name", "s1", *FAST], raw=True)
    assert code == 1 and "exists" in err


def test_settings_come_from_config_then_env_then_flags(monkeypatch):
    monkeypatch.setenv("SECAI_LORA_RANK", "4")
    lora.config.load.cache_clear()
    try:
        assert lora.settings().rank == 4
        assert lora.settings({"rank": 16}).rank == 16
        with pytest.raises(TrainError):
            lora.settings({"dropout": 1.5})
    finally:
        monkeypatch.delenv("SECAI_LORA_RANK")
        lora.config.load.cache_clear()


# ---------------------------------------------------------------- data parallel

def test_two_processes_under_mlx_launch_match_one(tiny_model, data, tmp_path):
    launcher = Path(sys.executable).parent / "mlx.launch"
    if not launcher.exists():
        pytest.skip("mlx.launch is not installed")
    # SGD: an update linear in the gradient, so float summation order stays at rounding level (Adam
    # divides by the gradient's own magnitude and blows rounding up for near-zero gradients). Three
    # steps: the random model's training is chaotic beyond that (one process with OpenBLAS against
    # one with the reference BLAS: adapters 2e-7 apart after 1 step, 1.5e-6 after 3, 3e-4 after 6)
    common = ["train", "--stage", "analysis", "--data", str(data["analysis"]), "--base-model", str(tiny_model),
              "--iters", "3", "--batch-size", "4", "--optimizer", "sgd", "--learning-rate", "0.1", "--warmup", "0",
              "--steps-per-eval", "3", "--name", "m", "-q"]
    one = orjson.loads(run_command(Lora, [*common, "--out", str(tmp_path / "one")], raw=True)[1])
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT / "lib")}
    proc = subprocess.run([str(launcher), "-n", "2", "--backend", "ring", "--python", sys.executable,
                           "-m", "secai.commands.lora", *common, "--out", str(tmp_path / "two")],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    two = orjson.loads((tmp_path / "two" / "m" / "metadata.json").read_bytes())
    assert two["training"]["world_size"] == 2 and one["training"]["world_size"] == 1
    assert two["training"]["train_tokens"] == one["training"]["train_tokens"]
    assert two["eval"]["val_loss_after"] == pytest.approx(one["eval"]["val_loss_after"], abs=1e-5)
    assert one["eval"]["val_loss_after"] < one["eval"]["val_loss_before"]
    import mlx.core as mx

    a = mx.load(str(tmp_path / "one" / "m" / "adapters" / "adapters.safetensors"))
    b = mx.load(str(tmp_path / "two" / "m" / "adapters" / "adapters.safetensors"))
    for k in a:
        assert np.allclose(np.array(a[k]), np.array(b[k]), atol=1e-5), k


# ---------------------------------------------------------------- validate, list, fuse

def copy_model(src: str, dst: Path) -> Path:
    import shutil

    shutil.copytree(src, dst)
    return dst


def validate(d: Path, *extra) -> tuple[int, str]:
    code, _, err = run_command(Lora, ["validate", str(d), *extra], raw=True)
    return code, err


def test_validate_accepts_a_good_model(stage1):
    code, err = validate(Path(where(stage1)))
    assert code == 0, err


def test_validate_names_each_problem(stage1, tmp_path):
    import mlx.core as mx

    cases = {}
    d = copy_model(where(stage1), tmp_path / "nocard" / "s1")
    (d / "README.md").unlink()
    cases[d] = "README.md is missing"
    d = copy_model(where(stage1), tmp_path / "edited" / "s1")
    w = mx.load(str(d / "adapters" / "adapters.safetensors"))
    mx.save_safetensors(str(d / "adapters" / "adapters.safetensors"), {k: v * 2 for k, v in w.items()})
    cases[d] = "adapters/adapters.safetensors: SHA-256 differs from metadata.json"
    d = copy_model(where(stage1), tmp_path / "incomplete" / "s1")
    meta = orjson.loads((d / "metadata.json").read_bytes())
    del meta["settings"]["rank"]
    (d / "metadata.json").write_bytes(orjson.dumps(meta))
    cases[d] = "metadata.json is not a complete model/1: $.settings"
    d = copy_model(where(stage1), tmp_path / "shape" / "s1")
    w = mx.load(str(d / "adapters" / "adapters.safetensors"))
    mx.save_safetensors(str(d / "adapters" / "adapters.safetensors"), {k: v[..., :4] if k.endswith("lora_a") else v[:4]
                                                                        for k, v in w.items()})
    meta = orjson.loads((d / "metadata.json").read_bytes())
    meta["files"]["adapters/adapters.safetensors"] = meta["adapter_sha256"] = lora.sha256_file(d / "adapters" / "adapters.safetensors")
    (d / "metadata.json").write_bytes(orjson.dumps(meta))
    cases[d] = "does not load and generate: adapter"
    d = copy_model(where(stage1), tmp_path / "nobase" / "s1")
    meta = orjson.loads((d / "metadata.json").read_bytes())
    meta["base_model"]["path"] = str(tmp_path / "gone")
    (d / "metadata.json").write_bytes(orjson.dumps(meta))
    cases[d] = "not found: shapes and generation not checked"
    for d, expected in cases.items():
        code, err = validate(d)
        assert code == 1, (d, err)
        assert any(line.startswith(f"{d}: ") and expected in line for line in err.splitlines()), (expected, err)


def test_list_shows_the_store(stage1, stage2):
    code, out, err = run_command(Lora, ["list", "--json"], raw=True)
    assert code == 0, err
    rows = [orjson.loads(line) for line in out.splitlines()]
    byname = {r["name"]: r for r in rows}
    assert byname["s1"]["stage"] == "analysis" and byname["s2"]["stage"] == "codefix" and byname["s2"]["from"] == "s1"
    assert byname["s1"]["val_loss_after"] == stage1["eval"]["val_loss_after"]
    code, out, _ = run_command(Lora, ["list"], raw=True)
    assert code == 0 and out.splitlines()[0].startswith("name") and any(line.startswith("s2 ") for line in out.splitlines())


def test_fuse_folds_the_adapter_into_a_model_mlx_lm_loads(tiny_model, stage1, tmp_path):
    import mlx.core as mx
    from mlx_lm import load

    code, _, err = run_command(Lora, ["fuse", where(stage1), "-o", str(tmp_path / "fused")], raw=True)
    assert code == 0, err
    fused, tok = load(str(tmp_path / "fused"))
    adapted, _ = load(str(tiny_model), adapter_path=str(Path(where(stage1)) / "adapters"))
    x = mx.array([tok.encode("Finding 7: weak hash. Which CWE?")])
    assert np.allclose(np.array(fused(x)), np.array(adapted(x)), atol=1e-4)


# ---------------------------------------------------------------- hyperparameters honoured

def test_target_modules_warmup_and_schedule_are_honoured(tiny_model, data, tmp_path):
    meta = train(["--stage", "analysis", "--data", str(data["analysis"]), "--base-model", str(tiny_model),
                  "--out", str(tmp_path), "--name", "m", "--iters", "8", "--warmup", "4", "--learning-rate", "1e-3",
                  "--lr-schedule", "linear", "--min-lr-ratio", "0.5", "--steps-per-report", "1", "--rank", "4",
                  "--target-modules", "self_attn.q_proj", "self_attn.v_proj", "--num-layers", "1", "-q"])
    import mlx.core as mx

    weights = mx.load(str(tmp_path / "m" / "adapters" / "adapters.safetensors"))
    assert {k.rsplit(".", 1)[0] for k in weights} == {"model.layers.1.self_attn.q_proj", "model.layers.1.self_attn.v_proj"}
    assert all(w.shape[-1] == 4 or w.shape[0] == 4 for w in weights.values())
    assert meta["lora"] == {"num_layers": 1, "keys": ["self_attn.q_proj", "self_attn.v_proj"]}
    log = [orjson.loads(line) for line in (tmp_path / "m" / "training_log.jsonl").read_bytes().splitlines()]
    lrs = [e["learning_rate"] for e in log if "learning_rate" in e]
    # the rate logged after step k is the one step k used: warmup 1/4 .. 4/4, then linear down to half
    assert lrs[:3] == pytest.approx([2.5e-4, 5e-4, 7.5e-4], rel=1e-3)
    # step 8 is the fourth of the four decay steps 0..3: 1e-3 - 3/4 of the way down to 5e-4
    assert lrs[3] == pytest.approx(1e-3, rel=1e-3) and lrs[-1] == pytest.approx(1e-3 - 0.75 * 5e-4, rel=1e-3)
    assert all(a >= b for a, b in zip(lrs[3:], lrs[4:]))


def test_gradient_checkpointing_computes_the_same_update(tiny_model, data, tmp_path):
    args = ["--stage", "analysis", "--data", str(data["analysis"]), "--base-model", str(tiny_model), "--out", str(tmp_path),
            "--iters", "2", "--optimizer", "sgd", "--learning-rate", "0.1", "--warmup", "0", "-q"]
    plain = train([*args, "--name", "plain"])
    ckpt = train([*args, "--name", "ckpt", "--grad-checkpoint"])
    assert ckpt["settings"]["grad_checkpoint"] and not plain["settings"]["grad_checkpoint"]
    assert ckpt["eval"]["val_loss_after"] == pytest.approx(plain["eval"]["val_loss_after"], abs=1e-5)
