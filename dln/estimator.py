"""A scikit-learn-compatible estimator: ``DiagonalLinearNetwork`` (no scikit-learn dependency).

``fit`` trains one diagonal linear network β = u⊙u − v⊙v (docs/theory.md §1; depth D: u^D − v^D) from
u(0) = v(0) = α with the chosen method (``dln.methods``) in continuous or discrete time, through
``dln.simulate.run_batch``.  The fitted attributes follow scikit-learn's conventions::

    coef_            β at the end of training, shape (n_features,)
    intercept_       0.0, or ȳ − x̄·β with fit_intercept=True (the network is fitted on centred data)
    alpha_eff_       sqrt(u⊙v) at the end: the effective initialization (docs/theory.md §4)
    gain_            −ln(alpha_eff_ / α) per coordinate ("richer" where positive)
    status_          'converged', 'diverged' or 'max_steps'
    train_loss_      (1/2n)‖Xβ − y‖² on the (centred) training data
    n_iter_          steps taken
    n_features_in_   number of features seen in fit

The hyper-parameters keep the CLI names (docs/design.md §5): ``method``, ``alpha``, ``gamma``, ``eps``,
``rho``, ``flood_level``, ``variant``, ``time``, ``lr``, ``batch_size``, ``label_noise``, ``momentum``
(the method and time parameters of the parameter table, ``dln.params``).  As in
``dln simulate``, a hyper-parameter the method does not use is an error (raised by ``fit``: the
constructor and ``set_params`` only store values, as scikit-learn requires).
"""
from __future__ import annotations

import inspect
import sys
import warnings

import numpy as np

from .errors import fail
from .integrate import DEFAULT_RTOL
from .params import TABLE, default

#: The parameters of a run the estimator takes (``dln.params.TABLE``), then its own.
RUN_PARAMS = tuple(p.name for p in TABLE if p.group in ("method", "time"))
OWN_PARAMS = ("depth", "rtol", "max_steps", "fit_intercept", "random_state")

__all__ = ["DiagonalLinearNetwork", "NotFittedError"]


class NotFittedError(ValueError, AttributeError):
    """Raised by ``predict``/``score`` before ``fit``.

    When scikit-learn has been imported (a caller that can catch its ``NotFittedError`` has
    imported it), the raised exception is also an instance of scikit-learn's class: scikit-learn
    is looked up at raise time, never imported here, so ``import dln`` stays light."""


def _sklearn_exception(name: str, base: type) -> type:
    """``base``, or a subclass of both ``base`` and scikit-learn's ``name`` when scikit-learn is loaded."""
    module = sys.modules.get("sklearn.exceptions")
    other = getattr(module, name, None)
    if other is None or issubclass(base, other):
        return base
    if issubclass(other, base):  # DataConversionWarning is a UserWarning
        return other
    if (base, other) not in _MIXED:
        _MIXED[(base, other)] = type(base.__name__, (base, other), {"__module__": __name__})
    return _MIXED[(base, other)]


_MIXED: dict = {}


def _check_X(X, who: str, n_features: int | None = None) -> np.ndarray:
    """X as a finite float64 matrix (n_samples ≥ 1, n_features ≥ 1), with scikit-learn's messages."""
    if hasattr(X, "toarray") or type(X).__module__.startswith("scipy.sparse"):
        raise TypeError(f"{who} does not accept sparse input X; convert it with X.toarray() (a dense array).")
    if hasattr(X, "to_numpy") and not isinstance(X, np.ndarray):
        X = X.to_numpy()
    arr = np.asarray(X)
    if np.iscomplexobj(arr):
        raise ValueError("Complex data not supported: X must be real.")
    if arr.dtype.kind not in "biuf":
        arr = np.asarray(arr, dtype=np.float64)  # object arrays of numbers; raises TypeError otherwise
    arr = np.asarray(arr, dtype=np.float64)
    if arr.ndim == 1:
        raise ValueError(f"Expected 2D array, got 1D array instead: array={arr!r}. Reshape your data either using "
                         "array.reshape(-1, 1) if your data has a single feature or array.reshape(1, -1) if it "
                         "contains a single sample.")
    if arr.ndim != 2:
        raise ValueError(f"Expected a 2D array X, got an array of shape {arr.shape} instead.")
    if arr.shape[0] < 1:
        raise ValueError(f"Found array with 0 sample(s) (shape={arr.shape}) while a minimum of 1 is required by {who}.")
    if arr.shape[1] < 1:
        raise ValueError(f"Found array with 0 feature(s) (shape={arr.shape}) while a minimum of 1 is required by {who}.")
    if not np.all(np.isfinite(arr)):
        kind = "NaN" if np.isnan(arr).any() else "infinity"
        raise ValueError(f"Input X contains {kind}: {who} needs finite values (no NaN or inf).")
    if n_features is not None and arr.shape[1] != n_features:
        raise ValueError(f"X has {arr.shape[1]} features, but {who} is expecting {n_features} features as input.")
    return np.ascontiguousarray(arr)


