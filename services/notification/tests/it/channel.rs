//! Delivery channels against real local servers: an HTTP server that records what it is sent
//! and answers as told, `openssl dgst` as an independent webhook-signature check, and Python's
//! aiosmtpd as the SMTP sink.

use std::collections::HashMap;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use certmesh_notification::channel::{
    ChannelKind, ChannelSettings, DeliveryError, Notice, Sender, Severity,
};
use chrono::{DateTime, TimeZone, Utc};
use serde_json::{Value, json};
use uuid::Uuid;

/// One request as the server saw it.
#[derive(Clone, Debug)]
pub(crate) struct Seen {
    method: String,
    path: String,
    headers: HashMap<String, String>,
    pub(crate) body: Vec<u8>,
}

impl Seen {
    pub(crate) fn header(&self, name: &str) -> &str {
        self.headers.get(name).map_or("", String::as_str)
    }

    pub(crate) fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("the body is JSON")
    }
}

/// What the server answers with.
#[derive(Clone, Debug, Default)]
pub(crate) enum Reply {
    /// `ok`.
    #[default]
    Ok,
    /// The request's path and body, like a careless server echoing its input.
    Echo,
    /// This text.
    Text(String),
}

/// A recording HTTP server on 127.0.0.1 with a programmable answer.
#[derive(Clone, Default)]
pub(crate) struct Hook {
    seen: Arc<Mutex<Vec<Seen>>>,
    status: Arc<AtomicU16>,
    reply: Arc<Mutex<Reply>>,
    delay_ms: Arc<AtomicU64>,
}

