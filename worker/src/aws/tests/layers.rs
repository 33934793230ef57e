//! The layer operations, and layers in a function's configuration.

use super::*;

fn publish(api: &LambdaApi, name: &str, extra: Value) -> AwsResponse {
    let mut b = json!({"Content": {"ZipFile": ZIP_B64}});
    if let (Some(map), Value::Object(extra)) = (b.as_object_mut(), extra) {
        map.extend(extra);
    }
    call(
        api,
        "POST",
        &format!("/2018-10-31/layers/{name}/versions"),
        Some(b),
    )
}

fn layer_arn(name: &str) -> String {
    format!("arn:aws:lambda:{REGION}:{ACCOUNT}:layer:{name}")
}

#[test]
fn publish_get_and_list_layer_versions() {
    let (api, _) = open_api();
    let r = publish(
        &api,
        "common",
        json!({"Description": "shared", "CompatibleRuntimes": ["python3.12"]}),
    );
    assert_eq!(r.status, StatusCode::CREATED);
    let v1 = body(&r);
    let sha = v1["Content"]["CodeSha256"].as_str().unwrap().to_owned();
    assert_eq!(sha.len(), 44);
    assert_eq!(v1["LayerArn"], layer_arn("common"));
    assert_eq!(v1["LayerVersionArn"], format!("{}:1", layer_arn("common")));
    assert_eq!(v1["Version"], 1);
    assert_eq!(v1["Description"], "shared");
    assert_eq!(v1["CompatibleRuntimes"], json!(["python3.12"]));
    assert_eq!(v1["CompatibleArchitectures"], json!(["x86_64"]));
    assert_eq!(v1["Content"]["CodeSize"], 22);
    assert!(v1["Content"]["Location"]
        .as_str()
        .unwrap()
        .starts_with(&format!("http://{HOST}/registry/archives/")));
    assert_eq!(v1["CreatedDate"], "2026-12-02T03:04:05.001+0000");
    let v2 = body(&publish(&api, "common", json!({})));
    assert_eq!(v2["Version"], 2);
    publish(&api, "other", json!({"CompatibleRuntimes": ["python3.13"]}));

    let got = body(&call(
        &api,
        "GET",
        "/2018-10-31/layers/common/versions/1",
        None,
    ));
    assert_eq!(got, v1);
    let by_arn = body(&call(
        &api,
        "GET",
        &format!(
            "/2018-10-31/layers?find=LayerVersion&Arn={}%3A2",
            layer_arn("common").replace(':', "%3A")
        ),
        None,
    ));
    assert_eq!(by_arn, v2);
    let by_layer_arn = body(&call(
        &api,
        "GET",
        &format!(
            "/2018-10-31/layers/{}/versions/2",
            layer_arn("common").replace(':', "%3A")
        ),
        None,
    ));
    assert_eq!(by_layer_arn, v2);

    let list = body(&call(&api, "GET", "/2018-10-31/layers", None));
    let layers = list["Layers"].as_array().unwrap();
    assert_eq!(layers.len(), 2);
    assert_eq!(layers[0]["LayerName"], "common");
    assert_eq!(layers[0]["LayerArn"], layer_arn("common"));
    assert_eq!(layers[0]["LatestMatchingVersion"]["Version"], 2);
    assert_eq!(
        layers[0]["LatestMatchingVersion"]["LayerVersionArn"],
        format!("{}:2", layer_arn("common"))
    );
    // A filter gives the latest version that matches.
    let list = body(&call(
        &api,
        "GET",
        "/2018-10-31/layers?CompatibleRuntime=python3.12",
        None,
    ));
    let layers = list["Layers"].as_array().unwrap();
    assert_eq!(layers.len(), 1, "{list}");
    assert_eq!(layers[0]["LatestMatchingVersion"]["Version"], 1);
    let list = body(&call(
        &api,
        "GET",
        "/2018-10-31/layers?CompatibleArchitecture=arm64",
        None,
    ));
    assert!(list["Layers"].as_array().unwrap().is_empty());

    let versions = body(&call(
        &api,
        "GET",
        "/2018-10-31/layers/common/versions",
        None,
    ));
    let vs: Vec<u64> = versions["LayerVersions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["Version"].as_u64().unwrap())
        .collect();
    assert_eq!(vs, [2, 1], "newest first");
}

#[test]
fn layer_lists_page() {
    let (api, _) = open_api();
    for _ in 0..5 {
        publish(&api, "common", json!({}));
    }
    for n in ["a", "b", "c"] {
        publish(&api, n, json!({}));
    }
    let mut seen = Vec::new();
    let mut path = "/2018-10-31/layers/common/versions?MaxItems=2".to_owned();
    loop {
        let page = body(&call(&api, "GET", &path, None));
        seen.extend(
            page["LayerVersions"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v["Version"].as_u64().unwrap()),
        );
        match page.get("NextMarker") {
            Some(m) => {
                path = format!(
                    "/2018-10-31/layers/common/versions?MaxItems=2&Marker={}",
                    m.as_str().unwrap()
                )
            }
            None => break,
        }
    }
    assert_eq!(seen, [5, 4, 3, 2, 1]);
    let page = body(&call(&api, "GET", "/2018-10-31/layers?MaxItems=3", None));
    assert_eq!(page["Layers"].as_array().unwrap().len(), 3);
    let m = page["NextMarker"].as_str().unwrap();
    let rest = body(&call(
        &api,
        "GET",
        &format!("/2018-10-31/layers?MaxItems=3&Marker={m}"),
        None,
    ));
    assert_eq!(rest["Layers"][0]["LayerName"], "common");
    assert!(rest.get("NextMarker").is_none());
    let r = call(&api, "GET", "/2018-10-31/layers?MaxItems=51", None);
    assert_error(
        &r,
        400,
        "InvalidParameterValueException",
        "MaxItems must be from 1 to 50",
    );
}

#[test]
fn layer_errors() {
    let (api, _) = open_api();
    publish(&api, "common", json!({}));
    for (method, path, b, status, code, needle) in [
        (
            "GET",
            "/2018-10-31/layers/common/versions/2",
            None,
            404,
            "ResourceNotFoundException",
            "common:2 does not exist",
        ),
        (
            "GET",
            "/2018-10-31/layers/none/versions/1",
            None,
            404,
            "ResourceNotFoundException",
            "none:1 does not exist",
        ),
        (
            "GET",
            "/2018-10-31/layers/none/versions",
            None,
            404,
            "ResourceNotFoundException",
            "Layer none does not exist",
        ),
        (
            "GET",
            "/2018-10-31/layers/common/versions/0",
            None,
            400,
            "InvalidParameterValueException",
            "VersionNumber must be a number from 1",
        ),
        (
            "GET",
            "/2018-10-31/layers?find=LayerVersion&Arn=common",
            None,
            400,
            "InvalidParameterValueException",
            "is not a layer version ARN",
        ),
        (
            "GET",
            "/2018-10-31/layers?find=LayerVersion",
            None,
            400,
            "InvalidParameterValueException",
            "Arn is required",
        ),
        (
            "POST",
            "/2018-10-31/layers/common/versions",
            Some(json!({})),
            400,
            "InvalidParameterValueException",
            "Content is required",
        ),
        (
            "POST",
            "/2018-10-31/layers/common/versions",
            Some(json!({"Content": {"S3Bucket": "b"}})),
            400,
            "InvalidParameterValueException",
            "Content.S3Bucket is not supported",
        ),
        (
            "POST",
            "/2018-10-31/layers/common/versions",
            Some(json!({"Content": {"ZipFile": "QkFEIGFyY2hpdmU="}})),
            400,
            "InvalidParameterValueException",
            "entry \"../x\"",
        ),
        (
            "POST",
            "/2018-10-31/layers/common/versions",
            Some(json!({"Content": {"ZipFile": ZIP_B64}, "CompatibleRuntimes": ["nodejs20.x"]})),
            400,
            "InvalidParameterValueException",
            "nodejs20.x",
        ),
        (
            "POST",
            "/2018-10-31/layers/common/versions",
            Some(json!({"Content": {"ZipFile": ZIP_B64}, "LicenseInfo": "MIT"})),
            400,
            "InvalidParameterValueException",
            "LicenseInfo is not supported",
        ),
        (
            "POST",
            "/2018-10-31/layers/common/versions",
            Some(json!({"Content": {"ZipFile": ZIP_B64}, "CompatibleArchitectures": ["arm64"]})),
            400,
            "InvalidParameterValueException",
            "x86_64 only",
        ),
        (
            "POST",
            "/2018-10-31/layers/bad.name/versions",
            Some(json!({"Content": {"ZipFile": ZIP_B64}})),
            400,
            "InvalidParameterValueException",
            "LayerName \"bad.name\"",
        ),
    ] {
        let r = call(&api, method, path, b);
        assert_error(&r, status, code, needle);
    }
    // Nothing was published by the refused calls.
    let versions = body(&call(
        &api,
        "GET",
        "/2018-10-31/layers/common/versions",
        None,
    ));
    assert_eq!(versions["LayerVersions"].as_array().unwrap().len(), 1);
}

#[test]
fn functions_report_their_layers_with_code_sizes() {
    let (api, _) = open_api();
    publish(&api, "common", json!({}));
    publish(&api, "common", json!({}));
    let c = create(
        &api,
        "hello",
        json!({"Layers": [format!("{}:1", layer_arn("common"))]}),
    );
    assert_eq!(
        c["Layers"],
        json!([{"Arn": format!("{}:1", layer_arn("common")), "CodeSize": 22}])
    );
    let r = call(
        &api,
        "POST",
        "/2015-03-31/functions",
        Some(create_body(
            "x",
            json!({"Layers": [format!("{}:9", layer_arn("common"))]}),
        )),
    );
    assert_error(
        &r,
        400,
        "InvalidParameterValueException",
        "layer common:9 does not exist",
    );
    let r = call(
        &api,
        "POST",
        "/2015-03-31/functions",
        Some(create_body(
            "x",
            json!({"Layers": ["arn:aws:lambda:eu-west-1:123456789012:layer:common:1"]}),
        )),
    );
    assert_error(
        &r,
        400,
        "InvalidParameterValueException",
        "region \"eu-west-1\"",
    );
    // Listed functions too.
    let list = body(&call(&api, "GET", "/2015-03-31/functions", None));
    assert_eq!(list["Functions"][0]["Layers"][0]["CodeSize"], 22);
}
