//! The `revocations` table.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "revocations")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub serial: String,
    pub issuer_ca_id: Uuid,
    pub ca_generation: i32,
    pub crl_shard: i32,
    /// RFC 5280 reason name, e.g. `keyCompromise`.
    pub reason: String,
    pub reason_text: String,
    /// `revoked` or `lifted`.
    pub status: String,
    pub revoked_at: DateTimeUtc,
    pub revoked_by: String,
    pub cert_not_after: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
