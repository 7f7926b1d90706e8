//! Scenario simulations in virtual time (`cargo bench -p tower-bulwark-scenarios`): the load retries put on a dependency, with and without a budget.

use tower_bulwark_scenarios::retry_amplification;

fn main() {
    println!("retry amplification: 100 calls/s for 60 s of virtual time, at most 3 attempts");
    println!(
        "{:<34} {:>10} {:>10} {:>10}",
        "scenario", "offered", "load", "success"
    );
    for (name, failure, budget) in [
        ("outage, plain retries", 1.0, None),
        ("outage, 10% budget", 1.0, Some(0.1)),
        ("10% failures, plain retries", 0.1, None),
        ("10% failures, 10% budget", 0.1, Some(0.1)),
    ] {
        let run = retry_amplification(100, 60, failure, budget);
        println!(
            "{name:<34} {:>10} {:>9.3}x {:>9.2}%",
            run.offered,
            run.load(),
            run.success() * 100.0
        );
    }
}
