"""Speed benchmark of `helpers.explain` (the project's issue "Speed").

For each model and batch size it times every method of the CAM family against the
model's own floor, measured in the same run and interleaved with it:

- floor (a) "forward": `tf.function(lambda x: model(x, training=False))`, for the map
  methods (cam, grad_cam, grad_cam++, counterfactual, top-5 grad_cam);
- floor (b) "forward+grad": a compiled forward pass plus the gradient of each image's
  top logit with respect to the input, for the guided methods.

It also reports the first call of each method (tracing included), the peak memory of
a batch-32 call (RSS high-water mark in a fresh subprocess), a leak / retrace check
(50 calls with new random images), and, when `tf-keras-vis` is importable, the speed of
its Gradcam and GradcamPlusPlus against ours on EfficientNet-Lite0. `--experiments`
(benchmarks/experiments.py) times stripped-down variants of `helpers._compiled_pass`.

    python benchmarks/bench.py                 # the full run (~25 min on 2 cores)
    python benchmarks/bench.py --quick         # a smoke run (~3 min)
    python benchmarks/bench.py --markdown      # Markdown tables, for the README

See benchmarks/README.md for the set-up (the tf-keras-vis extra) and the columns.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import os
import platform
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

MODELS = ("efficientnet_lite0", "mobilenet_v2", "resnet50")
MAP_METHODS = ("cam", "grad_cam", "grad_cam++", "counterfactual")
GUIDED_METHODS = ("guided_backprop", "guided_grad_cam", "guided_grad_cam++")
TOP5 = "top-5 grad_cam"
METHODS = (*MAP_METHODS, TOP5, *GUIDED_METHODS)
FORWARD, FORWARD_GRAD = "forward", "forward+grad"
FLOORS = (FORWARD, FORWARD_GRAD)
# method -> (the floor it is compared with, the target ratio of the medians)
TARGETS = {
    **{m: (FORWARD, 1.15) for m in MAP_METHODS},
    TOP5: (FORWARD, 1.3),
    **{m: (FORWARD_GRAD, 1.15) for m in GUIDED_METHODS},
}
TKV_LAYER = "top_activation"
TKV_TARGETS = {1: 30.0, 32: 10.0}  # batch -> minimum speed-up over tf-keras-vis
LEAK_CALLS = 50

Candidate = Callable[[], np.ndarray]  # one timed call, returns what the user gets


# ---------------------------------------------------------------------------
# Machine facts


def proc_status_mb(field: str) -> float:
    """A field of /proc/self/status (VmRSS, VmHWM, ...) in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise KeyError(field)


def reset_peak_rss() -> None:
    """Reset VmHWM to the current VmRSS (Linux: write 5 to /proc/self/clear_refs)."""
    Path("/proc/self/clear_refs").write_text("5")


def machine() -> dict:
    """What the numbers were measured on."""
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "numpy": np.__version__,
        "oneDNN": os.environ.get("TF_ENABLE_ONEDNN_OPTS"),
        "load average": Path("/proc/loadavg").read_text().split()[:3],
    }


# ---------------------------------------------------------------------------
# Models, images and the candidates timed


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


def floors(model: keras.Model) -> dict[str, Callable]:
    """The two compiled floors, as functions images -> numpy."""
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


def candidates(model: keras.Model, x: np.ndarray, names=(*FLOORS, *METHODS)) -> dict[str, Candidate]:
    """name -> a call on the batch x. Map methods explain each image's top-1 class
    (classes=None); "top-5 grad_cam" passes its top-5 as one (N, 5) array."""
    floor = floors(model)
    out = {}
    for name in names:
        if name in floor:
            out[name] = lambda f=floor[name]: f(x)
        elif name == TOP5:
            logits = model(x, training=False).numpy()  # eager: traces none of the floors early
            top5 = np.argsort(-logits, axis=1)[:, :5].astype(np.int32)
            out[name] = lambda c=top5: helpers.explain(model, x, "grad_cam", c)
        else:
            out[name] = lambda m=name: helpers.explain(model, x, m)
    return out


# ---------------------------------------------------------------------------
# Timing


