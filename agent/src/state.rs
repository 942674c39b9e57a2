//! The state directory (`/var/lib/certmesh-agent`, 0700): what the agent keeps between runs.
//!
//! ```text
//! identity.key, identity.pem, identity-ca.pem   the agent's mTLS identity (key 0600)
//! identity.key.next, identity.pem.next          a renewal in flight (see crate::identity)
//! agent.json                                    who the agent is (AgentRecord); marks "enrolled"
//! status.json                                   connection state and last result per binding
//! pending/<job>.key, pending/<job>.job.json     a job's key (0600) and job, until its result
//! backups/<binding>/<timestamp>/                the files a deploy replaced (crate::deploy)
//! ```
//!
//! Ids from the server become file names only through [`SafeId`], so a job id cannot name a
//! path outside the directory.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::clock::SharedClock;
use crate::error::{AgentError, Result};
use crate::files::{self, FileOwner, PRIVATE};

/// Mode of the state directory and its subdirectories.
pub const DIR_MODE: u32 = 0o700;

/// An id from the server that is safe as a file name: 1 to 128 of `[A-Za-z0-9._-]`, not
/// starting with a dot.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SafeId(String);

impl SafeId {
    /// Checks `id`; `what` names it in the error ("job id").
    pub fn parse(what: &str, id: &str) -> Result<SafeId> {
        let ok = (1..=128).contains(&id.len())
            && !id.starts_with('.')
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if ok {
            Ok(SafeId(id.to_owned()))
        } else {
            Err(AgentError::protocol(format!(
                "{what} {id:?} is not a plain identifier"
            )))
        }
    }

    /// The id.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SafeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// `agent.json`: who this agent is, written by `enroll`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentRecord {
    /// The agent id the server assigned.
    pub agent_id: String,
    /// The tenant the agent belongs to.
    pub tenant_id: String,
    /// The identity certificate's SPIFFE id.
    pub spiffe_id: String,
    /// The agent group.
    pub group: String,
    /// When the identity certificate expires.
    pub not_after: DateTime<Utc>,
    /// The server enrolled with.
    pub server: String,
}

/// A job's last result on this host, as kept in `status.json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobRecord {
    /// The job.
    pub job_id: String,
    /// issue, renew or deploy.
    pub kind: String,
    /// The certificate's serial (hex), when there was one.
    pub serial: String,
    /// The outcome reported to the server.
    pub outcome: String,
    /// The outcome's detail.
    pub detail: String,
    /// SHA-256 of the installed leaf.
    pub certificate_sha256: String,
    /// When it was reported.
    pub at: DateTime<Utc>,
}

/// `status.json`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusFile {
    /// Whether a stream was open when last written.
    pub connected: bool,
    /// Since when `connected` holds.
    pub since: Option<DateTime<Utc>>,
    /// The last result per binding id.
    pub results: BTreeMap<String, JobRecord>,
}

/// The state directory.
#[derive(Clone, Debug)]
pub struct StateDir {
    root: PathBuf,
}

impl StateDir {
    /// The state directory at `root` (not created yet).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// Its path.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Creates the directory 0700 (and makes an existing one 0700).
    pub fn create(&self) -> Result<()> {
        files::ensure_dir(&self.root, DIR_MODE)
            .map_err(|e| AgentError::io(format!("creating {}", self.root.display()), e))
    }

    /// The identity's private key.
    pub fn identity_key(&self) -> PathBuf {
        self.root.join("identity.key")
    }

    /// The next identity key, made for a renewal.
    pub fn identity_key_next(&self) -> PathBuf {
        self.root.join("identity.key.next")
    }

    /// The identity (client) certificate.
    pub fn identity_pem(&self) -> PathBuf {
        self.root.join("identity.pem")
    }

    /// A renewed identity certificate on its way in.
    pub fn identity_pem_next(&self) -> PathBuf {
        self.root.join("identity.pem.next")
    }

    /// The agent-identity CA.
    pub fn identity_ca(&self) -> PathBuf {
        self.root.join("identity-ca.pem")
    }

