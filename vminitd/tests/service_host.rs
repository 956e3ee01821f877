//! The gRPC service itself, served on a Unix socket on this machine and called through the
//! host's real client (`agent::client`): filesystem RPCs, tar streams both ways, error codes,
//! and the calls only PID 1 may serve. Container processes are covered by container_host.rs
//! and, in a VM, by crates/vmm-qemu/tests/guest_process.rs.

use std::path::Path;
use std::time::Duration;

use agent::client::{AgentClient, ConnectOptions};
use agent::v1::*;
use tokio::net::{UnixListener, UnixStream};
use tokio_stream::wrappers::UnixListenerStream;
use vminitd::process::{Config, Dialer, Manager};
use vminitd::reaper::Reaper;
use vminitd::server::Service;

async fn serve(dir: &Path) -> AgentClient {
    let sock = dir.join("agent.sock");
    let listener = UnixListener::bind(&sock).unwrap();
    let cfg = Config {
        dialer: Dialer::UnixDir(dir.to_path_buf()),
        ..Config::default()
    };
    let svc =
        agent_server::AgentServer::new(Service::new(Manager::new(Reaper::start().unwrap(), cfg)));
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(svc)
            .serve_with_incoming(UnixListenerStream::new(listener)),
    );
    let options = ConnectOptions {
        boot_timeout: Duration::from_secs(10),
        ..ConnectOptions::default()
    };
    AgentClient::connect(move || UnixStream::connect(sock.clone()), options)
        .await
        .unwrap()
}

fn code(e: &agent::client::ClientError) -> String {
    format!("{:?}", e.code())
}

#[tokio::test]
async fn files_and_tar_streams_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let c = serve(dir.path()).await;
    assert_eq!(c.guest_version().protocol_version, agent::PROTOCOL_VERSION);
    let src = dir.path().join("src");
    let p = |rel: &str| src.join(rel).display().to_string();
    c.mkdir(MkdirRequest {
        path: p("tree/sub"),
        mode: 0o750,
        parents: true,
        uid: 0,
        gid: 0,
    })
    .await
    .unwrap();
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i % 241) as u8).collect();
    c.write_file(WriteFileRequest {
        path: p("tree/sub/big"),
        data: big.clone(),
        mode: 0o600,
        append: false,
        create_parents: false,
    })
    .await
    .unwrap();
    c.write_file(WriteFileRequest {
        path: p("tree/log"),
        data: b"a\n".to_vec(),
        mode: 0,
        append: true,
        create_parents: false,
    })
    .await
    .unwrap();
    c.write_file(WriteFileRequest {
        path: p("tree/log"),
        data: b"b\n".to_vec(),
        mode: 0,
        append: true,
        create_parents: false,
    })
    .await
    .unwrap();
    let st = c
        .stat(StatRequest {
            path: p("tree/sub/big"),
        })
        .await
        .unwrap();
    assert_eq!(
        (st.exists, st.size, st.mode & 0o777),
        (true, big.len() as u64, 0o600)
    );
    assert!(
        !c.stat(StatRequest { path: p("missing") })
            .await
            .unwrap()
            .exists
    );

    let mut out = c
        .copy_out(CopyOutRequest {
            path: "/tree".into(),
            root: src.display().to_string(),
            export: false,
        })
        .await
        .unwrap();
    let mut archive = Vec::new();
    let mut chunks = 0;
    while let Some(chunk) = out.message().await.unwrap() {
        chunks += 1;
        archive.extend_from_slice(&chunk.data);
    }
    assert!(chunks > 1, "a 3 MB tree streams in several chunks");

    let dest = dir.path().join("dest");
    std::fs::create_dir(&dest).unwrap();
    let mut parts = vec![CopyInRequest {
        part: Some(copy_in_request::Part::Header(CopyInHeader {
            destination: dest.display().to_string(),
            root: String::new(),
            ..Default::default()
        })),
    }];
    parts.extend(archive.chunks(100_000).map(|c| CopyInRequest {
        part: Some(copy_in_request::Part::Data(c.to_vec())),
    }));
    c.copy_in(tokio_stream::iter(parts)).await.unwrap();
    assert_eq!(std::fs::read(dest.join("tree/sub/big")).unwrap(), big);
    assert_eq!(
        std::fs::read_to_string(dest.join("tree/log")).unwrap(),
        "a\nb\n"
    );
}

