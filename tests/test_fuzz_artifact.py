"""Artifact fuzzing: seeded mutations of a saved model thrown at ``irc.load`` + ``run``.

Each mutation belongs to a category. Raw damage (bit flips, truncation, header fields) is made without
fixing the checksum; every other category rewrites the manifest and then recomputes the checksum and
the header's lengths, so the manifest's own validation is what has to refuse it. A mutated file may be
refused with an IrcError, or load and give the original's outputs bit for bit; nothing else may come
out: no other exception, no hang, no different output. The one exception is the category of random
manifest bytes, which can turn a number in the graph text into another valid model: there an accepted
file must agree with the reference interpreter on the graph it describes (counted as "valid edit").

``IRC_FUZZ_ITERATIONS`` (default 360) and ``IRC_FUZZ_SEED`` (default 0) scale up or vary a run:

    IRC_FUZZ_ITERATIONS=20000 IRC_FUZZ_SEED=7 python3 -m pytest -q -s tests/test_fuzz_artifact.py
"""
import collections
import hashlib
import json
import os
import re
import signal
import struct
import traceback

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import irc
from irc.errors import ArtifactError, IrcError
from irc.ops.interpret import interpret

ITERATIONS = int(os.environ.get("IRC_FUZZ_ITERATIONS", "360"))
SEED = int(os.environ.get("IRC_FUZZ_SEED", "0"))
HANG_SECONDS = 20


def fuzz_model():
    """Conv, LeakyRelu, MaxPool, Flatten, Gemm, Softmax, Concat and ReduceMean over a symbolic batch: five
    constants of distinct shapes and attributes of every kind (ints, floats, lists, strings)."""
    rng = np.random.default_rng(0)

    def param(*shape):
        return rng.standard_normal(shape).astype(np.float32)

    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], name="conv", pads=[1, 1, 1, 1], strides=[1, 1]),
             helper.make_node("LeakyRelu", ["c"], ["r"], name="act", alpha=0.1),
             helper.make_node("MaxPool", ["r"], ["p"], name="pool", kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("Flatten", ["p"], ["f"], name="flat", axis=1),
             helper.make_node("Gemm", ["f", "w2", "b2"], ["g"], name="fc", transB=1),
             helper.make_node("Softmax", ["g"], ["y"], name="softmax", axis=1),
             helper.make_node("Concat", ["g", "g"], ["z"], name="cat", axis=1),
             helper.make_node("ReduceMean", ["z"], ["m"], name="mean", axes=[1], keepdims=0)]
    inits = [numpy_helper.from_array(param(4, 3, 3, 3), "w"), numpy_helper.from_array(param(4), "b"),
             numpy_helper.from_array(param(5, 64), "w2"), numpy_helper.from_array(param(5), "b2")]
    g = helper.make_graph(nodes, "fuzz", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 8, 8])],
                          [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in ("y", "m")], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


# -- the file's parts -------------------------------------------------------------------------------------

def split(raw: bytes):
    """(manifest dict, data bytes) of a well-formed artifact."""
    m_off, m_len, d_off, d_len = struct.unpack_from("<QQQQ", raw, 48)
    return json.loads(raw[m_off:m_off + m_len]), raw[d_off:d_off + d_len]


def pack(header: bytes, mbytes: bytes, data: bytes) -> bytes:
    """An artifact from the original's first 48 bytes, manifest bytes and data: lengths and checksum fixed."""
    d_off = (128 + len(mbytes) + 63) // 64 * 64
    body = bytearray(header[:48]) + bytes(80) + mbytes
    body += bytes(d_off - len(body)) + data
    struct.pack_into("<QQQQ", body, 48, 128, len(mbytes), d_off, len(data))
    return rechecksum(body)


def rechecksum(body) -> bytes:
    body = bytearray(body)
    body[16:48] = hashlib.sha256(bytes(body[48:])).digest()
    return bytes(body)


# -- mutations: each takes (rng, original bytes) and returns (description, mutated bytes) --------------------

def choice(rng, items):
    return items[int(rng.integers(len(items)))]


