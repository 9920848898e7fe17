//! The fuzz targets: each public function takes the bytes an attacker controls and passes them
//! to exactly the code a request, an upload or a spec file reaches, then checks what must hold
//! whatever the bytes: no panic, no unbounded allocation (libFuzzer's `-malloc_limit_mb`), and
//! a refusal that is the client's error, never the server's.
//!
//! Two callers: `fuzz/fuzz_targets/*.rs` (cargo-fuzz, libFuzzer's coverage-guided search; see
//! `scripts/fuzz.sh`) and this crate's replay test, which runs every seed and every saved
//! crash input (`fuzz/seeds/<target>/`, `fuzz/regressions/<target>/`) under plain `cargo test`,
//! so a fixed crash stays fixed on stable Rust without the fuzzer. The targets live here, not in
//! the fuzz crate, so that the replay test compiles them with the workspace.

use std::io::Write;

use axum::http::{HeaderMap, HeaderValue, header};
use shipyard_core::filter::{self, Entity};
use shipyard_runtime::onnx::{self, Data, ElemType, IoType, OnnxModel, Tensor, Value};
use shipyard_runtime::{InputColumn, Inputs};
use shipyard_serving::ServeError;
use shipyard_serving::input::Schema;
use shipyard_serving::protocol::{mlflow, oip, seed};

/// A fuzz target: it takes any bytes and panics only on a defect.
pub type Target = fn(&[u8]);

/// Every target, by the name its seed, regression and fuzz-target files use.
pub const TARGETS: &[(&str, Target)] = &[
    ("filter", filter),
    ("onnx_model", onnx_model),
    ("mlflow_invocations", mlflow_invocations),
    ("oip_infer", oip_infer),
    ("seed_predict", seed_predict),
    ("csv_table", csv_table),
    ("yaml_specs", yaml_specs),
];

/// Rows a request may hold in the serving targets (small: the row limit is part of what is
/// checked, and big bodies would only slow the search).
const MAX_ROWS: usize = 64;

/// The search filters of runs, experiments, registered models and model versions, and their
/// `order_by`: parsed or refused with a message, whatever the text.
pub fn filter(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    for comparisons in [
        filter::parse(text),
        filter::run_filter(text),
        filter::attribute_filter(text, &[("name", false), ("creation_time", true)], &[Entity::Tag]),
    ]
    .into_iter()
    .flatten()
    {
        // Every comparison is bounded by the caps that keep a filter from becoming slow SQL.
        assert!(comparisons.len() <= filter::MAX_COMPARISONS, "{} comparisons", comparisons.len());
    }
    let _ = filter::order_by(text, &["name", "start_time"], &[Entity::Metric, Entity::Param, Entity::Tag]);
}

/// An ONNX file as a model upload gives it: decoded, described, compiled, and (when it compiles
/// and its inputs are plain tensors) run on a small batch.
pub fn onnx_model(data: &[u8]) {
    let _ = onnx::describe(data);
    let Ok(model) = OnnxModel::from_bytes(data) else { return };
    let Some(inputs) = model.inputs.iter().map(|spec| small_input(&spec.ty)).collect::<Option<Vec<Value>>>() else {
        return;
    };
    if let Ok(outputs) = model.run(&inputs) {
        assert_eq!(outputs.len(), model.outputs.len(), "one value per graph output");
    }
}

/// A tensor of the input's type: symbolic dimensions are 2; nothing over 4,096 elements.
fn small_input(ty: &IoType) -> Option<Value> {
    let IoType::Tensor { elem: Some(elem), dims, .. } = ty else { return None };
    let shape: Vec<usize> = match dims {
        None => vec![2, 4],
        Some(dims) => dims.iter().map(|d| d.unwrap_or(2)).collect(),
    };
    let count = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d)).filter(|&n| n <= 4096)?;
    let pattern = |i: usize| [0.5, -1.0, 3.0, 0.0, 2.25][i % 5];
    let data = match elem {
        ElemType::F32 => Data::F32((0..count).map(|i| pattern(i) as f32).collect()),
        ElemType::F64 => Data::F64((0..count).map(pattern).collect()),
        ElemType::I64 => Data::I64((0..count).map(|i| pattern(i) as i64).collect()),
        ElemType::I32 => Data::I32((0..count).map(|i| pattern(i) as i32).collect()),
        ElemType::Bool => Data::Bool((0..count).map(|i| i % 2 == 0).collect()),
        ElemType::Str => Data::Str((0..count).map(|i| format!("v{}", i % 3)).collect()),
    };
    Some(Value::Tensor(Tensor::new(shape, data)))
}

