//! The `deployments` table.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "deployments")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub binding_id: Uuid,
    pub agent_id: Uuid,
    pub serial: String,
    pub certificate_sha256: String,
    pub not_after: DateTimeUtc,
    pub renew_at: DateTimeUtc,
    pub outcome: String,
    pub detail: String,
    pub served_sha256: String,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