#[tokio::test]
async fn bad_requests_get_clear_codes() {
    let dir = tempfile::tempdir().unwrap();
    let c = serve(dir.path()).await;
    let e = c
        .write_file(WriteFileRequest {
            path: "relative/x".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(code(&e), "Some(InvalidArgument)", "{e}");
    let missing = dir.path().join("nope").display().to_string();
    let e = c
        .copy_out(CopyOutRequest {
            path: missing.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(code(&e), "Some(NotFound)", "{e}");
    let data_first = vec![CopyInRequest {
        part: Some(copy_in_request::Part::Data(vec![0; 512])),
    }];
    let e = c.copy_in(tokio_stream::iter(data_first)).await.unwrap_err();
    assert_eq!(code(&e), "Some(InvalidArgument)", "{e}");
    let header = vec![CopyInRequest {
        part: Some(copy_in_request::Part::Header(CopyInHeader {
            destination: missing,
            root: String::new(),
            ..Default::default()
        })),
    }];
    let e = c.copy_in(tokio_stream::iter(header)).await.unwrap_err();
    assert_eq!(code(&e), "Some(NotFound)", "{e}");
    let e = c
        .configure_hosts(ConfigureHostsRequest {
            path: dir.path().join("hosts").display().to_string(),
            entries: vec![HostsEntry {
                ip: "not-an-ip".into(),
                names: vec!["x".into()],
            }],
        })
        .await
        .unwrap_err();
    assert_eq!(code(&e), "Some(InvalidArgument)", "{e}");
    assert!(
        !dir.path().join("hosts").exists(),
        "nothing is written for a bad request"
    );
    let e = c
        .mount(MountRequest {
            source: "block-serial:no-such-disk".into(),
            target: "/mnt/x".into(),
            fstype: "ext4".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(code(&e), "Some(NotFound)", "{e}");
    let e = c
        .stats(StatsRequest {
            container_id: "ghost".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(code(&e), "Some(NotFound)", "{e}");
    let e = c
        .start_process(ProcessRef { id: "ghost".into() })
        .await
        .unwrap_err();
    assert_eq!(code(&e), "Some(NotFound)", "{e}");
    let e = c
        .create_process(CreateProcessRequest {
            id: "../x".into(),
            container_id: "../x".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(code(&e), "Some(InvalidArgument)", "{e}");
    let e = c
        .create_process(CreateProcessRequest {
            id: "a".into(),
            container_id: "a".into(),
            oci_spec: b"{oops".to_vec(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(code(&e), "Some(InvalidArgument)", "{e}");
    assert!(e.to_string().contains("invalid oci spec json"), "{e}");
    // Only the VM's init may power it off.
    let e = c
        .shutdown(ShutdownRequest { grace_seconds: 1 })
        .await
        .unwrap_err();
    assert_eq!(code(&e), "Some(FailedPrecondition)", "{e}");
    let links = c.list_links(Empty {}).await.unwrap().links;
    assert!(links.iter().any(|l| l.name == "lo"), "{links:?}");
    let e = c
        .address_add(AddressAddRequest {
            link: "lo".into(),
            link_mac: String::new(),
            cidr: "10.0.0.1".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(code(&e), "Some(InvalidArgument)", "{e}");
}

#[tokio::test]
async fn mount_and_umount_a_tmpfs() {
    if let Some(why) = test_support::missing_root("mounting") {
        test_support::skip(&why);
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let c = serve(dir.path()).await;
    let target = dir.path().join("mnt/t").display().to_string();
    c.mount(MountRequest {
        source: "tmpfs".into(),
        target: target.clone(),
        fstype: "tmpfs".into(),
        options: vec!["size=1m".into(), "mode=700".into()],
        create_target: true,
    })
    .await
    .unwrap();
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
    assert!(
        mounts
            .lines()
            .any(|l| l.contains(&target) && l.contains("size=1024k") && l.contains("mode=700")),
        "{mounts}"
    );
    c.umount(UmountRequest {
        target: target.clone(),
        lazy: false,
    })
    .await
    .unwrap();
    assert!(
        !std::fs::read_to_string("/proc/self/mounts")
            .unwrap()
            .contains(&target)
    );
}

#[tokio::test]
async fn serve_socket_relays_each_connection_to_the_host_port() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = tempfile::tempdir().unwrap();
    let c = serve(dir.path()).await;
    // The host's side of vsock port 77, speaking the relay framing as the runtime does: an
    // echo server that prefixes what it got.
    let host = UnixListener::bind(dir.path().join("77.sock")).unwrap();
    tokio::spawn(async move {
        loop {
            let (s, _) = host.accept().await.unwrap();
            tokio::spawn(async move {
                let (mine, theirs) = tokio::io::duplex(1024);
                tokio::spawn(agent::relay::splice(theirs, s));
                let (mut rx, mut tx) = tokio::io::split(mine);
                let mut got = Vec::new();
                rx.read_to_end(&mut got).await.unwrap();
                tx.write_all(b"echo:").await.unwrap();
                tx.write_all(&got).await.unwrap();
                tx.shutdown().await.unwrap();
            });
        }
    });
    let path = dir.path().join("in/container/ssh.sock");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, b"stale").unwrap();
    c.serve_socket(ServeSocketRequest {
        path: path.display().to_string(),
        port: 77,
    })
    .await
    .unwrap();
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    let md = std::fs::metadata(&path).unwrap();
    assert!(md.file_type().is_socket());
    assert_eq!(md.permissions().mode() & 0o777, 0o666);
    for i in 0..3 {
        let mut s = UnixStream::connect(&path).await.unwrap();
        s.write_all(format!("hello {i}").as_bytes()).await.unwrap();
        s.shutdown().await.unwrap();
        let mut back = String::new();
        s.read_to_string(&mut back).await.unwrap();
        assert_eq!(back, format!("echo:hello {i}"));
    }
    let e = c
        .serve_socket(ServeSocketRequest {
            path: "relative.sock".into(),
            port: 77,
        })
        .await
        .unwrap_err();
    assert_eq!(code(&e), "Some(InvalidArgument)");
    let e = c
        .dial_socket(DialSocketRequest {
            container_id: "nope".into(),
            path: "/x.sock".into(),
            port: 78,
        })
        .await
        .unwrap_err();
    assert_eq!(code(&e), "Some(NotFound)");
}
