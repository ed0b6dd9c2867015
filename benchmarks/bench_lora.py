"""Benchmark `secai-lora train` against the `mlx_lm lora` CLI: training throughput (real tokens per
second) and peak memory, same data, model and settings, in the same run. Writes build/bench/lora.json.

What is compared
- Both tools run as subprocesses (`python -m secai.commands.lora train ...`, `python -m mlx_lm lora --train
  ...`), one at a time, alternating which goes first, --reps times each (medians reported), with
  HF_HUB_OFFLINE=1. Each is started through a short prelude that loads the BLAS secai.cpublas picks
  (on Linux the system's OpenBLAS, else MLX's bundled one: the same for both; recorded as
  machine.cpu_blas), runs the module exactly as `python -m` does (runpy) and, at exit, prints
  MLX's peak memory (mx.get_peak_memory(), whole process) and the process's VmHWM, so both tools
  are read the same way (the tools' own imports are their own: secai-lora never imports torch,
  the CLI imports it through transformers). Peak RSS is the child's
  ru_maxrss from os.wait4. Linux's ru_maxrss of a child starts from its parent's high-water mark
  (it survives fork and exec), so this process stays small: tokenising, planning and building the
  big model happen in a `--prepare` subprocess, and every run records the floor it inherited.
- Same settings for both: LoRA rank 8, scale 20, dropout 0, every block, the same seven linear
  modules (mlx-lm's YAML gets them as `keys`), Adam at a constant learning rate, no warmup, seed 0,
  the same batch size and max_seq_length, prompt masking on (`--mask-prompt`), gradient
  checkpointing off, no validation (the data folders hold train.jsonl only), no checkpoints during
  the run, a progress line every step.
- The same examples: each (model, dataset) gets a folder with exactly steps x batch examples, and
  both tools make one pass over it: the CLI with --iters steps, secai with --epochs 1 (when secai
  packs rows it takes fewer steps for the same examples; that is the point of packing). When
  secai packs, it is also run with --no-pack (sorted, unpacked batches), to separate what packing
  itself brings.
- Throughput is computed here, never copied from a tool: the tokens each step trains are counted
  by re-running each tool's own batching on the same data (secai.training.batches' encode_all / plan_epoch /
  make_batch; mlx-lm's load_dataset / iterate_batches after np.random.seed(seed), as the CLI seeds
  it), and divided by wall time measured here. "Real tokens" are input positions whose input and
  target are both real tokens (sum of length - 1 per example after truncation), the same
  definition for both tools. Two figures: whole process (start to exit: imports, model load,
  tokenisation, compile, training, writing the adapter) and training loop (from the arrival of the
  tool's last line before its loop to the arrival of its step-N progress line: all N steps,
  compiling included, start-up and saving excluded). What each tool reports itself (secai's
  metadata.json; the CLI's tok/s lines, which count loss tokens only) is recorded beside them, and
  the counts are cross-checked against those reports.

Datasets (from --data, a stage-1 dataset directory made by `make dataset`)
- stage1: the real stage-1 training examples (system + user + assistant, 1.2k-2.2k tokens with the
  tiny tokenizer), in file order (secai-split's seeded order).
- mixed: the stage-1 examples plus two short prompt/answer pairs cut from each (the finding's
  tool, rule, title and location -> the first sentence of its summary; -> its risk object),
  shuffled with a fixed seed: a third long, two thirds short (~90-190 tokens).
- short: the short pairs alone.
Models: the tiny test model (--model), and a random-weight OLMo-2 of about 107M parameters built
here with secai.training.tinymodel.build (same tokenizer). On a 2-core MLX CPU build that model trains
about ten tokens per second with the reference BLAS the mlx-cpu wheel bundles and about 150 with
OpenBLAS (2026-12-02), so by default it runs the short pairs only (--big-datasets).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

import orjson  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_lora_memory  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
DATASETS = ("stage1", "mixed", "short")
# OLMo-2's linear layers in a block: secai's default (target_modules null = every linear) and
# mlx-lm's default keys are both these; mlx-lm is given them explicitly, and secai's metadata
# is checked to list the same
KEYS = ["mlp.down_proj", "mlp.gate_proj", "mlp.up_proj", "self_attn.k_proj", "self_attn.o_proj",
        "self_attn.q_proj", "self_attn.v_proj"]
BIG_SIZES = {"hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 11, "num_attention_heads": 12,
             "vocab_size": 2048}
COMMON = {"rank": 8, "scale": 20.0, "dropout": 0.0, "learning_rate": 2e-4, "seed": 0}
TAG = "BENCH_LORA"
# run a module as `python -m` does, with the BLAS secai.cpublas picks loaded under MLX for either
# tool; at exit print MLX's peak memory and this process's VmHWM
PRELUDE = (
    "import atexit, runpy, sys\n"
    "from secai import cpublas\n"
    "cpublas.prefer()\n"  # the same BLAS under MLX for both tools (secai's own, which training imports)
    "def _peak():\n"
    "    import mlx.core as mx\n"
    "    try:\n"
    "        hwm = [l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM:')][0]\n"
    "    except (OSError, IndexError):\n"
    "        hwm = '-1'\n"
    f"    sys.stderr.write('\\n{TAG} %d %s\\n' % (mx.get_peak_memory(), hwm)); sys.stderr.flush()\n"
    "atexit.register(_peak)\n"
    "mod = sys.argv[1]; sys.argv = [mod] + sys.argv[2:]\n"
    "runpy.run_module(mod, run_name='__main__', alter_sys=True)\n"
)
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
SECAI_START = re.compile(r": stage \w+, \d+ train / \d+ valid examples, \d+ steps")  # said just before its loop
SECAI_STEP = re.compile(r"step (\d+)/(\d+): train loss")
CLI_START = re.compile(r"^\s*iter\s+train_loss\s+tok/s\s+tokens")  # TrainUI.__enter__, just before its loop
CLI_STEP = re.compile(r"^\s*(\d+)\s+(\S+)\s*[▼▲]\s+([\d,]+)\s+([\d.]+)k\s*$")


# ---------------------------------------------------------------- data (--prepare)

def short_pairs(record: dict) -> list[dict]:
    """Two short prompt/answer pairs cut from a stage-1 example: its finding's identity -> the first
    sentence of the summary, and -> the risk object. [] when the example is not in that form."""
    msgs = record["messages"]
    m = re.search(r"<<<DATA\n(.*?)\nDATA>>>", msgs[-2]["content"], re.S)
    try:
        finding, answer = json.loads(m.group(1)), json.loads(msgs[-1]["content"])
        loc = finding.get("location") or {}
        ident = f"{finding['tool']} {finding['rule_id']} ({finding['severity']}): {finding['title']}"
        where = f" at {loc.get('path')}:{loc.get('start_line')}" if loc.get("path") else ""
        first = re.split(r"(?<=\.)\s", answer["summary"].strip())[0]
        risk = json.dumps(answer["risk"], sort_keys=True)
    except (AttributeError, KeyError, TypeError, ValueError):
        return []
    return [{"messages": [{"role": "user", "content": f"{ident}{where}. In one sentence: what was found?"},
                          {"role": "assistant", "content": first}]},
            {"messages": [{"role": "user", "content": f"{ident}. Rate its risk (critical, high, medium, low or info) "
                                                      "and say why, as JSON."},
                          {"role": "assistant", "content": risk}]}]


def datasets(src: Path, seed: int) -> dict[str, list[dict]]:
    stage1 = [{"messages": [{"role": m["role"], "content": m["content"]} for m in json.loads(line)["messages"]]}
              for line in (src / "train.jsonl").read_text(encoding="utf-8").splitlines() if line.strip()]
    short = [p for r in stage1 for p in short_pairs(r)]
    mixed = stage1 + short
    random.Random(seed).shuffle(mixed)
    random.Random(seed).shuffle(short)
    return {"stage1": stage1, "mixed": mixed, "short": short}


def write_split(records: list[dict], d: Path) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    (d / "train.jsonl").write_bytes(b"".join(orjson.dumps(r, option=orjson.OPT_APPEND_NEWLINE) for r in records))
    return d


def lengths(tokenizer, records: list[dict]) -> dict:
    n = sorted(len(tokenizer.apply_chat_template(r["messages"], return_dict=False)) for r in records)
    return {"examples": len(n), "tokens_min": n[0], "tokens_median": int(statistics.median(n)), "tokens_max": n[-1],
            "over_1000_tokens": sum(x > 1000 for x in n)}


# ---------------------------------------------------------------- what each tool trains on, step by step (--prepare)

def secai_settings(cfg: dict):
    from secai.training.run import settings

    return settings({"rank": cfg["rank"], "scale": cfg["scale"], "dropout": cfg["dropout"], "num_layers": -1,
                     "target_modules": None, "optimizer": "adam", "learning_rate": cfg["learning_rate"],
                     "weight_decay": 0.0, "lr_schedule": "constant", "warmup": 0, "batch_size": cfg["batch_size"],
                     "epochs": 1, "iters": 0, "max_seq_length": cfg["max_seq_length"], "grad_checkpoint": False,
                     "mask_prompt": True, "pack": True, "seed": cfg["seed"], "steps_per_report": 1,
                     "steps_per_eval": 10**9, "steps_per_save": 10**9, "val_batches": -1, "patience": 0})


def secai_steps(tokenizer, records: list[dict], cfg: dict, pack: bool, shape) -> dict:
    """secai's batches for one epoch, as secai.training.engine.Run makes them (OLMo-2 has the layout
    packing drives; with pack, rows are packed when packing_pays for the model's shape)."""
    from dataclasses import replace

    from secai.training import batches as T

    s = secai_settings(cfg)
    enc = T.encode_all(tokenizer, [r["messages"] for r in records], s)
    packed = pack and T.packing_pays(enc, s, shape)
    width = T.row_width(enc, s) if packed else None
    steps = []
    for rows in T.plan_epoch(enc, replace(s, pack=packed), 0):
        b = T.make_batch(enc, rows, width, len(rows))
        steps.append({"tokens": b.tokens, "positions": int(b.inputs.size), "loss_tokens": int(b.weights.sum())})
    plan_packed = T.plan_epoch(enc, replace(s, pack=True), 0)
    plan_unpacked = T.plan_epoch(enc, replace(s, pack=False), 0)
    return {"steps": steps, "packed": packed, "truncated": enc.truncated, "dropped": enc.dropped,
            "packing_check": {"rule": "secai packs when packed rows cost <= 0.9 x sorted unpacked batches in modelled "
                                      "FLOPs (linear layers per position, attention per score; "
                                      "secai.training.batches.packing_pays)",
                              "cost_if_packed": T.cost(enc, plan_packed, T.row_width(enc, s), shape),
                              "cost_if_unpacked": T.cost(enc, plan_unpacked, None, shape),
                              "positions_if_packed": T.positions(enc, plan_packed, T.row_width(enc, s)),
                              "positions_if_unpacked": T.positions(enc, plan_unpacked, None),
                              "row_width_if_packed": T.row_width(enc, s),
                              "steps_if_packed": len(plan_packed), "steps_if_unpacked": len(plan_unpacked)}}


