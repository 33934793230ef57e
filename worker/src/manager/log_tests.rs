//! The function logs as the manager writes them, against the fake backend (whose sandboxes
//! print into a real pipe): attribution to the call's request id, output between calls, AWS's
//! lines (Init Duration on the cold call only), the error and timeout lines, the per-call cap,
//! the log tail and the report. No root needed.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use super::fake::FAKE_LOAD;
use super::tests::{harness, Harness};
use super::*;
use crate::logs::store::{self, Stored};

impl Harness {
    async fn invoke(&self, name: &str, id: &str, tail: bool) -> Invoked {
        let name = LambdaName::parse(name).unwrap();
        let options = InvokeOptions {
            tail,
            ..InvokeOptions::default()
        };
        self.manager
            .invoke(
                &name,
                Bytes::from_static(b"{}"),
                &RequestId::given(id).unwrap(),
                options,
            )
            .await
    }

    /// What the worker stored for `name`, once everything sent is written.
    async fn stored(&self, name: &str) -> Vec<Stored> {
        let m = Arc::clone(&self.manager);
        let flushed =
            tokio::task::spawn_blocking(move || m.logs().flush_blocking(Duration::from_secs(10)))
                .await
                .unwrap();
        assert!(flushed);
        let dir = self.tmp.path().join("worker/function-logs").join(name);
        store::read_function(&dir).unwrap()
    }
}

fn of<'a>(lines: &'a [Stored], id: &str) -> Vec<&'a str> {
    lines
        .iter()
        .filter(|l| l.request_id == id)
        .map(|l| l.text.as_str())
        .collect()
}

