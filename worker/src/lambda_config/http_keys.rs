//! The `lambda.json` keys of HTTP functions: `type` (what the entry is), `payload_format` (the
//! shape of the event a handler gets for an HTTP request) and `triggers.http.methods` (the
//! methods `/run/<name>` takes).

use serde_json::{json, Value};

use super::KeyError;

/// What a function's entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum EntryType {
    /// A function called with an event (and a context).
    #[default]
    Handler,
    /// A PEP 3333 application, serving HTTP requests at `/run/<name>`.
    Wsgi,
    /// An ASGI 3 application, serving HTTP requests at `/run/<name>`.
    Asgi,
}

impl EntryType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Handler => "handler",
            Self::Wsgi => "wsgi",
            Self::Asgi => "asgi",
        }
    }

    fn parse(key: &str, value: &Value) -> Result<Self, KeyError> {
        match value.as_str() {
            Some("handler") => Ok(Self::Handler),
            Some("wsgi") => Ok(Self::Wsgi),
            Some("asgi") => Ok(Self::Asgi),
            _ => Err(KeyError::new(
                key,
                format!("must be \"handler\", \"wsgi\" or \"asgi\", not {value}"),
            )),
        }
    }
}

/// The API Gateway payload format of the event an HTTP request becomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum PayloadFormat {
    /// REST APIs' Lambda proxy event (`httpMethod`, `multiValueHeaders`, ...).
    V1,
    /// HTTP APIs' event (`routeKey`, `rawPath`, `requestContext.http`, ...), the default.
    #[default]
    V2,
}

impl PayloadFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::V1 => "1.0",
            Self::V2 => "2.0",
        }
    }

    fn parse(key: &str, value: &Value) -> Result<Self, KeyError> {
        match value.as_str() {
            Some("1.0") => Ok(Self::V1),
            Some("2.0") => Ok(Self::V2),
            _ => Err(KeyError::new(
                key,
                format!("must be \"1.0\" or \"2.0\", not {value}"),
            )),
        }
    }
}

/// Most methods `triggers.http.methods` may list.
const MAX_METHODS: usize = 16;
/// Longest method name.
const MAX_METHOD_LEN: usize = 32;

/// `triggers`: `{"http": {"methods": ["GET", "POST"]}}`. Methods are HTTP tokens, taken in
/// upper case; `"*"` or `"ANY"` (API Gateway's word) is every method.
pub(crate) fn parse_triggers(key: &str, value: &Value) -> Result<Vec<String>, KeyError> {
    let shape = "must be {\"http\": {\"methods\": [\"GET\", ...]}}";
    let Value::Object(triggers) = value else {
        return Err(KeyError::new(key, format!("{shape}, not {value}")));
    };
    if let Some(other) = triggers.keys().find(|k| *k != "http") {
        return Err(KeyError::new(
            key,
            format!("unknown trigger {other:?} (known: http)"),
        ));
    }
    let Some(http) = triggers.get("http") else {
        return Err(KeyError::new(key, format!("{shape}: \"http\" is missing")));
    };
    let Value::Object(http) = http else {
        return Err(KeyError::new(key, format!("{shape}, not {value}")));
    };
    if let Some(other) = http.keys().find(|k| *k != "methods") {
        return Err(KeyError::new(
            key,
            format!("unknown key {other:?} of http (known: methods)"),
        ));
    }
    let Some(Value::Array(items)) = http.get("methods") else {
        return Err(KeyError::new(
            key,
            format!("{shape}: http.methods must be a list"),
        ));
    };
    if items.is_empty() || items.len() > MAX_METHODS {
        return Err(KeyError::new(
            key,
            format!("http.methods must list 1 to {MAX_METHODS} methods"),
        ));
    }
    let mut methods: Vec<String> = Vec::with_capacity(items.len());
    for item in items {
        let Some(raw) = item.as_str() else {
            return Err(KeyError::new(
                key,
                format!("http.methods: {item} is not a string"),
            ));
        };
        let method = match raw.to_ascii_uppercase() {
            m if m == "ANY" => "*".to_owned(),
            m => m,
        };
        let token = method == "*"
            || (!method.is_empty()
                && method.len() <= MAX_METHOD_LEN
                && method
                    .bytes()
                    .all(|b| b.is_ascii_uppercase() || b == b'-' || b == b'_'));
        if !token {
            return Err(KeyError::new(
                key,
                format!("http.methods: {raw:?} is not an HTTP method"),
            ));
        }
        if methods.contains(&method) {
            return Err(KeyError::new(
                key,
                format!("http.methods: {raw:?} is listed twice"),
            ));
        }
        methods.push(method);
    }
    Ok(methods)
}

pub(crate) fn triggers_value(methods: &[String]) -> Value {
    json!({"http": {"methods": methods}})
}

pub(crate) fn parse_type(key: &str, value: &Value) -> Result<EntryType, KeyError> {
    EntryType::parse(key, value)
}

pub(crate) fn parse_payload_format(key: &str, value: &Value) -> Result<PayloadFormat, KeyError> {
    PayloadFormat::parse(key, value)
}

/// Whether `/run/<name>` takes `method` under these `triggers.http.methods` (`None`: every
/// method). `HEAD` goes with `GET`, as HTTP servers take it.
pub fn allows(methods: Option<&[String]>, method: &str) -> bool {
    let Some(methods) = methods else {
        return true;
    };
    methods
        .iter()
        .any(|m| m == "*" || m == method || (method == "HEAD" && m == "GET"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn triggers_parse_and_allow() {
        let m = parse_triggers("triggers", &json!({"http": {"methods": ["get", "POST"]}})).unwrap();
        assert_eq!(m, ["GET", "POST"]);
        assert!(allows(Some(&m), "GET"));
        assert!(allows(Some(&m), "HEAD"));
        assert!(!allows(Some(&m), "DELETE"));
        assert!(allows(None, "DELETE"));
        let any = parse_triggers("triggers", &json!({"http": {"methods": ["ANY"]}})).unwrap();
        assert!(allows(Some(&any), "PATCH"));
        for bad in [
            json!([]),
            json!({"sqs": {}}),
            json!({"http": {"methods": []}}),
            json!({"http": {"methods": ["GET", "get"]}}),
            json!({"http": {"methods": ["GE T"]}}),
            json!({"http": {"methods": [1]}}),
            json!({"http": {"verbs": ["GET"]}}),
            json!({"http": []}),
            json!({}),
        ] {
            let e = parse_triggers("triggers", &bad).unwrap_err();
            assert_eq!(e.key.as_deref(), Some("triggers"), "{bad}");
        }
    }

    #[test]
    fn type_and_payload_format() {
        assert_eq!(parse_type("type", &json!("wsgi")).unwrap(), EntryType::Wsgi);
        assert_eq!(parse_type("type", &json!("asgi")).unwrap(), EntryType::Asgi);
        assert!(parse_type("type", &json!("cgi")).is_err());
        assert_eq!(
            parse_payload_format("payload_format", &json!("1.0")).unwrap(),
            PayloadFormat::V1
        );
        assert!(parse_payload_format("payload_format", &json!(2.0)).is_err());
    }
}
