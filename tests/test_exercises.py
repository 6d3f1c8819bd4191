"""The exercises' checkers: each solution gets a tick, each typical mistake its own hint, and no
answer, however wrong, makes a checker raise or print the expected values.

The inputs are tiny seeded arrays under the notebook's variable names, and Grad-CAM runs on a
tiny seeded two-output model; no ImageNet weights are needed.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

from camlib import exercises as ex
from camlib.photos import CLASS_NAMES

RIGHT, NOT_YET, UNANSWERED = "✔ Right!", "✘ Not yet:", "… Not answered yet"


def reply(capsys, check, *args) -> str:
    """What check(*args) prints: it returns None and prints one message of at most two lines."""
    assert check(*args) is None
    out = capsys.readouterr().out
    assert out.startswith((RIGHT, NOT_YET, UNANSWERED)), out
    assert out.endswith("\n") and out.count("\n") <= 2, out
    assert sum(out.count(prefix) for prefix in (RIGHT, NOT_YET, UNANSWERED)) == 1, out
    return out


def assert_no_reference(out: str, reference) -> None:
    """None of the reference's values appears in the message, in any usual format."""
    values = np.asarray(reference, dtype=np.float64).ravel()
    values = values[np.argsort(-np.abs(values))][:5]  # the most telling ones
    for v in values:
        for text in (f"{v:.2f}", f"{v:.3f}", f"{v:.4g}", repr(float(v))):
            if text.strip("-0.") and len(text) > 3:  # "0.00" or "1.0" would match plain prose
                assert text not in out, (text, out)


# ---------------------------------------------------------------------------
# Tiny inputs, under the notebook's names

rng = np.random.default_rng(0)
LOGITS = rng.normal(size=(3, 10)) * 3  # (N, classes)
HEATMAP = rng.random((6, 9))  # (H, W)
HEATMAP[4, 2] = 2.0  # the peak: row 4, column 2
A = rng.normal(size=(4, 5, 6))  # (h, w, K), signed so that every ReLU can be told apart
W = rng.normal(size=(6, 10))  # (K, classes)
C = 3
A_POS = np.abs(rng.normal(size=(4, 5, 6)))  # activations after a ReLU
G = rng.normal(size=(4, 5, 6))  # the logit's gradient
GUIDED = rng.normal(size=(8, 8, 3))  # (S, S, 3)
MAP = rng.random((8, 8))  # (S, S) in [0, 1]
PHOTO = rng.integers(1, 256, (10, 10, 3), dtype=np.uint8)  # no black pixel
DELETION_MAP = rng.random((10, 10))

# exercise -> (checker, the answer's name, the checker's arguments after the answer, the notebook's inputs)
CASES = {
    "softmax": (ex.check_softmax, "probabilities", (LOGITS,), {"logits": LOGITS}),
    "peak": (ex.check_peak, "peak", (HEATMAP,), {"heatmap": HEATMAP}),
    "cam_map": (ex.check_cam_map, "M", (A, W, C), {"a": A, "W": W, "c": C}),
    "grad_cam_pp_head": (ex.check_grad_cam_pp_head, "pp_map", (A, W, C), {"a": A, "W": W, "c": C}),
    "counterfactual": (ex.check_counterfactual, "counterfactual_map", (A_POS, G), {"a": A_POS, "g": G}),
    "guided_grad_cam": (ex.check_guided_grad_cam, "guided_cam", (GUIDED, MAP), {"guided": GUIDED, "heatmap": MAP}),
    "deletion_step": (
        ex.check_deletion_step,
        "deleted",
        (PHOTO, DELETION_MAP),
        {"photo": PHOTO, "heatmap": DELETION_MAP},
    ),
}


def solved(name: str) -> dict:
    """The notebook's namespace after running the solution of exercise `name`."""
    namespace = {"np": np, "tf": tf, **{k: v.copy() if hasattr(v, "copy") else v for k, v in CASES[name][3].items()}}
    exec(ex.SOLUTIONS[name], namespace)
    return namespace


def check(capsys, name: str, answer) -> str:
    checker, _, args, _ = CASES[name]
    return reply(capsys, checker, answer, *args)


