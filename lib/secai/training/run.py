"""secai-lora: LoRA fine-tuning with MLX, stage by stage, evaluated on held-out data.

    secai-lora train --stage analysis --data build/datasets/analysis --name secai-analysis-demo
    secai-lora train --stage codefix --data build/datasets/codefix --from-adapter MODELS/fine-tuned/secai-analysis-demo
    secai-lora eval --adapter MODELS/fine-tuned/secai-codefix-demo --data build/datasets/codefix
    secai-lora validate MODELS/fine-tuned/secai-codefix-demo
    secai-lora list

`train` writes `<models_dir>/fine-tuned/<name>/` in one rename: `adapters/` (mlx-lm's adapter
format: `mlx_lm generate --model BASE --adapter-path DIR/adapters` loads it), `metadata.json`
(model/1, schemas/model.schema.json), `training_log.jsonl`, `README.md` (a Hugging Face model card
with the measured numbers) and, with `--fuse`, `fused/` (a whole model). The base model folder is
only read. While it runs, its checkpoints live in `<models_dir>/fine-tuned/.run-<id>/`, where id
names the run (base model, data, settings, stage and starting adapter): `--resume` continues that
run from its last checkpoint. The training engine is secai.training.engine.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import platform
import shutil
import sys
import time
from dataclasses import fields
from datetime import datetime, timezone
from pathlib import Path

import orjson
import yaml

from secai import __version__
from secai import config
from secai.training import store as models
from secai.cli import Command, InputError, common_flags, entry, read_jsonl, schema_error
from secai.files import fresh_dir, front_matter, sha256_file, swap_in
from secai.training.adapters import add_lora, load_adapter_weights
from secai.training.batches import check_chat_template, encode_all
from secai.training.engine import Interrupted, Run, environment, evaluate
from secai.training.settings import Settings, TrainError

STAGES = ("analysis", "codefix", "combined")  # combined: one stage on both kinds of example (STAGES=1)
KIND = "model/1"
HELD_OUT = ("test", "valid")  # eval uses the first of these a dataset has


# ---------------------------------------------------------------- settings

def settings(overrides: dict | None = None) -> Settings:
    """config/secai.yaml's `lora:` section (with SECAI_LORA_* overrides), then overrides."""
    known = {f.name for f in fields(Settings)}
    values = {k: v for k, v in (config.load().get("lora") or {}).items() if k in known}
    values.update({k: v for k, v in (overrides or {}).items() if v is not None})
    s = Settings(**values)
    s.check()
    return s


def default_name(stage: str) -> str:
    return f"secai-{stage}-{datetime.now(timezone.utc).strftime('%Y%m%d-%H%M%S')}"


# ---------------------------------------------------------------- data

def dataset_info(data: Path) -> dict:
    """What identifies a dataset directory: its manifest (secai-split's dataset/1) or its files."""
    manifest = data / "manifest.json"
    files = sorted(p for p in data.glob("*.jsonl") if p.is_file())
    if not (data / "train.jsonl").is_file():
        raise TrainError(f"{data}: no train.jsonl (make one with secai-split)")
    info = {"path": str(data), "name": data.name, "manifest_sha256": None, "stages": {}, "replay": None,
            "files": {p.name: sha256_file(p) for p in files}}
    if manifest.is_file():
        m = orjson.loads(manifest.read_bytes())
        info.update(manifest_sha256=sha256_file(manifest), name=m.get("name", data.name), stages=m.get("stages", {}),
                    replay=m.get("replay"), license=m.get("license"))
    return info


def read_split(data: Path, split: str, stages: list | None = None) -> list[list[dict]]:
    """The conversations of DIR/<split>.jsonl (absent: none). Each line needs `messages`: a list of
    {role, content} ending with the assistant turn the model learns. stages, when given, gets each
    example's `stage` (None when it has none)."""
    path = data / f"{split}.jsonl"
    if not path.is_file():
        return []
    out = []
    for lineno, rec in read_jsonl(str(path), None):
        msgs = rec.get("messages")
        if (not isinstance(msgs, list) or len(msgs) < 2 or not all(
                isinstance(m, dict) and isinstance(m.get("content"), str) and m.get("role") in ("system", "user", "assistant")
                for m in msgs)):
            raise InputError(str(path), lineno, "expected {\"messages\": [{role, content}, ...]} with system/user/assistant turns")
        if msgs[-1]["role"] != "assistant":
            raise InputError(str(path), lineno, "the last message must be the assistant's (what the model learns)")
        out.append([{"role": m["role"], "content": m["content"]} for m in msgs])
        if stages is not None:
            stages.append(rec.get("stage") if rec.get("stage") in STAGES else None)
    return out


# ---------------------------------------------------------------- models and adapters

def load_base(path: Path):
    """(model, tokenizer, where the chat template came from) for a local base model folder."""
    from mlx_lm import load

    from secai.training.tinymodel import CHAT_TEMPLATE

    model, tokenizer = load(str(models.check_model_dir(path)))
    source = "tokenizer"
    if not getattr(tokenizer, "chat_template", None):
        # a base (not instruct) model may have none: OLMo-2-Instruct's, in memory only (the base
        # folder is never written); it is saved with the adapter
        tokenizer._tokenizer.chat_template = CHAT_TEMPLATE
        source = "secai (OLMo-2-Instruct template)"
    return model, tokenizer, source


