//! Cross-language tests of the protocol, without root: messages built by `protocol.rs` are sent
//! with real fds to the host's `python3`, which decodes them with
//! `cluster-template/runtime/zygote.py` (imported, not run) and says what it found; its
//! reports are read back with the worker's own reader.

use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use nix::sys::socket::{sendmsg, setsockopt, sockopt, ControlMessage, MsgFlags};
use serde_json::{json, Value};

use super::fork::{receive_report, RawReport};
use super::protocol::{Fork, Harden, Outgoing, Report, Role, MAX_FDS, MAX_MESSAGE, MAX_REPORT};
use super::zygote::seqpacket_pair;
use super::PROTOCOL;

const RUNTIME_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../cluster-template/runtime");

/// Receives one message on stdin as a zygote does, decodes it, prints what each fd is; answers
/// a fork request on its reply socket (a failed step for a handler, ready for a zygote).
const DECODER: &str = r#"
import json, os, sys
sys.path.insert(0, sys.argv[1])
import zygote

def name(fd):
    return None if fd is None else os.readlink("/proc/self/fd/%d" % fd)

out = {"protocol": zygote.PROTOCOL, "max_fds": zygote.MAX_FDS,
       "max_message": zygote.MAX_MESSAGE, "max_report": zygote.MAX_REPORT}
try:
    req = zygote.decode(*zygote.receive(zygote._socket.socket(fileno=0)))
except zygote.BadMessage as exc:
    out["refused"] = str(exc)
else:
    if isinstance(req, zygote.Cgroup):
        out["procs"] = [name(fd) for fd in req.procs]
        out["link"] = name(req.link)
    else:
        out["fork"] = {
            "role": req.role,
            "packages": [[rel, name(fd)] for rel, fd in req.packages],
            "layers": [[layer, name(fd)] for layer, fd in req.layers],
            "fds": {role: name(getattr(req, role))
                    for role in ("reply", "host", "handler", "listen", "stdout", "stderr")},
            "env": req.env, "net_ns": req.net_ns, "tmp_mb": req.tmp_mb,
            "harden": None if req.harden is None else [req.harden.uid, req.harden.gid],
        }
        if req.role == "handler":
            zygote.report_failed(req.reply, "attach /host", "x" * 10000)
        else:
            os.write(req.reply, zygote.encode_report("ready"))
print(json.dumps(out))
"#;

/// True if the host has a `python3` to run the decoder with; otherwise says why the test skips.
fn have_python(test: &str) -> bool {
    let ok = Command::new("python3")
        .args(["-c", "pass"])
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        eprintln!("skipping {test}: no python3 on this host");
    }
    ok
}

/// Sends `body` with `fds` to the decoder; returns what it printed and its pid.
fn decode_in_python(body: &[u8], fds: &[RawFd]) -> (Value, u32) {
    let (ours, theirs) = seqpacket_pair().expect("socketpair");
    sendmsg::<()>(
        ours.as_raw_fd(),
        &[std::io::IoSlice::new(body)],
        &[ControlMessage::ScmRights(fds)],
        MsgFlags::empty(),
        None,
    )
    .expect("sendmsg");
    drop(ours);
    let child = Command::new("python3")
        .args(["-B", "-S", "-c", DECODER, RUNTIME_DIR])
        .stdin(Stdio::from(theirs))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    let pid = child.id();
    let out = child.wait_with_output().expect("python3 ends");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "python3 failed: {stderr}");
    let value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
    (value, pid)
}

fn name(fd: BorrowedFd<'_>) -> String {
    std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()))
        .expect("readlink")
        .display()
        .to_string()
}

fn dir(root: &Path, rel: &str) -> File {
    let p = root.join(rel);
    std::fs::create_dir_all(&p).expect("mkdir");
    File::open(p).expect("open")
}

fn path(root: &Path, rel: &str) -> String {
    root.join(rel).display().to_string()
}

