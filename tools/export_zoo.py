"""Export the test model zoo to ONNX: small, readable torch definitions with seeded random weights.

    python tools/export_zoo.py OUTDIR [--models a,b] [--dynamo] [--no-check]

Models: resnet18, mobilenetv2, vgg11 (quarter width) on 224x224; bert (4-layer encoder, 128 tokens, padding
mask); mlp (log-softmax); senet (squeeze-excite, SiLU), convnext, unet (ConvTranspose, Resize, skip concats) on
64x64; gpt (2-layer causal decoder). Every model is exported at opset 17 by the TorchScript exporter
(``dynamo=False``) with BatchNormalization nodes kept and a dynamic batch axis (gpt also has a dynamic sequence
axis). ``--dynamo`` (needs the onnxscript package) also writes ``NAME.dynamo.onnx`` with the dynamo exporter,
which produces opset 18 where onnx's version converter cannot take its graph down to 17. Each written file is
printed with its opset and ONNX op counts and, unless ``--no-check``, the largest difference between onnxruntime
and torch on sample inputs.

torch is a development tool only: the tests import this module to build the zoo, irc never imports torch.
"""
from __future__ import annotations

import argparse
import collections
import contextlib
import logging
import os
import sys
import warnings
from dataclasses import dataclass
from typing import Callable, Dict, List, Sequence, Tuple

import numpy as np
import torch
from torch import nn

OPSET = 17


# ---------------------------------------------------------------------------------------------- building blocks

def conv_bn(cin: int, cout: int, k: int, stride: int = 1, groups: int = 1, act: Callable = nn.ReLU) -> nn.Sequential:
    """Conv (no bias) -> BatchNorm -> activation, the unit most CNNs are made of (act=None: no activation)."""
    layers = [nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)]
    return nn.Sequential(*layers, act()) if act else nn.Sequential(*layers)


class BasicBlock(nn.Module):
    """ResNet-18/34 block: two 3x3 conv-BN, a residual add (1x1 conv-BN projection when the shape changes), ReLU."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.body = nn.Sequential(conv_bn(cin, cout, 3, stride), conv_bn(cout, cout, 3, act=None))
        self.shortcut = conv_bn(cin, cout, 1, stride, act=None) if stride != 1 or cin != cout else nn.Identity()
        self.relu = nn.ReLU()

    def forward(self, x):
        return self.relu(self.body(x) + self.shortcut(x))


class ResNet18(nn.Module):
    """ResNet-18 for 224x224 images: 7x7/2 stem, 3x3/2 max-pool, BasicBlocks 2-2-2-2 (64..512), average pool, fc."""

    def __init__(self, classes: int = 1000):
        super().__init__()
        widths, blocks, cin = (64, 128, 256, 512), [], 64
        for i, w in enumerate(widths):
            blocks += [BasicBlock(cin, w, 1 if i == 0 else 2), BasicBlock(w, w, 1)]
            cin = w
        self.features = nn.Sequential(conv_bn(3, 64, 7, 2), nn.MaxPool2d(3, 2, 1), *blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(512, classes)

    def forward(self, x):
        return self.fc(torch.flatten(self.pool(self.features(x)), 1))


class InvertedResidual(nn.Module):
    """MobileNetV2 block: 1x1 expand -> 3x3 depthwise -> 1x1 linear projection, residual when shapes match."""

    def __init__(self, cin: int, cout: int, stride: int, expand: int):
        super().__init__()
        hidden = cin * expand
        layers = [conv_bn(cin, hidden, 1, act=nn.ReLU6)] if expand != 1 else []
        layers += [conv_bn(hidden, hidden, 3, stride, groups=hidden, act=nn.ReLU6), conv_bn(hidden, cout, 1, act=None)]
        self.body = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x):
        return x + self.body(x) if self.residual else self.body(x)


class MobileNetV2(nn.Module):
    """MobileNetV2 (width 1.0) for 224x224: 17 inverted-residual blocks, each with one depthwise conv, ReLU6."""

    # (expansion t, output channels c, repeats n, first stride s), as in the MobileNetV2 paper's table 2
    SETTINGS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
                (6, 320, 1, 1))

    def __init__(self, classes: int = 1000):
        super().__init__()
        layers, cin = [conv_bn(3, 32, 3, 2, act=nn.ReLU6)], 32
        for t, c, n, s in self.SETTINGS:
            for i in range(n):
                layers.append(InvertedResidual(cin, c, s if i == 0 else 1, t))
                cin = c
        layers.append(conv_bn(cin, 1280, 1, act=nn.ReLU6))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(1280, classes))

    def forward(self, x):
        return self.classifier(self.features(x).mean((2, 3)))


class VGG11(nn.Module):
    """VGG-11 layout (configuration "A": 8 conv3x3 + ReLU, 5 max-pools, 3 fc) on 224x224 at a quarter of the width."""

    LAYOUT = (16, "M", 32, "M", 64, 64, "M", 128, 128, "M", 128, 128, "M")

    def __init__(self, classes: int = 1000):
        super().__init__()
        layers, cin = [], 3
        for v in self.LAYOUT:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(cin, v, 3, padding=1), nn.ReLU()]
                cin = v
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Linear(cin * 7 * 7, 512), nn.ReLU(), nn.Dropout(),
                                        nn.Linear(512, 512), nn.ReLU(), nn.Dropout(), nn.Linear(512, classes))

    def forward(self, x):
        return self.classifier(torch.flatten(self.features(x), 1))


class MLP(nn.Module):
    """784 -> 256 -> 128 -> 10 with ReLU, log-softmax over the classes."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 128), nn.ReLU(), nn.Linear(128, 10),
                                 nn.LogSoftmax(dim=-1))

    def forward(self, x):
        return self.net(x)


