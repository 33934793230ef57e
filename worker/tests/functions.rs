//! Functions as a platform, end to end (root): the registry server and workers in registry
//! and local mode, driven by the real boto3 and aws-cli (installed by `tests/clients/setup.sh`,
//! pinned), by signed requests, and by archives a user could send: a Luna zip, hostile ones.

mod common;

use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use common::clients::{aws_cli, client_venv, run_python};
use common::{can_run, http, new_cluster};
use serde_json::{json, Value};
use worker::aws::Credentials;
use worker::config::Config;
use worker::http_client;
use worker::lambda_config::LambdaLimits;
use worker::registry_server::{Options, RegistryServer};
use worker::Worker;

const KEY: &str = "AKIDLAMBDAWORKER01";
const SECRET: &str = "test-secret-key-0123456789";

fn creds() -> Credentials {
    Credentials::new(KEY, SECRET).unwrap()
}

async fn start_server(cfg: &Config) -> RegistryServer {
    RegistryServer::start(Options {
        registry_dir: cfg.registry_dir.clone(),
        host: "127.0.0.1".into(),
        port: 0,
        credentials: Some(creds()),
        region: cfg.aws_region.clone(),
        account_id: cfg.aws_account_id.clone(),
        defaults: LambdaLimits::defaults(cfg),
    })
    .await
    .expect("registry server starts")
}

/// A worker of the cluster whose template is `cfg`, in registry mode on `server`.
async fn registry_worker(cfg: &Config, cluster: &Path, n: usize, server: SocketAddr) -> Worker {
    let mut w = cfg.clone();
    w.registry = worker::config::RegistryKind::parse(&format!("http://{server}")).unwrap();
    w.registry_revalidate_ms = 300;
    w.worker_dir = cluster.join(format!("workers/worker-{n}"));
    std::fs::create_dir_all(&w.worker_dir).unwrap();
    Worker::start(w)
        .await
        .expect("worker starts in registry mode")
}

/// A signed management request; status and JSON body.
fn signed(addr: SocketAddr, method: &str, path: &str, body: &Value) -> (u16, Value) {
    let body = if body.is_null() {
        Vec::new()
    } else {
        body.to_string().into_bytes()
    };
    let url = format!("http://{addr}{path}");
    let host = addr.to_string();
    let headers = worker::aws::sigv4::sign(
        method,
        &url,
        &[("host", &host)],
        &body,
        &creds(),
        "us-east-1",
        SystemTime::now(),
    )
    .unwrap();
    let mut req = http_client::Request::new(
        method.parse().unwrap(),
        &addr.ip().to_string(),
        addr.port(),
        path,
        Duration::from_secs(60),
    );
    req.headers.insert("host", host.parse().unwrap());
    for (name, value) in headers {
        req.headers.insert(name, value.parse().unwrap());
    }
    req.body = body.into();
    let r = http_client::send_blocking(req).expect("management request");
    let value = serde_json::from_slice(&r.bytes).unwrap_or(Value::Null);
    (r.status, value)
}

fn zip_of(files: &[(&str, &str)]) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for (name, text) in files {
        w.start_file(*name, zip::write::SimpleFileOptions::default())
            .unwrap();
        w.write_all(text.as_bytes()).unwrap();
    }
    w.finish().unwrap().into_inner()
}

fn b64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn create_body(name: &str, handler: &str, zip: &[u8]) -> Value {
    json!({"FunctionName": name, "Runtime": "python3.12", "Role": "arn:aws:iam::000000000000:role/r",
           "Handler": handler, "Code": {"ZipFile": b64(zip)}})
}

