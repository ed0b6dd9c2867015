"""The settings of a LoRA training run (secai.training.engine), checked; TrainError, the one-line
error of training."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from secai.errors import UserError


class TrainError(UserError):
    """A problem with the model, data or settings, reported in one line."""


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
    batch_size: int  # rows per micro-batch (a packed row holds several examples)
    grad_accum: int  # micro-batches per optimizer step, accumulated exactly (a step trains batch_size x this rows)
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
        for name in ("rank", "batch_size", "grad_accum", "max_seq_length", "steps_per_report", "steps_per_eval", "steps_per_save"):
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

# what a run recorded before a setting existed did (a model trained before gradient accumulation ran
# one micro-batch per step): read back with these, older metadata.json settings mean what they meant
RECORDED_BEFORE = {"grad_accum": 1}


def recorded(values: dict) -> Settings:
    """The Settings a metadata.json records (its `settings`; alpha and unknown keys ignored)."""
    known = {f.name for f in fields(Settings)}
    return Settings(**{**RECORDED_BEFORE, **{k: v for k, v in values.items() if k in known}})
