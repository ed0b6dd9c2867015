"""The LoRA training engine behind `secai-lora`: mlx-lm's pieces, and what mlx-lm lacks.

Built from mlx-lm's Python API (`linear_to_lora_layers`, its LoRA layers, its optimizers and
schedules, gradient checkpointing) with its own loop, because that loop is where mlx-lm stops short:

- Prompt masking: the loss covers exactly the tokens of the final assistant turn (its content and
  the EOS that ends it) and nothing after it. (mlx-lm's default loss also counts one padding
  target after each sequence.)
- Sample packing: short examples share a row; an attention mask built from segment ids keeps each
  example from seeing the others, so the loss is the unpacked loss (RoPE scores depend only on
  relative positions). Packed rows have one fixed width, so the compiled step is traced once.
- Full resume: a checkpoint holds the adapter, the optimizer state (moments and step, hence the
  position in the learning-rate schedule), the random state, the step, the best weights so far and
  the log position; the data order is a pure function of (seed, epoch), so a resumed run replays
  the same batches and ends where an uninterrupted one ends.
- Best checkpoint by validation loss, optional early stopping.
- Data parallel under `mlx.launch`: every rank takes its share of each global batch; token-weighted
  loss sums and gradients are all-summed, then divided by the global token count, so N processes
  compute the same update as one process with the same global batch.
"""

from __future__ import annotations

import math
import signal
import time
from dataclasses import asdict, dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Callable

import numpy as np
import orjson

PAD_TO = 32  # unpacked batches are padded to a multiple of this (fewer distinct shapes to compile)


class TrainError(Exception):
    """A problem with the model, data or settings, reported in one line."""


# ---------------------------------------------------------------- settings

@dataclass
class Settings:
    """Every hyperparameter of a run. The defaults live in config/secai.yaml (`lora:`): see
    secai.training.run.settings()."""
    rank: int
    scale: float  # LoRA output multiplier (mlx-lm's `scale`; alpha = scale * rank)
    dropout: float
    num_layers: int  # transformer blocks adapted, counted from the top; -1: all
    target_modules: list[str] | None  # module paths inside a block (self_attn.q_proj, ...); None: every linear
    optimizer: str  # adam | adamw | sgd | adafactor
    learning_rate: float
    weight_decay: float
    lr_schedule: str  # cosine | linear | constant, after warmup
    warmup: int  # steps of linear warmup from 0
    min_lr_ratio: float  # cosine/linear decay ends at learning_rate * this
    batch_size: int  # rows per step (a packed row holds several examples)
    epochs: float  # used when iters is 0
    iters: int  # optimizer steps; 0: derived from epochs
    max_seq_length: int  # longer examples are truncated
    grad_checkpoint: bool
    mask_prompt: bool  # loss on the final assistant turn only
    pack: bool
    seed: int
    steps_per_report: int
    steps_per_eval: int
    steps_per_save: int
    val_batches: int  # -1: the whole validation set
    patience: int  # stop after this many evaluations without improvement; 0: never

    @property
    def alpha(self) -> float:
        return self.scale * self.rank

    def check(self) -> None:
        for name in ("rank", "batch_size", "max_seq_length", "steps_per_report", "steps_per_eval", "steps_per_save"):
            if getattr(self, name) < 1:
                raise TrainError(f"{name} must be at least 1 (got {getattr(self, name)})")
        if not 0 <= self.dropout < 1:
            raise TrainError(f"dropout must be in [0, 1) (got {self.dropout})")
        if self.learning_rate <= 0 or self.scale <= 0:
            raise TrainError("learning_rate and scale must be positive")
        if self.iters < 0 or self.epochs < 0 or (self.iters == 0 and self.epochs <= 0):
            raise TrainError("give a positive number of iters or epochs")
        if self.optimizer not in OPTIMIZERS:
            raise TrainError(f"unknown optimizer {self.optimizer!r} (one of {', '.join(OPTIMIZERS)})")
        if self.lr_schedule not in ("cosine", "linear", "constant"):
            raise TrainError(f"unknown lr_schedule {self.lr_schedule!r} (cosine, linear or constant)")
        if self.warmup < 0 or self.patience < 0 or not 0 <= self.min_lr_ratio <= 1:
            raise TrainError("warmup and patience must be >= 0, min_lr_ratio in [0, 1]")

    def to_dict(self) -> dict:
        return {**asdict(self), "alpha": self.alpha}


