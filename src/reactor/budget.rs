//! The server-wide memory count against its cap, shared by the reactors
//! (see the memory module for how reactors keep to it).

use std::sync::atomic::{AtomicUsize, Ordering};

/// The server-wide count against the cap, shared by the reactors.
#[derive(Debug)]
pub(crate) struct Budget {
    held: AtomicUsize,
    /// Frames posted to reactors' inboxes and not yet taken out (a frame
    /// posted to several counts in each).
    in_flight: AtomicUsize,
    pub(crate) max: usize,
}

impl Budget {
    pub(crate) fn new(max: usize) -> Self {
        Budget { held: AtomicUsize::new(0), in_flight: AtomicUsize::new(0), max }
    }

    /// Bytes held now: each reactor's count as last posted, and the frames
    /// waiting in inboxes.
    pub(crate) fn held(&self) -> usize {
        self.held.load(Ordering::Relaxed) + self.in_flight.load(Ordering::Relaxed)
    }

    /// `bytes` of frames were posted to an inbox.
    pub(crate) fn posted(&self, bytes: usize) {
        self.in_flight.fetch_add(bytes, Ordering::Relaxed);
    }

    /// `bytes` of frames were taken out of an inbox.
    pub(crate) fn taken(&self, bytes: usize) {
        self.in_flight.fetch_sub(bytes, Ordering::Relaxed);
    }

    /// What buffers may grow into: seven eighths of the cap. The rest is
    /// for the allocator's own overhead and fragmentation (measured under
    /// the hostile tests at 2 to 8% of what is counted).
    pub(crate) fn usable(&self) -> usize {
        self.max - self.max / 8
    }

    /// Whether new connections are refused: 80% of the cap or more is held.
    pub(crate) fn nearly_spent(&self) -> bool {
        self.held() >= self.floor()
    }

    /// 80% of the cap: upgrades are refused from here on, and shedding
    /// frees down to here.
    pub(crate) fn floor(&self) -> usize {
        self.max / 10 * 8
    }

    /// Posts a reactor's new count (`now`), given the one it posted last.
    pub(crate) fn post(&self, posted: &mut usize, now: usize) {
        if now > *posted {
            self.held.fetch_add(now - *posted, Ordering::Relaxed);
        } else if now < *posted {
            self.held.fetch_sub(*posted - now, Ordering::Relaxed);
        }
        *posted = now;
    }
}
