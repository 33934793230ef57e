//! Shared volumes through the real binaries (root only): seed 004's MessageWall on a volume,
//! called by 8 concurrent clients over two workers of one cluster, each worker running 4
//! sandboxes of it that append under `flock`; then what other access points see (none, a
//! read-only one, packages on a volume through `PYTHONPATH`), the owner and mode seen from the
//! host, and `admin volume list|delete`.

mod support;

use std::collections::HashMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::time::Duration;

use support::{can_run, fails, free_port, ok, Cluster};

/// Seed 004's handler, as written there.
const MESSAGE_WALL: &str = r#"import os
import fcntl
MSG_FILE_PATH = '/mnt/msg/content'
def get_messages():
    try:
        with open(MSG_FILE_PATH, 'r') as msg_file:
            fcntl.flock(msg_file, fcntl.LOCK_SH)
            messages = msg_file.read()
            fcntl.flock(msg_file, fcntl.LOCK_UN)
    except:
        messages = 'No message yet.'
    return messages
def add_message(new_message):
    with open(MSG_FILE_PATH, 'a') as msg_file:
        fcntl.flock(msg_file, fcntl.LOCK_EX)
        msg_file.write(new_message + "\n")
        fcntl.flock(msg_file, fcntl.LOCK_UN)
def delete_messages():
    try:
        os.remove(MSG_FILE_PATH)
    except:
        pass
def lambda_handler(event, context):
    method = event['requestContext']['http']['method']
    if method == 'GET':
        messages = get_messages()
    elif method == 'POST':
        new_message = event['body']
        add_message(new_message)
        messages = get_messages()
    elif method == 'DELETE':
        delete_messages()
        messages = 'Messages deleted.'
    else:
        messages = 'Method unsupported.'
    return messages
"#;

/// The seed's access point: uid/gid 1001, path /message, mode 750, mounted at /mnt/msg.
const SEED_AP: &str = r#"{"volume": "msg", "path": "/message", "mount": "/mnt/msg", "uid": 1001, "gid": 1001, "mode": "0750"}"#;

const WORKERS: u16 = 2;
const CLIENTS_PER_WORKER: usize = 4;
const APPENDS: usize = 2000;

/// One HTTP request to `port`; (status, body).
fn http(port: u16, method: &str, path: &str, body: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).expect("read");
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text[9..12].parse().expect("status");
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

fn add(c: &Cluster, name: &str, code: &str, config: &str) {
    let dir = c.path("registry").join(name);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("lambda_func.py"), code).unwrap();
    std::fs::write(dir.join("lambda.json"), config).unwrap();
}

/// Runs `admin kill` when dropped, so that a failed assertion leaves no worker behind.
struct Killer(String);

impl Drop for Killer {
    fn drop(&mut self) {
        let _ = support::admin(&["kill", &self.0]);
    }
}

