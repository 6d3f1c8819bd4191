"""Makes tests/data/tiny_cnn_jax.keras: a tiny CNN saved by Keras 3 under the JAX backend.

tests/test_cli.py loads it here, under TensorFlow, and checks that it gives the logits JAX
gave (stored beside it in tiny_cnn_jax_expected.npz) and that it can be explained: the
`.keras` format is backend-independent, and this file is the proof. Re-make it in a
throw-away venv, never in the project's:

    python3 -m venv /tmp/jaxvenv
    /tmp/jaxvenv/bin/pip install keras==3.15.1 jax jaxlib numpy h5py
    KERAS_BACKEND=jax /tmp/jaxvenv/bin/python tests/data/make_jax_model.py

The model: pixels 0..255 (N, 32, 32, 3) -> Rescaling -> Conv 8 -> Conv 16 -> global
average pooling -> Dense 5 logits; seeded random weights (about 1,500 parameters, 30 kB).
"""

from pathlib import Path

import keras
import numpy as np

HERE = Path(__file__).resolve().parent


def build() -> keras.Model:
    """The tiny CNN, seeded: (N, 32, 32, 3) pixels 0..255 -> (N, 5) logits."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((32, 32, 3), name="pixels")
    x = keras.layers.Rescaling(1 / 255, name="rescale")(inputs)
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv1")(x)
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="conv2")(x)  # (N, 32, 32, 16)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = keras.layers.Dense(5, name="logits")(x)
    return keras.Model(inputs, outputs, name="tiny_cnn_jax")


if __name__ == "__main__":
    if keras.backend.backend() != "jax":
        raise SystemExit(f"run with KERAS_BACKEND=jax (the backend is {keras.backend.backend()!r})")
    model = build()
    model.save(HERE / "tiny_cnn_jax.keras")
    pixels = np.random.default_rng(0).integers(0, 256, (2, 32, 32, 3)).astype("float32")  # (2, 32, 32, 3)
    logits = np.asarray(model(pixels, training=False))  # (2, 5), computed by JAX
    np.savez(
        HERE / "tiny_cnn_jax_expected.npz",
        pixels=pixels.astype(np.uint8),
        logits=logits,
        backend=keras.backend.backend(),
        keras_version=keras.__version__,
    )
    print(f"saved tiny_cnn_jax.keras with Keras {keras.__version__} on {keras.backend.backend()}; logits {logits}")
