"""irc's kernels (installed as ``irc.kernels``): numba code, one module per family."""
