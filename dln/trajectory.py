"""The trajectory file format ``dln-trajectory/1``: the recorded paths of one batch of runs.

Written by ``dln simulate --save-trajectory FILE.npz`` (one run) and ``dln sweep
--save-trajectories`` (``trajectories/chunk-XXXXX.npz``, one file per batch), read back by
:func:`load_trajectory` (``dln.load_trajectory``).  A plain NumPy ``.npz`` (no pickled objects:
``np.load(path)`` reads it without dln), B runs, K recorded points, dimension d:

==================  =============  ==========================================================
key                 shape / type   content
==================  =============  ==========================================================
``format``          str            ``"dln-trajectory/1"``
``runs``            str (JSON)     list of B objects, one per run, keyed like the columns of a
                                   sweep's ``results.csv``: ``method variant time alpha gamma eps
                                   rho flood_level lr batch_size label_noise data n d k noise
                                   design seed`` (null where a flag does not apply), ``depth``,
                                   and from a sweep ``run`` and ``run_id`` (null otherwise), which
                                   match the run's row of results.csv
``info``            str (JSON)     ``record_every`` (discrete time: every k-th step was recorded),
                                   ``thin_every`` (every j-th recorded point was kept),
                                   ``max_points``, ``dln_version``
``t``               (K, B)         time of each point: the flow's t, or steps·η in discrete time
``beta``            (K, B, d)      β = u^D − v^D at each point
``loss``            (K, B)         L(β) = (1/2n)‖Xβ − y‖² of that β (docs/theory.md §1)
``log_c``           (K, B, d)      ln|u⊙v| at each point: α_eff = exp(log_c/2) (docs/theory.md §1, §4)
``beta_final``      (B, d)         β at the end (equal to the last point)
``alpha_eff``       (B, d)         sqrt(|u⊙v|) at the end, as ``simulate --json``'s ``alpha_eff``
``log_c_final``     (B, d)         ln|u⊙v| at the end
``status``          (B,) str       converged, diverged or max_steps
``beta_star``       (d,)           the ground truth, only when the data has one
==================  =============  ==========================================================

Which points are recorded (the rule; at most ``MAX_POINTS`` + 2 = 2002 per file):

- continuous time: the initial state and every accepted step of the batch (steps adapt to the
  dynamics: dense where it is fast).  A run that has stopped repeats its last point while the
  others go on.  With more than ``MAX_POINTS`` + 2 points, every j-th point is kept,
  j = ⌈(K − 1)/(MAX_POINTS − 1)⌉, plus the last.
- discrete time: the initial state (t = 0), the states after steps 1, k + 1, 2k + 1, … and the
  final state, with k the smallest power of two such that at most ``MAX_POINTS`` of these steps
  were taken by the batch (k = 1 up to MAX_POINTS steps; between MAX_POINTS/2 and MAX_POINTS
  points beyond).  The batch runs once: its recorder keeps every step until it holds MAX_POINTS
  points, then drops every other point and doubles k whenever it would hold more
  (``dln.discrete.Recording``), so neither the run length nor ``max_steps`` is needed in advance.

The loss is recomputed from β at every point (it is a function of β alone), so ``loss[i]`` always
belongs to ``beta[i]``.
"""
from __future__ import annotations

import json
import math
import os
import zipfile
from dataclasses import dataclass

import numpy as np

from .errors import DLNError, fail

FORMAT = "dln-trajectory/1"
#: Upper bound (about) on the recorded points of a file (see the module docstring for the rule).
MAX_POINTS = 2000
#: Per-run metadata keys (named like results.csv columns, docs/design.md §5), in this order.
RUN_KEYS = ("run", "run_id", "method", "variant", "time", "alpha", "gamma", "eps", "rho", "flood_level", "lr",
            "batch_size", "label_noise", "momentum", "depth", "data", "n", "d", "k", "noise", "design", "seed")
PATH_KEYS = ("t", "beta", "loss", "log_c")
FINAL_KEYS = ("beta_final", "alpha_eff", "log_c_final", "status")
REQUIRED_KEYS = ("format", "runs", "info") + PATH_KEYS + FINAL_KEYS
_WHERE = "load_trajectory"


