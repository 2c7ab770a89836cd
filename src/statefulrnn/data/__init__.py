"""Sequences and the schedules cut from them; no models here."""

from statefulrnn.data.frames import TableSequences, from_frame
from statefulrnn.data.schedule import Chunk, Schedule, stateful_schedule, stateless_schedule
from statefulrnn.data.sequences import Item, Sequences

__all__ = [
    "Chunk",
    "Item",
    "Schedule",
    "Sequences",
    "TableSequences",
    "from_frame",
    "stateful_schedule",
    "stateless_schedule",
]
