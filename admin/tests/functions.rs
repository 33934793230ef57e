//! `admin registry`, `upload`, `functions`, `create`, `update`, `delete`, `layer`, and what
//! `status` and `kill` do with a registry server, through the real binary on clusters made with
//! `admin new` (root only): the seed-002 commands exactly as written, every command in registry
//! mode and in local mode, and the error lines of bad flags, wrong keys and missing files, with
//! nothing changed by a refused command.

mod support;

use std::io::Read;
use std::os::unix::fs::PermissionsExt;

use serde_json::{json, Value};
use support::*;

fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.trim_start().chars().next())
            .is_some_and(|state| state != 'Z'),
        Err(_) => false,
    }
}

/// `admin registry -cluster C --port=P --access-key=K --secret-key=S`; its stdout.
fn start_registry(c: &Cluster, port: u16) -> String {
    ok(&[
        "registry",
        "-cluster",
        &c.dir.display().to_string(),
        &format!("--port={port}"),
        &format!("--access-key={KEY}"),
        &format!("--secret-key={SECRET}"),
    ])
}

/// The pull endpoint's record of a function.
fn pulled(port: u16, name: &str) -> Value {
    let (status, body) = get(port, &format!("/registry/functions/{name}"));
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).expect("record JSON")
}

/// The names in a zip, in order.
fn zip_names(bytes: &[u8]) -> Vec<String> {
    let mut z = zip::ZipArchive::new(std::io::Cursor::new(bytes)).expect("zip");
    (0..z.len())
        .map(|i| z.by_index(i).expect("entry").name().to_owned())
        .collect()
}

/// One file of a zip.
fn zip_file(bytes: &[u8], name: &str) -> String {
    let mut z = zip::ZipArchive::new(std::io::Cursor::new(bytes)).expect("zip");
    let mut f = z.by_name(name).expect("file in the zip");
    let mut s = String::new();
    f.read_to_string(&mut s).expect("read");
    s
}

