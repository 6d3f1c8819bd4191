"""The explorer: choose a photo, a class, a method and a layer, and see where the network looks.

`explore(model, photos=None)` returns an ipywidgets UI for a notebook or Voila; its
`.explorer` attribute is the `Explorer` behind it, whose state can also be set from Python
(`ui.explorer.method = "grad_cam++"` does what clicking the button does).

Every change costs at most one call of the engine, and opacity or colour-map changes none:
the maps are cached per (photo, method, class, layer, signed). The picture is composed with
numpy and PIL and shown as PNG bytes in an `ipywidgets.Image`, never as a matplotlib figure.
Fast methods run inside the widget callback. Slow ones (Score-CAM, Ablation-CAM: seconds)
run in a background thread, so the kernel keeps handling clicks, with a progress bar and a
Cancel button wired to the engine's `progress` callback. Whatever goes wrong (a file that is
not an image, a guided method on a swish network, a layer without a spatial map) becomes a
message in the UI, never a traceback, and the explorer keeps working.

The pure parts, tested on their own: `method_label`, `class_options`, `parse_class`,
`top_classes`, `picture`, `legend`, `png`, `read_upload`.

Shapes: S x S pixels the model takes; maps (S, S) in [0, 1] ([-1, 1] signed), guided
gradients (S, S, 3).
"""

from __future__ import annotations

import contextlib
import html
import io
import re
import threading
from collections import OrderedDict
from collections.abc import Callable
from types import SimpleNamespace

import ipywidgets as widgets
import numpy as np
import tensorflow as tf
from PIL import Image, UnidentifiedImageError

from camlib import engine, layers, photos, plots

# ---------------------------------------------------------------------------
# Names and choices

COLOUR_MAPS = (plots.CMAP, "jet", "viridis", "inferno", "gray")
SIGNED_COLOUR_MAPS = (plots.SIGNED_CMAP, "coolwarm", "PiYG", "bwr")
MAX_COMPARED = 4
PICTURES_WIDTH = 700  # pixels beside the 560 of the controls


def is_slow(method: str) -> bool:
    """Score-CAM, Ablation-CAM: a forward pass per channel (batched), seconds rather than milliseconds."""
    return method in engine.SLOW


def is_guided(method: str) -> bool:
    """Guided methods return pixel gradients (S, S, 3), shown with `plots.gradient_image`."""
    return method in engine.GUIDED


def method_label(method: str) -> str:
    """The button text: "grad_cam++" -> "Grad-CAM++", "score_cam" -> "Score-CAM (slow)"."""
    name = plots.NAMES.get(method) or "-".join("CAM" if w == "cam" else w.capitalize() for w in method.split("_"))
    return f"{name} (slow)" if is_slow(method) else name


def class_name(index: int, n_classes: int) -> str:
    """ImageNet name for a 1000-class model, "class 3" for any other."""
    return photos.CLASS_NAMES[index] if n_classes == len(photos.CLASS_NAMES) else f"class {index}"


def class_options(n_classes: int) -> list[str]:
    """What the class box completes on: the ImageNet names ("crane (134)" where a name is used
    twice), or the indices "0".."n-1" for a model with other outputs."""
    if n_classes != len(photos.CLASS_NAMES):
        return [str(i) for i in range(n_classes)]
    seen = {}
    for name in photos.CLASS_NAMES:
        seen[name] = seen.get(name, 0) + 1
    return [name if seen[name] == 1 else f"{name} ({i})" for i, name in enumerate(photos.CLASS_NAMES)]


def parse_class(text: str, n_classes: int) -> int:
    """A class typed in the box -> its index: an option ("zebra", "crane (134)"), an index
    ("340"), or for ImageNet any WordNet synonym ("all-terrain bike"). Raises ValueError, with
    close names, when nothing matches."""
    text = text.strip()
    if match := re.fullmatch(r".*\((\d+)\)|(\d+)", text):
        index = int(match.group(1) or match.group(2))
        if not 0 <= index < n_classes:
            raise ValueError(f"class {index} is out of range: this model has classes 0..{n_classes - 1}")
        return index
    if n_classes != len(photos.CLASS_NAMES):
        raise ValueError(f"type a class index 0..{n_classes - 1} (this model has no ImageNet names)")
    return photos.class_index(text)


