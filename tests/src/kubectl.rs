//! Running the real `kubectl` (and its versioned siblings) against an [`ApiServer`].

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::apiserver::ApiServer;
use crate::wait::wait_until;

/// No kubectl call in these tests should take long; a hung one fails the test instead of
/// hanging the run.
const KUBECTL_TIMEOUT: Duration = Duration::from_secs(60);

impl ApiServer {
    /// Runs `kubectl ARGS` (the one on `PATH`) with this server's kubeconfig.
    pub fn kubectl(&self, args: &[&str]) -> Output {
        self.run_kubectl(Path::new("kubectl"), args, None)
    }

    /// Runs `kubectl.<version> ARGS`, e.g. `kubectl_v("1.27", &["get", "pods"])`.
    pub fn kubectl_v(&self, version: &str, args: &[&str]) -> Output {
        self.run_kubectl(&kubectl_versioned_path(version), args, None)
    }

    /// Runs `kubectl ARGS` with `stdin` on its standard input (for `-f -`).
    pub fn kubectl_stdin(&self, args: &[&str], stdin: &str) -> Output {
        self.run_kubectl(Path::new("kubectl"), args, Some(stdin))
    }

    /// Runs `kubectl ARGS`, asserts it succeeded, returns its stdout.
    /// Runs kubectl with `stdin`, asserts success, returns stdout.
    pub fn kubectl_stdin_ok(&self, args: &[&str], stdin: &str) -> String {
        success(
            &format!("kubectl {}", args.join(" ")),
            self.kubectl_stdin(args, stdin),
        )
    }

    pub fn kubectl_ok(&self, args: &[&str]) -> String {
        success(&format!("kubectl {}", args.join(" ")), self.kubectl(args))
    }

    /// Runs `kubectl.<version> ARGS`, asserts it succeeded, returns its stdout.
    pub fn kubectl_v_ok(&self, version: &str, args: &[&str]) -> String {
        success(
            &format!("kubectl.{version} {}", args.join(" ")),
            self.kubectl_v(version, args),
        )
    }

    /// `kubectl create -f -` of `objects`, asserting success; returns what kubectl printed.
    pub fn kubectl_create(&self, objects: &[serde_json::Value]) -> String {
        let out = self.kubectl_stdin(
            &["create", "-f", "-"],
            &crate::fixtures::yaml_documents(objects),
        );
        success("kubectl create -f -", out)
    }

    /// Runs `kubectl ARGS -o json` and parses what it printed.
    pub fn kubectl_json(&self, args: &[&str]) -> serde_json::Value {
        let mut all = args.to_vec();
        all.extend(["-o", "json"]);
        let out = self.kubectl_ok(&all);
        serde_json::from_str(&out)
            .unwrap_or_else(|e| panic!("kubectl {} printed no JSON ({e}):\n{out}", all.join(" ")))
    }

    /// Runs `kubectl ARGS`, asserts it failed as kubectl fails on a server error (exit code 1),
    /// and returns its stderr.
    pub fn kubectl_fails(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        failure(&format!("kubectl {}", args.join(" ")), out)
    }

    /// Like [`ApiServer::kubectl_fails`], with `stdin` on kubectl's standard input.
    pub fn kubectl_stdin_fails(&self, args: &[&str], stdin: &str) -> String {
        let out = self.kubectl_stdin(args, stdin);
        failure(&format!("kubectl {}", args.join(" ")), out)
    }

    /// Starts a long-running `kubectl ARGS` (e.g. `get pods -w`) whose output lines a test
    /// reads with [`KubectlWatch::expect_line`]. Killed on drop.
    pub fn kubectl_watch(&self, args: &[&str]) -> KubectlWatch {
        let mut child = self
            .kubectl_command(Path::new("kubectl"), args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run kubectl");
        let (tx, lines) = mpsc::channel();
        let stdout = child.stdout.take().expect("piped stdout");
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let sink = stderr.clone();
        let mut pipe = child.stderr.take().expect("piped stderr");
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n @ 1..) = pipe.read(&mut buf) {
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        KubectlWatch {
            command: format!("kubectl {}", args.join(" ")),
            child,
            lines,
            seen: Vec::new(),
            stderr,
        }
    }

    fn kubectl_command(&self, program: &Path, args: &[&str]) -> Command {
        let mut cmd = Command::new(program);
        cmd.arg("--kubeconfig")
            .arg(self.kubeconfig())
            // A discovery cache private to this server: nothing leaks into ~/.kube, and no test
            // sees another server's (or an earlier run's) cached discovery.
            .arg("--cache-dir")
            .arg(self.dir().join("kubectl-cache"))
            .args(args)
            .env_remove("KUBECONFIG")
            .current_dir(self.dir());
        cmd
    }

    fn run_kubectl(&self, program: &Path, args: &[&str], stdin: Option<&str>) -> Output {
        let mut child = self
            .kubectl_command(program, args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", program.display()));
        if let Some(input) = stdin {
            let mut pipe = child.stdin.take().expect("piped stdin");
            let input = input.to_owned();
            std::thread::spawn(move || pipe.write_all(input.as_bytes()));
        }
        let stdout = read_in_background(child.stdout.take().expect("piped stdout"));
        let stderr = read_in_background(child.stderr.take().expect("piped stderr"));
        let mut status: Option<ExitStatus> = None;
        if !wait_until(KUBECTL_TIMEOUT, || {
            status = child.try_wait().expect("wait for kubectl");
            status.is_some()
        }) {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{} {} did not finish within {KUBECTL_TIMEOUT:?}",
                program.display(),
                args.join(" ")
            );
        }
        Output {
            status: status.expect("checked above"),
            stdout: stdout.join().expect("stdout reader"),
            stderr: stderr.join().expect("stderr reader"),
        }
    }
}

fn read_in_background(mut pipe: impl Read + Send + 'static) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = pipe.read_to_end(&mut buf);
        buf
    })
}

