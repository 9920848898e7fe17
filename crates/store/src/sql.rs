//! A small builder for dynamic SQL with `$N` placeholders.
//!
//! Searches assemble their `WHERE` and `ORDER BY` clauses from the parsed filter; every value is
//! bound, never spliced into the text. sqlx's own `QueryBuilder` picks the placeholder style from
//! the driver, which for `Any` is not what PostgreSQL expects, hence this builder: `$N` is what
//! both our dialects accept.

use sqlx::any::AnyArguments;
use sqlx::query::Query;
use sqlx::{Any, AssertSqlSafe};

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

/// SQL text plus its bound values.
#[derive(Debug, Default)]
pub(crate) struct Sql {
    pub(crate) text: String,
    args: Vec<Arg>,
}

impl Sql {
    /// Starts with `text`.
    pub(crate) fn new(text: impl Into<String>) -> Self {
        Sql {
            text: text.into(),
            args: Vec::new(),
        }
    }

    /// Appends text.
    pub(crate) fn push(&mut self, text: &str) -> &mut Self {
        self.text.push_str(text);
        self
    }

    /// Registers a value and returns its placeholder (`$N`).
    pub(crate) fn arg(&mut self, value: impl Into<Arg>) -> String {
        self.args.push(value.into());
        format!("${}", self.args.len())
    }

    /// Registers several values and returns `$a, $b, ...`.
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

    /// The sqlx query, with every value bound.
    pub(crate) fn query(self) -> Query<'static, Any, AnyArguments> {
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

/// `$start, $start+1, ...` for `n` values already numbered from `start`.
pub(crate) fn placeholders(start: usize, n: usize) -> String {
    (start..start + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_placeholders_in_order() {
        let mut s = Sql::new("SELECT 1 WHERE a = ");
        let a = s.arg(5i64);
        s.push(&a).push(" AND b IN (");
        let list = s.args(["x", "y"]);
        s.push(&list).push(")");
        assert_eq!(s.text, "SELECT 1 WHERE a = $1 AND b IN ($2, $3)");
        assert_eq!(placeholders(4, 3), "$4, $5, $6");
    }
}
