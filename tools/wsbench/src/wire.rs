//! The client side of RFC 6455 on top of `wsreactor::proto`: masked frames
//! written straight into a connection's output buffer, and the opening
//! handshake. No codec of its own: headers, masking, decoding and the
//! handshake all come from the sans-IO layer the server uses.

use wsreactor::proto::deflate::{ClientOffer, Negotiated, client_offer, parse_client_response};
use wsreactor::proto::frame::{MAX_HEADER_LEN, encode_header};
use wsreactor::proto::handshake::{ClientKey, generate_key, parse_response, write_client_request};
use wsreactor::proto::mask::apply_mask;
use wsreactor::proto::{CloseCode, OpCode};

/// Appends one masked frame whose payload is the concatenation of `parts`.
///
/// The mask is fresh from a fast thread-local RNG for every frame. The payload
/// is copied once into `out` and masked in place there: no allocation once
/// `out` has grown to its working size.
#[inline]
pub fn push_frame(out: &mut Vec<u8>, opcode: OpCode, fin: bool, parts: &[&[u8]]) {
    push_frame_rsv1(out, opcode, fin, false, parts);
}

/// [`push_frame`] with the RSV1 bit (permessage-deflate's "compressed") as given.
#[inline]
pub fn push_frame_rsv1(out: &mut Vec<u8>, opcode: OpCode, fin: bool, rsv1: bool, parts: &[&[u8]]) {
    let len: usize = parts.iter().map(|p| p.len()).sum();
    let mask = fastrand::u32(..).to_ne_bytes();
    let mut hdr = [0u8; MAX_HEADER_LEN];
    let h = encode_header(&mut hdr, fin, rsv1, opcode, len as u64, Some(mask));
    out.reserve(h + len);
    out.extend_from_slice(&hdr[..h]);
    let start = out.len();
    for p in parts {
        out.extend_from_slice(p);
    }
    apply_mask(&mut out[start..], mask, 0);
}

/// Appends a message of `payload` split into frames of at most `frag` bytes
/// (a single frame when `frag` is 0 or not smaller than the payload).
pub fn push_message(out: &mut Vec<u8>, opcode: OpCode, payload: &[&[u8]], frag: usize) {
    push_message_rsv1(out, opcode, payload, frag, false);
}

/// [`push_message`] with RSV1 as given on the first frame (a compressed message).
pub fn push_message_rsv1(
    out: &mut Vec<u8>,
    opcode: OpCode,
    payload: &[&[u8]],
    frag: usize,
    rsv1: bool,
) {
    let len: usize = payload.iter().map(|p| p.len()).sum();
    if frag == 0 || len <= frag {
        push_frame_rsv1(out, opcode, true, rsv1, payload);
        return;
    }
    // Walk the parts in `frag`-sized windows.
    let mut first = true;
    let mut sent = 0;
    let (mut part, mut off) = (0, 0);
    while sent < len {
        let n = frag.min(len - sent);
        let mut pieces: Vec<&[u8]> = Vec::with_capacity(payload.len());
        let mut need = n;
        while need > 0 {
            let p = payload[part];
            let take = need.min(p.len() - off);
            pieces.push(&p[off..off + take]);
            need -= take;
            off += take;
            if off == p.len() {
                part += 1;
                off = 0;
            }
        }
        sent += n;
        let op = if first { opcode } else { OpCode::Continuation };
        push_frame_rsv1(out, op, sent == len, rsv1 && first, &pieces);
        first = false;
    }
}

/// Appends a masked close frame with `code` and no reason.
pub fn push_close(out: &mut Vec<u8>, code: CloseCode) {
    push_frame(out, OpCode::Close, true, &[&code.0.to_be_bytes()]);
}

/// Writes the low `4 * out.len()` bits of `v` into `out` as lowercase hex
/// digits, most significant first (text payloads carry numbers this way).
pub fn put_hex(out: &mut [u8], v: u64) {
    let n = out.len();
    for (i, b) in out.iter_mut().enumerate() {
        let shift = 4 * (n - 1 - i);
        *b = b"0123456789abcdef"[((v.checked_shr(shift as u32).unwrap_or(0)) & 0xF) as usize];
    }
}

