//! Every malformed scenario in `tests/bad-scenarios/` gets one clear line —
//! file, line, field, what is wrong — and exit status 2, never a panic.

use std::path::Path;
use std::process::Command;

/// (file, the line the error must point at, the field it must name, a phrase it must contain)
const CORPUS: &[(&str, usize, &str, &str)] = &[
    (
        "missing-name.toml",
        1,
        "(top level)",
        "missing field `name`",
    ),
    (
        "unknown-field.toml",
        10,
        "shoppers.colour",
        "unknown field `colour`",
    ),
    ("wrong-type.toml", 9, "shoppers.count", "invalid type"),
    (
        "negative-stock.toml",
        6,
        "catalog[0].stock",
        "invalid value",
    ),
    (
        "impossible-probability.toml",
        10,
        "shoppers.double_click",
        "0.0 to 1.0",
    ),
    (
        "unknown-arrival-shape.toml",
        12,
        "shoppers.arrival.shape",
        "unknown variant `tsunami`, expected one of `constant`",
    ),
    ("duplicate-sku.toml", 17, "catalog[1].sku", "appears twice"),
    (
        "unknown-invariant.toml",
        2,
        "invariants[1]",
        "\"no_overselling\" is not one of",
    ),
    (
        "unknown-partition-host.toml",
        18,
        "faults.partitions[0].b",
        "\"mainframe\" is not one of",
    ),
    ("not-toml.toml", 2, "(file)", "not valid TOML"),
    ("unknown-design.toml", 2, "design", "unknown design"),
];

#[test]
fn every_malformed_scenario_is_one_clear_line_and_exit_2() {
    // Proves: for each bad file, `stampede run` exits 2 and prints exactly one line naming the file,
    // the line, the field and what is allowed — and writes no output folder.
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/bad-scenarios");
    let out = std::env::temp_dir().join(format!("stampede-bad-{}", std::process::id()));
    for (file, line, field, phrase) in CORPUS {
        let path = dir.join(file);
        let output = Command::new(env!("CARGO_BIN_EXE_stampede"))
            .arg("run")
            .arg(&path)
            .arg("--out")
            .arg(&out)
            .output()
            .expect("stampede runs");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{file}: {stderr}");
        assert_eq!(
            stderr.trim_end().lines().count(),
            1,
            "{file}: not one line: {stderr}"
        );
        let expected = format!("error: {}:{line}: {field}: ", path.display());
        assert!(
            stderr.starts_with(&expected),
            "{file}:\n  got      {stderr}  expected {expected}…"
        );
        assert!(stderr.contains(phrase), "{file}: {stderr} lacks {phrase:?}");
        assert!(!out.exists(), "{file}: a failed run wrote output");
    }
}

#[test]
fn bad_command_line_values_exit_2_with_a_clear_message() {
    // Proves: a bad preset, a bad switch, or a missing file are one-line errors with exit 2.
    let good = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios/double-click.toml");
    for (args, phrase) in [
        (vec!["--design", "bogus"], "unknown design"),
        (
            vec!["--set", "inventory=yolo"],
            "switch inventory takes one of",
        ),
        (vec!["--set", "nonsense"], "expected switch=value"),
    ] {
        let output = Command::new(env!("CARGO_BIN_EXE_stampede"))
            .arg("run")
            .arg(&good)
            .args(&args)
            .output()
            .expect("runs");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(phrase), "{args:?}: {stderr}");
    }
    let output = Command::new(env!("CARGO_BIN_EXE_stampede"))
        .args(["run", "no/such/file.toml"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("cannot read it"));
}
