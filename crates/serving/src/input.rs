//! Request values → the model's columns, as one Arrow record batch.
//!
//! Every protocol reads its body into a grid of [`Cell`]s (rows × the names the client used);
//! [`Schema::assemble`] matches those names to the model's columns, checks every value against
//! the column's type and builds the batch the engine reads. Errors name the column and the row
//! (counted from 1), never panic, and are client errors. The batch's Arrow types depend only on
//! the model, so requests for one model can be concatenated into one engine run (batching).

use std::collections::HashMap;
use std::sync::Arc;

use arrow_array::builder::{BooleanBuilder, Float64Builder, StringBuilder};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field};
use serde_json::Value;
use shipyard_runtime::Inputs;

use crate::error::ServeError;

/// What a column holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Number,
    Text,
    Bool,
}

impl Kind {
    fn of_mlflow(type_name: &str) -> Kind {
        match type_name {
            "string" | "binary" => Kind::Text,
            "boolean" => Kind::Bool,
            _ => Kind::Number,
        }
    }

    /// The Open Inference Protocol datatype of the column.
    pub fn oip_datatype(self) -> &'static str {
        match self {
            Kind::Number => "FP64",
            Kind::Text => "BYTES",
            Kind::Bool => "BOOL",
        }
    }

    fn arrow(self) -> DataType {
        match self {
            Kind::Number => DataType::Float64,
            Kind::Text => DataType::Utf8,
            Kind::Bool => DataType::Boolean,
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Kind::Number => "a number",
            Kind::Text => "a string",
            Kind::Bool => "true or false",
        }
    }
}

/// One column the model reads.
#[derive(Clone, Debug)]
pub struct Column {
    pub name: String,
    pub kind: Kind,
    /// Values may not be missing (the signature's `required`); MLflow's protocol also lets a
    /// request leave out a column that is not required.
    pub required: bool,
}

