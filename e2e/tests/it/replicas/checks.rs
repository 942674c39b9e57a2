//! The scenario's verdicts on what happened: CRLs once per period, every event delivered and
//! at most the interrupted ones twice, renewals once per certificate, scans once per interval.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::time::Duration;

use super::processes::hooked;
use super::state::{Crls, jobs, number, published_crls, rows};
use super::{CRL_REFRESH_SECONDS, SCAN_INTERVAL_SECONDS, WAIT};
use crate::support::assert_eventually;

/// CRL numbers never repeat within a CA, and within each scope every CRL is newer than the one
/// before by at least a refresh period: made once per period, never twice.
pub(super) fn assert_crls_once_per_period(db: &str) -> Crls {
    let crls = published_crls(db);
    let mut per_ca: HashMap<&str, BTreeSet<u64>> = HashMap::new();
    for ((ca, _, _), list) in &crls {
        for (n, _) in list {
            assert!(
                per_ca.entry(ca.as_str()).or_default().insert(*n),
                "CRL number {n} of CA {ca} was published twice: {crls:?}"
            );
        }
    }
    for (scope, list) in &crls {
        for pair in list.windows(2) {
            let ((n0, t0), (n1, t1)) = (pair[0], pair[1]);
            assert!(
                t1 - t0 >= CRL_REFRESH_SECONDS,
                "{scope:?}: CRL {n1} was made {}s after CRL {n0}, within one refresh period \
                 ({CRL_REFRESH_SECONDS}s): {list:?}",
                t1 - t0
            );
        }
    }
    crls
}

/// Waits until the webhook received (and answered 200) the `ca.issue` event of each serial.
pub(super) fn wait_delivered(dir: &Path, serials: &[String]) {
    assert_eventually("each issuance event is delivered", WAIT * 3, || {
        let got: BTreeSet<String> = hooked(dir)
            .into_iter()
            .filter(|h| h.event_type == "ca.issue" && h.status == 200)
            .map(|h| h.aggregate_id)
            .collect();
        let missing: Vec<&String> = serials.iter().filter(|s| !got.contains(*s)).collect();
        missing
            .is_empty()
            .then_some(())
            .ok_or_else(|| format!("not delivered yet: {missing:?}"))
    });
}

/// Waits until the deliveries of the serials' events were each tried and wait for a retry.
pub(super) fn wait_attempted(db: &str, serials: &[String]) {
    let list = serials
        .iter()
        .map(|s| format!("'{s}'"))
        .collect::<Vec<_>>()
        .join(",");
    let sql = format!(
        "select count(*) from notification_deliveries d join outbox o on o.id = d.event_id \
         where lower(o.aggregate_id) in ({list}) and d.state = 'pending' and d.attempts >= 1"
    );
    assert_eventually("the failing deliveries wait for a retry", WAIT, || {
        let n = number(db, &sql) as usize;
        (n == serials.len())
            .then_some(())
            .ok_or_else(|| format!("{n} of {}", serials.len()))
    });
}

/// Waits until every event made before `before` was relayed, once, and delivered. Deliveries
/// A was sending when it died are claimed for two minutes: `timeout` covers that.
pub(super) fn wait_all_delivered(db: &str, before: f64, timeout: Duration) {
    let sql = format!(
        "select \
           (select count(*) from outbox where published_at is null \
              and extract(epoch from created_at) < {before}) || ' unrelayed, ' || \
           (select count(*) from notification_deliveries \
              where state <> 'delivered' and extract(epoch from created_at) < {before}) \
              || ' undelivered'"
    );
    assert_eventually(
        "every event made before the kill is delivered",
        timeout,
        || {
            let state = rows(db, &sql).concat().concat();
            (state == "0 unrelayed, 0 undelivered")
                .then_some(())
                .ok_or(state)
        },
    );
    let twice = rows(
        db,
        "select event_id from notification_deliveries group by event_id, channel_id \
         having count(*) > 1",
    );
    assert!(twice.is_empty(), "events relayed twice: {twice:?}");
}

/// Each event reached the webhook with a 200 once, but for the deliveries A was sending when
/// it died (at least once: A may have sent one and not recorded it).
pub(super) fn assert_delivered_once(dir: &Path, sending_at_kill: usize) {
    let mut counts: HashMap<String, usize> = HashMap::new();
    for h in hooked(dir).into_iter().filter(|h| h.status == 200) {
        *counts.entry(h.event_id).or_default() += 1;
    }
    let repeated: Vec<(&String, &usize)> = counts.iter().filter(|(_, n)| **n > 1).collect();
    eprintln!(
        "replicas: {} events delivered, {} of them more than once",
        counts.len(),
        repeated.len()
    );
    assert!(
        repeated.len() <= sending_at_kill,
        "events delivered more than once: {repeated:?}; {sending_at_kill} were being sent \
         when A died"
    );
}

/// Each renewal of a binding was planned once its certificate's renewal time had come, one
/// job per certificate, and none failed for good.
pub(super) fn assert_renewed_once_per_certificate(db: &str, binding: &str) {
    let all = jobs(db, binding);
    for pair in all.windows(2) {
        let (prev, next) = (&pair[0], &pair[1]);
        assert_eq!(prev.state, "succeeded", "{all:#?}");
        let due = prev
            .cert_renew_at
            .expect("a succeeded job records its renewal time");
        assert!(
            next.kind == "renew" && next.created_at >= due,
            "{binding}: job {} was planned at {} before its certificate's renewal time {due}: \
             {all:#?}",
            next.id,
            next.created_at
        );
    }
    let serials: BTreeSet<&str> = all
        .iter()
        .filter(|j| j.state == "succeeded")
        .map(|j| j.serial.as_str())
        .collect();
    let done = all.iter().filter(|j| j.state == "succeeded").count();
    assert_eq!(serials.len(), done, "one certificate per job: {all:#?}");
}

/// Every target was scanned on schedule at least twice, never twice within its interval.
pub(super) fn assert_scanned_once_per_interval(db: &str, targets: &[String]) {
    let timeout = Duration::from_secs_f64(SCAN_INTERVAL_SECONDS) + WAIT;
    let scans = assert_eventually("every target was scanned twice", timeout, || {
        let mut by_target: BTreeMap<String, Vec<f64>> = BTreeMap::new();
        for r in rows(
            db,
            "select target_id, extract(epoch from started_at)::float8 from scans \
             where trigger = 'schedule' order by started_at",
        ) {
            by_target
                .entry(r[0].clone())
                .or_default()
                .push(r[1].parse().expect("started_at"));
        }
        let twice = targets
            .iter()
            .all(|t| by_target.get(t).is_some_and(|s| s.len() >= 2));
        twice
            .then_some(by_target.clone())
            .ok_or_else(|| format!("{by_target:?}"))
    });
    eprintln!("replicas: scheduled scans per target: {scans:?}");
    for (target, started) in &scans {
        for pair in started.windows(2) {
            assert!(
                pair[1] - pair[0] >= SCAN_INTERVAL_SECONDS - 0.01,
                "target {target} was scanned twice within its interval: {started:?}"
            );
        }
    }
}
