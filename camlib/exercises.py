"""The notebook's "Your turn" exercises: checkers, multiple-choice questions and solutions.

Each `check_*` computes the right answer and the typical wrong ones from its own inputs,
compares the student's answer with each, and prints one line:

    ✔ Right! <what it shows>
    ✘ Not yet: <the mistake, and what to do>
    … Not answered yet: replace the ... with your code.

(Signs that ordinary monospace fonts have: no emoji font needed.) It returns None and never
raises, whatever it is given (a string, a wrong shape, NaN, a function that raises), and
never prints the expected values. Maps defined only up to a
positive factor (Grad-CAM++, counterfactual) are compared after scaling.

- `check_softmax`, `check_peak`, `check_cam_map`, `check_grad_cam`, `check_grad_cam_pp_head`,
  `check_counterfactual`, `check_guided_grad_cam`, `check_deletion_step`: code exercises.
- `check_choice`, `QUESTIONS`: multiple choice, one letter per question.
- `SOLUTIONS`: each exercise's solution as the source a student would write in the notebook.
"""

from __future__ import annotations

import functools
import math
import warnings

import numpy as np
import tensorflow as tf

from camlib.photos import CLASS_NAMES

__all__ = [
    "QUESTIONS",
    "SOLUTIONS",
    "check_cam_map",
    "check_choice",
    "check_counterfactual",
    "check_deletion_step",
    "check_grad_cam",
    "check_grad_cam_pp_head",
    "check_guided_grad_cam",
    "check_peak",
    "check_softmax",
]

UNANSWERED = "… Not answered yet: replace the ... with your code."
SCALED = " (Scaled: fine, maps are compared after scaling.)"

# ---------------------------------------------------------------------------
# Replies and comparisons


class _Reply(Exception):
    """A checker's final message, raised to end the check early."""


def _hint(text: str):
    """Ends the check with '✘ Not yet: text'."""
    raise _Reply("✘ Not yet: " + text)


def _right(text: str, scaled: bool = False) -> str:
    return "✔ Right! " + text + (SCALED if scaled else "")


def _checker(check):
    """Turns check(...) -> message into a function that prints the message, returns None and
    never raises (an unexpected error becomes a 'Not yet' line quoting it)."""

    @functools.wraps(check)
    def printed(*args, **kwargs):
        try:
            with np.errstate(all="ignore"), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                message = check(*args, **kwargs)
        except _Reply as reply:
            message = str(reply)
        except Exception as e:
            message = f"✘ Not yet: this answer could not be checked ({_one_line(e)})"
        print(message)

    return printed


def _one_line(e: Exception) -> str:
    """'ValueError: first line of the message', at most about 150 characters."""
    text = str(e).strip().splitlines()[0] if str(e).strip() else ""
    text = text if len(text) <= 150 else text[:147] + "..."
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def _unanswered(x) -> bool:
    return x is ... or x is None


def _array(x, name: str) -> np.ndarray:
    """x (array, tensor, list, number) as float64, or a hint if it is not numbers."""
    if callable(x) and not hasattr(x, "shape"):
        _hint(f"{name} is a function; give its result (an array)")
    try:
        array = np.asarray(x)
    except Exception as e:
        _hint(f"{name} is not an array of numbers ({_one_line(e)})")
    if not (array.dtype == bool or np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)):
        _hint(f"{name} is a {type(x).__name__}, not an array of numbers")
    return array.astype(np.float64)


def _finite(x: np.ndarray, name: str, why: str = "") -> None:
    if not np.all(np.isfinite(x)):
        _hint(f"{name} contains NaN or infinite values" + (why or ": check each step on a small example"))


def _close(x: np.ndarray, ref) -> bool:
    """x equals ref up to float rounding, the tolerance relative to ref's largest value."""
    ref = np.asarray(ref, dtype=np.float64)
    if x.shape != ref.shape:
        return False
    scale = float(np.max(np.abs(ref))) if ref.size else 0.0
    return bool(np.allclose(x, ref, rtol=1e-4, atol=1e-4 * scale + 1e-7))


def _scaled(x: np.ndarray, ref) -> bool:
    """x equals s * ref for some s > 0 (a map defined only up to a positive factor)."""
    ref = np.asarray(ref, dtype=np.float64)
    if x.shape != ref.shape:
        return False
    norm = float(np.vdot(ref, ref))
    if norm == 0:
        return _close(x, ref)
    s = float(np.vdot(x, ref)) / norm  # least-squares factor
    return s > 0 and _close(x, s * ref)


def _first(x: np.ndarray, candidates, same=_close):
    """The hint of the first (wrong answer, hint) pair that x equals, or None."""
    return next((hint for wrong, hint in candidates if same(x, wrong)), None)


