"""secai-split: a seeded, grouped, byte-reproducible split into a dataset directory that mlx_lm and
Hugging Face datasets read; groups never cross splits nor move when others are added; replay only
into train and never of held-out findings; an atomic directory; secrets and empty input refused."""

from __future__ import annotations

import hashlib
import os
import random
from argparse import Namespace
from collections import Counter
from pathlib import Path

import orjson
import pytest
import yaml
from conftest import run_command

from secai.records import dumps, schema_error
from secai.commands.split import Split
from secai.dataset.split import assign, unit

SPLIT_FILES = ("train.jsonl", "valid.jsonl", "test.jsonl")


def example(finding: int, n: int = 0, stage: str = "analysis", tool: str = "semgrep", rule: str | None = None,
            **meta) -> dict:
    """A valid example/1 of finding number `finding` (its n-th example)."""
    fid = hashlib.sha256(f"finding {finding}".encode()).hexdigest()[:32]
    rec = {
        "schema": "example/1",
        "id": hashlib.sha256(f"{stage} {fid} {n}".encode()).hexdigest()[:32],
        "stage": stage,
        "messages": [
            {"role": "system", "content": "You are a security engineer. Explain the finding."},
            {"role": "user", "content": f"Finding {finding} ({tool} {rule or f'rule-{finding % 7}'}): example {n}"},
            {"role": "assistant", "content": f"Summary of finding {finding}: use parameterized queries."},
        ],
        "metadata": {
            "finding_id": fid, "rule_id": rule or f"rule-{finding % 7}", "tool": tool, "category": "sast",
            "severity": ("critical", "high", "medium", "low", "info")[finding % 5],
            "provenance": {"backend": "kb", "prompt_version": "1", "kb_version": "1", "secai_version": "0.1.0"},
            **meta,
        },
    }
    if finding % 3:
        rec["metadata"]["cwe"] = [f"CWE-{79 + finding % 3}"]
    if finding % 2:
        rec["metadata"]["language"] = "python"
    assert schema_error("example/1", rec) is None
    return rec


def examples(findings, per: int = 2, **kw) -> list[dict]:
    return [example(f, n, **kw) for f in findings for n in range(per)]


def write(path: Path, records) -> Path:
    path.write_bytes(b"".join(dumps(r) for r in records))
    return path


def split(tmp_path, records, *argv, out="dataset", name="examples.jsonl"):
    src = write(tmp_path / name, records)
    code, stdout, err = run_command(Split, [str(src), "-o", str(tmp_path / out), *argv], raw=True)
    assert stdout == ""  # stdout stays data-only: nothing to say there
    return code, err


def read_split(d: Path, name: str) -> list[dict]:
    p = d / name
    return [orjson.loads(x) for x in p.read_bytes().splitlines()] if p.exists() else []


def contents(d: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(d.iterdir())}


def findings_of(records) -> set[str]:
    return {r["metadata"]["finding_id"] for r in records}


# ---------------------------------------------------------------- determinism and order

def test_same_inputs_give_a_byte_identical_directory(tmp_path):
    records = examples(range(60), per=3)
    assert split(tmp_path, records, "--test", "0.1", out="a")[0] == 0
    assert split(tmp_path, records, "--test", "0.1", out="b")[0] == 0
    a, b = contents(tmp_path / "a"), contents(tmp_path / "b")
    assert a == b and set(a) == {"train.jsonl", "valid.jsonl", "test.jsonl", "manifest.json", "README.md"}
    assert split(tmp_path, records, "--test", "0.1", out="a")[0] == 0  # replacing gives the same again
    assert contents(tmp_path / "a") == a
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary folders left


