//! The Python client (`clients/python`: Client, LambdaPool, LambdaExecutor, the `lambdaworker`
//! command) against a real worker (root): its integration tests (pytest) run with the
//! worker's address, once on a cluster without credentials and once on one whose calls and
//! changes must be signed.

mod common;
#[path = "common/python_client.rs"]
mod python_client;

use common::{can_run, TestCluster};
use python_client::{python_client_venv, run_integration_tests};
use serde_json::json;

const KEY: &str = "AKIDLAMBDAWORKER15";
const SECRET: &str = "python-client-secret-0123456789";

/// Starts a worker with `patch`, runs the client's integration tests against it with `env`
/// added, and stops it.
async fn run_against_worker(patch: serde_json::Value, env: Vec<(&'static str, String)>) {
    let venv = tokio::task::spawn_blocking(python_client_venv)
        .await
        .unwrap();
    let mut c = TestCluster::start(&patch.to_string()).await;
    let mut env = env;
    env.push(("LAMBDAWORKER_ENDPOINT", format!("http://{}", c.addr)));
    env.push((
        "LAMBDAWORKER_LOG_DIR",
        c.cfg.function_logs().to_string_lossy().into_owned(),
    ));
    let passed = tokio::task::spawn_blocking(move || run_integration_tests(&venv, &env))
        .await
        .unwrap();
    assert!(passed >= 10, "only {passed} integration tests passed");
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn python_client_without_credentials() {
    if !can_run("python_client_without_credentials") {
        return;
    }
    run_against_worker(json!({}), Vec::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn python_client_with_credentials() {
    if !can_run("python_client_with_credentials") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let creds_file = common::credentials_file(tmp.path(), KEY, SECRET);
    let env = vec![
        ("LAMBDAWORKER_ACCESS_KEY", KEY.to_owned()),
        ("LAMBDAWORKER_SECRET_KEY", SECRET.to_owned()),
        ("LAMBDAWORKER_TEST_SIGNED", "1".to_owned()),
    ];
    run_against_worker(json!({"credentials_file": creds_file}), env).await;
}
