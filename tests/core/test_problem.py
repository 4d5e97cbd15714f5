"""dln.problem: synthetic designs, file round trips and validation (docs/design.md §1, §5, §6).

Oracles: sample statistics with their sampling error (the covariance ρ^|i−j| of the correlated
design, the mean shift of the non-centred one), exact properties of β* and y, byte-for-byte
round trips, and the error-message contract "The 'name' parameter ... must be ...".
"""
import gc
import re
import sys
import warnings

import numpy as np
import pytest

from dln.errors import DLNError
from dln.problem import DESIGNS, Problem, load_problem, make_problem, save_problem


# ---------------------------------------------------------------------------------------------
# synthetic problems
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("design", DESIGNS)
@pytest.mark.parametrize("n,d,k", [(7, 13, 1), (12, 30, 4), (5, 6, 6)])
def test_beta_star_unit_norm_k_sparse_and_labels(design, n, d, k):
    P = make_problem(n=n, d=d, k=k, design=design, seed=3, n_test=9)
    assert P.X.shape == (n, d) and P.y.shape == (n,)
    assert np.count_nonzero(P.beta_star) == k
    assert np.linalg.norm(P.beta_star) == pytest.approx(1.0, abs=1e-14)
    np.testing.assert_allclose(P.y, P.X @ P.beta_star, rtol=0, atol=1e-14)  # noiseless
    assert P.X_test.shape == (9, d)
    np.testing.assert_allclose(P.y_test, P.X_test @ P.beta_star, rtol=0, atol=1e-14)
    assert np.array_equal(P.support, P.beta_star != 0)


def test_no_test_set_when_n_test_zero():
    P = make_problem(n=5, d=8, k=2, n_test=0)
    assert P.X_test is None and P.y_test is None
    assert P.beta_star is not None


def test_label_noise_has_the_requested_std():
    n = 20000
    P = make_problem(n=n, d=3, k=2, noise=0.5, seed=1, n_test=0)
    resid = P.y - P.X @ P.beta_star
    # std of a sample std of N(0, σ²): σ/sqrt(2n) ≈ 0.0025
    assert resid.std() == pytest.approx(0.5, abs=5 * 0.5 / np.sqrt(2 * n))
    assert abs(resid.mean()) < 5 * 0.5 / np.sqrt(n)


def test_gaussian_design_moments():
    n, d = 20000, 5
    X = make_problem(n=n, d=d, k=1, design="gaussian", seed=2, n_test=0).X
    cov = X.T @ X / n
    # sampling s.e. of a covariance entry ≤ sqrt(2/n) = 0.01
    np.testing.assert_allclose(cov, np.eye(d), atol=5 * np.sqrt(2 / n))
    np.testing.assert_allclose(X.mean(axis=0), 0.0, atol=5 / np.sqrt(n))


def test_rademacher_design_is_plus_minus_one_and_balanced():
    n, d = 4000, 10
    X = make_problem(n=n, d=d, k=2, design="rademacher", seed=4, n_test=0).X
    assert set(np.unique(X)) == {-1.0, 1.0}
    frac = np.mean(X == 1.0)
    assert frac == pytest.approx(0.5, abs=5 * 0.5 / np.sqrt(n * d))
    off = X.T @ X / n - np.eye(d)
    assert np.max(np.abs(off)) < 5 / np.sqrt(n)


@pytest.mark.parametrize("rho", [0.6, 0.3])
def test_correlated_design_has_toeplitz_covariance(rho):
    n, d = 40000, 6
    X = make_problem(n=n, d=d, k=2, design="correlated", rho=rho, seed=5, n_test=0).X
    target = rho ** np.abs(np.subtract.outer(np.arange(d), np.arange(d)))
    cov = X.T @ X / n
    # s.e. of entry (i, j): sqrt((Σ_ii Σ_jj + Σ_ij²)/n) ≤ sqrt(2/n) ≈ 0.007
    np.testing.assert_allclose(cov, target, rtol=0, atol=5 * np.sqrt(2 / n))
    # and it is really correlated: the first off-diagonal is far from 0 relative to the error
    assert np.all(np.abs(np.diag(cov, 1) - rho) < 0.05)


@pytest.mark.parametrize("shift", [1.0, 2.5])
def test_noncentred_design_mean_shift_unit_variance(shift):
    n, d = 20000, 5
    X = make_problem(n=n, d=d, k=2, design="noncentred", shift=shift, seed=6, n_test=0).X
    np.testing.assert_allclose(X.mean(axis=0), shift, atol=5 / np.sqrt(n))
    np.testing.assert_allclose(X.var(axis=0), 1.0, atol=5 * np.sqrt(2 / n))


