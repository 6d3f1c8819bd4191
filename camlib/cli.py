"""The command line: class activation maps for folders of photos, streamed in batches.

    python3 tasks.py explain PATH... --out DIR [--model M] [--method grad_cam,cam] [--classes top5]
    python -m camlib.cli --help

What it writes into DIR (see `--help` for the options):

- `results.csv`: one row per photo, method and class (`COLUMNS`); a photo that could not
  be read has one row whose status says why;
- `overlays/<relative path>.png`: per photo, one panel per method (columns) and class (rows),
  the map over the photo with its peak and box;
- `maps/<relative path>.npz`: per photo, one array per method, (K, S, S) float16 maps in
  [0, 1] or (K, S, S, 3) float32 guided gradients, with `classes` (K,) and `probabilities` (K,);
- `run.json`: the settings, so that a second run into DIR with other settings is refused.

The pipeline: a thread pool decodes the next batches while the model runs the current one,
and one writer thread draws and saves the previous batch, so the model is rarely idle;
at most a few batches are held at any time, however many photos there are. Rows are
appended to results.csv and flushed per batch, after the batch's files exist: a run that
is interrupted (Ctrl-C, killed) and started again skips the photos already done.

Exit codes: 0 all photos explained, 1 some photos could not be read (listed in
results.csv and on the terminal), 2 a usage or model error (nothing computed), 130
interrupted.
"""

from __future__ import annotations

import argparse
import collections
import concurrent.futures
import csv
import functools
import json
import os
import sys
import textwrap
import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import NamedTuple

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")  # the numbers of the notebook and the tests, no oneDNN notes

import numpy as np  # noqa: E402
from PIL import Image, ImageDraw, ImageFont  # noqa: E402

from camlib import engine, metrics, model_files, models, photos, plots  # noqa: E402

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif"}
COLUMNS = [
    "path", "status", "method", "rank", "class", "name", "probability",
    "peak_x", "peak_y", "box_x0", "box_y0", "box_x1", "box_y1", "overlay", "maps",
]  # fmt: skip
BOX_THRESHOLD = 0.15  # of the map's maximum, as Selvaraju et al. 2017, section 4.1
ALPHA = 0.5  # the map's weight in the overlay
TITLE_HEIGHT = 16  # pixels of caption above each panel
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


class UsageError(Exception):
    """A problem with the command line or the model: reported in one line, exit code 2."""


# ---------------------------------------------------------------------------
# The command line


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python3 tasks.py explain",
        description="Class activation maps for photos: a CSV of classes, peaks and boxes,\n"
        "an overlay PNG and the raw maps (.npz) per photo.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=f"""\
examples:
  python3 tasks.py explain images --out cam-out
  python3 tasks.py explain photos/ extra.jpg --out out --method grad_cam,grad_cam++ --classes top3
  python3 tasks.py explain photos --out out --classes zebra,281 --fit pad
  python3 tasks.py explain photos --out out --model my_model.keras --classes 0,1
  python3 tasks.py explain photos --out out --model tuned.weights.h5 --arch mobilenet_v2

written into DIR:
  results.csv        one row per photo x method x class, columns
{_wrapped(COLUMNS, 21)}
                     (status is "ok" or why the photo failed; peak and box in pixels of the
                     S x S image the model saw, after --fit; box: the largest region at or
                     above {BOX_THRESHOLD:g} of the map's maximum, x1/y1 exclusive; for the guided
                     methods both come from |gradient|, whose boxes are small and noisy)
  overlays/P.png     per photo P (its path below the folder given, extension kept), one panel
                     per method (columns) and class (rows), with the peak and the box
  maps/P.npz         per method an array (K, S, S) float16 in [0, 1] (guided methods:
                     (K, S, S, 3) float32 gradients), with classes (K,) and probabilities (K,)

