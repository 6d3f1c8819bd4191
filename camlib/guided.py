"""Guided Backpropagation (Springenberg et al. 2015): ReLUs whose backward pass keeps only
positive gradients, swapped into a model while the guided pass is traced.

- `guided_relu`: ReLU / ReLU6 with the guided gradient, built on TensorFlow's native
  gradients (as fast as the plain backward pass).
- `guiding`: the swaps that make every ReLU of a model guided, in the four ways Keras
  writes a ReLU; any other non-linearity is refused by name.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from camlib.layers import all_layers


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


def guiding(model, state, output_layer):
    """Swaps that make every ReLU of `model` guided while state["guided"] is true.

    Covers the four ways Keras writes a ReLU: activation="relu" (or "relu6") fused in a
    layer, Activation("relu"), ReLU(), ReLU(max_value=6). Any other non-linearity (swish,
    gelu, hard-swish, sigmoid, leaky ReLU, ...) has no guided rule: refused, by name.
    """
    swaps = []

    def switch(guided, plain):
        return lambda *args, **kwargs: (guided if state["guided"] else plain)(*args, **kwargs)

    for layer in all_layers(model):
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
