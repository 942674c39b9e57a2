//! `certmesh ceremony` and `certmesh ca`: key ceremonies and the CA tree, through the gateway.
//!
//! Approvals are signed here, on the custodian's machine: the private key is read, used and
//! wiped locally, and only the signature goes to the gateway. Gated operations send exactly the
//! parameters their ceremony fixed, so what runs is what custodians approved.

use std::{fs, path::Path};

use anyhow::{Context, bail};
use base64::{Engine, engine::general_purpose::STANDARD as BASE64};
use certmesh_crypto::{
    ceremony::{sign_with_private_key_pem, signing_message},
    cert::Certificate,
};
use certmesh_proto::ca::{self as ca_pb, ca_service_client::CaServiceClient};
use clap::ValueEnum;
use zeroize::Zeroizing;

use super::{Authed, channel, failed, print_json};
use crate::cli::{
    CaCommand, CaParamsArgs, CeremonyCommand, CeremonyPurpose, CeremonyStartArgs, ClientArgs,
};

/// Key spec of a new CA key when --key-spec is not given.
const DEFAULT_KEY_SPEC: &str = "ecdsa-p256";

async fn cas(args: &ClientArgs) -> anyhow::Result<CaServiceClient<Authed>> {
    let (channel, token) = channel(args).await?;
    Ok(CaServiceClient::with_interceptor(channel, token))
}

/// `certmesh ceremony …`
pub async fn ceremony(args: &ClientArgs, command: CeremonyCommand) -> anyhow::Result<()> {
    let mut client = cas(args).await?;
    match command {
        CeremonyCommand::Start(start) => {
            let request = start_request(*start)?;
            print_json(
                client
                    .start_ceremony(request)
                    .await
                    .map_err(failed)?
                    .get_ref(),
            )
        }
        CeremonyCommand::Show { id } => print_json(&get_ceremony(&mut client, id).await?),
        CeremonyCommand::List { status } => {
            let request = ca_pb::ListCeremoniesRequest {
                status: status.unwrap_or_default(),
            };
            print_json(
                client
                    .list_ceremonies(request)
                    .await
                    .map_err(failed)?
                    .get_ref(),
            )
        }
        CeremonyCommand::Approve { id, key } => approve(&mut client, id, &key).await,
    }
}

fn start_request(args: CeremonyStartArgs) -> anyhow::Result<ca_pb::StartCeremonyRequest> {
    let CeremonyStartArgs {
        purpose,
        threshold,
        custodians,
        expires_in,
        params,
    } = args;
    Ok(ca_pb::StartCeremonyRequest {
        purpose: purpose.as_str().into(),
        threshold,
        custodians,
        params: Some(ca_params(purpose, params)?),
        expires_in,
    })
}

/// The parameters as the API takes them: a certificate file becomes the SHA-256 of its DER, and
/// an operation that makes a key gets the default key spec unless one was given.
fn ca_params(purpose: CeremonyPurpose, args: CaParamsArgs) -> anyhow::Result<ca_pb::CaParams> {
    let CaParamsArgs {
        name,
        parent,
        ca,
        issuer,
        subject_cn,
        subject_o,
        key_spec,
        path_len,
        permit_dns,
        exclude_dns,
        validity_days,
        certificate,
        key_ref,
    } = args;
    let certificate_sha256 = match certificate {
        Some(path) => read_certificate(&path)?.1.fingerprint_sha256(),
        None => String::new(),
    };
    let key_spec = key_spec.or_else(|| purpose.makes_key().then(|| DEFAULT_KEY_SPEC.into()));
    Ok(ca_pb::CaParams {
        name: name.unwrap_or_default(),
        parent_ca_id: parent.unwrap_or_default(),
        ca_id: ca.unwrap_or_default(),
        issuer_ca_id: issuer.unwrap_or_default(),
        subject_cn: subject_cn.unwrap_or_default(),
        subject_o: subject_o.unwrap_or_default(),
        key_spec: key_spec.unwrap_or_default(),
        path_len,
        permitted_dns: permit_dns,
        excluded_dns: exclude_dns,
        validity_days: validity_days.unwrap_or_default(),
        certificate_sha256,
        key_ref: key_ref.unwrap_or_default(),
    })
}

