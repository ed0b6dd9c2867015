"""A dataset directory from example files: read them (exact duplicates dropped, a different record
under a known id and a record with a secret rejected), place the groups (secai.dataset.split), mix
in replayed stage-1 examples, and write the files with their manifest and card (secai.dataset.card),
built aside and swapped in. Bad inputs go to the `reject` callback, so that a caller keeping going
loses nothing else; the rules themselves are documented in secai.dataset.split.
"""

from __future__ import annotations

import hashlib
import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from secai.records import parse_lines
from secai.errors import InputError
from secai.dataset.card import build_manifest, write_dataset
from secai.dataset.split import (KIND, SPLITS, Example, assign, check_replaceable, group_key, order, public_name,
                                 select_replay, unit)
from secai.files import building
from secai.secrets import record_secrets

Reject = Callable[[InputError], None]


@dataclass(frozen=True)
class Settings:
    seed: int
    valid: float
    test: float
    group_by: str = "finding"   # or "rule"
    name: str = ""              # the dataset's name in its card
    license: str = ""           # license id in the card's metadata
    replay_fraction: float = 0.0


@dataclass
class Built:
    """What was written, for the caller's summary."""
    counts: dict[str, int]     # examples per split
    groups: int
    duplicates: int            # exact duplicates dropped
    replayed: int | None       # stage-1 examples mixed into train (None: no replay)
    empty: list[str]           # splits asked for that came out empty (not written)


def read_bytes(name: str, reject: Reject) -> bytes | None:
    """A file's bytes ('-': stdin), or None once an unreadable one is rejected."""
    try:
        return sys.stdin.buffer.read() if name == "-" else Path(name).read_bytes()
    except OSError as exc:
        reject(InputError(name, None, exc.strerror or str(exc)))
        return None


def secret_free(e: Example, reject: Reject) -> bool:
    """False, once it is rejected, for an example with a secret in any field (metadata included)."""
    hits = record_secrets(e.record)
    if not hits:
        return True
    where, names = hits[0]
    reject(InputError(e.file, e.line, f"example {e.id}: {where}: secret pattern "
                                      f"{', '.join(names)} found; a dataset with secrets is not written"))
    return False


def read_examples(names: list[str], reject: Reject) -> tuple[list[Example], list[dict], int]:
    """(every valid example of the inputs, {path, sha256, examples} per input, exact duplicates
    dropped). A second, different record with an id already read is rejected, and so is an
    example with a secret."""
    by_id: dict[str, Example] = {}
    stats, duplicates = [], 0
    for name in names:
        data = read_bytes(name, reject)
        if data is None:
            continue
        count = 0
        for lineno, rec in parse_lines(name, data, KIND):
            if isinstance(rec, InputError):
                reject(rec)
                continue
            count += 1
            seen = by_id.get(rec["id"])
            if seen is None:
                by_id[rec["id"]] = Example(rec, name, lineno)
            elif seen.record != rec:
                reject(InputError(name, lineno, f"example {rec['id']} differs from the one with "
                                                f"the same id at {seen.file}:{seen.line}"))
            else:
                duplicates += 1
        stats.append({"path": public_name(name), "sha256": hashlib.sha256(data).hexdigest(), "examples": count})
    return [e for e in by_id.values() if secret_free(e, reject)], stats, duplicates


def replay(source: str, splits: dict[str, list[Example]], placed: dict[str, str], s: Settings,
           reject: Reject) -> dict:
    """Mix a seeded fraction of `source`'s stage-1 examples (a file, or a dataset directory's
    train.jsonl) into splits["train"], leaving out those held out here; returns the manifest's
    replay record."""
    path = Path(source)
    name = str(path / "train.jsonl") if path.is_dir() else source
    shown = f"{public_name(str(path))}/train.jsonl" if path.is_dir() else public_name(name)
    data = read_bytes(name, reject)
    if data is None:
        return {"path": shown, "fraction": s.replay_fraction, "added": 0}
    held_out = {x: {e.record["metadata"]["finding_id"] for e in splits[x]} for x in ("valid", "test")}
    held_findings = held_out["valid"] | held_out["test"]
    held_groups = {k for k, x in placed.items() if x != "train"}
    ids = {e.id for xs in splits.values() for e in xs}
    stage1, leaked, duplicate, candidates = 0, 0, 0, []
    for lineno, rec in parse_lines(name, data, KIND):
        if isinstance(rec, InputError):
            reject(rec)
            continue
        if rec["stage"] != "analysis":
            continue
        stage1 += 1
        key = group_key(rec, s.group_by)
        # held out: its finding or group is in valid/test here, or a group new here would be placed
        # there by its hash — so a later, larger dataset with the same seed cannot hold it out either
        if (rec["metadata"]["finding_id"] in held_findings or key in held_groups
                or (key not in placed and unit(s.seed, s.group_by, key) < s.valid + s.test)):
            leaked += 1
        elif rec["id"] in ids:
            duplicate += 1
        else:
            ids.add(rec["id"])
            candidates.append(Example(rec, name, lineno, replayed=True))
    chosen = [e for e in select_replay(candidates, s.replay_fraction, s.seed) if secret_free(e, reject)]
    splits["train"].extend(chosen)
    return {"path": shown, "sha256": hashlib.sha256(data).hexdigest(), "fraction": s.replay_fraction,
            "stage1_examples": stage1, "excluded_held_out": leaked, "excluded_duplicate": duplicate,
            "eligible": len(candidates), "added": len(chosen)}


def build_dataset(inputs: list[str], out: Path, s: Settings, reject: Reject, replay_from: str | None = None) -> Built:
    """Read `inputs`, split them by `s`, and write the dataset directory `out` (replaced in one
    rename; only nothing, an empty folder or a dataset may be replaced)."""
    check_replaceable(out)
    examples, stats, duplicates = read_examples(inputs, reject)
    if not examples:
        raise InputError(", ".join(inputs), None, "no examples: a dataset needs at least one")
    sizes = Counter(group_key(e.record, s.group_by) for e in examples)
    placed, moves = assign(sizes, s.seed, s.valid, s.test, s.group_by)
    splits = {x: [] for x in SPLITS}
    for e in examples:
        splits[placed[group_key(e.record, s.group_by)]].append(e)
    replayed = replay(replay_from, splits, placed, s, reject) if replay_from else None
    splits = {x: order(xs, s.seed) for x, xs in splits.items()}
    settings = {"seed": s.seed, "valid": s.valid, "test": s.test, "group_by": s.group_by,
                "name": s.name, "license": s.license}
    manifest = build_manifest(splits, sizes, placed, moves, stats, replayed, settings, duplicates)
    with building(out) as tmp:
        write_dataset(tmp, splits, manifest)
        check_replaceable(out)
    empty = [x for x in ("valid", "test") if not splits[x] and (s.valid if x == "valid" else s.test) > 0]
    return Built({x: len(xs) for x, xs in splits.items()}, len(sizes), duplicates,
                 replayed["added"] if replayed else None, empty)
