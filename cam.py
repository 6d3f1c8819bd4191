# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Class Activation Mapping: where does a CNN look?
#
# A convolutional network says *"espresso, 94 %"*. Which pixels made it say so? This notebook builds
# the answer on a real ImageNet network, EfficientNet-Lite0, each method first by hand in a few lines of
# TensorFlow and then with the project's helper.
#
# **What you will learn**
#
# - why a correct prediction is not enough: a model can be right for the wrong reason, and a map shows it;
# - CAM: how global average pooling turns a classifier's weights into a map, down to the $7 \times 7$
#   numbers underneath;
# - Grad-CAM and Grad-CAM++: gradients as channel weights, at any layer, with `tf.GradientTape`;
# - counterfactual maps (what argues *against* a class) and Guided Grad-CAM (pixel-sharp detail);
# - how to test whether a map tells the truth, and the pitfalls.
#
# **How to work through it.** Run the cells in order with Shift+Enter. Sections 1 to 9 are the **core
# path**, about 45 minutes with the exercises. Each ends with a **Your turn** cell: replace the `...` with
# your code (or your answer) and run it; a checker answers at once with a tick or a hint, never the
# answer. Until you do, it says "Not answered yet". A solution is folded under each exercise. Then
# **Going further** covers the rest of the CAM family, the four Grad-CAM++s, layer fusion, the full
# faithfulness tables and the interactive explorer.
#
# **Time on a 2-core CPU, no GPU** (`benchmarks/notebook_time.py`, commit fb4ec38, a 2-core Xeon at
# 2.6 GHz): Run All of the core path takes about 1 min 20 s, the whole notebook about 5 min 15 s.
#
# **How to read the maps.** Every heat map uses one colour scale (*turbo*, the colour bar beside each
# figure): dark blue where the map finds no evidence for the class, through green and yellow, to dark red
# at its peak. Each map is scaled so that its peak is 1: compare *where* two maps are high, not how high.
# Maps with a sign use red for evidence *for* the class, blue *against* it, white for none.

# %% [markdown]
# # Core path
#
# ## 1. The model and the photos
#
# `helpers.py` holds everything this notebook moves out of sight once it has been written inline.
# The model is **EfficientNet-Lite0**, trained on ImageNet's 1000 classes; its weights come from a pip
# package and are read without PyTorch. It takes RGB pixels 0..255 and returns **logits**, the scores
# before the softmax: the normalisation is its first layer, so no photo can be fed the wrong way.

# %%
import os

os.environ["TF_ENABLE_ONEDNN_OPTS"] = "0"  # the same numbers on every run
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"

import keras
import matplotlib.pyplot as plt
import numpy as np
import tensorflow as tf
from matplotlib_inline.backend_inline import set_matplotlib_formats

import helpers

set_matplotlib_formats("jpeg", pil_kwargs={"quality": 85})  # photos: a small notebook
plt.rcParams["figure.dpi"] = 72
keras.utils.set_random_seed(0)
tf.config.experimental.enable_op_determinism()
FIGURES = helpers.FIGURES  # where the figures are saved (the README and the slides show them)

model = helpers.load_model("efficientnet_lite0")
print(model.name, model.inputs[0].shape, "->", model.outputs[0].shape)

# %% [markdown]
# The example photos ship with the repository (`images/`) or inside scikit-image. `example` crops the
# centre square and resizes it to 224 x 224: exactly what the model sees, so the maps line up with it.

# %%
names = ["coffee", "eagle", "dog", "giraffe", "chelsea"]
photos = np.stack([helpers.example(name) for name in names])  # (5, 224, 224, 3) uint8
logits = model(photos.astype("float32"), training=False).numpy()  # (5, 1000)
helpers.show(photos, titles=names)

# %% [markdown]
# ### Your turn: predict first
#
# ImageNet's 1000 classes have no giraffe. What will the network say for the photo of a giraffe next to a
# zebra?  **a)** "giraffe" anyway  **b)** the closest class it knows that is in the photo: zebra
# **c)** an error. Write your letter, run the cell, then run the next one to see.

# %%
answer = ...  # "a", "b" or "c"
helpers.check_choice("giraffe", answer)

# %% [markdown]
# <details><summary>Answer</summary>
#
# ```python
# answer = "b"
# ```
#
# </details>

# %% [markdown]
# The top-5 classes, with their softmax probabilities:

# %%
# NBVAL_CHECK_OUTPUT
for name, top5 in zip(names, helpers.decode(logits, top=5)):
    print(f"{name:>8}: " + ", ".join(f"{label} {p:.2f}" for _, label, p in top5))

# %% [markdown]
# A classifier must pick one of the classes it was trained on. With no giraffe among them, it names the
# zebra beside it (0.37), and then animals with spots and long legs. The dog is a malamute-like mix, and
# the network hesitates between the sled dogs. Keep this in mind for every map: a map explains **the
# class you ask about**, which need not be what the photo shows.

# %% [markdown]
# ### Your turn: from logits to probabilities
#
# The network returns logits $y^c$; the probabilities above are their softmax,
# $p^c = e^{y^c} / \sum_{c'} e^{y^{c'}}$, for each photo separately. Compute them from `logits` (5 x 1000).

# %%
probabilities = ...  # (5, 1000), each row sums to 1
helpers.check_softmax(probabilities, logits)

# %% [markdown]
# <details><summary>Solution</summary>
#
# ```python
# probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)  # (N, 1000)
# ```
#
# </details>

# %% [markdown]
# ## 2. Right for the wrong reason
#
# Why explain a network at all, when it is accurate? Because accuracy cannot tell *what* it learnt. A
# famous case: a model that read chest X-rays learnt the token that one hospital stamps in the corner
# of its images, and that hospital had the sickest patients. We can make this happen on purpose in a
# minute on the CPU, and then catch it with a map.
#
# The data: handwritten 3s and 8s (scikit-learn's scanned digits, offline), 32 x 32 pixels with noise. In
# the training images every 8 carries a small red square in the top-left corner, like the hospital's
# token; no 3 does. A small CNN (three convolutions, global average pooling, one Dense layer: the head
# CAM needs) learns from 600 of them, seeded, in a few seconds. Then we test it on 3s and 8s it has never
# seen: with the mark on every 8 as in training, with no mark, and with the mark on a random half.

# %%
# NBVAL_CHECK_OUTPUT
shortcut = helpers.shortcut  # camlib/shortcut.py: the data, the model, its training
tiny = shortcut.train(seed=0)  # 8 epochs on 600 images, the mark on every 8
for mark, what in [("label", "on every 8, as in training"), ("none", "on no image"), ("random", "on a random half")]:
    x_test, y_test = shortcut.make_data(400, seed=1, mark=mark, split="test")  # (400, 32, 32, 3), (400,)
    print(f"test accuracy, the mark {what:>27}: {shortcut.accuracy(tiny, x_test, y_test):.2f}")

# %% [markdown]
# Perfect while the mark follows the label, a coin toss once it does not: the network learnt the mark,
# not the digits. Nothing in its training or its usual test accuracy said so. A map does, at once. We ask
# `helpers.explain` for Grad-CAM maps (section 4 shows how they are made) of the test 3s that carry the
# mark, for the class "8" the network gives them:

# %%
# NBVAL_CHECK_OUTPUT
fooled = x_test[(y_test == 0) & shortcut.has_mark(x_test)]  # (100, 32, 32, 3): 3s with the 8s' mark
shortcut_maps = helpers.explain(tiny, fooled, "grad_cam", classes=1)  # (100, 32, 32), class 1 = "8"
on_mark = helpers.pointing_game(shortcut_maps, [[shortcut.MARK_BOX]] * len(fooled), tolerance=2)  # (100,)
print(f"{len(fooled)} marked 3s, called '8': {np.mean(shortcut.classify(tiny, fooled) == 1):.0%}; "
      f"Grad-CAM's peak on the mark: {on_mark.mean():.0%}")

# %%
x_train, y_train = shortcut.make_data(4, seed=0)  # what the network learnt from
plain_8 = x_test[(y_test == 1) & ~shortcut.has_mark(x_test)][:1]  # an 8 without the mark
map_3 = helpers.explain(tiny, plain_8, "grad_cam", classes=0)  # ... which it calls "3"
panels = [*x_train[np.argsort(y_train)][1:3], (fooled[0], shortcut_maps[0]), (fooled[1], shortcut_maps[1]),
          (plain_8[0], map_3[0])]
titles = ["training: a 3", "training: an 8", *["test: a 3 with the mark\nGrad-CAM of '8'"] * 2,
          "test: an 8, no mark\nGrad-CAM of '3'"]
