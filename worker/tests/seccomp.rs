//! The seccomp allowlist against real workloads (root; the package index for numpy, pandas,
//! requests and Flask): one cluster, first with fresh sandboxes (`import_cache` off), then,
//! with a second worker on the same cluster and its package store, with sandboxes forked from
//! a zygote. Each check is reported by name; the test asserts every one on both paths.

mod common;

use common::{can_run, request, TestCluster, PY_OUTCOME};
use serde_json::{json, Value};

/// What a Python function and common packages do, each check reported as "ok" or the error it
/// met; then calls the policy denies, reported as the errno they got (see [`PY_OUTCOME`]).
const CHECKS: &str = r#"import json, mmap, select, signal, socket, subprocess, sys, threading, time
import multiprocessing

CLONE_NEWUSER = 0x10000000
SYS_CLONE3 = 435  # the same number on x86_64 and aarch64

def numpy_check():
    import numpy
    a = numpy.arange(1_000_000, dtype=numpy.float64)
    assert float((a * 2).sum()) == 999999000000.0
    m = numpy.random.default_rng(1).random((100, 100)) + numpy.eye(100) * 100
    assert numpy.allclose(numpy.linalg.inv(m) @ m, numpy.eye(100))

def pandas_check():
    import pandas
    df = pandas.DataFrame({"k": [i % 3 for i in range(300)], "v": range(300)})
    got = df.groupby("k")["v"].sum().to_dict()
    assert got == {0: 14850, 1: 14950, 2: 15050}, got
    df.to_csv("/tmp/df.csv")
    assert len(pandas.read_csv("/tmp/df.csv")) == 300

