//! `container volume ...`: create, list, inspect, delete and prune volumes.

use api::v1;
use api::v1::volumes_client::VolumesClient;
use serde_json::{Value, json};
use tonic::transport::Channel;

use crate::Context;
use crate::args::*;
use crate::commands::each::inspect_each;
use crate::error::{CliError, CliResult};
use crate::listing::{self, ListFormat};
use crate::output;

fn volumes(client: &api::Client) -> VolumesClient<Channel> {
    VolumesClient::new(client.channel())
}

/// Column headers of `volume list`.
pub const VOLUME_HEADERS: [&str; 5] = ["NAME", "TYPE", "SIZE", "USED", "CREATED"];

/// One `volume list` row.
pub fn volume_row(v: &v1::VolumeInfo) -> Vec<String> {
    vec![
        v.name.clone(),
        if v.anonymous { "anonymous" } else { "named" }.to_owned(),
        spec::human_bytes(v.size_bytes),
        spec::human_bytes(v.disk_usage_bytes),
        output::iso8601(v.created_ms),
    ]
}

/// A volume as JSON (Apple's field names where it has them).
pub fn volume_json(v: &v1::VolumeInfo) -> Value {
    let labels: serde_json::Map<String, Value> = v
        .labels
        .iter()
        .map(|l| (l.key.clone(), Value::String(l.value.clone())))
        .collect();
    json!({
        "name": v.name,
        "driver": v.driver,
        "format": v.format,
        "source": v.source,
        "creationDate": output::iso8601(v.created_ms),
        "labels": labels,
        "options": v.options,
        "sizeInBytes": v.size_bytes,
        "diskUsageInBytes": v.disk_usage_bytes,
        "anonymous": v.anonymous,
        "containers": v.containers,
    })
}

/// The size `volume create` asks for: `-s`, else `--opt size=`; 0 leaves it to the daemon.
fn requested_size(a: &VolumeCreateArgs) -> Result<(u64, Vec<String>), CliError> {
    let mut options = a.opt.clone();
    let from_opts = spec::parse_volume_opts(&a.opt).map_err(CliError::usage)?;
    let size = match &a.size {
        Some(text) => {
            let size = text
                .parse::<spec::ByteSize>()
                .map_err(|e| CliError::Usage(format!("--size: {e}")))?;
            let size = spec::check_volume_size(text, size).map_err(CliError::usage)?;
            options.retain(|o| !o.starts_with("size="));
            options.push(format!("size={text}"));
            Some(size)
        }
        None => from_opts,
    };
    Ok((size.map_or(0, spec::ByteSize::bytes), options))
}

/// `container volume create`.
pub async fn create(ctx: &Context, a: &VolumeCreateArgs) -> CliResult {
    if a.name.contains('/') {
        return Err(CliError::Usage(format!(
            "invalid volume name {:?}: a volume name may not contain '/'",
            a.name
        )));
    }
    spec::validate_volume_name(&a.name).map_err(CliError::usage)?;
    let (size_bytes, options) = requested_size(a)?;
    let labels = a
        .label
        .iter()
        .map(|l| l.parse::<spec::Label>().map(|l| v1::Label::from(&l)))
        .collect::<Result<Vec<_>, _>>()
        .map_err(CliError::usage)?;
    let client = ctx.client().await?;
    volumes(&client)
        .create(v1::CreateVolumeRequest {
            name: a.name.clone(),
            size_bytes,
            labels,
            options,
        })
        .await?;
    outln!("{}", a.name);
    Ok(0)
}

/// `container volume list`.
pub async fn list(ctx: &Context, a: &VolumeListArgs) -> CliResult {
    let template = a
        .format
        .template::<listing::VolumeFields>()
        .map_err(CliError::usage)?;
    let client = ctx.client().await?;
    // The daemon filters (and refuses a bad filter in one line), as for `docker volume ls`.
    let list = volumes(&client)
        .list(v1::ListVolumesRequest {
            filters: a.filters.clone(),
        })
        .await?
        .into_inner()
        .volumes;
    if a.quiet {
        for v in &list {
            outln!("{}", v.name);
        }
    } else if let Some(t) = template {
        let fields: Vec<_> = list.iter().map(|v| listing::VolumeFields { v }).collect();
        out!("{}", t.render(&fields));
    } else if a.format == ListFormat::Json {
        let all: Vec<Value> = list.iter().map(volume_json).collect();
        outln!("{}", output::json_line(&Value::Array(all)));
    } else {
        let rows: Vec<Vec<String>> = list.iter().map(volume_row).collect();
        out!("{}", output::table(&VOLUME_HEADERS, &rows));
    }
    Ok(0)
}

