//! Many workers on several "hosts" behind HAProxy (`admin lb`), each host a network namespace
//! of its own (root only). The hosts and the balancer's namespace are joined by veth pairs on a
//! bridge in a switch namespace; their addresses (10.213.0.0/24, a private test range) exist only
//! inside those namespaces. Each host has its own cluster directory with the same settings and
//! pulls code from the registry server beside the balancer.
//!
//! Checks: 10 000 calls over 200 functions with Zipf popularity get a much higher warm-hit rate
//! with consistent hashing than with round robin (both printed); a worker stopped in the middle
//! of a run (SIGTERM) loses no call; a host lost at once (SIGKILL) loses only the calls it
//! had in progress, the balancer retrying the connections it refused (and nothing that reached
//! a handler); a draining worker finishes the calls it has while new ones go elsewhere.

mod support;

use std::fs::File;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::{ok, tar_gz, text, Cluster, KEY, SECRET};

const SUBNET: &str = "10.213.0";
const LB_IP: &str = "10.213.0.1";
const LB_PORT: u16 = 7000;
const REGISTRY_PORT: u16 = 9000;
const WORKER_PORT: u16 = 5000;
const AGENT_PORT: u16 = 6000;
const HOSTS: usize = 3;
const FUNCTIONS: usize = 200;
const CALLS: usize = 10_000;
const CLIENTS: usize = 8;

/// The test's namespaces, deleted (with their veths) when dropped.
struct Net {
    prefix: String,
    names: Vec<String>,
}

impl Net {
    fn ns(&self, what: &str) -> String {
        format!("{}{what}", self.prefix)
    }

    fn path(&self, what: &str) -> String {
        format!("/run/netns/{}", self.ns(what))
    }

    /// A switch namespace with a bridge, and a namespace per node joined to it.
    fn build(nodes: &[(&str, String)]) -> Net {
        let prefix = format!("lw{}", std::process::id() % 100_000);
        let mut net = Net {
            prefix,
            names: Vec::new(),
        };
        let sw = net.ns("sw");
        ip(&["netns", "add", &sw]);
        net.names.push(sw.clone());
        ip(&["-n", &sw, "link", "add", "br0", "type", "bridge"]);
        ip(&["-n", &sw, "link", "set", "br0", "up"]);
        for (what, addr) in nodes {
            let ns = net.ns(what);
            ip(&["netns", "add", &ns]);
            net.names.push(ns.clone());
            let (inner, outer) = (
                format!("{}{what}", net.prefix),
                format!("{}{what}s", net.prefix),
            );
            ip(&[
                "link", "add", &inner, "type", "veth", "peer", "name", &outer,
            ]);
            ip(&["link", "set", &inner, "netns", &ns]);
            ip(&["link", "set", &outer, "netns", &sw]);
            ip(&["-n", &sw, "link", "set", &outer, "master", "br0", "up"]);
            ip(&[
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{addr}/24"),
                "dev",
                &inner,
            ]);
            ip(&["-n", &ns, "link", "set", &inner, "up"]);
            ip(&["-n", &ns, "link", "set", "lo", "up"]);
        }
        net
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for ns in self.names.iter().rev() {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(out.status.success(), "ip {args:?}: {}", text(&out.stderr));
}

/// `admin args...` inside the namespace at `netns` (only the network namespace changes).
fn admin_in(netns: &str, args: &[&str]) -> Output {
    Command::new("nsenter")
        .arg(format!("--net={netns}"))
        .arg(support::ADMIN)
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .expect("run nsenter admin")
}

fn ok_in(netns: &str, args: &[&str]) -> String {
    let out = admin_in(netns, args);
    assert!(
        out.status.success(),
        "admin {args:?} in {netns}: {}\n{}{}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// One answer: status, `X-Worker-Id`, body.
#[derive(Debug)]
struct Answer {
    status: u16,
    worker: String,
    location: String,
    body: String,
}

/// `POST path` to `addr` with `Connection: close`, read to the end.
fn post(addr: SocketAddr, path: &str, body: &str) -> std::io::Result<Answer> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(60)))?;
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: lb\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut raw = String::new();
    s.read_to_string(&mut raw)?;
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let header = |name: &str| {
        head.lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
            })
            .unwrap_or_default()
    };
    Ok(Answer {
        status,
        worker: header("x-worker-id"),
        location: header("location"),
        body: body.to_owned(),
    })
}