/// Reads what [`put_hex`] wrote; `None` for anything else.
pub fn get_hex(digits: &[u8]) -> Option<u64> {
    std::str::from_utf8(digits).ok().and_then(|s| u64::from_str_radix(s, 16).ok())
}

/// The target of a run: where to connect and what to ask for.
#[derive(Debug, Clone)]
pub struct Target {
    /// The server's address (always in 127.0.0.0/8 or ::1).
    pub addr: std::net::SocketAddr,
    /// The `Host` header.
    pub host: String,
    /// The request path.
    pub path: String,
    /// Subprotocols offered (`Sec-WebSocket-Protocol`), in order of preference.
    pub protocols: Vec<String>,
    /// Extra request headers (e.g. `Authorization`).
    pub headers: Vec<(String, String)>,
}

impl Target {
    /// Parses `ws://HOST:PORT/PATH`; the host must be a loopback address.
    pub fn parse(url: &str) -> Result<Target, String> {
        let rest = url
            .strip_prefix("ws://")
            .ok_or_else(|| format!("{url}: only ws:// URLs are supported"))?;
        let (hostport, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let hp =
            if hostport.contains(':') { hostport.to_string() } else { format!("{hostport}:80") };
        let hp = hp.replace("localhost", "127.0.0.1");
        let addr: std::net::SocketAddr =
            hp.parse().map_err(|_| format!("{url}: the host must be an IP address"))?;
        if !addr.ip().is_loopback() {
            return Err(format!("{url}: wsbench only targets loopback addresses"));
        }
        Ok(Target {
            addr,
            host: hostport.to_string(),
            path: path.to_string(),
            protocols: Vec::new(),
            headers: Vec::new(),
        })
    }

    /// Offers `protocols` and sends `headers` with every upgrade request;
    /// fails (before any connection) on names or values that cannot go into
    /// a request head.
    pub fn with_request(
        mut self,
        protocols: Vec<String>,
        headers: Vec<(String, String)>,
    ) -> Result<Target, String> {
        self.protocols = protocols;
        self.headers = headers;
        ClientHandshake::start(&self, &mut Vec::new(), None)?;
        Ok(self)
    }
}

/// Parses a `--header` value, `NAME: VALUE` (or `NAME:VALUE`).
pub fn parse_header(s: &str) -> Result<(String, String), String> {
    let (name, value) = s.split_once(':').ok_or_else(|| format!("{s:?}: expected NAME: VALUE"))?;
    Ok((name.trim().to_string(), value.trim().to_string()))
}

/// A client handshake in progress: the key sent, to check the server's accept.
#[derive(Debug, Clone)]
pub struct ClientHandshake {
    key: ClientKey,
    deflate: Option<ClientOffer>,
}

/// The largest response head accepted from a server.
pub const MAX_RESPONSE_HEAD: usize = 16 * 1024;

impl ClientHandshake {
    /// Writes an upgrade request for `target` into `out`, with a fresh random key,
    /// offering permessage-deflate when `deflate` is given.
    pub fn start(
        target: &Target,
        out: &mut Vec<u8>,
        deflate: Option<&ClientOffer>,
    ) -> Result<ClientHandshake, String> {
        let mut nonce = [0u8; 16];
        nonce[..8].copy_from_slice(&fastrand::u64(..).to_ne_bytes());
        nonce[8..].copy_from_slice(&fastrand::u64(..).to_ne_bytes());
        let key = generate_key(nonce);
        let ext = deflate.map(client_offer);
        let protocols: Vec<&str> = target.protocols.iter().map(String::as_str).collect();
        let headers: Vec<(&str, &str)> =
            target.headers.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
        write_client_request(
            out,
            &target.host,
            &target.path,
            key.as_str(),
            &protocols,
            ext.as_deref(),
            &headers,
        )
        .map_err(|e| format!("request: {e:?}"))?;
        Ok(ClientHandshake { key, deflate: deflate.copied() })
    }

