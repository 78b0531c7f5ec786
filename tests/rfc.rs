//! RFC 6455 rules, checked on the wire with a raw client that writes exact bytes.

mod support;

use std::time::Duration;

use support::{Echo, RawClient, TestServer, frame, masked, upgrade_request};

fn echo_server() -> TestServer {
    TestServer::start(|b| b, |_| Echo)
}

/// Sends `bytes` on a fresh connection and returns the close code the server answers with.
fn close_code_for(server: &TestServer, bytes: &[u8]) -> Option<u16> {
    let mut c = RawClient::connect(server.addr);
    c.send_lossy(bytes);
    let code = c.expect_close();
    assert!(c.sees_eof(Duration::from_secs(5)), "server did not close TCP after failing");
    code
}

#[test]
fn echoes_text_and_binary_of_every_length_class() {
    let server = echo_server();
    let mut c = RawClient::connect(server.addr);
    for len in [0usize, 1, 125, 126, 127, 65535, 65536, 1 << 20] {
        let payload: Vec<u8> = (0..len).map(|i| b'a' + (i % 26) as u8).collect();
        for opcode in [1u8, 2] {
            c.send(&masked(true, opcode, &payload));
            let f = c.read_frame().unwrap();
            assert_eq!((f.fin, f.rsv, f.opcode, f.payload.len()), (true, 0, opcode, len));
            assert!(f.payload == payload, "payload of {len} bytes differs");
        }
    }
}

#[test]
fn frames_fed_one_byte_at_a_time_are_understood() {
    let server = echo_server();
    let mut c = RawClient::connect(server.addr);
    let mut bytes = masked(false, 1, "héllo ".as_bytes());
    bytes.extend(masked(true, 9, b"ping!"));
    bytes.extend(masked(true, 0, "wörld".as_bytes()));
    for b in bytes {
        c.send(&[b]);
        std::thread::sleep(Duration::from_micros(200));
    }
    let pong = c.read_frame().unwrap();
    assert_eq!((pong.opcode, pong.payload.as_slice()), (10, &b"ping!"[..]));
    let msg = c.read_frame().unwrap();
    assert_eq!((msg.opcode, msg.payload.as_slice()), (1, "héllo wörld".as_bytes()));
}

#[test]
fn frames_in_the_same_packet_as_the_request_are_not_lost() {
    let server = echo_server();
    let mut c = RawClient::connect_tcp(server.addr);
    let mut bytes = upgrade_request(server.addr, "").into_bytes();
    bytes.extend(masked(true, 1, b"first"));
    bytes.extend(masked(true, 2, b"second"));
    c.send(&bytes);
    assert!(c.read_http_head().starts_with("HTTP/1.1 101"));
    assert_eq!(c.read_frame().unwrap().payload, b"first");
    assert_eq!(c.read_frame().unwrap().payload, b"second");
}

#[test]
fn fragmented_messages_with_interleaved_control_frames() {
    let server = echo_server();
    let mut c = RawClient::connect(server.addr);
    let mut bytes = masked(false, 2, &[1, 2, 3]);
    bytes.extend(masked(true, 9, b"p1"));
    bytes.extend(masked(false, 0, &[]));
    bytes.extend(masked(true, 10, b"unsolicited pong"));
    bytes.extend(masked(false, 0, &[4, 5]));
    bytes.extend(masked(true, 9, b"p2"));
    bytes.extend(masked(true, 0, &[6]));
    c.send(&bytes);
    let got: Vec<_> = (0..3).map(|_| c.read_frame().unwrap()).collect();
    assert_eq!((got[0].opcode, got[0].payload.as_slice()), (10, &b"p1"[..]));
    assert_eq!((got[1].opcode, got[1].payload.as_slice()), (10, &b"p2"[..]));
    assert_eq!((got[2].opcode, got[2].payload.as_slice()), (2, &[1u8, 2, 3, 4, 5, 6][..]));
}