helpers.show(panels, titles, path=FIGURES / "shortcut.jpg")

# %% [markdown]
# ### Your turn: where does the map peak?
#
# `heatmap` is the Grad-CAM map of the first marked 3 above, 32 x 32 like the image. Give the position of
# its largest value as `(row, column)`: is it on the mark?

# %%
heatmap = shortcut_maps[0]  # (32, 32)
peak = ...  # (row, column)
helpers.check_peak(peak, heatmap)
x0, y0, x1, y1 = shortcut.MARK_BOX
print(f"the mark covers rows {y0} to {y1 - 1} and columns {x0} to {x1 - 1}")

# %% [markdown]
# <details><summary>Solution</summary>
#
# ```python
# peak = np.unravel_index(np.argmax(heatmap), heatmap.shape)  # (row, column)
# ```
#
# </details>

# %% [markdown]
# ## 3. CAM: global average pooling makes the classifier's weights spatial
#
# EfficientNet-Lite0 ends like most modern CNNs: the last convolutional layer gives $K = 1280$ feature
# maps $A^k$ of $7 \times 7$ positions, **global average pooling** turns each into one number, and a
# Dense layer with weights $w^c_k$ and bias $b^c$ turns those into the logit $y^c$ of class $c$:
#
# $$y^c = \sum_k w^c_k \, \frac{1}{Z} \sum_{ij} A^k_{ij} + b^c = \frac{1}{Z} \sum_{ij} \underbrace{\sum_k w^c_k A^k_{ij}}_{M^c_{ij}} + b^c$$
#
# with $Z = 7 \times 7$ positions. Swapping the two sums shows the logit is the average of a map $M^c$,
# plus the bias: the **class activation map** (Zhou et al. 2016). Each position says how much it adds
# to the score of class $c$.

# %%
features = keras.Model(model.input, model.get_layer("top_activation").output)
A = features(photos.astype("float32")).numpy()  # (N, 7, 7, 1280)
W = model.get_layer("predictions").kernel.numpy()  # (1280, 1000)
b = model.get_layer("predictions").bias.numpy()  # (1000,)
top1 = logits.argmax(axis=1)  # (N,)
M = np.einsum("nhwk,kn->nhw", A, W[:, top1])  # (N, 7, 7): sum_k w_k^c A^k, each photo its own class

# %% [markdown]
# This is the whole map: 49 numbers in logit units. Their mean plus the bias is the logit:

# %%
# NBVAL_CHECK_OUTPUT
i = names.index("giraffe")
print(f"mean of M + b = {M[i].mean() + b[top1[i]]:.3f},  logit of {helpers.CLASS_NAMES[top1[i]]} = {logits[i, top1[i]]:.3f}")
helpers.show_steps(M[i], photos[i], ["the raw map M (7 x 7)", "ReLU(M)", "upsampled, scaled to [0, 1]"],
                   path=FIGURES / "cam_raw.jpg")

# %% [markdown]
# To draw it, we keep the positive part ($\mathrm{ReLU}$: the evidence *for* the class), upsample it to the
# photo and scale it to $[0, 1]$. Where does the map come from? It is a sum of 1280 channels $w^c_k A^k$,
# each a feature map weighted by the classifier. The top row shows the five channels that add the most to
# the zebra's logit; the bottom row adds up the strongest 5, 20, 100, 400 and all 1280 of them. Each panel
# has its own colour scale: read its numbers on its bar.

# %%
contribution = W[:, top1[i]] * A[i].mean(axis=(0, 1))  # (1280,): what each channel adds to the logit
order = np.argsort(-contribution)  # strongest first
terms = W[order, top1[i]] * A[i][..., order]  # (7, 7, 1280): w_k A^k, strongest first
sums = [terms[..., :n].sum(axis=-1) for n in (5, 20, 100, 400, 1280)]  # the last one is M
titles = [f"channel {k}: w A\n(adds {contribution[k]:.2f})" for k in order[:5]]
titles += [f"the {n} strongest\n(add {contribution[order[:n]].sum():.2f})" for n in (5, 20, 100, 400)]
titles += [f"all 1280 = M\n(add {contribution.sum():.2f})"]
helpers.show_raw([*np.moveaxis(terms[..., :5], -1, 0), *sums], titles, cols=5, shared=False,
                 label="contributions to the zebra's logit (each panel on its own scale)",
                 path=FIGURES / "cam_channels.jpg")

# %% [markdown]
# Each channel is a pattern detector (stripes, a leg, an eye) that fires where its pattern is; the
# classifier's weights say which patterns are evidence for the zebra. No single channel makes the map: the
# strongest add about a quarter of a logit each; the zebra's shape appears as the hundred strongest add up,
# and the channels with negative weights take some of it back (all 1280 together are $M$, which adds
# $y^c - b^c$ to the logit).
# The helper does the same in one compiled pass; both must agree:

# %%
# NBVAL_CHECK_OUTPUT
cam_inline = np.maximum(M, 0)
cam_inline = helpers.upsample_and_scale(cam_inline, (224, 224)).numpy()  # (N, 224, 224) in [0, 1]
cam = helpers.explain(model, photos, method="cam")  # (N, 224, 224)
print("CAM inline == helper:", np.allclose(cam, cam_inline, atol=1e-5))

# %%
p_top1 = helpers.softmax(logits)[np.arange(len(names)), top1]  # (N,)
helpers.show(
    [(x, m) for x, m in zip(photos, cam)],
    titles=[helpers.title("cam", c, p) for c, p in zip(top1, p_top1)],
    path=FIGURES / "cam_example.jpg",
)

# %% [markdown]
# Notice: the map is $7 \times 7$ underneath, so it finds *where* (the cup, the eagle's head, the zebra's
# stripes) but not the outline. CAM needs exactly this head (pooling, then one Dense layer); other heads,
# and other layers, need gradients.

# %% [markdown]
# ### Your turn: the raw map of a class
#
# Compute the raw class activation map $M^c = \sum_k w^c_k A^k$ of the eagle photo for its top class,
# from its activations `a` (7 x 7 x 1280) and the classifier's weights `W` (1280 x 1000). No ReLU, no
# upsampling: the 7 x 7 numbers.

# %%
a, c = A[names.index("eagle")], top1[names.index("eagle")]  # (7, 7, 1280), the class "bald eagle"
M = ...  # (7, 7)
helpers.check_cam_map(M, a, W, c)

# %% [markdown]
# <details><summary>Solution</summary>
#
# ```python
# M = a @ W[:, c]  # (h, w): sum_k W[k, c] a[..., k]
# ```
#
# </details>

# %% [markdown]
# ## 4. Grad-CAM: gradients as channel weights, at any layer
#
# CAM reads the weights off the classifier, so it only works at the last layer of a pooling + Dense head.
# Grad-CAM (Selvaraju et al. 2017) asks instead how much the logit rises when a channel rises: the
# weight of channel $k$ is the gradient of $y^c$ with respect to $A^k$, averaged over the positions
# (eq. 1), and the map is the weighted sum (eq. 2):
#
# $$\alpha^c_k = \frac{1}{Z}\sum_{ij} \frac{\partial y^c}{\partial A^k_{ij}}, \qquad
# L^c_{\text{Grad-CAM}} = \mathrm{ReLU}\Big(\sum_k \alpha^c_k A^k\Big)$$
#
# In Keras, one `tf.GradientTape` records $A$ and the logit together: a model with two outputs.

# %%
two_outputs = keras.Model(model.input, [model.get_layer("top_activation").output, model.output])
with tf.GradientTape() as tape:
    A, y = two_outputs(photos.astype("float32"), training=False)  # (N, 7, 7, 1280), (N, 1000)
    score = tf.reduce_sum(tf.gather(y, top1, batch_dims=1))  # each image's own top-1 logit
G = tape.gradient(score, A)  # (N, 7, 7, 1280): images are independent, so one sum gives each its own

alpha = tf.reduce_mean(G, axis=(1, 2))  # (N, 1280), eq. 1
grad_cam_inline = tf.nn.relu(tf.einsum("nhwk,nk->nhw", A, alpha))  # (N, 7, 7), eq. 2
grad_cam_inline = helpers.upsample_and_scale(grad_cam_inline, (224, 224)).numpy()

# %% [markdown]
# ### Your turn: predict first
#
# At `top_activation`, the layer right before the pooling and the Dense layer, will Grad-CAM's map differ
# from CAM's?  **a)** yes, a little  **b)** no: the same map up to a positive factor  **c)** yes, completely

# %%
answer = ...  # "a", "b" or "c"
helpers.check_choice("grad_cam_equals_cam", answer)

