"""Faithfulness metrics: known answers on a toy model whose evidence we control, the real
model on a few photos, the cascading-randomisation sanity check, and bad input."""

import keras
import numpy as np
import pytest

import helpers
from camlib import metrics

# ---------------------------------------------------------------------------
# A toy model whose evidence we control
#
# 32 x 32 images; class 0's logit is 10 b - 5 where b in [0, 1] is the mean brightness of
# the 8 x 8 square SQUARE, class 1's logit is 0. So p(0) = sigmoid(10 b - 5): a white
# square gives sigmoid(5) = 0.993, a black one sigmoid(-5) = 0.0067; nothing outside
# the square matters.

S = 32
X0, Y0, X1, Y1 = 18, 4, 26, 12  # the square, x1 / y1 exclusive
SQUARE = (X0, Y0, X1, Y1)


def sigmoid(z):
    return 1 / (1 + np.exp(-z))


@pytest.fixture(scope="module")
def toy():
    mask = np.zeros((S, S), np.float32)
    mask[Y0:Y1, X0:X1] = 1
    inputs = keras.Input((S, S, 3))
    dense = keras.layers.Dense(2)
    outputs = dense(keras.layers.Flatten()(inputs))
    model = keras.Model(inputs, outputs)
    kernel = np.zeros((S * S * 3, 2), np.float32)
    kernel[:, 0] = np.repeat(mask.ravel(), 3) * 10 / (mask.sum() * 3 * 255)
    dense.set_weights([kernel, np.array([-5.0, 0.0], np.float32)])
    return model, mask


@pytest.fixture(scope="module")
def scene(toy):
    """Four copies of a white square on dark noise; the object's mask, its inverse and a
    different random map for each copy."""
    _, mask = toy
    rng = np.random.default_rng(0)
    image = rng.integers(0, 100, (S, S, 3)).astype(np.uint8)
    image[Y0:Y1, X0:X1] = 255
    images = np.repeat(image[None], 4, axis=0)
    masks = np.repeat(mask[None], 4, axis=0)
    return images, {"mask": masks, "inverse": 1 - masks, "random": rng.uniform(size=(4, S, S))}


def test_toy_model_reads_only_the_square(toy, scene):
    model, _ = toy
    images, _ = scene
    p = helpers.softmax(model(images.astype("float32")).numpy())
    np.testing.assert_allclose(p[:, 0], sigmoid(5), rtol=1e-5)
    noisy = images.copy()
    noisy[:, :, :10] = 0  # outside the square
    np.testing.assert_allclose(helpers.softmax(model(noisy.astype("float32")).numpy())[:, 0], sigmoid(5), rtol=1e-5)


# ---------------------------------------------------------------------------
# The object's mask beats its inverse and a random map on every metric


def test_average_drop_by_hand(toy, scene):
    model, _ = toy
    images, maps = scene
    drop, increase = metrics.average_drop_increase(model, images, maps["mask"])
    np.testing.assert_allclose(drop, 0, atol=1e-4)  # the square is untouched
    np.testing.assert_array_equal(increase, 0)
    drop, _ = metrics.average_drop_increase(model, images, maps["inverse"])  # the square goes black
    np.testing.assert_allclose(drop, 100 * (sigmoid(5) - sigmoid(-5)) / sigmoid(5), rtol=1e-4)
    drop_random, _ = metrics.average_drop_increase(model, images, maps["random"])
    assert np.all(drop_random > 1) and np.all(drop_random < drop)


def test_increase_in_confidence(toy, scene):
    model, _ = toy
    images, maps = scene
    dim = images // 2  # a dim square: p(0) = sigmoid(0) = 0.5
    _, increase = metrics.average_drop_increase(model, dim, maps["mask"], classes=1)  # class 1 gains nothing
    np.testing.assert_array_equal(increase, 0)
    _, increase = metrics.average_drop_increase(model, dim, maps["inverse"], classes=1)  # darker square: class 1 up
    np.testing.assert_array_equal(increase, 100)


