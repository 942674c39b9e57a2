//! CRLs: numbers strictly increase per CA (also under concurrency), a stored CRL is only
//! replaced by a higher number, heads without DER, tenant scoping.

use std::collections::BTreeSet;
use std::sync::Arc;

use certmesh_store::crls::{self, CrlHead, CrlRecord};
use certmesh_store::testing::each_backend;
use certmesh_store::{CaId, StoreError, TenantId, truncate_ts};
use tokio::sync::Barrier;

use crate::{at, tenant, tx};

const CA: CaId = CaId(uuid::Uuid::from_u128(0xca));
const OTHER_CA: CaId = CaId(uuid::Uuid::from_u128(0xcb));

fn crl(tenant_id: TenantId, ca_id: CaId, generation: u32, shard: u32, number: u64) -> CrlRecord {
    CrlRecord {
        tenant_id,
        ca_id,
        generation,
        shard,
        number,
        this_update: at(number as i64),
        next_update: at(number as i64 + 3600),
        der: format!("crl {generation}/{shard} #{number}").into_bytes(),
        sha256: format!("{number:064x}"),
        entries: number * 10,
        created_at: at(number as i64),
    }
}

/// `rec` as stored: timestamps truncated to microseconds.
fn stored(rec: &CrlRecord) -> CrlRecord {
    CrlRecord {
        this_update: truncate_ts(rec.this_update),
        next_update: truncate_ts(rec.next_update),
        created_at: truncate_ts(rec.created_at),
        ..rec.clone()
    }
}

fn head_of(rec: &CrlRecord) -> CrlHead {
    let rec = stored(rec);
    CrlHead {
        ca_id: rec.ca_id,
        generation: rec.generation,
        shard: rec.shard,
        number: rec.number,
        this_update: rec.this_update,
        next_update: rec.next_update,
        sha256: rec.sha256,
        entries: rec.entries,
        created_at: rec.created_at,
    }
}

#[tokio::test]
async fn numbers_start_at_one_and_increase_per_ca_and_tenant() {
    for db in each_backend().await {
        let b = db.backend();
        let acme = tenant(&db, "acme").await;
        let globex = tenant(&db, "globex").await;
        let t = tx(&db, acme).await;
        for want in 1..=3 {
            assert_eq!(
                crls::next_number(&t, acme, CA).await.expect("next"),
                want,
                "{b:?}"
            );
        }
        assert_eq!(
            crls::next_number(&t, acme, OTHER_CA).await.expect("next"),
            1,
            "{b:?}: one counter per CA"
        );
        t.commit().await.expect("commit");
        let t = tx(&db, globex).await;
        assert_eq!(
            crls::next_number(&t, globex, CA).await.expect("next"),
            1,
            "{b:?}: and per tenant"
        );
        t.commit().await.expect("commit");
        // A number drawn in a transaction that rolls back is drawn again.
        let t = tx(&db, acme).await;
        assert_eq!(crls::next_number(&t, acme, CA).await.expect("next"), 4);
        t.rollback().await.expect("rollback");
        let t = tx(&db, acme).await;
        assert_eq!(crls::next_number(&t, acme, CA).await.expect("next"), 4);
        t.commit().await.expect("commit");
    }
}

#[tokio::test]
async fn concurrent_transactions_draw_distinct_increasing_numbers() {
    const TASKS: usize = 8;
    const DRAWS: usize = 5;
    for db in each_backend().await {
        let b = db.backend();
        let acme = tenant(&db, "acme").await;
        let store = db.store.clone();
        // All tasks start together, so several race to create the counter.
        let start = Arc::new(Barrier::new(TASKS));
        let mut tasks = Vec::new();
        for _ in 0..TASKS {
            let store = store.clone();
            let start = start.clone();
            tasks.push(tokio::spawn(async move {
                start.wait().await;
                let mut mine = Vec::new();
                for _ in 0..DRAWS {
                    let t = store.begin_tenant(acme).await.expect("begin");
                    let n = crls::next_number(&t, acme, CA).await.expect("next");
                    // Hold the row a moment so the others queue behind it.
                    tokio::time::sleep(std::time::Duration::from_millis(2)).await;
                    t.commit().await.expect("commit");
                    mine.push(n);
                }
                mine
            }));
        }
        let mut all = BTreeSet::new();
        for task in tasks {
            let mine = task.await.expect("task");
            assert!(
                mine.windows(2).all(|w| w[0] < w[1]),
                "{b:?}: each caller sees its numbers increase: {mine:?}"
            );
            for n in mine {
                assert!(all.insert(n), "{b:?}: {n} drawn twice");
            }
        }
        let want: BTreeSet<u64> = (1..=(TASKS * DRAWS) as u64).collect();
        assert_eq!(all, want, "{b:?}: no gaps, no repeats");
    }
}

