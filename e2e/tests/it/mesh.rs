//! Mutual TLS between roles (`--mesh internal`): the issuance role and a gateway as two
//! processes on PostgreSQL, each with a certificate from the mesh CA derived from one secret.
//! The role refuses peers without a mesh certificate (and with one from another secret), the
//! gateway reaches it, a gateway with another secret cannot, probes answer on the plain
//! operations listener, and the role's certificate is renewed before it expires.

use std::{path::Path, process::Command, time::Duration};

use crate::support::{
    Api, PgDatabase, Process, assert_eventually, certmesh, csr, free_port, health, kek_file,
    migrated_with_token, openssl_verify, output, pem_blocks, pkilint, run, scratch, tls_identity,
    tool, web_spec, write,
};

const DOMAIN: &str = "certmesh.local";

/// `certmesh mesh secret` into a file.
fn secret_file(dir: &Path, name: &str) -> std::path::PathBuf {
    let out = run(certmesh().args(["mesh", "secret"]));
    write(&dir.join(name), out.stdout)
}

/// `certmesh mesh ca` into a file.
fn mesh_ca(dir: &Path, secret: &Path, name: &str) -> std::path::PathBuf {
    let out = run(certmesh().args(["mesh", "ca", "--secret-file"]).arg(secret));
    write(&dir.join(name), out.stdout)
}

/// `certmesh mesh issue --role <role>`: (cert, key).
fn mesh_leaf(dir: &Path, secret: &Path, role: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    let cert = dir.join(format!("{role}-mesh.pem"));
    let key = dir.join(format!("{role}-mesh.key"));
    run(certmesh()
        .args(["mesh", "issue", "--role", role, "--secret-file"])
        .arg(secret)
        .arg("--cert-out")
        .arg(&cert)
        .arg("--key-out")
        .arg(&key));
    (cert, key)
}

