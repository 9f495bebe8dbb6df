"""int8 post-training quantization, end to end, on scikit-learn's 8x8 handwritten digits.

    python examples/quantize_digits.py [--epochs N] [--method minmax|percentile|entropy] [--out DIR]

Trains a small CNN with torch (a few seconds), exports it to ONNX, then with irc compiles it twice: fp32,
and int8 calibrated on training images. Prints the held-out accuracy of both, the int8 report (per-layer
SQNR, fallbacks), the artifact sizes and the median latency of one batch of 64 (irc fp32, irc int8, and
onnxruntime fp32 beside them in the same process). Needs torch and scikit-learn.

Then the same fp32 model goes through onnxruntime's own ``quantize_static`` (QDQ format, per-channel int8
weights, calibrated on the same training images), and that QDQ model runs both in onnxruntime and compiled
by irc (``fuse-qdq`` turns its QuantizeLinear/DequantizeLinear pairs into irc's int8 kernels): the example
prints how often the two engines predict the same class on the held-out images, and each one's accuracy.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
import warnings

import numpy as np
import torch
from torch import nn

import irc


class DigitsNet(nn.Module):
    """Three 3x3 conv-ReLU stages (two with a 2x2 max pool: 8x8 -> 2x2), then a linear classifier."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(),
            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
        self.classifier = nn.Linear(32 * 2 * 2, 10)

    def forward(self, image):
        return self.classifier(torch.flatten(self.features(image), 1))


def digits(seed: int = 0):
    """(train images, train labels, held-out images, held-out labels): a stratified 75/25 split, images
    f32[n, 1, 8, 8] scaled to [0, 1]."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    data = load_digits()
    images = (data.images[:, None] / 16.0).astype(np.float32)
    return train_test_split(images, data.target, test_size=0.25, stratify=data.target, random_state=seed)


def train(x: np.ndarray, y: np.ndarray, epochs: int, seed: int = 0) -> nn.Module:
    """A DigitsNet fitted with Adam and cross-entropy on minibatches of 32 (on one thread: the net is tiny,
    and more threads would only contend for the cores)."""
    torch.set_num_threads(1)
    torch.manual_seed(seed)
    net = DigitsNet()
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y).long()
    for _ in range(epochs):
        for idx in torch.randperm(len(xt)).split(32):
            opt.zero_grad()
            nn.functional.cross_entropy(net(xt[idx]), yt[idx]).backward()
            opt.step()
    return net.eval()


def export(net: nn.Module, path: str) -> str:
    """The model as ONNX (opset 17) with a dynamic batch axis: image f32[batch, 1, 8, 8] -> logits."""
    batch = {0: "batch"}
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")     # the TorchScript exporter's deprecation notice
        torch.onnx.export(net, (torch.zeros(1, 1, 8, 8),), path, input_names=["image"], output_names=["logits"],
                          dynamic_axes={"image": batch, "logits": batch}, opset_version=17, dynamo=False)
    return path


def accuracy(model, x: np.ndarray, y: np.ndarray) -> float:
    return float((model.run({"image": x})["logits"].argmax(axis=1) == y).mean())


def latency_ms(run, x: np.ndarray, repeats: int = 50) -> float:
    """Median wall time of ``run({"image": x})``, after a warm-up run."""
    run({"image": x})
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        run({"image": x})
        times.append(time.perf_counter() - t0)
    return 1e3 * float(np.median(times))


def onnxruntime_run(path: str):
    """onnxruntime's fp32 session over the model as a feeds -> outputs function, for a side-by-side time."""
    import onnxruntime
    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    return lambda feeds: session.run(None, feeds)


