//! Custom bases through the real binaries (root only): an OCI image built here from the
//! cluster's default base plus one layer (a file added, one whiteout), imported with
//! `admin base import`, and a function that names it seeing the image's files, environment
//! and working directory, in a sandbox forked from a zygote on that base; the same image as a
//! `docker save` archive; refusals of a corrupted blob, a wrong diff_id and an image without
//! Python; list and delete. A recipe base (the default plus `python3-pil`) whose handler makes
//! a JPEG with PIL and libjpeg in a fresh sandbox, built once and then taken from the cache;
//! refusals of bad package names, a missing source and a package apt does not know; admin
//! killed in the middle of a build, and the build done again.

mod support;

use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use support::{can_run, fails, free_port, ok, Cluster};

/// `admin base import` that must fail (exit 1): the error.
fn import_fails(f: &str, name: &str, image: &Path) -> String {
    fails_after_progress(&["base", "import", f, name, &image.display().to_string()])
}

/// `admin args...` that must fail (exit 1) after lines of progress: its error, from the
/// `admin: ` line to the end.
fn fails_after_progress(args: &[&str]) -> String {
    let out = support::admin(args);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
    let at = err.rfind("\nadmin: ").map_or(0, |i| i + 1);
    assert!(err[at..].starts_with("admin: "), "{err}");
    err[at..].trim_end().to_owned()
}

fn sha(bytes: &[u8]) -> String {
    worker::hex(&Sha256::digest(bytes))
}

fn sha_file(path: &Path) -> String {
    let mut h = Sha256::new();
    let mut f = std::fs::File::open(path).unwrap();
    std::io::copy(&mut f, &mut h).unwrap();
    worker::hex(&h.finalize())
}

/// The default base as one uncompressed layer.
fn base_layer(base: &Path, to: &Path) {
    let file = std::fs::File::create(to).unwrap();
    let mut b = tar::Builder::new(std::io::BufWriter::new(file));
    b.follow_symlinks(false);
    b.append_dir_all(".", base).unwrap();
    b.into_inner().unwrap().flush().unwrap();
}

/// The extra layer (uncompressed): `opt/extra/hello.txt`, and a whiteout of `etc/motd`.
fn extra_layer() -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut add = |path: &str, data: &[u8], mode: u32| {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_700_000_000);
        h.set_cksum();
        b.append_data(&mut h, path, data).unwrap();
    };
    add("opt/extra/hello.txt", b"from layer 2\n", 0o644);
    add("etc/.wh.motd", b"", 0o644);
    b.into_inner().unwrap()
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn config_json(diff_ids: &[String]) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "architecture": if cfg!(target_arch = "aarch64") { "arm64" } else { "amd64" },
        "os": "linux",
        "config": {"Env": ["PATH=/usr/local/bin:/usr/bin:/bin", "GREETING=from the image"],
                   "WorkingDir": "/opt/extra"},
        "rootfs": {"type": "layers", "diff_ids": diff_ids.iter().map(|d| format!("sha256:{d}")).collect::<Vec<_>>()},
    }))
    .unwrap()
}

/// Writes `files` (archive path, host file) as a tar at `to`.
fn archive(to: &Path, files: &[(String, PathBuf)]) {
    let mut b = tar::Builder::new(std::fs::File::create(to).unwrap());
    for (name, path) in files {
        b.append_path_with_name(path, name).unwrap();
    }
    b.finish().unwrap();
}

