"""A training script for tests/test_distributed.py: torchrun starts it once per process.

`python distributed_worker.py SPEC_JSON OUT_DIR` trains each run of the spec with
`fit(distributed=True)` (checkpointed in `<spec checkpoint>/<run>` if the spec names a
folder, and resumed from there); rank 0 writes `OUT_DIR/<run>.safetensors` and `<run>.json` (history).
The same functions build the data and model of the single-process references in the test.

Failure hooks (test only): DIE_RANK / DIE_EPOCH make that rank `os._exit(3)` at the third
chunk of that (0-based) epoch of run DIE_RUN (default: every run); with HANG=1 it sleeps there
instead, as a stuck process would.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

import statefulrnn as sr

# Uneven everything: 11 sequences of 4..37 steps over 3 or 5 lanes, windows of 5 steps; the
# first 8 steps of each sequence (all but the last of short ones) are unscored, so the first
# chunk has no weight on any rank.
LENGTHS = [23, 9, 17, 37, 5, 12, 26, 4, 31, 19, 14]


def data(lengths=LENGTHS, seed: int = 0) -> sr.Sequences:
    rng = np.random.default_rng(seed)
    xs = [rng.normal(size=(t, 2)) for t in lengths]
    ys = [np.cumsum(x[:, :1] * x[:, 1:], axis=0) / 4 for x in xs]  # needs memory of the past
    ws = [np.where(np.arange(t) < min(8, t - 1), 0.0, 1.0) for t in lengths]
    return sr.Sequences.from_arrays(xs, ys, weights=ws)


def model() -> sr.StatefulRNN:
    torch.manual_seed(0)
    return sr.StatefulRNN(2, 6, 1, cell="lstm", num_layers=2, dtype=torch.float64)


# name -> fit arguments; the test runs the same ones in one process
RUNS = {
    "sgd": dict(mode="stateful", window=5, batch_size=3, epochs=3, optimizer="sgd", lr=0.1),
    "adam": dict(mode="stateful", window=5, batch_size=5, epochs=3, optimizer="adam", lr=0.01),
    "adam_tbptt": dict(
        mode="stateful", window=5, batch_size=3, epochs=2, lr=0.01, backprop=12, clip=0.5
    ),
    "stateless": dict(mode="stateless", window=6, stride=4, batch_size=7, epochs=2, lr=0.01),
    "resume": dict(mode="stateful", window=5, batch_size=3, epochs=4, lr=0.01, clip=1.0),
}


class _FailOnCue(sr.Callback):
    """Counts epochs; the wrapped forward below dies (or hangs) on cue."""

    def __init__(self, model, rank: int, run: str):
        self.epoch, self.calls = 0, 0
        if str(rank) != os.environ.get("DIE_RANK") or os.environ.get("DIE_RUN", run) != run:
            return
        die_epoch, hang = int(os.environ["DIE_EPOCH"]), os.environ.get("HANG") == "1"
        forward = model.forward

        def cued_forward(*args, **kwargs):
            self.calls += 1
            if self.epoch == die_epoch and self.calls == 3:
                print(f"rank {rank}: {'hanging' if hang else 'dying'} now", flush=True)
                if hang:
                    time.sleep(3600)
                os._exit(3)
            return forward(*args, **kwargs)

        model.forward = cued_forward

    def on_train_begin(self, model, history) -> None:
        self.epoch = len(history)

    def on_epoch_end(self, epoch, record, model) -> bool:
        self.epoch, self.calls = epoch + 1, 0
        return False


def main(spec: dict, out: Path) -> None:
    rank = int(os.environ.get("RANK", "0"))
    train, val = data(), data([15, 22, 7], seed=1)
    for name in spec["runs"]:
        net = model()
        kwargs = dict(RUNS[name])
        if spec.get("checkpoint"):
            kwargs.update(checkpoint=Path(spec["checkpoint"]) / name, resume=True)
        history = sr.fit(
            net,
            train,
            val,
            distributed=True,
            verbose=0,
            callbacks=[_FailOnCue(net, rank, name)],
            **kwargs,
        )
        if rank == 0:
            save_file(dict(net.state_dict()), str(out / f"{name}.safetensors"))
            (out / f"{name}.json").write_text(json.dumps(list(history)))
        # every rank's copy must be rank 0's: compare a checksum of the weights
        total = torch.stack([p.detach().double().sum() for p in net.parameters()]).sum()
        print(f"rank {rank} world {os.environ.get('WORLD_SIZE')} {name} {total.item():.17g}")


if __name__ == "__main__":
    main(json.loads(sys.argv[1]), Path(sys.argv[2]))
