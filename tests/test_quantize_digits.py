"""The digits example on a small budget: int8 accuracy within 1 point of fp32, and irc running onnxruntime's
own QDQ quantization of the model in agreement with onnxruntime (skipped without torch or scikit-learn);
the int8 benchmark tool's table."""
import importlib.util
import math
import os
import sys

import numpy as np
import pytest

ROOT = os.path.join(os.path.dirname(__file__), "..")


def _load(name, *path):
    spec = importlib.util.spec_from_file_location(name, os.path.join(ROOT, *path))
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    pytest.importorskip("torch")
    pytest.importorskip("sklearn")
    example = _load("quantize_digits", "examples", "quantize_digits.py")
    return example.quantize_digits(epochs=6, calibration_samples=128, outdir=str(tmp_path_factory.mktemp("digits")),
                                   timing=False)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_int8_accuracy_within_one_point_of_fp32(digits):
    r = digits
    assert r["fp32_accuracy"] > 0.9
    assert r["int8_accuracy"] >= r["fp32_accuracy"] - 0.01
    assert not r["report"].fallback and r["report"].outputs["logits"] > 25
    assert r["int8_bytes"] < r["fp32_bytes"] / 2


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_onnxruntime_qdq_model_agrees_with_onnxruntime(digits):
    r = digits
    assert r["qdq_agreement"] >= 0.99
    assert r["qdq_irc_accuracy"] >= r["fp32_accuracy"] - 0.01
    assert abs(r["qdq_irc_accuracy"] - r["qdq_ort_accuracy"]) <= 0.01


def test_bench_int8_table():
    tool = _load("bench_int8", "tools", "bench_int8.py")
    rows = [tool.Row("irc fp32", 40.0), tool.Row("irc int8", 20.0, 0.96875, 29.31),
            tool.Row("onnxruntime fp32", 50.0), tool.Row("onnxruntime int8", 10.0, 1.0, 30.0)]
    lines = tool.format_table(rows).splitlines()
    assert lines[0].split("|")[1:-1] == [" run ", " median ms ", " irc int8 / run ", " top-1 agreement with fp32 ",
                                         " logits SQNR vs fp32 dB "]
    assert lines[1] == "|---|---:|---:|---:|---:|"
    assert lines[2] == "| irc fp32 | 40.00 | 0.50 | - | - |"
    assert lines[3] == "| irc int8 | 20.00 | 1.00 | 96.9% | 29.3 |"
    assert lines[4] == "| onnxruntime fp32 | 50.00 | 0.40 | - | - |"
    assert lines[5] == "| onnxruntime int8 | 10.00 | 2.00 | 100.0% | 30.0 |"


def test_bench_int8_sqnr():
    tool = _load("bench_int8", "tools", "bench_int8.py")
    ref = np.array([3.0, 4.0], np.float32)
    assert tool.sqnr_db(ref, ref) == math.inf
    assert tool.sqnr_db(ref, ref + np.array([0.0, 0.5], np.float32)) == pytest.approx(20.0)   # 25 / 0.25
