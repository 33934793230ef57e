//! Request bodies: the members of CreateFunction, UpdateFunctionConfiguration, TagResource and
//! PublishLayerVersion, checked and turned into `lambda.json` keys, so that one validation
//! ([`LambdaConfig::from_value`]) decides, and its messages are reworded with AWS's member
//! names (`MemorySize: must be from 128 to 3008, not 100`).

use base64::Engine as _;
use serde_json::{Map, Value};

use super::arn::Arns;
use super::errors::AwsError;
use crate::lambda_config::{KeyError, LambdaConfig};

/// Largest archive in a request's `ZipFile` (AWS's 50 MB for a direct upload).
pub const MAX_ZIP_BYTES: usize = 50 * 1024 * 1024;

/// The request body as a JSON object.
pub fn parse_body(body: &[u8]) -> Result<Map<String, Value>, AwsError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(other) => Err(AwsError::bad_content(format!(
            "Could not parse request body into json: it must be an object, not {}",
            kind(&other)
        ))),
        Err(e) => Err(AwsError::bad_content(format!(
            "Could not parse request body into json: {e}"
        ))),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

fn wrong_type(member: &str, want: &str, got: &Value) -> AwsError {
    AwsError::bad_content(format!("{member} must be {want}, not {}", kind(got)))
}

/// A string member.
pub fn string<'a>(member: &str, v: &'a Value) -> Result<&'a str, AwsError> {
    v.as_str().ok_or_else(|| wrong_type(member, "a string", v))
}

/// A boolean member.
pub fn boolean(member: &str, v: &Value) -> Result<bool, AwsError> {
    v.as_bool()
        .ok_or_else(|| wrong_type(member, "a boolean", v))
}

/// An object member.
pub fn object<'a>(member: &str, v: &'a Value) -> Result<&'a Map<String, Value>, AwsError> {
    v.as_object()
        .ok_or_else(|| wrong_type(member, "an object", v))
}

/// A list member.
pub fn list<'a>(member: &str, v: &'a Value) -> Result<&'a [Value], AwsError> {
    v.as_array()
        .map(Vec::as_slice)
        .ok_or_else(|| wrong_type(member, "a list", v))
}

/// The archive of a `ZipFile` member (base64 in the JSON body).
pub fn zip_file(member: &str, v: &Value) -> Result<Vec<u8>, AwsError> {
    let text = string(member, v)?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .map_err(|e| AwsError::invalid(format!("{member} is not base64: {e}")))?;
    if bytes.is_empty() {
        return Err(AwsError::invalid(format!("{member} is empty")));
    }
    if bytes.len() > MAX_ZIP_BYTES {
        return Err(AwsError::new(
            http::StatusCode::PAYLOAD_TOO_LARGE,
            "RequestEntityTooLargeException",
            format!(
                "{member} is {} bytes, more than {MAX_ZIP_BYTES}: larger archives are not \
                 accepted",
                bytes.len()
            ),
        ));
    }
    Ok(bytes)
}

/// A `Code` or `Content` object: its `ZipFile` (S3 and image sources are not supported).
pub fn code(member: &str, v: &Value) -> Result<Vec<u8>, AwsError> {
    let map = object(member, v)?;
    if let Some(key) = map.keys().find(|k| k.as_str() != "ZipFile") {
        return Err(AwsError::invalid(format!(
            "{member}.{key} is not supported by this platform: give {member}.ZipFile"
        )));
    }
    match map.get("ZipFile") {
        Some(z) => zip_file(&format!("{member}.ZipFile"), z),
        None => Err(AwsError::invalid(format!("{member}.ZipFile is required"))),
    }
}

/// The AWS member a `lambda.json` key comes from, for messages.
fn member_of(key: &str) -> &str {
    match key {
        "entry" => "Handler",
        "runtime" => "Runtime",
        "description" => "Description",
        "memory_mb" => "MemorySize",
        "timeout_s" => "Timeout",
        "tmp_mb" => "EphemeralStorage.Size",
        "environment" => "Environment.Variables",
        "layers" => "Layers",
        "tags" => "Tags",
        "max_concurrency" => "Lambdaworker.MaxConcurrency",
        "max_procs" => "Lambdaworker.MaxProcs",
        "cpu_percent" => "Lambdaworker.CpuPercent",
        other => other,
    }
}

/// [`LambdaConfig::from_value`] over `keys`, its errors naming AWS members.
pub fn settings(keys: Map<String, Value>) -> Result<LambdaConfig, AwsError> {
    LambdaConfig::from_value(&Value::Object(keys)).map_err(|KeyError { key, message }| match key {
        Some(k) => AwsError::invalid(format!("{}: {message}", member_of(&k))),
        None => AwsError::invalid(message),
    })
}

