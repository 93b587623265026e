"""Comparator: IBM ART's ``ActivationDefence`` (Chen et al. 2018) on the same trained torch model.

Used only by ``benchmarks/detection_matrix.py``; never imported from ``src/`` (ART is an
optional comparator, not a dependency of mithridate).

Which layer ART reads
---------------------
``ActivationDefence._get_activations`` calls
``classifier.get_activations(x_train, layer=len(classifier.layer_names) - 1, batch_size=128)``:
for a ``PyTorchClassifier`` wrapping an ``nn.Sequential`` that is the output of the **last
child**, i.e. the logits on mithridate's network. As in ``_art_compare.py`` we give ART the same
trained weights truncated after the layer mithridate calls "penultimate" (``relu1``), so ART
clusters exactly the activations our detectors read (checked: ``feature_max_abs_diff``).

What ART runs
-------------
``detect_poison()`` segments the activations by label, reduces each class to ``nb_dims`` = 10
dimensions (``reduce``: ART's default ``"PCA"``, or ``"FastICA"`` as in the paper), splits it
with scikit-learn's ``KMeans(n_clusters=2)`` and judges the split with ``cluster_analysis``:
ART's default ``"smaller"`` marks the smaller cluster of *every* class as poison;
``"relative-size"`` only a cluster holding < 35% of its class (the paper's rule);
``"silhouette-scores"`` additionally asks for a silhouette > 0.1. Exclusionary reclassification
(``ex_re_threshold``) is left off, as it is in our detector's default.

ART 1.20.1 (with numpy 2.4) crashes in both non-default rules as soon as one class has no
suspicious cluster, which is the normal case for clean classes:

* ``ClusteringAnalyzer.analyze_by_relative_size`` tests ``cluster_id in poison_clusters`` on the
  tuple returned by ``np.where``, i.e. ``cluster_id == array([])``: "ValueError: The truth value
  of an empty array is ambiguous";
* ``analyze_by_silhouette_score`` sets ``poison_clusters = (np.array([[]]),)`` (a float array) for a
  small but not cohesive cluster and then indexes with it: "IndexError: arrays used as indices
  must be of integer (or boolean) type".

So with ``relative_size_flags=True`` the benchmark runs ART's ``detect_poison`` with the
``"smaller"`` analysis (same reduction and clustering; that analysis costs nothing) and applies
ART's relative-size rule itself to ART's clusters, exactly as ART's code writes it
(``np.round(size / class size, 2) < 0.35``); ART's own "smaller" flags are kept as ``art_flags``.

KMeans and FastICA are created without a ``random_state`` by ART, so they draw from numpy's
global generator: we call ``np.random.seed(seed)`` before every ``detect_poison()`` so that
repeated (timed) calls cluster identically and runs are reproducible (checked:
``repeat_flags_identical``).

Scores
------
ART returns flags (``is_clean_lst``) and a report, no per-sample score. For AUROC we use the
continuous form of ART's own size rules, read from ART's own clustering of the timed call
(``clusters_by_class_``): ``score_i = 1 - (share of its class in sample i's cluster)``. A sample
in a small cluster scores high; both halves of a 50/50 split score 0.5. With ``"smaller"`` and
``"relative-size"`` the flags are exactly ``score > 0.5`` and ``score > 0.65`` (up to ART's rounding
of shares to two decimals), and with ``"silhouette-scores"`` a subset of the latter, which is
checked (``flags_consistent``); AUROC of these scores is the
best any size-based reading of ART's clusters can do. ``auroc_flags`` (the AUROC of the binary
flags, = (TPR + 1 - FPR) / 2) is reported too.

Timing
------
As in ``_art_compare.py``: ``seconds_features`` is the time spent inside ART's
``get_activations`` during the first (real) call; ART caches ``activations_by_class`` on the
defence object, so further calls only re-run reduction, clustering and analysis;
``seconds_scoring`` is the minimum over calls of (call time - time inside ``get_activations``);
``seconds_total = seconds_features + seconds_scoring``.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from typing import Any, Optional

import numpy as np


def art_available() -> Optional[str]:
    """ART's version string, or None when ActivationDefence does not import."""
    try:
        import art  # noqa: F401
        from art.defences.detector.poison import ActivationDefence  # noqa: F401
        from art.estimators.classification import PyTorchClassifier  # noqa: F401
    except Exception:
        return None
    return getattr(art, "__version__", "unknown")


def _truncate(module: Any, last: str) -> Any:
    from torch import nn

    children = list(module.named_children())
    names = [n for n, _ in children]
    return nn.Sequential(OrderedDict(children[: names.index(last) + 1]))


