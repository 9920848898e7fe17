//! A metric's history reduced to what a chart of a given width can show, without losing a
//! spike: the x range is cut into equal buckets and each bucket keeps its smallest and largest
//! value (and its mean and count), computed in SQL so a metric of a million steps never leaves
//! the database as a million rows. A chart draws each bucket's min and max, so any single
//! outlier stays visible at any zoom; zooming asks again for the narrower range, where the
//! buckets are finer, down to the exact points.
//!
//! MLflow's UI instead asks for 320 points picked by an even stride over the steps, so the
//! extremes between two picked steps vanish (mlflow#11444, #11660, #11481).

use shipyard_core::{Error, Result};

use crate::db::Database;
use crate::tracking::run_by_id;

/// The x axis a series is cut along.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeriesAxis {
    /// The logged step.
    Step,
    /// The logged timestamp, in ms (a relative-time axis is this, shifted by the series' start).
    Time,
}

impl SeriesAxis {
    fn column(self) -> &'static str {
        match self {
            SeriesAxis::Step => "step",
            SeriesAxis::Time => "timestamp",
        }
    }
}

/// What part of which series to reduce, and to how many buckets.
#[derive(Debug, Clone)]
pub struct SeriesQuery {
    pub run_id: String,
    pub key: String,
    pub axis: SeriesAxis,
    /// The x range wanted, both ends included; `None` for the series' own ends.
    pub from: Option<i64>,
    pub to: Option<i64>,
    /// About how many buckets (the chart's width in pixels): at most this many come back.
    pub buckets: u32,
}

/// The most buckets one answer holds (a wide screen's pixels, twice).
pub const MAX_BUCKETS: u32 = 8_192;

/// One bucket of a series: the values logged with `x_first <= x <= x_last`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SeriesBucket {
    pub x_first: i64,
    pub x_last: i64,
    pub min: f64,
    pub max: f64,
    pub mean: f64,
    /// Values in the bucket (NaN left out).
    pub count: i64,
}

/// A series reduced for one chart.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricSeries {
    /// The x range of the whole series (not only the part asked for); `None` when it is empty.
    pub extent: Option<(i64, i64)>,
    /// Values in the range asked for (NaN left out).
    pub points: i64,
    /// Whether every bucket is one logged value (the range held no more values than buckets).
    pub exact: bool,
    /// The buckets in x order; empty ones are absent.
    pub buckets: Vec<SeriesBucket>,
}

impl Database {
    /// `query`'s series reduced to at most `query.buckets` buckets of equal x width, each with
    /// its min, max, mean and count; the exact values when the range holds no more than that.
    /// NaN values are left out (a chart cannot place them); infinities are stored, as MLflow
    /// stores them, as the largest finite doubles.
    pub async fn metric_series(&self, query: SeriesQuery) -> Result<MetricSeries> {
        if query.buckets == 0 || query.buckets > MAX_BUCKETS {
            return Err(Error::invalid(format!(
                "Invalid value {} for parameter 'buckets': it must be between 1 and {MAX_BUCKETS}",
                query.buckets
            )));
        }
        if let (Some(from), Some(to)) = (query.from, query.to)
            && from > to
        {
            return Err(Error::invalid(format!("Invalid range: 'from' ({from}) is after 'to' ({to})")));
        }
        let x = query.axis.column();
        let (run_key, extent) = {
            let (run_id, key) = (query.run_id.clone(), query.key.clone());
            self.read(move |c| {
                Box::pin(async move {
                    let run = run_by_id(c, &run_id, false).await?;
                    // Two statements, so each is an index probe on the step axis (a statement
                    // with both MIN and MAX scans the series).
                    let mut ends = [None, None];
                    for (end, aggregate) in ends.iter_mut().zip(["MIN", "MAX"]) {
                        let sql = c.stmt(
                            &format!(
                                "SELECT {aggregate}({x}) AS x FROM metrics WHERE run_key = $1 AND key = $2 AND is_nan = 0"
                            ),
                            [run.key.into(), key.as_str().into()],
                        );
                        *end = match c.fetch_all(sql).await?.first() {
                            Some(row) => row.get::<Option<i64>>("x")?,
                            None => None,
                        };
                    }
                    Ok((run.key, match ends {
                        [Some(lo), Some(hi)] => Some((lo, hi)),
                        _ => None,
                    }))
                })
            })
            .await?
        };
        let Some((lo, hi)) = extent else {
            return Ok(MetricSeries { extent: None, points: 0, exact: true, buckets: Vec::new() });
        };
        let from = query.from.unwrap_or(lo).max(lo);
        let to = query.to.unwrap_or(hi).min(hi);
        if from > to {
            return Ok(MetricSeries { extent, points: 0, exact: true, buckets: Vec::new() });
        }
        // One pass over the range, each value folded into its bucket as it arrives (no sort,
        // nothing held but the buckets and, while they fit, the values). A long range is cut at
        // a bucket boundary into parts read at once on separate connections, which share the
        // bucket grid and are merged.
        let grid = Reducer::new(from, to, query.buckets);
        let parts = if grid.buckets.len() >= 2 && (to - from) as u128 >= PARALLEL_SPAN { PARTS } else { 1 };
        let per_part = grid.buckets.len().div_ceil(parts);
        let scans: Vec<_> = (0..parts)
            .map(|i| {
                let lo_bucket = (i * per_part) as i64;
                let part_from = from.saturating_add(lo_bucket.saturating_mul(grid.width));
                let part_to = if i + 1 == parts {
                    to
                } else {
                    from.saturating_add((lo_bucket + per_part as i64).saturating_mul(grid.width)) - 1
                };
                let (mut reducer, key) = (grid.empty_like(), query.key.clone());
                self.read(move |c| {
                    Box::pin(async move {
                        let sql = c.stmt(
                            &format!(
                                "SELECT {x}, value FROM metrics \
                             WHERE run_key = $1 AND key = $2 AND is_nan = 0 AND {x} >= $3 AND {x} <= $4"
                            ),
                            [run_key.into(), key.as_str().into(), part_from.into(), part_to.min(to).into()],
                        );
                        c.for_each_pair(sql, |x, value| reducer.add(x, value)).await?;
                        Ok(reducer)
                    })
                })
            })
            .collect();
        let mut merged = grid;
        for part in futures::future::try_join_all(scans).await? {
            merged.merge(part);
        }
        Ok(merged.finish(extent))
    }
}

