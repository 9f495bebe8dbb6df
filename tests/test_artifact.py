"""The artifact: round trip, determinism, and every kind of damage raising ArtifactError before use."""
import hashlib
import json
import os
import struct

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import irc
from irc.errors import ArtifactError, IrcError
from irc.ir import print_graph
from irc.runtime import artifact

CONSTS = {
    "w_f32": np.arange(24, dtype=np.float32).reshape(2, 3, 4) / 7,
    "w_f16": np.array([1.5, -2.25, 65504.0], np.float16),
    "w_i64": np.array([[-(2 ** 62), 3]], np.int64),
    "w_bool": np.array([True, False, True]),
    "w_u8": np.arange(5, dtype=np.uint8),
    "scalar": np.array(np.pi, np.float64),
    "empty": np.zeros((0, 3), np.float32),
}


def consts_model():
    """x passes through Identity (symbolic batch), every constant is an output (kept at -O0), plus Shape."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3])
    nodes = [helper.make_node("Identity", ["x"], ["y"], name="id_x"),
             helper.make_node("Shape", ["x"], ["s"], name="shape_x")]
    nodes += [helper.make_node("Identity", [k], [f"out_{k}"], name=f"id_{k}") for k in CONSTS]
    outs = ["y", "s"] + [f"out_{k}" for k in CONSTS]
    g = helper.make_graph(nodes, "consts", [x],
                          [helper.make_tensor_value_info(o, TensorProto.UNDEFINED, None) for o in outs],
                          [numpy_helper.from_array(v, k) for k, v in CONSTS.items()])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


@pytest.fixture(scope="module")
def compiled():
    return irc.compile(consts_model(), opt_level=0)


@pytest.fixture
def saved(compiled, tmp_path):
    path = tmp_path / "model.bin"
    compiled.save(path)
    return path


def feeds(batch=2):
    return {"x": np.random.default_rng(0).standard_normal((batch, 3)).astype(np.float32)}


def test_round_trip_same_outputs_and_ir(compiled, saved):
    loaded = irc.load(saved)
    assert print_graph(loaded.graph) == print_graph(compiled.graph)
    assert (loaded.input_names, loaded.output_names) == (compiled.input_names, compiled.output_names)
    assert (loaded.target, loaded.options) == ("cpu", {"opt_level": 0, "disable_passes": []})
    for batch in (1, 4):
        a, b = compiled.run(feeds(batch)), loaded.run(feeds(batch))
        assert list(a) == list(b)
        for name in a:
            assert a[name].dtype == b[name].dtype and a[name].shape == b[name].shape, name
            assert a[name].tobytes() == b[name].tobytes(), name
    for k, v in CONSTS.items():
        got = loaded.run(feeds())[f"out_{k}"]
        assert got.dtype == v.dtype and got.tobytes() == v.tobytes(), k


def test_tensors_are_aligned_read_only_views(saved):
    art = irc.load(saved).artifact
    assert art.format_version == artifact.FORMAT_VERSION and art.file_size == os.path.getsize(saved)
    raw = saved.read_bytes()
    data_off = struct.unpack_from("<Q", raw, 64)[0]
    assert len(art.tensors) == len(CONSTS)
    for entry, view in zip(art.manifest["tensors"], art.tensors):
        assert (data_off + entry["offset"]) % 64 == 0
        assert not view.flags.writeable
        assert entry["name"] in CONSTS and view.tobytes() == CONSTS[entry["name"]].tobytes()
    assert art.constant_bytes == sum(v.nbytes for v in CONSTS.values())


def test_manifest_describes_the_model(saved):
    m = irc.load(saved).artifact.manifest
    assert m["irc_version"] == irc.__version__ and m["target"] == "cpu"
    assert m["inputs"] == [{"name": "x", "dtype": "f32", "shape": ["batch", 3]}]
    assert m["outputs"][:2] == [{"name": "y", "dtype": "f32", "shape": ["batch", 3]},
                                {"name": "s", "dtype": "i64", "shape": [2]}]
    assert "dense_resource<0>" in m["graph"]


def test_inference_session_reads_an_artifact(compiled, saved):
    s = irc.InferenceSession(str(saved))
    assert [i.name for i in s.get_inputs()] == ["x"]
    y, shape = s.run(["y", "s"], feeds(3))
    np.testing.assert_array_equal(y, feeds(3)["x"])
    np.testing.assert_array_equal(shape, [3, 3])
    other = saved.with_name("model.irc")  # recognized by its magic bytes, whatever its name
    other.write_bytes(saved.read_bytes())
    assert irc.InferenceSession(other).model.artifact.path == str(other)


def test_saving_is_deterministic(compiled, tmp_path):
    again = irc.compile(consts_model(), opt_level=0)
    compiled.save(tmp_path / "a.bin")
    again.save(tmp_path / "b.bin")
    irc.load(tmp_path / "a.bin").save(tmp_path / "c.bin")
    a = (tmp_path / "a.bin").read_bytes()
    assert a == (tmp_path / "b.bin").read_bytes() == (tmp_path / "c.bin").read_bytes()


def test_saving_replaces_atomically_and_leaves_no_temporary(compiled, tmp_path):
    path = tmp_path / "model.bin"
    path.write_bytes(b"old contents")
    compiled.save(path)
    assert irc.load(path).output_names == compiled.output_names
    assert sorted(os.listdir(tmp_path)) == ["model.bin"]
    with pytest.raises(IrcError, match="cannot write"):
        compiled.save(tmp_path / "missing-dir" / "model.bin")


def test_string_constants_cannot_be_saved(tmp_path):
    t = helper.make_tensor("names", TensorProto.STRING, [2], [b"a", b"b"])
    g = helper.make_graph([helper.make_node("Identity", ["names"], ["out"], name="id")], "s", [],
                          [helper.make_tensor_value_info("out", TensorProto.STRING, [2])], [t])
    m = irc.compile(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), opt_level=0)
    with pytest.raises(IrcError, match="cannot be saved"):
        m.save(tmp_path / "s.bin")
    assert not os.listdir(tmp_path)


# -- damage ---------------------------------------------------------------------------------------------

def _flip(offset):
    def damage(raw):
        raw = bytearray(raw)
        raw[offset if offset >= 0 else len(raw) + offset] ^= 0x01
        return bytes(raw)
    return damage


def _manifest_start(raw):
    return struct.unpack_from("<Q", raw, 48)[0]


DAMAGE = {
    "empty": (lambda raw: b"", "shorter than"),
    "truncated header": (lambda raw: raw[:40], "shorter than"),
    "truncated data": (lambda raw: raw[:-1], "truncated"),
    "extra byte": (lambda raw: raw + b"\0", "truncated or extended"),
    "wrong magic": (lambda raw: b"ONNXMODL" + raw[8:], "not an irc model"),
    "wrong version": (lambda raw: raw[:8] + struct.pack("<I", 2) + raw[12:], "format version 2"),
    "reserved field": (_flip(12), "reserved"),
    "checksum byte": (_flip(20), "checksum"),
    "manifest offset field": (_flip(48), "manifest offset"),
    "manifest length field": (_flip(56 + 3), "overlaps"),
    "data offset field": (_flip(64), "aligned"),
    "header padding": (_flip(100), "checksum"),
    "manifest byte": (lambda raw: _flip(_manifest_start(raw) + 10)(raw), "checksum"),
    "data byte": (_flip(-5), "checksum"),
}


@pytest.mark.parametrize("kind", list(DAMAGE))
def test_damaged_file_raises_artifact_error(saved, kind):
    damage, message = DAMAGE[kind]
    saved.write_bytes(damage(saved.read_bytes()))
    with pytest.raises(ArtifactError, match=message) as e:
        irc.load(saved)
    assert "byte offset" in str(e.value) and str(saved) in str(e.value)


def _repack(raw, edit):
    """The file with ``edit(manifest)`` applied and its checksum recomputed: damage that passes the checksum."""
    m_off, m_len, d_off, d_len = struct.unpack_from("<QQQQ", raw, 48)
    manifest = json.loads(raw[m_off:m_off + m_len])
    edit(manifest)
    mbytes = json.dumps(manifest).encode()
    new_d_off = (m_off + len(mbytes) + 63) // 64 * 64
    body = bytearray(raw[:m_off]) + mbytes
    body += b"\0" * (new_d_off - len(body)) + raw[d_off:]
    struct.pack_into("<QQQQ", body, 48, m_off, len(mbytes), new_d_off, d_len)
    body[16:48] = hashlib.sha256(bytes(body[48:])).digest()
    return bytes(body)


def _set(path, value):
    def edit(m):
        obj = m
        for k in path[:-1]:
            obj = obj[k]
        obj[path[-1]] = value
    return edit


BAD_MANIFESTS = {
    "missing field": (lambda m: m.pop("tensors"), "'tensors' is missing"),
    "field of wrong type": (_set(["options"], [1]), "'options' is missing or not a dict"),
    "version disagrees": (_set(["format_version"], 7), "differs from the header"),
    "unknown dtype": (_set(["tensors", 0, "dtype"], "str"), "unknown dtype"),
    "negative dim": (_set(["tensors", 0, "shape"], [-1, 3]), "bad shape"),
    "size mismatch": (_set(["tensors", 0, "nbytes"], 4), "do not hold"),
    "offset past the end": (_set(["tensors", 0, "offset"], 1 << 40), "past its end"),
    "unaligned offset": (_set(["tensors", 1, "offset"], 65), "unaligned"),
    "bad input type": (_set(["inputs", 0, "dtype"], "f128"), "unknown dtype"),
    "unknown op": (lambda m: m.update(graph=m["graph"].replace("shape(", "evil(")), "unknown op"),
    "resource out of range": (lambda m: m.update(graph=m["graph"].replace("dense_resource<0>",
                                                                          "dense_resource<99>")),
                              "not in the tensor table"),
    "graph text": (_set(["graph"], "graph main( {"), "graph is invalid"),
    "deeply nested graph text": (_set(["graph"], "graph main() {\n  %0 = identity() {a=" + "[" * 100000),
                                 "graph is invalid"),
    "inputs disagree": (_set(["inputs", 0, "shape"], [1, 3]), "do not match its graph"),
    "target": (_set(["target"], "tpu"), "target 'tpu'"),
}


@pytest.mark.parametrize("kind", list(BAD_MANIFESTS))
def test_bad_manifest_with_valid_checksum_raises_artifact_error(saved, kind):
    edit, message = BAD_MANIFESTS[kind]
    saved.write_bytes(_repack(saved.read_bytes(), edit))
    with pytest.raises(ArtifactError, match=message):
        irc.load(saved)


def test_repacking_without_an_edit_still_loads(saved):
    saved.write_bytes(_repack(saved.read_bytes(), lambda m: None))
    assert irc.load(saved).output_names[0] == "y"


def test_not_an_artifact(tmp_path):
    onnx_path = tmp_path / "m.onnx"
    onnx_path.write_bytes(consts_model().SerializeToString())
    with pytest.raises(ArtifactError, match="not an irc model"):
        irc.load(onnx_path)
    with pytest.raises(ArtifactError, match="cannot read"):
        irc.load(tmp_path / "missing.bin")
    assert not artifact.is_artifact(onnx_path)