def time_call(fn: Candidate) -> float:
    """Seconds of one call (its result already numpy)."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def interleaved(cands: dict[str, Candidate], repeats: int, n: int) -> dict[str, list[float]]:
    """ms/image of each candidate over `repeats` rounds. Each round calls every candidate
    once, round-robin, starting one further each round, so that a noisy moment of the
    machine hits all of them alike. One untimed warm-up call each first."""
    for fn in cands.values():
        fn()
    names = list(cands)
    times = {name: [] for name in names}
    for r in range(repeats):
        gc.collect()
        gc.disable()
        try:
            for i in range(len(names)):
                name = names[(r + i) % len(names)]
                times[name].append(1000 * time_call(cands[name]) / n)
        finally:
            gc.enable()
    return times


def summary(ms: list[float]) -> dict:
    return {"min": float(np.min(ms)), "median": float(np.median(ms)), "max": float(np.max(ms)), "runs": len(ms)}


def first_calls(model: keras.Model, x: np.ndarray) -> dict[str, float]:
    """Seconds of the first call of each candidate on this model, tracing included
    (floors first; each method traces its own compiled pass)."""
    return {name: time_call(fn) for name, fn in candidates(model, x).items()}


# ---------------------------------------------------------------------------
# Memory


def malloc_trim() -> None:
    """Give the C heap's free memory back to the OS (glibc), so that the next call's peak
    RSS is not hidden in memory the allocator kept from an earlier call."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def peak_memory(cands: dict[str, Candidate], rounds: int = 2) -> dict[str, dict]:
    """Per candidate (already warm): VmHWM during one call minus VmRSS just before it, MB,
    the largest of `rounds` calls, and the RSS the call left behind. The heap is trimmed
    before each call and the peak reset through /proc/self/clear_refs."""
    out = {name: {"peak_mb": 0.0, "kept_mb": 0.0} for name in cands}
    for _ in range(rounds):
        for name, fn in cands.items():
            gc.collect()
            malloc_trim()
            base = proc_status_mb("VmRSS")
            reset_peak_rss()
            fn()
            peak, kept = proc_status_mb("VmHWM") - base, proc_status_mb("VmRSS") - base
            out[name] = {"peak_mb": max(out[name]["peak_mb"], peak), "kept_mb": max(out[name]["kept_mb"], kept)}
    return out


# ---------------------------------------------------------------------------
# Leaks and retracing


def leak_check(model: keras.Model, calls: int = LEAK_CALLS, seed: int = 0) -> dict:
    """`calls` rounds of every method, each call on new random images (batch 1) and a new
    random class: RSS growth from round 5 to the end, and per method the number of
    concrete functions its cached tf.function traced (over the whole benchmark)."""
    rng = np.random.default_rng(seed)
    n_classes = model.outputs[0].shape[-1]
    rss, warm = {}, min(5, calls)
    for r in range(calls):
        for method in METHODS:
            x = random_images(rng, 1)
            if method == TOP5:
                helpers.explain(model, x, "grad_cam", rng.choice(n_classes, (1, 5), replace=False).astype(np.int32))
            else:
                helpers.explain(model, x, method, int(rng.integers(n_classes)))
        if r + 1 in (warm, calls):
            gc.collect()
            rss[r + 1] = proc_status_mb("VmRSS")
    return {"rss_growth_mb": rss[calls] - rss[warm], "traces": tracing_counts(model)}


def tracing_counts(model: keras.Model) -> dict[str, int]:
    """Concrete functions traced by each cached compiled pass of the model."""
    passes = model.__dict__.get("_cam_passes", {})
    return {f"{method} k={k}": fn.experimental_get_tracing_count() for (_, method, k), fn in passes.items()}


# ---------------------------------------------------------------------------
# tf-keras-vis