def _relu(x):
    return np.maximum(x, 0)


def _class(c: int, classes: int) -> str:
    """A class as a hint names it: 'tabby' (column 281) for ImageNet's 1000 classes, else column 281."""
    return f"'{CLASS_NAMES[c]}' (column {c})" if classes == len(CLASS_NAMES) else f"column {c}"


def _map_answer(answer, shape: tuple, name: str, K: int) -> np.ndarray:
    """The student's one-image map as an array, after the shape and NaN hints."""
    x = _array(answer, name)
    _map_shape(x, shape, name, K)
    _finite(x, name)
    return x


def _map_shape(x: np.ndarray, shape: tuple, name: str, K: int) -> None:
    """Shape hints for a one-image map (h, w) made from activations (h, w, K)."""
    if x.shape == shape:
        return
    if x.shape == shape + (K,):
        _hint(f"{name} still has one value per channel, shape {x.shape}: sum the weighted channels (the last axis)")
    if x.shape == (K,) or x.ndim == 0:
        _hint(
            f"{name} has shape {x.shape}: you summed over the positions instead of the channels; "
            f"the map keeps one value per position, shape {shape}"
        )
    if x.ndim == 2 and x.shape[0] >= shape[0] and x.shape[1] >= shape[1]:
        _hint(
            f"{name} has shape {x.shape}: the raw map stays at the layer's {shape[0]} x {shape[1]} "
            f"positions; upsampling comes later, for display"
        )
    _hint(f"{name} has shape {x.shape}; the map has one value per position of this image: shape {shape}")


# ---------------------------------------------------------------------------
# 1. Softmax


@_checker
def check_softmax(probabilities, logits):
    """Prints whether probabilities (N, classes) is the softmax of logits (N, classes) over the
    classes (the last axis)."""
    if _unanswered(probabilities):
        return UNANSWERED
    z = _array(logits, "logits")  # (N, classes)
    p = _array(probabilities, "probabilities")
    if p.shape != z.shape:
        if p.ndim == 2 and p.shape == z.shape[::-1]:
            _hint(f"probabilities has shape {p.shape}, transposed: keep the shape of logits, one row per image")
        if p.shape in [(z.shape[0],), (z.shape[0], 1)] or p.ndim == 0:
            _hint(
                f"probabilities has shape {p.shape}: keep every class, one probability per image and class "
                f"(the shape of logits, {z.shape})"
            )
        _hint(f"probabilities has shape {p.shape}; expected the shape of logits, {z.shape}")
    if z.size and z.max() > 80:
        _finite(p, "probabilities", ": np.exp overflows for large logits; subtract each row's maximum first")
    _finite(p, "probabilities")

    e = np.exp(z - z.max(axis=-1, keepdims=True))  # (N, classes)
    ref = e / e.sum(axis=-1, keepdims=True)
    if _close(p, ref):
        return _right(
            "Each image's probabilities are positive and sum to 1; softmax keeps the logits' order, "
            "so the top class is the same."
        )

    across = np.exp(z - z.max(axis=0, keepdims=True))
    everything = np.exp(z - z.max())
    twice = np.exp(ref - ref.max(axis=-1, keepdims=True))
    reversed_ = np.exp(z.min(axis=-1, keepdims=True) - z)
    hint = _first(
        p,
        [
            (
                np.exp(z),
                "the exponentials are not normalised: divide each by its row's sum, so each image's "
                "probabilities add up to 1",
            ),
            (
                across / across.sum(axis=0, keepdims=True),
                "normalised over the wrong axis: that divides across "
                "images (axis 0); normalise over the classes, the last axis (keepdims=True)",
            ),
            (
                everything / everything.sum(),
                "normalised over all the images at once: each image's row must sum to 1 on its own",
            ),
            (
                z / z.sum(axis=-1, keepdims=True),
                "the logits divided by their sum: exponentiate first (logits can be negative, exponentials cannot)",
            ),
            (np.log(ref), "those are log-probabilities (log-softmax): the probabilities are their exponentials"),
            (twice / twice.sum(axis=-1, keepdims=True), "softmax applied twice: apply it once, to the logits"),
            (
                reversed_ / reversed_.sum(axis=-1, keepdims=True),
                "you exponentiated minus the logits: the largest logit must get the largest probability",
            ),
        ],
    )
    if hint:
        _hint(hint)
    if p.min() < 0:
        _hint("probabilities cannot be negative: p_i = exp(z_i) / sum_j exp(z_j)")
    if _close(p.sum(axis=-1), np.ones(len(p))):
        _hint("each row sums to 1, but the values are not the softmax: p_i = exp(z_i) / sum_j exp(z_j)")
    _hint("these are not softmax(logits): p_i = exp(z_i) / sum_j exp(z_j), over each image's classes")


