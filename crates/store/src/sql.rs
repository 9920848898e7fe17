//! SQL text with bound values, and the rows that come back, for both dialects.
//!
//! [`Sql`] is a statement plus its values. Static statements are written with `$1, $2, ...`
//! (numbered in order of first appearance, a number may repeat), which both SQLite and
//! PostgreSQL accept. Dynamic statements (searches, multi-row inserts) are built with
//! [`Sql::arg`] and [`Sql::push_tuple`], which write the dialect's placeholder where the value
//! goes: `?` for SQLite, `$N` for PostgreSQL. Every value is bound, never spliced into the text.
//!
//! [`Row`] is a fetched row, read by column name, the same for both backends.

use std::sync::Arc;

use shipyard_core::{Error, Result};

use crate::db::Dialect;

/// A value to bind.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Arg {
    /// A 64-bit integer.
    Int(i64),
    /// A double.
    Float(f64),
    /// Text.
    Text(String),
    /// NULL of an integer column (PostgreSQL binds NULLs with a type).
    NullInt,
    /// NULL of a text column.
    NullText,
    /// NULL of a double column.
    NullFloat,
}

impl From<i64> for Arg {
    fn from(v: i64) -> Self {
        Arg::Int(v)
    }
}
impl From<f64> for Arg {
    fn from(v: f64) -> Self {
        Arg::Float(v)
    }
}
impl From<String> for Arg {
    fn from(v: String) -> Self {
        Arg::Text(v)
    }
}
impl From<&String> for Arg {
    fn from(v: &String) -> Self {
        Arg::Text(v.clone())
    }
}
impl From<&str> for Arg {
    fn from(v: &str) -> Self {
        Arg::Text(v.to_owned())
    }
}
impl From<Option<i64>> for Arg {
    fn from(v: Option<i64>) -> Self {
        v.map_or(Arg::NullInt, Arg::Int)
    }
}
impl From<Option<f64>> for Arg {
    fn from(v: Option<f64>) -> Self {
        v.map_or(Arg::NullFloat, Arg::Float)
    }
}
impl From<Option<String>> for Arg {
    fn from(v: Option<String>) -> Self {
        v.map_or(Arg::NullText, Arg::Text)
    }
}
impl From<Option<&str>> for Arg {
    fn from(v: Option<&str>) -> Self {
        v.map_or(Arg::NullText, Into::into)
    }
}

impl rusqlite::ToSql for Arg {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{ToSqlOutput, ValueRef};
        Ok(ToSqlOutput::Borrowed(match self {
            Arg::Int(v) => ValueRef::Integer(*v),
            Arg::Float(v) => ValueRef::Real(*v),
            Arg::Text(v) => ValueRef::Text(v.as_bytes()),
            Arg::NullInt | Arg::NullText | Arg::NullFloat => ValueRef::Null,
        }))
    }
}

/// A statement and its values.
#[derive(Debug)]
pub(crate) struct Sql {
    pub(crate) text: String,
    pub(crate) args: Vec<Arg>,
    dialect: Dialect,
}

impl Sql {
    /// Starts a dynamic statement with `text`.
    pub(crate) fn new(dialect: Dialect, text: impl Into<String>) -> Self {
        Sql { text: text.into(), args: Vec::new(), dialect }
    }

    /// A static statement with `$N` placeholders and its values in order.
    pub(crate) fn with<const N: usize>(dialect: Dialect, text: &str, args: [Arg; N]) -> Self {
        Sql { text: text.to_owned(), args: args.into(), dialect }
    }

    /// Appends text.
    pub(crate) fn push(&mut self, text: &str) -> &mut Self {
        self.text.push_str(text);
        self
    }

    /// Registers a value and returns its placeholder, to be written exactly once, before the
    /// placeholder of any value registered later.
    pub(crate) fn arg(&mut self, value: impl Into<Arg>) -> String {
        self.args.push(value.into());
        match self.dialect {
            Dialect::Sqlite => "?".to_owned(),
            Dialect::Postgres => format!("${}", self.args.len()),
        }
    }

    /// Registers several values and returns `p1, p2, ...`.
    pub(crate) fn args<I, T>(&mut self, values: I) -> String
    where
        I: IntoIterator<Item = T>,
        T: Into<Arg>,
    {
        values.into_iter().map(|v| self.arg(v)).collect::<Vec<_>>().join(", ")
    }

