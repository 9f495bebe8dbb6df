"""Backends: lowering of the optimized IR to kernels and an execution plan."""
