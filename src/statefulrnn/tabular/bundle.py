"""What a model trained from a table keeps beside its weights, in `extra.json`.

    MODEL_DIR/
      weights.safetensors, model.json   the model (model/base.py)
      extra.json                        {"bundle": scaling, loss link, names, mode, window
                                         (statefulrnn.bundle.ModelBundle, shared by every
                                         entry point), "table": columns and horizon,
                                         "read": fill/drop/sort, "train": the resolved config}
      history.json                      one record per epoch
      summary.json                      validation metrics in both prediction modes

Plain JSON, so a new table is read, scaled and un-scaled exactly as the training table was.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from statefulrnn.bundle import ModelBundle
from statefulrnn.bundle import load_bundle as load_model_bundle
from statefulrnn.data.columns import TableSpec
from statefulrnn.data.scaling import Scaling
from statefulrnn.model import RecurrentModel, load_extra

FORMAT = "statefulrnn-table/1"


@dataclass(frozen=True)
class Bundle:
    """A table model: the ModelBundle (network and units) plus how tables are read."""

    core: ModelBundle
    spec: TableSpec
    read: dict[str, Any]  # fill, drop, sort as used in training
    train: dict[str, Any]  # the resolved training config

    @property
    def model(self) -> RecurrentModel:
        return self.core.model

    @property
    def scaling(self) -> Scaling | None:
        return self.core.scaling

    @property
    def loss(self) -> str:
        return self.core.loss

    @property
    def window(self) -> int:
        return int(self.core.window or self.train.get("window", 50))


def extra_for(spec: TableSpec, core: ModelBundle, read: dict[str, Any], train: dict[str, Any]):
    return {
        "format": FORMAT,
        "bundle": core.info(),
        "scaling": core.info()["scaling"],  # also at the top, as models before bundles had it
        "table": asdict(spec),
        "read": read,
        "train": train,
    }


def load_bundle(model_dir: str | Path) -> Bundle:
    core = load_model_bundle(model_dir)
    extra = load_extra(model_dir)
    if extra.get("format") != FORMAT:
        raise ValueError(
            f"{model_dir}: this model was not trained from a table (its extra.json has no "
            "table columns or scaling). Train one with `statefulrnn train DATA ... --out DIR`."
        )
    t = extra["table"]
    spec = TableSpec(
        features=tuple(t["features"]),
        targets=tuple(t["targets"]),
        id=t.get("id"),
        time=t.get("time"),
        weight=t.get("weight"),
        horizon=int(t.get("horizon", 0)),
    )
    return Bundle(core, spec, extra["read"], extra["train"])
