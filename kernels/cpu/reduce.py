"""Reduce kernels."""
