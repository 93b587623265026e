"""The minimax attack of Steinhardt, Koh & Liang (NeurIPS 2017): the candidate attack that
comes with the sphere/slab certificate.

The online procedure of :class:`~mithridate.defenses.certify.sphere_slab.SphereSlabCertificate`
plays a game between a learner (a linear hinge-loss SVM with ‖θ‖² ≤ ρ) and an attacker who, at
each step, answers with the point of the defender's feasible set (sphere ∩ slab ∩ data box of
its label) that has the largest hinge loss. The attacker's answers, spread over the run,
approximate the attacker's optimal mixed strategy; ⌊εn⌋ of them form the attack. By
construction every point passes the (oracle) sphere/slab sanitiser, and on the training
objective the attack comes close to the certified upper bound (see the certificate's
``table_``: the ``ratio`` column).

The attacker is assumed to know the clean training data (the oracle setting of the paper): the
feasible sets are computed from the dataset passed to :meth:`MinimaxAttack.poison`.
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np

from mithridate.attacks.base import Attack, Poisoning
from mithridate.data.dataset import Dataset
from mithridate.errors import ConfigError, DataError
from mithridate.utils import RandomState, check_fraction, check_random_state

__all__ = ["MinimaxAttack"]


class MinimaxAttack(Attack):
    """Add ⌊poison_rate·n⌋ points that maximise a linear SVM's training loss through the
    sphere/slab defence (Steinhardt et al. 2017, Algorithm 1's candidate attack).

    Parameters
    ----------
    poison_rate : float in (0, 1), default=0.1
        ε: poisoned points added, as a fraction of the clean training set.
    defense : {"sphere+slab", "sphere", "slab"}, default="sphere+slab"
        The sanitiser the attack must pass.
    rho : float, optional
        Norm bound ‖w‖² + b² ≤ ρ of the victim SVM (default: that of the clean SVM with
        strength ``reg``; see the certificate).
    percentile : float, default=70
        Radius percentile of the defender's sphere and slab.
    n_steps : int, default=300
        Steps of the online minimax procedure.
    eta : float, default=5.0
        Dual-averaging step size (units of the ball's radius).
    box : "auto", None or (low, high), default="auto"
        Feature bounds the poison points respect ([0, 1] for images and min-max scaled tables).
    reg : float, default=0.01
        Strength of the clean SVM that sets the default ``rho``.
    burn_in : float, default=0.2
        Fraction of the first steps left out when picking the points.

    Attributes
    ----------
    certificate_ : SphereSlabCertificate
        The fitted certificate of the last :meth:`poison` call: ``certificate_.bounds_``
        holds the upper bound U(ε), ``certificate_.table_`` what this attack achieves.

    Examples
    --------
    >>> from mithridate.data import load_dataset
    >>> splits = load_dataset("digits", classes=[1, 7])
    >>> res = MinimaxAttack(poison_rate=0.1).poison(splits.train, random_state=0)
    >>> int(res.poison_mask.sum()), res.budget["n_poison"]
    (25, 25)

    References
    ----------
    Steinhardt, Koh, Liang. "Certified Defenses for Data Poisoning Attacks." NeurIPS 2017.
    """

    name = "minimax"

    def __init__(self, poison_rate: float = 0.1, defense: str = "sphere+slab", rho: Optional[float] = None,
                 percentile: float = 70.0, n_steps: int = 300, eta: float = 5.0, box: Any = "auto",
                 reg: float = 0.01, burn_in: float = 0.2):
        self.poison_rate = poison_rate
        self.defense = defense
        self.rho = rho
        self.percentile = percentile
        self.n_steps = n_steps
        self.eta = eta
        self.box = box
        self.reg = reg
        self.burn_in = burn_in

    def poison(self, dataset: Dataset, random_state: RandomState = None) -> Poisoning:
        """Return ``dataset`` plus the candidate attack (``is_poison`` marks the new rows).

        Raises
        ------
        ConfigError
            For a non-binary dataset (the attack is stated for binary linear SVMs) or a budget
            below one point.
        """
        from mithridate.defenses.certify.sphere_slab import SphereSlabCertificate, budget_points

        if not isinstance(dataset, Dataset):
            raise ConfigError(f"MinimaxAttack.poison expects a mithridate Dataset, got {type(dataset).__name__}")
        if dataset.is_regression or dataset.n_classes != 2:
            what = "a regression set" if dataset.is_regression else f"{dataset.n_classes} classes"
            raise ConfigError(
                f"the minimax attack targets binary linear SVMs, this data has {what}; select two classes "
                "with load_dataset(..., classes=[a, b])"
            )
        rate = check_fraction(self.poison_rate, "poison_rate")
        rng = check_random_state(random_state)
        n = len(dataset)
        k = budget_points(rate, n)
        if k < 1:
            raise ConfigError(f"poison_rate={rate} of {n} samples is less than one point; raise poison_rate")
        cert = SphereSlabCertificate(
            defense=self.defense, rho=self.rho, percentile=self.percentile, n_steps=self.n_steps, eta=self.eta,
            box=self.box, reg=self.reg, burn_in=self.burn_in,
        ).fit(dataset, epsilons=(rate,), random_state=rng)
        Xp, yp = cert.candidate_attack(rate)
        if len(Xp) != k:  # pragma: no cover - the certificate draws exactly budget_points(rate, n)
            raise DataError(f"the minimax procedure returned {len(Xp)} points for a budget of {k}")
        self.certificate_ = cert
        poisoned = dataset.append(Xp.astype(np.float32), yp.astype(np.int64), is_poison=True, source=self.name)
        return Poisoning(
            dataset=poisoned,
            attack=self.name,
            params=self.get_params(),
            budget={"n_poison": int(k), "poison_rate": k / n},
        )
