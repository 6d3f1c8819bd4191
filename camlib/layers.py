"""Finding the layer to explain in any Keras model, and what surrounds it.

- `find_layer`, `spatial_layers`: layers (and Keras operations such as ConvNeXt's residual
  adds) by name, also inside nested models.
- `target_layer`: the automatic choice, the spatial tensor the classifier head pools from.
- `classifier`: CAM's weights, the kernel of the layer after global average pooling;
  `linear_head`: that kernel and bias when the logits are exactly linear in the pooled A.
- `check_model`, `image_input`, `output_index`: what a model takes and returns (one or
  several inputs, one or several outputs), with clear errors for what cannot be explained.
"""

from __future__ import annotations

import difflib

import keras
import tensorflow as tf

from camlib.capture import swapped


def check_model(model) -> keras.Model:
    """`model` itself, or a TypeError saying that a Keras model is expected."""
    if not isinstance(model, keras.Model):
        raise TypeError(
            f"a Keras model is expected (keras.Model, Sequential or a subclass), not {type(model).__name__}; "
            "wrap your function in a keras.Model, or load one with helpers.load_model"
        )
    return model


def is_symbolic(model) -> bool:
    """Functional and Sequential models have a graph of layers; subclassed models do not."""
    try:
        return bool(model.inputs) and bool(model.outputs)
    except (AttributeError, ValueError):
        return False


def all_layers(model) -> list:
    """Every layer and Keras operation of `model`, nested models' included, in order."""
    out = []
    for layer in getattr(model, "operations", None) or getattr(model, "layers", []):
        out.append(layer)
        if isinstance(layer, keras.Model):
            out.extend(all_layers(layer))
    return out


def find_layer(model: keras.Model, name: str):
    """The layer (or operation) called `name` in `model` or in any model nested inside it
    ("out_relu", or a path "mobilenetv2_1.00_224/out_relu")."""
    *path, last = name.split("/")
    owner = model
    for part in path:
        owner = find_layer(owner, part)
    for layer in all_layers(owner):
        if layer.name == last:
            return layer
    close = difflib.get_close_matches(last, [layer.name for layer in all_layers(model)], n=5)
    raise ValueError(
        f"model {model.name!r} has no layer {name!r}"
        + (f"; did you mean one of {close}?" if close else "")
        + " helpers.spatial_layers(model) lists the layers a map can come from."
    )


def is_spatial(shape) -> bool:
    """A (N, h, w, c) tensor with a spatial extent bigger than 1 x 1."""
    return len(shape) == 4 and not (shape[1] == 1 and shape[2] == 1)


def _output_shape(layer):
    try:
        return tuple(layer.output.shape)
    except (AttributeError, ValueError):
        return None


def spatial_layers(model: keras.Model) -> list[str]:
    """The names of the layers whose output is a spatial map (N, h, w, c), input excluded,
    from the input to the output (a subclassed model: the layers seen in one call)."""
    return list(spatial_shapes(model))


def spatial_shapes(model: keras.Model) -> dict[str, tuple]:
    """`spatial_layers` with their output shapes (N, h, w, c)."""
    if not is_symbolic(model):
        return {name: shape for name, shape in _traced_outputs(model) if is_spatial(shape)}
    shapes = {}
    for layer in all_layers(model):
        shape = _output_shape(layer)
        if shape is not None and is_spatial(shape) and not isinstance(layer, keras.layers.InputLayer):
            shapes[layer.name] = shape
    return shapes


def built_input_shape(model) -> tuple:
    """The input shape (N, S, S, C) a subclassed model was built with (first called on)."""
    shape = next(iter((getattr(model, "_build_shapes_dict", None) or {}).values()), None)
    if shape is None:
        raise ValueError(
            f"the subclassed model {model.name!r} has not been called yet, so its layers are unknown: "
            "call it once on a batch, or pass layer= explicitly"
        )
    return tuple(shape)


def check_spatial(model, layer, name: str) -> None:
    """Raise a clear error when `layer` has no (N, h, w, c) output a map could come from."""
    shape = _output_shape(layer)
    if shape is not None and not is_spatial(shape):
        some = spatial_layers(model)[-5:][::-1]
        raise ValueError(
            f"layer {name!r} has no spatial map (its output is {shape}); a CAM needs an (N, h, w, c) layer, "
            f"such as {some} (helpers.spatial_layers(model) lists them all)"
        )


# ---------------------------------------------------------------------------
# Inputs and outputs


