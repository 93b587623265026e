"""What changed between two versions of a training set: new, removed, relabelled, modified.

Poisoning usually arrives as a *change*: samples that were not there before, or old samples
that come back with another label. :func:`diff_versions` compares the sample table of the last
audited version (``old``) with the new one and gives every sample of the new version exactly one
status, plus the list of old samples that are gone.

A sample is keyed by its **id** (the user's stable sample id, compared as a string) and its
**content hash** (BLAKE2b of the feature bytes, :attr:`mithridate.data.Dataset.content_hashes`,
or whatever hash the caller's table carries). Labels are compared as strings. The rules, applied
in this order to each sample ``s`` of the new version:

1. ``s.id`` is an id of the old version (the *id match* takes precedence), old row ``o``:

   * ``o.content_hash == s.content_hash`` and ``o.label == s.label``: **unchanged**;
   * ``o.content_hash == s.content_hash`` and ``o.label != s.label``: **relabelled**
     (same content, another label: the classic label-flip signal);
   * ``o.content_hash != s.content_hash``: **modified** (the content behind an id changed;
     whether the label changed too is visible in ``old_label`` / ``label``).

2. ``s.id`` is not an old id:

   * some old sample has the same content hash *and* the same label: **duplicate** (a renamed
     sample, or an extra copy of known content; not counted as new);
   * some old sample has the same content hash but none with this label: **relabelled**
     (known content under a new id and a label it never had: a relabelled re-upload);
   * the content hash is not in the old version: **new**.

3. An old sample whose id is not in the new version is **removed** (even when its content
   survives under another id: that copy is then a *duplicate*).

Data without ids. When the ids of *both* versions are their row numbers ``0 .. n-1`` (what the
loaders give a file without an id column), an id names a position, not a sample: after rows are
removed, every later row would be "modified". Such versions are paired by content instead: a new
sample with the content hash *and* label of an old one not yet paired is **unchanged** (copy for
copy), then one with the content hash of a remaining old sample is **relabelled**, then extra
copies of known content are **duplicate** (or relabelled, under a label the content never had),
the rest **new**; old samples left unpaired are **removed**. Nothing is **modified** (without ids
an edited sample is a new one, and its old self is removed). ``VersionDiff.matched_by`` says which
pairing was used.

Duplicated content hashes: within one version several samples may share a content hash (exact
duplicates, possibly with conflicting labels). For rule 2, "some old sample" means any of them,
so content that the old version already held under labels ``{a, b}`` is a *duplicate* when it
comes back labelled ``a`` or ``b`` and *relabelled* otherwise; ``old_id`` / ``old_label`` then
name the first such old sample in the old version's row order. Conflicts *inside* one version
are not a diff matter: the duplicates detector scores them.

Samples that a version *brought in* (``new``, ``modified`` and ``relabelled``, see
:data:`CHANGED`) are what the ledger counts towards each contributor's reputation.

Examples
--------
>>> import pandas as pd
>>> old = pd.DataFrame({"id": ["a", "b", "c", "d"], "content_hash": ["h1", "h2", "h3", "h4"],
...                     "label": ["cat", "dog", "cat", "dog"]})
>>> new = pd.DataFrame({"id": ["a", "b", "d", "e", "f"], "content_hash": ["h1", "h2", "h9", "h3", "h7"],
...                     "label": ["cat", "cat", "dog", "cat", "dog"]})
>>> d = diff_versions(old, new)
>>> d.counts
{'new': 1, 'removed': 1, 'relabelled': 1, 'modified': 1, 'duplicate': 1, 'unchanged': 1, 'n_old': 4, 'n_new': 5}
>>> d.relabelled_ids, d.modified_ids, d.new_ids, d.removed_ids, d.duplicate_ids
(['b'], ['d'], ['f'], ['c'], ['e'])
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Union

import numpy as np
import pandas as pd

from mithridate.data.dataset import Dataset
from mithridate.errors import DataError

#: Statuses a sample of the new version can have, in the order of the counts.
STATUSES = ("new", "relabelled", "modified", "duplicate", "unchanged")
#: Statuses of samples that a version brought in (counted towards contributor reputation).
CHANGED = ("new", "modified", "relabelled")
#: Columns of a sample table (``contributor`` and ``source`` may be missing / None).
SAMPLE_COLUMNS = ("id", "content_hash", "label", "contributor", "source")

SampleData = Union[Dataset, pd.DataFrame]


def _to_str(v: Any) -> Optional[str]:
    if type(v) is str:
        return v if v.strip() else None  # str.strip() returns the same object when nothing is stripped
    if v is None or v is pd.NA or v is pd.NaT or (isinstance(v, float) and v != v):
        return None
    s = str(v)
    return s if s.strip() else None


def _whole_float_str(v: Any) -> Optional[str]:
    """:func:`_to_str`, but a float with a whole value is written as an integer (3.0 -> '3')."""
    if isinstance(v, float) and v == v and v not in (float("inf"), float("-inf")) and v.is_integer():
        return str(int(v))
    return _to_str(v)


def _str_or_none(values: Any, *, intern: bool = False, whole_floats: bool = False) -> np.ndarray:
    """Strings, with None for missing/empty values (NaN, None, pd.NA, '' and whitespace).

    ``intern=True`` makes equal strings share one object (labels, contributors: few distinct
    values over many rows), which keeps a million-row table small. ``whole_floats=True`` writes
    3.0 as '3': an integer column with one blank cell is read as floats, and its names (a
    contributor ``3``) must not change with it.
    """
    if isinstance(values, np.ndarray) and values.dtype.kind in "iu":
        out = np.empty(len(values), dtype=object)
        out[:] = [str(v) for v in values.tolist()]
        return out
    vals = values.tolist() if hasattr(values, "tolist") else list(values)
    conv = [(_whole_float_str if whole_floats else _to_str)(v) for v in vals]
    if intern:
        cache: dict = {}
        conv = [None if v is None else cache.setdefault(v, v) for v in conv]
    out = np.empty(len(conv), dtype=object)
    out[:] = conv
    return out


def _strings(values: Any, what: str, *, intern: bool = False) -> np.ndarray:
    out = _str_or_none(values, intern=intern)
    missing = np.flatnonzero(pd.isna(out))
    if len(missing):
        raise DataError(f"sample table: column {what!r} has {len(missing)} missing values (first: row {missing[0]})")
    return out


def sample_table(data: SampleData) -> pd.DataFrame:
    """The sample table of a dataset: ``id``, ``content_hash``, ``label``, ``contributor``, ``source``.

    Every column holds Python strings (object dtype); ``contributor`` and ``source`` hold None
    where unknown. Extra columns of a DataFrame input (e.g. ``first_seen``) are kept.

    Parameters
    ----------
    data : Dataset or DataFrame
        A :class:`~mithridate.data.Dataset` (ids, labels as the user wrote them, content hashes
        and the ``contributor`` / ``source`` metadata columns), or a table that already has
        ``id``, ``content_hash`` and ``label`` columns (e.g. raw-file hashes computed by a loader,
        or :meth:`mithridate.audit.Ledger.samples`).

    Raises
    ------
    DataError
        For missing columns, missing values in id/content_hash/label, or duplicate ids.
    """
    if isinstance(data, Dataset):
        meta = data.meta
        n = len(data)
        if data.is_regression:
            labels = _strings(np.asarray(data.y).tolist(), "label")
        else:  # one string object per class, shared by its rows
            labels = np.empty(data.n_classes, dtype=object)
            labels[:] = [str(c) for c in data.classes]
            labels = labels[np.asarray(data.y)]
        none = np.full(n, None, dtype=object)
        table = pd.DataFrame(
            {
                "id": _strings(np.asarray(data.ids), "id"),
                "content_hash": np.asarray(data.content_hashes, dtype=object),
                "label": labels,
                "contributor": (_str_or_none(meta["contributor"], intern=True, whole_floats=True)
                                if "contributor" in meta else none),
                "source": _str_or_none(meta["source"], intern=True, whole_floats=True) if "source" in meta else none,
            },
            dtype=object,
        )
    elif isinstance(data, pd.DataFrame):
        missing = [c for c in ("id", "content_hash", "label") if c not in data.columns]
        if missing:
            raise DataError(
                f"sample table lacks column(s) {missing}; it needs id, content_hash and label "
                "(and optionally contributor, source)"
            )
        table = data.reset_index(drop=True).copy()
        for col in ("id", "content_hash", "label"):
            table[col] = pd.Series(_strings(table[col], col, intern=col == "label"), dtype=object)
        for col in ("contributor", "source"):
            vals = table[col] if col in table.columns else [None] * len(table)
            table[col] = pd.Series(_str_or_none(vals, intern=True, whole_floats=True), dtype=object)
        table = table[list(SAMPLE_COLUMNS) + [c for c in table.columns if c not in SAMPLE_COLUMNS]]
    else:
        raise DataError(f"expected a Dataset or a sample DataFrame, got {type(data).__name__}")
    dup = table["id"].duplicated()
    if dup.any():
        raise DataError(
            f"sample ids must be unique within a version (compared as strings); "
            f"{table['id'][dup].iloc[0]!r} appears more than once"
        )
    return table


@dataclass(frozen=True, eq=False)
class VersionDiff:
    """The difference between an old and a new version of a dataset (see the module docstring).

    Attributes
    ----------
    table : DataFrame
        One row per sample of the new version, in its order: ``id``, ``status`` (one of
        :data:`STATUSES`), ``label``, ``content_hash``, ``old_id`` and ``old_label`` (the old
        sample it was matched with; None for new samples).
    removed : DataFrame
        The old samples whose id is gone: ``id``, ``label``, ``content_hash``.
    n_old : int
        Samples in the old version (0 when there was none).
    matched_by : {"id", "content"}
        How samples were paired: by id, or -- when both versions' ids are their row numbers (data
        without an id column) -- by content hash and label.
    """

    table: pd.DataFrame
    removed: pd.DataFrame
    n_old: int
    matched_by: str = "id"

    def ids(self, status: str) -> list:
        """Ids with a given status (``"removed"`` lists old ids), in version order."""
        if status == "removed":
            return self.removed["id"].tolist()
        if status not in STATUSES:
            raise DataError(f"unknown diff status {status!r}; one of {list(STATUSES) + ['removed']}")
        return self.table.loc[self.table["status"] == status, "id"].tolist()

    @property
    def new_ids(self) -> list:
        return self.ids("new")

    @property
    def removed_ids(self) -> list:
        return self.ids("removed")

    @property
    def relabelled_ids(self) -> list:
        return self.ids("relabelled")

    @property
    def modified_ids(self) -> list:
        return self.ids("modified")

    @property
    def duplicate_ids(self) -> list:
        return self.ids("duplicate")

    @property
    def unchanged_ids(self) -> list:
        return self.ids("unchanged")

    @property
    def relabelled(self) -> pd.DataFrame:
        """The relabelled samples: ``id``, ``old_id``, ``old_label``, ``label``."""
        rows = self.table["status"] == "relabelled"
        return self.table.loc[rows, ["id", "old_id", "old_label", "label"]].reset_index(drop=True)

    @property
    def changed(self) -> np.ndarray:
        """Boolean mask over the new version: samples it brought in (status in :data:`CHANGED`)."""
        return self.table["status"].isin(CHANGED).to_numpy()

    @property
    def counts(self) -> dict:
        """Number of samples per status, plus ``removed``, ``n_old`` and ``n_new``."""
        vc = self.table["status"].value_counts()
        out = {s: int(vc.get(s, 0)) for s in ("new", "removed", "relabelled", "modified", "duplicate", "unchanged")}
        out["removed"] = len(self.removed)
        out["n_old"] = int(self.n_old)
        out["n_new"] = len(self.table)
        return out

    def to_dict(self, max_ids: Optional[int] = 100) -> dict:
        """A JSON-ready summary: the counts and up to ``max_ids`` ids per status.

        ``truncated`` lists the statuses whose id list was cut; ``max_ids=None`` keeps all.
        """
        out: dict = {"counts": self.counts, "matched_by": self.matched_by, "ids": {}, "truncated": []}
        for status in ("new", "removed", "relabelled", "modified", "duplicate"):
            ids = self.ids(status)
            if max_ids is not None and len(ids) > max_ids:
                out["truncated"].append(status)
                ids = ids[:max_ids]
            out["ids"][status] = ids
        return out

    def __repr__(self) -> str:
        c = self.counts
        return (
            f"VersionDiff(n_old={c['n_old']}, n_new={c['n_new']}, new={c['new']}, removed={c['removed']}, "
            f"relabelled={c['relabelled']}, modified={c['modified']}, duplicate={c['duplicate']})"
        )


def diff_versions(old: Optional[SampleData], new: SampleData) -> VersionDiff:
    """Compare two versions of a dataset sample by sample.

    Parameters
    ----------
    old : Dataset, DataFrame or None
        The previous version (a Dataset or a sample table with ``id``, ``content_hash`` and
        ``label``, e.g. :meth:`mithridate.audit.Ledger.samples`). None: there is no previous
        version and every sample is *new*.
    new : Dataset or DataFrame
        The version being audited.

    Returns
    -------
    VersionDiff
        Every new-version sample's status and the removed old samples, following the rules of
        the module docstring. Cost: a few hash joins, O(n_old + n_new).

    Examples
    --------
    >>> import numpy as np
    >>> v1 = Dataset.from_arrays(np.arange(8.0).reshape(4, 2), [0, 1, 0, 1])
    >>> y = v1.y.copy(); y[0] = 1                      # flip sample 0
    >>> v2 = v1.replace(y=y).subset([0, 1, 2])         # ... and drop sample 3
    >>> d = diff_versions(v1, v2)
    >>> d.relabelled_ids, d.removed_ids
    (['0'], ['3'])
    """
    new_t = sample_table(new)
    old_t = sample_table(old) if old is not None else None
    return _diff_tables(old_t, new_t)


def _known_content(new_t: pd.DataFrame, old_t: pd.DataFrame, rest: np.ndarray, status: np.ndarray,
                   old_id: np.ndarray, old_label: np.ndarray) -> None:
    """Rule 2 for the new samples in ``rest`` (updated in place): content the old version holds with
    the same label is a **duplicate**, content it holds only under other labels **relabelled**
    (``old_id`` / ``old_label``: the first such old sample)."""
    if not rest.any() or not len(old_t):
        return
    idx = np.flatnonzero(rest)
    keys = new_t.loc[rest, ["content_hash", "label"]]
    mp = keys.merge(old_t.drop_duplicates(["content_hash", "label"])[["content_hash", "label", "id"]],
                    on=["content_hash", "label"], how="left", sort=False)
    mh = keys[["content_hash"]].merge(old_t.drop_duplicates("content_hash")[["content_hash", "label", "id"]],
                                      on="content_hash", how="left", sort=False)
    pair_known, hash_known = mp["id"].notna().to_numpy(), mh["id"].notna().to_numpy()
    for status_name, hit, m in (("duplicate", pair_known, mp), ("relabelled", hash_known & ~pair_known, mh)):
        status[idx[hit]] = status_name
        old_id[idx[hit]] = m["id"].to_numpy(dtype=object)[hit]
        old_label[idx[hit]] = m["label"].to_numpy(dtype=object)[hit]


def _row_number_ids(t: pd.DataFrame) -> bool:
    """Are the table's ids its row numbers 0..n-1 (what loaders give data without an id column)?"""
    n = len(t)
    return n > 0 and bool((t["id"].to_numpy(dtype=object) == np.arange(n).astype(str).astype(object)).all())