/// Which operation's members are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Members {
    Create,
    UpdateConfiguration,
}

/// Members accepted and ignored when they hold what this platform does anyway.
fn check_no_op(member: &str, v: &Value) -> Result<(), AwsError> {
    let ok = match member {
        "Publish" => !boolean(member, v)?,
        "PackageType" => string(member, v)? == "Zip",
        "Architectures" => {
            let l = list(member, v)?;
            l.len() == 1 && l[0].as_str() == Some("x86_64")
        }
        "TracingConfig" => {
            let m = object(member, v)?;
            m.iter()
                .all(|(k, v)| k == "Mode" && v.as_str() == Some("PassThrough"))
        }
        "VpcConfig" => {
            let m = object(member, v)?;
            m.values().all(|v| v.as_array().is_some_and(Vec::is_empty))
        }
        "KMSKeyArn" | "CodeSigningConfigArn" => string(member, v)?.is_empty(),
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(AwsError::invalid(format!(
            "{member} {v} is not supported by this platform (it runs Zip functions on x86_64, \
             without tracing, VPCs, KMS keys or published versions)"
        )))
    }
}

/// The settings of CreateFunction's or UpdateFunctionConfiguration's members (the members
/// every operation reads itself, `FunctionName`, `Code` and `RevisionId`, are skipped).
/// `Role` is checked for its shape and not kept (see [`Arns::role`]).
pub fn function_settings(
    body: &Map<String, Value>,
    which: Members,
    arns: &Arns,
) -> Result<LambdaConfig, AwsError> {
    let mut keys = Map::new();
    for (member, v) in body {
        match (member.as_str(), which) {
            ("FunctionName" | "Code", Members::Create) | ("RevisionId", _) => {}
            ("Role", _) => {
                let role = string(member, v)?;
                if !role.starts_with("arn:aws") || !role.contains(":role/") {
                    return Err(AwsError::invalid(format!(
                        "Role {role:?} is not a role ARN (arn:aws:iam::<account>:role/<name>)"
                    )));
                }
            }
            ("Runtime", _) => {
                let runtime = string(member, v)?;
                if !runtime.starts_with("python3.") {
                    return Err(AwsError::invalid(format!(
                        "The runtime parameter of {runtime} is not supported: this platform \
                         runs python3.x functions"
                    )));
                }
                keys.insert("runtime".into(), v.clone());
            }
            ("Handler", _) => {
                keys.insert("entry".into(), v.clone());
            }
            ("MemorySize", _) => {
                keys.insert("memory_mb".into(), v.clone());
            }
            ("Timeout", _) => {
                keys.insert("timeout_s".into(), v.clone());
            }
            ("Description", _) => {
                keys.insert("description".into(), v.clone());
            }
            ("Environment", _) => {
                let env = object(member, v)?;
                if let Some(other) = env.keys().find(|k| k.as_str() != "Variables") {
                    return Err(AwsError::invalid(format!(
                        "Environment.{other} is not a member (Environment has Variables)"
                    )));
                }
                let vars = env
                    .get("Variables")
                    .cloned()
                    .unwrap_or_else(|| Value::Object(Map::new()));
                keys.insert("environment".into(), vars);
            }
            ("EphemeralStorage", _) => {
                let m = object(member, v)?;
                if let Some(other) = m.keys().find(|k| k.as_str() != "Size") {
                    return Err(AwsError::invalid(format!(
                        "EphemeralStorage.{other} is not a member (EphemeralStorage has Size)"
                    )));
                }
                let size = m
                    .get("Size")
                    .ok_or_else(|| AwsError::invalid("EphemeralStorage.Size is required"))?;
                keys.insert("tmp_mb".into(), size.clone());
            }
            ("Layers", _) => {
                let items = list(member, v)?;
                let mut layers = Vec::with_capacity(items.len().min(16));
                for item in items {
                    let raw = string(member, item)?;
                    layers.push(Value::String(arns.layer_ref(raw)?.to_string()));
                }
                keys.insert("layers".into(), Value::Array(layers));
            }
            ("Tags", Members::Create) => {
                keys.insert("tags".into(), v.clone());
            }
            ("Lambdaworker", _) => {
                // This platform's own member: the limits AWS's API has no member for.
                for (k, limit) in object(member, v)? {
                    let key = match k.as_str() {
                        "MaxConcurrency" => "max_concurrency",
                        "MaxProcs" => "max_procs",
                        "CpuPercent" => "cpu_percent",
                        other => {
                            return Err(AwsError::invalid(format!(
                                "Lambdaworker.{other} is not a member (Lambdaworker has \
                                 MaxConcurrency, MaxProcs, CpuPercent)"
                            )))
                        }
                    };
                    keys.insert(key.into(), limit.clone());
                }
            }
            (
                "Publish"
                | "PackageType"
                | "Architectures"
                | "TracingConfig"
                | "VpcConfig"
                | "KMSKeyArn"
                | "CodeSigningConfigArn",
                _,
            ) => check_no_op(member, v)?,
            _ => {
                return Err(AwsError::invalid(format!(
                    "{member} is not supported by this platform (supported: {})",
                    supported(which)
                )))
            }
        }
    }
    settings(keys)
}

