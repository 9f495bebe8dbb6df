"""The zoo on a GPU: irc's CUDA target against PyTorch eager on the same GPU, and irc's CPU target.

    python tools/bench_cuda.py [--models resnet18,bert,...] [--batch N] [--runs N] [--warmup N]
                               [--outdir DIR] [--no-cpu]

For each zoo model (tools/export_zoo.py: the torch definition, seeded, and its ONNX export in ``--outdir``)
on the same random inputs: irc compiled for ``cuda``, the torch module on ``cuda`` in eager mode, and irc
compiled for ``cpu``; each timed as the median of ``--runs`` calls after ``--warmup`` (the warm-up also
compiles irc's kernels, or loads them from the kernel cache). Every call goes from host arrays to host
arrays: irc's run copies the inputs in and the outputs out, and so does the torch call here
(``.to(device)`` ... ``.cpu()``), so the two GPU columns pay the same transfers. The table is Markdown;
the last column is the largest difference between irc cuda and torch over the outputs. Needs a CUDA GPU,
numba-cuda and torch (with CUDA); without a GPU it says so and exits with status 1.
"""
from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np

ZOO_MODELS = ["mlp", "senet", "convnext", "unet", "gpt", "bert", "vgg11", "mobilenetv2", "resnet18"]
COLUMNS = ("irc cuda ms", "torch eager cuda ms", "irc cpu ms", "irc cuda / torch", "max abs diff vs torch")


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """The command line, checked: known model names, positive counts."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=",".join(ZOO_MODELS), help="comma-separated zoo models (default: all)")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--outdir", default=None, help="where the ONNX exports go (default: a temporary folder)")
    ap.add_argument("--no-cpu", action="store_true", help="leave out irc's CPU column")
    args = ap.parse_args(argv)
    args.models = [m for m in args.models.split(",") if m]
    unknown = [m for m in args.models if m not in ZOO_MODELS]
    if unknown or not args.models:
        ap.error(f"unknown model(s) {unknown}; the zoo has {', '.join(ZOO_MODELS)}")
    for name in ("batch", "runs", "warmup"):
        if getattr(args, name) < (0 if name == "warmup" else 1):
            ap.error(f"--{name} must be {'non-negative' if name == 'warmup' else 'positive'}")
    return args


def median_ms(fn: Callable[[], object], runs: int, warmup: int) -> float:
    """The median wall time of ``fn()`` in milliseconds over ``runs`` calls, after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1e3


def _cell(value: Optional[float], fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def format_table(rows: List[Dict[str, object]]) -> str:
    """The Markdown table of ``rows`` (model, batch, irc_cuda_ms, torch_ms, irc_cpu_ms, max_diff; a
    value missing or None prints as -), the ratio computed where both GPU times are there."""
    lines = ["| model | batch | " + " | ".join(COLUMNS) + " |", "|---|---:|" + "---:|" * len(COLUMNS)]
    for r in rows:
        cuda_ms, torch_ms = r.get("irc_cuda_ms"), r.get("torch_ms")
        ratio = cuda_ms / torch_ms if cuda_ms is not None and torch_ms else None
        cells = [_cell(cuda_ms, ".3f"), _cell(torch_ms, ".3f"), _cell(r.get("irc_cpu_ms"), ".3f"),
                 _cell(ratio, ".2f"), _cell(r.get("max_diff"), ".1e")]
        lines.append(f"| {r['model']} | {r['batch']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _export_zoo():
    """tools/export_zoo.py as a module (it imports torch)."""
    path = Path(__file__).resolve().parent / "export_zoo.py"
    spec = importlib.util.spec_from_file_location("export_zoo", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def _torch_call(module, feeds: Dict[str, np.ndarray]):
    """``call() -> list of numpy outputs``: ``module`` on the GPU, host arrays in and out."""
    import torch
    device = torch.device("cuda")
    module = module.to(device)

    def call():
        with torch.no_grad():
            out = module(*(torch.from_numpy(v).to(device) for v in feeds.values()))
        outs = out if isinstance(out, (tuple, list)) else [out]
        return [o.cpu().numpy() for o in outs]
    return call


def bench_model(zoo, name: str, args) -> Dict[str, object]:
    """One row: the zoo model ``name`` timed on irc cuda, torch eager cuda and (unless --no-cpu) irc cpu."""
    import irc
    path = zoo.export(name, Path(args.outdir), False)
    feeds = zoo.sample_inputs(name, args.batch, seed=0)
    cuda_model = irc.compile(path, target="cuda")
    torch_call = _torch_call(zoo.build(name), feeds)
    row = {"model": name, "batch": args.batch,
           "irc_cuda_ms": median_ms(lambda: cuda_model.run(feeds), args.runs, args.warmup),
           "torch_ms": median_ms(torch_call, args.runs, args.warmup)}
    got, ref = list(cuda_model.run(feeds).values()), torch_call()
    row["max_diff"] = max(float(np.max(np.abs(a.astype(np.float64) - b))) for a, b in zip(got, ref))
    if not args.no_cpu:
        cpu_model = irc.compile(path, target="cpu")
        row["irc_cpu_ms"] = median_ms(lambda: cpu_model.run(feeds), args.runs, args.warmup)
    return row


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    from irc.backend.cuda import device_status
    why = device_status()
    if why is not None:
        print(f"bench_cuda: {why}", file=sys.stderr)
        return 1
    zoo = _export_zoo()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        args.outdir = args.outdir or tmp
        for name in args.models:
            try:
                rows.append(bench_model(zoo, name, args))
            except Exception as e:  # the table goes on past a model that fails, saying why
                print(f"{name}: FAILED: {type(e).__name__}: {str(e)[:200]}", file=sys.stderr)
                rows.append({"model": name, "batch": args.batch})
    sys.stdout.write(format_table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
