"""Tests for mithridate.data.text: JSONL text datasets, the TF-IDF/SVD featurizer, bad input."""

from __future__ import annotations

import doctest
import gzip
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mithridate.data import DatasetSplits
from mithridate.data import text as text_module
from mithridate.data.text import JSONL_SUFFIXES, TextFeaturizer, load_jsonl
from mithridate.errors import ConfigError, DataError

SPORT = "goal striker match referee league stadium coach penalty season football keeper midfield".split()
FOOD = "recipe oven flour butter simmer garlic onion bake sauce pepper dough roast".split()
COMMON = "the a and of to in was with for on it this".split()


def corpus(n: int = 40, seed: int = 0, ids: bool = True) -> list[dict]:
    """Two topics, alternating; each text draws 6 topic words and 4 common words."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        topic = i % 2
        words = list(rng.choice(SPORT if topic == 0 else FOOD, 6)) + list(rng.choice(COMMON, 4))
        rng.shuffle(words)
        row = {"text": " ".join(words), "label": ["sport", "food"][topic], "who": f"c{i % 4}"}
        if ids:
            row["id"] = f"doc-{i}"
        rows.append(row)
    return rows


def write_jsonl(path: Path, rows, *, gz: bool = False) -> Path:
    data = "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows).encode("utf-8")
    if gz:
        data = gzip.compress(data)
    path.write_bytes(data)
    return path


# --------------------------------------------------------------------------- round trip
def test_round_trip_ids_labels_text_and_shape(tmp_path):
    rows = corpus(40)
    p = write_jsonl(tmp_path / "reviews.jsonl", rows)
    splits = load_jsonl(p, id_col="id", contributor="who", test_size=0.25, n_components=8)
    assert isinstance(splits, DatasetSplits)
    assert splits.name == "reviews" and splits.source == str(p)
    assert (len(splits.train), len(splits.test)) == (30, 10)
    by_id = {r["id"]: r for r in rows}
    for ds in (splits.train, splits.test):
        assert ds.classes == ("food", "sport")
        assert ds.X.dtype == np.float32 and ds.X.shape == (len(ds), 8)
        assert np.all(np.isfinite(ds.X))
        np.testing.assert_allclose(np.linalg.norm(ds.X, axis=1), 1.0, rtol=1e-5)
        for i, sid in enumerate(ds.ids.tolist()):
            row = by_id[sid]
            assert ds.meta["text"].iloc[i] == row["text"]
            assert ds.labels[i] == row["label"]
            assert ds.meta["contributor"].iloc[i] == row["who"]
            assert ds.meta["line"].iloc[i] == rows.index(row) + 1
        assert ds.meta["source"].isna().all()
        assert {"ingest_time", "text_hash"} <= set(ds.meta.columns)
    assert set(splits.train.ids) | set(splits.test.ids) == set(by_id)
    # every class lands in both splits (stratified)
    assert set(splits.test.y.tolist()) == {0, 1}


def test_deterministic_with_seed_and_seed_changes_split(tmp_path):
    p = write_jsonl(tmp_path / "c.jsonl", corpus(40))
    a, b = load_jsonl(p, random_state=3), load_jsonl(p, random_state=3)
    np.testing.assert_array_equal(a.train.ids, b.train.ids)
    np.testing.assert_array_equal(a.train.X, b.train.X)
    np.testing.assert_array_equal(a.test.X, b.test.X)
    c = load_jsonl(p, random_state=4)
    assert a.train.ids.tolist() != c.train.ids.tolist()
    gen = load_jsonl(p, random_state=np.random.default_rng(3))
    assert len(gen.train) == len(a.train)


def test_default_ids_are_data_line_numbers_skipping_blank_lines(tmp_path):
    rows = corpus(10, ids=False)
    lines = [json.dumps(rows[0]), "", "   "] + [json.dumps(r) for r in rows[1:]]
    p = write_jsonl(tmp_path / "c.jsonl", lines)
    splits = load_jsonl(p, test_size=0.2)
    for ds in (splits.train, splits.test):
        assert ds.ids.dtype.kind == "i"
        for i, sid in enumerate(ds.ids.tolist()):
            assert ds.meta["text"].iloc[i] == rows[sid]["text"]
            assert ds.meta["line"].iloc[i] == (1 if sid == 0 else sid + 3)


def test_integer_labels_and_integral_floats(tmp_path):
    rows = [{"text": r["text"], "label": i % 2 + (0.0 if i % 3 else 0)} for i, r in enumerate(corpus(12))]
    rows[0]["label"] = 0.0  # 0.0 counts as 0
    splits = load_jsonl(write_jsonl(tmp_path / "c.jsonl", rows))
    assert splits.train.classes == (0, 1)


def test_text_hash_is_of_the_text(tmp_path):
    import hashlib

    rows = corpus(10)
    splits = load_jsonl(write_jsonl(tmp_path / "c.jsonl", rows), id_col="id")
    ds = splits.train
    for t, h in zip(ds.meta["text"], ds.meta["text_hash"]):
        assert h == hashlib.blake2b(t.encode("utf-8"), digest_size=16).hexdigest()


def test_gzip_gives_the_same_dataset(tmp_path):
    rows = corpus(30)
    plain = load_jsonl(write_jsonl(tmp_path / "c.jsonl", rows), id_col="id")
    gz = load_jsonl(write_jsonl(tmp_path / "c.jsonl.gz", rows, gz=True), id_col="id")
    assert gz.name == "c"
    np.testing.assert_array_equal(plain.train.ids, gz.train.ids)
    np.testing.assert_array_equal(plain.train.X, gz.train.X)
    assert JSONL_SUFFIXES == (".jsonl", ".jsonl.gz", ".ndjson", ".ndjson.gz")


def test_crlf_and_byte_order_mark(tmp_path):
    rows = corpus(10)
    data = "\ufeff" + "".join(json.dumps(r) + "\r\n" for r in rows)
    p = tmp_path / "c.jsonl"
    p.write_bytes(data.encode("utf-8"))
    splits = load_jsonl(p, id_col="id")
    assert len(splits.train) + len(splits.test) == 10
    assert set(splits.train.meta["text"]) <= {r["text"] for r in rows}


# --------------------------------------------------------------------------- featurizer and leakage
def test_test_words_do_not_leak_into_features(tmp_path):
    rows = corpus(40)
    base = load_jsonl(write_jsonl(tmp_path / "a.jsonl", rows), id_col="id", random_state=1)
    test_id = base.test.ids[0]
    changed = [dict(r) for r in rows]
    k = next(i for i, r in enumerate(changed) if r["id"] == test_id)
    changed[k]["text"] += " zyzzyvaunseen quokkaword"
    other, feat = load_jsonl(write_jsonl(tmp_path / "b.jsonl", changed), id_col="id", random_state=1,
                             return_featurizer=True)
    np.testing.assert_array_equal(base.train.ids, other.train.ids)
    np.testing.assert_array_equal(base.train.X, other.train.X)   # training features untouched
    np.testing.assert_array_equal(base.test.X, other.test.X)     # the unknown words are ignored
    assert "zyzzyvaunseen" not in feat.vectorizer_.vocabulary_


def test_return_featurizer_transforms_like_the_loader(tmp_path):
    p = write_jsonl(tmp_path / "c.jsonl", corpus(30))
    splits, feat = load_jsonl(p, return_featurizer=True, n_components=5)
    assert isinstance(feat, TextFeaturizer)
    np.testing.assert_allclose(feat.transform(list(splits.train.meta["text"])), splits.train.X, atol=1e-6)
    np.testing.assert_allclose(feat.transform(list(splits.test.meta["text"])), splits.test.X, atol=1e-6)
    cfg = feat.get_config()
    assert cfg["n_components"] == 5 and cfg["n_components_"] == 5 and cfg["ngram_range"] == [1, 2]
    json.dumps(cfg)


def test_test_path_is_transformed_by_the_training_featurizer(tmp_path):
    rows = corpus(30)
    train_p = write_jsonl(tmp_path / "train.jsonl", rows[:20])
    test_rows = [dict(r, text=r["text"] + " onlyintest") for r in rows[20:]]
    test_p = write_jsonl(tmp_path / "test.jsonl", test_rows)
    splits, feat = load_jsonl(train_p, test_path=test_p, id_col="id", return_featurizer=True)
    assert len(splits.train) == 20 and len(splits.test) == 10
    assert splits.train.ids.tolist() == [r["id"] for r in rows[:20]]
    assert "onlyintest" not in feat.vectorizer_.vocabulary_
    alone = TextFeaturizer(random_state=feat.random_state).fit([r["text"] for r in rows[:20]])
    np.testing.assert_allclose(alone.transform([r["text"] for r in test_rows]), splits.test.X, atol=1e-6)


def test_n_components_is_capped_and_dense():
    texts = ["alpha beta", "beta gamma", "gamma delta", "delta alpha"]
    feat = TextFeaturizer(n_components=256, ngram_range=(1, 1)).fit(texts)
    assert feat.n_components_ == 3  # min(256, vocabulary 4 - 1, n_train 4 - 1)
    X = feat.transform(texts + ["nothing known here"])
    assert X.shape == (5, 3) and X.dtype == np.float32
    assert np.array_equal(X[-1], [-1, 0, 0])  # no known word: -e_1 (away from every text), not NaN


def test_single_word_vocabulary_and_empty_vocabulary():
    feat = TextFeaturizer(ngram_range=(1, 1)).fit(["spam", "spam spam", "spam"])
    assert feat.n_components_ == 1 and feat.svd_ is None
    with pytest.raises(DataError, match="no words"):
        TextFeaturizer().fit(["a", "b", "!"])


def test_featurizer_validation_and_config_round_trip():
    with pytest.raises(ConfigError, match="not fitted"):
        TextFeaturizer().transform(["x"])
    for bad in (dict(n_components=0), dict(max_features=-1), dict(ngram_range=(2, 1)), dict(min_df=True)):
        with pytest.raises(ConfigError):
            TextFeaturizer(**bad).fit(["aa bb", "cc dd"])
    with pytest.raises(ConfigError, match="list of strings"):
        TextFeaturizer().fit("one string")
    with pytest.raises(DataError, match="at least 2"):
        TextFeaturizer().fit(["only one"])
    a = TextFeaturizer(max_features=50, n_components=3, random_state=7)
    texts = [" ".join(r["text"].split()) for r in corpus(20)]
    twin = TextFeaturizer.from_config(a.fit(texts).get_config())
    np.testing.assert_array_equal(a.transform(texts), twin.fit(texts).transform(texts))
    assert "n_components=3" in repr(twin)


def test_custom_featurizer_object_and_bad_featurizer(tmp_path):
    class Lengths:
        def fit(self, texts):
            self.fitted_on_ = list(texts)
            return self

        def transform(self, texts):
            return np.array([[len(t), t.count(" ")] for t in texts], dtype=float)

    p = write_jsonl(tmp_path / "c.jsonl", corpus(20))
    custom = Lengths()
    splits, feat = load_jsonl(p, featurizer=custom, return_featurizer=True)
    assert feat is custom and len(custom.fitted_on_) == len(splits.train)
    assert splits.train.X.shape == (len(splits.train), 2)
    with pytest.raises(ConfigError, match="featurizer"):
        load_jsonl(p, featurizer="bert")
    with pytest.raises(ConfigError, match="featurizer"):
        load_jsonl(p, featurizer=42)

    class Wrong(Lengths):
        def transform(self, texts):
            return np.zeros((1, 2))

    with pytest.raises(DataError, match="one row per text"):
        load_jsonl(p, featurizer=Wrong())


def test_featurizer_instance_is_copied(tmp_path):
    p = write_jsonl(tmp_path / "c.jsonl", corpus(20))
    mine = TextFeaturizer(n_components=4)
    splits, feat = load_jsonl(p, featurizer=mine, return_featurizer=True)
    assert feat is not mine and not hasattr(mine, "vectorizer_")
    assert splits.train.X.shape[1] == 4


# --------------------------------------------------------------------------- hostile text
def test_markup_and_control_characters_are_kept_verbatim(tmp_path):
    rows = corpus(12)
    rows[0]["text"] = '<script>alert("x")</script> <img src=x onerror=alert(1)> goal'
    rows[2]["text"] = "null\u0000byte, bell\u0007, escape\u001b[31m red football"
    raw_control = '{"id": "raw", "text": "tab\there\x01raw control chars recipe", "label": "food"}'
    lines = [json.dumps(r) for r in rows] + [raw_control, json.dumps(dict(rows[1], id="raw2"))]
    splits = load_jsonl(write_jsonl(tmp_path / "c.jsonl", lines), id_col="id", test_size=0.2)
    texts = dict(zip(np.r_[splits.train.ids, splits.test.ids].tolist(),
                     list(splits.train.meta["text"]) + list(splits.test.meta["text"])))
    assert texts["doc-0"] == rows[0]["text"]
    assert texts["doc-2"] == rows[2]["text"]
    assert texts["raw"] == "tab\there\x01raw control chars recipe"


def test_long_line_under_the_limit_is_read(tmp_path):
    rows = corpus(10)
    rows[3]["text"] = "football " * 100_000  # 900 kB, under the 1 MiB default
    splits = load_jsonl(write_jsonl(tmp_path / "c.jsonl", rows), id_col="id")
    assert max(len(t) for t in list(splits.train.meta["text"]) + list(splits.test.meta["text"])) == 900_000


# --------------------------------------------------------------------------- bad input
BAD_LINES = {
    "invalid json": ('{"text": "abc", "label": ', r"line 3 is not valid JSON"),
    "not an object": ('["text", "label"]', r"line 3 is a list, not a JSON object"),
    "string line": ('"just a string"', r"line 3 is a string, not a JSON object"),
    "missing text": ('{"body": "abc", "label": "food"}', r"line 3 has no 'text' key .*keys on this line: \['body', 'label'\]"),
    "missing label": ('{"text": "abc"}', r"line 3 has no 'label' key"),
    "non-string text": ('{"text": 42, "label": "food"}', r"line 3: the text \('text'\) is a number, not a string"),
    "null text": ('{"text": null, "label": "food"}', r"line 3: the text \('text'\) is null"),
    "boolean label": ('{"text": "abc", "label": true}', r"line 3: the label True is a boolean but line 1's label is a string"),
    "null label": ('{"text": "abc", "label": null}', r"line 3: the label is null"),
    "fractional label": ('{"text": "abc", "label": 1.5}', r"line 3: the label is 1.5"),
    "mixed labels": ('{"text": "abc", "label": 3}', r"line 3: the label 3 is an integer but line 1's label is a string"),
    "huge int label": ('{"text": "abc", "label": 1' + "0" * 30 + "}", r"line 3: .*does not fit in 64 bits"),
    "lone surrogate": ('{"text": "bad \\ud800 escape", "label": "food"}', r"line 3: the text holds an unpaired surrogate"),
    "deep nesting": ('{"text": "abc", "label": "food", "x": ' + "[" * 100_000 + "]" * 100_000 + "}",
                     r"line 3: the JSON is nested too deeply"),
    "integer over the digit limit": ('{"text": "abc", "label": ' + "9" * 5000 + "}", r"line 3 could not be read as JSON"),
    "label too long": ('{"text": "abc", "label": "' + "w" * 5000 + '"}', r"line 3: the label is 5,000 characters long"),
    # JSON readers disagree on a repeated key (Python keeps the last value, others the first)
    "duplicate key": ('{"text": "abc", "label": "food", "label": "sport"}', r"line 3 gives the key 'label' twice"),
    "unterminated string": ('{"text": "abc', r"line 3 is not valid JSON \(Unterminated string starting at, column 10\)"),
}


@pytest.mark.parametrize("case", sorted(BAD_LINES))
def test_bad_line_names_file_and_line(tmp_path, case):
    line, pattern = BAD_LINES[case]
    rows = corpus(10, ids=False)
    lines = [json.dumps(rows[0]), json.dumps(rows[1]), line] + [json.dumps(r) for r in rows[2:]]
    p = write_jsonl(tmp_path / "bad.jsonl", lines)
    with pytest.raises(DataError, match=pattern) as info:
        load_jsonl(p)
    assert str(p) in str(info.value)


def test_non_utf8_bytes(tmp_path):
    rows = corpus(6, ids=False)
    data = b"".join(json.dumps(r).encode() + b"\n" for r in rows[:4])
    data += b'{"text": "caf\xe9 latin-1", "label": "food"}\n'
    p = tmp_path / "latin1.jsonl"
    p.write_bytes(data)
    with pytest.raises(DataError, match=r"line 5 is not valid UTF-8 \(byte 0xe9 at byte 13 of the line\); "
                                        r"re-encode the file as UTF-8"):
        load_jsonl(p)


def test_line_over_the_limit(tmp_path):
    rows = corpus(6, ids=False)
    rows[1]["text"] = "x" * (1 << 20)
    p = write_jsonl(tmp_path / "long.jsonl", rows)
    with pytest.raises(DataError, match=r"line 2 is longer than 1,048,576 bytes \(max_line_bytes\)"):
        load_jsonl(p)
    with pytest.raises(DataError, match=r"line 1 is longer than 10 bytes"):
        load_jsonl(p, max_line_bytes=10)
    with pytest.raises(ConfigError, match="max_line_bytes"):
        load_jsonl(p, max_line_bytes=0)
    # a line of exactly max_line_bytes (newline not counted) is accepted
    exact = write_jsonl(tmp_path / "exact.jsonl", corpus(6, ids=False))
    longest = max(len(line) for line in exact.read_bytes().splitlines())
    assert len(load_jsonl(exact, max_line_bytes=longest).train) > 0


@pytest.mark.parametrize("content", [b"", b"\n\n   \n"])
def test_empty_file(tmp_path, content):
    p = tmp_path / "empty.jsonl"
    p.write_bytes(content)
    with pytest.raises(DataError, match=r"empty\.jsonl is empty \(no JSON lines\)"):
        load_jsonl(p)


def test_one_class_only(tmp_path):
    rows = [dict(r, label="food") for r in corpus(8)]
    with pytest.raises(DataError, match=r"every line has the label 'food'; at least two classes"):
        load_jsonl(write_jsonl(tmp_path / "c.jsonl", rows))


def test_class_with_one_sample(tmp_path):
    rows = corpus(8)
    rows[0]["label"] = "rare"
    with pytest.raises(DataError, match=r"class 'rare' has only 1 sample"):
        load_jsonl(write_jsonl(tmp_path / "c.jsonl", rows))


def test_id_errors(tmp_path):
    rows = corpus(8)
    rows[5]["id"] = rows[2]["id"]
    with pytest.raises(DataError, match=r"line 6: the id 'doc-2' already appears on line 3"):
        load_jsonl(write_jsonl(tmp_path / "dup.jsonl", rows), id_col="id")
    rows = corpus(8)
    del rows[4]["id"]
    with pytest.raises(DataError, match=r"line 5 has no 'id' key"):
        load_jsonl(write_jsonl(tmp_path / "missing.jsonl", rows), id_col="id")
    rows = corpus(8)
    rows[3]["id"] = 3
    with pytest.raises(DataError, match=r"line 4: the id 3 is an integer but line 1's id is a string"):
        load_jsonl(write_jsonl(tmp_path / "mixed.jsonl", rows), id_col="id")
    rows = [dict(r, id=i * 10) for i, r in enumerate(corpus(8))]
    splits = load_jsonl(write_jsonl(tmp_path / "ints.jsonl", rows), id_col="id")
    assert splits.train.ids.dtype == np.int64 and set(splits.train.ids.tolist()) <= set(range(0, 80, 10))


def test_contributor_key_missing_everywhere_or_somewhere(tmp_path):
    rows = corpus(8)
    p = write_jsonl(tmp_path / "c.jsonl", rows)
    with pytest.raises(DataError, match=r"contributor key 'uploader' appears on no line"):
        load_jsonl(p, contributor="uploader")
    del rows[0]["who"]
    rows[1]["who"] = ["a", "list"]
    with pytest.raises(DataError, match=r"line 2: 'who' is a list"):
        load_jsonl(write_jsonl(tmp_path / "d.jsonl", rows), contributor="who")
    rows[1]["who"] = None
    splits = load_jsonl(write_jsonl(tmp_path / "e.jsonl", rows), contributor="who", id_col="id")
    meta = splits.train.metadata.set_index("id")
    for sid in ("doc-0", "doc-1"):
        if sid in meta.index:
            assert pd.isna(meta.loc[sid, "contributor"])


def test_corrupt_gzip(tmp_path):
    good = gzip.compress(b"".join(json.dumps(r).encode() + b"\n" for r in corpus(200)))
    p = tmp_path / "c.jsonl.gz"
    p.write_bytes(good[: len(good) // 2])
    with pytest.raises(DataError, match=r"could not decompress the gzip data after line \d+"):
        load_jsonl(p)


def test_bad_arguments(tmp_path):
    p = write_jsonl(tmp_path / "c.jsonl", corpus(8))
    with pytest.raises(ConfigError, match="label must be"):
        load_jsonl(p, label="")
    with pytest.raises(ConfigError, match="same key"):
        load_jsonl(p, text="label", label="label")
    # the text named "label" leaves no usual key for the label: the error says how to name one
    with pytest.raises(DataError, match="none of the usual label keys .*label=<key name>"):
        load_jsonl(p, text="label")
    with pytest.raises(ConfigError, match="id_col"):
        load_jsonl(p, id_col=3)
    with pytest.raises(ConfigError, match="test_size"):
        load_jsonl(p, test_size=1.5)
    with pytest.raises(ConfigError, match="n_components"):
        load_jsonl(p, n_components=0)
    with pytest.raises(DataError, match="file not found"):
        load_jsonl(tmp_path / "nope.jsonl")


def test_text_and_label_keys_found_under_usual_names(tmp_path):
    rows = [{"Review": f"great phone {i}" if i % 2 else f"broken screen {i}", "sentiment": ["neg", "pos"][i % 2],
             "stars": i % 5, "user": f"u{i % 3}"} for i in range(20)]
    p = write_jsonl(tmp_path / "r.jsonl", rows)
    s = load_jsonl(p, test_size=0.25)
    assert s.train.classes == ("neg", "pos")
    assert list(s.train.meta["text"]) == [rows[i]["Review"] for i in s.train.ids]  # any letter case
    assert [s.train.classes[k] for k in s.train.y] == [rows[i]["sentiment"] for i in s.train.ids]
    # the test file is read with the keys found in the training file
    test_p = write_jsonl(tmp_path / "t.jsonl", [{"Review": "fine", "sentiment": "pos", "label": "ignored"},
                                                {"Review": "dead", "sentiment": "neg", "label": "ignored"}])
    s2 = load_jsonl(p, test_path=test_p)
    assert list(s2.test.meta["text"]) == ["fine", "dead"] and s2.test.classes == ("neg", "pos")
    # a text key that holds no string is passed over; nothing usable is an error naming the option
    p3 = write_jsonl(tmp_path / "n.jsonl", [{"text": 3, "body": "words here", "label": "a"},
                                            {"text": 4, "body": "other words", "label": "b"}] * 3)
    assert list(load_jsonl(p3, test_size=0.5).train.meta["text"])[0] in ("words here", "other words")
    # a label key holding a list is passed over for the next usable one
    p5 = write_jsonl(tmp_path / "l.jsonl", [{"text": f"w{i} x", "labels": [1, 2], "category": "ab"[i % 2]}
                                            for i in range(8)])
    assert load_jsonl(p5, test_size=0.5).train.classes == ("a", "b")
    p4 = write_jsonl(tmp_path / "x.jsonl", [{"tokens": "a b", "label": "a"}, {"tokens": "c d", "label": "b"}])
    with pytest.raises(DataError, match=r"none of the usual text keys .*\['tokens', 'label'\].*text=<key name>"):
        load_jsonl(p4)
    # the only label key holds a list (multi-label data): the error says so instead of "no label key"
    p6 = write_jsonl(tmp_path / "m.jsonl", [{"text": f"w{i} x", "labels": ["pos", "funny"]} for i in range(4)])
    with pytest.raises(DataError, match=r"the label key 'labels' holds a list \(\['pos', 'funny'\]\).*multi-label"):
        load_jsonl(p6)


def test_mixed_label_kinds_across_files(tmp_path):
    rows = corpus(10)
    train_p = write_jsonl(tmp_path / "train.jsonl", rows)
    test_p = write_jsonl(tmp_path / "test.jsonl", [dict(r, label=i % 2) for i, r in enumerate(rows)])
    with pytest.raises(DataError, match="labels must be of one kind"):
        load_jsonl(train_p, test_path=test_p)


# --------------------------------------------------------------------------- detectors on text
def test_knn_label_consistency_ranks_flipped_labels_high(tmp_path):
    from mithridate.defenses.detect.knn import KNNLabelConsistency

    rows = corpus(120, seed=1)
    rng = np.random.default_rng(0)
    flipped = rng.choice(len(rows), 8, replace=False)
    for i in flipped:
        rows[i]["label"] = "food" if rows[i]["label"] == "sport" else "sport"
    train_p = write_jsonl(tmp_path / "train.jsonl", rows)
    test_p = write_jsonl(tmp_path / "test.jsonl", [dict(r, id=f"t{k}") for k, r in enumerate(corpus(20, seed=2))])
    splits = load_jsonl(train_p, test_path=test_p, id_col="id")
    truth = np.isin(splits.train.ids, [rows[i]["id"] for i in flipped])
    # LSA features are already unit-length and meaningful in scale: do not standardise them
    det = KNNLabelConsistency(n_neighbors=10, standardize=False).fit(splits.train)
    top = np.argsort(-det.scores_, kind="stable")[: truth.sum()]
    assert truth[top].all()
    assert np.array_equal(det.flag(), truth)
    # the default standardize="auto" recognises text (meta["text"]) and does the same
    auto = KNNLabelConsistency(n_neighbors=10).fit(splits.train)
    assert auto.input_kind_ == "text" and np.array_equal(auto.scores_, det.scores_)
    forced = KNNLabelConsistency(n_neighbors=10, standardize=True).fit(splits.train)
    assert not np.array_equal(forced.scores_, det.scores_)


# --------------------------------------------------------------------------- docs
def test_docstring_examples_run():
    result = doctest.testmod(text_module, optionflags=doctest.ELLIPSIS)
    assert result.attempted >= 5 and result.failed == 0


def test_load_dataset_dispatches_jsonl_once_wired(tmp_path):
    from mithridate.data import load_dataset, loaders

    if not hasattr(loaders, "JSONL_SUFFIXES"):
        pytest.skip("load_dataset does not dispatch .jsonl yet (loaders.JSONL_SUFFIXES missing)")
    assert loaders.JSONL_SUFFIXES == JSONL_SUFFIXES
    rows = corpus(20)
    for name, gz in (("c.jsonl", False), ("c.jsonl.gz", True), ("c.ndjson", False)):
        p = write_jsonl(tmp_path / name, rows, gz=gz)
        direct = load_jsonl(p, id_col="id", random_state=2)
        via = load_dataset(p, id_col="id", random_state=2)
        np.testing.assert_array_equal(direct.train.ids, via.train.ids)
        np.testing.assert_array_equal(direct.train.X, via.train.X)
    with pytest.raises(ConfigError, match="features"):
        load_dataset(p, features=["x"])


def test_boolean_labels_are_the_classes_true_and_false(tmp_path):
    rows = [{"text": f"{'cheap offer now' if i % 2 else 'meeting notes'} {i}", "is_spam": bool(i % 2)} for i in range(12)]
    s = load_jsonl(write_jsonl(tmp_path / "b.jsonl", rows), label="is_spam", test_size=0.25)
    assert s.train.classes == ("False", "True")
    assert [s.train.classes[k] == "True" for k in s.train.y] == [rows[i]["is_spam"] for i in s.train.ids]
    # found under a usual key too
    p2 = write_jsonl(tmp_path / "b2.jsonl", [{"text": r["text"], "label": r["is_spam"]} for r in rows])
    assert load_jsonl(p2, test_size=0.25).train.classes == ("False", "True")


def test_texts_without_words_are_nobodys_nearest_neighbour(tmp_path):
    # a zero row sits at distance 1 from every unit row, closer than two unrelated texts (sqrt 2):
    # a user's 12 empty tickets took 89% of all 10-nearest-neighbour slots and kNN flagged 91% of rows
    rng = np.random.default_rng(0)
    vocab = [[f"w{t}x{k}" for k in range(60)] for t in range(2)]
    rows = [{"text": " ".join(rng.choice(vocab[i % 2], 5)), "label": ["a", "b"][i % 2], "id": f"d{i}"}
            for i in range(200)]
    empties = {"", "   ", "\U0001f600 !!", "?", "-- ..."}
    for k, t in enumerate(sorted(empties)):
        rows[10 * k + 3]["text"] = t
    texts = [r["text"] for r in rows]
    feat = TextFeaturizer()
    X = feat.fit_transform(texts)
    empty = np.array([t in empties for t in texts])
    assert feat.no_words_ == empty.sum() == 5
    assert np.allclose(X[empty], np.eye(X.shape[1])[0] * -1.0)  # -e_1, all of them
    assert (X[~empty, 0] >= -1e-6).all() and np.allclose(np.linalg.norm(X, axis=1), 1.0, atol=1e-5)
    # a text without words is at least as far from every text as an unrelated one (sqrt 2; a zero
    # row was at 1), so texts that share words with a text are its nearest neighbours, not them
    D = np.sqrt(np.maximum(((X[:, None, :] - X[None, :, :]) ** 2).sum(-1), 0))
    np.fill_diagonal(D, np.inf)
    assert D[np.ix_(~empty, empty)].min() >= np.sqrt(2) - 1e-4
    nearest = np.argsort(D[~empty], axis=1)[:, :3]
    assert not empty[nearest].any()
    assert np.allclose(feat.transform(["", "zzz unknown words"]), -np.eye(X.shape[1])[0])
    with pytest.warns(UserWarning, match=r"5 of \d+ texts have no word the TF-IDF features count .*line \d+"):
        load_jsonl(write_jsonl(tmp_path / "e.jsonl", rows), id_col="id", test_size=0.1)


def test_numeric_fields_of_a_jsonl_table_are_said_to_be_unused(tmp_path):
    # a loan table exported as JSON Lines: auditing its notes silently ignored 18 numeric fields
    rows = [{"notes": f"note {i} about payment", "income": 1000 + i, "ratio": i / 50, "approved": bool(i % 2),
             "decision": "ab"[i % 2]} for i in range(40)]
    p = tmp_path / "loans.jsonl"
    p.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.warns(UserWarning, match=r"numeric fields \('income', 'ratio'\) are not used"):
        load_jsonl(p, text="notes", label="decision")