def test_order_is_a_seeded_shuffle_not_the_input_order(tmp_path):
    records = examples(range(80), per=2)
    shuffled = records[:]
    random.Random(1).shuffle(shuffled)
    assert split(tmp_path, records, out="a")[0] == 0
    assert split(tmp_path, shuffled, out="b", name="shuffled.jsonl")[0] == 0
    assert split(tmp_path, records, "--seed", "1", out="c")[0] == 0
    a, b, c = (contents(tmp_path / d) for d in "abc")
    for f in ("train.jsonl", "valid.jsonl"):
        assert a[f] == b[f]  # the input's order does not matter
    train = read_split(tmp_path / "a", "train.jsonl")
    by_input = sorted(train, key=records.index)
    assert train != by_input and sorted(train, key=lambda r: r["id"]) != train
    assert read_split(tmp_path / "c", "train.jsonl") != train  # another seed, another split and order


def test_each_line_is_the_example_as_read(tmp_path):
    records = examples(range(20))
    assert split(tmp_path, records)[0] == 0
    lines = [line for f in SPLIT_FILES if (tmp_path / "dataset" / f).exists()
             for line in (tmp_path / "dataset" / f).read_bytes().splitlines(keepends=True)]
    assert sorted(lines) == sorted(dumps(r) for r in records)


# ---------------------------------------------------------------- grouping

@pytest.mark.parametrize("group_by", ["finding", "rule"])
def test_no_group_in_two_splits(tmp_path, group_by):
    records = examples(range(200), per=3) + examples(range(200), stage="codefix", language="python")
    code, err = split(tmp_path, records, "--test", "0.15", "--group-by", group_by)
    assert code == 0, err
    out = {f: read_split(tmp_path / "dataset", f) for f in SPLIT_FILES}
    assert sum(map(len, out.values())) == len(records)
    for key in (lambda m: m["finding_id"], lambda m: (m["tool"], m["rule_id"])):
        seen = [{key(r["metadata"]) for r in rs} for rs in out.values()]
        assert not (seen[0] & seen[1]) and not (seen[0] & seen[2]) and not (seen[1] & seen[2]), group_by
        if group_by == "finding":
            break  # a rule may span splits when grouping by finding
    manifest = orjson.loads((tmp_path / "dataset" / "manifest.json").read_bytes())
    assert manifest["group_by"] == group_by and manifest["groups"] == (200 if group_by == "finding" else 7)


def test_groups_never_move_when_new_groups_are_added(tmp_path):
    def placement(d):
        return {r["metadata"]["finding_id"]: f for f in SPLIT_FILES for r in read_split(d, f)}

    assert split(tmp_path, examples(range(300)), "--test", "0.1", out="small")[0] == 0
    assert split(tmp_path, examples(range(450)), "--test", "0.1", out="large")[0] == 0
    small, large = placement(tmp_path / "small"), placement(tmp_path / "large")
    assert all(large[f] == s for f, s in small.items())
    # a test split is carved out of train only: valid keeps every group it had
    assert split(tmp_path, examples(range(300)), out="no-test")[0] == 0
    assert {f for f, s in placement(tmp_path / "no-test").items() if s == "valid.jsonl"} == \
           {f for f, s in small.items() if s == "valid.jsonl"}


def test_train_and_valid_are_never_empty_with_two_groups_or_more():
    moved = 0
    for seed in range(300):
        for n in (2, 3, 4):
            sizes = {f"g{i}": 1 + i for i in range(n)}
            placed, moves = assign(sizes, seed, 0.2, 0.0)
            assert {"train", "valid"} <= set(placed.values()), (seed, n)
            moved += len(moves)
            for m in moves:  # the smallest group of the fuller split moved
                assert placed[m["group"]] == m["to"]
    assert moved  # the fix-up was exercised
    placed, _ = assign({f"g{i}": 1 for i in range(3)}, 0, 0.1, 0.1)
    assert set(placed.values()) == {"train", "valid", "test"}


def test_a_single_group_goes_to_train_and_valid_is_not_written(tmp_path):
    code, err = split(tmp_path, examples([1], per=4))
    assert code == 0 and "valid split is empty" in err
    assert len(read_split(tmp_path / "dataset", "train.jsonl")) == 4
    assert not (tmp_path / "dataset" / "valid.jsonl").exists()


