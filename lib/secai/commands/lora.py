"""secai-lora: LoRA fine-tuning with MLX, stage by stage, evaluated on held-out data (the training
itself: secai.training.run and secai.training.engine).

    secai-lora train --stage analysis --data build/datasets/analysis --name secai-analysis-demo
    secai-lora train --stage codefix --data build/datasets/codefix --from-adapter MODELS/fine-tuned/secai-analysis-demo
    secai-lora eval --adapter MODELS/fine-tuned/secai-codefix-demo --data build/datasets/codefix
    secai-lora validate MODELS/fine-tuned/secai-codefix-demo
    secai-lora list
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import fields
from pathlib import Path

from secai import config
from secai.cli import Command, entry, escape
from secai.records import dumps
from secai.errors import EXIT_ERROR, EXIT_OK
from secai.training import store as models
from secai.training.settings import Settings
from secai.training.evaluate import eval_summary, evaluate_model, save_eval
from secai.training.run import STAGES, fuse_dir, listing, settings, table, train, validate, without_torch


class Lora(Command):
    name = "secai-lora"
    description = ("LoRA fine-tuning with MLX (mlx-lm's Python API): `train` a stage (analysis, then codefix from "
                   "the stage-1 adapter), `eval` held-out loss, perplexity and answer quality against the base model, "
                   "`validate` a model directory before use, `list` the shared store, `fuse` an adapter into a whole model.")
    examples = __doc__.split("\n\n")[1]
    reads = False
    writes = None
    config_section = "lora"
    subcommands = {
        "train": ("train one stage; writes <models_dir>/fine-tuned/NAME/",
                  "Train a LoRA adapter on a dataset directory (secai-split's). Defaults: "
                  "config/secai.yaml `lora:` (SECAI_LORA_<KEY> overrides), then these flags."),
        "eval": ("held-out loss, perplexity and answer checks, base vs adapter; JSON report and PNG",
                 "Evaluate on the dataset's test split (else valid): loss and perplexity with the "
                 "training masking, base vs adapter; batched generation on held-out prompts, scored "
                 "(analysis: every required section; codefix: the code block parses). With a "
                 "stage-2 adapter, also the stage-1 held-out loss before and after stage 2."),
        "validate": ("check a fine-tuned model directory before it is used or published",
                     "Check a fine-tuned model directory: required files, metadata (model/1) complete "
                     "and matching the files' hashes, the card, the adapter's shapes against the base "
                     "model, and that the model loads and generates. One line per problem; exit 1 if any."),
        "list": ("the shared store's fine-tuned models: stage, base, date, eval numbers",
                 "List the fine-tuned models in <models_dir>/fine-tuned (or --dir), newest first."),
        "fuse": ("write a whole model with the adapter folded in",
                 "Write a whole model with a fine-tuned model's adapter folded in."),
    }

    def add_subcommand_arguments(self, action, p):
        if action == "train":
            p.add_argument("--stage", choices=STAGES, required=True,
                           help="analysis (stage 1), codefix (stage 2) or combined (one stage on both)")
            p.add_argument("--data", required=True, metavar="DIR", help="dataset directory (train.jsonl, valid.jsonl, manifest.json)")
            p.add_argument("--base-model", metavar="DIR", help="base MLX model folder (default: the shared store's "
                           f"{models.REAL_BASE}, else the tiny test model)")
            p.add_argument("--from-adapter", metavar="DIR", help="continue from this fine-tuned model's adapter "
                           "(its directory, adapters/ or metadata.json): stage 2 starts from stage 1")
            p.add_argument("--name", help="output name (default: secai-STAGE-YYYYMMDD-HHMMSS)")
            p.add_argument("--out", metavar="DIR", help="parent of the output (default: <models_dir>/fine-tuned)")
            p.add_argument("--overwrite", action="store_true", help="replace an existing model of that name")
            p.add_argument("--resume", action="store_true", help="continue this run's interrupted attempt from its last "
                           "checkpoint (adapter, optimizer, step, schedule, data order); start afresh when there is none")
            p.add_argument("--fuse", action="store_true", help="also write fused/: the base with the adapter folded in")
            p.add_argument("--dequantize", action="store_true", help="with --fuse: full-precision weights (Hugging Face layout)")
            hp = p.add_argument_group("hyperparameters (default: config lora:)")
            for f in fields(Settings):
                flag = "--" + f.name.replace("_", "-")
                if f.type in ("bool", bool):
                    hp.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=None,
                                    help=f"(default: lora.{f.name} = {config.default('lora', f.name)})")
                elif f.name == "target_modules":
                    hp.add_argument(flag, dest=f.name, nargs="+", metavar="MODULE", default=None,
                                    help="module paths inside a block (default: every linear layer)")
                else:
                    typ = {"int": int, "float": float, "str": str}[str(f.type)]
                    hp.add_argument(flag, dest=f.name, type=typ, default=None, metavar={int: "N", float: "X", str: "NAME"}[typ],
                                    help=f"(default: lora.{f.name} = {config.default('lora', f.name)})")
        elif action == "eval":
            p.add_argument("--adapter", metavar="DIR", help="fine-tuned model directory (none: the base model alone)")
            p.add_argument("--base-model", metavar="DIR", help="base model folder (default: the adapter's)")
            p.add_argument("--data", metavar="DIR", help="dataset directory (default: the adapter's)")
            p.add_argument("--stage", choices=STAGES, help="how answers are scored (default: the adapter's stage)")
            p.add_argument("--samples", type=int, default=None, help="held-out prompts to generate for (default: config lora.eval_samples)")
            p.add_argument("--max-tokens", type=int, default=None, help="reply length limit (default: config lora.eval_max_tokens)")
            p.add_argument("-o", "--output", metavar="FILE", help="report here too (default: ADAPTER/eval.json, else stdout)")
            p.add_argument("--plot", metavar="PNG", help="loss curves here (default: ADAPTER/loss.png)")
        elif action == "validate":
            p.add_argument("model_dir", metavar="DIR", help="fine-tuned model directory")
            p.add_argument("--no-generate", action="store_true", help="skip loading the model and generating")
        elif action == "list":
            p.add_argument("--dir", metavar="DIR", help="where to look (default: <models_dir>/fine-tuned)")
            p.add_argument("--json", action="store_true", help="one JSON object per model instead of a table")
        elif action == "fuse":
            p.add_argument("model_dir", metavar="DIR", help="fine-tuned model directory")
            p.add_argument("-o", "--output", metavar="DIR", help="where (default: DIR/fused)")
            p.add_argument("--dequantize", action="store_true", help="full-precision weights (Hugging Face layout)")

    def run(self) -> int:
        a = self.args
        if a.action == "train":
            overrides = {f.name: getattr(a, f.name) for f in fields(Settings)}
            meta = train(settings(overrides), self.log, stage=a.stage, data=a.data, base_model=a.base_model,
                         from_adapter=a.from_adapter, name=a.name, out=a.out, overwrite=a.overwrite,
                         resume=a.resume, fuse_model=a.fuse, dequantize=a.dequantize)
            if meta:
                sys.stdout.buffer.write(dumps(meta))
        elif a.action == "eval":
            report = evaluate_model(
                settings(), self.log, adapter=a.adapter, base_model=a.base_model, data=a.data, stage=a.stage,
                samples=self.setting("samples", "eval_samples"), max_tokens=self.setting("max_tokens", "eval_max_tokens"))
            sys.stdout.buffer.write(save_eval(report, a.output, a.plot, a.adapter))
            self.log(eval_summary(report))
        elif a.action == "validate":
            problems = validate(Path(a.model_dir), generate=not a.no_generate)
            for problem in problems:
                print(escape(f"{a.model_dir}: {problem}"), file=sys.stderr)  # a list of problems, one a line
            if problems:
                self.error(f"{a.model_dir}: {len(problems)} problem(s); not a valid model")
                return EXIT_ERROR
            self.log(f"{a.model_dir}: valid")
        elif a.action == "list":
            rows = listing(Path(a.dir) if a.dir else models.fine_tuned_dir())
            if a.json:
                sys.stdout.buffer.write(b"".join(dumps(r) for r in rows))
            else:
                print(table(rows))
        elif a.action == "fuse":
            out = fuse_dir(a.model_dir, a.output, a.dequantize)
            self.log(f"{out}: fused model written")
        return EXIT_OK


def main():
    without_torch()
    entry(Lora)


if __name__ == "__main__":
    main()
