//! The "current" value of a task (deadline, criticality): a thread-local `Cell` that a
//! guard sets while a scoped future is polled, and restores after.
//!
//! Like a tokio task-local it follows the task from thread to thread (it is only set
//! while the task's future is being polled), and spawned tasks do not inherit it; being a
//! `Cell` of a `Copy` value, reading and setting it costs a few nanoseconds and moves
//! nothing through closures.

use std::cell::Cell;
use std::thread::LocalKey;

/// A thread-local slot for a current value.
pub(crate) type Slot<T> = LocalKey<Cell<Option<T>>>;

/// The value in `slot` on this thread, if a scope set one.
#[inline]
pub(crate) fn get<T: Copy + 'static>(slot: &'static Slot<T>) -> Option<T> {
    slot.try_with(Cell::get).ok().flatten()
}

/// Makes `value` current in its slot until dropped, then restores the one before it
/// (also when unwinding from a panic).
pub(crate) struct Enter<T: Copy + 'static> {
    slot: &'static Slot<T>,
    previous: Option<T>,
}

impl<T: Copy + 'static> Enter<T> {
    #[inline]
    pub(crate) fn new(slot: &'static Slot<T>, value: T) -> Self {
        let previous = slot
            .try_with(|current| current.replace(Some(value)))
            .ok()
            .flatten();
        Enter { slot, previous }
    }

    /// Makes no value current in `slot` until dropped, then restores the one before it.
    #[inline]
    pub(crate) fn clear(slot: &'static Slot<T>) -> Self {
        let previous = slot.try_with(|current| current.take()).ok().flatten();
        Enter { slot, previous }
    }
}

impl<T: Copy + 'static> Drop for Enter<T> {
    #[inline]
    fn drop(&mut self) {
        let _ = self.slot.try_with(|current| current.set(self.previous));
    }
}
