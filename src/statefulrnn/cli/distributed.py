"""`--distributed` for the commands that train (train, compare): torchrun's processes, rank 0 speaks.

Under torchrun, `fit` splits the lanes among the processes by itself; what a command adds is
that only rank 0 prints and writes files, and that `--distributed` refuses to run alone.
"""

from __future__ import annotations


def add_flag(parser, command: str) -> None:
    parser.add_argument(
        "--distributed",
        action="store_true",
        help="train over the processes torchrun started, e.g. `torchrun --standalone "
        f"--nproc_per_node=2 --no-python statefulrnn {command} ...` (the default under "
        "torchrun; this flag makes it an error to run without it); rank 0 alone prints and "
        "writes. See docs/distributed.md",
    )


def join(args, command: str) -> bool:
    """Join torchrun's processes when asked to (or launched by it); True in the process that
    prints and writes: rank 0, or the only one."""
    from statefulrnn.train.distributed import init_from_env, is_main_process  # torch: on use

    if getattr(args, "distributed", False) and not init_from_env():
        raise ValueError(  # a usage error, reported as one line like the others
            "--distributed needs the processes torchrun starts; run "
            f"`torchrun --standalone --nproc_per_node=2 --no-python statefulrnn {command} ...`."
        )
    return is_main_process()


def silent(*args, **kwargs) -> None:
    """`print` for the ranks that do not speak."""
