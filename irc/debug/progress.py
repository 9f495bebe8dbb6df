"""The progress line of ``irc compile``: which pass runs, then which kernel is being compiled.

Shown only on a terminal (the stream is a TTY) and never with ``--quiet``; the line is rewritten in place
and erased when the work is done, so the command's normal output stays as it is.
"""
from __future__ import annotations

import sys
from typing import Optional, TextIO

import numpy as np

_CLEAR = "\r\x1b[K"


class Progress:
    """A one-line status on ``stream``; every method does nothing when disabled."""

    def __init__(self, stream: Optional[TextIO] = None, enabled: Optional[bool] = None):
        self.stream = stream or sys.stderr
        self.enabled = _is_tty(self.stream) if enabled is None else enabled

    def show(self, phase: str, index: int, count: int, what: str) -> None:
        if self.enabled:
            self.stream.write(f"{_CLEAR}{phase} [{index + 1}/{count}] {what}")
            self.stream.flush()

    def on_pass(self, name: str, index: int, count: int) -> None:
        """The pass manager's ``on_pass`` callback."""
        self.show("pass", index, count, name)

    def done(self) -> None:
        if self.enabled:
            self.stream.write(_CLEAR)
            self.stream.flush()

    def warm(self, model) -> None:
        """Warm ``model``'s kernels (``CompiledModel.warm``), showing each kernel of the first run as it
        compiles: one run on example inputs steps through the plan with a hook, then ``warm`` finishes
        the rest (other bindings of symbolic dims) with the kernels of that run already loaded."""
        if self.enabled and model.target == "cpu":
            self._step_through(model)
        model.warm()
        self.done()

    def _step_through(self, model) -> None:
        from ..backend.cpu import execute
        from ..errors import IrcError
        from ..runtime.executor import check_feeds
        from ..runtime.model import example_inputs
        try:
            feeds = example_inputs(model.graph)
            plan = model.plan(feeds)
        except IrcError:
            return  # warm() reports it
        position = {id(s): i for i, s in enumerate(plan.steps)}

        def hook(step, args):
            self.show("kernel", position[id(step)], len(position), f"{step.node.op} {step.node.name}")
            return step.fn(*args)
        try:
            with np.errstate(all="ignore"):
                execute(plan, check_feeds(model.graph, feeds), hook=hook)
        except IrcError:
            pass  # warm() runs the same inputs again and reports the failure


def _is_tty(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
