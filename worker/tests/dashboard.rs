//! The dashboard in a real browser (root only): a worker runs functions, headless Chromium
//! (Debian's, installed by tests/tools/setup.sh) loads `/` from it, runs the page's script,
//! and the rendered DOM shows each called function with its count; a screenshot of the page is
//! saved under `target/dashboard/`. Also the page's headers and the errors of its routes.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{can_run, request, TestCluster};

/// The flags every Chromium run here gets: headless, no sandbox of its own (we are root), and
/// nothing that reaches for the network or the user's profile.
fn chromium(profile: &Path) -> Command {
    let mut cmd = Command::new("timeout");
    cmd.args(["120", "chromium"]).args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-extensions",
        "--disable-quic",
        "--hide-scrollbars",
        "--virtual-time-budget=6000",
    ]);
    cmd.arg(format!("--user-data-dir={}", profile.display()));
    cmd
}

/// Runs Chromium off the executor (the worker under test shares it) and returns its stdout.
async fn run(mut cmd: Command) -> String {
    let out = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .expect("chromium task")
        .expect("chromium (tests/tools/setup.sh installs Debian's)");
    assert!(
        out.status.success(),
        "chromium: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The text of the first `<td data-field="FIELD">` in the row `<tr data-function="NAME">`.
fn function_cell(dom: &str, name: &str, field: &str) -> Option<String> {
    let row_start = dom.find(&format!("<tr data-function=\"{name}\">"))?;
    let row = &dom[row_start..row_start + dom[row_start..].find("</tr>")?];
    let cell = row.find(&format!("data-field=\"{field}\">"))?;
    let text = &row[cell + field.len() + 14..];
    Some(text[..text.find("</td>")?].to_owned())
}

fn screenshot_path() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    target.join("dashboard/dashboard.png")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn chromium_renders_the_functions_that_were_called() {
    if !can_run("chromium_renders_the_functions_that_were_called") {
        return;
    }
    let c = TestCluster::start("{}").await;
    c.add_handler("hello", "def handler(event):\n    return 'hi'\n");
    c.add_handler(
        "boom",
        "def handler(event):\n    raise ValueError('on purpose')\n",
    );
    for _ in 0..3 {
        assert_eq!(c.call("hello", "{}").await.0, 200);
    }
    assert_ne!(c.call("boom", "{}").await.0, 200);

    // The page and its files, with the headers that keep it to itself.
    let page = request(c.addr, "GET", "/", &[], b"").await;
    assert_eq!(page.status, 200);
    assert_eq!(
        page.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    let csp = page.header("content-security-policy").unwrap_or_default();
    assert!(csp.contains("connect-src 'self'"), "{csp}");
    assert_eq!(page.header("x-content-type-options"), Some("nosniff"));
    assert!(page.text().contains("/dashboard/dashboard.js"));
    let etag = page.header("etag").expect("an etag").to_owned();
    let again = request(
        c.addr,
        "GET",
        "/dashboard",
        &[("If-None-Match", &etag)],
        b"",
    )
    .await;
    assert_eq!(again.status, 304);
    let script = request(c.addr, "GET", "/dashboard/dashboard.js", &[], b"").await;
    assert_eq!(script.status, 200);
    assert_eq!(
        script.header("content-type"),
        Some("text/javascript; charset=utf-8")
    );
    let head = request(c.addr, "HEAD", "/", &[], b"").await;
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
    let post = request(c.addr, "POST", "/", &[], b"{}").await;
    assert_eq!(post.status, 405);
    assert_eq!(post.header("allow"), Some("GET, HEAD"));
    assert!(post.json()["error"].is_string(), "{}", post.text());
    let missing = request(c.addr, "GET", "/dashboard/nope.js", &[], b"").await;
    assert_eq!(missing.status, 404);

    // The browser: the script ran, read /stats and drew a row per function.
    let url = format!("http://{}/", c.addr);
    let profile = c.tmp.path().join("chromium-profile");
    let mut dump = chromium(&profile);
    dump.args(["--dump-dom", &url]);
    let dom = run(dump).await;
    assert!(dom.contains("id=\"updated\""), "{dom}");
    assert!(!dom.contains("cannot read /stats"), "{dom}");
    assert_eq!(
        function_cell(&dom, "hello", "calls").as_deref(),
        Some("3"),
        "{dom}"
    );
    assert_eq!(function_cell(&dom, "boom", "calls").as_deref(), Some("1"));
    assert_eq!(function_cell(&dom, "boom", "errors").as_deref(), Some("1"));
    assert_eq!(
        function_cell(&dom, "hello", "cold_starts").as_deref(),
        Some("1")
    );
    assert!(dom.contains("<tr data-sandbox="), "no sandbox row: {dom}");
    assert!(dom.contains("<svg class=\"spark\""), "no chart: {dom}");

    // A screenshot, kept for people to look at.
    let shot = screenshot_path();
    std::fs::create_dir_all(shot.parent().unwrap()).unwrap();
    let _ = std::fs::remove_file(&shot);
    let mut capture = chromium(&profile);
    capture
        .arg("--window-size=1280,900")
        .arg(format!("--screenshot={}", shot.display()))
        .arg(&url);
    run(capture).await;
    let png = std::fs::read(&shot).expect("the screenshot");
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    assert!(
        png.len() > 10_000,
        "a near-empty screenshot: {} bytes",
        png.len()
    );
    eprintln!("dashboard screenshot: {}", shot.display());
}