def softmax(z, axis=-1):
    e = np.exp(z - z.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


# ---------------------------------------------------------------------------
# Every checker: not answered, the solution, garbage


@pytest.mark.parametrize("name", CASES)
@pytest.mark.parametrize("answer", [..., None])
def test_not_answered_yet(capsys, name, answer):
    assert check(capsys, name, answer).startswith(UNANSWERED)


CONVERTERS = {"numpy": np.asarray, "list": lambda x: np.asarray(x).tolist(), "tf": tf.constant}


@pytest.mark.parametrize("convert", CONVERTERS.values(), ids=CONVERTERS.keys())
@pytest.mark.parametrize("name", CASES)
def test_the_solution_gets_a_tick(capsys, name, convert):
    answer = solved(name)[CASES[name][1]]
    out = check(capsys, name, convert(answer))
    assert out.startswith(RIGHT) and "Scaled" not in out, out


NAN = object()  # stands for NaN in the right answer's shape


@pytest.mark.parametrize("name", CASES)
@pytest.mark.parametrize(
    "garbage",
    ["a string", np.zeros(2), NAN, {"a": 1}, [[1, 2], [3]], lambda: 1, 3 + 1j],
    ids=["str", "wrong shape", "nan", "dict", "ragged", "function", "complex"],
)
def test_garbage_gets_a_hint_and_never_raises(capsys, name, garbage):
    if garbage is NAN:
        garbage = np.full(np.shape(solved(name)[CASES[name][1]]), np.nan)
    assert check(capsys, name, garbage).startswith(NOT_YET)


@pytest.mark.parametrize("name", CASES)
def test_broken_inputs_never_raise(capsys, name):
    checker, answer_name, args, _ = CASES[name]
    answer = solved(name)[answer_name]
    assert reply(capsys, checker, answer, *(None for _ in args)).startswith(NOT_YET)
    assert reply(capsys, checker, answer, *("text" for _ in args)).startswith(NOT_YET)


# ---------------------------------------------------------------------------
# Typical mistakes get their own hint, and never the expected values

z, a, c = LOGITS, A, C  # the notebook's names
cam = a @ W[:, c]  # (h, w)
pp = np.maximum(a @ np.maximum(W[:, c], 0), 0)
alpha = G.mean(axis=(0, 1))  # (K,)
counterfactual = np.maximum(A_POS @ -alpha, 0)
guided_cam = GUIDED * MAP[..., None]
top = np.argsort(DELETION_MAP, axis=None)[::-1]  # flat indices, most important first


def deleted(indices, channels=slice(None), photo=PHOTO):
    out = photo.copy()
    out.reshape(-1, 3)[indices, channels] = 0
    return out


MISTAKES = [
    ("softmax", np.exp(z), "not normalised"),
    ("softmax", softmax(z, axis=0), "axis 0"),
    ("softmax", np.exp(z) / np.exp(z).sum(), "all the images at once"),
    ("softmax", z / z.sum(axis=1, keepdims=True), "exponentiate first"),
    ("softmax", np.log(softmax(z)), "log-probabilities"),
    ("softmax", softmax(softmax(z)), "applied twice"),
    ("softmax", softmax(-z), "minus the logits"),
    ("softmax", softmax(z)[:, :5], "expected the shape of logits"),
    ("softmax", softmax(z).T, "transposed"),
    ("softmax", softmax(z).max(axis=1), "keep every class"),
    ("softmax", -softmax(z), "cannot be negative"),
    ("softmax", softmax(z + np.arange(10)), "each row sums to 1"),
    ("peak", (2, 4), "numpy indexes [row, column]"),
    ("peak", np.argmax(HEATMAP), "np.unravel_index"),
    ("peak", np.unravel_index(np.argmin(HEATMAP), HEATMAP.shape), "minimum"),
    ("peak", (6, 2), "outside the heatmap"),
    ("peak", (-1, 0), "outside the heatmap"),
    ("peak", (0, 0), "not the largest value"),
    ("peak", (4.5, 2.0), "whole numbers"),
    ("peak", (4, 2, 0), "two integers"),
    ("peak", 7, "single number"),
    ("cam_map", (a * W[:, c]).sum(axis=(0, 1)), "instead of the channels"),
    ("cam_map", (a * W[:, c]).sum(), "instead of the channels"),
    ("cam_map", a * W[:, c], "one value per channel"),
    ("cam_map", a @ W, "a map for every class"),
    ("cam_map", np.maximum(cam, 0), "the ReLU comes later"),
    ("cam_map", cam / cam.max(), "scaling to [0, 1] comes later"),
    ("cam_map", (cam - cam.min()) / np.ptp(cam), "min-max scaled"),
    ("cam_map", tf.image.resize(cam[..., None], (8, 10))[..., 0], "upsampling comes later"),
    ("cam_map", a @ W[:, 5], "the map of column 5, not of column 3"),
    ("cam_map", a.mean(axis=-1), "weight each channel by W[k, c]"),
    ("cam_map", a.sum(axis=-1), "weight each channel by W[k, c]"),
    ("cam_map", cam / 6, "divided by K"),
    ("cam_map", cam / 20, "divided by Z"),
    ("cam_map", -cam, "wrong sign"),
    ("cam_map", cam[None], "one value per position"),
    ("cam_map", cam + 1, "is not sum_k"),
    ("grad_cam_pp_head", np.maximum(cam, 0), "ReLU(CAM)"),
    ("grad_cam_pp_head", cam, "without any ReLU"),
    ("grad_cam_pp_head", a @ np.maximum(W[:, c], 0), "outer ReLU"),
    ("grad_cam_pp_head", np.maximum(np.maximum(a, 0) @ W[:, c], 0), "activations a instead of the weights"),
    ("grad_cam_pp_head", a * np.maximum(W[:, c], 0), "one value per channel"),
    ("grad_cam_pp_head", -pp, "even up to a positive factor"),
    ("counterfactual", np.maximum(A_POS @ alpha, 0), "the Grad-CAM map"),
    ("counterfactual", -np.maximum(A_POS @ alpha, 0), "negated after the ReLU"),
    ("counterfactual", A_POS @ -alpha, "forgot the ReLU"),
    ("counterfactual", A_POS @ -np.maximum(alpha, 0), "ReLU(alpha)"),
    ("counterfactual", np.zeros((4, 5)), "ReLU(alpha)"),
    ("counterfactual", counterfactual + 1, "is not ReLU"),
    ("counterfactual", counterfactual[..., None], "shape"),
    ("guided_grad_cam", guided_cam.sum(axis=-1), "keep the 3 colour channels"),
    ("guided_grad_cam", GUIDED + MAP[..., None], "you added"),
    ("guided_grad_cam", GUIDED * (1 - MAP[..., None]), "1 - heatmap"),
    ("guided_grad_cam", GUIDED, "guided backpropagation alone"),
    ("guided_grad_cam", MAP, "the heatmap alone"),
    ("guided_grad_cam", np.repeat(MAP[..., None], 3, axis=-1), "the heatmap alone"),
    ("guided_grad_cam", GUIDED * MAP.T[..., None], "transposed"),
    ("guided_grad_cam", GUIDED[:4, :4] * MAP[:4, :4, None], "not the layer's small map"),
    ("guided_grad_cam", guided_cam * 2, "not guided times the heatmap"),
    ("deletion_step", deleted(top[-10:]), "least important"),
    ("deletion_step", deleted(top[:20]), "20 pixels were deleted; 10% of the 100 pixels is round(0.1 * 100) = 10"),
    ("deletion_step", deleted(top[:9]), "9 pixels were deleted"),
    ("deletion_step", deleted(top[:10], 0), "only some colour channels"),
    ("deletion_step", deleted(top[:10]) // 2, "pixels other than the deleted ones"),
    ("deletion_step", deleted(np.r_[top[:9], top[50]]), "lower heatmap values"),
    ("deletion_step", PHOTO.copy(), "nothing was deleted"),
    ("deletion_step", deleted(top[:10])[..., 0], "keep the 3 colour channels"),
]


@pytest.mark.parametrize("name, answer, phrase", MISTAKES, ids=[f"{m[0]}-{m[2][:24]}" for m in MISTAKES])
def test_a_mistake_gets_its_hint(capsys, name, answer, phrase):
    out = check(capsys, name, answer)
    assert out.startswith(NOT_YET) and phrase in out, out
    assert_no_reference(out, solved(name)[CASES[name][1]])


def test_check_peak_never_prints_the_peak(capsys):
    for answer in [m[1] for m in MISTAKES if m[0] == "peak"] + ["a string", np.nan]:
        out = check(capsys, "peak", answer)
        assert not any(s in out for s in ("4, 2", "(4, 2)", "[4, 2]", "4 2")), out


def test_check_peak_accepts_any_maximum_of_a_tie_and_numpy_ints(capsys):
    tie = np.zeros((3, 4))
    tie[0, 3] = tie[2, 1] = 1.0
    for peak in [(0, 3), (2, 1), [np.int64(2), np.int32(1)], np.array([0, 3])]:
        assert reply(capsys, ex.check_peak, peak, tie).startswith(RIGHT)


def test_check_cam_map_names_the_other_imagenet_class(capsys):
    w1000 = np.random.default_rng(1).normal(size=(6, 1000))
    out = reply(capsys, ex.check_cam_map, a @ w1000[:, 281], a, w1000, 285)
    assert f"the map of '{CLASS_NAMES[281]}' (column 281), not of '{CLASS_NAMES[285]}' (column 285)" in out


def test_check_cam_map_spots_a_row_of_w_instead_of_a_column(capsys):
    square = np.random.default_rng(2).normal(size=(6, 6))  # K = classes: a @ W[c] runs
    assert "row c of W" in reply(capsys, ex.check_cam_map, a @ square[c], a, square, c)


def test_check_cam_map_takes_no_relu_for_a_mistake_when_the_map_has_no_negative_value(capsys):
    positive = np.abs(W)
    assert reply(capsys, ex.check_cam_map, np.maximum(A_POS @ positive[:, c], 0), A_POS, positive, c).startswith(RIGHT)


@pytest.mark.parametrize(
    "name, answer", [("grad_cam_pp_head", 3 * pp), ("counterfactual", np.maximum(A_POS @ -G.sum(axis=(0, 1)), 0))]
)
def test_maps_defined_up_to_a_factor_accept_any_positive_multiple(capsys, name, answer):
    out = check(capsys, name, answer)
    assert out.startswith(RIGHT) and "Scaled: fine, maps are compared after scaling" in out, out


def test_check_softmax_explains_an_overflow(capsys):
    big = (LOGITS * 100).astype("float32")  # float32 logits, as a model gives them
    with np.errstate(all="ignore"):
        naive = np.exp(big) / np.exp(big).sum(axis=1, keepdims=True)  # NaN
    assert "subtract each row's maximum" in reply(capsys, ex.check_softmax, naive, big)


def test_check_guided_grad_cam_wants_the_upsampled_heatmap(capsys):
    out = reply(capsys, ex.check_guided_grad_cam, guided_cam, GUIDED, MAP[:4, :4])
    assert "upsample the map" in out


def test_check_deletion_step_accepts_ties_black_pixels_floats_and_a_rounded_down_count(capsys):
    flat = np.ones((10, 10))  # every pixel ties: any 10 will do
    assert reply(capsys, ex.check_deletion_step, deleted(top[-10:]), PHOTO, flat).startswith(RIGHT)
    dark = deleted(np.r_[top[3], top[60]])  # black before any deletion: one to delete, one to keep
    assert reply(capsys, ex.check_deletion_step, deleted(top[:10], photo=dark), dark, DELETION_MAP).startswith(RIGHT)
    light = PHOTO / 255.0  # a float photo
    assert reply(capsys, ex.check_deletion_step, deleted(top[:10], photo=light), light, DELETION_MAP).startswith(RIGHT)
    more = np.random.default_rng(4)
    photo, heatmap = more.integers(1, 256, (13, 13, 3), dtype=np.uint8), more.random((13, 13))  # 10 %: 16.9 pixels
    order = np.argsort(heatmap, axis=None)[::-1]
    for k in (16, 17):
        assert reply(capsys, ex.check_deletion_step, deleted(order[:k], photo=photo), photo, heatmap).startswith(RIGHT)
    out = reply(capsys, ex.check_deletion_step, deleted(order[:15], photo=photo), photo, heatmap)
    assert "15 pixels were deleted" in out


def test_check_deletion_step_sees_that_the_photo_itself_was_changed(capsys):
    photo = PHOTO.copy()
    answer = photo  # no copy: the photo is changed too
    answer.reshape(-1, 3)[top[:10]] = 0
    assert "photo.copy()" in reply(capsys, ex.check_deletion_step, answer, photo, DELETION_MAP)


# ---------------------------------------------------------------------------
# Grad-CAM: two functions, checked one after the other on a tiny model

X = np.random.default_rng(3).random((1, 8, 8, 3)).astype("float32")
CLASS = 2


@pytest.fixture(scope="module")
def two_outputs():
    """x (1, 8, 8, 3) -> (A (1, 8, 8, 4), y (1, 5)); A is not the last layer, so G varies over positions."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 3))
    features = keras.layers.Conv2D(4, 3, padding="same", activation="relu")(inputs)
    x = keras.layers.Conv2D(6, 3, padding="same", activation="relu")(features)
    logits = keras.layers.Dense(5)(keras.layers.GlobalAveragePooling2D()(x))
    return keras.Model(inputs, [features, logits])


@pytest.fixture(scope="module")
def reference(two_outputs):
    """The logits y (1, 5) and the right weights alpha (1, 4), to make sure no hint prints them."""
    with tf.GradientTape() as tape:
        A_, y = two_outputs(X, training=False)
        score = y[0, CLASS]
    return y.numpy(), tf.reduce_mean(tape.gradient(score, A_), axis=(1, 2)).numpy()


def grad_cam_solution():
    namespace = {"np": np, "tf": tf, "c": CLASS}
    exec(ex.SOLUTIONS["grad_cam"], namespace)
    return namespace["my_score"], namespace["my_weights"]


def check_grad_cam(capsys, model, my_score, my_weights) -> str:
    return reply(capsys, ex.check_grad_cam, my_score, my_weights, model, X, CLASS)


def test_the_grad_cam_solution_gets_a_tick(capsys, two_outputs):
    my_score, my_weights = grad_cam_solution()
    assert "Grad-CAM map" in check_grad_cam(capsys, two_outputs, my_score, my_weights)
    for weights in (lambda A, G: tf.reduce_mean(G, axis=(1, 2))[0], lambda A, G: np.mean(G, axis=(1, 2))):
        assert check_grad_cam(capsys, two_outputs, my_score, weights).startswith(RIGHT)
    assert check_grad_cam(capsys, two_outputs, lambda y: y[:, CLASS], my_weights).startswith(RIGHT)


def test_the_gradient_varies_over_positions(two_outputs):
    with tf.GradientTape() as tape:
        A_, y = two_outputs(X, training=False)
        score = y[0, CLASS]
    G_ = tape.gradient(score, A_).numpy()
    assert np.ptp(G_, axis=(1, 2)).min() > 0  # so the axis mistakes can be told apart


@pytest.mark.parametrize(
    "my_score, phrase",
    [
        (lambda y: ..., "Not answered yet"),
        (lambda y: None, "Not answered yet"),
        (lambda y: tf.nn.softmax(y)[0, CLASS], "before the softmax"),
        (lambda y: tf.nn.log_softmax(y)[0, CLASS], "log-probability"),
        (lambda y: tf.reduce_sum(y), "sum of all the logits"),
        (lambda y: tf.exp(y[0, CLASS]), "Grad-CAM++"),
        (lambda y: y[0, CLASS + 1], "the logit of column 3, not of column 2"),
        (lambda y: y, "shape (1, 5)"),
        (lambda y: tf.constant(y.numpy()[0, CLASS]), "not connected to y"),
        (lambda y: float(y[0, CLASS]), "not connected to y"),
        (lambda y: y[0, CLASS] + 1.0, "not the logit of class c"),
        (lambda y: 1 / 0, "my_score raised ZeroDivisionError: division by zero"),
        (lambda y: y[0, CLASS] * np.nan, "NaN"),
        ("not a function", "should be a function"),
    ],
    ids=lambda p: p if isinstance(p, str) else "",
)
def test_a_wrong_score_gets_its_hint(capsys, two_outputs, reference, my_score, phrase):
    _, my_weights = grad_cam_solution()
    out = check_grad_cam(capsys, two_outputs, my_score, my_weights)
    assert phrase in out, out
    assert_no_reference(out, reference[0])


@pytest.mark.parametrize(
    "my_weights, phrase",
    [
        (lambda A, G: ..., "my_score is right; now replace the ... in my_weights"),
        (lambda A, G: tf.reduce_mean(G, axis=3), "averaged over the channels"),
        (lambda A, G: tf.reduce_mean(G, axis=1), "one spatial axis only"),
        (lambda A, G: tf.reduce_sum(G, axis=(1, 2)), "divide by Z = h * w"),
        (lambda A, G: tf.reduce_mean(A, axis=(1, 2)), "activations A instead of the gradients G"),
        (lambda A, G: tf.reduce_mean(G * A, axis=(1, 2)), "XGrad-CAM"),
        (lambda A, G: G * A, "HiResCAM"),
        (lambda A, G: G, "one value per position and channel"),
        (lambda A, G: -tf.reduce_mean(G, axis=(1, 2)), "sign is flipped"),
        (lambda A, G: tf.reduce_mean(tf.nn.relu(G), axis=(1, 2)), "ReLU(G)"),
        (lambda A, G: tf.reduce_mean(G), "a single number"),
        (lambda A, G: tf.reduce_max(G, axis=(1, 2)), "not the mean of G over the positions"),
        (lambda A, G: tf.reduce_mean(G, axis=(1, 2))[:, :2], "shape (1, 2)"),
        (lambda A, G: "weights", "not an array of numbers"),
        (lambda A, G: tf.reshape(G, (-1,))[:0], "shape"),
        (lambda A, G: A.undefined, "my_weights raised AttributeError"),
    ],
    ids=lambda p: p if isinstance(p, str) else "",
)
def test_wrong_weights_get_their_hint(capsys, two_outputs, reference, my_weights, phrase):
    my_score, _ = grad_cam_solution()
    out = check_grad_cam(capsys, two_outputs, my_score, my_weights)
    assert phrase in out, out
    assert_no_reference(out, reference[1])


def test_check_grad_cam_never_raises_on_a_broken_model(capsys):
    my_score, my_weights = grad_cam_solution()
    assert reply(capsys, ex.check_grad_cam, my_score, my_weights, "not a model", X, CLASS).startswith(NOT_YET)
    assert reply(capsys, ex.check_grad_cam, ..., ..., None, None, None).startswith(UNANSWERED)


# ---------------------------------------------------------------------------
# Multiple choice


@pytest.mark.parametrize("question", ex.QUESTIONS)
def test_every_question_has_a_right_letter_a_hint_per_wrong_one_and_a_solution(capsys, question):
    q = ex.QUESTIONS[question]
    assert q["question"] and q["why"] and q["right"] in q["choices"]
    assert set(q["hints"]) == set(q["choices"]) - {q["right"]}
    namespace = {}
    exec(ex.SOLUTIONS[question], namespace)
    assert reply(capsys, ex.check_choice, question, namespace["answer"]).startswith(RIGHT)
    for letter, hint in q["hints"].items():
        out = reply(capsys, ex.check_choice, question, letter)
        assert out.startswith(NOT_YET) and hint in out
        assert f"{q['right']})" not in out and q["why"] not in out


@pytest.mark.parametrize("answer", ["b", "B", " b ", "b)", "(b)", "b."])
def test_check_choice_reads_the_letter_loosely(capsys, answer):
    assert reply(capsys, ex.check_choice, "giraffe", answer).startswith(RIGHT)


@pytest.mark.parametrize(
    "question, answer, phrase",
    [
        ("giraffe", ..., "Not answered yet"),
        ("giraffe", None, "Not answered yet"),
        ("giraffe", "d", "one letter"),
        ("giraffe", 2, "one letter"),
        ("giraffe", "zebra", "one letter"),
        ("unicorn", "a", "no question 'unicorn'"),
        (["giraffe"], "a", "Not yet"),
    ],
)
def test_check_choice_explains_what_it_cannot_read(capsys, question, answer, phrase):
    assert phrase in reply(capsys, ex.check_choice, question, answer)


def test_every_exercise_has_a_solution():
    assert set(ex.SOLUTIONS) == set(CASES) | {"grad_cam"} | set(ex.QUESTIONS)
