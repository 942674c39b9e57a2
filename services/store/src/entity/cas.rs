//! The `cas` table.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "cas")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub name: String,
    pub parent_id: Option<Uuid>,
    pub key_ref: String,
    pub certificate_der: Vec<u8>,
    pub subject: String,
    pub not_before: DateTimeUtc,
    pub not_after: DateTimeUtc,
    pub status: String,
    pub created_at: DateTimeUtc,
    /// `root` or `intermediate`.
    pub kind: String,
    /// Null: unconstrained (or, for rows older than m0010, read from the certificate).
    pub path_len: Option<i32>,
    pub key_spec: String,
    /// JSON array of dNSName subtrees.
    pub permitted_dns: String,
    /// JSON array of dNSName subtrees.
    pub excluded_dns: String,
    pub generation: i32,
    pub key_offline: bool,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
