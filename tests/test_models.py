"""Whole models against onnxruntime: the exported zoo (tools/export_zoo.py), the onnx package's light_* models
and the shipped example (examples/digits_cnn.onnx).

Every model is compiled, written as an artifact, loaded back and run; each output must match onnxruntime at
max abs err <= 1e-3 * max(1, max|ref|). Zoo models have a dynamic batch axis and run at batch 1 and 2.
"""
import os

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

import irc
from tests.util import assert_close, run_ort

ZOO_MODELS = ["mlp", "senet", "convnext", "unet", "gpt", "bert", "vgg11", "mobilenetv2", "resnet18"]
EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples")
LIGHT_DIR = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data", "light")
LIGHT_MODELS = sorted(f[:-5] for f in os.listdir(LIGHT_DIR) if f.startswith("light_") and f.endswith(".onnx"))


def save_and_load(model: irc.CompiledModel, path) -> irc.CompiledModel:
    """The artifact round trip every model goes through before it runs: save to ``path``, load it back."""
    model.save(path)
    return irc.load(path)


def check_outputs(got: dict, expected, model: onnx.ModelProto, what: str) -> None:
    """``got`` (irc's name -> array) has the model's outputs in graph order and each is close to ``expected``."""
    assert list(got) == [o.name for o in model.graph.output]
    for (name, actual), ref in zip(got.items(), expected):
        assert_close(actual, ref, what=f"{name} vs {what}")


def light_input(value_info: onnx.ValueInfoProto) -> np.ndarray:
    """The input onnx's backend test runner feeds a light_* model (and computed its stored output from):
    arange(n) / n in the input's shape, unknown dims taken as 1."""
    shape = tuple(d.dim_value if d.HasField("dim_value") else 1 for d in value_info.type.tensor_type.shape.dim)
    n = int(np.prod(shape))
    return (np.arange(n).reshape(shape) / n).astype(np.float32)


def test_zoo_lists_every_exported_model(zoo):
    assert sorted(zoo.names) == sorted(ZOO_MODELS)


def check_zoo_model(zoo, name: str, dynamo: bool, tmp_path) -> None:
    """Compile, save and load zoo model ``name``, then compare it with onnxruntime at batch 1 and 2."""
    path = zoo.path(name, dynamo)
    model = onnx.load(path)
    compiled = save_and_load(irc.compile(path), tmp_path / "model.bin")
    assert compiled.input_names == [i.name for i in model.graph.input]
    for batch in (1, 2):
        feeds = zoo.inputs(name, batch, seed=batch)
        check_outputs(compiled.run(feeds), run_ort(model, feeds), model, f"onnxruntime at batch {batch}")


@pytest.mark.parametrize("name", ZOO_MODELS)
def test_zoo_model_matches_onnxruntime(name, zoo, tmp_path):
    check_zoo_model(zoo, name, False, tmp_path)


@pytest.mark.parametrize("name", ZOO_MODELS)
def test_zoo_model_from_dynamo_exporter_matches_onnxruntime(name, zoo, tmp_path):
    """The dynamo exporter's graphs differ (opset 18 for some, ReduceMean axes as an input, Expand, Squeeze)."""
    pytest.importorskip("onnxscript", reason="the dynamo exporter needs onnxscript")
    check_zoo_model(zoo, name, True, tmp_path)


@pytest.mark.parametrize("name", LIGHT_MODELS)
def test_light_model_matches_onnxruntime_and_stored_output(name, tmp_path):
    model = onnx.load(os.path.join(LIGHT_DIR, f"{name}.onnx"))
    initializers = {t.name for t in model.graph.initializer}
    feeds = {i.name: light_input(i) for i in model.graph.input if i.name not in initializers}
    compiled = save_and_load(irc.compile(model), tmp_path / f"{name}.bin")
    got = compiled.run(feeds)
    check_outputs(got, run_ort(model, feeds), model, "onnxruntime")
    stored = numpy_helper.to_array(onnx.load_tensor(os.path.join(LIGHT_DIR, f"{name}_output_0.pb")))
    assert_close(next(iter(got.values())), stored, what=f"{name} vs its stored output_0.pb")


def test_example_digits_cnn_matches_onnxruntime(tmp_path):
    model = onnx.load(os.path.join(EXAMPLES, "digits_cnn.onnx"))
    with np.load(os.path.join(EXAMPLES, "digits_input.npz")) as npz:
        feeds = dict(npz)
    compiled = save_and_load(irc.compile(model), tmp_path / "digits_cnn.bin")
    check_outputs(compiled.run(feeds), run_ort(model, feeds), model, "onnxruntime")