    /// Appends a parenthesised tuple of values, `(p1, p2, ...)`, without intermediate strings
    /// (the hot path of batch inserts).
    pub(crate) fn push_tuple<const N: usize>(&mut self, values: [Arg; N]) -> &mut Self {
        self.text.push('(');
        for (i, v) in values.into_iter().enumerate() {
            if i > 0 {
                self.text.push_str(", ");
            }
            self.args.push(v);
            match self.dialect {
                Dialect::Sqlite => self.text.push('?'),
                Dialect::Postgres => {
                    use std::fmt::Write;
                    let _ = write!(self.text, "${}", self.args.len());
                }
            }
        }
        self.text.push(')');
        self
    }
}

/// A fetched value.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    Null,
    Int(i64),
    Float(f64),
    Text(String),
}

/// A type a [`Value`] can be read as.
pub(crate) trait FromValue: Sized {
    /// `None` when the value has another type.
    fn from_value(v: Value) -> Option<Self>;
}

impl FromValue for i64 {
    fn from_value(v: Value) -> Option<Self> {
        match v {
            Value::Int(i) => Some(i),
            _ => None,
        }
    }
}
impl FromValue for f64 {
    fn from_value(v: Value) -> Option<Self> {
        match v {
            Value::Float(f) => Some(f),
            Value::Int(i) => Some(i as f64),
            _ => None,
        }
    }
}
impl FromValue for String {
    fn from_value(v: Value) -> Option<Self> {
        match v {
            Value::Text(s) => Some(s),
            _ => None,
        }
    }
}
impl<T: FromValue> FromValue for Option<T> {
    fn from_value(v: Value) -> Option<Self> {
        match v {
            Value::Null => Some(None),
            other => T::from_value(other).map(Some),
        }
    }
}

/// A fetched row, read by column name.
#[derive(Debug, Clone)]
pub(crate) struct Row {
    pub(crate) names: Arc<[String]>,
    pub(crate) values: Vec<Value>,
}

impl Row {
    /// The value of column `name` as `T`, moved out of the row (which then holds NULL there):
    /// for large text read once, without a copy.
    pub(crate) fn take<T: FromValue>(&mut self, name: &str) -> Result<T> {
        let i = self
            .names
            .iter()
            .position(|n| n == name)
            .ok_or_else(|| Error::Internal(format!("no column {name} in the result")))?;
        let value = std::mem::replace(&mut self.values[i], Value::Null);
        T::from_value(value)
            .ok_or_else(|| Error::Internal(format!("column {name} does not hold a {}", std::any::type_name::<T>())))
    }

    /// The value of column `name` as `T`.
    pub(crate) fn get<T: FromValue>(&self, name: &str) -> Result<T> {
        let i = self
            .names
            .iter()
            .position(|n| n == name)
            .ok_or_else(|| Error::Internal(format!("no column {name} in the result")))?;
        T::from_value(self.values[i].clone()).ok_or_else(|| {
            Error::Internal(format!("column {name} holds {:?}, not a {}", self.values[i], std::any::type_name::<T>()))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_follow_the_dialect() {
        for (dialect, expect) in [
            (Dialect::Postgres, "SELECT 1 WHERE a = $1 AND b IN ($2, $3) VALUES ($4, $5)"),
            (Dialect::Sqlite, "SELECT 1 WHERE a = ? AND b IN (?, ?) VALUES (?, ?)"),
        ] {
            let mut s = Sql::new(dialect, "SELECT 1 WHERE a = ");
            let a = s.arg(5i64);
            s.push(&a).push(" AND b IN (");
            let list = s.args(["x", "y"]);
            s.push(&list).push(") VALUES ");
            s.push_tuple([Arg::Int(1), Arg::Float(2.0)]);
            assert_eq!(s.text, expect);
            assert_eq!(s.args.len(), 5);
        }
    }

    #[test]
    fn rows_read_by_name_with_checked_types() {
        let row = Row {
            names: vec!["a".to_owned(), "b".to_owned(), "c".to_owned()].into(),
            values: vec![Value::Int(3), Value::Null, Value::Text("x".into())],
        };
        assert_eq!(row.get::<i64>("a").unwrap(), 3);
        assert_eq!(row.get::<f64>("a").unwrap(), 3.0);
        assert_eq!(row.get::<Option<String>>("b").unwrap(), None);
        assert_eq!(row.get::<String>("c").unwrap(), "x");
        assert!(row.get::<i64>("c").is_err());
        assert!(row.get::<i64>("nope").is_err());
    }
}