Run the same command again after an interruption: photos already done are skipped.
Exit code 0 if every photo was explained, 1 if some could not be read, 2 for a usage error.
methods:
{_wrapped(engine.METHODS, 2)}""",
    )
    p.add_argument(
        "paths",
        nargs="+",
        metavar="PATH",
        help="photos, or folders searched recursively for "
        f"{', '.join(sorted(IMAGE_SUFFIXES))} files (hidden files skipped)",
    )
    p.add_argument("--out", required=True, metavar="DIR", help="where to write the results (created if needed)")
    p.add_argument(
        "--model",
        default="efficientnet_lite0",
        metavar="M",
        help=f"a name ({', '.join(models.MODELS)}; default %(default)s), a .keras file, "
        "or a .weights.h5 file with --arch. Your model takes RGB pixels 0..255 (N, S, S, 3)",
    )
    p.add_argument("--arch", metavar="NAME", help="the architecture of a .weights.h5 file (a model name)")
    p.add_argument(
        "--method",
        action="append",
        metavar="M",
        help="one or more methods, comma-separated or repeated (default grad_cam)",
    )
    p.add_argument(
        "--classes",
        default="top1",
        metavar="C",
        help="top1 (default), topK (e.g. top5), or classes by ImageNet name or index, comma-separated "
        "(zebra,281); a model that is not an ImageNet classifier takes indices only",
    )
    p.add_argument("--layer", help="the target layer (default: the one the classifier pools from)")
    p.add_argument("--output", help="which output of a model with several outputs (index or layer name)")
    p.add_argument("--batch-size", type=int, default=16, metavar="N", help="photos per batch (default 16)")
    p.add_argument(
        "--fit",
        choices=("crop", "pad"),
        default="crop",
        help="crop: the centre square (default); pad: the whole photo, padded with grey",
    )
    p.add_argument(
        "--size", type=int, metavar="S", help="the photo size, for a model whose input size is not fixed (default 224)"
    )
    p.add_argument("--workers", type=int, default=2, metavar="N", help="threads decoding photos (default 2)")
    p.add_argument(
        "--unsafe",
        action="store_true",
        help="load a .keras file even if it contains code (Lambda layers): only files you trust",
    )
    return p


def _wrapped(words: Sequence[str], indent: int) -> str:
    return textwrap.fill(", ".join(words), 88, initial_indent=" " * indent, subsequent_indent=" " * indent)


def split_list(values: Sequence[str] | None, default: Sequence[str] = ()) -> list[str]:
    """["a,b", "c"] -> ["a", "b", "c"]: options given comma-separated, repeated, or both."""
    items = [v.strip() for value in values or () for v in value.split(",") if v.strip()]
    return items or list(default)


class Classes(NamedTuple):
    """Which classes to explain: the top `top` of each photo, or the same `indices` for all."""

    top: int | None
    indices: tuple[int, ...] = ()

    @property
    def k(self) -> int:
        return self.top or len(self.indices)


def parse_classes(text: str, n_classes: int) -> Classes:
    """--classes: "top5" -> the top 5 of each photo; "zebra,1" -> classes 340 and 1 for all
    photos (names only for ImageNet classifiers, see photos.class_index)."""
    items = split_list([text])
    if len(items) == 1 and items[0].lower().startswith("top"):
        k = items[0][3:] or "1"
        if not k.isdigit() or int(k) < 1:
            raise UsageError(f"--classes {text!r}: write top1, top5, ... (topK with K >= 1)")
        return Classes(min(int(k), n_classes))
    if not items:
        raise UsageError("--classes is empty: give top1, topK, or class names or indices")
    indices = []
    for item in items:
        if item.lstrip("-").isdigit():
            index = int(item)
        elif n_classes != len(photos.CLASS_NAMES):
            raise UsageError(
                f"--classes {item!r}: names are ImageNet's, and this model has {n_classes} classes; give indices"
            )
        else:
            try:
                index = photos.class_index(item)
            except ValueError as e:
                raise UsageError(f"--classes: {e}") from None
        if not 0 <= index < n_classes:
            raise UsageError(f"--classes {item!r}: the model has classes 0..{n_classes - 1}")
        indices.append(index)
    return Classes(None, tuple(indices))


# ---------------------------------------------------------------------------
# Finding the photos


class Photo(NamedTuple):
    path: str  # as the user gave it or as found below a folder given: the row's key in results.csv
    key: str  # its path relative to the common folder of the inputs: where its outputs go


def find_photos(paths: Sequence[str], out: Path) -> list[Photo]:
    """The photos named or found below folders (sorted, hidden files skipped, `out` left out),
    each with the relative path its outputs mirror, unique even for equal names in different
    folders. A path that does not exist raises UsageError."""
    out = Path(os.path.abspath(out))
    outputs = {out, out / "overlays", out / "maps"}  # even when DIR is one of the folders given
    found = {}  # absolute path -> path as shown, in order, without duplicates
    for given in paths:
        if os.path.isdir(given):
            for folder, dirs, files in os.walk(given):
                dirs[:] = sorted(d for d in dirs if d[0] != "." and Path(os.path.abspath(folder), d) not in outputs)
                for name in sorted(files):
                    if not name.startswith(".") and Path(name).suffix.lower() in IMAGE_SUFFIXES:
                        path = os.path.join(folder, name)
                        found.setdefault(os.path.abspath(path), path)
        elif os.path.exists(given):
            found.setdefault(os.path.abspath(given), given)  # named explicitly: tried whatever its extension
        else:
            raise UsageError(f"no such file or folder: {given}")
    if not found:
        raise UsageError(f"no photos ({', '.join(sorted(IMAGE_SUFFIXES))}) in {', '.join(paths)}")
    bases = [os.path.abspath(g) if os.path.isdir(g) else os.path.dirname(os.path.abspath(g)) for g in paths]
    root = os.path.commonpath(bases)
    return [Photo(shown, Path(os.path.relpath(absolute, root)).as_posix()) for absolute, shown in found.items()]


def output_files(out: Path, photo: Photo) -> tuple[Path, Path]:
    """(overlay PNG, maps NPZ) of a photo; the photo's extension is kept in the name, so
    dog.jpg and dog.png in one folder do not collide."""
    return out / "overlays" / f"{photo.key}.png", out / "maps" / f"{photo.key}.npz"


# ---------------------------------------------------------------------------
# Resuming: what results.csv says is done


def check_settings(out: Path, settings: dict) -> None:
    """Write DIR/run.json, or refuse when DIR holds results made with other settings."""
    path = out / "run.json"
    if path.exists():
        before = json.loads(path.read_text())
        changed = [f"{k}: {before.get(k)!r} then, {v!r} now" for k, v in settings.items() if before.get(k) != v]
        if changed:
            raise UsageError(
                f"{out} holds results made with other settings ({'; '.join(changed)}): use another --out, "
                f"or delete {path} and {out / 'results.csv'} to start again"
            )
    else:
        path.write_text(json.dumps(settings, indent=1) + "\n")


def results_rows(out: Path) -> Iterator[dict]:
    """The rows of DIR/results.csv, streamed (none if there is no such file). A last row cut
    short by a killed run comes out with missing fields, which `done_photos` rejects."""
    path = out / "results.csv"
    if not path.exists():
        return
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames is not None and reader.fieldnames != COLUMNS:
            raise UsageError(f"{path} has other columns than this version writes; use another --out")
        yield from reader


def done_photos(out: Path, rows_per_photo: int) -> set[str]:
    """The paths whose rows in results.csv are all "ok", complete (methods x classes rows),
    and whose overlay and maps files exist. Failed or half-written photos are not done, so
    they are tried again. Only paths are held, never the rows."""
    count, broken = collections.Counter(), set()
    for row in results_rows(out):
        count[row["path"]] += 1
        files = (row["overlay"], row["maps"])
        if row["status"] != "ok" or not all(name and Path(out, name).is_file() for name in files):
            broken.add(row["path"])
    return {path for path, n in count.items() if n == rows_per_photo and path not in broken}


def restart_results(out: Path, done: set[str], todo: Sequence[Photo]) -> None:
    """Rewrite results.csv with the rows of the `done` photos only (the others are tried
    again, their new rows appended), replaced in one step: a crash leaves the old or the
    new file. Refuses to let a photo to do overwrite the outputs of another, done in an
    earlier run into DIR (inputs with the same relative paths under other folders)."""
    path, tmp = out / "results.csv", out / "results.csv.tmp"
    mine = {output_files(Path(), p)[0].as_posix(): p.path for p in todo}  # overlay -> the photo that will write it
    with open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, COLUMNS, extrasaction="ignore")
        writer.writeheader()
        for row in (row for row in results_rows(out) if row["path"] in done):
            if mine.get(row["overlay"], row["path"]) != row["path"]:
                clash = (f"{out / row['overlay']} already holds the overlay of {row['path']}, and "
                         f"{mine[row['overlay']]} would overwrite it: use another --out for these photos")  # fmt: skip
                break
            writer.writerow(row)
        else:
            clash = None
    if clash:
        tmp.unlink()
        raise UsageError(clash)
    os.replace(tmp, path)


# ---------------------------------------------------------------------------
# Decoding ahead, in a thread pool


def read_photo(path: str, size: int, fit: str) -> np.ndarray | str:
    """The photo as the model sees it, uint8 (S, S, 3); or, if it cannot be read, why (one line)."""
    try:
        return photos.load_image(path, size, fit)
    except Exception as e:
        cause = e.__cause__ or e  # load_image wraps PIL's error; PIL's says what is wrong
        text = " ".join(str(cause).replace(repr(str(path)), "").replace(str(path), "").split())
        return f"unreadable: {text or type(cause).__name__}"


def decoded(pool, todo: Sequence[Photo], batch_size: int, size: int, fit: str, ahead: int = 2) -> Iterator[list]:
    """Batches of (photo, image or reason), each decoded by `pool` while the batches before
    it are being explained: up to `ahead` batches are in flight, never more."""
    queue = collections.deque()
    for start in range(0, len(todo), batch_size):
        queue.append([(p, pool.submit(read_photo, p.path, size, fit)) for p in todo[start : start + batch_size]])
        if len(queue) > ahead:
            yield [(p, f.result()) for p, f in queue.popleft()]
    while queue:
        yield [(p, f.result()) for p, f in queue.popleft()]


# ---------------------------------------------------------------------------
# Explaining one batch


class Settings(NamedTuple):
    """What is computed for every batch (from the options and the model)."""

    methods: tuple[str, ...]
    classes: Classes
    layer: str | None
    output: int | str | None
    size: int
    fit: str
    n_classes: int


def explain_batch(model, images: np.ndarray, s: Settings) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """images uint8 (N, S, S, 3) -> (maps per method (N, K, S, S) or guided (N, K, S, S, 3),
    classes (N, K), probabilities (N, K)). Every method explains the same classes: the named
    ones, or the top K the first method's pass chooses (no extra forward pass)."""
    classes = np.tile(np.array(s.classes.indices, np.int32), (len(images), 1)) if s.classes.indices else None
    maps, probabilities = {}, None
    for method in s.methods:
        e = explanation(model, images, method, classes, s, top=None if classes is not None else s.classes.top)
        maps[method], classes, probabilities = e.maps, e.classes, e.probabilities  # (N, K, ...), (N, K), (N, K)
    return maps, classes, probabilities


