//! `certmesh discovery …`, served by the discovery role's DiscoveryService.

use certmesh_proto::discovery::{self as pb, discovery_service_client::DiscoveryServiceClient};

use super::{Authed, channel, failed, print_json};
use crate::cli::{ClaimArgs, ClientArgs, DiscoveryCommand, ListDiscoveredArgs, ScanTargetCommand};

async fn client(args: &ClientArgs) -> anyhow::Result<DiscoveryServiceClient<Authed>> {
    let (channel, token) = channel(args).await?;
    Ok(DiscoveryServiceClient::with_interceptor(channel, token))
}

fn list_request(l: ListDiscoveredArgs) -> pb::ListDiscoveredRequest {
    pb::ListDiscoveredRequest {
        expiring_within_days: l.expiring_within_days.unwrap_or_default(),
        status: l.status.unwrap_or_default(),
        weak: l.weak,
        self_signed: l.self_signed,
        issuer: l.issuer.unwrap_or_default(),
        source: l.source.unwrap_or_default(),
        limit: l.limit.unwrap_or_default(),
    }
}

fn claim_request(c: ClaimArgs) -> pb::ClaimDiscoveredRequest {
    pb::ClaimDiscoveredRequest {
        id: c.id,
        agent_id: c.agent.unwrap_or_default(),
        group: c.group.unwrap_or_default(),
        name: c.name.unwrap_or_default(),
        profile: c.profile.unwrap_or_default(),
        key_type: c.key_type.unwrap_or_default(),
        cert_path: c.cert_path.unwrap_or_default(),
        key_path: c.key_path.unwrap_or_default(),
        chain_path: c.chain_path.unwrap_or_default(),
        reload_command: c.reload_command.unwrap_or_default(),
        validate_command: c.validate_command.unwrap_or_default(),
        verify_endpoint: c.verify_endpoint.unwrap_or_default(),
    }
}

async fn targets(
    c: &mut DiscoveryServiceClient<Authed>,
    command: ScanTargetCommand,
) -> anyhow::Result<()> {
    match command {
        ScanTargetCommand::Create {
            name,
            hosts,
            ports,
            sni,
            interval,
        } => {
            let request = pb::CreateScanTargetRequest {
                name,
                hosts,
                ports: ports.into_iter().map(u32::from).collect(),
                sni,
                interval: interval.unwrap_or_default(),
            };
            let r = c.create_scan_target(request).await.map_err(failed)?;
            print_json(r.get_ref())
        }
        ScanTargetCommand::List => {
            let r = c
                .list_scan_targets(pb::ListScanTargetsRequest {})
                .await
                .map_err(failed)?;
            print_json(r.get_ref())
        }
        ScanTargetCommand::Delete { id } => {
            let request = pb::DeleteScanTargetRequest { target_id: id };
            let r = c.delete_scan_target(request).await.map_err(failed)?;
            print_json(r.get_ref())
        }
    }
}

/// `certmesh discovery …`
pub async fn discovery(args: &ClientArgs, command: DiscoveryCommand) -> anyhow::Result<()> {
    let mut c = client(args).await?;
    match command {
        DiscoveryCommand::Targets { command } => targets(&mut c, command).await,
        DiscoveryCommand::Scan { target_id } => {
            let r = c
                .start_scan(pb::StartScanRequest { target_id })
                .await
                .map_err(failed)?;
            print_json(r.get_ref())
        }
        DiscoveryCommand::Scans { target_id, limit } => {
            let request = pb::ListScansRequest {
                target_id: target_id.unwrap_or_default(),
                limit: limit.unwrap_or_default(),
            };
            let r = c.list_scans(request).await.map_err(failed)?;
            print_json(r.get_ref())
        }
        DiscoveryCommand::ScanShow { scan_id } => {
            let r = c
                .get_scan(pb::GetScanRequest { scan_id })
                .await
                .map_err(failed)?;
            print_json(r.get_ref())
        }
        DiscoveryCommand::List(l) => {
            let r = c.list_discovered(list_request(l)).await.map_err(failed)?;
            print_json(r.get_ref())
        }
        DiscoveryCommand::Show { id, pem } => {
            let r = c
                .get_discovered(pb::GetDiscoveredRequest { id })
                .await
                .map_err(failed)?;
            if pem {
                print!("{}", r.get_ref().certificate_pem);
                Ok(())
            } else {
                print_json(r.get_ref())
            }
        }
        DiscoveryCommand::Claim(claim) => {
            let r = c
                .claim_discovered(claim_request(*claim))
                .await
                .map_err(failed)?;
            print_json(r.get_ref())
        }
        DiscoveryCommand::Dismiss { id } => {
            let r = c
                .dismiss_discovered(pb::DismissDiscoveredRequest { id })
                .await
                .map_err(failed)?;
            print_json(r.get_ref())
        }
    }
}
