"""Tests of efficientnet_lite: the Keras model against a numpy reference, and the checkpoint reader."""

import collections
import os
import pickle
import subprocess
from pathlib import Path

import numpy as np
import pytest
import skimage.data
from PIL import Image
from reference_lite import reference_logits

from camlib import efficientnet_lite as lite

ROOT = Path(__file__).resolve().parent.parent

ESPRESSO = 967
PHOTOS = {
    "coffee": skimage.data.coffee,
    "chelsea": skimage.data.chelsea,
    "eagle": lambda: np.asarray(Image.open(ROOT / "images" / "eagle.jpg").convert("RGB")),
}


def photo(name: str, size: int) -> np.ndarray:
    """The photo `name` as uint8 RGB (1, size, size, 3): centre square crop, then bicubic resize."""
    image = PHOTOS[name]()
    h, w, _ = image.shape
    s = min(h, w)
    square = image[(h - s) // 2 : (h - s) // 2 + s, (w - s) // 2 : (w - s) // 2 + s]
    return np.asarray(Image.fromarray(square).resize((size, size), Image.Resampling.BICUBIC))[None]


def softmax(logits: np.ndarray) -> np.ndarray:
    """Probabilities (N, 1000) from logits (N, 1000)."""
    e = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


@pytest.fixture(scope="module")
def states() -> dict[str, dict[str, np.ndarray]]:
    """Each variant's state dict, read once per module."""
    return {name: lite.read_state_dict(lite.checkpoint_path(name)) for name in lite.VARIANTS}


@pytest.fixture(scope="module")
def keras_lite0(states):
    """The Keras EfficientNet-Lite0, built once per module."""
    return lite.build("efficientnet_lite0", states["efficientnet_lite0"])


def check_against_reference(model, state, image) -> np.ndarray:
    """Assert the Keras logits for `image` (1, H, W, 3) match the numpy reference; return them (1, 1000)."""
    logits = model.predict(image, verbose=0)
    expected = reference_logits(state, image)
    assert logits.shape == expected.shape == (1, 1000)
    np.testing.assert_allclose(logits, expected, rtol=0, atol=1e-3)
    return logits


@pytest.mark.parametrize("name", PHOTOS)
def test_lite0_matches_reference(keras_lite0, states, name):
    check_against_reference(keras_lite0, states["efficientnet_lite0"], photo(name, 224))


def test_lite0_recognises_espresso(keras_lite0):
    probs = softmax(keras_lite0.predict(photo("coffee", 224), verbose=0))
    assert probs.argmax() == ESPRESSO and probs.max() > 0.85


@pytest.mark.parametrize("variant", ["efficientnet_lite1", "efficientnet_lite2"])
def test_larger_variants_match_reference(states, variant):
    size = lite.VARIANTS[variant][1]
    model = lite.build(variant, states[variant])
    assert model.input_shape == (None, size, size, 3)
    logits = check_against_reference(model, states[variant], photo("coffee", size))
    assert logits.argmax() == ESPRESSO


def test_state_dict_contents(states):
    state = states["efficientnet_lite0"]
    assert len(state) == 296
    assert state["_fc.weight"].shape == (1000, 1280)
    assert state["_fc.weight"].dtype == np.float32


# ---------------------------------------------------------------------------
# The restricted reader on hostile or broken files


def legacy_checkpoint(state_dict) -> bytes:
    """The bytes of a legacy PyTorch file holding `state_dict` and no storages."""
    magic, protocol = 0x1950A86A20F9469CFC6C, 1001
    sys_info = {"protocol_version": protocol, "little_endian": True, "type_sizes": {"short": 2, "int": 4, "long": 4}}
    return b"".join(pickle.dumps(obj, protocol=2) for obj in (magic, protocol, sys_info, state_dict, []))


class Call:
    """Pickles as a call of `func(*args)`, executed by whoever unpickles it."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def test_legacy_checkpoint_builder_is_accepted(tmp_path):
    path = tmp_path / "empty.pth"
    path.write_bytes(legacy_checkpoint(collections.OrderedDict()))
    assert lite.read_state_dict(path) == {}


@pytest.mark.parametrize(
    "payload",
    [
        lambda marker: Call(os.system, f"touch {marker}"),
        lambda marker: Call(eval, f"open({str(marker)!r}, 'w').close()"),
        lambda marker: Call(subprocess.run, ["touch", str(marker)]),
    ],
    ids=["os.system", "builtins.eval", "subprocess.run"],
)
def test_code_in_checkpoint_is_refused(tmp_path, payload):
    marker = tmp_path / "pwned"
    evil = collections.OrderedDict({"_fc.bias": payload(marker)})
    path = tmp_path / "evil.pth"
    path.write_bytes(legacy_checkpoint(evil))
    with pytest.raises(lite.CheckpointError, match="refusing to load"):
        lite.read_state_dict(path)
    assert not marker.exists()
    with path.open("rb") as f:  # control: a plain unpickler does run the payload in this file
        for _ in range(4):
            pickle.load(f)
    assert marker.exists()


def test_truncated_checkpoint_is_refused(tmp_path):
    data = lite.checkpoint_path("efficientnet_lite0").read_bytes()
    path = tmp_path / "truncated.pth"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(lite.CheckpointError, match="truncated"):
        lite.read_state_dict(path)


def test_zip_checkpoint_is_refused(tmp_path):
    path = tmp_path / "zipped.pth"
    path.write_bytes(b"PK\x03\x04" + bytes(100))
    with pytest.raises(lite.CheckpointError, match="zip"):
        lite.read_state_dict(path)


def test_random_bytes_are_refused(tmp_path):
    path = tmp_path / "noise.pth"
    path.write_bytes(np.random.default_rng(0).bytes(1 << 16))
    with pytest.raises(lite.CheckpointError):
        lite.read_state_dict(path)
