//! The image config a stage builds up: Docker's `config` object, the layers' diff IDs and
//! the history, edited by each instruction as the Dockerfile reference says.

use std::collections::BTreeMap;

use dockerfile::instruction::{CommandLine, Healthcheck};
use serde_json::{Map, Value, json};

/// The PATH BuildKit gives an image whose base has none (`scratch`).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// What history entries made by this builder carry, as BuildKit marks its own.
pub const HISTORY_COMMENT: &str = "buildkit.dockerfile.v0";

/// An image config under construction.
#[derive(Debug, Clone)]
pub struct ImageConfig {
    /// The whole config JSON of the base (fields we do not know are kept).
    root: Map<String, Value>,
}

impl ImageConfig {
    /// The config of `FROM scratch` for `platform`.
    pub fn scratch(platform: &spec::Platform) -> ImageConfig {
        let mut root = Map::new();
        root.insert("architecture".into(), json!(platform.architecture));
        root.insert("os".into(), json!(platform.os));
        if let Some(v) = &platform.variant {
            root.insert("variant".into(), json!(v));
        }
        root.insert(
            "config".into(),
            json!({ "Env": [format!("PATH={DEFAULT_PATH}")] }),
        );
        root.insert("rootfs".into(), json!({ "type": "layers", "diff_ids": [] }));
        root.insert("history".into(), json!([]));
        ImageConfig { root }
    }

    /// A base image's config (its raw JSON). A config without `Env` gets BuildKit's PATH.
    pub fn from_base(bytes: &[u8]) -> Result<ImageConfig, serde_json::Error> {
        let mut root: Map<String, Value> = serde_json::from_slice(bytes)?;
        // A base's container-run leftovers are not part of the new image.
        for k in ["container", "container_config", "docker_version", "author"] {
            root.remove(k);
        }
        if !root.get("config").is_some_and(Value::is_object) {
            root.insert("config".into(), json!({}));
        }
        if !root.get("history").is_some_and(Value::is_array) {
            root.insert("history".into(), json!([]));
        }
        let mut c = ImageConfig { root };
        if c.env().is_empty() {
            c.set_env("PATH", DEFAULT_PATH);
        }
        Ok(c)
    }

    fn config(&mut self) -> &mut Map<String, Value> {
        if !self.root.get("config").is_some_and(Value::is_object) {
            self.root.insert("config".into(), json!({}));
        }
        match self.root.get_mut("config") {
            Some(Value::Object(m)) => m,
            // Made an object just above.
            _ => unreachable!("config is an object"),
        }
    }

    fn get(&self, key: &str) -> Option<&Value> {
        self.root.get("config").and_then(|c| c.get(key))
    }

    fn strings(&self, key: &str) -> Vec<String> {
        match self.get(key) {
            Some(Value::Array(a)) => a
                .iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect(),
            _ => Vec::new(),
        }
    }

    /// The environment, `KEY=VALUE` entries split.
    pub fn env(&self) -> Vec<(String, String)> {
        self.strings("Env")
            .into_iter()
            .map(|e| match e.split_once('=') {
                Some((k, v)) => (k.to_string(), v.to_string()),
                None => (e, String::new()),
            })
            .collect()
    }

    /// Sets one variable, keeping its place when it exists.
    pub fn set_env(&mut self, key: &str, value: &str) {
        let mut env = self.env();
        match env.iter_mut().find(|(k, _)| k == key) {
            Some(e) => e.1 = value.to_string(),
            None => env.push((key.to_string(), value.to_string())),
        }
        let list: Vec<Value> = env
            .into_iter()
            .map(|(k, v)| Value::String(format!("{k}={v}")))
            .collect();
        self.config().insert("Env".into(), Value::Array(list));
    }

    pub fn working_dir(&self) -> String {
        self.get("WorkingDir")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    }

    pub fn set_working_dir(&mut self, dir: &str) {
        self.config().insert("WorkingDir".into(), json!(dir));
    }

    pub fn user(&self) -> String {
        self.get("User")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    }

    pub fn set_user(&mut self, user: &str) {
        self.config().insert("User".into(), json!(user));
    }

    /// The shell for shell forms: `SHELL`, else `/bin/sh -c`.
    pub fn shell(&self) -> Vec<String> {
        let s = self.strings("Shell");
        if s.is_empty() {
            vec!["/bin/sh".into(), "-c".into()]
        } else {
            s
        }
    }

    pub fn set_shell(&mut self, shell: &[String]) {
        self.config().insert("Shell".into(), json!(shell));
    }

    /// A command line in the exec form the config stores: shell forms run by the shell.
    pub fn command(&self, line: &CommandLine) -> Vec<String> {
        match line {
            CommandLine::Exec(args) => args.clone(),
            CommandLine::Shell(text) => {
                let mut v = self.shell();
                v.push(text.clone());
                v
            }
        }
    }