/// `GET path` to `addr`: its body.
fn get_text(addr: SocketAddr, path: &str) -> String {
    get_body(addr, path).1
}

/// `GET path` to `addr`: status and body.
fn get_body(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: w\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let status = raw
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = raw
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// Runs `f` on a thread that has joined the network namespace at `netns`.
fn in_netns<T: Send + 'static>(netns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let netns = netns.to_owned();
    std::thread::spawn(move || {
        let fd = File::open(&netns).expect("open netns");
        nix::sched::setns(fd, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
        f()
    })
    .join()
    .expect("netns thread")
}

/// A Zipf(1.0) sequence of function indexes over `n` functions, from a fixed seed.
fn zipf_trace(n: usize, len: usize) -> Vec<usize> {
    let weights: Vec<f64> = (1..=n).map(|k| 1.0 / k as f64).collect();
    let total: f64 = weights.iter().sum();
    let mut cdf = Vec::with_capacity(n);
    let mut acc = 0.0;
    for w in &weights {
        acc += w / total;
        cdf.push(acc);
    }
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..len)
        .map(|_| {
            // xorshift64*
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            let u = (x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 53) as f64;
            cdf.partition_point(|c| *c < u).min(n - 1)
        })
        .collect()
}

/// What a run of calls got.
#[derive(Debug, Default)]
struct Run {
    ok: usize,
    failed: Vec<String>,
}

/// Sends `trace` through the balancer from `CLIENTS` threads in its namespace; `during(i)` runs
/// once, when call `at` is taken.
fn run_trace(
    lb_ns: &str,
    trace: Vec<usize>,
    at: usize,
    during: impl FnOnce() + Send + 'static,
) -> Run {
    let trace = Arc::new(trace);
    let next = Arc::new(AtomicUsize::new(0));
    let run = Arc::new(Mutex::new(Run::default()));
    let during = Arc::new(Mutex::new(Some(during)));
    let addr: SocketAddr = format!("{LB_IP}:{LB_PORT}").parse().unwrap();
    let threads: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (trace, next, run, during, ns) = (
                Arc::clone(&trace),
                Arc::clone(&next),
                Arc::clone(&run),
                Arc::clone(&during),
                lb_ns.to_owned(),
            );
            std::thread::spawn(move || {
                in_netns(&ns, move || loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= trace.len() {
                        break;
                    }
                    if i == at {
                        if let Some(f) = during.lock().unwrap().take() {
                            f();
                        }
                    }
                    let name = format!("f{}", trace[i]);
                    let answer = post(addr, &format!("/runLambda/{name}"), "{}");
                    let mut r = run.lock().unwrap();
                    match answer {
                        Ok(a) if a.status == 200 && a.body.contains(&name) => r.ok += 1,
                        Ok(a) => r.failed.push(format!("{name}: {} {}", a.status, a.body)),
                        Err(e) => r.failed.push(format!("{name}: {e}")),
                    }
                })
            })
        })
        .collect();
    for t in threads {
        t.join().expect("client thread");
    }
    Arc::try_unwrap(run).unwrap().into_inner().unwrap()
}

/// Warm hits and cold starts summed over the hosts' workers (`/stats` `cache`).
fn cache_counts(net: &Net, hosts: usize) -> (u64, u64) {
    let mut sum = (0, 0);
    for k in 0..hosts {
        let addr: SocketAddr = format!("{SUBNET}.{}:{WORKER_PORT}", 10 + k)
            .parse()
            .unwrap();
        let body = in_netns(&net.path("lb"), move || get_text(addr, "/stats"));
        let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        sum.0 += v["cache"]["hits"].as_u64().unwrap_or(0);
        sum.1 += v["cache"]["misses"].as_u64().unwrap_or(0);
    }
    sum
}