@dataclass
class TrajectoryFile:
    """The content of a trajectory file: B runs, K recorded points, dimension d.

    Attributes
    ----------
    path : str
    runs : list of dict
        Per-run metadata (keys :data:`RUN_KEYS`; ``run_id`` matches the run's row of a sweep's
        results.csv).
    info : dict
        ``record_every``, ``thin_every``, ``max_points``, ``dln_version``.
    t, loss : ndarray (K, B)
    beta, log_c : ndarray (K, B, d)
    beta_final, alpha_eff, log_c_final : ndarray (B, d)
    status : ndarray (B,) of str
    beta_star : ndarray (d,) or None
    """

    path: str
    runs: list
    info: dict
    t: np.ndarray
    beta: np.ndarray
    loss: np.ndarray
    log_c: np.ndarray
    beta_final: np.ndarray
    alpha_eff: np.ndarray
    log_c_final: np.ndarray
    status: np.ndarray
    beta_star: np.ndarray | None = None

    @property
    def n_runs(self) -> int:
        return self.t.shape[1]

    @property
    def n_points(self) -> int:
        return self.t.shape[0]

    @property
    def d(self) -> int:
        return self.beta.shape[2]

    @property
    def run_ids(self) -> list:
        """The sweep's run_id of each run (None for runs of ``dln simulate``)."""
        return [r.get("run_id") for r in self.runs]

    @property
    def alpha_eff_path(self) -> np.ndarray:
        """α_eff = sqrt(|u⊙v|) = exp(log_c/2) at every point, (K, B, d) (docs/theory.md §1)."""
        return np.exp(0.5 * self.log_c)


# ---------------------------------------------------------------------------------------------
# recording
# ---------------------------------------------------------------------------------------------
def record_runs(run, *, time: str, max_steps: int | None = None, max_points: int = MAX_POINTS):
    """Run a batch with its path recorded by the rule of this module (one run of the batch).

    Parameters
    ----------
    run : callable
        ``run(record) -> dln.integrate.Result``; ``record`` is True in continuous time, and in
        discrete time a ``dln.discrete.Recording`` (every step, thinned to ``max_points``).
    time : {"flow", "discrete"}
    max_steps : int, optional
        Not needed (the recording does not depend on the run length); accepted for older callers.

    Returns
    -------
    Result
        With ``info["record_every"]`` set (None in continuous time; the final stride k in discrete
        time).
    """
    if time == "flow":
        result = run(True)
        result.info["record_every"] = None
        return result
    from .discrete import Recording

    return run(Recording(every=1, max_points=max_points))  # iterate sets info["record_every"]


def _initial_point(result):
    """(t, β, log_c) at t = 0 from the initial coordinates kept in the Result, ln c0 = a0 + b0 and
    z0 = a0 − b0, with u0, v0 > 0 (as dln.model.initial_state makes them)."""
    from .model import State, beta as beta_of

    a0 = 0.5 * (result.log_c0 + result.z0)
    b0 = 0.5 * (result.log_c0 - result.z0)
    ones = np.ones_like(a0)
    with np.errstate(over="ignore", invalid="ignore"):
        b = beta_of(State(a0, b0, ones, ones), result.direction.D)
    return np.zeros(a0.shape[0]), b, result.log_c0


def path_of(result, max_points: int = MAX_POINTS) -> tuple[dict, int]:
    """The recorded path of a Result as arrays ``t (K, B)``, ``beta``, ``log_c`` (K, B, d),
    ``loss`` (K, B), with the initial and final states included and at most ~max_points points.

    Returns the arrays and the thinning step j (every j-th point kept; 1 = all)."""
    tr = result.trajectory
    ts, betas, logcs = [], [], []
    if tr is not None:
        ts, betas, logcs = [tr.t], [tr.beta], [tr.log_c]
    if tr is None or not np.all(tr.t[0] == 0.0):  # discrete time records from the first step on
        t0, b0, c0 = _initial_point(result)
        ts.insert(0, t0[None])
        betas.insert(0, b0[None])
        logcs.insert(0, c0[None])
    if tr is None or not (np.array_equal(tr.t[-1], result.t, equal_nan=True)
                          and np.array_equal(tr.log_c[-1], result.log_c, equal_nan=True)):
        ts.append(np.asarray(result.t, dtype=np.float64)[None])
        betas.append(result.beta[None])
        logcs.append(result.log_c[None])
    t, beta, log_c = (np.concatenate(x).astype(np.float64, copy=False) for x in (ts, betas, logcs))
    K = t.shape[0]
    j = 1
    if K > max_points + 2:  # the initial and final points come on top of the recorded ones
        j = math.ceil((K - 1) / (max_points - 1))
        keep = np.unique(np.r_[np.arange(0, K, j), K - 1])
        t, beta, log_c = t[keep], beta[keep], log_c[keep]
    with np.errstate(over="ignore", invalid="ignore"):  # diverged runs: inf/NaN, reported by status
        loss = result.direction.problem.loss(beta)
    return dict(t=t, beta=beta, loss=loss, log_c=log_c), j


def trajectory_arrays(result, runs=None, max_points: int = MAX_POINTS) -> dict:
    """The arrays of a trajectory file for a Result (see the module docstring).

    ``runs``: one dict per run whose :data:`RUN_KEYS` become the run's metadata (e.g. the records
    of ``dln.simulate.records``); missing keys are taken from the Result where it knows them."""
    from . import __version__

    B = result.beta.shape[0]
    if runs is None:
        from .simulate import records

        runs = records(result, predict=False)
    if len(runs) != B:
        raise fail("runs", "save_trajectory", f"one dict per run ({B})", len(runs))
    meta = [_run_meta(r, result) for r in runs]
    path, thin = path_of(result, max_points)
    flow = result.info.get("lr") is None
    record_every = result.info.get("record_every", None if flow else 1)
    arrays = dict(format=np.asarray(FORMAT), runs=np.asarray(json.dumps(meta)),
                  info=np.asarray(json.dumps(dict(record_every=record_every,
                                                  thin_every=thin, max_points=max_points,
                                                  dln_version=__version__))),
                  **path, beta_final=result.beta, alpha_eff=result.alpha_eff, log_c_final=result.log_c,
                  status=np.asarray(result.status, dtype=str))
    bstar = result.direction.problem.beta_star
    if bstar is not None:
        arrays["beta_star"] = bstar
    return arrays


