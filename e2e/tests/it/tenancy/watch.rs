//! The tenancy wall around discovery and notification: globex's admin cannot see, scan, claim,
//! dismiss, test, route to or requeue any of acme's targets, finds, channels, rules or
//! deliveries, and acme's names do not block globex's own.

use serde_json::json;

use super::{ABSENT_UUID, World, set};
use crate::support::{assert_eventually, unique};

/// Acme scans the gateway it talks to (loopback, allowed on this server) and gets finds;
/// globex reaches none of it.
pub(super) fn discovery_refuses_globex_on_acme(world: &World) {
    let (alice, gina) = (&world.alice, &world.gina);
    let port = world
        .alice
        .api
        .base
        .rsplit(':')
        .next()
        .and_then(|p| p.parse::<u16>().ok())
        .expect("the gateway's port");
    let target = alice
        .post(
            "CreateScanTarget",
            "/api/v1/discovery/targets",
            &json!({"name": "acme-lab", "hosts": ["127.0.0.1"], "ports": [port]}),
        )
        .ok();
    let target_id = target["id"].as_str().expect("target id").to_string();
    let scan = alice
        .post(
            "StartScan",
            &format!("/api/v1/discovery/targets/{target_id}/scan"),
            &json!({}),
        )
        .ok();
    assert_eq!(
        scan["reachable"], 1,
        "acme's scan reached the gateway: {scan}"
    );
    let scan_id = scan["id"].as_str().expect("scan id").to_string();
    let found = alice
        .get("ListDiscovered", "/api/v1/discovery/certificates")
        .ok();
    let found_id = found["certificates"][0]["id"]
        .as_str()
        .expect("acme found the gateway's certificate")
        .to_string();

    gina.assert_hidden(
        "StartScan",
        "SCAN_TARGET_NOT_FOUND",
        [&target_id, ABSENT_UUID],
        |id| {
            (
                format!("/api/v1/discovery/targets/{id}/scan"),
                Some(json!({})),
            )
        },
    );
    gina.assert_hidden(
        "DeleteScanTarget",
        "SCAN_TARGET_NOT_FOUND",
        [&target_id, ABSENT_UUID],
        |id| (format!("/api/v1/discovery/targets/{id}"), None),
    );
    gina.assert_hidden("GetScan", "SCAN_NOT_FOUND", [&scan_id, ABSENT_UUID], |id| {
        (format!("/api/v1/discovery/scans/{id}"), None)
    });
    gina.assert_hidden(
        "GetDiscovered",
        "DISCOVERED_NOT_FOUND",
        [&found_id, ABSENT_UUID],
        |id| (format!("/api/v1/discovery/certificates/{id}"), None),
    );
    gina.assert_hidden(
        "ClaimDiscovered",
        "DISCOVERED_NOT_FOUND",
        [&found_id, ABSENT_UUID],
        |id| {
            let body = json!({"group": "edge", "cert_path": "/etc/edge/tls.pem"});
            (
                format!("/api/v1/discovery/certificates/{id}/claim"),
                Some(body),
            )
        },
    );
    gina.assert_hidden(
        "DismissDiscovered",
        "DISCOVERED_NOT_FOUND",
        [&found_id, ABSENT_UUID],
        |id| {
            (
                format!("/api/v1/discovery/certificates/{id}/dismiss"),
                Some(json!({})),
            )
        },
    );
    for (rpc, path, list) in [
        ("ListScanTargets", "/api/v1/discovery/targets", "targets"),
        ("ListScans", "/api/v1/discovery/scans", "scans"),
        (
            "ListDiscovered",
            "/api/v1/discovery/certificates",
            "certificates",
        ),
    ] {
        let body = gina.get(rpc, path).ok();
        assert_eq!(body[list], json!([]), "{rpc} as globex: {body}");
    }
    let theirs = gina
        .get(
            "ListScans",
            &format!("/api/v1/discovery/scans?target_id={target_id}"),
        )
        .ok();
    assert_eq!(
        theirs["scans"],
        json!([]),
        "globex lists acme's target's scans"
    );
    // Acme's name is free in globex.
    let own = gina
        .post(
            "CreateScanTarget",
            "/api/v1/discovery/targets",
            &json!({"name": "acme-lab", "hosts": ["127.0.0.1"], "ports": [port]}),
        )
        .ok();
    assert_ne!(own["id"], target["id"]);
    // Acme's things are as they were.
    let still = alice
        .get(
            "GetDiscovered",
            &format!("/api/v1/discovery/certificates/{found_id}"),
        )
        .ok();
    assert_eq!(still["status"], "unmanaged", "{still}");
    assert_eq!(
        alice.list(
            "ListScanTargets",
            "/api/v1/discovery/targets",
            "targets",
            "id"
        ),
        set([target_id.as_str()])
    );
}

