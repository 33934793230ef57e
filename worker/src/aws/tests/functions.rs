//! The function operations.

use std::sync::atomic::Ordering;

use super::*;

#[test]
fn create_answers_a_function_configuration_as_boto3_reads_it() {
    let (api, store) = open_api();
    let r = call(
        &api,
        "POST",
        "/2015-03-31/functions",
        Some(create_body(
            "hello",
            json!({"Description": "greets", "Timeout": 30, "MemorySize": 256,
                   "Environment": {"Variables": {"GREETING": "hi"}}, "Tags": {"team": "a"},
                   "EphemeralStorage": {"Size": 1024}}),
        )),
    );
    assert_eq!(r.status, StatusCode::CREATED);
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert!(r
        .header("x-amzn-RequestId")
        .is_some_and(|id| id.len() == 36));
    let c = body(&r);
    let sha = store.snapshot()[0].code_sha256.clone();
    assert_eq!(
        c,
        json!({
            "FunctionName": "hello",
            "FunctionArn": arn("hello"),
            "Runtime": "python3.12",
            "Role": format!("arn:aws:iam::{ACCOUNT}:role/lambdaworker"),
            "Handler": "app.handler",
            "CodeSize": 22,
            "Description": "greets",
            "Timeout": 30,
            "MemorySize": 256,
            "LastModified": "2026-12-02T03:04:05.001+0000",
            "CodeSha256": super::super::shapes::sha256_base64(&sha),
            "Version": "$LATEST",
            "Environment": {"Variables": {"GREETING": "hi"}},
            "TracingConfig": {"Mode": "PassThrough"},
            "RevisionId": "rev-1",
            "State": "Active",
            "LastUpdateStatus": "Successful",
            "PackageType": "Zip",
            "Architectures": ["x86_64"],
            "EphemeralStorage": {"Size": 1024},
        })
    );
    assert_eq!(c["CodeSha256"].as_str().unwrap().len(), 44);
    // What the store was given.
    let info = &store.snapshot()[0];
    assert_eq!(info.settings.timeout_s, Some(30));
    assert_eq!(info.settings.tags.as_ref().unwrap()["team"], "a");
    assert_eq!(
        info.settings.entry.as_ref().unwrap().to_string(),
        "app.handler"
    );
}

#[test]
fn unset_members_report_the_workers_defaults() {
    let (api, _) = open_api();
    let r = call(
        &api,
        "POST",
        "/2015-03-31/functions",
        Some(
            json!({"FunctionName": "plain", "Role": format!("arn:aws:iam::{ACCOUNT}:role/r"),
                    "Code": {"ZipFile": ZIP_B64}}),
        ),
    );
    let c = body(&r);
    assert_eq!(r.status, StatusCode::CREATED, "{c}");
    assert_eq!(c["MemorySize"], 512);
    assert_eq!(c["Timeout"], 60);
    assert_eq!(c["EphemeralStorage"]["Size"], 256);
    assert_eq!(c["Runtime"], "python3");
    assert_eq!(c["Handler"], "lambda_func.handler");
    assert_eq!(c["Description"], "");
    assert!(
        c.get("Environment").is_none() && c.get("Layers").is_none(),
        "{c}"
    );
    let api = api.with_default_runtime("python3.13");
    assert_eq!(
        body(&call(
            &api,
            "GET",
            "/2015-03-31/functions/plain/configuration",
            None
        ))["Runtime"],
        "python3.13"
    );
}

