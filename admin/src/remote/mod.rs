//! [`RemoteStore`]: the [`FunctionStore`] of a registry server, reached over HTTP, so that every
//! `admin` command on functions and layers is written once against `&dyn FunctionStore` and
//! works the same in registry mode as over the local directory ([`worker::functions::DirStore`]).
//!
//! Changes go through the server's AWS Lambda management API, signed with the cluster's
//! credentials (SigV4, as boto3 signs): CreateFunction, UpdateFunctionCode,
//! UpdateFunctionConfiguration with TagResource / UntagResource, DeleteFunction,
//! PublishLayerVersion. Reads of a function use the pull endpoint
//! `GET /registry/functions/<name>`, which answers the store's own record (version, settings,
//! effective configuration, code hash), so a [`FunctionInfo`] read here is the one the server
//! holds; lists use ListFunctions, ListLayers and ListLayerVersions page by page, layer details
//! GetLayerVersion.
//!
//! The limits AWS's API has no member for (`max_concurrency` or `workers`, `max_procs`,
//! `cpu_percent`) travel in the platform's own `Lambdaworker` member; unsetting a key the API
//! can only replace is refused with the key named.
//!
//! Errors: the server's 404 and 409 become `FunctionNotFound` / `LayerNotFound` and `Exists`,
//! its 400s `Invalid` with the server's message; anything else (403 for a wrong key, 5xx, no
//! connection) is `Io` naming the method and URL, with the status, AWS error code and message
//! on the same line.

mod transport;
mod wire;

use std::collections::BTreeMap;
use std::time::Duration;

use base64::Engine as _;
use http::Method;
use serde_json::{json, Map, Value};
use worker::aws::Credentials;
use worker::functions::{
    FunctionInfo, FunctionRecord, FunctionStore, LayerVersionInfo, StoreError,
};
use worker::lambda_config::LambdaConfig;
use worker::name::LambdaName;

pub use transport::Endpoint;
use transport::{encode, Subject};

/// How long one call may take (an upload of a 50 MB archive included).
const TIMEOUT: Duration = Duration::from_secs(120);
/// Items asked for per page of a list.
const PAGE: usize = 50;
/// Most pages read of one list (a server that keeps answering markers is not followed forever).
const MAX_PAGES: usize = 1000;

/// The store of the registry server at `url` (see the module docs).
#[derive(Debug, Clone)]
pub struct RemoteStore {
    endpoint: Endpoint,
}

impl RemoteStore {
    /// The server at `url` (`http://host:port`), signing with `credentials` for `region`
    /// (unsigned without credentials: such a server accepts changes from its own machine only).
    pub fn new(
        url: &str,
        credentials: Option<Credentials>,
        region: &str,
    ) -> Result<Self, std::io::Error> {
        let (host, port) = worker::http_client::split_url(url)?;
        Ok(Self {
            endpoint: Endpoint {
                url: url.trim_end_matches('/').to_owned(),
                host,
                port,
                credentials,
                region: region.to_owned(),
                timeout: TIMEOUT,
            },
        })
    }

    fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        subject: Subject<'_>,
    ) -> Result<worker::http_client::Response, StoreError> {
        self.endpoint.call(method, path, body, subject)
    }

    /// GetFunctionConfiguration's answer (for the function's ARN).
    fn configuration(&self, name: &LambdaName) -> Result<wire::FunctionConfiguration, StoreError> {
        let path = format!("/2015-03-31/functions/{name}/configuration");
        let r = self.call(Method::GET, &path, None, Subject::Function(name.as_str()))?;
        wire::parse(&r, "GetFunctionConfiguration")
    }

    /// One layer version.
    fn layer_version(
        &self,
        name: &LambdaName,
        version: u64,
    ) -> Result<LayerVersionInfo, StoreError> {
        let path = format!("/2018-10-31/layers/{name}/versions/{version}");
        let r = self.call(
            Method::GET,
            &path,
            None,
            Subject::Layer(name.as_str(), Some(version)),
        )?;
        let v: wire::LayerVersion = wire::parse(&r, "GetLayerVersion")?;
        v.into_info(name, "GetLayerVersion")
    }

    /// Every page of a list: `fetch(marker)` gives a page's items and the next marker.
    fn all_pages<T>(
        what: &str,
        mut fetch: impl FnMut(Option<&str>) -> Result<(Vec<T>, Option<String>), StoreError>,
    ) -> Result<Vec<T>, StoreError> {
        let mut items = Vec::new();
        let mut marker: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let (page, next) = fetch(marker.as_deref())?;
            items.extend(page);
            match next {
                Some(m) if marker.as_deref() != Some(m.as_str()) => marker = Some(m),
                Some(_) => {
                    return Err(StoreError::Invalid {
                        key: None,
                        message: format!("{what}: the registry server gave the same marker twice"),
                    })
                }
                None => return Ok(items),
            }
        }
        Err(StoreError::Invalid {
            key: None,
            message: format!("{what}: more than {MAX_PAGES} pages"),
        })
    }

    fn marker_query(marker: Option<&str>) -> String {
        match marker {
            Some(m) => format!("?MaxItems={PAGE}&Marker={}", encode(m)),
            None => format!("?MaxItems={PAGE}"),
        }
    }
}

