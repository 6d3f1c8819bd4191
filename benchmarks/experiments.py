"""Where does the time of `helpers.explain` go? Variants of `helpers._compiled_pass`.

Each experiment times, interleaved like bench.py, the floor, `helpers.explain`, the
cached compiled pass called directly (without and with the numpy conversion) and
stripped-down copies of the compiled pass with one suspect changed at a time:
persistent tape, upsampling, gather vs one-hot, XLA (jit_compile), the guided ReLU's
gradient, one backward pass for several targets.

    python benchmarks/bench.py --experiments [--models ...] [--batches ...] [--repeats N]
    python benchmarks/experiments.py        [--models ...] [--batches ...] [--repeats N]
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench
import keras
import numpy as np
import tensorflow as tf

import helpers

Variant = Callable[[np.ndarray, np.ndarray], np.ndarray]  # (images, classes (N, k)) -> numpy


# ---------------------------------------------------------------------------
# Guided ReLUs: the candidates measured against helpers.guided_relu


def guided_relu_native(x, max_value=None):
    """Guided ReLU with native kernels: forward Relu / Relu6, backward ReluGrad /
    Relu6Grad applied to ReLU(dy). The same rule as helpers.guided_relu (dy passes where
    dy > 0 and 0 < x < max_value), in 2 fused kernels instead of 3 comparisons, 2 ands,
    zeros_like and a select, and a forward of one Relu6 instead of Maximum + Minimum."""

    @tf.custom_gradient
    def f(x):
        if max_value is None:
            return tf.nn.relu(x), lambda dy: tf.raw_ops.ReluGrad(gradients=tf.nn.relu(dy), features=x)
        if max_value == 6:
            return tf.nn.relu6(x), lambda dy: tf.raw_ops.Relu6Grad(gradients=tf.nn.relu(dy), features=x)
        m = tf.cast(max_value, x.dtype)
        return tf.minimum(tf.nn.relu(x), m), lambda dy: tf.where((x > 0) & (x < m), tf.nn.relu(dy), 0.0)

    return f(x)


# The "ReLU6 + identity(relu(dy))" variant measured here is now helpers.guided_relu itself.
guided_relu_identity = helpers.guided_relu


@contextlib.contextmanager
def guided_relu(fn):
    """Make helpers._guiding use `fn` as the guided ReLU while a variant is traced
    (its swaps look helpers.guided_relu up at trace time)."""
    saved = helpers.guided_relu
    helpers.guided_relu = fn
    try:
        yield
    finally:
        helpers.guided_relu = saved


# ---------------------------------------------------------------------------
# A stripped-down compiled pass


def variant(
    model: keras.Model,
    method: str,
    k: int = 1,
    *,
    persistent: bool = True,
    upsample: bool = True,
    one_hot: bool = False,
    jit: bool = False,
    relu=None,
    one_backward: bool = False,
    jacobian: bool = False,
) -> Variant:
    """A copy of helpers._compiled_pass for grad_cam, guided_backprop and guided_grad_cam
    at the model's target layer, returning only the maps (numpy), with switches:

    persistent: a persistent tape (helpers) or not (only possible with one gradient call);
    upsample: upsample and scale the h x w maps to the image (helpers) or return them raw;
    one_hot: pick the class logit by a one-hot product instead of a gather;
    jit: compile with XLA (jit_compile=True);
    relu: the guided ReLU (None: helpers.guided_relu);
    one_backward: guided Grad-CAM's dA and dimages from one tape.gradient call;
    jacobian: the k classes' gradients by one tape.jacobian (pfor) instead of k calls.
    """
    target = helpers.find_layer(model, helpers.target_layer(model))
    guided, with_map = method.startswith("guided"), method != "guided_backprop"
    shape = tuple(model.inputs[0].shape[1:])
    sig = [tf.TensorSpec((None, *shape), tf.float32), tf.TensorSpec((None, k), tf.int32)]

    @tf.function(input_signature=sig, jit_compile=jit, autograph=False, reduce_retracing=True)
    def run(images, classes):
        state = {"A": [None], "guided": guided}
        with tf.GradientTape(persistent=persistent) as tape:
            if guided:
                tape.watch(images)
            guide = helpers._guiding(model, state, None) if guided else []
            with helpers._swapped(guide), helpers._swapped(helpers._recording([target], tape, state)):
                logits = model(images, training=False)
            if one_hot:
                picks = [tf.reduce_sum(logits * tf.one_hot(classes[:, j], tf.shape(logits)[-1])) for j in range(k)]
            else:
                picks = [tf.reduce_sum(tf.gather(logits, classes[:, j], batch_dims=1)) for j in range(k)]
            if jacobian:
                stacked = tf.stack(picks)
        A = state["A"][0]
        if jacobian:
            grads = [(g, None) for g in tf.unstack(tape.jacobian(stacked, A, experimental_use_pfor=True))]
        elif one_backward and guided and with_map:
            grads = [tuple(tape.gradient(p, [A, images])) for p in picks]
        else:
            grads = [
                (tape.gradient(p, A) if with_map else None, tape.gradient(p, images) if guided else None) for p in picks
            ]
        out = []
        for G, gb in grads:
            m = None
            if with_map:
                m = helpers.weighted_map(A, tf.reduce_mean(G, axis=(1, 2)))
                if upsample:
                    m = helpers.upsample_and_scale(m, tf.shape(images)[1:3])
            if guided:
                m = gb if m is None else gb * m[..., None]
            out.append(m)
        return tf.stack(out, axis=1)

    def call(x, c):
        with guided_relu(relu or helpers.guided_relu):
            return run(tf.constant(x), tf.constant(c)).numpy()

    return call


def forward_jit(model: keras.Model, grad: bool = False) -> Callable[[np.ndarray], np.ndarray]:
    """The floors compiled with XLA: forward, or forward + input gradient of the top logit."""

    @tf.function(jit_compile=True)
    def forward(x):
        return model(x, training=False)

    @tf.function(jit_compile=True)
    def forward_grad(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            score = tf.reduce_sum(tf.reduce_max(model(x, training=False), axis=-1))
        return tape.gradient(score, x)

    fn = forward_grad if grad else forward
    return lambda x: fn(tf.constant(x)).numpy()


def cached_pass(model: keras.Model, method: str, k: int, numpy: bool) -> Variant:
    """helpers' own cached compiled pass, called directly (no argument checks)."""
    layers = () if method == "guided_backprop" else (helpers.target_layer(model),)
    run = helpers._compiled_pass(model, layers, method, k)
    if numpy:
        return lambda x, c: {key: v.numpy() for key, v in run(tf.constant(x), tf.constant(c)).items()}
    return lambda x, c: run(tf.constant(x), tf.constant(c))


