//! `shipyard predict`: batch scoring of a table with any model Shipyard can load.
//!
//! The model is a model directory, a bare `.onnx` file, `runs:/RUN_ID/PATH`,
//! `models:/NAME/VERSION` or `models:/NAME@ALIAS` (read from the store). The input (CSV,
//! Parquet, or `dataset:NAME[@VERSION]`) is streamed in batches of `--batch-size` rows, so
//! memory stays bounded whatever the file's size; rows keep their order. The output (CSV or
//! Parquet, by `--format` or the output's extension) holds the input's columns, then
//! `prediction`, then for classifiers one `probability_<label>` column per class: a contract
//! scripts rely on. A row the model cannot take (a missing value its signature forbids, a
//! fraction where it needs an integer) stops the run with its number, or with `--on-error skip`
//! goes to a reject file with the reason.

use std::fs::File;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use arrow_array::{ArrayRef, BooleanArray, Float64Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};
use clap::Args;
use shipyard_data::table::Table;
use shipyard_runtime::fetch::{self, ModelUri};
use shipyard_runtime::{EngineChoice, LoadedModel, Output, PredictError};
use shipyard_serving::Engine;
use shipyard_store::ArtifactStore;

use crate::data::ReadArgs;
use crate::datasets::{self, DatasetStoreArgs, block_on};

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PredictFormat {
    Csv,
    Parquet,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OnError {
    /// Stop at the first bad row, naming it.
    Fail,
    /// Write bad rows to the reject file and go on.
    Skip,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum EngineArg {
    /// The native engine for every model it covers, else onnxruntime if configured.
    Auto,
    /// The native engines only.
    Native,
    /// ONNX Runtime, loaded from ORT_DYLIB_PATH (for operators the native engine lacks).
    Onnxruntime,
}

impl From<EngineArg> for EngineChoice {
    fn from(e: EngineArg) -> EngineChoice {
        match e {
            EngineArg::Auto => EngineChoice::Auto,
            EngineArg::Native => EngineChoice::Native,
            EngineArg::Onnxruntime => EngineChoice::Onnxruntime,
        }
    }
}

/// Where a model comes from and how it runs.
#[derive(Args)]
pub struct ModelArgs {
    /// The model: a model directory, an .onnx file, runs:/RUN_ID/PATH, models:/NAME/VERSION or
    /// models:/NAME@ALIAS.
    #[arg(long)]
    pub model: String,
    /// Which engine runs ONNX models.
    #[arg(long, value_enum, default_value_t = EngineArg::Auto)]
    pub engine: EngineArg,
    /// Threads for inference (default: one per core).
    #[arg(long)]
    pub threads: Option<usize>,
}

#[derive(Args)]
pub struct PredictArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// The rows to score: a CSV or Parquet file, or dataset:NAME[@VERSION].
    #[arg(long, visible_alias = "data")]
    input: PathBuf,
    /// Where to write the predictions (default: CSV on standard output).
    #[arg(long)]
    output: Option<PathBuf>,
    /// Output format (default: from the output's extension, else CSV).
    #[arg(long, value_enum)]
    format: Option<PredictFormat>,
    /// Rows scored at a time.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    batch_size: u64,
    /// What to do with a row the model cannot take.
    #[arg(long, value_enum, default_value_t = OnError::Fail)]
    on_error: OnError,
    /// Where `--on-error skip` writes rejected rows (default: OUTPUT.rejects.csv).
    #[arg(long)]
    rejects: Option<PathBuf>,
    #[command(flatten)]
    read: ReadArgs,
    #[command(flatten)]
    store: DatasetStoreArgs,
    #[command(flatten)]
    python: crate::serve::PythonArgs,
}

/// How long a Python model may take over one chunk of rows.
const PYTHON_CHUNK_TIMEOUT: Duration = Duration::from_secs(3600);

/// A model loaded from a URI, with the temporary folder its files were copied to.
pub struct Opened {
    pub model: LoadedModel,
    /// `name/version` for registered models.
    pub version: Option<(String, String)>,
    _files: Option<tempfile::TempDir>,
}

/// A model's files: a local path, or a copy of a store URI's in a temporary folder.
pub struct Fetched {
    pub path: PathBuf,
    /// The registered model and version, for `models:/` URIs.
    pub version: Option<(String, String)>,
    /// The temporary folder holding the copy; the files go with it.
    pub files: Option<tempfile::TempDir>,
}

/// Finds a model's files by URI: local paths as they are, store URIs copied to a temporary
/// folder.
pub fn fetch_model_files(args: &ModelArgs, store: &DatasetStoreArgs) -> Result<Fetched> {
    let uri = ModelUri::parse(&args.model)?;
    if let ModelUri::Local(path) = &uri {
        return Ok(Fetched { path: path.clone(), version: None, files: None });
    }
    let dir = tempfile::tempdir().context("creating a temporary folder for the model")?;
    let (path, version) = if let Some(url) = store.server_url() {
        block_on(async {
            let server = crate::tracking::Tracking::open(Some(url), Path::new(".")).await?;
            let (location, version) = server.model_location(&uri).await?;
            let path = server.download_model(&location, dir.path()).await?;
            Ok::<_, anyhow::Error>((path, version))
        })?
    } else {
        block_on(async {
            let db = store.database().await?;
            let artifacts = ArtifactStore::open(&store.destination()).await;
            let fetched = match artifacts {
                Ok(artifacts) => {
                    fetch::fetch_model(&uri, &db, &artifacts, dir.path()).await.map_err(anyhow::Error::from)
                }
                Err(e) => Err(e.into()),
            };
            db.close().await;
            fetched.with_context(|| format!("fetching {}", args.model))
        })?
    };
    Ok(Fetched { path, version, files: Some(dir) })
}

/// Keeps a conversion the load of `uri` made with the model's files in the store (local
/// folders are left as they are): the next load anywhere reads it instead of converting.
/// A failure is only logged: the model is served all the same.
pub async fn keep_new_conversion(uri: &str, store: &DatasetStoreArgs, loaded: &shipyard_serving::loader::Loaded) {
    let Some(conversion) = &loaded.new_conversion else { return };
    let Ok(parsed) = ModelUri::parse(uri) else { return };
    if matches!(parsed, ModelUri::Local(_)) {
        return;
    }
    let (sub, record) = (shipyard_pyfunc::convert::CACHE_DIR, shipyard_serving::loader::KEPT_RECORD);
    let kept = async {
        if let Some(url) = store.server_url() {
            let server = crate::tracking::Tracking::open(Some(url), Path::new(".")).await?;
            let (location, _) = server.model_location(&parsed).await?;
            server.upload_beside(&location, sub, conversion.path(), record).await?;
        } else {
            let db = store.database().await?;
            let artifacts = ArtifactStore::open(&store.destination()).await;
            let stored = match artifacts {
                Ok(artifacts) => fetch::store_beside(&parsed, &db, &artifacts, sub, conversion.path(), record)
                    .await
                    .map_err(anyhow::Error::from),
                Err(e) => Err(e.into()),
            };
            db.close().await;
            stored?;
        }
        Ok::<_, anyhow::Error>(())
    };
    match kept.await {
        Ok(()) => tracing::info!("kept the ONNX conversion with {uri}"),
        Err(e) => tracing::warn!("cannot keep the conversion with {uri}: {e:#}"),
    }
}

/// Loads a model by URI: local paths directly, store URIs through a temporary copy.
pub fn open_model(args: &ModelArgs, store: &DatasetStoreArgs) -> Result<Opened> {
    let fetched = fetch_model_files(args, store)?;
    let model = LoadedModel::load(&fetched.path, EngineChoice::from(args.engine)).with_context(|| {
        if fetched.files.is_some() {
            format!("loading {}", args.model)
        } else {
            format!("loading {}", fetched.path.display())
        }
    })?;
    Ok(Opened { model, version: fetched.version, _files: fetched.files })
}

/// Runs `work` on a rayon pool of `threads` threads (the global pool when not given).
pub fn with_threads<R: Send>(threads: Option<usize>, work: impl FnOnce() -> R + Send) -> Result<R> {
    match threads {
        None => Ok(work()),
        Some(n) => {
            let pool =
                rayon::ThreadPoolBuilder::new().num_threads(n.max(1)).build().context("creating the thread pool")?;
            Ok(pool.install(work))
        }
    }
}

enum Sink {
    Csv(arrow_csv::Writer<Box<dyn Write>>),
    Parquet(parquet::arrow::ArrowWriter<File>),
}

impl Sink {
    fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        match self {
            Sink::Csv(w) => w.write(batch)?,
            Sink::Parquet(w) => w.write(batch)?,
        }
        Ok(())
    }

    fn finish(self) -> Result<()> {
        match self {
            Sink::Csv(w) => {
                let mut inner = w.into_inner();
                inner.flush()?;
            }
            Sink::Parquet(w) => {
                w.close()?;
            }
        }
        Ok(())
    }
}

