"""ResNet-18 in int8: irc against onnxruntime, fp32 and int8, side by side in one process.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python tools/bench_int8.py [--samples 16] [--eval 32]
                                                                            [--runs 10] [--blocks 5] [--out DIR]

Exports the zoo's ResNet-18 (tools/export_zoo.py: seeded random weights, 224x224, batch 1) and quantizes it
twice from the same calibration set, ``--samples`` standard-normal images (random inputs: the model is not
trained, so there is no data set to draw from): with irc (``irc.compile(path, quantize="int8",
calibration=...)``) and with onnxruntime's ``quantize_static`` (QDQ, per-channel int8 weights, u8
activations, after onnxruntime's own pre-processing), the QDQ model then run by onnxruntime. The four runs
(irc fp32, irc int8, onnxruntime fp32, onnxruntime int8) are timed in alternating blocks on the same batch-1
input with the same thread count (irc.debug.bench's ``time_blocks``; medians). On ``--eval`` more random
images (another seed), each int8 run is compared with its own engine's fp32 run: top-1 agreement (same
argmax) and the SQNR of the logits, ``10 log10(sum(ref^2) / sum((ref - int8)^2))`` over all of them, in dB.
Prints a Markdown table and which int8 instruction irc's kernels use.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from dataclasses import dataclass
from typing import Dict, List, Optional

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _load(name: str, path: str):
    """The Python file at ``path`` (a tool or an example, not part of the irc package) as a module."""
    import importlib.util
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module      # dataclasses look their module up while the file runs
    spec.loader.exec_module(module)
    return module


@dataclass
class Row:
    """One timed run: its name, median latency, and (int8 runs) top-1 agreement and SQNR against fp32."""
    name: str
    ms: float
    top1: Optional[float] = None
    sqnr_db: Optional[float] = None


def sqnr_db(ref: np.ndarray, got: np.ndarray) -> float:
    """``10 log10(sum(ref^2) / sum((ref - got)^2))`` in dB (infinite when the two are equal)."""
    ref, got = ref.astype(np.float64), got.astype(np.float64)
    noise = float(np.sum((ref - got) ** 2))
    return float("inf") if noise == 0 else 10.0 * float(np.log10(np.sum(ref ** 2) / noise))


def _cell(x: Optional[float], spec: str) -> str:
    return "-" if x is None else format(x, spec)


def format_table(rows: List[Row], reference: str = "irc int8") -> str:
    """The runs as a Markdown table; the column ``reference / run`` divides the reference run's latency by
    each run's (below 1: the reference is faster)."""
    base = next(r.ms for r in rows if r.name == reference)
    lines = [f"| run | median ms | {reference} / run | top-1 agreement with fp32 | logits SQNR vs fp32 dB |",
             "|---|---:|---:|---:|---:|"]
    for r in rows:
        top1 = None if r.top1 is None else 100 * r.top1
        lines.append(f"| {r.name} | {r.ms:.2f} | {base / r.ms:.2f} | {_cell(top1, '.1f')}"
                     f"{'' if top1 is None else '%'} | {_cell(r.sqnr_db, '.1f')} |")
    return "\n".join(lines)


def int8_instruction() -> str:
    """The int8 dot-product instruction irc's int8 GEMM uses on this host (kernels/cpu/quant.py)."""
    from irc.kernels.cpu import quant
    if quant.VNNI:
        return "AVX-512 VNNI vpdpbusd (qgemm_vnni_kernel)"
    return "vpmaddwd multiply-add (qgemm_kernel, no AVX-512 VNNI on this host)"


