"""Tests for mithridate.data.loaders: every layout on tiny synthetic files, plus bad input."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import warnings

import numpy as np
import pandas as pd
import pytest

from mithridate.data import (
    FASHION_MNIST_CLASSES,
    Dataset,
    DatasetSplits,
    available_datasets,
    find_fashion_mnist,
    load_dataset,
    load_fashion_mnist,
    load_ground_truth,
    load_image_folder,
    load_npz,
    load_sklearn,
    load_table,
    read_idx,
    save_ground_truth,
    save_npz,
)
from mithridate.errors import ConfigError, DataError

Image = pytest.importorskip("PIL.Image")


# --------------------------------------------------------------------------- helpers
def write_idx(path: Path, arr: np.ndarray, *, gz: bool = False, code: int = 0x08) -> Path:
    arr = np.asarray(arr)
    header = bytes([0, 0, code, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape)
    dt = {0x08: ">u1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4"}[code]
    data = header + arr.astype(dt).tobytes()
    if gz:
        path = path.with_name(path.name + ".gz")
        with gzip.open(path, "wb") as fh:
            fh.write(data)
    else:
        path.write_bytes(data)
    return path


def make_idx_dir(d: Path, *, n_train=30, n_test=12, gz=False, hw=(6, 5), seed=0) -> tuple:
    rng = np.random.default_rng(seed)
    xtr = rng.integers(0, 256, size=(n_train, *hw), dtype=np.uint8)
    ytr = (np.arange(n_train) % 10).astype(np.uint8)
    xte = rng.integers(0, 256, size=(n_test, *hw), dtype=np.uint8)
    yte = (np.arange(n_test)[::-1] % 10).astype(np.uint8)
    d.mkdir(parents=True, exist_ok=True)
    write_idx(d / "train-images-idx3-ubyte", xtr, gz=gz)
    write_idx(d / "train-labels-idx1-ubyte", ytr, gz=gz)
    write_idx(d / "t10k-images-idx3-ubyte", xte, gz=gz)
    write_idx(d / "t10k-labels-idx1-ubyte", yte, gz=gz)
    return xtr, ytr, xte, yte


def save_png(path: Path, arr: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)


def make_image_folder(root: Path, *, n_per_class=4, classes=("cat", "dog"), hw=(6, 7), rgb=False, seed=0):
    rng = np.random.default_rng(seed)
    pixels = {}
    for c in classes:
        for i in range(n_per_class):
            shape = (*hw, 3) if rgb else hw
            arr = rng.integers(0, 256, size=shape, dtype=np.uint8)
            rel = f"{c}/{i:03d}.png"
            save_png(root / rel, arr)
            pixels[rel] = arr
    return pixels


# --------------------------------------------------------------------------- scikit-learn
def test_digits_images_and_ids_map_back():
    from sklearn.datasets import load_digits

    splits = load_sklearn("digits", random_state=0)
    assert isinstance(splits, DatasetSplits)
    tr, te = splits.train, splits.test
    assert tr.X.shape[1:] == (1, 8, 8) and tr.X.dtype == np.float32
    assert len(tr) + len(te) == 1797
    assert 0.0 <= tr.X.min() and tr.X.max() <= 1.0 and tr.X.max() == 1.0
    images = load_digits().images
    target = load_digits().target
    for ds in (tr, te):
        np.testing.assert_array_equal(ds.X[:, 0], images[ds.ids] / 16)
        np.testing.assert_array_equal(ds.y, target[ds.ids])
    assert set(tr.ids.tolist()).isdisjoint(te.ids.tolist())
    assert sorted(tr.ids.tolist() + te.ids.tolist()) == list(range(1797))
    assert tr.classes == tuple(range(10))


def test_sklearn_split_is_stratified_and_seeded():
    a = load_sklearn("iris", random_state=3)
    b = load_sklearn("iris", random_state=3)
    c = load_sklearn("iris", random_state=4)
    np.testing.assert_array_equal(a.train.ids, b.train.ids)
    assert set(a.test.ids.tolist()) != set(c.test.ids.tolist())
    assert a.test.class_counts().tolist() == [15, 15, 15]  # 30% of 50 per class
    assert len(load_sklearn("iris", test_size=0.2).test) == 30


def test_sklearn_tabular_raw_values_and_name_variants():
    from sklearn.datasets import load_breast_cancer

    s = load_sklearn("breast-cancer")
    assert s.name == "breast_cancer"
    assert s.train.classes == ("malignant", "benign")
    raw = load_breast_cancer()
    np.testing.assert_allclose(s.train.X, raw.data[s.train.ids].astype(np.float32))
    np.testing.assert_array_equal(s.train.y, raw.target[s.train.ids])
    assert s.train.X.max() > 100  # not standardised
    assert load_sklearn("breast_cancer").train.X.shape[1] == 30
    assert load_dataset("Wine").train.X.shape[1] == 13


def test_sklearn_unknown_name():
    with pytest.raises(DataError, match="digits"):
        load_sklearn("mnist")


def test_bad_test_size_is_config_error():
    with pytest.raises(ConfigError, match="test_size"):
        load_sklearn("iris", test_size=1.5)


# --------------------------------------------------------------------------- IDX
@pytest.mark.parametrize("gz", [False, True])
def test_fashion_mnist_from_synthetic_idx(tmp_path, gz):
    xtr, ytr, xte, yte = make_idx_dir(tmp_path, gz=gz)
    s = load_fashion_mnist(tmp_path)
    assert s.train.X.shape == (30, 1, 6, 5) and s.test.X.shape == (12, 1, 6, 5)
    assert s.train.X.dtype == np.float32
    np.testing.assert_array_equal(s.train.X[:, 0], xtr.astype(np.float32) / 255)
    np.testing.assert_array_equal(s.test.X[:, 0], xte.astype(np.float32) / 255)
    np.testing.assert_array_equal(s.train.y, ytr)
    np.testing.assert_array_equal(s.test.y, yte)
    assert s.train.classes == FASHION_MNIST_CLASSES and len(FASHION_MNIST_CLASSES) == 10
    assert s.train.classes[int(ytr[9])] == "Ankle boot"
    assert s.train.ids.tolist() == list(range(30))
    assert find_fashion_mnist(tmp_path) == tmp_path


def test_fashion_mnist_limits_and_env(tmp_path, monkeypatch):
    xtr, ytr, _, _ = make_idx_dir(tmp_path, gz=True)
    monkeypatch.setenv("MITHRIDATE_FASHION_MNIST", str(tmp_path))
    assert find_fashion_mnist() == tmp_path
    s = load_fashion_mnist(limit_train=7, limit_test=3)
    assert len(s.train) == 7 and len(s.test) == 3
    np.testing.assert_array_equal(s.train.y, ytr[:7])
    s2 = load_dataset("fmnist", limit_train=10)
    assert len(s2.train) == 10
    with pytest.raises(ConfigError, match="limit_train"):
        load_fashion_mnist(limit_train=0)


def test_load_dataset_dispatches_idx_directory(tmp_path):
    make_idx_dir(tmp_path / "fm")
    s = load_dataset(tmp_path / "fm")
    assert s.name == "fashion-mnist" and len(s.train) == 30


def test_read_idx_other_types_and_bad_magic(tmp_path):
    arr = np.arange(12, dtype=np.int32).reshape(3, 4) - 5
    p = write_idx(tmp_path / "ints", arr, code=0x0C)
    out = read_idx(p)
    np.testing.assert_array_equal(out, arr)
    bad = tmp_path / "bad"
    bad.write_bytes(b"\x12\x34\x08\x01" + b"\x00" * 12)
    with pytest.raises(DataError, match="not an IDX file"):
        read_idx(bad)


@pytest.mark.parametrize("gz", [False, True])
def test_truncated_idx_file(tmp_path, gz):
    make_idx_dir(tmp_path, gz=gz)
    name = "train-images-idx3-ubyte" + (".gz" if gz else "")
    p = tmp_path / name
    if gz:
        raw = gzip.decompress(p.read_bytes())
        p.write_bytes(gzip.compress(raw[:-10]))
    else:
        p.write_bytes(p.read_bytes()[:-10])
    with pytest.raises(DataError, match="truncated"):
        load_fashion_mnist(tmp_path)


def test_corrupt_gzip_and_mismatched_counts(tmp_path):
    make_idx_dir(tmp_path / "a", gz=True)
    p = tmp_path / "a" / "t10k-labels-idx1-ubyte.gz"
    p.write_bytes(p.read_bytes()[:15])
    with pytest.raises(DataError, match="gzip"):
        load_fashion_mnist(tmp_path / "a")
    make_idx_dir(tmp_path / "b")
    write_idx(tmp_path / "b" / "train-labels-idx1-ubyte", np.zeros(29, dtype=np.uint8))
    with pytest.raises(DataError, match="30 images .* 29 labels"):
        load_fashion_mnist(tmp_path / "b")


def test_fashion_mnist_missing_files(tmp_path, monkeypatch):
    make_idx_dir(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte").unlink()
    assert find_fashion_mnist(tmp_path) is None
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte"):
        load_fashion_mnist(tmp_path)
    monkeypatch.setenv("MITHRIDATE_FASHION_MNIST", str(tmp_path / "nowhere"))
    assert find_fashion_mnist() is None
    with pytest.raises(DataError, match="dataset-fashion-mnist"):
        load_fashion_mnist()
    row = [r for r in available_datasets() if r["name"] == "fashion-mnist"][0]
    assert row["available"] is False and "dataset-fashion-mnist" in row["location"]
    assert (row["n_train"], row["n_test"], row["shape"], row["n_classes"]) == (60000, 10000, (1, 28, 28), 10)


def test_available_datasets_reads_headers(tmp_path, monkeypatch):
    make_idx_dir(tmp_path, n_train=20, n_test=10, gz=True)
    monkeypatch.setenv("MITHRIDATE_FASHION_MNIST", str(tmp_path))
    rows = {r["name"]: r for r in available_datasets()}
    assert set(rows) == {"digits", "breast_cancer", "wine", "iris", "diabetes", "fashion-mnist"}
    assert rows["diabetes"]["kind"] == "regression" and rows["diabetes"]["n_train"] + rows["diabetes"]["n_test"] == 442
    fm = rows["fashion-mnist"]
    assert fm["available"] and fm["location"] == str(tmp_path)
    assert (fm["n_train"], fm["n_test"], fm["shape"]) == (20, 10, (1, 6, 5))
    dg = rows["digits"]
    split = load_sklearn("digits")
    assert (dg["kind"], dg["n_train"], dg["n_test"], dg["shape"], dg["n_classes"]) == (
        "image", len(split.train), len(split.test), (1, 8, 8), 10)
    assert rows["iris"]["kind"] == "tabular" and rows["iris"]["location"] == "scikit-learn (bundled)"


@pytest.mark.skipif(
    find_fashion_mnist() is None,
    reason="Fashion-MNIST IDX files not found; install Debian package dataset-fashion-mnist",
)
def test_real_fashion_mnist():
    s = load_fashion_mnist()
    assert s.train.X.shape == (60000, 1, 28, 28) and s.test.X.shape == (10000, 1, 28, 28)
    assert s.train.X.dtype == np.float32
    assert s.train.X.min() == 0.0 and s.train.X.max() == 1.0
    assert s.train.classes == FASHION_MNIST_CLASSES
    assert s.train.classes[0] == "T-shirt/top" and s.train.classes[9] == "Ankle boot"
    assert s.train.class_counts().tolist() == [6000] * 10
    assert s.test.class_counts().tolist() == [1000] * 10


# --------------------------------------------------------------------------- npz
def test_npz_split_layout_case_variants_and_channels_last(tmp_path):
    rng = np.random.default_rng(0)
    xtr = rng.integers(0, 256, size=(12, 9, 10, 3), dtype=np.uint8)
    xte = rng.integers(0, 256, size=(6, 9, 10, 3), dtype=np.uint8)
    p = tmp_path / "imgs.npz"
    np.savez(p, X_train=xtr, Y_train=np.arange(12) % 3, X_test=xte, Y_test=np.arange(6) % 3)
    s = load_npz(p)
    assert s.train.X.shape == (12, 3, 9, 10)
    np.testing.assert_allclose(s.train.X, xtr.transpose(0, 3, 1, 2).astype(np.float32) / 255)
    np.testing.assert_array_equal(s.test.y, np.arange(6) % 3)
    assert s.train.classes == (0, 1, 2) and s.name == "imgs"


def test_npz_greyscale_nhw_and_single_pair_split(tmp_path):
    rng = np.random.default_rng(1)
    x = rng.random((40, 5, 5)).astype(np.float32)
    y = np.repeat(["a", "b"], 20)
    p = tmp_path / "single.npz"
    np.savez(p, x=x, y=y, ids=np.arange(100, 140))
    s = load_npz(p, test_size=0.25, random_state=2)
    assert s.train.X.shape == (30, 1, 5, 5) and len(s.test) == 10
    assert s.test.class_counts().tolist() == [5, 5]
    assert s.train.classes == ("a", "b")
    np.testing.assert_array_equal(s.train.X[:, 0], x[s.train.ids - 100])
    assert np.array_equal(s.train.labels, y[s.train.ids - 100])


def test_npz_reads_other_common_array_names(tmp_path):
    rng = np.random.default_rng(7)
    X, y = rng.random((30, 4)), np.repeat([0, 1, 2], 10)
    p = tmp_path / "sk.npz"
    np.savez(p, data=X, target=y)  # scikit-learn's names
    s = load_npz(p, test_size=0.2)
    assert len(s.train) + len(s.test) == 30 and s.train.X.shape[1] == 4
    np.testing.assert_allclose(s.train.X, X[s.train.ids])
    assert s.train.y.tolist() == y[s.train.ids].tolist()
    imgs = rng.integers(0, 256, size=(12, 6, 6), dtype=np.uint8)
    np.savez(p, Train_Images=imgs, train_labels=np.arange(12) % 2, test_images=imgs[:4],
             TEST_LABELS=np.arange(4) % 2)  # Keras-style, any case
    s = load_npz(p)
    assert s.train.X.shape == (12, 1, 6, 6) and len(s.test) == 4
    np.testing.assert_allclose(s.train.X[:, 0], imgs / 255, rtol=1e-6)
    # a split's aliases win over single-pair ones, which are then left alone: no "both layouts" error
    np.savez(p, x_train=X, y_train=y, x_test=X[:6], y_test=y[:6], labels=y)
    assert len(load_npz(p).train) == 30
    # a stray split-style name beside a single pair is not a split layout
    np.savez(p, images=X, labels=y, train_images=X[:3])
    assert len(load_npz(p, test_size=0.2).train) == 24
    np.savez(p, data=X, features=X, target=y)  # two candidates for x: refuse, naming both
    with pytest.raises(DataError, match="'data', 'features'"):
        load_npz(p)
    np.savez(p, data=X)  # no labels at all: the error lists the accepted names
    with pytest.raises(DataError, match=r"lacks .y. \(or one of target, targets, labels, label\); it holds: \[.data.\]"):
        load_npz(p)


def test_npz_classes_key_and_ground_truth(tmp_path):
    rng = np.random.default_rng(2)
    p = tmp_path / "t.npz"
    np.savez(
        p, x_train=rng.random((8, 3)), y_train=np.array([0, 1, 2, 0, 1, 2, 0, 1]),
        x_test=rng.random((3, 3)), y_test=np.array([2, 2, 0]),
        classes=np.array(["zebra", "ant", "moth"]), ids_train=np.array([f"r{i}" for i in range(8)]),
        is_poison_train=np.array([0, 0, 1, 0, 0, 0, 0, 1], dtype=bool),
    )
    s = load_npz(p)
    assert s.train.classes == ("zebra", "ant", "moth")  # order of the file, not sorted
    assert s.train.y.tolist() == [0, 1, 2, 0, 1, 2, 0, 1]
    assert s.train.ids[2] == "r2" and s.test.ids.tolist() == [0, 1, 2]
    assert s.train.is_poison.tolist() == [False, False, True, False, False, False, False, True]
    assert s.test.is_poison is None


def test_npz_round_trip_with_string_classes(tmp_path):
    rng = np.random.default_rng(3)
    X = rng.random((20, 3, 6, 6)).astype(np.float32)
    labels = np.array(["cat", "dog", "emu", "cat"] * 5)
    full = Dataset.from_arrays(X, labels, ids=[f"img{i}.png" for i in range(20)],
                               is_poison=np.arange(20) % 7 == 0)
    splits = DatasetSplits(train=full.subset(range(14)), test=full.subset(range(14, 20)), name="x")
    out = save_npz(splits, tmp_path / "rt.npz", include_ground_truth=True)
    with np.load(out, allow_pickle=False) as z:
        assert z["classes"].dtype.kind == "U" and z["ids_train"].dtype.kind == "U"
        assert "is_poison_train" in z.files
    back = load_npz(out)
    for a, b in ((splits.train, back.train), (splits.test, back.test)):
        np.testing.assert_array_equal(a.X, b.X)
        np.testing.assert_array_equal(a.y, b.y)
        np.testing.assert_array_equal(a.ids, b.ids)
        assert a.classes == b.classes == ("cat", "dog", "emu")
    np.testing.assert_array_equal(back.train.is_poison, splits.train.is_poison)
    # without ground truth, and numpy's habit of appending .npz is handled
    out2 = save_npz(splits, tmp_path / "noext")
    assert out2 == tmp_path / "noext.npz" and out2.exists()
    assert not (tmp_path / "noext").exists()
    assert load_npz(out2).train.is_poison is None
    assert [f.name for f in tmp_path.iterdir() if ".part" in f.name] == []


def test_npz_round_trip_int_classes_tabular(tmp_path):
    s = load_sklearn("wine")
    back = load_npz(save_npz(s, tmp_path / "wine.npz"))
    np.testing.assert_array_equal(back.train.X, s.train.X)
    np.testing.assert_array_equal(back.test.ids, s.test.ids)
    assert back.train.classes == s.train.classes
    d = load_sklearn("digits")
    back = load_npz(save_npz(d, tmp_path / "digits.npz", compress=True))
    np.testing.assert_array_equal(back.train.X, d.train.X)
    assert back.train.classes == tuple(range(10))


def test_npz_round_trip_keeps_ambiguous_channels_first_layout(tmp_path):
    # C=6, H=6, W=3 would look channels-last to the guess; save_npz's layout key prevents that
    X = np.random.default_rng(5).random((8, 6, 6, 3)).astype(np.float32)
    full = Dataset.from_arrays(X, [0, 1] * 4)
    splits = DatasetSplits(train=full.subset(range(6)), test=full.subset([6, 7]), name="odd")
    back = load_npz(save_npz(splits, tmp_path / "odd.npz"))
    np.testing.assert_array_equal(back.train.X, splits.train.X)


def test_npz_refuses_pickled_object_arrays(tmp_path):
    p = tmp_path / "evil.npz"
    np.savez(p, x=np.random.default_rng(0).random((4, 2)), y=np.array([0, 1, "a", None], dtype=object))
    with pytest.raises(DataError, match="pickled object array"):
        load_npz(p)


def test_npz_bad_inputs(tmp_path):
    rng = np.random.default_rng(4)
    p = tmp_path / "mismatch.npz"
    np.savez(p, x_train=rng.random((10, 3)), y_train=np.arange(9) % 2,
             x_test=rng.random((4, 3)), y_test=np.arange(4) % 2)
    with pytest.raises(DataError, match="10 rows but labels have 9"):
        load_npz(p)
    np.savez(p, x_train=rng.random((10, 3)), y_train=np.arange(10) % 2,
             x_test=rng.random((4, 2)), y_test=np.arange(4) % 2)
    with pytest.raises(DataError, match="x_test"):
        load_npz(p)
    np.savez(p, x=rng.random((6, 2)), y=np.array([0.5, 1, 0, 1, 0, 1]))
    with pytest.raises(DataError, match="non-integer"):
        load_npz(p)
    x = rng.random((6, 2))
    x[3, 1] = np.nan
    np.savez(p, x=x, y=np.array([0, 1] * 3))
    with pytest.raises(DataError, match="NaN"):
        load_npz(p)
    np.savez(p, x=rng.random((6, 2)), y=np.zeros(6, dtype=int))
    with pytest.raises(DataError, match="1 class"):
        load_npz(p)
    np.savez(p, foo=np.zeros(3))
    with pytest.raises(DataError, match="x_train"):
        load_npz(p)
    np.savez(p, x=rng.random((4, 4, 4)) * 3, y=np.array([0, 1, 0, 1]))
    with pytest.raises(DataError, match=r"\[0, 1\]"):
        load_npz(p)
    np.savez(p, x=rng.random((4, 2)), y=np.array([0, 3, 0, 1]), classes=np.array(["a", "b"]))
    with pytest.raises(DataError, match="outside 0..1"):
        load_npz(p)
    bad = tmp_path / "notzip.npz"
    bad.write_bytes(b"hello")
    with pytest.raises(DataError, match="not a readable"):
        load_npz(bad)


def test_save_npz_checks_argument(tmp_path):
    with pytest.raises(ConfigError):
        save_npz(load_sklearn("iris").train, tmp_path / "x.npz")


# --------------------------------------------------------------------------- tables
def _toy_frame(n=20, seed=0):
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "uid": [f"u{i:02d}" for i in range(n)],
        "f1": rng.random(n),
        "f2": rng.integers(0, 5, n),
        "note": ["x"] * n,
        "who": ["alice", "bob"] * (n // 2),
        "origin": ["web"] * n,
        "y": ["spam", "ham"] * (n // 2),
    })


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".parquet", ".csv.gz"])
def test_table_formats(tmp_path, suffix):
    df = _toy_frame()
    p = tmp_path / f"toy{suffix}"
    if suffix == ".parquet":
        df.to_parquet(p)
    else:
        df.to_csv(p, index=False, sep="\t" if suffix == ".tsv" else ",")
    with pytest.warns(UserWarning, match="note"):
        s = load_table(p, label="y", id_col="uid", contributor="who", source="origin")
    assert s.name == "toy"
    assert s.train.X.shape[1] == 2 and s.train.X.dtype == np.float32  # f1, f2 only
    assert s.train.classes == ("ham", "spam")
    assert len(s.train) == 14 and len(s.test) == 6
    rows = df.set_index("uid")
    ids = list(s.train.ids)
    np.testing.assert_allclose(s.train.X[:, 0], rows.loc[ids, "f1"].to_numpy(np.float32))
    assert list(s.train.labels) == rows.loc[ids, "y"].tolist()
    assert s.train.meta["contributor"].tolist() == rows.loc[ids, "who"].tolist()
    assert set(s.train.meta["source"]) == {"web"}


def test_saved_dataframe_index_is_not_a_feature(tmp_path):
    df = _toy_frame().drop(columns=["note", "who", "origin", "uid"])
    p = tmp_path / "t.csv"
    df.to_csv(p)  # index=True: an "Unnamed: 0" column of row numbers
    assert pd.read_csv(p).columns[0] == "Unnamed: 0"
    with pytest.warns(UserWarning, match="'Unnamed: 0' holds the row numbers"):
        s = load_table(p, label="y")
    assert s.train.X.shape[1] == 2  # f1, f2
    kept = load_table(p, label="y", id_col="Unnamed: 0")  # or keep it as the ids
    assert kept.train.X.shape[1] == 2 and set(kept.train.ids) <= {str(i) for i in range(20)}  # ids as written
    from mithridate.audit.pipeline import load_for_audit

    assert load_for_audit(p, label="y").dataset.X.shape[1] == 2
    df.insert(0, "index", np.arange(20)[::-1])  # not the row numbers: a real column, kept
    df.to_csv(p, index=False)
    assert load_table(p, label="y").train.X.shape[1] == 3


def test_semicolon_csv_with_decimal_commas_and_quoted_header(tmp_path):
    df = _toy_frame()
    p = tmp_path / "toy.csv"
    df.to_csv(p, index=False, sep=";", decimal=",")  # what a comma-decimal spreadsheet writes
    assert ",5" in p.read_text() or "0," in p.read_text()
    with pytest.warns(UserWarning, match="note"):
        s = load_table(p, label="y", id_col="uid")
    assert s.train.X.shape[1] == 2  # f1 (decimal commas) and f2 read as numbers
    rows = df.set_index("uid")
    np.testing.assert_allclose(s.train.X[:, 0], rows.loc[list(s.train.ids), "f1"].to_numpy(np.float32), rtol=1e-6)
    # a quoted header holding a comma does not make the file comma-separated
    q = tmp_path / "q.csv"
    q.write_text('"price, eur";"n";"label"\n' + "".join(f"{i},5;{i % 3};{'ab'[i % 2]}\n" for i in range(30)))
    t = load_table(q, label="label", test_size=0.2)
    assert t.train.X.shape[1] == 2 and sorted(t.train.X[:, 0] % 1) [0] == pytest.approx(0.5)


def test_default_features_leave_out_ids_empty_columns_and_name_almost_numeric_ones(tmp_path):
    # a warehouse export: an application_id, an all-empty spreadsheet column, an income column
    # with a few '$52,300.00' cells, a plain categorical
    rng = np.random.default_rng(0)
    n = 60
    df = pd.DataFrame({"application_id": 10_000 + rng.permutation(n), "ratio": rng.random(n),
                       "income": [f"${v:,.2f}" if i % 20 == 0 else f"{v:.2f}" for i, v in
                                  enumerate(rng.integers(20_000, 90_000, n))],
                       "country": rng.choice(["de", "fr"], n), "Unnamed: 5": [np.nan] * n, "y": rng.choice(["a", "b"], n)})
    p = tmp_path / "loans.csv"
    df.to_csv(p, index=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        s = load_table(p, label="y", test_size=0.25)
    text = " | ".join(str(w.message) for w in caught)
    assert s.train.X.shape[1] == 1  # ratio only
    assert "'application_id' looks like an identifier" in text and "--id application_id" in text
    assert "'Unnamed: 5' has no values at all" in text
    assert "numeric columns with a few cells that are not numbers" in text and "'income'" in text and "3 cells of 60" in text
    assert "non-numeric columns are not used as features: 'country'" in text
    # named as the id, the same column gives the ids and nothing is said about it
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        t = load_table(p, label="y", id_col="application_id", test_size=0.25)
    assert not any("identifier" in str(w.message) for w in caught) and t.train.X.shape[1] == 1


def test_parquet_decimal_columns_are_numbers(tmp_path):
    # warehouse exports store money as decimal128: it was called "not numeric (e.g. '36150.00')"
    import decimal

    import pyarrow as pa
    import pyarrow.parquet as pq

    n = 40
    income = [decimal.Decimal(f"{36150 + i}.25") if i != 3 else None for i in range(n)]
    pq.write_table(pa.table({"uid": list(range(n)), "income": pa.array(income, type=pa.decimal128(12, 2)),
                             "y": ["ab"[i % 2] for i in range(n)]}), tmp_path / "t.parquet")
    with pytest.raises(DataError, match="missing values"):  # a number column now: row 3's gap is a gap
        load_table(tmp_path / "t.parquet", label="y", id_col="uid")
    income[3] = decimal.Decimal("1.50")
    pq.write_table(pa.table({"uid": list(range(n)), "income": pa.array(income, type=pa.decimal128(12, 2)),
                             "y": ["ab"[i % 2] for i in range(n)]}), tmp_path / "t.parquet")
    s = load_table(tmp_path / "t.parquet", label="y", id_col="uid", test_size=0.25)
    got = dict(zip(list(s.train.ids) + list(s.test.ids), np.concatenate([s.train.X, s.test.X])[:, 0]))
    assert got[0] == pytest.approx(36150.25) and got[3] == pytest.approx(1.5)


def test_misspelt_labels_and_contributor_names_are_said(tmp_path):
    n = 600
    y = ["Sneaker" if i % 3 == 0 else ("Sandal" if i % 3 == 1 else "Bag") for i in range(n)]
    y[0:3] = ["Sneakr"] * 3  # three rows with a typo'd class (the two-rows rule did not fire)
    who = [f"v{i % 4}" for i in range(n)]
    who[10], who[11] = "V1", "v1 "  # one vendor, three spellings
    pd.DataFrame({"x": np.arange(n) % 7, "vendor": who, "y": y}).to_csv(tmp_path / "t.csv", index=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        load_table(tmp_path / "t.csv", label="y", contributor="vendor")
    text = " | ".join(str(w.message) for w in caught)
    assert "'Sneakr' (3) beside 'Sneaker'" in text
    assert "contributor names in column 'vendor' differ only by case or spaces" in text and "'V1' (1)" in text


def test_semicolon_csv_with_thousands_separators(tmp_path):
    # a warehouse export: ';' separated, decimals with '.', incomes with ',' thousands separators in
    # some rows; the comma was read as a decimal mark (68,490 -> 68.49) without a word
    n = 40
    rows = [f"{i};{0.1 + i / 100:.2f};{'68,490' if i % 3 == 0 else 36150 + i};{'ab'[i % 2]}" for i in range(n)]
    p = tmp_path / "loans.csv"
    p.write_text("uid;ratio;income;y\n" + "\n".join(rows) + "\n")
    s = load_table(p, label="y", id_col="uid", test_size=0.25)
    X = np.concatenate([s.train.X, s.test.X])
    ids = [int(i) for i in list(s.train.ids) + list(s.test.ids)]
    income = dict(zip(ids, X[:, 1]))
    assert income[0] == 68490 and income[1] == 36151
    # nothing tells the two readings apart: the column stays text, and a warning says why
    q = tmp_path / "amb.csv"
    q.write_text("uid;income;y\n" + "\n".join(f"{i};{'68,490' if i % 3 == 0 else 36150 + i};{'ab'[i % 2]}"
                                              for i in range(n)) + "\n")
    with pytest.warns(UserWarning, match=r"column 'income' has numbers with a comma \('68,490' next to '36151'\)"):
        with pytest.raises(DataError):  # no numeric feature column is left
            load_table(q, label="y", id_col="uid")


@pytest.mark.parametrize("sep", [";", "\t", "|"])
def test_csv_with_another_separator_is_read(tmp_path, sep):
    # spreadsheets in comma-decimal locales save ";"-separated "CSV"; the header line tells
    df = _toy_frame()
    p = tmp_path / "toy.csv"
    df.to_csv(p, index=False, sep=sep)
    with pytest.warns(UserWarning, match="note"):
        s = load_table(p, label="y", id_col="uid")
    assert s.train.X.shape[1] == 2 and s.train.classes == ("ham", "spam")
    rows = df.set_index("uid")
    np.testing.assert_allclose(s.train.X[:, 0], rows.loc[list(s.train.ids), "f1"].to_numpy(np.float32))
    # a header with a comma keeps the comma, even if it also holds a ";"
    df2 = df.rename(columns={"note": "a;b"})
    df2.to_csv(p, index=False)
    with pytest.warns(UserWarning, match="a;b"):
        assert load_table(p, label="y").train.X.shape[1] == 2


def test_table_explicit_features_default_ids_and_test_path(tmp_path):
    df = _toy_frame()
    p, q = tmp_path / "a.csv", tmp_path / "b.csv"
    df.to_csv(p, index=False)
    df.iloc[:5].to_csv(q, index=False)
    s = load_table(p, label="y", features=["f2"], test_path=q)
    assert s.train.X.shape == (20, 1) and s.test.X.shape == (5, 1)
    assert s.train.ids.tolist() == list(range(20)) and s.test.ids.tolist() == list(range(5))
    np.testing.assert_array_equal(s.train.X[:, 0], df["f2"].to_numpy(np.float32))
    s2 = load_dataset(str(p), label="y", features=["f1", "f2"], random_state=1)
    assert s2.train.X.shape[1] == 2


def test_table_missing_label_column_names_it(tmp_path):
    p = tmp_path / "t.csv"
    _toy_frame().to_csv(p, index=False)
    with pytest.raises(DataError, match=r"'target'.*available columns.*'f1'"):
        load_table(p, label="target")
    with pytest.raises(DataError, match="'f9'"):
        load_table(p, label="y", features=["f1", "f9"])


def test_table_non_numeric_feature_and_nan(tmp_path):
    p = tmp_path / "t.csv"
    df = _toy_frame()
    df.to_csv(p, index=False)
    with pytest.raises(DataError, match="'note' .* not numeric"):
        load_table(p, label="y", features=["f1", "note"])
    df.loc[3, "f1"] = np.nan
    df.to_csv(p, index=False)
    with pytest.raises(DataError, match=r"'f1'.*missing values.*row 3"):
        load_table(p, label="y", features=["f1", "f2"])


def test_table_bad_labels(tmp_path):
    p = tmp_path / "t.csv"
    pd.DataFrame({"a": range(6), "y": [0.5, 1, 0, 1, 0, 1]}).to_csv(p, index=False)
    with pytest.raises(DataError, match="non-integer"):
        load_table(p, label="y")
    pd.DataFrame({"a": range(6), "y": [1] * 6}).to_csv(p, index=False)
    with pytest.raises(DataError, match="1 class"):
        load_table(p, label="y")
    pd.DataFrame({"a": range(6), "y": [1, 1, 1, 0, 0, 2]}).to_csv(p, index=False)
    with pytest.raises(DataError, match="only 1 sample"):
        load_table(p, label="y")


def test_table_empty_and_unknown_format(tmp_path):
    p = tmp_path / "empty.csv"
    p.write_text("")
    with pytest.raises(DataError, match="empty"):
        load_table(p, label="y")
    p.write_text("a,b,y\n")
    with pytest.raises(DataError, match="no data rows"):
        load_table(p, label="y")
    q = tmp_path / "t.xlsx"
    q.write_text("x")
    with pytest.raises(DataError, match=".parquet"):
        load_table(q, label="y")


# --------------------------------------------------------------------------- image folders
def test_image_folder_single_layout(tmp_path):
    pixels = make_image_folder(tmp_path / "pets", n_per_class=5)
    s = load_image_folder(tmp_path / "pets", test_size=0.4, random_state=0)
    assert s.train.X.shape == (6, 1, 6, 7) and s.test.X.shape == (4, 1, 6, 7)
    assert s.train.classes == ("cat", "dog")
    for ds in (s.train, s.test):
        for x, i, lab in zip(ds.X, ds.ids, ds.labels):
            np.testing.assert_allclose(x[0], pixels[i].astype(np.float32) / 255)
            assert i.startswith(lab + "/")
    assert load_dataset(tmp_path / "pets").train.X.shape[1:] == (1, 6, 7)


def test_image_folder_reads_every_image_format_and_names_what_it_skips(tmp_path):
    # a new user's folder: .webp/.tif/.jfif/.PNG files, a file named __00009.png (not hidden),
    # OS leftovers (read as nothing, silently) and a notes file (named in a warning)
    from PIL import Image

    root = tmp_path / "pets"
    make_image_folder(root, n_per_class=2)
    arr = np.random.default_rng(3).integers(0, 256, size=(6, 7), dtype=np.uint8)
    for rel, fmt in (("cat/a.webp", "WEBP"), ("cat/b.tif", "TIFF"), ("dog/c.jfif", "JPEG"), ("dog/D.PNG", "PNG"),
                     ("dog/__00009.png", "PNG")):
        Image.fromarray(arr).save(root / rel, format=fmt, **({"lossless": True} if fmt == "WEBP" else {}))
    (root / "cat" / ".DS_Store").write_bytes(b"junk")
    (root / "cat" / "Thumbs.db").write_bytes(b"junk")
    (root / "dog" / "notes.txt").write_text("who took these")
    with pytest.warns(UserWarning, match=r"1 file in the class folders is not read .*'dog/notes.txt'"):
        s = load_image_folder(root, test_size=0.3)
    ids = set(s.train.ids) | set(s.test.ids)
    assert ids == {"cat/000.png", "cat/001.png", "dog/000.png", "dog/001.png", "cat/a.webp", "cat/b.tif",
                   "dog/c.jfif", "dog/D.PNG", "dog/__00009.png"}
    X = np.concatenate([s.train.X, s.test.X])
    where = list(s.train.ids) + list(s.test.ids)
    for rel in ("cat/a.webp", "cat/b.tif", "dog/D.PNG", "dog/__00009.png"):  # lossless: exact pixels
        np.testing.assert_allclose(X[where.index(rel)][0], arr / 255, atol=1e-6)


def test_image_folder_train_test_rgb_and_resize(tmp_path):
    root = tmp_path / "ds"
    tr = make_image_folder(root / "train", rgb=True, n_per_class=3, seed=1)
    make_image_folder(root / "test", rgb=True, n_per_class=2, seed=2)
    (root / "train" / "cat" / "notes.txt").write_text("ignored")
    with pytest.warns(UserWarning, match="notes.txt"):
        s = load_image_folder(root)
    assert s.train.X.shape == (6, 3, 6, 7) and s.test.X.shape == (4, 3, 6, 7)
    assert sorted(s.train.ids) == sorted(f"train/{k}" for k in tr)
    i = list(s.train.ids).index("train/dog/001.png")
    np.testing.assert_allclose(s.train.X[i], tr["dog/001.png"].transpose(2, 0, 1) / 255, atol=1e-6)
    r = load_image_folder(root, size=(4, 5), grayscale=True)
    assert r.train.X.shape == (6, 1, 4, 5) and r.test.X.shape == (4, 1, 4, 5)


def test_image_folder_mixed_grey_and_colour_becomes_rgb(tmp_path):
    root = tmp_path / "m"
    make_image_folder(root, n_per_class=3)
    save_png(root / "dog" / "color.png", np.zeros((6, 7, 3), dtype=np.uint8))
    s = load_image_folder(root)
    assert s.train.X.shape[1] == 3


def test_image_folder_mixed_sizes(tmp_path):
    root = tmp_path / "m"
    make_image_folder(root, n_per_class=3)
    save_png(root / "dog" / "big.png", np.zeros((9, 9), dtype=np.uint8))
    with pytest.raises(DataError, match=r"different sizes.*size=\(H, W\)"):
        load_image_folder(root)
    s = load_image_folder(root, size=(6, 7))
    assert s.train.X.shape[1:] == (1, 6, 7) and len(s.train) + len(s.test) == 7


def test_image_folder_corrupt_image_named(tmp_path):
    root = tmp_path / "c"
    make_image_folder(root, n_per_class=3)
    (root / "cat" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    with pytest.raises(DataError, match="broken.png"):
        load_image_folder(root)
    good = (root / "dog" / "000.png").read_bytes()
    (root / "cat" / "broken.png").write_bytes(good[: len(good) // 2])
    with pytest.raises(DataError, match="broken.png"):
        load_image_folder(root)


def test_image_folder_no_classes(tmp_path):
    (tmp_path / "flat").mkdir()
    save_png(tmp_path / "flat" / "a.png", np.zeros((4, 4), dtype=np.uint8))
    with pytest.raises(DataError, match="class sub-folders"):
        load_image_folder(tmp_path / "flat")


# --------------------------------------------------------------------------- dispatch
def test_load_dataset_unknown_and_missing():
    with pytest.raises(DataError, match=r"unknown dataset 'cifar99'.*digits.*fashion-mnist"):
        load_dataset("cifar99")
    with pytest.raises(DataError, match="file not found: .*nope.csv"):
        load_dataset("data/nope.csv", label="y")
    with pytest.raises(ConfigError, match="label"):
        load_dataset("digits", label="y")


def test_load_dataset_table_needs_label_and_npz(tmp_path):
    p = tmp_path / "t.csv"
    _toy_frame().to_csv(p, index=False)
    with pytest.raises(ConfigError, match="label="):
        load_dataset(p)
    q = tmp_path / "z.npz"
    np.savez(q, x=np.random.default_rng(0).random((10, 2)), y=np.arange(10) % 2)
    assert len(load_dataset(q, test_size=0.2).test) == 2


# --------------------------------------------------------------------------- ground truth
def test_ground_truth_round_trip(tmp_path):
    ds = Dataset.from_arrays(np.zeros((5, 2)), [0, 1, 0, 1, 0], ids=["a", "b", "007", "d", "e"],
                             is_poison=[False, True, False, False, True])
    p = save_ground_truth(ds, tmp_path / "gt.csv")
    assert pd.read_csv(p).columns.tolist() == ["id", "is_poison"]
    got = load_ground_truth(p, ["e", "007", "b"])
    assert got.dtype == bool and got.tolist() == [True, False, True]
    ints = Dataset.from_arrays(np.zeros((3, 1)), [0, 1, 0], is_poison=[True, False, False])
    p2 = save_ground_truth(ints, tmp_path / "gt2.csv")
    assert load_ground_truth(p2, ints.ids).tolist() == [True, False, False]
    with pytest.raises(DataError, match="not in"):
        load_ground_truth(p, ["a", "zz"])
    with pytest.raises(DataError, match="no ground truth"):
        save_ground_truth(ds.without_ground_truth(), tmp_path / "x.csv")


# -- regression and class selection (issue 3) ---------------------------------------------
def test_diabetes_is_regression_with_random_split():
    from mithridate.data import load_dataset

    d = load_dataset("diabetes", random_state=3)
    assert d.train.is_regression and d.test.is_regression
    assert d.train.y.dtype == np.float64 and d.train.classes == ()
    assert len(d.train) + len(d.test) == 442 and len(d.test) == 133
    assert not set(d.train.ids.tolist()) & set(d.test.ids.tolist())
    again = load_dataset("diabetes", random_state=3)
    assert np.array_equal(again.train.ids, d.train.ids)


def test_minmax_scale_uses_training_ranges():
    from mithridate.data import load_dataset
    from mithridate.data.transforms import minmax_scale

    d = load_dataset("diabetes")
    s, mm = minmax_scale(d)
    assert s.train.X.min() == 0.0 and s.train.X.max() == 1.0
    assert s.train.y.min() == 0.0 and s.train.y.max() == 1.0
    assert 0.0 <= s.test.y.min() and s.test.y.max() <= 1.0
    i = 5
    expect = (d.train.X[i, 2] - d.train.X[:, 2].min()) / (d.train.X[:, 2].max() - d.train.X[:, 2].min())
    assert s.train.X[i, 2] == pytest.approx(expect, rel=1e-5)


def test_table_regression_and_bad_target(tmp_path):
    import pandas as pd

    from mithridate.data import load_table

    p = tmp_path / "r.csv"
    pd.DataFrame({"a": np.arange(20.0), "b": np.ones(20), "y": np.linspace(0, 1, 20)}).to_csv(p, index=False)
    d = load_table(p, label="y", task="regression")
    assert d.train.is_regression and len(d.train) == 14
    assert sorted(np.concatenate([d.train.y, d.test.y]).tolist()) == pytest.approx(np.linspace(0, 1, 20).tolist())
    bad = tmp_path / "bad.csv"
    pd.DataFrame({"a": np.arange(3.0), "y": ["x", "1", "2"]}).to_csv(bad, index=False)
    with pytest.raises(DataError, match="not numeric"):
        load_table(bad, label="y", task="regression")
    nan = tmp_path / "nan.csv"
    pd.DataFrame({"a": np.arange(3.0), "y": [1.0, None, 2.0]}).to_csv(nan, index=False)
    with pytest.raises(DataError, match="missing or infinite"):
        load_table(nan, label="y", task="regression")
    with pytest.raises(ConfigError, match="task must be"):
        load_table(p, label="y", task="ranking")


def test_select_classes_pair_and_errors():
    from mithridate.data import load_dataset, select_classes

    full = load_dataset("digits")
    pair = select_classes(full, [7, 1])
    assert pair.train.classes == (7, 1)
    # class index 0 now means digit 7: the ids must point at sevens in the full set
    sevens = pair.train.ids[pair.train.y == 0]
    lookup = dict(zip(full.train.ids.tolist(), full.train.labels.tolist()))
    assert {lookup[i] for i in sevens.tolist()} == {7}
    assert len(pair.train) == int(np.isin(full.train.labels, [1, 7]).sum())
    assert load_dataset("digits", classes="1,7").train.classes == (1, 7)
    with pytest.raises(ConfigError, match="at least two"):
        select_classes(full, [1])
    with pytest.raises(ConfigError, match="twice"):
        select_classes(full, [1, 1])
    with pytest.raises(ConfigError, match="neither"):
        select_classes(full, [1, 42])
    with pytest.raises(ConfigError, match="regression"):
        select_classes(load_dataset("diabetes"), [1, 2])


def test_npz_roundtrip_regression(tmp_path):
    from mithridate.data import load_dataset, load_npz, save_npz

    d = load_dataset("diabetes")
    back = load_npz(save_npz(d, tmp_path / "d.npz"))
    assert back.train.is_regression and back.test.is_regression
    assert np.array_equal(back.train.y, d.train.y) and np.array_equal(back.train.ids, d.train.ids)
    # a plain x/y archive is classification unless told otherwise
    np.savez(tmp_path / "xy.npz", x=np.random.default_rng(0).random((20, 3)), y=np.linspace(0, 1, 20))
    assert load_npz(tmp_path / "xy.npz", task="regression").train.is_regression


@pytest.mark.parametrize("suffix", [".csv", ".csv.gz", ".tsv", ".parquet"])
def test_large_tables_are_read_in_chunks_like_whole_files(tmp_path, monkeypatch, suffix):
    from mithridate.data import loaders as L

    rng = np.random.default_rng(0)
    n = 53
    df = pd.DataFrame({"a": rng.normal(size=n), "b": np.arange(n).astype(object), "label": rng.choice(["x", "y"], n),
                       "who": [f"c{i % 4}" for i in range(n)]})
    df.loc[40, "b"] = 2.5  # an int column in the first chunks becomes float in a later one
    p = tmp_path / f"t{suffix}"
    if suffix == ".parquet":
        df.to_parquet(p, index=False)
    else:
        df.to_csv(p, index=False, sep="\t" if suffix == ".tsv" else ",")
    whole, _ = L._read_table(p)
    monkeypatch.setattr(L, "TABLE_CHUNK_BYTES", 0)
    monkeypatch.setattr(L, "TABLE_CHUNK_ROWS", 7)
    chunked, _ = L._read_table(p, progress=True)
    pd.testing.assert_frame_equal(chunked, whole)
    assert chunked["b"].dtype == np.float64 and chunked["b"].iloc[40] == 2.5
    from mithridate.audit.pipeline import load_for_audit

    inp = load_for_audit(p, label="label", contributor="who", progress=True)
    np.testing.assert_allclose(inp.dataset.X[:, 0], df["a"].to_numpy())
    assert list(inp.dataset.meta["contributor"][:4]) == ["c0", "c1", "c2", "c3"]


def test_chunked_read_of_a_broken_csv_is_one_error(tmp_path, monkeypatch):
    from mithridate.data import loaders as L

    p = tmp_path / "bad.csv"
    p.write_text("a,b,label\n" + "1,2,x\n" * 20 + "1,2,3,4,5\n")
    monkeypatch.setattr(L, "TABLE_CHUNK_BYTES", 0)
    monkeypatch.setattr(L, "TABLE_CHUNK_ROWS", 7)
    with pytest.raises(DataError, match="could not parse"):
        L._read_table(p)


# --------------------------------------------------------------------------- image manifests
def _image_manifest(root: Path, n: int = 24, sizes=None) -> pd.DataFrame:
    """``n`` small greyscale PNGs under root/pics and root/manifest.csv (file, label, vendor)."""
    from PIL import Image

    rng = np.random.default_rng(3)
    (root / "pics").mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        h, w = sizes[i] if sizes else (6, 7)
        Image.fromarray(rng.integers(0, 256, size=(h, w), dtype=np.uint8), "L").save(root / "pics" / f"{i}.png")
        rows.append({"file": f"pics/{i}.png", "label": ["cat", "dog"][i % 2], "vendor": f"v{i % 3}", "uid": f"u{i}"})
    df = pd.DataFrame(rows)
    df.to_csv(root / "manifest.csv", index=False)
    return df


def test_table_of_image_paths(tmp_path):
    from PIL import Image

    df = _image_manifest(tmp_path)
    s = load_table(tmp_path / "manifest.csv", label="label", image_col="file", id_col="uid", contributor="vendor",
                   test_size=0.25)
    assert s.train.is_image and s.train.X.shape[1:] == (1, 6, 7) and len(s.train) + len(s.test) == 24
    for k, uid in enumerate(s.train.ids[:5]):
        i = int(uid[1:])
        pixels = np.asarray(Image.open(tmp_path / "pics" / f"{i}.png"), dtype=np.float32) / 255
        np.testing.assert_allclose(s.train.X[k, 0], pixels, rtol=1e-6)
        assert s.train.labels[k] == df.loc[i, "label"] and s.train.meta["contributor"].iloc[k] == df.loc[i, "vendor"]
    resized = load_table(tmp_path / "manifest.csv", label="label", image_col="file", size=4)
    assert resized.train.X.shape[1:] == (1, 4, 4)


@pytest.mark.parametrize("value, match", [
    ("/etc/hostname", "leaves the table's folder"),
    ("../outside.png", "leaves the table's folder"),
    ("pics/missing.png", "not found under"),
    ("", "not an image path"),
])
def test_table_of_image_paths_refuses_bad_paths(tmp_path, value, match):
    df = _image_manifest(tmp_path)
    (tmp_path.parent / "outside.png").write_bytes((tmp_path / "pics" / "0.png").read_bytes())
    df.loc[5, "file"] = value
    df.to_csv(tmp_path / "manifest.csv", index=False)
    with pytest.raises(DataError, match=f"data row 5 .*{match}"):
        load_table(tmp_path / "manifest.csv", label="label", image_col="file")


def test_table_of_image_paths_windows_separators_numbers_and_junk(tmp_path):
    df = _image_manifest(tmp_path)
    df["file"] = [f.replace("/", "\\") for f in df["file"]]  # written on Windows
    df.to_csv(tmp_path / "manifest.csv", index=False)
    assert load_table(tmp_path / "manifest.csv", label="label", image_col="file").train.X.shape[1:] == (1, 6, 7)
    for bad in ("..\\outside.png", "C:\\data\\0.png"):
        df.loc[1, "file"] = bad
        df.to_csv(tmp_path / "manifest.csv", index=False)
        with pytest.raises(DataError, match="data row 1 .*leaves the table's folder"):
            load_table(tmp_path / "manifest.csv", label="label", image_col="file")
    df.loc[1, "file"] = "x" * 300  # --images pointed at a caption column: one line, no traceback
    df.to_csv(tmp_path / "manifest.csv", index=False)
    with pytest.raises(DataError, match="data row 1 .*(not a usable image path|not found)"):
        load_table(tmp_path / "manifest.csv", label="label", image_col="file")
    # file names that are plain numbers (no extension) are read as integers by the CSV parser
    for i in range(24):
        (tmp_path / "pics" / f"{i}.png").rename(tmp_path / f"{i}")
    df["file"] = list(range(24))
    df.to_csv(tmp_path / "manifest.csv", index=False)
    assert len(load_table(tmp_path / "manifest.csv", label="label", image_col="file", test_size=0.25).train) == 18
    with pytest.raises(ConfigError, match="over 4096 pixels"):
        load_table(tmp_path / "manifest.csv", label="label", image_col="file", size=100000)


def test_table_of_image_paths_bad_options_and_sizes(tmp_path):
    _image_manifest(tmp_path, sizes=[(6, 7)] * 23 + [(9, 9)])
    p = tmp_path / "manifest.csv"
    with pytest.raises(DataError, match="different sizes.*size="):
        load_table(p, label="label", image_col="file")
    assert load_table(p, label="label", image_col="file", size=(6, 7)).train.X.shape[1:] == (1, 6, 7)
    with pytest.raises(ConfigError, match="exclude each other"):
        load_table(p, label="label", image_col="file", features=["vendor"])
    with pytest.raises(ConfigError, match="image column and the label"):
        load_table(p, label="file", image_col="file")
    with pytest.raises(ConfigError, match="apply to images only"):
        load_table(p, label="label", size=8)
    with pytest.raises(DataError, match="image column 'picture' not found"):
        load_table(p, label="label", image_col="picture")



def test_npz_labels_as_a_column_or_one_hot(tmp_path):
    # Keras saves CIFAR-10's labels as (N, 1); others save one-hot rows: both are class indices
    rng = np.random.default_rng(0)
    x = (rng.random((60, 8, 8, 3)) * 255).astype(np.uint8)
    y = rng.integers(0, 3, 60)
    np.savez(tmp_path / "col.npz", x_train=x[:40], y_train=y[:40, None].astype(np.uint8), x_test=x[40:],
             y_test=y[40:, None].astype(np.uint8))
    s = load_npz(tmp_path / "col.npz")
    assert s.train.X.shape == (40, 3, 8, 8) and np.array_equal(s.train.labels.astype(int), y[:40])
    np.savez(tmp_path / "onehot.npz", x=x, y=np.eye(3, dtype=np.float32)[y])
    with pytest.warns(UserWarning, match="one-hot"):
        s = load_npz(tmp_path / "onehot.npz", test_size=0.25)
    assert sorted(np.concatenate([s.train.labels, s.test.labels]).astype(int).tolist()) == sorted(y.tolist())
    np.savez(tmp_path / "soft.npz", x=x, y=np.full((60, 3), 1 / 3))  # soft labels: still refused
    with pytest.raises(DataError):
        load_npz(tmp_path / "soft.npz")


def test_table_labels_that_differ_by_spaces_warn_and_repeated_ids_name_their_rows(tmp_path):
    df = pd.DataFrame({"a": np.arange(8.0), "y": ["cat", "dog", "cat ", "dog"] * 2, "id": [f"s{i}" for i in range(8)]})
    df.to_csv(tmp_path / "t.csv", index=False)
    with pytest.warns(UserWarning, match=r"differ only by case or spaces .*'cat' \(2\), 'cat ' \(2\)"):
        load_table(tmp_path / "t.csv", label="y", features=["a"], test_size=0.25)
    # case variants too, every group named with its counts
    df["y"] = ["cat", "dog", "Cat", "DOG ", "cat", "dog", "Cat", "DOG "]
    df.to_csv(tmp_path / "c.csv", index=False)
    with pytest.warns(UserWarning) as record:
        load_table(tmp_path / "c.csv", label="y", features=["a"], test_size=0.25)
    msg = " ".join(str(w.message) for w in record)
    assert "'cat' (2), 'Cat' (2)" in msg and "'dog' (2), 'DOG ' (2)" in msg
    df["id"] = ["s0", "s1", "s2", "s1", "s4", "s5", "s6", "s7"]
    df["y"] = ["cat", "dog"] * 4
    df.to_csv(tmp_path / "d.csv", index=False)
    with pytest.raises(DataError, match=r"repeats ids .*'s1' in data rows \[1, 3\]"):
        load_table(tmp_path / "d.csv", label="y", features=["a"], id_col="id", test_size=0.25)


def test_missing_labels_name_the_first_row(tmp_path):
    pd.DataFrame({"a": np.arange(6.0), "y": ["x", "y", None, "x", "y", "x"]}).to_csv(tmp_path / "t.csv", index=False)
    with pytest.raises(DataError, match=r"missing values \(1 rows, the first at data row 2\)"):
        load_table(tmp_path / "t.csv", label="y", features=["a"])


def test_boolean_label_column_gives_classes_true_and_false(tmp_path):
    p = tmp_path / "b.csv"
    p.write_text("a,b,label\n" + "".join(f"{i},{2 * i},{'True' if i % 2 else 'False'}\n" for i in range(20)))
    s = load_table(p, label="label")
    assert s.train.classes == s.test.classes == ("False", "True")
    for part in (s.train, s.test):
        assert [part.classes[k] for k in part.y] == [str(bool(int(i) % 2)) for i in part.ids]


@pytest.mark.parametrize("sep", [",", ";"])
def test_csv_ids_contributors_and_sources_are_read_as_written(tmp_path, sep):
    # warehouse exports: zero-padded numeric ids, 20-digit ids, vendor codes like 007; a CSV must
    # give the ids a Parquet string column gives (the ledger matches versions by id)
    df = _toy_frame()
    df["uid"] = [f"{i:07d}" for i in range(20)]
    df["who"] = ["007", "010"] * 10
    p = tmp_path / "t.csv"
    df.to_csv(p, index=False, sep=sep)
    s = load_table(p, label="y", features=["f1", "f2"], id_col="uid", contributor="who", test_size=0.25)
    ids = sorted([*s.train.ids, *s.test.ids])
    assert ids == [f"{i:07d}" for i in range(20)]
    assert set(s.train.meta["contributor"]) == {"007", "010"}
    df.to_parquet(tmp_path / "t.parquet", index=False)
    sp = load_table(tmp_path / "t.parquet", label="y", features=["f1", "f2"], id_col="uid", test_size=0.25)
    assert sorted([*sp.train.ids, *sp.test.ids]) == ids
    df["uid"] = [str(98765432109876543210 + i) for i in range(20)]  # beyond int64
    df.to_csv(p, index=False, sep=sep)
    s = load_table(p, label="y", features=["f1", "f2"], id_col="uid", test_size=0.25)
    assert "98765432109876543210" in set(s.train.ids) | set(s.test.ids)


def test_integer_ids_beyond_int64_stay_text():
    from mithridate.data.loaders import _plain_array

    big = _plain_array(np.array([98765432109876543210, 1], dtype=object), "ids")
    assert big.dtype.kind == "U" and big.tolist() == ["98765432109876543210", "1"]
    assert _plain_array(np.array([3, 1], dtype=object), "ids").dtype == np.int64


def test_csv_header_with_a_repeated_name_is_refused(tmp_path):
    p = tmp_path / "dup.csv"
    p.write_text("a,b,a,y\n1,2,3,0\n4,5,6,1\n1,2,3,0\n4,5,6,1\n")
    with pytest.raises(DataError, match=r"the header names 'a' more than once"):
        load_table(p, label="y")
    q = tmp_path / "dotted.csv"  # a real column named like pandas' renaming is fine
    q.write_text("a,a.1,y\n1,2,0\n4,5,1\n1,2,0\n4,5,1\n")
    assert load_table(q, label="y", test_size=0.5).train.X.shape[1] == 2


def test_empty_feature_column_and_non_utf8_file_say_what_to_do(tmp_path):
    df = _toy_frame().drop(columns=["note", "who", "origin", "uid"])
    df["blank"] = np.nan
    df.to_csv(tmp_path / "nan.csv", index=False)
    with pytest.warns(UserWarning, match="'blank' has no values at all and is left out"):  # not named: left out
        assert load_table(tmp_path / "nan.csv", label="y").train.X.shape[1] == 2
    with pytest.raises(DataError, match=r"'blank' .* is empty \(every value missing"):  # named: an error
        load_table(tmp_path / "nan.csv", label="y", features=["f1", "blank"])
    (tmp_path / "l1.csv").write_bytes("name,x,y\nJürgen,1,a\nZoë,2,b\nAna,3,a\nBo,4,b\n".encode("latin-1"))
    with pytest.raises(DataError, match=r"not UTF-8 text .*iconv"):
        load_table(tmp_path / "l1.csv", label="y", features=["x"])


def test_short_csv_record_is_named_by_line(tmp_path):
    rows = ["id,a,b,who,label"] + [f"{i},{i * 0.5},{i % 3},v{i % 2},{'x' if i % 2 else 'y'}" for i in range(30)]
    rows[8] = "7,3.5,1,v1"                       # data row 7 (line 9): the label's separator dropped
    p = tmp_path / "short.csv"
    p.write_text("\n".join(rows) + "\n")
    with pytest.raises(DataError, match=r"line 9 \(data row 7\) has 4 fields where the header has 5.*'label'"):
        load_table(p, label="label", id_col="id", contributor="who")
    # a short record that ends before a feature column: named the same way
    rows2 = ["a,b,label,c"] + [f"{i},{i % 3},{'x' if i % 2 else 'y'},{i}" for i in range(30)]
    rows2[3] = "2,2,y"
    p2 = tmp_path / "short_feature.csv"
    p2.write_text("\n".join(rows2) + "\n")
    with pytest.raises(DataError, match=r"line 4 \(data row 2\) has 3 fields where the header has 4.*'c'"):
        load_table(p2, label="label")
    # a complete record whose label field is empty keeps the missing-value message
    rows[8] = "7,3.5,1,v1,"
    p.write_text("\n".join(rows) + "\n")
    with pytest.raises(DataError, match="labels contain missing values"):
        load_table(p, label="label", id_col="id", contributor="who")
    # a quoted line break is one field, not a short record; lines are counted from the file
    rows[8] = '7,3.5,1,"v\n1",'
    p.write_text("\n".join(rows) + "\n")
    with pytest.raises(DataError, match="labels contain missing values"):
        load_table(p, label="label", id_col="id", contributor="who")
    rows[10] = "9,4.5"                           # line 12 now: the quoted break above adds one
    p.write_text("\n".join(rows) + "\n")
    with pytest.raises(DataError, match=r"line 12 \(data row 9\) has 2 fields"):
        load_table(p, label="label", id_col="id", contributor="who")