/// The output: written to a temporary file renamed into place at the end, so a failed run
/// leaves nothing half-written under the output's name.
struct OutputFile {
    target: Option<PathBuf>,
    partial: Option<PathBuf>,
    format: PredictFormat,
    sink: Option<Sink>,
}

impl OutputFile {
    fn new(target: Option<PathBuf>, format: PredictFormat) -> Result<OutputFile> {
        if target.is_none() && format == PredictFormat::Parquet {
            bail!("Parquet output needs --output FILE");
        }
        let partial = target.as_ref().map(|t| {
            let name = t.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            t.with_file_name(format!(".{name}.partial"))
        });
        Ok(OutputFile { target, partial, format, sink: None })
    }

    fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        if self.sink.is_none() {
            let sink = match (&self.partial, self.format) {
                (Some(p), PredictFormat::Parquet) => Sink::Parquet(parquet::arrow::ArrowWriter::try_new(
                    File::create(p).with_context(|| format!("creating {}", p.display()))?,
                    batch.schema(),
                    None,
                )?),
                (Some(p), PredictFormat::Csv) => {
                    let file = File::create(p).with_context(|| format!("creating {}", p.display()))?;
                    Sink::Csv(
                        arrow_csv::WriterBuilder::new()
                            .with_header(true)
                            .build(Box::new(std::io::BufWriter::new(file))),
                    )
                }
                (None, _) => Sink::Csv(
                    arrow_csv::WriterBuilder::new()
                        .with_header(true)
                        .build(Box::new(std::io::BufWriter::new(std::io::stdout().lock()))),
                ),
            };
            self.sink = Some(sink);
        }
        match &mut self.sink {
            Some(sink) => sink.write(batch),
            None => Ok(()),
        }
    }

    fn finish(mut self) -> Result<()> {
        if let Some(sink) = self.sink.take() {
            sink.finish()?;
        }
        if let (Some(partial), Some(target)) = (&self.partial, &self.target)
            && partial.exists()
        {
            std::fs::rename(partial, target).with_context(|| format!("writing {}", target.display()))?;
        }
        Ok(())
    }
}

