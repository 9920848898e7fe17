//! Reading tables: CSV and Parquet files as a stream of Arrow record batches.
//!
//! A [`Table`] is opened once (format detected, schema inferred or read from the Parquet footer)
//! and scanned any number of times. A scan decodes on a background thread into a bounded channel
//! of batches, so decoding and the caller's work (profiling, validation, drift) run on separate
//! cores while memory stays bounded by a few batches, whatever the file's size.
//!
//! CSV type inference looks at the first [`CsvOptions::infer_rows`] records (all with 0). A later
//! value that does not fit the inferred type is an error naming the line, the column and the value,
//! with one exception: an integer column that turns out to hold decimals is widened to floats and
//! the scan restarts, as pandas would read it.
//!
//! Null markers default to pandas' `na_values` (`""`, `NA`, `N/A`, `NULL`, `NaN`, `None`, ...).

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

use arrow_array::RecordBatch;
use arrow_schema::{ArrowError, DataType, Field, Schema, SchemaRef};

use crate::error::{DataError, Result};

/// Rows per record batch.
pub const BATCH_ROWS: usize = 65_536;
/// Batches decoded ahead of the consumer.
const BATCHES_AHEAD: usize = 2;
/// pandas' default `na_values`.
pub const PANDAS_NULL_MARKERS: &[&str] = &[
    "", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN", "<NA>", "N/A", "NA",
    "NULL", "NaN", "None", "n/a", "nan", "null",
];

/// How to read a CSV file (its JSON form travels with a request to a server; a field left out
/// keeps its default).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct CsvOptions {
    pub delimiter: u8,
    pub quote: u8,
    pub has_header: bool,
    /// Exact field values read as null.
    pub null_markers: Vec<String>,
    /// Records read to infer column types; 0 reads the whole file.
    pub infer_rows: usize,
    /// Longest line accepted, in bytes: a guard against a runaway quoted field or a binary file.
    pub max_line_bytes: usize,
}

impl Default for CsvOptions {
    fn default() -> Self {
        CsvOptions {
            delimiter: b',',
            quote: b'"',
            has_header: true,
            null_markers: PANDAS_NULL_MARKERS.iter().map(|s| s.to_string()).collect(),
            infer_rows: 10_000,
            max_line_bytes: 16 << 20,
        }
    }
}

/// The file formats Shipyard reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Csv,
    Parquet,
}

/// An opened table: where it is, its format and its schema.
#[derive(Debug, Clone)]
pub struct Table {
    path: PathBuf,
    format: Format,
    csv: CsvOptions,
    schema: SchemaRef,
}

/// A batch and the zero-based index of its first row in the file.
pub type NumberedBatch = (u64, RecordBatch);

