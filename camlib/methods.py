"""The CAM family: what makes each method different, a few lines beside its equation.

Every method here makes one map per image and class from the target layer's activations
A (N, h, w, c), the gradient G = d logit / dA (N, h, w, c) and, for CAM, the classifier's
column of the class (N, c):

    map = ReLU(sum_k w_k A_k)        upsampled to the image and divided by its maximum

and the methods differ only in the weights w: one per channel (N, c), or one per
position and channel (N, h, w, c) for Layer-CAM and HiResCAM. `WEIGHTS` is the table the
engine runs. Score-CAM and Ablation-CAM weigh channels by what the model says when it
sees them (`score_cam_weights`, `ablation_cam_weights`); `perturbation.py` runs the
forward passes they need.
"""

from __future__ import annotations

import tensorflow as tf

# ---------------------------------------------------------------------------
# Gradient and activation methods: weights(A, G, column) -> w


def cam_weights(A, G, column):
    """CAM (Zhou et al. 2016, eq. 2-3): w_k^c is the classifier weight of channel k."""
    return column


def grad_cam_weights(A, G, column):
    """Grad-CAM (Selvaraju et al. 2017, eq. 1): alpha_k^c = 1/Z sum_ij dy^c / dA^k_ij."""
    return tf.reduce_mean(G, axis=(1, 2))


def counterfactual_weights(A, G, column):
    """Counterfactual (Selvaraju et al. 2017, section 6.1): Grad-CAM of the negated gradients,
    the regions whose removal would make the network more confident of the class."""
    return -tf.reduce_mean(G, axis=(1, 2))


def _grad_cam_pp_alpha(A, G, A_total):
    """alpha_ij^kc = g^2 / (2 g^2 + A_total g^3) (Chattopadhyay et al. 2018, eq. 19 with the
    exponential score Y = exp(S): exp(S) cancels), 0 where the denominator is 0."""
    g2 = G * G
    return tf.math.divide_no_nan(g2, 2.0 * g2 + A_total * g2 * G)


def grad_cam_pp_weights(A, G, column):
    """Grad-CAM++ (Chattopadhyay et al. 2018, eq. 19 and 10), as the authors' final code.

        alpha_ij^kc = g_ij^2 / (2 g_ij^2 + sum_ab A_ab^k g_ij^3)          (eq. 19)
        w_k^c       = sum_ij alpha_ij^kc ReLU(g_ij) / sum_{ij: g_ij > 0} alpha_ij^kc   (eq. 10)

    With Y = exp(S) the higher derivatives are powers of g = dS/dA; exp(S) cancels in alpha
    and is one positive factor per map in w, which the scaling removes (it would overflow
    for logits above 88). The authors' last commit ("improved heatmap generation",
    adityac94/Grad_CAM_plus_plus misc/utils.py) normalises alpha over the positions where
    the gradient is positive (dividing by 1 where there are none); `grad_cam_pp_all_weights`
    is their first commit. On a global-average-pooling head g is constant over positions,
    alpha is 1/Z after either normalisation, and both give ReLU(sum_k ReLU(w_k^c) A_k).
    """
    alpha = _grad_cam_pp_alpha(A, G, tf.reduce_sum(A, axis=(1, 2), keepdims=True))  # (N, h, w, c)
    positive = tf.cast(G > 0, G.dtype)
    total = tf.reduce_sum(alpha * positive, axis=(1, 2), keepdims=True)  # (N, 1, 1, c)
    alpha = alpha / tf.where(total == 0, tf.ones_like(total), total)
    return tf.reduce_sum(alpha * tf.nn.relu(G), axis=(1, 2))


def grad_cam_pp_all_weights(A, G, column):
    """Grad-CAM++ with alpha normalised over all positions (the authors' first commit, and
    tf-keras-vis): a negative alpha where g < 0 can flip a channel's weight negative."""
    alpha = _grad_cam_pp_alpha(A, G, tf.reduce_sum(A, axis=(1, 2), keepdims=True))
    alpha = tf.math.divide_no_nan(alpha, tf.reduce_sum(alpha, axis=(1, 2), keepdims=True))
    return tf.reduce_sum(alpha * tf.nn.relu(G), axis=(1, 2))


def grad_cam_pp_raw_weights(A, G, column):
    """Grad-CAM++ with alpha not normalised (pytorch-grad-cam): w = sum_ij alpha ReLU(g)."""
    alpha = _grad_cam_pp_alpha(A, G, tf.reduce_sum(A, axis=(1, 2), keepdims=True))
    return tf.reduce_sum(alpha * tf.nn.relu(G), axis=(1, 2))


def grad_cam_pp_mean_weights(A, G, column):
    """Grad-CAM++ as xplique writes it: the spatial mean of A in alpha's denominator and the
    spatial mean of alpha ReLU(g) as the weight."""
    alpha = _grad_cam_pp_alpha(A, G, tf.reduce_mean(A, axis=(1, 2), keepdims=True))
    return tf.reduce_mean(alpha * tf.nn.relu(G), axis=(1, 2))


def layer_cam_weights(A, G, column):
    """Layer-CAM (Jiang et al. 2021, eq. 5): w_ij^kc = ReLU(g_ij^kc), one weight per position."""
    return tf.nn.relu(G)


