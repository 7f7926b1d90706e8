//! Scenario simulations in virtual time (`cargo bench -p tower-bulwark-scenarios`): the load retries put on a dependency, with and without a budget.

use tower_bulwark_scenarios::{
    latency_shift, mixed_overload, overload, retry_amplification, tail, tail_capacity, Guard,
    Hedging, CAPACITY, SERVICE_TIME, SLOW_FACTOR, SLOW_SHARE, TAIL_WORKERS, WORKERS,
};

fn main() {
    overload_table();
    println!();
    criticality_table();
    println!();
    latency_shift_table();
    println!();
    amplification_table();
    println!();
    hedge_table();
}

fn hedge_table() {
    println!(
        "hedging: {TAIL_WORKERS} workers, attempts 8-12 ms, {}% of them {SLOW_FACTOR}x slower; 50% load ({:.0} calls/s), 20 s of virtual time",
        SLOW_SHARE * 100.0,
        tail_capacity() * 0.5
    );
    println!(
        "{:<26} {:>10} {:>10} {:>10} {:>10} {:>8}",
        "hedging", "p50", "p99", "p99.9", "extra load", "failed"
    );
    let rows = [
        ("none", Hedging::None, 0.0),
        ("tower Hedge p95", Hedging::TowerP95, 0.0),
        ("ours, fixed 20 ms", Hedging::OursFixed, 0.0),
        ("ours, learned p95", Hedging::OursP95, 0.0),
        ("shedding 20%: none", Hedging::None, 0.2),
        ("shedding 20%: tower p95", Hedging::TowerP95, 0.2),
        ("shedding 20%: ours p95", Hedging::OursP95, 0.2),
    ];
    for (name, hedging, shed) in rows {
        let run = tail(hedging, 0.5, 20, shed);
        println!(
            "{name:<26} {:>10.1?} {:>10.1?} {:>10.1?} {:>9.2}% {:>8}",
            run.p50,
            run.p99,
            run.p999,
            run.extra_load() * 100.0,
            run.failed
        );
    }
}

fn overload_table() {
    println!(
        "overload: a server of {WORKERS} workers x {SERVICE_TIME:?} ({CAPACITY} calls/s), 5 s of virtual time"
    );
    println!(
        "{:<12} {:>5} {:>10} {:>10} {:>10} {:>10} {:>10}",
        "guard", "load", "offered", "goodput", "p99", "shed", "timed out"
    );
    for load in [1.0, 2.0, 4.0, 8.0] {
        for guard in [Guard::None, Guard::TowerStatic]
            .into_iter()
            .chain(Guard::OURS)
        {
            let run = overload(load, 5, guard);
            println!(
                "{:<12} {:>4}x {:>10} {:>9.1}% {:>10.1?} {:>10} {:>10}",
                format!("{guard:?}"),
                load,
                run.offered,
                run.goodput_share() * 100.0,
                run.p99,
                run.shed,
                run.timed_out
            );
        }
    }
}

fn criticality_table() {
    println!("criticality: 2x overload, 30% critical / 70% sheddable calls, default tiers");
    println!(
        "{:<12} {:>10} {:>18} {:>22}",
        "guard", "goodput", "critical success", "sheddable alone (2x)"
    );
    for guard in [Guard::None, Guard::TowerStatic]
        .into_iter()
        .chain(Guard::OURS)
    {
        let run = mixed_overload(2.0, 5, guard, 0.3);
        let (critical, ok) = run.critical;
        let alone = mixed_overload(2.0, 5, guard, 0.0);
        println!(
            "{:<12} {:>9.1}% {:>17.2}% {:>21.1}%",
            format!("{guard:?}"),
            run.goodput_share() * 100.0,
            ok as f64 / critical as f64 * 100.0,
            alone.goodput_share() * 100.0
        );
    }
}

fn latency_shift_table() {
    println!("latency shift: 4x load for 20 s; at 10 s the service time doubles or halves (limit sampled every 50 ms)");
    println!(
        "{:<12} {:>7} {:>14} {:>14} {:>14}",
        "algorithm", "shift", "limit before", "limit after", "settled in"
    );
    for guard in Guard::OURS {
        for factor in [2.0, 0.5] {
            let run = latency_shift(20, guard, factor);
            println!(
                "{:<12} {:>6}x {:>14.1} {:>14.1} {:>14.2?}",
                format!("{guard:?}"),
                factor,
                run.before,
                run.after,
                run.settled_after
            );
        }
    }
}

fn amplification_table() {
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