/// The models the serving targets read for: named columns of each type (one required), a
/// bare ONNX file's positional matrix, and an all-optional numeric table.
fn schemas() -> [Schema; 3] {
    let column = |name: &str, mlflow_type: &str, required: bool| InputColumn {
        name: name.into(),
        mlflow_type: mlflow_type.into(),
        required,
    };
    [
        Schema::of(&Inputs::Named(vec![
            column("age", "long", true),
            column("income", "double", false),
            column("city", "string", false),
            column("member", "boolean", false),
        ])),
        Schema::of(&Inputs::Positional { width: Some(4), input: "X".into() }),
        Schema::of(&Inputs::Named(vec![column("a", "float", false), column("b", "integer", false)])),
    ]
}

/// A refusal must be the client's error (a 4xx): a body is never the server's fault.
fn client_error<T>(protocol: &str, result: Result<T, ServeError>) -> Option<T> {
    match result {
        Ok(value) => Some(value),
        Err(e) => {
            assert!(e.is_client_error(), "{protocol}: a body was answered {}: {}", e.status(), e.message);
            None
        }
    }
}

/// MLflow's `/invocations` body, read as JSON, as CSV and with other content types.
pub fn mlflow_invocations(data: &[u8]) {
    let content_types = [None, Some("application/json"), Some("text/csv; charset=utf-8"), Some("text/plain")];
    for schema in schemas() {
        for content_type in content_types {
            let mut headers = HeaderMap::new();
            if let Some(value) = content_type {
                headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(value));
            }
            if let Some(batch) = client_error("mlflow", mlflow::parse_body(&schema, &headers, data, MAX_ROWS)) {
                assert!(batch.num_rows() <= MAX_ROWS, "{} rows over the limit", batch.num_rows());
            }
        }
    }
}

/// The Open Inference Protocol's infer body, as JSON and, when bytes follow its last `}`, as
/// JSON plus the binary tensor extension (the header that says where the JSON ends).
pub fn oip_infer(data: &[u8]) {
    let json_end = data.iter().rposition(|&b| b == b'}').map(|p| p + 1).filter(|&end| end < data.len());
    for schema in schemas() {
        let mut headers = HeaderMap::new();
        if let Some(batch) = client_error("oip", oip::parse(&schema, &headers, data, MAX_ROWS).map(|(_, b)| b)) {
            assert!(batch.num_rows() <= MAX_ROWS, "{} rows over the limit", batch.num_rows());
        }
        if let Some(end) = json_end {
            headers.insert("inference-header-content-length", HeaderValue::from(end));
            let _ = client_error("oip binary", oip::parse(&schema, &headers, data, MAX_ROWS));
        }
    }
}

/// The seed article's `/predict/<model>` body, with and without a sticky-session field.
pub fn seed_predict(data: &[u8]) {
    for schema in schemas() {
        for sticky in [None, Some("user_id")] {
            if let Some(batch) = client_error("seed", seed::parse(&schema, data, MAX_ROWS, sticky)) {
                assert!(batch.num_rows() <= MAX_ROWS, "{} rows over the limit", batch.num_rows());
            }
        }
    }
}

/// A CSV file as `data add`, `data validate` and the drift commands read it: schema inferred,
/// every batch decoded (a bad value is an error naming its line).
pub fn csv_table(data: &[u8]) {
    use shipyard_data::table::{CsvOptions, Table};
    let Ok(mut file) = tempfile::Builder::new().suffix(".csv").tempfile() else { return };
    if file.write_all(data).and_then(|()| file.flush()).is_err() {
        return;
    }
    let Ok(mut table) = Table::open(file.path(), &CsvOptions::default()) else { return };
    if let Ok(batches) = table.read_all() {
        let columns = table.schema().fields().len();
        assert!(batches.iter().all(|b| b.num_columns() == columns), "a batch with another column count");
    }
}

/// The YAML a user writes: expectation suites, monitor configs, pipelines, gate policies and
/// MLflow's `MLmodel` file (which a model upload brings). Each is read or refused with a message.
pub fn yaml_specs(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let _ = shipyard_data::suite::Suite::from_yaml(text, "fuzz.yaml");
    let _ = shipyard_monitor::MonitorConfig::from_yaml(text, "fuzz.yaml");
    let _ = shipyard_promotion::GatePolicy::from_yaml(text, "fuzz.yaml");
    let Ok(dir) = tempfile::tempdir() else { return };
    let _ = shipyard_pipeline::Pipeline::from_yaml(text, "pipeline.yaml", dir.path());
    if std::fs::write(dir.path().join("MLmodel"), data).is_ok() {
        let _ = shipyard_runtime::ModelFile::read(dir.path());
    }
}
