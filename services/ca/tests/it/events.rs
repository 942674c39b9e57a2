//! What the role tells the rest of the system (outbox events) and the auditors (the audit
//! trail, with every approval's signature and key).

use std::collections::BTreeSet;

use certmesh_proto::ca::{self as pb, ca_service_server::CaService};
use certmesh_store::audit::Outcome;
use serde_json::Value;
use tonic::Code;

use crate::harness::{each_backend, refused, req, root_params, sign_b64};

fn field(v: &Value, name: &str) -> String {
    v[name].as_str().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn every_step_is_an_event_and_every_approval_an_audit_entry() {
    for h in each_backend().await {
        let t = h.tree().await;
        let rotate = pb::CaParams {
            ca_id: t.a.id.to_string(),
            key_spec: "ecdsa-p256".into(),
            validity_days: 365,
            ..Default::default()
        };
        let rotation = h.approved("rotate", &rotate).await;
        h.ca.rotate(&h.op(), &t.a.id.to_string(), &rotation, &rotate)
            .await
            .expect("rotated");
        let r2 = h
            .root(&root_params("second-root", "Second Root", None))
            .await
            .ca;
        let cross = pb::CaParams {
            ca_id: t.policy.id.to_string(),
            issuer_ca_id: r2.id.to_string(),
            validity_days: 365,
            ..Default::default()
        };
        let crossing = h.approved("cross_sign", &cross).await;
        h.ca.cross_sign(&h.op(), &t.policy.id.to_string(), &crossing, &cross)
            .await
            .expect("cross-signed");
        h.ca.retire(&h.op(), &t.b.id.to_string(), false)
            .await
            .expect("drains");
        h.ca.retire(&h.op(), &t.b.id.to_string(), true)
            .await
            .expect("retires");

        let ceremonies = h.ceremonies().await;
        assert_eq!(ceremonies.len(), 7, "{}", h.backend);
        assert!(
            ceremonies
                .iter()
                .all(|c| c.record.status.as_str() == "completed")
        );
        let ids: BTreeSet<String> = ceremonies.iter().map(|c| c.record.id.to_string()).collect();
        let ceremony_ids = |events: &[Value]| -> BTreeSet<String> {
            events.iter().map(|e| field(e, "ceremony_id")).collect()
        };

        let started = h.events("ceremony.started").await;
        assert_eq!(
            (started.len(), ceremony_ids(&started)),
            (7, ids.clone()),
            "{}",
            h.backend
        );
        let approved = h.events("ceremony.approved").await;
        assert_eq!(approved.len(), 21, "3 approvals for each of 7 ceremonies");
        assert_eq!(ceremony_ids(&approved), ids);
        let fingerprints: BTreeSet<String> =
            h.custodians.iter().map(|c| c.key.fingerprint()).collect();
        assert!(
            approved
                .iter()
                .all(|e| fingerprints.contains(&field(e, "key_fingerprint")))
        );
        let completed = h.events("ceremony.completed").await;
        assert_eq!(
            (completed.len(), ceremony_ids(&completed)),
            (7, ids.clone())
        );
        for c in &ceremonies {
            let id = c.record.id.to_string();
            let e = completed
                .iter()
                .find(|e| field(e, "ceremony_id") == id)
                .expect("completed");
            assert_eq!(
                Some(field(e, "ca_id")),
                c.record.result_ca_id.map(|r| r.to_string())
            );
        }

        let roots = h.events("ca.root.created").await;
        let intermediates = h.events("ca.intermediate.created").await;
        let rotated = h.events("ca.rotated").await;
        let crossed = h.events("ca.cross_signed").await;
        assert_eq!(
            (
                roots.len(),
                intermediates.len(),
                rotated.len(),
                crossed.len()
            ),
            (2, 3, 1, 1),
            "{}",
            h.backend
        );
        for e in roots.iter().chain(&intermediates) {
            assert!(ids.contains(&field(e, "ceremony_id")), "{e}");
        }
        assert_eq!(field(&rotated[0], "ceremony_id"), rotation);
        assert_eq!(field(&rotated[0], "ca_id"), t.a.id.to_string());
        assert_eq!(rotated[0]["generation"], 2);
        assert_eq!(field(&crossed[0], "ceremony_id"), crossing);
        assert_eq!(field(&crossed[0], "issuer_ca_id"), r2.id.to_string());
        for kind in ["ca.retiring", "ca.retired"] {
            let events = h.events(kind).await;
            assert_eq!(events.len(), 1, "{kind}");
            assert_eq!(field(&events[0], "ca_id"), t.b.id.to_string(), "{kind}");
        }

        // Each approval is audited with the signature as sent and the key that verified it.
        let ceremony = h
            .start(
                "create_root",
                &root_params("third-root", "Third Root", None),
            )
            .await;
        let id = ceremony.record.id.to_string();
        let mut sent = Vec::new();
        for c in &h.custodians[..3] {
            let signature = c.sign(&ceremony);
            h.ca.approve(&c.actor(), &id, &signature)
                .await
                .expect("approved");
            sent.push((c.name.clone(), signature, c.key.fingerprint()));
        }
        let resource = format!("ceremony:{id}");
        let entries: Vec<_> = h
            .audit("ceremonies.approve")
            .await
            .into_iter()
            .filter(|e| e.resource == resource)
            .collect();
        let got: Vec<(String, String, String)> = entries
            .iter()
            .map(|e| {
                (
                    e.actor.clone(),
                    field(&e.details, "signature"),
                    field(&e.details, "key_fingerprint"),
                )
            })
            .collect();
        assert_eq!(got, sent, "{}", h.backend);
        assert!(entries.iter().all(|e| e.outcome == Outcome::Allowed));
        assert_eq!(h.audit("ceremonies.approve").await.len(), 24);

        // A refused approval is audited as denied.
        let c4 = &h.custodians[3];
        let forged = sign_b64(&h.custodians[0].private_pem, &ceremony.record.digest);
        let request = pb::ApproveCeremonyRequest {
            id: id.clone(),
            signature: forged,
        };
        assert_eq!(
            refused(CaService::approve_ceremony(&h.ca, req(&c4.auth, request)).await),
            (Code::PermissionDenied, "CEREMONY_SIGNATURE_INVALID".into()),
            "{}",
            h.backend
        );
        let denied: Vec<_> = h
            .audit("ceremonies.approve")
            .await
            .into_iter()
            .filter(|e| e.outcome == Outcome::Denied)
            .collect();
        assert_eq!(denied.len(), 1, "{}", h.backend);
        assert_eq!(
            (denied[0].actor.as_str(), denied[0].resource.as_str()),
            ("c4", resource.as_str())
        );
        assert_eq!(
            field(&denied[0].details, "reason"),
            "CEREMONY_SIGNATURE_INVALID"
        );
        assert_eq!(h.events("ceremony.approved").await.len(), 24);
    }
}
