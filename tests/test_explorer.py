"""The explorer (camlib/explorer.py): its pure parts by hand, then the widgets driven from Python
on a tiny seeded model and on EfficientNet-Lite0, then the real UI in headless Chromium.

The check that matters: the picture shown (the PNG bytes of the `ipywidgets.Image`, decoded)
equals `plots.overlay` of `engine.explain`'s map for the same photo, class, method, layer and
opacity. Errors must end up in the message line, never escape, and leave the explorer working.

The browser tests serve a two-line notebook with Voila on 127.0.0.1 (a subprocess, killed in the
fixture's teardown with the kernels it started), open it in the system Chromium through
Playwright (tests/browser.py; never a browser download) and keep screenshots in
artifacts/explorer/. They are skipped only when no Chromium is installed.
"""

from __future__ import annotations

import datetime
import io
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import keras
import matplotlib
import numpy as np
import pytest
from PIL import Image

from camlib import engine, explorer, photos, plots

ROOT = Path(__file__).resolve().parents[1]
NOW = datetime.datetime.now(datetime.UTC)
ARTIFACTS = ROOT / "artifacts" / "explorer"


def as_uint8(rgb) -> np.ndarray:
    return np.round(np.clip(rgb, 0, 1) * 255).astype(np.uint8)


def shown(data: bytes) -> np.ndarray:
    """PNG bytes -> uint8 (H, W, 3), decoded independently of the explorer."""
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def jpeg(image: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(image).save(out, format="JPEG", quality=95)
    return out.getvalue()


def send(ex: explorer.Explorer, name: str, data: bytes):
    """What the browser sends when a file is chosen in the FileUpload."""
    ex.w.upload.value = (
        {"name": name, "type": "", "size": len(data), "content": memoryview(data), "last_modified": NOW},
    )


# ---------------------------------------------------------------------------
# The pure parts


def test_method_labels():
    assert explorer.method_label("grad_cam++") == "Grad-CAM++"
    assert explorer.method_label("guided_backprop") == "Guided Backprop"
    assert explorer.method_label("score_cam") == "Score-CAM (slow)"
    assert explorer.method_label("ablation_cam") == "Ablation-CAM (slow)"
    assert explorer.method_label("fancy_cam") == "Fancy-CAM"  # a method the engine adds later
    labels = [explorer.method_label(m) for m in engine.METHODS]
    assert len(set(labels)) == len(labels)


def test_class_options_and_parsing():
    options = explorer.class_options(1000)
    assert len(options) == len(set(options)) == 1000
    assert options[340] == "zebra"
    assert {options[134], options[517]} == {"crane (134)", "crane (517)"}  # the one name used twice
    assert [explorer.parse_class(t, 1000) for t in ("zebra", " Zebra ", "340", "crane (517)")] == [340] * 3 + [517]
    assert explorer.parse_class("all-terrain bike", 1000) == 671  # a WordNet synonym
    with pytest.raises(ValueError, match="did you mean"):
        explorer.parse_class("zebbra", 1000)
    with pytest.raises(ValueError, match="out of range"):
        explorer.parse_class("1000", 1000)
    assert explorer.class_options(3) == ["0", "1", "2"]
    assert explorer.parse_class("2", 3) == 2
    with pytest.raises(ValueError, match="index 0..2"):
        explorer.parse_class("zebra", 3)


def test_percent():
    assert [explorer.percent(p) for p in (0.62, 0.031, 0.004, 0.0004)] == ["62%", "3%", "0.4%", "<0.1%"]


def test_top_classes_by_hand():
    logits = np.log([0.1, 0.6, 0.3])
    assert [(c, round(p, 6)) for c, _, p in explorer.top_classes(logits, k=2)] == [(1, 0.6), (2, 0.3)]
    assert explorer.top_classes(logits)[0][1] == "class 1"
    imagenet = np.zeros(1000)
    imagenet[340] = 5
    assert explorer.top_classes(imagenet, k=1)[0][:2] == (340, "zebra")


def test_picture_by_hand():
    image = np.array([[[200, 100, 0], [0, 0, 0]], [[255, 255, 255], [10, 20, 30]]], np.uint8)  # (2, 2, 3)
    m = np.array([[0.0, 1.0], [0.5, 0.25]], np.float32)
    assert np.array_equal(explorer.picture(image, m, 0.3, "viridis"), as_uint8(plots.overlay(image, m, 0.3, "viridis")))
    assert np.array_equal(explorer.picture(image, m, 0.0), image)  # opacity 0: the photo itself

    signed = np.array([[0.0, 1.0], [-1.0, 0.5]], np.float32)
    out = explorer.picture(image, signed, 0.8, "RdBu_r", signed=True).astype(int)
    red, blue = matplotlib.colormaps["RdBu_r"]([1.0, 0.0])[:, :3]
    assert np.array_equal(out[0, 0], image[0, 0])  # no evidence either way: the photo shows through
    assert np.abs(out[0, 1] - as_uint8(0.2 * image[0, 1] / 255 + 0.8 * red)).max() <= 1  # for the class
    assert np.abs(out[1, 0] - as_uint8(0.2 * image[1, 0] / 255 + 0.8 * blue)).max() <= 1  # against it
    assert out[0, 1, 0] > out[0, 1, 2] and out[1, 0, 2] > out[1, 0, 0]

    g = np.random.default_rng(0).normal(size=(2, 2, 3)).astype(np.float32)  # guided gradients
    assert np.array_equal(explorer.picture(image, g, 0.9, "jet"), as_uint8(plots.gradient_image(g)))


def test_grid_fits_beside_the_controls():
    for n in range(1, explorer.MAX_COMPARED + 1):
        columns, width = explorer.grid(n)
        rows = -(-n // columns)
        assert columns * width + 8 * (columns - 1) <= explorer.PICTURES_WIDTH and rows <= 2 and width >= 224


def test_png_round_trip_and_uploads(tmp_path):
    rgb = np.random.default_rng(1).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    assert np.array_equal(shown(explorer.png(rgb)), rgb)  # lossless
    photo = photos.example("eagle", size=300)
    data = jpeg(photo)
    assert np.array_equal(
        explorer.read_upload(data, "eagle.jpg", 64), photos.load_image(Image.open(io.BytesIO(data)), 64)
    )
    with pytest.raises(ValueError, match="notes.txt is not an image"):
        explorer.read_upload(b"this is not a photo", "notes.txt", 64)
    with pytest.raises(ValueError, match="half.jpg is not an image"):
        explorer.read_upload(data[: len(data) // 2], "half.jpg", 64)  # a truncated JPEG


# ---------------------------------------------------------------------------
# The widgets driven from Python, on tiny seeded models


def tiny_model(activation: str = "relu", classes: int = 10, seed: int = 0) -> keras.Model:
    keras.utils.set_random_seed(seed)
    return keras.Sequential(
        [
            keras.Input((32, 32, 3)),
            keras.layers.Rescaling(1 / 255, name="rescaling"),
            keras.layers.Conv2D(8, 3, activation=activation, name="conv1"),
            keras.layers.Conv2D(16, 3, activation=activation, name="conv2"),
            keras.layers.GlobalAveragePooling2D(name="pool"),
            keras.layers.Dense(classes, name="logits"),
        ],
        name=f"tiny_{activation}",
    )


@pytest.fixture(scope="module")
def tiny():
    return tiny_model()


@pytest.fixture
def tiny_photos():
    rng = np.random.default_rng(0)
    return {
        "noise": rng.integers(0, 256, (32, 32, 3), dtype=np.uint8),
        "ramp": np.tile(np.arange(32, dtype=np.uint8)[:, None, None] * 8, (1, 32, 3)),
    }


def test_tiny_model_every_setting_shows_the_overlay_of_explain(tiny, tiny_photos):
    ui = explorer.explore(tiny, tiny_photos)
    ex = ui.explorer
    assert ex.message == ""
    assert [v for _, v in ex.w.layer.options] == ["conv2", "conv1", "rescaling"]  # deepest first
    assert ex.layer == "conv2"  # the automatic choice
    assert ex.w.class_box.options == tuple(str(i) for i in range(10))  # not ImageNet: indices
    assert list(ex.w.method.options) == [(explorer.method_label(m), m) for m in engine.METHODS]

    # the first picture: the first photo, its top-1, Grad-CAM at the automatic layer
    image = tiny_photos["noise"]
    top = explorer.top_classes(tiny(image[None], training=False)[0].numpy())
    assert [v for _, v in ex.w.classes.options] == [c for c, _, _ in top] and ex.class_ == top[0][0]
    expected = plots.overlay(image, engine.explain(tiny, image, "grad_cam", classes=top[0][0]), 0.5, plots.CMAP)
    assert np.array_equal(shown(ex.picture), as_uint8(expected))

    # photo, class (a top-5 button, then typed), method, layer, opacity and colours, as widgets
    ex.w.photo.value = "ramp"
    image = tiny_photos["ramp"]
    second = ex.w.classes.options[1][1]
    ex.w.classes.value = second
    ex.w.method.value = "grad_cam++"
    ex.w.layer.value = "conv1"
    ex.w.opacity.value = 0.8
    ex.w.cmap.value = "viridis"
    want = engine.explain(tiny, image, "grad_cam++", classes=second, layer="conv1")
    assert np.array_equal(shown(ex.picture), as_uint8(plots.overlay(image, want, 0.8, "viridis")))
    assert ex.class_ == second and ex.message == ""

    ex.w.class_box.value = "7"
    want = engine.explain(tiny, image, "grad_cam++", classes=7, layer="conv1")
    assert np.array_equal(shown(ex.picture), as_uint8(plots.overlay(image, want, 0.8, "viridis")))
    assert ex.class_ == 7 and (ex.w.classes.value == 7 or 7 not in [v for _, v in ex.w.classes.options])

    # every fast method, through the Python state; guided ones are gradient pictures
    ex.layer = "conv2"  # the layer the head pools, where CAM applies too
    for method in [m for m in engine.METHODS if not explorer.is_slow(m)]:
        ex.method = method
        want = engine.explain(tiny, image, method, classes=7, layer="conv2")
        expected = plots.gradient_image(want) if want.ndim == 3 else plots.overlay(image, want, 0.8, "viridis")
        assert np.array_equal(shown(ex.picture), as_uint8(expected)), method
        assert ex.message == "", (method, ex.message)

    # the signed view: a diverging colour map, for and against the class
    signed = {c: engine.explain(tiny, image, "grad_cam", classes=c, layer="conv2", signed=True) for c in range(10)}
    c, m = next((c, m) for c, m in signed.items() if m.min() < 0 < m.max())  # a class with both
    ex.method, ex.class_, ex.signed = "grad_cam", c, True
    assert ex.cmap == plots.SIGNED_CMAP and ex.cmap not in explorer.COLOUR_MAPS
    assert np.array_equal(shown(ex.picture), explorer.picture(image, m, 0.8, plots.SIGNED_CMAP, signed=True))
    ex.signed = False
    assert ex.cmap in explorer.COLOUR_MAPS


def test_compare_mode_shows_each_method(tiny, tiny_photos):
    ex = explorer.explore(tiny, tiny_photos).explorer
    ex.w.compare.value = True  # a click: the current method and two more
    assert len(ex.compare) == 3 and ex.compare[0] == "grad_cam"
    ex.compare = ["grad_cam", "grad_cam++", "guided_backprop"]
    image, c = tiny_photos["noise"], ex.class_
    assert len(ex.pictures) == 3
    shown_cells = [c.layout.display != "none" for c in ex.w.cells]  # the photo's cell is hidden, takes no place
    assert shown_cells == [False, True, True, True] + [False] * (len(ex.w.cells) - 4)
    for method, data in zip(ex.compare, ex.pictures):
        want = engine.explain(tiny, image, method, classes=c)
        expected = plots.gradient_image(want) if want.ndim == 3 else plots.overlay(image, want, 0.5, plots.CMAP)
        assert np.array_equal(shown(data), as_uint8(expected)), method
    fast = [m for m in engine.METHODS if not explorer.is_slow(m)]
    for method in fast[:5]:  # ticking a fifth drops the oldest
        ex.w.compared[method].value = True
    assert len(ex.compare) == explorer.MAX_COMPARED and ex.compare[-1] == fast[4]
    assert [ex.w.compared[m].value for m in fast].count(True) == explorer.MAX_COMPARED
    ex.w.compare.value = False
    assert ex.compare is None and len(ex.pictures) == 1


def test_errors_are_messages_and_the_explorer_keeps_working(tiny_photos):
    swish = tiny_model("swish")
    ex = explorer.explore(swish, tiny_photos).explorer
    before = ex.picture

    send(ex, "notes.txt", b"this is not a photo")  # an upload that is not an image
    assert "notes.txt is not an image" in ex.message
    assert ex.photo == "noise" and ex.picture == before

    ex.method = "guided_grad_cam"  # a guided method on a swish network
    assert "defined for ReLU networks" in ex.message and "silu" in ex.message  # swish is silu in Keras
    assert shown(ex.picture).std() == 0  # a blank square, not a stale map

    ex.layer = "pool"  # a layer without a spatial map
    assert "no spatial map" in ex.message and ex.layer == "conv2"
    ex.layer = "no_such_layer"
    assert "no layer" in ex.message

    ex.w.class_box.value = "zebra"  # not a class of this model
    assert "index 0..9" in ex.message

    ex.method, ex.layer = "cam", "conv1"  # CAM explains only the layer the head pools
    assert "CAM" in ex.message and "conv2" in ex.message and shown(ex.picture).std() == 0

    ex.method = "grad_cam"  # and it still works
    assert ex.message == ""
    want = engine.explain(swish, tiny_photos["noise"], "grad_cam", classes=ex.class_, layer="conv1")
    assert np.array_equal(shown(ex.picture), as_uint8(plots.overlay(tiny_photos["noise"], want, 0.5, plots.CMAP)))

    send(ex, "ramp.jpg", jpeg(np.repeat(tiny_photos["ramp"], 4, axis=0)))  # a real photo after the bad one
    assert ex.photo == "ramp.jpg" and ex.message == ""
    assert np.array_equal(
        ex.image(), photos.load_image(Image.open(io.BytesIO(jpeg(np.repeat(tiny_photos["ramp"], 4, axis=0)))), 32)
    )


class Subclassed(keras.Model):
    """The tiny model written as a subclass: no symbolic graph, layers called in `call`."""

    def __init__(self, tiny=None):
        super().__init__(name="subclassed")
        self.parts = [keras.layers.Rescaling(1 / 255, name="rescaling"), keras.layers.Conv2D(8, 3, name="conv1"),
                      keras.layers.Activation("relu", name="relu1"), keras.layers.Conv2D(16, 3, name="conv2"),
                      keras.layers.Activation("relu", name="relu2"), keras.layers.GlobalAveragePooling2D(name="pool"),
                      keras.layers.Dense(10, name="logits")]  # fmt: skip
        if tiny is not None:  # built, with the tiny model's weights
            self(np.zeros((1, 32, 32, 3), np.float32))
            self.set_weights(tiny.get_weights())

    def call(self, x):
        for part in self.parts:
            x = part(x)
        return x


def test_a_subclassed_model_and_models_it_cannot_show(tiny, tiny_photos):
    sub = Subclassed(tiny)
    ex = explorer.explore(sub, tiny_photos).explorer
    assert ex.size == 32 and ex.n_classes == 10 and ex.message == ""
    assert [v for _, v in ex.w.layer.options] == ["relu2", "conv2", "relu1", "conv1", "rescaling"]
    assert ex.layer == "relu2" and "28×28×16" in ex.w.layer.options[0][0]
    image = tiny_photos["ramp"]
    ex.photo, ex.method, ex.class_ = "ramp", "grad_cam++", 3
    same = engine.explain(tiny, image, "grad_cam++", classes=3, layer="conv2")  # the functional twin
    assert np.array_equal(shown(ex.picture), as_uint8(plots.overlay(image, same, 0.5, plots.CMAP)))
    ex.layer = "conv1"
    assert ex.message == "" and np.array_equal(
        shown(ex.picture), as_uint8(plots.overlay(image, engine.explain(sub, image, "grad_cam++", 3, "conv1"), 0.5,
                                                  plots.CMAP)))  # fmt: skip

    x, v = keras.Input((32, 32, 3)), keras.Input((4,))
    two = keras.Model([x, v], keras.layers.Dense(3)(keras.layers.Concatenate()(
        [keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 3)(x)), v])))  # fmt: skip
    with pytest.raises(ValueError, match="one image input and one output.*helpers.explain"):
        explorer.explore(two, tiny_photos)
    with pytest.raises(ValueError, match="has not been called yet"):
        explorer.explore(Subclassed(), tiny_photos)


@pytest.fixture
def slow_method(monkeypatch):
    """Score-CAM made to report progress until `release` is set, then return Grad-CAM: it calls
    the progress callback as the engine does, and raises engine.Cancelled when it returns False."""
    release, calls = threading.Event(), []
    real = engine.explanation

    def explanation(model, images, method="grad_cam", classes=None, layer=None, progress=None, **options):
        if method != "score_cam":
            return real(model, images, method, classes, layer, **options)
        calls.append(threading.current_thread().name)
        done = 0
        while not release.is_set():
            if progress(done, 10) is False:
                raise engine.Cancelled("cancelled")
            done = min(done + 1, 9)
            time.sleep(0.01)
        return real(model, images, "grad_cam", classes, layer, **options)

    monkeypatch.setattr(engine, "explanation", explanation)
    return release, calls


def wait_for(condition, timeout: float = 10):
    end = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.01)


def test_slow_method_runs_in_the_background_and_cancels(tiny, tiny_photos, slow_method):
    release, calls = slow_method
    ex = explorer.explore(tiny, tiny_photos).explorer
    assert "Score-CAM (slow)" in [label for label, _ in ex.w.method.options]
    grad_cam = ex.picture

    start = time.perf_counter()
    ex.method = "score_cam"
    assert time.perf_counter() - start < 1  # the callback returned: the kernel can handle the Cancel click
    assert ex.w.running.layout.display == "" and "computing" in ex.w.panels[1][1].value
    wait_for(lambda: ex.w.progress.value > 0.5)
    assert calls == ["cam-explorer"]
    ex.opacity = 0.4  # a redraw does not cancel it
    assert ex._job is not None
    ex.w.cancel.click()
    assert ex.wait(10)
    assert "cancelled" in ex.message and ex.w.running.layout.display == "none"

    ex.method = "grad_cam"  # it keeps working
    assert ex.message == "" and shown(ex.picture).shape == (32, 32, 3) and ex.picture != grad_cam  # opacity 0.4 now

    ex.method = "score_cam"  # again, to the end this time
    release.set()
    assert ex.wait(10) and ex.message == ""
    want = engine.explain(tiny, tiny_photos["noise"], "grad_cam", classes=ex.class_)
    assert np.array_equal(shown(ex.picture), as_uint8(plots.overlay(tiny_photos["noise"], want, 0.4, plots.CMAP)))
    assert "Score-CAM" in ex.w.panels[1][1].value


@pytest.mark.parametrize("method", engine.SLOW)
def test_real_slow_methods(method, tiny, tiny_photos):
    ex = explorer.explore(tiny, tiny_photos).explorer
    ex.method = method
    assert ex.wait(120) and ex.message == ""
    want = engine.explain(tiny, tiny_photos["noise"], method, classes=ex.class_)
    assert np.array_equal(shown(ex.picture), as_uint8(plots.overlay(tiny_photos["noise"], want, 0.5, plots.CMAP)))


# ---------------------------------------------------------------------------
# EfficientNet-Lite0, real weights and photos


def test_lite0_top5_classes_layers_and_uploads(lite0):
    ex = explorer.explore(lite0).explorer
    assert ex.photo == "dog" and list(ex.w.photo.options) == list(photos.EXAMPLES)
    dog = photos.example("dog")
    top5 = photos.decode(lite0(dog[None].astype("float32"), training=False).numpy())[0]
    assert [v for _, v in ex.w.classes.options] == [c for c, _, _ in top5]
    assert ex.w.classes.options[0][0] == f"{top5[0][1]} {explorer.percent(top5[0][2])}"
    assert ex.layer == "top_activation" and "(automatic)" in ex.w.layer.options[0][0]
    assert ex.w.class_box.options[340] == "zebra"

    ex.w.classes.value = top5[2][0]
    ex.w.method.value = "grad_cam++"
    ex.w.opacity.value = 0.6
    want = engine.explain(lite0, dog, "grad_cam++", classes=top5[2][0])
    assert np.array_equal(shown(ex.picture), as_uint8(plots.overlay(dog, want, 0.6, plots.CMAP)))

    ex.w.class_box.value = "mountain bike"  # any class, by name: the bicycle behind the dog
    bike = photos.class_index("mountain bike")
    assert ex.class_ == bike and ex.w.classes.value is None
    deeper = ex.w.layer.options[5][1]
    ex.w.layer.value = deeper
    want = engine.explain(lite0, dog, "grad_cam++", classes=bike, layer=deeper)
    assert np.array_equal(shown(ex.picture), as_uint8(plots.overlay(dog, want, 0.6, plots.CMAP)))
    assert "mountain bike" in ex.w.panels[1][1].value and deeper in ex.w.panels[1][1].value

    ex.method = "guided_grad_cam"  # Lite0 is a ReLU6 network: guided methods work
    want = engine.explain(lite0, dog, "guided_grad_cam", classes=bike, layer=deeper)
    assert np.array_equal(shown(ex.picture), as_uint8(plots.gradient_image(want)))

    eagle = jpeg(photos.example("eagle", size=400))
    send(ex, "my eagle.jpg", eagle)
    assert ex.photo == "my eagle.jpg" and "my eagle.jpg" in ex.w.photo.options
    assert ex.w.classes.options[0][0].startswith("bald eagle") and ex.class_ == photos.class_index("bald eagle")
    image = photos.load_image(Image.open(io.BytesIO(eagle)), 224)
    want = engine.explain(lite0, image, "guided_grad_cam", classes=ex.class_, layer=deeper)
    assert np.array_equal(shown(ex.picture), as_uint8(plots.gradient_image(want)))

    ex.photo, ex.method, ex.layer = "dog", "grad_cam", "top_activation"  # back: top-5 of the dog, from the cache
    assert ex.class_ == top5[0][0] and ex.message == ""


# ---------------------------------------------------------------------------
# In a real browser: Voila serves the explorer, headless Chromium clicks it

NOTEBOOK = """{"cells": [{"cell_type": "code", "execution_count": null, "id": "explorer", "metadata": {},
 "outputs": [], "source": ["from camlib.explorer import explore\\n", "from camlib.models import load_model\\n",
 "explore(load_model('efficientnet_lite0'))"]}],
 "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"}},
 "nbformat": 4, "nbformat_minor": 5}"""
# Voila's page template links Font Awesome from a CDN: blocked by watch() (nothing leaves the
# machine) and not needed (the widget icons ship with ipywidgets); those two are not problems.
TEMPLATE_CDN = "cdn.jsdelivr.net/npm/@fortawesome"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def voila(tmp_path_factory):
    """Voila serving the explorer notebook on 127.0.0.1:<free port>; the URL."""
    from browser import find_chromium

    if find_chromium() is None:
        pytest.skip("Chromium is not installed (Debian: apt-get install chromium, or set $CHROMIUM)")
    folder = tmp_path_factory.mktemp("voila")
    (folder / "explorer.ipynb").write_text(NOTEBOOK)
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [os.environ.get("PYTHONPATH"), str(ROOT)])),
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "TF_ENABLE_ONEDNN_OPTS": "0",
    }
    command = [
        sys.executable, "-m", "voila", "explorer.ipynb", "--no-browser", f"--port={port}",
        "--Voila.ip=127.0.0.1", "--VoilaConfiguration.extension_denylist=['jupyterlab-jupytext']",
    ]  # fmt: skip
    log = open(folder / "voila.log", "w")
    server = subprocess.Popen(
        command, cwd=folder, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 60
        while True:  # a static file: asking for the page itself would start a kernel
            try:
                urllib.request.urlopen(url + "voila/static/voila.js", timeout=5)
                break
            except OSError:
                assert server.poll() is None and time.monotonic() < deadline, (folder / "voila.log").read_text()
                time.sleep(0.3)
        yield url
    finally:
        os.killpg(server.pid, signal.SIGTERM)  # the server and the kernels it started, nothing else
        try:
            server.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        log.close()


@pytest.fixture(scope="module")
def page(voila):
    from browser import chromium, watch

    # names resolve nowhere (tests/browser.py), the loopback address of the server does
    with chromium() as browser:
        context = browser.new_context(viewport={"width": 1360, "height": 860}, device_scale_factor=1)
        context.set_default_timeout(120_000)  # a busy 2-core machine: patient, never flaky
        problems = watch(context, allow=("data:", "blob:", voila.rstrip("/")))
        page = context.new_page()
        page.goto(voila)
        page.locator("img.cam-map").first.wait_for()
        page.problems = problems
        yield page
        context.close()


def method_button(page, label: str):
    """The button of a method in the Method row (compare mode has buttons of the same names)."""
    return page.locator(".cam-wrap").get_by_role("button", name=label, exact=True)


VISIBLE_CAPTIONS = "() => [...document.querySelectorAll('.cam-caption')].filter(c => c.offsetParent)"
VISIBLE_MAPS = "() => [...document.querySelectorAll('img.cam-map')].filter(m => m.offsetParent)"


def map_bytes(page, index: int = 0) -> bytes:
    """The PNG the browser holds for the index-th map shown (fetched from its blob: URL)."""
    data = (
        page.locator("img.cam-map")
        .nth(index)
        .evaluate("async img => Array.from(new Uint8Array(await (await fetch(img.src)).arrayBuffer()))")
    )
    return bytes(data)


def serious(problems: list[str]) -> list[str]:
    return [p for p in problems if TEMPLATE_CDN not in p]


def test_browser_renders_the_explorer(page, lite0):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.wait_for_timeout(500)
    page.screenshot(path=ARTIFACTS / "explorer.png")
    dog = photos.example("dog")
    want = engine.explain(lite0, dog, "grad_cam")
    # what Chromium shows is Grad-CAM of the dog's top-1 (computed in another process: within rounding)
    got = shown(map_bytes(page)).astype(int)
    assert np.abs(got - as_uint8(plots.overlay(dog, want, 0.5, plots.CMAP))).max() <= 2
    assert page.locator("img.cam-photo").is_visible()
    assert page.get_by_text("Where does efficientnet_lite0 look?").is_visible()
    assert not serious(page.problems), "\n".join(page.problems)


def test_browser_click_on_another_method_changes_the_picture(page, lite0):
    src, before = page.locator("img.cam-map").first.get_attribute("src"), map_bytes(page)
    method_button(page, "Grad-CAM++").click()
    page.wait_for_function("src => document.querySelector('img.cam-map').src !== src", arg=src)
    after = map_bytes(page)
    assert after != before
    dog = photos.example("dog")
    want = engine.explain(lite0, dog, "grad_cam++")
    assert np.abs(shown(after).astype(int) - as_uint8(plots.overlay(dog, want, 0.5, plots.CMAP))).max() <= 2
    page.screenshot(path=ARTIFACTS / "grad_cam_pp.png")

    src = page.locator("img.cam-map").first.get_attribute("src")
    page.get_by_text("Signed: for (red)").click()  # the signed view: for and against, in one picture
    page.wait_for_function("src => document.querySelector('img.cam-map').src !== src", arg=src)
    page.get_by_text("against the class").wait_for()
    page.screenshot(path=ARTIFACTS / "signed.png")
    page.get_by_text("Signed: for (red)").click()
    page.get_by_text("strongest evidence").wait_for()

    page.get_by_text("Compare methods").click()  # compare mode: Grad-CAM++ and two more side by side
    page.wait_for_function(VISIBLE_MAPS + ".length == 3")
    page.wait_for_function(VISIBLE_CAPTIONS + ".length == 3")  # the three maps (no photo)
    tops = page.evaluate(VISIBLE_MAPS + ".map(m => Math.round(m.getBoundingClientRect().top))")
    assert len(set(tops)) == 1, f"the three maps compared are not in one row: tops {tops}"
    page.screenshot(path=ARTIFACTS / "compare.png")

    box = page.get_by_placeholder("or type any class name")  # any class, by name: the bicycle
    box.fill("mountain bike")
    box.press("Enter")
    page.wait_for_function(VISIBLE_CAPTIONS + ".every(c => c.innerText.includes('mountain bike'))")
    page.screenshot(path=ARTIFACTS / "compare_bike.png")
    page.get_by_text("Compare methods").click()
    page.locator(".cam-choice").wait_for(state="hidden")  # the method buttons are back
    page.wait_for_function(VISIBLE_MAPS + ".length == 1")
    assert not serious(page.problems), "\n".join(page.problems)


def test_browser_slow_method_shows_progress_and_cancels(page):
    """Score-CAM on Lite0 takes about a minute here: it runs in the kernel's background thread,
    so the click on Cancel reaches the kernel while it runs."""
    method_button(page, "Score-CAM (slow)").click()
    page.get_by_text("one forward pass per channel").wait_for()
    assert page.locator(".cam-caption", has_text="computing").is_visible()
    page.wait_for_function("() => parseFloat(document.querySelector('.progress-bar').style.width) > 0")
    page.screenshot(path=ARTIFACTS / "slow.png")
    page.get_by_role("button", name="Cancel").click()
    page.locator(".cam-message", has_text="cancelled").wait_for(timeout=30_000)
    assert page.get_by_text("one forward pass per channel").is_hidden()
    method_button(page, "Grad-CAM").click()  # and it goes on
    page.locator(".cam-caption:visible", has_text="Grad-CAM:").wait_for()
    assert page.locator(".cam-message").inner_text().strip() == ""
    assert not serious(page.problems), "\n".join(page.problems)


def upload(page, name: str, mime: str, data: bytes):
    """Choose a file in the upload button's dialog."""
    with page.expect_file_chooser() as chooser:
        page.locator(".cam-upload").click()
    chooser.value.set_files(files=[{"name": name, "mimeType": mime, "buffer": data}])


def test_browser_upload_of_a_non_image_shows_the_message(page):
    upload(page, "notes.txt", "text/plain", b"this is not a photo")
    message = page.locator(".cam-message")
    message.get_by_text("notes.txt is not an image").wait_for()
    page.screenshot(path=ARTIFACTS / "error.png")
    # and it keeps working: a real photo next
    upload(page, "eagle.jpg", "image/jpeg", jpeg(photos.example("eagle", size=320)))
    page.locator(".cam-caption", has_text="bald eagle").wait_for()
    assert message.inner_text().strip() == ""
    page.screenshot(path=ARTIFACTS / "upload.png")
    assert not serious(page.problems), "\n".join(page.problems)
