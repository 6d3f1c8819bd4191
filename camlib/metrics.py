"""Does the map tell the truth? Faithfulness and localisation metrics for saliency maps.

What is here, each with the paper it comes from:

- `average_drop_increase`, `win_rate`: keep only what the map shows and see whether the
  model still believes (Chattopadhyay et al. 2018, Grad-CAM++, section 5.1).
- `deletion_insertion`: delete (or insert) pixels in the map's order and measure the area
  under the probability curve (Petsiuk et al. 2018, RISE, section 4.1); `blur` makes the
  insertion baseline.
- `pointing_game` (Zhang et al. 2016), `energy_pointing_game` (Wang et al. 2020, Score-CAM),
  `box_from_map` (Zhou et al. 2016, CAM), `iou`, `localization`: does the map point at the
  annotated object?
- `sanity_check`, `weight_blocks`: does the map change when the model's weights are
  re-initialised from the top down? (Adebayo et al. 2018, cascading randomisation.)
- `evaluate`, `results_table`: all of the above for several methods, as rows or as a
  text table; `reference_maps` gives the "random" and "centre" maps to compare against.

Conventions. images: (N, S, S, 3) RGB pixels 0..255, what `helpers.load_model` models
take (their preprocessing is inside the model, so every perturbation here is done in pixel
space). maps: (N, S, S), one per image, at the image's size, in [0, 1] (what
`helpers.explain` returns). classes: None (each image's top-1 class), one int, or N ints.
The model returns logits (a model whose last layer is a softmax is read as probabilities).
boxes: per image a list of (x0, y0, x1, y1) in map pixels, x1 and y1 exclusive like numpy
slicing, so a box covers map[y0:y1, x0:x1].

This module sits above the engine (it calls `explain`); `helpers` re-exports it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import keras
import numpy as np
import tensorflow as tf
from scipy import ndimage, stats

from camlib.engine import explain
from camlib.layers import target_layer

__all__ = [
    "BLUR_SIGMA",
    "DELETION_BASELINE",
    "Curves",
    "SanityCheck",
    "average_drop_increase",
    "blur",
    "box_from_map",
    "deletion_insertion",
    "energy_pointing_game",
    "evaluate",
    "format_table",
    "iou",
    "localization",
    "pointing_game",
    "reference_maps",
    "results_table",
    "sanity_check",
    "weight_blocks",
    "win_rate",
]

DELETION_BASELINE = 127.0  # grey: the pixel mean EfficientNet-Lite subtracts, i.e. "no signal"
BLUR_SIGMA = 5.0  # pixels; the insertion baseline's Gaussian blur
TIE = 1e-5  # relative falls in confidence closer than this are a tie in the Win % (float noise, e.g. CAM vs Grad-CAM)


# ---------------------------------------------------------------------------
# Checking the inputs


def _check_images(images) -> np.ndarray:
    """images (N, S, S, C) or one image (S, S, C), pixels 0..255 -> float32 (N, S, S, C)."""
    x = np.asarray(images)
    if x.dtype == object or not np.issubdtype(x.dtype, np.number):
        raise TypeError(f"images must be a numeric array, not {x.dtype}")
    if x.ndim == 3:
        x = x[None]
    if x.ndim != 4:
        raise ValueError(f"images must be a batch (N, S, S, 3) or one image (S, S, 3), not shape {x.shape}")
    if len(x) == 0:
        raise ValueError("the batch of images is empty: give at least one image")
    x = x.astype(np.float32)
    if not np.isfinite(x).all():
        raise ValueError("the images contain NaN or infinite values")
    if x.min() < 0 or x.max() > 255:
        raise ValueError(
            f"pixels must lie in 0..255, found {x.min():g}..{x.max():g}: pass the raw photos "
            "(helpers.load_image / helpers.example), the model preprocesses them itself"
        )
    return x


def _check_maps(maps, size=None, n=None, unit=False) -> np.ndarray:
    """maps (N, S, S) or one map (S, S) -> float64 (N, S, S), checked against the images."""
    m = np.asarray(maps)
    if m.dtype == object or not np.issubdtype(m.dtype, np.number):
        raise TypeError(f"maps must be a numeric array, not {m.dtype}")
    if m.ndim == 2:
        m = m[None]
    if m.ndim == 4 and m.shape[-1] in (1, 3) and size is not None and m.shape[1:3] == tuple(size):
        raise ValueError(
            f"maps of shape {m.shape} look like guided gradients (N, S, S, 3); reduce them to one "
            "value per pixel first, e.g. np.abs(g).max(-1) scaled to [0, 1]"
        )
    if m.ndim != 3:
        raise ValueError(
            f"maps must be (N, S, S), one map per image, not shape {m.shape}; for (N, K, S, S) "
            "maps of K classes pass maps[:, k]"
        )
    if len(m) == 0:
        raise ValueError("the batch of maps is empty: give one map per image")
    if n is not None and len(m) != n:
        raise ValueError(f"{len(m)} maps for {n} images: give exactly one map per image")
    if size is not None and m.shape[1:] != tuple(size):
        raise ValueError(
            f"the maps are {m.shape[1]}x{m.shape[2]} but the images are {size[0]}x{size[1]}: "
            "upsample the maps to the image size (helpers.explain already returns maps at the image size)"
        )
    m = m.astype(np.float64)
    if not np.isfinite(m).all():
        raise ValueError("the maps contain NaN or infinite values: recompute them, or np.nan_to_num(maps) if intended")
    if unit and (m.min() < 0 or m.max() > 1):
        raise ValueError(
            f"the maps must lie in [0, 1] (they multiply the image), found {m.min():g}..{m.max():g}: "
            "scale each map, e.g. m / m.max()"
        )
    return m


def _n_classes(model) -> int | None:
    outputs = getattr(model, "outputs", None)
    return int(outputs[0].shape[-1]) if outputs and outputs[0].shape[-1] is not None else None


def _check_classes(model, classes, n: int) -> np.ndarray | None:
    """None, one int or N ints -> (N,) int64, or None for "each image's top-1"."""
    if classes is None:
        return None
    c = np.asarray(classes)
    if not np.issubdtype(c.dtype, np.integer):
        raise TypeError(f"classes must be integers (see helpers.class_index), not {c.dtype}")
    if c.ndim == 0:
        c = np.full(n, int(c))
    if c.ndim != 1 or len(c) != n:
        raise ValueError(f"classes of shape {c.shape} do not fit {n} images: give one int, or one per image (N,)")
    k = _n_classes(model)
    if c.min() < 0 or (k is not None and c.max() >= k):
        raise ValueError(f"class indices must lie in 0..{(k or 0) - 1}, got {c.min()}..{c.max()}")
    return c.astype(np.int64)


def _check_boxes(boxes, n: int, size) -> list[np.ndarray]:
    """Per image a list of (x0, y0, x1, y1) (or one box) -> N int arrays (k_i, 4), checked."""
    if isinstance(boxes, np.ndarray) and boxes.ndim == 2 and boxes.shape[1] == 4:
        boxes = [[b] for b in boxes]  # (N, 4): one box per image
    boxes = list(boxes)
    if len(boxes) != n:
        raise ValueError(f"{len(boxes)} box lists for {n} maps: give boxes[i], a list of (x0, y0, x1, y1), per image")
    h, w = size
    out = []
    for i, image_boxes in enumerate(boxes):
        b = np.asarray(image_boxes, dtype=np.float64)
        if b.ndim == 1 and b.size == 4:
            b = b[None]
        if b.size == 0:
            raise ValueError(f"image {i} has no box: drop it from the batch (the metric needs an object)")
        if b.ndim != 2 or b.shape[1] != 4 or not np.isfinite(b).all():
            raise ValueError(f"boxes[{i}] must be a list of (x0, y0, x1, y1) numbers, got {image_boxes!r}")
        b = np.round(b).astype(np.int64)
        for x0, y0, x1, y1 in b:
            if not (0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h):
                raise ValueError(
                    f"box {(int(x0), int(y0), int(x1), int(y1))} of image {i} is empty or outside the {h}x{w} map: "
                    f"boxes are (x0, y0, x1, y1) in map pixels with 0 <= x0 < x1 <= {w} and 0 <= y0 < y1 <= {h} "
                    "(x1, y1 exclusive); clip them, or rescale them to the map's size"
                )
        out.append(b)
    return out


# ---------------------------------------------------------------------------
# The model's class probabilities, in batches


def _forward(model, shape: tuple):
    """model(x, training=False) compiled once per input shape and cached on the model."""
    cache = model.__dict__.setdefault("_metrics_forward", {})
    if shape not in cache:
        spec = tf.TensorSpec((None, *shape), tf.float32)
        cache[shape] = tf.function(lambda x: model(x, training=False), input_signature=[spec], reduce_retracing=True)
    return cache[shape]


def _ends_in_softmax(model) -> bool:
    layers = getattr(model, "layers", None)
    if not layers:
        return False
    last = layers[-1]
    return isinstance(last, keras.layers.Softmax) or getattr(last, "activation", None) is keras.activations.softmax


def _probabilities(model, x: np.ndarray, batch_size: int) -> np.ndarray:
    """(M, S, S, 3) pixels -> (M, classes) float64 probabilities, `batch_size` images per call."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, not {batch_size}")
    run = _forward(model, x.shape[1:])
    out = [np.asarray(run(tf.constant(x[i : i + batch_size])), np.float64) for i in range(0, len(x), batch_size)]
    z = np.concatenate(out)  # (M, classes)
    if _ends_in_softmax(model):
        return z
    z = np.exp(z - z.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)


