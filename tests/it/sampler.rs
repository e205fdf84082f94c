//! The sampler as a library: draining while the program writes loses and duplicates
//! nothing.

use std::process::{Command, Stdio};
use std::time::Duration;

use profiler_common::Stat;
use profiler_sampler::{Sampler, SamplerConfig, Target};

use crate::common::{example, privileged};

#[test]
fn drains_account_for_every_recorded_sample() {
    let Some(_p) = privileged("drains_account_for_every_recorded_sample") else {
        return;
    };
    let mut wl = Command::new(example("threads"))
        .arg("4")
        .stdout(Stdio::null())
        .spawn()
        .expect("starting the workload");
    // A high frequency and frequent drains make races between the program and the drain
    // as likely as they get.
    let mut sampler = Sampler::start(&SamplerConfig {
        frequency_hz: 997,
        target: Target::All,
        ..SamplerConfig::default()
    })
    .expect("starting the sampler");
    let mut drained = 0u64;
    let mut drains = 0;
    for _ in 0..60 {
        std::thread::sleep(Duration::from_millis(37));
        drained += sampler
            .drain()
            .expect("drain")
            .iter()
            .map(|s| s.count)
            .sum::<u64>();
        drains += 1;
    }
    // Stop recording; the drain after that takes everything that was recorded.
    sampler.pause().expect("pause");
    drained += sampler
        .drain()
        .expect("drain")
        .iter()
        .map(|s| s.count)
        .sum::<u64>();
    let total_recorded = sampler.stats().expect("stats").get(Stat::Recorded);
    let leftover: u64 = sampler
        .drain()
        .expect("drain")
        .iter()
        .map(|s| s.count)
        .sum();
    wl.kill().ok();
    wl.wait().ok();
    eprintln!("{drains} drains, {drained} samples drained, {total_recorded} recorded");
    assert!(
        drained > 1000,
        "too few samples to mean anything: {drained}"
    );
    assert_eq!(drained, total_recorded, "drained and recorded disagree");
    assert_eq!(leftover, 0, "samples recorded while paused");
}
