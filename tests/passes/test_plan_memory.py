"""plan-memory: live ranges, in-place elementwise results, views, outputs and offsets of the arena.

Each case is a small graph in the text form; the checks name its results by position (``r(i)``: the result
of the i-th node that is not a constant). ``assert_sound`` checks the invariants every plan must keep.
"""
import numpy as np
import pytest

from irc.frontend import import_onnx
from irc.ir import parse_graph
from irc.passes import PassManager, pipeline
from irc.passes.plan_memory import ALIGN, Effects, ir_effects, nbytes, plan_memory
from tests.passes.fixtures import exporter_model


def results(graph):
    return [n.outputs[0] for n in graph.nodes if n.op != "const"]


def plan_of(text, **kw):
    g = parse_graph(text)
    return g, plan_memory(g, **kw), results(g)


def assert_sound(graph, plan):
    """Offsets aligned; results never in the arena that are graph outputs; two placed results whose live
    ranges overlap never share bytes, unless one overwrites the other in place at the step where it dies."""
    assert not set(plan.offsets) & set(graph.outputs)
    placed = list(plan.offsets)

    def root(v):
        while v in plan.inplace:
            v = plan.inplace[v]
        return v
    for v in placed:
        assert plan.offsets[v] % ALIGN == 0
        assert plan.offsets[v] + nbytes(v) <= plan.arena_bytes
    live = plan.live
    for i, a in enumerate(placed):
        for b in placed[i + 1:]:
            (sa, ea), (sb, eb) = live[a], live[b]
            if sa > eb or sb > ea or root(a) is root(b):
                continue
            oa, ob = plan.offsets[a], plan.offsets[b]
            assert oa + nbytes(a) <= ob or ob + nbytes(b) <= oa, f"{a} and {b} overlap while both live"


CHAIN = """graph main(%x: f32[16]) {
  %0 = relu(%x) : f32[16]
  %1 = neg(%0) : f32[16]
  %2 = exp(%1) : f32[16]
  %3 = sigmoid(%2) : f32[16]
  return %3 as "y"
}
"""


def test_a_chain_of_elementwise_ops_overwrites_one_buffer():
    g, plan, r = plan_of(CHAIN)
    assert plan.inplace == {r[1]: r[0], r[2]: r[1]}
    assert [plan.offsets[v] for v in r[:3]] == [0, 0, 0] and r[3] not in plan.offsets   # the output is not
    assert plan.arena_bytes == 64 and plan.intermediate_bytes == 3 * 64 and plan.unplanned_bytes == 0
    assert plan.peak_bytes == 64
    assert_sound(g, plan)


def test_no_result_overwrites_an_operand_another_step_still_reads():
    g, plan, r = plan_of("""graph main(%x: f32[16]) {
  %0 = relu(%x) : f32[16]
  %1 = neg(%0) : f32[16]
  %2 = add(%0, %1) : f32[16]
  %3 = exp(%2) : f32[16]
  return %3 as "y"
}
""")
    assert r[1] not in plan.inplace                  # %0 is read again by the add
    assert plan.offsets[r[1]] != plan.offsets[r[0]]
    assert plan.inplace[r[2]] in (r[0], r[1])        # the add is the last reader of both
    assert_sound(g, plan)


def test_a_view_keeps_what_it_views_alive():
    """%1 views %0; %0's last direct reader is step 2, but the view is read at step 4: nothing made in
    between may take %0's bytes, and the neg cannot overwrite it."""
    g, plan, r = plan_of("""graph main(%x: f32[4, 4]) {
  %s = const() {value=dense<16>} : i64[1]
  %0 = exp(%x) : f32[4, 4]
  %1 = reshape(%0, %s) : f32[16]
  %2 = neg(%0) : f32[4, 4]
  %3 = relu(%2) : f32[4, 4]
  %4 = reshape(%3, %s) : f32[16]
  %5 = add(%1, %4) : f32[16]
  return %5 as "y"
}
""")
    assert r[1] not in plan.offsets and plan.live[r[0]] == (0, 5)
    assert r[2] not in plan.inplace
    assert plan.offsets[r[3]] != plan.offsets[r[0]] and plan.offsets[r[2]] != plan.offsets[r[0]]
    assert_sound(g, plan)


def test_an_output_viewing_a_result_keeps_that_result_out_of_the_arena():
    g, plan, r = plan_of("""graph main(%x: f32[4, 4]) {
  %s = const() {value=dense<16>} : i64[1]
  %0 = exp(%x) : f32[4, 4]
  %1 = reshape(%0, %s) : f32[16]
  %2 = neg(%x) : f32[4, 4]
  return %1 as "y", %2 as "z"
}
""")
    assert plan.offsets == {} and plan.arena_bytes == 0
    assert plan.intermediate_bytes == 64 and plan.unplanned_bytes == 64


