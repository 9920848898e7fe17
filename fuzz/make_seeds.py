#!/usr/bin/env python3
"""Writes the fuzzers' seed inputs into fuzz/seeds/<target>/ (standard library only).

Seeds are where the coverage-guided search starts: a few valid inputs of each form a target
reads (so the fuzzer reaches the deep paths at once) and a few near misses. They come from the
repo's own fixtures (ONNX models, example specs and tables, MLmodel files) and from the bodies
below, written to match the schemas of crates/fuzzing (columns age/income/city/member, a
positional 4-wide matrix `X`, columns a/b). The replay test runs every seed under `cargo test`.

Run from anywhere: python3 fuzz/make_seeds.py (it replaces the seed folders).
"""
import json
import shutil
import struct
from pathlib import Path

FUZZ = Path(__file__).resolve().parent
REPO = FUZZ.parent
SEEDS = FUZZ / "seeds"

ROW = {"age": 41, "income": 52000.5, "city": "Oslo", "member": True}


def write(target, name, content):
    folder = SEEDS / target
    folder.mkdir(parents=True, exist_ok=True)
    data = content if isinstance(content, bytes) else content.encode()
    (folder / name).write_bytes(data)


def filters():
    for i, text in enumerate([
        "metrics.rmse < 0.5 AND params.alpha = '0.1'",
        "tags.`mlflow.runName` LIKE 'train-%' and attributes.status = 'FINISHED'",
        "attributes.run_id IN ('a1', 'b2', \"c3\")",
        "name ILIKE '%churn%' AND tags.team != 'x'",
        "metrics.`val acc` >= 0.9 AND metrics.loss <= 1e-3",
        "dataset.name = 'train' AND dataset.digest = 'abc123'",
        "attributes.start_time > 1700000000000",
        "params.\"quoted key\" = 'it''s'",
        "creation_time DESC",
        "metrics.rmse ASC, start_time DESC",
        "tags.t = 'v' AND " * 5 + "tags.t = 'v'",
        "run_name RLIKE '^(a|b)+$'",
    ]):
        write("filter", f"filter-{i:02}.txt", text)


def onnx_models():
    sources = sorted((REPO / "tests/interop/fixtures/onnx_models").glob("*.onnx"))
    sources += sorted((REPO / "crates/runtime/tests/fixtures/onnx").glob("*.onnx"))
    for path in sources:
        if path.stat().st_size <= 24 * 1024:
            shutil.copyfile(path, SEEDS / "onnx_model" / path.name)


def invocation_bodies():
    bodies = {
        "split.json": {"dataframe_split": {"columns": list(ROW), "data": [list(ROW.values()), [30, None, "Rome", False]]}},
        "records.json": {"dataframe_records": [ROW, {"age": 30, "city": "Rome"}]},
        "instances.json": {"instances": [[1.0, 2.0, 3.0, 4.0], [5, 6, 7, 8]]},
        "instances-records.json": {"instances": [ROW]},
        "inputs-columns.json": {"inputs": {"a": [1.5, 2.5], "b": [1, 2]}},
        "inputs-matrix.json": {"inputs": {"X": [[1, 2, 3, 4]]}},
        "inputs-list.json": {"inputs": [[0.1, 0.2, 0.3, 0.4]]},
        "two-keys.json": {"instances": [[1, 2, 3, 4]], "inputs": [[1, 2, 3, 4]]},
    }
    for name, body in bodies.items():
        write("mlflow_invocations", name, json.dumps(body))
    write("mlflow_invocations", "table.csv", "age,income,city,member\n41,52000.5,Oslo,true\n30,,\"Rome, IT\",false\n")
    write("mlflow_invocations", "matrix.csv", "a,b,c,d\n1,2,3,4\n")


