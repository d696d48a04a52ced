//! The two files users hand the simulator — scenario TOML and plan JSON —
//! never crash it: any text, and any corruption of a real file, parses into
//! something valid or is refused with an error that names where (file, line,
//! field) and why. A refusal changes nothing; an acceptance has passed
//! `validate`.

use proptest::prelude::*;
use stampede_server::Design;
use stampede_sim::{Plan, Scenario, scenarios};
use std::path::Path;

/// The shipped scenario files, as text.
fn shipped() -> Vec<(String, String)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read_to_string(&p).unwrap())
        })
        .collect()
}

/// A small plan's JSON, as `stampede shrink` writes it.
fn plan_json() -> String {
    let plan = Plan::generate(&scenarios::smoke(), Design::reference(), 7);
    serde_json::to_string_pretty(&plan).unwrap()
}

/// One edit of a text: overwrite a byte, delete a run of bytes, or insert a
/// token users (and fuzzers) like: a huge or negative number, a quote, a
/// bracket, a newline.
#[derive(Clone, Debug)]
enum Edit {
    Overwrite(usize, u8),
    Delete(usize, usize),
    Insert(usize, &'static str),
}

const TOKENS: &[&str] = &[
    "0",
    "-1",
    "18446744073709551616",
    "1e308",
    "nan",
    "\"",
    "[",
    "]",
    "{",
    "}",
    "\n",
    "=",
    ",",
    "[[catalog]]\n",
    "null",
    "true",
];

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(at, b)| Edit::Overwrite(at, b)),
        (any::<usize>(), 1usize..40).prop_map(|(at, n)| Edit::Delete(at, n)),
        (any::<usize>(), prop::sample::select(TOKENS)).prop_map(|(at, t)| Edit::Insert(at, t)),
    ]
}

fn apply(text: &str, edits: &[Edit]) -> String {
    let mut bytes = text.as_bytes().to_vec();
    for e in edits {
        let len = bytes.len().max(1);
        match *e {
            Edit::Overwrite(at, b) => {
                if !bytes.is_empty() {
                    bytes[at % len] = b;
                }
            }
            Edit::Delete(at, n) => {
                let at = at % len;
                let end = (at + n).min(bytes.len());
                bytes.drain(at.min(end)..end);
            }
            Edit::Insert(at, token) => {
                let at = at % (bytes.len() + 1);
                bytes.splice(at..at, token.bytes());
            }
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

/// A scenario parse either validates or names a line in the text and a field.
fn parse_scenario(text: &str) {
    match Scenario::from_toml("fuzzed.toml", text) {
        Ok(scenario) => assert_eq!(scenario.validate(), Ok(()), "accepted yet invalid"),
        Err(e) => {
            assert_eq!(e.file, "fuzzed.toml");
            let lines = text.lines().count().max(1);
            assert!(
                e.line >= 1 && e.line <= lines + 1,
                "line {} of {lines}: {e}",
                e.line
            );
            assert!(!e.field.is_empty() && !e.message.is_empty(), "{e:?}");
            assert!(!e.message.contains('\n'), "one line: {e:?}");
        }
    }
}

/// A plan parse either validates or is refused; never a panic.
fn parse_plan(text: &str) {
    if let Ok(plan) = serde_json::from_str::<Plan>(text) {
        let _ = plan.validate();
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: if cfg!(debug_assertions) { 128 } else { 1024 },
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn any_text_is_a_scenario_or_a_located_error(text in "(?s).{0,300}") {
        parse_scenario(&text);
    }

    #[test]
    fn a_corrupted_shipped_scenario_is_valid_or_a_located_error(
        file in 0usize..64,
        edits in prop::collection::vec(edit(), 1..6),
    ) {
        let files = shipped();
        let (_, text) = &files[file % files.len()];
        parse_scenario(&apply(text, &edits));
    }

    #[test]
    fn any_text_is_a_plan_or_a_refusal(text in "(?s).{0,300}") {
        parse_plan(&text);
    }

    #[test]
    fn a_corrupted_plan_is_valid_or_refused(edits in prop::collection::vec(edit(), 1..6)) {
        parse_plan(&apply(&plan_json(), &edits));
    }
}

#[test]
fn the_corruption_harness_really_corrupts() {
    // Proves the property tests exercise refusals, not only acceptances: a known corruption of
    // each shipped file is refused with its line, and the plan's likewise.
    for (name, text) in shipped() {
        let broken = apply(&text, &[Edit::Insert(0, "[")]);
        let e = Scenario::from_toml(&name, &broken).expect_err(&name);
        assert_eq!(e.line, 1, "{name}: {e}");
    }
    let broken = apply(&plan_json(), &[Edit::Insert(0, "}")]);
    assert!(serde_json::from_str::<Plan>(&broken).is_err());
}
