"""The artifact (``model.bin``): a compiled model as data only, memory-mapped on load.

Layout (integers little-endian)::

    offset  size  field
         0     8  magic b"IRCMODEL"
         8     4  format version (u32)
        12     4  reserved, zero (u32)
        16    32  SHA-256 of every byte from offset 48 to the end of the file
        48     8  manifest offset (u64)     56  8  manifest length (u64)
        64     8  data offset (u64)         72  8  data length (u64)
        80    48  zero padding
       128        manifest: UTF-8 JSON (keys sorted)
                  data: the tensors, each starting at a multiple of 64 bytes from the file's start

Bytes before the checksum are checked for exact values (magic, version, zero), so a flipped byte anywhere
is detected. The manifest holds the format and irc versions, the target, the compile options, the inputs
and outputs with their types, the tensor table (name, dtype, shape, offset into the data, byte count) and
the optimized graph as IR text, where every constant prints as ``dense_resource<N>``: the N-th entry of
the tensor table.

Loading checks the header, the sizes and offsets, then the checksum, then the manifest's schema and the
tensor table, all before a tensor is viewed; only then are read-only numpy views made on the mapping and
the graph parsed and verified. Nothing in the file is unpickled, evaluated or imported. Writing is
deterministic (the same model gives the same bytes) and atomic (a temporary file renamed into place).
"""
from __future__ import annotations

import hashlib
import json
import math
import mmap
import os
import struct
import tempfile
from dataclasses import dataclass
from typing import Dict, List

import numpy as np

from ..errors import ArtifactError, IrcError
from ..ir import DTYPES, Graph, TensorType, parse_graph, print_graph, verify

MAGIC = b"IRCMODEL"
FORMAT_VERSION = 1
ALIGN = 64
HEADER_SIZE = 128
_HEADER = struct.Struct("<8sII32sQQQQ")  # magic, version, reserved, sha256, manifest off/len, data off/len
CHECKSUM_OFFSET, CHECKED_FROM = 16, 48
_MANIFEST_KEYS = {"format_version": int, "irc_version": str, "target": str, "options": dict,
                  "inputs": list, "outputs": list, "tensors": list, "graph": str}
_TENSOR_KEYS = {"name": str, "dtype": str, "shape": list, "offset": int, "nbytes": int}


def _align(n: int) -> int:
    return (n + ALIGN - 1) // ALIGN * ALIGN


def _type_json(t: TensorType):
    return {"dtype": t.dtype, "shape": None if t.shape is None else list(t.shape)}


# -- writing ------------------------------------------------------------------------------------------

class _TensorTable:
    """Collects the arrays of a graph's attributes as the printer meets them; one entry per array object,
    named after the first node holding it."""

    def __init__(self, graph: Graph):
        self.arrays: List[np.ndarray] = []
        self.names: List[str] = []
        self._index: Dict[int, int] = {}
        self._owner = {}
        for n in graph.nodes:
            for v in n.attrs.values():
                if isinstance(v, np.ndarray):
                    self._owner.setdefault(id(v), n.name)

    def ref(self, array: np.ndarray) -> int:
        if id(array) not in self._index:
            name = self._owner.get(id(array)) or f"t{len(self.arrays)}"
            if array.dtype not in DTYPES.values() or array.dtype.kind == "O":
                raise IrcError(f"constant {name!r}: arrays of dtype {array.dtype} cannot be saved")
            self._index[id(array)] = len(self.arrays)
            self.arrays.append(array)
            self.names.append(name)
        return self._index[id(array)]


