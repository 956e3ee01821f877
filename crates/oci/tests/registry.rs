//! Push and pull against a real `docker-registry` on 127.0.0.1.

mod common;

use std::sync::Arc;

use common::*;
use oci::{
    Credential, CredentialChain, CredentialStore, FileCredentialStore, ImageRef, NoProgress,
    ProgressEvent, PullOptions, PushOptions, RegistryClient, RegistryConfig, Store, open_layer,
};

fn client(
    dir: &std::path::Path,
    config: RegistryConfig,
) -> (RegistryClient, Arc<FileCredentialStore>) {
    let creds = Arc::new(FileCredentialStore::new(dir.join("credentials.json")));
    let chain: Arc<dyn CredentialStore> = Arc::new(CredentialChain::new(vec![creds.clone()]));
    (RegistryClient::new(config, chain).unwrap(), creds)
}

fn three_layer_image(store: &Store, name: &str) -> BuiltImage {
    let big = noise(9 << 20, 7); // > 2 upload chunks of 4 MiB
    build_image(
        store,
        name,
        "amd64",
        &[
            layer(Comp::None, &[("etc/hostname", b"plain\n")]),
            layer(
                Comp::Gzip,
                &[("bin/big", &big), ("etc/motd", b"gzip layer\n")],
            ),
            layer(Comp::Zstd, &[("etc/zstd", b"zstd layer\n")]),
        ],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_then_pull_into_fresh_store_round_trips_digests() {
    let reg = TestRegistry::start();
    let work = tempfile::tempdir().unwrap();
    let src = Arc::new(Store::open(work.path().join("src")).unwrap());
    let img = three_layer_image(&src, "local/app:v1");
    let (client, _) = client(work.path(), RegistryConfig::default());
    let remote = reg.image("test/app:v1");

    let pushed = client
        .push(
            &src,
            &img.name,
            Some(&remote),
            &PushOptions::default(),
            &NoProgress,
        )
        .await
        .unwrap();
    assert_eq!(pushed, img.manifest.digest);

    // Pushing again uploads nothing: every blob answers the HEAD check.
    let again = Recorder::default();
    client
        .push(
            &src,
            &img.name,
            Some(&remote),
            &PushOptions::default(),
            &again,
        )
        .await
        .unwrap();
    assert_eq!(
        again.count(|e| matches!(e, ProgressEvent::BlobSkipped { .. })),
        4
    );
    assert_eq!(
        again.count(|e| matches!(e, ProgressEvent::BlobStarted { .. })),
        0
    );

    let dst = Arc::new(Store::open(work.path().join("dst")).unwrap());
    let rec = Recorder::default();
    let pulled = client
        .pull(&dst, &remote, &PullOptions::default(), &rec)
        .await
        .unwrap();
    assert_eq!(pulled.target.digest, img.manifest.digest);
    assert_eq!(pulled.name, remote);
    assert!(
        rec.max_in_flight() <= 3,
        "in flight {}",
        rec.max_in_flight()
    );
    // Exactly the same blobs, byte for byte.
    assert_eq!(dst.content().list().unwrap(), src.content().list().unwrap());
    for d in src.content().list().unwrap() {
        assert_eq!(
            std::fs::read(dst.content().path(&d)).unwrap(),
            std::fs::read(src.content().path(&d)).unwrap()
        );
    }
    // And the layers decompress to the tars we built, whatever their compression.
    let resolved = dst.resolve(&remote, None).unwrap();
    assert_eq!(resolved.config.cmd, ["/bin/sh"]);
    for (l, tar) in resolved.manifest.layers.iter().zip(&img.tars) {
        let mut out = Vec::new();
        std::io::copy(&mut open_layer(dst.content(), l).unwrap(), &mut out).unwrap();
        assert_eq!(&out, tar, "layer {}", l.media_type);
    }
    assert!(ingest_files(dst.root()).is_empty());

    // Pull by digest finds the same manifest.
    let by_digest = remote.with_digest(img.manifest.digest.clone());
    let again = Arc::new(Store::open(work.path().join("dst2")).unwrap());
    let p = client
        .pull(&again, &by_digest, &PullOptions::default(), &NoProgress)
        .await
        .unwrap();
    assert_eq!(p.target.digest, img.manifest.digest);

    // A remote tag points at the same manifest.
    let v2 = reg.image("test/app:v2");
    assert_eq!(client.tag(&remote, &v2).await.unwrap(), img.manifest.digest);
    let p = client
        .pull(&again, &v2, &PullOptions::default(), &NoProgress)
        .await
        .unwrap();
    assert_eq!(p.target.digest, img.manifest.digest);

    let missing = reg.image("test/app:nope");
    let err = client
        .pull(&again, &missing, &PullOptions::default(), &NoProgress)
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("{missing} not found in registry {}", reg.addr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn monolithic_push_and_single_download_at_a_time() {
    let reg = TestRegistry::start();
    let work = tempfile::tempdir().unwrap();
    let src = Arc::new(Store::open(work.path().join("src")).unwrap());
    let img = three_layer_image(&src, "local/mono:v1");
    let (client, _) = client(
        work.path(),
        RegistryConfig {
            monolithic_push: true,
            max_concurrent_downloads: 1,
            ..RegistryConfig::default()
        },
    );
    let remote = reg.image("test/mono:v1");
    client
        .push(
            &src,
            &img.name,
            Some(&remote),
            &PushOptions::default(),
            &NoProgress,
        )
        .await
        .unwrap();
    let dst = Arc::new(Store::open(work.path().join("dst")).unwrap());
    let rec = Recorder::default();
    client
        .pull(&dst, &remote, &PullOptions::default(), &rec)
        .await
        .unwrap();
    assert_eq!(rec.max_in_flight(), 1);
    assert_eq!(
        rec.count(|e| matches!(e, ProgressEvent::BlobDone { .. })),
        4
    );
    assert_eq!(dst.content().list().unwrap(), src.content().list().unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interrupted_download_resumes_with_a_range_request() {
    let reg = TestRegistry::start();
    let work = tempfile::tempdir().unwrap();
    let src = Arc::new(Store::open(work.path().join("src")).unwrap());
    let img = three_layer_image(&src, "local/resume:v1");
    let (client, _) = client(work.path(), RegistryConfig::default());
    let remote = reg.image("test/resume:v1");
    client
        .push(
            &src,
            &img.name,
            Some(&remote),
            &PushOptions::default(),
            &NoProgress,
        )
        .await
        .unwrap();

    // What a crash half-way through the big layer leaves behind.
    let big = &img.layers[1];
    let blob = std::fs::read(src.content().path(&big.digest)).unwrap();
    let half = blob.len() / 2;
    let dst_root = work.path().join("dst");
    std::fs::create_dir_all(dst_root.join("content/ingest")).unwrap();
    std::fs::write(
        dst_root.join(format!(
            "content/ingest/sha256-{}.partial",
            big.digest.hex()
        )),
        &blob[..half],
    )
    .unwrap();
    // A corrupt partial for the zstd layer: the resumed result fails its digest check,
    // is thrown away, and the retry downloads it whole.
    let z = &img.layers[2];
    let zlen = std::fs::metadata(src.content().path(&z.digest))
        .unwrap()
        .len() as usize;
    std::fs::write(
        dst_root.join(format!("content/ingest/sha256-{}.partial", z.digest.hex())),
        vec![0xAA; zlen / 2],
    )
    .unwrap();

    let dst = Arc::new(Store::open(&dst_root).unwrap());
    let rec = Recorder::default();
    client
        .pull(&dst, &remote, &PullOptions::default(), &rec)
        .await
        .unwrap();
    let resumed: Vec<u64> = rec
        .events()
        .iter()
        .filter_map(|e| match e {
            ProgressEvent::BlobStarted {
                digest,
                resumed_from,
                ..
            } if *digest == big.digest => Some(*resumed_from),
            _ => None,
        })
        .collect();
    assert_eq!(resumed, [half as u64]);
    assert_eq!(
        rec.count(
            |e| matches!(e, ProgressEvent::BlobRetrying { digest, .. } if *digest == z.digest)
        ),
        1
    );
    assert_eq!(
        std::fs::read(dst.content().path(&big.digest)).unwrap(),
        blob
    );
    assert_eq!(dst.content().list().unwrap(), src.content().list().unwrap());
    assert!(ingest_files(dst.root()).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_auth_wrong_password_refused_right_password_works() {
    let reg = TestRegistry::start_with_auth("alice", "correct horse");
    let work = tempfile::tempdir().unwrap();
    let src = Arc::new(Store::open(work.path().join("src")).unwrap());
    let img = build_image(
        &src,
        "local/auth:v1",
        "amd64",
        &[layer(Comp::Gzip, &[("a", b"a")])],
    );
    let (client, creds) = client(work.path(), RegistryConfig::default());
    let remote = reg.image("private/app:v1");

    let err = client
        .push(
            &src,
            &img.name,
            Some(&remote),
            &PushOptions::default(),
            &NoProgress,
        )
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "registry {0} requires authentication; log in with `container registry login {0}`",
            reg.addr
        )
    );

    let wrong = Credential {
        username: "alice".into(),
        secret: "wrong".into(),
    };
    let err = client.login(&reg.addr, &wrong).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "authentication to registry {} failed: wrong username or password",
            reg.addr
        )
    );
    assert!(
        creds.list().unwrap().is_empty(),
        "a failed login stores nothing"
    );

    // Credentials that were stored some other way and are wrong fail the same way on use.
    creds.store(&reg.addr, &wrong).unwrap();
    let err = client
        .push(
            &src,
            &img.name,
            Some(&remote),
            &PushOptions::default(),
            &NoProgress,
        )
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("wrong username or password"),
        "{err}"
    );

    let right = Credential {
        username: "alice".into(),
        secret: "correct horse".into(),
    };
    client.login(&reg.addr, &right).await.unwrap();
    assert_eq!(
        creds.list().unwrap(),
        [(reg.addr.clone(), "alice".to_owned())]
    );
    client
        .push(
            &src,
            &img.name,
            Some(&remote),
            &PushOptions::default(),
            &NoProgress,
        )
        .await
        .unwrap();
    let dst = Arc::new(Store::open(work.path().join("dst")).unwrap());
    let p = client
        .pull(&dst, &remote, &PullOptions::default(), &NoProgress)
        .await
        .unwrap();
    assert_eq!(p.target.digest, img.manifest.digest);

    assert!(client.logout(&reg.addr).await.unwrap());
    let dst2 = Arc::new(Store::open(work.path().join("dst2")).unwrap());
    let err = client
        .pull(&dst2, &remote, &PullOptions::default(), &NoProgress)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("requires authentication"), "{err}");
    assert!(dst2.content().list().unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn platform_selection_and_missing_platform() {
    let reg = TestRegistry::start();
    let work = tempfile::tempdir().unwrap();
    let src = Arc::new(Store::open(work.path().join("src")).unwrap());
    let amd = build_image(
        &src,
        "local/amd:1",
        "amd64",
        &[layer(Comp::Gzip, &[("arch", b"amd64")])],
    );
    let arm = build_image(
        &src,
        "local/arm:1",
        "arm64",
        &[layer(Comp::Zstd, &[("arch", b"arm64")])],
    );
    let index = build_index(&src, "local/multi:1", &[(&amd, "amd64"), (&arm, "arm64")]);
    let (client, _) = client(work.path(), RegistryConfig::default());
    let remote = reg.image("test/multi:1");
    let d = client
        .push(
            &src,
            &ImageRef::parse("local/multi:1").unwrap(),
            Some(&remote),
            &PushOptions::default(),
            &NoProgress,
        )
        .await
        .unwrap();
    assert_eq!(d, index.digest);

    // Default: the host platform only.
    let host = Arc::new(Store::open(work.path().join("host")).unwrap());
    let p = client
        .pull(&host, &remote, &PullOptions::default(), &NoProgress)
        .await
        .unwrap();
    assert_eq!(p.target.digest, index.digest);
    let want = if cfg!(target_arch = "aarch64") {
        &arm
    } else {
        &amd
    };
    let other = if cfg!(target_arch = "aarch64") {
        &amd
    } else {
        &arm
    };
    assert_eq!(p.manifests.len(), 1);
    assert_eq!(p.manifests[0].digest, want.manifest.digest);
    assert!(!host.content().contains(&other.layers[0].digest));
    assert_eq!(
        host.resolve(&remote, None)
            .unwrap()
            .manifest_descriptor
            .digest,
        want.manifest.digest
    );

    // Saving a partly pulled index writes the platform that is present.
    let mut tar = Vec::new();
    oci::save(&host, std::slice::from_ref(&remote), None, &mut tar).unwrap();
    let loaded_store = Store::open(work.path().join("loaded")).unwrap();
    let names = oci::load(&loaded_store, tar.as_slice()).unwrap().names;
    assert_eq!(names, std::slice::from_ref(&remote));
    assert_eq!(
        loaded_store.image(&remote).unwrap().target.digest,
        want.manifest.digest
    );

    // Explicit platform.
    let explicit = Arc::new(Store::open(work.path().join("explicit")).unwrap());
    let opts = PullOptions {
        platform: Some("linux/arm64/v8".parse().unwrap()),
        all_platforms: false,
    };
    let p = client
        .pull(&explicit, &remote, &opts, &NoProgress)
        .await
        .unwrap();
    assert_eq!(p.manifests[0].digest, arm.manifest.digest);
    let all = Arc::new(Store::open(work.path().join("all")).unwrap());
    let opts = PullOptions {
        platform: None,
        all_platforms: true,
    };
    let p = client
        .pull(&all, &remote, &opts, &NoProgress)
        .await
        .unwrap();
    assert_eq!(p.manifests.len(), 2);
    assert_eq!(all.content().list().unwrap(), src.content().list().unwrap());

    // Missing platform: a one-line error listing what exists, and nothing stored.
    let none = Arc::new(Store::open(work.path().join("none")).unwrap());
    let opts = PullOptions {
        platform: Some("linux/s390x".parse().unwrap()),
        all_platforms: false,
    };
    let err = client
        .pull(&none, &remote, &opts, &NoProgress)
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "image has no content for platform linux/s390x; available platforms: linux/amd64, linux/arm64"
    );
    // A single-platform image checks its config's platform too.
    let single = reg.image("test/amd:1");
    client
        .push(
            &src,
            &amd.name,
            Some(&single),
            &PushOptions::default(),
            &NoProgress,
        )
        .await
        .unwrap();
    let opts = PullOptions {
        platform: Some("linux/arm64".parse().unwrap()),
        all_platforms: false,
    };
    let err = client
        .pull(&none, &single, &opts, &NoProgress)
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "image has no content for platform linux/arm64; available platforms: linux/amd64"
    );
    assert!(none.images().unwrap().is_empty());
    assert!(none.content().list().unwrap().is_empty());
    assert!(ingest_files(none.root()).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_media_type_is_refused_before_downloading() {
    let reg = TestRegistry::start();
    let work = tempfile::tempdir().unwrap();
    let src = Arc::new(Store::open(work.path().join("src")).unwrap());
    let img = build_image(
        &src,
        "local/odd:1",
        "amd64",
        &[layer(Comp::Gzip, &[("a", b"a")])],
    );
    let (client, _) = client(work.path(), RegistryConfig::default());
    let remote = reg.image("test/odd:1");
    client
        .push(
            &src,
            &img.name,
            Some(&remote),
            &PushOptions::default(),
            &NoProgress,
        )
        .await
        .unwrap();

    // Rewrite the manifest with a layer type nobody knows and PUT it as another tag.
    let mut m: serde_json::Value =
        serde_json::from_slice(&src.content().read(&img.manifest.digest).unwrap()).unwrap();
    m["layers"][0]["mediaType"] = "application/vnd.example.weird.layer".into();
    let body = serde_json::to_vec(&m).unwrap();
    let url = format!("http://{}/v2/test/odd/manifests/weird", reg.addr);
    let resp = reqwest::Client::new()
        .put(url)
        .header("Content-Type", oci::media_type::OCI_MANIFEST)
        .body(body)
        .send()
        .await
        .unwrap();
    assert!(
        resp.status().is_success(),
        "registry refused: {}",
        resp.status()
    );

    let dst = Arc::new(Store::open(work.path().join("dst")).unwrap());
    let err = client
        .pull(
            &dst,
            &reg.image("test/odd:weird"),
            &PullOptions::default(),
            &NoProgress,
        )
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "unsupported media type \"application/vnd.example.weird.layer\" for layer"
    );
    assert!(dst.content().list().unwrap().is_empty());
    assert!(dst.images().unwrap().is_empty());
    assert!(ingest_files(dst.root()).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_hub_names_pull_through_a_configured_mirror() {
    let reg = TestRegistry::start();
    let work = tempfile::tempdir().unwrap();
    let src = Arc::new(Store::open(work.path().join("src")).unwrap());
    let img = build_image(
        &src,
        "local/bb:1",
        "amd64",
        &[layer(Comp::Gzip, &[("bin/sh", b"sh")])],
    );
    let (plain, _) = client(work.path(), RegistryConfig::default());
    plain
        .push(
            &src,
            &img.name,
            Some(&reg.image("library/busybox:latest")),
            &PushOptions::default(),
            &NoProgress,
        )
        .await
        .unwrap();

    let mut config = RegistryConfig::default();
    config.mirrors.insert("docker.io".into(), reg.addr.clone());
    let (mirrored, _) = client(work.path(), config);
    let dst = Arc::new(Store::open(work.path().join("dst")).unwrap());
    let busybox = ImageRef::parse("busybox").unwrap();
    let p = mirrored
        .pull(&dst, &busybox, &PullOptions::default(), &NoProgress)
        .await
        .unwrap();
    assert_eq!(p.target.digest, img.manifest.digest);
    assert_eq!(
        dst.images().unwrap()[0].name.to_string(),
        "docker.io/library/busybox:latest"
    );

    let mut bad = RegistryConfig::default();
    bad.mirrors.insert("docker.io".into(), "http://x".into());
    let creds: Arc<dyn CredentialStore> = Arc::new(CredentialChain::new(vec![]));
    assert_eq!(
        RegistryClient::new(bad, creds).err().unwrap().to_string(),
        "invalid registry options: mirror \"http://x\" for docker.io is not a registry host[:port]"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_registry_with_a_private_ca() {
    let (reg, pem) = TestRegistry::start_tls();
    let work = tempfile::tempdir().unwrap();
    let src = Arc::new(Store::open(work.path().join("src")).unwrap());
    let img = build_image(
        &src,
        "local/tls:1",
        "amd64",
        &[layer(Comp::Gzip, &[("s", b"secure")])],
    );
    let remote = reg.image("secure/app:1");

    // Without trusting the certificate, HTTPS fails with a one-line certificate error.
    let (untrusted, _) = client(
        work.path(),
        RegistryConfig {
            scheme: oci::Scheme::Https,
            ..RegistryConfig::default()
        },
    );
    let err = untrusted
        .push(
            &src,
            &img.name,
            Some(&remote),
            &PushOptions::default(),
            &NoProgress,
        )
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.starts_with(&format!("cannot reach registry {}", reg.addr)),
        "{msg}"
    );
    assert!(msg.to_lowercase().contains("certificate"), "{msg}");
    assert!(!msg.contains('\n'));

    // Plain HTTP against a TLS port is refused too (auto picks http for 127.0.0.1).
    let (auto, _) = client(work.path(), RegistryConfig::default());
    assert!(
        auto.push(
            &src,
            &img.name,
            Some(&remote),
            &PushOptions::default(),
            &NoProgress
        )
        .await
        .is_err()
    );

    let (trusted, _) = client(
        work.path(),
        RegistryConfig {
            scheme: oci::Scheme::Https,
            extra_root_certificates: vec![pem],
            ..RegistryConfig::default()
        },
    );
    trusted
        .push(
            &src,
            &img.name,
            Some(&remote),
            &PushOptions::default(),
            &NoProgress,
        )
        .await
        .unwrap();
    let dst = Arc::new(Store::open(work.path().join("dst")).unwrap());
    let p = trusted
        .pull(&dst, &remote, &PullOptions::default(), &NoProgress)
        .await
        .unwrap();
    assert_eq!(p.target.digest, img.manifest.digest);
    assert_eq!(dst.content().list().unwrap(), src.content().list().unwrap());
    let creds = Credential {
        username: "any".into(),
        secret: "thing".into(),
    };
    trusted.login(&reg.addr, &creds).await.unwrap(); // no auth configured: accepted
}

/// A TCP proxy in front of the registry that cuts the connection once, part-way through
/// the response to the first request mentioning `trigger` (a blob digest).
struct CuttingProxy {
    addr: String,
    cut: Arc<std::sync::atomic::AtomicBool>,
}

impl CuttingProxy {
    fn start(upstream: String, trigger: String, cut_after: usize) -> CuttingProxy {
        use std::io::{Read, Write};
        use std::net::{Shutdown, TcpListener, TcpStream};
        use std::sync::atomic::{AtomicBool, Ordering};
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let cut = Arc::new(AtomicBool::new(false));
        let cut2 = cut.clone();
        // The accept loop ends with the test process; it only ever serves this test.
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let Ok(server) = TcpStream::connect(&upstream) else {
                    continue;
                };
                let armed = Arc::new(AtomicBool::new(false));
                let (mut c_read, mut s_write) =
                    (client.try_clone().unwrap(), server.try_clone().unwrap());
                let (trigger, armed_w, cut_w) = (trigger.clone(), armed.clone(), cut2.clone());
                std::thread::spawn(move || {
                    let mut buf = [0u8; 16384];
                    while let Ok(n) = c_read.read(&mut buf) {
                        if n == 0 {
                            break;
                        }
                        if !cut_w.load(Ordering::SeqCst)
                            && String::from_utf8_lossy(&buf[..n]).contains(&trigger)
                        {
                            armed_w.store(true, Ordering::SeqCst);
                        }
                        if s_write.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                    let _ = s_write.shutdown(Shutdown::Write);
                });
                let (mut s_read, mut c_write) = (server, client);
                let cut3 = cut2.clone();
                std::thread::spawn(move || {
                    let mut buf = [0u8; 16384];
                    let mut sent = 0usize;
                    while let Ok(n) = s_read.read(&mut buf) {
                        if n == 0 {
                            break;
                        }
                        if armed.load(Ordering::SeqCst) && !cut3.load(Ordering::SeqCst) {
                            sent += n;
                            if sent > cut_after {
                                cut3.store(true, Ordering::SeqCst);
                                let _ = c_write.write_all(&buf[..n / 2]);
                                let _ = c_write.shutdown(Shutdown::Both);
                                let _ = s_read.shutdown(Shutdown::Both);
                                return;
                            }
                        }
                        if c_write.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                    let _ = c_write.shutdown(Shutdown::Write);
                });
            }
        });
        CuttingProxy { addr, cut }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_connection_mid_layer_is_retried_from_where_it_stopped() {
    let reg = TestRegistry::start();
    let work = tempfile::tempdir().unwrap();
    let src = Arc::new(Store::open(work.path().join("src")).unwrap());
    let img = three_layer_image(&src, "local/flaky:v1");
    let (client, _) = client(work.path(), RegistryConfig::default());
    client
        .push(
            &src,
            &img.name,
            Some(&reg.image("test/flaky:v1")),
            &PushOptions::default(),
            &NoProgress,
        )
        .await
        .unwrap();

    let big = img.layers[1].digest.clone();
    let proxy = CuttingProxy::start(reg.addr.clone(), big.hex().to_owned(), 3 << 20);
    let via_proxy = ImageRef::parse(&format!("{}/test/flaky:v1", proxy.addr)).unwrap();
    let dst = Arc::new(Store::open(work.path().join("dst")).unwrap());
    let rec = Recorder::default();
    client
        .pull(&dst, &via_proxy, &PullOptions::default(), &rec)
        .await
        .unwrap();
    assert!(
        proxy.cut.load(std::sync::atomic::Ordering::SeqCst),
        "the proxy never cut"
    );

    let starts: Vec<u64> = rec
        .events()
        .iter()
        .filter_map(|e| match e {
            ProgressEvent::BlobStarted {
                digest,
                resumed_from,
                ..
            } if *digest == big => Some(*resumed_from),
            _ => None,
        })
        .collect();
    assert_eq!(starts.len(), 2, "{starts:?}");
    assert_eq!(starts[0], 0);
    assert!(
        starts[1] > 1 << 20,
        "second attempt resumed from {}",
        starts[1]
    );
    assert_eq!(
        rec.count(|e| matches!(e, ProgressEvent::BlobRetrying { digest, .. } if *digest == big)),
        1
    );
    assert_eq!(dst.content().list().unwrap(), src.content().list().unwrap());
    assert!(ingest_files(dst.root()).is_empty());
}

/// A network namespace of the test's own, removed on drop.
struct Netns(String);

impl Netns {
    fn ip(args: &[&str]) {
        let out = std::process::Command::new("ip")
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "ip {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip")
            .args(["netns", "del", &self.0])
            .status();
    }
}

/// A child process killed on drop.
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

// Docker's rule for `auto`: plain HTTP for loopback only. A plain-HTTP registry on a
// private address (10.213.7.1, on the loopback device of a namespace this test creates, so
// nothing leaves the machine) is reached over HTTPS, which fails; `--scheme http` or the
// insecure list (the `registry.insecure` property) reach it.
#[test]
fn auto_scheme_uses_https_for_a_private_address_unless_listed_insecure() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        let why = "creating a network namespace needs root";
        if std::env::var("CONTAINER_REQUIRE_VM").as_deref() == Ok("1") {
            panic!("{why}, and CONTAINER_REQUIRE_VM=1 forbids skipping");
        }
        eprintln!("skipping: {why}");
        return;
    }
    let ns = Netns(format!("ocisch{}", std::process::id()));
    Netns::ip(&["netns", "add", &ns.0]);
    Netns::ip(&["-n", &ns.0, "link", "set", "lo", "up"]);
    Netns::ip(&["-n", &ns.0, "addr", "add", "10.213.7.1/32", "dev", "lo"]);
    let addr = "10.213.7.1:5000";
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {addr}\n  secret: test-secret\n",
        dir.path().join("storage").display()
    );
    std::fs::write(dir.path().join("config.yml"), config).unwrap();
    let _registry = Killed(
        std::process::Command::new("ip")
            .args(["netns", "exec", &ns.0, "docker-registry", "serve"])
            .arg(dir.path().join("config.yml"))
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("ip and docker-registry must be installed"),
    );
    let netns_file = format!("/run/netns/{}", ns.0);
    let work = dir.path().to_owned();
    // This thread alone enters the namespace (a network namespace is per thread), and so
    // do the sockets it opens.
    std::thread::spawn(move || {
        use std::os::fd::AsRawFd;
        let f = std::fs::File::open(&netns_file).unwrap();
        // SAFETY: setns on an open namespace file changes only this thread's namespace.
        assert_eq!(
            unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) },
            0,
            "setns"
        );
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
        while std::net::TcpStream::connect(addr).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "registry did not start"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let src = Arc::new(Store::open(work.join("src")).unwrap());
            let img = build_image(
                &src,
                "local/private:1",
                "amd64",
                &[layer(Comp::Gzip, &[("p", b"private")])],
            );
            let remote = ImageRef::parse(&format!("{addr}/private/app:1")).unwrap();
            let push = |config: RegistryConfig| {
                let (c, _) = client(&work, config);
                let (src, img, remote) = (src.clone(), img.name.clone(), remote.clone());
                async move {
                    c.push(
                        &src,
                        &img,
                        Some(&remote),
                        &PushOptions::default(),
                        &NoProgress,
                    )
                    .await
                }
            };
            // auto: HTTPS, which a plain-HTTP registry cannot answer.
            assert_eq!(RegistryConfig::default().scheme_for(addr), "https");
            let err = push(RegistryConfig::default()).await.unwrap_err();
            let msg = err.to_string();
            assert!(
                msg.starts_with(&format!("cannot reach registry {addr}")),
                "{msg}"
            );
            // Listing another port of the host does not make this one insecure.
            let other_port = RegistryConfig {
                insecure_registries: vec!["10.213.7.1:5001".into()],
                ..RegistryConfig::default()
            };
            assert!(push(other_port).await.is_err());
            // --scheme http reaches it.
            let http = RegistryConfig {
                scheme: oci::Scheme::Http,
                ..RegistryConfig::default()
            };
            assert_eq!(push(http).await.unwrap(), img.manifest.digest);
            // So does auto with the host listed as insecure.
            let listed = RegistryConfig {
                insecure_registries: vec!["10.213.7.1".into()],
                ..RegistryConfig::default()
            };
            let (c, _) = client(&work, listed);
            let dst = Arc::new(Store::open(work.join("dst")).unwrap());
            let pulled = c
                .pull(&dst, &remote, &PullOptions::default(), &NoProgress)
                .await
                .unwrap();
            assert_eq!(pulled.target.digest, img.manifest.digest);
        });
    })
    .join()
    .unwrap();
}
