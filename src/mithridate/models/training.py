"""The one PyTorch training loop of mithridate.

Every component that trains a network (the classifiers, robust losses, retraining after
sanitisation, attacks that need a surrogate) goes through :func:`fit_module`, so seeding,
batching, progress display and per-sample losses behave the same everywhere.
"""

from __future__ import annotations

import contextlib
from typing import Callable, Iterator, Optional

import numpy as np
import torch
from torch import nn

from mithridate.utils import RandomState, check_random_state, seed_from

# A per-sample loss: (logits, targets, sample indices) -> tensor of shape (batch,)
PerSampleLoss = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def cross_entropy_per_sample(logits: torch.Tensor, y: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    return nn.functional.cross_entropy(logits, y, reduction="none")


@contextlib.contextmanager
def torch_seed(seed: int) -> Iterator[None]:
    """Seed PyTorch inside a block without touching the caller's global RNG state."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def batches(n: int, batch_size: int, rng: Optional[np.random.Generator] = None) -> Iterator[np.ndarray]:
    """Index batches over ``range(n)``, shuffled when ``rng`` is given."""
    order = rng.permutation(n) if rng is not None else np.arange(n)
    for start in range(0, n, batch_size):
        yield order[start : start + batch_size]


def fit_module(
    module: nn.Module,
    X: np.ndarray,
    y: np.ndarray,
    *,
    epochs: int = 10,
    batch_size: int = 128,
    lr: float = 1e-3,
    weight_decay: float = 0.0,
    optimizer: str = "adam",
    loss_fn: PerSampleLoss = cross_entropy_per_sample,
    sample_weight: Optional[np.ndarray] = None,
    random_state: RandomState = 0,
    device: str = "cpu",
    progress: bool = False,
    description: str = "training",
    on_epoch_end: Optional[Callable[[int, nn.Module], None]] = None,
) -> list[float]:
    """Train ``module`` in place with mini-batch gradient descent; return the mean loss per epoch.

    Parameters
    ----------
    module : torch.nn.Module
        Maps a float tensor batch to logits.
    X, y : ndarray
        Inputs (float32) and integer class indices.
    loss_fn : callable
        Per-sample loss ``(logits, targets, indices) -> (batch,)``; the indices let robust
        losses keep per-sample state. Cross-entropy by default.
    sample_weight : ndarray, optional
        Non-negative weight per sample multiplying its loss (0 removes a sample).
    random_state : int or Generator
        Seeds the shuffling; the module's initialisation is seeded by its builder.
    progress : bool
        Show a rich progress bar over epochs.
    """
    rng = check_random_state(random_state)
    Xt = torch.tensor(np.asarray(X), dtype=torch.float32)  # one copy: inputs may be read-only views
    yt = torch.tensor(np.asarray(y), dtype=torch.long)
    wt = None if sample_weight is None else torch.as_tensor(np.asarray(sample_weight), dtype=torch.float32)
    module.to(device)
    params = [p for p in module.parameters() if p.requires_grad]
    if optimizer == "adam":
        opt = torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    elif optimizer == "sgd":
        opt = torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=weight_decay)
    else:
        raise ValueError(f"optimizer must be 'adam' or 'sgd', got {optimizer!r}")
    history: list[float] = []
    bar = _progress(progress)
    with bar:
        task = bar.add_task(description, total=epochs) if progress else None
        with torch_seed(seed_from(rng)):
            for epoch in range(epochs):
                module.train()
                total, count = 0.0, 0
                for idx in batches(len(Xt), batch_size, rng):
                    it = torch.as_tensor(idx)
                    xb, yb = Xt[it].to(device), yt[it].to(device)
                    losses = loss_fn(module(xb), yb, it)
                    if wt is not None:
                        losses = losses * wt[it].to(device)
                    loss = losses.mean()
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    total += float(loss.detach()) * len(idx)
                    count += len(idx)
                history.append(total / max(count, 1))
                if on_epoch_end is not None:
                    on_epoch_end(epoch, module)
                if task is not None:
                    bar.update(task, advance=1, description=f"{description} (loss {history[-1]:.3f})")
    module.eval()
    return history


@torch.no_grad()
def predict_batches(module: nn.Module, X: np.ndarray, *, batch_size: int = 1024, device: str = "cpu",
                    forward: Optional[Callable[[torch.Tensor], torch.Tensor]] = None) -> np.ndarray:
    """Run ``forward`` (default: the module) over ``X`` in batches and stack the outputs."""
    module.eval()
    fn = forward or module
    outs = []
    with torch.inference_mode():  # no autograd graph: faster and far less memory
        for start in range(0, len(X), batch_size):
            xb = torch.tensor(np.asarray(X[start : start + batch_size]), dtype=torch.float32).to(device)
            outs.append(fn(xb).cpu().numpy())
    if not outs:
        return np.zeros((0,), dtype=np.float32)
    return np.concatenate(outs, axis=0)


class _NullBar:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def add_task(self, *a, **k):
        return None

    def update(self, *a, **k):
        pass


def _progress(enabled: bool):
    if not enabled:
        return _NullBar()
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    # progress goes to stderr so that stdout stays clean for --json output
    return Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total} epochs"),
                    TimeElapsedColumn(), transient=True, console=Console(stderr=True))
