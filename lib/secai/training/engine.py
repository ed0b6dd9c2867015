"""The LoRA training engine behind `secai-lora`: mlx-lm's pieces, and what mlx-lm lacks.

Built from mlx-lm's Python API (`linear_to_lora_layers`, its LoRA layers, its optimizers and
`build_schedule`, gradient checkpointing, the Metal wired limit its trainer sets) with its own loop, because that loop is where mlx-lm stops short:

- Prompt masking: the loss covers exactly the tokens of the final assistant turn (its content and
  the EOS that ends it) and nothing after it. (mlx-lm's default loss also counts one padding
  target after each sequence.)
- Sample packing: short examples share a row; an attention mask built from segment ids keeps each
  example from seeing the others, so the loss is the unpacked loss (RoPE scores depend only on
  relative positions). Packed rows have one fixed width, so the compiled step is traced once;
  packing is used where it saves modelled compute (batches.packing_pays).
- Full resume: a checkpoint holds the adapter, the optimizer state (moments and step, hence the
  position in the learning-rate schedule), the random state, the step, the best weights so far and
  the log position; the data order is a pure function of (seed, epoch), so a resumed run replays
  the same batches and ends where an uninterrupted one ends.
- Best checkpoint by validation loss, optional early stopping.
- Data parallel under `mlx.launch`: every rank takes its share of each global batch; token-weighted
  loss sums and gradients are all-summed, then divided by the global token count, so N processes
  compute the same update as one process with the same global batch.
- Gradient accumulation, exact: a step's grad_accum micro-batches add up their loss and gradient
  sums and token counts, and the step divides by the total token count once, so N micro-batches of
  B rows give the update of one batch of N x B rows, whatever each micro-batch's token count.
  (mlx-lm's trainer averages the micro-batches' mean gradients, which weighs a micro-batch of few
  tokens as much as one of many.)

Its parts: secai.training.settings (the hyperparameters), secai.training.batches (tokens, masking,
packing, the data order) and secai.training.adapters (LoRA layers, the loss, the optimizer).
"""

from __future__ import annotations

import math
import signal
import time
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Callable

import orjson

from secai.training.adapters import adapter_weights, load_adapter_weights, loss_sum, make_optimizer, supports_packing
from secai.training.batches import (Encoded, Shape, batch_arrays, make_batch, micro_batches, packing_pays,
                                    plan_epoch, row_width, shard)
from secai.training.settings import Settings


# ---------------------------------------------------------------- evaluation

def evaluate(model, data: Encoded, settings: Settings, max_batches: int = -1) -> tuple[float, int]:
    """(mean loss per counted token, counted tokens) over data: fixed batches, the training
    masking, shared out over the ranks of a distributed run."""
    import mlx.core as mx

    world = mx.distributed.init()
    direct = supports_packing(model)
    packed = settings.pack and direct and packing_pays(data, settings, Shape.of(model.args))
    width = row_width(data, settings) if packed else None
    plan = plan_epoch(data, replace(settings, pack=packed, grad_accum=1), -1)
    if max_batches >= 0:
        plan = plan[:max_batches]
    total, count = mx.array(0.0), mx.array(0.0)
    model.eval()
    for rows in plan:
        mine, per_rank = shard(rows, world.rank(), world.size())
        b = make_batch(data, mine, width, per_rank)
        s, n = loss_sum(model, *batch_arrays(b), packed=packed, direct=direct)
        total, count = total + s, count + n
        mx.eval(total, count)
    if world.size() > 1:
        total, count = mx.distributed.all_sum(total, stream=mx.cpu), mx.distributed.all_sum(count, stream=mx.cpu)
    n = int(count.item())
    return (total.item() / n if n else float("nan")), n


# ---------------------------------------------------------------- training

@dataclass
class Result:
    steps: int
    epochs: float
    val_before: float | None
    val_after: float | None
    best_step: int | None
    best_val: float | None
    stopped_early: bool
    train_tokens: int          # real input tokens processed (all ranks)
    loss_tokens: int           # tokens the loss covered (all ranks)
    train_seconds: float       # time in training steps (evaluation excluded)
    peak_memory: int           # bytes (MLX allocator)
    padding_fraction: float    # share of padded positions in the training batches
    world_size: int
    log: list[dict] = field(default_factory=list)


