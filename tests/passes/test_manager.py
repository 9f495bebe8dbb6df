"""The pass manager: pipelines per -O level, --disable-pass, print-after, verify-each, timing, failures."""
import io

import pytest

from irc import IrcError
from irc.errors import UnsupportedError
from irc.ir import parse_graph, print_graph
from irc.passes import ORDER, PASSES, PassManager, pipeline
from irc.passes.manager import PassInfo

TEXT = """\
graph main(%x: f32[2]) {
  %0 = const() {value=dense<1.0, 2.0>} : f32[2]
  %1 = const() {value=dense<1.0, 2.0>} : f32[2]
  %2 = add(%0, %1) : f32[2]
  %3 = identity(%x) : f32[2]
  %4 = mul(%3, %2) : f32[2]
  return %4 as "y"
}
"""


@pytest.fixture
def extra_pass(monkeypatch):
    """Register a throwaway pass ``fn`` under ``name`` for one test."""
    def add(name, fn):
        monkeypatch.setitem(PASSES, name, PassInfo(name, fn, 1, ""))
    return add


def test_pipelines_per_level():
    assert pipeline(0) == []
    assert pipeline(1) == ["simplify", "fold-constants", "simplify", "cse", "dce"]
    for level in (1, 2):  # a level runs what the one below runs, in the same order, and maybe more
        higher = iter(pipeline(level + 1))
        assert all(p in higher for p in pipeline(level))
    assert set(pipeline(3)) <= set(ORDER)
    with pytest.raises(IrcError, match="optimization level must be 0 to 3, got 4"):
        pipeline(4)


def test_disable_pass_removes_every_run_of_it():
    assert pipeline(1, disable=["simplify", "cse"]) == ["fold-constants", "dce"]


def test_unknown_pass_names_are_errors_listing_the_known_ones():
    with pytest.raises(IrcError, match=r"--disable-pass: unknown pass name\(s\) 'fuze'; passes are: .*cse"):
        pipeline(2, disable=["fuze"])
    with pytest.raises(IrcError, match=r"--print-after: unknown pass name\(s\) 'nope'"):
        PassManager(["dce"], print_after=["nope"])
    with pytest.raises(IrcError, match=r"pipeline: unknown pass name\(s\) 'nope'"):
        PassManager(["nope"])


def test_print_after_a_pass_the_pipeline_does_not_run_is_an_error():
    with pytest.raises(IrcError, match=r"--print-after: pass\(es\) 'cse' do not run in this pipeline \(no passes\)"):
        PassManager(pipeline(0), print_after=["cse"])


def test_print_after_all_prints_a_header_and_the_ir_after_each_pass():
    out = io.StringIO()
    g = PassManager(pipeline(1), print_after_all=True, out=out).run(parse_graph(TEXT))
    text = out.getvalue()
    headers = [ln for ln in text.splitlines() if ln.startswith("// IR after ")]
    assert headers == [f"// IR after {p}" for p in pipeline(1)]
    assert text.endswith(print_graph(g) + "\n")
    assert "add(" not in text.split("// IR after fold-constants\n")[1]


def test_print_after_one_pass_prints_only_that_one():
    out = io.StringIO()
    PassManager(pipeline(1), print_after=["cse"], out=out).run(parse_graph(TEXT))
    text = out.getvalue()
    assert text.startswith("// IR after cse\ngraph main(") and text.count("// IR after") == 1


def test_time_passes_reports_each_run_and_the_total():
    out = io.StringIO()
    pm = PassManager(["simplify", "dce"], time_passes=True, out=out)
    pm.run(parse_graph(TEXT))
    lines = out.getvalue().splitlines()
    assert [ln.split()[0] for ln in lines] == ["pass", "simplify", "dce", "total"]
    assert [name for name, _ in pm.timings] == ["simplify", "dce"]
    assert all(t >= 0 for _, t in pm.timings)


def _corrupt(graph):
    graph.nodes[-1].attrs["bogus"] = 1
    return graph


def test_verify_each_names_the_pass_that_broke_the_graph(extra_pass):
    extra_pass("corrupt", _corrupt)
    pm = PassManager(["simplify", "corrupt", "dce"], verify_each=True)
    with pytest.raises(IrcError, match=r"pass corrupt failed \(after passes: simplify\): IR verification failed"):
        pm.run(parse_graph(TEXT))
    PassManager(["simplify", "corrupt"]).run(parse_graph(TEXT))  # without verify-each it goes unnoticed


def test_verify_each_checks_the_graph_it_is_given():
    g = _corrupt(parse_graph(TEXT))
    with pytest.raises(IrcError, match="the graph given to the pass pipeline is invalid"):
        PassManager(["dce"], verify_each=True).run(g)


def test_a_failing_pass_is_named_with_the_passes_before_it(extra_pass):
    def refuses(graph):
        raise UnsupportedError("node 'k': cannot do this")

    def crashes(graph):
        return {}["missing"]
    extra_pass("refuses", refuses)
    extra_pass("crashes", crashes)
    with pytest.raises(UnsupportedError, match=r"^pass refuses failed \(after passes: dce, cse\): node 'k'"):
        PassManager(["dce", "cse", "refuses"]).run(parse_graph(TEXT))
    with pytest.raises(IrcError, match=r"^pass crashes crashed \(after passes: none\): KeyError: 'missing'"):
        PassManager(["crashes"]).run(parse_graph(TEXT))