/// An OCI image layout of the layers (host file, media type, uncompressed sha256), as a tar.
fn oci_image(dir: &Path, layers: &[(PathBuf, &str, String)], to: &Path) {
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let mut files = Vec::new();
    let mut put = |bytes_path: &Path| {
        let hex = sha_file(bytes_path);
        let name = format!("blobs/sha256/{hex}");
        std::fs::copy(bytes_path, blobs.join(&hex)).unwrap();
        files.push((name, blobs.join(&hex)));
        (hex, std::fs::metadata(bytes_path).unwrap().len())
    };
    let mut descs = Vec::new();
    for (path, media, _) in layers {
        let (hex, size) = put(path);
        descs.push(serde_json::json!({"mediaType": media, "digest": format!("sha256:{hex}"), "size": size}));
    }
    let diff_ids: Vec<String> = layers.iter().map(|(_, _, d)| d.clone()).collect();
    let config = dir.join("config.json");
    std::fs::write(&config, config_json(&diff_ids)).unwrap();
    let (chex, csize) = put(&config);
    let manifest = dir.join("manifest.json");
    std::fs::write(
        &manifest,
        serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": format!("sha256:{chex}"), "size": csize},
            "layers": descs,
        }))
        .unwrap(),
    )
    .unwrap();
    let (mhex, msize) = put(&manifest);
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion": "1.0.0"}"#).unwrap();
    std::fs::write(
        dir.join("index.json"),
        serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": format!("sha256:{mhex}"), "size": msize}],
        }))
        .unwrap(),
    )
    .unwrap();
    files.push(("oci-layout".into(), dir.join("oci-layout")));
    files.push(("index.json".into(), dir.join("index.json")));
    archive(to, &files);
}

const PROBE: &str = r#"import os
def handler(event):
    hello = None
    if os.path.exists('/opt/extra/hello.txt'):
        hello = open('/opt/extra/hello.txt').read().strip()
    return {"hello": hello, "motd": os.path.exists('/etc/motd'),
            "greeting": os.environ.get('GREETING'), "cwd": os.getcwd()}
"#;

fn add(c: &Cluster, name: &str, config: &str) {
    let dir = c.path("registry").join(name);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("lambda_func.py"), PROBE).unwrap();
    std::fs::write(dir.join("lambda.json"), config).unwrap();
}

