"""Certificates: bounds on what a poisoning adversary can still do against a defence.

* :class:`~mithridate.defenses.certify.sphere_slab.SphereSlabCertificate` — Steinhardt, Koh &
  Liang (NeurIPS 2017): an upper bound on the training loss any εn added points can force on a
  linear SVM behind the oracle sphere/slab defence, with the matching candidate attack.
"""

from mithridate.defenses.certify.sphere_slab import (
    DEFAULT_EPSILONS,
    HingeSVM,
    SphereSlabCertificate,
    hinge_loss,
    plot_bound,
    worst_point,
)

__all__ = ["DEFAULT_EPSILONS", "HingeSVM", "SphereSlabCertificate", "hinge_loss", "plot_bound", "worst_point"]
