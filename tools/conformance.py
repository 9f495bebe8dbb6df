"""Run the onnx package's node conformance cases through irc (or onnxruntime) and report.

    python3 tools/conformance.py                      # irc: pass count overall and per op
    python3 tools/conformance.py --engine onnxruntime # the same cases on onnxruntime
    python3 tools/conformance.py --write-xfail --docs # rewrite tests/conformance_xfail.txt and docs/ops.md
    python3 tools/conformance.py -k reduce -v         # only cases whose name contains "reduce", list failures

Each case (``onnx.backend.test.case.node.collect_testcases``) is compiled with ``irc.compile`` (import,
passes, kernels, executor) and its data sets compared as onnx's runner compares them
(``irc.backend.onnx_backend.compare_outputs``). A case that takes longer than ``--timeout`` seconds fails
with the reason "timeout". ``--jobs N`` runs the cases in N worker processes.

The expected-failure file holds one ``case_name: reason`` per line; the reason is the first line of the
error (an unsupported op, an unsupported element type, a mismatch and its size ...). tests/test_conformance.py
reads it and marks those cases as strict expected failures.
"""
from __future__ import annotations

import argparse
import collections
import contextlib
import dataclasses
import re
import signal
import sys
import time
import warnings
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
import onnx

ROOT = Path(__file__).resolve().parent.parent
XFAIL_FILE = ROOT / "tests" / "conformance_xfail.txt"
OPS_DOC = ROOT / "docs" / "ops.md"
ENGINES = ("irc", "onnxruntime")
_REASON_LEN = 160


# ------------------------------------------------------------------------------------------------ the cases

def load_cases() -> Dict[str, object]:
    """Every node test case of the installed onnx package, by name."""
    from onnx.backend.test.case.node import collect_testcases
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the case generators overflow casts on purpose
        with np.errstate(all="ignore"):
            cases = collect_testcases(None)
    return {c.name: c for c in sorted(cases, key=lambda c: c.name)}


def case_op(case, cases: Dict[str, object]) -> str:
    """The ONNX op a case tests: its node's op type; for a function expanded into several nodes, the op of
    the unexpanded case of the same name; otherwise the op type whose name the case name starts with."""
    nodes = case.model.graph.node
    if len(nodes) == 1:
        return nodes[0].op_type
    base = re.sub(r"_expanded.*$", "", case.name)
    if base != case.name and base in cases and len(cases[base].model.graph.node) == 1:
        return cases[base].model.graph.node[0].op_type
    flat = case.name[len("test_"):].replace("_", "").lower()
    types = sorted({n.op_type for n in nodes}, key=len, reverse=True)
    return next((t for t in types if flat.startswith(t.lower())), nodes[-1].op_type)


def load_xfail(path: Path = XFAIL_FILE) -> Dict[str, str]:
    """The expected failures: case name -> reason (``name: reason`` lines; ``#`` starts a comment)."""
    out = {}
    if not path.exists():
        return out
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            name, _, reason = line.partition(":")
            out[name.strip()] = reason.strip() or "expected to fail"
    return out


# ------------------------------------------------------------------------------------------- running one

class CaseTimeout(Exception):
    """A case ran past the per-case time guard."""


@contextlib.contextmanager
def time_guard(seconds: float):
    """Raise CaseTimeout in the main thread after ``seconds`` (no guard where SIGALRM is unavailable)."""
    if seconds <= 0 or not hasattr(signal, "SIGALRM"):
        yield
        return

    def _fire(signum, frame):
        raise CaseTimeout(f"timeout: over {seconds:g} s")

    old = signal.signal(signal.SIGALRM, _fire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def reason_of(exc: BaseException) -> str:
    """One line saying why a case failed, from its error.

    irc's report of unsupported nodes ("N unsupported node(s):" then one line per op) becomes
    "unsupported op OP (opset V): why"; any other error gives its first line; an error that is not an
    IrcError or a comparison failure is prefixed with its class, since irc should not raise it.
    """
    from irc import IrcError
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()] or [type(exc).__name__]
    first = lines[0]
    if re.match(r"\d+ unsupported node\(s\):$", first) and len(lines) > 1:
        m = re.match(r"(\S+) \(domain '[^']*', opset (\S+)\): (.*)$", lines[1])
        if m:
            why = _first_node_reason(m.group(3))
            first = f"unsupported op {m.group(1)} (opset {m.group(2)})" + (f": {why}" if why else "")
    if not isinstance(exc, (IrcError, AssertionError, CaseTimeout)):
        first = f"{type(exc).__name__}: {first}"
    first = re.sub(r"\s+", " ", first)
    return first if len(first) <= _REASON_LEN else first[:_REASON_LEN - 3] + "..."