def explanation(model, images, method: str, classes, s: Settings, top: int | None = None) -> engine.Explanation:
    """`engine.explanation` with the command line's options."""
    options = {} if s.output is None else {"output": s.output}
    if method in engine.SLOW:
        options["progress"] = False  # the command line has its own progress bar
    return engine.explanation(model, images, method, classes, s.layer, top=top, **options)


# ---------------------------------------------------------------------------
# Peaks, boxes, pictures


def saliency(map_: np.ndarray) -> np.ndarray:
    """(S, S) map in [0, 1] as it is, or guided gradients (S, S, 3) as |g| max over colours
    scaled to [0, 1]: what the peak and the box are taken from."""
    if map_.ndim == 2:
        return map_
    m = np.abs(map_).max(axis=-1)
    return m / m.max() if m.max() > 0 else m


def peak(m: np.ndarray) -> tuple[int, int] | None:
    """(x, y) of the map's maximum, the first in reading order on a tie; None for a blank map."""
    if not m.max() > 0:
        return None
    y, x = np.unravel_index(int(np.argmax(m)), m.shape)
    return int(x), int(y)


@functools.cache
def colour_table() -> np.ndarray:
    """The project's heat-map colours (plots.CMAP) as a (256, 3) uint8 table."""
    import matplotlib

    return np.round(matplotlib.colormaps[plots.CMAP](np.linspace(0, 1, 256))[:, :3] * 255).astype(np.uint8)


