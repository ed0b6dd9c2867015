"""LoRA fine-tuning through mlx-lm: the engine, a training run, evaluation, the model card, the model store, the tiny test model."""

import os
import sys

from secai import cpublas
from secai.errors import UsageError

try:  # before any of this package imports mlx (every import of it here is inside a function)
    cpublas.prefer()
except UsageError as exc:  # at import time, before a command's own error handling: one line, exit 2
    print(f"{os.path.basename(sys.argv[0]) or 'secai'}: error: {exc}", file=sys.stderr)
    raise SystemExit(2) from None