class SelfAttention(nn.Module):
    """Multi-head attention written out: q/k/v projections, per-head scaled dot products, an additive mask."""

    def __init__(self, hidden: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.ModuleList(nn.Linear(hidden, hidden) for _ in range(3))
        self.out = nn.Linear(hidden, hidden)

    def split_heads(self, x):
        b, t, d = x.shape
        return x.reshape(b, t, self.heads, d // self.heads).transpose(1, 2)

    def forward(self, x, mask):
        """``mask`` is added to the (batch, heads, query, key) scores: 0 where attending, very negative elsewhere."""
        q, k, v = (self.split_heads(proj(x)) for proj in self.qkv)
        scores = q @ k.transpose(-1, -2) / (q.shape[-1] ** 0.5) + mask
        ctx = torch.softmax(scores, dim=-1) @ v
        b, h, t, dh = ctx.shape
        return self.out(ctx.transpose(1, 2).reshape(b, t, h * dh))


class EncoderLayer(nn.Module):
    """BERT layer (post-norm): x = LN(x + attn(x)); x = LN(x + W2 gelu(W1 x)), erf GELU."""

    def __init__(self, hidden: int, heads: int):
        super().__init__()
        self.attn = SelfAttention(hidden, heads)
        self.ln1, self.ln2 = nn.LayerNorm(hidden), nn.LayerNorm(hidden)
        self.ffn = nn.Sequential(nn.Linear(hidden, 4 * hidden), nn.GELU(), nn.Linear(4 * hidden, hidden))

    def forward(self, x, mask):
        x = self.ln1(x + self.attn(x, mask))
        return self.ln2(x + self.ffn(x))


class BertEncoder(nn.Module):
    """BERT-style encoder: token + position embeddings, LayerNorm, 4 post-norm layers, tanh pooler on token 0.

    ``attention_mask`` (1 = token, 0 = padding) becomes the additive mask (1 - mask) * -10000 on the key axis."""

    def __init__(self, vocab: int = 1000, hidden: int = 256, heads: int = 4, layers: int = 4, tokens: int = 128):
        super().__init__()
        self.tok, self.pos = nn.Embedding(vocab, hidden), nn.Embedding(tokens, hidden)
        self.ln = nn.LayerNorm(hidden)
        self.layers = nn.ModuleList(EncoderLayer(hidden, heads) for _ in range(layers))
        self.pooler = nn.Linear(hidden, hidden)

    def forward(self, input_ids, attention_mask):
        positions = torch.arange(input_ids.shape[1])
        x = self.ln(self.tok(input_ids) + self.pos(positions))
        mask = (1.0 - attention_mask[:, None, None, :].to(x.dtype)) * -10000.0
        for layer in self.layers:
            x = layer(x, mask)
        return x, torch.tanh(self.pooler(x[:, 0]))


class SEBlock(nn.Module):
    """Squeeze-and-excite: global average -> 1x1 conv -> SiLU -> 1x1 conv -> sigmoid, scales the channels."""

    def __init__(self, channels: int, reduced: int):
        super().__init__()
        self.gate = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(channels, reduced, 1), nn.SiLU(),
                                  nn.Conv2d(reduced, channels, 1), nn.Sigmoid())

    def forward(self, x):
        return x * self.gate(x)


class MBConvSE(nn.Module):
    """EfficientNet-style block: 1x1 expand (SiLU) -> depthwise 3x3 (SiLU) -> SE -> 1x1 project, residual."""

    def __init__(self, cin: int, cout: int, stride: int, expand: int = 4):
        super().__init__()
        hidden = cin * expand
        self.body = nn.Sequential(conv_bn(cin, hidden, 1, act=nn.SiLU),
                                  conv_bn(hidden, hidden, 3, stride, groups=hidden, act=nn.SiLU),
                                  SEBlock(hidden, max(4, cin // 4)), conv_bn(hidden, cout, 1, act=None))
        self.residual = stride == 1 and cin == cout

    def forward(self, x):
        return x + self.body(x) if self.residual else self.body(x)


class SENet(nn.Module):
    """A small squeeze-excite network with SiLU on 64x64 images: stem, four MBConv+SE blocks, pool, fc."""

    def __init__(self, classes: int = 10):
        super().__init__()
        self.features = nn.Sequential(conv_bn(3, 16, 3, 2, act=nn.SiLU), MBConvSE(16, 16, 1), MBConvSE(16, 24, 2),
                                      MBConvSE(24, 24, 1), MBConvSE(24, 40, 2), conv_bn(40, 128, 1, act=nn.SiLU))
        self.fc = nn.Linear(128, classes)

    def forward(self, x):
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(self.features(x), 1), 1))


class ConvNeXtBlock(nn.Module):
    """ConvNeXt block: 7x7 depthwise conv, channels-last LayerNorm (via permute), 4x MLP with GELU, layer scale."""

    def __init__(self, dim: int):
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, 7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))
        self.gamma = nn.Parameter(torch.rand(dim) * 0.5 + 0.25)

    def forward(self, x):
        y = self.dwconv(x).permute(0, 2, 3, 1)
        y = self.gamma * self.mlp(self.norm(y))
        return x + y.permute(0, 3, 1, 2)


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of an NCHW tensor, by permuting to channels-last and back."""

    def forward(self, x):
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class ConvNeXt(nn.Module):
    """A small ConvNeXt on 64x64 images: 4x4/4 patchify stem, stages of ConvNeXt blocks with LN + 2x2/2 downsampling."""

    def __init__(self, dims: Sequence[int] = (32, 64, 128), depths: Sequence[int] = (1, 2, 1), classes: int = 10):
        super().__init__()
        layers = [nn.Conv2d(3, dims[0], 4, 4), LayerNorm2d(dims[0], eps=1e-6)]
        for i, (dim, depth) in enumerate(zip(dims, depths)):
            if i:
                layers += [LayerNorm2d(dims[i - 1], eps=1e-6), nn.Conv2d(dims[i - 1], dim, 2, 2)]
            layers += [ConvNeXtBlock(dim) for _ in range(depth)]
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.LayerNorm(dims[-1], eps=1e-6), nn.Linear(dims[-1], classes))

    def forward(self, x):
        return self.head(self.features(x).mean((2, 3)))


def double_conv(cin: int, cout: int) -> nn.Sequential:
    """UNet's unit: two 3x3 conv-BN-ReLU."""
    return nn.Sequential(conv_bn(cin, cout, 3), conv_bn(cout, cout, 3))


