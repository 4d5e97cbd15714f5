"""The scikit-learn-compatible estimator ``DiagonalLinearNetwork`` (no scikit-learn dependency)."""
from __future__ import annotations

import pickle
import warnings

import numpy as np
import pytest

from dln.errors import DLNError
from dln.estimator import DiagonalLinearNetwork, NotFittedError
from dln.problem import make_problem


@pytest.fixture(scope="module")
def data():
    P = make_problem(n=10, d=20, k=2, seed=4)
    return P.X, P.y, P


def test_fit_predict_score_and_attributes(data):
    X, y, P = data
    est = DiagonalLinearNetwork(alpha=0.1, rtol=1e-6)
    assert est.fit(X, y) is est
    assert est.coef_.shape == (20,) and est.alpha_eff_.shape == (20,) and est.n_features_in_ == 20
    assert est.status_ == "converged" and est.n_iter_ > 0 and est.intercept_ == 0.0
    np.testing.assert_allclose(est.predict(X), y, atol=1e-6)  # an interpolator
    assert est.score(X, y) > 1 - 1e-9
    assert est.score(P.X_test, P.y_test) < 1.0
    np.testing.assert_allclose(est.alpha_eff_, 0.1, rtol=1e-9)  # gradient flow conserves u*v
    np.testing.assert_allclose(est.gain_, 0.0, atol=1e-9)


def test_equals_dln_simulate(data):
    from dln.simulate import simulate

    X, y, P = data
    est = DiagonalLinearNetwork(method="fgr", alpha=0.05, gamma=0.05, eps=0.1, rtol=1e-6).fit(X, y)
    rec = simulate(type(P)(X, y), "fgr", alpha=0.05, gamma=0.05, eps=0.1, rtol=1e-6, predict=False)[0]
    np.testing.assert_array_equal(est.coef_, rec["_beta"])
    np.testing.assert_array_equal(est.alpha_eff_, rec["_alpha_eff"])
    assert np.all(est.alpha_eff_ < 0.05)  # GR makes it richer (positive gains)
    assert np.all(est.gain_ > 0)


def test_get_params_set_params_and_clone(data):
    X, y, _ = data
    est = DiagonalLinearNetwork(method="gr", alpha=0.2, gamma=0.05, rtol=1e-6)
    params = est.get_params()
    assert params["method"] == "gr" and params["alpha"] == 0.2 and params["gamma"] == 0.05 and params["eps"] is None
    assert set(params) == {"method", "alpha", "gamma", "eps", "rho", "flood_level", "variant", "time", "lr",
                           "batch_size", "label_noise", "momentum", "depth", "rtol", "max_steps", "fit_intercept",
                           "random_state"}
    clone = type(est)(**est.get_params())
    assert clone.get_params() == params and not hasattr(clone, "coef_")
    np.testing.assert_array_equal(clone.fit(X, y).coef_, est.fit(X, y).coef_)
    assert est.set_params(alpha=0.5, gamma=0.1) is est
    assert est.get_params()["alpha"] == 0.5 and est.gamma == 0.1
    with pytest.raises(ValueError, match="Invalid parameter 'beta'"):
        est.set_params(beta=1)
    assert repr(DiagonalLinearNetwork(method="gr", gamma=0.1)) == "DiagonalLinearNetwork(gamma=0.1, method='gr')"


def test_set_params_does_not_validate_but_fit_does(data):
    X, y, _ = data
    est = DiagonalLinearNetwork().set_params(gamma=0.1)  # gf does not use gamma: stored, not checked
    with pytest.raises(DLNError, match="'gamma' parameter of gf must be left unset"):
        est.fit(X, y)
    with pytest.raises(DLNError, match="'alpha'"):
        DiagonalLinearNetwork(alpha=-1.0).fit(X, y)
    with pytest.raises(DLNError, match="'method'"):
        DiagonalLinearNetwork(method="adam").fit(X, y)


