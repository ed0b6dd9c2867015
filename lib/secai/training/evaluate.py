"""Evaluation of a fine-tuned model (`secai-lora eval`): held-out loss and perplexity, and the share
of good answers, base model vs adapter; the forgetting check after stage 2; the loss plot; the
eval/1 report written beside the adapter with its model card."""

from __future__ import annotations

import time
from pathlib import Path

import orjson

from secai.files import AtomicOutput, write_atomic
from secai.training import store as models
from secai.training.adapters import load_adapter_weights
from secai.training.batches import encode_all
from secai.training.card import card, num, perplexity, surroundings
from secai.training.engine import evaluate
from secai.training.run import apply_adapter, base_dir, load_base, read_metadata, read_split, resolve_model_dir
from secai.training.settings import Settings, TrainError, recorded

HELD_OUT = ("test", "valid")  # eval uses the first of these a dataset has


def held_out(data: Path) -> str:
    for split in HELD_OUT:
        if read_split(data, split):
            return split
    raise TrainError(f"{data}: no held-out examples (no test.jsonl or valid.jsonl)")


def answer_ok(stage: str, text: str) -> bool:
    """Stage analysis: the reply is the JSON analysis with every required section. Stage codefix:
    its first fenced code block parses in the language it is tagged with."""
    if stage == "analysis":
        from secai.analysis.mlx import parse_reply

        return parse_reply(text)[0] is not None
    import re

    from secai.analysis.languages import parses

    m = re.search(r"```([\w+#.-]*)[ \t]*\n(.*?)```", text, re.S)
    if not m or not m.group(2).strip():
        return False
    try:
        return parses(m.group(2), m.group(1).lower() or "text")
    except (KeyError, ValueError):
        return False


def evaluate_model(s: Settings, say, *, samples: int, max_tokens: int, adapter: str | Path | None = None,
                   base_model: str | Path | None = None, data: str | Path | None = None,
                   stage: str | None = None) -> dict:
    """The eval/1 report of a fine-tuned model (or, without `adapter`, of the base model alone) on
    its dataset's held-out split: loss, perplexity and the share of good answers, base vs adapter."""
    from mlx_lm import batch_generate

    adapter_dir = resolve_model_dir(adapter) if adapter else None
    meta = read_metadata(adapter_dir) if adapter_dir else None
    base_path = models.check_model_dir(base_model or (meta and base_dir(adapter_dir, meta)) or models.default_base()[0])
    if meta and models.content_hash(base_path) != meta["base_model"]["content_hash"]:
        raise TrainError(f"{base_path} is not the base model {adapter_dir} was trained on ({meta['base_model']['name']})")
    if not data and meta:
        data = models.local(meta["dataset"]["path"], near=adapter_dir)
        if data is None:
            raise TrainError(f"{adapter_dir}: its dataset {meta['dataset']['path']} is not here; give --data DIR")
    if not data:
        raise TrainError("give --data DIR (or --adapter, whose dataset is used)")
    data = Path(data)
    stage = stage or (meta and meta["stage"]) or "analysis"
    if meta:  # the same tokenisation and masking as training
        s = recorded(meta["settings"])
    split = held_out(data)
    kinds: list = []
    conversations = read_split(data, split, kinds)
    model, tokenizer, _ = load_base(base_path)
    encoded = encode_all(tokenizer, conversations, s)
    prompts = conversations[:samples]

    def generate() -> float:
        token_prompts = [tokenizer.apply_chat_template(c[:-1], add_generation_prompt=True, return_dict=False) for c in prompts]
        if not token_prompts:
            return float("nan")
        texts = batch_generate(model, tokenizer, token_prompts, max_tokens=max_tokens).texts
        # each answer by its example's own kind (a replayed stage-1 example in a stage-2 set is an analysis)
        return sum(answer_ok(kind or stage, t) for kind, t in zip(kinds, texts)) / len(texts)

    say(f"{split}: {len(encoded)} examples; base model {base_path.name}")
    # published beside the adapter: paths as store.portable records them, never absolute
    report = {"schema": "eval/1", "stage": stage, "data": models.portable(data, near=adapter_dir), "split": split,
              "examples": len(encoded), "base_model": models.portable(base_path, near=adapter_dir),
              "adapter": models.portable(adapter_dir) if adapter_dir else None,
              "loss": {}, "perplexity": {}, "generation": {"prompts": len(prompts), "max_tokens": max_tokens}}
    t0 = time.perf_counter()
    report["loss"]["base"], report["tokens"] = evaluate(model, encoded, s)
    report["generation"]["base"] = generate()
    if adapter_dir:
        apply_adapter(model, adapter_dir, s)
        report["loss"]["adapter"], _ = evaluate(model, encoded, s)
        report["generation"]["adapter"] = generate()
        report["forgetting"] = forgetting(model, tokenizer, adapter_dir, meta, s, say)
    else:
        report["loss"]["adapter"], report["generation"]["adapter"] = None, None
    report["perplexity"] = {k: perplexity(v) for k, v in report["loss"].items()}
    report["seconds"] = round(time.perf_counter() - t0, 3)
    return report


