"""Text datasets: JSON Lines files turned into dense features a detector can read.

A JSONL file holds one JSON object per line, for example::

    {"id": "r1", "text": "great phone, battery lasts", "label": "pos", "user": "alice"}
    {"id": "r2", "text": "broke after a week", "label": "neg", "user": "bob"}

:func:`load_jsonl` reads it line by line (plain or gzip-compressed), splits it like every
other loader (stratified, seeded by ``random_state``), fits a :class:`TextFeaturizer` on the
**training split only** and returns a :class:`~mithridate.data.DatasetSplits` whose ``X`` is
that featurizer's output. The raw strings stay in ``dataset.meta["text"]`` so that reports can
show them (escaped: a poisoned dataset is hostile input).

How detectors see text
----------------------
Detectors read ``dataset.X``, a dense ``N x d`` float32 matrix: the latent semantic analysis
(LSA) representation of each text. TF-IDF weights of word unigrams and bigrams (sublinear term
frequency ``1 + log tf``, smooth idf, L2-normalised rows; Salton & Buckley 1988) are projected
on the top ``d`` right singular vectors of the training TF-IDF matrix (truncated SVD, Deerwester
et al. 1990) and each projected row is scaled to unit L2 norm,

    x_i = P_d^T t_i / ||P_d^T t_i||,    d = min(n_components, vocabulary - 1, n_train - 1).

A text with no word of the vocabulary (empty, whitespace, emoji or punctuation only) has no
TF-IDF row to project. Left at zero it would sit at distance 1 from every unit row -- closer than
two unrelated texts (distance sqrt(2)) -- and become every text's nearest neighbour (a user's
4,000 tickets with 12 empty ones: 89% of all 10-nearest-neighbour slots, and the kNN detector
flagged 91% of the rows). It is placed instead at ``-e_1``, opposite the first singular
direction: TF-IDF rows are non-negative, so their first singular direction can be taken
non-negative (Perron-Frobenius) and every text has a cosine >= 0 with it; ``-e_1`` is then at
least as far from every text as two unrelated texts are from each other, and identical to the
other texts without words (``no_words_`` counts them at fit time).

Dense output means every detector (k-NN through faiss, spectral signatures, outlier scores,
...) and every model works on text unchanged. Words that occur only in the test split (or in a
later file transformed with the same fitted featurizer) are unknown to the vocabulary and are
ignored, so the test split cannot leak into the features.

Provenance columns in ``meta``: ``source``, ``contributor`` (from the keys named by
``source=`` / ``contributor=``), ``text`` (the raw string, verbatim), ``text_hash``
(BLAKE2b-128 of the UTF-8 text, stable across featurizer fits, unlike
:attr:`Dataset.content_hashes`, which hashes ``X``) and ``line`` (1-based line number in the
file).
"""

from __future__ import annotations

import copy
import gzip
import hashlib
import json
import math
import os
import warnings
import zlib
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import numpy as np
import pandas as pd

import mithridate.data.loaders as _loaders
from mithridate.data.dataset import DatasetSplits, encode_labels
from mithridate.errors import ConfigError, DataError
from mithridate.utils import RandomState, check_fraction, check_random_state, seed_from

PathLike = Union[str, "os.PathLike[str]"]

__all__ = ["JSONL_SUFFIXES", "MAX_LINE_BYTES", "TextFeaturizer", "load_jsonl"]

#: File names :func:`load_jsonl` is meant for (gzip is detected from the content, not the name).
JSONL_SUFFIXES = (".jsonl", ".jsonl.gz", ".ndjson", ".ndjson.gz")

#: Default longest line accepted, in bytes (1 MiB, newline excluded).
MAX_LINE_BYTES = 1 << 20

#: Longest string label or id accepted, in characters.
_MAX_KEY_CHARS = 1000

_INT64 = (-(2**63), 2**63 - 1)


# ----------------------------------------------------------------------------------------
# featurizer
# ----------------------------------------------------------------------------------------
def _check_texts(texts: Any, who: str) -> list:
    if isinstance(texts, (str, bytes)):
        raise ConfigError(f"{who} expects a list of strings, got a single {type(texts).__name__}; wrap it in a list")
    try:
        texts = list(texts)
    except TypeError:
        raise ConfigError(f"{who} expects a list of strings, got {type(texts).__name__}") from None
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise DataError(f"{who}: text {i} is a {type(t).__name__}, not a string")
    return texts


