//! The real clients and servers of other ecosystems (node `ws`, socket.io, python
//! `websockets`), run as child processes from `tests/js` and `tests/py`. A missing interpreter
//! or package fails the test with the command that installs it (`.ci/run` runs them); every run
//! is bounded in time and its process is killed when the test ends.

use std::path::PathBuf;
use std::process::{Output, Stdio};
use std::time::Duration;

use tempfile::NamedTempFile;
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

use super::IO_TIMEOUT;

/// The node project of the JavaScript clients (its package.json pins `ws` and socket.io).
pub fn js_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/js")
}

pub fn py_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/py")
}

/// `node tests/js/<script>`, after checking that node and the project's packages are there.
pub fn node(script: &str) -> Command {
    require("node", "apt-get install nodejs npm");
    assert!(
        js_dir().join("node_modules/.package-lock.json").exists(),
        "the node packages are not installed: run `npm ci` in {} (.ci/run does)",
        js_dir().display()
    );
    let mut command = Command::new("node");
    command.arg(js_dir().join(script));
    command
}

/// `python3 tests/py/<script>` (the script itself reports a missing `websockets`).
pub fn python(script: &str) -> Command {
    require("python3", "apt-get install python3 python3-pip");
    let mut command = Command::new("python3");
    command.arg(py_dir().join(script));
    command
}

fn require(program: &str, install: &str) {
    let found = std::process::Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    assert!(
        found,
        "`{program}` is not on PATH; the real-client tests need it ({install}, as .ci/run does)"
    );
}

/// Run `command` to completion within `limit`; a timeout kills it and fails the test.
pub async fn run(mut command: Command, limit: Duration) -> Output {
    let child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn the client script");
    match tokio::time::timeout(limit, child.wait_with_output()).await {
        Ok(output) => output.expect("wait for the client script"),
        Err(_) => panic!("the client script ran longer than {limit:?}: {command:?}"),
    }
}

/// The script's stdout as one JSON object (its last line); fails with both outputs shown when
/// the script failed or printed something else.
pub fn json_result(output: &Output) -> serde_json::Value {
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the client script failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        output.status
    );
    let last = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(last).unwrap_or_else(|e| {
        panic!("the client script printed no JSON result ({e}):\n{stdout}\n--- stderr\n{stderr}")
    })
}

/// A long-running script (a server) that reports events as JSON lines on stdout. Killed on drop.
pub struct Background {
    child: Child,
    lines: Lines<BufReader<ChildStdout>>,
    stderr: NamedTempFile,
    /// Every line read so far.
    pub seen: Vec<serde_json::Value>,
}

impl Background {
    pub fn spawn(mut command: Command) -> Background {
        let stderr = NamedTempFile::new().expect("stderr file");
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(stderr.reopen().expect("stderr handle"))
            .kill_on_drop(true)
            .spawn()
            .expect("spawn the server script");
        let stdout = child.stdout.take().expect("piped stdout");
        Background {
            child,
            lines: BufReader::new(stdout).lines(),
            stderr,
            seen: Vec::new(),
        }
    }

    fn stderr_text(&self) -> String {
        std::fs::read_to_string(self.stderr.path()).unwrap_or_default()
    }

    /// Read lines (each within `IO_TIMEOUT`) until one for which `wanted` holds; that line.
    pub async fn wait_for(
        &mut self,
        what: &str,
        wanted: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        if let Some(line) = self.seen.iter().find(|line| wanted(line)) {
            return line.clone();
        }
        loop {
            let line = match tokio::time::timeout(IO_TIMEOUT, self.lines.next_line()).await {
                Ok(Ok(Some(line))) => line,
                outcome => panic!(
                    "the server script never reported {what} ({outcome:?}); it reported {:?}, \
                     exit {:?}, stderr:\n{}",
                    self.seen,
                    self.child.try_wait(),
                    self.stderr_text()
                ),
            };
            let value: serde_json::Value = serde_json::from_str(&line)
                .unwrap_or_else(|e| panic!("the server script printed {line:?}: {e}"));
            self.seen.push(value.clone());
            if wanted(&value) {
                return value;
            }
        }
    }
}
