//! Payload masking (RFC 6455 §5.3), a machine word at a time.

/// XORs `buf` in place with `key`, where `buf` begins `offset` bytes into the
/// masked payload (so a payload can be unmasked in pieces as it arrives).
pub fn apply_mask(buf: &mut [u8], key: [u8; 4], offset: usize) {
    let _ = (buf, key, offset);
    todo!()
}
