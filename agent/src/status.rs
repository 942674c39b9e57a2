//! `certmesh-agent status`: who the agent is, whether its identity is still valid, whether the
//! daemon was connected when it last wrote `status.json`, and the last result per binding.

use std::fmt::Write as _;

use chrono::{DateTime, SecondsFormat, Utc};

use crate::error::Result;
use crate::state::{AgentRecord, StateDir, StatusFile};

/// The report for the state directory; [`crate::AgentError::NotEnrolled`] when not enrolled.
pub fn report(state: &StateDir, now: DateTime<Utc>) -> Result<String> {
    let agent = state.load_agent()?;
    let status = state.load_status()?;
    Ok(render(&agent, &status, now))
}

/// Renders the report.
pub fn render(agent: &AgentRecord, status: &StatusFile, now: DateTime<Utc>) -> String {
    let mut out = String::new();
    let expiry = if agent.not_after <= now {
        "EXPIRED: enroll again with --force"
    } else {
        "valid"
    };
    let _ = writeln!(out, "agent:     {}", agent.agent_id);
    let _ = writeln!(out, "tenant:    {}", agent.tenant_id);
    let _ = writeln!(out, "spiffe id: {}", agent.spiffe_id);
    let _ = writeln!(out, "group:     {}", agent.group);
    let _ = writeln!(
        out,
        "identity:  not after {} ({expiry})",
        time(agent.not_after)
    );
    let _ = writeln!(out, "server:    {}", agent.server);
    let state = if status.connected {
        "connected"
    } else {
        "disconnected"
    };
    match status.since {
        Some(since) => {
            let _ = writeln!(out, "stream:    {state} since {}", time(since));
        }
        None => {
            let _ = writeln!(out, "stream:    never connected");
        }
    }
    if status.results.is_empty() {
        let _ = writeln!(out, "jobs:      none yet");
    } else {
        let _ = writeln!(out, "jobs:");
        for (binding, r) in &status.results {
            let serial = if r.serial.is_empty() { "-" } else { &r.serial };
            let _ = writeln!(
                out,
                "  binding {binding}: {} {} (job {}, serial {serial}, {})",
                r.outcome,
                r.kind,
                r.job_id,
                time(r.at)
            );
            if !r.detail.is_empty() {
                let _ = writeln!(out, "    {}", r.detail);
            }
        }
    }
    out
}

fn time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

#[cfg(test)]
mod tests {
    use chrono::Duration;

    use super::*;
    use crate::state::JobRecord;

    #[test]
    fn the_report_names_the_identity_the_stream_and_the_last_results() {
        let now = DateTime::from_timestamp(1_800_000_000, 0).expect("valid");
        let agent = AgentRecord {
            agent_id: "ag_1".into(),
            tenant_id: "tn_1".into(),
            spiffe_id: "spiffe://td/tenant/tn_1/agent/ag_1".into(),
            group: "web".into(),
            not_after: now + Duration::days(10),
            server: "https://fleet:8444".into(),
        };
        let mut status = StatusFile {
            connected: true,
            since: Some(now),
            ..StatusFile::default()
        };
        status.results.insert(
            "bd_1".into(),
            JobRecord {
                job_id: "jb_1".into(),
                kind: "renew".into(),
                serial: "0a1b".into(),
                outcome: "verified".into(),
                detail: "127.0.0.1:443 serves the new certificate".into(),
                certificate_sha256: "ab".into(),
                at: now,
            },
        );
        let text = render(&agent, &status, now);
        assert!(text.contains("agent:     ag_1"));
        assert!(text.contains("(valid)"));
        assert!(text.contains("connected since 2027-01-15T08:00:00Z"));
        assert!(text.contains("binding bd_1: verified renew (job jb_1, serial 0a1b"));
        let later = render(&agent, &StatusFile::default(), now + Duration::days(11));
        assert!(later.contains("EXPIRED"));
        assert!(later.contains("never connected"));
        assert!(later.contains("jobs:      none yet"));
    }

    #[test]
    fn not_enrolled_is_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let now = DateTime::from_timestamp(1_800_000_000, 0).expect("valid");
        let err = report(&StateDir::new(dir.path()), now).expect_err("not enrolled");
        assert!(matches!(err, crate::AgentError::NotEnrolled { .. }));
    }
}
