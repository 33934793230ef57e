use super::*;

fn parse(text: &str) -> Result<LambdaConfig, KeyError> {
    LambdaConfig::parse(text)
}

#[test]
fn every_new_key_parses_and_round_trips() {
    let c = parse(
        r#"{"entry": "app.main.handler", "runtime": "python3.13", "description": "d",
            "memory_mb": 512, "workers": 8, "environment": {"TORCH_HOME": "/tmp/t", "A_1": ""},
            "layers": ["common", "np:3"], "tags": {"lambdapool": "yes"}}"#,
    )
    .unwrap();
    let entry = c.entry.clone().unwrap();
    assert_eq!(
        (entry.module.as_str(), entry.function.as_str()),
        ("app.main", "handler")
    );
    assert_eq!(entry.module_file(), "app/main.py");
    assert_eq!(c.max_concurrency, Some(8));
    assert_eq!(c.environment.as_ref().unwrap()["TORCH_HOME"], "/tmp/t");
    let layers = c.layers.clone().unwrap();
    assert_eq!(layers[0].to_string(), "common");
    assert_eq!(layers[1].version, Some(3));
    let again = LambdaConfig::parse(&c.to_json_pretty()).unwrap();
    assert_eq!(again, c);
    // `workers` is written as max_concurrency.
    assert!(c.to_value().get("workers").is_none());
    assert_eq!(c.to_value()["max_concurrency"], 8);
    assert_eq!(parse("{}").unwrap(), LambdaConfig::default());
}

