//! The bearer-token flow (WWW-Authenticate: Bearer) against a real `docker-registry`
//! configured for token auth, with a small token server in this test that signs RS256
//! JWTs with an openssl-made key (the registry checks them against the certificate).

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use common::*;
use oci::{
    Credential, CredentialChain, CredentialStore, FileCredentialStore, NoProgress, PullOptions,
    PushOptions, RegistryClient, RegistryConfig, Store,
};

/// One request the token server saw: (basic-auth user if any, decoded scopes).
type Seen = (Option<String>, Vec<String>);

struct TokenServer {
    addr: String,
    cert: PathBuf,
    seen: Arc<Mutex<Vec<Seen>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TokenServer {
    fn start(dir: &Path, user: &str, pass: &str) -> TokenServer {
        let key = dir.join("key.pem");
        let cert = dir.join("cert.pem");
        let ok = Command::new("openssl")
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            ])
            .args(["-subj", "/CN=test-token-issuer", "-keyout"])
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .stderr(Stdio::null())
            .status()
            .expect("openssl must be installed");
        assert!(ok.success());
        let der = Command::new("openssl")
            .args(["x509", "-outform", "DER", "-in"])
            .arg(&cert)
            .output()
            .unwrap()
            .stdout;
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (seen2, stop2) = (seen.clone(), stop.clone());
        let expected = format!("{user}:{pass}");
        let thread = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stop2.load(Ordering::SeqCst) {
                    return;
                }
                if let Ok(conn) = conn {
                    serve(conn, &key, &der, &expected, &seen2);
                }
            }
        });
        TokenServer {
            addr,
            cert,
            seen,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(&self.addr); // wake the accept loop
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 3 <= b.len()
            && let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16)
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(if b[i] == b'+' { b' ' } else { b[i] });
        i += 1;
    }
    String::from_utf8(out).unwrap()
}

fn serve(conn: TcpStream, key: &Path, der: &[u8], expected: &str, seen: &Mutex<Vec<Seen>>) {
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() || request_line.is_empty() {
        return;
    }
    let mut basic = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
            break;
        }
        if let Some((k, v)) = line.split_once(':')
            && k.eq_ignore_ascii_case("authorization")
            && let Some(b64) = v.trim().strip_prefix("Basic ")
        {
            basic = String::from_utf8(STANDARD.decode(b64).unwrap()).ok();
        }
    }
    let target = request_line.split_whitespace().nth(1).unwrap_or("");
    let query = target.split_once('?').map_or("", |(_, q)| q);
    let scopes: Vec<String> = query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .filter(|(k, _)| *k == "scope")
        .map(|(_, v)| percent_decode(v))
        .collect();
    let user = basic
        .as_ref()
        .and_then(|b| b.split_once(':'))
        .map(|(u, _)| u.to_owned());
    seen.lock().unwrap().push((user.clone(), scopes.clone()));
    let mut conn = conn;
    if basic.as_deref() != Some(expected) {
        let body = r#"{"errors":[{"code":"UNAUTHORIZED","message":"bad credentials"}]}"#;
        let _ = write!(
            conn,
            "HTTP/1.1 401 Unauthorized\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        return;
    }
    let access: Vec<serde_json::Value> = scopes
        .iter()
        .filter_map(|s| {
            let mut parts = s.splitn(3, ':');
            let (kind, name, actions) = (parts.next()?, parts.next()?, parts.next()?);
            Some(serde_json::json!({
                "type": kind, "name": name, "actions": actions.split(',').collect::<Vec<_>>(),
            }))
        })
        .collect();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let header = serde_json::json!({"typ": "JWT", "alg": "RS256", "x5c": [STANDARD.encode(der)]});
    let claims = serde_json::json!({
        "iss": "test-issuer", "sub": user, "aud": "test-registry",
        "exp": now + 300, "nbf": now - 10, "iat": now, "jti": format!("{now}-{}", scopes.len()),
        "access": access,
    });
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let mut child = Command::new("openssl")
        .args(["dgst", "-sha256", "-sign"])
        .arg(key)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(signing_input.as_bytes())
        .unwrap();
    let sig = child.wait_with_output().unwrap().stdout;
    let token = format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(sig));
    let body =
        serde_json::json!({"token": token, "access_token": token, "expires_in": 300}).to_string();
    let _ = write!(
        conn,
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bearer_token_flow_login_push_pull() {
    let work = tempfile::tempdir().unwrap();
    let tokens = TokenServer::start(work.path(), "bob", "hunter2");
    let reg =
        TestRegistry::start_with_token_auth(&format!("http://{}/token", tokens.addr), &tokens.cert);
    let src = Arc::new(Store::open(work.path().join("src")).unwrap());
    let img = build_image(
        &src,
        "local/tok:1",
        "amd64",
        &[layer(Comp::Zstd, &[("t", b"token")])],
    );
    let creds = Arc::new(FileCredentialStore::new(work.path().join("creds.json")));
    let chain: Arc<dyn CredentialStore> = Arc::new(CredentialChain::new(vec![creds.clone()]));
    let client = RegistryClient::new(RegistryConfig::default(), chain).unwrap();
    let remote = reg.image("team/tok:1");

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
    assert!(err.to_string().contains("requires authentication"), "{err}");

    let bad = Credential {
        username: "bob".into(),
        secret: "nope".into(),
    };
    let err = client.login(&reg.addr, &bad).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "authentication to registry {} failed: wrong username or password",
            reg.addr
        )
    );
    let good = Credential {
        username: "bob".into(),
        secret: "hunter2".into(),
    };
    client.login(&reg.addr, &good).await.unwrap();

    let d = client
        .push(
            &src,
            &img.name,
            Some(&remote),
            &PushOptions::default(),
            &NoProgress,
        )
        .await
        .unwrap_or_else(|e| panic!("{e}\nregistry log:\n{}", reg.log()));
    assert_eq!(d, img.manifest.digest);
    let dst = Arc::new(Store::open(work.path().join("dst")).unwrap());
    let p = client
        .pull(&dst, &remote, &PullOptions::default(), &NoProgress)
        .await
        .unwrap();
    assert_eq!(p.target.digest, img.manifest.digest);
    assert_eq!(dst.content().list().unwrap(), src.content().list().unwrap());

    // The registry really sent us to the token server, with our user and both scopes.
    let seen = tokens.seen.lock().unwrap().clone();
    assert!(seen.iter().any(|(u, s)| u.as_deref() == Some("bob")
        && s.iter().any(|s| s == "repository:team/tok:pull,push")));
    assert!(
        seen.iter().any(|(u, s)| u.as_deref() == Some("bob")
            && s.iter().any(|s| s == "repository:team/tok:pull"))
    );
}
