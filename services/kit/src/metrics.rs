//! Prometheus metrics, rendered on `/metrics` in the OpenMetrics text format.
//!
//! One registry per process; each role writes its families through the typed handles below, so
//! a metric name is written in exactly one place. Every label is bounded: its values are enums
//! ([`IssuanceOutcome`], [`OcspResult`], …), names from a fixed table (the RPCs and REST routes
//! a process serves, job states, channel kinds) or names an operator created (profiles, CAs),
//! never text a caller chose. `docs/reference/metrics.md` lists every family and label value;
//! a test checks it against this file.

use std::sync::{Arc, atomic::AtomicU64};

use prometheus_client::{
    encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder, text::encode},
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::{Metric, Registry},
};

/// Declares the values of a label: variants, their label text, and one line each for the docs.
macro_rules! label_values {
    ($(#[$meta:meta])* $name:ident { $($variant:ident => $text:literal, $doc:literal;)* }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
        pub enum $name {
            $(#[doc = $doc] $variant,)*
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant,)*];

            /// The label value.
            pub const fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text,)* }
            }
        }

        impl EncodeLabelValue for $name {
            fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
                std::fmt::Write::write_str(encoder, self.as_str())
            }
        }
    };
}

label_values! {
    /// What one pass down the issuance path came to (`certmesh_issuance_total{outcome}`).
    IssuanceOutcome {
        Issued => "issued", "A certificate was signed and stored.";
        Replayed => "replayed", "Answered with the certificate of an earlier request with the same idempotency key.";
        PendingApproval => "pending_approval", "Held until a second principal approves it.";
        Denied => "denied", "Refused by the profile's rules or by the name constraints of the CA's chain.";
        Refused => "refused", "Failed on the caller's side: an unknown profile, a reused or in-flight idempotency key, a CA that is not active.";
        Error => "error", "Failed on the server's side: the store, the key backend or signing.";
    }
}

label_values! {
    /// What the OCSP responder answered (`certmesh_ocsp_requests_total{result}`).
    OcspResult {
        Good => "good", "A signed response: the certificate is good.";
        Revoked => "revoked", "A signed response: the certificate is revoked or on hold.";
        Unknown => "unknown", "A signed response: the CA never issued that serial.";
        Malformed => "malformed", "The unsigned malformedRequest answer: not a valid OCSP request.";
        Unauthorized => "unauthorized", "The unsigned unauthorized answer: a CA this responder does not serve.";
        TryLater => "try_later", "The unsigned tryLater answer: no responder certificate for that CA key yet.";
        InternalError => "internal_error", "The unsigned internalError answer: reading the store or signing failed.";
        SigRequired => "sig_required", "The unsigned sigRequired answer (certmesh does not ask for signed requests).";
        BadRequest => "bad_request", "An HTTP 400 before any OCSP answer: wrong content type, a body too large or unreadable, a GET without a request.";
    }
}

label_values! {
    /// What making one CRL came to (`certmesh_crl_generations_total{outcome}`).
    CrlOutcome {
        Published => "published", "The CRL was signed, stored and announced.";
        Failed => "failed", "Making, signing or storing the CRL failed; the next round tries again.";
    }
}

label_values! {
    /// What one delivery attempt came to (`certmesh_notification_deliveries_total{outcome}`).
    DeliveryOutcome {
        Delivered => "delivered", "The channel accepted the notification.";
        Failed => "failed", "The attempt failed and a retry is scheduled.";
        Dead => "dead", "The attempt failed for good or was the last one: the delivery is dead-lettered.";
    }
}

/// Labels of `certmesh_http_requests_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpRequestLabels {
    /// The HTTP method of the REST route.
    pub method: &'static str,
    /// The REST route template, e.g. `/api/v1/certificates/{serial}`.
    pub route: &'static str,
    /// The gRPC code name of the answer (`OK`, `INVALID_ARGUMENT`, …).
    pub code: &'static str,
}

/// Labels of `certmesh_rpc_requests_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RpcLabels {
    /// The full gRPC service name, or `unknown`.
    pub service: String,
    /// The method, or `unknown`.
    pub method: String,
    /// The gRPC code name (`OK`, `NOT_FOUND`, …).
    pub code: &'static str,
}

/// Labels of `certmesh_rpc_duration_seconds`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RpcMethodLabels {
    /// The full gRPC service name, or `unknown`.
    pub service: String,
    /// The method, or `unknown`.
    pub method: String,
}

/// Labels of `certmesh_issuance_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct IssuanceLabels {
    /// The profile's name; empty when the request failed before its profile was found.
    pub profile: String,
    /// The signing CA's name (`builtin-issuing` for the built-in CA); empty when not known.
    pub ca: String,
    /// What the request came to.
    pub outcome: IssuanceOutcome,
}

