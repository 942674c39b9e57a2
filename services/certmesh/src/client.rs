//! The operator CLI: a thin gRPC client of the gateway. Prints responses as proto3 JSON (the
//! same shape as the REST API) and errors as `CODE (REASON): message`.

mod ca;
mod discovery;
mod fleet;
mod notify;

use std::fs;

use anyhow::{Context, anyhow};
use certmesh_kit::{grpc::BearerToken, reason::reason_of};
use certmesh_proto::iam::{
    self, principal_service_client::PrincipalServiceClient,
    token_service_client::TokenServiceClient,
};
use certmesh_proto::issuance::{
    self as pb, approval_service_client::ApprovalServiceClient,
    issuance_service_client::IssuanceServiceClient, profile_service_client::ProfileServiceClient,
};
use certmesh_proto::revocation::{self as rpb, revocation_service_client::RevocationServiceClient};
use serde::Serialize;
use tonic::{Status, service::interceptor::InterceptedService, transport::Channel};

pub use self::ca::{ca, ceremony};
pub use self::discovery::discovery;
pub use self::fleet::fleet;
pub use self::notify::notify;
use crate::cli::{
    ApprovalCommand, CertCommand, ClientArgs, PrincipalCommand, ProfileCommand, TokenCommand,
};

type Authed = InterceptedService<Channel, BearerToken>;

async fn channel(args: &ClientArgs) -> anyhow::Result<(Channel, BearerToken)> {
    let token = match (&args.token, &args.token_file) {
        (Some(t), _) => t.expose().clone(),
        (None, Some(path)) => {
            fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?
        }
        (None, None) => {
            return Err(anyhow!(
                "set --token, --token-file, CERTMESH_TOKEN or CERTMESH_TOKEN_FILE"
            ));
        }
    };
    let token =
        BearerToken::new(&token).context("the token has characters that cannot go in a header")?;
    let bundle = args
        .ca_bundle
        .as_ref()
        .map(|p| fs::read(p).with_context(|| format!("reading {}", p.display())))
        .transpose()?;
    let channel = certmesh_kit::grpc::endpoint(&args.gateway, bundle.as_deref())?
        .connect()
        .await
        .with_context(|| format!("connecting to {}", args.gateway))?;
    Ok((channel, token))
}

async fn issuance(args: &ClientArgs) -> anyhow::Result<IssuanceServiceClient<Authed>> {
    let (channel, token) = channel(args).await?;
    Ok(IssuanceServiceClient::with_interceptor(channel, token))
}

async fn profiles(args: &ClientArgs) -> anyhow::Result<ProfileServiceClient<Authed>> {
    let (channel, token) = channel(args).await?;
    Ok(ProfileServiceClient::with_interceptor(channel, token))
}

fn failed(status: Status) -> anyhow::Error {
    let reason = reason_of(&status).unwrap_or_else(|| "UNKNOWN".into());
    anyhow!(
        "{} ({reason}): {}",
        certmesh_gateway::code_name(status.code()),
        status.message()
    )
}

