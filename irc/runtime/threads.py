"""The threading policy: numba's thread pool is the only pool irc runs on, with one thread count.

irc's kernels parallelize themselves with numba's ``prange``; GEMMs are called from inside those kernels,
each worker calling a single-threaded BLAS on its own block (kernels/cpu/blas.py). While a model runs,
BLAS's own pool is held at one thread (``single_threaded_blas``, entered by the executor), so two pools
never take turns on the same cores: when they did (numba's kernels between OpenBLAS calls whose idle
workers keep polling), a conv whose parts took 0.8 ms took 8 ms.

numba's pool runs on TBB (the ``tbb`` package, a dependency where wheels exist; numba picks it first):
measured on 2 cores, a parallel kernel starts in 1.4 us (4 us after an idle gap), and on a machine
overloaded by other processes (load 10) the BERT encoder ran in 21 ms. numba's OpenMP layer either spins
(libgomp's default: 1.5 us starts, but 200-600 ms for that BERT under load, its barrier spinning while a
descheduled partner waits for a core) or sleeps (``OMP_WAIT_POLICY=PASSIVE``: 16-50 us per start, 25 ms
under load). Without TBB, irc takes OpenMP's robust setting: ``configure_env()``, called by
``irc/__init__.py`` before numba loads, sets ``OMP_WAIT_POLICY=PASSIVE`` where the user has not set it.

- The count: ``set_num_threads(n)``, else the ``IRC_NUM_THREADS`` environment variable, else every
  core numba may use. ``apply()`` (called by the executor before each run) gives it to numba
  (``numba.set_num_threads``, which is per calling thread).
"""
from __future__ import annotations

import functools
import glob
import os
import sys
import threading
from typing import Optional

from ..errors import IrcError

ENV_VAR = "IRC_NUM_THREADS"

_requested: Optional[int] = None


def _parse_count(value, what: str) -> int:
    try:
        n = int(value)
    except (TypeError, ValueError):
        raise IrcError(f"{what}: expected a positive number of threads, got {value!r}") from None
    if n < 1:
        raise IrcError(f"{what}: expected a positive number of threads, got {value!r}")
    return n


def tbb_installed() -> bool:
    """Whether the ``tbb`` runtime numba's TBB layer loads is installed: its distribution's metadata is on
    the path (asked without importing numba, which would load a threading layer)."""
    return any(glob.glob(os.path.join(p or ".", "tbb-*.dist-info")) for p in sys.path)


def configure_env() -> None:
    """Without TBB, make numba's OpenMP workers sleep when idle (see the module docstring), unless the user
    chose a wait policy or a threading layer."""
    if not tbb_installed() and "NUMBA_THREADING_LAYER" not in os.environ:
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


@functools.lru_cache(maxsize=None)
def _max_threads() -> int:
    """numba's pool size (fixed when numba loads)."""
    from numba import config
    return config.NUMBA_NUM_THREADS


def set_num_threads(n: Optional[int]) -> None:
    """Use ``n`` threads in both pools from the next run on (None: back to the default)."""
    global _requested
    _requested = None if n is None else _parse_count(n, "set_num_threads")


def get_num_threads() -> int:
    """The thread count runs use: ``set_num_threads``, ``IRC_NUM_THREADS``, or every core numba may use;
    at most numba's pool size (``NUMBA_NUM_THREADS``, fixed when numba loads)."""
    if _requested is not None:
        n = _requested
    else:
        value = os.environ.get(ENV_VAR)
        n = _parse_count(value, ENV_VAR) if value else _max_threads()
    return min(n, _max_threads())


_applied = threading.local()  # the count this thread last gave numba (numba's count is per thread)


def apply() -> int:
    """Give numba's pool the current count, when it changed for the calling thread, and return it."""
    n = get_num_threads()
    if getattr(_applied, "count", None) != n:  # (numba.set_num_threads costs microseconds)
        import numba
        numba.set_num_threads(n)
        _applied.count = n
    return n


def current() -> int:
    """The count the calling thread's last run gave numba (kernels split their work by it): cheaper than
    ``numba.get_num_threads()``, which checks numba's pool on every call."""
    count = getattr(_applied, "count", None)
    return apply() if count is None else count


def describe() -> dict:
    """The thread settings in effect: count, numba's threading layer, each BLAS library with its core
    type and threads (outside runs: inside, irc holds it at one), the library the kernels call, and the
    variables that change threading."""
    import numba
    try:
        layer = numba.threading_layer()
    except ValueError:  # no parallel kernel has run yet
        layer = f"not started (NUMBA_THREADING_LAYER={numba.config.THREADING_LAYER})"
    try:
        from threadpoolctl import threadpool_info
        blas = [{"library": i.get("internal_api"), "core_type": i.get("architecture"),
                 "threads": i.get("num_threads"), "version": i.get("version"),
                 "file": os.path.basename(i.get("filepath", ""))}
                for i in threadpool_info() if i.get("user_api") == "blas"]
    except ImportError:
        blas = [{"library": "unknown (threadpoolctl not installed)", "core_type": None, "threads": None}]
    names = ("NUMBA_THREADING_LAYER", "OMP_WAIT_POLICY", "OPENBLAS_CORETYPE", "OPENBLAS_NUM_THREADS", ENV_VAR)
    env = {k: os.environ.get(k) for k in names}
    from ..kernels.cpu.blas import library
    return {"threads": get_num_threads(), "numba_layer": layer, "blas": blas, "kernel_blas": library(),
            "env": env}
