//! [`Deadline`]: the instant by which a request's answer is no longer wanted.

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use pin_project::pin_project;
use tokio::time::Instant;

use crate::current::{self, Enter};

mod source;

#[cfg(feature = "http")]
pub use self::source::HttpDeadline;
pub use self::source::{DeadlineSource, TaskDeadline};

thread_local! {
    /// The deadline of the future being polled on this thread (see `current.rs`).
    static CURRENT: Cell<Option<Deadline>> = const { Cell::new(None) };
}

/// How far ahead a deadline built from an absurdly long duration lands: about 30 years,
/// the same horizon tokio uses for "never".
const FAR_FUTURE: Duration = Duration::from_secs(86_400 * 365 * 30);

/// The absolute instant by which a request must be answered.
///
/// A deadline travels two ways:
///
/// - in a request's extensions (`request.extensions().get::<Deadline>()`), written by the
///   deadline layer that accepted the request and read by retry, bulkhead and shed layers so
///   that no retry, queue wait or admission outlives it;
/// - as the task-local *current* deadline of a handler ([`Deadline::scope`],
///   [`Deadline::current`]), so client calls made by the handler inherit it without passing
///   it by hand.
///
/// It is a [`tokio::time::Instant`], so paused-time tests control it.
///
/// ```
/// use std::time::Duration;
/// use tower_bulwark_core::Deadline;
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let deadline = Deadline::after(Duration::from_millis(300));
/// assert_eq!(Deadline::current(), None);
///
/// deadline
///     .scope(async {
///         tokio::time::sleep(Duration::from_millis(100)).await;
///         let current = Deadline::current().unwrap();
///         assert_eq!(current.remaining(), Duration::from_millis(200));
///     })
///     .await;
/// # }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Deadline(Instant);

impl Deadline {
    /// A deadline at `instant`.
    pub fn at(instant: Instant) -> Self {
        Deadline(instant)
    }

    /// A deadline `timeout` from now. A duration too long to represent (such as
    /// `Duration::MAX`) lands about 30 years ahead instead of panicking.
    pub fn after(timeout: Duration) -> Self {
        Deadline::after_from(Instant::now(), timeout)
    }

    /// A deadline `timeout` after `start`, saturating like [`Deadline::after`]: for a layer
    /// that has already read the clock.
    pub fn after_from(start: Instant, timeout: Duration) -> Self {
        let at = start
            .checked_add(timeout)
            .or_else(|| start.checked_add(FAR_FUTURE))
            .unwrap_or(start);
        Deadline(at)
    }

    /// The instant itself.
    pub fn instant(self) -> Instant {
        self.0
    }

    /// Time left until the deadline; zero once it has passed.
    pub fn remaining(self) -> Duration {
        self.0.saturating_duration_since(Instant::now())
    }

    /// Whether the deadline has passed.
    pub fn is_expired(self) -> bool {
        self.0 <= Instant::now()
    }

    /// The earlier of this deadline and `other`, if any.
    pub fn earliest(self, other: Option<Deadline>) -> Deadline {
        match other {
            Some(other) => self.min(other),
            None => self,
        }
    }

    /// The current task's deadline, set by an enclosing [`Deadline::scope`].
    ///
    /// `None` outside any scope. Tasks started with `tokio::spawn` do not inherit it: wrap
    /// the spawned future in its own scope.
    pub fn current() -> Option<Deadline> {
        current::get(&CURRENT)
    }

    /// Runs `future` with this deadline as the current one.
    ///
    /// Scopes only ever shorten: inside a scope whose deadline is earlier, the earlier one
    /// stays current, because work done for a caller cannot outlive the caller's deadline.
    /// The comparison is made each time the future is polled, so it holds however the
    /// scoped future is later nested (built here, awaited inside another scope).
    ///
    /// ```
    /// use std::time::Duration;
    /// use tower_bulwark_core::Deadline;
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let outer = Deadline::after(Duration::from_secs(1));
    /// let inner = Deadline::after(Duration::from_secs(5));
    /// outer
    ///     .scope(async move {
    ///         inner.scope(async move {
    ///             assert_eq!(Deadline::current(), Some(outer));
    ///         })
    ///         .await
    ///     })
    ///     .await;
    /// # }
    /// ```
    pub fn scope<F: Future>(self, future: F) -> DeadlineScope<F> {
        DeadlineScope {
            deadline: self,
            inner: future,
        }
    }

