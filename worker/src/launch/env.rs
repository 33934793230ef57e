//! The environment of a handler sandbox, fresh or forked.

use crate::config::Config;
use crate::lambda_config::LambdaLimits;
use crate::manager::{FunctionSetup, LayerDir, PackageDir};
use crate::name::LambdaName;

/// The environment of a handler sandbox, fresh or forked, in this order (a later value of a
/// name replaces an earlier one): the platform's (`PATH`, `HOME`, `LANG`,
/// `PYTHONDONTWRITEBYTECODE`, `LAMBDA_PACKAGES`), a custom base's image `Env` (but `HOME`), what the runtime reads (`LAMBDA_NAME`,
/// `LAMBDA_LAYERS`, `LAMBDA_FUNCTION_ARN`, `_HANDLER`, `LAMBDA_ENTRY_TYPE`), AWS's (`LAMBDA_TASK_ROOT`,
/// `AWS_LAMBDA_FUNCTION_NAME`, `AWS_LAMBDA_FUNCTION_MEMORY_SIZE`, `AWS_LAMBDA_FUNCTION_VERSION`,
/// `AWS_LAMBDA_LOG_GROUP_NAME`, `AWS_LAMBDA_LOG_STREAM_NAME`, `AWS_REGION`,
/// `AWS_DEFAULT_REGION`), a GPU function's (`LD_LIBRARY_PATH`, `NVIDIA_VISIBLE_DEVICES`,
/// the driver's tools on `PATH`), then the function's `environment` (which cannot name the
/// reserved ones: `lambda.json` refuses them). Public so that benchmarks start sandboxes alike.
pub fn sandbox_env(
    cfg: &Config,
    name: &LambdaName,
    limits: &LambdaLimits,
    setup: &FunctionSetup,
    packages: &[PackageDir],
) -> Vec<(String, String)> {
    let rels: Vec<String> = packages
        .iter()
        .map(|p| p.rel.display().to_string())
        .collect();
    let mut env = crate::zygote::zygote_env(&rels);
    // A custom base's image environment over the platform's (not HOME, the sandbox's own,
    // nor LAMBDA_PACKAGES, the worker's).
    if let Some(base) = &setup.base {
        crate::bases::overlay_env(&mut env, &base.info.env);
    }
    let layers: Vec<String> = setup.layers.iter().map(LayerDir::sys_path).collect();
    let (name, region) = (name.as_str(), cfg.aws_region.as_str());
    let arn = format!(
        "arn:aws:lambda:{region}:{}:function:{name}",
        cfg.aws_account_id
    );
    let ours = [
        ("LAMBDA_NAME", name.to_owned()),
        ("LAMBDA_LAYERS", layers.join(":")),
        ("LAMBDA_FUNCTION_ARN", arn),
        ("_HANDLER", setup.entry.to_string()),
        ("LAMBDA_ENTRY_TYPE", setup.entry_type.as_str().to_owned()),
        ("LAMBDA_TASK_ROOT", "/handler".to_owned()),
        ("AWS_LAMBDA_FUNCTION_NAME", name.to_owned()),
        (
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
            limits.memory_mb.to_string(),
        ),
        ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".to_owned()),
        ("AWS_LAMBDA_LOG_GROUP_NAME", format!("/aws/lambda/{name}")),
        (
            "AWS_LAMBDA_LOG_STREAM_NAME",
            log_stream_name(std::time::SystemTime::now()),
        ),
        ("AWS_REGION", region.to_owned()),
        ("AWS_DEFAULT_REGION", region.to_owned()),
    ];
    env.extend(ours.into_iter().map(|(k, v)| (k.to_owned(), v)));
    if let Some(gpu) = &setup.gpu {
        let visible: Vec<String> = gpu.indices.iter().map(u32::to_string).collect();
        let dir = crate::gpu::NVIDIA_DIR;
        for (key, value) in [
            ("LD_LIBRARY_PATH", format!("{dir}/lib64")),
            ("NVIDIA_VISIBLE_DEVICES", visible.join(",")),
        ] {
            env.push((key.to_owned(), value));
        }
        if let Some(path) = env.iter_mut().find(|(k, _)| k == "PATH") {
            path.1 = format!("{}:{dir}/bin", path.1);
        }
    }
    for (key, value) in &setup.environment {
        match env.iter_mut().find(|(k, _)| k == key) {
            Some(slot) => slot.1.clone_from(value),
            None => env.push((key.clone(), value.clone())),
        }
    }
    env
}

/// A sandbox's log stream name as AWS makes one: `YYYY/MM/DD/[$LATEST]` and 32 random hex
/// digits, the date (UTC) of its start.
fn log_stream_name(now: std::time::SystemTime) -> String {
    let days = now
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() / 86_400);
    let (y, m, d) = civil_date(days);
    format!(
        "{y:04}/{m:02}/{d:02}/[$LATEST]{}",
        uuid::Uuid::new_v4().simple()
    )
}

