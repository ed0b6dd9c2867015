"""Model folders: where they live, what identifies them, and loading them without surprises.

The shared model store is `<models_dir>/base/<name>` and `<models_dir>/fine-tuned/<name>`
(`paths.models_dir` in config/secai.yaml, `SECAI_MODELS_DIR`). A model folder is identified by
its content hash (SHA-256 over the files that define it), whatever made it, so caches and
fine-tune metadata name a base model the same way on every machine.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import os
import re
import sys
from pathlib import Path

from secai import config
from secai.errors import InputError
from secai.files import sha256_file

MANIFEST = "secai-model.json"           # written by secai.training.tinymodel next to the model it builds
REAL_BASE = "OLMo-2-1B-mlx-q4"          # `make base-model`: allenai/OLMo-2-0425-1B, 4-bit
REAL_BASE_HF = "allenai/OLMo-2-0425-1B"
TINY_BASE = Path("build/models/base/tiny-olmo2")  # `make demo-model`, relative to the checkout


def models_dir() -> Path:
    return Path(os.path.expanduser(str(config.get("paths", "models_dir"))))


def fine_tuned_dir() -> Path:
    return models_dir() / "fine-tuned"


def _roots() -> tuple[Path, ...]:
    """The folders a recorded path may be relative to: the models dir, and the checkout (if any)."""
    return (models_dir(), *((config.CHECKOUT,) if config.CHECKOUT else ()))


def portable(path: str | os.PathLike, near: str | os.PathLike | None = None) -> str:
    """A local path as published metadata records it: relative to the models dir ('base/NAME',
    'fine-tuned/NAME'), else to the checkout ('build/datasets/analysis'), else to the folder
    `near` (the model's own) when the two share a folder below the filesystem root and the way
    between them names neither the user nor the home folder ('../../data'), else its name alone
    (the content hashes beside it still identify it). Never an absolute path or a user name."""
    p = Path(os.path.abspath(os.path.expanduser(str(path))))
    real = p.resolve()
    for root in _roots():
        for a, b in ((p, Path(os.path.abspath(os.path.expanduser(str(root))))), (real, Path(root).expanduser().resolve())):
            if a.is_relative_to(b) and a != b:
                return a.relative_to(b).as_posix()
    return (way(real, near) if near is not None else None) or p.name


def way(path: str | os.PathLike, near: str | os.PathLike) -> str | None:
    """The relative way from the folder `near` to path ('../../base/NAME'), when the two share a
    folder below the filesystem root and the way names neither the user nor the home folder; else None."""
    real = Path(os.path.abspath(os.path.expanduser(str(path)))).resolve()
    base = Path(near).expanduser().resolve()
    rel = Path(os.path.relpath(real, base))
    named = [part for part in rel.parts if part != ".."]
    private = {getpass.getuser(), Path.home().name}
    if Path(os.path.commonpath([real, base])) != Path(real.anchor) and not private & set(named):
        return rel.as_posix()
    return None


def local(recorded: str | None, near: str | os.PathLike | None = None) -> Path | None:
    """Where a path that metadata recorded (see portable) is on this machine: an absolute one (older
    metadata) as it is, a relative one under the models dir, the folder `near` or the checkout,
    whichever has it; None when none does."""
    if not recorded:
        return None
    p = Path(os.path.expanduser(recorded))
    if p.is_absolute():
        return p if p.exists() else None
    nearby = [Path(near)] if near is not None else []
    for root in nearby if p.parts[0] == ".." else (*_roots(), *nearby):
        if (root / p).exists():
            return Path(os.path.normpath(root / p))
    return None


def recorded_again(recorded: str, was_near: str | os.PathLike, near: str | os.PathLike) -> str:
    """A path another model's metadata recorded (beside was_near), as metadata beside `near` records it."""
    found = local(recorded, was_near)
    if found is not None or Path(recorded).is_absolute():
        return portable(found or recorded, near)
    return recorded


def content_hash(model_dir: str | os.PathLike) -> str:
    """The identity of a model folder: SHA-256 over the names and SHA-256s of the files that define
    it (config, generation config, weights, tokenizer files, chat templates), sorted by name.
    For a folder built by secai.training.tinymodel this equals its manifest's content_hash; it works on any
    mlx-lm or Hugging Face model folder and on an adapter folder."""
    model_dir = Path(model_dir)
    names = sorted(p.name for p in model_dir.iterdir() if p.is_file() and _defines_model(p.name))
    h = hashlib.sha256()
    for name in names:
        h.update(f"{name}\0{sha256_file(model_dir / name)}\n".encode())
    return h.hexdigest()


def _defines_model(name: str) -> bool:
    if name in (MANIFEST, "README.md") or name.startswith("."):
        return False
    return name.endswith((".json", ".safetensors", ".jinja", ".model", ".tiktoken", ".txt")) and name != "LICENSE.txt"


def identity(model_dir: str | os.PathLike) -> dict:
    """secai-model.json of a folder built by secai.training.tinymodel; for another model folder, its name
    and computed content hash."""
    manifest = Path(model_dir) / MANIFEST
    if manifest.is_file():
        return json.loads(manifest.read_text(encoding="utf-8"))
    return {"name": Path(model_dir).name, "content_hash": content_hash(model_dir)}


def is_test_model(model_dir: str | os.PathLike) -> bool:
    """True for the tiny random-weight model secai.training.tinymodel builds (a test device)."""
    return bool(identity(model_dir).get("random_weights"))


class NotAModel(InputError, ValueError):
    """A path given as a model (or adapter) folder that is not one: a user error, `PATH: reason`."""


def check_model_dir(path: str | os.PathLike) -> Path:
    """path as a local MLX model folder, or NotAModel. (mlx_lm.load takes a path that does not
    exist for a Hugging Face repo id and tries to download it: we never want that.)"""
    p = Path(os.path.expanduser(str(path)))
    if not (p / "config.json").is_file():
        raise NotAModel(str(p), None, "not a model folder (no config.json)")
    return p


def tiny_base() -> Path | None:
    """Where `make demo-model` builds the tiny test model in the checkout; None for an installed
    package (build one with `python -m secai.training.tinymodel DIR` and name it)."""
    return config.CHECKOUT / TINY_BASE if config.CHECKOUT else None


def default_base() -> tuple[Path, bool]:
    """(the base model to fine-tune, whether it is the tiny test model): the real OLMo-2-1B in the
    shared store when it is there, else the tiny model `make demo-model` builds in the checkout;
    outside one, the real model's place (so that the error names what is missing)."""
    real = models_dir() / "base" / REAL_BASE
    tiny = tiny_base()
    if (real / "config.json").is_file() or tiny is None:
        return real, False
    return tiny, True


def test_model_notice(prog: str, path: Path) -> None:
    """The loud notice that a run uses the random-weight test model."""
    bar = "!" * 78
    print(f"{bar}\n{prog}: NOTICE: {path} is the tiny RANDOM-WEIGHT test model, not a useful model.\n"
          f"{prog}: It proves the machinery end to end; what it learns or says means nothing.\n"
          f"{prog}: For real results: `make base-model` (needs the network once), or pass a real model.\n{bar}",
          file=sys.stderr)


HUB_SNAPSHOT = re.compile(r"(?:^|/)models--(?P<owner>[^/]+?)--(?P<name>[^/]+)/snapshots/[0-9a-f]{40}$")
UPLOAD_HEADING = re.compile(r"^# (?P<repo>[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*)\s*$", re.M)


def hub_origin(model_dir: str | os.PathLike) -> dict:
    """Where a local model folder stands to the Hugging Face Hub, from what the folder itself says:
    - hf_id: the Hub repository holding exactly these files — the folder is a snapshot in
      huggingface_hub's cache (…/models--OWNER--NAME/snapshots/REVISION), or its card is the one
      mlx-lm's upload writes (first heading `# OWNER/NAME`, linked as https://huggingface.co/OWNER/NAME);
      else None: a local conversion (`make base-model`) or secai's test model is on no Hub.
    - converted_from: the repository its card's `base_model` names (what `mlx_lm convert` records:
      the model it was converted from), when that is another one.
    - quantization: {bits, group_size} from config.json when the weights are quantized, else None."""
    from secai.files import front_matter

    d = Path(model_dir).expanduser().absolute()
    hf_id = None
    m = HUB_SNAPSHOT.search(d.as_posix())
    if m:
        hf_id = f"{m['owner']}/{m['name']}"
    try:
        source = front_matter(d / "README.md").get("base_model")
        text = (d / "README.md").read_text(encoding="utf-8", errors="replace")
    except InputError:
        source, text = None, ""
    heading = UPLOAD_HEADING.search(text)
    if not hf_id and heading and f"https://huggingface.co/{heading['repo']}" in text:
        hf_id = heading["repo"]
    if isinstance(source, list):
        source = source[0] if len(source) == 1 else None
    if not (isinstance(source, str) and source.count("/") == 1) or source == hf_id:
        source = None
    try:
        q = json.loads((d / "config.json").read_text(encoding="utf-8")).get("quantization")
    except (OSError, ValueError):
        q = None
    quantization = ({"bits": q["bits"], "group_size": q["group_size"]}
                    if isinstance(q, dict) and isinstance(q.get("bits"), int) and isinstance(q.get("group_size"), int) else None)
    return {"hf_id": hf_id, "converted_from": source, "quantization": quantization}


# ---------------------------------------------------------------- the real base model

def convert(hf_path: str = REAL_BASE_HF, name: str = REAL_BASE, quantize: bool = True) -> Path:
    """Convert a Hugging Face model to MLX (4-bit with quantize) into <models_dir>/base/<name>,
    through mlx-lm, built aside and renamed into place. Needs the network (the weights download)."""
    from secai.files import building

    out = models_dir() / "base" / name
    if (out / "config.json").is_file():
        return out
    try:
        from huggingface_hub import HfApi

        HfApi().model_info(hf_path, timeout=10)
    except Exception as exc:  # offline, blocked, or no such model
        raise RuntimeError(f"cannot reach {hf_path} on the Hugging Face Hub ({type(exc).__name__}): converting the base "
                           f"model needs the network once. Elsewhere: `mlx_lm convert --hf-path {hf_path} -q "
                           f"--mlx-path {out}`, then copy that folder here.") from None
    from mlx_lm.convert import convert as mlx_convert

    with building(out) as tmp:
        converted = tmp / "mlx"  # mlx-lm refuses an existing destination; tmp stays locked while it writes
        mlx_convert(hf_path, mlx_path=str(converted), quantize=quantize)
        for p in converted.iterdir():
            p.rename(tmp / p.name)
        converted.rmdir()
    return out


def main(argv: list[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="python -m secai.training.store",
                                description="Put the real base model in the shared store (`make base-model`).")
    p.add_argument("action", choices=["convert"])
    p.add_argument("--hf-path", default=REAL_BASE_HF, help=f"Hugging Face model (default: {REAL_BASE_HF})")
    p.add_argument("--name", default=REAL_BASE, help=f"folder name under <models_dir>/base (default: {REAL_BASE})")
    p.add_argument("--no-quantize", action="store_true", help="keep the original precision (default: 4-bit)")
    a = p.parse_args(argv)
    try:
        out = convert(a.hf_path, a.name, not a.no_quantize)
    except (RuntimeError, OSError, ValueError) as exc:
        print(f"secai.training.store: error: {exc}", file=sys.stderr)
        return 1
    print(f"secai.training.store: {out}: ready (content hash {content_hash(out)[:16]})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
