//! Measures the store's cost of one 1,000-metric `log_batch` (no HTTP, no JSON).
use shipyard_core::entities::Metric;
use shipyard_store::tracking::NewRun;
use shipyard_store::{Database, DatabaseUri};

#[tokio::main]
async fn main() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::connect(&DatabaseUri::Sqlite(dir.path().join("b.db")))
        .await
        .unwrap();
    let run = db
        .create_run(NewRun {
            experiment_id: "0".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .info
        .run_id;
    let batches = 200;
    let t0 = std::time::Instant::now();
    let c0 = cpu();
    for k in 0..batches {
        let metrics: Vec<Metric> = (0..1000)
            .map(|j| Metric {
                key: format!("k{}", j % 10),
                value: (j as f64) * 0.37,
                timestamp: 1_795_572_411_000,
                step: k * 100 + j / 10,
                dataset_name: None,
                dataset_digest: None,
                model_id: None,
                run_id: None,
            })
            .collect();
        db.log_batch(&run, metrics, vec![], vec![]).await.unwrap();
    }
    let wall = t0.elapsed().as_secs_f64();
    let cpu_s = cpu() - c0;
    println!(
        "per batch: wall {:.3} ms, process cpu {:.3} ms",
        wall * 1000.0 / batches as f64,
        cpu_s * 1000.0 / batches as f64
    );
}

fn cpu() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    let f: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap()
        .split_whitespace()
        .collect();
    (f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap()) / 100.0
}
