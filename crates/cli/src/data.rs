//! `shipyard data ...`: profiles, expectation suites, drift and dataset versions from the command
//! line. The work is done by `shipyard-data`; this module parses options and prints results.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use shipyard_core::display::number;
use shipyard_core::entities::utc_seconds;
use shipyard_data::drift::{self, DriftOptions, DriftReport, Kind, Method};
use shipyard_data::profile::Profile;
use shipyard_data::suite::{Suite, ValidationReport};
use shipyard_data::table::{CsvOptions, Table};

use crate::datasets::{self, DatasetStoreArgs, resolve_input};
use crate::tracking::print_table;
use crate::{Format, Outcome};

#[derive(Subcommand)]
pub enum DataCommand {
    /// Compare a current table with a reference, column by column (Evidently's tests, scipy's numbers).
    Drift(DriftArgs),
    /// Summarise every column of a table in one streaming pass (bounded memory).
    Profile(ProfileArgs),
    /// Expectation suites.
    #[command(subcommand)]
    Suite(SuiteCommand),
    /// Check a table against an expectation suite; exit status 1 if any expectation fails.
    Validate(ValidateArgs),
    /// Record a table as a new version of a named dataset (stored once per SHA-256 digest).
    Add(AddArgs),
    /// List dataset versions.
    List {
        /// Only this dataset's versions.
        name: Option<String>,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
        #[command(flatten)]
        store: DatasetStoreArgs,
    },
    /// Show one dataset version: NAME (latest) or NAME@VERSION.
    Show {
        reference: String,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
        #[command(flatten)]
        store: DatasetStoreArgs,
    },
}

#[derive(Args)]
pub struct AddArgs {
    /// The table (CSV or Parquet).
    file: PathBuf,
    /// Dataset name: letters, digits, '.', '_' and '-'.
    #[arg(long)]
    name: String,
    /// A note kept with the version.
    #[arg(long)]
    description: Option<String>,
    /// Also log the version as an input of this run (MLflow's dataset form).
    #[arg(long)]
    run: Option<String>,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
    #[command(flatten)]
    read: ReadArgs,
    #[command(flatten)]
    store: DatasetStoreArgs,
}

#[derive(Subcommand)]
pub enum SuiteCommand {
    /// Write a suite that the table passes, with stated tolerances (see docs/expectations.md).
    Infer {
        /// The table (CSV or Parquet).
        file: PathBuf,
        /// Where to write the suite (YAML); standard output if omitted.
        #[arg(short, long)]
        output: Option<PathBuf>,
        /// Slack around observed values: min and max widen by this share of the observed range.
        #[arg(long, default_value_t = 0.25)]
        tolerance: f64,
        #[command(flatten)]
        read: ReadArgs,
        #[command(flatten)]
        store: DatasetStoreArgs,
    },
}

#[derive(Args)]
pub struct ValidateArgs {
    /// The table (CSV or Parquet).
    file: PathBuf,
    /// The expectation suite (YAML).
    #[arg(long)]
    suite: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
    #[command(flatten)]
    read: ReadArgs,
    #[command(flatten)]
    store: DatasetStoreArgs,
}

#[derive(Args)]
pub struct ProfileArgs {
    /// The table (CSV or Parquet), or dataset:NAME[@VERSION].
    file: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value_t = ReportFormat::Table)]
    format: ReportFormat,
    #[command(flatten)]
    read: ReadArgs,
    #[command(flatten)]
    store: DatasetStoreArgs,
}

/// How CSV files are read.
#[derive(Args, Clone)]
pub struct ReadArgs {
    /// CSV field delimiter (default: comma; tab for .tsv files).
    #[arg(long)]
    delimiter: Option<char>,
    /// The CSV files have no header line (columns are named column_1, column_2, ...).
    #[arg(long)]
    no_header: bool,
    /// Rows read to infer CSV column types; 0 reads the whole file.
    #[arg(long, default_value_t = 10_000)]
    infer_rows: usize,
    /// Extra field value read as missing (repeatable); pandas' markers ("", NA, NaN, null...) always are.
    #[arg(long = "null-marker")]
    null_markers: Vec<String>,
}

impl Default for ReadArgs {
    /// The flags' defaults.
    fn default() -> Self {
        ReadArgs { delimiter: None, no_header: false, infer_rows: 10_000, null_markers: Vec::new() }
    }
}