def serve(family, host):
    import http.server
    class Server(http.server.ThreadingHTTPServer):
        address_family = family
    class Hello(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = b"hello " + self.path.encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        def log_message(self, *args):
            pass
    srv = Server((host, 0), Hello)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv

def requests_check():
    import requests
    srv = serve(socket.AF_INET, "127.0.0.1")
    try:
        r = requests.get("http://127.0.0.1:%d/x" % srv.server_address[1], timeout=10)
        assert (r.status_code, r.text) == (200, "hello /x"), (r.status_code, r.text)
        with requests.Session() as s:
            for i in range(3):
                assert s.get("http://127.0.0.1:%d/%d" % (srv.server_address[1], i), timeout=10).ok
    finally:
        srv.shutdown()

def urllib_ipv6_check():
    import urllib.request
    srv = serve(socket.AF_INET6, "::1")
    try:
        with urllib.request.urlopen("http://[::1]:%d/v6" % srv.server_address[1], timeout=10) as r:
            assert r.read() == b"hello /v6"
    finally:
        srv.shutdown()

def threads_check():
    import concurrent.futures
    out = []
    ts = [threading.Thread(target=lambda i=i: out.append(i * i)) for i in range(8)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert sorted(out) == [i * i for i in range(8)]
    with concurrent.futures.ThreadPoolExecutor(4) as ex:
        assert list(ex.map(abs, [-1, -2, -3])) == [1, 2, 3]
    cond = threading.Condition()
    with cond:
        cond.wait(0.01)

def subprocess_check():
    r = subprocess.run(["/bin/sh", "-c", "echo hi; ls / >/dev/null; cat /etc/hostname"], capture_output=True)
    assert r.returncode == 0 and r.stdout.startswith(b"hi\n"), r
    r = subprocess.run([sys.executable, "-c", "import os, json; print(json.dumps(os.getpid() > 0))"], capture_output=True)
    assert (r.returncode, r.stdout) == (0, b"true\n"), r
    with subprocess.Popen(["/bin/cat"], stdin=subprocess.PIPE, stdout=subprocess.PIPE) as p:
        assert p.communicate(b"through a pipe", timeout=10)[0] == b"through a pipe"

def square(x):
    return x * x

def put_pid(q):
    q.put(("child", multiprocessing.current_process().pid))

def mp_pool_check():
    with multiprocessing.get_context("fork").Pool(2) as pool:
        assert pool.map(square, range(10)) == [x * x for x in range(10)]

def mp_semlock_check():
    multiprocessing.get_context("fork").Lock()

def mp_queue_check():
    ctx = multiprocessing.get_context("fork")
    q = ctx.Queue()
    p = ctx.Process(target=put_pid, args=(q,))
    p.start()
    got = q.get(timeout=10)
    p.join(10)
    assert got[0] == "child" and p.exitcode == 0, (got, p.exitcode)

def mp_pipe_check():
    ctx = multiprocessing.get_context("fork")
    ours, theirs = ctx.Pipe()
    p = ctx.Process(target=lambda c: c.send(square(7)), args=(theirs,))
    p.start()
    assert ours.recv() == 49
    p.join(10)
    assert p.exitcode == 0

def process_pool_executor_check():
    import concurrent.futures
    ctx = multiprocessing.get_context("fork")
    with concurrent.futures.ProcessPoolExecutor(2, mp_context=ctx) as ex:
        assert list(ex.map(square, [1, 2, 3])) == [1, 4, 9]

def random_check():
    import os, random, secrets, uuid
    assert len(os.urandom(32)) == 32 and len(os.getrandom(8)) == 8
    secrets.token_hex(16)
    uuid.uuid4()
    random.SystemRandom().random()

def time_check():
    t0 = time.monotonic()
    time.sleep(0.02)
    assert time.monotonic() - t0 >= 0.02
    time.time(); time.process_time(); time.thread_time(); time.clock_getres(time.CLOCK_MONOTONIC)
    import datetime
    datetime.datetime.now().astimezone()

def select_check():
    import os, selectors
    r, w = os.pipe()
    os.write(w, b"x")
    assert select.select([r], [], [], 1)[0] == [r]
    p = select.poll()
    p.register(r, select.POLLIN)
    assert p.poll(1000)
    ep = select.epoll()
    ep.register(r, select.EPOLLIN)
    assert ep.poll(1)
    ep.close()
    with selectors.DefaultSelector() as sel:
        sel.register(r, selectors.EVENT_READ)
        assert sel.select(1)
    os.close(r)
    os.close(w)

def asyncio_check():
    import asyncio
    async def main():
        async def echo(reader, writer):
            writer.write(await reader.read(5))
            await writer.drain()
            writer.close()
        srv = await asyncio.start_server(echo, "127.0.0.1", 0)
        reader, writer = await asyncio.open_connection(*srv.sockets[0].getsockname())
        writer.write(b"async")
        got = await reader.read(5)
        writer.close()
        srv.close()
        await srv.wait_closed()
        await asyncio.sleep(0.001)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, time.sleep, 0.001)
        proc = await asyncio.create_subprocess_exec("/bin/true")
        await proc.wait()
        return got
    assert asyncio.run(main()) == b"async"

def sockets_check():
    import os
    a, b = socket.socketpair()
    a.sendall(b"pair")
    assert b.recv(4) == b"pair"
    a.close(); b.close()
    path = "/tmp/unix.sock"
    u = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    u.bind(path); u.listen()
    c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    c.connect(path)
    s, _ = u.accept()
    c.sendmsg([b"fd"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, __import__("array").array("i", [0]))])
    msg, anc, _, _ = s.recvmsg(2, socket.CMSG_LEN(4))
    assert msg == b"fd" and anc, (msg, anc)
    for fd in __import__("array").array("i", anc[0][2]):
        os.close(fd)
    for x in (s, c, u):
        x.close()
    os.unlink(path)
    for kind in (socket.SOCK_DGRAM, socket.SOCK_SEQPACKET):
        socket.socket(socket.AF_UNIX, kind).close()
    for family, host in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
        ls = socket.socket(family, socket.SOCK_STREAM)
        ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        ls.bind((host, 0)); ls.listen()
        c = socket.create_connection(ls.getsockname()[:2], timeout=5)
        s, _ = ls.accept()
        c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        c.sendall(b"tcp"); assert s.recv(3) == b"tcp"
        c.getpeername(); c.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        c.shutdown(socket.SHUT_RDWR)
        for x in (c, s, ls):
            x.close()
        d = socket.socket(family, socket.SOCK_DGRAM)
        d.bind((host, 0)); d.sendto(b"udp", d.getsockname()); assert d.recvfrom(3)[0] == b"udp"
        d.close()
    socket.getaddrinfo("localhost", 80)
    socket.gethostname()