/// One value of a request, whatever the protocol carried it as.
#[derive(Clone, Copy, Debug)]
pub enum Cell<'a> {
    Null,
    Number(f64),
    Text(&'a str),
    Bool(bool),
    /// A JSON value that is none of the above (an array or an object).
    Other(&'a Value),
}

impl<'a> Cell<'a> {
    /// A JSON value as a cell; a one-element list is its element (a `[rows, 1]` tensor's
    /// values, as MLflow's tensor input gives a column).
    pub fn json(value: &'a Value) -> Cell<'a> {
        match value {
            Value::Array(items) if items.len() == 1 => Cell::json(&items[0]),
            Value::Null => Cell::Null,
            Value::Number(n) => n.as_f64().map_or(Cell::Other(value), Cell::Number),
            Value::String(s) => Cell::Text(s),
            Value::Bool(b) => Cell::Bool(*b),
            other => Cell::Other(other),
        }
    }

    fn show(self) -> String {
        match self {
            Cell::Null => "null".into(),
            Cell::Number(x) => x.to_string(),
            Cell::Text(s) => format!("{:?}", truncate(s, 40)),
            Cell::Bool(b) => b.to_string(),
            Cell::Other(v) => truncate(&v.to_string(), 40).to_owned(),
        }
    }
}

/// At most `max` characters of `s` (for error messages that quote a value).
pub(crate) fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// How a request's columns are matched to the model's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Extra {
    /// A column the model does not read is an error (the seed's and the v2 protocol).
    Refuse,
    /// Columns the model does not read are dropped, as MLflow's scoring server does.
    Ignore,
}

/// The columns a served model reads.
#[derive(Clone, Debug)]
pub struct Schema {
    /// Named columns, in signature order. Empty for a positional model.
    pub columns: Vec<Column>,
    /// A bare ONNX file: it takes the request's columns in order, as numbers.
    pub positional: bool,
    /// The positional model's width, when the file says.
    pub width: Option<usize>,
    /// The positional model's graph input: MLflow's tensor input names it
    /// (`{"inputs": {"X": [[...], ...]}}`).
    pub matrix_input: Option<String>,
    index: HashMap<String, usize>,
}

impl Schema {
    /// The schema of a model reading `inputs`.
    pub fn of(inputs: &Inputs) -> Schema {
        match inputs {
            Inputs::Named(cols) => {
                let columns: Vec<Column> = cols
                    .iter()
                    .map(|c| Column {
                        name: c.name.clone(),
                        kind: Kind::of_mlflow(&c.mlflow_type),
                        required: c.required,
                    })
                    .collect();
                let index = columns.iter().enumerate().map(|(i, c)| (c.name.clone(), i)).collect();
                Schema { columns, positional: false, width: None, matrix_input: None, index }
            }
            Inputs::Positional { width, input } => Schema {
                columns: Vec::new(),
                positional: true,
                width: *width,
                matrix_input: Some(input.clone()),
                index: HashMap::new(),
            },
        }
    }

    /// A positional model's input value in an object keyed by the graph input's name.
    fn matrix_value<'v>(&self, map: &'v serde_json::Map<String, Value>) -> Option<&'v Value> {
        self.matrix_input.as_deref().and_then(|name| map.get(name)).filter(|v| v.is_array())
    }

    /// What a positional model says to input keyed by names that are not its graph input.
    fn positional_refusal(&self, what: &str) -> ServeError {
        let input = self.matrix_input.as_deref().unwrap_or("input");
        ServeError::invalid(format!(
            "{what}: this model reads its columns by position and has no column names; send rows as arrays, \
             or its input by name: {{\"{input}\": [[...], ...]}}"
        ))
    }

    /// The rows of a DataFrame whose one column, named as a positional model's graph input,
    /// holds a row per cell; `None` when the request is not that.
    fn matrix_rows_of_column(
        &self,
        names: Option<&[&str]>,
        rows: &[Value],
        what: &str,
    ) -> Result<Option<Vec<Value>>, ServeError> {
        let (Some([name]), Some(input)) = (names, self.matrix_input.as_deref()) else { return Ok(None) };
        if *name != input {
            return Ok(None);
        }
        rows.iter()
            .enumerate()
            .map(|(r, row)| match row.as_array().map(Vec::as_slice) {
                Some([cell @ Value::Array(_)]) => Ok(cell.clone()),
                _ => Err(ServeError::invalid(format!(
                    "{what}: row {} of column '{input}' must hold the row's values as a list",
                    r + 1
                ))),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }

    /// The number of columns a row holds, when known.
    pub fn width(&self) -> Option<usize> {
        if self.positional { self.width } else { Some(self.columns.len()) }
    }

    /// The column names in order (`f0..` for a positional model of known width).
    pub fn names(&self) -> Vec<String> {
        if self.positional {
            (0..self.width.unwrap_or(0)).map(|j| format!("f{j}")).collect()
        } else {
            self.columns.iter().map(|c| c.name.clone()).collect()
        }
    }

    /// What the column `name` holds (numbers for every column of a positional model).
    pub fn kind_of(&self, name: &str) -> Option<Kind> {
        if self.positional {
            return Some(Kind::Number);
        }
        self.index.get(name).map(|&k| self.columns[k].kind)
    }

    /// Whether `name` is one of the model's columns.
    pub fn has_column(&self, name: &str) -> bool {
        self.index.contains_key(name)
    }

    /// Builds the batch for `rows` rows whose columns the client called `names`; `cell(r, j)`
    /// is row `r` of the client's column `j`. `names` may be `None` for rows given in the
    /// model's own column order.
    pub fn assemble<'a>(
        &self,
        names: Option<&[&str]>,
        width: usize,
        rows: usize,
        cell: impl Fn(usize, usize) -> Cell<'a>,
        extra: Extra,
    ) -> Result<RecordBatch, ServeError> {
        if self.positional {
            return self.assemble_positional(names, width, rows, cell);
        }
        // For each model column, the client's column that fills it.
        let sources: Vec<Option<usize>> = match names {
            None => {
                if width != self.columns.len() {
                    return Err(ServeError::invalid(format!(
                        "each row must hold {} values ({}), got {width}",
                        self.columns.len(),
                        self.names().join(", ")
                    )));
                }
                (0..width).map(Some).collect()
            }
            Some(names) => {
                let mut sources = vec![None; self.columns.len()];
                let mut unknown = Vec::new();
                for (j, name) in names.iter().enumerate() {
                    match self.index.get(*name) {
                        Some(&k) if sources[k].is_some() => {
                            return Err(ServeError::invalid(format!("column '{name}' is given twice")));
                        }
                        Some(&k) => sources[k] = Some(j),
                        None => unknown.push(*name),
                    }
                }
                if extra == Extra::Refuse && !unknown.is_empty() {
                    return Err(ServeError::invalid(format!(
                        "unknown column{} {} (the model reads: {})",
                        if unknown.len() > 1 { "s" } else { "" },
                        unknown.iter().map(|n| format!("'{n}'")).collect::<Vec<_>>().join(", "),
                        self.names().join(", ")
                    )));
                }
                let missing: Vec<&str> = self
                    .columns
                    .iter()
                    .zip(&sources)
                    // MLflow lets a column the signature marks optional be left out; the
                    // strict protocols want every column, whose values may still be null.
                    .filter(|(c, s)| s.is_none() && (c.required || extra == Extra::Refuse))
                    .map(|(c, _)| c.name.as_str())
                    .collect();
                if !missing.is_empty() {
                    return Err(ServeError::invalid(format!(
                        "missing column{} {} (the model reads: {})",
                        if missing.len() > 1 { "s" } else { "" },
                        missing.iter().map(|n| format!("'{n}'")).collect::<Vec<_>>().join(", "),
                        self.names().join(", ")
                    )));
                }
                sources
            }
        };
        let mut fields = Vec::with_capacity(self.columns.len());
        let mut arrays = Vec::with_capacity(self.columns.len());
        for (column, source) in self.columns.iter().zip(&sources) {
            fields.push(Field::new(column.name.clone(), column.kind.arrow(), true));
            arrays.push(build_column(&column.name, column.kind, rows, |r| source.map_or(Cell::Null, |j| cell(r, j)))?);
        }
        batch(fields, arrays, rows)
    }

    fn assemble_positional<'a>(
        &self,
        names: Option<&[&str]>,
        width: usize,
        rows: usize,
        cell: impl Fn(usize, usize) -> Cell<'a>,
    ) -> Result<RecordBatch, ServeError> {
        if let Some(w) = self.width
            && w != width
        {
            return Err(ServeError::invalid(format!("the model takes {w} columns per row, got {width}")));
        }
        let mut fields = Vec::with_capacity(width);
        let mut arrays = Vec::with_capacity(width);
        for j in 0..width {
            let name = names.and_then(|n| n.get(j)).map_or_else(|| format!("f{j}"), |n| (*n).to_owned());
            arrays.push(build_column(&name, Kind::Number, rows, |r| cell(r, j))?);
            fields.push(Field::new(name, DataType::Float64, true));
        }
        batch(fields, arrays, rows)
    }
}

