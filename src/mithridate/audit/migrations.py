"""Versioned schema migrations of the provenance ledger.

The ledger's schema version lives in the table ``mithridate_schema`` (one row per applied
migration: ``version``, ``description``, ``applied_at``). :data:`MIGRATIONS` is the ordered
list of steps from an empty database to the current schema (:data:`SCHEMA_VERSION`); every
step is a plain function of a SQLAlchemy ``Connection``. :func:`upgrade` applies the pending
steps **inside the caller's transaction** (the :class:`~mithridate.audit.ledger.Ledger` opens
one, ``BEGIN IMMEDIATE`` on SQLite, plus an advisory lock on PostgreSQL), so an upgrade is all
or nothing: a failure or Ctrl-C half-way leaves the ledger at its old version, untouched. Both
SQLite and PostgreSQL roll back DDL.

A new ledger runs every step from 1, so the upgrade path is exercised on every first open.
Each step defines its own tables with frozen column lists (never the current schema objects of
``ledger.py``), so old steps keep meaning the same thing when the schema evolves.

Versions
--------
1. ``datasets``, ``versions``, ``samples``, ``audits``, ``findings``: the provenance core.
2. Contributor reputation and sample history: ``samples.first_seen`` (backfilled by replaying
   the version diffs), ``audits.policy``, and the ``contributors`` table (backfilled from the
   findings of each version's first audit with findings, see :mod:`mithridate.audit.ledger`).

To add a step: write ``_v3(conn)`` with its own DDL (``ALTER TABLE ... ADD COLUMN`` works on
both engines; SQLite cannot drop or alter columns in place, so rebuild the table instead), add
``Migration(3, "...", _v3)`` to :data:`MIGRATIONS`, update the current table definitions in
``ledger.py``, and add an upgrade test from a hand-made v2 file.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from mithridate.errors import MithridateError

SCHEMA_TABLE = "mithridate_schema"
#: Tables owned by the ledger (a database holding some of them without a schema table is refused).
LEDGER_TABLES = ("datasets", "versions", "samples", "audits", "findings", "contributors")
#: Key of the PostgreSQL advisory lock that serialises ledger writes and upgrades.
PG_LOCK_KEY = 0x6D69_7468_7269  # "mithri"


class LedgerError(MithridateError):
    """The ledger cannot be opened, upgraded or written (bad URL, unreachable server, conflict).

    Its message is one line, safe to print (passwords in URLs are masked).
    """


def utcnow() -> _dt.datetime:
    return _dt.datetime.now(_dt.timezone.utc)


def json_type() -> sa.types.TypeEngine:
    """JSON (JSONB on PostgreSQL); Python None is stored as SQL NULL."""
    from sqlalchemy.dialects.postgresql import JSONB

    return sa.JSON(none_as_null=True).with_variant(JSONB(none_as_null=True), "postgresql")


def big_pk() -> sa.types.TypeEngine:
    """A 64-bit autoincrement key (SQLite only autoincrements INTEGER PRIMARY KEY)."""
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


@dataclass(frozen=True)
class Migration:
    """One schema step: ``upgrade(conn)`` takes the schema from ``version - 1`` to ``version``."""

    version: int
    description: str
    upgrade: Callable[[Connection], None]


# -- step 1 ---------------------------------------------------------------------------------
def _v1(conn: Connection) -> None:
    md = sa.MetaData()
    ts = sa.DateTime(timezone=True)
    sa.Table(
        "datasets", md,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(255), nullable=False, unique=True),
        sa.Column("created_at", ts, nullable=False),
    )
    sa.Table(
        "versions", md,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("dataset_id", sa.Integer, sa.ForeignKey("datasets.id", ondelete="CASCADE"), nullable=False),
        sa.Column("number", sa.Integer, nullable=False),
        sa.Column("created_at", ts, nullable=False),
        sa.Column("n_samples", sa.Integer, nullable=False),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("source", sa.Text),
        sa.UniqueConstraint("dataset_id", "number", name="uq_versions_dataset_number"),
    )
    sa.Table(
        "samples", md,
        sa.Column("id", big_pk(), primary_key=True),
        sa.Column("version_id", sa.Integer, sa.ForeignKey("versions.id", ondelete="CASCADE"), nullable=False),
        sa.Column("sample_id", sa.String(512), nullable=False),
        sa.Column("content_hash", sa.String(128), nullable=False),
        sa.Column("label", sa.Text, nullable=False),
        sa.Column("contributor", sa.String(255)),
        sa.Column("source", sa.Text),
        sa.UniqueConstraint("version_id", "sample_id", name="uq_samples_version_sample"),
    )
    sa.Table(
        "audits", md,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("version_id", sa.Integer, sa.ForeignKey("versions.id", ondelete="CASCADE"), nullable=False),
        sa.Column("started_at", ts, nullable=False),
        sa.Column("finished_at", ts, nullable=False),
        sa.Column("verdict", sa.String(32), nullable=False),
        sa.Column("summary", json_type()),
        sa.Column("diff", json_type()),
        sa.Column("tool_version", sa.String(32)),
    )
    sa.Table(
        "findings", md,
        sa.Column("id", big_pk(), primary_key=True),
        sa.Column("audit_id", sa.Integer, sa.ForeignKey("audits.id", ondelete="CASCADE"), nullable=False),
        sa.Column("sample_id", sa.String(512), nullable=False),
        sa.Column("score", sa.Float),
        sa.Column("flagged", sa.Boolean, nullable=False),
        sa.Column("detector_scores", json_type()),
        sa.Column("reasons", sa.Text),
        sa.UniqueConstraint("audit_id", "sample_id", name="uq_findings_audit_sample"),
    )
    md.create_all(conn)


# -- step 2 ---------------------------------------------------------------------------------
def _add_column(conn: Connection, table: str, column: str, type_: sa.types.TypeEngine) -> None:
    ddl = type_.compile(dialect=conn.dialect)
    prep = conn.dialect.identifier_preparer
    conn.execute(sa.text(f"ALTER TABLE {prep.quote(table)} ADD COLUMN {prep.quote(column)} {ddl}"))


def _contributors_v2(md: sa.MetaData) -> sa.Table:
    return sa.Table(
        "contributors", md,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("dataset_id", sa.Integer, sa.ForeignKey("datasets.id", ondelete="CASCADE"), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
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
        sa.Column("updated_at", sa.DateTime(timezone=True)),
        sa.UniqueConstraint("dataset_id", "name", name="uq_contributors_dataset_name"),
    )


def _v2(conn: Connection) -> None:
    _add_column(conn, "samples", "first_seen", sa.Integer())
    _add_column(conn, "audits", "policy", json_type())
    md = sa.MetaData()
    sa.Table("datasets", md, sa.Column("id", sa.Integer, primary_key=True))  # FK target only
    contributors = _contributors_v2(md)
    contributors.create(conn)
    _backfill_v2(conn, contributors)


def _backfill_v2(conn: Connection, contributors: sa.Table) -> None:
    """Replay each dataset's versions in order: first_seen per sample, contributor counts."""
    import pandas as pd

    from mithridate.audit.diff import diff_versions, first_seen_versions
    from mithridate.audit.reputation import reputation_table

    now = utcnow()
    datasets = conn.execute(sa.text("SELECT id FROM datasets ORDER BY id")).scalars().all()
    for ds_id in datasets:
        versions = conn.execute(
            sa.text("SELECT id, number FROM versions WHERE dataset_id = :d ORDER BY number"), {"d": ds_id}
        ).all()
        old = None
        acc: dict = {}  # contributor -> [n, flagged, audits, first_version, last_version]
        for vid, number in versions:
            rows = conn.execute(
                sa.text(
                    "SELECT id AS pk, sample_id AS id, content_hash, label, contributor, source "
                    "FROM samples WHERE version_id = :v ORDER BY id"
                ),
                {"v": vid},
            ).all()
            table = pd.DataFrame(rows, columns=["pk", "id", "content_hash", "label", "contributor", "source"])
            diff = diff_versions(old, table)
            first = first_seen_versions(diff, old, number)
            if len(table):
                conn.execute(
                    sa.text("UPDATE samples SET first_seen = :fs WHERE id = :pk"),
                    [{"fs": int(f), "pk": int(p)} for f, p in zip(first, table["pk"].tolist())],
                )
            audit_id = conn.execute(  # the first audit of this version that recorded findings
                sa.text(
                    "SELECT MIN(a.id) FROM audits a WHERE a.version_id = :v "
                    "AND EXISTS (SELECT 1 FROM findings f WHERE f.audit_id = a.id)"
                ),
                {"v": vid},
            ).scalar()
            if audit_id is not None:
                flags = dict(
                    conn.execute(
                        sa.text("SELECT sample_id, flagged FROM findings WHERE audit_id = :a"), {"a": audit_id}
                    ).all()
                )
                changed = diff.changed
                touched = set()
                for sid, who, ch in zip(table["id"].tolist(), table["contributor"].tolist(), changed):
                    if not ch or who is None or sid not in flags:
                        continue
                    rec = acc.setdefault(who, [0, 0, 0, number, number])
                    rec[0] += 1
                    rec[1] += int(bool(flags[sid]))
                    rec[4] = number
                    touched.add(who)
                for who in touched:
                    acc[who][2] += 1
            old = table.assign(first_seen=first)
        if not acc:
            continue
        counts = pd.DataFrame(
            {"contributor": list(acc), "n": [v[0] for v in acc.values()], "flagged": [v[1] for v in acc.values()]}
        )
        rep = reputation_table(counts).set_index("contributor")
        conn.execute(
            contributors.insert(),
            [
                {
                    "dataset_id": ds_id, "name": who, "n_total": v[0], "n_flagged": v[1], "n_audits": v[2],
                    "first_version": v[3], "last_version": v[4],
                    "alpha": float(rep.at[who, "alpha"]), "beta": float(rep.at[who, "beta"]),
                    "posterior_mean": float(rep.at[who, "posterior_mean"]),
                    "ci_lower": float(rep.at[who, "ci_lower"]), "ci_upper": float(rep.at[who, "ci_upper"]),
                    "above_population": bool(rep.at[who, "above_population"]), "updated_at": now,
                }
                for who, v in acc.items()
            ],
        )


