//! Events: how layers tell the outside world what they decided.
//!
//! Each layer defines its own event type (a breaker's state change, a bulkhead's rejection)
//! implementing [`Event`], and keeps a [`Listeners`] list its builder fills. A layer builds
//! an event value only when at least one listener is registered: with none, emitting costs
//! one branch and no allocation.
//!
//! Built-in listeners: [`TracingListener`] logs through `tracing` at the level the event
//! chooses; [`MetricsListener`](crate::metrics::MetricsListener) (feature `metrics`)
//! records through the `metrics` facade.

use std::fmt;
use std::sync::Arc;

use tracing::Level;

/// An event a layer reports.
pub trait Event: fmt::Debug + fmt::Display + Send + Sync {
    /// The kind of layer that emits it: `"breaker"`, `"bulkhead"`, `"retry"`, ...
    fn layer_kind(&self) -> &'static str;

    /// The `tracing` level [`TracingListener`] logs it at. Convention: state changes at
    /// `INFO` (`WARN` when moving to a worse state), per-call detail at `DEBUG` or `TRACE`.
    fn level(&self) -> Level;

    /// Records the event through the `metrics` facade; called by
    /// [`MetricsListener`](crate::metrics::MetricsListener). Names start with `bulwark_`
    /// (see [`metric_name!`](crate::metric_name)). The default records nothing.
    #[cfg(feature = "metrics")]
    fn record_metrics(&self) {}
}

/// Receives the events of a layer. Closures `Fn(&E)` are listeners.
///
/// Listeners run inline on the request path: keep them quick and non-blocking (hand work
/// to a channel if it is slow).
pub trait Listener<E>: Send + Sync {
    /// Handles one event.
    fn on_event(&self, event: &E);
}

impl<E, F> Listener<E> for F
where
    F: Fn(&E) + Send + Sync,
{
    fn on_event(&self, event: &E) {
        self(event)
    }
}

/// The listeners of one layer, shared by every service the layer builds.
///
/// ```
/// use std::sync::atomic::{AtomicUsize, Ordering};
/// use std::sync::Arc;
/// use tower_bulwark_core::events::Listeners;
///
/// let seen = Arc::new(AtomicUsize::new(0));
/// let mut listeners = Listeners::<u32>::new();
///
/// // No listener: the event is never built.
/// listeners.emit(|| unreachable!("not built without listeners"));
///
/// let counter = seen.clone();
/// listeners.push(move |event: &u32| {
///     counter.fetch_add(*event as usize, Ordering::Relaxed);
/// });
/// listeners.emit(|| 5);
/// assert_eq!(seen.load(Ordering::Relaxed), 5);
/// ```
pub struct Listeners<E> {
    list: Option<Arc<[Arc<dyn Listener<E>>]>>,
}

impl<E> Listeners<E> {
    /// No listeners.
    pub const fn new() -> Self {
        Listeners { list: None }
    }

    /// Adds a listener. Meant for building a layer, not for the request path.
    pub fn push(&mut self, listener: impl Listener<E> + 'static) {
        let mut list: Vec<Arc<dyn Listener<E>>> =
            self.list.iter().flat_map(|l| l.iter().cloned()).collect();
        list.push(Arc::new(listener));
        self.list = Some(list.into());
    }

    /// Whether there are no listeners.
    pub fn is_empty(&self) -> bool {
        self.list.is_none()
    }

    /// How many listeners there are.
    pub fn len(&self) -> usize {
        self.list.as_ref().map_or(0, |list| list.len())
    }

    /// Builds the event with `make` and hands it to every listener; with no listener,
    /// `make` is not called.
    #[inline]
    pub fn emit(&self, make: impl FnOnce() -> E) {
        if let Some(list) = &self.list {
            let event = make();
            for listener in list.iter() {
                listener.on_event(&event);
            }
        }
    }
}

impl<E> Clone for Listeners<E> {
    fn clone(&self) -> Self {
        Listeners {
            list: self.list.clone(),
        }
    }
}

