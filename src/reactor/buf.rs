//! Per-reactor buffer pools: a connection borrows buffers only while it has
//! partial input or pending output, and gives them back when it goes idle.

/// A bounded free list. `take` reuses a returned value or makes a new one;
/// `give` keeps at most `max` values and drops the rest.
pub(crate) struct Pool<T> {
    free: Vec<T>,
    max: usize,
}

impl<T> Pool<T> {
    pub(crate) fn new(max: usize) -> Self {
        Pool { free: Vec::new(), max }
    }

    pub(crate) fn take_or(&mut self, make: impl FnOnce() -> T) -> T {
        self.free.pop().unwrap_or_else(make)
    }

    pub(crate) fn give(&mut self, value: T) {
        if self.free.len() < self.max {
            self.free.push(value);
        }
    }
}

/// The largest capacity a pooled `Vec<u8>` may keep; bigger ones are freed so
/// that one 16 MiB message does not pin 16 MiB per pooled buffer.
pub(crate) const MAX_POOLED_CAPACITY: usize = 64 << 10;

/// Clears `v` and reports whether it is worth pooling.
pub(crate) fn recycle(v: &mut Vec<u8>) -> bool {
    v.clear();
    v.capacity() <= MAX_POOLED_CAPACITY
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_reuses_and_bounds() {
        let mut pool = Pool::new(1);
        let a = pool.take_or(|| Vec::<u8>::with_capacity(10));
        let b = pool.take_or(|| Vec::<u8>::with_capacity(20));
        pool.give(a);
        pool.give(b); // over the bound: dropped
        assert_eq!(pool.take_or(Vec::new).capacity(), 10);
        assert_eq!(pool.take_or(Vec::new).capacity(), 0);
    }

    #[test]
    fn huge_buffers_are_not_pooled() {
        let mut v = vec![0u8; MAX_POOLED_CAPACITY + 1];
        assert!(!recycle(&mut v));
        let mut v = vec![0u8; 100];
        assert!(recycle(&mut v));
        assert!(v.is_empty());
    }
}
