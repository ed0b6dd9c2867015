"""The dataset split: example/1 in, a dataset directory out — a seeded, grouped train/valid(/test)
split (reading and writing the directory: secai.dataset.build; the command: secai.commands.split).

The directory holds `train.jsonl`, `valid.jsonl` and, with `--test`, `test.jsonl` (each line one
example exactly as read, sorted keys: `mlx_lm lora --data DIR` reads their `messages`, and
`datasets.load_dataset("json", data_dir=DIR)` reads them whole), `README.md` (a Hugging Face dataset
card with YAML metadata) and `manifest.json` (dataset/1, schemas/dataset.schema.json: counts,
seed, fractions, grouping, the SHA-256 of every file and of every input). Same inputs and flags:
a byte-identical directory.

How examples are split:
- Examples are grouped by finding (`metadata.finding_id`) or, with `--group-by rule`, by tool and
  rule (`metadata.tool`, `metadata.rule_id`). A group never straddles two splits.
- Each group is placed by its own hash: u = sha256("secai-split", seed, group_by, key) read as a
  number in [0, 1); u < valid → valid, u < valid + test → test, else train. A group's split depends
  on nothing but the seed and its key, so adding examples or groups never moves another group, and
  adding a test split only takes groups from train.
- Fix-up for tiny datasets: with ≥ 2 groups, train and valid are never empty (unless --valid 0),
  nor, with ≥ 3 groups, a test split asked for: an empty split gets the smallest group (fewest
  examples, then lowest u) of the split holding the most groups. Only then can a group's split
  depend on the others; the moves are listed in the manifest. A single group always goes to train
  (valid.jsonl is then not written: mlx_lm reads an absent file as no validation, an empty one fails).
- Within each file the order is a seeded shuffle: examples sorted by sha256(seed, example id) —
  independent of input order.
- Replay (`--replay FILE --replay-fraction F`): of FILE's stage-1 (`analysis`) examples, those whose
  finding or group is in this dataset's valid or test split are dropped (no leakage), and so are
  those of groups absent here that the hash would place in valid or test (so that a later, larger
  dataset with the same seed cannot hold them out either), and ids already in the dataset; a seeded
  fraction F of the rest (the first round(F·n) by sha256(seed, id)) joins the train split only.
- A dataset with a secret in it is never written: every field of every example is checked with
  `secai.secrets.record_secrets`.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import orjson

from secai.errors import InputError

KIND = "example/1"
MANIFEST_KIND = "dataset/1"
SPLITS = ("train", "valid", "test")
HF_SPLIT = {"train": "train", "valid": "validation", "test": "test"}  # Hugging Face split names
SEVERITIES = ("critical", "high", "medium", "low", "info")


@dataclass
class Example:
    """One input example and where it came from (for FILE:LINE errors)."""
    record: dict
    file: str
    line: int
    replayed: bool = False

    @property
    def id(self) -> str:
        return self.record["id"]


# ---------------------------------------------------------------- the split itself

def unit(*parts) -> float:
    """A number in [0, 1) fixed by `parts` alone (first 64 bits of their SHA-256)."""
    digest = hashlib.sha256("\x1f".join(["secai-split", *map(str, parts)]).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def group_key(record: dict, group_by: str) -> str:
    """The key of an example's group: its finding id, or its tool and rule (as 'tool/rule_id')."""
    m = record["metadata"]
    if group_by == "finding":
        return m["finding_id"]
    return f"{m['tool']}/{m['rule_id']}"


def assign(sizes: dict[str, int], seed: int, valid: float, test: float, group_by: str = "finding"):
    """Place each group (key → number of examples) in a split: ({key: split}, [moves]).
    See the module docstring for the rule and the small-dataset fix-up."""
    u = {k: unit(seed, group_by, k) for k in sizes}
    placed = {k: "valid" if u[k] < valid else "test" if u[k] < valid + test else "train" for k in sizes}
    moves, done = [], []
    need = ["train"] + (["valid"] if valid > 0 else []) + (["test"] if test > 0 else [])
    for split in need[:len(sizes)]:
        members = {s: [k for k in sizes if placed[k] == s] for s in SPLITS}
        if not members[split]:
            # some other split has a group to spare: one with two or more, or one not yet needed
            donors = [s for s in SPLITS if s != split and (len(members[s]) > 1 or (members[s] and s not in done))]
            donor = max(donors, key=lambda s: (len(members[s]), -SPLITS.index(s)))
            key = min(members[donor], key=lambda k: (sizes[k], u[k], k))
            placed[key] = split
            moves.append({"group": key, "from": donor, "to": split, "examples": sizes[key]})
        done.append(split)
    return placed, moves


def order(examples: list[Example], seed: int) -> list[Example]:
    """The seeded shuffle of one split: sorted by sha256(seed, id)."""
    return sorted(examples, key=lambda e: (hashlib.sha256(f"secai-split\x1forder\x1f{seed}\x1f{e.id}".encode())
                                           .digest(), e.id))


def select_replay(candidates: list[Example], fraction: float, seed: int) -> list[Example]:
    """A seeded fraction of `candidates`: the first round(fraction·n) by sha256(seed, id)."""
    ranked = sorted(candidates, key=lambda e: (unit(seed, "replay", e.id), e.id))
    return ranked[:int(fraction * len(ranked) + 0.5)]


# ---------------------------------------------------------------- reading


def public_name(name: str) -> str:
    """An input's name as the manifest and card show it: relative paths as given, absolute ones
    by their last part only (no local directories in a published card)."""
    return Path(name).name if os.path.isabs(name) else name


# ---------------------------------------------------------------- writing

def check_replaceable(out: Path) -> None:
    """Refuse to replace anything but nothing, an empty folder or a dataset this command wrote."""
    if not out.exists() and not out.is_symlink():
        return
    if out.is_symlink() or not out.is_dir():
        raise InputError(str(out), None, "exists and is not a directory")
    if not any(out.iterdir()):
        return
    try:
        kind = orjson.loads((out / "manifest.json").read_bytes()).get("schema")
    except (OSError, orjson.JSONDecodeError, AttributeError):
        kind = None
    if kind != MANIFEST_KIND:
        raise InputError(str(out), None, f"exists and is not a {MANIFEST_KIND} dataset (no manifest.json "
                                         "of one); refusing to replace it")
