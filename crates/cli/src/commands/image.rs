//! `container image ...` and `container registry ...`.

use std::io::IsTerminal;

use api::v1::{self, push_image_response::Event as PushEvent};
use tokio::io::AsyncReadExt;
use tokio_stream::wrappers::ReceiverStream;

use crate::Context;
use crate::args::*;
use crate::commands::each::inspect_each;
use crate::commands::progress::{print_progress, pull_with_progress, scheme};
use crate::commands::stream::write_stream;
use crate::error::{CliError, CliResult};
use crate::listing::{self, Filters, ListFormat};
use crate::output;

fn platform(flags: &PlatformFlags) -> Result<String, CliError> {
    spec::Platform::from_flags(
        flags.platform.as_deref(),
        flags.os.as_deref(),
        flags.arch.as_deref(),
    )
    .map(|p| p.map(|p| p.to_string()).unwrap_or_default())
    .map_err(CliError::usage)
}

/// `container image pull`.
pub async fn pull(ctx: &Context, a: &ImagePullArgs) -> CliResult {
    let platform = platform(&a.platform)?;
    let client = ctx.client().await?;
    let image = pull_with_progress(
        &client,
        v1::PullImageRequest {
            reference: a.reference.clone(),
            platform,
            all_platforms: a.all_platforms,
            scheme: scheme(a.registry.scheme),
            max_concurrent_downloads: a.fetch.max_concurrent_downloads,
            credentials: None,
        },
    )
    .await?;
    outln!("{}", image.reference);
    Ok(0)
}

/// `container image push`.
pub async fn push(ctx: &Context, a: &ImagePushArgs) -> CliResult {
    let platform = platform(&a.platform)?;
    let client = ctx.client().await?;
    let mut stream = client
        .images()
        .push(v1::PushImageRequest {
            reference: a.reference.clone(),
            platform,
            scheme: scheme(a.registry.scheme),
            max_concurrent_uploads: a.fetch.max_concurrent_downloads,
            credentials: None,
        })
        .await?
        .into_inner();
    let mut last = std::collections::HashMap::new();
    while let Some(message) = stream.message().await? {
        match message.event {
            Some(PushEvent::Progress(p)) => print_progress(&p, &mut last),
            Some(PushEvent::Status(s)) => eprintln!("{s}"),
            Some(PushEvent::Digest(d)) => {
                outln!("{d}");
                return Ok(0);
            }
            None => {}
        }
    }
    Err(CliError::Daemon(
        "the push ended without reporting a digest".into(),
    ))
}

/// `container image list`.
pub async fn list(ctx: &Context, a: &ImageListArgs) -> CliResult {
    let filters =
        Filters::parse(&a.filters, "images", listing::IMAGE_FILTERS).map_err(CliError::usage)?;
    let template = a
        .format
        .template::<listing::ImageFields>()
        .map_err(CliError::usage)?;
    let client = ctx.client().await?;
    let images = client
        .images()
        .list(v1::ListImagesRequest { all: a.all })
        .await?
        .into_inner()
        .images;
    let images = listing::filter_images(&filters, images).map_err(CliError::usage)?;
    if a.quiet {
        for i in &images {
            outln!("{}", output::image_handle(i));
        }
    } else if let Some(t) = template {
        let fields: Vec<_> = images
            .iter()
            .map(|i| listing::ImageFields {
                i,
                no_trunc: a.no_trunc,
            })
            .collect();
        out!("{}", t.render(&fields));
    } else if a.format == ListFormat::Json {
        let all: Vec<_> = images.iter().map(output::image_json).collect();
        outln!("{}", output::json_line(&serde_json::Value::Array(all)));
    } else if a.verbose {
        let rows: Vec<_> = images.iter().flat_map(output::image_verbose_rows).collect();
        out!("{}", output::table(&output::IMAGE_VERBOSE_HEADERS, &rows));
    } else {
        let mut rows: Vec<_> = images.iter().map(output::image_row).collect();
        if a.no_trunc {
            for (row, i) in rows.iter_mut().zip(&images) {
                row[2] = i.digest.clone();
            }
        }
        out!("{}", output::table(&output::IMAGE_HEADERS, &rows));
    }
    Ok(0)
}

