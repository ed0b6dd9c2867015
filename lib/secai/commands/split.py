"""secai-split: example/1 in, a dataset directory out (reading and writing it: secai.dataset.build; the
split itself: secai.dataset.split)."""

from __future__ import annotations

import argparse
from pathlib import Path

from secai import config
from secai.cli import Command, entry
from secai.errors import EXIT_OK, UsageError
from secai.dataset.build import Settings, build_dataset
from secai.dataset.split import KIND


class Split(Command):
    name = "secai-split"
    description = ("Split training examples (example/1) into a dataset directory: train.jsonl, valid.jsonl "
                   "and optionally test.jsonl, which `mlx_lm lora --data DIR` and "
                   "`datasets.load_dataset(\"json\", data_dir=DIR)` read, with manifest.json (counts, "
                   "seed, hashes) and a Hugging Face dataset card (README.md). The split is seeded and "
                   "grouped: every example of one finding (or, with --group-by rule, of one rule) lands in "
                   "one split, placed by a hash of its key, so adding examples never moves the others. "
                   "The directory is replaced atomically; a dataset in which a secret pattern is found "
                   "is refused.")
    examples = """\
  secai-split build/examples.jsonl -o build/dataset
  secai-narrate --stage analysis a.jsonl | secai-split -o build/dataset-stage1 --seed 7
  secai-split codefix.jsonl -o build/dataset-stage2 --test 0.1 --group-by rule \\
      --replay build/dataset-stage1 --replay-fraction 0.2

Groups are placed by sha256(seed, key) in [0,1): below --valid → valid, below --valid + --test →
test, else train; with two groups or more neither train nor valid is ever empty (the smallest group
of the fullest split is moved, and the move is recorded in manifest.json). --replay mixes a seeded
fraction of another file's (or dataset directory's train.jsonl's) stage-1 examples into train only,
leaving out those of findings held out here. Same inputs and flags give a byte-identical directory."""
    input_kind = KIND
    writes = "dir"
    config_section = "split"  # secai.config checks a setting, argparse its flag

    def add_arguments(self, p):
        p.add_argument("--valid", type=_fraction, metavar="FRACTION",
                       help=f"share of groups in valid.jsonl (default: split.valid, {config.default('split', 'valid')})")
        p.add_argument("--test", type=_fraction, metavar="FRACTION",
                       help=f"share of groups in test.jsonl (default: split.test, {config.default('split', 'test')}; "
                            "0: no test split)")
        p.add_argument("--seed", type=int, metavar="N", help="seed of the split and of the order in each file "
                                                             f"(default: split.seed, {config.default('split', 'seed')})")
        p.add_argument("--group-by", choices=("finding", "rule"),
                       help="keep together all examples of one finding (default) or of one tool+rule")
        p.add_argument("--replay", metavar="FILE", help="example/1 JSONL, or a dataset directory (its "
                                                        "train.jsonl), whose stage-1 examples are mixed into train")
        p.add_argument("--replay-fraction", type=_fraction, metavar="F",
                       help=f"share of the replayable stage-1 examples mixed in (default: split.replay_fraction "
                            f"or {config.default('split', 'replay_fraction')})")
        p.add_argument("--name", help=f"the dataset's name in its card (default: {config.default('split', 'name')!r})")
        p.add_argument("--license", metavar="ID", help="license id in the card's metadata "
                                                       f"(default: split.license, {config.default('split', 'license')})")

    def check(self, ns) -> None:
        valid, test = self.setting("valid"), self.setting("test")
        if valid + test >= 1:
            raise UsageError(f"--valid {valid} and --test {test} leave nothing for train")
        if ns.replay_fraction is not None and not ns.replay:
            raise UsageError("--replay-fraction needs --replay FILE")

    def run(self) -> int:
        a = self.args
        s = Settings(seed=self.setting("seed"), valid=self.setting("valid"), test=self.setting("test"),
                     group_by=self.setting("group_by"), name=self.setting("name"), license=self.setting("license"),
                     replay_fraction=self.setting("replay_fraction") if a.replay else 0.0)
        out = Path(a.output)
        built = build_dataset(a.inputs, out, s, self.reject, replay_from=a.replay)
        for split in built.empty:
            self.log(f"warning: {split} split is empty ({built.groups} group{'s' if built.groups != 1 else ''}); "
                     f"{split}.jsonl is not written")
        n = built.counts
        replayed = f" ({built.replayed} replayed)" if built.replayed is not None else ""
        self.log(f"{sum(n.values())} examples in {built.groups} {s.group_by} groups: train {n['train']}{replayed}, "
                 f"valid {n['valid']}, test {n['test']}; "
                 f"{built.duplicates} duplicates dropped; wrote {out}")
        return EXIT_OK


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"{text} is not a fraction between 0 and 1")
    return value


def main():
    entry(Split)


if __name__ == "__main__":
    main()