impl ReadArgs {
    pub fn options(&self) -> Result<CsvOptions> {
        let mut o = CsvOptions { has_header: !self.no_header, infer_rows: self.infer_rows, ..CsvOptions::default() };
        if let Some(d) = self.delimiter {
            if !d.is_ascii() {
                bail!("--delimiter must be a single ASCII character");
            }
            o.delimiter = d as u8;
        }
        o.null_markers.extend(self.null_markers.iter().cloned());
        Ok(o)
    }

    /// These options as a server's `datasets/add` takes them in its query.
    pub fn query(&self) -> Vec<(&'static str, String)> {
        let mut query = vec![("infer_rows", self.infer_rows.to_string())];
        if let Some(d) = self.delimiter {
            query.push(("delimiter", d.to_string()));
        }
        if self.no_header {
            query.push(("no_header", "true".to_owned()));
        }
        query.extend(self.null_markers.iter().map(|m| ("null_marker", m.clone())));
        query
    }
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ReportFormat {
    /// Aligned columns.
    Table,
    /// JSON, a stable contract for scripts.
    Json,
    /// One self-contained HTML file (no network), written to stdout.
    Html,
}

#[derive(Args)]
pub struct DriftArgs {
    /// The reference: a table (CSV or Parquet, typically the training data), dataset:NAME[@VERSION],
    /// or a profile saved by `shipyard data profile --format json` (a .json file).
    #[arg(long)]
    reference: PathBuf,
    /// The current table to compare with it.
    #[arg(long)]
    current: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value_t = ReportFormat::Table)]
    format: ReportFormat,
    /// evidently (Evidently's tests and thresholds, the default for reports) or calibrated (tests
    /// valid at both tables' sizes; on calm data any column is flagged in at most
    /// --false-alarm-rate of comparisons; what monitors and gates use).
    #[arg(long, default_value = "evidently")]
    preset: String,
    /// The calibrated preset's false-alarm level.
    #[arg(long, default_value_t = 0.01)]
    false_alarm_rate: f64,
    /// Evidently's preset: test for every column (METHOD) or for one (COLUMN=METHOD); repeatable.
    /// Methods: ks, chisquare, z, wasserstein, jensenshannon, psi, kl_div, chisquare_homogeneity.
    #[arg(long = "method", value_name = "[COLUMN=]METHOD")]
    methods: Vec<String>,
    /// Drift threshold for every column (VALUE) or for one (COLUMN=VALUE); repeatable.
    #[arg(long = "threshold", value_name = "[COLUMN=]VALUE")]
    thresholds: Vec<String>,
    /// Column kind override, COLUMN=numeric|categorical|text; repeatable.
    #[arg(long = "kind", value_name = "COLUMN=KIND")]
    kinds: Vec<String>,
    /// Share of drifted columns at which the whole table counts as drifted.
    #[arg(long, default_value_t = 0.5)]
    drift_share: f64,
    /// Exit with status 1 when the table drifts.
    #[arg(long)]
    fail_on_drift: bool,
    #[command(flatten)]
    read: ReadArgs,
    #[command(flatten)]
    store: DatasetStoreArgs,
}

