"""Runs the notebooks top to bottom on their full budgets and saves them with their outputs, so that
GitHub shows the curves and the GIF of a real run:

    python notebooks/execute.py            # both, from any folder; runs go to runs/notebooks/
    python notebooks/execute.py 02         # the notebooks whose names start with 02

The kernel starts in the current folder, so the notebooks' runs land in `runs/notebooks/NAME/`
below it; a folder left there by an earlier execution is deleted first.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("prefixes", nargs="*", help="only notebooks whose names start with these")
    parser.add_argument("--timeout", type=int, default=1800, help="seconds per cell")
    args = parser.parse_args(argv)
    paths = sorted(NOTEBOOKS.glob("*.ipynb"))
    if args.prefixes:
        paths = [path for path in paths if path.name.startswith(tuple(args.prefixes))]
    for path in paths:
        run_dir = Path("runs") / "notebooks" / path.stem
        shutil.rmtree(run_dir, ignore_errors=True)
        os.environ["PGKERAS_NOTEBOOK_RUN_DIR"] = str(run_dir)
        started = time.perf_counter()
        notebook = nbformat.read(path, as_version=4)
        client = NotebookClient(
            notebook, timeout=args.timeout, kernel_name="python3", resources={"metadata": {"path": "."}}
        )
        client.execute()
        nbformat.write(notebook, path)
        print(f"{path.name}: executed in {time.perf_counter() - started:.0f} s and saved with its outputs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
