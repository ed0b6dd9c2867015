"""LoRA fine-tuning with MLX, stage by stage, evaluated on held-out data (the secai-lora command is
secai.commands.lora).

    secai-lora train --stage analysis --data build/datasets/analysis --name secai-analysis-demo
    secai-lora train --stage codefix --data build/datasets/codefix --from-adapter MODELS/fine-tuned/secai-analysis-demo
    secai-lora eval --adapter MODELS/fine-tuned/secai-codefix-demo --data build/datasets/codefix
    secai-lora validate MODELS/fine-tuned/secai-codefix-demo
    secai-lora list

`train` writes `<models_dir>/fine-tuned/<name>/` in one rename: `adapters/` (mlx-lm's adapter
format: `mlx_lm generate --model BASE --adapter-path DIR/adapters` loads it), `metadata.json`
(model/1, schemas/model.schema.json; the paths it records to the base model, the dataset and the
stage-1 model are store.portable's, never absolute, and are found again with store.local),
`training_log.jsonl`, `loss.png` (its curves), `README.md` (a Hugging Face model card
with the measured numbers and that plot) and, with `--fuse`, `fused/` (a whole model). The base model folder is
only read. While it runs, its checkpoints live in `<models_dir>/fine-tuned/.run-<id>/`, where id
names the run (base model, data, settings, stage and starting adapter): `--resume` continues that
run from its last checkpoint. The training engine is secai.training.engine.
"""

from __future__ import annotations

import hashlib
import json
import platform
import shutil
import sys
import time
from dataclasses import fields
from datetime import datetime, timezone
from pathlib import Path

import orjson

from secai import __version__
from secai import config
from secai.training import store as models
from secai.records import read_jsonl_strict, schema_error
from secai.errors import InputError
from secai.files import building, front_matter, sha256_file
from secai.training.adapters import add_lora, load_adapter_weights
from secai.training.batches import check_chat_template, encode_all
from secai.training.card import base_reference, card, num, surroundings
from secai.training.engine import Interrupted, Run, environment
from secai.training.settings import Settings, TrainError, recorded

STAGES = ("analysis", "codefix", "combined")  # combined: one stage on both kinds of example (STAGES=1)
KIND = "model/1"


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
    """A fine-tuned model directory from itself, its adapters/ folder, its metadata.json or a copy of
    that metadata elsewhere (what `secai-lora train` prints; its `path` is found through store.local)."""
    p = Path(path).expanduser()
    if p.is_file() and p.name.endswith(".json"):
        recorded = orjson.loads(p.read_bytes()).get("path")
        p = p.parent if p.name == "metadata.json" or not recorded else (models.local(recorded) or Path(recorded))
    if (p / "adapter_config.json").is_file() and (p.parent / "metadata.json").is_file():
        p = p.parent
    if not (p / "metadata.json").is_file() or not (p / "adapters" / "adapter_config.json").is_file():
        raise TrainError(f"{path}: not a fine-tuned model directory (needs metadata.json and adapters/)")
    return p


def read_metadata(model_dir: Path) -> dict:
    return orjson.loads((model_dir / "metadata.json").read_bytes())


def base_dir(model_dir: Path, meta: dict) -> Path:
    """The base model folder a fine-tuned model was trained on, on this machine (or TrainError)."""
    base = models.local(meta["base_model"]["path"], near=model_dir)
    if base is None:
        raise TrainError(f"{model_dir}: its base model {meta['base_model']['path']} ({meta['base_model']['name']}) "
                         f"is not in the models dir, the project or beside the model")
    return base