impl Drop for OutputFile {
    fn drop(&mut self) {
        if let Some(p) = &self.partial {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// The input columns followed by the prediction columns.
fn scored_batch(input: &RecordBatch, output: &Output) -> Result<RecordBatch> {
    let mut fields: Vec<Field> = input.schema().fields().iter().map(|f| f.as_ref().clone()).collect();
    let mut columns: Vec<ArrayRef> = input.columns().to_vec();
    let taken: std::collections::HashSet<String> = fields.iter().map(|f| f.name().clone()).collect();
    let mut add = |name: String, array: ArrayRef| -> Result<()> {
        if taken.contains(&name) {
            bail!("the input already has a column named '{name}'");
        }
        fields.push(Field::new(name, array.data_type().clone(), true));
        columns.push(array);
        Ok(())
    };
    match output {
        Output::Classes { classes, labels, probabilities, .. } => {
            add("prediction".into(), Arc::new(StringArray::from_iter_values(labels)))?;
            let k = classes.len();
            // A Python model answers labels alone.
            let classes = if probabilities.len() == labels.len() * k { classes.as_slice() } else { &[] };
            for (j, class) in classes.iter().enumerate() {
                let column: Float64Array = probabilities.iter().skip(j).step_by(k.max(1)).copied().map(Some).collect();
                add(format!("probability_{class}"), Arc::new(column))?;
            }
        }
        Output::Values { columns: 1, values, .. } => {
            add("prediction".into(), Arc::new(Float64Array::from(values.clone())))?
        }
        Output::Values { columns: k, values, .. } => {
            for j in 0..*k {
                let column: Float64Array = values.iter().skip(j).step_by(*k).copied().map(Some).collect();
                add(format!("prediction_{j}"), Arc::new(column))?;
            }
        }
    }
    Ok(RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)?)
}

/// Rows set aside by `--on-error skip`, with the reason, as CSV.
struct Rejects {
    path: PathBuf,
    writer: Option<arrow_csv::Writer<File>>,
    rows: usize,
}

impl Rejects {
    fn write(&mut self, batch: &RecordBatch, reasons: Vec<String>) -> Result<()> {
        let mut fields: Vec<Field> = batch.schema().fields().iter().map(|f| f.as_ref().clone()).collect();
        fields.push(Field::new("error", DataType::Utf8, false));
        let mut columns = batch.columns().to_vec();
        self.rows += reasons.len();
        columns.push(Arc::new(StringArray::from(reasons)));
        let out = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)?;
        if self.writer.is_none() {
            let file = File::create(&self.path).with_context(|| format!("creating {}", self.path.display()))?;
            self.writer = Some(arrow_csv::WriterBuilder::new().with_header(true).build(file));
        }
        if let Some(w) = &mut self.writer {
            w.write(&out)?;
        }
        Ok(())
    }
}

struct Progress {
    bar: Option<indicatif::ProgressBar>,
}

impl Progress {
    fn new(total: Option<u64>) -> Progress {
        if !std::io::stderr().is_terminal() {
            return Progress { bar: None };
        }
        let bar = indicatif::ProgressBar::with_draw_target(total, indicatif::ProgressDrawTarget::stderr());
        let template = if total.is_some() {
            "scoring {bar:40} {pos}/{len} rows [{elapsed_precise}]"
        } else {
            "scoring {pos} rows [{elapsed_precise}]"
        };
        if let Ok(style) = indicatif::ProgressStyle::with_template(template) {
            bar.set_style(style);
        }
        Progress { bar: Some(bar) }
    }