def test_a_move_is_recorded_in_the_manifest(tmp_path):
    # find a seed under which hashing alone puts both groups in one split
    keys = sorted(findings_of(examples([1, 2])))
    seed = next(s for s in range(1000) if len({unit(s, "finding", k) < 0.2 for k in keys}) == 1)
    code, err = split(tmp_path, examples([1, 2]), "--seed", str(seed))
    assert code == 0, err
    m = orjson.loads((tmp_path / "dataset" / "manifest.json").read_bytes())
    assert len(m["moved_groups"]) == 1 and m["splits"]["train"]["groups"] == m["splits"]["valid"]["groups"] == 1


def test_fractions_are_roughly_honoured_on_1000_groups(tmp_path):
    code, err = split(tmp_path, examples(range(1000), per=1), "--valid", "0.2", "--test", "0.1")
    assert code == 0, err
    m = orjson.loads((tmp_path / "dataset" / "manifest.json").read_bytes())
    groups = {s: info["groups"] for s, info in m["splits"].items()}
    assert sum(groups.values()) == m["groups"] == 1000
    assert abs(groups["valid"] - 200) < 40 and abs(groups["test"] - 100) < 30 and abs(groups["train"] - 700) < 45
    assert m["fractions"] == {"train": 0.7, "valid": 0.2, "test": 0.1}


# ---------------------------------------------------------------- replay

def test_replay_mixes_stage1_examples_into_train_only_and_never_held_out_findings(tmp_path):
    current = examples(range(100), stage="codefix", language="python")
    assert split(tmp_path, current, out="plain")[0] == 0
    held_out = findings_of(read_split(tmp_path / "plain", "valid.jsonl"))
    assert held_out
    # stage-1 examples of the same findings (some held out here) and of others; codefix ones too
    old = examples(range(50, 250)) + examples(range(250, 260), stage="codefix", language="python")
    write(tmp_path / "stage1.jsonl", old)
    code, err = split(tmp_path, current, "--replay", str(tmp_path / "stage1.jsonl"), "--replay-fraction", "1")
    assert code == 0, err
    d = tmp_path / "dataset"
    train, valid = read_split(d, "train.jsonl"), read_split(d, "valid.jsonl")
    assert valid == read_split(tmp_path / "plain", "valid.jsonl")  # replay never touches valid
    replayed = [r for r in train if r["stage"] == "analysis"]
    assert replayed and not findings_of(replayed) & held_out
    # held out too: findings new here whose hash would place them in valid (a later dataset's valid)
    would_be_valid = {f for f in findings_of(old) - findings_of(current) if unit(0, "finding", f) < 0.2}
    assert would_be_valid and not findings_of(replayed) & would_be_valid
    stage1_held_out = sum(1 for r in old if r["stage"] == "analysis"
                          and r["metadata"]["finding_id"] in held_out | would_be_valid)
    assert len(replayed) == 400 - stage1_held_out
    m = orjson.loads((d / "manifest.json").read_bytes())
    assert schema_error("dataset/1", m) is None
    assert m["replay"]["added"] == m["splits"]["train"]["replayed"] == len(replayed)
    assert m["replay"]["excluded_held_out"] == stage1_held_out and m["replay"]["stage1_examples"] == 400
    assert m["splits"]["train"]["stages"] == {"analysis": len(replayed), "codefix": len(train) - len(replayed)}


def test_replay_fraction_is_seeded_and_reads_a_dataset_directory(tmp_path):
    assert split(tmp_path, examples(range(300, 500)), out="stage1")[0] == 0
    stage1_train = read_split(tmp_path / "stage1", "train.jsonl")
    current = examples(range(100), stage="codefix", language="python")
    runs = []
    for out in ("a", "b"):
        code, err = split(tmp_path, current, "--replay", str(tmp_path / "stage1"), "--replay-fraction", "0.25",
                          out=out)
        assert code == 0, err
        runs.append([r for r in read_split(tmp_path / out, "train.jsonl") if r["stage"] == "analysis"])
    assert runs[0] == runs[1] and len(runs[0]) == round(0.25 * len(stage1_train))
    assert {r["id"] for r in runs[0]} <= {r["id"] for r in stage1_train}


