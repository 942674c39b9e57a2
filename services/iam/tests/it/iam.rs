use std::{
    io::Write as _,
    process::{Command, Stdio},
    sync::Arc,
};

use certmesh_crypto::ceremony::ApproverKey;
use certmesh_iam::{Deps, Iam};
use certmesh_kit::{auth::AuthContext, clock::TestClock, rbac::Role, reason::reason_of};
use certmesh_proto::iam::{
    self as pb, audit_service_server::AuditService, principal_service_server::PrincipalService,
    token_service_server::TokenService,
};
use certmesh_store::{Store, TenantId, principal_keys, principals, tenants, testing::TestDb};
use chrono::DateTime;
use tonic::{Code, Request};

struct Harness {
    iam: Iam,
    store: Store,
    clock: TestClock,
    acme: TenantId,
    _db: TestDb,
}

async fn each_backend() -> Vec<Harness> {
    let mut all = Vec::new();
    for db in certmesh_store::testing::each_backend().await {
        let store = db.store.clone();
        let at = DateTime::from_timestamp(1_800_000_000, 0).expect("valid");
        let acme = tenants::ensure(store.conn(), "acme", at)
            .await
            .expect("tenant");
        let clock = TestClock::at(at);
        let iam = Iam::new(Deps {
            store: store.clone(),
            clock: Arc::new(clock.clone()),
        });
        all.push(Harness {
            iam,
            store,
            clock,
            acme,
            _db: db,
        });
    }
    all
}

impl Harness {
    /// A caller in `tenant` named `name` holding `role` (the principal row is created).
    async fn caller(&self, tenant: TenantId, name: &str, role: Role) -> AuthContext {
        let at = DateTime::from_timestamp(1_800_000_000, 0).expect("valid");
        let roles = [role.as_str().to_string()];
        let p = self
            .store
            .in_tenant(tenant, async |tx| {
                principals::ensure(tx, tenant, name, "user", &roles, at).await
            })
            .await
            .expect("principal");
        AuthContext {
            tenant_id: tenant,
            principal: name.into(),
            principal_id: p.id,
            token_id: uuid::Uuid::nil(),
            roles: vec![role],
            expires_at: None,
            request_id: "req".into(),
        }
    }
}

fn req<T>(auth: &AuthContext, message: T) -> Request<T> {
    let mut r = Request::new(message);
    r.extensions_mut().insert(auth.clone());
    r
}

fn refused<T: std::fmt::Debug>(result: Result<T, tonic::Status>) -> (Code, String) {
    let status = result.expect_err("refused");
    (status.code(), reason_of(&status).unwrap_or_default())
}

