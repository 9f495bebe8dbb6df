"""The kernel cache: where compiled numba kernels and generated kernel sources live on this machine.

``IRC_CACHE_DIR`` overrides the place (default: ``$XDG_CACHE_HOME/irc`` or ``~/.cache/irc``). numba's
own cache is pointed there (``NUMBA_CACHE_DIR``) before numba is first imported, unless the user set it,
into a folder named by a digest of irc's kernel sources (``kernel_fingerprint``): numba checks a cached
kernel against its own file only, while the machine code holds the functions it calls from other files
inlined, so an irc whose kernels changed anywhere starts from an empty folder instead of running stale code.

A damaged entry is rebuilt, never trusted. Generated kernel sources are compared with the text they
should hold before import (``kernels/cpu/codegen.py``), and numba's index files validate their source
by its stamp; but numba reads its index (``.nbi``) and data (``.nbc``) files with pickle and lets a
truncated or garbled one raise. ``harden_numba_cache`` makes such a file a cache miss, and, inside
irc's cache, records a SHA-256 beside every index and data file numba writes (``NAME.sha256``) and
treats a file that no longer matches it as missing: numba then compiles again and rewrites the entry.
Concurrent processes write every file atomically (numba's temporary-and-rename); a digest that races
with another writer only costs a recompile.
"""
from __future__ import annotations

import hashlib
import os
import sys
import threading
import uuid
from pathlib import Path


def cache_dir() -> Path:
    """The folder of irc's on-disk caches on this machine."""
    env = os.environ.get("IRC_CACHE_DIR")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "irc"


def kernel_fingerprint(folder=None) -> str:
    """A digest of every kernel source file under ``folder`` (default: irc.kernels, wherever installed)."""
    if folder is None:
        here = Path(__file__).resolve().parent.parent
        folder = next((p for p in (here / "kernels", here.parent / "kernels") if (p / "cpu").is_dir()), None)
    digest = hashlib.sha256(b"irc-kernels-1")
    for path in sorted(folder.rglob("*.py")) if folder is not None else ():
        digest.update(path.relative_to(folder).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def configure_numba_cache() -> None:
    """Point numba's on-disk cache into irc's cache directory, unless the user chose one for numba.

    numba reads ``NUMBA_CACHE_DIR`` when it is imported; when it was imported before irc, its config is
    set as well (numba looks the folder up each time a kernel's cache is opened).
    """
    if "NUMBA_CACHE_DIR" in os.environ:
        return
    os.environ["NUMBA_CACHE_DIR"] = str(cache_dir() / "numba" / kernel_fingerprint())
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


_HARDEN_LOCK = threading.Lock()
DIGEST_SUFFIX = ".sha256"


def _digest_path(path: str) -> str:
    return path + DIGEST_SUFFIX


def _file_digest(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def _inside_cache(path: str) -> bool:
    root = os.path.abspath(cache_dir())
    return os.path.abspath(path).startswith(root + os.sep)


def record_digest(path: str) -> None:
    """Write the SHA-256 of the file at ``path`` beside it (atomically)."""
    tmp = f"{_digest_path(path)}.tmp.{uuid.uuid4().hex[:16]}"
    try:
        with open(tmp, "w", encoding="ascii") as f:
            f.write(_file_digest(path))
        os.replace(tmp, _digest_path(path))
    except OSError:
        if os.path.exists(tmp):
            os.unlink(tmp)


def digest_matches(path: str) -> bool:
    """False when ``path`` has a recorded digest that its bytes no longer match (or cannot be read);
    a file without one (written before digests were kept) is left to numba's own checks."""
    try:
        with open(_digest_path(path), encoding="ascii") as f:
            recorded = f.read().strip()
    except FileNotFoundError:
        return True
    except (OSError, UnicodeDecodeError):
        return False
    try:
        return _file_digest(path) == recorded
    except OSError:
        return False


def harden_numba_cache() -> None:
    """Make a damaged numba cache entry a miss instead of an error (once per process; see the module doc)."""
    from numba.core import caching
    cls = caching.IndexDataCacheFile
    with _HARDEN_LOCK:
        if getattr(cls, "_irc_hardened", False):
            return
        load_index, save_index = cls._load_index, cls._save_index
        load_data, save_data = cls._load_data, cls._save_data

        def _load_index(self):
            if _inside_cache(self._index_path) and not digest_matches(self._index_path):
                return {}
            try:
                return load_index(self)
            except Exception:  # a truncated or garbled index: an empty one, rewritten on the next save
                return {}

        def _save_index(self, overloads):
            save_index(self, overloads)
            if _inside_cache(self._index_path):
                record_digest(self._index_path)

        def _load_data(self, name):
            path = self._data_path(name)
            if _inside_cache(path) and not digest_matches(path):
                raise OSError(f"damaged cache entry {path}")  # numba's load() treats it as missing
            try:
                return load_data(self, name)
            except Exception as e:
                raise OSError(f"damaged cache entry {path}: {e}") from None

        def _save_data(self, name, data):
            save_data(self, name, data)
            path = self._data_path(name)
            if _inside_cache(path):
                record_digest(path)

        cls._load_index, cls._save_index = _load_index, _save_index
        cls._load_data, cls._save_data = _load_data, _save_data
        cls._irc_hardened = True