/// A host: its cluster directory, set up to pull code from the registry server.
fn host(k: usize, main: &Cluster) -> Cluster {
    let c = Cluster::new();
    let creds = c.path("config/credentials.json");
    std::fs::copy(main.path("config/credentials.json"), &creds).unwrap();
    let settings = serde_json::json!({
        "registry": format!("http://{LB_IP}:{REGISTRY_PORT}"),
        "credentials_file": creds,
        "worker_host": "0.0.0.0",
        "worker_port": WORKER_PORT,
        "agent_port": AGENT_PORT,
        "worker_id": format!("h{k}"),
        "drain_delay_ms": 2500,
        "handler_cache_size": 90,
        "max_sandboxes_per_lambda": 8,
        "idle_timeout_s": 600,
    });
    ok(&["setconf", &c.flag(), &settings.to_string()]);
    c
}

/// The registry server, in the balancer's namespace.
fn start_registry(lb_ns: &str, main: &Cluster) {
    ok_in(
        lb_ns,
        &[
            "registry",
            &main.flag(),
            &format!("--port={REGISTRY_PORT}"),
            &format!("--host={LB_IP}"),
            &format!("--access-key={KEY}"),
            &format!("--secret-key={SECRET}"),
        ],
    );
}

fn start_worker(net: &Net, k: usize, c: &Cluster) {
    ok_in(&net.path(&format!("h{k}")), &["workers", &c.flag()]);
}

fn start_lb(net: &Net, main: &Cluster, balance: &str) -> String {
    let workers: Vec<String> = (0..HOSTS)
        .map(|k| format!("{SUBNET}.{}:{WORKER_PORT}", 10 + k))
        .collect();
    ok_in(
        &net.path("lb"),
        &[
            "lb",
            &main.flag(),
            &format!("--port={LB_PORT}"),
            &format!("--host={LB_IP}"),
            &format!("--workers={}", workers.join(",")),
            &format!("--balance={balance}"),
        ],
    )
}

