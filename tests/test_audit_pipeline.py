"""The audit pipeline, its policy and sanitize.

Data: scikit-learn's breast_cancer (569 rows, 30 columns), its contributors assigned round-robin
(``c0`` .. ``c9``); the poisoned version flips every label of ``c3`` and ``c7`` (20% of the
rows). Every audit reads the raw columns (a table), about 0.3 s each.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mithridate.audit import Ledger
from mithridate.audit.pipeline import OUTPUT_FILES, AuditResult, load_for_audit, run_audit, write_outputs
from mithridate.audit.policy import Policy, PolicyResult
from mithridate.audit.sanitize import default_manifest_path, sanitize
from mithridate.data import Dataset
from mithridate.errors import ConfigError, DataError

BAD = ("c3", "c7")


def breast_cancer(flip: tuple = (), n: int | None = None) -> Dataset:
    from sklearn.datasets import load_breast_cancer

    X, y = load_breast_cancer(return_X_y=True)
    who = np.array([f"c{i % 10}" for i in range(len(y))], dtype=object)
    y = y.copy()
    m = np.isin(who, list(flip))
    y[m] = 1 - y[m]
    ids = [f"s{i}" for i in range(len(y))]
    ds = Dataset.from_arrays(X, y, ids=ids, meta=pd.DataFrame({"contributor": who, "source": "upload"}), name="bc")
    return ds if n is None else ds.subset(np.arange(n))


@pytest.fixture(scope="module")
def clean_result() -> AuditResult:
    return run_audit(breast_cancer(), name="bc", progress=False)


@pytest.fixture(scope="module")
def poisoned_result() -> AuditResult:
    return run_audit(breast_cancer(flip=BAD), name="bc", progress=False)


# -- policy -------------------------------------------------------------------------------------
def test_policy_yaml_round_trip_and_defaults(tmp_path):
    p = Policy.default()
    f = tmp_path / "policy.yaml"
    f.write_text(p.to_yaml())
    assert Policy.from_yaml(f) == p and p.detectors == "auto"
    f.write_text("detection:\n  detectors: Auto\n")
    assert Policy.from_yaml(f).detectors == "auto"
    f.write_text("flagged:\n  max_share: 0.2\ncontributors:\n  reputation: false\ndetection:\n  detectors: [knn, spectre]\n")
    q = Policy.from_yaml(f)
    assert q.max_flagged_share == 0.2 and q.reputation is False and q.detectors == ("knn", "spectre")
    assert q.max_class_flagged_share == p.max_class_flagged_share  # untouched keys keep the defaults
    f.write_text("")
    assert Policy.from_yaml(f) == p
    f.write_text("changes:\n  max_relabelled_share: null\n")
    assert Policy.from_yaml(f).max_relabelled_share is None


@pytest.mark.parametrize("text, needle", [
    ("flagged:\n  max_shares: 0.2\n", "flagged.max_shares"),
    ("flaged:\n  max_share: 0.2\n", "'flaged'"),
    ("flagged:\n  max_share: lots\n", "flagged.max_share"),
    ("flagged:\n  max_share: 1.5\n", "flagged.max_share"),
    ("contributors:\n  min_samples: 2.5\n", "contributors.min_samples"),
    ("contributors:\n  reputation: maybe\n", "contributors.reputation"),
    ("detection:\n  detectors: knn\n", "detection.detectors"),
    ("detection:\n  parameters: {robust-distance: {bogus: 1}}\n", "detection.parameters for robust-distance"),
    ("detection:\n  parameters: {knn-shapley: {k: 3}}\n", "detection.parameters names 'knn-shapley'"),
    ("detection:\n  detectors: [knn]\n  parameters: {spectral: {}}\n", "detection.parameters names 'spectral'"),
    ("detection:\n  parameters: [robust-distance]\n", "detection.parameters"),
    ("detection:\n  detectors: [knn, spectral-signatures]\n", "detection.detectors names 'spectral-signatures'"),
    ("version: 7\n", "version"),
    ("flagged: [1, 2]\n", "'flagged'"),
    ("flagged: {max_share: 0.1\n", "not valid YAML"),
])
def test_policy_errors_name_the_key(tmp_path, text, needle):
    f = tmp_path / "p.yaml"
    f.write_text(text)
    with pytest.raises(ConfigError) as err:
        Policy.from_yaml(f)
    assert needle in str(err.value) and "\n" not in str(err.value)


def test_policy_detector_parameters_reach_the_members(tmp_path):
    f = tmp_path / "p.yaml"
    f.write_text("detection:\n  parameters:\n    robust-distance: {min_variance_ratio: 0.01}\n    knn: {n_neighbors: 5}\n")
    p = Policy.from_yaml(f)
    assert p.detector_parameters == {"robust-distance": {"min_variance_ratio": 0.01}, "knn": {"n_neighbors": 5}}
    assert Policy.from_dict(p.to_dict()) == p and Policy.default().detector_parameters is None
    r = run_audit(breast_cancer(), name="bc", policy=p, progress=False)
    assert r.summary["policy"]["detection"]["parameters"] == p.detector_parameters
    default = run_audit(breast_cancer(), name="bc", progress=False)
    # 5 neighbours instead of 10: the kNN member's scores (and so the findings) differ
    assert not np.array_equal(r.findings["knn_score"].to_numpy(), default.findings["knn_score"].to_numpy())


def test_policy_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        Policy.from_yaml(tmp_path / "nope.yaml")


def test_policy_evaluate_by_hand():
    summary = {
        "n_samples": 200, "n_flagged": 12,
        "classes": [{"label": "a", "n": 100, "flagged": 2}, {"label": "b", "n": 100, "flagged": 10},
                    {"label": "tiny", "n": 5, "flagged": 5}],
        "contributors": [
            {"contributor": "x", "n": 50, "flagged": 1, "n_judged": 50, "ci_lower": 0.0, "ci_upper": 0.1,
             "population_rate": 0.06, "above_population": False},
            {"contributor": "y", "n": 12, "flagged": 6, "n_judged": 12, "ci_lower": 0.2, "ci_upper": 0.8,
             "population_rate": 0.06, "above_population": True},
            {"contributor": "z", "n": 3, "flagged": 3, "n_judged": 3, "ci_lower": 0.3, "ci_upper": 0.99,
             "population_rate": 0.06, "above_population": True},
        ],
        "diff": {"base_version": 1, "counts": {"new": 60, "relabelled": 1, "n_old": 160}, "n_new_flagged": 18},
    }
    res = {r.name: r for r in Policy.default().evaluate(summary)}
    assert all(isinstance(r, PolicyResult) for r in res.values())
    assert res["flagged_share"].passed and res["flagged_share"].value == pytest.approx(0.06)
    assert res["class_flagged_share"].passed and res["class_flagged_share"].subject == "b"  # "tiny" is too small
    assert not res["contributor_flagged"].passed and res["contributor_flagged"].subject == "y"
    assert not res["reputation"].passed and res["reputation"].subject == "y"  # z has too few samples
    assert "fewer than 10 judged samples also lie above it but are too small to fail the gate: 'z' (3)" in \
        res["reputation"].message
    assert "1 contributor with fewer than 10 samples over the limit, not counted: 'z' 3 of 3" in \
        res["contributor_flagged"].message
    assert res["contributor_flagged"].message.startswith("worst contributor with at least 10 samples 'y'")
    assert res["relabelled_share"].passed and res["relabelled_share"].value == pytest.approx(1 / 160)
    assert not res["new_flagged_share"].passed and res["new_flagged_share"].value == pytest.approx(0.3)
    assert res["contributor_concentration"].passed and res["contributor_concentration"].value is None  # not in summary
    off = Policy(max_contributor_flagged_share=None, reputation=False, max_new_flagged_share=None,
                 max_concentration_p=None)
    assert all(r.passed for r in off.evaluate(summary))
    assert {r.name for r in off.evaluate(summary)} == {"flagged_share", "class_flagged_share", "relabelled_share"}


def test_policy_concentration_check_by_hand():
    conc = {"p_value": 0.004, "statistic": 5.1, "top_k": 20, "n_permutations": 999, "reason": None,
            "contributors": [{"contributor": "mallory", "n": 40, "top": 9, "expected": 2.1, "deviance": 13.0},
                             {"contributor": "x", "n": 50, "top": 4, "expected": 2.6, "deviance": 0.6}]}
    pol = Policy.default()
    fail = pol._concentration(conc)
    assert not fail.passed and fail.value == pytest.approx(0.004) and fail.limit == 0.01
    assert fail.subject == "mallory" and "'mallory' 9 (expected 2.1)" in fail.message and "20 most" in fail.message
    assert pol._concentration({**conc, "p_value": 0.2}).passed
    assert Policy(max_concentration_p=0.001)._concentration(conc).passed
    skipped = pol._concentration({"p_value": None, "reason": "fewer than two contributors"})
    assert skipped.passed and skipped.value is None and "fewer than two contributors" in skipped.message
    # with p_alone, only those that stand out on their own are named; the rest are counted
    alone = pol._concentration({**conc, "contributors": [{**conc["contributors"][0], "p_alone": 0.001},
                                                         {**conc["contributors"][1], "p_alone": 0.3}]})
    assert "'mallory' 9 (expected 2.1) and 1 more above expectation" in alone.message and "'x'" not in alone.message
    in_class = pol._concentration({**conc, "top_class": "cat"})
    assert not in_class.passed and "20 most suspicious samples of class 'cat' come from" in in_class.message
    assert Policy.from_dict({"contributors": {"concentration_p": None}}).max_concentration_p is None
    with pytest.raises(ConfigError, match=r"contributors.concentration_p must be above 0.*null"):
        Policy.from_dict({"contributors": {"concentration_p": 0}})
    with pytest.raises(ConfigError, match="contributors.concentration_p"):
        Policy.from_dict({"contributors": {"concentration_p": 2}})


# -- the audit ------------------------------------------------------------------------------------
def test_clean_data_pass(clean_result):
    r = clean_result
    assert r.verdict == "pass" and r.exit_code == 0 and not r.failed
    assert r.summary["n_samples"] == 569 and r.summary["n_contributors"] == 10
    assert not r.reputation["above_population"].any()
    conc = r.summary["concentration"]
    assert conc["p_value"] > 0.01 and conc["n_samples"] == 569 and conc["top_k"] in conc["levels"]
    json.dumps(r.summary, allow_nan=False)  # JSON-safe


def test_flips_in_two_contributors_fail_and_rank_top(poisoned_result):
    r = poisoned_result
    assert r.verdict == "fail" and r.exit_code == 1
    failed = {x.name for x in r.failed}
    assert {"contributor_flagged", "reputation", "contributor_concentration"} <= failed
    assert {c["contributor"] for c in r.summary["concentration"]["contributors"][:2]} == set(BAD)
    assert set(r.reputation["contributor"].head(2)) == set(BAD)
    honest = r.reputation[~r.reputation["contributor"].isin(BAD)]
    assert not honest["above_population"].any()
    assert {c["contributor"] for c in r.summary["contributors"] if c["above_population"]} == set(BAD)


def test_findings_columns_and_reasons(poisoned_result):
    f = poisoned_result.findings
    assert list(f.columns[:5]) == ["id", "label", "contributor", "source", "status"]
    for c in ("robust-distance_score", "knn_score", "confident-learning_score", "ensemble_score", "flagged", "flagged_by",
              "reasons"):
        assert c in f.columns
    assert f["id"].tolist() == [f"s{i}" for i in range(569)]
    flagged = f[f["flagged"]]
    assert (flagged["reasons"].str.len() > 0).all()
    assert flagged["reasons"].str.contains(r"of neighbours disagree|z=|p\(label\)").all()
    assert (f.loc[~f["flagged"] & (f["flagged_by"] == ""), "reasons"].str.contains("knn").sum() == 0)
    assert poisoned_result.flagged_ids[0] == f.loc[f["ensemble_score"].idxmax(), "id"]


def test_previous_without_ledger_gives_a_diff():
    v1 = breast_cancer(n=300)
    y = v1.y.copy()
    y[:3] = 1 - y[:3]
    r = run_audit(v1.replace(y=y), name="bc", previous=v1, progress=False)
    assert r.summary["diff"]["counts"]["relabelled"] == 3
    assert r.summary["diff"]["ids"]["relabelled"] == ["s0", "s1", "s2"]
    assert "relabelled (was" in r.findings.loc[0, "reasons"]
    # s0, s1, s2 come from c0, c1, c2; relabel 6 of c4's samples too: the check names who sent them
    y[[4, 14, 24, 34, 44, 54]] = 1 - y[[4, 14, 24, 34, 44, 54]]
    r = run_audit(v1.replace(y=y), name="bc", previous=v1, progress=False)
    assert r.summary["diff"]["relabelled_by_contributor"] == {"c4": 6, "c0": 1, "c1": 1, "c2": 1}
    check = {p.name: p for p in r.policy_results}["relabelled_share"]
    assert not check.passed and check.subject == "c4"
    assert check.message.endswith("sent by 'c4' 6, 'c0' 1, 'c1' 1 and 1 more")
    rel = {rec["id"]: rec["contributor"] for rec in r.summary["diff"]["relabelled"]}
    assert rel["s4"] == "c4" and rel["s0"] == "c0"
    from mithridate.report.audit_report import render_audit_report

    html = render_audit_report(r)
    table = html[html.index("Relabelled samples"):]
    table = table[:table.index("</table>")]
    assert "<th>contributor</th>" in table and ">c4</td>" in table


def test_bad_arguments():
    ds = breast_cancer(n=100)
    with pytest.raises(ConfigError):
        run_audit(ds.X, name="x", progress=False)
    with pytest.raises(ConfigError, match="name"):
        run_audit(ds, name="  ", progress=False)
    with pytest.raises(ConfigError, match="features"):
        run_audit(ds, name="x", features="pixels", progress=False)
    with pytest.raises(ConfigError, match="detector"):
        run_audit(ds, name="x", policy={"detection": {"detectors": ["no-such-detector"]}}, progress=False)
    reg = Dataset.from_arrays(ds.X, np.linspace(0, 1, 100), task="regression")
    with pytest.raises(DataError, match="class labels"):
        run_audit(reg, name="x", progress=False)


# -- ledger: two successive versions ---------------------------------------------------------------
def test_ledger_round_trip_reports_exactly_the_planted_changes(tmp_path):
    full = breast_cancer()
    v1 = full.subset(np.arange(450))
    keep = np.setdiff1d(np.arange(450), [5, 50, 100, 150])             # 4 removed
    v2 = full.subset(np.concatenate([keep, np.arange(500, 530)]))        # 30 new
    relabel = ["s7", "s8", "s9"]                                          # 3 relabelled
    y = v2.y.copy()
    pos = np.isin([str(i) for i in v2.ids], relabel)
    y[pos] = 1 - y[pos]
    v2 = v2.replace(y=y)
    url = f"sqlite:///{tmp_path / 'ledger.sqlite'}"
    with Ledger(url) as ledger:
        r1 = run_audit(v1, name="bc", ledger=ledger, progress=False)
        r2 = run_audit(v2, name="bc", ledger=ledger, progress=False, out_dir=tmp_path / "out")
        assert (r1.version, r2.version) == (1, 2) and r2.audit_id is not None
        d = r2.summary["diff"]
        assert d["base_version"] == 1 and d["version"] == 2
        assert d["counts"]["new"] == 30 and d["counts"]["removed"] == 4 and d["counts"]["relabelled"] == 3
        assert d["counts"]["modified"] == 0 and d["counts"]["duplicate"] == 0
        assert sorted(d["ids"]["new"]) == sorted(f"s{i}" for i in range(500, 530))
        assert sorted(d["ids"]["removed"]) == ["s100", "s150", "s5", "s50"]
        assert d["ids"]["relabelled"] == relabel
        assert d["n_new_flagged"] == int(r2.findings.loc[r2.findings["status"] == "new", "flagged"].sum())
        # the ledger holds the same audit: findings, verdict and summary
        audits = ledger.audits("bc")
        assert len(audits) == 2 and audits["verdict"].tolist() == [r1.verdict, r2.verdict]
        stored = ledger.findings(r2.audit_id)
        assert len(stored) == len(v2) and stored["flagged"].sum() == r2.summary["n_flagged"]
        assert {"robust-distance", "knn", "confident-learning"} <= set(stored.columns)
        # reputation merges the history: the ledger's stored posterior equals what the audit reported
        led = ledger.contributors("bc", level=r2.summary["credible_level_each"]).set_index("contributor")
        rep = r2.reputation.set_index("contributor")
        assert np.allclose(led.loc[rep.index, "n"], rep["n"]) and np.allclose(led.loc[rep.index, "ci_lower"], rep["ci_lower"])
        assert all(len(t) == 1 for t in rep["trend"])  # one earlier audit per contributor
        # a re-audit of identical data reuses the version and diffs against version 1 again
        r3 = run_audit(v2, name="bc", ledger=ledger, progress=False)
        assert r3.version == 2 and r3.summary["diff"]["counts"] == d["counts"]
        assert r3.summary["ledger"]["reused_version"] is True
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["ledger"]["audit_id"] == r2.audit_id and summary["diff"]["counts"]["relabelled"] == 3
    # timings of every step, the ledger commit included, and of every ensemble member
    assert "committing the ledger transaction" in summary["seconds_steps"]
    assert all(v >= 0 for v in summary["seconds_steps"].values())
    assert set(summary["seconds_detectors"]) == {"robust-distance", "knn", "confident-learning"}


def test_versions_without_ids_are_paired_by_content(tmp_path):
    # data without an id column gets row numbers as ids; after rows are removed (e.g. by sanitize)
    # every later row used to come out "modified", and each was judged again for reputation
    full = breast_cancer()
    plain = lambda d: Dataset.from_arrays(np.asarray(d.X), np.asarray(d.y), meta=d.meta.reset_index(drop=True))
    v1 = plain(full.subset(np.arange(400)))
    gone = [3, 50, 51, 200]
    keep = np.setdiff1d(np.arange(400), gone)
    v2 = plain(full.subset(np.concatenate([keep, np.arange(450, 460)])))
    y = v2.y.copy()
    y[[10, 20]] = 1 - y[[10, 20]]                      # rows 10, 20 of v2 (old rows 11, 21) relabelled
    v2 = v2.replace(y=y)
    with Ledger(f"sqlite:///{tmp_path / 'ledger.sqlite'}") as ledger:
        run_audit(v1, name="plain", ledger=ledger, progress=False)
        r2 = run_audit(v2, name="plain", ledger=ledger, progress=False)
    d = r2.summary["diff"]
    assert d["matched_by"] == "content"
    assert d["counts"]["removed"] == 4 and sorted(map(int, d["ids"]["removed"])) == gone
    assert d["counts"]["new"] == 10 and d["counts"]["relabelled"] == 2 and d["counts"]["modified"] == 0
    assert d["counts"]["unchanged"] == 396 - 2
    assert {(r["id"], r["old_id"]) for r in d["relabelled"]} == {("10", "11"), ("20", "21")}
    # reputation counts v1's 400 samples once, plus only what v2 brought in (10 new, 2 relabelled)
    assert sum(c["n_judged"] for c in r2.summary["contributors"]) == 400 + 12


def test_a_table_of_texts_is_featurised_and_skipped_columns_are_reported(tmp_path):
    # reviews.csv (review, sentiment): the text column used to be refused ("encode them as numbers")
    rng = np.random.default_rng(0)
    good, bad = ["great", "love", "perfect", "recommend"], ["awful", "broken", "refund", "avoid"]
    rows = []
    for i in range(120):
        pos = i % 2 == 0
        words = rng.choice(good if pos else bad, 5).tolist()
        label = "negative" if i in (4, 8, 12) else ("positive" if pos else "negative")  # 3 flipped
        rows.append({"review": " ".join(words) + f" <b>item {i}</b>", "sentiment": label, "who": f"u{i % 3}"})
    path = tmp_path / "reviews.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    inp = load_for_audit(path, label="sentiment", text_col="review", contributor="who")
    ds = inp.dataset
    assert inp.options["featurizer"] == "tfidf" and ds.X.ndim == 2 and len(ds) == 120
    assert ds.meta["text"].iloc[0] == rows[0]["review"] and ds.meta["text_hash"].nunique() == 120
    r = run_audit(ds, name="reviews", progress=False)
    flagged = set(r.findings.loc[r.findings["flagged"], "id"].astype(int))
    assert {4, 8, 12} <= flagged
    # a numeric table with a '?' column: the column is left out, with a warning naming it
    bc = pd.DataFrame({"a": np.arange(50.0), "b": ["?"] + [str(v) for v in range(49)], "y": [0, 1] * 25})
    bc.to_csv(tmp_path / "q.csv", index=False)
    with pytest.warns(UserWarning, match=r"not used as features: 'b' \(e.g. '\?'\)"):
        load_for_audit(tmp_path / "q.csv", label="y")
    with pytest.raises(DataError, match=r"not numeric \(e.g. '\?'\)"):
        load_for_audit(tmp_path / "q.csv", label="y", features=["b"])


def test_a_text_table_with_numeric_columns(tmp_path):
    # a ticket export nearly always has a number beside the text ('stars'): the audit read only that
    # column, even with text='text', and texts could not be named as the features at all
    rng = np.random.default_rng(1)
    words = [[f"t{c}w{k}" for k in range(40)] for c in range(2)]
    rows = [{"id": f"r{i}", "text": " ".join(rng.choice(words[i % 2], 6)), "label": ["x", "y"][i % 2],
             "stars": int(rng.integers(1, 6))} for i in range(160)]
    rows[7]["text"] = ""        # blank texts are read (as JSON Lines' are), not refused
    rows[9]["text"] = None
    path = tmp_path / "tickets.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    with pytest.warns(UserWarning, match=r"the texts of column 'text' are audited; the other columns are not used \('stars'\)"):
        inp = load_for_audit(path, label="label", text_col="text", id_col="id")
    assert inp.options["featurizer"] == "tfidf" and inp.dataset.X.shape[1] > 1
    assert run_audit(inp.dataset, name="t", progress=False).summary["representation"].startswith("text (TF-IDF")
    named = load_for_audit(path, label="label", features=["text"], id_col="id")
    assert named.options["featurizer"] == "tfidf" and np.array_equal(named.dataset.X, inp.dataset.X)
    with pytest.raises(ConfigError, match="holds text: audit it alone"):
        load_for_audit(path, label="label", features=["text", "stars"], id_col="id")
    # found by its name only: the numeric columns stay the features, and the warning says how to switch
    with pytest.warns(UserWarning, match=r"column 'text' holds text .* reads the numeric columns \('stars'\); pass "
                                         r"text='text'"):
        auto = load_for_audit(path, label="label", id_col="id")
    assert auto.options["features"] == ["stars"]


def test_rare_label_values_and_skipped_detectors_are_said(tmp_path):
    from sklearn.datasets import load_wine

    d = load_wine(as_frame=True).frame
    d["target"] = np.array(["barolo", "grignolino", "barbera"], dtype=object)[d["target"]]
    d.loc[3, "target"] = "barollo"  # a typo makes a class of one
    path = tmp_path / "wine.csv"
    d.to_csv(path, index=False)
    with pytest.warns(UserWarning, match=r"held by only one or two rows while the typical class has \d+: 'barollo' \(1\)"):
        inp = load_for_audit(path, label="target")
    # confident learning runs on the class of one (it refused it, and the ensemble went on without it silently)
    r = run_audit(inp.dataset, name="wine", progress=False)
    assert r.summary["skipped_detectors"] == {} and "confident-learning" in r.summary["detectors"]
    # a member that cannot run is now said on the console too, not only in the summary and report
    pol = Policy.from_dict({"detection": {"detectors": ["knn", "strip"]}})
    with pytest.warns(UserWarning, match=r"detector strip did not run and the audit goes on without it"):
        r = run_audit(inp.dataset, name="wine", policy=pol, progress=False)
    assert list(r.summary["skipped_detectors"]) == ["strip"]


def test_parquet_with_embedded_images_the_hugging_face_layout(tmp_path):
    # datasets' to_parquet writes images as a struct {bytes: PNG, path}: read them from the cells
    import io

    from PIL import Image
    from sklearn.datasets import load_digits

    d = load_digits()
    cells, raw = [], []
    for i in range(90):
        buf = io.BytesIO()
        Image.fromarray((d.images[i] * 15).astype(np.uint8)).save(buf, format="PNG")
        cells.append({"bytes": buf.getvalue(), "path": f"{i}.png"})
        raw.append(buf.getvalue())
    df = pd.DataFrame({"image": cells, "label": d.target[:90], "who": [f"v{i % 3}" for i in range(90)]})
    df.to_parquet(tmp_path / "hf.parquet")
    inp = load_for_audit(tmp_path / "hf.parquet", label="label", image_col="image", contributor="who")
    X = np.asarray(inp.dataset.X)
    assert X.shape == (90, 1, 8, 8) and inp.files == () and inp.image_root is None
    assert np.allclose(X[5, 0] * 255, (d.images[5] * 15).astype(np.uint8))
    r = run_audit(inp.dataset, name="hf", progress=False)
    assert len(r.findings) == 90
    out = tmp_path / "clean.parquet"
    res = sanitize(tmp_path / "hf.parquet", out, label="label", image_col="image", contributor="who", budget=0.1)
    kept = pd.read_parquet(out)
    assert len(kept) == 90 - res.n_removed and isinstance(kept["image"].iloc[0], dict)
    # plain bytes cells work too; a cell that is not an image is one clear error naming its row
    pd.DataFrame({"image": raw, "label": d.target[:90]}).to_parquet(tmp_path / "raw.parquet")
    assert load_for_audit(tmp_path / "raw.parquet", label="label", image_col="image").dataset.X.shape == (90, 1, 8, 8)
    raw[7] = b"not a png"
    pd.DataFrame({"image": raw, "label": d.target[:90]}).to_parquet(tmp_path / "bad.parquet")
    with pytest.raises(DataError, match="data row 7"):
        load_for_audit(tmp_path / "bad.parquet", label="label", image_col="image")


def test_renamed_contributors_keep_the_per_contributor_check(tmp_path):
    # the same poisoned rows audited again with the contributors renamed ("c3" -> "C3"): no sample is
    # new to the ledger, so no one has a reputation under the new names -- the contributor rows used
    # to vanish from the summary with it, switching the per-contributor limit off (exit 0)
    bad = breast_cancer(flip=BAD)
    renamed = bad.replace(meta=bad.meta.assign(contributor=[w.upper() for w in bad.meta["contributor"]]))
    with Ledger(f"sqlite:///{tmp_path / 'ledger.sqlite'}") as ledger:
        r1 = run_audit(bad, name="bc", ledger=ledger, progress=False)
        r2 = run_audit(renamed, name="bc", ledger=ledger, progress=False, out_dir=tmp_path / "out")
    assert r1.exit_code == 1 and r2.exit_code == 1
    rows = {c["contributor"]: c for c in r2.summary["contributors"]}
    assert set(rows) == {f"C{i}" for i in range(10)}
    assert rows["C3"]["rank"] is None and rows["C3"]["n"] == 57 and rows["C3"]["n_judged"] == 0
    failed = {r.name: r for r in r2.failed}
    assert failed["contributor_flagged"].subject in ("C3", "C7")
    rep = next(r for r in r2.policy_results if r.name == "reputation")
    assert rep.passed and "renamed" in rep.message
    assert "no reputation yet" in (tmp_path / "out" / "report.html").read_text()


def test_whole_float_contributors_are_written_as_integers():
    # an integer contributor column with a blank cell is read as floats: 3.0 must stay contributor "3"
    ds = breast_cancer(n=60)
    who = pd.Series([float(i % 4) for i in range(60)])
    who[0] = np.nan
    r = run_audit(ds.replace(meta=ds.meta.assign(contributor=who)), name="bc", progress=False)
    assert {c["contributor"] for c in r.summary["contributors"]} == {"0", "1", "2", "3"}
    assert r.findings["contributor"].iloc[1:5].tolist() == ["1", "2", "3", "0"]


# -- outputs --------------------------------------------------------------------------------------
def test_outputs_written(clean_result, tmp_path):
    out = tmp_path / "audit"
    paths = write_outputs(clean_result, out)
    assert sorted(p.name for p in out.iterdir()) == sorted(OUTPUT_FILES)
    f = pd.read_csv(paths["findings"])
    assert len(f) == 569 and f["flagged"].sum() == clean_result.summary["n_flagged"]
    s = json.loads(paths["summary"].read_text())
    assert s["verdict"] == "pass" and s["policy"] == Policy.default().to_dict()
    assert paths["report"].read_text().startswith("<!DOCTYPE html>")
    # writing again into an existing folder replaces the three files and leaves other files alone
    (out / "keep.txt").write_text("mine")
    write_outputs(clean_result, out)
    assert sorted(p.name for p in out.iterdir()) == sorted(OUTPUT_FILES + ("keep.txt",))


def _leftovers(parent: Path) -> list:
    return [p.name for p in parent.iterdir() if p.name.startswith(".")]


def test_failure_while_writing_leaves_no_partial_output(tmp_path, monkeypatch):
    import mithridate.report.audit_report as ar

    def boom(*a, **k):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(ar, "render_audit_report", boom)
    ds = breast_cancer(n=200)
    out = tmp_path / "audit"
    with pytest.raises(RuntimeError, match="disk on fire"):
        run_audit(ds, name="bc", out_dir=out, progress=False)
    assert not out.exists() and _leftovers(tmp_path) == []
    # an existing output folder keeps its previous files untouched
    out.mkdir()
    (out / "findings.csv").write_text("old")
    with pytest.raises(RuntimeError):
        run_audit(ds, name="bc", out_dir=out, progress=False)
    assert [p.name for p in out.iterdir()] == ["findings.csv"] and (out / "findings.csv").read_text() == "old"
    # with a ledger: nothing recorded either
    url = f"sqlite:///{tmp_path / 'l.sqlite'}"
    with Ledger(url) as ledger:
        with pytest.raises(RuntimeError):
            run_audit(ds, name="bc", ledger=ledger, out_dir=tmp_path / "a2", progress=False)
        assert len(ledger.datasets()) == 0
    assert not (tmp_path / "a2").exists() and _leftovers(tmp_path) == []


@pytest.mark.parametrize("where", ["finish", "commit"])
def test_ledger_failure_leaves_no_output(tmp_path, monkeypatch, where):
    from mithridate.audit.ledger import AuditRecorder, LedgerError

    def refuse(self, *a, **k):
        raise LedgerError("cannot record the audit in ledger: database is locked")

    if where == "finish":
        monkeypatch.setattr(AuditRecorder, "finish", refuse)
    else:  # the transaction itself fails when the with-block exits
        monkeypatch.setattr(Ledger, "_commit_audit", refuse)
    with Ledger("sqlite://") as ledger:
        with pytest.raises(LedgerError, match="locked"):
            run_audit(breast_cancer(n=200), name="bc", ledger=ledger, out_dir=tmp_path / "o", progress=False)
        assert len(ledger.datasets()) == 0
    assert not (tmp_path / "o").exists() and _leftovers(tmp_path) == []


# -- loading whole files ----------------------------------------------------------------------------
def _write_csv(path: Path, ds: Dataset, *, extra: bool = True) -> pd.DataFrame:
    df = pd.DataFrame(np.asarray(ds.X), columns=[f"f{j}" for j in range(ds.n_features)])
    df.insert(0, "sample", [str(i) for i in ds.ids])
    df["diagnosis"] = np.where(ds.y == 1, "benign", "malignant")
    df["user"] = ds.meta["contributor"].to_numpy()
    if extra:
        df["note"] = [f"row {i}, \"quoted\"" for i in range(len(df))]
    df.to_csv(path, index=False)
    return df


def test_load_for_audit_tables_and_errors(tmp_path):
    p = tmp_path / "bc.csv"
    df = _write_csv(p, breast_cancer(flip=BAD))
    inp = load_for_audit(p, label="diagnosis", id_col="sample", contributor="user")
    assert len(inp.dataset) == 569 and inp.format == "csv" and inp.dataset.n_features == 30  # "note" is skipped
    assert inp.dataset.ids.tolist() == df["sample"].tolist()
    assert inp.dataset.meta["contributor"].tolist() == df["user"].tolist()
    with pytest.raises(DataError, match="label column 'nope'"):
        load_for_audit(p, label="nope")
    with pytest.raises(DataError, match="contributor column 'who'"):
        load_for_audit(p, label="diagnosis", contributor="who")
    with pytest.raises(ConfigError, match="label"):
        load_for_audit(p)
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(DataError, match="empty"):
        load_for_audit(empty, label="y")
    one = tmp_path / "one.csv"
    pd.DataFrame({"a": [1.0, 2.0, 3.0], "y": ["x", "x", "x"]}).to_csv(one, index=False)
    with pytest.raises(DataError, match="class"):
        load_for_audit(one, label="y")
    assert len(load_for_audit("wine").dataset) == 178


# -- sanitize -------------------------------------------------------------------------------------
def test_sanitize_csv_keeps_columns_and_drops_exactly_the_flagged(tmp_path):
    p = tmp_path / "bc.csv"
    _write_csv(p, breast_cancer(flip=BAD))
    raw_before = p.read_bytes()
    out = tmp_path / "clean" / "bc.clean.csv"
    res = sanitize(p, out, label="diagnosis", id_col="sample", contributor="user", progress=False)
    original = pd.read_csv(p, dtype=str, keep_default_na=False)
    cleaned = pd.read_csv(out, dtype=str, keep_default_na=False)
    flagged = set(res.audit.findings.loc[res.audit.findings["flagged"], "id"].astype(str))
    assert list(cleaned.columns) == list(original.columns)
    expected = original[~original["sample"].isin(flagged)]
    pd.testing.assert_frame_equal(cleaned.reset_index(drop=True), expected.reset_index(drop=True))
    assert res.n_removed == len(flagged) > 0 and res.n_kept == len(cleaned) and res.n_input == 569
    man = pd.read_csv(res.manifest)
    assert sorted(man["id"].astype(str)) == sorted(flagged)
    assert (man["reasons"].str.len() > 0).all() and set(man["why"]) == {"flagged"}
    assert res.manifest == default_manifest_path(out) == out.parent / "bc.clean.removed.csv"
    info = json.loads(res.manifest_json.read_text())
    assert info["n_removed"] == res.n_removed and info["removed_per_contributor"]
    assert p.read_bytes() == raw_before
    # the bad contributors lose most of their rows
    assert sum(info["removed_per_contributor"].get(c, 0) for c in BAD) > 0.8 * res.n_removed


def test_sanitize_semicolon_csv_writes_semicolons(tmp_path):
    p = tmp_path / "bc.csv"
    _write_csv(p, breast_cancer(flip=BAD))
    pd.read_csv(p, dtype=str, keep_default_na=False).to_csv(p, sep=";", index=False)
    out = tmp_path / "bc.clean.csv"
    res = sanitize(p, out, label="diagnosis", id_col="sample", contributor="user", progress=False)
    assert res.n_removed > 0
    original = pd.read_csv(p, sep=";", dtype=str, keep_default_na=False)
    cleaned = pd.read_csv(out, sep=";", dtype=str, keep_default_na=False)
    assert out.read_text().splitlines()[0] == ";".join(original.columns)  # the input's separator
    flagged = set(res.audit.findings.loc[res.audit.findings["flagged"], "id"].astype(str))
    expected = original[~original["sample"].isin(flagged)]
    pd.testing.assert_frame_equal(cleaned.reset_index(drop=True), expected.reset_index(drop=True))


def test_sanitize_refuses_the_input_and_existing_outputs(tmp_path):
    p = tmp_path / "bc.csv"
    _write_csv(p, breast_cancer(n=120), extra=False)
    before = p.read_bytes()
    with pytest.raises(ConfigError, match="refusing"):
        sanitize(p, p, label="diagnosis", progress=False)
    with pytest.raises(ConfigError, match="refusing"):
        sanitize(p, tmp_path / "x" / ".." / "bc.csv", label="diagnosis", progress=False)
    with pytest.raises(ConfigError, match="refusing"):
        sanitize(p, tmp_path / "o.csv", label="diagnosis", manifest=p, progress=False)
    with pytest.raises(ConfigError, match="same format"):
        sanitize(p, tmp_path / "o.parquet", label="diagnosis", progress=False)
    assert p.read_bytes() == before
    out = tmp_path / "o.csv"
    out.write_text("precious")
    with pytest.raises(ConfigError, match="already exists"):
        sanitize(p, out, label="diagnosis", progress=False)
    assert out.read_text() == "precious"
    res = sanitize(p, out, label="diagnosis", overwrite=True, progress=False)
    assert len(pd.read_csv(out)) == res.n_kept
    assert sorted(x.name for x in tmp_path.iterdir() if x.name.startswith(".")) == []
    # a second output with the same stem wants the same default manifest: the error says how to
    # write it elsewhere, and manifest= does
    with pytest.raises(ConfigError, match=r"default manifest name for the output o\.csv\.gz; another output named o\.\* .*manifest=PATH"):
        sanitize(p, tmp_path / "o.csv.gz", label="diagnosis", progress=False)
    assert not (tmp_path / "o.csv.gz").exists()
    res2 = sanitize(p, tmp_path / "o.csv.gz", label="diagnosis", manifest=tmp_path / "o.gz.removed.csv", progress=False)
    assert res2.manifest_json == tmp_path / "o.gz.manifest.json" and res2.manifest_json.exists()
    # the gzip header names the output (gunzip -N restores it), not the temporary file it was written as
    import gzip

    head = (tmp_path / "o.csv.gz").read_bytes()[:64]
    assert b"o.csv\x00" in head and b".part" not in head
    assert len(pd.read_csv(tmp_path / "o.csv.gz")) == res2.n_kept
    with gzip.open(tmp_path / "o.csv.gz", "rt") as fh:
        assert fh.readline().strip() == p.read_text().splitlines()[0]


def test_sanitize_npz_and_parquet(tmp_path):
    from sklearn.datasets import load_wine

    X, y = load_wine(return_X_y=True)
    y = y.copy()
    y[:20] = (y[:20] + 1) % 3
    p = tmp_path / "wine.npz"
    np.savez(p, x=X, y=np.array(["a", "b", "c"])[y], ids=np.arange(100, 100 + len(y)), extra=np.array([1, 2, 3]))
    res = sanitize(p, tmp_path / "wine.clean.npz", progress=False)
    with np.load(tmp_path / "wine.clean.npz", allow_pickle=False) as z:
        assert sorted(z.files) == ["extra", "ids", "x", "y"]
        removed = set(res.removed["id"].astype(int))
        keep = ~np.isin(np.arange(100, 100 + len(y)), list(removed))
        assert np.array_equal(z["ids"], np.arange(100, 100 + len(y))[keep]) and np.array_equal(z["x"], X[keep])
        assert z["y"].dtype.kind == "U" and np.array_equal(z["extra"], [1, 2, 3])
    assert len(removed & set(range(100, 120))) >= 10  # most flips found
    q = tmp_path / "wine.parquet"
    pd.DataFrame(X, columns=[f"f{j}" for j in range(13)]).assign(label=y).to_parquet(q)
    res2 = sanitize(q, tmp_path / "wine.table.parquet", label="label", progress=False)
    back = pd.read_parquet(tmp_path / "wine.table.parquet")
    assert list(back.columns) == list(pd.read_parquet(q).columns) and len(back) == res2.n_kept


def test_sanitize_image_folder_copies_kept_files(tmp_path):
    from PIL import Image
    from sklearn.datasets import load_digits

    d = load_digits()
    root = tmp_path / "imgs"
    idx = np.flatnonzero(np.isin(d.target, [0, 1]))[:160]
    for k, i in enumerate(idx):
        label = int(d.target[i]) if k % 10 else 1 - int(d.target[i])  # every 10th image in the wrong folder
        f = root / f"class{label}" / f"img{k:03d}.png"
        f.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray((d.images[i] * 16).clip(0, 255).astype(np.uint8)).save(f)
    (root / "class0" / "README.txt").write_text("labelled by the night shift")  # not an image: kept as it is
    with pytest.warns(UserWarning, match="1 file under .* was copied unchanged"):
        res = sanitize(root, tmp_path / "clean", feature_mode="raw", progress=False)
    assert (tmp_path / "clean" / "class0" / "README.txt").read_text() == "labelled by the night shift"
    kept = sorted(p.relative_to(tmp_path / "clean").as_posix() for p in (tmp_path / "clean").rglob("*.png"))
    removed = set(res.removed["id"])
    assert len(kept) == res.n_kept and not removed & set(kept) and res.n_removed > 0
    assert sorted(kept + sorted(removed)) == sorted(p.relative_to(root).as_posix() for p in root.rglob("*.png"))
    with pytest.raises(ConfigError, match="refusing"):
        sanitize(root, root / "clean", feature_mode="raw", progress=False)


def test_image_manifest_audit_with_contributors_and_sanitize(tmp_path):
    # a flat folder of pictures and a CSV manifest (file, label, vendor): the vendor that sent
    # mislabelled pictures is found, and the cleaned manifest is written next to the input
    from PIL import Image
    from sklearn.datasets import load_digits

    d = load_digits()
    idx = np.flatnonzero(np.isin(d.target, [0, 1]))[:200]
    (tmp_path / "pics").mkdir()
    rows = []
    for k, i in enumerate(idx):
        vendor = f"v{k % 5}"
        label = int(d.target[i])
        if vendor == "v4" and k % 2 == 0:
            label = 1 - label  # v4 mislabels half of what it sends
        Image.fromarray((d.images[i] * 16).clip(0, 255).astype(np.uint8)).save(tmp_path / "pics" / f"{k}.png")
        rows.append({"path": f"pics/{k}.png", "digit": label, "vendor": vendor})
    pd.DataFrame(rows).to_csv(tmp_path / "labels.csv", index=False)
    inp = load_for_audit(tmp_path / "labels.csv", label="digit", image_col="path", contributor="vendor")
    assert inp.kind == "table" and inp.dataset.is_image and inp.dataset.X.shape == (200, 1, 8, 8)
    assert list(inp.dataset.meta["contributor"][:5]) == ["v0", "v1", "v2", "v3", "v4"]
    res = run_audit(inp.dataset, name="labels", features="raw", progress=False)
    assert res.reputation["contributor"].iloc[0] == "v4"  # worst first
    assert res.reputation["above_population"].iloc[0]
    out = tmp_path / "labels.clean.csv"
    with pytest.raises(ConfigError, match="write the cleaned table in that folder"):
        sanitize(inp, tmp_path / "elsewhere" / "labels.clean.csv", audit=res, progress=False)
    cleaned = sanitize(inp, out, audit=res, progress=False)
    kept = pd.read_csv(out)
    assert len(kept) == cleaned.n_kept == 200 - cleaned.n_removed and cleaned.n_removed > 0
    assert all((tmp_path / f).is_file() for f in kept["path"])  # the kept paths still resolve
    again = load_for_audit(out, label="digit", image_col="path", contributor="vendor", text_col="vendor")
    assert len(again.dataset) == cleaned.n_kept
    assert list(again.dataset.meta["display_text"][:3]) == list(kept["vendor"][:3])  # a caption per picture
    with pytest.raises(ConfigError, match="image_col applies only to tables"):
        load_for_audit("wine", image_col="path")


def test_sanitize_dataset_in_memory_and_budget(tmp_path):
    ds = breast_cancer(flip=BAD, n=300)
    res = sanitize(ds, tmp_path / "bc.npz", budget=0.1, progress=False)
    assert res.n_removed == 30
    with np.load(tmp_path / "bc.npz", allow_pickle=False) as z:
        assert len(z["x"]) == 270 and set(z["ids"]).isdisjoint(set(res.removed["id"]))
    res2 = sanitize(ds, tmp_path / "bc2.npz", drop_contributors=True, progress=False)
    assert set(res2.info["removed_contributors"]) == set(BAD)
    assert set(res2.removed.loc[res2.removed["contributor"].isin(BAD), "id"]) == {
        str(i) for i, c in zip(ds.ids, ds.meta["contributor"]) if c in BAD}


# -- text (JSON Lines) ----------------------------------------------------------------------------
def _write_jsonl(path: Path, n: int = 160, start: int = 0, flip_users: tuple = ()) -> list:
    rng = np.random.default_rng(start)
    pos = ["great", "battery", "screen", "fast", "love", "excellent", "bright", "sharp"]
    neg = ["broken", "slow", "awful", "refund", "crash", "terrible", "dead", "noisy"]
    lines = []
    for i in range(start, start + n):
        label = "pos" if i % 2 else "neg"
        words = rng.choice(pos if label == "pos" else neg, 5).tolist() + [f"w{i % 17}"]
        user = f"u{i % 8}"
        if user in flip_users:
            label = "neg" if label == "pos" else "pos"
        lines.append(json.dumps({"id": f"t{i}", "text": " ".join(words) + " <b>!</b>", "label": label, "user": user}))
    path.write_text("\n".join(lines[: n // 2]) + "\n\n" + "\n".join(lines[n // 2:]) + "\n", encoding="utf-8")
    return lines


def test_jsonl_audit_ledger_diff_and_sanitize(tmp_path):
    p1 = tmp_path / "v1.jsonl"
    _write_jsonl(p1)
    inp = load_for_audit(p1, id_col="id", contributor="user")
    assert inp.kind == "jsonl" and len(inp.dataset) == 160 and inp.rows[80] == 82  # a blank line at 81
    with Ledger("sqlite://") as ledger:
        run_audit(inp.dataset, name="reviews", ledger=ledger, progress=False)
        p2 = tmp_path / "v2.jsonl"
        lines = _write_jsonl(p2, n=200)                            # 40 new records; the featurizer is refitted
        ds2 = load_for_audit(p2, id_col="id", contributor="user").dataset
        r2 = run_audit(ds2, name="reviews", ledger=ledger, progress=False)
    counts = r2.summary["diff"]["counts"]
    assert counts["new"] == 40 and counts["unchanged"] == 160 and counts["modified"] == 0  # keyed by the text
    p3 = tmp_path / "bad.jsonl"
    _write_jsonl(p3, n=240, flip_users=("u2",))
    res = sanitize(p3, tmp_path / "clean.jsonl", id_col="id", contributor="user", progress=False)
    kept = (tmp_path / "clean.jsonl").read_bytes().decode("utf-8").splitlines()
    original = p3.read_text(encoding="utf-8").splitlines()
    removed = set(res.removed["id"].astype(str))
    assert [x for x in original if not x or json.loads(x)["id"] not in removed] == kept  # byte-exact, blank line kept
    assert res.audit.reputation["contributor"].iloc[0] == "u2"
    assert len(lines) == 200


def test_progress_goes_to_stderr_and_a_given_model_is_read(capsys):
    class Identity:  # stands in for a trained network: its "layer" is the flattened input
        def __init__(self):
            self.calls = []

        def features(self, X, layer="penultimate"):
            self.calls.append(layer)
            return np.asarray(X).reshape(len(X), -1)

    ds = breast_cancer(n=150)
    model = Identity()
    r = run_audit(ds, name="bc", model=model, layer="fc1", progress=True)
    assert model.calls == ["fc1"] and r.summary["representation"] == "model layer 'fc1'"
    # a network's features: the default ensemble adds spectral signatures (not on raw columns)
    assert r.summary["detectors"] == ["robust-distance", "knn", "confident-learning", "spectral"]
    assert run_audit(ds, name="bc", progress=False).summary["detectors"] == ["robust-distance", "knn",
                                                                             "confident-learning"]
    assert capsys.readouterr().out == ""
    with pytest.raises(ConfigError, match="features"):
        run_audit(ds, name="bc", model=object(), progress=False)


def test_bad_image_folders_fail_with_one_line(tmp_path):
    from PIL import Image

    root = tmp_path / "imgs"
    for c, size in (("a", 8), ("b", 10)):
        (root / c).mkdir(parents=True)
        for k in range(3):
            Image.fromarray(np.full((size, size), 40 * k, np.uint8)).save(root / c / f"{k}.png")
    with pytest.raises(DataError, match="different sizes") as err:
        load_for_audit(root)
    assert "\n" not in str(err.value)
    assert len(load_for_audit(root, size=8).dataset) == 6
    (root / "b" / "3.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match="cannot read image"):
        load_for_audit(root, size=8)
    with pytest.raises(ConfigError, match="appl(y|ies) only to tables"):
        load_for_audit(root, label="x")


def test_roni_by_contributor_as_a_stronger_check():
    r = run_audit(breast_cancer(flip=BAD), name="bc", policy={"detection": {"roni": True}}, progress=False)
    roni = {x.name: x for x in r.policy_results}["roni"]
    assert not roni.passed and roni.subject in BAD
    flagged = {row["batch"] for row in r.summary["roni"] if row["flagged"]}
    assert flagged and flagged <= set(BAD)
    assert r.roni is not None and len(r.roni) == 10


def test_sanitize_csv_keeps_bom_line_endings_and_an_empty_index_header(tmp_path):
    # a CSV saved by Excel (BOM, CRLF) with a pandas index column (empty header cell): every kept
    # line of the cleaned copy is byte for byte a line of the input
    ds = breast_cancer(n=120)
    df = pd.DataFrame(np.asarray(ds.X)[:, :5], columns=[f"f{i}" for i in range(5)])
    df["y"] = np.asarray(ds.y)
    src = tmp_path / "excel.csv"
    src.write_bytes(b"\xef\xbb\xbf" + df.to_csv(index=True, lineterminator="\r\n").encode())
    res = sanitize(src, tmp_path / "clean.csv", label="y", budget=0.05, progress=False)
    out = (tmp_path / "clean.csv").read_bytes()
    assert out.startswith(b"\xef\xbb\xbf,f0,f1") and res.n_removed > 0
    lines_in, lines_out = src.read_bytes().split(b"\r\n"), out.split(b"\r\n")
    assert len(lines_out) == len(lines_in) - res.n_removed and set(lines_out) <= set(lines_in)


def test_report_heads_table_values_with_the_column_names(tmp_path):
    df = pd.DataFrame(np.asarray(breast_cancer(n=150).X)[:, :4], columns=["mean radius", "<b>texture</b>", "c", "d"])
    df["y"] = np.asarray(breast_cancer(n=150).y)
    df.to_csv(tmp_path / "t.csv", index=False)
    inp = load_for_audit(tmp_path / "t.csv", label="y")
    r = run_audit(inp.dataset, name="t", progress=False, out_dir=tmp_path / "out",
                  feature_names=inp.options["features"])
    assert r.summary["feature_names"] == ["mean radius", "<b>texture</b>", "c", "d"]
    html = (tmp_path / "out" / "report.html").read_text()
    assert "mean radius" in html and "&lt;b&gt;texture&lt;/b&gt;" in html and "<b>texture" not in html
    # names that do not fit the columns are ignored
    assert "feature_names" not in run_audit(inp.dataset, name="t", progress=False, feature_names=["a"]).summary


def test_image_manifest_path_can_be_the_id_and_train_folder_notes(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    (tmp_path / "pics").mkdir()
    rows = []
    for i in range(24):
        Image.fromarray((rng.random((8, 8)) * 255).astype("uint8")).save(tmp_path / "pics" / f"{i:03d}.png")
        rows.append({"file": f"pics/{i:03d}.png", "label": "ab"[i % 2], "who": f"w{i % 3}"})
    pd.DataFrame(rows).to_csv(tmp_path / "m.csv", index=False)
    inp = load_for_audit(tmp_path / "m.csv", label="label", image_col="file", id_col="file", contributor="who")
    assert list(inp.dataset.ids[:2]) == ["pics/000.png", "pics/001.png"]
    with pytest.raises(ConfigError, match="it can be the id"):
        load_for_audit(tmp_path / "m.csv", label="file", image_col="file")
    # a folder with train/ and test/: train/ is audited and the rest is named; empty class folders too
    for split, n in (("train", 6), ("test", 2)):
        for c in ("a", "b"):
            (tmp_path / "f" / split / c).mkdir(parents=True)
            for i in range(n):
                Image.fromarray((rng.random((8, 8)) * 255).astype("uint8")).save(tmp_path / "f" / split / c / f"{i}.png")
    (tmp_path / "f" / "train" / "empty").mkdir()
    with pytest.warns(UserWarning) as record:
        inp = load_for_audit(tmp_path / "f")
    msgs = " ".join(str(w.message) for w in record)
    assert len(inp.dataset) == 12 and "4 images in test/ are not audited" in msgs and "'empty' holds no images" in msgs


def test_out_dir_under_a_file_is_refused_before_the_audit_runs(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    with pytest.raises(ConfigError, match=r"a_file is a file, not a folder"):
        run_audit(breast_cancer(n=60), name="bc", out_dir=blocker / "sub" / "out", progress=False)
    assert blocker.read_text() == "x"


def test_contributors_for_an_image_folder_point_to_the_manifest(tmp_path):
    from PIL import Image

    for k in range(4):
        f = tmp_path / "imgs" / f"c{k % 2}" / f"{k}.png"
        f.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((4, 4), 40 * k, np.uint8)).save(f)
    with pytest.raises(ConfigError, match="write a manifest CSV .* --images file --label label --contributor"):
        load_for_audit(tmp_path / "imgs", contributor="vendor")


def test_manifest_paths_match_files_in_the_other_unicode_form(tmp_path):
    # the manifest says 'café.png' composed (NFC), the disk holds it decomposed (NFD), as macOS writes it
    import unicodedata

    from PIL import Image

    rows = []
    for k in range(24):
        name = unicodedata.normalize("NFD", f"caf\u00e9{k}.png") if k % 2 else f"img{k}.png"
        Image.fromarray(np.full((4, 4), 10 * k, np.uint8)).save(tmp_path / name)
        rows.append({"file": unicodedata.normalize("NFC", name), "label": "ab"[k % 2]})
    pd.DataFrame(rows).to_csv(tmp_path / "m.csv", index=False)
    inp = load_for_audit(tmp_path / "m.csv", label="label", image_col="file")
    assert len(inp.dataset) == 24


def test_read_only_ledger_is_refused_before_the_audit_runs(tmp_path, monkeypatch):
    from mithridate.audit import pipeline as pl
    from mithridate.audit.migrations import LedgerError

    db = tmp_path / "ledger.sqlite"
    v1 = breast_cancer(n=200)
    with Ledger(f"sqlite:///{db}") as ledger:
        run_audit(v1, name="bc", ledger=ledger, progress=False)
    before = db.read_bytes()
    ran = []
    monkeypatch.setattr(pl, "_audit_core", lambda *a, **k: ran.append(1))  # the detectors must not start
    with Ledger(f"sqlite:///file:{db}?mode=ro&uri=true") as ro:
        with pytest.raises(LedgerError, match="cannot write to ledger.*readonly"):
            run_audit(breast_cancer(n=220), name="bc", ledger=ro, progress=False, out_dir=tmp_path / "out")
    assert not ran and not (tmp_path / "out").exists() and db.read_bytes() == before
    with Ledger(f"sqlite:///{db}") as ledger:   # a writable ledger passes the probe and is unchanged by it
        ledger.check_writable()
    assert db.read_bytes() == before


def test_reordered_columns_are_read_in_the_ledgers_order_and_renamed_ones_are_named(tmp_path):
    p = tmp_path / "v.csv"
    df = _write_csv(p, breast_cancer(n=200), extra=False)
    url = f"sqlite:///{tmp_path / 'ledger.sqlite'}"

    def audit(frame, ledger):
        frame.to_csv(p, index=False)
        inp = load_for_audit(p, label="diagnosis", id_col="sample", contributor="user")
        return run_audit(inp.dataset, name="v", ledger=ledger, progress=False,
                         feature_names=inp.options["features"])

    with Ledger(url) as ledger:
        first = audit(df, ledger)
        swapped = df[["sample", "f1", "f0"] + [f"f{j}" for j in range(2, 30)] + ["diagnosis", "user"]]
        with pytest.warns(UserWarning, match="another order than in version 1"):
            again = audit(swapped, ledger)
        assert again.version == first.version and again.summary["ledger"]["reused_version"]
        assert again.summary["feature_names"] == first.summary["feature_names"]
        renamed = df.rename(columns={"f3": "f3_new"})
        with pytest.warns(UserWarning, match=r"differ from version 1.*gone: 'f3'; new: 'f3_new'.*renamed column"):
            audit(renamed, ledger)
        dropped = renamed.drop(columns=["f5"])   # compared with the last audit (the renamed columns)
        with pytest.warns(UserWarning, match=r"gone: 'f5'.*every row as modified"):
            audit(dropped, ledger)


def test_a_contributor_turning_bad_is_judged_on_this_versions_new_samples(tmp_path):
    # 10,000 clean rows from five contributors, then 500 new ones of which c1's first 20 are
    # flipped: c1's whole history dilutes them, its new batch does not
    rng = np.random.default_rng(0)

    def rows(n, start):
        y = rng.integers(0, 2, n)
        X = (rng.normal(0, 1, (n, 6)) + y[:, None] * 2.0).astype(np.float32)
        return X, y, [f"r{start + i}" for i in range(n)], np.array([f"c{i % 5}" for i in range(n)], dtype=object)

    X1, y1, id1, who1 = rows(10000, 0)
    X2, y2, id2, who2 = rows(500, 10000)
    clean_v2 = y2.copy()
    y2 = y2.copy()
    flip = np.flatnonzero(who2 == "c1")[:20]
    y2[flip] = 1 - y2[flip]

    def version(y_new):
        return Dataset.from_arrays(np.vstack([X1, X2]), np.concatenate([y1, y_new]), ids=id1 + id2,
                                   meta=pd.DataFrame({"contributor": np.concatenate([who1, who2])}), name="t")

    v1 = Dataset.from_arrays(X1, y1, ids=id1, meta=pd.DataFrame({"contributor": who1}), name="t")
    with Ledger(f"sqlite:///{tmp_path / 'a.sqlite'}") as ledger:
        r1 = run_audit(v1, name="t", ledger=ledger, progress=False)
        r2 = run_audit(version(y2), name="t", ledger=ledger, progress=False, out_dir=tmp_path / "out")
    assert r1.verdict == "pass" and r1.summary["batch_reputation"] is None   # first audit: no batch
    html = (tmp_path / "out" / "report.html").read_text(encoding="utf-8")
    assert "this version's 500 new or changed samples" in html   # the report's contributor table shows the batch
    c1 = next(c for c in r2.summary["batch_reputation"]["contributors"] if c["contributor"] == "c1")
    assert f"{c1['flagged']} of {c1['n']} (" in html and ">above</span>" in html
    batch = r2.summary["batch_reputation"]
    assert batch["n_samples"] == 500 and batch["credible_level"] == pytest.approx(0.995)
    above = {c["contributor"] for c in batch["contributors"] if c["above_population"]}
    assert above == {"c1"}
    assert not any(c["above_population"] for c in r2.summary["contributors"])       # history dilutes it
    rep = {r.name: r for r in r2.policy_results}["reputation"]
    assert not rep.passed and rep.subject == "c1"
    assert "new or changed samples" in rep.message and "over their whole history they do not stand out" in rep.message
    # the same second version without the flips passes, and says the batch was checked
    with Ledger(f"sqlite:///{tmp_path / 'b.sqlite'}") as ledger:
        run_audit(v1, name="t", ledger=ledger, progress=False)
        ok = run_audit(version(clean_v2), name="t", ledger=ledger, progress=False)
    rep_ok = {r.name: r for r in ok.policy_results}["reputation"]
    assert rep_ok.passed and "nor in this version's new samples" in rep_ok.message
    # the concentration test runs on the batch too, at half the policy's limit
    bc = r2.summary["batch_concentration"]
    assert bc["n_samples"] == 500 and bc["p_value"] <= 0.005
    assert r1.summary["batch_concentration"] is None
    conc = {r.name: r for r in r2.policy_results}["contributor_concentration"]
    assert not conc.passed and "new or changed samples" in conc.message and "'c1'" in conc.message
    conc_ok = {r.name: r for r in ok.policy_results}["contributor_concentration"]
    assert conc_ok.passed and "nor among this version's new samples" in conc_ok.message and "limit 0.005" in conc_ok.message


def test_auditing_an_older_version_again_says_so(tmp_path):
    full = breast_cancer()
    v1, v2 = full.subset(np.arange(300)), full.subset(np.arange(350))
    with Ledger(f"sqlite:///{tmp_path / 'l.sqlite'}") as ledger:
        run_audit(v1, name="bc", ledger=ledger, progress=False)
        r2 = run_audit(v2, name="bc", ledger=ledger, progress=False)
        assert r2.summary["ledger"]["same_content_as_version"] is None
        with pytest.warns(UserWarning, match=r"identical to version 1 of 'bc', an older version.*recorded as version 3 "
                                             r"and compared with the latest, version 2"):
            back = run_audit(v1, name="bc", ledger=ledger, progress=False)
    assert back.version == 3 and back.summary["ledger"]["same_content_as_version"] == 1


def test_reasons_quote_the_z_a_members_own_rule_read(poisoned_result):
    import re

    f = poisoned_result.findings
    rd = f[f["flagged_by"].fillna("").str.contains("robust-distance")]
    assert len(rd)
    for reason in rd["reasons"]:
        [z] = re.findall(r"robust-distance z=([-0-9.]+)", reason)
        assert float(z) >= 3.0 - 0.05   # its flag rule: robust z of the log norm above 3 (shown rounded)
