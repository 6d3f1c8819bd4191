"""What bench.py and experiments.py both use: the models and photos, the floors, the
interleaved timing and the tables. Imports only the project (never bench.py or
experiments.py), so that nothing imports in a circle:

    common  <-  experiments  <-  bench
       ^-----------------------------|
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import helpers  # noqa: E402

FORWARD, FORWARD_GRAD = "forward", "forward+grad"
FLOORS = (FORWARD, FORWARD_GRAD)

Candidate = Callable[[], object]  # one timed call, returns what the user gets (numpy)


# ---------------------------------------------------------------------------
# Models, images, floors


def load(name: str) -> tuple[keras.Model, str]:
    """The model and where its weights come from."""
    if name == "efficientnet_lite0":
        return helpers.load_model(name), "ImageNet (pip package)"
    if name in helpers.SHARED_WEIGHTS:
        path = helpers.shared_weights(name)
        return helpers.load_model(name, weights=path), "ImageNet (../shared/models)" if path else "random"
    return helpers.load_model(name, weights=None), "random"


def photos(n: int, size: int = 224) -> np.ndarray:
    """n example photos (cycled) as float32 (n, size, size, 3), pixels 0..255."""
    names = sorted(helpers.EXAMPLES)
    return np.stack([helpers.example(names[i % len(names)], size) for i in range(n)]).astype(np.float32)


def random_images(rng: np.random.Generator, n: int, size: int = 224) -> np.ndarray:
    """n random images, float32 pixels 0..255."""
    return rng.uniform(0, 255, (n, size, size, 3)).astype(np.float32)


def floors(model: keras.Model) -> dict[str, Callable[[np.ndarray], np.ndarray]]:
    """The two compiled floors, as functions images -> numpy: "forward" (what a map method
    cannot beat) and "forward+grad" (the gradient of each image's top logit w.r.t. the
    input: what a guided method cannot beat)."""
    forward = tf.function(lambda x: model(x, training=False))

    @tf.function
    def forward_grad(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            logits = model(x, training=False)
            score = tf.reduce_sum(tf.reduce_max(logits, axis=-1))  # each image's top logit
        return tape.gradient(score, x)

    return {
        FORWARD: lambda x: forward(x).numpy(),
        FORWARD_GRAD: lambda x: forward_grad(tf.constant(x)).numpy(),
    }


def pass_traces(model: keras.Model) -> dict[str, int]:
    """Concrete functions traced by each compiled pass cached on the model: the gradient
    passes of `camlib.engine` (one per (layers, guided, output, input specs[, K when guided])) and the
    forward passes of `camlib.perturbation` (Score-CAM, Ablation-CAM)."""
    out = {}
    for (layers, guided, output, _, _), fn in model.__dict__.get("_cam_passes", {}).items():
        out[f"{'guided' if guided else 'maps'} {'+'.join(layers) or '(pixels)'}"] = fn.experimental_get_tracing_count()
    for key, fn in model.__dict__.get("_cam_perturbation", {}).items():
        if hasattr(fn, "experimental_get_tracing_count"):
            out[f"{key[0]} {key[1]}"] = fn.experimental_get_tracing_count()
    return out


# ---------------------------------------------------------------------------
# Timing


def time_call(fn: Candidate) -> float:
    """Seconds of one call (its result already numpy)."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def interleaved(cands: dict[str, Candidate], repeats: int, n: int | dict[str, int], warm_up: bool = True,
                calls: dict[str, int] | None = None) -> dict[str, list[float]]:
    """ms/image of each candidate over `repeats` rounds. Each round calls every candidate
    once (`calls[name]` times, each call its own sample), in a new random order (seeded),
    so that a noisy moment of the machine hits all of them alike and no candidate always
    runs right after the same one: a call that allocates and touches hundreds of MB
    (Ablation-CAM, a guided pass at batch 32) slows the call after it, and with a fixed
    cyclic order (a rotation) that would always be the same candidate. One untimed
    warm-up call each first. `n`: images per call (per candidate if a dict)."""
    if warm_up:
        for fn in cands.values():
            fn()
    names = list(cands)
    times = {name: [] for name in names}
    rng = np.random.default_rng(0)
    for _ in range(repeats):
        gc.collect()
        gc.disable()
        try:
            for i in rng.permutation(len(names)):
                name = names[i]
                per = n[name] if isinstance(n, dict) else n
                for _ in range((calls or {}).get(name, 1)):
                    times[name].append(1000 * time_call(cands[name]) / per)
        finally:
            gc.enable()
    return times


def summary(ms: list[float]) -> dict:
    return {"min": float(np.min(ms)), "median": float(np.median(ms)), "max": float(np.max(ms)), "runs": len(ms)}


# ---------------------------------------------------------------------------
# Tables and arguments


def render(headers: list[str], rows: list[list], markdown: bool) -> str:
    """A Markdown table, or columns aligned with spaces."""
    cells = [[str(c) for c in row] for row in rows]
    if markdown:
        lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
        return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in cells])
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return "\n".join([fmt.format(*headers), fmt.format(*("-" * w for w in widths))] + [fmt.format(*r) for r in cells])


def print_section(title: str, headers: list[str], rows: list[list], markdown: bool) -> None:
    print(f"\n{'### ' if markdown else '== '}{title}\n", flush=True)
    print(render(headers, rows, markdown), flush=True)


def add_common_args(p: argparse.ArgumentParser, models: tuple[str, ...]) -> None:
    """The options bench.py and experiments.py share."""
    p.add_argument(
        "--models",
        nargs="+",
        default=None,
        choices=helpers.MODELS,
        metavar="MODEL",
        help=f"models to benchmark (default: {' '.join(models)})",
    )
    p.add_argument("--batches", nargs="+", type=int, default=[1, 32], help="batch sizes (default: 1 32)")
    p.add_argument("--repeats", type=int, default=10, help="interleaved rounds per model and batch (default: 10)")
    p.add_argument("--markdown", action="store_true", help="print Markdown tables (for the README)")
