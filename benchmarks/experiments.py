"""Where does the time of `helpers.explain` go? Variants of `camlib.engine._compiled_pass`.

Each experiment times, interleaved like bench.py, the floor, `helpers.explain`, the
cached compiled pass called directly (without and with the numpy conversion) and
stripped-down copies of the compiled pass with one suspect changed at a time:
persistent tape, upsampling, gather vs one-hot, XLA (jit_compile), the guided ReLU's
gradient, one backward pass for several targets, the unified pass' switch_case and
map_fn; and for Ablation-CAM and Score-CAM, their steps one at a time.

    python benchmarks/bench.py --experiments [--models ...] [--batches ...] [--repeats N] [--only ...]
    python benchmarks/experiments.py        [--models ...] [--batches ...] [--repeats N] [--only ...]

Imports common.py only (bench.py imports this module, never the other way round).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
from collections.abc import Callable
from pathlib import Path

import common  # first: puts the project on sys.path and sets TensorFlow's environment)
import keras
import numpy as np
import tensorflow as tf
from common import FORWARD, FORWARD_GRAD

import helpers
from camlib import capture, engine, layers, methods, perturbation
from camlib import guided as guided_module

MODELS = ("efficientnet_lite0",)

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


# The "ReLU6 + identity(relu(dy))" variant is camlib.guided.guided_relu itself.
guided_relu_identity = guided_module.guided_relu


@contextlib.contextmanager
def guided_relu(fn):
    """Make camlib.guided.guiding use `fn` as the guided ReLU while a variant is traced
    (its swaps look camlib.guided.guided_relu up at trace time)."""
    saved = guided_module.guided_relu
    guided_module.guided_relu = fn
    try:
        yield
    finally:
        guided_module.guided_relu = saved


# ---------------------------------------------------------------------------
# A stripped-down compiled pass


def variant(
    model: keras.Model,
    method: str,
    k: int = 1,
    *,
    switch: bool = False,
    map_fn: bool = False,
    persistent: bool = True,
    upsample: bool = True,
    gather: bool = False,
    jit: bool = False,
    relu=None,
    one_backward: bool = False,
    jacobian: bool = False,
    pixels_map_fn: bool = False,
) -> Variant:
    """A copy of camlib.engine._compiled_pass for ONE method at the model's target layer
    (any map method of methods.WEIGHTS, guided_backprop, guided_grad_cam, guided_grad_cam++),
    returning only the maps (numpy), with switches:

    switch: choose the method at run time by tf.switch_case over every map method, as the
        engine does (False: only this method's graph);
    map_fn: loop over the k classes with tf.map_fn, as the engine does (False: a Python
        loop, unrolled at trace time);
    persistent: a persistent tape (the engine) or not (only possible with one gradient call);
    upsample: upsample and scale the h x w maps to the image (the engine) or return them raw;
    gather: differentiate the sum of the gathered class logits instead of the logits with a
        one-hot output gradient (the engine);
    jit: compile with XLA (jit_compile=True);
    relu: the guided ReLU (None: camlib.guided.guided_relu);
    one_backward: guided Grad-CAM's dA and dimages from one tape.gradient call;
    jacobian: the k classes' gradients by one tape.jacobian (pfor) instead of k calls;
    pixels_map_fn: the guided methods' pixel gradients in a tf.map_fn over the classes, as
        the engine computes them (False: a Python loop over k).
    """
    target = layers.find_layer(model, helpers.target_layer(model))
    guided = method in engine.GUIDED
    map_method = engine.GUIDED.get(method, method)
    try:
        kernel = layers.classifier(model, target, 0)  # CAM's weights, for `cam` and the switch_case
    except ValueError:
        kernel = None
    _, output_layer = layers.without_softmax(model, 0)
    shape = tuple(model.inputs[0].shape[1:])
    sig = [tf.TensorSpec((None, *shape), tf.float32), tf.TensorSpec((None, k), tf.int32), tf.TensorSpec((), tf.int32)]

    @tf.function(input_signature=sig, jit_compile=jit, autograph=False, reduce_retracing=True)
    def run(images, classes, which):
        state = {"A": [None], "guided": guided}
        with tf.GradientTape(persistent=persistent, watch_accessed_variables=False) as tape:
            if guided:
                tape.watch(images)
            guide = guided_module.guiding(model, state, output_layer) if guided else []
            with capture.swapped(guide), capture.swapped(capture.recording([target], state, tape)):
                logits = model(images, training=False)
            picks = [tf.reduce_sum(tf.gather(logits, classes[:, j], batch_dims=1)) for j in range(k)]
            if jacobian:
                stacked = tf.stack(picks)
        A_raw = state["A"][0]
        A = tf.cast(A_raw, tf.float32)
        size = tf.shape(images)[1:3]

        def grad(j, c, wrt):  # d logit_c / d wrt; j: the class' column when known at trace time
            if gather and j is not None:
                return tf.cast(tape.gradient(picks[j], wrt), tf.float32)
            onehot = tf.one_hot(c, tf.shape(logits)[-1], dtype=tf.float32)
            return tf.cast(tape.gradient(logits, wrt, output_gradients=onehot), tf.float32)

        def one_map(name, j, c, G=None):  # (N, S, S) or (N, h, w)
            if G is None and name not in methods.NO_GRADIENT:
                G = grad(j, c, A_raw)
            column = None
            if name == "cam":
                column = tf.zeros(tf.shape(A)[::3]) if kernel is None else engine._columns(kernel, c)
            m = methods.weighted_map(A, methods.WEIGHTS[name](A, G, column))
            return methods.upsample_and_scale(m, size) if upsample else m

        def maps(name, given=None):  # (N, k, S, S): every class of `name`
            if map_fn:
                per = tf.map_fn(lambda c: one_map(name, None, c), tf.transpose(classes), fn_output_signature=tf.float32)
                return tf.transpose(per, (1, 0, *range(2, len(per.shape))))
            return tf.stack([one_map(name, j, classes[:, j], None if given is None else given[j]) for j in range(k)],
                            axis=1)  # fmt: skip

        def all_pixels():  # (N, k, S, S, 3)
            if pixels_map_fn:
                per = tf.map_fn(lambda c: grad(None, c, images), tf.transpose(classes), fn_output_signature=tf.float32)
                return tf.transpose(per, (1, 0, 2, 3, 4))
            return tf.stack([grad(j, classes[:, j], images) for j in range(k)], axis=1)

        if guided and method == "guided_backprop":
            return all_pixels()
        given = None
        if jacobian:
            given = tf.unstack(tape.jacobian(stacked, A_raw, experimental_use_pfor=True))
        if one_backward and guided:
            both = [tape.gradient(p, [A_raw, images]) for p in picks]
            given, pixels = [g[0] for g in both], [g[1] for g in both]
        if switch:
            m = tf.switch_case(which, [lambda n=n: maps(n) for n in methods.WEIGHTS])
        else:
            m = maps(map_method, given)
        if not guided:
            return m
        return (all_pixels() if not one_backward else tf.stack(pixels, axis=1)) * m[..., None]

    which = tf.constant(list(methods.WEIGHTS).index(map_method) if map_method else 0)

    def call(x, c):
        with guided_relu(relu or guided_module.guided_relu):
            return run(tf.constant(x), tf.constant(c), which).numpy()

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


def cached_pass(model: keras.Model, method: str, numpy: bool) -> Variant:
    """The engine's own cached compiled pass, called directly (no argument checks)."""
    map_method = engine.GUIDED.get(method, method)
    target = () if method == "guided_backprop" else (helpers.target_layer(model),)
    specs = ((None, *model.inputs[0].shape[1:]),)
    guided = method in engine.GUIDED
    which = tf.constant(engine.MAP_METHODS.index(map_method) if map_method else 0)
    signed = tf.constant(False)

    def call(x, c):
        run = engine._compiled_pass(model, target, guided, 0, specs, c.shape[1] if guided else None)  # cached
        out = run([tf.constant(x)], tf.constant(c), which, signed)
        return {key: v.numpy() for key, v in out.items()} if numpy else out

    return call


# ---------------------------------------------------------------------------
# The experiments on the gradient pass: variants (images, classes (N, k)) -> maps


def maps_k1(model) -> dict[str, Variant]:
    return {
        "explain grad_cam": lambda x, c: helpers.explain(model, x, "grad_cam", c[:, 0]),
        "argument checks alone (engine._resolve)": lambda x, c: engine._resolve(
            model, x, "grad_cam", c[:, 0], None, None, False, None
        ),
        "cached pass, tensors out": cached_pass(model, "grad_cam", numpy=False),
        "cached pass + .numpy()": cached_pass(model, "grad_cam", numpy=True),
        "variant, switch_case + map_fn (as the engine)": variant(model, "grad_cam", switch=True, map_fn=True),
        "variant, map_fn, no switch_case": variant(model, "grad_cam", map_fn=True),
        "variant, switch_case, no map_fn": variant(model, "grad_cam", switch=True),
        "variant, neither (one method, unrolled)": variant(model, "grad_cam"),
        "variant, neither, non-persistent tape": variant(model, "grad_cam", persistent=False),
        "variant, neither, no upsampling": variant(model, "grad_cam", upsample=False),
        "variant, neither, gather": variant(model, "grad_cam", gather=True),
        "variant, neither, jit_compile": variant(model, "grad_cam", jit=True),
    }


def per_position(model) -> dict[str, Variant]:
    """The methods with weights per position and channel (N, h, w, c), and Eigen-CAM's SVD."""
    out = {}
    for method in ("layer_cam", "hirescam", "xgrad_cam", "eigen_cam", "grad_cam++"):
        out[f"explain {method}"] = lambda x, c, m=method: helpers.explain(model, x, m, c[:, 0])
        out[f"variant {method}, neither"] = variant(model, method)
    return out


def maps_k5(model) -> dict[str, Variant]:
    return {
        "explain top-5 grad_cam": lambda x, c: helpers.explain(model, x, "grad_cam", c),
        "cached pass, tensors out": cached_pass(model, "grad_cam", numpy=False),
        "cached pass + .numpy()": cached_pass(model, "grad_cam", numpy=True),
        "variant, switch_case + map_fn (as the engine)": variant(model, "grad_cam", 5, switch=True, map_fn=True),
        "variant, map_fn, no switch_case": variant(model, "grad_cam", 5, map_fn=True),
        "variant, neither (k unrolled)": variant(model, "grad_cam", 5),
        "variant, neither, no upsampling": variant(model, "grad_cam", 5, upsample=False),
        "variant, jacobian (pfor)": variant(model, "grad_cam", 5, jacobian=True),
    }


def guided(model) -> dict[str, Variant]:
    return {
        "explain guided_backprop": lambda x, c: helpers.explain(model, x, "guided_backprop", c[:, 0]),
        "explain guided_grad_cam": lambda x, c: helpers.explain(model, x, "guided_grad_cam", c[:, 0]),
        "cached guided_backprop, tensors out": cached_pass(model, "guided_backprop", numpy=False),
        "cached guided_grad_cam, tensors out": cached_pass(model, "guided_grad_cam", numpy=False),
        "variant ggc, switch_case + map_fn + pixels by map_fn": variant(
            model, "guided_grad_cam", switch=True, map_fn=True, pixels_map_fn=True
        ),
        "variant gb (as the engine)": variant(model, "guided_backprop"),
        "variant gb, non-persistent tape": variant(model, "guided_backprop", persistent=False),
        "variant gb, native ReluGrad(relu(dy))": variant(model, "guided_backprop", relu=guided_relu_native),
        "variant ggc, switch_case + map_fn (as the engine)": variant(
            model, "guided_grad_cam", switch=True, map_fn=True
        ),
        "variant ggc, neither": variant(model, "guided_grad_cam"),
        "variant ggc, native relu, one backward": variant(
            model, "guided_grad_cam", relu=guided_relu_native, one_backward=True
        ),
        "variant ggc, one backward": variant(model, "guided_grad_cam", one_backward=True),
    }


EXPERIMENTS = {  # name -> (floor, k, variants); the slow methods' experiments are in SLOW_EXPERIMENTS
    "grad_cam": (FORWARD, 1, maps_k1),
    "per-position": (FORWARD, 1, per_position),
    "top-5 grad_cam": (FORWARD, 5, maps_k5),
    "guided": (FORWARD_GRAD, 1, guided),
}


def check_same(cands: dict[str, Callable]) -> dict[str, float]:
    """Max |variant - explain| / max |explain| for each variant that returns the same maps
    as one of the `explain ...` candidates (the one named in the variant's name, guided
    Grad-CAM "ggc" variants against explain guided_grad_cam, the first otherwise), to show
    that the variants compute the same thing."""
    refs = {name: np.asarray(fn()) for name, fn in cands.items() if name.startswith("explain")}
    out = {}
    for name, fn in cands.items():
        named = [r for r in refs if r.split(" ", 1)[1] in name.replace(",", "").split()]
        if name in refs:
            ref = refs[name]
        elif "ggc" in name:
            ref = refs["explain guided_grad_cam"]
        else:
            ref = refs[named[0] if named else next(iter(refs))]
        r = fn()
        if isinstance(r, np.ndarray) and r.size == ref.size:
            out[name] = float(np.abs(r.reshape(ref.shape) - ref).max()) / max(float(np.abs(ref).max()), 1e-30)
    return out


def show(title: str, times: dict[str, list[float]], floor_name: str, diffs: dict, markdown: bool, unit="ms/img"):
    med0 = np.median(times[floor_name])
    rows = [
        [v, f"{np.median(ms):.2f}", f"{np.min(ms):.2f}", f"{np.median(ms) / med0:.3f}",
         f"{diffs[v]:.1e}" if v in diffs and v != floor_name else ""]
        for v, ms in times.items()
    ]  # fmt: skip
    common.print_section(
        title, ["variant", f"median {unit}", f"min {unit}", f"ratio to {floor_name}", "rel. diff to explain"], rows,
        markdown,
    )  # fmt: skip


def run_experiment(model, name: str, x: np.ndarray, repeats: int, markdown: bool, title: str) -> dict:
    floor_name, k, make = EXPERIMENTS[name]
    floor = common.floors(model)[floor_name]
    classes = np.argsort(-model(x, training=False).numpy(), axis=1)[:, :k].astype(np.int32)
    cands = {floor_name: lambda: floor(x)}
    if name == "grad_cam":  # XLA on CPU: is the floor itself faster compiled with it?
        jit_floor = forward_jit(model, grad=floor_name == FORWARD_GRAD)
        cands[f"{floor_name} jit_compile"] = lambda: jit_floor(x)
    cands.update({v: (lambda f=f: f(x, classes)) for v, f in make(model).items()})
    diffs = check_same(cands)
    times = common.interleaved(cands, repeats, len(x))
    show(title, times, floor_name, diffs, markdown)
    return times


# ---------------------------------------------------------------------------
# Ablation-CAM: its steps, and two ways to build the ablated copies


def _pool_after(model, layer: str):
    """The global pooling layer that alone reads `layer`'s output, and the model from its
    output to the logits, or (None, None). Zeroing channel k of A then zeroes channel k of
    the pooled vector (average or maximum of zeros), so ablating the pooled vector gives
    the same logits from a c-vector per copy instead of an h x w x c tensor."""
    target = layers.find_layer(model, layer)
    consumers = [node.operation for node in getattr(target, "_outbound_nodes", [])]
    pools = (keras.layers.GlobalAveragePooling2D, keras.layers.GlobalMaxPooling2D)
    if len(consumers) != 1 or not isinstance(consumers[0], pools) or consumers[0].keepdims:
        return None, None
    return consumers[0], keras.Model(consumers[0].output, model.outputs[0])


def ablation(model, x: np.ndarray, repeats: int, markdown: bool, title: str) -> dict:
    """Ablation-CAM at the default layer: explain, its steps (the recording forward pass,
    the numpy copies, the head), and the copies built in the graph or after the pooling."""
    layer = helpers.target_layer(model)
    specs = ((None, *x.shape[1:]),)
    helpers.explain(model, x[:1], "ablation_cam", progress=False)  # builds the cached passes
    cache = model.__dict__["_cam_perturbation"]
    forward, head = cache[("forward", layer, 0, specs)], cache[("head", layer, 0)]
    b = perturbation.BATCH["ablation_cam"]
    size = x.shape[1:3]
    A0, logits0 = (t.numpy() for t in forward([tf.constant(x)]))
    n, c = len(A0), A0.shape[-1]
    classes = logits0.argmax(-1)
    starts = range(0, c, b)

    def finish(A, w):  # (N, h, w, c), (N, c) -> (N, S, S)
        return methods.upsample_and_scale(methods.weighted_map(tf.constant(A), tf.constant(w)), size).numpy()

    def record():
        return tuple(t.numpy() for t in forward([tf.constant(x)]))

    def copies(A, i, s):  # as perturbation._ablation_cam: (B, h, w, c) in numpy
        ch = np.arange(s, min(s + b, c))
        keep = np.ones((len(ch), c), np.float32)
        keep[np.arange(len(ch)), ch] = 0.0
        return ch, A[i][None] * keep[:, None, None, :]

    def as_engine(with_head=True):
        A, logits = record()
        w = np.zeros((n, c), np.float32)
        for i in range(n):
            y_c = logits[i, classes[i]]
            for s in starts:
                ch, batch = copies(A, i, s)
                if with_head:
                    w[i, ch] = (y_c - head(tf.constant(batch)).numpy()[:, classes[i]]) / y_c
        return finish(A, w)

    h, wd = A0.shape[1:3]

    @tf.function(
        input_signature=[tf.TensorSpec((1, h, wd, c)), tf.TensorSpec((None,), tf.int32), tf.TensorSpec((), tf.int32)],
        autograph=False,
    )
    def in_graph(a, channels, cls):  # the copies made in the graph from A and the channels
        keep = 1.0 - tf.one_hot(channels, c)  # (B, c)
        return tf.gather(head(a * keep[:, None, None, :]), cls, axis=1)

    def graph_copies():
        A, logits = record()
        w = np.zeros((n, c), np.float32)
        for i in range(n):
            y_c = logits[i, classes[i]]
            a = tf.constant(A[i : i + 1])
            for s in starts:
                ch = np.arange(s, min(s + b, c), dtype=np.int32)
                w[i, ch] = (y_c - in_graph(a, tf.constant(ch), tf.constant(classes[i], tf.int32)).numpy()) / y_c
        return finish(A, w)

    cands = {
        FORWARD: (lambda f=common.floors(model)[FORWARD]: f(x)),
        "explain ablation_cam": lambda: helpers.explain(model, x, "ablation_cam", progress=False),
        "recording forward pass (A, logits)": record,
        "as the engine, in Python": as_engine,
        "steps: the recording pass and the numpy copies (no head)": lambda: as_engine(with_head=False),
        f"copies made in the graph, {b} per call": graph_copies,
    }
    pool, rest = _pool_after(model, layer)
    if pool is not None:

        @tf.function(input_signature=[tf.TensorSpec((None, h, wd, c)), tf.TensorSpec((None,), tf.int32)],
                     autograph=False)  # fmt: skip
        def pooled_scores(A, cls):  # (N, c): the class logit with channel k ablated after the pooling
            p = pool(A)  # (N, c)
            ablated = p[:, None, :] * (1.0 - tf.eye(c))[None]  # (N, c copies, c)
            y = rest(tf.reshape(ablated, (-1, c)), training=False)  # (N c, classes)
            y = tf.reshape(y, (-1, c, tf.shape(y)[-1]))  # (N, c, classes)
            return tf.gather(y, cls, axis=2, batch_dims=1)  # (N, c)

        def after_pooling():
            A, logits = record()
            y_c = logits[np.arange(n), classes][:, None]
            y = pooled_scores(tf.constant(A), tf.constant(classes.astype(np.int32))).numpy()
            return finish(A, (y_c - y) / y_c)

        cands[f"copies after the pooling ({type(pool).__name__}), all channels in one call"] = after_pooling
    try:
        kernel = layers.classifier(model, layers.find_layer(model, layer), 0)  # GAP -> Dense: (c, classes)
    except ValueError:
        kernel = None
    if kernel is not None:

        def closed_form():  # y_c with channel k zeroed = y_c - mean(A_k) W_kc, exactly
            A, logits = record()
            y_c = logits[np.arange(n), classes][:, None]
            W = np.asarray(kernel).reshape(-1, kernel.shape[-1])[:, classes].T  # (N, c)
            return finish(A, A.mean(axis=(1, 2)) * W / y_c)

        cands["closed form for GAP -> Dense: y_c - mean(A_k) W_kc"] = closed_form
    diffs = check_same({k: v for k, v in cands.items() if k != FORWARD and not k.startswith(("recording", "steps:"))})
    times = common.interleaved(cands, repeats, n)
    show(title, times, FORWARD, diffs, markdown)
    return times


# ---------------------------------------------------------------------------
# Score-CAM: its steps, per forward pass of B masked images


def score_cam(model, x: np.ndarray, repeats: int, markdown: bool, title: str) -> dict:
    """Score-CAM on the first image of x: explain (per pass), the engine's loop of score
    passes alone, one score pass (mask + forward + softmax), the mask step alone, and the
    compiled forward pass on B photos and on B masked images."""
    x = x[:1]
    layer = helpers.target_layer(model)
    specs = ((None, *x.shape[1:]),)
    b = perturbation.BATCH["score_cam"]
    helpers.explain(model, x, "score_cam", progress=False, channels=b)  # builds the cached passes
    cache = model.__dict__["_cam_perturbation"]
    forward, score = cache[("forward", layer, 0, specs)], cache[("score", layer, 0, specs)]
    A, logits = (t.numpy() for t in forward([tf.constant(x)]))
    c = A.shape[-1]
    cls = np.array([logits[0].argmax()], np.int32)
    usable = np.flatnonzero(np.ptp(A[0].reshape(-1, c), axis=0) > 0)
    chunks = [usable[s : s + b].astype(np.int32) for s in range(0, len(usable), b)]
    one, a0 = [tf.constant(x)], tf.constant(A[0])

    @tf.function(autograph=False)
    def mask_step(image, a, channels):  # as perturbation._score_pass, without the forward pass
        up = tf.image.resize(tf.gather(a, channels, axis=-1)[None], tf.shape(image)[1:3], method="bilinear")[0]
        low = tf.reduce_min(up, axis=(0, 1), keepdims=True)
        H = tf.math.divide_no_nan(up - low, tf.reduce_max(up, axis=(0, 1), keepdims=True) - low)
        return image * tf.transpose(H, (2, 0, 1))[..., None]

    masked = mask_step(one[0], a0, tf.constant(chunks[0])).numpy()
    fwd, xb = common.floors(model)[FORWARD], common.photos(b)

    def loop():
        for chunk in chunks:
            score(one, a0, tf.constant(chunk), tf.constant(cls)).numpy()

    cands = {
        f"forward, {b} photos": lambda: fwd(xb),
        f"forward, {b} masked images": lambda: fwd(masked),
        "recording forward, masked": lambda: [t.numpy() for t in forward([tf.constant(masked)])],
        "one score pass (mask + forward + softmax)": lambda: score(one, a0, tf.constant(chunks[0]),
                                                                   tf.constant(cls)).numpy(),
        "mask step alone": lambda: mask_step(one[0], a0, tf.constant(chunks[0])).numpy(),
        "explain score_cam (per pass)": lambda: helpers.explain(model, x, "score_cam", progress=False),
        "the engine's loop of score passes (per pass)": loop,
    }  # fmt: skip
    per = {k: (len(chunks) if "per pass" in k else 1) for k in cands}
    calls = {k: (1 if "per pass" in k else 3) for k in cands}
    times = common.interleaved(cands, repeats, per, calls=calls)
    show(f"{title} ({len(chunks)} passes of {b})", times, f"forward, {b} photos", {}, markdown, unit="ms/pass")
    return times


def score_cam_tkv_masks(model, x: np.ndarray, repeats: int, markdown: bool, title: str) -> dict:
    """Not timed: why Score-CAM's maps differ from tf-keras-vis'. The weights with
    tf-keras-vis' masks (scipy.ndimage.zoom, order 1, mode "nearest", corner-aligned;
    min-max with an epsilon) computed through our compiled forward pass, against
    tf-keras-vis' own raw map (the same, if the masks are the whole difference) and
    against ours (the authors' masks: bilinear half-pixel resize, min-max)."""
    from scipy.ndimage import zoom

    x = x[:1]
    layer = helpers.target_layer(model)
    specs = ((None, *x.shape[1:]),)
    b = perturbation.BATCH["score_cam"]
    helpers.explain(model, x, "score_cam", progress=False, channels=b)
    forward = model.__dict__["_cam_perturbation"][("forward", layer, 0, specs)]
    A, logits = (t.numpy() for t in forward([tf.constant(x)]))
    c = A.shape[-1]
    cls = np.array([[logits[0].argmax()]], np.int32)
    up = zoom(A, (1, x.shape[1] / A.shape[1], x.shape[2] / A.shape[2], 1), order=1, mode="nearest")
    low, high = up.min(axis=(1, 2), keepdims=True), up.max(axis=(1, 2), keepdims=True)
    H = (up - low) / (high - low + keras.backend.epsilon())  # (1, S, S, c)
    w_tkv = np.zeros(c, np.float32)
    for s in range(0, c, b):
        masked = x * np.transpose(H[0, :, :, s : s + b], (2, 0, 1))[..., None]
        w_tkv[s : s + b] = tf.nn.softmax(forward([tf.constant(masked)])[1]).numpy()[:, cls[0, 0]]
    w_ours = perturbation._score_cam(model, [x], 0, A, cls, layer, 0, b, None, lambda done: None)[0, 0]  # (c,)
    raw = {
        "tkv masks": methods.weighted_map(tf.constant(A), tf.constant(w_tkv[None])).numpy()[0],
        "our masks": methods.weighted_map(tf.constant(A), tf.constant(w_ours[None])).numpy()[0],
    }
    usable = np.ptp(A[0].reshape(-1, c), axis=0) > 0  # ours skips constant channels (weight 0, A_k = 0)
    wt, wo = w_tkv[usable], w_ours[usable]
    out = {
        "channels that are not constant": f"{usable.sum()} of {c}",
        "weights of those: pearson r (tkv masks vs ours)": float(np.corrcoef(wt, wo)[0, 1]),
        "weights of those: median |tkv masks - ours| / |ours|": float(np.median(np.abs(wt - wo) / np.abs(wo))),
        "weights of those: max |tkv masks - ours| / max": float(np.abs(wt - wo).max() / np.abs(wo).max()),
        "raw 7x7 maps: max |tkv masks - ours| / max": float(
            np.abs(raw["tkv masks"] - raw["our masks"]).max() / np.abs(raw["our masks"]).max()
        ),
    }
    try:
        from tf_keras_vis.scorecam import Scorecam
        from tf_keras_vis.utils.scores import CategoricalScore
    except ImportError:
        out["tf-keras-vis"] = "not importable"
    else:
        with contextlib.redirect_stdout(io.StringIO()):
            theirs = np.asarray(Scorecam(model, clone=False)(
                CategoricalScore([int(cls[0, 0])]), x, penultimate_layer=layer, seek_penultimate_conv_layer=False,
                batch_size=b, expand_cam=False, normalize_cam=False))[0]  # fmt: skip
        for name, m in raw.items():
            out[f"raw 7x7 maps: max |tf-keras-vis - {name}| / max"] = float(
                np.abs(theirs - m).max() / np.abs(theirs).max()
            )
    common.print_section(title, ["what", "value"], [[k, f"{v:.2e}" if isinstance(v, float) else v]
                                                    for k, v in out.items()], markdown)  # fmt: skip
    return out


SLOW_EXPERIMENTS = {  # name -> function(model, x, repeats, markdown, title)
    "ablation_cam": ablation,
    "score_cam": score_cam,
    "score_cam tkv masks": score_cam_tkv_masks,
}


def run_experiments(args) -> dict:
    """Every experiment (or those of --only) on each model and batch (the Score-CAM ones
    on the first image, once per model)."""
    results = {}
    for model_name in args.models:
        model, _ = common.load(model_name)
        for batch in args.batches:
            x = common.photos(batch)
            for name in args.only or [*EXPERIMENTS, *SLOW_EXPERIMENTS]:
                if name.startswith("score_cam") and batch != min(args.batches):
                    continue
                title = f"{model_name}, batch {batch}: {name}, {args.repeats} interleaved runs"
                if name in SLOW_EXPERIMENTS:
                    results[title] = SLOW_EXPERIMENTS[name](model, x, args.repeats, args.markdown, title)
                else:
                    results[title] = run_experiment(model, name, x, args.repeats, args.markdown, title)
    return results


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    common.add_common_args(p, MODELS)
    p.add_argument("--only", nargs="+", metavar="EXPERIMENT", choices=[*EXPERIMENTS, *SLOW_EXPERIMENTS],
                   help=f"some of: {', '.join([*EXPERIMENTS, *SLOW_EXPERIMENTS])}")  # fmt: skip
    p.add_argument("--json", type=Path, help="also write every raw timing to this file")
    args = p.parse_args(argv)
    args.models = args.models or list(MODELS)
    return args


def main(argv=None):
    args = parse_args(argv)
    results = run_experiments(args)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1, default=str))


if __name__ == "__main__":
    main()
