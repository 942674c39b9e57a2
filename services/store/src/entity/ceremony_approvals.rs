//! The `ceremony_approvals` table: one row per (ceremony, custodian).

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "ceremony_approvals")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub ceremony_id: Uuid,
    #[sea_orm(primary_key, auto_increment = false)]
    pub principal_id: Uuid,
    pub tenant_id: Uuid,
    pub key_id: Uuid,
    pub signature: Vec<u8>,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
