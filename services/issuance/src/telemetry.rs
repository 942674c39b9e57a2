//! What the issuance path reports: one [`IssueObserved`] per pass, which writes
//! `certmesh_issuance_total{profile,ca,outcome}` (and `certmesh_issue_seconds` for an issued
//! certificate).
//!
//! The labels are filled in as the request resolves them ([`Scope`]): the profile once it is
//! found in the store, the CA once the profile names it, so a name a caller made up never
//! becomes a label value.

use std::time::Duration;

use certmesh_kit::metrics::{IssuanceLabels, IssuanceOutcome, Metrics};
use tonic::Code;

use crate::error::IssuanceError;

/// The profile and CA a request was found to be under; empty until known.
#[derive(Debug, Default)]
pub(crate) struct Scope {
    /// The name of a profile that exists.
    pub profile: String,
    /// The name of the CA that signs under it.
    pub ca: String,
}

/// What a pass that did not fail came to.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Answered {
    Issued,
    Replayed,
    Held,
}

/// One pass down the issuance path.
#[derive(Debug)]
pub(crate) struct IssueObserved<'a> {
    pub scope: &'a Scope,
    pub result: Result<Answered, &'a IssuanceError>,
    pub elapsed: Duration,
}

impl IssueObserved<'_> {
    pub fn emit(self, metrics: &Metrics) {
        let outcome = match self.result {
            Ok(Answered::Issued) => {
                metrics.issue_seconds.observe(self.elapsed.as_secs_f64());
                IssuanceOutcome::Issued
            }
            Ok(Answered::Replayed) => IssuanceOutcome::Replayed,
            Ok(Answered::Held) => IssuanceOutcome::PendingApproval,
            Err(e) => failure(e),
        };
        metrics
            .issuance
            .get_or_create(&IssuanceLabels {
                profile: self.scope.profile.clone(),
                ca: self.scope.ca.clone(),
                outcome,
            })
            .inc();
    }
}

/// A refusal by the rules is a denial; otherwise the gRPC code says whose side failed.
fn failure(e: &IssuanceError) -> IssuanceOutcome {
    if let IssuanceError::ProfileDenied { .. } | IssuanceError::NameConstraintExceeded { .. } = e {
        return IssuanceOutcome::Denied;
    }
    match e.code_and_reason().0 {
        Code::Internal
        | Code::Unknown
        | Code::Unavailable
        | Code::DataLoss
        | Code::DeadlineExceeded => IssuanceOutcome::Error,
        _ => IssuanceOutcome::Refused,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_split_into_denied_refused_and_error() {
        let denied = IssuanceError::ProfileDenied {
            profile: "web".into(),
            version: 1,
            rule: "allowed_dns",
            detail: "no".into(),
        };
        assert_eq!(failure(&denied), IssuanceOutcome::Denied);
        let missing = IssuanceError::ProfileNotFound {
            name: "nope".into(),
            version: None,
        };
        assert_eq!(failure(&missing), IssuanceOutcome::Refused);
        let store = IssuanceError::Store(certmesh_store::StoreError::NotFound { what: "x" });
        assert_eq!(failure(&store), IssuanceOutcome::Error);
    }
}