/// `container volume inspect`.
pub async fn inspect(ctx: &Context, a: &VolumeInspectArgs) -> CliResult {
    let client = ctx.client().await?;
    inspect_each(&a.names, |name| {
        let client = client.clone();
        async move {
            let volume = volumes(&client)
                .inspect(v1::InspectVolumeRequest { name })
                .await?
                .into_inner()
                .volume;
            volume.as_ref().map(volume_json).ok_or_else(|| {
                CliError::Daemon("the daemon answered inspect without a volume".into())
            })
        }
    })
    .await
}

/// `container volume delete`.
pub async fn delete(ctx: &Context, a: &VolumeDeleteArgs) -> CliResult {
    if !a.all && a.names.is_empty() {
        return Err(CliError::Usage(
            "no volumes given: name at least one, or use --all".into(),
        ));
    }
    let client = ctx.client().await?;
    if a.all {
        let pruned = volumes(&client)
            .prune(v1::PruneVolumesRequest {})
            .await?
            .into_inner();
        for name in &pruned.deleted {
            outln!("{name}");
        }
        return Ok(0);
    }
    if a.names.len() == 1 {
        volumes(&client)
            .delete(v1::DeleteVolumeRequest {
                name: a.names[0].clone(),
            })
            .await?;
        outln!("{}", a.names[0]);
        return Ok(0);
    }
    let mut failed = 0;
    for name in &a.names {
        match volumes(&client)
            .delete(v1::DeleteVolumeRequest { name: name.clone() })
            .await
        {
            Ok(_) => outln!("{name}"),
            Err(status) => {
                eprintln!("container: {}", api::ApiError::from(status));
                failed += 1;
            }
        }
    }
    if failed == 0 {
        Ok(0)
    } else {
        Err(CliError::Partial(format!(
            "{failed} of {} not deleted",
            a.names.len()
        )))
    }
}

/// `container volume prune`.
pub async fn prune(ctx: &Context, _: &VolumePruneArgs) -> CliResult {
    let client = ctx.client().await?;
    let pruned = volumes(&client)
        .prune(v1::PruneVolumesRequest {})
        .await?
        .into_inner();
    out!("{}", output::pruned(&pruned));
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn create_args(args: &[&str]) -> VolumeCreateArgs {
        let mut argv = vec!["container", "volume", "create"];
        argv.extend_from_slice(args);
        match crate::args::Cli::try_parse_from(argv).unwrap().command {
            Some(Command::Volume(VolumeCommand::Create(a))) => a,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn sizes_come_from_the_flag_or_the_option() {
        assert_eq!(requested_size(&create_args(&["v"])).unwrap(), (0, vec![]));
        assert_eq!(
            requested_size(&create_args(&["--opt", "size=1g", "v"])).unwrap(),
            (1 << 30, vec!["size=1g".to_string()])
        );
        assert_eq!(
            requested_size(&create_args(&["-s", "2g", "--opt", "size=1g", "v"])).unwrap(),
            (2 << 30, vec!["size=2g".to_string()])
        );
        let e = requested_size(&create_args(&["--opt", "colour=red", "v"])).unwrap_err();
        assert_eq!(
            e.to_string(),
            r#"invalid volume option "colour=red": unknown option "colour" (expected size)"#
        );
        let e = requested_size(&create_args(&["-s", "12x", "v"])).unwrap_err();
        assert!(e.to_string().starts_with("--size: "), "{e}");
    }

    #[test]
    fn rows_and_json() {
        let v = v1::VolumeInfo {
            name: "data".into(),
            driver: "local".into(),
            format: "ext4".into(),
            source: "/r/volumes/data/volume.ext4".into(),
            created_ms: 1_700_000_000_000,
            labels: vec![v1::Label {
                key: "a".into(),
                value: "b".into(),
            }],
            size_bytes: 1 << 30,
            disk_usage_bytes: 4096,
            anonymous: false,
            containers: vec![],
            options: vec![],
        };
        assert_eq!(
            volume_row(&v),
            [
                "data",
                "named",
                "1.0 GiB",
                "4.0 KiB",
                "2023-11-14T22:13:20Z"
            ]
        );
        let j = volume_json(&v);
        assert_eq!(j["sizeInBytes"], 1u64 << 30);
        assert_eq!(j["labels"]["a"], "b");
        assert_eq!(j["anonymous"], false);
    }
}