    /// `agent.json`.
    pub fn agent_json(&self) -> PathBuf {
        self.root.join("agent.json")
    }

    /// `status.json`.
    pub fn status_json(&self) -> PathBuf {
        self.root.join("status.json")
    }

    /// Where a job's key waits for its certificate.
    pub fn pending_key(&self, job: &SafeId) -> PathBuf {
        self.root.join("pending").join(format!("{job}.key"))
    }

    /// Where a job is kept until its result, so a certificate arriving after a restart still
    /// finds its binding.
    pub fn pending_job(&self, job: &SafeId) -> PathBuf {
        self.root.join("pending").join(format!("{job}.job.json"))
    }

    /// The backup sets of one binding.
    pub fn backups(&self, binding: &SafeId) -> PathBuf {
        self.root.join("backups").join(binding.as_str())
    }

    /// Creates `pending/` 0700.
    pub fn create_pending(&self) -> Result<()> {
        let dir = self.root.join("pending");
        files::ensure_dir(&dir, DIR_MODE)
            .map_err(|e| AgentError::io(format!("creating {}", dir.display()), e))
    }

    /// Whether `agent.json` exists.
    pub fn is_enrolled(&self) -> bool {
        self.agent_json().is_file()
    }

    /// Reads `agent.json`; [`AgentError::NotEnrolled`] when absent.
    pub fn load_agent(&self) -> Result<AgentRecord> {
        self.read_json(&self.agent_json())?
            .ok_or_else(|| AgentError::NotEnrolled {
                state_dir: self.root.clone(),
            })
    }

    /// Writes `agent.json`.
    pub fn save_agent(&self, record: &AgentRecord) -> Result<()> {
        self.write_json(&self.agent_json(), record)
    }

    /// Reads `status.json` (empty when absent).
    pub fn load_status(&self) -> Result<StatusFile> {
        Ok(self.read_json(&self.status_json())?.unwrap_or_default())
    }

    /// Writes `status.json`.
    pub fn save_status(&self, status: &StatusFile) -> Result<()> {
        self.write_json(&self.status_json(), status)
    }

    /// Writes `bytes` to `path` atomically, 0600.
    pub fn write_private(&self, path: &Path, bytes: &[u8]) -> Result<()> {
        files::write_atomic(path, bytes, PRIVATE, FileOwner::default())
            .map_err(|e| AgentError::io(format!("writing {}", path.display()), e))
    }

    /// Reads a state file as text, `None` when absent.
    pub fn read_text(&self, path: &Path) -> Result<Option<String>> {
        let bytes = files::read_if_exists(path)
            .map_err(|e| AgentError::io(format!("reading {}", path.display()), e))?;
        bytes
            .map(|b| {
                String::from_utf8(b)
                    .map_err(|_| AgentError::protocol(format!("{} is not UTF-8", path.display())))
            })
            .transpose()
    }

    /// Removes a state file if present.
    pub fn remove(&self, path: &Path) -> Result<()> {
        files::remove_durably(path)
            .map_err(|e| AgentError::io(format!("removing {}", path.display()), e))
    }

    /// Reads a JSON state file, `None` when absent.
    pub fn read_json<T: DeserializeOwned>(&self, path: &Path) -> Result<Option<T>> {
        let Some(text) = self.read_text(path)? else {
            return Ok(None);
        };
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|source| AgentError::Json {
                context: format!("reading {}", path.display()),
                source,
            })
    }

    /// Writes a JSON state file atomically, 0600.
    pub fn write_json<T: Serialize>(&self, path: &Path, value: &T) -> Result<()> {
        let mut text = serde_json::to_vec_pretty(value).map_err(|source| AgentError::Json {
            context: format!("encoding {}", path.display()),
            source,
        })?;
        text.push(b'\n');
        self.write_private(path, &text)
    }
}

/// `status.json` kept current from both the stream and the job worker.
#[derive(Debug)]
pub struct StatusBook {
    state: StateDir,
    clock: SharedClock,
    current: Mutex<StatusFile>,
}

