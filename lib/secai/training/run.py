"""LoRA fine-tuning with MLX, stage by stage, evaluated on held-out data (the secai-lora command is
secai.commands.lora).

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

import hashlib
import json
import math
import platform
import shutil
import time
from dataclasses import fields
from datetime import datetime, timezone
from pathlib import Path

import orjson
import yaml

from secai import __version__
from secai import config
from secai.training import store as models
from secai.cli import InputError, read_jsonl_strict, schema_error
from secai.files import AtomicOutput, building, front_matter, sha256_file, write_atomic
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
    values = {k: v for k, v in config.section("lora").items() if k in known}
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
    for lineno, rec in read_jsonl_strict(str(path), None):
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


def train(s: Settings, say, *, stage: str, data: str | Path, base_model: str | Path | None = None,
          from_adapter: str | Path | None = None, name: str | None = None, out: str | Path | None = None,
          overwrite: bool = False, resume: bool = False, fuse_model: bool = False, dequantize: bool = False) -> dict:
    """Train one stage on a dataset directory and write <out or models_dir/fine-tuned>/NAME/ (see the
    module docstring); returns its metadata (model/1), or {} on a data-parallel rank other than 0."""
    import mlx.core as mx

    t0 = time.perf_counter()
    base_path = Path(base_model).expanduser() if base_model else models.default_base()[0]
    models.check_model_dir(base_path)
    base_id = models.identity(base_path)
    test_model = models.is_test_model(base_path)
    if test_model and mx.distributed.init().rank() == 0:
        models.test_model_notice("secai-lora", base_path)
    data_dir = Path(data)
    data = dataset_info(data_dir)
    if stage != "combined" and data["stages"] and not data["stages"].get(stage):
        raise TrainError(f"{data_dir}: the dataset has no {stage} examples (it has {', '.join(data['stages'])})")
    from_dir = resolve_model_dir(from_adapter) if from_adapter else None
    from_meta = read_metadata(from_dir) if from_dir else None
    if from_meta and from_meta["base_model"]["content_hash"] != base_id["content_hash"]:
        raise TrainError(f"{from_dir} was trained on base {from_meta['base_model']['name']} "
                         f"({from_meta['base_model']['content_hash'][:16]}), not {base_path} ({base_id['content_hash'][:16]})")
    name = name or default_name(stage)
    out = models.fine_tuned_dir() if out is None else Path(out)
    out = out.expanduser() / name
    if out.exists() and not overwrite:
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
    rid = run_id(base_id["content_hash"], data, s, stage, from_meta and from_meta["adapter_sha256"])
    work = out.parent / f".run-{rid}"
    resumed = resume and (work / Run.CHECKPOINT / "state.json").is_file()
    if not resume and work.exists() and mx.distributed.init().rank() == 0:
        shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    run = Run(model, train_data, valid_data, s, work, log=say)
    say(f"{name}: stage {stage}, {len(train_data)} train / {len(valid_data)} valid examples, "
        f"{run.steps} steps, packing {'on' if run.packed else 'off'}, {run.size} process(es)"
        + (", resuming" if resumed else ""))
    try:
        result = run.run(resume=resume)
    except Interrupted as exc:
        raise TrainError(f"{exc}; run the same command with --resume to continue") from None
    if run.rank != 0:
        return {}

    from mlx.utils import tree_flatten

    with building(out) as tmp:
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
            "schema": KIND, "name": name, "stage": stage, "path": str(out),
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
        if fuse_model:
            fuse(model, tokenizer, base_path, tmp / "fused", dequantize)
            meta["fused"] = {"dequantized": bool(dequantize)}
        write_metadata(tmp, meta)
        (tmp / "README.md").write_text(card(meta, None), encoding="utf-8")
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


def evaluate_model(s: Settings, say, *, samples: int, max_tokens: int, adapter: str | Path | None = None,
                   base_model: str | Path | None = None, data: str | Path | None = None,
                   stage: str | None = None) -> dict:
    """The eval/1 report of a fine-tuned model (or, without `adapter`, of the base model alone) on
    its dataset's held-out split: loss, perplexity and the share of good answers, base vs adapter."""
    from mlx_lm import batch_generate

    adapter_dir = resolve_model_dir(adapter) if adapter else None
    meta = read_metadata(adapter_dir) if adapter_dir else None
    base_path = models.check_model_dir(base_model or (meta and meta["base_model"]["path"]) or models.default_base()[0])
    if meta and models.content_hash(base_path) != meta["base_model"]["content_hash"]:
        raise TrainError(f"{base_path} is not the base model {adapter_dir} was trained on ({meta['base_model']['name']})")
    data = data or (meta and meta["dataset"]["path"])
    if not data:
        raise TrainError("give --data DIR (or --adapter, whose dataset is used)")
    data = Path(data)
    stage = stage or (meta and meta["stage"]) or "analysis"
    if meta:  # the same tokenisation and masking as training
        s = Settings(**{k: v for k, v in meta["settings"].items() if k in {f.name for f in fields(Settings)}})
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
    report = {"schema": "eval/1", "stage": stage, "data": str(data), "split": split, "examples": len(encoded),
              "base_model": str(base_path), "adapter": str(adapter_dir) if adapter_dir else None,
              "loss": {}, "perplexity": {}, "generation": {"prompts": len(prompts), "max_tokens": max_tokens}}
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
    try:
        with AtomicOutput(out) as fh:
            fig.savefig(fh, format="png")
    finally:
        plt.close(fig)


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


def fuse_dir(model_dir: str | Path, out: str | Path | None = None, dequantize: bool = False) -> Path:
    """Write a whole model with a fine-tuned model's adapter folded in (default: MODEL_DIR/fused), atomically."""
    d = resolve_model_dir(model_dir)
    meta = read_metadata(d)
    model, tokenizer, _ = load_base(Path(meta["base_model"]["path"]))
    apply_adapter(model, d)
    out = Path(out) if out else d / "fused"
    with building(out) as tmp:
        fuse(model, tokenizer, Path(meta["base_model"]["path"]), tmp, dequantize)
    return out


def save_eval(report: dict, output: str | Path | None = None, plot_png: str | Path | None = None) -> bytes:
    """Write an eval/1 report to `output` and, for an adapter, to ADAPTER/eval.json with its loss plot
    (default ADAPTER/loss.png) and a model card that shows the numbers. Returns the report's JSON, which
    the caller prints when it was written nowhere (no output, no adapter)."""
    text = orjson.dumps(report, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"
    d = Path(report["adapter"]) if report["adapter"] else None
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
        write_atomic(d / "README.md", card(meta, report))
    return b"" if targets else text


def eval_summary(report: dict) -> str:
    """One line: held-out loss and good answers, base vs adapter (and forgetting, for stage 2)."""
    g, l = report["generation"], report["loss"]
    return (f"{report['split']} loss base {_num(l['base'])} adapter {_num(l['adapter'])}; "
            f"good answers base {_num(g['base'], 3)} adapter {_num(g['adapter'], 3)} of {g['prompts']}"
            + (f"; stage-1 loss {_num(report['forgetting']['before'])} -> {_num(report['forgetting']['after'])}"
               if report.get("forgetting") else ""))
