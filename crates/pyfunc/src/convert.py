"""Shipyard's conversion of a scikit-learn model to ONNX, and the rows to verify it on.

    python -I -c <this file> MODEL_DIR OUT_DIR

Loads the MLflow sklearn-flavor model in MODEL_DIR (unpickling: the same trust as serving it),
converts it with skl2onnx (double precision where the converters allow it, else float; no
ZipMap), and writes to OUT_DIR:
- model.onnx, and an MLmodel naming it (onnx flavor) with the model's signature, or one made from
  the estimator's feature_names_in_;
- rows.arrow: the verification rows (Arrow IPC stream): the input example, a few hundred
  synthetic rows in the example's ranges, extremes, and rows with missing values when the
  model itself accepts them;
- report.json: what the model answers on those rows (labels, probabilities or values, from
  scikit-learn itself), the classes, the versions used, and how it was converted.
Shipyard then runs model.onnx on its own engine over rows.arrow and compares. On a failure the
process exits 1 after writing report.json with "error". Nothing is written to stdout but logs.
"""

import json
import os
import signal
import sys
import traceback

# Seconds one conversion attempt may take.
ATTEMPT_SECONDS = 30


def fail(out, message, refused=False):
    """Exits 1 with the reason; `refused`: the verdict on the model itself, the same at every
    attempt (Shipyard keeps it), not a failure of this attempt."""
    with open(os.path.join(out, "report.json"), "w") as f:
        json.dump({"error": message, "refused": refused}, f)
    sys.exit(1)


def versions():
    from importlib import metadata

    found = {}
    for name in ("scikit-learn", "skl2onnx", "onnx", "numpy", "mlflow", "mlflow-skinny"):
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return found


def read_example(model_dir, meta):
    """The logged input example as a DataFrame, or None."""
    import pandas as pd

    try:
        from mlflow.models.utils import _read_example

        example = _read_example(meta, model_dir)
    except Exception:
        return None
    if isinstance(example, pd.DataFrame):
        return example
    try:
        return pd.DataFrame(example)
    except Exception:
        return None


def columns_of(meta, estimator, example):
    """[(name, kind)] with kind "number" or "text", in the order the model reads them."""
    schema = meta.get_input_schema()
    if schema is not None and schema.has_input_names() and not schema.is_tensor_spec():
        cols = []
        for spec in schema.inputs:
            kind = "text" if str(spec.type).lower() in ("string", "datatype.string") or "string" in str(spec.type) else "number"
            cols.append((spec.name, kind))
        return cols, True
    names = getattr(estimator, "feature_names_in_", None)
    if names is not None:
        kinds = []
        for n in names:
            text = example is not None and n in example.columns and example[n].dtype == object
            kinds.append((str(n), "text" if text else "number"))
        return kinds, False
    n = getattr(estimator, "n_features_in_", None)
    if n is None:
        raise ValueError("the model has no signature, no feature_names_in_ and no n_features_in_: its inputs are unknown")
    return [(f"f{j}", "number") for j in range(int(n))], False


