//! What the soak samples: the bytes the program holds, the process's resident memory and
//! open sockets (from `/proc`, so Linux only), and every handle's counts of calls in
//! flight, queued or probing.

use std::alloc::System;
use std::fmt;

use stats_alloc::{StatsAlloc, INSTRUMENTED_SYSTEM};

use crate::edge::Parts;

/// The system allocator, counting what it hands out and takes back.
#[global_allocator]
static ALLOCATOR: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// The bytes the program holds: allocated less freed. A leak raises it for good; unlike
/// the resident memory, it does not count what the allocator keeps of freed memory.
pub(crate) fn heap() -> u64 {
    let stats = ALLOCATOR.stats();
    // The counts only grow, and wrap on 32-bit targets: their difference does not.
    stats.bytes_allocated.wrapping_sub(stats.bytes_deallocated) as u64
}

/// The resident set size in bytes (`VmRSS`), if `/proc` tells.
pub(crate) fn rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Open sockets of this process, if `/proc` tells.
pub(crate) fn sockets() -> Option<usize> {
    let entries = std::fs::read_dir("/proc/self/fd").ok()?;
    Some(
        entries
            .flatten()
            .filter_map(|entry| std::fs::read_link(entry.path()).ok())
            .filter(|target| target.to_string_lossy().starts_with("socket:"))
            .count(),
    )
}

/// Calls in flight, queued or probing, by part: all zero once the traffic has stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct InFlight {
    pub(crate) shed: usize,
    pub(crate) bulkhead: usize,
    pub(crate) queued: usize,
    pub(crate) probes: u32,
    pub(crate) hedges: u64,
    pub(crate) coalesced_keys: usize,
    pub(crate) waiters: usize,
    pub(crate) endpoints: usize,
}

impl InFlight {
    pub(crate) fn of(parts: &Parts) -> InFlight {
        let (shed, bulkhead) = (parts.shed.snapshot(), parts.bulkhead.snapshot());
        let coalesce = parts.coalesce.snapshot();
        InFlight {
            shed: shed.in_flight,
            bulkhead: bulkhead.in_flight,
            queued: bulkhead.queued,
            probes: parts.breaker.snapshot().probes_in_flight,
            hedges: parts.hedge.snapshot().in_flight,
            coalesced_keys: coalesce.keys,
            waiters: coalesce.waiters,
            endpoints: parts
                .detector
                .snapshot()
                .endpoints
                .iter()
                .map(|endpoint| endpoint.in_flight)
                .sum(),
        }
    }

    pub(crate) fn is_zero(&self) -> bool {
        *self == InFlight::default()
    }
}

impl fmt::Display for InFlight {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "shed {} bulkhead {}+{}q probes {} hedges {} coalesce {}k/{}w endpoints {}",
            self.shed,
            self.bulkhead,
            self.queued,
            self.probes,
            self.hedges,
            self.coalesced_keys,
            self.waiters,
            self.endpoints
        )
    }
}

/// Keys held by the keyed stores, each bounded by its capacity.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Keys {
    pub(crate) rate_limit: usize,
    pub(crate) idempotency: usize,
}

impl Keys {
    pub(crate) fn of(parts: &Parts) -> Keys {
        Keys {
            rate_limit: parts.limiter.key_count(),
            idempotency: parts.idempotency.len(),
        }
    }
}
