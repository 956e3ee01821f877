//! `containers/<id>/container.json`: the daemon's record of one container, and the
//! directory operations that create and delete containers crash-safely.
//!
//! The record holds the daemon's own strict types ([`crate::options`]), never a wire
//! message. Records written by earlier versions kept the user's options as base64 of the
//! protobuf `ContainerConfig` (`options_pb`); such a record is migrated when it is loaded:
//! decoded once, and the file rewritten in the current form before the daemon uses it.

use std::path::{Path, PathBuf};

use api::v1;
use base64::Engine;
use prost::Message;
use serde::{Deserialize, Serialize};

use crate::options::ContainerOptions;

/// Errors of reading and writing container records.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// A file or directory operation failed.
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// What was being done.
        op: &'static str,
        /// On what.
        path: PathBuf,
        /// Why it failed.
        #[source]
        source: std::io::Error,
    },
    /// container.json is not a record.
    #[error("{}: {message}", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// serde's or prost's words.
        message: String,
    },
}

fn io(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> RecordError {
    let path = path.to_path_buf();
    move |source| RecordError::Io { op, path, source }
}

/// Where a container is, as the daemon last recorded it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// Created, never started.
    Created,
    /// Its runtime runs it.
    Running,
    /// Its process exited (or it failed to start).
    Stopped,
}

/// The content of container.json.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContainerRecord {
    /// 64 hex digits; also the directory's name.
    pub id: String,
    /// The unique name.
    pub name: String,
    /// The image as the user wrote it.
    pub image: String,
    /// The normalised reference it resolved to (`docker.io/library/busybox:latest`).
    pub image_ref: String,
    /// The digest of the index or manifest the reference pointed at when created.
    pub image_target: String,
    /// The platform manifest's digest the container runs.
    pub image_digest: String,
    /// The platform (`linux/amd64`).
    pub platform: String,
    /// Creation time, ms since the epoch.
    pub created_ms: i64,
    /// The user's options, as the create request gave them.
    pub options: ContainerOptions,
    /// Labels, readable.
    #[serde(default)]
    pub labels: std::collections::BTreeMap<String, String>,
    /// The resolved init process (entrypoint + cmd after merging with the image).
    pub args: Vec<String>,
    /// The last recorded phase.
    pub phase: Phase,
    /// The last exit code; None while it has not exited.
    #[serde(default)]
    pub exit_code: Option<i32>,
    /// Last start, ms since the epoch (0: never).
    #[serde(default)]
    pub started_ms: i64,
    /// Last stop, ms since the epoch (0: never).
    #[serde(default)]
    pub finished_ms: i64,
    /// Why the last start failed, one line.
    #[serde(default)]
    pub error: String,
    /// The user stopped it explicitly (for the unless-stopped restart policy).
    #[serde(default)]
    pub stopped_by_user: bool,
    /// Restarts made by the restart policy since the user last started it.
    #[serde(default)]
    pub restart_count: u32,
    /// Volumes created for this container alone (`-v /path`), removed with it on request.
    #[serde(default)]
    pub anonymous_volumes: Vec<String>,
    /// The healthcheck in effect (the image's under the user's), fixed at create.
    #[serde(default)]
    pub healthcheck: Option<crate::health::HealthConfig>,
    /// Its health while it has a healthcheck, kept across daemon restarts.
    #[serde(default)]
    pub health: Option<crate::health::HealthState>,
    /// Its processes are frozen (`pause`); only while it runs.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub paused: bool,
}

impl ContainerRecord {
    /// The user's options in the API's terms.
    ///
    /// It cannot fail today; it returns a `Result` so that callers keep handling a record
    /// whose options a later version could not express.
    pub fn options(&self) -> Result<v1::ContainerConfig, RecordError> {
        Ok(v1::ContainerConfig::from(&self.options))
    }

    /// Writes the record atomically into `dir`.
    pub fn save(&self, dir: &Path) -> Result<(), RecordError> {
        let path = dir.join("container.json");
        let bytes = serde_json::to_vec_pretty(self).map_err(|e| RecordError::Corrupt {
            path: path.clone(),
            message: e.to_string(),
        })?;
        statefs::write_atomic(&path, &bytes).map_err(io("writing", &path))
    }

