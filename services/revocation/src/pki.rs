//! The PKI listener: plain HTTP, as relying parties expect (RFC 5280 §4.2.1.13 and RFC 6960
//! Appendix A name HTTP URLs; the responses are signed, so TLS adds nothing to their trust).
//!
//! - `GET|HEAD /.well-known/pki/crl/{ca_key_id}/{shard}`: the CRL, DER, `application/pkix-crl`,
//!   with `ETag` (`If-None-Match` → 304), `Last-Modified`, `Expires` (its nextUpdate) and
//!   `Cache-Control`.
//! - `POST /.well-known/pki/ocsp` (`application/ocsp-request`) and
//!   `GET /.well-known/pki/ocsp/{base64 request}`: OCSP. Cacheable GET answers carry the RFC 5019
//!   §6 caching headers.
//! - `GET /healthz`: `ok`.
//!
//! Transport mistakes (wrong method, wrong content type, oversized or unreadable body) get an
//! HTTP 4xx; a request that arrives but is not a valid OCSP request gets an OCSP
//! `malformedRequest`; an issuer certmesh does not run gets `unauthorized`.
//!
//! It runs on a runtime of its own with its own worker threads and its own database pool
//! ([`start`]), so a flood of API traffic does not slow OCSP answers down.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration as StdDuration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use bytes::Bytes;
use certmesh_crypto::{digest::sha256_hex, keys::KeyBackend, ocsp::MAX_REQUEST_LEN};
use certmesh_kit::{
    SharedClock,
    metrics::{Metrics, OcspLabels, OcspResult},
    pki::{CRL_PREFIX, OCSP_PATH},
};
use certmesh_store::{Store, crls};
use chrono::{DateTime, Utc};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::{
    Config,
    directory::Directory,
    ocsp::{Answer, Responders},
};

/// How long a client may take to send its request headers.
const HEADER_TIMEOUT: StdDuration = StdDuration::from_secs(10);
/// How long a served CRL's freshness is trusted before the store is asked again.
const CRL_RECHECK: StdDuration = StdDuration::from_secs(2);
/// How long HTTP caches may keep a CRL (a new one follows a revocation within seconds).
const CRL_MAX_AGE: i64 = 300;
/// Between polls for other replicas' revocations.
const POLL_EVERY: StdDuration = StdDuration::from_secs(1);
/// Between directory rebuilds (new CAs, rotations) and responder renewals.
const DIRECTORY_EVERY: StdDuration = StdDuration::from_secs(10);
/// Between passes re-signing cached OCSP answers past half their validity.
const REFRESH_EVERY: StdDuration = StdDuration::from_secs(30);

const OCSP_REQUEST: &str = "application/ocsp-request";
const OCSP_RESPONSE: &str = "application/ocsp-response";
const PKIX_CRL: &str = "application/pkix-crl";

/// What the listener needs.
#[derive(Debug)]
pub struct PkiOptions {
    /// Where to listen.
    pub listen: SocketAddr,
    /// Worker threads of its runtime.
    pub workers: usize,
    /// The database (a pool of its own is opened on the listener's runtime).
    pub database_url: String,
    /// Where CA keys are opened (responder certificates are signed with them).
    pub keys: Arc<dyn KeyBackend>,
    /// The clock.
    pub clock: SharedClock,
    /// The role's settings.
    pub config: Config,
    /// The process's metrics (OCSP requests are counted by result).
    pub metrics: Arc<Metrics>,
}

