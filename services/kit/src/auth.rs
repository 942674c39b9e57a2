//! Bearer-token authentication as a tower layer.
//!
//! [`AuthLayer`] wraps a role's gRPC service: it reads `authorization: Bearer <token>`, checks
//! the token against the store (only its SHA-256 is stored) and inserts an [`AuthContext`] into
//! the request's extensions, or answers `UNAUTHENTICATED` without calling the service. The tenant
//! a handler acts on comes from this context, never from the request body.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    task::{Context, Poll},
    time::{Duration, Instant},
};

use certmesh_store::{Store, TenantId, tokens};
use futures::future::BoxFuture;
use tonic::{Code, Status};
use tower::{Layer, Service};

use crate::{
    SharedClock,
    rbac::{Permission, Role, any_grants},
    reason::{Reason, status},
    trace::RequestId,
};

/// Who is calling, established by the auth layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthContext {
    /// The tenant every repository call of this request is scoped to.
    pub tenant_id: TenantId,
    /// The principal's name, for the audit trail.
    pub principal: String,
    /// The principal's id.
    pub principal_id: uuid::Uuid,
    /// The token's id.
    pub token_id: uuid::Uuid,
    /// The principal's roles.
    pub roles: Vec<Role>,
    /// When the token stops working.
    pub expires_at: Option<chrono::DateTime<chrono::Utc>>,
    /// The request's id (`x-request-id`, or one made up), for the audit trail and logs.
    pub request_id: String,
}

impl AuthContext {
    /// `Ok` if the caller's roles grant `permission`, else `PERMISSION_DENIED` with reason
    /// `PERMISSION_MISSING` naming it.
    pub fn require(&self, permission: Permission) -> Result<(), Status> {
        if any_grants(&self.roles, permission) {
            Ok(())
        } else {
            Err(status(
                Code::PermissionDenied,
                Reason::PermissionMissing,
                format!("{} lacks {permission}", self.principal),
            ))
        }
    }

    /// True if the caller's roles grant `permission`.
    pub fn can(&self, permission: Permission) -> bool {
        any_grants(&self.roles, permission)
    }

    /// The context the auth layer attached to `request`.
    pub fn of<T>(request: &tonic::Request<T>) -> Result<AuthContext, Status> {
        request
            .extensions()
            .get::<AuthContext>()
            .cloned()
            .ok_or_else(|| unauthenticated("no credentials"))
    }
}

fn unauthenticated(message: &str) -> Status {
    status(Code::Unauthenticated, Reason::Unauthenticated, message)
}

/// How long a verified token is trusted without asking the store again. A revoked token stops
/// working within this time.
const CACHE_TTL: Duration = Duration::from_secs(30);
const CACHE_MAX: usize = 10_000;

/// Checks bearer tokens against the store, with a short-lived cache of verified tokens.
#[derive(Debug, Clone)]
pub struct TokenVerifier {
    store: Store,
    clock: SharedClock,
    cache: Arc<Mutex<HashMap<String, (AuthContext, Instant)>>>,
}

impl TokenVerifier {
    /// A verifier over `store`; expiry is judged by `clock`.
    pub fn new(store: Store, clock: SharedClock) -> Self {
        Self {
            store,
            clock,
            cache: Arc::default(),
        }
    }

    /// The caller behind an `authorization` header value, or an `UNAUTHENTICATED` status.
    pub async fn verify_header(&self, header: Option<&str>) -> Result<AuthContext, Status> {
        let token = header
            .and_then(|h| {
                h.strip_prefix("Bearer ")
                    .or_else(|| h.strip_prefix("bearer "))
            })
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| unauthenticated("missing bearer token"))?;
        let hash = tokens::hash(token);
        if let Some(ctx) = self.cached(&hash) {
            return Ok(ctx);
        }
        let principal = tokens::verify(&self.store, token, self.clock.now())
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "Token lookup failed.");
                status(Code::Unavailable, Reason::Internal, "token lookup failed")
            })?;
        let principal = principal.ok_or_else(|| unauthenticated("unknown or revoked token"))?;
        let ctx = AuthContext {
            tenant_id: principal.tenant_id,
            principal: principal.principal,
            principal_id: principal.principal_id,
            token_id: principal.token_id,
            // Unknown role names (from a newer build) grant nothing.
            roles: principal
                .roles
                .iter()
                .filter_map(|r| r.parse().ok())
                .collect(),
            expires_at: principal.expires_at,
            request_id: String::new(),
        };
        self.remember(hash, ctx.clone());
        Ok(ctx)
    }

    fn cached(&self, hash: &str) -> Option<AuthContext> {
        let cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        let now = self.clock.now();
        cache
            .get(hash)
            .filter(|(_, at)| at.elapsed() < CACHE_TTL)
            .filter(|(ctx, _)| ctx.expires_at.is_none_or(|e| e > now))
            .map(|(ctx, _)| ctx.clone())
    }

    fn remember(&self, hash: String, ctx: AuthContext) {
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= CACHE_MAX {
            cache.retain(|_, (_, at)| at.elapsed() < CACHE_TTL);
        }
        cache.insert(hash, (ctx, Instant::now()));
    }
}

/// The request id [`crate::trace::SpanLayer`] settled, or (without that layer in front) the
/// caller's `x-request-id` if it is sane, else a fresh id.
fn request_id<B>(request: &http::Request<B>) -> String {
    match request.extensions().get::<RequestId>() {
        Some(id) => id.to_string(),
        None => RequestId::from_headers(request.headers()).to_string(),
    }
}

/// Layer that authenticates every request before the wrapped service sees it.
#[derive(Debug, Clone)]
pub struct AuthLayer {
    verifier: TokenVerifier,
}

impl AuthLayer {
    /// Authenticate with `verifier`.
    pub fn new(verifier: TokenVerifier) -> Self {
        Self { verifier }
    }
}

impl<S> Layer<S> for AuthLayer {
    type Service = AuthService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AuthService {
            inner,
            verifier: self.verifier.clone(),
        }
    }
}

/// The service [`AuthLayer`] produces.
#[derive(Debug, Clone)]
pub struct AuthService<S> {
    inner: S,
    verifier: TokenVerifier,
}

impl<S, B> Service<http::Request<B>> for AuthService<S>
where
    S: Service<http::Request<B>, Response = http::Response<tonic::body::Body>>
        + Clone
        + Send
        + 'static,
    S::Future: Send,
    B: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        // The ready service is the one we must call; leave a fresh clone in its place.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let verifier = self.verifier.clone();
        Box::pin(async move {
            let header = request
                .headers()
                .get(http::header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok());
            let request_id = request_id(&request);
            match verifier.verify_header(header).await {
                Ok(mut ctx) => {
                    // The request's span (see `trace::SpanLayer`) declares these fields.
                    let span = tracing::Span::current();
                    span.record("tenant", tracing::field::display(&ctx.tenant_id));
                    span.record("principal", ctx.principal.as_str());
                    ctx.request_id = request_id;
                    request.extensions_mut().insert(ctx);
                    inner.call(request).await
                }
                Err(status) => Ok(status.into_http()),
            }
        })
    }
}
