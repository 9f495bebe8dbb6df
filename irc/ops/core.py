"""Constants and identity."""
from ..errors import IrcError
from .registry import REQUIRED, define, same_as


def _infer_const(ctx):
    raise IrcError("const nodes carry their type")


@define("const", kind="source", attrs={"value": REQUIRED}, infer=_infer_const)
def const(*, value):
    """A constant tensor; ``value`` is the array."""
    if value is None:
        raise IrcError("constant has no value (its text was elided)")
    return value


@define("identity", onnx=("Identity", "Dropout"), kind="injective", infer=same_as(0))
def identity(x, *_):
    """Returns its operand (Dropout at inference is an identity; its mask output is not supported)."""
    return x
