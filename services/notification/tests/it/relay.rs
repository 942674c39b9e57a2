//! The notification role against a real store (SQLite and PostgreSQL under row-level
//! security), a recording HTTP server and a real SMTP sink, with an injected clock: expiry
//! alerts are raised once per certificate, threshold and channel even across a restart;
//! failing webhooks are retried, dead-lettered, requeued and delivered; secrets stay sealed;
//! bad input changes nothing.

use std::sync::Arc;

use certmesh_crypto::keys::Kek;
use certmesh_kit::clock::{Clock, TestClock};
use certmesh_kit::{auth::AuthContext, metrics::Metrics, rbac::Role, secret::Secret};
use certmesh_notification::admin::NewChannel;
use certmesh_notification::channel::webhook_signature;
use certmesh_notification::{Config, Deps, Notifier, NotifyError};
use certmesh_store::discovery::{self, Sighting};
use certmesh_store::notification::{self as store, delivery_state};
use certmesh_store::testing::{TestDb, each_backend};
use certmesh_store::{TenantId, outbox};
use chrono::{DateTime, Duration, Utc};
use serde_json::{Value, json};

use crate::channel::{Hook, Reply, maildir_messages, openssl_hmac, smtp_sink};

const SECRET: &str = "whsec-relay-planted-9876543210";

fn t0() -> DateTime<Utc> {
    DateTime::from_timestamp(1_800_000_000, 0).expect("time")
}

fn admin(tenant: TenantId) -> AuthContext {
    AuthContext {
        tenant_id: tenant,
        principal: "alice".into(),
        principal_id: uuid::Uuid::new_v4(),
        token_id: uuid::Uuid::new_v4(),
        roles: vec![Role::Admin],
        expires_at: None,
        request_id: "test".into(),
    }
}

async fn tenant(db: &TestDb, name: &str) -> TenantId {
    certmesh_store::tenants::ensure(db.owner(), name, t0())
        .await
        .expect("tenant")
}

fn notifier(db: &TestDb, clock: &TestClock, kek: &Arc<Kek>, max_attempts: u32) -> Notifier {
    notifier_with(db, clock, kek, max_attempts, Metrics::new())
}

/// [`notifier`], counting into `metrics`.
fn notifier_with(
    db: &TestDb,
    clock: &TestClock,
    kek: &Arc<Kek>,
    max_attempts: u32,
    metrics: Arc<Metrics>,
) -> Notifier {
    let mut config = Config::new();
    config.max_attempts = max_attempts;
    config.retry_base = Duration::seconds(30);
    config.timeout = std::time::Duration::from_secs(5);
    Notifier::new(Deps {
        store: db.store.clone(),
        clock: Arc::new(clock.clone()),
        kek: kek.clone(),
        config,
        metrics,
    })
}

fn channel(name: &str, kind: &str, config: Value, secrets: Value) -> NewChannel {
    NewChannel {
        name: name.into(),
        kind: kind.into(),
        config,
        secrets: Secret::new(secrets),
    }
}

async fn webhook(n: &Notifier, auth: &AuthContext, addr: std::net::SocketAddr) -> uuid::Uuid {
    n.create_channel(
        auth,
        channel(
            "ops-hook",
            "webhook",
            json!({"url": format!("http://{addr}/certmesh")}),
            json!({"hmac_secret": SECRET}),
        ),
    )
    .await
    .expect("webhook channel")
    .0
    .id
}

