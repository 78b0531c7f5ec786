//! Interoperability with WebSocket clients that nobody here wrote: Python `websockets` (PyPI)
//! and Node `ws` (npm), pinned in `tests/interop/`.
//!
//! Each test starts the contract server of `tests/support/mod.rs` ([`support::Echo`]) and runs one client script
//! against it; the script prints `ok NAME` / `FAIL NAME: why` per check and exits non-zero if
//! any failed. The clients are installed by `tools/test.sh`, which exports:
//! - `WSREACTOR_PYTHON`: a Python with the pinned `websockets` (default:
//!   `target/interop-venv/bin/python`);
//! - `WSREACTOR_NODE_MODULES`: a `node_modules` with the pinned `ws` (default:
//!   `tests/interop/node_modules`); `WSREACTOR_NODE` may name the `node` binary (default: `node`).
//!
//! A missing interpreter or package fails the test (never skips it): run `tools/test.sh`.

mod support;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use support::{Echo, PROTOCOLS, TestServer};
use wsreactor::{Accept, Ctx, Handler, Message, Reject, Request, Running, Server};

/// The contract server, with room for a 16 MiB echo plus what a pipelining client queues behind it.
fn interop_server() -> TestServer {
    TestServer::start(|b| b.max_message_size(16 << 20).max_backpressure(64 << 20), |_| Echo)
}

/// A whole script run; the scripts bound each check themselves, this bounds a hang.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(600);

const SETUP_HINT: &str = "run tools/test.sh from the repository root (it installs the pinned \
                          clients and exports WSREACTOR_PYTHON and WSREACTOR_NODE_MODULES)";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn interop_dir() -> PathBuf {
    root().join("tests/interop")
}

/// The version pinned for `package` in a `name==version` line of requirements.txt.
fn pinned_python(package: &str) -> String {
    let reqs = std::fs::read_to_string(interop_dir().join("requirements.txt"))
        .expect("read tests/interop/requirements.txt");
    reqs.lines()
        .filter_map(|l| l.split_once("=="))
        .find(|(name, _)| name.trim() == package)
        .map(|(_, v)| v.trim().to_owned())
        .unwrap_or_else(|| panic!("{package} is not pinned in tests/interop/requirements.txt"))
}

/// The version pinned for `package` in tests/interop/package.json ("name": "x.y.z").
fn pinned_npm(package: &str) -> String {
    let json = std::fs::read_to_string(interop_dir().join("package.json"))
        .expect("read tests/interop/package.json");
    json_string_field(&json, package)
        .unwrap_or_else(|| panic!("{package} is not pinned in tests/interop/package.json"))
}

/// The string value of the first `"key": "value"` in a JSON text (enough for package.json).
fn json_string_field(json: &str, key: &str) -> Option<String> {
    let at = json.find(&format!("\"{key}\""))?;
    let rest = json[at + key.len() + 2..].trim_start().strip_prefix(':')?.trim_start();
    let rest = rest.strip_prefix('"')?;
    Some(rest[..rest.find('"')?].to_owned())
}

/// The Python that has the pinned `websockets`, checked; panics with [`SETUP_HINT`] if not.
fn python() -> PathBuf {
    let python = match std::env::var_os("WSREACTOR_PYTHON") {
        Some(p) => PathBuf::from(p),
        None => root().join("target/interop-venv/bin/python"),
    };
    let want = pinned_python("websockets");
    let out = Command::new(&python)
        .args(["-c", "import websockets; print(websockets.__version__)"])
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run the interop Python {}: {e}; {SETUP_HINT}", python.display())
        });
    let got = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert!(
        out.status.success(),
        "{} cannot import websockets ({}); {SETUP_HINT}",
        python.display(),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    assert_eq!(got, want, "{} has websockets {got}, pinned {want}; {SETUP_HINT}", python.display());
    python
}

/// The `node` binary and a node_modules that has the pinned `ws`; panics with [`SETUP_HINT`].
fn node() -> (PathBuf, PathBuf) {
    let node =
        std::env::var_os("WSREACTOR_NODE").map_or_else(|| PathBuf::from("node"), PathBuf::from);
    let modules = match std::env::var_os("WSREACTOR_NODE_MODULES") {
        Some(p) => PathBuf::from(p),
        None => interop_dir().join("node_modules"),
    };
    let out = Command::new(&node).arg("--version").output().unwrap_or_else(|e| {
        panic!("cannot run {}: {e}; install Node.js 20+ and {SETUP_HINT}", node.display())
    });
    assert!(out.status.success(), "{} --version failed; {SETUP_HINT}", node.display());
    let want = pinned_npm("ws");
    let manifest = modules.join("ws/package.json");
    let json = std::fs::read_to_string(&manifest)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}; {SETUP_HINT}", manifest.display()));
    let got = json_string_field(&json, "version").unwrap_or_default();
    assert_eq!(got, want, "{} is ws {got}, pinned {want}; {SETUP_HINT}", manifest.display());
    (node, modules)
}

