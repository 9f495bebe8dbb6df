"""The smallest end-to-end path: import, compile, run, symbolic batch."""
import numpy as np

import irc
from tests.util import node_model


def test_shape_of_symbolic_batch_binds_at_run_time():
    x = np.zeros((5, 3), np.float32)
    m = node_model("Shape", {"x": x}, symbolic={"x": ["batch", 3]})
    cm = irc.compile(m)
    assert cm.input_names == ["x"] and cm.output_names == ["out0"]
    for batch in (1, 5, 7):
        out = cm.run({"x": np.zeros((batch, 3), np.float32)})["out0"]
        np.testing.assert_array_equal(out, [batch, 3])
