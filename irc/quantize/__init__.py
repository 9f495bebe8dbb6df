"""int8 post-training quantization: calibration (calibrate.py), the ``quantize`` pass that writes the
QDQ form (qdq.py), the per-layer SQNR report with fp32 fallback (report.py), calibration data (data.py)."""
from .calibrate import METHODS, check_method
from .data import calibration_feeds
from .qdq import QuantConfig, quantize
from .report import QuantReport

SCHEMES = ("int8",)

__all__ = ["METHODS", "SCHEMES", "QuantConfig", "QuantReport", "calibration_feeds", "check_method", "quantize"]