impl Table {
    /// Opens `path`, detecting the format from the extension (`.parquet`, `.pq`; `.tsv` sets a tab
    /// delimiter) or, failing that, from Parquet's magic bytes.
    pub fn open(path: &Path, csv: &CsvOptions) -> Result<Table> {
        let meta = std::fs::metadata(path).map_err(|e| DataError::input(path, e.to_string()))?;
        if !meta.is_file() {
            return Err(DataError::input(path, "not a regular file"));
        }
        let format = detect_format(path)?;
        let mut csv = csv.clone();
        if format == Format::Csv && path.extension().is_some_and(|e| e.eq_ignore_ascii_case("tsv")) {
            csv.delimiter = b'\t';
        }
        let schema = match format {
            Format::Parquet => parquet_schema(path)?,
            Format::Csv => {
                if meta.len() == 0 {
                    return Err(DataError::input(path, "the file is empty (expected a header line)"));
                }
                infer_csv_schema(path, &csv)?
            }
        };
        if schema.fields().is_empty() {
            return Err(DataError::input(path, "the file has no columns"));
        }
        check_unique_names(path, &schema)?;
        Ok(Table { path: path.to_owned(), format, csv, schema })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
    pub fn format(&self) -> Format {
        self.format
    }
    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// Folds every batch of the table into a state made by `init`. If a CSV integer column turns
    /// out to hold decimals, the column is widened to floats and the fold starts over with a fresh
    /// state, so `fold` must have no effect outside its state.
    pub fn scan<S>(
        &mut self,
        init: impl Fn(&SchemaRef) -> S,
        mut fold: impl FnMut(&mut S, &NumberedBatch) -> Result<()>,
    ) -> Result<S> {
        loop {
            let mut state = init(&self.schema);
            let stream = self.batches()?;
            let mut widen = None;
            for item in stream {
                match item {
                    Ok(batch) => fold(&mut state, &batch)?,
                    Err(ScanError::Widen(column)) => {
                        widen = Some(column);
                        break;
                    }
                    Err(ScanError::Data(e)) => return Err(e),
                }
            }
            match widen {
                None => return Ok(state),
                Some(column) => self.widen_to_float(column),
            }
        }
    }

    /// Reads the whole table into memory (for small tables and tests).
    pub fn read_all(&mut self) -> Result<Vec<RecordBatch>> {
        self.scan(
            |_| Vec::new(),
            |all, (_, batch)| {
                all.push(batch.clone());
                Ok(())
            },
        )
    }

    fn widen_to_float(&mut self, column: usize) {
        let fields: Vec<Field> =
            self.schema
                .fields()
                .iter()
                .enumerate()
                .map(|(i, f)| {
                    if i == column { f.as_ref().clone().with_data_type(DataType::Float64) } else { f.as_ref().clone() }
                })
                .collect();
        self.schema = Arc::new(Schema::new_with_metadata(fields, self.schema.metadata().clone()));
    }

    /// Starts the decoding thread and returns the stream of its batches.
    fn batches(&self) -> Result<BatchStream> {
        let (tx, rx) = sync_channel(BATCHES_AHEAD);
        let table = self.clone();
        std::thread::Builder::new()
            .name("shipyard-decode".into())
            .spawn(move || table.decode_into(tx))
            .map_err(|e| DataError::input(&self.path, format!("cannot start a decoding thread: {e}")))?;
        Ok(BatchStream { rx })
    }

    fn decode_into(&self, tx: SyncSender<Result<NumberedBatch, ScanError>>) {
        let mut row = 0u64;
        let mut send = |item: std::result::Result<RecordBatch, ScanError>| -> bool {
            let item = item.map(|b| {
                let first = row;
                row += b.num_rows() as u64;
                (first, b)
            });
            tx.send(item).is_ok()
        };
        match self.format {
            Format::Parquet => {
                let reader = match open_parquet(&self.path) {
                    Ok(r) => r,
                    Err(e) => {
                        send(Err(ScanError::Data(e)));
                        return;
                    }
                };
                for batch in reader {
                    let item = batch.map_err(|e| ScanError::Data(DataError::input(&self.path, e.to_string())));
                    let failed = item.is_err();
                    if !send(item) || failed {
                        return;
                    }
                }
            }
            Format::Csv => {
                let reader = match self.csv_reader() {
                    Ok(r) => r,
                    Err(e) => {
                        send(Err(ScanError::Data(e)));
                        return;
                    }
                };
                for batch in reader {
                    let item = batch.map_err(|e| self.csv_error(e));
                    let failed = item.is_err();
                    if !send(item) || failed {
                        return;
                    }
                }
            }
        }
    }

    fn csv_reader(&self) -> Result<arrow_csv::Reader<LineGuard<BufReader<File>>>> {
        let file = File::open(&self.path).map_err(|e| DataError::input(&self.path, e.to_string()))?;
        let reader = LineGuard::new(BufReader::with_capacity(1 << 20, file), self.csv.max_line_bytes);
        arrow_csv::ReaderBuilder::new(self.schema.clone())
            .with_format(csv_format(&self.csv)?)
            .with_batch_size(BATCH_ROWS)
            .build(reader)
            .map_err(|e| DataError::input(&self.path, e.to_string()))
    }

    /// Turns arrow-csv's message into one that names the column, or into a widening request.
    fn csv_error(&self, e: ArrowError) -> ScanError {
        let text = e.to_string();
        if let Some(parsed) = ParseFailure::from_message(&text) {
            let field = self.schema.fields().get(parsed.column);
            let name = field.map(|f| f.name().as_str()).unwrap_or("?");
            let is_int = field.is_some_and(|f| f.data_type().is_integer());
            if is_int && parsed.value.trim().parse::<f64>().is_ok() {
                return ScanError::Widen(parsed.column);
            }
            let hint = if self.csv.infer_rows > 0 {
                format!(
                    " (the type was inferred from the first {} rows; the column mixes types, or pass \
                     --infer-rows 0 to infer from the whole file)",
                    self.csv.infer_rows
                )
            } else {
                " (the column mixes types)".to_owned()
            };
            return ScanError::Data(DataError::input(
                &self.path,
                format!(
                    "line {}, column '{}': value '{}' is not {}{}",
                    parsed.line,
                    name,
                    parsed.value,
                    type_name(field.map(|f| f.data_type()).unwrap_or(&DataType::Utf8)),
                    hint
                ),
            ));
        }
        ScanError::Data(DataError::input(&self.path, describe_csv_message(&text, &self.schema)))
    }
}

/// Rewrites arrow-csv's messages for people: ragged rows as counts, "field N" as the column's name.
fn describe_csv_message(text: &str, schema: &Schema) -> String {
    let text = text.trim_start_matches("Csv error: ").trim_start_matches("Parser error: ");
    // "Encountered unequal lengths between records on CSV file. Expected 2 records, found 1
    // records at line 3"
    if let Some(rest) = text.split_once("Expected ").map(|p| p.1)
        && let Some((expected, rest)) = rest.split_once(" records, found ")
        && let Some((found, line)) = rest.split_once(" records at line ")
    {
        return format!(
            "line {}: {found} fields where the header has {expected} (a ragged row or an unbalanced quote)",
            line.trim()
        );
    }
    let column = |idx: usize| schema.fields().get(idx).map(|f| format!("column '{}'", f.name()));
    let not_utf8 = "is not valid UTF-8 (save the file as UTF-8)";
    // While inferring: "... invalid UTF-8 in field 1 near byte index 0 at line 2" (0-based field).
    if let Some(rest) = text.split_once("invalid UTF-8 in field ").map(|p| p.1)
        && let Some((field, rest)) = rest.split_once(" near byte index ")
        && let Some(line) = rest.split_once(" at line ").map(|p| p.1)
        && let Ok(idx) = field.trim().parse::<usize>()
    {
        let col = column(idx).unwrap_or_else(|| format!("field {}", idx + 1));
        return format!("line {}, {col}: {not_utf8}", line.trim());
    }
    // While decoding: "Encountered invalid UTF-8 data for line 2 and field 2" (1-based field).
    if let Some(rest) = text.split_once("invalid UTF-8 data for line ").map(|p| p.1)
        && let Some((line, field)) = rest.split_once(" and field ")
        && let Ok(idx) = field.trim().parse::<usize>()
    {
        let col = column(idx.saturating_sub(1)).unwrap_or_else(|| format!("field {idx}"));
        return format!("line {}, {col}: {not_utf8}", line.trim());
    }
    text.to_owned()
}

/// A failure to parse one CSV value, recovered from arrow-csv's message.
struct ParseFailure {
    value: String,
    column: usize,
    line: String,
}

impl ParseFailure {
    fn from_message(text: &str) -> Option<Self> {
        // "Error while parsing value '{v}' as type '{t}' for column {c} at line {l}. Row data: ..."
        let rest = text.split_once("Error while parsing value '")?.1;
        let (value, rest) = rest.split_once("' as type '")?;
        let rest = rest.split_once("' for column ")?.1;
        let (column, rest) = rest.split_once(" at line ")?;
        let line = rest.split(['.', ' ']).next()?.to_owned();
        Some(ParseFailure { value: value.to_owned(), column: column.trim().parse().ok()?, line })
    }
}

fn type_name(t: &DataType) -> &'static str {
    match t {
        t if t.is_integer() => "an integer",
        t if t.is_floating() => "a number",
        DataType::Boolean => "a boolean",
        DataType::Date32 | DataType::Date64 => "a date",
        DataType::Timestamp(..) => "a timestamp",
        _ => "text",
    }
}