OPTIMIZERS = ("adam", "adamw", "sgd", "adafactor")


# ---------------------------------------------------------------- chat template and tokens

def check_chat_template(tokenizer) -> None:
    """The chat template must end an assistant turn with a token that stops generation: a model
    trained on it then learns to stop. TrainError when it does not."""
    if not getattr(tokenizer, "chat_template", None):
        raise TrainError("the tokenizer has no chat template")
    messages = [{"role": "user", "content": "ping"}, {"role": "assistant", "content": "pong"}]
    tokens = tokenizer.apply_chat_template(messages, return_dict=False)
    stops = set(getattr(tokenizer, "eos_token_ids", None) or [tokenizer.eos_token_id])
    if not tokens or tokens[-1] not in stops:
        tail = tokenizer.decode(tokens[-3:]) if tokens else ""
        raise TrainError(f"the chat template ends an assistant turn with {tail!r}, not with an end-of-sequence "
                         f"token ({', '.join(repr(tokenizer.decode([t])) for t in sorted(stops))}): "
                         "a model trained on it would never stop generating")


def encode(tokenizer, messages: list[dict], mask_prompt: bool) -> tuple[list[int], int]:
    """(tokens of the whole conversation, index of the first token the loss covers)."""
    tokens = tokenizer.apply_chat_template(messages, return_dict=False)
    if not mask_prompt:
        return tokens, 0
    prompt = tokenizer.apply_chat_template(messages[:-1], add_generation_prompt=True, return_dict=False)
    offset = 0
    for a, b in zip(prompt, tokens):  # the common prefix (a merge across the boundary can shorten it)
        if a != b:
            break
        offset += 1
    return tokens, offset


@dataclass
class Encoded:
    """A split's examples as token lists with loss offsets; examples too long are truncated."""
    tokens: list[list[int]]
    offsets: list[int]
    truncated: int = 0
    dropped: int = 0      # no trainable token left after truncation

    def __len__(self) -> int:
        return len(self.tokens)

    @property
    def n_tokens(self) -> int:
        return sum(len(t) for t in self.tokens)


def encode_all(tokenizer, conversations: list[list[dict]], settings: Settings) -> Encoded:
    out = Encoded([], [])
    limit = settings.max_seq_length + 1  # a sequence of n tokens gives n - 1 (input, target) pairs
    for messages in conversations:
        tokens, offset = encode(tokenizer, messages, settings.mask_prompt)
        if len(tokens) > limit:
            tokens = tokens[:limit]
            out.truncated += 1
        if len(tokens) < 2 or offset >= len(tokens):
            out.dropped += 1
            continue
        out.tokens.append(tokens)
        out.offsets.append(offset)
    return out


# ---------------------------------------------------------------- batches

def row_width(data: Encoded, settings: Settings) -> int:
    """The fixed width of packed rows: the longest example (input positions), rounded up."""
    longest = max(len(t) - 1 for t in data.tokens)
    return min(settings.max_seq_length, PAD_TO * math.ceil(longest / PAD_TO))


def plan_epoch(data: Encoded, settings: Settings, epoch: int) -> list[list[list[int]]]:
    """The batches of one epoch: lists of rows, each row a list of example indices. A pure
    function of the data, the settings and (seed, epoch)."""
    rng = np.random.default_rng([settings.seed, max(epoch, 0), 1 if epoch >= 0 else 0])
    costs = [len(t) - 1 for t in data.tokens]
    n = len(costs)
    if settings.pack:
        width = row_width(data, settings)
        order = sorted(rng.permutation(n).tolist(), key=lambda i: -costs[i])  # first fit decreasing
        rows, room = [], []
        smallest = min(costs)
        open_rows = []  # indices of rows that can still take the smallest example
        for i in order:
            for k in open_rows:
                if room[k] >= costs[i]:
                    rows[k].append(i)
                    room[k] -= costs[i]
                    break
            else:
                rows.append([i])
                room.append(width - costs[i])
                open_rows.append(len(rows) - 1)
            open_rows = [k for k in open_rows if room[k] >= smallest]
        rows = [rows[k] for k in rng.permutation(len(rows)).tolist()]
        return [rows[s:s + settings.batch_size] for s in range(0, len(rows), settings.batch_size)]
    # unpacked: one example per row; batches of similar lengths (little padding), in random order
    order = sorted(rng.permutation(n).tolist(), key=lambda i: costs[i])
    batches = [[[i] for i in order[s:s + settings.batch_size]] for s in range(0, n, settings.batch_size)]
    return [batches[k] for k in rng.permutation(len(batches)).tolist()]