#[test]
fn get_get_configuration_and_delete() {
    let (api, store) = open_api();
    create(&api, "hello", json!({"Tags": {"team": "a"}}));
    let sha = store.snapshot()[0].code_sha256.clone();
    let r = call(&api, "GET", "/2015-03-31/functions/hello", None);
    assert_eq!(r.status, StatusCode::OK);
    let g = body(&r);
    assert_eq!(g["Configuration"]["FunctionName"], "hello");
    assert_eq!(
        g["Code"],
        json!({"RepositoryType": "S3", "Location": format!("http://{HOST}/registry/archives/{sha}")})
    );
    assert_eq!(g["Tags"], json!({"team": "a"}));
    let c = body(&call(
        &api,
        "GET",
        "/2015-03-31/functions/hello/configuration",
        None,
    ));
    assert_eq!(c, g["Configuration"]);

    let r = call(&api, "DELETE", "/2015-03-31/functions/hello", None);
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert!(r.body.is_empty());
    assert!(store.snapshot().is_empty());
    for (method, path) in [
        ("GET", "/2015-03-31/functions/hello"),
        ("GET", "/2015-03-31/functions/hello/configuration"),
        ("DELETE", "/2015-03-31/functions/hello"),
    ] {
        let r = call(&api, method, path, None);
        assert_error(
            &r,
            404,
            "ResourceNotFoundException",
            &format!("Function not found: {}", arn("hello")),
        );
        assert!(
            body(&r).get("Message").is_some(),
            "the model's key for this code"
        );
    }
}

#[test]
fn a_function_is_named_by_name_partial_or_full_arn() {
    let (api, _) = open_api();
    create(&api, "hello", json!({}));
    for name in [
        "hello".to_owned(),
        "hello:%24LATEST".to_owned(),
        format!("{ACCOUNT}%3Afunction%3Ahello"),
        encoded_arn("hello"),
        format!("{}%3A%24LATEST", encoded_arn("hello")),
        // Unencoded ':' too (curl).
        arn("hello"),
    ] {
        let r = call(&api, "GET", &format!("/2015-03-31/functions/{name}"), None);
        assert_eq!(r.status, StatusCode::OK, "{name}: {}", body(&r));
    }
    let r = call(
        &api,
        "GET",
        "/2015-03-31/functions/hello?Qualifier=%24LATEST",
        None,
    );
    assert_eq!(r.status, StatusCode::OK);
    for path in [
        "/2015-03-31/functions/hello:1",
        "/2015-03-31/functions/hello?Qualifier=1",
        "/2015-03-31/functions/hello/configuration?Qualifier=prod",
    ] {
        assert_error(
            &call(&api, "GET", path, None),
            404,
            "ResourceNotFoundException",
            "only $LATEST",
        );
    }
    let r = call(
        &api,
        "DELETE",
        "/2015-03-31/functions/hello?Qualifier=1",
        None,
    );
    assert_error(&r, 404, "ResourceNotFoundException", "hello:1");
    let r = call(
        &api,
        "GET",
        "/2015-03-31/functions/999999999999%3Afunction%3Ahello",
        None,
    );
    assert_error(&r, 400, "InvalidParameterValueException", "account");
    let r = call(&api, "GET", "/2015-03-31/functions/he.llo", None);
    assert_error(
        &r,
        400,
        "InvalidParameterValueException",
        "FunctionName \"he.llo\"",
    );
}