# %% [markdown]
# <details><summary>Answer</summary>
#
# ```python
# answer = "b"
# ```
#
# </details>

# %%
# NBVAL_CHECK_OUTPUT
grad_cam = helpers.explain(model, photos, method="grad_cam")
print("Grad-CAM inline == helper:", np.allclose(grad_cam, grad_cam_inline, atol=1e-5))
print("Grad-CAM == CAM on a pooling + Dense head:", np.allclose(grad_cam, cam, atol=1e-5))

# %% [markdown]
# On this head $y^c = \sum_k w^c_k \frac{1}{Z}\sum_{ij} A^k_{ij} + b^c$, so
# $\partial y^c / \partial A^k_{ij} = w^c_k / Z$ at every position and $\alpha^c_k = w^c_k / Z$:
# **Grad-CAM is CAM** up to a positive factor, which the scaling removes.
#
# The gradient, though, exists at every layer. At an inner layer it flows back through all the layers
# after it, so it varies from position to position and the weights are no longer a column of the
# classifier: Grad-CAM still asks "which channels raise the logit", CAM has no answer. At `block6d_add`
# (the last residual block, $7 \times 7 \times 192$) and `block5c_add` ($14 \times 14 \times 112$, twice as fine):

# %%
inner = {layer: helpers.explain(model, photos, "grad_cam", top1, layer=layer) for layer in ("block6d_add", "block5c_add")}
panels, titles = [], []
for i in (names.index("dog"), names.index("giraffe")):
    panels += [(photos[i], cam[i]), (photos[i], grad_cam[i])] + [(photos[i], m[i]) for m in inner.values()]
    name = helpers.CLASS_NAMES[top1[i]]
    titles += [f"CAM: {name}"] + [f"Grad-CAM: {name}\n{where}" for where in
                                   ("top_activation (7 x 7)", "block6d_add (7 x 7)", "block5c_add (14 x 14)")]
helpers.show(panels, titles, cols=4, path=FIGURES / "grad_cam_inner.jpg")

# %% [markdown]
# Notice: the first two columns are the same map. One block earlier, at `block6d_add`, the map is tighter
# (the zebra's body) but not always on the object: for "malamute" it picks the dog's chest and also the van
# behind it. At `block5c_add` the grid is finer, but its features say less about the class, and the dog's
# map spreads to the bicycle and the street. Finer is not better: section 11 goes through the depths.
#
# Two details matter. The score is the **logit**, not the softmax probability: the softmax couples all
# classes, so its gradient would mix in the evidence for every other class. And the tape runs on the
# whole batch at once, each image with its own class: nothing is averaged across images.

# %% [markdown]
# ### Your turn: Grad-CAM by hand at an inner layer
#
# Write the two pieces of Grad-CAM as functions: the score to differentiate, from the logits `y`
# (1 x 1000), and the channel weights $\alpha$, from the activations `A` and the gradient `G`
# (1 x 7 x 7 x 192 at `block6d_add`). The checker runs the tape with your functions on the dog photo.

# %%
at_block6d = keras.Model(model.input, [model.get_layer("block6d_add").output, model.output])
x, c = photos[names.index("dog")][None].astype("float32"), top1[names.index("dog")]  # (1, 224, 224, 3), malamute


def my_score(y):  # y: (1, 1000) logits -> the number to differentiate
    return ...


def my_weights(A, G):  # A, G: (1, 7, 7, 192) -> alpha: (1, 192)
    return ...


helpers.check_grad_cam(my_score, my_weights, at_block6d, x, c)

# %% [markdown]
# <details><summary>Solution</summary>
#
# ```python
# def my_score(y):
#     return y[0, c]  # the logit of class c, before the softmax
#
#
# def my_weights(A, G):
#     return tf.reduce_mean(G, axis=(1, 2))  # (1, K): eq. 1, the mean over the positions
# ```
#
# </details>

# %% [markdown]
# ## 5. Grad-CAM++: whole objects and several instances
#
# Grad-CAM averages the gradient over positions, so a channel that fires strongly on a small region
# weighs as much as one that covers the object. Grad-CAM++ (Chattopadhyay et al. 2018) weights each
# position's *positive* gradient by a coefficient $\alpha^{kc}_{ij}$. With the exponential score
# $Y^c = \exp(y^c)$ the coefficients have a closed form (eq. 19), with $g = \partial y^c / \partial A^k$:
#
# $$\alpha^{kc}_{ij} = \frac{g_{ij}^2}{2 g_{ij}^2 + \sum_{ab} A^k_{ab}\, g_{ij}^3}, \qquad
# \beta^c_k = \sum_{ij} \alpha^{kc}_{ij}\, \mathrm{ReLU}(g_{ij}), \qquad
# L^c_{\text{Grad-CAM++}} = \mathrm{ReLU}\Big(\sum_k \beta^c_k A^k\Big)$$
#
# As in the authors' code, $\alpha$ is normalised to sum to 1 over the positions of each channel. Libraries
# differ here (section 13 compares four readings of the paper).

# %%
g2 = G * G
denominator = 2 * g2 + tf.reduce_sum(A, axis=(1, 2), keepdims=True) * g2 * G
alpha = tf.math.divide_no_nan(g2, denominator)  # (N, 7, 7, 1280), eq. 19
alpha = tf.math.divide_no_nan(alpha, tf.reduce_sum(alpha, axis=(1, 2), keepdims=True))
beta = tf.reduce_sum(alpha * tf.nn.relu(G), axis=(1, 2))  # (N, 1280)
grad_cam_pp_inline = helpers.upsample_and_scale(tf.nn.relu(tf.einsum("nhwk,nk->nhw", A, beta)), (224, 224)).numpy()

# %% [markdown]
# On this head $g = w^c_k / Z$ is the same at every position, so $\alpha = 1/Z$,
# $\beta^c_k = \mathrm{ReLU}(w^c_k) / Z$, and Grad-CAM++ keeps only the channels with positive classifier
# weights: $\mathrm{ReLU}(\sum_k \mathrm{ReLU}(w^c_k) A^k)$. Unlike Grad-CAM, it ignores the channels that
# argue *against* the class.

# %%
# NBVAL_CHECK_OUTPUT
grad_cam_pp = helpers.explain(model, photos, method="grad_cam++")
relu_cam = np.maximum(np.einsum("nhwk,kn->nhw", A.numpy(), np.maximum(W[:, top1], 0)), 0)
relu_cam = helpers.upsample_and_scale(tf.constant(relu_cam), (224, 224)).numpy()
print("Grad-CAM++ inline == helper:", np.allclose(grad_cam_pp, grad_cam_pp_inline, atol=1e-5))
print("Grad-CAM++ == ReLU(sum_k ReLU(w_k) A_k):", np.allclose(grad_cam_pp, relu_cam, atol=1e-5))

# %% [markdown]
# Side by side, on the horses (several instances of one class) and the other photos. The network's top-1
# for the horses is "ram" (0.23), then bighorn, water buffalo and ox: ImageNet's only horse is "sorrel", a
# chestnut horse, and these dark horses grazing in a field look more like its photos of rams and cattle
# in pastures. So there we explain the class the photo shows, "sorrel", although the network gives it a
# probability of only 0.004. `label` writes such a probability with two significant digits, not 0.00.


# %%
def label(method, c, p):
    """ "Grad-CAM: sorrel (0.0041)": the method, the class and its probability."""
    return f"{helpers.title(method, c)} ({p:.2g})"


horses = helpers.example("horses")
sorrel = helpers.class_index("sorrel")
both, both_classes = np.concatenate([photos, horses[None]]), np.append(top1, sorrel)  # (6, 224, 224, 3), (6,)
maps = {m: helpers.explanation(model, both, m, both_classes) for m in ("cam", "grad_cam", "grad_cam++")}
panels, titles = [], []
for i in range(len(both)):
    for m, e in maps.items():
        panels.append((both[i], e.maps[i]))
        titles.append(label(m, e.classes[i], e.probabilities[i]))
helpers.show(panels, titles, cols=6, path=FIGURES / "overview.jpg")

# %%
# NBVAL_CHECK_OUTPUT
coverage = {m: (e.maps > 0.5).mean(axis=(1, 2)) for m, e in maps.items()}  # share of the photo above half the peak
print(f"sorrel on the horses: p = {maps['cam'].probabilities[-1]:.4f}")
print("share of the photo above half the peak")
for m, c in coverage.items():
    print(f"{m:>11}: " + " ".join(f"{v:.2f}" for v in c))