#: The ordered upgrade path; ``MIGRATIONS[i].version == i + 1``.
MIGRATIONS: tuple = (
    Migration(1, "provenance core: datasets, versions, samples, audits, findings", _v1),
    Migration(2, "contributor reputation, samples.first_seen, audits.policy", _v2),
)
SCHEMA_VERSION: int = MIGRATIONS[-1].version


def _schema_table(md: Optional[sa.MetaData] = None) -> sa.Table:
    return sa.Table(
        SCHEMA_TABLE, md or sa.MetaData(),
        sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("description", sa.String(255), nullable=False),
        sa.Column("applied_at", sa.DateTime(timezone=True), nullable=False),
    )


def schema_version(conn: Connection) -> int:
    """The schema version of the database behind ``conn`` (0 for an empty database).

    Raises
    ------
    LedgerError
        When the database holds tables with the ledger's names but no schema table (it is
        something else, not a mithridate ledger).
    """
    names = set(sa.inspect(conn).get_table_names())
    if SCHEMA_TABLE not in names:
        clash = sorted(names & set(LEDGER_TABLES))
        if clash:
            raise LedgerError(
                f"the database already has table(s) {clash} but no {SCHEMA_TABLE} table: it is not a "
                "mithridate ledger; point the ledger at an empty database"
            )
        return 0
    v = conn.execute(sa.select(sa.func.max(_schema_table().c.version))).scalar()
    return int(v or 0)