fn print_json<T: Serialize>(value: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

async fn revocations(args: &ClientArgs) -> anyhow::Result<RevocationServiceClient<Authed>> {
    let (channel, token) = channel(args).await?;
    Ok(RevocationServiceClient::with_interceptor(channel, token))
}

fn timestamp(t: chrono::DateTime<chrono::Utc>) -> pbjson_types::Timestamp {
    pbjson_types::Timestamp {
        seconds: t.timestamp(),
        nanos: i32::try_from(t.timestamp_subsec_nanos()).unwrap_or(0),
    }
}

/// `certmesh cert revoke|bulk-revoke|status`, served by the revocation role.
async fn cert_revocation(args: &ClientArgs, command: CertCommand) -> anyhow::Result<()> {
    let mut client = revocations(args).await?;
    match command {
        CertCommand::Revoke {
            serial,
            reason,
            text,
        } => {
            let request = rpb::RevokeRequest {
                serial,
                reason,
                reason_text: text,
            };
            let response = client.revoke(request).await.map_err(failed)?;
            print_json(response.get_ref())
        }
        CertCommand::BulkRevoke {
            issuer_ca_id,
            profile,
            issued_after,
            issued_before,
            reason,
            text,
            dry_run,
        } => {
            let request = rpb::BulkRevokeRequest {
                issuer_ca_id: issuer_ca_id.unwrap_or_default(),
                profile: profile.unwrap_or_default(),
                issued_after: issued_after.map(timestamp),
                issued_before: issued_before.map(timestamp),
                reason,
                reason_text: text,
                dry_run,
            };
            let response = client.bulk_revoke(request).await.map_err(failed)?;
            print_json(response.get_ref())
        }
        CertCommand::Status { serial } => {
            let response = client
                .get_status(rpb::GetStatusRequest { serial })
                .await
                .map_err(failed)?;
            print_json(response.get_ref())
        }
        other => Err(anyhow!("not a revocation command: {other:?}")),
    }
}

/// `certmesh cert …`
pub async fn cert(args: &ClientArgs, command: CertCommand) -> anyhow::Result<()> {
    if matches!(
        command,
        CertCommand::Revoke { .. } | CertCommand::BulkRevoke { .. } | CertCommand::Status { .. }
    ) {
        return cert_revocation(args, command).await;
    }
    let mut client = issuance(args).await?;
    match command {
        CertCommand::Issue {
            csr,
            profile,
            validity,
            idempotency_key,
            pem,
        } => {
            let csr =
                fs::read_to_string(&csr).with_context(|| format!("reading {}", csr.display()))?;
            let request = pb::IssueRequest {
                csr,
                profile,
                validity: validity.unwrap_or_default(),
                idempotency_key: idempotency_key.unwrap_or_default(),
            };
            let response = client.issue(request).await.map_err(failed)?.into_inner();
            if pem && response.certificate.is_none() {
                eprintln!(
                    "held for approval {}; no certificate yet",
                    response.approval_id
                );
                print_json(&response)
            } else if pem {
                let cert = response.certificate.unwrap_or_default();
                print!("{}{}", cert.certificate_pem, cert.chain_pem);
                Ok(())
            } else {
                print_json(&response)
            }
        }
        CertCommand::Get { serial } => {
            let response = client
                .get_certificate(pb::GetCertificateRequest { serial })
                .await
                .map_err(failed)?;
            print_json(response.get_ref())
        }
        CertCommand::List {
            page_size,
            page_token,
        } => {
            let request = pb::ListCertificatesRequest {
                page_size,
                page_token,
            };
            let response = client.list_certificates(request).await.map_err(failed)?;
            print_json(response.get_ref())
        }
        CertCommand::Revoke { .. }
        | CertCommand::BulkRevoke { .. }
        | CertCommand::Status { .. } => Err(anyhow!("revocation commands are handled above")),
    }
}

/// `certmesh profile …`
pub async fn profile(args: &ClientArgs, command: ProfileCommand) -> anyhow::Result<()> {
    let mut client = profiles(args).await?;
    let response = match command {
        ProfileCommand::Create { file } => {
            let text =
                fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
            let request: pb::CreateProfileRequest = serde_json::from_str(&text)
                .with_context(|| format!("{} is not a profile JSON", file.display()))?;
            client
                .create_profile(request)
                .await
                .map_err(failed)?
                .into_inner()
        }
        ProfileCommand::Get {
            name,
            version: None,
        } => client
            .get_profile(pb::GetProfileRequest { name })
            .await
            .map_err(failed)?
            .into_inner(),
        ProfileCommand::Get {
            name,
            version: Some(version),
        } => client
            .get_profile_version(pb::GetProfileVersionRequest { name, version })
            .await
            .map_err(failed)?
            .into_inner(),
        ProfileCommand::List => {
            let response = client
                .list_profiles(pb::ListProfilesRequest {})
                .await
                .map_err(failed)?;
            return print_json(response.get_ref());
        }
    };
    print_json(&response)
}

/// `certmesh approval …`
pub async fn approval(args: &ClientArgs, command: ApprovalCommand) -> anyhow::Result<()> {
    let (channel, token) = channel(args).await?;
    let mut client = ApprovalServiceClient::with_interceptor(channel, token);
    match command {
        ApprovalCommand::List { status } => {
            let request = pb::ListApprovalsRequest {
                status: status.unwrap_or_default(),
            };
            print_json(
                client
                    .list_approvals(request)
                    .await
                    .map_err(failed)?
                    .get_ref(),
            )
        }
        ApprovalCommand::Approve { id } => print_json(
            client
                .approve(pb::ApproveRequest { id })
                .await
                .map_err(failed)?
                .get_ref(),
        ),
        ApprovalCommand::Reject { id, note } => print_json(
            client
                .reject(pb::RejectRequest { id, note })
                .await
                .map_err(failed)?
                .get_ref(),
        ),
    }
}

/// `certmesh principal …`
pub async fn principal(args: &ClientArgs, command: PrincipalCommand) -> anyhow::Result<()> {
    let (channel, token) = channel(args).await?;
    let mut client = PrincipalServiceClient::with_interceptor(channel, token);
    match command {
        PrincipalCommand::Create { name, roles, kind } => {
            let request = iam::CreatePrincipalRequest { name, kind, roles };
            print_json(
                client
                    .create_principal(request)
                    .await
                    .map_err(failed)?
                    .get_ref(),
            )
        }
        PrincipalCommand::Get { name } => print_json(
            client
                .get_principal(iam::GetPrincipalRequest { name })
                .await
                .map_err(failed)?
                .get_ref(),
        ),
        PrincipalCommand::List => print_json(
            client
                .list_principals(iam::ListPrincipalsRequest {})
                .await
                .map_err(failed)?
                .get_ref(),
        ),
        PrincipalCommand::AddKey { name, public_key } => {
            let public_key_pem = fs::read_to_string(&public_key)
                .with_context(|| format!("reading {}", public_key.display()))?;
            let request = iam::AddPrincipalKeyRequest {
                name,
                public_key_pem,
            };
            print_json(
                client
                    .add_principal_key(request)
                    .await
                    .map_err(failed)?
                    .get_ref(),
            )
        }
        PrincipalCommand::Keys { name } => print_json(
            client
                .list_principal_keys(iam::ListPrincipalKeysRequest { name })
                .await
                .map_err(failed)?
                .get_ref(),
        ),
    }
}

/// `certmesh token …`
pub async fn token(command: TokenCommand) -> anyhow::Result<()> {
    match command {
        TokenCommand::Create {
            database_url: Some(url),
            tenant,
            principal,
            roles,
            name,
            expires_in,
            ..
        } => {
            let principal = principal.unwrap_or_else(|| "admin".into());
            crate::admin::bootstrap_token(
                &url,
                &tenant,
                &principal,
                &roles,
                &name,
                expires_in.as_deref(),
            )
            .await
        }
        TokenCommand::Create {
            database_url: None,
            principal,
            name,
            expires_in,
            client,
            ..
        } => {
            let (channel, token) = channel(&client).await?;
            let mut tokens = TokenServiceClient::with_interceptor(channel, token);
            let request = iam::CreateTokenRequest {
                principal: principal.unwrap_or_default(),
                name,
                expires_in: expires_in.unwrap_or_default(),
            };
            let created = tokens
                .create_token(request)
                .await
                .map_err(failed)?
                .into_inner();
            eprintln!(
                "token id {}; the secret below is shown once",
                created.info.map(|i| i.id).unwrap_or_default()
            );
            println!("{}", created.token);
            Ok(())
        }
        TokenCommand::List { principal, client } => {
            let (channel, token) = channel(&client).await?;
            let mut tokens = TokenServiceClient::with_interceptor(channel, token);
            let request = iam::ListTokensRequest {
                principal: principal.unwrap_or_default(),
            };
            print_json(tokens.list_tokens(request).await.map_err(failed)?.get_ref())
        }
        TokenCommand::Revoke { id, client } => {
            let (channel, token) = channel(&client).await?;
            let mut tokens = TokenServiceClient::with_interceptor(channel, token);
            print_json(
                tokens
                    .revoke_token(iam::RevokeTokenRequest { id })
                    .await
                    .map_err(failed)?
                    .get_ref(),
            )
        }
    }
}