/// Ranges at least this wide are read in [`PARTS`] parts at once.
const PARALLEL_SPAN: u128 = 100_000;
const PARTS: usize = 2;

/// Equal-width buckets over `[from, to]`, filled one value at a time.
struct Reducer {
    from: i64,
    width: i64,
    buckets: Vec<Option<SeriesBucket>>,
    /// The values themselves, while there are no more than buckets.
    exact: Vec<(i64, f64)>,
    points: i64,
}

impl Reducer {
    fn new(from: i64, to: i64, buckets: u32) -> Self {
        let span = u128::try_from(i128::from(to) - i128::from(from) + 1).unwrap_or(1);
        let width = i64::try_from(span.div_ceil(u128::from(buckets))).unwrap_or(i64::MAX);
        let count = usize::try_from(span.div_ceil(width.max(1) as u128)).unwrap_or(1).min(buckets as usize);
        Reducer { from, width: width.max(1), buckets: vec![None; count], exact: Vec::new(), points: 0 }
    }

    /// A reducer over the same grid, with nothing in it.
    fn empty_like(&self) -> Reducer {
        Reducer {
            from: self.from,
            width: self.width,
            buckets: vec![None; self.buckets.len()],
            exact: Vec::new(),
            points: 0,
        }
    }

    /// Adds what `other` (same grid) holds.
    fn merge(&mut self, other: Reducer) {
        self.points += other.points;
        if self.exact.len() + other.exact.len() <= self.buckets.len() + 1 {
            self.exact.extend(other.exact);
        } else {
            self.exact.truncate(self.buckets.len() + 1);
        }
        for (mine, theirs) in self.buckets.iter_mut().zip(other.buckets) {
            match (mine.as_mut(), theirs) {
                (_, None) => {}
                (None, Some(b)) => *mine = Some(b),
                (Some(a), Some(b)) => {
                    a.x_first = a.x_first.min(b.x_first);
                    a.x_last = a.x_last.max(b.x_last);
                    a.min = a.min.min(b.min);
                    a.max = a.max.max(b.max);
                    a.mean += b.mean;
                    a.count += b.count;
                }
            }
        }
    }

    fn add(&mut self, x: i64, value: f64) {
        self.points += 1;
        if self.exact.len() <= self.buckets.len() {
            self.exact.push((x, value));
        }
        let index = ((i128::from(x) - i128::from(self.from)) / i128::from(self.width)) as usize;
        let Some(slot) = self.buckets.get_mut(index) else { return };
        match slot {
            None => *slot = Some(SeriesBucket { x_first: x, x_last: x, min: value, max: value, mean: value, count: 1 }),
            Some(b) => {
                b.x_first = b.x_first.min(x);
                b.x_last = b.x_last.max(x);
                b.min = b.min.min(value);
                b.max = b.max.max(value);
                // The running sum until `finish` turns it into the mean.
                b.mean += value;
                b.count += 1;
            }
        }
    }

    fn finish(mut self, extent: Option<(i64, i64)>) -> MetricSeries {
        if self.points <= self.buckets.len() as i64 {
            self.exact.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.total_cmp(&b.1)));
            let buckets = self
                .exact
                .into_iter()
                .map(|(x, v)| SeriesBucket { x_first: x, x_last: x, min: v, max: v, mean: v, count: 1 })
                .collect();
            return MetricSeries { extent, points: self.points, exact: true, buckets };
        }
        let buckets: Vec<SeriesBucket> =
            self.buckets.into_iter().flatten().map(|b| SeriesBucket { mean: b.mean / b.count as f64, ..b }).collect();
        let exact = buckets.iter().all(|b| b.count == 1);
        MetricSeries { extent, points: self.points, exact, buckets }
    }
}
