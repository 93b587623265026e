"""Attacks: each returns a :class:`~mithridate.attacks.base.Poisoning`.

Backdoors (:mod:`~mithridate.attacks.backdoor`), label flips (:mod:`~mithridate.attacks.label_flip`),
gradient poisoning of linear classifiers (:mod:`~mithridate.attacks.gradient`), regression poisoning
(:mod:`~mithridate.attacks.regression`) and the minimax attack of the sphere/slab certificate
(:mod:`~mithridate.attacks.minimax`). ``mithridate.registry.names("attack")`` lists them by name.
"""

from mithridate.attacks.backdoor import BadNets, Blend
from mithridate.attacks.base import Attack, Poisoning
from mithridate.attacks.gradient import GradientPoisoning
from mithridate.attacks.label_flip import AdversarialFlip, RandomFlip, TargetedFlip
from mithridate.attacks.minimax import MinimaxAttack
from mithridate.attacks.regression import OptP, StatP
from mithridate.attacks.triggers import Trigger, blend_trigger, patch_trigger

__all__ = ["Attack", "Poisoning", "BadNets", "Blend", "Trigger", "patch_trigger", "blend_trigger", "RandomFlip",
           "TargetedFlip", "AdversarialFlip", "GradientPoisoning", "StatP", "OptP", "MinimaxAttack"]