# ---------------------------------------------------------------------------
# 2. The peak of a map


@_checker
def check_peak(peak, heatmap):
    """Prints whether peak is the (row, column) of heatmap's (H, W) maximum (any one of a tie)."""
    if _unanswered(peak):
        return UNANSWERED
    h = _array(heatmap, "heatmap")  # (H, W)
    if isinstance(peak, str):
        _hint("peak is a str: give two integers, (row, column)")
    p = _array(peak, "peak")
    whole = bool(np.all(np.isfinite(p)) and np.all(p == np.round(p)))
    if p.size == 1:
        i = p.item()
        if whole and 0 <= i < h.size and h.flat[int(i)] == h.max():
            _hint(
                "a single number: np.argmax gives a flat index into the flattened map; "
                "np.unravel_index turns it into (row, column)"
            )
        _hint("peak is a single number: give two integers, (row, column)")
    if p.shape != (2,):
        _hint(f"peak has shape {p.shape}: give two integers, (row, column)")
    if not whole:
        _hint("peak must hold two whole numbers, (row, column): indices, not coordinates in between")

    row, column = int(p[0]), int(p[1])
    H, W = h.shape

    def inside(r, c):
        return 0 <= r < H and 0 <= c < W

    if inside(row, column) and h[row, column] == h.max():
        return _right(
            "numpy indexes [row, column]: the row counts down from the top, the column across from "
            "the left, the reverse of (x, y)."
        )
    if inside(column, row) and h[column, row] == h.max():
        _hint("that is (column, row), i.e. (x, y): numpy indexes [row, column], the row first")
    if not inside(row, column):
        _hint(f"peak is outside the heatmap, whose shape is {h.shape}: rows and columns count from 0")
    if h[row, column] == h.min():
        _hint("that is the position of the minimum: the peak is the largest value (np.argmax, not np.argmin)")
    _hint("heatmap[row, column] is not the largest value of the map: look for the maximum over the whole map")


# ---------------------------------------------------------------------------
# 3. The class activation map


@_checker
def check_cam_map(M, a, W, c):
    """Prints whether M (h, w) is the raw class activation map sum_k W[k, c] a[..., k] of one image's
    activations a (h, w, K) and the Dense kernel W (K, classes): no ReLU, scaling or upsampling."""
    if _unanswered(M):
        return UNANSWERED
    a, W, c = _array(a, "a"), _array(W, "W"), int(c)
    h, w, K = a.shape
    classes = W.shape[1]
    x = _array(M, "M")
    if x.shape == (h, w, classes):
        _hint(f"M has shape {x.shape}, a map for every class: keep only class c's column of W")
    _map_shape(x, (h, w), "M", K)
    _finite(x, "M")

    maps = a @ W  # (h, w, classes): every class's map
    ref = maps[..., c]  # (h, w)
    if _close(x, ref):
        return _right(
            "M is the raw class activation map: its mean plus the Dense layer's bias b_c is exactly the logit y_c."
        )

    hint = _first(
        x,
        [
            (_relu(ref), "the ReLU is applied: the raw map keeps its negative values (the ReLU comes later)"),
            (
                ref / ref.max() if ref.max() > 0 else ref,
                "M is scaled: keep the raw values (scaling to [0, 1] comes later, for display)",
            ),
            (
                _relu(ref) / ref.max() if ref.max() > 0 else ref,
                "M is ReLU'd and scaled: keep the raw values, negative ones too (both come later, for display)",
            ),
            (
                (ref - ref.min()) / (np.ptp(ref) or 1),
                "M is min-max scaled: keep the raw values (scaling comes later, for display)",
            ),
            (ref / K, "M is divided by K: sum the weighted channels, do not average them"),
            (
                ref / (h * w),
                "M is divided by Z = h * w: that is each position's share of the logit; M itself is not divided",
            ),
            (-ref, "M has the wrong sign: weight each channel by +W[k, c]"),
        ],
    )
    if hint:
        _hint(hint)

    # another class's map: which columns of a @ W does M equal?
    tolerance = 1e-4 * np.max(np.abs(maps), axis=(0, 1)) + 1e-7 + 1e-4 * np.abs(maps)  # (h, w, classes)
    matches = np.flatnonzero(np.all(np.abs(x[..., None] - maps) <= tolerance, axis=(0, 1)))
    others = [j for j in matches if j != c]
    if others:
        _hint(
            f"that is the map of {_class(others[0], classes)}, not of {_class(c, classes)}: "
            "use the class's own column of W"
        )
    candidates = [
        (a.sum(axis=-1), "M is the plain sum of the channels: weight each channel by W[k, c]"),
        (a.mean(axis=-1), "M is the plain mean of the channels: weight each channel by W[k, c]"),
    ]
    if classes == K:  # only then does a @ W[c] run
        candidates.append(
            (a @ W[c], "W[c] is row c of W, channel c's weight for every class: the class's weights are its column")
        )
    hint = _first(x, candidates)
    if hint:
        _hint(hint)
    if _scaled(x, ref):
        _hint("M is proportional to the map but scaled: M = sum_k W[k, c] a[..., k], nothing divided")
    _hint("M is not sum_k W[k, c] a[..., k]: at each position, weight channel k by W[k, c] and add them up")


