"""Configuration: config/secai.yaml, overridden by SECAI_* environment variables, then by flags."""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
CONFIG_FILE = ROOT / "config" / "secai.yaml"


@cache
def load() -> dict:
    """All settings as nested dicts. `SECAI_SECTION_KEY=value` (value read as YAML) overrides
    `section.key`; `SECAI_MODELS_DIR` overrides `paths.models_dir`."""
    with open(CONFIG_FILE, encoding="utf-8") as fh:
        cfg = yaml.safe_load(fh) or {}
    for section, values in cfg.items():
        for key in values:
            env = os.environ.get(f"SECAI_{section}_{key}".upper())
            if env is not None:
                values[key] = yaml.safe_load(env)
    if os.environ.get("SECAI_MODELS_DIR"):
        cfg["paths"]["models_dir"] = os.environ["SECAI_MODELS_DIR"]
    return cfg


def get(section: str, key: str):
    return load()[section][key]
