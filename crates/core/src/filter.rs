//! The search-filter and order-by language of MLflow's search endpoints.
//!
//! A filter is a conjunction of comparisons, `metrics.acc > 0.9 AND params.model = 'rf'`. Each
//! comparison names an entity and a key (`metrics.`, `params.`, `tags.`, `attributes.`,
//! `datasets.`, with MLflow's aliases; a bare name is an attribute), a comparator, and a value: a
//! number, a quoted string, or a parenthesised list of strings. Keys with spaces, dots or dashes
//! are backquoted or double-quoted: ``tags.`mlflow.runName` ``.
//!
//! [`parse`] turns the text into [`Comparison`]s without knowing what is being searched; the
//! `*_filter` functions then check the comparisons against what each search accepts (which keys,
//! which comparators, which value types), with MLflow's messages. Errors are
//! `INVALID_PARAMETER_VALUE` and name the offending token.

use crate::error::{Error, Result};

/// What a comparison's key refers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entity {
    /// A metric (its latest value).
    Metric,
    /// A param.
    Param,
    /// A tag.
    Tag,
    /// A built-in field of the searched entity (`run_name`, `status`, `name`, ...).
    Attribute,
    /// A field of a dataset the run used (`name`, `digest`, `context`).
    Dataset,
}

impl Entity {
    /// The canonical prefix, for messages.
    pub fn prefix(self) -> &'static str {
        match self {
            Entity::Metric => "metric",
            Entity::Param => "parameter",
            Entity::Tag => "tag",
            Entity::Attribute => "attribute",
            Entity::Dataset => "dataset",
        }
    }

    fn from_prefix(prefix: &str) -> Option<Self> {
        Some(match prefix {
            "metric" | "metrics" => Entity::Metric,
            "param" | "params" | "parameter" | "parameters" => Entity::Param,
            "tag" | "tags" => Entity::Tag,
            "attribute" | "attributes" | "attr" | "run" => Entity::Attribute,
            "dataset" | "datasets" => Entity::Dataset,
            _ => return None,
        })
    }
}

/// A comparator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `=`
    Eq,
    /// `!=`
    Ne,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `LIKE` (case-sensitive, `%` and `_` wildcards)
    Like,
    /// `ILIKE` (case-insensitive)
    ILike,
    /// `IN (...)`
    In,
    /// `NOT IN (...)`
    NotIn,
    /// `IS NULL`
    IsNull,
    /// `IS NOT NULL`
    IsNotNull,
}

impl Op {
    /// The comparator as written in SQL.
    pub fn as_sql(self) -> &'static str {
        match self {
            Op::Eq => "=",
            Op::Ne => "!=",
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Gt => ">",
            Op::Ge => ">=",
            Op::Like => "LIKE",
            Op::ILike => "ILIKE",
            Op::In => "IN",
            Op::NotIn => "NOT IN",
            Op::IsNull => "IS NULL",
            Op::IsNotNull => "IS NOT NULL",
        }
    }

    /// Whether this is one of `= != < <= > >=`.
    pub fn is_numeric(self) -> bool {
        matches!(self, Op::Eq | Op::Ne | Op::Lt | Op::Le | Op::Gt | Op::Ge)
    }
}

/// The right-hand side of a comparison.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A quoted string.
    Str(String),
    /// A number, with its text as written.
    Num(f64, String),
    /// A parenthesised list of quoted strings.
    List(Vec<String>),
    /// No value (`IS NULL`, `IS NOT NULL`).
    None,
}

impl Value {
    fn describe(&self) -> String {
        match self {
            Value::Str(s) => format!("'{s}'"),
            Value::Num(_, raw) => raw.clone(),
            Value::List(items) => {
                format!("({})", items.iter().map(|i| format!("'{i}'")).collect::<Vec<_>>().join(", "))
            }
            Value::None => String::new(),
        }
    }
}

/// One comparison of a filter.
#[derive(Debug, Clone, PartialEq)]
pub struct Comparison {
    /// What the key refers to.
    pub entity: Entity,
    /// The key (unquoted).
    pub key: String,
    /// The comparator.
    pub op: Op,
    /// The value.
    pub value: Value,
}

