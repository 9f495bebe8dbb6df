"""What each -O2 pass does to a model: op counts before and after, and latency with each pass off.

    python tools/pass_effects.py MODEL.onnx [MODEL.onnx ...] [--runs N] [--blocks N] [--markdown]

For each model: the number of ops at import and after the -O2 pipeline (constants not counted), then the
latency of the model compiled with all passes beside the model compiled with one pass disabled, for every
-O2 pass that changes the graph, in alternating blocks in one process on the same inputs (medians; the ratio
is off / on, so above 1 means the pass pays). Run with OpenBLAS's variables unset for figures worth quoting:
``env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python tools/pass_effects.py ...``.
"""
from __future__ import annotations

import argparse
import os

import irc
from irc.api import optimize
from irc.debug.bench import random_feeds, time_blocks
from irc.frontend.onnx import import_onnx
from irc.ir.printer import print_graph
from irc.passes import pipeline

# passes whose absence only changes the graph's tidiness, or that other passes need to run at all
KEPT = {"infer-shapes", "fold-constants", "simplify", "cse", "dce"}


def op_count(graph) -> int:
    """Nodes of ``graph`` that compute something (constants are data)."""
    return sum(n.op != "const" for n in graph.nodes)


def effects(path: str, runs: int, blocks: int) -> dict:
    """Op counts and {pass: (ms with it, ms without it)} for the model at ``path``."""
    imported = import_onnx(path)
    optimized = optimize(import_onnx(path))
    base = irc.compile(path)
    feeds = random_feeds(base, 1)
    base.run(feeds)
    result = {"model": os.path.basename(path).removesuffix(".onnx"), "ops_imported": op_count(imported),
              "ops_optimized": op_count(optimized), "latency": {}}
    for name in dict.fromkeys(pipeline(2)):
        if name in KEPT:
            continue
        variant = irc.compile(path, disable_passes=[name])
        if print_graph(variant.graph, locations=False) == print_graph(base.graph, locations=False):
            continue  # the pass changes nothing in this model
        variant.run(feeds)
        on, off = time_blocks([lambda: base.run(feeds), lambda: variant.run(feeds)], runs, blocks)
        result["latency"][name] = (on * 1e3, off * 1e3)
    return result


def format_markdown(r: dict) -> str:
    """One model's effects as Markdown lines."""
    lines = [f"**{r['model']}**: {r['ops_imported']} ops imported, {r['ops_optimized']} after -O2 "
             f"({100 * r['ops_optimized'] / r['ops_imported']:.0f}%)", "",
             "| pass off | ms, all passes | ms, pass off | off / on |", "|---|---:|---:|---:|"]
    for name, (on, off) in r["latency"].items():
        lines.append(f"| {name} | {on:.2f} | {off:.2f} | {off / on:.2f} |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="+")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--blocks", type=int, default=4)
    args = ap.parse_args(argv)
    for path in args.models:
        print(format_markdown(effects(path, args.runs, args.blocks)), flush=True)


if __name__ == "__main__":
    main()
