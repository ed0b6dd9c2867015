"""Training that fits a laptop (issue 16): exact gradient accumulation, the Metal wired limit set as
mlx-lm sets it, and the learning-rate schedule built by mlx-lm's own build_schedule."""

from __future__ import annotations

import numpy as np
import pytest
from test_lora import conversation

pytestmark = pytest.mark.usefixtures("no_network")

from secai.training import adapters, batches, engine, run as lora  # noqa: E402
from secai.training.settings import TrainError  # noqa: E402

# one long example and 31 short ones of different lengths: a step's micro-batches hold different
# numbers of tokens
CONVERSATIONS = [conversation(i, "analysis")["messages"] for i in range(40) if i == 0 or i % 5][:32]


def train_steps(tiny_model, workdir, **kw):
    """(adapter weights, Result) after a short run of the engine on CONVERSATIONS."""
    s = lora.settings({"iters": 2, "optimizer": "sgd", "learning_rate": 0.5, "lr_schedule": "constant", "warmup": 0,
                       "dropout": 0.0, "steps_per_report": 1, "steps_per_eval": 10**6, "steps_per_save": 10**6, **kw})
    model, tok, _ = lora.load_base(tiny_model)
    adapters.add_lora(model, s)
    data = batches.encode_all(tok, CONVERSATIONS, s)
    workdir.mkdir()
    run = engine.Run(model, data, None, s, workdir, log=lambda line: None)
    result = run.run(resume=False)
    return {k: np.array(v) for k, v in adapters.adapter_weights(model).items()}, result, run, data


@pytest.mark.parametrize("pack", [False, True], ids=["unpacked", "packed"])
def test_accumulated_micro_batches_give_the_update_of_one_big_batch(tiny_model, tmp_path, pack, monkeypatch):
    if pack:  # packed rows whether or not packing pays here (that choice is tested in test_lora)
        monkeypatch.setattr(engine, "packing_pays", lambda *args: True)
    big, r_big, run_big, data = train_steps(tiny_model, tmp_path / "big", batch_size=8, grad_accum=1, pack=pack)
    acc, r_acc, run_acc, _ = train_steps(tiny_model, tmp_path / "acc", batch_size=2, grad_accum=4, pack=pack)
    assert run_big.packed == run_acc.packed == pack
    # the micro-batches of the first step hold unequal token counts, so averaging their mean
    # gradients would not be this update
    s = run_acc.plan_settings
    first = batches.plan_epoch(data, s, 0)[0]
    counts = [int(batches.make_batch(data, rows, run_acc.width, len(rows)).weights.sum())
              for rows in batches.micro_batches(first, s)]
    assert len(counts) == 4 and len(set(counts)) > 1, counts
    assert r_big.steps == r_acc.steps == 2 and r_big.loss_tokens == r_acc.loss_tokens
    assert big.keys() == acc.keys()
    for k in big:  # float32 sums in another order: ~4e-6 apart where the two steps moved weights by up to ~3
        np.testing.assert_allclose(acc[k], big[k], rtol=1e-4, atol=2e-5, err_msg=k)
    losses = [[e["train_loss"] for e in r.log if "train_loss" in e] for r in (r_big, r_acc)]
    assert losses[0] == pytest.approx(losses[1], rel=1e-5)
    # and the parameters do depend on what a step trains on: two rows a step give another model
    small, _, _, _ = train_steps(tiny_model, tmp_path / "small", batch_size=2, grad_accum=1, pack=pack)
    assert any(not np.allclose(small[k], big[k], rtol=1e-3, atol=1e-5) for k in big)


def test_grad_accum_must_be_at_least_one():
    with pytest.raises(TrainError, match="grad_accum must be at least 1"):
        lora.settings({"grad_accum": 0})


# ---------------------------------------------------------------- the wired limit