/// A running PKI listener.
#[derive(Debug)]
pub struct PkiHandle {
    /// The OCSP responder it serves from; the API side calls
    /// [`Responders::status_changed`] on it after each revocation.
    pub responders: Arc<Responders>,
    /// The bound address.
    pub addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl PkiHandle {
    /// Stops accepting, stops the maintenance tasks, and waits for the runtime to end.
    pub fn stop(mut self) {
        let _ = self.shutdown.send(true);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A served CRL, as cached in memory.
#[derive(Debug)]
struct ServedCrl {
    number: u64,
    der: Bytes,
    etag: String,
    this_update: DateTime<Utc>,
    next_update: DateTime<Utc>,
}

#[derive(Debug)]
struct State {
    responders: Arc<Responders>,
    directory: Arc<Directory>,
    store: Store,
    clock: SharedClock,
    metrics: Arc<Metrics>,
    crls: Mutex<HashMap<(uuid::Uuid, u32), CheckedCrl>>,
}

/// A served CRL and when its freshness was last checked.
type CheckedCrl = (Instant, Arc<ServedCrl>);

/// Starts the listener on a runtime of its own (`workers` threads named `pki-worker`), with
/// its own database pool, and returns once it is bound and its directory is loaded.
pub fn start(opts: PkiOptions) -> std::io::Result<PkiHandle> {
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let (shutdown, shutdown_rx) = watch::channel(false);
    let workers = opts.workers.max(1);
    let thread = std::thread::Builder::new()
        .name("pki".to_owned())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_multi_thread()
                .worker_threads(workers)
                .thread_name("pki-worker")
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                    return;
                }
            };
            runtime.block_on(run(opts, ready_tx, shutdown_rx));
        })?;
    match ready_rx.recv() {
        Ok(Ok((responders, addr))) => Ok(PkiHandle {
            responders,
            addr,
            shutdown,
            thread: Some(thread),
        }),
        Ok(Err(e)) => {
            let _ = thread.join();
            Err(e)
        }
        Err(_) => {
            let _ = thread.join();
            Err(std::io::Error::other("the PKI listener thread ended early"))
        }
    }
}

type Ready = std::sync::mpsc::Sender<std::io::Result<(Arc<Responders>, SocketAddr)>>;

async fn run(opts: PkiOptions, ready: Ready, mut shutdown: watch::Receiver<bool>) {
    let setup = async {
        let store = Store::connect(&opts.database_url)
            .await
            .map_err(std::io::Error::other)?;
        let directory = Arc::new(Directory::new(
            store.clone(),
            opts.keys.clone(),
            opts.clock.clone(),
            opts.config.responder_validity,
        ));
        if let Err(e) = directory.refresh().await {
            tracing::warn!(error = %e, "Loading the CA key directory failed; retrying in the background.");
        }
        directory.renew_responders().await;
        let responders = Arc::new(Responders::new(
            directory.clone(),
            store.clone(),
            opts.clock.clone(),
            opts.config.ocsp_validity,
            opts.config.ocsp_cache_entries,
        ));
        let listener = TcpListener::bind(opts.listen).await?;
        let addr = listener.local_addr()?;
        Ok::<_, std::io::Error>((store, directory, responders, listener, addr))
    };
    let (store, directory, responders, listener, addr) = match setup.await {
        Ok(parts) => parts,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    let _ = ready.send(Ok((responders.clone(), addr)));
    tracing::info!(%addr, "PKI listener (CRLs, OCSP) listening.");
    let state = Arc::new(State {
        responders: responders.clone(),
        directory,
        store,
        clock: opts.clock.clone(),
        metrics: opts.metrics.clone(),
        crls: Mutex::default(),
    });
    tokio::spawn(maintain(responders, shutdown.clone()));
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, _) = match accepted {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::warn!(error = %e, "PKI listener accept failed.");
                        tokio::time::sleep(StdDuration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let state = state.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| handle(state.clone(), req));
                    let conn = hyper::server::conn::http1::Builder::new()
                        .timer(TokioTimer::new())
                        .header_read_timeout(HEADER_TIMEOUT)
                        .keep_alive(true)
                        .serve_connection(TokioIo::new(stream), service);
                    let _ = conn.await;
                });
            }
            _ = shutdown.changed() => break,
        }
    }
    tracing::info!("PKI listener stopped.");
}

