//! The `certificates` table.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "certificates")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub serial: String,
    pub issuer_ca_id: Uuid,
    pub profile_name: String,
    pub profile_version: i32,
    pub subject: String,
    pub sans: String,
    pub not_before: DateTimeUtc,
    pub not_after: DateTimeUtc,
    pub fingerprint_sha256: String,
    pub certificate_der: Vec<u8>,
    pub chain_pem: String,
    pub created_at: DateTimeUtc,
    pub crl_shard: i32,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
