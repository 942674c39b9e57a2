//! The notification role's gRPC handlers: bearer token and RBAC (refusals audited), then the
//! domain calls. Channel secrets go in and never come out.

use certmesh_kit::clock::timestamp;
use certmesh_kit::{audit, auth::AuthContext, rbac::Permission};
use certmesh_proto::notification::{self as pb, notification_service_server::NotificationService};
use certmesh_store::notification::{ChannelRecord, DeliveryRecord, RuleRecord};
use tonic::{Request, Response, Status};

use crate::admin::{NewChannel, secrets_of};
use crate::{Notifier, NotifyError};

fn to_struct(v: &serde_json::Value) -> Option<pbjson_types::Struct> {
    serde_json::from_value(v.clone()).ok()
}

fn channel_message(c: &ChannelRecord, public: &serde_json::Value) -> pb::Channel {
    pb::Channel {
        id: c.id.to_string(),
        name: c.name.clone(),
        kind: c.kind.clone(),
        config: to_struct(public),
        enabled: c.enabled,
        created_by: c.created_by.clone(),
        created_at: Some(timestamp(c.created_at)),
    }
}

fn rule_message(r: &RuleRecord) -> pb::Rule {
    pb::Rule {
        id: r.id.to_string(),
        name: r.name.clone(),
        event_types: r.event_types.clone(),
        channel_ids: r.channel_ids.iter().map(ToString::to_string).collect(),
        enabled: r.enabled,
        created_by: r.created_by.clone(),
        created_at: Some(timestamp(r.created_at)),
    }
}

fn delivery_message(d: &DeliveryRecord) -> pb::Delivery {
    pb::Delivery {
        id: d.id.to_string(),
        event_id: d.event_id.to_string(),
        event_type: d.event_type.clone(),
        channel_id: d.channel_id.to_string(),
        rule_id: d.rule_id.to_string(),
        state: d.state.clone(),
        attempts: d.attempts,
        next_attempt_at: Some(timestamp(d.next_attempt_at)),
        last_error: d.last_error.clone(),
        created_at: Some(timestamp(d.created_at)),
        updated_at: Some(timestamp(d.updated_at)),
        delivered_at: d.delivered_at.map(timestamp),
    }
}

impl Notifier {
    async fn authorize<T>(
        &self,
        request: &Request<T>,
        permission: Permission,
        action: &'static str,
    ) -> Result<AuthContext, Status> {
        let auth = AuthContext::of(request)?;
        audit::require(self.store(), &auth, permission, action, self.now()).await?;
        Ok(auth)
    }
}

#[tonic::async_trait]
impl NotificationService for Notifier {
    async fn create_channel(
        &self,
        request: Request<pb::CreateChannelRequest>,
    ) -> Result<Response<pb::Channel>, Status> {
        let auth = self
            .authorize(
                &request,
                Permission::NotificationsManage,
                "notification.channel.create",
            )
            .await?;
        let r = request.into_inner();
        let config = match &r.config {
            Some(s) => serde_json::to_value(s).map_err(|e| NotifyError::InvalidField {
                field: "config",
                problem: e.to_string(),
            })?,
            None => serde_json::Value::Object(serde_json::Map::new()),
        };
        let new = NewChannel {
            name: r.name,
            kind: r.kind,
            config,
            secrets: secrets_of(r.secrets),
        };
        let (rec, settings) = self.create_channel(&auth, new).await?;
        Ok(Response::new(channel_message(
            &rec,
            &settings.public_config(),
        )))
    }

    async fn list_channels(
        &self,
        request: Request<pb::ListChannelsRequest>,
    ) -> Result<Response<pb::ListChannelsResponse>, Status> {
        let auth = self
            .authorize(
                &request,
                Permission::NotificationsRead,
                "notification.channel.list",
            )
            .await?;
        let channels = Notifier::list_channels(self, &auth).await?;
        Ok(Response::new(pb::ListChannelsResponse {
            channels: channels
                .iter()
                .map(|(c, p)| channel_message(c, p))
                .collect(),
        }))
    }

    async fn delete_channel(
        &self,
        request: Request<pb::DeleteChannelRequest>,
    ) -> Result<Response<pb::DeleteChannelResponse>, Status> {
        let auth = self
            .authorize(
                &request,
                Permission::NotificationsManage,
                "notification.channel.delete",
            )
            .await?;
        Notifier::delete_channel(self, &auth, &request.get_ref().channel_id).await?;
        Ok(Response::new(pb::DeleteChannelResponse {}))
    }

    async fn test_channel(
        &self,
        request: Request<pb::TestChannelRequest>,
    ) -> Result<Response<pb::TestChannelResponse>, Status> {
        let auth = self
            .authorize(
                &request,
                Permission::NotificationsManage,
                "notification.channel.test",
            )
            .await?;
        let (event, failure) =
            Notifier::test_channel(self, &auth, &request.get_ref().channel_id).await?;
        Ok(Response::new(pb::TestChannelResponse {
            delivered: failure.is_none(),
            detail: failure.unwrap_or_default(),
            event_id: event.to_string(),
        }))
    }

    async fn create_rule(
        &self,
        request: Request<pb::CreateRuleRequest>,
    ) -> Result<Response<pb::Rule>, Status> {
        let auth = self
            .authorize(
                &request,
                Permission::NotificationsManage,
                "notification.rule.create",
            )
            .await?;
        let r = request.get_ref();
        let rule =
            Notifier::create_rule(self, &auth, &r.name, &r.event_types, &r.channel_ids).await?;
        Ok(Response::new(rule_message(&rule)))
    }

    async fn list_rules(
        &self,
        request: Request<pb::ListRulesRequest>,
    ) -> Result<Response<pb::ListRulesResponse>, Status> {
        let auth = self
            .authorize(
                &request,
                Permission::NotificationsRead,
                "notification.rule.list",
            )
            .await?;
        let rules = Notifier::list_rules(self, &auth).await?;
        Ok(Response::new(pb::ListRulesResponse {
            rules: rules.iter().map(rule_message).collect(),
        }))
    }

    async fn delete_rule(
        &self,
        request: Request<pb::DeleteRuleRequest>,
    ) -> Result<Response<pb::DeleteRuleResponse>, Status> {
        let auth = self
            .authorize(
                &request,
                Permission::NotificationsManage,
                "notification.rule.delete",
            )
            .await?;
        Notifier::delete_rule(self, &auth, &request.get_ref().rule_id).await?;
        Ok(Response::new(pb::DeleteRuleResponse {}))
    }

    async fn list_deliveries(
        &self,
        request: Request<pb::ListDeliveriesRequest>,
    ) -> Result<Response<pb::ListDeliveriesResponse>, Status> {
        let auth = self
            .authorize(
                &request,
                Permission::NotificationsRead,
                "notification.delivery.list",
            )
            .await?;
        let r = request.get_ref();
        let deliveries =
            Notifier::list_deliveries(self, &auth, &r.state, &r.channel_id, &r.event_id, r.limit)
                .await?;
        Ok(Response::new(pb::ListDeliveriesResponse {
            deliveries: deliveries.iter().map(delivery_message).collect(),
        }))
    }

    async fn requeue_delivery(
        &self,
        request: Request<pb::RequeueDeliveryRequest>,
    ) -> Result<Response<pb::Delivery>, Status> {
        let auth = self
            .authorize(
                &request,
                Permission::NotificationsManage,
                "notification.delivery.requeue",
            )
            .await?;
        let d = Notifier::requeue(self, &auth, &request.get_ref().delivery_id).await?;
        Ok(Response::new(delivery_message(&d)))
    }
}
