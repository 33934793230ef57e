//! User namespaces, seen from the host (root only): each lambda acts as a host uid of its own
//! on both start paths, and package import code run by a package zygote gains nothing over
//! the host.

mod common;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use common::{can_run, host_uids, lambda_slot, TestCluster};
use serde_json::{json, Value};
use sha2::Digest as _;

const WHOAMI: &str = r#"import os

def handler(event):
    with open("/host/mine", "w") as f:
        f.write("x")
    return {"uid": os.getuid(), "gid": os.getgid()}
"#;

/// Two lambdas never share a host uid: their processes and the files they write in `/host`
/// belong to two different uids of the range, fresh and forked alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_lambda_acts_as_a_host_uid_of_its_own() {
    if !can_run("each_lambda_acts_as_a_host_uid_of_its_own") {
        return;
    }
    for patch in [r#"{"import_cache": false}"#, "{}"] {
        let mut c = TestCluster::start(patch).await;
        let mut seen = Vec::new();
        for name in ["owner-a", "owner-b"] {
            c.add_handler(name, WHOAMI);
            let (status, r) = c.call(name, "{}").await;
            assert_eq!(status, 200, "{patch}: {r}");
            let slot = lambda_slot(&c, name);
            let host = c.cfg.uid_range_start + slot;
            assert_eq!(r, json!({"uid": slot, "gid": slot}), "{patch}: {name}");
            let stats = c.stats().await;
            let sb = stats["sandboxes"]
                .as_array()
                .unwrap()
                .iter()
                .find(|s| s["lambda"] == name)
                .unwrap_or_else(|| panic!("no sandbox of {name}: {stats}"))
                .clone();
            assert_eq!(host_uids(sb["pid"].as_i64().unwrap()), [host; 4], "{patch}");
            let file = c
                .cfg
                .worker_dir
                .join(format!("handlers/{name}/{}/mine", sb["id"]));
            let md = std::fs::metadata(&file).unwrap();
            use std::os::unix::fs::MetadataExt;
            assert_eq!((md.uid(), md.gid()), (host, host), "{patch}: {name}");
            seen.push(host);
        }
        assert_ne!(seen[0], seen[1], "{patch}: two lambdas share a host uid");
        // A new sandbox of the same lambda is the same host uid again.
        let stats = c.stats().await;
        assert_eq!(stats["user_namespaces"]["enabled"], true, "{stats}");
        c.shutdown().await;
    }
}

/// What a hostile package's import code tries, run at import: in a package zygote it is root
/// of the zygote's user namespace, so each attempt is at something the host owns. Each outcome
/// is kept in `REPORT` (a sandbox forked from the zygote inherits the module, report and all)
/// and printed to the zygote's log.
const EVIL_INIT: &str = r#"import ctypes, errno, json, os, sys

libc = ctypes.CDLL(None, use_errno=True)
MS_BIND, MS_REMOUNT, MS_RDONLY = 0x1000, 0x20, 0x1
NS_GET_PARENT = 0xb702

def outcome(fn):
    try:
        rc = fn()
    except OSError as exc:
        return errno.errorcode.get(exc.errno, str(exc.errno))
    if isinstance(rc, int) and rc < 0:
        e = ctypes.get_errno()
        return errno.errorcode.get(e, str(e))
    return "allowed"

def write(path, text):
    with open(path, "w") as f:
        f.write(text)

def read(path):
    with open(path) as f:
        return f.read()

def status(key):
    for line in read("/proc/self/status").splitlines():
        if line.startswith(key + ":"):
            return line.split(":", 1)[1].strip()

def parent_user_ns():
    fd = os.open("/proc/self/ns/user", os.O_RDONLY)
    try:
        return libc.ioctl(fd, NS_GET_PARENT)
    finally:
        os.close(fd)

def finit_module():
    fd = os.open("/dev/null", os.O_RDONLY)
    try:
        return libc.syscall(313, fd, b"", 0)
    finally:
        os.close(fd)

os.makedirs("/tmp/evil-cg", exist_ok=True)
REPORT = {
    "uid": os.getuid(),
    "uid_map": " ".join(read("/proc/self/uid_map").split()),
    "cap_eff": status("CapEff"),
    "mount_cgroup": outcome(lambda: libc.mount(b"cgroup", b"/tmp/evil-cg", b"cgroup", 0, b"memory")),
    "mount_cgroup2": outcome(lambda: libc.mount(b"cgroup2", b"/tmp/evil-cg", b"cgroup2", 0, None)),
    "remount_proc_sys_rw": outcome(lambda: libc.mount(None, b"/proc/sys", None, MS_BIND | MS_REMOUNT, None)),
    "write_core_pattern": outcome(lambda: write("/proc/sys/kernel/core_pattern", "|/tmp/x")),
    "write_hostname_sysctl": outcome(lambda: write("/proc/sys/kernel/hostname", "evil")),
    "write_uid_map": outcome(lambda: write("/proc/self/uid_map", "0 0 1")),
    "host_user_ns": outcome(parent_user_ns),
    "finit_module": outcome(finit_module),
    "remount_root_rw": outcome(lambda: libc.mount(None, b"/", None, MS_BIND | MS_REMOUNT, None)),
    "write_base": outcome(lambda: write("/var/tmp/evil", "x")),
    "write_base_file": outcome(lambda: write("/etc/os-release", "x")),
    "other_lambda_scratch": outcome(lambda: read(VICTIM_SCRATCH)),
    "other_lambda_code": outcome(lambda: read(VICTIM_CODE)),
}
print("EVILPKG-REPORT " + json.dumps(REPORT, sort_keys=True), file=sys.stderr, flush=True)
"#;