    /// Runs the closure `f` with this deadline as the current one (or the enclosing one, if
    /// earlier), for synchronous work such as a tower `Service::call`, which builds its
    /// future before [`scope`](Self::scope) first polls it.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tower_bulwark_core::Deadline;
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let deadline = Deadline::after(Duration::from_secs(1));
    /// assert_eq!(deadline.in_scope(Deadline::current), Some(deadline));
    /// # }
    /// ```
    pub fn in_scope<R>(self, f: impl FnOnce() -> R) -> R {
        let _current = Enter::new(&CURRENT, self.earliest(Deadline::current()));
        f()
    }

    /// Runs the closure `f` with no current deadline, whatever scope encloses it, for work
    /// done on behalf of several callers (a coalesced upstream call), which no one caller's
    /// deadline may cut short. The enclosing deadline is current again after `f` returns.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tower_bulwark_core::Deadline;
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let deadline = Deadline::after(Duration::from_secs(1));
    /// deadline.in_scope(|| {
    ///     assert_eq!(Deadline::unscoped(Deadline::current), None);
    ///     assert_eq!(Deadline::current(), Some(deadline));
    /// });
    /// # }
    /// ```
    pub fn unscoped<R>(f: impl FnOnce() -> R) -> R {
        let _current = Enter::clear(&CURRENT);
        f()
    }

    /// The deadline that applies to a request: the earlier of the one in its extensions and
    /// the task's current one.
    #[cfg(feature = "http")]
    pub fn of_request(extensions: &http::Extensions) -> Option<Deadline> {
        let current = Deadline::current();
        match extensions.get::<Deadline>() {
            Some(deadline) => Some(deadline.earliest(current)),
            None => current,
        }
    }
}

/// Future returned by [`Deadline::scope`]: the wrapped future, run with a current deadline.
#[pin_project]
pub struct DeadlineScope<F> {
    deadline: Deadline,
    #[pin]
    inner: F,
}

impl<F: Future> Future for DeadlineScope<F> {
    type Output = F::Output;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        // The enclosing scope is the one current at this poll, wherever this future went.
        let effective = this.deadline.earliest(Deadline::current());
        let inner = this.inner;
        let _current = Enter::new(&CURRENT, effective);
        inner.poll(cx)
    }
}

