"""The provenance ledger: every audited version of every dataset, sample by sample.

The ledger remembers, per dataset (a name the user chooses, e.g. ``"reviews"``):

* ``versions``: each distinct state of the data (number 1, 2, ...; sample count, a fingerprint
  of its content, where it came from);
* ``samples``: per version, every sample's id, content hash, label, contributor, source and
  ``first_seen`` (the version since which its content has been present);
* ``audits``: per audit run, start/finish time, verdict, summary JSON, policy JSON and the
  diff counts against the previous version;
* ``findings``: per audit and sample, the ensemble score, flagged or not, per-detector scores
  (JSON) and reasons;
* ``contributors``: per dataset and contributor, cumulative audited/flagged counts and their
  Beta posterior (see :mod:`mithridate.audit.reputation`).

It is a SQLAlchemy database: a SQLite file by default, any SQLAlchemy URL otherwise
(PostgreSQL is tested). The schema is versioned and upgraded on open
(:mod:`mithridate.audit.migrations`).

Where it lives (first that applies): the ``url`` argument; the ``MITHRIDATE_LEDGER``
environment variable; ``$XDG_DATA_HOME/mithridate/ledger.sqlite``, else
``~/.local/share/mithridate/ledger.sqlite`` (its directory is created). A value without
``://`` is a path to a SQLite file (its directory must exist, except for the default).

**An audit is one transaction.** :meth:`Ledger.audit` returns an :class:`AuditRecorder`;
inside its ``with`` block the caller reads the previous version and the diff, runs detectors,
adds findings and calls :meth:`AuditRecorder.finish`. Nothing is written until the block exits
normally; then the version, its samples, the audit, its findings and the contributor updates
are written in one database transaction (``BEGIN IMMEDIATE`` on SQLite, an advisory lock on
PostgreSQL). An exception or Ctrl-C inside the block, or during the write, leaves the ledger
exactly as it was. Because the transaction only spans the write (seconds), long detector runs
never hold a lock; if another process recorded a new version of the same dataset in the
meantime, the write refuses with a :class:`LedgerError` instead of recording a diff against a
stale version.

**Versions and re-audits.** Auditing data identical to the latest version (same fingerprint:
ids, content hashes, labels, contributors, sources) adds an audit to that version instead of a
new version; its diff is against the version before it, so re-running a gate gives the same
answer. The diff of a new version is against the latest version.

**Contributor counts** are cumulative and count each contribution once: at the first audit of
each version that records findings, the samples that version brought in (diff status new,
modified or relabelled against the version before it, see :mod:`mithridate.audit.diff`) and
that have a finding add to their contributor's ``n_total``, and the flagged ones to
``n_flagged``; re-audits of the same version change nothing. Unchanged samples are not counted again, so
a contributor is not judged ten times on the same samples. After each audit every contributor
of the dataset gets its posterior refreshed (the empirical-Bayes prior depends on all of them).
Samples without a contributor are not counted.

Examples
--------
>>> import numpy as np, pandas as pd
>>> from mithridate.data import Dataset
>>> ds = Dataset.from_arrays(np.random.default_rng(0).random((6, 2)), [0, 1, 0, 1, 0, 1],
...                          meta=pd.DataFrame({"contributor": list("aabbcc")}))
>>> with Ledger("sqlite://") as ledger:                       # in memory
...     with ledger.audit("toy", ds, source="toy.csv") as audit:
...         print(audit.diff.counts["new"])
...         audit.add_findings(pd.DataFrame({"id": ds.ids, "score": np.linspace(0, 1, 6),
...                                          "flagged": [False] * 5 + [True]}))
...         audit.finish("pass", summary={"n_flagged": 1})
...     print(audit.result.version, ledger.contributors("toy")["contributor"].tolist()[0])
6
1 c
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping, Optional, Sequence, Union

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from mithridate.audit.diff import (
    SampleData,
    VersionDiff,
    _diff_tables,
    _str_or_none,
    diff_versions,
    first_seen_versions,
    sample_table,
)
from mithridate.audit.migrations import (
    PG_LOCK_KEY,
    SCHEMA_VERSION,
    LedgerError,
    big_pk,
    json_type,
    schema_version,
    upgrade,
    utcnow,
)
from mithridate.audit.reputation import (PriorSpec, class_mix_factors, reputation_table, simultaneous_level,
                                         with_class_mix)
from mithridate.errors import ConfigError, DataError
from mithridate.utils import json_safe

ENV_VAR = "MITHRIDATE_LEDGER"
MAX_ID_LENGTH = 512
MAX_NAME_LENGTH = 255
MAX_VERDICT_LENGTH = 32
FINDINGS_RESERVED = ("id", "score", "ensemble_score", "flagged", "reasons")

__all__ = [
    "Ledger", "AuditRecorder", "VersionInfo", "AuditInfo", "LedgerError", "default_ledger_url",
    "SCHEMA_VERSION", "ENV_VAR",
]

# -- the current schema (must equal what migrations.MIGRATIONS produces; tests check) -----------
metadata = sa.MetaData()
_ts = sa.DateTime(timezone=True)
datasets_t = sa.Table(
    "datasets", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(MAX_NAME_LENGTH), nullable=False, unique=True),
    sa.Column("created_at", _ts, nullable=False),
)
versions_t = sa.Table(
    "versions", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("dataset_id", sa.Integer, sa.ForeignKey("datasets.id", ondelete="CASCADE"), nullable=False),
    sa.Column("number", sa.Integer, nullable=False),
    sa.Column("created_at", _ts, nullable=False),
    sa.Column("n_samples", sa.Integer, nullable=False),
    sa.Column("fingerprint", sa.String(64), nullable=False),
    sa.Column("source", sa.Text),
)
samples_t = sa.Table(
    "samples", metadata,
    sa.Column("id", big_pk(), primary_key=True),
    sa.Column("version_id", sa.Integer, sa.ForeignKey("versions.id", ondelete="CASCADE"), nullable=False),
    sa.Column("sample_id", sa.String(MAX_ID_LENGTH), nullable=False),
    sa.Column("content_hash", sa.String(128), nullable=False),
    sa.Column("label", sa.Text, nullable=False),
    sa.Column("contributor", sa.String(MAX_NAME_LENGTH)),
    sa.Column("source", sa.Text),
    sa.Column("first_seen", sa.Integer),
)
audits_t = sa.Table(
    "audits", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("version_id", sa.Integer, sa.ForeignKey("versions.id", ondelete="CASCADE"), nullable=False),
    sa.Column("started_at", _ts, nullable=False),
    sa.Column("finished_at", _ts, nullable=False),
    sa.Column("verdict", sa.String(MAX_VERDICT_LENGTH), nullable=False),
    sa.Column("summary", json_type()),
    sa.Column("diff", json_type()),
    sa.Column("tool_version", sa.String(32)),
    sa.Column("policy", json_type()),
)
findings_t = sa.Table(
    "findings", metadata,
    sa.Column("id", big_pk(), primary_key=True),
    sa.Column("audit_id", sa.Integer, sa.ForeignKey("audits.id", ondelete="CASCADE"), nullable=False),
    sa.Column("sample_id", sa.String(MAX_ID_LENGTH), nullable=False),
    sa.Column("score", sa.Float),
    sa.Column("flagged", sa.Boolean, nullable=False),
    sa.Column("detector_scores", json_type()),
    sa.Column("reasons", sa.Text),
)
contributors_t = sa.Table(
    "contributors", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("dataset_id", sa.Integer, sa.ForeignKey("datasets.id", ondelete="CASCADE"), nullable=False),
    sa.Column("name", sa.String(MAX_NAME_LENGTH), nullable=False),
    sa.Column("n_total", sa.Integer, nullable=False),
    sa.Column("n_flagged", sa.Integer, nullable=False),
    sa.Column("n_audits", sa.Integer, nullable=False),
    sa.Column("first_version", sa.Integer),
    sa.Column("last_version", sa.Integer),
    sa.Column("alpha", sa.Float),
    sa.Column("beta", sa.Float),
    sa.Column("posterior_mean", sa.Float),
    sa.Column("ci_lower", sa.Float),
    sa.Column("ci_upper", sa.Float),
    sa.Column("above_population", sa.Boolean),
    sa.Column("updated_at", _ts),
)


# -- small value types ------------------------------------------------------------------------
@dataclass(frozen=True)
class VersionInfo:
    """One recorded version of a dataset.

    Attributes
    ----------
    id : int
        Database key of the version.
    dataset : str
        Dataset name.
    number : int
        1 for the first version of the dataset, then 2, 3, ...
    created_at : datetime
        When it was recorded (UTC).
    n_samples : int
    fingerprint : str
        BLAKE2b-256 over the sorted (id, content hash, label, contributor, source) rows.
    source : str or None
        Where the data came from (e.g. the file audited).
    created : bool
        True when the call that returned it recorded it (False: an identical version existed).
    """

    id: int
    dataset: str
    number: int
    created_at: _dt.datetime
    n_samples: int
    fingerprint: str
    source: Optional[str] = None
    created: bool = False


@dataclass(frozen=True)
class AuditInfo:
    """One recorded audit.

    Attributes
    ----------
    id : int
    dataset : str
    version : int
        The version number audited.
    version_id : int
    started_at, finished_at : datetime
    verdict : str
    summary, policy, diff : dict or None
        As given to :meth:`AuditRecorder.finish`; ``diff`` holds ``base_version`` and the counts.
    n_findings, n_flagged : int
    new_version : bool
        Whether this is the first audit of its version (False: a re-audit of identical data).
    """

    id: int
    dataset: str
    version: int
    version_id: int
    started_at: _dt.datetime
    finished_at: _dt.datetime
    verdict: str
    summary: Optional[dict] = None
    policy: Optional[dict] = None
    diff: Optional[dict] = None
    n_findings: int = 0
    n_flagged: int = 0
    new_version: bool = True


# -- helpers ------------------------------------------------------------------------------------
def default_ledger_url(environ: Optional[Mapping[str, str]] = None) -> str:
    """The ledger URL used when none is given: ``$MITHRIDATE_LEDGER`` or the user data dir file.

    Examples
    --------
    >>> default_ledger_url({"MITHRIDATE_LEDGER": "postgresql+psycopg://u@db/ledger"})
    'postgresql+psycopg://u@db/ledger'
    >>> default_ledger_url({"XDG_DATA_HOME": "/data", "HOME": "/home/u"})
    'sqlite:////data/mithridate/ledger.sqlite'
    """
    env = os.environ if environ is None else environ
    if env.get(ENV_VAR, "").strip():
        return env[ENV_VAR].strip()
    return f"sqlite:///{_default_path(env)}"


def _default_path(env: Mapping[str, str]) -> Path:
    xdg = env.get("XDG_DATA_HOME", "").strip()
    if xdg and os.path.isabs(xdg):  # the XDG spec: relative values are ignored
        base = Path(xdg)
    else:
        home = env.get("HOME") or str(Path.home())
        base = Path(home) / ".local" / "share"
    return base / "mithridate" / "ledger.sqlite"


def _safe(url: sa.URL) -> str:
    return url.render_as_string(hide_password=True)


def _mask(text: str) -> str:
    """Hide the password of any ``scheme://user:password@host`` in ``text``."""
    return re.sub(r"(://[^:/@\s]*:)[^@\s]*@", r"\1***@", text)


