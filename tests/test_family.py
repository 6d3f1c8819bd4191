"""The rest of the CAM family: hand-computed weights, identities on a pooling + Dense head,
Score-CAM worked out by hand, Eigen-CAM's sign, Ablation-CAM against its closed form,
and every kind of Keras model (subclassed, several inputs or outputs, a Dense layer,
a plain function)."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import helpers

# the 2 x 2 x 2 layer of test_cam.py: channel 0: A = [[1, 0], [0, 1]], G = 1 everywhere;
# channel 1: A = 1 everywhere, G = [[1, -1], [0, 2]]
A = np.array([[[1, 1], [0, 1]], [[0, 1], [1, 1]]], np.float32)[None]  # (1, 2, 2, 2)
G = np.array([[[1, 1], [1, -1]], [[1, 0], [1, 2]]], np.float32)[None]


def the_map(name, relu=True):
    return helpers.weighted_map(A, helpers.WEIGHTS[name](A, G, None), relu=relu).numpy()[0]


def test_layer_cam_by_hand():
    # sum_k ReLU(g_k) A_k: (0,0) 1 + 1; (0,1) 0 + 0 (g = -1); (1,0) 0 + 0 (g = 0); (1,1) 1 + 2
    np.testing.assert_allclose(the_map("layer_cam"), [[2, 0], [0, 3]])


def test_hirescam_by_hand():
    # sum_k g_k A_k before the ReLU: (0,1) is 0 * 1 + (-1) * 1 = -1
    np.testing.assert_allclose(the_map("hirescam", relu=False), [[2, -1], [0, 3]])
    np.testing.assert_allclose(the_map("hirescam"), [[2, 0], [0, 3]])


def test_xgrad_cam_by_hand_and_a_dead_channel():
    # channel 0: sum A g = 2, sum A = 2 -> 1; channel 1: sum A g = 1 - 1 + 0 + 2 = 2, sum A = 4 -> 1/2
    np.testing.assert_allclose(helpers.xgrad_cam_weights(A, G, None).numpy(), [[1.0, 0.5]])
    dead = np.concatenate([A, np.zeros_like(A[..., :1])], axis=-1)  # a channel that is zero everywhere
    w = helpers.xgrad_cam_weights(dead, np.ones_like(dead), None).numpy()
    assert np.isfinite(w).all() and w[0, 2] == 0


def test_eigen_cam_by_hand():
    # M (4 x 2) rows [1,1], [0,1], [0,1], [1,1]; M^T M = [[2, 2], [2, 4]], top eigenvalue 3 + sqrt 5,
    # eigenvector (2, 1 + sqrt 5) normalised; the map is M v_1, positive like sum_k A_k
    v = np.array([2, 1 + np.sqrt(5)]) / np.hypot(2, 1 + np.sqrt(5))
    expected = (A[0] @ v).astype(np.float32)
    np.testing.assert_allclose(helpers.weighted_map(A, helpers.eigen_cam_weights(A, None, None)).numpy()[0],
                               expected, rtol=1e-5)


def test_eigen_cam_does_not_depend_on_the_sign_of_the_singular_vector(monkeypatch):
    rng = np.random.default_rng(0)
    a = rng.uniform(0, 1, (2, 5, 5, 6)).astype(np.float32)
    before = helpers.eigen_cam_weights(a, None, None).numpy()
    svd = tf.linalg.svd
    monkeypatch.setattr(tf.linalg, "svd", lambda *args, **kwargs: [-t if i else t for i, t in
                                                                      enumerate(svd(*args, **kwargs))])
    after = helpers.eigen_cam_weights(a, None, None).numpy()
    np.testing.assert_allclose(after, before, rtol=1e-5)
    assert (np.einsum("nhwc,nc->nhw", a, after) > 0).all()  # agrees with sum_k A_k >= 0


def test_ablation_and_score_weights_by_hand():
    np.testing.assert_allclose(helpers.ablation_cam_weights(np.array([[4.0]]), np.array([[3.0, 5.0, 4.0]])).numpy(),
                               [[0.25, -0.25, 0.0]])
    assert helpers.ablation_cam_weights(np.array([[0.0]]), np.array([[1.0]])).numpy()[0, 0] == 0  # no NaN


def test_layer_cam_fusion_by_hand():
    deep = np.array([[0.0, 1.0], [0.5, 0.2]], np.float32)
    shallow = np.array([[1.0, 0.1], [0.2, 0.0]], np.float32)
    fused = helpers.fuse_layer_maps(tf.constant(np.stack([deep, shallow]))).numpy()
    expected = np.maximum(deep, np.tanh(2 * shallow))
    np.testing.assert_allclose(fused, expected / expected.max(), rtol=1e-6)


# ---------------------------------------------------------------------------
# Score-CAM on a model small enough to work out by hand


def tiny_score_model():
    """pixels (2, 2, 1) -> feat: A_0 = x, A_1 = 5 - x -> GAP -> identity Dense (2 logits)."""
    x = keras.Input((2, 2, 1))
    feat = keras.layers.Conv2D(2, 1, name="feat")
    a = feat(x)
    y = keras.layers.Dense(2, use_bias=False, name="logits")(keras.layers.GlobalAveragePooling2D()(a))
    model = keras.Model(x, y)
    feat.set_weights([np.array([[[[1.0, -1.0]]]], np.float32), np.array([0.0, 5.0], np.float32)])
    model.get_layer("logits").set_weights([np.eye(2, dtype=np.float32)])
    return model


def test_score_cam_by_hand():
    x = np.array([[1, 2], [3, 4]], np.float32)
    # H_0 = min-max of x, H_1 = min-max of 5 - x; each masked input X * H_k goes through the model
    h0, h1 = (x - 1) / 3, (4 - x) / 3
    probabilities = []
    for h in (h0, h1):
        gap = np.array([(x * h).mean(), 5 - (x * h).mean()])
        probabilities.append(np.exp(gap[0]) / np.exp(gap).sum())  # softmax probability of class 0
    expected = np.maximum(probabilities[0] * x + probabilities[1] * (5 - x), 0)
    maps = helpers.explain(tiny_score_model(), x[..., None], "score_cam", classes=0, layer="feat")
    np.testing.assert_allclose(maps, expected / expected.max(), rtol=1e-5)
    # Faster Score-CAM with one channel keeps the channel of largest spread (both equal here: the first)
    one = helpers.explain(tiny_score_model(), x[..., None], "score_cam", classes=0, layer="feat", channels=1)
    np.testing.assert_allclose(one, x / 4, rtol=1e-5)


def test_score_cam_skips_a_constant_channel_and_cancels():
    model = tiny_score_model()
    model.get_layer("feat").set_weights([np.array([[[[1.0, 0.0]]]], np.float32), np.array([0.0, 5.0], np.float32)])
    x = np.array([[1, 2], [3, 4]], np.float32)[..., None]
    np.testing.assert_allclose(helpers.explain(model, x, "score_cam", classes=0, layer="feat"), x[..., 0] / 4,
                               rtol=1e-5)
    with pytest.raises(helpers.Cancelled):
        helpers.explain(model, x, "score_cam", classes=0, layer="feat", batch_size=1, progress=lambda done, n: False)


# ---------------------------------------------------------------------------
# Identities on a real network (EfficientNet-Lite0: top_activation -> GAP -> Dense)


@pytest.fixture(scope="module")
def photos():
    return np.stack([helpers.example(name) for name in ("coffee", "dog")])


def test_gradient_methods_equal_cam_on_gap_dense_head(lite0, photos):
    cam = helpers.explain(lite0, photos, "cam")
    for method in ("grad_cam", "hirescam", "xgrad_cam"):
        np.testing.assert_allclose(helpers.explain(lite0, photos, method), cam, atol=2e-5, err_msg=method)


def test_layer_cam_and_grad_cam_pp_variants_on_gap_dense_head(lite0, photos):
    e = helpers.explanation(lite0, photos, "cam")
    top = keras.Model(lite0.inputs, lite0.get_layer("top_activation").output)(photos.astype("float32")).numpy()
    kernel = lite0.get_layer("predictions").kernel.numpy()  # (1280, 1000)
    w = np.maximum(kernel[:, e.classes].T, 0)  # (N, c)
    expected = helpers.upsample_and_scale(helpers.weighted_map(top, w), (224, 224)).numpy()
    for method in ("layer_cam", "grad_cam++", "grad_cam++_all"):  # the two normalised forms agree here
        np.testing.assert_allclose(helpers.explain(lite0, photos, method), expected, atol=2e-5, err_msg=method)
    # unnormalised alpha = 1 / (2 + sum_ij A_k g_k) differs from channel to channel: not the same map
    assert np.abs(helpers.explain(lite0, photos, "grad_cam++_raw") - expected).max() > 1e-3


def test_ablation_cam_is_its_closed_form_on_gap_dense_head(lite0, photos):
    # y_c^k = y_c - W_ck mean(A_k), so w_k = W_ck mean(A_k) / y_c
    e = helpers.explanation(lite0, photos, "ablation_cam", progress=False)
    top = keras.Model(lite0.inputs, lite0.get_layer("top_activation").output)(photos.astype("float32")).numpy()
    kernel = lite0.get_layer("predictions").kernel.numpy()
    y = e.logits[np.arange(len(photos)), e.classes]
    w = kernel[:, e.classes].T * top.mean(axis=(1, 2)) / y[:, None]
    expected = helpers.upsample_and_scale(helpers.weighted_map(top, w), (224, 224)).numpy()
    np.testing.assert_allclose(e.maps, expected, atol=1e-4)


@pytest.mark.parametrize("head", ["linear", "two dense layers"])
def test_ablation_cam_shortcuts_equal_ablating_in_the_whole_network(head, rng, monkeypatch):
    # the linear head's K columns, the cut-out head, and the whole network run with A_k zeroed agree
    from camlib import perturbation

    keras.utils.set_random_seed(3)
    x = inputs = keras.Input((32, 32, 3))
    x = keras.layers.Conv2D(8, 3, activation="relu")(x)
    x = keras.layers.Conv2D(16, 3, activation="relu", name="target")(x)
    x = keras.layers.Dropout(0.5)(keras.layers.GlobalAveragePooling2D()(x))
    if head != "linear":
        x = keras.layers.Dense(12, activation="relu", bias_initializer="random_normal")(x)
    model = keras.Model(inputs, keras.layers.Dense(10, activation="softmax", bias_initializer="random_normal")(x))
    images = rng.uniform(0, 1, (2, 32, 32, 3)).astype(np.float32)

    def ablation():
        model.__dict__.pop("_cam_perturbation", None)
        return helpers.explanation(model, images, "ablation_cam", classes=[[3, 1], [4, 2]], signed=True,
                                   progress=False).maps

    shortcut = ablation()
    assert (perturbation.linear_head(model, model.get_layer("target"), 0) is None) == (head != "linear")
    monkeypatch.setattr(perturbation, "_head", lambda *a: None)
    whole = ablation()
    assert shortcut.shape == (2, 2, 32, 32) and np.abs(shortcut).max() == 1
    np.testing.assert_allclose(shortcut, whole, atol=1e-4)


def test_top_k_classes_are_chosen_in_the_same_pass(lite0, photos):
    ranked = np.argsort(-lite0(photos.astype("float32"), training=False).numpy(), axis=1, kind="stable")[:, :3]
    for method in ("grad_cam", "guided_grad_cam", "ablation_cam"):
        options = {"progress": False} if method == "ablation_cam" else {}
        e = helpers.explanation(lite0, photos, method, top=3, **options)
        np.testing.assert_array_equal(e.classes, ranked, err_msg=method)
        np.testing.assert_allclose(e.maps, helpers.explain(lite0, photos, method, ranked, **options), atol=1e-6,
                                   err_msg=method)
    with pytest.raises(ValueError, match="not both"):
        helpers.explain(lite0, photos, classes=[1, 2], top=2)
    with pytest.raises(ValueError, match="1..1000"):
        helpers.explain(lite0, photos, top=0)


def test_eigen_cam_is_class_agnostic(lite0, photos):
    one = helpers.explain(lite0, photos, "eigen_cam", classes=[1, 2])
    np.testing.assert_array_equal(one, helpers.explain(lite0, photos, "eigen_cam", classes=[500, 900]))
    assert one.max() == 1 and one.mean() > 0.05


def test_the_variants_differ_at_an_intermediate_layer(lite0, photos):
    maps = {m: helpers.explain(lite0, photos, m, layer="block5c_add")
            for m in ("grad_cam++", "grad_cam++_all", "grad_cam++_raw")}
    r = np.corrcoef(maps["grad_cam++"].ravel(), maps["grad_cam++_all"].ravel())[0, 1]
    assert r < 0.99  # they agree only where the gradient is constant over positions


def test_switching_method_and_classes_never_retraces(lite0, photos):
    helpers.explain(lite0, photos, "grad_cam")
    (run,) = [p for k, p in lite0._cam_passes.items() if k[:2] == (("top_activation",), False)]
    traces = run.experimental_get_tracing_count()
    for method in helpers.MAP_METHODS:
        helpers.explain(lite0, photos[:1], method, classes=[[1, 2, 3]])
        helpers.explain(lite0, photos, method, classes=[5, 6], signed=True)
    assert run.experimental_get_tracing_count() == traces


def test_slow_methods_are_batch_independent(lite0, photos):
    for method, options in (("score_cam", {"channels": 32}), ("ablation_cam", {})):
        batch = helpers.explain(lite0, photos, method, classes=[967, 444], progress=False, **options)
        for i, c in enumerate([967, 444]):
            one = helpers.explain(lite0, photos[i], method, classes=c, progress=False, **options)
            np.testing.assert_allclose(one, batch[i], atol=1e-3, err_msg=method)


def test_layer_cam_fusion_through_the_model(lite0, photos):
    layers = ["block4c_add", "block5c_add", "top_activation"]
    fused = helpers.fuse_layers(lite0, photos, layers)
    maps = helpers.compare_layers(lite0, photos, layers, "layer_cam")
    expected = np.maximum(maps[2], np.tanh(2 * np.maximum(maps[0], maps[1])))
    expected /= expected.max(axis=(1, 2), keepdims=True)
    np.testing.assert_allclose(fused, expected, atol=1e-5)


# ---------------------------------------------------------------------------
# Every kind of Keras model


def small_cnn_layers():
    return [keras.layers.Conv2D(4, 3, activation="relu", name="conv"), keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(3, name="head")]


class Sub(keras.Model):
    """A subclassed model: no symbolic graph, layers called in `call`."""

    def __init__(self):
        super().__init__()
        self.conv, self.pool, self.head = small_cnn_layers()

    def call(self, x):
        return self.head(self.pool(self.conv(x)))


def test_subclassed_model(rng):
    model = Sub()
    x = rng.uniform(0, 255, (2, 16, 16, 3)).astype(np.float32)
    model(x)
    reference = keras.Sequential([keras.Input((16, 16, 3)), *small_cnn_layers()])
    reference.set_weights(model.get_weights())
    assert helpers.target_layer(model) == "conv"
    for method in ("grad_cam", "grad_cam++", "layer_cam", "eigen_cam", "guided_grad_cam", "ablation_cam"):
        maps = helpers.explain(model, x, method, layer="conv", classes=[0, 1])
        np.testing.assert_allclose(maps, helpers.explain(reference, x, method, layer="conv", classes=[0, 1]),
                                   atol=1e-5, err_msg=method)
    np.testing.assert_allclose(helpers.explain(model, x), helpers.explain(reference, x), atol=1e-5)  # automatic layer
    with pytest.raises(ValueError, match="grad_cam"):
        helpers.explain(model, x, "cam", layer="conv")


def two_input_model():
    image, vector = keras.Input((16, 16, 3), name="image"), keras.Input((5,), name="vector")
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 3, activation="relu", name="conv")(image))
    x = keras.layers.Concatenate()([x, keras.layers.Dense(4, name="meta")(vector)])
    return keras.Model([image, vector], keras.layers.Dense(3, name="head")(x))


def test_two_inputs(rng):
    model = two_input_model()
    x, v = rng.uniform(0, 255, (2, 16, 16, 3)), rng.normal(size=(2, 5))
    assert helpers.target_layer(model) == "conv"
    maps = helpers.explain(model, [x, v], "grad_cam")
    assert maps.shape == (2, 16, 16) and np.isfinite(maps).all()
    np.testing.assert_array_equal(maps, helpers.explain(model, {"image": x, "vector": v}, "grad_cam"))
    np.testing.assert_allclose(helpers.explain(model, [x[0], v[0]], "grad_cam"), maps[0], atol=1e-6)
    assert helpers.explain(model, [x, v], "score_cam", progress=False).shape == (2, 16, 16)
    with pytest.raises(ValueError, match="2 inputs"):
        helpers.explain(model, x)


def test_two_outputs(rng):
    image = keras.Input((16, 16, 3))
    features = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 3, activation="relu", name="conv")(image))
    model = keras.Model(image, [keras.layers.Dense(3, name="kind")(features),
                                keras.layers.Dense(7, activation="softmax", name="colour")(features)])
    x = rng.uniform(0, 255, (2, 16, 16, 3))
    with pytest.raises(ValueError, match="say which with output="):
        helpers.explain(model, x)
    by_name = helpers.explanation(model, x, "cam", output="colour", classes=6)
    assert by_name.logits.shape == (2, 7) and by_name.maps.shape == (2, 16, 16)
    np.testing.assert_array_equal(by_name.maps, helpers.explain(model, x, "cam", output=1, classes=6))
    np.testing.assert_allclose(helpers.explain(model, x, "grad_cam", output=1, classes=6), by_name.maps, atol=1e-5)
    with pytest.raises(ValueError, match="no output 'size'"):
        helpers.explain(model, x, output="size")


def test_a_layer_without_a_spatial_map(lite0):
    with pytest.raises(ValueError, match="no spatial map.*top_activation"):
        helpers.explain(lite0, np.zeros((224, 224, 3)), layer="predictions")


def test_a_function_is_not_a_model():
    with pytest.raises(TypeError, match="a Keras model is expected"):
        helpers.explain(lambda x: x, np.zeros((8, 8, 3)))
