"""Models: one protocol, scikit-learn adapters, one PyTorch trainer."""

from mithridate.models.base import Model
from mithridate.models.nets import TorchClassifier, build_network
from mithridate.models.linear import SklearnClassifier, make_linear_model

__all__ = ["Model", "TorchClassifier", "build_network", "SklearnClassifier", "make_linear_model"]