# ---------------------------------------------------------------------------
# 4. Grad-CAM: the score and the channel weights


def _score_hint(s, y: np.ndarray, c: int) -> str:
    """The hint for a score s of the wrong value, y (1, classes) the logits."""
    logp = y[0] - y[0].max() - np.log(np.sum(np.exp(y[0] - y[0].max())))  # (classes,)
    classes = y.shape[1]
    hint = _first(
        s,
        [
            (
                np.exp(logp[c]),
                "that is the softmax probability: differentiate the logit y[0, c], before the "
                "softmax (the probability's gradient mixes in every other class)",
            ),
            (
                logp[c],
                "that is the log-probability: it subtracts every other class's evidence; differentiate "
                "the logit y[0, c] itself",
            ),
            (y.sum(), "that is the sum of all the logits: differentiate only class c's logit"),
            (np.exp(y[0, c]), "that is exp(y_c), Grad-CAM++'s score: Grad-CAM differentiates the logit itself"),
        ],
    )
    if hint:
        return hint
    other = [j for j in range(classes) if j != c and _close(s, y[0, j])]
    if other:
        return f"that is the logit of {_class(other[0], classes)}, not of {_class(c, classes)}"
    return "my_score(y) is not the logit of class c: take y's entry for image 0 and class c, before any softmax"


def _weights_hint(w: np.ndarray, A: np.ndarray, G: np.ndarray) -> str:
    """The hint for channel weights w (1, K) of the wrong value, A and G (1, h, w, K)."""
    _, h, wd, K = A.shape
    alpha = G.mean(axis=(1, 2))  # (1, K)
    xgrad = "G * A: weighing the gradient by the activations is closer to XGrad-CAM or HiResCAM; Grad-CAM averages G"
    return (
        _first(
            w,
            [
                (
                    alpha * h * wd,
                    "summed instead of averaged: eq. 1 averages, so divide by Z = h * w or use a mean "
                    "(the map would only be scaled, but these weights are not alpha)",
                ),
                (A.mean(axis=(1, 2)), "you used the activations A instead of the gradients G"),
                (A.sum(axis=(1, 2)), "you used the activations A instead of the gradients G"),
                ((G * A).mean(axis=(1, 2)), "you averaged " + xgrad),
                ((G * A).sum(axis=(1, 2)), "you summed " + xgrad),
                (
                    -alpha,
                    "the sign is flipped: those are the counterfactual's weights; Grad-CAM keeps the gradient's sign",
                ),
                (
                    _relu(G).mean(axis=(1, 2)),
                    "you averaged ReLU(G): Grad-CAM averages the raw gradients, negative ones too",
                ),
            ],
        )
        or "my_weights(A, G) is not the mean of G over the positions: alpha_k = 1/Z sum_ij G[0, i, j, k]"
    )