#[test]
fn ping_gets_pong_with_the_same_payload() {
    let server = echo_server();
    let mut c = RawClient::connect(server.addr);
    for payload in [&b""[..], b"x", &[0xAB; 125]] {
        c.send(&masked(true, 9, payload));
        let f = c.read_frame().unwrap();
        assert_eq!((f.opcode, f.payload.as_slice()), (10, payload));
    }
}

#[test]
fn close_handshake_echoes_the_code_and_server_closes_tcp() {
    let server = echo_server();
    for (payload, expect) in [
        (vec![0x03, 0xE8], Some(1000)),
        ([&[0x0F, 0xA0][..], b"bye"].concat(), Some(4000)),
        (vec![], None),
    ] {
        let mut c = RawClient::connect(server.addr);
        c.send(&masked(true, 8, &payload));
        let f = c.read_frame().unwrap();
        assert_eq!((f.opcode, f.close_code()), (8, expect));
        assert!(
            c.sees_eof(Duration::from_secs(2)),
            "server kept TCP open after the close handshake"
        );
    }
}

#[test]
fn server_initiated_close_waits_for_the_reply() {
    let server = echo_server();
    let mut c = RawClient::connect(server.addr);
    c.send(&masked(true, 1, b"close:4001:bye"));
    let f = c.read_frame().unwrap();
    assert_eq!(f.close_code(), Some(4001));
    assert_eq!(&f.payload[2..], b"bye");
    c.send(&masked(true, 8, &4001u16.to_be_bytes()));
    assert!(c.sees_eof(Duration::from_secs(2)));
}

#[test]
fn protocol_violations_close_with_1002() {
    let server = echo_server();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("unmasked frame", frame(true, 0, 1, None, b"hi")),
        ("RSV1 without extension", frame(true, 4, 1, Some([1, 2, 3, 4]), b"hi")),
        ("RSV2", frame(true, 2, 1, Some([1, 2, 3, 4]), b"hi")),
        ("RSV3", frame(true, 1, 2, Some([1, 2, 3, 4]), b"hi")),
        ("opcode 3", masked(true, 3, b"")),
        ("opcode 7", masked(true, 7, b"")),
        ("opcode 0xB", masked(true, 0xB, b"")),
        ("opcode 0xF", masked(true, 0xF, b"")),
        ("ping over 125 bytes", masked(true, 9, &[0; 126])),
        ("close over 125 bytes", masked(true, 8, &[0x03, 0xE8].repeat(63))),
        ("fragmented ping", masked(false, 9, b"x")),
        ("continuation without a message", masked(true, 0, b"x")),
        (
            "text inside a fragmented message",
            [masked(false, 1, b"a"), masked(true, 1, b"b")].concat(),
        ),
        (
            "binary inside a fragmented message",
            [masked(false, 2, b"a"), masked(true, 2, b"b")].concat(),
        ),
        ("close payload of 1 byte", masked(true, 8, &[0x03])),
        ("close code 0", masked(true, 8, &0u16.to_be_bytes())),
        ("close code 999", masked(true, 8, &999u16.to_be_bytes())),
        ("close code 1004", masked(true, 8, &1004u16.to_be_bytes())),
        ("close code 1005", masked(true, 8, &1005u16.to_be_bytes())),
        ("close code 1006", masked(true, 8, &1006u16.to_be_bytes())),
        ("close code 1015", masked(true, 8, &1015u16.to_be_bytes())),
        ("close code 1016", masked(true, 8, &1016u16.to_be_bytes())),
        ("close code 2999", masked(true, 8, &2999u16.to_be_bytes())),
        ("close code 5000", masked(true, 8, &5000u16.to_be_bytes())),
        ("length 5 in 16 bits", [&[0x82, 0xFE, 0, 5, 1, 2, 3, 4][..], &[0; 5]].concat()),
        (
            "length 200 in 64 bits",
            [&[0x82, 0xFF, 0, 0, 0, 0, 0, 0, 0, 200, 1, 2, 3, 4][..], &[0; 200]].concat(),
        ),
    ];
    for (name, bytes) in cases {
        assert_eq!(close_code_for(&server, &bytes), Some(1002), "{name}");
    }
}

