//! The management API: who may change what, then each operation over the
//! [`FunctionStore`]. Blocking (the store reads and writes files): call [`LambdaApi::handle`]
//! on the blocking pool.
//!
//! A request, in order:
//! 1. a body larger than [`super::MAX_REQUEST_BYTES`]: 413;
//! 2. the signature ([`LambdaApi::authorize`]): with credentials, a signed request must
//!    verify, and one that changes anything (any method but GET and HEAD) must be signed;
//!    without credentials, changes are accepted from this machine only;
//! 3. the operation ([`super::routes::route`]); the operations not implemented answer 501
//!    naming themselves (`Invoke` arrives here only at the registry server, which runs no
//!    function: a worker answers it in [`crate::invoke`]);
//! 4. the operation's members, checked before the store is called; the store's answer.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::SystemTime;

use base64::Engine as _;
use http::{Method, StatusCode};
use serde::Serialize;
use serde_json::{Map, Value};

use super::arn::Arns;
use super::credentials::Credentials;
use super::errors::AwsError;
use super::members::{self, Members};
use super::routes::{self, Op, Route};
use super::shapes::{self, Context, FunctionConfiguration};
use super::sigv4::{self, RequestParts};
use super::{AwsRequest, AwsResponse, MAX_REQUEST_BYTES};
use crate::functions::{FunctionInfo, FunctionStore, StoreError};
use crate::lambda_config::{LambdaConfig, LambdaLimits, LayerRef};
use crate::name::LambdaName;

/// `Runtime` reported for a function that names none: the base's `python3`.
pub const DEFAULT_RUNTIME: &str = "python3";
/// Default and largest `MaxItems` of ListFunctions.
const FUNCTIONS_PAGE: (usize, usize) = (50, 10_000);
/// How many times a read-modify-write of settings is retried when another change came
/// between (only when the client gave no `RevisionId`).
const SETTINGS_RETRIES: usize = 3;

/// The AWS Lambda management API over one store.
#[derive(Debug)]
pub struct LambdaApi {
    store: Arc<dyn FunctionStore>,
    credentials: Option<Credentials>,
    arns: Arns,
    defaults: LambdaLimits,
    default_runtime: String,
}

/// A successful answer before it is encoded.
pub(super) struct Reply {
    status: StatusCode,
    body: Option<Vec<u8>>,
}

impl Reply {
    pub(super) fn json(status: StatusCode, value: &impl Serialize) -> Result<Self, AwsError> {
        let body = serde_json::to_vec(value)
            .map_err(|e| AwsError::service(format!("cannot encode the answer: {e}")))?;
        Ok(Self {
            status,
            body: Some(body),
        })
    }

    pub(super) fn no_content() -> Self {
        Self {
            status: StatusCode::NO_CONTENT,
            body: None,
        }
    }
}

/// A page of a sorted list: the items after `marker`, at most `max`, and the marker of the
/// next page if there is one. Markers are the base64 of the last item's key.
pub(super) fn page<T>(
    items: Vec<T>,
    key: impl Fn(&T) -> String,
    marker: Option<&str>,
    max: usize,
) -> Result<(Vec<T>, Option<String>), AwsError> {
    let engine = &base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let after = match marker {
        None => None,
        Some(m) => {
            let bad = || AwsError::invalid(format!("Marker {m:?} is not one this API gave"));
            let bytes = engine.decode(m).map_err(|_| bad())?;
            Some(String::from_utf8(bytes).map_err(|_| bad())?)
        }
    };
    let mut rest: Vec<T> = match &after {
        Some(a) => items.into_iter().filter(|i| key(i) > *a).collect(),
        None => items,
    };
    let next = if rest.len() > max {
        rest.truncate(max);
        rest.last().map(|last| engine.encode(key(last)))
    } else {
        None
    };
    Ok((rest, next))
}

/// `Marker` and `MaxItems` of a list operation.
pub(super) fn paging(
    query: &[(String, String)],
    (default, most): (usize, usize),
) -> Result<(Option<&str>, usize), AwsError> {
    let marker = find(query, "Marker");
    let max = match find(query, "MaxItems") {
        None => default,
        Some(raw) => match raw.parse::<usize>() {
            Ok(n) if (1..=most).contains(&n) => n,
            _ => {
                return Err(AwsError::invalid(format!(
                    "MaxItems must be from 1 to {most}, not {raw:?}"
                )))
            }
        },
    };
    Ok((marker, max))
}

