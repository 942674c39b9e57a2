//! The audit trail: an append-only, per-tenant hash chain of who did what, to which resource,
//! with what outcome.
//!
//! **Append-only.** Rows are only ever inserted; the schema's triggers reject `UPDATE`,
//! `DELETE` (and on PostgreSQL `TRUNCATE`) of `audit_events`. Someone who can bypass triggers
//! (the database owner) can still rewrite rows, which is what the chain detects: [`verify`].
//!
//! **The chain.** Each tenant's events are numbered `seq` = 1, 2, 3, … without gaps. Row `n`
//! stores `prev_hash` (the `hash` of row `n - 1`, or [`GENESIS_HASH`] — 64 `0`s — for row 1)
//! and `hash = lowercase_hex(SHA-256(prev_hash || "\n" || canonical))`, where `canonical` is
//! this JSON object, compact (no whitespace), keys in exactly this order:
//!
//! ```text
//! {"tenant_id":"<uuid, lower-case, hyphenated>","seq":<integer>,"actor":"…","action":"…",
//!  "resource":"…","request_id":"…","outcome":"allowed|denied|failed","details":<JSON>,
//!  "created_at":"<RFC 3339, UTC, exactly 6 fractional digits, 'Z'>"}
//! ```
//!
//! Strings are escaped as serde_json does (only `"`, `\` and control characters; non-ASCII is
//! raw UTF-8); `created_at` looks like `2023-11-14T22:13:20.123456Z`. `details` is the redacted
//! ([`redact`]) value with the keys of every object sorted by their UTF-8 bytes, at every
//! depth; the `details` column stores exactly that text, so an external verifier can splice the
//! column in verbatim. `audit_heads` keeps the last `seq` and `hash` per tenant, so a deleted
//! tail is detected too. A tail rewritten together with its head is only detectable against a
//! head recorded elsewhere (exported or anchored by the operator).
//!
//! **Concurrency.** Call [`append`] inside the caller's transaction, together with the change it
//! records. It serializes on the tenant's head row: `SELECT … FOR UPDATE` on PostgreSQL; on
//! SQLite its first statement is a write (the head insert), which takes the database write lock
//! until commit. As with [`crate::idempotency`], on SQLite make it the first statement of the
//! transaction, or follow a write: a transaction that has only read cannot upgrade to a writer
//! once another writer committed (`SQLITE_BUSY_SNAPSHOT`). On a bare connection each statement
//! commits on its own, so concurrent appends may fail with a `Conflict` and a failure between
//! statements can leave the head out of step with the rows (which [`verify`] then reports).

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, IntoActiveModel, QueryFilter, QueryOrder,
    QuerySelect,
};
use serde_json::Value;

use crate::entity::{audit_events as e, audit_heads as h};
use crate::{Result, StoreError, TenantId, truncate_ts};

mod canonical;

/// The `prev_hash` of a tenant's first event, and the hash of an empty chain.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// What replaces the value of a sensitive key in `details`.
pub const REDACTED: &str = "[REDACTED]";

/// Substrings of (lower-cased) key names whose values are never stored.
const SENSITIVE_KEY_PARTS: [&str; 9] = [
    "token",
    "secret",
    "password",
    "passphrase",
    "private",
    "kek",
    "authorization",
    "credential",
    "pkcs8",
];

/// Rows per round-trip in [`verify`] and per `INSERT` in [`append`].
const PAGE: u64 = 1000;
const PAGE_ROWS: usize = 1000;

/// The largest `limit` [`query`] accepts.
pub const MAX_QUERY_LIMIT: u64 = 1000;

/// How an audited request ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// Authorized and done.
    Allowed,
    /// Refused by authorization or policy.
    Denied,
    /// Authorized, but the operation failed.
    Failed,
}

impl Outcome {
    /// The stored (and hashed) name: `allowed`, `denied` or `failed`.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Allowed => "allowed",
            Outcome::Denied => "denied",
            Outcome::Failed => "failed",
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Outcome {
    type Err = StoreError;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "allowed" => Ok(Outcome::Allowed),
            "denied" => Ok(Outcome::Denied),
            "failed" => Ok(Outcome::Failed),
            other => Err(StoreError::Invalid {
                detail: format!("unknown audit outcome {other:?}"),
            }),
        }
    }
}

