//! `shipyard predict`: batch scoring of a table with a model Shipyard trained.
//!
//! The model is a local model directory (holding `model.json`) or `runs:/RUN_ID/PATH`, read
//! from the run's artifacts. Output is CSV (one `prediction` column, and one `proba_<class>`
//! column per class for classifiers) or JSON, to a file or stdout; the input's columns are matched
//! by name, so extra columns (the target, ids) are ignored.

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, anyhow, bail};
use clap::Args;
use futures::StreamExt;
use shipyard_core::artifact_path::ArtifactPath;
use shipyard_data::table::Table;
use shipyard_store::ArtifactStore;
use shipyard_train::frame::Features;
use shipyard_train::{Model, Predictions};

use crate::data::ReadArgs;
use crate::datasets::{self, DatasetStoreArgs, block_on};

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PredictFormat {
    Csv,
    Json,
}

#[derive(Args)]
pub struct PredictArgs {
    /// The model: a model directory, or runs:/RUN_ID/model.
    #[arg(long)]
    model: String,
    /// The rows to score: a CSV or Parquet file, or dataset:NAME[@VERSION].
    #[arg(long)]
    data: PathBuf,
    /// Where to write the predictions (default: standard output).
    #[arg(long)]
    output: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = PredictFormat::Csv)]
    format: PredictFormat,
    #[command(flatten)]
    read: ReadArgs,
    #[command(flatten)]
    store: DatasetStoreArgs,
}

/// Reads `model.json` from a directory or a run's artifacts.
pub fn load_model(location: &str, store: &DatasetStoreArgs) -> Result<Model> {
    let text = if let Some(rest) = location.strip_prefix("runs:/") {
        let (run_id, path) = rest.split_once('/').ok_or_else(|| anyhow!("{location}: expected runs:/RUN_ID/PATH"))?;
        let path = path.trim_end_matches('/').to_owned();
        block_on(async {
            let db = store.database().await?;
            let run = db.get_run(run_id).await?;
            db.close().await;
            let root = ArtifactPath::from_proxied_uri(&run.info.artifact_uri)?;
            let artifacts = ArtifactStore::open(&store.destination()).await?;
            let file = ArtifactPath::parse(&format!("{root}/{path}/model.json"))?;
            let mut download = artifacts
                .get(&file)
                .await
                .with_context(|| format!("{location}: no model.json in the run's artifacts"))?;
            let mut bytes = Vec::new();
            while let Some(chunk) = download.stream.next().await {
                bytes.extend_from_slice(&chunk?);
            }
            String::from_utf8(bytes).context("model.json is not UTF-8")
        })?
    } else {
        let file = PathBuf::from(location).join("model.json");
        std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?
    };
    Ok(Model::from_json(&text)?)
}

fn number(v: f64) -> String {
    if v.is_nan() { String::new() } else { format!("{v}") }
}

fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) { format!("\"{}\"", text.replace('"', "\"\"")) } else { text.to_owned() }
}

pub fn run(args: PredictArgs) -> Result<crate::Outcome> {
    let model = load_model(&args.model, &args.store)?;
    let path = datasets::resolve_input(&args.data, &args.store)?;
    let batches = Table::open(&path, &args.read.options()?)?.read_all()?;
    if batches.is_empty() {
        bail!("{}: no rows to score", path.display());
    }
    let names: Vec<String> = model.features.iter().map(|f| f.name.clone()).collect();
    let features = Features::from_batches(&batches, Some(&names), &[])?;
    let start = Instant::now();
    let predictions = model.predict(&features)?;
    let elapsed = start.elapsed();
    let mut out: Box<dyn Write> = match &args.output {
        Some(p) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(p).with_context(|| format!("creating {}", p.display()))?,
        )),
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    };
    let written = match (&predictions, args.format) {
        (Predictions::Values(v), PredictFormat::Csv) => {
            let mut text = String::from("prediction\n");
            v.iter().for_each(|x| text += &format!("{}\n", number(*x)));
            out.write_all(text.as_bytes())
        }
        (Predictions::Classes { classes, proba }, PredictFormat::Csv) => {
            let mut text = String::from("prediction");
            model.classes.iter().for_each(|c| text += &format!(",{}", csv_field(&format!("proba_{c}"))));
            text.push('\n');
            for (c, p) in classes.iter().zip(proba) {
                text += &csv_field(&model.classes[*c]);
                p.iter().for_each(|v| text += &format!(",{}", number(*v)));
                text.push('\n');
            }
            out.write_all(text.as_bytes())
        }
        (Predictions::Values(v), PredictFormat::Json) => {
            out.write_all(serde_json::json!({ "predictions": v }).to_string().as_bytes())
        }
        (Predictions::Classes { classes, proba }, PredictFormat::Json) => {
            let labels: Vec<&str> = classes.iter().map(|c| model.classes[*c].as_str()).collect();
            out.write_all(
                serde_json::json!({ "predictions": labels, "classes": model.classes, "probabilities": proba })
                    .to_string()
                    .as_bytes(),
            )
        }
    };
    match written.and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(crate::Outcome::Success),
        other => other.context("writing predictions")?,
    }
    eprintln!("scored {} rows in {:.3} ms", features.rows, elapsed.as_secs_f64() * 1e3);
    Ok(crate::Outcome::Success)
}