@functools.cache
def font() -> ImageFont.ImageFont:
    return ImageFont.load_default(size=11)


def heat(image: np.ndarray, map_: np.ndarray) -> np.ndarray:
    """uint8 (S, S, 3) photo + (S, S) map in [0, 1] -> uint8 (S, S, 3) overlay, the same
    blend as plots.overlay, without a matplotlib figure (too slow per photo)."""
    colours = colour_table()[np.clip((map_ * 256).astype(np.int16), 0, 255)]  # (S, S, 3)
    blend = (1 - ALPHA) * image.astype(np.float32) + ALPHA * colours.astype(np.float32)  # float32: 4x faster
    return (blend + 0.5).astype(np.uint8)


def panel(image: np.ndarray, map_: np.ndarray, box, top, caption: str) -> Image.Image:
    """One panel: the overlay (or the guided gradients), the box and the peak, the caption above."""
    picture = heat(image, map_) if map_.ndim == 2 else np.round(plots.gradient_image(map_) * 255).astype(np.uint8)
    size = image.shape[0]
    canvas = Image.new("RGB", (size, size + TITLE_HEIGHT), "white")
    canvas.paste(Image.fromarray(picture), (0, TITLE_HEIGHT))
    draw = ImageDraw.Draw(canvas)
    while len(caption) > 4 and draw.textlength(caption, font=font()) > size - 4:
        caption = caption[:-2].rstrip() + "…"
    draw.text((2, 2), caption, fill="black", font=font())
    if map_.ndim == 3:  # guided gradients are sparse: their box and peak say little, not drawn
        return canvas
    if box[2] > box[0]:
        x0, y0, x1, y1 = box
        draw.rectangle((x0, y0 + TITLE_HEIGHT, x1 - 1, y1 - 1 + TITLE_HEIGHT), outline="white")
    if top is not None:
        x, y = top[0], top[1] + TITLE_HEIGHT
        draw.ellipse((x - 3, y - 3, x + 3, y + 3), outline="black", fill="white")
    return canvas


