//! The interop test server: the handler that the client scripts in `tests/interop/` expect, and a
//! helper that runs it on an ephemeral loopback port.
//!
//! The contract (the scripts check every line of it):
//! - any path: echo every message with the same opcode, up to [`MAX_MESSAGE`] bytes;
//!   pings get pongs and the client's close code is echoed (both done by the library);
//! - subprotocols `chat.v1` and `chat.v2`: the first one the client offers is selected, and no
//!   `Sec-WebSocket-Protocol` is sent when none is offered or none matches;
//! - a text message `close:<code>:<reason>` makes the server close with that code and reason;
//! - path `/reject` is refused with HTTP 403;
//! - `Sec-WebSocket-Version: 8` gets 426, and a message over [`MAX_MESSAGE`] is closed with 1009
//!   (both done by the library).
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use wsreactor::{
    Accept, CloseCode, Ctx, Handler, Message, Reject, Request, Running, SendStatus, Server,
};

/// The server's message size limit: 16 MiB; one byte more is closed with 1009.
pub const MAX_MESSAGE: usize = 16 << 20;

/// The subprotocols the test server supports.
pub const PROTOCOLS: [&str; 2] = ["chat.v1", "chat.v2"];

/// The handler of the interop contract.
pub struct InteropApp;

impl Handler for InteropApp {
    type Conn = ();

    fn on_upgrade(&mut self, req: &Request<'_>) -> Result<Accept<()>, Reject> {
        if req.path() == "/reject" {
            return Err(Reject::new(403, "forbidden"));
        }
        let proto = req.protocols().find(|p| PROTOCOLS.contains(p));
        Ok(Accept::new(()).protocol(proto))
    }

    fn on_message(&mut self, cx: &mut Ctx<'_, ()>, msg: Message<'_>) {
        if let Message::Text(text) = msg {
            if let Some(rest) = text.strip_prefix("close:") {
                let (code, reason) = rest.split_once(':').unwrap_or((rest, ""));
                match code.parse() {
                    Ok(code) => cx.close(CloseCode(code), reason),
                    Err(_) => cx.close(CloseCode(1011), "bad close command"),
                }
                return;
            }
        }
        // A dropped echo would show up in the scripts as a time-out; make it a visible close.
        if cx.send(msg) == SendStatus::Dropped {
            cx.close(CloseCode(1011), "echo dropped: output queue full");
        }
    }
}

/// A running interop server on `127.0.0.1`, an ephemeral port, 2 reactors; shut down on drop.
pub struct InteropServer {
    addr: SocketAddr,
    running: Option<Running>,
}

impl InteropServer {
    /// Starts the server of the interop contract.
    pub fn start() -> InteropServer {
        let server = Server::builder()
            .bind("127.0.0.1:0")
            .expect("resolve 127.0.0.1:0")
            .reactors(2)
            .max_message_size(MAX_MESSAGE)
            // Room for a 16 MiB echo plus whatever a pipelining client queues behind it.
            .max_backpressure(4 * MAX_MESSAGE)
            .handler(|_reactor| InteropApp)
            .build()
            .expect("build the interop server");
        let addr = server.local_addr();
        let running = server.spawn().expect("spawn the interop server");
        InteropServer { addr, running: Some(running) }
    }

    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The base URL to hand to the client scripts, `ws://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("ws://{}", self.addr)
    }

    /// Stops accepting, closes what is open and waits for the reactors.
    pub fn shutdown(mut self) {
        if let Some(running) = self.running.take() {
            running.shutdown(Duration::from_secs(2)).expect("shut the interop server down");
        }
    }
}

impl Drop for InteropServer {
    fn drop(&mut self) {
        if let Some(running) = self.running.take() {
            let _ = running.shutdown(Duration::from_secs(2));
        }
    }
}