#[tokio::test]
async fn upsert_replaces_only_with_a_higher_number() {
    for db in each_backend().await {
        let b = db.backend();
        let acme = tenant(&db, "acme").await;
        let globex = tenant(&db, "globex").await;
        let t = tx(&db, acme).await;
        assert_eq!(crls::get(&t, acme, CA, 1, 0).await.expect("get"), None);
        assert_eq!(crls::head(&t, acme, CA, 1, 0).await.expect("head"), None);
        let first = crl(acme, CA, 1, 0, 5);
        crls::upsert(&t, &first).await.expect("insert");
        assert_eq!(
            crls::get(&t, acme, CA, 1, 0).await.expect("get"),
            Some(stored(&first)),
            "{b:?}: exact round-trip"
        );
        for stale in [5, 4, 0] {
            let refused = crls::upsert(&t, &crl(acme, CA, 1, 0, stale)).await;
            assert!(
                matches!(refused, Err(StoreError::Conflict { what: "crl" })),
                "{b:?}: number {stale} over 5: {refused:?}"
            );
        }
        assert_eq!(
            crls::get(&t, acme, CA, 1, 0).await.expect("get"),
            Some(stored(&first)),
            "{b:?}: refused, unchanged, and the transaction still usable"
        );
        let newer = crl(acme, CA, 1, 0, 6);
        crls::upsert(&t, &newer).await.expect("replace");
        assert_eq!(
            crls::get(&t, acme, CA, 1, 0).await.expect("get"),
            Some(stored(&newer)),
            "{b:?}"
        );
        assert_eq!(
            crls::head(&t, acme, CA, 1, 0).await.expect("head"),
            Some(head_of(&newer)),
            "{b:?}"
        );
        // Other shards, generations and CAs are rows of their own.
        let shard1 = crl(acme, CA, 1, 1, 2);
        let gen2 = crl(acme, CA, 2, 0, 3);
        let other = crl(acme, OTHER_CA, 1, 0, 1);
        for r in [&other, &gen2, &shard1] {
            crls::upsert(&t, r).await.expect("upsert");
        }
        let mut want = vec![
            head_of(&newer),
            head_of(&shard1),
            head_of(&gen2),
            head_of(&other),
        ];
        want.sort_by_key(|h| (h.ca_id, h.generation, h.shard));
        assert_eq!(
            crls::heads(&t, acme).await.expect("heads"),
            want,
            "{b:?}: ordered by (ca, generation, shard)"
        );
        t.commit().await.expect("commit");

        let t = tx(&db, globex).await;
        assert!(
            crls::heads(&t, globex).await.expect("heads").is_empty(),
            "{b:?}"
        );
        assert_eq!(crls::get(&t, globex, CA, 1, 0).await.expect("get"), None);
        assert_eq!(crls::head(&t, globex, CA, 1, 0).await.expect("head"), None);
        // Same scope, other tenant: its own row, whatever acme's number.
        let theirs = crl(globex, CA, 1, 0, 1);
        crls::upsert(&t, &theirs).await.expect("upsert");
        assert_eq!(
            crls::heads(&t, globex).await.expect("heads"),
            [head_of(&theirs)],
            "{b:?}"
        );
        t.commit().await.expect("commit");
        assert_eq!(
            crls::get(db.owner(), acme, CA, 1, 0)
                .await
                .expect("get")
                .map(|r| r.number),
            Some(6),
            "{b:?}: acme's untouched"
        );
    }
}
