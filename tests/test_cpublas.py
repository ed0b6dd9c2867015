"""secai.cpublas: on Linux, MLX's CPU matrix products go through the system's OpenBLAS when there is
one (loaded before mlx.core), SECAI_BLAS=bundled keeps MLX's own, a SECAI_BLAS path that does not
load is a clear error. Each case runs in a fresh interpreter: what a process has loaded stays."""

import ctypes.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

LIB = str(Path(__file__).resolve().parents[1] / "lib")
pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the BLAS swap is for Linux's mlx-cpu")

PROBE = r"""
import json, sys
import secai.training  # what every training module's import runs first
from secai import cpublas
import mlx.core as mx
import numpy as np
rng = np.random.default_rng(0)
a, b = rng.standard_normal((96, 64), dtype=np.float32), rng.standard_normal((64, 80), dtype=np.float32)
got = np.array(mx.matmul(mx.array(a), mx.array(b), stream=mx.cpu))
maps = [line.split()[-1] for line in open("/proc/self/maps") if "/" in line]
print(json.dumps({"chosen": cpublas.prefer(), "error": float(np.abs(got - a @ b).max()),
                  "openblas": sorted({m for m in maps if "libopenblas" in m.rsplit("/", 1)[-1]})}))
"""


def probe(env_value: str | None, code: str = PROBE) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "SECAI_BLAS"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, (LIB, env.get("PYTHONPATH"))))
    if env_value is not None:
        env["SECAI_BLAS"] = env_value
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)


@pytest.mark.skipif(not ctypes.util.find_library("openblas"), reason="no system OpenBLAS (`make openblas` installs one)")
def test_system_openblas_is_loaded_before_mlx_and_computes_the_same():
    out = probe(None)
    assert out.returncode == 0, out.stderr
    r = json.loads(out.stdout)
    assert r["chosen"] == ctypes.util.find_library("openblas")
    assert r["openblas"], "no OpenBLAS mapped into the process"
    assert r["error"] < 1e-4


def test_bundled_keeps_mlx_own_blas():
    out = probe("bundled")
    assert out.returncode == 0, out.stderr
    r = json.loads(out.stdout)
    assert r["chosen"] is None and r["openblas"] == []
    assert r["error"] < 1e-4


def test_a_path_that_does_not_load_is_a_one_line_error():
    out = probe("/nonexistent/libopenblas.so.0", "import secai.training")
    assert out.returncode != 0
    assert "SECAI_BLAS=/nonexistent/libopenblas.so.0: cannot load it" in out.stderr
    assert "SECAI_BLAS=bundled" in out.stderr


def test_too_late_once_mlx_is_loaded():
    out = probe(None, "import mlx.core\nfrom secai import cpublas\nprint(cpublas.prefer())")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "None"
