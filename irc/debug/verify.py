"""Find what breaks a model: the first pass that changes its outputs, or the first kernel that is wrong.

``verify_pipeline`` imports the model, runs the reference interpreter on the imported graph (the
reference), then applies the -O pipeline one pass at a time, interpreting the graph after each pass and
comparing its outputs with the reference; at the end the compiled CPU kernels run on the final graph.
The first pass whose outputs leave tolerance is named together with the first tensor that differs from
the graph before that pass (values are matched by name, else by producing node name and result index).

``bisect_kernels`` runs the compiled plan once and checks, node by node, the kernel's results against the
op's numpy reference applied to the same operand arrays: the first node whose kernel disagrees is named.

Tolerance: ``max |ref - got| <= tol * max(1, max |ref|)`` per tensor (tol 1e-3 unless given).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Mapping, Optional, Sequence

import numpy as np

from ..errors import IrcError
from ..ir import Graph, Value
from .text import table

DEFAULT_TOL = 1e-3


# -- comparing arrays ---------------------------------------------------------------------------------

@dataclass
class Error:
    """How far ``got`` is from ``ref``: max and mean absolute difference, and the limit allowed."""
    max: float
    mean: float
    limit: float
    note: str = ""

    @property
    def ok(self) -> bool:
        return self.max <= self.limit

    def __str__(self):
        text = f"max error {self.max:.3g}, mean error {self.mean:.3g} (limit {self.limit:.3g})"
        return f"{text}: {self.note}" if self.note else text


def compare(ref: np.ndarray, got: np.ndarray, tol: float = DEFAULT_TOL) -> Error:
    """The error of ``got`` against ``ref``; NaN where both have NaN counts as equal, elsewhere as infinite."""
    ref, got = np.asarray(ref), np.asarray(got)
    if ref.shape != got.shape:
        return Error(np.inf, np.inf, 0.0, f"shape {list(got.shape)}, expected {list(ref.shape)}")
    if ref.dtype.kind in "OUS" or got.dtype.kind in "OUS":
        bad = float(np.count_nonzero(ref != got))
        return Error(np.inf if bad else 0.0, bad / max(ref.size, 1), 0.0)
    a, b = ref.astype(np.float64), got.astype(np.float64)
    with np.errstate(invalid="ignore", over="ignore"):
        diff = np.abs(a - b)
        diff[(a == b) | (np.isnan(a) & np.isnan(b))] = 0.0
    diff[np.isnan(diff)] = np.inf
    finite = np.abs(a[np.isfinite(a)])
    limit = tol * max(1.0, float(finite.max()) if finite.size else 1.0)
    if diff.size == 0:
        return Error(0.0, 0.0, limit)
    return Error(float(diff.max()), float(diff.mean()), limit)


def worst(errors: Sequence[Error]) -> Optional[Error]:
    """The error furthest beyond (or closest to) its limit."""
    return max(errors, key=lambda e: np.inf if e.max > 0 and e.limit == 0 else e.max / max(e.limit, 1e-300),
               default=None)


# -- pass by pass -------------------------------------------------------------------------------------

@dataclass
class Stage:
    """One row of the report: a pass (or the compiled kernels) and its outputs' error against the reference."""
    name: str
    errors: Dict[str, Error] = field(default_factory=dict)     # output name -> error
    failure: str = ""                                           # why the stage could not run

    @property
    def ok(self) -> bool:
        return not self.failure and all(e.ok for e in self.errors.values())

    @property
    def worst(self) -> Optional[Error]:
        return worst(list(self.errors.values()))


@dataclass
class Divergence:
    """A tensor that differs between two graphs."""
    what: str
    error: Error


@dataclass
class PipelineReport:
    stages: List[Stage]
    first_pass: Optional[str] = None            # the first pass whose outputs leave tolerance
    tensor: Optional[Divergence] = None         # the first tensor that pass made differ

    @property
    def ok(self) -> bool:
        return all(s.ok for s in self.stages)


def value_key(v: Value) -> Optional[tuple]:
    """What identifies a value across passes: its name, else its producing node's name and result index."""
    if v.name:
        return ("name", v.name)
    if v.producer is not None and v.producer.name:
        return ("node", v.producer.name, v.index)
    return None