/// The first value of a query parameter.
pub(super) fn find<'a>(query: &'a [(String, String)], key: &str) -> Option<&'a str> {
    query
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// The `Host` header, for archive URLs.
pub(super) fn host(req: &AwsRequest) -> Option<&str> {
    req.headers
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
}

impl LambdaApi {
    /// The API over `store`; `credentials` `None` accepts changes from this machine only.
    /// `region` and `account_id` go into every ARN; `defaults` are the worker's limits,
    /// reported for what a function does not set.
    pub fn new(
        store: Arc<dyn FunctionStore>,
        credentials: Option<Credentials>,
        region: &str,
        account_id: &str,
        defaults: LambdaLimits,
    ) -> Self {
        Self {
            store,
            credentials,
            arns: Arns {
                region: region.to_owned(),
                account_id: account_id.to_owned(),
            },
            defaults,
            default_runtime: DEFAULT_RUNTIME.to_owned(),
        }
    }

    /// The `Runtime` reported for functions that name none (the base's Python, e.g.
    /// `python3.13`).
    pub fn with_default_runtime(mut self, runtime: &str) -> Self {
        self.default_runtime = runtime.to_owned();
        self
    }

    pub(super) fn arns(&self) -> &Arns {
        &self.arns
    }

    pub(super) fn store(&self) -> &dyn FunctionStore {
        self.store.as_ref()
    }

    /// Answers one request (see the module docs). Blocking.
    pub fn handle(&self, req: &AwsRequest, now: SystemTime) -> AwsResponse {
        let request_id = uuid::Uuid::new_v4().to_string();
        match self.dispatch(req, now) {
            Ok(Reply { status, body }) => {
                AwsResponse::json(status, body.unwrap_or_default(), &request_id)
            }
            Err(e) => {
                if e.status.is_server_error() && e.code != super::errors::UNSUPPORTED {
                    tracing::warn!(code = e.code, message = %e.message, %request_id, "lambda api");
                } else {
                    tracing::debug!(code = e.code, message = %e.message, %request_id, "lambda api");
                }
                AwsResponse::error(&e, &request_id)
            }
        }
    }

    /// Whether the request may go on: see the module docs, step 2. A server may call it for
    /// its own routes that change something (an upload), with the request in this shape.
    pub fn authorize(&self, req: &AwsRequest, now: SystemTime) -> Result<(), AwsError> {
        let changes = !matches!(req.method, Method::GET | Method::HEAD);
        match &self.credentials {
            Some(creds) if sigv4::is_signed(&req.headers) => {
                let parts = RequestParts {
                    method: req.method.as_str(),
                    path: &req.path,
                    query: req.query.as_deref(),
                    headers: &req.headers,
                    body: &req.body,
                };
                sigv4::verify(&parts, creds, now)?;
                Ok(())
            }
            Some(_) if changes => Err(sigv4::AuthError::Missing.into()),
            None if changes && !req.peer_is_loopback => Err(AwsError::forbidden(
                "AccessDeniedException",
                "this worker has no credentials; changes are accepted only from this machine",
            )),
            _ => Ok(()),
        }
    }

