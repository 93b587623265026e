"""Tests for the models: TorchClassifier (MLP, CNN), SklearnClassifier, the one training loop."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mithridate.data import Dataset, load_dataset
from mithridate.errors import ConfigError, DataError
from mithridate.models import Model, SklearnClassifier, TorchClassifier, default_classifier


def _blobs(n_per_class=150, d=10, k=3, seed=0):
    """Well separated Gaussian blobs; even rows train, odd rows test."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(k, d)) * 3
    y = np.repeat(np.arange(k), n_per_class)
    X = centers[y] + rng.normal(size=(len(y), d))
    ds = Dataset.from_arrays(X, y)
    return ds.subset(np.arange(0, len(ds), 2)), ds.subset(np.arange(1, len(ds), 2))


def _mlp(seed=0, epochs=15):
    return TorchClassifier(arch="mlp", hidden=(32, 16), epochs=epochs, lr=3e-3, batch_size=32, random_state=seed)


@pytest.fixture(scope="module")
def blobs():
    return _blobs()


@pytest.fixture(scope="module")
def mlp(blobs):
    return _mlp().fit(blobs[0])


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


@pytest.fixture(scope="module")
def cnn(digits):
    return TorchClassifier(arch="cnn", channels=(8, 16), hidden=(32,), epochs=8, lr=5e-3, batch_size=32,
                           random_state=0).fit(digits.train)


# -- TorchClassifier -----------------------------------------------------------------------------
def test_mlp_learns_separable_tabular_problem(blobs, mlp):
    train, test = blobs
    assert mlp.arch_ == "mlp"
    assert isinstance(mlp, Model)
    assert np.mean(mlp.predict(test.X) == test.y) >= 0.97
    assert len(mlp.loss_history_) == 15
    assert mlp.loss_history_[-1] < mlp.loss_history_[0]
    proba = mlp.predict_proba(test.X)
    assert proba.shape == (len(test), 3)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(proba.argmax(axis=1), mlp.predict(test.X))


def test_cnn_learns_digits(digits, cnn):
    assert cnn.arch_ == "cnn"
    assert cnn.input_shape_ == (1, 8, 8)
    assert np.mean(cnn.predict(digits.test.X) == digits.test.y) >= 0.90


def test_auto_arch_and_default_classifier():
    assert TorchClassifier()._resolved_arch(np.zeros((2, 1, 8, 8))) == "cnn"
    assert TorchClassifier()._resolved_arch(np.zeros((2, 5))) == "mlp"
    small = default_classifier(1000, random_state=3)
    assert (small.epochs, small.batch_size, small.random_state) == (30, 64, 3)
    large = default_classifier(60000)
    assert (large.epochs, large.batch_size) == (6, 128)


def test_same_seed_same_model_other_seed_other_weights(blobs, mlp):
    train, test = blobs
    again = _mlp(seed=0).fit(train)
    np.testing.assert_array_equal(again.logits(test.X), mlp.logits(test.X))
    np.testing.assert_array_equal(again.predict(test.X), mlp.predict(test.X))
    other = _mlp(seed=1).fit(train)
    w0 = mlp.module_.state_dict()["fc1.weight"]
    assert not torch.equal(w0, other.module_.state_dict()["fc1.weight"])
    assert not np.array_equal(other.logits(test.X), mlp.logits(test.X))


def test_fit_leaves_global_rng_state_alone(blobs):
    torch.manual_seed(123)
    np.random.seed(123)
    torch_before = torch.get_rng_state().clone()
    np_before = np.random.get_state()
    _mlp(epochs=2).fit(blobs[0])
    assert torch.equal(torch.get_rng_state(), torch_before)
    np_after = np.random.get_state()
    assert np_after[0] == np_before[0] and np.array_equal(np_after[1], np_before[1]) and np_after[2] == np_before[2]


def test_penultimate_features_shape(blobs, mlp, digits, cnn):
    test = blobs[1]
    f = mlp.features(test.X, layer="penultimate")
    assert f.shape == (len(test), 16)  # hidden[-1]
    np.testing.assert_array_equal(f, mlp.features(test.X, layer="relu2"))
    assert f.min() >= 0  # after the ReLU
    fc = cnn.features(digits.test.X[:10])
    assert fc.shape == (10, 32)