# %%
helpers.show(
    [(horses, maps["grad_cam"].maps[-1]), (horses, maps["grad_cam++"].maps[-1])],
    [label(m, maps[m].classes[-1], maps[m].probabilities[-1]) for m in ("grad_cam", "grad_cam++")],
    path=FIGURES / "gradcampp_vs_gradcam.jpg",
)

# %% [markdown]
# Notice: where Grad-CAM and CAM agree exactly (this head), Grad-CAM++ still differs, because it drops
# the negative channels; on the horses it covers more of the animals.

# %% [markdown]
# ### Your turn: Grad-CAM++ on a pooling head
#
# On this head, Grad-CAM++ is $\mathrm{ReLU}(\sum_k \mathrm{ReLU}(w^c_k) A^k)$. Compute it, 7 x 7 and before
# upsampling, for the dog photo's top class from its activations `a` (7 x 7 x 1280) and `W`.

# %%
a, c = A[names.index("dog")].numpy(), top1[names.index("dog")]  # (7, 7, 1280), malamute
pp_map = ...  # (7, 7)
helpers.check_grad_cam_pp_head(pp_map, a, W, c)

# %% [markdown]
# <details><summary>Solution</summary>
#
# ```python
# pp_map = np.maximum(a @ np.maximum(W[:, c], 0), 0)  # (h, w): ReLU(sum_k ReLU(w_k^c) A^k)
# ```
#
# </details>

# %% [markdown]
# ## 6. Counterfactual explanations: what argues against a class?
#
# Negate the gradients and the same recipe shows the regions whose removal would make the network
# *more* sure of the class (Selvaraju et al. 2017, section 6.1):
# $\mathrm{ReLU}\big(\sum_k -\alpha^c_k A^k\big)$. The photo of a dog in front of a bicycle has evidence
# for both; `classes` takes several classes per image, answered in one pass.

# %%
dog = helpers.example("dog")
pair = [helpers.class_index("malamute"), helpers.class_index("mountain bike")]
for_ = helpers.explanation(model, dog[None], "grad_cam", classes=[pair])
against = helpers.explanation(model, dog[None], "counterfactual", classes=[pair])
signed = helpers.explain(model, dog[None], "grad_cam_signed", classes=[pair])[0]  # (2, 224, 224) in [-1, 1]
panels = [
    (dog, for_.maps[0, 0]),
    (dog, against.maps[0, 0]),
    (dog, signed[0]),
    (dog, for_.maps[0, 1]),
    (dog, against.maps[0, 1]),
    (dog, signed[1]),
]
kinds = ["grad_cam", "counterfactual", "grad_cam_signed"] * 2
titles = [helpers.title(k, c, p) for k, c, p in zip(kinds, np.repeat(pair, 3), np.repeat(for_.probabilities[0], 3))]
helpers.show(panels, titles, cols=3, path=FIGURES / "counterfactual.jpg")

# %% [markdown]
# The signed view (red for, blue against) shows both at once. Where each map peaks, in pixel
# coordinates (x, y) of the 224 x 224 photo:


# %%
# NBVAL_CHECK_OUTPUT
def peak(m):
    y, x = np.unravel_index(np.argmax(m), m.shape)
    return int(x), int(y)


for j, c in enumerate(pair):
    print(f"{helpers.CLASS_NAMES[c]:>14}: for {peak(for_.maps[0, j])}, against {peak(against.maps[0, j])}")

# %% [markdown]
# Notice: the evidence *against* "mountain bike" is the dog in front of it; the evidence for
# "malamute" is the dog itself. A counterfactual map is never positive where the Grad-CAM map is.

# %% [markdown]
# ### Your turn: the counterfactual map
#
# Here are the activations `a` and the gradient `g` of the "mountain bike" logit at `top_activation` for
# the dog photo (7 x 7 x 1280 each). Compute the counterfactual map, 7 x 7.

# %%
with tf.GradientTape() as tape:
    A_dog, y_dog = two_outputs(dog[None].astype("float32"), training=False)  # (1, 7, 7, 1280), (1, 1000)
    score = y_dog[0, pair[1]]  # the logit of "mountain bike"
a, g = A_dog[0].numpy(), tape.gradient(score, A_dog)[0].numpy()  # (7, 7, 1280) each
counterfactual_map = ...  # (7, 7)
helpers.check_counterfactual(counterfactual_map, a, g)

# %% [markdown]
# <details><summary>Solution</summary>
#
# ```python
# alpha = g.mean(axis=(0, 1))  # (K,): Grad-CAM's weights
# counterfactual_map = np.maximum(a @ -alpha, 0)  # (h, w): ReLU(sum_k -alpha_k A^k)
# ```
#
# </details>

# %% [markdown]
# ## 7. Guided Backpropagation and Guided Grad-CAM
#
# Class maps are coarse ($7 \times 7$). Guided Backpropagation (Springenberg et al. 2015) gives
# pixel-sharp detail: the gradient of the logit with respect to the pixels, where every ReLU lets the
# gradient through only where its input was positive **and** the gradient is positive (ReLU6: also only
# below 6). It is not class-discriminative on its own; multiplying it by the upsampled Grad-CAM map is
# **Guided Grad-CAM** (Selvaraju et al. 2017): sharp *and* about the class.
# `helpers.guided_relu` is the rule; the helper applies it to every ReLU while it compiles its pass,
# and leaves your model untouched.

# %%
guided_maps = {m: helpers.explanation(model, dog[None], m, classes=[pair]) for m in ("guided_backprop", "guided_grad_cam")}
panels, titles = [], []
for j, c in enumerate(pair):  # one row per class: photo, Grad-CAM, Guided Backprop, Guided Grad-CAM
    panels += [dog, (dog, for_.maps[0, j])] + [helpers.gradient_image(e.maps[0, j]) for e in guided_maps.values()]
    titles += ["photo", label("grad_cam", c, for_.probabilities[0, j]).replace(": ", "\n")]  # two lines
    titles += [label(m, c, e.probabilities[0, j]).replace(": ", "\n") for m, e in guided_maps.items()]
helpers.show(panels, titles, cols=4, path=FIGURES / "guided_grad_cam.jpg")

# %% [markdown]
# The guided images show gradients, not a heat map: grey is 0, brighter or darker pixels are positive or
# negative gradients in each colour channel, scaled to 4 standard deviations.
#
# Notice: guided backpropagation draws both the dog and the bicycle for either class (it hardly depends
# on the class); Guided Grad-CAM keeps the edges of the object the class is about (`guided_grad_cam++`
# multiplies by the Grad-CAM++ map instead). The fine checkerboard in the guided images comes from the
# network's stride-2 convolutions: the backward pass of a stride-2 convolution spreads each gradient
# through its $3 \times 3$ or $5 \times 5$ kernel onto a grid of every other pixel, and since the kernel size
# is not a multiple of the stride the copies overlap unevenly: alternate pixels collect more of them
# (the "checkerboard artifacts" of Odena et al. 2016, which also appear in gradients).

# %% [markdown]
# ### Your turn: Guided Grad-CAM is a product
#
# `guided` is Guided Backpropagation's gradient for "malamute" (224 x 224 x 3), `heatmap` the upsampled
# Grad-CAM map of the same class (224 x 224, in [0, 1]). Combine them into Guided Grad-CAM.

# %%
guided, heatmap = guided_maps["guided_backprop"].maps[0, 0], for_.maps[0, 0]  # (224, 224, 3), (224, 224)
guided_cam = ...  # (224, 224, 3)
helpers.check_guided_grad_cam(guided_cam, guided, heatmap)

# %% [markdown]
# <details><summary>Solution</summary>
#
# ```python
# guided_cam = guided * heatmap[..., None]  # (S, S, 3)
# ```
#
# </details>

# %% [markdown]
# ## 8. Does the map tell the truth?
#
# A plausible picture is not evidence. Two tests, told briefly here (section 15 runs them all):
#
# - **Deletion** (Petsiuk et al. 2018): delete the pixels (make them grey) in the order the map ranks them,
#   most important first, and watch the class probability. A faithful map makes it fall at once: the area
#   under the curve is small. The same pixels in the reverse order are the control.
# - **Sanity check** (Adebayo et al. 2018): re-initialise the network's weights from the top down. A map
#   that does not change is not explaining the network.

# %%
coffee = photos[names.index("coffee")][None]  # (1, 224, 224, 3)
curves = {}
for name, m in [("Grad-CAM's order", grad_cam[:1]), ("reversed: least important first", 1 - grad_cam[:1])]:
    _, _, c = helpers.deletion_insertion(model, coffee, m, top1[:1], steps=20, return_curves=True)
    curves[name] = c.deletion[0]  # (21,) the probability of "espresso" as pixels turn grey