#[test]
fn message_wall_on_a_volume_shared_by_two_workers() {
    if !can_run("message_wall_on_a_volume_shared_by_two_workers") {
        return;
    }
    let c = Cluster::new();
    let f = c.flag();
    let out = ok(&["volume", "create", &f, "msg"]);
    assert!(out.contains("created volume msg (no limit)"), "{out}");
    // A second volume of the same name, and bad names, are refused.
    assert!(fails(&["volume", "create", &f, "msg"]).contains("already exists"));
    assert!(fails(&["volume", "create", &f, "../x"]).contains("invalid volume name"));
    assert!(fails(&["volume", "create", &f, "big", "--size-mb", "1"]).contains("16 to"));

    add(
        &c,
        "MessageWall",
        MESSAGE_WALL,
        &format!(
            r#"{{"entry": "lambda_func.lambda_handler", "max_concurrency": {CLIENTS_PER_WORKER}, "volumes": [{SEED_AP}]}}"#
        ),
    );
    add(
        &c,
        "peek",
        "import os\ndef handler(event):\n    return {'msg': os.path.exists('/mnt/msg'), 'mnt': sorted(os.listdir('/mnt'))}\n",
        "{}",
    );
    add(
        &c,
        "reader",
        "import errno\ndef handler(event):\n    try:\n        open('/mnt/ro/content', 'a').write('no\\n')\n        wrote = 'wrote'\n    except OSError as e:\n        wrote = errno.errorcode[e.errno]\n    return {'wrote': wrote, 'lines': open('/mnt/ro/content').read().count('\\n')}\n",
        r#"{"volumes": [{"volume": "msg", "path": "/message", "mount": "/mnt/ro", "uid": 1001, "gid": 1001, "read_only": true}]}"#,
    );
    // Packages on a volume (seed 004's /mnt/inference/lib), found through PYTHONPATH.
    let lib = c.path("volumes/msg/data/lib");
    std::fs::create_dir_all(&lib).unwrap();
    std::fs::write(
        lib.join("greeting.py"),
        "def hello():\n    return 'hello from the volume'\n",
    )
    .unwrap();
    add(
        &c,
        "infer",
        "import greeting\ndef handler(event):\n    return greeting.hello()\n",
        r#"{"environment": {"PYTHONPATH": "/mnt/inference/lib"}, "volumes": [{"volume": "msg", "path": "/lib", "mount": "/mnt/inference/lib", "read_only": true}]}"#,
    );
    // An access point naming a volume that does not exist: a clear error at the call.
    add(
        &c,
        "lost",
        "def handler(event):\n    return 1\n",
        r#"{"volumes": [{"volume": "nosuch", "mount": "/mnt/x"}]}"#,
    );

    let port = free_port();
    let _killer = Killer(f.clone());
    ok(&[
        "workers",
        &f,
        &format!("--num-workers={WORKERS}"),
        &format!("--port={port}"),
    ]);
    let ports: Vec<u16> = (0..WORKERS).map(|i| port + i).collect();

    assert_eq!(
        http(ports[0], "GET", "/run/MessageWall", ""),
        (200, "No message yet.".to_owned())
    );
    // 8 clients, 4 per worker, 2000 appends in all, each line unique and recognizable.
    let started = std::time::Instant::now();
    let per_client = APPENDS / (ports.len() * CLIENTS_PER_WORKER);
    let threads: Vec<_> = ports
        .iter()
        .flat_map(|&p| (0..CLIENTS_PER_WORKER).map(move |t| (p, t)))
        .map(|(p, t)| {
            std::thread::spawn(move || {
                for i in 0..per_client {
                    let line = format!("w{p}-c{t}-m{i:04}-{}", "x".repeat(32));
                    let (status, body) = http(p, "POST", "/run/MessageWall", &line);
                    assert_eq!(status, 200, "{body}");
                    assert!(body.contains(&line), "the answer holds the new message");
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("client");
    }
    let elapsed = started.elapsed();
    let (status, wall) = http(ports[1], "GET", "/run/MessageWall", "");
    assert_eq!(status, 200);
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for line in wall.lines() {
        let ok = line.len() == "w00000-c0-m0000-".len() + 32
            && line.starts_with('w')
            && line.ends_with(&"x".repeat(32));
        assert!(ok, "a torn or foreign line: {line:?}");
        *seen.entry(line).or_default() += 1;
    }
    assert_eq!(seen.len(), APPENDS, "every append is there");
    assert!(seen.values().all(|n| *n == 1), "none twice");
    eprintln!(
        "MessageWall: {APPENDS} appends by {} clients over {WORKERS} workers in {:.1} s, {} lines, none lost or torn",
        ports.len() * CLIENTS_PER_WORKER,
        elapsed.as_secs_f64(),
        seen.len()
    );
    // Each worker ran several sandboxes of it at once.
    for &p in &ports {
        let (_, stats) = http(p, "GET", "/stats", "");
        let stats: serde_json::Value = serde_json::from_str(&stats).unwrap();
        let starts = stats["lambdas"]["MessageWall"]["cold_starts"]
            .as_u64()
            .unwrap_or(0);
        assert!(
            starts >= 2,
            "worker {p} started {starts} sandboxes: {stats}"
        );
    }

    // Seen from the host: the access point's owner and mode, the file's owner.
    let dir = c.path("volumes/msg/data/message");
    let md = std::fs::metadata(&dir).unwrap();
    assert_eq!((md.uid(), md.gid()), (1001, 1001));
    assert_eq!(md.permissions().mode() & 0o7777, 0o750);
    let file = std::fs::metadata(dir.join("content")).unwrap();
    assert_eq!((file.uid(), file.gid()), (1001, 1001));

    // No access point, no volume; a read-only one reads and gets EROFS on a write.
    let (status, body) = http(ports[0], "POST", "/runLambda/peek", "{}");
    assert_eq!(
        (status, body.as_str()),
        (200, r#"{"msg": false, "mnt": []}"#)
    );
    let (status, body) = http(ports[1], "POST", "/runLambda/reader", "{}");
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, format!(r#"{{"wrote": "EROFS", "lines": {APPENDS}}}"#));
    let (status, body) = http(ports[0], "POST", "/runLambda/infer", "{}");
    assert_eq!((status, body.as_str()), (200, r#""hello from the volume""#));
    let (status, body) = http(ports[0], "POST", "/runLambda/lost", "{}");
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("volume nosuch does not exist"), "{body}");

    let (status, body) = http(ports[1], "DELETE", "/run/MessageWall", "");
    assert_eq!((status, body.as_str()), (200, "Messages deleted."));
    assert!(!dir.join("content").exists());

    // The list names the functions using each volume; delete refuses while they do.
    let list = ok(&["volume", "list", &f]);
    assert!(list.contains("MessageWall,infer,reader"), "{list}");
    assert!(list.contains("1 volume(s)"), "{list}");
    let err = fails(&["volume", "delete", &f, "msg"]);
    assert!(
        err.contains("used by function(s) MessageWall, infer, reader"),
        "{err}"
    );
    ok(&["kill", &f]);
    ok(&["volume", "delete", &f, "msg", "--force"]);
    assert!(!c.path("volumes/msg").exists());
    assert!(fails(&["volume", "delete", &f, "msg"]).contains("does not exist"));
}