fn batch(fields: Vec<Field>, arrays: Vec<ArrayRef>, rows: usize) -> Result<RecordBatch, ServeError> {
    let schema = Arc::new(arrow_schema::Schema::new(fields));
    RecordBatch::try_new_with_options(
        schema,
        arrays,
        &arrow_array::RecordBatchOptions::new().with_row_count(Some(rows)),
    )
    .map_err(|e| ServeError::internal(format!("assembling the input: {e}")))
}

fn wrong(name: &str, kind: Kind, row: usize, cell: Cell) -> ServeError {
    ServeError::invalid(format!("row {}, column '{name}': expected {}, got {}", row + 1, kind.describe(), cell.show()))
}

/// One column of `rows` values.
fn build_column<'a>(
    name: &str,
    kind: Kind,
    rows: usize,
    cell: impl Fn(usize) -> Cell<'a>,
) -> Result<ArrayRef, ServeError> {
    Ok(match kind {
        Kind::Number => {
            let mut b = Float64Builder::with_capacity(rows);
            for r in 0..rows {
                match cell(r) {
                    Cell::Number(x) => b.append_value(x),
                    Cell::Null => b.append_null(),
                    other => return Err(wrong(name, kind, r, other)),
                }
            }
            Arc::new(b.finish())
        }
        Kind::Text => {
            let mut b = StringBuilder::with_capacity(rows, rows * 8);
            for r in 0..rows {
                match cell(r) {
                    Cell::Text(s) => b.append_value(s),
                    Cell::Null => b.append_null(),
                    other => return Err(wrong(name, kind, r, other)),
                }
            }
            Arc::new(b.finish())
        }
        Kind::Bool => {
            let mut b = BooleanBuilder::with_capacity(rows);
            for r in 0..rows {
                match cell(r) {
                    Cell::Bool(x) => b.append_value(x),
                    Cell::Null => b.append_null(),
                    other => return Err(wrong(name, kind, r, other)),
                }
            }
            Arc::new(b.finish())
        }
    })
}

