"""Benchmark secai-analyze: kb analyses per second on 10,000 varied findings, with and without
source context, and batched against one-at-a-time generation on the tiny model. Writes
build/bench/analyze.json: every figure beside the target it is measured against and whether it is
met, all measured in this one run.

kb: `secai-analyze --no-cache` as a whole process (start included), the two sets taking turns
(round 1: each once, round 2: each again, ...) so that a noisy machine slows them alike; the
rate is findings over the median wall time (the CPU time, worker processes' included, is
reported beside it). Each set runs with the default workers (analyze.workers 0: one process per
CPU, at most one per 500 findings) and with --workers 1 in the same rounds; the two outputs are
compared byte for byte. The findings are
made from seeds, finding n being seed n % len(seeds) in round n // len(seeds), with an id of its own:
- with source context: the shipped examples' findings (examples/artifacts), each round in a copy
  of the demo app of its own (svcNNN/, each file ending in a comment naming the round, so that no
  two copies are the same file), run with --source-root: every finding has its code, its fix rules
  and its project read;
- without: those and the parser test fixtures' findings (18 tools), paths moved into svcNNN/ alike,
  and in odd rounds a checkov or bandit seed reports another rule of its tool and family (the
  harvested rule knowledge: id and name), so that rules repeat no more than paths do.
A cold run with the cache and a fully cached re-run of the second set are timed once, for scale.

Generation: secai's own path (secai.analysis.mlx.Model.generate, mlx-lm batch generation with the
system turn's KV cache) on the same prompts, all 8 in one call against one per call, taking turns;
tokens/s counts generated tokens over the whole call (prompt processing included). The replies are
--max-tokens long (the random-weight model never stops early), below analyze.max_tokens (512), so
the speed-up measured is, if anything, lower than a real run's. Beside it, what bounds it: the bare
model's decode step at batch 1 and at batch 8 (model_call_seconds) and the speed-up a generator
that costs nothing beyond those calls would reach with the same prompt time (bound.speedup_ceiling).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import orjson

from secai.analysis.explain import worker_count
from secai.files import write_atomic

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
KB_TARGET = 2000.0      # findings/s, with and without source context (issue 16 item 3)
BATCH_TARGET = 3.0      # tokens/s at batch 8 over batch 1, tiny model


def parsed(*reports: Path) -> list[dict]:
    out = subprocess.run([PY, "-m", "secai.commands.parse", "-q", *map(str, reports)], capture_output=True, check=True)
    return [orjson.loads(line) for line in out.stdout.splitlines()]


def seeds() -> tuple[list[dict], list[dict]]:
    """(the shipped examples' findings, the parser fixtures' findings)."""
    fixtures = sorted(p for p in (ROOT / "tests" / "fixtures" / "parse").glob("*/*")
                      if p.is_file() and ".expected." not in p.name)
    return parsed(ROOT / "examples" / "artifacts"), parsed(*fixtures)


def _other_rules() -> dict[str, list[tuple[str, str]]]:
    """{tool + family prefix (CKV_K8S_, CKV2_AWS_, B): [(rule id, name)]} of the harvested rules."""
    from secai.analysis.rules import harvested

    out: dict[str, list[tuple[str, str]]] = {}
    for tool in ("checkov", "bandit"):
        for r in sorted(harvested(tool)["records"], key=lambda r: r["id"]):
            if r.get("name"):
                out.setdefault(tool + _family(r["id"]), []).append((r["id"], r["name"]))
    return out


def _family(rule_id: str) -> str:
    return rule_id.rstrip("0123456789")


def varied(seed: list[dict], n: int, *, other_rules: bool) -> list[dict]:
    """`n` findings from `seed` (see the module's docstring)."""
    rules = _other_rules() if other_rules else {}
    out = []
    for i in range(n):
        s, r = seed[i % len(seed)], i // len(seed)
        f = {**s, "id": hashlib.sha256(f"bench-{i}".encode()).hexdigest()[:32]}
        if (f.get("location") or {}).get("path"):
            f["location"] = {**f["location"], "path": f"svc{r:03d}/{f['location']['path']}"}
        others = rules.get(f["tool"] + _family(f["rule_id"]), [])
        if r % 2 and others:
            f["rule_id"], f["title"] = others[int(f["id"], 16) % len(others)]
        out.append(f)
    return out


def source_tree(folder: Path, rounds: int) -> Path:
    """`rounds` copies of the demo app under `folder`, each file ending in a comment of its own."""
    shutil.rmtree(folder, ignore_errors=True)
    for r in range(rounds):
        copy = folder / f"svc{r:03d}"
        shutil.copytree(ROOT / "examples" / "demo-app", copy)
        for path in copy.rglob("*"):
            if path.is_file():
                path.write_text(path.read_text(encoding="utf-8") + f"# copy {r}\n", encoding="utf-8")
    return folder


def write_findings(path: Path, findings: list[dict]) -> Path:
    write_atomic(path, b"".join(orjson.dumps(f, option=orjson.OPT_APPEND_NEWLINE) for f in findings))
    return path


def run_analyze(src: Path, out: Path, *extra: str) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one whole secai-analyze process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    subprocess.run([PY, "-m", "secai.commands.analyze", str(src), "-o", str(out), "-q", *extra], check=True)
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def kb(bench: Path, n: int, repeat: int) -> dict:
    examples, fixtures = seeds()
    with_src = write_findings(bench / "analyze-with-context.jsonl", varied(examples, n, other_rules=False))
    without = write_findings(bench / "analyze-without-context.jsonl", varied(examples + fixtures, n, other_rules=True))
    root = source_tree(bench / "analyze-src", -(-n // len(examples)))
    sets = {"with_source_context": (with_src, ["--no-cache", "--source-root", str(root)]),
            "without_source_context": (without, ["--no-cache"])}
    modes = {"": [], ".one-process": ["--workers", "1"]}  # the default (analyze.workers 0), and one process
    runs: dict[tuple, list] = {(name, mode): [] for name in sets for mode in modes}
    for _ in range(repeat):
        for name, (src, extra) in sets.items():
            for mode, flags in modes.items():
                runs[name, mode].append(run_analyze(src, bench / f"analyze-{name}{mode}.out.jsonl", *extra, *flags))
    report = {"findings": n, "seeds": {"examples": len(examples), "fixtures": len(fixtures),
                                       "tools": len({f["tool"] for f in examples + fixtures})},
              "workers": worker_count(0, n),
              "measured": "secai-analyze --no-cache, the whole process (its worker processes' CPU included); median "
                          "of the runs' wall times; with the default workers (analyze.workers 0: one per CPU, "
                          "at most one per 500 findings) and with --workers 1, taking turns"}

    def figures(name: str, mode: str) -> dict:
        wall, cpu = statistics.median(w for w, _ in runs[name, mode]), statistics.median(c for _, c in runs[name, mode])
        return {"seconds_median": round(wall, 2), "cpu_seconds_median": round(cpu, 2),
                "runs": [round(w, 2) for w, _ in runs[name, mode]], "findings_per_s": round(n / wall, 1),
                "findings_per_cpu_s": round(n / cpu, 1)}

    for name in sets:
        path = bench / f"analyze-{name}.out.jsonl"
        out = [orjson.loads(line) for line in path.read_bytes().splitlines()]
        fig = figures(name, "")
        identical = path.read_bytes() == (bench / f"analyze-{name}.one-process.out.jsonl").read_bytes()
        report[name] = {**fig, "with_code_context": sum("code_context" in r for r in out),
                        "with_fix": sum("fix" in r["analysis"] for r in out),
                        "rules": len({(r["finding"]["tool"], r["finding"]["rule_id"]) for r in out}),
                        "one_process": figures(name, ".one-process"),
                        "outputs_identical_to_one_process": identical,
                        "target_findings_per_s": KB_TARGET, "met": fig["findings_per_s"] >= KB_TARGET and identical}
    cache = bench / "analyze-cache"
    shutil.rmtree(cache, ignore_errors=True)
    cold, _ = run_analyze(without, bench / "analyze-cached.out.jsonl", "--cache", str(cache))
    warm, _ = run_analyze(without, bench / "analyze-cached.out.jsonl", "--cache", str(cache))
    report["cache"] = {"set": "without_source_context", "cold_seconds": round(cold, 2), "cached_rerun_seconds": round(warm, 2)}
    return report


def generation(model_dir: Path, prompts: int, max_tokens: int, repeat: int) -> dict:
    from secai.analysis.mlx import Model, messages
    from secai.analysis.rules import rule_knowledge

    examples, _ = seeds()
    chats = [messages(f, None, [], rule_knowledge(f)) for f in examples[:prompts]]
    model = Model(str(model_dir), max_tokens=max_tokens)
    tokenizer = model._load()[1]
    model.generate(chats[:2])  # warm up the kernels and make the system turn's cache

    def timed(batches) -> tuple[float, float, float]:  # tokens/s over the whole calls, over decoding; prompt s
        made, decode, prompt, t = model.generated_tokens, model.decode_seconds, model.prompt_seconds, time.perf_counter()
        for batch in batches:
            model.generate(batch)
        wall = time.perf_counter() - t
        return ((model.generated_tokens - made) / wall, (model.generated_tokens - made) / (model.decode_seconds - decode),
                model.prompt_seconds - prompt)

    batched, one = [], []
    for i in range(repeat):  # taking turns, each going first in every other round
        for which in ((batched, one) if i % 2 == 0 else (one, batched)):
            which.append(timed([chats] if which is batched else [[c] for c in chats]))
    ratios = [b[0] / s[0] for b, s in zip(batched, one)]
    speedup = statistics.median(ratios)
    tokens = [tokenizer.apply_chat_template(c, add_generation_prompt=True, tokenize=True) for c in chats]
    mean = round(sum(map(len, tokens)) / len(tokens))
    floor = {n: model_call_seconds(model, tokens[0] * (1 + mean // len(tokens[0])), mean, n, max_tokens, repeat)
             for n in (1, prompts)}
    prompt_s = {"batched": statistics.median(b[2] for b in batched), "one_at_a_time": statistics.median(s[2] for s in one)}
    ceiling = (prompt_s["one_at_a_time"] + prompts * max_tokens * floor[1]) / (prompt_s["batched"] + max_tokens * floor[prompts])
    return {"prompts": prompts, "batch_size": prompts, "max_tokens": max_tokens, "runs": repeat,
            "prompt_tokens_mean": mean,
            "measured": "secai.analysis.mlx.Model.generate: all prompts in one call against one prompt per call, "
                        "generated tokens over the whole calls (prompt processing included); median of per-round ratios",
            "tokens_per_s": {"batched": round(statistics.median(b[0] for b in batched), 1),
                             "one_at_a_time": round(statistics.median(s[0] for s in one), 1)},
            "decode_tokens_per_s": {"batched": round(statistics.median(b[1] for b in batched), 1),
                                    "one_at_a_time": round(statistics.median(s[1] for s in one), 1)},
            "prompt_seconds": {k: round(v, 3) for k, v in prompt_s.items()},
            "speedup": round(speedup, 2), "speedup_runs": [round(r, 2) for r in ratios],
            "target_speedup": BATCH_TARGET, "met": speedup >= BATCH_TARGET,
            "bound": {"model_call_ms": {f"batch_{n}": round(v * 1000, 3) for n, v in floor.items()},
                      "speedup_ceiling": round(ceiling, 2),
                      "what": "the speed-up of a generator that adds nothing to the model: each decode step "
                              "costs only the model's own call (model_call_seconds) and the prompts cost what they "
                              "cost above; a generator that processes prompts as this one does cannot exceed it "
                              "on this model and backend"}}


def model_call_seconds(model, tokens: list[int], length: int, batch: int, steps: int, repeat: int) -> float:
    """Seconds of one decode step of the bare model, the least any generator pays: `batch` rows of
    `length` prompt tokens in the model's own KV cache (mlx-lm make_prompt_cache; rows of one length,
    so no padding and no mask), then `steps` greedy steps of one model call and an argmax each,
    evaluated a step ahead as mlx-lm's generators do; nothing per sequence. The best of `repeat`."""
    import mlx.core as mx
    from mlx_lm.models.cache import make_prompt_cache

    net = model._load()[0]
    best = float("inf")
    for _ in range(repeat):
        cache = make_prompt_cache(net)
        net(mx.array([tokens[:length]] * batch), cache=cache)
        mx.eval([c.state for c in cache])
        y = mx.zeros((batch,), dtype=mx.uint32)
        t = time.perf_counter()
        for _ in range(steps):
            nxt = mx.argmax(net(y[:, None], cache=cache)[:, -1, :], axis=-1)
            mx.async_eval(nxt)
            y.tolist()
            y = nxt
        y.tolist()
        best = min(best, (time.perf_counter() - t) / steps)
    return best


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(ROOT / "build" / "bench" / "analyze.json"))
    ap.add_argument("--findings", type=int, default=10_000)
    ap.add_argument("--repeat", type=int, default=3, help="runs of each kb set and of each generation mode")
    ap.add_argument("--model", default=str(ROOT / "build" / "models" / "base" / "tiny-olmo2"))
    ap.add_argument("--prompts", type=int, default=8, help="prompts, generated as one batch and one at a time")
    ap.add_argument("--max-tokens", type=int, default=256)
    args = ap.parse_args()
    bench = Path(args.out).parent
    bench.mkdir(parents=True, exist_ok=True)
    report = {"machine": {"cpus": os.cpu_count(), "load_average": [round(x, 2) for x in os.getloadavg()]},
              "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
              "kb": kb(bench, args.findings, args.repeat),
              "generation_tiny_model": generation(Path(args.model), args.prompts, args.max_tokens, args.repeat)}
    report["targets_met"] = all(report["kb"][k]["met"] for k in ("with_source_context", "without_source_context")) \
        and report["generation_tiny_model"]["met"]
    write_atomic(Path(args.out), orjson.dumps(report, option=orjson.OPT_INDENT_2))
    print(orjson.dumps(report, option=orjson.OPT_INDENT_2).decode())


if __name__ == "__main__":
    main()
