//! Python models in the serving path: a version's pool of workers ([`shipyard_pyfunc::Pool`])
//! as an engine, the columns it reads, and its answers as [`Output`].
//!
//! The columns: the MLflow signature's, when it names them; else the estimator's own
//! `feature_names_in_` (a scikit-learn model fitted on a DataFrame, as the seed's is), which a
//! positional request (`{"data": [[...]]}`) fills in that order; else `n_features_in_` values
//! by position, handed to the model as a 2-D array. The answers: a column of labels (with the
//! classifier's `classes_` when it has them), a column of values, or several value columns;
//! anything else only `/invocations` can carry, which answers through MLflow's own scoring
//! function in the worker, byte for byte as `mlflow models serve`.

use std::path::PathBuf;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float32Type, Float64Type, Int32Type, Int64Type};
use arrow_array::{Array, RecordBatch};
use arrow_schema::DataType;
use shipyard_pyfunc::{Answer, ModelInfo, Pool, PoolError, PoolSettings, Request, Saved};
use shipyard_runtime::onnx::{Data, Tensor};
use shipyard_runtime::{GraphOutput, GraphOutputs, InputColumn, Inputs, ModelFile, Output, PredictError, PythonFlavor};

use crate::error::{ErrorKind, ServeError};

/// The name of a Python model's output in the Open Inference Protocol (MLServer's).
pub const OUTPUT_NAME: &str = "predict";

/// A model version served by Python workers.
pub struct PythonModel {
    pub pool: Pool,
    pub flavor: PythonFlavor,
    /// What requests are read into.
    pub inputs: Inputs,
    /// The classifier's classes, as text.
    pub classes: Option<Vec<String>>,
    /// The model takes a 2-D array rather than a DataFrame.
    positional: bool,
    /// The model's files, kept while workers may need to load them again.
    _files: Option<tempfile::TempDir>,
}

impl PythonModel {
    /// Starts the workers for the model in `path`; `files` is the temporary folder holding it,
    /// if any, kept as long as the model is served.
    pub async fn start(
        path: PathBuf,
        files: Option<tempfile::TempDir>,
        model_file: ModelFile,
        flavor: PythonFlavor,
        settings: PoolSettings,
        label: String,
    ) -> Result<PythonModel, PoolError> {
        let requirements = std::fs::read_to_string(path.join("requirements.txt")).unwrap_or_default();
        let saved = Saved {
            python: flavor.python_version.clone(),
            pins: shipyard_pyfunc::versions::parse_requirements(&requirements),
        };
        let pool = Pool::start(path, saved, settings, label).await?;
        let (inputs, positional) = inputs_of(model_file.inputs, &pool.info);
        let classes = pool.info.classes.as_ref().map(|c| c.iter().map(label_text).collect());
        Ok(PythonModel { pool, flavor, inputs, classes, positional, _files: files })
    }

    /// Predicts the rows of `batch`.
    pub async fn predict(&self, batch: RecordBatch) -> Result<Output, ServeError> {
        let answer = self.pool.call(Request::Predict { batch, positional: self.positional }).await;
        match answer.map_err(serve_error)? {
            Answer::Table(table) => output_of(&table, self.classes.as_deref()).map_err(ServeError::from),
            Answer::Json(_) | Answer::Invoked { .. } => Err(ServeError::internal(
                "the model's answer is not a table of labels or values; ask /invocations, which answers it as MLflow does",
            )),
        }
    }

    /// Predicts the rows of a table that may hold more columns than the model reads (a file
    /// with its target, ids): the model's named columns are taken from it, in the model's
    /// order (each one needed); a positional model gets every column.
    pub async fn predict_table(&self, table: &RecordBatch) -> Result<Output, ServeError> {
        let batch = match &self.inputs {
            Inputs::Named(columns) => {
                let schema = table.schema();
                let mut indices = Vec::with_capacity(columns.len());
                for column in columns {
                    let i = schema.index_of(&column.name).map_err(|_| {
                        ServeError::invalid(format!("the input has no column '{}', which the model reads", column.name))
                    })?;
                    indices.push(i);
                }
                table.project(&indices).map_err(|e| ServeError::invalid(e.to_string()))?
            }
            Inputs::Positional { .. } => table.clone(),
        };
        self.predict(batch).await
    }