pub fn run(cmd: DataCommand) -> Result<Outcome> {
    match cmd {
        DataCommand::Drift(args) => drift_command(args),
        DataCommand::Profile(args) => profile_command(args),
        DataCommand::Suite(SuiteCommand::Infer { file, output, tolerance, read, store }) => {
            if !(0.0..=1.0).contains(&tolerance) {
                bail!("--tolerance must be between 0 and 1, got {tolerance}");
            }
            let mut table = Table::open(&resolve_input(&file, &store)?, &read.options()?)?;
            let profile = Profile::of_table(&mut table)?;
            let mut suite = Suite::infer(&profile, tolerance);
            suite.name = file.file_stem().map(|s| s.to_string_lossy().into_owned());
            let text = format!(
                "# Inferred by `shipyard data suite infer` from {} ({} rows) with tolerance {tolerance}.\n\
                 # Schema and tolerances: docs/expectations.md. Edit freely.\n{}",
                file.display(),
                profile.rows,
                suite.to_yaml()?
            );
            match output {
                Some(path) => {
                    write_atomically(&path, text.as_bytes())?;
                    eprintln!("wrote {} expectations to {}", suite.len(), path.display());
                }
                None => out!("{text}"),
            }
            Ok(Outcome::Success)
        }
        DataCommand::Validate(args) => validate_command(args),
        DataCommand::Add(args) => {
            let (version, created) = datasets::add(
                datasets::AddRequest {
                    file: &args.file,
                    name: &args.name,
                    description: args.description.clone(),
                    run_id: args.run.clone(),
                    read: &args.read,
                },
                &args.store,
            )?;
            if args.format == Format::Json {
                let mut v = serde_json::to_value(&version)?;
                v["created"] = serde_json::Value::Bool(created);
                outln!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                let what = if created { "added" } else { "unchanged: same content as" };
                eprintln!(
                    "{what} {}@{} ({} rows, sha256 {})",
                    version.name,
                    version.version,
                    version.rows,
                    &version.digest[..12]
                );
                outln!("{}@{}", version.name, version.version);
            }
            Ok(Outcome::Success)
        }
        DataCommand::List { name, format, store } => {
            let versions = datasets::list(name.as_deref(), &store)?;
            if format == Format::Json {
                outln!("{}", serde_json::to_string_pretty(&versions)?);
            } else {
                let rows: Vec<Vec<String>> = versions
                    .iter()
                    .map(|v| {
                        vec![
                            v.name.clone(),
                            v.version.to_string(),
                            v.rows.to_string(),
                            v.format.clone(),
                            v.digest[..12].to_owned(),
                            v.source.clone(),
                        ]
                    })
                    .collect();
                print_table(&["NAME", "VERSION", "ROWS", "FORMAT", "SHA256", "SOURCE"], &rows);
            }
            Ok(Outcome::Success)
        }
        DataCommand::Show { reference, format, store } => {
            let (v, validations) = datasets::show_with_validations(&reference, SHOWN_VALIDATIONS, &store)?;
            match format {
                Format::Json => {
                    let mut value = serde_json::to_value(&v)?;
                    if let Some(o) = value.as_object_mut() {
                        o.insert("validations".into(), serde_json::to_value(&validations)?);
                    }
                    outln!("{}", serde_json::to_string_pretty(&value)?);
                }
                Format::Table => {
                    outln!("{}@{}: {} rows, {} bytes, {}", v.name, v.version, v.rows, v.size_bytes, v.format);
                    outln!("sha256 {}", v.digest);
                    outln!("source {}", v.source);
                    outln!("stored {}/{}", v.artifact_root, v.artifact_path);
                    if let Some(d) = &v.description {
                        outln!("description {d}");
                    }
                    for r in &validations {
                        outln!(
                            "validation {}: {} ({} of {} expectations met) with {} by {} at {} UTC",
                            r.id,
                            if r.success { "PASSED" } else { "FAILED" },
                            r.successful,
                            r.evaluated,
                            r.suite,
                            r.actor,
                            utc_seconds(r.time)
                        );
                    }
                    outln!();
                    let profile: Profile =
                        serde_json::from_value(v.profile.clone()).context("the stored profile does not parse")?;
                    print_profile(&profile);
                }
            }
            Ok(Outcome::Success)
        }
    }
}

/// Validations `data show` lists, newest first.
const SHOWN_VALIDATIONS: i64 = 20;

/// Splits `COLUMN=VALUE` (or a bare `VALUE`) at the last `=`, so column names may hold `=`.
fn split_assignment(s: &str) -> (Option<&str>, &str) {
    match s.rsplit_once('=') {
        Some((col, value)) => (Some(col), value),
        None => (None, s),
    }
}