def grid(panels: list[list[Image.Image]]) -> Image.Image:
    """Rows of equal panels -> one picture, 2 pixels apart."""
    w, h = panels[0][0].size
    rows, cols = len(panels), len(panels[0])
    canvas = Image.new("RGB", (cols * w + (cols - 1) * 2, rows * h + (rows - 1) * 2), "white")
    for r, row in enumerate(panels):
        for c, p in enumerate(row):
            canvas.paste(p, (c * (w + 2), r * (h + 2)))
    return canvas


def class_name(index: int, n_classes: int) -> str:
    """The ImageNet name of a class, or "" for a model with other classes."""
    return photos.CLASS_NAMES[index] if n_classes == len(photos.CLASS_NAMES) else ""


# ---------------------------------------------------------------------------
# Writing one photo's outputs


def write_photo(out: Path, photo: Photo, image, maps: dict, classes, probabilities, s: Settings) -> list[dict]:
    """Save the overlay and the maps of one photo; its rows for results.csv.

    maps: per method (K, S, S) or (K, S, S, 3); classes, probabilities: (K,)."""
    overlay_path, maps_path = output_files(out, photo)
    rows, panels = [], [[] for _ in classes]
    for method, m in maps.items():
        for k, (c, p) in enumerate(zip(classes, probabilities)):
            name = class_name(int(c), s.n_classes)
            sal = saliency(m[k])
            box, top = metrics.box_from_map(sal, BOX_THRESHOLD), peak(sal)
            caption = f"{plots.NAMES.get(method, method)}: {name or f'class {c}'} ({p:.2f})"
            panels[k].append(panel(image, m[k], box, top, caption))
            rows.append({
                "path": photo.path, "status": "ok", "method": method, "rank": k + 1, "class": int(c),
                "name": name, "probability": f"{p:.6f}", "peak_x": "" if top is None else top[0],
                "peak_y": "" if top is None else top[1], "box_x0": box[0], "box_y0": box[1], "box_x1": box[2],
                "box_y1": box[3], "overlay": overlay_path.relative_to(out).as_posix(),
                "maps": maps_path.relative_to(out).as_posix(),
            })  # fmt: skip
    arrays = {m: (v.astype(np.float32) if v.ndim == 4 else v.astype(np.float16)) for m, v in maps.items()}
    arrays |= {"classes": np.asarray(classes, np.int32), "probabilities": np.asarray(probabilities, np.float32)}
    _atomic(overlay_path, lambda f: grid(panels).save(f, format="PNG", compress_level=1, compress_type=zlib.Z_RLE))
    _atomic(maps_path, lambda f: np.savez(f, **arrays))
    return rows


