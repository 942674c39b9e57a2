//! The `discovered_certificates` table.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "discovered_certificates")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub fingerprint_sha256: String,
    pub location: String,
    pub source: String,
    pub agent_id: Option<Uuid>,
    pub target_id: Option<Uuid>,
    pub serial: String,
    pub subject: String,
    pub issuer: String,
    pub sans: String,
    pub not_before: DateTimeUtc,
    pub not_after: DateTimeUtc,
    pub key_type: String,
    pub key_bits: i32,
    pub signature_algorithm: String,
    pub tls_version: String,
    pub self_signed: bool,
    pub is_ca: bool,
    pub weaknesses: String,
    pub status: String,
    pub binding_id: Option<Uuid>,
    pub certificate_der: Vec<u8>,
    pub first_seen_at: DateTimeUtc,
    pub last_seen_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