def test_win_rate(toy, scene):
    model, _ = toy
    images, maps = scene
    assert metrics.win_rate(model, images, maps["mask"], maps["inverse"]) == 100
    assert metrics.win_rate(model, images, maps["mask"], maps["random"]) == 100
    assert metrics.win_rate(model, images, maps["random"], maps["mask"]) == 0
    assert metrics.win_rate(model, images, maps["mask"], maps["mask"]) == 50  # ties count half
    a = metrics.win_rate(model, images, maps["random"], maps["inverse"])
    assert a + metrics.win_rate(model, images, maps["inverse"], maps["random"]) == 100


def test_deletion_and_insertion_curves_by_hand(toy, scene):
    # mask first: step 1 already moves 256 pixels >= the 64 of the square, then nothing changes
    model, _ = toy
    images, maps = scene
    deletion, insertion, curves = metrics.deletion_insertion(
        model, images[:1], maps["mask"][:1], steps=4, deletion_baseline=0, insertion_baseline=0, return_curves=True
    )
    high, low = sigmoid(5), sigmoid(-5)
    np.testing.assert_allclose(curves.fraction, [0, 0.25, 0.5, 0.75, 1])
    np.testing.assert_allclose(curves.deletion[0], [high, low, low, low, low], rtol=1e-4)
    np.testing.assert_allclose(curves.insertion[0], [low, high, high, high, high], rtol=1e-4)
    np.testing.assert_allclose(deletion, 0.25 * (high + low) / 2 + 0.75 * low, rtol=1e-4)
    np.testing.assert_allclose(insertion, 0.25 * (high + low) / 2 + 0.75 * high, rtol=1e-4)


def test_deleting_the_evidence_first_beats_random_and_inverse_orders(toy, scene):
    model, _ = toy
    images, maps = scene
    auc = {name: metrics.deletion_insertion(model, images, m, steps=16) for name, m in maps.items()}  # grey, blur
    assert np.all(auc["mask"][0] < auc["random"][0]) and np.all(auc["random"][0] < auc["inverse"][0])
    assert np.all(auc["mask"][1] > auc["random"][1]) and np.all(auc["random"][1] > auc["inverse"][1])


def test_deletion_insertion_is_batch_independent_and_deterministic(toy, scene):
    model, _ = toy
    images, maps = scene
    a = metrics.deletion_insertion(model, images, maps["random"], steps=6, batch_size=1)
    b = metrics.deletion_insertion(model, images, maps["random"], steps=6, batch_size=9, progress=True)
    np.testing.assert_allclose(a, b, rtol=1e-6)


def test_pixel_order_descending_ties_row_major():
    m = np.array([[[0.5, 1.0], [0.5, 0.5]]])
    np.testing.assert_array_equal(metrics._pixel_ranks(m), [[[1, 0], [2, 3]]])


def test_blur_keeps_a_constant_image_and_smooths_an_edge():
    flat = np.full((1, 20, 20, 3), 90, np.uint8)
    np.testing.assert_allclose(metrics.blur(flat), 90, rtol=1e-5)
    edge = np.zeros((1, 20, 20, 3), np.float32)
    edge[:, :, 10:] = 255
    smooth = metrics.blur(edge, sigma=2)
    assert 0 < smooth[0, 5, 9, 0] < 255 and smooth[0, 5, 0, 0] < 10


def test_the_mask_wins_the_pointing_games_and_localisation(scene):
    _, maps = scene
    boxes = [[SQUARE]] * 4
    hits = {name: metrics.pointing_game(m, boxes, tolerance=2) for name, m in maps.items()}
    assert hits["mask"].all() and not hits["inverse"].any() and hits["random"].mean() < 1
    energy = {name: metrics.energy_pointing_game(m, boxes) for name, m in maps.items()}
    np.testing.assert_allclose(energy["mask"], 1)
    np.testing.assert_allclose(energy["inverse"], 0)
    assert np.all(energy["random"] < 0.2)  # about 64 / 1024 of a uniform map's mass
    ious = {name: metrics.localization(m, boxes) for name, m in maps.items()}
    np.testing.assert_allclose(ious["mask"], 1)
    assert np.all(ious["inverse"] < 0.1) and np.all(ious["random"] < 0.5)


