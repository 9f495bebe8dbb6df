"""CPU kernels: importing this package registers every lowering in irc.backend.registry."""
from . import conv, elementwise, fused, gemm, movement, norm, pool, quant, reduce, resize  # noqa: F401  (registration)