#[test]
fn list_functions_pages_with_stable_markers() {
    let (api, _) = open_api();
    let names = ["a", "b", "c", "d", "e", "f", "g"];
    for n in names.iter().rev() {
        create(&api, n, json!({}));
    }
    let all = body(&call(&api, "GET", "/2015-03-31/functions/", None));
    let listed: Vec<&str> = all["Functions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["FunctionName"].as_str().unwrap())
        .collect();
    assert_eq!(listed, names);
    assert!(all.get("NextMarker").is_none());
    assert_eq!(all["Functions"][0]["FunctionArn"], arn("a"));

    let mut seen = Vec::new();
    let mut marker: Option<String> = None;
    for expected in [3, 3, 1] {
        let path = match &marker {
            Some(m) => format!("/2015-03-31/functions?MaxItems=3&Marker={m}"),
            None => "/2015-03-31/functions?MaxItems=3".to_owned(),
        };
        let page = body(&call(&api, "GET", &path, None));
        let fs = page["Functions"].as_array().unwrap();
        assert_eq!(fs.len(), expected, "{page}");
        seen.extend(
            fs.iter()
                .map(|f| f["FunctionName"].as_str().unwrap().to_owned()),
        );
        marker = page
            .get("NextMarker")
            .map(|m| m.as_str().unwrap().to_owned());
    }
    assert_eq!(marker, None);
    assert_eq!(seen, names);
    // A marker stays valid while functions come and go.
    let first = body(&call(&api, "GET", "/2015-03-31/functions?MaxItems=2", None));
    let m = first["NextMarker"].as_str().unwrap().to_owned();
    call(&api, "DELETE", "/2015-03-31/functions/c", None);
    let next = body(&call(
        &api,
        "GET",
        &format!("/2015-03-31/functions?MaxItems=2&Marker={m}"),
        None,
    ));
    assert_eq!(next["Functions"][0]["FunctionName"], "d");

    for (q, needle) in [
        ("MaxItems=0", "MaxItems must be from 1 to 10000"),
        ("MaxItems=10001", "MaxItems must be from 1 to 10000"),
        ("MaxItems=x", "MaxItems"),
        ("Marker=%21%21", "Marker \"!!\" is not one this API gave"),
        ("FunctionVersion=1", "FunctionVersion must be ALL"),
    ] {
        let r = call(&api, "GET", &format!("/2015-03-31/functions?{q}"), None);
        assert_error(&r, 400, "InvalidParameterValueException", needle);
    }
    let r = call(
        &api,
        "GET",
        "/2015-03-31/functions?FunctionVersion=ALL",
        None,
    );
    assert_eq!(r.status, StatusCode::OK);
}

#[test]
fn update_code_replaces_the_archive_under_a_revision() {
    let (api, store) = open_api();
    let created = create(&api, "hello", json!({"Timeout": 30}));
    let new_zip = "UEsFBgAAAAAAAAAAAAAAAAAAAAAAAAAA";
    let r = call(
        &api,
        "PUT",
        "/2015-03-31/functions/hello/code",
        Some(json!({"ZipFile": new_zip, "RevisionId": created["RevisionId"]})),
    );
    let c = body(&r);
    assert_eq!(r.status, StatusCode::OK, "{c}");
    assert_ne!(c["CodeSha256"], created["CodeSha256"]);
    assert_ne!(c["RevisionId"], created["RevisionId"]);
    assert_eq!(c["CodeSize"], 24);
    assert_eq!(c["Timeout"], 30, "the settings stay");

    let before = store.snapshot();
    for (b, status, code, needle) in [
        (
            json!({"ZipFile": ZIP_B64, "RevisionId": "rev-1"}),
            412,
            "PreconditionFailedException",
            "does not match the latest Revision Id",
        ),
        (
            json!({"S3Bucket": "b", "S3Key": "k"}),
            400,
            "InvalidParameterValueException",
            "S3Bucket is not supported",
        ),
        (
            json!({}),
            400,
            "InvalidParameterValueException",
            "ZipFile is required",
        ),
        (
            json!({"ZipFile": "QkFEIGFyY2hpdmU="}),
            400,
            "InvalidParameterValueException",
            "Code: entry \"../x\" is outside the archive",
        ),
        (
            json!({"ZipFile": ZIP_B64, "DryRun": true}),
            400,
            "InvalidParameterValueException",
            "DryRun is not supported",
        ),
        (
            json!({"ZipFile": ZIP_B64, "Publish": true}),
            400,
            "InvalidParameterValueException",
            "Publish true",
        ),
    ] {
        let r = call(
            &api,
            "PUT",
            "/2015-03-31/functions/hello/code",
            Some(b.clone()),
        );
        assert_error(&r, status, code, needle);
    }
    assert_eq!(store.snapshot(), before, "nothing changed");
    let r = call(
        &api,
        "PUT",
        "/2015-03-31/functions/nope/code",
        Some(json!({"ZipFile": ZIP_B64})),
    );
    assert_error(&r, 404, "ResourceNotFoundException", &arn("nope"));
}

#[test]
fn update_configuration_merges_and_environment_replaces() {
    let (api, store) = open_api();
    create(
        &api,
        "hello",
        json!({"Timeout": 30, "MemorySize": 256, "Environment": {"Variables": {"A": "1", "B": "2"}}}),
    );
    let r = call(
        &api,
        "PUT",
        "/2015-03-31/functions/hello/configuration",
        Some(json!({"Timeout": 90, "Environment": {"Variables": {"C": "3"}}, "Handler": "mod.fn"})),
    );
    let c = body(&r);
    assert_eq!(r.status, StatusCode::OK, "{c}");
    assert_eq!(c["Timeout"], 90);
    assert_eq!(c["MemorySize"], 256, "kept");
    assert_eq!(c["Environment"], json!({"Variables": {"C": "3"}}));
    assert_eq!(c["Handler"], "mod.fn");
    assert_eq!(c["Runtime"], "python3.12", "kept");
    // An empty Variables clears them.
    let c = body(&call(
        &api,
        "PUT",
        "/2015-03-31/functions/hello/configuration",
        Some(json!({"Environment": {"Variables": {}}})),
    ));
    assert!(c.get("Environment").is_none(), "{c}");

    let before = store.snapshot();
    for (b, status, code, needle) in [
        (
            json!({"MemorySize": 100}),
            400,
            "InvalidParameterValueException",
            "MemorySize: must be from 128 to 3008, not 100",
        ),
        (
            json!({"Timeout": 901}),
            400,
            "InvalidParameterValueException",
            "Timeout: must be from 1 to 900",
        ),
        (
            json!({"Timeout": 5, "RevisionId": "rev-1"}),
            412,
            "PreconditionFailedException",
            "Revision Id",
        ),
        (
            json!({"Layers": ["arn:aws:lambda:us-east-1:123456789012:layer:none:1"]}),
            400,
            "InvalidParameterValueException",
            "layers: layer none:1 does not exist",
        ),
        (
            json!({"Tags": {"a": "b"}}),
            400,
            "InvalidParameterValueException",
            "Tags is not supported",
        ),
    ] {
        let r = call(
            &api,
            "PUT",
            "/2015-03-31/functions/hello/configuration",
            Some(b.clone()),
        );
        assert_error(&r, status, code, needle);
    }
    assert_eq!(store.snapshot(), before, "nothing changed");
    // With the right revision it goes through.
    let rev = before[0].revision_id.clone();
    let r = call(
        &api,
        "PUT",
        "/2015-03-31/functions/hello/configuration",
        Some(json!({"Timeout": 5, "RevisionId": rev})),
    );
    assert_eq!(r.status, StatusCode::OK);
}

#[test]
fn a_change_that_races_another_is_retried_unless_a_revision_was_given() {
    let (api, store) = open_api();
    create(&api, "hello", json!({}));
    store.race_once.store(true, Ordering::SeqCst);
    let r = call(
        &api,
        "PUT",
        "/2015-03-31/functions/hello/configuration",
        Some(json!({"Timeout": 7})),
    );
    assert_eq!(r.status, StatusCode::OK, "{}", body(&r));
    assert_eq!(store.snapshot()[0].settings.timeout_s, Some(7));
    let rev = store.snapshot()[0].revision_id.clone();
    store.race_once.store(true, Ordering::SeqCst);
    let r = call(
        &api,
        "PUT",
        "/2015-03-31/functions/hello/configuration",
        Some(json!({"Timeout": 8, "RevisionId": rev})),
    );
    assert_error(&r, 412, "PreconditionFailedException", "Revision Id");
}

#[test]
fn tags_are_listed_added_and_removed() {
    let (api, store) = open_api();
    create(&api, "hello", json!({"Tags": {"a": "1", "b": "2"}}));
    let path = format!("/2017-03-31/tags/{}", encoded_arn("hello"));
    assert_eq!(
        body(&call(&api, "GET", &path, None)),
        json!({"Tags": {"a": "1", "b": "2"}})
    );
    let r = call(
        &api,
        "POST",
        &path,
        Some(json!({"Tags": {"b": "3", "c": "4"}})),
    );
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert!(r.body.is_empty());
    assert_eq!(
        body(&call(&api, "GET", &path, None)),
        json!({"Tags": {"a": "1", "b": "3", "c": "4"}})
    );
    let r = call(
        &api,
        "DELETE",
        &format!("{path}?tagKeys=a&tagKeys=c&tagKeys=zz"),
        None,
    );
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_eq!(
        body(&call(&api, "GET", &path, None)),
        json!({"Tags": {"b": "3"}})
    );
    assert_eq!(store.snapshot()[0].settings.tags.as_ref().unwrap().len(), 1);
    // Untagging everything leaves an empty map.
    call(&api, "DELETE", &format!("{path}?tagKeys=b"), None);
    assert_eq!(body(&call(&api, "GET", &path, None)), json!({"Tags": {}}));

    let before = store.snapshot();
    for (method, p, b, status, code, needle) in [
        (
            "GET",
            "/2017-03-31/tags/hello".to_owned(),
            None,
            400,
            "InvalidParameterValueException",
            "Resource \"hello\" is not a function ARN",
        ),
        (
            "GET",
            format!("/2017-03-31/tags/{}", encoded_arn("nope")),
            None,
            404,
            "ResourceNotFoundException",
            "Function not found",
        ),
        (
            "POST",
            path.clone(),
            Some(json!({})),
            400,
            "InvalidParameterValueException",
            "Tags is required",
        ),
        (
            "POST",
            path.clone(),
            Some(json!({"Tags": {"k": 1}})),
            400,
            "InvalidRequestContentException",
            "Tags must be a string",
        ),
        (
            "POST",
            path.clone(),
            Some(json!({"Tags": {"": "x"}})),
            400,
            "InvalidParameterValueException",
            "Tags: tag \"\"",
        ),
        (
            "POST",
            path.clone(),
            Some(json!({"Tags": {}, "Other": 1})),
            400,
            "InvalidParameterValueException",
            "Other is not a member of TagResource",
        ),
        (
            "DELETE",
            path.clone(),
            None,
            400,
            "InvalidParameterValueException",
            "tagKeys is required",
        ),
    ] {
        let r = call(&api, method, &p, b);
        assert_error(&r, status, code, needle);
    }
    let many: serde_json::Map<String, Value> =
        (0..51).map(|i| (format!("k{i}"), json!("v"))).collect();
    let r = call(&api, "POST", &path, Some(json!({"Tags": many})));
    assert_error(&r, 400, "InvalidParameterValueException", "at most 50 tags");
    assert_eq!(store.snapshot(), before, "nothing changed");
}

#[test]
fn create_refusals_name_the_problem_and_change_nothing() {
    let (api, store) = open_api();
    create(&api, "hello", json!({}));
    let before = store.snapshot();
    for (b, status, code, needle) in [
        (
            create_body("hello", json!({})),
            409,
            "ResourceConflictException",
            "Function already exist: hello",
        ),
        (
            json!({"Role": "arn:aws:iam::1:role/r", "Code": {"ZipFile": ZIP_B64}}),
            400,
            "InvalidParameterValueException",
            "FunctionName is required",
        ),
        (
            create_body("x", json!({"Code": null})),
            400,
            "InvalidRequestContentException",
            "Code must be an object",
        ),
        (
            json!({"FunctionName": "x"}),
            400,
            "InvalidParameterValueException",
            "Code is required",
        ),
        (
            create_body("x", json!({"Code": {"ZipFile": "QkFEIGFyY2hpdmU="}})),
            400,
            "InvalidParameterValueException",
            "entry \"../x\"",
        ),
        (
            create_body("x", json!({"Runtime": "nodejs20.x"})),
            400,
            "InvalidParameterValueException",
            "nodejs20.x is not supported",
        ),
        (
            create_body("x", json!({"MemorySize": 100})),
            400,
            "InvalidParameterValueException",
            "MemorySize: must be from 128",
        ),
        (
            create_body(
                "x",
                json!({"Layers": ["a:1", "b:1", "c:1", "d:1", "e:1", "f:1"]}),
            ),
            400,
            "InvalidParameterValueException",
            "at most 5 layers",
        ),
        (
            create_body("x:$LATEST", json!({})),
            400,
            "InvalidParameterValueException",
            "without a qualifier",
        ),
        (
            create_body("bad name", json!({})),
            400,
            "InvalidParameterValueException",
            "FunctionName \"bad name\"",
        ),
        (
            create_body("x", json!({"VpcConfig": {"SubnetIds": ["subnet-1"]}})),
            400,
            "InvalidParameterValueException",
            "VpcConfig",
        ),
    ] {
        let r = call(&api, "POST", "/2015-03-31/functions", Some(b.clone()));
        assert_error(&r, status, code, needle);
    }
    for raw in [&b"{not json"[..], b"[]", b"\"x\""] {
        let r = api.handle(&request("POST", "/2015-03-31/functions", raw), now());
        assert_error(
            &r,
            400,
            "InvalidRequestContentException",
            "Could not parse request body into json",
        );
    }
    assert_eq!(store.snapshot(), before);
}

#[test]
fn other_operations_and_paths_answer_naming_themselves() {
    let (api, _) = open_api();
    let r = call(
        &api,
        "POST",
        "/2015-03-31/functions/hello/invocations",
        Some(json!({})),
    );
    assert_error(
        &r,
        501,
        "UnsupportedOperationException",
        "this server does not run functions: invoke them on a worker",
    );
    let r = call(
        &api,
        "POST",
        "/2015-03-31/functions/hello/policy",
        Some(json!({})),
    );
    assert_error(
        &r,
        501,
        "UnsupportedOperationException",
        "AddPermission (/2015-03-31/functions/{FunctionName}/policy) is not supported",
    );
    let b = body(&r);
    assert!(
        b["message"]
            .as_str()
            .unwrap()
            .contains("supported: CreateFunction"),
        "{b}"
    );
    let r = call(&api, "GET", "/2016-08-19/account-settings", None);
    assert_error(
        &r,
        501,
        "UnsupportedOperationException",
        "GetAccountSettings",
    );
    let r = call(&api, "PATCH", "/2015-03-31/functions/hello", None);
    assert_error(
        &r,
        400,
        "UnknownOperationException",
        "PATCH /2015-03-31/functions/hello",
    );
    let r = call(&api, "GET", "/2015-03-31/nothing", None);
    assert_error(&r, 400, "UnknownOperationException", "/2015-03-31/nothing");
}

#[test]
fn store_failures_are_service_errors_and_huge_bodies_413() {
    let (api, store) = open_api();
    store.fail_io.store(true, Ordering::SeqCst);
    let r = call(&api, "GET", "/2015-03-31/functions", None);
    assert_error(&r, 500, "ServiceException", "disk full");
    assert_eq!(body(&r)["Type"], "Service");
    store.fail_io.store(false, Ordering::SeqCst);

    let big = vec![b' '; super::super::MAX_REQUEST_BYTES + 1];
    let r = api.handle(&request("POST", "/2015-03-31/functions", &big), now());
    assert_error(
        &r,
        413,
        "RequestEntityTooLargeException",
        "Request must be smaller than 69905067 bytes for the CreateFunction operation",
    );
    let r = AwsResponse::too_large("UpdateFunctionCode");
    assert_error(
        &r,
        413,
        "RequestEntityTooLargeException",
        "UpdateFunctionCode",
    );
    assert!(store.snapshot().is_empty());
}
