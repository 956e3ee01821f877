//! The guest kernel command line every backend starts from, so the guest sees the same words
//! whichever hypervisor boots it; a backend adds only its console and its machine's words.

/// The words every VM gets after `console=` and before the machine's own.
///
/// `reboot=t` and `panic=-1` make any guest reboot or panic end the VM (the backend treats a
/// reboot as the end), so a crashed guest never lingers.
pub const COMMON_CMDLINE: &[&str] = &["quiet", "reboot=t", "panic=-1"];

/// The backend's part of the command line: the console the machine has (as the guest kernel
/// names it: `ttyS0`, `ttyAMA0`, `hvc0`), the common words, the machine's own words, and
/// `mitigations=off` (the guest runs one container; the VM boundary is the isolation).
pub fn base_cmdline(console: &str, machine_words: &[&str]) -> Vec<String> {
    let mut words = vec![format!("console={console}")];
    words.extend(COMMON_CMDLINE.iter().map(|w| (*w).to_owned()));
    words.extend(machine_words.iter().map(|w| (*w).to_owned()));
    words.push("mitigations=off".to_owned());
    words
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn console_first_then_common_then_machine_words() {
        assert_eq!(
            base_cmdline("hvc0", &["tsc=reliable"]).join(" "),
            "console=hvc0 quiet reboot=t panic=-1 tsc=reliable mitigations=off"
        );
    }
}