def apply_adapter(model, model_dir: Path, s: Settings | None = None) -> dict:
    """Add the LoRA layers a fine-tuned model was trained with and load its weights (shape-checked)."""
    meta = read_metadata(model_dir)
    s = s or recorded(meta["settings"])
    cfg = add_lora(model, s)
    load_adapter_weights(model, model_dir / "adapters" / "adapters.safetensors", f"adapter {model_dir}")
    return cfg


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
    base_path = Path(base_model).expanduser().absolute() if base_model else models.default_base()[0]
    models.check_model_dir(base_path)
    base_id = models.identity(base_path)
    test_model = models.is_test_model(base_path)
    if test_model and mx.distributed.init().rank() == 0:
        models.test_model_notice("secai-lora", base_path)
    data_dir = Path(data).expanduser().absolute()
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
        # mlx-lm records its --model here and never reads it back (mlx_lm generate/fuse take --model)
        base_record = {"path": models.portable(base_path, near=out), "name": base_id["name"],
                       "content_hash": base_id["content_hash"], **models.hub_origin(base_path), "test_model": test_model}
        (adapters / "adapter_config.json").write_text(json.dumps({**lora_cfg, "model": base_reference(base_record)}, indent=2) + "\n")
        if template_source != "tokenizer":
            (adapters / "chat_template.jinja").write_text(tokenizer.chat_template)
        shutil.copyfile(work / "training_log.jsonl", tmp / "training_log.jsonl")
        t = time.perf_counter() - t0
        meta = {
            "schema": KIND, "name": name, "stage": stage, "path": models.portable(out),
            "created": datetime.now(timezone.utc).replace(microsecond=0).isoformat(), "secai_version": __version__,
            "license": config.get("lora", "license"), "run_id": rid,
            "base_model": base_record,
            "from_adapter": ({"path": models.portable(from_dir, near=out), "name": from_meta["name"],
                              "adapter_sha256": from_meta["adapter_sha256"],
                              "dataset": models.recorded_again(from_meta["dataset"]["path"], from_dir, out)} if from_dir else None),
            "dataset": {"path": models.portable(data_dir, near=out), "name": data["name"], "manifest_sha256": data["manifest_sha256"],
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
        from secai.training.evaluate import plot  # evaluate imports this module

        plot(tmp / "training_log.jsonl", tmp / "loss.png", f"{name}: loss")
        (tmp / "README.md").write_text(card(meta, None, surroundings(out, base_path, tmp)), encoding="utf-8")
    shutil.rmtree(work, ignore_errors=True)
    say(f"{out}: val loss {num(result.val_before)} -> {num(result.val_after)} (best step {result.best_step}), "
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
    base = models.local(meta["base_model"]["path"], near=d)
    if base is None or not (base / "config.json").is_file():
        return problems + [f"base model {meta['base_model']['path']} not found: shapes and generation not checked"]
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
             f"{num(r['val_loss_before'], 3)} -> {num(r['val_loss_after'], 3)}", num(r["heldout_loss"], 3),
             num(r["good_answers"], 2), num(r["stage1_loss_increase"], 3)) for r in rows]
    widths = [max(len(str(x)) for x in col) for col in zip(head, *body)]
    return "\n".join("  ".join(str(x).ljust(w) for x, w in zip(line, widths)).rstrip() for line in (head, *body))


def fuse_dir(model_dir: str | Path, out: str | Path | None = None, dequantize: bool = False) -> Path:
    """Write a whole model with a fine-tuned model's adapter folded in (default: MODEL_DIR/fused), atomically."""
    d = resolve_model_dir(model_dir)
    base = base_dir(d, read_metadata(d))
    model, tokenizer, _ = load_base(base)
    apply_adapter(model, d)
    out = Path(out) if out else d / "fused"
    with building(out) as tmp:
        fuse(model, tokenizer, base, tmp, dequantize)
    return out


def without_torch() -> None:
    """Mark torch absent in a training process (secai-lora's main, before anything imports
    transformers). mlx-lm loads tokenizers through transformers, and transformers 5 imports torch
    whenever it is installed (secai installs it for the embeddings of secai-index); MLX training
    never uses it, and importing it, then tearing it down at exit, cost a process 1.6 s and 190 MB
    of RSS on a 2-core Linux machine. With sys.modules["torch"] = None, importlib.util.find_spec
    answers None, so transformers takes torch to be absent and any `import torch` fails at once.
    For the whole process (transformers remembers the answer): never where torch is already
    imported or may be needed later, so never in a process that runs other commands too."""
    if "torch" not in sys.modules and "transformers" not in sys.modules:
        sys.modules["torch"] = None