class UNet(nn.Module):
    """A 3-level UNet on 64x64 images: max-pool down, up by ConvTranspose (level 2) and by bilinear Upsample
    (level 1), skip connections concatenated on the channels, 1x1 conv to 2 class logits per pixel."""

    def __init__(self, base: int = 16, classes: int = 2):
        super().__init__()
        self.enc1, self.enc2 = double_conv(3, base), double_conv(base, 2 * base)
        self.bottom = double_conv(2 * base, 4 * base)
        self.pool = nn.MaxPool2d(2)
        self.up2 = nn.ConvTranspose2d(4 * base, 2 * base, 2, stride=2)
        self.dec2 = double_conv(4 * base, 2 * base)
        self.up1 = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False)
        self.dec1 = double_conv(3 * base, base)
        self.head = nn.Conv2d(base, classes, 1)

    def forward(self, x):
        e1 = self.enc1(x)
        e2 = self.enc2(self.pool(e1))
        b = self.bottom(self.pool(e2))
        d2 = self.dec2(torch.cat([self.up2(b), e2], dim=1))
        d1 = self.dec1(torch.cat([self.up1(d2), e1], dim=1))
        return self.head(d1)


class DecoderLayer(nn.Module):
    """GPT-2 layer (pre-norm): x += attn(LN(x)) under a causal mask; x += W2 gelu_tanh(W1 LN(x))."""

    def __init__(self, hidden: int, heads: int):
        super().__init__()
        self.attn = SelfAttention(hidden, heads)
        self.ln1, self.ln2 = nn.LayerNorm(hidden), nn.LayerNorm(hidden)
        self.mlp = nn.Sequential(nn.Linear(hidden, 4 * hidden), nn.GELU(approximate="tanh"),
                                 nn.Linear(4 * hidden, hidden))

    def forward(self, x, mask):
        x = x + self.attn(self.ln1(x), mask)
        return x + self.mlp(self.ln2(x))