def _first_line(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None) or exc
    text = str(orig).strip() or type(orig).__name__
    return " ".join(text.splitlines()[0].split())


def _aware(t: Optional[_dt.datetime]) -> Optional[_dt.datetime]:
    if t is None or t.tzinfo is not None:
        return t
    return t.replace(tzinfo=_dt.timezone.utc)  # SQLite returns naive datetimes; we store UTC


def _jsonable(obj: Any, what: str) -> Any:
    """Plain JSON values (:func:`mithridate.utils.json_safe`, strict: refuse what is not JSON)."""
    out = json_safe(obj, strict_what=what)
    json.dumps(out)  # final check
    return out


def fingerprint(table: pd.DataFrame) -> str:
    """BLAKE2b-256 of a sample table's sorted (id, content_hash, label, contributor, source) rows."""
    cols = [["\x00" if v is None else v for v in table[c].tolist()] for c in
            ("id", "content_hash", "label", "contributor", "source")]
    rows = sorted(map("\x1f".join, zip(*cols)))
    del cols
    h = hashlib.blake2b(digest_size=32)
    for start in range(0, len(rows), 50_000):
        h.update("\x1e".join(rows[start:start + 50_000]).encode("utf-8", "surrogatepass"))
        h.update(b"\x1e")
    return h.hexdigest()


def _check_lengths(table: pd.DataFrame) -> None:
    for col, limit in (("id", MAX_ID_LENGTH), ("contributor", MAX_NAME_LENGTH), ("content_hash", 128)):
        vals = table[col].dropna()
        if len(vals):
            too_long = vals.map(len) > limit
            if too_long.any():
                raise DataError(
                    f"the ledger stores {col} values of at most {limit} characters; "
                    f"{vals[too_long].iloc[0][:40]!r}... is {len(vals[too_long].iloc[0])}"
                )


def _check_dataset_name(name: Any) -> str:
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(f"dataset name must be a non-empty string, got {name!r}")
    if len(name) > MAX_NAME_LENGTH:
        raise ConfigError(f"dataset name must have at most {MAX_NAME_LENGTH} characters")
    return name


def _tool_version() -> str:
    try:
        from mithridate import __version__

        return str(__version__)[:32]
    except Exception:  # pragma: no cover
        return "unknown"