def _diff_by_content(old_t: pd.DataFrame, new_t: pd.DataFrame) -> VersionDiff:
    """The diff of two versions whose ids are row numbers (see the module docstring): samples are
    paired by content hash and label, copy by copy, then by content hash alone (relabelled)."""
    n = len(new_t)
    new = new_t[["id", "content_hash", "label"]].reset_index(drop=True)
    old = old_t[["id", "content_hash", "label"]].reset_index(drop=True)
    new["_row"], old["_row"] = np.arange(n), np.arange(len(old))
    status = np.full(n, "new", dtype=object)
    old_id = np.full(n, None, dtype=object)
    old_label = np.full(n, None, dtype=object)
    used = np.zeros(len(old), dtype=bool)

    def pair(new_rows: pd.DataFrame, old_rows: pd.DataFrame, keys: list) -> pd.DataFrame:
        a = new_rows.assign(_k=new_rows.groupby(keys, sort=False).cumcount())
        b = old_rows.assign(_k=old_rows.groupby(keys, sort=False).cumcount())
        return a.merge(b, on=keys + ["_k"], how="inner", suffixes=("", "_old"), sort=False)

    # the same content with the same label, copy for copy: unchanged
    m = pair(new, old, ["content_hash", "label"])
    rows, orows = m["_row"].to_numpy(), m["_row_old"].to_numpy()
    status[rows], old_id[rows], old_label[rows] = "unchanged", m["id_old"].to_numpy(dtype=object), m["label"].to_numpy(dtype=object)
    used[orows] = True
    # the same content with another label, against the old copies left: relabelled
    left_new = new[status == "new"]
    m = pair(left_new.drop(columns="label"), old[~used].rename(columns={"label": "label_old"}), ["content_hash"])
    rows, orows = m["_row"].to_numpy(), m["_row_old"].to_numpy()
    status[rows], old_id[rows], old_label[rows] = "relabelled", m["id_old"].to_numpy(dtype=object), m["label_old"].to_numpy(dtype=object)
    used[orows] = True
    # more copies of known content than before: duplicate (or relabelled under a label it never had)
    _known_content(new, old, status == "new", status, old_id, old_label)
    table = pd.DataFrame({"id": new["id"].to_numpy(dtype=object), "status": status,
                          "label": new["label"].to_numpy(dtype=object),
                          "content_hash": new["content_hash"].to_numpy(dtype=object),
                          "old_id": old_id, "old_label": old_label}, dtype=object)
    removed = old.loc[~used, ["id", "label", "content_hash"]].reset_index(drop=True).astype(object)
    return VersionDiff(table=table, removed=removed, n_old=len(old), matched_by="content")