impl<F> std::fmt::Debug for DeadlineScope<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeadlineScope").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::time::sleep;

    #[tokio::test(start_paused = true)]
    async fn a_panic_inside_a_scope_restores_the_enclosing_deadline() {
        let outer = Deadline::after(Duration::from_secs(1));
        let inner = Deadline::after(Duration::from_millis(10));
        outer.in_scope(|| {
            let caught = std::panic::catch_unwind(|| inner.in_scope(|| panic!("boom")));
            assert!(caught.is_err());
            assert_eq!(Deadline::current(), Some(outer));
        });
        assert_eq!(Deadline::current(), None);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_deadline_holds_at_every_poll_on_any_worker_but_not_in_spawned_tasks() {
        let deadline = Deadline::after(Duration::from_secs(5));
        deadline
            .scope(async move {
                for _ in 0..20 {
                    // Each yield goes back through the scheduler, which may resume the task on
                    // either worker (not forced: a thread-local left set by mistake would show
                    // in the spawned task below or after the scope).
                    tokio::task::yield_now().await;
                    assert_eq!(Deadline::current(), Some(deadline));
                }
                let spawned = tokio::spawn(async { Deadline::current() }).await.unwrap();
                assert_eq!(spawned, None, "spawned tasks do not inherit it");
            })
            .await;
        assert_eq!(Deadline::current(), None);
    }

    #[tokio::test(start_paused = true)]
    async fn remaining_counts_down_and_saturates_at_zero() {
        let deadline = Deadline::after(Duration::from_millis(100));
        assert_eq!(deadline.remaining(), Duration::from_millis(100));
        assert!(!deadline.is_expired());
        sleep(Duration::from_millis(60)).await;
        assert_eq!(deadline.remaining(), Duration::from_millis(40));
        sleep(Duration::from_millis(40)).await;
        assert!(deadline.is_expired());
        sleep(Duration::from_secs(5)).await;
        assert_eq!(deadline.remaining(), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn huge_durations_do_not_panic() {
        let deadline = Deadline::after(Duration::MAX);
        assert!(deadline.remaining() >= FAR_FUTURE - Duration::from_secs(1));
        let year = Duration::from_secs(86_400 * 365);
        assert!(
            (29 * year..=30 * year).contains(&deadline.remaining()),
            "about 30 years ahead: {:?}",
            deadline.remaining()
        );
        assert!(!deadline.is_expired());
        let zero = Deadline::after(Duration::ZERO);
        assert!(zero.is_expired());
    }

    #[tokio::test(start_paused = true)]
    async fn current_is_visible_across_awaits_and_gone_outside() {
        assert_eq!(Deadline::current(), None);
        let deadline = Deadline::after(Duration::from_secs(2));
        let seen = deadline
            .scope(async {
                let before = Deadline::current();
                sleep(Duration::from_millis(500)).await;
                tokio::task::yield_now().await;
                (before, Deadline::current())
            })
            .await;
        assert_eq!(seen, (Some(deadline), Some(deadline)));
        assert_eq!(Deadline::current(), None);
    }

    #[tokio::test(start_paused = true)]
    async fn nested_scopes_only_shorten() {
        let long = Deadline::after(Duration::from_secs(10));
        let short = Deadline::after(Duration::from_secs(1));
        let (inner_of_long, inner_of_short) = long
            .scope(async move {
                let a = short.scope(async { Deadline::current() }).await;
                let b = Deadline::current();
                (a, b)
            })
            .await;
        assert_eq!(inner_of_long, Some(short));
        assert_eq!(inner_of_short, Some(long));

        let extended = short
            .scope(async move { long.scope(async { Deadline::current() }).await })
            .await;
        assert_eq!(extended, Some(short));
    }

    #[tokio::test(start_paused = true)]
    async fn a_scope_built_outside_still_only_shortens_where_it_is_awaited() {
        let long = Deadline::after(Duration::from_secs(10));
        let short = Deadline::after(Duration::from_secs(1));
        // Built with no scope around it, then awaited inside the short one.
        let built_early = long.scope(async { Deadline::current() });
        let seen = short.scope(built_early).await;
        assert_eq!(seen, Some(short));
        // And across awaits inside it.
        let built_early = long.scope(async {
            sleep(Duration::from_millis(10)).await;
            Deadline::current()
        });
        assert_eq!(short.scope(built_early).await, Some(short));
    }

    #[tokio::test(start_paused = true)]
    async fn spawned_tasks_do_not_inherit_the_scope() {
        let deadline = Deadline::after(Duration::from_secs(1));
        let spawned = deadline
            .scope(async { tokio::spawn(async { Deadline::current() }).await.unwrap() })
            .await;
        assert_eq!(spawned, None);
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_scopes_are_independent() {
        let a = Deadline::after(Duration::from_secs(1));
        let b = Deadline::after(Duration::from_secs(2));
        let fa = a.scope(async {
            sleep(Duration::from_millis(10)).await;
            Deadline::current()
        });
        let fb = b.scope(async {
            sleep(Duration::from_millis(5)).await;
            Deadline::current()
        });
        assert_eq!(tokio::join!(fa, fb), (Some(a), Some(b)));
    }

    #[cfg(feature = "http")]
    #[tokio::test(start_paused = true)]
    async fn of_request_takes_the_earlier_of_extension_and_scope() {
        let mut extensions = http::Extensions::new();
        assert_eq!(Deadline::of_request(&extensions), None);
        let early = Deadline::after(Duration::from_secs(1));
        let late = Deadline::after(Duration::from_secs(3));
        extensions.insert(late);
        assert_eq!(Deadline::of_request(&extensions), Some(late));
        let seen = early
            .scope(async { Deadline::of_request(&extensions) })
            .await;
        assert_eq!(seen, Some(early));
        let empty = http::Extensions::new();
        assert_eq!(
            late.scope(async { Deadline::of_request(&empty) }).await,
            Some(late)
        );
    }
}
