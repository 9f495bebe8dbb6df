"""CPU kernels: importing this package registers every lowering in irc.backend.registry."""
from . import conv, elementwise, gemm, movement, norm, pool, reduce  # noqa: F401  (registration)
