//! Test support: start servers, and a raw WebSocket client that writes exact bytes.
#![allow(dead_code)]

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use wsreactor::{Handler, Running, Server};

/// A running server on an ephemeral loopback port, shut down on drop.
pub struct TestServer {
    pub addr: SocketAddr,
    pub handle: wsreactor::ServerHandle,
    running: Option<Running>,
}

impl TestServer {
    pub fn start<H: Handler>(
        configure: impl FnOnce(wsreactor::Builder<()>) -> wsreactor::Builder<()>,
        factory: impl Fn(usize) -> H + Send + Sync + 'static,
    ) -> TestServer {
        let builder = Server::builder().bind("127.0.0.1:0").unwrap().reactors(2);
        let server = configure(builder).handler(factory).build().unwrap();
        let addr = server.local_addr();
        let handle = server.handle();
        let running = server.spawn().unwrap();
        TestServer { addr, handle, running: Some(running) }
    }

    pub fn shutdown(mut self, grace: Duration) -> io::Result<()> {
        self.running.take().map_or(Ok(()), |r| r.shutdown(grace))
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(r) = self.running.take() {
            let _ = r.shutdown(Duration::from_millis(200));
        }
    }
}

/// Echoes every message; `close:<code>:<reason>` closes instead.
pub struct Echo;

impl Handler for Echo {
    type Conn = ();

    fn on_message(&mut self, cx: &mut wsreactor::Ctx<'_, ()>, msg: wsreactor::Message<'_>) {
        if let wsreactor::Message::Text(t) = msg {
            if let Some(rest) = t.strip_prefix("close:") {
                let (code, reason) = rest.split_once(':').unwrap_or((rest, ""));
                cx.close(wsreactor::CloseCode(code.parse().unwrap_or(1000)), reason);
                return;
            }
        }
        let _ = cx.send(msg);
    }
}

pub const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

pub fn upgrade_request(addr: SocketAddr, extra: &str) -> String {
    format!(
        "GET /chat HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    )
}

/// A frame as the raw client sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawFrame {
    pub fin: bool,
    pub rsv: u8,
    pub opcode: u8,
    pub payload: Vec<u8>,
}

impl RawFrame {
    pub fn close_code(&self) -> Option<u16> {
        (self.opcode == 8 && self.payload.len() >= 2)
            .then(|| u16::from_be_bytes([self.payload[0], self.payload[1]]))
    }
}

/// Encodes a client frame byte by byte as the RFC lays it out.
pub fn frame(fin: bool, rsv: u8, opcode: u8, mask: Option<[u8; 4]>, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![(u8::from(fin) << 7) | (rsv << 4) | opcode];
    let m = if mask.is_some() { 0x80 } else { 0 };
    match payload.len() {
        n @ 0..=125 => out.push(m | n as u8),
        n @ 126..=0xFFFF => {
            out.push(m | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(m | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    match mask {
        Some(key) => {
            out.extend_from_slice(&key);
            out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
        }
        None => out.extend_from_slice(payload),
    }
    out
}

/// A masked client frame.
pub fn masked(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    frame(fin, 0, opcode, Some([0x37, 0xfa, 0x21, 0x3d]), payload)
}

pub struct RawClient {
    pub stream: TcpStream,
    buf: Vec<u8>,
}

impl RawClient {
    /// Connects and completes the handshake.
    pub fn connect(addr: SocketAddr) -> RawClient {
        let mut c = RawClient::connect_tcp(addr);
        c.send(upgrade_request(addr, "").as_bytes());
        let head = c.read_http_head();
        assert!(head.starts_with("HTTP/1.1 101"), "handshake failed: {head}");
        c
    }

    pub fn connect_tcp(addr: SocketAddr) -> RawClient {
        let stream = TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        stream.set_nodelay(true).unwrap();
        RawClient { stream, buf: Vec::new() }
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
    }

    /// Sends and ignores errors (the server may already have closed).
    pub fn send_lossy(&mut self, bytes: &[u8]) {
        let _ = self.stream.write_all(bytes);
    }

    fn fill(&mut self) -> io::Result<usize> {
        let mut chunk = [0u8; 65536];
        let n = self.stream.read(&mut chunk)?;
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(n)
    }

    /// Reads an HTTP response head (status line and headers).
    pub fn read_http_head(&mut self) -> String {
        loop {
            if let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&self.buf[..end + 4]).into_owned();
                self.buf.drain(..end + 4);
                return head;
            }
            assert!(self.fill().unwrap() > 0, "EOF before the end of the HTTP head");
        }
    }

    /// Reads everything until the server closes the connection.
    pub fn read_to_end(&mut self) -> Vec<u8> {
        while matches!(self.fill(), Ok(n) if n > 0) {}
        std::mem::take(&mut self.buf)
    }

    /// Reads one (unmasked) server frame; `None` at EOF.
    pub fn read_frame(&mut self) -> Option<RawFrame> {
        loop {
            if let Some((frame, used)) = parse_server_frame(&self.buf) {
                self.buf.drain(..used);
                return Some(frame);
            }
            match self.fill() {
                Ok(0) | Err(_) => return None,
                Ok(_) => {}
            }
        }
    }

    /// Reads frames until a close frame, returning its code; panics on EOF.
    pub fn expect_close(&mut self) -> Option<u16> {
        loop {
            let f = self.read_frame().expect("EOF before a close frame");
            if f.opcode == 8 {
                return f.close_code();
            }
        }
    }

    /// After a close: true if the server closes TCP within `within`.
    pub fn sees_eof(&mut self, within: Duration) -> bool {
        self.stream.set_read_timeout(Some(within)).unwrap();
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            match self.fill() {
                Ok(0) => return true,
                Ok(_) => self.buf.clear(),
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return true,
                Err(_) => return false,
            }
        }
        false
    }
}

fn parse_server_frame(buf: &[u8]) -> Option<(RawFrame, usize)> {
    if buf.len() < 2 {
        return None;
    }
    assert_eq!(buf[1] & 0x80, 0, "server frames must not be masked");
    let (len, mut at) = match buf[1] & 0x7f {
        126 => (u16::from_be_bytes(buf.get(2..4)?.try_into().ok()?) as usize, 4),
        127 => (u64::from_be_bytes(buf.get(2..10)?.try_into().ok()?) as usize, 10),
        n => (n as usize, 2),
    };
    let payload = buf.get(at..at + len)?.to_vec();
    at += len;
    let f = RawFrame { fin: buf[0] & 0x80 != 0, rsv: (buf[0] >> 4) & 7, opcode: buf[0] & 0xf, payload };
    Some((f, at))
}
