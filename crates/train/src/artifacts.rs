//! The files a training run stores: the model directory in MLflow's layout, and the evaluation
//! plots and tables.
//!
//! The model directory (`model/` under the run's artifacts, so `runs:/RUN_ID/model`) holds:
//! - `MLmodel`: flavor `shipyard` (the file, kind, task, format version), a signature with the
//!   input columns and types, and the input example's description, as MLflow writes them;
//! - `model.json`: the [`Model`];
//! - `model.onnx`: the same model in ONNX ([`crate::onnx`]);
//! - `input_example.json` (pandas `split` orient) and `serving_input_example.json` (the body
//!   `/invocations` takes).

use serde_json::{Value, json};

use crate::frame::{Features, MISSING_CODE, Task, Values};
use crate::metrics::ClassificationMetrics;
use crate::model::Model;

/// A file to store: its path relative to the run's artifact root, and its bytes.
pub type ArtifactFile = (String, Vec<u8>);

/// Rows of the input example.
pub const EXAMPLE_ROWS: usize = 5;

/// What the model directory's `MLmodel` records besides the model.
pub struct ModelMeta<'a> {
    pub run_id: &'a str,
    pub model_uuid: &'a str,
    /// `YYYY-MM-DD HH:MM:SS.ffffff`, UTC.
    pub utc_time_created: &'a str,
    pub shipyard_version: &'a str,
}

/// The example rows as JSON values (`null` for missing).
fn example_rows(example: &Features) -> Vec<Vec<Value>> {
    (0..example.rows.min(EXAMPLE_ROWS))
        .map(|r| {
            example
                .columns
                .iter()
                .map(|c| match c {
                    Values::Numeric(v) if v[r].is_nan() => Value::Null,
                    Values::Numeric(v) if v[r].fract() == 0.0 && v[r].abs() < 9e15 => json!(v[r] as i64),
                    Values::Numeric(v) => json!(v[r]),
                    Values::Categorical { codes, levels } => {
                        if codes[r] == MISSING_CODE {
                            Value::Null
                        } else {
                            json!(levels[codes[r] as usize])
                        }
                    }
                })
                .collect()
        })
        .collect()
}