/// Background upkeep: other replicas' revocations, new CA keys, responder renewals, and
/// re-signing of cached answers.
async fn maintain(responders: Arc<Responders>, mut shutdown: watch::Receiver<bool>) {
    let mut poll = tokio::time::interval(POLL_EVERY);
    let mut directory = tokio::time::interval(DIRECTORY_EVERY);
    let mut refresh = tokio::time::interval(REFRESH_EVERY);
    for timer in [&mut poll, &mut directory, &mut refresh] {
        timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    }
    loop {
        tokio::select! {
            _ = poll.tick() => {
                if let Err(e) = responders.poll_changes().await {
                    tracing::warn!(error = %e, "Polling revocation changes failed.");
                }
            }
            _ = directory.tick() => {
                if let Err(e) = responders.directory().refresh().await {
                    tracing::warn!(error = %e, "Refreshing the CA key directory failed.");
                }
                responders.directory().renew_responders().await;
            }
            _ = refresh.tick() => {
                responders.refresh_due().await;
            }
            _ = shutdown.changed() => break,
        }
    }
}

type Reply = Response<Full<Bytes>>;

fn plain(status: StatusCode, text: &'static str) -> Reply {
    let mut r = Response::new(Full::new(Bytes::from_static(text.as_bytes())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

fn not_allowed(allow: &'static str) -> Reply {
    let mut r = plain(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
    r.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    r
}

fn http_date(t: DateTime<Utc>) -> HeaderValue {
    HeaderValue::from_str(&t.format("%a, %d %b %Y %H:%M:%S GMT").to_string())
        .unwrap_or_else(|_| HeaderValue::from_static("Thu, 01 Jan 1970 00:00:00 GMT"))
}

fn matches_etag(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().trim_start_matches("W/"))
        .any(|t| t == etag || t == "*")
}

async fn handle(state: Arc<State>, req: Request<Incoming>) -> Result<Reply, Infallible> {
    let path = req.uri().path().to_owned();
    let reply = if path == OCSP_PATH {
        match *req.method() {
            Method::POST => ocsp(&state, ocsp_post(&state, req).await, false),
            Method::GET => ocsp(
                &state,
                Err(plain(
                    StatusCode::BAD_REQUEST,
                    "GET needs the base64 request in the path\n",
                )),
                true,
            ),
            _ => not_allowed("GET, POST"),
        }
    } else if let Some(encoded) = path
        .strip_prefix(OCSP_PATH)
        .and_then(|rest| rest.strip_prefix('/'))
    {
        match *req.method() {
            Method::GET => ocsp(&state, ocsp_get(&state, encoded).await, true),
            _ => not_allowed("GET"),
        }
    } else if let Some(rest) = path.strip_prefix(CRL_PREFIX) {
        match *req.method() {
            Method::GET => crl(&state, rest, req.headers(), false).await,
            Method::HEAD => crl(&state, rest, req.headers(), true).await,
            _ => not_allowed("GET, HEAD"),
        }
    } else if path == "/healthz" {
        plain(StatusCode::OK, "ok\n")
    } else {
        plain(StatusCode::NOT_FOUND, "not found\n")
    };
    Ok(reply)
}

/// The reply to an OCSP request (its answer, or the HTTP refusal before any), counted in
/// `certmesh_ocsp_requests_total` by result.
fn ocsp(state: &State, answer: Result<Answer, Reply>, by_get: bool) -> Reply {
    let (result, reply) = match answer {
        Ok(answer) => (answer.result(), ocsp_reply(&answer, by_get)),
        Err(refusal) => (OcspResult::BadRequest, refusal),
    };
    state
        .metrics
        .ocsp_requests
        .get_or_create(&OcspLabels { result })
        .inc();
    reply
}

async fn ocsp_post(state: &State, req: Request<Incoming>) -> Result<Answer, Reply> {
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        });
    if content_type.as_deref() != Some(OCSP_REQUEST) {
        return Err(plain(
            StatusCode::BAD_REQUEST,
            "POST an OCSP request with Content-Type: application/ocsp-request\n",
        ));
    }
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > MAX_REQUEST_LEN) {
        return Err(plain(StatusCode::BAD_REQUEST, "OCSP request too large\n"));
    }
    let body = match Limited::new(req.into_body(), MAX_REQUEST_LEN)
        .collect()
        .await
    {
        Ok(b) => b.to_bytes(),
        Err(_) => {
            return Err(plain(
                StatusCode::BAD_REQUEST,
                "OCSP request too large or unreadable\n",
            ));
        }
    };
    Ok(state.responders.answer(&body).await)
}