    /// `CMD`.
    pub fn set_cmd(&mut self, line: &CommandLine) {
        let cmd = self.command(line);
        self.config().insert("Cmd".into(), json!(cmd));
    }

    /// `ENTRYPOINT`: also clears a CMD the stage did not set itself (`cmd_set_here`), as
    /// Docker does, so a base image's CMD never becomes the new entrypoint's arguments.
    pub fn set_entrypoint(&mut self, line: &CommandLine, cmd_set_here: bool) {
        let ep = self.command(line);
        let c = self.config();
        c.insert("Entrypoint".into(), json!(ep));
        if !cmd_set_here {
            c.insert("Cmd".into(), Value::Null);
        }
    }

    pub fn set_label(&mut self, key: &str, value: &str) {
        let c = self.config();
        if !c.get("Labels").is_some_and(Value::is_object) {
            c.insert("Labels".into(), json!({}));
        }
        if let Some(Value::Object(m)) = c.get_mut("Labels") {
            m.insert(key.into(), json!(value));
        }
    }

    fn add_to_set(&mut self, field: &str, key: &str) {
        let c = self.config();
        if !c.get(field).is_some_and(Value::is_object) {
            c.insert(field.into(), json!({}));
        }
        if let Some(Value::Object(m)) = c.get_mut(field) {
            m.insert(key.into(), json!({}));
        }
    }

    /// `EXPOSE 80` → `ExposedPorts["80/tcp"]`.
    pub fn expose(&mut self, port: &str) {
        let key = if port.contains('/') {
            port.to_ascii_lowercase()
        } else {
            format!("{port}/tcp")
        };
        self.add_to_set("ExposedPorts", &key);
    }

    pub fn add_volume(&mut self, path: &str) {
        self.add_to_set("Volumes", path);
    }

    pub fn set_stop_signal(&mut self, signal: &str) {
        self.config().insert("StopSignal".into(), json!(signal));
    }

    /// `HEALTHCHECK`: Docker's `Healthcheck` object, durations in nanoseconds.
    pub fn set_healthcheck(&mut self, h: &Healthcheck) {
        let v = match h {
            Healthcheck::None => json!({ "Test": ["NONE"] }),
            Healthcheck::Check {
                test,
                interval,
                timeout,
                start_period,
                start_interval,
                retries,
            } => {
                let test: Vec<String> = match test {
                    CommandLine::Exec(args) => std::iter::once("CMD".to_string())
                        .chain(args.clone())
                        .collect(),
                    CommandLine::Shell(text) => vec!["CMD-SHELL".into(), text.clone()],
                };
                let mut m = Map::new();
                m.insert("Test".into(), json!(test));
                for (k, d) in [
                    ("Interval", interval),
                    ("Timeout", timeout),
                    ("StartPeriod", start_period),
                    ("StartInterval", start_interval),
                ] {
                    if let Some(d) = d {
                        m.insert(k.into(), json!(d.as_nanos() as u64));
                    }
                }
                if let Some(r) = retries {
                    m.insert("Retries".into(), json!(r));
                }
                Value::Object(m)
            }
        };
        self.config().insert("Healthcheck".into(), v);
    }

    pub fn add_onbuild(&mut self, trigger: &str) {
        let c = self.config();
        let mut list = match c.remove("OnBuild") {
            Some(Value::Array(a)) => a,
            _ => Vec::new(),
        };
        list.push(json!(trigger));
        c.insert("OnBuild".into(), Value::Array(list));
    }

    /// The base image's ONBUILD triggers, in order.
    pub fn onbuild(&self) -> Vec<String> {
        self.strings("OnBuild")
    }

    /// Clears the base image's ONBUILD triggers (a child image does not inherit them).
    pub fn clear_onbuild(&mut self) {
        self.config().remove("OnBuild");
    }

    pub fn set_author(&mut self, author: &str) {
        self.root.insert("author".into(), json!(author));
    }

