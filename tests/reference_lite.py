"""An independent float64 numpy forward pass of EfficientNet-Lite, used to check the Keras model.

It reads the state dict directly (lukemelas' EfficientNet-PyTorch key layout) and uses
no Keras, TensorFlow or code from `efficientnet_lite` beyond the arrays themselves.
Tensors are NHWC; PyTorch conv weights stay in their (O, I, kh, kw) layout.
"""

from __future__ import annotations

import numpy as np

STAGE_STRIDES = (1, 2, 2, 2, 1, 2, 1)
EPSILON = 1e-3


def _pad_same(x: np.ndarray, k: int, stride: int) -> np.ndarray:
    """Zero-pad (N, H, W, C) like TensorFlow's "same": the odd extra pixel goes after."""
    pads = [(0, 0)]
    for n in x.shape[1:3]:
        total = max((-(-n // stride) - 1) * stride + k - n, 0)
        pads.append((total // 2, total - total // 2))
    return np.pad(x, pads + [(0, 0)])


def _windows(x: np.ndarray, k: int, stride: int):
    """Yield (i, j, view): view is the (N, Ho, Wo, C) input seen by kernel tap (i, j), "same" padding."""
    _, h, w, _ = x.shape
    ho, wo = -(-h // stride), -(-w // stride)
    xp = _pad_same(x, k, stride)
    for i in range(k):
        for j in range(k):
            yield i, j, xp[:, i : i + stride * (ho - 1) + 1 : stride, j : j + stride * (wo - 1) + 1 : stride]


def conv(x: np.ndarray, w: np.ndarray, stride: int = 1) -> np.ndarray:
    """Convolution without bias: (N, H, W, I) with w (O, I, k, k) -> (N, ceil(H/s), ceil(W/s), O)."""
    return sum(v @ w[:, :, i, j].T for i, j, v in _windows(x, w.shape[-1], stride))


def depthwise_conv(x: np.ndarray, w: np.ndarray, stride: int) -> np.ndarray:
    """Depthwise convolution: (N, H, W, C) with w (C, 1, k, k) -> (N, ceil(H/s), ceil(W/s), C)."""
    return sum(v * w[:, 0, i, j] for i, j, v in _windows(x, w.shape[-1], stride))


def batch_norm(x: np.ndarray, state: dict, key: str) -> np.ndarray:
    """Inference-mode batch norm over the last axis of x, with the running statistics under `key`."""
    scale = state[key + ".weight"] / np.sqrt(state[key + ".running_var"].astype(np.float64) + EPSILON)
    return (x - state[key + ".running_mean"]) * scale + state[key + ".bias"]


def relu6(x: np.ndarray) -> np.ndarray:
    """min(max(x, 0), 6), elementwise."""
    return np.clip(x, 0.0, 6.0)


def reference_logits(state: dict[str, np.ndarray], images: np.ndarray) -> np.ndarray:
    """Logits (N, 1000) of EfficientNet-Lite with weights `state` for uint8 RGB images (N, H, W, 3)."""
    x = (np.asarray(images, np.float64) - 127.0) / 128.0
    x = relu6(batch_norm(conv(x, state["_conv_stem.weight"], 2), state, "_bn0"))
    n_blocks = 1 + max(int(k.split(".")[1]) for k in state if k.startswith("_blocks."))
    stage, prev_out = -1, None
    for b in range(n_blocks):
        p = f"_blocks.{b}."
        dw, project = state[p + "_depthwise_conv.weight"], state[p + "_project_conv.weight"]
        new_stage = project.shape[0] != prev_out
        stage += new_stage
        stride = STAGE_STRIDES[stage] if new_stage else 1
        prev_out = project.shape[0]
        h = x
        if p + "_expand_conv.weight" in state:
            h = relu6(batch_norm(conv(h, state[p + "_expand_conv.weight"]), state, p + "_bn0"))
        h = relu6(batch_norm(depthwise_conv(h, dw, stride), state, p + "_bn1"))
        h = batch_norm(conv(h, project), state, p + "_bn2")
        x = h + x if stride == 1 and x.shape[-1] == h.shape[-1] else h
    x = relu6(batch_norm(conv(x, state["_conv_head.weight"]), state, "_bn1"))
    return x.mean(axis=(1, 2)) @ state["_fc.weight"].T + state["_fc.bias"]
