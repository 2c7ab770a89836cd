"""What a model trained from a table keeps beside its weights, in `extra.json`.

    MODEL_DIR/
      weights.safetensors, model.json   the model (model/base.py)
      extra.json                        {"table": columns and horizon, "read": fill/drop/sort,
                                         "scaling": means and stds, "train": the resolved config}
      history.json                      one record per epoch
      summary.json                      validation metrics in both prediction modes

Plain JSON, so a new table is read, scaled and un-scaled exactly as the training table was.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from statefulrnn.data.columns import TableSpec
from statefulrnn.data.scaling import Scaling
from statefulrnn.model import RecurrentModel, load_extra, load_model

FORMAT = "statefulrnn-table/1"


@dataclass(frozen=True)
class Bundle:
    model: RecurrentModel
    spec: TableSpec
    scaling: Scaling
    read: dict[str, Any]  # fill, drop, sort as used in training
    train: dict[str, Any]  # the resolved training config

    @property
    def window(self) -> int:
        return int(self.train.get("window", 50))


def extra_for(spec: TableSpec, scaling: Scaling, read: dict[str, Any], train: dict[str, Any]):
    return {
        "format": FORMAT,
        "table": asdict(spec),
        "read": read,
        "scaling": scaling.to_dict(spec.features, spec.targets),
        "train": train,
    }


def load_bundle(model_dir: str | Path) -> Bundle:
    model = load_model(model_dir)
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
    return Bundle(model, spec, Scaling.from_dict(extra["scaling"]), extra["read"], extra["train"])
