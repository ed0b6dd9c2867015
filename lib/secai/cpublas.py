"""An optimized BLAS under MLX on the Linux CPU.

Linux's `mlx-cpu` wheel links the reference (netlib) BLAS and LAPACK that it bundles
(`mlx_cpu.libs/libblas-*.so.3.10.0`): a float32 matrix product runs at about 5 GFLOP/s there,
where OpenBLAS reaches 100-180 GFLOP/s on the same two cores (this project's CI machine; the
tiny model's prompt processing and LoRA steps are bound by it). MLX calls the standard CBLAS and
LAPACK symbols (`cblas_sgemm`, ...), and the dynamic linker binds each to the first library of the
process's global scope that defines it: an OpenBLAS opened with RTLD_GLOBAL *before* mlx.core is
loaded gives MLX its kernels, with no change to MLX. `prefer()` does that, once per process:

- SECAI_BLAS unset: the system's OpenBLAS, when the dynamic linker knows one (Debian and Ubuntu
  `libopenblas0`, which `make install` installs as root; Fedora and Arch `openblas`); with none,
  MLX keeps its own and `secai-doctor` says so;
- SECAI_BLAS=bundled: MLX's own (results bit for bit as the reference BLAS computes them);
- SECAI_BLAS=/path/to/libopenblas.so.0: that library; one that cannot be loaded is an error.

Nothing is loaded on macOS (MLX uses Accelerate there), nor once mlx.core is imported (too late to
change what MLX binds). Results differ from the reference BLAS's in the last bits (another order
of summation), as they do between any two BLAS libraries.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

from secai.errors import UsageError

ENV = "SECAI_BLAS"
BUNDLED = "bundled"
_chosen: list[str | None] = []  # [path loaded, or None]: prefer() has run in this process


def prefer() -> str | None:
    """Load the BLAS that MLX should use (see the module's docstring); the library loaded, or None."""
    if _chosen:
        return _chosen[0]
    wanted = os.environ.get(ENV, "").strip()
    path = None
    if sys.platform.startswith("linux") and wanted != BUNDLED and "mlx.core" not in sys.modules:
        path = wanted or ctypes.util.find_library("openblas")
        if path:
            try:
                ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL)
            except OSError as exc:
                if wanted:
                    raise UsageError(f"{ENV}={wanted}: cannot load it ({exc}); unset {ENV}, or {ENV}={BUNDLED} "
                                     "for MLX's own BLAS") from None
                path = None  # a broken system library: MLX keeps its own
    _chosen.append(path)
    return path
