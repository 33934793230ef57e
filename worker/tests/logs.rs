//! Handler logs through a real worker (root only): what a handler prints to stdout and stderr,
//! from its own thread, another thread and a subprocess, lands in
//! `<function_logs>/<name>/worker-0.log` under the call's request id (the answer's
//! `x-amzn-RequestId`), between AWS's START, END and REPORT lines, with Init Duration on the
//! cold call only; for a forked and for a fresh sandbox; and nothing is lost when the sandbox
//! is destroyed afterwards.

mod common;

use std::time::{Duration, Instant};

use common::{can_run, TestCluster};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use worker::logs::store::{self, Stored};

const PRINTER: &str = r#"import subprocess, sys, threading

def handler(event):
    n = event["n"]
    print("to stdout", n)
    print("to stderr", n, file=sys.stderr)
    t = threading.Thread(target=lambda: print("from a thread", n))
    t.start()
    t.join()
    subprocess.run(["/bin/sh", "-c", "echo from a subprocess %d; echo its stderr %d >&2" % (n, n)], check=True)
    sys.stdout.write("no newline at the end %d" % n)
    return n
"#;

/// Calls `name` with `body`; the status, body and `x-amzn-RequestId` of the answer.
async fn call(c: &TestCluster, name: &str, body: &str) -> (u16, String, String) {
    let mut s = tokio::net::TcpStream::connect(c.addr).await.unwrap();
    let head = format!(
        "POST /runLambda/{name} HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(body.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.unwrap();
    let text = String::from_utf8_lossy(&buf).into_owned();
    let (head, _) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let id = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("x-amzn-RequestId")
                .then(|| v.trim().to_owned())
        })
        .unwrap_or_default();
    let (status, body) = common::parse_response(&buf);
    (status, body, id)
}

/// The function's stored lines once the REPORT line of `id` is in them (within 10 s).
async fn logged(c: &TestCluster, name: &str, id: &str) -> Vec<Stored> {
    let dir = c.cfg.function_logs().join(name);
    let deadline = Instant::now() + Duration::from_secs(10);
    let report = format!("REPORT RequestId: {id}\t");
    loop {
        let lines = store::read_function(&dir).unwrap();
        if lines.iter().any(|l| l.text.starts_with(&report)) {
            return lines;
        }
        assert!(
            Instant::now() < deadline,
            "no {report:?} in {}",
            dir.display()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn of<'a>(lines: &'a [Stored], id: &str) -> Vec<&'a str> {
    lines
        .iter()
        .filter(|l| l.request_id == id)
        .map(|l| l.text.as_str())
        .collect()
}

/// A cold and a warm call of the printer, checked; the two request ids.
async fn two_calls(c: &TestCluster, name: &str) -> [String; 2] {
    c.add_handler(name, PRINTER);
    let mut ids = Vec::new();
    for n in [1, 2] {
        let (status, body, id) = call(c, name, &format!(r#"{{"n": {n}}}"#)).await;
        assert_eq!((status, body.as_str()), (200, n.to_string().as_str()));
        assert!(!id.is_empty(), "no x-amzn-RequestId");
        let lines = logged(c, name, &id).await;
        let mine = of(&lines, &id);
        assert_eq!(
            mine[0],
            format!("START RequestId: {id} Version: $LATEST"),
            "{mine:#?}"
        );
        for want in [
            format!("to stdout {n}"),
            format!("to stderr {n}"),
            format!("from a thread {n}"),
            format!("from a subprocess {n}"),
            format!("its stderr {n}"),
            format!("no newline at the end {n}"),
        ] {
            assert!(mine.contains(&want.as_str()), "{want:?} not in {mine:#?}");
        }
        // The handler's lines in the order it printed them.
        let at = |t: &str| mine.iter().position(|l| *l == t).unwrap();
        assert!(at(&format!("to stdout {n}")) < at(&format!("to stderr {n}")));
        assert!(at(&format!("from a thread {n}")) < at(&format!("from a subprocess {n}")));
        let end = mine.len() - 2;
        assert_eq!(mine[end], format!("END RequestId: {id}"));
        let report = mine[end + 1];
        assert!(
            report.starts_with(&format!("REPORT RequestId: {id}\tDuration: "))
                && report.contains(" ms\tBilled Duration: ")
                && report.contains("\tMemory Size: 256 MB\tMax Memory Used: "),
            "{report}"
        );
        assert_eq!(
            report.contains("\tInit Duration: "),
            n == 1,
            "Init Duration on the cold call only: {report}"
        );
        ids.push(id);
    }
    [ids[0].clone(), ids[1].clone()]
}

async fn printed_lines_land_in_the_functions_log(patch: &str, forked: bool) {
    let mut c = TestCluster::start(patch).await;
    let ids = two_calls(&c, "printer").await;
    let stats = c.stats().await;
    assert_eq!(
        stats["lambdas"]["printer"]["zygote_starts"],
        u64::from(forked),
        "{stats}"
    );
    let path = c.cfg.function_logs().join("printer/worker-0.log");
    assert!(path.is_file(), "{}", path.display());
    let before = store::read_function(path.parent().unwrap()).unwrap();
    // The sandbox destroyed (the worker stops): nothing of the calls is lost.
    c.shutdown().await;
    let after = store::read_function(path.parent().unwrap()).unwrap();
    for id in &ids {
        assert_eq!(of(&before, id), of(&after, id));
    }
    assert!(after.len() >= before.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn printed_lines_of_a_forked_sandbox_land_in_the_functions_log() {
    if !can_run("printed_lines_of_a_forked_sandbox_land_in_the_functions_log") {
        return;
    }
    printed_lines_land_in_the_functions_log("{}", true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn printed_lines_of_a_fresh_sandbox_land_in_the_functions_log() {
    if !can_run("printed_lines_of_a_fresh_sandbox_land_in_the_functions_log") {
        return;
    }
    printed_lines_land_in_the_functions_log(r#"{"import_cache": false}"#, false).await;
}
