"""``fcn-studio [PROJECT_DIR]``: the desktop app.

The packaged app is one executable; ``fcn-studio train ...`` (and predict, eval,
bench) runs the engine's command instead, which is how the app starts its
training child process from a PyInstaller bundle.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

ENGINE_COMMANDS = ("train", "predict", "eval", "bench")


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in ENGINE_COMMANDS:
        from training.cli import main as engine_main

        return engine_main(argv)
    parser = argparse.ArgumentParser(
        prog="fcn-studio", description="Label images for semantic segmentation with an FCN-8s "
        "that learns from your corrections.")
    parser.add_argument("project", nargs="?", help="project folder (default: the last one, or "
                        "the built-in sample project on a first run)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    parser.add_argument("--self-test", action="store_true",
                        help="check this installation step by step (no display or network "
                        "needed; about a minute on a CPU), then exit: 0 when all pass")
    args = parser.parse_args(argv)
    if args.self_test:
        from fcn_studio.ui.selftest import main as self_test

        return self_test()
    # Absolute import: PyInstaller runs this file as a script, outside its package.
    from fcn_studio.ui.app import run

    return run(args)


if __name__ == "__main__":
    sys.exit(main())
