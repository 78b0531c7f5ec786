//! permessage-deflate (RFC 7692) against clients that nobody here wrote: Python `websockets`,
//! Node `ws` (both pinned in `tests/interop/`) and headless Chromium (Debian's package).
//!
//! Each test starts the contract server of `tests/support/mod.rs` ([`support::Echo`]) with
//! compression `Shared` or `Dedicated` and a 2 MiB max message size, runs one client against it
//! (`tests/interop/py_deflate.py`, `node_deflate.mjs`, `chromium/driver.mjs` with
//! `chromium/deflate.html`: their headers list the checks), and asserts that every check passed
//! and that the server compressed. The `*_detects_a_broken_server` tests run the same clients
//! against a server that breaks the contract on purpose and assert that exactly what it breaks
//! is reported.
//!
//! Finding the clients and running them: `tests/support/clients.rs` (a missing client or browser
//! fails the test, never skips it: run `tools/test.sh`).

#[path = "support/clients.rs"]
mod clients;
mod support;

use std::process::Command;
use std::time::Duration;

use clients::{Outcome, assert_detects, assert_passed, chromium, node, python, run_script};
use support::{Echo, TestServer};
use wsreactor::{Compression, Ctx, Handler, Message, SendStatus};

/// The scripts' SERVER_MAX: 2 MiB rather than 1, so that a 1 MiB message of random bytes,
/// which the clients compress to a little over 1 MiB, fits on the wire too.
const MAX_MESSAGE: usize = 2 << 20;

/// One whole client run; each check is bounded by the script, this bounds a hang.
const RUN_TIMEOUT: Duration = Duration::from_secs(300);

#[derive(Clone, Copy)]
enum Client {
    Python,
    Node,
    Chromium,
}

impl Client {
    /// The command that runs this client's checks against `url` in `mode` (checked installed).
    fn command(self, url: &str, mode: &str) -> Command {
        match self {
            Client::Python => clients::python_script(&python(), "py_deflate.py", &[url, mode]),
            Client::Node => {
                let (node, modules) = node();
                clients::node_script(&node, &modules, "node_deflate.mjs", &[url, mode])
            }
            Client::Chromium => {
                let browser = chromium();
                let (node, modules) = node();
                let mut cmd =
                    clients::node_script(&node, &modules, "chromium/driver.mjs", &[url, mode]);
                cmd.env("WSREACTOR_CHROMIUM", browser);
                cmd
            }
        }
    }

    fn name(self) -> &'static str {
        match self {
            Client::Python => "tests/interop/py_deflate.py (Python websockets)",
            Client::Node => "tests/interop/node_deflate.mjs (Node ws)",
            Client::Chromium => "tests/interop/chromium/driver.mjs (headless Chromium)",
        }
    }
}

fn mode_name(mode: Compression) -> &'static str {
    match mode {
        Compression::Shared => "shared",
        Compression::Dedicated => "dedicated",
        Compression::Disabled => "disabled",
    }
}

/// The contract server with compression `mode`, a [`MAX_MESSAGE`] limit, and room in the
/// output queue for what a pipelining client queues.
fn deflate_server<H: Handler<Conn = ()>>(
    mode: Compression,
    max_message: usize,
    handler: impl Fn(usize) -> H + Send + Sync + 'static,
) -> TestServer {
    TestServer::start(
        |b| b.compression(mode).max_message_size(max_message).max_backpressure(16 << 20),
        handler,
    )
}

/// Runs `client` against an [`Echo`] server in `mode`; asserts that all its checks passed and
/// that the server compressed.
fn passes(client: Client, mode: Compression) {
    let server = deflate_server(mode, MAX_MESSAGE, |_| Echo);
    let outcome = run_script(client.command(&server.url(), mode_name(mode)), RUN_TIMEOUT);
    let stats = server.handle.stats();
    server.shutdown(Duration::from_secs(2)).expect("shut the server down");
    let what = format!("{} against a {} server", client.name(), mode_name(mode));
    assert_passed(&outcome, &what);
    assert!(stats.compressions > 0, "the server compressed nothing: {stats:?}\n{what}");
    assert_eq!(stats.sends_dropped, 0, "the server dropped echoes: {stats:?}\n{what}");
}