@pytest.mark.parametrize("argv", [["--replay-fraction", "0.5"], ["--valid", "0.7", "--test", "0.3"],
                                  ["--valid", "1.5"], []])
def test_usage_errors(tmp_path, argv):
    src = write(tmp_path / "x.jsonl", examples(range(3)))
    out = [] if not argv else ["-o", str(tmp_path / "d")]
    code, _, err = run_command(Split, [str(src), *out, *argv], raw=True)
    assert code == 2 and err.startswith("secai-split: error: ") and len(err.splitlines()) == 1
    assert not (tmp_path / "d").exists()


# ---------------------------------------------------------------- manifest and card

def test_the_manifest_schema_is_valid_draft_2020_12():
    import jsonschema

    from secai.records import schema

    jsonschema.Draft202012Validator.check_schema(schema("dataset/1"))


def test_manifest_hashes_match_the_files(tmp_path):
    records = examples(range(40))
    src = write(tmp_path / "examples.jsonl", records)
    assert split(tmp_path, records, "--test", "0.2")[0] == 0
    d = tmp_path / "dataset"
    m = orjson.loads((d / "manifest.json").read_bytes())
    assert m["schema"] == "dataset/1" and schema_error("dataset/1", m) is None
    assert m["seed"] == 0 and m["examples"] == len(records)
    assert set(m["files"]) == {p.name for p in d.iterdir()} - {"manifest.json"}
    for name, digest in m["files"].items():
        assert hashlib.sha256((d / name).read_bytes()).hexdigest() == digest
    assert m["inputs"] == [{"path": "examples.jsonl", "sha256": hashlib.sha256(src.read_bytes()).hexdigest(),
                            "examples": len(records)}]  # an absolute path shows only its last part
    for info in m["splits"].values():
        assert info["examples"] == len(read_split(d, info["file"])) == sum(info["stages"].values())
    assert sum(info["examples"] for info in m["splits"].values()) == m["examples"]
    assert m["stages"] == {"analysis": len(records)} and m["producers"] == {"kb": len(records)}
    assert "created" not in (d / "manifest.json").read_text()


def test_the_card_has_hugging_face_metadata_listing_the_files(tmp_path):
    records = examples(range(40)) + examples(range(10), stage="codefix", language="python")
    assert split(tmp_path, records, "--test", "0.2", "--name", "demo set")[0] == 0
    d = tmp_path / "dataset"
    text = (d / "README.md").read_text()
    assert text.startswith("---\n")
    meta = yaml.safe_load(text.split("---\n")[1])
    assert meta["license"] == "apache-2.0" and meta["pretty_name"] == "demo set (analysis and code fixes)"
    assert meta["task_categories"] == ["text-generation"] and meta["language"] == ["en"]
    assert {"security", "sast"} <= set(meta["tags"]) and meta["size_categories"] == ["n<1K"]
    [config] = meta["configs"]
    assert config["config_name"] == "default"
    assert config["data_files"] == [{"split": "train", "path": "train.jsonl"},
                                    {"split": "validation", "path": "valid.jsonl"},
                                    {"split": "test", "path": "test.jsonl"}]
    body = text.split("---\n", 2)[2]
    for words in ("Grouped by finding", "kb backend", "Redaction", "Limitations", "| codefix |", "| semgrep | 100 |"):
        assert words in body, words


def card_data(d: Path):
    """The card's metadata as huggingface_hub reads it (DatasetCard: no network), and the front matter."""
    from huggingface_hub import DatasetCard, DatasetCardData

    text = (d / "README.md").read_text()
    front = yaml.safe_load(text.split("---\n")[1])
    data = DatasetCard(text).data
    assert isinstance(data, DatasetCardData) and data.to_dict() == front  # every key round-trips
    return data, text.split("---\n", 2)[2]