/// The Init Duration of a REPORT line, in ms, if it has one.
fn init_ms(report: &str) -> Option<f64> {
    let (_, rest) = report.split_once("Init Duration: ")?;
    rest.trim_end_matches(" ms").parse().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_a_call_prints_lands_under_its_request_id_between_awss_lines() {
    let h = harness(|_| {});
    h.add("printer", "print 4");
    let cold = h.invoke("printer", "cold-1", false).await;
    assert!(cold.result.is_ok(), "{:?}", cold.result);
    let warm = h.invoke("printer", "warm-2", false).await;
    assert!(warm.result.is_ok());
    let lines = h.stored("printer").await;
    let first = of(&lines, "cold-1");
    assert_eq!(first.len(), 7, "{first:?}");
    assert_eq!(first[0], "START RequestId: cold-1 Version: $LATEST");
    assert_eq!(
        &first[1..5],
        [
            "line 0 of cold-1",
            "line 1 of cold-1",
            "line 2 of cold-1",
            "line 3 of cold-1"
        ]
    );
    assert_eq!(first[5], "END RequestId: cold-1");
    let report = first[6];
    assert!(
        report.starts_with("REPORT RequestId: cold-1\tDuration: ")
            && report.contains("\tBilled Duration: ")
            && report.contains("\tMemory Size: 256 MB"),
        "{report}"
    );
    // The cold call's Init Duration: the start and the runtime's 5 ms load, as the report says.
    let init = init_ms(report).expect("Init Duration on the cold call");
    assert!(init >= FAKE_LOAD.as_secs_f64() * 1e3, "{report}");
    let reported = cold.report.init.expect("the report has it too");
    assert!(reported >= FAKE_LOAD);
    assert!(
        (reported.as_secs_f64() * 1e3 - init).abs() < 0.01,
        "{report}"
    );
    let second = of(&lines, "warm-2");
    assert_eq!(second.len(), 7, "{second:?}");
    assert_eq!(init_ms(second[6]), None, "no Init Duration on a warm call");
    assert_eq!(warm.report.init, None);
    // No tail asked for: none kept, no peak measured on the request's path.
    assert_eq!(cold.report.log_tail, None);
    assert_eq!(cold.report.max_memory_used_mb, None);
    assert_eq!(cold.report.memory_mb, 256);
    assert!(cold.report.duration > Duration::ZERO);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_between_calls_is_logged_without_a_request_id() {
    let h = harness(|_| {});
    h.add("bg", "after");
    assert!(h.invoke("bg", "a-1", false).await.result.is_ok());
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(h.invoke("bg", "a-2", false).await.result.is_ok());
    let lines = h.stored("bg").await;
    let pos = |text: &str| lines.iter().position(|l| l.text.starts_with(text)).unwrap();
    let between = pos("after a-1");
    assert_eq!(lines[between].request_id, "-");
    assert!(between > pos("REPORT RequestId: a-1\t"), "{lines:?}");
    assert!(
        between < pos("START RequestId: a-2 Version: $LATEST"),
        "{lines:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unhandled_error_a_timeout_and_a_crash_are_logged_as_aws_logs_them() {
    let h = harness(|_| {});
    h.add("raiser", "raise");
    let raised = h.invoke("raiser", "e-1", true).await;
    assert!(matches!(raised.result, Err(RunError::HandlerRaised { .. })));
    let lines = h.stored("raiser").await;
    let texts = of(&lines, "e-1");
    assert_eq!(
        &texts[1..4],
        [
            "[ERROR] ValueError: boom",
            "Traceback: boom",
            "END RequestId: e-1"
        ],
        "{texts:?}"
    );
    let tail = raised.report.log_tail.expect("the tail of a failed call");
    assert!(
        tail.contains("[ERROR] ValueError: boom\nTraceback: boom\nEND"),
        "{tail}"
    );

    h.add("hung", "hang");
    h.add_file("hung", "lambda.json", r#"{"timeout_s": 1}"#);
    let timed_out = h.invoke("hung", "t-1", false).await;
    assert!(matches!(timed_out.result, Err(RunError::Timeout { .. })));
    let lines = h.stored("hung").await;
    let texts = of(&lines, "t-1");
    assert!(
        texts[1].ends_with(" t-1 Task timed out after 1.00 seconds") && texts[1].contains('Z'),
        "{texts:?}"
    );
    assert!(
        texts[3].starts_with("REPORT RequestId: t-1\tDuration: 1"),
        "{texts:?}"
    );

    h.add("crash", "die");
    let crashed = h.invoke("crash", "c-1", false).await;
    assert!(matches!(
        crashed.result,
        Err(RunError::SandboxFailed { .. })
    ));
    let lines = h.stored("crash").await;
    let texts = of(&lines, "c-1");
    assert_eq!(texts[1], "Traceback: fake crash", "{texts:?}");
    assert!(texts[2].starts_with("RequestId: c-1 Error: Runtime exited without an answer"));
    assert_eq!(texts[3], "Runtime.ExitError");
    assert_eq!(texts[4], "END RequestId: c-1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_printing_past_its_cap_answers_and_its_log_is_cut() {
    let h = harness(|c| c.function_log_call_bytes = 20_000);
    // 2 MiB: thirty-two times what the pipe holds.
    h.add("chatty", "chatty 2097152");
    let r = h.invoke("chatty", "big-1", false).await;
    assert!(r.result.is_ok(), "{:?}", r.result);
    let lines = h.stored("chatty").await;
    let kept: usize = of(&lines, "big-1")
        .iter()
        .filter(|t| t.starts_with('y'))
        .map(|t| t.len() + 1)
        .sum();
    assert!((20_000..=20_001).contains(&kept), "{kept}");
    let dropped = of(&lines, "big-1")
        .into_iter()
        .find(|t| t.contains("were dropped"))
        .expect("the dropped-bytes line");
    assert!(
        dropped.contains(&format!("{} bytes", 2_097_152 - 20_000)),
        "{dropped}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tail_and_the_peak_memory_come_back_when_asked_for() {
    let h = harness(|_| {});
    h.fake.record().peak = Some(41 << 20);
    h.add("printer", "print 300");
    let r = h.invoke("printer", "tail-1", true).await;
    assert!(r.result.is_ok());
    assert_eq!(r.report.max_memory_used_mb, Some(41));
    let tail = r.report.log_tail.expect("a tail");
    assert!(tail.len() <= crate::logs::aws::TAIL_BYTES, "{}", tail.len());
    assert!(
        tail.starts_with("line "),
        "cut at a line's start: {tail:.40}"
    );
    assert!(tail.contains("line 299 of tail-1\nEND RequestId: tail-1\nREPORT RequestId: tail-1\t"));
    assert!(
        tail.contains("\tMax Memory Used: 41 MB\tInit Duration: "),
        "{tail}"
    );
    assert!(tail.ends_with(" ms\n"));
    // The stored REPORT line has the same figures.
    let lines = h.stored("printer").await;
    let report = of(&lines, "tail-1").pop().unwrap().to_owned();
    assert!(tail.ends_with(&format!("{report}\n")), "{report}");
    // Without a tail the writer reads the peak itself.
    let r = h.invoke("printer", "tail-2", false).await;
    assert_eq!(r.report.max_memory_used_mb, None);
    let lines = h.stored("printer").await;
    let report = of(&lines, "tail-2").pop().unwrap().to_owned();
    assert!(report.ends_with("\tMax Memory Used: 41 MB"), "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partial_line_ends_with_its_call_and_nothing_is_lost_on_destroy() {
    let h = harness(|c| c.idle_timeout_s = 0);
    h.add("partial", "partial");
    assert!(h.invoke("partial", "p-1", false).await.result.is_ok());
    h.manager
        .reap_idle(std::time::Instant::now() + Duration::from_secs(1));
    h.settle().await;
    let lines = h.stored("partial").await;
    assert_eq!(of(&lines, "p-1")[1], "no newline");
}
