"""End-to-end backdoor scenario: train clean, poison, retrain, detect, sanitise, retrain.

This is the path ``mithridate demo`` and ``benchmarks/backdoor_spectral.py`` run, and what the
HTML report draws. Every number comes from :mod:`mithridate.eval.metrics`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence

import numpy as np

from mithridate.attacks.base import Attack, Poisoning
from mithridate.data.dataset import Dataset, DatasetSplits
from mithridate.errors import ConfigError
from mithridate.eval import metrics as M
from mithridate.utils import RandomState, check_random_state, seed_from

ModelFactory = Callable[[int], Any]  # seed -> unfitted model


@dataclass
class BackdoorScenarioResult:
    """What a backdoor scenario measured.

    ``rows`` is the long results table (one row per stage: clean, poisoned, sanitized), each with
    clean accuracy, ASR and robust accuracy. ``detection`` maps a detector name to its metrics
    (AUROC, AP, TPR at 1%/5% FPR, precision at the true budget, flagged precision/recall) and
    seconds. The arrays after ``poisoning`` and the trained ``models`` (stage -> model) are kept for
    reports and further use, not for JSON.
    """

    config: dict
    rows: list
    detection: dict
    budget: dict
    timings: dict
    poisoning: Optional[Poisoning] = field(default=None, repr=False)
    scores: dict = field(default_factory=dict, repr=False)
    flags: dict = field(default_factory=dict, repr=False)
    sanitizer: str = ""
    models: dict = field(default_factory=dict, repr=False)

    def stage(self, name: str) -> dict:
        return next(r for r in self.rows if r["stage"] == name)

    def to_dict(self) -> dict:
        return {"config": self.config, "rows": self.rows, "detection": self.detection, "budget": self.budget,
                "timings": self.timings, "sanitizer": self.sanitizer}


def evaluate_backdoor(model: Any, test: Dataset, poisoning: Optional[Poisoning]) -> dict:
    """Clean accuracy on ``test``; ASR and robust accuracy on its triggered non-target samples."""
    out = {"clean_accuracy": M.accuracy(test.y, model.predict(test.X))}
    if poisoning is not None and poisoning.trigger is not None:
        trig = poisoning.triggered_test(test)
        pred = model.predict(trig.X)
        out["asr"] = M.attack_success_rate(trig.y, pred, poisoning.target)
        out["robust_accuracy"] = M.robust_accuracy(trig.y, pred, poisoning.target)
    return out


def detection_metrics(scores: np.ndarray, is_poison: np.ndarray, flags: Optional[np.ndarray]) -> dict:
    """Detection report plus precision at the true budget (top-k with k = number of poisons)."""
    rep = M.detection_report(scores, is_poison, flags)
    rep["precision_at_true_budget"] = M.precision_at_k(scores, is_poison)
    return rep


def run_backdoor_scenario(
    splits: DatasetSplits,
    attack: Attack,
    detectors: Sequence[Any],
    model_factory: ModelFactory,
    *,
    sanitize_with: Optional[str] = None,
    budget: Optional[float] = None,
    random_state: RandomState = 0,
    train_clean: bool = True,
    on_step: Optional[Callable[[str], None]] = None,
) -> BackdoorScenarioResult:
    """Run the whole slice and measure each stage.

    Parameters
    ----------
    splits : DatasetSplits
        Clean train and test data.
    attack : Attack
        A backdoor attack (its trigger is applied to the test set for ASR).
    detectors : sequence of Detector
        Each is fit on the poisoned training set with the poisoned model; none reads ground truth.
    model_factory : callable
        ``seed -> unfitted model``; the same seed is used for every stage so the stages differ
        only by their training data.
    sanitize_with : str, optional
        Name of the detector whose flags are removed before retraining (default: the first).
    budget : float, optional
        Passed to ``flag(budget=...)``; ``None`` uses each detector's budget-free default rule.
    """
    names = [d.name for d in detectors]
    if len(set(names)) != len(names):
        raise ConfigError(f"detector names must be unique in one scenario, got {names}")
    if sanitize_with is not None and sanitize_with not in names:
        raise ConfigError(f"sanitize_with={sanitize_with!r} is not one of the detectors {names}")
    rng = check_random_state(random_state)
    model_seed = seed_from(rng)
    step = on_step or (lambda s: None)
    timings: dict = {}
    rows: list = []
    models: dict = {}

    def fit(data: Dataset, stage: str):
        step(f"training the {stage} model on {len(data)} samples")
        t0 = time.perf_counter()
        model = model_factory(model_seed).fit(data, n_classes=splits.train.n_classes)
        timings[f"train_{stage}"] = time.perf_counter() - t0
        models[stage] = model
        return model

    step(f"poisoning with {attack.name}")
    poisoning = attack.poison(splits.train, random_state=rng)
    if train_clean:
        clean_model = fit(splits.train, "clean")
        rows.append({"stage": "clean", **evaluate_backdoor(clean_model, splits.test, poisoning)})
    poisoned_model = fit(poisoning.dataset, "poisoned")
    rows.append({"stage": "poisoned", **evaluate_backdoor(poisoned_model, splits.test, poisoning)})

    defender_view = poisoning.dataset.without_ground_truth()
    truth = poisoning.poison_mask
    detection, scores, flags = {}, {}, {}
    features_cache: dict = {}
    for det in detectors:
        step(f"scoring with {det.name}")
        t0 = time.perf_counter()
        layer = getattr(det, "layer", None)
        if layer not in features_cache:
            features_cache[layer] = det.features_for(defender_view, poisoned_model)
        det.fit(defender_view, features=features_cache[layer])
        f = det.flag(budget=budget) if budget is not None else det.flag()
        seconds = time.perf_counter() - t0
        scores[det.name], flags[det.name] = det.scores_, f
        detection[det.name] = {**detection_metrics(det.scores_, truth, f), "seconds": seconds}
    sanitizer = sanitize_with or (detectors[0].name if detectors else "")
    if sanitizer:
        cleaned = poisoning.dataset.drop(flags[sanitizer])
        sanitized_model = fit(cleaned, "sanitized")
        row = {"stage": "sanitized", **evaluate_backdoor(sanitized_model, splits.test, poisoning)}
        row.update({"removed": int(flags[sanitizer].sum()), "poisons_left": int(cleaned.is_poison.sum())})
        rows.append(row)
    config = {"dataset": splits.name, "n_train": len(splits.train), "n_test": len(splits.test),
              "attack": attack.name, "attack_params": _jsonable(attack.get_params()),
              "detectors": [d.name for d in detectors], "flag_budget": budget, "model_seed": model_seed,
              "model": _describe_model(poisoned_model)}
    return BackdoorScenarioResult(config=config, rows=rows, detection=detection, budget=dict(poisoning.budget),
                                  timings=timings, poisoning=poisoning, scores=scores, flags=flags,
                                  sanitizer=sanitizer, models=models)


def _describe_model(model: Any) -> dict:
    desc = {"class": type(model).__name__}
    if hasattr(model, "get_config"):
        desc.update(model.get_config())
    if hasattr(model, "arch_"):
        desc["arch"] = model.arch_
    if hasattr(model, "kind"):
        desc["kind"] = model.kind
    return _jsonable(desc)


def _jsonable(d: dict) -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, tuple):
            v = list(v)
        out[k] = v if isinstance(v, (int, float, str, bool, type(None), list)) else str(v)
    return out


def run_demo(*, rate: float = 0.05, seed: int = 0, on_step: Optional[Callable[[str], None]] = None
             ) -> BackdoorScenarioResult:
    """The scenario behind ``mithridate demo`` (and its end-to-end test).

    Digits (scikit-learn, split with ``seed``), BadNets with a 2x2 white patch relabelled to
    class 0 at ``rate`` of the training set, the default CNN, three detectors on its
    penultimate layer — robust distance (sanitiser), SPECTRE and spectral signatures — and
    removal of what the robust distance's budget-free rule flags.
    """
    from mithridate.attacks.backdoor import BadNets
    from mithridate.data.loaders import load_dataset
    from mithridate.defenses.detect import RobustDistance, SpectralSignatures, Spectre
    from mithridate.models.nets import default_classifier

    splits = load_dataset("digits", random_state=seed)
    return run_backdoor_scenario(
        splits, BadNets(target=0, poison_rate=rate, size=2), [RobustDistance(), Spectre(), SpectralSignatures()],
        lambda s: default_classifier(len(splits.train), random_state=s), random_state=seed, on_step=on_step,
    )
