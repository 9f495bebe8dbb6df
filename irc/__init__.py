"""irc: an ahead-of-time compiler for ONNX inference.

ONNX models are imported into an SSA graph IR, rewritten by optimization passes and lowered to numba
CPU kernels; the result runs in process or is saved as a data-only artifact.
"""
from .runtime.cache import configure_numba_cache
from .runtime.threads import configure_env as configure_threads

configure_numba_cache()  # before anything imports numba
configure_threads()  # before numba's threading layer loads

from .errors import IrcError  # noqa: E402
from .api import InferenceSession, compile, load  # noqa: E402
from .runtime.model import CompiledModel  # noqa: E402
from .runtime.threads import get_num_threads, set_num_threads  # noqa: E402

__version__ = "0.1.0"
__all__ = ["IrcError", "InferenceSession", "compile", "load", "CompiledModel", "get_num_threads",
           "set_num_threads", "__version__"]