# ---------------------------------------------------------------------------
# Pointing games, boxes and IoU by hand


def peak_at(row, col, size=20):
    m = np.zeros((1, size, size))
    m[0, row, col] = 1
    return m


def test_pointing_game_hit_miss_and_tolerance():
    assert metrics.pointing_game(peak_at(5, 5), [[(2, 2, 8, 8)]], tolerance=0)[0]
    assert not metrics.pointing_game(peak_at(5, 5), [[(10, 10, 15, 15)]], tolerance=0)[0]
    # nearest box pixel (10, 10) is sqrt(5^2 + 5^2) = 7.07 pixels away
    assert not metrics.pointing_game(peak_at(5, 5), [[(10, 10, 15, 15)]], tolerance=7)[0]
    assert metrics.pointing_game(peak_at(5, 5), [[(10, 10, 15, 15)]], tolerance=7.1)[0]
    # x1, y1 exclusive: the box (0, 0, 5, 5) ends at pixel (4, 4), sqrt(2) from the peak
    assert not metrics.pointing_game(peak_at(5, 5), [[(0, 0, 5, 5)]], tolerance=0)[0]
    assert metrics.pointing_game(peak_at(5, 5), [[(0, 0, 5, 5)]], tolerance=1.5)[0]
    assert not metrics.pointing_game(peak_at(5, 5), [[(0, 0, 5, 20)]], tolerance=0)[0]  # x1 exclusive
    assert metrics.pointing_game(peak_at(5, 5), [[(0, 0, 5, 20)]], tolerance=1)[0]
    assert not metrics.pointing_game(peak_at(5, 5), [[(0, 0, 20, 5)]], tolerance=0)[0]  # y1 exclusive
    assert metrics.pointing_game(peak_at(5, 5), [[(0, 0, 20, 5)]], tolerance=1)[0]
    assert not metrics.pointing_game(peak_at(5, 5), [[(0, 6, 20, 20)]], tolerance=0.5)[0]
    # any of several boxes; a batch; a constant map points nowhere
    hits = metrics.pointing_game(
        np.concatenate([peak_at(5, 5), peak_at(15, 2), np.zeros((1, 20, 20))]),
        [[(10, 10, 15, 15), (4, 4, 6, 6)], [(0, 0, 3, 3)], [(0, 0, 20, 20)]],
        tolerance=0,
    )
    np.testing.assert_array_equal(hits, [True, False, False])


def test_pointing_game_default_tolerance_is_15_pixels():
    assert metrics.pointing_game(peak_at(5, 20, size=40), [[(35, 0, 40, 10)]])[0]  # 15 pixels to x = 35
    assert not metrics.pointing_game(peak_at(5, 19, size=40), [[(35, 0, 40, 10)]])[0]  # 16


def test_energy_pointing_game_by_hand():
    m = np.arange(1, 17, dtype=np.float64).reshape(1, 4, 4)  # total 136
    np.testing.assert_allclose(metrics.energy_pointing_game(m, [[(0, 0, 2, 2)]]), [(1 + 2 + 5 + 6) / 136])
    # overlapping boxes count their union once: columns 0..2 of rows 0..1
    np.testing.assert_allclose(metrics.energy_pointing_game(m, [[(0, 0, 2, 2), (1, 0, 3, 2)]]), [24 / 136])
    np.testing.assert_allclose(metrics.energy_pointing_game(np.zeros((1, 4, 4)), [[(0, 0, 2, 2)]]), [0])


def test_box_from_map_takes_the_largest_region():
    m = np.full((16, 16), 0.05)
    m[2:5, 1:5] = 1.0  # 12 pixels
    m[10:12, 10:12] = 0.9  # 4 pixels, brighter than the threshold but smaller
    assert metrics.box_from_map(m) == (1, 2, 5, 5)
    assert metrics.box_from_map(m, threshold=0.0) == (0, 0, 16, 16)  # everything is one region
    m[5, 5] = m[6, 6] = 1.0  # diagonal neighbours join the region (8-connectivity)
    assert metrics.box_from_map(m) == (1, 2, 7, 7)
    assert metrics.box_from_map(np.zeros((8, 8))) == (0, 0, 0, 0)