def _plain(v):
    if isinstance(v, (np.floating, np.integer, np.bool_)):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def _run_meta(rec: dict, result) -> dict:
    meta = {k: _plain(rec.get(k)) for k in RUN_KEYS}
    if meta["time"] is None:
        meta["time"] = "flow" if result.info.get("lr") is None else "discrete"
    if meta["depth"] is None:
        meta["depth"] = int(result.direction.D)
    if meta["d"] is None:
        meta["d"] = int(result.direction.problem.d)
    if meta["n"] is None:
        meta["n"] = int(result.direction.problem.n)
    return meta


def write_trajectory(path, arrays: dict, runs=None) -> str:
    """Write ``arrays`` (from :func:`trajectory_arrays`) to ``path`` atomically (temporary file in
    the same folder, fsync, ``os.replace``).  ``runs``: per-run dicts whose :data:`RUN_KEYS`
    override the stored metadata (a sweep adds ``run``, ``run_id`` and the data spec)."""
    path = os.fspath(path)
    if runs is not None:
        meta = json.loads(str(arrays["runs"]))
        if len(runs) != len(meta):
            raise fail("runs", "save_trajectory", f"one dict per run ({len(meta)})", len(runs))
        for m, r in zip(meta, runs):
            m.update({k: _plain(r[k]) for k in RUN_KEYS if k in r})
        arrays = dict(arrays, runs=np.asarray(json.dumps(meta)))
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def save_trajectory(path, result, runs=None, max_points: int = MAX_POINTS) -> str:
    """Save the recorded path of a batch (``dln.integrate.Result`` with a trajectory, e.g. from
    :func:`record_runs`) as a ``dln-trajectory/1`` file; returns the path."""
    return write_trajectory(path, trajectory_arrays(result, runs, max_points))


# ---------------------------------------------------------------------------------------------
# loading
# ---------------------------------------------------------------------------------------------
def _bad(path, why) -> DLNError:
    return fail("path", _WHERE, f"a {FORMAT} file (written by dln simulate --save-trajectory or dln sweep "
                "--save-trajectories)", f"{os.fspath(path)!r} ({why})")


def load_trajectory(path) -> TrajectoryFile:
    """Read a ``dln-trajectory/1`` file (see the module docstring for the format).

    Raises
    ------
    DLNError
        If the file is missing, unreadable, or not in this format (no or another ``format``,
        missing keys, inconsistent shapes): one line naming the file.
    """
    spath = os.fspath(path)
    if not os.path.isfile(spath):
        raise fail("path", _WHERE, "an existing file", spath)
    try:
        with np.load(spath, allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise _bad(spath, f"not a readable .npz: {type(exc).__name__}") from None
    if "format" not in data:
        raise _bad(spath, "no 'format' key: written by an older dln or another program")
    fmt = str(data["format"])
    if fmt != FORMAT:
        raise _bad(spath, f"format {fmt!r}")
    missing = [k for k in REQUIRED_KEYS if k not in data]
    if missing:
        raise _bad(spath, "missing " + ", ".join(repr(k) for k in missing))
    try:
        runs = json.loads(str(data["runs"]))
        info = json.loads(str(data["info"]))
    except json.JSONDecodeError:
        raise _bad(spath, "its 'runs' or 'info' is not JSON") from None
    t, beta = data["t"], data["beta"]
    ok = t.ndim == 2 and beta.ndim == 3 and isinstance(runs, list) and isinstance(info, dict)
    if ok:
        K, B, d = beta.shape
        shapes = dict(t=(K, B), loss=(K, B), log_c=(K, B, d), beta_final=(B, d), alpha_eff=(B, d),
                      log_c_final=(B, d), status=(B,))
        ok = all(data[k].shape == s for k, s in shapes.items()) and len(runs) == B and K >= 1
        ok = ok and ("beta_star" not in data or data["beta_star"].shape == (d,))
    if not ok:
        raise _bad(spath, "inconsistent array shapes")
    return TrajectoryFile(path=spath, runs=runs, info=info, t=t, beta=beta, loss=data["loss"], log_c=data["log_c"],
                          beta_final=data["beta_final"], alpha_eff=data["alpha_eff"],
                          log_c_final=data["log_c_final"], status=data["status"].astype(str),
                          beta_star=data.get("beta_star"))
