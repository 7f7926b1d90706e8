//! The cores: pinning a thread to one (the end-to-end bench puts its server and its load
//! generator on different cores), and reading a thread's own CPU time.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use core_affinity::CoreId;

/// Whether the warning that pinning failed was printed (once per process).
static WARNED: AtomicBool = AtomicBool::new(false);

/// The cores this process may run on, in order (`None` if the system does not say).
pub fn available() -> Option<Vec<usize>> {
    core_affinity::get_core_ids().map(|ids| ids.into_iter().map(|id| id.id).collect())
}

/// Pins the calling thread to the `index`-th core this process may run on (wrapping
/// around when there are fewer). Returns the core's id, or `None` after printing a
/// warning (once) when the system refuses: the caller goes on unpinned.
pub fn pin_current(index: usize) -> Option<usize> {
    let pinned = available()
        .filter(|ids| !ids.is_empty())
        .map(|ids| ids[index % ids.len()])
        .filter(|&id| core_affinity::set_for_current(CoreId { id }));
    if pinned.is_none() && !WARNED.swap(true, Ordering::Relaxed) {
        eprintln!("warning: could not pin a thread to a core; running unpinned");
    }
    pinned
}

/// The calling thread's CPU time so far, from `/proc/thread-self/schedstat` (Linux; in
/// nanoseconds, unlike the clock ticks of `stat`). `None` where it cannot be read.
pub fn thread_cpu() -> Option<Duration> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    parse_schedstat(&text)
}

/// The first field of a `schedstat` line: nanoseconds on a CPU.
fn parse_schedstat(text: &str) -> Option<Duration> {
    let nanos = text.split_whitespace().next()?.parse::<u64>().ok()?;
    Some(Duration::from_nanos(nanos))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedstat_is_read_in_nanoseconds() {
        assert_eq!(
            parse_schedstat("357676792 339182 34\n"),
            Some(Duration::from_nanos(357_676_792))
        );
        assert_eq!(parse_schedstat(""), None);
        assert_eq!(parse_schedstat("x 1 2"), None);
    }

    #[test]
    fn a_busy_thread_has_cpu_time_where_linux_says() {
        let Some(before) = thread_cpu() else {
            return; // Not Linux: nothing to read.
        };
        let mut sum = 0u64;
        for i in 0..2_000_000u64 {
            sum = sum.wrapping_add(i.wrapping_mul(i));
        }
        std::hint::black_box(sum);
        assert!(thread_cpu().unwrap() > before);
    }
}
