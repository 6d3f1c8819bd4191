"""Speed benchmark of `helpers.explain` (the project's issues "Speed" and 10).

The default run times, for each model and batch size, the methods of the CAM family
against the model's own floor, measured in the same run and interleaved with it:

- floor (a) "forward": `tf.function(lambda x: model(x, training=False))`, for the map
  methods (cam, grad_cam, grad_cam++, counterfactual, top-5 grad_cam);
- floor (b) "forward+grad": a compiled forward pass plus the gradient of each image's
  top logit with respect to the input, for the guided methods.

It also reports the first call of each method (tracing included), the peak memory of
a batch-32 call, a leak / retrace check (50 calls with new random images), and, when
`tf-keras-vis` is importable, the speed of its Gradcam and GradcamPlusPlus against ours
on EfficientNet-Lite0.

`--family` (issue 10) times the whole family of the unified compiled pass instead: every
gradient method, top-5 and Ablation-CAM against the forward pass; Score-CAM against the
cost of its own 1 + K forward passes and against tf-keras-vis' Scorecam (speed and
agreement); the first call on a new model and the absence of retracing.
`--experiments` (benchmarks/experiments.py) times stripped-down variants of the
compiled passes to show where the time goes.

    python benchmarks/bench.py                 # the full run (~45 min on 2 cores)
    python benchmarks/bench.py --quick         # a smoke run (~3 min)
    python benchmarks/bench.py --family --json /tmp/family.json
    python benchmarks/bench.py --markdown      # Markdown tables, for the README

See benchmarks/README.md for the set-up (the tf-keras-vis extra) and the columns.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import gc
import io
import json
import os
import platform
import time
from pathlib import Path

import common  # first: puts the project on sys.path and sets TensorFlow's environment)
import experiments
import keras
import numpy as np
import tensorflow as tf
from common import FLOORS, FORWARD, FORWARD_GRAD, Candidate, floors, photos, print_section, random_images, summary

import helpers
from camlib import engine, layers, perturbation

MODELS = ("efficientnet_lite0", "mobilenet_v2", "resnet50")
MAP_METHODS = ("cam", "grad_cam", "grad_cam++", "counterfactual")
GUIDED_METHODS = ("guided_backprop", "guided_grad_cam", "guided_grad_cam++")
TOP5 = "top-5 grad_cam"
METHODS = (*MAP_METHODS, TOP5, *GUIDED_METHODS)
# method -> (the floor it is compared with, the target ratio of the medians)
TARGETS = {
    **{m: (FORWARD, 1.15) for m in MAP_METHODS},
    TOP5: (FORWARD, 1.3),
    **{m: (FORWARD_GRAD, 1.15) for m in GUIDED_METHODS},
}
TKV_LAYER = "top_activation"
TKV_TARGETS = {1: 30.0, 32: 10.0}  # batch -> minimum speed-up over tf-keras-vis
LEAK_CALLS = 50


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
# First calls


def first_calls(model: keras.Model, x: np.ndarray) -> dict[str, float]:
    """Seconds of the first call of each candidate on this model, tracing included
    (floors first; the first map method traces the one pass that serves all of them,
    guided_backprop and the first guided map method each trace a guided pass)."""
    return {name: common.time_call(fn) for name, fn in candidates(model, x).items()}


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
    random class: RSS growth from round 5 to the end, and per cached compiled pass the
    number of concrete functions it traced (over the whole benchmark)."""
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
    return {"rss_growth_mb": rss[calls] - rss[warm], "traces": common.pass_traces(model)}


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


def speed_rows(model_name: str, batch, times: dict[str, list[float]], targets: dict | None = None) -> list[list]:
    """One row per floor and method: ms/image min / median / max, ratio to its floor
    (`targets`: method -> (floor, target ratio); TARGETS unless given)."""
    medians = {name: np.median(ms) for name, ms in times.items()}
    rows = []
    for name, ms in times.items():
        s = summary(ms)
        floor, target = (targets or TARGETS).get(name, (name, None))
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


# ---------------------------------------------------------------------------
# The run