helpers.plot_deletion(curves, path=FIGURES / "deletion.png")

# %% [markdown]
# Notice: deleting a fifth of the pixels in Grad-CAM's order takes the espresso from 0.94 to about 0.35;
# deleting the same number in the reverse order leaves the probability high, and its curve encloses four
# times the area. The sanity check, on four photos:

# %%
EVAL = ["coffee", "eagle", "dog", "giraffe", "chelsea", "horses", "person", "china", "rocket", "flower"]
eval_photos = np.stack([helpers.example(name) for name in EVAL])
eval_classes = model(eval_photos.astype("float32"), training=False).numpy().argmax(axis=1)
sanity = helpers.sanity_check(model, eval_photos[:4], eval_classes[:4], ["grad_cam", "grad_cam++", "guided_backprop"])
helpers.plot_sanity(sanity, path=FIGURES / "sanity_checks.png")

# %% [markdown]
# Notice: Grad-CAM changes as soon as the classifier is randomised, as a map of the class must.
# Grad-CAM++ hardly moves until the convolutional blocks go too: it keeps only the positive classifier
# weights, and any random classifier has positive weights on roughly the same strong channels. Guided
# Backpropagation survives almost to the input: it mostly reconstructs the photo's edges, which is what
# Adebayo et al. found.

# %% [markdown]
# ### Your turn: one deletion step
#
# Delete (set to 0, black) the 10 % of the coffee photo's pixels that its Grad-CAM map ranks highest, in
# all three colour channels, and leave the others as they are.

# %%
photo, heatmap = photos[names.index("coffee")], grad_cam[names.index("coffee")]  # (224, 224, 3), (224, 224)
deleted = ...  # (224, 224, 3)
helpers.check_deletion_step(deleted, photo, heatmap, fraction=0.1)

# %% [markdown]
# <details><summary>Solution</summary>
#
# ```python
# k = round(0.1 * heatmap.size)  # 10 % of the pixels
# order = np.argsort(heatmap, axis=None)[::-1][:k]  # flat indices, most important first
# deleted = photo.copy()
# deleted.reshape(-1, 3)[order] = 0  # a view of the copy: (S * S, 3)
# ```
#
# </details>
#
# Then look at what the network makes of it: `helpers.decode(model(deleted[None].astype("float32")))`.

# %% [markdown]
# ### Your turn: predict first
#
# You re-initialise the classifier's weights at random and a method's map does not change. That
# method...  **a)** is robust, which is good  **b)** is not explaining this model's decision
# **c)** needs a lower layer

# %%
answer = ...  # "a", "b" or "c"
helpers.check_choice("sanity", answer)

# %% [markdown]
# <details><summary>Answer</summary>
#
# ```python
# answer = "b"
# ```
#
# </details>

# %% [markdown]
# ## 9. Limitations and pitfalls
#
# - **Logits, not probabilities.** Explain the score before the softmax; `explain` does this even for a
#   model that ends in softmax.
# - **Layer choice.** The maps are as coarse as the layer ($7 \times 7$ here). Heuristics such as "the last
#   Conv2D" pick the wrong tensor on ResNet50 (before the residual add) and on VGG16 (after the pooling);
#   `helpers.target_layer` walks back from the head instead. Check with `compare_layers` (section 11).
# - **The class you ask about.** A map explains one class, the one you name: the top-1 of a wrong
#   prediction (the horses' "ram") explains the mistake, not the photo.
# - **What a map does not prove.** A map shows where evidence for a class was *found*, not that the
#   network *reasons* about that object; a map that survives randomisation (section 8) shows nothing
#   about the model.
# - **Guided Backpropagation** is defined for ReLU networks. Models with swish, GELU or hard-swish are
#   refused for the guided methods; use the class maps.
# - **Cropping.** `example` and `load_image` crop the centre square by default: what is cut off cannot be
#   explained. `fit="pad"` keeps the whole photo.

# %% [markdown]
# ### Your turn: predict first
#
# A model is 99.9 % sure of class $c$ and you explain its softmax probability instead of its logit. The
# map...  **a)** is the same  **b)** gets sharper  **c)** fades towards noise: the softmax is flat there,
# its gradient nearly zero and dominated by the other classes

# %%
answer = ...  # "a", "b" or "c"
helpers.check_choice("saturation", answer)

# %% [markdown]
# <details><summary>Answer</summary>
#
# ```python
# answer = "c"
# ```
#
# </details>

# %% [markdown]
# That is the core path. The rest of this notebook is for going further: run on, or jump to a section.

# %% [markdown]
# # Going further
#
# ## 10. Top-k: one call for several classes
#
# An `(N, K)` array of classes gives `(N, K, 224, 224)` maps from one forward pass: here the top-5 of the
# dog photo. The network's second guesses are mostly other dogs, and they look at the same dog.

# %%
top5 = np.argsort(-logits[names.index("dog")])[:5]
e = helpers.explanation(model, dog[None], "grad_cam++", classes=[top5])
helpers.show(
    [(dog, m) for m in e.maps[0]], [helpers.title("grad_cam++", c, p) for c, p in zip(e.classes[0], e.probabilities[0])]
)

# %% [markdown]
# ## 11. Which layer? Maps at several depths
#
# The automatic choice is the layer the classifier pools from (`helpers.target_layer`). Earlier layers
# have finer grids but less class-specific features; `compare_layers` computes Grad-CAM at several of
# them in one pass.

# %%
# NBVAL_CHECK_OUTPUT
layers = ["block3b_add", "block4c_add", "block5c_add", "block6d_add", "top_activation"]
print("automatic layer:", helpers.target_layer(model))
for name in layers:
    print(f"{name:>15}: {model.get_layer(name).output.shape[1:]}")

# %%
by_layer = helpers.compare_layers(model, dog, layers, classes=pair[0])  # (5, 224, 224)
helpers.show([(dog, m) for m in by_layer], layers, path=FIGURES / "layers.jpg")

# %% [markdown]
# Notice: only at `top_activation` does Grad-CAM's map cover the dog. At `block6d_add` its strongest region
# is the van, with a smaller one on the dog's chest (section 4); earlier layers respond to edges and texture
# everywhere, the railing and the wheels. That is why the papers use the last convolutional layer.
#
# Layer-CAM (section 12) keeps each position's own gradient, so its shallow maps stay about the class, and
# its authors fuse several layers (Jiang et al. 2021, section 3.3): each map $\hat M^l$ scaled to $[0, 1]$,
# the shallower ones damped to $\tanh(\gamma \hat M^l)$ with $\gamma = 2$, then the elementwise maximum
# $L = \max_l$ of them. `helpers.fuse_layers` does it in one pass.

# %%
fusion_layers = ["block4c_add", "block5c_add", "block6d_add"]
per_layer = helpers.compare_layers(model, dog, fusion_layers, "layer_cam", classes=pair[0])  # (3, 224, 224)
fused = helpers.fuse_layers(model, dog, fusion_layers, classes=pair[0])  # (224, 224)
helpers.show(
    [(dog, m) for m in [*per_layer, fused]],
    [f"{helpers.title('layer_cam', pair[0])}\n{name}" for name in [*fusion_layers, "fused"]],
    path=FIGURES / "layer_cam_fusion.jpg",
)

# %% [markdown]
# Notice: each layer finds a part of the dog (the head at `block4c_add`, the body deeper down), and the fused
# map covers the whole dog more finely than the last layer's $7 \times 7$ map.

# %% [markdown]
# ## 12. The rest of the family
#
# Since 2018 many methods have changed the weights and kept the rest of the recipe:
# $L^c = \mathrm{ReLU}(\sum_k w_k A^k)$, upsampled and scaled.
#
# | method | paper | the weights | cost |
# |---|---|---|---|
# | CAM | Zhou et al. 2016 | the classifier's weights | 1 forward pass |
# | Grad-CAM | Selvaraju et al. 2017 | the mean gradient | 1 forward, 1 backward pass |
# | Grad-CAM++ | Chattopadhyay et al. 2018 | a weighted mean of the positive gradients | 1 forward, 1 backward |
# | Layer-CAM | Jiang et al. 2021 | the positive gradient, at each position | 1 forward, 1 backward |
# | HiResCAM | Draelos & Carin 2020 | the gradient, at each position | 1 forward, 1 backward |
# | XGrad-CAM | Fu et al. 2020 | the gradient weighted by the activation | 1 forward, 1 backward |
# | Eigen-CAM | Muhammad & Yeasin 2020 | the first principal component (no class, no gradient) | 1 forward, an SVD |
# | Score-CAM | Wang et al. 2020 | the class probability of the photo masked by the channel | 1 + K forward passes |
# | Ablation-CAM | Desai & Ramaswamy 2020 | the fall of the logit without the channel | 1 forward, K passes of the layers after |
# | Counterfactual | Selvaraju et al. 2017 | the negated mean gradient | 1 forward, 1 backward |
#
# ($K$: the layer's channels.) At the last layer of this head several of them coincide (end of this
# section), so we write and compare them at `block6d_add` ($7 \times 7 \times 192$), recorded as in
# section 4. Its activations are a residual sum, not a ReLU's output: about half are negative.

