//! GPU functions against the fake backend and a made-up host: the GPUs a function asks for,
//! refused where there are none, and at most `gpu_sandboxes` GPU sandboxes alive. No root.

use std::path::Path;
use std::sync::Arc;

use super::fake::FakeBackend;
use super::tests::Harness;
use super::*;
use crate::gpu::{GpuHost, Node};

fn host() -> GpuHost {
    let node = |name: &str, minor| Node {
        path: Path::new("/dev").join(name),
        major: 195,
        minor,
    };
    GpuHost::from_parts(
        &[
            node("nvidia0", 0),
            node("nvidia1", 1),
            node("nvidiactl", 255),
        ],
        "",
        Vec::new(),
    )
    .unwrap()
}

fn harness(gpu: Option<GpuHost>, gpu_sandboxes: usize) -> Harness {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = Config {
        registry_dir: tmp.path().join("registry"),
        worker_dir: tmp.path().join("worker"),
        memory_budget_mb: 100_000,
        gpu_sandboxes,
        timeout_s: 5,
        ..Config::default()
    };
    std::fs::create_dir_all(&cfg.registry_dir).unwrap();
    let fake = FakeBackend::default();
    let manager = Arc::new(Manager::new(Arc::new(cfg), fake.clone()).with_gpu_host(gpu));
    Harness { tmp, manager, fake }
}

fn gpu_fn(h: &Harness, name: &str, behaviour: &str, config: &str) {
    h.add(name, behaviour);
    h.add_file(name, "lambda.json", config);
}

async fn call(h: &Harness, name: &str) -> Result<serde_json::Value, RunError> {
    let name = LambdaName::parse(name).unwrap();
    let body = h
        .manager
        .run(&name, bytes::Bytes::from_static(b"{}"), &RequestId::new())
        .await?;
    Ok(serde_json::from_slice(&body).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_gpu_a_gpu_function_is_an_error_of_its_config() {
    let h = harness(None, 1);
    gpu_fn(&h, "g", "echo", r#"{"enable_gpu": true}"#);
    let err = call(&h, "g").await.unwrap_err();
    assert!(matches!(err, RunError::LambdaConfig { .. }), "{err}");
    assert!(err.to_string().contains("no NVIDIA GPU"), "{err}");
    assert_eq!(h.fake.record().started, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gpu_that_is_not_there_is_named() {
    let h = harness(Some(host()), 1);
    gpu_fn(&h, "g", "echo", r#"{"enable_gpu": true, "gpus": [2]}"#);
    let err = call(&h, "g").await.unwrap_err().to_string();
    assert!(
        err.contains("GPU 2 is not on this machine (it has GPU 0, 1)"),
        "{err}"
    );
    assert!(err.contains("\"gpus\""), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gpu_sandboxes_bounds_the_gpu_sandboxes_alive() {
    let h = harness(Some(host()), 1);
    gpu_fn(&h, "a", "echo", r#"{"enable_gpu": true}"#);
    gpu_fn(&h, "b", "sleep 300", r#"{"enable_gpu": true, "gpus": [1]}"#);
    h.add("plain", "echo");
    call(&h, "a").await.unwrap();
    // a's idle GPU sandbox is ended to let b start; plain needs no slot.
    let b = {
        let m = Arc::clone(&h.manager);
        tokio::spawn(async move {
            let name = LambdaName::parse("b").unwrap();
            m.run(&name, bytes::Bytes::from_static(b"{}"), &RequestId::new())
                .await
        })
    };
    call(&h, "plain").await.unwrap();
    b.await.unwrap().unwrap();
    h.settle().await;
    let s = h.manager.lambda_stats();
    assert_eq!((s["a"].live, s["b"].live, s["plain"].live), (0, 1, 1));
    // While b is busy, a waits for the slot, then gets it once b is idle again.
    let busy = {
        let m = Arc::clone(&h.manager);
        tokio::spawn(async move {
            let name = LambdaName::parse("b").unwrap();
            m.run(&name, bytes::Bytes::from_static(b"{}"), &RequestId::new())
                .await
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    let t = std::time::Instant::now();
    call(&h, "a").await.unwrap();
    assert!(
        t.elapsed() >= std::time::Duration::from_millis(150),
        "a waited for b's call"
    );
    busy.await.unwrap().unwrap();
    h.settle().await;
    let s = h.manager.lambda_stats();
    assert_eq!((s["a"].live, s["b"].live), (1, 0));
}
