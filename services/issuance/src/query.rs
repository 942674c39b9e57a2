//! Reading issued certificates: one by serial, or pages of them.

use certmesh_crypto::serial::Serial;
use certmesh_kit::auth::AuthContext;
use certmesh_store::certificates::{self, CertificateRecord, Cursor};

use crate::{Issuance, error::IssuanceError};

/// Page size when the caller asks for none.
pub const DEFAULT_PAGE_SIZE: u32 = 50;
/// Largest page served; larger requests are served this many.
pub const MAX_PAGE_SIZE: u32 = 500;

impl Issuance {
    /// The certificate with `serial` in the caller's tenant.
    pub async fn get_certificate(
        &self,
        auth: &AuthContext,
        serial: &str,
    ) -> Result<CertificateRecord, IssuanceError> {
        let serial = Serial::from_hex(serial.trim())
            .map_err(|_| IssuanceError::SerialInvalid {
                serial: serial.to_string(),
            })?
            .to_hex();
        let tenant = auth.tenant_id;
        self.deps
            .store
            .in_tenant(tenant, async |tx| {
                certificates::get(tx, tenant, &serial).await
            })
            .await?
            .ok_or(IssuanceError::CertificateNotFound { serial })
    }

    /// One page of the caller's certificates, oldest first, and the token of the next page.
    pub async fn list_certificates(
        &self,
        auth: &AuthContext,
        page_size: u32,
        page_token: &str,
    ) -> Result<(Vec<CertificateRecord>, Option<String>), IssuanceError> {
        let limit = match page_size {
            0 => DEFAULT_PAGE_SIZE,
            n => n.min(MAX_PAGE_SIZE),
        };
        let cursor = match page_token {
            "" => None,
            token => Some(Cursor::decode(token).map_err(|_| IssuanceError::PageTokenInvalid)?),
        };
        let tenant = auth.tenant_id;
        let (records, next) = self
            .deps
            .store
            .in_tenant(tenant, async |tx| {
                certificates::list(tx, tenant, u64::from(limit), cursor.as_ref()).await
            })
            .await?;
        Ok((records, next.map(|c| c.encode())))
    }
}
