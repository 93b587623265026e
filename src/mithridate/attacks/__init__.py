"""Attacks: each returns a :class:`~mithridate.attacks.base.Poisoning`."""

from mithridate.attacks.base import Attack, Poisoning
from mithridate.attacks.backdoor import BadNets, Blend
from mithridate.attacks.triggers import Trigger, blend_trigger, patch_trigger

__all__ = ["Attack", "Poisoning", "BadNets", "Blend", "Trigger", "patch_trigger", "blend_trigger"]
