"""Detectors: each scores every training sample (higher = more suspicious) without ground truth.

``mithridate.registry.names("detector")`` lists them by name; :class:`Ensemble` is the default.
"""

from mithridate.defenses.detect.activation_clustering import ActivationClustering
from mithridate.defenses.detect.base import Detector
from mithridate.defenses.detect.confident import ConfidentLearning
from mithridate.defenses.detect.duplicates import DuplicateDetector
from mithridate.defenses.detect.ensemble import Ensemble
from mithridate.defenses.detect.influence import InfluenceDetector
from mithridate.defenses.detect.knn import KNNLabelConsistency
from mithridate.defenses.detect.loss_dynamics import LossDynamics
from mithridate.defenses.detect.outliers import IsolationForestDetector, LOFDetector
from mithridate.defenses.detect.roni import RONIDetector
from mithridate.defenses.detect.spectral import SpectralSignatures
from mithridate.defenses.detect.spectre import RobustDistance, Spectre
from mithridate.defenses.detect.sphere_slab import SlabDetector, SphereDetector
from mithridate.defenses.detect.strip import StripDetector
from mithridate.defenses.detect.valuation import DataOOB, KNNShapley

__all__ = ["ActivationClustering", "LossDynamics", "Detector", "ConfidentLearning", "DataOOB", "DuplicateDetector", "Ensemble", "InfluenceDetector",
           "IsolationForestDetector", "KNNLabelConsistency", "KNNShapley", "LOFDetector", "RONIDetector",
           "RobustDistance", "SlabDetector", "SpectralSignatures", "Spectre", "SphereDetector", "StripDetector"]