def cli_steps(tokenizer, data_dir: Path, cfg: dict, iters: int) -> dict:
    """The CLI's batches: mlx-lm's own load_dataset and iterate_batches, the global numpy seed set
    as mlx_lm.lora.run() sets it."""
    import contextlib

    import numpy as np
    from mlx_lm.tuner.datasets import CacheDataset, load_dataset
    from mlx_lm.tuner.trainer import iterate_batches

    args = argparse.Namespace(data=str(data_dir), train=True, test=False, mask_prompt=True)
    with contextlib.redirect_stdout(sys.stderr):  # its warnings go to stdout
        train, _, _ = load_dataset(args, tokenizer)
        np.random.seed(cfg["seed"])
        batches = list(zip(range(iters), iterate_batches(CacheDataset(train), cfg["batch_size"],
                                                         cfg["max_seq_length"], loop=True)))
    steps = []
    for _, (batch, lens) in batches:
        lens = np.array(lens)
        b, w = batch.shape
        t = np.arange(1, w)  # the loss mask of mlx_lm.tuner.trainer.default_loss
        mask = (t[None, :] >= lens[:, :1]) & (t[None, :] <= lens[:, 1:])
        steps.append({"tokens": int((lens[:, 1] - 1).sum()), "positions": int(b * (w - 1)),
                      "loss_tokens": int(mask.sum())})
    return {"steps": steps, "padding_widths": "each batch padded to 32 * ceil(longest / 32) positions; batches are "
                                              "consecutive examples in file order (its length sort keys on "
                                              "len(record dict), which is 1 for every chat record: mlx-lm #596)"}


