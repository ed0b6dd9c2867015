"""The model card (README.md) of a fine-tuned model: Hugging Face YAML metadata, what it is, its
numbers from training and, once evaluated, from secai.training.evaluate, its loss plot, and how to
use it.

The metadata is built with huggingface_hub's ModelCardData, so the Hub reads what the card says:
- `base_model` is the exact model the adapter was trained on, with `base_model_relation: adapter`,
  only when that model is on the Hub (store.hub_origin: a Hub snapshot or an mlx-lm upload). A
  local conversion (`make base-model`: allenai/OLMo-2-0425-1B, 4-bit) and secai's random-weight
  test model are on no Hub: naming the model a conversion came from would claim the adapter fits
  weights it was never trained on, so the card then names no base_model and says how to make the
  base it was trained on.
- `model-index` carries eval.json's held-out loss and perplexity, adapter and base model alone (and
  the stage-1 loss before and after, when the forgetting check ran): the numbers as measured.
- The "Use" commands run as written, with OWNER/NAME the only thing to fill in: from an empty
  folder (download, make the base, generate) and, where secai-lora wrote the model, from its folder
  (tests/test_model_card.py runs both against the test model).
"""

from __future__ import annotations

import math
import shlex
from pathlib import Path

import yaml

from secai.training import store as models

PLOT = "loss.png"  # the loss curves beside the card (secai.training.evaluate.plot)
_EXPLAIN = "Explain the security finding: bandit B608 (CWE-89), SQL query built from user input, app.py line 12."
USE_PROMPT = {"analysis": _EXPLAIN, "combined": _EXPLAIN,
              "codefix": "Fix the security finding: bandit B602 (CWE-78), subprocess call with shell=True, app.py line 30."}


def num(x, digits=4) -> str:
    """A number as the card and the listings print it ('—' for none or NaN)."""
    return "—" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def perplexity(loss):
    """exp(loss), capped; None for no loss."""
    return None if loss is None or math.isnan(loss) else math.exp(min(loss, 50))


def base_ids(base: dict) -> tuple[str | None, str | None]:
    """(the Hub id of the exact base trained on, the Hub id that base was converted from). Metadata
    written before secai recorded converted_from gave, as hf_id, the id the base was converted from."""
    if "converted_from" in base:
        return base.get("hf_id"), base.get("converted_from")
    return None, base.get("hf_id")


def base_reference(base: dict) -> str:
    """The base model as `mlx_lm generate --model` takes it where the adapter is published: the Hub
    id of the exact base when it has one, else the path the metadata records."""
    return base_ids(base)[0] or base["path"]


def surroundings(model_dir: Path, base: Path | None, files_in: Path | None = None) -> dict:
    """What the card says about the folders around it: whether loss.png is beside it (in files_in,
    where the model's files are being written, default model_dir), the way from model_dir to its base
    model (store.way; None when there is none to print) and, for secai's test model, the arguments
    that rebuild that base."""
    here = {"plot": ((files_in or model_dir) / PLOT).is_file(), "base_way": None, "rebuild": None}
    if base is not None and (Path(base) / "config.json").is_file():
        here["base_way"] = models.way(base, model_dir)
        ident = models.identity(base)
        if ident.get("random_weights"):
            from secai.training.tinymodel import DEFAULTS

            sizes = ident.get("sizes") or {}
            here["rebuild"] = ["--seed", str(ident.get("seed", 0))] + [
                f"--{k.replace('_', '-')}={sizes[k]}" for k in DEFAULTS if k in sizes and sizes[k] != DEFAULTS[k]]
    return here


def eval_results(meta: dict, report: dict) -> list:
    """model-index results (huggingface_hub EvalResult) from an eval/1 report: held-out loss and
    perplexity, adapter and base model alone, and the forgetting check's stage-1 losses."""
    from huggingface_hub import EvalResult

    from secai.dataset.split import HF_SPLIT

    data = meta["dataset"]
    same = report.get("data") == data["path"]
    task = {"type": "text-generation", "name": {"analysis": "security finding analysis", "codefix": "security code fix",
                                                "combined": "security finding analysis and code fix"}[meta["stage"]]}
    dataset = {"dataset_type": (data.get("hub_id") if same else None) or Path(report["data"]).name,
               "dataset_name": data["name"] if same else Path(report["data"]).name,
               "dataset_split": HF_SPLIT.get(report["split"], report["split"])}
    rows = [(dataset, kind, f"held-out {kind} ({who})", report[key][side])
            for key, kind in (("loss", "loss"), ("perplexity", "perplexity"))
            for side, who in (("adapter", "adapter"), ("base", "base model alone"))]
    f = report.get("forgetting")
    if f:
        stage1 = {"dataset_type": Path(f["data"]).name, "dataset_name": Path(f["data"]).name}
        rows += [(stage1, "loss", "stage-1 held-out loss (this adapter; forgetting check)", f["after"]),
                 (stage1, "loss", f"stage-1 held-out loss (stage-1 adapter {f['stage1_model']})", f["before"])]
    return [EvalResult(task_type=task["type"], task_name=task["name"], metric_type=kind, metric_name=label,
                       metric_value=value, **where)
            for where, kind, label, value in rows if isinstance(value, (int, float)) and math.isfinite(value)]


