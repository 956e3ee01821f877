//! Registering the daemon with the platform's service manager: a systemd unit on Linux
//! (`container system start --systemd`), a launchd agent on macOS (what `system start` does
//! there, as Apple's tool does). The files are rendered by pure functions, tested here on
//! every platform; only installing them talks to systemctl or launchctl.

use std::path::{Path, PathBuf};

/// The service's name: `container-apiserver.service` for systemd.
pub const SYSTEMD_UNIT: &str = "container-apiserver.service";
/// The launchd label, also the plist's file name (`<label>.plist`). Reverse-DNS as launchd
/// wants, `dev.container` like the app support directory (crates/api's `MACOS_APP_DIR`), and
/// apart from Apple's `com.apple.container.*` so both tools can be installed side by side.
pub const LAUNCHD_LABEL: &str = "dev.container.apiserver";

/// What the service manager needs to run the daemon.
#[derive(Debug, Clone)]
pub struct DaemonService {
    /// The `container-apiserver` program, absolute.
    pub program: PathBuf,
    /// Its app root (passed as `CONTAINER_APP_ROOT`).
    pub app_root: PathBuf,
    /// Further environment for the daemon (guest kernel, registry mirror...), in order.
    pub env: Vec<(String, String)>,
}

impl DaemonService {
    fn environment(&self) -> Vec<(String, String)> {
        let mut env = vec![(
            api::APP_ROOT_ENV.to_owned(),
            self.app_root.display().to_string(),
        )];
        env.extend(self.env.iter().cloned());
        env
    }

    /// The systemd unit. `KillMode=process`: stopping the daemon must not kill the
    /// per-container runtimes, which keep their containers running (they are re-adopted on
    /// the next start).
    pub fn systemd_unit(&self, user: bool) -> String {
        let quote = |s: &str| format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""));
        let mut unit = String::from(
            "[Unit]\nDescription=container daemon (container-apiserver)\nAfter=network.target\n\n[Service]\nType=simple\n",
        );
        unit.push_str(&format!(
            "ExecStart={}\n",
            quote(&self.program.display().to_string())
        ));
        for (key, value) in self.environment() {
            unit.push_str(&format!(
                "Environment={}\n",
                quote(&format!("{key}={value}"))
            ));
        }
        unit.push_str("KillMode=process\nRestart=on-failure\nRestartSec=1\n\n[Install]\n");
        unit.push_str(if user {
            "WantedBy=default.target\n"
        } else {
            "WantedBy=multi-user.target\n"
        });
        unit
    }

    /// The launchd agent plist: runs at load, restarted if it crashes, logs beside its state.
    pub fn launchd_plist(&self) -> String {
        let esc = |s: &str| {
            s.replace('&', "&amp;")
                .replace('<', "&lt;")
                .replace('>', "&gt;")
                .replace('"', "&quot;")
        };
        let log = esc(&self.app_root.join("apiserver.log").display().to_string());
        let mut env = String::new();
        for (key, value) in self.environment() {
            env.push_str(&format!(
                "    <key>{}</key>\n    <string>{}</string>\n",
                esc(&key),
                esc(&value)
            ));
        }
        format!(
            r#"<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
<plist version="1.0">
<dict>
  <key>Label</key>
  <string>{LAUNCHD_LABEL}</string>
  <key>ProgramArguments</key>
  <array>
    <string>{program}</string>
  </array>
  <key>EnvironmentVariables</key>
  <dict>
{env}  </dict>
  <key>RunAtLoad</key>
  <true/>
  <key>KeepAlive</key>
  <dict>
    <key>SuccessfulExit</key>
    <false/>
  </dict>
  <key>StandardOutPath</key>
  <string>{log}</string>
  <key>StandardErrorPath</key>
  <string>{log}</string>
</dict>
</plist>
"#,
            program = esc(&self.program.display().to_string()),
        )
    }
}

/// Where the unit goes: the system's unit directory for root, the user's otherwise.
pub fn systemd_unit_path(root: bool, home: Option<&Path>) -> Option<PathBuf> {
    if root {
        return Some(PathBuf::from("/etc/systemd/system").join(SYSTEMD_UNIT));
    }
    let config = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| home.map(|h| h.join(".config")))?;
    Some(config.join("systemd/user").join(SYSTEMD_UNIT))
}

/// `~/Library/LaunchAgents/<label>.plist`.
pub fn launchd_plist_path(home: &Path) -> PathBuf {
    home.join("Library/LaunchAgents")
        .join(format!("{LAUNCHD_LABEL}.plist"))
}