    /// An MLflow `/invocations` request, answered by MLflow's scoring function in the worker:
    /// the status, the content type and the body.
    pub async fn invoke(&self, content_type: &str, body: bytes::Bytes) -> Result<(u16, String, Vec<u8>), ServeError> {
        let answer = self.pool.call(Request::Invoke { content_type: content_type.to_owned(), body }).await;
        match answer.map_err(serve_error)? {
            Answer::Invoked { status, mimetype, body } => Ok((status, mimetype, body)),
            _ => Err(ServeError::internal("the worker answered /invocations with something else")),
        }
    }

    /// The Open Inference Protocol datatype of the answer.
    pub fn output_datatype(&self) -> &'static str {
        match &self.pool.info.classes {
            Some(c) if c.iter().all(|v| v.is_i64() || v.is_u64()) => "INT64",
            Some(c) if c.iter().all(serde_json::Value::is_boolean) => "BOOL",
            Some(_) => "BYTES",
            None => "FP64",
        }
    }
}

/// A pool's failure as the serving error of its status: the model refusing the input is the
/// client's (422); busy, lost or broken workers are 503; a deadline 504.
fn serve_error(e: PoolError) -> ServeError {
    match e {
        PoolError::Refused(m) => ServeError::invalid(m),
        PoolError::Overloaded(m) | PoolError::WorkerLost(m) | PoolError::Broken(m) => ServeError::overloaded(m),
        PoolError::Timeout(m) => ServeError { kind: ErrorKind::Timeout, message: m },
        PoolError::Model(m) | PoolError::Start(m) => ServeError::internal(format!("the model failed: {m}")),
    }
}

/// A class label as text (`1`, `yes`), as Shipyard's outputs carry labels.
fn label_text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The columns requests are read into, and whether the model takes them as a 2-D array.
fn inputs_of(signature: Option<Vec<InputColumn>>, info: &ModelInfo) -> (Inputs, bool) {
    if let Some(columns) = signature {
        // Values themselves are checked by MLflow's schema enforcement in the worker.
        return (Inputs::Named(columns), false);
    }
    if let Some(names) = &info.feature_names {
        let columns = names
            .iter()
            .map(|n| InputColumn { name: n.clone(), mlflow_type: "double".into(), required: false })
            .collect();
        return (Inputs::Named(columns), false);
    }
    (Inputs::Positional { width: info.n_features, input: "input".into() }, true)
}

/// One answer column as labels (text), or `None` when it holds numbers that are not labels.
fn labels_of(column: &dyn Array) -> Option<Vec<String>> {
    let text = |i: usize, f: &dyn Fn(usize) -> String| if column.is_null(i) { String::new() } else { f(i) };
    let n = column.len();
    match column.data_type() {
        DataType::Utf8 => Some((0..n).map(|i| text(i, &|i| column.as_string::<i32>().value(i).to_owned())).collect()),
        DataType::LargeUtf8 => {
            Some((0..n).map(|i| text(i, &|i| column.as_string::<i64>().value(i).to_owned())).collect())
        }
        DataType::Boolean => Some((0..n).map(|i| text(i, &|i| column.as_boolean().value(i).to_string())).collect()),
        DataType::Int64 => {
            Some((0..n).map(|i| text(i, &|i| column.as_primitive::<Int64Type>().value(i).to_string())).collect())
        }
        DataType::Int32 => {
            Some((0..n).map(|i| text(i, &|i| column.as_primitive::<Int32Type>().value(i).to_string())).collect())
        }
        _ => None,
    }
}