class TextFeaturizer:
    """TF-IDF of word 1-2 grams reduced by truncated SVD to dense, unit-length float32 rows.

    ``fit`` learns the vocabulary, the idf weights and the SVD projection from the training
    texts; ``transform`` applies them to any texts (words outside the vocabulary are ignored).
    For a TF-IDF row ``t`` the output is ``P^T t / ||P^T t||`` with ``P`` the top ``d`` right
    singular vectors of the training TF-IDF matrix (latent semantic analysis).

    Parameters
    ----------
    max_features : int or None, default=20000
        Keep the ``max_features`` most frequent terms (unigrams and bigrams) of the training
        texts; ``None`` keeps them all.
    n_components : int, default=256
        Output dimension requested. The fitted dimension ``n_components_`` is
        ``min(n_components, vocabulary_size_ - 1, n_train - 1)`` (at least 1): truncated SVD
        cannot return more directions than that. The output is always dense.
    ngram_range : tuple of two ints, default=(1, 2)
        Word n-grams used (scikit-learn's ``TfidfVectorizer`` tokeniser: words of two or more
        word characters, lower-cased).
    sublinear_tf : bool, default=True
        Use ``1 + log(tf)`` instead of raw counts, so a word repeated many times (keyword
        stuffing) does not dominate its document.
    min_df : int, default=1
        Ignore terms that occur in fewer training texts.
    normalize : bool, default=True
        Scale each output row to unit L2 norm; a text with no known word gets the unit row
        ``-e_1`` (see the module docstring; with ``normalize=False`` its row stays zero).
    random_state : int, default=0
        Seed of the randomized SVD solver; the same texts and seed give the same features.

    Attributes
    ----------
    vectorizer_ : sklearn.feature_extraction.text.TfidfVectorizer
        The fitted TF-IDF step.
    svd_ : sklearn.decomposition.TruncatedSVD or None
        The fitted projection (``None`` when the vocabulary has a single term; the one TF-IDF
        column is then the feature).
    vocabulary_size_ : int
        Terms kept.
    n_components_ : int
        Output dimension.
    explained_variance_ratio_ : float
        Share of the TF-IDF variance the projection keeps (1.0 without SVD).
    no_words_ : int
        Training texts with no word of the vocabulary (empty, whitespace or symbols only).

    Examples
    --------
    >>> texts = ["the cat sat on the mat", "dogs chase cats", "stocks fell sharply today",
    ...          "markets and stocks rallied", "a cat and a dog", "bond markets fell"]
    >>> feat = TextFeaturizer(n_components=3).fit(texts)
    >>> X = feat.transform(["my cat sat", "stocks rallied"])
    >>> X.shape, X.dtype.name
    ((2, 3), 'float32')
    >>> feat.get_config()["n_components_"]
    3

    References
    ----------
    Salton, Buckley. "Term-weighting approaches in automatic text retrieval." Information
    Processing & Management, 1988.
    Deerwester, Dumais, Furnas, Landauer, Harshman. "Indexing by latent semantic analysis."
    JASIS, 1990.
    """

    kind = "tfidf"

    def __init__(self, max_features: Optional[int] = 20000, n_components: int = 256,
                 ngram_range: tuple = (1, 2), sublinear_tf: bool = True, min_df: int = 1,
                 normalize: bool = True, random_state: int = 0):
        self.max_features = max_features
        self.n_components = n_components
        self.ngram_range = ngram_range
        self.sublinear_tf = sublinear_tf
        self.min_df = min_df
        self.normalize = normalize
        self.random_state = random_state

    # -- configuration --------------------------------------------------------------------
    def _validate(self) -> tuple[int, int]:
        def positive_int(v: Any, name: str, allow_none: bool = False) -> None:
            if allow_none and v is None:
                return
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                extra = " or None" if allow_none else ""
                raise ConfigError(f"TextFeaturizer: {name} must be a positive int{extra}, got {v!r}")

        positive_int(self.max_features, "max_features", allow_none=True)
        positive_int(self.n_components, "n_components")
        positive_int(self.min_df, "min_df")
        try:
            lo, hi = (int(v) for v in self.ngram_range)
        except (TypeError, ValueError):
            raise ConfigError(
                f"TextFeaturizer: ngram_range must be two ints (min_n, max_n), got {self.ngram_range!r}"
            ) from None
        if not 1 <= lo <= hi:
            raise ConfigError(f"TextFeaturizer: ngram_range needs 1 <= min_n <= max_n, got {self.ngram_range!r}")
        if isinstance(self.random_state, bool) or not isinstance(self.random_state, (int, np.integer)):
            raise ConfigError(f"TextFeaturizer: random_state must be an int, got {self.random_state!r}")
        return lo, hi

    def get_config(self) -> dict:
        """The hyperparameters (JSON-serialisable) and, once fitted, the fitted sizes.

        ``TextFeaturizer.from_config(f.get_config())`` builds an unfitted twin; fitting it on
        the same texts gives the same features.
        """
        cfg = {
            "kind": self.kind,
            "max_features": None if self.max_features is None else int(self.max_features),
            "n_components": int(self.n_components),
            "ngram_range": [int(v) for v in self.ngram_range],
            "sublinear_tf": bool(self.sublinear_tf),
            "min_df": int(self.min_df),
            "normalize": bool(self.normalize),
            "random_state": int(self.random_state),
        }
        if hasattr(self, "vectorizer_"):
            cfg.update(
                vocabulary_size_=int(self.vocabulary_size_),
                n_components_=int(self.n_components_),
                explained_variance_ratio_=float(self.explained_variance_ratio_),
            )
        return cfg

    @classmethod
    def from_config(cls, config: dict) -> "TextFeaturizer":
        """An unfitted featurizer with the hyperparameters of ``config`` (fitted keys ignored)."""
        if not isinstance(config, dict):
            raise ConfigError(f"from_config expects a dict, got {type(config).__name__}")
        kind = config.get("kind", cls.kind)
        if kind != cls.kind:
            raise ConfigError(f"from_config: kind must be {cls.kind!r}, got {kind!r}")
        names = ("max_features", "n_components", "ngram_range", "sublinear_tf", "min_df", "normalize",
                 "random_state")
        params = {k: config[k] for k in names if k in config}
        if "ngram_range" in params:
            params["ngram_range"] = tuple(params["ngram_range"])
        return cls(**params)

    def __repr__(self) -> str:
        names = ("max_features", "n_components", "ngram_range", "sublinear_tf", "min_df", "normalize",
                 "random_state")
        args = ", ".join(f"{k}={getattr(self, k)!r}" for k in names)
        return f"TextFeaturizer({args})"

    # -- fitting --------------------------------------------------------------------------
    def fit(self, texts: Sequence[str]) -> "TextFeaturizer":
        """Learn vocabulary, idf weights and the SVD projection from ``texts`` (the training split).

        Raises DataError when there are fewer than two texts or when the texts hold no word of
        two or more letters (empty vocabulary).
        """
        self.fit_transform(texts)
        return self

    def fit_transform(self, texts: Sequence[str]) -> np.ndarray:
        """:meth:`fit` then :meth:`transform` the same texts (one pass over them)."""
        from sklearn.decomposition import TruncatedSVD
        from sklearn.feature_extraction.text import TfidfVectorizer

        ngram = self._validate()
        texts = _check_texts(texts, "TextFeaturizer.fit")
        if len(texts) < 2:
            raise DataError(f"TextFeaturizer.fit needs at least 2 training texts, got {len(texts)}")
        vec = TfidfVectorizer(ngram_range=ngram, sublinear_tf=bool(self.sublinear_tf),
                              max_features=None if self.max_features is None else int(self.max_features),
                              min_df=int(self.min_df), dtype=np.float32)
        try:
            T = vec.fit_transform(texts)
        except ValueError as exc:
            if "empty vocabulary" in str(exc) or "no terms remain" in str(exc):
                raise DataError(
                    "the training texts hold no words (TF-IDF counts words of two or more letters "
                    "or digits); check that the text key points at the text, or lower min_df"
                ) from None
            raise
        vocab = len(vec.vocabulary_)
        d = max(1, min(int(self.n_components), vocab - 1, len(texts) - 1))
        svd = None
        if vocab <= 1:
            Z = T.toarray()
            ratio = 1.0
        else:
            svd = TruncatedSVD(n_components=d, algorithm="randomized", random_state=int(self.random_state))
            Z = svd.fit_transform(T)
            ratio = float(np.sum(svd.explained_variance_ratio_))
            # orient the first singular direction towards the (non-negative) TF-IDF rows, whatever
            # sign the solver returned, so that -e_1 lies away from every text
            if float(np.sum(Z[:, 0])) < 0:
                svd.components_[0] *= -1.0
                Z[:, 0] *= -1.0
        self.no_words_ = int(np.sum(np.asarray(T.getnnz(axis=1)) == 0))
        self.vectorizer_, self.svd_ = vec, svd
        self.vocabulary_size_, self.n_components_ = vocab, int(Z.shape[1])
        self.explained_variance_ratio_ = ratio
        return self._finish(Z)

    def _finish(self, Z: np.ndarray) -> np.ndarray:
        Z = np.asarray(Z, dtype=np.float64)
        if self.normalize:
            norms = np.linalg.norm(Z, axis=1, keepdims=True)
            Z = Z / np.where(norms > 1e-12, norms, 1.0)
            empty = norms[:, 0] <= 1e-12  # no known word: opposite the first singular direction
            if empty.any():
                Z[empty] = 0.0
                Z[empty, 0] = -1.0
        return np.ascontiguousarray(Z, dtype=np.float32)

    def transform(self, texts: Sequence[str]) -> np.ndarray:
        """Features of ``texts`` under the fitted vocabulary and projection.

        Returns
        -------
        ndarray of float32, shape (len(texts), n_components_)
        """
        if not hasattr(self, "vectorizer_"):
            raise ConfigError("this TextFeaturizer is not fitted yet; call fit(training_texts) first")
        texts = _check_texts(texts, "TextFeaturizer.transform")
        if not texts:
            return np.zeros((0, self.n_components_), dtype=np.float32)
        T = self.vectorizer_.transform(texts)
        Z = T.toarray() if self.svd_ is None else self.svd_.transform(T)
        return self._finish(Z)


