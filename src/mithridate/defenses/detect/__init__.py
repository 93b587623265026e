"""Detectors: each scores every training sample (higher = more suspicious) without ground truth."""

from mithridate.defenses.detect.base import Detector
from mithridate.defenses.detect.spectral import SpectralSignatures
from mithridate.defenses.detect.spectre import RobustDistance, Spectre

__all__ = ["Detector", "RobustDistance", "SpectralSignatures", "Spectre"]