def _class_probabilities(model, x, classes, batch_size) -> tuple[np.ndarray, np.ndarray]:
    """(probability of each image's class (N,), the classes (N,)), top-1 where classes is None."""
    p = _probabilities(model, x, batch_size)  # (N, classes)
    if classes is None:
        classes = p.argmax(axis=-1)
    return p[np.arange(len(p)), classes], classes


# ---------------------------------------------------------------------------
# Average Drop, Increase in Confidence, Win (Chattopadhyay et al. 2018, section 5.1)


def average_drop_increase(model, images, maps, classes=None, batch_size: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """Per image, the drop and the increase in the class probability when the model sees
    only what the map shows (Chattopadhyay et al. 2018, Grad-CAM++, section 5.1).

        Y_i = p(c | image_i),  O_i = p(c | image_i * map_i)   (pixel-wise, in pixel space)
        drop_i     = 100 * max(0, Y_i - O_i) / Y_i
        increase_i = 100 * [O_i > Y_i]

    The paper's "Average Drop %" is drop.mean() and "% Increase in Confidence" is
    increase.mean(). images (N, S, S, 3) pixels 0..255, maps (N, S, S) in [0, 1],
    classes None (top-1) or (N,). Returns drop (N,) and increase (N,), in percent.
    """
    drop, increase, _ = _drop(model, images, maps, classes, batch_size)
    return drop, increase


def _drop(model, images, maps, classes, batch_size):
    """drop (N,), increase (N,) and the signed relative fall (Y - O) / Y (N,)."""
    x = _check_images(images)
    m = _check_maps(maps, x.shape[1:3], len(x), unit=True)
    classes = _check_classes(model, classes, len(x))
    y, classes = _class_probabilities(model, x, classes, batch_size)  # Y (N,)
    masked = (x * m[..., None]).astype(np.float32)  # (N, S, S, 3) image * map
    o = _probabilities(model, masked, batch_size)[np.arange(len(x)), classes]  # O (N,)
    fall = (y - o) / np.maximum(y, 1e-300)  # (N,)
    return 100 * np.maximum(fall, 0), 100 * (o > y).astype(np.float64), fall


def win_rate(model, images, maps_a, maps_b, classes=None, batch_size: int = 16) -> float:
    """The share of images (in percent) where method A's map loses less confidence than
    method B's (Chattopadhyay et al. 2018, section 5.1, "Win %" of Table 1).

    The fall compared is the relative change (Y - O) / Y without the clip at 0, so when
    both maps raise the confidence the one that raises it more wins; a tie (falls within
    TIE = 1e-5, float noise) counts half, so win_rate(a, b) + win_rate(b, a) = 100.
    maps_a, maps_b: (N, S, S) in [0, 1]. Returns a percentage.
    """
    x = _check_images(images)
    classes = _check_classes(model, classes, len(x))
    if classes is None:
        _, classes = _class_probabilities(model, x, None, batch_size)  # both maps explain the same class
    _, _, fall_a = _drop(model, x, maps_a, classes, batch_size)
    _, _, fall_b = _drop(model, x, maps_b, classes, batch_size)
    tie = np.abs(fall_a - fall_b) <= TIE  # (N,)
    return float(100 * np.mean((fall_a < fall_b) & ~tie) + 50 * np.mean(tie))


# ---------------------------------------------------------------------------
# Deletion and insertion (Petsiuk et al. 2018, RISE, section 4.1)


class Curves(NamedTuple):
    """The probability curves behind the deletion and insertion AUCs."""

    fraction: np.ndarray  # (T,) the share of pixels deleted / inserted at each step, 0 .. 1
    deletion: np.ndarray  # (N, T) class probability as the most salient pixels are deleted
    insertion: np.ndarray  # (N, T) class probability as they are inserted into the blurred image


def blur(images, sigma: float = BLUR_SIGMA) -> np.ndarray:
    """Each image blurred with a Gaussian of `sigma` pixels, in pixel space: (N, S, S, 3)
    float32 -> (N, S, S, 3). The default insertion baseline; sigma 5 keeps the colours but
    not the shapes (RISE blurs with an 11 x 11 kernel, about sigma 3)."""
    x = np.asarray(images, np.float32)
    return ndimage.gaussian_filter(x, sigma=(0, sigma, sigma, 0) if x.ndim == 4 else (sigma, sigma, 0))


def _baseline(spec, x: np.ndarray, which: str) -> np.ndarray:
    """A baseline (N, S, S, 3) from a number (a constant colour), "blur", an array or a function."""
    if isinstance(spec, str):
        if spec != "blur":
            raise ValueError(f"the {which} baseline must be a number, 'blur', an array or a function, not {spec!r}")
        return blur(x)
    if callable(spec):
        b = np.asarray(spec(x), np.float32)
    else:
        b = np.asarray(spec, np.float32)
    try:
        b = np.broadcast_to(b, x.shape)
    except ValueError:
        raise ValueError(f"the {which} baseline of shape {b.shape} does not fit the images {x.shape}") from None
    if not np.isfinite(b).all():
        raise ValueError(f"the {which} baseline contains NaN or infinite values")
    return b


def _pixel_ranks(maps: np.ndarray) -> np.ndarray:
    """(N, S, S) maps -> (N, S, S) each pixel's place in the deletion order, 0 = the most
    salient. Descending by value; ties in row-major order (a stable sort), so deterministic."""
    n = len(maps)
    order = np.argsort(-maps.reshape(n, -1), axis=1, kind="stable")  # (N, P) pixel indices, best first
    ranks = np.empty_like(order)
    np.put_along_axis(ranks, order, np.broadcast_to(np.arange(order.shape[1]), order.shape), axis=1)
    return ranks.reshape(maps.shape)


def _curve(model, ranks, counts, first, rest, classes, batch_size, bar) -> np.ndarray:
    """Probability of each image's class when its `counts[k]` top-ranked pixels come from
    `first` and the others from `rest`: (N, T). The model sees `batch_size` perturbed
    images per call, all steps of all images in one stream."""
    n, t = len(ranks), len(counts)
    image, step = np.repeat(np.arange(n), t), np.tile(np.arange(t), n)  # (N*T,) each job
    out = np.empty(n * t)
    for start in range(0, n * t, batch_size):
        i, k = image[start : start + batch_size], step[start : start + batch_size]  # (B,)
        moved = ranks[i] < counts[k][:, None, None]  # (B, S, S) pixels already deleted / inserted
        x = np.where(moved[..., None], first[i], rest[i]).astype(np.float32)  # (B, S, S, 3)
        out[start : start + len(i)] = _probabilities(model, x, batch_size)[np.arange(len(i)), classes[i]]
        bar.update(len(i))
    return out.reshape(n, t)


def deletion_insertion(
    model,
    images,
    maps,
    classes=None,
    steps: int = 50,
    batch_size: int = 16,
    deletion_baseline: float | str | np.ndarray | Callable = DELETION_BASELINE,
    insertion_baseline: float | str | np.ndarray | Callable = "blur",
    return_curves: bool = False,
    progress: bool = False,
):
    """Deletion and insertion AUC per image (Petsiuk et al. 2018, RISE, section 4.1).

    Rank the pixels by the map, most salient first (ties in row-major order). Deletion:
    replace the first n_k pixels of the image with `deletion_baseline`; insertion: copy
    them from the image into `insertion_baseline`; n_k = round(k P / steps) of the P
    pixels, k = 0..steps. The class probability p_k along the way gives a curve over the
    fraction of pixels f_k = n_k / P in [0, 1], and

        AUC = sum_k (f_{k+1} - f_k) (p_k + p_{k+1}) / 2        (trapezoid rule)

    A faithful map gives a LOW deletion AUC (the probability falls at once) and a HIGH
    insertion AUC (it rises at once).

    images (N, S, S, 3) pixels 0..255; maps (N, S, S), any real values (only their order
    counts); classes None (top-1 on the intact image) or (N,). Baselines: a number (a
    constant colour; deletion default 127, grey, which EfficientNet-Lite normalises to 0),
    "blur" (insertion default: `blur(images)`, Gaussian sigma BLUR_SIGMA = 5 pixels), an
    array broadcastable to the images, or a function images -> baseline. The model sees
    2 N (steps + 1) perturbed images, `batch_size` per call.

    Returns deletion_auc (N,), insertion_auc (N,) and, with return_curves=True, also
    `Curves(fraction (T,), deletion (N, T), insertion (N, T))`, T = steps + 1.
    """
    x = _check_images(images)
    m = _check_maps(maps, x.shape[1:3], len(x))
    classes = _check_classes(model, classes, len(x))
    if int(steps) != steps or steps < 1:
        raise ValueError(f"steps must be a positive int, not {steps}")
    if classes is None:
        _, classes = _class_probabilities(model, x, None, batch_size)
    deleted = _baseline(deletion_baseline, x, "deletion")  # (N, S, S, 3)
    blurred = _baseline(insertion_baseline, x, "insertion")  # (N, S, S, 3)
    ranks = _pixel_ranks(m)  # (N, S, S)
    pixels = m.shape[1] * m.shape[2]
    counts = np.round(np.linspace(0, pixels, int(steps) + 1)).astype(np.int64)  # (T,) pixels moved at step k
    from tqdm import tqdm  # plain text: no widget needed in Jupyter

    total = 2 * len(x) * len(counts)
    with tqdm(total=total, disable=not progress, desc="deletion/insertion", unit="img", mininterval=5) as bar:
        deletion = _curve(model, ranks, counts, deleted, x, classes, batch_size, bar)  # (N, T)
        insertion = _curve(model, ranks, counts, x, blurred, classes, batch_size, bar)  # (N, T)
    fraction = counts / pixels  # (T,)
    aucs = np.trapezoid(deletion, fraction, axis=1), np.trapezoid(insertion, fraction, axis=1)
    return (*aucs, Curves(fraction, deletion, insertion)) if return_curves else aucs


# ---------------------------------------------------------------------------
# Does the map point at the object? (pointing games, bounding boxes)


def pointing_game(maps, boxes, tolerance: float = 15) -> np.ndarray:
    """Per image, whether the map's maximum falls on the object (Zhang et al. 2016,
    "Top-down neural attention by excitation backprop", section 4.1).

    A hit when the maximum (the first in row-major order if several) lies within
    `tolerance` pixels (Euclidean, to the nearest pixel of the box) of any of the image's
    boxes; the paper uses 15. A constant map (e.g. all zero) points nowhere: a miss.
    maps (N, S, S); boxes[i] a list of (x0, y0, x1, y1), x1/y1 exclusive. Returns (N,) bool.
    """
    m = _check_maps(maps)
    boxes = _check_boxes(boxes, len(m), m.shape[1:])
    hits = np.zeros(len(m), bool)
    for i, (single, b) in enumerate(zip(m, boxes)):
        if single.max() == single.min():
            continue
        row, col = np.unravel_index(np.argmax(single), single.shape)
        dx = np.maximum.reduce([b[:, 0] - col, np.zeros(len(b), np.int64), col - (b[:, 2] - 1)])  # (k,)
        dy = np.maximum.reduce([b[:, 1] - row, np.zeros(len(b), np.int64), row - (b[:, 3] - 1)])  # (k,)
        hits[i] = bool(np.any(np.hypot(dx, dy) <= tolerance))
    return hits


def _box_mask(boxes: np.ndarray, size) -> np.ndarray:
    """(k, 4) boxes -> (S, S) bool, the union of the boxes."""
    mask = np.zeros(size, bool)
    for x0, y0, x1, y1 in boxes:
        mask[y0:y1, x0:x1] = True
    return mask


def energy_pointing_game(maps, boxes) -> np.ndarray:
    """Per image, the share of the map's mass inside the union of its boxes (Wang et al.
    2020, Score-CAM, section 5.2, "energy-based pointing game"):

        proportion = sum_{(i,j) in boxes} L_ij / sum_{(i,j)} L_ij

    maps (N, S, S), non-negative; boxes[i] a list of (x0, y0, x1, y1). An all-zero map
    scores 0. Returns (N,) in [0, 1].
    """
    m = _check_maps(maps)
    if m.min() < 0:
        raise ValueError(f"the energy game needs non-negative maps, found {m.min():g}: use np.maximum(maps, 0)")
    boxes = _check_boxes(boxes, len(m), m.shape[1:])
    inside = np.array([single[_box_mask(b, single.shape)].sum() for single, b in zip(m, boxes)])  # (N,)
    total = m.sum(axis=(1, 2))  # (N,)
    return np.divide(inside, total, out=np.zeros_like(inside), where=total > 0)


def box_from_map(map, threshold: float = 0.15) -> tuple[int, int, int, int]:
    """The bounding box (x0, y0, x1, y1), x1/y1 exclusive, around the largest connected
    region of the map at or above threshold * its maximum (Zhou et al. 2016, CAM, section
    4.1: 20% of the maximum; Selvaraju et al. 2017, Grad-CAM, section 4.1: 15%).

    Regions are 8-connected (scipy.ndimage.label); the largest by pixel count, the first
    found on a tie. map (S, S). A map with no positive value has no region: (0, 0, 0, 0).
    """
    m = np.asarray(map, np.float64)
    if m.ndim != 2:
        raise ValueError(f"box_from_map takes one map (S, S), not shape {m.shape}; loop over a batch")
    if not np.isfinite(m).all():
        raise ValueError("the map contains NaN or infinite values")
    if not 0 <= threshold <= 1:
        raise ValueError(f"threshold is a fraction of the map's maximum in [0, 1], not {threshold}")
    peak = m.max()
    if peak <= 0:
        return (0, 0, 0, 0)
    labels, _ = ndimage.label(m >= threshold * peak, structure=np.ones((3, 3)))  # (S, S) region ids
    largest = 1 + int(np.argmax(np.bincount(labels.ravel())[1:]))
    rows, cols = np.nonzero(labels == largest)
    return (int(cols.min()), int(rows.min()), int(cols.max()) + 1, int(rows.max()) + 1)


def iou(box_a, box_b) -> float:
    """Intersection over union of two boxes (x0, y0, x1, y1), x1/y1 exclusive; 0 when both are empty."""
    ax0, ay0, ax1, ay1 = (float(v) for v in box_a)
    bx0, by0, bx1, by1 = (float(v) for v in box_b)
    inter = max(0.0, min(ax1, bx1) - max(ax0, bx0)) * max(0.0, min(ay1, by1) - max(ay0, by0))
    union = max(0.0, ax1 - ax0) * max(0.0, ay1 - ay0) + max(0.0, bx1 - bx0) * max(0.0, by1 - by0) - inter
    return inter / union if union > 0 else 0.0


def localization(maps, boxes, threshold: float = 0.15) -> np.ndarray:
    """Per image, the best IoU between `box_from_map(map, threshold)` and the image's boxes
    (the weakly supervised localisation of Zhou et al. 2016, section 4.1; an image counts as
    localised when IoU >= 0.5, so the localisation accuracy is np.mean(ious >= 0.5)).
    maps (N, S, S); boxes[i] a list of (x0, y0, x1, y1). Returns (N,) in [0, 1]."""
    m = _check_maps(maps)
    boxes = _check_boxes(boxes, len(m), m.shape[1:])
    found = [box_from_map(single, threshold) for single in m]
    return np.array([max(iou(f, b) for b in image_boxes) for f, image_boxes in zip(found, boxes)])


# ---------------------------------------------------------------------------
# Sanity check: cascading randomisation (Adebayo et al. 2018, section 3)


def _leaf_layers(model) -> list:
    """Every layer of `model`, nested models entered, in order."""
    out = []
    for layer in getattr(model, "layers", []):
        out.extend(_leaf_layers(layer) if isinstance(layer, keras.Model) else [layer])
    return out


def _block_name(layer_name: str) -> str:
    """"block6d_expand_conv" -> "block6d", "top_bn" -> "top", "block_13_expand" -> "block_13":
    the name up to its first part containing a digit, else its first part."""
    parts = layer_name.split("_")
    for i, part in enumerate(parts):
        if any(ch.isdigit() for ch in part):
            return "_".join(parts[: i + 1])
    return parts[0]


def weight_blocks(model) -> list[tuple[str, list]]:
    """The model's layers with weights, grouped into blocks by name prefix, ordered from the
    output down: for EfficientNet-Lite0 predictions, top, block7a, block6d, ..., block1a,
    stem (19 blocks). Returns [(block name, [layers])]."""
    blocks: dict[str, list] = {}
    for layer in reversed(_leaf_layers(model)):
        if layer.weights:
            blocks.setdefault(_block_name(layer.name), []).append(layer)
    return list(blocks.items())


_RUNNING_STATISTICS = ("moving_mean", "moving_variance")


def _reinitialise(layer, rng: np.random.Generator) -> None:
    """Each weight tensor of `layer` <- normal noise with that tensor's own mean and std.
    Batch-normalisation running statistics are left as they are."""
    for v in layer.weights:
        if v.path.split("/")[-1] in _RUNNING_STATISTICS or not np.issubdtype(np.dtype(v.dtype), np.floating):
            continue
        w = np.asarray(v.numpy(), np.float64)
        v.assign(rng.normal(w.mean(), w.std(), w.shape).astype(v.dtype))


def _saliency(maps: np.ndarray) -> np.ndarray:
    """(N, S, S) maps, or (N, S, S, 3) guided gradients -> |g| max over channels scaled to [0, 1]."""
    m = np.asarray(maps, np.float64)
    if m.ndim == 4:
        m = np.abs(m).max(axis=-1)
        peak = m.max(axis=(1, 2), keepdims=True)
        m = np.divide(m, peak, out=np.zeros_like(m), where=peak > 0)
    return m


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation of two maps; 0 when either is constant (no ranking)."""
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return 0.0
    return float(stats.spearmanr(a.ravel(), b.ravel()).statistic)


class SanityCheck(NamedTuple):
    """What `sanity_check` returns. B steps (blocks), N images."""

    blocks: list[str]  # (B,) the block re-initialised at each step (cumulatively), from the output down
    spearman: dict[str, np.ndarray]  # method -> (B, N) rank correlation with the trained model's map
    ssim: dict[str, np.ndarray] | None  # method -> (B, N) structural similarity, if asked for

    def table(self, digits: int = 2) -> str:
        """The mean over images per step and method, as text (SSIM in brackets if computed)."""
        methods = list(self.spearman)
        width = max(len("randomised down to"), *(len(b) for b in self.blocks))
        cols = [max(len(m), 6 + (digits + 5 if self.ssim else 0)) for m in methods]
        lines = ["randomised down to".ljust(width) + "".join(f"  {m:>{c}}" for m, c in zip(methods, cols))]
        for j, block in enumerate(self.blocks):
            cells = []
            for m, c in zip(methods, cols):
                cell = f"{self.spearman[m][j].mean():.{digits}f}"
                if self.ssim:
                    cell += f" ({self.ssim[m][j].mean():.{digits}f})"
                cells.append(f"  {cell:>{c}}")
            lines.append(block.ljust(width) + "".join(cells))
        return "\n".join(lines)


def sanity_check(
    model,
    images,
    classes=None,
    methods: Sequence[str] = ("grad_cam",),
    blocks: int | Sequence[str] | None = None,
    seed: int = 0,
    layer: str | None = None,
    ssim: bool = False,
    progress: bool = False,
) -> SanityCheck:
    """Cascading randomisation (Adebayo et al. 2018, "Sanity checks for saliency maps",
    section 3.1): re-initialise the model's weights block by block from the output down,
    cumulatively, and measure how much each method's map still resembles the map of the
    trained model. A map that explains the model must change; one that stays the same is
    an edge detector, not an explanation.

    images (N, S, S, 3); classes None (the trained model's top-1, kept for every step) or
    (N,); methods: names for `helpers.explain`; blocks: None (all of `weight_blocks(model)`),
    an int (the first that many, from the output), or block names in the order to
    randomise; layer: the layer explained, fixed at every step (None: `helpers.target_layer`).

    Re-initialisation: every weight tensor of the block (kernels, biases, batch-norm
    gamma and beta) becomes normal noise with that tensor's own mean and std, drawn from a
    generator seeded with `seed`; batch-norm running statistics are left alone. The weights
    are changed in place (so `helpers.explain`'s compiled pass, which reads the variables,
    is reused without retracing) and restored in a `finally`, even on an error or an
    interrupt: the model is unchanged afterwards. Guided gradients (N, S, S, 3) are reduced
    to max |g| over the channels. Similarity: the Spearman rank correlation of each map with
    the trained model's (0 when a map is constant), and SSIM (skimage) with ssim=True.
    """
    x = _check_images(images)
    classes = _check_classes(model, classes, len(x))
    if not methods or isinstance(methods, str):
        raise ValueError(f"methods must be a list of method names, e.g. ['grad_cam'], not {methods!r}")
    if classes is None:
        _, classes = _class_probabilities(model, x, None, 16)
    classes = classes.astype(np.int32)
    layer = layer or target_layer(model)
    groups = _select_blocks(model, blocks)

    def maps(method):
        return _saliency(explain(model, x, method, classes, layer))  # (N, S, S)

    trained = {method: maps(method) for method in methods}
    spearman = {method: np.zeros((len(groups), len(x))) for method in methods}
    similarity = {method: np.zeros((len(groups), len(x))) for method in methods} if ssim else None
    if ssim:
        from skimage.metrics import structural_similarity
    from tqdm import tqdm  # plain text: no widget needed in Jupyter

    rng = np.random.default_rng(seed)
    saved = [v.numpy() for v in model.weights]
    try:
        for j, (_, layers) in enumerate(tqdm(groups, disable=not progress, desc="randomising", mininterval=5)):
            for block_layer in layers:
                _reinitialise(block_layer, rng)
            for method in methods:
                random_maps = maps(method)
                for i, (a, b) in enumerate(zip(trained[method], random_maps)):
                    spearman[method][j, i] = _spearman(a, b)
                    if ssim:
                        similarity[method][j, i] = structural_similarity(a, b, data_range=1.0)
    finally:
        for v, value in zip(model.weights, saved):
            v.assign(value)
    return SanityCheck([name for name, _ in groups], spearman, similarity)


def _select_blocks(model, blocks) -> list[tuple[str, list]]:
    groups = weight_blocks(model)
    if not groups:
        raise ValueError(f"model {model.name!r} has no layers with weights to randomise")
    if blocks is None:
        return groups
    if isinstance(blocks, (int, np.integer)):
        if not 1 <= blocks <= len(groups):
            raise ValueError(f"blocks must lie in 1..{len(groups)} (the model has {len(groups)} blocks), not {blocks}")
        return groups[: int(blocks)]
    by_name = dict(groups)
    unknown = [b for b in blocks if b not in by_name]
    if unknown or not blocks:
        raise ValueError(
            f"unknown blocks {unknown}; metrics.weight_blocks(model) names them: {[name for name, _ in groups]}"
        )
    return [(b, by_name[b]) for b in blocks]


# ---------------------------------------------------------------------------
# Everything at once: rows and a text table


def reference_maps(kind: str, n: int, size: int, seed: int = 0) -> np.ndarray:
    """Maps that know nothing about the image, to compare the methods with: (n, size, size).

    "random": uniform noise per pixel (seeded); "centre": a Gaussian of std size / 4 at the
    centre (the "Center" baseline of Zhang et al. 2016's pointing game, which always points
    at the middle of the image)."""
    if kind == "random":
        return np.random.default_rng(seed).uniform(size=(n, size, size)).astype(np.float32)
    if kind in ("centre", "center"):
        r = np.arange(size) - (size - 1) / 2
        g = np.exp(-(r[:, None] ** 2 + r[None, :] ** 2) / (2 * (size / 4) ** 2))  # (S, S)
        return np.repeat(g[None], n, axis=0).astype(np.float32)
    raise ValueError(f"no reference map {kind!r}; choose 'random' or 'centre'")


COLUMNS = [  # key, header, format, lower is better
    ("average_drop", "Avg Drop %", "{:.1f}", True),
    ("increase", "Increase %", "{:.1f}", False),
    ("win", "Win %", "{:.1f}", False),
    ("deletion", "Deletion", "{:.3f}", True),
    ("insertion", "Insertion", "{:.3f}", False),
    ("pointing", "Pointing", "{:.2f}", False),
    ("energy", "Energy", "{:.2f}", False),
    ("iou", "IoU", "{:.2f}", False),
]


def evaluate(
    model,
    images,
    methods: Sequence[str] = ("cam", "grad_cam", "grad_cam++"),
    classes=None,
    boxes=None,
    layer: str | None = None,
    steps: int = 50,
    batch_size: int = 16,
    threshold: float = 0.15,
    tolerance: float = 15,
    seed: int = 0,
    progress: bool = False,
    options: dict[str, dict] | None = None,
) -> list[dict]:
    """Every metric for every method on the same images and classes: one dict per method.

    methods: names for `helpers.explain`, and "random" / "centre" for `reference_maps`.
    options: keywords for `explain` per method, e.g. {"score_cam": {"channels": 256}}.
    classes: None (each image's top-1, the same for all methods) or (N,). boxes: None, or
    per image a list of (x0, y0, x1, y1) for the pointing games and the IoU.

    Each row: method, and the means over images of average_drop and increase (percent),
    win (percent of images where this method's map has the smallest relative fall in
    confidence among the methods compared, ties (within TIE) shared; for two methods the
    paper's Win %),
    deletion and insertion (AUC), pointing (hit rate), energy and iou (None without boxes).
    """
    x = _check_images(images)
    classes = _check_classes(model, classes, len(x))
    if classes is None:
        _, classes = _class_probabilities(model, x, None, batch_size)
    options = options or {}
    unknown = set(options) - set(methods)
    if unknown:
        raise ValueError(f"options for {sorted(unknown)}, which are not among the methods {list(methods)}")
    rows, falls = [], []
    for method in methods:
        if method in ("random", "centre", "center"):
            maps = reference_maps(method, len(x), x.shape[1], seed)
        else:
            maps = explain(model, x, method, classes.astype(np.int32), layer, **options.get(method, {}))
        drop, increase, fall = _drop(model, x, maps, classes, batch_size)
        deletion, insertion = deletion_insertion(model, x, maps, classes, steps, batch_size, progress=progress)
        row = {"method": method, "average_drop": drop.mean(), "increase": increase.mean(),
               "deletion": deletion.mean(), "insertion": insertion.mean(),
               "pointing": None, "energy": None, "iou": None}  # fmt: skip
        if boxes is not None:
            row["pointing"] = pointing_game(maps, boxes, tolerance).mean()
            row["energy"] = energy_pointing_game(maps, boxes).mean()
            row["iou"] = localization(maps, boxes, threshold).mean()
        rows.append(row)
        falls.append(fall)
    falls = np.array(falls)  # (M, N)
    best = falls <= falls.min(axis=0, keepdims=True) + TIE  # (M, N) the smallest fall of each image, ties shared
    wins = 100 * (best / best.sum(axis=0, keepdims=True)).mean(axis=1)  # (M,)
    for row, win in zip(rows, wins):
        row["win"] = float(win)
    return rows


def format_table(rows: list[dict]) -> str:
    """Rows from `evaluate` as a text table; columns without values (no boxes) are left out."""
    columns = [c for c in COLUMNS if any(row.get(c[0]) is not None for row in rows)]
    width = max(len("method"), *(len(row["method"]) for row in rows))
    header = "method".ljust(width) + "".join(f"  {name + (' ↓' if low else ' ↑'):>12}" for _, name, _, low in columns)
    lines = [header]
    for row in rows:
        cells = ["-" if row.get(key) is None else fmt.format(row[key]) for key, _, fmt, _ in columns]
        lines.append(row["method"].ljust(width) + "".join(f"  {cell:>12}" for cell in cells))
    return "\n".join(lines)


def results_table(model, images, methods: Sequence[str] = ("cam", "grad_cam", "grad_cam++"), classes=None, boxes=None,
                  **kwargs) -> str:
    """`evaluate(model, images, methods, classes, boxes, **kwargs)` as a text table
    (↓: lower is better, ↑: higher is better)."""
    return format_table(evaluate(model, images, methods, classes, boxes, **kwargs))