# ----------------------------------------------------------------------------------------
# reading
# ----------------------------------------------------------------------------------------
class _DuplicateKey(ValueError):
    """A JSON object with the same key twice (raised by :func:`_unique_keys`)."""


def _unique_keys(pairs: list) -> dict:
    """``object_pairs_hook`` of the JSONL decoder: the object as a dict, refusing a repeated key."""
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set = set()
        for k, _ in pairs:
            if k in seen:
                raise _DuplicateKey(k)
            seen.add(k)
    return obj


def _short(value: Any, limit: int = 60) -> str:
    r = repr(value)
    return r if len(r) <= limit else r[: limit - 3] + "..."


def _json_kind(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "a boolean"
    if isinstance(v, (int, float)):
        return "a number"
    if isinstance(v, str):
        return "a string"
    if isinstance(v, list):
        return "a list"
    if isinstance(v, dict):
        return "an object"
    return type(v).__name__


def _valid_unicode(s: str, where: str, what: str) -> bytes:
    """UTF-8 bytes of ``s``; JSON escapes can smuggle in lone surrogates, which are not text."""
    try:
        return s.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise DataError(
            f"{where}: {what} holds an unpaired surrogate escape (\\u{ord(s[exc.start]):04x} at "
            f"character {exc.start}), which is not valid Unicode; fix or drop that line"
        ) from None


_KIND_WORDS = {"int": "an integer", "str": "a string", "bool": "a boolean"}


def _key_value(v: Any, where: str, what: str, allow_bool: bool = False) -> tuple[str, Any]:
    """A label or id: a string or an int64 (integral floats such as 1.0 count as ints); with
    ``allow_bool`` (labels) a JSON boolean is the class ``"True"`` / ``"False"`` of kind "bool"."""
    if allow_bool and isinstance(v, bool):
        return "bool", str(v)
    if isinstance(v, bool) or v is None or isinstance(v, (list, dict)):
        kinds = "strings, integers or booleans" if allow_bool else "strings or integers"
        raise DataError(f"{where}: the {what} is {_json_kind(v)} ({_short(v)}); {what}s must be {kinds}")
    if isinstance(v, float):
        if not (math.isfinite(v) and v == int(v)):
            raise DataError(f"{where}: the {what} is {_short(v)}; {what}s must be strings or integers")
        v = int(v)
    if isinstance(v, int):
        if not _INT64[0] <= v <= _INT64[1]:
            raise DataError(f"{where}: the {what} {_short(v)} does not fit in 64 bits; write it as a string")
        return "int", v
    _valid_unicode(v, where, f"the {what}")
    if len(v) > _MAX_KEY_CHARS:
        raise DataError(
            f"{where}: the {what} is {len(v):,} characters long (at most {_MAX_KEY_CHARS:,} allowed); "
            f"is the {what} key pointing at the text?"
        )
    return "str", v


def _open_lines(p: Path):
    """A binary file object over ``p``, gunzipping when the content starts with the gzip magic."""
    with open(p, "rb") as fh:
        magic = fh.read(2)
    if magic == b"\x1f\x8b":
        return gzip.open(p, "rb")
    return open(p, "rb")


#: Keys tried, in this order, for the text and the label when the caller names none.
TEXT_KEYS = ("text", "content", "review", "sentence", "body", "document", "message", "comment", "prompt",
             "question", "input", "tweet", "utterance", "title")
LABEL_KEYS = ("label", "labels", "sentiment", "category", "class", "target", "y", "intent", "topic")


def _guess_key(obj: dict, candidates: tuple, taken: set, role: str, where: str, want_string: bool) -> str:
    """The first of ``candidates`` that the first record holds (any letter case), is not ``taken``
    by another role and holds a usable value: a string for the text; a string or an integer for
    the label."""
    by_lower: dict = {}
    for k in obj:
        by_lower.setdefault(k.lower(), k)
    unusable = []
    for cand in candidates:
        k = by_lower.get(cand)
        if k is None or k in taken:
            continue
        v = obj[k]
        usable = isinstance(v, str) if want_string else isinstance(v, (str, int, float))  # bool is an int
        if usable:
            return k
        unusable.append((k, v))
    if unusable:  # e.g. a multi-label record: {"labels": ["pos", "funny"]}
        k, v = unusable[0]
        shown = repr(v) if len(repr(v)) <= 60 else repr(v)[:57] + "..."
        kind = "null" if v is None else type(v).__name__
        want = "one string" if want_string else "one string, integer or boolean"
        extra = " (multi-label records are not supported)" if not want_string and isinstance(v, (list, tuple)) else ""
        raise DataError(f"{where}: the {role} key {k!r} holds a {kind} ({shown}); each record needs {want} "
                        f"there{extra}, or name another key with {role}=<key name>")
    keys = [k if len(k) <= 40 else k[:37] + "..." for k in list(obj)[:20]]
    raise DataError(
        f"{where} has none of the usual {role} keys ({', '.join(candidates)}); keys on this line: {keys}; "
        f"name the {role} key with {role}=<key name>"
    )


class _Records:
    """Columns read from one JSONL file (one entry per data line)."""

    def __init__(self) -> None:
        self.text_key: Optional[str] = None
        self.label_key: Optional[str] = None
        self.texts: list[str] = []
        self.hashes: list[str] = []
        self.labels: list = []
        self.ids: list = []
        self.lines: list[int] = []
        self.contributors: list = []
        self.sources: list = []


def _read_jsonl(
    p: Path,
    *,
    text: Optional[str],
    label: Optional[str],
    id_col: Optional[str],
    contributor: Optional[str],
    source: Optional[str],
    max_line_bytes: int,
) -> _Records:
    """Stream ``p`` line by line into :class:`_Records`, validating each line as it comes.

    ``text`` / ``label`` None: read from the first record (:data:`TEXT_KEYS`, :data:`LABEL_KEYS`);
    the keys used are kept in ``text_key`` / ``label_key``."""
    rec = _Records()
    label_kind: Optional[tuple[str, int]] = None  # (kind, first line)
    id_kind: Optional[tuple[str, int]] = None
    seen_ids: dict = {}
    seen_extra = {contributor: False, source: False}
    first_keys: Optional[list] = None
    lineno = 0
    # raw control characters inside strings are kept verbatim; a key given twice is refused
    decoder = json.JSONDecoder(strict=False, object_pairs_hook=_unique_keys)
    try:
        fh = _open_lines(p)
    except OSError as exc:
        raise DataError(f"could not open {p}: {exc}") from None
    is_gzip = isinstance(fh, gzip.GzipFile)
    with fh:
        while True:
            try:
                raw = fh.readline(max_line_bytes + 1)
            except (OSError, EOFError, zlib.error) as exc:
                if is_gzip:
                    raise DataError(
                        f"{p}: could not decompress the gzip data after line {lineno}: {exc}; the "
                        "file is corrupt or truncated"
                    ) from None
                raise DataError(f"{p}: could not read after line {lineno}: {exc}") from None
            if not raw:
                break
            lineno += 1
            where = f"{p}, line {lineno}"
            if len(raw) > max_line_bytes and not raw.endswith(b"\n"):
                raise DataError(
                    f"{where} is longer than {max_line_bytes:,} bytes (max_line_bytes); split or "
                    "shorten that record, or raise max_line_bytes if such long texts are expected"
                )
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise DataError(
                    f"{p}: line {lineno} is not valid UTF-8 (byte 0x{raw[exc.start]:02x} at byte "
                    f"{exc.start} of the line); re-encode the file as UTF-8"
                ) from None
            if lineno == 1 and line.startswith("\ufeff"):
                line = line[1:]  # UTF-8 byte-order mark
            if not line.strip():
                continue  # blank lines (a trailing newline, a separator) are skipped
            try:
                obj = decoder.decode(line.strip())
            except json.JSONDecodeError as exc:
                raise DataError(
                    f"{where} is not valid JSON ({exc.msg}, column {exc.colno}); each line must be "
                    'one JSON object such as {"text": "...", "label": "..."}'
                ) from None
            except _DuplicateKey as exc:
                raise DataError(
                    f"{where} gives the key {_short(exc.args[0])} twice; JSON readers disagree on which value "
                    "counts (Python's keeps the last, others the first), so a poisoned line could show one label "
                    "to one tool and another to the next: remove the duplicate"
                ) from None
            except RecursionError:
                raise DataError(f"{where}: the JSON is nested too deeply to read") from None
            except ValueError as exc:  # e.g. an integer literal over Python's digit limit
                raise DataError(f"{where} could not be read as JSON: {exc}") from None
            if not isinstance(obj, dict):
                raise DataError(
                    f"{where} is {_json_kind(obj)}, not a JSON object; each line must be one object "
                    'such as {"text": "...", "label": "..."}'
                )
            if first_keys is None:
                first_keys = list(obj)
                others = {k for k in (id_col, contributor, source) if k is not None}
                if text is None:
                    text = _guess_key(obj, TEXT_KEYS, others | {label}, "text", where, want_string=True)
                if label is None:
                    label = _guess_key(obj, LABEL_KEYS, others | {text}, "label", where, want_string=False)
                rec.text_key, rec.label_key = text, label
                numeric = [k for k, v in obj.items() if k not in others | {text, label}
                           and isinstance(v, (int, float)) and not isinstance(v, bool)]
                if numeric:  # a table written as JSON Lines: its numbers are not what the audit reads
                    shown = ", ".join(repr(k) for k in numeric[:5]) + (", ..." if len(numeric) > 5 else "")
                    warnings.warn(f"{p}: the texts of key {text!r} are audited; the numeric fields ({shown}) are not "
                                  "used. To audit those fields as a table, convert the file (e.g. "
                                  "pandas.read_json(path, lines=True).to_csv(...))", UserWarning, stacklevel=4)
            for key, role in ((text, "text"), (label, "label")):
                if key not in obj:
                    keys = [k if len(k) <= 40 else k[:37] + "..." for k in list(obj)[:20]]
                    raise DataError(
                        f"{where} has no {key!r} key (the {role}); keys on this line: {keys}; name another "
                        f"key with --{role} (in Python: {role}='key name')"
                    )
            t = obj[text]
            if not isinstance(t, str):
                raise DataError(f"{where}: the text ({text!r}) is {_json_kind(t)}, not a string")
            h = hashlib.blake2b(_valid_unicode(t, where, "the text"), digest_size=16).hexdigest()
            kind, lab = _key_value(obj[label], where, "label", allow_bool=True)
            if label_kind is None:
                label_kind = (kind, lineno)
            elif kind != label_kind[0]:
                raise DataError(
                    f"{where}: the label {_short(lab if kind != 'bool' else obj[label])} is {_KIND_WORDS[kind]} but "
                    f"line {label_kind[1]}'s label is {_KIND_WORDS[label_kind[0]]}; "
                    "labels must all be integers, all strings or all booleans"
                )
            if id_col is not None:
                if id_col not in obj:
                    raise DataError(f"{where} has no {id_col!r} key (the id); every line needs an id")
                ikind, iv = _key_value(obj[id_col], where, "id")
                if id_kind is None:
                    id_kind = (ikind, lineno)
                elif ikind != id_kind[0]:
                    raise DataError(
                        f"{where}: the id {_short(iv)} is {'an integer' if ikind == 'int' else 'a string'} but "
                        f"line {id_kind[1]}'s id is {'an integer' if id_kind[0] == 'int' else 'a string'}; "
                        "ids must all be integers or all be strings"
                    )
                if iv in seen_ids:
                    raise DataError(f"{where}: the id {_short(iv)} already appears on line {seen_ids[iv]}; ids must be unique")
                seen_ids[iv] = lineno
                rec.ids.append(iv)
            for key, out in ((contributor, rec.contributors), (source, rec.sources)):
                if key is None:
                    continue
                v = obj.get(key)
                if key in obj:
                    seen_extra[key] = True
                if isinstance(v, (list, dict)):
                    raise DataError(f"{where}: {key!r} is {_json_kind(v)}; it must be a string, a number or null")
                if isinstance(v, str):
                    _valid_unicode(v, where, repr(key))
                out.append(v)
            rec.texts.append(t)
            rec.hashes.append(h)
            rec.labels.append(lab)
            rec.lines.append(lineno)
    if not rec.texts:
        raise DataError(
            f"{p} is empty (no JSON lines); expected one JSON object per line such as "
            f'{{"{text or "text"}": "...", "{label or "label"}": "..."}}'
        )
    for key, role in ((contributor, "contributor"), (source, "source")):
        if key is not None and not seen_extra[key]:
            keys = [k if len(k) <= 40 else k[:37] + "..." for k in (first_keys or [])[:20]]
            raise DataError(
                f"{role} key {key!r} appears on no line of {p}; keys on the first line: {keys}"
            )
    return rec


def _check_label_count(labels: list, p: Path) -> None:
    first = labels[0]
    for v in labels:
        if v != first:
            return
    raise DataError(f"{p}: every line has the label {_short(first)}; at least two classes are needed")


def _meta(rec: _Records, idx: np.ndarray) -> pd.DataFrame:
    n = len(idx)
    take = idx.tolist()

    def column(values: list) -> np.ndarray:
        out = np.empty(n, dtype=object)
        out[:] = [values[i] for i in take] if values else [None] * n
        return out

    return pd.DataFrame({
        "source": column(rec.sources),
        "contributor": column(rec.contributors),
        "text": column(rec.texts),
        "text_hash": column(rec.hashes),
        "line": np.asarray(rec.lines, dtype=np.int64)[idx],
    })


def _ids(rec: _Records) -> np.ndarray:
    if not rec.ids:
        return np.arange(len(rec.texts), dtype=np.int64)
    if isinstance(rec.ids[0], str):
        return np.asarray(rec.ids, dtype=str)
    return np.asarray(rec.ids, dtype=np.int64)


def _dataset(X: np.ndarray, y_idx: np.ndarray, classes: tuple, rec: _Records, idx: np.ndarray,
             ids: np.ndarray, name: str, min_classes: int):
    return _loaders._from_indices(X, y_idx[idx], classes, ids=ids[idx], meta=_meta(rec, idx),
                                  name=name, min_classes=min_classes)


def _jsonl_stem(p: Path) -> str:
    name = p.name
    for suffix in sorted(JSONL_SUFFIXES + (".json", ".gz"), key=len, reverse=True):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)] or name
    return p.stem or name


