"""The ``irc`` command line: a thin layer over the Python API.

Exit status: 0 success; 1 an error irc reports, printed as ``irc: error: ...`` (the traceback only with
``--debug``); 2 a usage error (argparse's own).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
import zipfile
from typing import Dict, List, Optional, Sequence

import numpy as np

from .errors import InputError, IrcError

STAGES = ("import", "optimized", "lowered")


# -- helpers ------------------------------------------------------------------------------------------

def _load_any(path: str, opt_level: Optional[int] = None, disable_passes: Sequence[str] = ()):
    """A CompiledModel from an artifact (by its magic bytes) or an ONNX file (compiled here)."""
    from . import api
    from .runtime.artifact import is_artifact
    if is_artifact(path):
        if opt_level is not None or disable_passes:
            raise IrcError(f"{path} is a compiled artifact: -O and --disable-pass apply to .onnx models only")
        return api.load(path)
    return api.compile(path, opt_level=2 if opt_level is None else opt_level, disable_passes=disable_passes)


def _read_array_file(path: str, what: str):
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError, zipfile.BadZipFile) as e:
        raise InputError(f"{what}: cannot read {path!r}: {e}") from None


def _given_feeds(args) -> Dict[str, np.ndarray]:
    """Inputs from --inputs (npz), then --input NAME=FILE.npy."""
    feeds: Dict[str, np.ndarray] = {}
    if args.inputs:
        npz = _read_array_file(args.inputs, "--inputs")
        if not isinstance(npz, np.lib.npyio.NpzFile):
            raise InputError(f"--inputs: {args.inputs!r} is not an .npz file")
        with npz:
            feeds.update({k: npz[k] for k in npz.files})
    for spec in args.input:
        name, sep, path = spec.partition("=")
        if not sep or not name or not path:
            raise InputError(f"--input {spec!r}: expected NAME=FILE.npy")
        arr = _read_array_file(path, f"--input {name}")
        if not isinstance(arr, np.ndarray):
            raise InputError(f"--input {name}: {path!r} is not an .npy file")
        feeds[name] = arr
    return feeds


def _feeds(model, args) -> Dict[str, np.ndarray]:
    """The given inputs, then with --random random values for any still missing."""
    from .runtime.model import example_inputs
    feeds = _given_feeds(args)
    if args.random:
        rand = example_inputs(model.graph, random=True)
        feeds.update({k: v for k, v in rand.items() if k not in feeds})
    return feeds


def _write_npz(path: str, arrays: Dict[str, np.ndarray]) -> None:
    """An .npz with one entry per output name (any name, unlike numpy.savez's keyword arguments)."""
    try:
        with zipfile.ZipFile(path, "w") as z:
            for name, a in arrays.items():
                with z.open(name + ".npy", "w") as f:
                    np.lib.format.write_array(f, np.asarray(a), allow_pickle=False)
    except OSError as e:
        raise IrcError(f"cannot write {path!r}: {e.strerror or e}") from None


def _summary(a: np.ndarray) -> str:
    """min/max/mean and the first values of an array, on one line."""
    if a.size == 0:
        return "(empty)"
    flat = a.reshape(-1)
    head = ", ".join(str(x) for x in flat[:8]) + (", ..." if flat.size > 8 else "")
    if a.dtype.kind in "fiub":
        vals = flat.astype(np.float64)
        return f"min {vals.min():.6g}  max {vals.max():.6g}  mean {vals.mean():.6g}  [{head}]"
    return f"[{head}]"


def _dtype_name(a: np.ndarray) -> str:
    from .ir import from_numpy_dtype
    return from_numpy_dtype(a.dtype)


def _type_text(dtype: str, shape) -> str:
    from .ir import TensorType
    return str(TensorType(dtype, shape))


def _quantize_options(args) -> dict:
    """The quantization keywords of api.compile from --quantize, --calibration and their options."""
    if args.report and not args.quantize:
        raise IrcError("--report: the quantization report needs --quantize int8")
    calibration = None
    if args.calibration:
        npz = _read_array_file(args.calibration, "--calibration")
        if not isinstance(npz, np.lib.npyio.NpzFile):
            raise InputError(f"--calibration: {args.calibration!r} is not an .npz file")
        with npz:
            calibration = {k: npz[k] for k in npz.files}
    return dict(quantize=args.quantize, calibration=calibration, calibration_method=args.calibration_method,
                percentile=args.percentile, fallback_sqnr=args.fallback_sqnr,
                activation_type=args.activation_type)


# -- subcommands --------------------------------------------------------------------------------------

def cmd_compile(args) -> int:
    from . import api
    from .debug.progress import Progress
    quant = _quantize_options(args)
    # the IR and timings that --print-after*/--time-passes write to stderr would be torn by a progress line
    listing = args.print_after_all or args.print_after or args.time_passes
    progress = Progress(enabled=False if args.quiet or listing else None)
    t0 = time.perf_counter()
    try:
        model = api.compile(args.model, target=args.target, opt_level=args.opt_level,
                            disable_passes=args.disable_pass, verify_each=args.verify_each,
                            print_after=args.print_after, print_after_all=args.print_after_all,
                            time_passes=args.time_passes, on_pass=progress.on_pass, **quant)
    finally:
        progress.done()
    if args.report:
        print(model.quant_report)
    model.save(args.output)
    t1 = time.perf_counter()
    size, ops = os.path.getsize(args.output), sum(model.graph.op_counts().values())
    print(f"wrote {args.output} ({size} bytes, {ops} ops) in {t1 - t0:.2f} s")
    if args.no_warm:
        return 0
    try:
        progress.warm(api.load(args.output))  # the artifact as `irc run` will see it
    except IrcError as e:
        progress.done()
        print(f"irc: warning: kernel warm-up failed (the artifact is written): {e}", file=sys.stderr)
    else:
        print(f"kernel cache warmed in {time.perf_counter() - t1:.2f} s")
    return 0


def cmd_run(args) -> int:
    model = _load_any(args.model)
    outs = model.run(_feeds(model, args))
    if args.output:
        _write_npz(args.output, outs)
        print(f"wrote {args.output} ({', '.join(outs)})")
        return 0
    for name, a in outs.items():
        print(f"{name}: {_type_text(_dtype_name(a), a.shape)}  {_summary(a)}")
    return 0


def _lowered(model):
    """The graph specialized to example inputs (dims bound to 1), and a function giving each node's kernel."""
    from .backend.registry import lowering
    plan = model.plan()
    algos = {id(s.node): s.algo for s in plan.steps}

    def annotate(node):
        if node.op == "const":
            return {}
        extra = {"kernel": lowering(node.op).family}
        if algos.get(id(node)):
            extra["algo"] = algos[id(node)]
        return extra
    return plan.graph, annotate


def _dump_graph(args):
    """The graph of the stage asked for, and the annotation of each node (lowered stage only)."""
    from .frontend import import_onnx
    from .runtime.artifact import is_artifact
    if args.stage == "import":
        if is_artifact(args.model):
            raise IrcError(f"{args.model} is a compiled artifact: it holds the optimized graph, not the import")
        if args.opt_level is not None or args.disable_pass:
            raise IrcError("-O and --disable-pass do not apply to --stage import")
        return import_onnx(args.model), None
    model = _load_any(args.model, args.opt_level, args.disable_pass)
    return _lowered(model) if args.stage == "lowered" else (model.graph, None)


def cmd_dump(args) -> int:
    from .debug.dot import render, to_dot
    from .debug.text import write_text
    from .debug.to_onnx import save_onnx
    from .ir import print_graph
    if args.format == "onnx" and not args.output:
        raise IrcError("--format onnx writes a binary file: give it with -o FILE.onnx")
    graph, annotate = _dump_graph(args)
    if args.format == "onnx":
        save_onnx(graph, args.output)
        print(f"wrote {args.output}")
        return 0
    text = to_dot(graph, annotate) if args.format == "dot" else print_graph(graph, annotate=annotate)
    if not args.output:
        sys.stdout.write(text)
        return 0
    (render if args.format == "dot" else write_text)(text, args.output)
    print(f"wrote {args.output}")
    return 0


def cmd_verify(args) -> int:
    from .debug import verify
    from .runtime.artifact import is_artifact
    feeds = _given_feeds(args)
    opts = dict(feeds=feeds or None, opt_level=args.opt_level, disable_passes=args.disable_pass, tol=args.tol)
    artifact = is_artifact(args.model)
    if artifact and not args.bisect:
        raise IrcError(f"{args.model} is a compiled artifact: checking the passes needs the .onnx model "
                       f"(--bisect checks an artifact's kernels)")
    if args.bisect:
        report = verify.bisect_kernels(_load_any(args.model) if artifact else args.model, **opts)
        sys.stdout.write(verify.format_bisect(report))
        return 0 if report.first_bad is None else 1
    report = verify.verify_pipeline(args.model, **opts)
    sys.stdout.write(verify.format_pipeline(report))
    return 0 if report.ok else 1


def cmd_profile(args) -> int:
    import json
    from .debug.profile import format_profile, profile
    model = _load_any(args.model, args.opt_level, args.disable_pass)
    result = profile(model, _feeds(model, args), runs=args.runs)
    if args.json:
        print(json.dumps(result.as_dict(), indent=1))
    else:
        sys.stdout.write(format_profile(result))
    return 0


def cmd_bench(args) -> int:
    import json
    from .debug.bench import bench_model, format_report
    from .runtime.artifact import is_artifact
    if is_artifact(args.model):
        raise IrcError(f"{args.model} is a compiled artifact: bench compares against onnxruntime on the .onnx model")
    result = bench_model(args.model, batch=args.batch, runs=args.runs, blocks=args.blocks, threads=args.threads,
                         vs=args.vs, disable_passes=args.disable_pass)
    print(json.dumps(result, indent=1) if args.json else format_report(result), end="\n" if args.json else "")
    return 0


def cmd_info(args) -> int:
    from . import api
    model = api.load(args.model)
    art, m = model.artifact, model.artifact.manifest
    lines = [f"file:            {art.path} ({art.file_size} bytes)",
             f"format version:  {art.format_version}",
             f"irc version:     {m['irc_version']}",
             f"target:          {m['target']}",
             "options:         " + ", ".join(f"{k}={v}" for k, v in sorted(m["options"].items()))]
    for kind in ("inputs", "outputs"):
        lines.append(f"{kind}:")
        lines.extend(f"  {o['name']}: {_type_text(o['dtype'], o['shape'])}" for o in m[kind])
    hist = model.graph.op_counts()
    lines.append(f"nodes:           {sum(hist.values())} (+ {len(m['tensors'])} constants)")
    lines.extend(f"  {op:<20} {n}" for op, n in sorted(hist.items(), key=lambda kv: (-kv[1], kv[0])))
    lines.extend(_memory_lines(model, args.batch))
    lines.append(f"constant bytes:  {art.constant_bytes}")
    print("\n".join(lines))
    return 0


def _memory_lines(model, batch: int) -> list:
    """The activation memory of the model's plan with symbolic dims bound to ``batch``."""
    from .runtime.model import example_inputs
    mem = model.memory(example_inputs(model.graph, dim=batch))
    shapes = ", ".join(f"{k}={v}" for k, v in mem["input_shapes"].items())
    return [f"activation memory, for inputs {shapes}:",
            f"  peak:          {mem['peak_bytes']} bytes ({mem['arena_bytes']} in the arena, "
            f"{mem['unplanned_bytes']} at most in arrays kernels allocate each run)",
            f"  intermediates: {mem['intermediate_bytes']} bytes summed ({mem['placed_values']} values in "
            f"the arena, {mem['inplace_values']} of them in place)"]


# -- argument parsing ---------------------------------------------------------------------------------

def _opt_level(text: str) -> int:
    if text not in ("0", "1", "2", "3"):
        raise argparse.ArgumentTypeError(f"optimization level must be 0 to 3, got {text!r}")
    return int(text)


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return int(text)


DISABLE_HELP = "leave pass NAME out of the pipeline (repeatable)"
OPT_HELP = "optimization level 0..3 for an .onnx model (default 2)"


def _add_feed_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--input", action="append", default=[], metavar="NAME=FILE.npy",
                   help="one input from an .npy file (repeatable)")
    p.add_argument("--inputs", metavar="FILE.npz", help="inputs from an .npz file, one array per input name")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="irc", description="Ahead-of-time compiler for ONNX inference.")
    p.add_argument("--debug", action="store_true", help="show the traceback of errors")
    common = argparse.ArgumentParser(add_help=False)  # --debug after the subcommand too
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    c = sub.add_parser("compile", parents=[common], help="compile MODEL.onnx into an artifact")
    c.add_argument("model", metavar="MODEL.onnx")
    c.add_argument("-o", dest="output", required=True, metavar="MODEL.bin", help="the artifact to write")
    c.add_argument("--target", default="cpu", choices=["cpu", "cuda"], help="default cpu")
    c.add_argument("-O", dest="opt_level", type=_opt_level, default=2, metavar="N", help="0..3 (default 2)")
    c.add_argument("--quantize", choices=["int8"])
    c.add_argument("--calibration", metavar="CALIB.npz", help="one array per input, samples on axis 0")
    c.add_argument("--calibration-method", default="minmax", choices=["minmax", "percentile", "entropy"],
                   help="how activation ranges are chosen (default minmax)")
    c.add_argument("--percentile", type=float, default=99.999, metavar="P",
                   help="the percentile method's coverage in %% (default 99.999)")
    c.add_argument("--fallback-sqnr", type=float, default=20.0, metavar="DB",
                   help="layers whose int8 SQNR is below DB stay fp32 (default 20; -inf: none)")
    c.add_argument("--activation-type", default="u8", choices=["u8", "i8"], help="activation int8 type (default u8)")
    c.add_argument("--report", action="store_true", help="print the per-layer quantization report")
    c.add_argument("--disable-pass", action="append", default=[], metavar="NAME", help=DISABLE_HELP)
    pa = c.add_mutually_exclusive_group()
    pa.add_argument("--print-after-all", action="store_true", help="print the IR after every pass (stderr)")
    pa.add_argument("--print-after", action="append", default=[], metavar="NAME",
                    help="print the IR after pass NAME (stderr; repeatable)")
    c.add_argument("--time-passes", action="store_true", help="print a table of pass times (stderr)")
    c.add_argument("--verify-each", action="store_true", help="run the IR verifier after every pass")
    c.add_argument("--no-warm", action="store_true", help="skip compiling the kernels into the cache")
    c.add_argument("-q", "--quiet", action="store_true", help="no progress line on a terminal")
    c.set_defaults(fn=cmd_compile)

    r = sub.add_parser("run", parents=[common], help="run a model on inputs from files or random")
    r.add_argument("model", metavar="MODEL.bin")
    _add_feed_options(r)
    r.add_argument("--random", action="store_true", help="random values for inputs not given")
    r.add_argument("-o", dest="output", metavar="OUT.npz", help="write the outputs instead of printing them")
    r.set_defaults(fn=cmd_run)

    d = sub.add_parser("dump", parents=[common], help="print a model's IR")
    d.add_argument("model", metavar="MODEL.onnx|MODEL.bin")
    d.add_argument("--stage", choices=STAGES, default="optimized", help="default optimized")
    d.add_argument("--format", choices=["text", "dot", "onnx"], default="text",
                   help="IR text (default), Graphviz DOT, or an ONNX model (needs -o)")
    d.add_argument("--disable-pass", action="append", default=[], metavar="NAME", help=DISABLE_HELP)
    d.add_argument("-O", dest="opt_level", type=_opt_level, default=None, metavar="N", help=OPT_HELP)
    d.add_argument("-o", dest="output", metavar="FILE",
                   help="write to FILE (dot: .svg/.png/.pdf are rendered with Graphviz's dot)")
    d.set_defaults(fn=cmd_dump)

    v = sub.add_parser("verify", parents=[common], help="find the pass or kernel that changes a model's outputs")
    v.add_argument("model", metavar="MODEL.onnx", help="an .onnx model (or, with --bisect, an artifact)")
    _add_feed_options(v)
    v.add_argument("-O", dest="opt_level", type=_opt_level, default=2, metavar="N", help="0..3 (default 2)")
    v.add_argument("--disable-pass", action="append", default=[], metavar="NAME", help=DISABLE_HELP)
    v.add_argument("--tol", type=float, default=1e-3,
                   help="tolerance: max |ref - got| <= TOL * max(1, max |ref|) (default 1e-3)")
    v.add_argument("--bisect", action="store_true",
                   help="check each compiled kernel against its op's reference instead")
    v.set_defaults(fn=cmd_verify)

    f = sub.add_parser("profile", parents=[common], help="time every node of a model")
    f.add_argument("model", metavar="MODEL.bin|MODEL.onnx")
    _add_feed_options(f)
    f.add_argument("--runs", type=_positive, default=10, metavar="N", help="timed runs (default 10)")
    f.add_argument("--json", action="store_true", help="print the profile as JSON")
    f.add_argument("-O", dest="opt_level", type=_opt_level, default=None, metavar="N", help=OPT_HELP)
    f.add_argument("--disable-pass", action="append", default=[], metavar="NAME", help=DISABLE_HELP)
    f.set_defaults(fn=cmd_profile, random=True)

    b = sub.add_parser("bench", parents=[common], help="time a model beside onnxruntime in one process")
    b.add_argument("model", metavar="MODEL.onnx")
    b.add_argument("--vs", choices=["onnxruntime"], default="onnxruntime", help="the engine to compare with")
    b.add_argument("--batch", type=_positive, default=1, metavar="N", help="value of symbolic dims (default 1)")
    b.add_argument("--runs", type=_positive, default=5, metavar="N", help="calls per block (default 5)")
    b.add_argument("--blocks", type=_positive, default=4, metavar="N", help="blocks per engine (default 4)")
    b.add_argument("--threads", type=_positive, default=None, metavar="N",
                   help="threads of both engines (default: irc's policy, IRC_NUM_THREADS or all cores)")
    b.add_argument("--disable-pass", action="append", default=[], metavar="NAME", help=DISABLE_HELP)
    b.add_argument("--json", action="store_true", help="print the result as JSON")
    b.set_defaults(fn=cmd_bench)

    i = sub.add_parser("info", parents=[common], help="describe an artifact")
    i.add_argument("model", metavar="MODEL.bin")
    i.add_argument("--batch", type=_positive, default=1, metavar="N",
                   help="value of symbolic dims for the activation memory (default 1)")
    i.set_defaults(fn=cmd_info)
    return p


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.fn(args)
    except IrcError as e:
        if args.debug:
            raise
        print(f"irc: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
