"""The command line (camlib.cli) and model files (camlib.model_files), on tiny models.

Tiny seeded CNNs saved as .keras files in tmp_path, photos of every format written by the
tests themselves (nested folders, equal names, a corrupt JPEG, a text file named .png);
the real EfficientNet-Lite0 in one end-to-end test, and the .keras file saved under JAX
(tests/data/make_jax_model.py) explained here under TensorFlow.
"""

import csv
import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import keras
import numpy as np
import pytest
from PIL import Image

from camlib import cli, engine, metrics, model_files, models, photos

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data"
SIZE = 32  # the tiny models' input


# ---------------------------------------------------------------------------
# Tiny models and photos


def tiny_cnn(head=None, name="tiny") -> keras.Model:
    """(N, 32, 32, 3) pixels 0..255 -> Rescaling -> two ReLU convolutions -> GAP -> 5 logits, seeded."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((SIZE, SIZE, 3))
    x = (head or keras.layers.Rescaling(1 / 255))(inputs)
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(x)
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="last_conv")(x)  # (N, 32, 32, 16)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(5)(x), name=name)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("models") / "tiny.keras"
    tiny_cnn().save(path)
    return path


@pytest.fixture(scope="module")
def lambda_model(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("models") / "lambda.keras"
    tiny_cnn(keras.layers.Lambda(lambda x: x / 255.0)).save(path)
    return path


GOOD = [  # relative path, PIL mode, format
    "a/red.jpg",
    "a/red.png",  # the same name with another extension
    "a/b/red.jpg",  # the same name in another folder
    "a/b/c.webp",
    "a/d.bmp",
    "e.tif",
    "grey.png",
    "rgba.png",
    "deep16.png",
]
BAD = ["bad/corrupt.jpg", "bad/text.png"]


def write_photos(root: Path, names=GOOD, bad=BAD) -> Path:
    """Small non-square photos of each format in nested folders; `bad` ones that cannot be read."""
    rng = np.random.default_rng(0)
    for i, name in enumerate(names):
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        rgb = (rng.random((36, 48, 3)) * 255).astype(np.uint8)  # (H, W, 3)
        rgb[:, : 8 * (i + 1) % 48] = 255  # a bright band, different per photo
        if name == "grey.png":
            image = Image.fromarray(rgb[..., 0], "L")
        elif name == "rgba.png":
            image = Image.fromarray(np.dstack([rgb, np.full((36, 48), 128, np.uint8)]), "RGBA")
        elif name == "deep16.png":
            image = Image.fromarray(rgb[..., 0].astype(np.uint16) * 257)  # mode I;16
        else:
            image = Image.fromarray(rgb)
        image.save(path)
    for name in bad:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if name.endswith(".jpg"):
            Image.fromarray(np.zeros((36, 48, 3), np.uint8)).save(path)
            path.write_bytes(path.read_bytes()[:200])  # cut off in the middle of the data
        else:
            path.write_text("not an image\n")
    (root / ".hidden.jpg").write_bytes(b"skipped")
    (root / "notes.txt").write_text("skipped: not a photo extension")
    return root


def read_rows(out: Path) -> list[dict]:
    with open(out / "results.csv", newline="") as f:
        return list(csv.DictReader(f))


def run(*args) -> int:
    return cli.main([str(a) for a in args])


def counting(monkeypatch) -> list[int]:
    """The sizes of the batches cli.explain_batch is called with, from now on."""
    sizes, real = [], cli.explain_batch

    def explain_batch(model, images, s):
        sizes.append(len(images))
        return real(model, images, s)

    monkeypatch.setattr(cli, "explain_batch", explain_batch)
    return sizes


# ---------------------------------------------------------------------------
# Options


def test_split_list_takes_commas_and_repeats():
    assert cli.split_list(["grad_cam,cam", " grad_cam++ "]) == ["grad_cam", "cam", "grad_cam++"]
    assert cli.split_list(None, ["grad_cam"]) == ["grad_cam"]


def test_parse_classes():
    assert cli.parse_classes("top5", 1000) == cli.Classes(5)
    assert cli.parse_classes("TOP1", 1000).k == 1
    assert cli.parse_classes("top9", 5) == cli.Classes(5)  # never more than the model has
    assert cli.parse_classes("zebra, 281", 1000) == cli.Classes(None, (340, 281))
    assert cli.parse_classes("4,0", 5).indices == (4, 0)
    for text, n, message in [
        ("zebra", 5, "names are ImageNet's"),
        ("5", 5, "classes 0..4"),
        ("-1", 5, "classes 0..4"),
        ("topx", 1000, "topK"),
        ("zebraa", 1000, "did you mean"),
        (",", 1000, "empty"),
    ]:
        with pytest.raises(cli.UsageError, match=message):
            cli.parse_classes(text, n)


def test_find_photos_mirrors_relative_paths(tmp_path):
    root = write_photos(tmp_path / "in")
    out = root / "results"  # inside the input: its own files must never become inputs
    (out / "overlays").mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(out / "overlays" / "old.png")
    found = cli.find_photos([str(root)], out)
    assert sorted(p.key for p in found) == sorted(GOOD + BAD)
    outputs = [cli.output_files(out, p) for p in found]
    assert len(set(outputs)) == len(found)  # red.jpg, red.png and b/red.jpg do not collide
    assert cli.output_files(out, cli.Photo("x", "a/red.jpg")) == (
        out / "overlays/a/red.jpg.png",
        out / "maps/a/red.jpg.npz",
    )

    shutil.rmtree(out)
    (root / "overlays").mkdir()  # DIR = the input folder itself: its outputs are not inputs either
    Image.new("RGB", (8, 8)).save(root / "overlays" / "old.png")
    assert sorted(p.key for p in cli.find_photos([str(root)], root)) == sorted(GOOD + BAD)

    # two folders: keys keep the folder names; a file named twice is found once
    other = write_photos(tmp_path / "other", ["a/red.jpg"], [])
    found = cli.find_photos([str(root / "a"), str(other), str(other / "a" / "red.jpg")], out)
    assert sorted(p.key for p in found) == ["in/a/b/c.webp", "in/a/b/red.jpg", "in/a/d.bmp", "in/a/red.jpg",
                                            "in/a/red.png", "other/a/red.jpg"]  # fmt: skip
    with pytest.raises(cli.UsageError, match="no such file or folder"):
        cli.find_photos([str(tmp_path / "nowhere")], out)
    (tmp_path / "empty").mkdir()
    with pytest.raises(cli.UsageError, match="no photos"):
        cli.find_photos([str(tmp_path / "empty")], out)


def test_decoding_runs_at_most_a_few_batches_ahead():
    """Memory stays flat: the pool is never asked for more than `ahead` + 1 batches at once."""

    class Pool:
        def __init__(self):
            self.outstanding = self.most = 0

        def submit(self, fn, *args):
            self.outstanding += 1
            self.most = max(self.most, self.outstanding)
            pool = self

            class Done:
                def result(self):
                    pool.outstanding -= 1
                    return "unreadable: test"

            return Done()

    pool = Pool()
    todo = [cli.Photo(str(i), str(i)) for i in range(100)]
    batches = list(cli.decoded(pool, todo, batch_size=4, size=SIZE, fit="crop", ahead=2))
    assert [p for batch in batches for p, _ in batch] == todo
    assert pool.most == 3 * 4


# ---------------------------------------------------------------------------
# Runs on tiny models


def test_a_run_writes_rows_overlays_and_maps(tiny, tmp_path, capsys):
    root, out = write_photos(tmp_path / "in"), tmp_path / "out"
    methods = ["grad_cam", "grad_cam++", "guided_backprop"]
    code = run(root, "--out", out, "--model", tiny, "--method", "grad_cam,grad_cam++", "--method",
               "guided_backprop", "--batch-size", 4)  # fmt: skip
    assert code == 1  # two photos could not be read
    err = capsys.readouterr().err
    assert f"{root / 'bad/corrupt.jpg'}: unreadable: " in err and "Traceback" not in err
    assert f"{root / 'bad/text.png'}: unreadable: cannot identify image file" in err

    rows = read_rows(out)
    assert list(rows[0]) == cli.COLUMNS
    failed = {r["path"]: r["status"] for r in rows if r["status"] != "ok"}
    assert sorted(failed) == sorted(str(root / name) for name in BAD)
    assert all(s.startswith("unreadable: ") and "\n" not in s for s in failed.values())

    model = keras.saving.load_model(tiny)
    for name in GOOD:
        path = str(root / name)
        mine = [r for r in rows if r["path"] == path]
        assert [r["method"] for r in mine] == methods and {r["status"] for r in mine} == {"ok"}
        image = photos.load_image(path, SIZE)
        e = engine.explanation(model, image, "grad_cam")
        assert {int(r["class"]) for r in mine} == {int(e.classes)}
        np.testing.assert_allclose(float(mine[0]["probability"]), e.probabilities, rtol=1e-4)

        maps = np.load(out / mine[0]["maps"])
        assert sorted(maps.files) == sorted([*methods, "classes", "probabilities"])
        assert maps["grad_cam"].shape == (1, SIZE, SIZE) and maps["grad_cam"].dtype == np.float16
        assert maps["guided_backprop"].shape == (1, SIZE, SIZE, 3) and maps["guided_backprop"].dtype == np.float32
        for method in methods:  # the stored maps are explain's on the same photo
            expected = engine.explain(model, image, method)
            tolerance = 1e-3 if method == "grad_cam" or method == "grad_cam++" else 1e-5 * np.abs(expected).max()
            np.testing.assert_allclose(maps[method][0], expected, atol=tolerance)
        # the peak and the box in the CSV are those of the map
        m = engine.explain(model, image, "grad_cam")  # (S, S)
        x, y = int(mine[0]["peak_x"]), int(mine[0]["peak_y"])
        assert m[y, x] >= m.max() - 1e-6
        box = tuple(int(mine[0][k]) for k in ("box_x0", "box_y0", "box_x1", "box_y1"))
        assert box == metrics.box_from_map(m, 0.15)

        overlay = Image.open(out / mine[0]["overlay"])
        assert overlay.size == (3 * SIZE + 2 * 2, SIZE + cli.TITLE_HEIGHT)  # one panel per method
        assert mine[0]["overlay"] == f"overlays/{name}.png"
    assert not list(out.rglob("*.tmp"))


def test_exit_code_0_when_every_photo_is_read(tiny, tmp_path, capsys):
    root = write_photos(tmp_path / "in", GOOD[:3], [])
    assert run(root, "--out", tmp_path / "out", "--model", tiny) == 0
    assert "photos explained: 3;" in capsys.readouterr().out


def test_top_k_and_named_classes(tiny, tmp_path):
    root = write_photos(tmp_path / "in", GOOD[:2], [])
    assert run(root, "--out", tmp_path / "top", "--model", tiny, "--classes", "top3", "--fit", "pad") == 0
    rows = read_rows(tmp_path / "top")
    assert len(rows) == 2 * 3 and [int(r["rank"]) for r in rows[:3]] == [1, 2, 3]
    p = [float(r["probability"]) for r in rows[:3]]
    assert p == sorted(p, reverse=True)
    model = keras.saving.load_model(tiny)
    image = photos.load_image(rows[0]["path"], SIZE, "pad")
    logits = np.asarray(model(image[None].astype("float32")))[0]
    assert [int(r["class"]) for r in rows[:3]] == list(np.argsort(-logits)[:3])
    maps = np.load(tmp_path / "top" / rows[0]["maps"])
    assert maps["grad_cam"].shape == (3, SIZE, SIZE) and list(maps["classes"]) == [int(r["class"]) for r in rows[:3]]
    expected = engine.explain(model, image, "grad_cam", classes=np.argsort(-logits)[None, :3])  # (3, S, S)
    np.testing.assert_allclose(maps["grad_cam"], expected, atol=1e-3)
    overlay = Image.open(tmp_path / "top" / rows[0]["overlay"])
    assert overlay.size == (SIZE, 3 * (SIZE + cli.TITLE_HEIGHT) + 2 * 2)  # one row of panels per class

    assert run(root, "--out", tmp_path / "named", "--model", tiny, "--classes", "4,0") == 0
    assert [(r["class"], r["name"]) for r in read_rows(tmp_path / "named")[:2]] == [("4", ""), ("0", "")]


def test_a_second_run_skips_what_is_done(tiny, tmp_path, monkeypatch):
    root, out = write_photos(tmp_path / "in"), tmp_path / "out"
    assert run(root, "--out", out, "--model", tiny, "--batch-size", 3) == 1
    first = read_rows(out)
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.suffix in (".png", ".npz")}
    explained = counting(monkeypatch)
    assert run(root, "--out", out, "--model", tiny, "--batch-size", 3) == 1  # the bad files are tried again
    assert explained == []  # nothing computed again
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    assert sorted(map(str, read_rows(out))) == sorted(map(str, first))  # the same rows, no duplicates


def test_an_interrupted_run_goes_on_where_it_stopped(tiny, tmp_path, monkeypatch, capsys):
    root, out = write_photos(tmp_path / "in", GOOD, []), tmp_path / "out"
    real, batches = cli.explain_batch, []

    def interrupted(model, images, s):
        batches.append(len(images))
        if len(batches) == 2:
            raise KeyboardInterrupt  # Ctrl-C while the second batch runs
        return real(model, images, s)

    def no_model(*args):
        raise KeyboardInterrupt  # Ctrl-C while the model loads

    monkeypatch.setattr(cli, "load", no_model)
    assert run(root, "--out", out, "--model", tiny) == cli.EXIT_INTERRUPTED
    assert "Traceback" not in capsys.readouterr().err
    monkeypatch.undo()
    monkeypatch.setattr(cli, "explain_batch", interrupted)
    assert run(root, "--out", out, "--model", tiny, "--batch-size", 4) == cli.EXIT_INTERRUPTED
    assert "run the same command" in capsys.readouterr().err
    assert len(read_rows(out)) == 4  # the first batch, saved

    # killed while writing: the last photo's row cut short, and a photo whose overlay is missing
    text = (out / "results.csv").read_bytes()
    (out / "results.csv").write_bytes(text[: len(text) - 30])
    first = read_rows(out)
    assert first[-1]["maps"] is None  # the cut row
    (out / first[0]["overlay"]).unlink()
    explained = counting(monkeypatch)
    assert run(root, "--out", out, "--model", tiny, "--batch-size", 4) == 0
    assert sum(explained) == len(GOOD) - 2  # the two intact photos of the first batch are not redone
    rows = read_rows(out)
    assert sorted(r["path"] for r in rows) == sorted(str(root / name) for name in GOOD)
    assert all(r["status"] == "ok" and (out / r["overlay"]).is_file() for r in rows)


def test_other_settings_or_other_photos_into_the_same_folder_are_refused(tiny, tmp_path, capsys):
    root, out = write_photos(tmp_path / "in", GOOD[:1], []), tmp_path / "out"
    assert run(root, "--out", out, "--model", tiny) == 0
    assert run(root, "--out", out, "--model", tiny, "--method", "cam") == 2
    assert "other settings (methods: ['grad_cam'] then, ['cam'] now)" in capsys.readouterr().err
    other = write_photos(tmp_path / "other", GOOD[:1], [])  # a/red.jpg again: the same output name
    assert run(other, "--out", out, "--model", tiny) == 2
    assert "already holds the overlay of" in capsys.readouterr().err


@pytest.mark.parametrize(
    "args, message",
    [
        (["--method", "grad_kam"], "unknown method 'grad_kam'"),
        (["--model", "resnet5"], "neither a model name"),
        (["--model", "missing.keras"], "no model file at missing.keras"),
        (["--classes", "zebra"], "names are ImageNet's"),
        (["--layer", "nope"], "has no layer 'nope'"),
        (["--size", "64"], "takes 32 x 32 images"),
        (["--batch-size", "0"], "at least 1"),
    ],
)
def test_usage_errors_exit_2_with_one_line(tiny, tmp_path, capsys, args, message):
    root = write_photos(tmp_path / "in", GOOD[:1], [])
    model = [] if "--model" in args else ["--model", tiny]
    assert run(root, "--out", tmp_path / "out", *model, *args) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and "Traceback" not in err


def test_the_module_runs_as_a_program(tiny, tmp_path):
    """python -m camlib.cli, as tasks.py runs it: the exit code and one line per bad photo."""
    root = write_photos(tmp_path / "in", GOOD[:1], BAD[:1])
    done = subprocess.run([sys.executable, "-m", "camlib.cli", str(root), "--out", str(tmp_path / "out"),
                           "--model", str(tiny)], cwd=ROOT, capture_output=True, text=True)  # fmt: skip
    assert done.returncode == 1, done.stderr
    lines = [line for line in done.stderr.splitlines() if "corrupt.jpg" in line]
    assert len(lines) == 1 and "unreadable" in lines[0] and "Traceback" not in done.stderr
    assert "photos explained: 1, could not be read: 1" in done.stdout


# ---------------------------------------------------------------------------
# Model files


def test_lambda_model_refused_unless_unsafe(lambda_model, tmp_path, capsys):
    with pytest.raises(model_files.UnsafeModelError, match="Lambda layer.*--unsafe"):
        model_files.load_model_file(lambda_model)
    model = model_files.load_model_file(lambda_model, unsafe=True)
    x = np.full((1, SIZE, SIZE, 3), 255.0, np.float32)
    np.testing.assert_allclose(model(x), tiny_cnn()(x), atol=1e-6)  # x / 255 as Rescaling does

    root = write_photos(tmp_path / "in", GOOD[:1], [])
    assert run(root, "--out", tmp_path / "out", "--model", lambda_model) == 2
    assert "--unsafe" in capsys.readouterr().err
    assert run(root, "--out", tmp_path / "out", "--model", lambda_model, "--unsafe") == 0


def test_project_layers_load(tmp_path):
    model = tiny_cnn(models.Preprocess("tf"))
    model.save(tmp_path / "pre.keras")
    loaded = model_files.load_model_file(tmp_path / "pre.keras")
    assert isinstance(loaded.layers[1], models.Preprocess)
    x = np.random.default_rng(0).uniform(0, 255, (2, SIZE, SIZE, 3)).astype(np.float32)
    np.testing.assert_allclose(loaded(x), model(x), atol=1e-6)


def _rewritten(source: Path, target: Path, change) -> Path:
    """A copy of a .keras archive with its config.json changed by `change(config)`."""
    with zipfile.ZipFile(source) as z, zipfile.ZipFile(target, "w") as out:
        for name in z.namelist():
            data = z.read(name)
            if name == "config.json":
                config = json.loads(data)
                change(config)
                data = json.dumps(config)
            out.writestr(name, data)
    return target


def test_broken_and_foreign_files_say_what_to_do(tiny, tmp_path):
    data = tiny.read_bytes()
    (tmp_path / "cut.keras").write_bytes(data[: len(data) // 2])
    (tmp_path / "text.keras").write_text("hello")
    (tmp_path / "old.h5").write_bytes(b"\x89HDF\r\n\x1a\n")
    (tmp_path / "model.pt").write_bytes(b"torch")
    (tmp_path / "folder.keras").mkdir()

    def code(config):  # a config that names a function outside Keras (os.getcwd) as an activation
        conv = next(layer for layer in config["config"]["layers"] if layer["class_name"] == "Conv2D")
        conv["config"]["activation"] = {"module": "os", "class_name": "function", "config": "getcwd",
                                        "registered_name": "getcwd"}  # fmt: skip

    def unknown(config):
        config["config"]["layers"][1]["class_name"] = "MyLayer"
        config["config"]["layers"][1]["module"] = None

    cases = {
        "cut.keras": "not a .keras archive",
        "text.keras": "not a .keras archive",
        "old.h5": "legacy HDF5 file",
        "model.pt": "not a Keras model format",
        "folder.keras": "is a folder",
        _rewritten(tiny, tmp_path / "code.keras", code): "function 'getcwd', which is neither part of Keras",
        _rewritten(tiny, tmp_path / "unknown.keras", unknown): "class 'MyLayer', which is neither part of Keras",
    }
    for name, message in cases.items():
        for unsafe in (False, True):  # --unsafe allows Lambda code, never imports from other modules
            with pytest.raises(model_files.ModelFileError, match=message):
                model_files.load_model_file(tmp_path / name, unsafe=unsafe)
    with zipfile.ZipFile(tmp_path / "empty.keras", "w") as z:
        z.writestr("metadata.json", "{}")
    with pytest.raises(model_files.ModelFileError, match=r"lacks \['config.json', 'model.weights.h5'\]"):
        model_files.load_model_file(tmp_path / "empty.keras")
    with pytest.raises(FileNotFoundError, match="no model file at"):
        model_files.load_model_file(tmp_path / "missing.keras")
    with pytest.raises(model_files.ModelFileError, match="--arch .* only for .weights.h5"):
        model_files.load_model_file(tiny, arch="efficientnet_lite0")


def test_weights_file_with_its_architecture(tmp_path):
    model = models.load_model("efficientnet_lite0", weights=None)  # random: different from the real weights
    path = tmp_path / "mine.weights.h5"
    model.save_weights(path)
    loaded = model_files.load_model_file(path, arch="efficientnet_lite0")
    for a, b in zip(model.weights, loaded.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    with pytest.raises(model_files.ModelFileError, match="holds weights only.*--arch"):
        model_files.load_model_file(path)
    with pytest.raises(model_files.ModelFileError, match="unknown architecture"):
        model_files.load_model_file(path, arch="efficientnet_lite9")
    tiny_cnn().save_weights(tmp_path / "tiny.weights.h5")
    with pytest.raises(model_files.ModelFileError, match="do not fit the architecture 'efficientnet_lite0'"):
        model_files.load_model_file(tmp_path / "tiny.weights.h5", arch="efficientnet_lite0")
    (tmp_path / "cut.weights.h5").write_bytes(path.read_bytes()[:5000])
    with pytest.raises(model_files.ModelFileError, match="not a readable HDF5 weights file"):
        model_files.load_model_file(tmp_path / "cut.weights.h5", arch="efficientnet_lite0")


def test_a_keras_file_saved_under_jax_is_explained_here(tmp_path):
    """tests/data/tiny_cnn_jax.keras was saved by Keras 3 on JAX (make_jax_model.py)."""
    expected = np.load(DATA / "tiny_cnn_jax_expected.npz")
    assert str(expected["backend"]) == "jax"
    model = model_files.load_model_file(DATA / "tiny_cnn_jax.keras")
    np.testing.assert_allclose(model(expected["pixels"].astype("float32")), expected["logits"], atol=1e-5)
    root = write_photos(tmp_path / "in", GOOD[:2], [])
    assert run(root, "--out", tmp_path / "out", "--model", DATA / "tiny_cnn_jax.keras", "--method", "cam,grad_cam") == 0
    rows = read_rows(tmp_path / "out")
    assert len(rows) == 4 and rows[0]["name"] == ""
    maps = np.load(tmp_path / "out" / rows[0]["maps"])
    np.testing.assert_allclose(maps["cam"], maps["grad_cam"], atol=1e-3)  # a GAP head: CAM = Grad-CAM


# ---------------------------------------------------------------------------
# The real model, end to end


def test_the_dog_photo_with_efficientnet_lite0(tmp_path):
    out = tmp_path / "out"
    assert run(ROOT / "images" / "dog.jpg", "--out", out) == 0  # the defaults: efficientnet_lite0, grad_cam
    (row,) = read_rows(out)
    assert 151 <= int(row["class"]) <= 268 and row["name"] == photos.CLASS_NAMES[int(row["class"])]  # a dog
    assert row["overlay"] == "overlays/dog.jpg.png" and Image.open(out / row["overlay"]).size == (224, 240)
    model = models.load_model("efficientnet_lite0")
    expected = engine.explain(model, photos.load_image(ROOT / "images" / "dog.jpg"), "grad_cam")
    np.testing.assert_allclose(np.load(out / row["maps"])["grad_cam"][0], expected, atol=1e-3)
    x0, y0, x1, y1 = (int(row[k]) for k in ("box_x0", "box_y0", "box_x1", "box_y1"))
    assert x0 <= int(row["peak_x"]) < x1 and y0 <= int(row["peak_y"]) < y1
    assert int(row["peak_x"]) < 150  # on the dog, in the left half of the photo, not on the bicycle
