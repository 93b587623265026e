"""The command line: happy paths on small data, and one clear line + exit 2 on bad input."""

from __future__ import annotations

import json
from pathlib import Path
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from mithridate.cli import main
from mithridate.data import load_dataset


def run(args, capsys, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["mithridate", *map(str, args)])
    with pytest.raises(SystemExit) as exc:
        main()
        raise SystemExit(0)
    cap = capsys.readouterr()
    return exc.value.code, cap.out, cap.err


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("cli")


def test_help_lists_commands(capsys, monkeypatch):
    code, out, _ = run(["--help"], capsys, monkeypatch)
    assert code == 0
    for cmd in ("demo", "datasets", "train", "attack", "detect", "evaluate"):
        assert cmd in out


@pytest.mark.parametrize("command", [["detect"], ["audit"], ["demo"], ["certify", "sphere-slab"]])
def test_command_help_keeps_sentences_whole(command, capsys, monkeypatch):
    # a docstring's line breaks must not reach --help: rich prints them, cutting sentences mid-line
    monkeypatch.setenv("COLUMNS", "1000")
    code, out, _ = run([*command, "--help"], capsys, monkeypatch)
    assert code == 0
    text = [line.strip() for line in out.splitlines()]
    paragraphs = [line for line in text if len(line) > 60 and not line.startswith(("│", "╭", "╰", "Usage"))]
    assert paragraphs, out
    # at 1000 columns every paragraph of the description fits on one line and ends a sentence
    assert all(p.endswith((".", ":", ")", "`")) for p in paragraphs), paragraphs


