"""Tests of the CUDA target, run by tests/test_cuda.py in a process of their own (simulator or GPU)."""