#[test]
fn an_oci_image_and_a_docker_save_archive_become_bases() {
    if !can_run("an_oci_image_and_a_docker_save_archive_become_bases") {
        return;
    }
    let c = Cluster::new();
    let f = c.flag();
    let work = c.scratch("image");
    std::fs::create_dir_all(&work).unwrap();
    let l1 = work.join("layer1.tar");
    base_layer(&c.path("base"), &l1);
    let l1_diff = sha_file(&l1);
    let extra = extra_layer();
    let l2_diff = sha(&extra);
    let l2 = work.join("layer2.tar.gz");
    std::fs::write(&l2, gzip(&extra)).unwrap();
    let layers = [
        (
            l1.clone(),
            "application/vnd.oci.image.layer.v1.tar",
            l1_diff.clone(),
        ),
        (
            l2.clone(),
            "application/vnd.oci.image.layer.v1.tar+gzip",
            l2_diff.clone(),
        ),
    ];
    let image = work.join("image.tar");
    oci_image(&work.join("oci"), &layers, &image);
    let image_s = image.display().to_string();

    let t = std::time::Instant::now();
    let out = ok(&["base", "import", &f, "img", &image_s]);
    eprintln!(
        "admin base import (OCI, {} MiB): {:.1} s: {out}",
        std::fs::metadata(&image).unwrap().len() >> 20,
        t.elapsed().as_secs_f64()
    );
    assert!(out.contains("imported base img"), "{out}");
    assert!(out.contains("2 layers"), "{out}");
    assert!(fails(&["base", "import", &f, "img", &image_s]).contains("already exists"));

    // The same layers as `docker save` writes them (uncompressed layers, config named by digest).
    let ds = work.join("ds");
    std::fs::create_dir_all(ds.join("l1")).unwrap();
    std::fs::create_dir_all(ds.join("l2")).unwrap();
    std::fs::rename(&l1, ds.join("l1/layer.tar")).unwrap();
    std::fs::write(ds.join("l2/layer.tar"), &extra).unwrap();
    let config = config_json(&[l1_diff.clone(), l2_diff.clone()]);
    let chex = sha(&config);
    std::fs::write(ds.join(format!("{chex}.json")), &config).unwrap();
    std::fs::write(
        ds.join("manifest.json"),
        serde_json::to_vec(&serde_json::json!([{"Config": format!("{chex}.json"), "RepoTags": ["probe:latest"], "Layers": ["l1/layer.tar", "l2/layer.tar"]}])).unwrap(),
    )
    .unwrap();
    let saved = work.join("saved.tar");
    archive(
        &saved,
        &[
            ("manifest.json".into(), ds.join("manifest.json")),
            (format!("{chex}.json"), ds.join(format!("{chex}.json"))),
            ("l1/layer.tar".into(), ds.join("l1/layer.tar")),
            ("l2/layer.tar".into(), ds.join("l2/layer.tar")),
        ],
    );
    let t = std::time::Instant::now();
    let out = ok(&["base", "import", &f, "saved", &saved.display().to_string()]);
    eprintln!(
        "admin base import (docker save): {:.1} s: {out}",
        t.elapsed().as_secs_f64()
    );
    assert!(out.contains("docker-save sha256:"), "{out}");

    // A corrupted layer blob, and a layer that is not what the config's diff_ids say.
    let bad = work.join("bad");
    let blob = bad.join("blobs/sha256").join(sha_file(&l2));
    std::fs::create_dir_all(bad.join("blobs/sha256")).unwrap();
    oci_image(
        &bad,
        &[(
            l2.clone(),
            "application/vnd.oci.image.layer.v1.tar+gzip",
            l2_diff.clone(),
        )],
        &work.join("unused.tar"),
    );
    let mut bytes = std::fs::read(&blob).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&blob, &bytes).unwrap();
    let files: Vec<(String, PathBuf)> = walk(&bad);
    let corrupt = work.join("corrupt.tar");
    archive(&corrupt, &files);
    let err = import_fails(&f, "corrupt", &corrupt);
    assert!(err.contains("the image is corrupt or was changed"), "{err}");
    assert!(err.contains("layer 1"), "{err}");
    let wrong = work.join("wrong.tar");
    oci_image(
        &work.join("wrong"),
        &[(
            l2.clone(),
            "application/vnd.oci.image.layer.v1.tar+gzip",
            l1_diff.clone(),
        )],
        &wrong,
    );
    let err = import_fails(&f, "wrong", &wrong);
    assert!(err.contains("the uncompressed layer"), "{err}");
    // An image without Python.
    let nopy = work.join("nopy.tar");
    oci_image(
        &work.join("nopy"),
        &[(
            l2.clone(),
            "application/vnd.oci.image.layer.v1.tar+gzip",
            l2_diff.clone(),
        )],
        &nopy,
    );
    let err = import_fails(&f, "nopy", &nopy);
    assert!(err.contains("no Python 3"), "{err}");
    assert!(!c.path("bases/corrupt").exists() && !c.path("bases/nopy").exists());
    let leftovers: Vec<_> = std::fs::read_dir(c.path("bases"))
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.file_name())
        .collect();
    assert_eq!(leftovers.len(), 2, "only the two bases: {leftovers:?}");

    // Functions on each base, and one on the default base.
    add(&c, "onimg", r#"{"base": "img"}"#);
    add(&c, "onsaved", r#"{"base": "saved"}"#);
    add(&c, "ondefault", "{}");
    add(&c, "onmissing", r#"{"base": "nosuch"}"#);
    let port = free_port();
    ok(&["workers", &f, &format!("--port={port}")]);
    let answers: Vec<(u16, String)> = ["onimg", "onsaved", "ondefault", "onmissing"]
        .iter()
        .map(|n| support::call(port, n, "{}"))
        .collect();
    let (_, stats) = support::get(port, "/stats");
    let _ = support::admin(&["kill", &f]);
    // Each sandbox was forked from a zygote on its own base: a root zygote per base.
    let stats: serde_json::Value = serde_json::from_str(&stats).unwrap();
    assert_eq!(stats["import_cache"]["forks"], 3, "{stats}");
    let mut bases: Vec<String> = stats["import_cache"]["zygotes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|z| z["base"].as_str().unwrap_or("default").to_owned())
        .collect();
    bases.sort();
    assert_eq!(bases, ["default", "img", "saved"], "{stats}");
    let image_view = r#"{"hello": "from layer 2", "motd": false, "greeting": "from the image", "cwd": "/opt/extra"}"#;
    assert_eq!(answers[0], (200, image_view.to_owned()));
    assert_eq!(answers[1], (200, image_view.to_owned()));
    assert_eq!(
        answers[2],
        (
            200,
            r#"{"hello": null, "motd": true, "greeting": null, "cwd": "/host"}"#.to_owned()
        )
    );
    assert_eq!(answers[3].0, 400, "{}", answers[3].1);
    assert!(
        answers[3].1.contains("base nosuch does not exist"),
        "{}",
        answers[3].1
    );

    let list = ok(&["base", "list", &f]);
    assert!(
        list.contains("img") && list.contains("saved") && list.contains("2 base(s)"),
        "{list}"
    );
    ok(&["base", "delete", &f, "saved"]);
    assert!(!c.path("bases/saved").exists());
    assert!(fails(&["base", "delete", &f, "saved"]).contains("does not exist"));
}

/// Every file under `dir`, named relative to it.
fn walk(dir: &Path) -> Vec<(String, PathBuf)> {
    let mut out = Vec::new();
    for e in walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_map(Result::ok)
    {
        if e.file_type().is_file() {
            let rel = e.path().strip_prefix(dir).unwrap().display().to_string();
            out.push((rel, e.path().to_owned()));
        }
    }
    out
}

const PIL_PROBE: &str = r#"
import io

def handler(event):
    from PIL import Image, features
    img = Image.new("RGB", (4, 3), (255, 0, 0))
    out = io.BytesIO()
    img.save(out, "JPEG")
    return {"jpeg": out.getvalue()[:3].hex(), "libjpeg": features.check("jpg"),
            "size": list(Image.open(io.BytesIO(out.getvalue())).size)}
"#;

#[test]
fn a_recipe_base_adds_debian_packages_a_handler_uses() {
    if !can_run("a_recipe_base_adds_debian_packages_a_handler_uses") {
        return;
    }
    let c = Cluster::new();
    let f = c.flag();
    let create = |name: &str, extra: &[&str]| {
        let mut args = vec!["base", "create", &f, name];
        args.extend_from_slice(extra);
        args.iter().map(|s| s.to_string()).collect::<Vec<String>>()
    };
    let run = |args: Vec<String>| ok(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let refuse = |args: Vec<String>| fails(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let err = refuse(create("x", &["--packages", "python3-pil,Bad_Name"]));
    assert!(
        err.contains("\"Bad_Name\" is not a Debian package name"),
        "{err}"
    );
    let err = refuse(create(
        "x",
        &["--from", "nosuch", "--packages", "python3-pil"],
    ));
    assert!(err.contains("base nosuch does not exist"), "{err}");
    let err = refuse(create("default", &["--packages", "python3-pil"]));
    assert!(err.contains("the cluster's own base"), "{err}");

    let t = std::time::Instant::now();
    let out = run(create(
        "pil",
        &["--from", "default", "--packages", "python3-pil"],
    ));
    eprintln!(
        "admin base create (default + python3-pil): {:.1} s: {out}",
        t.elapsed().as_secs_f64()
    );
    assert!(
        out.contains("created base pil from default + python3-pil"),
        "{out}"
    );
    let err = refuse(create("pil", &["--packages", "python3-pil"]));
    assert!(err.contains("already exists"), "{err}");
    // The same recipe again: from the cache, not built.
    let t = std::time::Instant::now();
    let out = run(create("pil2", &["--packages", "python3-pil"]));
    eprintln!(
        "admin base create (cached): {:.1} s: {out}",
        t.elapsed().as_secs_f64()
    );
    assert!(out.contains("(cached "), "{out}");
    // A package apt does not know: apt's own words, and nothing left behind.
    let err = fails_after_progress(
        &create("nopkg", &["--packages", "no-such-package-lambdaworker"])
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );
    assert!(err.contains("apt-get install failed"), "{err}");
    assert!(err.contains("no-such-package-lambdaworker"), "{err}");
    assert!(!c.path("bases/nopkg").exists());
    // admin killed in the middle of a build: apt dies with it, and the next try builds anew.
    // A cache of this test's own, so that the build really runs whatever this machine has.
    let own_cache = c.scratch("cache");
    let in_own_cache = |args: Vec<String>| {
        let mut cmd = std::process::Command::new(support::ADMIN);
        cmd.args(args).env("LAMBDAWORKER_CACHE", &own_cache);
        cmd
    };
    let mut child = in_own_cache(create("jq", &["--packages", "jq"]))
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let lines = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut seen = Vec::new();
    for line in std::io::BufRead::lines(lines) {
        let line = line.unwrap();
        let apt_running = line.contains("Get:");
        seen.push(line);
        if apt_running {
            break;
        }
    }
    assert!(
        seen.last().is_some_and(|l| l.contains("Get:")),
        "apt never ran: {seen:?}"
    );
    child.kill().unwrap();
    child.wait().unwrap();
    let apt_alive = || {
        std::fs::read_dir("/proc")
            .unwrap()
            .filter_map(Result::ok)
            .any(|e| {
                std::fs::read(e.path().join("cmdline"))
                    .is_ok_and(|c| String::from_utf8_lossy(&c).contains("apt-get"))
            })
    };
    let t = std::time::Instant::now();
    while apt_alive() && t.elapsed() < std::time::Duration::from_secs(10) {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(!apt_alive(), "apt-get still runs after admin was killed");
    assert!(!c.path("bases/jq").exists());
    let out = in_own_cache(create("jq", &["--packages", "jq"]))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("created base jq") && stdout.contains("(built "),
        "{stdout}"
    );
    let own: Vec<String> = std::fs::read_dir(&own_cache)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(own.iter().all(|n| !n.contains(".tmp-")), "{own:?}");
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mounts.contains("/recipe-"),
        "a build's mount is left: {mounts}"
    );
    let cache = admin::cluster::base::default_cache_dir();
    let stale: Vec<_> = std::fs::read_dir(&cache)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".tmp-"))
        .collect();
    assert!(
        stale.is_empty(),
        "build directories left in the cache: {stale:?}"
    );

    for (name, config) in [("onpil", r#"{"base": "pil"}"#), ("plain", "{}")] {
        let dir = c.path("registry").join(name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("lambda_func.py"), PIL_PROBE).unwrap();
        std::fs::write(dir.join("lambda.json"), config).unwrap();
    }
    // Fresh sandboxes here (the OCI test above forks them from the bases' zygotes).
    ok(&["setconf", &f, r#"{"import_cache": false}"#]);
    let port = free_port();
    ok(&["workers", &f, &format!("--port={port}")]);
    let on_pil = support::call(port, "onpil", "{}");
    let plain = support::call(port, "plain", "{}");
    let _ = support::admin(&["kill", &f]);
    assert_eq!(
        on_pil,
        (
            200,
            r#"{"jpeg": "ffd8ff", "libjpeg": true, "size": [4, 3]}"#.to_owned()
        )
    );
    assert!(plain.1.contains("No module named 'PIL'"), "{plain:?}");
    let list = ok(&["base", "list", &f]);
    assert!(list.contains("recipe default: python3-pil"), "{list}");
}