def test_box_from_map_threshold():
    m = np.zeros((10, 10))
    m[4, 4] = 1.0
    m[4, 5:8] = 0.18  # above 15% of the maximum, below 20%
    assert metrics.box_from_map(m, 0.15) == (4, 4, 8, 5)
    assert metrics.box_from_map(m, 0.20) == (4, 4, 5, 5)


def test_iou_by_hand():
    assert metrics.iou((0, 0, 10, 10), (5, 5, 15, 15)) == pytest.approx(25 / 175)
    assert metrics.iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1
    assert metrics.iou((0, 0, 10, 10), (10, 0, 20, 10)) == 0  # touching, x1 exclusive
    assert metrics.iou((0, 0, 0, 0), (0, 0, 0, 0)) == 0


def test_localization_is_the_best_iou_over_the_boxes():
    m = np.zeros((1, 16, 16))
    m[0, 2:6, 2:6] = 1  # box (2, 2, 6, 6)
    ious = metrics.localization(m, [[(8, 8, 12, 12), (2, 2, 6, 10), (2, 2, 6, 6)]])
    np.testing.assert_allclose(ious, [1.0])
    np.testing.assert_allclose(metrics.localization(m, [[(2, 2, 6, 10)]]), [0.5])


# ---------------------------------------------------------------------------
# The table


def test_results_table_with_reference_maps(toy, scene):
    model, _ = toy
    images, _ = scene
    rows = metrics.evaluate(model, images, methods=("random", "centre"), boxes=[[SQUARE]] * 4, steps=4)
    assert [row["method"] for row in rows] == ["random", "centre"]
    assert sum(row["win"] for row in rows) == pytest.approx(100)
    text = metrics.format_table(rows)
    assert "Avg Drop % ↓" in text and "Insertion ↑" in text and "IoU ↑" in text and len(text.splitlines()) == 3
    no_boxes = metrics.results_table(model, images, methods=("random",), steps=2)
    assert "Pointing" not in no_boxes and "random" in no_boxes


def test_evaluate_passes_each_method_its_options(toy, scene, monkeypatch):
    model, _ = toy
    images, maps = scene
    calls = {}

    def explain(model, x, method, classes, layer, **options):
        calls[method] = options
        return maps["mask"] if method == "score_cam" else maps["inverse"]

    monkeypatch.setattr(metrics, "explain", explain)
    rows = metrics.evaluate(model, images, ("grad_cam", "score_cam"), classes=[0] * 4, steps=2,
                            options={"score_cam": {"channels": 8}})
    assert calls == {"grad_cam": {}, "score_cam": {"channels": 8}}
    assert [row["win"] for row in rows] == [0, 100]  # the mask keeps the square: the smaller fall
    with pytest.raises(ValueError, match="not among the methods"):
        metrics.evaluate(model, images, ("grad_cam",), options={"score_cam": {"channels": 8}})


def test_titles_keep_two_significant_digits_of_a_small_probability():
    assert helpers.title("grad_cam++", 967, 0.9512) == "Grad-CAM++: espresso (0.95)"
    assert helpers.title("grad_cam", 339, 0.0041).endswith("(0.0041)")
    assert helpers.title("cam", 5000) == "CAM: class 5000"


# ---------------------------------------------------------------------------
# The real model on real photos


@pytest.fixture(scope="module")
def photos(lite0):
    """Photos whose top-1 object Grad-CAM finds (on the eagle and the dog, Average Drop
    prefers the inverse map: it rewards maps that keep more of the image)."""
    images = np.stack([helpers.example(name) for name in ("coffee", "giraffe", "rocket")])
    e = helpers.explanation(lite0, images, "grad_cam")
    return images, e.maps, e.classes


