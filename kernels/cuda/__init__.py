"""CUDA kernels (numba.cuda), one module per family, mirroring kernels/cpu."""
