"""Gemm kernels."""
