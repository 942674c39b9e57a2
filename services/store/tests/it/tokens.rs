//! API tokens: plaintext once, hash at rest, revocation.

use certmesh_store::testing::each_backend;
use certmesh_store::{StoreError, principals, tokens};
use sea_orm::ConnectionTrait;

use crate::{at, t0, tenant};

#[tokio::test]
async fn create_verify_unknown_revoked() {
    for db in each_backend().await {
        let b = db.backend();
        let c = db.owner();
        let acme = tenant(&db, "acme").await;
        let roles = vec!["operator".to_string()];
        let ci = principals::create(c, acme, "ci-bot", "service", &roles, t0())
            .await
            .expect("principal");
        let (id, plaintext) = tokens::create(c, acme, ci.id, "ci", None, t0())
            .await
            .expect("create");
        assert!(plaintext.starts_with("cmt_"));
        assert_eq!(plaintext.len(), 4 + 64);
        assert!(plaintext[4..].chars().all(|ch| ch.is_ascii_hexdigit()));

        let p = tokens::verify(&db.store, &plaintext, t0())
            .await
            .expect("verify")
            .expect("known");
        assert_eq!(
            (p.tenant_id, p.token_id, p.name.as_str()),
            (acme, id, "ci"),
            "{b:?}"
        );
        assert_eq!((p.principal_id, p.principal.as_str()), (ci.id, "ci-bot"));
        assert_eq!(p.roles, roles);

        let unknown = format!("cmt_{}", "0".repeat(64));
        assert_eq!(
            tokens::verify(&db.store, &unknown, t0())
                .await
                .expect("verify"),
            None
        );
        assert_eq!(
            tokens::verify(&db.store, "garbage", t0())
                .await
                .expect("verify"),
            None
        );

        // Only the hash is stored: no column anywhere holds the plaintext.
        let rows = c
            .query_all_raw(sea_orm::Statement::from_string(
                c.get_database_backend(),
                "SELECT name, token_hash FROM api_tokens",
            ))
            .await
            .expect("select");
        assert_eq!(rows.len(), 1);
        let stored: String = rows[0].try_get("", "token_hash").expect("hash");
        assert_eq!(stored, tokens::hash(&plaintext));
        assert_ne!(stored, plaintext);
        assert!(!stored.contains(&plaintext[4..]), "{b:?}: plaintext leaked");

        // Another tenant cannot revoke it.
        let globex = tenant(&db, "globex").await;
        assert!(matches!(
            tokens::revoke(c, globex, id, at(1)).await,
            Err(StoreError::NotFound { what: "token" })
        ));
        tokens::revoke(c, acme, id, at(1)).await.expect("revoke");
        tokens::revoke(c, acme, id, at(2))
            .await
            .expect("revoke twice is fine");
        assert_eq!(
            tokens::verify(&db.store, &plaintext, at(3))
                .await
                .expect("verify"),
            None,
            "{b:?}"
        );

        let (_, second) = tokens::create(c, acme, ci.id, "ci2", None, t0())
            .await
            .expect("create");
        assert_ne!(second, plaintext, "tokens are random");
    }
}

#[tokio::test]
async fn tokens_expire_rotate_and_list_without_secrets() {
    for db in each_backend().await {
        let c = db.owner();
        let acme = tenant(&db, "acme").await;
        let roles = vec!["viewer".to_string()];
        let bot = principals::create(c, acme, "bot", "service", &roles, t0())
            .await
            .expect("principal");
        assert!(matches!(
            principals::create(c, acme, "bot", "service", &roles, t0()).await,
            Err(StoreError::Conflict { what: "principal" })
        ));
        let (old_id, old) = tokens::create(c, acme, bot.id, "old", Some(at(100)), t0())
            .await
            .expect("old");
        // Rotation: the new token works alongside the old until the old is revoked.
        let (_, new) = tokens::create(c, acme, bot.id, "new", None, at(10))
            .await
            .expect("new");
        assert!(
            tokens::verify(&db.store, &old, at(20))
                .await
                .expect("verify")
                .is_some()
        );
        assert!(
            tokens::verify(&db.store, &new, at(20))
                .await
                .expect("verify")
                .is_some()
        );
        tokens::revoke(c, acme, old_id, at(30))
            .await
            .expect("revoke");
        assert!(
            tokens::verify(&db.store, &old, at(31))
                .await
                .expect("verify")
                .is_none()
        );
        assert!(
            tokens::verify(&db.store, &new, at(31))
                .await
                .expect("verify")
                .is_some()
        );
        // Expiry.
        let (_, short) = tokens::create(c, acme, bot.id, "short", Some(at(50)), t0())
            .await
            .expect("short");
        assert!(
            tokens::verify(&db.store, &short, at(49))
                .await
                .expect("verify")
                .is_some()
        );
        assert!(
            tokens::verify(&db.store, &short, at(50))
                .await
                .expect("verify")
                .is_none()
        );

        let listed = tokens::list(c, acme, Some(bot.id)).await.expect("list");
        assert_eq!(listed.len(), 3);
        assert!(
            listed
                .iter()
                .any(|t| t.name == "old" && t.revoked_at.is_some())
        );
        let debug = format!("{listed:?}");
        for secret in [&old, &new, &short] {
            assert!(
                !debug.contains(&secret[4..]),
                "a listed token leaks its secret"
            );
        }
        let other = tenant(&db, "globex").await;
        assert!(tokens::list(c, other, None).await.expect("list").is_empty());
        assert_eq!(principals::list(c, acme).await.expect("list").len(), 1);
        assert!(
            principals::by_name(c, other, "bot")
                .await
                .expect("by_name")
                .is_none()
        );
    }
}
