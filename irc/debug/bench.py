"""``irc bench``: irc beside onnxruntime on one model, in one process, on the same inputs.

What one bench measures (``bench_model``):
- latency: both engines run in alternating blocks of ``runs`` calls, with a pause before each block so that
  threads one engine leaves polling for work do not tax the other's block; each figure is the median over all
  calls, and the ratio is
  irc / onnxruntime. Both use the same thread count (irc's policy, ``irc.runtime.threads``; onnxruntime's
  intra-op threads), printed with numba's threading layer and each BLAS library's core type.
- accuracy: max |irc - onnxruntime| / max(1, max |onnxruntime|) over the outputs (integer outputs: 1 if
  any element differs).
- compile: ``irc.compile`` (import + passes), and the first in-process run (plan + kernels, which come
  from the on-disk kernel cache when it is warm).
- load + first result: the saved artifact loaded and run once in a NEW process, after the run above has
  warmed the kernel cache; onnxruntime's session creation + first run beside it.
- memory: the peak RSS of that new process (VmHWM, interpreter and imports included) for each
  engine, and its RSS before the model was loaded.

The child processes run this file by path (``child_main``), so that the onnxruntime child never imports
irc: this module imports only the standard library at its top.
"""
from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

# runs this file as a module that is not part of the irc package (see the module docstring)
_CHILD_LAUNCH = ("import sys, importlib.util as u; s = u.spec_from_file_location('irc_bench_child', sys.argv[1]); "
                 "m = u.module_from_spec(s); s.loader.exec_module(m); m.child_main(sys.argv[2:])")


def random_feeds(model, batch: int, seed: int = 0):
    """Random inputs for every input of a CompiledModel, symbolic dims bound to ``batch``: standard-normal
    floats, all-true booleans, integers in {0, 1} (valid token ids and attention masks alike)."""
    import numpy as np
    rng = np.random.default_rng(seed)
    feeds = {}
    for v in model.graph.inputs:
        shape = [d if isinstance(d, int) else batch for d in v.type.shape]
        dt = v.type.numpy_dtype
        if dt.kind == "f":
            feeds[v.name] = rng.standard_normal(shape).astype(dt)
        elif dt.kind == "b":
            feeds[v.name] = np.ones(shape, dt)
        else:
            feeds[v.name] = rng.integers(0, 2, size=shape).astype(dt)
    return feeds


def max_error(got, ref) -> float:
    """Largest error of outputs ``got`` against ``ref`` (lists of arrays), relative to max(1, max |ref|)."""
    import numpy as np
    err = 0.0
    for a, e in zip(got, ref):
        if e.dtype.kind == "f":
            diff = np.abs(a.astype(np.float64) - e.astype(np.float64)).max(initial=0.0)
            err = max(err, float(diff) / max(1.0, float(np.abs(e).max(initial=0.0))))
        else:
            err = max(err, float(a.shape != e.shape or bool((a != e).any())))
    return err


# pause between two blocks: longer than OpenBLAS's idle threads poll (2**28 cycles, about 0.1 s), so that
# one engine's still-polling threads do not slow the other engine's block
SETTLE_S = 0.25


def time_blocks(fns, runs: int, blocks: int, settle_s: float = SETTLE_S):
    """Median seconds per call of each of ``fns``, called in alternating blocks of ``runs`` calls with a
    pause of ``settle_s`` before each block."""
    times = [[] for _ in fns]
    for _ in range(blocks):
        for fn, ts in zip(fns, times):
            time.sleep(settle_s)
            for _ in range(runs):
                t0 = time.perf_counter()
                fn()
                ts.append(time.perf_counter() - t0)
    return [statistics.median(ts) for ts in times]


def ort_session(path: str, threads: int):
    """An onnxruntime CPU session with ``threads`` intra-op threads and one inter-op thread."""
    import onnxruntime as ort
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])


# ---------------------------------------------------------------------------------------------- child process

