//! Volumes in each kind of sandbox (root only): fresh interpreters, forks from a zygote, and
//! sandboxes without user namespaces. In each, a function writes through its access point
//! and owns what it wrote (inside, as itself; on the host, as the access point's uid and gid),
//! a read-only access point gets `EROFS`, and a size-limited volume's limit holds (`ENOSPC`).

mod common;

use std::os::unix::fs::MetadataExt;

use common::{can_run, TestCluster};
use worker::volumes::Volumes;

const WRITER: &str = r#"import errno, os
def handler(event):
    out = {}
    path = '/mnt/data/' + event['file']
    try:
        with open(path, 'w') as f:
            f.write('x' * event.get('bytes', 10))
        st = os.stat(path)
        out['owned'] = st.st_uid == os.getuid() and st.st_gid == os.getgid()
        out['wrote'] = 'ok'
    except OSError as e:
        out['wrote'] = errno.errorcode[e.errno]
    try:
        open('/mnt/ro/' + event['file'], 'a').write('no')
        out['ro'] = 'wrote'
    except OSError as e:
        out['ro'] = errno.errorcode[e.errno]
    return out
"#;

fn add(c: &TestCluster, name: &str, volume: &str) {
    c.add_handler(name, WRITER);
    let config = format!(
        r#"{{"volumes": [
            {{"volume": "{volume}", "path": "/shared", "mount": "/mnt/data", "uid": 2001, "gid": 2002}},
            {{"volume": "{volume}", "path": "/shared", "mount": "/mnt/ro", "uid": 2001, "gid": 2002, "read_only": true}}]}}"#
    );
    std::fs::write(c.registry().join(name).join("lambda.json"), config).unwrap();
}

async fn check(patch: &str) {
    let mut c = TestCluster::start(patch).await;
    let volumes = Volumes::new(c.cfg.volumes());
    volumes.create("plain", None).unwrap();
    volumes.create("small", Some(16)).unwrap();
    add(&c, "plainfn", "plain");
    add(&c, "smallfn", "small");

    let (status, out) = c.call("plainfn", r#"{"file": "a"}"#).await;
    assert_eq!(status, 200, "{patch}: {out}");
    assert_eq!(out["wrote"], "ok", "{patch}: {out}");
    assert_eq!(out["owned"], true, "{patch}: {out}");
    assert_eq!(out["ro"], "EROFS", "{patch}: {out}");
    let host = volumes.data_dir("plain").unwrap().join("shared/a");
    let md = std::fs::metadata(&host).unwrap();
    assert_eq!((md.uid(), md.gid()), (2001, 2002), "{patch}");

    let (status, out) = c
        .call("smallfn", r#"{"file": "big", "bytes": 20000000}"#)
        .await;
    assert_eq!(status, 200, "{patch}: {out}");
    assert_eq!(out["wrote"], "ENOSPC", "{patch}: {out}");
    let (_, out) = c
        .call("smallfn", r#"{"file": "fits", "bytes": 1000}"#)
        .await;
    assert_eq!(out["wrote"], "ok", "{patch}: {out}");

    let stats = c.stats().await;
    c.shutdown().await;
    volumes.delete("small").unwrap();
    volumes.delete("plain").unwrap();
    eprintln!(
        "{patch}: user namespaces {}, zygote starts {}",
        stats["user_namespaces"]["enabled"], stats["lambdas"]["plainfn"]["zygote_starts"]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn volumes_in_fresh_sandboxes() {
    if can_run("volumes_in_fresh_sandboxes") {
        check(r#"{"import_cache": false}"#).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn volumes_in_forked_sandboxes() {
    if can_run("volumes_in_forked_sandboxes") {
        check("{}").await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn volumes_without_user_namespaces() {
    if can_run("volumes_without_user_namespaces") {
        check(r#"{"user_namespaces": false}"#).await;
    }
}
