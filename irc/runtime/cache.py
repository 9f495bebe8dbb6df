"""The kernel cache: where compiled numba kernels and generated kernel sources live on this machine.

``IRC_CACHE_DIR`` overrides the place (default: ``$XDG_CACHE_HOME/irc`` or ``~/.cache/irc``). numba's
own cache is pointed there (``NUMBA_CACHE_DIR``) before numba is first imported, unless the user set it.
"""
from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    env = os.environ.get("IRC_CACHE_DIR")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "irc"


def configure_numba_cache() -> None:
    """Point numba's on-disk cache into irc's cache directory (must run before numba is imported)."""
    if "NUMBA_CACHE_DIR" not in os.environ:
        os.environ["NUMBA_CACHE_DIR"] = str(cache_dir() / "numba")