SPLIT = """graph main(%x: f32[8]) {
  %0 = relu(%x) : f32[8]
  %1, %2 = split(%0) {axis=0, num_outputs=2} : f32[4], f32[4]
  %3 = relu(%x) : f32[8]
  %4 = neg(%1) : f32[4]
  return %4 as "y", %3 as "z"
}
"""


@pytest.mark.parametrize("views,end", [((), 1), (None, 3)])
def test_multi_result_nodes_stay_out_of_the_arena_and_may_view_their_operands(views, end):
    """A split is never placed; when its kernel may return views (``views=None``), its operand lives as
    long as the split's results."""
    def effects(n):
        return Effects(views=views) if n.op == "split" else ir_effects(n)
    g, plan, r = plan_of(SPLIT, effects_of=effects)
    split = [n for n in g.nodes if n.op == "split"][0]
    assert not set(split.outputs) & set(plan.offsets)
    assert plan.live[r[0]] == (0, end)
    assert_sound(g, plan)


def test_results_of_disjoint_live_ranges_share_the_arena():
    """Transposes write no operand in place: at most two [8, 8] results live at once."""
    g, plan, r = plan_of("""graph main(%x: f32[8, 8]) {
  %0 = transpose(%x) {perm=[1, 0]} : f32[8, 8]
  %1 = transpose(%0) {perm=[1, 0]} : f32[8, 8]
  %2 = transpose(%1) {perm=[1, 0]} : f32[8, 8]
  %3 = transpose(%2) {perm=[1, 0]} : f32[8, 8]
  return %3 as "y"
}
""")
    assert plan.inplace == {}
    assert plan.arena_bytes == 2 * 256 and plan.intermediate_bytes == 3 * 256
    assert plan.offsets[r[0]] == plan.offsets[r[2]] != plan.offsets[r[1]]
    assert_sound(g, plan)


def test_the_arena_is_the_most_bytes_live_at_one_step():
    """Step 2 reads %0 and %1 and makes %2: 1024 + 64 + 1088 bytes; %3 later reuses freed bytes."""
    g, plan, r = plan_of("""graph main(%x: f32[256], %y: f32[16]) {
  %0 = transpose(%x) {perm=[0]} : f32[256]
  %1 = transpose(%y) {perm=[0]} : f32[16]
  %2 = concat(%0, %1) {axis=0} : f32[272]
  %3 = transpose(%y) {perm=[0]} : f32[16]
  %4 = concat(%2, %3) {axis=0} : f32[288]
  return %4 as "y"
}
""")
    assert plan.arena_bytes == 1024 + 64 + 1088 and plan.intermediate_bytes == 1024 + 64 + 1088 + 64
    assert_sound(g, plan)


def test_staged_inputs_are_placed_from_the_first_step_unless_an_output_is_them():
    text = """graph main(%x: f32[16], %w: f32[16]) {
  %0 = relu(%x) : f32[16]
  %1 = add(%0, %w) : f32[16]
  return %1 as "y", %w as "w"
}
"""
    g = parse_graph(text)
    x, w = g.inputs
    plan = plan_memory(g, staged=[x, w])
    assert x in plan.offsets and w not in plan.offsets
    assert plan.inplace == {results(g)[0]: x}
    assert_sound(g, plan)


def test_unknown_dims_are_neither_placed_nor_counted():
    g, plan, r = plan_of("""graph main(%x: f32[16]) {
  %0 = nonzero(%x) : i64[1, ?]
  %1 = transpose(%0) {perm=[1, 0]} : i64[?, 1]
  return %1 as "y"
}
""")
    assert plan.offsets == {} and plan.intermediate_bytes == 0


def test_the_pass_runs_last_at_O2_and_records_the_plan_of_a_static_graph():
    assert pipeline(2)[-1] == "plan-memory" and "plan-memory" not in pipeline(1)
    g = PassManager(["plan-memory"]).run(parse_graph(CHAIN))
    assert g.memory.arena_bytes == 64
    symbolic = PassManager(pipeline(2)).run(import_onnx(exporter_model()))
    assert symbolic.memory is None                   # a batch dim: planned per binding by the executor


def test_plans_of_an_exported_model_bound_to_static_shapes_are_sound():
    from irc.runtime.executor import Executor
    g = PassManager(pipeline(2)).run(import_onnx(exporter_model()))
    ex = Executor(g)
    for batch in (1, 3):
        arrays = [np.zeros([batch if isinstance(d, str) else d for d in v.type.shape], v.type.numpy_dtype)
                  for v in g.inputs]
        bound = ex.bind(arrays)
        plan = plan_memory(bound)
        assert plan.intermediate_bytes > 0
        assert_sound(bound, plan)
