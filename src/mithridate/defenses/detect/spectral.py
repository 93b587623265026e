"""Spectral signatures (Tran, Li & Madry, NeurIPS 2018).

Backdoor poisons leave a trace along the top singular direction of their (target) class's
centred representations. For class c with representations R_c (n_c x d), mean R̄_c and top right
singular vector v_c of (R_c - R̄_c), the paper's score is

    τ_i = ((R_i - R̄_c) · v_c)²                                   (Tran et al., Alg. 1)

and the defence removes the 1.5·ε·n_c highest scores of each class, ε being an upper bound on
the poisoned fraction of a class.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg

from mithridate.defenses.detect.base import Detector, per_class_budget_mask, robust_z
from mithridate.errors import ConfigError


class SpectralSignatures(Detector):
    """Score samples by their projection on each class's top singular vector(s).

    Parameters
    ----------
    layer : str, default="penultimate"
        Named model layer whose activations are scored (raw features when no model is given).
    n_directions : int, default=1
        Top singular directions combined per class (scores add up).
    score : {"robust", "paper"}, default="robust"
        ``"paper"`` is τ_i above. ``"robust"`` uses the same direction v_c but measures each
        projection as a squared robust z-score, ((p_i - median_c(p)) / (1.4826·MAD_c(p)))²:
        the clean majority of a class sits near 0 whatever the class's scale, so scores are
        comparable across classes (one global ranking, one threshold) and poisons are far from
        the clean centre rather than from a mean that they pull towards themselves.
    z_threshold : float, default=4.0
        :meth:`flag` with no argument flags samples whose robust z along a direction exceeds it
        in absolute value — a rule that needs no knowledge of the poison rate.

    Attributes
    ----------
    scores_ : ndarray of shape (n_samples,)
        Suspicion per sample; higher means more likely poisoned.
    z_ : ndarray of shape (n_samples,)
        Largest absolute robust z-score over the directions used.
    directions_ : dict
        Class index -> (n_directions, d) array of the singular directions.

    Examples
    --------
    >>> det = SpectralSignatures().fit(poisoned, model=net)       # doctest: +SKIP
    >>> flagged = det.flag(budget=0.05)   # top 1.5 * 5% of each class, as in the paper
    >>> flagged = det.flag()              # robust z > 4, no budget needed

    References
    ----------
    Tran, Li, Madry. "Spectral Signatures in Backdoor Attacks." NeurIPS 2018.
    """

    name = "spectral"

    def __init__(self, layer: str = "penultimate", n_directions: int = 1, score: str = "robust",
                 z_threshold: float = 4.0):
        self.layer = layer
        self.n_directions = n_directions
        self.score = score
        self.z_threshold = z_threshold

    def _score(self, features: np.ndarray, y: np.ndarray) -> np.ndarray:
        if self.score not in ("robust", "paper"):
            raise ConfigError(f"score must be 'robust' or 'paper', got {self.score!r}")
        k = int(self.n_directions)
        if k < 1:
            raise ConfigError(f"n_directions must be >= 1, got {self.n_directions}")
        n = len(features)
        scores = np.zeros(n)
        z_abs = np.zeros(n)
        self.directions_ = {}
        for c in np.unique(y):
            idx = np.flatnonzero(y == c)
            if len(idx) < 3:
                continue
            R = features[idx].astype(np.float64)
            centred = R - R.mean(axis=0)
            # top right singular vectors of the centred matrix = top eigenvectors of its d x d
            # scatter matrix: same directions, far cheaper than an SVD of the n_c x d matrix;
            # only the top k eigenpairs are computed (LAPACK's MRRR driver, ~3x faster than all)
            d = centred.shape[1]
            kk = min(k, len(idx), d)
            _, evecs = scipy.linalg.eigh(centred.T @ centred, subset_by_index=[d - kk, d - 1], driver="evr",
                                         check_finite=False)
            V = evecs[:, ::-1].T
            self.directions_[int(c)] = V
            proj = centred @ V.T  # (n_c, k)
            zs = np.stack([robust_z(proj[:, j]) for j in range(proj.shape[1])], axis=1)
            z_abs[idx] = np.abs(zs).max(axis=1)
            scores[idx] = (proj**2).sum(axis=1) if self.score == "paper" else (zs**2).sum(axis=1)
        self.z_ = z_abs
        return scores

    def _flag_budget(self, budget: float) -> np.ndarray:
        """Per class, flag the top ceil(1.5 * budget * n_c) scores (Tran et al.)."""
        return per_class_budget_mask(self.scores_, self.y_, 1.5 * budget)
