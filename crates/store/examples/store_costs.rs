//! CPU cost of store operations without HTTP: `get_run`, `get_experiment`, `log_metric` and a
//! 1,000-metric `log_batch`, on a fresh SQLite file. Used to separate the store's cost from the
//! server's when profiling (`bench/tracking` measures the whole server against MLflow).
//!
//! cargo run --release -p shipyard-store --example store_costs

use std::time::Instant;

use shipyard_core::entities::Metric;
use shipyard_store::tracking::NewRun;
use shipyard_store::{Database, DatabaseUri};

type Res<T> = Result<T, Box<dyn std::error::Error>>;

fn metric(key: String, value: f64, timestamp: i64, step: i64) -> Metric {
    Metric { key, value, timestamp, step, dataset_name: None, dataset_digest: None, model_id: None, run_id: None }
}

/// User+system CPU seconds of this process.
fn cpu_s() -> Res<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat")?;
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or("").split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
    Ok((ticks(11) + ticks(12)) / 100.0)
}

async fn measure<F, Fut>(label: &str, n: u32, mut op: F) -> Res<()>
where
    F: FnMut(u32) -> Fut,
    Fut: std::future::Future<Output = shipyard_core::Result<()>>,
{
    let (c0, t0) = (cpu_s()?, Instant::now());
    for i in 0..n {
        op(i).await?;
    }
    let per = |x: f64| x * 1e6 / f64::from(n);
    println!("{label}: wall {:.1} us, cpu {:.1} us", per(t0.elapsed().as_secs_f64()), per(cpu_s()? - c0));
    Ok(())
}

#[tokio::main]
async fn main() -> Res<()> {
    let dir = tempfile::tempdir()?;
    let db = Database::connect(&DatabaseUri::Sqlite(dir.path().join("costs.db"))).await?;
    let run = db.create_run(NewRun { experiment_id: "0".into(), ..Default::default() }).await?.info.run_id;
    measure("get_run", 2000, |_| async { db.get_run(&run).await.map(drop) }).await?;
    measure("get_experiment", 2000, |_| async { db.get_experiment("0").await.map(drop) }).await?;
    measure("log_metric", 2000, |i| {
        let m = metric("m".into(), f64::from(i), i64::from(i), i64::from(i));
        let (db, run) = (&db, &run);
        async move { db.log_metric(run, m).await }
    })
    .await?;
    measure("log_batch of 1,000 metrics", 200, |k| {
        let batch: Vec<Metric> = (0..1000i64)
            .map(|j| metric(format!("k{}", j % 10), j as f64 * 0.37, 1_795_572_411_000, i64::from(k) * 100 + j / 10))
            .collect();
        let (db, run) = (&db, &run);
        async move { db.log_batch(run, batch, vec![], vec![]).await }
    })
    .await?;
    Ok(())
}
