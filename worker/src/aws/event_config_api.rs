//! The asynchronous-invocation settings of a function as the Lambda API sets them:
//! PutFunctionEventInvokeConfig (replaces them), UpdateFunctionEventInvokeConfig (changes the
//! members given), GetFunctionEventInvokeConfig, DeleteFunctionEventInvokeConfig and
//! ListFunctionEventInvokeConfigs. They are the `lambda.json` keys `retry_attempts`,
//! `max_event_age_s`, `on_success` and `on_failure`; a destination is another function of the
//! cluster (its name or ARN), the only kind of destination this platform has.

use http::StatusCode;
use serde_json::{json, Map, Value};

use super::errors::AwsError;
use super::lambda_api::{paging, LambdaApi, Reply};
use super::members;
use super::routes;
use super::AwsRequest;
use crate::functions::FunctionInfo;
use crate::lambda_config::{self, LambdaConfig};
use crate::name::LambdaName;

/// The members of Put and Update.
const MEMBERS: [&str; 3] = [
    "MaximumRetryAttempts",
    "MaximumEventAgeInSeconds",
    "DestinationConfig",
];

/// The settings a Put or Update body gives: `None` where a member is absent.
#[derive(Debug, Default)]
struct Given {
    retry_attempts: Option<u64>,
    max_event_age_s: Option<u64>,
    on_success: Option<Option<LambdaName>>,
    on_failure: Option<Option<LambdaName>>,
}

