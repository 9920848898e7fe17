//! Fidelity of the native ONNX engine to onnxruntime.
//!
//! `tests/fixtures/onnx/make_onnx_fixtures.py` trains scikit-learn, LightGBM and XGBoost models,
//! converts them with skl2onnx / onnxmltools, and records onnxruntime 1.32's outputs on sample
//! rows (`<name>.json` beside `<name>.onnx`). Each model must load in the native engine and give
//! the same labels exactly and the same scores to 1e-5 (relative above 1).

use std::path::{Path, PathBuf};

use serde_json::Value as Json;
use shipyard_runtime::onnx::{Data, MapKeys, OnnxModel, Tensor, Value};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/onnx")
}

fn floats(v: &Json) -> Vec<f64> {
    v.as_array().expect("data array").iter().map(|x| x.as_f64().unwrap_or(f64::NAN)).collect()
}

fn tensor(spec: &Json) -> Tensor {
    let shape: Vec<usize> =
        spec["shape"].as_array().expect("shape").iter().map(|d| d.as_u64().expect("dim") as usize).collect();
    let data = &spec["data"];
    let data = match spec["dtype"].as_str().expect("dtype") {
        "float32" => Data::F32(floats(data).into_iter().map(|x| x as f32).collect()),
        "float64" => Data::F64(floats(data)),
        "int64" => Data::I64(data.as_array().expect("data").iter().map(|x| x.as_i64().expect("int")).collect()),
        "int32" => Data::I32(data.as_array().expect("data").iter().map(|x| x.as_i64().expect("int") as i32).collect()),
        "bool" => Data::Bool(data.as_array().expect("data").iter().map(|x| x.as_bool().expect("bool")).collect()),
        "string" => {
            Data::Str(data.as_array().expect("data").iter().map(|x| x.as_str().expect("str").to_owned()).collect())
        }
        other => panic!("unknown dtype {other}"),
    };
    Tensor::new(shape, data)
}

fn close(got: f64, want: f64) -> bool {
    if want.is_nan() {
        return got.is_nan();
    }
    (got - want).abs() <= 1e-5 * want.abs().max(1.0)
}

/// Compares one output; returns a description of the first mismatch.
fn compare(name: &str, got: &Value, want: &Json) -> Result<(), String> {
    let (tensor_got, keys) = match got {
        Value::Tensor(t) => (t, None),
        Value::SeqMap { keys, values } => (values, Some(keys)),
    };
    if want["dtype"] == "seq_map" {
        let Some(keys) = keys else { return Err(format!("{name}: expected a ZipMap output")) };
        let want_keys: Vec<String> = want["keys"]
            .as_array()
            .expect("keys")
            .iter()
            .map(|k| k.as_str().map_or_else(|| k.to_string(), str::to_owned))
            .collect();
        let got_keys = match keys {
            MapKeys::Str(v) => v.clone(),
            MapKeys::Int(v) => v.iter().map(|k| k.to_string()).collect(),
        };
        if got_keys != want_keys {
            return Err(format!("{name}: keys {got_keys:?}, expected {want_keys:?}"));
        }
    }
    let want_shape: Vec<usize> =
        want["shape"].as_array().expect("shape").iter().map(|d| d.as_u64().expect("dim") as usize).collect();
    if tensor_got.shape != want_shape {
        return Err(format!("{name}: shape {:?}, expected {want_shape:?}", tensor_got.shape));
    }
    let data = &want["data"];
    match &tensor_got.data {
        Data::Str(v) => {
            let w: Vec<String> = data
                .as_array()
                .expect("data")
                .iter()
                .map(|x| x.as_str().map_or_else(|| x.to_string(), str::to_owned))
                .collect();
            if let Some(i) = (0..v.len()).find(|&i| v[i] != w[i]) {
                return Err(format!("{name}[{i}]: {:?}, expected {:?}", v[i], w[i]));
            }
        }
        Data::I64(v) => {
            let w: Vec<i64> = data.as_array().expect("data").iter().map(|x| x.as_i64().expect("int")).collect();
            if let Some(i) = (0..v.len()).find(|&i| v[i] != w[i]) {
                return Err(format!("{name}[{i}]: {}, expected {}", v[i], w[i]));
            }
        }
        other => {
            let g: Vec<f64> = match other {
                Data::F32(v) => v.iter().map(|&x| f64::from(x)).collect(),
                Data::F64(v) => v.clone(),
                Data::I32(v) => v.iter().map(|&x| f64::from(x)).collect(),
                Data::Bool(v) => v.iter().map(|&x| f64::from(u8::from(x))).collect(),
                _ => unreachable!(),
            };
            let w = floats(data);
            if let Some(i) = (0..g.len()).find(|&i| !close(g[i], w[i])) {
                return Err(format!("{name}[{i}]: {}, expected {} (diff {:e})", g[i], w[i], (g[i] - w[i]).abs()));
            }
        }
    }
    Ok(())
}

