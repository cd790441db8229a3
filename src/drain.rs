//! Dropping many values in a row (what a queue holds when it is dropped,
//! a batch of retired cache entries) past one whose `drop` panics.

/// Drops every value `next` yields, going on past a value whose `drop`
/// panics, as `Vec` does: while one is dropped, a guard for the rest is
/// alive, and the unwind runs it. (A second panic during that unwind
/// aborts, as it does for `Vec`.)
pub(crate) fn drop_all<T>(next: &mut dyn FnMut() -> Option<T>) {
    /// Drops the rest if dropping the current value panics.
    struct Rest<'a, T>(&'a mut dyn FnMut() -> Option<T>);

    impl<T> Drop for Rest<'_, T> {
        fn drop(&mut self) {
            drop_all(&mut *self.0);
        }
    }

    while let Some(value) = next() {
        let rest = Rest(&mut *next);
        drop(value);
        std::mem::forget(rest);
    }
}