/// Acme routes every event to a webhook nobody listens on, so deliveries pile up; globex
/// reaches none of its channels, rules or deliveries.
pub(super) fn notification_refuses_globex_on_acme(world: &World) {
    let (alice, gina) = (&world.alice, &world.gina);
    let channel = alice
        .post(
            "CreateChannel",
            "/api/v1/notifications/channels",
            &json!({"name": "acme-hook", "kind": "webhook",
                    "config": {"url": "http://127.0.0.1:9/unreachable"},
                    "secrets": {"hmac_secret": "acme-webhook-secret-0123"}}),
        )
        .ok();
    let channel_id = channel["id"].as_str().expect("channel id").to_string();
    assert!(
        !channel.to_string().contains("acme-webhook-secret"),
        "a channel's secret is never returned: {channel}"
    );
    let rule = alice
        .post(
            "CreateRule",
            "/api/v1/notifications/rules",
            &json!({"name": "everything", "event_types": ["*"], "channel_ids": [&channel_id]}),
        )
        .ok();
    let rule_id = rule["id"].as_str().expect("rule id").to_string();
    // Any change is an event; the relay queues it for acme's channel.
    alice
        .post(
            "CreateScanTarget",
            "/api/v1/discovery/targets",
            &json!({"name": unique("acme-event"), "hosts": ["10.0.0.1"], "ports": [443]}),
        )
        .ok();
    let delivery_id = assert_eventually(
        "acme's events are queued",
        std::time::Duration::from_secs(60),
        || {
            let body = alice
                .get("ListDeliveries", "/api/v1/notifications/deliveries")
                .ok();
            body["deliveries"][0]["id"]
                .as_str()
                .map(str::to_owned)
                .ok_or_else(|| body.to_string())
        },
    );

    gina.assert_hidden(
        "DeleteChannel",
        "CHANNEL_NOT_FOUND",
        [&channel_id, ABSENT_UUID],
        |id| (format!("/api/v1/notifications/channels/{id}"), None),
    );
    gina.assert_hidden(
        "TestChannel",
        "CHANNEL_NOT_FOUND",
        [&channel_id, ABSENT_UUID],
        |id| {
            (
                format!("/api/v1/notifications/channels/{id}/test"),
                Some(json!({})),
            )
        },
    );
    gina.assert_hidden(
        "DeleteRule",
        "RULE_NOT_FOUND",
        [&rule_id, ABSENT_UUID],
        |id| (format!("/api/v1/notifications/rules/{id}"), None),
    );
    gina.assert_hidden(
        "RequeueDelivery",
        "DELIVERY_NOT_FOUND",
        [&delivery_id, ABSENT_UUID],
        |id| {
            (
                format!("/api/v1/notifications/deliveries/{id}/requeue"),
                Some(json!({})),
            )
        },
    );
    for id in [channel_id.as_str(), ABSENT_UUID] {
        let reply = gina.post(
            "CreateRule",
            "/api/v1/notifications/rules",
            &json!({"name": unique("steal"), "event_types": ["*"], "channel_ids": [id]}),
        );
        reply.error(400, "INVALID_ARGUMENT", "RULE_INVALID");
    }
    for (rpc, path, list) in [
        ("ListChannels", "/api/v1/notifications/channels", "channels"),
        ("ListRules", "/api/v1/notifications/rules", "rules"),
        (
            "ListDeliveries",
            "/api/v1/notifications/deliveries",
            "deliveries",
        ),
    ] {
        let body = gina.get(rpc, path).ok();
        assert_eq!(body[list], json!([]), "{rpc} as globex: {body}");
    }
    // Acme's name is free in globex, and acme's channel and rule are as they were.
    gina.post(
        "CreateChannel",
        "/api/v1/notifications/channels",
        &json!({"name": "acme-hook", "kind": "webhook",
                "config": {"url": "http://127.0.0.1:9/globex"},
                "secrets": {"hmac_secret": "globex-webhook-secret-0123"}}),
    )
    .ok();
    assert_eq!(
        alice.list(
            "ListChannels",
            "/api/v1/notifications/channels",
            "channels",
            "id"
        ),
        set([channel_id.as_str()])
    );
    assert_eq!(
        alice.list("ListRules", "/api/v1/notifications/rules", "rules", "id"),
        set([rule_id.as_str()])
    );
}