fn check(json_path: &Path) -> Result<(), String> {
    let spec: Json =
        serde_json::from_slice(&std::fs::read(json_path).map_err(|e| e.to_string())?).map_err(|e| e.to_string())?;
    let model_path = json_path.with_file_name(spec["model"].as_str().expect("model"));
    let model =
        OnnxModel::from_bytes(&std::fs::read(&model_path).map_err(|e| e.to_string())?).map_err(|e| e.to_string())?;
    let inputs: Vec<Value> = model.inputs.iter().map(|i| Value::from(tensor(&spec["inputs"][&i.name]))).collect();
    let outputs = model.run(&inputs).map_err(|e| e.to_string())?;
    // The same rows one at a time (the batch-1 path of the tree kernels) give the same answers.
    if let [Value::Tensor(t)] = inputs.as_slice()
        && t.shape.len() == 2
        && t.shape[0] > 1
    {
        let width = t.shape[1];
        for r in [0, t.shape[0] - 1] {
            let row = Value::from(Tensor::new(vec![1, width], t.data.gather(r * width..(r + 1) * width)));
            let single = model.run(std::slice::from_ref(&row)).map_err(|e| e.to_string())?;
            for (one, all) in single.iter().zip(&outputs) {
                let (Value::Tensor(a), Value::Tensor(b)) = (one, all) else { continue };
                let per_row = b.len() / t.shape[0];
                let want = b.data.gather(r * per_row..(r + 1) * per_row);
                if a.data != want {
                    return Err(format!("row {r} alone: {:?}, in the batch: {want:?}", a.data));
                }
            }
        }
    }
    let want = spec["outputs"].as_object().expect("outputs");
    if want.len() != outputs.len() {
        return Err(format!("{} outputs, expected {}", outputs.len(), want.len()));
    }
    for ((name, w), (got, io)) in want.iter().zip(outputs.iter().zip(&model.outputs)) {
        assert_eq!(name, &io.name);
        compare(name, got, w)?;
    }
    Ok(())
}

#[test]
fn every_fixture_model_equals_onnxruntime() {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(fixtures())
        .expect("fixture directory")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    paths.sort();
    assert!(paths.len() >= 30, "expected the fixture models, found {}", paths.len());
    let failures: Vec<String> = paths
        .iter()
        .filter_map(|p| check(p).err().map(|e| format!("{}: {e}", p.file_stem().unwrap_or_default().to_string_lossy())))
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} fixtures differ from onnxruntime:\n{}",
        failures.len(),
        paths.len(),
        failures.join("\n")
    );
}

