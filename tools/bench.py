"""``irc bench`` over many models, as one table (the implementation is irc.debug.bench's).

    python tools/bench.py MODEL.onnx [MODEL.onnx ...] [--batch N] [--runs N] [--blocks N] [--threads N]
                          [--disable-pass NAME]... [--markdown] [--json OUT.json] [--kernels N]

Each model: irc and onnxruntime in one process on the same inputs, alternating blocks, medians and the ratio;
max error; compile time; load + first result of the saved artifact in a new process (warm kernel cache); peak
RSS of that process beside onnxruntime's. ``--kernels N`` then prints, per model, its N slowest conv/gemm/matmul
nodes with their GFLOP/s and share of the SGEMM peak measured in the same process (``irc profile``). Run with OpenBLAS's variables unset for figures worth quoting:
``env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python tools/bench.py ...``.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import irc
from irc.debug.bench import TABLE_HEADER, bench_model, format_row, format_settings, random_feeds
from irc.debug.profile import profile

MARKDOWN_HEADER = ("| model | irc ms | onnxruntime ms | irc/ort | max error | compile s | load+first s irc / ort "
                   "| peak RSS MiB irc / ort |\n|---|---:|---:|---:|---:|---:|---:|---:|")


def markdown_row(r: dict) -> str:
    """One result as a row of the table in docs/benchmarks.md."""
    ip, op = r["irc_process"], r["ort_process"]
    return (f"| {r['model'].removesuffix('.onnx')} | {r['irc_ms']:.2f} | {r['ort_ms']:.2f} | {r['ratio']:.2f} "
            f"| {r['max_error']:.1e} | {r['compile_s'] + r['first_run_s']:.1f} "
            f"| {ip['load_first_s']:.2f} / {op['load_first_s']:.3f} "
            f"| {ip['peak_rss_mib']:.0f} / {op['peak_rss_mib']:.0f} |")


def kernel_rows(path: str, count: int, batch: int, disable_passes) -> str:
    """Markdown rows of the ``count`` slowest nodes of the model at ``path`` whose flops are counted."""
    m = irc.compile(path, disable_passes=tuple(disable_passes))
    p = profile(m, random_feeds(m, batch), runs=10)
    name = os.path.basename(path).removesuffix(".onnx")
    rows = [r for r in p.nodes if r.gflops is not None][:count]
    return "\n".join(f"| {name} | {r.op} ({r.algo}) | {r.shape} | {r.ms:.3f} | {r.gflops:.0f} | {r.peak_percent:.0f}% "
                     f"| {p.sgemm_peak_gflops:.0f} |" for r in rows)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="+")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--blocks", type=int, default=4)
    ap.add_argument("--threads", type=int, default=None, help="default: irc's policy (IRC_NUM_THREADS or all cores)")
    ap.add_argument("--disable-pass", action="append", default=[], metavar="NAME",
                    help="compile without pass NAME (repeatable)")
    ap.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    ap.add_argument("--json", metavar="OUT.json", help="also write every result to OUT.json")
    ap.add_argument("--kernels", type=int, default=0, metavar="N",
                    help="then each model's N slowest conv/gemm/matmul nodes against the SGEMM peak")
    args = ap.parse_args(argv)
    results = []
    print(MARKDOWN_HEADER if args.markdown else TABLE_HEADER)
    for path in args.models:
        try:
            r = bench_model(path, args.batch, args.runs, args.blocks, args.threads, disable_passes=args.disable_pass)
        except Exception as e:  # a benchmark table goes on past a model that fails
            print(f"{os.path.basename(path):<18} FAILED: {type(e).__name__}: {str(e)[:150]}")
            continue
        results.append(r)
        print(markdown_row(r) if args.markdown else format_row(r))
        sys.stdout.flush()
    if results:  # after the runs, when every BLAS library the models use is loaded
        print()
        sys.stdout.write(format_settings(results[-1]))
        if args.disable_pass:
            print(f"passes off:      {', '.join(args.disable_pass)}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    if args.kernels:
        print("\n| model | node (algorithm) | shape | ms | GFLOP/s | of SGEMM peak | SGEMM peak GFLOP/s |\n"
              "|---|---|---|---:|---:|---:|---:|")
        for path in args.models:
            print(kernel_rows(path, args.kernels, args.batch, args.disable_pass), flush=True)


if __name__ == "__main__":
    main()