/// `container image inspect`.
pub async fn inspect(ctx: &Context, a: &ImageInspectArgs) -> CliResult {
    let client = ctx.client().await?;
    inspect_each(&a.references, |reference| {
        let client = client.clone();
        async move {
            let image = client
                .images()
                .inspect(v1::InspectImageRequest { reference })
                .await?
                .into_inner()
                .image;
            image.as_ref().map(output::image_json).ok_or_else(|| {
                CliError::Daemon("the daemon answered inspect without an image".into())
            })
        }
    })
    .await
}

/// `container image tag`.
pub async fn tag(ctx: &Context, a: &ImageTagArgs) -> CliResult {
    let client = ctx.client().await?;
    client
        .images()
        .tag(v1::TagImageRequest {
            source: a.source.clone(),
            target: a.target.clone(),
        })
        .await?;
    Ok(0)
}

/// `container image delete`.
pub async fn delete(ctx: &Context, a: &ImageDeleteArgs) -> CliResult {
    if !a.all && a.references.is_empty() {
        return Err(CliError::Usage(
            "no images given: name at least one, or use --all".into(),
        ));
    }
    let client = ctx.client().await?;
    let references = if a.all {
        client
            .images()
            .list(v1::ListImagesRequest { all: false })
            .await?
            .into_inner()
            .images
            .iter()
            .map(output::image_handle)
            .collect()
    } else if a.references.is_empty() {
        return Err(CliError::Usage(
            "no images given: name at least one, or use --all".into(),
        ));
    } else {
        a.references.clone()
    };
    let mut failed = 0;
    for reference in &references {
        match client
            .images()
            .delete(v1::DeleteImageRequest {
                reference: reference.clone(),
                force: a.force,
            })
            .await
        {
            Ok(r) => {
                let r = r.into_inner();
                for u in &r.untagged {
                    outln!("Untagged: {u}");
                }
                for d in &r.deleted {
                    outln!("Deleted: {d}");
                }
            }
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
            "{failed} of {} failed",
            references.len()
        )))
    }
}

/// `container image prune`.
pub async fn prune(ctx: &Context, a: &ImagePruneArgs) -> CliResult {
    let client = ctx.client().await?;
    let pruned = client
        .images()
        .prune(v1::PruneImagesRequest { all: a.all })
        .await?
        .into_inner();
    out!("{}", output::pruned(&pruned));
    Ok(0)
}

/// `container image save`.
pub async fn save(ctx: &Context, a: &ImageSaveArgs) -> CliResult {
    let platform = platform(&a.platform)?;
    if a.output.is_none() && std::io::stdout().is_terminal() {
        return Err(CliError::Usage(
            "refusing to write an archive to a terminal: use -o or redirect stdout".into(),
        ));
    }
    let client = ctx.client().await?;
    let stream = client
        .images()
        .save(v1::SaveImagesRequest {
            references: a.references.clone(),
            platform,
        })
        .await?
        .into_inner();
    write_stream(a.output.as_deref(), stream).await?;
    Ok(0)
}

/// `container image load`.
pub async fn load(ctx: &Context, a: &ImageLoadArgs) -> CliResult {
    let mut input: Box<dyn tokio::io::AsyncRead + Unpin + Send> = match &a.input {
        Some(path) => Box::new(
            tokio::fs::File::open(path)
                .await
                .map_err(|e| CliError::io(format!("opening {}", path.display()), e))?,
        ),
        None => {
            if std::io::stdin().is_terminal() {
                return Err(CliError::Usage(
                    "no archive on stdin: use -i or redirect stdin".into(),
                ));
            }
            Box::new(tokio::io::stdin())
        }
    };
    let client = ctx.client().await?;
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    let header = v1::LoadImagesRequest {
        part: Some(v1::load_images_request::Part::Header(v1::LoadHeader {
            force: a.force,
        })),
    };
    tx.send(header)
        .await
        .map_err(|_| CliError::Daemon("load stream closed".into()))?;
    let reader = tokio::spawn(async move {
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = input
                .read(&mut buf)
                .await
                .map_err(|e| CliError::io("reading the archive", e))?;
            if n == 0 {
                return Ok::<(), CliError>(());
            }
            let part = Some(v1::load_images_request::Part::Data(buf[..n].to_vec()));
            if tx.send(v1::LoadImagesRequest { part }).await.is_err() {
                return Ok(());
            }
        }
    });
    let loaded = client.images().load(ReceiverStream::new(rx)).await;
    let read = reader
        .await
        .map_err(|e| CliError::Daemon(format!("reading the archive failed: {e}")))?;
    let loaded = loaded?.into_inner();
    read?;
    for reference in &loaded.references {
        outln!("Loaded image: {reference}");
    }
    for u in &loaded.untagged {
        outln!("{}", output::untagged_load_line(u));
    }
    Ok(0)
}

