"""Throughput of the command line's pipeline against a compiled forward pass (issue 12).

Both are measured in one run, on the same model, the same photos and the same batch size:

- "forward": `tf.function(lambda x: model(x, training=False))` over the photos already
  decoded into arrays (N, S, S, 3): the floor, nothing but the network;
- "cli": `camlib.cli.run` from the files on disk: decoding (a thread pool), the method's
  compiled pass, peaks and boxes, the overlay PNGs, the .npz maps and results.csv, into
  a fresh folder each round.

The photos are the repository's five example photos (images/dog.jpg, eagle, giraffe, horses,
person; 500 to 773 pixels wide), repeated to `--photos`
files in a temporary folder. Rounds alternate the two, after one warm-up of each (tracing);
the medians are compared. The target: cli >= 0.8 x forward.

    .venv/bin/python benchmarks/cli_throughput.py                    # grad_cam, 128 photos, batch 16
    .venv/bin/python benchmarks/cli_throughput.py --method grad_cam,grad_cam++ --classes top3
    .venv/bin/python benchmarks/cli_throughput.py --model resnet50 --random-weights   # a heavier network
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from camlib import cli, models, photos  # noqa: E402


def make_photos(folder: Path, n: int) -> list[Path]:
    """n JPEG files in `folder`, copies of the five example photos in images/ in turn (decoding
    costs what a real photo costs)."""
    sources = [ROOT / "images" / f"{name}.jpg" for name in ("dog", "eagle", "giraffe", "horses", "person")]
    paths = []
    for i in range(n):
        path = folder / f"{i:05d}_{sources[i % len(sources)].name}"
        shutil.copyfile(sources[i % len(sources)], path)
        paths.append(path)
    return paths


def time_forward(model, images: np.ndarray, batch_size: int) -> tuple[float, float]:
    """(wall, CPU) seconds for a compiled forward pass over `images` (N, S, S, 3), batch by batch."""
    if "_bench_forward" not in model.__dict__:
        model.__dict__["_bench_forward"] = tf.function(lambda x: model(x, training=False), autograph=False)
    forward = model.__dict__["_bench_forward"]
    start, cpu = time.perf_counter(), time.process_time()
    for i in range(0, len(images), batch_size):
        forward(tf.constant(images[i : i + batch_size])).numpy()
    return time.perf_counter() - start, time.process_time() - cpu


def time_cli(model, folder: Path, settings: cli.Settings, batch_size: int, workers: int) -> tuple[float, float]:
    """(wall, CPU) seconds for the command line's pipeline over the photos in `folder`, into a fresh folder."""
    out = Path(tempfile.mkdtemp(prefix="cli-bench-out-"))
    try:
        todo = cli.find_photos([str(folder)], out)
        cli.restart_results(out, set(), todo)
        start, cpu = time.perf_counter(), time.process_time()
        summary = cli.run(model, todo, out, settings, batch_size, workers, progress=False)
        seconds = time.perf_counter() - start, time.process_time() - cpu
        assert summary.explained == len(todo) and summary.failed == 0, summary
        return seconds
    finally:
        shutil.rmtree(out)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="efficientnet_lite0")
    p.add_argument("--random-weights", action="store_true", help="for keras.applications models offline")
    p.add_argument("--method", default="grad_cam")
    p.add_argument("--classes", default="top1")
    p.add_argument("--photos", type=int, default=128)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args(argv)

    model = models.load_model(args.model, weights=None if args.random_weights else "imagenet")
    size = model.inputs[0].shape[1]
    n_classes = model.outputs[0].shape[-1]
    settings = cli.Settings(
        tuple(cli.split_list([args.method])), cli.parse_classes(args.classes, n_classes), None, None, size, "crop",
        n_classes,
    )  # fmt: skip
    folder = Path(tempfile.mkdtemp(prefix="cli-bench-photos-"))
    try:
        paths = make_photos(folder, args.photos)
        images = np.stack([photos.load_image(p, size) for p in paths]).astype(np.float32)  # (N, S, S, 3)
        warm = Path(tempfile.mkdtemp(prefix="cli-bench-warm-", dir=folder.parent))
        for p in paths[: args.batch_size]:
            shutil.copyfile(p, warm / p.name)
        time_forward(model, images[: args.batch_size], args.batch_size)  # traces
        time_cli(model, warm, settings, args.batch_size, args.workers)
        shutil.rmtree(warm)

        forward, pipeline = [], []
        for r in range(args.rounds):
            forward.append(time_forward(model, images, args.batch_size))
            pipeline.append(time_cli(model, folder, settings, args.batch_size, args.workers))
            print(f"round {r + 1}: forward {len(paths) / forward[-1][0]:.1f} photos/s, "
                  f"cli {len(paths) / pipeline[-1][0]:.1f} photos/s", flush=True)  # fmt: skip
    finally:
        shutil.rmtree(folder)
    (f, f_cpu), (c, c_cpu) = [len(paths) / np.median(np.array(t), axis=0) for t in (forward, pipeline)]
    print(
        f"\n{args.model}, {args.method} ({args.classes}), {len(paths)} photos, batch {args.batch_size}, "
        f"{args.workers} decoding threads, {os.cpu_count()} CPUs, medians of {args.rounds} rounds:\n"
        f"  compiled forward pass, decoded arrays: {f:6.1f} photos/s ({1000 / f_cpu:.1f} ms of CPU per photo)\n"
        f"  command line pipeline, files on disk: {c:6.1f} photos/s ({1000 / c_cpu:.1f} ms of CPU per photo)\n"
        f"  ratio cli / forward: {c / f:.2f} (target >= 0.8)"
    )


if __name__ == "__main__":
    main()
