"""Your own data: train, predict and evaluate from CSV or Parquet files (the table commands).

Sits above train/predict and data: reads a table into sequences, scales with training
statistics, fits, and writes everything a later `predict` needs into the model folder.
"""

from statefulrnn.tabular.predict import Evaluation, evaluate_table, predict_table
from statefulrnn.tabular.train import TableTrainConfig, TrainResult, train_table

__all__ = [
    "Evaluation",
    "TableTrainConfig",
    "TrainResult",
    "evaluate_table",
    "predict_table",
    "train_table",
]