def resolve_model_dir(path: str | Path) -> Path:
    """A fine-tuned model directory from itself, its adapters/ folder or its metadata.json."""
    p = Path(path).expanduser()
    if p.is_file() and p.name.endswith(".json"):
        meta = orjson.loads(p.read_bytes())
        p = Path(meta.get("path", p.parent))
    if (p / "adapter_config.json").is_file() and (p.parent / "metadata.json").is_file():
        p = p.parent
    if not (p / "metadata.json").is_file() or not (p / "adapters" / "adapter_config.json").is_file():
        raise TrainError(f"{path}: not a fine-tuned model directory (needs metadata.json and adapters/)")
    return p


def read_metadata(model_dir: Path) -> dict:
    return orjson.loads((model_dir / "metadata.json").read_bytes())


def apply_adapter(model, model_dir: Path, s: Settings | None = None) -> dict:
    """Add the LoRA layers a fine-tuned model was trained with and load its weights (shape-checked)."""
    meta = read_metadata(model_dir)
    s = s or Settings(**{k: v for k, v in meta["settings"].items() if k in {f.name for f in fields(Settings)}})
    cfg = add_lora(model, s)
    load_adapter_weights(model, model_dir / "adapters" / "adapters.safetensors", f"adapter {model_dir}")
    return cfg


# ---------------------------------------------------------------- the model card

def _num(x, digits=4) -> str:
    return "—" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def card(meta: dict, report: dict | None) -> str:
    """README.md of a fine-tuned model: Hugging Face YAML metadata, then what it is and its numbers."""
    base, data, t, ev = meta["base_model"], meta["dataset"], meta["training"], meta["eval"]
    header = {"library_name": "mlx", "license": meta["license"],
              "tags": sorted({"mlx", "lora", "secai", "security", meta["stage"]} | ({"test-model"} if base["test_model"] else set())),
              "pipeline_tag": "text-generation"}
    if base.get("hf_id"):
        header["base_model"] = base["hf_id"]
    if data.get("hub_id"):
        header["datasets"] = [data["hub_id"]]
    s = meta["settings"]
    lines = ["---", yaml.safe_dump(header, sort_keys=True).rstrip(), "---", "", f"# {meta['name']}", ""]
    if base["test_model"]:
        lines += ["> **Test device, not a useful model.** The base is secai's tiny random-weight OLMo-2 model: this",
                  "> adapter proves the fine-tuning machinery end to end; what it generates means nothing.", ""]
    stage_text = {"analysis": "explain a security finding (impact, remediation, prevention, risk) as JSON",
                  "codefix": "fix the code a security finding points at",
                  "combined": "explain security findings as JSON and fix the code they point at"}[meta["stage"]]
    start = f", continuing from the stage-1 adapter `{meta['from_adapter']['name']}`" if meta.get("from_adapter") else ""
    lines += [f"A LoRA adapter for `{base['name']}` (content hash `{base['content_hash'][:16]}`), stage `{meta['stage']}`: "
              f"taught to {stage_text}{start}. Trained by secai's `secai-lora` "
              f"{meta['secai_version']} with MLX {meta['environment']['mlx']} / mlx-lm {meta['environment']['mlx_lm']} on "
              f"`{meta['environment']['device']}`.", "",
              "## Evaluation (held-out data, never trained on)", "",
              "| measure | before | after |", "|---|---|---|",
              f"| validation loss (final assistant turn) | {_num(ev['val_loss_before'])} | {_num(ev['val_loss_after'])} |",
              f"| validation perplexity | {_num(_ppl(ev['val_loss_before']), 2)} | {_num(_ppl(ev['val_loss_after']), 2)} |"]
    if report:
        lines += [f"| held-out loss ({report['split']}, {report['examples']} examples) | {_num(report['loss']['base'])} | {_num(report['loss']['adapter'])} |",
                  f"| held-out perplexity | {_num(report['perplexity']['base'], 2)} | {_num(report['perplexity']['adapter'], 2)} |"]
        g = report["generation"]
        label = {"analysis": "answers with every required section", "codefix": "answers whose code block parses",
                 "combined": "answers passing their kind's check"}[meta["stage"]]
        lines.append(f"| {label} ({g['prompts']} prompts) | {_num(g['base'], 3)} | {_num(g['adapter'], 3)} |")
        if report.get("forgetting"):
            f = report["forgetting"]
            lines.append(f"| stage-1 held-out loss (forgetting check) | {_num(f['before'])} | {_num(f['after'])} |")
    lines += ["", f"Best validation loss at step {t['best_step']} of {t['steps']} ({t['epochs']} epochs"
              + ("; stopped early" if t["stopped_early"] else "") + "); that checkpoint is the adapter.", "",
              "## Training", "",
              f"- Data: `{data['name']}` ({', '.join(f'{k} {v}' for k, v in data['examples'].items())} examples; "
              f"manifest SHA-256 `{(data['manifest_sha256'] or 'none')[:16]}`)",
              f"- LoRA: rank {s['rank']}, scale {s['scale']} (alpha {s['alpha']}), dropout {s['dropout']}, "
              f"{meta['lora']['num_layers']} blocks, modules {', '.join(meta['lora']['keys'])}",
              f"- Optimizer {s['optimizer']}, learning rate {s['learning_rate']} ({s['lr_schedule']}, warmup {s['warmup']}, "
              f"weight decay {s['weight_decay']}), batch {s['batch_size']} rows, max length {s['max_seq_length']}, seed {s['seed']}",
              f"- Loss on the final assistant turn only: {s['mask_prompt']}; packing: {t['packed']} "
              f"(padding {t['padding_fraction']:.1%}); gradient checkpointing: {s['grad_checkpoint']}",
              f"- {t['train_tokens']:,} tokens in {t['train_seconds']:.1f} s of steps ({t['tokens_per_second']:.0f} tokens/s, "
              f"{t['world_size']} process{'es' if t['world_size'] > 1 else ''}), peak memory {t['peak_memory_bytes'] / 2**20:.0f} MiB",
              "", "## Use", "", "```bash",
              f"mlx_lm generate --model {base['hf_id'] or base['path']} --adapter-path adapters --prompt \"...\"",
              "```", ""]
    return "\n".join(lines)