/// A PEM certificate file, as text and parsed.
fn read_certificate(path: &Path) -> anyhow::Result<(String, Certificate)> {
    let pem = fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let cert = Certificate::from_pem(&pem)
        .with_context(|| format!("{} is not a PEM certificate", path.display()))?;
    Ok((pem, cert))
}

async fn get_ceremony(
    client: &mut CaServiceClient<Authed>,
    id: String,
) -> anyhow::Result<ca_pb::Ceremony> {
    Ok(client
        .get_ceremony(ca_pb::GetCeremonyRequest { id })
        .await
        .map_err(failed)?
        .into_inner())
}

/// `certmesh ceremony approve`: shows what is approved, signs the signing message with the
/// custodian's key here, and sends only the signature.
async fn approve(
    client: &mut CaServiceClient<Authed>,
    id: String,
    key: &Path,
) -> anyhow::Result<()> {
    // Read like a token file: never echoed, and wiped once signed.
    let key_pem = Zeroizing::new(
        fs::read_to_string(key).with_context(|| format!("reading {}", key.display()))?,
    );
    let ceremony = get_ceremony(client, id).await?;
    // Sign only the message that names the digest shown, whatever the server sent alongside.
    if ceremony.signing_message.as_bytes() != signing_message(&ceremony.digest).as_slice() {
        bail!(
            "ceremony {}: the signing message does not name its digest; not signing",
            ceremony.id
        );
    }
    eprint!("{}", approval_summary(&ceremony)?);
    let signature = sign_with_private_key_pem(&key_pem, ceremony.signing_message.as_bytes())
        .with_context(|| format!("signing with the key in {}", key.display()))?;
    let request = ca_pb::ApproveCeremonyRequest {
        id: ceremony.id,
        signature: BASE64.encode(signature),
    };
    print_json(
        client
            .approve_ceremony(request)
            .await
            .map_err(failed)?
            .get_ref(),
    )
}

/// What a custodian is about to approve, for stderr.
fn approval_summary(c: &ca_pb::Ceremony) -> anyhow::Result<String> {
    // Only the fields that are set: what the purpose takes, without the empty rest.
    let mut params = serde_json::to_value(c.params.clone().unwrap_or_default())?;
    if let Some(fields) = params.as_object_mut() {
        fields.retain(|_, v| !(v.is_null() || v.as_str() == Some("")));
    }
    let expires = serde_json::to_value(c.expires_at)?;
    Ok(format!(
        "Approving ceremony {id}\n  purpose:    {purpose}\n  params:     {params}\n  \
         threshold:  {m} of {n} ({custodians}); approved so far: {approved}\n  \
         expires at: {expires}\n  digest:     {digest}\n",
        id = c.id,
        purpose = c.purpose,
        m = c.threshold,
        n = c.custodians.len(),
        custodians = c.custodians.join(", "),
        approved = match c.approved_by.as_slice() {
            [] => "none".to_string(),
            names => names.join(", "),
        },
        expires = expires.as_str().unwrap_or("-"),
        digest = c.digest,
    ))
}

/// `certmesh ca …`
pub async fn ca(args: &ClientArgs, command: CaCommand) -> anyhow::Result<()> {
    let mut client = cas(args).await?;
    match command {
        CaCommand::Retire { id, confirm } => print_json(
            client
                .retire_ca(ca_pb::RetireCaRequest { id, confirm })
                .await
                .map_err(failed)?
                .get_ref(),
        ),
        CaCommand::List => print_json(
            client
                .list_cas(ca_pb::ListCasRequest {})
                .await
                .map_err(failed)?
                .get_ref(),
        ),
        CaCommand::Show { id } => print_json(
            client
                .get_ca(ca_pb::GetCaRequest { id })
                .await
                .map_err(failed)?
                .get_ref(),
        ),
        CaCommand::Chain { id } => {
            let chain = client
                .get_ca_chain(ca_pb::GetCaChainRequest { id })
                .await
                .map_err(failed)?
                .into_inner();
            print!("{}", chain.chain_pem);
            Ok(())
        }
        CaCommand::CreateRoot { ceremony } => create_root(&mut client, ceremony, None).await,
        CaCommand::ImportRoot {
            ceremony,
            certificate,
        } => create_root(&mut client, ceremony, Some(&certificate)).await,
        CaCommand::CreateIntermediate { ceremony } => {
            create_intermediate(&mut client, ceremony).await
        }
        CaCommand::Rotate { ceremony } => rotate(&mut client, ceremony).await,
        CaCommand::CrossSign { ceremony } => cross_sign(&mut client, ceremony).await,
    }
}

