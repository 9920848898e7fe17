//! A small builder for dynamic SQL with `$N` placeholders.
//!
//! Searches assemble their `WHERE` and `ORDER BY` clauses from the parsed filter; every value is
//! bound, never spliced into the text. sqlx's own `QueryBuilder` picks the placeholder style from
//! the driver, which for `Any` is not what PostgreSQL expects, hence this builder: `$N` is what
//! both our dialects accept.

use sqlx::any::AnyArguments;
use sqlx::query::Query;
use sqlx::{Any, AssertSqlSafe};

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
    /// A NULL text value.
    NullText,
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
impl From<&str> for Arg {
    fn from(v: &str) -> Self {
        Arg::Text(v.to_owned())
    }
}
impl From<Option<String>> for Arg {
    fn from(v: Option<String>) -> Self {
        v.map_or(Arg::NullText, Arg::Text)
    }
}

/// SQL text plus its bound values, with the placeholders of the dialect.
///
/// SQLite gets anonymous `?` placeholders: sqlx-sqlite looks up each parameter's name with
/// `sqlite3_bind_parameter_name`, which walks a list of all named parameters, so `$N`
/// placeholders cost O(n²) to bind (two thirds of a 1,000-metric `log-batch` went there).
/// PostgreSQL gets `$N`. Either way a placeholder stands for one value at the place it is
/// written: callers write each placeholder once, in the order they register the values.
#[derive(Debug)]
pub(crate) struct Sql {
    pub(crate) text: String,
    args: Vec<Arg>,
    dialect: Dialect,
}

impl Sql {
    /// Starts with `text`.
    pub(crate) fn new(dialect: Dialect, text: impl Into<String>) -> Self {
        Sql {
            text: text.into(),
            args: Vec::new(),
            dialect,
        }
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
        values
            .into_iter()
            .map(|v| self.arg(v))
            .collect::<Vec<_>>()
            .join(", ")
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

    /// The sqlx query, with every value bound.
    pub(crate) fn query(self) -> Query<'static, Any, AnyArguments> {
        debug_assert!(
            self.dialect != Dialect::Sqlite || self.text.matches('?').count() >= self.args.len(),
            "fewer placeholders than values in: {}",
            self.text
        );
        let mut q = sqlx::query(AssertSqlSafe(self.text));
        for a in self.args {
            q = match a {
                Arg::Int(v) => q.bind(v),
                Arg::Float(v) => q.bind(v),
                Arg::Text(v) => q.bind(v),
                Arg::NullText => q.bind(None::<String>),
            };
        }
        q
    }
}

/// `$start, $start+1, ...` for `n` values already numbered from `start` (static queries whose
/// values are bound one by one; placeholders written once each, in order).
pub(crate) fn placeholders(dialect: Dialect, start: usize, n: usize) -> String {
    match dialect {
        Dialect::Sqlite => vec!["?"; n].join(", "),
        Dialect::Postgres => (start..start + n)
            .map(|i| format!("${i}"))
            .collect::<Vec<_>>()
            .join(", "),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_follow_the_dialect() {
        for (dialect, expect) in [
            (
                Dialect::Postgres,
                "SELECT 1 WHERE a = $1 AND b IN ($2, $3) VALUES ($4, $5)",
            ),
            (
                Dialect::Sqlite,
                "SELECT 1 WHERE a = ? AND b IN (?, ?) VALUES (?, ?)",
            ),
        ] {
            let mut s = Sql::new(dialect, "SELECT 1 WHERE a = ");
            let a = s.arg(5i64);
            s.push(&a).push(" AND b IN (");
            let list = s.args(["x", "y"]);
            s.push(&list).push(") VALUES ");
            s.push_tuple([Arg::Int(1), Arg::Float(2.0)]);
            assert_eq!(s.text, expect);
        }
        assert_eq!(placeholders(Dialect::Postgres, 4, 3), "$4, $5, $6");
        assert_eq!(placeholders(Dialect::Sqlite, 4, 3), "?, ?, ?");
    }
}