def hirescam_weights(A, G, column):
    """HiResCAM (Draelos & Carin 2020, eq. 5): the gradient itself, elementwise, no spatial
    mean: the map is the exact contribution of each position to the logit (before ReLU)."""
    return G


def xgrad_cam_weights(A, G, column):
    """XGrad-CAM (Fu et al. 2020, eq. 9): alpha_k = sum_ij (A_ij^k / sum_ab A_ab^k) g_ij^k;
    0 for a channel that is zero everywhere (no NaN)."""
    return tf.math.divide_no_nan(tf.reduce_sum(A * G, axis=(1, 2)), tf.reduce_sum(A, axis=(1, 2)))


def eigen_cam_weights(A, G, column):
    """Eigen-CAM (Muhammad & Yeasin 2020, eq. 5): project A, as an (hw x c) matrix, on its
    first right singular vector v_1: map = A v_1. Class-agnostic.

    A is not centred (the paper's SVD of the activations; pytorch-grad-cam centres each
    channel first, which shifts the map by a constant). The sign of a singular vector is
    arbitrary (pytorch-grad-cam issue #315: its maps can light up the background), so v_1
    is flipped to make the map agree with sum_k A_k.
    """
    n, h, w, c = tf.unstack(tf.shape(A))
    M = tf.reshape(A, (n, h * w, c))  # (N, hw, c)
    _, _, v = tf.linalg.svd(M, full_matrices=False)  # v: (N, c, min(hw, c))
    v1 = v[:, :, 0]  # (N, c)
    agreement = tf.reduce_sum(tf.einsum("npc,nc->np", M, v1) * tf.reduce_sum(M, axis=2), axis=1)  # (N,)
    return v1 * tf.where(agreement < 0, -1.0, 1.0)[:, None]


WEIGHTS = {
    "cam": cam_weights,
    "grad_cam": grad_cam_weights,
    "grad_cam++": grad_cam_pp_weights,
    "counterfactual": counterfactual_weights,
    "layer_cam": layer_cam_weights,
    "hirescam": hirescam_weights,
    "xgrad_cam": xgrad_cam_weights,
    "eigen_cam": eigen_cam_weights,
    "grad_cam++_all": grad_cam_pp_all_weights,
    "grad_cam++_raw": grad_cam_pp_raw_weights,
    "grad_cam++_mean": grad_cam_pp_mean_weights,
}
NO_GRADIENT = ("cam", "eigen_cam")  # need no backward pass

# ---------------------------------------------------------------------------
# Perturbation methods: weights from the model's answers


def score_cam_weights(probabilities):
    """Score-CAM (Wang et al. 2020, eq. 6-7, as the authors' code): the weight of channel k
    is the softmax probability of the class for the input X * H_k, where H_k is A_k
    upsampled and min-max scaled to [0, 1] (probabilities (N, c) -> w (N, c))."""
    return probabilities


def ablation_cam_weights(score, ablated):
    """Ablation-CAM (Desai & Ramaswamy 2020, eq. 3): w_k = (y_c - y_c^k) / y_c, y_c the logit
    and y_c^k the logit with A_k set to zero (score (N, 1), ablated (N, c) -> w (N, c));
    0 where y_c is 0 (no NaN)."""
    return tf.math.divide_no_nan(score - ablated, score)


# ---------------------------------------------------------------------------
# From weights to a map


def weighted_map(A, w, relu: bool = True):
    """ReLU(sum_k w_k A_k) (Selvaraju et al. eq. 2): (N, h, w, c) x (N, c) or (N, h, w, c) -> (N, h, w)."""
    m = tf.reduce_sum(A * w, axis=-1) if len(w.shape) == 4 else tf.einsum("nhwc,nc->nhw", A, w)
    return tf.nn.relu(m) if relu else m


def upsample_and_scale(maps, size, signed=False):
    """(N, h, w) maps -> (N, H, W), bilinear, each divided by its maximum (|maximum| when
    signed, a bool or a boolean tensor), so it lies in [0, 1] ([-1, 1]); an all-zero map
    stays all zero, never NaN."""
    up = tf.image.resize(maps[..., None], size, method="bilinear")[..., 0]
    peak = tf.reduce_max(tf.where(signed, tf.abs(up), up), axis=(1, 2), keepdims=True)
    return tf.math.divide_no_nan(up, peak)


def fuse_layer_maps(maps, gamma: float = 2.0):
    """Layer-CAM's fusion across layers (Jiang et al. 2021, section 3.3): maps (L, ..., S, S)
    from the deepest layer first, each in [0, 1]; the shallower ones are scaled with
    tanh(gamma M / max M) to tame their noise, then all are fused by the elementwise
    maximum and scaled to [0, 1] again."""
    deepest, shallow = maps[:1], tf.tanh(gamma * maps[1:])  # maps are already M / max M
    fused = tf.reduce_max(tf.concat([deepest, shallow], axis=0), axis=0)
    peak = tf.reduce_max(fused, axis=(-2, -1), keepdims=True)
    return tf.math.divide_no_nan(fused, peak)
