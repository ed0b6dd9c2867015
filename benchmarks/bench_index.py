"""Benchmark secai-index: embedding throughput, query latency on a 100,000-vector index, and
`update` with 10 new findings on that index against a full rebuild. Writes build/bench/index.json.

- Embedding: all-MiniLM-L6-v2 on the CPU (as secai-index runs it) over --texts texts made by
  secai.analysis.similar.text() from real findings (the shared corpus when present, else the shipped examples,
  cycled), after one warm-up batch; the model load is timed apart.
- The 100k index: --size random unit vectors (seeded) with made-up ids and the real findings' rule
  ids and titles, written by secai.analysis.similar.write() exactly as `build` writes it. Random vectors are
  fine for the index's size and speed; the queries are real embeddings of findings.
- Query latency per finding, one at a time: the FAISS search alone (k+1 rows, --queries queries),
  the same queries in one batched search (per query; what secai-analyze does), and end to end
  through SimilarityIndex.similar() for a finding new to the index (embedding it,
  searching, dropping itself, formatting; --queries // 5 queries).
- Update: secai.analysis.similar.update() with 10 findings new to the 100k index — read the directory, check
  the model, embed 10, add, rewrite the directory atomically — the median of --updates runs.
- Full rebuild of the 100k: embedding 100k texts would take several minutes on 2 cores, so unless
  --real-rebuild is given it is measured in parts: size / (texts/s measured above) for the
  embeddings, plus the measured time of building and writing the 100k index from its vectors
  (`index_build_s`). The JSON states which way the figure was obtained.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

import numpy as np  # noqa: E402
import orjson  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT.parent / "shared" / "corpus"
PY = sys.executable


def real_findings() -> tuple[list[dict], str]:
    source = CORPUS if CORPUS.is_dir() else ROOT / "examples" / "artifacts"
    out = subprocess.run([PY, "-m", "secai.commands.parse", "-q", str(source), "--rejects", os.devnull],
                         capture_output=True, check=True).stdout.splitlines()
    return [orjson.loads(line) for line in out], str(source.relative_to(ROOT.parent))


def fake_id(*parts) -> str:
    return hashlib.sha256("-".join(map(str, parts)).encode()).hexdigest()[:32]


def percentile(values: list[float], p: float) -> float:
    return float(np.percentile(np.array(values), p))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(ROOT / "build" / "bench" / "index.json"))
    ap.add_argument("--texts", type=int, default=2000, help="texts embedded for the throughput figure")
    ap.add_argument("--size", type=int, default=100_000, help="vectors in the big index")
    ap.add_argument("--queries", type=int, default=1000, help="FAISS searches timed (end to end: a fifth of them)")
    ap.add_argument("-k", type=int, default=3)
    ap.add_argument("--updates", type=int, default=3, help="update runs (median reported)")
    ap.add_argument("--real-rebuild", action="store_true", help="embed all --size texts for the rebuild figure")
    args = ap.parse_args()

    import faiss
    import torch

    from secai.analysis import similar as ix

    load_at_start = [round(x, 2) for x in os.getloadavg()]  # other work on the box skews every figure
    bench = Path(args.out).parent
    bench.mkdir(parents=True, exist_ok=True)
    seed, source = real_findings()
    print(f"bench_index: {len(seed)} real findings from {source}", file=sys.stderr)

    # -- embedding throughput
    embedder = ix.Embedder()
    t = time.perf_counter()
    embedder.embed(["warm up: load the model"])
    load_s = time.perf_counter() - t
    texts = [ix.text(seed[i % len(seed)]) for i in range(args.texts)]
    embedder.embed(texts[:64])
    t = time.perf_counter()
    vectors = embedder.embed(texts)
    embed_s = time.perf_counter() - t
    texts_per_s = args.texts / embed_s
    print(f"bench_index: {texts_per_s:.0f} texts/s", file=sys.stderr)

    # -- the 100k index, written as `build` writes it
    big = bench / "index-100k"
    shutil.rmtree(big, ignore_errors=True)
    rng = np.random.default_rng(0)
    random_vectors = rng.standard_normal((args.size, embedder.dimension), dtype=np.float32)
    random_vectors /= np.linalg.norm(random_vectors, axis=1, keepdims=True)
    entries = [{"id": fake_id("bench", i), "rule_id": seed[i % len(seed)]["rule_id"], "title": seed[i % len(seed)]["title"]}
               for i in range(args.size)]
    t = time.perf_counter()
    index = faiss.IndexFlatIP(embedder.dimension)
    index.add(random_vectors)
    ix.write(big, index, entries, embedder.info)
    index_build_s = time.perf_counter() - t
    del index, random_vectors

    # -- queries
    t = time.perf_counter()
    loaded = ix.SimilarityIndex.load(big)
    load_index_s = time.perf_counter() - t
    loaded.embedder = embedder
    queries = vectors[: args.queries] if len(vectors) >= args.queries else vectors[np.arange(args.queries) % len(vectors)]
    search_ms = []
    for q in queries:
        t = time.perf_counter()
        loaded.index.search(q[None, :], args.k + 1)
        search_ms.append((time.perf_counter() - t) * 1000)
    t = time.perf_counter()
    loaded.index.search(np.ascontiguousarray(queries), args.k + 1)  # as secai-analyze asks: all findings at once
    batched_ms = (time.perf_counter() - t) * 1000 / len(queries)
    e2e_ms = []
    for i in range(max(1, args.queries // 5)):
        f = {**seed[i % len(seed)], "id": fake_id("query", i)}
        t = time.perf_counter()
        [hits] = loaded.similar([f], args.k)
        e2e_ms.append((time.perf_counter() - t) * 1000)
        assert len(hits) == args.k
    del loaded

    # -- update with 10 new findings vs a full rebuild
    update_s, embedded = [], []
    for run in range(args.updates):
        new = [{**seed[i % len(seed)], "id": fake_id("update", run, i)} for i in range(10)]
        before = embedder.embedded
        t = time.perf_counter()
        manifest, added = ix.update(big, new, embedder)
        update_s.append(time.perf_counter() - t)
        embedded.append(embedder.embedded - before)
        assert added == 10 and embedded[-1] == 10
    update_median = statistics.median(update_s)
    if args.real_rebuild:
        rebuild_texts = [ix.text(seed[i % len(seed)]) for i in range(args.size)]
        t = time.perf_counter()
        index = faiss.IndexFlatIP(embedder.dimension)
        index.add(embedder.embed(rebuild_texts))
        ix.write(bench / "index-rebuild", index, entries, embedder.info)
        rebuild_s = time.perf_counter() - t
        shutil.rmtree(bench / "index-rebuild", ignore_errors=True)
        method = f"measured: embedding {args.size} texts and building and writing the index, in one timed run"
    else:
        rebuild_s = args.size / texts_per_s + index_build_s
        method = (f"estimated from measured parts: {args.size} texts / {texts_per_s:.1f} texts/s (the embedding "
                  f"throughput measured above) = {args.size / texts_per_s:.1f} s, plus index_build_s = "
                  f"{index_build_s:.2f} s (measured: IndexFlatIP.add of {args.size} vectors and the atomic write of "
                  f"the index directory); the {args.size} texts were not embedded for real")
    shutil.rmtree(big, ignore_errors=True)

    report = {
        "machine": {"cpus": os.cpu_count(), "load_average_1_5_15_at_end": [round(x, 2) for x in os.getloadavg()],
                    "load_average_1_5_15_at_start": load_at_start, "torch_threads": torch.get_num_threads(),
                    "faiss_threads": faiss.omp_get_max_threads(), "torch": torch.__version__, "faiss": faiss.__version__},
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "model": {"name": embedder.info["name"], "content_hash": embedder.info["content_hash"][:16],
                  "dimension": embedder.dimension, "device": "cpu", "load_s": round(load_s, 2)},
        "embedding": {"texts": args.texts, "source": source, "batch_size": embedder.batch_size,
                      "mean_chars": round(sum(map(len, texts)) / len(texts)), "seconds": round(embed_s, 2),
                      "texts_per_s": round(texts_per_s, 1)},
        "index": {"vectors": args.size, "kind": "IndexFlatIP (exact inner product over unit vectors)",
                  "vectors_are": "random unit vectors (seeded); queries are real finding embeddings",
                  "index_build_s": round(index_build_s, 2), "load_s": round(load_index_s, 2),
                  "bytes": {"index.faiss": args.size * embedder.dimension * 4}},
        "query": {"k": args.k,
                  "search_only_ms": {"queries": len(search_ms), "p50": round(percentile(search_ms, 50), 2),
                                     "p99": round(percentile(search_ms, 99), 2)},
                  "search_batched_ms_per_query": {"queries": len(queries), "ms": round(batched_ms, 3),
                                                  "what": "all queries in one FAISS search call, as secai-analyze does"},
                  "end_to_end_ms": {"queries": len(e2e_ms), "what": "SimilarityIndex.similar() on one new finding: embed + search + format",
                                    "p50": round(percentile(e2e_ms, 50), 2), "p99": round(percentile(e2e_ms, 99), 2)}},
        "update_vs_rebuild": {
            "index_vectors": args.size, "new_findings": 10, "embedded_per_update": embedded,
            "update_s": {"runs": [round(s, 3) for s in update_s], "median": round(update_median, 3),
                         "what": "secai.analysis.similar.update(): read the directory, check the model, embed 10, add, rewrite atomically"},
            "rebuild_s": round(rebuild_s, 1), "rebuild_method": method,
            "ratio_rebuild_over_update": round(rebuild_s / update_median, 1)},
    }
    Path(args.out).write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2) + b"\n")
    print(orjson.dumps(report, option=orjson.OPT_INDENT_2).decode())


if __name__ == "__main__":
    main()