/// An event to [`append`].
#[derive(Clone, Debug, PartialEq)]
pub struct AuditEntry {
    /// Who acted: a principal or token name.
    pub actor: String,
    /// What was done, e.g. `certificate.issue`.
    pub action: String,
    /// What it was done to, e.g. `certificate/0a1b…`.
    pub resource: String,
    /// The request's id, to join with logs and traces.
    pub request_id: String,
    /// How it ended.
    pub outcome: Outcome,
    /// Free-form context; [`redact`]ed before it is stored.
    pub details: Value,
    /// When it happened (truncated to microseconds).
    pub at: DateTime<Utc>,
}

/// A stored event.
#[derive(Clone, Debug, PartialEq)]
pub struct AuditRecord {
    /// Owner.
    pub tenant_id: TenantId,
    /// Position in the tenant's chain, from 1.
    pub seq: u64,
    /// Who acted.
    pub actor: String,
    /// What was done.
    pub action: String,
    /// What it was done to.
    pub resource: String,
    /// The request's id.
    pub request_id: String,
    /// How it ended.
    pub outcome: Outcome,
    /// Redacted context.
    pub details: Value,
    /// When it happened.
    pub created_at: DateTime<Utc>,
    /// `hash` of the previous event, [`GENESIS_HASH`] for seq 1.
    pub prev_hash: String,
    /// This event's chain hash (see the module docs).
    pub hash: String,
}

/// The result of [`verify`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verification {
    /// Every link checks out, and the head names the last row.
    Intact {
        /// Events in the chain.
        rows: u64,
    },
    /// The first broken link: events before `seq` are intact.
    Broken {
        /// The first seq that does not check out.
        seq: u64,
        /// What is wrong there, e.g. `hash mismatch`.
        reason: String,
    },
}

/// Exact-match filters for [`query`]; `None` matches everything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuditFilter {
    /// Only this actor.
    pub actor: Option<String>,
    /// Only this action.
    pub action: Option<String>,
    /// Only this resource.
    pub resource: Option<String>,
    /// Only events at or after this instant (truncated to microseconds, like stored times).
    pub since: Option<DateTime<Utc>>,
    /// Only events strictly before this instant (truncated to microseconds).
    pub until: Option<DateTime<Utc>>,
}

/// Replaces, at every depth, the value of each object key that names a secret with
/// [`REDACTED`]: keys whose lower-cased name contains `token`, `secret`, `password`,
/// `passphrase`, `private`, `kek`, `authorization`, `credential` or `pkcs8`, or is exactly
/// `key`. Matching is by key name only; a secret under an innocuous key is kept.
pub fn redact(details: Value) -> Value {
    match details {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| {
                    let v = if is_sensitive(&k) {
                        Value::String(REDACTED.to_owned())
                    } else {
                        redact(v)
                    };
                    (k, v)
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(redact).collect()),
        other => other,
    }
}

fn is_sensitive(key: &str) -> bool {
    let key = key.to_lowercase();
    key == "key" || SENSITIVE_KEY_PARTS.iter().any(|part| key.contains(part))
}

/// Appends `entries` to the tenant's chain, in order; returns their seqs. See the module docs
/// for the transaction this belongs in.
pub async fn append<C: ConnectionTrait>(
    c: &C,
    tenant: TenantId,
    entries: &[AuditEntry],
) -> Result<Vec<u64>> {
    if entries.is_empty() {
        return Ok(Vec::new());
    }
    let head = lock_head(c, tenant).await?;
    let mut seq = to_u64(head.seq, "audit head seq")?;
    let mut prev_hash = head.hash;
    let mut rows = Vec::with_capacity(entries.len());
    let mut seqs = Vec::with_capacity(entries.len());
    for entry in entries {
        seq += 1;
        let record = chain(tenant, seq, entry, prev_hash);
        prev_hash = record.hash.clone();
        rows.push(to_model(&record)?);
        seqs.push(seq);
    }
    for chunk in rows.chunks(PAGE_ROWS) {
        let chunk = chunk
            .iter()
            .cloned()
            .map(IntoActiveModel::into_active_model);
        e::Entity::insert_many(chunk)
            .exec_without_returning(c)
            .await
            .map_err(|err| StoreError::from_insert(err, "audit event"))?;
    }
    let moved = h::Entity::update_many()
        .col_expr(h::Column::Seq, Expr::value(to_i64(seq, "audit seq")?))
        .col_expr(h::Column::Hash, Expr::value(prev_hash))
        .filter(h::Column::TenantId.eq(tenant.0))
        .filter(h::Column::Seq.eq(head.seq))
        .exec(c)
        .await?;
    if moved.rows_affected != 1 {
        // Only reachable without a transaction: another append moved the head meanwhile.
        return Err(StoreError::Conflict { what: "audit head" });
    }
    Ok(seqs)
}