@_checker
def check_grad_cam(my_score, my_weights, model, x, c):
    """Prints whether my_score(y) is the logit y[0, c] and my_weights(A, G) the mean gradient over the
    positions (1, K) (Grad-CAM eq. 1), for `model` x -> (A (1, h, w, K), y (1, classes)); the score is
    checked first, then the weights on the right gradient G."""
    for name, f in (("my_score", my_score), ("my_weights", my_weights)):
        if _unanswered(f):
            return UNANSWERED
        if not callable(f):
            _hint(f"{name} should be a function: def {name}(...): return ...")
    c = int(c)
    with tf.GradientTape(persistent=True) as tape:
        A, y = model(x, training=False)  # (1, h, w, K), (1, classes)
        logit = y[0, c]
        try:
            s = my_score(y)
        except Exception as e:
            _hint(f"my_score raised {_one_line(e)}")
    if _unanswered(s):
        return UNANSWERED
    score = _array(s, "my_score(y)")
    if score.size != 1:
        _hint(f"my_score(y) has shape {score.shape}: the score is one number, class c's logit for this image")
    _finite(score, "my_score(y)")
    score = score.reshape(())
    logits = np.asarray(y, dtype=np.float64)  # (1, classes)
    if not _close(score, logits[0, c]):
        _hint(_score_hint(score, logits, c))
    G = tape.gradient(logit, A)  # (1, h, w, K)
    try:
        G_score = tape.gradient(s, A)
    except Exception:
        G_score = None
    if G_score is None:
        _hint(
            "my_score's result is not connected to y (its gradient is None): compute it from y with "
            "TensorFlow operations, not .numpy() or float()"
        )
    if not _close(np.asarray(G_score, np.float64), np.asarray(G, np.float64)):
        _hint("my_score(y) has the logit's value but not its gradient: compute it from y itself")

    try:
        w = my_weights(A, G)
    except Exception as e:
        _hint(f"my_weights raised {_one_line(e)}")
    if _unanswered(w):
        return "… Not answered yet: my_score is right; now replace the ... in my_weights with your code."
    A, G = np.asarray(A, np.float64), np.asarray(G, np.float64)
    _, h, wd, K = A.shape
    weights = _array(w, "my_weights(A, G)")
    weights = weights[None] if weights.shape == (K,) else weights
    if weights.shape != (1, K):
        shape = weights.shape
        if shape in [(1, h, wd), (h, wd)]:
            _hint(
                f"my_weights returned shape {shape}: you averaged over the channels; eq. 1 averages over "
                "the positions i, j (axes 1 and 2), one weight per channel"
            )
        if shape in [(1, h, K), (1, wd, K), (h, K), (wd, K)]:
            _hint(
                f"my_weights returned shape {shape}: you averaged over one spatial axis only; average over "
                "both (axes 1 and 2), the Z = h * w positions"
            )
        if shape == (1, h, wd, K) and _close(weights, G * A):
            _hint(
                "G * A is one value per position and channel, closer to HiResCAM or XGrad-CAM; Grad-CAM "
                "averages G over the positions, one weight per channel"
            )
        if shape == (1, h, wd, K):
            _hint(
                "one value per position and channel: eq. 1 averages the gradient over the positions, "
                "one weight per channel"
            )
        if weights.size == 1:
            _hint("a single number: you averaged over everything; keep one weight per channel")
        _hint(f"my_weights returned shape {shape}; expected one weight per channel, (1, K) = {(1, K)}")
    _finite(weights, "my_weights(A, G)")
    if _close(weights, G.mean(axis=(1, 2))):
        return _right(
            "alpha_k is channel k's mean gradient (eq. 1), and ReLU(sum_k alpha_k A^k) is the "
            "Grad-CAM map at this layer."
        )
    _hint(_weights_hint(weights, A, G))


# ---------------------------------------------------------------------------
# 5. Grad-CAM++ on a pooling + Dense head


@_checker
def check_grad_cam_pp_head(answer, a, W, c):
    """Prints whether answer (h, w) is ReLU(sum_k ReLU(W[k, c]) a[..., k]), Grad-CAM++ on a pooling +
    Dense head, up to a positive factor; a (h, w, K), W (K, classes)."""
    if _unanswered(answer):
        return UNANSWERED
    a, W, c = _array(a, "a"), _array(W, "W"), int(c)
    h, w, K = a.shape
    x = _map_answer(answer, (h, w), "pp_map", K)

    column = W[:, c]  # (K,)
    cam = a @ column  # (h, w): the raw CAM map
    ref = _relu(a @ _relu(column))  # (h, w)
    if _close(x, ref) or _scaled(x, ref):
        return _right(
            "On a pooling + Dense head Grad-CAM++ is CAM with only the positive weights: the "
            "channels that argue against the class are ignored.",
            scaled=not _close(x, ref),
        )
    relu_a = "you applied the ReLU to the activations a instead of the weights W[:, c]"
    hint = _first(
        x,
        [
            (
                _relu(cam),
                "that is ReLU(CAM): Grad-CAM++ on this head keeps only the channels with positive "
                "weights, so apply a ReLU to the weights W[:, c] before the sum",
            ),
            (cam, "that is the CAM map without any ReLU: ReLU the weights W[:, c], then ReLU the sum"),
            (a @ _relu(column), "you forgot the outer ReLU: the map is ReLU(sum_k ReLU(W[k, c]) a[..., k])"),
            (_relu(_relu(a) @ column), relu_a),
            (_relu(a) @ column, relu_a),
        ],
        same=_scaled,
    )
    _hint(hint or "pp_map is not ReLU(sum_k ReLU(W[k, c]) a[..., k]), even up to a positive factor")


