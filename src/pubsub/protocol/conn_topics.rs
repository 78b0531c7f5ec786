//! The topics one connection holds ([`ConnTopics`]).

use super::errors::{ErrorCode, Limits, OpError};
use crate::pubsub::topic::TopicName;

/// The topics one connection is subscribed to, kept sorted (binary search;
/// no allocation while empty), bounded by [`Limits::max_topics_per_conn`].
///
/// The reactor keeps one per connection, to update its per-reactor
/// subscriber sets with what actually changed and to clean up on close.
///
/// ```
/// use wsreactor::pubsub::{ConnTopics, ErrorCode, Limits, TopicName};
///
/// let limits = Limits { max_topics_per_conn: 2, ..Limits::default() };
/// let (a, b, c) = (TopicName::new("a")?, TopicName::new("b")?, TopicName::new("c")?);
/// let mut mine = ConnTopics::new();
/// assert_eq!(mine.subscribe([&a, &b], &limits).unwrap(), [a.clone(), b.clone()]);
/// assert!(mine.subscribe([&a], &limits).unwrap().is_empty()); // already held
/// let err = mine.subscribe([&c], &limits).unwrap_err();
/// assert_eq!(err.code(), ErrorCode::TooManyTopics);
/// assert_eq!(mine.unsubscribe([&a, &c]), [a]);
/// assert_eq!(mine.take_all(), [b]);
/// # Ok::<(), wsreactor::pubsub::TopicError>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConnTopics {
    topics: Vec<TopicName>,
}

impl ConnTopics {
    /// No topics.
    pub fn new() -> ConnTopics {
        ConnTopics::default()
    }

    /// How many topics are held.
    pub fn len(&self) -> usize {
        self.topics.len()
    }

    /// Whether none are.
    pub fn is_empty(&self) -> bool {
        self.topics.is_empty()
    }

    /// Whether `topic` is held.
    pub fn contains(&self, topic: &str) -> bool {
        self.find(topic).is_ok()
    }

    /// The topics held, sorted.
    pub fn iter(&self) -> impl Iterator<Item = &TopicName> {
        self.topics.iter()
    }

    fn find(&self, topic: &str) -> Result<usize, usize> {
        self.topics.binary_search_by(|t| t.as_str().cmp(topic))
    }

    /// Adds `topics`, all or none: fails with `too_many_topics` if the new
    /// ones would take the connection past its cap. Returns those that were
    /// not held before, in the order given (duplicates in `topics` count once).
    pub fn subscribe<'t, I>(
        &mut self,
        topics: I,
        limits: &Limits,
    ) -> Result<Vec<TopicName>, OpError>
    where
        I: IntoIterator<Item = &'t TopicName>,
    {
        let mut new: Vec<TopicName> = Vec::new();
        for t in topics {
            if !self.contains(t.as_str()) && !new.contains(t) {
                new.push(t.clone());
            }
        }
        let total = self.topics.len() + new.len();
        if total > limits.max_topics_per_conn {
            return Err(OpError::new(
                ErrorCode::TooManyTopics,
                format!(
                    "this would make {total} topics on this connection, the limit is {}",
                    limits.max_topics_per_conn
                ),
            ));
        }
        self.topics.reserve(new.len());
        for t in &new {
            if let Err(at) = self.find(t.as_str()) {
                self.topics.insert(at, t.clone());
            }
        }
        Ok(new)
    }

    /// Removes `topics`; returns those that were held, in the order given.
    pub fn unsubscribe<'t, I>(&mut self, topics: I) -> Vec<TopicName>
    where
        I: IntoIterator<Item = &'t TopicName>,
    {
        topics
            .into_iter()
            .filter_map(|t| self.find(t.as_str()).ok().map(|at| self.topics.remove(at)))
            .collect()
    }

    /// Removes and returns every topic (on close), freeing the storage.
    pub fn take_all(&mut self) -> Vec<TopicName> {
        std::mem::take(&mut self.topics)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits::default()
    }

    #[test]
    fn conn_topics() {
        let l = Limits { max_topics_per_conn: 3, ..limits() };
        let [a, b, c, d] = ["a", "b", "c", "d"].map(|s| TopicName::new(s).unwrap());
        let mut m = ConnTopics::new();
        assert!(m.is_empty());
        assert_eq!(m.subscribe([&c, &a, &c], &l).unwrap(), [c.clone(), a.clone()]);
        assert_eq!(m.iter().map(TopicName::as_str).collect::<Vec<_>>(), ["a", "c"]);
        assert!(m.contains("a") && !m.contains("b"));
        // All or nothing.
        assert_eq!(m.subscribe([&b, &d], &l).unwrap_err().code(), ErrorCode::TooManyTopics);
        assert_eq!(m.len(), 2);
        assert_eq!(m.subscribe([&a, &b], &l).unwrap(), std::slice::from_ref(&b));
        assert_eq!(m.len(), 3);
        assert_eq!(m.unsubscribe([&d, &b, &b]), std::slice::from_ref(&b));
        assert_eq!(m.take_all(), [a, c]);
        assert!(m.is_empty());
    }
}
