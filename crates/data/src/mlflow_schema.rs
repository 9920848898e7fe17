//! A table's schema in MLflow's `mlflow_colspec` form, as MLflow records a dataset's schema
//! (`mlflow.data`): each column's name, MLflow type and whether it is required.

use serde_json::json;

/// MLflow's column type for an Arrow type.
pub fn mlflow_type(arrow: &arrow_schema::DataType) -> &'static str {
    use arrow_schema::DataType as T;
    match arrow {
        T::Int8 | T::Int16 | T::Int32 | T::UInt8 | T::UInt16 => "integer",
        T::Int64 | T::UInt32 | T::UInt64 => "long",
        T::Float16 | T::Float32 => "float",
        T::Float64 | T::Decimal32(..) | T::Decimal64(..) | T::Decimal128(..) | T::Decimal256(..) => "double",
        T::Boolean => "boolean",
        T::Date32 | T::Date64 | T::Timestamp(..) => "datetime",
        T::Binary | T::LargeBinary | T::BinaryView | T::FixedSizeBinary(_) => "binary",
        _ => "string",
    }
}

/// `{"mlflow_colspec": [...]}`: a column is required when its field is not nullable or
/// `required(name)` says so.
pub fn colspec(schema: &arrow_schema::Schema, required: impl Fn(&str) -> bool) -> serde_json::Value {
    json!({
        "mlflow_colspec": schema.fields().iter().map(|f| json!({
            "name": f.name(), "type": mlflow_type(f.data_type()), "required": !f.is_nullable() || required(f.name())
        })).collect::<Vec<_>>()
    })
}
