//! `stampede`: the one binary. Parses the command line and calls the crates
//! that do the work; this is the only crate that reads arguments, the system
//! clock (once, for webhook timestamps) or the environment.

mod admission;
mod conform;
mod explain;
mod load;
mod merge_load;
mod pool;
mod run;
mod serve;
mod shrink;
mod sweep;

use clap::{Parser, Subcommand};
use std::io::Write as _;
use std::process::ExitCode;

/// The allocator. A simulated flash sale makes tens of millions of small,
/// short-lived allocations (HTTP and store frames, turmoil's per-tick
/// message batches); with glibc's malloc they were a fifth of the run's CPU
/// (benches/README.md, "Simulating at the engine's speed").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Deterministic simulation and load testing for checkout systems.
#[derive(Parser)]
#[command(name = "stampede", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run one seeded simulation of a scenario and judge every invariant.
    ///
    /// Exit status: 0 every invariant held, 1 a violation (or the run failed), 2 bad input.
    ///
    /// Example: stampede run scenarios/flash-sale.toml --seed 7 --design seed-repo
    Run(run::RunArgs),
    /// Run many seeds of one or more scenarios in parallel and report every failing seed.
    ///
    /// Exit status: 0 every run held, 1 any violation (or --fail-fast stopped it: INCOMPLETE),
    /// 2 bad input, 130 stopped by Ctrl-C or SIGTERM (no summary written, no verdict).
    ///
    /// Example: stampede sweep scenarios/ --seeds 1..200
    ///
    /// Example (CI matrix, machine 2 of 4): stampede sweep scenarios/ --seeds 1..1000 --shard 2/4
    Sweep(sweep::SweepArgs),
    /// Combine the summary.json files of sharded sweeps into one result.
    ///
    /// Exit status: 0 every run held, 1 any violation or a part of the sweep missing — a shard
    /// not given, or runs a given shard lacks (a --fail-fast shard): their seeds not judged, and
    /// the merged report says INCOMPLETE; --partial accepts that — 2 bad input (a file that is not a sweep summary,
    /// a shard given twice, shards of different splits or of another sweep (other scenario
    /// files, seeds or design), a whole sweep's summary given with other files, a run the
    /// sweep did not make, or two shards that disagree on a seed's trace: different builds).
    ///
    /// Example: stampede merge shard-*/summary.json
    Merge(sweep::MergeArgs),
    /// Run the same seeds on several designs and show them side by side.
    ///
    /// Exit status: 0 the table was made, whatever the designs did (the table is the answer:
    /// gate on `sweep` instead), 2 bad input, 130 stopped by Ctrl-C or SIGTERM (no table).
    ///
    /// Example: stampede compare scenarios/flash-sale.toml --designs reference,seed-repo,textbook-naive --seeds 1..20
    Compare(sweep::CompareArgs),
    /// Minimise a failing seed's plan (delta debugging) while the same invariant still fails.
    ///
    /// Writes a plan file that `stampede replay` runs. Exit status: 0 shrunk and still failing,
    /// 1 the shrunk plan no longer fails, 2 bad input (or the seed does not fail), 130 stopped
    /// by Ctrl-C or SIGTERM (saying whether the plan was written).
    ///
    /// Example: stampede shrink scenarios/flash-sale.toml --seed 1 --design seed-repo
    Shrink(shrink::ShrinkArgs),
    /// Run a plan file (from `stampede shrink`) and judge every invariant, like `run`.
    ///
    /// Exit status: 0 every invariant held, 1 a violation, 2 bad input.
    ///
    /// Example: stampede replay stampede-out/shrunk-flash-sale-1.plan.json
    Replay(shrink::ReplayArgs),
    /// Put real load on the served shop with goose, then audit what happened.
    ///
    /// Starts the shop and its PSP in-process on loopback unless --host names a running one.
    /// Closed loop with --users (50 if neither is given), open loop (latency from the
    /// schedule) with --rate. Writes report.html (charts), report.md, report.json,
    /// HdrHistogram logs and goose's report.
    ///
    /// Exit status: 0 the audit holds and every --threshold passes, 1 otherwise, 2 bad input or
    /// no verdict to give (the shop or its PSP stopped answering, the PSP is another shop's),
    /// 130 stopped by Ctrl-C or SIGTERM before its audit (no verdict).
    ///
    /// Example: stampede load --rate 500/s --duration 20s --threshold "p99<50ms for POST /v1/orders"
    Load(Box<load::LoadArgs>),
    /// Check any checkout service against the published contract: idempotency, bad inputs,
    /// forged and stale webhooks, and a small flash sale judged by the audit. Exit 0 when every
    /// check passes, 1 when one fails, 2 when the run could not be made.
    ///
    /// Example: stampede conform --host 127.0.0.1:8080 --psp 127.0.0.1:8081
    Conform(conform::ConformArgs),
    /// Tell the story of the orders and keys behind a violation, as a swim-lane timeline.
    ///
    /// Prints who sent and saw what, in simulated time, lane by lane (shopper, api, worker,
    /// webhook, sweeper, reconciler, PSP, faults), and writes the timeline as SVG beside the
    /// trace. By default the run's first violation.
    ///
    /// Exit status: 0 told, 1 the --order or --key asked for is not in the trace, 2 bad input
    /// or nothing to explain (the run held every invariant, or --invariant names one it did
    /// not violate).
    ///
    /// Example: stampede explain stampede-out/flash-sale-1
    ///
    /// Example: stampede explain stampede-out/flash-sale-1/trace.jsonl --order ord_117
    Explain(explain::ExplainArgs),
    /// Re-render saved load reports; given several folders, compare them side by side;
    /// `report merge` merges the shards of one sharded load (see `stampede report merge --help`).
    ///
    /// Exit status: one folder, 0 its run passed and 1 it failed (its audit or a threshold);
    /// several folders, 0 (the comparison is the answer); 2 bad input.
    ///
    /// Example: stampede report stampede-out/load-reference stampede-out/load-seed-repo
    ///
    /// Example: stampede report merge shard-1 shard-2 --host http://shop:8080 --psp http://psp:8081
    Report(load::ReportArgs),
    /// Serve the reference shop over HTTP, with an embedded fake PSP by default.
    ///
    /// HTTP/1.1 and cleartext HTTP/2 (prior knowledge) are both served on the one port.
    /// Ctrl-C or SIGTERM stops it gracefully; a second one stops it at once.
    /// Exit status: 0 stopped when asked, 1 its store stopped for good (a failed SQLite
    /// commit, or its files removed while it served: the message says what to do), 2 it could
    /// not start (bad input, port in use, a
    /// store file refused, a PSP that served another store).
    ///
    /// Example: stampede serve --addr 127.0.0.1:8080 --design reference
    Serve(Box<serve::ServeArgs>),
    /// Serve the fake payment provider alone (HTTP/1.1 and cleartext HTTP/2 on the one port).
    ///
    /// Its intents, ledger and idempotency keys live in memory: a restarted PSP starts empty
    /// (its ids never repeat an earlier run's). It serves one shop's store: `serve` on a store
    /// with no order yet refuses a PSP already holding intents. Webhooks are
    /// retried on any answer but 2xx, 8 attempts over about 9 s, then given up (the shop's
    /// reconciler asks for what it missed); those not yet made when it stops are counted.
    ///
    /// Example: stampede psp --addr 127.0.0.1:8081 --webhook 127.0.0.1:8080
    Psp(serve::PspArgs),
    /// List the design presets and every switch with the mistake it makes.
    Designs,
}