def _check_y(y, n: int, who: str) -> np.ndarray:
    if y is None:
        raise ValueError(f"{who} requires y to be passed, but the target y is None.")
    if hasattr(y, "to_numpy") and not isinstance(y, np.ndarray):
        y = y.to_numpy()
    arr = np.asarray(y)
    if np.iscomplexobj(arr):
        raise ValueError("Complex data not supported: y must be real.")
    arr = np.asarray(arr, dtype=np.float64)
    if arr.ndim == 2 and arr.shape[1] == 1:
        warnings.warn("A column-vector y was passed when a 1d array was expected. Please change the shape of y to "
                      "(n_samples,), for example using ravel().",
                      _sklearn_exception("DataConversionWarning", UserWarning), stacklevel=3)
        arr = arr.ravel()
    if arr.ndim != 1:
        raise ValueError(f"y should be a 1d array (one target per sample), got an array of shape {arr.shape} instead.")
    if arr.shape[0] != n:
        raise ValueError(f"Found input variables with inconsistent numbers of samples: [{n}, {arr.shape[0]}].")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"Input y contains NaN or infinity: {who} needs finite targets.")
    return arr


class DiagonalLinearNetwork:
    """Diagonal linear network regressor β = u⊙u − v⊙v trained by GF, GR, F/B/C-GR, SAM or flooding.

    Parameters
    ----------
    method : {'gf', 'gr', 'fgr', 'bgr', 'cgr', 'usam', 'sam', 'flood'}
        Training method (``dln.methods``).
    alpha : float
        Initialization scale u(0) = v(0) = α > 0 (small α: rich, sparse regime; docs/theory.md §2).
    gamma, eps, rho, flood_level : float, optional
        Hyper-parameters of the method (GR strength γ, finite-difference step ε, SAM radius ρ,
        flooding level b); only the ones the method uses may be set.
    variant : {'full', 'per-sample'}
        Penalty on the full-batch gradient or per example (docs/theory.md §7.5).
    time : {'flow', 'discrete'}
        Continuous-time flow (integrated to convergence) or discrete steps with learning rate ``lr``.
    lr, batch_size, label_noise, momentum : optional
        Discrete time only: learning rate η, SGD mini-batch size, label-noise std, heavy-ball
        momentum μ ∈ [0, 1) (as ``torch.optim.SGD(momentum=μ)``; 0 or None is GD).
    depth : int
        Depth D ≥ 2 of β = u^D − v^D.
    rtol : float
        Flow tolerance.
    max_steps : int, optional
        Cap on steps.
    fit_intercept : bool
        Centre X and y before training and set ``intercept_`` (the network itself has no bias).
    random_state : int or None
        Seed of the SGD / label-noise randomness (None: fresh entropy).
    """

    _estimator_type = "regressor"

    def __init__(self, method=default("method"), alpha=default("alpha"), gamma=None, eps=None, rho=None,
                 flood_level=None, variant=default("variant"), time=default("time"), lr=None, batch_size=None, label_noise=None, momentum=None, depth=2, rtol=DEFAULT_RTOL,
                 max_steps=None, fit_intercept=False, random_state=0):
        self.method = method
        self.alpha = alpha
        self.gamma = gamma
        self.eps = eps
        self.rho = rho
        self.flood_level = flood_level
        self.variant = variant
        self.time = time
        self.lr = lr
        self.batch_size = batch_size
        self.label_noise = label_noise
        self.momentum = momentum
        self.depth = depth
        self.rtol = rtol
        self.max_steps = max_steps
        self.fit_intercept = fit_intercept
        self.random_state = random_state

    # -- parameters (scikit-learn protocol) ------------------------------------------------------
    @classmethod
    def _get_param_names(cls):
        """The run parameters of the table and the estimator's own (``__init__`` takes exactly these)."""
        return sorted(RUN_PARAMS + OWN_PARAMS)

    def get_params(self, deep=True):
        """The constructor arguments as a dict (``type(est)(**est.get_params())`` is a clone)."""
        return {name: getattr(self, name) for name in self._get_param_names()}

    def set_params(self, **params):
        """Set constructor arguments; returns self.  Values are checked by ``fit``."""
        valid = self._get_param_names()
        for key, value in params.items():
            if key not in valid:
                raise ValueError(f"Invalid parameter {key!r} for estimator {type(self).__name__}. "
                                 f"Valid parameters are: {valid!r}.")
            setattr(self, key, value)
        return self

    def __repr__(self):
        defaults = {p.name: p.default for p in inspect.signature(type(self).__init__).parameters.values()
                    if p.name != "self"}
        shown = [f"{k}={v!r}" for k, v in self.get_params().items() if not _same(v, defaults[k])]
        return f"{type(self).__name__}({', '.join(shown)})"

    def __sklearn_tags__(self):
        """Tags for scikit-learn ≥ 1.6 (imported only when scikit-learn asks)."""
        from sklearn.utils import InputTags, RegressorTags, Tags, TargetTags

        return Tags(estimator_type="regressor", target_tags=TargetTags(required=True, single_output=True),
                    transformer_tags=None, classifier_tags=None, regressor_tags=RegressorTags(),
                    input_tags=InputTags(two_d_array=True), requires_fit=True)

    # -- fit / predict -----------------------------------------------------------------------------
    def fit(self, X, y):
        """Train the network on (X, y); returns self."""
        from .problem import Problem
        from .simulate import run_batch

        who = type(self).__name__
        X = _check_X(X, who)
        y = _check_y(y, X.shape[0], who)
        x_mean = X.mean(axis=0) if self.fit_intercept else np.zeros(X.shape[1])
        y_mean = float(y.mean()) if self.fit_intercept else 0.0
        problem = Problem(X - x_mean, y - y_mean)
        for name in RUN_PARAMS:
            value = getattr(self, name)
            if value is not None and np.ndim(value) > 0:  # one network: no per-run or per-coordinate vectors
                raise fail(name, who, "a scalar (the estimator fits one network; sweep several values with "
                           "dln.sweep)", np.asarray(value) if np.size(value) <= 6 else f"shape {np.shape(value)}")
        seed = self.random_state
        if seed is None:
            seed = np.random.SeedSequence().entropy
        result = run_batch(problem, **{name: getattr(self, name) for name in RUN_PARAMS}, D=self.depth, seed=seed,
                           rtol=self.rtol, max_steps=self.max_steps)
        self.coef_ = np.array(result.beta[0])
        self.intercept_ = float(y_mean - x_mean @ self.coef_) if self.fit_intercept else 0.0
        self.alpha_eff_ = np.array(result.alpha_eff[0])
        self.gain_ = -0.5 * (result.log_c[0] - result.log_c0[0])
        self.status_ = str(result.status[0])
        self.train_loss_ = float(result.loss[0])
        self.n_iter_ = int(result.steps[0])
        self.n_features_in_ = X.shape[1]
        return self

    def _check_fitted(self):
        if not hasattr(self, "coef_"):
            error = _sklearn_exception("NotFittedError", NotFittedError)
            raise error(f"This {type(self).__name__} instance is not fitted yet. Call 'fit' with "
                        "appropriate arguments before using this estimator.")

    def __sklearn_is_fitted__(self):
        return hasattr(self, "coef_")

    def predict(self, X):
        """Xβ + intercept."""
        self._check_fitted()
        X = _check_X(X, type(self).__name__, self.n_features_in_)
        return X @ self.coef_ + self.intercept_

    def score(self, X, y, sample_weight=None):
        """Coefficient of determination R² = 1 − Σw(y − ŷ)² / Σw(y − ȳ_w)² (1.0 is perfect)."""
        y_pred = self.predict(X)
        y = _check_y(y, y_pred.shape[0], type(self).__name__)
        w = np.ones_like(y) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64).ravel()
        if w.shape != y.shape:
            raise ValueError(f"sample_weight must have shape ({y.shape[0]},); got {w.shape} instead.")
        mean = np.average(y, weights=w)
        ss_res = float(np.sum(w * (y - y_pred) ** 2))
        ss_tot = float(np.sum(w * (y - mean) ** 2))
        if ss_tot == 0.0:
            return 1.0 if ss_res == 0.0 else 0.0
        return 1.0 - ss_res / ss_tot


def _same(a, b):
    try:
        return bool(a == b) and type(a) is type(b)
    except Exception:  # noqa: BLE001 - arrays and exotic values are "not the default"
        return False