def bench_model(model_name: str, args, results: dict) -> None:
    """Everything measured on one model, added to `results` and printed as it comes."""
    start = time.perf_counter()
    model, weights = common.load(model_name)
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
        entry["speed"][batch] = common.interleaved(cands, args.repeats, batch)
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
        cands = tkv_candidates(model, photos(batch))
        results["tkv"]["speed"][batch] = common.interleaved(cands, args.tkv_repeats, batch)


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


# ---------------------------------------------------------------------------
# --family: the unified pass of every gradient method, Score-CAM, Ablation-CAM (issue 10)

FAMILY_MODELS = ("efficientnet_lite0", "mobilenet_v2")
GRADIENT_METHODS = tuple(engine.MAP_METHODS)  # one compiled pass per (model, layers) serves them all
ABLATION, SCORE = "ablation_cam", "score_cam"
FORWARD_ABLATION = "forward, Ablation-CAM's rounds"
FAMILY_TARGETS = {
    **{m: (FORWARD, 1.15) for m in GRADIENT_METHODS},
    TOP5: (FORWARD, 1.3),
    ABLATION: (FORWARD_ABLATION, 2.0),
}
SCORE_TARGET = 1.15  # Score-CAM / the cost of its own 1 + K forward passes
OURS_SCORE, TKV_SCORE = "ours score_cam", "tf-keras-vis Scorecam"


def family_candidates(model: keras.Model, x: np.ndarray) -> dict[str, Candidate]:
    """The forward floor, every gradient method (each image's top-1) and top-5 Grad-CAM in
    one call, on the batch x."""
    forward = floors(model)[FORWARD]
    out = {FORWARD: lambda: forward(x)}
    for method in GRADIENT_METHODS:
        out[method] = lambda m=method: helpers.explain(model, x, m)
    top5 = np.argsort(-model(x, training=False).numpy(), axis=1)[:, :5].astype(np.int32)  # eager: no floor traced
    out[TOP5] = lambda: helpers.explain(model, x, "grad_cam", top5)
    return out


def ablation_times(model: keras.Model, x: np.ndarray, rounds: int) -> dict[str, list[float]]:
    """Ablation-CAM against the forward pass, in rounds of their own: Ablation-CAM writes and
    reads ~320 MB per image, which slows the call after it (caches, page faults), so it is
    kept out of the gradient methods' rounds; here the forward pass is called 3 times per
    round, and the median of its samples is mostly of calls that follow a forward pass."""
    forward = floors(model)[FORWARD]
    cands = {
        FORWARD_ABLATION: lambda: forward(x),
        ABLATION: lambda: helpers.explain(model, x, ABLATION, progress=False),
    }
    return common.interleaved(cands, rounds, len(x), calls={FORWARD_ABLATION: 3})


def family_first_calls(model_name: str) -> dict:
    """On a freshly loaded model: the first call of the forward floor and of grad_cam
    (tracing the unified pass included), then the first call of every other method, of
    explicit classes, top-5, signed and batch 32, each of which should cost a warm call;
    and the pass cache with its tracing counts (1: nothing retraced)."""
    start = time.perf_counter()
    model, weights = common.load(model_name)
    load_s = time.perf_counter() - start
    x1, x32 = photos(1), photos(32)
    forward = floors(model)[FORWARD]
    calls = {
        "forward": lambda: forward(x1),
        "grad_cam": lambda: helpers.explain(model, x1, "grad_cam"),
        **{m: (lambda m=m: helpers.explain(model, x1, m)) for m in GRADIENT_METHODS if m != "grad_cam"},
        "grad_cam again": lambda: helpers.explain(model, x1, "grad_cam"),
        "grad_cam, class 207": lambda: helpers.explain(model, x1, "grad_cam", 207),
        "grad_cam, top-5 (K=5)": lambda: helpers.explain(model, x1, "grad_cam", np.arange(5)[None]),
        "grad_cam, K=3": lambda: helpers.explain(model, x1, "grad_cam", np.array([[1, 2, 3]])),
        "grad_cam, signed": lambda: helpers.explain(model, x1, "grad_cam", signed=True),
        "grad_cam, batch 32": lambda: helpers.explain(model, x32, "grad_cam"),
        "grad_cam, batch 32 again": lambda: helpers.explain(model, x32, "grad_cam"),
        "layer_cam, batch 32, top-5": lambda: helpers.explain(model, x32, "layer_cam", np.tile(np.arange(5), (32, 1))),
    }
    seconds, traces = {}, {}
    for name, fn in calls.items():
        seconds[name] = common.time_call(fn)
        traces[name] = sum(n for key, n in common.pass_traces(model).items() if key.startswith("maps"))
    passes = [key for key in model.__dict__.get("_cam_passes", {})]
    out = {
        "weights": weights,
        "load_s": load_s,
        "first_call_s": seconds,
        "unified_pass_traces_after": traces,
        "cached_passes": [str(k) for k in passes],
        "traces": common.pass_traces(model),
    }
    return out


