//! Manifests, indexes and image configs: OCI image manifest and index, Docker v2 schema2
//! manifest and manifest list. Anything else is refused with an error naming its media type.
//!
//! Manifests are kept as the registry's exact bytes in the content store (their digest is
//! over those bytes); the types here are read-only views parsed from them. Image configs are
//! parsed with oci-spec's `ImageConfiguration`, which reads Docker's configs too.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::platform::{self, Platform};

/// Media type strings this crate understands.
pub mod media_type {
    pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
    pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
    pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
    pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
    pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
    pub const OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
    pub const OCI_LAYER_ND: &str = "application/vnd.oci.image.layer.nondistributable.v1.tar";
    pub const OCI_LAYER_ND_GZIP: &str =
        "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip";
    pub const OCI_LAYER_ND_ZSTD: &str =
        "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd";
    pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
    pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
    pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
    pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
    /// Uncompressed layers, as `docker save` archives carry them.
    pub const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar";
    pub const DOCKER_LAYER_ZSTD: &str = "application/vnd.docker.image.rootfs.diff.tar.zstd";
    pub const DOCKER_FOREIGN_GZIP: &str =
        "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip";

    /// Every manifest and index type, in the order we ask registries for them.
    pub const MANIFESTS: &[&str] = &[OCI_INDEX, DOCKER_LIST, OCI_MANIFEST, DOCKER_MANIFEST];
}

use media_type as mt;

/// Why a manifest, index or config was refused.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("unsupported media type {media_type:?} for {what}")]
    UnsupportedMediaType {
        what: &'static str,
        media_type: String,
    },
    #[error("unsupported manifest schema version {0} (only schema version 2 is supported)")]
    SchemaVersion(u32),
    #[error("malformed {0}: no schemaVersion")]
    NoSchemaVersion(&'static str),
    #[error("malformed {what}: {source}")]
    Malformed {
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
    #[error("image has no content for platform {wanted}; available platforms: {available}")]
    PlatformNotFound { wanted: Platform, available: String },
}

impl ManifestError {
    pub fn kind(&self) -> crate::ErrorKind {
        match self {
            ManifestError::PlatformNotFound { .. } => crate::ErrorKind::NotFound,
            _ => crate::ErrorKind::InvalidArgument,
        }
    }
}

/// How a layer blob is compressed, from its media type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

impl Compression {
    /// The compression a layer media type implies; unknown types are an error naming them.
    pub fn of_layer(media_type: &str) -> Result<Compression, ManifestError> {
        match media_type {
            mt::OCI_LAYER | mt::OCI_LAYER_ND | mt::DOCKER_LAYER => Ok(Compression::None),
            mt::OCI_LAYER_GZIP
            | mt::OCI_LAYER_ND_GZIP
            | mt::DOCKER_LAYER_GZIP
            | mt::DOCKER_FOREIGN_GZIP => Ok(Compression::Gzip),
            mt::OCI_LAYER_ZSTD | mt::OCI_LAYER_ND_ZSTD | mt::DOCKER_LAYER_ZSTD => {
                Ok(Compression::Zstd)
            }
            other => Err(ManifestError::UnsupportedMediaType {
                what: "layer",
                media_type: other.to_owned(),
            }),
        }
    }
}

/// An OCI content descriptor (the JSON shape of the spec).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<PlatformJson>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub urls: Vec<String>,
}

impl Descriptor {
    /// A descriptor of `data` with the given media type.
    pub fn of(media_type: &str, data: &[u8]) -> Descriptor {
        Descriptor {
            media_type: media_type.to_owned(),
            digest: Digest::of(data),
            size: data.len() as u64,
            platform: None,
            annotations: BTreeMap::new(),
            urls: Vec::new(),
        }
    }

    /// The platform this descriptor is for, if it says.
    pub fn platform(&self) -> Option<Platform> {
        self.platform.as_ref().map(PlatformJson::to_platform)
    }

    /// Whether the descriptor points at an index rather than a single-platform manifest.
    pub fn is_index(&self) -> bool {
        self.media_type == mt::OCI_INDEX || self.media_type == mt::DOCKER_LIST
    }
}

/// A platform as it appears in an index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlatformJson {
    pub architecture: String,
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    #[serde(
        rename = "os.version",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub os_version: Option<String>,
}

impl PlatformJson {
    pub fn to_platform(&self) -> Platform {
        Platform::new(&self.os, &self.architecture, self.variant.as_deref())
    }

    pub fn from_platform(p: &Platform) -> PlatformJson {
        PlatformJson {
            architecture: p.architecture.clone(),
            os: p.os.clone(),
            variant: p.variant.clone(),
            os_version: None,
        }
    }
}

