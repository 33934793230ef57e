//! The HAProxy configuration `admin lb` writes in front of a cluster's workers
//! (`docs/scale-out.md` says why each setting is what it is).
//!
//! Requests are hashed by the function's name, taken from the path: `/runLambda/NAME`,
//! `/run/NAME/...` and `/2015-03-31/functions/NAME/invocations`. Anything else (`/status`,
//! management) has no name and goes round robin, as HAProxy does when the hash key is missing.
//! With `hash-type consistent` and `hash-balance-factor`, a function stays on one worker (its
//! warm sandboxes) until that worker has more than `factor`% of the average load, then spills to
//! the next worker on the ring. Health checks are `GET /status`; the agent check reads each
//! worker's load agent (weight, `drain`). Retries happen only when the connection to a worker
//! failed (`retry-on conn-failure`), so a request that reached a handler is never sent twice.
//! A `202`'s `Location: /invocations/<id>` gets `?worker=<server>`, and such lookups go back to
//! that server: an asynchronous call's record is on the worker that took it. For Kubernetes
//! ([`kubernetes`]) the workers are found by DNS instead of listed.

use std::fmt::Write;
use std::net::{IpAddr, SocketAddr};

/// How requests are spread.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Balance {
    /// Consistent hashing of the function's name with bounded loads (`hash-balance-factor`).
    Consistent,
    /// Round robin, blind to functions (for comparison).
    Roundrobin,
}

/// One worker behind the balancer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backend {
    /// Its name in HAProxy (`worker-0`, `10.0.0.2-5000`).
    pub name: String,
    pub addr: SocketAddr,
    /// Its load agent's port, if it has one.
    pub agent_port: Option<u16>,
}

/// What the configuration is made from.
#[derive(Debug, Clone)]
pub struct Spec {
    pub bind: SocketAddr,
    pub backends: Vec<Backend>,
    pub balance: Balance,
    /// `hash-balance-factor` (percent of the average load; 0: unbounded).
    pub balance_factor: u32,
    /// The longest a call may take (the workers' `timeout_s`), in seconds: the server timeout
    /// adds a margin to it.
    pub call_timeout_s: u64,
    /// HAProxy's runtime API socket (`show stat`), for `admin status`.
    pub stats_socket: std::path::PathBuf,
    /// Workers found by DNS as well as (or instead of) `backends`.
    pub discovery: Option<Discovery>,
}

/// Workers found by DNS: every address of `name` (Kubernetes: a headless Service's records),
/// re-resolved as they change, up to `max` of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Discovery {
    pub name: String,
    pub port: u16,
    pub agent_port: Option<u16>,
    pub max: u32,
}

/// The balancer in front of the DaemonSet of `contrib/k8s/` (its ConfigMap holds this
/// configuration; a test checks that it is the same).
pub fn kubernetes() -> Spec {
    Spec {
        bind: SocketAddr::from(([0, 0, 0, 0], 8080)),
        backends: Vec::new(),
        balance: Balance::Consistent,
        balance_factor: 150,
        call_timeout_s: 60,
        stats_socket: "/var/lib/haproxy/stats".into(),
        discovery: Some(Discovery {
            name: "lambdaworker-workers.lambdaworker.svc.cluster.local".to_owned(),
            port: 5000,
            agent_port: Some(6000),
            max: 64,
        }),
    }
}

/// Seconds added to a call's timeout for HAProxy's server timeout.
const TIMEOUT_MARGIN_S: u64 = 10;

