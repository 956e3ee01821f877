//! End to end, our CLI's list commands with Docker's `--filter`, `--format` templates and
//! `--no-trunc` against a real daemon (docs/listing.md): what a user typing a `docker ps`
//! line sees.

use container_tests::daemon::Daemon;

#[test]
fn list_commands_filter_format_and_no_trunc() {
    let Some(d) = Daemon::start("listing") else {
        return;
    };
    // One container that ran and exited 3 (one VM boot), two only created.
    let _ = d.run(&[
        "run",
        "--name",
        "job",
        "--label",
        "tier=back",
        "busybox",
        "sh",
        "-c",
        "exit 3",
    ]);
    d.ok(&[
        "create",
        "--name",
        "web",
        "--label",
        "tier=front",
        "busybox",
        "httpd",
        "-f",
    ]);
    d.ok(&["create", "--name", "spare", "busybox", "true"]);

    let names = |args: &[&str]| -> Vec<String> {
        let mut all = vec!["ls", "-a", "--format", "{{.Names}}"];
        all.extend_from_slice(args);
        let mut v: Vec<String> = d.ok(&all).lines().map(str::to_owned).collect();
        v.sort();
        v
    };
    assert_eq!(names(&["--filter", "label=tier"]), ["job", "web"]);
    assert_eq!(names(&["--filter", "label=tier=front"]), ["web"]);
    assert_eq!(names(&["--filter", "status=exited"]), ["job"]);
    assert_eq!(names(&["--filter", "exited=3"]), ["job"]);
    assert_eq!(
        names(&["--filter", "status=created", "--filter", "name=sp"]),
        ["spare"]
    );
    assert_eq!(
        names(&["--filter", "ancestor=busybox"]),
        ["job", "spare", "web"]
    );
    // A status filter sees stopped containers without -a, as in Docker.
    assert_eq!(
        d.ok(&[
            "ls",
            "--filter",
            "status=exited",
            "--format",
            "{{.Names}} {{.State}}"
        ]),
        "job exited\n"
    );

    // Fields as `docker ps` words them, a table with Docker's headers, JSON of the item.
    let line = d.ok(&[
        "ls",
        "-a",
        "--filter",
        "name=job",
        "--format",
        "{{.Names}}|{{.Image}}|{{.Command}}|{{.Label \"tier\"}}|{{.Status}}",
    ]);
    assert!(
        line.starts_with("job|busybox|\"sh -c 'exit 3'\"|back|Exited (3) ")
            || line.starts_with("job|busybox|\"sh -c exit 3\"|back|Exited (3) "),
        "{line}"
    );
    let table = d.ok(&[
        "ls",
        "-a",
        "--filter",
        "name=web",
        "--format",
        "table {{.Names}}\\t{{.State}}",
    ]);
    assert_eq!(table, "NAMES     STATE\nweb       created\n");
    let json = d.ok(&["ls", "-a", "--filter", "name=web", "--format", "{{json .}}"]);
    let v: serde_json::Value = serde_json::from_str(json.trim()).expect("one JSON object");
    assert_eq!(v["Names"], "web");
    assert_eq!(v["Labels"], "tier=front");
    assert_eq!(v["ID"].as_str().map(str::len), Some(12), "{json}");
    // --no-trunc: the whole ID.
    let full = d.ok(&[
        "ls",
        "-a",
        "--no-trunc",
        "--filter",
        "name=web",
        "--format",
        "{{.ID}}",
    ]);
    assert_eq!(full.trim().len(), 64, "{full}");
    let quiet = d.ok(&["ls", "-aq", "--no-trunc", "--filter", "name=web"]);
    assert_eq!(quiet, full);

    // Images, volumes, networks.
    assert_eq!(
        d.ok(&[
            "image",
            "ls",
            "--filter",
            "reference=busy*",
            "--format",
            "{{.Repository}}:{{.Tag}}"
        ]),
        "busybox:latest\n"
    );
    assert_eq!(
        d.ok(&["image", "ls", "--filter", "dangling=true", "-q"]),
        ""
    );
    d.ok(&["volume", "create", "--label", "keep=yes", "kept"]);
    d.ok(&["volume", "create", "loose"]);
    assert_eq!(
        d.ok(&[
            "volume",
            "ls",
            "--filter",
            "label=keep",
            "--format",
            "{{.Name}} {{.Driver}}"
        ]),
        "kept local\n"
    );
    let dangling = d.ok(&[
        "volume",
        "ls",
        "--filter",
        "dangling=true",
        "--format",
        "{{.Name}}",
    ]);
    assert!(
        dangling.contains("loose") && dangling.contains("kept"),
        "{dangling}"
    );
    assert_eq!(
        d.ok(&[
            "network",
            "ls",
            "--filter",
            "name=default",
            "--format",
            "{{.Name}} {{.Driver}} {{.Scope}}"
        ]),
        "default bridge local\n"
    );

    // Mistakes are refused in one line with Docker's exit code, before listing anything.
    let e = d.fails(&["ls", "--filter", "colour=red"], 125);
    assert!(e.contains("invalid filter 'colour'"), "{e}");
    let e = d.fails(&["ls", "--format", "{{.Nope}}"], 125);
    assert!(e.contains("invalid format: unknown field .Nope"), "{e}");
    let e = d.fails(&["image", "ls", "--filter", "dangling=maybe"], 125);
    assert!(e.contains("invalid filter 'dangling=maybe'"), "{e}");
    let e = d.fails(&["volume", "ls", "--filter", "status"], 125);
    assert!(e.contains("bad format of filter"), "{e}");
}