def matmul_gflops() -> dict:
    """A 2048x768 @ 768x3072 float32 matmul in MLX (CPU) and numpy, best of 3."""
    import mlx.core as mx
    import numpy as np

    a, b = mx.random.normal((2048, 768)), mx.random.normal((768, 3072))
    mx.eval(a, b)
    an, bn = np.array(a), np.array(b)
    out = {}
    for name, fn in (("mlx", lambda: mx.eval(a @ b)), ("numpy", lambda: an @ bn)):
        best = float("inf")
        for _ in range(3):
            t = time.perf_counter()
            fn()
            best = min(best, time.perf_counter() - t)
        out[name] = round(2 * 2048 * 768 * 3072 / best / 1e9, 1)
    return out


def prepare(spec: dict) -> dict:
    """Everything heavy, in its own process: data folders, the big model, each tool's batches."""
    import contextlib

    from secai import cpublas

    blas = cpublas.prefer()  # as both tools' runs do (PRELUDE)
    import mlx.core as mx
    from mlx_lm import load

    work, tiny, data = Path(spec["work"]), Path(spec["model"]), Path(spec["data"])
    records = datasets(data, seed=0)
    with contextlib.redirect_stdout(sys.stderr):
        _, tokenizer = load(str(tiny), lazy=True)
    info = json.loads((tiny / "secai-model.json").read_text())
    models = {"tiny": {"path": str(tiny), **info["sizes"], "parameters": info["parameters"]}}
    dirs = {"tiny": tiny}
    if any(job["model"] == "big" for job in spec["jobs"]):
        t = time.perf_counter()
        if spec["big_model"]:
            big = Path(spec["big_model"])
        else:
            from secai.training import tinymodel

            big = tinymodel.build(work / "big-olmo2", **BIG_SIZES)
        info = json.loads((big / "secai-model.json").read_text()) if (big / "secai-model.json").is_file() else {}
        models["big"] = {"path": str(big) if spec["big_model"] else "built here with secai.training.tinymodel.build (temporary)",
                         **info.get("sizes", {}), "parameters": info.get("parameters"),
                         "build_s": round(time.perf_counter() - t, 1)}
        dirs["big"] = big
    jobs = []
    for job in spec["jobs"]:
        cfg = job["cfg"]
        n = cfg["steps"] * cfg["batch_size"]
        subset = records[job["dataset"]][:n]
        if len(subset) < n:
            raise SystemExit(f"bench_lora: error: dataset {job['dataset']} has {len(subset)} examples, {n} needed")
        # its own folder per job: the memory job's (model, dataset) is also a throughput job's
        ddir = write_split(subset, work / "data" / f"{job['model']}-{job['dataset']}{'-memory' if job.get('memory') else ''}")
        from secai.training.batches import Shape

        shape = Shape.of(json.loads((Path(dirs[job["model"]]) / "config.json").read_text()))
        secai = secai_steps(tokenizer, subset, cfg, pack=True, shape=shape)
        jobs.append({**job, "model_dir": str(dirs[job["model"]]), "data_dir": str(ddir),
                     "data": lengths(tokenizer, subset), "secai": secai,
                     "secai_no_pack": secai_steps(tokenizer, subset, cfg, pack=False, shape=shape) if secai["packed"] else None,
                     "cli": cli_steps(tokenizer, ddir, cfg, cfg["steps"])})
    from importlib.metadata import version

    return {"models": models, "jobs": jobs,
            "machine": {"mlx": version("mlx"), "mlx_lm": version("mlx-lm"), "device": str(mx.default_device()),
                        "cpu_blas": blas or "bundled with mlx",
                        "matmul_gflops_2048x768x3072": matmul_gflops()}}