/// Refuses more rows than `limit`.
pub fn check_rows(rows: usize, limit: usize) -> Result<(), ServeError> {
    if rows > limit {
        return Err(ServeError::too_large(format!("{rows} rows is more than this server takes per request ({limit})")));
    }
    if rows == 0 {
        return Err(ServeError::malformed("the request holds no rows"));
    }
    Ok(())
}

/// Rows given as JSON arrays (`[[1, 2], [3, 4]]`), or scalars for a one-column model.
pub fn from_rows(
    schema: &Schema,
    names: Option<&[&str]>,
    rows: &[Value],
    what: &str,
    extra: Extra,
    limit: usize,
) -> Result<RecordBatch, ServeError> {
    check_rows(rows.len(), limit)?;
    // MLflow's DataFrame of one tensor column: `columns: ["X"], data: [[[1, 2]], [[3, 4]]]`.
    if let Some(rows) = schema.matrix_rows_of_column(names, rows, what)? {
        return from_rows(schema, None, &rows, what, extra, limit);
    }
    let width = match &rows[0] {
        Value::Array(first) => first.len(),
        _ => 1,
    };
    for (r, row) in rows.iter().enumerate() {
        let len = match row {
            Value::Array(values) => values.len(),
            Value::Object(_) => {
                return Err(ServeError::malformed(format!("{what}: row {} is an object; rows are arrays", r + 1)));
            }
            _ => 1,
        };
        if len != width {
            return Err(ServeError::invalid(format!(
                "{what}: row {} holds {len} values, row 1 holds {width}; every row must hold one value per column",
                r + 1
            )));
        }
    }
    if let Some(names) = names
        && names.len() != width
    {
        return Err(ServeError::invalid(format!("{what}: {} columns are named, the rows hold {width}", names.len())));
    }
    schema.assemble(
        names,
        width,
        rows.len(),
        |r, j| match &rows[r] {
            Value::Array(values) => Cell::json(&values[j]),
            scalar => Cell::json(scalar),
        },
        extra,
    )
}

/// Rows given as JSON objects (`[{"a": 1, "b": 2}]`); a key missing from a row is a missing value.
pub fn from_records(
    schema: &Schema,
    records: &[Value],
    what: &str,
    extra: Extra,
    limit: usize,
) -> Result<RecordBatch, ServeError> {
    check_rows(records.len(), limit)?;
    if schema.positional {
        // MLflow's tensor records: `[{"X": [1, 2]}, {"X": [3, 4]}]`.
        let rows: Option<Vec<Value>> = records
            .iter()
            .map(|r| match r.as_object() {
                Some(map) if map.len() == 1 => schema.matrix_value(map).cloned(),
                _ => None,
            })
            .collect();
        return match rows {
            Some(rows) => from_rows(schema, None, &rows, what, extra, limit),
            None => Err(schema.positional_refusal(what)),
        };
    }
    let mut names: Vec<&str> = Vec::new();
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for (r, record) in records.iter().enumerate() {
        let Value::Object(map) = record else {
            return Err(ServeError::malformed(format!("{what}: record {} is not an object", r + 1)));
        };
        for key in map.keys() {
            if !seen.contains_key(key.as_str()) {
                seen.insert(key, names.len());
                names.push(key);
            }
        }
    }
    schema.assemble(
        Some(&names),
        names.len(),
        records.len(),
        |r, j| match &records[r] {
            Value::Object(map) => map.get(names[j]).map_or(Cell::Null, Cell::json),
            _ => Cell::Null,
        },
        extra,
    )
}