    fn dispatch(&self, req: &AwsRequest, now: SystemTime) -> Result<Reply, AwsError> {
        if req.body.len() > MAX_REQUEST_BYTES {
            let op = routes::route(req.method.as_str(), &req.path, req.query.as_deref())
                .map(|r| r.op.name().to_owned())
                .unwrap_or_else(|_| req.path.clone());
            return Err(AwsError::too_large(MAX_REQUEST_BYTES, &op));
        }
        self.authorize(req, now)?;
        let route = routes::route(req.method.as_str(), &req.path, req.query.as_deref())?;
        let query = routes::query_pairs(req.query.as_deref())?;
        let label = |i: usize| route.labels.get(i).map(String::as_str).unwrap_or_default();
        match route.op {
            Op::CreateFunction => self.create_function(req),
            Op::ListFunctions => self.list_functions(&query),
            Op::GetFunction => self.get_function(req, label(0), &query),
            Op::GetFunctionConfiguration => self.get_configuration(label(0), &query),
            Op::UpdateFunctionCode => self.update_code(label(0), req),
            Op::UpdateFunctionConfiguration => self.update_configuration(label(0), req),
            Op::DeleteFunction => self.delete_function(label(0), &query),
            Op::ListTags => self.list_tags(label(0)),
            Op::TagResource => self.tag_resource(label(0), req),
            Op::UntagResource => self.untag_resource(label(0), &query),
            Op::PublishLayerVersion => self.publish_layer_version(label(0), req),
            Op::ListLayers => self.list_layers(&query),
            Op::ListLayerVersions => self.list_layer_versions(label(0), &query),
            Op::GetLayerVersion => self.get_layer_version(req, label(0), label(1)),
            Op::GetLayerVersionByArn => self.get_layer_version_by_arn(req, &query),
            Op::PutEventInvokeConfig => self.put_event_config(label(0), req, true),
            Op::UpdateEventInvokeConfig => self.put_event_config(label(0), req, false),
            Op::GetEventInvokeConfig => self.get_event_config(label(0), &query),
            Op::DeleteEventInvokeConfig => self.delete_event_config(label(0), &query),
            Op::ListEventInvokeConfigs => self.list_event_configs(label(0), &query),
            Op::Invoke | Op::InvokeAsync => Err(AwsError::unsupported(
                "this server does not run functions: invoke them on a worker",
            )),
            Op::Unsupported(_) => Err(unsupported(&route)),
        }
    }