enum ScanError {
    Widen(usize),
    Data(DataError),
}

/// The receiving end of a scan.
struct BatchStream {
    rx: Receiver<std::result::Result<NumberedBatch, ScanError>>,
}

impl Iterator for BatchStream {
    type Item = std::result::Result<NumberedBatch, ScanError>;
    fn next(&mut self) -> Option<Self::Item> {
        self.rx.recv().ok()
    }
}

fn detect_format(path: &Path) -> Result<Format> {
    let ext = path.extension().and_then(|e| e.to_str()).map(|e| e.to_ascii_lowercase());
    match ext.as_deref() {
        Some("parquet" | "pq") => return Ok(Format::Parquet),
        Some("csv" | "tsv" | "txt") => return Ok(Format::Csv),
        _ => {}
    }
    let mut magic = [0u8; 4];
    let mut f = File::open(path).map_err(|e| DataError::input(path, e.to_string()))?;
    let n = f.read(&mut magic).map_err(|e| DataError::input(path, e.to_string()))?;
    Ok(if n == 4 && &magic == b"PAR1" { Format::Parquet } else { Format::Csv })
}

fn null_regex(markers: &[String]) -> Result<regex::Regex> {
    let alternatives: Vec<String> = markers.iter().map(|m| regex::escape(m)).collect();
    regex::Regex::new(&format!("^(?:{})$", alternatives.join("|")))
        .map_err(|e| DataError::invalid(format!("bad null markers: {e}")))
}