# ---------------------------------------------------------------------------
# The experiments


def maps_k1(model) -> dict[str, Variant]:
    return {
        "explain grad_cam": lambda x, c: helpers.explain(model, x, "grad_cam", c[:, 0]),
        "cached pass, tensors out": cached_pass(model, "grad_cam", 1, numpy=False),
        "cached pass + .numpy()": cached_pass(model, "grad_cam", 1, numpy=True),
        "variant (as helpers)": variant(model, "grad_cam"),
        "variant, non-persistent tape": variant(model, "grad_cam", persistent=False),
        "variant, no upsampling": variant(model, "grad_cam", upsample=False),
        "variant, one-hot": variant(model, "grad_cam", one_hot=True),
        "variant, jit_compile": variant(model, "grad_cam", jit=True),
    }


def maps_k5(model) -> dict[str, Variant]:
    return {
        "explain top-5 grad_cam": lambda x, c: helpers.explain(model, x, "grad_cam", c),
        "cached pass, tensors out": cached_pass(model, "grad_cam", 5, numpy=False),
        "cached pass + .numpy()": cached_pass(model, "grad_cam", 5, numpy=True),
        "variant (as helpers)": variant(model, "grad_cam", 5),
        "variant, no upsampling": variant(model, "grad_cam", 5, upsample=False),
        "variant, jacobian (pfor)": variant(model, "grad_cam", 5, jacobian=True),
    }


