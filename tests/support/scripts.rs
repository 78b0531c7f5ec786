//! Running the third-party client scripts of `tests/interop/` from a test: the pinned
//! interpreters, found and checked (a missing one fails the test, never skips it), and a script
//! run bounded in time. Include it with `#[path = "support/scripts.rs"] mod scripts;`.
//!
//! - `WSREACTOR_PYTHON`: a Python that has the `websockets` pinned in
//!   `tests/interop/requirements.txt` (default: `target/interop-venv/bin/python`);
//! - `WSREACTOR_NODE_MODULES`: a `node_modules` that has the `ws` pinned in
//!   `tests/interop/package.json` (default: `tests/interop/node_modules`);
//! - `WSREACTOR_NODE`: the `node` binary (default: `node` on the `PATH`).
//!
//! `tools/test.sh` installs both clients and exports the first two.
#![allow(dead_code)]

use std::ffi::OsString;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// What to do when a client is missing.
pub const SETUP_HINT: &str = "run tools/test.sh from the repository root: it installs the pinned \
                              clients and exports WSREACTOR_PYTHON and WSREACTOR_NODE_MODULES";

/// `tests/interop/`, where the scripts and the client pins are.
pub fn interop_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop")
}

fn read_interop_file(name: &str) -> String {
    let path = interop_dir().join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

fn env_path(var: &str, default: impl FnOnce() -> PathBuf) -> PathBuf {
    std::env::var_os(var).map_or_else(default, PathBuf::from)
}

/// An interpreter with the pinned client, ready to run scripts of `tests/interop/`.
pub struct Interpreter {
    program: PathBuf,
    env: Vec<(&'static str, OsString)>,
}

impl Interpreter {
    /// A command running `tests/interop/<script>` with `args`.
    pub fn script(&self, script: &str, args: &[String]) -> Command {
        let mut cmd = Command::new(&self.program);
        cmd.arg(interop_dir().join(script)).args(args);
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        cmd
    }
}

/// The Python with the pinned `websockets`; panics (with [`SETUP_HINT`]) if it has another or none.
pub fn python() -> Interpreter {
    let program = env_path("WSREACTOR_PYTHON", || {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("target/interop-venv/bin/python")
    });
    let reqs = read_interop_file("requirements.txt");
    let pinned = reqs
        .lines()
        .find_map(|line| line.trim().strip_prefix("websockets=="))
        .expect("websockets is pinned (websockets==X.Y) in tests/interop/requirements.txt");
    let probe = Command::new(&program)
        .args(["-c", "import websockets; print(websockets.__version__)"])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}; {SETUP_HINT}", program.display()));
    let found = String::from_utf8_lossy(&probe.stdout).trim().to_owned();
    assert!(
        probe.status.success() && found == pinned.trim(),
        "{} has websockets {found:?}, pinned {pinned} ({}); {SETUP_HINT}",
        program.display(),
        String::from_utf8_lossy(&probe.stderr).trim(),
    );
    // The pub/sub script imports py_client.py beside it: keep __pycache__ out of the tree.
    Interpreter { program, env: vec![("PYTHONDONTWRITEBYTECODE", "1".into())] }
}

/// `node` with a `node_modules` holding the pinned `ws`; panics (with [`SETUP_HINT`]) otherwise.
pub fn node() -> Interpreter {
    let program = env_path("WSREACTOR_NODE", || PathBuf::from("node"));
    let modules = env_path("WSREACTOR_NODE_MODULES", || interop_dir().join("node_modules"));
    let package: serde_json::Value = serde_json::from_str(&read_interop_file("package.json"))
        .expect("tests/interop/package.json is JSON");
    let pinned = package["dependencies"]["ws"].as_str().expect("ws is pinned in package.json");
    let manifest = modules.join("ws/package.json");
    let installed = std::fs::read_to_string(&manifest)
        .ok()
        .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
        .and_then(|v| v["version"].as_str().map(str::to_owned));
    assert_eq!(
        installed.as_deref(),
        Some(pinned),
        "{} does not hold the pinned ws; {SETUP_HINT}",
        manifest.display()
    );
    let version = Command::new(&program).arg("--version").output();
    assert!(
        version.as_ref().is_ok_and(|out| out.status.success()),
        "cannot run {} ({version:?}): install Node.js 20+; {SETUP_HINT}",
        program.display()
    );
    Interpreter { program, env: vec![("WSREACTOR_NODE_MODULES", modules.into_os_string())] }
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

    /// The names of the checks reported `ok NAME`.
    pub fn passed(&self) -> Vec<&str> {
        self.stdout.lines().filter_map(|l| l.strip_prefix("ok ")).collect()
    }

    /// The names of the checks reported `FAIL NAME: why`.
    pub fn failed(&self) -> Vec<&str> {
        let names = self.stdout.lines().filter_map(|l| l.strip_prefix("FAIL "));
        names.map(|rest| rest.split_once(':').map_or(rest, |(name, _)| name)).collect()
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
pub fn run(mut cmd: Command, limit: Duration) -> Outcome {
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
