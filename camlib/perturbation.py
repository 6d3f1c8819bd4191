"""Score-CAM and Ablation-CAM: channel weights from what the model says when a channel is
shown alone (Score-CAM) or taken away (Ablation-CAM). No gradient; many forward passes,
batched, in compiled functions traced once per (model, layer).

- Score-CAM (Wang et al. 2020), as the authors' code: H_k = A_k upsampled bilinearly and
  min-max scaled to [0, 1] (a constant channel is skipped: weight 0); the weight of
  channel k is the softmax probability of the class for the input X * H_k, masked in
  pixel space, so the baseline is black. pytorch-grad-cam instead takes a softmax over
  the channels of the masked logits, and tf-keras-vis min-max scales with an epsilon
  (constant channels become black masks) and upsamples with nearest-edge zoom.
  `channels=M` is Faster Score-CAM (tf-keras-vis' max_N): only the M channels of largest
  spatial standard deviation of A_k.
- Ablation-CAM (Desai & Ramaswamy 2020): w_k = (y_c - y_c^k) / y_c, y_c^k the logit with
  A_k set to zero. The layers before the target run once per image; only the layers
  after it run once per ablated channel (pytorch-grad-cam re-runs the whole network for
  every channel). Where the head cannot be cut out of the model (a skip connection
  across the target layer, a nested or subclassed model) the whole network runs per
  batch of ablated channels instead, with the same numbers.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from camlib.capture import recording, swapped
from camlib.layers import find_layer, is_symbolic, linear_head, without_softmax
from camlib.methods import ablation_cam_weights, score_cam_weights, upsample_and_scale, weighted_map

METHODS = ("score_cam", "ablation_cam")
BATCH = {"score_cam": 32, "ablation_cam": 256}  # perturbed inputs per forward pass


class Cancelled(Exception):
    """A slow method was stopped by its progress function returning False."""


def _cached(model, key, make):
    cache = model.__dict__.setdefault("_cam_perturbation", {})
    if key not in cache:
        cache[key] = make()
    return cache[key]


def _forward(model, layer, output, specs, replace=False):
    """A compiled (inputs[, keep (B, c)]) -> (A (B, h, w, c), logits (B, classes)): one forward
    pass recording the target layer; with `replace`, A * keep is what the rest of the network
    sees (Ablation-CAM's ablated copies)."""
    target = find_layer(model, layer)
    softmax_swaps, _ = without_softmax(model, output)
    several = len(specs) > 1
    signature = [[tf.TensorSpec(s, tf.float32) for s in specs]]
    if replace:
        signature.append(tf.TensorSpec((None, None), tf.float32))

    @tf.function(input_signature=signature, reduce_retracing=True, autograph=False)
    def run(inputs, keep=None):
        state = {"A": [None], "guided": False}
        ablate = None if keep is None else (lambda i, A: A * tf.cast(keep, A.dtype)[:, None, None, :])
        with swapped(softmax_swaps), swapped(recording([target], state, replace=ablate)):
            out = model(list(inputs) if several else inputs[0], training=False)
        logits = out[output] if isinstance(out, (list, tuple)) else out
        return tf.cast(state["A"][0], tf.float32), tf.cast(logits, tf.float32)

    return run


def _progress(progress, total: int, label: str):
    """A function (done) -> None that reports to `progress`: None (a tqdm bar when there is
    more than one step), False (nothing), or a callable (done, total) returning False to stop."""
    if progress is False or (progress is None and total <= 1):
        return lambda done: None, lambda: None
    if progress is None:
        from tqdm.auto import tqdm

        bar = tqdm(total=total, desc=label, leave=False)
        return lambda done: bar.update(done - bar.n), bar.close

    def report(done):
        if progress(done, total) is False:
            raise Cancelled(f"{label} cancelled after {done} of {total} steps")

    return report, lambda: None


# ---------------------------------------------------------------------------
# Score-CAM


def _score_pass(model, layer, output, specs, image_index):
    """A compiled (inputs of one image, A (h, w, c), channels (B,), classes (K,)) ->
    probabilities (B, K) of the classes for the image masked by each channel's H_k."""
    forward = _cached(model, ("forward", layer, output, specs), lambda: _forward(model, layer, output, specs))
    signature = [
        [tf.TensorSpec((1, *s[1:]), tf.float32) for s in specs],
        tf.TensorSpec((None, None, None), tf.float32),
        tf.TensorSpec((None,), tf.int32),
        tf.TensorSpec((None,), tf.int32),
    ]

    @tf.function(input_signature=signature, reduce_retracing=True, autograph=False)
    def run(inputs, A, channels, classes):
        size = tf.shape(inputs[image_index])[1:3]
        up = tf.image.resize(tf.gather(A, channels, axis=-1)[None], size, method="bilinear")[0]  # (S, S, B)
        low = tf.reduce_min(up, axis=(0, 1), keepdims=True)
        H = tf.math.divide_no_nan(up - low, tf.reduce_max(up, axis=(0, 1), keepdims=True) - low)  # (S, S, B)
        H = tf.transpose(H, (2, 0, 1))[..., None]  # (B, S, S, 1)
        b = tf.shape(channels)[0]
        batch = [inputs[i] * H if i == image_index else tf.repeat(x, b, axis=0) for i, x in enumerate(inputs)]
        _, logits = forward(batch)
        return tf.gather(tf.nn.softmax(logits), classes, axis=1)  # (B, K)

    return run


def _score_cam(model, inputs, index, A, classes, layer, output, batch_size, channels, report):
    specs = tuple((None, *x.shape[1:]) for x in inputs)
    run = _cached(model, ("score", layer, output, specs), lambda: _score_pass(model, layer, output, specs, index))
    n, _, _, c = A.shape
    w = np.zeros((n, classes.shape[1], c), np.float32)
    plans = []
    for i in range(n):
        spread = A[i].reshape(-1, c).std(axis=0)  # (c,)
        usable = np.flatnonzero(np.ptp(A[i].reshape(-1, c), axis=0) > 0)  # constant channels are skipped
        if channels is not None:
            usable = usable[np.argsort(-spread[usable], kind="stable")[:channels]]
        plans.append([usable[s : s + batch_size] for s in range(0, len(usable), batch_size)])
    done = 0
    for i, batches in enumerate(plans):
        one = [tf.constant(x[i : i + 1]) for x in inputs]
        for chunk in batches:
            p = run(one, tf.constant(A[i]), tf.constant(chunk.astype(np.int32)), tf.constant(classes[i]))
            w[i, :, chunk] = score_cam_weights(p).numpy()  # (B, K)
            done += 1
            report(done)
    return w


def _score_cam_steps(A, batch_size, channels):
    c = A.shape[-1] if channels is None else min(channels, A.shape[-1])
    return len(A) * -(-c // batch_size)


# ---------------------------------------------------------------------------
# Ablation-CAM


def _head(model, layer, output):
    """The layers after `layer` as a compiled (A (1, h, w, c), keep (B, c), classes (K,)) ->
    logits (B, K) of A * keep, or None when they cannot be cut out of the model. When the
    head starts with global average pooling, zeroing A_k is zeroing the pooled k: the
    ablation is done after the pooling, on (B, c) instead of (B, h, w, c); and when the
    logits are linear in the pooled A (GAP -> Dense), only the K classes' columns are
    computed."""
    if not is_symbolic(model):
        return None
    target = next((op for op in getattr(model, "operations", None) or model.layers if op.name == layer), None)
    if target is None:
        return None  # inside a nested model
    consumers = [node.operation for node in getattr(target, "_outbound_nodes", [])]
    pooled = len(consumers) == 1 and isinstance(consumers[0], keras.layers.GlobalAveragePooling2D)
    pooled = pooled and not consumers[0].keepdims
    try:
        start = consumers[0].output if pooled else target.output
        head = keras.Model(start, model.outputs[output])
    except ValueError:
        return None  # a connection across the target layer
    softmax_swaps, _ = without_softmax(model, output)
    linear = linear_head(model, target, output) if pooled else None
    signature = [
        tf.TensorSpec((1, *target.output.shape[1:]), tf.float32),
        tf.TensorSpec((None, None), tf.float32),
        tf.TensorSpec((None,), tf.int32),
    ]

    @tf.function(input_signature=signature, autograph=False)
    def run(A, keep, classes):
        x = tf.reduce_mean(A, axis=(1, 2)) * keep if pooled else A * keep[:, None, None, :]
        if linear is not None:  # y_c = p . W[:, c] + b_c, for the K classes only
            kernel, bias = (tf.gather(tf.cast(v, tf.float32), classes, axis=-1) for v in linear)
            return x @ kernel + bias
        with swapped(softmax_swaps):
            logits = head(tf.cast(x, head.inputs[0].dtype), training=False)
        return tf.gather(tf.cast(logits, tf.float32), classes, axis=1)

    run.pooled = pooled  # cheap enough to ablate every channel in one batch
    return run


def _ablation_cam(model, inputs, index, A, logits, classes, layer, output, batch_size, report):
    specs = tuple((None, *x.shape[1:]) for x in inputs)
    head = _cached(model, ("head", layer, output), lambda: _head(model, layer, output))
    full = None if head is not None else _cached(
        model, ("ablated", layer, output, specs), lambda: _forward(model, layer, output, specs, replace=True)
    )
    n, _, _, c = A.shape
    w = np.zeros((n, classes.shape[1], c), np.float32)
    if getattr(head, "pooled", False):
        batch_size = max(batch_size, c)
    batches = []  # (channels, keep): row b of keep sets channel s + b to zero; the same for every image
    for s in range(0, c, batch_size):
        channels = np.arange(s, min(s + batch_size, c))
        keep = np.ones((len(channels), c), np.float32)
        keep[np.arange(len(channels)), channels] = 0.0
        batches.append((channels, tf.constant(keep)))
    done = 0
    for i in range(n):
        scores = np.take(logits[i], classes[i])[None]  # (1, K)
        for channels, keep in batches:
            if head is not None:
                y = head(tf.constant(A[i][None]), keep, tf.constant(classes[i])).numpy()  # (B, K)
            else:
                batch = [tf.constant(np.repeat(x[i : i + 1], len(channels), axis=0)) for x in inputs]
                y = full(batch, keep)[1].numpy()[:, classes[i]]  # (B, K)
            w[i, :, channels] = ablation_cam_weights(scores, y).numpy()
            done += 1
            report(done)
    return w


# ---------------------------------------------------------------------------
# Both


def run(method, model, inputs, index, classes, layers, output, signed, batch_size=None, channels=None, progress=None):
    """What `engine.explain` returns for Score-CAM or Ablation-CAM: {"maps": (1, N, K, S, S),
    "logits": (N, classes), "classes": (N, K)}."""
    if len(layers) != 1:
        raise ValueError(f"{method} explains one layer at a time; call it once per layer")
    if channels is not None and method != "score_cam":
        raise ValueError("channels= (Faster Score-CAM) applies to score_cam only")
    if channels is not None and int(channels) < 1:
        raise ValueError(f"channels must be a positive number of channels, not {channels}")
    batch_size = int(batch_size or BATCH[method])
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, not {batch_size}")
    layer = layers[0]
    specs = tuple((None, *x.shape[1:]) for x in inputs)
    forward = _cached(model, ("forward", layer, output, specs), lambda: _forward(model, layer, output, specs))
    A, logits = (t.numpy() for t in forward([tf.constant(x) for x in inputs]))  # (N, h, w, c), (N, classes)
    ranked = np.argsort(-logits, axis=-1, kind="stable")  # most likely first
    classes = np.where(classes < 0, np.take_along_axis(ranked, np.maximum(-classes - 1, 0), 1), classes)  # (N, K)
    classes = classes.astype(np.int32)
    if method == "score_cam":
        total = _score_cam_steps(A, batch_size, channels)
    else:
        head = _cached(model, ("head", layer, output), lambda: _head(model, layer, output))
        total = len(A) * (1 if getattr(head, "pooled", False) else -(-A.shape[-1] // batch_size))
    report, close = _progress(progress, total, "Score-CAM" if method == "score_cam" else "Ablation-CAM")
    try:
        if method == "score_cam":
            w = _score_cam(model, inputs, index, A, classes, layer, output, batch_size, channels, report)
        else:
            w = _ablation_cam(model, inputs, index, A, logits, classes, layer, output, batch_size, report)
    finally:
        close()
    size = inputs[index].shape[1:3]
    A32 = tf.constant(A)
    maps = [upsample_and_scale(weighted_map(A32, tf.constant(w[:, j]), relu=not signed), size, signed)
            for j in range(classes.shape[1])]
    return {"maps": tf.stack(maps, axis=1).numpy()[None], "logits": logits, "classes": classes}
