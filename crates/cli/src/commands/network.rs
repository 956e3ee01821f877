//! `container network ...` and `container system dns ...`.

use api::v1;
use serde_json::{Value, json};

use crate::Context;
use crate::args::*;
use crate::error::{CliError, CliResult};
use crate::listing::{self, Filters, ListFormat};
use crate::output;

/// A network as JSON (inspect, `list --format json`).
pub fn network_json(n: &v1::Network) -> Value {
    let mut labels: Vec<(&String, &String)> = n.labels.iter().collect();
    labels.sort();
    json!({
        "name": n.name,
        "mode": n.mode,
        "subnet": n.subnet,
        "gateway": n.gateway,
        "subnetV6": (!n.subnet_v6.is_empty()).then_some(&n.subnet_v6),
        "internal": n.internal,
        "builtin": n.builtin,
        "labels": labels.into_iter().map(|(k, v)| (k.clone(), json!(v))).collect::<serde_json::Map<_, _>>(),
        "created": output::iso8601(n.created_ms),
        "endpoints": n.endpoints.iter().map(|e| json!({
            "containerId": e.container_id,
            "hostname": e.hostname,
            "ipv4Address": e.ipv4_address,
            "macAddress": e.mac_address,
        })).collect::<Vec<_>>(),
    })
}

/// `container network create`.
pub async fn create(ctx: &Context, a: &NetworkCreateArgs) -> CliResult {
    let labels = a
        .labels
        .iter()
        .map(|l| l.parse::<spec::Label>().map(|l| (l.key, l.value)))
        .collect::<Result<_, _>>()
        .map_err(CliError::usage)?;
    let client = ctx.client().await?;
    let n = client
        .networks()
        .create(v1::NetworkCreateRequest {
            name: a.name.clone(),
            subnet: a.subnet.clone().unwrap_or_default(),
            subnet_v6: a.subnet_v6.clone().unwrap_or_default(),
            internal: a.internal,
            labels,
        })
        .await?
        .into_inner();
    outln!("{}", n.name);
    Ok(0)
}

/// `container network delete`.
pub async fn delete(ctx: &Context, a: &NetworkDeleteArgs) -> CliResult {
    let client = ctx.client().await?;
    let deleted = client
        .networks()
        .delete(v1::NetworkDeleteRequest {
            names: a.names.clone(),
            all: a.all,
        })
        .await?
        .into_inner()
        .deleted;
    for name in deleted {
        outln!("{name}");
    }
    Ok(0)
}

/// `container network list`.
pub async fn list(ctx: &Context, a: &NetworkListArgs) -> CliResult {
    let filters = Filters::parse(&a.filters, "networks", listing::NETWORK_FILTERS)
        .map_err(CliError::usage)?;
    let template = a
        .format
        .template::<listing::NetworkFields>()
        .map_err(CliError::usage)?;
    let client = ctx.client().await?;
    let networks = client
        .networks()
        .list(v1::NetworkListRequest {})
        .await?
        .into_inner()
        .networks;
    let networks = listing::filter_networks(&filters, networks);
    if a.quiet {
        for n in &networks {
            outln!("{}", n.name);
        }
    } else if let Some(t) = template {
        let fields: Vec<_> = networks
            .iter()
            .map(|n| listing::NetworkFields { n })
            .collect();
        out!("{}", t.render(&fields));
    } else if a.format == ListFormat::Json {
        let all: Vec<Value> = networks.iter().map(network_json).collect();
        outln!("{}", output::json_line(&Value::Array(all)));
    } else {
        let rows: Vec<Vec<String>> = networks
            .iter()
            .map(|n| {
                vec![
                    n.name.clone(),
                    n.mode.clone(),
                    n.subnet.clone(),
                    n.gateway.clone(),
                    n.endpoints.len().to_string(),
                ]
            })
            .collect();
        out!(
            "{}",
            output::table(
                &["NETWORK", "MODE", "SUBNET", "GATEWAY", "CONTAINERS"],
                &rows
            )
        );
    }
    Ok(0)
}

/// `container network inspect`.
pub async fn inspect(ctx: &Context, a: &NetworkInspectArgs) -> CliResult {
    let client = ctx.client().await?;
    let mut found = Vec::new();
    for name in &a.names {
        let n = client
            .networks()
            .inspect(v1::NetworkInspectRequest { name: name.clone() })
            .await?
            .into_inner();
        found.push(network_json(&n));
    }
    outln!("{}", output::json_line(&Value::Array(found)));
    Ok(0)
}

/// `container network prune`.
pub async fn prune(ctx: &Context, _: &NetworkPruneArgs) -> CliResult {
    let client = ctx.client().await?;
    let deleted = client
        .networks()
        .prune(v1::NetworkPruneRequest {})
        .await?
        .into_inner()
        .deleted;
    for name in deleted {
        outln!("{name}");
    }
    Ok(0)
}

/// `container system dns ...`.
pub async fn dns(ctx: &Context, c: &DnsCommand) -> CliResult {
    let client = ctx.client().await?;
    let mut networks = client.networks();
    let domains = match c {
        DnsCommand::Create(a) => {
            networks
                .dns_domain_create(v1::DnsDomainRequest {
                    domain: a.domain.clone(),
                })
                .await?;
            return Ok(0);
        }
        DnsCommand::Delete(a) => {
            networks
                .dns_domain_delete(v1::DnsDomainRequest {
                    domain: a.domain.clone(),
                })
                .await?;
            return Ok(0);
        }
        DnsCommand::List(a) => {
            let domains = networks
                .dns_domain_list(v1::DnsDomainListRequest {})
                .await?
                .into_inner()
                .domains;
            if a.format == Format::Json {
                outln!("{}", output::json_line(&json!(domains)));
                return Ok(0);
            }
            domains
        }
    };
    let rows: Vec<Vec<String>> = domains.into_iter().map(|d| vec![d]).collect();
    out!("{}", output::table(&["DOMAIN"], &rows));
    Ok(0)
}
