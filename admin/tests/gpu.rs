//! GPU functions through the real binaries (root only). Without an NVIDIA GPU here (no
//! `/dev/nvidiactl`), `admin create` refuses a function with `enable_gpu` and deploys nothing.
//! With one, the function deploys, and in its sandbox `nvidia-smi -L` lists exactly the GPU it
//! asked for, and a CUDA computation runs through CuPy or PyTorch when the base has one.

mod support;

use support::{can_run, fails, free_port, ok, Cluster};

const GPU_HANDLER: &str = r#"import os, subprocess
def handler(event):
    out = {"visible": os.environ.get("NVIDIA_VISIBLE_DEVICES"),
           "dev": sorted(n for n in os.listdir("/dev") if n.startswith("nvidia"))}
    out["smi"] = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True).stdout
    try:
        import cupy
        out["cuda"] = float(cupy.arange(1000, dtype=cupy.float32).sum().get())
    except ImportError:
        try:
            import torch
            out["cuda"] = float(torch.arange(1000, dtype=torch.float32, device="cuda").sum().item())
        except ImportError:
            out["cuda"] = None
    return out
"#;

#[test]
fn gpu_functions_need_a_gpu_and_get_the_one_they_ask_for() {
    if !can_run("gpu_functions_need_a_gpu_and_get_the_one_they_ask_for") {
        return;
    }
    let c = Cluster::new();
    let f = c.flag();
    let code = c.files(
        "gpu",
        &[
            ("lambda_func.py", GPU_HANDLER),
            (
                "lambda.json",
                r#"{"enable_gpu": true, "gpus": [0], "timeout_s": 120}"#,
            ),
        ],
    );
    let code = code.display().to_string();
    if !worker::gpu::GpuHost::present() {
        let err = fails(&["create", &f, "gpu", &code]);
        assert!(err.contains("enable_gpu"), "{err}");
        assert!(err.contains("no NVIDIA GPU"), "{err}");
        assert!(!c.path("registry/gpu").exists(), "nothing was deployed");
        eprintln!(
            "gpu_functions_need_a_gpu_and_get_the_one_they_ask_for: no /dev/nvidiactl here: \
             checked the refusal at deploy; the GPU half runs on a machine with an NVIDIA GPU"
        );
        return;
    }
    ok(&["create", &f, "gpu", &code]);
    let port = free_port();
    ok(&["workers", &f, &format!("--port={port}")]);
    let answer = support::call(port, "gpu", "{}");
    let _ = support::admin(&["kill", &f]);
    let (status, body) = answer;
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    eprintln!("GPU sandbox: {v}");
    assert_eq!(v["visible"], "0");
    let dev: Vec<&str> = v["dev"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|d| d.as_str())
        .collect();
    assert!(
        dev.contains(&"nvidia0") && dev.contains(&"nvidiactl"),
        "{dev:?}"
    );
    assert!(!dev.contains(&"nvidia1"), "only the GPU asked for: {dev:?}");
    let smi = v["smi"].as_str().unwrap_or_default();
    assert!(smi.starts_with("GPU 0:"), "nvidia-smi -L: {smi:?}");
    assert_eq!(smi.lines().count(), 1, "one GPU visible: {smi:?}");
    if let Some(sum) = v["cuda"].as_f64() {
        assert_eq!(sum, 499_500.0);
    }
}
