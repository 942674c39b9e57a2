//! The notification pipeline end to end: 20,000 outbox events relayed to one webhook channel
//! (one delivery each) and sent, HMAC-signed, to a local HTTP receiver.
//!
//! Backends: SQLite and, when `CERTMESH_TEST_DATABASE_URL` is set, a fresh PostgreSQL database
//! (the store's test helpers make and drop it). Seeding the outbox is timed apart from the
//! figures. Prints events/s relayed, deliveries/s sent, and the machine.
//! `cargo bench -p certmesh-notification --bench relay` (`make bench`).

use std::fs;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use certmesh_crypto::keys::Kek;
use certmesh_kit::clock::{Clock, SystemClock};
use certmesh_kit::{auth::AuthContext, rbac::Role, secret::Secret};
use certmesh_notification::admin::NewChannel;
use certmesh_notification::{Config, Deps, Notifier};
use certmesh_store::outbox::{self, NewEvent};
use certmesh_store::testing::{self, DATABASE_URL_ENV, TestDb};
use certmesh_store::{TenantId, tenants};
use serde_json::json;

const EVENTS: usize = 20_000;

fn machine() -> String {
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let model = fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, m)| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    format!("{cpus} CPU(s), {model}")
}

/// A local HTTP receiver answering 200 to everything; counts requests.
async fn receiver() -> (std::net::SocketAddr, Arc<AtomicU64>) {
    let count = Arc::new(AtomicU64::new(0));
    let seen = count.clone();
    let app = axum::Router::new().fallback(move || {
        let seen = seen.clone();
        async move {
            seen.fetch_add(1, Ordering::Relaxed);
            "ok"
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, count)
}

async fn run(db: TestDb, label: &str) {
    let clock = Arc::new(SystemClock);
    let tenant: TenantId = tenants::ensure(db.owner(), "bench", clock.now())
        .await
        .expect("tenant");
    let auth = AuthContext {
        tenant_id: tenant,
        principal: "bench".into(),
        principal_id: uuid::Uuid::new_v4(),
        token_id: uuid::Uuid::new_v4(),
        roles: vec![Role::Admin],
        expires_at: None,
        request_id: "bench".into(),
    };
    let mut config = Config::new();
    config.concurrency = 64;
    let n = Notifier::new(Deps {
        store: db.store.clone(),
        clock: clock.clone(),
        kek: Arc::new(Kek::generate().expect("kek")),
        config,
        metrics: certmesh_kit::metrics::Metrics::new(),
    });
    let (addr, received) = receiver().await;
    let (channel, _) = n
        .create_channel(
            &auth,
            NewChannel {
                name: "sink".into(),
                kind: "webhook".into(),
                config: json!({"url": format!("http://{addr}/hook")}),
                secrets: Secret::new(json!({"hmac_secret": "bench-secret-0123456789"})),
            },
        )
        .await
        .expect("channel");
    n.create_rule(&auth, "all", &["*".into()], &[channel.id.to_string()])
        .await
        .expect("rule");
    let events: Vec<NewEvent> = (0..EVENTS)
        .map(|i| NewEvent {
            tenant_id: tenant,
            event_type: "ca.issue".into(),
            aggregate_id: format!("certificate:{i:x}"),
            payload: json!({"serial": format!("{i:x}"), "profile": "web"}),
            created_at: clock.now(),
        })
        .collect();
    let tx = db.store.begin_tenant(tenant).await.expect("tx");
    outbox::append_many(&tx, &events).await.expect("seed");
    tx.commit().await.expect("commit");

    let start = Instant::now();
    let mut queued = 0;
    loop {
        let made = n.relay().await.expect("relay");
        if made == 0 {
            break;
        }
        queued += made;
    }
    let relay = start.elapsed();
    let start = Instant::now();
    while n.send_due().await.expect("send") > 0 {}
    let send = start.elapsed();
    let got = received.load(Ordering::Relaxed);
    println!(
        "{label}: relayed {queued} events in {:.2} s ({:.0}/s); sent {got} webhooks in {:.2} s ({:.0}/s)",
        relay.as_secs_f64(),
        queued as f64 / relay.as_secs_f64(),
        send.as_secs_f64(),
        got as f64 / send.as_secs_f64(),
    );
}

#[tokio::main]
async fn main() {
    rustls::crypto::ring::default_provider()
        .install_default()
        .ok();
    println!(
        "notification relay bench: {EVENTS} events, 1 webhook channel, 64 in flight; {}",
        machine()
    );
    run(testing::sqlite().await, "SQLite").await;
    if std::env::var_os(DATABASE_URL_ENV).is_some() {
        run(testing::postgres().await, "PostgreSQL").await;
    } else {
        println!("PostgreSQL: skipped ({DATABASE_URL_ENV} unset)");
    }
}
