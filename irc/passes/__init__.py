"""Passes over the IR: each a named ``Graph -> Graph`` function, run by the pass manager.

ORDER is the one pipeline; each -O level runs the passes registered at or below it (-O0 runs none).
-O1 runs the cleanups: ``simplify`` before folding (fewer nodes to look at) and after it (folded shapes
turn reshapes into no-ops); ``cse`` then merges what folding made equal and ``dce`` drops the rest.
-O2 adds the rewrites measured to pay: ``fold-batchnorm`` (before anything reads the weights),
``dedup-filters`` (a conv's repeated filters computed once, after folding made the weights final),
``fuse`` (written-out patterns into their ops, epilogues into conv/gemm/matmul), ``fuse-elementwise``
(chains of elementwise ops into one node), then the conv algorithm choices ``depthwise`` and ``winograd``
(the latter replaces the weight by its transform, so it runs after folding); each removes the weights it
replaced. ``plan-memory`` comes last: an analysis the executor repeats on each binding of the input shapes
(it places the intermediate results in one reused arena).
"""
from . import (cse, dce, dedup_filters, depthwise, fold_batchnorm, fold_constants, fuse, fuse_qdq,  # noqa: F401
               infer_shapes, plan_memory, simplify, winograd)
from .manager import ORDER, PASSES, PassManager, pipeline, register_pass

ORDER.extend(["simplify", "fold-constants", "simplify", "cse", "dce",
              "fold-batchnorm", "dedup-filters", "fuse-qdq", "fuse", "fuse-elementwise", "depthwise", "winograd",
              "plan-memory"])

__all__ = ["ORDER", "PASSES", "PassManager", "pipeline", "register_pass"]
