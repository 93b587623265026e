"""Models: one protocol, scikit-learn adapters, one PyTorch trainer."""

from mithridate.models.base import Model
from mithridate.models.nets import TorchClassifier, build_network, default_classifier
from mithridate.models.linear import SklearnClassifier, make_linear_model
from mithridate.models.wrap import TorchModule, as_model

__all__ = ["Model", "default_classifier", "TorchClassifier", "build_network", "SklearnClassifier", "make_linear_model",
           "TorchModule", "as_model"]