#[test]
fn python_websockets_shared() {
    passes(Client::Python, Compression::Shared);
}

#[test]
fn python_websockets_dedicated() {
    passes(Client::Python, Compression::Dedicated);
}

#[test]
fn node_ws_shared() {
    passes(Client::Node, Compression::Shared);
}

#[test]
fn node_ws_dedicated() {
    passes(Client::Node, Compression::Dedicated);
}

#[test]
fn chromium_shared() {
    passes(Client::Chromium, Compression::Shared);
}

#[test]
fn chromium_dedicated() {
    passes(Client::Chromium, Compression::Dedicated);
}

/// Echoes with the last byte of every message of 60,000 bytes or more flipped (text stays valid
/// UTF-8: the last byte of a character keeps its high bits); smaller ones come back intact.
struct Corrupt;

impl Handler for Corrupt {
    type Conn = ();

    fn on_message(&mut self, cx: &mut Ctx<'_, ()>, msg: Message<'_>) {
        let mut bytes = msg.as_bytes().to_vec();
        if bytes.len() >= 60_000 {
            let last = bytes.len() - 1;
            bytes[last] ^= 1;
        }
        let status = match msg {
            Message::Text(_) => match std::str::from_utf8(&bytes) {
                Ok(text) => cx.send(Message::Text(text)),
                Err(_) => cx.send(Message::Binary(&bytes)),
            },
            _ => cx.send(Message::Binary(&bytes)),
        };
        assert_ne!(status, SendStatus::Dropped, "the broken server's output queue is full");
    }
}

/// Runs `client` in shared mode against a server that breaks three things at once: it runs
/// in dedicated mode (so its answers lack the no_context_takeover parameters), it corrupts
/// large echoes ([`Corrupt`]), and it allows 16 MiB messages (so nothing is closed with 1009).
fn run_against_broken(client: Client) -> Outcome {
    let server = deflate_server(Compression::Dedicated, 16 << 20, |_| Corrupt);
    let outcome = run_script(client.command(&server.url(), "shared"), RUN_TIMEOUT);
    server.shutdown(Duration::from_secs(2)).expect("shut the broken server down");
    outcome
}

/// What the broken server breaks for the scripts, and what it leaves alone.
const SCRIPT_MUST_FAIL: [&str; 5] = [
    "negotiate_default",
    "negotiate_client_max_window_bits_9",
    "server_context_default",
    "echo_text_65536",
    "deflate_bomb_1009",
];
const SCRIPT_MUST_PASS: [&str; 4] =
    ["echo_text_200", "echo_binary_200", "echo_text_0", "echo_binary_64"];

#[test]
fn python_deflate_detects_a_broken_server() {
    let outcome = run_against_broken(Client::Python);
    let what = "py_deflate.py against a broken server";
    assert_detects(&outcome, what, &SCRIPT_MUST_FAIL, &SCRIPT_MUST_PASS);
}

#[test]
fn node_deflate_detects_a_broken_server() {
    let outcome = run_against_broken(Client::Node);
    let what = "node_deflate.mjs against a broken server";
    assert_detects(&outcome, what, &SCRIPT_MUST_FAIL, &SCRIPT_MUST_PASS);
}

#[test]
fn chromium_deflate_detects_a_broken_server() {
    let outcome = run_against_broken(Client::Chromium);
    let must_fail = ["negotiated", "echo_text_65536", "echo_binary_1048576", "deflate_bomb_1009"];
    let must_pass = ["echo_text_200", "echo_binary_200", "echo_text_0", "stream_300"];
    assert_detects(&outcome, "chromium/driver.mjs against a broken server", &must_fail, &must_pass);
}
