"""`statefulrnn import-keras MODEL OUT_DIR`: a Keras model file -> a statefulrnn checkpoint."""

from __future__ import annotations

import argparse
import sys

DESCRIPTION = """\
Read a Keras recurrent model and write it as a statefulrnn checkpoint (weights.safetensors +
model.json), with the same numbers; `predict`, `stream` and `load_model` then use it like any
statefulrnn model, carrying state across calls.

MODEL is a Keras 3 `.keras` archive, a legacy Keras 2 `.h5` full model, or a `.weights.h5`
whose architecture sits beside it (NAME.keras or NAME.json) or is given with --config.
Nothing in the file is executed or unpickled; no TensorFlow or Keras is needed (only h5py).

Supported: InputLayer, SimpleRNN, LSTM, GRU (reset_after True/False), stacked recurrent
layers, Dense and TimeDistributed(Dense) heads, Dropout, Activation; tanh, sigmoid,
hard_sigmoid, relu, linear; Sequential and single-chain functional models. Each layer runs on
a fused PyTorch kernel when its options allow it exactly, else on a step-by-step path; the
output lists which. Outputs are per step: for a Keras model ending in return_sequences=False,
Keras's single output is the last step.
"""


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "import-keras",
        help="convert a Keras .keras/.h5 recurrent model into a statefulrnn checkpoint",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("model", metavar="MODEL", help="a .keras, legacy .h5, or .weights.h5 file")
    p.add_argument(
        "out_dir",
        metavar="OUT_DIR",
        help="checkpoint folder to write (an earlier statefulrnn folder there is replaced)",
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="replace OUT_DIR even if it holds files statefulrnn did not write",
    )
    p.add_argument(
        "--config",
        metavar="PATH",
        help="architecture for a .weights.h5 file: a .keras archive or a JSON config",
    )
    p.add_argument(
        "--step",
        action="store_true",
        help="run every recurrent layer on the step-by-step path, even where a fused kernel fits",
    )
    p.add_argument(
        "--keras-version",
        metavar="V",
        help="Keras version that wrote the file, if it does not say (decides hard_sigmoid)",
    )
    p.set_defaults(run=run)
    return p


def run(args: argparse.Namespace) -> int:
    from statefulrnn import records
    from statefulrnn.keras import KerasImportError, from_keras

    try:
        records.check_replaceable(args.out_dir, force=args.force)  # before the work
        model = from_keras(
            args.model,
            config=args.config,
            path_choice="step" if args.step else "auto",
            keras_version=args.keras_version,
        )
    except (KerasImportError, FileNotFoundError) as e:
        print(f"statefulrnn import-keras: error: {e}", file=sys.stderr)
        return 1
    out = model.save(args.out_dir, extra={"keras_source": model.source}, force=args.force)
    src = model.source or {}
    print(f"read {args.model} ({src.get('format')}, Keras {src.get('keras_version') or 'unknown'})")
    if src.get("config"):
        print(f"architecture from {src['config']}")
    print(model.describe())
    names = model.state_spec()[1]
    print(
        f"input {model.input_size} features -> output {model.output_size} per step; state {names}"
    )
    print(f"wrote {out}")
    return 0