def mmap_check():
    m = mmap.mmap(-1, 1 << 20)
    m[0:5] = b"hello"
    m.madvise(mmap.MADV_DONTNEED)
    m.close()
    with open("/tmp/mapped", "wb+") as f:
        f.write(b"\0" * 4096)
        f.flush()
        m = mmap.mmap(f.fileno(), 4096)
        m[0:2] = b"ok"
        m.flush()
        m.close()

def files_check():
    import fcntl, os, shutil, tempfile
    d = tempfile.mkdtemp()
    f = os.path.join(d, "f")
    with open(f, "w") as fh:
        fh.write("x" * 10000)
        fh.flush()
        os.fsync(fh.fileno())
        os.fdatasync(fh.fileno())
    os.stat(f); os.lstat(f); os.access(f, os.R_OK); os.chmod(f, 0o600); os.utime(f, None)
    os.rename(f, f + "2"); os.link(f + "2", f + "3"); os.symlink(f + "2", f + "4")
    assert os.readlink(f + "4") == f + "2"
    fd = os.open(f + "2", os.O_RDWR)
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_SEQUENTIAL)
    os.posix_fallocate(fd, 0, 20000)
    os.pread(fd, 10, 0); os.pwrite(fd, b"y", 0); os.lseek(fd, 0, os.SEEK_SET)
    os.ftruncate(fd, 100); os.fstat(fd)
    fcntl.flock(fd, fcntl.LOCK_EX); fcntl.flock(fd, fcntl.LOCK_UN)
    fcntl.lockf(fd, fcntl.LOCK_EX); fcntl.lockf(fd, fcntl.LOCK_UN)
    out = os.open(f + "6", os.O_WRONLY | os.O_CREAT)
    os.sendfile(out, fd, 0, 100)
    os.close(out)
    os.close(fd)
    shutil.copy(f + "2", f + "5")
    shutil.copytree(d, d + "-copy")
    assert len(list(os.scandir(d))) == 5
    os.statvfs(d)
    os.makedirs(d + "/a/b/c")
    os.chdir(d); os.getcwd(); os.chdir("/host")
    try:
        os.setxattr(f + "2", "user.x", b"1")
        os.getxattr(f + "2", "user.x")
    except OSError as exc:  # tmpfs without user xattrs: the call was made, the file system said no
        if exc.errno not in (__import__("errno").EOPNOTSUPP, __import__("errno").ENOTSUP):
            raise
    os.listxattr(f + "2")
    os.truncate(f + "5", 0)
    shutil.rmtree(d); shutil.rmtree(d + "-copy")
    with open("/host/out.txt", "w") as fh:
        fh.write("scratch")
    os.unlink("/host/out.txt")
    import sqlite3
    con = sqlite3.connect("/tmp/db.sqlite")
    con.execute("create table t(x)"); con.execute("insert into t values (1)"); con.commit()
    assert con.execute("select sum(x) from t").fetchone() == (1,)
    con.close()

def signals_check():
    import os
    got = []
    signal.signal(signal.SIGUSR1, lambda *a: got.append("usr1"))
    os.kill(os.getpid(), signal.SIGUSR1)
    signal.signal(signal.SIGALRM, lambda *a: got.append("alrm"))
    signal.setitimer(signal.ITIMER_REAL, 0.01)
    time.sleep(0.05)
    signal.alarm(0)
    signal.pthread_sigmask(signal.SIG_BLOCK, [])
    signal.sigpending()
    signal.signal(signal.SIGUSR1, signal.SIG_DFL)
    signal.signal(signal.SIGALRM, signal.SIG_DFL)
    assert got == ["usr1", "alrm"], got

