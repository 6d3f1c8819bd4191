"""Your own model from a file, loaded safely: `.keras` archives and `.weights.h5` weights.

A `.keras` file (Keras 3's `model.save("model.keras")`, under any backend: TensorFlow,
JAX or PyTorch) holds the architecture as JSON and the weights as HDF5. Loading it runs
no code of the file's author unless the file asks for code (a `Lambda` layer stores
Python bytecode); Keras refuses such a file in its safe mode, and so do we, saying why,
unless the caller passes `unsafe=True` (the command line's `--unsafe`) because they
trust whoever made the file. Even then, Keras only imports classes and functions from
Keras itself or registered with `keras.saving.register_keras_serializable`, such as this
project's `Preprocess` layer (registered when `camlib.models` is imported, below).

A `.weights.h5` file holds weights only: the architecture comes from `arch`, a name in
`models.MODELS`, built here and filled with the file's weights.

Every failure is a `ModelFileError` (a ValueError) or a FileNotFoundError whose message
says what to do, never a raw h5py or zipfile traceback.
"""

from __future__ import annotations

import warnings
import zipfile
from pathlib import Path

import keras

from camlib import models  # noqa: F401  (also registers Preprocess, so files that use it load)

KERAS, WEIGHTS = ".keras", ".weights.h5"


class ModelFileError(ValueError):
    """A model file that cannot be loaded, with the reason and what to do about it."""


class UnsafeModelError(ModelFileError):
    """A `.keras` file that would run its author's Python code when loaded (a Lambda layer)."""


def load_model_file(path: str | Path, unsafe: bool = False, arch: str | None = None) -> keras.Model:
    """A Keras model from `path`: a `.keras` file, or a `.weights.h5` file with `arch`.

    unsafe: allow `.keras` files with code in them (Lambda layers); only for files you trust.
    arch: for a `.weights.h5` file, the architecture (a name in `models.MODELS`).
    """
    path = Path(path)
    kind = _kind(path)
    if not path.exists():
        raise FileNotFoundError(f"no model file at {path}: check the path (a {kind} file)")
    if not path.is_file():
        raise ModelFileError(f"{path} is a folder, not a {kind} file (a SavedModel folder? see the Keras 3 docs)")
    if kind == WEIGHTS:
        return _from_weights(path, arch)
    if arch is not None:
        raise ModelFileError(f"{path} holds its own architecture; --arch (arch=) is only for {WEIGHTS} files")
    return _from_keras(path, unsafe)


def _kind(path: Path) -> str:
    """The format, KERAS or WEIGHTS, from the file's name; any other name raises, saying
    what that file probably is and how to make one Keras 3 reads."""
    name = path.name.lower()
    if name.endswith(WEIGHTS):
        return WEIGHTS
    if name.endswith(KERAS):
        return KERAS
    if name.endswith((".h5", ".hdf5")):
        hint = (
            "a legacy HDF5 file (Keras 2's model.save('x.h5')): load it where it was made and save it again "
            f"with model.save('model{KERAS}'); if it holds weights only, save them with "
            f"model.save_weights('model{WEIGHTS}') and pass --arch"
        )
    elif path.is_dir() or path.suffix in (".pb", ""):
        hint = f"a TensorFlow SavedModel? Keras 3 loads only {KERAS} files: re-save it with model.save('model{KERAS}')"
    else:
        hint = f"not a Keras model format (a {path.suffix} file)"
    raise ModelFileError(
        f"{path}: {hint}. Give a {KERAS} file (model.save('model{KERAS}')) or a {WEIGHTS} file with --arch NAME"
    )


def _from_keras(path: Path, unsafe: bool) -> keras.Model:
    """Load a `.keras` archive (a zip of config.json, metadata.json, model.weights.h5)."""
    if not zipfile.is_zipfile(path):  # Keras would say "File not found" about a truncated file
        raise ModelFileError(
            f"{path} is not a {KERAS} archive (not a zip file): it is truncated, corrupt or another format. "
            f"Copy it again or save it again with model.save('model{KERAS}')"
        )
    try:
        with zipfile.ZipFile(path) as archive:
            missing = {"config.json", "model.weights.h5"} - set(archive.namelist())
            broken = archive.testzip()  # the first member whose checksum fails, or None
    except (zipfile.BadZipFile, OSError) as e:
        raise ModelFileError(f"{path} is a damaged {KERAS} archive ({e}); copy or save it again") from e
    if missing or broken:
        what = f"lacks {sorted(missing)}" if missing else f"has a damaged member {broken!r}"
        raise ModelFileError(f"{path} {what}: it is not a complete {KERAS} file; copy or save it again")
    try:
        return keras.saving.load_model(path, compile=False, safe_mode=not unsafe)
    except Exception as e:
        raise _explained(path, e) from e


def _explained(path: Path, error: Exception) -> ModelFileError:
    """Keras' loading error, reduced to its innermost reason and said in plain words."""
    reason = str(error).rsplit("Exception encountered: ", 1)[-1].strip()  # Keras nests one per layer
    if "Lambda" in reason and "safe_mode" in reason:
        return UnsafeModelError(
            f"{path} contains a Lambda layer, i.e. Python code that would run on this machine, so it is refused. "
            "If you trust whoever made the file, load it with --unsafe (unsafe=True); otherwise ask for a "
            "version without Lambda layers (a registered custom layer instead)"
        )
    if reason.startswith("Could not locate"):
        what = reason.split(".")[0].removeprefix("Could not locate ")
        return ModelFileError(
            f"{path} uses {what}, which is neither part of Keras nor of this project, so it cannot be "
            "built here: import the module that defines it (registered with "
            "@keras.saving.register_keras_serializable) and load it with load_model_file in Python"
        )
    first = reason.splitlines()[0] if reason else type(error).__name__
    return ModelFileError(f"{path} could not be loaded as a Keras model: {first}")


def _from_weights(path: Path, arch: str | None) -> keras.Model:
    """Build `arch` and fill it with the weights in `path`."""
    if arch is None:
        raise ModelFileError(
            f"{path} holds weights only: say which architecture they belong to with --arch NAME (arch=), "
            f"one of {models.MODELS}"
        )
    if arch not in models.MODELS:
        raise ModelFileError(f"unknown architecture {arch!r} for {path}; choose from {models.MODELS}")
    try:
        with warnings.catch_warnings():  # Keras warns once per layer that did not fit, then raises
            warnings.simplefilter("ignore")
            return models.load_model(arch, weights=path)
    except Exception as e:  # h5py's OSError for a corrupt file, Keras' ValueError for a mismatch
        text = " ".join(str(e).split("List of objects")[0].split()) or type(e).__name__  # without the layer list
        if isinstance(e, OSError) or "signature" in text or "truncated" in text:
            raise ModelFileError(f"{path} is not a readable HDF5 weights file ({text}); copy or save it again") from e
        raise ModelFileError(
            f"the weights in {path} do not fit the architecture {arch!r} ({text}); is --arch right?"
        ) from e