/// Connection retries and redispatches summed over the workers in `admin status`'s balancer
/// lines (`retries=N  redispatched=M`).
fn retried(status: &str) -> (u64, u64) {
    let field = |l: &str, key: &str| -> u64 {
        l.split_whitespace()
            .find_map(|w| w.strip_prefix(key))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    status
        .lines()
        .filter(|l| l.contains("retries="))
        .fold((0, 0), |(r, d), l| {
            (r + field(l, "retries="), d + field(l, "redispatched="))
        })
}

fn tools_present() -> bool {
    for tool in ["ip", "nsenter", "haproxy"] {
        let found = Command::new("sh")
            .args([
                "-c",
                &format!("command -v {tool} || test -x /usr/sbin/{tool}"),
            ])
            .output()
            .is_ok_and(|o| o.status.success());
        if !found {
            eprintln!(
                "skipping scale-out: {tool} is not installed (quickstart/deps.sh installs haproxy)"
            );
            return false;
        }
    }
    true
}

#[test]
fn many_hosts_behind_haproxy_keep_functions_warm_and_lose_no_call() {
    if !support::can_run("scale-out") || !tools_present() {
        return;
    }
    let mut nodes = vec![("lb", LB_IP.to_owned())];
    let host_names: Vec<String> = (0..HOSTS).map(|k| format!("h{k}")).collect();
    for (k, name) in host_names.iter().enumerate() {
        nodes.push((name.as_str(), format!("{SUBNET}.{}", 10 + k)));
    }
    let net = Net::build(&nodes);
    let lb_ns = net.path("lb");

    // The registry server and the functions, beside the balancer.
    let main = Cluster::new();
    ok(&[
        "setconf",
        &main.flag(),
        &serde_json::json!({"worker_port": WORKER_PORT, "agent_port": AGENT_PORT}).to_string(),
    ]);
    start_registry(&lb_ns, &main);
    let t = Instant::now();
    for f in 0..=FUNCTIONS {
        let name = if f == FUNCTIONS {
            "slow".to_owned()
        } else {
            format!("f{f}")
        };
        let code = format!(
            "import time\n\ndef handler(event):\n    time.sleep(event.get('sleep', 0))\n    return {{'name': '{name}'}}\n"
        );
        let bundle = main.scratch(&format!("{name}.tar.gz"));
        std::fs::write(&bundle, tar_gz(&[("lambda_func.py", &code)])).unwrap();
        ok_in(
            &lb_ns,
            &[
                "upload",
                &main.flag(),
                &format!("--handler={name}"),
                &format!("--file={}", bundle.display()),
            ],
        );
    }
    eprintln!(
        "uploaded {} functions in {:.1} s",
        FUNCTIONS + 1,
        t.elapsed().as_secs_f64()
    );

    let hosts: Vec<Cluster> = (0..HOSTS).map(|k| host(k, &main)).collect();
    let trace = zipf_trace(FUNCTIONS, CALLS);
    let distinct = {
        let mut d = trace.clone();
        d.sort_unstable();
        d.dedup();
        d.len()
    };

    // Round robin, then consistent hashing, each on freshly started workers.
    let mut rates = Vec::new();
    for balance in ["roundrobin", "consistent"] {
        for (k, c) in hosts.iter().enumerate() {
            start_worker(&net, k, c);
        }
        eprintln!("{}", start_lb(&net, &main, balance).trim());
        let t = Instant::now();
        let run = run_trace(&lb_ns, trace.clone(), usize::MAX, || {});
        let secs = t.elapsed().as_secs_f64();
        let (hits, misses) = cache_counts(&net, HOSTS);
        let rate = hits as f64 / (hits + misses).max(1) as f64;
        eprintln!(
            "{balance}: {} calls ({distinct} distinct functions) in {secs:.1} s, {} failed; warm hits {hits}, cold starts {misses}: warm-hit rate {:.1}%",
            run.ok + run.failed.len(),
            run.failed.len(),
            rate * 100.0
        );
        assert!(
            run.failed.is_empty(),
            "{balance}: {:?}",
            &run.failed[..run.failed.len().min(5)]
        );
        assert_eq!(hits + misses, CALLS as u64, "every call counted once");
        rates.push(rate);
        ok(&["kill", &main.flag()]);
        for c in &hosts {
            ok(&["kill", &c.flag()]);
        }
        // The registry server stopped with the balancer's cluster: start it again.
        start_registry(&lb_ns, &main);
    }
    let (rr, ch) = (rates[0], rates[1]);
    eprintln!(
        "warm-hit rate: consistent hashing {:.1}% vs round robin {:.1}%",
        ch * 100.0,
        rr * 100.0
    );
    assert!(
        ch > rr + 0.05,
        "consistent {ch:.3} must beat round robin {rr:.3} clearly"
    );

    // A worker stopped in the middle of a run (SIGTERM: it drains, then stops accepting).
    for (k, c) in hosts.iter().enumerate() {
        start_worker(&net, k, c);
    }
    start_lb(&net, &main, "consistent");
    let victim = hosts[1].flag();
    let stopper: Arc<Mutex<Option<std::thread::JoinHandle<()>>>> = Arc::default();
    let victim_stop = {
        let stopper = Arc::clone(&stopper);
        move || {
            let t = std::thread::spawn(move || {
                let out = support::admin(&["kill", &victim]);
                eprintln!("stopped h1 mid-run: {}", text(&out.stdout).trim());
            });
            *stopper.lock().unwrap() = Some(t);
        }
    };
    let run = run_trace(&lb_ns, trace.clone(), CALLS / 3, victim_stop);
    if let Some(t) = stopper.lock().unwrap().take() {
        t.join().unwrap();
    }
    let stat = ok_in(&lb_ns, &["status", &main.flag()]);
    eprintln!(
        "failover: {} ok, {} failed of {CALLS}\n{}",
        run.ok,
        run.failed.len(),
        stat.lines()
            .skip_while(|l| !l.starts_with("Balancer"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(
        run.failed.is_empty(),
        "lost calls: {:?}",
        &run.failed[..run.failed.len().min(5)]
    );
    assert_eq!(run.ok, CALLS);

    // A host lost at once (its worker killed with SIGKILL): the calls it had are lost with it,
    // at most one per client; connections refused before the checks mark it down are retried
    // on another worker.
    start_worker(&net, 1, &hosts[1]);
    std::thread::sleep(Duration::from_secs(3)); // the balancer's checks see h1 up again
                                                // An asynchronous call's record is on the worker that took it: the balancer's Location
                                                // leads back there, every time.
    let lb: SocketAddr = format!("{LB_IP}:{LB_PORT}").parse().unwrap();
    let (queued, lookups) = in_netns(&lb_ns, move || {
        let a = post(lb, "/runLambda/f7?async=1", "{}").unwrap();
        let lookups: Vec<(u16, String)> = (0..6).map(|_| get_body(lb, &a.location)).collect();
        (a, lookups)
    });
    assert_eq!(queued.status, 202, "{}", queued.body);
    assert!(queued.location.contains("?worker="), "{queued:?}");
    for (status, body) in &lookups {
        assert_eq!(
            *status, 200,
            "{} through the balancer: {body}",
            queued.location
        );
    }
    eprintln!(
        "async through the balancer: 202 from {}, Location {}, 6 lookups answered 200",
        queued.worker, queued.location
    );

    let before = retried(&ok_in(&lb_ns, &["status", &main.flag()]));
    let pid: i32 = std::fs::read_to_string(hosts[2].path("logs/worker-0.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let crash = move || {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();
    };
    let short: Vec<usize> = trace[..CALLS / 2].to_vec();
    let run = run_trace(&lb_ns, short, CALLS / 8, crash);
    let after = retried(&ok_in(&lb_ns, &["status", &main.flag()]));
    eprintln!(
        "host lost: {} ok, {} failed of {}; the balancer retried {} connections and sent {} calls on to another worker; failed: {:?}",
        run.ok,
        run.failed.len(),
        CALLS / 2,
        after.0 - before.0,
        after.1 - before.1,
        run.failed
    );
    assert!(
        run.failed.len() <= CLIENTS,
        "only calls in progress on the lost host may fail: {:?}",
        run.failed
    );
    assert_eq!(run.ok + run.failed.len(), CALLS / 2);
    // Cleans up what the killed worker left (its sandboxes, cgroups, mounts), then restarts it.
    ok(&["kill", &hosts[2].flag()]);
    start_worker(&net, 2, &hosts[2]);

    // A draining worker finishes its calls; new calls go to the others.
    std::thread::sleep(Duration::from_secs(3)); // the balancer's checks see h1 up again
    let addr: SocketAddr = format!("{LB_IP}:{LB_PORT}").parse().unwrap();
    let owner = in_netns(&lb_ns, move || {
        post(addr, "/runLambda/slow", "{}").unwrap().worker
    });
    let k: usize = owner.trim_start_matches('h').parse().expect("worker id hK");
    // Calls in progress on the owner itself (sent to it directly: through the balancer, the
    // bounded loads would spread four concurrent calls over the workers).
    let direct: SocketAddr = format!("{SUBNET}.{}:{WORKER_PORT}", 10 + k)
        .parse()
        .unwrap();
    let slow: Vec<_> = (0..4)
        .map(|_| {
            let ns = lb_ns.clone();
            std::thread::spawn(move || {
                in_netns(&ns, move || {
                    post(direct, "/runLambda/slow", r#"{"sleep": 3}"#)
                })
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let t = Instant::now();
    let stop = {
        let flag = hosts[k].flag();
        std::thread::spawn(move || support::admin(&["kill", &flag]))
    };
    std::thread::sleep(Duration::from_millis(1500)); // the agent has said `drain` by now
    let after = in_netns(&lb_ns, move || post(addr, "/runLambda/slow", "{}").unwrap());
    for s in slow {
        let a = s.join().unwrap().expect("slow call answered");
        assert_eq!(
            (a.status, a.worker.as_str()),
            (200, owner.as_str()),
            "{}",
            a.body
        );
    }
    let finished = t.elapsed().as_secs_f64();
    let killed = stop.join().unwrap();
    eprintln!(
        "drain: 4 calls of 3 s on {owner} finished {finished:.1} s after its stop began; a new call went to {}; {}",
        after.worker,
        text(&killed.stdout).trim()
    );
    assert_eq!(after.status, 200, "{}", after.body);
    assert_ne!(after.worker, owner, "a draining worker gets no new calls");
    assert!(
        finished >= 2.0,
        "the calls ran to their end ({finished:.1} s)"
    );
}