impl StatusBook {
    /// Starts from the file on disk (or empty).
    /// A file that does not parse is started over: it is a report, not a source of truth.
    pub fn open(state: StateDir, clock: SharedClock) -> StatusBook {
        let current = state.load_status().unwrap_or_default();
        StatusBook {
            state,
            clock,
            current: Mutex::new(current),
        }
    }

    /// Records a connect or disconnect.
    pub fn set_connected(&self, connected: bool) -> Result<()> {
        let now = self.clock.now();
        self.update(|s| {
            s.connected = connected;
            s.since = Some(now);
        })
    }

    /// Records a job result for `binding_id`.
    pub fn record(&self, binding_id: &str, record: JobRecord) -> Result<()> {
        self.update(|s| {
            s.results.insert(binding_id.to_owned(), record);
        })
    }

    /// The time to stamp a record with.
    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    fn update(&self, change: impl FnOnce(&mut StatusFile)) -> Result<()> {
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        change(&mut current);
        self.state.save_status(&current)
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt;
    use std::sync::Arc;

    use super::*;
    use crate::clock::TestClock;

    fn t0() -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).expect("valid")
    }

    #[test]
    fn ids_that_could_escape_the_directory_are_refused() {
        for bad in [
            "",
            ".",
            "..",
            "../x",
            "a/b",
            ".hidden",
            "a b",
            "é",
            &"x".repeat(129),
        ] {
            assert!(SafeId::parse("job id", bad).is_err(), "{bad:?}");
        }
        for good in ["0190f2c4-7b8e-7c3a-9d1e-3f5a6b7c8d9e", "job_1.retry", "A-1"] {
            assert_eq!(SafeId::parse("job id", good).expect("ok").as_str(), good);
        }
    }

    #[test]
    fn the_directory_and_its_files_are_private() {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = StateDir::new(dir.path().join("state"));
        state.create().expect("create");
        assert_eq!(
            std::fs::metadata(state.root()).expect("meta").mode() & 0o777,
            0o700
        );
        assert!(!state.is_enrolled());
        assert!(matches!(
            state.load_agent(),
            Err(AgentError::NotEnrolled { .. })
        ));
        let record = AgentRecord {
            agent_id: "a1".into(),
            tenant_id: "t1".into(),
            spiffe_id: "spiffe://td/tenant/t1/agent/a1".into(),
            group: "web".into(),
            not_after: t0(),
            server: "https://fleet:8444".into(),
        };
        state.save_agent(&record).expect("save");
        assert!(state.is_enrolled());
        assert_eq!(state.load_agent().expect("load"), record);
        let meta = std::fs::metadata(state.agent_json()).expect("meta");
        assert_eq!(meta.mode() & 0o777, 0o600);
    }

    #[test]
    fn the_status_book_keeps_the_last_result_per_binding() {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = StateDir::new(dir.path());
        let clock = TestClock::at(t0());
        let book = StatusBook::open(state.clone(), Arc::new(clock.clone()));
        book.set_connected(true).expect("connected");
        let record = |job: &str, outcome: &str| JobRecord {
            job_id: job.into(),
            kind: "issue".into(),
            serial: "01".into(),
            outcome: outcome.into(),
            detail: String::new(),
            certificate_sha256: "ab".into(),
            at: t0(),
        };
        book.record("b1", record("j1", "failed")).expect("record");
        book.record("b1", record("j2", "verified")).expect("record");
        book.record("b2", record("j3", "installed"))
            .expect("record");
        clock.advance(chrono::Duration::seconds(5));
        book.set_connected(false).expect("disconnected");
        let status = state.load_status().expect("load");
        assert!(!status.connected);
        assert_eq!(status.since, Some(t0() + chrono::Duration::seconds(5)));
        assert_eq!(status.results.len(), 2);
        assert_eq!(status.results["b1"].job_id, "j2");
        assert_eq!(status.results["b1"].outcome, "verified");
    }
}