/// `container registry login`.
pub async fn login(ctx: &Context, a: &LoginArgs) -> CliResult {
    let username = match &a.username {
        Some(u) => u.clone(),
        None => {
            if a.password_stdin || !std::io::stdin().is_terminal() {
                return Err(CliError::Usage(
                    "--username is required with --password-stdin or without a terminal".into(),
                ));
            }
            prompt("Username: ", false)?
        }
    };
    let password = if a.password_stdin {
        let mut text = String::new();
        tokio::io::stdin()
            .read_to_string(&mut text)
            .await
            .map_err(|e| CliError::io("reading the password from stdin", e))?;
        text.trim_end_matches(['\n', '\r']).to_owned()
    } else if std::io::stdin().is_terminal() {
        prompt("Password: ", true)?
    } else {
        return Err(CliError::Usage(
            "no terminal to ask for the password: use --password-stdin".into(),
        ));
    };
    if password.is_empty() {
        return Err(CliError::Usage("the password is empty".into()));
    }
    let client = ctx.client().await?;
    client
        .registry()
        .login(v1::LoginRequest {
            server: a.server.clone(),
            username,
            password,
            scheme: scheme(a.registry.scheme),
        })
        .await?;
    outln!("Login succeeded");
    Ok(0)
}

/// Asks on the terminal; with `secret` the answer is not echoed.
fn prompt(question: &str, secret: bool) -> Result<String, CliError> {
    use std::io::{BufRead, Write};
    use std::os::fd::AsFd;
    eprint!("{question}");
    let _ = std::io::stderr().flush();
    let stdin = std::io::stdin();
    let guard = if secret {
        let fd = stdin.as_fd();
        let saved = nix::sys::termios::tcgetattr(fd)
            .map_err(|e| CliError::io("reading the terminal", e.into()))?;
        let mut quiet = saved.clone();
        quiet
            .local_flags
            .remove(nix::sys::termios::LocalFlags::ECHO);
        nix::sys::termios::tcsetattr(fd, nix::sys::termios::SetArg::TCSANOW, &quiet)
            .map_err(|e| CliError::io("setting the terminal", e.into()))?;
        Some(saved)
    } else {
        None
    };
    let mut line = String::new();
    let read = stdin.lock().read_line(&mut line);
    if let Some(saved) = guard {
        let _ =
            nix::sys::termios::tcsetattr(stdin.as_fd(), nix::sys::termios::SetArg::TCSANOW, &saved);
        eprintln!();
    }
    read.map_err(|e| CliError::io("reading the terminal", e))?;
    Ok(line.trim_end_matches(['\n', '\r']).to_owned())
}

/// `container registry logout`.
pub async fn logout(ctx: &Context, a: &LogoutArgs) -> CliResult {
    let client = ctx.client().await?;
    client
        .registry()
        .logout(v1::LogoutRequest {
            server: a.server.clone(),
        })
        .await?;
    outln!("Removed login credentials for {}", a.server);
    Ok(0)
}

/// `container registry list`.
pub async fn registry_list(ctx: &Context, a: &RegistryListArgs) -> CliResult {
    let client = ctx.client().await?;
    let logins = client
        .registry()
        .list(v1::ListRegistriesRequest {})
        .await?
        .into_inner()
        .logins;
    if a.quiet {
        for l in &logins {
            outln!("{}", l.hostname);
        }
    } else if a.format == Format::Json {
        let all: Vec<_> = logins
            .iter()
            .map(|l| serde_json::json!({"hostname": l.hostname, "username": l.username}))
            .collect();
        outln!("{}", output::json_line(&serde_json::Value::Array(all)));
    } else {
        let rows: Vec<_> = logins
            .iter()
            .map(|l| vec![l.hostname.clone(), l.username.clone()])
            .collect();
        out!("{}", output::table(&["HOSTNAME", "USERNAME"], &rows));
    }
    Ok(0)
}
