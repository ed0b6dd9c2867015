"""bench_lora's memory figure (issue 16): secai-lora at batch 1 x --grad-accum 8 against batch 8, on
the same examples and the same model (by default the random 107M OLMo-2), both as subprocesses run
by bench_lora.run_secai.

- Peak memory: the MLX peak of the training loop as secai-lora records it (metadata.json
  training.peak_memory_bytes: mx.reset_peak_memory() when the loop starts, mx.get_peak_memory() at
  its end; the model's weights, resident in both, are inside), and the whole process's MLX peak
  (model loading included). Target: the accumulated run's loop peak <= 0.5 x the batch-8 run's.
- Loss curve: the training loss of every optimizer step (training_log.jsonl). Accumulation is
  exact, so the curves may differ only by float rounding (summation order): target, the largest
  relative difference <= 1e-3.
"""

from __future__ import annotations

MEMORY_RATIO_TARGET = 0.5
LOSS_RELATIVE_TARGET = 1e-3


def compare(job: dict, work, run_secai, micro: int = 1, accum: int = 8, reps: int = 1) -> dict:
    """job: a bench_lora job at batch micro x accum (prepared like the others)."""
    runs = {"batch": [], "accumulated": []}
    for rep in range(reps):
        order = ("batch", "accumulated") if rep % 2 == 0 else ("accumulated", "batch")
        for kind in order:
            tag = f"memory-{kind}-{rep}"
            size, n = (micro * accum, 1) if kind == "batch" else (micro, accum)
            fig = run_secai(job, job["secai"], work, tag, pack=True, batch_size=size, grad_accum=n)
            runs[kind].append(fig)
    batch, acc = runs["batch"][0], runs["accumulated"][0]
    loop_peak = {k: min(r["reported"]["peak_memory_bytes"] for r in v) for k, v in runs.items()}
    process_peak = {k: min(r["mlx_peak_bytes"] for r in v) for k, v in runs.items()}
    curves = {"batch": batch["train_losses"], "accumulated": acc["train_losses"]}
    worst = max((abs(a - b) / abs(b) for a, b in zip(curves["accumulated"], curves["batch"])), default=None)
    ratio = round(loop_peak["accumulated"] / loop_peak["batch"], 3)
    return {
        "settings": {"model": job["model"], "dataset": job["dataset"], "examples": job["cfg"]["steps"] * micro * accum,
                     "steps": len(curves["batch"]), "batch": f"{micro * accum} x 1", "accumulated": f"{micro} x {accum}",
                     "max_seq_length": job["cfg"]["max_seq_length"]},
        "loop_peak_bytes": loop_peak, "process_mlx_peak_bytes": process_peak,
        "memory_ratio_accumulated_over_batch": ratio,
        "process_memory_ratio": round(process_peak["accumulated"] / process_peak["batch"], 3),
        "train_loss": curves, "loss_max_relative_difference": worst,
        "wall_s": {k: [r["wall_s"] for r in v] for k, v in runs.items()},
        "targets": targets(ratio, worst, curves),
        "method": __doc__.split("\n\n", 1)[1].strip(),
    }


def targets(ratio: float, worst: float | None, curves: dict) -> dict:
    out = {f"memory_le_{MEMORY_RATIO_TARGET}": ratio <= MEMORY_RATIO_TARGET,
           f"loss_curve_within_{LOSS_RELATIVE_TARGET}": worst is not None and worst <= LOSS_RELATIVE_TARGET,
           "same_steps": len(curves["batch"]) == len(curves["accumulated"]) > 0}
    out["met"] = all(out.values())
    return out
