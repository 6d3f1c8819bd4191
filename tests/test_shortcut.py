"""Right for the wrong reason: the planted mark's data, the model that learns it, and
Grad-CAM pointing at it. One model is trained for the module (about 10 s on 2 cores)."""

import numpy as np
import pytest

import helpers
from camlib import shortcut

N_TEST = 400  # held-out images per kind of mark
TEST_SEED = 1


@pytest.fixture(scope="module", autouse=True)
def _restore_op_determinism():
    """`train` turns TensorFlow's deterministic ops on for the whole process; the other test
    modules run as they would without this one."""
    from tensorflow.python.framework import config  # the switch back has no public name

    was = config.is_op_determinism_enabled()
    yield
    if not was:
        config.disable_op_determinism()


@pytest.fixture(scope="module")
def model():
    return shortcut.train(seed=0)


def held_out(mark):
    return shortcut.make_data(N_TEST, TEST_SEED, mark, "test")


# ---------------------------------------------------------------------------
# The data


@pytest.mark.parametrize("mark", shortcut.MARKS)
def test_make_data_is_seeded_balanced_and_marked_as_asked(mark):
    images, labels = shortcut.make_data(100, 3, mark)
    again, again_labels = shortcut.make_data(100, 3, mark)
    other, _ = shortcut.make_data(100, 4, mark)
    assert images.shape == (100, shortcut.SIZE, shortcut.SIZE, 3) and images.dtype == np.uint8
    assert np.array_equal(images, again) and np.array_equal(labels, again_labels)
    assert not np.array_equal(images, other)
    assert np.bincount(labels).tolist() == [50, 50]
    marked = shortcut.has_mark(images)
    if mark == "label":
        assert np.array_equal(marked, labels == 1)
    elif mark == "none":
        assert not marked.any()
    else:  # half of each class, whatever the label
        assert marked[labels == 0].sum() == marked[labels == 1].sum() == 25


def test_test_digits_are_held_out():
    train, _ = shortcut.digits("train")
    test, _ = shortcut.digits("test")
    seen = {x.tobytes() for x in train}
    assert len(train) + len(test) == 357  # scikit-learn's 183 3s and 174 8s
    assert not any(x.tobytes() in seen for x in test)


@pytest.mark.parametrize(
    "kwargs, allowed",
    [({"mark": "corner"}, "'label', 'none', 'random'"), ({"split": "validation"}, "'train', 'test'")],
)
def test_bad_input_names_the_allowed_values(kwargs, allowed):
    with pytest.raises(ValueError, match=allowed):
        shortcut.make_data(10, 0, **kwargs)


# ---------------------------------------------------------------------------
# The model: right with the mark, at chance without it, and looking at the mark


def test_accurate_with_the_shortcut_near_chance_without_it(model):
    accuracy = {mark: shortcut.accuracy(model, *held_out(mark)) for mark in shortcut.MARKS}
    assert accuracy["label"] >= 0.95, accuracy
    assert 0.35 <= accuracy["none"] <= 0.65, accuracy
    assert 0.35 <= accuracy["random"] <= 0.65, accuracy


def test_grad_cam_peaks_on_the_mark(model):
    layer = helpers.target_layer(model)
    _, h, w, _ = model.get_layer(layer).output.shape
    cell = shortcut.SIZE / h  # pixels per position of the target layer
    assert (layer, h, w) == ("conv3", 16, 16)

    images, labels = held_out("random")
    fooled = images[(labels == 0) & shortcut.has_mark(images)]  # 3s wearing the 8s' mark
    maps = helpers.explain(model, fooled, "grad_cam", classes=1)
    hits = helpers.pointing_game(maps, [shortcut.MARK_BOX] * len(fooled), tolerance=cell)
    assert len(fooled) == N_TEST // 4 and hits.mean() >= 0.9, hits.mean()
    assert np.mean(shortcut.classify(model, fooled) == 1) >= 0.9

    clean = images[~shortcut.has_mark(images)]  # without the mark, the map must look elsewhere
    maps = helpers.explain(model, clean, "grad_cam")
    assert helpers.pointing_game(maps, [shortcut.MARK_BOX] * len(clean), tolerance=cell).mean() <= 0.1


def test_train_is_deterministic():
    first, second = (shortcut.train(seed=5, n=64, epochs=1) for _ in range(2))
    for a, b in zip(first.weights, second.weights, strict=True):
        assert np.array_equal(np.asarray(a), np.asarray(b)), a.name