/// `sweep`, `compare` and `shrink`'s exit status when Ctrl-C or SIGTERM
/// stopped them (as a shell reports a process Ctrl-C ended).
const INTERRUPTED: i32 = 130;

/// From now on, Ctrl-C or SIGTERM ends the process at once with
/// [`INTERRUPTED`], saying first what `leaves` (a shared line, so a command
/// can update it as it goes) says it leaves behind: a command whose result
/// is written only at its end has written none of it. SIGHUP is left as it
/// was (`nohup` keeps working).
fn stop_saying(leaves: &std::sync::Arc<std::sync::Mutex<String>>) {
    let say = |leaves: &std::sync::Mutex<String>| {
        let line = leaves.lock().map(|l| l.clone()).unwrap_or_default();
        // Never a panic here: stderr may be gone with the terminal.
        let _ = writeln!(std::io::stderr(), "interrupted: {line}");
        std::process::exit(INTERRUPTED);
    };
    let on_ctrl_c = std::sync::Arc::clone(leaves);
    if let Err(error) = ctrlc::set_handler(move || say(&on_ctrl_c)) {
        let _ = writeln!(
            std::io::stderr(),
            "warning: cannot listen for Ctrl-C ({error}); stopping it will say nothing"
        );
    }
    let on_term = std::sync::Arc::clone(leaves);
    // The SIGTERM handler is installed here, before this returns (and the
    // command says it has started), not when the thread first polls it: a
    // SIGTERM sent right after the first line must not meet the default
    // action.
    let listening = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .map(|runtime| {
            let term = {
                let _entered = runtime.enter();
                serve::terminated()
            };
            std::thread::spawn(move || {
                runtime.block_on(term);
                say(&on_term);
            })
        });
    if let Err(error) = listening {
        let _ = writeln!(
            std::io::stderr(),
            "warning: cannot listen for SIGTERM ({error}); stopping it will say nothing"
        );
    }
}

/// [`stop_saying`] with a line that will not change.
fn stop_saying_once(leaves: String) {
    stop_saying(&std::sync::Arc::new(std::sync::Mutex::new(leaves)));
}

