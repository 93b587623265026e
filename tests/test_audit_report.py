"""The audit report: content and order, hostile input rendered inert, a real headless Chromium.

The hostile dataset is a small table whose class names, sample ids, contributors, sources and
text hold ``<script>alert(1)</script>`` and ``"><img src=x onerror=alert(1)>``; every audit reads
raw columns (well under a second each). The Chromium test needs Debian's ``chromium`` package
(``/usr/bin/chromium``; `.ci/run` installs it) and is skipped, with the reason, without it -- except under
``CI``, where a missing browser fails the test.
"""

from __future__ import annotations

import html as html_lib
import json
import os
import re
import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest

from mithridate.audit import Ledger
from mithridate.audit.pipeline import run_audit
from mithridate.data import Dataset
from mithridate.report import audit_report
from mithridate.report.audit_report import build_audit_context, render_audit_report, write_audit_report

XSS_SCRIPT = "<script>alert(1)</script>"
XSS_IMG = '"><img src=x onerror=alert(1)>'
HOSTILE = (XSS_SCRIPT, XSS_IMG)
IMG_URI = "data:image/png;base64,"


def _chromium() -> str | None:
    for name in ("/usr/bin/chromium", "chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    return None


def hostile_dataset(n: int = 240, seed: int = 0) -> Dataset:
    """Two well-separated classes with hostile names; 10% of the labels flipped; hostile metadata."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    X = rng.normal(size=(n, 5)) + 3.0 * y[:, None]
    flip = rng.choice(n, n // 10, replace=False)
    y_obs = y.copy()
    y_obs[flip] = 1 - y_obs[flip]
    labels = np.array([XSS_SCRIPT, XSS_IMG], dtype=object)[y_obs]
    ids = [f"{XSS_IMG}{i}" if i % 7 == 0 else f"{XSS_SCRIPT}{i}" if i % 7 == 1 else f"r{i}" for i in range(n)]
    who = [XSS_SCRIPT if i % 4 == 0 else XSS_IMG if i % 4 == 1 else f"user&{i % 4}" for i in range(n)]
    text = [f"review {i}: {XSS_SCRIPT} great product {XSS_IMG}" for i in range(n)]
    meta = pd.DataFrame({"contributor": who, "source": [XSS_IMG] * n, "text": text})
    return Dataset.from_arrays(X, labels, ids=ids, meta=meta, name=XSS_SCRIPT)


@pytest.fixture(scope="module")
def hostile_report(tmp_path_factory) -> tuple:
    tmp = tmp_path_factory.mktemp("hostile")
    ds = hostile_dataset()
    with Ledger(f"sqlite:///{tmp / 'ledger.sqlite'}") as ledger:
        run_audit(ds.subset(np.arange(200)), name=XSS_IMG, ledger=ledger, progress=False)
        result = run_audit(ds, name=XSS_IMG, ledger=ledger, progress=False, out_dir=tmp / "out", title=XSS_SCRIPT)
    return result, tmp / "out" / "report.html"


def _assert_inert(html: str) -> None:
    for raw in HOSTILE:
        assert raw not in html, f"unescaped {raw!r} in the report"
    assert "<script" not in html.lower()
    assert "onerror=" not in html.replace("onerror=alert", "")  # only inside escaped text, never an attribute
    assert not re.search(r"<img(?![^>]*src=\"data:image/png;base64,)", html), "an <img> that is not an embedded PNG"
    assert "http://" not in html and "https://" not in html
    assert not re.search(r"""(src|href)\s*=\s*["'](?!data:image/png;base64,)""", html), "external resource"


def test_hostile_strings_are_escaped(hostile_report):
    result, path = hostile_report
    html = path.read_text(encoding="utf-8")
    _assert_inert(html)
    from markupsafe import escape

    assert str(escape(XSS_SCRIPT)) in html  # labels, ids, contributors and text are shown, as text
    assert str(escape(XSS_IMG)) in html
    assert "Content-Security-Policy" in html and "default-src &#39;none&#39;" not in html
    assert "default-src 'none'" in html
    # text snippets are shown (escaped) for the top samples
    assert str(escape(f"great product {XSS_IMG}")) in html
    # the summary and findings keep the raw strings (they are data, not markup)
    summary = json.loads((path.parent / "summary.json").read_text())
    assert summary["dataset"] == XSS_IMG
    assert XSS_SCRIPT in {c["contributor"] for c in summary["contributors"]}


def test_concentration_paragraph_names_contributors_escaped(hostile_report):
    import copy

    result, _ = hostile_report
    assert 'id="concentration"' in render_audit_report(result)
    fake = copy.copy(result)
    fake.summary = {**result.summary, "concentration": {
        "p_value": 0.002, "statistic": 4.0, "top_k": 24, "n_permutations": 999, "levels": [24], "reason": None,
        "top_class": XSS_IMG, "n_sets": 12,
        "contributors": [{"contributor": XSS_SCRIPT, "n": 60, "top": 11, "expected": 6.0, "deviance": 3.1}]}}
    html = render_audit_report(fake)
    _assert_inert(html)
    from markupsafe import escape

    para = html[html.index('id="concentration"'):]
    para = para[:para.index("</p>")]
    assert f"{escape(XSS_SCRIPT)} sent 11 (expected 6.0" in para and "0.002" in para and "concentrated" in para
    assert f"Of the 24 samples of class {escape(XSS_IMG)} ranked most suspicious (the most concentrated of 12" in para
    fake.summary = {**result.summary, "concentration": {"p_value": None, "reason": "fewer than two contributors"}}
    assert "Not tested: fewer than two contributors" in render_audit_report(fake)


def test_report_order_and_sections(hostile_report):
    result, path = hostile_report
    html = path.read_text(encoding="utf-8")
    order = [html.index(f'id="{s}"') for s in ("verdict", "policy", "suspicious", "classes", "detectors",
                                                  "contributors", "diff")]
    assert order == sorted(order), "verdict and policy must come first"
    assert ("FAIL" in html) == (result.verdict == "fail") and ("PASS" in html) == (result.verdict == "pass")
    for r in result.policy_results:
        assert f"<code>{r.name}</code>" in html
    assert html.count(IMG_URI) >= 3  # class scores, reputation, trend across versions
    assert "Agreement" in html and "confident-learning" in html
    ctx = build_audit_context(result)
    assert ctx["diff"]["counts"][0] == {"status": "new", "count": 40}
    assert ctx["contributors"]["has_history"] and ctx["contributors"]["trend_plot"]
    assert len(ctx["top"]["rows"]) == audit_report.N_TOP and ctx["top"]["has_text"]
    agreement = ctx["agreement"]
    assert agreement["names"][-1] == "ensemble"
    assert agreement["rows"][-1]["cells"][-1]["count"] == result.summary["n_flagged"]


def test_plots_survive_mathtext_labels():
    rng = np.random.default_rng(1)
    scores = rng.exponential(size=60)
    labels = ["$\\frac{", "a$b$c", "_^{}"] * 20
    flags = scores > 2
    png = audit_report.class_score_plot(scores, labels, flags)
    assert png is not None and png[:8] == b"\x89PNG\r\n\x1a\n"
    rep = pd.DataFrame({"contributor": ["$\\frac{", "ok"], "posterior_mean": [0.3, 0.1], "ci_lower": [0.2, 0.0],
                        "ci_upper": [0.5, 0.2], "above_population": [True, False], "population_rate": [0.15, 0.15]})
    assert audit_report.reputation_plot(rep)[:4] == b"\x89PNG"
    trends = {"$\\frac{": [{"version": 1, "rate": 0.1}]}
    assert audit_report.trend_plot(trends, {"$\\frac{": 0.5}, 2, names=["$\\frac{"])[:4] == b"\x89PNG"


def test_image_report_has_thumbnails(tmp_path):
    from sklearn.datasets import load_digits

    d = load_digits()
    keep = np.isin(d.target, [0, 1, 2])
    X = d.images[keep][:, None] / 16.0
    ds = Dataset.from_arrays(X, d.target[keep], meta=pd.DataFrame({"contributor": [f"u{i % 3}" for i in range(keep.sum())]}))
    result = run_audit(ds, name="digits", features="raw", progress=False)
    ctx = build_audit_context(result)
    assert ctx["top"]["is_image"] and ctx["top"]["grid"] and not ctx["top"]["feature_columns"]
    out = write_audit_report(result, tmp_path / "r.html")
    html = out.read_text()
    assert 'class="pixel" src="data:image/png;base64,' in html
    _assert_inert(html)


def test_split_classes_are_listed_in_summary_report_and_cli(tmp_path, capsys, monkeypatch):
    # a backdoor that is 10% of digits makes half of its target class: the gate may pass (its
    # group is not a vote), but the class split must be reported, with an escaped class name
    import sys

    from mithridate.attacks.backdoor import BadNets
    from mithridate.cli import main
    from mithridate.data import load_dataset

    train = load_dataset("digits", random_state=1).train
    poisoned = BadNets(target=0, poison_rate=0.1, size=2).poison(train, random_state=1).dataset
    names = ["<b>zero</b>"] + [str(c) for c in poisoned.classes[1:]]
    ds = poisoned.without_ground_truth().replace(classes=tuple(names))
    result = run_audit(ds, name="digits", progress=False, random_state=1)
    groups = result.summary["subpopulations"]
    target = [g for g in groups if g["class"] == "<b>zero</b>"]
    assert target and target[0]["detector"] == "spectral" and target[0]["share"] >= 0.4
    assert all(g["share"] >= 0.10 for g in groups) and groups == sorted(groups, key=lambda g: -g["share"])
    assert target[0]["n_flagged"] == int((result.findings["flagged"] & (result.findings["label"] == "<b>zero</b>")
                                          & (result.findings["spectral_score"] > 4)).sum())
    html = render_audit_report(result)
    assert "Classes split in two" in html and "&lt;b&gt;zero&lt;/b&gt;" in html and "<b>zero</b>" not in html
    _assert_inert(html)
    # the CLI prints the large splits after the policy table
    npz = tmp_path / "bd.npz"
    np.savez(npz, x=(poisoned.X[:, 0] * 255).round().astype(np.uint8), y=np.asarray(poisoned.y))
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.setattr(sys, "argv", ["mithridate", "audit", str(npz), "--no-ledger", "--out", str(tmp_path / "o"),
                                      "--seed", "1"])
    with pytest.raises(SystemExit):
        main()
        raise SystemExit(0)  # main() returns normally on exit status 0
    out = capsys.readouterr().out
    assert "classes split in two by spectral signatures" in out and "class '0':" in out


def test_render_without_ledger_or_contributors():
    from sklearn.datasets import load_wine

    X, y = load_wine(return_X_y=True)
    result = run_audit(Dataset.from_arrays(X, y), name="wine", progress=False)
    html = render_audit_report(result)
    assert "No previous version to compare with" in html and 'id="contributors"' not in html
    _assert_inert(html)


def test_report_renders_in_headless_chromium(hostile_report, tmp_path):
    browser = _chromium()
    if browser is None:
        if os.environ.get("CI"):  # .ci/run installs it: a missing browser there is a failure, not a skip
            pytest.fail("chromium is not installed (Debian package 'chromium'), and CI is set")
        pytest.skip("chromium is not installed (Debian package 'chromium')")
    _, path = hostile_report
    cmd = [browser, "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={tmp_path / 'profile'}",
           "--enable-logging=stderr", "--v=0", "--no-first-run", "--dump-dom", path.resolve().as_uri()]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    dom = proc.stdout
    assert "Policy checks" in dom and "Most suspicious samples" in dom
    console = [line for line in proc.stderr.splitlines() if ":CONSOLE" in line]
    assert not console, f"console messages (errors or CSP violations): {console[:3]}"
    # the parsed DOM holds the hostile strings as text only: no element came out of them
    assert "<script" not in dom.lower()
    assert not re.search(r"<img[^>]*onerror", dom, flags=re.I)
    assert html_lib.escape(XSS_IMG, quote=False) in dom or "&gt;&lt;img src=x onerror" in dom
    shot = tmp_path / "shot.png"
    proc = subprocess.run(cmd[:-2] + [f"--screenshot={shot}", "--window-size=1280,2000", path.resolve().as_uri()],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and shot.stat().st_size > 10_000