def fds_check():
    import ctypes, os
    libc = ctypes.CDLL(None, use_errno=True)
    e = os.eventfd(0)
    os.eventfd_write(e, 3)
    assert os.eventfd_read(e) == 3
    os.close(e)
    t = libc.timerfd_create(1, 0)  # CLOCK_MONOTONIC
    assert t >= 0, ctypes.get_errno()
    os.close(t)
    i = libc.inotify_init1(0)
    assert i >= 0 and libc.inotify_add_watch(i, b"/tmp", 0x100) >= 0, ctypes.get_errno()
    os.close(i)
    m = os.memfd_create("x")
    os.write(m, b"1")
    os.close(m)
    p = os.fork()
    if p == 0:
        os._exit(7)
    pidfd = os.pidfd_open(p)
    assert select.select([pidfd], [], [], 10)[0] == [pidfd]
    os.close(pidfd)
    assert os.waitpid(p, 0)[1] >> 8 == 7

def system_check():
    import os, resource
    os.sched_getaffinity(0); os.sched_yield(); os.getpriority(os.PRIO_PROCESS, 0); os.nice(0)
    os.cpu_count(); os.getloadavg(); os.times(); os.uname()
    resource.getrusage(resource.RUSAGE_SELF)
    resource.setrlimit(resource.RLIMIT_NOFILE, resource.getrlimit(resource.RLIMIT_NOFILE))
    os.getpgid(0); os.getsid(0); os.getppid(); os.getgroups(); os.umask(0o22)
    os.setuid(os.getuid())  # to its own uid: allowed to anyone
    import ssl, hashlib, zlib, locale
    ssl.create_default_context()
    hashlib.sha256(b"x").hexdigest()
    zlib.compress(b"x" * 100)

def fork_exec_check():
    import os
    p = os.fork()
    if p == 0:
        os.execv("/bin/true", ["/bin/true"])
    assert os.waitid(os.P_PID, p, os.WEXITED).si_status == 0

CHECKS = [
    ("numpy", numpy_check), ("pandas", pandas_check), ("requests", requests_check),
    ("urllib_ipv6", urllib_ipv6_check), ("threads", threads_check),
    ("subprocess", subprocess_check), ("mp_semlock", mp_semlock_check), ("mp_pool", mp_pool_check), ("mp_queue", mp_queue_check),
    ("mp_pipe", mp_pipe_check), ("process_pool_executor", process_pool_executor_check),
    ("random", random_check), ("time", time_check), ("select", select_check),
    ("asyncio", asyncio_check), ("sockets", sockets_check), ("mmap", mmap_check),
    ("files", files_check), ("signals", signals_check), ("fds", fds_check),
    ("system", system_check), ("fork_exec", fork_exec_check),
]

def handler(event):
    report = {"checks": {}, "denied": {}}
    for name, check in CHECKS:
        try:
            check()
            report["checks"][name] = "ok"
        except BaseException as exc:
            report["checks"][name] = "%s: %s" % (type(exc).__name__, exc)
    report["dev_shm"] = os.path.isdir("/dev/shm")
    report["denied"] = {
        "mount": outcome(lambda: libc.mount(b"none", b"/tmp", b"tmpfs", 0, None)),
        "unshare_user": outcome(lambda: libc.unshare(CLONE_NEWUSER)),
        "ptrace_traceme": outcome(lambda: libc.ptrace(0, 0, 0, 0)),
        # No such call on any architecture: without the filter ENOSYS, with it EPERM.
        "unknown_call": outcome(lambda: libc.syscall(1000, 0, 0, 0)),
        "clone3": outcome(lambda: libc.syscall(SYS_CLONE3, 0, 0)),
    }
    return report
"#;

/// A Flask app (WSGI) whose route starts a thread and a process.
const FLASK_APP: &str = r#"import subprocess, threading
from flask import Flask, jsonify

app = Flask(__name__)