def test_the_two_stage_datasets_have_distinct_names_huggingface_hub_reads(tmp_path):
    stage1 = examples(range(60))
    assert split(tmp_path, stage1, out="analysis", name="analysis.jsonl")[0] == 0
    write(tmp_path / "stage1.jsonl", stage1)
    codefix = examples(range(40), stage="codefix", language="python")
    assert split(tmp_path, codefix, "--replay", str(tmp_path / "analysis"), out="codefix", name="codefix.jsonl")[0] == 0
    (a, a_body), (c, c_body) = card_data(tmp_path / "analysis"), card_data(tmp_path / "codefix")
    assert a.pretty_name == "secai security findings (stage 1, analysis)"
    assert c.pretty_name == "secai security findings (stage 2, code fixes)"  # its replayed stage-1 examples aside
    assert orjson.loads((tmp_path / "codefix" / "manifest.json").read_bytes())["replay"]["added"] > 0
    assert a_body.startswith(f"\n# {a.pretty_name}\n") and c_body.startswith(f"\n# {c.pretty_name}\n")
    assert [f["split"] for f in a.configs[0]["data_files"]] == ["train", "validation"]
    assert a.license == "apache-2.0" and a.task_categories == ["text-generation"]


@pytest.mark.parametrize("argv, rule", [
    ((), "u < 0.2 → validation, otherwise → train (target shares train 0.8, validation 0.2, test 0)"),
    (("--test", "0.1"), "u < 0.2 → validation, 0.2 ≤ u < 0.3 → test, otherwise → train (target shares train 0.7, "
                        "validation 0.2, test 0.1)"),
    (("--valid", "0.25", "--test", "0.15"), "u < 0.25 → validation, 0.25 ≤ u < 0.4 → test, otherwise → train"),
])
def test_the_card_states_the_split_rule_with_its_fractions(tmp_path, argv, rule):
    records = examples(range(80))
    assert split(tmp_path, records, *argv)[0] == 0
    d = tmp_path / "dataset"
    _, body = card_data(d)
    assert rule in " ".join(body.split())
    # the rule is the one that placed the groups (no group was moved in a set this size)
    m = orjson.loads((d / "manifest.json").read_bytes())
    f, placed = m["fractions"], {}
    assert m["moved_groups"] == []
    for info in m["splits"].values():
        for r in read_split(d, info["file"]):
            placed[r["metadata"]["finding_id"]] = info["hf_split"]
    for fid, where in placed.items():
        u = unit(0, "finding", fid)
        assert where == ("validation" if u < f["valid"] else "test" if u < f["valid"] + f["test"] else "train")


# ---------------------------------------------------------------- atomic directory, refusals

def test_a_failed_run_leaves_the_existing_dataset_intact(tmp_path):
    assert split(tmp_path, examples(range(30)))[0] == 0
    before = contents(tmp_path / "dataset")
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(b"".join(dumps(r) for r in examples(range(40))) + b'{"schema": "example/1", \n')
    code, _, err = run_command(Split, [str(bad), "-o", str(tmp_path / "dataset")], raw=True)
    assert code == 1 and err.count("\n") == 1 and f"bad.jsonl:{40 * 2 + 1}: invalid JSON" in err
    assert contents(tmp_path / "dataset") == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.jsonl", "dataset", "examples.jsonl"]


def test_a_directory_that_is_not_a_dataset_is_not_replaced(tmp_path):
    (tmp_path / "dataset").mkdir()
    (tmp_path / "dataset" / "notes.txt").write_text("mine")
    code, err = split(tmp_path, examples(range(5)))
    assert code == 1 and "not a dataset/1 dataset" in err and err.count("\n") == 1
    assert [p.name for p in (tmp_path / "dataset").iterdir()] == ["notes.txt"]


def test_empty_input_is_a_clear_error(tmp_path):
    code, _, err = run_command(Split, ["-o", str(tmp_path / "d")], stdin=b"\n", raw=True)
    assert code == 1 and err == "secai-split: error: -: no examples: a dataset needs at least one\n"
    assert not (tmp_path / "d").exists()


