//! What a subscriber tells from the sequence numbers it receives: gaps,
//! duplicates and reorders.

/// Which sequence numbers a subscriber saw: a 1024-wide sliding window.
#[derive(Debug, Default)]
pub struct SeqTracker {
    next: u64,
    bits: [u64; 16],
    /// Distinct messages seen.
    pub unique: u64,
    /// Seen twice.
    pub duplicates: u64,
    /// Arrived after a later one.
    pub reorders: u64,
}

impl SeqTracker {
    const WINDOW: u64 = 1024;

    fn bit(&mut self, s: u64, on: bool) {
        let i = (s % Self::WINDOW) as usize;
        if on {
            self.bits[i / 64] |= 1 << (i % 64);
        } else {
            self.bits[i / 64] &= !(1 << (i % 64));
        }
    }

    fn get(&self, s: u64) -> bool {
        let i = (s % Self::WINDOW) as usize;
        self.bits[i / 64] & (1 << (i % 64)) != 0
    }

    /// Records `s`; returns whether it is new.
    pub fn see(&mut self, s: u64) -> bool {
        if s >= self.next {
            if s - self.next >= Self::WINDOW {
                self.bits = [0; 16];
            } else {
                for x in self.next..s {
                    self.bit(x, false);
                }
            }
            self.bit(s, true);
            self.next = s + 1;
            self.unique += 1;
            true
        } else if self.next - s > Self::WINDOW {
            // Too old to tell: a very late arrival.
            self.reorders += 1;
            self.unique += 1;
            true
        } else if self.get(s) {
            self.duplicates += 1;
            false
        } else {
            self.bit(s, true);
            self.reorders += 1;
            self.unique += 1;
            true
        }
    }
}

#[cfg(test)]
mod tests {
    use super::SeqTracker;

    #[test]
    fn tracker_tells_gaps_dups_reorders() {
        let mut t = SeqTracker::default();
        for s in [0, 1, 2, 4, 3, 3, 5, 5000, 10] {
            t.see(s);
        }
        assert_eq!(t.duplicates, 1);
        assert_eq!(t.reorders, 2); // 3 after 4; 10 after 5000 (too old to tell)
        assert_eq!(t.unique, 8);
    }
}