/// Labels of `certmesh_ocsp_requests_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OcspLabels {
    /// What the responder answered.
    pub result: OcspResult,
}

/// Labels of `certmesh_crl_generations_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CrlLabels {
    /// What making the CRL came to.
    pub outcome: CrlOutcome,
}

/// Labels of `certmesh_fleet_jobs`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct JobStateLabels {
    /// A job state (`pending`, `sent`, …, `cancelled`).
    pub state: &'static str,
}

/// Labels of `certmesh_notification_deliveries_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DeliveryLabels {
    /// The channel kind (`webhook`, `email`, …), or `unknown` for a deleted channel.
    pub channel_kind: &'static str,
    /// What the attempt came to.
    pub outcome: DeliveryOutcome,
}

/// A family of histograms that all share one set of buckets.
pub type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// Buckets of request latencies, 1 ms to 10 s.
const RPC_BUCKETS: [f64; 13] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// Buckets of the issuance role's own latency.
const ISSUE_BUCKETS: [f64; 10] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1.0,
];
/// Buckets of CRL generation, 5 ms to a minute (a CRL of a million entries takes seconds).
const CRL_BUCKETS: [f64; 13] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

fn rpc_histogram() -> Histogram {
    Histogram::new(RPC_BUCKETS)
}

/// The process's metrics.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// REST requests the gateway answered, by method, route and code.
    pub http_requests: Family<HttpRequestLabels, Counter>,
    /// gRPC requests served, by service, method and code ([`crate::rpc_metrics`]).
    pub rpc_requests: Family<RpcLabels, Counter>,
    /// Time from a gRPC request to the end of its response.
    pub rpc_duration_seconds: HistogramFamily<RpcMethodLabels>,
    /// Passes down the issuance path, by profile, CA and outcome.
    pub issuance: Family<IssuanceLabels, Counter>,
    /// Time from an Issue request's arrival in the issuance role to its commit (issued only).
    pub issue_seconds: Histogram,
    /// OCSP requests the PKI listener answered, by result.
    pub ocsp_requests: Family<OcspLabels, Counter>,
    /// CRLs made, by outcome.
    pub crl_generations: Family<CrlLabels, Counter>,
    /// Time to make, sign and store one CRL.
    pub crl_generation_seconds: Histogram,
    /// Agent streams open on this replica.
    pub agent_streams: Gauge,
    /// Fleet jobs in the store, by state (every tenant), as last sampled.
    pub fleet_jobs: Family<JobStateLabels, Gauge>,
    /// Outbox events not relayed yet (every tenant), as the relaying replica last saw them.
    pub outbox_pending: Gauge,
    /// Age of the oldest outbox event not relayed yet, 0 when none.
    pub outbox_lag_seconds: Gauge<f64, AtomicU64>,
    /// Notification delivery attempts, by channel kind and outcome.
    pub notification_deliveries: Family<DeliveryLabels, Counter>,
}

/// Holds a gauge one higher for as long as it lives: the count of things that are open,
/// however they end (a task that is aborted drops its guard too).
#[derive(Debug)]
pub struct GaugeGuard(Gauge);

impl GaugeGuard {
    /// Counts one up on `gauge` until the guard is dropped.
    pub fn hold(gauge: &Gauge) -> Self {
        gauge.inc();
        Self(gauge.clone())
    }
}

impl Drop for GaugeGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Registers `metric` as `name` and hands it back.
fn registered<M: Metric + Clone>(registry: &mut Registry, name: &str, help: &str, metric: M) -> M {
    registry.register(name, help, metric.clone());
    metric
}