/// `openssl <args>` fed `stdin`; its standard output.
fn openssl(args: &[&str], stdin: &str) -> String {
    let mut child = Command::new("openssl")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("openssl is required by these tests but does not run; install it");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
        .expect("writing to openssl");
    let out = child.wait_with_output().expect("openssl runs");
    assert!(
        out.status.success(),
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("openssl prints text")
}

/// A fresh key's PEM `PUBLIC KEY`, as a custodian makes it: `openssl genpkey <genpkey>`, then
/// `openssl pkey -pubout`.
fn public_key_pem(genpkey: &[&str]) -> String {
    let private = openssl(&[&["genpkey"][..], genpkey].concat(), "");
    openssl(&["pkey", "-pubout"], &private)
}

fn ed25519_pem() -> String {
    public_key_pem(&["-algorithm", "ed25519"])
}

fn p256_pem() -> String {
    public_key_pem(&["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"])
}

fn add_key(name: &str, pem: &str) -> pb::AddPrincipalKeyRequest {
    pb::AddPrincipalKeyRequest {
        name: name.into(),
        public_key_pem: pem.into(),
    }
}

/// The fingerprints of `name`'s keys, as `caller` lists them.
async fn key_fingerprints(h: &Harness, caller: &AuthContext, name: &str) -> Vec<String> {
    let list = pb::ListPrincipalKeysRequest { name: name.into() };
    PrincipalService::list_principal_keys(&h.iam, req(caller, list))
        .await
        .expect("list keys")
        .into_inner()
        .keys
        .into_iter()
        .map(|k| k.fingerprint_sha256)
        .collect()
}

/// The `principals.add_key` audit events, oldest first, as `auditor` reads them.
async fn add_key_events(h: &Harness, auditor: &AuthContext) -> Vec<pb::AuditEvent> {
    let filter = pb::ListAuditEventsRequest {
        action: "principals.add_key".into(),
        ..Default::default()
    };
    AuditService::list_audit_events(&h.iam, req(auditor, filter))
        .await
        .expect("audit")
        .into_inner()
        .events
}

#[tokio::test]
async fn principals_are_created_by_admins_only_and_bad_input_writes_nothing() {
    for h in each_backend().await {
        let admin = h.caller(h.acme, "alice", Role::Admin).await;
        let viewer = h.caller(h.acme, "vera", Role::Viewer).await;
        let create = |name: &str, roles: &[&str]| pb::CreatePrincipalRequest {
            name: name.into(),
            kind: "service".into(),
            roles: roles.iter().map(|r| r.to_string()).collect(),
        };
        let bot = PrincipalService::create_principal(
            &h.iam,
            req(&admin, create("deploy-bot", &["operator", "operator"])),
        )
        .await
        .expect("created")
        .into_inner();
        assert_eq!(bot.roles, ["operator"]);
        assert_eq!(
            refused(
                PrincipalService::create_principal(
                    &h.iam,
                    req(&admin, create("deploy-bot", &["viewer"]))
                )
                .await
            ),
            (Code::AlreadyExists, "PRINCIPAL_EXISTS".into())
        );
        assert_eq!(
            refused(
                PrincipalService::create_principal(
                    &h.iam,
                    req(&viewer, create("sneaky", &["admin"]))
                )
                .await
            ),
            (Code::PermissionDenied, "PERMISSION_MISSING".into())
        );
        for bad in [
            create("x", &["root"]),
            create("x", &[]),
            create("Bad Name", &["viewer"]),
        ] {
            assert_eq!(
                refused(PrincipalService::create_principal(&h.iam, req(&admin, bad)).await),
                (Code::InvalidArgument, "REQUEST_INVALID".into())
            );
        }
        let listed =
            PrincipalService::list_principals(&h.iam, req(&viewer, pb::ListPrincipalsRequest {}))
                .await;
        assert_eq!(
            refused(listed).0,
            Code::PermissionDenied,
            "viewers do not read principals"
        );
        let all =
            PrincipalService::list_principals(&h.iam, req(&admin, pb::ListPrincipalsRequest {}))
                .await
                .expect("list")
                .into_inner();
        let names: Vec<_> = all.principals.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["alice", "deploy-bot", "vera"]);
    }
}

#[tokio::test]
async fn custodian_keys_are_added_by_admins_and_listed_with_their_fingerprints() {
    let (ed, p256) = (ed25519_pem(), p256_pem());
    let expected = [(&ed, "ed25519"), (&p256, "ecdsa-p256")].map(|(pem, alg)| {
        (
            ApproverKey::from_pem(pem).expect("parses").fingerprint(),
            alg,
        )
    });
    for h in each_backend().await {
        let admin = h.caller(h.acme, "alice", Role::Admin).await;
        let carol = h.caller(h.acme, "carol", Role::Custodian).await;
        let mut added = Vec::new();
        for pem in [&ed, &p256] {
            let key =
                PrincipalService::add_principal_key(&h.iam, req(&admin, add_key("carol", pem)))
                    .await
                    .expect("added")
                    .into_inner();
            assert_eq!(key.principal, "carol");
            assert!(
                key.created_at.is_some() && key.revoked_at.is_none(),
                "{key:?}"
            );
            let echoed = ApproverKey::from_pem(&key.public_key_pem).expect("the reply's PEM");
            assert_eq!(echoed, ApproverKey::from_pem(pem).expect("parses"));
            added.push(key);
            h.clock.advance(chrono::Duration::minutes(1));
        }
        let got: Vec<_> = added
            .iter()
            .map(|k| (k.fingerprint_sha256.clone(), k.algorithm.as_str()))
            .collect();
        assert_eq!(got, expected);

        let list = |caller: &AuthContext| {
            let request = pb::ListPrincipalKeysRequest {
                name: "carol".into(),
            };
            PrincipalService::list_principal_keys(&h.iam, req(caller, request))
        };
        let own = list(&carol).await.expect("a custodian lists its own keys");
        assert_eq!(own.into_inner().keys, added);
        assert_eq!(
            list(&admin).await.expect("admin lists").into_inner().keys,
            added
        );

        let ed_id = added[0].id.parse().expect("a uuid");
        let later = DateTime::from_timestamp(1_800_000_300, 0).expect("valid");
        h.store
            .in_tenant(h.acme, async |tx| {
                principal_keys::revoke(tx, h.acme, ed_id, later).await
            })
            .await
            .expect("revoked");
        let keys = list(&carol).await.expect("list").into_inner().keys;
        let revoked: Vec<_> = keys
            .iter()
            .map(|k| k.revoked_at.map(|t| t.seconds))
            .collect();
        assert_eq!(
            revoked,
            [Some(1_800_000_300), None],
            "revoked keys stay listed"
        );

        let events = add_key_events(&h, &admin).await;
        let entries: Vec<_> = events
            .iter()
            .map(|e| {
                let details: serde_json::Value =
                    serde_json::from_str(&e.details_json).expect("details are JSON");
                let text = |field: &str| details[field].as_str().unwrap_or_default().to_string();
                (
                    (e.actor.as_str(), e.resource.as_str(), e.outcome.as_str()),
                    (text("fingerprint"), text("algorithm")),
                )
            })
            .collect();
        let who = ("alice", "principal:carol", "allowed");
        let want: Vec<_> = expected
            .iter()
            .map(|(fp, alg)| (who, (fp.clone(), alg.to_string())))
            .collect();
        assert_eq!(entries, want);
    }
}