def _make_featurizer(featurizer: Any, max_features: Optional[int], n_components: int, seed: int) -> Any:
    if isinstance(featurizer, str):
        if featurizer.strip().lower() != "tfidf":
            raise ConfigError(
                f"featurizer must be 'tfidf' or an object with fit(texts) and transform(texts), got {featurizer!r}"
            )
        feat = TextFeaturizer(max_features=max_features, n_components=n_components, random_state=seed)
        feat._validate()
        return feat
    if isinstance(featurizer, TextFeaturizer):
        return copy.deepcopy(featurizer)
    if callable(getattr(featurizer, "fit", None)) and callable(getattr(featurizer, "transform", None)):
        return featurizer
    raise ConfigError(
        f"featurizer must be 'tfidf' or an object with fit(texts) and transform(texts), got "
        f"{type(featurizer).__name__}"
    )


def _warn_no_words(feat: Any, X: np.ndarray, where: Sequence[str], path: Any) -> None:
    """Warn once about texts without a word of the vocabulary (placed at -e_1 by :class:`TextFeaturizer`).
    ``where`` names each row (e.g. "line 17")."""
    if not isinstance(feat, TextFeaturizer) or not feat.normalize or X.ndim != 2 or not len(X):
        return
    empty = np.flatnonzero((X[:, 0] <= -1.0 + 1e-5) & (np.abs(X[:, 1:]).sum(axis=1) <= 1e-5))
    if not len(empty):
        return
    import warnings

    shown = ", ".join(str(where[i]) for i in empty[:3].tolist()) + (", ..." if len(empty) > 3 else "")
    warnings.warn(
        f"{path}: {len(empty)} of {len(X)} texts have no word the TF-IDF features count (empty, whitespace, "
        f"emoji or punctuation only: {shown}); they carry no content to check their labels against and are kept "
        "together, away from every other text", UserWarning, stacklevel=3)


