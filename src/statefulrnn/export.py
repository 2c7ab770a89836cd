"""Export a model's single step to ONNX, with the state as explicit inputs and outputs.

Knows the RecurrentModel interface only (forward, state_spec); needs the optional `onnx`
extra (`pip install onnx onnxruntime`). The exported graph is what a stream server runs
without Python, one call per step, carrying the state itself:

    inputs:   x [B, F],  h [L, B, H] (, c [L, B, H] for LSTM)      one tensor per state name
    outputs:  y [B, O],  h_next [L, B, H] (, c_next [L, B, H])     B is dynamic

Exported from a `ModelBundle` (`bundle.export_onnx(path)`, or `export_onnx(model, path,
bundle=...)`), the graph works in the user's units: x is standardized inside it, and y goes
through the loss's link (sigmoid for bce, softmax for ce) and the target scaling, so it equals
`bundle.stream_pool().step(...)`. The state tensors stay the network's (opaque to the user).
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from statefulrnn.model.state import State

if TYPE_CHECKING:  # model.base calls this module (RecurrentModel.export_onnx), not the reverse
    from statefulrnn.bundle import ModelBundle
    from statefulrnn.model.base import RecurrentModel

OPSET = 17

# The legacy (TorchScript) exporter is the one that needs no extra packages (the newer one
# wants onnxscript); these are the warnings it gives for this graph, all understood:
QUIET = [
    (DeprecationWarning, r".*legacy TorchScript-based ONNX export.*"),
    (DeprecationWarning, r"The feature will be removed.*"),
    # nn.LSTM's forward checks its input with Python bools; they are shape checks, constant
    # for every batch, so the trace is right for any batch size (the test runs a different B)
    (torch.jit.TracerWarning, r"Converting a tensor to a Python boolean.*"),
    # advice to pass h0/c0 as inputs: which is what this export does
    (UserWarning, r"Exporting a model to ONNX with a batch_size other than 1.*"),
]


class _Step(nn.Module):
    """forward(x [B, F], *state) -> (y [B, O], *next_state): one step of `model`."""

    def __init__(self, model: RecurrentModel, names: tuple[str, ...]):
        super().__init__()
        self.model, self.names = model, names

    def forward(self, x: Tensor, *state: Tensor):
        y, new = self.model(x.unsqueeze(1), State(tuple(state), self.names))
        return (y[:, 0], *new.tensors)


class _UserStep(nn.Module):
    """_Step in the user's units: x standardized on the way in, y linked and unscaled out
    (the bundle's numbers held as buffers, so they are constants of the graph)."""

    x_mean: Tensor  # the buffers registered in __init__, named for the type checker
    x_std: Tensor
    y_mean: Tensor
    y_std: Tensor

    def __init__(self, step: _Step, bundle: ModelBundle, dtype: torch.dtype):
        super().__init__()
        self.step, self.link = step, bundle.link
        f, o = bundle.model.input_size, bundle.model.output_size
        sc = bundle.scaling
        x_mean, x_std = (sc.x.mean, sc.x.std) if sc is not None else ([0.0] * f, [1.0] * f)
        y = sc.y if sc is not None and sc.y is not None else None
        y_mean, y_std = (y.mean, y.std) if y is not None else ([0.0] * o, [1.0] * o)
        for name, v in (("x_mean", x_mean), ("x_std", x_std), ("y_mean", y_mean), ("y_std", y_std)):
            self.register_buffer(name, torch.tensor([float(a) for a in v], dtype=dtype))

    def forward(self, x: Tensor, *state: Tensor):
        y, *new = self.step((x - self.x_mean) / self.x_std, *state)
        if self.link == "sigmoid":
            y = torch.sigmoid(y)
        elif self.link == "softmax":
            y = torch.softmax(y, -1)
        return (y * self.y_std + self.y_mean, *new)


def export_onnx(
    model: RecurrentModel,
    path: str | Path,
    *,
    batch_size: int = 2,
    opset: int = OPSET,
    bundle: ModelBundle | None = None,
) -> Path:
    """Write `model`'s single step to `path` (.onnx): inputs x and the state, outputs y and
    the next state (names: "x", each state name, "y", each name + "_next"). Returns the path.
    With `bundle` (whose model is `model`), x and y are in the user's units."""
    if bundle is not None and bundle.model is not model:
        raise ValueError("export_onnx: the bundle holds another model than the one to export.")
    try:
        import onnx  # noqa: F401  (the exporter needs it)
    except ImportError:
        raise ImportError(
            "ONNX export needs the onnx package: pip install onnx onnxruntime."
        ) from None
    names = model.state_spec()[1]
    state = model.zero_state(batch_size).tensors
    x = torch.zeros(batch_size, model.input_size, device=model.device, dtype=model.dtype)
    inputs = ["x", *names]
    outputs = ["y", *(f"{n}_next" for n in names)]
    batch_axis = {"x": {0: "batch"}, "y": {0: "batch"}}
    batch_axis.update({n: {1: "batch"} for n in [*names, *outputs[1:]]})
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")  # written whole, then renamed into place
    was_training = model.training
    model.eval()
    try:
        with warnings.catch_warnings():
            for category, message in QUIET:
                warnings.filterwarnings("ignore", message=message, category=category)
            step: nn.Module = _Step(model, names)
            if bundle is not None:
                step = _UserStep(step, bundle, model.dtype)  # type: ignore[arg-type]
            torch.onnx.export(
                step,
                (x, *state),
                str(tmp),
                input_names=inputs,
                output_names=outputs,
                dynamic_axes=batch_axis,
                opset_version=opset,
                dynamo=False,
            )
        os.replace(tmp, path)
    finally:
        model.train(was_training)
        tmp.unlink(missing_ok=True)
    return path
