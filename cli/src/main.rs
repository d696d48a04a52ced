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
mod shrink;
mod sweep;

use clap::{Parser, Subcommand};
use stampede_server::Clock;
use stampede_server::Connector;
use stampede_server::psp::{self, Psp, PspConfig, WebhookTarget};
use stampede_server::store::sqlite::{SqliteOptions, SyncLevel};
use stampede_server::{PRESETS, SWITCHES, Sabotage};
use stampede_server::{PspMode, StackConfig};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

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
    /// Example: stampede run scenarios/flash-sale.toml --seed 7 --design seed-repo
    Run(run::RunArgs),
    /// Run many seeds of one or more scenarios in parallel and report every failing seed.
    ///
    /// Exit status: 0 every run held, 1 any violation, 2 bad input.
    /// Example: stampede sweep scenarios/ --seeds 1..200
    /// Example (CI matrix, machine 2 of 4): stampede sweep scenarios/ --seeds 1..1000 --shard 2/4
    Sweep(sweep::SweepArgs),
    /// Combine the summary.json files of sharded sweeps into one result.
    ///
    /// Exit status: 0 every run held, 1 any violation (or two shards disagree on a trace), 2 bad input.
    /// Example: stampede merge shard-*/summary.json
    Merge(sweep::MergeArgs),
    /// Run the same seeds on several designs and show them side by side.
    ///
    /// Example: stampede compare scenarios/flash-sale.toml --designs reference,seed-repo,textbook-naive --seeds 1..20
    Compare(sweep::CompareArgs),
    /// Minimise a failing seed's plan (delta debugging) while the same invariant still fails.
    ///
    /// Writes a plan file that `stampede replay` runs. Exit status: 0 shrunk and still failing,
    /// 1 the shrunk plan no longer fails, 2 bad input (or the seed does not fail).
    /// Example: stampede shrink scenarios/flash-sale.toml --seed 1 --design seed-repo
    Shrink(shrink::ShrinkArgs),
    /// Run a plan file (from `stampede shrink`) and judge every invariant, like `run`.
    ///
    /// Exit status: 0 every invariant held, 1 a violation, 2 bad input.
    /// Example: stampede replay stampede-out/shrunk-flash-sale-1.plan.json
    Replay(shrink::ReplayArgs),
    /// Put real load on the served shop with goose, then audit what happened.
    ///
    /// Starts the shop and its PSP in-process on loopback unless --host names a running one.
    /// Closed loop with --users, open loop (latency from the schedule) with --rate.
    /// Writes report.html (charts), report.md, report.json, HdrHistogram logs and goose's report.
    /// Exit status: 0 the audit holds and every --threshold passes, 1 otherwise, 2 bad input.
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
    /// trace. By default the run's first violation. Exit 0, 1 when the subject is not in the
    /// trace, 2 bad input.
    /// Example: stampede explain stampede-out/flash-sale-1
    /// Example: stampede explain stampede-out/flash-sale-1/trace.jsonl --order ord_141
    Explain(explain::ExplainArgs),
    /// Re-render saved load reports; given several folders, compare them side by side;
    /// `report merge` merges the shards of one sharded load (see `stampede report merge --help`).
    ///
    /// Example: stampede report stampede-out/load-reference stampede-out/load-seed-repo
    /// Example: stampede report merge shard-1 shard-2 --host http://shop:8080 --psp http://psp:8081
    Report(load::ReportArgs),
    /// Serve the reference shop over HTTP, with an embedded fake PSP by default.
    ///
    /// Example: stampede serve --addr 127.0.0.1:8080 --design reference
    Serve {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:8080")]
        addr: SocketAddr,
        /// Design preset: reference, seed-repo or textbook-naive (see `stampede designs`).
        #[arg(long, default_value = "reference")]
        design: String,
        /// Override one switch, e.g. --set inventory=read-then-write (repeatable).
        #[arg(long = "set", value_name = "SWITCH=VALUE")]
        set: Vec<String>,
        /// `embedded` to run the fake PSP in-process, or the host:port of one started with `stampede psp`.
        #[arg(long, default_value = "embedded")]
        psp: String,
        /// Job worker tasks.
        #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=256))]
        workers: u32,
        /// Seed for the PSP's webhook faults and the workers' jitter.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Reservation time-to-live in seconds.
        #[arg(long, default_value_t = 900, value_parser = clap::value_parser!(u64).range(1..=86_400))]
        reservation_ttl_secs: u64,
        /// Bearer token for /admin/restock and /admin/audit.
        #[arg(long, default_value = "stampede-admin")]
        admin_token: String,
        /// Where the shop keeps its state: sqlite:PATH (durable: every acknowledged change
        /// survives a crash; an existing file is resumed), sqlite (= sqlite:stampede-data/shop.db),
        /// postgres://user:password@host:port/database (durable and shared: start several
        /// replicas on one database; an empty database gets Stampede's tables, an existing
        /// Stampede database is joined) or memory (fastest; lost when the process ends).
        #[arg(long, default_value = "sqlite", value_parser = stampede_server::StoreChoice::parse)]
        store: stampede_server::StoreChoice,
        /// SQLite sync level: full (a reply waits until its commit is on disk: survives power
        /// loss) or normal (survives a crash of the process, not of the machine).
        #[arg(long, default_value = "full", value_parser = parse_sync)]
        sync: SyncLevel,
        /// Most commands the SQLite store commits in one transaction (group commit); 1 commits,
        /// and syncs, each command on its own.
        #[arg(long, default_value_t = 4096, value_parser = clap::value_parser!(u32).range(1..=4096))]
        sqlite_batch: u32,
        /// What is for sale when the store is new: demo (a small shop with a scarce sneaker drop)
        /// or load (what `stampede load` starts: 500 units of the hot SKU, plenty of the rest).
        /// A store that already exists keeps the catalog and stock it has.
        #[arg(long, default_value = "demo", value_parser = ["demo", "load"])]
        catalog: String,
        #[command(flatten)]
        admission: admission::AdmissionArgs,
    },
    /// Serve the fake payment provider alone.
    ///
    /// Example: stampede psp --addr 127.0.0.1:8081 --webhook 127.0.0.1:8080
    Psp {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:8081")]
        addr: SocketAddr,
        /// host:port of the shop that receives webhooks at /v1/webhooks/psp.
        #[arg(long)]
        webhook: Option<String>,
        /// Probability that an event is delivered more than once (0..=1).
        #[arg(long, default_value_t = 0.0)]
        duplicate_probability: f64,
        /// Most extra copies of a duplicated event.
        #[arg(long, default_value_t = 2)]
        max_extra_copies: u32,
        /// Largest random delivery delay in ms (delays reorder events).
        #[arg(long, default_value_t = 50)]
        delay_ms_max: u64,
        /// Seed for the delivery faults.
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// List the design presets and every switch with the mistake it makes.
    Designs,
}

