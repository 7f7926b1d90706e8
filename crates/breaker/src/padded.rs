//! [`Padded`]: a value on cache lines of its own.

/// Keeps a value on cache lines of its own: 128 bytes, a line and the neighbour that x86's
/// spatial prefetcher pulls in with it. Counters that calls write go in one, so their
/// writes do not keep invalidating the lines every admission reads (false sharing).
#[derive(Debug, Default)]
#[repr(align(128))]
pub(crate) struct Padded<T>(pub(crate) T);

impl<T> std::ops::Deref for Padded<T> {
    type Target = T;

    #[inline(always)]
    fn deref(&self) -> &T {
        &self.0
    }
}
