"""The digits example on a small budget: int8 accuracy within 1 point of fp32 (skipped without torch)."""
import importlib.util
import os

import pytest

pytest.importorskip("torch")
pytest.importorskip("sklearn")

EXAMPLE = os.path.join(os.path.dirname(__file__), "..", "examples", "quantize_digits.py")


def _example():
    spec = importlib.util.spec_from_file_location("quantize_digits", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_int8_accuracy_within_one_point_of_fp32(tmp_path):
    r = _example().quantize_digits(epochs=6, calibration_samples=128, outdir=str(tmp_path), timing=False)
    assert r["fp32_accuracy"] > 0.9
    assert r["int8_accuracy"] >= r["fp32_accuracy"] - 0.01
    assert not r["report"].fallback and r["report"].outputs["logits"] > 25
    assert r["int8_bytes"] < r["fp32_bytes"] / 2