def percent(p: float) -> str:
    """A probability for a button or a caption: "62%", "3%", "0.4%", "<0.1%"."""
    return f"{p:.0%}" if p >= 0.01 else f"{p:.1%}" if p >= 0.001 else "<0.1%"


def top_classes(logits, k: int = 5) -> list[tuple[int, str, float]]:
    """logits (classes,) -> the k best as (index, name, probability), best first."""
    p = photos.softmax(np.asarray(logits))
    best = np.argsort(-p, kind="stable")[:k]
    return [(int(c), class_name(int(c), len(p)), float(p[c])) for c in best]


# ---------------------------------------------------------------------------
# Pictures


def to_uint8(rgb) -> np.ndarray:
    """(S, S, 3) floats in [0, 1] -> uint8, rounded."""
    return np.round(np.clip(rgb, 0, 1) * 255).astype(np.uint8)


def picture(image, map_, opacity: float = 0.5, cmap: str = plots.CMAP, signed: bool = False) -> np.ndarray:
    """What the explorer shows for one map, uint8 (S, S, 3).

    image (S, S, 3) uint8; map_ (S, S) in [0, 1] -> `plots.overlay` at `opacity`;
    signed (S, S) in [-1, 1] -> the diverging colour of (m + 1) / 2 laid over the photo with
    opacity * |m|, so the photo shows through where the map is 0 (a diverging map is white
    there, and a constant opacity would wash the whole photo out);
    guided gradients (S, S, 3) -> `plots.gradient_image` (opacity and colour map do not apply).
    """
    m = np.asarray(map_, np.float32)
    if m.ndim == 3:
        return to_uint8(plots.gradient_image(m))
    if not signed:
        return to_uint8(plots.overlay(image, m, opacity, cmap))
    import matplotlib

    heat = matplotlib.colormaps[cmap]((np.clip(m, -1, 1) + 1) / 2)[..., :3]  # (S, S, 3)
    alpha = opacity * np.abs(m)[..., None]  # (S, S, 1)
    return to_uint8((1 - alpha) * np.asarray(image, np.float32) / 255 + alpha * heat)


def grid(n_panels: int) -> tuple[int, int]:
    """(columns, pixels per panel) for n pictures (the photo and its map, or 2 to 4 maps compared):
    at most two rows beside the controls, so that all of it fits a 1280 x 720 projector.
    (The PNGs have the model's S x S pixels; the browser scales them.)"""
    return {1: (1, 320), 2: (2, 320), 3: (3, 224), 4: (2, 240)}[max(1, min(n_panels, 4))]


def legend(cmap: str, width: int = 256, height: int = 12) -> np.ndarray:
    """The colour bar under the maps, uint8 (height, width, 3), low (or against) on the left."""
    import matplotlib

    ramp = np.linspace(0, 1, width)[None, :].repeat(height, axis=0)  # (height, width)
    return to_uint8(matplotlib.colormaps[cmap](ramp)[..., :3])


def png(rgb: np.ndarray) -> bytes:
    """uint8 (H, W, 3) -> PNG bytes; the fastest zlib level, since the bytes only cross the
    kernel's socket once (level 6 compresses a little more at about three times the cost)."""
    out = io.BytesIO()
    Image.fromarray(rgb).save(out, format="PNG", compress_level=1)
    return out.getvalue()


def read_upload(data: bytes, name: str, size: int) -> np.ndarray:
    """An uploaded file -> the uint8 (size, size, 3) photo the model sees (`photos.load_image`).
    Raises ValueError naming the file when it is not an image PIL can read."""
    try:
        image = Image.open(io.BytesIO(data))
        image.load()
    except UnidentifiedImageError as e:
        raise ValueError(f"{name} is not an image: upload a JPEG, PNG, WebP, BMP, GIF or TIFF file") from e
    except Exception as e:  # an image PIL recognises but cannot decode: say why
        raise ValueError(f"{name} is not an image that can be read ({e})") from e
    return photos.load_image(image, size)


# ---------------------------------------------------------------------------
# The engine, as the explorer calls it


def _explanation(model, image, method, class_, layer, signed, progress):
    """`engine.explanation` for one image and one class (None: its top-1); `progress` (done, total)
    -> bool reaches only the slow methods, which raise `engine.Cancelled` when it returns False."""
    options = {"signed": True} if signed else {}
    if is_slow(method):
        options["progress"] = progress or False  # False: no tqdm bar in the kernel's log
    return engine.explanation(model, image, method, class_, layer, **options)