/// The model directory's files under `model/`. `example` holds training rows; `optional[f]` is
/// true for features that had missing values in training (not `required` in the signature).
pub fn model_directory(model: &Model, meta: &ModelMeta, example: &Features, optional: &[bool]) -> Vec<ArtifactFile> {
    let inputs: Vec<Value> = model
        .features
        .iter()
        .enumerate()
        .map(|(i, f)| {
            json!({"type": f.input_type.mlflow_name(), "name": f.name, "required": !optional.get(i).copied().unwrap_or(false)})
        })
        .collect();
    let output_type = match model.task {
        Task::Regression => "double",
        Task::Classification if model.classes.iter().all(|c| c.parse::<i64>().is_ok()) => "long",
        Task::Classification => "string",
    };
    let outputs = json!([{"type": output_type, "name": model.target, "required": true}]);
    let quoted = |v: &Value| serde_json::to_string(&v.to_string()).unwrap_or_default();
    let mlmodel = format!(
        "artifact_path: model\n\
         flavors:\n  shipyard:\n    model_file: model.json\n    onnx_file: model.onnx\n    kind: {kind}\n    task: {task}\n    format_version: {fv}\n    shipyard_version: {sv}\n\
         model_uuid: {uuid}\n\
         run_id: {run}\n\
         saved_input_example_info:\n  artifact_path: input_example.json\n  pandas_orient: split\n  serving_input_path: serving_input_example.json\n  type: dataframe\n\
         signature:\n  inputs: {inputs}\n  outputs: {outputs}\n  params: null\n\
         utc_time_created: '{created}'\n",
        kind = model.kind,
        task = model.task.as_str(),
        fv = model.format_version,
        sv = meta.shipyard_version,
        uuid = meta.model_uuid,
        run = meta.run_id,
        inputs = quoted(&Value::Array(inputs)),
        outputs = quoted(&outputs),
        created = meta.utc_time_created,
    );
    let columns: Vec<&str> = example.specs.iter().map(|s| s.name.as_str()).collect();
    let rows = example_rows(example);
    let input_example = json!({"columns": columns, "data": rows});
    let serving = json!({"dataframe_split": input_example});
    vec![
        ("model/MLmodel".into(), mlmodel.into_bytes()),
        ("model/model.json".into(), serde_json::to_vec(model).unwrap_or_default()),
        ("model/model.onnx".into(), crate::onnx::export(model)),
        ("model/input_example.json".into(), input_example.to_string().into_bytes()),
        ("model/serving_input_example.json".into(), serde_json::to_vec_pretty(&serving).unwrap_or_default()),
    ]
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// The confusion matrix as JSON and as an SVG heat map (rows: true class, columns: predicted).
pub fn confusion_matrix_files(model: &Model, m: &ClassificationMetrics) -> Vec<ArtifactFile> {
    let labels: Vec<&str> = m.confusion_labels.iter().map(|&c| model.classes[c].as_str()).collect();
    let json =
        json!({"labels": labels, "matrix": m.confusion_matrix, "rows": "true class", "columns": "predicted class"});
    let k = labels.len();
    let cell = if k <= 10 { 48 } else { (480 / k).max(6) };
    let margin = 110;
    let size = margin + cell * k + 20;
    let max = m.confusion_matrix.iter().flatten().copied().max().unwrap_or(0).max(1) as f64;
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{size}\" height=\"{size}\" font-family=\"sans-serif\" font-size=\"11\">\
         <text x=\"{x}\" y=\"14\" text-anchor=\"middle\">predicted class</text>\
         <text x=\"14\" y=\"{x}\" text-anchor=\"middle\" transform=\"rotate(-90 14 {x})\">true class</text>",
        x = margin + cell * k / 2
    );
    for (i, label) in labels.iter().enumerate() {
        let c = margin + i * cell + cell / 2;
        svg += &format!("<text x=\"{c}\" y=\"{}\" text-anchor=\"middle\">{}</text>", margin - 6, escape(label));
        svg += &format!("<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>", margin - 6, c + 4, escape(label));
    }
    for (i, row) in m.confusion_matrix.iter().enumerate() {
        for (j, &count) in row.iter().enumerate() {
            let shade = (count as f64 / max * 200.0).round() as u8;
            let (x, y) = (margin + j * cell, margin + i * cell);
            let fill = format!("rgb({},{},{})", 255 - shade, 255 - shade / 2, 255);
            svg += &format!(
                "<rect x=\"{x}\" y=\"{y}\" width=\"{cell}\" height=\"{cell}\" fill=\"{fill}\" stroke=\"#fff\"/>"
            );
            if cell >= 24 {
                let color = if shade > 120 { "#fff" } else { "#000" };
                svg += &format!(
                    "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\" fill=\"{color}\">{count}</text>",
                    x + cell / 2,
                    y + cell / 2 + 4
                );
            }
        }
    }
    svg += "</svg>";
    vec![
        ("evaluation/confusion_matrix.json".into(), serde_json::to_vec_pretty(&json).unwrap_or_default()),
        ("evaluation/confusion_matrix.svg".into(), svg.into_bytes()),
    ]
}

/// Feature importances, largest first, as JSON and as an SVG bar chart (top 30).
pub fn importance_files(model: &Model) -> Vec<ArtifactFile> {
    let mut ranked: Vec<(&str, f64)> =
        model.features.iter().map(|f| f.name.as_str()).zip(model.feature_importances.iter().copied()).collect();
    ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(b.0)));
    let json = json!({
        "method": match model.body {
            crate::model::Body::Linear { .. } => "coefficient magnitude times feature standard deviation",
            crate::model::Body::Trees { .. } => "mean decrease in impurity (gain), normalised",
        },
        "importances": ranked.iter().map(|(n, v)| json!({"feature": n, "importance": v})).collect::<Vec<_>>(),
    });
    let shown = &ranked[..ranked.len().min(30)];
    let (label_w, bar_w, row_h) = (180, 320, 18);
    let height = 20 + row_h * shown.len();
    let max = shown.first().map_or(1.0, |s| s.1).max(1e-12);
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{height}\" font-family=\"sans-serif\" font-size=\"11\">",
        label_w + bar_w + 70
    );
    for (i, (name, v)) in shown.iter().enumerate() {
        let y = 10 + i * row_h;
        let w = (v / max * bar_w as f64).round();
        svg += &format!(
            "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text><rect x=\"{label_w}\" y=\"{}\" width=\"{w}\" height=\"{}\" fill=\"#4c78a8\"/><text x=\"{}\" y=\"{}\">{v:.4}</text>",
            label_w - 6,
            y + 12,
            escape(name),
            y + 2,
            row_h - 4,
            label_w as f64 + w + 4.0,
            y + 12
        );
    }
    svg += "</svg>";
    vec![
        ("evaluation/feature_importances.json".into(), serde_json::to_vec_pretty(&json).unwrap_or_default()),
        ("evaluation/feature_importances.svg".into(), svg.into_bytes()),
    ]
}