fn whole(member: &str, v: &Value, min: u64, max: u64) -> Result<u64, AwsError> {
    match v.as_u64() {
        Some(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(AwsError::invalid(format!(
            "{member} must be a whole number from {min} to {max}, not {v}"
        ))),
    }
}

/// A `{"Destination": arn}` member: a function of this cluster, or nothing.
fn destination(api: &LambdaApi, member: &str, v: &Value) -> Result<Option<LambdaName>, AwsError> {
    let map = members::object(member, v)?;
    if let Some(other) = map.keys().find(|k| k.as_str() != "Destination") {
        return Err(AwsError::invalid(format!(
            "{other} is not a member of {member} (it takes Destination)"
        )));
    }
    let Some(raw) = map.get("Destination") else {
        return Ok(None);
    };
    let raw = members::string("Destination", raw)?;
    if raw.is_empty() {
        return Ok(None);
    }
    let name = lambda_config::destination(raw).map_err(|e| {
        AwsError::invalid(format!(
            "{member}: {e}; this platform's destinations are functions of the cluster"
        ))
    })?;
    if raw.starts_with("arn:") {
        // The same scope checks as any FunctionName.
        api.arns().function_name(raw)?;
    }
    Ok(Some(name))
}

fn parse(api: &LambdaApi, body: &Map<String, Value>) -> Result<Given, AwsError> {
    if let Some(other) = body.keys().find(|k| !MEMBERS.contains(&k.as_str())) {
        return Err(AwsError::invalid(format!(
            "{other} is not a member of the event invoke configuration (it takes {})",
            MEMBERS.join(", ")
        )));
    }
    let mut given = Given::default();
    if let Some(v) = body.get("MaximumRetryAttempts") {
        given.retry_attempts = Some(whole("MaximumRetryAttempts", v, 0, 2)?);
    }
    if let Some(v) = body.get("MaximumEventAgeInSeconds") {
        given.max_event_age_s = Some(whole("MaximumEventAgeInSeconds", v, 60, 21_600)?);
    }
    if let Some(v) = body.get("DestinationConfig") {
        let map = members::object("DestinationConfig", v)?;
        if let Some(other) = map
            .keys()
            .find(|k| !matches!(k.as_str(), "OnSuccess" | "OnFailure"))
        {
            return Err(AwsError::invalid(format!(
                "{other} is not a member of DestinationConfig (it takes OnSuccess, OnFailure)"
            )));
        }
        if let Some(v) = map.get("OnSuccess") {
            given.on_success = Some(destination(api, "OnSuccess", v)?);
        }
        if let Some(v) = map.get("OnFailure") {
            given.on_failure = Some(destination(api, "OnFailure", v)?);
        }
    }
    Ok(given)
}

/// `settings` with the event keys replaced by `given` (Put) or changed where given (Update).
fn apply(settings: &LambdaConfig, given: &Given, replace: bool) -> LambdaConfig {
    let mut out = settings.clone();
    if replace {
        out.retry_attempts = None;
        out.max_event_age_s = None;
        out.on_success = None;
        out.on_failure = None;
    }
    if let Some(n) = given.retry_attempts {
        out.retry_attempts = Some(n);
    }
    if let Some(n) = given.max_event_age_s {
        out.max_event_age_s = Some(n);
    }
    if let Some(d) = &given.on_success {
        out.on_success = d.clone();
    }
    if let Some(d) = &given.on_failure {
        out.on_failure = d.clone();
    }
    out
}

impl LambdaApi {
    /// AWS's `FunctionEventInvokeConfig` of a function.
    fn event_config_shape(&self, info: &FunctionInfo) -> Value {
        let events = info.config.events();
        let dest = |d: &Option<LambdaName>| match d {
            Some(name) => json!({"Destination": self.arns().function(name)}),
            None => json!({}),
        };
        json!({
            "LastModified": info.last_modified_ms as f64 / 1000.0,
            "FunctionArn": format!("{}:{}", self.arns().function(&info.name), super::arn::LATEST),
            "MaximumRetryAttempts": events.retry_attempts,
            "MaximumEventAgeInSeconds": events.max_event_age_s,
            "DestinationConfig": {
                "OnSuccess": dest(&events.on_success),
                "OnFailure": dest(&events.on_failure),
            },
        })
    }

    /// Put (`replace`) or Update of the event invoke configuration.
    pub(super) fn put_event_config(
        &self,
        raw: &str,
        req: &AwsRequest,
        replace: bool,
    ) -> Result<Reply, AwsError> {
        let query = routes::query_pairs(req.query.as_deref())?;
        let name = self.function(raw, &query)?;
        let body = members::parse_body(&req.body)?;
        let given = parse(self, &body)?;
        if !replace {
            // Update changes a configuration that exists.
            self.event_config_info(&name)?;
        }
        let info = self.modify_settings(&name, None, |info| {
            Ok(apply(&info.settings, &given, replace))
        })?;
        Reply::json(StatusCode::OK, &self.event_config_shape(&info))
    }

    fn event_config_info(&self, name: &LambdaName) -> Result<FunctionInfo, AwsError> {
        let info = self.get_info(name)?;
        if !info.config.has_event_config() {
            return Err(AwsError::not_found(format!(
                "The function {} doesn't have an EventInvokeConfig",
                self.arns().function(name)
            )));
        }
        Ok(info)
    }

    pub(super) fn get_event_config(
        &self,
        raw: &str,
        query: &[(String, String)],
    ) -> Result<Reply, AwsError> {
        let name = self.function(raw, query)?;
        let info = self.event_config_info(&name)?;
        Reply::json(StatusCode::OK, &self.event_config_shape(&info))
    }

    pub(super) fn delete_event_config(
        &self,
        raw: &str,
        query: &[(String, String)],
    ) -> Result<Reply, AwsError> {
        let name = self.function(raw, query)?;
        self.event_config_info(&name)?;
        self.modify_settings(&name, None, |info| {
            Ok(apply(&info.settings, &Given::default(), true))
        })?;
        Ok(Reply::no_content())
    }

    pub(super) fn list_event_configs(
        &self,
        raw: &str,
        query: &[(String, String)],
    ) -> Result<Reply, AwsError> {
        let name = self.arns().function_name(raw)?;
        // A function has at most one configuration ($LATEST's): one page always holds it.
        paging(query, (50, 50))?;
        let info = self.get_info(&name)?;
        let configs: Vec<Value> = if info.config.has_event_config() {
            vec![self.event_config_shape(&info)]
        } else {
            Vec::new()
        };
        Reply::json(
            StatusCode::OK,
            &json!({ "FunctionEventInvokeConfigs": configs }),
        )
    }
}
