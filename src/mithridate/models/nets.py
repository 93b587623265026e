"""PyTorch classifiers (MLP and a small CNN) behind the :class:`~mithridate.models.base.Model` protocol.

Layers are named, so a detector asks for ``features(X, layer="penultimate")`` (or any name in
``layer_names``) and knows which representation it reads. Models save as a plain state dict
plus a JSON-able config and load with ``torch.load(..., weights_only=True)``: no pickled code.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import numpy as np
import torch
from torch import nn

from mithridate.errors import ConfigError, DataError
from mithridate.models.base import as_xy, check_layer
from mithridate.models.training import fit_module, predict_batches, torch_seed
from mithridate.utils import RandomState, atomic_path, check_random_state, seed_from

FORMAT_VERSION = 1


class _Standardize(nn.Module):
    """Feature standardisation stored as buffers, so it travels with the state dict."""

    def __init__(self, n: int):
        super().__init__()
        self.register_buffer("mean", torch.zeros(n))
        self.register_buffer("scale", torch.ones(n))

    def forward(self, x):
        return (x - self.mean) / self.scale


def build_network(arch: str, input_shape: Sequence[int], n_classes: int, *, hidden: Sequence[int] = (128,),
                  channels: Sequence[int] = (16, 32)) -> nn.Sequential:
    """Build a named ``nn.Sequential``; the last hidden activation is the "penultimate" layer."""
    layers: "OrderedDict[str, nn.Module]" = OrderedDict()
    if arch == "cnn":
        if len(input_shape) != 3:
            raise ConfigError(f"the CNN needs image inputs C x H x W, got input shape {tuple(input_shape)}")
        c, h, w = input_shape
        prev = c
        for i, ch in enumerate(channels, start=1):
            layers[f"conv{i}"] = nn.Conv2d(prev, ch, kernel_size=3, padding=1)
            layers[f"relu_conv{i}"] = nn.ReLU()
            if min(h, w) >= 4:
                layers[f"pool{i}"] = nn.MaxPool2d(2)
                h, w = h // 2, w // 2
            prev = ch
        layers["flatten"] = nn.Flatten()
        prev = prev * h * w
    elif arch == "mlp":
        d = int(np.prod(input_shape))
        layers["flatten"] = nn.Flatten()
        layers["standardize"] = _Standardize(d)
        prev = d
    else:
        raise ConfigError(f"unknown architecture {arch!r}; use 'mlp' or 'cnn'")
    for i, width in enumerate(hidden, start=1):
        layers[f"fc{i}"] = nn.Linear(prev, width)
        layers[f"relu{i}"] = nn.ReLU()
        prev = width
    layers["logits"] = nn.Linear(prev, n_classes)
    return nn.Sequential(layers)


class TorchClassifier:
    """A small neural classifier trained with mithridate's single training loop.

    Parameters
    ----------
    arch : {"auto", "mlp", "cnn"}, default="auto"
        "auto" picks the CNN for image data (N x C x H x W) and the MLP for tables.
    hidden : sequence of int, default=(128,)
        Widths of the fully connected hidden layers; the last one is "penultimate".
    channels : sequence of int, default=(16, 32)
        Convolution widths for the CNN (each followed by ReLU and 2x2 max-pooling).
    epochs, batch_size, lr, weight_decay, optimizer
        Training hyperparameters for :func:`~mithridate.models.training.fit_module`.
    random_state : int or Generator, default=0
        Seeds initialisation and shuffling; the same seed gives the same model.
    progress : bool, default=False
        Show a progress bar while training.

    Attributes
    ----------
    module_ : torch.nn.Sequential
        The trained network with named layers.
    n_classes_ : int
    input_shape_ : tuple
    loss_history_ : list of float

    Examples
    --------
    >>> from mithridate.data import load_dataset
    >>> splits = load_dataset("digits")
    >>> clf = TorchClassifier(epochs=20).fit(splits.train)
    >>> acc = (clf.predict(splits.test.X) == splits.test.y).mean()
    >>> feats = clf.features(splits.train.X, layer="penultimate")   # (n, 128)
    """

    def __init__(self, arch: str = "auto", hidden: Sequence[int] = (128,), channels: Sequence[int] = (16, 32),
                 epochs: int = 20, batch_size: int = 64, lr: float = 1e-3, weight_decay: float = 0.0,
                 optimizer: str = "adam", random_state: RandomState = 0, device: str = "cpu",
                 progress: bool = False):
        self.arch = arch
        self.hidden = tuple(hidden)
        self.channels = tuple(channels)
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.optimizer = optimizer
        self.random_state = random_state
        self.device = device
        self.progress = progress

    # -- training ---------------------------------------------------------------------------
    def _resolved_arch(self, X: np.ndarray) -> str:
        if self.arch == "auto":
            return "cnn" if X.ndim == 4 else "mlp"
        return self.arch

    def fit(self, X: Any, y: Optional[np.ndarray] = None, *, sample_weight: Optional[np.ndarray] = None,
            n_classes: Optional[int] = None, description: str = "training") -> "TorchClassifier":
        """Train on a Dataset or on arrays ``(X, y)`` with class indices ``0..K-1``."""
        X, y = as_xy(X, y)
        if y is None:
            raise ConfigError("fit needs labels: pass a Dataset or (X, y)")
        if len(X) != len(y) or len(X) == 0:
            raise DataError(f"fit got {len(X)} samples and {len(y)} labels; they must match and be non-empty")
        if int(self.epochs) < 1 or int(self.batch_size) < 1 or not float(self.lr) > 0:
            raise ConfigError("epochs and batch_size must be >= 1 and lr > 0")
        rng = check_random_state(self.random_state)
        k = int(n_classes) if n_classes is not None else int(np.max(y)) + 1
        self.n_classes_ = max(k, 2)
        self.input_shape_ = tuple(int(s) for s in X.shape[1:])
        self.arch_ = self._resolved_arch(X)
        with torch_seed(seed_from(rng)):
            self.module_ = build_network(self.arch_, self.input_shape_, self.n_classes_, hidden=self.hidden,
                                         channels=self.channels)
        if self.arch_ == "mlp":
            flat = X.reshape(len(X), -1)
            std = flat.std(axis=0)
            self.module_.standardize.mean.copy_(torch.as_tensor(flat.mean(axis=0)))
            self.module_.standardize.scale.copy_(torch.as_tensor(np.where(std > 1e-8, std, 1.0)))
        self.loss_history_ = fit_module(
            self.module_, X, y, epochs=int(self.epochs), batch_size=int(self.batch_size), lr=float(self.lr),
            weight_decay=float(self.weight_decay), optimizer=self.optimizer, sample_weight=sample_weight,
            random_state=rng, device=self.device, progress=self.progress, description=description,
        )
        return self

    # -- inference --------------------------------------------------------------------------
    def _check_fitted(self) -> None:
        if not hasattr(self, "module_"):
            raise ConfigError("this model is not fitted yet; call fit() first")

    def _check_X(self, X: Any) -> np.ndarray:
        X, _ = as_xy(X)
        self._check_fitted()
        if tuple(X.shape[1:]) != self.input_shape_:
            raise DataError(f"model expects inputs of shape {self.input_shape_}, got {tuple(X.shape[1:])}")
        return X

    def logits(self, X: Any) -> np.ndarray:
        X = self._check_X(X)
        return predict_batches(self.module_, X, device=self.device)

    def predict_proba(self, X: Any) -> np.ndarray:
        z = self.logits(X)
        z = z - z.max(axis=1, keepdims=True)
        p = np.exp(z)
        return p / p.sum(axis=1, keepdims=True)

    def predict(self, X: Any) -> np.ndarray:
        return self.logits(X).argmax(axis=1)

    def per_sample_loss(self, X: Any, y: np.ndarray) -> np.ndarray:
        """Cross-entropy of each sample under the trained model."""
        z = torch.tensor(self.logits(X))
        return nn.functional.cross_entropy(z, torch.tensor(np.asarray(y), dtype=torch.long),
                                           reduction="none").numpy()

    @property
    def layer_names(self) -> list[str]:
        self._check_fitted()
        names = [n for n, _ in self.module_.named_children()]
        return names + ["penultimate"]

    def _resolve_layer(self, layer: str) -> str:
        check_layer(layer, self.layer_names)
        if layer == "penultimate":
            relus = [n for n, _ in self.module_.named_children() if n.startswith("relu") and not n.startswith("relu_conv")]
            return relus[-1] if relus else "flatten"
        return layer

    def features(self, X: Any, layer: str = "penultimate") -> np.ndarray:
        """Activations after the named layer, flattened to ``(n, d)``.

        ``"penultimate"`` is the output of the last hidden activation (the input of the
        logits layer), which is what spectral signatures and activation clustering read.
        """
        X = self._check_X(X)
        name = self._resolve_layer(layer)
        children = list(self.module_.named_children())
        stop = [n for n, _ in children].index(name)
        sub = nn.Sequential(OrderedDict(children[: stop + 1]))
        out = predict_batches(sub, X, device=self.device)
        return out.reshape(len(out), -1)

    # -- persistence ------------------------------------------------------------------------
    def get_config(self) -> dict:
        return {"arch": self.arch, "hidden": list(self.hidden), "channels": list(self.channels), "epochs": self.epochs,
                "batch_size": self.batch_size, "lr": self.lr, "weight_decay": self.weight_decay,
                "optimizer": self.optimizer}

    def save(self, path: Union[str, Path]) -> Path:
        """Save as a state dict plus a config of plain values (atomic write)."""
        self._check_fitted()
        path = Path(path)
        payload = {
            "format": "mithridate.TorchClassifier", "format_version": FORMAT_VERSION,
            "config": self.get_config(), "arch": self.arch_, "input_shape": list(self.input_shape_),
            "n_classes": self.n_classes_, "state_dict": self.module_.state_dict(),
        }
        with atomic_path(path) as tmp:
            torch.save(payload, tmp)
        return path

    @classmethod
    def load(cls, path: Union[str, Path], device: str = "cpu") -> "TorchClassifier":
        """Load a model saved by :meth:`save` (``weights_only=True``: never runs code from the file)."""
        path = Path(path)
        if not path.is_file():
            raise DataError(f"model file not found: {path}")
        try:
            payload = torch.load(path, map_location=device, weights_only=True)
        except Exception as exc:
            raise DataError(f"{path} is not a mithridate model file ({type(exc).__name__}: {str(exc)[:200]})") from None
        if not isinstance(payload, dict) or payload.get("format") != "mithridate.TorchClassifier":
            raise DataError(f"{path} is not a mithridate model file (saved with TorchClassifier.save)")
        cfg = payload["config"]
        model = cls(**cfg, device=device)
        model.arch_ = payload["arch"]
        model.input_shape_ = tuple(payload["input_shape"])
        model.n_classes_ = int(payload["n_classes"])
        model.module_ = build_network(model.arch_, model.input_shape_, model.n_classes_, hidden=model.hidden,
                                      channels=model.channels)
        try:
            model.module_.load_state_dict(payload["state_dict"])
        except RuntimeError as exc:
            raise DataError(f"{path}: weights do not match the stored architecture ({str(exc)[:200]})") from None
        model.module_.eval()
        return model


def default_classifier(n_samples: int, *, random_state: RandomState = 0, progress: bool = False,
                       epochs: Optional[int] = None) -> TorchClassifier:
    """The network mithridate trains when the user brings none.

    Small data (< 5,000 samples, e.g. digits) gets 30 epochs at batch 64; larger data (e.g.
    Fashion-MNIST's 60,000) gets 6 epochs at batch 128, enough for a small CNN to converge
    on two CPU cores in about a minute per model.
    """
    if n_samples < 5000:
        return TorchClassifier(epochs=epochs or 30, batch_size=64, random_state=random_state, progress=progress)
    return TorchClassifier(epochs=epochs or 6, batch_size=128, random_state=random_state, progress=progress)
