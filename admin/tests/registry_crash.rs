//! kill -9 of the registry server during 50 concurrent uploads (root only).
//!
//! `admin registry` starts the server of a fresh cluster; 50 threads each send one signed
//! CreateFunction of a distinct function (a zip with its own `lambda_func.py` and 256 KiB of
//! incompressible data), all at once; once a few are acknowledged, the server (`admin
//! registry-exec`) gets SIGKILL; `admin registry` starts it again. Then:
//! - every upload that was acknowledged (a 2xx received) is there with the exact code: the
//!   acknowledgement's `CodeSha256`, the pull endpoint's `code_sha256`, GetFunction's
//!   `CodeSha256` and the stored archive all hash to what was sent, and the unpacked code
//!   directory holds exactly the files sent;
//! - nothing partial is visible: every function listed (by ListFunctions and in the registry
//!   directory) is one of ours, complete in the same way, with its record, its archive and its
//!   code directory; no code directory without a record; no staging directory or temporary file
//!   left after the restart's recovery; no archive that no function names.

mod support;

use std::collections::BTreeMap;
use std::io::Read;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use base64::Engine as _;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use support::*;

const UPLOADS: usize = 50;
/// Incompressible bytes in each function's archive.
const PAYLOAD_BYTES: usize = 256 << 10;
/// Acknowledgements to wait for before the kill.
const KILL_AFTER: usize = 10;

/// What one upload sends.
#[derive(Debug)]
struct Upload {
    name: String,
    source: String,
    payload: Vec<u8>,
    zip: Vec<u8>,
    sha: String,
}

fn upload(i: usize) -> Upload {
    let name = format!("crash-{i:02}");
    let source = format!("def handler(event):\n    return {i}\n");
    // SHA-256 in counter mode: incompressible, distinct per function.
    let mut payload = Vec::with_capacity(PAYLOAD_BYTES);
    let mut n = 0u64;
    while payload.len() < PAYLOAD_BYTES {
        payload.extend_from_slice(&Sha256::digest(format!("{name}/{n}").as_bytes()));
        n += 1;
    }
    payload.truncate(PAYLOAD_BYTES);
    let zip = zip_of(&[
        ("lambda_func.py", source.as_bytes()),
        ("data.bin", &payload),
    ]);
    let sha = sha256_hex(&zip);
    Upload {
        name,
        source,
        payload,
        zip,
        sha,
    }
}

/// How an upload ended.
#[derive(Debug)]
enum Outcome {
    /// 2xx, with the answer's `CodeSha256` in hex.
    Acked(String),
    /// Another status: the status and the answer.
    Refused(String),
    /// No answer (the server died).
    Lost(String),
}

fn b64_to_hex(b64: &str) -> String {
    base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map(|b| b.iter().map(|x| format!("{x:02x}")).collect())
        .unwrap_or_else(|e| format!("not base64 {b64:?}: {e}"))
}

fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit_once(')')
            .and_then(|(_, rest)| rest.trim_start().chars().next())
            .is_some_and(|state| state != 'Z')
    })
}

/// A regular file's bytes inside the registry.
fn read(path: &std::path::Path) -> Vec<u8> {
    let mut f = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut v = Vec::new();
    f.read_to_end(&mut v).unwrap();
    v
}

/// Names in `dir` (none if it does not exist), sorted.
fn entries(dir: &std::path::Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Checks one function as the store holds it after the restart: its record, archive and code
/// directory all match what `u` sent.
fn check_intact(c: &Cluster, port: u16, u: &Upload) {
    let (status, body) = get(port, &format!("/registry/functions/{}", u.name));
    assert_eq!(status, 200, "{}: {body}", u.name);
    let rec: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        rec["code_sha256"],
        u.sha.as_str(),
        "{}: pull record",
        u.name
    );
    assert_eq!(rec["code_size"], u.zip.len(), "{}", u.name);
    let (status, body) = signed(
        port,
        "GET",
        &format!("/2015-03-31/functions/{}", u.name),
        b"",
        Duration::from_secs(30),
    )
    .unwrap();
    assert_eq!(status, 200, "{}", u.name);
    let got: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        b64_to_hex(
            got["Configuration"]["CodeSha256"]
                .as_str()
                .unwrap_or_default()
        ),
        u.sha,
        "{}: GetFunction",
        u.name
    );
    let archive = c.path(&format!("registry/.store/archives/{}", u.sha));
    assert_eq!(sha256_hex(&read(&archive)), u.sha, "{}: archive", u.name);
    let dir = c.path(&format!("registry/{}", u.name));
    assert_eq!(
        read(&dir.join("lambda_func.py")),
        u.source.as_bytes(),
        "{}",
        u.name
    );
    assert!(
        read(&dir.join("data.bin")) == u.payload,
        "{}: data.bin differs",
        u.name
    );
    let files: Vec<String> = entries(&dir)
        .into_iter()
        .filter(|n| !n.starts_with('.') && n != "lambda.json")
        .collect();
    assert_eq!(files, ["data.bin", "lambda_func.py"], "{}", u.name);
}

