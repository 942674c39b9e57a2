//! `certmesh notify …`, served by the notification role's NotificationService.

use certmesh_proto::notification::{
    self as pb, notification_service_client::NotificationServiceClient,
};

use super::{Authed, channel, failed, print_json};
use crate::cli::{ChannelArgs, ChannelCommand, ClientArgs, NotifyCommand, RuleCommand};

async fn client(args: &ClientArgs) -> anyhow::Result<NotificationServiceClient<Authed>> {
    let (channel, token) = channel(args).await?;
    Ok(NotificationServiceClient::with_interceptor(channel, token))
}

fn channel_request(c: ChannelArgs) -> anyhow::Result<pb::CreateChannelRequest> {
    let secrets = c.secret_map(|var| std::env::var(var).ok())?;
    Ok(pb::CreateChannelRequest {
        name: c.name,
        kind: c.kind.as_str().to_owned(),
        config: c.config,
        secrets,
    })
}

async fn channels(args: &ClientArgs, command: ChannelCommand) -> anyhow::Result<()> {
    match command {
        ChannelCommand::Create(create) => {
            let request = channel_request(*create)?;
            let r = client(args)
                .await?
                .create_channel(request)
                .await
                .map_err(failed)?;
            print_json(r.get_ref())
        }
        ChannelCommand::List => {
            let r = client(args)
                .await?
                .list_channels(pb::ListChannelsRequest {})
                .await
                .map_err(failed)?;
            print_json(r.get_ref())
        }
        ChannelCommand::Delete { id } => {
            let request = pb::DeleteChannelRequest { channel_id: id };
            let r = client(args)
                .await?
                .delete_channel(request)
                .await
                .map_err(failed)?;
            print_json(r.get_ref())
        }
    }
}

async fn rules(
    c: &mut NotificationServiceClient<Authed>,
    command: RuleCommand,
) -> anyhow::Result<()> {
    match command {
        RuleCommand::Create {
            name,
            event_types,
            channel_ids,
        } => {
            let request = pb::CreateRuleRequest {
                name,
                event_types,
                channel_ids,
            };
            let r = c.create_rule(request).await.map_err(failed)?;
            print_json(r.get_ref())
        }
        RuleCommand::List => {
            let r = c
                .list_rules(pb::ListRulesRequest {})
                .await
                .map_err(failed)?;
            print_json(r.get_ref())
        }
        RuleCommand::Delete { id } => {
            let request = pb::DeleteRuleRequest { rule_id: id };
            let r = c.delete_rule(request).await.map_err(failed)?;
            print_json(r.get_ref())
        }
    }
}

/// `certmesh notify …`. Each command connects only once its request is built, so a bad
/// argument fails before anything is dialled.
pub async fn notify(args: &ClientArgs, command: NotifyCommand) -> anyhow::Result<()> {
    match command {
        NotifyCommand::Channels { command } => channels(args, command).await,
        NotifyCommand::Rules { command } => rules(&mut client(args).await?, command).await,
        NotifyCommand::Deliveries {
            state,
            channel_id,
            event_id,
            limit,
        } => {
            let request = pb::ListDeliveriesRequest {
                state: state.unwrap_or_default(),
                channel_id: channel_id.unwrap_or_default(),
                event_id: event_id.unwrap_or_default(),
                limit: limit.unwrap_or_default(),
            };
            let mut c = client(args).await?;
            let r = c.list_deliveries(request).await.map_err(failed)?;
            print_json(r.get_ref())
        }
        NotifyCommand::Requeue { delivery_id } => {
            let request = pb::RequeueDeliveryRequest { delivery_id };
            let mut c = client(args).await?;
            let r = c.requeue_delivery(request).await.map_err(failed)?;
            print_json(r.get_ref())
        }
        NotifyCommand::Test { channel_id } => {
            let request = pb::TestChannelRequest { channel_id };
            let mut c = client(args).await?;
            let r = c.test_channel(request).await.map_err(failed)?;
            print_json(r.get_ref())
        }
    }
}