    fn context(&self) -> Context<'_> {
        Context {
            arns: &self.arns,
            defaults: &self.defaults,
            default_runtime: &self.default_runtime,
        }
    }

    /// `FunctionConfiguration` of each function, each layer looked up once.
    fn configurations(&self, infos: &[FunctionInfo]) -> Vec<FunctionConfiguration> {
        let ctx = self.context();
        let mut sizes = LayerSizes {
            store: self.store(),
            known: HashMap::new(),
        };
        infos
            .iter()
            .map(|info| FunctionConfiguration::new(info, &ctx, &mut |r| sizes.resolve(r)))
            .collect()
    }

    fn configuration(&self, info: &FunctionInfo) -> FunctionConfiguration {
        let mut sizes = LayerSizes {
            store: self.store(),
            known: HashMap::new(),
        };
        FunctionConfiguration::new(info, &self.context(), &mut |r| sizes.resolve(r))
    }

    pub(super) fn get_info(&self, name: &LambdaName) -> Result<FunctionInfo, AwsError> {
        self.store
            .get(name)
            .map_err(|e| AwsError::from_store(e, &self.arns.function(name)))
    }

    /// The function a `{FunctionName}` label and an optional `Qualifier` name.
    pub(super) fn function(
        &self,
        raw: &str,
        query: &[(String, String)],
    ) -> Result<LambdaName, AwsError> {
        let name = self.arns.function_name(raw)?;
        self.arns.check_qualifier(&name, find(query, "Qualifier"))?;
        Ok(name)
    }

    fn create_function(&self, req: &AwsRequest) -> Result<Reply, AwsError> {
        let body = members::parse_body(&req.body)?;
        let raw = match body.get("FunctionName") {
            Some(v) => members::string("FunctionName", v)?,
            None => return Err(AwsError::invalid("FunctionName is required")),
        };
        let name = self.arns.function_name(raw)?;
        if raw.contains(":$LATEST") {
            return Err(AwsError::invalid(format!(
                "FunctionName {raw:?}: a function is created without a qualifier"
            )));
        }
        let archive = match body.get("Code") {
            Some(v) => members::code("Code", v)?,
            None => return Err(AwsError::invalid("Code is required")),
        };
        let settings = members::function_settings(&body, Members::Create, &self.arns)?;
        let info = self
            .store
            .create(&name, &archive, &settings)
            .map_err(|e| AwsError::from_store(e, &self.arns.function(&name)))?;
        Reply::json(StatusCode::CREATED, &self.configuration(&info))
    }

    fn list_functions(&self, query: &[(String, String)]) -> Result<Reply, AwsError> {
        let (marker, max) = paging(query, FUNCTIONS_PAGE)?;
        if let Some(v) = find(query, "FunctionVersion").filter(|v| *v != "ALL") {
            return Err(AwsError::invalid(format!(
                "FunctionVersion must be ALL, not {v:?}"
            )));
        }
        let all = self
            .store
            .list()
            .map_err(|e| AwsError::from_store(e, "the function list"))?;
        let (infos, next_marker) = page(all, |i| i.name.to_string(), marker, max)?;
        Reply::json(
            StatusCode::OK,
            &shapes::ListFunctionsResponse {
                functions: self.configurations(&infos),
                next_marker,
            },
        )
    }

    fn get_function(
        &self,
        req: &AwsRequest,
        raw: &str,
        query: &[(String, String)],
    ) -> Result<Reply, AwsError> {
        let info = self.get_info(&self.function(raw, query)?)?;
        let tags = info.config.tags.clone().filter(|t| !t.is_empty());
        Reply::json(
            StatusCode::OK,
            &shapes::GetFunctionResponse {
                code: shapes::FunctionCodeLocation {
                    repository_type: "S3",
                    location: shapes::archive_location(host(req), &info.code_sha256),
                },
                configuration: self.configuration(&info),
                tags,
            },
        )
    }

    fn get_configuration(&self, raw: &str, query: &[(String, String)]) -> Result<Reply, AwsError> {
        let info = self.get_info(&self.function(raw, query)?)?;
        Reply::json(StatusCode::OK, &self.configuration(&info))
    }

    fn update_code(&self, raw: &str, req: &AwsRequest) -> Result<Reply, AwsError> {
        let name = self.arns.function_name(raw)?;
        let body = members::parse_body(&req.body)?;
        let mut archive = None;
        for (member, v) in &body {
            match member.as_str() {
                "ZipFile" => archive = Some(members::zip_file("ZipFile", v)?),
                "RevisionId" => {
                    members::string(member, v)?;
                }
                "Publish" | "Architectures" => {
                    let probe: Map<String, Value> =
                        [(member.clone(), v.clone())].into_iter().collect();
                    members::function_settings(&probe, Members::UpdateConfiguration, &self.arns)?;
                }
                "DryRun" if !members::boolean(member, v)? => {}
                "S3Bucket" | "S3Key" | "S3ObjectVersion" | "ImageUri" => {
                    return Err(AwsError::invalid(format!(
                        "{member} is not supported by this platform: give ZipFile"
                    )))
                }
                _ => {
                    return Err(AwsError::invalid(format!(
                        "{member} is not supported by this platform (supported: ZipFile, \
                         RevisionId)"
                    )))
                }
            }
        }
        let archive = archive.ok_or_else(|| AwsError::invalid("ZipFile is required"))?;
        let revision = members::opt_string(&body, "RevisionId")?;
        let info = self
            .store
            .update_code(&name, &archive, revision)
            .map_err(|e| AwsError::from_store(e, &self.arns.function(&name)))?;
        Reply::json(StatusCode::OK, &self.configuration(&info))
    }

    /// Replaces a function's settings with `change(info)`, under `revision` if the client
    /// gave one, else under the revision read (retried if another change came between).
    pub(super) fn modify_settings(
        &self,
        name: &LambdaName,
        revision: Option<&str>,
        change: impl Fn(&FunctionInfo) -> Result<LambdaConfig, AwsError>,
    ) -> Result<FunctionInfo, AwsError> {
        let arn = self.arns.function(name);
        let mut attempt = 0;
        loop {
            let info = self.get_info(name)?;
            let settings = change(&info)?;
            let expected = revision.unwrap_or(&info.revision_id);
            match self.store.update_settings(name, &settings, Some(expected)) {
                Ok(info) => return Ok(info),
                Err(StoreError::RevisionMismatch { .. })
                    if revision.is_none() && attempt < SETTINGS_RETRIES =>
                {
                    attempt += 1;
                }
                Err(e) => return Err(AwsError::from_store(e, &arn)),
            }
        }
    }

    fn update_configuration(&self, raw: &str, req: &AwsRequest) -> Result<Reply, AwsError> {
        let name = self.arns.function_name(raw)?;
        let body = members::parse_body(&req.body)?;
        let given = members::function_settings(&body, Members::UpdateConfiguration, &self.arns)?;
        let revision = members::opt_string(&body, "RevisionId")?;
        let info = self.modify_settings(&name, revision, |info| Ok(given.over(&info.settings)))?;
        Reply::json(StatusCode::OK, &self.configuration(&info))
    }

    fn delete_function(&self, raw: &str, query: &[(String, String)]) -> Result<Reply, AwsError> {
        let name = self.function(raw, query)?;
        self.store
            .delete(&name)
            .map_err(|e| AwsError::from_store(e, &self.arns.function(&name)))?;
        Ok(Reply::no_content())
    }

    fn list_tags(&self, raw: &str) -> Result<Reply, AwsError> {
        let info = self.get_info(&self.arns.tagged_function(raw)?)?;
        Reply::json(
            StatusCode::OK,
            &shapes::ListTagsResponse {
                tags: info.config.tags.unwrap_or_default(),
            },
        )
    }

    fn tag_resource(&self, raw: &str, req: &AwsRequest) -> Result<Reply, AwsError> {
        let name = self.arns.tagged_function(raw)?;
        let body = members::parse_body(&req.body)?;
        if let Some(other) = body.keys().find(|k| k.as_str() != "Tags") {
            return Err(AwsError::invalid(format!(
                "{other} is not a member of TagResource (it takes Tags)"
            )));
        }
        let tags = match body.get("Tags") {
            Some(v) => members::object("Tags", v)?.clone(),
            None => return Err(AwsError::invalid("Tags is required")),
        };
        self.modify_settings(&name, None, |info| {
            let mut merged = info.config.tags.clone().unwrap_or_default();
            for (k, v) in &tags {
                merged.insert(k.clone(), members::string("Tags", v)?.to_owned());
            }
            with_tags(&info.settings, merged)
        })?;
        Ok(Reply::no_content())
    }

    fn untag_resource(&self, raw: &str, query: &[(String, String)]) -> Result<Reply, AwsError> {
        let name = self.arns.tagged_function(raw)?;
        let keys: Vec<&str> = query
            .iter()
            .filter(|(k, _)| k == "tagKeys")
            .map(|(_, v)| v.as_str())
            .collect();
        if keys.is_empty() {
            return Err(AwsError::invalid("tagKeys is required"));
        }
        self.modify_settings(&name, None, |info| {
            let mut left = info.config.tags.clone().unwrap_or_default();
            for k in &keys {
                left.remove(*k);
            }
            with_tags(&info.settings, left)
        })?;
        Ok(Reply::no_content())
    }
}

