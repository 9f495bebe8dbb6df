"""Pool kernels."""