fn parse_sync(text: &str) -> Result<SyncLevel, String> {
    SyncLevel::parse(text).ok_or_else(|| format!("{text:?}: write full or normal"))
}

fn unix_now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Writes the design list; a closed pipe (e.g. `| head`) just ends the output.
fn print_designs(out: &mut impl std::io::Write) -> std::io::Result<()> {
    writeln!(out, "Presets:")?;
    for (name, description) in PRESETS {
        writeln!(out, "  {name:<16} {description}")?;
    }
    writeln!(
        out,
        "\nSwitches (first value is the reference; set with --set switch=value):"
    )?;
    for switch in SWITCHES {
        writeln!(
            out,
            "  {:<20} {:<40} {}",
            switch.name,
            switch.values.join(" | "),
            switch.mistake
        )?;
    }
    writeln!(
        out,
        "\nSabotage (test hooks that break the reference on purpose; not mistakes, not in any preset; set with --set sabotage=value):"
    )?;
    for sabotage in Sabotage::ALL {
        writeln!(out, "  {:<20} {}", sabotage.as_str(), sabotage.breaks())?;
    }
    Ok(())
}

async fn wait_for_ctrl_c() {
    if let Err(error) = tokio::signal::ctrl_c().await {
        eprintln!("cannot listen for Ctrl-C ({error}); stop with SIGTERM");
        std::future::pending::<()>().await;
    }
}

async fn run_serve(config: StackConfig) -> Result<(), String> {
    let store = config.store.clone();
    let stack = stampede_server::start(config)
        .await
        .map_err(|e| format!("cannot start the shop: {e}"))?;
    println!(
        "shop listening on http://{}  (psp at http://{})",
        stack.shop_addr, stack.psp_addr
    );
    match (&store, stack.opened) {
        (stampede_server::StoreChoice::Sqlite(options), Some(opened)) => println!(
            "state in {} (sqlite, sync={}): {}",
            options.path.display(),
            options.sync,
            if opened.created {
                "a new shop".to_string()
            } else {
                format!(
                    "resumed {} orders ({} logged commands re-applied)",
                    opened.orders, opened.replayed
                )
            }
        ),
        (stampede_server::StoreChoice::Postgres(options), Some(opened)) => println!(
            "state in {} (postgres, shared with any other replica on it): {}",
            options.redacted(),
            if opened.created {
                "a new shop".to_string()
            } else {
                format!(
                    "joined a shop of {} orders ({} logged commands re-applied)",
                    opened.orders, opened.replayed
                )
            }
        ),
        _ => println!("state in memory (lost when this process ends)"),
    }
    println!("try: curl -s http://{}/v1/products", stack.shop_addr);
    wait_for_ctrl_c().await;
    println!("shutting down");
    stack.shutdown().await;
    Ok(())
}