# ---------------------------------------------------------------------------
# 6. Counterfactual explanations


@_checker
def check_counterfactual(answer, a, g):
    """Prints whether answer (h, w) is ReLU(sum_k -alpha_k a[..., k]), alpha = the mean of g over the
    positions, up to a positive factor; a and g (h, w, K) one image's activations and gradient."""
    if _unanswered(answer):
        return UNANSWERED
    a, g = _array(a, "a"), _array(g, "g")
    h, w, K = a.shape
    x = _map_answer(answer, (h, w), "counterfactual_map", K)

    alpha = g.mean(axis=(0, 1))  # (K,): Grad-CAM's weights
    grad_cam = _relu(a @ alpha)  # (h, w)
    ref = _relu(a @ -alpha)  # (h, w)
    if _close(x, ref) or _scaled(x, ref):
        return _right(
            "The counterfactual map shows the regions whose removal would make the network more "
            "confident of the class: the evidence against it.",
            scaled=not _close(x, ref),
        )
    relu_weights = "you negated a map made from ReLU(alpha): that ReLU drops the very weights you need; negate alpha"
    hint = _first(
        x,
        [
            (grad_cam, "that is the Grad-CAM map: negate the weights alpha_k before the weighted sum"),
            (
                -grad_cam,
                "every value is <= 0: you negated after the ReLU; negate the weights first, then apply the ReLU",
            ),
            (a @ -alpha, "you forgot the ReLU: keep only the positive part of sum_k -alpha_k a[..., k]"),
            (-_relu(a @ _relu(alpha)), relu_weights),
            (a @ -_relu(alpha), relu_weights),
            (_relu(a @ -_relu(alpha)), relu_weights),
        ],
        same=_scaled,
    )
    if hint:
        _hint(hint)
    if not np.any(x) and np.any(ref):
        _hint("counterfactual_map is zero everywhere: check the sign, negate the weights and then apply the ReLU")
    _hint("counterfactual_map is not ReLU(sum_k -alpha_k a[..., k]) with alpha_k the mean of g over the positions")


# ---------------------------------------------------------------------------
# 7. Guided Grad-CAM


@_checker
def check_guided_grad_cam(answer, guided, heatmap):
    """Prints whether answer (S, S, 3) is guided (S, S, 3) times heatmap (S, S) in every colour channel."""
    if _unanswered(answer):
        return UNANSWERED
    guided, heatmap = _array(guided, "guided"), _array(heatmap, "heatmap")  # (S, S, 3), (S, S)
    if heatmap.shape != guided.shape[:2]:
        _hint(
            f"heatmap has shape {heatmap.shape} but guided has {guided.shape}: upsample the map to the "
            "photo's pixels first"
        )
    x = _array(answer, "guided_cam")
    if x.shape != guided.shape:
        if x.shape == heatmap.shape and _close(x, heatmap):
            _hint("that is the heatmap alone: multiply the guided gradients by it")
        if x.shape == heatmap.shape:
            _hint(
                f"guided_cam has shape {x.shape}: keep the 3 colour channels, heatmap[..., None] broadcasts over them"
            )
        if x.ndim >= 2 and x.shape[0] < guided.shape[0]:
            _hint(
                f"guided_cam has shape {x.shape}: use the heatmap upsampled to the photo's "
                f"{guided.shape[0]} x {guided.shape[1]} pixels, not the layer's small map"
            )
        _hint(f"guided_cam has shape {x.shape}; expected the shape of guided, {guided.shape}")
    _finite(x, "guided_cam")

    ref = guided * heatmap[..., None]  # (S, S, 3)
    if _close(x, ref):
        return _right(
            "Guided Grad-CAM keeps guided backpropagation's fine detail only where Grad-CAM finds "
            "the class: sharp and class-discriminative."
        )
    hint = _first(
        x,
        [
            (guided + heatmap[..., None], "you added: multiply the guided gradients by the heatmap"),
            (
                guided * (1 - heatmap[..., None]),
                "you multiplied by 1 - heatmap, which keeps the unimportant regions: multiply by the heatmap itself",
            ),
            (guided, "that is guided backpropagation alone: multiply it by the heatmap"),
            (
                np.repeat(heatmap[..., None], guided.shape[-1], axis=-1),
                "that is the heatmap alone: multiply the guided gradients by it",
            ),
            (guided * heatmap.T[..., None], "the heatmap is transposed: multiply each pixel by its own value"),
        ],
    )
    _hint(hint or "guided_cam is not guided times the heatmap, pixel by pixel and in each colour channel")


# ---------------------------------------------------------------------------
# 8. One step of the deletion metric