def image_input(model) -> int:
    """The index of the image input, (N, S, S, C), among the model's inputs (0 for one input)."""
    if not is_symbolic(model) or len(model.inputs) == 1:
        return 0
    images = [i for i, x in enumerate(model.inputs) if len(x.shape) == 4]
    if not images:
        raise ValueError(f"model {model.name!r} has no image input (N, S, S, C): {[x.shape for x in model.inputs]}")
    return images[0]


def output_index(model, output) -> int:
    """Which output is explained: None (the only one), an index, or an output layer's name."""
    outputs = model.outputs if is_symbolic(model) else [None]
    if output is None:
        if len(outputs) > 1:
            names = [x._keras_history[0].name for x in outputs]
            raise ValueError(f"model {model.name!r} has {len(outputs)} outputs {names}: say which with output=")
        return 0
    if isinstance(output, str):
        names = [x._keras_history[0].name for x in outputs]
        if output not in names:
            raise ValueError(f"model {model.name!r} has no output {output!r}; its outputs are {names}")
        return names.index(output)
    if not 0 <= int(output) < len(outputs):
        raise ValueError(f"output={output} but model {model.name!r} has {len(outputs)} output(s)")
    return int(output)


# ---------------------------------------------------------------------------
# The automatic target layer


def _walk_back(model, start):
    """(layer, output tensor) pairs from `start` towards the inputs, breadth first."""
    queue, seen = [start], set()
    while queue:
        tensor = queue.pop(0)
        layer, node_index, _ = tensor._keras_history
        if id(layer) in seen:
            continue
        seen.add(id(layer))
        yield layer, tensor
        queue.extend(layer._inbound_nodes[node_index].input_tensors)


NOT_TARGETS = (  # layers that only shrink or perturb the map the head reads
    keras.layers.MaxPooling2D,
    keras.layers.AveragePooling2D,
    keras.layers.Dropout,
    keras.layers.SpatialDropout2D,
    keras.layers.ZeroPadding2D,
)


def target_layer(model: keras.Model, output=None, input_shape=None) -> str:
    """The name of the spatial layer the classifier head pools from (the automatic choice).

    Walks from the output back to the first (N, h, w, c) tensor with h x w > 1 x 1,
    passing over pooling and dropout, so VGG16 gives block5_conv3 (the papers' choice)
    and MobileNet gives conv_pw_13_relu, not its 1 x 1 pooled tensor. A nested model
    (a backbone inside a transfer-learning model) is entered and searched the same way;
    a Keras operation (ConvNeXt's last residual add) is a target like a layer. A
    subclassed model is called once and its last spatial layer is taken.
    """
    check_model(model)
    if not is_symbolic(model):
        names = [name for name, shape in _traced_outputs(model, input_shape) if is_spatial(shape)]
        if not names:
            raise ValueError(f"model {model.name!r} has no spatial layer (N, h, w, c) to explain; pass layer=")
        return names[-1]
    for layer, tensor in _walk_back(model, model.outputs[output_index(model, output)]):
        if isinstance(layer, keras.layers.InputLayer):
            continue  # another input (a vector beside the image): keep searching
        if is_spatial(tensor.shape) and not isinstance(layer, NOT_TARGETS):
            if isinstance(layer, keras.Model):
                return f"{layer.name}/{target_layer(layer)}"
            return layer.name
    raise ValueError(f"model {model.name!r} has no spatial layer (N, h, w, c) to explain; CAM methods need a CNN")


def _traced_outputs(model, shape=None) -> list[tuple[str, tuple]]:
    """(name, output shape) of each leaf layer of a subclassed model, in the order one call
    on zeros of `shape` (N, S, S, C) runs them (default: the shape it was built with)."""
    shape = shape or built_input_shape(model)
    seen = []

    def recorder(layer):
        original = layer.call

        def call(*args, **kwargs):
            out = original(*args, **kwargs)
            if hasattr(out, "shape") and not isinstance(layer, NOT_TARGETS):
                seen.append((layer.name, tuple(out.shape)))
            return out

        return call

    leaves = [layer for layer in all_layers(model) if not isinstance(layer, keras.Model)]
    with swapped([(layer, "call", recorder(layer)) for layer in leaves]):
        model(tf.zeros([1, *shape[1:]]), training=False)
    return seen


# ---------------------------------------------------------------------------
# CAM's classifier weights


