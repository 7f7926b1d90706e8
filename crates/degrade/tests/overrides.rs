//! Manual overrides: they win over the tiers until handed back.

mod support;

use std::time::Duration;

use support::{secs, Flips, Pressure};
use tokio::time::Instant;
use tower_bulwark_degrade::{Cause, Mode, Switches, Threshold, Tiers};

fn switches(pressure: &Pressure, flips: &Flips) -> Switches {
    Switches::builder()
        .name("shop")
        .switch("checkout")
        .switch_levels("images", 3)
        .tiers(Tiers::new(pressure.signal()).tier("reviews", Threshold::new(300.0, 150.0)))
        .min_dwell(secs(30))
        .on_event(flips.listener())
        .manual_evaluation()
        .build()
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn forcing_on_wins_over_the_tiers_and_automatic_hands_back_control() {
    let (pressure, flips) = (Pressure::default(), Flips::new());
    let switches = switches(&pressure, &flips);
    let reviews = switches.switch("reviews").unwrap();
    let start = Instant::now();
    pressure.set(400.0);
    switches.evaluate(start);
    assert!(!reviews.is_on());
    reviews.automatic(); // not forced: nothing to hand back
    assert_eq!(reviews.status().reason.as_ref(), "load 400 >= 300");

    reviews.force_on();
    assert!(reviews.is_on());
    let status = reviews.status();
    assert_eq!(status.mode, Mode::Forced(0));
    assert_eq!(status.automatic_level, 1, "the tiers still want it off");
    assert_eq!(status.to_string(), "on (forced): forced on by an operator");

    // The tiers keep moving underneath: on at 150 or less, off again at 300 or more, the
    // dwell kept; none of it reaches handlers.
    pressure.set(100.0);
    switches.evaluate(start + secs(30));
    assert_eq!(reviews.status().automatic_level, 0);
    pressure.set(500.0);
    switches.evaluate(start + secs(60));
    assert_eq!(reviews.status().automatic_level, 1);
    assert!(reviews.is_on());
    assert_eq!(
        reviews.status().reason.as_ref(),
        "forced on by an operator",
        "the reason is the operator's while forced"
    );

    reviews.automatic();
    assert!(!reviews.is_on(), "at once at the level the tiers ask for");
    assert_eq!(reviews.status().mode, Mode::Automatic);
    let all = flips.all();
    let summary: Vec<(u8, Cause, &str)> = all
        .iter()
        .map(|f| (f.to, f.cause, f.reason.as_str()))
        .collect();
    assert_eq!(
        summary,
        [
            (1, Cause::Automatic, "load 400 >= 300"),
            (0, Cause::Manual, "forced on by an operator"),
            (1, Cause::Manual, "automatic again: load 500 >= 300"),
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn forcing_off_holds_a_switch_off_whatever_the_tiers_say() {
    let (pressure, flips) = (Pressure::default(), Flips::new());
    let switches = switches(&pressure, &flips);
    let checkout = switches.switch("checkout").unwrap();
    let reviews = switches.switch("reviews").unwrap();
    checkout.force_off();
    reviews.force_off();
    assert!(!checkout.is_on() && !reviews.is_on());
    for t in 0..5 {
        switches.evaluate(Instant::now() + secs(60 * t));
    }
    assert!(!reviews.is_on(), "no pressure, still off");
    reviews.automatic();
    checkout.automatic();
    assert!(reviews.is_on() && checkout.is_on());
    assert_eq!(
        flips.all().last().unwrap().reason,
        "automatic again: initial state"
    );
    assert_eq!(flips.all().len(), 4);
}

#[tokio::test(start_paused = true)]
async fn overrides_are_not_held_by_the_dwell_and_repeat_without_flips() {
    let (pressure, flips) = (Pressure::default(), Flips::new());
    let switches = switches(&pressure, &flips);
    let reviews = switches.switch("reviews").unwrap();
    reviews.force_off();
    reviews.force_on();
    reviews.force_on();
    reviews.force_off();
    let levels: Vec<u8> = flips.all().iter().map(|f| f.to).collect();
    assert_eq!(
        levels,
        [1, 0, 1],
        "forcing what is already shown is no flip"
    );
    let changed = reviews.status().changed_at.unwrap();
    tokio::time::advance(Duration::from_secs(1)).await;
    reviews.force_off();
    assert_eq!(
        reviews.status().changed_at,
        Some(changed),
        "no change, no new time"
    );
}

#[tokio::test(start_paused = true)]
async fn levels_can_be_forced_within_range_only() {
    let (pressure, flips) = (Pressure::default(), Flips::new());
    let switches = switches(&pressure, &flips);
    let images = switches.switch("images").unwrap();
    images.force_level(2).unwrap();
    assert_eq!(images.level(), 2);
    assert!(!images.is_on());
    assert_eq!(
        images.status().to_string(),
        "level 2 of 3 (forced): forced to level 2 by an operator"
    );
    let err = images.force_level(4).unwrap_err();
    assert_eq!(err.field(), "level");
    assert_eq!(err.problem(), "switch `images` has levels 0..=3, got 4");
    assert_eq!(images.level(), 2, "a refused override changes nothing");
    images.force_off();
    assert_eq!(images.level(), 3);
    assert_eq!(images.status().state(), "off");
    images.force_level(0).unwrap();
    assert_eq!(images.status().reason.as_ref(), "forced on by an operator");
    assert_eq!(flips.all().len(), 3);
}