# ---------------------------------------------------------------- one run

def _reader(stream, sink: list):
    for raw in iter(stream.readline, b""):
        sink.append((time.perf_counter(), raw.decode("utf-8", "replace")))
    stream.close()


def run(argv: list[str], env: dict, log: Path) -> dict:
    """Run `python -c PRELUDE argv...`: wall time, ru_maxrss, MLX peak, timestamped output lines."""
    out, err = [], []
    floor = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    load_before = os.getloadavg()[0]
    t0 = time.perf_counter()
    proc = subprocess.Popen([PY, "-c", PRELUDE, *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                            cwd=ROOT)
    readers = [threading.Thread(target=_reader, args=(proc.stdout, out)),
               threading.Thread(target=_reader, args=(proc.stderr, err))]
    for r in readers:
        r.start()
    try:
        _, status, usage = os.wait4(proc.pid, 0)
    except BaseException:
        proc.kill()
        raise
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    for r in readers:
        r.join()
    log.write_text("".join(f"{t - t0:9.3f} {line}" for t, line in sorted(out + err)), encoding="utf-8")
    if proc.returncode:
        tail = "".join(line for _, line in err[-15:])
        raise RuntimeError(f"{' '.join(argv[:2])} exited {proc.returncode} (log {log}):\n{tail}")
    tagged = [line.split() for _, line in err if line.startswith(TAG + " ")]
    mlx_peak, hwm = (int(tagged[-1][1]), int(tagged[-1][2])) if tagged else (None, -1)
    return {"wall_s": wall, "t0": t0, "ru_maxrss_bytes": usage.ru_maxrss * 1024, "rss_floor_bytes": floor,
            "vm_hwm_bytes": hwm * 1024 if hwm >= 0 else None, "mlx_peak_bytes": mlx_peak, "out": out, "err": err,
            "load_1min_before": round(load_before, 2), "load_1min_after": round(os.getloadavg()[0], 2)}


def step_times(lines: list[tuple[float, str]], pattern: re.Pattern) -> dict[int, float]:
    times = {}
    for t, line in lines:
        m = pattern.search(ANSI.sub("", line))
        if m:
            times[int(m.group(1))] = t
    return times


def line_time(lines: list[tuple[float, str]], pattern: re.Pattern) -> float | None:
    return next((t for t, line in lines if pattern.search(ANSI.sub("", line))), None)


def figures(r: dict, steps: list[dict], times: dict[int, float], start: float | None) -> dict:
    """The run's figures. The training loop runs from `start` (when the tool's last line before its
    loop arrived) to the arrival of its step-N line: all N steps, first-shape compile included."""
    n = len(steps)
    tokens = sum(s["tokens"] for s in steps)
    positions = sum(s["positions"] for s in steps)
    fig = {"wall_s": round(r["wall_s"], 2), "steps": n, "real_tokens": tokens, "positions": positions,
           "loss_tokens": sum(s["loss_tokens"] for s in steps), "padding_fraction": round(1 - tokens / positions, 4),
           "tokens_per_s_process": round(tokens / r["wall_s"], 2),
           "peak_rss_bytes": r["ru_maxrss_bytes"], "vm_hwm_bytes": r["vm_hwm_bytes"],
           "rss_floor_bytes": r["rss_floor_bytes"], "peak_rss_above_floor": r["ru_maxrss_bytes"] > r["rss_floor_bytes"],
           "mlx_peak_bytes": r["mlx_peak_bytes"], "load_1min_before_after": [r["load_1min_before"], r["load_1min_after"]]}
    if start is not None and n in times:
        loop_s = times[n] - start
        fig.update(loop_s=round(loop_s, 2), tokens_per_s_loop=round(tokens / loop_s, 2),
                   before_loop_s=round(start - r["t0"], 2), after_loop_s=round(r["t0"] + r["wall_s"] - times[n], 2),
                   first_step_s=round(times[1] - start, 2) if 1 in times else None)
    return fig


def run_secai(job: dict, plan: dict, work: Path, tag: str, pack: bool, batch_size: int | None = None,
              grad_accum: int = 1) -> dict:
    """One secai run on the job's data; batch_size x grad_accum rows per step (default: the job's batch)."""
    cfg, out = job["cfg"], work / "secai-out"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1", "SECAI_MODELS_DIR": str(work / "models")}
    argv = ["secai.commands.lora", "train", "--stage", "analysis", "--data", job["data_dir"], "--base-model", job["model_dir"],
            "--out", str(out), "--name", tag, "--overwrite",
            "--rank", str(cfg["rank"]), "--scale", str(cfg["scale"]), "--dropout", str(cfg["dropout"]),
            "--num-layers", "-1", "--optimizer", "adam", "--learning-rate", str(cfg["learning_rate"]),
            "--lr-schedule", "constant", "--warmup", "0", "--batch-size", str(batch_size or cfg["batch_size"]),
            "--grad-accum", str(grad_accum),
            "--epochs", "1", "--iters", "0", "--max-seq-length", str(cfg["max_seq_length"]), "--no-grad-checkpoint",
            "--mask-prompt", "--pack" if pack else "--no-pack", "--seed", str(cfg["seed"]), "--steps-per-report", "1",
            "--steps-per-eval", str(10**9), "--steps-per-save", str(10**9)]
    r = run(argv, env, work / f"{tag}.log")
    meta = orjson.loads((out / tag / "metadata.json").read_bytes())
    t = meta["training"]
    fig = figures(r, plan["steps"], step_times(r["err"], SECAI_STEP), line_time(r["err"], SECAI_START))
    fig["reported"] = {k: t[k] for k in ("tokens_per_second", "train_seconds", "duration_seconds", "train_tokens",
                                         "loss_tokens", "peak_memory_bytes", "padding_fraction", "packed", "steps",
                                         "truncated", "dropped")}
    fig["reported"]["what"] = ("metadata.json training: real input tokens / seconds inside its steps; MLX peak since "
                               "its loop began")
    layers = json.loads((Path(job["model_dir"]) / "config.json").read_text())["num_hidden_layers"]
    fig["train_losses"] = [e["train_loss"] for e in map(orjson.loads, (out / tag / "training_log.jsonl").read_bytes().splitlines())
                           if "train_loss" in e]
    fig["checks"] = {"steps": t["steps"] == len(plan["steps"]), "real_tokens": t["train_tokens"] == fig["real_tokens"],
                     "loss_tokens": t["loss_tokens"] == fig["loss_tokens"], "packed": t["packed"] == plan["packed"],
                     "modules": sorted(meta["lora"]["keys"]) == KEYS and meta["lora"]["num_layers"] == layers}
    shutil.rmtree(out / tag, ignore_errors=True)
    return fig


def run_cli(job: dict, plan: dict, work: Path, tag: str, mlx_lm_version: str) -> dict:
    cfg = job["cfg"]
    yaml_path = work / "mlx_lm_lora.yaml"  # JSON is YAML
    yaml_path.write_text(json.dumps({"lora_parameters": {"rank": cfg["rank"], "scale": cfg["scale"],
                                                         "dropout": cfg["dropout"], "keys": KEYS}}) + "\n")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    iters = len(plan["steps"])
    argv = ["mlx_lm", "lora", "--train", "--model", job["model_dir"], "--data", job["data_dir"], "-c", str(yaml_path),
            "--fine-tune-type", "lora", "--num-layers", "-1", "--optimizer", "adam",
            "--learning-rate", str(cfg["learning_rate"]), "--batch-size", str(cfg["batch_size"]), "--iters", str(iters),
            "--max-seq-length", str(cfg["max_seq_length"]), "--mask-prompt", "--seed", str(cfg["seed"]),
            "--steps-per-report", "1", "--steps-per-eval", str(10**9), "--save-every", str(10**9),
            "--adapter-path", str(work / f"{tag}-adapters")]
    r = run(argv, env, work / f"{tag}.log")
    fig = figures(r, plan["steps"], step_times(r["out"], CLI_STEP), line_time(r["out"], CLI_START))
    rows = [m for m in (CLI_STEP.search(ANSI.sub("", line)) for _, line in r["out"]) if m]
    trainable = next((ANSI.sub("", line).strip() for _, line in r["out"] if "Trainable parameters" in line), None)
    reported_loss_tokens = float(rows[-1].group(4)) * 1000 if rows else None
    fig["reported"] = {"tokens_per_second_median": statistics.median(int(m.group(3).replace(",", "")) for m in rows)
                       if rows else None,
                       "trained_tokens": reported_loss_tokens, "trainable_parameters": trainable, "peak_memory": None,
                       "what": "its per-step lines: tok/s = loss tokens (its mask sum) / seconds inside its steps; "
                               f"trained tokens in thousands; mlx-lm {mlx_lm_version} prints no peak memory"}
    fig["checks"] = {"steps": len(rows) == iters,
                     "loss_tokens": reported_loss_tokens is not None and abs(reported_loss_tokens - fig["loss_tokens"]) <= 50}
    shutil.rmtree(work / f"{tag}-adapters", ignore_errors=True)
    return fig


# ---------------------------------------------------------------- summary

def med(runs: list[dict], key: str):
    values = [r[key] for r in runs if r.get(key) is not None]
    return statistics.median(values) if values else None


def ratio(a, b):
    return round(a / b, 3) if a is not None and b else None


FIGURES = ("tokens_per_s_loop", "tokens_per_s_process", "wall_s", "loop_s", "peak_rss_bytes", "vm_hwm_bytes",
           "mlx_peak_bytes")


def ratios(mine: dict, cli: dict) -> dict:
    return {"throughput_loop": ratio(mine["tokens_per_s_loop"], cli["tokens_per_s_loop"]),
            "throughput_process": ratio(mine["tokens_per_s_process"], cli["tokens_per_s_process"]),
            "peak_rss": ratio(mine["peak_rss_bytes"], cli["peak_rss_bytes"]),
            "vm_hwm": ratio(mine["vm_hwm_bytes"], cli["vm_hwm_bytes"]),
            "mlx_peak": ratio(mine["mlx_peak_bytes"], cli["mlx_peak_bytes"])}


def summarise(runs: dict[str, list[dict]]) -> dict:
    medians = {tool: {k: med(rs, k) for k in FIGURES} for tool, rs in runs.items() if rs}
    r = ratios(medians["secai"], medians["mlx_lm_cli"])
    # issue 16: at least 1.1x the CLI's throughput, in the loop and for the whole process
    targets = {"throughput_loop_ge_1.1": (r["throughput_loop"] or 0) >= 1.1,
               "throughput_process_ge_1.1": (r["throughput_process"] or 0) >= 1.1,
               "peak_rss_le_1.0": r["peak_rss"] is not None and r["peak_rss"] <= 1.0,
               "mlx_peak_le_1.0": r["mlx_peak"] is not None and r["mlx_peak"] <= 1.0}
    out = {"median": medians, "ratio_secai_over_cli": r, "targets": targets}
    if "secai_no_pack" in medians:
        out["ratio_secai_no_pack_over_cli"] = ratios(medians["secai_no_pack"], medians["mlx_lm_cli"])
        # secai chose packing: it must have saved measured time against the same run unpacked
        targets["packing_saves_time"] = medians["secai"]["wall_s"] <= medians["secai_no_pack"]["wall_s"]
    targets["met"] = all(targets.values())
    return out


# ---------------------------------------------------------------- main

def dataset_names(text: str) -> list[str]:
    out = [n for n in text.split(",") if n]
    unknown = set(out) - set(DATASETS)
    if unknown:
        sys.exit(f"bench_lora: error: unknown dataset(s) {', '.join(sorted(unknown))} ({', '.join(DATASETS)})")
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(ROOT / "build" / "bench" / "lora.json"))
    ap.add_argument("--model", default=str(ROOT / "build" / "models" / "base" / "tiny-olmo2"), help="the tiny model")
    ap.add_argument("--data", default=str(ROOT / "build" / "datasets" / "analysis"),
                    help="stage-1 dataset directory (make dataset)")
    ap.add_argument("--big-model", help="use this model folder as the big model instead of building one")
    ap.add_argument("--no-big", action="store_true", help="tiny model only")
    ap.add_argument("--reps", type=int, default=3,
                    help="runs of each tool per model x dataset (medians: with 3, one disturbed run does not move them)")
    ap.add_argument("--tiny-datasets", default="stage1,mixed,short", help="comma-separated: stage1, mixed, short")
    ap.add_argument("--tiny-steps", type=int, default=4)
    ap.add_argument("--tiny-batch", type=int, default=4)
    ap.add_argument("--tiny-max-seq", type=int, default=2048)
    ap.add_argument("--big-datasets", default="short", help="comma-separated: stage1, mixed, short")
    ap.add_argument("--big-steps", type=int, default=3)
    ap.add_argument("--big-batch", type=int, default=2)
    ap.add_argument("--big-max-seq", type=int, default=256)
    ap.add_argument("--memory-model", choices=("big", "tiny"), default="big",
                    help="the model of the batch 1 x accum 8 vs batch 8 memory figure (bench_lora_memory)")
    ap.add_argument("--memory-steps", type=int, default=2, help="optimizer steps of each memory run")
    ap.add_argument("--no-memory", action="store_true", help="skip the memory figure")
    ap.add_argument("--quick", action="store_true", help="tiny model only, 3 steps of batch 2 (about a minute)")
    ap.add_argument("--keep", action="store_true", help="keep the work folder (logs, data) and say where")
    ap.add_argument("--prepare", metavar="SPEC", help=argparse.SUPPRESS)  # internal: the heavy part, in its own process
    args = ap.parse_args()
    if args.prepare:
        spec = json.loads(Path(args.prepare).read_text())
        Path(spec["result"]).write_bytes(orjson.dumps(prepare(spec)))
        return
    if args.quick:
        args.no_big, args.tiny_steps, args.tiny_batch, args.memory_model = True, 3, 2, "tiny"
    model, data = Path(args.model).absolute(), Path(args.data).absolute()
    for p, what in ((model / "secai-model.json", "tiny model (make demo-model)"),
                    (data / "train.jsonl", "stage-1 dataset (make dataset)")):
        if not p.is_file():
            sys.exit(f"bench_lora: error: {p} is missing: build the {what}")
    jobs = [{"model": "tiny", "dataset": d, "cfg": {**COMMON, "batch_size": args.tiny_batch,
                                                   "max_seq_length": args.tiny_max_seq, "steps": args.tiny_steps}}
            for d in dataset_names(args.tiny_datasets)]
    if not args.no_big:
        jobs += [{"model": "big", "dataset": d, "cfg": {**COMMON, "batch_size": args.big_batch,
                                                       "max_seq_length": args.big_max_seq, "steps": args.big_steps}}
                 for d in dataset_names(args.big_datasets)]
    if not args.no_memory:  # the short pairs, batch 8 (1 x accum 8), the big model's max_seq_length
        jobs.append({"model": args.memory_model, "dataset": "short", "memory": True,
                     "cfg": {**COMMON, "batch_size": 8, "max_seq_length": args.big_max_seq, "steps": args.memory_steps}})
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    load_at_start = [round(x, 2) for x in os.getloadavg()]
    started = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="secai-bench-lora-"))
    try:
        spec = {"work": str(work), "model": str(model), "data": str(data), "big_model": args.big_model, "jobs": jobs,
                "result": str(work / "prepared.json")}
        (work / "spec.json").write_text(json.dumps(spec))
        print("bench_lora: preparing data, plans" + ("" if args.no_big else " and the big model"), file=sys.stderr)
        subprocess.run([PY, __file__, "--prepare", str(work / "spec.json")], check=True, cwd=ROOT,
                       stdout=subprocess.DEVNULL)
        prep = orjson.loads((work / "prepared.json").read_bytes())
        results, memory = {}, None
        for job in prep["jobs"]:
            if job.get("memory"):
                print(f"bench_lora: memory, {job['model']} model: batch 8 against batch 1 x accum 8 ...", file=sys.stderr, flush=True)
                memory = bench_lora_memory.compare(job, work, run_secai)
                print(f"bench_lora: memory: loop peak ratio {memory['memory_ratio_accumulated_over_batch']}, loss curves "
                      f"within {memory['loss_max_relative_difference']}", file=sys.stderr, flush=True)
                continue
            tools = ["secai", "mlx_lm_cli"] + (["secai_no_pack"] if job["secai_no_pack"] else [])
            runs = {t: [] for t in tools}
            for rep in range(args.reps):
                order = tools if rep % 2 == 0 else tools[::-1]
                for tool in order:
                    tag = f"{job['model']}-{job['dataset']}-{tool}-{rep}"
                    print(f"bench_lora: {tag} ...", file=sys.stderr, flush=True)
                    if tool == "mlx_lm_cli":
                        fig = run_cli(job, job["cli"], work, tag, prep["machine"]["mlx_lm"])
                    else:
                        fig = run_secai(job, job["secai"] if tool == "secai" else job["secai_no_pack"], work, tag,
                                        pack=tool == "secai")
                    fig["order"] = order.index(tool) + 1
                    runs[tool].append(fig)
                    print(f"bench_lora: {tag}: {fig['wall_s']} s, {fig.get('tokens_per_s_loop')} tokens/s in the loop, "
                          f"{fig['tokens_per_s_process']} per process second, peak RSS "
                          f"{fig['peak_rss_bytes'] / 2**20:.0f} MiB, MLX peak {fig['mlx_peak_bytes'] / 2**20:.0f} MiB",
                          file=sys.stderr, flush=True)
            cfg = job["cfg"]
            results[f"{job['model']}/{job['dataset']}"] = {
                "model": job["model"], "dataset": job["dataset"], "data": job["data"],
                "settings": {**{k: v for k, v in cfg.items() if k != "steps"}, "examples": cfg["steps"] * cfg["batch_size"],
                             "epochs": 1, "steps_cli": cfg["steps"], "steps_secai": len(job["secai"]["steps"])},
                "secai_batching": {k: job["secai"][k] for k in ("packed", "truncated", "dropped", "packing_check")},
                "cli_batching": job["cli"]["padding_widths"],
                **summarise(runs), "runs": runs}
        report = {
            "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                        **prep["machine"], "load_average_1_5_15_at_start": load_at_start,
                        "load_average_1_5_15_at_end": [round(x, 2) for x in os.getloadavg()]},
            "bench_seconds": round(time.perf_counter() - started, 1),
            "method": {
                "throughput": "real tokens (input positions whose input and target are real tokens: length - 1 per "
                              "example after each tool's truncation), counted here by re-running each tool's own "
                              "batching on the same data, / wall time measured here",
                "tokens_per_s_process": "all steps' real tokens / the subprocess's wall time (start to exit)",
                "tokens_per_s_loop": "all steps' real tokens / time from the arrival of the tool's last line before its "
                                     "loop (secai: 'NAME: stage ..., N steps, packing ...'; the CLI: its 'iter "
                                     "train_loss tok/s tokens' header) to the arrival of its step-N line; tracing and "
                                     "compiling each new batch shape is inside, as it is inside each loop",
                "peak_rss": "ru_maxrss of the child (os.wait4); it cannot be below rss_floor_bytes, this process's "
                            "own high-water mark when the child started (Linux carries it over fork and exec)",
                "vm_hwm": "VmHWM of the child's own address space at exit (/proc/self/status), no floor",
                "mlx_peak": "mx.get_peak_memory() at the child's exit (whole process), printed by the same prelude "
                            "for both tools",
                "same_examples": "each run trains one pass over the same steps x batch examples: the CLI with --iters "
                                 "steps, secai with --epochs 1",
                "order": "tools alternate which runs first; medians over reps",
                "targets": "met = loop and whole-process throughput ratios >= 1.1, peak RSS and MLX peak ratios <= "
                           "1.0, and, where secai packed, its wall time <= the unpacked run's",
                "settings_common": "LoRA rank 8, scale 20, dropout 0, all blocks, keys " + ", ".join(KEYS) + "; Adam, "
                                   "constant lr 2e-4, no warmup; seed 0; prompt masked; no grad checkpointing; no "
                                   "validation; no checkpoints during the run; a progress line every step",
                "datasets": {"stage1": "the stage-1 training examples (--data train.jsonl), file order; first N",
                             "mixed": "stage-1 examples plus two short prompt/answer pairs cut from each (finding "
                                      "identity -> first summary sentence; -> risk object), shuffled (seed 0); first N",
                             "short": "the short pairs alone, shuffled (seed 0); first N"},
                "big_model_settings": "the ~107M model trains about 150 tokens/s on a 2-core CPU (MLX's matmul "
                                      "at machine.matmul_gflops), so one batch of stage-1 examples (1.2k-2.2k "
                                      "tokens each) takes half a minute: by default it runs the short pairs, "
                                      "batch 2, 3 steps, max_seq_length 256 (nothing truncated); --big-datasets "
                                      "stage1,mixed runs the others, --big-steps more steps",
            },
            "models": prep["models"],
            "results": results,
            "memory_grad_accum": memory,
        }
        Path(args.out).write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2) + b"\n")
        brief = {k: {"ratio_secai_over_cli": v["ratio_secai_over_cli"], "targets": v["targets"]} for k, v in results.items()}
        if memory:
            brief["memory_grad_accum"] = {k: memory[k] for k in ("memory_ratio_accumulated_over_batch",
                                                                 "loss_max_relative_difference", "targets")}
        print(orjson.dumps(brief, option=orjson.OPT_INDENT_2).decode())
    finally:
        if args.keep:
            print(f"bench_lora: work folder kept: {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
