"""The CAM family: hand-computed weights, identities, guided backprop by hand, any Keras CNN."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import helpers

MAP_METHODS = ["cam", "grad_cam", "grad_cam++", "counterfactual"]

# ---------------------------------------------------------------------------
# Hand-computed weights on a 2 x 2 x 2 layer

# channel 0: A = [[1, 0], [0, 1]], G = 1 everywhere
# channel 1: A = 1 everywhere,     G = [[1, -1], [0, 2]]
A = np.array([[[1, 1], [0, 1]], [[0, 1], [1, 1]]], np.float32)[None]  # (1, 2, 2, 2)
G = np.array([[[1, 1], [1, -1]], [[1, 0], [1, 2]]], np.float32)[None]


def test_grad_cam_weights_are_the_mean_gradient():
    w = helpers.grad_cam_weights(A, G, None).numpy()
    np.testing.assert_allclose(w, [[1.0, 0.5]])
    np.testing.assert_allclose(helpers.counterfactual_weights(A, G, None).numpy(), [[-1.0, -0.5]])


def test_grad_cam_pp_weights_by_hand():
    # channel 0: sum A = 2, alpha = 1 / (2 + 2) = 1/4 everywhere, all g > 0: normalised 1/4; w = 4 * 1/4 * 1 = 1
    # channel 1: sum A = 4, alpha = g^2 / (2 g^2 + 4 g^3):
    #   g = 1: 1/6; g = -1: -1/2; g = 0: 0 (0/0 -> 0); g = 2: 4/40 = 1/10
    #   the authors' final code normalises over the positions with g > 0: 1/6 + 1/10 = 4/15,
    #   so 5/8 and 3/8; w = 5/8 * 1 + 3/8 * 2 = 11/8
    w = helpers.grad_cam_pp_weights(A, G, None).numpy()
    np.testing.assert_allclose(w, [[1.0, 11 / 8]], rtol=1e-6)


def test_grad_cam_pp_variants_by_hand():
    # all positions (first commit, tf-keras-vis): sum -7/30, normalised -5/7, 15/7, 0, 3/7... -> w = -11/7:
    #   a negative weight for a channel whose gradient is mostly positive
    np.testing.assert_allclose(helpers.grad_cam_pp_all_weights(A, G, None).numpy(), [[1.0, -11 / 7]], rtol=1e-6)
    # no normalisation (pytorch-grad-cam): channel 0: 4 * 1/4 = 1; channel 1: 1/6 * 1 + 1/10 * 2 = 11/30
    np.testing.assert_allclose(helpers.grad_cam_pp_raw_weights(A, G, None).numpy(), [[1.0, 11 / 30]], rtol=1e-6)
    # xplique: mean A in the denominator, spatial mean of alpha ReLU(g)
    #   channel 0: mean A = 1/2, alpha = 1 / (2 + 1/2) = 2/5, w = 2/5
    #   channel 1: mean A = 1, alpha = g^2 / (2 g^2 + g^3): 1/3, 1, 0, 1/4; times ReLU(g): 1/3, 0, 0, 1/2 -> 5/24
    np.testing.assert_allclose(helpers.grad_cam_pp_mean_weights(A, G, None).numpy(), [[0.4, 5 / 24]], rtol=1e-6)


def test_cam_weights_are_the_classifier_column():
    column = np.array([[0.3, -2.0]], np.float32)
    np.testing.assert_array_equal(helpers.cam_weights(A, G, column), column)


def test_weighted_map_and_scaling_by_hand():
    m = helpers.weighted_map(A, np.array([[1.0, 0.5]], np.float32)).numpy()
    np.testing.assert_allclose(m, [[[1.5, 0.5], [0.5, 1.5]]])
    np.testing.assert_allclose(
        helpers.weighted_map(A, np.array([[-1.0, 0.5]], np.float32)).numpy(), [[[0, 0.5], [0.5, 0]]]
    )
    scaled = helpers.upsample_and_scale(tf.constant(m), (2, 2)).numpy()
    np.testing.assert_allclose(scaled, m / 1.5, rtol=1e-6)


def test_blank_map_stays_zero_not_nan():
    zero = helpers.upsample_and_scale(tf.zeros((2, 7, 7)), (224, 224)).numpy()
    assert zero.shape == (2, 224, 224) and np.all(zero == 0)
    w = helpers.grad_cam_pp_weights(np.zeros((1, 3, 3, 4), np.float32), np.zeros((1, 3, 3, 4), np.float32), None)
    assert np.all(np.isfinite(w)) and np.all(w.numpy() == 0)


# ---------------------------------------------------------------------------
# Identities on a real network (EfficientNet-Lite0: top_activation -> GAP -> Dense)


@pytest.fixture(scope="module")
def photos():
    return np.stack([helpers.example(name) for name in ("coffee", "dog", "giraffe")])


def test_cam_equals_grad_cam_on_gap_dense_head(lite0, photos):
    cam = helpers.explain(lite0, photos, "cam")
    grad_cam = helpers.explain(lite0, photos, "grad_cam")
    np.testing.assert_allclose(cam, grad_cam, atol=1e-5)


def test_grad_cam_pp_is_relu_weighted_cam_on_gap_dense_head(lite0, photos):
    e = helpers.explanation(lite0, photos, "grad_cam++")
    A = keras.Model(lite0.input, lite0.get_layer("top_activation").output)(photos.astype("float32")).numpy()
    kernel = lite0.get_layer("predictions").kernel.numpy()  # (1280, 1000)
    w = np.maximum(kernel[:, e.classes].T, 0)  # (N, 1280)
    expected = np.maximum(np.einsum("nhwc,nc->nhw", A, w), 0)
    expected = helpers.upsample_and_scale(tf.constant(expected), (224, 224)).numpy()
    np.testing.assert_allclose(e.maps, expected, atol=1e-5)


def test_counterfactual_and_grad_cam_never_both_positive(lite0, photos):
    layer = lite0.get_layer("top_activation")
    A = keras.Model(lite0.input, layer.output)
    x = tf.constant(photos.astype("float32"))
    with tf.GradientTape() as tape:
        a = A(x)
        tape.watch(a)
        logits = lite0.get_layer("predictions")(lite0.get_layer("avg_pool")(a))
        score = tf.reduce_sum(tf.gather(logits, [967, 249, 340], batch_dims=0, axis=1) * tf.eye(3))
    g = tape.gradient(score, a)
    positive = helpers.weighted_map(a, helpers.grad_cam_weights(a, g, None)).numpy()
    negative = helpers.weighted_map(a, helpers.counterfactual_weights(a, g, None)).numpy()
    assert positive.max() > 0 and negative.max() > 0
    assert not np.any((positive > 0) & (negative > 0))


def test_counterfactual_disjoint_from_grad_cam_through_explain(rng):
    # no down-sampling, so explain's maps are the maps before upsampling
    model = keras.Sequential(
        [
            keras.Input((6, 6, 3)),
            keras.layers.Conv2D(8, 3, padding="same", activation="relu"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(4),
        ]
    )
    x = rng.uniform(0, 255, (3, 6, 6, 3))
    for c in range(4):
        gc = helpers.explain(model, x, "grad_cam", classes=c)
        cf = helpers.explain(model, x, "counterfactual", classes=c)
        assert not np.any((gc > 0) & (cf > 0))


# ---------------------------------------------------------------------------
# Guided Backpropagation by hand, for each way Keras writes a ReLU


def relu_forms():
    return {
        "fused relu": lambda: [keras.layers.Conv2D(4, 1, activation="relu")],
        "fused relu6": lambda: [keras.layers.Conv2D(4, 1, activation="relu6")],
        "Activation(relu)": lambda: [keras.layers.Conv2D(4, 1), keras.layers.Activation("relu")],
        "ReLU()": lambda: [keras.layers.Conv2D(4, 1), keras.layers.ReLU()],
        "ReLU(max_value=6)": lambda: [keras.layers.Conv2D(4, 1), keras.layers.ReLU(max_value=6.0)],
    }


def tiny_relu_model(form: str, seed: int = 0) -> keras.Model:
    """x (2, 2, 3) -> 1x1 conv + ReLU -> 1x1 conv + ReLU -> GAP -> Dense(2), hand-set weights."""
    rng = np.random.default_rng(seed)
    model = keras.Sequential(
        [
            keras.Input((2, 2, 3)),
            *relu_forms()[form](),
            *relu_forms()[form](),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(2),
        ]
    )
    for layer in model.layers:
        if layer.weights:
            layer.set_weights([rng.normal(0, 2.5, w.shape).astype("float32") for w in layer.get_weights()])
    return model


def guided_by_hand(model: keras.Model, x: np.ndarray, c: int, max_value) -> np.ndarray:
    """d logit_c / dx with the guided rule, computed with numpy from the weights."""
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    (W1, b1), (W2, b2) = [(layer.kernel.numpy()[0, 0], layer.bias.numpy()) for layer in convs]
    Wd = model.layers[-1].kernel.numpy()
    act = (lambda z: np.clip(z, 0, max_value)) if max_value else (lambda z: np.maximum(z, 0))
    z1 = x @ W1 + b1  # (2, 2, 4)
    z2 = act(z1) @ W2 + b2

    def guided(z, up):
        keep = (z > 0) & (up > 0) & ((z < max_value) if max_value else True)
        return np.where(keep, up, 0)

    up2 = np.broadcast_to(Wd[:, c] / 4, z2.shape)  # GAP over 2 x 2 positions
    up1 = guided(z2, up2) @ W2.T
    return guided(z1, up1) @ W1.T  # (2, 2, 3)


@pytest.mark.parametrize("form", list(relu_forms()))
def test_guided_backprop_by_hand(form, rng):
    model = tiny_relu_model(form)
    max_value = 6.0 if "6" in form else None
    x = rng.uniform(-3, 3, (2, 2, 3)).astype("float32")
    z1 = x @ model.layers[0].kernel.numpy()[0, 0] + model.layers[0].bias.numpy()
    assert (z1 < 0).any() and (z1 > 0).any()
    if max_value:
        assert (z1 > 6).any(), "the test needs pre-activations above 6 to exercise ReLU6's cap"
    for c in (0, 1):
        got = helpers.explain(model, x, "guided_backprop", classes=c)
        np.testing.assert_allclose(got, guided_by_hand(model, x, c, max_value), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("form", ["fused relu", "ReLU(max_value=6)"])
def test_guided_pass_leaves_the_model_unchanged(form, rng):
    model = tiny_relu_model(form)
    x = tf.constant(rng.uniform(-3, 3, (3, 2, 2, 3)).astype("float32"))

    def plain_gradient():
        with tf.GradientTape() as tape:
            tape.watch(x)
            score = tf.reduce_sum(model(x)[:, 0])
        return tape.gradient(score, x).numpy()

    before = plain_gradient()
    attributes = [(layer.__dict__.get("call"), layer.__dict__.get("activation")) for layer in model.layers]
    e = helpers.explanation(model, x.numpy(), "guided_backprop", classes=0)
    np.testing.assert_allclose(e.logits, model(x).numpy(), rtol=1e-6)  # the guided forward equals the model's
    np.testing.assert_array_equal(plain_gradient(), before)
    assert [(layer.__dict__.get("call"), layer.__dict__.get("activation")) for layer in model.layers] == attributes
    assert not np.allclose(helpers.explain(model, x.numpy(), "guided_backprop", classes=0), before)


def test_guided_refuses_swish():
    model = keras.Sequential(
        [
            keras.Input((4, 4, 3)),
            keras.layers.Conv2D(2, 1, activation="swish"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(2),
        ]
    )
    with pytest.raises(ValueError, match="silu"):
        helpers.explain(model, np.zeros((4, 4, 3)), "guided_backprop")
    assert helpers.explain(model, np.ones((4, 4, 3)), "grad_cam").shape == (4, 4)


def test_guided_grad_cam_is_guided_backprop_times_the_map(lite0):
    x = helpers.example("dog")
    gb = helpers.explain(lite0, x, "guided_backprop")
    for method, map_method in (("guided_grad_cam", "grad_cam"), ("guided_grad_cam++", "grad_cam++")):
        m = helpers.explain(lite0, x, map_method)
        np.testing.assert_allclose(helpers.explain(lite0, x, method), gb * m[..., None], rtol=1e-4, atol=1e-7)


def test_guided_backprop_is_not_plain_gradient_on_relu6_network(mobilenet_v2):
    # the pitfall of missing ReLU6 layers: guided output would equal the plain gradient
    x = helpers.example("coffee").astype("float32")
    gb = helpers.explain(mobilenet_v2, x, "guided_backprop")
    xt = tf.constant(x[None])
    with tf.GradientTape() as tape:
        tape.watch(xt)
        score = mobilenet_v2(xt)[0, 967]
    plain = tape.gradient(score, xt).numpy()[0]
    assert np.corrcoef(gb.ravel(), plain.ravel())[0, 1] < 0.9
    assert np.abs(gb).max() > 0


# ---------------------------------------------------------------------------
# Any Keras CNN

AUTO_LAYERS = {
    "resnet50": "conv5_block3_out",
    "resnet50_v2": "post_relu",
    "densenet121": "relu",
    "mobilenet_v2": "out_relu",
    "xception": "block14_sepconv2_act",
    "efficientnet_b0": "top_activation",
    "mobilenet": "conv_pw_13_relu",
    "vgg16": "block5_conv3",
    "inception_v3": "mixed10",
    "efficientnet_lite0": "top_activation",
    "convnext_tiny": "add",  # a Keras operation (the last residual add, add_N), not a layer
    "mobilenet_v3_small": "activation",  # auto-named: activation_N
    "nasnet_mobile": "activation",
}
NO_CAM = ("vgg16", "convnext_tiny", "mobilenet_v3_small")  # no GAP -> Dense head


NOT_RELU = {"efficientnet_b0": "silu", "efficientnet_v2_b0": "silu", "convnext_tiny": "gelu",
            "mobilenet_v3_small": "hard_s"}  # the guided methods refuse them, naming the function


LIGHT = ("nasnet_mobile",)  # slow to trace: the automatic layer and the unified pass only


@pytest.mark.parametrize("name", LIGHT)
def test_automatic_layer_and_unified_pass(name, rng):
    model = helpers.load_model(name, weights=None)
    layer = helpers.target_layer(model)
    assert layer == helpers.spatial_layers(model)[-1]
    x = rng.uniform(0, 255, (1, 224, 224, 3))
    for method in helpers.MAP_METHODS:
        maps = helpers.explain(model, x, method)
        assert maps.shape == (1, 224, 224) and np.isfinite(maps).all() and maps.max() <= 1, method


@pytest.mark.parametrize("name", [name for name in helpers.MODELS if name not in LIGHT])
def test_every_architecture_every_method(name, rng):
    model = helpers.load_model(name, weights=None)
    layer, expected = helpers.target_layer(model), AUTO_LAYERS.get(name, "top_activation")
    assert layer == expected or (expected in ("activation", "add") and layer.startswith(expected + "_"))
    assert layer == helpers.spatial_layers(model)[-1] or name in ("vgg16", "inception_v3")
    size = model.inputs[0].shape[1]
    x = rng.uniform(0, 255, (2, size, size, 3))
    for method in helpers.METHODS:
        if method == "cam" and name in NO_CAM:
            with pytest.raises(ValueError, match="CAM needs"):
                helpers.explain(model, x, method)
            continue
        if method.startswith("guided") and name in NOT_RELU:
            with pytest.raises(ValueError, match=NOT_RELU[name]):
                helpers.explain(model, x, method)
            continue
        if method in helpers.SLOW:  # one image: they cost a forward pass per channel (or four channels)
            options = {"channels": 4} if method == "score_cam" else {"progress": False}
            maps = helpers.explain(model, x[:1], method, classes=[1], **options)
            assert maps.shape == (1, size, size) and np.isfinite(maps).all() and maps.max() <= 1, method
            continue
        maps = helpers.explain(model, x, method, classes=[1, 2])
        assert maps.dtype == np.float32 and np.isfinite(maps).all(), method
        if method.startswith("guided"):
            assert maps.shape == (2, size, size, 3)
        else:
            assert maps.shape == (2, size, size), method
            assert maps.min() >= 0 and maps.max() <= 1, method


def transfer_models():
    """The usual transfer-learning shape: a keras.applications backbone inside a model (seeded:
    random weights, whatever the tests built before)."""
    keras.utils.set_random_seed(0)

    def backbone():
        return keras.applications.MobileNetV2(weights=None, include_top=False, input_shape=(96, 96, 3))

    sequential = keras.Sequential(
        [
            keras.Input((96, 96, 3)),
            keras.layers.Rescaling(1 / 127.5, -1),
            backbone(),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dropout(0.2),
            keras.layers.Dense(3, activation="softmax"),
        ]
    )
    inputs = keras.Input((96, 96, 3))
    inner = backbone()
    inner.trainable = False  # a frozen backbone: gradients must still reach its layers
    x = inner(keras.layers.Rescaling(1 / 127.5, -1)(inputs), training=False)
    x = keras.layers.GlobalAveragePooling2D()(x)
    functional = keras.Model(inputs, keras.layers.Dense(3)(x))
    return {"sequential": sequential, "functional": functional}


@pytest.mark.parametrize("kind", ["sequential", "functional"])
def test_nested_backbone(kind, rng):
    model = transfer_models()[kind]
    x = rng.uniform(0, 255, (2, 96, 96, 3))
    auto = helpers.target_layer(model)
    assert auto.endswith("/out_relu")
    for method in helpers.METHODS:
        options = {"channels": 16} if method == "score_cam" else {}
        assert helpers.explain(model, x, method, **options).shape[:3] == (2, 96, 96)
    np.testing.assert_allclose(helpers.explain(model, x, "cam"), helpers.explain(model, x, "grad_cam"), atol=1e-5)
    inner = helpers.explain(model, x, "grad_cam", layer="block_13_expand_relu")
    assert inner.shape == (2, 96, 96) and np.isfinite(inner).all() and inner.max() > 0
    with pytest.raises(ValueError, match="global average pooling reads"):
        helpers.explain(model, x, "cam", layer="block_13_expand_relu")


def test_softmax_model_is_explained_through_its_logits(rng):
    def make(activation):
        return keras.Sequential(
            [
                keras.Input((8, 8, 3)),
                keras.layers.Conv2D(4, 3, activation="relu"),
                keras.layers.GlobalAveragePooling2D(),
                keras.layers.Dense(3, activation=activation),
            ]
        )

    logits_model, softmax_model = make(None), make("softmax")
    softmax_model.set_weights(logits_model.get_weights())
    x = rng.uniform(0, 255, (2, 8, 8, 3))
    for method in ("cam", "grad_cam", "grad_cam++", "guided_backprop"):
        np.testing.assert_allclose(
            helpers.explain(softmax_model, x, method, classes=1),
            helpers.explain(logits_model, x, method, classes=1),
            rtol=1e-5,
            atol=1e-6,
        )
    assert softmax_model.layers[-1].activation is keras.activations.softmax  # put back


def test_batch_independence(lite0):
    x = np.stack([helpers.example(name) for name in ("coffee", "dog", "eagle")])
    classes = [967, 444, 21]
    for method in helpers.METHODS:
        if method in helpers.SLOW:
            continue  # tested in test_family.py on a subset of channels
        batch = helpers.explain(lite0, x, method, classes=classes)
        for i, c in enumerate(classes):
            np.testing.assert_allclose(helpers.explain(lite0, x[i], method, classes=c), batch[i], atol=2e-5)


def test_top5_in_one_call(lite0):
    x = np.stack([helpers.example("dog"), helpers.example("coffee")])
    e = helpers.explanation(lite0, x, "grad_cam++", classes=np.argsort(-lite0(x.astype("float32")).numpy(), 1)[:, :5])
    assert e.maps.shape == (2, 5, 224, 224) and e.classes.shape == (2, 5)
    assert np.all(np.diff(e.probabilities, axis=1) <= 0)
    np.testing.assert_allclose(
        e.maps[:, 2], helpers.explain(lite0, x, "grad_cam++", classes=e.classes[:, 2]), atol=2e-5
    )


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision(policy, float32_policy):
    x = np.stack([helpers.example("coffee"), helpers.example("dog")])
    reference = helpers.load_model("efficientnet_lite0")
    keras.mixed_precision.set_dtype_policy(policy)
    model = helpers.load_model("efficientnet_lite0")
    assert model.get_layer("top_conv").compute_dtype != "float32"
    for method in ("grad_cam", "grad_cam++", "guided_grad_cam"):
        got, want = helpers.explain(model, x, method), helpers.explain(reference, x, method)
        assert got.dtype == np.float32 and np.isfinite(got).all()
        assert np.corrcoef(got.ravel(), want.ravel())[0, 1] > 0.95
        if not method.startswith("guided"):
            assert np.abs(got - want).mean() < 0.03


def test_compare_layers_in_one_pass(lite0):
    x = helpers.example("dog")
    layers = ["block3b_add", "block5c_add", "block6d_add", "top_activation"]
    maps = helpers.compare_layers(lite0, x, layers)
    assert maps.shape == (4, 224, 224)
    for layer, m in zip(layers, maps):
        np.testing.assert_allclose(m, helpers.explain(lite0, x, "grad_cam", layer=layer), atol=2e-5)
    assert helpers.compare_layers(lite0, x[None], layers, classes=[[1, 2]]).shape == (4, 1, 2, 224, 224)


# ---------------------------------------------------------------------------
# Real photos with two objects: boxes (x0, y0, x1, y1) labelled by hand on the 224 crops

DOG_BOX, BIKE_BOX = (12, 80, 95, 205), (10, 50, 180, 165)  # dog.jpg: the dog; the whole bicycle behind it
ZEBRA_BOX = (95, 90, 180, 185)  # giraffe.jpg: the zebra, its raised head included


def peak(m):
    y, x = np.unravel_index(np.argmax(m), m.shape)
    return x, y


def inside(point, box):
    return box[0] <= point[0] <= box[2] and box[1] <= point[1] <= box[3]


@pytest.mark.parametrize("method", ["grad_cam", "grad_cam++", "cam"])
def test_each_class_peaks_on_its_own_object(lite0, method):
    dog, bike = helpers.class_index("malamute"), helpers.class_index("mountain bike")
    maps = helpers.explain(lite0, helpers.example("dog")[None], method, classes=[[dog, bike]])[0]
    assert inside(peak(maps[0]), DOG_BOX)
    assert inside(peak(maps[1]), BIKE_BOX)
    if method != "grad_cam++":  # Grad-CAM++'s bicycle map peaks where the chainring meets the dog's head
        assert not inside(peak(maps[1]), DOG_BOX)
    zebra = helpers.explain(lite0, helpers.example("giraffe"), method, classes=helpers.class_index("zebra"))
    assert inside(peak(zebra), ZEBRA_BOX)


def test_counterfactual_of_the_bicycle_points_at_the_dog(lite0):
    m = helpers.explain(lite0, helpers.example("dog"), "counterfactual", classes=helpers.class_index("mountain bike"))
    assert inside(peak(m), DOG_BOX) and not inside(peak(m), BIKE_BOX)


def test_real_mobilenets_find_the_zebra(mobilenet_v2, mobilenet):
    for model in (mobilenet_v2, mobilenet):
        e = helpers.explanation(model, helpers.example("giraffe"), "cam")
        assert helpers.CLASS_NAMES[e.classes] == "zebra"
        assert inside(peak(e.maps), ZEBRA_BOX)


# ---------------------------------------------------------------------------
# Bad input gets a clear error


@pytest.mark.parametrize(
    "images, kwargs, error, message",
    [
        (np.zeros((224, 224)), {}, ValueError, "one image"),
        (np.zeros((1, 224, 224, 4)), {}, ValueError, "channels"),
        (np.zeros((0, 224, 224, 3)), {}, ValueError, "empty"),
        (np.zeros((1, 200, 200, 3)), {}, ValueError, "load_image"),
        (np.full((1, 224, 224, 3), np.nan), {}, ValueError, "NaN"),
        (np.zeros((2, 224, 224, 3)), {"classes": 1000}, ValueError, "0..999"),
        (np.zeros((2, 224, 224, 3)), {"classes": [1, 2, 3]}, ValueError, "one per image"),
        (np.zeros((2, 224, 224, 3)), {"classes": [[1], [2], [3]]}, ValueError, "do not fit"),
        (np.zeros((2, 224, 224, 3)), {"classes": 1.5}, TypeError, "integers"),
        (np.zeros((1, 224, 224, 3)), {"layer": "top_activaton"}, ValueError, "did you mean"),
        (np.zeros((1, 224, 224, 3)), {"method": "gradcam"}, ValueError, "unknown method"),
        (np.zeros((1, 224, 224, 3)), {"method": "cam", "layer": "block6d_add"}, ValueError, "pooling reads"),
    ],
)
def test_bad_input(lite0, images, kwargs, error, message):
    with pytest.raises(error, match=message):
        helpers.explain(lite0, images, **kwargs)


def test_model_without_spatial_layer():
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(3)])
    with pytest.raises(ValueError, match="no spatial layer"):
        helpers.target_layer(model)


def test_cam_refuses_a_head_it_cannot_explain(rng):
    model = keras.Sequential(
        [
            keras.Input((8, 8, 3)),
            keras.layers.Conv2D(4, 3, activation="relu"),
            keras.layers.Flatten(),
            keras.layers.Dense(3),
        ]
    )
    with pytest.raises(ValueError, match="CAM needs"):
        helpers.explain(model, rng.uniform(0, 255, (8, 8, 3)), "cam")
    assert helpers.explain(model, rng.uniform(0, 255, (8, 8, 3)), "grad_cam").shape == (8, 8)
