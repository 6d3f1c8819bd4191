"""Photos, class names and models: what everything else stands on."""

import io

import keras
import numpy as np
import pytest
from PIL import Image

import helpers

# ---------------------------------------------------------------------------
# Photos


def test_every_example_loads_offline():
    for name in helpers.EXAMPLES:
        x = helpers.example(name, 96)
        assert x.shape == (96, 96, 3) and x.dtype == np.uint8 and x.std() > 10, name


@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "I;16", "CMYK"])
def test_load_image_modes_become_rgb(mode, tmp_path):
    rgb = Image.fromarray(helpers.example("coffee", 64))
    image = rgb.convert(mode) if mode != "I;16" else Image.fromarray(np.asarray(rgb.convert("L"), np.uint16) * 256)
    path = tmp_path / ("x.png" if mode != "CMYK" else "x.jpg")
    image.save(path)
    x = helpers.load_image(path, 32)
    assert x.shape == (32, 32, 3) and x.dtype == np.uint8


def test_transparent_pixels_become_white():
    a = np.zeros((8, 8, 4), np.uint8)  # fully transparent black
    assert np.all(helpers.load_image(a, 8) == 255)


def test_exif_orientation_is_applied(tmp_path):
    a = np.zeros((20, 40, 3), np.uint8)
    a[:, :20] = 255  # left half white, landscape
    image = Image.fromarray(a)
    exif = image.getexif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", exif=exif)
    shown = helpers.load_image(Image.open(io.BytesIO(buffer.getvalue())), 20, fit="stretch")
    assert shown[:5].mean() > 200 and shown[-5:].mean() < 50  # the white half is now on top


def test_fit_modes():
    a = np.zeros((100, 200, 3), np.uint8)
    a[:, :50] = 255  # the left quarter is white
    assert helpers.load_image(a, 50, "crop").mean() < 10  # the centre square misses it
    padded = helpers.load_image(a, 50, "pad")
    assert np.all(padded[0] == 128) and padded[25, 2].min() == 255
    assert helpers.load_image(a, 50, "stretch")[:, :12].min() == 255


@pytest.mark.parametrize(
    "source, message",
    [
        ("no/such/file.jpg", "no image at"),
        (np.zeros((4, 4, 2)), "image array must be"),
        (np.full((4, 4, 3), 300.0), "0..255"),
        (np.full((4, 4, 3), np.nan), "NaN"),
    ],
)
def test_load_image_errors(source, message):
    with pytest.raises((ValueError, FileNotFoundError), match=message):
        helpers.load_image(source)


def test_corrupt_image_file(tmp_path):
    path = tmp_path / "broken.jpg"
    path.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    with pytest.raises(ValueError, match="not an image"):
        helpers.load_image(path)


# ---------------------------------------------------------------------------
# Class names


def test_class_names_offline():
    assert len(helpers.CLASS_NAMES) == 1000
    assert helpers.CLASS_NAMES[0] == "tench" and helpers.CLASS_NAMES[967] == "espresso"
    assert helpers.class_index("zebra") == 340 and helpers.class_index("Giant Panda") == 388
    assert helpers.class_index("bald eagle") == 22 and helpers.class_index("American eagle") == 22
    with pytest.raises(ValueError, match="several"):
        helpers.class_index("crane")  # a bird (134) and a machine (517)
    with pytest.raises(ValueError, match="did you mean"):
        helpers.class_index("zebr")


def test_decode():
    logits = np.zeros((2, 1000), np.float32)
    logits[0, 340], logits[1, 967] = 10, 5
    top = helpers.decode(logits, top=3)
    assert [t[0][:2] for t in top] == [(340, "zebra"), (967, "espresso")]
    assert top[0][0][2] == pytest.approx(np.exp(10) / (np.exp(10) + 999))
    assert helpers.decode(logits[0])[0][0][0] == 340
    with pytest.raises(ValueError, match="1000"):
        helpers.decode(np.zeros((1, 10)))


# ---------------------------------------------------------------------------
# Models


@pytest.fixture(scope="module")
def photos():
    names = ["coffee", "eagle", "giraffe"]
    return names, np.stack([helpers.example(name) for name in names])


def top1(model, names):
    """(name, probability) of the top class for each example photo, at the model's size."""
    size = model.inputs[0].shape[1]
    images = np.stack([helpers.example(name, size) for name in names]).astype("float32")
    logits = model(images, training=False).numpy()
    return [(helpers.CLASS_NAMES[c], p) for c, _, p in (d[0] for d in helpers.decode(logits))]


def test_lite0_real_predictions(lite0, photos):
    names, x = photos
    result = top1(lite0, names)
    assert result[0][0] == "espresso" and result[0][1] == pytest.approx(0.94, abs=0.03)
    assert [r[0] for r in result[1:]] == ["bald eagle", "zebra"]


@pytest.mark.parametrize("name", ["efficientnet_lite1", "efficientnet_lite2"])
def test_larger_lites(name, photos):
    model = helpers.load_model(name)
    size = {"efficientnet_lite1": 240, "efficientnet_lite2": 260}[name]
    assert model.inputs[0].shape[1:] == (size, size, 3) and model.outputs[0].shape[-1] == 1000
    result = top1(model, photos[0])
    # sensible, if less sure than Lite0: the eagle's top-1 is the kite (a bird of prey) at this crop
    assert result[0][0] == "espresso" and result[1][0] in ("bald eagle", "kite") and result[2][0] == "zebra"


def test_lite_layer_names(lite0):
    names = {layer.name for layer in lite0.layers}
    for expected in (
        "stem_conv",
        "block1a_dwconv",
        "block2b_add",
        "block7a_project_bn",
        "top_conv",
        "top_bn",
        "top_activation",
        "avg_pool",
        "top_dropout",
        "predictions",
    ):
        assert expected in names
    assert lite0.get_layer("predictions").activation is keras.activations.linear  # logits


def test_lite_random_weights_differ():
    model = helpers.load_model("efficientnet_lite0", weights=None)
    real = helpers.load_model("efficientnet_lite0")
    assert not np.allclose(model.get_layer("top_conv").kernel.numpy(), real.get_layer("top_conv").kernel.numpy())


def test_weights_from_a_file(tmp_path, photos):
    real = helpers.load_model("efficientnet_lite0")
    path = tmp_path / "lite0.weights.h5"
    real.save_weights(path)
    again = helpers.load_model("efficientnet_lite0", weights=path)
    x = photos[1].astype("float32")
    np.testing.assert_allclose(again(x).numpy(), real(x).numpy(), atol=1e-5)
    with pytest.raises(FileNotFoundError):
        helpers.load_model("mobilenet_v2", weights=tmp_path / "missing.weights.h5")


def test_shared_mobilenets_classify_the_zebra(mobilenet_v2, mobilenet, photos):
    for model in (mobilenet_v2, mobilenet):
        result = top1(model, photos[0])
        assert result[2][0] == "zebra" and result[0][0] == "espresso"


def test_unknown_model():
    with pytest.raises(ValueError, match="choose from"):
        helpers.load_model("resnet5o")


@pytest.mark.parametrize(
    "mode, expected", [("tf", [-1.0, 0.0, 1.0]), ("caffe", [255 - 103.939, 127.5 - 116.779, -123.68])]
)
def test_preprocessing_inside_the_model(mode, expected):
    x = np.array([[[[0.0, 127.5, 255.0]]]], np.float32)
    got = helpers.Preprocess(mode)(x).numpy().ravel()
    np.testing.assert_allclose(got, expected, rtol=1e-5)