    /// Reads the record of the container directory `dir`, migrating (and rewriting) one
    /// an earlier version wrote.
    pub fn load(dir: &Path) -> Result<ContainerRecord, RecordError> {
        let path = dir.join("container.json");
        let bytes = std::fs::read(&path).map_err(io("reading", &path))?;
        let corrupt = |message: String| RecordError::Corrupt {
            path: path.clone(),
            message,
        };
        let mut value: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(|e| corrupt(e.to_string()))?;
        let legacy = match value.as_object_mut() {
            Some(fields) => fields.remove("options_pb"),
            None => None,
        };
        let Some(legacy) = legacy else {
            return serde_json::from_value(value).map_err(|e| corrupt(e.to_string()));
        };
        let options = legacy_options(&legacy).map_err(|e| corrupt(format!("options_pb: {e}")))?;
        let options = serde_json::to_value(&options).map_err(|e| corrupt(e.to_string()))?;
        if let Some(fields) = value.as_object_mut() {
            fields.insert("options".into(), options);
        }
        let record: ContainerRecord =
            serde_json::from_value(value).map_err(|e| corrupt(e.to_string()))?;
        record.save(dir)?;
        tracing::info!(id = %record.id, "migrated a container record from the previous format");
        Ok(record)
    }
}

/// Decodes the options of a record from before [`crate::options`]: base64 of the protobuf
/// `ContainerConfig`.
fn legacy_options(value: &serde_json::Value) -> Result<ContainerOptions, String> {
    let text = value.as_str().ok_or("not a string")?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text)
        .map_err(|e| e.to_string())?;
    let config = v1::ContainerConfig::decode(bytes.as_slice()).map_err(|e| e.to_string())?;
    Ok(ContainerOptions::from(&config))
}

/// The `containers/` directory of an app root.
#[derive(Debug, Clone)]
pub struct ContainerDirs {
    root: PathBuf,
}

const NEW_PREFIX: &str = ".new-";
const GONE_PREFIX: &str = ".gone-";

impl ContainerDirs {
    /// `<app root>/containers`, created when missing.
    pub fn open(app_root: &Path) -> Result<ContainerDirs, RecordError> {
        let root = app_root.join("containers");
        crate::fsutil::create_private_dir(&root).map_err(io("creating", &root))?;
        Ok(ContainerDirs { root })
    }

    /// A container's directory (its runtime bundle).
    pub fn dir(&self, id: &str) -> PathBuf {
        self.root.join(id)
    }

    /// Creates a container: writes its record into a hidden directory and renames it into
    /// place, so a crash leaves either nothing visible or a whole record.
    pub fn create(&self, record: &ContainerRecord) -> Result<(), RecordError> {
        let tmp = self.root.join(format!("{NEW_PREFIX}{}", record.id));
        {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .mode(0o700)
                .create(&tmp)
                .map_err(io("creating", &tmp))?;
        }
        let result = (|| {
            record.save(&tmp)?;
            let dest = self.dir(&record.id);
            std::fs::rename(&tmp, &dest).map_err(io("renaming", &dest))?;
            statefs::sync_dir(&self.root).map_err(io("syncing", &self.root))
        })();
        if result.is_err() {
            let _ = std::fs::remove_dir_all(&tmp);
        }
        result
    }

    /// Deletes a container's directory: renames it out of sight first, so a crash midway
    /// never leaves a half-deleted container that looks real.
    pub fn delete(&self, id: &str) -> Result<(), RecordError> {
        let dir = self.dir(id);
        let gone = self.root.join(format!("{GONE_PREFIX}{id}"));
        std::fs::rename(&dir, &gone).map_err(io("renaming", &dir))?;
        statefs::sync_dir(&self.root).map_err(io("syncing", &self.root))?;
        std::fs::remove_dir_all(&gone).map_err(io("removing", &gone))
    }