def describe(v: Value) -> str:
    where = f"{v.producer.op} {v.producer.name!r}" if v.producer is not None else "graph input"
    label = f"%{v.name}" if v.name else f"result {v.index}"
    return f"{label} of {where}: {v.type}"


def first_divergence(before: Graph, before_env: Mapping[Value, np.ndarray], after: Graph,
                     after_env: Mapping[Value, np.ndarray], tol: float) -> Optional[Divergence]:
    """The first value of ``after`` (in node order) whose counterpart in ``before`` holds other numbers.

    A value whose numbers are those of another value of ``before`` is not a divergence: a rewrite moved a
    result there (fold-batchnorm makes the conv give what the batchnorm gave, keeping the conv's name).
    """
    known, by_shape = {}, {}
    for v in before.values():
        if v in before_env:
            by_shape.setdefault(np.shape(before_env[v]), []).append(before_env[v])
            if value_key(v) is not None:
                known.setdefault(value_key(v), v)
    for n in after.nodes:
        for v in n.outputs:
            old = known.get(value_key(v)) if value_key(v) is not None else None
            if old is None or v not in after_env or np.shape(before_env[old]) != np.shape(after_env[v]):
                continue
            err = compare(before_env[old], after_env[v], tol)
            if not err.ok and not any(compare(a, after_env[v], tol).ok for a in by_shape[np.shape(after_env[v])]):
                return Divergence(describe(v), err)
    return None


def complete_feeds(graph: Graph, feeds: Optional[Mapping[str, np.ndarray]]) -> Dict[str, np.ndarray]:
    """``feeds`` with random values for the inputs not given, checked against the graph's inputs."""
    from ..runtime.executor import check_feeds
    from ..runtime.model import example_inputs
    given = dict(feeds or {})
    full = {**{k: v for k, v in example_inputs(graph, random=True).items() if k not in given}, **given}
    check_feeds(graph, full)
    return full


def _output_errors(graph: Graph, ref: Sequence[np.ndarray], got: Sequence[np.ndarray], tol: float):
    return {name: compare(r, g, tol) for name, r, g in zip(graph.output_names, ref, got)}


def verify_pipeline(model, feeds: Optional[Mapping[str, np.ndarray]] = None, opt_level: int = 2,
                    disable_passes: Sequence[str] = (), tol: float = DEFAULT_TOL,
                    kernels: bool = True) -> PipelineReport:
    """Run the pipeline pass by pass against the reference interpreter (see the module docstring)."""
    from ..frontend import import_onnx
    from ..ops.interpret import interpret
    from ..passes import PassManager, pipeline
    graph = import_onnx(model)
    feeds = complete_feeds(graph, feeds)
    with np.errstate(all="ignore"):
        ref, env = interpret(graph, feeds, keep_all=True)
    report = PipelineReport([])
    for name in pipeline(opt_level, disable_passes):
        stage = Stage(name)
        report.stages.append(stage)
        try:
            after = PassManager([name]).run(graph.clone())
            with np.errstate(all="ignore"):
                outs, after_env = interpret(after, feeds, keep_all=True)
        except IrcError as e:
            stage.failure = str(e)
            report.first_pass = report.first_pass or name
            break
        stage.errors = _output_errors(after, ref, outs, tol)
        if not stage.ok and report.first_pass is None:
            report.first_pass = name
            report.tensor = first_divergence(graph, env, after, after_env, tol)
        graph, env = after, after_env
    if kernels and not any(s.failure for s in report.stages):
        report.stages.append(_kernel_stage(graph, feeds, ref, tol))
    return report


def _kernel_stage(graph: Graph, feeds, ref, tol: float) -> Stage:
    """The compiled CPU kernels on the final graph, against the reference."""
    from ..backend.cpu import check_supported
    from ..runtime.model import CompiledModel
    stage = Stage("cpu kernels")
    try:
        check_supported(graph)
        with np.errstate(all="ignore"):
            got = CompiledModel(graph).run(feeds)
    except IrcError as e:
        stage.failure = str(e)
        return stage
    stage.errors = _output_errors(graph, ref, [got[n] for n in graph.output_names], tol)
    return stage


def _err_cells(e: Optional[Error]) -> List[str]:
    return [f"{e.max:.3g}", f"{e.limit:.3g}"] if e is not None else ["-", "-"]