    fn inc(&self, n: usize) {
        if let Some(b) = &self.bar {
            b.inc(n as u64);
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

/// What scores the rows: Shipyard's engine in this process, or a Python model's workers.
enum Scorer<'a> {
    Engine(&'a LoadedModel),
    Python(&'a shipyard_serving::python::PythonModel, &'a tokio::runtime::Handle),
}

/// Scores one chunk through a Python model's workers: its answer, or (with `--on-error
/// skip`) the reason the model refused the chunk, which then goes to the reject file whole
/// (Python does not say which row it could not take).
fn score_python_chunk(
    model: &shipyard_serving::python::PythonModel,
    runtime: &tokio::runtime::Handle,
    chunk: &RecordBatch,
    offset: usize,
    on_error: OnError,
) -> Result<std::result::Result<Output, String>> {
    let rows = format!("rows {}..{}", offset + 1, offset + chunk.num_rows());
    match (runtime.block_on(model.predict_table(chunk)), on_error) {
        (Ok(output), _) => Ok(Ok(output)),
        (Err(e), OnError::Skip) if e.kind == shipyard_serving::error::ErrorKind::Invalid => {
            Ok(Err(format!("{rows}: {}", e.message)))
        }
        (Err(e), _) => Err(anyhow!("{rows}: {}", e.message)),
    }
}

/// Scores one chunk; returns the rows written.
fn score_chunk(
    scorer: &Scorer<'_>,
    chunk: &RecordBatch,
    offset: usize,
    on_error: OnError,
    out: &mut OutputFile,
    rejects: &mut Rejects,
    inference: &mut Duration,
) -> Result<usize> {
    let model = match scorer {
        Scorer::Engine(model) => *model,
        Scorer::Python(model, runtime) => {
            let start = Instant::now();
            let answer = score_python_chunk(model, runtime, chunk, offset, on_error)?;
            *inference += start.elapsed();
            return match answer {
                Ok(output) => {
                    out.write(&scored_batch(chunk, &output)?)?;
                    Ok(chunk.num_rows())
                }
                Err(reason) => {
                    rejects.write(chunk, vec![reason; chunk.num_rows()])?;
                    Ok(0)
                }
            };
        }
    };
    let features = model.features(std::slice::from_ref(chunk));
    let (chunk, features) = match (features, on_error) {
        (Ok(f), _) => (chunk.clone(), f),
        (Err(PredictError::Row { .. }), OnError::Skip) => {
            // Find every bad row, reject them, score the rest.
            let all = decode_unchecked(model, chunk)?;
            let problems = model.row_problems(&all);
            let mut reasons: std::collections::BTreeMap<usize, Vec<String>> = std::collections::BTreeMap::new();
            for (r, why) in problems {
                reasons.entry(r).or_default().push(why);
            }
            let bad: BooleanArray = (0..chunk.num_rows()).map(|r| Some(reasons.contains_key(&r))).collect();
            let good: BooleanArray = (0..chunk.num_rows()).map(|r| Some(!reasons.contains_key(&r))).collect();
            let rejected = arrow_select::filter::filter_record_batch(chunk, &bad)?;
            rejects.write(
                &rejected,
                reasons.iter().map(|(r, why)| format!("row {}: {}", offset + r + 1, why.join("; "))).collect(),
            )?;
            let kept = arrow_select::filter::filter_record_batch(chunk, &good)?;
            if kept.num_rows() == 0 {
                return Ok(0);
            }
            let f = model.features(std::slice::from_ref(&kept)).map_err(|e| anyhow!("{e}"))?;
            (kept, f)
        }
        (Err(e), _) => return Err(anyhow!("{}", e.shifted(offset))),
    };
    let start = Instant::now();
    let output = model.predict_features(&features).map_err(|e| anyhow!("{}", e.shifted(offset)))?;
    *inference += start.elapsed();
    out.write(&scored_batch(&chunk, &output)?)?;
    Ok(chunk.num_rows())
}

/// Decodes a chunk without the row checks, to list every bad row.
fn decode_unchecked(model: &LoadedModel, chunk: &RecordBatch) -> Result<shipyard_train::frame::Features> {
    let names = model.column_names();
    let names =
        if names.is_empty() { chunk.schema().fields().iter().map(|f| f.name().clone()).collect() } else { names };
    Ok(shipyard_train::frame::Features::from_batches(std::slice::from_ref(chunk), Some(&names), &[])?)
}

pub fn run(args: PredictArgs) -> Result<crate::Outcome> {
    // Python models' workers and pool live on this runtime; Shipyard's engine runs on rayon.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let fetched = fetch_model_files(&args.model, &args.store)?;
    let loader = args.python.loader(EngineChoice::from(args.model.engine), PYTHON_CHUNK_TIMEOUT);
    let loaded = runtime.block_on(async {
        let loaded = loader.load(fetched.path, fetched.files, &args.model.model).await;
        if let Ok(loaded) = &loaded {
            keep_new_conversion(&args.model.model, &args.store, loaded).await;
        }
        loaded
    });
    let loaded = loaded.map_err(|e| anyhow!("loading {}: {e}", args.model.model))?;
    let handle = runtime.handle().clone();
    let scorer = match &loaded.engine {
        Engine::Native(model) | Engine::Converted(model) => Scorer::Engine(model),
        Engine::Python(model) => Scorer::Python(model, &handle),
    };
    let engine_name = match &scorer {
        Scorer::Engine(model) => model.engine_name,
        Scorer::Python(..) => "python",
    };
    let path = datasets::resolve_input(&args.input, &args.store)?;
    let mut table = Table::open(&path, &args.read.options()?)?;
    let format = args.format.unwrap_or_else(|| {
        match args.output.as_ref().and_then(|p| p.extension()).and_then(|e| e.to_str()) {
            Some("parquet" | "pq") => PredictFormat::Parquet,
            _ => PredictFormat::Csv,
        }
    });
    let rejects_path = args.rejects.clone().unwrap_or_else(|| match &args.output {
        Some(p) => PathBuf::from(format!("{}.rejects.csv", p.display())),
        None => PathBuf::from("rejects.csv"),
    });
    let batch_size = args.batch_size as usize;
    let total = parquet_rows(&path);
    let started = Instant::now();
    let threads = args.model.threads;
    let on_error = args.on_error;
    let output = args.output.clone();
    let (rows, rejected, inference) = with_threads(threads, || -> Result<(usize, usize, Duration)> {
        // A CSV column widened mid-file restarts the scan: the state (and the output) starts over.
        let state = table.scan(
            |_| ScanState::new(output.clone(), format, rejects_path.clone(), total),
            |state, (first_row, batch)| {
                let mut start = 0;
                while start < batch.num_rows() {
                    let len = batch_size.min(batch.num_rows() - start);
                    let chunk = batch.slice(start, len);
                    let offset = *first_row as usize + start;
                    let ScanState { out, rejects, inference, rows, progress, .. } = state;
                    let out = out.as_mut().map_err(|e| shipyard_data::error::DataError::invalid(e.clone()))?;
                    *rows += score_chunk(&scorer, &chunk, offset, on_error, out, rejects, inference)
                        .map_err(|e| shipyard_data::error::DataError::invalid(format!("{e:#}")))?;
                    progress.inc(len);
                    start += len;
                }
                Ok(())
            },
        )?;
        let ScanState { out, rejects, inference, rows, .. } = state;
        out.map_err(|e| anyhow!("{e}"))?.finish()?;
        Ok((rows, rejects.rows, inference))
    })??;
    if rows == 0 && rejected == 0 {
        bail!("{}: no rows to score", path.display());
    }
    eprintln!(
        "scored {rows} rows in {:.3} ms (inference {:.3} ms, {} engine){}",
        started.elapsed().as_secs_f64() * 1e3,
        inference.as_secs_f64() * 1e3,
        engine_name,
        if rejected > 0 {
            format!("; {rejected} rows rejected, see {}", rejects_display(&args))
        } else {
            String::new()
        }
    );
    Ok(crate::Outcome::Success)
}

fn rejects_display(args: &PredictArgs) -> String {
    match (&args.rejects, &args.output) {
        (Some(p), _) => p.display().to_string(),
        (None, Some(p)) => format!("{}.rejects.csv", p.display()),
        (None, None) => "rejects.csv".into(),
    }
}

struct ScanState {
    out: std::result::Result<OutputFile, String>,
    rejects: Rejects,
    inference: Duration,
    rows: usize,
    progress: Progress,
}

impl ScanState {
    fn new(output: Option<PathBuf>, format: PredictFormat, rejects: PathBuf, total: Option<u64>) -> ScanState {
        ScanState {
            out: OutputFile::new(output, format).map_err(|e| e.to_string()),
            rejects: Rejects { path: rejects, writer: None, rows: 0 },
            inference: Duration::ZERO,
            rows: 0,
            progress: Progress::new(total),
        }
    }
}

/// The row count of a Parquet file, from its footer (for the progress bar).
fn parquet_rows(path: &Path) -> Option<u64> {
    let file = File::open(path).ok()?;
    let reader = parquet::file::reader::SerializedFileReader::new(file).ok()?;
    let rows = parquet::file::reader::FileReader::metadata(&reader).file_metadata().num_rows();
    u64::try_from(rows).ok()
}