def test_default_noncentred_shift_is_one():
    X = make_problem(n=20000, d=3, k=1, design="noncentred", seed=7, n_test=0).X
    np.testing.assert_allclose(X.mean(axis=0), 1.0, atol=5 / np.sqrt(20000))


@pytest.mark.parametrize("design", DESIGNS)
def test_determinism_by_seed(design):
    P1 = make_problem(n=8, d=15, k=3, noise=0.1, design=design, seed=42, n_test=5)
    P2 = make_problem(n=8, d=15, k=3, noise=0.1, design=design, seed=42, n_test=5)
    for name in ("X", "y", "X_test", "y_test", "beta_star"):
        assert np.array_equal(getattr(P1, name), getattr(P2, name)), name
    P3 = make_problem(n=8, d=15, k=3, noise=0.1, design=design, seed=43, n_test=5)
    assert not np.array_equal(P1.X, P3.X)
    assert not np.array_equal(P1.y, P3.y)
    assert not np.array_equal(P1.X_test, P3.X_test)


def test_seed_sequence_and_generator_are_accepted_and_deterministic():
    P1 = make_problem(n=6, d=10, k=2, seed=np.random.SeedSequence(9), n_test=0)
    P2 = make_problem(n=6, d=10, k=2, seed=np.random.SeedSequence(9), n_test=0)
    assert np.array_equal(P1.X, P2.X)
    P3 = make_problem(n=6, d=10, k=2, seed=np.random.default_rng(9), n_test=0)
    P4 = make_problem(n=6, d=10, k=2, seed=np.random.default_rng(9), n_test=0)
    assert np.array_equal(P3.X, P4.X) and np.array_equal(P3.beta_star, P4.beta_star)


def test_different_seeds_give_different_supports_somewhere():
    supports = {tuple(np.flatnonzero(make_problem(n=4, d=50, k=3, seed=s, n_test=0).beta_star)) for s in range(6)}
    assert len(supports) > 1


@pytest.mark.parametrize("kwargs,match", [
    (dict(n=0), r"'n' parameter of make_problem must be >= 1"),
    (dict(d=0), r"'d' parameter of make_problem must be >= 1"),
    (dict(k=0), r"'k' parameter of make_problem must be >= 1"),
    (dict(d=4, k=5), r"'k' parameter of make_problem must be <= d = 4. Got 5"),
    (dict(noise=-0.1), r"'noise' parameter of make_problem must be >= 0"),
    (dict(design="uniform"), r"'design' parameter of make_problem must be one of"),
    (dict(design="correlated", rho=1.0), r"'rho' parameter of make_problem must be < 1"),
    (dict(n=2.5), r"'n' parameter of make_problem must be an integer"),
    (dict(seed=-1), r"'seed' parameter of make_problem must be >= 0"),
])
def test_make_problem_validation(kwargs, match):
    base = dict(n=5, d=8, k=2, n_test=0)
    base.update(kwargs)
    with pytest.raises(DLNError, match=match):
        make_problem(**base)


# ---------------------------------------------------------------------------------------------
# Problem validation (the boundary every file goes through)
# ---------------------------------------------------------------------------------------------
_X = np.arange(12, dtype=float).reshape(4, 3)
_y = np.arange(4, dtype=float)


@pytest.mark.parametrize("X,y,match", [
    (np.arange(4.0), _y, r"'X' parameter must be a 2-D array. Got .*shape \(4,\)"),
    (np.zeros((2, 2, 2)), _y[:2], r"'X' parameter must be a 2-D array"),
    (_X, np.arange(5.0), r"'y' parameter must be a vector of length 4"),
    (_X, np.zeros((4, 2)), r"'y' parameter must be a vector of length 4"),
    (np.where(_X == 5, np.nan, _X), _y, r"'X' parameter must be finite \(no NaN or inf\)"),
    (np.where(_X == 5, np.inf, _X), _y, r"'X' parameter must be finite"),
    (_X, np.array([0.0, np.inf, 1.0, 2.0]), r"'y' parameter must be finite"),
    (_X, np.array([0.0, np.nan, 1.0, 2.0]), r"'y' parameter must be finite"),
    (_X + 1j, _y, r"'X' parameter must be a real \(int or float\) array. Got .*dtype complex128"),
    (_X, _y + 0j, r"'y' parameter must be a real .* complex128"),
    (_X.astype(object), _y, r"'X' parameter must be a real .*dtype object"),
    (_X, _y.astype(object), r"'y' parameter must be a real .*dtype object"),
    (np.zeros((0, 3)), np.zeros(0), r"'X' parameter must be non-empty .*shape \(0, 3\)"),
    (np.zeros((4, 0)), _y, r"'X' parameter must be non-empty .*shape \(4, 0\)"),
])
def test_problem_validation(X, y, match):
    with pytest.raises(DLNError, match=match):
        Problem(X, y)


