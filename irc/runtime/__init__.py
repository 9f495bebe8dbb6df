"""Runtime: the executor, the artifact reader/writer and the kernel cache."""