/// A find in the inventory whose notAfter is `not_after`.
async fn found(db: &TestDb, t: TenantId, not_after: DateTime<Utc>) {
    let tx = db.store.begin_tenant(t).await.expect("tx");
    let s = Sighting {
        tenant_id: t,
        fingerprint_sha256: "ab".repeat(32),
        location: "tls://10.0.0.5:443#shop.internal".into(),
        source: "network".into(),
        agent_id: None,
        target_id: None,
        serial: "0a1b".into(),
        subject: "CN=shop.internal".into(),
        issuer: "CN=Old Corp CA".into(),
        sans: vec!["shop.internal".into()],
        not_before: t0() - Duration::days(300),
        not_after,
        key_type: "rsa".into(),
        key_bits: 2048,
        signature_algorithm: "sha256WithRSAEncryption".into(),
        tls_version: "TLSv1.2".into(),
        self_signed: false,
        is_ca: false,
        weaknesses: Vec::new(),
        status: "unmanaged".into(),
        certificate_der: vec![0x30, 0x00],
        seen_at: t0(),
    };
    discovery::record_sighting(&tx, &s).await.expect("record");
    tx.commit().await.expect("commit");
}

async fn mail_count(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir.join("new")).map_or(0, |d| d.count())
}

#[tokio::test]
async fn an_expiring_certificate_alerts_once_per_channel_across_a_restart() {
    let mail = tempfile::tempdir().expect("maildir");
    for sub in ["tmp", "new", "cur"] {
        std::fs::create_dir(mail.path().join(sub)).expect("maildir layout");
    }
    let (_sink, smtp_port) = smtp_sink(mail.path()).await;
    let (hook, addr) = Hook::start().await;
    let mut mails_before = 0;
    for db in each_backend().await {
        let b = db.backend();
        let before = hook.requests().len();
        let acme = tenant(&db, "acme").await;
        let clock = TestClock::at(t0());
        let kek = Arc::new(Kek::generate().expect("kek"));
        let auth = admin(acme);
        let a = notifier(&db, &clock, &kek, 5);
        let hook_id = webhook(&a, &auth, addr).await;
        let (email, _) = a
            .create_channel(
                &auth,
                channel(
                    "ops-mail",
                    "email",
                    json!({"smtp_host": "127.0.0.1", "smtp_port": smtp_port, "tls": "none",
                           "from": "certmesh@example.test", "to": ["oncall@example.test"]}),
                    json!({}),
                ),
            )
            .await
            .expect("email channel");
        a.create_rule(
            &auth,
            "expiry",
            &["certificate.expiring".into()],
            &[hook_id.to_string(), email.id.to_string()],
        )
        .await
        .expect("rule");
        found(&db, acme, t0() + Duration::days(7) - Duration::hours(1)).await;

        assert_eq!(a.watch_expiry().await.expect("watch"), 1, "{b:?}");
        assert_eq!(
            a.watch_expiry().await.expect("watch"),
            0,
            "{b:?}: raised once"
        );
        assert_eq!(
            a.relay().await.expect("relay"),
            2,
            "{b:?}: one delivery per channel"
        );
        assert_eq!(a.send_due().await.expect("send"), 2, "{b:?}");

        // A restart: a new process on the same store and key raises and sends nothing again.
        drop(a);
        let restarted = notifier(&db, &clock, &kek, 5);
        assert_eq!(restarted.watch_expiry().await.expect("watch"), 0, "{b:?}");
        assert_eq!(restarted.relay().await.expect("relay"), 0, "{b:?}");
        assert_eq!(restarted.send_due().await.expect("send"), 0, "{b:?}");

        let got: Vec<_> = hook.requests()[before..].to_vec();
        let alerts: Vec<_> = got
            .iter()
            .filter(|r| r.header("x-certmesh-event-type") == "certificate.expiring")
            .collect();
        assert_eq!(alerts.len(), 1, "{b:?}: exactly one webhook alert");
        let alert = alerts[0];
        let body = alert.json();
        assert_eq!(body["data"]["threshold_days"], 7, "{b:?}");
        assert_eq!(body["severity"], "warning", "{b:?}");
        let ts: i64 = alert
            .header("x-certmesh-timestamp")
            .parse()
            .expect("timestamp");
        let mut signed = format!("{ts}.").into_bytes();
        signed.extend_from_slice(&alert.body);
        assert_eq!(
            alert.header("x-certmesh-signature"),
            format!("v1={}", openssl_hmac(SECRET, &signed)),
            "{b:?}: the signature verifies independently"
        );
        assert_eq!(
            alert.header("x-certmesh-signature"),
            webhook_signature(SECRET.as_bytes(), ts, &alert.body),
            "{b:?}"
        );
        let mails = maildir_messages(mail.path()).await;
        let log = restarted
            .list_deliveries(&auth, "", "", "", 0)
            .await
            .expect("log");
        assert_eq!(
            mails.len(),
            mails_before + 1,
            "{b:?}: exactly one email; {log:?}"
        );
        let newest = mails
            .iter()
            .find(|m| m.contains(&body["id"].as_str().expect("id").to_string()))
            .expect("the alert email carries the event id");
        assert!(newest.contains("shop.internal"), "{b:?}");
        mails_before = mails.len();

        // The next threshold is its own alert.
        clock.advance(Duration::days(6));
        assert_eq!(
            restarted.watch_expiry().await.expect("watch"),
            1,
            "{b:?}: 1-day alert"
        );
        restarted.relay().await.expect("relay");
        restarted.send_due().await.expect("send");
        let critical = hook.requests()[before..]
            .iter()
            .filter(|r| r.header("x-certmesh-event-type") == "certificate.expiring")
            .count();
        let log = restarted
            .list_deliveries(&auth, "", "", "", 0)
            .await
            .expect("log");
        assert_eq!(critical, 2, "{b:?}: {log:?}");
        assert_eq!(mail_count(mail.path()).await, mails_before + 1, "{b:?}");
        mails_before += 1;
    }
}