/// The row of `name` in `admin functions`, split into columns.
fn row(table: &str, name: &str) -> Vec<String> {
    table
        .lines()
        .find(|l| l.split_whitespace().next() == Some(name))
        .unwrap_or_else(|| panic!("{name} not in:\n{table}"))
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

#[test]
fn seed_002_registry_then_upload_then_workers() {
    if !can_run("seed_002_registry_then_upload_then_workers") {
        return;
    }
    let c = Cluster::new();
    let cluster = c.dir.display().to_string();
    let port = free_port();
    let bundle = c.scratch("echo.tar.gz");
    let bytes = tar_gz(&[
        (
            "lambda_func.py",
            "def handler(event):\n    return {'echo': event, 'from': 'the registry'}\n",
        ),
        ("packages.txt", "# no packages\n"),
    ]);
    std::fs::write(&bundle, &bytes).unwrap();

    // ./admin registry --port= --access-key= --secret-key= (and the cluster).
    let out = ok(&[
        "registry",
        "-cluster",
        &cluster,
        &format!("--port={port}"),
        &format!("--access-key={KEY}"),
        &format!("--secret-key={SECRET}"),
    ]);
    assert!(
        out.contains(&format!("http://127.0.0.1:{port}/status => ready")),
        "{out}"
    );
    let t = c.template();
    assert_eq!(t["registry"], format!("http://127.0.0.1:{port}"));
    let creds_file = c.path("config/credentials.json");
    assert_eq!(t["credentials_file"], creds_file.display().to_string());
    let mode = std::fs::metadata(&creds_file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    assert_eq!(
        worker::aws::Credentials::load(&creds_file).unwrap(),
        creds()
    );
    let pid = c.registry_pid().expect("logs/registry.pid");
    assert!(alive(pid));

    // ./admin upload --cluster= --handler= --file= --access-key= --secret-key=
    let out = ok(&[
        "upload",
        &format!("--cluster={cluster}"),
        "--handler=echo",
        &format!("--file={}", bundle.display()),
        &format!("--access-key={KEY}"),
        &format!("--secret-key={SECRET}"),
    ]);
    assert!(
        out.contains(&format!(
            "uploaded echo on the registry server http://127.0.0.1:{port}: version 1"
        )),
        "{out}"
    );
    assert!(out.contains(&sha256_hex(&bytes)), "{out}");
    assert_eq!(pulled(port, "echo")["code_sha256"], sha256_hex(&bytes));
    // The server keeps it in the cluster's registry directory.
    assert_eq!(c.stored_functions(), ["echo"]);

    // ./admin workers, then curl -X POST localhost:PORT/runLambda/echo -d '{...}'.
    let wport = free_port();
    ok(&[
        "workers",
        &format!("--cluster={cluster}"),
        &format!("--port={wport}"),
    ]);
    let w: Value =
        serde_json::from_str(&std::fs::read_to_string(c.path("config/worker-0.json")).unwrap())
            .unwrap();
    assert_eq!(w["registry"], format!("http://127.0.0.1:{port}"));
    let (status, body) = call(wport, "echo", r#"{"x": 1}"#);
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v, json!({"echo": {"x": 1}, "from": "the registry"}));

    let out = ok(&["status", &c.flag()]);
    assert!(
        out.contains(&format!(
            "Registry:\nhttp://127.0.0.1:{port}/status => ready [200 OK] pid={pid}"
        )),
        "{out}"
    );

    // kill stops the registry server too.
    let out = ok(&["kill", &c.flag()]);
    assert!(
        out.contains(&format!("registry: stopped pid {pid}")),
        "{out}"
    );
    assert!(!exists(&c.path("logs/registry.pid")));
    assert!(!alive(pid));
    let out = admin(&["status", &c.flag()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stdout).contains(&format!(
            "http://127.0.0.1:{port}/status => unreachable: connection refused pid=-"
        )),
        "{}",
        text(&out.stdout)
    );
    let out = admin(&["status", &c.flag(), "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let doc: Value = serde_json::from_str(&text(&out.stdout)).unwrap();
    assert_eq!(doc["registry"]["kind"], "server");
    assert_eq!(doc["registry"]["ok"], false);
    assert_eq!(doc["registry"]["url"], format!("http://127.0.0.1:{port}"));
    assert_eq!(doc["workers"][0]["status"], "unreachable", "{doc:#}");
}

#[test]
fn registry_refusals_and_a_failed_start_leave_the_cluster_as_it_was() {
    if !can_run("registry_refusals_and_a_failed_start_leave_the_cluster_as_it_was") {
        return;
    }
    let c = Cluster::new();
    let before = c.template();
    let keys = [
        format!("--access-key={KEY}"),
        format!("--secret-key={SECRET}"),
    ];
    // Bad keys, named without their value.
    let e = fails(&[
        "registry",
        &c.flag(),
        "--port=9",
        "--access-key=AK",
        &keys[1],
    ]);
    assert!(e.contains("access key: must be 3 to 128 characters"), "{e}");
    let e = fails(&[
        "registry",
        &c.flag(),
        "--port=9",
        &keys[0],
        "--secret-key=short",
    ]);
    assert!(e.contains("secret key"), "{e}");
    assert!(!e.contains("short"), "{e}");
    // A port something listens on.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let tport = taken.local_addr().unwrap().port();
    let e = fails(&[
        "registry",
        &c.flag(),
        &format!("--port={tport}"),
        &keys[0],
        &keys[1],
    ]);
    assert!(
        e.contains(&format!("port {tport} is already in use")),
        "{e}"
    );
    drop(taken);
    assert_eq!(c.template(), before);
    assert!(!exists(&c.path("config/credentials.json")));

    // A server that cannot start (its registry directory is not one): the error shows its
    // log, and the template, credentials and record are put back.
    ok(&[
        "setconf",
        &c.flag(),
        r#"{"registry_dir": "/nonexistent/registry"}"#,
    ]);
    let before = c.template();
    let out = admin(&[
        "registry",
        &c.flag(),
        &format!("--port={}", free_port()),
        &keys[0],
        &keys[1],
    ]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("the registry server exited"), "{err}");
    assert!(err.contains("last lines of"), "{err}");
    assert!(err.contains("/nonexistent/registry"), "{err}");
    assert_eq!(c.template(), before);
    for f in [
        "config/credentials.json",
        "config/registry.json",
        "logs/registry.pid",
    ] {
        assert!(!exists(&c.path(f)), "{f} left behind");
    }
    ok(&[
        "setconf",
        &c.flag(),
        &format!(r#"{{"registry_dir": "{}"}}"#, c.path("registry").display()),
    ]);

    // Running: a second start is refused, with either spelling of the flags.
    let port = free_port();
    start_registry(&c, port);
    let pid = c.registry_pid().unwrap();
    let e = fails(&[
        "registry",
        "--cluster",
        &c.dir.display().to_string(),
        "-port",
        &free_port().to_string(),
        &keys[0],
        &keys[1],
    ]);
    assert!(e.contains(&format!("already running (pid {pid}")), "{e}");
    assert_eq!(c.registry_pid(), Some(pid));
    // After a kill -9 the stale pid file does not stop a new start.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while alive(pid) && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    start_registry(&c, port);
    assert_ne!(c.registry_pid(), Some(pid));
}

#[test]
fn every_command_against_a_registry_server() {
    if !can_run("every_command_against_a_registry_server") {
        return;
    }
    let c = Cluster::new();
    let port = free_port();
    start_registry(&c, port);
    let f = c.flag();
    let app = c.files(
        "app",
        &[
            (
                "lambda_func.py",
                "import helper\ndef handler(event):\n    return helper.greet(event)\n",
            ),
            (
                "helper.py",
                "import os, common\ndef greet(e):\n    return 'v1 %s %s %d' % (os.environ['GREETING'], e['who'], common.VALUE)\n",
            ),
        ],
    );
    let reqs = c
        .files("extra", &[("reqs.txt", "# nothing to install\n")])
        .join("reqs.txt");
    let lay = c.files("layer", &[("python/common.py", "VALUE = 1\n")]);
    let lay2 = c.files("layer2", &[("python/common.py", "VALUE = 2\n")]);
    let app_s = app.display().to_string();
    let empty = "0 function(s) in the registry server";

    // Bad flags and files: one line each, nothing uploaded.
    for (args, needle) in [
        (
            vec!["--memory", "100"],
            "--memory 100: memory_mb must be from 128 to 3008, not 100",
        ),
        (vec!["--memory=200"], "memory_mb must be a multiple of 64"),
        (
            vec!["--timeout", "901"],
            "--timeout 901: timeout_s must be from 1 to 900, not 901",
        ),
        (
            vec!["--layers", "a,b,c,d,e,f"],
            "--layers a,b,c,d,e,f: layers: at most 5 layers, not 6",
        ),
        (
            vec!["--env", "NOEQUALS"],
            "--env NOEQUALS: must be KEY=VALUE",
        ),
        (
            vec!["--entry", "nodot"],
            "--entry nodot: entry must be module.function",
        ),
        (
            vec!["--workers", "0"],
            "--workers 0: workers must be from 1 to 32",
        ),
    ] {
        let mut a = vec!["create", &f, "app", &app_s];
        a.extend(args);
        let e = fails(&a);
        assert!(e.contains(needle), "{a:?}: {e}");
    }
    let missing = c.scratch("missing.py").display().to_string();
    let e = fails(&["create", &f, "app", &app_s, &missing]);
    assert!(e.contains(&missing) && e.contains("No such file"), "{e}");
    let e = fails(&["create", &f, "app", &app_s, "-r", &missing]);
    assert!(e.contains(&missing), "{e}");
    let e = fails(&["create", &f, "app"]);
    assert!(
        e.contains("give the files and directories to deploy"),
        "{e}"
    );
    // A layer that does not exist is the server's refusal.
    let e = fails(&["create", &f, "app", &app_s, "--layers", "nosuch"]);
    assert!(e.contains("nosuch"), "{e}");
    // Wrong keys: the server's 403, on one line.
    let e = fails(&[
        "create",
        &f,
        "app",
        &app_s,
        &format!("--access-key={KEY}"),
        "--secret-key=not-the-secret",
    ]);
    assert!(
        e.contains("403 Forbidden (InvalidSignatureException)"),
        "{e}"
    );
    let e = fails(&[
        "create",
        &f,
        "app",
        &app_s,
        "--access-key=AKIDSOMEONEELSE",
        &format!("--secret-key={SECRET}"),
    ]);
    assert!(
        e.contains("403 Forbidden (UnrecognizedClientException)"),
        "{e}"
    );
    assert!(ok(&["functions", &f]).contains(empty));
    assert!(c.stored_functions().is_empty());

    // Layers.
    let out = ok(&[
        "layer",
        "publish",
        &f,
        "common",
        &lay.display().to_string(),
        "--description",
        "shared",
    ]);
    assert!(out.contains("published layer common version 1"), "{out}");
    let out = ok(&[
        "layer",
        "publish",
        &f,
        "common",
        &lay2.display().to_string(),
    ]);
    assert!(out.contains("published layer common version 2"), "{out}");
    let out = ok(&["layer", "list", &f]);
    assert!(row(&out, "common")[1] == "2", "{out}");

    // Create, with every flag.
    let out = ok(&[
        "create",
        &f,
        "app",
        &app_s,
        "-r",
        &reqs.display().to_string(),
        "--memory",
        "512",
        "--timeout=30",
        "--layers",
        "common:1",
        "--env",
        "GREETING=hello",
        "--env",
        "LEVEL=2",
        "--tag",
        "lambdapool=yes",
        "--description",
        "the app",
    ]);
    assert!(out.contains("created app on the registry server"), "{out}");
    assert!(
        out.contains("version 1, entry lambda_func.handler, 3 files"),
        "{out}"
    );
    let rec = pulled(port, "app");
    assert_eq!(
        rec["settings"],
        json!({"description": "the app", "memory_mb": 512, "timeout_s": 30,
            "environment": {"GREETING": "hello", "LEVEL": "2"}, "layers": ["common:1"],
            "tags": {"lambdapool": "yes"}})
    );
    let sha = rec["code_sha256"].as_str().unwrap().to_owned();
    assert!(out.contains(&sha), "{out}");
    // The archive as uploaded: the lone directory's contents at the top, the requirements
    // file as requirements.txt, and its hash is the one reported.
    let r = worker::http_client::get(
        "127.0.0.1",
        port,
        &format!("/registry/archives/{sha}"),
        std::time::Duration::from_secs(10),
    )
    .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(sha256_hex(&r.bytes), sha);
    assert_eq!(
        zip_names(&r.bytes),
        ["helper.py", "lambda_func.py", "requirements.txt"]
    );
    assert_eq!(
        zip_file(&r.bytes, "requirements.txt"),
        "# nothing to install\n"
    );
    let e = fails(&["create", &f, "app", &app_s]);
    assert!(e.contains("function already exists: app"), "{e}");

    let table = ok(&["functions", &f]);
    let r = row(&table, "app");
    assert_eq!(
        r[..4],
        ["app", "lambda_func.handler", "512MB", "30s"],
        "{table}"
    );
    assert_eq!(r[4], rec["code_size"].to_string(), "{table}");
    assert_eq!(r[5], "1", "{table}");

    // Update: flags merge into the settings (tags key by key), code replaced with PATHs.
    let out = ok(&["update", &f, "app", "--timeout", "60", "--tag", "team=x"]);
    assert!(out.contains("(settings: tags, timeout_s)"), "{out}");
    let rec = pulled(port, "app");
    assert_eq!(rec["settings"]["timeout_s"], 60);
    assert_eq!(rec["settings"]["memory_mb"], 512);
    assert_eq!(
        rec["settings"]["tags"],
        json!({"lambdapool": "yes", "team": "x"})
    );
    assert_eq!(rec["code_sha256"], sha.as_str());
    let v_settings = rec["version"].as_u64().unwrap();
    std::fs::write(
        app.join("helper.py"),
        "import os, common\ndef greet(e):\n    return 'v2 %s %s %d' % (os.environ['GREETING'], e['who'], common.VALUE)\n",
    )
    .unwrap();
    let out = ok(&["update", &f, "app", &app_s]);
    assert!(out.contains("(code replaced)"), "{out}");
    let rec = pulled(port, "app");
    assert_ne!(rec["code_sha256"], sha.as_str());
    assert_eq!(rec["version"].as_u64().unwrap(), v_settings + 1);
    assert_eq!(rec["settings"]["timeout_s"], 60);
    // The limit AWS's API lacks, through the server's own member.
    let out = ok(&["update", &f, "app", "--workers", "4"]);
    assert!(out.contains("max_concurrency"), "{out}");
    let rec = pulled(port, "app");
    assert_eq!(rec["settings"]["max_concurrency"], 4);
    assert_eq!(rec["config"]["max_concurrency"], 4);
    let version = rec["version"].clone();

    // A worker in registry mode runs it: its environment and its layer (version 1 of two).
    let wport = free_port();
    ok(&["workers", &f, &format!("--port={wport}")]);
    let (status, body) = call(wport, "app", r#"{"who": "admin"}"#);
    assert_eq!((status, body.as_str()), (200, "\"v2 hello admin 1\""));

    // Refusals leave the function as it was.
    let e = fails(&["update", &f, "nosuch", "--memory", "256"]);
    assert!(e.contains("function not found: nosuch"), "{e}");
    let e = fails(&["update", &f, "app"]);
    assert!(
        e.contains("give files and directories to deploy, or settings flags"),
        "{e}"
    );
    let e = fails(&["update", &f, "app", "--timeout", "0"]);
    assert!(
        e.contains("--timeout 0: timeout_s must be from 1 to 900"),
        "{e}"
    );
    let e = fails(&["update", &f, "app", "--layers", "common:7"]);
    assert!(
        e.contains("--layers common:7: layer common has no version 7"),
        "{e}"
    );
    let e = fails(&[
        "update",
        &f,
        "app",
        "--memory",
        "1024",
        &format!("--access-key={KEY}"),
        "--secret-key=not-the-secret",
    ]);
    assert!(e.contains("403"), "{e}");
    assert_eq!(pulled(port, "app")["version"], version);
    assert_eq!(pulled(port, "app")["settings"]["memory_mb"], 512);

    // Upload beside create: a zip with the same CLI.
    let zip = c.scratch("z.zip");
    let zbytes = zip_of(&[("lambda_func.py", b"def handler(e):\n    return 'zip'\n")]);
    std::fs::write(&zip, &zbytes).unwrap();
    let out = ok(&[
        "upload",
        &f,
        "-handler",
        "zipped",
        "-file",
        &zip.display().to_string(),
    ]);
    assert!(out.contains(&sha256_hex(&zbytes)), "{out}");
    let e = fails(&[
        "upload",
        &f,
        "-handler",
        "bad",
        "-file",
        &app.join("helper.py").display().to_string(),
    ]);
    assert!(e.contains("not a .zip or .tar.gz"), "{e}");

    // Delete.
    assert_eq!(c.stored_functions(), ["app", "zipped"]);
    let out = ok(&["delete", &f, "app"]);
    assert!(out.contains("deleted app"), "{out}");
    let e = fails(&["delete", &f, "app"]);
    assert!(e.contains("function not found: app"), "{e}");
    assert_eq!(c.stored_functions(), ["zipped"]);
    assert!(!exists(&c.path("registry/app")));
    let out = ok(&["functions", &f]);
    assert!(out.contains("1 function(s)"), "{out}");
}

#[test]
fn every_command_against_the_local_registry() {
    if !can_run("every_command_against_the_local_registry") {
        return;
    }
    let c = Cluster::new();
    let f = c.flag();
    let app = c.files(
        "src",
        &[
            (
                "lambda_func.py",
                "import os, helper, common\nfrom lib import util\ndef handler(event):\n    return '%s %s %d %d' % (helper.VALUE, os.environ['A'], common.VALUE, util.X)\n",
            ),
            ("helper.py", "VALUE = 'made by admin create'\n"),
        ],
    );
    let lib = c.files("lib", &[("util.py", "X = 1\n")]);
    let lay = c.files("layer", &[("python/common.py", "VALUE = 1\n")]);
    let (app_s, lib_s) = (app.display().to_string(), lib.display().to_string());

    let e = fails(&["create", &f, "app", &app_s, "--memory", "100"]);
    assert!(
        e.contains("--memory 100: memory_mb must be from 128 to 3008"),
        "{e}"
    );
    let e = fails(&[
        "create",
        &f,
        "app",
        &app_s,
        &format!("--access-key={KEY}"),
        &format!("--secret-key={SECRET}"),
    ]);
    assert!(e.contains("are for a registry server"), "{e}");
    assert!(c.stored_functions().is_empty());
    assert!(!exists(&c.path("registry/app")));

    ok(&["layer", "publish", &f, "common", &lay.display().to_string()]);
    assert!(exists(
        &c.path("registry/.store/layers/common/1/python/common.py")
    ));
    // Two paths: each directory under its name, files at the top.
    let out = ok(&[
        "create",
        &f,
        "app",
        &app.join("lambda_func.py").display().to_string(),
        &app.join("helper.py").display().to_string(),
        &lib_s,
        "--workers",
        "4",
        "--layers",
        "common",
        "--env",
        "A=1",
    ]);
    assert!(out.contains("created app on the local registry"), "{out}");
    for file in ["lambda_func.py", "helper.py", "lib/util.py"] {
        assert!(exists(&c.path(&format!("registry/app/{file}"))), "{file}");
    }
    let lambda_json: Value =
        serde_json::from_str(&std::fs::read_to_string(c.path("registry/app/lambda.json")).unwrap())
            .unwrap();
    assert_eq!(lambda_json["max_concurrency"], 4);
    assert_eq!(lambda_json["environment"], json!({"A": "1"}));
    let out = ok(&["update", &f, "app", "--timeout", "5"]);
    assert!(out.contains("version 2"), "{out}");
    let table = ok(&["functions", &f]);
    let r = row(&table, "app");
    assert_eq!(
        r[..4],
        ["app", "lambda_func.handler", "256MB", "5s"],
        "{table}"
    );
    assert_eq!(r[5], "2", "{table}");
    // LambdaPool's own list: only the functions carrying its tag.
    ok(&["update", &f, "app", "--tag", "lambdapool=yes"]);
    let mine = ok(&["functions", &f, "--tag", "lambdapool=yes"]);
    assert!(
        mine.contains("\napp ") && mine.contains("1 function(s)"),
        "{mine}"
    );
    let none = ok(&["functions", &f, "--tag", "lambdapool=no"]);
    assert!(none.contains("0 function(s)"), "{none}");
    assert!(
        fails(&["functions", &f, "--tag", "novalue"]).contains("--tag novalue: must be KEY=VALUE")
    );
    let out = ok(&["layer", "list", &f]);
    assert_eq!(row(&out, "common")[1], "1", "{out}");

    // upload: .tar.gz and .zip into the local registry, as before.
    let tgz = c.scratch("b.tar.gz");
    std::fs::write(
        &tgz,
        tar_gz(&[("lambda_func.py", "def handler(e):\n    return 'tgz'\n")]),
    )
    .unwrap();
    let out = ok(&[
        "upload",
        &f,
        "-handler=bundled",
        &format!("-file={}", tgz.display()),
    ]);
    assert!(out.starts_with("uploaded bundled: version 1"), "{out}");
    let zip = c.scratch("b.zip");
    std::fs::write(
        &zip,
        zip_of(&[("lambda_func.py", b"def handler(e):\n    return 'zip'\n")]),
    )
    .unwrap();
    let out = ok(&[
        "upload",
        &f,
        "-handler=bundled",
        &format!("-file={}", zip.display()),
    ]);
    assert!(out.starts_with("replaced bundled: version 2"), "{out}");

    // A worker runs what admin create deployed.
    let wport = free_port();
    ok(&["workers", &f, &format!("--port={wport}")]);
    let (status, body) = call(wport, "app", "{}");
    assert_eq!(
        (status, body.as_str()),
        (200, "\"made by admin create 1 1 1\"")
    );
    let (status, body) = call(wport, "bundled", "{}");
    assert_eq!((status, body.as_str()), (200, "\"zip\""));

    ok(&["delete", &f, "app"]);
    assert!(!exists(&c.path("registry/app")));
    assert_eq!(c.stored_functions(), ["bundled"]);
    let (status, _) = call(wport, "app", "{}");
    assert_eq!(status, 404);
    let out = ok(&["status", &f]);
    assert!(
        out.contains(&format!(
            "Registry:\nlocal directory {}",
            c.path("registry").display()
        )),
        "{out}"
    );
    // The same as JSON, each worker with its whole /stats.
    let doc: Value = serde_json::from_str(&ok(&["status", &f, "--json"])).unwrap();
    let w = &doc["workers"][0];
    assert_eq!(
        (
            w["name"].as_str(),
            w["status"].as_str(),
            w["http_status"].as_u64()
        ),
        (Some("worker-0"), Some("ready"), Some(200)),
        "{doc:#}"
    );
    assert_eq!(w["port"], wport);
    assert_eq!(w["stats"]["lambdas"]["bundled"]["calls"], 1, "{doc:#}");
    assert_eq!(doc["registry"]["kind"], "local");
    assert_eq!(doc["registry"]["ok"], true);
}