/// The fixtures through the onnxruntime engine too, when the test command has configured its
/// library (scripts/test.sh points ORT_DYLIB_PATH at the pinned wheel's): same answers.
#[test]
fn every_fixture_model_runs_on_the_onnxruntime_engine_when_configured() {
    use shipyard_runtime::onnx::ort_engine::{self, OrtModel};
    if ort_engine::library_path().is_none() {
        // The test command always configures it: there, a missing library is a failure.
        assert!(
            std::env::var_os("SHIPYARD_REQUIRE_ORT").is_none(),
            "SHIPYARD_REQUIRE_ORT is set but ORT_DYLIB_PATH is not: the onnxruntime engine cannot be tested"
        );
        eprintln!("ORT_DYLIB_PATH is not set: skipping the onnxruntime engine");
        return;
    }
    let mut failures = Vec::new();
    let mut paths: Vec<PathBuf> = std::fs::read_dir(fixtures())
        .expect("fixture directory")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    paths.sort();
    for json_path in &paths {
        let spec: Json = serde_json::from_slice(&std::fs::read(json_path).expect("json")).expect("json");
        let bytes = std::fs::read(json_path.with_file_name(spec["model"].as_str().expect("model"))).expect("model");
        let description = shipyard_runtime::onnx::describe(&bytes).expect("describe");
        let model = OrtModel::from_bytes(&bytes, None, description.class_labels).expect("onnxruntime session");
        let inputs: Vec<Value> =
            description.inputs.iter().map(|i| Value::from(tensor(&spec["inputs"][&i.name]))).collect();
        let outputs = model.run(&inputs).expect("onnxruntime run");
        for ((name, want), got) in spec["outputs"].as_object().expect("outputs").iter().zip(&outputs) {
            if let Err(e) = compare(name, got, want) {
                failures.push(format!("{}: {e}", json_path.display()));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// A model with an operator the native engine lacks: refused by name without onnxruntime, run by
/// onnxruntime under `auto` when it is configured.
#[test]
fn unsupported_operators_are_named_and_go_to_onnxruntime() {
    use prost::Message;
    use shipyard_core::onnx_proto::*;
    let tensor_type = |dims: Vec<Option<i64>>| TypeProto {
        tensor_type: Some(TensorTypeProto {
            elem_type: data_type::FLOAT,
            shape: Some(TensorShapeProto {
                dim: dims.into_iter().map(|d| Dimension { dim_value: d, dim_param: None }).collect(),
            }),
        }),
        ..Default::default()
    };
    let model = ModelProto {
        ir_version: 8,
        opset_import: vec![OperatorSetIdProto { domain: String::new(), version: 13 }],
        graph: Some(GraphProto {
            name: "erf".into(),
            node: vec![NodeProto {
                input: vec!["x".into()],
                output: vec!["y".into()],
                name: "erf_node".into(),
                op_type: "Erf".into(),
                ..Default::default()
            }],
            input: vec![ValueInfoProto { name: "x".into(), r#type: Some(tensor_type(vec![None, Some(2)])) }],
            output: vec![ValueInfoProto { name: "y".into(), r#type: Some(tensor_type(vec![None, Some(2)])) }],
            ..Default::default()
        }),
        ..Default::default()
    };
    let bytes = model.encode_to_vec();
    let err = OnnxModel::from_bytes(&bytes).err().expect("Erf is not a native operator");
    let message = err.to_string();
    assert!(message.contains("Erf") && message.contains("--engine onnxruntime"), "{message}");

    let dir = std::env::temp_dir().join(format!("shipyard-erf-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let file = dir.join("erf.onnx");
    std::fs::write(&file, &bytes).expect("write");
    let loaded = shipyard_runtime::LoadedModel::load(&file, shipyard_runtime::EngineChoice::Auto);
    if shipyard_runtime::onnx::ort_engine::library_path().is_none() {
        let e = loaded.err().expect("refused without onnxruntime").to_string();
        assert!(e.contains("Erf"), "{e}");
    } else {
        let loaded = loaded.expect("onnxruntime runs Erf");
        assert_eq!(loaded.engine_name, "onnxruntime");
        let csv = dir.join("rows.csv");
        std::fs::write(&csv, "a,b\n0.5,-1\n0,2\n").expect("write");
        let batches = shipyard_data_free_read(&csv);
        let out = loaded.predict(&batches).expect("predict");
        let shipyard_runtime::Output::Values { columns: 2, values, .. } = out else { panic!("expected values") };
        let want = [0.520_499_9, -0.842_700_8, 0.0, 0.995_322_3];
        for (g, w) in values.iter().zip(want) {
            assert!((g - w).abs() < 1e-6, "{values:?}");
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// A two-column float table as Arrow batches (the runtime takes batches, not files).
fn shipyard_data_free_read(path: &Path) -> Vec<arrow_array::RecordBatch> {
    let text = std::fs::read_to_string(path).expect("csv");
    let mut lines = text.lines();
    let names: Vec<&str> = lines.next().expect("header").split(',').collect();
    let rows: Vec<Vec<f64>> = lines.map(|l| l.split(',').map(|v| v.parse().expect("number")).collect()).collect();
    let columns: Vec<arrow_array::ArrayRef> = (0..names.len())
        .map(|j| {
            std::sync::Arc::new(arrow_array::Float64Array::from(rows.iter().map(|r| r[j]).collect::<Vec<_>>())) as _
        })
        .collect();
    let fields: Vec<arrow_schema::Field> =
        names.iter().map(|n| arrow_schema::Field::new(*n, arrow_schema::DataType::Float64, true)).collect();
    vec![
        arrow_array::RecordBatch::try_new(std::sync::Arc::new(arrow_schema::Schema::new(fields)), columns)
            .expect("batch"),
    ]
}
