"""The ``mithridate`` command line.

Every command given bad input (a missing file, a wrong column, NaN, mismatched shapes, an
unknown name) prints one line ``error: ...`` on stderr and exits with status 2. Outputs are
written to a temporary name and renamed, so nothing is ever half-written.
"""

from __future__ import annotations

import inspect
import json
import math
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Any, List, Optional

import numpy as np
import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from mithridate import __version__
from mithridate.errors import ConfigError, MithridateError
from mithridate.utils import json_safe

app = typer.Typer(
    name="mithridate",
    help=(
        "Training-data poisoning toolkit: poison your own data the way an adversary would, find the "
        "poisoned samples, and measure what a defence buys.\n\n"
        "Start with `mithridate demo` (a backdoor planted, found and removed on bundled data, in seconds), "
        "then `mithridate datasets` to see what data is available. In a retraining pipeline, `mithridate audit` "
        "gates each new version of the training set (exit 0 pass, 1 fail, 2 usage error)."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
attack_app = typer.Typer(help="Poison a dataset: writes the poisoned data (.npz), the ground truth (.truth.csv) and, for backdoors, the trigger.",
                         no_args_is_help=True)
app.add_typer(attack_app, name="attack")
certify_app = typer.Typer(help="Certified bounds: what any attacker with a given budget can still do against a defence.",
                          no_args_is_help=True)
app.add_typer(certify_app, name="certify")
ledger_app = typer.Typer(help="The provenance ledger: audited datasets, their versions, audits and contributors.",
                         no_args_is_help=True)
app.add_typer(ledger_app, name="ledger")
LedgerOpt = typer.Option(None, "--ledger", help="Ledger database: a SQLite file or any SQLAlchemy URL (default: $MITHRIDATE_LEDGER, else ~/.local/share/mithridate/ledger.sqlite).")


def _log_width(stream: Any) -> Optional[int]:
    """Width of a console writing to ``stream``: rich's own choice on a terminal or when
    $COLUMNS is set; 160 columns otherwise (a CI log or a pipe), where rich's 80 cut ids and
    contributor names in the tables (``vend…``)."""
    try:
        tty = stream.isatty()
    except (AttributeError, ValueError):
        tty = False
    return None if tty or os.environ.get("COLUMNS", "").strip() else 160


out = Console(width=_log_width(sys.stdout))
err = Console(stderr=True, width=_log_width(sys.stderr))


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return "n/a" if math.isnan(v) else f"{v:.3f}"
    return str(v)


def _print_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(json_safe(obj), indent=2, allow_nan=False) + "\n")


def _split_features(features: Optional[str]) -> Optional[list]:
    if features is None:
        return None
    cols = [c.strip() for c in features.split(",") if c.strip()]
    if not cols:
        raise ConfigError("--features must list at least one column name, comma-separated")
    return cols


def _parse_size(size: Optional[str]) -> Optional[tuple[int, int]]:
    """``--size``: ``28`` or ``28x32`` (height x width) -> (H, W)."""
    if size is None:
        return None
    parts = str(size).lower().replace("×", "x").split("x")
    try:
        hw = [int(v) for v in parts]
    except ValueError:
        hw = []
    if len(hw) not in (1, 2) or min(hw) < 1:
        raise ConfigError(f"--size must be HEIGHTxWIDTH or one number (e.g. 28x28 or 28), got {size!r}")
    return (hw[0], hw[-1])


def _load(data: str, label: Optional[str], features: Optional[str], id_col: Optional[str], test_size: float,
          seed: int, *, classes: Optional[str] = None, task: Optional[str] = None, image_col: Optional[str] = None,
          size: Optional[str] = None, text: Optional[str] = None):
    from mithridate.data import load_dataset
    from mithridate.data.loaders import SKLEARN_DATASETS

    given = {"label": label, "features": _split_features(features), "id_col": id_col, "image_col": image_col,
             "size": _parse_size(size), "text": text}
    kwargs: dict = {k: v for k, v in given.items() if v is not None}  # only what the user passed
    path = Path(data)
    low = path.name.lower()
    is_table = low.endswith((".csv", ".tsv", ".parquet", ".csv.gz", ".tsv.gz", ".pq"))
    if path.exists() and (is_table or low.endswith(".npz") or path.is_dir()):
        kwargs["test_size"] = test_size
        kwargs["random_state"] = seed
    elif data.lower().replace("-", "_") in SKLEARN_DATASETS:
        kwargs["test_size"] = test_size
        kwargs["random_state"] = seed
    if task is not None:
        if task not in ("classification", "regression"):
            raise ConfigError(f"--task must be classification or regression, got {task!r}")
        if path.exists() and (is_table or low.endswith(".npz")):
            kwargs["task"] = task
    if classes is not None:
        kwargs["classes"] = [c.strip() for c in classes.split(",") if c.strip()]
    return load_dataset(data, **kwargs)


def _whole_file(data: str, label: Optional[str], features: Optional[str], id_col: Optional[str],
                image_col: Optional[str], size: Optional[str], text: Optional[str]):
    """Every row of a table or JSON Lines file, every image of an image folder (its train/ folder
    when it has train/ and test/) and every sample of an .npz holding one x/y set (what ``detect``
    scores: the user's data is the training set, nothing is held out); None for other inputs
    (bundled data, IDX folders, an .npz with x_train/x_test: their training split is scored)."""
    from mithridate.audit.pipeline import load_for_audit
    from mithridate.data import loaders as L
    from mithridate.data.text import JSONL_SUFFIXES

    p = Path(data)
    if p.is_file() and p.name.lower().endswith(".npz"):
        reader = L._NpzReader(p)
        try:
            split = "x_train" in reader
        finally:
            reader.close()
        if split:
            return None
    elif p.is_dir():  # an image folder: every image (train/ when it has train/ and test/), as the audit reads it
        if any(L._fashion_file(p, base) for base in L._FASHION_FILES.values()):
            return None  # an IDX folder has its own train/test files: the training split is scored
        return load_for_audit(p, size=_parse_size(size), progress=False).dataset
    elif not (p.is_file() and p.name.lower().endswith(tuple(L._TABLE_SUFFIXES) + tuple(JSONL_SUFFIXES))):
        return None
    return load_for_audit(p, label=label, features=_split_features(features), id_col=id_col, image_col=image_col,
                          size=_parse_size(size), text_col=text, progress=False).dataset


# shared option declarations -------------------------------------------------------------------
DataArg = typer.Argument(..., help="A bundled dataset name (see `mithridate datasets`) or a path: .npz, "
                                   ".csv/.tsv/.parquet (with --label), a Fashion-MNIST IDX directory or an "
                                   "image folder with one sub-folder per class.")
LabelOpt = typer.Option(None, "--label", help="Label column (tables; required there) or JSONL key (default: the first of label, labels, sentiment, category, class, target, ... on the first line).")
FeaturesOpt = typer.Option(None, "--features", help="Comma-separated feature columns (tables; default: all numeric).")
IdOpt = typer.Option(None, "--id-col", "--id", help="Column holding stable sample ids (tables).")
ImagesOpt = typer.Option(None, "--images", help="Tables: a column of image paths, relative to the table's folder (a manifest: file, label, vendor ...); the images are read as an image folder's would be.")
JsonlTextOpt = typer.Option(None, "--text", help="JSONL: the key holding the text (default: the first of text, content, review, sentence, body, ... on the first line).")
SizeOpt = typer.Option(None, "--size", help="Images: resize every image to HEIGHTxWIDTH (e.g. 28x28, or 28); needed when they differ in size.")
TestSizeOpt = typer.Option(0.3, "--test-size", help="Held-out fraction when the data has no test split.")
SeedOpt = typer.Option(0, "--seed", help="Random seed (data split, attack, model).")
JsonOpt = typer.Option(False, "--json", help="Print a JSON document on stdout instead of tables.")
ClassesOpt = typer.Option(None, "--classes", help="Keep only these classes, comma-separated labels (e.g. 1,7 for digits 1-vs-7).")
TaskOpt = typer.Option(None, "--task", help="classification or regression (tables and .npz; bundled sets know their task).")


def _print_version(value: bool) -> None:
    if value:  # an eager option's callback runs while parsing, before click asks for a command
        out.print(f"mithridate {__version__}", markup=False, highlight=False)
        raise typer.Exit(0)


@app.callback()
def _root(version: bool = typer.Option(False, "--version", help="Print the version and exit.", is_eager=True,
                                       callback=_print_version)) -> None:
    pass


# demo -----------------------------------------------------------------------------------------
@app.command()
def demo(
    out_dir: Path = typer.Option(Path("mithridate-demo"), "--out", help="Directory for results.json and report.html."),
    rate: float = typer.Option(0.05, "--rate", help="BadNets poison rate (fraction of the training set)."),
    seed: int = SeedOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Plant a BadNets backdoor in bundled digits, find the poisons, remove them, retrain, report.

    Trains a clean model, poisons 5% of the training set with a 2x2 white patch relabelled to
    class 0, retrains and measures clean accuracy and attack success rate (ASR), scores every
    sample with a robust distance, SPECTRE and spectral signatures, removes what the robust
    distance flags (no poison rate needed), retrains, and measures again. Writes results.json
    and a self-contained report.html.
    """
    from mithridate.eval.scenario import run_demo
    from mithridate.report import to_jsonable, write_report
    from mithridate.utils import atomic_write_text, check_fraction

    check_fraction(rate, "--rate")
    t0 = time.perf_counter()
    quiet = as_json
    status = err.status("starting", spinner="dots") if not quiet else None

    def step(msg: str) -> None:
        if status is not None:
            status.update(msg)

    if status is not None:
        status.start()
    try:
        result = run_demo(rate=rate, seed=seed, on_step=step)
    finally:
        if status is not None:
            status.stop()
    doc = to_jsonable(result)
    doc["seconds"] = time.perf_counter() - t0
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out_dir / "results.json", json.dumps(json_safe(doc), indent=2, allow_nan=False))
    write_report(result, out_dir / "report.html", title="mithridate demo: BadNets on digits")
    if as_json:
        _print_json(doc)
        return
    _print_scenario(result)
    out.print(f"\nFinished in {doc['seconds']:.0f} s. Results: [bold]{out_dir / 'results.json'}[/]  "
              f"Report: [bold]{out_dir / 'report.html'}[/]")


def _print_scenario(result) -> None:
    t = Table(title=f"BadNets {result.budget['poison_rate']:.1%} on {result.config['dataset']} "
                    f"({result.budget['n_poison']} poisoned samples, target class {result.poisoning.target})")
    for col in ("stage", "clean accuracy", "attack success rate", "robust accuracy", "removed"):
        t.add_column(col, justify="right")
    for r in result.rows:
        t.add_row(r["stage"], _fmt(r["clean_accuracy"]), _fmt(r.get("asr", float("nan"))),
                  _fmt(r.get("robust_accuracy", float("nan"))), str(r.get("removed", "")))
    out.print(t)
    d = Table(title="Detection (run without ground truth; scored against it)")
    for col in ("detector", "AUROC", "AP", "TPR@5%FPR", "prec@k*", "flagged", "prec", "recall", "s"):
        d.add_column(col, justify="right")
    for name, m in result.detection.items():
        d.add_row(name + ("*" if name == result.sanitizer else ""), _fmt(m["auroc"]),
                  _fmt(m["average_precision"]), _fmt(m["tpr_at_5pct_fpr"]),
                  _fmt(m["precision_at_true_budget"]), str(m.get("n_flagged", "")), _fmt(m.get("precision", float("nan"))),
                  _fmt(m.get("recall", float("nan"))), f"{m['seconds']:.1f}")
    out.print(d)
    out.print(f"{result.sanitizer}* = its flags were removed before retraining; prec@k* = precision of the top k "
              "scores, k = the true number of poisons; AP = average precision.")


# datasets -------------------------------------------------------------------------------------
@app.command()
def datasets(as_json: bool = JsonOpt) -> None:
    """List the bundled datasets, their shapes, and where each was found (or why it is missing)."""
    from mithridate.data import available_datasets

    rows = available_datasets()
    if as_json:
        _print_json(rows)
        return
    t = Table(title="Datasets (also: any .npz, .csv/.parquet with --label, IDX directory or image folder)")
    for col in ("name", "kind", "train", "test", "shape", "classes", "available", "location"):
        t.add_column(col)
    for r in rows:
        t.add_row(str(r["name"]), str(r["kind"]), str(r["n_train"]), str(r["n_test"]), str(r["shape"]),
                  str(r["n_classes"]), "yes" if r["available"] else "no", str(r["location"]))
    out.print(t)


# train ----------------------------------------------------------------------------------------
TORCH_MODELS = ("auto", "cnn", "mlp")
LINEAR_CLASSIFIERS = ("logreg", "linear_svm")
REGRESSORS = ("ridge", "lasso", "elasticnet")
DEFENSES = ("none", "trim", "itlm", "sphere", "slab")


def _fit_model(kind: str, train_set, seed: int, epochs: Optional[int], quiet: bool):
    from mithridate.models import default_classifier
    from mithridate.models.linear import SklearnClassifier
    from mithridate.models.regression import LinearRegressor

    if kind in REGRESSORS:
        return LinearRegressor(kind).fit(train_set)
    if kind in LINEAR_CLASSIFIERS:
        return SklearnClassifier(kind, random_state=seed).fit(train_set, n_classes=train_set.n_classes)
    model = default_classifier(len(train_set), random_state=seed, progress=not quiet, epochs=epochs)
    model.arch = kind
    return model.fit(train_set, n_classes=train_set.n_classes)


def _test_metrics(model, test) -> dict:
    from mithridate.eval import metrics as M

    pred = model.predict(test.X)
    if test.is_regression:
        return {"test_mse": M.mean_squared_error(test.y, pred)}
    return {"test_accuracy": M.accuracy(test.y, pred), "test_error": M.error_rate(test.y, pred)}


@app.command()
def train(
    data: str = DataArg,
    model_out: Optional[Path] = typer.Option(None, "--out", help="Save the (defended) network here (.pt state dict; networks only)."),
    model: str = typer.Option("auto", "--model", help="auto/cnn/mlp (networks), logreg/linear_svm (linear classifiers) or ridge/lasso/elasticnet (regression)."),
    defense: str = typer.Option("none", "--defense", help="none, trim (regression: trimmed least squares), itlm (classifiers: iterative trimmed loss), sphere or slab (drop points outside the per-class sphere/slab, then train)."),
    percentile: float = typer.Option(70.0, "--percentile", help="sphere/slab: radius at this percentile of the per-class distances."),
    arch: Optional[str] = typer.Option(None, "--arch", help="Deprecated alias of --model for networks."),
    epochs: Optional[int] = typer.Option(None, "--epochs", help="Training epochs for networks (default: by data size)."),
    truth: Optional[Path] = typer.Option(None, "--truth", help="Ground-truth CSV (id,is_poison): also train on the clean rows only and report what the defence removed."),
    label: Optional[str] = LabelOpt, features: Optional[str] = FeaturesOpt, id_col: Optional[str] = IdOpt,
    classes: Optional[str] = ClassesOpt, task: Optional[str] = TaskOpt,
    image_col: Optional[str] = ImagesOpt, size: Optional[str] = SizeOpt, text: Optional[str] = JsonlTextOpt,
    test_size: float = TestSizeOpt, seed: int = SeedOpt, as_json: bool = JsonOpt,
) -> None:
    """Train a model on DATA, optionally behind a defence, and report its test metrics.

    With --defense the undefended model is trained too, so the table shows what the defence buys;
    with --truth a model trained on the truly clean rows is added as the reference.
    """
    from mithridate import registry
    from mithridate.data import load_ground_truth
    from mithridate.models import TorchClassifier

    if arch is not None:
        model = arch
    model = model.lower().replace("-", "_")
    if model not in TORCH_MODELS + LINEAR_CLASSIFIERS + REGRESSORS:
        raise ConfigError(f"--model must be one of {', '.join(TORCH_MODELS + LINEAR_CLASSIFIERS + REGRESSORS)}, got {model!r}")
    if defense not in DEFENSES:
        raise ConfigError(f"--defense must be one of {', '.join(DEFENSES)}, got {defense!r}")
    if task is None and model in REGRESSORS:
        task = "regression"
    splits = _load(data, label, features, id_col, test_size, seed, classes=classes, task=task, image_col=image_col,
                   size=size, text=text)
    tr, te = splits.train, splits.test
    if tr.is_regression != (model in REGRESSORS):
        raise ConfigError(f"--model {model} does not fit {'a regression' if tr.is_regression else 'a classification'} "
                          f"dataset; use {'ridge, lasso or elasticnet' if tr.is_regression else 'auto, cnn, mlp, logreg or linear_svm'}")
    if defense == "trim" and model not in REGRESSORS:
        raise ConfigError("--defense trim is for regression (--model ridge|lasso|elasticnet); use itlm for classifiers")
    if defense == "itlm" and model not in LINEAR_CLASSIFIERS:
        raise ConfigError("--defense itlm needs a linear classifier: --model logreg or linear_svm")
    if model_out is not None and model not in TORCH_MODELS:
        raise ConfigError("--out saves networks only (--model auto|cnn|mlp); linear models are refitted in seconds")
    if tr.is_regression and not (float(tr.X.min()) >= 0.0 and float(tr.X.max()) <= 1.0):
        # the linear regressors' penalty assumes features in [0, 1] (Jagielski et al.); the targets keep their units
        from mithridate.data import DatasetSplits
        from mithridate.data.transforms import minmax_scale

        scaled, _ = minmax_scale(DatasetSplits(train=tr, test=te, name=splits.name), clip=False)
        tr, te = tr.replace(X=scaled.train.X), te.replace(X=scaled.test.X)
    quiet = as_json
    rows: list[dict] = []
    kept = None
    if defense != "none":
        rows.append({"model": f"{model}, no defence", "n_train": len(tr), **_test_metrics(_fit_model(model, tr, seed, epochs, True), te)})
    if defense == "none":
        fitted = _fit_model(model, tr, seed, epochs, quiet)
        used = len(tr)
    elif defense == "trim":
        from mithridate.defenses.train.trim import TrimRegressor

        fitted = TrimRegressor(base=model, random_state=seed).fit(tr)
        kept, used = np.asarray(fitted.kept_, bool), int(np.sum(fitted.kept_))
    elif defense == "itlm":
        from mithridate.defenses.train.itlm import TrimmedLossClassifier

        fitted = TrimmedLossClassifier(model=model, random_state=seed).fit(tr)
        kept, used = np.asarray(fitted.kept_, bool), int(np.sum(fitted.kept_))
    else:
        det = registry.create("detector", defense, percentile=percentile).fit(tr)
        kept = ~np.asarray(det.flag(), bool)
        if kept.sum() < 2:
            raise ConfigError(f"the {defense} defence removed all but {int(kept.sum())} samples; raise --percentile")
        fitted = _fit_model(model, tr.subset(kept), seed, epochs, quiet)
        used = int(kept.sum())
    rows.append({"model": model if defense == "none" else f"{model} + {defense}", "n_train": used, **_test_metrics(fitted, te)})
    doc: dict = {"dataset": splits.name, "model": model, "defense": defense, "n_train": len(tr),
                 **{k: v for k, v in rows[-1].items() if k.startswith("test_")}, "rows": rows}
    if truth is not None:
        is_poison = load_ground_truth(truth, tr.ids)
        clean = tr.subset(~is_poison)
        rows.append({"model": f"{model} on the clean rows (reference)", "n_train": len(clean),
                     **_test_metrics(_fit_model(model, clean, seed, epochs, True), te)})
        if kept is not None:
            removed = ~kept
            doc["removed"] = {"poisons_removed": int(np.sum(removed & is_poison)), "n_poison": int(is_poison.sum()),
                              "clean_removed": int(np.sum(removed & ~is_poison)), "n_clean": int((~is_poison).sum())}
    if model_out is not None:
        assert isinstance(fitted, TorchClassifier)
        fitted.save(model_out)
        doc["saved"] = str(model_out)
    if as_json:
        _print_json(doc)
        return
    metric_keys = ["test_mse"] if tr.is_regression else ["test_accuracy", "test_error"]
    t = Table(title=f"{splits.name}: {len(tr)} training rows, {len(te)} test rows")
    for col in ["model", "trained on"] + metric_keys:
        t.add_column(col)
    for r in rows:
        t.add_row(r["model"], str(r["n_train"]), *[_fmt(r[k]) if k != "test_mse" else f"{r[k]:.4g}" for k in metric_keys])
    out.print(t)
    if "removed" in doc:
        rm = doc["removed"]
        out.print(f"The defence removed {rm['poisons_removed']} of {rm['n_poison']} poisoned rows and "
                  f"{rm['clean_removed']} of {rm['n_clean']} clean rows.")
    if tr.is_regression and tr is not splits.train:
        out.print("Features were min-max scaled to [0, 1] with the training ranges (targets keep their units).")
    if model_out is not None:
        out.print(f"Saved {model_out}")


# attack ---------------------------------------------------------------------------------------
def _run_attack(attack, data, out_path, truth, label, features, id_col, test_size, seed, as_json, *,
                classes: Optional[str] = None, task: Optional[str] = None, splits=None, prepare=None) -> None:
    """Load DATA, poison its training split, write the poisoned .npz, the ground truth and any trigger."""
    from mithridate.data import DatasetSplits, save_ground_truth, save_npz

    out_path = Path(out_path)
    if out_path.suffix != ".npz":
        raise ConfigError(f"--out must end in .npz, got {out_path}")
    if splits is None:
        splits = _load(data, label, features, id_col, test_size, seed, classes=classes, task=task)
    if prepare is not None:
        splits = prepare(splits)
    poisoning = attack.poison(splits.train, random_state=seed)
    truth_path = Path(truth) if truth else out_path.with_name(out_path.stem + ".truth.csv")
    trigger_path = out_path.with_name(out_path.stem + ".trigger.npz") if poisoning.trigger is not None else None
    poisoned = DatasetSplits(train=poisoning.dataset.without_ground_truth(), test=splits.test,
                             name=f"{splits.name}+{attack.name}", source=splits.source)
    save_npz(poisoned, out_path)
    save_ground_truth(poisoning.dataset, truth_path)
    if trigger_path is not None:
        poisoning.trigger.save(trigger_path)
    budget = dict(poisoning.budget)
    doc = {"attack": attack.name, "dataset": splits.name, "poisoned_data": str(out_path), "ground_truth": str(truth_path),
           "n_train_before": len(splits.train), "n_train_after": len(poisoning.dataset), **budget}
    if trigger_path is not None:
        doc["trigger"] = str(trigger_path)
    if poisoning.target is not None:
        doc["target"] = poisoning.target
        doc["target_label"] = splits.train.classes[poisoning.target]
    if as_json:
        _print_json(doc)
        return
    n_p = budget.get("n_poison", int(poisoning.poison_mask.sum()))
    added = len(poisoning.dataset) - len(splits.train)
    how = f"inserted {added} points" if added > 0 else f"modified {n_p} of {len(splits.train)} training samples"
    line = f"{attack.name}: {how} (poison rate {budget.get('poison_rate', n_p / max(len(poisoning.dataset), 1)):.2%}"
    if "target_class_fraction" in budget and poisoning.target is not None:
        line += f"; {budget['target_class_fraction']:.1%} of the target class {splits.train.classes[poisoning.target]!r}"
    out.print(line + ").", markup=False, highlight=False)
    out.print(f"  poisoned data: {out_path}\n  ground truth:  {truth_path}", markup=False, highlight=False)
    if trigger_path is not None:
        out.print(f"  trigger:       {trigger_path}", markup=False, highlight=False)


AtkOut = typer.Option(..., "--out", help="Poisoned dataset to write (.npz: poisoned train split, clean test split).")
TruthOpt = typer.Option(None, "--truth", help="Ground-truth CSV (id,is_poison); default: <out>.truth.csv.")
TargetOpt = typer.Option("0", "--target", help="Target class: index or label as written in the data.")
RateOpt = typer.Option(0.05, "--rate", help="Poison rate: fraction of the training set, in (0, 1).")


@attack_app.command("badnets")
def attack_badnets(
    data: str = DataArg, out_path: Path = AtkOut, target: str = TargetOpt, rate: float = RateOpt,
    size: int = typer.Option(3, "--size", help="Patch side in pixels."),
    position: str = typer.Option("bottom-right", "--position", help="bottom-right, bottom-left, top-right, top-left, center or ROW,COL."),
    value: str = typer.Option("1.0", "--value", help="Patch value in [0, 1] or 'checkerboard'."),
    truth: Optional[Path] = TruthOpt, label: Optional[str] = LabelOpt, features: Optional[str] = FeaturesOpt,
    id_col: Optional[str] = IdOpt, test_size: float = TestSizeOpt, seed: int = SeedOpt, as_json: bool = JsonOpt,
) -> None:
    """BadNets (Gu et al. 2017): stamp a patch on RATE of the training images and relabel them to TARGET."""
    from mithridate.attacks import BadNets

    pos: Any = position
    if "," in position:
        try:
            pos = tuple(int(p) for p in position.split(","))
        except ValueError:
            raise ConfigError(f"--position ROW,COL must be two integers, got {position!r}") from None
    val: Any = value
    if value != "checkerboard":
        try:
            val = float(value)
        except ValueError:
            raise ConfigError(f"--value must be a number in [0, 1] or 'checkerboard', got {value!r}") from None
    _run_attack(BadNets(target=target, poison_rate=rate, size=size, position=pos, value=val), data, out_path, truth,
                label, features, id_col, test_size, seed, as_json)


@attack_app.command("blend")
def attack_blend(
    data: str = DataArg, out_path: Path = AtkOut, target: str = TargetOpt, rate: float = RateOpt,
    alpha: float = typer.Option(0.2, "--alpha", help="Blend ratio of the key pattern, in (0, 1]."),
    pattern_image: Optional[Path] = typer.Option(None, "--pattern-image", help="Image file used as the key (default: a fixed random pattern)."),
    truth: Optional[Path] = TruthOpt, label: Optional[str] = LabelOpt, features: Optional[str] = FeaturesOpt,
    id_col: Optional[str] = IdOpt, test_size: float = TestSizeOpt, seed: int = SeedOpt, as_json: bool = JsonOpt,
) -> None:
    """Blended backdoor (Chen et al. 2017): mix a key pattern into RATE of the images at ALPHA, relabel to TARGET."""
    from mithridate.attacks import Blend

    _run_attack(Blend(target=target, poison_rate=rate, alpha=alpha, pattern=pattern_image), data, out_path, truth,
                label, features, id_col, test_size, seed, as_json)


def _attack_unit_box(attack, data, out_path, truth, label, features, id_col, test_size, seed, as_json, *,
                     classes=None, task=None) -> None:
    """Attacks that insert points in [0, 1]: scale when needed, write the inserted rows in the data's units."""
    from mithridate.data.transforms import in_unit_box, poison_in_unit_box
    from mithridate.utils import check_fraction

    check_fraction(getattr(attack, "poison_rate", 0.5), "--rate")
    splits = _load(data, label, features, id_col, test_size, seed, classes=classes, task=task)
    if in_unit_box(splits):
        _run_attack(attack, data, out_path, truth, label, features, id_col, test_size, seed, as_json, splits=splits)
        return

    class _Scaled:
        name = attack.name

        def poison(self, dataset, random_state=None):
            from mithridate.data import DatasetSplits

            res, _ = poison_in_unit_box(attack, DatasetSplits(train=dataset, test=splits.test, name=splits.name),
                                        random_state=random_state)
            return res

    _run_attack(_Scaled(), data, out_path, truth, label, features, id_col, test_size, seed, as_json, splits=splits)
    if not as_json:
        err.print("Features were not in [0, 1]: the attack ran on min-max scaled data (training ranges) and the "
                  "inserted rows were written back in the data's own units.")


@attack_app.command("label-flip")
def attack_label_flip(
    data: str = DataArg, out_path: Path = AtkOut,
    strategy: str = typer.Option("random", "--strategy", help="random, targeted (--source -> --target), confidence or greedy (the last two: binary tasks, adversarial)."),
    rate: float = typer.Option(0.1, "--rate", help="Fraction of the training set whose label is flipped, in (0, 1)."),
    source: Optional[str] = typer.Option(None, "--source", help="Source class for --strategy targeted."),
    target: Optional[str] = typer.Option(None, "--target", help="Target class for --strategy targeted."),
    model: str = typer.Option("linear_svm", "--model", help="Model the adversarial strategies attack: linear_svm or logreg."),
    classes: Optional[str] = ClassesOpt,
    truth: Optional[Path] = TruthOpt, label: Optional[str] = LabelOpt, features: Optional[str] = FeaturesOpt,
    id_col: Optional[str] = IdOpt, test_size: float = TestSizeOpt, seed: int = SeedOpt, as_json: bool = JsonOpt,
) -> None:
    """Flip the labels of RATE of the training set: at random, from one class to another, or adversarially."""
    from mithridate.attacks.label_flip import AdversarialFlip, RandomFlip, TargetedFlip

    if strategy == "random":
        attack: Any = RandomFlip(poison_rate=rate)
    elif strategy == "targeted":
        if source is None or target is None:
            raise ConfigError("--strategy targeted needs --source and --target (labels as written in the data)")
        attack = TargetedFlip(source=source, target=target, poison_rate=rate)
    elif strategy in ("confidence", "greedy"):
        attack = AdversarialFlip(poison_rate=rate, strategy=strategy, model=model)
    else:
        raise ConfigError(f"--strategy must be random, targeted, confidence or greedy, got {strategy!r}")
    if strategy != "targeted" and (source is not None or target is not None):
        raise ConfigError("--source/--target only apply to --strategy targeted")
    _run_attack(attack, data, out_path, truth, label, features, id_col, test_size, seed, as_json, classes=classes)


@attack_app.command("minimax")
def attack_minimax(
    data: str = DataArg, out_path: Path = AtkOut,
    rate: float = typer.Option(0.1, "--rate", help="Budget ε: the attack adds floor(ε·n) points, n = clean training rows."),
    defense: str = typer.Option("sphere+slab", "--defense", help="The defence the attack must pass: sphere, slab or sphere+slab."),
    percentile: float = typer.Option(70.0, "--percentile", help="Defence radii at this percentile of the clean distances."),
    steps: int = typer.Option(300, "--steps", help="Steps of the online minimax procedure."),
    classes: Optional[str] = ClassesOpt,
    truth: Optional[Path] = TruthOpt, label: Optional[str] = LabelOpt, features: Optional[str] = FeaturesOpt,
    id_col: Optional[str] = IdOpt, test_size: float = TestSizeOpt, seed: int = SeedOpt, as_json: bool = JsonOpt,
) -> None:
    """Steinhardt et al. (2017)'s candidate attack: points inside the sphere/slab defence that maximise the SVM's loss."""
    from mithridate.attacks.minimax import MinimaxAttack

    _attack_unit_box(MinimaxAttack(poison_rate=rate, defense=defense, percentile=percentile, n_steps=steps), data,
                     out_path, truth, label, features, id_col, test_size, seed, as_json, classes=classes)


@certify_app.command("sphere-slab")
def certify_sphere_slab(
    data: str = DataArg,
    eps: str = typer.Option("0.01,0.02,0.03,0.05,0.1,0.15,0.2,0.3", "--eps", help="Comma-separated budgets ε (fractions of the clean training set)."),
    defense: str = typer.Option("sphere+slab", "--defense", help="sphere, slab or sphere+slab."),
    percentile: float = typer.Option(70.0, "--percentile", help="Defence radii at this percentile of the clean distances."),
    steps: int = typer.Option(300, "--steps", help="Steps of the online minimax procedure."),
    plot: Optional[Path] = typer.Option(Path("sphere-slab-bound.png"), "--plot", help="Where to draw bound and attack loss against ε (.png/.svg/.pdf)."),
    table_out: Optional[Path] = typer.Option(None, "--out", help="Also write the table as CSV."),
    classes: Optional[str] = ClassesOpt, label: Optional[str] = LabelOpt, features: Optional[str] = FeaturesOpt,
    id_col: Optional[str] = IdOpt, test_size: float = TestSizeOpt, seed: int = SeedOpt, as_json: bool = JsonOpt,
) -> None:
    """Upper bound on the loss any εn added points can force on a linear SVM behind the oracle sphere/slab defence.

    DATA is treated as clean (the defender's centroids come from it); features are min-max scaled to [0, 1].
    For every ε the table gives the certified upper bound U(ε) on the SVM's training objective, the value the
    candidate (minimax) attack actually reaches, their ratio of excess losses, and the attacked model's test error.
    """
    from mithridate.data.transforms import minmax_scale
    from mithridate.defenses.certify.sphere_slab import SphereSlabCertificate, plot_bound
    from mithridate.utils import atomic_path

    try:
        grid = tuple(float(e) for e in eps.split(",") if e.strip())
    except ValueError:
        raise ConfigError(f"--eps must be comma-separated numbers, got {eps!r}") from None
    if plot is not None and plot.suffix.lower() not in (".png", ".svg", ".pdf"):
        raise ConfigError(f"--plot must end in .png, .svg or .pdf, got {plot}")
    if table_out is not None and table_out.suffix.lower() != ".csv":
        raise ConfigError(f"--out must end in .csv, got {table_out}")
    splits = _load(data, label, features, id_col, test_size, seed, classes=classes)
    scaled, _ = minmax_scale(splits)
    cert = SphereSlabCertificate(defense=defense, percentile=percentile, n_steps=steps)
    cert.fit(scaled.train, epsilons=grid, test=scaled.test, random_state=seed)
    table = cert.table_
    doc: dict = {"dataset": splits.name, "defense": defense, "percentile": percentile, "n_train": len(splits.train),
                 "rho": float(cert.rho_), "clean_loss": float(cert.clean_loss_),
                 "rows": table.to_dict(orient="records")}
    if plot is not None:
        plot_bound(table, plot, title=f"{splits.name}: {defense} (oracle), linear SVM")
        doc["plot"] = str(plot)
    if table_out is not None:
        with atomic_path(table_out) as tmp:
            table.to_csv(tmp, index=False)
        doc["table"] = str(table_out)
    if as_json:
        _print_json(doc)
        return
    t = Table(title=f"{splits.name}: certified bound vs candidate attack ({defense}, radii at the {percentile:g}th percentile)")
    for col in ("ε", "points", "clean loss", "bound U(ε)", "attack reaches", "ratio", "test err"):
        t.add_column(col)
    for _, r in table.iterrows():
        t.add_row(f"{r['eps']:g}", str(int(r["n_poison"])), f"{r['clean_loss']:.4f}", f"{r['upper_bound']:.4f}",
                  f"{r['attack_loss']:.4f}", _fmt(float(r["ratio"])), _fmt(float(r.get("attack_error", float("nan")))))
    out.print(t)
    out.print("Losses are the SVM's training objective (mean hinge over clean plus surviving poison points): no attack "
              "with εn points can push it above U(ε) against this defence.", markup=False, highlight=False)
    if plot is not None:
        out.print(f"Plot: {plot}", markup=False, highlight=False)


RegRateOpt = typer.Option(0.2, "--rate", help="Poison rate: inserted / (clean + inserted), in (0, 1).")
RegModelOpt = typer.Option("ridge", "--model", help="Victim regressor: ridge, lasso or elasticnet.")
RegTaskOpt = typer.Option("regression", "--task", help="Task of a table/.npz (regression).")


@attack_app.command("statp")
def attack_statp(
    data: str = DataArg, out_path: Path = AtkOut, rate: float = RegRateOpt, model: str = RegModelOpt,
    truth: Optional[Path] = TruthOpt, label: Optional[str] = LabelOpt, features: Optional[str] = FeaturesOpt,
    id_col: Optional[str] = IdOpt, task: str = RegTaskOpt, test_size: float = TestSizeOpt, seed: int = SeedOpt,
    as_json: bool = JsonOpt,
) -> None:
    """StatP (Jagielski et al. 2018): insert box-corner points with far-off responses into a regression set."""
    from mithridate.attacks.regression import StatP

    _attack_unit_box(StatP(poison_rate=rate, model=model), data, out_path, truth, label, features, id_col, test_size,
                     seed, as_json, task=task)


@attack_app.command("optp")
def attack_optp(
    data: str = DataArg, out_path: Path = AtkOut, rate: float = RegRateOpt, model: str = RegModelOpt,
    init: str = typer.Option("inverse-flip", "--init", help="inverse-flip, boundary-flip or random."),
    max_iter: int = typer.Option(50, "--max-iter", help="Sweeps over the attack points."),
    truth: Optional[Path] = TruthOpt, label: Optional[str] = LabelOpt, features: Optional[str] = FeaturesOpt,
    id_col: Optional[str] = IdOpt, task: str = RegTaskOpt, test_size: float = TestSizeOpt, seed: int = SeedOpt,
    as_json: bool = JsonOpt,
) -> None:
    """OptP (Jagielski et al. 2018): bilevel gradient ascent on inserted (x, y) points against a linear regressor."""
    from mithridate.attacks.regression import OptP

    _attack_unit_box(OptP(poison_rate=rate, model=model, init=init, max_iter=max_iter), data, out_path, truth, label,
                     features, id_col, test_size, seed, as_json, task=task)


@attack_app.command("gradient")
def attack_gradient(
    data: str = DataArg, out_path: Path = AtkOut,
    rate: float = typer.Option(0.03, "--rate", help="Poison rate: inserted / (clean + inserted), in (0, 1)."),
    model: str = typer.Option("linear_svm", "--model", help="Victim: linear_svm or logreg."),
    C: float = typer.Option(1.0, "--C", help="The victim's inverse regularisation strength."),
    steps: int = typer.Option(100, "--steps", help="Gradient-ascent steps."),
    classes: Optional[str] = ClassesOpt,
    truth: Optional[Path] = TruthOpt, label: Optional[str] = LabelOpt, features: Optional[str] = FeaturesOpt,
    id_col: Optional[str] = IdOpt, test_size: float = TestSizeOpt, seed: int = SeedOpt, as_json: bool = JsonOpt,
) -> None:
    """Gradient poisoning (Biggio et al. 2012) of a binary linear classifier: inserted points optimised in a box."""
    from mithridate.attacks.gradient import GradientPoisoning

    _attack_unit_box(GradientPoisoning(poison_rate=rate, model=model, C=C, n_steps=steps), data, out_path, truth,
                     label, features, id_col, test_size, seed, as_json, classes=classes)


# detect ---------------------------------------------------------------------------------------
def _detector_params(pairs: List[str], detector: str) -> dict:
    """``--param`` values as keyword arguments: KEY=VALUE, or MEMBER.KEY=VALUE for the ensemble
    (collected into its ``member_params``); VALUE is a YAML scalar (0.01, true, text)."""
    import yaml

    from mithridate import registry

    is_ensemble = detector.lower() == "ensemble"
    out: dict = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"--param takes KEY=VALUE{' or MEMBER.KEY=VALUE' if is_ensemble else ''}, got {pair!r}")
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError:
            raise ConfigError(f"--param {key}: cannot read the value {raw!r}") from None
        if isinstance(value, (dict, list)):
            raise ConfigError(f"--param {key}: give one value (a number, true/false or text), got {raw!r}")
        if key == "layer":
            raise ConfigError("set the layer with --layer, not --param")
        member, dot, name = key.rpartition(".")
        if is_ensemble and dot:
            registry.get("detector", member)  # an unknown member name fails here
            out.setdefault("member_params", {}).setdefault(member.lower(), {})[name] = value
        else:
            out[key] = value
    for member, kv in out.get("member_params", {}).items():  # bad names fail now, not after training a network
        registry.create("detector", member, **kv)
    registry.create("detector", detector, **out)
    return out


@app.command()
def detect(
    detector: Optional[str] = typer.Argument(None, help="Detector name (see --list); `ensemble` (robust distance + kNN + confident learning, plus spectral signatures on a network's features) is the recommended default."),
    data: Optional[str] = typer.Argument(None, help="A bundled dataset name or a path (.npz, table with --label, IDX or image folder)."),
    list_: bool = typer.Option(False, "--list", help="List the detectors and exit."),
    model_path: Optional[Path] = typer.Option(None, "--model", help="A model saved by `mithridate train`; default: train one on DATA when the detector reads a model."),
    layer: str = typer.Option("penultimate", "--layer", help="Model layer whose activations are scored."),
    input_: str = typer.Option("auto", "--input", help="What the detector reads: model (a network's --layer), raw (the features as they are) or auto (raw for label/outlier detectors, model otherwise)."),
    budget: Optional[float] = typer.Option(None, "--budget", help="Assumed poisoned fraction: spectral, spectre, robust-distance and activation-clustering flag the top 1.5*budget of each class (as in their papers; a class that is mostly poison needs a larger budget); every other detector, the ensemble included, flags at most the BUDGET share of all samples with the highest scores. Default: the detector's budget-free rule."),
    scores_out: Optional[Path] = typer.Option(None, "--out", help="Write per-sample scores to this CSV (id,label,score,flagged)."),
    truth: Optional[Path] = typer.Option(None, "--truth", help="Ground-truth CSV (id,is_poison) to measure detection quality."),
    params: Optional[List[str]] = typer.Option(None, "--param", help="A detector parameter, KEY=VALUE (repeatable; e.g. --param n_components=16); for the ensemble MEMBER.KEY=VALUE (e.g. --param robust-distance.min_variance_ratio=0.01). Values are read as YAML scalars."),
    label: Optional[str] = LabelOpt, features: Optional[str] = FeaturesOpt, id_col: Optional[str] = IdOpt,
    classes: Optional[str] = ClassesOpt, image_col: Optional[str] = ImagesOpt, size: Optional[str] = SizeOpt,
    text: Optional[str] = JsonlTextOpt, test_size: float = TestSizeOpt, seed: int = SeedOpt, as_json: bool = JsonOpt,
) -> None:
    """Score every training sample of DATA for poisoning (higher = more suspicious) and flag the worst.

    A table, JSON Lines file, image folder (its train/ folder when it has train/ and test/) or .npz holding one
    x/y set is scored whole (every sample is a training sample, as `mithridate audit` reads it); bundled datasets,
    IDX folders and .npz archives with x_train/x_test are scored on their training split.

    `mithridate detect --list` shows the detectors. Backdoor detectors (spectral, spectre, ...) read a
    network's penultimate layer and train the default network when no --model is given; label and outlier
    detectors (knn, confident-learning, ...) read the raw features unless --input model is given.
    """
    import pandas as pd

    from mithridate import registry
    from mithridate.data import load_ground_truth
    from mithridate.eval.scenario import detection_metrics
    from mithridate.models import TorchClassifier, default_classifier
    from mithridate.utils import atomic_path

    if list_:
        rows = registry.describe("detector")
        if as_json:
            _print_json([{"name": k, "description": v, "default_input": "raw" if k in registry.RAW_INPUT_DETECTORS else "model"}
                         for k, v in rows.items()])
            return
        t = Table(title="Detectors (mithridate detect NAME DATA)")
        for col in ("name", "reads", "what it does"):
            t.add_column(col)
        for k, v in rows.items():
            if k in registry.RAW_INPUT_DETECTORS:
                reads = "raw features"
            elif k in registry.OWN_NETWORK_DETECTORS:
                reads = "inputs (trains its own network)"
            elif k == "ensemble":
                reads = "model layer (images) / raw (tables)"
            elif getattr(registry.get("detector", k), "layer", "penultimate") is None:
                reads = "model predictions (images)"
            else:
                reads = "model layer"
            t.add_row(k, reads, v)
        out.print(t)
        return
    if detector is None or data is None:
        raise ConfigError("give a detector name and a dataset: mithridate detect NAME DATA (see mithridate detect --list)")
    if input_ not in ("auto", "model", "raw"):
        raise ConfigError(f"--input must be auto, model or raw, got {input_!r}")
    registry.get("detector", detector)  # unknown names fail here, before any data is loaded
    det_params = _detector_params(params or [], detector)
    train_set = _whole_file(data, label, features, id_col, image_col, size, text) if classes is None else None
    if train_set is None:
        train_set = _load(data, label, features, id_col, test_size, seed, classes=classes, image_col=image_col,
                          size=size, text=text).train
    # a bad truth file fails now, not after a network has been trained
    is_poison = load_ground_truth(truth, train_set.ids) if truth is not None else None
    wants_model = detector.lower() not in registry.RAW_INPUT_DETECTORS | registry.OWN_NETWORK_DETECTORS
    if detector.lower() == "ensemble":  # images: a network's features; tables: the columns themselves
        wants_model = train_set.is_image
    use_model = input_ == "model" or (input_ == "auto" and (model_path is not None or wants_model))
    model = None
    if not use_model:
        layer = "raw"
    elif model_path is not None:
        model = TorchClassifier.load(model_path)
    else:
        if not as_json:
            err.print(f"No --model given: training the default network on {len(train_set)} samples of {train_set.name}.")
        model = default_classifier(len(train_set), random_state=seed, progress=not as_json)
        model.fit(train_set, n_classes=train_set.n_classes)
    reads_layer = "layer" in inspect.signature(registry.get("detector", detector)).parameters
    if not reads_layer:  # loss dynamics trains on the inputs, STRIP reads predictions: no layer to choose
        layer = "inputs"
    det = registry.create("detector", detector, **({"layer": layer if model is not None else "penultimate"}
                                                      if reads_layer else {}), **det_params)
    t0 = time.perf_counter()
    from mithridate.utils import show_progress

    with show_progress(not as_json):  # bars on stderr for the long detectors (data-oob, roni, ...)
        det.fit(train_set, model=model)
    flags = det.flag(budget=budget) if budget is not None else det.flag()
    seconds = time.perf_counter() - t0
    doc: dict = {"detector": det.name, "dataset": train_set.name, "n_samples": len(train_set), "layer": layer,
                 "budget": budget, "n_flagged": int(flags.sum()), "seconds": seconds}
    per_class = pd.Series(flags).groupby(train_set.y).sum()
    doc["flagged_per_class"] = {str(train_set.classes[int(c)]): int(v) for c, v in per_class.items()}
    if is_poison is not None:
        doc["metrics"] = detection_metrics(det.scores_, is_poison, flags)
    if scores_out is not None:
        df = pd.DataFrame({"id": train_set.ids, "label": train_set.labels, "score": det.scores_, "flagged": flags})
        with atomic_path(scores_out) as tmp:
            df.to_csv(tmp, index=False)
        doc["scores_file"] = str(scores_out)
    if as_json:
        _print_json(doc)
        return
    out.print(f"{det.name} on {train_set.name} ({len(train_set)} samples, layer {layer!r}): flagged {int(flags.sum())} "
              f"in {seconds:.2f} s", markup=False, highlight=False)
    top = ", ".join(f"{k}: {v}" for k, v in sorted(doc["flagged_per_class"].items(), key=lambda kv: -kv[1])[:5] if v)
    out.print(f"  most flagged classes: {top or 'none'}", markup=False, highlight=False)
    if "metrics" in doc:
        m = doc["metrics"]
        out.print(f"  against ground truth: AUROC {_fmt(m['auroc'])}, AP {_fmt(m['average_precision'])}, "
                  f"TPR@5%FPR {_fmt(m['tpr_at_5pct_fpr'])}, precision {_fmt(m['precision'])}, recall {_fmt(m['recall'])}")
    if scores_out is not None:
        out.print(f"  scores written to {scores_out}", markup=False, highlight=False)


# audit / sanitize -----------------------------------------------------------------------------
def _audit_input(data, label, features, id_col, contributor, source, text_col, image_col=None, size=None,
                 progress=False):
    from mithridate.audit.pipeline import load_for_audit

    return load_for_audit(data, label=label, features=_split_features(features), id_col=id_col,
                          contributor=contributor, source=source, text_col=text_col, image_col=image_col,
                          size=_parse_size(size), progress=progress)


AuditDataArg = typer.Argument(..., help="The training set to audit: CSV/TSV/Parquet (with --label), JSONL text, .npz, an image folder, or a bundled name.")
ContributorOpt = typer.Option(None, "--contributor", help="Column (or JSONL key) naming who contributed each sample.")
SourceOpt = typer.Option(None, "--source", help="Column (or JSONL key) naming where each sample came from.")
TextOpt = typer.Option(None, "--text", help="JSONL: the key holding the text (default: the first of text, content, review, sentence, body, ... on the first line); tables: the text column to audit (TF-IDF features, as for JSONL; with --features naming other columns, or with --images, it is only shown in the report).")
AuditSeedOpt = typer.Option(0, "--seed", help="Random seed (the network trained on images, the detectors' random choices); one seed gives one result.")
PolicyOpt = typer.Option(None, "--policy", help="Policy YAML (thresholds on flagged shares, reputation, change since the last version); default: the built-in policy.")


@app.command()
def audit(
    data: str = AuditDataArg,
    out_dir: Path = typer.Option(Path("mithridate-audit"), "--out", help="Folder for report.html, findings.csv and summary.json."),
    name: Optional[str] = typer.Option(None, "--name", help="Dataset name in the ledger (default: the file's name); successive versions of one dataset share it."),
    policy: Optional[Path] = PolicyOpt,
    ledger_url: Optional[str] = LedgerOpt,
    no_ledger: bool = typer.Option(False, "--no-ledger", help="Do not record the audit (no version diff, no reputation history)."),
    model_path: Optional[Path] = typer.Option(None, "--model", help="Images: a model saved by `mithridate train` whose penultimate layer is read (default: train one)."),
    network: bool = typer.Option(False, "--network", help="Tables and text: audit the penultimate layer of a network trained on the data (as for images) instead of the columns / TF-IDF features. On text it finds trigger-phrase backdoors TF-IDF misses but fewer label flips and near-duplicates (docs/text.md)."),
    label: Optional[str] = LabelOpt, features: Optional[str] = FeaturesOpt, id_col: Optional[str] = IdOpt,
    contributor: Optional[str] = ContributorOpt, source: Optional[str] = SourceOpt, text_col: Optional[str] = TextOpt,
    image_col: Optional[str] = ImagesOpt, size: Optional[str] = SizeOpt,
    seed: int = AuditSeedOpt, as_json: bool = JsonOpt,
) -> None:
    """Audit a new version of a training set before retraining: exit 0 when it passes the policy, 1 when not.

    Runs the detector ensemble on every sample, applies the policy (shares flagged overall, per class and
    per contributor; contributor reputation; whether the most suspicious samples come from a few contributors;
    change since the last audited version), records the audit in
    the ledger (one transaction) and writes report.html, findings.csv and summary.json to --out.
    Usage errors exit with 2. Example for a nightly job: `mithridate audit data/v42.csv --label y
    --contributor vendor --name training-set` and stop the pipeline unless it exits 0 (1: the data failed
    the policy, 2: the command could not run).
    """
    from mithridate.audit.pipeline import run_audit
    from mithridate.audit.policy import Policy
    from mithridate.models import TorchClassifier

    pol = Policy.from_yaml(policy) if policy is not None else Policy.default()
    inp = _audit_input(data, label, features, id_col, contributor, source, text_col, image_col, size,
                       progress=not as_json)
    model = TorchClassifier.load(model_path) if model_path is not None else None
    ds_name = name or inp.dataset.name
    kwargs = dict(name=ds_name, policy=pol, model=model, out_dir=out_dir, source=str(data), random_state=seed,
                  progress=not as_json, feature_names=inp.options.get("features"),
                  features="model" if network else "auto")
    others, created = [], False
    if no_ledger:
        res = run_audit(inp.dataset, ledger=None, **kwargs)
    else:
        from mithridate.audit import Ledger

        with Ledger(ledger_url) as led:
            others = [n for n in led.datasets()["name"].tolist() if n != ds_name]
            created = led.upgraded_from == 0
            res = run_audit(inp.dataset, ledger=led, **kwargs)
    if as_json:
        _print_json(res.summary)
    else:
        t = Table(title=Text(f"Audit of {ds_name}: {res.verdict.upper()}"))
        t.add_column("check", no_wrap=True)
        for col in ("value", "limit", "passed", "detail"):
            t.add_column(col)
        for r in res.policy_results:  # messages quote classes and contributors: data, not markup
            t.add_row(r.name, _fmt(r.value), _fmt(r.limit), "yes" if r.passed else "NO", Text(r.message))
        out.print(t)
        n_flag = int(res.findings["flagged"].sum())
        out.print(f"{n_flag} of {len(res.findings)} samples flagged. Outputs in {out_dir}: report.html, findings.csv, "
                  "summary.json", markup=False, highlight=False)
        led_info = res.summary.get("ledger")
        if led_info:
            prev = (res.summary.get("diff") or {}).get("base_version")
            against = (f"compared with version {prev}" if prev is not None else
                       "the same content as an audited version" if led_info.get("reused_version") else
                       "its first version: nothing to compare with")
            out.print(f"ledger {led_info.get('url')}{' (created by this audit)' if created else ''}: dataset "
                      f"{ds_name!r}, version {led_info.get('version')} ({against})", markup=False, highlight=False)
            if prev is None and not led_info.get("reused_version") and others:
                shown = ", ".join(repr(n) for n in others[:3]) + (f" and {len(others) - 3} more" if len(others) > 3 else "")
                out.print(f"note: {ds_name!r} is new to this ledger, which holds {len(others)} other dataset"
                          f"{'s' if len(others) > 1 else ''} ({shown}); the change checks compare versions of one name: "
                          "pass the same --name to every audit of one training set", markup=False, highlight=False)
        if not res.summary.get("contributors"):
            out.print("note: no contributor column (--contributor): the checks that name a bad contributor (flagged "
                      "share, reputation, concentration) did not run, and a poisoned minority passes unless it fails a "
                      "class or overall share (images get contributors from a table of file, label and contributor: "
                      "--images COL)", markup=False, highlight=False)
        n_without = int(res.summary.get("n_without_contributor") or 0)
        if contributor is not None and n_without:
            out.print(f"note: {n_without} samples have no contributor (an empty {contributor!r} cell); the contributor "
                      "checks leave them out", markup=False, highlight=False)
        split = [g for g in res.summary.get("subpopulations") or [] if g["share"] >= 0.25][:3]
        if split:
            out.print("note: classes split in two by spectral signatures (a backdoor's target class looks like this, "
                      "and so does a class with two natural styles; not a policy check, see report.html):",
                      markup=False, highlight=False)
            for g in split:
                out.print(f"  class {g['class']!r}: {g['n_group']} of {g['n_class']} samples ({100 * g['share']:.0f}%) "
                          f"set apart, separation {g['separation']:.2f}, {g['n_flagged']} flagged",
                          markup=False, highlight=False)
    raise typer.Exit(res.exit_code)


@app.command()
def sanitize(
    data: str = AuditDataArg,
    out_path: Path = typer.Option(..., "--out", help="Where to write the cleaned data, in the input's format (never the input itself)."),
    policy: Optional[Path] = PolicyOpt,
    budget: Optional[float] = typer.Option(None, "--budget", help="Remove the BUDGET share of all samples with the highest ensemble scores (over the whole set, as `detect ensemble --budget`) instead of the flags."),
    drop_contributors: bool = typer.Option(False, "--drop-contributors", help="Also remove every sample of contributors the policy fails."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing output."),
    manifest: Optional[Path] = typer.Option(None, "--manifest", help="The CSV of removed samples (default: OUT's name ending in .removed.csv; the JSON manifest goes beside it)."),
    model_path: Optional[Path] = typer.Option(None, "--model", help="Images: a model saved by `mithridate train` (default: train one)."),
    network: bool = typer.Option(False, "--network", help="Tables and text: read the penultimate layer of a network trained on the data, as `audit --network`."),
    from_audit: Optional[Path] = typer.Option(None, "--from-audit", help="Reuse the flags of an earlier `mithridate audit DATA ... --out FOLDER` of the same data (its findings.csv and summary.json) instead of running detection again: remove what the gate reported."),
    label: Optional[str] = LabelOpt, features: Optional[str] = FeaturesOpt, id_col: Optional[str] = IdOpt,
    contributor: Optional[str] = ContributorOpt, source: Optional[str] = SourceOpt, text_col: Optional[str] = TextOpt,
    image_col: Optional[str] = ImagesOpt, size: Optional[str] = SizeOpt,
    seed: int = AuditSeedOpt, as_json: bool = JsonOpt,
) -> None:
    """Remove the samples the audit flags and write the rest in the input's format, with a manifest of what was removed and why."""
    from mithridate.audit.policy import Policy
    from mithridate.audit.sanitize import sanitize as run_sanitize
    from mithridate.models import TorchClassifier

    pol = Policy.from_yaml(policy) if policy is not None else Policy.default()
    model = TorchClassifier.load(model_path) if model_path is not None else None
    data_in: Any = data
    audit = None
    if from_audit is not None:
        from mithridate.audit.pipeline import load_for_audit
        from mithridate.audit.sanitize import load_audit_outputs

        if policy is not None or model_path is not None or network:
            raise ConfigError("--from-audit reuses that audit's flags: --policy, --model and --network do not apply")
        data_in = load_for_audit(data, label=label, features=_split_features(features), id_col=id_col,
                                 contributor=contributor, source=source, text_col=text_col, image_col=image_col,
                                 size=_parse_size(size))
        audit = load_audit_outputs(from_audit, data_in.dataset)
        pol = audit.policy
    res = run_sanitize(data_in, out_path, label=label, features=_split_features(features), id_col=id_col,
                       contributor=contributor, source=source, text_col=text_col, image_col=image_col,
                       size=_parse_size(size), policy=pol, model=model, feature_mode="model" if network else "auto",
                       budget=budget, drop_contributors=drop_contributors, overwrite=overwrite, random_state=seed,
                       progress=not as_json, manifest=manifest, audit=audit)
    doc = {"input": str(data), "output": str(res.output), "removed_csv": str(res.manifest),
           "manifest": str(res.manifest_json), "n_input": res.n_input, "n_removed": res.n_removed, "n_kept": res.n_kept}
    if as_json:
        _print_json(doc)
        return
    out.print(f"Removed {res.n_removed} of {res.n_input} samples; wrote {res.output} ({res.n_kept} kept).\n"
              f"  removed samples and reasons: {res.manifest}\n  manifest: {res.manifest_json}", markup=False,
              highlight=False)


# ledger ---------------------------------------------------------------------------------------
def _df_out(df, title: str, as_json: bool, columns: Optional[list] = None) -> None:
    if as_json:
        _print_json(df.to_dict(orient="records"))
        return
    t = Table(title=title)
    cols = columns or list(df.columns)
    for c in cols:
        t.add_column(str(c))
    for _, r in df.iterrows():
        t.add_row(*[Text(_fmt(r[c]) if isinstance(r[c], float) else str(r[c])) for c in cols])  # data, not markup
    out.print(t)


def _open_ledger(url: Optional[str]):
    from mithridate.audit import Ledger

    return Ledger(url, must_exist=True)  # the ledger commands only read: a mistyped path must not create one


@ledger_app.command("datasets")
def ledger_datasets(ledger_url: Optional[str] = LedgerOpt, as_json: bool = JsonOpt) -> None:
    """The datasets recorded in the ledger."""
    led = _open_ledger(ledger_url)
    try:
        _df_out(led.datasets(), "Datasets in the ledger", as_json)
    finally:
        led.close()


@ledger_app.command("versions")
def ledger_versions(name: str = typer.Argument(..., help="Dataset name as recorded by `mithridate audit`."),
                    ledger_url: Optional[str] = LedgerOpt, as_json: bool = JsonOpt) -> None:
    """The recorded versions of one dataset."""
    led = _open_ledger(ledger_url)
    try:
        df = led.versions(name)  # version_id is the ledger's internal key: in --json, not in the table
        _df_out(df, f"Versions of {name}", as_json, columns=None if as_json else [c for c in df.columns if c != "version_id"])
    finally:
        led.close()


@ledger_app.command("contributors")
def ledger_contributors(name: str = typer.Argument(..., help="Dataset name as recorded by `mithridate audit`."),
                        ledger_url: Optional[str] = LedgerOpt,
                        level: float = typer.Option(0.99, "--level", help="Credible level of the intervals (default 0.99, the level the default audit policy judges at)."),
                        simultaneous: bool = typer.Option(True, "--simultaneous/--per-contributor", help="The level holds for all contributors with at least 10 samples together (each interval wider, Bonferroni), as in the audit gate; or for each contributor on its own."),
                        as_json: bool = JsonOpt) -> None:
    """Contributor reputation: posterior rate of flagged samples with a credible interval (99% for all contributors together by default, as the audit gate judges), worst first."""
    led = _open_ledger(ledger_url)
    try:
        df = led.contributors(name, level=level, simultaneous=simultaneous)
    finally:
        led.close()
    if not as_json:  # ranked by posterior mean minus this expected rate: show it beside the rate
        df = df.rename(columns={"baseline_rate": "expected"})
    _df_out(df, f"Contributors of {name} (Beta-Binomial posterior of the flagged rate; 'expected': the rate its "
                "class mix predicts, which the ranking and the gate compare with)", as_json,
            columns=None if as_json else ["rank", "contributor", "n", "flagged", "rate", "expected", "posterior_mean",
                                          "ci_lower", "ci_upper", "above_population", "n_audits"])


@ledger_app.command("audits")
def ledger_audits(name: str = typer.Argument(..., help="Dataset name as recorded by `mithridate audit`."),
                  ledger_url: Optional[str] = LedgerOpt, as_json: bool = JsonOpt) -> None:
    """The audits of one dataset, oldest first: version, time, verdict, flagged samples and the checks that failed."""
    led = _open_ledger(ledger_url)
    try:
        df = led.audits(name)
    finally:
        led.close()

    def failed(summary):
        res = (summary or {}).get("policy_results") if isinstance(summary, dict) else None
        return ", ".join(str(r.get("name")) for r in res or [] if isinstance(r, dict) and not r.get("passed")) or "-"

    df = df.assign(failed_checks=[failed(x) for x in df["summary"]])
    _df_out(df.drop(columns=["summary", "policy", "diff"]) if as_json else df, f"Audits of {name}", as_json,
            columns=None if as_json else ["audit_id", "version", "started_at", "verdict", "n_findings", "n_flagged",
                                          "failed_checks"])


# evaluate -------------------------------------------------------------------------------------
@app.command()
def evaluate(
    data: str = DataArg,
    model_path: Path = typer.Option(..., "--model", help="A model saved by `mithridate train`."),
    trigger_path: Optional[Path] = typer.Option(None, "--trigger", help="Trigger file written by `mithridate attack` (for ASR)."),
    target: Optional[str] = typer.Option(None, "--target", help="Target class (default: the one stored with the trigger)."),
    label: Optional[str] = LabelOpt, features: Optional[str] = FeaturesOpt, id_col: Optional[str] = IdOpt,
    image_col: Optional[str] = ImagesOpt, size: Optional[str] = SizeOpt, text: Optional[str] = JsonlTextOpt,
    test_size: float = TestSizeOpt, seed: int = SeedOpt, as_json: bool = JsonOpt,
) -> None:
    """Clean accuracy of a model on DATA's test split, and with --trigger its attack success rate."""
    from mithridate.attacks import Trigger
    from mithridate.attacks.base import resolve_target
    from mithridate.eval import metrics as M
    from mithridate.models import TorchClassifier

    splits = _load(data, label, features, id_col, test_size, seed, image_col=image_col, size=size, text=text)
    model = TorchClassifier.load(model_path)
    test = splits.test
    pred = model.predict(test.X)
    doc: dict = {"dataset": splits.name, "model": str(model_path), "n_test": len(test),
                 "clean_accuracy": M.accuracy(test.y, pred)}
    if trigger_path is not None:
        trig = Trigger.load(trigger_path)
        tgt = resolve_target(test, target) if target is not None else trig.target
        if tgt is None:
            raise ConfigError("the trigger file stores no target class; pass --target")
        keep = test.subset(test.y != tgt)
        tpred = model.predict(trig.apply(keep.X))
        doc.update({"target": int(tgt), "asr": M.attack_success_rate(keep.y, tpred, tgt),
                    "robust_accuracy": M.robust_accuracy(keep.y, tpred, tgt)})
    if as_json:
        _print_json(doc)
        return
    line = f"clean accuracy {_fmt(doc['clean_accuracy'])} on {len(test)} test samples"
    if "asr" in doc:
        line += f"; attack success rate {_fmt(doc['asr'])}, robust accuracy {_fmt(doc['robust_accuracy'])}"
    out.print(line)


def _reflow(text: str) -> str:
    """A docstring as --help shows it: paragraphs kept, the line breaks inside one joined (rich
    prints a docstring's line breaks as they are, which breaks sentences mid-line)."""
    paragraphs = inspect.cleandoc(text).split("\n\n")
    return "\n\n".join(" ".join(line.strip() for line in p.splitlines() if line.strip()) for p in paragraphs)


def _reflow_help(group: typer.Typer) -> None:
    for info in group.registered_commands:
        if info.help is None and info.callback is not None and info.callback.__doc__:
            info.help = _reflow(info.callback.__doc__)
    for sub in group.registered_groups:
        if sub.typer_instance is not None:
            _reflow_help(sub.typer_instance)


_reflow_help(app)


def _cli_warning(message, category, filename, lineno, line=None) -> str:
    """Warnings on the command line: one 'warning: ...' line, without Python's file/line/source."""
    return f"warning: {message}\n"


#: Library messages name Python keywords; on the command line they are these options.
_CLI_WORDS = ((r"\bsize=\(H, W\)", "--size HxW"), (r"\boverwrite=True", "--overwrite"),
              (r"\blabel=<", "--label <"), (r"\bbudget=", "--budget "), (r"\bid_col=", "--id-col"),
              (r"\btext=(?= |$)", "--text"), (r"\btext=<", "--text <"), (r"\btest_size\b", "--test-size"), (r"\bimage_col\b", "--images"),
              (r"\bmanifest=PATH", "--manifest PATH"), (r"\bout_dir (?=\S)", "--out "))


def _cli_words(message: str) -> str:
    """A library error message with its keyword arguments written as the CLI options they are."""
    import re

    for pattern, option in _CLI_WORDS:
        message = re.sub(pattern, option, message)
    return re.sub(r"(--[a-z-]+) / \1\b", r"\1", message)  # "id_col= / --id-col" said it twice


def main() -> None:
    """Entry point: user errors become one line on stderr and exit status 2."""
    warnings.formatwarning = _cli_warning
    try:
        rv = app(standalone_mode=False)  # click returns (not raises) the code of typer.Exit here
        if isinstance(rv, int) and rv:
            sys.exit(rv)
    except MithridateError as exc:
        err.print(f"error: {_cli_words(str(exc))}", markup=False, highlight=False, soft_wrap=True)
        sys.exit(2)
    except (typer.Exit, SystemExit) as exc:
        code = getattr(exc, "exit_code", getattr(exc, "code", 0))
        sys.exit(code if isinstance(code, int) else 0)
    except typer.Abort:
        err.print("aborted", markup=False)
        sys.exit(130)
    except KeyboardInterrupt:
        err.print("interrupted", markup=False)
        sys.exit(130)
    except Exception as exc:  # click usage errors (typer >= 0.20 vendors click as typer._click)
        if callable(getattr(exc, "format_message", None)) and hasattr(exc, "exit_code"):
            err.print(f"error: {exc.format_message()}", markup=False, highlight=False, soft_wrap=True)
            sys.exit(2)
        if isinstance(exc, (FileNotFoundError, IsADirectoryError, PermissionError)):
            err.print(f"error: {exc}", markup=False, highlight=False)
            sys.exit(2)
        raise


if __name__ == "__main__":  # pragma: no cover
    main()
