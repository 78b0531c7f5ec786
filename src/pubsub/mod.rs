//! Topic publish/subscribe: the building blocks, free of sockets and reactors.

pub mod protocol;
pub mod store;
pub mod topic;
pub mod wire;

pub use protocol::{
    ABUSE_CLOSE_CODE, ABUSE_CLOSE_REASON, BinaryPublish, ClientOp, ConnTopics, ErrorCode,
    ErrorStreak, Limits, OpError, RequestId, Subscription, parse_binary_publish, parse_client_op,
    write_pong, write_published, write_resync, write_subscribed, write_unsubscribed,
};
pub use store::{Since, StoreConfig, StoreError, TopicStore};
pub use topic::{TopicError, TopicName};

/// The opcode and payload of an encoded frame (tests only).
#[cfg(test)]
pub(crate) fn frame_body(frame: &crate::Frame) -> (crate::proto::frame::OpCode, Vec<u8>) {
    let bytes = frame.shared();
    let h = crate::proto::frame::parse_header(bytes).unwrap().unwrap();
    assert!(h.fin && !h.rsv1 && h.mask.is_none());
    assert_eq!(bytes.len(), h.header_len + h.payload_len as usize);
    (h.opcode, bytes[h.header_len..].to_vec())
}