def test_problem_validation_of_optional_arrays():
    with pytest.raises(DLNError, match=r"'X_test' and 'y_test' arrays must be given together"):
        Problem(_X, _y, X_test=_X)
    with pytest.raises(DLNError, match=r"'X_test' parameter must be an array with d = 3 columns"):
        Problem(_X, _y, X_test=np.zeros((2, 4)), y_test=np.zeros(2))
    with pytest.raises(DLNError, match=r"'y_test' parameter must be a vector of length 2"):
        Problem(_X, _y, X_test=np.zeros((2, 3)), y_test=np.zeros(3))
    with pytest.raises(DLNError, match=r"'beta_star' parameter must be a vector of length 3"):
        Problem(_X, _y, beta_star=np.zeros(4))
    with pytest.raises(DLNError, match=r"'beta_star' parameter must be finite"):
        Problem(_X, _y, beta_star=np.array([0.0, np.nan, 1.0]))


def test_problem_accepts_int_arrays_and_column_y():
    P = Problem(np.arange(6).reshape(3, 2), np.arange(3).reshape(3, 1))
    assert P.X.dtype == np.float64 and P.y.shape == (3,)
    assert (P.n, P.d) == (3, 2)


def test_loss_and_test_error_definitions():
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((5, 4)), rng.standard_normal(5)
    bs = rng.standard_normal(4)
    P = Problem(X, y, beta_star=bs)
    beta = rng.standard_normal((3, 4))
    for i in range(3):
        r = X @ beta[i] - y
        assert P.loss(beta)[i] == pytest.approx(r @ r / (2 * 5), rel=1e-14)
        assert P.test_error(beta)[i] == pytest.approx(np.sum((beta[i] - bs) ** 2), rel=1e-14)
    Xt, yt = rng.standard_normal((7, 4)), rng.standard_normal(7)
    P2 = Problem(X, y, X_test=Xt, y_test=yt)
    rt = Xt @ beta[0] - yt
    assert P2.test_error(beta[0]) == pytest.approx(np.mean(rt * rt), rel=1e-14)
    assert Problem(X, y).test_error(beta[0]) is None


# ---------------------------------------------------------------------------------------------
# files
# ---------------------------------------------------------------------------------------------
def test_npz_round_trip_with_all_arrays(tmp_path):
    P = make_problem(n=7, d=11, k=3, noise=0.2, design="correlated", seed=8, n_test=6)
    path = tmp_path / "prob.npz"
    save_problem(path, P)
    Q = load_problem(path)
    for name in ("X", "y", "X_test", "y_test", "beta_star"):
        assert np.array_equal(getattr(P, name), getattr(Q, name)), name
    assert Q.meta.get("data") == str(path)  # the path as given, like a sweep's data column
    # str paths work too
    assert np.array_equal(load_problem(str(path)).X, P.X)


def test_npz_round_trip_without_optional_arrays(tmp_path):
    rng = np.random.default_rng(1)
    P = Problem(rng.standard_normal((4, 6)), rng.standard_normal(4))
    path = tmp_path / "bare.npz"
    save_problem(path, P)
    with np.load(path) as f:
        assert sorted(f.files) == ["X", "y"]
    Q = load_problem(path)
    assert np.array_equal(Q.X, P.X) and np.array_equal(Q.y, P.y)
    assert Q.X_test is None and Q.y_test is None and Q.beta_star is None


@pytest.mark.parametrize("header", [True, False])
def test_csv_features_then_label(tmp_path, header):
    rng = np.random.default_rng(2)
    X, y = rng.standard_normal((6, 4)), rng.standard_normal(6)
    path = tmp_path / "data.csv"
    np.savetxt(path, np.column_stack([X, y]), delimiter=",", fmt="%.17g",
               header="x1,x2,x3,x4,label" if header else "", comments="")
    P = load_problem(path)
    assert np.array_equal(P.X, X) and np.array_equal(P.y, y)


def _write_npz(path, **arrays):
    with open(path, "wb") as fh:
        np.savez(fh, **arrays)
    return path