async fn call(addr: SocketAddr, name: &str, body: &str) -> (u16, Value) {
    let (status, text) = http(addr, "POST", &format!("/runLambda/{name}"), body.as_bytes()).await;
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// Every path under `dir`, for before/after comparisons.
fn tree(dir: &Path) -> Vec<String> {
    let mut all: Vec<String> = walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_map(Result::ok)
        .map(|e| e.path().strip_prefix(dir).unwrap().display().to_string())
        .collect();
    all.sort();
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn boto3_and_aws_cli_through_a_worker_in_registry_mode() {
    if !can_run("boto3_and_aws_cli_through_a_worker_in_registry_mode") {
        return;
    }
    worker::init_tracing("info");
    let venv = tokio::task::spawn_blocking(client_venv).await.unwrap();
    let (_tmp, dir, cfg) = new_cluster("{}");
    let server = start_server(&cfg).await;
    let w = registry_worker(&cfg, &dir, 0, server.local_addr()).await;
    let worker_url = format!("http://{}", w.local_addr());
    // boto3 talks to the worker, which forwards management calls to the server.
    let args = vec![worker_url.clone(), worker_url, KEY.into(), SECRET.into()];
    tokio::task::spawn_blocking(move || run_python(&venv, "boto3_flow.py", &args))
        .await
        .unwrap();

    // aws-cli against the server itself.
    let venv = tokio::task::spawn_blocking(client_venv).await.unwrap();
    let zip_path = dir.join("cli.zip");
    std::fs::write(
        &zip_path,
        zip_of(&[("app.py", "def handler(e, c):\n    return c.function_name\n")]),
    )
    .unwrap();
    let endpoint = format!("http://{}", server.local_addr());
    let aws = |args: &[&str]| {
        let args: Vec<&std::ffi::OsStr> = args.iter().map(std::ffi::OsStr::new).collect();
        aws_cli(&venv, &endpoint, (KEY, SECRET), &args)
    };
    let zip_arg = format!("fileb://{}", zip_path.display());
    let made = tokio::task::block_in_place(|| {
        aws(&[
            "lambda",
            "create-function",
            "--function-name",
            "cli-fn",
            "--runtime",
            "python3.13",
            "--role",
            "arn:aws:iam::000000000000:role/r",
            "--handler",
            "app.handler",
            "--zip-file",
            &zip_arg,
        ])
    });
    assert_eq!(made["FunctionName"], "cli-fn", "{made}");
    let listed = tokio::task::block_in_place(|| aws(&["lambda", "list-functions"]));
    let names: Vec<&str> = listed["Functions"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|f| f["FunctionName"].as_str())
        .collect();
    assert!(names.contains(&"cli-fn"), "{listed}");
    println!("aws-cli lambda list-functions: {names:?}");
    let (status, out) = call(w.local_addr(), "cli-fn", "{}").await;
    assert_eq!((status, out), (200, json!("cli-fn")));
    w.shutdown().await.unwrap();
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn boto3_against_a_worker_in_local_mode() {
    if !can_run("boto3_against_a_worker_in_local_mode") {
        return;
    }
    worker::init_tracing("info");
    let venv = tokio::task::spawn_blocking(client_venv).await.unwrap();
    let (_tmp, dir, mut cfg) = new_cluster("{}");
    let creds_file = dir.join("config/credentials.json");
    creds().save(&creds_file).unwrap();
    cfg.credentials_file = creds_file;
    let w = Worker::start(cfg).await.expect("worker starts");
    let url = format!("http://{}", w.local_addr());
    let args = vec![url.clone(), url, KEY.into(), SECRET.into()];
    tokio::task::spawn_blocking(move || run_python(&venv, "boto3_flow.py", &args))
        .await
        .unwrap();
    w.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_workers_see_an_update_within_the_revalidation_interval() {
    if !can_run("two_workers_see_an_update_within_the_revalidation_interval") {
        return;
    }
    worker::init_tracing("info");
    let (_tmp, dir, cfg) = new_cluster("{}");
    let server = start_server(&cfg).await;
    let addr = server.local_addr();
    let code = |v: u32| {
        zip_of(&[(
            "lambda_func.py",
            &format!("def handler(event):\n    return {v}\n"),
        )])
    };
    let (status, body) = tokio::task::block_in_place(|| {
        signed(
            addr,
            "POST",
            "/2015-03-31/functions",
            &create_body("shared", "lambda_func.handler", &code(1)),
        )
    });
    assert_eq!(status, 201, "{body}");
    let w0 = registry_worker(&cfg, &dir, 0, addr).await;
    let w1 = registry_worker(&cfg, &dir, 1, addr).await;
    for w in [&w0, &w1] {
        assert_eq!(call(w.local_addr(), "shared", "{}").await, (200, json!(1)));
        assert_eq!(call(w.local_addr(), "shared", "{}").await, (200, json!(1)));
    }
    let (status, body) = tokio::task::block_in_place(|| {
        signed(
            addr,
            "PUT",
            "/2015-03-31/functions/shared/code",
            &json!({"ZipFile": b64(&code(2))}),
        )
    });
    assert_eq!(status, 200, "{body}");
    let updated = Instant::now();
    let interval = Duration::from_millis(300);
    for (i, w) in [&w0, &w1].into_iter().enumerate() {
        loop {
            let (status, v) = call(w.local_addr(), "shared", "{}").await;
            assert_eq!(status, 200, "{v}");
            if v == json!(2) {
                break;
            }
            assert_eq!(v, json!(1), "an old or a new answer, nothing else");
            assert!(
                updated.elapsed() < 3 * interval + Duration::from_secs(2),
                "worker {i} still runs the old code"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        println!("worker {i} ran the new code {:?} after the update (revalidation interval {interval:?})", updated.elapsed());
    }
    w0.shutdown().await.unwrap();
    w1.shutdown().await.unwrap();
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn luna_zips_docs_and_hostile_archives() {
    if !can_run("luna_zips_docs_and_hostile_archives") {
        return;
    }
    worker::init_tracing("info");
    // Local mode, no credentials: changes are accepted from this machine.
    let (_tmp, dir, cfg) = new_cluster("{}");
    let w = Worker::start(cfg.clone()).await.expect("worker starts");
    let addr = w.local_addr();
    let luna = zip_of(&[
        (
            "lambda_main.py",
            "from luna_lambda_tools import StandaloneLambdaRequest\nimport six\n\n\
             async def main(request: StandaloneLambdaRequest) -> dict:\n    \
             return {\"result\": request.json[\"data\"], \"six\": six.__version__}\n",
        ),
        ("requirements.txt", "six==1.17.0\n"),
        ("docs/lambda.html", "<h1>luna docs</h1>"),
        ("docs/lambda.yml", "openapi: 3.0.0\n"),
    ]);
    let mut body = create_body("luna", "lambda_main.main", &luna);
    body.as_object_mut().unwrap().remove("Handler");
    let (status, made) =
        tokio::task::block_in_place(|| signed(addr, "POST", "/2015-03-31/functions", &body));
    assert_eq!(status, 201, "{made}");
    assert_eq!(made["Handler"], "lambda_main.main", "{made}");
    assert_eq!(
        call(addr, "luna", r#"{"data": [1, 2]}"#).await,
        (200, json!({"result": [1, 2], "six": "1.17.0"}))
    );
    let (status, html) = http(addr, "GET", "/functions/luna/docs", b"").await;
    assert_eq!((status, html.as_str()), (200, "<h1>luna docs</h1>"));
    let (status, yml) = http(addr, "GET", "/functions/luna/docs.yml", b"").await;
    assert_eq!((status, yml.as_str()), (200, "openapi: 3.0.0\n"));
    let (status, _) = http(addr, "GET", "/functions/nope/docs", b"").await;
    assert_eq!(status, 404);

    // Hostile archives: each refused with a clear error, the registry unchanged.
    let before = tree(&dir.join("registry"));
    let mut traversal = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    traversal
        .start_file("../x.py", zip::write::SimpleFileOptions::default())
        .unwrap();
    traversal.write_all(b"x").unwrap();
    let traversal = traversal.finish().unwrap().into_inner();
    let mut link = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    link.start_file("lambda_func.py", zip::write::SimpleFileOptions::default())
        .unwrap();
    link.write_all(b"def handler(e):\n    return 1\n").unwrap();
    link.add_symlink(
        "passwd",
        "/etc/passwd",
        zip::write::SimpleFileOptions::default(),
    )
    .unwrap();
    let link = link.finish().unwrap().into_inner();
    let mut bomb = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    bomb.start_file(
        "lambda_func.py",
        zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated),
    )
    .unwrap();
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..512 {
        bomb.write_all(&zeros).unwrap();
    }
    let bomb = bomb.finish().unwrap().into_inner();
    assert!(bomb.len() < 2 << 20, "the bomb is small: {}", bomb.len());
    for (what, zip, needle) in [
        ("traversal", traversal, ".."),
        ("link", link, "link"),
        ("bomb", bomb, "expand"),
    ] {
        let name = format!("evil-{what}");
        let (status, err) = tokio::task::block_in_place(|| {
            signed(
                addr,
                "POST",
                "/2015-03-31/functions",
                &create_body(&name, "lambda_func.handler", &zip),
            )
        });
        assert_eq!(status, 400, "{what}: {err}");
        let message = err.to_string();
        assert!(
            message.contains("InvalidParameterValueException") || err["Type"] == "User",
            "{what}: {err}"
        );
        assert!(message.to_lowercase().contains(needle), "{what}: {err}");
        assert_eq!(call(addr, &name, "{}").await.0, 404, "{what}");
    }
    assert_eq!(
        tree(&dir.join("registry")),
        before,
        "a refused archive changes nothing"
    );
    w.shutdown().await.unwrap();
}