#[test]
fn kill_9_of_the_registry_server_during_50_uploads_loses_nothing_acknowledged() {
    if !can_run("kill_9_of_the_registry_server_during_50_uploads_loses_nothing_acknowledged") {
        return;
    }
    let c = Cluster::new();
    let port = free_port();
    let start = || {
        ok(&[
            "registry",
            &c.flag(),
            &format!("--port={port}"),
            &format!("--access-key={KEY}"),
            &format!("--secret-key={SECRET}"),
        ])
    };
    start();
    let pid = c.registry_pid().expect("registry pid file");
    let uploads: Arc<Vec<Upload>> = Arc::new((0..UPLOADS).map(upload).collect());

    let acked = Arc::new(AtomicUsize::new(0));
    let barrier = Arc::new(Barrier::new(UPLOADS + 1));
    let threads: Vec<_> = (0..UPLOADS)
        .map(|i| {
            let (uploads, acked, barrier) = (
                Arc::clone(&uploads),
                Arc::clone(&acked),
                Arc::clone(&barrier),
            );
            std::thread::spawn(move || {
                let u = &uploads[i];
                let body = json!({
                    "FunctionName": u.name,
                    "Code": {"ZipFile": base64::engine::general_purpose::STANDARD.encode(&u.zip)},
                })
                .to_string();
                barrier.wait();
                match signed(
                    port,
                    "POST",
                    "/2015-03-31/functions",
                    body.as_bytes(),
                    Duration::from_secs(120),
                ) {
                    Ok((status, answer)) if (200..300).contains(&status) => {
                        acked.fetch_add(1, Ordering::SeqCst);
                        let v: Value = serde_json::from_slice(&answer).unwrap_or(Value::Null);
                        Outcome::Acked(b64_to_hex(v["CodeSha256"].as_str().unwrap_or_default()))
                    }
                    Ok((status, answer)) => {
                        Outcome::Refused(format!("{status} {}", String::from_utf8_lossy(&answer)))
                    }
                    Err(e) => Outcome::Lost(e.to_string()),
                }
            })
        })
        .collect();
    let started = Instant::now();
    barrier.wait();
    while acked.load(Ordering::SeqCst) < KILL_AFTER {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "fewer than {KILL_AFTER} uploads acknowledged in 120 s"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    kill(Pid::from_raw(pid), Signal::SIGKILL).expect("SIGKILL the registry server");
    let killed_at = started.elapsed();
    let outcomes: Vec<Outcome> = threads
        .into_iter()
        .map(|t| t.join().expect("upload thread"))
        .collect();
    while alive(pid) {
        std::thread::sleep(Duration::from_millis(10));
    }
    let acked: BTreeMap<usize, String> = outcomes
        .iter()
        .enumerate()
        .filter_map(|(i, o)| match o {
            Outcome::Acked(sha) => Some((i, sha.clone())),
            _ => None,
        })
        .collect();
    let lost: Vec<&str> = outcomes
        .iter()
        .filter_map(|o| match o {
            Outcome::Lost(why) => Some(why.as_str()),
            _ => None,
        })
        .collect();
    eprintln!(
        "killed after {:.2} s: {} acknowledged, {} without an answer (first: {:?}); {} staging directories before the restart",
        killed_at.as_secs_f64(),
        acked.len(),
        lost.len(),
        lost.first(),
        entries(&c.path("registry/.store/staging")).len()
    );
    for o in &outcomes {
        if let Outcome::Refused(answer) = o {
            panic!("an upload was refused: {answer}");
        }
    }
    assert!(acked.len() >= KILL_AFTER, "{outcomes:?}");
    assert!(
        !lost.is_empty(),
        "every upload was answered before the kill: the test did not kill mid-way"
    );

    // Restart: the store recovers on open.
    start();
    let store = c.path("registry/.store");
    assert_eq!(
        entries(&store.join("staging")),
        Vec::<String>::new(),
        "staging left"
    );
    let tmp: Vec<String> = entries(&store.join("functions"))
        .into_iter()
        .filter(|n| n.starts_with(".tmp-"))
        .collect();
    assert!(tmp.is_empty(), "temporary files left: {tmp:?}");

    // Every acknowledged upload is there, intact.
    for (i, sha) in &acked {
        let u = &uploads[*i];
        assert_eq!(sha, &u.sha, "{}: the acknowledgement's CodeSha256", u.name);
        check_intact(&c, port, u);
    }

    // Nothing partial: every function listed is complete; records and code directories match.
    let (status, body) = signed(
        port,
        "GET",
        "/2015-03-31/functions/?MaxItems=1000",
        b"",
        Duration::from_secs(30),
    )
    .unwrap();
    assert_eq!(status, 200);
    let listed: Vec<String> = serde_json::from_slice::<Value>(&body).unwrap()["Functions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["FunctionName"].as_str().unwrap().to_owned())
        .collect();
    let records = c.stored_functions();
    let dirs: Vec<String> = entries(&c.path("registry"))
        .into_iter()
        .filter(|n| n != ".store")
        .collect();
    assert_eq!(listed, records, "ListFunctions and the records differ");
    assert_eq!(dirs, records, "code directories and records differ");
    for name in &listed {
        let u = uploads
            .iter()
            .find(|u| &u.name == name)
            .unwrap_or_else(|| panic!("{name} is not one of the uploads"));
        check_intact(&c, port, u);
    }
    let mut archives = entries(&store.join("archives"));
    let mut named: Vec<String> = listed
        .iter()
        .map(|n| uploads.iter().find(|u| &u.name == n).unwrap().sha.clone())
        .collect();
    archives.sort();
    named.sort();
    assert_eq!(
        archives, named,
        "archives no function names, or missing ones"
    );
    eprintln!(
        "after the restart: {} functions listed, all {} acknowledged ones intact",
        listed.len(),
        acked.len()
    );
}
