//! Shared test fixtures: a real `docker-registry` process on 127.0.0.1 and small images
//! built in the test itself.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use oci::manifest::media_type as mt;
use oci::{Descriptor, Digest, ImageRef, Progress, ProgressEvent, Store};

/// Debian's `docker-registry` (distribution 2.8) serving a temp dir on a free loopback port.
/// Killed (by its own pid) on drop.
pub struct TestRegistry {
    child: Child,
    pub addr: String,
    pub dir: tempfile::TempDir,
}

impl TestRegistry {
    pub fn start() -> TestRegistry {
        Self::start_inner(None)
    }

    /// With htpasswd basic auth for `user`/`pass`.
    pub fn start_with_auth(user: &str, pass: &str) -> TestRegistry {
        Self::start_inner(Some((user, pass)))
    }

    fn start_inner(auth: Option<(&str, &str)>) -> TestRegistry {
        let dir = tempfile::tempdir().unwrap();
        let auth_yaml = match auth {
            Some((u, p)) => {
                let out = Command::new("htpasswd")
                    .args(["-Bbn", u, p])
                    .output()
                    .unwrap();
                assert!(out.status.success(), "htpasswd failed");
                std::fs::write(dir.path().join("htpasswd"), &out.stdout).unwrap();
                format!(
                    "auth:\n  htpasswd:\n    realm: test-realm\n    path: {}\n",
                    dir.path().join("htpasswd").display()
                )
            }
            None => String::new(),
        };
        Self::start_yaml(dir, auth_yaml)
    }

    /// With the bearer-token flow: tokens from `realm`, signed by the certificate at `cert`.
    pub fn start_with_token_auth(realm: &str, cert: &Path) -> TestRegistry {
        let yaml = format!(
            "auth:\n  token:\n    realm: {realm}\n    service: test-registry\n    issuer: test-issuer\n    rootcertbundle: {}\n",
            cert.display()
        );
        Self::start_yaml(tempfile::tempdir().unwrap(), yaml)
    }

    /// Serving HTTPS with a certificate for 127.0.0.1 issued by a private test CA;
    /// returns the CA certificate (PEM).
    pub fn start_tls() -> (TestRegistry, Vec<u8>) {
        let dir = tempfile::tempdir().unwrap();
        let p = |n: &str| dir.path().join(n);
        let openssl = |args: &[&str]| {
            let ok = Command::new("openssl")
                .args(args)
                .current_dir(dir.path())
                .stderr(Stdio::null())
                .status()
                .expect("openssl must be installed");
            assert!(ok.success(), "openssl {args:?}");
        };
        openssl(&[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=test-ca",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
        ]);
        openssl(&[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            "tls.key",
            "-out",
            "tls.csr",
        ]);
        std::fs::write(
            p("ext.cnf"),
            "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
        )
        .unwrap();
        openssl(&[
            "x509",
            "-req",
            "-in",
            "tls.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-set_serial",
            "1",
            "-days",
            "2",
            "-extfile",
            "ext.cnf",
            "-out",
            "tls.crt",
        ]);
        let pem = std::fs::read(p("ca.crt")).unwrap();
        let (cert, key) = (p("tls.crt"), p("tls.key"));
        let tls = format!(
            "  tls:\n    certificate: {}\n    key: {}\n",
            cert.display(),
            key.display()
        );
        (Self::start_yaml_tls(dir, String::new(), &tls), pem)
    }

    fn start_yaml(dir: tempfile::TempDir, auth_yaml: String) -> TestRegistry {
        Self::start_yaml_tls(dir, auth_yaml, "")
    }