@dataclass
class Batch:
    inputs: np.ndarray    # [B, W] int32: the rows
    segments: np.ndarray  # [B, W] int32: example number within the row (1..), 0 for padding
    index: np.ndarray     # [B, K] int32: the input positions whose next token the loss covers
    targets: np.ndarray   # [B, K] int32: those next tokens
    weights: np.ndarray   # [B, K] float32: 1 for a real loss position, 0 for padding
    tokens: int           # real (non-padding) input positions


def make_batch(data: Encoded, rows: list[list[int]], width: int | None, n_rows: int) -> Batch:
    """Arrays for rows (padded with empty rows up to n_rows). width None: the longest row,
    rounded up to PAD_TO. Only the K loss positions (K rounded up to PAD_TO) go through the output
    head: with prompt masking that skips most of the vocabulary projection."""
    costs = [sum(len(data.tokens[i]) - 1 for i in row) for row in rows]
    if width is None:
        width = PAD_TO * math.ceil(max(costs, default=1) / PAD_TO)
    inputs, segments = np.zeros((n_rows, width), np.int32), np.zeros((n_rows, width), np.int32)
    where, wanted = [[] for _ in range(n_rows)], [[] for _ in range(n_rows)]
    for b, row in enumerate(rows):
        pos = 0
        for s, i in enumerate(row, 1):
            toks, off = data.tokens[i], data.offsets[i]
            n = len(toks) - 1
            inputs[b, pos:pos + n] = toks[:-1]
            segments[b, pos:pos + n] = s
            first = max(off - 1, 0)  # input position whose next token is toks[off]
            where[b].extend(range(pos + first, pos + n))
            wanted[b].extend(toks[first + 1:])
            pos += n
    k = PAD_TO * math.ceil(max((len(w) for w in where), default=1) / PAD_TO)
    index, targets, weights = (np.zeros((n_rows, k), np.int32), np.zeros((n_rows, k), np.int32),
                               np.zeros((n_rows, k), np.float32))
    for b in range(n_rows):
        m = len(where[b])
        index[b, :m], targets[b, :m], weights[b, :m] = where[b], wanted[b], 1.0
    return Batch(inputs, segments, index, targets, weights, int(sum(costs)))


def positions(data: Encoded, plan: list[list[list[int]]], width: int | None) -> int:
    """Padded positions a plan computes over (rows x width)."""
    total = 0
    for rows in plan:
        w = width or PAD_TO * math.ceil(max(sum(len(data.tokens[i]) - 1 for i in row) for row in rows) / PAD_TO)
        total += len(rows) * w
    return total


def packing_pays(data: Encoded, settings: Settings) -> bool:
    """Packing is used when it saves at least a tenth of the positions computed (padding included)
    on the first epoch; with examples of similar lengths it would only add padding and wider rows."""
    packed = positions(data, plan_epoch(data, settings, 0), row_width(data, settings))
    unpacked = positions(data, plan_epoch(data, replace(settings, pack=False), 0), None)
    return packed <= 0.9 * unpacked


def batch_arrays(b: Batch) -> tuple:
    import mlx.core as mx

    return tuple(mx.array(a) for a in (b.inputs, b.segments, b.index, b.targets, b.weights))


def shard(rows: list[list[int]], rank: int, size: int) -> tuple[list[list[int]], int]:
    """This rank's rows of a global batch, and the per-rank row count (the global batch padded
    with empty rows to a multiple of size)."""
    per_rank = math.ceil(len(rows) / size)
    return rows[rank::size], per_rank


# ---------------------------------------------------------------- model pieces

def supports_packing(model) -> bool:
    """True for mlx-lm models of the common decoder layout (embed_tokens, layers called as
    layer(h, mask, cache), norm, lm_head or tied embeddings), which secai drives directly: packed
    attention masks, and the output head only where the loss counts."""
    inner = getattr(model, "model", None)
    return all(hasattr(inner, a) for a in ("embed_tokens", "layers", "norm")) and (
        hasattr(model, "lm_head") or getattr(getattr(model, "args", None), "tie_word_embeddings", False))


