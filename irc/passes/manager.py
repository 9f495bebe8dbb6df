"""The pass manager: named passes, pipelines per -O level, print-after, verify-each, timing.

A pass is a function ``Graph -> Graph`` registered with ``@register_pass(name, level)``; it may rewrite the
graph in place and return it. ``level`` is the lowest -O level whose pipeline runs it. When a pass fails,
the error names the pass and the passes that ran before it.
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
    unknown = [d for d in disable if d not in PASSES]
    if unknown:
        raise IrcError(f"unknown pass name(s) {unknown}; passes are: {', '.join(ORDER)}")
    return [p for p in ORDER if PASSES[p].level <= opt_level and p not in disable]


@dataclass
class PassManager:
    passes: List[str]
    verify_each: bool = False
    print_after: Sequence[str] = ()
    print_after_all: bool = False
    time_passes: bool = False
    out: TextIO = field(default_factory=lambda: sys.stderr)
    timings: List[tuple] = field(default_factory=list)

    def run(self, graph: Graph) -> Graph:
        done: List[str] = []
        for name in self.passes:
            info = PASSES[name]
            t0 = time.perf_counter()
            try:
                graph = info.fn(graph)
                if self.verify_each:
                    verify(graph)
            except IrcError as e:
                before = ", ".join(done) or "none"
                raise IrcError(f"pass {name} failed (after passes: {before}): {e}") from e
            except Exception as e:
                before = ", ".join(done) or "none"
                raise IrcError(f"pass {name} crashed (after passes: {before}): {type(e).__name__}: {e}") from e
            self.timings.append((name, time.perf_counter() - t0))
            done.append(name)
            if self.print_after_all or name in self.print_after:
                self.out.write(f"// IR after {name}\n{print_graph(graph)}\n")
        if self.time_passes:
            self.out.write(format_timings(self.timings))
        return graph


def format_timings(timings) -> str:
    total = sum(t for _, t in timings) or 1e-12
    lines = ["pass                     time (ms)      %"]
    for name, t in timings:
        lines.append(f"{name:<24} {t * 1e3:9.2f} {100 * t / total:6.1f}")
    lines.append(f"{'total':<24} {total * 1e3:9.2f} {100.0:6.1f}")
    return "\n".join(lines) + "\n"
