//! End to end: `--detach-keys` on `attach` and `run -it`, with the real `container` binary
//! against a real daemon whose containers run in real VMs, and the `detachKeys` of the
//! Docker API's attach. What a user sees: the CLI leaves with exit code 0 on the sequence,
//! the container runs on and answers a second attach, and a partial sequence reaches the
//! container unchanged.

use std::io::{Read, Write};
use std::process::{Child, ChildStdin, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use container_tests::daemon::Daemon;

/// A running CLI session: its stdin, and its stdout collected by a thread.
struct Session {
    child: Child,
    stdin: ChildStdin,
    out: Arc<Mutex<Vec<u8>>>,
}

impl Session {
    fn spawn(d: &Daemon, args: &[&str]) -> Session {
        let mut child = d
            .cmd(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the CLI starts");
        let stdin = child.stdin.take().expect("piped stdin");
        let mut stdout = child.stdout.take().expect("piped stdout");
        let out = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&out);
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stdout.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        Session { child, stdin, out }
    }

    fn send(&mut self, bytes: &[u8]) {
        self.stdin
            .write_all(bytes)
            .expect("writing the CLI's stdin");
        self.stdin.flush().unwrap();
    }

    /// Waits until the output holds `want`.
    fn expect_output(&self, want: &[u8]) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let out = self.out.lock().unwrap().clone();
            if out.windows(want.len()).any(|w| w == want) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {:?} in the output {:?}",
                String::from_utf8_lossy(want),
                String::from_utf8_lossy(&out)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits for the CLI to exit (it must, within a minute) and returns its code and stderr.
    fn exit(mut self) -> (Option<i32>, String) {
        let deadline = Instant::now() + Duration::from_secs(60);
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("the CLI did not leave after the detach keys");
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        let mut err = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            let _ = e.read_to_string(&mut err);
        }
        (status.code(), err)
    }
}

fn state(d: &Daemon, name: &str) -> String {
    let out = d.ok(&["inspect", name]);
    let v: serde_json::Value = serde_json::from_str(&out).expect("inspect prints JSON");
    v[0]["status"]["state"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[test]
fn attach_and_run_detach_on_the_keys_and_leave_the_container_running() {
    let Some(d) = Daemon::start("detach") else {
        return;
    };
    // A bad sequence is refused before anything is attached.
    let err = d.fails(&["attach", "--detach-keys", "ctrl-1", "nosuch"], 125);
    assert!(
        err.contains("invalid detach keys \"ctrl-1\""),
        "unexpected error: {err}"
    );

    d.ok(&["run", "-d", "-i", "-t", "--name", "cat", "busybox", "cat"]);
    assert_eq!(state(&d, "cat"), "running");

    // Docker's default sequence; a ctrl-p followed by another key reaches the container.
    let mut s = Session::spawn(&d, &["attach", "cat"]);
    // Give the attach time to reach the runtime before typing.
    std::thread::sleep(Duration::from_secs(2));
    s.send(b"hello\n");
    s.expect_output(b"hello");
    s.send(b"\x10x\n");
    // cat writes back what it read: the ctrl-p and the x, as typed.
    s.expect_output(b"\x10x\r\n");
    s.send(b"\x10\x11");
    let (code, err) = s.exit();
    assert_eq!(code, Some(0), "attach after ctrl-p,ctrl-q: {err}");
    assert_eq!(state(&d, "cat"), "running", "the container runs on");

    // A second attach still talks to the same cat; a sequence of our own detaches it.
    let mut s = Session::spawn(&d, &["attach", "--detach-keys", "ctrl-a,d", "cat"]);
    std::thread::sleep(Duration::from_secs(2));
    s.send(b"again\n");
    s.expect_output(b"again\r\n");
    s.send(b"\x01d");
    let (code, err) = s.exit();
    assert_eq!(code, Some(0), "attach after ctrl-a,d: {err}");
    assert_eq!(state(&d, "cat"), "running");

    // `run -it --rm` leaves at once on the keys, and the container runs on (Docker's).
    let mut s = Session::spawn(
        &d,
        &[
            "run",
            "-i",
            "-t",
            "--rm",
            "--detach-keys",
            "ctrl-x,q",
            "--name",
            "r",
            "busybox",
            "cat",
        ],
    );
    s.send(b"first\n");
    s.expect_output(b"first\r\n");
    let sent = Instant::now();
    s.send(b"\x18q");
    let (code, err) = s.exit();
    assert_eq!(code, Some(0), "run after ctrl-x,q: {err}");
    assert!(
        sent.elapsed() < Duration::from_secs(20),
        "run --rm waited for a container that runs on: {:?}",
        sent.elapsed()
    );
    assert_eq!(state(&d, "r"), "running");

    d.ok(&["stop", "-t", "1", "cat", "r"]);
}

/// `POST /containers/{id}/attach?detachKeys=…` on the Docker socket: the daemon ends the
/// hijacked connection on the keys and the container runs on.
#[test]
fn docker_api_attach_detaches_on_detach_keys() {
    use std::os::unix::net::UnixStream;
    let Some(d) = Daemon::start("dkdetach") else {
        return;
    };
    d.ok(&["run", "-d", "-i", "-t", "--name", "cat", "busybox", "cat"]);
    let mut conn = UnixStream::connect(d.root.join("docker.sock")).expect("docker.sock");
    conn.set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    write!(
        conn,
        "POST /containers/cat/attach?stream=1&stdin=1&stdout=1&stderr=1&detachKeys=ctrl-a,x HTTP/1.1\r\n\
         Host: docker\r\nConnection: Upgrade\r\nUpgrade: tcp\r\nContent-Length: 0\r\n\r\n"
    )
    .unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    let mut read_until = |conn: &mut UnixStream, seen: &mut Vec<u8>, want: &[u8]| {
        while !seen.windows(want.len()).any(|w| w == want) {
            let n = conn.read(&mut buf).expect("reading the attach stream");
            assert!(
                n > 0,
                "the stream ended before {:?}: {:?}",
                String::from_utf8_lossy(want),
                String::from_utf8_lossy(seen)
            );
            seen.extend_from_slice(&buf[..n]);
        }
    };
    read_until(&mut conn, &mut seen, b"\r\n\r\n");
    assert!(
        seen.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&seen)
    );
    std::thread::sleep(Duration::from_secs(2));
    conn.write_all(b"via api\n").unwrap();
    read_until(&mut conn, &mut seen, b"via api\r\n");
    // ctrl-a then y is no detach: both reach cat.
    conn.write_all(b"\x01y\n").unwrap();
    read_until(&mut conn, &mut seen, b"\x01y\r\n");
    conn.write_all(b"\x01x").unwrap();
    // The daemon closes the stream: the read ends (0) instead of timing out.
    let started = Instant::now();
    loop {
        match conn.read(&mut buf) {
            Ok(0) => break,
            Ok(_) => continue,
            Err(e) => panic!("the daemon did not end the attach after the keys: {e}"),
        }
    }
    assert!(started.elapsed() < Duration::from_secs(30));
    assert_eq!(state(&d, "cat"), "running", "the container runs on");
    d.ok(&["stop", "-t", "1", "cat"]);
}
