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

from .errors import InputError, IrcError, UnsupportedError

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


def _feeds(model, args) -> Dict[str, np.ndarray]:
    """Inputs from --inputs (npz), then --input NAME=FILE.npy, then --random for any still missing."""
    from .runtime.model import example_inputs
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


# -- subcommands --------------------------------------------------------------------------------------

def cmd_compile(args) -> int:
    from . import api
    if args.quantize or args.calibration:
        raise UnsupportedError("--quantize/--calibration: int8 quantization is not supported yet")
    t0 = time.perf_counter()
    model = api.compile(args.model, target=args.target, opt_level=args.opt_level,
                        disable_passes=args.disable_pass, verify_each=args.verify_each,
                        print_after=args.print_after, print_after_all=args.print_after_all,
                        time_passes=args.time_passes)
    model.save(args.output)
    t1 = time.perf_counter()
    size, ops = os.path.getsize(args.output), sum(model.graph.op_counts().values())
    print(f"wrote {args.output} ({size} bytes, {ops} ops) in {t1 - t0:.2f} s")
    if args.no_warm:
        return 0
    try:
        api.load(args.output).warm()  # the artifact as `irc run` will see it
    except IrcError as e:
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


def _lowered_text(model) -> str:
    """The graph specialized to example inputs (dims bound to 1), each node showing its kernel."""
    from .backend.registry import lowering
    from .ir import print_graph
    plan = model.plan()
    algos = {id(s.node): s.algo for s in plan.steps}

    def annotate(node):
        if node.op == "const":
            return {}
        extra = {"kernel": lowering(node.op).family}
        if algos.get(id(node)):
            extra["algo"] = algos[id(node)]
        return extra
    return print_graph(plan.graph, annotate=annotate)


def cmd_dump(args) -> int:
    from .frontend import import_onnx
    from .ir import print_graph
    from .runtime.artifact import is_artifact
    if args.format != "text":
        raise UnsupportedError(f"--format {args.format} is not supported yet (use --format text)")
    if args.stage == "import":
        if is_artifact(args.model):
            raise IrcError(f"{args.model} is a compiled artifact: it holds the optimized graph, not the import")
        if args.opt_level is not None or args.disable_pass:
            raise IrcError("-O and --disable-pass do not apply to --stage import")
        sys.stdout.write(print_graph(import_onnx(args.model)))
        return 0
    model = _load_any(args.model, args.opt_level, args.disable_pass)
    sys.stdout.write(_lowered_text(model) if args.stage == "lowered" else print_graph(model.graph))
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
    lines.append(f"constant bytes:  {art.constant_bytes}")
    print("\n".join(lines))
    return 0


# -- argument parsing ---------------------------------------------------------------------------------

def _opt_level(text: str) -> int:
    if text not in ("0", "1", "2", "3"):
        raise argparse.ArgumentTypeError(f"optimization level must be 0 to 3, got {text!r}")
    return int(text)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="irc", description="Ahead-of-time compiler for ONNX inference.")
    p.add_argument("--debug", action="store_true", help="show the traceback of errors")
    common = argparse.ArgumentParser(add_help=False)  # --debug after the subcommand too
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    c = sub.add_parser("compile", parents=[common], help="compile MODEL.onnx into an artifact")
    c.add_argument("model", metavar="MODEL.onnx")
    c.add_argument("-o", dest="output", required=True, metavar="MODEL.bin")
    c.add_argument("--target", default="cpu", choices=["cpu", "cuda"])
    c.add_argument("-O", dest="opt_level", type=_opt_level, default=2, metavar="N", help="0..3 (default 2)")
    c.add_argument("--quantize", choices=["int8"])
    c.add_argument("--calibration", metavar="CALIB.npz")
    c.add_argument("--disable-pass", action="append", default=[], metavar="NAME")
    pa = c.add_mutually_exclusive_group()
    pa.add_argument("--print-after-all", action="store_true")
    pa.add_argument("--print-after", action="append", default=[], metavar="NAME")
    c.add_argument("--time-passes", action="store_true")
    c.add_argument("--verify-each", action="store_true")
    c.add_argument("--no-warm", action="store_true", help="skip compiling the kernels into the cache")
    c.set_defaults(fn=cmd_compile)

    r = sub.add_parser("run", parents=[common], help="run a model on inputs from files or random")
    r.add_argument("model", metavar="MODEL.bin")
    r.add_argument("--input", action="append", default=[], metavar="NAME=FILE.npy")
    r.add_argument("--inputs", metavar="FILE.npz")
    r.add_argument("--random", action="store_true", help="random values for inputs not given")
    r.add_argument("-o", dest="output", metavar="OUT.npz")
    r.set_defaults(fn=cmd_run)

    d = sub.add_parser("dump", parents=[common], help="print a model's IR")
    d.add_argument("model", metavar="MODEL.onnx|MODEL.bin")
    d.add_argument("--stage", choices=STAGES, default="optimized")
    d.add_argument("--format", choices=["text", "dot", "onnx"], default="text")
    d.add_argument("--disable-pass", action="append", default=[], metavar="NAME")
    d.add_argument("-O", dest="opt_level", type=_opt_level, default=None, metavar="N")
    d.set_defaults(fn=cmd_dump)

    i = sub.add_parser("info", parents=[common], help="describe an artifact")
    i.add_argument("model", metavar="MODEL.bin")
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