/// A wheel holding one module, `evilpkg/__init__.py`, with its metadata and RECORD.
fn wheel(init: &str) -> Vec<u8> {
    let files = [
        ("evilpkg/__init__.py", init.to_owned()),
        (
            "evilpkg-1.0.dist-info/METADATA",
            "Metadata-Version: 2.1\nName: evilpkg\nVersion: 1.0\n".to_owned(),
        ),
        (
            "evilpkg-1.0.dist-info/WHEEL",
            "Wheel-Version: 1.0\nGenerator: lambdaworker-test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
                .to_owned(),
        ),
    ];
    let mut record = String::new();
    let mut out = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts = zip::write::SimpleFileOptions::default();
    for (name, text) in &files {
        out.start_file(*name, opts).unwrap();
        out.write_all(text.as_bytes()).unwrap();
        let digest = sha2::Sha256::digest(text.as_bytes());
        let hash = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest);
        record.push_str(&format!("{name},sha256={hash},{}\n", text.len()));
    }
    record.push_str("evilpkg-1.0.dist-info/RECORD,,\n");
    out.start_file("evilpkg-1.0.dist-info/RECORD", opts)
        .unwrap();
    out.write_all(record.as_bytes()).unwrap();
    out.finish().unwrap().into_inner()
}

/// A package index on the host (`python3 -m http.server` over `<dir>/simple/evilpkg/`), as
/// pip reads one: killed on drop.
struct Index {
    child: Child,
    dir: PathBuf,
    url: String,
}

impl Index {
    /// An index over `dir`, empty until [`Index::publish`].
    fn serve(dir: &Path) -> Self {
        std::fs::create_dir_all(dir.join("simple/evilpkg")).unwrap();
        let port = common::process::free_port();
        let child = Command::new("python3")
            .args(["-m", "http.server", "--bind", "127.0.0.1"])
            .arg(port.to_string())
            .arg("--directory")
            .arg(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 -m http.server");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "the index never listened");
            std::thread::sleep(Duration::from_millis(50));
        }
        Self {
            child,
            dir: dir.to_owned(),
            url: format!("http://127.0.0.1:{port}/simple"),
        }
    }

    /// Adds the package's one wheel.
    fn publish(&self, wheel: &[u8]) {
        let path = self.dir.join("simple/evilpkg/evilpkg-1.0-py3-none-any.whl");
        std::fs::write(path, wheel).unwrap();
    }
}

