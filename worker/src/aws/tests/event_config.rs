//! PutFunctionEventInvokeConfig and its siblings over the fake store.

use http::StatusCode;
use serde_json::json;

use super::*;

const PATH: &str = "/2019-09-25/functions/f/event-invoke-config";

#[test]
fn event_invoke_config_is_put_read_updated_listed_and_deleted() {
    let (api, store) = open_api();
    create(&api, "f", json!({}));
    create(&api, "sink", json!({}));
    // None yet.
    let r = call(&api, "GET", PATH, None);
    assert_error(
        &r,
        404,
        "ResourceNotFoundException",
        "doesn't have an EventInvokeConfig",
    );
    let listed = body(&call(&api, "GET", &format!("{PATH}/list"), None));
    assert_eq!(listed, json!({"FunctionEventInvokeConfigs": []}));

    let sink = format!("arn:aws:lambda:{REGION}:{ACCOUNT}:function:sink");
    let r = call(
        &api,
        "PUT",
        PATH,
        Some(
            json!({"MaximumRetryAttempts": 1, "MaximumEventAgeInSeconds": 120,
                    "DestinationConfig": {"OnFailure": {"Destination": sink}}}),
        ),
    );
    assert_eq!(r.status, StatusCode::OK, "{}", body(&r));
    let got = body(&call(&api, "GET", PATH, None));
    assert_eq!(got["MaximumRetryAttempts"], 1, "{got}");
    assert_eq!(got["MaximumEventAgeInSeconds"], 120);
    assert_eq!(
        got["DestinationConfig"]["OnFailure"]["Destination"],
        sink.as_str()
    );
    assert_eq!(got["DestinationConfig"]["OnSuccess"], json!({}));
    assert!(got["FunctionArn"]
        .as_str()
        .unwrap()
        .ends_with(":function:f:$LATEST"));
    // It is lambda.json's keys.
    let snapshot = store.snapshot();
    let info = snapshot.iter().find(|i| i.name.as_str() == "f").unwrap();
    assert_eq!(info.config.retry_attempts, Some(1));
    assert_eq!(
        info.config.on_failure.as_ref().map(|n| n.as_str()),
        Some("sink")
    );

    // Update changes what it is given; Put replaces.
    let r = call(&api, "POST", PATH, Some(json!({"MaximumRetryAttempts": 0})));
    let got = body(&r);
    assert_eq!(
        (
            got["MaximumRetryAttempts"].clone(),
            got["MaximumEventAgeInSeconds"].clone()
        ),
        (json!(0), json!(120)),
        "{got}"
    );
    let got = body(&call(
        &api,
        "PUT",
        PATH,
        Some(json!({"MaximumEventAgeInSeconds": 60})),
    ));
    assert_eq!(got["MaximumRetryAttempts"], 2, "back to the default: {got}");
    assert_eq!(got["DestinationConfig"]["OnFailure"], json!({}), "{got}");
    let listed = body(&call(&api, "GET", &format!("{PATH}/list"), None));
    assert_eq!(
        listed["FunctionEventInvokeConfigs"]
            .as_array()
            .unwrap()
            .len(),
        1
    );

    // Bad values name the member; nothing changes.
    for (value, needle) in [
        (json!({"MaximumRetryAttempts": 3}), "MaximumRetryAttempts"),
        (
            json!({"MaximumEventAgeInSeconds": 59}),
            "MaximumEventAgeInSeconds",
        ),
        (json!({"Other": 1}), "Other is not a member"),
        (
            json!({"DestinationConfig": {"OnFailure": {"Destination": "arn:aws:sqs:us-east-1:000000000000:q"}}}),
            "destinations are functions",
        ),
        (
            json!({"DestinationConfig": {"OnFailure": {"Destination": "arn:aws:lambda:eu-west-1:000000000000:function:sink"}}}),
            "region",
        ),
    ] {
        let r = call(&api, "PUT", PATH, Some(value.clone()));
        assert_error(&r, 400, "InvalidParameterValueException", needle);
    }
    let r = call(
        &api,
        "GET",
        "/2019-09-25/functions/nope/event-invoke-config",
        None,
    );
    assert_error(&r, 404, "ResourceNotFoundException", "nope");

    let r = call(&api, "DELETE", PATH, None);
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_error(
        &call(&api, "GET", PATH, None),
        404,
        "ResourceNotFoundException",
        "EventInvokeConfig",
    );
    assert_error(
        &call(&api, "POST", PATH, Some(json!({"MaximumRetryAttempts": 1}))),
        404,
        "ResourceNotFoundException",
        "EventInvokeConfig",
    );
}
