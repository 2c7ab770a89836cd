"""The modes, each named once: how a model trains, how it predicts, what a sweep compares.

    training    stateful           chunks in time order, state carried (truncated BPTT)
                stateless          windows from a zero state (or after `burn_in` steps)
    prediction  stateful           one pass over the whole sequence carrying state: O(T)
                windowed           for every step, a fresh pass over the `window` steps
                                   ending there: O(T·window), what a Keras stateless model does
    sweep       the training modes, and "stateless+burn-in": stateless windows whose
                `burn_in` is drawn as one more option of the trial

Standard library only, at the bottom of the layers: configs, the command line and reports read
these names without importing torch.
"""

from __future__ import annotations

TRAIN_MODES = ("stateful", "stateless")
PREDICT_MODES = ("stateful", "windowed")
STATELESS_BURN_IN = "stateless+burn-in"
SWEEP_MODES = (*TRAIN_MODES, STATELESS_BURN_IN)


def training_mode(sweep_mode: str) -> str:
    """The training mode a sweep's mode trains in ("stateless+burn-in" trains stateless)."""
    return "stateless" if sweep_mode == STATELESS_BURN_IN else sweep_mode