class GPT(nn.Module):
    """GPT-style causal decoder: token + learned position embeddings, 2 pre-norm layers, final LN, and an output
    projection tied to the token embedding. The causal mask is built at run time from the sequence length:
    triu(ones, 1) marks the future, masked_fill puts -inf there."""

    def __init__(self, vocab: int = 512, hidden: int = 128, heads: int = 4, layers: int = 2, max_tokens: int = 64):
        super().__init__()
        self.tok, self.pos = nn.Embedding(vocab, hidden), nn.Embedding(max_tokens, hidden)
        self.layers = nn.ModuleList(DecoderLayer(hidden, heads) for _ in range(layers))
        self.ln = nn.LayerNorm(hidden)
        self.lm_head = nn.Linear(hidden, vocab, bias=False)
        self.lm_head.weight = self.tok.weight

    def forward(self, input_ids):
        t = input_ids.shape[1]
        x = self.tok(input_ids) + self.pos(torch.arange(t))
        future = torch.triu(torch.ones(t, t, dtype=torch.bool), diagonal=1)
        mask = torch.zeros(t, t).masked_fill(future, float("-inf"))
        for layer in self.layers:
            x = layer(x, mask)
        return self.lm_head(self.ln(x))


# ---------------------------------------------------------------------------------------------- the zoo

@dataclass(frozen=True)
class Entry:
    """How to build, feed and export one zoo model."""
    build: Callable[[], nn.Module]
    inputs: Callable[[np.random.Generator, int], Dict[str, np.ndarray]]  # (rng, batch) -> name -> array
    outputs: Tuple[str, ...]
    dynamic: Dict[str, Dict[int, str]]  # input or output name -> {axis: symbolic dim name}


def image_inputs(channels: int, size: int) -> Callable:
    return lambda rng, batch: {"input": rng.standard_normal((batch, channels, size, size), dtype=np.float32)}