fn supported(which: Members) -> &'static str {
    match which {
        Members::Create => {
            "FunctionName, Runtime, Role, Handler, Code.ZipFile, Description, Timeout, \
             MemorySize, Environment, Layers, Tags, EphemeralStorage, Lambdaworker"
        }
        Members::UpdateConfiguration => {
            "Runtime, Role, Handler, Description, Timeout, MemorySize, Environment, Layers, \
             EphemeralStorage, Lambdaworker, RevisionId"
        }
    }
}

/// An optional string member.
pub fn opt_string<'a>(
    body: &'a Map<String, Value>,
    member: &str,
) -> Result<Option<&'a str>, AwsError> {
    body.get(member).map(|v| string(member, v)).transpose()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn arns() -> Arns {
        Arns {
            region: "us-east-1".into(),
            account_id: "123456789012".into(),
        }
    }

    fn create(body: Value) -> Result<LambdaConfig, AwsError> {
        function_settings(body.as_object().unwrap(), Members::Create, &arns())
    }

    #[test]
    fn members_become_lambda_json_keys() {
        let c = create(json!({
            "FunctionName": "f", "Code": {"ZipFile": "UEsFBg=="}, "Role": "arn:aws:iam::123456789012:role/r",
            "Runtime": "python3.12", "Handler": "app.handler", "MemorySize": 256, "Timeout": 30,
            "Description": "d", "Environment": {"Variables": {"A": "1"}},
            "Layers": ["arn:aws:lambda:us-east-1:123456789012:layer:common:2"],
            "Tags": {"team": "x"}, "EphemeralStorage": {"Size": 1024},
            "Publish": false, "PackageType": "Zip", "Architectures": ["x86_64"],
            "TracingConfig": {"Mode": "PassThrough"}, "VpcConfig": {"SubnetIds": [], "SecurityGroupIds": []}
        }))
        .unwrap();
        assert_eq!(c.entry.unwrap().to_string(), "app.handler");
        assert_eq!(c.runtime.as_deref(), Some("python3.12"));
        assert_eq!(
            (c.memory_mb, c.timeout_s, c.tmp_mb),
            (Some(256), Some(30), Some(1024))
        );
        assert_eq!(c.description.as_deref(), Some("d"));
        assert_eq!(c.environment.unwrap()["A"], "1");
        assert_eq!(c.layers.unwrap()[0].to_string(), "common:2");
        assert_eq!(c.tags.unwrap()["team"], "x");
        // An empty Environment clears the variables.
        let c = create(json!({"Environment": {}})).unwrap();
        assert_eq!(c.environment, Some(Default::default()));
    }

    #[test]
    fn bad_members_are_named_as_aws_names_them() {
        for (body, code, needle) in [
            (
                json!({"MemorySize": 100}),
                "InvalidParameterValueException",
                "MemorySize: must be from 128 to 3008, not 100",
            ),
            (
                json!({"MemorySize": 200}),
                "InvalidParameterValueException",
                "MemorySize: must be a multiple of 64",
            ),
            (
                json!({"MemorySize": 10240}),
                "InvalidParameterValueException",
                "MemorySize",
            ),
            (
                json!({"Timeout": 901}),
                "InvalidParameterValueException",
                "Timeout: must be from 1 to 900, not 901",
            ),
            (
                json!({"Timeout": "30"}),
                "InvalidParameterValueException",
                "Timeout: must be a whole number",
            ),
            (
                json!({"Handler": "nodot"}),
                "InvalidParameterValueException",
                "Handler: must be module.function",
            ),
            (
                json!({"Runtime": "nodejs20.x"}),
                "InvalidParameterValueException",
                "runtime parameter of nodejs20.x is not supported",
            ),
            (
                json!({"Runtime": "python3.x"}),
                "InvalidParameterValueException",
                "Runtime: must be python3.N",
            ),
            (
                json!({"Environment": {"Variables": {"1A": "x"}}}),
                "InvalidParameterValueException",
                "Environment.Variables: \"1A\" is not a valid name",
            ),
            (
                json!({"Environment": {"Variables": {"A": "x".repeat(5000)}}}),
                "InvalidParameterValueException",
                "Environment.Variables: names and values total",
            ),
            (
                json!({"Environment": {"Vars": {}}}),
                "InvalidParameterValueException",
                "Environment.Vars is not a member",
            ),
            (
                json!({"Environment": []}),
                "InvalidRequestContentException",
                "Environment must be an object",
            ),
            (
                json!({"Layers": ["a:1", "b:1", "c:1", "d:1", "e:1", "f:1"]}),
                "InvalidParameterValueException",
                "Layers: at most 5 layers, not 6",
            ),
            (
                json!({"Layers": ["arn:aws:lambda:us-east-1:123456789012:layer:a:0"]}),
                "InvalidParameterValueException",
                "Layers",
            ),
            (
                json!({"Layers": "a"}),
                "InvalidRequestContentException",
                "Layers must be a list",
            ),
            (
                json!({"Role": "admin"}),
                "InvalidParameterValueException",
                "Role \"admin\" is not a role ARN",
            ),
            (
                json!({"Tags": {"": "x"}}),
                "InvalidParameterValueException",
                "Tags: tag \"\"",
            ),
            (
                json!({"EphemeralStorage": {"Size": 20000}}),
                "InvalidParameterValueException",
                "EphemeralStorage.Size: must be from 1 to 10240",
            ),
            (
                json!({"Publish": true}),
                "InvalidParameterValueException",
                "Publish true is not supported",
            ),
            (
                json!({"Architectures": ["arm64"]}),
                "InvalidParameterValueException",
                "Architectures",
            ),
            (
                json!({"PackageType": "Image"}),
                "InvalidParameterValueException",
                "PackageType",
            ),
            (
                json!({"TracingConfig": {"Mode": "Active"}}),
                "InvalidParameterValueException",
                "TracingConfig",
            ),
            (
                json!({"VpcConfig": {"SubnetIds": ["subnet-1"]}}),
                "InvalidParameterValueException",
                "VpcConfig",
            ),
            (
                json!({"DeadLetterConfig": {}}),
                "InvalidParameterValueException",
                "DeadLetterConfig is not supported by this platform (supported: FunctionName",
            ),
        ] {
            let e = create(body.clone()).unwrap_err();
            assert_eq!(e.code, code, "{body}: {e}");
            assert!(e.message.contains(needle), "{body}: {e}");
        }
        // Tags are not a member of UpdateFunctionConfiguration.
        let e = function_settings(
            json!({"Tags": {}}).as_object().unwrap(),
            Members::UpdateConfiguration,
            &arns(),
        )
        .unwrap_err();
        assert!(e.message.contains("Tags is not supported"), "{e}");
    }

    #[test]
    fn the_lambdaworker_member_sets_the_other_limits() {
        let c = create(
            json!({"Lambdaworker": {"MaxConcurrency": 8, "MaxProcs": 32, "CpuPercent": 50}}),
        )
        .unwrap();
        assert_eq!(
            (c.max_concurrency, c.max_procs, c.cpu_percent),
            (Some(8), Some(32), Some(50))
        );
        for (body, needle) in [
            (
                json!({"Lambdaworker": {"MaxConcurrency": 0}}),
                "Lambdaworker.MaxConcurrency: must be from 1",
            ),
            (
                json!({"Lambdaworker": {"Workers": 2}}),
                "Lambdaworker.Workers is not a member",
            ),
            (json!({"Lambdaworker": 3}), "Lambdaworker"),
        ] {
            let e = create(body.clone()).unwrap_err();
            assert!(format!("{e:?}").contains(needle), "{body}: {e:?}");
        }
    }

    #[test]
    fn bodies_and_code() {
        assert!(parse_body(b"").unwrap().is_empty());
        assert!(parse_body(b" \n").unwrap().is_empty());
        let e = parse_body(b"{nope").unwrap_err();
        assert_eq!(e.code, "InvalidRequestContentException");
        assert!(
            e.message
                .starts_with("Could not parse request body into json"),
            "{e}"
        );
        assert!(parse_body(b"[1]")
            .unwrap_err()
            .message
            .contains("not a list"));
        assert_eq!(
            code("Code", &json!({"ZipFile": "UEsFBg=="})).unwrap(),
            b"PK\x05\x06"
        );
        for (v, needle) in [
            (
                json!({"S3Bucket": "b", "S3Key": "k"}),
                "Code.S3Bucket is not supported",
            ),
            (json!({}), "Code.ZipFile is required"),
            (
                json!({"ZipFile": "not base64!"}),
                "Code.ZipFile is not base64",
            ),
            (json!({"ZipFile": ""}), "Code.ZipFile is empty"),
            (json!({"ZipFile": 3}), "Code.ZipFile must be a string"),
            (json!("zip"), "Code must be an object"),
        ] {
            let e = code("Code", &v).unwrap_err();
            assert!(e.message.contains(needle), "{v}: {e}");
        }
    }
}