class _Job:
    """A slow computation in a background thread; `cancelled` is what its progress callback reads."""

    def __init__(self, target: Callable[[_Job], None], keys: list[tuple]):
        self.keys = keys  # what it computes
        self.cancelled = threading.Event()
        self.thread = threading.Thread(target=target, args=(self,), daemon=True, name="cam-explorer")


# ---------------------------------------------------------------------------
# The explorer

CSS = """<style>
.cam-explorer { font-size: 15px; gap: 12px; }
.cam-explorer .widget-label, .cam-explorer .widget-html-content, .cam-explorer button,
.cam-explorer select, .cam-explorer input { font-size: 15px; }
.cam-explorer .cam-wrap { display: flex; align-items: flex-start; }
.cam-explorer .cam-wrap > label { flex-shrink: 0; text-align: right; margin-right: 8px; line-height: 28px; }
.cam-explorer .cam-wrap > div:last-child { display: flex; flex-wrap: wrap; gap: 4px; }
.cam-explorer .cam-wrap button { margin: 0 !important; }
.cam-explorer .widget-checkbox { width: auto; margin-left: 80px; }
.cam-explorer .cam-wrap button.mod-active, .cam-explorer .cam-choice button.mod-active {
  background: #1565c0; color: white; }
.cam-explorer .cam-upload { font-size: 0 !important; }  /* ipywidgets writes "(0)", a count of files */
.cam-explorer .cam-upload i { font-size: 15px; margin-right: 6px; }
.cam-explorer .cam-upload::after { content: "Upload a photo"; font-size: 15px; }
.cam-explorer .cam-caption { text-align: center; line-height: 1.3; }
.cam-explorer .cam-message .widget-html-content { color: #a40000; font-weight: 600; }
.cam-explorer h3 { margin: 0 0 4px 0; }
</style>"""


