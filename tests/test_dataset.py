"""Tests for mithridate.data.dataset: validation, immutability, derivation, provenance."""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd
import pytest

from mithridate.data import Dataset, encode_labels
from mithridate.errors import DataError


def _ds(n=6, d=3, seed=0, **kw):
    rng = np.random.default_rng(seed)
    X = rng.random((n, d)).astype(np.float32)
    y = kw.pop("y", ["a", "b"] * (n // 2))
    return Dataset.from_arrays(X, y, **kw)


# -- from_arrays validation ----------------------------------------------------------------------
def test_empty_dataset_refused():
    with pytest.raises(DataError, match="empty"):
        Dataset.from_arrays(np.zeros((0, 3)), [])


def test_nan_and_inf_features_refused():
    X = np.random.default_rng(0).random((5, 3))
    X[3, 1] = np.nan
    with pytest.raises(DataError, match="NaN or infinite.*row 3"):
        Dataset.from_arrays(X, [0, 1, 0, 1, 0])
    X[3, 1] = np.inf
    with pytest.raises(DataError, match="NaN or infinite"):
        Dataset.from_arrays(X, [0, 1, 0, 1, 0])


def test_mismatched_lengths_refused():
    with pytest.raises(DataError, match="5 rows but labels have 4"):
        Dataset.from_arrays(np.zeros((5, 2)), [0, 1, 0, 1])
    with pytest.raises(DataError, match="3 ids given for 4 samples"):
        Dataset.from_arrays(np.zeros((4, 2)), [0, 1, 0, 1], ids=[1, 2, 3])
    with pytest.raises(DataError, match="metadata has 3 rows"):
        Dataset.from_arrays(np.zeros((4, 2)), [0, 1, 0, 1], meta=pd.DataFrame({"source": ["a"] * 3}))
    with pytest.raises(DataError, match="is_poison"):
        Dataset.from_arrays(np.zeros((4, 2)), [0, 1, 0, 1], is_poison=[True, False])


def test_single_class_refused():
    with pytest.raises(DataError, match="1 class"):
        Dataset.from_arrays(np.zeros((4, 2)), [3, 3, 3, 3])


def test_non_integer_float_labels_refused_but_integral_floats_accepted():
    with pytest.raises(DataError, match="non-integer"):
        Dataset.from_arrays(np.zeros((3, 2)), [0.0, 1.5, 1.0])
    with pytest.raises(DataError, match="NaN"):
        Dataset.from_arrays(np.zeros((3, 2)), [0.0, np.nan, 1.0])
    ds = Dataset.from_arrays(np.zeros((3, 2)), [0.0, 1.0, 1.0])
    assert ds.classes == (0, 1)
    assert ds.y.tolist() == [0, 1, 1]
    assert ds.y.dtype == np.int64


def test_mixed_label_types_refused_as_object_array():
    with pytest.raises(DataError, match="mix"):
        Dataset.from_arrays(np.zeros((3, 2)), np.array([1, "a", 2], dtype=object))
    with pytest.raises(DataError, match="missing"):
        Dataset.from_arrays(np.zeros((3, 2)), np.array(["a", None, "b"], dtype=object))


def test_mixed_label_types_refused_as_list():
    # A plain list [1, "a", 2] is just as mixed; numpy silently turns it into strings
    # ("1", "a", "2"), which must not be accepted as three string classes.
    with pytest.raises(DataError, match="mix"):
        encode_labels([1, "a", 2])
    with pytest.raises(DataError, match="mix"):
        Dataset.from_arrays(np.zeros((3, 2)), [1, "a", 2])


def test_integer_labels_with_string_classes_is_a_clear_error():
    with pytest.raises(DataError, match=r"labels are integers but the classes are not \(\['a', 'b'\]\)"):
        Dataset.from_arrays(np.zeros((4, 2)), np.array([0, 1, 0, 1]), classes=("a", "b"))
    ds = Dataset.from_arrays(np.zeros((4, 2)), np.array(["a", "b", "a", "b"]), classes=("a", "b"))
    assert ds.classes == ("a", "b") and ds.y.tolist() == [0, 1, 0, 1]


def test_duplicate_ids_refused():
    with pytest.raises(DataError, match="unique.*'x'"):
        Dataset.from_arrays(np.zeros((4, 2)), [0, 1, 0, 1], ids=["x", "y", "x", "z"])


def test_non_numeric_features_and_bad_ndim_refused():
    with pytest.raises(DataError, match="numeric"):
        Dataset.from_arrays(np.array([["a", "b"], ["c", "d"]]), [0, 1])
    with pytest.raises(DataError, match="N x D"):
        Dataset.from_arrays(np.zeros(4), [0, 1, 0, 1])


def test_labels_encoded_sorted_and_bool_labels():
    ds = Dataset.from_arrays(np.zeros((4, 2)), ["dog", "cat", "dog", "bird"])
    assert ds.classes == ("bird", "cat", "dog")
    assert ds.y.tolist() == [2, 1, 2, 0]
    ds = Dataset.from_arrays(np.zeros((3, 2)), [True, False, True])
    assert ds.classes == (0, 1) and ds.y.tolist() == [1, 0, 1]


def test_explicit_classes_keep_order_and_unknown_label_refused():
    ds = Dataset.from_arrays(np.zeros((3, 2)), ["b", "a", "b"], classes=["b", "a", "c"])
    assert ds.classes == ("b", "a", "c")
    assert ds.y.tolist() == [0, 1, 0]
    with pytest.raises(DataError, match="not among the known classes"):
        Dataset.from_arrays(np.zeros((3, 2)), ["b", "a", "z"], classes=["a", "b"])


# -- immutability --------------------------------------------------------------------------------
def test_arrays_not_writable():
    ds = _ds(is_poison=[True, False] * 3)
    for arr in (ds.X, ds.y, ds.ids, ds.is_poison):
        assert not arr.flags.writeable
    with pytest.raises(ValueError):
        ds.X[0, 0] = 5.0
    with pytest.raises(ValueError):
        ds.y[0] = 1
    with pytest.raises(ValueError):
        ds.ids[0] = 100
    with pytest.raises(ValueError):
        ds.is_poison[0] = False
    with pytest.raises(Exception):  # frozen dataclass
        ds.X = np.zeros((6, 3))


def test_from_arrays_does_not_alias_callers_arrays():
    # Immutable means the caller cannot change the Dataset behind its back either: float32 X and
    # an ndarray of ids are taken as they are by np.asarray, so they must be copied.
    X = np.random.default_rng(0).random((4, 3)).astype(np.float32)
    ids = np.array([10, 11, 12, 13])
    ds = Dataset.from_arrays(X, [0, 1, 0, 1], ids=ids)
    before = ds.content_hashes.copy()
    X[0, 0] = 99.0
    ids[0] = 77
    assert ds.X[0, 0] != 99.0
    assert ds.ids[0] == 10
    assert Dataset.from_arrays(ds.X, ds.y).content_hashes.tolist() == before.tolist()


def test_subset_drop_replace_return_new_objects_with_ids():
    ds = _ds(n=6, ids=["r0", "r1", "r2", "r3", "r4", "r5"], is_poison=[0, 1, 0, 0, 1, 0])
    sub = ds.subset([4, 1, 2])
    assert sub is not ds and len(ds) == 6
    assert sub.ids.tolist() == ["r4", "r1", "r2"]
    assert sub.is_poison.tolist() == [True, True, False]
    np.testing.assert_array_equal(sub.X, ds.X[[4, 1, 2]])
    assert sub.y.tolist() == ds.y[[4, 1, 2]].tolist()
    assert sub.classes == ds.classes
    assert not sub.X.flags.writeable

    mask = np.array([True, False, False, True, False, False])
    assert ds.subset(mask).ids.tolist() == ["r0", "r3"]
    with pytest.raises(DataError, match="boolean mask"):
        ds.subset(np.array([True, False]))

    dropped = ds.drop(mask)
    assert dropped is not ds
    assert dropped.ids.tolist() == ["r1", "r2", "r4", "r5"]
    assert len(ds) == 6

    X2 = np.zeros_like(ds.X)
    rep = ds.replace(X=X2, name="zeros")
    assert rep is not ds and rep.name == "zeros" and ds.name == "dataset"
    assert rep.ids.tolist() == ds.ids.tolist()
    assert float(np.abs(ds.X).sum()) > 0  # original untouched
    assert not rep.X.flags.writeable
    with pytest.raises(DataError, match="same length"):
        ds.replace(X=np.zeros((5, 3), np.float32))
    with pytest.raises(DataError, match="is_poison"):
        ds.replace(is_poison=np.zeros(5, bool))

    clean_view = ds.without_ground_truth()
    assert clean_view.is_poison is None and ds.is_poison is not None
    assert clean_view.ids.tolist() == ds.ids.tolist()


def test_metadata_copy_does_not_touch_dataset():
    ds = _ds()
    md = ds.metadata
    md.loc[0, "source"] = "tampered"
    assert ds.metadata.loc[0, "source"] is None


# -- provenance ----------------------------------------------------------------------------------
def test_content_hashes_stable_and_content_based():
    rng = np.random.default_rng(1)
    X = rng.random((5, 4)).astype(np.float32)
    X[3] = X[1]  # an exact duplicate row
    a = Dataset.from_arrays(X, [0, 1, 0, 1, 0])
    b = Dataset.from_arrays(X.copy(), ["p", "q", "p", "q", "p"], ids=[9, 8, 7, 6, 5])
    ha = a.content_hashes
    assert ha.tolist() == b.content_hashes.tolist()  # same content -> same hash, whatever the labels/ids
    assert ha[1] == ha[3]
    assert len(set(ha[[0, 1, 2, 4]].tolist())) == 4
    assert ha[0] == hashlib.blake2b(X[0].tobytes(), digest_size=16).hexdigest()
    assert all(len(h) == 32 for h in ha)
    assert a.subset([3, 0]).content_hashes.tolist() == [ha[3], ha[0]]
    X2 = X.copy()
    X2[2, 0] += np.float32(1e-3)
    hc = Dataset.from_arrays(X2, [0, 1, 0, 1, 0]).content_hashes
    assert hc[2] != ha[2] and hc[0] == ha[0]


def test_metadata_columns():
    meta = pd.DataFrame({"source": ["s1", "s2", "s1", "s2"], "batch": [1, 1, 2, 2]}, index=[10, 11, 12, 13])
    ds = Dataset.from_arrays(np.eye(4), ["x", "y", "x", "y"], ids=["a", "b", "c", "d"], meta=meta)
    md = ds.metadata
    assert md.columns[0] == "id" and md.columns[1] == "label" and md.columns[-1] == "content_hash"
    assert set(md.columns) == {"id", "label", "source", "batch", "contributor", "ingest_time", "content_hash"}
    assert md["id"].tolist() == ["a", "b", "c", "d"]
    assert md["label"].tolist() == ["x", "y", "x", "y"]
    assert md["source"].tolist() == ["s1", "s2", "s1", "s2"]
    assert md["batch"].tolist() == [1, 1, 2, 2]
    assert md["contributor"].isna().all()
    assert md["content_hash"].tolist() == ds.content_hashes.tolist()
    assert list(ds.subset([2]).metadata["source"]) == ["s1"]


def test_labels_property_and_counts():
    ds = Dataset.from_arrays(np.zeros((5, 2)), ["cat", "dog", "cat", "cat", "emu"])
    assert ds.labels.tolist() == ["cat", "dog", "cat", "cat", "emu"]
    assert ds.n_classes == 3
    assert ds.class_counts().tolist() == [3, 1, 1]
    ints = Dataset.from_arrays(np.zeros((3, 2)), [7, 3, 7])
    assert ints.labels.tolist() == [7, 3, 7] and ints.y.tolist() == [1, 0, 1]


def test_greyscale_images_get_a_channel_axis():
    X = np.random.default_rng(0).random((4, 5, 6))
    ds = Dataset.from_arrays(X, [0, 1, 0, 1])
    assert ds.X.shape == (4, 1, 5, 6)
    assert ds.X.dtype == np.float32
    assert ds.is_image and ds.n_features == 30
    np.testing.assert_array_equal(ds.X[:, 0], X.astype(np.float32))
    assert not _ds().is_image


def test_append_new_ids_and_ground_truth():
    ds = Dataset.from_arrays(np.zeros((3, 2)), ["a", "b", "a"], ids=["r1", "r2", "r3"])
    big = ds.append(np.ones((2, 2)), [1, 1], source="attack")
    assert big.ids.tolist() == ["r1", "r2", "r3", "attack-0", "attack-1"]
    assert big.is_poison.tolist() == [False, False, False, True, True]
    assert big.labels.tolist()[-2:] == ["b", "b"]
    assert big.meta["source"].tolist()[-1] == "attack"
    assert len(ds) == 3  # the original is untouched
    with pytest.raises(DataError, match="class indices"):
        ds.append(np.ones((1, 2)), [5])
    with pytest.raises(DataError, match="shape"):
        ds.append(np.ones((1, 3)), [0])
    reg = Dataset.from_arrays(np.zeros((2, 1)), [0.5, 1.5], task="regression")
    assert reg.append(np.ones((1, 1)), [9.0]).y.tolist() == [0.5, 1.5, 9.0]
