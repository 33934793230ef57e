//! Packages from `requirements.txt` / `packages.txt`, installed with real pip from the package
//! index (needs root and network access to the index).

mod common;

use common::{can_run, TestCluster};
use serde_json::json;

const NUMPY_HANDLER: &str = r#"import os

def handler(event):
    import numpy
    return {
        "numpy": numpy.__version__,
        "packages": sorted(os.listdir("/packages")),
        "versions": sorted(os.listdir("/packages/numpy")),
        "sum": int(numpy.arange(10).sum()),
    }
"#;

const SIX_HANDLER: &str = r#"import os

def handler(event):
    import six
    return {"six": six.__version__, "packages": sorted(os.listdir("/packages"))}
"#;

fn add_with_requirements(c: &TestCluster, name: &str, source: &str, file: &str, text: &str) {
    c.add_handler(name, source);
    std::fs::write(c.registry().join(name).join(file), text).unwrap();
}

fn staging_is_empty(c: &TestCluster) -> bool {
    let staging = c.dir.join("packages/.staging");
    std::fs::read_dir(&staging).map_or(true, |mut d| d.next().is_none())
}

/// Two numpy versions side by side, each lambda seeing only its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_numpy_versions_side_by_side() {
    if !can_run("two_numpy_versions_side_by_side") {
        return;
    }
    let mut c = TestCluster::start(r#"{"timeout_s": 120}"#).await;
    add_with_requirements(
        &c,
        "np-new",
        NUMPY_HANDLER,
        "requirements.txt",
        "# the newer one\nnumpy==2.2.6\n",
    );
    add_with_requirements(
        &c,
        "np-old",
        NUMPY_HANDLER,
        "requirements.txt",
        "numpy==2.1.3\n",
    );
    let (new, old) = tokio::join!(c.call("np-new", "{}"), c.call("np-old", "{}"));
    assert_eq!(new.0, 200, "{}", new.1);
    assert_eq!(old.0, 200, "{}", old.1);
    assert_eq!(
        new.1,
        json!({"numpy": "2.2.6", "packages": ["numpy"], "versions": ["2.2.6"], "sum": 45})
    );
    assert_eq!(
        old.1,
        json!({"numpy": "2.1.3", "packages": ["numpy"], "versions": ["2.1.3"], "sum": 45})
    );
    for v in ["2.2.6", "2.1.3"] {
        assert!(c.dir.join("packages/numpy").join(v).join("numpy").is_dir());
    }
    assert!(staging_is_empty(&c));
    // Warm calls do not touch pip again; the stats count one resolve and one install each.
    assert_eq!(c.call("np-new", "{}").await.0, 200);
    let stats = c.stats().await;
    assert_eq!(stats["packages"]["installs"], 2, "{stats}");
    assert_eq!(stats["packages"]["resolves"], 2, "{stats}");
    c.shutdown().await;
}

/// Two first calls needing the same package install it once; packages.txt works too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_first_calls_install_once() {
    if !can_run("concurrent_first_calls_install_once") {
        return;
    }
    let mut c = TestCluster::start(r#"{"timeout_s": 120}"#).await;
    add_with_requirements(
        &c,
        "six-a",
        SIX_HANDLER,
        "requirements.txt",
        "six==1.17.0\n",
    );
    add_with_requirements(
        &c,
        "six-b",
        SIX_HANDLER,
        "requirements.txt",
        "six==1.17.0\n",
    );
    add_with_requirements(&c, "six-c", SIX_HANDLER, "packages.txt", "six==1.17.0\n");
    let (a, b) = tokio::join!(c.call("six-a", "{}"), c.call("six-b", "{}"));
    for r in [&a, &b] {
        assert_eq!(r.0, 200, "{}", r.1);
        assert_eq!(r.1, json!({"six": "1.17.0", "packages": ["six"]}));
    }
    let stats = c.stats().await;
    assert_eq!(stats["packages"]["installs"], 1, "{stats}");
    assert_eq!(stats["packages"]["resolves"], 1, "{stats}");
    // pip ran as the sandbox user; what it installed now belongs to root.
    for entry in walkdir::WalkDir::new(c.cfg.packages_dir.join("six")) {
        let entry = entry.unwrap();
        let md = std::fs::symlink_metadata(entry.path()).unwrap();
        use std::os::unix::fs::MetadataExt;
        assert_eq!((md.uid(), md.gid()), (0, 0), "{}", entry.path().display());
    }
    let (status, body) = c.call("six-c", "{}").await;
    assert_eq!((status, &body["six"]), (200, &json!("1.17.0")), "{body}");
    // A lambda without requirements sees an empty /packages.
    c.add_handler(
        "plain",
        "import os\ndef handler(event):\n    return os.listdir('/packages')\n",
    );
    assert_eq!(c.call("plain", "{}").await, (200, json!([])));
    c.shutdown().await;
}