/// One answer column as numbers, when it holds numbers.
fn values_of(column: &dyn Array) -> Option<Vec<f64>> {
    let cast = arrow_cast_f64(column)?;
    Some((0..cast.len()).map(|i| if cast.is_null(i) { f64::NAN } else { cast.value(i) }).collect())
}

fn arrow_cast_f64(column: &dyn Array) -> Option<arrow_array::Float64Array> {
    let n = column.len();
    let from = |f: &dyn Fn(usize) -> f64| -> arrow_array::Float64Array {
        (0..n).map(|i| (!column.is_null(i)).then(|| f(i))).collect()
    };
    Some(match column.data_type() {
        DataType::Float64 => column.as_primitive::<Float64Type>().clone(),
        DataType::Float32 => from(&|i| f64::from(column.as_primitive::<Float32Type>().value(i))),
        DataType::Int64 => from(&|i| column.as_primitive::<Int64Type>().value(i) as f64),
        DataType::Int32 => from(&|i| f64::from(column.as_primitive::<Int32Type>().value(i))),
        _ => return None,
    })
}

/// The typed tensor of one answer column, for the Open Inference Protocol.
fn tensor_of(column: &dyn Array, labels: Option<&[String]>) -> Option<Tensor> {
    let n = column.len();
    let data = match column.data_type() {
        DataType::Int64 | DataType::Int32 => Data::I64(values_of(column)?.into_iter().map(|v| v as i64).collect()),
        DataType::Boolean => Data::Bool((0..n).map(|i| column.as_boolean().value(i)).collect()),
        DataType::Utf8 | DataType::LargeUtf8 => Data::Str(labels?.to_vec()),
        DataType::Float32 | DataType::Float64 => Data::F64(values_of(column)?),
        _ => return None,
    };
    Some(Tensor::new(vec![n], data))
}

/// A Python model's tabular answer as Shipyard's output: one column of labels (a classifier's
/// `classes` when it has them) or values; or several columns of values.
pub fn output_of(table: &RecordBatch, classes: Option<&[String]>) -> Result<Output, PredictError> {
    let not_tabular = || {
        let types: Vec<String> =
            table.schema().fields().iter().map(|f| format!("{} ({})", f.name(), f.data_type())).collect();
        PredictError::Model(format!(
            "the model answered columns {} that /predict and /v2 cannot carry; ask /invocations, which answers as MLflow does",
            types.join(", ")
        ))
    };
    if table.num_columns() == 1 {
        let column = table.column(0).as_ref();
        let floats = matches!(column.data_type(), DataType::Float64 | DataType::Float32);
        if let (false, Some(labels)) = (floats, labels_of(column)) {
            let graph = tensor_of(column, Some(&labels))
                .map(|tensor| GraphOutputs(vec![GraphOutput { name: OUTPUT_NAME.into(), tensor, map_keys: None }]));
            return Ok(Output::Classes {
                classes: classes.map(<[String]>::to_vec).unwrap_or_default(),
                labels,
                probabilities: Vec::new(),
                graph,
            });
        }
        let values = values_of(column).ok_or_else(not_tabular)?;
        let graph = tensor_of(column, None)
            .map(|tensor| GraphOutputs(vec![GraphOutput { name: OUTPUT_NAME.into(), tensor, map_keys: None }]));
        return Ok(Output::Values { columns: 1, values, graph });
    }
    let columns: Vec<Vec<f64>> =
        table.columns().iter().map(|c| values_of(c.as_ref())).collect::<Option<_>>().ok_or_else(not_tabular)?;
    let rows = table.num_rows();
    let k = columns.len();
    let mut values = Vec::with_capacity(rows * k);
    for r in 0..rows {
        values.extend(columns.iter().map(|c| c[r]));
    }
    let graph = GraphOutputs(vec![GraphOutput {
        name: OUTPUT_NAME.into(),
        tensor: Tensor::new(vec![rows, k], Data::F64(values.clone())),
        map_keys: None,
    }]);
    Ok(Output::Values { columns: k, values, graph: Some(graph) })
}

