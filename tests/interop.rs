//! Interoperability with WebSocket clients that nobody here wrote: Python `websockets` (PyPI)
//! and Node `ws` (npm), pinned in `tests/interop/`.
//!
//! Each test starts the contract server of `tests/support/mod.rs` ([`support::Echo`]) and runs one client script
//! against it; the script prints `ok NAME` / `FAIL NAME: why` per check and exits non-zero if
//! any failed. Finding the clients and running the scripts: `tests/support/clients.rs` (a
//! missing client fails the test, never skips it: run `tools/test.sh`).

#[path = "support/clients.rs"]
mod clients;
mod support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use clients::{Outcome, assert_detects, assert_passed, node, python, run_script};
use support::{Echo, PROTOCOLS, TestServer};
use wsreactor::{Accept, Ctx, Handler, Message, Reject, Request, Running, Server};

/// The contract server, with room for a 16 MiB echo plus what a pipelining client queues behind it.
fn interop_server() -> TestServer {
    TestServer::start(|b| b.max_message_size(16 << 20).max_backpressure(64 << 20), |_| Echo)
}

/// A whole script run; the scripts bound each check themselves, this bounds a hang.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(600);

fn python_command(python: &Path, url: &str) -> Command {
    clients::python_script(python, "py_client.py", &[url])
}

fn node_command(node: &Path, modules: &Path, url: &str) -> Command {
    clients::node_script(node, modules, "node_client.mjs", &[url])
}

#[test]
fn python_websockets_client() {
    let python = python();
    let server = interop_server();
    let outcome = run_script(python_command(&python, &server.url()), SCRIPT_TIMEOUT);
    server.shutdown(Duration::from_secs(2)).expect("shut the interop server down");
    assert_passed(&outcome, "tests/interop/py_client.py (Python websockets)");
}

#[test]
fn node_ws_client() {
    let (node, modules) = node();
    let server = interop_server();
    let outcome = run_script(node_command(&node, &modules, &server.url()), SCRIPT_TIMEOUT);
    server.shutdown(Duration::from_secs(2)).expect("shut the interop server down");
    assert_passed(&outcome, "tests/interop/node_client.mjs (Node ws)");
}

/// Breaks the contract on purpose: text comes back as binary, and the last supported
/// subprotocol offered wins instead of the first.
struct BrokenApp;

impl Handler for BrokenApp {
    type Conn = ();

    fn on_upgrade(&mut self, req: &Request<'_>) -> Result<Accept<()>, Reject> {
        let proto = req.protocols().filter(|p| PROTOCOLS.contains(p)).last();
        Ok(Accept::new(()).protocol(proto))
    }

    fn on_message(&mut self, cx: &mut Ctx<'_, ()>, msg: Message<'_>) {
        let _ = cx.send(Message::Binary(msg.as_bytes()));
    }
}

fn start_broken() -> (String, Running) {
    let server = Server::builder()
        .bind("127.0.0.1:0")
        .expect("resolve 127.0.0.1:0")
        .reactors(2)
        .max_backpressure(64 << 20)
        .handler(|_reactor| BrokenApp)
        .build()
        .expect("build the broken server");
    let url = format!("ws://{}", server.local_addr());
    (url, server.spawn().expect("spawn the broken server"))
}

/// The scripts must be able to fail: against [`BrokenApp`] exactly the checks it breaks fail.
fn assert_detects_broken(outcome: &Outcome, what: &str) {
    let must_fail = ["echo_text_1", "non_ascii_text", "subprotocol_first_offered"];
    assert_detects(outcome, what, &must_fail, &["echo_binary_1", "version_8_426"]);
}

#[test]
fn python_client_detects_a_broken_server() {
    let python = python();
    let (url, running) = start_broken();
    let outcome = run_script(python_command(&python, &url), SCRIPT_TIMEOUT);
    running.shutdown(Duration::from_secs(2)).expect("shut down");
    assert_detects_broken(&outcome, "py_client.py against a broken server");
}

#[test]
fn node_client_detects_a_broken_server() {
    let (node, modules) = node();
    let (url, running) = start_broken();
    let outcome = run_script(node_command(&node, &modules, &url), SCRIPT_TIMEOUT);
    running.shutdown(Duration::from_secs(2)).expect("shut down");
    assert_detects_broken(&outcome, "node_client.mjs against a broken server");
}
