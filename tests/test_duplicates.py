"""Tests for the duplicate detector: exact and near-duplicate groups, campaigns and label conflicts."""

from __future__ import annotations

import numpy as np
import pytest

from mithridate.data import Dataset
from mithridate.defenses.detect.duplicates import DuplicateDetector, row_hashes
from mithridate.errors import ConfigError, DataError
from mithridate.eval.metrics import auroc

D = 16


def _base(n=300, seed=0, n_classes=3):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, D)), rng.integers(0, n_classes, n)


def _expected_scores(sizes, same, typical, w=3.0):
    size = np.maximum(0.0, np.log2(sizes / typical))
    conflict = np.where(sizes > 1, (sizes - same) / np.maximum(sizes - 1, 1), 0.0)
    return size + w * conflict


# -- groups --------------------------------------------------------------------------------------
def test_exact_duplicates_are_grouped_by_content_hash():
    X, y = _base()
    X[10] = X[3]
    X[20] = X[3]
    X[7] = X[5]
    y[[3, 10, 20]] = 1
    y[[5, 7]] = 2
    ds = Dataset.from_arrays(X, y)
    for det in (DuplicateDetector(), DuplicateDetector(similarity=None)):
        det.fit(ds)
        g = det.groups_
        assert g[3] == g[10] == g[20] >= 0
        assert g[5] == g[7] >= 0 and g[5] != g[3]
        others = np.setdiff1d(np.arange(len(ds)), [3, 5, 7, 10, 20])
        assert (g[others] == -1).all()
        assert det.group_sizes_[[3, 10, 20]].tolist() == [3, 3, 3]
        assert det.group_sizes_[others].max() == 1
        assert det.exact_duplicate_.sum() == 5
        assert det.n_groups_ == 2
        assert not det.conflicting_.any()
    assert sorted(set(g[[3, 5]].tolist())) == [0, 1]  # ids in order of first appearance
    assert g[3] == 0 and g[5] == 1


def test_near_duplicates_with_tiny_noise_are_grouped_and_far_points_are_not():
    X, y = _base(seed=1)
    rng = np.random.default_rng(2)
    X[100:105] = X[0] + 1e-3 * rng.normal(size=(5, D))
    X[105:108] = X[1] + 1e-3 * rng.normal(size=(3, D))
    det = DuplicateDetector().fit(Dataset.from_arrays(X, y))
    assert len({det.groups_[i] for i in [0, *range(100, 105)]}) == 1
    assert len({det.groups_[i] for i in [1, *range(105, 108)]}) == 1
    assert det.groups_[0] != det.groups_[1]
    grouped = np.flatnonzero(det.groups_ >= 0)
    assert grouped.tolist() == [0, 1, *range(100, 108)]
    assert (det.nearest_similarity_[grouped] > 0.999).all()
    assert det.nearest_similarity_[det.groups_ < 0].max() < 0.99
    assert not det.exact_duplicate_.any()
    # exact-only mode does not see them
    exact = DuplicateDetector(similarity=None).fit(Dataset.from_arrays(X, y))
    assert (exact.groups_ == -1).all() and np.isnan(exact.nearest_similarity_).all()


def test_groups_larger_than_n_neighbors_are_found_whole():
    X, y = _base(seed=3)
    rng = np.random.default_rng(4)
    X[200:240] = X[0] + 1e-3 * rng.normal(size=(40, D))
    det = DuplicateDetector(n_neighbors=4).fit(Dataset.from_arrays(X, y))
    assert det.group_sizes_[[0, *range(200, 240)]].tolist() == [41] * 41


def test_similarity_threshold_controls_grouping():
    X, y = _base(seed=5)
    rng = np.random.default_rng(6)
    X[1] = X[0] + 0.12 * rng.normal(size=D)  # cosine ≈ 0.99 after centring
    ds = Dataset.from_arrays(X, y)
    loose = DuplicateDetector(similarity=0.9).fit(ds)
    strict = DuplicateDetector(similarity=0.9999).fit(ds)
    assert loose.groups_[0] == loose.groups_[1] >= 0
    assert strict.groups_[0] == -1 and strict.groups_[1] == -1


