//! The local registries that `cargo xtask registry start` runs hold the test images, under
//! the digests of the OCI layouts `cargo xtask images` built.

use container_tests::TestEnv;
use std::process::Command;

fn curl(args: &[&str]) -> (String, String) {
    let out = Command::new("curl")
        .args(["-s", "-w", "\n%{http_code}"])
        .args(args)
        .output()
        .expect("curl runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or((&text, ""));
    (body.to_owned(), code.to_owned())
}

fn layout_manifest_digest(env: &TestEnv, image: &str) -> String {
    let index = std::fs::read(env.images.join("oci").join(image).join("index.json")).unwrap();
    let index: serde_json::Value = serde_json::from_slice(&index).unwrap();
    index["manifests"][0]["digest"].as_str().unwrap().to_owned()
}

#[test]
fn catalog_lists_the_test_images() {
    let Some(env) = TestEnv::get() else { return };
    let (body, code) = curl(&[&format!("http://{}/v2/_catalog", env.registry)]);
    assert_eq!(code, "200", "{body}");
    let catalog: serde_json::Value = serde_json::from_str(&body).unwrap();
    let repos: Vec<&str> = catalog["repositories"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r.as_str())
        .collect();
    for repo in ["library/busybox", "test/multilayer", "test/manyfiles"] {
        assert!(repos.contains(&repo), "{repo} missing from {repos:?}");
    }
}

#[test]
fn registry_serves_the_layout_digests() {
    let Some(env) = TestEnv::get() else { return };
    for (image, repo) in [
        ("busybox", "library/busybox"),
        ("multilayer", "test/multilayer"),
        ("manyfiles", "test/manyfiles"),
    ] {
        let (headers, code) = curl(&[
            "-I",
            "-H",
            "Accept: application/vnd.oci.image.manifest.v1+json",
            &format!("http://{}/v2/{repo}/manifests/latest", env.registry),
        ]);
        assert_eq!(code, "200", "{headers}");
        let served = headers
            .lines()
            .find_map(|l| {
                l.to_ascii_lowercase()
                    .starts_with("docker-content-digest:")
                    .then(|| l.split_once(':').unwrap().1.trim().to_owned())
            })
            .expect("a Docker-Content-Digest header");
        assert_eq!(served, layout_manifest_digest(&env, image), "{image}");
    }
}

#[test]
fn auth_registry_refuses_anonymous_and_accepts_the_test_user() {
    let Some(env) = TestEnv::get() else { return };
    let url = format!("http://{}/v2/_catalog", env.auth_registry);
    let (_, anonymous) = curl(&[&url]);
    assert_eq!(anonymous, "401");
    let (_, wrong) = curl(&["-u", &format!("{}:wrong", env.auth_user), &url]);
    assert_eq!(wrong, "401");
    let (body, right) = curl(&[
        "-u",
        &format!("{}:{}", env.auth_user, env.auth_password),
        &url,
    ]);
    assert_eq!(right, "200", "{body}");
    assert!(body.contains("library/busybox"), "{body}");
}

#[test]
fn docker_archives_name_their_image() {
    let Some(env) = TestEnv::get() else { return };
    for image in ["busybox", "multilayer"] {
        let archive = env.images.join(format!("{image}.docker.tar"));
        let out = Command::new("tar")
            .arg("-xOf")
            .arg(&archive)
            .arg("manifest.json")
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", archive.display());
        let manifest: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(manifest[0]["RepoTags"][0], format!("{image}:latest"));
        let layers = manifest[0]["Layers"].as_array().unwrap().len();
        assert_eq!(layers, if image == "busybox" { 1 } else { 3 });
    }
}
