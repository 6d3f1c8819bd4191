"""Plots: one colour map, fixed panel sizes, titles that name the method and the class.

`overlay` draws a map over its photo, `gradient_image` shows guided gradients, `show`
draws a grid of panels, `plot_sanity` and `plot_evaluation` draw the metrics' results.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from camlib.engine import METHODS
from camlib.photos import CLASS_NAMES

CMAP = "turbo"  # one colour map for every heat map
SIGNED_CMAP = "RdBu_r"  # diverging, for maps where the sign matters
PANEL = 2.6  # inches per panel


def overlay(image, cam, alpha: float = 0.5, cmap: str = CMAP) -> np.ndarray:
    """The map drawn over the photo: (S, S, 3) uint8 + (S, S) in [0, 1] -> (S, S, 3) float."""
    import matplotlib

    heat = matplotlib.colormaps[cmap](np.clip(cam, 0, 1))[..., :3]
    return (1 - alpha) * np.asarray(image, np.float32) / 255.0 + alpha * heat


def gradient_image(g) -> np.ndarray:
    """Guided-backprop gradients (S, S, 3) as a picture: centred, scaled by 4 standard
    deviations, clipped to [0, 1] (the usual display of Springenberg et al.)."""
    g = np.asarray(g, np.float64)
    g = (g - g.mean()) / (4 * g.std() + 1e-12)
    return np.clip(g + 0.5, 0, 1)


NAMES = {  # how each method is written in titles and menus
    "cam": "CAM",
    "grad_cam": "Grad-CAM",
    "grad_cam++": "Grad-CAM++",
    "counterfactual": "Counterfactual",
    "layer_cam": "Layer-CAM",
    "hirescam": "HiResCAM",
    "xgrad_cam": "XGrad-CAM",
    "eigen_cam": "Eigen-CAM",
    "score_cam": "Score-CAM",
    "ablation_cam": "Ablation-CAM",
    "guided_backprop": "Guided Backprop",
    "guided_grad_cam": "Guided Grad-CAM",
    "guided_grad_cam++": "Guided Grad-CAM++",
    "grad_cam++_all": "Grad-CAM++ (all positions)",
    "grad_cam++_raw": "Grad-CAM++ (no normalisation)",
    "grad_cam++_mean": "Grad-CAM++ (spatial mean)",
    "grad_cam_signed": "Grad-CAM (signed)",
}


def title(method: str, class_: int, probability: float | None = None) -> str:
    """ "Grad-CAM++: espresso (0.95)", "(0.0041)" below 0.01 (a class beyond ImageNet's is shown
    by its index)"""
    p = "" if probability is None else f" ({probability:.2f})" if probability >= 0.01 else f" ({probability:.2g})"
    name = CLASS_NAMES[int(class_)] if 0 <= int(class_) < len(CLASS_NAMES) else f"class {int(class_)}"
    return f"{NAMES.get(method, method)}: {name}{p}"


def show(panels, titles=None, cols: int | None = None, path: str | Path | None = None):
    """Draw a grid of panels, each a photo (S, S, 3), an (image, map) pair shown as an
    overlay, or an (S, S) signed map in [-1, 1] shown with the diverging colour map.
    Fixed panel size; saves to `path` when given; returns nothing (ends with plt.show())."""
    import matplotlib.pyplot as plt

    panels = list(panels)
    cols = cols or len(panels)
    rows = -(-len(panels) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(PANEL * cols, PANEL * rows + 0.3 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for i, panel in enumerate(panels):
        ax = axes.flat[i]
        if isinstance(panel, tuple):
            ax.imshow(overlay(*panel))
        elif np.ndim(panel) == 2:
            ax.imshow(panel, cmap=SIGNED_CMAP, vmin=-1, vmax=1)
        else:
            panel = np.asarray(panel)
            ax.imshow(panel if panel.dtype == np.uint8 else np.clip(panel, 0, 1))
        if titles is not None:
            ax.set_title(_fit(titles[i]), fontsize=9)
    _finish(fig, path)


def _fit(title: str, width: int = 34) -> str:
    """A title too long for a panel breaks after its method name ("Counterfactual:\n mountain bike")."""
    return title if "\n" in title or len(title) <= width else title.replace(": ", ":\n", 1)


def plot_sanity(result, path: str | Path | None = None):
    """The cascading-randomisation curves of `sanity_check`: the mean rank correlation with
    the trained model's map against how far down the network has been re-initialised."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(2 * PANEL, 1.2 * PANEL))
    steps = np.arange(len(result.blocks))
    for method, rho in result.spearman.items():
        ax.plot(steps, rho.mean(axis=1), marker="o", label=title(method, 0).split(":")[0])
    ax.axhline(0, color="grey", lw=0.5)
    ax.set_xticks(steps, result.blocks, rotation=60, ha="right", fontsize=8)
    ax.set_xlabel("re-initialised from the output down to")
    ax.set_ylabel("rank correlation with\nthe trained model's map")
    ax.set_ylim(-0.2, 1.05)
    ax.legend(fontsize=8)
    _finish(fig, path)


def plot_evaluation(rows: list[dict], path: str | Path | None = None):
    """The rows of `evaluate` as bars, one panel per metric (arrows: which way is better)."""
    import matplotlib.pyplot as plt

    metrics_ = [
        ("average_drop", "Average Drop % ↓"),
        ("increase", "Increase in Confidence % ↑"),
        ("deletion", "Deletion AUC ↓"),
        ("insertion", "Insertion AUC ↑"),
        ("pointing", "Pointing game ↑"),
    ]
    metrics_ = [(k, name) for k, name in metrics_ if rows[0].get(k) is not None]
    fig, axes = plt.subplots(1, len(metrics_), figsize=(1.5 * PANEL * len(metrics_), 1.3 * PANEL))
    names = [title(row["method"], 0).split(":")[0] if row["method"] in METHODS else row["method"] for row in rows]
    for ax, (key, name) in zip(np.atleast_1d(axes), metrics_):
        ax.bar(range(len(rows)), [row[key] for row in rows], color=plt.cm.tab10(np.arange(len(rows))))
        ax.set_xticks(range(len(rows)), names, rotation=45, ha="right", fontsize=8)
        ax.set_title(name, fontsize=9)
    _finish(fig, path)


def _finish(fig, path):
    import matplotlib.pyplot as plt

    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=80, bbox_inches="tight")
    plt.show()
    plt.close(fig)