fn drift_options(args: &DriftArgs) -> Result<DriftOptions> {
    let mut o = DriftOptions { drift_share: args.drift_share, ..DriftOptions::default() };
    if !(0.0..=1.0).contains(&args.drift_share) {
        bail!("--drift-share must be between 0 and 1, got {}", args.drift_share);
    }
    o.preset = match shipyard_data::drift::Preset::parse(&args.preset)? {
        shipyard_data::drift::Preset::Calibrated { .. } => {
            if !(args.false_alarm_rate > 0.0 && args.false_alarm_rate < 0.5) {
                bail!("--false-alarm-rate must be above 0 and below 0.5, got {}", args.false_alarm_rate);
            }
            if !args.methods.is_empty() || !args.thresholds.is_empty() {
                bail!("--method and --threshold choose Evidently's tests; the calibrated preset chooses its own");
            }
            shipyard_data::drift::Preset::Calibrated { alpha: args.false_alarm_rate }
        }
        evidently => evidently,
    };
    for m in &args.methods {
        match split_assignment(m) {
            (Some(col), name) => {
                o.column_methods.insert(col.to_owned(), Method::parse(name)?);
            }
            (None, name) => o.method = Some(Method::parse(name)?),
        }
    }
    for t in &args.thresholds {
        let (col, value) = split_assignment(t);
        let v: f64 = value
            .parse()
            .ok()
            .filter(|v: &f64| v.is_finite())
            .with_context(|| format!("--threshold {t}: not a number"))?;
        match col {
            Some(col) => {
                o.column_thresholds.insert(col.to_owned(), v);
            }
            None => o.threshold = Some(v),
        }
    }
    for k in &args.kinds {
        let (Some(col), kind) = split_assignment(k) else { bail!("--kind {k}: expected COLUMN=KIND") };
        o.column_kinds.insert(col.to_owned(), Kind::parse(kind)?);
    }
    Ok(o)
}

fn drift_command(args: DriftArgs) -> Result<Outcome> {
    let options = drift_options(&args)?;
    let csv = args.read.options()?;
    let (reference_file, current_file) =
        (resolve_input(&args.reference, &args.store)?, resolve_input(&args.current, &args.store)?);
    let report = drift::compare_files(&reference_file, &current_file, &csv, &options)?;
    match args.format {
        ReportFormat::Json => outln!("{}", serde_json::to_string_pretty(&report)?),
        ReportFormat::Table => print_drift(&report),
        ReportFormat::Html => {
            out!("{}", shipyard_data::report::drift_html(&report, &args.reference, &args.current))
        }
    }
    for s in &report.skipped {
        eprintln!("note: column '{}' not tested: {}", s.column, s.reason);
    }
    if !report.unmatched_columns.is_empty() {
        eprintln!("note: not in the reference, not tested: {}", report.unmatched_columns.join(", "));
    }
    Ok(if args.fail_on_drift && report.dataset_drift { Outcome::ChecksFailed } else { Outcome::Success })
}

fn print_drift(report: &DriftReport) {
    let rows: Vec<Vec<String>> = report
        .columns
        .iter()
        .map(|c| {
            vec![
                c.column.clone(),
                format!("{:?}", c.kind).to_lowercase(),
                c.test.name().to_owned(),
                number(c.statistic),
                c.p_value.map(number).unwrap_or_else(|| "-".into()),
                number(c.threshold),
                match (c.drift, &c.undecided) {
                    (_, Some(_)) => "undecided".into(),
                    (true, None) => "DRIFT".into(),
                    (false, None) => "ok".into(),
                },
                c.power.map_or_else(String::new, |p| format!("{} {}", number(p.detectable), p.unit)),
            ]
        })
        .collect();
    print_table(&["COLUMN", "KIND", "TEST", "STATISTIC", "P-VALUE", "THRESHOLD", "VERDICT", "DETECTS"], &rows);
    for c in report.columns.iter().filter(|c| c.undecided.is_some()) {
        outln!("{}: undecided: {}", c.column, c.undecided.as_deref().unwrap_or_default());
    }
    outln!();
    outln!(
        "{} of {} columns drifted (share {:.3}, dataset drift at {}): {}",
        report.drifted_columns,
        report.columns.len(),
        report.share_drifted,
        report.drift_share,
        if report.dataset_drift { "DATASET DRIFT" } else { "no dataset drift" }
    );
}

fn profile_command(args: ProfileArgs) -> Result<Outcome> {
    let mut table = Table::open(&resolve_input(&args.file, &args.store)?, &args.read.options()?)?;
    let profile = Profile::of_table(&mut table)?;
    match args.format {
        ReportFormat::Json => outln!("{}", serde_json::to_string_pretty(&profile)?),
        ReportFormat::Html => out!("{}", shipyard_data::report::profile_html(&profile, &args.file)),
        ReportFormat::Table => print_profile(&profile),
    }
    Ok(Outcome::Success)
}

