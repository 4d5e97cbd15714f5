"""Data: the sparse-regression problems a diagonal linear network is trained on.

A :class:`Problem` holds a design ``X`` (n × d), labels ``y`` and, optionally, a held-out test set
and the ground truth ``beta_star``.  Synthetic problems follow the Woodworth et al. (2020) set-up
of docs/theory.md §2: a k-sparse β* of unit norm on a random support, y = Xβ* + noise.
"""
from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass, field

import numpy as np

from .errors import DLNError, check_choice, check_int, check_real, fail

DESIGNS = ("gaussian", "rademacher", "correlated", "noncentred")
_NPZ_KEYS = ("X", "y", "X_test", "y_test", "beta_star")


@dataclass(frozen=True)
class Problem:
    """A regression problem min (1/2n)‖Xβ − y‖² (docs/theory.md §1).

    Attributes
    ----------
    X : ndarray, shape (n, d)
    y : ndarray, shape (n,)
    X_test, y_test : ndarray or None
        Held-out data for the test MSE.
    beta_star : ndarray, shape (d,), or None
        Ground truth; when known, the test error reported is ‖β − β*‖².
    meta : dict
        How the problem was made (design, seed, …), copied into result records.
    """

    X: np.ndarray
    y: np.ndarray
    X_test: np.ndarray | None = None
    y_test: np.ndarray | None = None
    beta_star: np.ndarray | None = None
    meta: dict = field(default_factory=dict, compare=False)

    def __post_init__(self):
        X = _as_matrix("X", self.X)
        y = _as_vector("y", self.y, X.shape[0], "rows of X")
        object.__setattr__(self, "X", X)
        object.__setattr__(self, "y", y)
        if (self.X_test is None) != (self.y_test is None):
            raise DLNError("The 'X_test' and 'y_test' arrays must be given together. Got only one of them.")
        if self.X_test is not None:
            Xt = _as_matrix("X_test", self.X_test)
            if Xt.shape[1] != X.shape[1]:
                raise fail("X_test", "", f"an array with d = {X.shape[1]} columns like X", f"shape {Xt.shape}")
            object.__setattr__(self, "X_test", Xt)
            object.__setattr__(self, "y_test", _as_vector("y_test", self.y_test, Xt.shape[0], "rows of X_test"))
        if self.beta_star is not None:
            object.__setattr__(self, "beta_star", _as_vector("beta_star", self.beta_star, X.shape[1], "columns of X"))

    @property
    def n(self) -> int:
        return self.X.shape[0]

    @property
    def d(self) -> int:
        return self.X.shape[1]

    @property
    def support(self) -> np.ndarray | None:
        """Boolean mask of the true support (nonzero β*), or None when β* is unknown."""
        return None if self.beta_star is None else self.beta_star != 0

    def loss(self, beta: np.ndarray) -> np.ndarray:
        """Training loss L(β) = (1/2n)‖Xβ − y‖² for β of shape (..., d)."""
        r = beta @ self.X.T - self.y
        return 0.5 * np.mean(r * r, axis=-1)

    def test_error(self, beta: np.ndarray) -> np.ndarray | None:
        """‖β − β*‖² when β* is known (the population excess risk for isotropic X), else test MSE."""
        if self.beta_star is not None:
            diff = beta - self.beta_star
            return np.sum(diff * diff, axis=-1)
        if self.X_test is not None:
            r = beta @ self.X_test.T - self.y_test
            return np.mean(r * r, axis=-1)
        return None

    def test_mse(self, beta: np.ndarray) -> np.ndarray | None:
        """Mean squared error on the held-out set, or None without one."""
        if self.X_test is None:
            return None
        r = beta @ self.X_test.T - self.y_test
        return np.mean(r * r, axis=-1)


def _as_matrix(name: str, a) -> np.ndarray:
    a = np.asarray(a)
    if a.dtype.kind not in "biuf":
        raise fail(name, "", "a real (int or float) array", f"dtype {a.dtype}")
    if a.ndim != 2:
        raise fail(name, "", "a 2-D array", f"shape {a.shape}")
    if a.shape[0] == 0 or a.shape[1] == 0:
        raise fail(name, "", "non-empty (n >= 1 rows, d >= 1 columns)", f"shape {a.shape}")
    a = np.ascontiguousarray(a, dtype=np.float64)
    if not np.all(np.isfinite(a)):
        raise fail(name, "", "finite (no NaN or inf)", f"{np.count_nonzero(~np.isfinite(a))} non-finite entries")
    return a


def _as_vector(name: str, a, length: int, what: str) -> np.ndarray:
    a = np.asarray(a)
    if a.dtype.kind not in "biuf":
        raise fail(name, "", "a real (int or float) array", f"dtype {a.dtype}")
    if a.ndim == 2 and 1 in a.shape:
        a = a.ravel()
    if a.ndim != 1 or a.shape[0] != length:
        raise fail(name, "", f"a vector of length {length} (the {what})", f"shape {a.shape}")
    a = np.ascontiguousarray(a, dtype=np.float64)
    if not np.all(np.isfinite(a)):
        raise fail(name, "", "finite (no NaN or inf)", f"{np.count_nonzero(~np.isfinite(a))} non-finite entries")
    return a


def _rng(seed) -> np.random.Generator:
    if isinstance(seed, np.random.Generator):
        return seed
    if isinstance(seed, np.random.SeedSequence):
        return np.random.default_rng(seed)
    return np.random.default_rng(np.random.SeedSequence(check_int("seed", seed, "make_problem", ge=0)))