    /// The layers' diff IDs, bottom first.
    pub fn diff_ids(&self) -> Vec<String> {
        self.root
            .get("rootfs")
            .and_then(|r| r.get("diff_ids"))
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Appends a layer's diff ID.
    pub fn push_layer(&mut self, diff_id: &str) {
        let rootfs = self
            .root
            .entry("rootfs")
            .or_insert_with(|| json!({ "type": "layers", "diff_ids": [] }));
        if !rootfs.get("diff_ids").is_some_and(Value::is_array) {
            *rootfs = json!({ "type": "layers", "diff_ids": [] });
        }
        if let Some(Value::Array(ids)) = rootfs.get_mut("diff_ids") {
            ids.push(json!(diff_id));
        }
    }

    /// Appends a history entry; `empty_layer` for instructions that make no layer.
    pub fn push_history(&mut self, created: &str, created_by: &str, empty_layer: bool) {
        let mut h = Map::new();
        h.insert("created".into(), json!(created));
        h.insert("created_by".into(), json!(created_by));
        h.insert("comment".into(), json!(HISTORY_COMMENT));
        if empty_layer {
            h.insert("empty_layer".into(), json!(true));
        }
        if let Some(Value::Array(list)) = self.root.get_mut("history") {
            list.push(Value::Object(h));
        } else {
            self.root
                .insert("history".into(), Value::Array(vec![Value::Object(h)]));
        }
    }

    /// SOURCE_DATE_EPOCH for the history: every entry created later than `epoch` (seconds)
    /// is dated `epoch`, as BuildKit clamps it; older entries (a base image's) keep theirs.
    pub fn clamp_history(&mut self, epoch: i64) {
        let limit = epoch.saturating_mul(1_000_000_000);
        let Some(Value::Array(list)) = self.root.get_mut("history") else {
            return;
        };
        for h in list.iter_mut().filter_map(Value::as_object_mut) {
            let later = match h.get("created").and_then(Value::as_str) {
                Some(t) => spec::parse_time(t, 0).map_or(true, |n| n > limit),
                None => true,
            };
            if later {
                h.insert("created".into(), json!(spec::format_time(limit, true)));
            }
        }
    }

    /// The config's labels.
    pub fn labels(&self) -> BTreeMap<String, String> {
        match self.get("Labels") {
            Some(Value::Object(m)) => m
                .iter()
                .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string())))
                .collect(),
            _ => BTreeMap::new(),
        }
    }

    /// The final JSON, with its creation time.
    pub fn to_json(&self, created: &str) -> Vec<u8> {
        let mut root = self.root.clone();
        root.insert("created".into(), json!(created));
        // serde_json's maps are sorted, so the bytes are stable for the same content.
        serde_json::to_vec(&Value::Object(root)).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn platform() -> spec::Platform {
        spec::Platform::new("linux", "amd64", None)
    }

    #[test]
    fn source_date_epoch_clamps_later_history_only() {
        let mut c = ImageConfig::scratch(&platform());
        c.push_history("2020-01-01T00:00:00Z", "base", false);
        c.push_history("2026-12-05T03:00:00.123456789Z", "RUN x", false);
        c.push_history("not a time", "odd", true);
        c.clamp_history(1_700_000_000);
        let v: Value = serde_json::from_slice(&c.to_json("t")).unwrap();
        let created: Vec<&str> = v["history"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h["created"].as_str().unwrap())
            .collect();
        assert_eq!(
            created,
            [
                "2020-01-01T00:00:00Z",
                "2023-11-14T22:13:20Z",
                "2023-11-14T22:13:20Z"
            ]
        );
    }

    #[test]
    fn entrypoint_clears_an_inherited_cmd_only() {
        let mut c = ImageConfig::scratch(&platform());
        c.set_cmd(&CommandLine::Shell("echo base".into()));
        c.set_entrypoint(&CommandLine::Exec(vec!["/app".into()]), false);
        let v: Value = serde_json::from_slice(&c.to_json("t")).unwrap();
        assert_eq!(v["config"]["Cmd"], Value::Null);
        assert_eq!(v["config"]["Entrypoint"], json!(["/app"]));
        c.set_cmd(&CommandLine::Exec(vec!["--flag".into()]));
        c.set_entrypoint(&CommandLine::Shell("run it".into()), true);
        let v: Value = serde_json::from_slice(&c.to_json("t")).unwrap();
        assert_eq!(v["config"]["Cmd"], json!(["--flag"]));
        assert_eq!(
            v["config"]["Entrypoint"],
            json!(["/bin/sh", "-c", "run it"])
        );
    }

    #[test]
    fn docker_field_shapes() {
        let mut c = ImageConfig::scratch(&platform());
        c.expose("80");
        c.expose("53/UDP");
        c.add_volume("/data");
        c.set_env("A", "1");
        c.set_env("PATH", "/bin");
        c.set_healthcheck(&Healthcheck::Check {
            test: CommandLine::Shell("true".into()),
            interval: Some(std::time::Duration::from_secs(5)),
            timeout: None,
            start_period: None,
            start_interval: None,
            retries: Some(2),
        });
        c.push_history("t", "ENV A=1", true);
        let v: Value = serde_json::from_slice(&c.to_json("t")).unwrap();
        assert_eq!(
            v["config"]["ExposedPorts"],
            json!({"80/tcp": {}, "53/udp": {}})
        );
        assert_eq!(v["config"]["Volumes"], json!({"/data": {}}));
        assert_eq!(v["config"]["Env"], json!(["PATH=/bin", "A=1"]));
        assert_eq!(
            v["config"]["Healthcheck"],
            json!({"Test": ["CMD-SHELL", "true"], "Interval": 5_000_000_000u64, "Retries": 2})
        );
        assert_eq!(
            v["history"],
            json!([{"created": "t", "created_by": "ENV A=1", "comment": HISTORY_COMMENT, "empty_layer": true}])
        );
    }
}
