"""Tests for the provenance ledger (SQLite always; PostgreSQL for real when a server can start).

PostgreSQL: with ``MITHRIDATE_TEST_POSTGRES`` set (a SQLAlchemy URL of a server where the user
may CREATE DATABASE), that server is used. Otherwise a throwaway server is started from the
PostgreSQL binaries (``PG_BINDIR``, ``pg_ctl`` on PATH, or Debian's
``/usr/lib/postgresql/*/bin``): ``initdb`` into a fresh temporary directory, listening on
127.0.0.1 on a free port with its unix socket in that directory, trust authentication, fsync
off; as root it runs as the ``postgres`` user (or ``nobody``), since postgres refuses to run as
root. Each test gets its own database. The tests skip with the reason when no server can be
started, unless the environment variable ``CI`` is set: then they fail.
"""

from __future__ import annotations

import datetime as dt
import glob
import json
import os
import pwd
import shutil
import socket
import sqlite3
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

import mithridate.audit.ledger as ledger_mod
from mithridate.audit import Ledger, LedgerError, SCHEMA_VERSION, default_ledger_url, diff_versions
from mithridate.audit.migrations import MIGRATIONS, Migration, upgrade
from mithridate.data.dataset import Dataset
from mithridate.errors import ConfigError, DataError, MithridateError

LABELS = np.array(["cat", "dog", "emu"], dtype=object)


# -- data helpers ------------------------------------------------------------------------------
def make_arrays(n=60, seed=0, n_contrib=3, d=4):
    rng = np.random.default_rng(seed)
    X = rng.random((n, d))
    y = LABELS[rng.integers(0, 3, n)]
    ids = [f"s{i}" for i in range(n)]
    contrib = [f"c{i % n_contrib}" for i in range(n)]
    return X, y, ids, contrib


def build(X, y, ids, contrib, source="upload"):
    meta = pd.DataFrame({"contributor": contrib, "source": source})
    return Dataset.from_arrays(np.asarray(X), np.asarray(y, dtype=object), ids=list(ids), meta=meta, name="toy")


def make_ds(**kw):
    return build(*make_arrays(**kw))


def findings_for(ds, flagged=(), seed=0):
    rng = np.random.default_rng(seed)
    ids = [str(i) for i in ds.ids]
    flag = np.isin(ids, list(flagged))
    return pd.DataFrame({
        "id": ds.ids, "score": np.where(flag, 0.9, 0.1) + rng.random(len(ids)) * 0.01, "flagged": flag,
        "knn": rng.random(len(ids)), "spectral": rng.random(len(ids)),
        "reasons": ["knn; spectral" if f else "" for f in flag],
    })


def audit_once(ledger, name, ds, flagged=(), verdict="pass", **kw):
    with ledger.audit(name, ds, source=kw.pop("source", "data.csv")) as audit:
        audit.add_findings(findings_for(ds, flagged))
        audit.finish(verdict, summary={"n_flagged": len(flagged)}, policy={"max_flagged_share": 0.1})
    return audit


def planted_v2():
    """v1 and a v2 with exactly planted removed / relabelled / modified / new / duplicate samples."""
    X, y, ids, contrib = make_arrays(n=60, seed=1)
    v1 = build(X, y, ids, contrib)
    X2, y2 = X.copy(), y.copy()
    relabel = [f"s{i}" for i in (10, 11, 12, 13)]
    for i in (10, 11, 12, 13):
        y2[i] = LABELS[(list(LABELS).index(y2[i]) + 1) % 3]
    modify = [f"s{i}" for i in (20, 21, 22)]
    X2[[20, 21, 22]] += 0.5
    keep = np.arange(5, 60)                      # s0..s4 removed
    rng = np.random.default_rng(7)
    new_X = rng.random((6, 4)) + 3.0             # brand-new content
    new_ids = [f"n{i}" for i in range(6)]
    # known content under new ids: s30's content with another label (relabelled), s31's with its label (duplicate)
    other = LABELS[(list(LABELS).index(y[30]) + 2) % 3]
    Xv2 = np.vstack([X2[keep], new_X, X[[30, 31]]])
    yv2 = np.concatenate([y2[keep], LABELS[rng.integers(0, 3, 6)], [other, y[31]]])
    idv2 = [ids[i] for i in keep] + new_ids + ["r0", "d0"]
    cv2 = [contrib[i] for i in keep] + ["c9"] * 6 + ["c9", "c9"]
    v2 = build(Xv2, yv2, idv2, cv2)
    expected = {
        "removed": [f"s{i}" for i in range(5)], "relabelled": relabel + ["r0"], "modified": modify,
        "new": new_ids, "duplicate": ["d0"],
    }
    return v1, v2, expected


def table_counts(url):
    eng = sa.create_engine(url)
    try:
        with eng.connect() as c:
            return {t: c.execute(sa.text(f"SELECT COUNT(*) FROM {t}")).scalar()
                    for t in ("datasets", "versions", "samples", "audits", "findings", "contributors")}
    finally:
        eng.dispose()