def tkv_candidates(model: keras.Model, x: np.ndarray) -> dict[str, Candidate] | None:
    """Ours and tf-keras-vis' Grad-CAM and Grad-CAM++ on the same images, classes (each
    image's top-1) and layer; the score is the logit (the model's output is linear)."""
    try:
        from tf_keras_vis.gradcam import Gradcam
        from tf_keras_vis.gradcam_plus_plus import GradcamPlusPlus
        from tf_keras_vis.utils.scores import CategoricalScore
    except ImportError:
        return None
    classes = np.argmax(floors(model)[FORWARD](x), axis=1).astype(np.int32)
    score = CategoricalScore(classes.tolist())
    gradcam, gradcam_pp = Gradcam(model, clone=False), GradcamPlusPlus(model, clone=False)
    kwargs = {"penultimate_layer": TKV_LAYER, "seek_penultimate_conv_layer": False}
    return {
        "ours grad_cam": lambda: helpers.explain(model, x, "grad_cam", classes, TKV_LAYER),
        "tf-keras-vis Gradcam": lambda: gradcam(score, x, **kwargs),
        "ours grad_cam++": lambda: helpers.explain(model, x, "grad_cam++", classes, TKV_LAYER),
        "tf-keras-vis GradcamPlusPlus": lambda: gradcam_pp(score, x, **kwargs),
    }


def tkv_agreement(model: keras.Model, x: np.ndarray) -> dict[str, float]:
    """Max |ours - theirs| once theirs is upsampled and scaled our way. tf-keras-vis
    returns maps min-max normalised after a corner-aligned scipy zoom; with
    expand_cam=False, normalize_cam=False it returns the raw h x w map, which
    helpers.upsample_and_scale turns into what ours should equal."""
    from tf_keras_vis.gradcam import Gradcam
    from tf_keras_vis.gradcam_plus_plus import GradcamPlusPlus
    from tf_keras_vis.utils.scores import CategoricalScore

    classes = np.argmax(floors(model)[FORWARD](x), axis=1).astype(np.int32)
    out = {}
    for ours, theirs in (("grad_cam", Gradcam), ("grad_cam++", GradcamPlusPlus)):
        raw = theirs(model, clone=False)(
            CategoricalScore(classes.tolist()),
            x,
            penultimate_layer=TKV_LAYER,
            seek_penultimate_conv_layer=False,
            expand_cam=False,
            normalize_cam=False,
        )
        theirs_scaled = helpers.upsample_and_scale(tf.constant(np.asarray(raw, np.float32)), x.shape[1:3]).numpy()
        out[ours] = float(np.abs(helpers.explain(model, x, ours, classes, TKV_LAYER) - theirs_scaled).max())
    return out


# ---------------------------------------------------------------------------
# Tables


def render(headers: list[str], rows: list[list], markdown: bool) -> str:
    """A Markdown table, or columns aligned with spaces."""
    cells = [[str(c) for c in row] for row in rows]
    if markdown:
        lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
        return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in cells])
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return "\n".join([fmt.format(*headers), fmt.format(*("-" * w for w in widths))] + [fmt.format(*r) for r in cells])


def speed_rows(model_name: str, batch: int, times: dict[str, list[float]]) -> list[list]:
    """One row per floor and method: ms/image min / median / max, ratio to its floor."""
    medians = {name: np.median(ms) for name, ms in times.items()}
    rows = []
    for name, ms in times.items():
        s = summary(ms)
        floor, target = TARGETS.get(name, (name, None))
        ratio = medians[name] / medians[floor]
        verdict = "" if target is None else ("yes" if ratio <= target else "NO")
        rows.append(
            [
                model_name,
                batch,
                name,
                f"{s['min']:.1f}",
                f"{s['median']:.1f}",
                f"{s['max']:.1f}",
                floor,
                f"{ratio:.2f}",
                "" if target is None else f"<= {target}",
                verdict,
            ]
        )
    return rows


SPEED_HEADERS = [
    "model",
    "batch",
    "method",
    "min ms/img",
    "median ms/img",
    "max ms/img",
    "floor",
    "ratio",
    "target",
    "met",
]


def print_section(title: str, headers: list[str], rows: list[list], markdown: bool) -> None:
    print(f"\n{'### ' if markdown else '== '}{title}\n", flush=True)
    print(render(headers, rows, markdown), flush=True)


# ---------------------------------------------------------------------------
# The run


