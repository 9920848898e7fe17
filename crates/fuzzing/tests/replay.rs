//! Every fuzz seed and every saved crash input, replayed through its target under plain
//! `cargo test` (stable Rust, no fuzzer): a crash the fuzzer found and we fixed stays fixed.
//! A crash input goes in `fuzz/regressions/<target>/` (see `scripts/fuzz.sh`).

use std::path::{Path, PathBuf};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz")
}

/// The files directly in `dir` (none when it does not exist), sorted.
fn inputs(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(entries) => entries.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.is_file()).collect(),
        Err(_) => Vec::new(),
    };
    files.sort();
    files
}

#[test]
fn every_seed_and_saved_crash_input_is_handled() {
    let mut replayed = 0;
    for (name, target) in shipyard_fuzzing::TARGETS {
        let seeds = inputs(&fuzz_dir().join("seeds").join(name));
        assert!(!seeds.is_empty(), "target {name} has no seeds in fuzz/seeds/{name}");
        for file in seeds.iter().chain(&inputs(&fuzz_dir().join("regressions").join(name))) {
            let bytes = std::fs::read(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            // A panic names the target and the file.
            let outcome = std::panic::catch_unwind(|| target(&bytes));
            assert!(outcome.is_ok(), "target {name} panicked on {}", file.display());
            replayed += 1;
        }
    }
    println!("replayed {replayed} inputs");
}

#[test]
fn every_target_has_a_fuzz_target_file() {
    for (name, _) in shipyard_fuzzing::TARGETS {
        let file = fuzz_dir().join("fuzz_targets").join(format!("{name}.rs"));
        let text = std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        assert!(text.contains(&format!("shipyard_fuzzing::{name}(")), "{} does not call its target", file.display());
    }
}