impl Metrics {
    /// A fresh registry with every certmesh family.
    pub fn new() -> Arc<Self> {
        let mut registry = Registry::with_prefix("certmesh");
        let r = &mut registry;
        Arc::new(Self {
            http_requests: registered(
                r,
                "http_requests",
                "REST requests answered by the gateway, by method, route and gRPC code",
                Family::default(),
            ),
            rpc_requests: registered(
                r,
                "rpc_requests",
                "gRPC requests served, by service, method and code",
                Family::default(),
            ),
            rpc_duration_seconds: registered(
                r,
                "rpc_duration_seconds",
                "Time from a gRPC request to the end of its response",
                Family::new_with_constructor(rpc_histogram as fn() -> Histogram),
            ),
            issuance: registered(
                r,
                "issuance",
                "Passes down the issuance path, by profile, CA and outcome",
                Family::default(),
            ),
            issue_seconds: registered(
                r,
                "issue_seconds",
                "Issue latency inside the issuance role, for issued certificates",
                Histogram::new(ISSUE_BUCKETS),
            ),
            ocsp_requests: registered(
                r,
                "ocsp_requests",
                "OCSP requests answered, by result",
                Family::default(),
            ),
            crl_generations: registered(
                r,
                "crl_generations",
                "CRLs made, by outcome",
                Family::default(),
            ),
            crl_generation_seconds: registered(
                r,
                "crl_generation_seconds",
                "Time to make, sign and store one CRL",
                Histogram::new(CRL_BUCKETS),
            ),
            agent_streams: registered(
                r,
                "agent_streams",
                "Agent streams open on this replica",
                Gauge::default(),
            ),
            fleet_jobs: registered(
                r,
                "fleet_jobs",
                "Fleet jobs in the store by state, every tenant, as last sampled",
                Family::default(),
            ),
            outbox_pending: registered(
                r,
                "outbox_pending",
                "Outbox events not relayed yet, every tenant, as the relaying replica saw them",
                Gauge::default(),
            ),
            outbox_lag_seconds: registered(
                r,
                "outbox_lag_seconds",
                "Age of the oldest outbox event not relayed yet, 0 when none",
                Gauge::default(),
            ),
            notification_deliveries: registered(
                r,
                "notification_deliveries",
                "Notification delivery attempts, by channel kind and outcome",
                Family::default(),
            ),
            registry,
        })
    }

    /// The OpenMetrics text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }

    /// The sum of the samples named `name` whose labels include every pair in `labels`, read
    /// from [`Metrics::render`]; 0 when none match. What tests and diagnostics assert on:
    /// `sample("certmesh_issuance_total", &[("outcome", "issued")])`.
    pub fn sample(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.render()
            .lines()
            .filter_map(parse_sample)
            .filter(|(n, have, _)| {
                *n == name
                    && labels
                        .iter()
                        .all(|(k, v)| have.iter().any(|(hk, hv)| hk == k && hv == v))
            })
            .map(|(_, _, value)| value)
            .sum()
    }
}