/// Raises this process's soft limit on open files to its hard limit and
/// returns the soft limit in force (1,024, the usual default, if it cannot
/// be read): a server's clients must not take the descriptors it needs for
/// its own store and PSP calls, nor the load generator's its connections.
fn descriptor_limit() -> u64 {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return 1_024;
    };
    if soft < hard && setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok() {
        return hard;
    }
    soft
}

fn unix_now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn run_command(args: &run::RunArgs) -> ExitCode {
    let dir = |summary: &run::Summary| {
        args.output.out.clone().unwrap_or_else(|| {
            std::path::PathBuf::from("stampede-out")
                .join(format!("{}-{}", summary.scenario, summary.seed))
        })
    };
    if let Err(message) = run::ready_run_out(args.output.out.as_deref()) {
        eprintln!("error: {message}");
        return ExitCode::from(2);
    }
    let done = run::execute(args).map(|(summary, result)| {
        let dir = dir(&summary);
        (summary, result, dir)
    });
    report_run(done, &args.output)
}

fn replay_command(args: &shrink::ReplayArgs) -> ExitCode {
    if let Err(message) = run::ready_run_out(args.output.out.as_deref()) {
        eprintln!("error: {message}");
        return ExitCode::from(2);
    }
    report_run(shrink::replay(args), &args.output)
}

/// Prints and writes one run's outcome; the exit status `run` documents.
fn report_run(
    done: Result<(run::Summary, stampede_sim::RunResult, std::path::PathBuf), String>,
    output: &run::RunOutput,
) -> ExitCode {
    let (summary, result, dir) = match done {
        Ok(done) => done,
        Err(message) if message.starts_with("the ") || message.starts_with("determinism") => {
            eprintln!("error: {message}");
            return ExitCode::from(1);
        }
        Err(message) => {
            eprintln!("error: {message}");
            return ExitCode::from(2);
        }
    };
    if let Err(message) = run::write_outputs(&dir, &summary, &result.history) {
        eprintln!("error: {message}");
        return ExitCode::from(2);
    }
    if output.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&summary).unwrap_or_default()
        );
    } else {
        print!(
            "{}",
            run::render_terminal(&summary, output.check_determinism)
        );
        println!(
            "  wrote {}/{{summary.json,report.md,report.html,trace.jsonl}}",
            dir.display()
        );
    }
    if run::failed(&summary).is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// The exit status of a many-run command: 2 for bad input.
fn many(result: Result<u8, String>) -> ExitCode {
    match result {
        Ok(code) => ExitCode::from(code),
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::from(2)
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    end_quietly_on_a_closed_pipe(&cli.command);
    init_tracing(&cli.command);
    match cli.command {
        Command::Run(args) => run_command(&args),
        Command::Replay(args) => replay_command(&args),
        Command::Sweep(args) => many(sweep::sweep(&args)),
        Command::Merge(args) => many(sweep::merge(&args)),
        Command::Compare(args) => many(sweep::compare(&args)),
        Command::Shrink(args) => many(shrink::shrink(&args)),
        // `load` builds its own runtime (its shop and goose share it).
        Command::Load(args) => many(load::load(&args)),
        Command::Conform(args) => many(conform::conform(&args)),
        Command::Explain(args) => many(explain::explain(&args)),
        Command::Report(args) => many(load::report(&args)),
        Command::Serve(args) => many(serve::serve(*args)),
        Command::Psp(args) => many(serve::psp(args)),
        Command::Designs => many(serve::designs()),
    }
}

/// A report piped into `head` ends when its reader does, as other
/// command-line tools do (status 141, as if killed by SIGPIPE), instead of
/// panicking with a backtrace: Rust ignores SIGPIPE, so `println!` to a
/// closed pipe panics, and this ends the process at that panic. Not for the
/// commands that serve, whose output is a log.
fn end_quietly_on_a_closed_pipe(command: &Command) {
    if matches!(command, Command::Serve(_) | Command::Psp(_)) {
        return;
    }
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        if message.starts_with("failed printing to stdout") && message.contains("Broken pipe") {
            std::process::exit(141);
        }
        report(info);
    }));
}

/// Logs to stderr. Inside the simulator the shop's warnings are the faults
/// doing their job (the history records them); only errors go to the terminal.
fn init_tracing(command: &Command) {
    let simulated = !matches!(
        command,
        Command::Serve { .. }
            | Command::Psp { .. }
            | Command::Designs
            | Command::Load(_)
            | Command::Conform(_)
            | Command::Explain(_)
            | Command::Report(_)
    );
    let default_filter = if simulated {
        "stampede=info,stampede_server=error,stampede_sim=error"
    } else {
        "stampede=info,stampede_server=warn"
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| default_filter.into()),
        )
        .with_writer(std::io::stderr)
        // Colour codes only for a terminal: a log file (a service's, a crash loop's) stays text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}