def test_grad_cam_beats_its_inverse_on_average_drop(lite0, photos):
    images, maps, classes = photos
    drop, _ = metrics.average_drop_increase(lite0, images, maps, classes)
    drop_inverse, _ = metrics.average_drop_increase(lite0, images, 1 - maps, classes)
    assert np.all(drop + 5 < drop_inverse), (drop, drop_inverse)


def test_grad_cam_beats_its_inverse_on_deletion_and_insertion(lite0, photos):
    images, maps, classes = photos
    deletion, insertion = metrics.deletion_insertion(lite0, images, maps, classes, steps=8, batch_size=18)
    deletion_inv, insertion_inv = metrics.deletion_insertion(lite0, images, 1 - maps, classes, steps=8, batch_size=18)
    assert np.all(deletion < deletion_inv), (deletion, deletion_inv)
    assert np.all(insertion > insertion_inv), (insertion, insertion_inv)


def test_weight_blocks_of_efficientnet_lite(lite0):
    names = [name for name, _ in metrics.weight_blocks(lite0)]
    assert names[:4] == ["predictions", "top", "block7a", "block6d"] and names[-2:] == ["block1a", "stem"]
    assert len(names) == 19
    assert [layer.name for layer in dict(metrics.weight_blocks(lite0))["top"]] == ["top_bn", "top_conv"]
    assert metrics._block_name("block_13_expand") == "block_13"  # keras.applications MobileNetV2
    assert metrics._block_name("conv_pw_13_relu") == "conv_pw_13"  # MobileNet


def test_explain_sees_weights_assigned_in_place(lite0, photos):
    """The fast path of sanity_check: helpers.explain's cached compiled pass reads the
    variables, so an in-place assign is seen. Swapping two columns of the classifier
    swaps the two classes' Grad-CAM maps."""
    images, maps, classes = photos
    kernel = lite0.get_layer("predictions").kernel
    saved = kernel.numpy()
    other = 0 if classes[0] != 0 else 1
    before = helpers.explain(lite0, images[:1], "grad_cam", classes=[other])
    swapped = saved.copy()
    swapped[:, [classes[0], other]] = saved[:, [other, classes[0]]]
    try:
        kernel.assign(swapped)
        after = helpers.explain(lite0, images[:1], "grad_cam", classes=classes[:1])
    finally:
        kernel.assign(saved)
    np.testing.assert_allclose(after, before, atol=1e-5)
    np.testing.assert_allclose(helpers.explain(lite0, images, "grad_cam", classes=classes), maps, atol=1e-6)


def test_sanity_check_grad_cam_changes_guided_backprop_does_not(lite0, photos):
    """Adebayo et al.'s finding: Grad-CAM depends on the top of the network, Guided
    Backpropagation barely does (it reconstructs the image)."""
    images, maps, classes = photos
    weights = [w.copy() for w in lite0.get_weights()]
    result = metrics.sanity_check(lite0, images[:2], classes[:2], methods=["grad_cam", "guided_backprop"], blocks=10)
    assert result.blocks[:2] == ["predictions", "top"] and len(result.blocks) == 10
    rho = result.spearman["grad_cam"].mean(axis=1)  # (B,)
    assert rho.shape == (10,) and np.all(rho < 0.8) and rho[-1] < 0.5, rho  # half the blocks: a different map
    rho_guided = result.spearman["guided_backprop"].mean(axis=1)  # (B,)
    assert rho_guided[1] > 0.9 and rho_guided[-1] > rho[-1] + 0.3, rho_guided
    assert all(np.array_equal(a, b) for a, b in zip(weights, lite0.get_weights()))  # the model is unchanged
    np.testing.assert_allclose(helpers.explain(lite0, images, "grad_cam", classes=classes), maps, atol=1e-6)
    assert "predictions" in result.table() and "guided_backprop" in result.table()