@_checker
def check_deletion_step(answer, photo, heatmap, fraction=0.1):
    """Prints whether answer is photo (S, S, 3) with its round(fraction * S * S) pixels of highest heatmap
    (S, S) set to 0 in all channels and the others unchanged; any choice among ties is right, and so is
    rounding the count down."""
    if _unanswered(answer):
        return UNANSWERED
    try:
        alias = answer is photo or np.shares_memory(answer, photo)
    except Exception:
        alias = False
    if alias:
        _hint(
            "deleted shares its memory with photo, so the photo was changed too: start from photo.copy() "
            "(and load the photo again)"
        )
    P, H = _array(photo, "photo"), _array(heatmap, "heatmap")  # (S, S, 3), (S, S)
    if H.shape != P.shape[:2]:
        _hint(f"heatmap has shape {H.shape} but photo has {P.shape}: use the map upsampled to the photo")
    X = _array(answer, "deleted")
    if X.shape != P.shape:
        extra = ": keep the 3 colour channels" if X.shape == H.shape else ""
        _hint(f"deleted has shape {X.shape}; expected the shape of photo, {P.shape}{extra}")
    _finite(X, "deleted")

    n = H.size
    exact = round(fraction * n, 6)
    counts = sorted({math.floor(exact), round(exact)})  # how many pixels may be deleted
    x, p, h = X.reshape(n, -1), P.reshape(n, -1), H.ravel()  # (n, 3), (n, 3), (n,)
    changed = np.any(x != p, axis=1)  # (n,)
    black = np.all(x == 0, axis=1)  # (n,): deleted, or black in the photo already
    if not changed.any():
        _hint("deleted equals the photo: nothing was deleted")
    wrong = changed & ~black
    if wrong.any():
        if np.all(np.any(x[wrong] == 0, axis=1) & np.all((x[wrong] == 0) | (x[wrong] == p[wrong]), axis=1)):
            _hint("only some colour channels were zeroed: set all 3 channels of a deleted pixel to 0")
        _hint(
            "pixels other than the deleted ones changed too: every pixel you keep must stay as in the photo "
            "(no scaling, no change of type)"
        )

    already = np.flatnonzero(black & ~changed)  # black in the photo: deleted or kept, both fine
    already = already[np.argsort(-h[already], kind="stable")]
    n_changed = int(changed.sum())
    tolerance = 1e-6 * float(np.max(np.abs(h))) + 1e-12
    feasible = [m for m in counts if n_changed <= m <= n_changed + len(already)]
    if not feasible:
        _hint(
            f"{n_changed} pixels were deleted; {fraction:.0%} of the {n} pixels is round({fraction} * {n}) "
            f"= {round(exact)}"
        )
    for m in feasible:
        deleted = changed.copy()
        deleted[already[: m - n_changed]] = True  # (n,)
        if _above(h[deleted], h[~deleted], tolerance):
            return _right(
                "Deleting the most important pixels first should make the class's score fall fast: "
                "the deletion metric measures how fast."
            )
    if _above(h[~deleted], h[deleted], tolerance):
        _hint("you deleted the least important pixels: sort the heatmap in descending order")
    _hint(
        "some deleted pixels have lower heatmap values than pixels you kept: delete the pixels where the "
        "heatmap is highest"
    )


def _above(high: np.ndarray, low: np.ndarray, tolerance: float) -> bool:
    """Every value of high is at least every value of low (up to ties)."""
    return high.size == 0 or low.size == 0 or high.min() >= low.max() - tolerance


# ---------------------------------------------------------------------------
# 9. Multiple choice

