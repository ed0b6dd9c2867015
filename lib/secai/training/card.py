"""The model card (README.md) of a fine-tuned model: Hugging Face YAML metadata, what it is, and its
numbers from training and, once evaluated, from secai.training.evaluate."""

from __future__ import annotations

import math

import yaml


def num(x, digits=4) -> str:
    """A number as the card and the listings print it ('—' for none or NaN)."""
    return "—" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def perplexity(loss):
    """exp(loss), capped; None for no loss."""
    return None if loss is None or math.isnan(loss) else math.exp(min(loss, 50))


def base_reference(base: dict) -> str:
    """The base model as `mlx_lm generate --model` takes it where the adapter is published: its
    Hugging Face id when it was converted from one, else the path the metadata records."""
    return base.get("hf_id") or base["path"]


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
              f"mlx_lm generate --model {base_reference(base)} --adapter-path adapters --prompt \"...\"",
              "```", ""]
    return "\n".join(lines)
