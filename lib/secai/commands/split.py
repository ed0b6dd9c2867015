"""secai-split: example/1 in, a dataset directory out (the split itself: secai.dataset.split)."""

from __future__ import annotations

import argparse
import hashlib
import sys
from collections import Counter
from pathlib import Path

from secai import config
from secai.cli import EXIT_OK, Command, InputError, UsageError, entry, parse_lines
from secai.dataset.card import build_manifest, write_dataset
from secai.dataset.split import (KIND, SPLITS, Example, assign, check_replaceable, group_key, order, public_name,
                                 select_replay, unit)
from secai.secrets import record_secrets
from secai.files import building


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
        valid, test = self._setting(ns, "valid"), self._setting(ns, "test")
        if valid + test >= 1:
            raise UsageError(f"--valid {valid} and --test {test} leave nothing for train")
        if ns.replay_fraction is not None and not ns.replay:
            raise UsageError("--replay-fraction needs --replay FILE")

    @staticmethod
    def _setting(ns, name: str):
        value = getattr(ns, name)
        if value is not None:
            return value
        return config.get("split", name)  # secai.config checks the setting, argparse the flag

    def setting(self, name: str):
        return self._setting(self.args, name)

    # -- input
    def read_examples(self, names: list[str], stats: list[dict]) -> list[Example]:
        """Every valid example of the inputs, exact duplicates dropped; a second, different record
        with an id already read is an error. Appends {path, sha256, examples} per input to stats."""
        by_id: dict[str, Example] = {}
        for name in names:
            data = self._read_bytes(name)
            if data is None:
                continue
            count = 0
            for lineno, rec in parse_lines(name, data, KIND):
                if isinstance(rec, InputError):
                    self.reject(rec)
                    continue
                count += 1
                seen = by_id.get(rec["id"])
                if seen is None:
                    by_id[rec["id"]] = Example(rec, name, lineno)
                elif seen.record != rec:
                    self.reject(InputError(name, lineno, f"example {rec['id']} differs from the one with "
                                                         f"the same id at {seen.file}:{seen.line}"))
                else:
                    self.duplicates += 1
            stats.append({"path": public_name(name), "sha256": hashlib.sha256(data).hexdigest(), "examples": count})
        return [e for e in by_id.values() if self._clean(e)]

    def _read_bytes(self, name: str) -> bytes | None:
        try:
            return sys.stdin.buffer.read() if name == "-" else Path(name).read_bytes()
        except OSError as exc:
            self.reject(InputError(name, None, exc.strerror or str(exc)))
            return None

    def _clean(self, e: Example) -> bool:
        """False (after --rejects set it aside) for an example with a secret; raises without --rejects."""
        hits = record_secrets(e.record)  # every field, metadata included
        if not hits:
            return True
        where, names = hits[0]
        self.reject(InputError(e.file, e.line, f"example {e.id}: {where}: secret pattern "
                                               f"{', '.join(names)} found; a dataset with secrets is not written"))
        return False

    # -- the run
    def run(self) -> int:
        a = self.args
        seed, valid, test = self.setting("seed"), self.setting("valid"), self.setting("test")
        group_by = self.setting("group_by")
        out = Path(a.output)
        check_replaceable(out)
        self.duplicates = 0
        inputs: list[dict] = []
        examples = self.read_examples(a.inputs, inputs)
        if not examples:
            raise InputError(", ".join(a.inputs), None, "no examples: a dataset needs at least one")
        sizes = Counter(group_key(e.record, group_by) for e in examples)
        placed, moves = assign(sizes, seed, valid, test, group_by)
        splits = {s: [] for s in SPLITS}
        for e in examples:
            splits[placed[group_key(e.record, group_by)]].append(e)
        replay = self._replay(splits, placed, seed, group_by) if a.replay else None
        splits = {s: order(xs, seed) for s, xs in splits.items()}
        for s in ("valid", "test"):
            if not splits[s] and (valid if s == "valid" else test) > 0:
                self.log(f"warning: {s} split is empty ({len(sizes)} group{'s' if len(sizes) != 1 else ''}); "
                         f"{s}.jsonl is not written")
        settings = {"seed": seed, "valid": valid, "test": test, "group_by": group_by,
                    "name": self.setting("name"), "license": self.setting("license")}
        manifest = build_manifest(splits, sizes, placed, moves, inputs, replay, settings, self.duplicates)
        with building(out) as tmp:
            write_dataset(tmp, splits, manifest)
            check_replaceable(out)
        n = {s: len(xs) for s, xs in splits.items()}
        replayed = f" ({replay['added']} replayed)" if replay else ""
        self.log(f"{sum(n.values())} examples in {len(sizes)} {group_by} groups: train {n['train']}{replayed}, "
                 f"valid {n['valid']}, test {n['test']}; "
                 f"{self.duplicates} duplicates dropped; wrote {out}")
        return EXIT_OK

    def _replay(self, splits, placed, seed, group_by) -> dict:
        a = self.args
        fraction = self.setting("replay_fraction")
        valid, test = self.setting("valid"), self.setting("test")
        path = Path(a.replay)
        name = str(path / "train.jsonl") if path.is_dir() else a.replay
        shown = f"{public_name(str(path))}/train.jsonl" if path.is_dir() else public_name(name)
        data = self._read_bytes(name)
        if data is None:
            return {"path": shown, "fraction": fraction, "added": 0}
        held_out = {s: {e.record["metadata"]["finding_id"] for e in splits[s]} for s in ("valid", "test")}
        held_findings = held_out["valid"] | held_out["test"]
        held_groups = {k for k, s in placed.items() if s != "train"}
        ids = {e.id for xs in splits.values() for e in xs}
        stage1, leaked, duplicate, candidates = 0, 0, 0, []
        for lineno, rec in parse_lines(name, data, KIND):
            if isinstance(rec, InputError):
                self.reject(rec)
                continue
            if rec["stage"] != "analysis":
                continue
            stage1 += 1
            key = group_key(rec, group_by)
            # held out: its finding or group is in valid/test here, or a group new here would be placed
            # there by its hash — so a later, larger dataset with the same seed cannot hold it out either
            if (rec["metadata"]["finding_id"] in held_findings or key in held_groups
                    or (key not in placed and unit(seed, group_by, key) < valid + test)):
                leaked += 1
            elif rec["id"] in ids:
                duplicate += 1
            else:
                ids.add(rec["id"])
                candidates.append(Example(rec, name, lineno, replayed=True))
        chosen = [e for e in select_replay(candidates, fraction, seed) if self._clean(e)]
        splits["train"].extend(chosen)
        return {"path": shown, "sha256": hashlib.sha256(data).hexdigest(), "fraction": fraction,
                "stage1_examples": stage1, "excluded_held_out": leaked, "excluded_duplicate": duplicate,
                "eligible": len(candidates), "added": len(chosen)}


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


def main():
    entry(Split)


if __name__ == "__main__":
    main()
