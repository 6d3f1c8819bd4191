"""Swapping a layer's `call` while a compiled pass is traced: how A is recorded.

The traced graph keeps the change, the user's model does not: every swap is undone at
once, in a `finally`. This reaches layers inside nested, Sequential and subclassed models
alike, and Keras operations (a residual `x + y` in a functional model), with no clone of
the model, no copy of its weights and no "Graph disconnected".
"""

from __future__ import annotations

import contextlib

_MISSING = object()


@contextlib.contextmanager
def swapped(swaps):
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


def recording(layers, state, tape=None, replace=None):
    """Swaps that store each target layer's output A in state["A"][i] (and watch it on
    `tape`). `replace(i, A)`, when given, returns what the rest of the network sees
    instead of A (Ablation-CAM's ablated copies)."""

    def recorder(layer, i):
        original = layer.call

        def call(*args, **kwargs):
            out = original(*args, **kwargs)
            if tape is not None:
                tape.watch(out)
            state["A"][i] = out
            state["guided"] = False  # ReLUs after the last target back-propagate normally
            return out if replace is None else replace(i, out)

        return call

    return [(layer, "call", recorder(layer, i)) for i, layer in enumerate(layers)]