#[tokio::test]
async fn bad_duplicate_or_unauthorized_keys_are_refused_and_change_nothing() {
    let (ed, p256) = (ed25519_pem(), p256_pem());
    let rsa = public_key_pem(&["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:1024"]);
    let p384 = public_key_pem(&["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-384"]);
    let fingerprint = ApproverKey::from_pem(&ed).expect("parses").fingerprint();
    for h in each_backend().await {
        let admin = h.caller(h.acme, "alice", Role::Admin).await;
        let carol = h.caller(h.acme, "carol", Role::Custodian).await;
        let dave = h.caller(h.acme, "dave", Role::Custodian).await;
        PrincipalService::add_principal_key(&h.iam, req(&admin, add_key("carol", &ed)))
            .await
            .expect("added");

        for (name, pem) in [("carol", &ed), ("dave", &ed)] {
            assert_eq!(
                refused(
                    PrincipalService::add_principal_key(&h.iam, req(&admin, add_key(name, pem)))
                        .await
                ),
                (Code::AlreadyExists, "PRINCIPAL_KEY_EXISTS".into()),
                "the same key again, for {name}"
            );
        }
        let private_key = openssl(&["genpkey", "-algorithm", "ed25519"], "");
        let keys = [rsa.as_str(), p384.as_str(), private_key.as_str()];
        for bad in ["", "not a key"].into_iter().chain(keys) {
            assert_eq!(
                refused(
                    PrincipalService::add_principal_key(&h.iam, req(&admin, add_key("dave", bad)))
                        .await
                ),
                (Code::InvalidArgument, "PUBLIC_KEY_INVALID".into()),
                "{bad:?}"
            );
        }
        assert_eq!(
            refused(
                PrincipalService::add_principal_key(&h.iam, req(&admin, add_key("nemo", &p256)))
                    .await
            ),
            (Code::NotFound, "PRINCIPAL_NOT_FOUND".into())
        );
        assert_eq!(
            refused(
                PrincipalService::add_principal_key(&h.iam, req(&carol, add_key("dave", &p256)))
                    .await
            ),
            (Code::PermissionDenied, "PERMISSION_MISSING".into()),
            "a custodian registers no key for another"
        );
        let theirs = pb::ListPrincipalKeysRequest {
            name: "dave".into(),
        };
        assert_eq!(
            refused(PrincipalService::list_principal_keys(&h.iam, req(&carol, theirs)).await),
            (Code::PermissionDenied, "PERMISSION_MISSING".into()),
            "a custodian lists only its own keys"
        );

        assert_eq!(
            key_fingerprints(&h, &admin, "carol").await,
            [fingerprint.as_str()]
        );
        for name in ["dave", "alice"] {
            assert!(
                key_fingerprints(&h, &admin, name).await.is_empty(),
                "{name}"
            );
        }
        assert!(key_fingerprints(&h, &dave, "dave").await.is_empty());
        let events = add_key_events(&h, &admin).await;
        let outcomes: Vec<_> = events
            .iter()
            .map(|e| (e.actor.as_str(), e.outcome.as_str()))
            .collect();
        assert_eq!(
            outcomes,
            [("alice", "allowed"), ("carol", "denied")],
            "one key added, one refusal audited"
        );
    }
}

