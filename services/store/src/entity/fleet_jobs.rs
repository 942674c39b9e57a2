//! The `fleet_jobs` table.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "fleet_jobs")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub binding_id: Uuid,
    pub agent_id: Uuid,
    pub kind: String,
    pub state: String,
    pub open_key: Option<String>,
    pub attempts: i32,
    pub max_attempts: i32,
    pub not_before: DateTimeUtc,
    pub outcome: String,
    pub detail: String,
    pub serial: String,
    pub cert_sha256: String,
    pub cert_not_after: Option<DateTimeUtc>,
    pub cert_renew_at: Option<DateTimeUtc>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