def test_every_layer_name_works(blobs, mlp, digits, cnn):
    for model, X in ((mlp, blobs[1].X[:7]), (cnn, digits.test.X[:7])):
        names = model.layer_names
        assert "penultimate" in names and "logits" in names
        for name in names:
            f = model.features(X, layer=name)
            assert f.ndim == 2 and f.shape[0] == 7 and f.dtype == np.float32, name
            assert np.all(np.isfinite(f)), name
        np.testing.assert_allclose(model.features(X, layer="logits"), model.logits(X), rtol=1e-6)
    assert mlp.layer_names == ["flatten", "standardize", "fc1", "relu1", "fc2", "relu2", "logits", "penultimate"]
    assert cnn.features(digits.test.X[:7], layer="conv1").shape == (7, 8 * 8 * 8)
    assert cnn.features(digits.test.X[:7], layer="flatten").shape == (7, 16 * 2 * 2)


def test_unknown_layer_lists_available(mlp, blobs):
    with pytest.raises(ConfigError, match="nope.*penultimate"):
        mlp.features(blobs[1].X, layer="nope")


def test_wrong_input_shape_and_unfitted(mlp):
    with pytest.raises(DataError, match="expects inputs of shape"):
        mlp.predict(np.zeros((3, 4), np.float32))
    with pytest.raises(ConfigError, match="not fitted"):
        TorchClassifier().predict(np.zeros((3, 4)))
    with pytest.raises(ConfigError):
        TorchClassifier(epochs=0).fit(np.zeros((4, 2), np.float32), np.array([0, 1, 0, 1]))
    with pytest.raises(ConfigError, match="labels"):
        TorchClassifier().fit(np.zeros((4, 2), np.float32))


def test_per_sample_loss_is_cross_entropy(mlp, blobs):
    test = blobs[1]
    loss = mlp.per_sample_loss(test.X, test.y)
    p = mlp.predict_proba(test.X)[np.arange(len(test)), test.y]
    np.testing.assert_allclose(loss, -np.log(p), rtol=1e-4, atol=1e-6)


def test_sample_weight_zero_removes_samples(blobs):
    train, test = blobs
    w = np.ones(len(train))
    w[train.y == 2] = 0.0
    m = _mlp(epochs=10).fit(train, sample_weight=w)
    assert np.mean(m.predict(test.X[test.y == 2]) == 2) < 0.2


# -- persistence -----------------------------------------------------------------------------------
@pytest.mark.parametrize("which", ["mlp", "cnn"])
def test_save_load_round_trip(tmp_path, which, mlp, cnn, blobs, digits):
    model, X = (mlp, blobs[1].X) if which == "mlp" else (cnn, digits.test.X)
    path = model.save(tmp_path / f"{which}.pt")
    back = TorchClassifier.load(path)
    np.testing.assert_array_equal(back.logits(X), model.logits(X))
    np.testing.assert_array_equal(back.features(X, layer="penultimate"), model.features(X, layer="penultimate"))
    assert back.layer_names == model.layer_names
    assert (back.arch_, back.input_shape_, back.n_classes_) == (model.arch_, model.input_shape_, model.n_classes_)
    payload = torch.load(path, weights_only=True)
    assert payload["format"] == "mithridate.TorchClassifier"
    assert set(payload["state_dict"]) == set(model.module_.state_dict())


def test_load_rejects_non_model_files(tmp_path, mlp):
    with pytest.raises(DataError, match="not found"):
        TorchClassifier.load(tmp_path / "missing.pt")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(np.random.default_rng(0).bytes(512))
    with pytest.raises(DataError, match="not a mithridate model file"):
        TorchClassifier.load(junk)
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(3), "epoch": 4}, other)
    with pytest.raises(DataError, match="not a mithridate model file"):
        TorchClassifier.load(other)
    tensor_only = tmp_path / "tensor.pt"
    torch.save(torch.ones(2), tensor_only)
    with pytest.raises(DataError, match="not a mithridate model file"):
        TorchClassifier.load(tensor_only)
    # right header, weights of another architecture
    good = mlp.save(tmp_path / "good.pt")
    payload = torch.load(good, weights_only=True)
    payload["config"]["hidden"] = [7]
    torch.save(payload, tmp_path / "mismatch.pt")
    with pytest.raises(DataError, match="do not match"):
        TorchClassifier.load(tmp_path / "mismatch.pt")