def loss_sum(model, inputs, segments, index, targets, weights, packed: bool, direct: bool):
    """(sum of the token losses that count, their number). direct: run the decoder by hand (the
    supports_packing layout) with attention kept within each packed example when packed, and
    the output head on the loss positions only; else the model's own forward pass."""
    import mlx.core as mx
    import mlx.nn as nn

    if direct:
        inner = model.model
        h = inner.embed_tokens(inputs)
        if packed:  # additive, in the activations' dtype (a boolean mask costs one more score-sized buffer)
            width = inputs.shape[1]
            causal = mx.tril(mx.ones((width, width), dtype=mx.bool_))
            keep = ((segments[:, :, None] == segments[:, None, :]) & causal)[:, None, :, :]
            mask = mx.where(keep, mx.array(0, h.dtype), mx.array(-mx.inf, h.dtype))
        else:
            mask = "causal"
        for layer in inner.layers:
            h = layer(h, mask, cache=None)
        h = mx.take_along_axis(inner.norm(h), index[:, :, None], axis=1)
        if getattr(model.args, "tie_word_embeddings", False) or not hasattr(model, "lm_head"):
            logits = inner.embed_tokens.as_linear(h)
        else:
            logits = model.lm_head(h)
    else:
        logits = mx.take_along_axis(model(inputs), index[:, :, None], axis=1)
    ce = nn.losses.cross_entropy(logits, targets) * weights
    return ce.astype(mx.float32).sum(), weights.sum()


def lora_modules(model, settings: Settings) -> tuple[int, list[str]]:
    """(the number of blocks adapted, the module paths inside a block that get LoRA)."""
    import mlx.nn as nn

    n_blocks = len(model.layers)
    num_layers = n_blocks if settings.num_layers == -1 else settings.num_layers
    if not 1 <= num_layers <= n_blocks:
        raise TrainError(f"num_layers {settings.num_layers}: the model has {n_blocks} blocks (use 1..{n_blocks} or -1 for all)")
    linear = sorted(name for name, m in model.layers[0].named_modules()
                    if isinstance(m, (nn.Linear, nn.QuantizedLinear)))
    if settings.target_modules is None:
        return num_layers, linear
    unknown = sorted(set(settings.target_modules) - set(linear))
    if unknown:
        raise TrainError(f"target module(s) {', '.join(unknown)} not in the model's blocks (which have {', '.join(linear)})")
    return num_layers, sorted(settings.target_modules)


def add_lora(model, settings: Settings) -> dict:
    """Freeze the model and add LoRA layers; returns mlx-lm's adapter_config.json content."""
    import mlx.core as mx
    from mlx_lm.tuner.utils import linear_to_lora_layers

    num_layers, keys = lora_modules(model, settings)
    model.freeze()
    mx.random.seed(settings.seed)  # same LoRA initialisation on every rank and every run
    params = {"rank": settings.rank, "scale": settings.scale, "dropout": settings.dropout, "keys": keys}
    linear_to_lora_layers(model, num_layers, params)
    return {"fine_tune_type": "lora", "num_layers": num_layers, "lora_parameters": params}


def adapter_weights(model) -> dict:
    from mlx.utils import tree_flatten

    return dict(tree_flatten(model.trainable_parameters()))


def load_adapter_weights(model, path: Path, what: str) -> None:
    """Load adapter weights into a model that already has its LoRA layers, with shape checks:
    every tensor must be an adapter parameter of the model with the same shape, and every adapter
    parameter must be given. TrainError naming the first mismatches otherwise."""
    import mlx.core as mx

    weights = mx.load(str(path))
    have = adapter_weights(model)
    problems = [f"{k}: not an adapter parameter here" for k in sorted(set(weights) - set(have))]
    problems += [f"{k}: missing" for k in sorted(set(have) - set(weights))]
    problems += [f"{k}: shape {tuple(weights[k].shape)}, the model wants {tuple(have[k].shape)}"
                 for k in sorted(set(weights) & set(have)) if weights[k].shape != have[k].shape]
    if problems:
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        raise TrainError(f"{what} does not fit this model and LoRA settings: {'; '.join(problems[:3])}{more}")
    model.load_weights(list(weights.items()), strict=False)


