"""Data: the sparse-regression problems a diagonal linear network is trained on.

A :class:`Problem` holds a design ``X`` (n × d), labels ``y`` and, optionally, a held-out test set
and the ground truth ``beta_star``.  Synthetic problems follow the Woodworth et al. (2020) set-up
of docs/theory.md §2: a k-sparse β* of unit norm on a random support, y = Xβ* + noise.
"""
from __future__ import annotations

import math
import os
import zipfile
from dataclasses import dataclass, field

import numpy as np

from . import memory
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


#: Entries (n_test · d) of the default test set beyond which it shrinks below 1000 rows: 80 MB.
TEST_SET_ENTRIES = 10_000_000


def default_n_test(n: int, d: int) -> int:
    """Rows of the default held-out set: 1000, or as many as fit in ``TEST_SET_ENTRIES`` entries
    (at least n): d = 10⁶ gets 10 rows instead of 8 GB.  With β* known the test error is ‖β − β*‖²
    and needs no test set; the test set only serves the ``test_mse`` column."""
    return min(1000, max(n, TEST_SET_ENTRIES // d))


def make_problem(n: int = 40, d: int = 100, k: int = 5, noise: float = 0.0, design: str = "gaussian",
                 seed=0, *, n_test: int | None = None, rho: float = 0.5, shift: float = 1.0) -> Problem:
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
    n_test : int, optional
        Size of the held-out test set; default :func:`default_n_test` (1000 rows, fewer when d is so
        large that the test set would outweigh the training data by more than 80 MB).

    Raises
    ------
    DLNError
        For invalid values, or when the data would not fit in memory (:mod:`dln.memory`).
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
    n_test = default_n_test(n, d) if n_test is None else check_int("n_test", n_test, where, ge=0)
    memory.check(memory.problem_bytes(n, d, n_test), "d" if d >= n else "n", where,
                 f"the data (n = {n}, d = {d}, {n_test} test rows)", d if d >= n else n)
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

    A ``.csv`` file is read strictly (:func:`_load_csv`): UTF-8 text (a byte-order mark is
    ignored), one sample per line, features first and the label last, separated by commas.

    - The first line is a header only when none of its fields is a number (column names); a first
      line of numbers is a sample.  A first line that mixes names and numbers, a header with an
      empty name (pandas' index column: write with ``index=False``), or the names ``0,1,...,m-1``
      (pandas' default column names: name the columns, or write with ``header=False``) is an error.
    - A field is a decimal number (``3``, ``-2.5``, ``1e-3``, ``.5``); ``nan`` and ``inf`` are read and
      then rejected as non-finite.  Blank lines are skipped and ``#`` starts a comment.
    - Every line has as many fields as the first; a line that does not is an error naming it, and
      a file without samples is an error.

    Every array is validated (shape, real dtype, finiteness), and its size is checked against the
    memory limit (:mod:`dln.memory`) before it is read.
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
            _check_npz_sizes(fh, path)
            fh.seek(0)
            f = np.load(fh, allow_pickle=False)
            if not hasattr(f, "files"):
                raise ValueError("not an .npz archive (a single array)")
            with f:
                keys = set(f.files)
                arrays = {key: f[key] for key in _NPZ_KEYS if key in keys}
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as exc:
        if isinstance(exc, DLNError):
            raise
        kind = "a readable .npz file" if path.endswith(".npz") else "an .npz or .csv file"
        raise fail("data", "", kind, f"{path} ({type(exc).__name__}: {exc})".replace("\n", " ")) from None
    if "X" not in keys or "y" not in keys:
        raise fail("data", "", "an .npz file with arrays 'X' and 'y'", f"{path} with keys {sorted(keys)}")
    return Problem(**arrays, meta={"data": path})


def _check_npz_sizes(fh, path):
    """Read the .npy headers of an .npz archive's arrays (not their data): a shape whose data the
    archive does not hold is a damaged file, and arrays too large for the memory limit are an error,
    both before anything is allocated."""
    if fh.read(4) != b"PK\x03\x04":
        return  # not a zip archive: np.load reports it
    fh.seek(0)
    total = 0.0
    with zipfile.ZipFile(fh) as zf:
        for info in zf.infolist():
            key = info.filename[:-4] if info.filename.endswith(".npy") else None
            if key not in _NPZ_KEYS:
                continue
            with zf.open(info) as member:
                try:
                    version = np.lib.format.read_magic(member)
                    read = np.lib.format.read_array_header_1_0 if version == (1, 0) \
                        else np.lib.format.read_array_header_2_0
                    shape, _, dtype = read(member)
                except (ValueError, OSError, EOFError, SyntaxError, TypeError, UnicodeDecodeError):
                    continue  # np.load reports it
                header = member.tell()
            nbytes = float(math.prod(shape)) * dtype.itemsize
            if dtype.hasobject:
                continue  # refused by np.load(allow_pickle=False)
            if nbytes > info.file_size - header:
                raise fail("data", "", "a readable .npz file",
                           f"{path} (array {key!r} claims shape {shape} of {dtype}, {memory.human(nbytes)}, "
                           f"but the archive holds {memory.human(max(info.file_size - header, 0))} of it)")
            total += nbytes * (8.0 / max(dtype.itemsize, 1) if dtype.kind in "biuf" else 1.0)
    memory.check(2.0 * total, "data", "", f"the arrays of {path}", path)


_PANDAS_HINT = {"index": "pandas' index column: write the file with index=False",
                "default": "pandas' default column names: name the columns, or write with header=False"}


def _csv_error(path, where: str, why: str) -> DLNError:
    return fail("data", "", "a numeric .csv file (features..., label)", f"{path} {where}: {why}")


def _is_number(field: str) -> bool:
    """A decimal number as np.loadtxt reads it (no digit separators, ASCII digits only)."""
    if not field.isascii() or "_" in field:
        return False
    try:
        float(field)
    except ValueError:
        return False
    return True


def _content_lines(fh):
    """(line number, fields) of the lines that are not blank once a '#' comment is removed."""
    for lineno, line in enumerate(fh, 1):
        text = line.split("#", 1)[0].strip()
        if text:
            yield lineno, [f.strip() for f in text.split(",")]


def _csv_layout(path) -> tuple[int, int]:
    """Apply the header rule of :func:`load_problem`: (lines to skip, fields per line)."""
    with _open_text(path) as fh:
        return _csv_layout_of(path, _content_lines(fh))


def _csv_layout_of(path, lines) -> tuple[int, int]:
    """:func:`_csv_layout` on the content lines (line number, fields) of ``path``."""
    first = next(lines, None)
    if first is None:
        raise _csv_error(path, "line 1", "the file holds no samples (it is empty)")
    lineno, fields = first
    numeric = [_is_number(f) for f in fields]
    if all(numeric):
        if len(fields) >= 2 and fields == [str(i) for i in range(len(fields))]:
            raise _csv_error(path, f"line {lineno}", f"{','.join(fields)} is ambiguous: {_PANDAS_HINT['default']}")
        return 0, len(fields)
    if any(numeric):
        k = numeric.index(False) if "" not in fields else fields.index("")
        hint = f" ({_PANDAS_HINT['index']})" if fields[0] == "" else ""
        raise _csv_error(path, f"line {lineno}", f"field {k + 1} {fields[k]!r} is not a number{hint}")
    if "" in fields:
        hint = _PANDAS_HINT["index"] if fields[0] == "" else "every column needs a name"
        raise _csv_error(path, f"line {lineno}", f"the header has an empty name ({hint})")
    if next(lines, None) is None:
        raise _csv_error(path, f"line {lineno}", "the file holds a header and no samples")
    return lineno, len(fields)


def _open_text(path):
    return open(path, encoding="utf-8-sig", errors="strict")


def _first_bad_line(path, skip: int, width: int):
    """The first line after ``skip`` whose fields are not ``width`` numbers: (line, why), or None."""
    with _open_text(path) as fh:
        for lineno, fields in _content_lines(fh):
            if lineno <= skip:
                continue
            if len(fields) != width:
                return lineno, f"{len(fields)} field(s) where the first line has {width}"
            for k, f in enumerate(fields):
                if not _is_number(f):
                    return lineno, f"field {k + 1} {f!r} is not a number"
    return None


def _undecodable_line(path) -> int:
    with open(path, "rb") as fh:
        for lineno, raw in enumerate(fh, 1):
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError:
                return lineno
    return 1


def _count_fields(path) -> int:
    """Commas plus line ends: an upper bound on the numbers a .csv file holds (read in blocks)."""
    count = 0
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            count += block.count(b",") + block.count(b"\n") + block.count(b"\r")
    return count + 1


def _load_csv(path: str) -> Problem:
    memory.check(3 * 8.0 * _count_fields(path), "data", "", f"the numbers of {path}", path)
    try:
        skip, width = _csv_layout(path)
        if width < 2:
            raise fail("data", "", "a .csv with at least 2 columns (features..., label) separated by commas",
                       f"{width} column(s) in {path}")
        with _open_text(path) as fh:
            table = np.loadtxt(fh, delimiter=",", skiprows=skip, ndmin=2, comments="#", dtype=np.float64)
    except UnicodeDecodeError:
        raise _csv_error(path, f"line {_undecodable_line(path)}", "not UTF-8 text") from None
    except OSError as exc:
        raise fail("data", "", "a readable .csv file", f"{path} ({exc.strerror or exc})") from None
    except ValueError as exc:
        if isinstance(exc, DLNError):
            raise
        bad = _first_bad_line(path, skip, width)
        if bad is None:
            raise _csv_error(path, "", str(exc).replace("\n", " ")) from None
        raise _csv_error(path, f"line {bad[0]}", bad[1]) from None
    return Problem(table[:, :-1], table[:, -1], meta={"data": path})


def save_problem(path, problem: Problem) -> None:
    """Write a problem as ``.npz`` with the keys :func:`load_problem` reads."""
    arrays = {k: getattr(problem, k) for k in _NPZ_KEYS if getattr(problem, k) is not None}
    np.savez(path, **arrays)
