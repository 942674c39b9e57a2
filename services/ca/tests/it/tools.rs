//! The outside verifiers: openssl (custodian keys, path validation) and pkilint (RFC 5280
//! lint). Both are required, as in e2e: a missing tool fails the test rather than skipping it.

use std::{
    env, fs,
    io::Write as _,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use certmesh_crypto::cert::Certificate;
use chrono::{DateTime, Utc};

/// `openssl <args>` fed `stdin`; its standard output.
pub fn openssl_stdin(args: &[&str], stdin: &str) -> String {
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

/// `openssl verify -x509_strict` of `subject` at the test clock's time, trusting only
/// `anchors` and building through `untrusted`; panics with openssl's output if it fails.
pub fn openssl_verify(
    at: DateTime<Utc>,
    anchors: &[&Certificate],
    untrusted: &[&Certificate],
    subject: &Certificate,
) {
    if let Err(out) = try_openssl_verify(at, anchors, untrusted, subject) {
        panic!("openssl verify of {} failed:\n{out}", subject.subject());
    }
}

/// `Ok` if openssl verifies, `Err(output)` if not.
pub fn try_openssl_verify(
    at: DateTime<Utc>,
    anchors: &[&Certificate],
    untrusted: &[&Certificate],
    subject: &Certificate,
) -> Result<(), String> {
    let dir = tempfile::tempdir().expect("tempdir");
    let bundle = |certs: &[&Certificate]| certs.iter().map(|c| c.to_pem()).collect::<String>();
    let write = |name: &str, text: String| {
        let path = dir.path().join(name);
        fs::write(&path, text).expect("write PEM");
        path
    };
    let anchors = write("anchors.pem", bundle(anchors));
    let subject = write("subject.pem", subject.to_pem());
    let at = at.timestamp().to_string();
    let mut cmd = Command::new("openssl");
    cmd.args([
        "verify",
        "-x509_strict",
        "-check_ss_sig",
        "-attime",
        &at,
        "-CAfile",
    ])
    .arg(&anchors);
    if !untrusted.is_empty() {
        cmd.arg("-untrusted")
            .arg(write("untrusted.pem", bundle(untrusted)));
    }
    let out = cmd.arg(&subject).output().expect("openssl runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() && text.contains(": OK") {
        Ok(())
    } else {
        Err(text)
    }
}

/// pkilint's `lint_pkix_cert`: `CERTMESH_PKILINT` (the Makefile sets it after `make tools`)
/// or on `PATH`. Missing, the test fails rather than passes.
fn pkilint_bin() -> PathBuf {
    if let Some(path) = env::var_os("CERTMESH_PKILINT") {
        let path = PathBuf::from(path);
        assert!(
            path.is_file(),
            "CERTMESH_PKILINT={} does not exist: run `make tools`",
            path.display()
        );
        return path;
    }
    env::split_paths(&env::var_os("PATH").unwrap_or_default())
        .map(|dir| dir.join("lint_pkix_cert"))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| {
            panic!(
                "pkilint is required: run `make tools` and set \
                 CERTMESH_PKILINT=<venv>/bin/lint_pkix_cert (the Makefile does)"
            )
        })
}

/// Lints `cert` with pkilint's RFC 5280 profile; panics on any WARNING, ERROR or FATAL.
pub fn pkilint(cert: &Certificate, what: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path: &Path = &dir.path().join("cert.pem");
    fs::write(path, cert.to_pem()).expect("write PEM");
    let out = Command::new(pkilint_bin())
        .args(["lint", "--severity", "WARNING", "--document-format", "PEM"])
        .arg(path)
        .output()
        .expect("pkilint runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.trim().is_empty(),
        "pkilint findings for {what} (status {}):\n{stdout}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}