/// A sample line of the text exposition, parsed: its name, labels (unescaped) and value.
type Sample<'a> = (&'a str, Vec<(&'a str, String)>, f64);

/// One sample line of the text exposition; `None` for comments and anything unparsable.
fn parse_sample(line: &str) -> Option<Sample<'_>> {
    if line.starts_with('#') || line.is_empty() {
        return None;
    }
    let (series, value) = line.rsplit_once(' ')?;
    let value = value.parse().ok()?;
    let Some((name, rest)) = series.split_once('{') else {
        return Some((series, Vec::new(), value));
    };
    let mut labels = Vec::new();
    let mut rest = rest.strip_suffix('}')?;
    while let Some((key, after)) = rest.split_once("=\"") {
        let mut text = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next()? {
                (i, '"') => break i,
                (_, '\\') => match chars.next()?.1 {
                    'n' => text.push('\n'),
                    c => text.push(c),
                },
                (_, c) => text.push(c),
            }
        };
        labels.push((key, text));
        rest = after[end + 1..].trim_start_matches(',');
    }
    Some((name, labels, value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_registered_families() {
        let m = Metrics::new();
        m.issuance
            .get_or_create(&IssuanceLabels {
                profile: "web".into(),
                ca: "builtin-issuing".into(),
                outcome: IssuanceOutcome::PendingApproval,
            })
            .inc();
        m.http_requests
            .get_or_create(&HttpRequestLabels {
                method: "GET",
                route: "/x",
                code: "OK",
            })
            .inc();
        m.outbox_lag_seconds.set(1.5);
        let text = m.render();
        assert!(
            text.contains(
                "certmesh_issuance_total{profile=\"web\",ca=\"builtin-issuing\",outcome=\"pending_approval\"} 1"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "certmesh_http_requests_total{method=\"GET\",route=\"/x\",code=\"OK\"} 1"
            ),
            "{text}"
        );
        assert!(text.contains("certmesh_outbox_lag_seconds 1.5"), "{text}");
    }

    #[test]
    fn samples_sum_the_series_whose_labels_match() {
        let m = Metrics::new();
        for (kind, outcome, n) in [
            ("webhook", DeliveryOutcome::Dead, 2),
            ("email", DeliveryOutcome::Dead, 3),
            ("email", DeliveryOutcome::Delivered, 5),
        ] {
            m.notification_deliveries
                .get_or_create(&DeliveryLabels {
                    channel_kind: kind,
                    outcome,
                })
                .inc_by(n);
        }
        let deliveries = "certmesh_notification_deliveries_total";
        assert_eq!(m.sample(deliveries, &[("outcome", "dead")]), 5.0);
        assert_eq!(
            m.sample(
                deliveries,
                &[("outcome", "dead"), ("channel_kind", "email")]
            ),
            3.0
        );
        assert_eq!(m.sample(deliveries, &[]), 10.0);
        assert_eq!(m.sample(deliveries, &[("outcome", "failed")]), 0.0);
        assert_eq!(m.sample("certmesh_agent_streams", &[]), 0.0);
        m.agent_streams.inc();
        assert_eq!(m.sample("certmesh_agent_streams", &[]), 1.0);
        let escaped = parse_sample(r#"x{a="q\"uote",b="back\\slash"} 2"#).expect("parses");
        assert_eq!(
            escaped.1,
            [
                ("a", "q\"uote".to_string()),
                ("b", "back\\slash".to_string())
            ]
        );
    }

    #[tokio::test]
    async fn a_gauge_guard_counts_down_when_its_task_is_aborted() {
        let m = Metrics::new();
        let held = GaugeGuard::hold(&m.agent_streams);
        let (started, wait) = tokio::sync::oneshot::channel();
        let gauge = m.agent_streams.clone();
        let task = tokio::spawn(async move {
            let _open = GaugeGuard::hold(&gauge);
            let _ = started.send(());
            std::future::pending::<()>().await;
        });
        wait.await.expect("started");
        assert_eq!(m.agent_streams.get(), 2);
        task.abort();
        let _ = task.await;
        assert_eq!(
            m.agent_streams.get(),
            1,
            "the aborted task's guard was dropped"
        );
        drop(held);
        assert_eq!(m.sample("certmesh_agent_streams", &[]), 0.0);
    }

    #[test]
    fn label_values_are_unique_lower_snake() {
        let values = IssuanceOutcome::ALL
            .iter()
            .map(|v| v.as_str())
            .chain(OcspResult::ALL.iter().map(|v| v.as_str()))
            .chain(CrlOutcome::ALL.iter().map(|v| v.as_str()))
            .chain(DeliveryOutcome::ALL.iter().map(|v| v.as_str()));
        for v in values {
            assert!(
                !v.is_empty() && v.chars().all(|c| c.is_ascii_lowercase() || c == '_'),
                "{v}"
            );
        }
    }
}

#[cfg(test)]
mod docs_tests {
    use super::*;

    /// Every family the registry renders, as PromQL names it (counters with `_total`).
    fn family_names(text: &str) -> Vec<String> {
        text.lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .filter_map(|l| l.split_once(' '))
            .map(|(name, kind)| match kind {
                "counter" => format!("{name}_total"),
                _ => name.to_string(),
            })
            .collect()
    }

    /// A registry with one series in every family (a family without series renders nothing).
    fn every_family() -> Arc<Metrics> {
        let m = Metrics::new();
        let rpc = RpcMethodLabels {
            service: "s".into(),
            method: "m".into(),
        };
        m.http_requests
            .get_or_create(&HttpRequestLabels {
                method: "GET",
                route: "/r",
                code: "OK",
            })
            .inc();
        m.rpc_requests
            .get_or_create(&RpcLabels {
                service: rpc.service.clone(),
                method: rpc.method.clone(),
                code: "OK",
            })
            .inc();
        m.rpc_duration_seconds.get_or_create(&rpc).observe(0.1);
        m.issuance
            .get_or_create(&IssuanceLabels {
                profile: "p".into(),
                ca: "c".into(),
                outcome: IssuanceOutcome::Issued,
            })
            .inc();
        m.ocsp_requests
            .get_or_create(&OcspLabels {
                result: OcspResult::Good,
            })
            .inc();
        m.crl_generations
            .get_or_create(&CrlLabels {
                outcome: CrlOutcome::Published,
            })
            .inc();
        m.fleet_jobs
            .get_or_create(&JobStateLabels { state: "pending" })
            .set(1);
        m.notification_deliveries
            .get_or_create(&DeliveryLabels {
                channel_kind: "webhook",
                outcome: DeliveryOutcome::Delivered,
            })
            .inc();
        m
    }

    #[test]
    fn metrics_reference_lists_every_family_and_label_value() {
        let doc = include_str!("../../../docs/reference/metrics.md");
        let names = family_names(&every_family().render());
        // One per field of `Metrics` but the registry: a new family must be added above.
        assert_eq!(names.len(), 13, "{names:?}");
        for name in names {
            assert!(
                doc.contains(&format!("`{name}`")),
                "docs/reference/metrics.md lacks {name}"
            );
        }
        let values = IssuanceOutcome::ALL
            .iter()
            .map(|v| v.as_str())
            .chain(OcspResult::ALL.iter().map(|v| v.as_str()))
            .chain(CrlOutcome::ALL.iter().map(|v| v.as_str()))
            .chain(DeliveryOutcome::ALL.iter().map(|v| v.as_str()));
        for value in values {
            assert!(
                doc.contains(&format!("`{value}`")),
                "docs/reference/metrics.md lacks the label value {value}"
            );
        }
    }
}
