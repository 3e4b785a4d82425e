//! A managed bucket's data as a whole, for restores and `fromSnapshot`: snapshot archives (tar
//! streams whose entries sit under the data directory's name, as [`super::volume_archive`] reads
//! them) written into Docker volumes through data helpers, containers created and never started
//! so that Docker's archive API can reach a volume without the bucket's own container.
//!
//! A restore stages the archive in a separate volume first, so the bucket's data is untouched
//! until the archive has been read whole and checked; only then is the bucket's volume made anew
//! from the staging volume, a step that can be repeated from the top until it succeeds.

use std::path::Path;
use std::pin::Pin;

use futures::{Stream, TryStreamExt};
use kalpana_manager_core::spec::{container_name, staging_volume_name, volume_name, BucketSpec};

use crate::app::AppState;
use crate::error::Result;
use crate::fault;
use crate::model::BucketRecord;

use super::{spec_for, STOP_GRACE};

/// A tar stream on its way into a volume.
pub type TarStream = Pin<Box<dyn Stream<Item = std::io::Result<bytes::Bytes>> + Send>>;

/// Where archives are extracted: the parent of the engine's data directory, since the archive's
/// entries carry the directory's own name.
fn extract_at(spec: &BucketSpec) -> String {
    Path::new(spec.engine.data_path)
        .parent()
        .map_or_else(|| "/".to_string(), |p| p.display().to_string())
}

/// Runs `tar` into `volume` through data helper `role`, which is removed afterwards whatever
/// happened.
async fn extract_into(
    state: &AppState,
    spec: &BucketSpec,
    volume: &str,
    role: &str,
    tar: TarStream,
) -> Result<()> {
    let helper = state.docker.create_helper(spec, volume, role).await?;
    let result = state
        .docker
        .upload_archive(&helper, &extract_at(spec), tar)
        .await;
    if let Err(e) = state.docker.remove_container(&helper).await {
        tracing::warn!(bucket = %spec.id, helper = %helper, error = %e, "removing a data helper failed");
    }
    Ok(result?)
}

/// Extracts `tar` into a fresh staging volume of `b`; the bucket's own data is not touched.
pub async fn stage(state: &AppState, b: &BucketRecord, tar: TarStream) -> Result<()> {
    let spec = spec_for(state, b)?;
    let volume = state.docker.fresh_staging_volume(&spec).await?;
    extract_into(state, &spec, &volume, "staging", tar).await
}

/// Whether `b` has a staging volume (a restore was interrupted after staging).
pub async fn staged(state: &AppState, b: &BucketRecord) -> Result<bool> {
    Ok(state
        .docker
        .volume_exists(&staging_volume_name(&b.id))
        .await?)
}

/// Removes the staging volume of bucket `id` and any data helper left; none is fine.
pub async fn drop_staging(state: &AppState, id: &str) -> Result<()> {
    for role in ["staging", "import", "export"] {
        let helper = kalpana_manager_core::spec::helper_name(id, role);
        state.docker.remove_container(&helper).await?;
    }
    Ok(state.docker.remove_volume(&staging_volume_name(id)).await?)
}

/// Makes the bucket's data the staged data: its container removed, its volume made anew and
/// filled from the staging volume, its container created again from the record (which writes
/// fresh internal certificates over the snapshot's); not started. Every step can be repeated,
/// so a daemon that dies part-way runs it again from the top while the staging volume exists.
/// The staging volume is left for the caller to drop once the outcome is recorded. Caller
/// holds the bucket's lock.
pub async fn replace_from_staging(state: &AppState, b: &BucketRecord) -> Result<()> {
    let spec = spec_for(state, b)?;
    let name = container_name(&b.id);
    state.docker.stop_container(&name, STOP_GRACE).await?;
    state.docker.remove_container(&name).await?;
    state.s3_clients.forget(&b.id);
    state.docker.remove_volume(&volume_name(&b.id)).await?;
    fault::point("restore.emptied");
    state.docker.ensure_network(&spec.network).await?;
    state.docker.create_volume(&spec).await?;
    let from = state
        .docker
        .create_helper(&spec, &staging_volume_name(&b.id), "export")
        .await?;
    let tar: TarStream = Box::pin(
        state
            .docker
            .archive(&from, spec.engine.data_path)
            .map_err(std::io::Error::other),
    );
    let copied = extract_into(state, &spec, &volume_name(&b.id), "import", tar).await;
    if let Err(e) = state.docker.remove_container(&from).await {
        tracing::warn!(bucket = %b.id, error = %e, "removing the export helper failed");
    }
    copied?;
    state.docker.create_container(&spec, false).await?;
    Ok(())
}

/// Fills the volume of a bucket being provisioned from `tar` (its container is not yet made).
pub async fn import(state: &AppState, b: &BucketRecord, tar: TarStream) -> Result<()> {
    let spec = spec_for(state, b)?;
    state.docker.create_volume(&spec).await?;
    extract_into(state, &spec, &volume_name(&b.id), "import", tar).await
}