fn csv_format(csv: &CsvOptions) -> Result<arrow_csv::reader::Format> {
    Ok(arrow_csv::reader::Format::default()
        .with_header(csv.has_header)
        .with_delimiter(csv.delimiter)
        .with_quote(csv.quote)
        .with_null_regex(null_regex(&csv.null_markers)?))
}

fn infer_csv_schema(path: &Path, csv: &CsvOptions) -> Result<SchemaRef> {
    let file = File::open(path).map_err(|e| DataError::input(path, e.to_string()))?;
    let reader = LineGuard::new(BufReader::with_capacity(1 << 20, file), csv.max_line_bytes);
    let limit = (csv.infer_rows > 0).then_some(csv.infer_rows);
    let (schema, _) = csv_format(csv)?.infer_schema(reader, limit).map_err(|e| {
        // Name the columns in the message if at least the header reads.
        let header = File::open(path)
            .ok()
            .and_then(|f| csv_format(csv).ok()?.infer_schema(BufReader::new(f), Some(0)).ok())
            .map(|(s, _)| s)
            .unwrap_or_else(Schema::empty);
        DataError::input(path, describe_csv_message(&e.to_string(), &header))
    })?;
    // A header-only file infers every column as Null; read them as text.
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| {
            if f.data_type() == &DataType::Null {
                f.as_ref().clone().with_data_type(DataType::Utf8)
            } else {
                f.as_ref().clone()
            }
        })
        .collect();
    Ok(Arc::new(Schema::new(fields)))
}

fn open_parquet(path: &Path) -> Result<parquet::arrow::arrow_reader::ParquetRecordBatchReader> {
    let file = File::open(path).map_err(|e| DataError::input(path, e.to_string()))?;
    parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .and_then(|b| b.with_batch_size(BATCH_ROWS).build())
        .map_err(|e| DataError::input(path, format!("not a readable Parquet file: {e}")))
}

fn parquet_schema(path: &Path) -> Result<SchemaRef> {
    let file = File::open(path).map_err(|e| DataError::input(path, e.to_string()))?;
    let builder = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(|e| DataError::input(path, format!("not a readable Parquet file: {e}")))?;
    Ok(builder.schema().clone())
}

fn check_unique_names(path: &Path, schema: &Schema) -> Result<()> {
    let mut seen = std::collections::HashSet::new();
    for f in schema.fields() {
        if !seen.insert(f.name().as_str()) {
            return Err(DataError::input(path, format!("column '{}' appears more than once in the header", f.name())));
        }
    }
    Ok(())
}

/// A reader that fails on a line longer than a limit, so one runaway field cannot take the
/// memory of the machine: the CSV parser holds a whole record in memory.
struct LineGuard<R> {
    inner: R,
    limit: usize,
    current: usize,
}

impl<R> LineGuard<R> {
    fn new(inner: R, limit: usize) -> Self {
        LineGuard { inner, limit, current: 0 }
    }
}

impl<R: Read> Read for LineGuard<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        let mut current = self.current;
        let mut start = 0;
        for nl in memchr::memchr_iter(b'\n', &buf[..n]) {
            if current + (nl - start) > self.limit {
                return Err(line_too_long(self.limit));
            }
            current = 0;
            start = nl + 1;
        }
        current += n - start;
        if current > self.limit {
            return Err(line_too_long(self.limit));
        }
        self.current = current;
        Ok(n)
    }
}