/// MLflow's `{"predictions": [...]}` answer as Shipyard's output, when it is a flat list of
/// labels or numbers (what the prediction log keeps); `None` otherwise.
pub fn output_of_mlflow_answer(body: &[u8], classes: Option<&[String]>) -> Option<Output> {
    let answer: serde_json::Value = serde_json::from_slice(body).ok()?;
    let items = answer.get("predictions")?.as_array()?;
    if items.iter().all(|v| v.is_f64()) {
        let values = items.iter().filter_map(serde_json::Value::as_f64).collect();
        return Some(Output::Values { columns: 1, values, graph: None });
    }
    if items.iter().all(|v| v.is_string() || v.is_i64() || v.is_u64() || v.is_boolean()) {
        let labels = items.iter().map(label_text).collect();
        let classes = classes.map(<[String]>::to_vec).unwrap_or_default();
        return Some(Output::Classes { classes, labels, probabilities: Vec::new(), graph: None });
    }
    None
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::{Float64Array, Int64Array, StringArray};

    use super::*;

    fn table(columns: Vec<(&str, Arc<dyn Array>)>) -> RecordBatch {
        RecordBatch::try_from_iter(columns).expect("a batch")
    }

    #[test]
    fn mlflow_answers_become_outputs_when_flat() {
        let labels = output_of_mlflow_answer(br#"{"predictions": [0, 1]}"#, None).unwrap();
        assert!(matches!(labels, Output::Classes { labels, .. } if labels == ["0", "1"]));
        let values = output_of_mlflow_answer(br#"{"predictions": [0.5, 1.0]}"#, None).unwrap();
        assert!(matches!(values, Output::Values { values, .. } if values == [0.5, 1.0]));
        assert!(output_of_mlflow_answer(br#"{"predictions": [{"a": 1}]}"#, None).is_none());
    }

    #[test]
    fn answers_become_labels_or_values_with_their_types() {
        let ints = table(vec![("predictions", Arc::new(Int64Array::from(vec![0, 1, 1])))]);
        let classes = ["0".to_owned(), "1".to_owned()];
        let Output::Classes { classes: c, labels, probabilities, graph } = output_of(&ints, Some(&classes)).unwrap()
        else {
            panic!("not classes")
        };
        assert_eq!((c, labels, probabilities.len()), (classes.to_vec(), vec!["0".into(), "1".into(), "1".into()], 0));
        assert_eq!(graph.unwrap().0[0].tensor.data, Data::I64(vec![0, 1, 1]));

        let text = table(vec![("predictions", Arc::new(StringArray::from(vec!["a", "b"])))]);
        assert!(matches!(output_of(&text, None).unwrap(), Output::Classes { labels, .. } if labels == ["a", "b"]));

        let floats = table(vec![("predictions", Arc::new(Float64Array::from(vec![1.5, -2.0])))]);
        assert!(
            matches!(output_of(&floats, None).unwrap(), Output::Values { columns: 1, values, .. } if values == [1.5, -2.0])
        );

        let two = table(vec![
            ("0", Arc::new(Float64Array::from(vec![1.0, 2.0])) as _),
            ("1", Arc::new(Int64Array::from(vec![3, 4])) as _),
        ]);
        assert!(
            matches!(output_of(&two, None).unwrap(), Output::Values { columns: 2, values, .. } if values == [1.0, 3.0, 2.0, 4.0])
        );

        let mixed = table(vec![
            ("x", Arc::new(Float64Array::from(vec![1.0])) as _),
            ("s", Arc::new(StringArray::from(vec!["a"])) as _),
        ]);
        let err = output_of(&mixed, None).unwrap_err().to_string();
        assert!(err.contains("s (Utf8)") && err.contains("/invocations"), "{err}");
    }
}
