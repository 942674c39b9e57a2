//! API tokens: plaintext once, hash at rest, revocation.

use certmesh_store::testing::each_backend;
use certmesh_store::{StoreError, tokens};
use sea_orm::ConnectionTrait;

use crate::{at, t0, tenant};

#[tokio::test]
async fn create_verify_unknown_revoked() {
    for db in each_backend().await {
        let b = db.backend();
        let c = db.store.conn();
        let acme = tenant(&db, "acme").await;
        let (id, plaintext) = tokens::create(c, acme, "ci", t0()).await.expect("create");
        assert!(plaintext.starts_with("cmt_"));
        assert_eq!(plaintext.len(), 4 + 64);
        assert!(plaintext[4..].chars().all(|ch| ch.is_ascii_hexdigit()));

        let p = tokens::verify(c, &plaintext)
            .await
            .expect("verify")
            .expect("known");
        assert_eq!(
            (p.tenant_id, p.token_id, p.name.as_str()),
            (acme, id, "ci"),
            "{b:?}"
        );

        let unknown = format!("cmt_{}", "0".repeat(64));
        assert_eq!(tokens::verify(c, &unknown).await.expect("verify"), None);
        assert_eq!(tokens::verify(c, "garbage").await.expect("verify"), None);

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
            tokens::verify(c, &plaintext).await.expect("verify"),
            None,
            "{b:?}"
        );

        let (_, second) = tokens::create(c, acme, "ci2", t0()).await.expect("create");
        assert_ne!(second, plaintext, "tokens are random");
    }
}
