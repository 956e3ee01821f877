//! A static Unix-socket client and echo server for the end-to-end tests: the busybox test
//! image has no program that speaks Unix stream sockets (its `nc` only does TCP/UDP), so
//! `tests/tests/storage.rs` compiles this one file with `rustc -C target-feature=+crt-static`
//! and bind-mounts the binary into its containers.
//!
//! - `unixcat PATH`: connect to PATH, copy stdin to it, shut down writing, copy what comes
//!   back to stdout.
//! - `unixcat -l PATH`: listen on PATH; answer each connection with `echo:` and everything
//!   it sent until end of file.

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};

fn client(path: &str) -> std::io::Result<()> {
    let mut s = UnixStream::connect(path)?;
    let mut input = Vec::new();
    std::io::stdin().read_to_end(&mut input)?;
    s.write_all(&input)?;
    s.shutdown(std::net::Shutdown::Write)?;
    let mut back = Vec::new();
    s.read_to_end(&mut back)?;
    std::io::stdout().write_all(&back)
}

fn server(path: &str) -> std::io::Result<()> {
    let _ = std::fs::remove_file(path);
    let listener = UnixListener::bind(path)?;
    for conn in listener.incoming() {
        let mut s = conn?;
        std::thread::spawn(move || {
            let mut got = Vec::new();
            if s.read_to_end(&mut got).is_ok() {
                let _ = s.write_all(b"echo:");
                let _ = s.write_all(&got);
            }
        });
    }
    Ok(())
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.as_slice() {
        [flag, path] if flag == "-l" => server(path),
        [path] => client(path),
        _ => {
            eprintln!("usage: unixcat [-l] PATH");
            std::process::exit(2);
        }
    };
    if let Err(e) = result {
        eprintln!("unixcat: {e}");
        std::process::exit(1);
    }
}