def guided(model) -> dict[str, Variant]:
    return {
        "explain guided_backprop": lambda x, c: helpers.explain(model, x, "guided_backprop", c[:, 0]),
        "explain guided_grad_cam": lambda x, c: helpers.explain(model, x, "guided_grad_cam", c[:, 0]),
        "cached guided_backprop, tensors out": cached_pass(model, "guided_backprop", 1, numpy=False),
        "variant gb (as helpers)": variant(model, "guided_backprop"),
        "variant gb, non-persistent tape": variant(model, "guided_backprop", persistent=False),
        "variant gb, native ReluGrad(relu(dy))": variant(model, "guided_backprop", relu=guided_relu_native),
        "variant gb, relu6 + identity(relu(dy))": variant(model, "guided_backprop", relu=guided_relu_identity),
        "variant ggc (as helpers)": variant(model, "guided_grad_cam"),
        "variant ggc, native relu, one backward": variant(
            model, "guided_grad_cam", relu=guided_relu_native, one_backward=True
        ),
        "variant ggc, identity relu": variant(model, "guided_grad_cam", relu=guided_relu_identity),
        "variant ggc, identity relu, one backward": variant(
            model, "guided_grad_cam", relu=guided_relu_identity, one_backward=True
        ),
    }


EXPERIMENTS = {  # name -> (floor, k, variants)
    "grad_cam": (bench.FORWARD, 1, maps_k1),
    "top-5 grad_cam": (bench.FORWARD, 5, maps_k5),
    "guided": (bench.FORWARD_GRAD, 1, guided),
}


def check_same(cands: dict[str, Callable]) -> dict[str, float]:
    """Max |variant - explain| / max |explain| for each variant that returns the same maps
    as one of the `explain ...` candidates (guided Grad-CAM "ggc" variants against explain
    guided_grad_cam), to show that the variants compute the same thing."""
    refs = {name: np.asarray(fn()) for name, fn in cands.items() if name.startswith("explain")}
    out = {}
    for name, fn in cands.items():
        ref = refs[name] if name in refs else refs.get("explain guided_grad_cam" if "ggc" in name else next(iter(refs)))
        r = fn()
        if isinstance(r, np.ndarray) and r.size == ref.size:
            out[name] = float(np.abs(r.reshape(ref.shape) - ref).max()) / max(float(np.abs(ref).max()), 1e-30)
    return out


def run_experiment(model, name: str, x: np.ndarray, repeats: int, markdown: bool, title: str) -> dict:
    floor_name, k, make = EXPERIMENTS[name]
    floor = bench.floors(model)[floor_name]
    classes = np.argsort(-model(x, training=False).numpy(), axis=1)[:, :k].astype(np.int32)
    cands = {floor_name: lambda: floor(x)}
    if name == "grad_cam":  # XLA on CPU: is the floor itself faster compiled with it?
        jit_floor = forward_jit(model, grad=floor_name == bench.FORWARD_GRAD)
        cands[f"{floor_name} jit_compile"] = lambda: jit_floor(x)
    cands.update({v: (lambda f=f: f(x, classes)) for v, f in make(model).items()})
    diffs = check_same(cands)
    times = bench.interleaved(cands, repeats, len(x))
    med0 = np.median(times[floor_name])
    rows = [
        [v, f"{np.median(ms):.2f}", f"{np.min(ms):.2f}", f"{np.median(ms) / med0:.3f}",
         f"{diffs[v]:.1e}" if v in diffs and not v.startswith(floor_name) else ""]
        for v, ms in times.items()
    ]  # fmt: skip
    bench.print_section(
        title, ["variant", "median ms/img", "min ms/img", "ratio to floor", "rel. diff to explain"], rows, markdown
    )
    return times


def run_experiments(args) -> dict:
    """Every experiment on each model and batch."""
    results = {}
    for model_name in args.models:
        model, _ = bench.load(model_name)
        for batch in args.batches:
            x = bench.photos(batch)
            for name in args.only or EXPERIMENTS:
                title = f"{model_name}, batch {batch}: {name}, {args.repeats} interleaved runs"
                results[title] = run_experiment(model, name, x, args.repeats, args.markdown, title)
    return results


def main(argv=None):
    args = bench.parse_args(argv)
    run_experiments(args)


if __name__ == "__main__":
    main()