def producer(tensor):
    """The layer that really makes `tensor`, looking inside nested models."""
    layer = tensor._keras_history[0]
    while isinstance(layer, keras.Model):
        tensor = layer.outputs[0]
        layer = tensor._keras_history[0]
    return layer, tensor


def classifier(model: keras.Model, target, output: int = 0) -> tf.Variable:
    """CAM's weights: the kernel (c, classes) of the layer after global average pooling.

    CAM (Zhou et al. 2016) needs the head GAP -> Dense (or a 1 x 1 convolution, as in
    keras.applications MobileNet), with only dropout, reshape and a final activation
    around them. Anything else raises, naming the layer in the way.
    """
    return _pooled_classifier(model, target, output)[0].kernel


def linear_head(model: keras.Model, target, output: int = 0):
    """(kernel (c, classes), bias (classes,)) when the logits are exactly GAP(A) @ kernel + bias
    (a Dense layer without activation, or with the softmax the engine removes), else None."""
    try:
        dense, after = _pooled_classifier(model, target, output)
    except ValueError:
        return None
    def linear(layer, last):  # the engine removes a softmax only where the output is made
        fn = getattr(layer, "activation", keras.activations.linear)
        softmax = isinstance(layer, keras.layers.Softmax) or fn is keras.activations.softmax
        return fn is keras.activations.linear or (softmax and last)

    if not isinstance(dense, keras.layers.Dense) or not linear(dense, not after):
        return None
    if not all(linear(layer, i == 0) for i, layer in enumerate(after)):
        return None
    bias = dense.bias if dense.use_bias else tf.zeros(dense.units)
    return dense.kernel, bias


def _pooled_classifier(model: keras.Model, target, output: int):
    """The Dense layer (or 1 x 1 convolution) after the global average pooling of `target`,
    and the layers between it and the output; raises ValueError saying why not."""
    if not is_symbolic(model):
        raise ValueError(f"CAM reads the classifier after global average pooling, which the subclassed model "
                         f"{model.name!r} does not expose; use grad_cam (equal to CAM where CAM applies)")
    passing = (
        keras.layers.Dropout,
        keras.layers.Reshape,
        keras.layers.Flatten,
        keras.layers.Activation,
        keras.layers.Softmax,
        keras.layers.Identity,
    )
    layer, tensor = producer(model.outputs[output])
    after = []
    while isinstance(layer, passing):
        after.append(layer)
        layer, tensor = producer(layer._inbound_nodes[0].input_tensors[0])
    is_1x1 = isinstance(layer, keras.layers.Conv2D) and tuple(layer.kernel_size) == (1, 1)
    if not (isinstance(layer, keras.layers.Dense) or is_1x1):
        raise ValueError(
            f"CAM needs a Dense layer (or 1x1 convolution) right after global average pooling; "
            f"{model.name!r} ends in {type(layer).__name__} {layer.name!r}. Use grad_cam, which "
            "works on any head (and equals CAM where CAM applies)."
        )
    dense = layer
    layer, tensor = producer(layer._inbound_nodes[0].input_tensors[0])
    while isinstance(layer, keras.layers.Dropout):
        layer, tensor = producer(layer._inbound_nodes[0].input_tensors[0])
    if not isinstance(layer, keras.layers.GlobalAveragePooling2D):
        raise ValueError(
            f"CAM needs global average pooling before the classifier {dense.name!r}, "
            f"found {type(layer).__name__} {layer.name!r}. Use grad_cam instead."
        )
    pooled, _ = producer(layer._inbound_nodes[0].input_tensors[0])
    if pooled is not target:
        raise ValueError(
            f"CAM explains only the layer the global average pooling reads, {pooled.name!r}, "
            f"not {target.name!r}. Use layer=None (or {pooled.name!r}), or grad_cam for other layers."
        )
    return dense, after


def without_softmax(model, output: int = 0):
    """Swaps that make an output ending in softmax return its logits, and that last layer.

    Every method explains the logit, never the probability: the softmax couples all
    classes, so its gradient mixes in evidence for the others (Selvaraju et al. use the
    pre-softmax score).
    """
    if not is_symbolic(model):
        return [], None
    layer, _ = producer(model.outputs[output])
    fn = getattr(layer, "activation", None)
    if isinstance(layer, keras.layers.Softmax):
        return [(layer, "call", lambda x, *a, **k: x)], layer
    if fn is keras.activations.softmax:
        return [(layer, "activation", keras.activations.linear)], layer
    return [], layer