/// A reply socket pair, ours with `SO_PASSCRED` as the worker's.
fn reply_pair() -> (OwnedFd, OwnedFd) {
    let (ours, theirs) = seqpacket_pair().expect("socketpair");
    setsockopt(&ours, sockopt::PassCred, &true).expect("SO_PASSCRED");
    (ours, theirs)
}

#[test]
fn python_pairs_each_package_with_its_own_directory() {
    if !have_python("python_pairs_each_package_with_its_own_directory") {
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path();
    let (a, a_again, b, c) = (
        dir(root, "pk/a/1"),
        dir(root, "pk/a/1"),
        dir(root, "pk/b/2"),
        dir(root, "pk/c/3"),
    );
    let (host, handler) = (dir(root, "host"), dir(root, "handler"));
    let (common, tools) = (dir(root, "layers/common/2"), dir(root, "layers/tools/1"));
    // In the function's order, not sorted.
    let layers = [("tools", tools.as_fd()), ("common", common.as_fd())];
    let stdout = File::create(root.join("stdout")).expect("stdout");
    let stderr = File::create(root.join("stderr")).expect("stderr");
    let (reply, reply_child) = reply_pair();
    let (listen, _peer) = seqpacket_pair().expect("socketpair");
    // Out of order, with a duplicate ahead of later packages: by position, b and c would get
    // the wrong directories.
    let packages = [
        ("c/3", c.as_fd()),
        ("a/1", a.as_fd()),
        ("a/1", a_again.as_fd()),
        ("b/2", b.as_fd()),
    ];
    let env = [
        ("PATH".to_owned(), "/bin".to_owned()),
        ("LAMBDA_NAME".to_owned(), "x=y".to_owned()),
    ];
    let out = Outgoing::fork(&Fork {
        role: Role::Handler,
        reply: reply_child.as_fd(),
        host: host.as_fd(),
        handler: Some(handler.as_fd()),
        packages: &packages,
        layers: &layers,
        volumes: &[],
        listen: listen.as_fd(),
        stdout: stdout.as_fd(),
        stderr: stderr.as_fd(),
        env: &env,
        net_ns: true,
        tmp_mb: 48,
        harden: Some(Harden {
            uid: 65534,
            gid: 65533,
        }),
    })
    .expect("a valid request");
    let fds: Vec<RawFd> = out.fds().iter().map(AsRawFd::as_raw_fd).collect();
    let (seen, pid) = decode_in_python(out.body(), &fds);
    assert_eq!(
        (
            &seen["protocol"],
            &seen["max_fds"],
            &seen["max_message"],
            &seen["max_report"]
        ),
        (
            &json!(PROTOCOL),
            &json!(MAX_FDS),
            &json!(MAX_MESSAGE),
            &json!(MAX_REPORT)
        ),
        "zygote.py and protocol.rs disagree: {seen}"
    );
    let fork = &seen["fork"];
    assert_eq!(
        fork["packages"],
        json!([
            ["a/1", path(root, "pk/a/1")],
            ["b/2", path(root, "pk/b/2")],
            ["c/3", path(root, "pk/c/3")]
        ]),
        "{seen}"
    );
    assert_eq!(
        fork["layers"],
        json!([
            ["tools", path(root, "layers/tools/1")],
            ["common", path(root, "layers/common/2")]
        ]),
        "{seen}"
    );
    assert_eq!(
        fork["fds"],
        json!({
            "reply": name(reply_child.as_fd()),
            "host": path(root, "host"),
            "handler": path(root, "handler"),
            "listen": name(listen.as_fd()),
            "stdout": path(root, "stdout"),
            "stderr": path(root, "stderr"),
        }),
        "{seen}"
    );
    assert_eq!(fork["role"], "handler");
    assert_eq!(
        fork["env"],
        json!([["PATH", "/bin"], ["LAMBDA_NAME", "x=y"]])
    );
    assert_eq!(
        (&fork["net_ns"], &fork["tmp_mb"]),
        (&json!(true), &json!(48))
    );
    assert_eq!(fork["harden"], json!([65534, 65533]));
    // Its failed-step report, shortened to fit, as the worker reads it.
    drop(reply_child);
    let RawReport { bytes, pid: writer } = receive_report(&reply, Duration::from_secs(5))
        .expect("a report")
        .expect("not closed");
    assert!(bytes.len() <= MAX_REPORT, "{} bytes", bytes.len());
    assert_eq!(writer, Some(pid as i32), "the kernel names the writer");
    match Report::decode(&bytes).expect("a readable report") {
        Report::Failed { step, reason } => {
            assert_eq!(step, "attach /host");
            assert!(reason.len() > 1000 && reason.chars().all(|c| c == 'x'));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn python_reads_a_zygote_request_and_a_cgroup_and_reports_ready() {
    if !have_python("python_reads_a_zygote_request_and_a_cgroup_and_reports_ready") {
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path();
    let (six, host) = (dir(root, "six/1.17.0"), dir(root, "zy-9"));
    let null = File::open("/dev/null").expect("/dev/null");
    let (reply, reply_child) = reply_pair();
    let (control, _peer) = seqpacket_pair().expect("socketpair");
    let out = Outgoing::fork(&Fork {
        role: Role::Zygote,
        reply: reply_child.as_fd(),
        host: host.as_fd(),
        handler: None,
        packages: &[("six/1.17.0", six.as_fd())],
        layers: &[],
        volumes: &[],
        listen: control.as_fd(),
        stdout: null.as_fd(),
        stderr: null.as_fd(),
        env: &[],
        net_ns: false,
        tmp_mb: 64,
        harden: None,
    })
    // One fd for two roles (stdout and stderr) is sent twice, once per index.
    .expect("a valid request");
    let fds: Vec<RawFd> = out.fds().iter().map(AsRawFd::as_raw_fd).collect();
    let (seen, pid) = decode_in_python(out.body(), &fds);
    let fork = &seen["fork"];
    assert_eq!(fork["role"], "zygote", "{seen}");
    assert_eq!(
        fork["packages"],
        json!([["six/1.17.0", path(root, "six/1.17.0")]])
    );
    assert_eq!(fork["fds"]["handler"], Value::Null);
    assert_eq!(fork["fds"]["listen"], json!(name(control.as_fd())));
    assert_eq!(fork["harden"], Value::Null);
    drop(reply_child);
    let RawReport { bytes, pid: writer } = receive_report(&reply, Duration::from_secs(5))
        .expect("a report")
        .expect("not closed");
    assert_eq!(Report::decode(&bytes).expect("readable"), Report::Ready);
    assert_eq!(writer, Some(pid as i32));

    let procs = [
        File::open("/dev/null").expect("null"),
        File::open("/dev/zero").expect("zero"),
    ];
    let link = File::open("/dev/full").expect("full");
    let out = Outgoing::cgroup(&procs, link.as_fd()).expect("a cgroup message");
    let fds: Vec<RawFd> = out.fds().iter().map(AsRawFd::as_raw_fd).collect();
    let (seen, _) = decode_in_python(out.body(), &fds);
    assert_eq!(seen["procs"], json!(["/dev/null", "/dev/zero"]), "{seen}");
    assert_eq!(seen["link"], "/dev/full", "{seen}");
}

/// A valid handler request naming 8 fds (0-7), to break one way at a time.
fn valid_request() -> Value {
    json!({
        "protocol": PROTOCOL, "kind": "fork", "role": "handler",
        "fds": {"reply": 0, "host": 1, "handler": 2,
                "packages": [{"rel": "a/1", "fd": 3}, {"rel": "b/2", "fd": 4}],
                "layers": [], "volumes": [], "listen": 5, "stdout": 6, "stderr": 7},
        "env": [["PATH", "/bin"]], "net_ns": true, "tmp_mb": 64,
        "harden": {"uid": 65534, "gid": 65534},
    })
}

#[test]
fn python_refuses_messages_that_break_the_protocol() {
    if !have_python("python_refuses_messages_that_break_the_protocol") {
        return;
    }
    let files: Vec<File> = (0..9)
        .map(|_| File::open("/dev/null").expect("/dev/null"))
        .collect();
    let eight: Vec<RawFd> = files[..8].iter().map(AsRawFd::as_raw_fd).collect();
    let (seen, _) = decode_in_python(&serde_json::to_vec(&valid_request()).unwrap(), &eight);
    assert!(
        seen.get("fork").is_some(),
        "the valid request is taken: {seen}"
    );

    type Edit = fn(&mut Value);
    let cases: [(&str, Edit, usize, &str); 16] = [
        (
            "a volume mount that leaves /mnt",
            |r| r["fds"]["volumes"] = json!([{"mount": "../etc", "fd": 8}]),
            9,
            "volume mount '../etc' is not a path of normal names",
        ),
        (
            "volume mounts that nest",
            |r| r["fds"]["volumes"] = json!([{"mount": "a", "fd": 8}, {"mount": "a/b", "fd": 8}]),
            9,
            "volume mounts 'a' and 'a/b' nest",
        ),
        (
            "a zygote request with volumes",
            |r| {
                r["role"] = json!("zygote");
                r["fds"].as_object_mut().unwrap().remove("handler");
                r["fds"]["stderr"] = json!(2);
                r["fds"]["volumes"] = json!([{"mount": "msg", "fd": 7}]);
            },
            8,
            "a zygote request with volumes",
        ),
        (
            "a layer named twice",
            |r| r["fds"]["layers"] = json!([{"name": "c", "fd": 8}, {"name": "c", "fd": 8}]),
            9,
            "layer c is named twice",
        ),
        (
            "a layer that leaves /opt",
            |r| r["fds"]["layers"] = json!([{"name": "../etc", "fd": 8}]),
            9,
            "layer name '../etc' is not one path component",
        ),
        (
            "a request without its layers",
            |r| {
                r["fds"].as_object_mut().unwrap().remove("layers");
            },
            8,
            "'layers' is missing",
        ),
        (
            "a duplicated package",
            |r| r["fds"]["packages"][1]["rel"] = json!("a/1"),
            8,
            "package a/1 is named twice",
        ),
        (
            "an fd index out of range",
            |r| r["fds"]["host"] = json!(9),
            8,
            "host: fd index 9 is out of range (8 fds came)",
        ),
        (
            "one index for two roles",
            |r| r["fds"]["stderr"] = json!(6),
            8,
            "fd index 6 is named twice (stdout and stderr)",
        ),
        (
            "an fd nobody names",
            |_| {},
            9,
            "fd index 8 came with the message but is not named in it",
        ),
        (
            "a handler request without its handler",
            |r| {
                r["fds"].as_object_mut().unwrap().remove("handler");
                r["fds"]["stderr"] = json!(2);
                r["fds"]["packages"][1]["fd"] = json!(7);
            },
            8,
            "a handler request without a handler fd",
        ),
        (
            "a missing role",
            |r| {
                r["fds"].as_object_mut().unwrap().remove("reply");
            },
            8,
            "'reply' is missing",
        ),
        (
            "a package path that leaves /packages",
            |r| r["fds"]["packages"][0]["rel"] = json!("../etc"),
            8,
            "package path '../etc' is not name/version",
        ),
        (
            "another protocol version",
            |r| r["protocol"] = json!(PROTOCOL + 1),
            8,
            "but this zygote speaks",
        ),
        (
            "a boolean for an index",
            |r| r["fds"]["listen"] = json!(true),
            8,
            "'listen' is True, not of type int",
        ),
        (
            "an unknown kind",
            |r| r["kind"] = json!("exec"),
            8,
            "unknown kind 'exec'",
        ),
    ];
    for (what, edit, count, expected) in cases {
        let mut request = valid_request();
        edit(&mut request);
        let fds: Vec<RawFd> = files[..count].iter().map(AsRawFd::as_raw_fd).collect();
        let (seen, _) = decode_in_python(&serde_json::to_vec(&request).unwrap(), &fds);
        let refused = seen["refused"].as_str().unwrap_or_default();
        assert!(
            refused.contains(expected),
            "{what}: expected {expected:?}, got {seen}"
        );
    }
}
