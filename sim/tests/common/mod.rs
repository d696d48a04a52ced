//! Test support shared by the sweep tests.
// Each test binary uses only some of these helpers.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// Every shipped scenario file (`scenarios/*.toml`), sorted by path.
pub fn shipped_scenario_files() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .map(|e| e.expect("a directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    files
}

/// Runs `f` on every item, spread over two threads (the CI machine has two
/// cores); a panic in either lane fails the caller with that panic.
pub fn on_two_cores<T: Sync>(items: &[T], f: impl Fn(&T) + Sync) {
    std::thread::scope(|scope| {
        let lanes: Vec<_> = (0..2usize)
            .map(|lane| {
                let f = &f;
                scope.spawn(move || items.iter().skip(lane).step_by(2).for_each(f))
            })
            .collect();
        for lane in lanes {
            if let Err(panic) = lane.join() {
                std::panic::resume_unwind(panic);
            }
        }
    });
}