def _features(feat: Any, texts: list, what: str, fit: bool = False) -> np.ndarray:
    if not fit:
        X = feat.transform(texts)
    elif callable(getattr(feat, "fit_transform", None)):
        X = feat.fit_transform(texts)
    else:
        feat.fit(texts)
        X = feat.transform(texts)
    X = np.asarray(X)
    if X.ndim != 2 or X.shape[0] != len(texts):
        raise DataError(
            f"the featurizer returned shape {X.shape} for the {len(texts)} {what} texts; it must return "
            "one row per text (n_texts x d)"
        )
    return X


def load_jsonl(
    path: PathLike,
    *,
    text: Optional[str] = None,
    label: Optional[str] = None,
    id_col: Optional[str] = None,
    contributor: Optional[str] = None,
    source: Optional[str] = None,
    test_size: float = 0.3,
    random_state: RandomState = 0,
    test_path: Optional[PathLike] = None,
    featurizer: Any = "tfidf",
    max_features: Optional[int] = 20000,
    n_components: int = 256,
    max_line_bytes: int = MAX_LINE_BYTES,
    return_featurizer: bool = False,
) -> Union[DatasetSplits, tuple[DatasetSplits, Any]]:
    """Load a JSON Lines text dataset (plain or gzip) as dense features plus the raw texts.

    One JSON object per line; blank lines are skipped; other keys are ignored. The file is
    read line by line (memory grows with the number of rows, never with a whole-file string).

    Parameters
    ----------
    path : str or Path
        ``.jsonl`` / ``.ndjson`` file, optionally gzip-compressed (detected from the content,
        e.g. ``.jsonl.gz``). Text must be UTF-8 (a leading byte-order mark is allowed).
    text : str, optional
        Key of the text (a JSON string; control characters and markup are kept verbatim).
        Default: the first of ``text``, ``content``, ``review``, ``sentence``, ``body``,
        ``document``, ``message``, ``comment``, ``prompt``, ``question``, ``input``, ``tweet``,
        ``utterance``, ``title`` (any letter case) that the first record holds as a string.
    label : str, optional
        Key of the label: all strings or all integers (``1.0`` counts as ``1``). Default: the
        first of ``label``, ``labels``, ``sentiment``, ``category``, ``class``, ``target``, ``y``,
        ``intent``, ``topic`` that the first record holds.
    id_col : str, optional
        Key of a unique sample id (string or integer). Default: the data line number, 0-based,
        counting only non-blank lines (0 = first record).
    contributor, source : str, optional
        Keys copied into ``meta["contributor"]`` / ``meta["source"]``; a line without the key
        gets ``None``, a key found on no line at all is an error.
    test_size : float, default=0.3
        Test fraction per class (stratified split), unless ``test_path`` is given.
    random_state : int or numpy.random.Generator, default=0
        Seeds the split and the featurizer's SVD; the same file and seed give the same result.
    test_path : str or Path, optional
        A second JSONL file (same keys) used as the test split instead of splitting.
    featurizer : "tfidf", TextFeaturizer or object, default="tfidf"
        ``"tfidf"`` builds ``TextFeaturizer(max_features, n_components)``. A
        :class:`TextFeaturizer` instance is copied and fitted (``max_features`` /
        ``n_components`` are then ignored). Any other object with ``fit(texts)`` and
        ``transform(texts) -> (n, d) array`` (e.g. a sentence-embedding wrapper) is fitted in
        place. It is always fitted on the training split only.
    max_features : int or None, default=20000
        Vocabulary size for ``"tfidf"``.
    n_components : int, default=256
        Feature dimension for ``"tfidf"`` (capped at ``vocabulary - 1`` and ``n_train - 1``).
    max_line_bytes : int, default=1048576 (1 MiB)
        Longest line accepted. A longer line raises DataError naming it (lines are never
        silently truncated: half a JSON object is not the record the contributor sent).
    return_featurizer : bool, default=False
        Also return the fitted featurizer, to transform later data (a new version of the
        file, candidate poisons) into the same feature space.

    Returns
    -------
    DatasetSplits, or (DatasetSplits, featurizer) with ``return_featurizer=True``
        ``X``: float32 ``n x d`` features; ``classes``: sorted label values; ``meta`` columns
        ``source``, ``contributor``, ``ingest_time``, ``text``, ``text_hash``, ``line``.

    Raises
    ------
    DataError
        Naming the file and the 1-based line: invalid JSON, a line that is not an object, a
        missing text/label/id key, a non-string text, a label or id that is neither a string
        nor an integer, labels or ids of mixed kinds, a repeated id, bytes that are not UTF-8,
        a line over ``max_line_bytes``, corrupt gzip data. Also: an empty file, a single
        class, a class with one sample, texts without any word.
    ConfigError
        For bad arguments (unknown featurizer, ``n_components < 1``, ...).

    Examples
    --------
    >>> import json, os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "reviews.jsonl")
    >>> rows = [{"text": f"great battery and screen {i}", "label": "pos"} for i in range(5)]
    >>> rows += [{"text": f"broken after one week {i}", "label": "neg"} for i in range(5)]
    >>> with open(path, "w", encoding="utf-8") as f:
    ...     f.writelines(json.dumps(r) + "\\n" for r in rows)
    >>> splits, feat = load_jsonl(path, test_size=0.2, return_featurizer=True)
    >>> splits.train.X.shape, splits.train.classes
    ((8, 7), ('neg', 'pos'))
    >>> splits.train.meta["text"].iloc[0] == rows[splits.train.ids[0]]["text"]
    True
    >>> feat.transform(["screen and battery"]).shape
    (1, 7)
    """
    for key, role in ((text, "text"), (label, "label")):
        if key is not None and (not isinstance(key, str) or not key):
            raise ConfigError(f"{role} must be the name of the {role} key (a non-empty string) or None, got {key!r}")
    for key, role in ((id_col, "id_col"), (contributor, "contributor"), (source, "source")):
        if key is not None and (not isinstance(key, str) or not key):
            raise ConfigError(f"{role} must be a key name (a non-empty string) or None, got {key!r}")
    if text is not None and text == label:
        raise ConfigError(f"text and label name the same key {text!r}; they must differ")
    if isinstance(max_line_bytes, bool) or not isinstance(max_line_bytes, (int, np.integer)) or max_line_bytes < 1:
        raise ConfigError(f"max_line_bytes must be a positive int, got {max_line_bytes!r}")
    max_line_bytes = int(max_line_bytes)
    rng = check_random_state(random_state)
    if test_path is None:
        check_fraction(test_size, "test_size")
    feat = _make_featurizer(featurizer, max_features, n_components, 0)  # bad options fail before reading
    p = _loaders._existing_file(path)
    read = dict(text=text, label=label, id_col=id_col, contributor=contributor, source=source,
                max_line_bytes=max_line_bytes)
    rec = _read_jsonl(p, **read)
    read.update(text=rec.text_key, label=rec.label_key)  # a test file must use the same keys
    name = _jsonl_stem(p)
    _check_label_count(rec.labels, p)
    _loaders._warn_spaced_labels(np.asarray(rec.labels, dtype=object), rec.label_key, p, stacklevel=3)
    if test_path is None:
        with _loaders._context(str(p)):
            y_idx, classes = encode_labels(np.asarray(rec.labels, dtype=object))
            train_idx, test_idx = _loaders._stratified_indices(y_idx, classes, test_size, rng)
        rec_test, y_test, p_test = rec, y_idx, p
    else:
        p_test = _loaders._existing_file(test_path)
        rec_test = _read_jsonl(p_test, **read)
        labels, labels_test = np.asarray(rec.labels, dtype=object), np.asarray(rec_test.labels, dtype=object)
        with _loaders._context(f"{p} and {p_test}"):
            classes = _loaders._shared_classes([labels, labels_test], [p.name, p_test.name])
            y_idx, _ = encode_labels(labels, classes)
            y_test, _ = encode_labels(labels_test, classes)
        train_idx = np.arange(len(rec.texts))
        test_idx = np.arange(len(rec_test.texts))
    if isinstance(featurizer, str):
        feat.random_state = seed_from(rng)  # the SVD seed follows random_state
    train_texts = [rec.texts[i] for i in train_idx.tolist()]
    test_texts = [rec_test.texts[i] for i in test_idx.tolist()]
    with _loaders._context(f"{p} (featurizing the training split)"):
        X_train = _features(feat, train_texts, "training", fit=True)
    _warn_no_words(feat, X_train, [f"line {rec.lines[i]}" for i in train_idx.tolist()], p)
    with _loaders._context(f"{p_test} (featurizing the test split)"):
        X_test = _features(feat, test_texts, "test")
    with _loaders._context(str(p)):
        train = _dataset(X_train, y_idx, classes, rec, train_idx, _ids(rec), name, min_classes=2)
    with _loaders._context(str(p_test)):
        test = _dataset(X_test, y_test, classes, rec_test, test_idx, _ids(rec_test), name, min_classes=1)
    splits = DatasetSplits(train=train, test=test, name=name, source=str(p))
    return (splits, feat) if return_featurizer else splits
