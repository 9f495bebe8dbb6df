"""Per-node times of a compiled model (``irc profile``).

The model runs once untimed (kernels compile or load from the cache, the plan is built), then ``runs``
times with a step hook in the executor that times every kernel call. A node's time is its mean over the
runs; GFLOP/s is given for the ops whose work is a known count of multiply-adds (conv, matmul, gemm), and
beside it the share of the SGEMM peak measured in the same process just before (``sgemm_peak``: a large
float32 GEMM through the kernels' own BLAS path, split across numba's pool as the kernels split theirs).
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Dict, List, Mapping, Optional

import numpy as np

from ..ir import Node
from .text import table


@dataclass
class NodeTime:
    node: str
    op: str
    algo: str
    shape: List[int]
    ms: float
    percent: float
    gflops: Optional[float]     # GFLOP/s, None where the op's work is not counted
    peak_percent: Optional[float]  # gflops as a percentage of the run's SGEMM peak


@dataclass
class Profile:
    nodes: List[NodeTime]       # slowest first
    total_ms: float             # the sum of the nodes' times
    wall_ms: float              # mean time of one whole run, executor overhead included
    runs: int
    sgemm_peak_gflops: float    # the SGEMM peak measured in the same process

    def as_dict(self) -> dict:
        return {"runs": self.runs, "total_ms": self.total_ms, "wall_ms": self.wall_ms,
                "sgemm_peak_gflops": self.sgemm_peak_gflops, "nodes": [asdict(n) for n in self.nodes]}


def sgemm_peak(size: int = 1536, repeats: int = 7) -> float:
    """GFLOP/s of a [size x size] float32 GEMM on the kernels' BLAS path (median of ``repeats``)."""
    import numba

    from ..kernels.cpu.blas import single_threaded_blas
    from ..kernels.cpu.gemm import gemm_parallel
    from ..runtime import threads
    a = np.random.default_rng(0).standard_normal((size, size)).astype(np.float32)
    c = np.empty_like(a)
    threads.apply()
    times = []
    with single_threaded_blas():
        for _ in range(repeats + 1):
            t0 = time.perf_counter()
            gemm_parallel(a, a, c, 0.0, numba.get_num_threads())
            times.append(time.perf_counter() - t0)
    return 2 * size ** 3 / float(np.median(times[1:])) / 1e9


def _static_types(node: Node):
    types = [v.type for v in node.inputs if v is not None] + [node.outputs[0].type]
    return None if not all(t.is_static for t in types) else types


def flops(node: Node) -> Optional[int]:
    """Floating-point operations of a conv, matmul or gemm node (2 per multiply-add of the direct
    algorithm, whichever algorithm runs), else None."""
    types = _static_types(node)
    if types is None:
        return None
    out = types[-1].shape
    w = types[1].shape if len(types) > 2 else None
    if node.op == "conv2d":          # each output element: Cin/group * kh * kw multiply-adds
        window = 9 if node.attrs.get("algo") == "winograd" else int(np.prod(w[2:]))  # (its weight: transformed)
        return 2 * int(np.prod(out)) * types[0].shape[1] // node.attrs.get("group", 1) * window
    if node.op == "conv_transpose2d":  # each input element: Cout/group * kh * kw multiply-adds
        return 2 * int(np.prod(types[0].shape)) * int(np.prod(w[1:]))
    if node.op in ("matmul", "gemm"):
        a = types[0].shape
        k = a[0] if node.op == "gemm" and node.attrs.get("transA") else a[-1]
        return 2 * int(np.prod(out)) * k
    return None


def _timing_hook(times: Dict[int, float]):
    def hook(step, args):
        t0 = time.perf_counter()
        res = step.fn(*args)
        times[id(step)] = times.get(id(step), 0.0) + time.perf_counter() - t0
        return res
    return hook


def profile(model, feeds: Mapping[str, np.ndarray], runs: int = 10) -> Profile:
    """Time every node of ``model`` (a CompiledModel) over ``runs`` runs on ``feeds``."""
    from ..backend.cpu import execute
    from ..errors import UnsupportedError
    from ..kernels.cpu.blas import single_threaded_blas
    from ..runtime.executor import check_feeds
    if model.target != "cpu":
        raise UnsupportedError(f"profiling times CPU plans; this model's target is {model.target!r}")
    arrays = check_feeds(model.graph, feeds)
    plan = model.plan(feeds)
    peak = sgemm_peak()
    times: Dict[int, float] = {}
    hook = _timing_hook(times)
    with np.errstate(all="ignore"), single_threaded_blas():  # as the executor runs them
        # untimed: compile or load the kernels the timed runs call (each step's ``fn`` on fresh arrays,
        # whose signatures may differ from the bound calls of a plain run)
        execute(plan, arrays, hook=lambda step, args: step.fn(*args))
        t0 = time.perf_counter()
        for _ in range(runs):
            execute(plan, arrays, hook=hook)
    wall_ms = (time.perf_counter() - t0) * 1e3 / runs
    total_ms = sum(times.values()) * 1e3 / runs
    rows = []
    for step in plan.steps:
        ms = times.get(id(step), 0.0) * 1e3 / runs
        f = flops(step.node)
        gflops = None if f is None or ms == 0 else f / (ms * 1e-3) / 1e9
        rows.append(NodeTime(step.node.name, step.node.op, step.algo, list(step.node.outputs[0].type.shape or []),
                             ms, 100.0 * ms / total_ms if total_ms else 0.0, gflops,
                             None if gflops is None else 100.0 * gflops / peak))
    rows.sort(key=lambda r: -r.ms)
    return Profile(rows, total_ms, wall_ms, runs, peak)


def format_profile(p: Profile) -> str:
    """The profile as a table, slowest node first, then the totals."""
    rows = [[r.node or "-", r.op, r.algo or "-", "[" + ", ".join(map(str, r.shape)) + "]", f"{r.ms:.3f}",
             f"{r.percent:.1f}", "" if r.gflops is None else f"{r.gflops:.2f}",
             "" if r.peak_percent is None else f"{r.peak_percent:.0f}"] for r in p.nodes]
    lines = table(["node", "op", "algo", "shape", "ms", "%", "GFLOP/s", "% peak"], rows, right=(4, 5, 6, 7))
    by_op: Dict[str, float] = {}
    for r in p.nodes:
        by_op[r.op] = by_op.get(r.op, 0.0) + r.ms
    lines.append(f"total: {p.total_ms:.3f} ms in {len(p.nodes)} nodes; one run {p.wall_ms:.3f} ms "
                 f"(mean of {p.runs})")
    lines.append(f"SGEMM peak in this process: {p.sgemm_peak_gflops:.0f} GFLOP/s (% peak: a node's GFLOP/s "
                 "against it; Winograd nodes count the direct algorithm's flops)")
    lines.append("by op: " + ", ".join(f"{op} {ms:.3f} ms" for op, ms in
                                       sorted(by_op.items(), key=lambda kv: -kv[1])))
    return "\n".join(lines) + "\n"
