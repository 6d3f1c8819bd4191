"""The figures: where they are saved, how many pixels, how a signed map is drawn over its photo."""

import os
import subprocess
import sys
from pathlib import Path

import matplotlib
import numpy as np
from PIL import Image

import helpers
from camlib import plots

matplotlib.use("Agg")
ROOT = Path(__file__).resolve().parents[1]


def test_figures_go_to_artifacts_unless_cam_figures_says_otherwise(tmp_path):
    code = "import camlib.plots as p; print(p.FIGURES)"
    env = {k: v for k, v in os.environ.items() if k != "CAM_FIGURES"}
    default = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True)
    assert Path(default.stdout.strip()) == ROOT / "artifacts" / "figures"
    chosen = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env={**env, "CAM_FIGURES": str(tmp_path)},
                            capture_output=True, text=True)  # fmt: skip
    assert Path(chosen.stdout.strip()) == tmp_path


def test_a_saved_figure_fills_a_1920_x_1080_screen(tmp_path):
    photo = helpers.example("dog", 64)
    heat = np.linspace(0, 1, 64 * 64).reshape(64, 64)
    for cols, name in [(2, "two.jpg"), (9, "nine.png")]:
        plots.show([(photo, heat)] * cols, ["Grad-CAM: malamute"] * cols, path=tmp_path / name)
        width, height = Image.open(tmp_path / name).size
        assert width >= 1900 or height >= 1060, (name, width, height)  # one side reaches the screen's
        assert width <= 2600 and height <= 1500, (name, width, height)  # and not much more
    assert Image.open(tmp_path / "two.jpg").format == "JPEG"


def test_a_signed_map_over_its_photo():
    photo = np.full((4, 4, 3), 128, np.uint8)
    signed = np.array([[0.0, 1.0, -1.0, 0.5]] * 4)  # none, for, against, half for
    drawn = plots.overlay(photo, signed)  # (4, 4, 3) in [0, 1]
    np.testing.assert_allclose(drawn[:, 0], 128 / 255)  # 0: the photo shows through
    red, green, blue = drawn[0, 1]
    assert red > blue + 0.2 and red > green + 0.2  # for the class: red
    red, green, blue = drawn[0, 2]
    assert blue > red + 0.2  # against: blue
    assert abs(drawn[0, 3] - 128 / 255).max() < abs(drawn[0, 1] - 128 / 255).max()  # half as strong
    assert {plots._kind((photo, signed)), plots._kind((photo, np.abs(signed))), plots._kind(photo)} == {
        "signed", "heat", "photo"}