def _first_node_reason(nodes: str) -> str:
    """From "LABEL (reason), LABEL (reason) ...", the first node's reason ('' when it gives none)."""
    rest = re.sub(r"^('(?:[^'\\]|\\.)*'|\(output '[^']*'\)|\(unnamed\))", "", nodes)
    if not rest.startswith(" ("):
        return ""
    depth = 0
    for i, ch in enumerate(rest[1:], 1):
        depth += {"(": 1, ")": -1}.get(ch, 0)
        if depth == 0:
            return rest[2:i]
    return rest[2:]


@dataclasses.dataclass
class Result:
    name: str
    op: str
    opset: int
    passed: bool
    reason: str = ""
    seconds: float = 0.0
    dtypes: tuple = ()      # element types of the case's inputs and outputs
    ir_ops: tuple = ()      # IR ops a one-node case's outputs import to (irc, passing cases)


def _onnxruntime_runner(model):
    import onnxruntime as ort
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.log_severity_level = 3
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    names = [i.name for i in sess.get_inputs()]
    return lambda inputs: sess.run(None, dict(zip(names, inputs)))


def _irc_runner(model):
    from irc.backend.onnx_backend import IrcBackend
    return IrcBackend.prepare(model).run


def _dtype_names(case) -> tuple:
    """The element types (IR names where irc has one) of a case's tensor inputs and outputs."""
    from irc.backend.onnx_backend import as_array
    from irc import IrcError
    from irc.ir.types import from_numpy_dtype
    seen = set()
    for inputs, outputs in case.data_sets:
        for a in list(inputs) + list(outputs):
            if not isinstance(a, (list, tuple)):
                dt = np.asarray(as_array(a)).dtype
                try:
                    seen.add(from_numpy_dtype(dt))
                except IrcError:
                    seen.add(str(dt))
    return tuple(sorted(seen))


def _ir_ops(model) -> tuple:
    """The IR ops (constants aside) a one-node model imports to: what its ONNX op maps onto."""
    from irc.frontend import import_onnx
    if len(model.graph.node) != 1:
        return ()
    try:
        graph = import_onnx(model)
    except Exception:
        return ()
    return tuple(sorted({n.op for n in graph.nodes if n.op != "const"}))


def check_case(case, engine: str = "irc") -> None:
    """Compile ``case`` on ``engine``, run each data set and compare; raises on the first failure."""
    from irc.backend.onnx_backend import as_array, compare_outputs
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        run = (_irc_runner if engine == "irc" else _onnxruntime_runner)(case.model)
        for inputs, outputs in case.data_sets:
            got = run([as_array(a) for a in inputs])
            compare_outputs([as_array(a) for a in outputs], got, case.rtol, case.atol)


def run_case(case, engine: str = "irc", timeout: float = 60.0, op: str = "") -> Result:
    """Run ``case`` (``check_case``) under the time guard and record the outcome; never raises."""
    opset = max((o.version for o in case.model.opset_import if o.domain in ("", "ai.onnx")), default=0)
    res = Result(case.name, op or case.model.graph.node[0].op_type, opset, False, dtypes=_dtype_names(case))
    start = time.perf_counter()
    try:
        with time_guard(timeout):
            check_case(case, engine)
        res.passed = True
    except Exception as e:  # every failure is recorded with its reason
        res.reason = reason_of(e)
    res.seconds = time.perf_counter() - start
    if res.passed and engine == "irc":
        res.ir_ops = _ir_ops(case.model)
    return res


# ----------------------------------------------------------------------------------------------- running all

_WORKER: dict = {}


def _work(args):
    """One case in a worker (or in-process): the cases are loaded once per process."""
    name, engine, timeout = args
    if "cases" not in _WORKER:
        _WORKER["cases"] = load_cases()
    cases = _WORKER["cases"]
    return run_case(cases[name], engine, timeout, case_op(cases[name], cases))


def run_all(cases: Dict[str, object], names: List[str], engine: str, timeout: float, jobs: int,
            progress=None) -> List[Result]:
    """Run ``names``, in-process with ``jobs`` 1, else in a pool of ``jobs`` forked worker processes;
    ``progress(result)`` is called as each case finishes. Results come back sorted by name."""
    _WORKER["cases"] = cases  # (forked workers inherit it)
    work = [(n, engine, timeout) for n in names]
    with contextlib.ExitStack() as stack:
        if jobs <= 1:
            it = map(_work, work)
        else:
            import multiprocessing as mp
            pool = stack.enter_context(mp.get_context("fork").Pool(jobs, maxtasksperchild=200))
            it = pool.imap_unordered(_work, work, chunksize=4)
        results = []
        for r in it:
            results.append(r)
            if progress:
                progress(r)
    return sorted(results, key=lambda r: r.name)


# ------------------------------------------------------------------------------------------------- reports