def _ppl(loss):
    return None if loss is None or math.isnan(loss) else math.exp(min(loss, 50))


# ---------------------------------------------------------------- train

def run_id(base_hash: str, data: dict, s: Settings, stage: str, from_hash: str | None) -> str:
    key = orjson.dumps({"base": base_hash, "data": data["files"], "settings": s.to_dict(), "stage": stage,
                        "from": from_hash, "engine": 1}, option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(key).hexdigest()[:16]


def train(args, s: Settings, say) -> dict:
    import mlx.core as mx

    t0 = time.perf_counter()
    base_path = Path(args.base_model).expanduser() if args.base_model else models.default_base()[0]
    models.check_model_dir(base_path)
    base_id = models.identity(base_path)
    test_model = models.is_test_model(base_path)
    if test_model and mx.distributed.init().rank() == 0:
        models.test_model_notice("secai-lora", base_path)
    data_dir = Path(args.data)
    data = dataset_info(data_dir)
    if args.stage != "combined" and data["stages"] and not data["stages"].get(args.stage):
        raise TrainError(f"{data_dir}: the dataset has no {args.stage} examples (it has {', '.join(data['stages'])})")
    from_dir = resolve_model_dir(args.from_adapter) if args.from_adapter else None
    from_meta = read_metadata(from_dir) if from_dir else None
    if from_meta and from_meta["base_model"]["content_hash"] != base_id["content_hash"]:
        raise TrainError(f"{from_dir} was trained on base {from_meta['base_model']['name']} "
                         f"({from_meta['base_model']['content_hash'][:16]}), not {base_path} ({base_id['content_hash'][:16]})")
    name = args.name or default_name(args.stage)
    out = models.fine_tuned_dir() if args.out is None else Path(args.out)
    out = out.expanduser() / name
    if out.exists() and not args.overwrite:
        raise TrainError(f"{out} exists (choose another --name, or --overwrite)")

    train_conv, valid_conv = read_split(data_dir, "train"), read_split(data_dir, "valid")
    model, tokenizer, template_source = load_base(base_path)
    check_chat_template(tokenizer)
    train_data, valid_data = encode_all(tokenizer, train_conv, s), encode_all(tokenizer, valid_conv, s)
    if not len(train_data):
        raise TrainError(f"{data_dir}/train.jsonl: no example with a trainable token")
    lora_cfg = add_lora(model, s)
    if from_dir:
        load_adapter_weights(model, from_dir / "adapters" / "adapters.safetensors", f"stage-1 adapter {from_dir}")
    rid = run_id(base_id["content_hash"], data, s, args.stage, from_meta and from_meta["adapter_sha256"])
    work = out.parent / f".run-{rid}"
    resumed = args.resume and (work / Run.CHECKPOINT / "state.json").is_file()
    if not args.resume and work.exists() and mx.distributed.init().rank() == 0:
        shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    run = Run(model, train_data, valid_data, s, work, log=say)
    say(f"{name}: stage {args.stage}, {len(train_data)} train / {len(valid_data)} valid examples, "
        f"{run.steps} steps, packing {'on' if run.packed else 'off'}, {run.size} process(es)"
        + (", resuming" if resumed else ""))
    try:
        result = run.run(resume=args.resume)
    except Interrupted as exc:
        raise TrainError(f"{exc}; run the same command with --resume to continue") from None
    if run.rank != 0:
        return {}

    from mlx.utils import tree_flatten

    tmp = fresh_dir(out, "tmp")
    try:
        adapters = tmp / "adapters"
        adapters.mkdir()
        weights = dict(tree_flatten(model.trainable_parameters()))
        mx.save_safetensors(str(adapters / "adapters.safetensors"), weights)
        (adapters / "adapter_config.json").write_text(json.dumps({**lora_cfg, "model": str(base_path)}, indent=2) + "\n")
        if template_source != "tokenizer":
            (adapters / "chat_template.jinja").write_text(tokenizer.chat_template)
        shutil.copyfile(work / "training_log.jsonl", tmp / "training_log.jsonl")
        t = time.perf_counter() - t0
        meta = {
            "schema": KIND, "name": name, "stage": args.stage, "path": str(out),
            "created": datetime.now(timezone.utc).replace(microsecond=0).isoformat(), "secai_version": __version__,
            "license": config.get("lora", "license"), "run_id": rid,
            "base_model": {"path": str(base_path), "name": base_id["name"], "content_hash": base_id["content_hash"],
                           "hf_id": models.hf_base_id(base_path), "test_model": test_model},
            "from_adapter": ({"path": str(from_dir), "name": from_meta["name"], "adapter_sha256": from_meta["adapter_sha256"],
                              "dataset": from_meta["dataset"]["path"]} if from_dir else None),
            "dataset": {"path": str(data_dir), "name": data["name"], "manifest_sha256": data["manifest_sha256"],
                        "files": data["files"], "stages": data["stages"], "replay": data["replay"],
                        "hub_id": config.get("lora", "dataset_repo"),
                        "examples": {"train": len(train_conv), "valid": len(valid_conv)}},
            "settings": s.to_dict(),
            "lora": {"num_layers": lora_cfg["num_layers"], "keys": lora_cfg["lora_parameters"]["keys"]},
            "chat_template": {"source": template_source, "eos_checked": True},
            "training": {"steps": result.steps, "epochs": result.epochs, "world_size": result.world_size,
                         "packed": run.packed, "padding_fraction": round(result.padding_fraction, 4),
                         "truncated": train_data.truncated, "dropped": train_data.dropped,
                         "train_tokens": result.train_tokens, "loss_tokens": result.loss_tokens,
                         "train_seconds": round(result.train_seconds, 3), "duration_seconds": round(t, 3),
                         "tokens_per_second": round(result.train_tokens / result.train_seconds, 1) if result.train_seconds else 0.0,
                         "peak_memory_bytes": result.peak_memory, "best_step": result.best_step,
                         "stopped_early": result.stopped_early, "resumed": bool(resumed)},
            "eval": {"val_loss_before": result.val_before, "val_loss_after": result.val_after},
            "environment": {**environment(), "platform": platform.platform(), "python": platform.python_version()},
            "adapter_sha256": sha256_file(adapters / "adapters.safetensors"),
            "files": {},
        }
        meta["files"] = {str(p.relative_to(tmp)): sha256_file(p) for p in sorted(adapters.iterdir())}
        if args.fuse:
            fuse(model, tokenizer, base_path, tmp / "fused", args.dequantize)
            meta["fused"] = {"dequantized": bool(args.dequantize)}
        write_metadata(tmp, meta)
        (tmp / "README.md").write_text(card(meta, None), encoding="utf-8")
        swap_in(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    shutil.rmtree(work, ignore_errors=True)
    say(f"{out}: val loss {_num(result.val_before)} -> {_num(result.val_after)} (best step {result.best_step}), "
        f"{meta['training']['tokens_per_second']:.0f} tokens/s, peak {result.peak_memory / 2**20:.0f} MiB")
    return meta


def write_metadata(d: Path, meta: dict) -> None:
    reason = schema_error(KIND, meta)
    if reason:
        raise RuntimeError(f"metadata is not a valid {KIND}: {reason}")
    (d / "metadata.json").write_bytes(orjson.dumps(meta, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n")


def fuse(model, tokenizer, base_path: Path, dst: Path, dequantize: bool) -> None:
    """A whole model with the adapter folded into its weights (mlx-lm's fuse), written to dst."""
    from mlx.utils import tree_unflatten
    from mlx_lm.utils import dequantize_model, load_config, save

    fused = [(n, m.fuse(dequantize=dequantize)) for n, m in model.named_modules() if hasattr(m, "fuse")]
    if fused:
        model.update_modules(tree_unflatten(fused))
    cfg = load_config(base_path)
    if dequantize:
        model = dequantize_model(model)
        cfg.pop("quantization", None)
        cfg.pop("quantization_config", None)
    save(dst, base_path, model, tokenizer, cfg, donate_model=False)


# ---------------------------------------------------------------- eval

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


def evaluate_model(args, s: Settings, say) -> dict:
    from mlx_lm import batch_generate

    adapter_dir = resolve_model_dir(args.adapter) if args.adapter else None
    meta = read_metadata(adapter_dir) if adapter_dir else None
    base_path = models.check_model_dir(args.base_model or (meta and meta["base_model"]["path"]) or models.default_base()[0])
    if meta and models.content_hash(base_path) != meta["base_model"]["content_hash"]:
        raise TrainError(f"{base_path} is not the base model {adapter_dir} was trained on ({meta['base_model']['name']})")
    data = args.data or (meta and meta["dataset"]["path"])
    if not data:
        raise TrainError("give --data DIR (or --adapter, whose dataset is used)")
    data = Path(data)
    stage = args.stage or (meta and meta["stage"]) or "analysis"
    if meta:  # the same tokenisation and masking as training
        s = Settings(**{k: v for k, v in meta["settings"].items() if k in {f.name for f in fields(Settings)}})
    split = held_out(data)
    kinds: list = []
    conversations = read_split(data, split, kinds)
    model, tokenizer, _ = load_base(base_path)
    encoded = encode_all(tokenizer, conversations, s)
    prompts = conversations[:args.samples]

    def generate() -> float:
        token_prompts = [tokenizer.apply_chat_template(c[:-1], add_generation_prompt=True, return_dict=False) for c in prompts]
        if not token_prompts:
            return float("nan")
        texts = batch_generate(model, tokenizer, token_prompts, max_tokens=args.max_tokens).texts
        # each answer by its example's own kind (a replayed stage-1 example in a stage-2 set is an analysis)
        return sum(answer_ok(kind or stage, t) for kind, t in zip(kinds, texts)) / len(texts)

    say(f"{split}: {len(encoded)} examples; base model {base_path.name}")
    report = {"schema": "eval/1", "stage": stage, "data": str(data), "split": split, "examples": len(encoded),
              "base_model": str(base_path), "adapter": str(adapter_dir) if adapter_dir else None,
              "loss": {}, "perplexity": {}, "generation": {"prompts": len(prompts), "max_tokens": args.max_tokens}}
    t0 = time.perf_counter()
    report["loss"]["base"], report["tokens"] = evaluate(model, encoded, s)
    report["generation"]["base"] = generate()
    if adapter_dir:
        apply_adapter(model, adapter_dir, s)
        report["loss"]["adapter"], _ = evaluate(model, encoded, s)
        report["generation"]["adapter"] = generate()
        report["forgetting"] = forgetting(model, tokenizer, meta, s, say)
    else:
        report["loss"]["adapter"], report["generation"]["adapter"] = None, None
    report["perplexity"] = {k: _ppl(v) for k, v in report["loss"].items()}
    report["seconds"] = round(time.perf_counter() - t0, 3)
    return report


def forgetting(model, tokenizer, meta: dict, s: Settings, say) -> dict | None:
    """After stage 2: the stage-1 held-out loss with the stage-1 adapter (before) and with this one
    (after). model carries this adapter on entry and on return."""
    start = meta.get("from_adapter")
    if not start:
        return None
    stage1_dir, stage1_data = Path(start["path"]), Path(start["dataset"])
    if not (stage1_dir / "adapters" / "adapters.safetensors").is_file() or not (stage1_data / "train.jsonl").is_file():
        say(f"forgetting check skipped: {stage1_dir} or its dataset {stage1_data} is gone")
        return None
    import mlx.core as mx

    from secai.training.adapters import adapter_weights

    after_weights = {k: mx.array(v) for k, v in adapter_weights(model).items()}
    encoded = encode_all(tokenizer, read_split(stage1_data, held_out(stage1_data)), s)
    after, _ = evaluate(model, encoded, s)
    load_adapter_weights(model, stage1_dir / "adapters" / "adapters.safetensors", f"stage-1 adapter {stage1_dir}")
    before, _ = evaluate(model, encoded, s)
    model.load_weights(list(after_weights.items()), strict=False)
    return {"stage1_model": start["name"], "data": str(stage1_data), "examples": len(encoded), "before": before,
            "after": after, "increase": after - before}


def plot(log_path: Path, out: Path, title: str) -> None:
    """PNG of the training and validation loss curves from a training_log.jsonl."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    entries = [orjson.loads(line) for line in log_path.read_bytes().splitlines() if line.strip()]
    train = [(e["step"], e["train_loss"]) for e in entries if "train_loss" in e]
    val = [(e["step"], e["val_loss"]) for e in entries if "val_loss" in e]
    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
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
    tmp = out.with_name(f".{out.name}.tmp")
    fig.savefig(tmp, format="png")
    plt.close(fig)
    tmp.replace(out)


# ---------------------------------------------------------------- validate and list

REQUIRED = ("metadata.json", "README.md", "training_log.jsonl", "adapters/adapters.safetensors", "adapters/adapter_config.json")


def validate(d: Path, generate: bool = True) -> list[str]:
    """The problems of a fine-tuned model directory (none: it is fit to use and publish)."""
    if not d.is_dir():
        return ["not a directory"]
    problems = [f"{name} is missing" for name in REQUIRED if not (d / name).is_file()]
    if not (d / "metadata.json").is_file():
        return problems
    try:
        meta = orjson.loads((d / "metadata.json").read_bytes())
    except orjson.JSONDecodeError as exc:
        return problems + [f"metadata.json is not JSON: {exc}"]
    reason = schema_error(KIND, meta)
    if reason:
        return problems + [f"metadata.json is not a complete {KIND}: {reason}"]
    listed = set(meta["files"])
    present = {str(p.relative_to(d)) for p in (d / "adapters").rglob("*") if p.is_file()} if (d / "adapters").is_dir() else set()
    problems += [f"{name}: listed in metadata.json but missing" for name in sorted(listed - present)]
    problems += [f"{name}: not listed in metadata.json" for name in sorted(present - listed)]
    problems += [f"{name}: SHA-256 differs from metadata.json (changed after training)"
                 for name in sorted(listed & present) if sha256_file(d / name) != meta["files"][name]]
    if meta["files"].get("adapters/adapters.safetensors") != meta["adapter_sha256"]:
        problems.append("metadata.json: adapter_sha256 and files disagree")
    if (d / "adapters" / "adapter_config.json").is_file():
        cfg = orjson.loads((d / "adapters" / "adapter_config.json").read_bytes())
        params = cfg.get("lora_parameters") or {}
        if (cfg.get("num_layers"), params.get("keys"), params.get("rank"), params.get("scale")) != (
                meta["lora"]["num_layers"], meta["lora"]["keys"], meta["settings"]["rank"], meta["settings"]["scale"]):
            problems.append("adapters/adapter_config.json disagrees with metadata.json (layers, modules, rank or scale)")
    if meta["name"] != d.name:
        problems.append(f"metadata.json names the model {meta['name']!r}, the directory is {d.name!r}")
    if (d / "README.md").is_file():
        text = (d / "README.md").read_text(encoding="utf-8", errors="replace")
        try:
            header = front_matter(d / "README.md")
        except InputError:
            header = None
        if not header or not header.get("license") or header.get("library_name") != "mlx":
            problems.append("README.md: no model card metadata (YAML front matter with license and library_name: mlx)")
        elif meta["eval"]["val_loss_after"] is not None and f"{meta['eval']['val_loss_after']:.4f}" not in text:
            problems.append("README.md: the card does not show the model's validation loss")
    base = Path(meta["base_model"]["path"])
    if not (base / "config.json").is_file():
        return problems + [f"base model {base} not found: shapes and generation not checked"]
    if models.content_hash(base) != meta["base_model"]["content_hash"]:
        return problems + [f"base model {base} is not the one trained on (content hash differs)"]
    if problems or not generate:
        return problems
    try:
        from mlx_lm import generate as mlx_generate

        model, tokenizer, _ = load_base(base)
        apply_adapter(model, d)
        template = d / "adapters" / "chat_template.jinja"
        if template.is_file():
            tokenizer._tokenizer.chat_template = template.read_text()
        prompt = tokenizer.apply_chat_template([{"role": "user", "content": "Explain CWE-79."}], add_generation_prompt=True)
        text = mlx_generate(model, tokenizer, prompt, max_tokens=8)
        if not isinstance(text, str):
            problems.append("generation returned no text")
    except (TrainError, ValueError, OSError, KeyError) as exc:
        problems.append(f"does not load and generate: {exc}")
    return problems


def listing(root: Path) -> list[dict]:
    rows = []
    for meta_path in sorted(root.glob("*/metadata.json")) if root.is_dir() else []:
        try:
            meta = orjson.loads(meta_path.read_bytes())
        except orjson.JSONDecodeError:
            continue
        if schema_error(KIND, meta):
            continue
        report = {}
        if (meta_path.parent / "eval.json").is_file():
            report = orjson.loads((meta_path.parent / "eval.json").read_bytes())
        forgetting = report.get("forgetting") or {}
        rows.append({"name": meta["name"], "stage": meta["stage"], "base": meta["base_model"]["name"],
                     "test_model": meta["base_model"]["test_model"], "created": meta["created"],
                     "from": (meta["from_adapter"] or {}).get("name"), "path": str(meta_path.parent),
                     "val_loss_before": meta["eval"]["val_loss_before"], "val_loss_after": meta["eval"]["val_loss_after"],
                     "heldout_loss": (report.get("loss") or {}).get("adapter"),
                     "good_answers": (report.get("generation") or {}).get("adapter"),
                     "stage1_loss_increase": forgetting.get("increase")})
    return sorted(rows, key=lambda r: (r["created"], r["name"]), reverse=True)


def table(rows: list[dict]) -> str:
    if not rows:
        return "no fine-tuned models"
    head = ("name", "stage", "base", "created", "val loss", "held-out", "good answers", "forgetting")
    body = [(r["name"], r["stage"], r["base"] + (" (test)" if r["test_model"] else ""), r["created"][:16].replace("T", " "),
             f"{_num(r['val_loss_before'], 3)} -> {_num(r['val_loss_after'], 3)}", _num(r["heldout_loss"], 3),
             _num(r["good_answers"], 2), _num(r["stage1_loss_increase"], 3)) for r in rows]
    widths = [max(len(str(x)) for x in col) for col in zip(head, *body)]
    return "\n".join("  ".join(str(x).ljust(w) for x, w in zip(line, widths)).rstrip() for line in (head, *body))


# ---------------------------------------------------------------- the command

class Lora(Command):
    name = "secai-lora"
    description = ("LoRA fine-tuning with MLX (mlx-lm's Python API): `train` a stage (analysis, then codefix from "
                   "the stage-1 adapter), `eval` held-out loss, perplexity and answer quality against the base model, "
                   "`validate` a model directory before use, `list` the shared store, `fuse` an adapter into a whole model.")
    examples = __doc__.split("\n\n")[1]

    def parser(self):
        p = argparse.ArgumentParser(prog=self.name, description=self.description,
                                    epilog="examples:\n" + self.examples, formatter_class=argparse.RawDescriptionHelpFormatter)
        p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
        sub = p.add_subparsers(dest="action", required=True, metavar="{train,eval,validate,list,fuse}")

        def common(sp):
            common_flags(sp, quiet="no progress or summary on stderr")

        t = sub.add_parser("train", help="train one stage; writes <models_dir>/fine-tuned/NAME/",
                           description="Train a LoRA adapter on a dataset directory (secai-split's). Defaults: "
                                       "config/secai.yaml `lora:` (SECAI_LORA_<KEY> overrides), then these flags.")
        t.add_argument("--stage", choices=STAGES, required=True,
                       help="analysis (stage 1), codefix (stage 2) or combined (one stage on both)")
        t.add_argument("--data", required=True, metavar="DIR", help="dataset directory (train.jsonl, valid.jsonl, manifest.json)")
        t.add_argument("--base-model", metavar="DIR", help="base MLX model folder (default: the shared store's "
                       f"{models.REAL_BASE}, else the tiny test model)")
        t.add_argument("--from-adapter", metavar="DIR", help="continue from this fine-tuned model's adapter "
                       "(its directory, adapters/ or metadata.json): stage 2 starts from stage 1")
        t.add_argument("--name", help="output name (default: secai-STAGE-YYYYMMDD-HHMMSS)")
        t.add_argument("--out", metavar="DIR", help="parent of the output (default: <models_dir>/fine-tuned)")
        t.add_argument("--overwrite", action="store_true", help="replace an existing model of that name")
        t.add_argument("--resume", action="store_true", help="continue this run's interrupted attempt from its last "
                       "checkpoint (adapter, optimizer, step, schedule, data order); start afresh when there is none")
        t.add_argument("--fuse", action="store_true", help="also write fused/: the base with the adapter folded in")
        t.add_argument("--dequantize", action="store_true", help="with --fuse: full-precision weights (Hugging Face layout)")
        hp = t.add_argument_group("hyperparameters (default: config lora:)")
        for f in fields(Settings):
            flag = "--" + f.name.replace("_", "-")
            if f.type in ("bool", bool):
                hp.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=None,
                                help=f"(default: lora.{f.name} = {config.load().get('lora', {}).get(f.name)})")
            elif f.name == "target_modules":
                hp.add_argument(flag, dest=f.name, nargs="+", metavar="MODULE", default=None,
                                help="module paths inside a block (default: every linear layer)")
            else:
                typ = {"int": int, "float": float, "str": str}[str(f.type)]
                hp.add_argument(flag, dest=f.name, type=typ, default=None, metavar={int: "N", float: "X", str: "NAME"}[typ],
                                help=f"(default: lora.{f.name} = {config.load().get('lora', {}).get(f.name)})")
        common(t)

        e = sub.add_parser("eval", help="held-out loss, perplexity and answer checks, base vs adapter; JSON report and PNG",
                           description="Evaluate on the dataset's test split (else valid): loss and perplexity with the "
                                       "training masking, base vs adapter; batched generation on held-out prompts, scored "
                                       "(analysis: every required section; codefix: the code block parses). With a "
                                       "stage-2 adapter, also the stage-1 held-out loss before and after stage 2.")
        e.add_argument("--adapter", metavar="DIR", help="fine-tuned model directory (none: the base model alone)")
        e.add_argument("--base-model", metavar="DIR", help="base model folder (default: the adapter's)")
        e.add_argument("--data", metavar="DIR", help="dataset directory (default: the adapter's)")
        e.add_argument("--stage", choices=STAGES, help="how answers are scored (default: the adapter's stage)")
        e.add_argument("--samples", type=int, default=None, help="held-out prompts to generate for (default: config lora.eval_samples)")
        e.add_argument("--max-tokens", type=int, default=None, help="reply length limit (default: config lora.eval_max_tokens)")
        e.add_argument("-o", "--output", metavar="FILE", help="report here too (default: ADAPTER/eval.json, else stdout)")
        e.add_argument("--plot", metavar="PNG", help="loss curves here (default: ADAPTER/loss.png)")
        common(e)

        v = sub.add_parser("validate", help="check a fine-tuned model directory before it is used or published",
                           description="Check a fine-tuned model directory: required files, metadata (model/1) complete "
                                       "and matching the files' hashes, the card, the adapter's shapes against the base "
                                       "model, and that the model loads and generates. One line per problem; exit 1 if any.")
        v.add_argument("model_dir", metavar="DIR", help="fine-tuned model directory")
        v.add_argument("--no-generate", action="store_true", help="skip loading the model and generating")
        common(v)

        ls = sub.add_parser("list", help="the shared store's fine-tuned models: stage, base, date, eval numbers",
                            description="List the fine-tuned models in <models_dir>/fine-tuned (or --dir), newest first.")
        ls.add_argument("--dir", metavar="DIR", help="where to look (default: <models_dir>/fine-tuned)")
        ls.add_argument("--json", action="store_true", help="one JSON object per model instead of a table")
        common(ls)

        fu = sub.add_parser("fuse", help="write a whole model with the adapter folded in")
        fu.add_argument("model_dir", metavar="DIR", help="fine-tuned model directory")
        fu.add_argument("-o", "--output", metavar="DIR", help="where (default: DIR/fused)")
        fu.add_argument("--dequantize", action="store_true", help="full-precision weights (Hugging Face layout)")
        common(fu)
        return p

    def log(self, message: str) -> None:
        if not getattr(self.args, "quiet", False):
            print(f"{self.name}: {message}", file=sys.stderr)

    def run(self) -> int:
        a = self.args
        if a.action == "train":
            overrides = {f.name: getattr(a, f.name) for f in fields(Settings)}
            meta = train(a, settings(overrides), self.log)
            if meta:
                sys.stdout.buffer.write(orjson.dumps(meta, option=orjson.OPT_SORT_KEYS | orjson.OPT_APPEND_NEWLINE))
            return 0
        if a.action == "eval":
            a.samples = config.get("lora", "eval_samples") if a.samples is None else a.samples
            a.max_tokens = config.get("lora", "eval_max_tokens") if a.max_tokens is None else a.max_tokens
            return self.run_eval(a)
        if a.action == "validate":
            problems = validate(Path(a.model_dir), generate=not a.no_generate)
            for problem in problems:
                print(f"{a.model_dir}: {problem}", file=sys.stderr)
            if problems:
                raise TrainError(f"{a.model_dir}: {len(problems)} problem(s); not a valid model")
            self.log(f"{a.model_dir}: valid")
            return 0
        if a.action == "list":
            rows = listing(Path(a.dir) if a.dir else models.fine_tuned_dir())
            if a.json:
                sys.stdout.buffer.write(b"".join(orjson.dumps(r, option=orjson.OPT_SORT_KEYS | orjson.OPT_APPEND_NEWLINE) for r in rows))
            else:
                print(table(rows))
            return 0
        if a.action == "fuse":
            d = resolve_model_dir(a.model_dir)
            meta = read_metadata(d)
            model, tokenizer, _ = load_base(Path(meta["base_model"]["path"]))
            apply_adapter(model, d)
            out = Path(a.output) if a.output else d / "fused"
            tmp = fresh_dir(out, "tmp")
            try:
                fuse(model, tokenizer, Path(meta["base_model"]["path"]), tmp, a.dequantize)
                swap_in(tmp, out)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
            self.log(f"{out}: fused model written")
        return 0

    def run_eval(self, a) -> int:
        report = evaluate_model(a, settings(), self.log)
        text = orjson.dumps(report, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"
        d = Path(report["adapter"]) if report["adapter"] else None
        targets = [Path(a.output)] if a.output else []
        if d:
            targets.append(d / "eval.json")
        for path in targets:
            tmp = path.with_name(f".{path.name}.tmp")
            tmp.write_bytes(text)
            tmp.replace(path)
        if not targets:
            sys.stdout.buffer.write(text)
        png = Path(a.plot) if a.plot else (d / "loss.png" if d else None)
        if png and d and (d / "training_log.jsonl").is_file():
            plot(d / "training_log.jsonl", png, f"{d.name}: loss")
        if d:
            meta = read_metadata(d)
            tmp = d / ".README.md.tmp"
            tmp.write_text(card(meta, report), encoding="utf-8")
            tmp.replace(d / "README.md")
        g, l = report["generation"], report["loss"]
        self.log(f"{report['split']} loss base {_num(l['base'])} adapter {_num(l['adapter'])}; "
                 f"good answers base {_num(g['base'], 3)} adapter {_num(g['adapter'], 3)} of {g['prompts']}"
                 + (f"; stage-1 loss {_num(report['forgetting']['before'])} -> {_num(report['forgetting']['after'])}"
                    if report.get("forgetting") else ""))
        return 0


def return_freed_memory() -> None:
    """glibc keeps big freed blocks in its heap for reuse, so a training process's RSS stays at its
    high-water mark; serving blocks of 64 KiB and more from their own mappings (M_MMAP_THRESHOLD,
    as MALLOC_MMAP_THRESHOLD_=65536 would) hands them back when freed. Linux/glibc only."""
    if sys.platform.startswith("linux"):
        import ctypes

        try:
            ctypes.CDLL("libc.so.6").mallopt(-3, 65536)  # -3: M_MMAP_THRESHOLD
        except (OSError, AttributeError):  # not glibc
            pass


def main():
    return_freed_memory()
    entry(Lora)


if __name__ == "__main__":
    main()