/// `{"ZipFile": "<base64>"}`.
fn zip_file(archive: &[u8]) -> Value {
    Value::String(base64::engine::general_purpose::STANDARD.encode(archive))
}

/// What turns one function's settings into others.
#[derive(Debug, Default)]
struct Changes {
    /// Members of CreateFunction or UpdateFunctionConfiguration.
    members: Map<String, Value>,
    /// Tags to add or change (TagResource).
    set_tags: BTreeMap<String, String>,
    /// Tags to remove (UntagResource).
    removed_tags: Vec<String>,
}

/// The changes that set `settings` where it differs from `current`.
fn settings_members(
    current: &LambdaConfig,
    settings: &LambdaConfig,
) -> Result<Changes, StoreError> {
    let refuse = |key: &str, message: &str| StoreError::Invalid {
        key: Some(key.to_owned()),
        message: message.to_owned(),
    };
    let mut m = Map::new();
    let mut put = |key: &str, member: &str, new: Option<Value>, old: Option<Value>| {
        if new == old {
            return Ok(());
        }
        match new {
            Some(v) => {
                m.insert(member.to_owned(), v);
                Ok(())
            }
            None => Err(refuse(
                key,
                "cannot be unset through a registry server's AWS Lambda API, only replaced",
            )),
        }
    };
    let s = settings.to_value();
    let c = current.to_value();
    let get = |v: &Value, k: &str| v.get(k).cloned();
    put("entry", "Handler", get(&s, "entry"), get(&c, "entry"))?;
    put("runtime", "Runtime", get(&s, "runtime"), get(&c, "runtime"))?;
    put(
        "description",
        "Description",
        get(&s, "description"),
        get(&c, "description"),
    )?;
    put(
        "memory_mb",
        "MemorySize",
        get(&s, "memory_mb"),
        get(&c, "memory_mb"),
    )?;
    put(
        "timeout_s",
        "Timeout",
        get(&s, "timeout_s"),
        get(&c, "timeout_s"),
    )?;
    put(
        "tmp_mb",
        "EphemeralStorage",
        get(&s, "tmp_mb").map(|v| json!({ "Size": v })),
        get(&c, "tmp_mb").map(|v| json!({ "Size": v })),
    )?;
    put(
        "environment",
        "Environment",
        get(&s, "environment").map(|v| json!({ "Variables": v })),
        get(&c, "environment").map(|v| json!({ "Variables": v })),
    )?;
    put("layers", "Layers", get(&s, "layers"), get(&c, "layers"))?;
    // The limits AWS's API has no member for travel in the platform's own member.
    let mut limits = Map::new();
    for (key, member) in [
        ("max_concurrency", "MaxConcurrency"),
        ("max_procs", "MaxProcs"),
        ("cpu_percent", "CpuPercent"),
    ] {
        let (new, old) = (get(&s, key), get(&c, key));
        if new == old {
            continue;
        }
        let value = new.ok_or_else(|| {
            refuse(
                key,
                "cannot be unset through a registry server's AWS Lambda API, only replaced",
            )
        })?;
        limits.insert(member.to_owned(), value);
    }
    if !limits.is_empty() {
        m.insert("Lambdaworker".to_owned(), Value::Object(limits));
    }
    let old_tags = current.tags.clone().unwrap_or_default();
    let new_tags = settings.tags.clone().unwrap_or_default();
    let set: BTreeMap<String, String> = new_tags
        .iter()
        .filter(|(k, v)| old_tags.get(*k) != Some(v))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let removed: Vec<String> = old_tags
        .keys()
        .filter(|k| !new_tags.contains_key(*k))
        .cloned()
        .collect();
    Ok(Changes {
        members: m,
        set_tags: set,
        removed_tags: removed,
    })
}

impl FunctionStore for RemoteStore {
    fn create(
        &self,
        name: &LambdaName,
        archive: &[u8],
        settings: &LambdaConfig,
    ) -> Result<FunctionInfo, StoreError> {
        let Changes {
            members: mut body,
            set_tags: tags,
            ..
        } = settings_members(&LambdaConfig::default(), settings)?;
        body.insert("FunctionName".into(), Value::String(name.to_string()));
        body.insert("Code".into(), json!({ "ZipFile": zip_file(archive) }));
        if !tags.is_empty() {
            body.insert("Tags".into(), json!(tags));
        }
        self.call(
            Method::POST,
            "/2015-03-31/functions",
            Some(&Value::Object(body)),
            Subject::Function(name.as_str()),
        )?;
        self.get(name)
    }