impl Hook {
    pub(crate) async fn start() -> (Hook, SocketAddr) {
        let hook = Hook::default();
        hook.status.store(200, Ordering::SeqCst);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let app = Router::new().fallback(record).with_state(hook.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        (hook, addr)
    }

    pub(crate) fn answer(&self, status: u16, reply: Reply) {
        self.status.store(status, Ordering::SeqCst);
        *self.reply.lock().expect("lock") = reply;
    }

    pub(crate) fn requests(&self) -> Vec<Seen> {
        self.seen.lock().expect("lock").clone()
    }

    fn last(&self) -> Seen {
        self.requests().pop().expect("a request arrived")
    }
}

async fn record(
    State(hook): State<Hook>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, String) {
    let headers = headers
        .iter()
        .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
        .collect();
    let seen = Seen {
        method: method.to_string(),
        path: uri.to_string(),
        headers,
        body: body.to_vec(),
    };
    let reply = hook.reply.lock().expect("lock").clone();
    let text = match reply {
        Reply::Ok => "ok".to_owned(),
        Reply::Echo => format!(
            "you sent {} with {}",
            seen.path,
            String::from_utf8_lossy(&seen.body)
        ),
        Reply::Text(text) => text,
    };
    hook.seen.lock().expect("lock").push(seen);
    tokio::time::sleep(Duration::from_millis(hook.delay_ms.load(Ordering::SeqCst))).await;
    let status = StatusCode::from_u16(hook.status.load(Ordering::SeqCst)).expect("status");
    (status, text)
}

fn notice() -> Notice {
    Notice {
        event_id: Uuid::from_u128(0x0193_1c00_0000_7000_8000_00c0_ffee_0042),
        event_type: "certificate.expiring".to_owned(),
        tenant: "acme".to_owned(),
        aggregate_id: "serial:0a1b2c".to_owned(),
        occurred_at: at(1_740_830_400),
        severity: Severity::Critical,
        summary: "Certificate www.example.com expires in 2 days.".to_owned(),
        payload: json!({"days_left": 2, "names": ["www.example.com"]}),
    }
}

fn at(unix: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(unix, 0).single().expect("time")
}

fn settings(kind: ChannelKind, config: Value, secrets: Value) -> ChannelSettings {
    ChannelSettings::parse(kind, &config, &secrets).expect("valid settings")
}

fn sender() -> Sender {
    Sender::new(Duration::from_secs(5))
}

const HMAC_SECRET: &str = "whsec-planted-0123456789";

/// The signature as `openssl dgst` computes it, independently of certmesh's crypto.
pub(crate) fn openssl_hmac(secret: &str, signed: &[u8]) -> String {
    let mut child = Command::new("openssl")
        .args(["dgst", "-sha256", "-hmac", secret])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("openssl must be installed for this test");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(signed)
        .expect("write");
    let out = child.wait_with_output().expect("openssl ran");
    assert!(out.status.success(), "openssl dgst failed");
    // "SHA2-256(stdin)= <hex>" (OpenSSL 3) or "(stdin)= <hex>" (1.1).
    let text = String::from_utf8(out.stdout).expect("utf-8");
    text.split_whitespace().last().expect("a digest").to_owned()
}

#[tokio::test]
async fn webhook_posts_signed_json_that_openssl_verifies() {
    let (hook, addr) = Hook::start().await;
    let ch = settings(
        ChannelKind::Webhook,
        json!({ "url": format!("http://{addr}/hooks/certmesh?team=pki") }),
        json!({ "hmac_secret": HMAC_SECRET }),
    );
    let n = notice();
    let now = at(1_740_830_405);
    sender().deliver(&ch, &n, now).await.expect("delivered");

    let seen = hook.last();
    assert_eq!(
        (seen.method.as_str(), seen.path.as_str()),
        ("POST", "/hooks/certmesh?team=pki")
    );
    assert_eq!(seen.header("content-type"), "application/json");
    assert!(seen.header("user-agent").starts_with("certmesh/"));
    assert_eq!(seen.header("x-certmesh-event-id"), n.event_id.to_string());
    assert_eq!(seen.header("x-certmesh-event-type"), "certificate.expiring");
    assert_eq!(seen.header("x-certmesh-timestamp"), "1740830405");

    let mut signed = b"1740830405.".to_vec();
    signed.extend_from_slice(&seen.body);
    let expected = format!("v1={}", openssl_hmac(HMAC_SECRET, &signed));
    assert_eq!(seen.header("x-certmesh-signature"), expected);

    let body = seen.json();
    assert_eq!(body["id"], n.event_id.to_string());
    assert_eq!(body["type"], "certificate.expiring");
    assert_eq!(body["tenant"], "acme");
    assert_eq!(body["aggregate_id"], "serial:0a1b2c");
    assert_eq!(body["occurred_at"], "2025-03-01T12:00:00.000Z");
    assert_eq!(body["severity"], "critical");
    assert_eq!(body["summary"], n.summary);
    assert_eq!(body["data"], n.payload);
    assert!(!String::from_utf8_lossy(&seen.body).contains(HMAC_SECRET));
}

async fn webhook_answering(status: u16) -> Result<(), DeliveryError> {
    let (hook, addr) = Hook::start().await;
    hook.answer(status, Reply::Echo);
    let ch = settings(
        ChannelKind::Webhook,
        json!({ "url": format!("http://{addr}/h") }),
        json!({ "hmac_secret": HMAC_SECRET }),
    );
    sender().deliver(&ch, &notice(), at(1_740_830_405)).await
}

#[tokio::test]
async fn http_statuses_decide_retryability() {
    for status in [200, 202, 204] {
        webhook_answering(status).await.expect("2xx is delivered");
    }
    for status in [408, 425, 429, 500, 502, 503] {
        let err = webhook_answering(status).await.expect_err("not delivered");
        assert!(err.retryable, "{status} should be retryable");
        assert!(
            err.detail.starts_with(&format!("HTTP {status}")),
            "{}",
            err.detail
        );
    }
    for status in [301, 400, 401, 404, 410] {
        let err = webhook_answering(status).await.expect_err("not delivered");
        assert!(!err.retryable, "{status} should not be retryable");
        assert!(
            err.detail.contains("you sent /h"),
            "snippet kept: {}",
            err.detail
        );
    }
}

#[tokio::test]
async fn a_closed_port_is_retryable() {
    let port = free_port();
    let ch = settings(
        ChannelKind::Webhook,
        json!({ "url": format!("http://127.0.0.1:{port}/h") }),
        json!({ "hmac_secret": HMAC_SECRET }),
    );
    let err = sender()
        .deliver(&ch, &notice(), at(0))
        .await
        .expect_err("refused");
    assert!(err.retryable, "{}", err.detail);
    assert!(err.detail.contains("request failed"), "{}", err.detail);
}

#[tokio::test]
async fn a_slow_server_times_out_retryably() {
    let (hook, addr) = Hook::start().await;
    hook.delay_ms.store(3_000, Ordering::SeqCst);
    let ch = settings(
        ChannelKind::Webhook,
        json!({ "url": format!("http://{addr}/slow") }),
        json!({ "hmac_secret": HMAC_SECRET }),
    );
    let started = std::time::Instant::now();
    let err = Sender::new(Duration::from_millis(300))
        .deliver(&ch, &notice(), at(0))
        .await
        .expect_err("too slow");
    assert!(err.retryable);
    assert!(err.detail.contains("300 ms"), "{}", err.detail);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "the timeout was not applied"
    );
}

const SLACK_TOKEN: &str = "planted0slack0token0XYZ";