def _atomic(path: Path, write) -> None:
    """Write through a temporary file and rename it: a killed run never leaves half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        write(f)
    os.replace(tmp, path)


def failed_row(photo: Photo, reason: str) -> dict:
    return {**dict.fromkeys(COLUMNS, ""), "path": photo.path, "status": reason}


def write_batch(out: Path, results, batch, s: Settings, table) -> list[dict]:
    """In the writer thread: the files of a batch, then its rows appended to results.csv and
    flushed, so a row is never there before its files."""
    rows = []
    good = [(photo, image) for photo, image in batch if not isinstance(image, str)]
    for i, (photo, image) in enumerate(good):
        maps, classes, probabilities = results
        rows += write_photo(out, photo, image, {m: v[i] for m, v in maps.items()}, classes[i], probabilities[i], s)
    rows += [failed_row(photo, reason) for photo, reason in batch if isinstance(reason, str)]
    csv.DictWriter(table, COLUMNS).writerows(rows)
    table.flush()
    return rows


# ---------------------------------------------------------------------------
# The run


class Summary(NamedTuple):
    explained: int
    failed: int
    skipped: int


def run(model, todo: list[Photo], out: Path, s: Settings, batch_size: int = 16, workers: int = 2,
        skipped: int = 0, progress: bool | None = None) -> Summary:  # fmt: skip
    """Explain `todo` into `out` (results.csv must exist, with its header), streaming: the
    decoding of the next batches and the writing of the previous one overlap with the model."""
    from tqdm import tqdm

    explained = failed = 0
    table = open(out / "results.csv", "a", newline="")  # appended by the writer thread alone
    bar = tqdm(total=len(todo), unit="photo", disable=None if progress is None else not progress, file=sys.stderr)
    pending = None  # the previous batch's writing
    with (
        concurrent.futures.ThreadPoolExecutor(max(1, workers), thread_name_prefix="decode") as pool,
        concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="write") as writer,
    ):
        try:
            for batch in decoded(pool, todo, batch_size, s.size, s.fit):
                for photo, image in batch:
                    if isinstance(image, str):
                        failed += 1
                        tqdm.write(f"{photo.path}: {image}", file=sys.stderr)
                images = [image for _, image in batch if not isinstance(image, str)]
                results = explain_batch(model, np.stack(images), s) if images else ({}, [], [])
                if pending is not None:
                    pending.result()  # at most one batch waits for the writer: memory stays flat
                pending = writer.submit(write_batch, out, results, batch, s, table)
                explained += len(images)
                bar.update(len(batch))
            if pending is not None:
                pending.result()
        except KeyboardInterrupt:
            pool.shutdown(wait=False, cancel_futures=True)
            if pending is not None:
                pending.result()  # what was computed is kept: its rows are flushed
            raise
        finally:
            bar.close()
            table.close()
    return Summary(explained, failed, skipped)


def load(name: str, arch: str | None, unsafe: bool):
    """--model: a name in models.MODELS, or a model file (model_files.load_model_file)."""
    if name in models.MODELS:
        if arch is not None:
            raise UsageError(f"--arch is for .weights.h5 files; --model {name} is already an architecture")
        return models.load_model(name)
    if not name.lower().endswith((".keras", ".h5", ".hdf5")) and not os.path.exists(name):
        raise UsageError(f"--model {name!r} is neither a model name ({', '.join(models.MODELS)}) nor a model file")
    try:
        return model_files.load_model_file(name, unsafe=unsafe, arch=arch)
    except (model_files.ModelFileError, FileNotFoundError) as e:
        raise UsageError(str(e)) from None


def input_size(model, size: int | None) -> int:
    """The photo size S the model takes; --size only for a model whose input is not fixed."""
    inputs = getattr(model, "inputs", None) or []
    if len(inputs) > 1:
        raise UsageError(f"model {model.name!r} has {len(inputs)} inputs; the command line feeds one image")
    shape = tuple(inputs[0].shape) if inputs else (None, None, None, 3)
    if len(shape) != 4 or shape[-1] != 3:
        raise UsageError(f"model {model.name!r} takes inputs of shape {shape}, not RGB images (N, S, S, 3)")
    fixed = shape[1]
    if fixed is not None and size is not None and size != fixed:
        raise UsageError(f"model {model.name!r} takes {fixed} x {fixed} images; --size {size} does not fit")
    return fixed or size or 224


def prepare(args) -> tuple:
    """Everything checked before the first photo is read: (model, settings, photos to do, skipped)."""
    methods = tuple(split_list(args.method, ["grad_cam"]))
    unknown = [m for m in methods if m not in engine.METHODS]
    if unknown:
        raise UsageError(f"unknown method {unknown[0]!r}; choose from {', '.join(engine.METHODS)}")
    if len(set(methods)) != len(methods):
        raise UsageError(f"--method names a method twice: {', '.join(methods)}")
    if args.batch_size < 1 or args.workers < 1:
        raise UsageError("--batch-size and --workers must be at least 1")
    out = Path(args.out)
    found = find_photos(args.paths, out)
    model = load(args.model, args.arch, args.unsafe)
    size = input_size(model, args.size)
    output = int(args.output) if args.output is not None and args.output.isdigit() else args.output
    first = Settings(methods, Classes(1), args.layer, output, size, args.fit, 0)
    try:  # one blank photo: checks the layer, the output and the method now, and compiles the pass
        n_classes = int(explanation(model, np.zeros((1, size, size, 3), np.float32), methods[0], None, first)
                        .logits.shape[-1])  # fmt: skip
    except Exception as e:  # the engine's own messages say what is wrong with the model or the options
        message = " ".join(str(e).split()) or type(e).__name__
        raise UsageError(message.replace("with output=", "with --output")) from None
    s = first._replace(classes=parse_classes(args.classes, n_classes), n_classes=n_classes)
    out.mkdir(parents=True, exist_ok=True)
    check_settings(out, {
        "model": args.model if args.model in models.MODELS else os.path.abspath(args.model), "arch": args.arch,
        "methods": list(methods), "classes": args.classes, "layer": args.layer, "output": args.output,
        "fit": args.fit, "size": size,
    })  # fmt: skip
    done = done_photos(out, len(methods) * s.classes.k)
    todo = [p for p in found if p.path not in done]
    restart_results(out, done, todo)
    return model, s, todo, len(found) - len(todo)


def main(argv: Sequence[str] | None = None) -> int:
    """The command line; returns the exit code (EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED)."""
    args = parser().parse_args(argv)
    out = Path(args.out)
    try:
        model, s, todo, skipped = prepare(args)
        if skipped:
            print(f"{skipped} photos already done in {out}, skipped")
        summary = run(model, todo, out, s, args.batch_size, args.workers, skipped)
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"\ninterrupted; what was done is in {out / 'results.csv'}: run the same command to go on",
              file=sys.stderr)  # fmt: skip
        return EXIT_INTERRUPTED
    failed = f", could not be read: {summary.failed} (see results.csv)" if summary.failed else ""
    print(f"photos explained: {summary.explained}{failed}; results in {out}")
    return EXIT_FAILED if summary.failed else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