def test_input_validation(data):
    X, y, _ = data
    est = DiagonalLinearNetwork(rtol=1e-6)
    with pytest.raises(NotFittedError):
        est.predict(X)
    assert issubclass(NotFittedError, ValueError) and issubclass(NotFittedError, AttributeError)
    Xn = X.copy()
    Xn[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        est.fit(Xn, y)
    with pytest.raises(ValueError, match="Reshape your data"):
        est.fit(X[:, 0], y)
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        est.fit(X, y[:-1])
    with pytest.raises(ValueError, match="requires y"):
        est.fit(X, None)
    with pytest.raises(ValueError, match="0 feature"):
        est.fit(np.empty((3, 0)), np.ones(3))
    with pytest.raises(ValueError, match="Complex data not supported"):
        est.fit(X + 1j, y)
    est.fit(X, y)
    with pytest.raises(ValueError, match="X has 3 features, but DiagonalLinearNetwork is expecting 20 features"):
        est.predict(X[:, :3])
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        est.fit(X, y[:, None])
    assert any("column-vector y" in str(x.message) for x in w)


def test_fit_intercept(data):
    X, y, _ = data
    plain = DiagonalLinearNetwork(rtol=1e-6).fit(X - X.mean(0), y - y.mean())
    est = DiagonalLinearNetwork(rtol=1e-6, fit_intercept=True).fit(X, y + 3.0)
    np.testing.assert_allclose(est.coef_, plain.coef_, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(est.predict(X), y + 3.0, atol=1e-6)
    assert est.intercept_ == pytest.approx(3.0 + y.mean() - X.mean(0) @ est.coef_)


def test_discrete_time_and_sgd_are_reproducible(data):
    X, y, _ = data
    kw = dict(time="discrete", lr=0.05, batch_size=4, alpha=1.0, max_steps=500, random_state=3)
    a = DiagonalLinearNetwork(**kw).fit(X, y)
    b = DiagonalLinearNetwork(**kw).fit(X, y)
    c = DiagonalLinearNetwork(**{**kw, "random_state": 4}).fit(X, y)
    np.testing.assert_array_equal(a.coef_, b.coef_)
    assert not np.array_equal(a.coef_, c.coef_)


def test_pickle_round_trip(data):
    X, y, _ = data
    est = DiagonalLinearNetwork(rtol=1e-6).fit(X, y)
    again = pickle.loads(pickle.dumps(est))
    np.testing.assert_array_equal(again.predict(X), est.predict(X))
    assert again.get_params() == est.get_params()


def test_score_with_sample_weight(data):
    X, y, _ = data
    est = DiagonalLinearNetwork(rtol=1e-6).fit(X, y)
    w = np.linspace(1, 2, len(y))
    assert est.score(X, y, sample_weight=w) == pytest.approx(1.0, abs=1e-9)
    with pytest.raises(ValueError, match="sample_weight"):
        est.score(X, y, sample_weight=w[:-1])


def test_scikit_learn_estimator_checks():
    """scikit-learn's own checks (~50 checks, ~12 s; scikit-learn is in the test extra, and the
    estimator itself never imports it)."""
    pytest.importorskip("sklearn")
    from sklearn.utils.estimator_checks import check_estimator

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "does not inherit from BaseEstimator", SkipTestWarning, ...
        results = check_estimator(DiagonalLinearNetwork(rtol=1e-6), on_fail=None)
    failed = [(r["check_name"], repr(r["exception"])) for r in results if r["status"] == "failed"]
    assert not failed, failed


def test_a_few_scikit_learn_checks_if_installed():
    """clone and cross_val_score, the two entry points users call first."""
    pytest.importorskip("sklearn")
    from sklearn.base import clone
    from sklearn.model_selection import cross_val_score

    X, y = make_problem(n=30, d=6, k=2, seed=0).X, make_problem(n=30, d=6, k=2, seed=0).y
    est = DiagonalLinearNetwork(rtol=1e-6)
    c = clone(est)
    assert c.get_params() == est.get_params()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scores = cross_val_score(est, X, y, cv=3)
    assert np.all(scores > 0.99)


def test_the_constructor_takes_every_run_parameter_of_the_table():
    """get_params comes from dln.params.TABLE: __init__ must take exactly those names (an entry added
    to the table without its constructor argument fails here), and fit passes each to run_batch."""
    import inspect

    from dln.params import TABLE

    init = [p for p in inspect.signature(DiagonalLinearNetwork.__init__).parameters if p != "self"]
    assert sorted(init) == DiagonalLinearNetwork._get_param_names()
    assert {p.name for p in TABLE if p.group in ("method", "time")} <= set(init)


def test_momentum_zero_is_gd_and_momentum_changes_the_fit():
    """momentum=0 fits the GD network bit for bit; μ = 0.5 takes fewer steps (effective step η/(1−μ))."""
    from dln.problem import make_problem

    P = make_problem(n=10, d=20, k=2, seed=1)
    gd = DiagonalLinearNetwork(time="discrete", lr=0.05).fit(P.X, P.y)
    hb0 = DiagonalLinearNetwork(time="discrete", lr=0.05, momentum=0.0).fit(P.X, P.y)
    hb = DiagonalLinearNetwork(time="discrete", lr=0.05, momentum=0.5).fit(P.X, P.y)
    assert np.array_equal(gd.coef_, hb0.coef_) and gd.n_iter_ == hb0.n_iter_
    assert hb.status_ == "converged" and hb.n_iter_ < 0.6 * gd.n_iter_
