"""Latency and accuracy of irc beside onnxruntime, in one process, on the same inputs.

    python tools/bench.py MODEL.onnx [MODEL.onnx ...] [--batch N] [--runs N] [--blocks N]

Both engines run in alternating blocks (so a thread pool that spins after its run taxes its own block, not
the other engine's); each figure is the median over all runs. Thread counts are equal and printed, with
the OpenBLAS core type. Run with OpenBLAS's variables unset for figures worth quoting:
``env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python tools/bench.py ...``.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import numpy as np


def random_feeds(model, batch: int, seed: int = 0):
    """Random inputs for every graph input of an irc CompiledModel; symbolic dims bound to ``batch``."""
    rng = np.random.default_rng(seed)
    feeds = {}
    for v in model.graph.inputs:
        shape = [d if isinstance(d, int) else batch for d in v.type.shape]
        dt = v.type.numpy_dtype
        if dt.kind == "f":
            feeds[v.name] = rng.standard_normal(shape).astype(dt)
        elif dt.kind == "b":
            feeds[v.name] = np.ones(shape, dt)
        else:  # ids and masks: small non-negative ints are valid for embeddings and masks alike
            feeds[v.name] = rng.integers(0, 2, size=shape).astype(dt)
    return feeds


def blas_info() -> str:
    try:
        from threadpoolctl import threadpool_info
        infos = [i for i in threadpool_info() if i.get("internal_api") in ("openblas", "mkl", "blis")]
        return ", ".join(f"{i['internal_api']} {i.get('architecture', '?')} x{i['num_threads']}" for i in infos)
    except ImportError:
        return "threadpoolctl not installed"


def time_blocks(fns, runs: int, blocks: int):
    times = [[] for _ in fns]
    for _ in range(blocks):
        for i, fn in enumerate(fns):
            for _ in range(runs):
                t0 = time.perf_counter()
                fn()
                times[i].append(time.perf_counter() - t0)
    return [statistics.median(t) for t in times]


def bench(path: str, batch: int, runs: int, blocks: int, threads: int):
    import onnxruntime as ort

    import irc
    t0 = time.perf_counter()
    m = irc.compile(path)
    compile_s = time.perf_counter() - t0
    feeds = random_feeds(m, batch)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
    ort_feeds = {k: v for k, v in feeds.items() if k in {i.name for i in sess.get_inputs()}}
    ref = sess.run(None, ort_feeds)
    got = m.run(feeds)
    err = 0.0
    for a, e in zip(got.values(), ref):
        if e.dtype.kind == "f":
            err = max(err, float(np.abs(a.astype(np.float64) - e).max()) / max(1.0, float(np.abs(e).max())))
        else:
            err = max(err, float((a != e).any()))
    irc_t, ort_t = time_blocks([lambda: m.run(feeds), lambda: sess.run(None, ort_feeds)], runs, blocks)
    return {"model": os.path.basename(path), "compile_s": compile_s, "rel_err": err,
            "irc_ms": irc_t * 1e3, "ort_ms": ort_t * 1e3, "ratio": irc_t / ort_t}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="+")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--blocks", type=int, default=4)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    args = ap.parse_args(argv)
    import numba
    print(f"threads: irc numba {numba.get_num_threads()}, onnxruntime {args.threads}; BLAS: {blas_info()}; "
          f"OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', 'unset')}")
    print(f"{'model':<28} {'err/max|ref|':>12} {'irc ms':>9} {'ort ms':>9} {'irc/ort':>8} {'compile s':>9}")
    for p in args.models:
        try:
            r = bench(p, args.batch, args.runs, args.blocks, args.threads)
        except Exception as e:  # a benchmark table goes on past a model that fails
            print(f"{os.path.basename(p):<28} FAILED: {type(e).__name__}: {str(e)[:150]}")
            continue
        print(f"{r['model']:<28} {r['rel_err']:12.2e} {r['irc_ms']:9.2f} {r['ort_ms']:9.2f} {r['ratio']:8.2f} "
              f"{r['compile_s']:9.1f}")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