def bench_model(model_name: str, args, results: dict) -> None:
    """Everything measured on one model, added to `results` and printed as it comes."""
    start = time.perf_counter()
    model, weights = load(model_name)
    results["models"][model_name] = entry = {"weights": weights, "load_s": time.perf_counter() - start}
    print(
        f"\n# {model_name}: weights {weights}, target layer {helpers.target_layer(model)}, "
        f"loaded in {entry['load_s']:.1f} s",
        flush=True,
    )

    entry["first_call_s"] = first_calls(model, photos(min(args.batches)))
    entry["speed"] = {}
    for batch in args.batches:
        cands = candidates(model, photos(batch))
        entry["speed"][batch] = interleaved(cands, args.repeats, batch)
        if batch == max(args.batches) and not args.no_memory:
            entry["memory"] = peak_memory(cands)
        print_section(
            f"{model_name}, batch {batch}: ms/image over {args.repeats} interleaved runs",
            SPEED_HEADERS,
            speed_rows(model_name, batch, entry["speed"][batch]),
            args.markdown,
        )
    if not args.no_leak:
        entry["leak"] = leak_check(model, args.leak_calls)
    if model_name == "efficientnet_lite0" and not args.no_tkv:
        bench_tkv(model, args, results)
    del model
    gc.collect()


def bench_tkv(model: keras.Model, args, results: dict) -> None:
    """Ours vs tf-keras-vis on this model (EfficientNet-Lite0), or a note why not."""
    if tkv_candidates(model, photos(1)) is None:
        results["tkv"] = "tf-keras-vis is not importable here: see benchmarks/README.md for its venv"
        print(f"\n{results['tkv']}", flush=True)
        return
    import tf_keras_vis

    results["tkv"] = {"version": tf_keras_vis.__version__, "agreement": tkv_agreement(model, photos(4)), "speed": {}}
    for batch in args.batches:
        results["tkv"]["speed"][batch] = interleaved(tkv_candidates(model, photos(batch)), args.tkv_repeats, batch)


def report(results: dict, md: bool) -> None:
    """The summary tables of everything measured (`results` as stored by --json)."""
    settings = results["settings"]
    m = results["machine"]
    print_section("Machine", ["what", "value"], [[k, v] for k, v in m.items()], md)
    rows = []
    for name, entry in results["models"].items():
        for batch, times in entry["speed"].items():
            rows += speed_rows(name, batch, times)
    print_section(
        f"Speed: ms/image over {settings['repeats']} interleaved runs (ratio of medians to the floor)",
        SPEED_HEADERS,
        rows,
        md,
    )

    rows = [
        [name, e["weights"], f"{e['load_s']:.1f}"] + [f"{e['first_call_s'][c]:.2f}" for c in (*FLOORS, *METHODS)]
        for name, e in results["models"].items()
    ]
    print_section(
        f"First call on a new model, tracing included (s, batch {min(settings['batches'])})",
        ["model", "weights", "load", *FLOORS, *METHODS],
        rows,
        md,
    )

    if not settings["no_memory"]:
        rows = []
        for name, e in results["models"].items():
            mem = e["memory"]
            rows.append(
                [name]
                + [
                    ("error" if "error" in mem[c] else f"{mem[c]['peak_mb']:.0f} ({mem[c]['kept_mb']:.0f})")
                    for c in (*FLOORS, *METHODS)
                ]
            )
        print_section(
            f"Peak memory of one batch-{max(settings['batches'])} call: VmHWM - VmRSS before, MB "
            "(in brackets: VmRSS kept after the call)",
            ["model", *FLOORS, *METHODS],
            rows,
            md,
        )

    if not settings["no_leak"]:
        rows = []
        for name, e in results["models"].items():
            traces = e["leak"]["traces"]
            rows.append(
                [
                    name,
                    f"{e['leak']['rss_growth_mb']:+.1f}",
                    max(traces.values()),
                    sum(traces.values()),
                    ", ".join(f"{k}: {v}" for k, v in traces.items()),
                ]
            )
        print_section(
            f"Leaks and retracing: {settings['leak_calls']} rounds of every method on new random images",
            [
                "model",
                "RSS growth MB (round 5 -> end)",
                "max traces per pass",
                "total traces",
                "traces per cached pass",
            ],
            rows,
            md,
        )

    if "tkv" in results:
        report_tkv(results["tkv"], md)