def token_inputs(vocab: int, tokens: int) -> Callable:
    """Random token ids with an attention mask (1 = token, 0 = padding): row i ends in 16 * i padding positions."""
    def make(rng, batch):
        kept = tokens - (16 * np.arange(batch)) % tokens
        return {"input_ids": rng.integers(0, vocab, (batch, tokens), dtype=np.int64),
                "attention_mask": (np.arange(tokens)[None, :] < kept[:, None]).astype(np.int64)}
    return make


def causal_lm_inputs(vocab: int) -> Callable:
    """Random token ids; the sequence length, 64 - 8 * (batch mod 8), changes with the batch so that a test at
    two batch sizes also runs two sequence lengths."""
    return lambda rng, batch: {"input_ids": rng.integers(0, vocab, (batch, 64 - 8 * (batch % 8)), dtype=np.int64)}


BATCH = {0: "batch"}
ZOO: Dict[str, Entry] = {
    "resnet18": Entry(ResNet18, image_inputs(3, 224), ("logits",), {"input": BATCH, "logits": BATCH}),
    "mobilenetv2": Entry(MobileNetV2, image_inputs(3, 224), ("logits",), {"input": BATCH, "logits": BATCH}),
    "vgg11": Entry(VGG11, image_inputs(3, 224), ("logits",), {"input": BATCH, "logits": BATCH}),
    "bert": Entry(BertEncoder, token_inputs(1000, 128), ("last_hidden_state", "pooler_output"),
                  {"input_ids": BATCH, "attention_mask": BATCH, "last_hidden_state": BATCH, "pooler_output": BATCH}),
    "mlp": Entry(MLP, lambda rng, batch: {"input": rng.standard_normal((batch, 784), dtype=np.float32)},
                 ("log_probs",), {"input": BATCH, "log_probs": BATCH}),
    "senet": Entry(SENet, image_inputs(3, 64), ("logits",), {"input": BATCH, "logits": BATCH}),
    "convnext": Entry(ConvNeXt, image_inputs(3, 64), ("logits",), {"input": BATCH, "logits": BATCH}),
    "unet": Entry(UNet, image_inputs(3, 64), ("mask_logits",), {"input": BATCH, "mask_logits": BATCH}),
    "gpt": Entry(GPT, causal_lm_inputs(512), ("logits",),
                 {"input_ids": {0: "batch", 1: "tokens"}, "logits": {0: "batch", 1: "tokens"}}),
}


def sample_inputs(name: str, batch: int = 1, seed: int = 0) -> Dict[str, np.ndarray]:
    """Random inputs for zoo model ``name``: input name -> array, ``batch`` rows."""
    return ZOO[name].inputs(np.random.default_rng(seed), batch)


def calibrate_batchnorm(model: nn.Module, feeds: Dict[str, np.ndarray]) -> None:
    """Give every BatchNorm random affine parameters and running statistics measured on ``feeds``, so that
    inference-mode BN is neither the identity nor blows activations up."""
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    if not norms:
        return
    for bn in norms:
        nn.init.uniform_(bn.weight, 0.5, 1.5)
        nn.init.normal_(bn.bias, 0.0, 0.1)
        bn.momentum = None  # cumulative average over the calibration pass
    model.train()
    with torch.no_grad():
        model(*(torch.from_numpy(v) for v in feeds.values()))
    model.eval()


def build(name: str) -> nn.Module:
    """Zoo model ``name`` in inference mode with weights from a fixed seed."""
    torch.manual_seed(0)
    model = ZOO[name].build()
    calibrate_batchnorm(model, sample_inputs(name, batch=4, seed=1))
    return model.eval()


