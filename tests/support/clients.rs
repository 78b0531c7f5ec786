//! The third-party clients of the interop tests (`tests/interop.rs`, `tests/deflate_interop.rs`,
//! `tests/pubsub_interop.rs`):
//! finding them, running their scripts in `tests/interop/` with a time bound, and judging the
//! `ok NAME` / `FAIL NAME: why` lines the scripts print.
//!
//! Included by path (`#[path = "support/clients.rs"] mod clients;`), next to `mod support;`.
//! `tools/test.sh` installs the clients and exports:
//! - `WSREACTOR_PYTHON`: a Python with the pinned `websockets` (default:
//!   `target/interop-venv/bin/python`);
//! - `WSREACTOR_NODE_MODULES`: a `node_modules` with the pinned `ws` (default:
//!   `tests/interop/node_modules`); `WSREACTOR_NODE` may name the `node` binary (default: `node`);
//! - `WSREACTOR_CHROMIUM`: the Chromium binary (default: `chromium` on PATH).
//!
//! A missing interpreter, package or browser fails the test (never skips it): run `tools/test.sh`.
#![allow(dead_code)]

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

pub const SETUP_HINT: &str = "run tools/test.sh from the repository root (it installs the pinned \
                              clients and Chromium, and exports WSREACTOR_PYTHON, \
                              WSREACTOR_NODE_MODULES and WSREACTOR_CHROMIUM)";

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn interop_dir() -> PathBuf {
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
pub fn python() -> PathBuf {
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
pub fn node() -> (PathBuf, PathBuf) {
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

/// The Chromium binary, checked to run; panics with [`SETUP_HINT`] if not.
pub fn chromium() -> PathBuf {
    let chromium = std::env::var_os("WSREACTOR_CHROMIUM")
        .map_or_else(|| PathBuf::from("chromium"), PathBuf::from);
    let out = Command::new(&chromium).arg("--version").output().unwrap_or_else(|e| {
        let path = chromium.display();
        panic!("cannot run {path}: {e}; on Debian: apt-get install chromium; or {SETUP_HINT}")
    });
    assert!(out.status.success(), "{} --version failed; {SETUP_HINT}", chromium.display());
    chromium
}

/// `python script args...`, with the script under tests/interop/.
pub fn python_script(python: &Path, script: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new(python);
    cmd.arg(interop_dir().join(script)).args(args).env("PYTHONDONTWRITEBYTECODE", "1");
    cmd
}

/// `node script args...`, with the script under tests/interop/ and `ws` from `modules`.
pub fn node_script(node: &Path, modules: &Path, script: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new(node);
    cmd.arg(interop_dir().join(script)).args(args).env("WSREACTOR_NODE_MODULES", modules);
    cmd
}

/// How a script run ended, and what it printed.
pub struct Outcome {
    /// Exited with status 0.
    pub success: bool,
    /// The exit status, or why there is none.
    pub status: String,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

impl Outcome {
    /// Everything, for an assertion message.
    pub fn report(&self, what: &str) -> String {
        format!(
            "{what}: {} after {:.1}s\n--- stdout ---\n{}--- stderr ---\n{}",
            self.status,
            self.elapsed.as_secs_f64(),
            self.stdout,
            self.stderr
        )
    }

    /// The names of the checks that printed `ok NAME` and `FAIL NAME: ...`.
    pub fn checks(&self) -> (Vec<&str>, Vec<&str>) {
        let ok = self.stdout.lines().filter_map(|l| l.strip_prefix("ok ")).collect();
        let failed = self
            .stdout
            .lines()
            .filter_map(|l| l.strip_prefix("FAIL "))
            .map(|l| l.split_once(':').map_or(l, |(name, _)| name))
            .collect();
        (ok, failed)
    }
}

fn collect(pipe: Option<impl Read + Send + 'static>) -> JoinHandle<String> {
    thread::spawn(move || {
        let mut bytes = Vec::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_end(&mut bytes);
        }
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

/// Runs `cmd` to its end, or kills it (this child only) once `limit` has passed.
pub fn run_script(mut cmd: Command, limit: Duration) -> Outcome {
    let started = Instant::now();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}; {SETUP_HINT}"));
    let (stdout, stderr) = (collect(child.stdout.take()), collect(child.stderr.take()));
    let (success, status) = loop {
        if let Some(status) = child.try_wait().expect("wait for the script") {
            break (status.success(), status.to_string());
        }
        if started.elapsed() >= limit {
            let _ = child.kill();
            let _ = child.wait();
            break (false, format!("killed: still running after {}s", limit.as_secs()));
        }
        thread::sleep(Duration::from_millis(20));
    };
    Outcome {
        success,
        status,
        stdout: stdout.join().expect("stdout reader"),
        stderr: stderr.join().expect("stderr reader"),
        elapsed: started.elapsed(),
    }
}

/// Asserts a passing run that executed checks (an empty run is not a pass).
pub fn assert_passed(outcome: &Outcome, what: &str) {
    let report = outcome.report(what);
    println!("{report}");
    let (ok, failed) = outcome.checks();
    assert!(outcome.success, "{report}");
    assert!(!ok.is_empty(), "no check ran\n{report}");
    assert!(failed.is_empty(), "{report}");
}

/// Asserts a failing run in which each of `must_fail` failed and each of `must_pass` passed:
/// the script noticed exactly what a deliberately broken server breaks.
pub fn assert_detects(outcome: &Outcome, what: &str, must_fail: &[&str], must_pass: &[&str]) {
    let report = outcome.report(what);
    println!("{report}");
    let (ok, failed) = outcome.checks();
    assert!(!outcome.success, "the script passed against a broken server\n{report}");
    for name in must_fail {
        assert!(failed.contains(name), "{name} did not fail\n{report}");
    }
    for name in must_pass {
        assert!(ok.contains(name), "{name} did not pass\n{report}");
    }
}