fn line_too_long(limit: usize) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        format!("a line is longer than {} MiB: a runaway quoted field, or not a CSV file", limit >> 20),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &tempfile::TempDir, name: &str, body: &[u8]) -> PathBuf {
        let p = dir.path().join(name);
        std::fs::write(&p, body).expect("write");
        p
    }

    fn open_err(p: &Path) -> String {
        let mut t = match Table::open(p, &CsvOptions::default()) {
            Ok(t) => t,
            Err(e) => return e.to_string(),
        };
        t.read_all().map(|_| String::new()).unwrap_or_else(|e| e.to_string())
    }

    #[test]
    fn csv_types_are_inferred_and_nulls_follow_pandas() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = write(&dir, "a.csv", b"age,name,score\n31,ann,1.5\nNA,bob,\n40,\"c,d\",NaN\n");
        let mut t = Table::open(&p, &CsvOptions::default()).expect("open");
        let types: Vec<_> = t.schema().fields().iter().map(|f| f.data_type().clone()).collect();
        assert_eq!(types, vec![DataType::Int64, DataType::Utf8, DataType::Float64]);
        let batches = t.read_all().expect("read");
        let b = &batches[0];
        assert_eq!(b.num_rows(), 3);
        assert_eq!(b.column(0).null_count(), 1);
        assert_eq!(b.column(2).null_count(), 2);
    }

    #[test]
    fn an_integer_column_with_late_decimals_is_widened() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut body = String::from("x\n");
        for i in 0..20 {
            body.push_str(&format!("{i}\n"));
        }
        body.push_str("2.5\n");
        let p = write(&dir, "w.csv", body.as_bytes());
        let opts = CsvOptions { infer_rows: 5, ..CsvOptions::default() };
        let mut t = Table::open(&p, &opts).expect("open");
        assert_eq!(t.schema().field(0).data_type(), &DataType::Int64);
        let rows: usize = t.read_all().expect("read").iter().map(|b| b.num_rows()).sum();
        assert_eq!(rows, 21);
        assert_eq!(t.schema().field(0).data_type(), &DataType::Float64);
    }

    #[test]
    fn bad_files_get_messages_naming_line_and_column() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut body = String::from("a,b\n");
        for i in 0..20 {
            body.push_str(&format!("{i},{i}\n"));
        }
        body.push_str("7,seven\n");
        let p = write(&dir, "mixed.csv", body.as_bytes());
        let opts = CsvOptions { infer_rows: 5, ..CsvOptions::default() };
        let mut t = Table::open(&p, &opts).expect("open");
        let err = t.read_all().expect_err("mixed types").to_string();
        assert!(err.contains("column 'b'") && err.contains("'seven'") && err.contains("line"), "{err}");

        let err = open_err(&write(&dir, "ragged.csv", b"a,b\n1,2\n3\n"));
        assert!(err.contains("ragged.csv: line 3: 1 fields where the header has 2"), "{err}");
        let err = open_err(&write(&dir, "empty.csv", b""));
        assert!(err.contains("empty"), "{err}");
        let err = open_err(&write(&dir, "utf8.csv", b"a,b\n1,\xff\xfe\n"));
        assert!(err.contains("line 2, column 'b': is not valid UTF-8"), "{err}");
        let err = open_err(&write(&dir, "dup.csv", b"a,a\n1,2\n"));
        assert!(err.contains("more than once"), "{err}");
        let err = open_err(&write(&dir, "bad.parquet", b"PAR1 not really"));
        assert!(err.contains("Parquet"), "{err}");
    }

    #[test]
    fn a_huge_field_is_refused_not_buffered() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut body = b"a,b\n1,\"".to_vec();
        body.extend(std::iter::repeat_n(b'x', 3 << 20));
        body.extend(b"\"\n");
        let p = write(&dir, "huge.csv", &body);
        let opts = CsvOptions { max_line_bytes: 1 << 20, ..CsvOptions::default() };
        let err = Table::open(&p, &opts).map(|_| ()).expect_err("huge field").to_string();
        assert!(err.contains("longer than 1 MiB"), "{err}");
    }

    #[test]
    fn header_only_reads_as_zero_rows_of_text() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = write(&dir, "h.csv", b"a,b\n");
        let mut t = Table::open(&p, &CsvOptions::default()).expect("open");
        assert_eq!(t.schema().field(0).data_type(), &DataType::Utf8);
        let rows: usize = t.read_all().expect("read").iter().map(|b| b.num_rows()).sum();
        assert_eq!(rows, 0);
    }
}