def _diff_tables(old_t: Optional[pd.DataFrame], new_t: pd.DataFrame) -> VersionDiff:
    """:func:`diff_versions` on sample tables already normalised (strings, unique ids)."""
    if old_t is None:
        old_t = pd.DataFrame({c: pd.Series([], dtype=object) for c in ("id", "content_hash", "label")})
    elif _row_number_ids(old_t) and _row_number_ids(new_t):
        return _diff_by_content(old_t, new_t)
    n = len(new_t)

    # 1. id match
    o = old_t[["id", "content_hash", "label"]].rename(
        columns={"id": "old_id", "content_hash": "old_hash", "label": "old_label"}
    )
    m = new_t[["id", "content_hash", "label"]].merge(o, left_on="id", right_on="old_id", how="left", sort=False)
    same_id = m["old_id"].notna().to_numpy()
    same_hash = same_id & (m["content_hash"].to_numpy() == m["old_hash"].to_numpy())
    same_label = same_id & (m["label"].to_numpy() == m["old_label"].to_numpy())
    old_id = np.where(same_id, m["old_id"].to_numpy(dtype=object), None).astype(object)
    old_label = np.where(same_id, m["old_label"].to_numpy(dtype=object), None).astype(object)

    status = np.full(n, "new", dtype=object)
    status[same_id & ~same_hash] = "modified"
    status[same_hash & same_label] = "unchanged"
    status[same_hash & ~same_label] = "relabelled"

    # 2. no id match: look the content (and the content + label) up in the old version
    _known_content(new_t, old_t, ~same_id, status, old_id, old_label)

    table = pd.DataFrame(
        {
            "id": new_t["id"].to_numpy(dtype=object),
            "status": status,
            "label": new_t["label"].to_numpy(dtype=object),
            "content_hash": new_t["content_hash"].to_numpy(dtype=object),
            "old_id": old_id,
            "old_label": old_label,
        },
        dtype=object,
    )
    gone = ~old_t["id"].isin(new_t["id"]).to_numpy(dtype=bool)
    removed = old_t.loc[gone, ["id", "label", "content_hash"]].reset_index(drop=True).astype(object)
    return VersionDiff(table=table, removed=removed, n_old=len(old_t))


