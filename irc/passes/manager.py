"""The pass manager: named passes, pipelines per -O level, print-after, verify-each, timing.

A pass is a function ``Graph -> Graph`` registered with ``@register_pass(name, level)``; it may rewrite the
graph in place and return it. ``level`` is the lowest -O level whose pipeline runs it. When a pass fails,
the error (of the same IrcError class) names the pass and the passes that ran before it, so
``--disable-pass`` and ``--print-after`` of the one before bisect it. With ``verify_each`` the graph is
verified before the first pass and after every pass.
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, TextIO

from ..errors import IrcError
from ..ir import Graph, print_graph, verify


@dataclass
class PassInfo:
    name: str
    fn: Callable[[Graph], Graph]
    level: int
    doc: str


PASSES: Dict[str, PassInfo] = {}
# the order passes run in at every level; a level runs those whose PassInfo.level <= the level
ORDER: List[str] = []


def register_pass(name: str, level: int):
    def deco(fn):
        if name in PASSES:
            raise ValueError(f"pass {name} registered twice")
        PASSES[name] = PassInfo(name, fn, level, (fn.__doc__ or "").strip())
        return fn
    return deco


def pipeline(opt_level: int, disable: Sequence[str] = ()) -> List[str]:
    """The pass names -O``opt_level`` runs, in order, less the disabled ones."""
    if opt_level not in (0, 1, 2, 3):
        raise IrcError(f"optimization level must be 0 to 3, got {opt_level}")
    check_names(disable, "--disable-pass")
    return [p for p in ORDER if PASSES[p].level <= opt_level and p not in disable]


def check_names(names: Sequence[str], what: str) -> None:
    """IrcError naming every unknown pass name and listing the known ones."""
    unknown = [n for n in names if n not in PASSES]
    if unknown:
        raise IrcError(f"{what}: unknown pass name(s) {', '.join(map(repr, unknown))}; "
                       f"passes are: {', '.join(sorted(PASSES))}")


def _failure(err: Exception, name: str, done: List[str]) -> IrcError:
    """The error of a failing pass, naming it and the passes before it; IrcError subclasses are kept."""
    before = ", ".join(done) or "none"
    if isinstance(err, IrcError):
        return type(err)(f"pass {name} failed (after passes: {before}): {err}")
    return IrcError(f"pass {name} crashed (after passes: {before}): {type(err).__name__}: {err}")


@dataclass
class PassManager:
    passes: List[str]
    verify_each: bool = False
    print_after: Sequence[str] = ()
    print_after_all: bool = False
    time_passes: bool = False
    out: TextIO = field(default_factory=lambda: sys.stderr)
    timings: List[tuple] = field(default_factory=list)
    on_pass: Optional[Callable[[str, int, int], None]] = None   # (name, index, count) before each pass
    options: Dict[str, dict] = field(default_factory=dict)       # pass name -> keyword arguments of its function

    def __post_init__(self):
        check_names(self.passes, "pipeline")
        check_names(self.print_after, "--print-after")
        idle = [n for n in self.print_after if n not in self.passes]
        if idle:
            raise IrcError(f"--print-after: pass(es) {', '.join(map(repr, idle))} do not run in this pipeline "
                           f"({', '.join(self.passes) or 'no passes'})")

    def run(self, graph: Graph) -> Graph:
        """Run the passes in order on ``graph`` (rewritten in place) and return it."""
        if self.verify_each:
            try:
                verify(graph)
            except IrcError as e:
                raise IrcError(f"the graph given to the pass pipeline is invalid: {e}") from e
        done: List[str] = []
        for i, name in enumerate(self.passes):
            if self.on_pass is not None:
                self.on_pass(name, i, len(self.passes))
            try:
                t0 = time.perf_counter()
                graph = PASSES[name].fn(graph, **self.options.get(name, {}))
                self.timings.append((name, time.perf_counter() - t0))  # the pass alone, not its verification
                if self.verify_each:
                    verify(graph)
            except Exception as e:
                raise _failure(e, name, done) from e
            done.append(name)
            if self.print_after_all or name in self.print_after:
                self.out.write(f"// IR after {name}\n{print_graph(graph)}\n")
        if self.time_passes:
            self.out.write(format_timings(self.timings))
        return graph


def format_timings(timings) -> str:
    """A table of (pass, seconds): milliseconds and share of the total per run of a pass."""
    total = sum(t for _, t in timings) or 1e-12
    lines = ["pass                     time (ms)      %"]
    for name, t in timings:
        lines.append(f"{name:<24} {t * 1e3:9.2f} {100 * t / total:6.1f}")
    lines.append(f"{'total':<24} {total * 1e3:9.2f} {100.0:6.1f}")
    return "\n".join(lines) + "\n"
