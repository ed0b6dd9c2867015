"""Benchmark secai-analyze: kb findings/s, batched vs one-at-a-time generation on the tiny model,
and a fully cached re-run of 1,000 findings. Writes build/bench/analyze.json.

The findings are the shipped examples' (parsed here), repeated with distinct ids up to --findings.
Generation is timed with mlx-lm's batch generation both ways in the same run: all prompts in one
batch, then one prompt per call; tokens/s counts generated tokens, over the decoding time (what
batching speeds up) and over the whole call (prompt processing included, which batching cannot
shorten much on a CPU).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable


def findings(n: int) -> list[dict]:
    out = subprocess.run([PY, "-m", "secai.commands.parse", "-q", str(ROOT / "examples" / "artifacts")],
                         capture_output=True, check=True).stdout.splitlines()
    seed = [orjson.loads(line) for line in out]
    return [{**seed[i % len(seed)], "id": hashlib.sha256(f"bench-{i}".encode()).hexdigest()[:32]} for i in range(n)]


def run_analyze(src: Path, out: Path, cache: Path, *extra: str) -> float:
    t = time.perf_counter()
    subprocess.run([PY, "-m", "secai.commands.analyze", str(src), "-o", str(out), "--cache", str(cache), "-q",
                    "--source-root", str(ROOT / "examples" / "demo-app"), *extra], check=True)
    return time.perf_counter() - t


def generation(model_dir: Path, prompts: int, max_tokens: int) -> dict:
    from mlx_lm import batch_generate

    from secai.analysis.mlx import Model, messages

    model = Model(str(model_dir), max_tokens=max_tokens)
    mlx_model, tokenizer = model._load()
    chats = [messages(f, None, []) for f in findings(prompts)]
    tokens = [tokenizer.apply_chat_template(c, add_generation_prompt=True, tokenize=True) for c in chats]
    batch_generate(mlx_model, tokenizer, tokens[:2], max_tokens=4)  # warm up the kernels

    def timed(batches):  # (generated tokens, seconds generating them, seconds in all)
        t, made, decode = time.perf_counter(), 0, 0.0
        for batch in batches:
            stats = batch_generate(mlx_model, tokenizer, batch, max_tokens=max_tokens).stats
            made, decode = made + stats.generation_tokens, decode + stats.generation_time
        return made, decode, time.perf_counter() - t

    b_tokens, b_decode, b_wall = timed([tokens])
    s_tokens, s_decode, s_wall = timed([[p] for p in tokens])
    return {"prompts": prompts, "prompt_tokens_mean": round(sum(map(len, tokens)) / len(tokens)), "max_tokens": max_tokens,
            "decode_tokens_per_s": {"batched": round(b_tokens / b_decode, 1), "one_at_a_time": round(s_tokens / s_decode, 1)},
            "decode_speedup": round((b_tokens / b_decode) / (s_tokens / s_decode), 2),
            "end_to_end_tokens_per_s": {"batched": round(b_tokens / b_wall, 1), "one_at_a_time": round(s_tokens / s_wall, 1)},
            "end_to_end_speedup": round((b_tokens / b_wall) / (s_tokens / s_wall), 2),
            "target_speedup": 4.0}


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", default=str(ROOT / "build" / "bench" / "analyze.json"))
    ap.add_argument("--findings", type=int, default=1000)
    ap.add_argument("--model", default=str(ROOT / "build" / "models" / "base" / "tiny-olmo2"))
    ap.add_argument("--prompts", type=int, default=32)
    ap.add_argument("--max-tokens", type=int, default=64)
    args = ap.parse_args()
    bench = Path(args.out).parent
    bench.mkdir(parents=True, exist_ok=True)
    src, cache = bench / "analyze-findings.jsonl", bench / "analyze-cache"
    src.write_bytes(b"".join(orjson.dumps(f, option=orjson.OPT_APPEND_NEWLINE) for f in findings(args.findings)))
    subprocess.run(["rm", "-rf", str(cache)], check=True)
    cold = run_analyze(src, bench / "analyze-out.jsonl", cache)
    warm = run_analyze(src, bench / "analyze-out.jsonl", cache)
    report = {"machine": {"cpus": os.cpu_count()}, "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
              "kb": {"findings": args.findings, "seconds": round(cold, 2), "findings_per_s": round(args.findings / cold, 1),
                     "cached_rerun_seconds": round(warm, 2)},
              "generation_tiny_model": generation(Path(args.model), args.prompts, args.max_tokens)}
    Path(args.out).write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2))
    print(orjson.dumps(report, option=orjson.OPT_INDENT_2).decode())


if __name__ == "__main__":
    main()