/// A package that does not exist, and a requirements file pip must not read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requirements_are_clear_errors() {
    if !can_run("bad_requirements_are_clear_errors") {
        return;
    }
    let mut c = TestCluster::start(r#"{"timeout_s": 120}"#).await;
    add_with_requirements(
        &c,
        "missing",
        SIX_HANDLER,
        "requirements.txt",
        "lambdaworker-no-such-package-5b1c==1.0\n",
    );
    let (status, body) = c.call("missing", "{}").await;
    assert_eq!(status, 424, "{body}");
    assert_eq!(body["error"], "package install failed");
    assert!(
        body["package"]
            .as_str()
            .unwrap()
            .contains("lambdaworker-no-such-package-5b1c"),
        "{body}"
    );
    let pip = body["pip"].as_str().unwrap();
    assert!(
        pip.contains("No matching distribution") || pip.contains("Could not find"),
        "{body}"
    );
    assert!(!c
        .dir
        .join("packages/lambdaworker-no-such-package-5b1c")
        .exists());
    assert!(staging_is_empty(&c));
    add_with_requirements(
        &c,
        "option",
        SIX_HANDLER,
        "requirements.txt",
        "-r /etc/shadow\n",
    );
    let (status, body) = c.call("option", "{}").await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"], "invalid requirements");
    assert!(
        body["message"].as_str().unwrap().contains("line 1"),
        "{body}"
    );
    // The worker keeps serving.
    c.add_quickstart("hello");
    assert_eq!(c.call("hello", "{}").await, (200, json!("Hello, World!")));
    c.shutdown().await;
}

/// `POST /functions/<name>/install` (what `admin install` sends) installs ahead of the first
/// call; while another holder has the install's lock, the install and a call of a function
/// with the same list wait, and `/stats` shows them waiting; the first call after it runs no
/// pip at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn installing_ahead_makes_the_first_call_find_its_packages() {
    if !can_run("installing_ahead_makes_the_first_call_find_its_packages") {
        return;
    }
    let mut c = TestCluster::start(r#"{"timeout_s": 120}"#).await;
    for name in ["six-ahead", "six-same"] {
        add_with_requirements(&c, name, SIX_HANDLER, "requirements.txt", "six==1.16.0\n");
    }
    c.add_quickstart("hello");
    // Another worker of the cluster resolving the same list: its lock, held by the test.
    let lambda = worker::name::LambdaName::parse("six-ahead").unwrap();
    let req = worker::packages::read_requirements(&lambda, &c.registry().join("six-ahead"))
        .unwrap()
        .unwrap();
    let locks = c.cfg.packages_dir.join(".locks");
    std::fs::create_dir_all(&locks).unwrap();
    let held =
        worker::files::FileLock::take(&locks.join(format!("resolve-{}", req.hash()))).unwrap();

    let addr = c.addr;
    let install = tokio::spawn(async move {
        common::http(addr, "POST", "/functions/six-ahead/install", b"").await
    });
    let call =
        tokio::spawn(async move { common::http(addr, "POST", "/runLambda/six-same", b"{}").await });
    let mut waiting = Vec::new();
    for _ in 0..200 {
        let stats = c.stats().await;
        waiting = stats["packages"]["in_progress"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["waiting"] == true && p["step"] == "resolve")
            .map(|p| p["lambda"].as_str().unwrap().to_owned())
            .collect();
        waiting.sort();
        if waiting.len() == 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(waiting, ["six-ahead", "six-same"]);
    drop(held);

    let (status, body) = install.await.unwrap();
    assert_eq!(status, 200, "{body}");
    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["function"], "six-ahead");
    assert_eq!(body["has_requirements"], true);
    assert_eq!(body["packages"], json!(["six==1.16.0"]));
    let (status, body) = call.await.unwrap();
    assert_eq!(status, 200, "{body}");
    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body, json!({"six": "1.16.0", "packages": ["six"]}));
    let before = c.stats().await;
    assert_eq!(before["packages"]["resolves"], 1, "{before}");
    assert_eq!(before["packages"]["installs"], 1, "{before}");
    assert_eq!(before["packages"]["in_progress"], json!([]), "{before}");
    assert!(
        before["lambdas"].get("six-ahead").is_none(),
        "no call counted"
    );

    // The first call finds everything ready: no pip step.
    let (status, body) = c.call("six-ahead", "{}").await;
    assert_eq!(status, 200, "{body}");
    let after = c.stats().await;
    assert_eq!(after["packages"]["resolves"], 1, "{after}");
    assert_eq!(after["packages"]["installs"], 1, "{after}");

    // Without requirements there is nothing to do; unknown names are 404, bad ones 400.
    let (status, body) = c.post("/functions/hello/install", "").await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(r#""has_requirements":false"#), "{body}");
    assert_eq!(c.post("/functions/nope/install", "").await.0, 404);
    assert_eq!(c.post("/functions/..%2f/install", "").await.0, 400);
    c.shutdown().await;
}