def ort_int8_model(fp32_path: str, calibration: List[Dict[str, np.ndarray]], outdir: str) -> str:
    """onnxruntime's QDQ int8 model of ``fp32_path``: its pre-processing (shape inference, graph
    optimization: BatchNormalization folded into the convolutions), then quantize_static (the digits
    example's ``ort_quantize``)."""
    from onnxruntime.quantization.shape_inference import quant_pre_process
    example = _load("quantize_digits", os.path.join(ROOT, "examples", "quantize_digits.py"))
    pre = os.path.join(outdir, "resnet18.pre.onnx")
    quant_pre_process(fp32_path, pre, skip_symbolic_shape=True)
    return example.ort_quantize(pre, os.path.join(outdir, "resnet18.qdq.onnx"), calibration)


def bench(outdir: str, samples: int = 16, evaluate: int = 32, runs: int = 10, blocks: int = 5):
    """Export, quantize, time and compare (see the module docstring); returns the four runs and the number
    of distinct classes irc's fp32 run predicts on the evaluation images (random weights and inputs give
    few, which makes top-1 agreement a weak check beside the SQNR)."""
    import irc
    from irc.debug.bench import ort_session, time_blocks
    from irc.runtime.threads import get_num_threads
    zoo = _load("export_zoo", os.path.join(ROOT, "tools", "export_zoo.py"))
    fp32_path = zoo.export("resnet18", outdir)
    calib = zoo.sample_inputs("resnet18", batch=samples, seed=2)["input"]
    calibration = [{"input": calib[i:i + 1]} for i in range(samples)]
    threads = get_num_threads()
    runs_by_name = {
        "irc fp32": irc.compile(fp32_path).run,
        "irc int8": irc.compile(fp32_path, quantize="int8", calibration=calibration).run,
        "onnxruntime fp32": _ort_run(ort_session(fp32_path, threads)),
        "onnxruntime int8": _ort_run(ort_session(ort_int8_model(fp32_path, calibration, outdir), threads)),
    }
    timed = {"input": zoo.sample_inputs("resnet18", batch=1, seed=0)["input"]}
    fns = [lambda run=run: run(timed) for run in runs_by_name.values()]
    for fn in fns:
        fn()
    medians = time_blocks(fns, runs, blocks)
    held_out = {"input": zoo.sample_inputs("resnet18", batch=evaluate, seed=3)["input"]}
    logits = {name: run(held_out)["logits"] for name, run in runs_by_name.items()}
    rows = []
    for name, ms in zip(runs_by_name, medians):
        row = Row(name, 1e3 * ms)
        if name.endswith("int8"):
            ref = logits[name.replace("int8", "fp32")]
            row.top1 = float((logits[name].argmax(axis=1) == ref.argmax(axis=1)).mean())
            row.sqnr_db = sqnr_db(ref, logits[name])
        rows.append(row)
    return rows, len(np.unique(logits["irc fp32"].argmax(axis=1)))


def _ort_run(session):
    """An onnxruntime session as a feeds -> {output name: array} function, like irc's ``run``."""
    names = [o.name for o in session.get_outputs()]
    return lambda feeds: dict(zip(names, session.run(None, feeds)))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=16, help="calibration images (standard normal)")
    ap.add_argument("--eval", type=int, default=32, help="random images for top-1 agreement and SQNR")
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--blocks", type=int, default=5)
    ap.add_argument("--out", default=None, help="folder for the .onnx files (default: a temporary one)")
    args = ap.parse_args(argv)
    from irc.runtime.threads import get_num_threads
    outdir = args.out or tempfile.mkdtemp(prefix="bench_int8_")
    rows, classes = bench(outdir, args.samples, args.eval, args.runs, args.blocks)
    print(f"ResNet-18, batch 1, {get_num_threads()} threads for both engines; calibration: {args.samples} "
          f"standard-normal images; agreement and SQNR on {args.eval} more ({classes} distinct fp32 classes "
          f"among them); {args.blocks} blocks x {args.runs} runs, medians\n")
    print(format_table(rows))
    print(f"\nirc int8 / irc fp32 latency: {rows[1].ms / rows[0].ms:.2f}; irc int8 / onnxruntime int8: "
          f"{rows[1].ms / rows[3].ms:.2f}")
    print(f"irc's int8 kernels: {int8_instruction()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
