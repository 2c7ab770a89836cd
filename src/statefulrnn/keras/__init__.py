"""Keras interop: load a Keras recurrent model and run it statefully, same numbers.

    model = sr.from_keras("model.keras")        # or legacy "model.h5", or "model.weights.h5"
    y, state = model(x)                          # x [B, T, F] -> y [B, T, O], like StatefulRNN
    print(model.describe())                      # each layer and the path it takes

Reads files with zipfile, json and h5py only (`pip install h5py`); needs no
TensorFlow or Keras, and never executes or unpickles anything from the file. Supported:
InputLayer, SimpleRNN, LSTM, GRU (reset_after True or False), stacked recurrent layers, Dense
and TimeDistributed(Dense) heads, Dropout (off at inference) and Activation; activations tanh,
sigmoid, hard_sigmoid (Keras 2 or 3 definition, by the version that wrote the file), relu,
linear (and softmax on heads); use_bias on or off; Sequential and single-chain functional models.

statefulrnn models give one output per step. A Keras model whose last recurrent layer has
`return_sequences=False` gives one output per sequence: it equals `y[:, -1]` here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from statefulrnn.keras.cells import fused_reason
from statefulrnn.keras.convert import RECURRENT, convert
from statefulrnn.keras.model import KerasRNN
from statefulrnn.keras.reader import KerasFile, KerasImportError, read_keras

__all__ = ["KerasImportError", "KerasRNN", "from_keras", "read_keras"]


def from_keras(
    path: str | Path,
    *,
    config: str | Path | dict[str, Any] | None = None,
    path_choice: str = "auto",
    keras_version: str | None = None,
    dtype: torch.dtype = torch.float32,
    device=None,
) -> KerasRNN:
    """A `KerasRNN` with the Keras model's weights and numerics, in eval mode.

    path          a `.keras` archive, a legacy full-model `.h5`, or a `.weights.h5`
    config        for weights-only files: the `.keras`/`.json` holding the architecture
                  (default: `NAME.keras`, `NAME.json`, ... beside the weights)
    path_choice   "auto": fused PyTorch kernels where the layer's options allow it exactly,
                  the step-by-step path elsewhere; "step": the step path everywhere
    keras_version overrides the version the file records (it decides `hard_sigmoid`)
    """
    if path_choice not in ("auto", "step"):
        raise ValueError(f"path_choice must be 'auto' or 'step'; received {path_choice!r}.")
    file: KerasFile = read_keras(path, config=config)
    input_size, specs, weights = convert(file, keras_version=keras_version)
    for spec in specs:
        if spec["type"] in RECURRENT:
            fused = path_choice == "auto" and fused_reason(spec) is None
            spec["path"] = "fused" if fused else "step"
    model = KerasRNN(input_size, specs, device=device, dtype=dtype)
    model.load_keras_weights(weights)
    model.source = {
        "file": str(path),
        "format": file.file_format,
        "keras_version": keras_version or file.keras_version,
        "config": file.config_source,
    }
    return model.eval()