def bit_flip(rng, raw):
    b = bytearray(raw)
    flips = [(int(rng.integers(len(b))), int(rng.integers(8))) for _ in range(int(rng.integers(1, 4)))]
    for pos, bit in flips:
        b[pos] ^= 1 << bit
    return f"flip {flips}", bytes(b)


def truncation(rng, raw):
    if rng.random() < 0.15:
        extra = bytes(rng.integers(0, 256, int(rng.integers(1, 200)), dtype=np.uint8))
        return f"extend by {len(extra)}", raw + extra
    n = int(rng.integers(len(raw)))
    return f"truncate to {n}", raw[:n]


HEADER_FIELDS = {"version": (8, "<I"), "reserved": (12, "<I"), "manifest offset": (48, "<Q"),
                 "manifest length": (56, "<Q"), "data offset": (64, "<Q"), "data length": (72, "<Q")}


def header_field(rng, raw):
    name = choice(rng, list(HEADER_FIELDS))
    off, fmt = HEADER_FIELDS[name]
    limit = 2 ** (8 * struct.calcsize(fmt))
    old = struct.unpack_from(fmt, raw, off)[0]
    values = [v % limit for v in (0, 1, old + 1, old - 1, old + 64, old - 64, len(raw), len(raw) + 64, limit - 1,
                                  limit // 2, int(rng.integers(0, 2 ** 31)))]
    value = choice(rng, [v for v in values if v != old])
    b = bytearray(raw)
    struct.pack_into(fmt, b, off, value)
    return f"{name} {old} -> {value}", rechecksum(b)


def manifest_bytes(rng, raw):
    m_off, m_len = struct.unpack_from("<QQ", raw, 48)
    mb = bytearray(raw[m_off:m_off + m_len])
    edits = []
    for _ in range(int(rng.integers(1, 4))):
        pos, kind = int(rng.integers(len(mb))), choice(rng, ["replace", "insert", "delete"])
        byte = int(choice(rng, [rng.integers(32, 127), rng.integers(0, 256)]))
        if kind == "replace":
            mb[pos] = byte
        elif kind == "insert":
            mb.insert(pos, byte)
        else:
            del mb[pos]
        edits.append((kind, pos, byte))
    _, data = split(raw)
    return f"bytes {edits}", pack(raw, bytes(mb), data)


def _edit(raw, fn):
    """Apply ``fn(manifest) -> description`` and repack with a valid checksum."""
    manifest, data = split(raw)
    what = fn(manifest)
    return what, pack(raw, json.dumps(manifest).encode("utf-8"), data)


HUGE_SHAPES = [[2 ** 32, 2 ** 32], [2 ** 62], [10 ** 30], [2 ** 64, 0], [-1], ["a"], [1.5], None, {}, [True],
               [2 ** 31, 2 ** 31, 4]]
BAD_VALUES = ["0", 1.5, True, None, [], {}, -1, 2 ** 64, "", [1, 2]]


def tensor_table(rng, raw):
    def fn(m):
        ts = m["tensors"]
        i = int(rng.integers(len(ts)))
        t = ts[i]
        kind = choice(rng, ["offset", "overlap", "shape", "same-size shape", "dtype", "nbytes", "field type",
                            "remove", "duplicate", "swap"])
        if kind == "offset":
            t["offset"] = choice(rng, [-64, 1, 63, t["offset"] + 64, t["offset"] - 64, 2 ** 63, 2 ** 64, 10 ** 40])
        elif kind == "overlap":
            j = (i - 1) % len(ts)
            t["offset"] = ts[j]["offset"]
        elif kind == "shape":
            t["shape"] = choice(rng, HUGE_SHAPES)
        elif kind == "same-size shape":
            t["shape"] = [int(np.prod(t["shape"]))] + ([1] if rng.random() < 0.5 else [])
        elif kind == "dtype":
            t["dtype"] = choice(rng, ["f128", "", "object", "O", 5, None, "i32", "u32", "str", "f16", "f64", "bool"])
        elif kind == "nbytes":
            t["nbytes"] = choice(rng, [0, t["nbytes"] - 4, t["nbytes"] + 4, 2 ** 63, -t["nbytes"]])
        elif kind == "field type":
            key = choice(rng, ["name", "dtype", "shape", "offset", "nbytes"])
            t[key] = choice(rng, BAD_VALUES)
            kind += f" {key}={t[key]!r}"
        elif kind == "remove":
            del ts[i]
        elif kind == "duplicate":
            ts.insert(i, dict(t))
        else:
            j = int(rng.integers(len(ts)))
            ts[i], ts[j] = ts[j], ts[i]
        return f"tensor {i}: {kind}"
    return _edit(raw, fn)


def interface(rng, raw):
    def fn(m):
        kind = choice(rng, ["inputs", "outputs"])
        entries = m[kind]
        i = int(rng.integers(len(entries)))
        what = choice(rng, ["name", "dtype", "shape", "remove", "add", "not a dict"])
        if what == "name":
            entries[i]["name"] = choice(rng, ["zz", "", 5, None])
        elif what == "dtype":
            entries[i]["dtype"] = choice(rng, ["f64", "i64", "f128", "", 3])
        elif what == "shape":
            entries[i]["shape"] = choice(rng, [None, [], [1, 3, 8, 8], ["N", 3, 8], [-1, 3, 8, 8], [2 ** 70, 3, 8, 8],
                                               ["N", 3, 8, 9], "N", [["N"], 3, 8, 8]])
        elif what == "remove":
            del entries[i]
        elif what == "add":
            entries.append(dict(entries[i], name="extra"))
        else:
            entries[i] = choice(rng, [[], "x", 1, None])
        return f"{kind}[{i}]: {what}"
    return _edit(raw, fn)


TOP_VALUES = [None, 1, "x", [], {}, 1.5, True]


def top_level(rng, raw):
    def fn(m):
        key = choice(rng, sorted(m))
        what = choice(rng, ["remove", "type", "value"])
        if what == "remove":
            del m[key]
        elif what == "type":
            m[key] = choice(rng, TOP_VALUES)
        else:
            m[key] = {"format_version": choice(rng, [0, 2, -1, 2 ** 64]), "target": choice(rng, ["cuda", "tpu", ""]),
                      "graph": choice(rng, ["", "graph main() {\n}", "{" * 1000]),
                      "irc_version": "9.9.9", "options": {"opt_level": 7}}.get(key, choice(rng, TOP_VALUES))
        return f"{key}: {what} -> {m.get(key, '<removed>')!r:.60}"
    return _edit(raw, fn)


def neutral(rng, raw):
    """Edits that change nothing the model computes: the file must load and give the same outputs."""
    def fn(m):
        what = choice(rng, ["irc_version", "options", "reorder keys", "comment"])
        if what == "irc_version":
            m["irc_version"] = "0.0.0-other"
        elif what == "options":
            m["options"] = {"opt_level": 0, "note": [1, 2]}
        elif what == "reorder keys":
            for t in m["tensors"]:
                t.update(reversed(list(t.items())))
        else:
            m["graph"] = "// a comment\n" + m["graph"]
        return what
    return _edit(raw, fn)


def _graph_edit(rng, raw, fn):
    def edit(m):
        m["graph"], what = fn(m["graph"])
        return what
    return _edit(raw, edit)


def ir_text(rng, raw):
    def fn(text):
        lines = text.split("\n")
        kind = choice(rng, ["truncate", "delete line", "duplicate line", "swap lines", "garbage", "nesting",
                            "result type"])
        i, j = int(rng.integers(len(lines))), int(rng.integers(len(lines)))
        if kind == "truncate":
            return text[:int(rng.integers(len(text)))], kind
        if kind == "delete line":
            del lines[i]
        elif kind == "duplicate line":
            lines.insert(i, lines[i])
        elif kind == "swap lines":
            lines[i], lines[j] = lines[j], lines[i]
        elif kind == "garbage":
            pos = int(rng.integers(len(text)))
            # (numbers come with a space: glued to a literal they could make another valid model)
            junk = choice(rng, ["\0", "\udcff", "%", "{", "}", "(", ")", "<", ">", ",", "=", '"', "\\", "::",
                                "dense<", "f32[", " %99", "none", "...", " 1e999999", " " + "9" * 5000])
            return text[:pos] + junk + text[pos:], f"{kind} {junk[:10]!r} at {pos}"
        elif kind == "nesting":
            return text.replace("alpha=0.1", "alpha=" + "[" * int(rng.integers(10, 50000)), 1), kind
        else:
            lines[i] = re.sub(r": (\w+)\[([^\]]*)\]",
                              lambda mt: ": " + choice(rng, ["f16[", "i64[", "f32[*", "f32[7, ", "f32[M, "]) +
                              (mt.group(2) if not mt.group(0).endswith("*]") else "") + "]", lines[i], count=1)
        return "\n".join(lines), f"{kind} at line {i}"
    return _graph_edit(rng, raw, fn)


def unknown_op(rng, raw):
    def fn(text):
        ops = sorted(set(re.findall(r"= (\w+)\(", text)))
        op, new = choice(rng, ops), choice(rng, ["evil", "__import__", "os.system", "exec", "relu2", "Conv",
                                                 "eval", "pickle.loads", "const2"])
        return text.replace(f"= {op}(", f"= {new}(", 1), f"{op} -> {new}"
    return _graph_edit(rng, raw, fn)


# replacement values whose kind differs from the original's (number / list / string), so an accepted file
# cannot be a different valid model
CONFUSED = {"number": ['"x"', '[1, "a"]', '[[1]]', '[]', 'dense_resource<0>', 'none', '"1"', '[1]'],
            "list": ['"x"', '[[1], [2]]', '["a", "b"]', '1', '1.5', '[1.5, 2.5]', 'dense_resource<1>', 'none',
                     '[1, "a"]'],
            "string": ['1', '[1]', '1.5', 'none', '["NOTSET"]']}
ATTR = re.compile(r'(\w+)=(\[[^\]]*\]|"[^"]*"|-?[\d.e+-]+)(?=[,}])')


def attribute_type(rng, raw):
    def fn(text):
        attrs = [mt for mt in ATTR.finditer(text) if mt.group(1) != "value"]
        mt = choice(rng, attrs)
        val = mt.group(2)
        kind = "list" if val.startswith("[") else "string" if val.startswith('"') else "number"
        new = choice(rng, CONFUSED[kind])
        return text[:mt.start(2)] + new + text[mt.end(2):], f"{mt.group(1)}={val} -> {new}"
    return _graph_edit(rng, raw, fn)


def resource_ref(rng, raw):
    def fn(text):
        refs = list(re.finditer(r"dense_resource<(\d+)>", text))
        mt = choice(rng, refs)
        new = choice(rng, ["-1", "5", "99", str(2 ** 64), "10" * 30, "", "x", "0.5"] +
                     [str(k) for k in range(len(refs)) if str(k) != mt.group(1)])
        return text[:mt.start(1)] + new + text[mt.end(1):], f"resource {mt.group(1)} -> {new}"
    return _graph_edit(rng, raw, fn)


MUTATORS = {"bit flip": bit_flip, "truncation": truncation, "header field": header_field,
            "manifest bytes": manifest_bytes, "tensor table": tensor_table, "interface": interface,
            "top level": top_level, "neutral": neutral, "ir text": ir_text, "unknown op": unknown_op,
            "attribute type": attribute_type, "resource ref": resource_ref}
RAW = {"bit flip", "truncation", "header field"}   # checksum not recomputed (or header fields the checks cover)
MAY_EDIT = {"manifest bytes"}                        # may describe a different valid model
MUST_LOAD = {"neutral"}


# -- the loop ---------------------------------------------------------------------------------------------

class Hang(Exception):
    pass


def _alarm(signum, frame):
    raise Hang()


def same(a, b) -> bool:
    return list(a) == list(b) and all(a[k].dtype == b[k].dtype and a[k].shape == b[k].shape and
                                      np.array_equal(a[k], b[k], equal_nan=True) for k in a)


def agrees_with_reference(model, outs, feeds) -> bool:
    ref = interpret(model.graph, feeds)
    return all(np.allclose(o, r, rtol=1e-4, atol=1e-5, equal_nan=True) and o.shape == r.shape
               for o, r in zip(outs.values(), ref))


def attempt(path, data, feeds, expected):
    """'refused: <ErrorClass>' | 'same' | 'valid edit' | 'different' (outputs differ from the original and
    from what the file describes)."""
    path.write_bytes(data)
    try:
        model = irc.load(path)
        outs = model.run(feeds)
    except IrcError as e:
        return f"refused: {type(e).__name__}"
    if same(outs, expected):
        return "same"
    try:
        return "valid edit" if agrees_with_reference(model, outs, feeds) else "different"
    except IrcError:
        return "different"


def fuzz(raw: bytes, path, feeds, expected, iterations: int, seed: int):
    """counts[category][outcome], failures [(category, description, problem)]."""
    rng = np.random.default_rng(seed)
    counts = collections.defaultdict(collections.Counter)
    failures = []
    names = list(MUTATORS)
    old = signal.signal(signal.SIGALRM, _alarm)
    try:
        for it in range(iterations):
            cat = names[it % len(names)]
            what = "?"
            try:
                what, data = MUTATORS[cat](rng, raw)
                signal.alarm(HANG_SECONDS)
                try:
                    outcome = attempt(path, data, feeds, expected)
                finally:
                    signal.alarm(0)
            except Hang:
                outcome = "hang"
            except Exception:
                outcome = "crash"
                failures.append((cat, what, traceback.format_exc(limit=-3)))
            counts[cat][outcome] += 1
            bad = outcome in ("different", "hang") or (outcome == "valid edit" and cat not in MAY_EDIT) or \
                (cat in RAW and outcome != "refused: ArtifactError") or \
                (cat in MUST_LOAD and outcome != "same")
            if bad and outcome != "crash":
                failures.append((cat, what, outcome))
    finally:
        signal.signal(signal.SIGALRM, old)
    return counts, failures


def report(counts) -> str:
    lines = []
    for cat in MUTATORS:
        c = counts.get(cat, {})
        lines.append(f"  {cat:15s} {sum(c.values()):5d}  " + ", ".join(f"{k} {v}" for k, v in sorted(c.items())))
    return "\n".join(lines)


@pytest.fixture(scope="module")
def original(tmp_path_factory):
    path = tmp_path_factory.mktemp("fuzz") / "model.bin"
    irc.compile(fuzz_model()).save(path)
    feeds = {"x": np.random.default_rng(1).standard_normal((2, 3, 8, 8)).astype(np.float32)}
    return path.read_bytes(), feeds, irc.load(path).run(feeds)


def test_mutated_artifacts_are_refused_or_run_identically(original, tmp_path):
    raw, feeds, expected = original
    counts, failures = fuzz(raw, tmp_path / "mutant.bin", feeds, expected, ITERATIONS, SEED)
    print(f"\nartifact fuzzing, seed {SEED}, {ITERATIONS} mutations:\n{report(counts)}")
    assert not failures, "\n".join(f"[{c}] {w}: {p}" for c, w, p in failures[:20])
    assert sum(sum(c.values()) for c in counts.values()) == ITERATIONS
    for cat in MUTATORS:  # every category was exercised, and all but the neutral one got refused at times
        assert counts[cat], cat
        if cat not in MUST_LOAD:
            assert any(k.startswith("refused") for k in counts[cat]), (cat, counts[cat])


def test_the_mutators_are_sound_on_an_unmutated_file(original, tmp_path):
    """The repacking every manifest category relies on keeps a file valid when nothing is edited."""
    raw, feeds, expected = original
    manifest, data = split(raw)
    again = pack(raw, json.dumps(manifest).encode("utf-8"), data)
    assert attempt(tmp_path / "m.bin", again, feeds, expected) == "same"
    with pytest.raises(ArtifactError):
        irc.load(_write(tmp_path / "f.bin", bit_flip(np.random.default_rng(0), raw)[1]))


def _write(path, data):
    path.write_bytes(data)
    return path