class Explorer:
    """The state and the widgets of one explorer. Set from Python: `photo`, `class_`, `method`,
    `layer`, `opacity`, `cmap`, `signed`, `compare`; read: `picture` / `pictures` (PNG bytes),
    `message`, `result(method)`; `wait()` for a slow method running in the background."""

    def __init__(self, model, photos=None, cache_size: int = 48):
        self.model = model
        self.size, self.n_classes = _model_facts(model)
        self.methods = list(engine.METHODS)  # read now: the engine grows new methods
        self._photos = _photo_sources(photos, self.size)  # name -> array or loader
        self._arrays: dict[str, np.ndarray] = {}
        self._pngs: dict = {}  # photo name (or colour bar) -> PNG bytes, encoded once
        self._top_of: str | None = None  # the photo whose top-5 the class buttons show
        self._logits: dict[str, np.ndarray] = {}
        self._cache: OrderedDict = OrderedDict()  # (photo, method, class, layer, signed) -> Explanation
        self._cache_size = cache_size
        self._class: int | None = None  # None: the photo's top-1, resolved at the next refresh
        self._compared: list[str] = []  # in the order they were ticked
        self._lock = threading.RLock()  # one engine call at a time: tracing swaps layer methods
        self._job: _Job | None = None
        self._holding = 0
        self.w = self._widgets()
        self.ui = self._layout()
        self.ui.explorer = self
        self.refresh()

    # -- widgets --------------------------------------------------------------

    def _widgets(self) -> SimpleNamespace:
        wide = {"description_width": "72px"}
        target = layers.target_layer(self.model)
        w = SimpleNamespace(
            photo=widgets.Dropdown(options=list(self._photos), description="Photo", style=wide),
            upload=widgets.FileUpload(accept="image/*", multiple=False),
            classes=widgets.ToggleButtons(options=[], description="Class", style=wide | {"button_width": "auto"}),
            class_box=widgets.Combobox(
                options=class_options(self.n_classes),
                placeholder="or type any class" + (" name" if self.n_classes == 1000 else " index"),
                description=" ",
                continuous_update=False,  # a class on Enter or on picking a completion, not per keystroke
                ensure_option=False,
                style=wide,
                layout=widgets.Layout(width="360px"),
            ),
            method=widgets.ToggleButtons(
                options=[(method_label(m), m) for m in self.methods],
                value="grad_cam" if "grad_cam" in self.methods else self.methods[0],
                description="Method",
                style=wide | {"button_width": "auto"},
            ),
            compare=widgets.Checkbox(
                description="Compare methods (2 to 4 side by side)", indent=False, layout=widgets.Layout(width="auto")
            ),
            compared={
                m: widgets.ToggleButton(description=method_label(m), layout=widgets.Layout(width="auto"))
                for m in self.methods
            },
            layer=widgets.Dropdown(
                options=_layer_options(self.model, target),
                value=target,
                description="Layer",
                style=wide,
                layout=widgets.Layout(width="440px"),
            ),
            opacity=widgets.FloatSlider(
                0.5, min=0, max=1, step=0.05, description="Opacity", style=wide, readout_format=".2f"
            ),
            cmap=widgets.Dropdown(options=COLOUR_MAPS, description="Colours", style=wide),
            signed=widgets.Checkbox(
                description="Signed: for (red) and against (blue) the class",
                indent=False,
                layout=widgets.Layout(width="auto"),
            ),
            progress=widgets.FloatProgress(0, min=0, max=1),
            cancel=widgets.Button(description="Cancel", button_style="warning", icon="stop"),
            running_text=widgets.HTML(),
            message=widgets.HTML(),
            header=widgets.HTML(),
            panels=[_panel() for _ in range(1 + MAX_COMPARED)],  # the photo, then up to 4 maps
            legend=widgets.Image(format="png", layout=widgets.Layout(height="12px")),
            legend_text=widgets.HTML(),
        )
        w.upload.add_class("cam-upload")
        w.classes.add_class("cam-wrap")
        w.method.add_class("cam-wrap")
        w.message.add_class("cam-message")
        w.panels[0][0].add_class("cam-photo")
        for image, _ in w.panels[1:]:
            image.add_class("cam-map")
        w.header.value = (
            f"<h3>Where does {self.model.name} look?</h3>"
            f"{self.size}×{self.size} pixels, {self.n_classes} classes. Pick a photo, a class and a method."
        )

        w.photo.observe(self._on_photo, "value")
        w.upload.observe(self._on_upload, "value")
        w.classes.observe(self._on_class_button, "value")
        w.class_box.observe(self._on_class_box, "value")
        w.signed.observe(self._on_signed, "value")
        w.compare.observe(self._on_compare, "value")
        for m, button in w.compared.items():
            button.observe(lambda change, m=m: self._on_compared(m, change["new"]), "value")
        for control in (w.method, w.layer):
            control.observe(lambda _: self.refresh(), "value")
        for control in (w.opacity, w.cmap):
            control.observe(lambda _: self.refresh(compute=False), "value")
        w.cancel.on_click(lambda _: self.cancel())
        return w

    def _layout(self) -> widgets.Box:
        w = self.w
        w.compared_box = widgets.Box(
            list(w.compared.values()),
            layout=widgets.Layout(display="none", flex_flow="row wrap", gap="4px", margin="0 0 0 80px"),
        )
        w.compared_box.add_class("cam-choice")
        w.running = widgets.VBox(
            [w.running_text, widgets.HBox([w.progress, w.cancel])], layout=widgets.Layout(display="none")
        )
        controls = widgets.VBox(
            [
                widgets.HBox([w.photo, w.upload]),
                w.classes,
                w.class_box,
                w.method,
                w.compare,
                w.compared_box,
                w.layer,
                w.opacity,
                w.cmap,
                w.signed,
            ],
            layout=widgets.Layout(width="560px", gap="6px"),
        )
        w.cells = [widgets.VBox([image, caption]) for image, caption in w.panels]
        w.grid = widgets.GridBox(w.cells, layout=widgets.Layout(grid_gap="8px"))
        w.legend_box = widgets.VBox([w.legend, w.legend_text])
        pictures = widgets.VBox(
            [w.message, w.running, w.grid, w.legend_box], layout=widgets.Layout(width=f"{PICTURES_WIDTH}px")
        )
        ui = _UI(
            [
                widgets.HTML(CSS),
                w.header,
                widgets.HBox([controls, pictures], layout=widgets.Layout(flex_flow="row wrap")),
            ]
        )
        ui.add_class("cam-explorer")
        return ui

    # -- state, settable from Python -------------------------------------------

    photo = property(lambda self: self.w.photo.value, lambda self, v: setattr(self.w.photo, "value", v))
    method = property(lambda self: self.w.method.value, lambda self, v: setattr(self.w.method, "value", v))
    opacity = property(lambda self: self.w.opacity.value, lambda self, v: setattr(self.w.opacity, "value", v))
    cmap = property(lambda self: self.w.cmap.value, lambda self, v: setattr(self.w.cmap, "value", v))
    signed = property(lambda self: self.w.signed.value, lambda self, v: setattr(self.w.signed, "value", v))

    @property
    def class_(self) -> int | None:
        """The class explained (an index); setting it is typing it in the class box."""
        return self._class

    @class_.setter
    def class_(self, index: int):
        if index in [value for _, value in self.w.classes.options]:
            self.w.classes.value = index
        else:
            self.w.class_box.value = class_options(self.n_classes)[index]

    @property
    def layer(self) -> str:
        return self.w.layer.value

    @layer.setter
    def layer(self, name: str):
        """A layer from the list, or any other name: a layer without a spatial map is refused
        with a message, as the engine would."""
        values = [value for _, value in self.w.layer.options]
        if name not in values:
            try:
                layers.check_spatial(self.model, layers.find_layer(self.model, name), name)
            except Exception as e:
                self._fail(e)
                return
            self.w.layer.options = [(name, name), *self.w.layer.options]
        self.w.layer.value = name

    @property
    def compare(self) -> list[str] | None:
        """The methods side by side, or None when compare mode is off."""
        return list(self._compared) if self.w.compare.value else None

    @compare.setter
    def compare(self, methods):
        with self._hold():
            self.w.compare.value = bool(methods)
            for m, button in self.w.compared.items():
                button.value = m in (methods or ())
            self._compared = [m for m in (methods or ()) if m in self.w.compared][-MAX_COMPARED:]
        self.refresh()

    @property
    def picture(self) -> bytes:
        """PNG bytes of the (first) map shown."""
        return self.w.panels[1][0].value

    @property
    def pictures(self) -> list[bytes]:
        """PNG bytes of every map shown (one, or one per compared method)."""
        return [image.value for image, _ in self.w.panels[1 : 1 + len(self.shown_methods())]]

    @property
    def message(self) -> str:
        return html.unescape(re.sub(r"<[^>]+>", "", self.w.message.value))

    def image(self) -> np.ndarray:
        """The current photo, uint8 (S, S, 3)."""
        return self._image(self.photo)

    def _image(self, name: str) -> np.ndarray:
        if name not in self._arrays:
            source = self._photos[name]
            self._arrays[name] = source() if callable(source) else source  # an example is read when first shown
        return self._arrays[name]

    def add_photo(self, name: str, image) -> str:
        """Add a photo (any array or PIL image `load_image` reads) and show it; returns its key."""
        array = photos.load_image(image, self.size)
        key = name
        for i in range(2, 1000):
            if key not in self._photos:
                break
            key = f"{name} ({i})"
        self._photos[key] = array
        with self._hold():
            self.w.photo.options = list(self._photos)
        self.photo = key
        return key

    def shown_methods(self) -> list[str]:
        return list(self._compared) if self.w.compare.value else [self.method]

    def forget(self):
        """Drop the cached maps and logits (say, after the model's weights changed) and redraw."""
        self.cancel(quiet=True)
        self._cache.clear()
        self._logits.clear()
        self.refresh()

    def result(self, method: str | None = None):
        """The engine's Explanation behind a picture shown (from the cache)."""
        return self._cache[self._key(method or self.method, self._class)]

    # -- events ----------------------------------------------------------------

    @contextlib.contextmanager
    def _hold(self):
        """Widget changes inside do not refresh (several controls change as one)."""
        self._holding += 1
        try:
            yield
        finally:
            self._holding -= 1

    def _on_photo(self, change):
        if self._holding:
            return
        self._class = None  # a new photo: explain its own top-1
        with self._hold():
            self.w.class_box.value = ""
        self.refresh()

    def _on_upload(self, change):
        if self._holding or not change["new"]:
            return
        files = change["new"]
        with self._hold():
            self.w.upload.value = ()  # so that uploading the same file again is a change
        for f in files:
            try:
                self.add_photo(f["name"], read_upload(bytes(f["content"]), f["name"], self.size))
            except Exception as e:
                self._fail(e)

    def _on_class_button(self, change):
        if self._holding or change["new"] is None:
            return
        self._class = change["new"]
        with self._hold():
            self.w.class_box.value = ""
        self.refresh()

    def _on_class_box(self, change):
        if self._holding or not change["new"].strip():
            return
        try:
            index = parse_class(change["new"], self.n_classes)
        except Exception as e:
            self._fail(e)
            return
        self._class = index
        with self._hold():
            in_top = index in [value for _, value in self.w.classes.options]
            self.w.classes.value = index if in_top else None
        self.refresh()

    def _on_signed(self, change):
        # a signed map needs a diverging colour map, whose middle (zero) is neutral
        with self._hold():
            self.w.cmap.options = SIGNED_COLOUR_MAPS if change["new"] else COLOUR_MAPS
        self.refresh()

    def _on_compare(self, change):
        if self._holding:
            return
        if change["new"] and len(self._compared) < 2:
            fast = [m for m in self.methods if not is_slow(m) and not is_guided(m) and m != self.method]
            self.compare = [self.method, *fast[:2]]
            return
        self.refresh()

    def _on_compared(self, method: str, on: bool):
        if self._holding:
            return
        if on and method not in self._compared:
            self._compared.append(method)
            if len(self._compared) > MAX_COMPARED:  # the oldest gives way
                with self._hold():
                    self.w.compared[self._compared.pop(0)].value = False
        elif not on and method in self._compared:
            self._compared.remove(method)
        self.refresh()

    # -- computing and drawing ---------------------------------------------------

    def _key(self, method: str, class_: int | None) -> tuple:
        """What a map depends on: (photo, method, class (None: top-1), layer, signed)."""
        layer = None if method == "guided_backprop" else self.layer
        return (self.photo, method, class_, layer, self.signed and not is_guided(method))

    def _compute(self, key: tuple, progress=None):
        """The Explanation for `key` (cached); a key with class None is also stored under its top-1."""
        result = self._cache.get(key)
        if result is not None:
            with contextlib.suppress(KeyError):  # the background thread may have just evicted it
                self._cache.move_to_end(key)
            return result
        photo, method, class_, layer, signed = key
        with self._lock:
            result = _explanation(self.model, self._image(photo), method, class_, layer, signed, progress)
            self._logits[photo] = np.asarray(result.logits)
            self._cache[key] = self._cache[(photo, method, int(result.classes), layer, signed)] = result
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return result

    def _resolve_class(self):
        """Fix the class to the photo's top-1 when none is chosen, and show the photo's top-5."""
        photo = self.photo
        if photo not in self._logits:
            first = next((m for m in self.shown_methods() if not is_slow(m)), "grad_cam")
            try:  # one pass gives the logits and the first map
                self._compute(self._key(first, self._class))
            except Exception:
                if first == "grad_cam":
                    raise
                self._compute(self._key("grad_cam", self._class))  # the top-5 still show; the error follows
        top = top_classes(self._logits[photo])
        if self._class is None:
            self._class = top[0][0]
        with self._hold():
            if self._top_of != photo:  # new buttons only for a new photo
                self.w.classes.options = [(f"{name} {percent(p)}", index) for index, name, p in top]
                self._top_of = photo
            self.w.classes.value = self._class if self._class in [t[0] for t in top] else None

    def refresh(self, compute: bool = True):
        """Bring the pictures up to date with the widgets; errors become the message.

        compute=False (opacity, colours) only redraws from the cache. A slow method still
        running for the same request keeps running; for any other request it is cancelled.
        """
        if self._holding:
            return
        try:
            methods = self.shown_methods()
            if compute:
                if self._job is not None and self._job.keys != self._slow_keys(methods):
                    self.cancel(quiet=True)  # first, so that the job lets go of the engine soon
                self._resolve_class()
            pending = self._slow_keys(methods)
            start = compute and pending and self._job is None
            self._draw(methods, pending, running=start or self._job is not None)  # the slow ones as placeholders
            if start:  # after drawing: the job holds the engine, and the fast maps need it
                self._start(pending)
        except Exception as e:
            self._fail(e)

    def _slow_keys(self, methods: list[str]) -> list[tuple]:
        """The keys of the slow maps shown but not computed yet (they run in the background)."""
        keys = [self._key(m, self._class) for m in methods if is_slow(m)]
        return [key for key in keys if key not in self._cache]

    def _draw(self, methods: list[str], pending: list[tuple], running: bool = False):
        """Compose every picture from cached (or fast) maps; a failing method does not stop the others."""
        w, image = self.w, self.image()
        errors = []
        compare = w.compare.value  # compared maps alone: each is drawn over the photo anyway
        for i, cell in enumerate(w.cells):  # a hidden cell takes no place in the grid
            shown = (i == 0 and not compare) or 1 <= i <= len(methods)
            cell.layout.display = "" if shown else "none"
        w.panels[0][0].value = self._png_of(self.photo)
        w.panels[0][1].value = f"<div class='cam-caption'><b>{html.escape(self.photo)}</b></div>"
        for (panel, caption), method in zip(w.panels[1:], methods):
            key = self._key(method, self._class)
            if key in pending:
                state = "computing ..." if running else "not computed (see the message)"
                panel.value, caption.value = self._blank(), _caption(method, state)
                continue
            try:
                result = self._compute(key)
            except Exception as e:
                errors.append(f"{method_label(method)}: {_reason(e)}")
                panel.value, caption.value = self._blank(), _caption(method, "not available: see the message")
                continue
            panel.value = png(picture(image, result.maps, self.opacity, self.cmap, key[4]))
            explained = f"{class_name(int(result.classes), self.n_classes)} ({percent(float(result.probabilities))})"
            where = "the pixels" if method == "guided_backprop" else result.layer
            caption.value = _caption(method, f"{html.escape(explained)}<br><small>at {html.escape(str(where))}</small>")
        columns, width = grid(len(methods) + (0 if compare else 1))
        w.grid.layout.grid_template_columns = f"repeat({columns}, {width}px)"
        for panel, _ in w.panels:
            panel.layout.width = panel.layout.height = f"{width}px"
        w.method.layout.display = "none" if compare else ""  # one method, or the ticked ones
        w.compared_box.layout.display = "" if compare else "none"
        self._draw_legend(methods, width, beside_photo=not compare)
        self._say(" ".join(errors) if errors else ("" if methods else "Tick two to four methods to compare."))

    def _png_of(self, photo: str) -> bytes:
        if photo not in self._pngs:
            self._pngs[photo] = png(self._image(photo))
        return self._pngs[photo]

    def _blank(self) -> bytes:
        """A light grey square where a map is missing."""
        if ("blank",) not in self._pngs:
            self._pngs[("blank",)] = png(np.full((self.size, self.size, 3), 235, np.uint8))
        return self._pngs[("blank",)]

    def _draw_legend(self, methods: list[str], width: int, beside_photo: bool):
        """The colour bar under the first map (none when only guided gradients are shown)."""
        w = self.w
        maps_only = [m for m in methods if not is_guided(m)]
        w.legend.layout.display = "" if maps_only else "none"
        w.legend.layout.width = f"{width}px"
        if (self.cmap, width) not in self._pngs:
            self._pngs[(self.cmap, width)] = png(legend(self.cmap, width))
        w.legend.value = self._pngs[(self.cmap, width)]
        w.legend_box.layout.margin = f"0 0 0 {width + 8}px" if beside_photo else "0"  # under the (first) map
        left, right = ("against the class", "for the class") if self.signed else ("no evidence", "strongest evidence")
        w.legend_text.value = (
            f"<div style='display:flex;justify-content:space-between;width:{width}px;font-size:12px;"
            "white-space:nowrap'>"
            f"<span>{left}</span><span>{right}</span></div>"
            if maps_only
            else f"<div style='width:{width}px'>Guided gradients: grey is zero; colour marks the pixels that "
            "raise the class score.</div>"
        )

    def _say(self, text: str):
        self.w.message.value = f"⚠ {html.escape(text)}" if text else ""

    def _fail(self, error: Exception):
        self._say(_reason(error))

    # -- slow methods, in the background ----------------------------------------

    def _start(self, keys: list[tuple]):
        """Compute the slow maps `keys` in a thread, the progress bar and Cancel showing meanwhile;
        when done, refresh (which draws them from the cache)."""
        w = self.w
        names = ", ".join(plots.NAMES.get(key[1], key[1]) for key in keys)
        w.progress.value = 0
        w.running_text.value = f"{html.escape(names)}: one forward pass per channel, this takes a while ..."
        w.running.layout.display = ""

        def run(job: _Job):
            error = None
            try:
                for i, key in enumerate(keys):

                    def progress(done, total, i=i):
                        w.progress.value = (i + done / max(total, 1)) / len(keys)
                        return not job.cancelled.is_set()  # False: the engine raises engine.Cancelled

                    self._compute(key, progress)
                    if job.cancelled.is_set():
                        break
            except Exception as e:
                error = e
            if self._job is not job:  # replaced by a newer request: that one draws
                return
            self._job = None
            w.running.layout.display = "none"
            self.refresh(compute=error is None and not job.cancelled.is_set())  # draws from the cache
            if job.cancelled.is_set() or (error is not None and isinstance(error, engine.Cancelled)):
                self._say(f"{names} cancelled. Choose another class, layer or method to go on.")
            elif error is not None:
                self._fail(error)

        self._job = _Job(run, keys)
        self._job.thread.start()

    def cancel(self, quiet: bool = False):
        """Stop the slow method running in the background (at its next progress report)."""
        job = self._job
        if job is None:
            return
        job.cancelled.set()
        if quiet:  # a new request replaces it: forget it now
            self._job = None
            self.w.running.layout.display = "none"

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the background computation, if any; True when none is left running."""
        job = self._job
        if job is not None:
            job.thread.join(timeout)
            return not job.thread.is_alive()
        return True


class _UI(widgets.VBox):
    """The explorer's widget; where no kernel draws it (a saved notebook), its text says so."""

    def __repr__(self) -> str:
        return f"The explorer of {self.explorer.model.name}: it needs a running Jupyter kernel (jupyter lab cam.ipynb)"


