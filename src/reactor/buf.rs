//! Per-reactor buffer pools: a connection borrows buffers only while it has
//! partial input or pending output, and gives them back when it goes idle.
//! Pools are capped in count and in bytes, so what a burst made the reactor
//! allocate goes back to the allocator once the burst is over.

/// What a pool keeps: it knows the heap bytes it holds, and can let go of
/// them.
pub(crate) trait Pooled {
    /// Heap bytes held (capacity, not length).
    fn weight(&self) -> usize;
    /// Frees what [`Pooled::weight`] counts, keeping the value usable.
    fn lighten(&mut self);
}

impl Pooled for Vec<u8> {
    fn weight(&self) -> usize {
        self.capacity()
    }

    fn lighten(&mut self) {
        *self = Vec::new();
    }
}

/// A bounded free list. `take` reuses a returned value or makes a new one;
/// `give` keeps at most `max` values holding at most `max_bytes` in all,
/// lightening or dropping the rest.
pub(crate) struct Pool<T> {
    free: Vec<T>,
    max: usize,
    /// The weight of the values in `free`.
    bytes: usize,
    max_bytes: usize,
}

impl<T: Pooled> Pool<T> {
    /// A pool of at most `max` values, whatever their weight.
    #[cfg(test)]
    pub(crate) fn new(max: usize) -> Self {
        Pool::with_byte_cap(max, usize::MAX)
    }

    /// A pool of at most `max` values weighing at most `max_bytes` in all.
    pub(crate) fn with_byte_cap(max: usize, max_bytes: usize) -> Self {
        Pool { free: Vec::new(), max, bytes: 0, max_bytes }
    }

    pub(crate) fn take_or(&mut self, make: impl FnOnce() -> T) -> T {
        match self.free.pop() {
            Some(v) => {
                self.bytes -= v.weight();
                v
            }
            None => make(),
        }
    }

    pub(crate) fn give(&mut self, mut value: T) {
        if self.free.len() >= self.max {
            return;
        }
        if self.bytes.saturating_add(value.weight()) > self.max_bytes {
            value.lighten();
        }
        let w = value.weight();
        if self.bytes + w <= self.max_bytes {
            self.bytes += w;
            self.free.push(value);
        }
    }

    /// The bytes the pooled values hold.
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    /// Frees every pooled value; the bytes freed.
    pub(crate) fn empty(&mut self) -> usize {
        self.free = Vec::new();
        std::mem::take(&mut self.bytes)
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
    fn pools_are_capped_in_bytes() {
        let mut pool = Pool::with_byte_cap(10, 100);
        pool.give(Vec::<u8>::with_capacity(60));
        pool.give(Vec::<u8>::with_capacity(60)); // over the byte cap: lightened
        assert_eq!(pool.bytes(), 60);
        assert_eq!(pool.take_or(Vec::new).capacity(), 0);
        assert_eq!(pool.take_or(Vec::new).capacity(), 60);
        assert_eq!(pool.bytes(), 0);
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
