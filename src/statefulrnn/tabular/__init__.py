"""Your own data: train, predict and evaluate from CSV or Parquet files (the table commands).

Sits above train/predict and data: reads a table into sequences, scales with training
statistics, fits, and writes everything a later `predict` needs into the model folder.
Names are imported on first use (`statefulrnn._lazy`), so `tabular.config` stays torch-free.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from statefulrnn._lazy import attach

_EXPORTS = {
    "Evaluation": "statefulrnn.tabular.predict",
    "evaluate_table": "statefulrnn.tabular.predict",
    "predict_table": "statefulrnn.tabular.predict",
    "TableTrainConfig": "statefulrnn.tabular.config",
    "TrainResult": "statefulrnn.tabular.train",
    "train_table": "statefulrnn.tabular.train",
}
__all__ = [
    "Evaluation",
    "TableTrainConfig",
    "TrainResult",
    "evaluate_table",
    "predict_table",
    "train_table",
]
__getattr__, __dir__ = attach(__name__, _EXPORTS)

if TYPE_CHECKING:
    from statefulrnn.tabular.config import TableTrainConfig
    from statefulrnn.tabular.predict import Evaluation, evaluate_table, predict_table
    from statefulrnn.tabular.train import TrainResult, train_table
