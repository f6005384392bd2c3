//! Replays every committed fuzz input through its target, so a crash found
//! once by fuzzing stays fixed. Run with `cargo test -p gdp-fuzz`.

use std::path::Path;

#[test]
fn every_corpus_input_runs_clean() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    let mut total = 0;
    for target in gdp_fuzz::TARGETS {
        let dir = root.join(target);
        let mut entries: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("corpus folder {}: {e}", dir.display()))
            .map(|e| e.expect("readable corpus entry").path())
            .collect();
        entries.sort();
        assert!(!entries.is_empty(), "corpus for {target} is empty");
        for path in &entries {
            let data = std::fs::read(path).expect("readable corpus file");
            let ok = std::panic::catch_unwind(|| gdp_fuzz::run(target, &data));
            assert!(
                matches!(ok, Ok(true)),
                "fuzz target {target} failed on {}",
                path.display()
            );
        }
        total += entries.len();
    }
    assert!(total >= gdp_fuzz::TARGETS.len());
}

#[test]
fn targets_survive_edge_inputs() {
    let long = vec![0xffu8; 4096];
    for target in gdp_fuzz::TARGETS {
        for data in [&[][..], &[0], &[0xff; 80], &long] {
            assert!(gdp_fuzz::run(target, data));
        }
    }
}