def test_a_secret_in_a_message_refuses_the_dataset(tmp_path):
    records = examples(range(10))
    token = "ghp_" + "A1b2C3d4" * 4 + "Zz9Y"
    records[3]["messages"][2]["content"] += f" The leaked token was {token}."
    code, err = split(tmp_path, records)
    assert code == 1 and err.count("\n") == 1 and token not in err
    assert f"examples.jsonl:4: example {records[3]['id']}: messages[2] (assistant)" in err and "github-token" in err
    assert not (tmp_path / "dataset").exists()
    # with --rejects the example is set aside (and listed there), the rest is written
    code, err = split(tmp_path, records, "--rejects", str(tmp_path / "rejects.jsonl"))
    assert code == 0, err
    [rejected] = [orjson.loads(x) for x in (tmp_path / "rejects.jsonl").read_bytes().splitlines()]
    assert rejected["line"] == 4 and "github-token" in rejected["reason"] and token not in rejected["reason"]
    assert orjson.loads((tmp_path / "dataset" / "manifest.json").read_bytes())["examples"] == len(records) - 1


def test_duplicate_examples_are_dropped_and_conflicting_ones_refused(tmp_path):
    records = examples(range(10))
    code, err = split(tmp_path, records + records[:3])
    assert code == 0, err
    assert orjson.loads((tmp_path / "dataset" / "manifest.json").read_bytes())["duplicates_dropped"] == 3
    other = {**records[0], "stage": "codefix"}
    code, err = split(tmp_path, records + [other], out="d2")
    assert code == 1 and f"examples.jsonl:{len(records) + 1}:" in err and "same id at" in err and "differs from the one with the same id" in err


# ---------------------------------------------------------------- the readers that consume it

def test_mlx_lm_reads_the_dataset(tmp_path, tiny_model):
    from mlx_lm import load
    from mlx_lm.tuner.datasets import load_dataset

    records = examples(range(30)) + examples(range(30), stage="codefix", language="python")
    assert split(tmp_path, records, "--test", "0.2")[0] == 0
    _, tokenizer = load(str(tiny_model))
    args = Namespace(data=str(tmp_path / "dataset"), train=True, test=True, hf_dataset=None, mask_prompt=False)
    train, valid, test = load_dataset(args, tokenizer)
    assert len(train) + len(valid) + len(test) == len(records) and len(valid) and len(test)
    tokens, offset = train.process(train[0])
    assert len(tokens) > 10 and offset == 0


def test_hugging_face_datasets_reads_the_dataset(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")  # read when datasets is first imported
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    datasets = pytest.importorskip("datasets")
    # optional metadata keys (cwe, language) vary from row to row and file to file
    records = examples(range(60)) + examples(range(20), stage="codefix", language="python")
    assert split(tmp_path, records, "--test", "0.2")[0] == 0
    d = tmp_path / "dataset"
    m = orjson.loads((d / "manifest.json").read_bytes())
    for ds in (datasets.load_dataset("json", data_dir=str(d), cache_dir=str(tmp_path / "c1")),
               datasets.load_dataset(str(d), cache_dir=str(tmp_path / "c2"))):  # the card's configs
        assert {s: ds[s].num_rows for s in ds} == {i["hf_split"]: i["examples"] for i in m["splits"].values()}
        row = ds["train"][0]
        assert row["messages"][0]["role"] == "system" and len(row["metadata"]["finding_id"]) == 32
    assert Counter(r["metadata"].get("language") for r in ds["validation"]) == \
           Counter(r["metadata"].get("language") for r in read_split(d, "valid.jsonl"))


def test_the_bin_script_runs(tmp_path):
    import subprocess

    from conftest import ROOT

    src = write(tmp_path / "x.jsonl", examples(range(10)))
    proc = subprocess.run([str(ROOT / "bin" / "secai-split"), str(src), "-o", str(tmp_path / "d"), "-q"],
                          capture_output=True, text=True, env={**os.environ})
    assert proc.returncode == 0 and proc.stdout == proc.stderr == ""
    assert (tmp_path / "d" / "manifest.json").is_file()