/// Columns given as JSON arrays by name (`{"a": [1, 3], "b": [2, 4]}`).
pub fn from_columns(
    schema: &Schema,
    columns: &serde_json::Map<String, Value>,
    what: &str,
    extra: Extra,
    limit: usize,
) -> Result<RecordBatch, ServeError> {
    if schema.positional {
        // MLflow's tensor input by name: `{"X": [[1, 2], [3, 4]]}`.
        return match schema.matrix_value(columns) {
            Some(Value::Array(rows)) if columns.len() == 1 => from_rows(schema, None, rows, what, extra, limit),
            _ => Err(schema.positional_refusal(what)),
        };
    }
    let names: Vec<&str> = columns.keys().map(String::as_str).collect();
    let values: Vec<&[Value]> = columns
        .iter()
        .map(|(name, v)| match v {
            Value::Array(values) => Ok(values.as_slice()),
            _ => Err(ServeError::malformed(format!("{what}: '{name}' must be a list of values"))),
        })
        .collect::<Result<_, _>>()?;
    let rows = values.first().map_or(0, |v| v.len());
    check_rows(rows, limit)?;
    if let Some((name, v)) = names.iter().zip(&values).find(|(_, v)| v.len() != rows) {
        return Err(ServeError::invalid(format!(
            "{what}: '{name}' holds {} values, '{}' holds {rows}; columns must be equally long",
            v.len(),
            names[0]
        )));
    }
    schema.assemble(Some(&names), names.len(), rows, |r, j| Cell::json(&values[j][r]), extra)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{Array, Float64Array};
    use serde_json::json;

    fn schema() -> Schema {
        let columns = vec![
            Column { name: "age".into(), kind: Kind::Number, required: true },
            Column { name: "city".into(), kind: Kind::Text, required: false },
        ];
        let index = columns.iter().enumerate().map(|(i, c)| (c.name.clone(), i)).collect();
        Schema { columns, positional: false, width: None, matrix_input: None, index }
    }

    #[test]
    fn records_fill_missing_optional_columns_with_nulls() {
        let records = vec![json!({"age": 30}), json!({"age": 40.5, "city": "Oslo"})];
        let batch = from_records(&schema(), &records, "records", Extra::Refuse, 100).unwrap();
        assert_eq!(batch.num_rows(), 2);
        let age = batch.column(0).as_any().downcast_ref::<Float64Array>().unwrap();
        assert_eq!(age.value(1), 40.5);
        assert!(batch.column(1).is_null(0));
    }

    #[test]
    fn errors_name_the_column_and_row() {
        let rows = vec![json!([30, "Oslo"]), json!(["x", "Rome"])];
        let e = from_rows(&schema(), None, &rows, "data", Extra::Refuse, 100).unwrap_err();
        assert_eq!(e.message, "row 2, column 'age': expected a number, got \"x\"");
        let e = from_records(&schema(), &[json!({"city": "Oslo"})], "records", Extra::Refuse, 100).unwrap_err();
        assert!(e.message.starts_with("missing column 'age'"), "{}", e.message);
        let e = from_records(&schema(), &[json!({"age": 1, "zip": 2})], "records", Extra::Refuse, 100).unwrap_err();
        assert!(e.message.starts_with("unknown column 'zip'"), "{}", e.message);
        assert!(from_records(&schema(), &[json!({"age": 1, "zip": 2})], "r", Extra::Ignore, 100).is_ok());
        let e = from_rows(&schema(), None, &[json!([1])], "data", Extra::Refuse, 100).unwrap_err();
        assert!(e.message.contains("must hold 2 values"), "{}", e.message);
        let e = from_rows(&schema(), None, &[json!([1, "a"]), json!([1])], "data", Extra::Refuse, 100).unwrap_err();
        assert!(e.message.contains("row 2 holds 1 values"), "{}", e.message);
    }

    #[test]
    fn row_limit_and_empty_requests_are_refused() {
        let rows = vec![json!([1, "a"]); 3];
        assert_eq!(
            from_rows(&schema(), None, &rows, "data", Extra::Refuse, 2).unwrap_err().kind,
            crate::error::ErrorKind::TooLarge
        );
        assert_eq!(
            from_rows(&schema(), None, &[], "data", Extra::Refuse, 2).unwrap_err().kind,
            crate::error::ErrorKind::Malformed
        );
    }

    #[test]
    fn columns_must_be_equally_long() {
        let cols = json!({"age": [1, 2], "city": ["a"]});
        let e = from_columns(&schema(), cols.as_object().unwrap(), "inputs", Extra::Refuse, 100).unwrap_err();
        assert!(e.message.contains("equally long"), "{}", e.message);
    }
}