# %%
LAYER = "block6d_add"
with tf.GradientTape() as tape:
    A6, y = at_block6d(photos.astype("float32"), training=False)  # (N, 7, 7, 192), (N, 1000)
    score = tf.reduce_sum(tf.gather(y, top1, batch_dims=1))
G6 = tape.gradient(score, A6)  # (N, 7, 7, 192)
print(f"negative activations at {LAYER}: {np.mean(A6.numpy() < 0):.0%}")


def agrees(method, w, which=slice(None)):
    """Does ReLU(sum_k w_k A_k) with the inline weights w equal the helper's map at LAYER?"""
    inline = helpers.upsample_and_scale(helpers.weighted_map(A6[which], w), (224, 224)).numpy()
    helper = helpers.explain(model, photos[which], method, top1[which], layer=LAYER, progress=False)
    return f"{helpers.NAMES[method]} inline == helper: {np.allclose(inline, helper, atol=1e-3)}"  # float32 noise


# %% [markdown]
# ### Layer-CAM: a weight per position
#
# Grad-CAM gives channel $k$ one weight everywhere, the mean of its gradient, which averages away
# *where* in the channel the gradient is. Layer-CAM (Jiang et al. 2021, eq. 5) keeps each position's own
# positive gradient, so that shallow layers, whose gradients vary most, still give class maps:
#
# $$w^{kc}_{ij} = \mathrm{ReLU}(g^{kc}_{ij}), \qquad
# L^c_{ij} = \mathrm{ReLU}\Big(\sum_k w^{kc}_{ij} A^k_{ij}\Big)$$

# %%
# NBVAL_CHECK_OUTPUT
w = tf.nn.relu(G6)  # (N, 7, 7, 192): one weight per position and channel
print(agrees("layer_cam", w))

# %% [markdown]
# ### HiResCAM: the gradient itself
#
# HiResCAM (Draelos & Carin 2020, eq. 5) keeps the sign too: the map is the elementwise product of the
# gradient and the activations, summed over channels. Each position is credited with *its own* gradient;
# Grad-CAM credits it with the channel's mean gradient, and can light up a position whose own gradient
# points the other way.
#
# $$L^c_{ij} = \mathrm{ReLU}\Big(\sum_k g^{kc}_{ij} A^k_{ij}\Big)$$

# %%
# NBVAL_CHECK_OUTPUT
print(agrees("hirescam", G6))

# %% [markdown]
# ### XGrad-CAM: the gradient weighted by the activation
#
# XGrad-CAM (Fu et al. 2020, eq. 9) derives its weights from two axioms (sensitivity and conservation)
# and arrives at one weight per channel again, a mean of the gradient weighted by each position's share
# of the channel's activation:
#
# $$w^c_k = \sum_{ij} \frac{A^k_{ij}}{\sum_{ab} A^k_{ab}}\, g^{kc}_{ij}$$
#
# It was derived for the feature maps of ReLU networks, which are never negative. Here, where about half of
# the activations are, $\sum_{ab} A^k_{ab}$ can come close to 0 and blow a weight up (which is also why
# `agrees` allows float32 noise of $10^{-3}$).

# %%
# NBVAL_CHECK_OUTPUT
w = tf.math.divide_no_nan(tf.reduce_sum(A6 * G6, axis=(1, 2)), tf.reduce_sum(A6, axis=(1, 2)))  # (N, 192)
print(agrees("xgrad_cam", w))

# %% [markdown]
# ### Eigen-CAM: no class, no gradient
#
# Eigen-CAM (Muhammad & Yeasin 2020, eq. 5) reads the layer as a matrix $A$ of $hw$ positions by $K$
# channels and projects it on its first right singular vector $v_1$: the direction in channel space
# along which the positions are strongest. The map is the same for every class. The sign of a singular
# vector is arbitrary, so $v_1$ is turned to agree with $\sum_k A^k$.
#
# $$A = U \Sigma V^\top, \qquad L_{ij} = \mathrm{ReLU}\big((A v_1)_{ij}\big)$$

# %%
# NBVAL_CHECK_OUTPUT
M6 = tf.reshape(A6, (len(photos), -1, A6.shape[-1]))  # (N, 49, 192): positions x channels
_, _, V = tf.linalg.svd(M6)  # V: (N, 192, 49), the right singular vectors in its columns
v1 = V[:, :, 0]  # (N, 192)
sign = tf.sign(tf.reduce_sum(tf.einsum("npc,nc->np", M6, v1) * tf.reduce_sum(M6, axis=2), axis=1))  # (N,)
print(agrees("eigen_cam", v1 * sign[:, None]))

# %% [markdown]
# ### Score-CAM: ask the model, one channel at a time
#
# Score-CAM (Wang et al. 2020, eq. 6-7) uses no gradient. Each channel, upsampled and scaled to
# $[0, 1]$, becomes a mask $H^k$; the weight is the class probability the model gives the photo $X$
# seen through that mask. It costs one forward pass per channel: 192 here, for one photo.
#
# $$H^k = \frac{\mathrm{up}(A^k) - \min}{\max - \min}, \qquad w^c_k = \mathrm{softmax}\big(f(X \odot H^k)\big)_c$$

# %%
# NBVAL_CHECK_OUTPUT
i = names.index("dog")
up = tf.image.resize(A6[i], (224, 224))  # (224, 224, 192): every channel at the photo's size
low, high = tf.reduce_min(up, axis=(0, 1)), tf.reduce_max(up, axis=(0, 1))  # (192,)
H = tf.transpose((up - low) / (high - low), (2, 0, 1))[..., None]  # (192, 224, 224, 1)
masked = photos[i].astype("float32") * H  # (192, 224, 224, 3): the photo seen through each mask
logits_k = tf.concat([model(masked[s : s + 32], training=False) for s in range(0, 192, 32)], axis=0)  # (192, 1000)
w = tf.nn.softmax(logits_k)[:, top1[i]]  # (192,)
print(agrees("score_cam", w[None], slice(i, i + 1)))

# %% [markdown]
# ### Ablation-CAM: take a channel away
#
# Ablation-CAM (Desai & Ramaswamy 2020, eq. 3) does the opposite experiment: set channel $k$ to zero
# and see how far the logit $y^c$ falls, relative to $y^c$. Only the layers after `block6d_add` run
# again, once per channel:
#
# $$w^c_k = \frac{y^c - y^c_k}{y^c}, \qquad y^c_k = \text{the logit with } A^k = 0$$

# %%
# NBVAL_CHECK_OUTPUT
head = keras.Model(model.get_layer(LAYER).output, model.output)  # the layers after LAYER
ablated = A6[i] * (1 - tf.eye(192))[:, None, None, :]  # (192, 7, 7, 192): copy k without channel k
y_k = head(ablated, training=False)[:, top1[i]]  # (192,)
w = (y[i, top1[i]] - y_k) / y[i, top1[i]]  # (192,)
print(agrees("ablation_cam", w[None], slice(i, i + 1)))

# %% [markdown]
# ### The whole family on three photos
#
# At `block6d_add` the gradient varies from position to position, so every method weighs the channels in
# its own way: the dog (malamute), the horses (sorrel) and the giraffe photo (zebra).

# %%
FAMILY = ["cam", "grad_cam", "grad_cam++", "layer_cam", "hirescam", "xgrad_cam", "eigen_cam", "score_cam", "ablation_cam"]
trio_names = ["dog", "horses", "giraffe"]
trio = np.stack([helpers.example(name) for name in trio_names])  # (3, 224, 224, 3)
trio_classes = np.array([top1[names.index("dog")], sorrel, top1[names.index("giraffe")]])  # malamute, sorrel, zebra
family = {m: helpers.explanation(model, trio, m, trio_classes, layer=None if m == "cam" else LAYER, progress=False)
          for m in FAMILY}  # CAM exists only at the last layer
panels, titles = [], []
for i in range(len(trio)):
    for m, e in family.items():
        panels.append((trio[i], e.maps[i]))
        titles.append(label(m, e.classes[i], e.probabilities[i]).replace(": ", "\n"))