/// A parse error of a `--workers` entry.
#[derive(Debug, thiserror::Error)]
pub enum AddrError {
    #[error("worker address {entry:?}: expected HOST:PORT or HOST:PORT:AGENT_PORT with HOST an IP address")]
    Form { entry: String },
    #[error("worker address {entry:?}: {what} must be a port from 1 to 65535")]
    Port { entry: String, what: &'static str },
    #[error("worker address {entry:?} is given twice")]
    Twice { entry: String },
    #[error("no worker addresses given")]
    Empty,
}

/// Parses `--workers host:port[:agent_port],...` (IPv6 hosts in brackets). A worker without an
/// agent port gets `port + agent_offset` when the cluster's template has an agent
/// (`agent_offset` is `agent_port - worker_port` there).
pub fn parse_workers(list: &str, agent_offset: Option<i32>) -> Result<Vec<Backend>, AddrError> {
    let mut out: Vec<Backend> = Vec::new();
    for entry in list.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let form = || AddrError::Form {
            entry: entry.to_owned(),
        };
        let port_of = |s: &str, what| {
            s.parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| AddrError::Port {
                    entry: entry.to_owned(),
                    what,
                })
        };
        let (host, rest) = if let Some(v6) = entry.strip_prefix('[') {
            let (h, r) = v6.split_once(']').ok_or_else(form)?;
            (h, r.strip_prefix(':').ok_or_else(form)?)
        } else {
            entry.split_once(':').ok_or_else(form)?
        };
        let ip: IpAddr = host.parse().map_err(|_| form())?;
        let (port, agent) = match rest.split_once(':') {
            Some((p, a)) => (port_of(p, "the port")?, Some(port_of(a, "the agent port")?)),
            None => {
                let port = port_of(rest, "the port")?;
                let agent = agent_offset.and_then(|off| u16::try_from(i32::from(port) + off).ok());
                (port, agent.filter(|a| *a != 0))
            }
        };
        let addr = SocketAddr::new(ip, port);
        if out.iter().any(|b| b.addr == addr) {
            return Err(AddrError::Twice {
                entry: entry.to_owned(),
            });
        }
        let name = match ip {
            IpAddr::V4(v4) => format!("{v4}-{port}"),
            IpAddr::V6(v6) => format!("{}-{port}", v6.to_string().replace(':', "_")),
        };
        out.push(Backend {
            name,
            addr,
            agent_port: agent,
        });
    }
    if out.is_empty() {
        return Err(AddrError::Empty);
    }
    Ok(out)
}

/// The configuration text.
pub fn render(spec: &Spec) -> String {
    let mut c = String::new();
    let server_timeout = spec.call_timeout_s + TIMEOUT_MARGIN_S;
    let _ = write!(
        c,
        "\
# {origin} (docs/scale-out.md).
global
    log stdout format raw local0 info
    maxconn 8192
    stats socket {socket} mode 600 level admin
    hard-stop-after 30s

defaults
    mode http
    log global
    option httplog
    # Log only what went wrong (errors, retries, redispatches): one line per call is too many.
    option dontlog-normal
    timeout connect 2s
    timeout client {server_timeout}s
    timeout server {server_timeout}s
    timeout queue 30s
    timeout http-request 30s
    # Retry only when no connection was made: a request that reached a handler is never
    # sent twice; a retry goes to another worker (redispatch).
    retries 3
    retry-on conn-failure
    option redispatch 1

{resolvers}frontend lambdas
    bind {bind}
    http-request set-var(txn.function) path,field(3,/) if {{ path_beg /runLambda/ }}
    http-request set-var(txn.function) path,field(3,/) if {{ path_beg /run/ }}
    http-request set-var(txn.function) path,field(4,/) if {{ path_beg /2015-03-31/functions/ }} {{ path_end /invocations }}
    default_backend workers

backend workers
",
        origin = if spec.discovery.is_some() {
            "The balancer of contrib/k8s, as admin's balancer module writes it"
        } else {
            "Written by `admin lb`; written again by each run of it"
        },
        socket = spec.stats_socket.display(),
        bind = spec.bind,
        resolvers = if spec.discovery.is_some() {
            "resolvers dns\n    parse-resolv-conf\n    resolve_retries 3\n    timeout retry 1s\n    \
             hold valid 5s\n    hold obsolete 10s\n\n"
        } else {
            ""
        },
    );
    match spec.balance {
        Balance::Consistent => {
            c.push_str("    balance hash var(txn.function)\n    hash-type consistent\n");
            if spec.balance_factor > 0 {
                let _ = writeln!(c, "    hash-balance-factor {}", spec.balance_factor);
            }
        }
        Balance::Roundrobin => c.push_str("    balance roundrobin\n"),
    }
    c.push_str(
        "    option httpchk GET /status\n    http-check expect status 200\n    \
         default-server check inter 1s fall 2 rise 2 weight 100 agent-inter 1s\n",
    );
    // An asynchronous call's record lives on the worker that took it, and its path names no
    // function: the `Location` of a 202 gets `?worker=<server>`, which sends the lookup back
    // to that worker (while it is up; the worker ignores the query).
    c.push_str(
        "    http-response replace-value Location ^(/invocations/[^?]+)$ \\1?worker=%[srv_name] if { status 202 }\n",
    );
    let mut names: Vec<String> = spec.backends.iter().map(|b| b.name.clone()).collect();
    if let Some(d) = &spec.discovery {
        names.extend((1..=d.max).map(|i| format!("worker{i}")));
    }
    for name in &names {
        let _ = writeln!(
            c,
            "    use-server {name} if {{ path_beg /invocations/ }} {{ urlp(worker) -m str {name} }}"
        );
    }
    if let Some(d) = &spec.discovery {
        // `init-addr none`: start with no worker resolved; slots fill as the records appear.
        let _ = write!(
            c,
            "    server-template worker 1-{} {}:{} resolvers dns resolve-prefer ipv4 init-addr none",
            d.max, d.name, d.port
        );
        if let Some(agent) = d.agent_port {
            let _ = write!(c, " agent-check agent-port {agent}");
        }
        c.push('\n');
    }
    for b in &spec.backends {
        let _ = write!(c, "    server {} {}", b.name, b.addr);
        if let Some(agent) = b.agent_port {
            let _ = write!(c, " agent-check agent-port {agent}");
        }
        c.push('\n');
    }
    c
}