QUESTIONS = {
    "giraffe": {
        "question": (
            "ImageNet's 1000 classes have no giraffe. What will the network say for the photo of a giraffe "
            "next to a zebra?"
        ),
        "choices": {
            "a": "'giraffe' anyway",
            "b": "the closest class it knows that is in the photo: zebra",
            "c": "an error",
        },
        "right": "b",
        "why": (
            "A classifier can only answer with one of its classes: it picks the one with the strongest "
            "evidence in the photo, and CAM shows where that evidence is."
        ),
        "hints": {
            "a": "the network has no output for 'giraffe': its last layer has exactly one logit per ImageNet class.",
            "c": "nothing fails: the softmax gives 1000 probabilities that sum to 1, whatever the photo shows.",
        },
    },
    "grad_cam_equals_cam": {
        "question": (
            "At `top_activation`, the layer right before global average pooling and the Dense layer, will "
            "Grad-CAM's map differ from CAM's?"
        ),
        "choices": {
            "a": "yes, a little",
            "b": "no: the same map up to a positive factor",
            "c": "yes, completely",
        },
        "right": "b",
        "why": (
            "There y^c = sum_k w^c_k (1/Z) sum_ij A^k_ij, so dy^c / dA^k_ij = w^c_k / Z at every position: "
            "alpha_k = w^c_k / Z, and the scaling removes the 1/Z."
        ),
        "hints": {
            "a": (
                "compute the gradient: on that head the logit is linear in A, so the gradient is the same at "
                "every position, and no small difference can appear."
            ),
            "c": (
                "both weigh the same activations A^k; only the weights could differ. Compare alpha_k, the mean "
                "gradient, with w^c_k."
            ),
        },
    },
    "saturation": {
        "question": (
            "A model is 99.9 % sure of class c and you explain its softmax probability instead of its logit. The map..."
        ),
        "choices": {
            "a": "is the same",
            "b": "gets sharper",
            "c": (
                "fades towards noise: the softmax is flat there, its gradient nearly zero and dominated by the "
                "other classes"
            ),
        },
        "right": "c",
        "why": (
            "dp_c / dy_c = p_c (1 - p_c) is nearly 0 at p_c = 0.999, and the probability's gradient mixes in "
            "every other class's: explain the logit."
        ),
        "hints": {
            "a": "the probability depends on every logit through the softmax: its gradient is not the logit's.",
            "b": "a saturated softmax is flat: its gradient shrinks towards zero, less signal, not more.",
        },
    },
    "sanity": {
        "question": (
            "You re-initialise the classifier's weights at random and a method's map does not change. That method..."
        ),
        "choices": {
            "a": "is robust, which is good",
            "b": "is not explaining this model's decision",
            "c": "needs a lower layer",
        },
        "right": "b",
        "why": (
            "That is the model randomisation test (Adebayo et al. 2018): a map that survives random weights "
            "shows the image (its edges, say), not what the model learnt."
        ),
        "hints": {
            "a": "robust to what? The decision changed with the weights: an explanation of it must change too.",
            "c": (
                "the layer is not the problem: a map that ignores the model's weights explains none of them, "
                "at any layer."
            ),
        },
    },
}


@_checker
def check_choice(question, answer):
    """Prints whether answer ("a", "b" or "c", any case) is the right choice for QUESTIONS[question]."""
    if question not in QUESTIONS:
        _hint(f"there is no question {question!r}; the questions are " + ", ".join(map(repr, QUESTIONS)))
    q = QUESTIONS[question]
    *first, last = q["choices"]
    letters = ", ".join(f'"{letter}"' for letter in first) + f' or "{last}"'  # "a", "b" or "c"
    if _unanswered(answer):
        return f"… Not answered yet: replace the ... with your answer, {letters}."
    letter = answer.strip().lower().lstrip("(").rstrip(").") if isinstance(answer, str) else None
    if letter not in q["choices"]:
        _hint(f"answer with one letter: {letters}")
    if letter != q["right"]:
        _hint(q["hints"][letter])
    return _right(q["why"])


# ---------------------------------------------------------------------------
# Solutions, as the notebook shows them (the notebook's variable names)

SOLUTIONS = {
    "softmax": "probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)  # (N, 1000)\n",
    "peak": "peak = np.unravel_index(np.argmax(heatmap), heatmap.shape)  # (row, column)\n",
    "cam_map": "M = a @ W[:, c]  # (h, w): sum_k W[k, c] a[..., k]\n",
    "grad_cam": """\
def my_score(y):
    return y[0, c]  # the logit of class c, before the softmax


def my_weights(A, G):
    return tf.reduce_mean(G, axis=(1, 2))  # (1, K): eq. 1, the mean over the positions
""",
    "grad_cam_pp_head": "pp_map = np.maximum(a @ np.maximum(W[:, c], 0), 0)  # (h, w): ReLU(sum_k ReLU(w_k^c) A^k)\n",
    "counterfactual": """\
alpha = g.mean(axis=(0, 1))  # (K,): Grad-CAM's weights
counterfactual_map = np.maximum(a @ -alpha, 0)  # (h, w): ReLU(sum_k -alpha_k A^k)
""",
    "guided_grad_cam": "guided_cam = guided * heatmap[..., None]  # (S, S, 3)\n",
    "deletion_step": """\
k = round(0.1 * heatmap.size)  # 10 % of the pixels
order = np.argsort(heatmap, axis=None)[::-1][:k]  # flat indices, most important first
deleted = photo.copy()
deleted.reshape(-1, 3)[order] = 0  # a view of the copy: (S * S, 3)
""",
    **{name: f'answer = "{q["right"]}"\n' for name, q in QUESTIONS.items()},
}
