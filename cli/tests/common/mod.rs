//! Helpers the CLI's end-to-end tests share: run the binary, a fresh output
//! folder, and what a run printed.

// Each test binary compiles this module and uses only part of it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Runs `stampede args…` to completion.
pub fn stampede(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_stampede"))
        .args(args)
        .output()
        .expect("the binary runs")
}

/// `stampede load args… extra… --out out`.
pub fn load(args: &[&str], extra: &[&str], out: &Path) -> Output {
    let mut all = vec!["load"];
    all.extend_from_slice(args);
    all.extend_from_slice(extra);
    all.extend_from_slice(&["--out", out.to_str().expect("a UTF-8 path")]);
    stampede(&all)
}

/// An empty (not yet created) folder named `name` under the target's temp dir.
pub fn fresh_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// What a run printed, both streams, for assertion messages.
pub fn say(o: &Output) -> String {
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}