def report_tkv(tkv, md: bool) -> None:
    if isinstance(tkv, str):
        print_section("tf-keras-vis", ["note"], [[tkv]], md)
        return
    rows = []
    for batch, times in tkv["speed"].items():
        med = {name: np.median(ms) for name, ms in times.items()}
        for ours, theirs, method in (
            ("ours grad_cam", "tf-keras-vis Gradcam", "grad_cam"),
            ("ours grad_cam++", "tf-keras-vis GradcamPlusPlus", "grad_cam++"),
        ):
            speedup = med[theirs] / med[ours]
            target = TKV_TARGETS.get(int(batch))
            rows.append(
                [
                    batch,
                    method,
                    f"{med[ours]:.1f}",
                    f"{med[theirs]:.1f}",
                    f"{summary(times[theirs])['min']:.1f}..{summary(times[theirs])['max']:.1f}",
                    f"{speedup:.1f}x",
                    "" if target is None else f">= {target:.0f}x",
                    "" if target is None else ("yes" if speedup >= target else "NO"),
                    f"{tkv['agreement'][method]:.1e}",
                ]
            )
    print_section(
        f"Ours vs tf-keras-vis {tkv['version']} on efficientnet_lite0, layer {TKV_LAYER}, logit score "
        "(median ms/image, interleaved)",
        [
            "batch",
            "method",
            "ours",
            "tf-keras-vis",
            "theirs min..max",
            "speed-up",
            "target",
            "met",
            "max |ours - theirs| (same scaling)",
        ],
        rows,
        md,
    )


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--models",
        nargs="+",
        default=list(MODELS),
        choices=helpers.MODELS,
        metavar="MODEL",
        help=f"models to benchmark (default: {' '.join(MODELS)})",
    )
    p.add_argument("--batches", nargs="+", type=int, default=[1, 32], help="batch sizes (default: 1 32)")
    p.add_argument("--repeats", type=int, default=10, help="interleaved rounds per model and batch (default: 10)")
    p.add_argument("--tkv-repeats", type=int, default=7, help="interleaved rounds against tf-keras-vis (default: 7)")
    p.add_argument(
        "--leak-calls", type=int, default=LEAK_CALLS, help=f"rounds of the leak check (default: {LEAK_CALLS})"
    )
    p.add_argument("--quick", action="store_true", help="a smoke run: 3 rounds, 10 leak rounds, no memory measurement")
    p.add_argument("--markdown", action="store_true", help="print Markdown tables (for the README)")
    p.add_argument("--no-memory", action="store_true", help="skip the peak memory measurement")
    p.add_argument("--no-leak", action="store_true", help="skip the leak / retrace check")
    p.add_argument("--no-tkv", action="store_true", help="skip the comparison with tf-keras-vis")
    p.add_argument("--json", type=Path, help="also write every raw timing to this file")
    p.add_argument("--report", type=Path, metavar="JSON", help="instead: print the tables of a run saved with --json")
    p.add_argument(
        "--experiments",
        action="store_true",
        help="instead: time stripped-down variants of helpers._compiled_pass (where the time goes)",
    )
    p.add_argument(
        "--only", nargs="+", metavar="EXPERIMENT", help="with --experiments: grad_cam, top-5 grad_cam, guided"
    )
    args = p.parse_args(argv)
    if args.quick:
        args.repeats, args.tkv_repeats, args.leak_calls, args.no_memory = 3, 2, 10, True
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.experiments:
        import experiments

        experiments.run_experiments(args)
        return
    if args.report:
        report(json.loads(args.report.read_text()), args.markdown)
        return
    settings = {
        k: getattr(args, k)
        for k in ("models", "batches", "repeats", "tkv_repeats", "leak_calls", "no_memory", "no_leak")
    }
    results = {"machine": machine(), "settings": settings, "models": {}}
    start = time.perf_counter()
    for model_name in args.models:
        bench_model(model_name, args, results)
    results["machine"]["load average after"] = Path("/proc/loadavg").read_text().split()[:3]
    results["machine"]["wall time"] = f"{time.perf_counter() - start:.0f} s"
    if args.json:
        args.json.write_text(json.dumps(results, indent=1, default=str))
    report(json.loads(json.dumps(results, default=str)), args.markdown)  # as --report would


if __name__ == "__main__":
    main()
