"""Regenerate the example data sets of the README: ``python examples/make_examples.py``.

``sparse_regression.npz``
    Arrays ``X`` (40 × 100), ``y`` (40,), ``X_test`` (100 × 100), ``y_test`` (100,) and
    ``beta_star`` (100,): the synthetic problem ``dln.make_problem(n=40, d=100, k=5, seed=0)``
    (Gaussian design, noiseless labels, a 5-sparse β* of unit norm; the same X, y and β* as the
    default data of ``dln simulate``), with a 100-sample test set to keep the file small.
``sparse_regression.csv``
    The same training data as text: one sample per row, the 100 features then the label in the
    last column, a header line ``x0,...,x99,y``, every number with 17 significant digits (so
    reading it back gives the float64 values exactly).

Use them with ``dln simulate --data examples/sparse_regression.npz ...`` (or the ``.csv``; a
``.csv`` carries no test set or β*, so no test error is reported).  The output is deterministic:
``tests/test_repository.py`` checks that the committed files equal what this script writes.
"""
from __future__ import annotations

import argparse
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
if __name__ == "__main__":  # run as a script from anywhere: use this checkout's dln
    sys.path.insert(0, os.path.dirname(HERE))

import dln  # noqa: E402

N, D, K, SEED, N_TEST = 40, 100, 5, 0, 100
NAME = "sparse_regression"


def make() -> dln.Problem:
    """The example problem (see the module docstring)."""
    return dln.make_problem(n=N, d=D, k=K, noise=0.0, design="gaussian", seed=SEED, n_test=N_TEST)


def write(out: str = HERE) -> tuple[str, str]:
    """Write ``sparse_regression.npz`` and ``sparse_regression.csv`` into ``out``; return their paths."""
    problem = make()
    npz = os.path.join(out, NAME + ".npz")
    csv = os.path.join(out, NAME + ".csv")
    dln.save_problem(npz, problem)
    header = ",".join([f"x{j}" for j in range(problem.d)] + ["y"])
    np.savetxt(csv, np.column_stack([problem.X, problem.y]), delimiter=",", fmt="%.17g",
               header=header, comments="")
    return npz, csv


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=HERE, help="output folder (default: examples/)")
    args = parser.parse_args(argv)
    for path in write(args.out):
        print(f"wrote {path} ({os.path.getsize(path)} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