@contextlib.contextmanager
def quiet_loggers(*names: str):
    """Raise the named loggers to ERROR for the duration (the exporters log every fallback they take)."""
    loggers = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def export_module(model: nn.Module, feeds: Dict[str, np.ndarray], outputs: Sequence[str],
                  dynamic: Dict[str, Dict[int, str]], path: str, dynamo: bool = False) -> str:
    """Export ``model`` (inference mode) traced on ``feeds`` to ``path`` at opset 17 with the named outputs and
    dynamic axes; ``dynamo`` picks the dynamo exporter over the TorchScript one. Returns ``path``."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    args = tuple(torch.from_numpy(v) for v in feeds.values())
    options = dict(input_names=list(feeds), output_names=list(outputs), dynamic_axes=dynamic, opset_version=OPSET,
                   dynamo=dynamo)
    if dynamo:  # the dynamo exporter starts at opset 18 and converts down where the onnx converter can
        options.update(external_data=False, optimize=True, verbose=False)
    else:  # keep BatchNormalization nodes: folding them into the convs is irc's job (fold-batchnorm)
        options.update(training=torch.onnx.TrainingMode.PRESERVE)
    with torch.no_grad(), warnings.catch_warnings(), quiet_loggers("torch.onnx", "onnxscript"):
        warnings.simplefilter("ignore")
        torch.onnx.export(model, args, path, **options)
    return path


def export(name: str, outdir, dynamo: bool = False) -> str:
    """Export zoo model ``name`` into ``outdir`` (NAME.onnx, or NAME.dynamo.onnx with the dynamo exporter);
    return the path written."""
    path = os.path.join(os.fspath(outdir), f"{name}.dynamo.onnx" if dynamo else f"{name}.onnx")
    entry = ZOO[name]
    return export_module(build(name), sample_inputs(name, batch=2), entry.outputs, entry.dynamic, path, dynamo)


def describe(path: str) -> Tuple[int, Dict[str, int]]:
    """(default-domain opset, ONNX op type -> node count) of the model at ``path``."""
    import onnx
    model = onnx.load(path)
    opset = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    return opset, dict(collections.Counter(n.op_type for n in model.graph.node).most_common())


def check_against_torch(name: str, path: str) -> float:
    """Largest |onnxruntime - torch| over the outputs of ``path`` on batch-1 and batch-3 sample inputs."""
    import onnxruntime as ort
    model, sess = build(name), ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    worst = 0.0
    for batch in (1, 3):
        feeds = sample_inputs(name, batch, seed=batch)
        with torch.no_grad():
            expected = model(*(torch.from_numpy(v) for v in feeds.values()))
        expected = expected if isinstance(expected, tuple) else (expected,)
        for got, exp in zip(sess.run(None, feeds), expected):
            worst = max(worst, float(np.abs(got - exp.numpy()).max()))
    return worst


def main(argv: List[str] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("outdir")
    parser.add_argument("--models", default=",".join(ZOO), help=f"comma-separated subset of: {', '.join(ZOO)}")
    parser.add_argument("--dynamo", action="store_true", help="also export with the dynamo exporter")
    parser.add_argument("--no-check", action="store_true", help="skip the onnxruntime-vs-torch check")
    args = parser.parse_args(argv)
    names = [n for n in args.models.split(",") if n]
    unknown = sorted(set(names) - set(ZOO))
    if unknown:
        parser.error(f"unknown model(s) {unknown}; the zoo has {', '.join(ZOO)}")
    status = 0
    for name in names:
        for dynamo in (False, True) if args.dynamo else (False,):
            try:
                path = export(name, args.outdir, dynamo)
            except Exception as e:  # an exporter failure is reported per model, the others still export
                print(f"{name}: {'dynamo' if dynamo else 'torchscript'} export failed: {type(e).__name__}: "
                      f"{str(e).splitlines()[0] if str(e) else ''}")
                status = 1
                continue
            opset, ops = describe(path)
            check = "" if args.no_check else (
                f", onnxruntime vs torch: max abs err {check_against_torch(name, path):.2g}")
            print(f"{path}: {os.path.getsize(path) / 1e6:.1f} MB, opset {opset}{check}")
            print("    " + ", ".join(f"{op} {n}" for op, n in ops.items()))
    return status


if __name__ == "__main__":
    sys.exit(main())
