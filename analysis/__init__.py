"""The theory side of the DLN simulator: pure mathematics on NumPy arrays (docs/theory.md).

- :mod:`analysis.potentials`: q, φ_c, Bregman divergence, depth-D potential (§1, §2, §3.1).
- :mod:`analysis.predict`: mirror_argmin (dual Newton, log domain; mirror_argmin_batch for many
  (c, z0) on one (X, y)), min-ℓ1, min-ℓ2, weighted Lasso (§2.2, §9, §15).
- :mod:`analysis.effective`: effective α, gains, discrete-time bookkeeping (§4–§8).
- :mod:`analysis.formulas`: NumPy closed forms of the DLN derivatives (§7).
- :mod:`analysis.symbolic`: SymPy derivations with self-checks (imported lazily: SymPy is slow
  to import).

Nothing here imports ``dln``.
"""

from analysis.effective import (
    alpha_eff,
    alpha_eff_from_log,
    gain,
    gain_from_log,
    gd_continuous_log_c,
    gd_log_c_from_steps,
    gd_log_c_increment,
    gd_tilt_from_steps,
    gd_tilt_increment,
    gr_first_order_log_c,
    log_c_from_integral,
    q_even,
    sgd_continuous_log_c,
    tilted_z0,
)
from analysis.potentials import bregman, grad_phi, h_D, h_D_inv, phi, phi_D, q, q_D, q_prime
from analysis.predict import (
    MirrorResult,
    label_noise_lasso_weights,
    lasso_kkt_violation,
    min_l1,
    min_l2,
    mirror_argmin,
    mirror_argmin_batch,
    weighted_lasso,
)

_SYMBOLIC = ("DERIVATIONS", "Derivation", "derive_all", "render", "numeric", "lambdified_formulas")

__all__ = [
    "MirrorResult", "alpha_eff", "alpha_eff_from_log", "bregman", "gain", "gain_from_log",
    "gd_continuous_log_c", "gd_log_c_from_steps", "gd_log_c_increment", "gd_tilt_from_steps",
    "gd_tilt_increment", "gr_first_order_log_c", "grad_phi", "h_D", "h_D_inv",
    "label_noise_lasso_weights", "lasso_kkt_violation", "log_c_from_integral", "min_l1", "min_l2",
    "mirror_argmin", "mirror_argmin_batch", "phi", "phi_D", "q", "q_D", "q_even", "q_prime",
    "sgd_continuous_log_c", "tilted_z0", "weighted_lasso", *_SYMBOLIC,
]


def __getattr__(name):
    if name in _SYMBOLIC:
        from analysis import symbolic

        return getattr(symbolic, name)
    raise AttributeError(f"module 'analysis' has no attribute {name!r}")
