"""The audit pipeline: one call that gates a data version before it reaches training.

:func:`run_audit` takes a :class:`~mithridate.data.Dataset` (one version of a training set, with
its contributors in ``meta``) and

1. builds the representation the detectors read: the raw columns for tables; for images the
   penultimate layer of a network (the user's ``model``, or :func:`~mithridate.models.nets.
   default_classifier` trained on the data);
2. runs the detector ensemble (:class:`~mithridate.defenses.detect.ensemble.Ensemble`, members
   from the policy; by default the robust distance, kNN label consistency and confident learning) and flags
   samples with its budget-free rule;
3. writes one finding per sample: the member scores, the ensemble score, flagged or not, and
   *reasons* a person can read (``"robust-distance z=7.1; knn 0.8 of neighbours disagree"``);
4. summarises the flags overall, per class and per contributor; computes each contributor's
   reputation (:func:`~mithridate.audit.reputation.reputation_table`; with a ledger, this audit's
   counts are added to the contributor's history) and the diff against the last audited version;
5. evaluates the :class:`~mithridate.audit.policy.Policy` -> verdict ``"pass"`` / ``"fail"``;
6. with a ``ledger``, records version, samples, findings and verdict in **one** transaction
   (:meth:`mithridate.audit.ledger.Ledger.audit`): an error or Ctrl-C anywhere leaves the ledger
   unchanged;
7. with an ``out_dir``, writes ``findings.csv``, ``summary.json`` and ``report.html`` *all or
   none*: they are staged in a temporary folder beside ``out_dir`` and moved into place only after
   everything was computed (and the ledger committed).

:func:`load_for_audit` reads a whole data file (no train/test split) for an audit: CSV / TSV /
Parquet, ``.npz``, an image folder or a bundled dataset name, and remembers where every sample
came from so that :func:`mithridate.audit.sanitize.sanitize` can write a cleaned copy in the same
format.

A command-line gate is a thin wrapper::

    data = load_for_audit(path, label="label", contributor="user")
    result = run_audit(data.dataset, name="reviews", policy=Policy.from_yaml("policy.yaml"),
                       ledger=Ledger(url), out_dir="audit-out", source=str(path))
    raise SystemExit(result.exit_code)               # 0 pass, 1 fail

Examples
--------
>>> import numpy as np, pandas as pd
>>> from sklearn.datasets import load_wine
>>> from mithridate.data import Dataset
>>> X, y = load_wine(return_X_y=True)
>>> who = [f"c{i % 5}" for i in range(len(y))]
>>> ds = Dataset.from_arrays(X, y, meta=pd.DataFrame({"contributor": who}))
>>> result = run_audit(ds, name="wine", progress=False)
>>> result.verdict, result.exit_code
('pass', 0)
>>> list(result.findings.columns[:4])
['id', 'label', 'contributor', 'source']
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import shutil
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping, Optional, Sequence, Union

import numpy as np
import pandas as pd

from mithridate.audit.policy import Policy, PolicyResult
from mithridate.data.dataset import Dataset
from mithridate.errors import ConfigError, DataError, MithridateError
from mithridate.utils import RandomState, check_random_state, json_safe, seed_from

__all__ = ["AuditResult", "AuditInput", "Policy", "PolicyResult", "run_audit", "load_for_audit", "audit_samples",
           "resolve_policy", "write_outputs", "OUTPUT_FILES", "FEATURE_MODES"]

#: Files written to ``out_dir``.
OUTPUT_FILES = ("findings.csv", "summary.json", "report.html")
#: ``features=`` values of :func:`run_audit`.
FEATURE_MODES = ("auto", "raw", "model")
#: Member z-score from which a member is named in a sample's reasons even if it did not flag it.
REASON_Z = 3.0
#: Ids listed per diff status in the summary.
DIFF_IDS = 100

PolicySpec = Union[None, Policy, str, os.PathLike, Mapping]


# -- results ------------------------------------------------------------------------------------
@dataclass
class AuditResult:
    """Everything one audit found (what the CLI prints, the report draws and the ledger stores).

    Attributes
    ----------
    name : str
        The dataset name (the ledger key).
    verdict : {"pass", "fail"}
    policy : Policy
    policy_results : list of PolicyResult
        One per check, in the policy's order; the verdict is "fail" when any failed.
    findings : DataFrame
        One row per sample, in dataset order: ``id``, ``label``, ``contributor``, ``source``,
        ``status`` (diff status against the previous version, or ``"new"`` without one),
        ``<member>_score`` for each ensemble member, ``ensemble_score``, ``ensemble_z`` (the
        ensemble's capped z, see :meth:`~mithridate.defenses.detect.ensemble.Ensemble.default_flags`),
        ``flagged``, ``flagged_by`` (members whose own rule flagged it, ``"; "``-joined) and
        ``reasons``.
    summary : dict
        JSON-safe summary (what ``summary.json`` holds and the ledger stores), see
        :func:`run_audit`.
    reputation : DataFrame
        :func:`~mithridate.audit.reputation.reputation_table` of every contributor known (this
        audit's counts, plus the ledger's history), with ``in_version`` (has samples in this
        version) and ``trend`` (flag rates of its earlier audits, oldest first).
    member_flags : DataFrame
        Each member's own flags (bool), one column per member.
    dataset : Dataset
        The audited data (for thumbnails and rows in the report).
    diff : VersionDiff or None
        Against the previous version (from the ledger, or ``previous=``).
    history : DataFrame or None
        :meth:`~mithridate.audit.ledger.Ledger.contributor_history` before this audit.
    roni : DataFrame or None
        RONI's batch table (one row per contributor) when the policy asks for RONI.
    audit_id, version : int or None
        The ledger's audit id and version number (None without a ledger).
    outputs : dict
        ``{"findings": Path, "summary": Path, "report": Path}`` when ``out_dir`` was given.
    """

    name: str
    verdict: str
    policy: Policy
    policy_results: list
    findings: pd.DataFrame
    summary: dict
    reputation: pd.DataFrame
    member_flags: pd.DataFrame
    dataset: Dataset
    diff: Any = None
    history: Optional[pd.DataFrame] = None
    roni: Optional[pd.DataFrame] = None
    audit_id: Optional[int] = None
    version: Optional[int] = None
    outputs: dict = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return self.verdict == "pass"

    @property
    def exit_code(self) -> int:
        """The CLI's exit status: 0 when the policy passed, 1 when it failed."""
        return 0 if self.passed else 1

    @property
    def flagged_ids(self) -> list:
        """Ids of the flagged samples, most suspicious first."""
        f = self.findings[self.findings["flagged"]]
        return f.sort_values("ensemble_score", ascending=False, kind="stable")["id"].tolist()

    @property
    def failed(self) -> list:
        """The policy checks that failed."""
        return [r for r in self.policy_results if not r.passed]

    def __repr__(self) -> str:
        s = self.summary
        return (f"AuditResult(name={self.name!r}, verdict={self.verdict!r}, n={s.get('n_samples')}, "
                f"flagged={s.get('n_flagged')}, failed={[r.name for r in self.failed]})")


@dataclass(frozen=True)
class AuditInput:
    """A whole data file loaded for an audit, and where each sample came from.

    Attributes
    ----------
    dataset : Dataset
        Every sample of the file (tables: every row, in file order).
    kind : {"table", "jsonl", "npz", "images", "builtin"}
    path : Path or None
        The file or folder read (None for a bundled dataset).
    format : str
        ``"csv"``, ``"tsv"``, ``"parquet"``, ``"jsonl"``, ``"npz"``, ``"images"`` or ``"builtin"``.
    rows : ndarray of int
        Tables: the data-row number of each sample (0 = first row after the header); JSON Lines:
        the 1-based line number in the file; npz: the
        index into the audited arrays; images: position in ``files``.
    npz_split : str or None
        ``"x"`` (x/y archive) or ``"x_train"`` (ready split: the training part is audited).
    files : tuple of Path
        Images: the file of each sample (absolute).
    image_root : Path or None
        Images: the folder the ids are relative to.
    options : dict
        The loading options used (label, id column ...), recorded in manifests.
    """

    dataset: Dataset
    kind: str
    path: Optional[Path]
    format: str
    rows: np.ndarray
    npz_split: Optional[str] = None
    files: tuple = ()
    image_root: Optional[Path] = None
    options: dict = field(default_factory=dict)


# -- loading whole files ------------------------------------------------------------------------
def load_for_audit(
    data: Union[str, os.PathLike],
    *,
    label: Optional[str] = None,
    features: Optional[Sequence[str]] = None,
    id_col: Optional[str] = None,
    contributor: Optional[str] = None,
    source: Optional[str] = None,
    text_col: Optional[str] = None,
    image_col: Optional[str] = None,
    size: Optional[Union[int, tuple]] = None,
    grayscale: Optional[bool] = None,
    progress: bool = False,
) -> AuditInput:
    """Load *all* samples of a data file for an audit (no train/test split).

    Parameters
    ----------
    data : str or Path
        A ``.csv`` / ``.tsv`` (optionally ``.gz``) / ``.parquet`` table, a ``.jsonl`` text file
        (every record; TF-IDF + SVD features fitted on the whole file, see
        :mod:`mithridate.data.text`), an ``.npz`` archive (the
        ``x``/``y`` arrays, or the training part of a ready ``x_train``/``y_train``/... split),
        an image folder (``root/<class>/<image>``, or the ``train/`` part of
        ``root/train|test/<class>/<image>``), or a bundled dataset name (``"digits"``: train and
        test parts together, in id order).
    label : str
        Tables: the label column (required). JSON Lines: the label key (default ``"label"``).
    features : list of str, optional
        Tables: feature columns (default: every numeric column except label, id, contributor,
        source and text).
    id_col, contributor, source : str, optional
        Tables / JSON Lines: columns (keys) holding sample ids, contributor names and sources.
    text_col : str, optional
        Tables: a text column shown as (escaped) snippets in the report, copied into
        ``meta["display_text"]`` (not ``meta["text"]``, which tells detectors that the features
        *are* text embeddings); default: a non-numeric column named ``text``, if any. JSON Lines:
        the key of the text (default ``"text"``).
    image_col : str, optional
        Tables: a column of image paths relative to the table's folder (a manifest of images:
        file, label, vendor ...); the images are audited as an image folder would be, with the
        table's contributor/source/id columns. Absolute paths and ``..`` are refused.
    size, grayscale :
        Images (a folder, or a table with ``image_col``): as in
        :func:`~mithridate.data.loaders.load_image_folder`.
    progress : bool, default=False
        Tables over 64 MiB are read in chunks; show a progress bar on stderr while they are.

    Returns
    -------
    AuditInput

    Raises
    ------
    DataError
        Missing files or columns, empty files, one class only, corrupt or mixed-size images,
        non-numeric features ... (one line each, from the loaders).
    ConfigError
        Table options given for a non-table (or ``label`` missing for a table).

    Examples
    --------
    >>> inp = load_for_audit("wine")
    >>> len(inp.dataset), inp.kind
    (178, 'builtin')
    """
    from mithridate.data import loaders as L

    if not isinstance(data, (str, os.PathLike)):
        raise ConfigError(f"data must be a path or a dataset name, got {type(data).__name__}")
    text = os.fspath(data)
    table_opts = {"label": label, "features": features, "id_col": id_col, "contributor": contributor,
                  "source": source, "text_col": text_col, "image_col": image_col}
    p = Path(os.path.expanduser(text))
    low = p.name.lower()
    if not p.exists() and isinstance(data, str) and L._sklearn_key(text.strip().lower()) is not None:
        _refuse_options(table_opts, f"the bundled dataset {text!r}")
        splits = L.load_sklearn(text.strip().lower())
        full = _concat(splits.train, splits.test)
        return AuditInput(dataset=full, kind="builtin", path=None, format="builtin",
                          rows=np.arange(len(full)), options={"name": text})
    if not p.exists():
        raise DataError(f"file not found: {p}")
    if p.is_dir():
        if any(table_opts[k] is not None for k in ("contributor", "source", "id_col", "label")):
            given = [k for k in ("label", "id_col", "contributor", "source") if table_opts[k] is not None]
            raise ConfigError(
                f"{', '.join(given)} {'applies' if len(given) == 1 else 'apply'} only to tables, not to the image "
                f"folder {p} (its class folders are the labels, its paths the ids); to give contributors or sources, "
                "write a manifest CSV next to the images (file,label,contributor: one row per image, paths relative "
                "to the CSV) and audit it with --images file --label label --contributor contributor")
        _refuse_options(table_opts, f"the image folder {p}")
        return _load_images(p, size=size, grayscale=grayscale)
    if image_col is not None and not low.endswith(L._TABLE_SUFFIXES):
        raise ConfigError("image_col applies to tables (a CSV/TSV/Parquet manifest of image paths) only")
    if (size is not None or grayscale is not None) and image_col is None:
        raise ConfigError("size and grayscale apply to images only (an image folder, or a table with image_col)")
    if low.endswith(".npz"):
        _refuse_options(table_opts, f"the npz archive {p}")
        return _load_npz_full(p)
    from mithridate.data.text import JSONL_SUFFIXES

    if low.endswith(JSONL_SUFFIXES):
        if features is not None:
            raise ConfigError("features apply to tables only; JSON Lines are featurised from their text")
        return _load_jsonl_full(p, label=label, text=text_col, id_col=id_col,
                                contributor=contributor, source=source)
    if low.endswith(L._TABLE_SUFFIXES):
        return _load_table_full(p, label=label, features=features, id_col=id_col, contributor=contributor,
                                source=source, text_col=text_col, image_col=image_col, size=size,
                                grayscale=grayscale, progress=progress)
    raise DataError(f"cannot tell how to audit {p}; give a .csv, .tsv, .parquet, .jsonl or .npz file or an image folder")


def _refuse_options(opts: dict, what: str) -> None:
    given = [k for k, v in opts.items() if v is not None]
    if given:
        raise ConfigError(f"{', '.join(given)} {'applies' if len(given) == 1 else 'apply'} only to tables, not to {what}")


def _concat(a: Dataset, b: Dataset) -> Dataset:
    """Train and test parts of a bundled set back together, in id order."""
    X = np.concatenate([a.X, b.X])
    y = np.concatenate([a.y, b.y])
    ids = np.concatenate([np.asarray(a.ids), np.asarray(b.ids)])
    meta = pd.concat([a.meta, b.meta], ignore_index=True)
    order = np.argsort(ids, kind="stable") if ids.dtype.kind in "iu" else np.arange(len(ids))
    return Dataset(X=X[order], y=y[order], classes=a.classes, ids=ids[order],
                   meta=meta.iloc[order].reset_index(drop=True), name=a.name, task=a.task)


def _load_table_full(p: Path, *, label: Optional[str], features: Optional[Sequence[str]], id_col: Optional[str],
                     contributor: Optional[str], source: Optional[str], text_col: Optional[str],
                     image_col: Optional[str] = None, size: Any = None, grayscale: Optional[bool] = None,
                     progress: bool = False) -> AuditInput:
    from mithridate.data import loaders as L

    if not isinstance(label, str) or not label:
        raise ConfigError(f"{p} is a table: pass label=<name of the label column>")
    size_hw = L._check_image_options(image_col, features, (label, contributor, source, text_col), size,  # the path may be the id
                                     grayscale)
    df, p = L._read_table(p, progress=progress, text_columns=(id_col, contributor, source))
    L._need_column(df, label, "label", p)
    if image_col is not None:
        X, files = L._table_images(df, p, image_col, size_hw, grayscale)
        ds = L._table_dataset(df, p, label=label, features=[], id_col=id_col, contributor=contributor,
                              source=source, classes=None, name=L._stem(p), min_classes=2, images=X)
        if text_col is not None:  # a caption shown next to each picture in the report
            L._need_column(df, text_col, "text", p)
            ds = ds.replace(meta=ds.meta.assign(display_text=df[text_col].to_numpy(dtype=object, na_value=None)))
        opts = {"label": label, "image_col": image_col, "id_col": id_col, "contributor": contributor,
                "source": source, "text_col": text_col, "size": list(size_hw) if size_hw else None,
                "grayscale": grayscale}
        return AuditInput(dataset=ds, kind="table", path=p, format=L._table_kind(p), rows=np.arange(len(ds)),
                          files=tuple(f.resolve() for f in files),  # none: the table holds the images itself
                          image_root=p.parent.resolve() if files else None, options=opts)
    explicit_text = text_col is not None
    if explicit_text:
        L._need_column(df, text_col, "text", p)
    elif "text" in df.columns and not pd.api.types.is_numeric_dtype(df["text"].dtype) and "text" not in (
            label, id_col, contributor, source):
        text_col = "text"
    if features is not None and text_col is not None:
        named = [features] if isinstance(features, str) else [str(f) for f in features]
        if text_col in named:  # features=[the text column]: audit the texts
            if len(named) > 1:
                raise ConfigError(f"column {text_col!r} holds text: audit it alone (features=[{text_col!r}] or "
                                  "text=) or leave it out of the features; texts and numeric columns are not "
                                  "audited together")
            return _text_table(df, p, label=label, text_col=text_col, id_col=id_col, contributor=contributor,
                               source=source)
    reserved = {c for c in (label, id_col, contributor, source, text_col) if c is not None}
    if features is None:
        features, skipped = L.default_feature_columns(df, reserved, p, stacklevel=3)
        if text_col is not None and (explicit_text or not features):  # a table of texts: featurised like JSON Lines
            if features:
                warnings.warn(f"{p}: the texts of column {text_col!r} are audited; the other columns are not "
                              f"used ({L._some_names(features)})", UserWarning, stacklevel=3)
            return _text_table(df, p, label=label, text_col=text_col, id_col=id_col, contributor=contributor,
                               source=source)
        if not features:
            raise DataError(f"{p} has no numeric feature columns besides {sorted(reserved)}; encode them as numbers "
                            "first (or name a text column with text= / --text to audit texts)")
        if text_col is not None:  # found by its name beside numeric columns: say which one the audit reads
            warnings.warn(f"{p}: column {text_col!r} holds text and is shown in the report, but the audit reads the "
                          f"numeric columns ({L._some_names(features)}); pass text={text_col!r} (--text {text_col}) to "
                          "audit the texts instead", UserWarning, stacklevel=3)
        if skipped:
            L.warn_skipped_columns(df, skipped, p, stacklevel=3)
    else:
        features = [features] if isinstance(features, str) else [str(f) for f in features]
        if not features:
            raise ConfigError("features is empty; name at least one feature column or leave it as None")
        clash = [f for f in features if f in reserved]
        if clash:
            raise ConfigError(f"column {clash[0]!r} is used as a feature and as label/id/contributor/source/text")
    ds = L._table_dataset(df, p, label=label, features=list(features), id_col=id_col, contributor=contributor,
                          source=source, classes=None, name=L._stem(p), min_classes=2)
    if text_col is not None:
        ds = ds.replace(meta=ds.meta.assign(display_text=df[text_col].to_numpy(dtype=object, na_value=None)))
    opts = {"label": label, "features": list(features), "id_col": id_col, "contributor": contributor,
            "source": source, "text_col": text_col}
    return AuditInput(dataset=ds, kind="table", path=p, format=L._table_kind(p), rows=np.arange(len(ds)), options=opts)


def _featurize_texts(texts: list, p: Path, where: Sequence[str]) -> np.ndarray:
    """TF-IDF + SVD features of the audited texts (JSON Lines, or a table's text column); ``where``
    names each text for the warning about texts without words ("line 17", "data row 3")."""
    from mithridate.data import loaders as L
    from mithridate.data import text as T

    feat = T._make_featurizer("tfidf", 20000, 256, 0)
    with L._context(f"{p} (featurizing the texts)"):
        X = np.asarray(T._features(feat, texts, "audited", fit=True), dtype=np.float32)
    T._warn_no_words(feat, X, where, p)
    return X


def _text_table(df: pd.DataFrame, p: Path, *, label: str, text_col: str, id_col: Optional[str],
                contributor: Optional[str], source: Optional[str]) -> AuditInput:
    """A table whose only feature is a text column (reviews.csv: review, sentiment)."""
    import hashlib

    from mithridate.data import loaders as L

    col = df[text_col]
    missing = col.isna().to_numpy()
    texts = ["" if m else str(v) for v, m in zip(col.tolist(), missing)]
    if not any(t.strip() for t in texts):
        raise DataError(f"text column {text_col!r} in {p} is empty in every row; name the column that holds the "
                        "texts (--text)")
    hashes = [hashlib.blake2b(t.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest() for t in texts]
    X = _featurize_texts(texts, p, [f"data row {i + 1}" for i in range(len(texts))])
    ds = L._table_dataset(df, p, label=label, features=[], id_col=id_col, contributor=contributor, source=source,
                          classes=None, name=L._stem(p), min_classes=2, images=X)
    ds = ds.replace(meta=ds.meta.assign(text=np.array(texts, dtype=object), text_hash=np.array(hashes, dtype=object)))
    opts = {"label": label, "text_col": text_col, "id_col": id_col, "contributor": contributor, "source": source,
            "featurizer": "tfidf"}
    return AuditInput(dataset=ds, kind="table", path=p, format=L._table_kind(p), rows=np.arange(len(ds)), options=opts)


def _load_jsonl_full(p: Path, *, label: Optional[str], text: Optional[str], id_col: Optional[str], contributor: Optional[str],
                     source: Optional[str]) -> AuditInput:
    """Every record of a JSON Lines file, featurised with TF-IDF + SVD fitted on all of them."""
    from mithridate.data import loaders as L
    from mithridate.data import text as T
    from mithridate.data.dataset import encode_labels

    if text is not None and text == label:
        raise ConfigError(f"text and label name the same key {text!r}; they must differ")
    rec = T._read_jsonl(p, text=text, label=label, id_col=id_col, contributor=contributor, source=source,
                        max_line_bytes=T.MAX_LINE_BYTES)
    T._check_label_count(rec.labels, p)
    L._warn_spaced_labels(np.asarray(rec.labels, dtype=object), rec.label_key, p)
    with L._context(str(p)):
        y_idx, classes = encode_labels(np.asarray(rec.labels, dtype=object))
    X = _featurize_texts(rec.texts, p, [f"line {n}" for n in rec.lines])
    idx = np.arange(len(rec.texts))
    with L._context(str(p)):
        ds = T._dataset(np.asarray(X, dtype=np.float32), y_idx, classes, rec, idx, T._ids(rec), T._jsonl_stem(p),
                        min_classes=2)
    opts = {"label": rec.label_key, "text": rec.text_key, "id_col": id_col, "contributor": contributor,
            "source": source, "featurizer": "tfidf"}
    return AuditInput(dataset=ds, kind="jsonl", path=p, format="jsonl", rows=np.asarray(rec.lines, dtype=np.int64),
                      options=opts)


def _load_npz_full(p: Path) -> AuditInput:
    from mithridate.data import loaders as L

    reader = L._NpzReader(p)
    try:
        if "task" in reader and str(np.asarray(reader.get("task")).reshape(-1)[0]).lower() == "regression":
            raise DataError(f"{p} holds regression targets; the audit needs class labels")
        if "x_train" in reader:
            splits = L.load_npz(p)
            ds = splits.train
            return AuditInput(dataset=ds, kind="npz", path=p, format="npz", rows=np.arange(len(ds)),
                              npz_split="x_train", options={"split": "train"})
        if "x" not in reader or "y" not in reader:
            raise DataError(f"{p} holds neither x/y nor x_train/y_train/x_test/y_test (nor data/target, "
                            f"images/labels, ...); it holds: {sorted(reader.files)}")
        layout = None
        if "layout" in reader:
            layout = str(np.asarray(reader.get("layout")).reshape(-1)[0]).upper()
            if layout not in ("NCHW", "NHWC"):
                raise DataError(f"'layout' in {p} must be 'NCHW' or 'NHWC', got {layout!r}")
        X = L._npz_features(reader.get("x"), "x", p, layout)
        y, ids, is_poison = reader.get("y"), reader.get("ids"), reader.get("is_poison")
        with L._context(str(p)):
            if "classes" in reader:
                classes = L._npz_classes(reader.get("classes"), p)
                y_idx = L._npz_label_indices(y, len(classes), "y", p)
                ds = L._from_indices(X, y_idx, classes, ids=ids, is_poison=is_poison, name=L._stem(p))
            else:
                ds = Dataset.from_arrays(X, y, ids=ids, is_poison=is_poison, name=L._stem(p))
    finally:
        reader.close()
    return AuditInput(dataset=ds, kind="npz", path=p, format="npz", rows=np.arange(len(ds)), npz_split="x",
                      options={"split": "all"})


def _load_images(root: Path, *, size: Any, grayscale: Optional[bool]) -> AuditInput:
    from mithridate.data import loaders as L

    size_hw = L._check_size(size)
    train_dir = root / "train"
    base = train_dir if train_dir.is_dir() and L._collect_images(train_dir) else root
    found = L._collect_images(base, warn=True)
    if not found:
        raise DataError(f"no images found in class sub-folders of {root}; expected root/<class>/<image>")
    empty = [d.name for d in L._class_dirs(base) if d.name not in found]
    if empty:
        warnings.warn(f"{base}: class folder{'s' if len(empty) > 1 else ''} {', '.join(repr(e) for e in empty[:5])}"
                      f"{' ...' if len(empty) > 5 else ''} hold{'s' if len(empty) == 1 else ''} no images and "
                      f"{'is' if len(empty) == 1 else 'are'} left out", UserWarning, stacklevel=3)
    if base is train_dir:
        others = {d: L._collect_images(d) for d in L._class_dirs(root) if d != train_dir}
        others = {d: f for d, f in others.items() if f}
        if others:
            n = sum(len(v) for f in others.values() for v in f.values())
            warnings.warn(f"{root}: the audit reads train/ (the training set); {n:,} images in "
                          f"{', '.join(d.name + '/' for d in others)} are not audited (audit that folder on its own "
                          "if it is trained on too)", UserWarning, stacklevel=3)
    files = [(f, c) for c in sorted(found) for f in found[c]]
    X, ids, labels = L._image_set(root, files, size=size_hw, grayscale=grayscale)
    name = root.resolve().name or "images"
    with L._context(str(root)):
        ds = Dataset.from_arrays(X, labels, ids=np.asarray(ids), name=name)
    return AuditInput(dataset=ds, kind="images", path=root, format="images", rows=np.arange(len(ds)),
                      files=tuple(f.resolve() for f, _ in files), image_root=root.resolve(),
                      options={"size": list(size_hw) if size_hw else None, "grayscale": grayscale,
                               "split": "train" if base is train_dir else "all"})


# -- progress -------------------------------------------------------------------------------------
class _Steps:
    """A rich progress bar over the audit's steps, on stderr (stdout stays clean for JSON)."""

    def __init__(self, enabled: bool, total: int) -> None:
        self.enabled = enabled
        self.total = total
        self.seconds: dict = {}  # step description -> seconds (recorded with or without a bar)
        self._bar = None
        self._task = None

    def __enter__(self) -> "_Steps":
        if self.enabled:
            from rich.console import Console
            from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

            self._bar = Progress(TextColumn("audit: {task.description}"), BarColumn(),
                                 TextColumn("{task.completed}/{task.total} steps"), TimeElapsedColumn(),
                                 transient=True, console=Console(stderr=True))
            self._bar.__enter__()
            self._task = self._bar.add_task("starting", total=self.total)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._bar is not None:
            self._bar.__exit__(*exc)

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """Hide the bar while another one runs (rich < 14 allows one live display at a time)."""
        if self._bar is None:
            yield
            return
        self._bar.stop()
        try:
            yield
        finally:
            self._bar.start()

    def describe(self, description: str) -> None:
        """Change the current step's text (e.g. which detector of the step is running)."""
        if self._bar is not None:
            self._bar.update(self._task, description=description)

    @contextlib.contextmanager
    def step(self, description: str) -> Iterator[None]:
        if self._bar is not None:
            self._bar.update(self._task, description=description)
        t0 = time.perf_counter()
        yield
        self.seconds[description] = self.seconds.get(description, 0.0) + time.perf_counter() - t0
        if self._bar is not None:
            self._bar.update(self._task, advance=1)


# -- helpers --------------------------------------------------------------------------------------
def resolve_policy(policy: PolicySpec) -> Policy:
    """A :class:`Policy` from None (the default), a Policy, a YAML path or a mapping."""
    if policy is None:
        return Policy.default()
    if isinstance(policy, Policy):
        return policy
    if isinstance(policy, (str, os.PathLike)):
        return Policy.from_yaml(policy)
    if isinstance(policy, Mapping):
        return Policy.from_dict(policy)
    raise ConfigError(f"policy must be a Policy, a YAML file path or a mapping, got {type(policy).__name__}")


_json_safe = json_safe  # kept under its old name for sanitize.py


def _str_list(values: Any) -> list:
    """Contributors / sources as strings, None for missing (what the ledger stores; 3.0 is '3')."""
    from mithridate.audit.diff import _str_or_none

    return _str_or_none(values, whole_floats=True).tolist()


def audit_samples(ds: Dataset) -> pd.DataFrame:
    """The sample table the ledger and the diff see (:func:`~mithridate.audit.diff.sample_table`).

    Text datasets (``meta["text_hash"]``, from :mod:`mithridate.data.text`) are keyed by the hash
    of the text itself, not of its features: a featurizer refitted on the next version changes
    every feature vector, but not the texts.
    """
    from mithridate.audit.diff import sample_table

    table = sample_table(ds)
    if "text_hash" in ds.meta.columns and ds.meta["text_hash"].notna().all():
        table["content_hash"] = ds.meta["text_hash"].astype(str).to_numpy(dtype=object)
    return table


def _features(ds: Dataset, mode: str, model: Any, layer: str, random_state: RandomState, progress: bool,
              steps: _Steps) -> tuple:
    if mode not in FEATURE_MODES:
        raise ConfigError(f"features must be one of {FEATURE_MODES}, got {mode!r}")
    use_model = mode == "model" or (mode == "auto" and (model is not None or ds.is_image))
    if not use_model:
        rep = f"text (TF-IDF + SVD, {ds.X.shape[1]}-d)" if "text" in ds.meta.columns else "raw"
        return np.asarray(ds.X, dtype=np.float32).reshape(len(ds), -1), rep, None
    if model is None:
        from mithridate.models.nets import default_classifier

        model = default_classifier(len(ds), random_state=random_state, progress=progress)
        with steps.paused():
            model.fit(ds, n_classes=ds.n_classes, description="audit: training the feature network")
        trained = True
    else:
        from mithridate.models.wrap import as_model

        model = as_model(model)  # a plain torch.nn.Module: read through forward hooks
        if not hasattr(model, "features"):
            raise ConfigError(f"model must have a features(X, layer=...) method, got {type(model).__name__}")
        trained = False
    feats = np.asarray(model.features(ds.X, layer=layer), dtype=np.float32)
    if feats.shape[0] != len(ds):
        raise DataError(f"the model returned {feats.shape[0]} feature rows for {len(ds)} samples")
    what = f"model layer {layer!r}" + (" (default network trained on the data)" if trained else "")
    return feats.reshape(len(ds), -1), what, model


def _reasons(ens: Any, member_flags: pd.DataFrame, flags: np.ndarray, diff_table: Optional[pd.DataFrame]) -> list:
    """One readable reason string per sample (empty for unremarkable samples)."""
    n = len(flags)
    z = ens.member_z_
    raw = ens.member_scores_
    names = list(raw.columns)
    zv = {m: z[m].to_numpy() for m in names}
    rv = {m: raw[m].to_numpy() for m in names}
    # the z a member's own flag rule reads (robust distance: of its log norms), shown when it flagged
    # the sample; the ensemble's calibration of its raw score (zv) can be small for the same sample
    own = {}
    for m in names:
        zm = getattr(getattr(ens, "members_", {}).get(m), "z_", None)
        if zm is not None and np.shape(zm) == (n,):
            own[m] = np.asarray(zm, dtype=float)
    fv = {m: member_flags[m].to_numpy() for m in names}
    status = diff_table["status"].to_numpy() if diff_table is not None else None
    old_label = diff_table["old_label"].to_numpy() if diff_table is not None else None
    ez = np.asarray(ens.z_)
    out = [""] * n
    interesting = flags.copy()
    for m in names:
        interesting |= fv[m] | (zv[m] >= REASON_Z)
    if status is not None:
        interesting |= status == "relabelled"
    for i in np.flatnonzero(interesting):
        parts = []
        for m in names:
            if not (fv[m][i] or zv[m][i] >= REASON_Z):
                continue
            if m == "knn":
                parts.append(f"knn {rv[m][i]:.1f} of neighbours disagree")
            elif m == "confident-learning":
                parts.append(f"confident-learning p(label)={1 - rv[m][i]:.2f}")
            elif fv[m][i] and m in own:
                parts.append(f"{m} z={own[m][i]:.1f}")
            else:
                parts.append(f"{m} z={zv[m][i]:.1f}")
        if flags[i] and not parts:
            parts.append(f"ensemble z={ez[i]:.1f}")
        if status is not None and status[i] == "relabelled":
            parts.append(f"relabelled (was {old_label[i]!s})")
        out[i] = "; ".join(parts)
    return out


#: A class whose split sets apart at least this share of it is listed in ``summary["subpopulations"]``.
SUBPOPULATION_MIN_SHARE = 0.10


def _subpopulations(ens: Any, member_flags: pd.DataFrame, flags: np.ndarray, ds: Dataset) -> list:
    """Classes a ``"subpopulation"`` member (spectral signatures) splits in two, with the group it
    sets apart: what a backdoor's target class looks like, and also a class with two natural
    styles. Informational (no policy check reads it): the group's own flags are not votes, so a
    backdoor that is half of its class can pass the gate while its class shows up here."""
    out = []
    y = np.asarray(ds.y)
    for name, det in getattr(ens, "members_", {}).items():
        if getattr(det, "evidence", None) != "subpopulation" or name not in member_flags.columns:
            continue
        own = member_flags[name].to_numpy(bool)
        for c, info in sorted((getattr(det, "splits_", None) or {}).items()):
            if not info.get("oriented"):
                continue
            in_c = y == int(c)
            group = own & in_c
            n_c, n_g = int(in_c.sum()), int(group.sum())
            if n_c == 0 or n_g / n_c < SUBPOPULATION_MIN_SHARE:
                continue
            out.append({"detector": str(name), "class": str(ds.classes[int(c)]), "n_class": n_c, "n_group": n_g,
                        "share": n_g / n_c, "separation": float(info.get("separation", float("nan"))),
                        "n_flagged": int((group & flags).sum())})
    return sorted(out, key=lambda r: -r["share"])


def _group_shares(keys: list, flags: np.ndarray, key_name: str) -> list:
    df = pd.DataFrame({"k": pd.Series(keys, dtype=object), "f": flags.astype(np.int64)})
    df = df[df["k"].notna()]
    g = df.groupby("k", sort=True)["f"].agg(["size", "sum"])
    return [{key_name: str(k), "n": int(n), "flagged": int(s), "share": float(s) / float(n)}
            for k, (n, s) in zip(g.index.tolist(), g.to_numpy().tolist())]


def _agreement(member_flags: pd.DataFrame, flags: np.ndarray) -> dict:
    """Counts of samples flagged by both of each pair (members and the ensemble)."""
    cols = {m: member_flags[m].to_numpy(bool) for m in member_flags.columns}
    cols["ensemble"] = np.asarray(flags, bool)
    names = list(cols)
    M = np.asarray(np.stack([cols[n] for n in names]), dtype=np.int64)
    both = M @ M.T
    return {"names": names, "both": both.tolist()}


def _reputation(counts: pd.DataFrame, history_counts: Optional[pd.DataFrame], level: float,
                tested: Optional[set] = None, min_samples: int = 0, simultaneous: bool = False,
                factors: Optional[pd.DataFrame] = None) -> pd.DataFrame:
    """Reputation of every contributor known (this audit's judged counts plus the ledger's).

    ``factors`` (:func:`~mithridate.audit.reputation.class_mix_factors` of this version): each
    contributor is judged against the rate its class mix predicts, not the pooled rate.

    ``simultaneous``: ``level`` holds for the contributors the gate tests together (those in
    ``tested``, this version's, with at least ``min_samples`` judged samples; m of them): each
    interval is computed at level 1 - (1 - level) / m (Bonferroni), so that on clean data the
    chance that *any* honest contributor's interval lies above the population rate is at most
    about 1 - level, however many contributors there are. The table's attrs record
    ``level_each`` and ``n_tested``."""
    from mithridate.audit.reputation import reputation_table, simultaneous_level, with_class_mix

    if history_counts is not None and len(history_counts):
        merged = pd.concat([history_counts, counts], ignore_index=True)
        counts = merged.groupby("contributor", sort=True)[["n", "flagged"]].sum().reset_index()
    if not len(counts):
        from mithridate.audit.reputation import REPUTATION_COLUMNS

        return pd.DataFrame(columns=list(REPUTATION_COLUMNS))
    counts = with_class_mix(counts, factors)  # this version's class mix stands for each contributor's
    n_tested = 1
    if simultaneous:
        names = counts["contributor"].astype(str)
        n_tested = max(1, int(((counts["n"] >= int(min_samples)) & names.isin(tested or set())).sum()))
    level_each = simultaneous_level(level, n_tested)
    table = reputation_table(counts, level=level_each)
    table.attrs["level_each"] = level_each
    table.attrs["n_tested"] = n_tested if simultaneous else None
    return table


def _batch_reputation(who: np.ndarray, labels: Sequence[str], flags: np.ndarray, judged: np.ndarray,
                      pol: Policy) -> Optional[dict]:
    """Reputation on the samples this version brought in alone (its *batch*: new, modified and
    relabelled samples), when a ledger holds earlier versions.

    The cumulative reputation weighs a contributor's whole history, so a vendor that turns bad
    after months of clean uploads is diluted by them (a user's nightly gate: 15% of one vendor's
    new rows of one class relabelled, flagged at 18% against ~11% expected, and that vendor ranked
    7th of 8 by its history). Here each contributor's batch is judged
    against the batch's own population and class mix, with the same Beta-binomial intervals at
    a level twice as strict as the cumulative check's (``1 - (1 - level) / 2``, simultaneous over
    the batch's contributors as the policy says): the two checks together keep the chance of a
    false alarm on clean data at about 1.5 times the one check's. None when there is no batch (a
    re-audit, or no earlier version: the caller's ``has_batch``) or no contributor in it."""
    from mithridate.audit.reputation import class_mix_factors, contributor_counts

    b_who = who[judged]
    known = np.array([c is not None for c in b_who], dtype=bool)
    if not known.any():
        return None
    counts = contributor_counts(b_who, flags[judged])
    level = 1.0 - (1.0 - float(pol.credible_level)) / 2.0
    b_labels = [lab for lab, j in zip(labels, judged) if j]
    table = _reputation(counts, None, level, tested={str(c) for c in b_who[known]},
                        min_samples=pol.reputation_min_samples, simultaneous=pol.simultaneous_intervals,
                        factors=class_mix_factors(b_who, b_labels, flags[judged]))
    rows = [{"contributor": str(r.contributor), "n": int(r.n), "flagged": int(r.flagged), "rate": float(r.rate),
             "ci_lower": float(r.ci_lower), "ci_upper": float(r.ci_upper), "baseline_rate": float(r.baseline_rate),
             "above_population": bool(r.above_population), "rank": int(r.rank)} for r in table.itertuples(index=False)]
    return {"n_samples": int(judged.sum()), "n_flagged": int(flags[judged].sum()),
            "population_rate": float(table["population_rate"].iloc[0]) if len(table) else None,
            "credible_level": level, "credible_level_each": table.attrs.get("level_each", level),
            "n_contributors_tested": table.attrs.get("n_tested"), "contributors": rows}


def _trends(history: Optional[pd.DataFrame], version: Optional[int]) -> dict:
    """Contributor -> flag rates of the earlier audited versions (the last audit of each, oldest first).

    An earlier audit of the version being audited now (a re-audit) is left out: this audit stands
    for it.
    """
    out: dict = {}
    if history is not None and len(history):
        if version is not None:
            history = history[history["version"] != version]
        h = history.sort_values(["version", "audit_id"]).drop_duplicates(["version", "contributor"], keep="last")
        for who, part in h.groupby("contributor", sort=False):
            out[str(who)] = [{"version": int(v), "n": int(n), "flagged": int(k), "rate": float(k) / float(n)}
                             for v, n, k in zip(part["version"], part["n"], part["flagged"])]
    return out


# -- the audit ----------------------------------------------------------------------------------
def run_audit(
    dataset: Dataset,
    *,
    name: str,
    policy: PolicySpec = None,
    ledger: Any = None,
    model: Any = None,
    layer: str = "penultimate",
    features: str = "auto",
    previous: Any = None,
    source: Optional[str] = None,
    out_dir: Optional[Union[str, os.PathLike]] = None,
    random_state: RandomState = 0,
    progress: bool = True,
    title: Optional[str] = None,
    feature_names: Optional[Sequence[str]] = None,
) -> AuditResult:
    """Audit one version of a training set and decide whether it may be trained on.

    Parameters
    ----------
    dataset : Dataset
        The version to audit (classification labels). Contributors and sources are read from
        ``dataset.meta["contributor"]`` / ``["source"]``; a ``meta["text"]`` column is shown as
        text snippets in the report.
    name : str
        The dataset's name (the ledger key; shown in the report).
    policy : Policy, path, mapping or None
        The gate (:class:`~mithridate.audit.policy.Policy`); None: :meth:`Policy.default`; a
        path: a YAML policy file.
    ledger : Ledger, optional
        Record this audit (one transaction), diff against the last audited version of ``name``
        and merge contributor reputation with its history.
    model : object with ``features(X, layer=...)``, optional
        A trained network whose ``layer`` the detectors read (images). Default for images: the
        default network is trained on the data (:func:`~mithridate.models.nets.default_classifier`).
    layer : str, default="penultimate"
        The model layer read.
    features : {"auto", "raw", "model"}, default="auto"
        What the detectors read: ``"auto"`` = raw columns for tables, a model layer for images
        (or whenever ``model`` is given).
    previous : Dataset or sample table, optional
        Without a ledger: a previous version to diff against (``diff_versions(previous, dataset)``).
    source : str, optional
        Where this version came from (a path or URL), stored with the version in the ledger.
    out_dir : path, optional
        Write ``findings.csv``, ``summary.json`` and ``report.html`` there (all or none).
    random_state : int or Generator, default=0
        Seeds the default network and RONI.
    progress : bool, default=True
        Show a progress bar per step on stderr.
    title : str, optional
        Report title (default ``"Audit of <name>"``).
    feature_names : sequence of str, optional
        Names of a table's feature columns (``load_for_audit(...).options["features"]``): the
        report heads the suspicious rows' values with them (else ``x0, x1, ...``); kept in the
        summary as ``feature_names``.

    Returns
    -------
    AuditResult
        ``verdict``, ``exit_code`` (0 pass / 1 fail), ``findings``, ``summary`` (JSON-safe) and
        the rest; see :class:`AuditResult`. The summary holds ``dataset``, ``verdict``,
        ``n_samples``, ``n_flagged``, ``share_flagged``, ``detectors``, ``skipped_detectors``,
        ``representation``, ``member_flagged``, ``agreement``, ``classes`` (label, n, flagged,
        share), ``contributors`` (per contributor present in this version: n, flagged, share,
        n_judged, flagged_judged, posterior_mean, ci_lower, ci_upper, above_population, rank),
        ``population_rate``, ``prior``, ``diff`` (None or base_version, version, counts, ids,
        truncated, n_new_flagged), ``roni``, ``policy``, ``policy_results``, ``top_flagged``,
        ``started_at``, ``seconds_detection``, ``seconds_detectors`` (per member), ``seconds_steps``
        (per audit step, as the progress bar names them), ``ledger`` (with a ledger: url, dataset,
        version, audit_id).

    Raises
    ------
    ConfigError, DataError
        Bad arguments or data (one line); nothing is written, the ledger is unchanged.
    LedgerError
        The ledger cannot be read or written; nothing is written.

    Examples
    --------
    >>> from mithridate.audit import Ledger                                 # doctest: +SKIP
    >>> with Ledger("sqlite:///ledger.sqlite") as ledger:                   # doctest: +SKIP
    ...     result = run_audit(ds, name="loans", ledger=ledger, out_dir="audit/")
    >>> result.exit_code                                                    # doctest: +SKIP
    0
    """
    if not isinstance(dataset, Dataset):
        raise ConfigError(f"run_audit expects a mithridate Dataset, got {type(dataset).__name__}")
    if dataset.is_regression:
        raise DataError("the audit needs class labels; this dataset holds regression targets")
    if dataset.n_classes < 2 or len(np.unique(dataset.y)) < 2:
        raise DataError("the labels hold a single class; the audit needs at least two")
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(f"name must be a non-empty string (the dataset's name), got {name!r}")
    if features not in FEATURE_MODES:
        raise ConfigError(f"features must be one of {FEATURE_MODES}, got {features!r}")
    pol = resolve_policy(policy)
    if ledger is not None and previous is not None:
        raise ConfigError("pass either ledger= (diff against the last audited version) or previous=, not both")
    if ledger is not None and not hasattr(ledger, "audit"):
        raise ConfigError(f"ledger must be a mithridate.audit.Ledger, got {type(ledger).__name__}")
    out_path = None if out_dir is None else Path(out_dir)
    if out_path is not None and out_path.exists() and not out_path.is_dir():
        raise ConfigError(f"out_dir {out_path} exists and is not a folder; name a folder for the outputs")
    if out_path is not None:  # before the audit's work, not after it
        _check_out_parents(out_path)
    if ledger is not None:  # a read-only ledger is found now, not after the detectors ran
        ledger.check_writable()
        dataset, feature_names = _align_columns(ledger, name, dataset, feature_names)
    rng = check_random_state(random_state)
    n_steps = 5 + int(pol.roni) + int(out_path is not None)
    with _Steps(progress, n_steps) as steps:
        if ledger is None:
            diff = None
            if previous is not None:
                from mithridate.audit.diff import diff_versions

                old = audit_samples(previous) if isinstance(previous, Dataset) else previous
                diff = diff_versions(old, audit_samples(dataset))
            result = _audit_core(dataset, name, pol, model, layer, features, rng, progress, steps, diff=diff,
                                 history=None, history_counts=None, prev_version=None, version=None, reused=False)
            _name_features(result, dataset, feature_names)
            staged = _stage(result, out_path, title, steps) if out_path is not None else None
        else:
            staged = None
            try:
                with ledger.audit(name, audit_samples(dataset), source=source) as rec:
                    if rec.same_content_as is not None and rec.previous is not None:
                        warnings.warn(
                            f"these data are identical to version {rec.same_content_as} of {name!r}, an older version "
                            f"(a rollback?): recorded as version {rec.previous.number + 1} and compared with the latest, "
                            f"version {rec.previous.number}; samples that version lacks count as new (and as new "
                            "contributions of their contributors)", UserWarning, stacklevel=2)
                    history = history_counts = None
                    if rec.previous is not None or rec.reused_version:
                        history = ledger.contributor_history(name)
                        contrib = ledger.contributors(name)
                        history_counts = contrib[["contributor", "n", "flagged"]].copy() if len(contrib) else None
                    result = _audit_core(dataset, name, pol, model, layer, features, rng, progress, steps,
                                         diff=rec.diff, history=history, history_counts=history_counts,
                                         prev_version=rec.previous.number if rec.previous is not None else None,
                                         version=rec.previous.number + 1 if rec.previous is not None else 1,
                                         reused=rec.reused_version)
                    _name_features(result, dataset, feature_names)
                    result.summary["ledger"] = {"url": getattr(ledger, "url", None), "dataset": name,
                                                "version": result.version, "reused_version": bool(rec.reused_version),
                                                "same_content_as_version": rec.same_content_as}
                    staged = _stage(result, out_path, title, steps) if out_path is not None else None
                    with steps.step("recording the audit in the ledger"):
                        rec.add_findings(_ledger_findings(result.findings))
                        rec.finish(result.verdict, summary=result.summary, policy=pol.to_dict())
                    t_commit = time.perf_counter()
                # leaving the block committed the audit in one transaction
                steps.seconds["committing the ledger transaction"] = time.perf_counter() - t_commit
                result.audit_id = rec.result.id if rec.result is not None else None
                result.version = rec.result.version if rec.result is not None else result.version
                result.summary["ledger"]["audit_id"] = result.audit_id
            except BaseException:  # nothing recorded (or the commit failed): no output either
                _discard(staged)
                raise
        result.summary["seconds_steps"] = {k: round(v, 3) for k, v in steps.seconds.items()}
        if staged is not None:
            try:
                # rewritten with what is known only now: the last steps' timings, the ledger's audit id
                _write_summary(staged / "summary.json", result.summary)
            except BaseException:
                _discard(staged)
                raise
            result.outputs = _publish(staged, out_path)
    return result


def _align_columns(ledger: Any, name: str, ds: Dataset, names: Optional[Sequence[str]]
                   ) -> tuple[Dataset, Optional[Sequence[str]]]:
    """A table's feature columns in the order of the dataset's last audit, when the same columns
    come in another order; a warning when the columns differ.

    A sample's content hash covers its feature values in column order, so the same rows with two
    columns swapped would all count as modified (and as new samples of their contributors); the
    last audit's ``feature_names`` (summary) say which order the ledger's hashes used."""
    if names is None or ds.is_image or "text" in ds.meta.columns:
        return ds, names
    names = [str(n) for n in names]
    if len(names) != ds.n_features or len(set(names)) != len(names):
        return ds, names
    try:
        last = ledger.latest_summary(name)
    except MithridateError:
        return ds, names
    if last is None or not isinstance(last.get("feature_names"), list):
        return ds, names
    prev = [str(n) for n in last["feature_names"]]
    if prev == names:
        return ds, names
    version = int(last["_version"])
    if sorted(prev) == sorted(names):
        order = [names.index(n) for n in prev]
        warnings.warn(f"the feature columns come in another order than in version {version} of {name!r}; read in "
                      "that version's order, so that unchanged rows keep their content hashes", UserWarning,
                      stacklevel=3)
        return ds.replace(X=np.ascontiguousarray(np.asarray(ds.X)[:, order])), prev
    gone = [n for n in prev if n not in names]
    new = [n for n in names if n not in prev]
    what = "; ".join(part for part in (
        f"gone: {', '.join(repr(n) for n in gone[:5])}{' ...' if len(gone) > 5 else ''}" if gone else "",
        f"new: {', '.join(repr(n) for n in new[:5])}{' ...' if len(new) > 5 else ''}" if new else "") if part)
    same_count = len(prev) == len(names)
    warnings.warn(
        f"the feature columns differ from version {version} of {name!r} ({what}). "
        + ("A renamed column with the same values keeps every content hash (the diff cannot see it); "
           if same_count else "Every row's content hash changes, so the diff counts every row as modified; ")
        + "name the columns with --features to audit the same ones as before", UserWarning, stacklevel=3)
    return ds, names


def _name_features(result: "AuditResult", ds: Dataset, names: Optional[Sequence[str]]) -> None:
    """Record a table's feature column names in the summary (when they fit its columns)."""
    if names is None or ds.is_image or "text" in ds.meta.columns:
        return
    names = [str(n) for n in names]
    if len(names) == ds.n_features:
        result.summary["feature_names"] = names


def _audit_core(ds: Dataset, name: str, pol: Policy, model: Any, layer: str, feature_mode: str,
                rng: np.random.Generator, progress: bool, steps: _Steps, *, diff: Any,
                history: Optional[pd.DataFrame], history_counts: Optional[pd.DataFrame],
                prev_version: Optional[int], version: Optional[int], reused: bool) -> AuditResult:
    from mithridate.audit.reputation import class_mix_factors, contributor_counts
    from mithridate.defenses.detect.ensemble import Ensemble

    started = _dt.datetime.now(_dt.timezone.utc)
    t0 = time.perf_counter()
    with steps.step("computing features"):
        feats, representation, feature_model = _features(ds, feature_mode, model, layer, seed_from(rng), progress,
                                                         steps)
    learnt = feature_model is not None
    ens = Ensemble(detectors=pol.detectors, member_params=pol.detector_parameters)
    with steps.step(f"running detectors ({', '.join(map(str, ens.member_names(learnt)))})"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # skipped members are reported in the summary
            ens.fit(ds, feature_model, features=feats, learnt=learnt,
                    on_member=lambda m, i, n: steps.describe(f"running detectors: {m} ({i + 1} of {n})"))
        for member, why in ens.skipped_.items():  # also in the summary and the report; say it now too
            warnings.warn(f"detector {member} did not run and the audit goes on without it: {why}", UserWarning,
                          stacklevel=2)
        flags = np.asarray(ens.default_flags(), dtype=bool)
        member_flags = ens.member_flags()
    roni_table = None
    contributors = _str_list(ds.meta["contributor"]) if "contributor" in ds.meta.columns else [None] * len(ds)
    has_contrib = any(c is not None for c in contributors)
    if pol.roni:
        with steps.step("RONI by contributor"):
            roni_table = _run_roni(ds, feats, rng) if has_contrib else None
    with steps.step("summarising findings and reputation"):
        labels = [str(v) for v in ds.labels.tolist()]
        sources = _str_list(ds.meta["source"]) if "source" in ds.meta.columns else [None] * len(ds)
        diff_table = diff.table if diff is not None else None
        status = diff_table["status"].tolist() if diff_table is not None else ["new"] * len(ds)
        findings = pd.DataFrame({"id": np.asarray(ds.ids), "label": labels,
                                 "contributor": pd.Series(contributors, dtype=object),
                                 "source": pd.Series(sources, dtype=object), "status": status})
        for m in ens.member_scores_.columns:
            findings[f"{m}_score"] = ens.member_scores_[m].to_numpy()
        findings["ensemble_score"] = np.asarray(ens.scores_, dtype=float)
        findings["ensemble_z"] = np.asarray(ens.z_, dtype=float)
        findings["flagged"] = flags
        mf = member_flags.to_numpy(bool)
        mnames = list(member_flags.columns)
        findings["flagged_by"] = ["; ".join(mnames[j] for j in np.flatnonzero(row)) for row in mf]
        findings["reasons"] = _reasons(ens, member_flags, flags, diff_table)

        # reputation: this audit's counts (samples this version brought in when a ledger judged the rest)
        if history_counts is not None and len(history_counts) and diff is not None:
            judged = np.zeros(len(ds), bool) if reused else np.asarray(diff.changed, bool)
        else:
            judged = np.ones(len(ds), bool)
        who = np.asarray(contributors, dtype=object)
        counts = contributor_counts(who[judged], flags[judged]) if judged.any() else contributor_counts([], [])
        rep = _reputation(counts, history_counts, pol.credible_level,
                          tested={str(c) for c in contributors if c is not None},
                          min_samples=pol.reputation_min_samples, simultaneous=pol.simultaneous_intervals,
                          factors=class_mix_factors(contributors, labels, flags))
        # this version's batch (new, modified, relabelled samples) beside a ledger's earlier versions
        has_batch = history_counts is not None and bool(judged.any()) and not bool(judged.all())
        batch = _batch_reputation(who, labels, flags, judged, pol) if has_batch else None
        present = _group_shares(contributors, flags, "contributor")
        by_name = {r["contributor"]: r for r in present}
        trends = _trends(history, version)
        rep = rep.copy()
        rep["in_version"] = [str(c) in by_name for c in rep["contributor"]]
        rep["trend"] = [[t["rate"] for t in trends.get(str(c), [])] for c in rep["contributor"]]
        contrib_rows = []
        for r in rep.itertuples(index=False):
            cur = by_name.pop(str(r.contributor), None)
            if cur is None:
                continue
            contrib_rows.append({
                "contributor": str(r.contributor), "n": cur["n"], "flagged": cur["flagged"], "share": cur["share"],
                "n_judged": int(r.n), "flagged_judged": int(r.flagged), "rank": int(r.rank),
                "posterior_mean": float(r.posterior_mean), "ci_lower": float(r.ci_lower), "ci_upper": float(r.ci_upper),
                "prob_above": float(r.prob_above), "above_population": bool(r.above_population),
                "population_rate": float(r.population_rate), "baseline_rate": float(r.baseline_rate),
                "trend": trends.get(str(r.contributor), []),
            })
        # contributors of this version with no reputation yet: none of their samples is new to the
        # ledger and no earlier audit judged samples under their name (e.g. a renamed contributor);
        # their shares in this version still count for the per-contributor limit
        for name, cur in by_name.items():
            contrib_rows.append({
                "contributor": name, "n": cur["n"], "flagged": cur["flagged"], "share": cur["share"],
                "n_judged": 0, "flagged_judged": 0, "rank": None, "posterior_mean": None, "ci_lower": None,
                "ci_upper": None, "prob_above": None, "above_population": False, "population_rate": None,
                "baseline_rate": None,
                "trend": trends.get(name, []),
            })
        classes = _group_shares(labels, flags, "label")
        subpops = _subpopulations(ens, member_flags, flags, ds)
        concentration = None
        if has_contrib and pol.max_concentration_p is not None:
            from mithridate.audit.concentration import concentration_test

            concentration = concentration_test(
                findings["ensemble_score"].to_numpy(), contributors, labels, n_flagged=int(flags.sum()),
                random_state=rng).to_dict()
        batch_conc = None
        if has_contrib and pol.max_concentration_p is not None and has_batch:
            # the same test on this version's new and changed samples alone (see _batch_reputation:
            # a vendor turning bad is diluted by the whole version; the policy halves the limit)
            from mithridate.audit.concentration import concentration_test

            j = np.flatnonzero(judged)
            b_who = [contributors[i] for i in j]
            if any(c is not None for c in b_who):
                batch_conc = concentration_test(
                    findings["ensemble_score"].to_numpy()[j], b_who, [labels[i] for i in j],
                    n_flagged=int(flags[j].sum()), random_state=rng).to_dict()
                batch_conc["n_samples"] = int(len(j))
        diff_summary = None
        if diff is not None:
            d = diff.to_dict(max_ids=DIFF_IDS)
            st = np.asarray(status, dtype=object)
            d["base_version"] = prev_version
            d["version"] = version
            d["n_new_flagged"] = int(flags[st == "new"].sum())
            d["n_relabelled_flagged"] = int(flags[st == "relabelled"].sum())
            d["relabelled"] = _json_safe(diff.relabelled.head(DIFF_IDS).to_dict(orient="records"))
            if has_contrib:  # who sent the relabelled samples (a relabelling vendor is a classic signal)
                sender = {str(i): c for i, c, s_ in zip(ds.ids, contributors, st) if s_ == "relabelled"}
                for rec in d["relabelled"]:
                    rec["contributor"] = sender.get(str(rec.get("id")))
                by = pd.Series([c for c, s_ in zip(contributors, st) if s_ == "relabelled" and c is not None],
                               dtype=object).value_counts()
                d["relabelled_by_contributor"] = {str(k): int(v) for k, v in by.head(20).items()}
            diff_summary = d
        top = findings[findings["flagged"]].sort_values("ensemble_score", ascending=False, kind="stable")
        summary = {
            "dataset": name,
            "n_samples": len(ds),
            "n_flagged": int(flags.sum()),
            "share_flagged": float(flags.mean()),
            "n_classes": int(ds.n_classes),
            "is_image": bool(ds.is_image),
            "representation": representation,
            "detectors": list(ens.member_scores_.columns),
            "skipped_detectors": dict(ens.skipped_),
            "member_flagged": {m: int(member_flags[m].sum()) for m in member_flags.columns},
            "agreement": _agreement(member_flags, flags),
            "classes": classes,
            "subpopulations": subpops,
            "contributors": contrib_rows,
            "n_contributors": len(present),
            "n_without_contributor": int(sum(c is None for c in contributors)),
            "population_rate": float(rep["population_rate"].iloc[0]) if len(rep) else None,
            "prior": rep.attrs.get("prior"),
            "concentration": concentration,
            "batch_concentration": batch_conc,
            "credible_level": pol.credible_level,
            "credible_level_each": rep.attrs.get("level_each", pol.credible_level),
            "n_contributors_tested": rep.attrs.get("n_tested"),
            "batch_reputation": batch,
            "diff": diff_summary,
            "roni": None if roni_table is None else roni_table.to_dict(orient="records"),
            "top_flagged": [str(i) for i in top["id"].head(20).tolist()],
            "started_at": started.isoformat(),
        }
        summary = _json_safe(summary)
        results = pol.evaluate(summary)
        verdict = "pass" if all(r.passed for r in results) else "fail"
        summary["verdict"] = verdict
        summary["policy"] = pol.to_dict()
        summary["policy_results"] = [r.to_dict() for r in results]
        summary["seconds_detection"] = time.perf_counter() - t0
        summary["seconds_detectors"] = dict(getattr(ens, "seconds_", {}))
        summary = _json_safe(summary)
    return AuditResult(name=name, verdict=verdict, policy=pol, policy_results=results, findings=findings,
                       summary=summary, reputation=rep, member_flags=member_flags, dataset=ds, diff=diff,
                       history=history, roni=roni_table, version=version)


def _run_roni(ds: Dataset, feats: np.ndarray, rng: np.random.Generator) -> Optional[pd.DataFrame]:
    from mithridate.defenses.detect.roni import RONIDetector

    det = RONIDetector(batch_by="contributor", random_state=seed_from(rng))
    try:
        det.fit(ds, features=feats)
    except (ConfigError, DataError) as exc:
        warnings.warn(f"RONI could not run: {exc}", UserWarning, stacklevel=3)
        return None
    return det.batch_table()


def _ledger_findings(findings: pd.DataFrame) -> pd.DataFrame:
    """What the ledger stores: id, score, flagged, reasons and one score per detector."""
    det = {c[: -len("_score")]: findings[c] for c in findings.columns
           if c.endswith("_score") and c != "ensemble_score"}
    return pd.DataFrame({"id": findings["id"], "score": findings["ensemble_score"], "flagged": findings["flagged"],
                         "reasons": findings["reasons"], **det})


# -- outputs: staged, then published --------------------------------------------------------------
def _write_summary(path: Path, summary: Mapping) -> None:
    path.write_text(json.dumps(_json_safe(summary), indent=2, allow_nan=False) + "\n", encoding="utf-8")


def _check_out_parents(out_dir: Path) -> None:
    """A file where the output folder's parent folders should be is a usage error."""
    blocking = next((a for a in Path(out_dir).resolve().parents if a.exists() and not a.is_dir()), None)
    if blocking is not None:
        raise ConfigError(f"cannot create the output folder {out_dir}: {blocking} is a file, not a folder")


def _stage(result: AuditResult, out_dir: Path, title: Optional[str], steps: _Steps) -> Path:
    """Write the three outputs into a fresh temporary folder beside ``out_dir``."""
    from mithridate.report.audit_report import render_audit_report

    parent = out_dir.resolve().parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        _check_out_parents(out_dir)
        raise ConfigError(f"cannot create {parent}: {exc.strerror}") from None
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".part", dir=parent))
    try:
        with steps.step("writing findings.csv, summary.json, report.html"):
            result.findings.to_csv(staging / "findings.csv", index=False)
            _write_summary(staging / "summary.json", result.summary)
            html = render_audit_report(result, title=title)
            (staging / "report.html").write_text(html, encoding="utf-8")
    except BaseException:
        _discard(staging)
        raise
    return staging


def _discard(staging: Optional[Path]) -> None:
    if staging is not None and staging.exists():
        shutil.rmtree(staging, ignore_errors=True)


def _publish(staging: Path, out_dir: Path) -> dict:
    """Move the staged files into ``out_dir`` (a rename of the whole folder when it is new)."""
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(staging, 0o777 & ~umask)
        if not out_dir.exists():
            os.rename(staging, out_dir)
        else:
            for f in OUTPUT_FILES:
                os.replace(staging / f, out_dir / f)
            shutil.rmtree(staging, ignore_errors=True)
    except BaseException:
        _discard(staging)
        raise
    return {"findings": out_dir / "findings.csv", "summary": out_dir / "summary.json",
            "report": out_dir / "report.html"}


def write_outputs(result: AuditResult, out_dir: Union[str, os.PathLike], *, title: Optional[str] = None) -> dict:
    """Write ``findings.csv``, ``summary.json`` and ``report.html`` of a finished audit (all or none).

    :func:`run_audit` does this itself when given ``out_dir``; use this to write a result again
    elsewhere.

    Returns
    -------
    dict
        ``{"findings": Path, "summary": Path, "report": Path}``.
    """
    out_path = Path(out_dir)
    if out_path.exists() and not out_path.is_dir():
        raise ConfigError(f"out_dir {out_path} exists and is not a folder; name a folder for the outputs")
    staged = _stage(result, out_path, title, _Steps(False, 1))
    result.outputs = _publish(staged, out_path)
    return result.outputs
