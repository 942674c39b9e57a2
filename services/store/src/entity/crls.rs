//! The `crls` table.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "crls")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub ca_id: Uuid,
    pub generation: i32,
    pub shard: i32,
    pub number: i64,
    pub this_update: DateTimeUtc,
    pub next_update: DateTimeUtc,
    pub der: Vec<u8>,
    pub sha256: String,
    pub entries: i64,
    pub created_at: DateTimeUtc,
}

/// A row without its DER, for listings.
#[derive(Clone, Debug, PartialEq, Eq, DerivePartialModel)]
#[sea_orm(entity = "Entity")]
pub struct Head {
    pub ca_id: Uuid,
    pub generation: i32,
    pub shard: i32,
    pub number: i64,
    pub this_update: DateTimeUtc,
    pub next_update: DateTimeUtc,
    pub sha256: String,
    pub entries: i64,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