def _max_rss_mib() -> float:
    """This process's peak RSS: Linux's VmHWM, which starts afresh at exec (``ru_maxrss`` carries the
    parent's peak over a fork and exec), else ``ru_maxrss``."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def _child_run(engine: str, model: str, feeds_path: str, runs: int, threads: int) -> dict:
    """Load ``model`` with ``engine`` in this fresh process, run it once, then ``runs`` more times."""
    t0 = time.perf_counter()
    import numpy as np
    if engine == "irc":
        import irc
        irc.set_num_threads(threads)
    else:
        import onnxruntime  # noqa: F401
    import_s = time.perf_counter() - t0
    with np.load(feeds_path) as npz:
        feeds = {k: npz[k] for k in npz.files}
    base_rss = _max_rss_mib()
    t0 = time.perf_counter()
    if engine == "irc":
        m = irc.load(model)
        run = lambda: m.run(feeds)  # noqa: E731
    else:
        s = ort_session(model, threads)
        feeds = {k: v for k, v in feeds.items() if k in {i.name for i in s.get_inputs()}}
        run = lambda: s.run(None, feeds)  # noqa: E731
    t1 = time.perf_counter()
    run()
    t2 = time.perf_counter()
    for _ in range(runs):
        run()
    return {"import_s": import_s, "load_s": t1 - t0, "first_s": t2 - t1, "load_first_s": t2 - t0,
            "base_rss_mib": base_rss, "peak_rss_mib": _max_rss_mib()}


def child_main(argv) -> None:
    """Entry of a child process: ENGINE MODEL FEEDS.npz RUNS THREADS; prints one JSON line."""
    engine, model, feeds_path, runs, threads = argv
    print(json.dumps(_child_run(engine, model, feeds_path, int(runs), int(threads))))


def in_new_process(engine: str, model: str, feeds_path: str, runs: int, threads: int) -> dict:
    """``_child_run`` in a new Python process (environment inherited, so the kernel cache is the same)."""
    cmd = [sys.executable, "-c", _CHILD_LAUNCH, os.path.abspath(__file__), engine, model, feeds_path,
           str(runs), str(threads)]
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        lines = (p.stderr or p.stdout).strip().splitlines()
        from ..errors import IrcError
        raise IrcError(f"bench: the {engine} process failed: {lines[-1] if lines else p.returncode}")
    return json.loads(p.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------------------------------- the bench

def bench_model(path: str, batch: int = 1, runs: int = 5, blocks: int = 4, threads=None,
                vs: str = "onnxruntime", fresh_process: bool = True, disable_passes=()) -> dict:
    """Benchmark the ONNX model at ``path`` (see the module docstring), compiled without the passes named in
    ``disable_passes``; returns a JSON-ready dict."""
    import numpy as np

    import irc
    from ..errors import IrcError
    from ..runtime import threads as policy
    if threads is not None:
        policy.set_num_threads(threads)
    n = policy.get_num_threads()
    t0 = time.perf_counter()
    m = irc.compile(path, disable_passes=tuple(disable_passes))
    compile_s = time.perf_counter() - t0
    feeds = random_feeds(m, batch)
    t0 = time.perf_counter()
    got = list(m.run(feeds).values())
    first_run_s = time.perf_counter() - t0
    r = {"model": os.path.basename(path), "batch": batch, "runs": runs, "blocks": blocks,
         "disabled_passes": list(disable_passes), "compile_s": compile_s, "first_run_s": first_run_s}
    fns = [lambda: m.run(feeds)]
    if vs:
        try:
            sess = ort_session(path, n)
            ort_feeds = {k: v for k, v in feeds.items() if k in {i.name for i in sess.get_inputs()}}
            ref = sess.run(None, ort_feeds)
        except Exception as e:  # onnxruntime's own exception types
            raise IrcError(f"bench: onnxruntime cannot run {path}: {str(e).splitlines()[0]}") from None
        r["max_error"] = max_error(got, ref)
        fns.append(lambda: sess.run(None, ort_feeds))
    medians = time_blocks(fns, runs, blocks)
    r["irc_ms"] = medians[0] * 1e3
    if vs:
        r["ort_ms"] = medians[1] * 1e3
        r["ratio"] = medians[0] / medians[1]
    r["threads"] = policy.describe()
    r["threads"]["onnxruntime"] = n if vs else None
    if fresh_process:
        with tempfile.TemporaryDirectory(prefix="irc-bench-") as tmp:
            art, fp = os.path.join(tmp, "model.bin"), os.path.join(tmp, "feeds.npz")
            m.save(art)
            np.savez(fp, **feeds)
            r["irc_process"] = in_new_process("irc", art, fp, runs, n)
            if vs:
                r["ort_process"] = in_new_process("ort", os.path.abspath(path), fp, runs, n)
    return r


def _fmt(x, spec: str) -> str:
    return "-" if x is None else format(x, spec)


def format_settings(r: dict) -> str:
    """The thread settings of a bench result, in two lines."""
    t = r["threads"]
    blas = "; ".join(f"{b['library']} {b['core_type']} x{b['threads']} ({b.get('file', '')})" for b in t["blas"])
    env = " ".join(f"{k}={v if v is not None else 'unset'}" for k, v in t["env"].items())
    ort = "" if t.get("onnxruntime") is None else f", onnxruntime intra-op {t['onnxruntime']}"
    return (f"threads:         irc {t['threads']} (numba layer {t['numba_layer']}){ort}\n"
            f"BLAS:            {blas or 'none loaded'}\nenvironment:     {env}\n")


def format_report(r: dict) -> str:
    """One bench result as the text ``irc bench`` prints."""
    lines = [f"model:           {r['model']} (batch {r['batch']}, {r['blocks']} blocks x {r['runs']} runs)"]
    if r["disabled_passes"]:
        lines.append(f"passes off:      {', '.join(r['disabled_passes'])}")
    lines.append(format_settings(r).rstrip("\n"))
    lat = f"latency:         irc {r['irc_ms']:.3f} ms"
    if "ort_ms" in r:
        lat += f", onnxruntime {r['ort_ms']:.3f} ms, ratio irc/onnxruntime {r['ratio']:.2f}"
        lines += [lat, f"max error:       {r['max_error']:.2e} (relative to max(1, max |onnxruntime|))"]
    else:
        lines.append(lat)
    lines.append(f"compile:         {r['compile_s']:.2f} s, first run (plan + kernels) {r['first_run_s']:.2f} s")
    for key, name in (("irc_process", "irc"), ("ort_process", "onnxruntime")):
        p = r.get(key)
        if p:
            lines.append(f"new process:     {name:<11} load + first result {p['load_first_s']:.3f} s "
                         f"(import {p['import_s']:.2f} s), peak RSS {p['peak_rss_mib']:.0f} MiB "
                         f"(before load {p['base_rss_mib']:.0f} MiB)")
    return "\n".join(lines) + "\n"


TABLE_HEADER = (f"{'model':<18} {'irc ms':>9} {'ort ms':>9} {'irc/ort':>7} {'max err':>8} {'compile s':>9} "
                f"{'load+1st s':>10} {'ort l+1st':>9} {'RSS MiB':>7} {'ort RSS':>7}")


def format_row(r: dict) -> str:
    """One bench result as a row under ``TABLE_HEADER``."""
    ip, op = r.get("irc_process") or {}, r.get("ort_process") or {}
    return (f"{r['model']:<18} {r['irc_ms']:9.2f} {_fmt(r.get('ort_ms'), '9.2f')} {_fmt(r.get('ratio'), '7.2f')} "
            f"{_fmt(r.get('max_error'), '8.1e')} {r['compile_s'] + r['first_run_s']:9.2f} "
            f"{_fmt(ip.get('load_first_s'), '10.3f')} {_fmt(op.get('load_first_s'), '9.3f')} "
            f"{_fmt(ip.get('peak_rss_mib'), '7.0f')} {_fmt(op.get('peak_rss_mib'), '7.0f')}")