    fn start_yaml_tls(dir: tempfile::TempDir, auth_yaml: String, tls: &str) -> TestRegistry {
        for _ in 0..5 {
            // The port is free when we look; another process could take it before the
            // registry binds, in which case the registry exits and we try another.
            let port = TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let addr = format!("127.0.0.1:{port}");
            let config = format!(
                "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {addr}\n  secret: test-secret\n{tls}{auth_yaml}",
                dir.path().join("storage").display()
            );
            let cfg = dir.path().join("config.yml");
            std::fs::write(&cfg, config).unwrap();
            let log = std::fs::File::create(dir.path().join("registry.log")).unwrap();
            let mut child = Command::new("docker-registry")
                .arg("serve")
                .arg(&cfg)
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .expect("docker-registry must be installed");
            let deadline = Instant::now() + Duration::from_secs(15);
            while Instant::now() < deadline {
                if child.try_wait().unwrap().is_some() {
                    break;
                }
                let ready = if tls.is_empty() {
                    answers_v2(&addr)
                } else {
                    TcpStream::connect(&addr).is_ok()
                };
                if ready {
                    return TestRegistry { child, addr, dir };
                }
                std::thread::sleep(Duration::from_millis(25));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!(
            "docker-registry did not start: {}",
            std::fs::read_to_string(dir.path().join("registry.log")).unwrap_or_default()
        );
    }

    /// `addr/repo:tag` as a reference.
    pub fn image(&self, repo_tag: &str) -> ImageRef {
        ImageRef::parse(&format!("{}/{repo_tag}", self.addr)).unwrap()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }
}

fn answers_v2(addr: &str) -> bool {
    let Ok(mut s) = TcpStream::connect(addr) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(
        format!("GET /v2/ HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .is_err()
    {
        return false;
    }
    let mut buf = String::new();
    let _ = s.read_to_string(&mut buf);
    buf.starts_with("HTTP/1.1 200") || buf.starts_with("HTTP/1.1 401")
}

impl Drop for TestRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Comp {
    None,
    Gzip,
    Zstd,
}

/// A layer: files (path, content) packed as a tar, then compressed.
pub struct LayerSpec {
    pub comp: Comp,
    pub files: Vec<(String, Vec<u8>)>,
}

pub fn layer(comp: Comp, files: &[(&str, &[u8])]) -> LayerSpec {
    LayerSpec {
        comp,
        files: files
            .iter()
            .map(|(p, c)| (p.to_string(), c.to_vec()))
            .collect(),
    }
}

pub fn tar_of(files: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (path, content) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(content.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(1_700_000_000);
        h.set_uid(0);
        h.set_gid(0);
        h.set_entry_type(tar::EntryType::Regular);
        b.append_data(&mut h, path, content.as_slice()).unwrap();
    }
    b.into_inner().unwrap()
}

/// Pseudo-random bytes that do not compress (for multi-chunk uploads).
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407)
        | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

pub struct BuiltImage {
    pub name: ImageRef,
    pub manifest: Descriptor,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
    /// Uncompressed tar of each layer.
    pub tars: Vec<Vec<u8>>,
}

/// Builds an OCI image in `store` (blobs + manifest) and names it `name`.
pub fn build_image(store: &Store, name: &str, arch: &str, layers: &[LayerSpec]) -> BuiltImage {
    let mut descs = Vec::new();
    let mut tars = Vec::new();
    let mut diff_ids = Vec::new();
    for l in layers {
        let tar = tar_of(&l.files);
        diff_ids.push(Digest::of(&tar).to_string());
        let (media_type, blob) = match l.comp {
            Comp::None => (mt::OCI_LAYER, tar.clone()),
            Comp::Gzip => {
                let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                e.write_all(&tar).unwrap();
                (mt::OCI_LAYER_GZIP, e.finish().unwrap())
            }
            Comp::Zstd => (
                mt::OCI_LAYER_ZSTD,
                zstd::encode_all(tar.as_slice(), 3).unwrap(),
            ),
        };
        store.content().write_blob(&blob, None).unwrap();
        descs.push(Descriptor::of(media_type, &blob));
        tars.push(tar);
    }
    let config = serde_json::json!({
        "architecture": arch, "os": "linux", "created": "2026-11-23T00:00:00Z",
        "config": {"Cmd": ["/bin/sh"], "Env": ["PATH=/bin"], "WorkingDir": "/",
                   "Labels": {"test.name": name}},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    });
    let config = serde_json::to_vec(&config).unwrap();
    store.content().write_blob(&config, None).unwrap();
    let config_desc = Descriptor::of(mt::OCI_CONFIG, &config);
    let manifest = serde_json::json!({
        "schemaVersion": 2, "mediaType": mt::OCI_MANIFEST,
        "config": config_desc, "layers": descs,
    });
    let manifest = serde_json::to_vec(&manifest).unwrap();
    store.content().write_blob(&manifest, None).unwrap();
    let mdesc = Descriptor::of(mt::OCI_MANIFEST, &manifest);
    let name = ImageRef::parse(name).unwrap();
    store.put_image(&name, &mdesc).unwrap();
    BuiltImage {
        name,
        manifest: mdesc,
        config: config_desc,
        layers: descs,
        tars,
    }
}

/// Builds an OCI index over already-built images and names it.
pub fn build_index(store: &Store, name: &str, entries: &[(&BuiltImage, &str)]) -> Descriptor {
    let manifests: Vec<serde_json::Value> = entries
        .iter()
        .map(|(img, arch)| {
            let mut d = serde_json::to_value(&img.manifest).unwrap();
            d["platform"] = serde_json::json!({"architecture": arch, "os": "linux"});
            d
        })
        .collect();
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": mt::OCI_INDEX, "manifests": manifests,
    }))
    .unwrap();
    store.content().write_blob(&index, None).unwrap();
    let d = Descriptor::of(mt::OCI_INDEX, &index);
    store
        .put_image(&ImageRef::parse(name).unwrap(), &d)
        .unwrap();
    d
}

/// Records progress events and the most blob downloads seen in flight at once.
#[derive(Default)]
pub struct Recorder {
    pub events: Mutex<Vec<ProgressEvent>>,
    in_flight: Mutex<(usize, usize)>,
}

impl Recorder {
    pub fn max_in_flight(&self) -> usize {
        self.in_flight.lock().unwrap().1
    }

    pub fn events(&self) -> Vec<ProgressEvent> {
        self.events.lock().unwrap().clone()
    }

    pub fn count(&self, f: impl Fn(&ProgressEvent) -> bool) -> usize {
        self.events().iter().filter(|e| f(e)).count()
    }
}

impl Progress for Recorder {
    fn event(&self, e: ProgressEvent) {
        {
            let mut g = self.in_flight.lock().unwrap();
            match &e {
                ProgressEvent::BlobStarted { .. } => {
                    g.0 += 1;
                    g.1 = g.1.max(g.0);
                }
                ProgressEvent::BlobDone { .. } => g.0 = g.0.saturating_sub(1),
                _ => {}
            }
        }
        if !matches!(e, ProgressEvent::BlobProgress { .. }) {
            self.events.lock().unwrap().push(e);
        }
    }
}

/// Files in the store's ingest area (should be empty after any finished operation).
pub fn ingest_files(root: &Path) -> Vec<String> {
    std::fs::read_dir(root.join("content/ingest"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

/// Reads every (path, content) of a tar stream.
pub fn tar_entries(mut r: impl Read) -> Vec<(String, Vec<u8>)> {
    let mut buf = Vec::new();
    r.read_to_end(&mut buf).unwrap();
    let mut a = tar::Archive::new(buf.as_slice());
    a.entries()
        .unwrap()
        .map(|e| {
            let mut e = e.unwrap();
            let p = e.path().unwrap().to_string_lossy().into_owned();
            let mut c = Vec::new();
            e.read_to_end(&mut c).unwrap();
            (p, c)
        })
        .collect()
}
