"""LoRA on an mlx-lm model (secai.training.engine): which modules get adapters, adding them, their
weights, the loss the engine computes, and the optimizer with its learning-rate schedule."""

from __future__ import annotations

from pathlib import Path

from secai.training.settings import Settings, TrainError


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


def schedule_config(settings: Settings, total_steps: int) -> dict | None:
    """The learning-rate schedule as mlx-lm's `lr_schedule` config (what its build_schedule takes, and
    `mlx_lm lora -c` reads), or None for a constant rate without warmup.

    Steps 1..warmup climb linearly to learning_rate, the first already learning (learning_rate /
    warmup); then the decay runs over the remaining steps, from learning_rate again, to
    learning_rate x min_lr_ratio. In build_schedule's terms: a warmup of warmup - 1 steps from
    warmup_init = learning_rate / warmup (its warmup starts at warmup_init and reaches the peak
    after its last warmup step). A warmup of 1 is none: its one step is already at the peak."""
    lr = settings.learning_rate
    warmup = settings.warmup if settings.warmup > 1 else 0
    if settings.lr_schedule == "constant" and not warmup:
        return None
    decay_steps, end = max(total_steps - warmup, 1), lr * settings.min_lr_ratio
    name, arguments = {"cosine": ("cosine_decay", [lr, decay_steps, end]),
                       "linear": ("linear_schedule", [lr, end, decay_steps]),
                       "constant": ("linear_schedule", [lr, lr, 1])}[settings.lr_schedule]
    config = {"name": name, "arguments": arguments}
    if warmup:
        config.update(warmup=warmup - 1, warmup_init=lr / warmup)
    return config


def make_optimizer(settings: Settings, total_steps: int):
    import mlx.optimizers as optim
    from mlx_lm.tuner.utils import build_schedule

    config = schedule_config(settings, total_steps)
    schedule = build_schedule(config) if config else settings.learning_rate
    kwargs = {"learning_rate": schedule}
    if settings.optimizer == "adamw":
        return optim.AdamW(weight_decay=settings.weight_decay, **kwargs)
    if settings.optimizer == "sgd":
        return optim.SGD(weight_decay=settings.weight_decay, **kwargs)
    if settings.optimizer == "adafactor":
        return optim.Adafactor(**kwargs)
    return optim.Adam(**kwargs)