/// A single-platform image manifest (OCI or Docker schema2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageManifest {
    pub media_type: String,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
}

/// A multi-platform index (OCI index or Docker manifest list).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageIndex {
    pub media_type: String,
    pub manifests: Vec<Descriptor>,
}

/// Either kind of manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Manifest {
    Image(ImageManifest),
    Index(ImageIndex),
}

impl Manifest {
    pub fn media_type(&self) -> &str {
        match self {
            Manifest::Image(m) => &m.media_type,
            Manifest::Index(i) => &i.media_type,
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Probe {
    schema_version: Option<u32>,
    media_type: Option<String>,
    manifests: Option<serde::de::IgnoredAny>,
    config: Option<serde::de::IgnoredAny>,
}

#[derive(Deserialize)]
struct ManifestJson {
    config: Descriptor,
    #[serde(default)]
    layers: Vec<Descriptor>,
}

#[derive(Deserialize)]
struct IndexJson {
    manifests: Vec<Descriptor>,
}

/// Parses manifest bytes. The type comes from the document's `mediaType`, else from
/// `content_type` (what the registry said), else from its shape.
pub fn parse_manifest(bytes: &[u8], content_type: Option<&str>) -> Result<Manifest, ManifestError> {
    let malformed = |source| ManifestError::Malformed {
        what: "manifest",
        source,
    };
    let probe: Probe = serde_json::from_slice(bytes).map_err(malformed)?;
    let media_type = match (probe.media_type, content_type) {
        (Some(t), _) => t,
        (None, Some(t)) if mt::MANIFESTS.contains(&t) => t.to_owned(),
        (None, _) if probe.manifests.is_some() => mt::OCI_INDEX.to_owned(),
        (None, _) if probe.config.is_some() => mt::OCI_MANIFEST.to_owned(),
        (None, Some(t)) => t.to_owned(),
        (None, None) => String::from("(none)"),
    };
    match media_type.as_str() {
        mt::OCI_MANIFEST | mt::DOCKER_MANIFEST => {
            check_schema("manifest", probe.schema_version)?;
            let m: ManifestJson = serde_json::from_slice(bytes).map_err(malformed)?;
            if m.config.media_type != mt::OCI_CONFIG && m.config.media_type != mt::DOCKER_CONFIG {
                return Err(ManifestError::UnsupportedMediaType {
                    what: "image config",
                    media_type: m.config.media_type,
                });
            }
            for layer in &m.layers {
                Compression::of_layer(&layer.media_type)?;
            }
            Ok(Manifest::Image(ImageManifest {
                media_type,
                config: m.config,
                layers: m.layers,
            }))
        }
        mt::OCI_INDEX | mt::DOCKER_LIST => {
            check_schema("image index", probe.schema_version)?;
            let i: IndexJson =
                serde_json::from_slice(bytes).map_err(|source| ManifestError::Malformed {
                    what: "image index",
                    source,
                })?;
            Ok(Manifest::Index(ImageIndex {
                media_type,
                manifests: i.manifests,
            }))
        }
        _ => Err(ManifestError::UnsupportedMediaType {
            what: "manifest",
            media_type,
        }),
    }
}

fn check_schema(what: &'static str, v: Option<u32>) -> Result<(), ManifestError> {
    match v {
        Some(2) => Ok(()),
        Some(other) => Err(ManifestError::SchemaVersion(other)),
        None => Err(ManifestError::NoSchemaVersion(what)),
    }
}

impl ImageIndex {
    /// The runnable platforms the index lists (attestation entries such as
    /// `unknown/unknown` are left out).
    pub fn platforms(&self) -> Vec<Platform> {
        self.image_entries()
            .filter_map(Descriptor::platform)
            .collect()
    }

    /// The entries for runnable platforms (without attestation manifests).
    pub fn image_entries(&self) -> impl Iterator<Item = &Descriptor> {
        self.manifests.iter().filter(|d| {
            d.platform
                .as_ref()
                .is_some_and(|p| p.os != "unknown" && p.architecture != "unknown")
        })
    }

    /// The manifest for `wanted`: an exact variant match first, else the first entry
    /// matching os and architecture. A miss lists what the index has.
    pub fn select(&self, wanted: &Platform) -> Result<&Descriptor, ManifestError> {
        let candidates: Vec<&Descriptor> = self
            .image_entries()
            .filter(|d| d.platform().is_some_and(|p| wanted.matches(&p)))
            .collect();
        candidates
            .iter()
            .find(|d| d.platform().is_some_and(|p| p.variant == wanted.variant))
            .or(candidates.first())
            .copied()
            .ok_or_else(|| ManifestError::PlatformNotFound {
                wanted: wanted.clone(),
                available: platform::list(&self.platforms()),
            })
    }
}

/// What a container needs from an image config, with Docker's field meanings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ImageConfig {
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
    pub created: Option<String>,
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub env: Vec<String>,
    pub working_dir: Option<String>,
    pub user: Option<String>,
    pub stop_signal: Option<String>,
    pub exposed_ports: Vec<String>,
    pub volumes: Vec<String>,
    pub labels: BTreeMap<String, String>,
    /// Digests of the uncompressed layers, bottom first.
    pub diff_ids: Vec<String>,
    /// Docker's `HEALTHCHECK` (not part of the OCI spec; read from Docker's field).
    pub healthcheck: Option<ImageHealthcheck>,
}

/// An image's `HEALTHCHECK`, as Docker records it in `config.Healthcheck`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ImageHealthcheck {
    /// `[]` (inherit), `["NONE"]`, `["CMD", args...]` or `["CMD-SHELL", command]`.
    pub test: Vec<String>,
    /// Nanoseconds between probes (0: the default).
    pub interval_ns: u64,
    /// Nanoseconds one probe may take (0: the default).
    pub timeout_ns: u64,
    /// Nanoseconds after start during which failures do not count (0: the default).
    pub start_period_ns: u64,
    /// Consecutive failures before unhealthy (0: the default).
    pub retries: u32,
}

/// Reads `config.Healthcheck`, which oci-spec's types do not carry. Anything malformed in
/// it reads as no healthcheck: an image's optional Docker extension never fails a pull.
fn parse_healthcheck(bytes: &[u8]) -> Option<ImageHealthcheck> {
    let v: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    let h = v.get("config")?.get("Healthcheck")?.as_object()?;
    let num = |k: &str| h.get(k).and_then(serde_json::Value::as_u64).unwrap_or(0);
    let test = match h.get("Test") {
        Some(serde_json::Value::Array(items)) => items
            .iter()
            .map(|i| i.as_str().map(str::to_owned))
            .collect::<Option<Vec<String>>>()?,
        _ => Vec::new(),
    };
    Some(ImageHealthcheck {
        test,
        interval_ns: num("Interval"),
        timeout_ns: num("Timeout"),
        start_period_ns: num("StartPeriod"),
        retries: u32::try_from(num("Retries")).unwrap_or(u32::MAX),
    })
}

impl ImageConfig {
    pub fn platform(&self) -> Platform {
        Platform::new(&self.os, &self.architecture, self.variant.as_deref())
    }
}

/// Parses an OCI or Docker image config.
pub fn parse_config(bytes: &[u8]) -> Result<ImageConfig, ManifestError> {
    let c: oci_spec::image::ImageConfiguration =
        serde_json::from_slice(bytes).map_err(|source| ManifestError::Malformed {
            what: "image config",
            source,
        })?;
    let mut out = ImageConfig {
        os: c.os().to_string(),
        architecture: c.architecture().to_string(),
        variant: c.variant().clone(),
        created: c.created().clone(),
        diff_ids: c.rootfs().diff_ids().clone(),
        ..ImageConfig::default()
    };
    if let Some(cfg) = c.config() {
        out.entrypoint = cfg.entrypoint().clone().unwrap_or_default();
        out.cmd = cfg.cmd().clone().unwrap_or_default();
        out.env = cfg.env().clone().unwrap_or_default();
        out.working_dir = cfg.working_dir().clone().filter(|s| !s.is_empty());
        out.user = cfg.user().clone().filter(|s| !s.is_empty());
        out.stop_signal = cfg.stop_signal().clone();
        out.exposed_ports = cfg.exposed_ports().clone().unwrap_or_default();
        out.volumes = cfg.volumes().clone().unwrap_or_default();
        out.exposed_ports.sort();
        out.volumes.sort();
        out.labels = cfg
            .labels()
            .clone()
            .unwrap_or_default()
            .into_iter()
            .collect();
    }
    out.healthcheck = parse_healthcheck(bytes);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOCKER_CONFIG: &str = r#"{
      "architecture": "amd64", "os": "linux", "created": "2024-01-01T00:00:00Z",
      "config": {
        "Entrypoint": ["/bin/app"], "Cmd": ["--serve"], "Env": ["PATH=/bin", "A=b"],
        "WorkingDir": "/srv", "User": "1000:1000", "StopSignal": "SIGQUIT",
        "ExposedPorts": {"80/tcp": {}, "53/udp": {}}, "Volumes": {"/data": {}},
        "Labels": {"org.example": "yes"}, "Hostname": "", "Image": "sha256:abc",
        "Healthcheck": {"Test": ["CMD-SHELL", "wget -q localhost"], "Interval": 5000000000,
          "Timeout": 2000000000, "Retries": 4}
      },
      "rootfs": {"type": "layers", "diff_ids": ["sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"]},
      "history": [{"created_by": "x"}], "container_config": {"Cmd": null}
    }"#;

