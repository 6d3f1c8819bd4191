"""The engine: one compiled pass per (model, layers) runs every gradient method.

`explain` records the target layer's activations A while the model runs, takes the
gradient G of each requested class's logit with respect to A (the backward pass runs
through the layers after A alone), turns (A, G) into weights with the method's function
from `methods.WEIGHTS`, and returns ReLU(sum_k w_k A_k) upsampled and scaled. The method,
the classes (any number per image) and the signed view are inputs of one `tf.function`,
traced once per (model, layers): switching method or class never retraces. The guided
methods have a pass of their own (their ReLUs are swapped for guided ones); Score-CAM and
Ablation-CAM run forward passes on perturbed inputs (`perturbation.py`).

Shapes: N images, S x S pixels, K classes per image, h x w x c the target layer.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import tensorflow as tf

from camlib import perturbation
from camlib.capture import recording, swapped
from camlib.guided import guiding
from camlib.layers import (
    check_model,
    check_spatial,
    classifier,
    find_layer,
    image_input,
    is_symbolic,
    output_index,
    spatial_layers,
    target_layer,
    without_softmax,
)
from camlib.methods import NO_GRADIENT, WEIGHTS, fuse_layer_maps, upsample_and_scale, weighted_map
from camlib.photos import softmax


class _NoRetracingNoise(logging.Filter):
    """TensorFlow warns when a program traces many functions; one pass per (model, layers)
    is by design here."""

    def filter(self, record):
        return "triggered tf.function retracing" not in record.getMessage()


tf.get_logger().addFilter(_NoRetracingNoise())

MAP_METHODS = list(WEIGHTS)  # one compiled pass for all of them
GUIDED = {"guided_backprop": None, "guided_grad_cam": "grad_cam", "guided_grad_cam++": "grad_cam++"}
SLOW = tuple(perturbation.METHODS)  # Score-CAM, Ablation-CAM: many forward passes
METHODS = [*MAP_METHODS[:8], *SLOW, *GUIDED, *MAP_METHODS[8:]]
Cancelled = perturbation.Cancelled


class Explanation(NamedTuple):
    """What `explanation` returns: the maps and what they explain."""

    maps: np.ndarray  # (N, S, S) / (N, K, S, S) maps, or (N, [K,] S, S, 3) guided gradients
    classes: np.ndarray  # (N,) or (N, K) the class each map explains
    probabilities: np.ndarray  # (N,) or (N, K) its softmax probability
    logits: np.ndarray  # (N, classes) the model's output
    layer: str | None  # the target layer


# ---------------------------------------------------------------------------
# The compiled pass


def _columns(kernel, classes):
    """The classifier's weights of each image's class: kernel (c, classes), or (1, 1, c, classes)
    for a 1 x 1 convolution, and classes (N,) -> (N, c)."""
    kernel = tf.cast(kernel, tf.float32)
    return tf.transpose(tf.gather(tf.reshape(kernel, (-1, kernel.shape[-1])), classes, axis=1))


def _compiled_pass(model, layer_names: tuple, guided: bool, output: int, specs: tuple, k: int | None = None):
    """A tf.function (inputs, classes (N, K), -r for each image's r-th most likely, method index, signed) ->
    {"maps": (L, N, K, S, S) or (L, N, K, S, S, 3) when guided, "logits", "classes"},
    built once per (model, layers, guided, output) and cached on the model. A guided pass
    is also built per K: the pixel gradients' loop over classes runs faster when K is known
    when traced (benchmarks/README.md, the guided methods)."""
    cache = model.__dict__.setdefault("_cam_passes", {})
    key = (layer_names, guided, output, specs, k)
    if key in cache:
        return cache[key]

    targets = [find_layer(model, name) for name in layer_names]
    softmax_swaps, output_layer = without_softmax(model, output)
    try:
        kernel = classifier(model, targets[0], output) if targets else None  # read at every call
    except ValueError:
        kernel = None  # the head is not GAP -> Dense: `cam` is refused before it gets here
    if guided:
        guiding(model, {"guided": True}, output_layer)  # refuse unsupported models now, not while tracing
    image_index = image_input(model)
    several = len(specs) > 1

    needs_gradient = tf.constant([name not in NO_GRADIENT for name in MAP_METHODS])

    def maps_of(A, grad, classes, method, size, signed):
        """The maps of method number `method` at one layer, for every class: (N, K, S, S).
        One gradient graph, and a switch that runs only the chosen method's weights."""
        A32 = tf.cast(A, tf.float32)  # (N, h, w, c)

        def one_class(c):  # c: (N,) the class of each image
            G = tf.cond(needs_gradient[method], lambda: grad(c, A), lambda: tf.zeros_like(A32))  # (N, h, w, c)
            column = _columns(kernel, c) if kernel is not None else tf.zeros(tf.shape(A32)[::3])  # (N, c)
            branches = [lambda fn=fn: weighted_map(A32, fn(A32, G, column), relu=False) for fn in WEIGHTS.values()]
            m = tf.switch_case(method, branches)  # (N, h, w)
            return upsample_and_scale(tf.where(signed, m, tf.nn.relu(m)), size, signed)

        per_class = tf.map_fn(one_class, tf.transpose(classes), fn_output_signature=tf.float32)  # (K, N, S, S)
        return tf.transpose(per_class, (1, 0, 2, 3))

    @tf.function(
        input_signature=[
            [tf.TensorSpec(s, tf.float32) for s in specs],
            tf.TensorSpec((None, k), tf.int32),
            tf.TensorSpec((), tf.int32),
            tf.TensorSpec((), tf.bool),
        ],
        reduce_retracing=True,
        autograph=False,  # plain Python loops over layers and methods, unrolled at trace time
    )
    def run(inputs, classes, method, signed):
        images = inputs[image_index]
        state = {"A": [None] * len(targets), "guided": guided}
        # only what depends on A (or on the pixels, when guided) is recorded: the backward
        # pass of the map methods runs through the layers after A alone
        with tf.GradientTape(persistent=True, watch_accessed_variables=False) as tape:
            if guided:
                tape.watch(images)
            with swapped(softmax_swaps + (guiding(model, state, output_layer) if guided else [])):
                with swapped(recording(targets, state, tape)):  # inside: it wraps the guided ReLUs
                    out = model(list(inputs) if several else images, training=False)
            logits = tf.cast(out[output] if isinstance(out, (list, tuple)) else out, tf.float32)  # (N, classes)
        ranked = tf.math.top_k(logits, k=tf.maximum(1, tf.reduce_max(-classes))).indices  # (N, r) most likely first
        classes = tf.where(classes < 0, tf.gather(ranked, tf.maximum(-classes - 1, 0), batch_dims=1), classes)

        def grad(c, wrt):  # d logit_c / d wrt, one class per image, c: (N,)
            onehot = tf.one_hot(c, tf.shape(logits)[-1], dtype=tf.float32)
            return tf.cast(tape.gradient(logits, wrt, output_gradients=onehot), tf.float32)

        size = tf.shape(images)[1:3]
        per_layer = []
        for A in state["A"]:
            per_layer.append(maps_of(A, grad, classes, method, size, signed))
        if guided:  # Guided Backpropagation: per class (N, S, S, 3), times the map if any
            pixels = tf.map_fn(lambda c: grad(c, images), tf.transpose(classes), fn_output_signature=tf.float32)
            pixels = tf.transpose(pixels, (1, 0, 2, 3, 4))  # (N, K, S, S, 3)
            per_layer = [pixels * m[..., None] for m in per_layer] or [pixels]
        return {"maps": tf.stack(per_layer), "logits": logits, "classes": classes}

    cache[key] = run
    return run


# ---------------------------------------------------------------------------
# Checking what the user passes


def _as_inputs(model, images) -> tuple[list[np.ndarray], int, bool]:
    """images (one array, or a list / dict for a model with several inputs) -> the model's
    inputs as float32 batches, the index of the image input, and whether one image came."""
    symbolic = is_symbolic(model)
    n_inputs = len(model.inputs) if symbolic else 1
    index = image_input(model)
    if n_inputs > 1:
        names = [x.name for x in model.inputs]
        if isinstance(images, dict):
            missing = [n for n in names if n not in images]
            if missing:
                raise ValueError(f"the model's inputs are {names}; missing {missing}")
            images = [images[n] for n in names]
        if not isinstance(images, (list, tuple)) or len(images) != n_inputs:
            raise ValueError(f"model {model.name!r} takes {n_inputs} inputs {names}: pass a list or a dict of them")
        inputs = [np.asarray(x) for x in images]
    else:
        inputs = [images]
    x, single = _as_batch(model, inputs[index], index)
    inputs = [x if i == index else _other_input(v, single, len(x)) for i, v in enumerate(inputs)]
    return inputs, index, single


def _other_input(value, single: bool, n: int) -> np.ndarray:
    v = np.asarray(value, np.float32)
    v = v[None] if single else v
    if len(v) != n:
        raise ValueError(f"an input has {len(v)} rows for {n} images")
    return v


def _as_batch(model, images, index: int = 0) -> tuple[np.ndarray, bool]:
    x = np.asarray(images)
    if x.dtype == object or not np.issubdtype(x.dtype, np.number):
        raise TypeError(f"images must be a numeric array, not {x.dtype}")
    single = x.ndim == 3
    if single:
        x = x[None]
    if x.ndim != 4:
        raise ValueError(f"images must be one image (S, S, 3) or a batch (N, S, S, 3), not shape {x.shape}")
    if len(x) == 0:
        raise ValueError("the batch of images is empty")
    if is_symbolic(model):
        expected = tuple(model.inputs[index].shape[1:])
        if x.shape[-1] != expected[-1]:
            raise ValueError(f"the model expects {expected[-1]} channels, the images have {x.shape[-1]}")
        if any(e is not None and e != s for e, s in zip(expected[:2], x.shape[1:3])):
            raise ValueError(
                f"the model takes {expected[0]}x{expected[1]} images, got {x.shape[1]}x{x.shape[2]}: "
                f"use helpers.load_image(source, size={expected[0]})"
            )
    x = x.astype(np.float32)
    if not np.isfinite(x).all():
        raise ValueError("the images contain NaN or infinite values")
    return x, single


def _as_classes(classes, n: int, n_classes: int, top: int | None = None) -> tuple[np.ndarray, bool]:
    """classes (or top=K) -> (N, K) int32 with -r for "the r-th most likely class", and whether
    it was one class per image."""
    if top is not None:
        if classes is not None:
            raise ValueError("give classes or top=K, not both")
        if not 1 <= int(top) <= n_classes:
            raise ValueError(f"top must lie in 1..{n_classes}, not {top}")
        return np.tile(-np.arange(1, int(top) + 1, dtype=np.int32), (n, 1)), False
    if classes is None:
        return np.full((n, 1), -1, np.int32), True
    c = np.asarray(classes)
    if not np.issubdtype(c.dtype, np.integer):
        raise TypeError(f"classes must be integers (see helpers.class_index), not {c.dtype}")
    per_image = c.ndim <= 1
    if c.ndim == 0:
        c = np.full((n, 1), int(c))
    elif c.ndim == 1:
        if len(c) != n:
            raise ValueError(
                f"classes has {len(c)} entries for {n} images: give one per image, one int, or an (N, K) array"
            )
        c = c[:, None]
    elif c.ndim != 2 or c.shape[0] != n or c.shape[1] == 0:
        raise ValueError(f"classes of shape {c.shape} do not fit {n} images: use (N,) or (N, K)")
    if c.min() < 0 or c.max() >= n_classes:
        raise ValueError(f"class indices must lie in 0..{n_classes - 1}, got {c.min()}..{c.max()}")
    return c.astype(np.int32), per_image


def _n_classes(model, output: int) -> int:
    if is_symbolic(model):
        return model.outputs[output].shape[-1] or 2**31 - 1
    return 2**31 - 1  # a subclassed model: checked by the pass (gather) instead


def _resolve(model, images, method, classes, layers, output, signed, top):
    """Everything checked, and the names resolved, before anything is compiled."""
    check_model(model)
    if method == "grad_cam_signed":  # the signed Grad-CAM, by its old name
        method, signed = "grad_cam", True
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose from {METHODS}")
    output = output_index(model, output)
    inputs, index, single = _as_inputs(model, images)
    c, per_image = _as_classes(classes, len(inputs[index]), _n_classes(model, output), top)
    if method == "guided_backprop":
        layers = ()
    elif layers is None:
        layers = (target_layer(model, output, inputs[index].shape),)
    for name in layers:
        layer = find_layer(model, name)
        if is_symbolic(model):
            check_spatial(model, layer, name)
        if method == "cam":
            classifier(model, layer, output)  # raises, saying why, when CAM does not apply
    return method, tuple(layers), output, inputs, index, single, c, per_image, signed


def _run(model, images, method, classes, layers, output=None, signed=False, top=None, **options):
    method, layers, output, inputs, index, single, c, per_image, signed = _resolve(
        model, images, method, classes, layers, output, signed, top
    )
    if method in SLOW:
        out = perturbation.run(method, model, inputs, index, c, layers, output, signed, **options)
    else:
        map_method = GUIDED.get(method, method)
        specs = tuple((None, *x.shape[1:]) for x in inputs)
        run = _compiled_pass(model, layers, method in GUIDED, output, specs, c.shape[1] if method in GUIDED else None)
        which = MAP_METHODS.index(map_method) if map_method else 0
        out = run([tf.constant(x) for x in inputs], tf.constant(c), tf.constant(which), tf.constant(bool(signed)))
        out = {key: value.numpy() for key, value in out.items()}
    return out, single, per_image, layers


def explanation(
    model, images, method: str = "grad_cam", classes=None, layer: str | None = None, **options
) -> Explanation:
    """Like `explain`, with the classes explained and their probabilities."""
    out, single, per_image, layers = _run(model, images, method, classes, None if layer is None else (layer,),
                                          **options)
    maps, classes_, logits = out["maps"][0], out["classes"], out["logits"]
    probabilities = np.take_along_axis(softmax(logits), classes_, axis=1).astype(np.float32)
    if per_image:
        maps, classes_, probabilities = maps[:, 0], classes_[:, 0], probabilities[:, 0]
    if single:
        maps, classes_, probabilities, logits = maps[0], classes_[0], probabilities[0], logits[0]
    return Explanation(maps.astype(np.float32), classes_, probabilities, logits, layers[0] if layers else None)


def explain(model, images, method: str = "grad_cam", classes=None, layer: str | None = None, **options) -> np.ndarray:
    """Class activation maps for a batch of images, in one compiled pass.

    images: (N, S, S, 3), or one image (S, S, 3): pixels 0..255 for `load_model`
        models, whatever the model takes for your own model; for a model with several
        inputs, a list (or a dict by input name) of them, the image input among them.
    method: a name in METHODS. Maps in [0, 1]: "cam", "grad_cam", "grad_cam++",
        "counterfactual", "layer_cam", "hirescam", "xgrad_cam", "eigen_cam", "score_cam",
        "ablation_cam", and the Grad-CAM++ variants "grad_cam++_all", "grad_cam++_raw",
        "grad_cam++_mean". Gradients with respect to the pixels, unscaled (show them with
        `gradient_image`): "guided_backprop", "guided_grad_cam", "guided_grad_cam++".
    classes: None (each image's top-1), an int (the same for all), N ints (one per
        image) or an (N, K) array (K classes per image, e.g. the top-5, in one pass).
    layer: the target layer's name (also inside a nested model); None chooses the
        layer the classifier head pools from (`target_layer`).

    Options (keywords): top=K (instead of classes: each image's K most likely classes, chosen
    in the same pass, (N, K, S, S) maps); output= (which output of a model with several: index or name);
    signed=True (maps in [-1, 1], for and against the class, no ReLU); for score_cam and
    ablation_cam: batch_size= (perturbed inputs per forward pass), progress= (None: a
    progress bar when it runs long; False; or a function (done, total) that may return
    False to cancel, raising `Cancelled`); for score_cam: channels=M (Faster Score-CAM,
    the M channels of largest spatial standard deviation).

    Returns float32 (N, S, S) maps, (N, K, S, S) for K classes per image, (N, [K,] S, S, 3)
    for the guided methods; without the N axis for a single image. The score explained
    is the logit: a model that ends in softmax is explained through its pre-softmax output.
    In the guided map methods, ReLUs after the target layer (only in heads such as VGG's
    fully connected layers) back-propagate normally, so that the map's gradients stay exact.
    """
    return explanation(model, images, method, classes, layer, **options).maps


def compare_layers(model, images, layers: Sequence[str], method: str = "grad_cam", classes=None,
                   **options) -> np.ndarray:
    """Maps at several layers of one model, in one pass: (L, N, S, S) (or (L, S, S) for one image)."""
    if not layers or isinstance(layers, str):
        raise ValueError("give a list of layer names; helpers.spatial_layers(model) lists them")
    out, single, per_image, _ = _run(model, images, method, classes, tuple(layers), **options)
    maps = out["maps"]  # (L, N, K, S, S)
    if per_image:
        maps = maps[:, :, 0]
    return (maps[:, 0] if single else maps).astype(np.float32)


def fuse_layers(model, images, layers: Sequence[str], classes=None, gamma: float = 2.0, **options) -> np.ndarray:
    """Layer-CAM's multi-layer map (Jiang et al. 2021, section 3.3): Layer-CAM at each of
    `layers` in one pass, the shallower ones scaled with tanh(gamma M / max M), fused by
    the elementwise maximum. Same shapes as `explain`."""
    maps = compare_layers(model, images, layers, "layer_cam", classes, **options)  # (L, ...)
    order = spatial_layers(model) if is_symbolic(model) else list(layers)
    depth = [order.index(name.split("/")[-1]) if name.split("/")[-1] in order else i for i, name in enumerate(layers)]
    deepest_first = np.argsort(depth)[::-1]
    return fuse_layer_maps(tf.constant(maps[deepest_first]), gamma).numpy()

