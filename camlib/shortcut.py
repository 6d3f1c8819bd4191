"""Right for the wrong reason: a small CNN that learns a planted mark instead of the content.

The content is two digits that look alike, 3 and 8 (scikit-learn's bundled 8 x 8
handwritten digits, drawn at 32 x 32 with jitter and noise); in the training data a small
red square in the top-left corner is on every 8 and on no 3, like a hospital's token on
the X-rays of its sick patients. The model is near perfect while the mark follows the
label, near chance when it does not, and Grad-CAM points at the mark.

- `make_data`: images and labels, the mark following the label, absent, or at random.
- `build_model`, `train`: the CNN (pixels 0..255 in, logits out, a global-average-pooling
  head, so CAM and Grad-CAM both apply), trained seeded and deterministic in seconds.
- `classify`, `accuracy`, `has_mark`: what the model says, and which images carry the mark
  (whether a map points at it is `metrics.pointing_game(maps, [MARK_BOX] * N, tolerance)`).
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

DIGITS = (3, 8)  # class 0, class 1
SIZE = 32  # images are SIZE x SIZE x 3, pixels 0..255
DIGIT = 28  # each digit is drawn DIGIT x DIGIT, somewhere in the image
MARK_BOX = (1, 1, 6, 6)  # the mark's pixels: x0, y0, x1, y1 (x1, y1 excluded), top-left corner
MARK_COLOUR = (255, 32, 32)
MARKS = ("label", "none", "random")
SPLITS = ("train", "test")
TEST_FRACTION = 0.4  # of the scanned digits, kept for the test images

# ---------------------------------------------------------------------------
# Data


def digits(split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """The scanned 3s and 8s of one split: (n, 8, 8) float32 in [0, 1] and labels (n,) 0 or 1.

    The split is fixed (a seeded permutation): no test image is drawn from a digit that
    was seen in training, only different jitter and noise."""
    from sklearn.datasets import load_digits

    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, not {split!r}")
    data = load_digits()
    keep = np.isin(data.target, DIGITS)
    pixels = (data.images[keep] / 16.0).astype(np.float32)  # (n, 8, 8)
    labels = (data.target[keep] == DIGITS[1]).astype(np.int64)  # (n,)
    order = np.random.default_rng(0).permutation(len(labels))
    cut = int(round(len(labels) * (1 - TEST_FRACTION)))
    chosen = order[:cut] if split == "train" else order[cut:]
    return pixels[chosen], labels[chosen]


def make_data(n: int, seed: int = 0, mark: str = "label", split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """n images (n, SIZE, SIZE, 3) uint8 and labels (n,) int64, half of each class.

    mark: "label" (the mark on every class-1 image, the shortcut), "none" (on no image) or
    "random" (on a random half of each class, so it says nothing about the label).
    Each image is a digit of `split` drawn DIGIT x DIGIT at a random place, grey on a dark
    background with Gaussian noise; the mark is the square MARK_BOX in MARK_COLOUR. The
    same (n, seed, mark, split) gives the same arrays.
    """
    if mark not in MARKS:
        raise ValueError(f"mark must be one of {MARKS}, not {mark!r}")
    rng = np.random.default_rng(seed)
    pixels, classes = digits(split)
    labels = rng.permutation(np.arange(n) % 2)  # (n,) half 0, half 1
    picked = np.array([rng.choice(np.flatnonzero(classes == c)) for c in labels], dtype=np.int64)
    drawn = tf.image.resize(pixels[picked][..., None], (DIGIT, DIGIT)).numpy()[..., 0]  # (n, DIGIT, DIGIT) bilinear
    canvas = np.zeros((n, SIZE, SIZE), np.float32)
    for i, (dy, dx) in enumerate(rng.integers(0, SIZE - DIGIT + 1, size=(n, 2))):
        canvas[i, dy : dy + DIGIT, dx : dx + DIGIT] = drawn[i]
    # background 40, strokes up to 220, noise of standard deviation 30, the same in R, G and B
    images = 40 + 180 * canvas[..., None] + rng.normal(0, 30, (n, SIZE, SIZE, 1))  # (n, S, S, 1)
    images = np.clip(np.repeat(images, 3, axis=-1), 0, 255).astype(np.uint8)  # (n, S, S, 3) grey
    x0, y0, x1, y1 = MARK_BOX
    images[_marked(labels, mark, rng), y0:y1, x0:x1] = MARK_COLOUR
    return images, labels


def _marked(labels: np.ndarray, mark: str, rng: np.random.Generator) -> np.ndarray:
    """Which images carry the mark (n,) bool, for `make_data`'s three kinds of `mark`."""
    if mark == "label":
        return labels == 1
    out = np.zeros(len(labels), bool)
    if mark == "random":
        for c in (0, 1):
            where = np.flatnonzero(labels == c)
            out[rng.permutation(where)[: len(where) // 2]] = True
    return out


def has_mark(images: np.ndarray) -> np.ndarray:
    """Whether each image (N, S, S, 3) carries the mark: (N,) bool."""
    x0, y0, x1, y1 = MARK_BOX
    return np.all(np.asarray(images)[:, y0:y1, x0:x1] == MARK_COLOUR, axis=(1, 2, 3))


# ---------------------------------------------------------------------------
# The model


def build_model() -> keras.Model:
    """A small CNN: pixels 0..255 (N, SIZE, SIZE, 3) in, logits (N, 2) out, no softmax.

    Three 3 x 3 convolutions (one 2 x 2 pooling) and global average pooling into one
    Dense layer: the head CAM needs, and a 16 x 16 target layer ("conv3") fine enough
    to tell a corner from the centre."""
    images = keras.Input((SIZE, SIZE, 3), name="pixels")
    x = keras.layers.Rescaling(1 / 255, name="scale")(images)
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="conv1")(x)  # (N, 32, 32, 16)
    x = keras.layers.MaxPooling2D(name="pool")(x)  # (N, 16, 16, 16)
    x = keras.layers.Conv2D(32, 3, padding="same", activation="relu", name="conv2")(x)  # (N, 16, 16, 32)
    x = keras.layers.Conv2D(32, 3, padding="same", activation="relu", name="conv3")(x)  # (N, 16, 16, 32)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)  # (N, 32)
    logits = keras.layers.Dense(2, name="logits")(x)  # (N, 2)
    return keras.Model(images, logits, name="shortcut_cnn")


def train(seed: int = 0, mark: str = "label", n: int = 600, epochs: int = 8) -> keras.Model:
    """The CNN trained on `make_data(n, seed, mark)`: Adam on the cross-entropy of the
    logits, batches of 32 in a seeded order.

    Seeds Python, NumPy and Keras with `seed` and turns on TensorFlow's deterministic ops,
    so the same call gives the same weights on the same machine."""
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()
    images, labels = make_data(n, seed, mark, "train")
    x = images.astype(np.float32)  # (n, SIZE, SIZE, 3)
    model = build_model()
    model.compile(
        optimizer=keras.optimizers.Adam(3e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    rng = np.random.default_rng(seed)
    for _ in range(epochs):  # train_on_batch, not fit: no tf.data pipeline for 600 small images
        shuffled = rng.permutation(n)
        for start in range(0, n, 32):
            batch = shuffled[start : start + 32]
            model.train_on_batch(x[batch], labels[batch])
    return model


# ---------------------------------------------------------------------------
# Measuring


def classify(model, images: np.ndarray) -> np.ndarray:
    """The model's class for each image (N, S, S, 3): (N,) int64."""
    logits = model(np.asarray(images, np.float32), training=False)  # (N, 2)
    return np.argmax(np.asarray(logits), axis=1)


def accuracy(model, images: np.ndarray, labels: np.ndarray) -> float:
    """The fraction of images the model classifies right."""
    return float(np.mean(classify(model, images) == np.asarray(labels)))