def verification_rows(columns, example, accepts):
    """The rows to compare on, as a DataFrame."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(20261206)
    n = 400
    parts = []
    if example is not None and all(c in example.columns for c, _ in columns):
        parts.append(example[[c for c, _ in columns]].copy())
    synth = {}
    for name, kind in columns:
        seen = parts[0][name] if parts else None
        if kind == "text":
            values = [v for v in (seen.dropna().unique().tolist() if seen is not None else []) if isinstance(v, str)]
            synth[name] = rng.choice(values or ["a"], size=n)
        else:
            if seen is not None and len(seen.dropna()):
                lo, hi = float(seen.min()), float(seen.max())
                spread = max(hi - lo, abs(hi), 1.0)
                lo, hi = lo - spread, hi + spread
            else:
                lo, hi = -3.0, 3.0
            synth[name] = rng.uniform(lo, hi, size=n)
    parts.append(pd.DataFrame(synth))
    extremes = []
    for value in (0.0, 1e6, -1e6):
        extremes.append({name: (value if kind == "number" else synth[name][0]) for name, kind in columns})
    parts.append(pd.DataFrame(extremes))
    rows = pd.concat(parts, ignore_index=True)
    missing = rows.head(60).copy()
    for j, (name, kind) in enumerate(columns):
        if kind == "number":
            missing.loc[missing.index[j % len(missing)::max(1, len(columns))], name] = np.nan
    with_missing = accepts(missing)
    if with_missing:
        rows = pd.concat([rows, missing], ignore_index=True)
    for name, kind in columns:
        if kind == "number":
            rows[name] = rows[name].astype("float64")
        else:
            rows[name] = rows[name].astype(object)
    return rows, with_missing


def infinite_thresholds(estimator, depth=0):
    """Whether a tree in the model splits at an infinite threshold (trees fitted with missing
    values do), where skl2onnx's double-precision conversion does not end."""
    import numpy as np

    if depth > 6:
        return False
    tree = getattr(estimator, "tree_", None)
    if tree is not None and not np.isfinite(tree.threshold).all():
        return True
    parts = []
    for name in ("estimators_", "steps", "transformers_", "estimator_", "final_estimator_"):
        value = getattr(estimator, name, None)
        if value is None:
            continue
        if isinstance(value, np.ndarray):
            value = value.ravel().tolist()
        parts.extend(value if isinstance(value, list) else [value])
    for part in parts:
        if isinstance(part, tuple):
            part = part[1]
        if hasattr(part, "get_params") and infinite_thresholds(part, depth + 1):
            return True
    return False


def tree_list(estimator):
    """The decision trees of a decision tree or a forest (a pipeline's last step), in the order
    skl2onnx numbers them (`nodes_treeids`); None for any other model."""
    while hasattr(estimator, "steps"):
        estimator = estimator.steps[-1][1]
    if hasattr(estimator, "tree_"):
        return [estimator.tree_]
    members = getattr(estimator, "estimators_", None)
    if isinstance(members, list) and members and all(hasattr(m, "tree_") for m in members):
        return [m.tree_ for m in members]
    return None


def carry_missing_directions(onx, estimator):
    """skl2onnx drops where a tree sends a missing value (onnx/sklearn-onnx#1253), which
    scikit-learn keeps per split (`tree_.missing_go_to_left`, learned, or the larger child when
    no missing value was seen): copied into ONNX's `nodes_missing_value_tracks_true` (the true
    branch of BRANCH_LEQ is scikit-learn's left child). Whether it then answers as the model
    does is what the verification checks."""
    import onnx

    trees = tree_list(estimator)
    ensembles = [n for n in onx.graph.node if n.op_type in ("TreeEnsembleClassifier", "TreeEnsembleRegressor")]
    if trees is None or len(ensembles) != 1 or any(not hasattr(t, "missing_go_to_left") for t in trees):
        return False
    node = ensembles[0]
    attrs = {a.name: a for a in node.attribute}
    tree_ids = list(attrs["nodes_treeids"].ints)
    node_ids = list(attrs["nodes_nodeids"].ints)
    modes = list(attrs["nodes_modes"].strings)
    if max(tree_ids, default=-1) >= len(trees):
        return False
    tracks = []
    for t, n, mode in zip(tree_ids, node_ids, modes):
        if mode != b"BRANCH_LEQ":
            tracks.append(0)
            continue
        tracks.append(int(trees[t].missing_go_to_left[n]))
    for a in [a for a in node.attribute if a.name == "nodes_missing_value_tracks_true"]:
        node.attribute.remove(a)
    node.attribute.append(onnx.helper.make_attribute("nodes_missing_value_tracks_true", tracks))
    return True


def convert(estimator, columns, double):
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import DoubleTensorType, FloatTensorType, StringTensorType

    number = DoubleTensorType if double else FloatTensorType
    if all(kind == "number" for _, kind in columns):
        initial = [("input", number([None, len(columns)]))]
    else:
        initial = [(name, StringTensorType([None, 1]) if kind == "text" else number([None, 1])) for name, kind in columns]
    options = {id(estimator): {"zipmap": False}} if hasattr(estimator, "predict_proba") else None
    return convert_sklearn(estimator, initial_types=initial, options=options, target_opset={"": 17, "ai.onnx.ml": 3})