def _panel() -> tuple[widgets.Image, widgets.HTML]:
    return widgets.Image(format="png"), widgets.HTML()


def _caption(method: str, text: str) -> str:
    return f"<div class='cam-caption'><b>{html.escape(method_label(method))}</b>: {text}</div>"


def _reason(error: Exception) -> str:
    """An exception as one sentence for the message line (no traceback)."""
    text = str(error).strip() or type(error).__name__
    return text[:600]


def _photo_sources(given, size: int) -> dict:
    """name -> uint8 (S, S, 3) array, or a loader for the bundled examples (loaded when shown)."""
    if given is None:
        return {name: (lambda name=name: photos.example(name, size)) for name in photos.EXAMPLES}
    items = given.items() if isinstance(given, dict) else ((f"photo {i + 1}", a) for i, a in enumerate(given))
    out = {str(name): photos.load_image(np.asarray(a), size) for name, a in items}
    if not out:
        raise ValueError("photos is empty: give a list or dict of (S, S, 3) uint8 arrays, or None for the examples")
    return out


def _model_facts(model) -> tuple[int, int]:
    """(image size S, number of classes) of a model the explorer can show: one image input
    and one output, functional, Sequential or subclassed (called once before)."""
    layers.check_model(model)
    if not layers.is_symbolic(model):
        shape = layers.built_input_shape(model)
        return int(shape[1]), int(model(tf.zeros((1, *shape[1:])), training=False).shape[-1])
    if len(model.inputs) > 1 or len(model.outputs) > 1:
        raise ValueError(
            f"the explorer shows models with one image input and one output; {model.name!r} has "
            f"{len(model.inputs)} inputs and {len(model.outputs)} outputs: use helpers.explain, which takes "
            "a list of inputs and output="
        )
    return int(model.inputs[0].shape[1] or 224), int(model.outputs[0].shape[-1])


def _layer_options(model, target: str) -> list[tuple[str, str]]:
    """(label, name) of the spatial layers, deepest first, the automatic choice marked; the
    label gives the map's shape, h x w x c."""
    shapes = layers.spatial_shapes(model)
    names = list(reversed(shapes))
    if target not in names:
        names.insert(0, target)  # a layer inside a nested model: the path form "backbone/layer"
    options = []
    for name in names:
        try:
            h, w_, c = shapes[name][1:] if name in shapes else layers.find_layer(model, name).output.shape[1:]
            label = f"{name}  {h}×{w_}×{c}"
        except Exception:
            label = name
        options.append((label + ("  (automatic)" if name == target else ""), name))
    return options


def explore(model, photos=None) -> widgets.VBox:
    """An interactive explorer of `model`'s class activation maps (ipywidgets; a notebook or Voila).

    photos: None for the bundled examples (`photos.EXAMPLES`), or a list or dict of images
    (uint8 (S, S, 3) arrays, resized to the model's input with `load_image`); the user can
    upload more. Returns the widget; `widget.explorer` is its `Explorer`.
    """
    return Explorer(model, photos).ui
