"""Latency of the explorer (camlib/explorer.py, issue 11) on EfficientNet-Lite0, batch 1.

Drives the widgets from Python, as a click would, and times each value change until the
new PNG bytes are in the `ipywidgets.Image` (widget callbacks run synchronously, so that is
when the assignment returns; the browser's own drawing is not included):

- first picture: `explore(model)` on a newly loaded model until its first picture exists
  (the model's compiled pass traced on the way); target 3 s;
- class: a click on another of the top-5 buttons; target 150 ms;
- method: each fast method in turn (`engine.METHODS` minus Score-CAM and Ablation-CAM);
- opacity: the slider (a redraw, no model call);
- photo: another example photo (a new forward pass, new top-5 buttons).

Class, method and photo changes are timed cold (`Explorer.forget()` before each, so every
change runs the model) after one warm-up round (tracing is the first picture's cost, not a
change's); "cached" is going back to a picture already computed. Prints medians and the
90th percentile; no asserts.

    python benchmarks/explorer_latency.py [--rounds 5] [--model efficientnet_lite0]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from camlib import engine, explorer, models, photos  # noqa: E402


def timed(change) -> float:
    """Milliseconds for one change of the UI (a callable that sets a widget value)."""
    start = time.perf_counter()
    change()
    return 1000 * (time.perf_counter() - start)


def summary(name: str, ms: list[float], target: float | None = None) -> str:
    ms = sorted(ms)
    p90 = ms[min(len(ms) - 1, int(0.9 * len(ms)))]
    verdict = "" if target is None else ("  ok" if statistics.median(ms) <= target else f"  over {target:.0f} ms")
    return f"{name:<34} median {statistics.median(ms):8.1f} ms   p90 {p90:8.1f} ms   n={len(ms):<3}{verdict}"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="efficientnet_lite0")
    parser.add_argument("--rounds", type=int, default=5, help="rounds of each kind of change (default 5)")
    args = parser.parse_args()

    print(f"{args.model}, batch 1; {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs")
    start = time.perf_counter()
    model = models.load_model(args.model)
    print(f"model loaded in {time.perf_counter() - start:.2f} s (not part of the first picture)")

    start = time.perf_counter()
    ex = explorer.explore(model).explorer
    first = time.perf_counter() - start
    assert ex.picture and not ex.message, ex.message
    print(
        f"{'first picture (explore(model))':<34} {first * 1000:8.0f} ms   target 3000 ms"
        + ("  ok" if first <= 3 else "")
    )

    fast = [m for m in engine.METHODS if not explorer.is_slow(m)]
    names = list(photos.EXAMPLES)[: args.rounds + 1]
    for m in fast:  # warm-up: every compiled pass traced, every photo read once
        ex.method = m
    for name in names:
        ex.photo = name
    ex.photo, ex.method = names[0], "grad_cam"

    def cold(change):
        ex.forget()
        return timed(change)

    results = {"class (top-5 button)": [], "method (fast ones)": [], "opacity": [], "photo": [], "cached": []}
    for r in range(args.rounds):
        ex.method = "grad_cam"
        for value in [v for _, v in ex.w.classes.options][1:]:
            results["class (top-5 button)"].append(cold(lambda v=value: setattr(ex.w.classes, "value", v)))
        for m in fast:
            results["method (fast ones)"].append(cold(lambda m=m: setattr(ex.w.method, "value", m)))
        for value in (0.3, 0.7, 0.5):
            results["opacity"].append(timed(lambda v=value: setattr(ex.w.opacity, "value", v)))
        ex.method = "grad_cam"
        results["photo"].append(cold(lambda n=names[(r + 1) % len(names)]: setattr(ex.w.photo, "value", n)))
        for m in ("grad_cam++", "grad_cam", "grad_cam++"):  # both computed once: from the cache
            ex.method = m
        results["cached"].append(timed(lambda: setattr(ex.w.method, "value", "grad_cam")))
    assert not ex.message, ex.message

    per_method = {m: [] for m in fast}
    for _ in range(args.rounds):
        for m in fast:
            per_method[m].append(cold(lambda m=m: setattr(ex.w.method, "value", m)))

    print(f"\nevery change, value set -> new PNG bytes ({args.rounds} rounds, maps recomputed):")
    for name, ms in results.items():
        print(summary(name, ms, target=150))
    print("\nper method:")
    for m, ms in per_method.items():
        print(summary(f"  {m}", ms, target=150))


if __name__ == "__main__":
    main()
