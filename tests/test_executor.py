"""The executor with plan-memory: one arena per plan frame, kernels writing into it, bound steps.

Every model runs with the pass and without it (``--disable-pass plan-memory``: fresh arrays per result)
and against onnxruntime and the reference interpreter; the aliasing cases are the ones a wrong plan
gets wrong: a view read after its base's last reader, an operand another step still reads, outputs
kept across runs, concurrent runs.
"""
import threading
import tracemalloc

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import irc
from irc.backend.cpu import execute
from irc.runtime.executor import check_feeds
from irc.frontend import import_onnx
from irc.ops.interpret import interpret
from tests.util import assert_close, irc_cli, run_ort

RNG = np.random.default_rng(0)
NO_PLAN = ["plan-memory"]


def f32(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


def model(nodes, inputs, outputs, consts=None, dtype=TensorProto.FLOAT):
    """A model of ``nodes``: graph inputs name -> shape (``dtype``), outputs by name, initializers."""
    g = helper.make_graph(
        nodes, "m", [helper.make_tensor_value_info(k, dtype, s) for k, s in inputs.items()],
        [helper.make_empty_tensor_value_info(o) for o in outputs],
        [numpy_helper.from_array(v, k) for k, v in (consts or {}).items()])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def node(op, ins, outs, **attrs):
    return helper.make_node(op, ins, outs if isinstance(outs, list) else [outs], **attrs)


SHAPE = np.array([16], np.int64)

# (name, nodes, inputs, outputs, consts, feeds)
CASES = [
    ("chain-in-place", [node("Relu", ["x"], "a"), node("Neg", ["a"], "b"), node("Exp", ["b"], "c"),
                        node("Sigmoid", ["c"], "y")], {"x": [4, 4]}, ["y"], {}, {"x": f32(4, 4)}),
    ("operand-read-later", [node("Relu", ["x"], "a"), node("Neg", ["a"], "b"), node("Add", ["a", "b"], "c"),
                            node("Mul", ["c", "a"], "y")], {"x": [8]}, ["y"], {}, {"x": f32(8)}),
    ("view-read-after-base-dies", [node("Exp", ["x"], "a"), node("Reshape", ["a", "s"], "v"),
                                   node("Neg", ["a"], "b"), node("Relu", ["b"], "c"),
                                   node("Reshape", ["c", "s"], "w"), node("Add", ["v", "w"], "y")],
     {"x": [4, 4]}, ["y"], {"s": SHAPE}, {"x": f32(4, 4)}),
    ("broadcast-in-place", [node("Relu", ["x"], "a"), node("Add", ["a", "b"], "c"), node("Mul", ["c", "b"], "y")],
     {"x": [3, 4], "b": [4]}, ["y"], {}, {"x": f32(3, 4), "b": f32(4)}),
    ("broadcast-grows", [node("Relu", ["b"], "a"), node("Add", ["a", "x"], "y")],
     {"x": [3, 4], "b": [4]}, ["y"], {}, {"x": f32(3, 4), "b": f32(4)}),
    ("same-operand-twice", [node("Relu", ["x"], "a"), node("Mul", ["a", "a"], "b"), node("Neg", ["b"], "y")],
     {"x": [5]}, ["y"], {}, {"x": f32(5)}),
    ("intermediate-is-output", [node("Relu", ["x"], "a"), node("Neg", ["a"], "b"), node("Exp", ["b"], "y")],
     {"x": [6]}, ["a", "y"], {}, {"x": f32(6)}),
    ("output-is-view", [node("Relu", ["x"], "a"), node("Reshape", ["a", "s"], "y"), node("Neg", ["a"], "z")],
     {"x": [4, 4]}, ["y", "z"], {"s": SHAPE}, {"x": f32(4, 4)}),
    ("input-and-constant-outputs", [node("Relu", ["x"], "a"), node("Identity", ["x"], "y"),
                                    node("Identity", ["s"], "z"), node("Neg", ["a"], "w")],
     {"x": [16]}, ["y", "z", "w"], {"s": SHAPE}, {"x": f32(16)}),
    ("split-views", [node("Relu", ["x"], "a"), node("Split", ["a"], ["p", "q"], axis=0),
                     node("Neg", ["x"], "b"), node("Exp", ["b"], "c"), node("Add", ["p", "q"], "d"),
                     node("Add", ["d", "d"], "y")], {"x": [8, 2]}, ["y", "c"], {}, {"x": f32(8, 2)}),
    ("slice-view", [node("Relu", ["x"], "a"), node("Slice", ["a", "st", "en"], "v"), node("Neg", ["a"], "b"),
                    node("Exp", ["b"], "c"), node("Sum", ["v", "v"], "y")],
     {"x": [4, 3]}, ["y", "c"], {"st": np.array([1], np.int64), "en": np.array([3], np.int64)}, {"x": f32(4, 3)}),
    ("omitted-operand", [node("Relu", ["x"], "a"), node("Clip", ["a", "", "hi"], "y")],
     {"x": [7]}, ["y"], {"hi": np.array(0.5, np.float32)}, {"x": f32(7)}),
    ("empty", [node("Relu", ["x"], "a"), node("Neg", ["a"], "y")], {"x": [0, 3]}, ["y"], {},
     {"x": np.zeros((0, 3), np.float32)}),
    ("scalar", [node("Relu", ["x"], "a"), node("Neg", ["a"], "y")], {"x": []}, ["y"], {},
     {"x": np.array(-2.5, np.float32)}),
]


def check(m, feeds, disable=()):
    """irc with and without plan-memory (less the ``disable``d passes) against onnxruntime and the
    reference interpreter."""
    expected = run_ort(m, feeds)
    reference = interpret(import_onnx(m), feeds)
    for extra in ([], NO_PLAN):
        got = irc.compile(m, disable_passes=[*disable, *extra]).run(feeds)
        assert list(got) == [o.name for o in m.graph.output]
        for (name, a), e, r in zip(got.items(), expected, reference):
            assert_close(a, e, what=f"{name} vs onnxruntime, without {[*disable, *extra]}")
            assert_close(a, r.astype(a.dtype), what=f"{name} vs reference, without {[*disable, *extra]}")


@pytest.mark.parametrize("disable", [[], ["fuse-elementwise"]], ids=["O2", "unfused"])
@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_models_with_and_without_the_arena(case, disable):
    _, nodes, inputs, outputs, consts, feeds = case
    check(model(nodes, inputs, outputs, consts), feeds, disable)


@pytest.mark.parametrize("dtype,np_dtype", [(TensorProto.FLOAT16, np.float16), (TensorProto.INT32, np.int32),
                                            (TensorProto.DOUBLE, np.float64)])
def test_other_dtypes_write_into_the_arena_too(dtype, np_dtype):
    m = model([node("Abs", ["x"], "a"), node("Add", ["a", "x"], "b"), node("Mul", ["b", "a"], "y")],
              {"x": [3, 5]}, ["y"], dtype=dtype)
    check(m, {"x": (RNG.standard_normal((3, 5)) * 4).astype(np_dtype)}, ["fuse-elementwise"])


def test_a_chain_runs_in_one_arena_buffer_bound_once():
    m = model([node("Relu", ["x"], "a"), node("Neg", ["a"], "b"), node("Exp", ["b"], "c"),
               node("Sigmoid", ["c"], "y")], {"x": [1024]}, ["y"])
    c = irc.compile(m, disable_passes=["fuse-elementwise"])
    feeds = {"x": f32(1024)}
    c.run(feeds)
    plan = c.plan(feeds)
    mem = plan.memory
    # the input is staged into the arena, relu overwrites it, neg and exp overwrite relu's result
    assert len(mem.offsets) == 4 and len(mem.inplace) == 3 and mem.arena_bytes == 4096
    assert len(plan.frames) == 1
    frame = plan.frames[0]
    arena = frame.arena
    c.run(feeds)
    assert plan.frames == [frame] and frame.arena is arena
    disabled = irc.compile(m, disable_passes=["fuse-elementwise", "plan-memory"]).plan(feeds).memory
    assert disabled.arena_bytes == 0 and disabled.peak_bytes == disabled.intermediate_bytes == 3 * 4096


def test_a_run_allocates_no_intermediate():
    """Eight 1 MiB intermediates: a run with the arena allocates the output only."""
    nodes = [node("Relu", ["x"], "t0")] + [node("Add", [f"t{i}", "x"], f"t{i + 1}") for i in range(8)]
    nodes.append(node("Neg", ["t8"], "y"))
    m = model(nodes, {"x": [256, 1024]}, ["y"])
    feeds = {"x": f32(256, 1024)}

    def allocated(c):
        c.run(feeds)
        tracemalloc.start()
        try:
            c.run(feeds)
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    one = 256 * 1024 * 4
    with_arena = allocated(irc.compile(m, disable_passes=["fuse-elementwise"]))
    fresh = allocated(irc.compile(m, disable_passes=["fuse-elementwise", "plan-memory"]))
    assert with_arena < 1.5 * one and fresh > 2.5 * one, (with_arena, fresh)


def test_outputs_survive_later_runs():
    m = model([node("Relu", ["x"], "a"), node("Reshape", ["a", "s"], "v"), node("Neg", ["a"], "b"),
               node("Exp", ["b"], "y")], {"x": [4, 4]}, ["a", "v", "y"], {"s": SHAPE})
    c = irc.compile(m)
    x1, x2 = f32(4, 4), f32(4, 4)
    first = c.run({"x": x1})
    kept = {k: v.copy() for k, v in first.items()}
    second = c.run({"x": x2})
    for k in first:
        np.testing.assert_array_equal(first[k], kept[k])
        assert not np.shares_memory(first[k], second[k])
    for got, want in zip(second.values(), run_ort(m, {"x": x2})):
        assert_close(got, want)


def test_operands_derived_at_bind_time_follow_each_run():
    """A bound step may not keep what it derived from an operand's values (a GEMM's bias row from a graph
    input): the input is staged into the arena, where a second run's values replace the first's."""
    m = model([node("Gemm", ["a", "b", "c"], "g", transA=1), node("Neg", ["g"], "y")],
              {"a": [4, 3], "b": [4, 5], "c": [5]}, ["y"])
    c = irc.compile(m)
    for seed in range(2):
        rng = np.random.default_rng(seed)
        feeds = {k: rng.standard_normal(s).astype(np.float32) for k, s in (("a", (4, 3)), ("b", (4, 5)), ("c", (5,)))}
        assert_close(c.run(feeds)["y"], run_ort(m, feeds)[0])


def test_every_kernel_family_follows_new_inputs_run_after_run():
    """Bound steps of each conv form, pooling and the classifier GEMM: every run computes from its own
    input (a bind that kept a copy of the first run's values, a phase split say, would repeat it)."""
    nodes = [node("Conv", ["x", "w0"], "c0", pads=[1, 1, 1, 1]),                        # 3 channels: im2col
             node("Relu", ["c0"], "r0"),
             node("Conv", ["r0", "w1"], "c1", pads=[1, 1, 1, 1]),                       # 3x3, 16x16: winograd
             node("Conv", ["c1", "w2"], "c2", pads=[1, 1, 1, 1], group=8),              # depthwise
             node("Conv", ["c2", "w3"], "c3"),                                           # 1x1
             node("MaxPool", ["c3"], "p0", kernel_shape=[2, 2], strides=[2, 2]),
             node("AveragePool", ["p0"], "p1", kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]),
             node("GlobalAveragePool", ["p1"], "g"), node("Flatten", ["g"], "f"),
             node("Gemm", ["f", "w4", "b4"], "y", transB=1)]
    shapes = {"w0": (8, 3, 3, 3), "w1": (8, 8, 3, 3), "w2": (8, 1, 3, 3), "w3": (16, 8, 1, 1), "w4": (10, 16),
              "b4": (10,)}
    consts = {k: f32(*s) * np.float32(0.3) for k, s in shapes.items()}
    m = model(nodes, {"x": [2, 3, 16, 16]}, ["y", "c1"], consts)
    c = irc.compile(m)
    for _ in range(3):
        feeds = {"x": f32(2, 3, 16, 16)}
        for got, want in zip(c.run(feeds).values(), run_ort(m, feeds)):
            assert_close(got, want)


