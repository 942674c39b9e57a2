//! The `approvals` table.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "approvals")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub requester_id: Uuid,
    pub requester: String,
    pub csr_pem: String,
    pub profile: String,
    pub validity_seconds: Option<i64>,
    pub idempotency_key: Option<String>,
    pub status: String,
    pub decided_by: Option<String>,
    pub note: Option<String>,
    pub certificate_serial: Option<String>,
    pub created_at: DateTimeUtc,
    pub expires_at: DateTimeUtc,
    pub decided_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