impl Comparison {
    /// The value as a string (for string comparisons).
    pub fn str_value(&self) -> Option<&str> {
        match &self.value {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The value as a number (for numeric comparisons).
    pub fn num_value(&self) -> Option<f64> {
        match &self.value {
            Value::Num(n, _) => Some(*n),
            _ => None,
        }
    }

    /// The values of an `IN` list.
    pub fn list_value(&self) -> Option<&[String]> {
        match &self.value {
            Value::List(l) => Some(l),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    /// An identifier, possibly `entity.key`, with the key already unquoted.
    Ident {
        entity: Option<String>,
        key: String,
        raw: String,
    },
    Str(String),
    Num(f64, String),
    Op(&'static str),
    Word(String),
    LParen,
    RParen,
    Comma,
}

impl Token {
    fn text(&self) -> String {
        match self {
            Token::Ident { raw, .. } => raw.clone(),
            Token::Str(s) => format!("'{s}'"),
            Token::Num(_, raw) => raw.clone(),
            Token::Op(o) => (*o).to_owned(),
            Token::Word(w) => w.clone(),
            Token::LParen => "(".into(),
            Token::RParen => ")".into(),
            Token::Comma => ",".into(),
        }
    }
}

fn invalid(msg: impl Into<String>) -> Error {
    Error::invalid(msg)
}

/// Reads a quoted run starting at `chars[i]` (the quote). Returns the content and the index after
/// the closing quote. A doubled quote inside stands for one.
fn read_quoted(chars: &[char], i: usize, input: &str) -> Result<(String, usize)> {
    let quote = chars[i];
    let mut out = String::new();
    let mut j = i + 1;
    while j < chars.len() {
        if chars[j] == quote {
            if j + 1 < chars.len() && chars[j + 1] == quote && quote != '`' {
                out.push(quote);
                j += 2;
                continue;
            }
            return Ok((out, j + 1));
        }
        out.push(chars[j]);
        j += 1;
    }
    Err(invalid(format!(
        "Invalid filter '{input}': unclosed quote {quote} starting at {}",
        chars[i..].iter().take(30).collect::<String>()
    )))
}

const KEYWORDS: &[&str] = &["AND", "OR", "NOT", "IN", "IS", "NULL", "LIKE", "ILIKE"];

fn tokenize(input: &str) -> Result<Vec<Token>> {
    let chars: Vec<char> = input.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        match c {
            '(' => {
                tokens.push(Token::LParen);
                i += 1;
            }
            ')' => {
                tokens.push(Token::RParen);
                i += 1;
            }
            ',' => {
                tokens.push(Token::Comma);
                i += 1;
            }
            '\'' | '"' => {
                let (s, next) = read_quoted(&chars, i, input)?;
                // A double-quoted run followed by `.` begins a quoted-entity identifier in SQL,
                // which MLflow does not accept; as a value it is a string.
                tokens.push(Token::Str(s));
                i = next;
            }
            '`' => {
                let (key, next) = read_quoted(&chars, i, input)?;
                let raw: String = chars[i..next].iter().collect();
                tokens.push(Token::Ident { entity: None, key, raw });
                i = next;
            }
            '=' => {
                tokens.push(Token::Op("="));
                i += if chars.get(i + 1) == Some(&'=') { 2 } else { 1 };
            }
            '!' if chars.get(i + 1) == Some(&'=') => {
                tokens.push(Token::Op("!="));
                i += 2;
            }
            '<' => match chars.get(i + 1) {
                Some('=') => {
                    tokens.push(Token::Op("<="));
                    i += 2;
                }
                Some('>') => {
                    tokens.push(Token::Op("!="));
                    i += 2;
                }
                _ => {
                    tokens.push(Token::Op("<"));
                    i += 1;
                }
            },
            '>' => {
                if chars.get(i + 1) == Some(&'=') {
                    tokens.push(Token::Op(">="));
                    i += 2;
                } else {
                    tokens.push(Token::Op(">"));
                    i += 1;
                }
            }
            c if c.is_ascii_digit()
                || ((c == '-' || c == '+' || c == '.')
                    && chars.get(i + 1).is_some_and(|n| n.is_ascii_digit() || *n == '.')) =>
            {
                let start = i;
                i += 1;
                while i < chars.len() {
                    let d = chars[i];
                    let exp_sign = (d == '-' || d == '+') && matches!(chars[i - 1], 'e' | 'E');
                    if d.is_ascii_digit() || d == '.' || d == 'e' || d == 'E' || exp_sign {
                        i += 1;
                    } else {
                        break;
                    }
                }
                let raw: String = chars[start..i].iter().collect();
                // `1abc` is not a number: glue letters on and let it fail as a token below.
                if i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                    while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_' || chars[i] == '.') {
                        i += 1;
                    }
                    let raw: String = chars[start..i].iter().collect();
                    tokens.push(Token::Ident { entity: None, key: raw.clone(), raw });
                    continue;
                }
                let value = raw
                    .parse::<f64>()
                    .map_err(|_| invalid(format!("Invalid filter '{input}': '{raw}' is not a number")))?;
                tokens.push(Token::Num(value, raw));
            }
            c if c.is_alphabetic() || c == '_' => {
                let start = i;
                while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_' || chars[i] == '.') {
                    i += 1;
                }
                let word: String = chars[start..i].iter().collect();
                let upper = word.to_ascii_uppercase();
                if KEYWORDS.contains(&upper.as_str()) {
                    tokens.push(Token::Word(upper));
                    continue;
                }
                // `entity.` followed directly by a quoted key.
                if word.ends_with('.') && i < chars.len() && matches!(chars[i], '`' | '"' | '\'') {
                    let (key, next) = read_quoted(&chars, i, input)?;
                    let raw: String = chars[start..next].iter().collect();
                    let entity = word.trim_end_matches('.').to_owned();
                    tokens.push(Token::Ident { entity: Some(entity), key, raw });
                    i = next;
                    continue;
                }
                match word.split_once('.') {
                    Some((entity, key)) => tokens.push(Token::Ident {
                        entity: Some(entity.to_owned()),
                        key: key.to_owned(),
                        raw: word.clone(),
                    }),
                    None => tokens.push(Token::Ident { entity: None, key: word.clone(), raw: word }),
                }
            }
            other => {
                return Err(invalid(format!(
                    "Invalid filter '{input}': unexpected character '{other}' at position {i}"
                )));
            }
        }
    }
    Ok(tokens)
}

/// Parses a filter into its comparisons. An empty or blank filter has none.
pub fn parse(input: &str) -> Result<Vec<Comparison>> {
    let tokens = tokenize(input)?;
    let mut out = Vec::new();
    let mut pos = 0;
    let err_at = |pos: usize, what: &str| -> Error {
        let near = tokens.get(pos).map(Token::text).unwrap_or_else(|| "end of filter".into());
        invalid(format!("Invalid filter '{input}': {what} near '{near}'"))
    };
    while pos < tokens.len() {
        if !out.is_empty() {
            match &tokens[pos] {
                Token::Word(w) if w == "AND" => pos += 1,
                Token::Word(w) if w == "OR" => {
                    return Err(invalid(format!(
                        "Invalid filter '{input}': 'OR' is not supported, only 'AND' joins comparisons"
                    )));
                }
                _ => return Err(err_at(pos, "expected 'AND' between comparisons")),
            }
        }
        let (entity_word, key, raw_ident) = match tokens.get(pos) {
            Some(Token::Ident { entity, key, raw }) => (entity.clone(), key.clone(), raw.clone()),
            _ => return Err(err_at(pos, "expected an identifier such as metrics.acc")),
        };
        pos += 1;
        let entity = match &entity_word {
            None => Entity::Attribute,
            Some(e) => Entity::from_prefix(e).ok_or_else(|| {
                invalid(format!(
                    "Invalid filter '{input}': invalid entity type '{e}' in '{raw_ident}'. Valid values are \
                     ['metric', 'parameter', 'tag', 'attribute', 'dataset']"
                ))
            })?,
        };
        if key.is_empty() {
            return Err(invalid(format!("Invalid filter '{input}': '{raw_ident}' has an empty key")));
        }
        let op = match tokens.get(pos) {
            Some(Token::Op(o)) => {
                pos += 1;
                match *o {
                    "=" => Op::Eq,
                    "!=" => Op::Ne,
                    "<" => Op::Lt,
                    "<=" => Op::Le,
                    ">" => Op::Gt,
                    _ => Op::Ge,
                }
            }
            Some(Token::Word(w)) if w == "LIKE" => {
                pos += 1;
                Op::Like
            }
            Some(Token::Word(w)) if w == "ILIKE" => {
                pos += 1;
                Op::ILike
            }
            Some(Token::Word(w)) if w == "IN" => {
                pos += 1;
                Op::In
            }
            Some(Token::Word(w)) if w == "NOT" && matches!(tokens.get(pos + 1), Some(Token::Word(x)) if x == "IN") => {
                pos += 2;
                Op::NotIn
            }
            Some(Token::Word(w)) if w == "IS" => match (tokens.get(pos + 1), tokens.get(pos + 2)) {
                (Some(Token::Word(n)), _) if n == "NULL" => {
                    pos += 2;
                    Op::IsNull
                }
                (Some(Token::Word(n)), Some(Token::Word(m))) if n == "NOT" && m == "NULL" => {
                    pos += 3;
                    Op::IsNotNull
                }
                _ => return Err(err_at(pos, "expected 'IS NULL' or 'IS NOT NULL'")),
            },
            _ => {
                return Err(err_at(pos, &format!("expected a comparator after '{raw_ident}'")));
            }
        };
        let value = match op {
            Op::IsNull | Op::IsNotNull => Value::None,
            Op::In | Op::NotIn => {
                if tokens.get(pos) != Some(&Token::LParen) {
                    return Err(err_at(pos, "expected a parenthesised list of quoted strings after IN"));
                }
                pos += 1;
                let mut items = Vec::new();
                loop {
                    match tokens.get(pos) {
                        Some(Token::Str(s)) => items.push(s.clone()),
                        _ => return Err(err_at(pos, "expected a quoted string in the IN list")),
                    }
                    pos += 1;
                    match tokens.get(pos) {
                        Some(Token::Comma) => pos += 1,
                        Some(Token::RParen) => {
                            pos += 1;
                            break;
                        }
                        _ => return Err(err_at(pos, "expected ',' or ')' in the IN list")),
                    }
                }
                Value::List(items)
            }
            _ => match tokens.get(pos) {
                Some(Token::Str(s)) => {
                    pos += 1;
                    Value::Str(s.clone())
                }
                Some(Token::Num(n, raw)) => {
                    pos += 1;
                    Value::Num(*n, raw.clone())
                }
                Some(Token::Ident { raw, .. }) => {
                    return Err(invalid(format!(
                        "Invalid filter '{input}': expected a number or a quoted string after \
                         '{raw_ident} {}', got '{raw}'",
                        op.as_sql()
                    )));
                }
                _ => {
                    return Err(err_at(pos, &format!("expected a value after '{raw_ident} {}'", op.as_sql())));
                }
            },
        };
        out.push(Comparison { entity, key, op, value });
    }
    check_size(input, &out)?;
    Ok(out)
}

/// Most comparisons in one filter: each becomes SQL (a subquery for a param or tag), and the
/// databases refuse or crawl far beyond (SQLite's expression depth is 1,000).
pub const MAX_COMPARISONS: usize = 200;
/// Most values in a filter's `IN` lists: each is a bound variable (SQLite allows 32,766 per
/// statement, PostgreSQL 65,535).
pub const MAX_LIST_VALUES: usize = 10_000;
/// Longest `LIKE` pattern, in bytes (SQLite's own limit).
pub const MAX_PATTERN_BYTES: usize = 50_000;

/// Refuses a filter larger than the databases take, naming the limit, before any SQL is built.
fn check_size(input: &str, comparisons: &[Comparison]) -> Result<()> {
    let shown: String = input.chars().take(80).collect();
    if comparisons.len() > MAX_COMPARISONS {
        return Err(invalid(format!(
            "Invalid filter '{shown}...': {} comparisons, at most {MAX_COMPARISONS} are allowed",
            comparisons.len()
        )));
    }
    let listed: usize = comparisons.iter().filter_map(Comparison::list_value).map(<[String]>::len).sum();
    if listed > MAX_LIST_VALUES {
        return Err(invalid(format!(
            "Invalid filter '{shown}...': {listed} values in IN lists, at most {MAX_LIST_VALUES} are allowed"
        )));
    }
    for c in comparisons.iter().filter(|c| matches!(c.op, Op::Like | Op::ILike)) {
        if let Value::Str(pattern) = &c.value
            && pattern.len() > MAX_PATTERN_BYTES
        {
            return Err(invalid(format!(
                "Invalid filter '{shown}...': a LIKE pattern of {} bytes, at most {MAX_PATTERN_BYTES} are allowed",
                pattern.len()
            )));
        }
    }
    Ok(())
}

/// What a search accepts for one kind of key.
struct KeyRule {
    ops: &'static [Op],
    numeric: bool,
}

const NUMERIC_OPS: &[Op] = &[Op::Eq, Op::Ne, Op::Lt, Op::Le, Op::Gt, Op::Ge];
const STRING_OPS: &[Op] = &[Op::Eq, Op::Ne, Op::Like, Op::ILike, Op::In, Op::NotIn];
const KV_OPS: &[Op] = &[Op::Eq, Op::Ne, Op::Like, Op::ILike, Op::IsNull, Op::IsNotNull];

fn check(input: &str, c: &Comparison, rule: &KeyRule, what: &str) -> Result<()> {
    if !rule.ops.contains(&c.op) {
        let valid: Vec<&str> = rule.ops.iter().map(|o| o.as_sql()).collect();
        return Err(invalid(format!(
            "Invalid comparator '{}' for {what} '{}' in filter '{input}'. Only the following are valid: {}",
            c.op.as_sql(),
            c.key,
            valid.join(", ")
        )));
    }
    match (&c.value, rule.numeric) {
        (Value::None, _) | (Value::List(_), false) => Ok(()),
        (Value::Num(..), true) => Ok(()),
        (Value::Str(_), false) => Ok(()),
        (v, true) => Err(invalid(format!(
            "Expected numeric value type for {what} '{}' in filter '{input}'. Found {}",
            c.key,
            v.describe()
        ))),
        (v, false) => Err(invalid(format!(
            "Expected a quoted string value for {what} '{}' in filter '{input}' (e.g. 'my-value'). Got value {}",
            c.key,
            v.describe()
        ))),
    }
}

/// Checks an attribute comparison against the searched entity's attributes (name, numeric).
fn check_attribute(input: &str, c: &Comparison, attributes: &[(&str, bool)]) -> Result<()> {
    let Some((_, numeric)) = attributes.iter().find(|(k, _)| *k == c.key) else {
        let valid: Vec<&str> = attributes.iter().map(|(k, _)| *k).collect();
        return Err(invalid(format!(
            "Invalid attribute key '{}' specified in filter '{input}'. Valid keys are {}",
            c.key,
            valid.join(", ")
        )));
    };
    let ops = if *numeric { NUMERIC_OPS } else { STRING_OPS };
    check(input, c, &KeyRule { ops, numeric: *numeric }, "attribute")
}

/// Maps MLflow's alternate attribute names to the canonical one.
fn canonical_run_attribute(key: &str) -> &str {
    match key {
        "created" | "Created" => "start_time",
        "run name" | "Run name" | "Run Name" => "run_name",
        "run_uuid" => "run_id",
        other => other,
    }
}

/// The run attributes a filter may name: (name, numeric).
pub const RUN_ATTRIBUTES: &[(&str, bool)] = &[
    ("run_id", false),
    ("run_name", false),
    ("status", false),
    ("user_id", false),
    ("artifact_uri", false),
    ("lifecycle_stage", false),
    ("start_time", true),
    ("end_time", true),
];

/// Parses and checks a `search_runs` filter.
pub fn run_filter(input: &str) -> Result<Vec<Comparison>> {
    let mut comparisons = parse(input)?;
    for c in &mut comparisons {
        match c.entity {
            Entity::Metric => check(input, c, &KeyRule { ops: NUMERIC_OPS, numeric: true }, "metric")?,
            Entity::Param => check(input, c, &KeyRule { ops: KV_OPS, numeric: false }, "parameter")?,
            Entity::Tag => check(input, c, &KeyRule { ops: KV_OPS, numeric: false }, "tag")?,
            Entity::Attribute => {
                c.key = canonical_run_attribute(&c.key).to_owned();
                check_attribute(input, c, RUN_ATTRIBUTES)?;
            }
            Entity::Dataset => {
                if !["name", "digest", "context"].contains(&c.key.as_str()) {
                    return Err(invalid(format!(
                        "Invalid dataset key '{}' specified in filter '{input}'. Valid keys are name, digest, context",
                        c.key
                    )));
                }
                check(input, c, &KeyRule { ops: STRING_OPS, numeric: false }, "dataset")?;
            }
        }
    }
    Ok(comparisons)
}

/// Parses and checks a filter over string attributes and tags (experiments, registered models,
/// model versions, logged models). `attributes` lists (name, numeric); `allow` lists the
/// entities besides attributes that may appear.
pub fn attribute_filter(input: &str, attributes: &[(&str, bool)], allow: &[Entity]) -> Result<Vec<Comparison>> {
    let comparisons = parse(input)?;
    for c in &comparisons {
        match c.entity {
            Entity::Attribute => check_attribute(input, c, attributes)?,
            e if !allow.contains(&e) => {
                return Err(invalid(format!(
                    "Invalid entity type '{}' in filter '{input}': this search accepts {}",
                    e.prefix(),
                    std::iter::once("attribute").chain(allow.iter().map(|a| a.prefix())).collect::<Vec<_>>().join(", ")
                )));
            }
            Entity::Metric => check(input, c, &KeyRule { ops: NUMERIC_OPS, numeric: true }, "metric")?,
            Entity::Param => check(input, c, &KeyRule { ops: KV_OPS, numeric: false }, "parameter")?,
            Entity::Tag => check(input, c, &KeyRule { ops: KV_OPS, numeric: false }, "tag")?,
            Entity::Dataset => check(input, c, &KeyRule { ops: STRING_OPS, numeric: false }, "dataset")?,
        }
    }
    Ok(comparisons)
}

/// One `order_by` clause.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderBy {
    /// What the key refers to.
    pub entity: Entity,
    /// The key.
    pub key: String,
    /// Ascending (the default) or descending.
    pub ascending: bool,
}