    /// Looks for a complete `101` response at the start of `buf`.
    ///
    /// `Ok(Some((n, deflate)))`: the response head is the first `n` bytes (frames
    /// may follow); `deflate` is what the server agreed to when it was offered.
    /// `Ok(None)`: incomplete. `Err`: the server refused or answered wrongly
    /// (e.g. chose a subprotocol of `target`'s that was not offered), or did not
    /// accept the permessage-deflate that was offered.
    pub fn finish(
        &self,
        buf: &[u8],
        target: &Target,
    ) -> Result<Option<(usize, Option<Negotiated>)>, String> {
        match parse_response(buf, self.key.as_str(), MAX_RESPONSE_HEAD) {
            Ok(Some((resp, n))) => {
                if let Some(p) = resp.protocol()
                    && !target.protocols.iter().any(|o| o == p)
                {
                    return Err(format!("the server chose subprotocol {p:?}, not offered"));
                }
                let Some(offer) = &self.deflate else { return Ok(Some((n, None))) };
                match parse_client_response(resp.extensions(), offer) {
                    Ok(Some(agreed)) => Ok(Some((n, Some(agreed)))),
                    Ok(None) => Err("the server did not accept permessage-deflate".into()),
                    Err(e) => Err(format!("permessage-deflate: {}", e.reason())),
                }
            }
            Ok(None) => Ok(None),
            Err(e) if e.status != 0 => Err(format!("status {}: {}", e.status, e.reason)),
            Err(e) => Err(e.reason.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        let t = Target::parse("ws://127.0.0.1:9001/chat").unwrap();
        assert_eq!(t.addr.port(), 9001);
        assert_eq!(t.path, "/chat");
        let t = Target::parse("ws://localhost:9").unwrap();
        assert_eq!(t.path, "/");
        assert!(Target::parse("ws://10.0.0.1:80/").is_err());
        assert!(Target::parse("wss://127.0.0.1:80/").is_err());
    }

    fn response(key: &str, protocol: Option<&str>) -> Vec<u8> {
        let mut out = Vec::new();
        wsreactor::proto::handshake::write_accept_response(
            &mut out,
            key.as_bytes(),
            protocol,
            None,
            &[],
        )
        .unwrap();
        out
    }

    #[test]
    fn requests_carry_protocols_and_headers_and_check_the_choice() {
        let t = Target::parse("ws://127.0.0.1:9001/")
            .unwrap()
            .with_request(
                vec!["v2".into(), "v1".into()],
                vec![parse_header("X-Token: abc").unwrap()],
            )
            .unwrap();
        let mut out = Vec::new();
        let hs = ClientHandshake::start(&t, &mut out, None).unwrap();
        let req = String::from_utf8(out).unwrap();
        assert!(req.contains("Sec-WebSocket-Protocol: v2, v1\r\n"), "{req}");
        assert!(req.contains("X-Token: abc\r\n"), "{req}");
        let key = hs.key.as_str();
        assert!(matches!(hs.finish(&response(key, Some("v1")), &t), Ok(Some(_))));
        assert!(matches!(hs.finish(&response(key, None), &t), Ok(Some(_))));
        let chosen = hs.finish(&response(key, Some("v3")), &t).unwrap_err();
        assert!(chosen.contains("\"v3\", not offered"), "{chosen}");
    }

    #[test]
    fn bad_headers_fail_before_any_connection() {
        let t = Target::parse("ws://127.0.0.1:9001/").unwrap();
        assert!(parse_header("no colon").is_err());
        assert!(t.clone().with_request(vec![], vec![("X Y".into(), "1".into())]).is_err());
        assert!(t.clone().with_request(vec![], vec![("X".into(), "a\r\nb".into())]).is_err());
        assert!(t.with_request(vec!["a b".into()], vec![]).is_err());
    }
}