#[tokio::test]
async fn a_failing_webhook_is_retried_then_dead_lettered_then_requeued_and_delivered() {
    let (hook, addr) = Hook::start().await;
    for db in each_backend().await {
        let b = db.backend();
        hook.answer(500, Reply::Text("upstream on fire".into()));
        let before = hook.requests().len();
        let acme = tenant(&db, "acme").await;
        let clock = TestClock::at(t0());
        let kek = Arc::new(Kek::generate().expect("kek"));
        let auth = admin(acme);
        let metrics = Metrics::new();
        let n = notifier_with(&db, &clock, &kek, 3, metrics.clone());
        let id = webhook(&n, &auth, addr).await;
        n.create_rule(&auth, "ca-events", &["ca.*".into()], &[id.to_string()])
            .await
            .expect("rule");
        let deliveries = |outcome: &str| {
            let labels = [("channel_kind", "webhook"), ("outcome", outcome)];
            metrics.sample("certmesh_notification_deliveries_total", &labels)
        };
        let tx = db.store.begin_tenant(acme).await.expect("tx");
        let event = outbox::append(
            &tx,
            acme,
            "ca.issue",
            "certificate:0c",
            json!({"serial": "0c"}),
            t0(),
        )
        .await
        .expect("event");
        outbox::append(
            &tx,
            acme,
            "fleet.agent.enrolled",
            "agent:1",
            json!({}),
            t0(),
        )
        .await
        .expect("unrouted event");
        tx.commit().await.expect("commit");
        // The relay finds the events five seconds old, then none left.
        clock.advance(Duration::seconds(5));
        assert_eq!(
            n.relay().await.expect("relay"),
            1,
            "{b:?}: only the rule's events"
        );
        let pending = metrics.sample("certmesh_outbox_pending", &[]);
        assert!(pending >= 2.0, "{b:?}: {}", metrics.render());
        assert_eq!(
            metrics.sample("certmesh_outbox_lag_seconds", &[]),
            5.0,
            "{b:?}"
        );
        n.relay().await.expect("relay again");
        assert_eq!(metrics.sample("certmesh_outbox_pending", &[]), 0.0, "{b:?}");
        assert_eq!(
            metrics.sample("certmesh_outbox_lag_seconds", &[]),
            0.0,
            "{b:?}"
        );

        let sent = |k: usize| hook.requests().len() - before == k;
        n.send_due().await.expect("attempt 1");
        assert!(sent(1), "{b:?}");
        n.send_due().await.expect("not due yet");
        assert!(sent(1), "{b:?}: the retry waits for its backoff");
        clock.advance(Duration::seconds(31));
        n.send_due().await.expect("attempt 2");
        assert!(sent(2), "{b:?}");
        clock.advance(Duration::seconds(61));
        n.send_due().await.expect("attempt 3");
        assert!(sent(3), "{b:?}");
        let dead = n
            .list_deliveries(&auth, "dead", "", "", 0)
            .await
            .expect("list");
        assert_eq!(dead.len(), 1, "{b:?}: dead after 3 attempts");
        assert_eq!(dead[0].attempts, 3, "{b:?}");
        assert!(
            dead[0].last_error.contains("500"),
            "{b:?}: {}",
            dead[0].last_error
        );
        clock.advance(Duration::hours(2));
        n.send_due().await.expect("pass");
        assert!(sent(3), "{b:?}: dead letters are not retried");
        assert_eq!(
            (
                deliveries("failed"),
                deliveries("dead"),
                deliveries("delivered")
            ),
            (2.0, 1.0, 0.0),
            "{b:?}: two retried attempts, then a dead letter: {}",
            metrics.render()
        );

        hook.answer(200, Reply::Ok);
        let requeued = n
            .requeue(&auth, &dead[0].id.to_string())
            .await
            .expect("requeue");
        assert_eq!(
            (requeued.state.as_str(), requeued.attempts),
            (delivery_state::PENDING, 0),
            "{b:?}"
        );
        n.send_due().await.expect("delivered");
        assert!(sent(4), "{b:?}");
        let ids: Vec<String> = hook.requests()[before..]
            .iter()
            .map(|r| r.header("x-certmesh-event-id").to_owned())
            .collect();
        assert!(
            ids.iter().all(|i| *i == event.to_string()),
            "{b:?}: one event id to dedupe on"
        );
        let delivered = n
            .list_deliveries(&auth, "delivered", "", "", 0)
            .await
            .expect("list");
        assert_eq!(delivered.len(), 1, "{b:?}");
        assert_eq!(deliveries("delivered"), 1.0, "{b:?}");
        let again = n.requeue(&auth, &dead[0].id.to_string()).await;
        assert!(
            matches!(again, Err(NotifyError::DeliveryNotDead { .. })),
            "{b:?}"
        );
        let unknown = n.requeue(&auth, &uuid::Uuid::new_v4().to_string()).await;
        assert!(
            matches!(unknown, Err(NotifyError::DeliveryNotFound(_))),
            "{b:?}"
        );

        // A refusal that will repeat (4xx) is dead at once.
        hook.answer(400, Reply::Text("bad payload".into()));
        let tx = db.store.begin_tenant(acme).await.expect("tx");
        outbox::append(&tx, acme, "ca.rotate", "ca:1", json!({}), clock.now())
            .await
            .expect("event");
        tx.commit().await.expect("commit");
        n.relay().await.expect("relay");
        n.send_due().await.expect("send");
        let dead = n
            .list_deliveries(&auth, "dead", "", "", 0)
            .await
            .expect("list");
        assert_eq!((dead.len(), dead[0].attempts), (1, 1), "{b:?}");
        assert_eq!(
            (deliveries("failed"), deliveries("dead")),
            (2.0, 2.0),
            "{b:?}"
        );
    }
}