def activations(model: keras.Model, layer: str, x: np.ndarray) -> np.ndarray:
    """The target layer's output A (N, h, w, c) for the images x."""
    return keras.Model(model.inputs[0], layers.find_layer(model, layer).output)(x, training=False).numpy()


def tkv_scorecam(model: keras.Model, x: np.ndarray, layer: str, batch_size: int):
    """tf-keras-vis' Scorecam on the same model object, layer and class (each image's top-1,
    its softmax probability as the score: what ours explains), or None when it is not
    importable. Keras' predict progress bar, which it prints, is swallowed."""
    try:
        from tf_keras_vis.scorecam import Scorecam
        from tf_keras_vis.utils.scores import CategoricalScore
    except ImportError:
        return None
    classes = np.argmax(model(x, training=False).numpy(), axis=1).tolist()  # eager
    scorecam = Scorecam(model, clone=False)
    kwargs = {"penultimate_layer": layer, "seek_penultimate_conv_layer": False, "batch_size": batch_size}

    def call(**options):
        with contextlib.redirect_stdout(io.StringIO()):
            return np.asarray(scorecam(CategoricalScore(classes), x, **kwargs, **options))

    return call


def agreement(ours: np.ndarray, theirs: np.ndarray) -> dict[str, float]:
    """How alike two maps (S, S) are: max |difference|, Pearson r, distance of the peaks."""
    ours, theirs = np.asarray(ours, np.float64).reshape(ours.shape[-2:]), np.asarray(theirs, np.float64)
    theirs = theirs.reshape(ours.shape)
    peak = [np.array(np.unravel_index(np.argmax(m), m.shape)) for m in (ours, theirs)]
    return {
        "max_abs_diff": float(np.abs(ours - theirs).max()),
        "mean_abs_diff": float(np.abs(ours - theirs).mean()),
        "pearson": float(np.corrcoef(ours.ravel(), theirs.ravel())[0, 1]),
        "peak_distance_px": float(np.linalg.norm(peak[0] - peak[1])),
    }