def header(meta: dict, report: dict | None) -> dict:
    """The card's YAML metadata, as huggingface_hub's ModelCardData writes it."""
    from huggingface_hub import ModelCardData

    base, data = meta["base_model"], meta["dataset"]
    exact, _ = base_ids(base)
    results = eval_results(meta, report) if report else []
    fields = {"library_name": "mlx", "license": meta["license"], "pipeline_tag": "text-generation",
              "tags": sorted({"mlx", "lora", "adapter", "secai", "security", meta["stage"]}
                             | ({"test-model"} if base["test_model"] else set())),
              "datasets": [data["hub_id"]] if data.get("hub_id") else None,
              "model_name": meta["name"] if results else None, "eval_results": results or None}
    if exact:
        fields.update(base_model=exact, base_model_relation="adapter")
    return ModelCardData(**fields).to_dict()


def _quant(q: dict | None) -> str:
    return f"{q['bits']}-bit (group size {q['group_size']})" if q else "full-precision"


def base_text(meta: dict) -> str:
    """What the base model is, and why the metadata does or does not name it."""
    base = meta["base_model"]
    exact, source = base_ids(base)
    ident = f"`{base['name']}` (content hash `{base['content_hash'][:16]}`)"
    conv = f", a {_quant(base.get('quantization'))} MLX conversion of [`{source}`](https://huggingface.co/{source})" if source else ""
    if exact:
        return f"A LoRA adapter for [`{exact}`](https://huggingface.co/{exact}){conv}: {ident}"
    if base["test_model"]:
        return (f"A LoRA adapter for secai's tiny random-weight test model {ident}. That model is on no Hub "
                "(secai never publishes it: it knows nothing), so this card names no `base_model`; the commands "
                "under Use rebuild it byte for byte")
    if source:
        return (f"A LoRA adapter for {ident}, a local {_quant(base.get('quantization'))} MLX conversion of "
                f"[`{source}`](https://huggingface.co/{source}) made by `mlx_lm convert`. That conversion is on no Hub "
                f"and `{source}` itself is not what the adapter was trained on, so this card names no `base_model`; "
                "the commands under Use make the same conversion")
    return f"A LoRA adapter for the local model {ident}, which is on no Hub; this card names no `base_model`"


def use_lines(meta: dict, here: dict) -> list[str]:
    """The card's Use section: commands that run as written (OWNER/NAME aside)."""
    base, name = meta["base_model"], meta["name"]
    exact, source = base_ids(base)
    own_template = meta["chat_template"]["source"] != "tokenizer"  # adapters/chat_template.jinja
    folder = base["name"]
    get: list[str] = []
    if exact:
        if own_template:
            get = [f"hf download {exact} --local-dir {folder}"]
        else:
            folder = exact  # mlx_lm downloads it
    elif here.get("rebuild") is not None:
        get = [shlex.join(["python", "-m", "secai.training.tinymodel", folder, *here["rebuild"]])]
    elif source:
        q = base.get("quantization")
        get = [shlex.join(["mlx_lm.convert", "--hf-path", source, "--mlx-path", folder]
                          + (["-q", "--q-bits", str(q["bits"]), "--q-group-size", str(q["group_size"])] if q else []))]
    if own_template:
        get.append(f"cp {name}/adapters/chat_template.jinja {folder}/")
    prompt = shlex.quote(USE_PROMPT[meta["stage"]])
    generate = f"--prompt {prompt} --max-tokens 200"
    where = ("in an empty folder" if exact or get else
             f"in a folder holding a copy of the base as `{folder}` (content hash `{base['content_hash'][:16]}`)")
    lines = ["## Use", "", "With [mlx-lm](https://github.com/ml-explore/mlx-lm) (`pip install mlx-lm`) and the `hf` "
             "command of huggingface_hub"
             + (", and secai itself for the test model (`pip install .` in a secai checkout)" if here.get("rebuild") else "")
             + f", {where}, `OWNER/NAME` being the repository this card is on:", "", "```bash",
             f"hf download OWNER/NAME --local-dir {name}", *get,
             f"mlx_lm.generate --model {folder} --adapter-path {name}/adapters {generate}", "```", ""]
    if own_template:
        lines += ["The base model has no chat template; the adapter was trained with the one in "
                  "`adapters/chat_template.jinja` (OLMo-2-Instruct's), which mlx-lm reads from the model folder.", ""]
    elif here.get("base_way"):
        lines += ["Where `secai-lora` wrote it, the base model is beside it in secai's model store; from this folder:", "",
                  "```bash", f"mlx_lm.generate --model {here['base_way']} --adapter-path adapters {generate}", "```", ""]
    if meta["stage"] in ("analysis", "combined"):
        lines += ["`secai-analyze --backend mlx --model BASE --adapter ADAPTERS` asks it the way it was trained "
                  "(secai's system prompt and finding layout) and checks its JSON answer.", ""]
    return lines