def run_art_activation(
    module: Any,
    X: np.ndarray,
    y: np.ndarray,
    *,
    nb_classes: int,
    truncate_after: Optional[str] = None,
    reference_features: Optional[np.ndarray] = None,
    reduce: str = "PCA",
    cluster_analysis: str = "smaller",
    relative_size_flags: bool = False,
    nb_dims: int = 10,
    seed: int = 0,
    repeats: int = 3,
    max_repeat_seconds: float = float("inf"),
) -> dict:
    """Run ART's ActivationDefence on ``module`` (optionally truncated after a layer).

    Returns a dict with ``scores`` (n,), ``flags`` (n,) bool, ``layer_read``, timings and checks
    (see the module docstring).
    """
    import torch
    from art.defences.detector.poison import ActivationDefence
    from art.estimators.classification import PyTorchClassifier

    net = module if truncate_after is None else _truncate(module, truncate_after)
    net.eval()
    input_shape = tuple(int(s) for s in X.shape[1:])
    clf = PyTorchClassifier(model=net, loss=torch.nn.CrossEntropyLoss(), input_shape=input_shape,
                            nb_classes=int(nb_classes), clip_values=(0.0, 1.0), device_type="cpu")
    layer_names = list(clf.layer_names)
    layer_read = layer_names[len(layer_names) - 1]

    captured: dict = {"seconds": 0.0, "acts": None}
    original = clf.get_activations

    def timed_get_activations(*args, **kwargs):
        t0 = time.perf_counter()
        out = original(*args, **kwargs)
        captured["seconds"] += time.perf_counter() - t0
        captured["acts"] = out
        return out

    clf.get_activations = timed_get_activations  # instrumentation only: same call, same result

    x = np.array(X, dtype=np.float32, copy=True)  # writable copy (outside the timed region)
    yy = np.asarray(y).astype(np.int64)
    defence = ActivationDefence(clf, x, yy)
    params = {"nb_clusters": 2, "nb_dims": int(nb_dims), "reduce": reduce, "cluster_analysis": cluster_analysis}

    np.random.seed(seed)  # ART's KMeans / FastICA draw from numpy's global generator
    t0 = time.perf_counter()
    _, is_clean = defence.detect_poison(**params)
    first = time.perf_counter() - t0
    feat_seconds = captured["seconds"]
    scoring_times = [first - feat_seconds]
    is_clean = list(is_clean)
    clusters_first = [np.asarray(c).copy() for c in defence.clusters_by_class]
    identical = True
    for _ in range(max(int(repeats), 1) - 1):
        if sum(scoring_times) > max_repeat_seconds:
            break
        before = captured["seconds"]
        np.random.seed(seed)
        t0 = time.perf_counter()
        _, is_clean_r = defence.detect_poison(**params)
        scoring_times.append(time.perf_counter() - t0 - (captured["seconds"] - before))
        identical = identical and list(is_clean_r) == is_clean
    art_flags = np.asarray(is_clean) == 0

    # per-sample score from ART's own clusters: 1 - share of the class in the sample's cluster
    scores = np.zeros(len(x))
    for c in range(int(nb_classes)):
        idx = np.flatnonzero(yy == c)  # ART's segment_by_class keeps this order
        if not len(idx):
            continue
        lab = np.asarray(clusters_first[c]).astype(int)
        share = np.bincount(lab, minlength=2) / len(lab)
        scores[idx] = 1.0 - share[lab]
    relative = np.round(1.0 - scores, 2) < 0.35  # ART's relative-size rule on ART's clusters
    if cluster_analysis == "smaller":
        recon = scores > 0.5
        ties = np.isclose(scores, 0.5)
        consistent = bool(np.array_equal(recon[~ties], art_flags[~ties]))
    elif cluster_analysis == "relative-size":
        consistent = bool(np.array_equal(relative, art_flags))
    elif cluster_analysis == "silhouette-scores":  # size < 35% *and* silhouette > 0.1: a subset of the size rule
        consistent = bool(not np.any(art_flags & ~relative))
    else:
        consistent = None
    flags = relative if relative_size_flags else art_flags

    acts = np.asarray(captured["acts"]).reshape(len(x), -1)
    out = {
        "scores": scores,
        "flags": flags,
        "art_flags": art_flags,
        "flag_rule": "relative-size (< 35%), applied to ART's clusters" if relative_size_flags
                     else f"ART's {cluster_analysis!r}",
        "layer_read": layer_read,
        "art_layer_names": layer_names,
        "feature_dim": int(acts.shape[1]),
        "reduce": reduce,
        "cluster_analysis": cluster_analysis,
        "seconds_first_call": first,
        "seconds_features": feat_seconds,
        "seconds_scoring": min(scoring_times),
        "seconds_scoring_all": scoring_times,
        "seconds_total": feat_seconds + min(scoring_times),
        "flags_consistent": consistent,
        "repeat_flags_identical": bool(identical),
        "n_flagged": int(flags.sum()),
        "n_art_flagged": int(art_flags.sum()),
    }
    if reference_features is not None and reference_features.shape == acts.shape:
        out["feature_max_abs_diff"] = float(np.max(np.abs(reference_features.astype(np.float64) - acts)))
    return out