    fn get(&self, name: &LambdaName) -> Result<FunctionInfo, StoreError> {
        let path = format!("/registry/functions/{name}");
        let r = self.call(Method::GET, &path, None, Subject::Function(name.as_str()))?;
        let record: FunctionRecord = wire::parse(&r, &format!("GET {path}"))?;
        let info = record.into_info()?;
        if info.name != *name {
            return Err(StoreError::Invalid {
                key: None,
                message: format!(
                    "the registry server answered GET {path} with function {}",
                    info.name
                ),
            });
        }
        Ok(info)
    }

    fn list(&self) -> Result<Vec<FunctionInfo>, StoreError> {
        let names = Self::all_pages("ListFunctions", |marker| {
            let path = format!("/2015-03-31/functions/{}", Self::marker_query(marker));
            let r = self.call(Method::GET, &path, None, Subject::Other)?;
            let page: wire::ListFunctions = wire::parse(&r, "ListFunctions")?;
            Ok((page.functions, page.next_marker))
        })?;
        let mut out = Vec::with_capacity(names.len());
        for f in names {
            let name = LambdaName::parse(&f.function_name).map_err(|e| StoreError::Invalid {
                key: None,
                message: format!("ListFunctions gave the name {:?}: {e}", f.function_name),
            })?;
            match self.get(&name) {
                Ok(info) => out.push(info),
                // Deleted between the list and the read.
                Err(StoreError::FunctionNotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    fn update_code(
        &self,
        name: &LambdaName,
        archive: &[u8],
        expected_revision: Option<&str>,
    ) -> Result<FunctionInfo, StoreError> {
        let mut body = Map::new();
        body.insert("ZipFile".into(), zip_file(archive));
        if let Some(rev) = expected_revision {
            body.insert("RevisionId".into(), Value::String(rev.to_owned()));
        }
        let path = format!("/2015-03-31/functions/{name}/code");
        self.call(
            Method::PUT,
            &path,
            Some(&Value::Object(body)),
            Subject::Function(name.as_str()),
        )?;
        self.get(name)
    }

    fn update_settings(
        &self,
        name: &LambdaName,
        settings: &LambdaConfig,
        expected_revision: Option<&str>,
    ) -> Result<FunctionInfo, StoreError> {
        let current = self.get(name)?;
        if let Some(expected) = expected_revision {
            if expected != current.revision_id {
                return Err(StoreError::RevisionMismatch {
                    name: name.to_string(),
                    expected: expected.to_owned(),
                    actual: current.revision_id,
                });
            }
        }
        let Changes {
            mut members,
            set_tags,
            removed_tags,
        } = settings_members(&current.settings, settings)?;
        let subject = Subject::Function(name.as_str());
        if !members.is_empty() {
            members.insert(
                "RevisionId".into(),
                Value::String(current.revision_id.clone()),
            );
            let path = format!("/2015-03-31/functions/{name}/configuration");
            self.call(Method::PUT, &path, Some(&Value::Object(members)), subject)?;
        }
        if !set_tags.is_empty() || !removed_tags.is_empty() {
            let arn = self.configuration(name)?.function_arn;
            let path = format!("/2017-03-31/tags/{}", encode(&arn));
            if !set_tags.is_empty() {
                self.call(
                    Method::POST,
                    &path,
                    Some(&json!({ "Tags": set_tags })),
                    subject,
                )?;
            }
            if !removed_tags.is_empty() {
                let query: Vec<String> = removed_tags
                    .iter()
                    .map(|k| format!("tagKeys={}", encode(k)))
                    .collect();
                self.call(
                    Method::DELETE,
                    &format!("{path}?{}", query.join("&")),
                    None,
                    subject,
                )?;
            }
        }
        self.get(name)
    }

    fn delete(&self, name: &LambdaName) -> Result<(), StoreError> {
        let path = format!("/2015-03-31/functions/{name}");
        self.call(
            Method::DELETE,
            &path,
            None,
            Subject::Function(name.as_str()),
        )?;
        Ok(())
    }

    fn publish_layer(
        &self,
        name: &LambdaName,
        archive: &[u8],
        description: Option<&str>,
        compatible_runtimes: &[String],
    ) -> Result<LayerVersionInfo, StoreError> {
        let mut body = Map::new();
        body.insert("Content".into(), json!({ "ZipFile": zip_file(archive) }));
        if let Some(d) = description {
            body.insert("Description".into(), Value::String(d.to_owned()));
        }
        if !compatible_runtimes.is_empty() {
            body.insert("CompatibleRuntimes".into(), json!(compatible_runtimes));
        }
        let path = format!("/2018-10-31/layers/{name}/versions");
        let r = self.call(
            Method::POST,
            &path,
            Some(&Value::Object(body)),
            Subject::Layer(name.as_str(), None),
        )?;
        let v: wire::LayerVersion = wire::parse(&r, "PublishLayerVersion")?;
        v.into_info(name, "PublishLayerVersion")
    }

    fn list_layers(&self) -> Result<Vec<LayerVersionInfo>, StoreError> {
        let items = Self::all_pages("ListLayers", |marker| {
            let path = format!("/2018-10-31/layers{}", Self::marker_query(marker));
            let r = self.call(Method::GET, &path, None, Subject::Other)?;
            let page: wire::ListLayers = wire::parse(&r, "ListLayers")?;
            Ok((page.layers, page.next_marker))
        })?;
        let mut out = Vec::with_capacity(items.len());
        for item in items {
            let name = LambdaName::parse(&item.layer_name).map_err(|e| StoreError::Invalid {
                key: None,
                message: format!("ListLayers gave the name {:?}: {e}", item.layer_name),
            })?;
            out.push(self.layer_version(&name, item.latest_matching_version.version)?);
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    fn layer_versions(&self, name: &LambdaName) -> Result<Vec<LayerVersionInfo>, StoreError> {
        let items = Self::all_pages("ListLayerVersions", |marker| {
            let path = format!(
                "/2018-10-31/layers/{name}/versions{}",
                Self::marker_query(marker)
            );
            let r = self.call(
                Method::GET,
                &path,
                None,
                Subject::Layer(name.as_str(), None),
            )?;
            let page: wire::ListLayerVersions = wire::parse(&r, "ListLayerVersions")?;
            Ok((page.layer_versions, page.next_marker))
        })?;
        if items.is_empty() {
            return Err(StoreError::LayerNotFound {
                name: name.to_string(),
                version: None,
            });
        }
        let mut out = Vec::with_capacity(items.len());
        for item in items {
            out.push(self.layer_version(name, item.version)?);
        }
        out.sort_by_key(|v| v.version);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> LambdaConfig {
        LambdaConfig::parse(text).unwrap()
    }

    #[test]
    fn only_changed_settings_become_members() {
        let current = config(
            r#"{"memory_mb": 256, "timeout_s": 30, "tags": {"a": "1", "b": "2"}, "layers": ["common:1"]}"#,
        );
        let new = config(
            r#"{"memory_mb": 512, "timeout_s": 30, "environment": {"X": "y"}, "tags": {"a": "1", "c": "3"}, "layers": ["common:1"]}"#,
        );
        let c = settings_members(&current, &new).unwrap();
        assert_eq!(
            Value::Object(c.members),
            json!({"MemorySize": 512, "Environment": {"Variables": {"X": "y"}}})
        );
        assert_eq!(
            c.set_tags,
            BTreeMap::from([("c".to_owned(), "3".to_owned())])
        );
        assert_eq!(c.removed_tags, ["b"]);
        // Everything, for a new function.
        let c = settings_members(
            &LambdaConfig::default(),
            &config(r#"{"entry": "app.handler", "tmp_mb": 1024, "layers": ["l"]}"#),
        )
        .unwrap();
        assert_eq!(
            Value::Object(c.members),
            json!({"Handler": "app.handler", "EphemeralStorage": {"Size": 1024}, "Layers": ["l"]})
        );
    }

    #[test]
    fn limits_without_an_aws_member_travel_in_the_platforms_own() {
        let c = settings_members(
            &LambdaConfig::default(),
            &config(r#"{"workers": 4, "cpu_percent": 50}"#),
        )
        .unwrap();
        assert_eq!(
            Value::Object(c.members),
            json!({"Lambdaworker": {"MaxConcurrency": 4, "CpuPercent": 50}})
        );
        // Unchanged, nothing is sent.
        let c = config(r#"{"workers": 4, "memory_mb": 256}"#);
        assert!(settings_members(&c, &c).unwrap().members.is_empty());
        let e = settings_members(&config(r#"{"max_procs": 32}"#), &LambdaConfig::default())
            .unwrap_err();
        assert!(
            matches!(&e, StoreError::Invalid { key: Some(k), .. } if k == "max_procs"),
            "{e}"
        );
        let e =
            settings_members(&config(r#"{"timeout_s": 3}"#), &LambdaConfig::default()).unwrap_err();
        assert!(
            matches!(&e, StoreError::Invalid { key: Some(k), .. } if k == "timeout_s"),
            "{e}"
        );
    }
}
