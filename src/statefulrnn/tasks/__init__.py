"""The seed experiments as built-in tasks: generators with the seeds' settings as defaults."""

from statefulrnn.tasks import first_bit, lagged_product, moving_average, sine
from statefulrnn.tasks.base import Claim, Config, Param, Task, TaskData

TASKS: dict[str, Task] = {
    t.name: t for t in (lagged_product.TASK, first_bit.TASK, moving_average.TASK, sine.TASK)
}


def get_task(name: str) -> Task:
    if name not in TASKS:
        close = [t for t in TASKS if t.split("-")[0] in name or name in t]
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"unknown task {name!r}.{hint} Built-in tasks: {', '.join(TASKS)}.")
    return TASKS[name]


__all__ = ["TASKS", "Claim", "Config", "Param", "Task", "TaskData", "get_task"]
