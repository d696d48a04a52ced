//! Prints the trace hash of one built-in run: `stampede-sim-trace <mix> <seed>`.
//! The determinism test runs it in separate processes and compares.

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (Some(mix), Some(seed)) = (args.get(1), args.get(2).and_then(|s| s.parse::<u64>().ok()))
    else {
        eprintln!("usage: stampede-sim-trace <mix> <seed>");
        std::process::exit(2);
    };
    let scenario = if mix == "smoke" {
        stampede_sim::scenarios::smoke()
    } else {
        match stampede_sim::scenarios::fault_mixes()
            .into_iter()
            .find(|(name, _)| name == mix)
        {
            Some((_, s)) => s,
            None => {
                eprintln!("unknown mix {mix}");
                std::process::exit(2);
            }
        }
    };
    let plan = stampede_sim::Plan::generate(&scenario, stampede_server::Design::reference(), seed);
    match stampede_sim::run(&plan) {
        Ok(result) => println!("{}", result.trace_hash),
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    }
}