def card(meta: dict, report: dict | None, here: dict | None = None) -> str:
    """README.md of a fine-tuned model: Hugging Face YAML metadata, then what it is, its numbers, its
    loss plot and how to use it. here: surroundings() of the model's folder."""
    here = here or {}
    base, data, t, ev = meta["base_model"], meta["dataset"], meta["training"], meta["eval"]
    s = meta["settings"]
    lines = ["---", yaml.safe_dump(header(meta, report), sort_keys=False, allow_unicode=True).rstrip(), "---", "",
             f"# {meta['name']}", ""]
    if base["test_model"]:
        lines += ["> **Test device, not a useful model.** The base is secai's tiny random-weight OLMo-2 model: this",
                  "> adapter proves the fine-tuning machinery end to end; what it generates means nothing.", ""]
    stage_text = {"analysis": "explain a security finding (impact, remediation, prevention, risk) as JSON",
                  "codefix": "fix the code a security finding points at",
                  "combined": "explain security findings as JSON and fix the code they point at"}[meta["stage"]]
    start = f", continuing from the stage-1 adapter `{meta['from_adapter']['name']}`" if meta.get("from_adapter") else ""
    lines += [f"{base_text(meta)}. Stage `{meta['stage']}`: taught to {stage_text}{start}. Trained by secai's "
              f"`secai-lora` {meta['secai_version']} with MLX {meta['environment']['mlx']} / mlx-lm "
              f"{meta['environment']['mlx_lm']} on `{meta['environment']['device']}`.", "",
              "## Evaluation (held-out data, never trained on)", "",
              "| measure | before | after |", "|---|---|---|",
              f"| validation loss (final assistant turn) | {num(ev['val_loss_before'])} | {num(ev['val_loss_after'])} |",
              f"| validation perplexity | {num(perplexity(ev['val_loss_before']), 2)} | {num(perplexity(ev['val_loss_after']), 2)} |"]
    if report:
        lines += [f"| held-out loss ({report['split']}, {report['examples']} examples) | {num(report['loss']['base'])} | {num(report['loss']['adapter'])} |",
                  f"| held-out perplexity | {num(report['perplexity']['base'], 2)} | {num(report['perplexity']['adapter'], 2)} |"]
        g = report["generation"]
        label = {"analysis": "answers with every required section", "codefix": "answers whose code block parses",
                 "combined": "answers passing their kind's check"}[meta["stage"]]
        lines.append(f"| {label} ({g['prompts']} prompts) | {num(g['base'], 3)} | {num(g['adapter'], 3)} |")
        if report.get("forgetting"):
            f = report["forgetting"]
            lines.append(f"| stage-1 held-out loss (forgetting check) | {num(f['before'])} | {num(f['after'])} |")
    lines += ["", "\"before\" is the base model alone, \"after\" with this adapter"
              + ("; the forgetting check's \"before\" is the stage-1 adapter" if report and report.get("forgetting") else "")
              + ". The same held-out numbers are in the metadata (`model-index`)" + (" and in `eval.json`." if report else "."),
              "", f"Best validation loss at step {t['best_step']} of {t['steps']} ({t['epochs']} epochs"
              + ("; stopped early" if t["stopped_early"] else "") + "); that checkpoint is the adapter.", ""]
    if here.get("plot"):
        lines += [f"![Training and validation loss by step]({PLOT})", ""]
    lines += ["## Training", "",
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
              "", *use_lines(meta, here)]
    return "\n".join(lines)
