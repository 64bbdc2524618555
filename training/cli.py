"""Command-line entry points: ``fcn-train``, ``fcn-predict``, ``fcn-eval``, ``fcn-bench``,
and the same as ``python -m training <command>``.

Heavy imports (torch) happen inside each command so ``--help`` is instant.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

COMMANDS = ("train", "predict", "eval", "bench", "simulate")


def train_main(argv: Sequence[str] | None = None) -> int:
    from .errors import FCNError
    from .progress import Reporter
    from .train_config import add_arguments, check_args, config_from_args, explicit_options

    parser = argparse.ArgumentParser(
        prog="fcn-train", description="Train or fine-tune an FCN on a VOC segmentation dataset.")
    add_arguments(parser)
    args = parser.parse_args(argv)
    check_args(parser, args)
    given = explicit_options(parser, argv, args)
    reporter = Reporter(args.json)
    try:
        from .train import run_training

        return run_training(config_from_args(args), reporter, given=given)
    except FCNError as exc:
        reporter.error(str(exc), kind=type(exc).__name__)
        return {"TrainingDiverged": 3, "CheckpointWriteError": 4}.get(type(exc).__name__, 2)
    except OSError as exc:  # e.g. a full disk while writing a file other than a checkpoint
        reporter.error(f"{exc.filename or 'write failed'}: {exc.strerror or exc}", kind="OSError")
        return 4


def predict_main(argv: Sequence[str] | None = None) -> int:
    from .predict_cli import main

    return main(argv)


def eval_main(argv: Sequence[str] | None = None) -> int:
    from .evaluate import main

    return main(argv)


def bench_main(argv: Sequence[str] | None = None) -> int:
    from .bench import main

    return main(argv)


def simulate_main(argv: Sequence[str] | None = None) -> int:
    from .simulate import main

    return main(argv)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        print(f"usage: python -m training {{{','.join(COMMANDS)}}} [options]\n"
              "  train    train or fine-tune an FCN on a VOC dataset\n"
              "  predict  write a label PNG per image\n"
              "  eval     score predictions against ground truth, or a model on a dataset\n"
              "  bench    speed of the model, training and prediction on this machine\n"
              "  simulate replay a labelling session and measure the correction effort",
              file=sys.stderr if argv and argv[0] not in ("-h", "--help") else sys.stdout)
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    command, rest = argv[0], argv[1:]
    return {"train": train_main, "predict": predict_main, "eval": eval_main,
            "bench": bench_main, "simulate": simulate_main}[command](rest)