# -- the ledger ------------------------------------------------------------------------------
class Ledger:
    """A provenance ledger in a SQLAlchemy database (SQLite file by default).

    Opening it connects, checks the schema and upgrades an older ledger in one transaction.

    Parameters
    ----------
    url : str or Path, optional
        A SQLAlchemy URL (``sqlite:///path/ledger.sqlite``, ``sqlite://`` for memory,
        ``postgresql+psycopg://user:pw@host/db`` ...) or a path to a SQLite file. Default:
        ``$MITHRIDATE_LEDGER``, else ``$XDG_DATA_HOME/mithridate/ledger.sqlite`` or
        ``~/.local/share/mithridate/ledger.sqlite``.
    echo : bool, default=False
        Log SQL statements (SQLAlchemy's ``echo``).
    must_exist : bool, default=False
        Refuse (:class:`LedgerError`) a SQLite file that does not exist yet instead of creating
        it: for commands that only read the ledger, where a mistyped path would otherwise show an
        empty new ledger.

    Attributes
    ----------
    url : str
        The URL in use, password masked.
    schema_version : int
        The schema version after opening (:data:`SCHEMA_VERSION`).
    upgraded_from : int or None
        The schema version found on open when an upgrade ran (0: a new ledger), else None.

    Raises
    ------
    LedgerError
        One line for an invalid URL, a missing database driver, an unreachable server, a file
        that is not a SQLite database, a directory that does not exist, a ledger newer than this
        version of mithridate, or a database that holds other tables of the same names.

    Examples
    --------
    >>> ledger = Ledger("sqlite://")
    >>> ledger.schema_version == SCHEMA_VERSION
    True
    >>> ledger.close()
    """

    def __init__(self, url: Union[str, Path, None] = None, *, echo: bool = False, must_exist: bool = False) -> None:
        create_dir = False
        if url is None:
            url = default_ledger_url()
            create_dir = not os.environ.get(ENV_VAR, "").strip()
        self._url = self._parse_url(url)
        self.url = _safe(self._url)
        if must_exist and self._url.drivername.startswith("sqlite"):
            db = self._url.database or ""
            if db and db != ":memory:" and not self._url.query.get("uri") and not Path(db).exists():
                raise LedgerError(f"no ledger at {db} (nothing has been audited there; the first `mithridate audit` "
                                  "with this --ledger creates it): check --ledger / $MITHRIDATE_LEDGER")
        self._engine = self._create_engine(self._url, create_dir=create_dir, echo=echo)
        self.upgraded_from: Optional[int] = None
        try:
            self.schema_version = self._open()
        except BaseException:
            self._engine.dispose()
            raise

    # -- engine and transactions ------------------------------------------------------------
    @staticmethod
    def _parse_url(url: Union[str, Path]) -> sa.URL:
        if isinstance(url, Path) or (isinstance(url, str) and "://" not in url):
            if not str(url).strip():
                raise LedgerError("the ledger URL is empty; pass a SQLAlchemy URL or a SQLite file path")
            return sa.URL.create("sqlite", database=str(Path(url).expanduser()))
        if not isinstance(url, str):
            raise LedgerError(f"the ledger URL must be a string or a path, got {type(url).__name__}")
        try:
            parsed = sa.make_url(url)
        except Exception as exc:  # ArgumentError, ValueError
            raise LedgerError(f"invalid ledger URL {_mask(url)!r}: {_mask(_first_line(exc))}") from None
        if parsed.drivername.startswith("sqlite") and (parsed.database or "").startswith("~"):
            parsed = parsed.set(database=str(Path(parsed.database).expanduser()))
        return parsed

    @staticmethod
    def _create_engine(url: sa.URL, *, create_dir: bool, echo: bool) -> Engine:
        safe = _safe(url)
        try:
            backend = url.get_backend_name()
        except Exception as exc:
            raise LedgerError(f"invalid ledger URL {safe}: {_first_line(exc)}") from None
        kwargs: dict = {"echo": echo}
        if backend == "sqlite":
            db = url.database
            if db in (None, "", ":memory:") or str(db).startswith("file::memory:"):
                kwargs["poolclass"] = sa.pool.StaticPool
                kwargs["connect_args"] = {"check_same_thread": False}
            elif url.query.get("uri"):  # sqlite:///file:...?uri=true: the driver parses it
                kwargs["connect_args"] = {"timeout": 30}
            else:
                path = Path(db).expanduser()
                if create_dir:
                    try:
                        path.parent.mkdir(parents=True, exist_ok=True)
                    except OSError as exc:
                        raise LedgerError(f"cannot create the ledger directory {path.parent}: {exc.strerror}") from None
                if path.is_dir():
                    raise LedgerError(f"the ledger path {path} is a directory; give a file name such as {path / 'ledger.sqlite'}")
                if not path.parent.is_dir():
                    raise LedgerError(f"cannot open ledger {path}: directory {path.parent} does not exist")
                kwargs["connect_args"] = {"timeout": 30}
        elif backend == "postgresql" and "connect_timeout" not in url.query:
            kwargs["connect_args"] = {"connect_timeout": 10}
        try:
            engine = sa.create_engine(url, **kwargs)
        except (ImportError, sa.exc.NoSuchModuleError) as exc:
            hint = " (pip install 'mithridate[postgres]')" if backend == "postgresql" else ""
            raise LedgerError(f"cannot use ledger URL {safe}: database driver not available{hint}: {_first_line(exc)}") from None
        except Exception as exc:  # ArgumentError, TypeError for bad query options
            raise LedgerError(f"cannot use ledger URL {safe}: {_first_line(exc)}") from None
        if backend == "sqlite":
            _sqlite_transactions(engine)
        return engine

    @contextlib.contextmanager
    def _errors(self, action: str) -> Iterator[None]:
        try:
            yield
        except sa.exc.DBAPIError as exc:  # connection, locking, permission, integrity ...
            raise LedgerError(f"{action} {self.url}: {_mask(_first_line(exc))}") from exc

    @contextlib.contextmanager
    def _read(self, action: str = "cannot read ledger") -> Iterator[Connection]:
        with self._errors(action), self._engine.connect() as conn:
            with conn.begin():
                yield conn

    @contextlib.contextmanager
    def _write(self, action: str = "cannot write to ledger") -> Iterator[Connection]:
        """One write transaction: BEGIN IMMEDIATE on SQLite, the advisory lock on PostgreSQL."""
        with self._errors(action), self._engine.connect() as conn:
            conn.execution_options(mithridate_write=True)
            with conn.begin():
                if conn.dialect.name == "postgresql":
                    conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": PG_LOCK_KEY})
                yield conn

    def check_writable(self) -> None:
        """Raise :class:`LedgerError` now if an audit could not be recorded: a write transaction
        rewrites one row of the schema table with its own values and is rolled back (nothing
        changes). A read-only file, mount or database user is found before the audit's work, not
        after it."""
        from mithridate.audit.migrations import _schema_table

        table = _schema_table()
        with self._errors("cannot write to ledger"), self._engine.connect() as conn:
            conn.execution_options(mithridate_write=True)
            trans = conn.begin()
            try:
                conn.execute(sa.update(table).where(table.c.version == SCHEMA_VERSION)
                             .values(version=table.c.version))
            finally:
                trans.rollback()

    def _open(self) -> int:
        with self._errors("cannot open ledger"):
            with self._read("cannot open ledger") as conn:
                found = schema_version(conn)
            if found > SCHEMA_VERSION:
                raise LedgerError(
                    f"the ledger {self.url} has schema version {found}, newer than this mithridate "
                    f"supports ({SCHEMA_VERSION}); upgrade mithridate to use it"
                )
            if found < SCHEMA_VERSION:
                with self._write("cannot upgrade ledger") as conn:
                    before = schema_version(conn)
                    if upgrade(conn):
                        self.upgraded_from = before
            return SCHEMA_VERSION

    def close(self) -> None:
        """Release the database connections."""
        self._engine.dispose()

    def __enter__(self) -> "Ledger":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Ledger({self.url!r})"

    # -- lookups ----------------------------------------------------------------------------
    @staticmethod
    def _dataset_id(conn: Connection, name: str) -> Optional[int]:
        return conn.execute(sa.select(datasets_t.c.id).where(datasets_t.c.name == name)).scalar()

    def _require_dataset(self, conn: Connection, name: str) -> int:
        ds_id = self._dataset_id(conn, _check_dataset_name(name))
        if ds_id is None:
            known = conn.execute(sa.select(datasets_t.c.name).order_by(datasets_t.c.name).limit(10)).scalars().all()
            raise ConfigError(f"the ledger has no dataset named {name!r}; known: {known}")
        return ds_id

    @staticmethod
    def _version_info(row: Any, name: str, created: bool = False) -> VersionInfo:
        return VersionInfo(
            id=int(row.id), dataset=name, number=int(row.number), created_at=_aware(row.created_at),
            n_samples=int(row.n_samples), fingerprint=row.fingerprint, source=row.source, created=created,
        )

    @staticmethod
    def _version_rows(conn: Connection, ds_id: int, *, number: Optional[int] = None, latest: int = 0) -> list:
        q = sa.select(versions_t).where(versions_t.c.dataset_id == ds_id)
        if number is not None:
            q = q.where(versions_t.c.number == number)
        q = q.order_by(versions_t.c.number.desc())
        if latest:
            q = q.limit(latest)
        return conn.execute(q).all()

    def _version_row(self, conn: Connection, name: str, version: Optional[int]) -> Any:
        ds_id = self._require_dataset(conn, name)
        rows = self._version_rows(conn, ds_id, number=version, latest=1)
        if not rows:
            what = "no versions" if version is None else f"no version {version}"
            raise ConfigError(f"dataset {name!r} has {what} in the ledger")
        return rows[0]

    @staticmethod
    def _samples_of(conn: Connection, version_id: int, *, full: bool = True) -> pd.DataFrame:
        """A version's sample table in recorded order (``full=False``: only what a diff needs)."""
        s = samples_t.c
        cols = ["id", "content_hash", "label", "contributor", "source", "first_seen"]
        sel = [s.sample_id, s.content_hash, s.label, s.contributor, s.source, s.first_seen]
        if not full:
            cols, sel = [cols[i] for i in (0, 1, 2, 5)], [sel[i] for i in (0, 1, 2, 5)]
        rows = conn.execute(sa.select(*sel).where(s.version_id == version_id).order_by(s.id)).all()
        data = list(zip(*rows)) if rows else [()] * len(cols)
        del rows
        df = pd.DataFrame({"id": pd.Series(list(data[0]), dtype=object)})
        for c, v in zip(cols[1:-1], data[1:-1]):
            v = list(v)
            if c != "content_hash":  # few distinct values: share one object per value
                cache: dict = {}
                v = [x if x is None else cache.setdefault(x, x) for x in v]
            df[c] = pd.Series(v, dtype=object)
        df["first_seen"] = pd.array(list(data[-1]), dtype="Int64")
        return df

    def datasets(self) -> pd.DataFrame:
        """The datasets in the ledger: ``name``, ``created_at``, ``n_versions``, ``n_audits``."""
        v, a, d = versions_t.c, audits_t.c, datasets_t.c
        nv = sa.select(sa.func.count()).where(v.dataset_id == d.id).scalar_subquery()
        na = (
            sa.select(sa.func.count()).select_from(audits_t.join(versions_t, a.version_id == v.id))
            .where(v.dataset_id == d.id).scalar_subquery()
        )
        with self._read() as conn:
            rows = conn.execute(sa.select(d.name, d.created_at, nv, na).order_by(d.name)).all()
        df = pd.DataFrame.from_records(rows, columns=["name", "created_at", "n_versions", "n_audits"])
        df["created_at"] = [_aware(t) for t in df["created_at"]]
        return df

    def previous_version(self, dataset_name: str) -> Optional[VersionInfo]:
        """The latest recorded version of ``dataset_name``, or None (unknown dataset / none yet)."""
        name = _check_dataset_name(dataset_name)
        with self._read() as conn:
            ds_id = self._dataset_id(conn, name)
            rows = self._version_rows(conn, ds_id, latest=1) if ds_id is not None else []
        return self._version_info(rows[0], name) if rows else None

    def versions(self, dataset_name: str) -> pd.DataFrame:
        """All versions of a dataset, oldest first.

        Columns: ``version`` (number), ``version_id``, ``created_at``, ``n_samples``, ``source``,
        ``fingerprint``, ``n_audits``, ``last_verdict``.
        """
        a = audits_t.c
        with self._read() as conn:
            ds_id = self._require_dataset(conn, dataset_name)
            rows = self._version_rows(conn, ds_id)
            counts = dict(
                conn.execute(
                    sa.select(a.version_id, sa.func.count()).where(a.version_id.in_([r.id for r in rows]))
                    .group_by(a.version_id)
                ).all()
            ) if rows else {}
            last = {}
            for vid, verdict in conn.execute(
                sa.select(a.version_id, a.verdict).where(a.version_id.in_([r.id for r in rows])).order_by(a.id)
            ).all() if rows else []:
                last[vid] = verdict
        recs = [
            {"version": r.number, "version_id": r.id, "created_at": _aware(r.created_at), "n_samples": r.n_samples,
             "source": r.source, "fingerprint": r.fingerprint, "n_audits": int(counts.get(r.id, 0)),
             "last_verdict": last.get(r.id)}
            for r in reversed(rows)
        ]
        cols = ["version", "version_id", "created_at", "n_samples", "source", "fingerprint", "n_audits", "last_verdict"]
        return pd.DataFrame.from_records(recs, columns=cols)

    def samples(self, dataset_name: str, version: Optional[int] = None) -> pd.DataFrame:
        """The sample table of one version (default: the latest), in recorded order.

        Columns: ``id``, ``content_hash``, ``label``, ``contributor``, ``source`` (strings or
        None) and ``first_seen`` (version number). It can be passed to
        :func:`~mithridate.audit.diff.diff_versions`.
        """
        with self._read() as conn:
            row = self._version_row(conn, dataset_name, version)
            return self._samples_of(conn, row.id)

    def diff(self, dataset_name: str, old: Optional[int] = None, new: Optional[int] = None) -> VersionDiff:
        """The diff between two recorded versions (default: the latest against the one before)."""
        with self._read() as conn:
            new_row = self._version_row(conn, dataset_name, new)
            old_number = new_row.number - 1 if old is None else old
            new_t = self._samples_of(conn, new_row.id)
            if old_number < 1:
                return diff_versions(None, new_t)
            old_t = self._samples_of(conn, self._version_row(conn, dataset_name, old_number).id)
        return diff_versions(old_t, new_t)

    def audits(self, dataset_name: str) -> pd.DataFrame:
        """All audits of a dataset, oldest first.

        Columns: ``audit_id``, ``version``, ``started_at``, ``finished_at``, ``verdict``,
        ``n_findings``, ``n_flagged``, ``summary``, ``policy``, ``diff`` (dicts).
        """
        a, v, f = audits_t.c, versions_t.c, findings_t.c
        nf = sa.select(sa.func.count()).where(f.audit_id == a.id).scalar_subquery()
        nflag = sa.select(sa.func.count()).where(f.audit_id == a.id, f.flagged.is_(True)).scalar_subquery()
        with self._read() as conn:
            ds_id = self._require_dataset(conn, dataset_name)
            rows = conn.execute(
                sa.select(a.id, v.number, a.started_at, a.finished_at, a.verdict, nf, nflag, a.summary, a.policy, a.diff)
                .select_from(audits_t.join(versions_t, a.version_id == v.id))
                .where(v.dataset_id == ds_id).order_by(a.id)
            ).all()
        cols = ["audit_id", "version", "started_at", "finished_at", "verdict", "n_findings", "n_flagged",
                "summary", "policy", "diff"]
        df = pd.DataFrame.from_records(rows, columns=cols)
        for c in ("started_at", "finished_at"):
            df[c] = pd.Series([_aware(t) for t in df[c]], dtype=object)
        return df

    def latest_summary(self, dataset_name: str) -> Optional[dict]:
        """The summary of the dataset's most recent audit (None when it has none, or the dataset
        is not in the ledger); one row read, unlike :meth:`audits`."""
        a, v, d = audits_t.c, versions_t.c, datasets_t.c
        with self._read() as conn:
            row = conn.execute(
                sa.select(a.summary, v.number).select_from(audits_t.join(versions_t, a.version_id == v.id)
                                                           .join(datasets_t, v.dataset_id == d.id))
                .where(d.name == str(dataset_name)).order_by(a.id.desc()).limit(1)
            ).first()
        if row is None or not isinstance(row.summary, dict):
            return None
        return {**row.summary, "_version": int(row.number)}

    def get_audit(self, audit_id: int) -> AuditInfo:
        """One audit by id (as returned in :attr:`AuditRecorder.result` or :meth:`audits`)."""
        a, v, d, f = audits_t.c, versions_t.c, datasets_t.c, findings_t.c
        with self._read() as conn:
            row = conn.execute(
                sa.select(audits_t, v.number, d.name)
                .select_from(audits_t.join(versions_t, a.version_id == v.id).join(datasets_t, v.dataset_id == d.id))
                .where(a.id == int(audit_id))
            ).first()
            if row is None:
                raise ConfigError(f"the ledger has no audit with id {audit_id}")
            nf, nflag = conn.execute(
                sa.select(sa.func.count(), sa.func.coalesce(sa.func.sum(sa.case((f.flagged.is_(True), 1), else_=0)), 0))
                .where(f.audit_id == row.id)
            ).one()
            first = conn.execute(sa.select(sa.func.min(a.id)).where(a.version_id == row.version_id)).scalar()
        return AuditInfo(
            id=row.id, dataset=row.name, version=row.number, version_id=row.version_id,
            started_at=_aware(row.started_at), finished_at=_aware(row.finished_at), verdict=row.verdict,
            summary=row.summary, policy=row.policy, diff=row.diff, n_findings=int(nf), n_flagged=int(nflag),
            new_version=(first == row.id),
        )

    def findings(self, audit_id: int) -> pd.DataFrame:
        """The findings of one audit joined with their samples, in sample order.

        Columns: ``id``, ``score``, ``flagged``, ``reasons``, one column per detector score,
        then ``label``, ``contributor``, ``source``, ``content_hash``, ``first_seen``.
        """
        f, s, a = findings_t.c, samples_t.c, audits_t.c
        with self._read() as conn:
            vid = conn.execute(sa.select(a.version_id).where(a.id == int(audit_id))).scalar()
            if vid is None:
                raise ConfigError(f"the ledger has no audit with id {audit_id}")
            rows = conn.execute(
                sa.select(f.sample_id, f.score, f.flagged, f.reasons, f.detector_scores,
                          s.label, s.contributor, s.source, s.content_hash, s.first_seen)
                .select_from(findings_t.join(samples_t, sa.and_(s.version_id == vid, s.sample_id == f.sample_id)))
                .where(f.audit_id == int(audit_id)).order_by(s.id)
            ).all()
        names = ["id", "score", "flagged", "reasons", "detector_scores", "label", "contributor",
                 "source", "content_hash", "first_seen"]
        data = list(zip(*rows)) if rows else [[] for _ in names]
        base = pd.DataFrame({c: pd.Series(list(v), dtype=object) for c, v in zip(names, data)})
        base["first_seen"] = pd.array(list(data[-1]), dtype="Int64")
        det = pd.DataFrame.from_records([r or {} for r in base["detector_scores"]], index=base.index)
        det = det.astype(float) if len(det.columns) else det
        out = pd.concat([base[["id", "score", "flagged", "reasons"]], det,
                         base[["label", "contributor", "source", "content_hash", "first_seen"]]], axis=1)
        out["flagged"] = out["flagged"].astype(bool)
        out["score"] = out["score"].astype(float)
        return out

    def contributors(self, dataset_name: str, *, prior: PriorSpec = "empirical", level: float = 0.95,
                     simultaneous: bool = False, min_samples: int = 10) -> pd.DataFrame:
        """Contributor reputation of a dataset, most suspicious first.

        The cumulative counts stored in the ledger (see the module docstring) run through
        :func:`~mithridate.audit.reputation.reputation_table`; the result has its columns plus
        ``n_audits``, ``first_version`` and ``last_version``. With the default ``prior`` and
        ``level`` the posterior equals what the ledger stored at the last audit.
        ``simultaneous``: ``level`` holds for the m contributors with at least ``min_samples``
        samples together (each interval at 1 - (1 - level) / m, Bonferroni), as the audit gate's
        does for the contributors it tests (``attrs["level_each"]``).
        """
        c = contributors_t.c
        with self._read() as conn:
            ds_id = self._require_dataset(conn, dataset_name)
            rows = conn.execute(
                sa.select(c.name, c.n_total, c.n_flagged, c.n_audits, c.first_version, c.last_version)
                .where(c.dataset_id == ds_id).order_by(c.name)
            ).all()
            factors = self._latest_factors(conn, ds_id)
        extra = pd.DataFrame.from_records(
            rows, columns=["contributor", "n", "flagged", "n_audits", "first_version", "last_version"]
        )
        level_each = simultaneous_level(level, int((extra["n"] >= int(min_samples)).sum())) if simultaneous \
            else float(level)
        table = reputation_table(with_class_mix(extra[["contributor", "n", "flagged"]], factors), prior=prior,
                                 level=level_each)
        attrs = dict(table.attrs, level_each=level_each)
        extra["contributor"] = extra["contributor"].astype(object)
        table["contributor"] = table["contributor"].astype(object)
        out = table.merge(extra[["contributor", "n_audits", "first_version", "last_version"]], on="contributor", how="left")
        out.attrs.update(attrs)
        return out

    @staticmethod
    def _latest_factors(conn: Connection, ds_id: int) -> Optional[pd.DataFrame]:
        """Class-mix factors of the audit that last updated the reputation (the first audit of the
        latest audited version; re-audits change nothing): its samples' labels, contributors, flags."""
        f, s, a, v = findings_t.c, samples_t.c, audits_t.c, versions_t.c
        last = conn.execute(
            sa.select(a.id, a.version_id).join(versions_t, a.version_id == v.id)
            .where(v.dataset_id == ds_id).order_by(v.number.desc(), a.id.asc()).limit(1)
        ).first()
        if last is None:
            return None
        rows = conn.execute(
            sa.select(s.contributor, s.label, f.flagged)
            .select_from(findings_t.join(samples_t, sa.and_(s.version_id == last.version_id,
                                                            s.sample_id == f.sample_id)))
            .where(f.audit_id == last.id, s.contributor.is_not(None))
        ).all()
        if not rows:
            return None
        who, lab, flg = zip(*rows)
        return class_mix_factors(list(who), list(lab), np.asarray([bool(x) for x in flg]))

    def contributor_history(self, dataset_name: str) -> pd.DataFrame:
        """Per audit and contributor, how many samples were audited and flagged (for trends).

        Unlike the cumulative counts, this counts *every* sample of each audit. Columns:
        ``audit_id``, ``version``, ``contributor``, ``n``, ``flagged``, ``rate``.
        """
        f, s, a, v = findings_t.c, samples_t.c, audits_t.c, versions_t.c
        flag_int = sa.case((f.flagged.is_(True), 1), else_=0)
        with self._read() as conn:
            ds_id = self._require_dataset(conn, dataset_name)
            rows = conn.execute(
                sa.select(a.id, v.number, s.contributor, sa.func.count(), sa.func.sum(flag_int))
                .select_from(
                    findings_t.join(audits_t, f.audit_id == a.id)
                    .join(versions_t, a.version_id == v.id)
                    .join(samples_t, sa.and_(s.version_id == v.id, s.sample_id == f.sample_id))
                )
                .where(v.dataset_id == ds_id, s.contributor.is_not(None))
                .group_by(a.id, v.number, s.contributor)
                .order_by(a.id, s.contributor)
            ).all()
        df = pd.DataFrame.from_records(rows, columns=["audit_id", "version", "contributor", "n", "flagged"])
        df["n"] = df["n"].astype(np.int64)
        df["flagged"] = df["flagged"].astype(np.int64)
        df["rate"] = df["flagged"] / df["n"]
        return df

    # -- writing ------------------------------------------------------------------------------
    def audit(self, dataset_name: str, data: SampleData, *, source: Optional[str] = None) -> "AuditRecorder":
        """Start recording an audit of ``data`` as the next version of ``dataset_name``.

        Use it as a context manager; see :class:`AuditRecorder`. Reads the previous version and
        computes the diff now; writes nothing until the ``with`` block exits normally.

        Parameters
        ----------
        dataset_name : str
            The dataset's name in the ledger (created on the first audit).
        data : Dataset or DataFrame
            The version being audited, or its sample table (``id``, ``content_hash``,
            ``label``, optional ``contributor`` / ``source``; see
            :func:`~mithridate.audit.diff.sample_table`).
        source : str, optional
            Where this version came from (a path or URL), stored with the version.
        """
        return AuditRecorder(self, dataset_name, data, source=source)

    def record_version(self, dataset_name: str, data: SampleData, *, source: Optional[str] = None) -> VersionInfo:
        """Record a version without an audit (one transaction). Identical data reuses the latest version.

        Its samples are judged (counted towards contributors) by the first audit of that
        version, if any.
        """
        plan = _Plan.prepare(self, dataset_name, data, source)
        with self._write() as conn:
            version, _ = self._write_version(conn, plan)
        return version

    def _write_version(self, conn: Connection, plan: "_Plan") -> tuple:
        """Insert the dataset/version/samples of ``plan`` (or reuse the latest version)."""
        now = utcnow()
        ds_id = self._dataset_id(conn, plan.name)
        if ds_id is None:
            ds_id = conn.execute(datasets_t.insert().values(name=plan.name, created_at=now)).inserted_primary_key[0]
        rows = self._version_rows(conn, ds_id, latest=1)
        latest = rows[0] if rows else None
        if (latest.id if latest else None) != plan.latest_id:
            seen = f"version {latest.number}" if latest else "no version"
            raise LedgerError(
                f"dataset {plan.name!r} changed in the ledger during this audit (it now has {seen}); "
                "nothing was recorded: run the audit again"
            )
        if plan.reuse:
            return self._version_info(latest, plan.name), latest.id
        number = latest.number + 1 if latest else 1
        vid = conn.execute(
            versions_t.insert().values(
                dataset_id=ds_id, number=number, created_at=now, n_samples=len(plan.table),
                fingerprint=plan.fingerprint, source=plan.source,
            )
        ).inserted_primary_key[0]
        t = plan.table
        first = first_seen_versions(plan.diff, plan.base_samples, number)
        _bulk_insert(conn, samples_t, {
            "version_id": [vid] * len(t), "sample_id": t["id"].tolist(), "content_hash": t["content_hash"].tolist(),
            "label": t["label"].tolist(), "contributor": t["contributor"].tolist(), "source": t["source"].tolist(),
            "first_seen": first.tolist(),
        })
        row = conn.execute(sa.select(versions_t).where(versions_t.c.id == vid)).one()
        return self._version_info(row, plan.name, created=True), vid

    def _commit_audit(self, rec: "AuditRecorder") -> AuditInfo:
        plan = rec._plan
        findings = rec._findings_frame()
        with self._write("cannot record the audit in ledger") as conn:
            version, vid = self._write_version(conn, plan)
            first_audit = conn.execute(sa.select(sa.func.count()).where(audits_t.c.version_id == vid)).scalar() == 0
            judged = conn.execute(  # has an earlier audit of this version recorded findings?
                sa.select(findings_t.c.id).select_from(findings_t.join(audits_t, findings_t.c.audit_id == audits_t.c.id))
                .where(audits_t.c.version_id == vid).limit(1)
            ).first() is not None
            diff_info = {"base_version": plan.base.number if plan.base else None, "counts": plan.diff.counts}
            finished = rec._finished_at
            aid = conn.execute(
                audits_t.insert().values(
                    version_id=vid, started_at=rec.started_at, finished_at=finished, verdict=rec._verdict,
                    summary=rec._summary, policy=rec._policy, diff=diff_info, tool_version=_tool_version(),
                )
            ).inserted_primary_key[0]
            if findings is not None:
                _bulk_insert(conn, findings_t, dict(findings["columns"], audit_id=[aid] * findings["n"]))
            if not judged and findings is not None:
                self._update_contributors(conn, plan, version, findings["ids"], findings["flagged"])
        n_flag = 0 if findings is None else int(findings["flagged"].sum())
        return AuditInfo(
            id=int(aid), dataset=plan.name, version=version.number, version_id=int(vid),
            started_at=rec.started_at, finished_at=finished, verdict=rec._verdict, summary=rec._summary,
            policy=rec._policy, diff=diff_info, n_findings=0 if findings is None else findings["n"],
            n_flagged=n_flag, new_version=first_audit,
        )

    def _update_contributors(self, conn: Connection, plan: "_Plan", version: VersionInfo,
                             ids: np.ndarray, flagged: np.ndarray) -> None:
        t = plan.table
        found = pd.Series(flagged.astype(np.int8), index=pd.Index(ids, dtype=object)).reindex(t["id"].to_numpy())
        has = found.notna().to_numpy()
        who = t["contributor"].to_numpy(dtype=object)
        sel = plan.diff.changed & has & pd.notna(who)
        now = utcnow()
        c = contributors_t.c
        ds_id = self._dataset_id(conn, plan.name)
        if sel.any():
            inc = pd.DataFrame({"contributor": who[sel], "flagged": found.to_numpy()[sel].astype(np.int64)})
            inc = inc.groupby("contributor", sort=True)["flagged"].agg(["size", "sum"])
            existing = dict(conn.execute(sa.select(c.name, c.id).where(c.dataset_id == ds_id)).all())
            updates, inserts = [], []
            for name, (n, k) in zip(inc.index.tolist(), inc.to_numpy().tolist()):
                if name in existing:
                    updates.append({"pk": existing[name], "dn": int(n), "dk": int(k), "lv": version.number})
                else:
                    inserts.append({"dataset_id": ds_id, "name": name, "n_total": int(n), "n_flagged": int(k),
                                    "n_audits": 1, "first_version": version.number, "last_version": version.number,
                                    "updated_at": now})
            if updates:
                conn.execute(
                    contributors_t.update().where(c.id == sa.bindparam("pk")).values(
                        n_total=c.n_total + sa.bindparam("dn"), n_flagged=c.n_flagged + sa.bindparam("dk"),
                        n_audits=c.n_audits + 1, last_version=sa.bindparam("lv"),
                    ),
                    updates,
                )
            if inserts:
                conn.execute(contributors_t.insert(), inserts)
        self._refresh_reputation(conn, ds_id, now, factors=class_mix_factors(
            t["contributor"].to_numpy(dtype=object)[has], t["label"].to_numpy(dtype=object)[has],
            found.to_numpy()[has].astype(bool)))

    @staticmethod
    def _refresh_reputation(conn: Connection, ds_id: int, now: _dt.datetime,
                            factors: Optional[pd.DataFrame] = None) -> None:
        c = contributors_t.c
        rows = conn.execute(sa.select(c.id, c.name, c.n_total, c.n_flagged).where(c.dataset_id == ds_id)).all()
        if not rows:
            return
        counts = pd.DataFrame.from_records([(r.name, r.n_total, r.n_flagged) for r in rows],
                                           columns=["contributor", "n", "flagged"])
        rep = reputation_table(with_class_mix(counts, factors)).set_index("contributor")
        conn.execute(
            contributors_t.update().where(c.id == sa.bindparam("pk")).values(
                alpha=sa.bindparam("a"), beta=sa.bindparam("b"), posterior_mean=sa.bindparam("m"),
                ci_lower=sa.bindparam("lo"), ci_upper=sa.bindparam("hi"), above_population=sa.bindparam("ab"),
                updated_at=sa.bindparam("now"),
            ),
            [
                {"pk": r.id, "a": float(rep.at[r.name, "alpha"]), "b": float(rep.at[r.name, "beta"]),
                 "m": float(rep.at[r.name, "posterior_mean"]), "lo": float(rep.at[r.name, "ci_lower"]),
                 "hi": float(rep.at[r.name, "ci_upper"]), "ab": bool(rep.at[r.name, "above_population"]),
                 "now": now}
                for r in rows
            ],
        )