async fn ocsp_get(state: &State, encoded: &str) -> Result<Answer, Reply> {
    // base64 of MAX_REQUEST_LEN bytes, percent-encoded at worst three characters per character.
    if encoded.len() > MAX_REQUEST_LEN * 4 {
        return Err(plain(StatusCode::BAD_REQUEST, "OCSP request too large\n"));
    }
    let Some(der) = percent_decode(encoded).and_then(|b64| decode_base64(&b64)) else {
        return Ok(Answer::Error(
            certmesh_crypto::ocsp::OcspErrorStatus::MalformedRequest,
        ));
    };
    Ok(state.responders.answer(&der).await)
}

fn ocsp_reply(answer: &Answer, by_get: bool) -> Reply {
    let body = answer.body();
    let mut r = Response::new(Full::new(body.clone()));
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(OCSP_RESPONSE),
    );
    match answer {
        Answer::Response {
            this_update,
            next_update,
            cacheable: true,
            ..
        } if by_get => {
            // RFC 5019 §6.2: caches may keep it until nextUpdate; we re-sign at half-life.
            let max_age = ((*next_update - *this_update).num_seconds() / 2).max(0);
            if let Ok(v) = HeaderValue::from_str(&format!(
                "max-age={max_age}, public, no-transform, must-revalidate"
            )) {
                h.insert(header::CACHE_CONTROL, v);
            }
            h.insert(header::LAST_MODIFIED, http_date(*this_update));
            h.insert(header::EXPIRES, http_date(*next_update));
            if let Ok(v) = HeaderValue::from_str(&format!("\"{}\"", &sha256_hex(&body)[..32])) {
                h.insert(header::ETAG, v);
            }
        }
        _ => {
            h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        }
    }
    r
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

fn decode_base64(s: &str) -> Option<Vec<u8>> {
    [&STANDARD, &STANDARD_NO_PAD, &URL_SAFE, &URL_SAFE_NO_PAD]
        .iter()
        .find_map(|engine| engine.decode(s).ok())
}

async fn crl(state: &State, rest: &str, headers: &HeaderMap, head_only: bool) -> Reply {
    let mut parts = rest.split('/');
    let (Some(key), Some(shard), None) = (parts.next(), parts.next(), parts.next()) else {
        return plain(StatusCode::NOT_FOUND, "no such CRL\n");
    };
    let (Ok(key_id), Ok(shard)) = (uuid::Uuid::parse_str(key), shard.parse::<u32>()) else {
        return plain(StatusCode::NOT_FOUND, "no such CRL\n");
    };
    let served = match served_crl(state, key_id, shard).await {
        Ok(Some(s)) => s,
        Ok(None) => return plain(StatusCode::NOT_FOUND, "no such CRL\n"),
        Err(e) => {
            tracing::error!(error = %e, "Reading a CRL failed.");
            return plain(StatusCode::SERVICE_UNAVAILABLE, "try again later\n");
        }
    };
    let now = state.clock.now();
    let max_age = (served.next_update - now)
        .num_seconds()
        .clamp(0, CRL_MAX_AGE);
    let not_modified = matches_etag(headers, &served.etag);
    let mut r = if not_modified || head_only {
        Response::new(Full::new(Bytes::new()))
    } else {
        Response::new(Full::new(served.der.clone()))
    };
    if not_modified {
        *r.status_mut() = StatusCode::NOT_MODIFIED;
    }
    let h = r.headers_mut();
    if !not_modified {
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static(PKIX_CRL));
        if head_only && let Ok(v) = HeaderValue::from_str(&served.der.len().to_string()) {
            h.insert(header::CONTENT_LENGTH, v);
        }
    }
    if let Ok(v) = HeaderValue::from_str(&served.etag) {
        h.insert(header::ETAG, v);
    }
    if let Ok(v) = HeaderValue::from_str(&format!("public, max-age={max_age}, no-transform")) {
        h.insert(header::CACHE_CONTROL, v);
    }
    h.insert(header::LAST_MODIFIED, http_date(served.this_update));
    h.insert(header::EXPIRES, http_date(served.next_update));
    r
}