def score_cam_section(model: keras.Model, args) -> dict:
    """Score-CAM on one image: against the cost of its own forward passes (ceil(c' / B)
    forward passes of B masked images, c' the channels that are not constant, plus the one
    pass at batch 1 that records A), and against tf-keras-vis' Scorecam, interleaved; then
    the maps' agreement."""
    x = photos(1)
    layer = helpers.target_layer(model)
    b = perturbation.BATCH[SCORE]
    A = activations(model, layer, x)
    c = A.shape[-1]
    usable = int((np.ptp(A.reshape(-1, c), axis=0) > 0).sum())
    out = {"layer": layer, "batch_size": b, "channels": c, "channels_run": usable, "passes": -(-usable // b)}
    forward, xb = floors(model)[FORWARD], photos(b)
    fwd_b, fwd_1 = f"forward, batch {b}", "forward, batch 1"
    cands = {
        OURS_SCORE: lambda: helpers.explain(model, x, SCORE, progress=False),
        fwd_b: lambda: forward(xb),
        fwd_1: lambda: forward(x),
    }
    theirs = None if args.no_tkv else tkv_scorecam(model, x, layer, b)
    # the untimed warm-up calls (tracing, Keras' predict function) are the agreement's maps
    start = time.perf_counter()
    ours_map = cands[OURS_SCORE]()
    out["first_call_s"] = time.perf_counter() - start
    forward(xb), forward(x)
    if theirs is None:
        out["tkv"] = "tf-keras-vis is not importable here (or --no-tkv): see benchmarks/README.md for its venv"
    else:
        import tf_keras_vis

        their_map = theirs()
        their_raw = theirs(expand_cam=False, normalize_cam=False)  # ReLU(A w), h x w, unscaled
        their_raw_scaled = helpers.upsample_and_scale(tf.constant(their_raw, tf.float32), x.shape[1:3]).numpy()
        out["tkv"] = {
            "version": tf_keras_vis.__version__,
            "agreement, default outputs": agreement(ours_map, their_map),
            "agreement, their raw map scaled our way": agreement(ours_map, their_raw_scaled),
        }
        cands[TKV_SCORE] = theirs
    calls = {fwd_b: 3, fwd_1: 5}  # short calls: several samples per round
    out["times_ms"] = common.interleaved(cands, args.score_repeats, 1, warm_up=False, calls=calls)
    return out


def bench_family(model_name: str, args, results: dict) -> None:
    """--family on one model, added to `results` and printed as it comes."""
    entry = results["family"][model_name] = {"first": family_first_calls(model_name)}
    model, _ = common.load(model_name)
    print(f"\n# {model_name}: target layer {helpers.target_layer(model)}", flush=True)
    report_first([(model_name, entry["first"])], args.markdown)
    entry["speed"] = {}
    for batch in args.batches:
        rounds = args.b1_repeats if batch == 1 else args.repeats
        entry["speed"][batch] = common.interleaved(family_candidates(model, photos(batch)), rounds, batch)
        if not args.no_ablation:
            entry["speed"][batch].update(ablation_times(model, photos(batch), rounds))
        print_section(
            f"{model_name}, batch {batch}: ms/image over {rounds} interleaved runs",
            SPEED_HEADERS,
            speed_rows(model_name, batch, entry["speed"][batch], FAMILY_TARGETS),
            args.markdown,
        )
    entry["traces_after_speed"] = common.pass_traces(model)
    if model_name in args.score_models:
        entry["score_cam"] = score_cam_section(model, args)
        report_score([(model_name, entry["score_cam"])], args.markdown)
    entry["traces_end"] = common.pass_traces(model)
    del model
    gc.collect()


def report_first(entries, md: bool) -> None:
    """First calls on a new model, and the unified pass' tracing count after each."""
    for name, e in entries:
        rows = [
            [call, f"{s:.3f}", e["unified_pass_traces_after"][call]] for call, s in e["first_call_s"].items()
        ]
        print_section(
            f"{name}: first calls on a new model in call order (loaded in {e['load_s']:.1f} s), batch 1 unless said",
            ["call", "seconds", "traces of the unified pass after it"],
            rows,
            md,
        )
        print(f"\ncached passes: {e['cached_passes']}\ntraces: {e['traces']}", flush=True)


def score_rows(name: str, s: dict) -> tuple[list, list]:
    med = {k: float(np.median(v)) for k, v in s["times_ms"].items()}
    b = s["batch_size"]
    floor = s["passes"] * med[f"forward, batch {b}"] + med["forward, batch 1"]
    ratio = med[OURS_SCORE] / floor
    speed = [
        name,
        s["layer"],
        f"{s['channels_run']}/{s['channels']}",
        f"{s['passes']} x {b} + 1",
        f"{med[f'forward, batch {b}']:.0f}",
        f"{med['forward, batch 1']:.1f}",
        f"{floor / 1000:.1f}",
        f"{med[OURS_SCORE] / 1000:.1f}",
        f"{min(s['times_ms'][OURS_SCORE]) / 1000:.1f}..{max(s['times_ms'][OURS_SCORE]) / 1000:.1f}",
        f"{ratio:.2f}",
        f"<= {SCORE_TARGET}",
        "yes" if ratio <= SCORE_TARGET else "NO",
    ]
    if not isinstance(s.get("tkv"), dict) or TKV_SCORE not in med:
        return speed, [name, s.get("tkv", "")]
    t = s["tkv"]
    a, r = t["agreement, default outputs"], t["agreement, their raw map scaled our way"]
    tkv = [
        name,
        t["version"],
        f"{med[OURS_SCORE] / 1000:.1f}",
        f"{med[TKV_SCORE] / 1000:.1f}",
        f"{med[TKV_SCORE] / floor:.2f}",
        f"{med[TKV_SCORE] / med[OURS_SCORE]:.2f}x",
        f"{a['pearson']:.4f} / {a['max_abs_diff']:.3f} / {a['peak_distance_px']:.0f}",
        f"{r['pearson']:.4f} / {r['max_abs_diff']:.3f} / {r['peak_distance_px']:.0f}",
    ]
    return speed, tkv


def report_score(entries, md: bool) -> None:
    rows = [score_rows(name, s) for name, s in entries]
    n = {len(s["times_ms"][OURS_SCORE]) for _, s in entries}
    print_section(
        f"Score-CAM on 1 image vs the cost of its own forward passes (medians of {'/'.join(map(str, n))} "
        "interleaved rounds)",
        ["model", "layer", "channels run", "forward passes", "fwd ms (batch B)", "fwd ms (batch 1)",
         "floor s", "score_cam s", "min..max s", "ratio", "target", "met"],
        [r[0] for r in rows],
        md,
    )  # fmt: skip
    print_section(
        "Score-CAM: ours vs tf-keras-vis Scorecam, same model object, layer and class (1 image, interleaved)",
        ["model", "tf-keras-vis", "ours s", "theirs s", "theirs / floor", "ours faster by",
         "default maps: r / max|diff| / peak px", "their raw map scaled our way: r / max|diff| / peak px"],
        [r[1] for r in rows if len(r[1]) > 2],
        md,
    )  # fmt: skip
    for r in rows:
        if len(r[1]) == 2 and r[1][1]:
            print(f"\n{r[1][0]}: {r[1][1]}", flush=True)


def report_family(results: dict, md: bool) -> None:
    """The tables of a --family run (`results` as stored by --json)."""
    print_section("Machine", ["what", "value"], [[k, v] for k, v in results["machine"].items()], md)
    fam = results["family"]
    rows = []
    for name, e in fam.items():
        for batch, times in e["speed"].items():
            rows += speed_rows(name, batch, times, FAMILY_TARGETS)
    rounds = results["settings"]["repeats"], results["settings"].get("b1_repeats", results["settings"]["repeats"])
    print_section(
        f"Speed: ms/image over {rounds[1]} (batch 1) / {rounds[0]} interleaved runs (ratio of medians to the floor)",
        SPEED_HEADERS,
        rows,
        md,
    )
    # the ratios, method x (model, batch)
    columns = [(name, batch) for name, e in fam.items() for batch in e["speed"]]
    methods = [m for m in (*GRADIENT_METHODS, TOP5, ABLATION) if any(m in fam[n]["speed"][b] for n, b in columns)]
    ratio_rows = []
    for m in methods:
        cells = []
        for name, batch in columns:
            times = fam[name]["speed"][batch]
            floor, target = FAMILY_TARGETS[m]
            cells.append(f"{np.median(times[m]) / np.median(times[floor]):.2f}" if m in times else "")
        ratio_rows.append([m, *cells, f"<= {target}"])
    ratio_rows.append(
        ["(forward, ms/img)", *(f"{np.median(fam[n]['speed'][b][FORWARD]):.1f}" for n, b in columns), ""]
    )
    print_section(
        "Ratio to the compiled forward pass (median / median, same run)",
        ["method", *(f"{n} b{b}" for n, b in columns), "target"],
        ratio_rows,
        md,
    )
    report_first([(name, e["first"]) for name, e in fam.items()], md)
    print_section(
        "Traces of every cached pass at the end (1: one concrete function for every method, class, K and batch)",
        ["model", "traces per cached pass"],
        [[name, ", ".join(f"{k}: {v}" for k, v in e.get("traces_end", e["traces_after_speed"]).items())]
         for name, e in fam.items()],  # fmt: skip
        md,
    )
    scored = [(name, e["score_cam"]) for name, e in fam.items() if "score_cam" in e]
    if scored:
        report_score(scored, md)


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    common.add_common_args(p, MODELS)
    p.add_argument("--tkv-repeats", type=int, default=7, help="interleaved rounds against tf-keras-vis (default: 7)")
    p.add_argument(
        "--leak-calls", type=int, default=LEAK_CALLS, help=f"rounds of the leak check (default: {LEAK_CALLS})"
    )
    p.add_argument("--quick", action="store_true", help="a smoke run: 3 rounds, 10 leak rounds, no memory measurement")
    p.add_argument("--no-memory", action="store_true", help="skip the peak memory measurement")
    p.add_argument("--no-leak", action="store_true", help="skip the leak / retrace check")
    p.add_argument("--no-tkv", action="store_true", help="skip the comparison with tf-keras-vis")
    p.add_argument("--json", type=Path, help="also write every raw timing to this file")
    p.add_argument("--report", type=Path, metavar="JSON", help="instead: print the tables of a run saved with --json")
    family = p.add_argument_group("--family: the unified pass, Score-CAM and Ablation-CAM (issue 10)")
    family.add_argument(
        "--family",
        action="store_true",
        help=f"instead: every method of the unified pass, Score-CAM, Ablation-CAM (default model: {FAMILY_MODELS[0]})",
    )
    family.add_argument(
        "--score-models",
        nargs="*",
        default=list(FAMILY_MODELS[:1]),
        metavar="MODEL",
        help=f"models on which Score-CAM is timed (default: {FAMILY_MODELS[0]}; ~2 min per round)",
    )
    family.add_argument(
        "--score-repeats", type=int, default=5, help="interleaved rounds of Score-CAM / tf-keras-vis (default: 5)"
    )
    family.add_argument(
        "--b1-repeats",
        type=int,
        default=30,
        help="interleaved rounds at batch 1 (default: 30; short calls, so a burst of the machine weighs more)",
    )
    family.add_argument("--no-ablation", action="store_true", help="leave Ablation-CAM out of the family")
    ex = p.add_argument_group("--experiments: where the time goes (benchmarks/experiments.py)")
    ex.add_argument(
        "--experiments",
        action="store_true",
        help="instead: time stripped-down variants of the compiled passes",
    )
    ex.add_argument(
        "--only", nargs="+", metavar="EXPERIMENT", help=f"with --experiments: {', '.join(experiments.EXPERIMENTS)}"
    )
    args = p.parse_args(argv)
    if args.models is None:
        args.models = list(FAMILY_MODELS[:1] if args.family else (experiments.MODELS if args.experiments else MODELS))
    if args.quick:
        args.repeats, args.tkv_repeats, args.leak_calls, args.no_memory = 3, 2, 10, True
        args.score_repeats, args.b1_repeats = 1, 3
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.experiments:
        experiments.run_experiments(args)
        return
    if args.report:
        results = json.loads(args.report.read_text())
        (report_family if "family" in results else report)(results, args.markdown)
        return
    start = time.perf_counter()
    if args.family:
        keys = ("models", "batches", "repeats", "b1_repeats", "score_models", "score_repeats", "no_ablation", "no_tkv")
        results = {"machine": machine(), "settings": {k: getattr(args, k) for k in keys}, "family": {}}
        for model_name in args.models:
            bench_family(model_name, args, results)
    else:
        keys = ("models", "batches", "repeats", "tkv_repeats", "leak_calls", "no_memory", "no_leak")
        results = {"machine": machine(), "settings": {k: getattr(args, k) for k in keys}, "models": {}}
        for model_name in args.models:
            bench_model(model_name, args, results)
    results["machine"]["load average after"] = Path("/proc/loadavg").read_text().split()[:3]
    results["machine"]["wall time"] = f"{time.perf_counter() - start:.0f} s"
    if args.json:
        args.json.write_text(json.dumps(results, indent=1, default=str))
    results = json.loads(json.dumps(results, default=str))  # as --report would see it
    (report_family if args.family else report)(results, args.markdown)


if __name__ == "__main__":
    main()
