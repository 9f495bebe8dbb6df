"""Shared by the pass tests: the golden cases, random feeds for a graph, an exporter-style model.

The golden pass tests are ``golden/*.ir`` files of small cases in the IR text form.

A file starts with ``// passes: NAME, NAME`` (the pipeline its cases run); cases are separated by
``// -----``; each case is one comment saying what it tests, the input graph, ``// after:`` and the graph
the passes must produce (printed the same way; attributes at their defaults may be left out).
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import List

import numpy as np
from onnx import TensorProto, helper, numpy_helper

GOLDEN_DIR = os.path.join(os.path.dirname(__file__), "golden")


@dataclass
class Case:
    file: str
    what: str
    passes: List[str]
    before: str
    after: str

    @property
    def id(self) -> str:
        return f"{self.file}: {self.what}"


def _case(file: str, passes: List[str], chunk: str) -> Case:
    what = re.match(r"\s*//\s*(.*)", chunk)
    if what is None or "// after:" not in chunk:
        raise ValueError(f"{file}: a case needs a comment and an '// after:' line:\n{chunk}")
    before, after = chunk[what.end():].split("// after:")
    return Case(file, what.group(1).strip(), passes, before.strip() + "\n", after.strip() + "\n")


def load_cases() -> List[Case]:
    cases = []
    for file in sorted(os.listdir(GOLDEN_DIR)):
        text = open(os.path.join(GOLDEN_DIR, file)).read()
        header, *chunks = text.split("// -----\n")
        passes = [p.strip() for p in re.search(r"// passes: (.*)", header).group(1).split(",")]
        cases.extend(_case(file, passes, c) for c in chunks)
    return cases


def random_feeds(graph, seed: int = 0, sizes=None):
    """Random inputs for ``graph``: each symbolic dim bound to one size (``sizes`` or 1..4), unknown dims 2."""
    rng = np.random.default_rng(seed)
    sizes = dict(sizes or {})
    feeds = {}
    for v in graph.inputs:
        shape = []
        for d in v.type.shape or ():
            if isinstance(d, str):
                d = sizes.setdefault(d, int(rng.integers(1, 5)))
            shape.append(2 if d is None else d)
        dt = v.type.numpy_dtype
        if dt.kind == "f":
            feeds[v.name] = rng.standard_normal(shape).astype(dt)
        elif dt.kind == "b":
            feeds[v.name] = rng.random(shape) < 0.5
        else:
            feeds[v.name] = rng.integers(-5, 6, shape).astype(dt)
    return feeds


def exporter_model():
    """What exporters emit around a classifier head: Shape/Gather/Unsqueeze/Concat/Reshape to flatten with
    a symbolic batch, ConstantOfShape weights, a Dropout, a repeated computation and a no-op cast."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 2, 3])
    ints = {"zero": np.array(0, np.int64), "axes0": np.array([0], np.int64), "minus1": np.array([-1], np.int64),
            "wshape": np.array([6, 4], np.int64)}
    nodes = [
        helper.make_node("Shape", ["x"], ["s"], name="shape"),
        helper.make_node("Gather", ["s", "zero"], ["b"], name="gather", axis=0),
        helper.make_node("Unsqueeze", ["b", "axes0"], ["bu"], name="unsq"),
        helper.make_node("Concat", ["bu", "minus1"], ["target"], name="concat", axis=0),
        helper.make_node("Reshape", ["x", "target"], ["flat"], name="flatten"),
        helper.make_node("ConstantOfShape", ["wshape"], ["w"], name="weights",
                         value=numpy_helper.from_array(np.array([0.25], np.float32))),
        helper.make_node("MatMul", ["flat", "w"], ["mm"], name="matmul"),
        helper.make_node("Dropout", ["mm"], ["drop"], name="dropout"),
        helper.make_node("Cast", ["drop"], ["same"], name="cast", to=TensorProto.FLOAT),
        helper.make_node("Relu", ["same"], ["r1"], name="relu1"),
        helper.make_node("Relu", ["same"], ["r2"], name="relu2"),
        helper.make_node("Add", ["r1", "r2"], ["y"], name="add"),
    ]
    inits = [numpy_helper.from_array(v, k) for k, v in ints.items()]
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    g = helper.make_graph(nodes, "head", [x], [y], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
