"""numpy as the generated CUDA elementwise kernels see it (their ``np``).

The CPU templates call a few numpy ufuncs on scalars (floor, ceil, rint, fmod) that numba.cuda does not
implement in device code; here they are libdevice's float64 functions, exact for float32 operands too
(the templates convert every result back to its dtype). On the simulator, which runs kernels as Python,
they stay numpy's. Every other name (the scalar types, nan, inf) is numpy's own. ``vexp``, the CPU
templates' float32 exp (spelled out there so that CPU loops vectorize), is the device's own exp here.
"""
import math

import numpy
from numba import cuda

from .device import SIMULATOR


def __getattr__(name):
    return getattr(numpy, name)


if SIMULATOR:
    floor, ceil, rint, fmod, vexp = numpy.floor, numpy.ceil, numpy.rint, numpy.fmod, numpy.exp
else:
    @cuda.jit(device=True)
    def vexp(x):
        return math.exp(x)

    from numba.cuda import libdevice

    @cuda.jit(device=True)
    def floor(x):
        return libdevice.floor(x)

    @cuda.jit(device=True)
    def ceil(x):
        return libdevice.ceil(x)

    @cuda.jit(device=True)
    def rint(x):
        return libdevice.rint(x)

    @cuda.jit(device=True)
    def fmod(x, y):
        return libdevice.fmod(x, y)
