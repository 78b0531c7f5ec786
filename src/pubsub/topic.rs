//! Topic names: validated once, then cheap to clone and to hash.

use std::borrow::Borrow;
use std::fmt;
use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::Arc;

/// The default cap on a topic name's length, in bytes.
pub const DEFAULT_MAX_TOPIC_LEN: usize = 128;

/// The hard cap on a topic name's length: the binary wire formats carry the
/// length in one byte. Caps above it are lowered to it.
pub const MAX_TOPIC_LEN: usize = 255;

/// Whether `b` may appear in a topic name: `A-Z a-z 0-9 . _ : / -`.
///
/// ```
/// use wsreactor::pubsub::topic::is_topic_byte;
/// assert!(is_topic_byte(b'.') && is_topic_byte(b'Z') && is_topic_byte(b'-'));
/// assert!(!is_topic_byte(b' ') && !is_topic_byte(b'"') && !is_topic_byte(0xC3));
/// ```
#[inline]
pub const fn is_topic_byte(b: u8) -> bool {
    matches!(b, b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'.' | b'_' | b':' | b'/' | b'-')
}

/// Why a string is not a valid topic name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TopicError {
    /// The name is empty.
    Empty,
    /// The name is longer than the cap.
    TooLong {
        /// The name's length in bytes.
        len: usize,
        /// The cap in force.
        max: usize,
    },
    /// The name holds a byte outside `A-Z a-z 0-9 . _ : / -`.
    BadByte {
        /// The byte offset of the first such byte.
        at: usize,
    },
}

impl fmt::Display for TopicError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            TopicError::Empty => f.write_str("topic name is empty"),
            TopicError::TooLong { len, max } => {
                write!(f, "topic name is {len} bytes long, the limit is {max}")
            }
            TopicError::BadByte { at } => {
                write!(f, "topic name has a character outside A-Z a-z 0-9 . _ : / - at byte {at}")
            }
        }
    }
}

impl std::error::Error for TopicError {}

/// Checks `name` against the topic rules with a length cap of `max_len`
/// bytes (itself capped at [`MAX_TOPIC_LEN`]). Nothing is allocated.
///
/// The length is checked before the characters, so an over-long name is
/// reported as [`TopicError::TooLong`] whatever it holds.
///
/// ```
/// use wsreactor::pubsub::topic::{validate_topic, TopicError};
/// assert_eq!(validate_topic("md.BTC-USD", 128), Ok(()));
/// assert_eq!(validate_topic("", 128), Err(TopicError::Empty));
/// assert_eq!(validate_topic("a b", 128), Err(TopicError::BadByte { at: 1 }));
/// assert_eq!(validate_topic("abcd", 3), Err(TopicError::TooLong { len: 4, max: 3 }));
/// ```
pub fn validate_topic(name: &str, max_len: usize) -> Result<(), TopicError> {
    let max = max_len.min(MAX_TOPIC_LEN);
    let bytes = name.as_bytes();
    if bytes.is_empty() {
        return Err(TopicError::Empty);
    }
    if bytes.len() > max {
        return Err(TopicError::TooLong { len: bytes.len(), max });
    }
    match bytes.iter().position(|&b| !is_topic_byte(b)) {
        Some(at) => Err(TopicError::BadByte { at }),
        None => Ok(()),
    }
}

/// A validated topic name: 1 to `max_len` bytes (128 by default, never more
/// than [`MAX_TOPIC_LEN`]) of `A-Z a-z 0-9 . _ : / -`.
///
/// The charset needs no escaping in JSON, URLs or log lines, and keeps the
/// binary headers one length byte long. Cloning shares the bytes (an
/// `Arc<str>`); equality, ordering and hashing are those of the string, and a
/// map keyed by `TopicName` can be searched with a `&str`.
///
/// ```
/// use wsreactor::pubsub::TopicName;
///
/// let t = TopicName::new("md.BTC-USD")?;
/// assert_eq!(t.as_str(), "md.BTC-USD");
/// let u = t.clone(); // shares the bytes
/// assert_eq!(t, u);
/// assert!(TopicName::new("md.BTC USD").is_err());
/// assert!(TopicName::with_max_len("md.BTC-USD", 4).is_err());
/// # Ok::<(), wsreactor::pubsub::TopicError>(())
/// ```
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TopicName(Arc<str>);

impl TopicName {
    /// Validates `name` with the default cap ([`DEFAULT_MAX_TOPIC_LEN`]).
    pub fn new(name: &str) -> Result<TopicName, TopicError> {
        TopicName::with_max_len(name, DEFAULT_MAX_TOPIC_LEN)
    }

