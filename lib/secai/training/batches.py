"""Examples as tokens, and the batches a training run steps through (secai.training.engine).

- Prompt masking: an example's loss covers exactly the tokens of its final assistant turn (its
  content and the EOS that ends it) and nothing after it.
- Sample packing: short examples share a row (first fit decreasing); segment ids keep each example
  from seeing the others. Packed rows have one fixed width, so the compiled step is traced once;
  packing is used only when it saves modelled time (packing_pays: FLOPs of the positions and
  attention scores computed).
- Gradient accumulation: an optimizer step's batch_size x grad_accum rows are planned together and
  go through the model as grad_accum micro-batches of batch_size rows (micro_batches).
- The data order is a pure function of (seed, epoch), so a resumed run replays the same batches.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from secai.training.settings import Settings, TrainError

# batches are padded to a multiple of this (mlx-lm pads to 32): a new width costs a trace and compile
# of the step (the first step of a shape took no longer than the next on the tiny model), a padded
# position its whole share of the step, and sorted batches leave little padding but the rounding
PAD_TO = 8


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
    """The optimizer steps of one epoch: lists of batch_size x grad_accum rows (micro_batches
    splits them), each row a list of example indices. A pure function of the data, the settings
    and (seed, epoch)."""
    rng = np.random.default_rng([settings.seed, max(epoch, 0), 1 if epoch >= 0 else 0])
    costs = [len(t) - 1 for t in data.tokens]
    n = len(costs)
    per_step = settings.batch_size * settings.grad_accum
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
        return [rows[s:s + per_step] for s in range(0, len(rows), per_step)]
    # unpacked: one example per row; batches of similar lengths (little padding), in random order
    order = sorted(rng.permutation(n).tolist(), key=lambda i: costs[i])
    batches = [[[i] for i in order[s:s + per_step]] for s in range(0, n, per_step)]
    return [batches[k] for k in rng.permutation(len(batches)).tolist()]


def micro_batches(rows: list[list[int]], settings: Settings) -> list[list[list[int]]]:
    """An optimizer step's rows as the micro-batches of batch_size rows that go through the model
    one at a time (the last one shorter at the end of an epoch). Unpacked, a step's rows are sorted
    by length, so each micro-batch is padded to its own longest row."""
    return [rows[s:s + settings.batch_size] for s in range(0, len(rows), settings.batch_size)]


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
    return sum(len(rows) * w for rows, w in _widths(data, plan, width))


def _widths(data: Encoded, plan: list[list[list[int]]], width: int | None):
    for rows in plan:
        yield rows, width or PAD_TO * math.ceil(max(sum(len(data.tokens[i]) - 1 for i in row) for row in rows) / PAD_TO)


@dataclass(frozen=True)
class Shape:
    """What a step's cost depends on in a decoder: hidden size, MLP size, blocks."""
    hidden: int
    intermediate: int
    layers: int

    @classmethod
    def of(cls, config) -> "Shape":
        """From a model's args (mlx-lm's ModelArgs) or its config.json dict."""
        get = config.get if isinstance(config, dict) else lambda k: getattr(config, k, None)
        hidden = get("hidden_size")
        return cls(hidden, get("intermediate_size") or 4 * hidden, get("num_hidden_layers"))


def cost(data: Encoded, plan: list[list[list[int]]], width: int | None, shape: Shape) -> float:
    """A plan's training FLOPs (forward and backward, about 3x forward): the block's linear layers
    per position computed, and attention per score (query x key, both padded: the CPU and the
    masked kernels compute the whole square) . The output head is left out: it runs on the loss
    positions only, which packing does not change."""
    h, i = shape.hidden, shape.intermediate
    per_position = 3 * 2 * (4 * h * h + 3 * h * i) * shape.layers
    per_score = 3 * 4 * h * shape.layers  # q.k and p.v over all heads
    return sum(len(rows) * (w * per_position + w * w * per_score) for rows, w in _widths(data, plan, width))


def packing_pays(data: Encoded, settings: Settings, shape: Shape) -> bool:
    """Packing is used when it saves at least a tenth of the modelled training time (cost: linear
    layers per position, attention per score) on the first epoch. With examples of similar lengths
    it only adds padding; with a few long examples setting the row width it can save positions and
    still cost more, every packed row paying the long one's attention (bench_lora measures it)."""
    settings = replace(settings, grad_accum=1)  # costs as the micro-batches compute them
    packed = cost(data, plan_epoch(data, settings, 0), row_width(data, settings), shape)
    unpacked = cost(data, plan_epoch(data, replace(settings, pack=False), 0), None, shape)
    return packed <= 0.9 * unpacked


def batch_arrays(b: Batch) -> tuple:
    import mlx.core as mx

    return tuple(mx.array(a) for a in (b.inputs, b.segments, b.index, b.targets, b.weights))


def shard(rows: list[list[int]], rank: int, size: int) -> tuple[list[list[int]], int]:
    """This rank's rows of a global batch, and the per-rank row count (the global batch padded
    with empty rows to a multiple of size)."""
    per_rank = math.ceil(len(rows) / size)
    return rows[rank::size], per_rank