# -- PostgreSQL fixture ------------------------------------------------------------------------
class PgUnavailable(Exception):
    pass


def _skip_or_fail(reason):
    if os.environ.get("CI"):
        pytest.fail(f"PostgreSQL ledger tests cannot run in CI: {reason}", pytrace=False)
    pytest.skip(f"PostgreSQL not available: {reason}")


def _pg_bindir():
    cands = []
    if os.environ.get("PG_BINDIR"):
        cands.append(os.environ["PG_BINDIR"])
    if shutil.which("pg_ctl"):
        cands.append(os.path.dirname(shutil.which("pg_ctl")))

    def ver(p):
        try:
            return float(Path(p).parent.name)
        except ValueError:
            return 0.0

    cands += sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=ver, reverse=True)
    for c in cands:
        if os.path.isfile(os.path.join(c, "initdb")) and os.path.isfile(os.path.join(c, "pg_ctl")):
            return c
    raise PgUnavailable("no PostgreSQL server binaries (initdb, pg_ctl) found; install Debian's "
                        "'postgresql' package or set PG_BINDIR or MITHRIDATE_TEST_POSTGRES")


def _free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ThrowawayPostgres:
    """initdb + pg_ctl start in a temp dir, as an unprivileged user when we are root."""

    def __init__(self):
        self.bindir = _pg_bindir()
        self.tmp = tempfile.mkdtemp(prefix="mithridate-pg-")
        self.data = os.path.join(self.tmp, "data")
        self.log = os.path.join(self.tmp, "server.log")
        self.run_as = {}
        if os.geteuid() == 0:
            for user in ("postgres", "nobody"):
                try:
                    pw = pwd.getpwnam(user)
                    break
                except KeyError:
                    continue
            else:
                raise PgUnavailable("running as root and neither a 'postgres' nor a 'nobody' user exists")
            os.chown(self.tmp, pw.pw_uid, pw.pw_gid)
            self.run_as = {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": []}
        self.env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": self.tmp, "LC_ALL": "C",
                    "TZ": "UTC"}
        self.port = None

    def _run(self, *args, timeout=120):
        try:
            return subprocess.run([os.path.join(self.bindir, args[0]), *args[1:]], cwd=self.tmp, env=self.env,
                                  capture_output=True, text=True, timeout=timeout, **self.run_as)
        except (OSError, subprocess.SubprocessError) as exc:
            raise PgUnavailable(f"{args[0]} could not run: {exc}") from None

    def start(self):
        r = self._run("initdb", "-D", self.data, "-U", "mithridate", "--auth=trust", "-E", "UTF8",
                      "--no-locale", "--no-sync")
        if r.returncode:
            raise PgUnavailable(f"initdb failed: {(r.stderr or r.stdout).strip().splitlines()[-1:]}")
        for _ in range(3):  # the free port may be taken between the probe and the start
            self.port = _free_port()
            opts = (f"-h 127.0.0.1 -p {self.port} -k {self.tmp} -F -c fsync=off -c full_page_writes=off "
                    "-c synchronous_commit=off -c max_connections=40")
            r = self._run("pg_ctl", "-D", self.data, "-l", self.log, "-w", "-t", "60", "-o", opts, "start")
            if r.returncode == 0:
                return self
        log = Path(self.log).read_text(errors="replace").strip().splitlines()[-3:] if os.path.exists(self.log) else []
        raise PgUnavailable(f"pg_ctl start failed: {(r.stderr or r.stdout).strip()[:200]} {log}")

    @property
    def url(self):
        return f"postgresql+psycopg://mithridate@127.0.0.1:{self.port}/postgres"

    def stop(self):
        if self.port is not None:
            self._run("pg_ctl", "-D", self.data, "-m", "immediate", "-w", "stop", timeout=60)
        shutil.rmtree(self.tmp, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_server():
    try:
        import psycopg  # noqa: F401
    except ImportError:
        _skip_or_fail("the psycopg driver is not installed (pip install 'psycopg[binary]')")
    if os.environ.get("MITHRIDATE_TEST_POSTGRES"):
        yield os.environ["MITHRIDATE_TEST_POSTGRES"]
        return
    server = None
    try:
        server = ThrowawayPostgres().start()
    except PgUnavailable as exc:
        if server is not None:
            server.stop()
        _skip_or_fail(str(exc))
    try:
        yield server.url
    finally:
        server.stop()


def _pg_admin(base_url, sql):
    import psycopg

    u = sa.make_url(base_url)
    with psycopg.connect(host=u.host, port=u.port or 5432, user=u.username, password=u.password,
                         dbname=u.database or "postgres", autocommit=True, connect_timeout=10) as conn:
        conn.execute(sql)


@pytest.fixture
def pg_url(pg_server):
    """A fresh, empty database on the test server; dropped afterwards."""
    name = f"mithridate_test_{uuid.uuid4().hex[:12]}"
    _pg_admin(pg_server, f'CREATE DATABASE "{name}"')
    url = sa.make_url(pg_server).set(database=name).render_as_string(hide_password=False)
    yield url
    try:
        _pg_admin(pg_server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    except Exception:  # PostgreSQL < 13 has no FORCE
        _pg_admin(pg_server, f'DROP DATABASE IF EXISTS "{name}"')


@pytest.fixture
def sqlite_url(tmp_path):
    return f"sqlite:///{tmp_path / 'ledger.sqlite'}"


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request):
    return request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "pg_url")