def test_the_wired_limit_is_set_as_mlx_lm_sets_it_and_restored(tiny_model, tmp_path, monkeypatch):
    import mlx.core as mx
    import mlx_lm.utils

    # on this machine (no Metal) mlx-lm's own helper finds no recommended working set: nothing is set
    if "max_recommended_working_set_size" not in mx.device_info():
        assert mlx_lm.utils.maybe_set_recommended_wired_limit() is None
    calls, restored = [], []
    monkeypatch.setattr(mlx_lm.utils, "maybe_set_recommended_wired_limit", lambda: calls.append(1) or 12345)
    monkeypatch.setattr(mx, "set_wired_limit", lambda limit: restored.append(limit) or 0)
    train_steps(tiny_model, tmp_path / "run", iters=1, batch_size=2)
    assert calls == [1] and restored == [12345]  # set once for the run, the previous limit put back after it
    monkeypatch.setattr(mlx_lm.utils, "maybe_set_recommended_wired_limit", lambda: None)
    restored.clear()
    train_steps(tiny_model, tmp_path / "cpu", iters=1, batch_size=2)
    assert restored == []  # no recommended size (not Metal): no limit touched


# ---------------------------------------------------------------- the schedule

def expected_rate(s, total: int, step: int) -> float:
    """The rate of optimizer step `step` (0-based) as secai-lora documents it."""
    lr, w = s.learning_rate, s.warmup if s.warmup > 1 else 0  # a warmup of one step is none
    if step < w:
        return lr * (step + 1) / w
    decay, end = max(total - w, 1), lr * s.min_lr_ratio
    k = min(step - w, decay)
    if s.lr_schedule == "cosine":
        return end + 0.5 * (1 + np.cos(np.pi * k / decay)) * (lr - end)
    if s.lr_schedule == "linear":
        return lr + (end - lr) * k / decay
    return lr


@pytest.mark.parametrize("schedule,warmup", [("cosine", 4), ("cosine", 0), ("linear", 3), ("linear", 1),
                                             ("constant", 5), ("constant", 0)])
def test_the_schedule_is_mlx_lms_build_schedule(monkeypatch, schedule, warmup):
    import mlx_lm.tuner.utils

    built = []
    real = mlx_lm.tuner.utils.build_schedule
    monkeypatch.setattr(mlx_lm.tuner.utils, "build_schedule", lambda config: built.append(config) or real(config))
    s = lora.settings({"learning_rate": 1e-3, "lr_schedule": schedule, "warmup": warmup, "min_lr_ratio": 0.1})
    total = 20
    opt = adapters.make_optimizer(s, total)
    config = adapters.schedule_config(s, total)
    assert built == ([config] if config else [])
    rates = []
    for _ in range(total + 3):  # an update sets the rate of the step it makes, as in training
        opt.apply_gradients({}, {})
        rates.append(opt.learning_rate.item())
    # np.float32 arithmetic inside MLX: a relative tolerance of a few ulps
    assert rates == pytest.approx([expected_rate(s, total, k) for k in range(total + 3)], rel=1e-5)


# ---------------------------------------------------------------- the mlx-lm secai is tested with

def test_mlx_lm_is_in_the_tested_range_and_has_the_internals_secai_imports():
    import tomllib
    from importlib.metadata import version

    from conftest import ROOT
    from packaging.requirements import Requirement

    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    spec = next(Requirement(d) for d in deps if Requirement(d).name == "mlx-lm").specifier
    assert any(s.operator == "<" for s in spec), f"mlx-lm has no upper bound: {spec}"
    assert spec.contains(version("mlx-lm")), f"installed mlx-lm {version('mlx-lm')} is outside {spec}"
    from mlx_lm.tuner.trainer import grad_checkpoint, iterate_batches  # noqa: F401
    from mlx_lm.tuner.utils import build_schedule, linear_to_lora_layers  # noqa: F401
    from mlx_lm.utils import maybe_set_recommended_wired_limit  # noqa: F401
