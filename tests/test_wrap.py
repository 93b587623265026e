"""A user's own trained torch.nn.Module passed as ``model=`` (mithridate.models.wrap)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from torch import nn

from mithridate.data import Dataset
from mithridate.defenses.detect.confident import ConfidentLearning
from mithridate.defenses.detect.spectral import SpectralSignatures
from mithridate.defenses.detect.strip import StripDetector
from mithridate.errors import ConfigError
from mithridate.models import TorchModule, as_model


class Net(nn.Module):
    def __init__(self, out_tuple=False):
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(16, 12), nn.ReLU())
        self.fc = nn.Linear(12, 6)
        self.act = nn.ReLU()
        self.head = nn.Linear(6, 3)
        self.out_tuple = out_tuple

    def forward(self, x):
        z = self.head(self.act(self.fc(self.body(x))))
        return (z, "aux") if self.out_tuple else z


def _data(n=240, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    X = (rng.normal(size=(n, 1, 4, 4)) + y[:, None, None, None]).astype(np.float32)
    return X, y


def _trained(seed=0, **kw):
    torch.manual_seed(seed)
    X, y = _data(seed=seed)
    net = Net(**kw)
    opt = torch.optim.Adam(net.parameters(), lr=0.03)
    for _ in range(60):
        opt.zero_grad()
        out = net(torch.tensor(X))
        loss = nn.functional.cross_entropy(out[0] if isinstance(out, tuple) else out, torch.tensor(y))
        loss.backward()
        opt.step()
    return net, X, y


def test_layers_are_read_through_hooks():
    net, X, _ = _trained()
    net.train()  # the user's flag is restored after each pass
    m = TorchModule(net)
    with torch.no_grad():
        penult = net.act(net.fc(net.body(torch.tensor(X)))).numpy()  # the input of the last nn.Linear (head)
        fc = net.fc(net.body(torch.tensor(X))).numpy()
        logits = net(torch.tensor(X)).numpy()
    np.testing.assert_allclose(m.features(X), penult, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(m.features(X, layer="fc"), fc, rtol=1e-5, atol=1e-6)
    assert m.features(X, layer="body.1").shape == (len(X), 12)
    np.testing.assert_allclose(m.logits(X), logits, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(m.predict_proba(X).sum(axis=1), 1.0, rtol=1e-6)
    assert net.training
    with pytest.raises(ConfigError, match=r"Net has no layer named 'nope'; layers: body, body.0, .* head, penultimate"):
        m.features(X, layer="nope")
    # a tuple output is read from its first element; float64 weights get float64 inputs
    tup, _, _ = _trained(out_tuple=True)
    assert TorchModule(tup).logits(X).shape == (len(X), 3)
    np.testing.assert_allclose(TorchModule(net.double()).features(X), penult, rtol=1e-4, atol=1e-5)
    with pytest.raises(ConfigError, match="no nn.Linear layer"):
        TorchModule(nn.Sequential(nn.Flatten(), nn.ReLU())).features(X)


def test_detectors_take_a_plain_module():
    net, X, y = _trained()
    ds = Dataset.from_arrays(X, y)
    with torch.no_grad():
        penult = net.act(net.fc(net.body(torch.tensor(X)))).numpy()
    direct = SpectralSignatures().fit(ds, model=net)
    given = SpectralSignatures().fit(ds, features=penult)
    np.testing.assert_allclose(direct.scores_, given.scores_, rtol=1e-4, atol=1e-4)
    with pytest.raises(ConfigError, match="has no layer named 'conv9'"):
        SpectralSignatures(layer="conv9").fit(ds, model=net)

    # a torchvision-style module whose ``features`` is a submodule, not mithridate's method
    class VGGish(nn.Module):
        def __init__(self):
            super().__init__()
            self.features = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.ReLU())
            self.classifier = nn.Linear(8, 3)

        def forward(self, x):
            return self.classifier(self.features(x))

    assert isinstance(as_model(VGGish()), TorchModule)
    assert SpectralSignatures().fit(ds, model=VGGish()).scores_.shape == (len(X),)
    with pytest.raises(ConfigError, match="model_factory got a torch.nn.Module"):
        ConfidentLearning(model_factory=net).fit(ds)


def test_strip_warns_when_the_model_columns_are_not_the_dataset_classes():
    net, X, y = _trained()
    names = np.array(["zebra", "ant", "moth"])  # the network's column order; from_arrays sorts them
    ds = Dataset.from_arrays(X, names[y])
    assert list(ds.classes) == ["ant", "moth", "zebra"]
    with pytest.warns(UserWarning, match=r"predicts the given label for only \d+% .* classes \('ant', 'moth', 'zebra'\)"):
        StripDetector(n_draws=2).fit(ds, model=net)
    ordered = Dataset.from_arrays(X, names[y], classes=list(names))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        det = StripDetector(n_draws=2).fit(ordered, model=net)
    assert det.label_agreement_ > 0.9


def test_awkward_arrays_from_a_users_own_code_are_said():
    from mithridate.attacks.backdoor import BadNets
    from mithridate.errors import DataError

    rng = np.random.default_rng(0)
    X = rng.random((40, 8, 8, 1)).astype(np.float32)  # channels last
    with pytest.warns(UserWarning, match=r"read as N x C x H x W \(8 channels of 8 x 1 pixels\).*moveaxis"):
        Dataset.from_arrays(X, rng.integers(0, 2, 40))
    ds = Dataset.from_arrays(np.moveaxis(X, -1, 1) * 255, rng.integers(0, 2, 40))  # 0-255 pixels
    with pytest.warns(UserWarning, match=r"badnets: the images go up to 25\d.*divide the images by 255"):
        BadNets(target=0, poison_rate=0.1, size=2).poison(ds, random_state=0)
    with pytest.raises(DataError, match="the features have no columns"):
        SpectralSignatures().fit(ds, features=np.zeros((40, 0)))
    from mithridate.defenses.detect.influence import InfluenceDetector

    with pytest.raises(ConfigError, match="expects a mithridate Dataset, got ndarray"):
        InfluenceDetector().fit(np.zeros((4, 2)))


def test_one_detector_instance_in_two_ensembles_and_regression_data():
    from mithridate.defenses.detect import Ensemble
    from mithridate.defenses.detect.knn import KNNLabelConsistency

    X, y = _data()
    flat = X.reshape(len(X), -1)
    knn = KNNLabelConsistency()
    e1 = Ensemble([knn, "robust-distance"]).fit(Dataset.from_arrays(flat, y))
    e2 = Ensemble([knn, "robust-distance"]).fit(Dataset.from_arrays(flat[:100], y[:100]))
    assert len(e1.flag()) == len(X) and len(e2.flag()) == 100  # the first used to break (member refitted)
    reg = Dataset.from_arrays(flat, np.linspace(0.0, 1.0, len(X)), task="regression")
    with pytest.raises(ConfigError, match="knn checks class labels; .* is a regression dataset"):
        KNNLabelConsistency().fit(reg)