/// Parses an order-by clause such as `metrics.acc DESC` or ``tags.`a b` ASC``.
/// `attributes` lists the orderable attributes; `allow` the other entities accepted.
pub fn order_by(input: &str, attributes: &[&str], allow: &[Entity]) -> Result<OrderBy> {
    let tokens = tokenize(input)?;
    let bad = || {
        invalid(format!(
            "Invalid order_by clause '{input}'. Could not be parsed: expected an identifier optionally followed by ASC or DESC"
        ))
    };
    let (entity, key) = match tokens.first() {
        Some(Token::Ident { entity, key, raw }) => {
            let e = match entity {
                None => Entity::Attribute,
                Some(e) => Entity::from_prefix(e).ok_or_else(|| {
                    invalid(format!("Invalid order_by clause '{input}': invalid entity type in '{raw}'"))
                })?,
            };
            (e, key.clone())
        }
        _ => return Err(bad()),
    };
    let ascending = match tokens.get(1) {
        None => true,
        Some(Token::Ident { entity: None, key, .. }) if key.eq_ignore_ascii_case("ASC") => true,
        Some(Token::Ident { entity: None, key, .. }) if key.eq_ignore_ascii_case("DESC") => false,
        _ => return Err(bad()),
    };
    if tokens.len() > 2 {
        return Err(bad());
    }
    let key = if entity == Entity::Attribute { canonical_run_attribute(&key).to_owned() } else { key };
    match entity {
        Entity::Attribute if !attributes.contains(&key.as_str()) => Err(invalid(format!(
            "Invalid order_by clause '{input}': invalid attribute key '{key}'. Valid keys are {}",
            attributes.join(", ")
        ))),
        Entity::Attribute => Ok(OrderBy { entity, key, ascending }),
        e if allow.contains(&e) => Ok(OrderBy { entity, key, ascending }),
        e => {
            Err(invalid(format!("Invalid order_by clause '{input}': ordering by {} is not supported here", e.prefix())))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn one(input: &str) -> Comparison {
        let mut v = run_filter(input).unwrap();
        assert_eq!(v.len(), 1, "{input}");
        v.remove(0)
    }

    #[test]
    fn parses_the_documented_forms() {
        let v = run_filter("metrics.acc > 0.5 and params.model = 'rf'").unwrap();
        assert_eq!(
            v[0],
            Comparison { entity: Entity::Metric, key: "acc".into(), op: Op::Gt, value: Value::Num(0.5, "0.5".into()) }
        );
        assert_eq!(
            v[1],
            Comparison { entity: Entity::Param, key: "model".into(), op: Op::Eq, value: Value::Str("rf".into()) }
        );
        assert_eq!(one("tags.`mlflow.runName` = \"x\"").key, "mlflow.runName");
        assert_eq!(one("tag.\"a b\" != 'y'").key, "a b");
        assert_eq!(one("run_name LIKE 'foo%'").op, Op::Like);
        assert_eq!(one("attributes.status IN ('FINISHED', 'RUNNING')").list_value().unwrap().len(), 2);
        assert_eq!(one("attribute.run_id NOT IN ('a')").op, Op::NotIn);
        assert_eq!(one("created >= 1700000000000").key, "start_time");
        assert_eq!(one("metrics.loss <= -1.5e-3").num_value(), Some(-1.5e-3));
        assert_eq!(one("params.p IS NULL").op, Op::IsNull);
        assert_eq!(one("tags.t IS NOT NULL").op, Op::IsNotNull);
        assert_eq!(one("params.x ILIKE '%A%'").op, Op::ILike);
        assert_eq!(one("datasets.name = 'train'").entity, Entity::Dataset);
        assert_eq!(one("params.`it's` = 'it''s'").str_value(), Some("it's"));
        assert!(run_filter("").unwrap().is_empty());
        assert!(run_filter("   ").unwrap().is_empty());
    }

    #[test]
    fn rejects_with_the_offending_token() {
        let cases = [
            ("metrics.acc > 'a'", "Expected numeric value"),
            ("params.x > '1'", "Invalid comparator '>'"),
            ("foo.bar = 1", "invalid entity type 'foo'"),
            ("metrics.acc >", "expected a value"),
            ("a = 1 OR b = 2", "'OR' is not supported"),
            ("params.x = 'abc", "unclosed quote"),
            ("params.x = abc", "got 'abc'"),
            ("metrics.acc > 1 metrics.b < 2", "expected 'AND'"),
            ("attributes.nope = 'x'", "Invalid attribute key 'nope'"),
            ("params.x = 1", "Expected a quoted string"),
            ("status IN 'a'", "parenthesised list"),
            ("metrics.a @ 1", "unexpected character '@'"),
            ("start_time > 'x'", "Expected numeric value"),
        ];
        for (input, expect) in cases {
            let err = run_filter(input).unwrap_err();
            assert!(matches!(err, Error::InvalidParameter(_)));
            assert!(err.to_string().contains(expect), "{input}: {err}");
        }
    }

    #[test]
    fn filters_larger_than_the_databases_take_are_refused_naming_the_limit() {
        let many = vec!["attributes.status = 'RUNNING'"; MAX_COMPARISONS + 1].join(" AND ");
        assert!(parse(&many).unwrap_err().to_string().contains("at most 200 are allowed"));
        assert_eq!(parse(&vec!["params.a = 'x'"; MAX_COMPARISONS].join(" AND ")).unwrap().len(), MAX_COMPARISONS);
        let items: Vec<String> = (0..=MAX_LIST_VALUES).map(|i| format!("'{i}'")).collect();
        let listed = format!("attributes.run_id IN ({})", items.join(","));
        assert!(parse(&listed).unwrap_err().to_string().contains("values in IN lists"));
        let pattern = format!("params.a LIKE '{}'", "_".repeat(MAX_PATTERN_BYTES + 1));
        assert!(parse(&pattern).unwrap_err().to_string().contains("a LIKE pattern of 50001 bytes"));
        assert!(parse(&format!("params.a LIKE '{}'", "_".repeat(MAX_PATTERN_BYTES))).is_ok());
    }

    #[test]
    fn order_by_clauses() {
        let attrs = ["start_time", "end_time", "run_name", "status", "run_id"];
        let all = [Entity::Metric, Entity::Param, Entity::Tag];
        assert_eq!(
            order_by("metrics.acc DESC", &attrs, &all).unwrap(),
            OrderBy { entity: Entity::Metric, key: "acc".into(), ascending: false }
        );
        assert!(order_by("attributes.start_time asc", &attrs, &all).unwrap().ascending);
        assert_eq!(order_by("tags.`a b`", &attrs, &all).unwrap().key, "a b");
        assert!(order_by("metrics.acc DESC extra", &attrs, &all).is_err());
        assert!(order_by("attributes.nope", &attrs, &all).is_err());
        assert!(order_by("metrics.acc", &attrs, &[]).is_err());
    }

    fn key_strategy() -> impl Strategy<Value = String> {
        "[a-zA-Z_][a-zA-Z0-9_]{0,10}"
    }

    proptest! {
        /// Any conjunction of well-formed comparisons parses back into exactly those comparisons.
        #[test]
        fn generated_filters_round_trip(
            parts in proptest::collection::vec((0u8..4, key_strategy(), any::<i32>(), "[a-zA-Z0-9 %_.-]{0,12}"), 1..5)
        ) {
            let mut text = Vec::new();
            let mut expect = Vec::new();
            for (kind, key, num, s) in &parts {
                match kind {
                    0 => { text.push(format!("metrics.`{key}` >= {num}")); expect.push((Entity::Metric, key.clone(), Op::Ge, Value::Num(f64::from(*num), num.to_string()))); }
                    1 => { text.push(format!("params.{key} = '{s}'")); expect.push((Entity::Param, key.clone(), Op::Eq, Value::Str(s.clone()))); }
                    2 => { text.push(format!("tags.\"{key}\" LIKE '{s}'")); expect.push((Entity::Tag, key.clone(), Op::Like, Value::Str(s.clone()))); }
                    _ => { text.push(format!("attributes.run_name != '{s}'")); expect.push((Entity::Attribute, "run_name".into(), Op::Ne, Value::Str(s.clone()))); }
                }
            }
            let parsed = run_filter(&text.join(" AND ")).unwrap();
            prop_assert_eq!(parsed.len(), expect.len());
            for (c, (e, k, o, v)) in parsed.iter().zip(expect) {
                prop_assert_eq!(c.entity, e);
                prop_assert_eq!(&c.key, &k);
                prop_assert_eq!(c.op, o);
                prop_assert_eq!(&c.value, &v);
            }
        }

        /// The parser never panics, whatever the input; it accepts or gives INVALID_PARAMETER_VALUE.
        #[test]
        fn arbitrary_input_never_panics(input in "\\PC{0,60}") {
            if let Err(e) = run_filter(&input) {
                prop_assert!(matches!(e, Error::InvalidParameter(_)));
            }
        }

        /// Garbage glued into a valid filter is reported, never silently ignored.
        #[test]
        fn trailing_garbage_is_reported(junk in "[)(,=<>!]{1,3}") {
            let input = format!("metrics.a > 1 {junk}");
            prop_assert!(run_filter(&input).is_err());
        }
    }
}
