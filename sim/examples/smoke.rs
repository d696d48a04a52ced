//! Runs the built-in smoke scenario once and prints the outcome.
fn main() {
    let seed: u64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(7);
    let mix = std::env::args().nth(2).unwrap_or_else(|| "smoke".into());
    let design = std::env::args()
        .nth(3)
        .unwrap_or_else(|| "reference".into());
    let scenario = if mix == "smoke" {
        stampede_sim::scenarios::smoke()
    } else {
        stampede_sim::scenarios::fault_mixes()
            .into_iter()
            .find(|(n, _)| *n == mix)
            .expect("mix")
            .1
    };
    let plan = stampede_sim::Plan::generate(
        &scenario,
        stampede_server::Design::preset(&design).expect("design"),
        seed,
    );
    let result = stampede_sim::run(&plan).expect("run");
    println!("stats {:?}", result.stats);
    println!("live {:?}", result.live_violations);
    for v in &result.verdicts {
        println!(
            "{} {}",
            v.invariant,
            if v.is_violated() {
                format!("VIOLATED {:?}", v.violations().first())
            } else {
                "ok".into()
            }
        );
    }
    println!("trace {}", result.trace_hash);
}