def first_seen_versions(diff: VersionDiff, old: Optional[pd.DataFrame], number: int) -> np.ndarray:
    """The ``first_seen`` version number of each sample of the new version.

    A sample whose content the old version already held (status unchanged, relabelled or
    duplicate) inherits the smallest ``first_seen`` among the old samples with that content
    hash; new and modified samples get ``number``. So ``first_seen`` is the version since which
    this content has been present without interruption (content that disappears and comes back
    counts as new again, as it does in the diff).

    Parameters
    ----------
    diff : VersionDiff
        ``diff_versions(old, new)``.
    old : DataFrame or None
        The old sample table with a ``first_seen`` column (as :meth:`Ledger.samples` returns it).
    number : int
        The new version's number.
    """
    out = np.full(len(diff.table), int(number), dtype=np.int64)
    if old is None or not len(old):
        return out
    if "first_seen" not in old.columns:
        raise DataError("the old sample table has no first_seen column")
    fs = pd.to_numeric(old["first_seen"], errors="coerce").fillna(number)
    by_hash = pd.Series(fs.to_numpy(), index=old["content_hash"].to_numpy()).groupby(level=0).min()
    keep = diff.table["status"].isin(("unchanged", "relabelled", "duplicate")).to_numpy()
    inherited = by_hash.reindex(diff.table["content_hash"].to_numpy()).to_numpy()
    ok = keep & ~np.isnan(inherited.astype(float))
    out[ok] = inherited[ok].astype(np.int64)
    return out
