"""Shared fixtures: the real models (loaded once per session) and tiny seeded models."""

import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

import helpers  # noqa: E402


@pytest.fixture(scope="session")
def lite0():
    return helpers.load_model("efficientnet_lite0")


def shared_model(name):
    """keras.applications `name` with the real weights in ../shared/models, or a skip."""
    path = helpers.shared_weights(name)
    if path is None:
        pytest.skip(f"no real weights for {name} in {helpers.SHARED_MODELS} (the shared folder is absent)")
    return helpers.load_model(name, weights=path)


@pytest.fixture(scope="session")
def mobilenet_v2():
    return shared_model("mobilenet_v2")


@pytest.fixture(scope="session")
def mobilenet():
    return shared_model("mobilenet")


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture
def float32_policy():
    """Restores the float32 dtype policy after a test that changes it."""
    yield
    keras.mixed_precision.set_dtype_policy("float32")


# The quick tier (python3 tasks.py test -m "not slow", a few minutes): everything except the
# browsers, the notebook re-executed by nbval and the tests that build every architecture.
SLOW_FILES = {"test_presentation.py", "test_lab.py", "cam.ipynb"}
SLOW_TESTS = ("test_browser_", "test_every_architecture_every_method", "test_real_slow_methods")


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.path.name in SLOW_FILES or item.name.startswith(SLOW_TESTS):
            item.add_marker(pytest.mark.slow)
