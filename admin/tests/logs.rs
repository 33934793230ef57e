//! `admin logs` through the real binaries (root only): a worker started with `admin workers`
//! serves calls of handlers that print; `admin logs` prints their lines as `aws logs tail`
//! does, filters by `--request-id` and `--since`, refuses an unknown function, prints nothing
//! for a known one without logs, and with `--follow` shows a running call's first line before
//! the call returns, then exits 0 on SIGINT.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use support::*;

/// `<timestamp> <request id> <text>` lines as (request id, text).
fn parse(out: &str) -> Vec<(String, String)> {
    out.lines()
        .map(|l| {
            let mut parts = l.splitn(3, ' ');
            let ts = parts.next().unwrap_or_default();
            assert!(ts.ends_with('Z') && ts.contains('T'), "{l}");
            let id = parts.next().unwrap_or_default().to_owned();
            (id, parts.next().unwrap_or_default().to_owned())
        })
        .collect()
}

/// `admin logs` of `name` once it shows `reports` REPORT lines (within 10 s).
fn logs_with_reports(flag: &str, name: &str, reports: usize) -> Vec<(String, String)> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let lines = parse(&ok(&["logs", flag, name]));
        if lines
            .iter()
            .filter(|(_, t)| t.starts_with("REPORT "))
            .count()
            >= reports
        {
            return lines;
        }
        assert!(Instant::now() < deadline, "{lines:#?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn add(c: &Cluster, name: &str, source: &str) {
    let dir = c.path(&format!("registry/{name}"));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("lambda_func.py"), source).unwrap();
}

#[test]
fn admin_logs_prints_filters_and_follows() {
    if !can_run("admin_logs_prints_filters_and_follows") {
        return;
    }
    let c = Cluster::new();
    let f = c.flag();
    let port = free_port();
    add(
        &c,
        "talker",
        "import sys\n\ndef handler(event):\n    print('said', event['n'])\n    print('warned', event['n'], file=sys.stderr)\n    return event['n']\n",
    );
    add(
        &c,
        "slow",
        "import time\n\ndef handler(event):\n    print('first')\n    time.sleep(2)\n    print('second')\n    return 'slow done'\n",
    );
    ok(&["workers", &f, &format!("--port={port}")]);

    // An unknown function is an error; a known one without logs prints nothing.
    let err = fails(&["logs", &f, "nosuch"]);
    assert!(err.contains("no function nosuch"), "{err}");
    assert_eq!(ok(&["logs", &f, "talker"]), "");
    let err = fails(&["logs", &f, "talker", "--since", "yesterday"]);
    assert!(err.contains("--since"), "{err}");

    for n in [1, 2] {
        assert_eq!(
            call(port, "talker", &format!(r#"{{"n": {n}}}"#)),
            (200, n.to_string())
        );
    }
    let lines = logs_with_reports(&f, "talker", 2);
    let ids: Vec<String> = lines
        .iter()
        .filter(|(_, t)| t.starts_with("START RequestId: "))
        .map(|(id, _)| id.clone())
        .collect();
    assert_eq!(ids.len(), 2, "{lines:#?}");
    assert_ne!(ids[0], ids[1]);
    let texts = |id: &str, lines: &[(String, String)]| -> Vec<String> {
        lines
            .iter()
            .filter(|(i, _)| i == id)
            .map(|(_, t)| t.clone())
            .collect()
    };
    let first = texts(&ids[0], &lines);
    assert_eq!(
        first[0],
        format!("START RequestId: {} Version: $LATEST", ids[0])
    );
    assert_eq!(first[1..3], ["said 1".to_owned(), "warned 1".to_owned()]);
    assert_eq!(first[3], format!("END RequestId: {}", ids[0]));
    assert!(first[4].starts_with(&format!("REPORT RequestId: {}\tDuration: ", ids[0])));
    assert!(first[4].contains("\tInit Duration: "), "{}", first[4]);

    // --request-id: that invocation's lines only.
    let only = parse(&ok(&["logs", &f, "talker", "--request-id", &ids[1]]));
    assert_eq!(only.len(), 5, "{only:#?}");
    assert!(only.iter().all(|(id, _)| *id == ids[1]));
    assert_eq!(only[1].1, "said 2");
    // --since: a duration or a time.
    assert_eq!(
        parse(&ok(&["logs", &f, "talker", "--since", "1h"])).len(),
        lines.len()
    );
    assert_eq!(
        parse(&ok(&["logs", &f, "talker", "--since=2000-01-01T00:00:00Z"])).len(),
        lines.len()
    );
    assert_eq!(
        ok(&["logs", &f, "talker", "--since", "2999-01-01T00:00:00Z"]),
        ""
    );

    // --follow: the first line of a running call shows before the call returns.
    let mut follower = Command::new(ADMIN)
        .args(["logs", &f, "slow", "--follow"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel();
    let stdout = follower.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    std::thread::sleep(Duration::from_millis(500));
    let caller = std::thread::spawn(move || call(port, "slow", "{}"));
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut seen = Vec::new();
    let wait_for = |text: &str, seen: &mut Vec<String>| loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = rx
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("no {text:?} from the follower: {seen:#?}"));
        seen.push(line.clone());
        if line.ends_with(&format!(" {text}")) {
            return;
        }
    };
    wait_for("first", &mut seen);
    assert!(
        !caller.is_finished(),
        "the line came only after the call returned: {seen:#?}"
    );
    wait_for("second", &mut seen);
    assert_eq!(caller.join().unwrap(), (200, "\"slow done\"".to_owned()));
    let deadline_report = Instant::now() + Duration::from_secs(10);
    while !seen.iter().any(|l| l.contains(" REPORT RequestId: ")) {
        assert!(Instant::now() < deadline_report, "{seen:#?}");
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) {
            seen.push(line);
        }
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(follower.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let status = follower.wait().unwrap();
    assert_eq!(status.code(), Some(0), "{status:?}");
}