async fn run_psp(addr: SocketAddr, config: PspConfig) -> Result<(), String> {
    let clock = Clock::tokio(unix_now_ms());
    let psp = Psp::new(config, clock, Connector::tokio()).map_err(|e| e.to_string())?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    println!(
        "psp listening on http://{}",
        listener.local_addr().map_err(|e| e.to_string())?
    );
    let delivery = tokio::spawn(Arc::clone(&psp).run_delivery());
    let served = stampede_server::serve_router(listener, psp::router(psp), wait_for_ctrl_c()).await;
    delivery.abort();
    served.map_err(|e| format!("psp stopped: {e}"))
}

fn run_command(args: &run::RunArgs) -> ExitCode {
    let dir = |summary: &run::Summary| {
        args.output.out.clone().unwrap_or_else(|| {
            std::path::PathBuf::from("stampede-out")
                .join(format!("{}-{}", summary.scenario, summary.seed))
        })
    };
    let done = run::execute(args).map(|(summary, result)| {
        let dir = dir(&summary);
        (summary, result, dir)
    });
    report_run(done, &args.output)
}

fn replay_command(args: &shrink::ReplayArgs) -> ExitCode {
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
    // Inside the simulator the shop's warnings are the faults doing their
    // job (the history records them); only errors go to the terminal.
    let simulated = !matches!(
        cli.command,
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
        .init();
    // Simulated runs build their own (simulated) runtimes.
    let command = match cli.command {
        Command::Run(args) => return run_command(&args),
        Command::Replay(args) => return replay_command(&args),
        Command::Sweep(args) => return many(sweep::sweep(&args)),
        Command::Merge(args) => return many(sweep::merge(&args)),
        Command::Compare(args) => return many(sweep::compare(&args)),
        Command::Shrink(args) => {
            return many(shrink::shrink(&args));
        }
        // `load` builds its own runtime (its shop and goose share it).
        Command::Load(args) => return many(load::load(&args)),
        Command::Conform(args) => return many(conform::conform(&args)),
        Command::Explain(args) => return many(explain::explain(&args)),
        Command::Report(args) => return many(load::report(&args)),
        other => other,
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::from(1);
        }
    };

    let result = match command {
        Command::Run(_)
        | Command::Replay(_)
        | Command::Sweep(_)
        | Command::Merge(_)
        | Command::Compare(_)
        | Command::Shrink(_)
        | Command::Load(_)
        | Command::Conform(_)
        | Command::Explain(_)
        | Command::Report(_) => unreachable!("returned above"),
        Command::Designs => match print_designs(&mut std::io::stdout().lock()) {
            Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
                Err(format!("writing to stdout: {e}"))
            }
            _ => Ok(()),
        },
        Command::Serve {
            addr,
            design,
            set,
            psp,
            workers,
            seed,
            reservation_ttl_secs,
            admin_token,
            store,
            sync,
            sqlite_batch,
            catalog,
            admission,
        } => run::DesignSpec::new(&design, &set).and_then(|spec| {
            let mut config = StackConfig::demo(addr, unix_now_ms());
            config.server.design = spec.design;
            config.server.admin_token = admin_token;
            config.workers = workers;
            config.seed = seed;
            config.shop.reservation_ttl_ms = Some(reservation_ttl_secs * 1000);
            admission.configure(&mut config);
            if psp != "embedded" {
                config.psp = PspMode::Remote(psp);
            }
            if catalog == "load" {
                config.catalog = load::load_catalog();
            }
            config.store = match store {
                stampede_server::StoreChoice::Sqlite(options) => {
                    stampede_server::StoreChoice::Sqlite(SqliteOptions {
                        sync,
                        max_batch: sqlite_batch as usize,
                        ..options
                    })
                }
                memory => memory,
            };
            runtime.block_on(run_serve(config))
        }),
        Command::Psp {
            addr,
            webhook,
            duplicate_probability,
            max_extra_copies,
            delay_ms_max,
            seed,
        } => {
            let config = PspConfig {
                seed,
                webhook: webhook.map(|addr| WebhookTarget {
                    addr,
                    path: stampede_server::WEBHOOK_PATH.into(),
                }),
                duplicate_probability,
                max_extra_copies,
                delay_ms_max,
                // Signed with the secret `stampede serve` checks, so a shop started with
                // `--psp` pointing here accepts its webhooks.
                secret: stampede_server::ServerConfig::default().webhook_secret,
                ..PspConfig::default()
            };
            runtime.block_on(run_psp(addr, config))
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn designs_lists_sabotage_hooks_in_their_own_section_after_the_switches() {
        // Proves: `stampede designs` names every switch and then, under a separate sabotage
        // heading, every sabotage value; no sabotage value is listed among the switches.
        let mut out = Vec::new();
        print_designs(&mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        let (switches, sabotage) = text
            .split_once("\nSabotage (test hooks that break the reference on purpose")
            .expect("a sabotage section");
        for switch in SWITCHES {
            assert!(switches.contains(switch.name), "{}", switch.name);
        }
        assert!(!switches.contains("no-payment-offer"));
        for value in Sabotage::ALL {
            assert!(sabotage.contains(value.as_str()), "{}", value.as_str());
            assert!(sabotage.contains(value.breaks()), "{}", value.as_str());
        }
    }
}