/// `certmesh ca create-root` and `import-root`: sends exactly the parameters the ceremony fixed.
async fn create_root(
    client: &mut CaServiceClient<Authed>,
    ceremony: String,
    import: Option<&Path>,
) -> anyhow::Result<()> {
    let (purpose, import) = match import {
        Some(path) => {
            let (certificate_pem, _) = read_certificate(path)?;
            let import = ca_pb::ImportedRoot { certificate_pem };
            (CeremonyPurpose::ImportRoot, Some(import))
        }
        None => (CeremonyPurpose::CreateRoot, None),
    };
    let (ceremony_id, params) = approved(client, ceremony, purpose).await?;
    let request = ca_pb::CreateRootRequest {
        ceremony_id,
        params: Some(params),
        import,
    };
    print_json(client.create_root(request).await.map_err(failed)?.get_ref())
}

/// `certmesh ca create-intermediate`: under the parent the ceremony names.
async fn create_intermediate(
    client: &mut CaServiceClient<Authed>,
    ceremony: String,
) -> anyhow::Result<()> {
    let (ceremony_id, params) =
        approved(client, ceremony, CeremonyPurpose::CreateIntermediate).await?;
    let request = ca_pb::CreateIntermediateRequest {
        parent_id: params.parent_ca_id.clone(),
        ceremony_id,
        params: Some(params),
    };
    let response = client.create_intermediate(request).await.map_err(failed)?;
    print_json(response.get_ref())
}

/// `certmesh ca rotate`: the CA the ceremony names.
async fn rotate(client: &mut CaServiceClient<Authed>, ceremony: String) -> anyhow::Result<()> {
    let (ceremony_id, params) = approved(client, ceremony, CeremonyPurpose::Rotate).await?;
    let request = ca_pb::RotateCaRequest {
        id: params.ca_id.clone(),
        ceremony_id,
        params: Some(params),
    };
    print_json(client.rotate_ca(request).await.map_err(failed)?.get_ref())
}

/// `certmesh ca cross-sign`: the CA the ceremony names; the response carries the new
/// cross-certificate.
async fn cross_sign(client: &mut CaServiceClient<Authed>, ceremony: String) -> anyhow::Result<()> {
    let (ceremony_id, params) = approved(client, ceremony, CeremonyPurpose::CrossSign).await?;
    let request = ca_pb::CrossSignCaRequest {
        id: params.ca_id.clone(),
        ceremony_id,
        params: Some(params),
    };
    print_json(
        client
            .cross_sign_ca(request)
            .await
            .map_err(failed)?
            .get_ref(),
    )
}

