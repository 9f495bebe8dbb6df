"""The size limit on any one tensor irc creates from a model's description.

A model states sizes that irc would allocate: initializers, Constant values, and the results of ops
such as ConstantOfShape, Expand, Tile and Range whose size follows from constant operands. A damaged or
hostile model can state terabytes in a few bytes, so every such size is checked against this limit
before anything is allocated, and a tensor above it is an IrcError naming where it comes from.

The limit is 4 GiB per tensor; the environment variable ``IRC_MAX_TENSOR_BYTES`` (a number of bytes)
raises or lowers it, read at each check so that a process may change it at any time.
"""
from __future__ import annotations

import math
import os
from typing import Iterable, Optional

from .errors import IrcError

ENV_VAR = "IRC_MAX_TENSOR_BYTES"
DEFAULT_MAX_TENSOR_BYTES = 4 << 30


def max_tensor_bytes() -> int:
    """The current limit in bytes (``IRC_MAX_TENSOR_BYTES``, else 4 GiB)."""
    text = os.environ.get(ENV_VAR)
    if not text:
        return DEFAULT_MAX_TENSOR_BYTES
    try:
        value = int(text)
    except ValueError:
        raise IrcError(f"{ENV_VAR}={text!r} is not a number of bytes") from None
    if value < 0:
        raise IrcError(f"{ENV_VAR}={text!r} is negative")
    return value


def check_tensor_size(shape: Iterable[Optional[int]], itemsize: int, what: str) -> None:
    """Raise IrcError when a tensor of ``shape`` (unknown dims ignored) would exceed the limit."""
    dims = [d for d in shape if isinstance(d, int)]
    nbytes = math.prod(dims) * itemsize
    limit = max_tensor_bytes()
    if nbytes > limit:
        raise IrcError(f"{what}: shape {list(shape)} needs {nbytes} bytes, more than the limit of {limit} "
                       f"bytes per tensor (raise it with {ENV_VAR})")