@app.route("/check/<word>")
def check(word):
    out = []
    t = threading.Thread(target=lambda: out.append(word.upper()))
    t.start()
    t.join()
    echo = subprocess.run(["/bin/sh", "-c", "echo $0", word], capture_output=True, text=True)
    return jsonify(word=word, thread=out[0], echo=echo.stdout.strip())
"#;

fn add_lambdas(c: &TestCluster) {
    let checks = c.registry().join("sc-checks");
    std::fs::create_dir_all(&checks).unwrap();
    std::fs::write(
        checks.join("lambda_func.py"),
        format!("{PY_OUTCOME}{CHECKS}"),
    )
    .unwrap();
    std::fs::write(
        checks.join("requirements.txt"),
        "numpy==2.2.6\npandas==2.2.3\nrequests==2.32.3\n",
    )
    .unwrap();
    std::fs::write(
        checks.join("lambda.json"),
        r#"{"memory_mb": 512, "timeout_s": 300, "max_procs": 128}"#,
    )
    .unwrap();
    let flask = c.registry().join("sc-flask");
    std::fs::create_dir_all(&flask).unwrap();
    std::fs::write(flask.join("app.py"), FLASK_APP).unwrap();
    std::fs::write(flask.join("requirements.txt"), "Flask==3.1.3\n").unwrap();
    std::fs::write(
        flask.join("lambda.json"),
        r#"{"entry": "app:app", "type": "wsgi", "timeout_s": 300, "triggers": {"http": {"methods": ["GET"]}}}"#,
    )
    .unwrap();
}

/// Runs every workload on the current worker; `path` names it in messages.
async fn check_workloads(c: &TestCluster, path: &str) {
    let (status, r) = c.call("sc-checks", "{}").await;
    assert_eq!(status, 200, "{path}: {r}");
    eprintln!("{path}: {r}");
    let checks = r["checks"].as_object().unwrap();
    assert!(checks.len() >= 20, "{path}: {r}");
    // multiprocessing's locks, queues and pools need POSIX semaphores, which the C library
    // keeps in /dev/shm: every sandbox has one of its own (a tmpfs of /tmp's size).
    assert_eq!(r["dev_shm"], true, "{path}: {r}");
    let failed: Vec<_> = checks.iter().filter(|(_, v)| *v != "ok").collect();
    assert!(failed.is_empty(), "{path}: failed checks {failed:?}");
    assert_eq!(
        r["denied"],
        json!({
            "mount": "EPERM",
            "unshare_user": "EPERM",
            "ptrace_traceme": "EPERM",
            "unknown_call": "EPERM",
            "clone3": "ENOSYS",
        }),
        "{path}: {r}"
    );

    let a = request(c.addr, "GET", "/run/sc-flask/check/tea", &[], b"").await;
    assert_eq!(a.status, 200, "{path}: {}", a.text());
    assert_eq!(
        a.json(),
        json!({"word": "tea", "thread": "TEA", "echo": "tea"}),
        "{path}"
    );
}

/// How the lambda's sandbox was started: true when forked from a zygote.
async fn forked(c: &TestCluster, name: &str) -> bool {
    let stats = c.stats().await;
    let l: &Value = &stats["lambdas"][name];
    assert_eq!(l["cold_starts"], 1, "{stats}");
    l["zygote_starts"] == 1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_workloads_run_under_the_allowlist_on_both_paths() {
    if !can_run("real_workloads_run_under_the_allowlist_on_both_paths") {
        return;
    }
    let mut c = TestCluster::start(r#"{"import_cache": false}"#).await;
    add_lambdas(&c);
    check_workloads(&c, "fresh").await;
    assert!(!forked(&c, "sc-checks").await, "fresh path expected");
    assert!(!forked(&c, "sc-flask").await, "fresh path expected");

    // The same cluster and package store, a worker with the import cache.
    c.restart("{}").await;
    check_workloads(&c, "forked").await;
    assert!(forked(&c, "sc-checks").await, "forked path expected");
    assert!(forked(&c, "sc-flask").await, "forked path expected");
    c.shutdown().await;
}
