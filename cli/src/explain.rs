//! `stampede explain`: the story of the orders and keys behind a violation,
//! from a run's folder (`trace.jsonl` and `summary.json`) or a trace file.
//! Picking the story and drawing it are `stampede-reports`' (`story`); this
//! module reads the files, parses the choice and writes what was drawn.

use stampede_core::{EventKind, History, IdempotencyKey, Invariant, OrderId};
use stampede_reports::{Lead, Start};
use std::path::{Path, PathBuf};

/// Most bytes of one trace line (an event); a longer one is refused.
const TRACE_LINE_BYTES_MAX: usize = 1 << 20;

/// What `explain` was asked.
#[derive(clap::Args)]
pub struct ExplainArgs {
    /// A run's folder (from `stampede run` or `replay`), its trace.jsonl or its summary.json.
    pub run: PathBuf,
    /// Tell this order's story, e.g. ord_141.
    #[arg(long, conflicts_with_all = ["key", "invariant"])]
    pub order: Option<String>,
    /// Tell the story of this Idempotency-Key.
    #[arg(long, conflicts_with = "invariant")]
    pub key: Option<String>,
    /// Tell the story of this invariant's first violation (by default the run's first violation).
    #[arg(long, value_name = "NAME")]
    pub invariant: Option<String>,
    /// Where the SVG timeline goes [default: explain-<subject>.svg beside the trace].
    #[arg(long)]
    pub svg: Option<PathBuf>,
}

/// The trace file and the folder holding it.
fn trace_path(run: &Path) -> (PathBuf, PathBuf) {
    let run_dir = |dir: &Path| (dir.join("trace.jsonl"), dir.to_path_buf());
    if run.is_dir() {
        run_dir(run)
    } else if run.file_name().is_some_and(|n| n == "summary.json") {
        // The run's summary names its run: its folder, as if that had been given.
        run_dir(run.parent().unwrap_or(Path::new(".")))
    } else {
        let dir = run
            .parent()
            .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
        (run.to_path_buf(), dir)
    }
}

/// `path` opened, if it is a regular file (a device or a pipe may never end).
fn regular_file(path: &Path) -> Result<std::fs::File, String> {
    stampede_server::files::open_regular(path).map_err(|e| format!("{}: {e}", path.display()))
}

/// Reads a `trace.jsonl`: one event per line, in order.
fn read_trace(path: &Path) -> Result<History, String> {
    use std::io::{BufRead, Read};
    let file = regular_file(path)?;
    let mut history = History::new();
    let mut reader = std::io::BufReader::new(file);
    let mut line = Vec::new();
    for n in 0.. {
        line.clear();
        // One line at a time, never more than the bound of one (a file with no newline, or
        // one line of gigabytes, is refused without being read whole).
        let read = (&mut reader)
            .take(TRACE_LINE_BYTES_MAX as u64 + 1)
            .read_until(b'\n', &mut line)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        if read == 0 {
            break;
        }
        if line.last() == Some(&b'\n') {
            line.pop();
        }
        if line.len() > TRACE_LINE_BYTES_MAX {
            return Err(format!(
                "{}:{}: an event of more than {TRACE_LINE_BYTES_MAX} bytes",
                path.display(),
                n + 1,
            ));
        }
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        // Read through a JSON value: a transition line repeats `at` (the
        // event's and the transition's own, always equal), which a struct
        // refuses and a map takes.
        let bad = |e: String| format!("{}:{}: not a trace event: {e}", path.display(), n + 1);
        let value: serde_json::Value =
            serde_json::from_slice(&line).map_err(|e| bad(e.to_string()))?;
        let at = value["at"]
            .as_u64()
            .ok_or_else(|| bad("no `at` in ms".into()))?;
        let kind: EventKind = serde_json::from_value(value).map_err(|e| bad(e.to_string()))?;
        history.push(stampede_core::Millis(at), kind);
    }
    if history.events().is_empty() {
        return Err(format!("{}: no events", path.display()));
    }
    Ok(history)
}

/// Refuses a trace that is not the one `dir`'s `summary.json` (when there is
/// one) was written with: its `trace_hash` is the SHA-256 of the trace file,
/// so a trace from another run, or one cut short, is caught before its story
/// is told against another run's violations.
fn same_run(trace: &Path, dir: &Path) -> Result<(), String> {
    use sha2::{Digest, Sha256};
    let path = dir.join("summary.json");
    if !path.exists() {
        return Ok(());
    }
    let text = stampede_sim::read_text_bounded(&path, stampede_reports::SUMMARY_BYTES_MAX)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let summary: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    let Some(expected) = summary.get("trace_hash").and_then(|h| h.as_str()) else {
        return Ok(());
    };
    use std::io::Read;
    let mut hasher = Sha256::new();
    let mut file = regular_file(trace)?;
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        let n = file
            .read(&mut chunk)
            .map_err(|e| format!("cannot read {}: {e}", trace.display()))?;
        if n == 0 {
            break;
        }
        hasher.update(&chunk[..n]);
    }
    let found: String = hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    if found == expected {
        Ok(())
    } else {
        Err(format!(
            "{} is not the trace {} was written with (its SHA-256 is {found}, the summary's trace_hash {expected}): another run's, or cut short",
            trace.display(),
            path.display()
        ))
    }
}

