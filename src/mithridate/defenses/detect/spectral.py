"""Spectral signatures (Tran, Li & Madry, NeurIPS 2018).

Backdoor poisons leave a trace along the top singular direction of their (target) class's
centred representations. For class c with representations R_c (n_c x d), mean R̄_c and top right
singular vector v_c of (R_c - R̄_c), the paper's score is

    τ_i = ((R_i - R̄_c) · v_c)²                                   (Tran et al., Alg. 1)

and the defence removes the 1.5·ε·n_c highest scores of each class, ε being an upper bound on
the poisoned fraction of a class.

The paper's argument needs the poisons to be a minority of their class (ε < 1/2) and their mean
shift to dominate the class's natural variance. Both fail in practice: at a 10% poison rate over
ten classes the target class is about half poison, so τ is symmetric in the two halves and cannot
say which is which; and on small models the top direction of the raw activations is often natural
variation (a class's writing styles) while the poison shift sits on the second or third one.
The default ``score="split"`` keeps the spectral machinery and fixes both (see
:class:`SpectralSignatures`); ``score="paper"`` is Algorithm 1 exactly.
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np
import scipy.linalg

from mithridate.defenses.detect.base import Detector, per_class_budget_mask, robust_z
from mithridate.errors import ConfigError


class SpectralSignatures(Detector):
    """Score samples by their projection on each class's top singular direction(s).

    Parameters
    ----------
    layer : str, default="penultimate"
        Named model layer whose activations are scored (raw features when no model is given).
    score : {"split", "robust", "paper"}, default="split"
        ``"paper"`` is τ_i above (summed over ``n_directions``). ``"robust"`` uses the same
        direction(s) but measures each projection as a squared robust z-score,
        ((p_i - median_c(p)) / (1.4826·MAD_c(p)))², so scores are comparable across classes.
        ``"split"`` (default):

        1. *Candidates.* The class's top ``n_candidates`` singular directions, computed twice:
           on the representations as given and on the representations whitened with the whole
           training set's covariance (Ledoit–Wolf shrinkage; no labels used). Whitening lifts a
           poison shift that is small next to the dominant, natural directions — the observation
           behind SPECTRE (Hayase et al. 2021) — while the raw directions keep the case where the
           shift already dominates and whitening would dilute it.
        2. *Selection.* Along each candidate the projections are split in two by exact 1-D
           2-means; the candidate whose split explains the largest share of its variance
           (``separation_``; 1 - 2/π ≈ 0.64 for a Gaussian, → 1 for two distant groups) is used.
           A backdoor makes its class a two-group mixture (clean + triggered), which is what this
           looks for.
        3. *Orientation.* When the best split is clear (separation ≥ ``min_separation``), the
           suspect group is the smaller one if it holds less than ``minority_share`` of the
           class (the paper's assumption that poisons are a minority). When the two groups are
           nearly balanced — a 10% backdoor over ten classes makes its target class about half
           poison — the minority cannot be trusted, and the suspect is the group farther from
           the whole training set's mean (median Mahalanobis distance): the trigger is a
           feature the rest of the data does not have. Each sample's score is its signed robust
           z-score measured from the *other* group (its median and MAD), positive towards the
           suspect group. Without a clear split no candidate is more telling than the others,
           and the score is the root mean square of the sample's robust z-scores along all
           2·``n_candidates`` candidates (median and MAD over the whole class): a sample far out
           along any of them stands out, and a clean Gaussian class gets values near 1. (The
           |robust z| along the best-separating candidate alone, used before, ranks by an
           arbitrary direction there: on backdoored digits at 1% -- 13 poisons in a target
           class of ~140 whose best split was unclear in two of three seeds -- the AUROC inside
           the target class was 0.83 and 0.39 in those seeds, 0.999 and 0.996 now; 0.76 and
           0.42 -> 0.92 and 0.95 over all classes.)
        4. *Peeling* (``peel=True``). The reference group of an oriented class is split once
           more by steps 1-3 (its own candidates and whitening); when that split is at least as
           sharp as the class's own, the reference group's scores are replaced by the ones
           measured inside it. An all-to-one backdoor's poisons can form two groups (the network
           keeps traces of their source classes): on 10,000 Fashion-MNIST images at 10% poison
           the first split took a pure group of 23% of the target class and left 550 of its
           1,000 poisons in the reference, AUROC 0.63; the second split finds them, 0.999.
    n_directions : int, default=1
        Directions summed by ``"paper"`` and ``"robust"``.
    n_candidates : int, default=3
        Candidate directions per class and per representation for ``"split"``.
    min_separation : float, default=0.75
        Share of variance the best 2-means split must explain for ``"split"`` to orient its score.
    minority_share : float, default=1/3
        For ``"split"``: a group smaller than this share of its class is the suspect by size
        alone; between it and one half, the group farther from the rest of the data is.
    peel : bool, default=True
        For ``"split"``: split each oriented class's reference group once more (step 4).
    z_threshold : float, default=4.0
        :meth:`flag` with no argument flags samples whose robust z-score (``z_``) exceeds it — a
        rule that needs no knowledge of the poison rate.

    Attributes
    ----------
    scores_ : ndarray of shape (n_samples,)
        Suspicion per sample; higher means more likely poisoned.
    z_ : ndarray of shape (n_samples,)
        Robust z-score read by the default flag rule (``"split"``: the score itself; otherwise
        the largest absolute z over the directions used).
    directions_ : dict
        Class index -> (k, d) array of unit directions in the input feature space (for
        ``"split"``, the direction of the linear functional that gives the chosen projection).
    splits_ : dict
        ``"split"`` only: class index -> {"space": "raw" | "whitened", "component": j,
        "separation": share of variance, "oriented": whether the split was clear enough}, plus
        ``"peeled"`` ({"space", "component", "separation"} of the second split) when step 4
        kept one; ``directions_`` of such a class has a second row, that split's direction.

    Examples
    --------
    >>> det = SpectralSignatures().fit(poisoned, model=net)       # doctest: +SKIP
    >>> flagged = det.flag(budget=0.05)   # top 1.5 * 5% of each class, as in the paper
    >>> flagged = det.flag()              # robust z > 4, no budget needed

    References
    ----------
    Tran, Li, Madry. "Spectral Signatures in Backdoor Attacks." NeurIPS 2018.
    Hayase, Kong, Somani, Oh. "SPECTRE: Defending Against Backdoor Attacks Using Robust
    Statistics." ICML 2021 (whitening).
    Ledoit, Wolf. "A well-conditioned estimator for large-dimensional covariance matrices." 2004.
    """

    name = "spectral"
    evidence = "subpopulation"

    def __init__(self, layer: str = "penultimate", n_directions: int = 1, score: str = "split",
                 z_threshold: float = 4.0, n_candidates: int = 3, min_separation: float = 0.75,
                 minority_share: float = 1 / 3, peel: bool = True):
        self.layer = layer
        self.n_directions = n_directions
        self.score = score
        self.z_threshold = z_threshold
        self.n_candidates = n_candidates
        self.min_separation = min_separation
        self.minority_share = minority_share
        self.peel = peel

    @property
    def z_scored(self) -> bool:
        """Whether :attr:`scores_` already is a robust z-score (``score="split"``); the ensemble
        then uses it without recalibrating."""
        return self.score == "split"

    def _score(self, features: np.ndarray, y: np.ndarray) -> np.ndarray:
        if self.score not in ("split", "robust", "paper"):
            raise ConfigError(f"score must be 'split', 'robust' or 'paper', got {self.score!r}")
        k = int(self.n_directions)
        if k < 1:
            raise ConfigError(f"n_directions must be >= 1, got {self.n_directions}")
        if self.score == "split":
            if int(self.n_candidates) < 1:
                raise ConfigError(f"n_candidates must be >= 1, got {self.n_candidates}")
            if not 0.0 < float(self.min_separation) < 1.0:
                raise ConfigError(f"min_separation must be in (0, 1), got {self.min_separation}")
            if not 0.0 <= float(self.minority_share) <= 0.5:
                raise ConfigError(f"minority_share must be in [0, 0.5], got {self.minority_share}")
            if not isinstance(self.peel, (bool, np.bool_)):
                raise ConfigError(f"peel must be True or False, got {self.peel!r}")
            F = np.asarray(features)
            if F.dtype not in (np.float32, np.float64):
                F = F.astype(np.float64)
            return self._score_split(F, y)
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
            V = _top_directions(centred, k)
            self.directions_[int(c)] = V
            proj = centred @ V.T  # (n_c, k)
            zs = robust_z(proj, axis=0)
            z_abs[idx] = np.abs(zs).max(axis=1)
            scores[idx] = (proj**2).sum(axis=1) if self.score == "paper" else (zs**2).sum(axis=1)
        self.z_ = z_abs
        return scores

    def _score_split(self, F: np.ndarray, y: np.ndarray) -> np.ndarray:
        z, splits, directions, references = self._split_pass(F, y)
        if self.peel:
            # one more split of each oriented class's reference group: an all-to-one backdoor's
            # poisons can form two groups (traces of their source classes); the first split then
            # takes one and leaves the other inside the reference. The second split is kept only
            # when the reference splits at least as sharply as the whole class did.
            for c, info in splits.items():
                core = references.get(c)
                if core is None or len(core) < 3:
                    continue
                z_core, sub, sub_dir, _ = self._split_pass(F[core], np.zeros(len(core), dtype=np.int64),
                                                           whiten=False)
                inner = sub.get(0)
                if inner is None or not inner["oriented"] or inner["separation"] < info["separation"]:
                    continue
                z[core] = z_core
                info["peeled"] = {k: inner[k] for k in ("space", "component", "separation")}
                directions[c] = np.vstack([directions[c], sub_dir[0]])
        self.directions_, self.splits_, self.z_ = directions, splits, z
        return z.copy()

    def _split_pass(self, F: np.ndarray, y: np.ndarray, whiten: bool = True) -> tuple:
        """One split per class (steps 1-3 of the class docstring): z, splits, directions and, for
        oriented classes, the row indices of the reference (not suspected) group.

        ``whiten=False`` skips the whitened candidates. The peeling pass (one class) uses it: with
        a single class the whitening covariance is the class's own shrunk scatter,
        (1-s)·S/n + s·m·I, and the generalized eigenvectors of S against it are S's own
        eigenvectors, in the same order (the eigenvalue λ maps to λ / ((1-s)·λ/n + s·m), increasing
        in λ) — the whitened candidates would repeat the raw ones (or, with no shrinkage, be the
        arbitrary eigenvectors of a multiple of the identity). The whitener is then computed only
        if a balanced split needs it to orient."""
        n, d = F.shape
        mu = F.mean(axis=0, dtype=np.float64)
        # float32 features (the Detector contract) are centred, projected and eigendecomposed in
        # float32 (about 1.5x faster); the d x d statistics are accumulated in float64
        work = _work_dtype(F)
        # one pass over the data: each class's centred block and scatter; the global covariance
        # (and the fourth moments Ledoit-Wolf needs) follow from them without another n x d^2 product
        blocks, total, norm4 = [], np.zeros((d, d)), 0.0
        for c in np.unique(y):
            idx = np.flatnonzero(y == c)
            R = F[idx]
            mean_c = R.mean(axis=0, dtype=np.float64)
            shift = mean_c - mu
            centred = np.subtract(R, mean_c.astype(work), dtype=work)
            scatter = (centred.T @ centred).astype(np.float64)
            total += scatter + len(idx) * np.outer(shift, shift)
            sq = (np.einsum("ij,ij->i", centred, centred).astype(np.float64)
                  + 2.0 * (centred @ shift.astype(work)) + float(shift @ shift))
            norm4 += float(sq @ sq)  # sum of ||x - mean||^4 over the class
            blocks.append((int(c), idx, centred, scatter))
        whitener = _Lazy(lambda: _whitener(total / n, norm4, n))  # d x d' (None: no variance at all)
        back = whitener() if whiten else None
        z = np.zeros(n)
        directions, splits, references = {}, {}, {}
        for c, idx, centred, scatter in blocks:
            if len(idx) < 3:
                continue
            spaces = [("raw", scatter, None)]
            if back is not None:
                Bw = back.astype(work)
                spaces.append(("whitened", Bw.T @ scatter.astype(work) @ Bw, back))
            funcs, names = [], []
            for space, S, B in spaces:
                V = _top_eigvecs(S, int(self.n_candidates), dtype=work)
                funcs.append(V.T if B is None else B @ V.T)  # input-space functionals, d x k
                names += [(space, j) for j in range(V.shape[0])]
            A = np.concatenate(funcs, axis=1)
            P = (centred @ A.astype(work)).astype(np.float64)  # all candidate projections in one pass
            cuts, seps = _two_means_columns(P)
            col = int(np.argmax(seps))  # the first of equal shares, as a scan would keep it
            space, j = names[col]
            sep, p, cut, direction = float(seps[col]), P[:, col], float(cuts[col]), A[:, col]
            high = p > cut
            oriented = sep >= float(self.min_separation) and 0 < int(high.sum()) < len(p)
            if oriented:
                share_high = float(high.mean())
                if min(share_high, 1.0 - share_high) < float(self.minority_share):
                    poison_high = share_high < 0.5  # a clear minority: the paper's assumption
                else:  # nearly balanced: the group the rest of the data does not share
                    poison_high = self._farther_from_data(F, mu, whitener(), idx, high)
                ref = ~high if poison_high else high
                references[c] = idx[ref]
                zc = robust_z(p, p[ref]) * (1.0 if poison_high else -1.0)
                direction = direction if poison_high else -direction
            else:  # no candidate splits clearly: how far each sample lies along all of them
                zc = _rms_robust_z(P)
            z[idx] = zc
            norm = float(np.linalg.norm(direction))
            directions[c] = (direction / norm if norm > 0 else direction)[None, :]
            splits[c] = {"space": space, "component": int(j), "separation": float(sep),
                         "oriented": bool(oriented)}
        return z, splits, directions, references

    @staticmethod
    def _farther_from_data(F, mu, back, idx, high, cap: int = 1000) -> bool:
        """Is the ``high`` group of the class farther from the whole data set than the other
        one? Median Mahalanobis distance to the global mean (Euclidean without a whitener), on
        at most ``cap`` evenly spaced members of each group."""
        medians = []
        for group in (idx[high], idx[~high]):
            if len(group) > cap:
                group = group[np.linspace(0, len(group) - 1, cap).astype(np.int64)]
            work = _work_dtype(F)
            G = np.subtract(F[group], mu.astype(work), dtype=work)
            if back is not None:
                G = G @ back.astype(work)
            medians.append(float(np.median((G**2).sum(axis=1))))
        return medians[0] > medians[1]

    def _flag_budget(self, budget: float) -> np.ndarray:
        """Per class, flag the top ceil(1.5 * budget * n_c) scores (Tran et al.)."""
        return per_class_budget_mask(self.scores_, self.y_, 1.5 * budget)


class _Lazy:
    """A value computed on first call and remembered."""

    def __init__(self, compute):
        self._compute, self._done, self._value = compute, False, None

    def __call__(self):
        if not self._done:
            self._value, self._done = self._compute(), True
        return self._value


def _rms_robust_z(P: np.ndarray) -> np.ndarray:
    """Root mean square over the columns of ``P`` (n x k) of each value's robust z-score in its
    column (:func:`robust_z` per column)."""
    return np.sqrt(np.mean(robust_z(P, axis=0) ** 2, axis=1))


def _work_dtype(F: np.ndarray) -> Any:
    """float32 for float32 features, else float64: the precision the split score computes in."""
    return np.float32 if F.dtype == np.float32 else np.float64


def _top_directions(centred: np.ndarray, k: int) -> np.ndarray:
    """Top ``k`` right singular vectors of ``centred`` (rows), largest first, as a (k, d) array:
    the top eigenvectors of the d x d scatter matrix, far cheaper than an SVD of the n x d one;
    only the top k eigenpairs are computed (LAPACK's MRRR driver)."""
    return _top_eigvecs(centred.T @ centred, min(int(k), centred.shape[0]))


def _top_eigvecs(S: np.ndarray, k: int, dtype: Any = np.float64) -> np.ndarray:
    """Top ``k`` eigenvectors of the symmetric matrix ``S``, largest first, as a (k, d) float64
    array; computed in ``dtype`` (float32: LAPACK's single-precision driver, ~1.5x faster)."""
    d = S.shape[0]
    kk = max(1, min(int(k), d))
    _, evecs = scipy.linalg.eigh(np.asarray(S, dtype=dtype), subset_by_index=[d - kk, d - 1], driver="evr",
                                 check_finite=False)
    return evecs[:, ::-1].T.astype(np.float64)


def _whitener(cov: np.ndarray, sum_norm4: float, n: int) -> Optional[np.ndarray]:
    """Whitening matrix of the Ledoit–Wolf shrunk covariance, (1-s)·C + s·(tr C/d)·I.

    ``cov`` is the (biased) covariance C of n centred rows x_k and ``sum_norm4`` is Σ_k ‖x_k‖⁴,
    from which the shrinkage s of Ledoit & Wolf (2004) follows in closed form — the same value as
    ``sklearn.covariance.ledoit_wolf`` without another pass over the data. Returns E Λ^-1/2
    (columns for the eigenvalues above 1e-12 of the largest), so that (x - mean) @ it is white
    and a unit direction u of the whitened space is the input-space functional (it) @ u; None
    when the data have no variance."""
    d = cov.shape[0]
    m = float(np.trace(cov)) / d
    if not m > 0:
        return None
    frob2 = float((cov**2).sum())
    beta = (sum_norm4 / n - frob2) / (d * n)
    delta = (frob2 - 2.0 * m * float(np.trace(cov)) + d * m**2) / d
    shrink = 0.0 if beta <= 0 or delta <= 0 else min(beta, delta) / delta
    shrunk = (1.0 - shrink) * cov + shrink * m * np.eye(d)
    # Cholesky whitening: B = L^-T gives B' C B = I; any whitener works, since the functionals
    # B v of the top eigenvectors v of B' S B (the generalized eigenvectors of S and C) do not
    # depend on the choice; eigendecomposition only when C is (numerically) singular
    try:
        L = np.linalg.cholesky(shrunk)
        diag = np.diag(L)
        if diag.min() > 1e-6 * diag.max():
            return scipy.linalg.solve_triangular(L, np.eye(d), lower=True, check_finite=False).T
    except np.linalg.LinAlgError:
        pass
    evals, evecs = np.linalg.eigh(shrunk)
    keep = evals > 1e-12 * evals.max()
    return evecs[:, keep] / np.sqrt(evals[keep])


def _two_means_1d(p: np.ndarray) -> tuple[float, float]:
    """Exact 1-D 2-means: the cut that maximises the between-group sum of squares, and the share
    of the total sum of squares it explains (0 when all values are equal)."""
    cuts, shares = _two_means_columns(np.asarray(p, dtype=np.float64).reshape(-1, 1))
    return float(cuts[0]), float(shares[0])


def _two_means_columns(P: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_two_means_1d` of every column of ``P`` (n x k) at once: cuts and shares, (k,) each."""
    n, k = P.shape
    if n < 2:
        return (P[0].astype(np.float64) if n else np.zeros(k)), np.zeros(k)
    S = np.sort(P, axis=0)
    total = ((S - S.mean(axis=0)) ** 2).sum(axis=0)
    cs = np.cumsum(S, axis=0)
    m = np.arange(1, n, dtype=np.float64)[:, None]
    m_low = cs[:-1] / m
    m_high = (cs[-1] - cs[:-1]) / (n - m)
    between = m * (n - m) / n * (m_low - m_high) ** 2
    j = np.argmax(between, axis=0)
    cols = np.arange(k)
    cuts = (S[j, cols] + S[j + 1, cols]) / 2
    ok = total > 0
    shares = np.where(ok, between[j, cols] / np.where(ok, total, 1.0), 0.0)
    cuts = np.where(ok, cuts, S[0])
    return cuts, shares
