//! Measures the cost of one trivial query through the store's pool, and of one `get_run`.
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
    let n = 2000;
    let (c0, t0) = (cpu(), std::time::Instant::now());
    for _ in 0..n {
        db.get_run(&run).await.unwrap();
    }
    println!(
        "get_run: wall {:.1} us, cpu {:.1} us",
        t0.elapsed().as_secs_f64() * 1e6 / n as f64,
        (cpu() - c0) * 1e6 / n as f64
    );
    let (c0, t0) = (cpu(), std::time::Instant::now());
    for _ in 0..n {
        db.get_experiment("0").await.unwrap();
    }
    println!(
        "get_experiment: wall {:.1} us, cpu {:.1} us",
        t0.elapsed().as_secs_f64() * 1e6 / n as f64,
        (cpu() - c0) * 1e6 / n as f64
    );
    let (c0, t0) = (cpu(), std::time::Instant::now());
    for i in 0..n {
        db.log_metric(
            &run,
            shipyard_core::entities::Metric {
                key: "m".into(),
                value: 1.0,
                timestamp: i,
                step: i,
                dataset_name: None,
                dataset_digest: None,
                model_id: None,
                run_id: None,
            },
        )
        .await
        .unwrap();
    }
    println!(
        "log_metric: wall {:.1} us, cpu {:.1} us",
        t0.elapsed().as_secs_f64() * 1e6 / n as f64,
        (cpu() - c0) * 1e6 / n as f64
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
