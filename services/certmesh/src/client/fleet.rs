//! `certmesh fleet …`, served by the fleet role's FleetService.

use certmesh_proto::fleet::{self as pb, fleet_service_client::FleetServiceClient};

use super::{Authed, channel, failed, print_json};
use crate::cli::{
    AgentCommand, BindingArgs, BindingCommand, ClientArgs, FleetCommand, FleetTokenCommand,
    JobCommand,
};

async fn client(args: &ClientArgs) -> anyhow::Result<FleetServiceClient<Authed>> {
    let (channel, token) = channel(args).await?;
    Ok(FleetServiceClient::with_interceptor(channel, token))
}

fn binding_request(b: BindingArgs) -> pb::CreateBindingRequest {
    pb::CreateBindingRequest {
        name: b.name,
        agent_id: b.agent.unwrap_or_default(),
        group: b.group.unwrap_or_default(),
        certificate: Some(pb::CertificateSpec {
            common_name: b.common_name.unwrap_or_default(),
            dns_names: b.dns_names,
            ip_addresses: b.ip_addresses,
            profile: b.profile,
            key_type: b.key_type.unwrap_or_default(),
            validity: b.validity.unwrap_or_default(),
        }),
        target: Some(pb::DeployTarget {
            cert_path: b.cert_path,
            key_path: b.key_path,
            chain_path: b.chain_path.unwrap_or_default(),
            owner: b.owner.unwrap_or_default(),
            mode: b.mode.unwrap_or_default(),
            validate_command: b.validate_command.unwrap_or_default(),
            reload_command: b.reload_command.unwrap_or_default(),
            verify_endpoint: b.verify_endpoint.unwrap_or_default(),
            verify_sni: b.verify_sni.unwrap_or_default(),
        }),
    }
}

/// `certmesh fleet …`
pub async fn fleet(args: &ClientArgs, command: FleetCommand) -> anyhow::Result<()> {
    let mut c = client(args).await?;
    match command {
        FleetCommand::Token { command } => match command {
            FleetTokenCommand::Create {
                group,
                expires_in,
                description,
                secret_only,
            } => {
                let request = pb::CreateBootstrapTokenRequest {
                    group: group.unwrap_or_default(),
                    expires_in: expires_in.unwrap_or_default(),
                    description: description.unwrap_or_default(),
                };
                let response = c.create_bootstrap_token(request).await.map_err(failed)?;
                if secret_only {
                    println!("{}", response.get_ref().secret);
                    Ok(())
                } else {
                    print_json(response.get_ref())
                }
            }
            FleetTokenCommand::List => {
                let r = c
                    .list_bootstrap_tokens(pb::ListBootstrapTokensRequest {})
                    .await
                    .map_err(failed)?;
                print_json(r.get_ref())
            }
        },
        FleetCommand::Agent { command } => {
            let r = match command {
                AgentCommand::List { group } => {
                    let request = pb::ListAgentsRequest {
                        group: group.unwrap_or_default(),
                    };
                    let r = c.list_agents(request).await.map_err(failed)?;
                    return print_json(r.get_ref());
                }
                AgentCommand::Show { id } => {
                    c.get_agent(pb::GetAgentRequest { agent_id: id }).await
                }
                AgentCommand::Retire { id } => {
                    c.retire_agent(pb::RetireAgentRequest { agent_id: id })
                        .await
                }
            };
            print_json(r.map_err(failed)?.get_ref())
        }
        FleetCommand::Binding { command } => match command {
            BindingCommand::Create(b) => {
                let r = c
                    .create_binding(binding_request(*b))
                    .await
                    .map_err(failed)?;
                print_json(r.get_ref())
            }
            BindingCommand::List => {
                let r = c
                    .list_bindings(pb::ListBindingsRequest {})
                    .await
                    .map_err(failed)?;
                print_json(r.get_ref())
            }
            BindingCommand::Delete { id } => {
                let request = pb::DeleteBindingRequest { binding_id: id };
                let r = c.delete_binding(request).await.map_err(failed)?;
                print_json(r.get_ref())
            }
        },
        FleetCommand::Job { command } => match command {
            JobCommand::List {
                agent,
                binding,
                state,
                limit,
            } => {
                let request = pb::ListJobsRequest {
                    agent_id: agent.unwrap_or_default(),
                    binding_id: binding.unwrap_or_default(),
                    state: state.unwrap_or_default(),
                    limit: limit.unwrap_or_default(),
                };
                let r = c.list_jobs(request).await.map_err(failed)?;
                print_json(r.get_ref())
            }
            JobCommand::Show { id } => {
                let r = c
                    .get_job(pb::GetJobRequest { job_id: id })
                    .await
                    .map_err(failed)?;
                print_json(r.get_ref())
            }
        },
        FleetCommand::Deployments {
            agent,
            serial,
            binding,
        } => {
            let request = pb::ListDeploymentsRequest {
                agent_id: agent.unwrap_or_default(),
                serial: serial.unwrap_or_default(),
                binding_id: binding.unwrap_or_default(),
            };
            let r = c.list_deployments(request).await.map_err(failed)?;
            print_json(r.get_ref())
        }
        FleetCommand::RenewNow { serial } => {
            let r = c
                .renew_now(pb::RenewNowRequest { serial })
                .await
                .map_err(failed)?;
            print_json(r.get_ref())
        }
        FleetCommand::Redeploy { binding, agent } => {
            let r = c
                .redeploy(pb::RedeployRequest {
                    binding_id: binding,
                    agent_id: agent.unwrap_or_default(),
                })
                .await
                .map_err(failed)?;
            print_json(r.get_ref())
        }
    }
}