/// The versions and code sizes of the layers one answer names, each layer read once (a page
/// of functions names at most 5 layers per function).
struct LayerSizes<'a> {
    store: &'a dyn FunctionStore,
    known: HashMap<LambdaName, Option<Vec<(u64, u64)>>>,
}

impl LayerSizes<'_> {
    /// `(version, code size)` of the version `r` names (the latest for none); `None` if it
    /// does not exist (any more).
    fn resolve(&mut self, r: &LayerRef) -> Option<(u64, u64)> {
        let store = self.store;
        let versions = self.known.entry(r.name.clone()).or_insert_with(|| {
            store
                .layer_versions(&r.name)
                .ok()
                .map(|vs| vs.iter().map(|v| (v.version, v.code_size)).collect())
        });
        let versions = versions.as_ref()?;
        match r.version {
            Some(want) => versions.iter().find(|(v, _)| *v == want).copied(),
            None => versions.iter().max_by_key(|(v, _)| *v).copied(),
        }
    }
}

/// `current` with `tags` (the whole map: the archive's own `lambda.json` tags were merged in
/// by the caller), validated as `lambda.json`'s `tags`.
fn with_tags(
    current: &LambdaConfig,
    tags: std::collections::BTreeMap<String, String>,
) -> Result<LambdaConfig, AwsError> {
    let keys: Map<String, Value> = [("tags".to_owned(), crate::lambda_config::string_map(&tags))]
        .into_iter()
        .collect();
    let checked = members::settings(keys)?;
    Ok(LambdaConfig {
        tags: checked.tags,
        ..current.clone()
    })
}

fn unsupported(route: &Route) -> AwsError {
    let supported: Vec<&str> = Op::supported().collect();
    AwsError::unsupported(format!(
        "{} ({}) is not supported by this platform; supported: {}",
        route.op.name(),
        route.template,
        supported.join(", ")
    ))
}