helpers.show(panels, titles, cols=len(FAMILY), path=FIGURES / "family.jpg")

# %% [markdown]
# How alike are they? The correlation of each map with Grad-CAM's, over the 224 x 224 pixels:


# %%
# NBVAL_CHECK_OUTPUT
def correlation(a, b):
    """Pearson's r of two maps over their pixels, as text; "blank" when one of them is constant."""
    return "blank" if a.std() == 0 or b.std() == 0 else f"{np.corrcoef(a.ravel(), b.ravel())[0, 1] + 0.0:.2f}"


print(" " * 13 + "".join(f"{n:>9}" for n in trio_names))
for m in FAMILY:
    print(f"{m:>13}" + "".join(f"{correlation(family['grad_cam'].maps[i], family[m].maps[i]):>9}" for i in range(3)))

# %% [markdown]
# Notice: on the zebra, which the network is sure of (0.37), most class maps find the zebra; XGrad-CAM
# takes in the giraffe as well, Ablation-CAM (which asks how much the logit falls without each channel)
# mostly the giraffe, and Eigen-CAM, which knows no class, the giraffe and the leaves. On the malamute
# (0.29) they part ways: Grad-CAM++, Layer-CAM, HiResCAM and Score-CAM sit on the dog; Grad-CAM's averaged
# weights also light up the van behind it; XGrad-CAM goes to the bicycle's wheel, Ablation-CAM to the tree
# and the van. On "sorrel", a class the network gives 0.004, the maps scatter: weak evidence makes
# unstable maps. Eigen-CAM's map of the horses is blank: at this residual layer its projection on $v_1$ is
# negative at every position, so the ReLU leaves nothing (its sign rule was made for activations that
# are never negative; "blank" in the table below).
#
# At the last layer of a pooling + Dense head, $g^{kc}_{ij} = w^c_k / Z$ at every position (section 4), and
# several of them collapse: HiResCAM and XGrad-CAM are Grad-CAM, which is CAM, and Layer-CAM is Grad-CAM++.


# %%
# NBVAL_CHECK_OUTPUT
def at_last_layer(m):
    return helpers.explain(model, trio, m, trio_classes)


last = {m: at_last_layer(m) for m in ("cam", "grad_cam", "hirescam", "xgrad_cam", "grad_cam++", "layer_cam")}
print("HiResCAM == XGrad-CAM == Grad-CAM == CAM:",
      all(np.allclose(last[m], last["cam"], atol=1e-5) for m in ("hirescam", "xgrad_cam", "grad_cam")))
print("Layer-CAM == Grad-CAM++:", np.allclose(last["layer_cam"], last["grad_cam++"], atol=1e-5))

# %% [markdown]
# ## 13. Four Grad-CAM++s
#
# At the last layer of this head every reading of the Grad-CAM++ paper gives the same map. At an
# intermediate layer the gradient varies over the positions, and there the libraries disagree about one
# detail, the normalisation of $\alpha$ (`helpers.METHODS` has all four):
#
# | method | code it follows | $\alpha^{kc}_{ij}$ divided by | $\beta^c_k$ |
# |---|---|---|---|
# | `grad_cam++` | the authors' final code | $\sum_{ij:\, g_{ij} > 0} \alpha^{kc}_{ij}$ | $\sum_{ij} \alpha^{kc}_{ij} \mathrm{ReLU}(g_{ij})$ |
# | `grad_cam++_all` | the authors' first commit, tf-keras-vis | $\sum_{ij} \alpha^{kc}_{ij}$ | the same |
# | `grad_cam++_raw` | pytorch-grad-cam | nothing | the same |
# | `grad_cam++_mean` | xplique | nothing, and $\frac{1}{Z}\sum_{ab} A^k_{ab}$ in eq. 19 | $\frac{1}{Z}\sum_{ij} \alpha^{kc}_{ij} \mathrm{ReLU}(g_{ij})$ |
#
# Only positions with $g_{ij} > 0$ enter $\beta^c_k$, but `grad_cam++_all` divides by a sum over every
# position, and $\alpha^{kc}_{ij}$ can be negative where the denominator of eq. 19 is (for instance where
# $g_{ij} < 0$ and $\sum_{ab} A^k_{ab} > 0$): the sum can come out negative or near zero and flip or blow up
# the weight of a channel whose gradient is mostly positive. Without the normalisation (`_raw`, `_mean`),
# $\beta^c_k$ is a sum over the positions instead of a weighted average, so channels with many positions of
# positive gradient weigh more. The four maps at `block6d_add`:

# %%
VARIANTS = ["grad_cam++", "grad_cam++_all", "grad_cam++_raw", "grad_cam++_mean"]
variants = {m: helpers.explanation(model, trio, m, trio_classes, layer=LAYER) for m in VARIANTS}
panels, titles = [], []
for i in range(len(trio)):
    for m, e in variants.items():
        panels.append((trio[i], e.maps[i]))
        titles.append(label(m, e.classes[i], e.probabilities[i]).replace(": ", "\n"))  # long names: two lines
helpers.show(panels, titles, cols=len(VARIANTS), path=FIGURES / "gradcampp_variants.jpg")

# %% [markdown]
# How alike are they? The correlation of each variant's map with the authors' (over the 224 x 224 pixels),
# at `block6d_add` and at `block6b_expand_activation`, a ReLU6 output ($A \geq 0$) of the same stage:

# %%
# NBVAL_CHECK_OUTPUT
for layer in ("block6d_add", "block6b_expand_activation"):
    e = {m: helpers.explain(model, trio, m, trio_classes, layer=layer) for m in VARIANTS}  # (3, 224, 224) each
    print(f"{layer}, correlation with grad_cam++:\n" + " " * 8 + "".join(f"{m:>17}" for m in VARIANTS[1:]))
    for i, name in enumerate(trio_names):
        r = [np.corrcoef(e["grad_cam++"][i].ravel(), e[m][i].ravel())[0, 1] for m in VARIANTS[1:]]
        print(f"{name:>8}" + "".join(f"{v + 0.0:>17.2f}" for v in np.round(r, 2)))

# %% [markdown]
# Notice: at `block6d_add` the variants disagree, most on the dog, where the unnormalised one lights up the
# background instead of the dog; at the ReLU6 layer they all correlate at 0.99 or more. Where $g \neq 0$,
# eq. 19 reads $\alpha^{kc}_{ij} = 1 / (2 + g_{ij} \sum_{ab} A^k_{ab})$: when $A \geq 0$ and that product is
# small, $\alpha$ is close to $1/2$ everywhere and the normalisations change little. Where activations can be
# negative, as at `block6d_add`, $\sum_{ab} A^k_{ab}$ can be negative too, and $\alpha$ swings from position
# to position, negative or huge where $2 + g_{ij} \sum_{ab} A^k_{ab}$ nears 0. Say which Grad-CAM++ you use.

# %% [markdown]
# ## 14. Several CNNs, one interface
#
# The same call explains EfficientNet-Lite0/1/2 (224, 240 and 260 pixels) and the keras.applications
# networks. MobileNetV2 and MobileNet have real weights in `../shared/models` here; online, Keras
# downloads ImageNet weights for every architecture in `helpers.MODELS`.