    /// Validates `name` with a cap of `max_len` bytes (at most [`MAX_TOPIC_LEN`]).
    pub fn with_max_len(name: &str, max_len: usize) -> Result<TopicName, TopicError> {
        validate_topic(name, max_len)?;
        Ok(TopicName(Arc::from(name)))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The name's length in bytes (1..=255).
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Always false: a topic name is never empty. (Here for clippy's sake.)
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for TopicName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for TopicName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for TopicName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl Borrow<str> for TopicName {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl TryFrom<&str> for TopicName {
    type Error = TopicError;

    fn try_from(name: &str) -> Result<TopicName, TopicError> {
        TopicName::new(name)
    }
}

/// A fast, non-cryptographic hasher for topic names (FxHash's multiply and
/// rotate, eight bytes at a time). Topic keys come from authorized
/// publishers and are short, so flooding resistance buys nothing here and
/// SipHash's cost would be paid on every publish.
#[derive(Default, Clone, Copy)]
pub(crate) struct TopicHasher(u64);

const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl TopicHasher {
    #[inline]
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(SEED);
    }
}

impl Hasher for TopicHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.add(u64::from_le_bytes(w));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut w = [0u8; 8];
            w[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(w));
        }
    }

    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }

    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }

    #[inline]
    fn finish(&self) -> u64 {
        // Fold the high bits down: shard selection uses the low ones.
        self.0 ^ (self.0 >> 29)
    }
}

/// Builds [`TopicHasher`]s.
#[derive(Default, Clone, Copy)]
pub(crate) struct BuildTopicHasher;

impl BuildHasher for BuildTopicHasher {
    type Hasher = TopicHasher;

    #[inline]
    fn build_hasher(&self) -> TopicHasher {
        TopicHasher::default()
    }
}

/// The hash of a topic name as the store's maps compute it.
#[inline]
pub(crate) fn topic_hash(name: &str) -> u64 {
    BuildTopicHasher.hash_one(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn valid_names() {
        for name in ["a", "md.BTC-USD", "A-Z_a-z:0/9.x", "ws/v1:trades", &"x".repeat(128)] {
            let t = TopicName::new(name).unwrap();
            assert_eq!(t.as_str(), name);
            assert_eq!(t.len(), name.len());
            assert!(!t.is_empty());
            assert_eq!(t.to_string(), name);
            assert_eq!(format!("{t:?}"), format!("{name:?}"));
        }
    }

    #[test]
    fn empty_and_too_long() {
        assert_eq!(TopicName::new(""), Err(TopicError::Empty));
        assert_eq!(
            TopicName::new(&"x".repeat(129)),
            Err(TopicError::TooLong { len: 129, max: 128 })
        );
        // The length is checked first, so a long name of bad bytes is "too long".
        assert_eq!(
            TopicName::new(&" ".repeat(200)),
            Err(TopicError::TooLong { len: 200, max: 128 })
        );
        // A cap above the wire limit is lowered to it.
        assert!(TopicName::with_max_len(&"x".repeat(255), 10_000).is_ok());
        assert_eq!(
            TopicName::with_max_len(&"x".repeat(256), 10_000),
            Err(TopicError::TooLong { len: 256, max: 255 })
        );
        assert_eq!(TopicName::with_max_len("ab", 0), Err(TopicError::TooLong { len: 2, max: 0 }));
    }

    #[test]
    fn bad_bytes() {
        for (name, at) in [
            ("a b", 1),
            ("a\"b", 1),
            ("a\\b", 1),
            ("\n", 0),
            ("md.é", 3),
            ("md.😀", 3),
            ("a\u{0}", 1),
            ("topic*", 5),
            ("#", 0),
            ("a,b", 1),
            ("a\u{2028}", 1),
        ] {
            assert_eq!(TopicName::new(name), Err(TopicError::BadByte { at }), "{name:?}");
        }
        for b in 0..=255u8 {
            let ok = b.is_ascii_alphanumeric() || b"._:/-".contains(&b);
            assert_eq!(is_topic_byte(b), ok, "{b}");
        }
    }

    #[test]
    fn errors_display() {
        assert_eq!(TopicError::Empty.to_string(), "topic name is empty");
        assert_eq!(
            TopicError::TooLong { len: 200, max: 128 }.to_string(),
            "topic name is 200 bytes long, the limit is 128"
        );
        assert!(TopicError::BadByte { at: 3 }.to_string().contains("at byte 3"));
    }

    #[test]
    fn map_lookup_by_str_and_clone_shares() {
        let t = TopicName::new("md.ETH-USD").unwrap();
        let u = t.clone();
        assert!(Arc::ptr_eq(&t.0, &u.0));
        let mut m: HashMap<TopicName, u32, BuildTopicHasher> = HashMap::default();
        m.insert(t, 7);
        assert_eq!(m.get("md.ETH-USD"), Some(&7));
        assert_eq!(m.get("md.ETH-USDT"), None);
        assert_eq!(TopicName::try_from("x").unwrap().as_ref(), "x");
    }

    #[test]
    fn hash_spreads_and_is_stable() {
        assert_eq!(topic_hash("md.BTC-USD"), topic_hash("md.BTC-USD"));
        assert_ne!(topic_hash("md.BTC-USD"), topic_hash("md.BTC-USDT"));
        // Sequential symbols land on many of 64 shards.
        let mut hit = [false; 64];
        for i in 0..1000 {
            hit[(topic_hash(&format!("md.SYM{i:04}-USD")) % 64) as usize] = true;
        }
        assert!(hit.iter().filter(|&&h| h).count() > 56);
        // Lengths that are and are not multiples of 8 differ.
        assert_ne!(topic_hash("abcdefgh"), topic_hash("abcdefgh\0"));
    }
}