def test_warnings_are_one_line(tmp_path):
    rng = np.random.default_rng(0)
    df = pd.DataFrame(rng.random((60, 3)), columns=["a", "b", "c"])
    df["note"] = "free text"  # not numeric: skipped with a warning
    df["y"] = np.repeat([0, 1, 2], 20)
    path = tmp_path / "t.csv"
    df.to_csv(path, index=False)
    # a real process: pytest captures warnings itself, so only a subprocess shows what users see
    proc = subprocess.run([sys.executable, "-c", "from mithridate.cli import main; main()", "detect", "knn", str(path),
                           "--label", "y"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    err = proc.stderr
    lines = [line for line in err.splitlines() if "note" in line]
    assert len(lines) == 1 and lines[0].startswith("warning: ") and "--features" in lines[0]
    assert "UserWarning" not in err and "warnings.warn" not in err and "return " not in err


def test_detect_and_audit_read_an_image_manifest(tmp_path, capsys, monkeypatch):
    from PIL import Image
    from sklearn.datasets import load_digits

    d = load_digits()
    (tmp_path / "pics").mkdir()
    rows = []
    for i in range(120):
        size = (8, 8) if i % 7 else (10, 10)  # some pictures of another size
        Image.fromarray((d.images[i] * 16).clip(0, 255).astype(np.uint8)).resize(size).save(tmp_path / "pics" / f"{i}.png")
        rows.append({"file": f"pics/{i}.png", "digit": int(d.target[i]), "who": f"c{i % 4}"})
    man = tmp_path / "labels.csv"
    pd.DataFrame(rows).to_csv(man, index=False)
    code, _, err = run(["detect", "knn", man, "--label", "digit", "--images", "file"], capsys, monkeypatch)
    assert code == 2 and "different sizes" in err and len(err.strip().splitlines()) == 1
    code, out, _ = run(["detect", "knn", man, "--label", "digit", "--images", "file", "--size", "8x8", "--json"],
                       capsys, monkeypatch)
    assert code == 0 and json.loads(out)["n_samples"] > 0
    code, out, _ = run(["audit", man, "--label", "digit", "--images", "file", "--size", "8", "--contributor", "who",
                        "--no-ledger", "--out", tmp_path / "aud", "--json"], capsys, monkeypatch)
    assert code in (0, 1) and json.loads(out)["n_samples"] == 120
    code, _, err = run(["detect", "knn", man, "--label", "digit", "--images", "file", "--size", "8y"], capsys,
                       monkeypatch)
    assert code == 2 and "--size must be" in err


def test_detect_reads_jsonl_with_a_named_text_key(tmp_path, capsys, monkeypatch):
    rows = [{"caption": f"{'book a train to rome' if i % 2 else 'play a rock song'} {i}", "intent": "ab"[i % 2]}
            for i in range(60)]
    path = tmp_path / "c.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    code, _, err = run(["detect", "knn", path], capsys, monkeypatch)
    assert code == 2 and "--text" in err and "'caption'" in err  # no usual key: the error names the option
    code, out, _ = run(["detect", "knn", path, "--text", "caption", "--json"], capsys, monkeypatch)
    assert code == 0 and json.loads(out)["n_samples"] > 0


def test_datasets_json(capsys, monkeypatch):
    code, out, _ = run(["datasets", "--json"], capsys, monkeypatch)
    assert code == 0
    names = {r["name"] for r in json.loads(out)}
    assert {"digits", "breast_cancer", "wine", "iris", "fashion-mnist"} <= names


def test_attack_train_evaluate_detect_round_trip(workdir, capsys, monkeypatch):
    poisoned = workdir / "p.npz"
    code, out, err = run(["attack", "badnets", "digits", "--out", poisoned, "--rate", "0.05", "--size", "2",
                          "--json"], capsys, monkeypatch)
    assert code == 0, err
    doc = json.loads(out)
    assert doc["n_poison"] == 63 and doc["target"] == 0
    truth = pd.read_csv(doc["ground_truth"])
    assert int(truth["is_poison"].sum()) == 63
    with np.load(poisoned, allow_pickle=False) as z:
        assert "is_poison_train" not in z.files  # the poisoned data carries no ground truth
        assert z["x_train"].shape[1:] == (1, 8, 8)
    model = workdir / "m.pt"
    code, out, err = run(["train", poisoned, "--out", model, "--epochs", "15", "--json"], capsys, monkeypatch)
    assert code == 0, err
    assert json.loads(out)["test_accuracy"] > 0.9
    code, out, err = run(["evaluate", poisoned, "--model", model, "--trigger", doc["trigger"], "--json"],
                         capsys, monkeypatch)
    assert code == 0, err
    ev = json.loads(out)
    assert ev["target"] == 0 and ev["asr"] > 0.8 and ev["clean_accuracy"] > 0.9
    scores = workdir / "scores.csv"
    code, out, err = run(["detect", "robust-distance", poisoned, "--model", model, "--truth", doc["ground_truth"],
                          "--out", scores, "--json"], capsys, monkeypatch)
    assert code == 0, err
    det = json.loads(out)
    assert det["metrics"]["auroc"] > 0.9
    df = pd.read_csv(scores)
    assert list(df.columns) == ["id", "label", "score", "flagged"] and len(df) == 1258
    assert int(df["flagged"].sum()) == det["n_flagged"]


@pytest.mark.parametrize(
    "args, needle",
    [
        (["attack", "badnets", "no-such-dataset", "--out", "{d}/x.npz"], "unknown dataset"),
        (["attack", "badnets", "{d}/missing.csv", "--out", "{d}/x.npz", "--label", "y"], "not found"),
        (["attack", "badnets", "breast_cancer", "--out", "{d}/x.npz"], "needs image data"),
        (["attack", "badnets", "digits", "--out", "{d}/x.npz", "--rate", "1.5"], "poison_rate"),
        (["attack", "badnets", "digits", "--out", "{d}/x.npz", "--target", "cat"], "target 'cat'"),
        (["attack", "blend", "digits", "--out", "{d}/x.npz", "--alpha", "0"], "alpha"),
        (["detect", "spectral", "{d}/nan.csv", "--label", "y"], "NaN"),
        (["detect", "spectral", "{d}/table.csv", "--label", "nope"], "nope"),
        (["detect", "spectral", "{d}/bad.npz"], "must match"),
        (["detect", "spectral", "digits", "--model", "{d}/table.csv"], "not a mithridate model"),
        (["evaluate", "digits", "--model", "{d}/missing.pt"], "not found"),
        # availability attacks and defences (issue 3)
        (["attack", "label-flip", "{d}/three.csv", "--label", "y", "--strategy", "greedy", "--out", "{d}/x.npz"],
         "binary-only"),
        (["attack", "gradient", "{d}/three.csv", "--label", "y", "--out", "{d}/x.npz"], "binary-only"),
        (["attack", "minimax", "digits", "--out", "{d}/x.npz"], "two classes"),
        (["attack", "statp", "{d}/words.csv", "--label", "y", "--out", "{d}/x.npz"], "not numeric"),
        (["attack", "optp", "diabetes", "--rate", "0", "--out", "{d}/x.npz"], "(0, 1)"),
        (["attack", "label-flip", "digits", "--rate", "1", "--out", "{d}/x.npz"], "(0, 1)"),
        (["attack", "statp", "{d}/nan.csv", "--label", "y", "--out", "{d}/x.npz"], "missing values"),
        (["attack", "label-flip", "digits", "--strategy", "targeted", "--out", "{d}/x.npz"], "--source"),
        (["train", "diabetes", "--model", "linear_svm"], "regression"),
        (["train", "digits", "--model", "logreg", "--defense", "trim"], "trim is for regression"),
        (["certify", "sphere-slab", "wine", "--plot", "{d}/b.png"], "two classes"),
        (["certify", "sphere-slab", "breast_cancer", "--eps", "0.1,x", "--plot", "{d}/b.png"], "--eps"),
        (["detect", "lof", "digits", "--classes", "1,42"], "neither"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args, needle, tmp_path, capsys, monkeypatch):
    pd.DataFrame({"a": [1.0, np.nan, 3.0, 4.0], "b": [1.0, 2, 3, 4], "y": [0, 1, 0, 1]}).to_csv(tmp_path / "nan.csv", index=False)
    pd.DataFrame({"a": np.arange(20.0), "y": [0, 1] * 10}).to_csv(tmp_path / "table.csv", index=False)
    np.savez(tmp_path / "bad.npz", x_train=np.zeros((5, 3)), y_train=np.zeros(4), x_test=np.zeros((2, 3)),
             y_test=np.zeros(2))
    pd.DataFrame({"a": np.arange(30.0) * 3, "b": np.arange(30.0) % 7, "y": [0, 1, 2] * 10}).to_csv(
        tmp_path / "three.csv", index=False)
    pd.DataFrame({"a": np.arange(20.0), "y": ["low", "high"] * 10}).to_csv(tmp_path / "words.csv", index=False)
    args = [a.format(d=tmp_path) for a in args]
    before = set(p.name for p in tmp_path.iterdir())
    code, out, err = run(args, capsys, monkeypatch)
    assert code == 2
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert lines and lines[0].startswith("error:"), err
    assert needle.lower() in err.lower(), err
    assert "Traceback" not in err
    assert set(p.name for p in tmp_path.iterdir()) == before  # nothing (half-)written


def test_availability_round_trip(workdir, capsys, monkeypatch):
    """Flip labels, then train with and without ITLM; StatP on diabetes, then TRIM (issue 3 CLI)."""
    flipped = workdir / "flip.npz"
    code, out, err = run(["attack", "label-flip", "digits", "--classes", "1,7", "--strategy", "confidence",
                          "--rate", "0.3", "--out", flipped, "--json"], capsys, monkeypatch)
    assert code == 0, err
    doc = json.loads(out)
    assert doc["n_poison"] == round(0.3 * doc["n_train_before"]) and doc["n_train_after"] == doc["n_train_before"]
    code, out, err = run(["train", flipped, "--model", "linear_svm", "--defense", "itlm", "--truth",
                          doc["ground_truth"], "--json"], capsys, monkeypatch)
    assert code == 0, err
    tr = json.loads(out)
    by = {r["model"]: r for r in tr["rows"]}
    undefended = by["linear_svm, no defence"]["test_accuracy"]
    defended = by["linear_svm + itlm"]["test_accuracy"]
    reference = by["linear_svm on the clean rows (reference)"]["test_accuracy"]
    assert defended >= reference - 0.03 and defended > undefended + 0.1
    assert tr["removed"]["poisons_removed"] >= 0.9 * tr["removed"]["n_poison"]

    reg = workdir / "statp.npz"
    code, out, err = run(["attack", "statp", "diabetes", "--rate", "0.2", "--out", reg, "--json"], capsys, monkeypatch)
    assert code == 0, err
    sd = json.loads(out)
    assert sd["n_poison"] == 77 and sd["n_train_after"] == 309 + 77
    with np.load(reg, allow_pickle=False) as z:
        assert str(z["task"]) == "regression"
        raw = load_dataset("diabetes")
        # the clean rows are written back bit for bit in the data's own units
        assert np.array_equal(z["x_train"][:309], raw.train.X)
    code, out, err = run(["train", reg, "--model", "ridge", "--defense", "trim", "--truth", sd["ground_truth"],
                          "--json"], capsys, monkeypatch)
    assert code == 0, err
    by = {r["model"]: r["test_mse"] for r in json.loads(out)["rows"]}
    assert by["ridge, no defence"] > 1.5 * by["ridge on the clean rows (reference)"]
    assert by["ridge + trim"] < 1.15 * by["ridge on the clean rows (reference)"]


def test_certify_and_detect_list(workdir, capsys, monkeypatch):
    plot = workdir / "bound.png"
    code, out, err = run(["certify", "sphere-slab", "breast_cancer", "--eps", "0.05,0.1", "--steps", "100",
                          "--plot", plot, "--json"], capsys, monkeypatch)
    assert code == 0, err
    doc = json.loads(out)
    assert [round(r["eps"], 2) for r in doc["rows"]] == [0.05, 0.1]
    for r in doc["rows"]:
        assert r["upper_bound"] >= r["attack_loss"] - 1e-9 and r["attack_loss"] > doc["clean_loss"]
    assert plot.stat().st_size > 1000
    code, out, err = run(["detect", "--list", "--json"], capsys, monkeypatch)
    assert code == 0, err
    listed = {d["name"]: d for d in json.loads(out)}
    assert {"spectral", "spectre", "knn", "confident-learning", "sphere"} <= set(listed)
    assert listed["knn"]["default_input"] == "raw" and listed["spectre"]["default_input"] == "model"


def test_audit_gate_exit_codes_and_sanitize(workdir, capsys, monkeypatch):
    """`audit` exits 0 on clean data and 1 when two contributors flipped their labels; `sanitize` writes a CSV."""
    from sklearn.datasets import load_breast_cancer

    df = load_breast_cancer(as_frame=True).frame.rename(columns={"target": "y"})
    df["vendor"] = [f"v{i % 10}" for i in range(len(df))]
    clean, bad = workdir / "clean.csv", workdir / "bad.csv"
    df.to_csv(clean, index=False)
    flipped = df.copy()
    m = flipped["vendor"].isin(["v3", "v7"])
    flipped.loc[m, "y"] = 1 - flipped.loc[m, "y"]
    flipped.to_csv(bad, index=False)
    ledger = workdir / "ledger.sqlite"
    common = ["--label", "y", "--contributor", "vendor", "--name", "bc", "--ledger", ledger, "--json"]
    code, out, err = run(["audit", clean, "--out", workdir / "a1", *common], capsys, monkeypatch)
    assert code == 0, err
    assert json.loads(out)["verdict"] == "pass"
    assert {p.name for p in (workdir / "a1").iterdir()} >= {"report.html", "findings.csv", "summary.json"}
    code, out, err = run(["audit", bad, "--out", workdir / "a2", *common], capsys, monkeypatch)
    assert code == 1, err
    code, out, err = run(["ledger", "contributors", "bc", "--ledger", ledger, "--json"], capsys, monkeypatch)
    assert code == 0, err
    rows = json.loads(out)
    assert {rows[0]["contributor"], rows[1]["contributor"]} == {"v3", "v7"}
    # the default level is the gate's (99% for the ten contributors together): the audit summary's interval
    summary = json.loads((workdir / "a2" / "summary.json").read_text())
    gate = {c["contributor"]: c for c in summary["contributors"]}
    assert summary["n_contributors_tested"] == 10 and summary["credible_level_each"] == pytest.approx(0.999)
    assert rows[0]["ci_lower"] == pytest.approx(gate[rows[0]["contributor"]]["ci_lower"])
    code, out_each, err = run(["ledger", "contributors", "bc", "--ledger", ledger, "--per-contributor", "--json"],
                              capsys, monkeypatch)
    assert code == 0 and json.loads(out_each)[0]["ci_lower"] > rows[0]["ci_lower"]
    code, out95, err = run(["ledger", "contributors", "bc", "--ledger", ledger, "--level", "0.95", "--json"],
                           capsys, monkeypatch)
    assert code == 0 and json.loads(out95)[0]["ci_lower"] > rows[0]["ci_lower"]
    code, table, err = run(["ledger", "contributors", "bc", "--ledger", ledger], capsys, monkeypatch)
    assert code == 0 and "expected" in table   # the rate the ranking compares with
    code, out, err = run(["ledger", "audits", "bc", "--ledger", ledger, "--json"], capsys, monkeypatch)
    assert code == 0, err
    audits = json.loads(out)
    assert [a["verdict"] for a in audits] == ["pass", "fail"] and [a["version"] for a in audits] == [1, 2]
    assert audits[0]["failed_checks"] == "-" and "reputation" in audits[1]["failed_checks"]
    code, table, err = run(["ledger", "audits", "bc", "--ledger", ledger], capsys, monkeypatch)
    assert code == 0 and "failed_checks" in table
    code, _, err = run(["ledger", "audits", "nope", "--ledger", ledger], capsys, monkeypatch)
    assert code == 2 and err.startswith("error:")
    # --from-audit: remove exactly what that audit flagged, without running detection again
    flagged_a2 = pd.read_csv(workdir / "a2" / "findings.csv")["flagged"].astype(bool)
    reused = workdir / "reused.csv"
    code, out, err = run(["sanitize", bad, "--label", "y", "--contributor", "vendor", "--out", reused,
                          "--from-audit", workdir / "a2", "--json"], capsys, monkeypatch)
    assert code == 0, err
    assert json.loads(out)["n_removed"] == int(flagged_a2.sum())
    assert len(pd.read_csv(reused)) == int((~flagged_a2).sum())
    code, _, err = run(["sanitize", clean, "--label", "y", "--out", workdir / "x.csv", "--from-audit", workdir / "a2"],
                       capsys, monkeypatch)
    assert code == 2 and "another label" in err           # the same ids, other data: refused
    code, _, err = run(["sanitize", bad, "--label", "y", "--out", workdir / "x.csv", "--from-audit", workdir],
                       capsys, monkeypatch)
    assert code == 2 and "not an audit's output folder" in err
    code, _, err = run(["sanitize", bad, "--label", "y", "--out", workdir / "x.csv", "--from-audit", workdir / "a2",
                        "--network"], capsys, monkeypatch)
    assert code == 2 and "do not apply" in err
    cleaned = workdir / "cleaned.csv"
    code, out, err = run(["sanitize", bad, "--label", "y", "--contributor", "vendor", "--out", cleaned, "--json"],
                         capsys, monkeypatch)
    assert code == 0, err
    doc = json.loads(out)
    kept = pd.read_csv(cleaned)
    assert list(kept.columns) == list(flipped.columns) and len(kept) == doc["n_kept"] == len(flipped) - doc["n_removed"]
    code, _, err = run(["sanitize", bad, "--label", "y", "--out", workdir / "cleaned.csv.gz"], capsys, monkeypatch)
    assert code == 2 and "--manifest PATH" in err and "--overwrite" in err
    code, out, err = run(["sanitize", bad, "--label", "y", "--out", workdir / "cleaned.csv.gz", "--manifest",
                          workdir / "gz.removed.csv", "--json"], capsys, monkeypatch)
    assert code == 0, err
    assert json.loads(out)["removed_csv"] == str(workdir / "gz.removed.csv")
    # refuses to overwrite its input, and a missing label column is a usage error (exit 2)
    code, _, err = run(["sanitize", bad, "--label", "y", "--out", bad], capsys, monkeypatch)
    assert code == 2 and err.startswith("error:")
    code, _, err = run(["audit", bad, "--label", "nope", "--ledger", ledger, "--out", workdir / "a3"], capsys, monkeypatch)
    assert code == 2 and "nope" in err and not (workdir / "a3").exists()


def test_audit_tables_print_data_strings_as_text_not_markup(workdir, capsys, monkeypatch):
    """Contributor names like '[/bold]v3' are data: the policy table and `ledger contributors`
    print them as they are (rich markup in a cell used to raise MarkupError)."""
    from sklearn.datasets import load_breast_cancer

    df = load_breast_cancer(as_frame=True).frame.rename(columns={"target": "y"})
    names = ["[/bold]v3", "[red]v7"] + [f"v{i}" for i in range(8)]
    df["vendor"] = [names[i % 10] for i in range(len(df))]
    m = df["vendor"].isin(names[:2])
    df.loc[m, "y"] = 1 - df.loc[m, "y"]
    data = workdir / "markup.csv"
    df.to_csv(data, index=False)
    ledger = workdir / "ledger.sqlite"
    monkeypatch.setenv("COLUMNS", "250")
    code, out, err = run(["audit", data, "--label", "y", "--contributor", "vendor", "--name", "m", "--ledger", ledger,
                          "--out", workdir / "m1"], capsys, monkeypatch)
    assert code == 1, err
    assert "contributor_concentration" in out and "'[/bold]v3'" in out and "'[red]v7'" in out
    df.loc[:9, "vendor"] = None                                          # rows nobody signed
    df.to_csv(data, index=False)
    code, out, err = run(["audit", data, "--label", "y", "--contributor", "vendor", "--no-ledger",
                          "--out", workdir / "m0"], capsys, monkeypatch)
    assert code == 1 and "note: 10 samples have no contributor (an empty 'vendor' cell)" in out
    code, out, err = run(["ledger", "contributors", "m", "--ledger", ledger], capsys, monkeypatch)
    assert code == 0, err
    assert "[/bold]v3" in out and "[red]v7" in out


def test_usage_errors_from_the_console_entry_point_are_one_line_exit_2(tmp_path):
    """Through main() (what the `mithridate` script runs), not typer's test runner: an unknown option
    is a click usage error; typer >= 0.20 vendors click, so main() must not import click itself."""
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "mithridate", "audit", "wine", "--no-such-option"],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "error:" in proc.stderr and "--no-such-option" in proc.stderr


@pytest.mark.parametrize("name", ["loss-dynamics", "strip"])
def test_detect_runs_detectors_that_read_no_layer(name, capsys, monkeypatch):
    # these take no layer= (loss dynamics trains its own network, STRIP reads predictions): the CLI
    # passed one to every detector and failed with "bad parameters"
    code, out, err = run(["detect", name, "digits", "--json"], capsys, monkeypatch)
    assert code == 0, err
    doc = json.loads(out)
    assert doc["detector"] == name and doc["layer"] == "inputs" and doc["n_samples"] > 1000


def test_detect_scores_every_row_of_a_table(tmp_path, capsys, monkeypatch):
    # a user's CSV is their training set: detect used to hold 30% of it out and never score it
    from sklearn.datasets import load_wine

    d = load_wine(as_frame=True).frame
    path = tmp_path / "wine.csv"
    d.to_csv(path, index=False)
    code, out, err = run(["detect", "knn", path, "--label", "target", "--json", "--out", tmp_path / "s.csv"],
                         capsys, monkeypatch)
    assert code == 0, err
    assert json.loads(out)["n_samples"] == len(d) == len(pd.read_csv(tmp_path / "s.csv"))


def test_detect_scores_every_sample_of_an_npz_with_one_set(tmp_path, capsys, monkeypatch):
    # a user's own features saved as one x/y set: detect held 30% out and scored 70% of them
    from sklearn.datasets import load_wine

    X, y = load_wine(return_X_y=True)
    np.savez(tmp_path / "feats.npz", features=X, labels=y, ids=np.array([f"w{i}" for i in range(len(y))]))
    code, out, err = run(["detect", "knn", tmp_path / "feats.npz", "--json", "--out", tmp_path / "s.csv"],
                         capsys, monkeypatch)
    assert code == 0, err
    scored = pd.read_csv(tmp_path / "s.csv")
    assert json.loads(out)["n_samples"] == len(y) == len(scored) and scored["id"].iloc[0] == "w0"
    np.save(tmp_path / "x.npy", X)  # one array, no labels: the error says how to save both
    code, _, err = run(["detect", "knn", tmp_path / "x.npy"], capsys, monkeypatch)
    assert code == 2 and "numpy.savez('data.npz', x=features, y=labels)" in err


def test_detect_scores_every_image_of_a_folder_and_checks_the_truth_first(tmp_path, capsys, monkeypatch):
    from PIL import Image
    from sklearn.datasets import load_digits

    d = load_digits()
    for k in range(120):
        f = tmp_path / "img" / f"c{d.target[k]}" / f"{k:03d}.png"
        f.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray((d.images[k] * 16).clip(0, 255).astype(np.uint8)).save(f)
    code, out, err = run(["detect", "knn", tmp_path / "img", "--json"], capsys, monkeypatch)
    assert code == 0, err
    assert json.loads(out)["n_samples"] == 120  # was the 70% training split
    pd.DataFrame({"file": ["c0/000.png"], "poison": [1]}).to_csv(tmp_path / "t.csv", index=False)
    code, _, err = run(["detect", "spectral", tmp_path / "img", "--truth", tmp_path / "t.csv"], capsys, monkeypatch)
    assert code == 2 and "id" in err and "No --model given" not in err  # refused before training a network


def test_detect_param_sets_detector_and_member_parameters(tmp_path, capsys, monkeypatch):
    from sklearn.datasets import load_wine

    from mithridate.data import Dataset
    from mithridate.defenses.detect import KNNLabelConsistency

    X, y = load_wine(return_X_y=True)
    np.savez(tmp_path / "w.npz", x=X, y=y)
    code, _, err = run(["detect", "knn", tmp_path / "w.npz", "--param", "n_neighbors=4", "--out", tmp_path / "k.csv"],
                       capsys, monkeypatch)
    assert code == 0, err
    expected = KNNLabelConsistency(n_neighbors=4).fit(Dataset.from_arrays(X, y)).scores_
    np.testing.assert_allclose(pd.read_csv(tmp_path / "k.csv")["score"].to_numpy(), expected, rtol=1e-6)
    code, out, err = run(["detect", "ensemble", tmp_path / "w.npz", "--json", "--param", "knn.n_neighbors=4",
                          "--param", "robust-distance.min_variance_ratio=0.01"], capsys, monkeypatch)
    assert code == 0, err
    assert json.loads(out)["detector"] == "ensemble"
    for bad, needle in [(["knn", "--param", "neighbours=4"], "unexpected keyword argument 'neighbours'"),
                        (["knn", "--param", "n_neighbors"], "KEY=VALUE"),
                        (["knn", "--param", "layer=fc1"], "--layer"),
                        (["ensemble", "--param", "knnn.n_neighbors=4"], "unknown detector 'knnn'"),
                        (["ensemble", "--param", "knn.n_neighbors=[4]"], "one value")]:
        code, _, err = run(["detect", bad[0], tmp_path / "w.npz", *bad[1:]], capsys, monkeypatch)
        assert code == 2 and needle in err and "Traceback" not in err, err


def test_audit_text_with_a_network(tmp_path, capsys, monkeypatch):
    # --network: the penultimate layer of a network trained on the TF-IDF features (as for images)
    rng = np.random.default_rng(0)
    words = [[f"t{c}w{k}" for k in range(30)] for c in range(2)]
    rows = [{"id": f"r{i}", "text": " ".join(rng.choice(words[i % 2], 6)), "label": "ab"[i % 2], "who": f"c{i % 4}"}
            for i in range(120)]
    path = tmp_path / "t.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    code, out, err = run(["audit", path, "--network", "--contributor", "who", "--id-col", "id", "--no-ledger",
                          "--out", tmp_path / "o", "--json"], capsys, monkeypatch)
    assert code in (0, 1), err
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert summary["representation"].startswith("model layer 'penultimate' (default network trained on the data)")
    code, out, err = run(["audit", path, "--contributor", "who", "--id-col", "id", "--no-ledger", "--out",
                          tmp_path / "o2", "--json"], capsys, monkeypatch)
    assert json.loads((tmp_path / "o2" / "summary.json").read_text())["representation"].startswith("text (TF-IDF")
    code, out, err = run(["sanitize", path, "--network", "--id-col", "id", "--out", tmp_path / "clean.jsonl", "--json"],
                         capsys, monkeypatch)
    assert code == 0, err
    manifest = json.loads(Path(json.loads(out)["manifest"]).read_text())
    assert manifest["representation"].startswith("model layer 'penultimate'")


def test_errors_name_the_command_line_options(tmp_path, capsys, monkeypatch):
    # library messages say "pass label=<...>"; on the command line that is --label
    path = tmp_path / "t.csv"
    pd.DataFrame({"a": [1.0, 2.0, 3.0, 4.0], "y": [0, 1, 0, 1]}).to_csv(path, index=False)
    code, _, err = run(["audit", path, "--no-ledger", "--out", tmp_path / "o"], capsys, monkeypatch)
    assert code == 2 and "--label <" in err and "label=" not in err


def test_library_error_words_become_cli_options():
    from mithridate.cli import _cli_words

    assert _cli_words("name the label key with label=<key name>") == "name the label key with --label <key name>"
    assert _cli_words("name the text key with text=<key name>") == "name the text key with --text <key name>"
    assert _cli_words("pass overwrite=True to replace it") == "pass --overwrite to replace it"
    assert _cli_words("pass manifest=PATH to write it elsewhere") == "pass --manifest PATH to write it elsewhere"
    assert _cli_words("give size=(H, W)") == "give --size HxW"
    assert _cli_words("the id_col= / --id-col option") == "the --id-col option"
    assert _cli_words("a label= value; the context= key") == "a label= value; the context= key"  # left alone


def test_ledger_commands_do_not_create_a_mistyped_ledger_and_audit_says_which_it_used(tmp_path, capsys, monkeypatch):
    from sklearn.datasets import load_breast_cancer

    missing = tmp_path / "ledgr.sqlite"
    code, _, err = run(["ledger", "datasets", "--ledger", missing], capsys, monkeypatch)
    assert code == 2 and "no ledger at" in err and not missing.exists()
    df = load_breast_cancer(as_frame=True).frame.rename(columns={"target": "y"})
    for day, rows in (("05", slice(0, 200)), ("06", slice(10, 210))):
        df.iloc[rows].to_csv(tmp_path / f"reviews-2026-12-{day}.csv", index=False)
    ledger = tmp_path / "ledger.sqlite"
    code, out, _ = run(["audit", tmp_path / "reviews-2026-12-05.csv", "--label", "y", "--ledger", ledger,
                        "--out", tmp_path / "o1"], capsys, monkeypatch)
    assert code in (0, 1)
    assert "(created by this audit)" in out and "dataset 'reviews-2026-12-05', version 1" in out
    # the next day's file without --name: a second one-version dataset, and the terminal says so
    code, out, _ = run(["audit", tmp_path / "reviews-2026-12-06.csv", "--label", "y", "--ledger", ledger,
                        "--out", tmp_path / "o2"], capsys, monkeypatch)
    assert "'reviews-2026-12-06' is new to this ledger" in " ".join(out.split()) and "created by" not in out
    code, out, _ = run(["audit", tmp_path / "reviews-2026-12-06.csv", "--label", "y", "--ledger", ledger,
                        "--name", "reviews-2026-12-05", "--out", tmp_path / "o3"], capsys, monkeypatch)
    assert "compared with version 1" in " ".join(out.split())
    # the versions table leaves out the ledger's internal key (the JSON keeps it)
    code, out, _ = run(["ledger", "versions", "reviews-2026-12-05", "--ledger", ledger], capsys, monkeypatch)
    assert code == 0 and "version_id" not in out and "n_samples" in out
    code, out, _ = run(["ledger", "versions", "reviews-2026-12-05", "--ledger", ledger, "--json"], capsys, monkeypatch)
    assert code == 0 and all("version_id" in v for v in json.loads(out))


def test_tables_are_not_cut_to_80_columns_in_logs():
    import io

    from mithridate.cli import _log_width

    assert _log_width(io.StringIO()) == 160  # a pipe / CI log


def test_id_option_has_the_short_spelling_the_issue_uses(tmp_path, capsys, monkeypatch):
    from sklearn.datasets import load_breast_cancer

    df = load_breast_cancer(as_frame=True).frame.rename(columns={"target": "y"}).iloc[:150]
    df.insert(0, "pid", [f"{i:06d}" for i in range(150)])
    df.to_csv(tmp_path / "t.csv", index=False)
    code, _, err = run(["audit", tmp_path / "t.csv", "--label", "y", "--id", "pid", "--no-ledger",
                        "--out", tmp_path / "o"], capsys, monkeypatch)
    assert code in (0, 1), err
    ids = pd.read_csv(tmp_path / "o" / "findings.csv", dtype=str)["id"]
    assert sorted(ids) == [f"{i:06d}" for i in range(150)]  # --id as --id-col, zeros kept


def test_version_prints_and_exits_0(capsys, monkeypatch):
    from mithridate import __version__

    code, out, err = run(["--version"], capsys, monkeypatch)
    assert code == 0 and out.strip() == f"mithridate {__version__}" and not err