def forgetting(model, tokenizer, model_dir: Path, meta: dict, s: Settings, say) -> dict | None:
    """After stage 2: the stage-1 held-out loss with the stage-1 adapter (before) and with this one
    (after). model carries this adapter on entry and on return."""
    start = meta.get("from_adapter")
    if not start:
        return None
    stage1_dir, stage1_data = models.local(start["path"], near=model_dir), models.local(start["dataset"], near=model_dir)
    if (stage1_dir is None or stage1_data is None or not (stage1_dir / "adapters" / "adapters.safetensors").is_file()
            or not (stage1_data / "train.jsonl").is_file()):
        say(f"forgetting check skipped: {start['path']} or its dataset {start['dataset']} is not here")
        return None
    import mlx.core as mx

    from secai.training.adapters import adapter_weights

    after_weights = {k: mx.array(v) for k, v in adapter_weights(model).items()}
    encoded = encode_all(tokenizer, read_split(stage1_data, held_out(stage1_data)), s)
    after, _ = evaluate(model, encoded, s)
    load_adapter_weights(model, stage1_dir / "adapters" / "adapters.safetensors", f"stage-1 adapter {stage1_dir}")
    before, _ = evaluate(model, encoded, s)
    model.load_weights(list(after_weights.items()), strict=False)
    return {"stage1_model": start["name"], "data": models.portable(stage1_data, near=model_dir), "examples": len(encoded), "before": before,
            "after": after, "increase": after - before}


def plot(log_path: Path, out: Path, title: str) -> None:
    """PNG of the training and validation loss curves from a training_log.jsonl."""
    from matplotlib.figure import Figure  # the object API: no pyplot state, and a tenth of a second less to import

    entries = [orjson.loads(line) for line in log_path.read_bytes().splitlines() if line.strip()]
    train = [(e["step"], e["train_loss"]) for e in entries if "train_loss" in e]
    val = [(e["step"], e["val_loss"]) for e in entries if "val_loss" in e]
    fig = Figure(figsize=(7, 4), dpi=100)
    ax = fig.subplots()
    if train:
        ax.plot(*zip(*train), label="train loss", color="#1f77b4")
    if val:
        ax.plot(*zip(*val), label="validation loss", color="#d62728", marker="o")
    ax.set_xlabel("step")
    ax.set_ylabel("loss (final assistant turn, per token)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    with AtomicOutput(out) as fh:
        fig.savefig(fh, format="png")


def save_eval(report: dict, output: str | Path | None = None, plot_png: str | Path | None = None,
              adapter: str | Path | None = None) -> bytes:
    """Write an eval/1 report to `output` and, for the adapter it evaluated (as evaluate_model was
    given it), to ADAPTER/eval.json with its loss plot (default ADAPTER/loss.png) and a model card that
    shows the numbers. Returns the report's JSON, which the caller prints when it was written nowhere
    (no output, no adapter)."""
    text = orjson.dumps(report, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"
    d = resolve_model_dir(adapter) if adapter else None
    targets = [Path(output)] if output else []
    if d:
        targets.append(d / "eval.json")
    for path in targets:
        write_atomic(path, text)
    png = Path(plot_png) if plot_png else (d / "loss.png" if d else None)
    if png and d and (d / "training_log.jsonl").is_file():
        plot(d / "training_log.jsonl", png, f"{d.name}: loss")
    if d:
        meta = read_metadata(d)
        base = models.local(meta["base_model"]["path"], near=d)
        write_atomic(d / "README.md", card(meta, report, surroundings(d, base)))
    return b"" if targets else text


def eval_summary(report: dict) -> str:
    """One line: held-out loss and good answers, base vs adapter (and forgetting, for stage 2)."""
    g, loss = report["generation"], report["loss"]
    return (f"{report['split']} loss base {num(loss['base'])} adapter {num(loss['adapter'])}; "
            f"good answers base {num(g['base'], 3)} adapter {num(g['adapter'], 3)} of {g['prompts']}"
            + (f"; stage-1 loss {num(report['forgetting']['before'])} -> {num(report['forgetting']['after'])}"
               if report.get("forgetting") else ""))