fn success(what: &str, out: Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{what} failed ({}):\nstdout:\n{stdout}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn failure(what: &str, out: Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{what} should fail with exit code 1:\nstdout:\n{}\nstderr:\n{stderr}",
        String::from_utf8_lossy(&out.stdout)
    );
    stderr
}

/// `kubectl.<version>`, beside the file that `readlink -f $(which kubectl)` names.
pub fn kubectl_versioned_path(version: &str) -> PathBuf {
    let on_path = std::env::var_os("PATH")
        .and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|d| d.join("kubectl"))
                .find(|p| p.is_file())
        })
        .expect("kubectl is on PATH");
    let real = std::fs::canonicalize(&on_path).unwrap_or(on_path);
    real.with_file_name(format!("kubectl.{version}"))
}

/// A running `kubectl ... -w`; its stdout lines are read as they come. Killed on drop.
pub struct KubectlWatch {
    command: String,
    child: Child,
    lines: Receiver<String>,
    seen: Vec<String>,
    stderr: Arc<Mutex<String>>,
}

impl KubectlWatch {
    /// Waits up to `timeout` for a new output line for which `matches` holds and returns it.
    /// Panics (showing every line so far) if none comes.
    pub fn expect_line(&mut self, timeout: Duration, matches: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if matches(&line) {
                        return line;
                    }
                }
                Err(RecvTimeoutError::Timeout) | Err(RecvTimeoutError::Disconnected) => panic!(
                    "`{}` printed no expected line within {timeout:?}; stdout so far:\n{}\nstderr:\n{}",
                    self.command,
                    self.seen.join("\n"),
                    self.stderr.lock().unwrap()
                ),
            }
        }
    }

    /// Every stdout line read so far.
    pub fn seen(&self) -> &[String] {
        &self.seen
    }
}

impl Drop for KubectlWatch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A table as kubectl prints it (`get`, `api-resources`): a header row and rows of cells.
///
/// Cells are cut at the header's column positions (kubectl aligns columns with a tab writer
/// that pads with at least three spaces), so headers such as `NODE SELECTOR` and empty cells
/// (a resource without short names in `api-resources`) come out right.
#[derive(Debug)]
pub struct Table {
    pub header: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

impl Table {
    pub fn parse(text: &str) -> Table {
        let mut lines = text.lines().filter(|l| !l.trim().is_empty());
        let Some(header) = lines.next() else {
            return Table {
                header: Vec::new(),
                rows: Vec::new(),
            };
        };
        let bytes = header.as_bytes();
        let starts: Vec<usize> = (0..bytes.len())
            .filter(|&i| bytes[i] != b' ' && (i == 0 || (i >= 2 && &bytes[i - 2..i] == b"  ")))
            .collect();
        let cut = |line: &str| -> Vec<String> {
            (0..starts.len())
                .map(|c| {
                    let end = starts
                        .get(c + 1)
                        .copied()
                        .unwrap_or(usize::MAX)
                        .min(line.len());
                    line.get(starts[c].min(end)..end)
                        .unwrap_or_default()
                        .trim()
                        .to_owned()
                })
                .collect()
        };
        Table {
            header: cut(header),
            rows: lines.map(cut).collect(),
        }
    }

    /// The row whose first cell is `name`; panics (showing the table) if there is none.
    pub fn row(&self, name: &str) -> &[String] {
        self.rows
            .iter()
            .find(|r| r.first().is_some_and(|c| c == name))
            .unwrap_or_else(|| panic!("no row {name:?} in {self:#?}"))
    }

    /// The cell in column `column` (a header, e.g. `"STATUS"`) of the row named `name`.
    pub fn cell(&self, name: &str, column: &str) -> &str {
        let index = self
            .header
            .iter()
            .position(|h| h == column)
            .unwrap_or_else(|| panic!("no column {column:?} in {self:#?}"));
        self.row(name)
            .get(index)
            .map(String::as_str)
            .unwrap_or_default()
    }

    /// The first cell of every row.
    pub fn names(&self) -> Vec<&str> {
        self.rows
            .iter()
            .filter_map(|r| r.first().map(String::as_str))
            .collect()
    }
}

/// `text` without ANSI colour sequences (`kubectl cluster-info` colours even when piped).
pub fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // ESC [ parameters final-letter
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_cuts_cells_at_the_header_columns() {
        let text = "\
NAME    DESIRED   CURRENT   READY   UP-TO-DATE   AVAILABLE   NODE SELECTOR   AGE
agent   0         0         0       0            0           <none>          5s
";
        let table = Table::parse(text);
        assert_eq!(table.header[6], "NODE SELECTOR");
        assert_eq!(table.row("agent")[6], "<none>");
        assert_eq!(table.cell("agent", "AGE"), "5s");
    }

    #[test]
    fn table_keeps_empty_cells_empty() {
        let text = "\
NAME          SHORTNAMES   APIVERSION   NAMESPACED   KIND
bindings                   v1           true         Binding
deployments   deploy       apps/v1      true         Deployment
";
        let table = Table::parse(text);
        assert_eq!(
            table.row("bindings"),
            ["bindings", "", "v1", "true", "Binding"]
        );
        assert_eq!(table.cell("deployments", "SHORTNAMES"), "deploy");
    }

    #[test]
    fn strip_ansi_removes_colour_codes() {
        let coloured = "\u{1b}[0;32mKubernetes control plane\u{1b}[0m is running at \u{1b}[0;33mhttps://x\u{1b}[0m";
        assert_eq!(
            strip_ansi(coloured),
            "Kubernetes control plane is running at https://x"
        );
    }
}
