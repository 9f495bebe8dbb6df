"""Conv kernels."""
