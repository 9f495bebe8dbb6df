"""The threading policy: one thread count for irc's two pools, numba's parallel kernels and BLAS.

irc runs numba kernels (some ``parallel=True``) and BLAS GEMMs (numpy's ``np.dot``, and numba's own
``np.dot``, which calls the OpenBLAS that ships with scipy) one after the other, so the two pools take
turns on the same cores. Both get the same count, and numba's pool never busy-waits: with its default
threading layer (OpenMP, libgomp) an idle worker spins for a while after each parallel kernel without
yielding, and the BLAS call that follows waits for a core (resnet18 took 2x, bert 7x as long; the
measurements are in docs/benchmarks.md). ``OMP_WAIT_POLICY=PASSIVE`` makes libgomp's workers sleep at
once. OpenBLAS's idle workers keep polling (about 0.1 s), but they yield the core while they do, and
back-to-back GEMMs then find them awake: a shorter poll (``OPENBLAS_THREAD_TIMEOUT=4``) measured
slower, so it is left at OpenBLAS's default.

- The count: ``set_num_threads(n)``, else the ``IRC_NUM_THREADS`` environment variable, else every
  core numba may use. ``apply()`` (called by the executor before each run) gives it to numba
  (``numba.set_num_threads``, which is per calling thread) and, through threadpoolctl where it is
  installed, to every BLAS library loaded in the process.
- The environment (``SPIN_DEFAULTS``, and ``OPENBLAS_NUM_THREADS`` from ``IRC_NUM_THREADS``) is read
  when OpenMP and OpenBLAS load: ``configure_env()`` sets it, each variable only where the user has
  not, from ``irc/__init__.py`` before irc imports numpy or numba.
"""
from __future__ import annotations

import os
import sys
import threading
from typing import Optional

from ..errors import IrcError

ENV_VAR = "IRC_NUM_THREADS"

# libgomp's idle workers (numba's "omp" threading layer) sleep at once instead of spinning
SPIN_DEFAULTS = {"OMP_WAIT_POLICY": "PASSIVE"}

_lock = threading.Lock()
_requested: Optional[int] = None
_blas_applied: Optional[tuple] = None  # (count, len(sys.modules)) when BLAS was last given the count


def _parse_count(value, what: str) -> int:
    try:
        n = int(value)
    except (TypeError, ValueError):
        raise IrcError(f"{what}: expected a positive number of threads, got {value!r}") from None
    if n < 1:
        raise IrcError(f"{what}: expected a positive number of threads, got {value!r}")
    return n


def configure_env() -> None:
    """Put the spin settings (and, with ``IRC_NUM_THREADS``, BLAS's count) into the environment,
    leaving every variable the user set alone; call before numpy, numba or OpenBLAS load."""
    for name, value in SPIN_DEFAULTS.items():
        os.environ.setdefault(name, value)
    count = os.environ.get(ENV_VAR, "").strip()
    if count.isdigit() and int(count) > 0:  # a bad value is reported by the first run, not by import irc
        os.environ.setdefault("OPENBLAS_NUM_THREADS", count)


def _max_threads() -> int:
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
    elif os.environ.get(ENV_VAR):
        n = _parse_count(os.environ[ENV_VAR], ENV_VAR)
    else:
        n = _max_threads()
    return min(n, _max_threads())


def _blas_controllers():
    """threadpoolctl's controllers of the BLAS libraries loaded now ([] without threadpoolctl)."""
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:
        return []
    return ThreadpoolController().select(user_api="blas").lib_controllers


def apply() -> int:
    """Give both pools the current count and return it. BLAS libraries are looked up again only when
    the count changed or a module was imported since (numba imports scipy's BLAS when a kernel calling
    ``np.dot`` first runs), so a run in a settled process costs a dict lookup."""
    global _blas_applied
    import numba
    n = get_num_threads()
    numba.set_num_threads(n)
    with _lock:
        if _blas_applied != (n, len(sys.modules)):
            for lib in _blas_controllers():
                lib.set_num_threads(n)
            _blas_applied = (n, len(sys.modules))
    return n


def describe() -> dict:
    """The thread settings in effect: count, numba's threading layer, each BLAS library with its core
    type and threads, and the spin variables."""
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
    names = (*SPIN_DEFAULTS, "OPENBLAS_THREAD_TIMEOUT", "OPENBLAS_CORETYPE", "OPENBLAS_NUM_THREADS", ENV_VAR)
    env = {k: os.environ.get(k) for k in names}
    return {"threads": get_num_threads(), "numba_layer": layer, "blas": blas, "env": env}