def _design(rng, rows, d, design, rho, shift):
    if design == "gaussian":
        return rng.standard_normal((rows, d))
    if design == "rademacher":
        return rng.choice(np.array([-1.0, 1.0]), size=(rows, d))
    if design == "correlated":
        # Stationary AR(1) columns have exactly the Toeplitz covariance rho^|i-j|.
        Z = rng.standard_normal((rows, d))
        X = np.empty_like(Z)
        X[:, 0] = Z[:, 0]
        scale = np.sqrt(1.0 - rho * rho)
        for j in range(1, d):
            X[:, j] = rho * X[:, j - 1] + scale * Z[:, j]
        return X
    return shift + rng.standard_normal((rows, d))  # noncentred


def make_problem(n: int = 40, d: int = 100, k: int = 5, noise: float = 0.0, design: str = "gaussian",
                 seed=0, *, n_test: int = 1000, rho: float = 0.5, shift: float = 1.0) -> Problem:
    """Synthetic k-sparse regression (docs/theory.md §2, Woodworth et al. 2020 set-up).

    β* has unit ℓ2 norm on a uniformly random support of size k with Gaussian entries;
    y = Xβ* + noise·ξ with ξ ~ N(0, I).  Rows of X are i.i.d.:

    - ``gaussian``: N(0, I);  ``rademacher``: ±1;
    - ``correlated``: N(0, Σ) with Σ_ij = rho^|i−j| (Toeplitz);
    - ``noncentred``: N(shift·1, I) (the non-centred data of Nacson et al. 2022, docs/theory.md §5.4).

    Parameters
    ----------
    n, d, k : int
        Samples, dimension, support size (1 <= k <= d).
    noise : float
        Label-noise standard deviation (>= 0), applied to train and test labels.
    seed : int, SeedSequence or Generator
        The only source of randomness.
    n_test : int
        Size of the held-out test set.
    """
    where = "make_problem"
    n = check_int("n", n, where, ge=1)
    d = check_int("d", d, where, ge=1)
    k = check_int("k", k, where, ge=1)
    if k > d:
        raise fail("k", where, f"<= d = {d}", k)
    noise = check_real("noise", noise, where, ge=0.0, allow_array=False)
    check_choice("design", design, DESIGNS, where)
    rho = check_real("rho", rho, where, ge=0.0, allow_array=False)
    if rho >= 1:
        raise fail("rho", where, "< 1", rho)
    n_test = check_int("n_test", n_test, where, ge=0)
    rng = _rng(seed)
    support = np.sort(rng.choice(d, size=k, replace=False))
    beta_star = np.zeros(d)
    w = rng.standard_normal(k)
    beta_star[support] = w / np.linalg.norm(w)
    X = _design(rng, n, d, design, rho, shift)
    y = X @ beta_star + noise * rng.standard_normal(n)
    X_test = y_test = None
    if n_test:
        X_test = _design(rng, n_test, d, design, rho, shift)
        y_test = X_test @ beta_star + noise * rng.standard_normal(n_test)
    meta = dict(n=n, d=d, k=k, noise=noise, design=design)
    if isinstance(seed, (int, np.integer)):  # an integer seed is a record key (docs/design.md §5)
        meta["seed"] = int(seed)
    return Problem(X, y, X_test, y_test, beta_star, meta)


def load_problem(path) -> Problem:
    """Load a problem from ``.npz`` (arrays X, y, optional X_test, y_test, beta_star) or ``.csv``.

    A ``.csv`` file holds one sample per row, features first and the label in the last column,
    with an optional header line.  Every array is validated (shape, real dtype, finiteness).
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise fail("data", "", "an existing file", path)
    if os.path.isdir(path):
        raise fail("data", "", "a file, not a directory", path)
    if path.endswith(".csv"):
        return _load_csv(path)
    try:
        # np.load(path) leaves its file open when zipfile raises: own the handle instead
        with open(path, "rb") as fh:
            f = np.load(fh, allow_pickle=False)
            if not hasattr(f, "files"):
                raise ValueError("not an .npz archive (a single array)")
            with f:
                keys = set(f.files)
                arrays = {key: f[key] for key in _NPZ_KEYS if key in keys}
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as exc:
        kind = "a readable .npz file" if path.endswith(".npz") else "an .npz or .csv file"
        raise fail("data", "", kind, f"{path} ({type(exc).__name__}: {exc})".replace("\n", " ")) from None
    if "X" not in keys or "y" not in keys:
        raise fail("data", "", "an .npz file with arrays 'X' and 'y'", f"{path} with keys {sorted(keys)}")
    return Problem(**arrays, meta={"data": path})


def _load_csv(path: str) -> Problem:
    try:
        with open(path, encoding="utf-8") as fh:
            first = fh.readline()
        skip = 0 if _is_numeric_row(first) else 1
        table = np.loadtxt(path, delimiter=",", skiprows=skip, ndmin=2)
    except (ValueError, OSError, UnicodeDecodeError) as exc:
        raise fail("data", "", "a numeric .csv file (features..., label)", f"{path} ({exc})".replace("\n", " ")) from None
    if table.shape[1] < 2:
        raise fail("data", "", "a .csv with at least 2 columns (features..., label)", f"{table.shape[1]} column(s)")
    return Problem(table[:, :-1], table[:, -1], meta={"data": path})


def _is_numeric_row(line: str) -> bool:
    try:
        [float(x) for x in line.split(",")]
    except ValueError:
        return False
    return True


def save_problem(path, problem: Problem) -> None:
    """Write a problem as ``.npz`` with the keys :func:`load_problem` reads."""
    arrays = {k: getattr(problem, k) for k in _NPZ_KEYS if getattr(problem, k) is not None}
    np.savez(path, **arrays)