#[tokio::test]
async fn tokens_are_shown_once_listed_without_secrets_and_revoked_by_their_owner_or_an_admin() {
    for h in each_backend().await {
        let admin = h.caller(h.acme, "alice", Role::Admin).await;
        let viewer = h.caller(h.acme, "vera", Role::Viewer).await;
        let own = TokenService::create_token(
            &h.iam,
            req(
                &viewer,
                pb::CreateTokenRequest {
                    principal: String::new(),
                    name: "laptop".into(),
                    expires_in: "24h".into(),
                },
            ),
        )
        .await
        .expect("own token")
        .into_inner();
        assert!(own.token.starts_with("cmt_"));
        let info = own.info.expect("info");
        assert!(info.expires_at.is_some());
        let for_other = pb::CreateTokenRequest {
            principal: "alice".into(),
            name: "x".into(),
            expires_in: String::new(),
        };
        assert_eq!(
            refused(TokenService::create_token(&h.iam, req(&viewer, for_other.clone())).await).0,
            Code::PermissionDenied
        );
        let admins = TokenService::create_token(
            &h.iam,
            req(
                &admin,
                pb::CreateTokenRequest {
                    principal: "vera".into(),
                    ..for_other
                },
            ),
        )
        .await
        .expect("admin mints for vera")
        .into_inner();
        let listed =
            TokenService::list_tokens(&h.iam, req(&viewer, pb::ListTokensRequest::default()))
                .await
                .expect("list")
                .into_inner();
        assert_eq!(listed.tokens.len(), 2);
        assert!(
            !format!("{listed:?}").contains(&own.token[4..]),
            "listing leaks a secret"
        );
        let bad_expiry = pb::CreateTokenRequest {
            expires_in: "forever".into(),
            ..Default::default()
        };
        assert_eq!(
            refused(TokenService::create_token(&h.iam, req(&viewer, bad_expiry)).await).0,
            Code::InvalidArgument
        );

        let admin_token_id = admins.info.expect("info").id;
        let alice_tok =
            TokenService::create_token(&h.iam, req(&admin, pb::CreateTokenRequest::default()))
                .await
                .expect("alice's own")
                .into_inner()
                .info
                .expect("info")
                .id;
        assert_eq!(
            refused(
                TokenService::revoke_token(
                    &h.iam,
                    req(&viewer, pb::RevokeTokenRequest { id: alice_tok })
                )
                .await
            )
            .0,
            Code::PermissionDenied,
            "a viewer cannot revoke someone else's token"
        );
        let revoked = TokenService::revoke_token(
            &h.iam,
            req(&viewer, pb::RevokeTokenRequest { id: admin_token_id }),
        )
        .await
        .expect("owner revokes")
        .into_inner();
        assert!(revoked.revoked_at.is_some());
        assert_eq!(
            refused(
                TokenService::revoke_token(
                    &h.iam,
                    req(&admin, pb::RevokeTokenRequest { id: "nope".into() })
                )
                .await
            ),
            (Code::NotFound, "TOKEN_NOT_FOUND".into())
        );
    }
}

