//! The `agents` table.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "agents")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub group_name: String,
    pub hostname: String,
    pub os: String,
    pub arch: String,
    pub version: String,
    pub status: String,
    pub identity_serial: String,
    pub previous_identity_serial: Option<String>,
    pub identity_not_after: DateTimeUtc,
    pub principal_id: Uuid,
    pub enrolled_at: DateTimeUtc,
    pub last_seen_at: Option<DateTimeUtc>,
    pub retired_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
