//! The asynchronous queue survives SIGKILL: every event acknowledged by `Committer::enqueue`
//! before the kill is in the store when it is reopened (queued: those that were claimed, running,
//! are put back), three kills in a row on the same file.
//!
//! The child is this test binary run again (`--exact queue_crash_child`) with
//! `QUEUE_CRASH_CHILD_DIR` set: it enqueues events one at a time, claims a few now and then, and
//! prints `ACK <id>` (flushed) after each enqueue returned.

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use worker::config::Config;
use worker::invocations::{
    now_ms, Committer, InvocationId, NewEvent, Queue, QueueLimits, RetryPolicy, Status,
};
use worker::name::LambdaName;

const CHILD_DIR: &str = "QUEUE_CRASH_CHILD_DIR";

fn limits() -> QueueLimits {
    QueueLimits::from_config(&Config::default())
}

/// The child: runs only when the parent starts it, until it is killed (or for 60 s at most).
#[test]
fn queue_crash_child() {
    let Some(dir) = std::env::var_os(CHILD_DIR) else {
        return;
    };
    let (queue, _) = Queue::open(Path::new(&dir), limits()).unwrap();
    let committer = Committer::start(Arc::new(queue)).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let function = LambdaName::parse("crash").unwrap();
    let mut out = std::io::stdout().lock();
    let started = Instant::now();
    for i in 0..100_000u64 {
        if started.elapsed() > Duration::from_secs(60) {
            break;
        }
        let event = NewEvent {
            function: function.clone(),
            payload: format!("{{\"i\":{i}}}").into_bytes(),
            request_id: format!("req-{i}"),
            id: None,
            source: None,
        };
        let inv = rt.block_on(committer.enqueue(event)).unwrap().unwrap();
        writeln!(out, "ACK {}", inv.id).unwrap();
        out.flush().unwrap();
        if i % 25 == 0 {
            let policy = |_: &str| RetryPolicy::aws_default(Duration::from_secs(60));
            let claim = committer.claim(now_ms(), 5, |_| false, policy);
            rt.block_on(claim).unwrap();
        }
    }
}

#[test]
fn acknowledged_events_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let mut acknowledged: Vec<InvocationId> = Vec::new();
    for (round, kill_after) in [200, 300, 400].into_iter().enumerate() {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "queue_crash_child", "--nocapture"])
            .env(CHILD_DIR, dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut this_round = 0;
        let mut killed = false;
        // Lines already written when the kill lands are acknowledgements too: read to the end.
        for line in BufReader::new(stdout).lines() {
            let line = line.unwrap();
            let Some(id) = line.strip_prefix("ACK ") else {
                continue;
            };
            acknowledged.push(InvocationId::parse(id).unwrap());
            this_round += 1;
            if this_round == kill_after && !killed {
                child.kill().unwrap(); // SIGKILL
                killed = true;
            }
        }
        let status = child.wait().unwrap();
        assert!(
            killed,
            "the child ended by itself ({status}) after {this_round} events"
        );
        let (queue, recovered) = Queue::open(dir.path(), limits()).unwrap();
        let counts = queue.counts().unwrap();
        println!(
            "round {}: killed after {this_round} acknowledgements ({} in all); reopened: {recovered:?}; {counts:?}",
            round + 1,
            acknowledged.len()
        );
        let mut missing = Vec::new();
        for id in &acknowledged {
            match queue.get(id).unwrap() {
                Some(inv) => assert_eq!(inv.status, Status::Queued, "{inv:?}"),
                None => missing.push(id.clone()),
            }
        }
        assert!(missing.is_empty(), "acknowledged but lost: {missing:?}");
        let unique: HashSet<&InvocationId> = acknowledged.iter().collect();
        assert_eq!(unique.len(), acknowledged.len());
        assert_eq!(counts.running, 0);
        assert!(counts.queued >= acknowledged.len() as u64);
        // At most the one event in flight at each kill is there unacknowledged.
        let in_flight = round as u64 + 1;
        assert!(
            counts.queued <= acknowledged.len() as u64 + in_flight,
            "{counts:?}"
        );
    }
}