    #[test]
    fn reads_docker_config_fields() {
        let c = parse_config(DOCKER_CONFIG.as_bytes()).unwrap();
        assert_eq!(c.entrypoint, ["/bin/app"]);
        assert_eq!(c.cmd, ["--serve"]);
        assert_eq!(c.env, ["PATH=/bin", "A=b"]);
        assert_eq!(c.working_dir.as_deref(), Some("/srv"));
        assert_eq!(c.user.as_deref(), Some("1000:1000"));
        assert_eq!(c.stop_signal.as_deref(), Some("SIGQUIT"));
        assert_eq!(c.exposed_ports, ["53/udp", "80/tcp"]);
        assert_eq!(c.volumes, ["/data"]);
        assert_eq!(c.labels.get("org.example").map(String::as_str), Some("yes"));
        assert_eq!(c.platform().to_string(), "linux/amd64");
        assert_eq!(c.diff_ids.len(), 1);
        let h = c.healthcheck.unwrap();
        assert_eq!(h.test, ["CMD-SHELL", "wget -q localhost"]);
        assert_eq!(
            (h.interval_ns, h.timeout_ns, h.start_period_ns, h.retries),
            (5_000_000_000, 2_000_000_000, 0, 4)
        );
    }

    #[test]
    fn minimal_config_has_empty_defaults() {
        let c = parse_config(
            br#"{"architecture":"arm64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#,
        )
        .unwrap();
        assert!(c.cmd.is_empty() && c.env.is_empty() && c.user.is_none());
    }

