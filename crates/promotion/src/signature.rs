//! Signature compatibility: can the champion's clients send the same requests to the candidate?
//!
//! The serving protocols refuse unknown columns (the seed's `/predict`) and missing required
//! ones, and read each column as its declared type. So the candidate is compatible when:
//! - it takes every column the champion takes, each with a compatible type (numbers with
//!   numbers: `double`, `float`, `long`, `integer`; text with text; booleans with booleans);
//! - any column the champion does not take is optional for the candidate;
//! - a positional model takes the same number of columns;
//! - both answer the same way: classes (the same set) or values.

use shipyard_runtime::{Inputs, Scorer};

fn family(mlflow_type: &str) -> &'static str {
    match mlflow_type {
        "double" | "float" | "long" | "integer" => "number",
        "boolean" => "boolean",
        _ => "text",
    }
}

/// Every reason the candidate's requests differ from the champion's (empty: compatible).
pub fn incompatibilities(candidate: &dyn Scorer, champion: &dyn Scorer) -> Vec<String> {
    let mut problems = Vec::new();
    match (candidate.inputs(), champion.inputs()) {
        (Inputs::Named(cand), Inputs::Named(champ)) => {
            for c in champ {
                match cand.iter().find(|x| x.name == c.name) {
                    None => problems.push(format!(
                        "the champion takes column '{}', the candidate does not (requests sending it would be refused)",
                        c.name
                    )),
                    Some(x) if family(&x.mlflow_type) != family(&c.mlflow_type) => problems.push(format!(
                        "column '{}' is {} for the champion and {} for the candidate",
                        c.name, c.mlflow_type, x.mlflow_type
                    )),
                    Some(x) if x.required && !c.required => problems.push(format!(
                        "column '{}' may be missing for the champion but is required by the candidate",
                        c.name
                    )),
                    Some(_) => {}
                }
            }
            for x in cand.iter().filter(|x| x.required && !champ.iter().any(|c| c.name == x.name)) {
                problems.push(format!("the candidate requires column '{}', which the champion does not take", x.name));
            }
        }
        (Inputs::Positional { width: a, .. }, Inputs::Positional { width: b, .. }) => {
            if a != b {
                let show = |w: &Option<usize>| w.map_or("any number of".to_owned(), |w| w.to_string());
                problems.push(format!("the candidate takes {} columns, the champion {}", show(a), show(b)));
            }
        }
        (Inputs::Named(_), Inputs::Positional { .. }) => {
            problems.push("the candidate takes named columns, the champion a positional matrix".into())
        }
        (Inputs::Positional { .. }, Inputs::Named(_)) => {
            problems.push("the candidate takes a positional matrix, the champion named columns".into())
        }
    }
    match (candidate.classes(), champion.classes()) {
        (Some(mut a), Some(mut b)) => {
            a.sort();
            b.sort();
            if a != b {
                problems.push(format!(
                    "the candidate answers classes [{}], the champion [{}]",
                    a.join(", "),
                    b.join(", ")
                ));
            }
        }
        (Some(_), None) => problems.push("the candidate is a classifier, the champion is not".into()),
        (None, Some(_)) => problems.push("the champion is a classifier, the candidate is not".into()),
        (None, None) => {}
    }
    problems
}
