"""Discrete time: update rules on a batch of runs (docs/design.md §2–§3, docs/theory.md §4–§6, §9).

A discrete run is three orthogonal pieces, none of them a branch of the loop:

- an **update rule** (:class:`GD`, :class:`HeavyBall`): from the rates (da, db) = (d ln|u|/dt,
  d ln|v|/dt) of the method (``dln.methods.Direction``) it makes the multiplicative factors of the
  step, u ← u⊙f_u, v ← v⊙f_v; GD's factors are f = 1 + η·(da, db).  A rule is a pair
  ``state = rule.init(B, d)`` / ``state = rule.update(rates, eta, state, out)`` (optax-like) whose
  state is a tuple of per-run arrays (leading axis: the runs), e.g. a momentum buffer;
- a **data source** (:class:`FullBatch`, :class:`MiniBatches`): the rows each step is evaluated on
  (the full training set; per-run mini-batches from per-run seeds or given indices; labels with
  Gaussian noise);
- the **stopping rules** of ``dln.stopping`` (shared with ``flow``).

The loop applies every rule's factors the same exact, sign-aware way (docs/theory.md §4 lemma, §13
item 8): ln|u| += ln|f_u|, sign(u) *= sign(f_u), likewise for v; so tiny weights (α = 1e-200) stay
representable and sign flips (|2ηg| > 1, docs/theory.md §5.3) are exact.  Along the run it keeps
the exact discrete bookkeeping: ln|u⊙v| = a + b, the tilt Φ (docs/theory.md §5.1, §6.1) and the
gain integral η·Σ gain.

**Deferred checks.**  A step itself costs a few NumPy calls (the rates, the factors, ln|f|, one
addition); the statuses, Φ, the gain integral, sign flips, averages and recorded points are
computed afterwards for a block of up to :data:`MAX_BLOCK` steps at once, from the factors and the
rates kept for the block.  The result is the same as checking every step: a run's status is
decided on each step of the block (``dln.stopping.status``), and when some run stops inside the
block the batch is rewound to that step -- states, Φ and the gain are exact sequential sums
(in step order) of the kept per-step terms, and the rule's state is the one kept for that
step -- the stopped runs leave the batch there, and the others go on from the same point.  So the
runs compute in the same batches, step for step, as a loop that checks every step.

**The fused GD kernel.**  Plain GD of gradient flow at depth 2 on the full batch (the common case)
takes its steps in :class:`_GFKernel`: the weights in the linear domain inside a block, four NumPy
calls per step, re-synced from the exact log-domain path at every block; the deferred check is the
same.  It equals the generic steps to round-off, not bit for bit (``FUSED = False`` turns it off).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import stopping
from .errors import check_int, check_real, fail
from .integrate import Result, Trajectory, _batch_size
from .methods import Data, Direction
from .model import State, beta as beta_of
from .params import check as check_param

#: Longest block of steps checked at once, and its size budget (steps × runs × d elements): a
#: block's kept factors and rates stay in cache, and a large batch is checked every step or two.
MAX_BLOCK = 64
BLOCK_ELEMENTS = 1 << 14
#: Steps of random draws made at a time per run (mini-batch indices, label noise): blocks never
#: cross a multiple of it, so a rewound block re-reads the same draws.
CHUNK = 256


# ---------------------------------------------------------------------------------------------
# update rules
# ---------------------------------------------------------------------------------------------
class GD:
    """Gradient descent on the weights, w ← w − η·G(w) (GD is GF in discrete time, docs/design.md §2).

    With G the method's direction and its log-rates da = −G_u/u, db = −G_v/v, the step is
    u ← u⊙(1 + η·da), v ← v⊙(1 + η·db): the factors f = 1 + η·(da, db) (docs/theory.md §4 lemma;
    canonical GD: da = −2g, db = 2g, x = 2ηg, docs/theory.md §5.1).  No state.
    """

    def init(self, B: int, d: int) -> tuple:
        return ()

    def update(self, rates, eta, state: tuple, out: np.ndarray) -> tuple:
        """Write the factors of the m runs into ``out`` (m, 2, d); ``eta`` is (m, 1)."""
        np.multiply(eta, rates.da, out=out[:, 0])
        np.multiply(eta, rates.db, out=out[:, 1])
        np.add(out, 1.0, out=out)
        return state


class HeavyBall:
    """Heavy-ball momentum on the weights (u, v), as ``torch.optim.SGD(momentum=μ)`` does it:
    buf ← μ·buf + ∇_w, w ← w − η·buf (buf = ∇_w at the first step; docs/theory.md §11).

    In the log domain the buffer is carried relative to the weights, q = buf/w after the step
    (so tiny weights stay representable): with the method's gradient ratio G_w/w = −(da, db),

        p = μ·q − (da, db)    (= buf/w before the step),    f = 1 − η·p,    q ← p / f,

    since the next step's weights are w⊙f.  μ = 0 is :class:`GD` bit for bit (p = −(da, db),
    f = 1 + η·(da, db)).  Not an exact mirror flow: the tilt Φ that ``iterate`` records is then the
    out-of-span part of z relative to η(da − db), not a characterisation of the limit.

    Parameters
    ----------
    momentum : float or array (B,)
        μ in [0, 1), one value per run or shared.
    """

    def __init__(self, momentum):
        self.momentum = check_param("momentum", momentum, "HeavyBall")  # 0 <= μ < 1 (dln.params)

    def init(self, B: int, d: int) -> tuple:
        mu = np.broadcast_to(np.asarray(self.momentum, dtype=np.float64).reshape(-1, 1, 1), (B, 1, 1)).copy()
        return np.zeros((B, 2, d)), mu

    def update(self, rates, eta, state: tuple, out: np.ndarray) -> tuple:
        q, mu = state
        p = mu * q
        p[:, 0] -= rates.da
        p[:, 1] -= rates.db
        np.multiply(eta[:, :, None], p, out=out)
        np.subtract(1.0, out, out=out)
        p /= out
        return p, mu


# ---------------------------------------------------------------------------------------------
# data sources
# ---------------------------------------------------------------------------------------------
class FullBatch:
    """Every step on the whole training set (GD and the full-batch methods): the direction's own data.

    The rates then carry the training loss of the state, checked at every step."""

    stochastic = False
    check_every = 1

    def __call__(self, k: int, rows) -> None:
        return None


class MiniBatches:
    """Per-run mini-batches (SGD, docs/theory.md §6) and/or noisy labels (label-noise SGD, §9).

    Step k of run i uses the rows ``idx[i, k]`` of (X, y) and, with label noise δ > 0, the labels
    y + δ·ξ with ξ ~ N(0, 1).  Each run draws from its own generator, :data:`CHUNK` steps at a time
    (the indices, then the noise), so a run's path does not depend on its batch-mates.  The rows are
    a sample without replacement of ``batch_size`` rows (with replacement for batch size 1, one
    index per step), all n rows when ``batch_size`` is None (label noise alone), or the given
    ``indices`` (B, K + 1, b).  The training loss is not a by-product of the rates here: it is
    evaluated on the full data every ``check_every`` = n // b steps (once per epoch).
    """

    stochastic = True

    def __init__(self, X, y, B: int, batch_size, label_noise: float = 0.0, rngs=None, indices=None):
        self.X, self.y, self.B = X, y, B
        self.n = X.shape[0]
        self.indices = indices
        self.bs = self.n if batch_size is None else batch_size
        self.full_rows = batch_size is None
        self.label_noise = label_noise
        self.rngs = rngs
        self.check_every = 1 if batch_size is None else max(1, self.n // self.bs)
        self.chunk = -1
        self.idx = self.xi = None

    def _draw(self, c: int):
        k = c * CHUNK
        n, bs = self.n, self.bs
        if self.indices is not None:
            self.idx = self.indices[:, k:k + CHUNK]
        elif self.full_rows:
            self.idx = np.broadcast_to(np.arange(n), (self.B, CHUNK, n))
        elif bs == 1:
            self.idx = np.stack([g.integers(0, n, size=(CHUNK, 1)) for g in self.rngs])
        else:
            base = np.broadcast_to(np.arange(n), (CHUNK, n))
            self.idx = np.stack([g.permuted(base, axis=1)[:, :bs] for g in self.rngs])
        if self.label_noise > 0:
            self.xi = self.label_noise * np.stack([g.standard_normal((CHUNK, bs)) for g in self.rngs])
        self.chunk = c

    def __call__(self, k: int, rows) -> Data:
        c, pos = divmod(k, CHUNK)
        if c != self.chunk:  # steps come in order; a rewind stays inside the current chunk
            self._draw(c)
        idx = self.idx[rows, pos]
        yb = self.y[idx]
        if self.label_noise > 0:
            yb = yb + self.xi[rows, pos]
        return Data(self.X[idx], yb)


def _check_indices(idx, B: int, n: int, batch_size, where: str) -> np.ndarray:
    """``sample_indices`` as an int array (B, K + 1, b) of rows in [0, n)."""
    arr = np.asarray(idx)
    if arr.dtype.kind not in "iu" or arr.ndim not in (2, 3) or arr.size == 0 or \
            (arr.ndim == 3 and arr.shape[0] != B):
        raise fail("sample_indices", where, f"an integer array of shape (K, b) or (B, K, b) with B = {B}",
                   f"shape {arr.shape}, dtype {arr.dtype}")
    if arr.min() < 0 or arr.max() >= n:
        raise fail("sample_indices", where, f"row indices in [0, n) = [0, {n})", arr[(arr < 0) | (arr >= n)])
    if batch_size is not None and arr.shape[-1] != batch_size:
        raise fail("batch_size", where, f"the number of indices per step of sample_indices ({arr.shape[-1]})",
                   batch_size)
    arr = np.broadcast_to(arr, (B,) + arr.shape[-2:])
    # one more row: step K's batch is drawn before its stopping test ends the run at K steps
    return np.concatenate([arr, arr[:, -1:]], axis=1)


# ---------------------------------------------------------------------------------------------
# recording
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Recording:
    """What ``iterate`` records (``dln.simulate.run_batch(record=...)`` accepts it too): the state
    after every ``every``-th step, thinned to at most ``max_points`` points (None: all of them).

    The thinning buffer needs no run length in advance: while it holds more than ``max_points``
    points it keeps every other one (the steps k with k mod 2s = 0, s the current stride) and
    doubles the stride.  At the end the points are the states after steps 1, s + 1, 2s + 1, …, with
    s = every·2^j the smallest such stride that leaves at most ``max_points`` of them.
    """

    every: int = 1
    max_points: int | None = None


class _Recorder:
    """The thinning buffer of :class:`Recording` (points in step order, full batch)."""

    def __init__(self, every: int, max_points: int | None):
        self.stride = every
        self.max_points = max_points
        self.k, self.t, self.beta, self.loss, self.log_c = [], [], [], [], []

    def add(self, ks, t, beta, loss, log_c):
        self.k.extend(ks)
        for lst, arr in ((self.t, t), (self.beta, beta), (self.loss, loss), (self.log_c, log_c)):
            lst.extend(arr)
        while self.max_points is not None and len(self.k) > self.max_points:
            self.stride *= 2
            keep = [i for i, k in enumerate(self.k) if k % self.stride == 0]
            for lst in (self.k, self.t, self.beta, self.loss, self.log_c):
                lst[:] = [lst[i] for i in keep]

    def trajectory(self) -> Trajectory | None:
        if not self.k:
            return None
        return Trajectory(np.array(self.t), np.array(self.beta), np.array(self.loss), np.array(self.log_c))


# ---------------------------------------------------------------------------------------------
# the fused GD kernel
# ---------------------------------------------------------------------------------------------
#: Use :class:`_GFKernel` where it applies (False: every run takes the generic steps).
FUSED = True
#: np.dot without its __array_function__ dispatch (NEP 18's ``_implementation``; the kernel's
#: arguments are plain ndarrays): a quarter of a microsecond less per call, two calls per step.
_dot = getattr(np.dot, "_implementation", np.dot)


class _GFKernel:
    """GD steps of gradient flow at depth 2 on the full batch, fused: four NumPy calls per step.

    For GF at D = 2 the GD factors are f_u = 1 − 2ηg, f_v = 1 + 2ηg with g = Xᵀ(Xβ − y)/n
    (docs/theory.md §5.1).  Inside a block the weights are carried in the linear domain, scaled
    per run by √c with c = 2η/n: W = √c·(±u, ±v), of shape (m, 2d) (at D = 2 the step depends on
    u² and v² only, so W starts each block at √c·(|u|, |v|); the signs are the loop's, from the
    signs of the factors).  Then W⊙W = c·(u², v²) and, with the constant columns of two augmented
    matrices,

        r' = [W⊙W, c]·[Xᵀ; −Xᵀ; −yᵀ] = c·(Xβ − y),    f = [r', 1]·[−X, X; 1ᵀ] = (1 − 2ηg, 1 + 2ηg),

    and W ← W⊙f: a product, two matrix products and a product per step, the residuals r' kept for
    the block check (g, the loss and the gain follow from them in a few calls per block).  At the
    start of every block W is re-synced from the exact log-domain state the loop keeps (ln|u| +=
    ln|f_u| for any rule): W = √c·exp(a, b), so the rounding of the products drifts for at most
    one block, and tiny weights behave as in the log domain (u = 1e-200 is representable; c·u²
    underflows to 0 as exp(2a) does, where its term of Xβ is far below the rounding of any
    nonzero residual).  The statuses, Φ, the gain and the signs are the loop's deferred block
    check, unchanged.  Not bit for bit the generic path (g and f are rounded differently): the
    tests bound the difference.
    """

    #: Its blocks are this many times longer than the generic ones (:data:`MAX_BLOCK`, 128 steps):
    #: its steps are cheap, so the check's per-block cost weighs more; the weights' rounding then
    #: drifts for at most 128 steps before a re-sync.
    block_scale = 2

    @classmethod
    def build(cls, direction, rule, source):
        """The kernel when it applies (GF, D = 2, the GD rule, the full batch), else None."""
        if FUSED and isinstance(direction, Direction) and direction.method == "gf" and direction.D == 2 \
                and type(rule) is GD and not source.stochastic:
            return cls(direction)
        return None

    def __init__(self, direction: Direction):
        X, y = direction.data.X, direction.data.y
        n, d = X.shape
        self.n, self.d, self.X = n, d, X
        self.fwd = np.ascontiguousarray(np.concatenate([X.T, -X.T, -y[None, :]]))  # (2d + 1, n)
        self.back = np.ascontiguousarray(np.concatenate([np.concatenate([-X, X], axis=1),
                                                         np.ones((1, 2 * d))]))  # (n + 1, 2d)
        # per-sample gain integrand (1/n)Σ_i x_i² r_i² (``gf(variant="per-sample")``)
        self.X2 = None if direction.variant == "full" else X * X / n

    def setup(self, kb: int, m: int, eta: np.ndarray) -> None:
        """Buffers for blocks of up to ``kb`` steps of ``m`` runs with learning rates ``eta`` (m, 1)."""
        n, d = self.n, self.d
        self.eta = eta
        self.c = 2.0 * eta / n
        self.root_c = np.sqrt(self.c)
        self.W = np.empty((m, 2 * d))
        self.W2 = np.empty((m, 2 * d + 1))  # [W⊙W, c]
        self.W2[:, 2 * d:] = self.c
        self.R = np.ones((kb, m, n + 1))  # [r', 1] of each step
        if m == 1:  # one run: vector products (np.dot of 1-d arrays is the cheapest call)
            self.W2_head, self.ws = self.W2[0, :2 * d], (self.W[0], self.W2[0])
            self.steps = [(r[0], r[0, :n]) for r in self.R]
        else:
            self.W2_head, self.ws = self.W2[:, :2 * d], (self.W, self.W2)
            self.steps = [(r, r[:, :n]) for r in self.R]

    def block(self, ab, F, nb: int):
        """Take ``nb`` steps from the state ``ab`` = (ln|u|, ln|v|) (m, 2, d), writing their factors
        into ``F[:nb]``.

        Returns the loss before each step (nb, m), η(da − db) = −4ηg and the gain terms η·g² (or η
        times the per-sample integrand) (nb, m, d).
        """
        m, n, d = ab.shape[0], self.n, self.d
        W, W2 = self.ws
        head, fwd, back = self.W2_head, self.fwd, self.back
        np.exp(ab.reshape(m, 2 * d), out=self.W)
        self.W *= self.root_c
        Fv = F.reshape(F.shape[0], m, 2 * d)
        if m == 1:
            Fv = Fv[:, 0]
            mul, prod = np.multiply, _dot
        else:
            mul, prod = np.multiply, np.matmul
        for i, (ra, r) in enumerate(self.steps[:nb]):
            mul(W, W, out=head)
            prod(W2, fwd, out=r)
            f = prod(ra, back, out=Fv[i])
            mul(W, f, out=W)
        Rc = self.R[:nb].reshape(nb * m, n + 1)[:, :n]  # c·r, as one matrix (one BLAS call below)
        x = np.matmul(Rc, self.X).reshape(nb, m, d)  # 2ηg
        loss = np.einsum("ki,ki->k", Rc, Rc).reshape(nb, m)
        loss /= (2.0 * n) * np.square(self.c[:, 0])
        dz = np.multiply(x, -2.0)
        if self.X2 is None:
            gain = np.square(x)
            gain /= 4.0 * self.eta
        else:
            gain = np.matmul(np.square(Rc), self.X2).reshape(nb, m, d)
            gain *= self.eta / np.square(self.c)
        return loss, dz, gain


# ---------------------------------------------------------------------------------------------
# the loop
# ---------------------------------------------------------------------------------------------
def _block(m: int, d: int, scale: int = 1) -> int:
    return max(1, min(scale * MAX_BLOCK, scale * BLOCK_ELEMENTS // (m * d)))


def _running(op, acc: np.ndarray) -> np.ndarray:
    """In place, acc[i] ← op(acc[i − 1], acc[i]) for i = 1, 2, …: the terms combined strictly in step
    order, so the result is bit for bit that of a loop applying one step at a time."""
    if acc[0].size < 400:  # op.accumulate runs its inner loop along axis 0: fast for short rows only
        op.accumulate(acc, axis=0, out=acc)
    else:
        for i in range(1, acc.shape[0]):
            op(acc[i - 1], acc[i], out=acc[i])
    return acc


def iterate(direction: Direction, state0: State, lr, *, max_steps: int = 100_000,
            batch_size: int | None = None, label_noise: float = 0.0, seed=0, seeds=None,
            sample_indices=None, loss_tol: float = 1e-24, record_every: int = 0,
            max_points: int | None = None, average_from: int | None = None, progress=None,
            flood_cycle_stop: bool = True, rule=None) -> Result:
    """Discrete time: w ← w − η·G(w) for a batch of runs (GD is GF in discrete time).

    In log coordinates the step is exact and sign-aware (docs/theory.md §4 lemma, §13 item 8):
    ln|u| += ln|f_u|, sign(u) *= sign(f_u), and likewise for v, with the rule's factors
    (GD: f = 1 + η·(da, db)).  The exact discrete bookkeeping is recorded: ln|u⊙v| = a + b, and the
    tilt

        Φ_K = Σ_k −½[Δz_k − η(da_k − db_k)],

    the out-of-span part of the mirror coordinate (for GD, Φ = Σ[½ ln|(1+x)/(1−x)| − x] with
    x = 2ηg, docs/theory.md §5.1), so that β_∞ = argmin φ_c − ⟨z0 − 2Φ, β⟩ (docs/theory.md §4).
    The gain integral is accumulated as η·Σ gain (the continuous-time approximation).

    Parameters
    ----------
    lr : float or array (B,)
        Learning rate η > 0.
    batch_size : int, optional
        Mini-batch size for SGD (sampled without replacement at each step, per run); None = GD.
    label_noise : float
        Std δ of Gaussian noise added to the labels of every step's batch (label-noise SGD,
        docs/theory.md §9); runs with δ > 0 never reach zero loss and stop at ``max_steps``.
    seed, seeds : int, or one seed per run
        Randomness for SGD and label noise; run i uses ``seeds[i]`` or SeedSequence(seed).spawn(B)[i].
    sample_indices : int array, optional
        A given sample sequence instead of the sampler: the rows of step k's mini-batch are
        ``sample_indices[k]`` (shape (K, b), every run) or ``sample_indices[i, k]`` (shape (B, K, b),
        run i).  b is the batch size (``batch_size``, if given, must equal it); a run that has taken
        K steps stops with status ``max_steps``.  For replaying another code's SGD run.
    record_every, max_points : int
        Keep the path (``Result.trajectory``): the state after every ``record_every``-th step
        (0: no trajectory), thinned to at most ``max_points`` points by :class:`Recording`'s rule
        (None: every one kept).  ``Result.info["record_every"]`` is the final stride.
    average_from : int, optional
        Also return the mean of β over steps ≥ this index (``beta_mean``; label noise).
    progress : callable, optional
        ``progress(steps_done, running, total)``, called once per step (see ``flow``).
    flood_cycle_stop : bool
        Full-batch flooding (b > 0) stops with status ``converged`` once it has settled in the
        2-cycle around b (``dln.stopping.flood_cycle``); False follows its slow drift along the
        level set to ``max_steps`` (docs/theory.md §7.9).
    rule : update rule, optional
        :class:`GD` (default) or another rule with the same ``init``/``update`` pair (e.g.
        :class:`HeavyBall`).

    A run stops with status ``converged`` when L ≤ loss_tol·L(0) (not with label noise) or, for
    flooding, in the 2-cycle; ``diverged`` by ``dln.stopping.diverged`` (collapse, ln|u| → −∞, is
    not divergence); ``max_steps`` after ``max_steps`` steps (``dln.stopping.status``).
    """
    where = "iterate"
    max_steps = check_int("max_steps", max_steps, where, ge=1)
    loss_tol = check_real("loss_tol", loss_tol, where, gt=0.0, allow_array=False)
    B = _batch_size(direction, state0, where)
    lr = check_real("lr", lr, where, gt=0.0)
    eta = np.broadcast_to(np.asarray(lr, dtype=np.float64).reshape(-1, 1), (B, 1)).copy()
    problem, D = direction.problem, direction.D
    n, d = problem.n, problem.d
    if batch_size is not None:
        batch_size = check_int("batch_size", batch_size, where, ge=1, le=n)
    label_noise = check_real("label_noise", label_noise, where, ge=0.0, allow_array=False)
    if sample_indices is not None:
        sample_indices = _check_indices(sample_indices, B, n, batch_size, where)
        batch_size = sample_indices.shape[2]
        max_steps = min(max_steps, sample_indices.shape[1] - 1)
    stochastic = batch_size is not None or label_noise > 0
    rngs = None
    if label_noise > 0 or (stochastic and sample_indices is None):
        if seeds is None:
            seeds = np.random.SeedSequence(seed).spawn(B)
        if len(seeds) != B:
            raise fail("seeds", where, f"one seed per run ({B})", len(seeds))
        rngs = [np.random.default_rng(s) for s in seeds]
    record_every = check_int("record_every", record_every, where, ge=0)
    if max_points is not None:
        max_points = check_int("max_points", max_points, where, ge=2)
    source = MiniBatches(problem.X, problem.y, B, batch_size, label_noise, rngs, sample_indices) \
        if stochastic else FullBatch()
    rule = GD() if rule is None else rule
    kernel = _GFKernel.build(direction, rule, source)
    recorder = _Recorder(record_every, max_points) if record_every else None
    flooding = getattr(direction, "method", None) == "flood" and not stochastic and flood_cycle_stop
    tol = None if label_noise > 0 else loss_tol
    odd = D % 2 == 1  # β = u^D − v^D depends on the signs of u and v

    # the batch: full arrays (frozen runs keep their final values) ...
    AB = np.stack([state0.a, state0.b], axis=1).astype(np.float64)  # (B, 2, d): ln|u|, ln|v|
    S = np.stack([state0.su, state0.sv], axis=1).astype(np.float64)
    log_c0, z0 = AB[:, 0] + AB[:, 1], AB[:, 0] - AB[:, 1]
    Phi = np.zeros((B, d))
    I = np.zeros((B, d))
    steps = np.zeros(B, dtype=np.int64)
    code = np.full(B, stopping.RUNNING, dtype=np.int8)
    with np.errstate(over="ignore", invalid="ignore"):
        loss0 = problem.loss(beta_of(State(AB[:, 0], AB[:, 1], S[:, 0], S[:, 1]), D))
    beta_sum = np.zeros((B, d)) if average_from is not None else None
    beta_cnt = np.zeros(B)
    # ... and the running runs (rows), compacted whenever runs stop
    rows = np.arange(B)
    ab, s, eta_r, loss0_r = AB.copy(), S.copy(), eta, loss0
    rs = rule.init(B, d)
    if flooding:
        level = np.broadcast_to(direction.params["flood_level"][:, 0], (B,)).copy()
        hist, count = np.full((B, 3), np.nan), np.zeros(B, dtype=np.int64)
    k0, shown = 0, 0
    m = -1
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):  # diverging runs are flagged, not warned
        while rows.size:
            if rows.size != m:
                m = rows.size
                kb = _block(m, d) if kernel is None else _block(m, d, kernel.block_scale)
                F = np.empty((kb, m, 2, d))  # the factors of each step of a block
                # the sums along a block: the state (ln|u|, ln|v|), into which ln|f| of each step is
                # written, and Φ with the gain integral (contiguous: they are reduced in different ways)
                PATH = np.empty((kb + 1, m, 2, d))
                LA = PATH[1:]
                SUMS = np.empty((kb + 1, m, 2, d))
                ACC = np.empty((kb + 1, m, d))  # running sums of β (averages)
                Fs, LAs = list(F), list(LA)
                st = State(ab[:, 0], ab[:, 1], s[:, 0], s[:, 1])
                which = None if m == B else rows
                if kernel is not None:
                    kernel.setup(kb, m, eta_r)
            k1 = min(k0 + kb, max_steps + 1)  # the step at max_steps is evaluated: it may converge
            if source.stochastic:
                k1 = min(k1, (k0 // CHUNK + 1) * CHUNK)
            nb = k1 - k0
            ab0 = ab.copy()
            s0 = s.copy() if odd else s
            if kernel is not None:
                if progress is not None:
                    for k in range(max(k0, shown), k0 + nb):
                        progress(k, m, B)
                    shown = max(shown, k0 + nb)
                L, dz, eta_gain = kernel.block(ab, F, nb)
                evaluated = np.ones(nb, dtype=bool)
                states = [rs] * nb
                np.abs(F[:nb], out=LA[:nb])
                np.log(LA[:nb], out=LA[:nb])
            else:
                rates, states, losses = [], [], {}
                for i in range(nb):
                    k = k0 + i
                    if progress is not None and k >= shown:
                        progress(k, m, B)
                        shown = k + 1
                    R = direction(st, which, source(k, rows))
                    rates.append(R)
                    if source.stochastic and k % source.check_every == 0:
                        losses[i] = problem.loss(beta_of(st, D))
                    f, la = Fs[i], LAs[i]
                    rs = rule.update(R, eta_r, rs, f)
                    states.append(rs)
                    if odd and (f < 0).any():  # u^D, v^D carry the signs at odd D: flip them now
                        s *= np.sign(f)
                    np.abs(f, out=la)
                    np.log(la, out=la)
                    ab += la
                if source.stochastic:
                    evaluated = np.array([i in losses for i in range(nb)])
                    L = np.array([losses.get(i, np.zeros(m)) for i in range(nb)])
                else:  # (np.array stacks a list of equal arrays: a copy, like np.stack, but faster)
                    evaluated = np.ones(nb, dtype=bool)
                    L = np.array([R.loss for R in rates])
                # z moves by Δz, of which η(da − db) is in range(Xᵀ) (docs/theory.md §4 lemma, §5.1)
                dz = np.subtract(np.array([R.da for R in rates]), np.array([R.db for R in rates]))
                dz *= eta_r
                eta_gain = np.multiply(eta_r, np.array([R.gain for R in rates]))

            # -- the block, checked step by step after the fact ---------------------------------
            lo, hi = LA[:nb].min(), LA[:nb].max()  # (whole-array reductions: fast, and NaN fails both)
            finite = True if lo > -np.inf and hi < np.inf else np.isfinite(LA[:nb]).all(axis=(2, 3))
            sums = SUMS[:nb + 1]  # exact sequential sums of the steps, in step order:
            # Φ += −½[(ln|f_u| − ln|f_v|) − η(da − db)],  the gain integral += η·gain
            term = np.subtract(LA[:nb, :, 0], LA[:nb, :, 1], out=sums[1:, :, 0])
            term -= dz
            term *= -0.5
            sums[1:, :, 1] = eta_gain
            sel = slice(None) if m == B else rows
            sums[0, :, 0] = Phi[sel]
            sums[0, :, 1] = I[sel]
            path = PATH[:nb + 1]  # path[i]: the state before step k0 + i
            path[0] = ab0
            _running(np.add, path)
            if kernel is not None:  # (the generic steps move ab along themselves, to path[nb] bit for bit)
                ab[...] = path[nb]
            settled = False
            if flooding:
                cycle, settled = [], np.zeros((nb, m), dtype=bool)
                for i in range(nb):
                    hist, count, settled[i] = stopping.flood_cycle(L[i], level, hist, count)
                    cycle.append((hist, count))
            codes = stopping.status(L, loss0_r, path[:nb], None, (k0 + np.arange(nb))[:, None],
                                    max_steps=max_steps, loss_tol=tol, D=D, finite=finite,
                                    evaluated=evaluated[:, None], converged=settled)
            stop_at = (codes != stopping.RUNNING).any(axis=1)
            if stop_at.any():  # the first step at which some run stops: the block ends there
                j = int(np.argmax(stop_at))
                stops = codes[j] != stopping.RUNNING
                done = np.where(stops, j, j + 1)  # steps of the block each run has taken
            else:
                j, stops, done = None, None, np.full(m, nb)
            last = int(done.max())

            # -- the sums up to each run's last step ----------------------------------------------
            at = (nb, slice(None)) if j is None else (done, np.arange(m))  # each run's last step
            if j is None:  # (a reduction along the outer axis adds the rows in order, as _running does)
                Phi[sel], I[sel] = np.moveaxis(np.add.reduce(sums, axis=0), 1, 0)
            else:
                Phi[sel], I[sel] = np.moveaxis(_running(np.add, sums)[at], 1, 0)
            acc = ACC[:nb + 1]
            signs = None
            if last and np.fmin.reduce(F[:last], axis=None) < 0:  # (fmin skips a stopping step's NaN)
                signs = np.empty((nb + 1, m, 2, d))  # signs[i]: the signs before step k0 + i
                signs[0] = s0
                signs[1:] = np.sign(F[:nb])
                _running(np.multiply, signs)

            if beta_sum is not None:
                after = k0 + 1 + np.arange(nb)  # steps taken after each step of the block
                terms = beta_of(State(path[1:, :, 0], path[1:, :, 1], *_signs_after(signs, s0, nb)), D)
                terms[~(after > average_from)] = 0.0
                acc[0] = beta_sum[sel]
                acc[1:] = terms
                beta_sum[sel] = _running(np.add, acc)[at]
                beta_cnt[rows] += np.count_nonzero((after[:, None] > average_from) & (np.arange(nb)[:, None] < done),
                                                   axis=0)

            if j is not None:  # stopped runs leave the batch with the state before step k0 + j
                out = rows[stops]
                AB[out] = path[j, stops]
                S[out] = s0[stops] if signs is None else signs[j, stops]
                steps[out] = k0 + j
                code[out] = codes[j, stops]

            if recorder is not None:  # the state after each recorded step some run took
                ks = [k for k in range(k0, k0 + last) if k % recorder.stride == 0]
                if ks:
                    _record(recorder, ks, k0, done, path, signs, s0, AB, S, rows, steps, eta, problem, D)

            if j is None:
                if signs is not None:
                    s[...] = signs[nb]  # in place: the batch's State views s
                k0 += nb
                continue
            keep = ~stops
            rows = rows[keep]
            ab = path[j + 1, keep]
            s = s0[keep] if signs is None else signs[j + 1, keep]
            eta_r, loss0_r = eta_r[keep], loss0_r[keep]
            rs = tuple(x[keep] for x in states[j])
            if flooding:
                hist, count = (x[keep] for x in cycle[j])
                level = level[keep]
            k0 += j + 1
            m = -1  # rebuild the block buffers for the smaller batch

    state = State(AB[:, 0].copy(), AB[:, 1].copy(), S[:, 0].copy(), S[:, 1].copy())
    with np.errstate(over="ignore", invalid="ignore"):
        beta = beta_of(state, D)
        loss = problem.loss(beta)
    beta_mean = None if beta_sum is None else beta_sum / np.maximum(beta_cnt, 1)[:, None]
    info = dict(lr=eta[:, 0], batch_size=batch_size, label_noise=label_noise)
    if recorder is not None:
        info["record_every"] = recorder.stride
    return Result(direction=direction, state=state, beta=beta, loss=loss, status=stopping.names(code),
                  t=steps * eta[:, 0], steps=steps, n_evals=steps.copy(), gain=I, log_c0=log_c0, z0=z0, tilt=Phi,
                  trajectory=None if recorder is None else recorder.trajectory(), beta_mean=beta_mean, info=info)


def _signs_after(signs, s, nb):
    """(su, sv) after each step of a block: from the accumulated signs, or the unchanged ones."""
    if signs is None:
        return np.broadcast_to(s[:, 0], (nb,) + s[:, 0].shape), np.broadcast_to(s[:, 1], (nb,) + s[:, 1].shape)
    return signs[1:, :, 0], signs[1:, :, 1]


def _record(recorder, ks, k0, done, path, signs, s, AB, S, rows, steps, eta, problem, D):
    """Add the full-batch points after the steps ``ks`` of a block: running runs at their state after
    that step (or their final one, if they stopped before), the others frozen."""
    r = len(ks)
    at = np.minimum(np.asarray(ks)[:, None] - k0 + 1, done)  # (r, m): steps of the block taken
    full = np.broadcast_to(AB, (r,) + AB.shape).copy()
    full[:, rows] = path[at, np.arange(rows.size)]
    sg = np.broadcast_to(S, (r,) + S.shape).copy()
    sg[:, rows] = s if signs is None else signs[at, np.arange(rows.size)]
    n_steps = np.broadcast_to(steps, (r,) + steps.shape).copy()
    n_steps[:, rows] = k0 + at
    with np.errstate(over="ignore", invalid="ignore"):  # diverged runs are frozen, not warned
        bt = beta_of(State(full[:, :, 0], full[:, :, 1], sg[:, :, 0], sg[:, :, 1]), D)
        loss = np.stack([problem.loss(b) for b in bt])
    recorder.add(ks, n_steps * eta[:, 0], bt, loss, full[:, :, 0] + full[:, :, 1])
