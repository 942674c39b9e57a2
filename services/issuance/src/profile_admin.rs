//! Managing profiles: each create writes a new immutable version. A version naming a tree CA
//! (`issuer_ca_id`) is written only if the tenant has that CA.

use certmesh_kit::auth::AuthContext;
use certmesh_proto::issuance as pb;
use certmesh_store::{cas, outbox, profiles};
use serde_json::json;

use crate::{
    Issuance,
    error::IssuanceError,
    profile::{ValidatedProfile, validate_name},
};

impl Issuance {
    /// Validate `spec` and store it as the next version of profile `name`.
    pub async fn create_profile(
        &self,
        auth: &AuthContext,
        name: &str,
        spec: Option<pb::ProfileSpec>,
    ) -> Result<profiles::ProfileVersion, IssuanceError> {
        validate_name(name)?;
        let spec = spec.ok_or(IssuanceError::InvalidField {
            field: "spec",
            problem: "is required".into(),
        })?;
        let profile = ValidatedProfile::validate(&spec)?;
        if let Some(id) = profile.issuer_ca_id() {
            // A read of its own before the write transaction (SQLite takes its write lock at the
            // first statement); CA rows are never deleted, so the answer stays true.
            let tenant = auth.tenant_id;
            self.deps
                .store
                .in_tenant(tenant, async |tx| cas::get(tx, tenant, id).await)
                .await?
                .ok_or(IssuanceError::CaNotFound { id })?;
        }
        let now = self.deps.clock.now();
        let tx = self.deps.store.begin_tenant(auth.tenant_id).await?;
        certmesh_store::write_lock(&tx).await?;
        let version =
            profiles::create_version(&tx, auth.tenant_id, name, profile.to_json(), now).await?;
        let event = json!({"profile": name, "version": version.version, "principal": auth.principal, "spec": version.spec});
        outbox::append(
            &tx,
            auth.tenant_id,
            "profile.version_created",
            name,
            event.clone(),
            now,
        )
        .await?;
        let entry = certmesh_kit::audit::entry(
            auth,
            "profiles.create",
            format!("profile:{name}"),
            certmesh_store::audit::Outcome::Allowed,
            event,
            now,
        );
        certmesh_store::audit::append(&tx, auth.tenant_id, &[entry]).await?;
        tx.commit()
            .await
            .map_err(certmesh_store::StoreError::from)?;
        tracing::info!(profile = %name, version = version.version, "Profile version created.");
        Ok(version)
    }

    /// The latest version of `name`, or a given version.
    pub async fn get_profile(
        &self,
        auth: &AuthContext,
        name: &str,
        version: Option<u32>,
    ) -> Result<profiles::ProfileVersion, IssuanceError> {
        let tenant = auth.tenant_id;
        let found = self
            .deps
            .store
            .in_tenant(tenant, async |tx| match version {
                None => profiles::latest(tx, tenant, name).await,
                Some(v) => profiles::version(tx, tenant, name, v).await,
            })
            .await?;
        found.ok_or_else(|| IssuanceError::ProfileNotFound {
            name: name.to_string(),
            version,
        })
    }

    /// The latest version of every profile.
    pub async fn list_profiles(
        &self,
        auth: &AuthContext,
    ) -> Result<Vec<profiles::ProfileVersion>, IssuanceError> {
        let tenant = auth.tenant_id;
        Ok(self
            .deps
            .store
            .in_tenant(tenant, async |tx| profiles::list_latest(tx, tenant).await)
            .await?)
    }
}