def make_optimizer(settings: Settings, total_steps: int):
    import mlx.optimizers as optim

    lr = settings.learning_rate
    decay_steps = max(total_steps - settings.warmup, 1)
    end = lr * settings.min_lr_ratio
    if settings.lr_schedule == "cosine":
        schedule = optim.cosine_decay(lr, decay_steps, end)
    elif settings.lr_schedule == "linear":
        schedule = optim.linear_schedule(lr, end, decay_steps)
    else:
        schedule = lambda step: lr  # noqa: E731
    if settings.warmup:  # steps 1..warmup climb to lr (the first step already learns: lr / warmup)
        warm = optim.linear_schedule(lr / settings.warmup, lr, max(settings.warmup - 1, 1))
        schedule = optim.join_schedules([warm, schedule], [settings.warmup])
    elif settings.lr_schedule == "constant":
        schedule = lr
    kwargs = {"learning_rate": schedule}
    if settings.optimizer == "adamw":
        return optim.AdamW(weight_decay=settings.weight_decay, **kwargs)
    if settings.optimizer == "sgd":
        return optim.SGD(weight_decay=settings.weight_decay, **kwargs)
    if settings.optimizer == "adafactor":
        return optim.Adafactor(**kwargs)
    return optim.Adam(**kwargs)


# ---------------------------------------------------------------- evaluation

def evaluate(model, data: Encoded, settings: Settings, max_batches: int = -1) -> tuple[float, int]:
    """(mean loss per counted token, counted tokens) over data: fixed batches, the training
    masking, shared out over the ranks of a distributed run."""
    import mlx.core as mx

    world = mx.distributed.init()
    direct = supports_packing(model)
    packed = settings.pack and direct and packing_pays(data, settings)
    width = row_width(data, settings) if packed else None
    plan = plan_epoch(data, replace(settings, pack=packed), -1)
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
        elif self.packed and not packing_pays(train, settings):
            self.packed = False
            log("packing is off: the examples are too alike in length to share rows (it would add padding)")
        self.plan_settings = replace(settings, pack=self.packed)
        self.width = row_width(train, settings) if self.packed else None
        self.steps, self.per_epoch = total_steps(train, settings, self.packed)
        self.log_path = workdir / "training_log.jsonl"
        self._stop = False

    # -- checkpoints
    def _save_checkpoint(self, optimizer, state: dict, best: dict | None) -> None:
        import mlx.core as mx
        from mlx.utils import tree_flatten

        from secai.files import fresh_dir, swap_in

        if self.rank != 0:
            return
        out = self.workdir / self.CHECKPOINT
        tmp = fresh_dir(out, "tmp")
        mx.save_safetensors(str(tmp / "adapters.safetensors"), adapter_weights(self.model))
        mx.save_safetensors(str(tmp / "optimizer.safetensors"), dict(tree_flatten(optimizer.state)))
        if best is not None:
            mx.save_safetensors(str(tmp / "best.safetensors"), best)
        (tmp / "state.json").write_bytes(orjson.dumps(state, option=orjson.OPT_INDENT_2))
        swap_in(tmp, out)

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
        if self.rank == 0:
            self.log_path.write_bytes(b"".join(line + b"\n" for line in kept))
        return [orjson.loads(line) for line in kept]

    def _on_signal(self, signum, frame):
        self._stop = True

    # -- the loop
    def run(self, resume: bool) -> Result:
        import mlx.core as mx
        import mlx.nn as nn
        from mlx.utils import tree_map

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
        def step(*arrays):
            (lsum, ntok), grads = loss_and_grad(model, *arrays)
            if distributed:
                grads = tree_map(lambda g: mx.distributed.all_sum(g), grads)
                lsum, ntok = mx.distributed.all_sum(lsum), mx.distributed.all_sum(ntok)
            denom = mx.maximum(ntok, 1.0)
            optimizer.update(model, tree_map(lambda g: g / denom, grads))
            return lsum, ntok

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
                rows = plan[index]
                index += 1
                mine, per_rank = shard(rows, self.rank, self.size)
                b = make_batch(self.train_data, mine, self.width, per_rank)
                tic = time.perf_counter()
                # dropout's randomness depends on (seed, step) only, so a resumed run draws the same
                mx.random.seed(s.seed * 1_000_003 + step_no)
                lsum, ntok = step(*batch_arrays(b))
                mx.eval(compiled_state, lsum, ntok)
                elapsed = time.perf_counter() - tic
                step_no += 1
                in_tokens = b.tokens if self.size == 1 else int(mx.distributed.all_sum(mx.array(b.tokens), stream=mx.cpu).item())
                state["step"] = step_no
                state["train_tokens"] += in_tokens
                state["loss_tokens"] += int(ntok.item())
                state["train_seconds"] += elapsed
                state["positions"] += b.inputs.size * self.size
                state["pad_positions"] += b.inputs.size * self.size - in_tokens
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