/// One worker as HAProxy's runtime API sees it (`show stat`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ServerStat {
    pub name: String,
    /// `UP`, `DOWN`, `DRAIN`, `MAINT`, `UP 1/2`, ...
    pub status: String,
    /// The weight now (the agent's percentage of the configured 1).
    pub weight: String,
    /// Requests being served now, and since the start.
    pub current: u64,
    pub total: u64,
    /// Connections to this worker that failed and were retried (`wretr`), and requests
    /// sent on to another worker after that (`wredis`).
    pub retries: u64,
    pub redispatches: u64,
    /// The last agent check's answer or error.
    pub agent: String,
}

/// Parses `show stat` CSV: the servers of the `workers` backend.
pub fn parse_show_stat(csv: &str) -> Vec<ServerStat> {
    let mut lines = csv.lines();
    let Some(header) = lines.next().and_then(|h| h.strip_prefix("# ")) else {
        return Vec::new();
    };
    let cols: Vec<&str> = header.split(',').collect();
    let col = |name: &str| cols.iter().position(|c| *c == name);
    let (Some(px), Some(sv), Some(st), Some(w), Some(cur), Some(tot)) = (
        col("pxname"),
        col("svname"),
        col("status"),
        col("weight"),
        col("scur"),
        col("stot"),
    ) else {
        return Vec::new();
    };
    // `last_agt`: the agent's last answer (or the check's error); older versions lack it.
    let agent = col("last_agt").or_else(|| col("agent_desc"));
    let (retr, redis) = (col("wretr"), col("wredis"));
    lines
        .map(|l| l.split(',').collect::<Vec<_>>())
        .filter(|f| f.get(px) == Some(&"workers"))
        .filter(|f| !matches!(f.get(sv), Some(&"BACKEND") | Some(&"FRONTEND") | None))
        .map(|f| {
            let get = |i: usize| f.get(i).copied().unwrap_or("").to_owned();
            ServerStat {
                name: get(sv),
                status: get(st),
                weight: get(w),
                current: get(cur).parse().unwrap_or(0),
                total: get(tot).parse().unwrap_or(0),
                retries: retr.and_then(|i| get(i).parse().ok()).unwrap_or(0),
                redispatches: redis.and_then(|i| get(i).parse().ok()).unwrap_or(0),
                agent: agent.map(get).unwrap_or_default(),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn show_stat_lists_the_workers_backend_servers() {
        let csv = "# pxname,svname,qcur,scur,stot,status,weight,wretr,wredis,agent_desc\n\
                   lambdas,FRONTEND,,2,10,OPEN,,,,\n\
                   workers,worker-0,0,1,7,UP,1,0,0,up 100%\n\
                   workers,worker-1,0,0,3,DRAIN,0,4,2,drain\n\
                   workers,BACKEND,0,1,10,UP,1,4,2,\n";
        let s = parse_show_stat(csv);
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].name, "worker-0");
        assert_eq!((s[0].current, s[0].total), (1, 7));
        assert_eq!(s[1].status, "DRAIN");
        assert_eq!(s[1].agent, "drain");
        assert_eq!((s[1].retries, s[1].redispatches), (4, 2));
        assert!(parse_show_stat("garbage").is_empty());
    }

    use super::*;

    fn spec(balance: Balance) -> Spec {
        Spec {
            bind: "127.0.0.1:7000".parse().unwrap(),
            backends: parse_workers("127.0.0.1:5000:6000,10.0.0.2:5000", Some(1000)).unwrap(),
            balance,
            balance_factor: 150,
            call_timeout_s: 60,
            stats_socket: "/c/logs/lb.sock".into(),
            discovery: None,
        }
    }

    /// `contrib/k8s/haproxy.cfg` is what [`kubernetes`] renders;
    /// `LAMBDAWORKER_WRITE_K8S=1 cargo test -p admin --lib kubernetes` writes it again.
    #[test]
    fn the_kubernetes_configmap_holds_this_configuration() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../contrib/k8s/haproxy.cfg");
        let want = render(&kubernetes());
        if std::env::var_os("LAMBDAWORKER_WRITE_K8S").is_some() {
            std::fs::write(path, &want).unwrap();
        }
        let have = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            have == want,
            "{path} is not what balancer::kubernetes() renders; write it again with \
             LAMBDAWORKER_WRITE_K8S=1 cargo test -p admin --lib kubernetes"
        );
    }

    #[test]
    fn the_kubernetes_balancer_finds_workers_by_dns() {
        let c = render(&kubernetes());
        assert!(c.contains("resolvers dns\n    parse-resolv-conf\n"), "{c}");
        assert!(c.contains(
            "    server-template worker 1-64 lambdaworker-workers.lambdaworker.svc.cluster.local:5000 resolvers dns resolve-prefer ipv4 init-addr none agent-check agent-port 6000\n"
        ));
        assert!(c.contains("hash-balance-factor 150"));
        assert!(!c.contains("\n    server "), "no listed workers");
        assert!(c.contains(
            "    use-server worker64 if { path_beg /invocations/ } { urlp(worker) -m str worker64 }\n"
        ));
        assert!(!render(&spec(Balance::Consistent)).contains("resolvers"));
    }

    #[test]
    fn worker_lists_parse_with_and_without_agent_ports() {
        let b = parse_workers("10.0.0.2:5000, 10.0.0.3:5001:7001,[::1]:5000", Some(1000)).unwrap();
        assert_eq!(b[0].addr, "10.0.0.2:5000".parse().unwrap());
        assert_eq!(b[0].agent_port, Some(6000), "the template's offset");
        assert_eq!(b[1].agent_port, Some(7001), "given");
        assert_eq!(b[2].addr, "[::1]:5000".parse().unwrap());
        assert_eq!(b[0].name, "10.0.0.2-5000");
        let none = parse_workers("10.0.0.2:5000", None).unwrap();
        assert_eq!(none[0].agent_port, None, "no agent in the template");
    }

    #[test]
    fn bad_worker_lists_are_refused_naming_the_entry() {
        for (list, says) in [
            ("", "no worker"),
            ("10.0.0.2", "HOST:PORT"),
            ("myhost:5000", "HOST:PORT"),
            ("10.0.0.2:0", "the port"),
            ("10.0.0.2:99999", "the port"),
            ("10.0.0.2:5000:x", "the agent port"),
            ("10.0.0.2:5000,10.0.0.2:5000", "twice"),
            ("[::1:5000", "HOST:PORT"),
        ] {
            let e = parse_workers(list, None).unwrap_err().to_string();
            assert!(e.contains(says), "{list:?}: {e}");
        }
    }

    #[test]
    fn consistent_hashing_by_function_with_bounded_loads_and_agent_checks() {
        let c = render(&spec(Balance::Consistent));
        for line in [
            "bind 127.0.0.1:7000",
            "balance hash var(txn.function)",
            "hash-type consistent",
            "hash-balance-factor 150",
            "option httpchk GET /status",
            "retry-on conn-failure",
            "server 127.0.0.1-5000 127.0.0.1:5000 agent-check agent-port 6000",
            "server 10.0.0.2-5000 10.0.0.2:5000 agent-check agent-port 6000",
            "timeout server 70s",
            "stats socket /c/logs/lb.sock",
            "path,field(3,/) if { path_beg /runLambda/ }",
            "path,field(4,/) if { path_beg /2015-03-31/functions/ } { path_end /invocations }",
            "http-response replace-value Location ^(/invocations/[^?]+)$ \\1?worker=%[srv_name] if { status 202 }",
            "use-server 10.0.0.2-5000 if { path_beg /invocations/ } { urlp(worker) -m str 10.0.0.2-5000 }",
        ] {
            assert!(c.contains(line), "missing {line:?} in\n{c}");
        }
        assert!(
            !c.contains("empty-response"),
            "no retry after a request was sent"
        );
        assert!(!c.contains("roundrobin"));
    }

    #[test]
    fn round_robin_has_no_hash() {
        let c = render(&spec(Balance::Roundrobin));
        assert!(c.contains("balance roundrobin"));
        assert!(!c.contains("hash-type"));
        assert!(
            c.contains("option httpchk GET /status"),
            "still health-checked"
        );
    }
}