    /// Removes leftovers of interrupted creates and deletes; returns how many.
    pub fn clean(&self) -> Result<usize, RecordError> {
        let mut removed = 0;
        for entry in std::fs::read_dir(&self.root)
            .map_err(io("reading", &self.root))?
            .flatten()
        {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with(NEW_PREFIX) || name.starts_with(GONE_PREFIX) {
                let p = entry.path();
                std::fs::remove_dir_all(&p).map_err(io("removing", &p))?;
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// Every container directory's record; unreadable ones are reported beside.
    pub fn load_all(&self) -> Result<(Vec<ContainerRecord>, Vec<RecordError>), RecordError> {
        let mut records = Vec::new();
        let mut errors = Vec::new();
        for entry in std::fs::read_dir(&self.root)
            .map_err(io("reading", &self.root))?
            .flatten()
        {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !crate::names::is_full_id(&name) {
                continue;
            }
            match ContainerRecord::load(&entry.path()) {
                Ok(r) => records.push(r),
                Err(e) => errors.push(e),
            }
        }
        Ok((records, errors))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn sample(id: &str, name: &str) -> ContainerRecord {
        let config = v1::ContainerConfig {
            image: "busybox".into(),
            labels: vec![v1::Label {
                key: "a".into(),
                value: "b".into(),
            }],
            ..Default::default()
        };
        ContainerRecord {
            id: id.into(),
            name: name.into(),
            image: "busybox".into(),
            image_ref: "docker.io/library/busybox:latest".into(),
            image_target: "sha256:00".into(),
            image_digest: "sha256:00".into(),
            platform: "linux/amd64".into(),
            created_ms: 1,
            options: ContainerOptions::from(&config),
            labels: [("a".to_string(), "b".to_string())].into(),
            args: vec!["sh".into()],
            phase: Phase::Created,
            exit_code: None,
            started_ms: 0,
            finished_ms: 0,
            error: String::new(),
            stopped_by_user: false,
            restart_count: 0,
            anonymous_volumes: vec![],
            healthcheck: None,
            health: None,
            paused: false,
        }
    }

    #[test]
    fn create_load_delete_and_clean() {
        let dir = tempfile::tempdir().unwrap();
        let dirs = ContainerDirs::open(dir.path()).unwrap();
        let id = crate::names::new_id().unwrap();
        let rec = sample(&id, "web");
        dirs.create(&rec).unwrap();
        let (all, errors) = dirs.load_all().unwrap();
        assert_eq!(all, vec![rec.clone()]);
        assert!(errors.is_empty());
        assert_eq!(all[0].options().unwrap().labels[0].value, "b");
        // A crash mid-create or mid-delete leaves hidden dirs that clean removes.
        std::fs::create_dir(dirs.root.join(".new-abc")).unwrap();
        std::fs::create_dir(dirs.root.join(".gone-abc")).unwrap();
        assert_eq!(dirs.clean().unwrap(), 2);
        dirs.delete(&id).unwrap();
        assert_eq!(std::fs::read_dir(&dirs.root).unwrap().count(), 0);
    }

    #[test]
    fn a_record_of_the_previous_version_is_migrated_on_load() {
        let dir = tempfile::tempdir().unwrap();
        let rec = sample(&"a".repeat(64), "old");
        let config = rec.options().unwrap();
        // What the previous version wrote: the options as base64 of the protobuf.
        let mut old = serde_json::to_value(&rec).unwrap();
        let fields = old.as_object_mut().unwrap();
        fields.remove("options");
        fields.insert(
            "options_pb".into(),
            base64::engine::general_purpose::STANDARD
                .encode(config.encode_to_vec())
                .into(),
        );
        let path = dir.path().join("container.json");
        std::fs::write(&path, serde_json::to_vec(&old).unwrap()).unwrap();
        let loaded = ContainerRecord::load(dir.path()).unwrap();
        assert_eq!(loaded, rec);
        assert_eq!(loaded.options().unwrap().labels[0].key, "a");
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains("options_pb"), "rewritten: {text}");
        assert!(text.contains("\"labels\""), "{text}");
        // A record that is neither form is refused, naming the file.
        std::fs::write(&path, br#"{"id":"x","options_pb":"!!"}"#).unwrap();
        let err = ContainerRecord::load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("container.json: options_pb:"), "{err}");
    }
}
