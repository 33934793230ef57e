//! The `enable_gpu` and `gpus` keys (`docs/gpu.md`): a function that runs with NVIDIA GPUs,
//! all of one (`"gpus": 1`, the default) or more, or the ones named by index.

use serde_json::Value;

use super::KeyError;

/// Most GPUs one function asks for.
pub const MAX_GPUS: u32 = 16;

/// Which GPUs a function's sandboxes get.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GpuRequest {
    /// This many, the lowest indices first.
    Count(u32),
    /// These, by the index of their `/dev/nvidiaN` node.
    Indices(Vec<u32>),
}

impl Default for GpuRequest {
    fn default() -> Self {
        Self::Count(1)
    }
}

impl GpuRequest {
    pub(crate) fn to_value(&self) -> Value {
        match self {
            Self::Count(n) => Value::from(*n),
            Self::Indices(v) => v.iter().map(|i| Value::from(*i)).collect(),
        }
    }
}

/// Parses `gpus`: a count from 1 to 16, or a list of 1 to 16 distinct indices.
pub(crate) fn parse_gpus(key: &str, value: &Value) -> Result<GpuRequest, KeyError> {
    let bad = || {
        KeyError::new(
            key,
            format!("must be a number of GPUs (1 to {MAX_GPUS}) or a list of distinct GPU indices such as [0, 1], not {value}"),
        )
    };
    match value {
        Value::Number(n) => match n.as_u64() {
            Some(n) if (1..=u64::from(MAX_GPUS)).contains(&n) => Ok(GpuRequest::Count(n as u32)),
            _ => Err(bad()),
        },
        Value::Array(items) if !items.is_empty() && items.len() <= MAX_GPUS as usize => {
            let mut out = Vec::with_capacity(items.len());
            for item in items {
                let i = item.as_u64().filter(|i| *i < 256).ok_or_else(bad)? as u32;
                if out.contains(&i) {
                    return Err(KeyError::new(key, format!("GPU {i} is listed twice")));
                }
                out.push(i);
            }
            Ok(GpuRequest::Indices(out))
        }
        _ => Err(bad()),
    }
}

/// `gpus` makes sense only with `enable_gpu: true`.
pub(crate) fn check(enable: Option<bool>, gpus: Option<&GpuRequest>) -> Result<(), KeyError> {
    if gpus.is_some() && enable != Some(true) {
        return Err(KeyError::new(
            "gpus",
            "needs \"enable_gpu\": true beside it",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lambda_config::LambdaConfig;

    #[test]
    fn gpu_keys_parse_and_round_trip() {
        let c = LambdaConfig::parse(r#"{"enable_gpu": true, "gpus": [1, 0]}"#).unwrap();
        assert_eq!(c.enable_gpu, Some(true));
        assert_eq!(c.gpus, Some(GpuRequest::Indices(vec![1, 0])));
        assert_eq!(LambdaConfig::from_value(&c.to_value()).unwrap(), c);
        let c = LambdaConfig::parse(r#"{"enable_gpu": true, "gpus": 2}"#).unwrap();
        assert_eq!(c.gpus, Some(GpuRequest::Count(2)));
        assert_eq!(c.gpu_request(), Some(GpuRequest::Count(2)));
        let c = LambdaConfig::parse(r#"{"enable_gpu": true}"#).unwrap();
        assert_eq!(c.gpu_request(), Some(GpuRequest::Count(1)));
        let c = LambdaConfig::parse(r#"{"enable_gpu": false}"#).unwrap();
        assert_eq!(c.gpu_request(), None);
    }

    #[test]
    fn bad_gpu_keys_name_the_problem() {
        for (text, key, want) in [
            (r#"{"gpus": 1}"#, "gpus", "needs \"enable_gpu\": true"),
            (r#"{"enable_gpu": false, "gpus": 1}"#, "gpus", "needs"),
            (r#"{"enable_gpu": "yes"}"#, "enable_gpu", "true or false"),
            (r#"{"enable_gpu": true, "gpus": 0}"#, "gpus", "1 to 16"),
            (r#"{"enable_gpu": true, "gpus": 17}"#, "gpus", "1 to 16"),
            (
                r#"{"enable_gpu": true, "gpus": []}"#,
                "gpus",
                "list of distinct",
            ),
            (
                r#"{"enable_gpu": true, "gpus": [0, 0]}"#,
                "gpus",
                "GPU 0 is listed twice",
            ),
            (
                r#"{"enable_gpu": true, "gpus": [-1]}"#,
                "gpus",
                "list of distinct",
            ),
            (
                r#"{"enable_gpu": true, "gpus": "all"}"#,
                "gpus",
                "list of distinct",
            ),
        ] {
            let err = LambdaConfig::parse(text).unwrap_err();
            assert_eq!(err.key.as_deref(), Some(key), "{text}");
            assert!(err.message.contains(want), "{text}: {}", err.message);
        }
    }
}
