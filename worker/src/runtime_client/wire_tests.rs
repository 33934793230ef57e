//! Cross-language tests of the call protocol and of how `runtime.py` loads and calls entries,
//! without root: the host's `python3` runs `cluster-template/runtime/runtime.py` (imported, its
//! handler directory a temporary one) on a listening socket, and the worker's own client calls
//! it.

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

use super::{call, call_reporting, Call, Deadline, Reply, RequestId, CALL_PROTOCOL, INIT_REPORT};

const RUNTIME_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../cluster-template/runtime");

/// Serves the listening socket on stdin as the runtime serves fd 3, with the handler directory
/// and the compatibility modules given as arguments.
const DRIVER: &str = r#"
import sys
sys.path.insert(0, sys.argv[1])
import _socket
import runtime
runtime.HANDLER_DIR = sys.argv[2]
runtime.COMPAT_DIR = sys.argv[1] + "/compat"
runtime.serve(_socket.socket(fileno=0), runtime.load_entry(runtime.env_packages()))
"#;

/// True if the host has a `python3`; otherwise says why the test skips.
pub(super) fn have_python(test: &str) -> bool {
    let ok = Command::new("python3")
        .args(["-c", "pass"])
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        eprintln!("skipping {test}: no python3 on this host");
    }
    ok
}

/// One runtime process serving one function's code.
pub(super) struct Runtime {
    child: Child,
    conn: UnixStream,
    dir: tempfile::TempDir,
}

impl Drop for Runtime {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Runtime {
    /// A runtime for the function whose files are `files` (path, text), with `env` (`{dir}` in
    /// a value is the temporary directory).
    pub(super) async fn start(files: &[(&str, &str)], env: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let handler = dir.path().join("handler");
        for (path, text) in files {
            let p = handler.join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        }
        std::fs::create_dir_all(&handler).unwrap();
        std::fs::create_dir_all(dir.path().join("host")).unwrap();
        std::fs::write(dir.path().join("driver.py"), DRIVER).unwrap();
        let sock = dir.path().join("server_pipe");
        let listener = std::os::unix::net::UnixListener::bind(&sock).expect("bind");
        let stderr = std::fs::File::create(dir.path().join("stderr")).unwrap();
        let root = dir.path().display().to_string();
        let mut cmd = Command::new("python3");
        cmd.args(["-B", "-S", "-E"])
            .arg(dir.path().join("driver.py"))
            .arg(RUNTIME_DIR)
            .arg(&handler)
            .current_dir(dir.path().join("host"))
            .env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .stdin(Stdio::from(OwnedFd::from(listener)))
            .stdout(Stdio::null())
            .stderr(Stdio::from(stderr));
        for (k, v) in env {
            cmd.env(k, v.replace("{dir}", &root));
        }
        let child = cmd.spawn().expect("python3 runs");
        let conn = UnixStream::connect(&sock).await.expect("connect");
        Self { child, conn, dir }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub(super) fn stderr(&self) -> String {
        std::fs::read_to_string(self.path("stderr")).unwrap_or_default()
    }

    /// One call with `id`, a deadline `timeout` away: (kind, JSON).
    pub(super) async fn call_with(
        &mut self,
        id: &RequestId,
        timeout: Duration,
        event: &str,
    ) -> (u8, Value) {
        let c = Call {
            request_id: id,
            deadline: Deadline::after(timeout),
        };
        let reply = tokio::time::timeout(
            Duration::from_secs(10),
            call(&mut self.conn, &c, event.as_bytes()),
        )
        .await
        .unwrap_or_else(|_| panic!("no answer; stderr: {}", self.stderr()))
        .unwrap_or_else(|e| panic!("{e}; stderr: {}", self.stderr()));
        let (kind, body) = match reply {
            Reply::Ok(b) => (0, b),
            Reply::HandlerError(b) => (1, b),
            Reply::RequestError(b) => (2, b),
        };
        let value = serde_json::from_slice(&body)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&body)));
        (kind, value)
    }

    async fn call(&mut self, event: &str) -> (u8, Value) {
        self.call_with(&RequestId::new(), Duration::from_secs(5), event)
            .await
    }
}

/// The answer of a call that must succeed.
fn ok((kind, value): (u8, Value)) -> Value {
    assert_eq!(kind, 0, "{value}");
    value
}

