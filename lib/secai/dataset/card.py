"""The dataset directory's manifest (dataset/1, schemas/dataset.schema.json) and its Hugging Face
dataset card (README.md), for the split secai.dataset.split makes; write_dataset writes them with
the split files."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import orjson
import yaml

from secai import __version__
from secai.records import dumps, schema_error
from secai.dataset.split import HF_SPLIT, MANIFEST_KIND, SEVERITIES, Example
from secai.files import sha256_file


def _counts(examples: list[Example], field: str) -> dict[str, int]:
    if field == "stage":
        return dict(sorted(Counter(e.record["stage"] for e in examples).items()))
    return dict(sorted(Counter(str(e.record["metadata"].get(field, "unknown")) for e in examples).items()))


def build_manifest(splits, sizes, placed, moves, inputs, replay, settings, duplicates) -> dict:
    """manifest.json without the file hashes (write_dataset adds them)."""
    everything = [e for xs in splits.values() for e in xs]
    split_info = {}
    for s, xs in splits.items():
        if not xs:
            continue
        own = [e for e in xs if not e.replayed]
        split_info[s] = {
            "file": f"{s}.jsonl", "hf_split": HF_SPLIT[s], "examples": len(xs),
            "groups": sum(1 for v in placed.values() if v == s),
            "findings": len({e.record["metadata"]["finding_id"] for e in own}),
            "replayed": len(xs) - len(own), "stages": _counts(xs, "stage"),
        }
    return {
        "schema": MANIFEST_KIND,
        "name": settings["name"],
        "license": settings["license"],
        "secai_version": __version__,
        "seed": settings["seed"],
        "group_by": settings["group_by"],
        "fractions": {"train": round(1 - settings["valid"] - settings["test"], 12),
                      "valid": settings["valid"], "test": settings["test"]},
        "groups": len(sizes),
        "moved_groups": moves,
        "examples": len(everything),
        "duplicates_dropped": duplicates,
        "splits": split_info,
        "stages": _counts(everything, "stage"),
        "tools": _counts(everything, "tool"),
        "categories": _counts(everything, "category"),
        "severities": _counts(everything, "severity"),
        "producers": producers(everything),
        "inputs": inputs,
        "replay": replay,
        "secret_check": "secai.secrets.record_secrets on every field of every example",
        "files": {},
    }


def producers(examples: list[Example]) -> dict[str, int]:
    """How many examples each analysis producer wrote (metadata.provenance): 'kb' — also where the
    mlx backend's reply was unusable and the kb analysis stands in (provenance.fallback) — or
    'mlx:<model name>' (a local model path reduced to its last part); 'unknown' where none is said."""
    counts = Counter()
    for e in examples:
        prov = e.record["metadata"].get("provenance") or {}
        backend, model = prov.get("backend"), prov.get("model")
        if prov.get("fallback"):
            backend = "kb"
        elif backend and backend != "kb" and model:
            backend = f"{backend}:{Path(model.rstrip('/')).name or model}"
        counts[backend or "unknown"] += 1
    return dict(sorted(counts.items()))


def write_dataset(d: Path, splits: dict, manifest: dict) -> None:
    """Write the split files, the card and the manifest into the (new, empty) folder d."""
    for s, xs in splits.items():
        if xs:
            with open(d / f"{s}.jsonl", "wb") as fh:
                for e in xs:
                    fh.write(dumps(e.record))
    (d / "README.md").write_text(card(manifest), encoding="utf-8")
    manifest["files"] = {p.name: sha256_file(p) for p in sorted(d.iterdir()) if p.is_file()}
    reason = schema_error(MANIFEST_KIND, manifest)
    if reason:  # a bug, not bad input
        raise RuntimeError(f"manifest is not a valid {MANIFEST_KIND}: {reason}")
    (d / "manifest.json").write_bytes(orjson.dumps(manifest, option=orjson.OPT_SORT_KEYS | orjson.OPT_INDENT_2) + b"\n")


def size_category(n: int) -> str:
    for limit, label in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"),
                         (1_000_000, "100K<n<1M"), (10_000_000, "1M<n<10M")):
        if n < limit:
            return label
    return "10M<n<100M"


def _table(title: str, counts: dict[str, int], order_first=()) -> str:
    keys = [k for k in order_first if k in counts] + sorted((k for k in counts if k not in order_first),
                                                            key=lambda k: (-counts[k], k))
    rows = "\n".join(f"| {_cell(k)} | {counts[k]} |" for k in keys)
    return f"| {title} | examples |\n|---|---:|\n{rows}\n"


def _cell(text: str) -> str:
    return re.sub(r"[|\n\r]", " ", text)


def own_stages(m: dict) -> dict[str, int]:
    """Examples per stage of the manifest `m`, the replayed stage-1 examples left out."""
    stages = dict(m["stages"])
    if m["replay"]:
        stages["analysis"] = stages.get("analysis", 0) - m["replay"]["added"]
    return {k: v for k, v in stages.items() if v > 0}


def title(m: dict) -> str:
    """The dataset's name as its card shows it (pretty_name and heading): the manifest's name and what
    its own examples teach, so that the stage-1 and stage-2 datasets of one build read apart."""
    kind = {("analysis",): "stage 1, analysis", ("codefix",): "stage 2, code fixes",
            ("analysis", "codefix"): "analysis and code fixes"}.get(tuple(sorted(own_stages(m))))
    return f"{m['name']} ({kind})" if kind else m["name"]


def split_rule(f: dict) -> str:
    """How a group's number u in [0, 1) places it, with the configured fractions."""
    v, t = f["valid"], f["test"]
    parts = ([f"u < {v:g} → validation"] if v else []) + ([f"{v:g} ≤ u < {v + t:g} → test"] if t else [])
    return ", ".join(parts + [f"{'otherwise' if parts else 'every group'} → train"])


