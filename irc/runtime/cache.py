"""The kernel cache: where compiled numba kernels and generated kernel sources live on this machine.

``IRC_CACHE_DIR`` overrides the place (default: ``$XDG_CACHE_HOME/irc`` or ``~/.cache/irc``). numba's
own cache is pointed there (``NUMBA_CACHE_DIR``) before numba is first imported, unless the user set it.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path


def cache_dir() -> Path:
    """The folder of irc's on-disk caches on this machine."""
    env = os.environ.get("IRC_CACHE_DIR")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "irc"


def configure_numba_cache() -> None:
    """Point numba's on-disk cache into irc's cache directory, unless the user chose one for numba.

    numba reads ``NUMBA_CACHE_DIR`` when it is imported; when it was imported before irc, its config is
    set as well (numba looks the folder up each time a kernel's cache is opened).
    """
    if "NUMBA_CACHE_DIR" in os.environ:
        return
    os.environ["NUMBA_CACHE_DIR"] = str(cache_dir() / "numba")
    if "numba" in sys.modules:
        from numba.core import config
        config.CACHE_DIR = os.environ["NUMBA_CACHE_DIR"]


class JitCompiles:
    """Context manager recording the numba kernels compiled (not loaded from the cache) inside it.

    ``names`` lists the qualified name of each kernel compiled, once per signature; an empty list after
    a run means every kernel came from the on-disk cache (or was already loaded in this process).
    """

    def __init__(self):
        self.names = []

    def __enter__(self) -> "JitCompiles":
        from numba.core import event

        class _Listener(event.Listener):
            def on_start(_, ev):
                self.names.append(ev.data["dispatcher"].py_func.__qualname__)

            def on_end(_, ev):
                pass

        self._listener = _Listener()
        event.register("numba:compile", self._listener)
        return self

    def __exit__(self, *exc) -> None:
        from numba.core import event
        event.unregister("numba:compile", self._listener)