# -- SklearnClassifier -----------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["logreg", "linear_svm"])
def test_sklearn_fit_predict(kind, blobs):
    train, test = blobs
    clf = SklearnClassifier(kind).fit(train)
    assert isinstance(clf, Model)
    assert clf.n_classes_ == 3
    assert np.mean(clf.predict(test.X) == test.y) >= 0.97
    Xs = clf.scaler_.transform(test.X)
    np.testing.assert_array_equal(clf.predict(test.X), clf.estimator_.predict(Xs))
    proba = clf.predict_proba(test.X)
    assert proba.shape == (len(test), 3)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-6)  # float32 inputs give float32 precision


@pytest.mark.parametrize("kind", ["logreg", "linear_svm"])
def test_sklearn_features_layers(kind, blobs):
    train, test = blobs
    clf = SklearnClassifier(kind).fit(train)
    assert clf.layer_names == ["input", "standardized", "logits"]
    X = test.X
    np.testing.assert_array_equal(clf.features(X, layer="input"), X.reshape(len(X), -1))
    mu, sd = train.X.astype(np.float64).mean(axis=0), train.X.astype(np.float64).std(axis=0)
    np.testing.assert_allclose(clf.features(X), (X - mu) / sd, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(clf.features(X, layer="logits"),
                               clf.estimator_.decision_function(clf.scaler_.transform(X)), rtol=1e-5, atol=1e-5)
    with pytest.raises(ConfigError, match="available layers: input, standardized, logits"):
        clf.features(X, layer="penultimate")


def test_sklearn_per_sample_loss(blobs):
    train, test = blobs
    lr = SklearnClassifier("logreg").fit(train)
    p = lr.estimator_.predict_proba(lr.scaler_.transform(test.X))[np.arange(len(test)), test.y]
    np.testing.assert_allclose(lr.per_sample_loss(test.X, test.y), -np.log(p.astype(np.float64)), rtol=1e-9)
    svm = SklearnClassifier("linear_svm").fit(train)
    d = svm.estimator_.decision_function(svm.scaler_.transform(test.X))
    true = d[np.arange(len(test)), test.y]
    other = d.copy()
    other[np.arange(len(test)), test.y] = -np.inf
    expected = np.maximum(0.0, 1.0 - true + other.max(axis=1))
    np.testing.assert_allclose(svm.per_sample_loss(test.X, test.y), expected, rtol=1e-9)
    # wrong labels cost more
    wrong = (test.y + 1) % 3
    assert svm.per_sample_loss(test.X, wrong).mean() > svm.per_sample_loss(test.X, test.y).mean()


def test_sklearn_binary_and_images(digits):
    train = digits.train.subset(np.flatnonzero(digits.train.y < 2))
    test = digits.test.subset(np.flatnonzero(digits.test.y < 2))
    for kind in ("logreg", "linear_svm"):
        clf = SklearnClassifier(kind).fit(train)
        assert clf.logits(test.X).shape == (len(test), 2)
        np.testing.assert_array_equal(clf.predict(test.X),
                                      clf.estimator_.predict(clf.scaler_.transform(test.X.reshape(len(test), -1))))
        assert np.mean(clf.predict(test.X) == test.y) >= 0.98
        assert clf.features(test.X, layer="input").shape == (len(test), 64)


def test_sklearn_errors():
    with pytest.raises(ConfigError, match="unknown linear model"):
        SklearnClassifier("forest").fit(np.zeros((4, 2)), np.array([0, 1, 0, 1]))
    for method in ("predict", "predict_proba", "logits"):
        with pytest.raises(ConfigError, match="not fitted"):
            getattr(SklearnClassifier(), method)(np.zeros((2, 2)))
    with pytest.raises(ConfigError, match="not fitted"):
        SklearnClassifier().features(np.zeros((2, 2)), layer="input")
    with pytest.raises(ConfigError, match="labels"):
        SklearnClassifier().fit(np.zeros((4, 2)))


def test_registry_models():
    from mithridate import registry

    assert registry.names("model") == ["auto", "cnn", "elasticnet", "lasso", "linear_svm", "logreg", "mlp", "ridge"]
    assert registry.create("model", "lasso").kind == "lasso"
    m = registry.create("model", "mlp", epochs=3)
    assert isinstance(m, TorchClassifier) and m.arch == "mlp" and m.epochs == 3
    assert registry.create("model", "linear-svm").kind == "linear_svm"
    assert registry.create("model", "logreg", C=0.5).C == 0.5
    with pytest.raises(ConfigError, match="bad parameters"):
        registry.create("model", "cnn", arch="mlp")