#[tokio::test]
async fn slack_posts_blocks_and_never_reveals_its_url() {
    let (hook, addr) = Hook::start().await;
    let url = format!(
        "http://127.0.0.1:{}/services/T01/B02/{SLACK_TOKEN}",
        addr.port()
    );
    let ch = settings(ChannelKind::Slack, json!({}), json!({ "url": url }));
    assert_eq!(ch.public_config(), json!({ "host": "127.0.0.1" }));
    sender()
        .deliver(&ch, &notice(), at(0))
        .await
        .expect("delivered");

    let seen = hook.last();
    assert_eq!(seen.path, format!("/services/T01/B02/{SLACK_TOKEN}"));
    assert_eq!(seen.header("content-type"), "application/json");
    let body = seen.json();
    assert!(
        body["text"]
            .as_str()
            .expect("text")
            .contains("expires in 2 days")
    );
    assert_eq!(body["blocks"][0]["type"], "section");
    assert_eq!(body["blocks"][0]["text"]["type"], "mrkdwn");
    assert!(
        body["blocks"][0]["text"]["text"]
            .as_str()
            .expect("text")
            .contains("Critical")
    );
    let context = body["blocks"][1]["elements"][0]["text"]
        .as_str()
        .expect("context");
    assert!(
        context.contains("certificate.expiring")
            && context.contains(&notice().event_id.to_string())
    );

    // The server echoes the token-bearing path back: the detail must not carry it.
    hook.answer(404, Reply::Echo);
    let err = sender()
        .deliver(&ch, &notice(), at(0))
        .await
        .expect_err("404");
    assert!(!err.retryable);
    assert!(!err.detail.contains(SLACK_TOKEN), "{}", err.detail);
    assert!(!err.detail.contains("planted"), "{}", err.detail);
    assert!(
        err.detail.contains("you sent REDACTED with"),
        "{}",
        err.detail
    );
    assert!(err.detail.starts_with("HTTP 404"), "{}", err.detail);
    assert!(!format!("{ch:?} {err:?}").contains("planted"));
}

#[tokio::test]
async fn teams_posts_an_adaptive_card() {
    let (hook, addr) = Hook::start().await;
    hook.answer(202, Reply::Ok);
    let url = format!(
        "http://localhost:{}/workflows/abc/triggers/manual?sig=planted0sig0value",
        addr.port()
    );
    let ch = settings(ChannelKind::Teams, Value::Null, json!({ "url": url }));
    sender()
        .deliver(&ch, &notice(), at(0))
        .await
        .expect("202 is delivered");

    let body = hook.last().json();
    assert_eq!(body["type"], "message");
    let attachment = &body["attachments"][0];
    assert_eq!(
        attachment["contentType"],
        "application/vnd.microsoft.card.adaptive"
    );
    let card = &attachment["content"];
    assert_eq!(card["type"], "AdaptiveCard");
    assert_eq!(card["version"], "1.4");
    assert_eq!(
        card["$schema"],
        "http://adaptivecards.io/schemas/adaptive-card.json"
    );
    let blocks = card["body"].as_array().expect("blocks");
    assert!(blocks.iter().all(|b| b["type"] == "TextBlock"));
    assert!(blocks.iter().any(|b| b["text"] == notice().summary));

    hook.answer(500, Reply::Echo);
    let err = sender()
        .deliver(&ch, &notice(), at(0))
        .await
        .expect_err("500");
    assert!(err.retryable);
    assert!(!err.detail.contains("planted0sig0value"), "{}", err.detail);
    assert!(
        err.detail.contains("you sent REDACTED with"),
        "{}",
        err.detail
    );
}

const ROUTING_KEY: &str = "planted0routing0key0123456789abc";