impl Drop for Index {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The scratch directory of `name`'s one sandbox.
fn scratch_of(c: &TestCluster, stats: &Value, name: &str) -> PathBuf {
    let sb = stats["sandboxes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["lambda"] == name)
        .unwrap_or_else(|| panic!("no sandbox of {name}: {stats}"));
    c.cfg
        .worker_dir
        .join(format!("handlers/{name}/{}", sb["id"]))
}

/// Package zygotes are on by default, and the import code of a package runs in one: as root of
/// the zygote's user namespace, a host uid of the range with no capability over the host.
/// Every attempt at the host (a cgroup hierarchy, core_pattern, its uid map, the host's user
/// namespace, a kernel module, the shared base, another lambda's files) fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn package_import_code_gains_nothing_over_the_host() {
    if !can_run("package_import_code_gains_nothing_over_the_host") {
        return;
    }
    let index_dir = tempfile::tempdir().unwrap();
    let index = Index::serve(index_dir.path());
    let patch = format!(
        r#"{{"zygote_min_starts": 1, "timeout_s": 120, "pip_index_url": "{}"}}"#,
        index.url
    );
    let mut c = TestCluster::start(&patch).await;
    // The victim first: a secret in its /host (its sandbox stays), its code in the registry.
    c.add_handler(
        "victim",
        "def handler(event):\n    open('/host/secret', 'w').write('victim secret')\n    return 'ok'\n",
    );
    let (status, r) = c.call("victim", "{}").await;
    assert_eq!(status, 200, "{r}");
    let stats = c.stats().await;
    let secret = scratch_of(&c, &stats, "victim").join("secret");
    assert!(secret.is_file());
    let code = c.registry().join("victim/lambda_func.py");
    // The package knows where both are on the host, and tries them.
    let init = format!(
        "VICTIM_SCRATCH = {:?}\nVICTIM_CODE = {:?}\n{EVIL_INIT}",
        secret.display().to_string(),
        code.display().to_string()
    );
    index.publish(&wheel(&init));
    c.add_handler(
        "user",
        "import os\nimport evilpkg\n\ndef handler(event):\n    return {'report': evilpkg.REPORT, 'uid': os.getuid()}\n",
    );
    std::fs::write(c.registry().join("user/requirements.txt"), "evilpkg==1.0\n").unwrap();
    let (status, r) = c.call("user", "{}").await;
    assert_eq!(status, 200, "{r}");
    let stats = c.stats().await;
    assert_eq!(stats["import_cache"]["package_zygotes"], true, "{stats}");
    let zygote = stats["import_cache"]["zygotes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|z| z["packages"] == json!(["evilpkg/1.0"]))
        .unwrap_or_else(|| panic!("no evilpkg zygote: {stats}"))
        .clone();
    assert_eq!(stats["lambdas"]["user"]["zygote_starts"], 1, "{stats}");

    // The report is the zygote's own (the handler inherited the imported module): import code
    // ran as root of the zygote's namespace, which is the range's first host uid.
    let rep = &r["report"];
    eprintln!("the package zygote's import code saw: {rep}");
    assert_eq!(rep["uid"], 0, "{r}");
    let start = c.cfg.uid_range_start;
    assert_eq!(
        rep["uid_map"],
        format!("0 {start} {}", c.cfg.uid_range_size),
        "{r}"
    );
    assert_eq!(
        host_uids(zygote["pid"].as_i64().unwrap()),
        [start; 4],
        "the zygote, from the host"
    );
    let log = std::fs::read_to_string(
        c.cfg
            .worker_dir
            .join(format!("import-cache/zy-{}/stderr", zygote["id"])),
    )
    .unwrap();
    assert!(log.contains("EVILPKG-REPORT "), "{log}");
    for (attempt, allowed) in [
        ("mount_cgroup", &["EPERM"][..]),
        ("write_core_pattern", &["EACCES", "EROFS"]),
        ("write_hostname_sysctl", &["EACCES", "EROFS"]),
        ("write_uid_map", &["EPERM"]),
        ("host_user_ns", &["EPERM"]),
        ("finit_module", &["EPERM"]),
        ("write_base", &["EACCES", "EROFS"]),
        ("write_base_file", &["EACCES", "EROFS"]),
        ("other_lambda_scratch", &["ENOENT"]),
        ("other_lambda_code", &["ENOENT"]),
    ] {
        let got = rep[attempt].as_str().unwrap_or_default();
        assert!(allowed.contains(&got), "{attempt}: {got} in {rep}");
    }
    // cgroup2 may be mounted in a user namespace; it shows the host's tree read-only to it.
    let cg2 = rep["mount_cgroup2"].as_str().unwrap_or_default();
    assert!(["EPERM", "allowed", "EBUSY"].contains(&cg2), "{rep}");
    // Nothing reached the host.
    assert_eq!(std::fs::read_to_string(&secret).unwrap(), "victim secret");
    assert!(!c.cfg.base_dir.join("var/tmp/evil").exists());
    assert_ne!(
        std::fs::read_to_string("/proc/sys/kernel/core_pattern").unwrap(),
        "|/tmp/x\n"
    );
    // The handler itself runs as its own lambda's uid, not as the zygote.
    assert_eq!(r["uid"], lambda_slot(&c, "user"), "{r}");
    c.shutdown().await;
}

/// A cluster under a directory others cannot search (here 0700; `~` of root is often so): a
/// sandbox's setup, as an unprivileged host uid, could not reach the base. The worker says so
/// at start and runs without user namespaces, rather than failing every cold start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_the_sandboxes_cannot_reach_falls_back_and_says_why() {
    if !can_run("a_cluster_the_sandboxes_cannot_reach_falls_back_and_says_why") {
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    worker::init_tracing("info");
    let (tmp, dir, cfg) = common::new_cluster("{}");
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    let fn_dir = dir.join("registry/whoami");
    std::fs::create_dir_all(&fn_dir).unwrap();
    std::fs::write(
        fn_dir.join("lambda_func.py"),
        "import os\n\ndef handler(event):\n    return os.getuid()\n",
    )
    .unwrap();
    let worker = worker::Worker::start(cfg.clone()).await.expect("worker");
    let addr = worker.local_addr();
    let (status, text) = common::http(addr, "POST", "/runLambda/whoami", b"{}").await;
    let (_, stats) = common::http(addr, "GET", "/stats", b"").await;
    worker.shutdown().await.expect("shutdown");
    assert_eq!(status, 200, "{text}");
    assert_eq!(text.trim(), cfg.sandbox_uid.to_string());
    let stats: Value = serde_json::from_str(&stats).unwrap();
    let why = stats["user_namespaces"]["fallback"]
        .as_str()
        .unwrap_or_default();
    let path = tmp.path().display().to_string();
    assert!(
        why.contains(&path) && why.contains("0700") && why.contains("not searchable by others"),
        "{stats}"
    );
    assert_eq!(stats["import_cache"]["package_zygotes"], false, "{stats}");
}