#[tokio::test]
async fn secrets_are_sealed_at_rest_and_bad_input_changes_nothing() {
    let (hook, addr) = Hook::start().await;
    for db in each_backend().await {
        let b = db.backend();
        let acme = tenant(&db, "acme").await;
        let clock = TestClock::at(t0());
        let kek = Arc::new(Kek::generate().expect("kek"));
        let auth = admin(acme);
        let n = notifier(&db, &clock, &kek, 5);
        for (kind, config, secrets) in [
            ("carrier-pigeon", json!({}), json!({})),
            (
                "webhook",
                json!({"url": format!("http://{addr}/x")}),
                json!({}),
            ),
            (
                "webhook",
                json!({"url": "ftp://example.test/"}),
                json!({"hmac_secret": SECRET}),
            ),
            ("pagerduty", json!({}), json!({"routing_key": "short"})),
        ] {
            let refused = n
                .create_channel(&auth, channel("bad", kind, config, secrets))
                .await;
            assert!(
                matches!(refused, Err(NotifyError::Channel(_))),
                "{b:?}: {kind}"
            );
        }
        let tx = db.store.begin_tenant(acme).await.expect("tx");
        assert!(
            store::list_channels(&tx, acme)
                .await
                .expect("list")
                .is_empty(),
            "{b:?}"
        );
        drop(tx);

        let id = webhook(&n, &auth, addr).await;
        let dup = n
            .create_channel(
                &auth,
                channel(
                    "ops-hook",
                    "webhook",
                    json!({"url": format!("http://{addr}/y")}),
                    json!({"hmac_secret": SECRET}),
                ),
            )
            .await;
        assert!(matches!(dup, Err(NotifyError::ChannelExists(_))), "{b:?}");
        let tx = db.store.begin_tenant(acme).await.expect("tx");
        let rows = store::list_channels(&tx, acme).await.expect("list");
        drop(tx);
        assert_eq!(rows.len(), 1, "{b:?}");
        let sealed = &rows[0].sealed_secrets;
        assert!(
            !sealed.windows(SECRET.len()).any(|w| w == SECRET.as_bytes()),
            "{b:?}: the secret is not in the row"
        );
        let listed = n.list_channels(&auth).await.expect("list");
        let public = listed[0].1.to_string();
        assert!(
            public.contains("/certmesh") && !public.contains(SECRET),
            "{b:?}: {public}"
        );
        let other_key = notifier(&db, &clock, &Arc::new(Kek::generate().expect("kek")), 5);
        let unreadable = other_key.list_channels(&auth).await.expect("list");
        assert!(
            unreadable[0].1.get("error").is_some(),
            "{b:?}: another key cannot open them"
        );

        for (types, channels, why) in [
            (vec![], vec![id.to_string()], "no event types"),
            (vec!["CA.*".to_owned()], vec![id.to_string()], "bad pattern"),
            (
                vec!["ca.*".to_owned()],
                vec![uuid::Uuid::new_v4().to_string()],
                "unknown channel",
            ),
            (vec!["ca.*".to_owned()], vec![], "no channels"),
        ] {
            let refused = n.create_rule(&auth, "r", &types, &channels).await;
            assert!(
                matches!(refused, Err(NotifyError::RuleInvalid(_))),
                "{b:?}: {why}"
            );
        }
        assert!(
            n.list_rules(&auth).await.expect("rules").is_empty(),
            "{b:?}"
        );

        hook.answer(200, Reply::Ok);
        let before = hook.requests().len();
        let (event, failure) = n.test_channel(&auth, &id.to_string()).await.expect("test");
        assert_eq!(failure, None, "{b:?}");
        let got = hook.requests();
        assert_eq!(got.len(), before + 1, "{b:?}");
        assert_eq!(
            got[before].header("x-certmesh-event-type"),
            "notification.test",
            "{b:?}"
        );
        assert_eq!(
            got[before].header("x-certmesh-event-id"),
            event.to_string(),
            "{b:?}"
        );

        let globex = tenant(&db, "globex").await;
        let theirs = n.list_channels(&admin(globex)).await.expect("list");
        assert!(theirs.is_empty(), "{b:?}: another tenant sees no channel");
        let cross = n.test_channel(&admin(globex), &id.to_string()).await;
        assert!(
            matches!(cross, Err(NotifyError::ChannelNotFound(_))),
            "{b:?}"
        );
    }
}
