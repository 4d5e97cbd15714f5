"""`dln predict` against an independent dual solver (1e-8 relative, α from 1e-4 to 10)."""
import json

import numpy as np
import pytest
import scipy.optimize

from dln.cli import main
from dln.problem import make_problem, save_problem


def independent_argmin_q(X, y, alpha):
    """argmin_{Xβ=y} Q_α(β) by scipy's trust-region Newton on the plain (not log-domain) dual
    D(ν) = Σ 2α² cosh(Xᵀν) − νᵀy, then β = 2α² sinh(Xᵀν) (docs/theory.md §15)."""
    c = alpha * alpha

    def D(nu):
        return np.sum(2 * c * np.cosh(X.T @ nu)) - nu @ y

    def grad(nu):
        return X @ (2 * c * np.sinh(X.T @ nu)) - y

    def hess(nu):
        return (X * (2 * c * np.cosh(X.T @ nu))) @ X.T

    res = scipy.optimize.minimize(D, np.zeros(X.shape[0]), jac=grad, hess=hess, method="trust-exact",
                                  options=dict(gtol=1e-14, maxiter=2000))
    nu = res.x
    for _ in range(5):  # trust-exact stops at its gtol; a few plain Newton steps reach round-off
        nu = nu - np.linalg.solve(hess(nu), grad(nu))
    beta = 2 * c * np.sinh(X.T @ nu)
    assert np.linalg.norm(X @ beta - y) <= 1e-10 * np.linalg.norm(y)
    return beta


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    P = make_problem(n=12, d=30, k=3, seed=7, n_test=0)
    path = tmp_path_factory.mktemp("predict") / "data.npz"
    save_problem(path, P)
    return P, str(path)


@pytest.mark.parametrize("alpha", [1e-4, 1e-3, 1e-2, 0.1, 1.0, 10.0])
def test_predict_json_matches_an_independent_dual_solver(alpha, data, capsys):
    P, path = data
    assert main(["predict", "--data", path, "--alpha", repr(alpha), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    beta = np.array(out["beta"])
    ref = independent_argmin_q(P.X, P.y, alpha)
    assert np.linalg.norm(beta - ref) <= 1e-8 * np.linalg.norm(ref)
    assert out["kkt_residual"] <= 1e-10
    assert out["status"] == "converged"


@pytest.mark.parametrize("potential", ["l1", "l2"])
def test_predict_limits(potential, data, capsys):
    P, path = data
    assert main(["predict", "--data", path, "--potential", potential, "--json"]) == 0
    beta = np.array(json.loads(capsys.readouterr().out)["beta"])
    if potential == "l2":  # least norm: in the row space and feasible
        np.testing.assert_allclose(beta, np.linalg.pinv(P.X) @ P.y, rtol=1e-10, atol=1e-12)
    else:  # no feasible point with a smaller l1 norm along random feasible directions
        N = np.linalg.svd(P.X)[2][P.X.shape[0]:].T
        rng = np.random.default_rng(0)
        for _ in range(200):
            step = N @ rng.standard_normal(N.shape[1]) * 1e-3
            assert np.abs(beta + step).sum() >= np.abs(beta).sum() - 1e-12


def test_predict_alpha_with_l1_is_an_error(data, capsys):
    _, path = data
    assert main(["predict", "--data", path, "--potential", "l1", "--alpha", "0.1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("dln: error:") and "--alpha" in err[0]