/// The id and parameters of ceremony `id`, refused here when it gates another operation.
async fn approved(
    client: &mut CaServiceClient<Authed>,
    id: String,
    purpose: CeremonyPurpose,
) -> anyhow::Result<(String, ca_pb::CaParams)> {
    let ceremony = get_ceremony(client, id).await?;
    if ceremony.purpose != purpose.as_str() {
        let hint = CeremonyPurpose::from_str(&ceremony.purpose, false)
            .map(|p| format!("; complete it with `certmesh ca {}`", p.command()))
            .unwrap_or_default();
        bail!(
            "ceremony {} approved {}, not {}{hint}",
            ceremony.id,
            ceremony.purpose,
            purpose.as_str(),
        );
    }
    Ok((ceremony.id, ceremony.params.unwrap_or_default()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A self-signed Ed25519 certificate; `openssl x509 -outform DER | sha256sum` of it is
    /// `FIXTURE_SHA256`.
    const FIXTURE_PEM: &str = "-----BEGIN CERTIFICATE-----
MIIBODCB66ADAgECAhQA4/7mmg+q4yzDX9lD5jr+aHca4DAFBgMrZXAwEjEQMA4G
A1UEAwwHZml4dHVyZTAeFw0yNjExMjMxNDQ1NTRaFw0yNjExMjQxNDQ1NTRaMBIx
EDAOBgNVBAMMB2ZpeHR1cmUwKjAFBgMrZXADIQDDu7h7JUv7Chzsa25svXIWvrLQ
rZR4SOCCn3Pk1y8b8aNTMFEwHQYDVR0OBBYEFI9/5rPQOGY4oRlDCDLLBinFx7Rf
MB8GA1UdIwQYMBaAFI9/5rPQOGY4oRlDCDLLBinFx7RfMA8GA1UdEwEB/wQFMAMB
Af8wBQYDK2VwA0EAo5UwsXnvdhDCd1vInglrexKuKd0nLUVg4IxBS3kQanc64i+D
eU7WeptGxUugsGraI2NYfyZjcgSif/mYKTd7Bg==
-----END CERTIFICATE-----
";
    const FIXTURE_SHA256: &str = "6c683d764974195763eb35301608f11712ef5bf7ee4fdd01bdf7546b915d319c";

    fn no_params() -> CaParamsArgs {
        CaParamsArgs {
            name: None,
            parent: None,
            ca: None,
            issuer: None,
            subject_cn: None,
            subject_o: None,
            key_spec: None,
            path_len: None,
            permit_dns: vec![],
            exclude_dns: vec![],
            validity_days: None,
            certificate: None,
            key_ref: None,
        }
    }

    #[test]
    fn key_spec_defaults_only_where_a_key_is_made() {
        for purpose in CeremonyPurpose::value_variants() {
            let params = ca_params(*purpose, no_params()).expect("params");
            let want = if purpose.makes_key() {
                "ecdsa-p256"
            } else {
                ""
            };
            assert_eq!(params.key_spec, want, "{purpose:?}");
        }
        let chosen = CaParamsArgs {
            key_spec: Some("ecdsa-p384".into()),
            ..no_params()
        };
        let params = ca_params(CeremonyPurpose::Rotate, chosen).expect("params");
        assert_eq!(params.key_spec, "ecdsa-p384");
    }

    #[test]
    fn an_imported_certificate_is_approved_by_its_der_sha256() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("root.pem");
        fs::write(&path, FIXTURE_PEM).expect("write");
        let args = CaParamsArgs {
            name: Some("offline-root".into()),
            certificate: Some(path),
            key_ref: Some("sealed:offline-root".into()),
            ..no_params()
        };
        let params = ca_params(CeremonyPurpose::ImportRoot, args).expect("params");
        assert_eq!(params.certificate_sha256, FIXTURE_SHA256);
        assert_eq!(params.key_ref, "sealed:offline-root");
        assert_eq!((params.key_spec.as_str(), params.validity_days), ("", 0));

        let not_pem = dir.path().join("root.der");
        fs::write(&not_pem, b"\x30\x03\x02\x01\x00").expect("write");
        let args = CaParamsArgs {
            certificate: Some(not_pem),
            ..no_params()
        };
        let e = ca_params(CeremonyPurpose::ImportRoot, args).expect_err("not PEM");
        assert!(
            format!("{e:#}").contains("is not a PEM certificate"),
            "{e:#}"
        );
    }

    #[test]
    fn the_summary_shows_what_the_custodian_signs() {
        let ceremony = ca_pb::Ceremony {
            id: "c-1".into(),
            purpose: "create_root".into(),
            params: Some(ca_pb::CaParams {
                name: "ops-root".into(),
                subject_cn: "Ops Root".into(),
                path_len: Some(2),
                ..Default::default()
            }),
            digest: "ab12".into(),
            signing_message: "certmesh-ceremony-v1:ab12".into(),
            threshold: 2,
            custodians: vec!["alice".into(), "bob".into(), "carol".into()],
            approved_by: vec!["bob".into()],
            ..Default::default()
        };
        let text = approval_summary(&ceremony).expect("summary");
        for want in [
            "ceremony c-1",
            "create_root",
            r#""name":"ops-root""#,
            r#""path_len":2"#,
            r#""permitted_dns":[]"#,
            "2 of 3 (alice, bob, carol)",
            "approved so far: bob",
            "digest:     ab12",
        ] {
            assert!(text.contains(want), "{want} in\n{text}");
        }
        assert!(
            !text.contains("ca_id"),
            "empty fields are left out:\n{text}"
        );
    }
}
