//! The contract's rule "every rpc and field commented", checked on the proto files
//! themselves so that no later change slips one in bare.

use std::path::PathBuf;

/// Whether a trimmed proto line declares something that needs a comment.
fn declares(line: &str) -> bool {
    let first = line.split_whitespace().next().unwrap_or_default();
    let is_field = line.ends_with(';') && line.contains(" = ") && !line.starts_with("option ");
    matches!(first, "rpc" | "message" | "enum" | "service" | "oneof") || is_field
}

#[test]
fn every_rpc_message_enum_and_field_is_commented() {
    let manifest = PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"),
    );
    // The API's own protos and the shared messages they import (crates/wire).
    let dirs = [
        manifest.join("proto/container/api/v1"),
        manifest.join("../wire/proto/container/wire/v1"),
    ];
    let mut bare = Vec::new();
    let mut files = 0;
    let entries = dirs.iter().flat_map(|dir| std::fs::read_dir(dir).unwrap());
    for entry in entries {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "proto") {
            continue;
        }
        files += 1;
        let text = std::fs::read_to_string(&path).unwrap();
        let mut previous = "";
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if declares(line)
                && !line.starts_with("syntax")
                && !line.starts_with("package")
                && !previous.starts_with("//")
            {
                bare.push(format!(
                    "{}:{}: {line}",
                    path.file_name().unwrap().to_string_lossy(),
                    n + 1
                ));
            }
            previous = line;
        }
    }
    assert_eq!(files, 9, "proto files moved?");
    assert!(
        bare.is_empty(),
        "uncommented declarations:\n{}",
        bare.join("\n")
    );
}