def _bulk_insert(conn: Connection, table: sa.Table, data: Mapping[str, list], chunk: int = 20_000) -> None:
    """Insert many rows given column-wise (``{column: values}``), in chunks.

    SQLite: the driver's ``executemany`` straight away; PostgreSQL with psycopg 3: ``COPY ...
    FROM STDIN`` on the transaction's own connection. Both are several times faster than
    SQLAlchemy's per-row parameter processing (JSON columns are serialised here, exactly as
    SQLAlchemy's JSON type would). Other databases: a Core ``insert()`` executemany.
    """
    columns = list(data)
    values = [data[c] for c in columns]
    n = len(values[0]) if values else 0
    is_json = [isinstance(table.c[c].type, sa.JSON) for c in columns]
    mode = "core"
    prep = conn.dialect.identifier_preparer
    cols_sql = ", ".join(prep.quote(c) for c in columns)
    if conn.dialect.name == "sqlite":
        mode = "sqlite"
        sql = f"INSERT INTO {prep.format_table(table)} ({cols_sql}) VALUES ({', '.join('?' for _ in columns)})"
    elif conn.dialect.name == "postgresql" and conn.dialect.driver == "psycopg":
        mode = "copy"
        sql = f"COPY {prep.format_table(table)} ({cols_sql}) FROM STDIN"
    for start in range(0, n, chunk):
        part = [v[start:start + chunk] for v in values]
        if mode == "core":
            conn.execute(table.insert(), [dict(zip(columns, r)) for r in zip(*part)])
            continue
        part = [[None if x is None else json.dumps(x) for x in v] if j else v for v, j in zip(part, is_json)]
        if mode == "sqlite":
            conn.exec_driver_sql(sql, list(zip(*part)))
        else:
            cur = conn.connection.dbapi_connection.cursor()
            try:
                with cur.copy(sql) as copy:
                    for row in zip(*part):
                        copy.write_row(row)
            finally:
                cur.close()