/// The first violation of each violated invariant, from `summary.json`.
fn read_leads(dir: &Path) -> Result<Vec<Lead>, String> {
    let path = dir.join("summary.json");
    let text = stampede_sim::read_text_bounded(&path, stampede_reports::SUMMARY_BYTES_MAX)
        .map_err(|e| format!("{}: {e} (needed to find the violations)", path.display()))?;
    let summary: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    let Some(leads) = summary.get("first_violations") else {
        return Err(format!(
            "{} has no first_violations (written by an older Stampede): name --order or --key",
            path.display()
        ));
    };
    serde_json::from_value(leads.clone())
        .map_err(|e| format!("{}: first_violations: {e}", path.display()))
}

/// Where the story starts, from the flags (or the run's first violation).
fn start(args: &ExplainArgs, dir: &Path) -> Result<Start, String> {
    if let Some(order) = &args.order {
        // The shop's own spelling: `ord_01` is no order there, so none here.
        let id = OrderId::parse(order)
            .ok_or_else(|| format!("--order {order:?}: write an order id such as ord_141"))?;
        return Ok(Start::Order(id));
    }
    if let Some(key) = &args.key {
        let key = IdempotencyKey::new(key.clone()).map_err(|e| format!("--key {key:?}: {e}"))?;
        return Ok(Start::Key(key));
    }
    let leads = read_leads(dir)?;
    match &args.invariant {
        Some(name) => {
            let invariant = Invariant::parse(name).ok_or_else(|| {
                let names: Vec<&str> = Invariant::ALL.iter().map(|i| i.name()).collect();
                format!("--invariant {name:?}: one of {}", names.join(", "))
            })?;
            leads
                .into_iter()
                .find(|l| l.invariant == invariant.name())
                .map(Start::Lead)
                .ok_or_else(|| format!("{} was not violated in this run", invariant.name()))
        }
        None => {
            leads.into_iter().next().map(Start::Lead).ok_or_else(|| {
                "no invariant this run judged was violated (its summary.json says which it judged): name --order or --key".to_string()
            })
        }
    }
}

/// A file name for the subject: `key-order-100`, `order-ord_141`.
fn file_name(subject: &str) -> String {
    let safe: String = subject
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .take(80)
        .collect();
    format!("explain-{safe}.svg")
}

/// Refuses an `--svg` path that names a file other than an SVG (the run's
/// own `trace.jsonl` or `summary.json`, say): written over, it would be lost.
fn not_over_another_file(path: &Path) -> Result<(), String> {
    let Ok(mut file) = std::fs::File::open(path) else {
        return Ok(()); // Nothing there (or nothing readable: writing will say).
    };
    if path.is_dir() {
        return Err(format!("--svg {}: a folder; name a file", path.display()));
    }
    let mut head = [0u8; 64];
    let read = std::io::Read::read(&mut file, &mut head).unwrap_or(0);
    let text = String::from_utf8_lossy(&head[..read]);
    let text = text.trim_start();
    if read == 0 || text.starts_with("<svg") || text.starts_with("<?xml") {
        return Ok(());
    }
    Err(format!(
        "--svg {}: the file is there and is not an SVG; refusing to write over it (name another file)",
        path.display()
    ))
}

/// `stampede explain`: prints the story and writes its SVG. Exit 0 (1 when
/// the subject appears nowhere in the trace), errors are exit 2.
pub fn explain(args: &ExplainArgs) -> Result<u8, String> {
    if let Some(path) = &args.svg {
        not_over_another_file(path)?;
    }
    let (trace, dir) = trace_path(&args.run);
    same_run(&trace, &dir)?;
    let history = read_trace(&trace)?;
    let start = start(args, &dir)?;
    let story = stampede_reports::story(&history, &start);
    let only_faults = story
        .beats
        .iter()
        .all(|b| matches!(history.events()[b.index].kind, EventKind::Fault { .. }));
    if only_faults {
        eprintln!("{} does not appear in {}", story.subject, trace.display());
        return Ok(1);
    }
    print!("{}", stampede_reports::render_story_text(&story));
    let svg = stampede_reports::render_story_svg(&story)?;
    let path = args
        .svg
        .clone()
        .unwrap_or_else(|| dir.join(file_name(&story.subject)));
    std::fs::write(&path, svg).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    println!("  wrote {}", path.display());
    Ok(0)
}