/// Writes the unit and asks systemd to load and start it. On failure the unit file is
/// removed again, and the error says which step failed.
pub fn install_systemd(service: &DaemonService) -> Result<PathBuf, String> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    let home = std::env::var_os("HOME").map(PathBuf::from);
    let path = systemd_unit_path(root, home.as_deref())
        .ok_or("cannot find the user's systemd directory: HOME and XDG_CONFIG_HOME are unset")?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    }
    std::fs::write(&path, service.systemd_unit(!root))
        .map_err(|e| format!("writing {}: {e}", path.display()))?;
    let systemctl = |args: &[&str]| -> Result<(), String> {
        let mut cmd = std::process::Command::new("systemctl");
        if !root {
            cmd.arg("--user");
        }
        let out = cmd
            .args(args)
            .output()
            .map_err(|e| format!("running systemctl: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            let stderr = String::from_utf8_lossy(&out.stderr);
            let reason: Vec<&str> = stderr
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .collect();
            Err(format!(
                "systemctl {} failed: {} (is systemd running?)",
                args.join(" "),
                reason.join("; ")
            ))
        }
    };
    let result =
        systemctl(&["daemon-reload"]).and_then(|()| systemctl(&["enable", "--now", SYSTEMD_UNIT]));
    if let Err(e) = result {
        let _ = std::fs::remove_file(&path);
        return Err(e);
    }
    Ok(path)
}

/// Writes the agent plist and loads it with launchctl (macOS; also compiled under
/// `check_macos` so `cargo xtask check-macos` type-checks it on Linux).
#[cfg(any(target_os = "macos", check_macos))]
pub fn install_launchd(service: &DaemonService) -> Result<PathBuf, String> {
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .ok_or("HOME is unset")?;
    let path = launchd_plist_path(&home);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    }
    std::fs::write(&path, service.launchd_plist())
        .map_err(|e| format!("writing {}: {e}", path.display()))?;
    // The user's GUI domain, where login agents live: replace an older registration of the
    // label, if any, then bootstrap this one (RunAtLoad starts the daemon).
    // SAFETY: getuid has no preconditions and cannot fail.
    let domain = format!("gui/{}", unsafe { libc::getuid() });
    let _ = std::process::Command::new("launchctl")
        .args(["bootout", &format!("{domain}/{LAUNCHD_LABEL}")])
        .output();
    let out = std::process::Command::new("launchctl")
        .args(["bootstrap", &domain])
        .arg(&path)
        .output()
        .map_err(|e| format!("running launchctl: {e}"))?;
    if !out.status.success() {
        let _ = std::fs::remove_file(&path);
        return Err(format!(
            "launchctl bootstrap {domain} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service() -> DaemonService {
        DaemonService {
            program: PathBuf::from("/opt/container/bin/container-apiserver"),
            app_root: PathBuf::from("/var/lib/container"),
            env: vec![("CONTAINER_REGISTRY_MIRROR".into(), "127.0.0.1:5000".into())],
        }
    }

    #[test]
    fn systemd_unit_runs_the_daemon_and_spares_the_runtimes() {
        let unit = service().systemd_unit(false);
        assert!(unit.contains("ExecStart=\"/opt/container/bin/container-apiserver\"\n"));
        assert!(unit.contains("Environment=\"CONTAINER_APP_ROOT=/var/lib/container\"\n"));
        assert!(unit.contains("Environment=\"CONTAINER_REGISTRY_MIRROR=127.0.0.1:5000\"\n"));
        assert!(unit.contains("KillMode=process\n"));
        assert!(unit.ends_with("WantedBy=multi-user.target\n"));
        assert!(
            service()
                .systemd_unit(true)
                .ends_with("WantedBy=default.target\n")
        );
    }

    #[test]
    fn systemd_unit_quotes_paths_with_spaces_and_quotes() {
        let mut s = service();
        s.program = PathBuf::from("/opt/my \"apps\"/container-apiserver");
        let unit = s.systemd_unit(false);
        assert!(
            unit.contains(r#"ExecStart="/opt/my \"apps\"/container-apiserver""#),
            "{unit}"
        );
    }

    #[test]
    fn launchd_plist_is_escaped_and_names_the_agent() {
        let mut s = service();
        s.app_root = PathBuf::from("/Users/a&b/Library/Application Support/container");
        let plist = s.launchd_plist();
        assert!(plist.contains(&format!("<string>{LAUNCHD_LABEL}</string>")));
        assert!(plist.contains("<string>/opt/container/bin/container-apiserver</string>"));
        assert!(
            plist.contains("/Users/a&amp;b/Library/Application Support/container/apiserver.log")
        );
        assert!(!plist.contains("a&b"));
        assert!(plist.contains("<key>RunAtLoad</key>\n  <true/>"));
    }

    #[test]
    fn plist_parses_as_xml_with_balanced_tags() {
        let plist = service().launchd_plist();
        for tag in ["dict", "array", "plist"] {
            assert_eq!(
                plist.matches(&format!("<{tag}")).count(),
                plist.matches(&format!("</{tag}>")).count(),
                "{tag}"
            );
        }
    }

    #[test]
    fn unit_paths() {
        assert_eq!(
            systemd_unit_path(true, None).unwrap(),
            PathBuf::from("/etc/systemd/system/container-apiserver.service")
        );
        assert_eq!(
            launchd_plist_path(Path::new("/Users/me")),
            PathBuf::from("/Users/me/Library/LaunchAgents/dev.container.apiserver.plist")
        );
    }
}
