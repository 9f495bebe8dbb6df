"""CUDA kernels (numba.cuda), one module per family, mirroring kernels/cpu.

Importing this package registers every lowering in irc.backend.cuda_registry; it needs numba.cuda (the
``numba-cuda`` package) and a GPU or numba's simulator (irc.backend.cuda checks that first).
"""
from . import conv, elementwise, fused, gemm, movement, norm, pool, reduce, resize  # noqa: F401  (registration)