# -- scores --------------------------------------------------------------------------------------
def test_conflicting_labels_score_above_consistent_duplicates():
    X, y = _base(seed=7)
    rng = np.random.default_rng(8)
    # five consistent pairs and five conflicting pairs, all near-identical
    for k in range(10):
        a, b = 2 * k, 2 * k + 1
        X[b] = X[a] + 1e-3 * rng.normal(size=D)
        y[b] = y[a] if k < 5 else (y[a] + 1) % 3
    # and a triple with labels 2:1
    X[21] = X[20] + 1e-3 * rng.normal(size=D)
    X[22] = X[20] + 1e-3 * rng.normal(size=D)
    y[20], y[21], y[22] = 0, 0, 1
    det = DuplicateDetector().fit(Dataset.from_arrays(X, y))
    consistent = np.arange(10)
    conflicting = np.arange(10, 20)
    assert det.scores_[conflicting].min() > det.scores_[consistent].max()
    assert det.conflicting_[conflicting].all() and not det.conflicting_[consistent].any()
    assert det.scores_[consistent].min() > det.scores_[30:].max()  # a pair beats a unique sample
    # in the 2:1 triple the minority scores highest
    assert det.scores_[22] > det.scores_[20] == det.scores_[21]
    assert det.conflict_[22] == 1.0 and det.conflict_[20] == 0.5
    flags = det.flag()
    assert flags[conflicting].all() and flags[20:23].all()
    assert not flags[consistent].any() and not flags[23:].any()


def test_planted_campaign_of_30_copies_with_one_label_stands_out():
    X, y = _base(n=400, seed=9)
    rng = np.random.default_rng(10)
    src = rng.normal(size=D)
    X[370:400] = src + 1e-3 * rng.normal(size=(30, D))
    y[370:400] = 2
    campaign = np.zeros(len(y), bool)
    campaign[370:] = True
    # a few natural pairs with consistent labels: they must stay below the campaign
    for k in range(5):
        X[100 + k] = X[k] + 1e-3 * rng.normal(size=D)
        y[100 + k] = y[k]
    det = DuplicateDetector().fit(Dataset.from_arrays(X, y))
    assert det.group_sizes_[campaign].tolist() == [30] * 30
    assert not det.conflicting_[campaign].any()
    assert det.scores_[campaign].min() > det.scores_[~campaign].max()
    assert auroc(det.scores_, campaign) == 1.0
    np.testing.assert_array_equal(det.flag(), campaign)
    assert det.typical_size_ == 1.0
    np.testing.assert_allclose(det.scores_[campaign], np.log2(30))


def test_campaign_outvoting_the_original_flags_the_whole_group():
    X, y = _base(seed=11)
    rng = np.random.default_rng(12)
    X[250:270] = X[0] + 1e-3 * rng.normal(size=(20, D))
    y[250:270] = (y[0] + 1) % 3
    det = DuplicateDetector().fit(Dataset.from_arrays(X, y))
    group = [0, *range(250, 270)]
    assert int(np.argmax(det.scores_)) == 0  # the outvoted original has the highest conflict
    assert det.flag()[group].all() and det.flag().sum() == 21
    assert det.conflict_[0] == 1.0
    np.testing.assert_allclose(det.conflict_[250:270], 1 / 20)


def test_score_formula_by_hand():
    X, y = _base(n=60, seed=13)
    # group A: 4 exact copies, labels 1,1,1,2; group B: 2 copies, labels 0,0
    X[[1, 2, 3]] = X[0]
    y[[0, 1, 2, 3]] = [1, 1, 1, 2]
    X[5] = X[4]
    y[[4, 5]] = 0
    det = DuplicateDetector(conflict_weight=2.0).fit(Dataset.from_arrays(X, y))
    sizes = np.ones(60)
    same = np.ones(60)
    sizes[:4] = 4
    same[:3] = 3
    same[3] = 1
    sizes[4:6] = 2
    same[4:6] = 2
    np.testing.assert_allclose(det.scores_, _expected_scores(sizes, same, typical=1.0, w=2.0))
    np.testing.assert_allclose(det.size_scores_, np.maximum(0.0, np.log2(sizes)))