@pytest.mark.parametrize("group", [1, 4], ids=["im2col", "depthwise"])
def test_a_conv_whose_weight_is_an_input_packs_each_runs_weight(group):
    m = model([node("Conv", ["x", "w", "b"], "c", pads=[1, 1, 1, 1], group=group), node("Neg", ["c"], "y")],
              {"x": [1, 4, 9, 9], "w": [4, 4 // group, 3, 3], "b": [4]}, ["y"])
    c = irc.compile(m)
    for _ in range(2):
        feeds = {"x": f32(1, 4, 9, 9), "w": f32(4, 4 // group, 3, 3), "b": f32(4)}
        assert_close(c.run(feeds)["y"], run_ort(m, feeds)[0])


def test_concurrent_runs_from_eight_threads_each_get_their_own_result():
    nodes = [node("Relu", ["x"], "a"), node("Mul", ["a", "x"], "b"), node("Reshape", ["b", "s"], "v"),
             node("Neg", ["v"], "c"), node("Add", ["c", "v"], "d"), node("MatMul", ["d", "w"], "y")]
    m = model(nodes, {"x": [64, 32]}, ["y"], {"s": np.array([32, 64], np.int64), "w": f32(64, 8)})
    c = irc.compile(m, disable_passes=["fuse-elementwise"])
    inputs = [f32(64, 32) for _ in range(8)]
    expected = [run_ort(m, {"x": x})[0] for x in inputs]
    c.run({"x": inputs[0]})
    errors, barrier = [], threading.Barrier(8)

    def work(i):
        try:
            barrier.wait()
            for _ in range(20):
                assert_close(c.run({"x": inputs[i]})["y"], expected[i], what=f"thread {i}")
        except Exception as e:   # reported by the main thread
            errors.append(e)
    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[0]
    assert 1 <= len(c.plan({"x": inputs[0]}).frames) <= 8


def test_a_run_through_a_step_hook_gives_what_the_bound_steps_give():
    m = model([node("Relu", ["x"], "a"), node("Neg", ["a"], "b"), node("Add", ["a", "b"], "y")], {"x": [9]}, ["y"])
    c = irc.compile(m, disable_passes=["fuse-elementwise"])
    feeds = {"x": f32(9)}
    plan, arrays = c.plan(feeds), check_feeds(c.graph, feeds)
    seen = []

    def hook(step, args):
        seen.append(step.node.op)
        return step.fn(*args)
    np.testing.assert_array_equal(execute(plan, arrays, hook=hook)[0], execute(plan, arrays)[0])
    assert seen == ["relu", "neg", "add"]


def test_a_kernel_failing_at_run_time_is_named():
    m = model([node("Relu", ["x"], "a"), node("Gather", ["a", "i"], "y", axis=0)], {"x": [4]}, ["y"])
    m.graph.input.append(helper.make_tensor_value_info("i", TensorProto.INT64, [2]))
    c = irc.compile(m)
    with pytest.raises(irc.IrcError, match="gather"):
        c.run({"x": f32(4), "i": np.array([0, 9], np.int64)})
    np.testing.assert_array_equal(c.run({"x": np.ones(4, np.float32), "i": np.array([3, 0], np.int64)})["y"],
                                  [1, 1])


def test_symbolic_batch_gets_a_plan_per_binding():
    m = model([node("Relu", ["x"], "a"), node("Neg", ["a"], "b"), node("Exp", ["b"], "y")], {"x": ["n", 3]}, ["y"])
    c = irc.compile(m, disable_passes=["fuse-elementwise"])
    for n in (1, 4, 2):
        x = f32(n, 3)
        assert_close(c.run({"x": x})["y"], run_ort(m, {"x": x})[0])
        assert c.memory({"x": x})["intermediate_bytes"] == 2 * n * 3 * 4


def test_info_reports_peak_and_summed_activation_memory(capsys, tmp_path):
    m = model([node("Relu", ["x"], "a"), node("Neg", ["a"], "b"), node("Exp", ["b"], "y")], {"x": ["n", 64]}, ["y"])
    path = tmp_path / "m.bin"
    irc.compile(m, disable_passes=["fuse-elementwise"]).save(path)
    rc, out, _ = irc_cli(capsys, "info", path, "--batch", "2")
    assert rc == 0
    assert "activation memory, for inputs x=[2, 64]:" in out
    assert "peak:          512 bytes (512 in the arena, 0 at most in arrays kernels allocate each run)" in out
    assert "intermediates: 1024 bytes summed (3 values in the arena, 2 of them in place)" in out


ZOO = ["mlp", "senet", "convnext", "unet", "gpt", "bert", "vgg11", "mobilenetv2", "resnet18"]


@pytest.mark.slow
@pytest.mark.parametrize("name", ZOO)
def test_zoo_models_give_the_same_outputs_with_and_without_the_arena(zoo, name):
    path = zoo.path(name)
    with_plan, without = irc.compile(path), irc.compile(path, disable_passes=NO_PLAN)
    for batch in (1, 2):
        feeds = zoo.inputs(name, batch, seed=batch)
        for _ in range(2):                 # the second run reuses the first one's frame
            a, b = with_plan.run(feeds), without.run(feeds)
            for k in a:
                np.testing.assert_allclose(a[k], b[k], rtol=1e-5, atol=1e-6, err_msg=f"{name} {k}")


def test_feeds_like_the_last_ones_skip_the_full_checks_but_others_are_still_refused():
    m = model([node("Relu", ["x"], "a"), node("Neg", ["a"], "y")], {"x": ["n", 3]}, ["y"])
    c = irc.compile(m)
    x = f32(2, 3)
    np.testing.assert_array_equal(c.run({"x": x})["y"], -np.maximum(x, 0))
    np.testing.assert_array_equal(c.run({"x": x})["y"], -np.maximum(x, 0))
    with pytest.raises(irc.IrcError, match="input 'x': expected dtype f32"):
        c.run({"x": x.astype(np.float64)})
    with pytest.raises(irc.IrcError, match="unknown input"):
        c.run({"z": x})
    strided = f32(4, 6)[::2, ::2]
    np.testing.assert_array_equal(c.run({"x": strided})["y"], -np.maximum(strided, 0))
    np.testing.assert_array_equal(c.run({"x": x[:1]})["y"], -np.maximum(x[:1], 0))