# %%
zoo = {name: helpers.load_model(name) for name in ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2")}
for name in ("mobilenet_v2", "mobilenet"):
    if helpers.shared_weights(name):
        zoo[name] = helpers.load_model(name, weights=helpers.shared_weights(name))
    else:
        print(f"{name}: no offline weights here, skipped (online: helpers.load_model({name!r}))")

# %%
panels, titles = [], []
for name, net in zoo.items():
    size = net.inputs[0].shape[1]
    for photo in ("giraffe", "coffee"):
        x = helpers.example(photo, size)
        e = helpers.explanation(net, x, "grad_cam++")
        panels.append((x, e.maps))
        titles.append(f"{name}\n{helpers.title('grad_cam++', e.classes, e.probabilities)}")
helpers.show(panels, titles, cols=6)

# %% [markdown]
# ## 15. Does the map tell the truth? The full tables
#
# Section 8 showed one deletion curve and the sanity check. The papers argue with more numbers; the
# metrics module (re-exported by `helpers`) implements them:
#
# - **Average Drop / Increase in Confidence** (Chattopadhyay et al. 2018, section 5.1): the class
#   probability $Y$ on the photo against $O$ on the photo multiplied by the map. A faithful map keeps
#   the evidence: small drop $\max(0, Y - O)/Y$, often an increase. **Win %**: how often a method's map
#   keeps more of the probability than every other method's.
# - **Deletion / insertion** (Petsiuk et al. 2018): remove (insert) pixels in the order the map ranks
#   them; the area under the probability curve should be small for deletion, large for insertion.
# - **Pointing game** (Zhang et al. 2016): does the peak land in a box around the object? **Energy**: the
#   share of the map inside the box; **IoU**: of the box around the map's high values with the object's.
#
# The boxes below are hand-labelled (x0, y0, x1, y1) on the 224 x 224 crops of the ten photos of section 8.

# %%
BOXES = {  # the object of the top-1 class, labelled by hand
    "coffee": [(30, 20, 200, 185)],
    "eagle": [(45, 15, 200, 224)],
    "dog": [(12, 80, 95, 205)],
    "giraffe": [(95, 90, 180, 185)],
    "chelsea": [(40, 0, 224, 224)],
    "horses": [(0, 60, 224, 200)],
    "person": [(0, 60, 224, 224)],
    "china": [(0, 40, 224, 170)],
    "rocket": [(75, 0, 150, 224)],
    "flower": [(20, 0, 224, 224)],
}

# %% [markdown]
# Score-CAM at the last layer costs 1280 forward passes per photo, too slow for ten photos here, so its row
# is Faster Score-CAM (`channels=256`: the 256 channels that vary most over the positions, tf-keras-vis'
# `max_N`), passed to it through `evaluate`'s `options`.

# %%
boxes = [BOXES[n] for n in EVAL]
methods = FAMILY + ["counterfactual", "random", "centre"]  # the last three: controls
rows = helpers.evaluate(model, eval_photos, methods, eval_classes, boxes, steps=10, progress=True,
                        options={"score_cam": {"channels": 256}})

# %%
# NBVAL_CHECK_OUTPUT
print(helpers.format_table(rows))

# %%
helpers.plot_evaluation(rows, path=FIGURES / "evaluation.png")

# %% [markdown]
# Does Grad-CAM++ beat Grad-CAM, as the paper reports on ImageNet with VGG-16? On these ten photos it does
# on Average Drop, Increase in Confidence and Win, and not on deletion or insertion: read it with the
# caveat that ten photos are an anecdote, not a benchmark. On this pooling + Dense head Grad-CAM equals
# CAM exactly and Grad-CAM++ is CAM without the negative channels, so every difference comes from those
# channels. The controls keep us honest: the counterfactual map (what argues *against* the class) is
# worst on Average Drop; the random map has the *best* deletion score, because scattered deleted pixels
# make images unlike any photo (read deletion together with insertion, where it is worst); and a plain
# centred blob does about as well as the class maps on Average Drop, because the objects fill the
# centre of these crops. A metric is evidence only next to its controls.
#
# The rest of the family (here at the last layer): HiResCAM and XGrad-CAM repeat Grad-CAM's row and Layer-CAM
# repeats Grad-CAM++'s, as they must on this head (section 12). Score-CAM, even with 256 of its 1280
# channels, has the lowest Average Drop and the highest Increase in Confidence, Win and IoU; that is close to
# home, since its weights are the model's confidence on masked photos, much what Average Drop measures.
# Eigen-CAM, which ignores the class, is the worst class map on Average Drop, deletion and insertion. Between
# the other class maps deletion and insertion differ little, and all of them win the pointing game on every
# photo, where even the centred blob scores 0.9: these boxes are large and central.
#
# The sanity check of section 8, block by block (Spearman rank correlation of each map with the trained
# network's, as the network is re-initialised from the output down to that block):

# %%
# NBVAL_CHECK_OUTPUT
print(sanity.table())

# %% [markdown]
# ## 16. Explore: click instead of code
#
# Everything so far is one call of `helpers.explain`. The explorer puts those calls behind buttons: a photo
# (the examples, or upload your own), a class (the top-5, or type any ImageNet name), a method, a layer,
# the opacity, the colours and the signed view, and a compare mode that shows two to four methods side by
# side. Every map method runs in the same compiled pass, so after the first picture a click costs about as
# much as one forward pass; Score-CAM and Ablation-CAM show a progress bar and can be cancelled. The
# explorer needs a live kernel (`python3 tasks.py lab` opens this notebook in JupyterLab with one); on a
# page that only shows the notebook, it looks like this:
#
# ![The explorer comparing Grad-CAM, Grad-CAM++ and CAM on the dog photo](images/explorer.png)
#
# Try: the dog photo, "mountain bike" typed as the class; then the signed view; then `block4c_add` as the
# layer. Your own Keras model works too: `helpers.explore(my_model, photos=[...])`.

# %%
helpers.explore(model)

# %% [markdown]
# ## More to try
#
# 1. Explain "German shepherd" and "Siberian husky" on the dog photo: do the maps differ?
# 2. Pass `layer="block5c_add"` to `explain` for the giraffe. Where does the zebra map move?
# 3. Make a photo of your own with two ImageNet objects and find the class whose counterfactual points at
#    the other.
# 4. Run `helpers.explain` on `helpers.load_model("efficientnet_b0", weights=None)` with a guided method.
#    Read the error. Why is there no guided rule for swish?
# 5. Compute Average Drop for `1 - map` and compare with the map itself.
# 6. Train the network of section 2 with the mark on a random half of each class,
#    `shortcut.train(seed=0, mark="random", epochs=15)`, so that it says nothing about the label. Does it
#    learn the digits now? Where does Grad-CAM look on a marked 3?
#
# ## References
#
# - B. Zhou, A. Khosla, A. Lapedriza, A. Oliva, A. Torralba. *Learning Deep Features for Discriminative
#   Localization.* CVPR 2016.
# - R. R. Selvaraju, M. Cogswell, A. Das, R. Vedantam, D. Parikh, D. Batra. *Grad-CAM: Visual Explanations
#   from Deep Networks via Gradient-based Localization.* ICCV 2017.
# - A. Chattopadhyay, A. Sarkar, P. Howlader, V. N. Balasubramanian. *Grad-CAM++: Improved Visual
#   Explanations for Deep Convolutional Networks.* WACV 2018.
# - J. T. Springenberg, A. Dosovitskiy, T. Brox, M. Riedmiller. *Striving for Simplicity: The All
#   Convolutional Net.* ICLR workshop 2015.
# - J. R. Zech, M. A. Badgeley, M. Liu, A. B. Costa, J. J. Titano, E. K. Oermann. *Variable generalization
#   performance of a deep learning model to detect pneumonia in chest radiographs: a cross-sectional
#   study.* PLOS Medicine 2018.
# - R. Geirhos, J.-H. Jacobsen, C. Michaelis, R. Zemel, W. Brendel, M. Bethge, F. A. Wichmann. *Shortcut
#   learning in deep neural networks.* Nature Machine Intelligence 2020.
# - P.-T. Jiang, C.-B. Zhang, Q. Hou, M.-M. Cheng, Y. Wei. *LayerCAM: Exploring Hierarchical Class
#   Activation Maps for Localization.* IEEE Transactions on Image Processing 2021.
# - R. L. Draelos, L. Carin. *Use HiResCAM instead of Grad-CAM for faithful explanations of convolutional
#   neural networks.* arXiv:2011.08891, 2020.
# - R. Fu, Q. Hu, X. Dong, Y. Guo, Y. Gao, B. Li. *Axiom-based Grad-CAM: Towards Accurate Visualization and
#   Explanation of CNNs.* BMVC 2020.
# - M. B. Muhammad, M. Yeasin. *Eigen-CAM: Class Activation Map using Principal Components.* IJCNN 2020.
# - H. Wang, Z. Wang, M. Du, F. Yang, Z. Zhang, S. Ding, P. Mardziel, X. Hu. *Score-CAM: Score-Weighted
#   Visual Explanations for Convolutional Neural Networks.* CVPR workshops 2020.
# - S. Desai, H. G. Ramaswamy. *Ablation-CAM: Visual Explanations for Deep Convolutional Network via
#   Gradient-free Localization.* WACV 2020.
# - A. Odena, V. Dumoulin, C. Olah. *Deconvolution and Checkerboard Artifacts.* Distill 2016.
# - V. Petsiuk, A. Das, K. Saenko. *RISE: Randomized Input Sampling for Explanation of Black-box Models.*
#   BMVC 2018.
# - J. Zhang, Z. Lin, J. Brandt, X. Shen, S. Sclaroff. *Top-down Neural Attention by Excitation Backprop.*
#   ECCV 2016.
# - J. Adebayo, J. Gilmer, M. Muelly, I. Goodfellow, M. Hardt, B. Kim. *Sanity Checks for Saliency Maps.*
#   NeurIPS 2018.
