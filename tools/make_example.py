"""Make the shipped example: a tiny CNN that reads 8x8 handwritten digits, and a batch of held-out images.

    python tools/make_example.py [OUTDIR]        (default: examples/)

Trains for a few seconds (seeded) on scikit-learn's bundled digits data set and writes
  digits_cnn.onnx     input "image" f32[batch, 1, 8, 8] (pixels scaled to [0, 1]);
                      outputs "logits" f32[batch, 10] and "digit" i64[batch] (the argmax)
  digits_input.npz    {"image": the first held-out images}, for ``irc run ... --inputs``
and prints the held-out accuracy and the labels of the images in the .npz.
"""
from __future__ import annotations

import os
import sys

import numpy as np
import torch
from torch import nn

from export_zoo import conv_bn, export_module

SAMPLES = 8  # images in digits_input.npz


class DigitsCNN(nn.Module):
    """conv-BN-ReLU-maxpool twice (8x8 -> 4x4 -> 2x2), then a linear layer; also returns the argmax class."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(conv_bn(1, 8, 3), nn.MaxPool2d(2), conv_bn(8, 16, 3), nn.MaxPool2d(2))
        self.fc = nn.Linear(16 * 2 * 2, 10)

    def forward(self, image):
        logits = self.fc(torch.flatten(self.features(image), 1))
        return logits, logits.argmax(dim=1)


def load_digits_split(seed: int = 0):
    """(train images, train labels, test images, test labels), a seeded 80/20 split; images f32[n, 1, 8, 8] in
    [0, 1]."""
    from sklearn.datasets import load_digits
    digits = load_digits()
    images = (digits.images / 16.0).astype(np.float32)[:, None]
    order = np.random.default_rng(seed).permutation(len(images))
    cut = int(0.8 * len(images))
    train, test = order[:cut], order[cut:]
    return images[train], digits.target[train], images[test], digits.target[test]


def train(model: nn.Module, images: np.ndarray, labels: np.ndarray, epochs: int = 30) -> None:
    """Adam on minibatches of 64 with cross-entropy."""
    x, y = torch.from_numpy(images), torch.from_numpy(labels).long()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    gen = torch.Generator().manual_seed(0)
    model.train()
    for _ in range(epochs):
        for idx in torch.randperm(len(x), generator=gen).split(64):
            opt.zero_grad()
            nn.functional.cross_entropy(model(x[idx])[0], y[idx]).backward()
            opt.step()
    model.eval()


def main(argv=None) -> int:
    outdir = (argv if argv is not None else sys.argv[1:] or ["examples"])[0]
    torch.manual_seed(0)
    x_train, y_train, x_test, y_test = load_digits_split()
    model = DigitsCNN()
    train(model, x_train, y_train)
    with torch.no_grad():
        accuracy = float((model(torch.from_numpy(x_test))[1].numpy() == y_test).mean())
    feeds = {"image": x_test[:SAMPLES]}
    batch = {0: "batch"}
    path = export_module(model, feeds, ("logits", "digit"), {"image": batch, "logits": batch, "digit": batch},
                         os.path.join(outdir, "digits_cnn.onnx"))
    npz = os.path.join(outdir, "digits_input.npz")
    np.savez(npz, **feeds)
    print(f"wrote {path} ({os.path.getsize(path)} bytes); held-out accuracy {accuracy:.3f}")
    print(f"wrote {npz}: {SAMPLES} held-out images, labels {y_test[:SAMPLES].tolist()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
