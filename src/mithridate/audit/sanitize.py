"""Sanitize a data file: drop the samples the audit flags, keep everything else as it was.

:func:`sanitize` runs the same detection as :func:`~mithridate.audit.pipeline.run_audit` (the
policy's detector ensemble and its budget-free flag rule, or the top ``budget`` share of
ensemble scores), removes the flagged samples and writes the rest **in the input's format**:

* CSV / TSV (``.gz`` too) / Parquet: the original file is read again (CSV and TSV as raw
  strings, so every kept value is written back exactly as it was) and only the removed rows are
  dropped: same columns, same order of the kept rows;
* JSON Lines (``.gz`` too): the file is copied line by line, byte for byte, without the lines of
  the removed records;
* ``.npz``: every array of the archive is copied; the per-sample arrays of the audited part
  (``x``, ``y``, ``ids``, ``is_poison``, or ``x_train``, ``y_train``, ``ids_train``,
  ``is_poison_train``) lose the removed rows; the test split, ``classes``, ``layout`` ... are
  unchanged (written without pickling);
* an image folder: the kept image files are copied into a new folder tree with the same relative
  paths (for a ``train/``/``test/`` layout the test images are copied unchanged);
* a :class:`~mithridate.data.Dataset` given in memory: an ``.npz`` with the ``x``/``y`` layout
  (or a table, from the output's suffix).

Next to the output it writes a **manifest** of what was removed and why: ``<name>.removed.csv``
(id, data row, label, contributor, source, ensemble score, the detectors that flagged it, the
reasons) and ``<name>.manifest.json`` (counts per class and contributor, the rule, the policy,
input and output). Outputs are atomic (written beside their destination and renamed), the
input is never overwritten (asking for it is an error), and an existing output is replaced only
with ``overwrite=True``.

Examples
--------
>>> import numpy as np, pandas as pd
>>> from sklearn.datasets import load_wine
>>> X, y = load_wine(return_X_y=True)
>>> df = pd.DataFrame(X, columns=[f"f{i}" for i in range(X.shape[1])]).assign(label=y)
>>> df.to_csv("wine.csv", index=False)                                   # doctest: +SKIP
>>> res = sanitize("wine.csv", "wine.clean.csv", label="label", progress=False)   # doctest: +SKIP
>>> res.n_input == res.n_kept + res.n_removed                            # doctest: +SKIP
True
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import re
import shutil
import tempfile
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence, Union

import numpy as np
import pandas as pd

from mithridate.audit.pipeline import AuditInput, AuditResult, PolicySpec, _json_safe, load_for_audit, run_audit
from mithridate.data.dataset import Dataset
from mithridate.errors import ConfigError, DataError
from mithridate.utils import RandomState, atomic_path

__all__ = ["sanitize", "SanitizeResult", "default_manifest_path"]

_NPZ_PER_SAMPLE = {"x": ("x", "y", "ids", "is_poison"),
                   "x_train": ("x_train", "y_train", "ids_train", "is_poison_train")}


@dataclass
class SanitizeResult:
    """What :func:`sanitize` wrote.

    Attributes
    ----------
    output : Path
        The cleaned data (a file, or a folder for images).
    manifest : Path
        ``<name>.removed.csv``: one row per removed sample.
    manifest_json : Path
        ``<name>.manifest.json``: counts, rule, policy, input and output.
    n_input, n_removed, n_kept : int
    removed : DataFrame
        The removed samples (what the manifest CSV holds).
    audit : AuditResult
        The audit whose flags were used.
    """

    output: Path
    manifest: Path
    manifest_json: Path
    n_input: int
    n_removed: int
    n_kept: int
    removed: pd.DataFrame
    audit: AuditResult
    info: dict = field(default_factory=dict)

    def __repr__(self) -> str:
        return (f"SanitizeResult(output={str(self.output)!r}, n_input={self.n_input}, removed={self.n_removed}, "
                f"kept={self.n_kept})")


def default_manifest_path(out: Union[str, os.PathLike]) -> Path:
    """``<stem>.removed.csv`` beside ``out`` (``clean.csv.gz`` -> ``clean.removed.csv``)."""
    from mithridate.data.loaders import _stem

    p = Path(out)
    stem = _stem(p) if p.suffix else p.name
    return p.parent / f"{stem}.removed.csv"


def _same_or_inside(a: Path, b: Path) -> bool:
    """Whether ``a`` is ``b`` or lies inside it (resolved, symlinks followed)."""
    a, b = a.resolve(), b.resolve()
    return a == b or b in a.parents


def _check_paths(inp: Optional[Path], out: Path, manifest: Path, manifest_json: Path, *, is_dir_input: bool,
                 overwrite: bool, default_manifest: bool = False) -> None:
    for what, p in (("output", out), ("manifest", manifest), ("manifest", manifest_json)):
        if inp is not None:
            if _same_or_inside(p, inp) if is_dir_input else p.resolve() == inp.resolve():
                raise ConfigError(f"refusing to write the {what} {p} over or inside the input {inp}; "
                                  "choose another output path")
            if is_dir_input and _same_or_inside(inp, p):
                raise ConfigError(f"refusing to write the {what} {p}: it contains the input {inp}")
        if p.exists() and not overwrite:
            if what == "manifest" and default_manifest:  # e.g. bc.clean.tsv after bc.clean.parquet
                stem = manifest.name[: -len(".removed.csv")] if manifest.name.endswith(".removed.csv") else out.stem
                raise ConfigError(f"{p} already exists (the default manifest name for the output {out.name}; another "
                                  f"output named {stem}.* may have written it): pass manifest=PATH to "
                                  "write this one elsewhere, or overwrite=True to replace it")
            raise ConfigError(f"{p} already exists; choose another path or pass overwrite=True to replace it")
    if len({out.resolve(), manifest.resolve(), manifest_json.resolve()}) < 3:
        raise ConfigError(f"the output and the manifest files must be different paths (got {out}, {manifest})")


def _suffix_kind(p: Path) -> Optional[str]:
    """The output format its name asks for: a table kind (as the loaders read it), npz, jsonl, or None."""
    from mithridate.data import loaders as L
    from mithridate.data.text import JSONL_SUFFIXES

    low = p.name.lower()
    if low.endswith(L._TABLE_SUFFIXES):
        return L._table_kind(p)
    if low.endswith(".npz"):
        return "npz"
    if low.endswith(JSONL_SUFFIXES):
        return "jsonl"
    return None


def load_audit_outputs(folder: Union[str, os.PathLike], dataset: Dataset) -> AuditResult:
    """The flags of an earlier audit of ``dataset`` from its output folder (``findings.csv`` and
    ``summary.json`` written by ``mithridate audit --out``), as an :class:`AuditResult` that
    :func:`sanitize` can reuse (``audit=``): the findings, the verdict, the policy and the
    contributors' reputation as that audit judged them. The findings' ids must be the dataset's,
    in order (load the data with the same options as the audit did)."""
    from mithridate.audit.policy import Policy

    d = Path(os.path.expanduser(os.fspath(folder)))
    if d.is_file() and d.name == "findings.csv":
        d = d.parent
    fcsv, fjson = d / "findings.csv", d / "summary.json"
    missing = [p.name for p in (fcsv, fjson) if not p.is_file()]
    if missing:
        raise ConfigError(f"{d} is not an audit's output folder: {' and '.join(missing)} missing (write one with "
                          "`mithridate audit DATA ... --out FOLDER`)")
    try:
        summary = json.loads(fjson.read_text(encoding="utf-8"))
        findings = pd.read_csv(fcsv, dtype={"id": str, "label": str, "contributor": object, "source": object,
                                            "flagged_by": str, "reasons": str}, keep_default_na=False,
                               na_values={"contributor": [""], "source": [""]})
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read the audit outputs in {d}: {exc}") from None
    need = {"id", "flagged", "ensemble_score", "label", "contributor", "source", "flagged_by", "reasons"}
    if not isinstance(summary, dict) or not need <= set(findings.columns):
        raise DataError(f"{fcsv} lacks columns {sorted(need - set(findings.columns))}; is it an audit's findings.csv?")
    if len(findings) != len(dataset) or findings["id"].tolist() != [str(i) for i in dataset.ids]:
        n_same = len(set(findings["id"]) & {str(i) for i in dataset.ids})
        raise ConfigError(f"the audit in {d} is of other data: its {len(findings)} findings and the input's "
                          f"{len(dataset)} samples share {n_same} ids (in order: "
                          f"{findings['id'].tolist() == [str(i) for i in dataset.ids]}); load the input with the "
                          "audit's options (--label, --id, ...) or audit it again")
    labels = [str(v) for v in dataset.labels.tolist()]
    differ = int(np.sum(findings["label"].astype(str).to_numpy() != np.asarray(labels, dtype=object)))
    if differ:
        raise ConfigError(f"the audit in {d} is of other data: {differ} of its {len(findings)} samples carry another "
                          "label than the input's (same ids, another version?); audit this input first")
    flagged = findings["flagged"]
    if flagged.dtype != bool:
        flagged = flagged.astype(str).str.strip().str.lower().map({"true": True, "false": False, "1": True, "0": False})
        if flagged.isna().any():
            raise DataError(f"{fcsv}: the flagged column holds values other than True/False")
    findings["flagged"] = flagged.astype(bool)
    for c in ("contributor", "source"):
        findings[c] = findings[c].astype(object).where(findings[c].notna(), None)
    rows = [c for c in summary.get("contributors") or [] if isinstance(c, dict) and c.get("rank") is not None]
    reputation = pd.DataFrame({
        "contributor": [str(c["contributor"]) for c in rows],
        "n": [int(c.get("n_judged", c.get("n", 0))) for c in rows],
        "above_population": [bool(c.get("above_population")) for c in rows]})
    policy = Policy.from_dict(summary["policy"]) if isinstance(summary.get("policy"), dict) else Policy.default()
    return AuditResult(name=str(summary.get("dataset") or dataset.name), verdict=str(summary.get("verdict") or "pass"),
                       policy=policy, policy_results=[], findings=findings, summary=summary, reputation=reputation,
                       member_flags=pd.DataFrame(index=range(len(findings))), dataset=dataset)


def sanitize(
    data: Union[str, os.PathLike, Dataset, AuditInput],
    out: Union[str, os.PathLike],
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
    policy: PolicySpec = None,
    model: Any = None,
    layer: str = "penultimate",
    feature_mode: str = "auto",
    budget: Optional[float] = None,
    drop_contributors: bool = False,
    audit: Optional[AuditResult] = None,
    manifest: Optional[Union[str, os.PathLike]] = None,
    overwrite: bool = False,
    name: Optional[str] = None,
    random_state: RandomState = 0,
    progress: bool = True,
) -> SanitizeResult:
    """Remove the samples the audit flags and write the rest in the input's format.

    Parameters
    ----------
    data : path, Dataset or AuditInput
        A table, ``.jsonl``, ``.npz``, image folder or bundled name (loaded with
        :func:`~mithridate.audit.pipeline.load_for_audit` and the table / image options below),
        or data already in memory.
    out : path
        Where the cleaned data go: a file of the same format as the input (a folder for
        images). Never the input itself.
    label, features, id_col, contributor, source, text_col, image_col, size, grayscale :
        Loading options, see :func:`~mithridate.audit.pipeline.load_for_audit`. A table of image
        paths (``image_col``) is written as the same table without the removed rows, next to the
        input (its paths are relative to that folder; the images themselves are not copied).
    policy : Policy, path or mapping, optional
        Its ``detectors`` (and, with ``drop_contributors``, its reputation settings) are used.
    model, layer, feature_mode :
        What the detectors read, as in :func:`~mithridate.audit.pipeline.run_audit`
        (``feature_mode`` is its ``features`` argument).
    budget : float in (0, 1), optional
        Remove the top ``ceil(budget * n)`` ensemble scores instead of the flagged samples.
    drop_contributors : bool, default=False
        Also remove every sample of a contributor whose credible interval lies above the
        population rate (with at least ``policy.reputation_min_samples`` samples).
    audit : AuditResult, optional
        Reuse the flags of an audit of the same data instead of running detection again.
    manifest : path, optional
        The manifest CSV (default :func:`default_manifest_path`); the JSON manifest gets the same
        name ending in ``.manifest.json`` instead of ``.removed.csv`` (or ``.json``).
    overwrite : bool, default=False
        Replace an existing output / manifest (the input can never be replaced).
    name : str, optional
        The dataset name in the manifest (default: the input's name).
    random_state, progress :
        As in :func:`~mithridate.audit.pipeline.run_audit`.

    Returns
    -------
    SanitizeResult

    Raises
    ------
    ConfigError
        ``out`` (or a manifest) is the input or lies inside an input folder, exists without
        ``overwrite``, or has another format than the input; bad options.
    DataError
        Unreadable input, or an input file that changed since it was loaded.
    """
    from mithridate.utils import check_fraction

    if budget is not None:
        budget = check_fraction(budget, "budget")
    if not isinstance(out, (str, os.PathLike)):
        raise ConfigError(f"out must be a path, got {type(out).__name__}")
    out_p = Path(os.path.expanduser(os.fspath(out)))
    if isinstance(data, AuditInput):
        inp = data
    elif isinstance(data, Dataset):
        inp = AuditInput(dataset=data, kind="dataset", path=None, format="dataset", rows=np.arange(len(data)))
    else:
        inp = load_for_audit(data, label=label, features=features, id_col=id_col, contributor=contributor,
                             source=source, text_col=text_col, image_col=image_col, size=size, grayscale=grayscale)
    ds = inp.dataset
    # output format must match the input's
    out_kind = _suffix_kind(out_p)
    if inp.kind == "images":
        if out_kind is not None:
            raise ConfigError(f"the input is an image folder: out must be a folder path, not {out_p.name!r}")
    elif inp.kind == "builtin":
        if out_kind not in ("npz", "csv", "tsv", "parquet"):
            raise ConfigError(f"a bundled dataset is written as .npz, .csv, .tsv or .parquet; got {out_p.name!r}")
    elif inp.kind == "dataset":
        if out_kind not in ("npz", "csv", "tsv", "parquet") or ds.is_image and out_kind != "npz":
            raise ConfigError(f"an in-memory dataset is written as .npz (tables also .csv/.tsv/.parquet); got {out_p.name!r}")
    elif out_kind != inp.format:
        raise ConfigError(f"the input is {inp.format.upper()} ({inp.path.name}): write the cleaned data in the same "
                          f"format (got {out_p.name!r})")
    if inp.kind == "table" and inp.image_root is not None and out_p.parent.resolve() != inp.image_root:
        raise ConfigError(f"the input's image paths are relative to {inp.image_root}: write the cleaned table in "
                          f"that folder (e.g. {inp.image_root / out_p.name}) so that they still resolve")
    man_csv = Path(manifest) if manifest is not None else default_manifest_path(out_p)
    if man_csv.name.endswith(".removed.csv"):
        man_json = man_csv.with_name(man_csv.name[: -len(".removed.csv")] + ".manifest.json")
    else:
        man_json = man_csv.with_suffix(".json")
    _check_paths(inp.path, out_p, man_csv, man_json, is_dir_input=inp.kind == "images", overwrite=overwrite,
                 default_manifest=manifest is None)

    # detection
    ds_name = name or (inp.path.name if inp.path is not None else ds.name)
    if audit is None:
        audit = run_audit(ds, name=ds_name, policy=policy, model=model, layer=layer, features=feature_mode,
                          random_state=random_state, progress=progress, feature_names=inp.options.get("features"))
    else:
        if not isinstance(audit, AuditResult):
            raise ConfigError(f"audit must be an AuditResult, got {type(audit).__name__}")
        if len(audit.findings) != len(ds) or [str(i) for i in audit.findings["id"]] != [str(i) for i in ds.ids]:
            raise ConfigError("audit= belongs to other data (its sample ids differ from the input's)")
    f = audit.findings
    scores = f["ensemble_score"].to_numpy(float)
    if budget is None:
        remove = f["flagged"].to_numpy(bool).copy()
        rule = "flagged by the ensemble's default rule"
    else:
        from mithridate.defenses.detect.base import budget_count, top_k_mask

        remove = top_k_mask(scores, budget_count(budget, len(scores)))
        rule = f"top {budget:.1%} ensemble scores"
    why = np.where(remove, "flagged", "").astype(object)
    bad_contributors: list = []
    if drop_contributors:
        rep = audit.reputation
        if len(rep):
            ok = rep["above_population"].to_numpy(bool) & (rep["n"].to_numpy() >= audit.policy.reputation_min_samples)
            bad_contributors = [str(c) for c in rep.loc[ok, "contributor"]]
        if bad_contributors:
            by = f["contributor"].isin(bad_contributors).to_numpy(bool)
            why = np.where(by & ~remove, "contributor reputation", np.where(by & remove, "flagged; contributor reputation", why))
            remove |= by
            rule += f"; plus every sample of contributors above the population rate ({len(bad_contributors)})"
    keep = ~remove
    if not keep.any():
        raise DataError("every sample would be removed; nothing to write (check the policy or the budget)")

    removed = f.loc[remove, ["id", "label", "contributor", "source", "ensemble_score", "flagged_by", "reasons"]].copy()
    removed.insert(1, "row", inp.rows[remove])
    removed["why"] = why[remove]
    removed = removed.reset_index(drop=True)
    info = {
        "dataset": ds_name,
        "input": str(inp.path) if inp.path is not None else inp.format,
        "input_format": inp.format,
        "output": str(out_p),
        "n_input": len(ds), "n_removed": int(remove.sum()), "n_kept": int(keep.sum()),
        "rule": rule,
        "detectors": audit.summary.get("detectors"),
        "representation": audit.summary.get("representation"),
        "removed_contributors": bad_contributors,
        "removed_per_class": removed["label"].value_counts().sort_index().to_dict(),
        "removed_per_contributor": removed["contributor"].dropna().value_counts().sort_index().to_dict(),
        "audit_verdict": audit.verdict,
        "policy": audit.policy.to_dict(),
        "loading": inp.options,
        "manifest": str(man_csv),
        "created_at": _dt.datetime.now(_dt.timezone.utc).isoformat(),
    }
    if inp.kind == "npz":
        info["npz_split"] = inp.npz_split
    info = _json_safe(info)

    with contextlib.ExitStack() as stack:  # manifests are renamed into place only if the data were written
        tmp_csv = stack.enter_context(atomic_path(man_csv))
        tmp_json = stack.enter_context(atomic_path(man_json))
        removed.to_csv(tmp_csv, index=False)
        tmp_json.write_text(json.dumps(info, indent=2, allow_nan=False) + "\n", encoding="utf-8")
        if inp.kind == "table":
            _write_table(inp, keep, out_p)
        elif inp.kind == "jsonl":
            _write_jsonl(inp, keep, out_p)
        elif inp.kind == "npz":
            _write_npz(inp, keep, out_p)
        elif inp.kind == "images":
            _write_images(inp, keep, out_p, overwrite=overwrite)
        else:
            _write_dataset(ds.subset(keep), out_p, out_kind)
    return SanitizeResult(output=out_p, manifest=man_csv, manifest_json=man_json, n_input=len(ds),
                          n_removed=int(remove.sum()), n_kept=int(keep.sum()), removed=removed, audit=audit, info=info)


# -- writers --------------------------------------------------------------------------------------
def _write_table(inp: AuditInput, keep: np.ndarray, out: Path) -> None:
    from mithridate.data import loaders as L

    p = inp.path
    kind = inp.format
    sep = None if kind == "parquet" else L._csv_separator(p, kind)  # written back with the input's separator
    try:
        if kind == "parquet":
            df = pd.read_parquet(p)
        else:  # raw strings: kept values are written back exactly as they were
            df = pd.read_csv(p, sep=sep, dtype=str, keep_default_na=False, na_filter=False)
    except Exception as exc:  # the file was readable a moment ago
        raise DataError(f"could not read {p} again to write the cleaned copy: {exc}") from None
    df.columns = [str(c) for c in df.columns]
    if len(df) != len(inp.dataset):
        raise DataError(f"{p} changed while it was being audited ({len(df)} rows now, {len(inp.dataset)} audited); "
                        "run sanitize again")
    kept = df.iloc[inp.rows[keep]]
    with atomic_path(out) as tmp:
        if kind == "parquet":
            kept.to_parquet(tmp, index=False)
        else:
            bom, crlf, header = _text_layout(p)
            # an empty header cell (a saved index) is read as 'Unnamed: 0': write it back empty
            kept = kept.set_axis([c if c in header or not re.fullmatch(r"Unnamed: \d+", c) else "" for c in kept.columns],
                                 axis=1)
            with _sink(tmp, out) as fh:
                kept.to_csv(fh, sep=sep, index=False, encoding="utf-8-sig" if bom else "utf-8",
                            lineterminator="\r\n" if crlf else "\n")


@contextlib.contextmanager
def _sink(tmp: Path, out: Path) -> Iterator[Any]:
    """A binary file at ``tmp`` (the temporary name of ``out``), gzip-compressed when ``out``
    ends in .gz, with ``out``'s name in the gzip header (not the temporary one)."""
    import gzip

    with open(tmp, "wb") as raw:
        if out.name.lower().endswith(".gz"):
            with gzip.GzipFile(filename=out.name, mode="wb", fileobj=raw) as gz:
                yield gz
        else:
            yield raw


def _text_layout(p: Path) -> tuple[bool, bool, str]:
    """Whether a CSV/TSV (optionally gzipped) starts with a UTF-8 BOM and ends its lines with CRLF,
    and its raw header line: sanitize writes the cleaned copy the same way."""
    import gzip

    opener = gzip.open if p.name.lower().endswith(".gz") else open
    with opener(p, "rb") as fh:
        head = fh.read(1 << 16)
    first = head.split(b"\n", 1)[0]
    return head.startswith(b"\xef\xbb\xbf"), first.endswith(b"\r"), first.decode("utf-8", "replace")


def _write_jsonl(inp: AuditInput, keep: np.ndarray, out: Path) -> None:
    """Copy the file line by line, byte for byte, without the removed records' lines."""
    from mithridate.data.text import _open_lines

    drop = set(inp.rows[~keep].tolist())
    last = int(inp.rows.max())
    lineno = 0
    with atomic_path(out) as tmp:
        with _open_lines(inp.path) as src, _sink(tmp, out) as dst:
            for raw in src:
                lineno += 1
                if lineno not in drop:
                    dst.write(raw)
        if lineno < last:
            raise DataError(f"{inp.path} changed while it was being audited (now {lineno} lines); run sanitize again")


def _npz_compressed(p: Path) -> bool:
    try:
        with zipfile.ZipFile(p) as z:
            return any(i.compress_type != zipfile.ZIP_STORED for i in z.infolist())
    except (OSError, zipfile.BadZipFile):
        return False


def _write_npz(inp: AuditInput, keep: np.ndarray, out: Path) -> None:
    from mithridate.data import loaders as L

    reader = L._NpzReader(inp.path)
    try:
        arrays = {real: reader.get(low) for low, real in reader.keys.items()}
        per_sample = {reader.keys[k] for k in _NPZ_PER_SAMPLE[inp.npz_split] if k in reader}
    finally:
        reader.close()
    n = len(inp.dataset)
    idx = inp.rows[keep]
    for key in per_sample:
        a = arrays[key]
        if a.ndim == 0 or len(a) != n:
            raise DataError(f"{inp.path}: array {key!r} has {len(a) if a.ndim else 0} rows, the audited data {n}")
        arrays[key] = a[idx]
    saver = np.savez_compressed if _npz_compressed(inp.path) else np.savez
    with atomic_path(out) as tmp:
        with open(tmp, "wb") as fh:  # a file object: numpy appends no suffix
            saver(fh, **arrays)


def _write_images(inp: AuditInput, keep: np.ndarray, out: Path, *, overwrite: bool) -> None:
    root = inp.image_root
    parent = out.resolve().parent
    parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".part", dir=parent))
    try:
        # the whole folder is copied except the removed images: files the audit did not read
        # (other extensions, a test/ split, notes) stay, as they would in a table's other columns
        removed = {inp.files[int(inp.rows[i])] for i in np.flatnonzero(~keep)}
        audited = set(inp.files)
        n_other = 0
        for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
            dirnames.sort()
            here = Path(dirpath)
            for fn in sorted(filenames):
                src = here / fn
                key = src.resolve()  # the audit's file list holds resolved paths
                if key in removed:
                    continue
                n_other += key not in audited
                dst = staging / src.relative_to(root)
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, dst)
        if n_other:
            warnings.warn(f"{n_other} file{'s' if n_other != 1 else ''} under {root} that the audit did not read "
                          f"{'were' if n_other != 1 else 'was'} copied unchanged (a test/ split, other file types, "
                          "hidden files)", UserWarning, stacklevel=3)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(staging, 0o777 & ~umask)
        old = None
        if out.exists():
            if not overwrite:  # checked before, but the folder may have appeared meanwhile
                raise ConfigError(f"{out} already exists; pass overwrite=True to replace it")
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".old", dir=parent))
            os.rmdir(old)
            os.rename(out, old)
        os.rename(staging, out)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _write_dataset(ds: Dataset, out: Path, kind: str) -> None:
    from mithridate.data.loaders import _plain_array

    if kind == "npz":
        arrays = {"x": np.asarray(ds.X), "y": np.asarray(ds.y, dtype=np.int64), "ids": _plain_array(ds.ids, "ids"),
                  "classes": _plain_array(list(ds.classes), "classes")}
        if ds.X.ndim == 4:
            arrays["layout"] = np.array("NCHW")
        with atomic_path(out) as tmp:
            with open(tmp, "wb") as fh:
                np.savez(fh, **arrays)
        return
    cols = {"id": np.asarray(ds.ids), "label": ds.labels}
    for c in ("contributor", "source"):
        if c in ds.meta.columns and ds.meta[c].notna().any():
            cols[c] = ds.meta[c].to_numpy(dtype=object)
    X = np.asarray(ds.X).reshape(len(ds), -1)
    df = pd.concat([pd.DataFrame(cols), pd.DataFrame(X, columns=[f"x{j}" for j in range(X.shape[1])])], axis=1)
    with atomic_path(out) as tmp:
        if kind == "parquet":
            df.to_parquet(tmp, index=False)
        else:
            with _sink(tmp, out) as fh:
                df.to_csv(fh, sep="," if kind == "csv" else "\t", index=False)
