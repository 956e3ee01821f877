//! Docker IDs for what our API names: Docker clients expect a 64-hex-digit ID for every
//! object, and a network of ours has only a name.

use sha2::Digest;

/// The Docker ID of network `name`: stable, so a client may keep it across daemon restarts.
pub fn network_id(name: &str) -> String {
    hex::encode(sha2::Sha256::digest(
        format!("container-network:{name}").as_bytes(),
    ))
}