def upgrade(
    conn: Connection,
    *,
    target: Optional[int] = None,
    migrations: Sequence[Migration] = MIGRATIONS,
) -> list:
    """Apply the pending migrations up to ``target`` (default: the last) on ``conn``.

    Must run inside a transaction that the caller commits (or rolls back). On PostgreSQL it
    first takes the ledger's advisory transaction lock, so concurrent openers upgrade once.

    Returns
    -------
    list of int
        The versions applied (empty when the schema was current).

    Raises
    ------
    LedgerError
        The database is newer than ``migrations`` know, or is not a ledger.
    """
    if conn.dialect.name == "postgresql":
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": PG_LOCK_KEY})
    latest = migrations[-1].version if migrations else 0
    target = latest if target is None else target
    current = schema_version(conn)
    if current > latest:
        raise LedgerError(
            f"the ledger has schema version {current}, newer than this mithridate supports "
            f"({latest}); upgrade mithridate to use it"
        )
    table = _schema_table()
    if current == 0:
        table.create(conn, checkfirst=True)
    applied = []
    for mig in migrations:
        if current < mig.version <= target:
            mig.upgrade(conn)
            conn.execute(table.insert().values(version=mig.version, description=mig.description, applied_at=utcnow()))
            applied.append(mig.version)
    return applied