/// The proleptic Gregorian date of a day counted from 1970-01-01 (Howard Hinnant's
/// `civil_from_days`).
fn civil_date(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lambda_config::Entry;
    use std::path::PathBuf;

    #[test]
    fn dates_of_log_streams() {
        assert_eq!(civil_date(0), (1970, 1, 1));
        assert_eq!(civil_date(11_016), (2000, 2, 29));
        assert_eq!(civil_date(19_782), (2024, 2, 29));
        assert_eq!(civil_date(20_089), (2025, 1, 1));
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(20_089 * 86_400 + 5);
        let name = log_stream_name(t);
        assert!(name.starts_with("2025/01/01/[$LATEST]"), "{name}");
        assert_eq!(name.len(), "2025/01/01/[$LATEST]".len() + 32, "{name}");
        assert_ne!(name, log_stream_name(t), "each sandbox has its own");
    }

    #[test]
    fn the_environment_has_the_platforms_then_awss_then_the_functions() {
        let cfg = Config {
            aws_region: "eu-west-3".to_owned(),
            aws_account_id: "123456789012".to_owned(),
            ..Config::default()
        };
        let name = LambdaName::parse("hello").unwrap();
        let limits = LambdaLimits {
            memory_mb: 512,
            ..LambdaLimits::defaults(&cfg)
        };
        let layer = |n: &str, python: bool| LayerDir {
            name: LambdaName::parse(n).unwrap(),
            version: 1,
            host: PathBuf::from("/r/.store/layers").join(n).join("1"),
            python,
        };
        let setup = FunctionSetup {
            entry: Entry::parse("pkg.app.run").unwrap(),
            entry_type: crate::lambda_config::EntryType::Wsgi,
            environment: [("PATH", "/mine"), ("TORCH_HOME", "/tmp/torch")]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
            layers: vec![layer("common", true), layer("plain", false)],
            volumes: Vec::new(),
            gpu: None,
            base: None,
        };
        let packages = [PackageDir {
            host: PathBuf::from("/p/six/1.17.0"),
            rel: PathBuf::from("six/1.17.0"),
        }];
        let env = sandbox_env(&cfg, &name, &limits, &setup, &packages);
        let get = |k: &str| {
            let found: Vec<&str> = env
                .iter()
                .filter(|(key, _)| key == k)
                .map(|(_, v)| v.as_str())
                .collect();
            assert!(found.len() <= 1, "{k} twice: {env:?}");
            found.first().copied()
        };
        assert_eq!(
            get("PATH"),
            Some("/mine"),
            "the function's value replaces ours"
        );
        assert_eq!(get("TORCH_HOME"), Some("/tmp/torch"));
        assert_eq!(get("_HANDLER"), Some("pkg.app.run"));
        assert_eq!(get("LAMBDA_ENTRY_TYPE"), Some("wsgi"));
        assert_eq!(get("LAMBDA_TASK_ROOT"), Some("/handler"));
        assert_eq!(get("LAMBDA_PACKAGES"), Some("/packages/six/1.17.0"));
        assert_eq!(get("LAMBDA_LAYERS"), Some("/opt/common/python:/opt/plain"));
        assert_eq!(
            get("LAMBDA_FUNCTION_ARN"),
            Some("arn:aws:lambda:eu-west-3:123456789012:function:hello")
        );
        assert_eq!(get("AWS_LAMBDA_FUNCTION_NAME"), Some("hello"));
        assert_eq!(get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE"), Some("512"));
        assert_eq!(get("AWS_LAMBDA_FUNCTION_VERSION"), Some("$LATEST"));
        assert_eq!(get("AWS_LAMBDA_LOG_GROUP_NAME"), Some("/aws/lambda/hello"));
        assert!(get("AWS_LAMBDA_LOG_STREAM_NAME").is_some_and(|s| s.contains("/[$LATEST]")));
        assert_eq!(get("AWS_REGION"), Some("eu-west-3"));
        assert_eq!(get("AWS_DEFAULT_REGION"), Some("eu-west-3"));
    }

    #[test]
    fn a_gpu_sandbox_finds_the_driver_and_knows_its_gpus() {
        let cfg = Config::default();
        let name = LambdaName::parse("gpu").unwrap();
        let limits = LambdaLimits::defaults(&cfg);
        let setup = FunctionSetup {
            gpu: Some(crate::gpu::GpuMounts {
                nodes: Vec::new(),
                rules: Vec::new(),
                files: Vec::new(),
                indices: vec![0, 2],
            }),
            ..FunctionSetup::default()
        };
        let env = sandbox_env(&cfg, &name, &limits, &setup, &[]);
        let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("LD_LIBRARY_PATH"), Some("/usr/local/nvidia/lib64"));
        assert_eq!(get("NVIDIA_VISIBLE_DEVICES"), Some("0,2"));
        assert!(get("PATH").is_some_and(|p| p.ends_with(":/usr/local/nvidia/bin")));
        let plain = sandbox_env(&cfg, &name, &limits, &FunctionSetup::default(), &[]);
        assert!(!plain.iter().any(|(k, _)| k == "NVIDIA_VISIBLE_DEVICES"));
    }
}