# -- opening, URLs, errors ---------------------------------------------------------------------
def test_default_url_from_env_and_xdg(tmp_path, monkeypatch):
    assert default_ledger_url({"MITHRIDATE_LEDGER": "sqlite:////x/l.db"}) == "sqlite:////x/l.db"
    assert default_ledger_url({"XDG_DATA_HOME": "/data", "HOME": "/h"}) == "sqlite:////data/mithridate/ledger.sqlite"
    assert default_ledger_url({"HOME": "/h"}) == "sqlite:////h/.local/share/mithridate/ledger.sqlite"
    assert default_ledger_url({"XDG_DATA_HOME": "rel", "HOME": "/h"}) == "sqlite:////h/.local/share/mithridate/ledger.sqlite"

    monkeypatch.delenv("MITHRIDATE_LEDGER", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    with Ledger() as ledger:  # the default directory is created
        assert ledger.schema_version == SCHEMA_VERSION
    assert (tmp_path / "xdg" / "mithridate" / "ledger.sqlite").is_file()

    target = tmp_path / "from-env.sqlite"
    monkeypatch.setenv("MITHRIDATE_LEDGER", str(target))  # a plain path is a SQLite file
    with Ledger() as ledger:
        assert "from-env.sqlite" in ledger.url
    assert target.is_file()


def test_path_and_memory_urls(tmp_path):
    with Ledger(tmp_path / "p.sqlite") as ledger:
        audit_once(ledger, "toy", make_ds())
    with Ledger(str(tmp_path / "p.sqlite")) as ledger:
        assert ledger.versions("toy")["version"].tolist() == [1]
    with Ledger("sqlite://") as ledger:
        audit_once(ledger, "toy", make_ds())
        assert len(ledger.samples("toy")) == 60


@pytest.mark.parametrize(
    "bad, match",
    [
        ("definitely not a url://", "invalid ledger URL"),
        ("nosuchdialect://host/db", "cannot use ledger URL"),
        ("postgresql+psycopg://u:hunter2@127.0.0.1:1/db", "cannot open ledger"),
        ("postgresql+psycopg://u:hunter2@127.0.0.1:notaport/db", "invalid ledger URL"),
        ("MISSING_DIR", "does not exist"),
        ("A_DIRECTORY", "is a directory"),
        ("NOT_SQLITE", "cannot open ledger"),
        ("", "empty"),
    ],
)
def test_bad_urls_give_one_clear_line(bad, match, tmp_path):
    bad = {"MISSING_DIR": str(tmp_path / "nope" / "l.sqlite"), "A_DIRECTORY": str(tmp_path)}.get(bad, bad)
    if bad == "NOT_SQLITE":
        bad = str(tmp_path / "text.sqlite")
        Path(bad).write_text("this is not a database\n" * 100)
    with pytest.raises(LedgerError, match=match) as info:
        Ledger(bad)
    msg = str(info.value)
    assert isinstance(info.value, MithridateError)
    assert "\n" not in msg and "Traceback" not in msg
    assert "hunter2" not in msg
    assert not (tmp_path / "nope").exists()


def test_foreign_or_newer_database_refused(tmp_path):
    other = tmp_path / "other.sqlite"
    with sqlite3.connect(other) as c:
        c.execute("CREATE TABLE datasets (id INTEGER PRIMARY KEY, what TEXT)")
    with pytest.raises(LedgerError, match="not a mithridate ledger"):
        Ledger(other)

    newer = tmp_path / "newer.sqlite"
    Ledger(newer).close()
    with sqlite3.connect(newer) as c:
        c.execute("INSERT INTO mithridate_schema VALUES (99, 'from the future', '2030-01-01 00:00:00')")
    with pytest.raises(LedgerError, match="newer than this mithridate"):
        Ledger(newer)


def test_schema_of_a_new_ledger_matches_the_current_tables(url):
    with Ledger(url) as ledger:
        assert ledger.upgraded_from == 0
        assert ledger.schema_version == SCHEMA_VERSION == MIGRATIONS[-1].version
    eng = sa.create_engine(url)
    try:
        insp = sa.inspect(eng)
        for table in ledger_mod.metadata.sorted_tables:
            assert [c["name"] for c in insp.get_columns(table.name)] == [c.name for c in table.columns], table.name
        with eng.connect() as c:
            assert c.execute(sa.text("SELECT version FROM mithridate_schema ORDER BY version")).scalars().all() == [1, 2]
    finally:
        eng.dispose()
    with Ledger(url) as again:
        assert again.upgraded_from is None  # nothing to do the second time


# -- recording and reading back ----------------------------------------------------------------
def test_round_trip(url):
    ds = make_ds()
    with Ledger(url) as ledger:
        assert ledger.previous_version("toy") is None
        with ledger.audit("toy", ds, source="data/v1.csv") as audit:
            assert audit.previous is None and audit.diff.counts["new"] == 60
            audit.add_findings(findings_for(ds, flagged=["s3", "s7"]))
            audit.finish("fail", summary={"n_flagged": np.int64(2), "share": np.float64(2 / 60), "nan": float("nan"),
                                          "when": dt.date(2024, 1, 2), "scores": np.arange(3)},
                         policy={"max_flagged_share": 0.01})
        info = audit.result
        assert (info.version, info.verdict, info.n_findings, info.n_flagged, info.new_version) == (1, "fail", 60, 2, True)

        v = ledger.previous_version("toy")
        assert (v.number, v.n_samples, v.source, v.id) == (1, 60, "data/v1.csv", info.version_id)
        assert v.created_at.tzinfo is not None

        samples = ledger.samples("toy")
        assert samples["id"].tolist() == [str(i) for i in ds.ids]
        assert samples["content_hash"].tolist() == ds.content_hashes.tolist()
        assert samples["label"].tolist() == ds.labels.tolist()
        assert samples["contributor"].tolist() == ds.meta["contributor"].tolist()
        assert set(samples["source"]) == {"upload"} and set(samples["first_seen"]) == {1}

        f = ledger.findings(info.id)
        assert f["id"].tolist() == samples["id"].tolist()
        assert sorted(f.loc[f["flagged"], "id"]) == ["s3", "s7"]
        assert f.loc[f["id"] == "s3", "reasons"].item() == "knn; spectral"
        assert f.loc[f["id"] == "s4", "reasons"].item() is None
        src = findings_for(ds, flagged=["s3", "s7"])
        np.testing.assert_allclose(f["knn"], src["knn"])
        np.testing.assert_allclose(f["score"], src["score"])
        assert {"label", "contributor", "content_hash", "first_seen"} <= set(f.columns)

        got = ledger.get_audit(info.id)
        assert got.summary == {"n_flagged": 2, "share": pytest.approx(2 / 60), "nan": None, "when": "2024-01-02",
                               "scores": [0, 1, 2]}
        assert got.policy == {"max_flagged_share": 0.01}
        assert got.diff["counts"]["new"] == 60 and got.diff["base_version"] is None
        assert (got.n_findings, got.n_flagged, got.verdict) == (60, 2, "fail")

        audits = ledger.audits("toy")
        assert audits[["audit_id", "version", "verdict", "n_findings", "n_flagged"]].values.tolist() == [[info.id, 1, "fail", 60, 2]]
        assert ledger.datasets()[["name", "n_versions", "n_audits"]].values.tolist() == [["toy", 1, 1]]

        rep = ledger.contributors("toy")
        assert rep[["contributor", "n", "flagged"]].sort_values("contributor").values.tolist() == [
            ["c0", 20, 1], ["c1", 20, 1], ["c2", 20, 0]]
        assert set(rep["n_audits"]) == {1}
        hist = ledger.contributor_history("toy")
        assert hist[["contributor", "n", "flagged"]].values.tolist() == [["c0", 20, 1], ["c1", 20, 1], ["c2", 20, 0]]


def test_two_audits_diff_reports_exactly_the_planted_changes(url):
    v1, v2, expected = planted_v2()
    d = diff_versions(v1, v2)
    for status, ids in expected.items():
        assert sorted(d.ids(status)) == sorted(ids), status
    assert d.counts["unchanged"] == 55 - 4 - 3
    with Ledger(url) as ledger:
        audit_once(ledger, "toy", v1, flagged=["s1"])
        with ledger.audit("toy", v2) as audit:
            assert audit.previous.number == 1 and not audit.reused_version
            for status, ids in expected.items():
                assert sorted(audit.diff.ids(status)) == sorted(ids), status
            audit.add_findings(findings_for(v2, flagged=["s10", "n0", "s40"]))
            audit.finish("fail")
        assert audit.result.version == 2
        assert audit.result.diff["counts"] == d.counts and audit.result.diff["base_version"] == 1
        stored = ledger.diff("toy")
        assert {s: sorted(stored.ids(s)) for s in expected} == {s: sorted(v) for s, v in expected.items()}
        assert ledger.diff("toy", old=1, new=2).counts == d.counts
        assert ledger.diff("toy", new=1).counts["new"] == 60

        # first_seen: content present since v1 keeps 1 (incl. relabelled); new and modified get 2
        fs = ledger.samples("toy", version=2).set_index("id")["first_seen"]
        assert set(fs[expected["new"] + expected["modified"]]) == {2}
        assert set(fs[expected["relabelled"] + expected["duplicate"] + ["s40"]]) == {1}

        # contributor counts: v1 counted everything once; v2 only what it brought in
        who1 = dict(zip(map(str, v1.ids), v1.meta["contributor"]))
        who2 = dict(zip(map(str, v2.ids), v2.meta["contributor"]))
        expected_counts = {}
        for sid, who in who1.items():
            n, k = expected_counts.get(who, (0, 0))
            expected_counts[who] = (n + 1, k + (sid == "s1"))
        for sid in d.table.loc[d.table["status"].isin(["new", "modified", "relabelled"]), "id"]:
            n, k = expected_counts.get(who2[sid], (0, 0))
            expected_counts[who2[sid]] = (n + 1, k + (sid in ("s10", "n0", "s40")))
        rep = ledger.contributors("toy").set_index("contributor")
        assert {c: (int(r["n"]), int(r["flagged"])) for c, r in rep.iterrows()} == expected_counts
        assert expected_counts["c9"] == (7, 1)  # n0..n5 and r0; n0 flagged; d0 is a duplicate, s40 unchanged
        assert rep.loc["c9", "first_version"] == 2 and rep.loc["c9", "n_audits"] == 1
        assert rep.loc["c1", "n_audits"] == 2 and rep.loc["c1", "last_version"] == 2
        # the stored posterior equals the table recomputed from the stored counts
        eng = sa.create_engine(url)
        with eng.connect() as c:
            stored_post = dict(c.execute(sa.text("SELECT name, posterior_mean FROM contributors")).all())
        eng.dispose()
        for name, mean in stored_post.items():
            assert mean == pytest.approx(rep.loc[name, "posterior_mean"])
        hist = ledger.contributor_history("toy")
        assert sorted(hist["audit_id"].unique()) == sorted(ledger.audits("toy")["audit_id"])


def test_reaudit_of_identical_data_reuses_the_version(url):
    v1, v2, _ = planted_v2()
    with Ledger(url) as ledger:
        audit_once(ledger, "toy", v1)
        first = audit_once(ledger, "toy", v2, flagged=["n0"])
        before = ledger.contributors("toy")
        again = audit_once(ledger, "toy", v2, flagged=["n0", "n1"], verdict="fail")
        assert again.reused_version and again.previous.number == 1
        assert again.result.version == 2 and not again.result.new_version
        assert again.diff.counts == first.diff.counts
        assert ledger.versions("toy")[["version", "n_audits", "last_verdict"]].values.tolist() == [
            [1, 1, "pass"], [2, 2, "fail"]]
        after = ledger.contributors("toy")
        pd.testing.assert_frame_equal(before[["contributor", "n", "flagged"]], after[["contributor", "n", "flagged"]])
        # a changed contributor column is a different version
        v3 = v2.replace(meta=v2.meta.assign(contributor="someone"))
        assert audit_once(ledger, "toy", v3).result.version == 3


# -- one transaction ---------------------------------------------------------------------------
@pytest.mark.parametrize("exc", [RuntimeError, KeyboardInterrupt])
def test_exception_inside_the_audit_leaves_nothing(url, exc):
    ds = make_ds()
    with Ledger(url) as ledger:
        with pytest.raises(exc):
            with ledger.audit("toy", ds) as audit:
                audit.add_findings(findings_for(ds, ["s1"]))
                audit.finish("pass")
                raise exc("interrupted")
        assert audit.result is None
        assert ledger.previous_version("toy") is None
    assert set(table_counts(url).values()) == {0}


@pytest.mark.parametrize("exc", [RuntimeError, KeyboardInterrupt])
def test_failure_during_the_write_rolls_everything_back(url, exc, monkeypatch):
    v1, v2, _ = planted_v2()
    with Ledger(url) as ledger:
        audit_once(ledger, "toy", v1, flagged=["s2"])
        before = table_counts(url)

        def boom(*args, **kwargs):  # after version, samples, audit and findings were inserted
            raise exc("Ctrl-C during the write")

        monkeypatch.setattr(Ledger, "_update_contributors", boom)
        with pytest.raises(exc):
            audit_once(ledger, "toy", v2, flagged=["n1"])
        assert table_counts(url) == before
        monkeypatch.undo()
        assert ledger.previous_version("toy").number == 1
        assert audit_once(ledger, "toy", v2).result.version == 2  # the ledger still works
    assert table_counts(url)["versions"] == 2


def test_finish_is_required_and_findings_are_checked(sqlite_url):
    ds = make_ds()
    with Ledger(sqlite_url) as ledger:
        with pytest.raises(LedgerError, match="without finish"):
            with ledger.audit("toy", ds) as audit:
                audit.add_findings(findings_for(ds))
        with pytest.raises(LedgerError, match="without finish"):
            with ledger.audit("toy", ds) as audit:
                with pytest.raises(DataError, match="not in the audited data"):
                    audit.add_findings(pd.DataFrame({"id": ["nope"], "flagged": [True]}))
                with pytest.raises(DataError, match="flagged"):
                    audit.add_findings(pd.DataFrame({"id": ["s1"]}))
                with pytest.raises(DataError, match="booleans"):
                    audit.add_findings(pd.DataFrame({"id": ["s1"], "flagged": ["yes"]}))
                audit.add_findings(pd.DataFrame({"id": ["s1", "s2"], "flagged": [1, 0], "ensemble_score": [0.5, np.nan]}))
                audit.add_findings(pd.DataFrame({"id": ["s2"], "flagged": [False]}))
                with pytest.raises(DataError, match="more than once"):
                    audit.finish("pass")
                with pytest.raises(ConfigError, match="verdict"):
                    audit.finish("")
                with pytest.raises(ConfigError, match="JSON"):
                    audit.finish("pass", summary={"obj": object()})
        assert audit.result is None
        with ledger.audit("toy", ds) as audit:
            audit.finish("pass")
            with pytest.raises(LedgerError, match="add findings before"):
                audit.add_findings(pd.DataFrame({"id": ["s2"], "flagged": [True]}))
        with pytest.raises(LedgerError, match="already used"):
            with audit:
                pass
    assert table_counts(sqlite_url)["audits"] == 1


def test_findings_are_optional_and_contributors_are_counted_once(sqlite_url):
    ds = make_ds()
    with Ledger(sqlite_url) as ledger:
        with ledger.audit("toy", ds) as audit:
            audit.finish("pass")
        assert audit.result.n_findings == 0 and audit.result.new_version
        assert ledger.contributors("toy").empty  # nothing judged yet
        v = ledger.record_version("toy", ds)   # identical data: the existing version
        assert not v.created and v.number == 1
        # the first audit of a version that records findings counts its contributions ...
        again = audit_once(ledger, "toy", ds, flagged=["s0"])
        assert not again.result.new_version and again.result.version == 1
        counts = ledger.contributors("toy")[["contributor", "n", "flagged"]].sort_values("contributor")
        assert counts.values.tolist() == [["c0", 20, 1], ["c1", 20, 0], ["c2", 20, 0]]
        # ... later re-audits of it do not
        audit_once(ledger, "toy", ds, flagged=["s0", "s1", "s2"])
        assert ledger.contributors("toy")[["contributor", "n", "flagged"]].sort_values("contributor").values.tolist() == \
            counts.values.tolist()
        # partial findings; a version that only removes samples brings nothing in
        with ledger.audit("toy", ds.subset(np.arange(30))) as audit:
            audit.add_findings(pd.DataFrame({"id": ["s0", "s1"], "flagged": [True, False], "score": [1.0, 0.0]}))
            audit.finish("pass")
        f = ledger.findings(audit.result.id)
        assert f["id"].tolist() == ["s0", "s1"] and f["flagged"].tolist() == [True, False]
        assert ledger.contributors("toy")["n"].sum() == 60
        assert ledger.versions("toy")["n_audits"].tolist() == [3, 1]


def test_concurrent_new_version_is_refused_not_mixed(sqlite_url):
    v1, v2, _ = planted_v2()
    with Ledger(sqlite_url) as a, Ledger(sqlite_url) as b:
        audit_once(a, "toy", v1)
        with pytest.raises(LedgerError, match="run the audit again"):
            with a.audit("toy", v2) as slow:
                slow.add_findings(findings_for(v2))
                slow.finish("pass")
                b.record_version("toy", v2.subset(np.arange(10)))  # another process wins the race
        assert slow.result is None
        assert b.versions("toy")["n_samples"].tolist() == [60, 10]
        assert len(a.audits("toy")) == 1


def test_hostile_strings_round_trip(url):
    nasty = ["tab\there", "new\nline", "back\\slash", "\\N", "", "<script>alert(1)</script>", "ünïcødé ✓",
             "quote'\"", "comma,semi;colon", "nul-free \r return"]
    table = pd.DataFrame({"id": [f"id {i} {t}" for i, t in enumerate(nasty)], "content_hash": [f"h{i}" for i in range(10)],
                          "label": [t or "empty" for t in nasty], "contributor": nasty, "source": nasty[::-1]})
    with Ledger(url) as ledger:
        with ledger.audit("hostile \t name", table) as audit:
            audit.add_findings(pd.DataFrame({"id": table["id"], "flagged": [True] * 10, "reasons": nasty,
                                             "score": np.linspace(0, 1, 10)}))
            audit.finish("fail", summary={"note": nasty})
        back = ledger.samples("hostile \t name")
        assert back["id"].tolist() == table["id"].tolist()
        assert back["label"].tolist() == table["label"].tolist()
        assert back["contributor"].tolist() == [t or None for t in nasty]  # empty = unknown contributor
        assert back["source"].tolist() == [t or None for t in nasty[::-1]]
        f = ledger.findings(audit.result.id)
        assert f["reasons"].tolist() == [t or None for t in nasty]
        assert ledger.get_audit(audit.result.id).summary == {"note": nasty}


def test_dataframe_input_and_unknown_contributors(sqlite_url):
    table = pd.DataFrame({"id": [1, 2, 3], "content_hash": ["h1", "h2", "h3"], "label": [0, 1, 0]})
    with Ledger(sqlite_url) as ledger:
        with ledger.audit("raw", table) as audit:
            audit.add_findings(pd.DataFrame({"id": [1, 2, 3], "flagged": [True, False, False]}))
            audit.finish("pass")
        s = ledger.samples("raw")
        assert s["id"].tolist() == ["1", "2", "3"] and s["label"].tolist() == ["0", "1", "0"]
        assert s["contributor"].isna().all()
        assert ledger.contributors("raw").empty and ledger.contributor_history("raw").empty
        with pytest.raises(ConfigError, match="no dataset named"):
            ledger.samples("other")
        with pytest.raises(ConfigError, match="no version 7"):
            ledger.samples("raw", version=7)
        with pytest.raises(DataError, match="unique"):
            ledger.audit("raw", pd.DataFrame({"id": [1, 1], "content_hash": ["a", "b"], "label": [0, 1]}))
        with pytest.raises(DataError, match="at most 512"):
            ledger.audit("raw", pd.DataFrame({"id": ["x" * 600], "content_hash": ["a"], "label": [0]}))


# -- migrations --------------------------------------------------------------------------------
V1_DDL = """
CREATE TABLE mithridate_schema (version INTEGER PRIMARY KEY, description VARCHAR(255) NOT NULL,
    applied_at DATETIME NOT NULL);
CREATE TABLE datasets (id INTEGER PRIMARY KEY, name VARCHAR(255) NOT NULL UNIQUE, created_at DATETIME NOT NULL);
CREATE TABLE versions (id INTEGER PRIMARY KEY, dataset_id INTEGER NOT NULL REFERENCES datasets(id) ON DELETE CASCADE,
    number INTEGER NOT NULL, created_at DATETIME NOT NULL, n_samples INTEGER NOT NULL,
    fingerprint VARCHAR(64) NOT NULL, source TEXT, UNIQUE (dataset_id, number));
CREATE TABLE samples (id INTEGER PRIMARY KEY, version_id INTEGER NOT NULL REFERENCES versions(id) ON DELETE CASCADE,
    sample_id VARCHAR(512) NOT NULL, content_hash VARCHAR(128) NOT NULL, label TEXT NOT NULL,
    contributor VARCHAR(255), source TEXT, UNIQUE (version_id, sample_id));
CREATE TABLE audits (id INTEGER PRIMARY KEY, version_id INTEGER NOT NULL REFERENCES versions(id) ON DELETE CASCADE,
    started_at DATETIME NOT NULL, finished_at DATETIME NOT NULL, verdict VARCHAR(32) NOT NULL,
    summary JSON, diff JSON, tool_version VARCHAR(32));
CREATE TABLE findings (id INTEGER PRIMARY KEY, audit_id INTEGER NOT NULL REFERENCES audits(id) ON DELETE CASCADE,
    sample_id VARCHAR(512) NOT NULL, score FLOAT, flagged BOOLEAN NOT NULL, detector_scores JSON, reasons TEXT,
    UNIQUE (audit_id, sample_id));
INSERT INTO mithridate_schema VALUES (1, 'provenance core', '2024-01-01 00:00:00.000000');
"""


def make_v1_ledger(path):
    """A schema-1 ledger file as an older mithridate wrote it: 2 versions, 2 audits."""
    con = sqlite3.connect(path)
    con.executescript(V1_DDL)
    t = "2024-01-01 00:00:00.000000"
    con.execute("INSERT INTO datasets VALUES (1, 'old', ?)", (t,))
    con.execute("INSERT INTO versions VALUES (1, 1, 1, ?, 6, 'fp1', 'v1.csv')", (t,))
    con.execute("INSERT INTO versions VALUES (2, 1, 2, ?, 6, 'fp2', 'v2.csv')", (t,))
    v1 = [("s0", "h0", "x", "a"), ("s1", "h1", "x", "a"), ("s2", "h2", "y", "b"), ("s3", "h3", "y", "b"),
          ("s4", "h4", "x", "c"), ("s5", "h5", "y", "c")]
    # v2: s5 removed, s1 relabelled, s2 modified, s6 new
    v2 = [("s0", "h0", "x", "a"), ("s1", "h1", "y", "a"), ("s2", "h2b", "y", "b"), ("s3", "h3", "y", "b"),
          ("s4", "h4", "x", "c"), ("s6", "h6", "x", "c")]
    pk = 0
    for vid, rows in ((1, v1), (2, v2)):
        for sid, h, lab, who in rows:
            pk += 1
            con.execute("INSERT INTO samples VALUES (?, ?, ?, ?, ?, ?, 'web')", (pk, vid, sid, h, lab, who))
    con.execute("INSERT INTO audits VALUES (1, 1, ?, ?, 'pass', '{\"n\": 6}', NULL, '0.0.9')", (t, t))
    con.execute("INSERT INTO audits VALUES (2, 2, ?, ?, 'fail', '{\"n\": 6}', NULL, '0.0.9')", (t, t))
    con.execute("INSERT INTO audits VALUES (3, 2, ?, ?, 'fail', NULL, NULL, '0.0.9')", (t, t))  # a re-audit
    flags1 = {"s5": 1}
    flags2 = {"s1": 1, "s2": 1, "s6": 1}
    fid = 0
    for aid, rows, flags in ((1, v1, flags1), (2, v2, flags2), (3, v2, {"s0": 1})):
        for sid, *_ in rows:
            fid += 1
            con.execute("INSERT INTO findings VALUES (?, ?, ?, ?, ?, ?, NULL)",
                        (fid, aid, sid, float(flags.get(sid, 0)), flags.get(sid, 0), json.dumps({"knn": 0.5})))
    con.commit()
    con.close()


def test_upgrade_from_a_hand_made_v1_ledger(tmp_path):
    path = tmp_path / "old.sqlite"
    make_v1_ledger(path)
    with Ledger(path) as ledger:
        assert ledger.upgraded_from == 1 and ledger.schema_version == SCHEMA_VERSION
        # first_seen replayed: relabelled keeps its content's version, modified and new are 2
        fs = ledger.samples("old", version=2).set_index("id")["first_seen"].to_dict()
        assert fs == {"s0": 1, "s1": 1, "s2": 2, "s3": 1, "s4": 1, "s6": 2}
        assert set(ledger.samples("old", version=1)["first_seen"]) == {1}
        # contributors backfilled from each version's first audit, counting what it brought in
        rep = ledger.contributors("old").set_index("contributor")
        assert rep.loc[["a", "b", "c"], ["n", "flagged", "n_audits"]].values.tolist() == [
            [3, 1, 2], [3, 1, 2], [3, 2, 2]]
        assert ledger.get_audit(2).policy is None and ledger.get_audit(2).summary == {"n": 6}
        assert not ledger.get_audit(3).new_version
        # and it keeps working: a third version on the upgraded file
        v3 = pd.DataFrame({"id": ["s0", "s7"], "content_hash": ["h0", "h7"], "label": ["x", "y"],
                           "contributor": ["a", "d"]})
        with ledger.audit("old", v3) as audit:
            assert audit.previous.number == 2
            assert audit.diff.new_ids == ["s7"] and len(audit.diff.removed_ids) == 5
            audit.add_findings(pd.DataFrame({"id": ["s0", "s7"], "flagged": [False, True]}))
            audit.finish("pass")
        assert audit.result.version == 3
        assert ledger.contributors("old").set_index("contributor").loc["d", "n"] == 1
    with sqlite3.connect(path) as con:
        assert [r[0] for r in con.execute("SELECT version FROM mithridate_schema ORDER BY version")] == [1, 2]


def test_a_failing_migration_leaves_the_old_ledger_untouched(tmp_path, monkeypatch):
    path = tmp_path / "old.sqlite"
    make_v1_ledger(path)

    def v2_then_crash(conn):
        MIGRATIONS[1].upgrade(conn)  # all of step 2's DDL and backfill ...
        raise KeyboardInterrupt      # ... then Ctrl-C before the commit

    broken = (MIGRATIONS[0], Migration(2, "crashes", v2_then_crash))
    monkeypatch.setattr(ledger_mod, "upgrade", lambda conn: upgrade(conn, migrations=broken))
    with pytest.raises(KeyboardInterrupt):
        Ledger(path)
    with sqlite3.connect(path) as con:
        tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        cols = {r[1] for r in con.execute("PRAGMA table_info(samples)")}
        versions = [r[0] for r in con.execute("SELECT version FROM mithridate_schema")]
    assert "contributors" not in tables and "first_seen" not in cols and versions == [1]
    monkeypatch.undo()
    with Ledger(path) as ledger:  # a working version upgrades it fine afterwards
        assert ledger.upgraded_from == 1


# -- scale -------------------------------------------------------------------------------------
def test_a_100k_row_version_records_in_seconds(tmp_path):
    rng = np.random.default_rng(0)
    n = 100_000
    X = rng.random((n, 8)).astype(np.float32)
    meta = pd.DataFrame({"contributor": np.array([f"c{i}" for i in range(20)], dtype=object)[rng.integers(0, 20, n)]})
    ds = Dataset.from_arrays(X, rng.integers(0, 10, n), meta=meta)
    findings = pd.DataFrame({"id": ds.ids, "score": rng.random(n), "flagged": rng.random(n) < 0.05,
                             "knn": rng.random(n), "spectral": rng.random(n)})
    _ = ds.content_hashes
    with Ledger(tmp_path / "big.sqlite") as ledger:
        t0 = time.perf_counter()
        with ledger.audit("big", ds) as audit:
            audit.add_findings(findings)
            audit.finish("pass")
        elapsed = time.perf_counter() - t0
        assert audit.result.n_findings == n
        assert ledger.contributors("big")["n"].sum() == n
    # measured ~2.5 s on one core of a laptop-class CPU (100k samples + 100k findings)
    assert elapsed < 20, f"recording 100k rows took {elapsed:.1f}s"


def test_latest_summary_reads_the_newest_audit(sqlite_url):
    with Ledger(sqlite_url) as ledger:
        assert ledger.latest_summary("none") is None
        ds = make_ds()
        for i, data in enumerate((ds.subset(np.arange(40)), ds)):
            with ledger.audit("d", data) as rec:
                rec.finish("pass", summary={"k": i})
        got = ledger.latest_summary("d")
    assert got == {"k": 1, "_version": 2}