    fn desc(mt: &str) -> String {
        format!(
            r#"{{"mediaType":"{mt}","digest":"{}","size":1}}"#,
            Digest::of(b"x")
        )
    }

    #[test]
    fn parses_both_manifest_families_and_refuses_unknown_types() {
        for (m, cfg, layer) in [
            (mt::OCI_MANIFEST, mt::OCI_CONFIG, mt::OCI_LAYER_ZSTD),
            (
                mt::DOCKER_MANIFEST,
                mt::DOCKER_CONFIG,
                mt::DOCKER_LAYER_GZIP,
            ),
        ] {
            let doc = format!(
                r#"{{"schemaVersion":2,"mediaType":"{m}","config":{},"layers":[{}]}}"#,
                desc(cfg),
                desc(layer)
            );
            let Manifest::Image(parsed) = parse_manifest(doc.as_bytes(), None).unwrap() else {
                panic!("not an image manifest")
            };
            assert_eq!(parsed.media_type, m);
            assert_eq!(parsed.layers[0].media_type, layer);
        }
        let bad_layer = format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","config":{},"layers":[{}]}}"#,
            mt::OCI_MANIFEST,
            desc(mt::OCI_CONFIG),
            desc("application/x-weird")
        );
        assert_eq!(
            parse_manifest(bad_layer.as_bytes(), None)
                .unwrap_err()
                .to_string(),
            "unsupported media type \"application/x-weird\" for layer"
        );
        let v1 = br#"{"schemaVersion":1,"mediaType":"application/vnd.docker.distribution.manifest.v1+prettyjws"}"#;
        assert!(
            parse_manifest(v1, None)
                .unwrap_err()
                .to_string()
                .contains("manifest.v1+prettyjws")
        );
    }

    #[test]
    fn index_selection_lists_available_platforms_on_a_miss() {
        let entry = |arch: &str, variant: Option<&str>| {
            let v = variant
                .map(|v| format!(r#","variant":"{v}""#))
                .unwrap_or_default();
            format!(
                r#"{{"mediaType":"{}","digest":"{}","size":1,"platform":{{"architecture":"{arch}","os":"linux"{v}}}}}"#,
                mt::OCI_MANIFEST,
                Digest::of(arch.as_bytes())
            )
        };
        let doc = format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","manifests":[{},{},{}]}}"#,
            mt::OCI_INDEX,
            entry("arm64", Some("v8")),
            entry("arm", Some("v7")),
            entry("unknown", None),
        );
        let Manifest::Index(idx) = parse_manifest(doc.as_bytes(), None).unwrap() else {
            panic!("not an index")
        };
        let arm64 = idx.select(&"linux/arm64".parse().unwrap()).unwrap();
        assert_eq!(arm64.digest, Digest::of(b"arm64"));
        assert_eq!(
            idx.select(&"linux/amd64".parse().unwrap())
                .unwrap_err()
                .to_string(),
            "image has no content for platform linux/amd64; available platforms: linux/arm64, linux/arm/v7"
        );
    }
}