def serialize(model) -> bytearray:
    """The artifact's bytes for a CompiledModel (deterministic: no timestamps, stable ordering)."""
    from .. import __version__
    graph = model.graph
    table = _TensorTable(graph)
    text = print_graph(graph, elide_above=None, tensor_ref=table.ref)
    tensors, offset = [], 0
    for name, a in zip(table.names, table.arrays):
        offset = _align(offset)
        tensors.append({"name": name, "dtype": TensorType.of(a).dtype, "shape": list(a.shape),
                        "offset": offset, "nbytes": int(a.nbytes)})
        offset += a.nbytes
    manifest = {
        "format_version": FORMAT_VERSION, "irc_version": __version__, "target": model.target,
        "options": model.options,
        "inputs": [dict(name=v.name, **_type_json(v.type)) for v in graph.inputs],
        "outputs": [dict(name=n, **_type_json(v.type)) for v, n in zip(graph.outputs, graph.output_names)],
        "tensors": tensors, "graph": text,
    }
    mbytes = json.dumps(manifest, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    data_off = _align(HEADER_SIZE + len(mbytes))
    buf = bytearray(data_off + offset)
    buf[HEADER_SIZE:HEADER_SIZE + len(mbytes)] = mbytes
    for t, a in zip(tensors, table.arrays):
        start = data_off + t["offset"]
        buf[start:start + t["nbytes"]] = np.ascontiguousarray(a, a.dtype.newbyteorder("<")).tobytes()
    _HEADER.pack_into(buf, 0, MAGIC, FORMAT_VERSION, 0, b"\0" * 32, HEADER_SIZE, len(mbytes), data_off, offset)
    buf[CHECKSUM_OFFSET:CHECKED_FROM] = hashlib.sha256(memoryview(buf)[CHECKED_FROM:]).digest()
    return buf


def write_artifact(model, path) -> None:
    """Write ``model`` to ``path`` atomically (a temporary file in the same folder, then renamed)."""
    data = serialize(model)
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    try:
        fd, tmp = tempfile.mkstemp(prefix=".irc-", suffix=".tmp", dir=folder)
    except OSError as e:
        raise IrcError(f"cannot write {path!r}: {e.strerror or e}") from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException as e:
        os.unlink(tmp)
        if isinstance(e, OSError):
            raise IrcError(f"cannot write {path!r}: {e.strerror or e}") from None
        raise


# -- reading ------------------------------------------------------------------------------------------

@dataclass
class Artifact:
    """A validated artifact: its header fields, manifest and read-only tensor views on the mapping."""
    path: str
    file_size: int
    format_version: int
    manifest: dict
    tensors: List[np.ndarray]

    @property
    def constant_bytes(self) -> int:
        return sum(t["nbytes"] for t in self.manifest["tensors"])


def is_artifact(path) -> bool:
    """Whether the file at ``path`` starts with the artifact's magic bytes."""
    try:
        with open(path, "rb") as f:
            return f.read(len(MAGIC)) == MAGIC
    except OSError:
        return False


def _fail(path: str, what: str, offset: int) -> ArtifactError:
    return ArtifactError(f"{path}: {what} (at byte offset {offset})")


def _check_header(path: str, buf) -> tuple:
    """(manifest offset, length, data offset, length) after checking the header's fields and extents."""
    size = len(buf)
    if size < HEADER_SIZE:
        raise _fail(path, f"file is {size} bytes, shorter than the {HEADER_SIZE}-byte header", size)
    magic, version, reserved, _, m_off, m_len, d_off, d_len = _HEADER.unpack_from(buf, 0)
    if magic != MAGIC:
        raise _fail(path, f"not an irc model: magic is {magic!r}, expected {MAGIC!r}", 0)
    if version != FORMAT_VERSION:
        raise _fail(path, f"format version {version} is not supported (this irc reads version {FORMAT_VERSION})", 8)
    if reserved != 0:
        raise _fail(path, f"reserved header field is {reserved}, expected 0", 12)
    if m_off != HEADER_SIZE:
        raise _fail(path, f"manifest offset is {m_off}, expected {HEADER_SIZE}", 48)
    if m_off + m_len > d_off:
        raise _fail(path, f"manifest (bytes {m_off}..{m_off + m_len}) overlaps the data at {d_off}", 56)
    if d_off % ALIGN or d_off > size:
        raise _fail(path, f"data offset {d_off} is not {ALIGN}-byte aligned inside the file", 64)
    if d_off + d_len != size:
        raise _fail(path, f"file is {size} bytes but the header says {d_off + d_len} (truncated or extended)", 72)
    return m_off, m_len, d_off, d_len


def _check_checksum(path: str, buf) -> None:
    stored = bytes(buf[CHECKSUM_OFFSET:CHECKED_FROM])
    with memoryview(buf) as view:
        actual = hashlib.sha256(view[CHECKED_FROM:]).digest()
    if stored != actual:
        raise _fail(path, "checksum mismatch: the file is damaged", CHECKSUM_OFFSET)


def _check_keys(obj, keys: dict, what: str, path: str, offset: int) -> None:
    if not isinstance(obj, dict):
        raise _fail(path, f"{what} is not a JSON object", offset)
    for k, typ in keys.items():
        v = obj.get(k)
        if not isinstance(v, typ) or (typ is int and isinstance(v, bool)):
            raise _fail(path, f"{what}: field {k!r} is missing or not a {typ.__name__}", offset)


def _check_type(obj, what: str, path: str, offset: int) -> TensorType:
    _check_keys(obj, {"name": str, "dtype": str}, what, path, offset)
    if "shape" not in obj:
        raise _fail(path, f"{what}: field 'shape' is missing", offset)
    shape = obj["shape"]
    if shape is not None and (not isinstance(shape, list) or
                              not all(d is None or isinstance(d, str) or
                                      (isinstance(d, int) and not isinstance(d, bool) and d >= 0) for d in shape)):
        raise _fail(path, f"{what}: bad shape {shape!r}", offset)
    try:
        return TensorType(obj["dtype"], shape)
    except IrcError as e:
        raise _fail(path, f"{what}: {e}", offset) from None


def _parse_manifest(path: str, buf, m_off: int, m_len: int) -> dict:
    try:
        manifest = json.loads(bytes(buf[m_off:m_off + m_len]).decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise _fail(path, f"manifest is not UTF-8 JSON: {e}", m_off) from None
    _check_keys(manifest, _MANIFEST_KEYS, "manifest", path, m_off)
    if manifest["format_version"] != FORMAT_VERSION:
        raise _fail(path, f"manifest format version {manifest['format_version']} differs from the header's", m_off)
    for kind in ("inputs", "outputs"):
        for i, obj in enumerate(manifest[kind]):
            _check_type(obj, f"manifest {kind}[{i}]", path, m_off)
    return manifest


def _tensor_views(path: str, buf, manifest: dict, m_off: int, d_off: int, d_len: int) -> List[np.ndarray]:
    """Read-only views of the tensor table's entries, after checking each entry's extent and type."""
    views, end = [], 0
    for i, t in enumerate(manifest["tensors"]):
        what = f"tensor {i}"
        _check_keys(t, _TENSOR_KEYS, f"manifest {what}", path, m_off)
        dtype = DTYPES.get(t["dtype"])
        if dtype is None or dtype.kind == "O":
            raise _fail(path, f"{what} ({t['name']!r}): unknown dtype {t['dtype']!r}", m_off)
        shape = t["shape"]
        if not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
            raise _fail(path, f"{what} ({t['name']!r}): bad shape {shape!r}", m_off)
        off, nbytes, count = t["offset"], t["nbytes"], math.prod(shape)  # (Python ints: no overflow)
        if nbytes != count * dtype.itemsize:
            raise _fail(path, f"{what} ({t['name']!r}): {nbytes} bytes do not hold {t['dtype']}{shape}", m_off)
        if off < end or off % ALIGN or off + nbytes > d_len:
            raise _fail(path, f"{what} ({t['name']!r}): bytes {off}..{off + nbytes} of the data are out of "
                        f"order, unaligned or past its end ({d_len} bytes)", d_off + off)
        end = off + nbytes
        views.append(np.frombuffer(buf, dtype.newbyteorder("<"), count=count, offset=d_off + off).reshape(shape))
    return views


def read_validated(path) -> Artifact:
    """Map ``path`` read-only and check everything up to the tensor views (not yet the graph)."""
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            buf = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) if size else b""
    except OSError as e:
        raise ArtifactError(f"cannot read {path!r}: {e.strerror or e}") from None
    m_off, m_len, d_off, d_len = _check_header(path, buf)
    _check_checksum(path, buf)
    manifest = _parse_manifest(path, buf, m_off, m_len)
    tensors = _tensor_views(path, buf, manifest, m_off, d_off, d_len)
    return Artifact(path, size, FORMAT_VERSION, manifest, tensors)


def _attr_kind_ok(value, default) -> bool:
    """Whether an attribute value read from a file has the kind of the op's default: an int where the
    default is an int, a number where it is a float, a string, or a list whose items have the kind of the
    default's. Where the default says nothing (required, None, an empty list) the value is an int, float
    or string, or a list of ints and strings, nested or not: lists of floats only come with a float default.
    """
    if isinstance(default, list) and default:
        return isinstance(value, list) and all(_attr_kind_ok(v, default[0]) for v in value)
    if isinstance(default, list):
        return isinstance(value, list) and all(_untyped_item_ok(v) for v in value)
    if isinstance(default, int):
        return isinstance(value, int)
    if isinstance(default, float):
        return isinstance(value, (int, float))
    if isinstance(default, str):
        return isinstance(value, str)
    return value is None or isinstance(value, (int, float, str)) or \
        isinstance(value, list) and all(_untyped_item_ok(v) for v in value)


def _untyped_item_ok(item) -> bool:
    return isinstance(item, (int, str)) or isinstance(item, list) and all(_untyped_item_ok(v) for v in item)


def _check_attrs(graph: Graph) -> None:
    """Attribute kinds against the op table's defaults, and constants of storable dtypes only: the text
    may say ``strides="x"`` or hold a string constant, which no compiled model does."""
    from ..ops import OPS
    for n in graph.nodes:
        if n.op == "const":
            if n.attrs["value"].dtype.kind == "O":
                raise IrcError(f"node const {n.name!r}: constants of type {n.outputs[0].type} cannot be stored")
            continue
        for k, v in n.attrs.items():
            if not _attr_kind_ok(v, OPS[n.op].attrs[k]):
                raise IrcError(f"node {n.op} {n.name!r}: attribute {k!r} = {v!r} is not of the op's kind")


def _graph(art: Artifact) -> Graph:
    """Parse the manifest's IR text with its tensor table; verify it and its agreement with the manifest."""
    def resolve(n: int) -> np.ndarray:
        if not 0 <= n < len(art.tensors):
            raise IrcError(f"dense_resource<{n}> is not in the tensor table ({len(art.tensors)} entries)")
        return art.tensors[n]

    m = art.manifest
    try:
        graph = parse_graph(m["graph"], resolve)
        verify(graph, require_values=True)
        _check_attrs(graph)
    except IrcError as e:
        raise ArtifactError(f"{art.path}: the manifest's graph is invalid: {e}") from None
    except Exception as e:  # the text is untrusted: whatever it trips over is damage, not a crash
        raise ArtifactError(f"{art.path}: the manifest's graph is invalid: {type(e).__name__}: {e}") from None
    declared = [(o["name"], o["dtype"], o["shape"]) for o in m["inputs"]]
    actual = [(v.name, *_type_json(v.type).values()) for v in graph.inputs]
    declared_out = [(o["name"], o["dtype"], o["shape"]) for o in m["outputs"]]
    actual_out = [(n, *_type_json(v.type).values()) for v, n in zip(graph.outputs, graph.output_names)]
    if declared != actual or declared_out != actual_out:
        raise ArtifactError(f"{art.path}: the manifest's inputs/outputs do not match its graph")
    return graph


def read_artifact(path):
    """Load a model.bin as a CompiledModel (``.artifact`` holds the manifest and file facts)."""
    from .model import CompiledModel
    from ..api import TARGETS
    art = read_validated(path)
    if art.manifest["target"] not in TARGETS:
        raise ArtifactError(f"{art.path}: target {art.manifest['target']!r} is not supported by this irc")
    if art.manifest["target"] == "cuda":
        from ..backend.cuda import require_device
        require_device()
    model = CompiledModel(_graph(art), art.manifest["target"], art.manifest["options"])
    model.artifact = art
    return model
