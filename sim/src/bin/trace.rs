//! Draws and runs one plan and prints `<draw hash> <trace hash>`:
//! `stampede-sim-trace <scenario.toml> <seed> [switch=value ...]` (the
//! design is the reference one with the switches applied). The determinism
//! test runs it in separate processes and compares.

use stampede_server::Design;
use stampede_sim::{Plan, Scenario};
use std::path::Path;
use std::process::exit;

const USAGE: &str = "usage: stampede-sim-trace <scenario.toml> <seed> [switch=value ...]";

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(file), Some(seed)) = (args.first(), args.get(1).and_then(|s| s.parse().ok())) else {
        eprintln!("{USAGE}");
        exit(2);
    };
    let scenario = Scenario::load(Path::new(file)).unwrap_or_else(|e| {
        eprintln!("{e}");
        exit(2);
    });
    let mut design = Design::reference();
    for switch in &args[2..] {
        if let Err(e) = design.apply(switch) {
            eprintln!("{switch}: {e}\n{USAGE}");
            exit(2);
        }
    }
    let plan = Plan::generate(&scenario, design, seed);
    match stampede_sim::run(&plan) {
        Ok(result) => println!("{} {}", plan.draw_hash(), result.trace_hash),
        Err(e) => {
            eprintln!("error: {e}");
            exit(1);
        }
    }
}