def main():
    model_dir, out = sys.argv[1], sys.argv[2]
    sys.stdout = sys.stderr
    try:
        import mlflow.sklearn
        from mlflow.models import Model

        meta = Model.load(os.path.join(model_dir, "MLmodel"))
        estimator = mlflow.sklearn.load_model(model_dir)
    except Exception as e:
        traceback.print_exc()
        fail(out, f"loading the model: {type(e).__name__}: {e}")
    try:
        import skl2onnx  # noqa: F401
    except ImportError:
        fail(out, "skl2onnx is not installed in the interpreter")
    import numpy as np
    import pandas as pd
    import pyarrow as pa

    example = read_example(model_dir, meta)
    try:
        columns, has_signature = columns_of(meta, estimator, example)
    except Exception as e:
        fail(out, str(e), refused=True)
    names = [c for c, _ in columns]

    def as_input(frame):
        return frame[names] if getattr(estimator, "feature_names_in_", None) is not None or has_signature else frame[names].to_numpy()

    def accepts(frame):
        try:
            estimator.predict(as_input(frame))
            return True
        except Exception:
            return False

    rows, with_missing = verification_rows(columns, example, accepts)
    errors = []
    timed_out = False
    onx = None

    def too_slow(signum, frame):
        raise TimeoutError(f"skl2onnx took more than {ATTEMPT_SECONDS} s")

    # skl2onnx's double-precision tree thresholds loop forever on the infinite thresholds of
    # trees fitted with missing values: each attempt gets a bounded time.
    signal.signal(signal.SIGALRM, too_slow)
    for double in (False,) if infinite_thresholds(estimator) else (True, False):
        signal.alarm(ATTEMPT_SECONDS)
        try:
            onx = convert(estimator, columns, double)
            precision = "double" if double else "float"
            break
        except Exception as e:
            timed_out = timed_out or isinstance(e, TimeoutError)
            errors.append(f"{'double' if double else 'float'}: {type(e).__name__}: {e}")
        finally:
            signal.alarm(0)
    if onx is None:
        fail(out, "skl2onnx cannot convert the model: " + "; ".join(errors), refused=not timed_out)
    carried = carry_missing_directions(onx, estimator)
    with open(os.path.join(out, "model.onnx"), "wb") as f:
        f.write(onx.SerializeToString())

    report = {"precision": precision, "versions": versions(), "rows": len(rows), "columns": names,
              "missing_directions": carried, "accepts_missing": with_missing}
    x = as_input(rows)
    predictions = estimator.predict(x)
    classes = getattr(estimator, "classes_", None)
    if classes is not None and hasattr(estimator, "predict_proba"):
        report["task"] = "classification"
        report["classes"] = [c.item() if hasattr(c, "item") else c for c in classes]
        report["labels"] = [p.item() if hasattr(p, "item") else p for p in predictions]
        report["probabilities"] = np.asarray(estimator.predict_proba(x), dtype=float).tolist()
    elif classes is not None:
        report["task"] = "classification"
        report["classes"] = [c.item() if hasattr(c, "item") else c for c in classes]
        report["labels"] = [p.item() if hasattr(p, "item") else p for p in predictions]
    else:
        report["task"] = "regression"
        report["values"] = np.asarray(predictions, dtype=float).reshape(len(rows), -1).tolist()

    # The MLmodel naming the ONNX file, with the signature (or one made from the columns).
    signature = meta.signature
    if signature is None or not has_signature:
        from mlflow.models import infer_signature

        signature = infer_signature(rows[names].head(5))
    converted = Model(signature=signature)
    converted.add_flavor("onnx", data="model.onnx")
    converted.save(os.path.join(out, "MLmodel"))

    table = pa.Table.from_pandas(rows[names], preserve_index=False)
    with pa.OSFile(os.path.join(out, "rows.arrow"), "wb") as sink:
        with pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)
    with open(os.path.join(out, "report.json"), "w") as f:
        json.dump(report, f, default=str)


if __name__ == "__main__":
    main()