def card(m: dict) -> str:
    """README.md: a Hugging Face dataset card for the manifest `m`."""
    splits = m["splits"]
    categories = sorted(k for k in m["categories"] if k != "unknown")
    tags = ["security", "sast", "vulnerabilities", "remediation", "code", "secai"]
    tags += [c for c in categories if c not in tags]
    meta = {
        "license": m["license"],
        "pretty_name": title(m),
        "task_categories": ["text-generation"],
        "language": ["en"],
        "tags": tags,
        "size_categories": [size_category(m["examples"])],
        "configs": [{"config_name": "default",
                     "data_files": [{"split": info["hf_split"], "path": info["file"]} for info in splits.values()]}],
    }
    front = yaml.safe_dump(meta, sort_keys=False, allow_unicode=True, default_flow_style=False)
    rows = "\n".join(
        f"| {info['hf_split']} | `{info['file']}` | {info['examples']} | {info['groups']} | {info['findings']} | "
        f"{info['stages'].get('analysis', 0)} | {info['stages'].get('codefix', 0)} | {info['replayed']} |"
        for info in splits.values())
    stages = ", ".join(f"{n} {s}" for s, n in m["stages"].items())
    by_what = "finding (`metadata.finding_id`)" if m["group_by"] == "finding" else \
        "rule (`metadata.tool` and `metadata.rule_id`)"
    f = m["fractions"]
    moved = "".join(f"\n- group `{x['group']}` ({x['examples']} examples) moved from {x['from']} to {x['to']} "
                    "so that no split is empty." for x in m["moved_groups"])
    inputs = ", ".join(f"`{i['path']}` (sha256 `{i['sha256'][:16]}…`, {i['examples']} examples)" for i in m["inputs"])
    replay = ""
    if m["replay"]:
        r = m["replay"]
        replay = (f"\n\n**Replay.** {r['added']} stage-1 (`analysis`) examples from `{r['path']}` were mixed into the "
                  f"train split only (a seeded {r['fraction']:g} of the {r.get('eligible', 0)} eligible; "
                  f"{r.get('excluded_held_out', 0)} left out because their finding or group is — or by its hash "
                  f"would be — in this dataset's validation or test split, {r.get('excluded_duplicate', 0)} "
                  "because they were already in it), "
                  "so that a second fine-tuning stage keeps practising the first stage's task.")
    prod = m["producers"]
    models = {k: v for k, v in prod.items() if k not in ("kb", "unknown")}
    notes = []
    if prod.get("kb"):
        notes.append(f"{prod['kb']} examples carry analyses written by secai's **kb backend**: composed "
                     "deterministically from a hand-written knowledge base and the scanner's own texts, without a "
                     "language model. They are consistent and specific to each finding, but templated: a model "
                     "trained on them learns that knowledge base's phrasing.")
    if models:
        notes.append(f"{sum(models.values())} examples carry analyses written by a **language model** "
                     f"({', '.join(f'`{k}`: {v}' for k, v in models.items())}); they were checked for structure, "
                     "not reviewed by a person, and can be wrong.")
    if prod.get("unknown"):
        notes.append(f"{prod['unknown']} examples do not record which backend wrote their analysis.")
    return f"""---
{front}---

# {title(m)}

Instruction-tuning examples that teach a language model to explain security-scanner findings and
to fix the code they point at. Each example is a chat (`system`, `user`, `assistant`): the user
turn presents one finding of a scanner (tool, rule, severity, CWE, location and, where available,
the code around it); the assistant turn answers with a structured analysis (stage `analysis`:
summary, impact, remediation, prevention, risk) or with fixed code, its explanation and how to
validate it (stage `codefix`).

It was made by secai {m['secai_version']} (`secai-parse` → `secai-analyze` →
`secai-narrate` → `secai-split`) from {inputs}: {m['examples']} examples ({stages}) about
{sum(i['findings'] for i in splits.values())} findings in {m['groups']} groups.

## Splits

| split | file | examples | groups | findings | analysis | codefix | replayed |
|---|---|---:|---:|---:|---:|---:|---:|
{rows}

{_table('tool', m['tools'])}
{_table('category', m['categories'])}
{_table('severity', m['severities'], SEVERITIES)}
## Use

```python
from datasets import load_dataset
ds = load_dataset("json", data_dir="path/to/this/folder")   # or the Hub repository's name
```

```sh
mlx_lm lora --model <model> --train --data path/to/this/folder   # reads the `messages` of each line
```

## Fields

Every line is one JSON object (`schema: "example/1"`, keys sorted):

- `id` — the example's stable identifier (32 hex digits).
- `stage` — `analysis` (explain a finding) or `codefix` (fix its code).
- `messages` — the chat: a list of `{{role, content}}` with roles `system`, `user`, `assistant`; the
  format `mlx_lm lora` and chat templates read directly.
- `metadata.finding_id` — the finding's fingerprint (tool, rule and location or package; never a
  timestamp or run id), shared by all examples about that finding.
- `metadata.tool`, `metadata.rule_id` — the scanner and its rule.
- `metadata.category` — sast, sca, iac, secret, dast or container.
- `metadata.severity` — critical, high, medium, low or info (normalized from the tool's own).
- `metadata.cwe` — the finding's CWE identifiers, when it has any.
- `metadata.language` — the language of the code in the example, when there is code.
- `metadata.provenance` — what produced the text: the analysis backend (`kb` or `mlx`, with the
  model and adapter), prompt and knowledge-base versions, secai's version, and the scanner report,
  CI run and commit the finding came from, when known.

`manifest.json` lists the counts per split, stage, tool, category and severity, the seed and
fractions, and the SHA-256 of every file here and of every input.

## How the split was made

Grouped by {by_what}: all examples of one group are in the same split, so no {m['group_by']} of the
validation{' or test' if 'test' in splits else ''} split is seen in training. Each group is placed by
its own hash: the first 64 bits of sha256 of the seed ({m['seed']}), the grouping and its key, read as
a number u in [0, 1): {split_rule(f)} (target shares train {f['train']:g}, validation {f['valid']:g},
test {f['test']:g}). A group's split depends only on
the seed and its key, so a later, larger version of this dataset keeps every earlier group where it
was. Within each file the order is a seeded shuffle (sorted by sha256 of the seed and example id).{moved}{replay}

## Redaction

`secai-narrate` redacts the secrets scanners reported and common token patterns in every field
before an example is written, and `secai-split` refuses to write a dataset in which any field of an
example still matches one of secai's secret patterns. Pattern matching cannot recognise every secret:
report anything that looks like one.

## Producers

{' '.join(notes) if notes else 'The provenance does not record which backend wrote the analyses.'}

## Limitations

- Scanner findings include false positives; an example explains a finding, it does not confirm it.
- The analyses and fixes were not reviewed by people. Code fixes were checked to parse for their
  language, not to be correct, complete or safe.
- The findings come from the scanned projects at hand and cover their languages, tools and rules
  unevenly (see the tables above); rare rules have few examples.
- Code excerpts in the examples come from the scanned repositories and keep their licenses.
"""