#[test]
fn bad_new_values_name_the_key() {
    let big = format!(r#"{{"environment": {{"A": "{}"}}}}"#, "x".repeat(4096));
    let many_tags = format!(
        r#"{{"tags": {{{}}}}}"#,
        (0..51)
            .map(|i| format!("\"t{i}\": \"v\""))
            .collect::<Vec<_>>()
            .join(",")
    );
    for (text, key, needle) in [
        (
            r#"{"entry": "handler"}"#,
            "entry",
            "module.function or module:function",
        ),
        (r#"{"entry": "a-b.c"}"#, "entry", "identifiers"),
        (r#"{"entry": "a..c"}"#, "entry", "identifiers"),
        (r#"{"entry": 3}"#, "entry", "string"),
        (r#"{"runtime": "python2.7"}"#, "runtime", "python3.N"),
        (r#"{"runtime": "nodejs20.x"}"#, "runtime", "python3.N"),
        (r#"{"workers": 33}"#, "workers", "from 1 to 32"),
        (
            r#"{"workers": 2, "max_concurrency": 2}"#,
            "workers",
            "give one",
        ),
        (
            r#"{"environment": {"1A": "x"}}"#,
            "environment",
            "not a valid name",
        ),
        (
            r#"{"environment": {"A-B": "x"}}"#,
            "environment",
            "not a valid name",
        ),
        (
            r#"{"environment": {"A": 1}}"#,
            "environment",
            "must be a string",
        ),
        (
            r#"{"environment": {"LAMBDA_NAME": "x"}}"#,
            "environment",
            "reserved",
        ),
        (
            r#"{"environment": {"AWS_REGION": "x"}}"#,
            "environment",
            "reserved",
        ),
        (
            r#"{"environment": ["A"]}"#,
            "environment",
            "object of strings",
        ),
        (&big, "environment", "more than 4096"),
        (
            r#"{"layers": ["a","b","c","d","e","f"]}"#,
            "layers",
            "at most 5",
        ),
        (r#"{"layers": ["a", "a:2"]}"#, "layers", "twice"),
        (r#"{"layers": ["../x"]}"#, "layers", "letter or digit"),
        (r#"{"layers": ["a/b"]}"#, "layers", "letters, digits"),
        (r#"{"layers": ["a:0"]}"#, "layers", "version"),
        (r#"{"layers": "a"}"#, "layers", "list"),
        (&many_tags, "tags", "at most 50"),
        (r#"{"tags": {"": "v"}}"#, "tags", "1 to 128"),
        (r#"{"description": 5}"#, "description", "string"),
        (r#"{"handler": "a.b"}"#, "handler", "unknown key"),
    ] {
        let e = parse(text).unwrap_err();
        assert_eq!(e.key.as_deref(), Some(key), "{text}: {e}");
        assert!(e.to_string().contains(needle), "{text}: {e}");
    }
}

#[test]
fn over_takes_unset_keys_from_the_base() {
    let base = parse(r#"{"entry": "a.b", "memory_mb": 256, "environment": {"X": "1"}}"#).unwrap();
    let top = parse(r#"{"memory_mb": 512, "tags": {"t": "v"}}"#).unwrap();
    let m = top.over(&base);
    assert_eq!(m.memory_mb, Some(512));
    assert_eq!(m.entry.unwrap().to_string(), "a.b");
    assert_eq!(m.environment.unwrap()["X"], "1");
    assert_eq!(m.tags.unwrap()["t"], "v");
}

#[test]
fn the_default_entry_follows_the_files() {
    let dir = tempfile::tempdir().unwrap();
    let c = LambdaConfig::default();
    assert_eq!(c.entry_in(dir.path()), Entry::default());
    std::fs::write(dir.path().join("lambda_main.py"), "").unwrap();
    assert!(c.entry_in(dir.path()).is_luna());
    std::fs::write(dir.path().join("lambda_func.py"), "").unwrap();
    assert_eq!(c.entry_in(dir.path()), Entry::default());
    let set = parse(r#"{"entry": "app.go"}"#).unwrap();
    assert_eq!(set.entry_in(dir.path()).to_string(), "app.go");
}

#[test]
fn limits_use_the_worker_defaults_for_unset_keys() {
    let cfg = Config::default();
    let l = parse(r#"{"workers": 3}"#).unwrap().limits(&cfg);
    assert_eq!(l.max_concurrency, 3);
    assert_eq!(l.memory_mb, cfg.memory_mb);
}

#[test]
fn event_keys_parse_round_trip_and_default_to_aws() {
    let c = parse(
        r#"{"retry_attempts": 0, "max_event_age_s": 60, "on_success": "sink",
            "on_failure": "arn:aws:lambda:us-east-1:000000000000:function:dlq:$LATEST"}"#,
    )
    .unwrap();
    let events = c.events();
    assert_eq!(events.retry_attempts, 0);
    assert_eq!(events.max_event_age_s, 60);
    assert_eq!(events.on_success.unwrap().as_str(), "sink");
    assert_eq!(events.on_failure.unwrap().as_str(), "dlq");
    assert!(c.has_event_config());
    assert_eq!(LambdaConfig::from_value(&c.to_value()).unwrap(), c);
    assert_eq!(c.to_value()["on_failure"], "dlq");
    let none = parse("{}").unwrap();
    assert!(!none.has_event_config());
    assert_eq!(none.events(), EventConfig::default());
    assert_eq!(EventConfig::default().retry_attempts, 2);
    assert_eq!(EventConfig::default().max_event_age_s, 21_600);
    for (text, key) in [
        (r#"{"retry_attempts": 3}"#, "retry_attempts"),
        (r#"{"max_event_age_s": 59}"#, "max_event_age_s"),
        (r#"{"max_event_age_s": 21601}"#, "max_event_age_s"),
        (r#"{"on_success": "../x"}"#, "on_success"),
        (
            r#"{"on_failure": "arn:aws:sqs:us-east-1:0:q"}"#,
            "on_failure",
        ),
        (r#"{"on_failure": 3}"#, "on_failure"),
    ] {
        let e = parse(text).unwrap_err();
        assert_eq!(e.key.as_deref(), Some(key), "{text}: {e}");
    }
}

#[test]
fn http_function_keys_parse_and_round_trip() {
    let c = parse(
        r#"{"entry": "app:app", "type": "wsgi", "payload_format": "1.0",
            "triggers": {"http": {"methods": ["get", "POST"]}}}"#,
    )
    .unwrap();
    let entry = c.entry.clone().unwrap();
    assert_eq!(
        (entry.module.as_str(), entry.function.as_str()),
        ("app", "app")
    );
    assert_eq!(entry.to_string(), "app:app");
    assert_eq!(entry.module_file(), "app.py");
    assert_eq!(c.entry_type, Some(EntryType::Wsgi));
    assert_eq!(c.payload_format, Some(PayloadFormat::V1));
    assert_eq!(
        c.http_methods.as_deref(),
        Some(&["GET".to_owned(), "POST".to_owned()][..])
    );
    assert_eq!(LambdaConfig::parse(&c.to_json_pretty()).unwrap(), c);
    assert_eq!(
        c.to_value()["triggers"],
        serde_json::json!({"http": {"methods": ["GET", "POST"]}})
    );
    assert_eq!(
        parse(r#"{"entry": "pkg.web:application"}"#)
            .unwrap()
            .entry
            .unwrap()
            .module_file(),
        "pkg/web.py"
    );
    for (text, key) in [
        (r#"{"entry": "app:a:b"}"#, "entry"),
        (r#"{"entry": "app:"}"#, "entry"),
        (r#"{"entry": ":app"}"#, "entry"),
        (r#"{"type": "cgi"}"#, "type"),
        (r#"{"payload_format": "3.0"}"#, "payload_format"),
        (r#"{"triggers": {"http": {"methods": "GET"}}}"#, "triggers"),
    ] {
        let e = parse(text).unwrap_err();
        assert_eq!(e.key.as_deref(), Some(key), "{text}: {e}");
    }
}

#[test]
fn an_app_without_an_entry_runs_app_app() {
    let dir = tempfile::tempdir().unwrap();
    let c = parse(r#"{"type": "asgi"}"#).unwrap();
    assert_eq!(c.entry_in(dir.path()).to_string(), "app:app");
    let handler = parse(r#"{"type": "handler"}"#).unwrap();
    assert_eq!(handler.entry_in(dir.path()), Entry::default());
}

#[test]
fn the_base_key_names_a_base() {
    let c = LambdaConfig::parse(r#"{"base": "pillow"}"#).unwrap();
    assert_eq!(c.base.as_ref().map(|b| b.as_str()), Some("pillow"));
    assert_eq!(LambdaConfig::from_value(&c.to_value()).unwrap(), c);
    for bad in [r#"{"base": "../x"}"#, r#"{"base": ""}"#, r#"{"base": 1}"#] {
        let err = LambdaConfig::parse(bad).unwrap_err();
        assert_eq!(err.key.as_deref(), Some("base"), "{bad}");
    }
}