/// What a script run produced.
struct Outcome {
    success: bool,
    status: String,
    stdout: String,
    stderr: String,
}

impl Outcome {
    fn report(&self, what: &str) -> String {
        format!(
            "{what} exited with {}\n--- stdout ---\n{}--- stderr ---\n{}",
            self.status, self.stdout, self.stderr
        )
    }
}

/// Runs `cmd` to completion (killing it after [`SCRIPT_TIMEOUT`]) and collects its output.
fn run_script(mut cmd: Command) -> Outcome {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}; {SETUP_HINT}"));
    let reader = |mut pipe: Box<dyn Read + Send>| {
        thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = pipe.read_to_end(&mut buf);
            String::from_utf8_lossy(&buf).into_owned()
        })
    };
    let out = reader(Box::new(child.stdout.take().expect("stdout")));
    let err = reader(Box::new(child.stderr.take().expect("stderr")));
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for the script") {
            break status.to_string();
        }
        if started.elapsed() > SCRIPT_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            break format!("no exit: killed after {}s", SCRIPT_TIMEOUT.as_secs());
        }
        thread::sleep(Duration::from_millis(50));
    };
    let success = status == "exit status: 0";
    Outcome { success, status, stdout: out.join().unwrap(), stderr: err.join().unwrap() }
}

fn python_command(python: &Path, url: &str) -> Command {
    let mut cmd = Command::new(python);
    cmd.arg(interop_dir().join("py_client.py")).arg(url).env("PYTHONDONTWRITEBYTECODE", "1");
    cmd
}

fn node_command(node: &Path, modules: &Path, url: &str) -> Command {
    let mut cmd = Command::new(node);
    cmd.arg(interop_dir().join("node_client.mjs")).arg(url).env("WSREACTOR_NODE_MODULES", modules);
    cmd
}

/// Asserts a passing run that executed checks (an empty run is not a pass).
fn assert_passed(outcome: &Outcome, what: &str) {
    let report = outcome.report(what);
    println!("{report}");
    assert!(outcome.success, "{report}");
    assert!(outcome.stdout.lines().any(|l| l.starts_with("ok ")), "no check ran\n{report}");
    assert!(!outcome.stdout.lines().any(|l| l.starts_with("FAIL ")), "{report}");
}

#[test]
fn python_websockets_client() {
    let python = python();
    let server = interop_server();
    let outcome = run_script(python_command(&python, &server.url()));
    server.shutdown(Duration::from_secs(2)).expect("shut the interop server down");
    assert_passed(&outcome, "tests/interop/py_client.py (Python websockets)");
}

#[test]
fn node_ws_client() {
    let (node, modules) = node();
    let server = interop_server();
    let outcome = run_script(node_command(&node, &modules, &server.url()));
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
    let report = outcome.report(what);
    println!("{report}");
    assert!(!outcome.success, "the script passed against a broken server\n{report}");
    let lines: Vec<&str> = outcome.stdout.lines().collect();
    for must_fail in ["echo_text_1", "non_ascii_text", "subprotocol_first_offered"] {
        let prefix = format!("FAIL {must_fail}:");
        assert!(lines.iter().any(|l| l.starts_with(&prefix)), "{must_fail} did not fail\n{report}");
    }
    for must_pass in ["echo_binary_1", "version_8_426"] {
        let line = format!("ok {must_pass}");
        assert!(lines.contains(&line.as_str()), "{must_pass} did not pass\n{report}");
    }
}

#[test]
fn python_client_detects_a_broken_server() {
    let python = python();
    let (url, running) = start_broken();
    let outcome = run_script(python_command(&python, &url));
    running.shutdown(Duration::from_secs(2)).expect("shut down");
    assert_detects_broken(&outcome, "py_client.py against a broken server");
}

#[test]
fn node_client_detects_a_broken_server() {
    let (node, modules) = node();
    let (url, running) = start_broken();
    let outcome = run_script(node_command(&node, &modules, &url));
    running.shutdown(Duration::from_secs(2)).expect("shut down");
    assert_detects_broken(&outcome, "node_client.mjs against a broken server");
}
