//! Rename: a container's name changes, its ID stays.

use api::ApiError;

use crate::daemon::Daemon;

impl Daemon {
    /// Gives a container a new name (the rules of a create's name, unique among
    /// containers), with Docker's `rename` event carrying `oldName`. A running container's
    /// DNS name on its networks follows at its next start.
    pub fn rename_container(&self, key: &str, name: &str) -> Result<(), ApiError> {
        spec::validate_container_name(name)
            .map_err(|e| ApiError::invalid_argument(e.to_string()))?;
        let id = self.lookup(key)?;
        let old = self.record(&id)?.name;
        if old == name {
            return Err(ApiError::invalid_argument(format!(
                "renaming container {name}: the new name is the same as the old one"
            )));
        }
        {
            // The check and the change under one lock, as create's, so two renames cannot
            // take one name.
            let mut map = self.containers.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(other) = map.values().find(|e| e.record.name == name) {
                return Err(ApiError::already_exists(format!(
                    "the container name {name} is already in use by container {}: remove it or choose another name",
                    &other.record.id[..12.min(other.record.id.len())]
                )));
            }
            let entry = map
                .get_mut(&id)
                .ok_or_else(|| ApiError::not_found(format!("container {key} not found")))?;
            let mut next = entry.record.clone();
            next.name = name.to_owned();
            next.save(&self.dirs.dir(&id))
                .map_err(|e| ApiError::internal(e.to_string()))?;
            entry.record = next;
        }
        self.notify();
        let r = self.record(&id)?;
        self.container_event(&r, "rename", &[("oldName", format!("/{old}"))]);
        tracing::info!(%id, %old, new = %name, "container renamed");
        Ok(())
    }
}