#[tokio::test]
async fn the_default_entry_takes_the_event_alone() {
    if !have_python("the_default_entry_takes_the_event_alone") {
        return;
    }
    let mut rt = Runtime::start(
        &[(
            "lambda_func.py",
            "import sys\ndef handler(event):\n    return {'n': event['n'] * 2, 'loaded': sorted(m for m in ('asyncio', 'inspect', 'runtime_extras') if m in sys.modules)}\n",
        )],
        &[],
    )
    .await;
    let v = ok(rt.call(r#"{"n": 21}"#).await);
    // Nothing a plain handler does not need was imported for it.
    assert_eq!(v, json!({"n": 42, "loaded": []}));
}

#[tokio::test]
async fn an_aws_entry_gets_the_context_aws_gives() {
    if !have_python("an_aws_entry_gets_the_context_aws_gives") {
        return;
    }
    let source = r#"import os
GREETING = os.environ["GREETING"]

def handler(event, context):
    return {
        "greeting": GREETING,
        "function_name": context.function_name,
        "function_version": context.function_version,
        "memory_limit_in_mb": context.memory_limit_in_mb,
        "aws_request_id": context.aws_request_id,
        "invoked_function_arn": context.invoked_function_arn,
        "log_group_name": context.log_group_name,
        "log_stream_name": context.log_stream_name,
        "remaining": context.get_remaining_time_in_millis(),
        "identity": [context.identity.cognito_identity_id, context.identity.cognito_identity_pool_id],
        "client_context": context.client_context,
    }
"#;
    let arn = "arn:aws:lambda:eu-west-1:123456789012:function:hello";
    let mut rt = Runtime::start(
        &[("app.py", source)],
        &[
            ("_HANDLER", "app.handler"),
            ("GREETING", "hi"),
            ("AWS_LAMBDA_FUNCTION_NAME", "hello"),
            ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST"),
            ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256"),
            ("AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/hello"),
            ("AWS_LAMBDA_LOG_STREAM_NAME", "2025/01/02/[$LATEST]abc"),
            ("LAMBDA_FUNCTION_ARN", arn),
        ],
    )
    .await;
    let (a, b) = (RequestId::new(), RequestId::new());
    let first = ok(rt.call_with(&a, Duration::from_secs(3), "{}").await);
    let second = ok(rt.call_with(&b, Duration::from_millis(800), "{}").await);
    assert_eq!(first["aws_request_id"], a.to_string());
    assert_eq!(second["aws_request_id"], b.to_string());
    assert_eq!(
        (&first["greeting"], &first["function_name"]),
        (&json!("hi"), &json!("hello"))
    );
    assert_eq!(first["function_version"], "$LATEST");
    assert_eq!(
        first["memory_limit_in_mb"], "256",
        "a string, as AWS gives it"
    );
    assert_eq!(first["invoked_function_arn"], arn);
    assert_eq!(first["log_group_name"], "/aws/lambda/hello");
    assert_eq!(first["log_stream_name"], "2025/01/02/[$LATEST]abc");
    assert_eq!(first["identity"], json!([null, null]));
    assert_eq!(first["client_context"], Value::Null);
    let left = |v: &Value| v["remaining"].as_i64().unwrap();
    assert!(left(&first) > 2000 && left(&first) <= 3000, "{first}");
    assert!(left(&second) > 0 && left(&second) <= 800, "{second}");
}

#[tokio::test]
async fn the_parameters_decide_whether_a_context_is_passed() {
    if !have_python("the_parameters_decide_whether_a_context_is_passed") {
        return;
    }
    let source = r#"import functools

def one(event):
    return "event"

def two(event, context):
    return "event, context"

def optional(event, context=None):
    return "context" if context is not None else "no context"

def star(*args):
    return len(args)

def keyword_default(event, *, verbose=False):
    return "event"

class Callable:
    def __call__(self, event, context):
        return "event, context"

    def method(self, event):
        return "event"

instance = Callable()
bound = instance.method

def logged(fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        return fn(*args, **kwargs)
    return wrapper

wrapped = logged(one)
partial = functools.partial(two, "fixed")

def keyword_only(event, *, flag):
    return None

def nothing():
    return None

def three(a, b, c):
    return None

not_callable = 42
"#;
    let cases = [
        ("one", Ok(json!("event"))),
        ("two", Ok(json!("event, context"))),
        ("optional", Ok(json!("context"))),
        ("star", Ok(json!(2))),
        ("keyword_default", Ok(json!("event"))),
        ("instance", Ok(json!("event, context"))),
        ("bound", Ok(json!("event"))),
        ("wrapped", Ok(json!("event"))),
        ("partial", Ok(json!("event, context"))),
        (
            "keyword_only",
            Err((
                "TypeError",
                "keyword-only parameters without a default (flag)",
            )),
        ),
        (
            "nothing",
            Err(("TypeError", "takes no positional argument")),
        ),
        ("three", Err(("TypeError", "takes 3 positional arguments"))),
        (
            "not_callable",
            Err(("AttributeError", "defines no callable not_callable")),
        ),
        (
            "absent",
            Err(("AttributeError", "defines no callable absent")),
        ),
    ];
    for (function, expected) in cases {
        let entry = format!("entries.{function}");
        let mut rt = Runtime::start(&[("entries.py", source)], &[("_HANDLER", &entry)]).await;
        let (kind, value) = rt.call("{}").await;
        match expected {
            Ok(want) => assert_eq!((kind, &value), (0, &want), "{entry}"),
            Err((kind_name, needle)) => {
                assert_eq!(kind, 1, "{entry}: {value}");
                assert_eq!(value["type"], kind_name, "{entry}: {value}");
                let message = value["message"].as_str().unwrap();
                assert!(message.contains(needle), "{entry}: {message}");
                assert!(message.contains(&entry), "{entry}: {message}");
            }
        }
    }
}

#[tokio::test]
async fn an_async_entry_is_awaited_on_one_loop_kept_across_calls() {
    if !have_python("an_async_entry_is_awaited_on_one_loop_kept_across_calls") {
        return;
    }
    let source = r#"import asyncio

LOOPS = []
LOCK = None

async def handler(event):
    global LOCK
    if LOCK is None:
        LOCK = asyncio.Lock()  # bound to the loop of the first call
    async with LOCK:
        await asyncio.sleep(0.001)
    LOOPS.append(id(asyncio.get_running_loop()))
    return {"calls": len(LOOPS), "loops": len(set(LOOPS))}
"#;
    let mut rt = Runtime::start(&[("lambda_func.py", source)], &[]).await;
    for n in 1..=3 {
        let v = ok(rt.call("{}").await);
        assert_eq!(v, json!({"calls": n, "loops": 1}));
    }
}

#[tokio::test]
async fn lunas_entry_gets_a_request_whose_json_is_the_event() {
    if !have_python("lunas_entry_gets_a_request_whose_json_is_the_event") {
        return;
    }
    let source = r#"from luna_lambda_tools import StandaloneLambdaRequest

async def main(request: StandaloneLambdaRequest) -> dict:
    assert isinstance(request, StandaloneLambdaRequest), type(request)
    return {"result": request.json["data"]}
"#;
    let mut rt = Runtime::start(
        &[("lambda_main.py", source)],
        &[("_HANDLER", "lambda_main.main")],
    )
    .await;
    let v = ok(rt.call(r#"{"data": [1, "two"]}"#).await);
    assert_eq!(v, json!({"result": [1, "two"]}));
}

#[tokio::test]
async fn sys_path_has_the_code_then_layers_then_pythonpath_and_compat_last() {
    if !have_python("sys_path_has_the_code_then_layers_then_pythonpath_and_compat_last") {
        return;
    }
    let source = r#"import sys
import from_layer_one, from_layer_two, from_pythonpath, shadowed

def run(event, context):
    return {"path": sys.path, "shadowed": shadowed.WHERE}
"#;
    let mut rt = Runtime::start(
        &[("pkg/__init__.py", ""), ("pkg/app.py", source)],
        &[
            ("_HANDLER", "pkg.app.run"),
            ("LAMBDA_LAYERS", "{dir}/l1:{dir}/l2"),
            ("PYTHONPATH", "{dir}/pp::rel"),
        ],
    )
    .await;
    for (dir, module, text) in [
        ("l1", "from_layer_one", ""),
        ("l1", "shadowed", "WHERE = 'l1'"),
        ("l2", "from_layer_two", ""),
        ("l2", "shadowed", "WHERE = 'l2'"),
        ("pp", "from_pythonpath", ""),
        ("pp", "shadowed", "WHERE = 'pp'"),
    ] {
        std::fs::create_dir_all(rt.path(dir)).unwrap();
        std::fs::write(rt.path(&format!("{dir}/{module}.py")), text).unwrap();
    }
    let v = ok(rt.call("{}").await);
    assert_eq!(v["shadowed"], "l1", "the first layer comes first");
    let path: Vec<&str> = v["path"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let at = |p: &Path| p.display().to_string();
    assert_eq!(
        path[..5],
        [
            at(&rt.path("handler")),
            at(&rt.path("l1")),
            at(&rt.path("l2")),
            at(&rt.path("pp")),
            at(&rt.path("host/rel")),
        ],
        "{v}"
    );
    assert_eq!(
        path.last().copied(),
        Some(&*format!("{RUNTIME_DIR}/compat"))
    );
}

#[tokio::test]
async fn a_missing_entry_module_names_itself_and_where_it_was_looked_for() {
    if !have_python("a_missing_entry_module_names_itself_and_where_it_was_looked_for") {
        return;
    }
    let mut rt = Runtime::start(
        &[("lambda_func.py", "")],
        &[("_HANDLER", "shop.orders.handler")],
    )
    .await;
    let handler = rt.path("handler").display().to_string();
    for _ in 0..2 {
        let (kind, v) = rt.call("{}").await;
        assert_eq!(
            (kind, &v["type"]),
            (1, &json!("ModuleNotFoundError")),
            "{v}"
        );
        let message = v["message"].as_str().unwrap();
        assert!(
            message.contains("entry shop.orders.handler: no module shop.orders"),
            "{message}"
        );
        assert!(
            message.contains(&format!("{handler}/shop/orders.py")),
            "{message}"
        );
    }
    // A module the entry's module imports is that module's own error.
    let mut rt = Runtime::start(&[("lambda_func.py", "import not_installed\n")], &[]).await;
    let (kind, v) = rt.call("{}").await;
    assert_eq!(kind, 1, "{v}");
    assert_eq!(v["message"], "No module named 'not_installed'");
}

#[tokio::test]
async fn a_request_of_another_protocol_or_not_json_is_refused_and_the_runtime_serves_on() {
    if !have_python(
        "a_request_of_another_protocol_or_not_json_is_refused_and_the_runtime_serves_on",
    ) {
        return;
    }
    let mut rt = Runtime::start(
        &[("lambda_func.py", "def handler(event):\n    return event\n")],
        &[],
    )
    .await;
    // A frame of protocol 1 (an event with no header), as an older worker wrote it.
    let event = br#"{"a": 1}"#;
    let mut frame = (event.len() as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(event);
    rt.conn.write_all(&frame).await.unwrap();
    let mut head = [0u8; 5];
    // Before the first answer, once: the init report, 8 bytes of nanoseconds.
    rt.conn.read_exact(&mut head).await.unwrap();
    assert_eq!(head, [INIT_REPORT, 0, 0, 0, 8]);
    let mut ns = [0u8; 8];
    rt.conn.read_exact(&mut ns).await.unwrap();
    assert!(u64::from_be_bytes(ns) > 0);
    rt.conn.read_exact(&mut head).await.unwrap();
    let mut body = vec![0u8; u32::from_be_bytes(head[1..].try_into().unwrap()) as usize];
    rt.conn.read_exact(&mut body).await.unwrap();
    assert_eq!(head[0], 2);
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert!(
        v["message"].as_str().unwrap().contains(&format!(
            "call protocol 123, but this runtime speaks {CALL_PROTOCOL}"
        )),
        "{v}"
    );
    let (kind, v) = rt.call("{not json").await;
    assert_eq!(kind, 2, "{v}");
    assert!(v["message"].as_str().unwrap().contains("not valid JSON"));
    assert_eq!(ok(rt.call(r#"{"b": 2}"#).await), json!({"b": 2}));
}

#[tokio::test]
async fn the_first_answer_comes_after_an_init_report_of_the_entrys_load() {
    if !have_python("the_first_answer_comes_after_an_init_report_of_the_entrys_load") {
        return;
    }
    let mut rt = Runtime::start(
        &[(
            "lambda_func.py",
            "import time\ntime.sleep(0.2)\n\ndef handler(event):\n    print('printed')\n    return event\n",
        )],
        &[],
    )
    .await;
    let id = RequestId::new();
    let c = Call {
        request_id: &id,
        deadline: Deadline::after(Duration::from_secs(5)),
    };
    let mut init = None;
    let reply = call_reporting(&mut rt.conn, &c, b"{}", &mut init)
        .await
        .unwrap();
    assert!(matches!(reply, Reply::Ok(_)), "{reply:?}");
    let load = init.expect("an init report before the first answer");
    assert!(
        load >= Duration::from_millis(200) && load < Duration::from_secs(5),
        "{load:?}"
    );
    let mut again = None;
    call_reporting(&mut rt.conn, &c, b"{}", &mut again)
        .await
        .unwrap();
    assert_eq!(again, None, "once per sandbox");
}