class Interrupted(Exception):
    """SIGINT/SIGTERM: the run saved a checkpoint and stopped; `--resume` continues it."""

    def __init__(self, step: int):
        super().__init__(f"interrupted at step {step}; a checkpoint was saved")
        self.step = step


def total_steps(train: Encoded, settings: Settings, packed: bool) -> tuple[int, list[int]]:
    """(optimizer steps of the run, batches per epoch for the epochs it touches)."""
    s = replace(settings, pack=packed)
    per_epoch = []
    if settings.iters:
        steps = settings.iters
        while sum(per_epoch) < steps:
            per_epoch.append(len(plan_epoch(train, s, len(per_epoch))))
        return steps, per_epoch
    whole = math.floor(settings.epochs)
    for e in range(math.ceil(settings.epochs)):
        per_epoch.append(len(plan_epoch(train, s, e)))
    steps = sum(per_epoch[:whole]) + (round((settings.epochs - whole) * per_epoch[-1]) if settings.epochs > whole else 0)
    return max(steps, 1), per_epoch


class Run:
    """One training run in a work folder that holds its checkpoint and log until it is done."""

    CHECKPOINT = "checkpoint"

    def __init__(self, model, train: Encoded, valid: Encoded | None, settings: Settings, workdir: Path,
                 log: Callable[[str], None] = print):
        import mlx.core as mx

        self.model, self.train_data, self.valid = model, train, (valid if valid and len(valid) else None)
        self.settings, self.workdir, self.say = settings, workdir, log
        self.world = mx.distributed.init()
        self.rank, self.size = self.world.rank(), self.world.size()
        self.packed = settings.pack and supports_packing(model)
        if settings.pack and not self.packed:
            log(f"packing is off: {type(model).__module__} does not have the layout packing drives")
        elif self.packed and not packing_pays(train, settings, Shape.of(model.args)):
            self.packed = False
            log("packing is off: it would not save a tenth of the computation (examples alike in length, or "
                "long ones setting a row width every packed row pays for in attention)")
        self.plan_settings = replace(settings, pack=self.packed)
        self.width = row_width(train, settings) if self.packed else None
        self.steps, self.per_epoch = total_steps(train, settings, self.packed)
        self.log_path = workdir / "training_log.jsonl"
        self._stop = False

    # -- checkpoints
    def _save_checkpoint(self, optimizer, state: dict, best: dict | None) -> None:
        import mlx.core as mx
        from mlx.utils import tree_flatten

        from secai.files import building

        if self.rank != 0:
            return
        with building(self.workdir / self.CHECKPOINT) as tmp:
            mx.save_safetensors(str(tmp / "adapters.safetensors"), adapter_weights(self.model))
            mx.save_safetensors(str(tmp / "optimizer.safetensors"), dict(tree_flatten(optimizer.state)))
            if best is not None:
                mx.save_safetensors(str(tmp / "best.safetensors"), best)
            (tmp / "state.json").write_bytes(orjson.dumps(state, option=orjson.OPT_INDENT_2))

    def _load_checkpoint(self, optimizer) -> tuple[dict, dict | None]:
        import mlx.core as mx
        from mlx.utils import tree_unflatten

        d = self.workdir / self.CHECKPOINT
        state = orjson.loads((d / "state.json").read_bytes())
        load_adapter_weights(self.model, d / "adapters.safetensors", f"checkpoint {d}")
        optimizer.init(self.model.trainable_parameters())
        optimizer.state = tree_unflatten(list(mx.load(str(d / "optimizer.safetensors")).items()))
        best = mx.load(str(d / "best.safetensors")) if (d / "best.safetensors").is_file() else None
        return state, best

    def _log(self, entry: dict) -> None:
        if self.rank == 0:
            with open(self.log_path, "ab") as fh:
                fh.write(orjson.dumps(entry, option=orjson.OPT_APPEND_NEWLINE))

    def _truncate_log(self, lines: int) -> list[dict]:
        if not self.log_path.is_file():
            return []
        kept = self.log_path.read_bytes().splitlines()[:lines]
        if self.rank == 0:  # a kill while resuming must not cut the log short
            from secai.files import write_atomic

            write_atomic(self.log_path, b"".join(line + b"\n" for line in kept))
        return [orjson.loads(line) for line in kept]

    def _on_signal(self, signum, frame):
        self._stop = True

    # -- the loop
    def run(self, resume: bool) -> Result:
        import mlx.core as mx
        import mlx.nn as nn
        from mlx.utils import tree_map
        from mlx_lm.utils import maybe_set_recommended_wired_limit

        s, model = self.settings, self.model
        optimizer = make_optimizer(s, self.steps)
        if s.grad_checkpoint:
            from mlx_lm.tuner.trainer import grad_checkpoint

            grad_checkpoint(model.layers[0])
        state = {"step": 0, "val_before": None, "best_val": None, "best_step": None, "bad_evals": 0,
                 "train_tokens": 0, "loss_tokens": 0, "train_seconds": 0.0, "log_lines": 0, "pad_positions": 0,
                 "positions": 0, "stopped_early": False}
        best = None
        checkpoint = self.workdir / self.CHECKPOINT / "state.json"
        if resume and checkpoint.is_file():
            state, best = self._load_checkpoint(optimizer)
            self.say(f"resuming at step {state['step']} of {self.steps}")
        log = self._truncate_log(state["log_lines"])

        distributed = self.size > 1
        packed = self.packed
        loss_and_grad = nn.value_and_grad(model, partial(loss_sum, packed=packed, direct=supports_packing(model)))

        compiled_state = [model.state, optimizer.state, mx.random.state]

        @partial(mx.compile, inputs=compiled_state, outputs=compiled_state)
        def step(sums, update, *arrays):
            """One micro-batch: its loss and gradient sums and token count, added to sums (those of
            the step's earlier micro-batches; None for its first). update (the step's last): apply
            the summed gradient divided by the step's token count, once."""
            (lsum, ntok), grads = loss_and_grad(model, *arrays)
            if sums is not None:
                lsum, ntok, grads = lsum + sums[0], ntok + sums[1], tree_map(mx.add, grads, sums[2])
            if not update:
                return lsum, ntok, grads
            if distributed:
                grads = tree_map(lambda g: mx.distributed.all_sum(g), grads)
                lsum, ntok = mx.distributed.all_sum(lsum), mx.distributed.all_sum(ntok)
            denom = mx.maximum(ntok, 1.0)
            optimizer.update(model, tree_map(lambda g: g / denom, grads))
            return lsum, ntok, None

        def run_eval() -> float:
            loss, _ = evaluate(model, self.valid, self.plan_settings, s.val_batches)
            model.train()
            return loss

        if self.valid is not None and state["val_before"] is None:
            state["val_before"] = run_eval()
            self._log(entry := {"step": 0, "val_loss": state["val_before"]})
            log.append(entry)
            state["log_lines"] = len(log)

        old_handlers = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
        # on Metal, the wired limit mlx-lm's trainer sets (the device's recommended working set, so
        # the model's memory is not paged out between steps); None, and nothing done, elsewhere
        old_wired = maybe_set_recommended_wired_limit()
        mx.reset_peak_memory()
        model.train()
        window_loss, window_tokens, window_time, window_in = 0.0, 0, 0.0, 0
        try:
            step_no = state["step"]
            epoch, index = self._position(step_no)
            plan = plan_epoch(self.train_data, self.plan_settings, epoch)
            while step_no < self.steps and not state["stopped_early"]:
                if index >= len(plan):
                    epoch, index = epoch + 1, 0
                    plan = plan_epoch(self.train_data, self.plan_settings, epoch)
                    continue
                micro = [make_batch(self.train_data, mine, self.width, per_rank)
                         for mine, per_rank in (shard(rows, self.rank, self.size) for rows in micro_batches(plan[index], s))]
                index += 1
                tic = time.perf_counter()
                # dropout's randomness depends on (seed, step) only, so a resumed run draws the same
                mx.random.seed(s.seed * 1_000_003 + step_no)
                sums = None
                for k, b in enumerate(micro):  # evaluated one at a time: one micro-batch's activations at a time
                    sums = step(sums, k == len(micro) - 1, *batch_arrays(b))
                    mx.eval(compiled_state, sums)
                lsum, ntok, _ = sums
                elapsed = time.perf_counter() - tic
                step_no += 1
                in_tokens = sum(b.tokens for b in micro)
                if self.size > 1:
                    in_tokens = int(mx.distributed.all_sum(mx.array(in_tokens), stream=mx.cpu).item())
                cells = sum(b.inputs.size for b in micro) * self.size
                state["step"] = step_no
                state["train_tokens"] += in_tokens
                state["loss_tokens"] += int(ntok.item())
                state["train_seconds"] += elapsed
                state["positions"] += cells
                state["pad_positions"] += cells - in_tokens
                window_loss += lsum.item()
                window_tokens += int(ntok.item())
                window_time += elapsed
                window_in += in_tokens
                if step_no % s.steps_per_report == 0 or step_no == self.steps:
                    entry = {"step": step_no, "epoch": round(epoch + index / len(plan), 4),
                             "train_loss": window_loss / max(window_tokens, 1),
                             "learning_rate": float(optimizer.learning_rate.item()),
                             "tokens_per_second": window_in / window_time if window_time else 0.0,
                             "trained_tokens": state["train_tokens"],
                             "peak_memory_gb": mx.get_peak_memory() / 1e9}
                    self._log(entry)
                    log.append(entry)
                    self.say(f"step {step_no}/{self.steps}: train loss {entry['train_loss']:.4f}, "
                             f"lr {entry['learning_rate']:.2e}, {entry['tokens_per_second']:.0f} tokens/s")
                    window_loss, window_tokens, window_time, window_in = 0.0, 0, 0.0, 0
                if self.valid is not None and (step_no % s.steps_per_eval == 0 or step_no == self.steps):
                    val = run_eval()
                    entry = {"step": step_no, "val_loss": val}
                    self._log(entry)
                    log.append(entry)
                    self.say(f"step {step_no}: validation loss {val:.4f}")
                    if state["best_val"] is None or val < state["best_val"]:
                        state["best_val"], state["best_step"], state["bad_evals"] = val, step_no, 0
                        best = {k: mx.array(v) for k, v in adapter_weights(model).items()}
                        mx.eval(best)
                    else:
                        state["bad_evals"] += 1
                        if s.patience and state["bad_evals"] >= s.patience:
                            state["stopped_early"] = True
                            self.say(f"early stop at step {step_no}: no improvement in {s.patience} evaluations")
                state["log_lines"] = len(log)
                if step_no % s.steps_per_save == 0 or self._stop:
                    self._save_checkpoint(optimizer, state, best)
                if self._stop:
                    raise Interrupted(step_no)
        finally:
            for sig, handler in old_handlers.items():
                signal.signal(sig, handler)
            if old_wired is not None:
                mx.set_wired_limit(old_wired)
        if best is not None:  # the result is the best checkpoint
            model.load_weights(list(best.items()), strict=False)
        return Result(
            steps=state["step"], epochs=round(self._epochs_done(state["step"]), 4), val_before=state["val_before"],
            val_after=state["best_val"], best_step=state["best_step"], best_val=state["best_val"],
            stopped_early=state["stopped_early"], train_tokens=state["train_tokens"], loss_tokens=state["loss_tokens"],
            train_seconds=state["train_seconds"], peak_memory=int(mx.get_peak_memory()),
            padding_fraction=state["pad_positions"] / max(state["positions"], 1), world_size=self.size, log=log)

    def _position(self, step_no: int) -> tuple[int, int]:
        """(epoch, batch index within it) of the batch after step_no steps."""
        epoch = 0
        while True:
            n = self.per_epoch[epoch] if epoch < len(self.per_epoch) else len(plan_epoch(self.train_data, self.plan_settings, epoch))
            if step_no < n:
                return epoch, step_no
            step_no -= n
            epoch += 1

    def _epochs_done(self, steps: int) -> float:
        epoch, index = self._position(steps)
        n = self.per_epoch[epoch] if epoch < len(self.per_epoch) else 1
        return epoch + index / n


def environment() -> dict:
    """Versions and device recorded with every run."""
    import mlx.core as mx
    from importlib.metadata import version

    return {"mlx": version("mlx"), "mlx_lm": version("mlx-lm"), "device": str(mx.default_device())}