def ort_quantize(src: str, dst: str, calibration) -> str:
    """The fp32 ONNX model at ``src`` quantized by onnxruntime's ``quantize_static`` into ``dst``: QDQ format,
    u8 activations (MinMax calibration over ``calibration``, an iterable of feed dicts), int8 weights per
    output channel. Returns ``dst``."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.feeds = iter(calibration)

        def get_next(self):
            return next(self.feeds, None)

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)    # quantize_static's advice to run its pre-processing (shape inference)
    try:
        quantize_static(src, dst, Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    finally:
        root.setLevel(level)
    return dst


def ort_qdq_agreement(onnx_path: str, x_calib: np.ndarray, x_test: np.ndarray, y_test: np.ndarray) -> dict:
    """onnxruntime's QDQ quantization of the model, run by onnxruntime and compiled by irc on the held-out
    images: the share of images where both predict the same class, and each engine's accuracy."""
    qdq_path = ort_quantize(onnx_path, onnx_path.removesuffix(".onnx") + ".qdq.onnx",
                            ({"image": x_calib[i:i + 32]} for i in range(0, len(x_calib), 32)))
    ort_pred = onnxruntime_run(qdq_path)({"image": x_test})[0].argmax(axis=1)
    irc_pred = irc.compile(qdq_path).run({"image": x_test})["logits"].argmax(axis=1)
    return {"qdq_agreement": float((irc_pred == ort_pred).mean()),
            "qdq_ort_accuracy": float((ort_pred == y_test).mean()),
            "qdq_irc_accuracy": float((irc_pred == y_test).mean())}


def quantize_digits(epochs: int = 15, method: str = "minmax", calibration_samples: int = 256, outdir=None,
                    timing: bool = True) -> dict:
    """Train, export, compile fp32 and int8 (calibrated on ``calibration_samples`` training images), and
    compare irc with onnxruntime on onnxruntime's QDQ quantization of the model (same calibration images);
    returns accuracies, the two engines' int8 agreement, artifact sizes, latencies and the int8 report."""
    x_train, x_test, y_train, y_test = digits()
    net = train(x_train, y_train, epochs)
    outdir = outdir or tempfile.mkdtemp(prefix="quantize_digits_")
    onnx_path = export(net, os.path.join(outdir, "digits.onnx"))
    fp32 = irc.compile(onnx_path)
    int8 = irc.compile(onnx_path, quantize="int8", calibration={"image": x_train[:calibration_samples]},
                       calibration_method=method)
    result = {"fp32_accuracy": accuracy(fp32, x_test, y_test), "int8_accuracy": accuracy(int8, x_test, y_test),
              "report": int8.quant_report, "held_out": len(y_test)}
    result.update(ort_qdq_agreement(onnx_path, x_train[:calibration_samples], x_test, y_test))
    for name, model in (("fp32", fp32), ("int8", int8)):
        path = os.path.join(outdir, f"digits_{name}.bin")
        model.save(path)
        result[f"{name}_bytes"] = os.path.getsize(path)
        if timing:
            result[f"{name}_ms"] = latency_ms(irc.load(path).run, x_test[:64])
    if timing:
        result["onnxruntime_ms"] = latency_ms(onnxruntime_run(onnx_path), x_test[:64])
    return result


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--method", default="minmax", choices=["minmax", "percentile", "entropy"])
    p.add_argument("--out", default=None, help="folder for the .onnx and .bin files (default: a temporary one)")
    args = p.parse_args(argv)
    r = quantize_digits(args.epochs, args.method, outdir=args.out)
    print(r["report"])
    print(f"\nheld-out accuracy on {r['held_out']} images: fp32 {100 * r['fp32_accuracy']:.2f}%  "
          f"int8 {100 * r['int8_accuracy']:.2f}%")
    print(f"artifact size: fp32 {r['fp32_bytes']} bytes  int8 {r['int8_bytes']} bytes")
    print(f"latency (batch of 64, median): irc fp32 {r['fp32_ms']:.3f} ms  irc int8 {r['int8_ms']:.3f} ms  "
          f"onnxruntime fp32 {r['onnxruntime_ms']:.3f} ms")
    print(f"onnxruntime quantize_static (QDQ) model: irc and onnxruntime predict the same class on "
          f"{100 * r['qdq_agreement']:.2f}% of the held-out images; accuracy onnxruntime "
          f"{100 * r['qdq_ort_accuracy']:.2f}%  irc {100 * r['qdq_irc_accuracy']:.2f}%")
    return 0


if __name__ == "__main__":
    sys.exit(main())