fn print_profile(profile: &Profile) {
    let opt = |v: Option<f64>| v.map(number).unwrap_or_default();
    let rows: Vec<Vec<String>> = profile
        .columns
        .iter()
        .map(|c| {
            let n = c.numeric.as_ref();
            let median = n.and_then(|s| s.quantiles.iter().find(|q| q.q == 0.5).map(|q| q.value));
            let top = c
                .top_values
                .as_ref()
                .map(|t| {
                    t.values.iter().take(3).map(|v| format!("{} ({})", v.value, v.count)).collect::<Vec<_>>().join(", ")
                })
                .unwrap_or_default();
            vec![
                c.name.clone(),
                c.data_type.clone(),
                c.count.to_string(),
                format!("{} ({:.1}%)", c.missing, c.missing_fraction * 100.0),
                format!("{}{}", if c.exact { "" } else { "~" }, c.distinct),
                opt(n.and_then(|s| s.min)),
                opt(n.and_then(|s| s.max)),
                opt(n.and_then(|s| s.mean)),
                opt(n.and_then(|s| s.std)),
                opt(median),
                top,
            ]
        })
        .collect();
    outln!("{} rows, {} columns", profile.rows, profile.columns.len());
    print_table(
        &["COLUMN", "TYPE", "COUNT", "MISSING", "DISTINCT", "MIN", "MAX", "MEAN", "STD", "MEDIAN", "TOP"],
        &rows,
    );
}

/// Writes a file through a temporary sibling and a rename: never half-written. The file gets
/// the permissions of any new file (not a temporary file's owner-only ones).
pub(crate) fn write_atomically(path: &std::path::Path, bytes: &[u8]) -> Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".tmp-{}", std::process::id()));
    let tmp = std::path::PathBuf::from(tmp);
    std::fs::write(&tmp, bytes).with_context(|| format!("writing {}", path.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display())).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

fn validate_command(args: ValidateArgs) -> Result<Outcome> {
    let text = std::fs::read_to_string(&args.suite).with_context(|| format!("reading {}", args.suite.display()))?;
    let suite = Suite::from_yaml(&text, &args.suite.display().to_string())?;
    let (path, version) = crate::datasets::resolve_dataset(&args.file, &args.store)?;
    let mut table = Table::open(&path, &args.read.options()?)?;
    let report = shipyard_data::suite::validate(&mut table, &suite)?;
    // A dataset version keeps its validations: the web UI shows them on its page.
    let recorded = match &version {
        Some(v) => Some(crate::datasets::record_validation(v, &args.suite, &report, &args.store)?),
        None => None,
    };
    match args.format {
        Format::Json => outln!("{}", serde_json::to_string_pretty(&report)?),
        Format::Table => {
            print_validation(&report);
            if let (Some(v), Some(id)) = (&version, recorded) {
                outln!("recorded with dataset:{}@{} (validation {id})", v.name, v.version);
            }
        }
    }
    Ok(if report.success { Outcome::Success } else { Outcome::ChecksFailed })
}

fn print_validation(report: &ValidationReport) {
    let rows: Vec<Vec<String>> = report
        .results
        .iter()
        .map(|r| {
            let rows = if r.failing_rows.is_empty() {
                String::new()
            } else {
                let shown: Vec<String> = r.failing_rows.iter().map(u64::to_string).collect();
                let more = r.unexpected_count.unwrap_or(0) as usize > shown.len();
                format!("{}{}", shown.join(","), if more { ",..." } else { "" })
            };
            vec![
                r.column.clone().unwrap_or_else(|| "(table)".into()),
                r.expectation.clone(),
                if r.success { "ok".into() } else { "FAIL".into() },
                r.observed.to_string(),
                r.expected.to_string(),
                r.unexpected_count.map(|c| c.to_string()).unwrap_or_default(),
                rows,
            ]
        })
        .collect();
    print_table(&["COLUMN", "EXPECTATION", "RESULT", "OBSERVED", "EXPECTED", "UNEXPECTED", "FIRST ROWS"], &rows);
    outln!();
    outln!(
        "{} of {} expectations met on {} rows; quality score {}: {}",
        report.successful_expectations,
        report.evaluated_expectations,
        report.rows,
        number(report.quality_score),
        if report.success { "PASSED" } else { "FAILED" }
    );
}