@pytest.mark.parametrize("case,match", [
    ("wrong_keys", r"'data' parameter must be an .npz file with arrays 'X' and 'y'.*\['A', 'b'\]"),
    ("only_X", r"'data' parameter must be an .npz file with arrays 'X' and 'y'"),
    ("X_1d", r"'X' parameter must be a 2-D array"),
    ("y_mismatch", r"'y' parameter must be a vector of length 4"),
    ("nan_X", r"'X' parameter must be finite"),
    ("inf_y", r"'y' parameter must be finite"),
    ("complex_X", r"'X' parameter must be a real .*complex"),
    ("complex_y", r"'y' parameter must be a real .*complex"),
    ("n_zero", r"'X' parameter must be non-empty"),
    ("d_zero", r"'X' parameter must be non-empty"),
    ("bad_test_cols", r"'X_test' parameter must be an array with d = 3 columns"),
])
def test_npz_validation(tmp_path, case, match):
    p = tmp_path / f"{case}.npz"
    X = np.arange(12.0).reshape(4, 3)
    y = np.arange(4.0)
    arrays = {
        "wrong_keys": dict(A=X, b=y),
        "only_X": dict(X=X),
        "X_1d": dict(X=np.arange(4.0), y=y),
        "y_mismatch": dict(X=X, y=np.arange(5.0)),
        "nan_X": dict(X=np.where(X == 3, np.nan, X), y=y),
        "inf_y": dict(X=X, y=np.array([1.0, -np.inf, 0.0, 2.0])),
        "complex_X": dict(X=X * (1 + 1j), y=y),
        "complex_y": dict(X=X, y=y.astype(complex)),
        "n_zero": dict(X=np.zeros((0, 3)), y=np.zeros(0)),
        "d_zero": dict(X=np.zeros((4, 0)), y=y),
        "bad_test_cols": dict(X=X, y=y, X_test=np.zeros((2, 5)), y_test=np.zeros(2)),
    }[case]
    _write_npz(p, **arrays)
    with pytest.raises(DLNError, match=match):
        load_problem(p)


def test_npz_with_object_dtype_is_a_user_error(tmp_path):
    p = _write_npz(tmp_path / "obj.npz", X=np.array([[1, "a"], [2, None]], dtype=object), y=np.zeros(2))
    with pytest.raises(DLNError, match=r"'data' parameter must be a readable .npz file"):
        load_problem(p)


def test_missing_file(tmp_path):
    with pytest.raises(DLNError, match=r"'data' parameter must be an existing file. Got '.*nope.npz'"):
        load_problem(tmp_path / "nope.npz")


def test_directory_is_not_a_data_file(tmp_path):
    with pytest.raises(DLNError, match=r"'data' parameter must be a file, not a directory"):
        load_problem(tmp_path)


@pytest.mark.parametrize("name,match", [
    ("text.npz", r"'data' parameter must be a readable .npz file"),
    ("text.dat", r"'data' parameter must be an .npz or .csv file"),
])
def test_not_a_zip(tmp_path, name, match):
    p = tmp_path / name
    p.write_text("this is not a zip archive\n")
    with pytest.raises(DLNError, match=match):
        load_problem(p)


def _load_truncated(tmp_path):
    """load_problem on a truncated zip; returns (error message, unraisable exceptions seen).

    The unraisable-exception hook is replaced for the duration so that a leaked file handle
    (ResourceWarning in FileIO.__del__, an error under filterwarnings=error) is caught here,
    deterministically, and never surfaces in another test.
    """
    good = _write_npz(tmp_path / "good.npz", X=np.ones((3, 2)), y=np.ones(3))
    bad = tmp_path / "bad.npz"
    bad.write_bytes(good.read_bytes()[:40])
    seen = []
    old = sys.unraisablehook
    sys.unraisablehook = seen.append
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                load_problem(bad)
            except DLNError as exc:
                message = str(exc)
            else:
                message = None
            gc.collect()
    finally:
        sys.unraisablehook = old
    leaks = [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)]
    return message, leaks + [str(u.exc_value) for u in seen]


def test_truncated_npz(tmp_path):
    message, _ = _load_truncated(tmp_path)
    assert message is not None and re.search(r"'data' parameter must be a readable .npz file", message)


def test_truncated_npz_does_not_leak_a_file_handle(tmp_path):
    _, leaks = _load_truncated(tmp_path)
    assert leaks == []


@pytest.mark.parametrize("text,match", [
    ("1,2,3\n4,x,6\n", r"'data' parameter must be a numeric .csv file"),
    ("1\n2\n3\n", r"'data' parameter must be a .csv with at least 2 columns"),
    ("1,2,3\n4,nan,6\n", r"'X' parameter must be finite"),
    ("1,2,3\n4,5,inf\n", r"'y' parameter must be finite"),
    ("1,2,3\n4,5\n", r"'data' parameter must be a numeric .csv file"),
])
def test_csv_validation(tmp_path, text, match):
    p = tmp_path / "bad.csv"
    p.write_text(text)
    with pytest.raises(DLNError, match=match):
        load_problem(p)
