#!/bin/sh
# Cargo's runner on macOS (CARGO_TARGET_AARCH64_APPLE_DARWIN_RUNNER): Virtualization.framework
# refuses a process without the com.apple.security.virtualization entitlement, so every test
# binary that boots a VM is signed (ad hoc) with it before it runs.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
codesign --force --sign - --entitlements "$here/container-runtime.entitlements" "$1"
exec "$@"
