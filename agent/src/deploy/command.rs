//! Running a binding's validate and reload commands: `sh -c <command>` with the target paths
//! in the environment, stdin and stdout closed, stderr kept (its tail goes into the job's
//! detail), bounded by a timeout after which the shell is killed.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::process::{ChildStderr, Command};
use tokio::time::timeout;

/// How much of stderr is kept, from the end.
const TAIL_BYTES: usize = 2048;

/// The environment a command sees, besides the agent's own.
#[derive(Clone, Copy, Debug)]
pub struct CommandEnv<'a> {
    /// `CERTMESH_CERT_PATH`.
    pub cert_path: &'a Path,
    /// `CERTMESH_KEY_PATH`.
    pub key_path: &'a Path,
    /// `CERTMESH_CHAIN_PATH` (empty when the chain is in the certificate file).
    pub chain_path: Option<&'a Path>,
}

/// How a command ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommandRun {
    /// Exit status 0.
    pub success: bool,
    /// `exit status 1`, `killed by signal 9`, `timed out after 60s`, `could not start: …`.
    pub status: String,
    /// The last lines of stderr, trimmed.
    pub stderr_tail: String,
}

impl CommandRun {
    /// `exit status 1: <stderr tail>`.
    pub fn describe(&self) -> String {
        if self.stderr_tail.is_empty() {
            self.status.clone()
        } else {
            format!("{}: {}", self.status, self.stderr_tail)
        }
    }
}

/// Runs `command` through `sh -c`, waiting at most `limit`.
pub async fn run(command: &str, env: CommandEnv<'_>, limit: Duration) -> CommandRun {
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(command)
        .env("CERTMESH_CERT_PATH", env.cert_path)
        .env("CERTMESH_KEY_PATH", env.key_path)
        .env(
            "CERTMESH_CHAIN_PATH",
            env.chain_path.unwrap_or(Path::new("")),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = match cmd.spawn() {
        Ok(child) => child,
        Err(e) => {
            return CommandRun {
                success: false,
                status: format!("could not start: {e}"),
                stderr_tail: String::new(),
            };
        }
    };
    let reader = tokio::spawn(read_tail(child.stderr.take()));
    let (success, status) = match timeout(limit, child.wait()).await {
        Ok(Ok(status)) => (status.success(), describe_status(status)),
        Ok(Err(e)) => (false, format!("could not wait for it: {e}")),
        Err(_) => {
            let _ = child.kill().await;
            (false, format!("timed out after {limit:?}"))
        }
    };
    // A background process the command left behind may hold stderr open; do not wait for it.
    let mut reader = reader;
    let tail = match timeout(Duration::from_secs(1), &mut reader).await {
        Ok(Ok(tail)) => tail,
        _ => {
            reader.abort();
            Vec::new()
        }
    };
    CommandRun {
        success,
        status,
        stderr_tail: tail_text(&tail),
    }
}

/// Reads `stderr` to its end, keeping the last [`TAIL_BYTES`] or so.
async fn read_tail(stderr: Option<ChildStderr>) -> Vec<u8> {
    let mut tail = Vec::new();
    if let Some(mut stderr) = stderr {
        let mut buf = [0u8; 4096];
        while let Ok(n @ 1..) = stderr.read(&mut buf).await {
            tail.extend_from_slice(&buf[..n]);
            if tail.len() > 2 * TAIL_BYTES {
                tail.drain(..tail.len() - TAIL_BYTES);
            }
        }
    }
    tail
}

fn describe_status(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit status {code}"),
        (None, Some(signal)) => format!("killed by signal {signal}"),
        (None, None) => "ended without a status".to_owned(),
    }
}

fn tail_text(bytes: &[u8]) -> String {
    let start = bytes.len().saturating_sub(TAIL_BYTES);
    let text = String::from_utf8_lossy(&bytes[start..]);
    let lines: Vec<&str> = text.trim().lines().collect();
    lines[lines.len().saturating_sub(10)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(cert: &'a Path, key: &'a Path) -> CommandEnv<'a> {
        CommandEnv {
            cert_path: cert,
            key_path: key,
            chain_path: None,
        }
    }

    #[tokio::test]
    async fn success_failure_and_the_stderr_tail() {
        let (c, k) = (Path::new("/c.pem"), Path::new("/k.pem"));
        let ok = run("true", env(c, k), Duration::from_secs(5)).await;
        assert!(ok.success);
        assert_eq!(ok.status, "exit status 0");
        let bad = run(
            "echo out; for i in $(seq 1 30); do echo line$i >&2; done; exit 3",
            env(c, k),
            Duration::from_secs(5),
        )
        .await;
        assert!(!bad.success);
        assert_eq!(bad.status, "exit status 3");
        assert!(
            bad.stderr_tail.starts_with("line21\n"),
            "{}",
            bad.stderr_tail
        );
        assert!(bad.stderr_tail.ends_with("line30"));
        assert!(!bad.stderr_tail.contains("out"));
        assert!(bad.describe().starts_with("exit status 3: line21"));
    }

    #[tokio::test]
    async fn the_paths_are_in_the_environment() {
        let run = run(
            "echo \"$CERTMESH_CERT_PATH|$CERTMESH_KEY_PATH|$CERTMESH_CHAIN_PATH\" >&2; false",
            CommandEnv {
                cert_path: Path::new("/etc/ssl/c.pem"),
                key_path: Path::new("/etc/ssl/k.pem"),
                chain_path: Some(Path::new("/etc/ssl/chain.pem")),
            },
            Duration::from_secs(5),
        )
        .await;
        assert_eq!(
            run.stderr_tail,
            "/etc/ssl/c.pem|/etc/ssl/k.pem|/etc/ssl/chain.pem"
        );
    }

    #[tokio::test]
    async fn a_slow_command_times_out_and_a_background_child_does_not_hang_us() {
        let (c, k) = (Path::new("/c"), Path::new("/k"));
        let slow = run("sleep 30", env(c, k), Duration::from_millis(300)).await;
        assert!(!slow.success);
        assert_eq!(slow.status, "timed out after 300ms");
        let started = std::time::Instant::now();
        let bg = run(
            "sleep 30 & echo started >&2",
            env(c, k),
            Duration::from_secs(5),
        )
        .await;
        assert!(bg.success);
        assert!(started.elapsed() < Duration::from_secs(4));
    }
}
