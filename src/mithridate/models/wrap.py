"""Your own trained ``torch.nn.Module`` as a mithridate model.

Detectors that read a network (spectral signatures, SPECTRE / robust distance, activation
clustering, STRIP, the ensemble) call the :class:`~mithridate.models.base.Model` protocol:
``features(X, layer)``, ``logits(X)``, ``predict_proba(X)``. :class:`TorchModule` gives that
protocol to any trained module, and every detector's ``fit(dataset, model=...)`` wraps a plain
``nn.Module`` in it by itself (:func:`as_model`)::

    det = SpectralSignatures().fit(dataset, model=my_cnn)             # layer "penultimate"
    det = SpectralSignatures(layer="fc1").fit(dataset, model=my_cnn)  # any named submodule

Layers are the module's named submodules (``dict(module.named_modules())``), read with a forward
hook: a layer's *output*, flattened to ``(n, d)``. ``"penultimate"`` is the *input* of the last
``nn.Linear`` submodule in registration order -- the representation the classifier head reads,
which is what the backdoor detectors were designed for. The module runs in eval mode under
``torch.inference_mode()``, on the device and dtype of its parameters; its own training flag is
restored afterwards. A module returning a tuple or a dict is read from its first element (or the
``"logits"`` key). Its outputs must be one column per class, in the order of ``dataset.classes``
(string labels are sorted by :meth:`Dataset.from_arrays` unless ``classes=`` gives the order).
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np

from mithridate.errors import ConfigError, DataError

__all__ = ["TorchModule", "as_model", "is_torch_module"]


def is_torch_module(obj: Any) -> bool:
    """Whether ``obj`` is a ``torch.nn.Module``."""
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        return False
    return isinstance(obj, torch.nn.Module)


def as_model(model: Any) -> Any:
    """``model`` itself, or a :class:`TorchModule` around it when it is a plain ``torch.nn.Module``
    (one without mithridate's ``features`` method)."""
    if not is_torch_module(model):
        return model
    import torch

    feats = getattr(model, "features", None)
    # a module with mithridate's features(X, layer) method is used as it is; a torchvision-style
    # ``features`` *submodule* (VGG, AlexNet, ...) is a layer, not that method
    if callable(feats) and not isinstance(feats, torch.nn.Module):
        return model
    return TorchModule(model)


class TorchModule:
    """A trained ``torch.nn.Module`` with mithridate's model protocol (see the module docstring).

    Parameters
    ----------
    module : torch.nn.Module
        The trained network. It is not copied and not changed (its train/eval flag is restored
        after each pass).
    batch_size : int, default=512
        Rows per forward pass.

    Examples
    --------
    >>> import numpy as np, torch
    >>> net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    >>> m = TorchModule(net)
    >>> m.features(np.zeros((5, 4), np.float32)).shape        # the input of the last Linear
    (5, 8)
    >>> m.features(np.zeros((5, 4), np.float32), layer="1").shape
    (5, 8)
    >>> m.predict_proba(np.zeros((2, 4), np.float32)).sum(axis=1).round(6).tolist()
    [1.0, 1.0]
    """

    def __init__(self, module: Any, batch_size: int = 512):
        import torch

        if not isinstance(module, torch.nn.Module):
            raise ConfigError(f"TorchModule wraps a torch.nn.Module, got {type(module).__name__}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise ConfigError(f"batch_size must be a positive int, got {batch_size!r}")
        self.module = module
        self.batch_size = int(batch_size)

    # -- layers ------------------------------------------------------------------------------
    @property
    def layer_names(self) -> list:
        """Named submodules (``named_modules()`` without the root) plus ``"penultimate"``."""
        return [n for n, _ in self.module.named_modules() if n] + ["penultimate"]

    def _target(self, layer: str) -> tuple:
        """(submodule, read its input?) for ``layer``."""
        import torch

        if not isinstance(layer, str):
            raise ConfigError(f"layer must be a layer name (a string), got {layer!r}")
        named = dict(self.module.named_modules())
        if layer == "penultimate":
            linears = [m for n, m in named.items() if n and isinstance(m, torch.nn.Linear)]
            if not linears:
                raise ConfigError(
                    f"{type(self.module).__name__} has no nn.Linear layer, so 'penultimate' (the input of the last "
                    f"one) is undefined; name a layer: {', '.join(self.layer_names[:-1][:20]) or '(none)'}")
            return linears[-1], True
        if layer not in named or not layer:
            shown = self.layer_names
            raise ConfigError(f"{type(self.module).__name__} has no layer named {layer!r}; layers: "
                              f"{', '.join(shown[:30])}{' ...' if len(shown) > 30 else ''}")
        return named[layer], False

    # -- passes ------------------------------------------------------------------------------
    def _run(self, X: Any, hook_on: Any = None, read_input: bool = False) -> np.ndarray:
        import torch

        X = np.asarray(X)
        if X.dtype == object or not np.issubdtype(X.dtype, np.number):
            raise DataError(f"the inputs must be numeric arrays, got dtype {X.dtype}")
        params = list(self.module.parameters())
        device = params[0].device if params else torch.device("cpu")
        dtype = params[0].dtype if params and params[0].is_floating_point() else torch.float32
        captured: list = []

        def hook(_mod, inputs, output):
            value = inputs[0] if read_input else output
            if isinstance(value, (tuple, list)):
                value = value[0]
            captured.append(value.detach().reshape(value.shape[0], -1).to("cpu", torch.float32).numpy())

        handle = hook_on.register_forward_hook(hook) if hook_on is not None else None
        was_training = self.module.training
        outs = []
        try:
            self.module.eval()
            with torch.inference_mode():
                for start in range(0, len(X), self.batch_size):
                    xb = torch.as_tensor(np.array(X[start:start + self.batch_size], copy=True)).to(device, dtype)
                    out = self.module(xb)
                    if hook_on is None:
                        outs.append(_first_output(out))
        except (RuntimeError, TypeError, ValueError) as exc:
            raise DataError(f"{type(self.module).__name__} failed on inputs of shape {tuple(X.shape)}: "
                            f"{type(exc).__name__}: {str(exc)[:300]}") from None
        finally:
            if handle is not None:
                handle.remove()
            self.module.train(was_training)
        parts = captured if hook_on is not None else outs
        if not parts:
            return np.zeros((0, 0), dtype=np.float32)
        return np.concatenate(parts, axis=0)

    def features(self, X: Any, layer: str = "penultimate") -> np.ndarray:
        """``layer``'s activations (``"penultimate"``: the input of the last ``nn.Linear``), ``(n, d)``."""
        target, read_input = self._target(layer)
        out = self._run(X, target, read_input)
        if len(out) != len(X):
            raise DataError(f"layer {layer!r} gave {len(out)} rows for {len(X)} inputs (was it run once per batch?)")
        return out

    def logits(self, X: Any) -> np.ndarray:
        """The module's outputs, ``(n, n_classes)``."""
        z = self._run(X)
        if z.ndim != 2 or z.shape[0] != len(X):
            raise DataError(f"{type(self.module).__name__} returned outputs of shape {z.shape} for {len(X)} inputs; "
                            "expected (n_samples, n_classes) scores")
        return z

    def predict_proba(self, X: Any) -> np.ndarray:
        """Softmax of :meth:`logits`."""
        z = self.logits(X).astype(np.float64)
        z -= z.max(axis=1, keepdims=True)
        p = np.exp(z)
        return p / p.sum(axis=1, keepdims=True)

    def predict(self, X: Any) -> np.ndarray:
        return self.logits(X).argmax(axis=1)


def _first_output(out: Any) -> np.ndarray:
    """A forward pass's scores: the tensor, the first element of a tuple, or a dict's 'logits'."""
    import torch

    if isinstance(out, dict):
        out = out.get("logits", next(iter(out.values()), None))
    if isinstance(out, (tuple, list)):
        out = out[0]
    if not isinstance(out, torch.Tensor):
        raise DataError(f"the module returned {type(out).__name__}, not a tensor (or a tuple/dict holding one)")
    return out.detach().to("cpu", torch.float32).numpy()