#[tokio::test]
async fn nothing_of_one_tenant_is_visible_or_revocable_from_another() {
    for h in each_backend().await {
        let at = DateTime::from_timestamp(1_800_000_000, 0).expect("valid");
        let globex = tenants::ensure(h.store.conn(), "globex", at)
            .await
            .expect("tenant");
        let alice = h.caller(h.acme, "alice", Role::Admin).await;
        let gary = h.caller(globex, "gary", Role::Admin).await;
        let token =
            TokenService::create_token(&h.iam, req(&alice, pb::CreateTokenRequest::default()))
                .await
                .expect("token")
                .into_inner()
                .info
                .expect("info")
                .id;
        assert_eq!(
            refused(
                TokenService::revoke_token(
                    &h.iam,
                    req(&gary, pb::RevokeTokenRequest { id: token })
                )
                .await
            ),
            (Code::NotFound, "TOKEN_NOT_FOUND".into())
        );
        assert_eq!(
            refused(
                PrincipalService::get_principal(
                    &h.iam,
                    req(
                        &gary,
                        pb::GetPrincipalRequest {
                            name: "alice".into()
                        }
                    )
                )
                .await
            )
            .0,
            Code::NotFound
        );
        let key = ed25519_pem();
        PrincipalService::add_principal_key(&h.iam, req(&alice, add_key("alice", &key)))
            .await
            .expect("alice's key");
        assert_eq!(
            refused(
                PrincipalService::add_principal_key(&h.iam, req(&gary, add_key("alice", &key)))
                    .await
            ),
            (Code::NotFound, "PRINCIPAL_NOT_FOUND".into())
        );
        let alices = pb::ListPrincipalKeysRequest {
            name: "alice".into(),
        };
        assert_eq!(
            refused(PrincipalService::list_principal_keys(&h.iam, req(&gary, alices)).await),
            (Code::NotFound, "PRINCIPAL_NOT_FOUND".into())
        );
        PrincipalService::add_principal_key(&h.iam, req(&gary, add_key("gary", &key)))
            .await
            .expect("a key is unique per tenant: globex may register the same one");
        assert_eq!(key_fingerprints(&h, &alice, "alice").await.len(), 1);
        let mine =
            PrincipalService::list_principals(&h.iam, req(&gary, pb::ListPrincipalsRequest {}))
                .await
                .expect("list")
                .into_inner();
        assert_eq!(mine.principals.len(), 1);
        let trail = AuditService::list_audit_events(
            &h.iam,
            req(&gary, pb::ListAuditEventsRequest::default()),
        )
        .await
        .expect("audit")
        .into_inner();
        assert!(
            trail.events.iter().all(|e| e.actor == "gary"),
            "globex sees only its own trail"
        );
    }
}

#[tokio::test]
async fn the_audit_api_filters_pages_and_verifies_for_auditors_only() {
    for h in each_backend().await {
        let admin = h.caller(h.acme, "alice", Role::Admin).await;
        let auditor = h.caller(h.acme, "audrey", Role::Auditor).await;
        let viewer = h.caller(h.acme, "vera", Role::Viewer).await;
        for i in 0..3 {
            TokenService::create_token(
                &h.iam,
                req(
                    &admin,
                    pb::CreateTokenRequest {
                        name: format!("t{i}"),
                        ..Default::default()
                    },
                ),
            )
            .await
            .expect("token");
        }
        // One refusal, audited.
        let _ =
            PrincipalService::list_principals(&h.iam, req(&viewer, pb::ListPrincipalsRequest {}))
                .await;
        assert_eq!(
            refused(
                AuditService::list_audit_events(
                    &h.iam,
                    req(&viewer, pb::ListAuditEventsRequest::default())
                )
                .await
            )
            .0,
            Code::PermissionDenied
        );
        let page = |token: &str| pb::ListAuditEventsRequest {
            action: "tokens.create".into(),
            page_size: 2,
            page_token: token.into(),
            ..Default::default()
        };
        let first = AuditService::list_audit_events(&h.iam, req(&auditor, page("")))
            .await
            .expect("page")
            .into_inner();
        assert_eq!(first.events.len(), 2);
        let second =
            AuditService::list_audit_events(&h.iam, req(&auditor, page(&first.next_page_token)))
                .await
                .expect("page")
                .into_inner();
        assert_eq!(second.events.len(), 1);
        let denied = AuditService::list_audit_events(
            &h.iam,
            req(
                &auditor,
                pb::ListAuditEventsRequest {
                    actor: "vera".into(),
                    ..Default::default()
                },
            ),
        )
        .await
        .expect("filtered")
        .into_inner();
        assert!(denied.events.len() >= 2 && denied.events.iter().all(|e| e.outcome == "denied"));
        for secret_field in ["token", "cmt_"] {
            assert!(
                first
                    .events
                    .iter()
                    .all(|e| !e.details_json.contains(secret_field)
                        || e.details_json.contains("[REDACTED]"))
            );
        }
        let bad = pb::ListAuditEventsRequest {
            page_token: "garbage".into(),
            ..Default::default()
        };
        assert_eq!(
            refused(AuditService::list_audit_events(&h.iam, req(&auditor, bad)).await).1,
            "PAGE_TOKEN_INVALID"
        );
        let verdict = AuditService::verify_audit(&h.iam, req(&auditor, pb::VerifyAuditRequest {}))
            .await
            .expect("verify")
            .into_inner();
        assert!(verdict.intact, "{verdict:?}");
    }
}