def oip_bodies():
    columns = {"inputs": [
        {"name": "age", "shape": [2], "datatype": "INT64", "data": [41, 30]},
        {"name": "income", "shape": [2, 1], "datatype": "FP64", "data": [[52000.5], [None]]},
        {"name": "city", "shape": [2], "datatype": "BYTES", "data": ["Oslo", "Rome"]},
        {"name": "member", "shape": [2], "datatype": "BOOL", "data": [True, False]},
    ], "outputs": [{"name": "predict"}], "id": "r1"}
    matrix = {"inputs": [{"name": "X", "shape": [2, 4], "datatype": "FP32", "data": [1, 2, 3, 4, 5, 6, 7, 8]}]}
    ab = {"inputs": [{"name": "a", "shape": [1], "datatype": "FP32", "data": [0.5]},
                     {"name": "b", "shape": [1], "datatype": "INT32", "data": [3]}]}
    write("oip_infer", "columns.json", json.dumps(columns))
    write("oip_infer", "matrix.json", json.dumps(matrix))
    write("oip_infer", "ab.json", json.dumps(ab))
    # The binary extension: the JSON part, then the tensors' bytes (little-endian, row-major).
    header = json.dumps({"inputs": [
        {"name": "X", "shape": [1, 4], "datatype": "FP64", "parameters": {"binary_data_size": 32}}]})
    write("oip_infer", "binary-fp64.bin", header.encode() + struct.pack("<4d", 1, 2, 3, 4))
    text = b"".join(struct.pack("<I", len(s)) + s for s in (b"Oslo", b"Rome"))
    header = json.dumps({"inputs": [
        {"name": "age", "shape": [2], "datatype": "INT32", "parameters": {"binary_data_size": 8}},
        {"name": "city", "shape": [2], "datatype": "BYTES", "parameters": {"binary_data_size": len(text)}},
        {"name": "member", "shape": [2], "datatype": "BOOL", "parameters": {"binary_data_size": 2}}]})
    write("oip_infer", "binary-mixed.bin", header.encode() + struct.pack("<2i", 41, 30) + text + b"\x01\x00")


def seed_bodies():
    write("seed_predict", "data.json", json.dumps({"data": [[1, 2, 3, 4]], "columns": ["a", "b", "c", "d"]}))
    write("seed_predict", "data-bare.json", json.dumps({"data": [[0.1, 0.2, 0.3, 0.4], [1, 1, 1, 1]]}))
    write("seed_predict", "records.json", json.dumps({"records": [ROW, {"age": 30}], "user_id": "u-7"}))
    write("seed_predict", "ab.json", json.dumps({"records": [{"a": 1.5, "b": 2}]}))


def tables():
    write("csv_table", "churn-head.csv", "".join((REPO / "examples/churn/train.csv").open().readlines()[:30]))
    write("csv_table", "quoted.csv", 'id,name,note\n1,"Smith, J","said ""hi"""\n2,Lee,\n3,NA,"multi\nline"\n')
    write("csv_table", "widen.csv", "n,flag,when\n1,true,2024-01-01\n2,false,2024-01-02\n2.5,True,\n")
    write("csv_table", "nulls.csv", "a,b\nNaN,None\nnull,1\n,2\n")
    write("csv_table", "tabs.csv", "a\tb\n1\t2\n")


def yaml_files():
    for path in sorted((REPO / "examples/churn").glob("*.yaml")):
        shutil.copyfile(path, SEEDS / "yaml_specs" / path.name)
    shutil.copyfile(REPO / "tests/interop/fixtures/onnx_models/logreg_4inputs/MLmodel", SEEDS / "yaml_specs" / "MLmodel")
    write("yaml_specs", "anchors.yaml", "a: &x [1, 2]\nb: *x\nc: {<<: {k: v}}\n")


def main():
    if SEEDS.exists():
        shutil.rmtree(SEEDS)
    for target in ("filter", "onnx_model", "mlflow_invocations", "oip_infer", "seed_predict", "csv_table", "yaml_specs"):
        (SEEDS / target).mkdir(parents=True)
    filters()
    onnx_models()
    invocation_bodies()
    oip_bodies()
    seed_bodies()
    tables()
    yaml_files()
    for folder in sorted(SEEDS.iterdir()):
        print(f"{folder.name}: {len(list(folder.iterdir()))} seeds")


if __name__ == "__main__":
    main()
