"""CPU kernels: importing this package registers every lowering in irc.backend.registry."""
from . import movement  # noqa: F401  (registration)