def summary(results: List[Result], engine: str) -> str:
    """The pass count overall and per op, then the most common failure reasons."""
    by_op: Dict[str, List[Result]] = collections.defaultdict(list)
    for r in results:
        by_op[r.op].append(r)
    passed = sum(r.passed for r in results)
    lines = [f"{engine}: {passed}/{len(results)} cases pass "
             f"({sum(r.seconds for r in results):.0f} s in cases)", "", "per op (passed/total):"]
    for op in sorted(by_op):
        rs = by_op[op]
        lines.append(f"  {op:32s} {sum(r.passed for r in rs):4d}/{len(rs)}")
    reasons = collections.Counter(_reason_group(r.reason) for r in results if not r.passed)
    lines += ["", "failure reasons (grouped):"]
    lines += [f"  {n:5d}  {why}" for why, n in reasons.most_common(40)]
    return "\n".join(lines)


def _reason_group(reason: str) -> str:
    """A reason with node names, numbers and quoted values removed, to group similar failures."""
    reason = re.sub(r"'[^']*'", "'...'", reason)
    return re.sub(r"\d+(\.\d+)?(e-?\d+)?", "N", reason)


def write_xfail(results: List[Result], path: Path = XFAIL_FILE) -> None:
    """Write the failing cases with their reasons, sorted by name."""
    header = ["# Node conformance cases (onnx.backend.test.case.node) that irc is expected to fail, one",
              "# 'case_name: reason' per line. Written by `python3 tools/conformance.py --write-xfail`;",
              "# tests/test_conformance.py marks each as a strict expected failure."]
    body = [f"{r.name}: {r.reason}" for r in results if not r.passed]
    path.write_text("\n".join(header + body) + "\n")


def ops_table(results: List[Result]) -> str:
    """docs/ops.md: per IR op, the ONNX ops that import to it, opsets and dtypes seen passing, kernel family."""
    from irc.backend.registry import CPU_LOWERINGS, lowering
    lowering("const")  # loads the kernel table
    rows: Dict[str, dict] = {}
    for r in results:
        if not r.passed:
            continue
        for ir_op in r.ir_ops:
            row = rows.setdefault(ir_op, {"onnx": set(), "opsets": set(), "dtypes": set()})
            row["onnx"].add(r.op)
            row["opsets"].add(r.opset)
            row["dtypes"].update(r.dtypes)
    lines = ["# Supported ops", "",
             "Generated by `python3 tools/conformance.py --docs` from a run of the onnx package's node "
             "conformance cases", f"(onnx {onnx.__version__}). Per IR op: the ONNX ops whose passing one-node cases "
             "import to IR that uses it", "(an ONNX op may become several IR ops), the opsets and element types of "
             "those cases, and the CPU kernel", "family that runs the op (`numpy movement`: a lowering without numba, "
             "run as numpy).",
             "", f"Cases passing: {sum(r.passed for r in results)} of {len(results)}.", "",
             "| IR op | ONNX ops | opsets | dtypes | kernel |", "|---|---|---|---|---|"]
    for ir_op in sorted(rows):
        row = rows[ir_op]
        low = CPU_LOWERINGS.get(ir_op)
        family = "-" if low is None else ("numpy movement" if not low.numba else low.family)
        lines.append(f"| `{ir_op}` | {', '.join(sorted(row['onnx']))} | {', '.join(map(str, sorted(row['opsets'])))} | "
                     f"{', '.join(sorted(row['dtypes']))} | {family} |")
    return "\n".join(lines) + "\n"


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--engine", choices=ENGINES, default="irc")
    ap.add_argument("-k", dest="filter", default="", help="run only cases whose name contains this")
    ap.add_argument("--jobs", type=int, default=1, help="worker processes (default 1: in-process)")
    ap.add_argument("--timeout", type=float, default=120.0, help="seconds per case before it fails")
    ap.add_argument("--write-xfail", action="store_true", help=f"rewrite {XFAIL_FILE.relative_to(ROOT)}")
    ap.add_argument("--docs", action="store_true", help=f"rewrite {OPS_DOC.relative_to(ROOT)}")
    ap.add_argument("-v", "--verbose", action="store_true", help="print every failing case with its reason")
    args = ap.parse_args(argv)
    if (args.write_xfail or args.docs) and (args.engine != "irc" or args.filter):
        ap.error("--write-xfail and --docs need a full run of the irc engine")
    cases = load_cases()
    names = [n for n in cases if args.filter in n]
    start = time.perf_counter()
    done = [0]

    def progress(r: Result):
        done[0] += 1
        if args.verbose and not r.passed:
            print(f"FAIL {r.name}: {r.reason}", flush=True)
        elif done[0] % 100 == 0:
            print(f"  {done[0]}/{len(names)} ({time.perf_counter() - start:.0f} s)", file=sys.stderr, flush=True)

    results = run_all(cases, names, args.engine, args.timeout, args.jobs, progress)
    print(summary(results, args.engine))
    print(f"\nwall time: {time.perf_counter() - start:.0f} s")
    if args.write_xfail:
        write_xfail(results)
    if args.docs:
        OPS_DOC.parent.mkdir(exist_ok=True)
        OPS_DOC.write_text(ops_table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
