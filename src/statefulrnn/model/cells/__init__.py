"""Which recurrent cells exist: one `CellSpec` per cell, read by everything that lists cells.

The model (`model/rnn.py`), the stream kernels (`streams/fused.py`), ONNX export, the CLI's
`--cell` choices, the sweep space and the Keras importer all ask this table; none keeps a list
of its own. Adding a cell is one entry here, its torch layer (a module of this package when
PyTorch has none), a numpy step in `reference.py` (the tests' oracle: the package never
imports it, so the registry cannot point at it; `tests/test_cells.py` checks that every entry
has one) and tests, which are parametrized over `names()`.

Knows cell names and where their torch layers live; imports neither torch nor numpy, so
listing the cells (e.g. for `statefulrnn train --help`) costs nothing. `build_layer` imports
a cell's layer module when a model is built.

Every cell's torch layer has PyTorch's recurrent-module interface, one layer, batch first:

    layer = Class(input_size, hidden_size, batch_first=True, device=..., dtype=...)
    out, hn = layer(x, hx)    x [B, T, F] -> out [B, T, H];  hx, hn: None (zeros) | one
                              [1, B, H] tensor (one state part) | a tuple of them (several)

and keeps its input weights as `weight_ih_l0 [gates * H, F]` (plus `bias_ih_l0`, and the
recurrent `weight_hh_l0`, `bias_hh_l0` where the cell has them), which is what the numpy
reference and the Keras mapping read.
"""

from __future__ import annotations

import difflib
import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch
    from torch import nn


@dataclass(frozen=True)
class CellSpec:
    """One recurrent cell: what its state is and where each piece of code for it lives."""

    name: str  # what `cell=` and `--cell` take
    summary: str  # one line for help texts
    state: tuple[str, ...]  # the state's tensors, each [layers, B, hidden]: ("h",), ("h", "c")
    gates: int  # gate blocks stacked in weight_ih_l0 ([gates * hidden, input])
    layer: str  # "module:Class" of the one-layer torch module (interface in the docstring)
    packed: bool = False  # the layer takes a PackedSequence (final_state in one packed pass)
    fast_stream: bool = False  # streams/fused.py has an in-place step for it; else model.forward
    keras: str | None = None  # the Keras layer class with the same equations; None: none has
    sweep: bool = True  # one of the default sweep space's `cell` choices

    def layer_class(self) -> type[nn.Module]:
        """The torch module class (imports its module)."""
        module, _, attr = self.layer.partition(":")
        cls: type[nn.Module] = getattr(importlib.import_module(module), attr)
        return cls

    def build_layer(
        self,
        input_size: int,
        hidden_size: int,
        *,
        device: Any = None,
        dtype: torch.dtype | None = None,
        **options: Any,
    ) -> nn.Module:
        """One layer of this cell, batch first (`options`: e.g. `bias=` for PyTorch's)."""
        return self.layer_class()(
            input_size, hidden_size, batch_first=True, device=device, dtype=dtype, **options
        )

    def keras_class(self) -> str:
        """The Keras layer class for this cell, or a ValueError saying Keras has none."""
        if self.keras is None:
            with_keras = [s.keras for s in CELLS.values() if s.keras]
            raise ValueError(
                f"cell {self.name!r} has no Keras counterpart (Keras has {', '.join(with_keras)}); "
                "a Keras file cannot hold it and from_keras cannot build it."
            )
        return self.keras


CELLS: dict[str, CellSpec] = {}


def register(spec: CellSpec) -> CellSpec:
    """Add a cell to the registry (its name must be new)."""
    if spec.name in CELLS:
        raise ValueError(f"cell {spec.name!r} is already registered.")
    CELLS[spec.name] = spec
    return spec


def names() -> tuple[str, ...]:
    """Every registered cell name, in registration order."""
    return tuple(CELLS)


def sweep_names() -> list[str]:
    """The cells a sweep tries by default."""
    return [s.name for s in CELLS.values() if s.sweep]


def get(name: str) -> CellSpec:
    """The spec of cell `name`, or a ValueError listing the cells (and the nearest name)."""
    spec = CELLS.get(name) if isinstance(name, str) else None
    if spec is None:
        near = difflib.get_close_matches(str(name), CELLS, n=1)
        hint = f" Did you mean {near[0]!r}?" if near else ""
        raise ValueError(f"cell must be one of {list(CELLS)}; received {name!r}.{hint}")
    return spec


def by_keras(class_name: str) -> CellSpec | None:
    """The cell with this Keras layer class, or None."""
    return next((s for s in CELLS.values() if s.keras == class_name), None)


def keras_classes() -> dict[str, CellSpec]:
    """Keras recurrent layer class -> the cell with the same equations."""
    return {s.keras: s for s in CELLS.values() if s.keras is not None}


# ------------------------------------------------------------------ the cells
register(
    CellSpec(
        "lstm",
        "LSTM (PyTorch's fused nn.LSTM)",
        state=("h", "c"),
        gates=4,
        layer="torch.nn:LSTM",
        packed=True,
        fast_stream=True,
        keras="LSTM",
    )
)
register(
    CellSpec(
        "gru",
        "GRU (PyTorch's fused nn.GRU; Keras reset_after=True)",
        state=("h",),
        gates=3,
        layer="torch.nn:GRU",
        packed=True,
        fast_stream=True,
        keras="GRU",
    )
)
register(
    CellSpec(
        "rnn",
        "tanh RNN (PyTorch's fused nn.RNN)",
        state=("h",),
        gates=1,
        layer="torch.nn:RNN",
        packed=True,
        fast_stream=True,
        keras="SimpleRNN",
        sweep=False,
    )
)
register(
    CellSpec(
        "mingru",
        "minGRU (Feng et al. 2024): gates from x only, a parallel scan over each chunk",
        state=("h",),
        gates=2,
        layer="statefulrnn.model.cells.mingru:MinGRU",
    )
)