impl<E> Default for Listeners<E> {
    fn default() -> Self {
        Listeners::new()
    }
}

impl<E> fmt::Debug for Listeners<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Listeners")
            .field("len", &self.len())
            .finish()
    }
}

/// Logs events through `tracing`, at the level each event asks for, with the fields
/// `layer_kind` and `event` (its `Debug` form) and its `Display` form as the message.
///
/// ```
/// use tower_bulwark_core::events::{Listeners, TracingListener};
/// # #[derive(Debug)] struct Opened;
/// # impl std::fmt::Display for Opened {
/// #     fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result { f.write_str("opened") }
/// # }
/// # impl tower_bulwark_core::Event for Opened {
/// #     fn layer_kind(&self) -> &'static str { "breaker" }
/// #     fn level(&self) -> tracing::Level { tracing::Level::WARN }
/// # }
///
/// let mut listeners = Listeners::<Opened>::new();
/// listeners.push(TracingListener);
/// listeners.emit(|| Opened);
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct TracingListener;

impl<E: Event> Listener<E> for TracingListener {
    fn on_event(&self, event: &E) {
        macro_rules! log_at {
            ($level:expr) => {
                tracing::event!(
                    target: "tower_bulwark",
                    $level,
                    layer_kind = event.layer_kind(),
                    event = ?event,
                    "{event}"
                )
            };
        }
        match event.level() {
            Level::ERROR => log_at!(Level::ERROR),
            Level::WARN => log_at!(Level::WARN),
            Level::INFO => log_at!(Level::INFO),
            Level::DEBUG => log_at!(Level::DEBUG),
            _ => log_at!(Level::TRACE),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[derive(Debug, Clone, PartialEq)]
    struct Tripped {
        rate: f64,
    }

    impl fmt::Display for Tripped {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "tripped at {:.0}%", self.rate * 100.0)
        }
    }

    impl Event for Tripped {
        fn layer_kind(&self) -> &'static str {
            "breaker"
        }
        fn level(&self) -> Level {
            Level::WARN
        }
    }

    #[test]
    fn every_listener_sees_every_event_in_order() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let mut listeners = Listeners::new();
        for id in 0..3 {
            let seen = seen.clone();
            listeners.push(move |e: &Tripped| seen.lock().unwrap().push((id, e.rate)));
        }
        assert_eq!(listeners.len(), 3);
        let clone = listeners.clone();
        clone.emit(|| Tripped { rate: 0.5 });
        assert_eq!(*seen.lock().unwrap(), vec![(0, 0.5), (1, 0.5), (2, 0.5)]);
    }

    #[test]
    fn no_listener_means_the_event_is_never_built() {
        let listeners = Listeners::<Tripped>::default();
        assert!(listeners.is_empty());
        let mut built = false;
        listeners.emit(|| {
            built = true;
            Tripped { rate: 1.0 }
        });
        assert!(!built);
    }

    #[test]
    fn tracing_listener_logs_at_the_events_level() {
        let buffer = Arc::new(Mutex::new(Vec::new()));
        let writer = {
            let buffer = buffer.clone();
            move || SharedWriter(buffer.clone())
        };
        let subscriber = tracing_subscriber::fmt()
            .with_writer(writer)
            .with_ansi(false)
            .with_max_level(Level::TRACE)
            .finish();
        let mut listeners = Listeners::new();
        listeners.push(TracingListener);
        tracing::subscriber::with_default(subscriber, || {
            listeners.emit(|| Tripped { rate: 0.75 });
        });
        let output = String::from_utf8(buffer.lock().unwrap().clone()).unwrap();
        assert!(output.contains("WARN"), "{output}");
        assert!(output.contains("tripped at 75%"), "{output}");
        assert!(output.contains("layer_kind=\"breaker\""), "{output}");
    }

    struct SharedWriter(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for SharedWriter {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
}