/// Makes sure the tenant's head exists (a write, so on SQLite the write lock is taken here)
/// and locks it until the end of the transaction (PostgreSQL).
async fn lock_head<C: ConnectionTrait>(c: &C, tenant: TenantId) -> Result<h::Model> {
    let genesis = h::Model {
        tenant_id: tenant.0,
        seq: 0,
        hash: GENESIS_HASH.to_owned(),
    };
    h::Entity::insert(genesis.into_active_model())
        .on_conflict_do_nothing_on([h::Column::TenantId])
        .exec_without_returning(c)
        .await?;
    // SQLite ignores the lock clause; its write lock is already held.
    h::Entity::find_by_id(tenant.0)
        .lock_exclusive()
        .one(c)
        .await?
        .ok_or(StoreError::NotFound { what: "audit head" })
}

/// The record for `entry` at `seq` after `prev_hash`: redacted, truncated and hashed.
fn chain(tenant: TenantId, seq: u64, entry: &AuditEntry, prev_hash: String) -> AuditRecord {
    let mut record = AuditRecord {
        tenant_id: tenant,
        seq,
        actor: entry.actor.clone(),
        action: entry.action.clone(),
        resource: entry.resource.clone(),
        request_id: entry.request_id.clone(),
        outcome: entry.outcome,
        details: redact(entry.details.clone()),
        created_at: truncate_ts(entry.at),
        prev_hash,
        hash: String::new(),
    };
    record.hash = canonical::chain_hash(&record);
    record
}

fn to_model(r: &AuditRecord) -> Result<e::Model> {
    Ok(e::Model {
        id: uuid::Uuid::new_v4(),
        tenant_id: r.tenant_id.0,
        seq: to_i64(r.seq, "audit seq")?,
        actor: r.actor.clone(),
        action: r.action.clone(),
        resource: r.resource.clone(),
        request_id: r.request_id.clone(),
        outcome: r.outcome.as_str().to_owned(),
        details: canonical::details_json(&r.details),
        created_at: r.created_at,
        prev_hash: r.prev_hash.clone(),
        hash: r.hash.clone(),
    })
}

fn from_model(m: e::Model) -> Result<AuditRecord> {
    let details = serde_json::from_str(&m.details).map_err(|err| StoreError::Corrupt {
        detail: format!("audit details are not JSON: {err}"),
    })?;
    let outcome = m.outcome.parse().map_err(|_| StoreError::Corrupt {
        detail: format!("unknown audit outcome {:?}", m.outcome),
    })?;
    Ok(AuditRecord {
        tenant_id: TenantId(m.tenant_id),
        seq: to_u64(m.seq, "audit seq")?,
        actor: m.actor,
        action: m.action,
        resource: m.resource,
        request_id: m.request_id,
        outcome,
        details,
        created_at: m.created_at,
        prev_hash: m.prev_hash,
        hash: m.hash,
    })
}

/// Walks the tenant's chain from seq 1 in pages, recomputing every hash from the stored
/// fields, checking each `prev_hash` link, that seqs run 1, 2, 3, … and that the head names
/// the last row; reports the first broken link.
///
/// Reads the head first and the rows after, in several statements: run it in a transaction
/// (on PostgreSQL `REPEATABLE READ`) when appends may run concurrently, or a concurrent
/// commit can look like a head mismatch.
pub async fn verify<C: ConnectionTrait>(c: &C, tenant: TenantId) -> Result<Verification> {
    let head = h::Entity::find_by_id(tenant.0).one(c).await?;
    let mut walk = Walk {
        seq: 0,
        hash: GENESIS_HASH.to_owned(),
    };
    let mut cursor = None;
    loop {
        let mut q = e::Entity::find().filter(e::Column::TenantId.eq(tenant.0));
        if let Some(after) = cursor {
            q = q.filter(e::Column::Seq.gt(after));
        }
        let page = q.order_by_asc(e::Column::Seq).limit(PAGE).all(c).await?;
        let full = page.len() == PAGE_ROWS;
        for row in page {
            cursor = Some(row.seq);
            if let Some(broken) = walk.step(row) {
                return Ok(broken);
            }
        }
        if !full {
            return Ok(walk.finish(head));
        }
    }
}

/// The last verified link of a [`verify`] walk.
struct Walk {
    seq: u64,
    hash: String,
}