#[test]
fn valid_close_codes_are_echoed() {
    let server = echo_server();
    for code in [
        1000u16, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 3999,
        4000, 4999,
    ] {
        let mut c = RawClient::connect(server.addr);
        c.send(&masked(true, 8, &code.to_be_bytes()));
        assert_eq!(c.expect_close(), Some(code));
    }
}

#[test]
fn invalid_utf8_closes_with_1007() {
    let server = echo_server();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("text", masked(true, 1, &[b'a', 0xFF, b'b'])),
        ("surrogate", masked(true, 1, &[0xED, 0xA0, 0x80])),
        ("overlong", masked(true, 1, &[0xC0, 0xAF])),
        ("truncated at the end", masked(true, 1, &[b'a', 0xE2, 0x82])),
        ("across fragments", [masked(false, 1, &[0xF0, 0x9F]), masked(true, 0, &[0x98])].concat()),
        ("close reason", masked(true, 8, &[0x03, 0xE8, 0xFF])),
    ];
    for (name, bytes) in cases {
        assert_eq!(close_code_for(&server, &bytes), Some(1007), "{name}");
    }
}

#[test]
fn invalid_utf8_fails_fast_before_the_message_ends() {
    let server = echo_server();
    let mut c = RawClient::connect(server.addr);
    // The first fragment is fine, the second has an invalid byte; the final
    // fragment never comes, so only fail-fast validation can close this.
    c.send(&masked(false, 1, "κόσμε".as_bytes()));
    c.send(&masked(false, 0, &[0xCE, 0xBA, 0xF4, 0x90, 0x80, 0x80]));
    assert_eq!(c.expect_close(), Some(1007));
}

#[test]
fn valid_utf8_split_across_fragments_is_accepted() {
    let server = echo_server();
    let mut c = RawClient::connect(server.addr);
    let text = "😀 κόσμε ✓".as_bytes();
    let mut bytes = Vec::new();
    for (i, chunk) in text.chunks(1).enumerate() {
        let opcode = if i == 0 { 1 } else { 0 };
        bytes.extend(masked(i == text.len() - 1, opcode, chunk));
    }
    c.send(&bytes);
    assert_eq!(c.read_frame().unwrap().payload, text);
}

#[test]
fn message_over_the_maximum_closes_with_1009() {
    let server = TestServer::start(|b| b.max_message_size(1024), |_| Echo);
    let mut c = RawClient::connect(server.addr);
    c.send(&masked(true, 2, &[7; 1024]));
    assert_eq!(c.read_frame().unwrap().payload.len(), 1024);
    assert_eq!(close_code_for(&server, &masked(true, 2, &[7; 1025])), Some(1009));
    let fragments = [masked(false, 1, &[b'a'; 600]), masked(true, 0, &[b'a'; 600])].concat();
    assert_eq!(close_code_for(&server, &fragments), Some(1009));
    // A declared length over the maximum fails at the header, payload unsent.
    let mut header = masked(true, 2, &[]);
    header[1] = 0x80 | 127;
    header.splice(2..2, (1u64 << 40).to_be_bytes());
    assert_eq!(close_code_for(&server, &header), Some(1009));
}

#[test]
fn default_maximum_is_16_mib() {
    let server = echo_server();
    let mut c = RawClient::connect(server.addr);
    let big = vec![0x5A; 16 << 20];
    c.send(&masked(true, 2, &big));
    let f = c.read_frame().unwrap();
    assert!(f.payload == big);
    assert_eq!(close_code_for(&server, &masked(true, 2, &[0; (16 << 20) + 1])), Some(1009));
}
