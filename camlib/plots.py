"""Plots: one colour map, fixed panel sizes, titles that name the method and the class.

`overlay` draws a map over its photo, `gradient_image` shows guided gradients, `show`
draws a grid of panels with a colour bar, `show_raw` draws maps in their own units (the
h x w grid before upsampling), `plot_sanity`, `plot_deletion` and `plot_evaluation` draw
the metrics' results. A figure given a `path` is saved there with about the pixels it
fills on a 1920 x 1080 screen; the notebook's figures go to `FIGURES`.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from camlib.engine import METHODS
from camlib.photos import CLASS_NAMES, ROOT

CMAP = "turbo"  # one colour map for every heat map
SIGNED_CMAP = "RdBu_r"  # diverging, for maps where the sign matters
PANEL = 2.6  # inches per panel
SCREEN = (1920, 1080)  # a saved figure has about the pixels it fills on this screen
# Where the notebook saves its figures: the ignored artifacts/figures/, unless $CAM_FIGURES
# says otherwise (`python3 tasks.py notebook` points it at images/, the committed figures).
FIGURES = Path(os.environ.get("CAM_FIGURES") or ROOT / "artifacts" / "figures")
HEAT_LABEL = "evidence for the class: 0 = none, 1 = the map's peak"
SIGNED_LABEL = "for the class (red) or against it (blue)"


def overlay(image, cam, alpha: float = 0.5, cmap: str = CMAP) -> np.ndarray:
    """The map drawn over the photo: (S, S, 3) uint8 + (S, S) in [0, 1] -> (S, S, 3) float.
    A signed map, in [-1, 1] with negative values, is drawn with the diverging colour map,
    each pixel as opaque as |map| (the photo shows through where the map is 0)."""
    import matplotlib

    photo = np.asarray(image, np.float32) / 255.0
    if np.min(cam) < 0:
        colour = matplotlib.colormaps[SIGNED_CMAP]((np.clip(cam, -1, 1) + 1) / 2)[..., :3]
        weight = 0.85 * np.abs(np.clip(cam, -1, 1))[..., None]
        return (1 - weight) * photo + weight * colour
    heat = matplotlib.colormaps[cmap](np.clip(cam, 0, 1))[..., :3]
    return (1 - alpha) * photo + alpha * heat


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
    overlay (a signed map in [-1, 1] with the diverging colour map), or an (S, S) signed map
    alone, with a colour bar for each kind of map shown. Fixed panel size; saves to `path` when given;
    returns nothing (ends with plt.show())."""
    import matplotlib.pyplot as plt

    panels = list(panels)
    cols = cols or len(panels)
    rows = -(-len(panels) // cols)
    fig, axes = _grid(rows, cols)
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
            ax.set_title(_fit(titles[i]), fontsize=_font(cols))
    kinds = {_kind(panel) for panel in panels}
    if "heat" in kinds:
        _colour_bar(fig, axes, plt.Normalize(0, 1), CMAP, HEAT_LABEL)
    if "signed" in kinds:
        _colour_bar(fig, axes, plt.Normalize(-1, 1), SIGNED_CMAP, SIGNED_LABEL)
    _finish(fig, path)


def _kind(panel) -> str:
    """What `show` draws for a panel: "heat" (an (image, map) pair), "signed" (a map with
    negative values, alone or over its image) or "photo"."""
    if isinstance(panel, tuple):
        return "signed" if np.min(panel[1]) < 0 else "heat"
    return "signed" if np.ndim(panel) == 2 else "photo"


def show_raw(maps, titles=None, label: str = "value", cols: int | None = None, shared: bool = True,
             path: str | Path | None = None):
    """Draw (h, w) maps in their own units, before any ReLU, upsampling or scaling: one
    square per position, a diverging colour map centred on 0, and one colour bar shared by
    every panel (so that panels which add up can be compared) or, with shared=False, one
    per panel."""
    import matplotlib.pyplot as plt

    maps = [np.asarray(m, np.float64) for m in maps]
    cols = cols or len(maps)
    fig, axes = _grid(-(-len(maps) // cols), cols)
    limits = [float(np.abs(m).max()) or 1.0 for m in maps]
    if shared:
        limits = [max(limits)] * len(maps)
    for ax, m, limit, t in zip(axes.flat, maps, limits, titles or [None] * len(maps)):
        image = ax.imshow(m, cmap=SIGNED_CMAP, vmin=-limit, vmax=limit, interpolation="nearest")
        if t is not None:
            ax.set_title(_fit(t), fontsize=_font(cols))
        if not shared:
            fig.colorbar(image, ax=ax, shrink=0.8).ax.tick_params(labelsize=7)
    if shared:
        _colour_bar(fig, axes, plt.Normalize(-limits[0], limits[0]), SIGNED_CMAP, label)
    else:
        fig.suptitle(label, fontsize=9)
    _finish(fig, path)


def show_steps(raw, photo, titles=None, label: str = "contribution to the logit", path: str | Path | None = None):
    """A class map's last steps, one panel each: the raw (h, w) map in its own units (each
    position's value written on it), its ReLU, and that upsampled to the photo (S, S, 3),
    scaled to [0, 1] and laid over it."""
    import matplotlib.pyplot as plt

    from camlib.methods import upsample_and_scale

    raw = np.asarray(raw, np.float64)  # (h, w)
    relu = np.maximum(raw, 0)
    heat = upsample_and_scale(relu[None].astype(np.float32), photo.shape[:2]).numpy()[0]  # (S, S)
    fig, axes = _grid(1, 3)
    limit = float(np.abs(raw).max()) or 1.0
    for ax, m in zip(axes.flat, (raw, relu)):
        ax.imshow(m, cmap=SIGNED_CMAP, vmin=-limit, vmax=limit, interpolation="nearest")
        if m.size <= 100:  # small enough to read every number
            for (i, j), v in np.ndenumerate(m):
                ax.text(j, i, f"{v:.1f}", ha="center", va="center", fontsize=6)
    axes.flat[2].imshow(overlay(photo, heat))
    for ax, t in zip(axes.flat, titles or ("raw map", "ReLU", "upsampled, scaled, over the photo")):
        ax.set_title(_fit(t), fontsize=_font(3))
    _colour_bar(fig, axes[:, :2], plt.Normalize(-limit, limit), SIGNED_CMAP, label)
    _colour_bar(fig, axes[:, 2:], plt.Normalize(0, 1), CMAP, HEAT_LABEL)
    _finish(fig, path)


def _font(cols: int) -> float:
    """Title size for a grid `cols` panels wide: larger for wide grids, which are shown smaller."""
    return min(14.0, max(9.0, 1.6 * cols))


def _grid(rows: int, cols: int):
    """A figure of rows x cols panels of fixed size, axes off, laid out to leave room for colour bars."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(
        rows, cols, figsize=(PANEL * cols + 0.9, PANEL * rows + 0.3 * rows), squeeze=False, layout="constrained"
    )
    for ax in axes.flat:
        ax.axis("off")
    return fig, axes


def _colour_bar(fig, axes, norm, cmap: str, label: str):
    """One colour bar beside the whole grid."""
    import matplotlib.pyplot as plt

    bar = fig.colorbar(plt.cm.ScalarMappable(norm=norm, cmap=cmap), ax=axes, shrink=min(0.9, 0.6 + 0.1 * len(axes)))
    size = _font(axes.shape[1]) - 1
    bar.set_label(label, fontsize=size)
    bar.ax.tick_params(labelsize=size)


def _fit(title: str, width: int = 28) -> str:
    """A title too long for a panel breaks after its method name ("Counterfactual:\n mountain bike")."""
    return title if "\n" in title or len(title) <= width else title.replace(": ", ":\n", 1)


def plot_sanity(result, path: str | Path | None = None):
    """The cascading-randomisation curves of `sanity_check`: the mean rank correlation with
    the trained model's map against how far down the network has been re-initialised."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(2 * PANEL, 1.2 * PANEL), layout="constrained")
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
    fig, axes = plt.subplots(1, len(metrics_), figsize=(1.5 * PANEL * len(metrics_), 1.3 * PANEL), layout="constrained")
    names = [title(row["method"], 0).split(":")[0] if row["method"] in METHODS else row["method"] for row in rows]
    for ax, (key, name) in zip(np.atleast_1d(axes), metrics_):
        ax.bar(range(len(rows)), [row[key] for row in rows], color=plt.cm.tab10(np.arange(len(rows))))
        ax.set_xticks(range(len(rows)), names, rotation=45, ha="right", fontsize=8)
        ax.set_title(name, fontsize=9)
    _finish(fig, path)


def plot_deletion(curves: dict, path: str | Path | None = None):
    """Deletion curves: {name: probabilities (steps + 1,)} against the fraction of pixels deleted."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(2 * PANEL, 1.3 * PANEL), layout="constrained")
    for name, p in curves.items():
        p = np.asarray(p)
        area = np.trapezoid(p, dx=1 / (len(p) - 1))
        ax.plot(np.linspace(0, 1, len(p)), p, marker="o", ms=3, label=f"{name} (area {area:.2f})")
    ax.set_xlabel("fraction of the pixels deleted")
    ax.set_ylabel("probability of the class")
    ax.set_ylim(0, None)
    ax.legend(fontsize=8)
    _finish(fig, path)


def _finish(fig, path):
    """Show the figure; save it first when given a path (JPEG for .jpg, quality 90), with
    about as many pixels as it fills on a 1920 x 1080 screen (the tight box can add a few)."""
    import matplotlib.pyplot as plt

    if fig.get_layout_engine() is None:
        fig.tight_layout()
    if path is not None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.canvas.draw()  # lay it out, then measure what bbox_inches="tight" keeps (inches)
        box = fig.get_tightbbox(fig.canvas.get_renderer())
        dpi = max(100, int(min(SCREEN[0] / box.width, SCREEN[1] / box.height)))  # fills the screen, no more
        jpeg = {"pil_kwargs": {"quality": 90}} if path.suffix.lower() in (".jpg", ".jpeg") else {}
        fig.savefig(path, dpi=dpi, bbox_inches="tight", **jpeg)
    plt.show()
    plt.close(fig)