def format_pipeline(report: PipelineReport) -> str:
    """The report as a table, then the verdict."""
    rows = [[s.name, *_err_cells(s.worst), f"FAILED: {s.failure}" if s.failure else ("ok" if s.ok else "DIVERGES")]
            for s in report.stages]
    first = next((s for s in report.stages if not s.ok), None)  # its outputs, one by one
    notes = [f"  {first.name}: output {o!r}: {e}" for o, e in first.errors.items() if not e.ok] if first else []
    lines = table(["stage", "max error", "limit", "result"], rows, right=(1, 2)) + notes
    if report.first_pass:
        lines.append(f"first divergent pass: {report.first_pass}")
        if report.tensor:
            lines.append(f"first divergent tensor: {report.tensor.what}: {report.tensor.error}")
    elif not report.ok:
        lines.append("the passes keep the outputs; the compiled kernels diverge: run irc verify --bisect")
    else:
        lines.append("all stages match the reference")
    return "\n".join(lines) + "\n"


# -- kernel by kernel ---------------------------------------------------------------------------------

@dataclass
class KernelCheck:
    """One node of the plan: its kernel's results against the reference on the same operands."""
    node: object
    algo: str
    errors: List[Error] = field(default_factory=list)
    failure: str = ""

    @property
    def ok(self) -> bool:
        return not self.failure and all(e.ok for e in self.errors)


@dataclass
class BisectReport:
    checks: List[KernelCheck]

    @property
    def first_bad(self) -> Optional[KernelCheck]:
        return next((c for c in self.checks if not c.ok), None)


def _checking_hook(checks: List[KernelCheck], tol: float):
    """An executor step hook that runs the kernel, then the op's reference on the same arrays."""
    from ..ops.registry import as_outputs, get, run_reference

    def hook(step, args):
        res = step.fn(*args)
        check = KernelCheck(step.node, step.algo)
        checks.append(check)
        try:
            with np.errstate(all="ignore"):
                ref = run_reference(get(step.node.op), args, step.node.attrs)
        except Exception as e:
            check.failure = f"reference failed: {type(e).__name__}: {e}"
            return res
        got = as_outputs(res)
        check.errors = [compare(r, g, tol) for r, g in zip(ref, got)]
        check.errors += [Error(np.inf, np.inf, 0.0, "the dtype differs") for r, g in zip(ref, got)
                         if r.dtype != g.dtype]
        return res
    return hook


def bisect_kernels(model, feeds: Optional[Mapping[str, np.ndarray]] = None, opt_level: int = 2,
                   disable_passes: Sequence[str] = (), tol: float = DEFAULT_TOL) -> BisectReport:
    """Check every kernel of ``model``'s plan against the reference (module docstring); ``model`` is
    compiled here at ``opt_level`` unless it is a CompiledModel already."""
    from .. import api
    from ..backend.cpu import execute
    from ..runtime.executor import check_feeds
    from ..runtime.model import CompiledModel
    compiled = model if isinstance(model, CompiledModel) else api.compile(model, opt_level=opt_level,
                                                                            disable_passes=disable_passes)
    feeds = complete_feeds(compiled.graph, feeds)
    arrays = check_feeds(compiled.graph, feeds)
    checks: List[KernelCheck] = []
    with np.errstate(all="ignore"):
        execute(compiled.plan(feeds), arrays, hook=_checking_hook(checks, tol))
    return BisectReport(checks)


def format_bisect(report: BisectReport) -> str:
    """Every node with its kernel's error, then the first one that differs."""
    rows = []
    for c in report.checks:
        verdict = f"FAILED: {c.failure}" if c.failure else ("ok" if c.ok else "DIFFERS")
        rows.append([c.node.name or "-", c.node.op, c.algo or "-", *_err_cells(worst(c.errors)), verdict])
    lines = table(["node", "op", "algo", "max error", "limit", "result"], rows, right=(3, 4))
    bad = report.first_bad
    if bad is None:
        lines.append(f"all {len(report.checks)} kernels match their references")
    else:
        detail = bad.failure or str(worst(bad.errors))
        lines.append(f"first divergent kernel: node {bad.node.op} {bad.node.name!r}"
                     f"{' (algo ' + bad.algo + ')' if bad.algo else ''}: {detail}")
    return "\n".join(lines) + "\n"