/// The newest CRL of a key and shard: from memory if checked in the last two seconds, else
/// the store's head is compared and the DER reloaded when its number moved.
async fn served_crl(
    state: &State,
    key_id: uuid::Uuid,
    shard: u32,
) -> Result<Option<Arc<ServedCrl>>, certmesh_store::StoreError> {
    let cached = state
        .crls
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(&(key_id, shard))
        .cloned();
    if let Some((checked, crl)) = &cached
        && checked.elapsed() < CRL_RECHECK
    {
        return Ok(Some(crl.clone()));
    }
    let Some(key) = state.directory.find_key_id(key_id).await else {
        return Ok(None);
    };
    let tenant = key.tenant;
    let head = state
        .store
        .in_tenant(tenant, async |tx| {
            crls::head(tx, tenant, key.ca_id, key.generation, shard).await
        })
        .await?;
    let Some(head) = head else {
        return Ok(None);
    };
    let crl = match cached {
        Some((_, crl)) if crl.number == head.number => crl,
        _ => {
            let record = state
                .store
                .in_tenant(tenant, async |tx| {
                    crls::get(tx, tenant, key.ca_id, key.generation, shard).await
                })
                .await?;
            let Some(record) = record else {
                return Ok(None);
            };
            Arc::new(ServedCrl {
                number: record.number,
                etag: format!("\"{}\"", &record.sha256[..record.sha256.len().min(32)]),
                der: Bytes::from(record.der),
                this_update: record.this_update,
                next_update: record.next_update,
            })
        }
    };
    state
        .crls
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert((key_id, shard), (Instant::now(), crl.clone()));
    Ok(Some(crl))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn get_requests_decode_with_or_without_percent_encoding_and_padding() {
        let der = vec![0x30, 0x03, 0x02, 0x01, 0xff, 0xfb, 0xef];
        let b64 = STANDARD.encode(&der);
        assert!(b64.contains('+') || b64.contains('/') || b64.contains('='));
        let encoded = b64
            .replace('+', "%2B")
            .replace('/', "%2F")
            .replace('=', "%3D");
        for form in [b64.clone(), encoded, b64.trim_end_matches('=').to_owned()] {
            let decoded = percent_decode(&form).and_then(|s| decode_base64(&s));
            assert_eq!(decoded.as_deref(), Some(der.as_slice()), "{form}");
        }
        assert_eq!(percent_decode("%zz"), None);
        assert_eq!(percent_decode("%4"), None);
        assert_eq!(decode_base64("!!!"), None);
    }

    #[test]
    fn etags_match_lists_weak_forms_and_star() {
        let mut h = HeaderMap::new();
        h.insert(
            header::IF_NONE_MATCH,
            HeaderValue::from_static("\"a\", W/\"b\""),
        );
        assert!(matches_etag(&h, "\"b\""));
        assert!(!matches_etag(&h, "\"c\""));
        h.insert(header::IF_NONE_MATCH, HeaderValue::from_static("*"));
        assert!(matches_etag(&h, "\"c\""));
    }
}