impl Walk {
    /// Checks `row` as the successor of the last verified row.
    fn step(&mut self, row: e::Model) -> Option<Verification> {
        let expected = self.seq + 1;
        let broken = |reason: String| {
            Some(Verification::Broken {
                seq: expected,
                reason,
            })
        };
        if row.seq != i64::try_from(expected).unwrap_or(i64::MAX) {
            return broken(format!("sequence gap before seq {}", row.seq));
        }
        if row.prev_hash != self.hash {
            return broken("prev_hash does not match the previous row".to_owned());
        }
        let record = match from_model(row) {
            Ok(record) => record,
            Err(err) => return broken(err.to_string()),
        };
        if canonical::chain_hash(&record) != record.hash {
            return broken("hash mismatch".to_owned());
        }
        self.seq = expected;
        self.hash = record.hash;
        None
    }

    /// Compares the end of the walk with the head (none: an empty chain).
    fn finish(self, head: Option<h::Model>) -> Verification {
        let (head_seq, head_hash) = head.map_or((0, GENESIS_HASH.to_owned()), |h| (h.seq, h.hash));
        let last = i64::try_from(self.seq).unwrap_or(i64::MAX);
        if head_seq == last && head_hash == self.hash {
            return Verification::Intact { rows: self.seq };
        }
        let seq = match head_seq.cmp(&last) {
            // The head points past the last row: rows were removed from the tail.
            std::cmp::Ordering::Greater => self.seq + 1,
            // Rows beyond the head were not appended through the head.
            std::cmp::Ordering::Less => u64::try_from(head_seq).unwrap_or(0) + 1,
            std::cmp::Ordering::Equal => self.seq.max(1),
        };
        Verification::Broken {
            seq,
            reason: "head does not match the last row".to_owned(),
        }
    }
}

/// Up to `limit` (1..=[`MAX_QUERY_LIMIT`]) of the tenant's events with seq above `after_seq`
/// that match `filter`, oldest first. Page by passing the last seq returned as `after_seq`.
pub async fn query<C: ConnectionTrait>(
    c: &C,
    tenant: TenantId,
    filter: &AuditFilter,
    after_seq: u64,
    limit: u64,
) -> Result<Vec<AuditRecord>> {
    if !(1..=MAX_QUERY_LIMIT).contains(&limit) {
        return Err(StoreError::Invalid {
            detail: format!("audit query limit must be 1..={MAX_QUERY_LIMIT}, not {limit}"),
        });
    }
    let mut q = e::Entity::find()
        .filter(e::Column::TenantId.eq(tenant.0))
        .filter(e::Column::Seq.gt(to_i64(after_seq, "after_seq")?));
    for (col, want) in [
        (e::Column::Actor, &filter.actor),
        (e::Column::Action, &filter.action),
        (e::Column::Resource, &filter.resource),
    ] {
        if let Some(want) = want {
            q = q.filter(col.eq(want.as_str()));
        }
    }
    // Bounds are truncated like stored times, so the instant given to `append` matches itself.
    if let Some(since) = filter.since {
        q = q.filter(e::Column::CreatedAt.gte(truncate_ts(since)));
    }
    if let Some(until) = filter.until {
        q = q.filter(e::Column::CreatedAt.lt(truncate_ts(until)));
    }
    let rows = q.order_by_asc(e::Column::Seq).limit(limit).all(c).await?;
    rows.into_iter().map(from_model).collect()
}

fn to_u64(v: i64, what: &str) -> Result<u64> {
    u64::try_from(v).map_err(|_| StoreError::Corrupt {
        detail: format!("negative {what}: {v}"),
    })
}

fn to_i64(v: u64, what: &str) -> Result<i64> {
    i64::try_from(v).map_err(|_| StoreError::Invalid {
        detail: format!("{what} out of range: {v}"),
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn redacts_sensitive_keys_at_every_depth() {
        let got = redact(json!({
            "Authorization": "Bearer x",
            "key": "k",
            "key_ref": "kms:1",
            "idempotency_key": "i",
            "list": [{"db_password": "p", "KEK_id": "q"}, "plain"],
            "nested": {"Private_Key": {"pem": "-----"}, "profile": "web"},
        }));
        assert_eq!(
            got,
            json!({
                "Authorization": REDACTED,
                "key": REDACTED,
                "key_ref": "kms:1",
                "idempotency_key": "i",
                "list": [{"db_password": REDACTED, "KEK_id": REDACTED}, "plain"],
                "nested": {"Private_Key": REDACTED, "profile": "web"},
            })
        );
    }

    #[test]
    fn outcome_round_trips() {
        for o in [Outcome::Allowed, Outcome::Denied, Outcome::Failed] {
            assert_eq!(o.as_str().parse::<Outcome>().expect("parse"), o);
        }
        assert!("ALLOWED".parse::<Outcome>().is_err());
    }
}