def test_typical_size_is_the_median_over_samples():
    # data that naturally comes in pairs: pairs score 0, a group of 16 scores log2(16 / 2) = 3
    rng = np.random.default_rng(14)
    base = rng.normal(size=(100, D))
    X = np.repeat(base, 2, axis=0)
    y = np.repeat(rng.integers(0, 2, 100), 2)
    X = np.r_[X, np.repeat(rng.normal(size=(1, D)), 16, axis=0)]
    y = np.r_[y, np.ones(16, int)]
    det = DuplicateDetector().fit(Dataset.from_arrays(X, y))
    assert det.typical_size_ == 2.0
    assert det.scores_[:200].max() == 0.0
    np.testing.assert_allclose(det.scores_[200:], 3.0)
    assert det.flag().sum() == 16 and det.flag()[200:].all()


def test_flag_budget_follows_the_score():
    X, y = _base(seed=15)
    X[1] = X[0]
    y[1] = (y[0] + 1) % 3
    X[3] = X[2]
    y[3] = y[2]
    det = DuplicateDetector().fit(Dataset.from_arrays(X, y))
    flags = det.flag(budget=0.01)  # ceil(3) = 3: the conflicting pair first
    assert flags.sum() == 3 and flags[[0, 1]].all()
    np.testing.assert_array_equal(det.flag(threshold=0.5), det.scores_ > 0.5)


# -- representations and hashes --------------------------------------------------------------
def test_hashes_come_from_the_dataset_or_from_given_features():
    X, y = _base(n=50, seed=16)
    ds = Dataset.from_arrays(X, y)
    feats = np.asarray(ds.X).copy()
    feats[9] = feats[8]  # identical in the given representation only
    det = DuplicateDetector(similarity=None).fit(ds, features=feats)
    assert det.groups_[8] == det.groups_[9] >= 0
    assert DuplicateDetector(similarity=None).fit(ds).groups_.max() == -1
    np.testing.assert_array_equal(row_hashes(ds.X), ds.content_hashes)


def test_scaling_auto_standardises_tables_and_centres_images():
    rng = np.random.default_rng(17)
    # a table with one large-valued column: unscaled, every row is 0.999-similar to others
    X = np.c_[rng.normal(size=(200, 8)), 1000.0 + 300.0 * rng.normal(size=200)]
    ds = Dataset.from_arrays(X, rng.integers(0, 2, 200))
    auto = DuplicateDetector().fit(ds)
    assert auto.scaling_ == "standardize" and auto.n_groups_ == 0
    none = DuplicateDetector(scaling="none").fit(ds)
    assert none.group_sizes_.max() > 100
    # images: copies with faint pixel noise stay near-identical when only centred
    imgs = rng.random((150, 1, 8, 8)) * (rng.random((1, 1, 8, 8)) > 0.3)  # some pixels always 0 ...
    imgs[:, 0, 0, 0] = 0.01 * rng.random(150)  # ... and one nearly constant
    copies = np.clip(imgs[0] + 0.005 * rng.normal(size=(20, 1, 8, 8)), 0, 1)
    img_ds = Dataset.from_arrays(np.r_[imgs, copies], rng.integers(0, 2, 170))
    det = DuplicateDetector().fit(img_ds)
    assert det.scaling_ == "center"
    assert det.group_sizes_[150:].tolist() == [21] * 20
    assert DuplicateDetector().fit(img_ds, features=np.asarray(img_ds.X).reshape(170, -1)).scaling_ == "center"


def test_model_is_ignored_by_default_and_layer_is_read_on_request():
    class Collapse:
        """A model whose layer maps every sample to nearly the same vector."""

        def __init__(self):
            self.calls = 0

        def features(self, X, layer):
            self.calls += 1
            return np.ones((len(X), 4)) + 1e-4 * np.asarray(X).reshape(len(X), -1)[:, :4]

    X, y = _base(n=80, seed=18)
    ds = Dataset.from_arrays(X, y)
    model = Collapse()
    assert DuplicateDetector().fit(ds, model=model).n_groups_ == 0
    assert model.calls == 0
    det = DuplicateDetector(layer="penultimate", scaling="none").fit(ds, model=model)
    assert model.calls == 1 and det.group_sizes_.min() == 80


# -- bad input -----------------------------------------------------------------------------------
def test_nan_features_are_refused():
    X, y = _base(n=40, seed=19)
    ds = Dataset.from_arrays(X, y)
    bad = X.copy()
    bad[3, 1] = np.nan
    with pytest.raises(DataError, match="NaN"):
        DuplicateDetector().fit(ds, features=bad)
    with pytest.raises(DataError, match="NaN"):
        Dataset.from_arrays(bad, y)