def _sqlite_transactions(engine: Engine) -> None:
    """Make pysqlite transactional for DDL too, with BEGIN IMMEDIATE for writes.

    pysqlite only opens transactions implicitly before DML; SQLAlchemy's documented recipe is
    to switch its implicit handling off and emit BEGIN ourselves. Writes take the write lock at
    BEGIN (IMMEDIATE), so two audits never deadlock upgrading a read lock.
    """

    @sa.event.listens_for(engine, "connect")
    def _connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA foreign_keys = ON")
        cur.close()

    @sa.event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        immediate = conn.get_execution_options().get("mithridate_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


# -- recording an audit -------------------------------------------------------------------------
@dataclass
class _Plan:
    """What an audit will write, prepared (read-only) when the audit starts."""

    name: str
    table: pd.DataFrame
    fingerprint: str
    source: Optional[str]
    latest_id: Optional[int]
    reuse: bool
    base: Optional[VersionInfo]
    base_samples: Optional[pd.DataFrame]
    diff: VersionDiff
    same_as: Optional[int] = None

    @classmethod
    def prepare(cls, ledger: Ledger, name: str, data: SampleData, source: Optional[str]) -> "_Plan":
        name = _check_dataset_name(name)
        if source is not None and not isinstance(source, (str, Path)):
            raise ConfigError(f"source must be a string, got {type(source).__name__}")
        table = sample_table(data)
        if not len(table):
            raise DataError("cannot record an empty version (0 samples)")
        _check_lengths(table)
        fp = fingerprint(table)
        with ledger._read() as conn:
            ds_id = ledger._dataset_id(conn, name)
            rows = ledger._version_rows(conn, ds_id, latest=2) if ds_id is not None else []
            latest = rows[0] if rows else None
            reuse = latest is not None and latest.fingerprint == fp
            base_row = (rows[1] if len(rows) > 1 else None) if reuse else latest
            base_samples = ledger._samples_of(conn, base_row.id, full=False) if base_row is not None else None
            same_as = None
            if ds_id is not None and not reuse:  # an older version audited again (a rollback)
                v = versions_t.c
                same_as = conn.execute(sa.select(sa.func.max(v.number))
                                       .where(v.dataset_id == ds_id, v.fingerprint == fp)).scalar()
        base = ledger._version_info(base_row, name) if base_row is not None else None
        return cls(
            name=name, table=table, fingerprint=fp, source=None if source is None else str(source),
            latest_id=latest.id if latest else None, reuse=reuse, base=base, base_samples=base_samples,
            diff=_diff_tables(base_samples, table), same_as=None if same_as is None else int(same_as),
        )


class AuditRecorder:
    """Records one audit atomically; get one from :meth:`Ledger.audit` and use it in ``with``.

    On entering, the previous version and the diff are ready (read-only). Findings and the
    verdict are collected in memory; when the ``with`` block exits normally, everything is
    written in one transaction, and :attr:`result` holds the :class:`AuditInfo`. An exception
    (or KeyboardInterrupt) inside the block discards the audit: nothing is written. Leaving the
    block without calling :meth:`finish` raises :class:`LedgerError` and writes nothing.

    Attributes
    ----------
    dataset_name : str
    samples : DataFrame
        The sample table of the version being audited.
    previous : VersionInfo or None
        The version the diff is against (None for the first version of a dataset).
    previous_samples : DataFrame or None
        Its sample table.
    diff : VersionDiff
        ``diff_versions(previous_samples, samples)``.
    reused_version : bool
        True when the data are identical to the latest recorded version: the audit will be
        added to that version (and ``previous`` is the version before it).
    same_content_as : int or None
        The number of an older version with identical data (a rollback), else None.
    started_at : datetime
        UTC time the recorder was created.
    result : AuditInfo or None
        Set after a successful write.

    Examples
    --------
    >>> with ledger.audit("reviews", ds, source="reviews.parquet") as audit:   # doctest: +SKIP
    ...     new = audit.diff.new_ids                 # give new samples extra scrutiny
    ...     findings = run_detectors(ds)             # id, score, flagged, reasons, per-detector scores
    ...     audit.add_findings(findings)
    ...     audit.finish("fail", summary={...}, policy=policy_dict)
    >>> audit.result.id                              # doctest: +SKIP
    """

    def __init__(self, ledger: Ledger, dataset_name: str, data: SampleData, *, source: Optional[str] = None) -> None:
        self.started_at = utcnow()
        self._ledger = ledger
        self._plan = _Plan.prepare(ledger, dataset_name, data, source)
        self.dataset_name = self._plan.name
        self._frames: list = []
        self._findings: Optional[dict] = None
        self._verdict: Optional[str] = None
        self._summary: Optional[dict] = None
        self._policy: Optional[dict] = None
        self._finished_at: Optional[_dt.datetime] = None
        self._state = "open"
        self.result: Optional[AuditInfo] = None

    # read-only views
    @property
    def samples(self) -> pd.DataFrame:
        return self._plan.table

    @property
    def previous(self) -> Optional[VersionInfo]:
        return self._plan.base

    @property
    def previous_samples(self) -> Optional[pd.DataFrame]:
        return self._plan.base_samples

    @property
    def diff(self) -> VersionDiff:
        return self._plan.diff

    @property
    def reused_version(self) -> bool:
        return self._plan.reuse

    @property
    def same_content_as(self) -> Optional[int]:
        """The number of an *older* version with exactly these data (not the latest: that one is
        reused), or None. The audit is still recorded as a new version diffed against the latest."""
        return self._plan.same_as

    def __enter__(self) -> "AuditRecorder":
        if self._state != "open":
            raise LedgerError("this audit recorder was already used; call ledger.audit(...) again")
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> bool:
        if self._state not in ("open", "finished"):
            return False
        if exc_type is not None:
            self._state = "discarded"
            return False  # nothing was written; let the exception through
        if self._state != "finished":
            self._state = "discarded"
            raise LedgerError(
                f"the audit of {self.dataset_name!r} ended without finish(verdict); nothing was recorded"
            )
        self._state = "committing"
        try:
            self.result = self._ledger._commit_audit(self)
        finally:
            self._state = "done" if self.result is not None else "discarded"
            self._findings = None  # written (or dropped): free the buffers
            self._frames = []
        return False

    def _check_open(self) -> None:
        if self._state == "finished":
            raise LedgerError(f"finish() was already called for the audit of {self.dataset_name!r}; "
                              "add findings before finishing")
        if self._state != "open":
            raise LedgerError(f"the audit of {self.dataset_name!r} is {self._state}; start a new one")

    def add_findings(self, findings: pd.DataFrame) -> None:
        """Add per-sample findings (may be called several times, for disjoint ids).

        Parameters
        ----------
        findings : DataFrame
            ``id`` (sample ids of the audited version; compared as strings), ``flagged``
            (bool or 0/1); optional ``score`` (or ``ensemble_score``; the ensemble score),
            ``reasons`` (a string, or a list of strings joined with ``"; "``). Every other
            numeric column is stored as a per-detector score (in the JSON ``detector_scores``);
            other non-numeric columns (label, contributor ...) are ignored: the findings are
            joined with the samples anyway. NaN scores are stored as NULL.

        Raises
        ------
        DataError
            Missing ``id`` / ``flagged`` columns, ids that are not in the audited version,
            duplicate ids, or flags that are not booleans.
        """
        self._check_open()
        if not isinstance(findings, pd.DataFrame):
            raise DataError(f"findings must be a DataFrame, got {type(findings).__name__}")
        missing = [c for c in ("id", "flagged") if c not in findings.columns]
        if missing:
            raise DataError(f"findings lack column(s) {missing}; they need id and flagged (and optionally score, reasons)")
        if "score" in findings.columns and "ensemble_score" in findings.columns:
            raise DataError("findings have both 'score' and 'ensemble_score'; keep one (the ensemble score)")
        df = findings.reset_index(drop=True)
        ids = _str_or_none(df["id"].tolist())
        if any(i is None for i in ids):
            raise DataError("findings: the id column has missing values")
        known = set(self._plan.table["id"].tolist())
        unknown = [i for i in ids.tolist() if i not in known]
        if unknown:
            raise DataError(
                f"findings name {len(unknown)} id(s) that are not in the audited data (first: {unknown[0]!r})"
            )
        flags = df["flagged"]
        if flags.dtype != bool:
            if flags.isna().any() or not flags.isin([0, 1, True, False]).all():
                raise DataError("findings: 'flagged' must hold booleans (or 0/1)")
        score_col = "score" if "score" in df.columns else ("ensemble_score" if "ensemble_score" in df.columns else None)
        score = (pd.to_numeric(df[score_col], errors="coerce").to_numpy(dtype=float) if score_col
                 else np.full(len(df), np.nan))
        det_cols = [c for c in df.columns if c not in FINDINGS_RESERVED
                    and pd.api.types.is_numeric_dtype(df[c]) and not pd.api.types.is_bool_dtype(df[c])]
        reasons = [_reasons(r) for r in df["reasons"].tolist()] if "reasons" in df.columns else [None] * len(df)
        frame = pd.DataFrame({
            "id": pd.Series(ids, dtype=object), "flagged": flags.astype(bool).to_numpy(), "score": score,
            "reasons": pd.Series(reasons, dtype=object),  # object dtype: None stays None (pandas 3 str -> NaN)
        })
        detectors = pd.DataFrame({str(c): pd.to_numeric(df[c], errors="coerce").astype(float) for c in det_cols},
                                 index=frame.index)
        self._frames.append((frame, detectors))

    def finish(self, verdict: str, summary: Optional[Mapping] = None, policy: Optional[Mapping] = None) -> None:
        """Set the verdict (e.g. ``"pass"`` / ``"fail"``), the summary and the policy used.

        ``summary`` and ``policy`` must be JSON-serialisable (numpy scalars and arrays, dates
        and paths are converted; NaN becomes null). The audit is written when the ``with`` block
        exits.
        """
        self._check_open()
        if not isinstance(verdict, str) or not verdict.strip() or len(verdict) > MAX_VERDICT_LENGTH:
            raise ConfigError(f"verdict must be a non-empty string of at most {MAX_VERDICT_LENGTH} characters, got {verdict!r}")
        self._summary = None if summary is None else _jsonable(dict(summary), "summary")
        self._policy = None if policy is None else _jsonable(dict(policy), "policy")
        self._findings_frame()  # duplicate ids across add_findings calls fail here, not at exit
        self._verdict = verdict
        self._finished_at = utcnow()
        self._state = "finished"

    def _findings_frame(self) -> Optional[dict]:
        if self._findings is not None:
            return self._findings
        if not self._frames:
            return None
        df = pd.concat([f for f, _ in self._frames], ignore_index=True)
        dup = df["id"].duplicated()
        if dup.any():
            raise DataError(f"findings name sample {df['id'][dup].iloc[0]!r} more than once")
        det = pd.concat([d for _, d in self._frames], ignore_index=True) if any(
            len(d.columns) for _, d in self._frames) else pd.DataFrame(index=df.index)
        ids = df["id"].to_numpy(dtype=object)
        flagged = df["flagged"].to_numpy(dtype=bool)
        columns = {
            "sample_id": ids.tolist(),
            "score": [s if math.isfinite(s) else None for s in df["score"].to_numpy(dtype=float).tolist()],
            "flagged": flagged.tolist(),
            "detector_scores": _JsonRows([str(c) for c in det.columns], det.to_numpy(dtype=float)),
            "reasons": df["reasons"].tolist(),
        }
        self._findings = {"columns": columns, "n": len(ids), "ids": ids, "flagged": flagged}
        self._frames = []
        return self._findings

    def __repr__(self) -> str:
        return f"AuditRecorder(dataset={self.dataset_name!r}, n={len(self.samples)}, state={self._state!r}, {self.diff!r})"


def _reasons(r: Any) -> Optional[str]:
    if r is None or (isinstance(r, float) and math.isnan(r)):
        return None
    if isinstance(r, (list, tuple, np.ndarray)):
        parts = [str(x) for x in r if x is not None and str(x).strip()]
        return "; ".join(parts) or None
    s = str(r)
    return s if s.strip() else None


class _JsonRows:
    """Per-row flat JSON objects ``{detector: score or None}``, built chunk by chunk on slicing.

    Keeps a float matrix instead of a million small dicts until the rows are written.
    """

    def __init__(self, names: Sequence[str], values: np.ndarray) -> None:
        self.names = list(names)
        self.values = values

    def __len__(self) -> int:
        return len(self.values)

    def __getitem__(self, index: slice) -> list:
        block = self.values[index]
        if not self.names:
            return [None] * len(block)
        names = self.names
        return [{k: (v if math.isfinite(v) else None) for k, v in zip(names, row)} for row in block.tolist()]