def test_sanity_check_restores_the_weights_after_an_error(lite0, photos, monkeypatch):
    images, _, classes = photos
    weights = [w.copy() for w in lite0.get_weights()]
    explain, calls = metrics.explain, []

    def failing_explain(*args, **kwargs):  # fails on the first map of a randomised model
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("interrupted")
        return explain(*args, **kwargs)

    monkeypatch.setattr(metrics, "explain", failing_explain)
    with pytest.raises(RuntimeError, match="interrupted"):
        metrics.sanity_check(lite0, images[:1], classes[:1], blocks=3)
    assert len(calls) == 2
    assert all(np.array_equal(a, b) for a, b in zip(weights, lite0.get_weights()))


# ---------------------------------------------------------------------------
# Bad input: a clear ValueError that says what to do


def test_bad_input(toy, scene):
    model, _ = toy
    images, maps = scene
    m = maps["mask"]
    with pytest.raises(ValueError, match="upsample the maps"):
        metrics.average_drop_increase(model, images, m[:, :16, :16])
    with pytest.raises(ValueError, match="one map per image"):
        metrics.deletion_insertion(model, images, m[:2])
    with pytest.raises(ValueError, match="empty"):
        metrics.deletion_insertion(model, images[:0], m[:0])
    with pytest.raises(ValueError, match="do not fit 4 images"):
        metrics.average_drop_increase(model, images, m, classes=[0, 1])
    with pytest.raises(ValueError, match=r"class indices must lie in 0\.\.1"):
        metrics.average_drop_increase(model, images, m, classes=[0, 0, 0, 2])
    nan = m.copy()
    nan[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        metrics.deletion_insertion(model, images, nan)
    with pytest.raises(ValueError, match="NaN"):
        metrics.pointing_game(nan, [[SQUARE]] * 4)
    with pytest.raises(ValueError, match=r"lie in \[0, 1\]"):
        metrics.average_drop_increase(model, images, 2 * m)
    with pytest.raises(ValueError, match="0..255"):
        metrics.average_drop_increase(model, images / 255.0 - 0.5, m)
    with pytest.raises(ValueError, match="steps"):
        metrics.deletion_insertion(model, images, m, steps=0)
    with pytest.raises(ValueError, match="baseline"):
        metrics.deletion_insertion(model, images, m, insertion_baseline="noise")
    with pytest.raises(ValueError, match="guided gradients"):
        metrics.deletion_insertion(model, images, np.zeros((4, S, S, 3)))


def test_bad_boxes():
    m = np.zeros((2, 20, 20))
    with pytest.raises(ValueError, match="outside the 20x20 map"):
        metrics.pointing_game(m, [[(0, 0, 5, 5)], [(10, 10, 25, 15)]])
    with pytest.raises(ValueError, match="outside"):
        metrics.energy_pointing_game(m, [[(-1, 0, 5, 5)], [(0, 0, 5, 5)]])
    with pytest.raises(ValueError, match="empty"):
        metrics.localization(m, [[(5, 5, 5, 9)], [(0, 0, 5, 5)]])  # x0 == x1
    with pytest.raises(ValueError, match="2 maps"):
        metrics.pointing_game(m, [[(0, 0, 5, 5)]])
    with pytest.raises(ValueError, match="has no box"):
        metrics.pointing_game(m, [[(0, 0, 5, 5)], []])
    with pytest.raises(ValueError, match="non-negative"):
        metrics.energy_pointing_game(-np.ones((1, 20, 20)), [[(0, 0, 5, 5)]])
    with pytest.raises(ValueError, match="one map"):
        metrics.box_from_map(m)


def test_bad_sanity_check_blocks(lite0, photos):
    images, _, classes = photos
    with pytest.raises(ValueError, match="weight_blocks"):
        metrics.sanity_check(lite0, images[:1], classes[:1], blocks=["predictions", "block9z"])
    with pytest.raises(ValueError, match=r"1\.\.19"):
        metrics.sanity_check(lite0, images[:1], classes[:1], blocks=0)
    with pytest.raises(ValueError, match="list of method names"):
        metrics.sanity_check(lite0, images[:1], classes[:1], methods="grad_cam")