@pytest.mark.parametrize("kwargs", [{"similarity": 0.0}, {"similarity": 1.5}, {"similarity": "high"},
                                    {"n_neighbors": 0}, {"n_neighbors": 3.0}, {"scaling": "zscore"},
                                    {"conflict_weight": -1}, {"size_threshold": float("nan")}])
def test_bad_parameters(kwargs):
    X, y = _base(n=40, seed=20)
    with pytest.raises(ConfigError):
        DuplicateDetector(**kwargs).fit(Dataset.from_arrays(X, y))


def test_tiny_dataset():
    ds = Dataset.from_arrays(np.array([[1.0, 2.0], [1.0, 2.0]]), [0, 1])
    det = DuplicateDetector().fit(ds)
    assert det.group_sizes_.tolist() == [2, 2] and det.conflicting_.all()
    assert det.flag().all()


# -- text: MinHash over character shingles -------------------------------------------------------
def _text_dataset(texts, labels):
    import pandas as pd

    X = np.random.default_rng(0).normal(size=(len(texts), 4)).astype(np.float32)  # features are not read
    return Dataset.from_arrays(X, np.asarray(labels)).replace(meta=pd.DataFrame({"text": texts}))


def _shingles(t, k=5):
    import re

    norm = " ".join(re.findall(r"\w+", t.lower()))
    return {norm[i:i + k] for i in range(len(norm) - k + 1)}


def test_minhash_groups_templated_texts_and_estimates_jaccard():
    rng = np.random.default_rng(0)
    vocab = [f"word{k}" for k in range(400)]
    texts = [" ".join(rng.choice(vocab, 15)) for _ in range(200)]
    labels = list(rng.integers(0, 2, 200))
    template = "great support visit www cheap deals example for 50 off gadgets best prices guaranteed click now"
    swaps = ["prices", "deal", "offers", "value", "rates"]
    spam = [template.replace("prices", swaps[i % 5]) + (" limited offer" if i % 3 == 0 else "") for i in range(12)]
    texts += spam + ["", "   ", template]  # two texts without words and an exact copy of the template
    labels += [1] * 12 + [0, 1, 1]
    det = DuplicateDetector(text="minhash").fit(_text_dataset(texts, labels))
    assert det.method_ == "minhash"
    spam_idx = np.arange(200, 212)
    g = det.groups_[spam_idx]
    main = np.bincount(g[g >= 0]).argmax()
    assert (g >= 0).all() and (g == main).sum() >= 10 and det.groups_[214] == main  # templated copies group
    assert (det.groups_[:200] == -1).all() and det.groups_[212] == det.groups_[213] == -1
    flags = det.flag()
    assert flags[spam_idx[g == main]].all() and flags[214] and not flags[:200].any()  # >= 8x the typical size
    # the estimate the threshold reads is the Jaccard similarity of the shingle sets: each copy's
    # highest estimate matches its highest exact Jaccard over the others (MinHash error ~0.04 here)
    for i in spam_idx:
        a = _shingles(texts[i])
        best = max(len(a & _shingles(t)) / len(a | _shingles(t)) for j, t in enumerate(texts) if j != i and t.strip())
        assert abs(det.nearest_similarity_[i] - best) < 0.15
    unrelated = max(len(_shingles(texts[0]) & _shingles(t)) / len(_shingles(texts[0]) | _shingles(t))
                    for t in texts[1:200])
    assert unrelated < 0.5 and det.nearest_similarity_[0] < 0.8


def test_minhash_bad_input():
    ds = _text_dataset(["a b c", "d e f", "a b c"], [0, 1, 0])
    with pytest.raises(ConfigError, match="jaccard must be in"):
        DuplicateDetector(text="minhash", jaccard=1.5).fit(ds)
    with pytest.raises(ConfigError, match="shingle_size must be an int"):
        DuplicateDetector(text="minhash", shingle_size=0).fit(ds)
    with pytest.raises(ConfigError, match="text must be one of"):
        DuplicateDetector(text="words").fit(ds)
    with pytest.raises(ConfigError, match="needs a text dataset"):
        DuplicateDetector(text="minhash").fit(Dataset.from_arrays(np.zeros((3, 2)), np.array([0, 1, 0])))
    det = DuplicateDetector(text="minhash").fit(ds)  # two equal texts: exact duplicates
    assert det.exact_duplicate_.tolist() == [True, False, True] and det.conflicting_.sum() == 0