/// curl to the role's listener as `issuance.mesh.certmesh.local`, trusting `ca`, with an
/// optional client certificate: `Ok(status)` or the curl error.
fn curl_role(port: u16, ca: &Path, client: Option<(&Path, &Path)>) -> Result<String, String> {
    let name = format!("issuance.mesh.{DOMAIN}");
    let mut cmd = Command::new(tool("curl"));
    cmd.args([
        "--silent",
        "--show-error",
        "--max-time",
        "5",
        "--output",
        "/dev/null",
        "--write-out",
        "%{http_code}",
        "--resolve",
        &format!("{name}:{port}:127.0.0.1"),
        "--cacert",
    ])
    .arg(ca);
    if let Some((cert, key)) = client {
        cmd.arg("--cert").arg(cert).arg("--key").arg(key);
    }
    cmd.arg(format!("https://{name}:{port}/healthz"));
    let out = output(&mut cmd);
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).to_string())
    } else {
        Err(format!(
            "curl exit {:?}: {}",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// The SHA-256 fingerprint of the certificate the role serves, fetched with a mesh client
/// certificate.
fn served_fingerprint(port: u16, ca: &Path, cert: &Path, key: &Path) -> Result<String, String> {
    let out = output(
        Command::new(tool("openssl"))
            .args(["s_client", "-connect", &format!("127.0.0.1:{port}")])
            .args(["-servername", &format!("issuance.mesh.{DOMAIN}")])
            .arg("-CAfile")
            .arg(ca)
            .arg("-cert")
            .arg(cert)
            .arg("-key")
            .arg(key)
            .arg("-verify_return_error")
            .stdin(std::process::Stdio::null()),
    );
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let served = pem_blocks(&text)
        .into_iter()
        .next()
        .ok_or_else(|| format!("no certificate from s_client: {text}"))?;
    certmesh_crypto::cert::Certificate::from_pem(&served)
        .map(|c| c.fingerprint_sha256())
        .map_err(|e| e.to_string())
}

fn gateway(
    dir: &Path,
    name: &str,
    secret: &Path,
    role_addr: &str,
    tls: &(std::path::PathBuf, std::path::PathBuf),
) -> (Process, u16) {
    let port = free_port();
    let mut cmd = certmesh();
    cmd.args([
        "server",
        "--services",
        "gateway",
        "--listen",
        &format!("127.0.0.1:{port}"),
        "--mesh",
        "internal",
    ])
    .arg("--mesh-secret-file")
    .arg(secret)
    .arg("--issuance-endpoint")
    .arg(format!("https://{role_addr}"))
    .arg("--iam-endpoint")
    .arg(format!("https://{role_addr}"))
    .arg("--tls-cert")
    .arg(&tls.0)
    .arg("--tls-key")
    .arg(&tls.1);
    (Process::spawn(name, cmd, dir), port)
}

#[test]
fn roles_talk_over_mutual_tls_from_the_mesh_ca_and_refuse_strangers() {
    let db = PgDatabase::create();
    let dir = scratch();
    let (token, token_file) = migrated_with_token(&db.url, dir.path(), None);
    let secret = secret_file(dir.path(), "mesh-secret");
    let ca = mesh_ca(dir.path(), &secret, "mesh-ca.pem");
    pkilint(&ca, "mesh CA");

    // The issuance (and iam) role: its listener takes mesh peers only; probes go to --ops-listen.
    let keys = dir.path().join("keys");
    std::fs::create_dir_all(&keys).expect("key dir");
    let kek = kek_file(dir.path());
    let role_port = free_port();
    let role_addr = format!("127.0.0.1:{role_port}");
    let ops = format!("127.0.0.1:{}", free_port());
    let mut cmd = certmesh();
    cmd.args([
        "server",
        "--services",
        "issuance,iam",
        "--listen",
        &role_addr,
        "--ops-listen",
        &ops,
        "--database-url",
        &db.url,
        "--mesh",
        "internal",
        "--mesh-cert-validity",
        "12s",
    ])
    .arg("--mesh-secret-file")
    .arg(&secret)
    .arg("--key-dir")
    .arg(&keys)
    .arg("--kek-file")
    .arg(&kek);
    let mut role = Process::spawn("certmesh-issuance-mesh", cmd, dir.path());
    role.wait_until("the role's /readyz on the operations listener", || {
        let out = output(Command::new(tool("curl")).args([
            "--silent",
            "--fail",
            &format!("http://{ops}/readyz"),
        ]));
        if out.status.success() {
            Ok(())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).to_string())
        }
    });

    // No client certificate, or one from another secret: the handshake is refused.
    // (TLS 1.3 finishes the client's side of the handshake before the server's verdict, so
    // curl sees the refusal as a failed send or receive; the same call with a mesh
    // certificate below gets 200, so the certificate is what made the difference.)
    curl_role(role_port, &ca, None).expect_err("no client certificate");
    let other = secret_file(dir.path(), "other-secret");
    let (stranger_cert, stranger_key) = mesh_leaf(dir.path(), &other, "gateway");
    curl_role(role_port, &ca, Some((&stranger_cert, &stranger_key)))
        .expect_err("a certificate from another mesh secret");
    // A mesh certificate is let in (and the role serves a mesh certificate curl verifies).
    let (cert, key) = mesh_leaf(dir.path(), &secret, "gateway");
    pkilint(&cert, "mesh leaf");
    // Empty untrusted set: the leaf chains straight to the mesh CA.
    openssl_verify(&ca, &ca, &cert);
    assert_eq!(
        curl_role(role_port, &ca, Some((&cert, &key))).expect("a mesh peer"),
        "200"
    );

    // A gateway on the same secret issues through the role over mTLS.
    let (tls_ca, tls_chain, tls_key) = tls_identity(dir.path());
    let tls = (tls_chain, tls_key);
    let (mut gw, gw_port) = gateway(
        dir.path(),
        "certmesh-gateway-mesh",
        &secret,
        &role_addr,
        &tls,
    );
    let base = format!("https://127.0.0.1:{gw_port}");
    gw.wait_until("gateway /healthz", || health(&base, &tls_ca));
    let api = Api {
        base,
        ca: tls_ca.clone(),
        token: token.clone(),
        token_file: token_file.clone(),
    };
    assert_eq!(api.create_profile("web", &web_spec())["version"], 1);
    let request = csr(dir.path(), "mesh.example.com", "P-256", &[]);
    let issued = api.issue(&request, "web", None, Some("mesh-1")).ok();
    assert!(issued["certificate"]["serial"].is_string(), "{issued}");

    // A gateway holding another secret is refused by the role: 503, not a certificate.
    let (mut stranger, stranger_port) = gateway(
        dir.path(),
        "certmesh-gateway-stranger",
        &other,
        &role_addr,
        &tls,
    );
    let stranger_base = format!("https://127.0.0.1:{stranger_port}");
    stranger.wait_until("stranger gateway /healthz", || {
        health(&stranger_base, &tls_ca)
    });
    let outsider = Api {
        base: stranger_base,
        ca: tls_ca,
        token,
        token_file,
    };
    outsider
        .get("/api/v1/certificates")
        .error(503, "UNAVAILABLE", "BACKEND_UNAVAILABLE");
    stranger.stop();

    // The role renews its 12 s certificate at two thirds of its life; new handshakes get the
    // new one and the gateway keeps working.
    let first = served_fingerprint(role_port, &ca, &cert, &key).expect("served certificate");
    let second = assert_eventually(
        "the role to renew its mesh certificate",
        Duration::from_secs(30),
        || match served_fingerprint(role_port, &ca, &cert, &key) {
            Ok(f) if f != first => Ok(f),
            Ok(_) => Err("still the first certificate".to_owned()),
            Err(e) => Err(e),
        },
    );
    assert_ne!(first, second);
    let request = csr(dir.path(), "mesh2.example.com", "P-256", &[]);
    let again = api.issue(&request, "web", None, Some("mesh-2")).ok();
    assert!(again["certificate"]["serial"].is_string(), "{again}");
    assert!(
        role.log().contains("Mesh certificate renewed."),
        "the role's log should record the renewal"
    );
    gw.stop();
    role.stop();
}