#[tokio::test]
async fn pagerduty_triggers_a_deduplicated_event() {
    let (hook, addr) = Hook::start().await;
    hook.answer(202, Reply::Ok);
    let ch = settings(
        ChannelKind::PagerDuty,
        json!({ "url": format!("http://{addr}/v2/enqueue") }),
        json!({ "routing_key": ROUTING_KEY }),
    );
    let n = notice();
    sender()
        .deliver(&ch, &n, at(0))
        .await
        .expect("202 is delivered");

    let seen = hook.last();
    assert_eq!(seen.path, "/v2/enqueue");
    let body = seen.json();
    assert_eq!(body["routing_key"], ROUTING_KEY);
    assert_eq!(body["event_action"], "trigger");
    assert_eq!(body["dedup_key"], format!("certmesh-{}", n.event_id));
    let payload = &body["payload"];
    assert_eq!(payload["summary"], n.summary);
    assert_eq!(payload["source"], "certmesh");
    assert_eq!(payload["severity"], "critical");
    assert_eq!(payload["timestamp"], "2025-03-01T12:00:00.000Z");
    assert_eq!(payload["component"], "serial:0a1b2c");
    assert_eq!(payload["custom_details"], n.payload);

    // A 400 that quotes the routing key back must not leak it.
    let quoted = format!(
        r#"{{"status":"invalid event","errors":["routing_key {ROUTING_KEY} is unknown"]}}"#
    );
    hook.answer(400, Reply::Text(quoted));
    let err = sender().deliver(&ch, &n, at(0)).await.expect_err("400");
    assert!(!err.retryable);
    assert!(!err.detail.contains(ROUTING_KEY), "{}", err.detail);
    assert!(
        err.detail.contains("routing_key REDACTED is unknown"),
        "{}",
        err.detail
    );
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

/// The Python that has aiosmtpd: `CERTMESH_PYTHON` (the Makefile exports it), else the venvs
/// under `~/.cache/certmesh`. Panics when there is none: the email test never passes silently.
fn python_with_aiosmtpd() -> PathBuf {
    let candidates: Vec<PathBuf> = match std::env::var_os("CERTMESH_PYTHON") {
        Some(python) => vec![PathBuf::from(python)],
        None => venv_pythons(),
    };
    let has_aiosmtpd = |python: &Path| {
        Command::new(python)
            .args(["-c", "import aiosmtpd"])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    match candidates.iter().find(|p| has_aiosmtpd(p)) {
        Some(python) => python.clone(),
        None => panic!(
            "the email channel test needs Python with aiosmtpd (e2e/requirements.txt): run \
             `make tools` or set CERTMESH_PYTHON; tried {candidates:?}"
        ),
    }
}

fn venv_pythons() -> Vec<PathBuf> {
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default();
    let mut found: Vec<PathBuf> = std::fs::read_dir(home.join(".cache/certmesh"))
        .into_iter()
        .flatten()
        .flatten()
        .filter(|entry| entry.file_name().to_string_lossy().starts_with("venv-"))
        .map(|entry| entry.path().join("bin/python"))
        .filter(|python| python.exists())
        .collect();
    found.sort();
    found
}

/// aiosmtpd on a free loopback port, writing every message into the maildir `dir`.
pub(crate) async fn smtp_sink(dir: &Path) -> (tokio::process::Child, u16) {
    let python = python_with_aiosmtpd();
    let port = free_port();
    let mut child = tokio::process::Command::new(&python)
        .args(["-m", "aiosmtpd", "-n", "-l", &format!("127.0.0.1:{port}")])
        .args(["-c", "aiosmtpd.handlers.Mailbox"])
        .arg(dir)
        .kill_on_drop(true)
        .spawn()
        .expect("start aiosmtpd");
    for _ in 0..150 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return (child, port);
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("aiosmtpd exited early: {status}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("aiosmtpd did not listen on 127.0.0.1:{port} within 15 s");
}

pub(crate) async fn maildir_messages(dir: &Path) -> Vec<String> {
    for _ in 0..50 {
        let messages: Vec<String> = std::fs::read_dir(dir.join("new"))
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|entry| std::fs::read_to_string(entry.path()).ok())
            .collect();
        if !messages.is_empty() {
            return messages;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Vec::new()
}

#[tokio::test]
async fn email_arrives_at_a_real_smtp_sink() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let maildir = tmp.path().join("maildir");
    let (mut sink, port) = smtp_sink(&maildir).await;
    let ch = settings(
        ChannelKind::Email,
        json!({
            "smtp_host": "127.0.0.1", "smtp_port": port, "tls": "none",
            "from": "certmesh <alerts@certmesh.test>",
            "to": ["ops@example.test", "Security <sec@example.test>"],
        }),
        json!({}),
    );
    let n = notice();
    sender()
        .deliver(&ch, &n, at(1_740_830_405))
        .await
        .expect("sent");

    let messages = maildir_messages(&maildir).await;
    sink.kill().await.expect("stop aiosmtpd");
    assert_eq!(messages.len(), 1, "exactly one message in the maildir");
    let message = &messages[0];
    assert!(
        message.contains(&format!("Subject: [certmesh] {}", n.summary)),
        "{message}"
    );
    assert!(
        message.contains(&format!("X-Certmesh-Event-Id: {}", n.event_id)),
        "{message}"
    );
    assert!(
        message.contains("X-RcptTo: ops@example.test, sec@example.test"),
        "{message}"
    );
    assert!(
        message.contains("X-MailFrom: alerts@certmesh.test"),
        "{message}"
    );
    assert!(message.contains("certificate.expiring") && message.contains("\"days_left\": 2"));
}

#[tokio::test]
async fn email_to_a_closed_port_is_retryable_and_hides_the_password() {
    let ch = settings(
        ChannelKind::Email,
        json!({
            "smtp_host": "localhost", "smtp_port": free_port(), "tls": "none",
            "from": "alerts@certmesh.test", "to": ["ops@example.test"], "username": "alerts",
        }),
        json!({ "password": "planted-smtp-password" }),
    );
    let err = sender()
        .deliver(&ch, &notice(), at(0))
        .await
        .expect_err("refused");
    assert!(err.retryable, "{}", err.detail);
    assert!(err.detail.starts_with("SMTP"), "{}", err.detail);
    assert!(!format!("{err:?} {ch:?}").contains("planted"));
}
