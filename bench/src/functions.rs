//! The functions scenario: deploying a zip through the AWS Lambda management API and calling
//! the function, in local mode (a worker over its own registry directory) and in registry mode
//! (a registry server run in this process on a runtime of its own, and a worker pulling from
//! it), side by side in one run.
//!
//! - deploy: `CreateFunction` (a new name each time) and `UpdateFunctionCode` round trips,
//!   signed with SigV4 as boto3 signs them, against the registry server and against a
//!   local-mode worker, for the hello handler alone and beside 5 MiB of random bytes;
//! - first call: from the arrival of the `201` of a create to the first `200` of
//!   `/runLambda/<name>` (in registry mode: the pull, the unpack and the cold start);
//! - warm calls: the same hello function called one after the other through both workers, in
//!   alternating blocks so that the machine's noise falls on both.

use std::fmt::Write as _;
use std::io::{Read, Write as _};
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{bail, Context, Result};
use base64::Engine as _;
use serde::Serialize;
use serde_json::json;
use worker::aws::Credentials;
use worker::http_client;
use worker::lambda_config::LambdaLimits;
use worker::registry_server::{self, RegistryServer};

use crate::cluster::{BenchCluster, HELLO};
use crate::http::BlockingConn;
use crate::scenarios::{worker_patch, Plan};
use crate::stats::{Samples, Summary};
use crate::system::{check_answer, truncate, EVENT};

/// The bench's own credentials: the registry server and the local-mode worker require them.
const ACCESS_KEY: &str = "AKIDLAMBDAWORKERBENCH";
const SECRET_KEY: &str = "lambdaworker-bench-secret-key";
/// Bytes of random data beside the handler in the large archive.
const LARGE_DATA_BYTES: usize = 5 * 1024 * 1024;
/// How long a first call may keep answering 404 before the row fails.
const VISIBLE_WITHIN: Duration = Duration::from_secs(60);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

/// One row of the functions table.
#[derive(Debug, Clone, Serialize)]
pub struct FunctionsRow {
    /// `create`, `update`, `first call` or `warm call`.
    pub measure: String,
    /// `local worker` / `registry server` (deploys), `local mode` / `registry mode` (calls).
    pub through: String,
    /// The archive: `hello` or `hello + 5 MiB`.
    pub zip: String,
    /// Mean size of the archives sent (zip bytes, before base64).
    pub zip_bytes: usize,
    pub summary: Option<Summary>,
    /// p50 over the p50 of the local row of the same measure and archive.
    pub x_local: Option<f64>,
    pub note: Option<String>,
    pub samples_ms: Vec<f64>,
}

/// What the functions scenario measured.
#[derive(Debug, Clone, Serialize)]
pub struct Functions {
    pub rows: Vec<FunctionsRow>,
    /// Warm calls per block before switching to the other worker.
    pub block: usize,
    /// The registry-mode worker's `registry_revalidate_ms`.
    pub revalidate_ms: u64,
    /// Warm calls: registry mode's p50 over local mode's, and the same for p99.
    pub warm_ratio_p50: Option<f64>,
    pub warm_ratio_p99: Option<f64>,
}

/// The registry server on a runtime of its own; shut down on drop.
struct InProcessServer {
    rt: tokio::runtime::Runtime,
    server: Option<RegistryServer>,
    addr: SocketAddr,
}

impl InProcessServer {
    fn start(opts: registry_server::Options) -> Result<Self> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("registry-server")
            .enable_all()
            .build()
            .context("cannot start a tokio runtime for the registry server")?;
        let server = rt
            .block_on(RegistryServer::start(opts))
            .context("cannot start the registry server")?;
        let addr = server.local_addr();
        Ok(Self {
            rt,
            server: Some(server),
            addr,
        })
    }
}

impl Drop for InProcessServer {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            self.rt.block_on(server.shutdown());
        }
    }
}

/// Sends signed management requests and times them.
struct Deployer {
    creds: Credentials,
    region: String,
    /// Drives the client's requests (a current-thread runtime: only the request runs on it).
    rt: tokio::runtime::Runtime,
}

impl Deployer {
    /// Signs (untimed: the client's hashing of the body is not the platform's cost), then
    /// times the request from sending it to the whole answer read. Fails unless the answer
    /// is `expect`.
    fn send(
        &self,
        addr: SocketAddr,
        method: hyper::Method,
        path: &str,
        body: Vec<u8>,
        expect: u16,
    ) -> Result<Duration> {
        let url = format!("http://{addr}{path}");
        let host = addr.to_string();
        let signed = worker::aws::sigv4::sign(
            method.as_str(),
            &url,
            &[("host", &host)],
            &body,
            &self.creds,
            &self.region,
            SystemTime::now(),
        )?;
        let mut req = http_client::Request::new(
            method.clone(),
            &addr.ip().to_string(),
            addr.port(),
            path,
            REQUEST_TIMEOUT,
        );
        req.headers.insert("host", host.parse()?);
        for (name, value) in signed {
            req.headers.insert(name, value.parse()?);
        }
        req.body = body.into();
        let t = Instant::now();
        let answer = self
            .rt
            .block_on(http_client::send(req))
            .with_context(|| format!("{method} {url}"))?;
        let took = t.elapsed();
        if answer.status != expect {
            bail!(
                "{method} {url} answered {} (expected {expect}): {}",
                answer.status,
                truncate(&answer.body, 500)
            );
        }
        Ok(took)
    }

    fn create(&self, addr: SocketAddr, name: &str, zip: &[u8]) -> Result<Duration> {
        let body = json!({
            "FunctionName": name,
            "Runtime": "python3.12",
            "Role": "arn:aws:iam::000000000000:role/r",
            "Handler": "lambda_func.handler",
            "Code": {"ZipFile": base64::engine::general_purpose::STANDARD.encode(zip)},
        });
        let path = "/2015-03-31/functions";
        self.send(
            addr,
            hyper::Method::POST,
            path,
            body.to_string().into(),
            201,
        )
    }

    fn update(&self, addr: SocketAddr, name: &str, zip: &[u8]) -> Result<Duration> {
        let body = json!({"ZipFile": base64::engine::general_purpose::STANDARD.encode(zip)});
        let path = format!("/2015-03-31/functions/{name}/code");
        self.send(
            addr,
            hyper::Method::PUT,
            &path,
            body.to_string().into(),
            200,
        )
    }
}

/// The hello handler (with a comment naming `revision`, so every archive differs), alone or
/// beside `LARGE_DATA_BYTES` of fresh random bytes stored as is, as `zip` stores data that
/// does not compress.
fn hello_zip(revision: usize, large: bool) -> Result<Vec<u8>> {
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let deflated = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    w.start_file("lambda_func.py", deflated)?;
    w.write_all(format!("{HELLO}# revision {revision}\n").as_bytes())?;
    if large {
        let mut data = vec![0u8; LARGE_DATA_BYTES];
        std::fs::File::open("/dev/urandom")
            .and_then(|mut f| f.read_exact(&mut data))
            .context("cannot read /dev/urandom")?;
        let stored = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Stored);
        w.start_file("data.bin", stored)?;
        w.write_all(&data)?;
    }
    Ok(w.finish()?.into_inner())
}

/// Calls `name` until it answers 200 (a 404 means not visible yet: tried again), returns the
/// time since `since` and how many 404s came first.
fn first_call(conn: &mut BlockingConn, name: &str, since: Instant) -> Result<(Duration, u32)> {
    let path = format!("/runLambda/{name}");
    let mut not_found = 0;
    loop {
        let (status, body) = conn.send("POST", &path, EVENT)?;
        match status {
            200 => {
                check_answer(name, &body)?;
                return Ok((since.elapsed(), not_found));
            }
            404 if since.elapsed() < VISIBLE_WITHIN => {
                not_found += 1;
                std::thread::sleep(Duration::from_millis(2));
            }
            _ => bail!(
                "{path} answered {status}: {}",
                truncate(&String::from_utf8_lossy(&body), 500)
            ),
        }
    }
}

/// Samples being taken for one row.
struct Acc {
    measure: &'static str,
    through: &'static str,
    large: bool,
    samples: Samples,
    zip_bytes: usize,
    not_found: u32,
    retried: usize,
}

impl Acc {
    fn new(measure: &'static str, through: &'static str, large: bool) -> Self {
        Self {
            measure,
            through,
            large,
            samples: Samples::default(),
            zip_bytes: 0,
            not_found: 0,
            retried: 0,
        }
    }

    fn add(&mut self, took: Duration, zip_bytes: usize) {
        self.samples.push(took);
        self.zip_bytes += zip_bytes;
    }

    fn row(self, note: Option<String>) -> FunctionsRow {
        let n = self.samples.len().max(1);
        let note = match (note, self.retried) {
            (note, 0) => note,
            (Some(text), r) => Some(format!(
                "{text}; {r} answered 404 first ({} in all)",
                self.not_found
            )),
            (None, r) => Some(format!(
                "{r} answered 404 first ({} in all)",
                self.not_found
            )),
        };
        FunctionsRow {
            measure: self.measure.to_owned(),
            through: self.through.to_owned(),
            zip: if self.large { "hello + 5 MiB" } else { "hello" }.to_owned(),
            zip_bytes: self.zip_bytes / n,
            summary: self.samples.summary(),
            x_local: None,
            note,
            samples_ms: self.samples.as_ms().to_vec(),
        }
    }
}

/// One side of the comparison: where deploys go and the worker that then runs the code.
struct Side {
    deploy_to: SocketAddr,
    deploy_label: &'static str,
    mode_label: &'static str,
    conn: BlockingConn,
}

/// The functions scenario (see the module docs).
pub fn functions(cluster: &mut BenchCluster, plan: &Plan) -> Result<Functions> {
    let creds = Credentials::new(ACCESS_KEY, SECRET_KEY)?;
    let defaults = cluster
        .template()
        .merge_json(&worker_patch(json!({})).to_string())?;
    let server_dir = cluster.root.join("functions-server");
    let local_dir = cluster.root.join("functions-local");
    for d in [&server_dir, &local_dir] {
        std::fs::create_dir_all(d).with_context(|| format!("cannot create {}", d.display()))?;
    }
    let server = InProcessServer::start(registry_server::Options {
        registry_dir: server_dir,
        host: "127.0.0.1".to_owned(),
        port: 0,
        credentials: Some(creds.clone()),
        region: defaults.aws_region.clone(),
        account_id: defaults.aws_account_id.clone(),
        defaults: LambdaLimits::defaults(&defaults),
    })?;
    let creds_file = cluster.root.join("functions-credentials.json");
    creds.save(&creds_file)?;
    // Every deployed function keeps its sandbox: nothing is evicted during the run.
    let cache = 4 * (plan.deploys + 1) + 16;
    let mut local = cluster.start_worker(&worker_patch(json!({
        "registry_dir": local_dir,
        "credentials_file": creds_file,
        "handler_cache_size": cache,
    })))?;
    let mut remote = cluster.start_worker(&worker_patch(json!({
        "registry": format!("http://{}", server.addr),
        "handler_cache_size": cache,
    })))?;
    let deployer = Deployer {
        creds,
        region: defaults.aws_region.clone(),
        rt: tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("cannot start a tokio runtime")?,
    };
    let mut sides = [
        Side {
            deploy_to: local.addr,
            deploy_label: "local worker",
            mode_label: "local mode",
            conn: BlockingConn::connect(local.addr)?,
        },
        Side {
            deploy_to: server.addr,
            deploy_label: "registry server",
            mode_label: "registry mode",
            conn: BlockingConn::connect(remote.addr)?,
        },
    ];
    let mut rows = Vec::new();
    for large in [false, true] {
        rows.extend(deploys(&deployer, &mut sides, plan, large)?);
    }
    let (warm_rows, block) = warm_calls(&deployer, &mut sides, plan)?;
    rows.extend(warm_rows);
    drop(sides);
    // Both workers must stop cleanly: a failing stop is an error of the run.
    local.stop()?;
    remote.stop()?;
    drop(server);

    for i in 0..rows.len() {
        let local_p50 = rows
            .iter()
            .find(|r| {
                r.measure == rows[i].measure
                    && r.zip == rows[i].zip
                    && r.through.starts_with("local")
            })
            .and_then(|r| r.summary)
            .map(|s| s.p50_ms);
        rows[i].x_local = rows[i].summary.zip(local_p50).map(|(s, l)| s.p50_ms / l);
    }
    let warm = |through: &str| {
        rows.iter()
            .find(|r| r.measure == "warm call" && r.through == through)
            .and_then(|r| r.summary)
    };
    let (l, r) = (warm("local mode"), warm("registry mode"));
    Ok(Functions {
        warm_ratio_p50: l.zip(r).map(|(l, r)| r.p50_ms / l.p50_ms),
        warm_ratio_p99: l.zip(r).map(|(l, r)| r.p99_ms / l.p99_ms),
        rows,
        block,
        revalidate_ms: remote.cfg.registry_revalidate_ms,
    })
}

/// Creates (each followed by its first call) and updates, alternating between the two sides;
/// one create and first call per side first, not counted (the first deploy to a store, the
/// first cold start of a worker).
fn deploys(
    deployer: &Deployer,
    sides: &mut [Side; 2],
    plan: &Plan,
    large: bool,
) -> Result<Vec<FunctionsRow>> {
    let tag = if large { "large" } else { "small" };
    let mut create = [0, 1].map(|s| Acc::new("create", sides[s].deploy_label, large));
    let mut call = [0, 1].map(|s| Acc::new("first call", sides[s].mode_label, large));
    let mut update = [0, 1].map(|s| Acc::new("update", sides[s].deploy_label, large));
    let updated = |s: usize| format!("upd-{tag}-{s}");
    for (s, side) in sides.iter_mut().enumerate() {
        let zip = hello_zip(0, large)?;
        deployer.create(side.deploy_to, &updated(s), &zip)?;
        first_call(&mut side.conn, &updated(s), Instant::now())?;
    }
    eprint!("  deploys ({tag} zip) ");
    for i in 0..plan.deploys {
        crate::check_interrupt()?;
        // Alternate which side goes first.
        for s in [i % 2, 1 - i % 2] {
            let side = &mut sides[s];
            let name = format!("new-{tag}-{s}-{i}");
            let zip = hello_zip(i, large)?;
            let took = deployer.create(side.deploy_to, &name, &zip)?;
            let answered = Instant::now();
            create[s].add(took, zip.len());
            let (to_first, not_found) = first_call(&mut side.conn, &name, answered)?;
            call[s].add(to_first, zip.len());
            call[s].not_found += not_found;
            call[s].retried += usize::from(not_found > 0);
        }
        for s in [i % 2, 1 - i % 2] {
            let zip = hello_zip(i + 1, large)?;
            let took = deployer.update(sides[s].deploy_to, &updated(s), &zip)?;
            update[s].add(took, zip.len());
        }
        eprint!(".");
    }
    eprintln!();
    // The updated functions still answer (the old code or the new, both correct).
    for (s, side) in sides.iter_mut().enumerate() {
        first_call(&mut side.conn, &updated(s), Instant::now())
            .with_context(|| format!("calling {} after its updates", updated(s)))?;
    }
    let [cl, cr] = create;
    let [ul, ur] = update;
    let [fl, fr] = call;
    Ok(vec![
        cl.row(None),
        cr.row(None),
        ul.row(None),
        ur.row(None),
        fl.row(Some("cold start".to_owned())),
        fr.row(Some("pull + unpack + cold start".to_owned())),
    ])
}

/// The same hello function through both workers: `plan.warmup` calls each first, then
/// `plan.calls` each in alternating blocks.
fn warm_calls(
    deployer: &Deployer,
    sides: &mut [Side; 2],
    plan: &Plan,
) -> Result<(Vec<FunctionsRow>, usize)> {
    let zip = hello_zip(0, false)?;
    let mut acc = [0, 1].map(|s| Acc::new("warm call", sides[s].mode_label, false));
    for side in sides.iter_mut() {
        deployer.create(side.deploy_to, "warm-hello", &zip)?;
        first_call(&mut side.conn, "warm-hello", Instant::now())?;
        for _ in 0..plan.warmup {
            let body = side.conn.run("warm-hello", EVENT)?;
            check_answer(side.mode_label, &body)?;
        }
    }
    let block = (plan.calls / 10).clamp(1, 50);
    let mut done = 0;
    let mut which = 0;
    while done < plan.calls {
        crate::check_interrupt()?;
        let n = block.min(plan.calls - done);
        for s in [which, 1 - which] {
            let side = &mut sides[s];
            for _ in 0..n {
                let t = Instant::now();
                let body = side.conn.run("warm-hello", EVENT)?;
                let took = t.elapsed();
                check_answer(side.mode_label, &body)?;
                acc[s].add(took, zip.len());
            }
        }
        which = 1 - which;
        done += n;
    }
    let [l, r] = acc;
    let (l, r) = (l.row(None), r.row(None));
    for row in [&l, &r] {
        if let Some(s) = row.summary {
            eprintln!(
                "  warm, {:<14} n={} p50={:.2} ms p99={:.2} ms",
                row.through, s.n, s.p50_ms, s.p99_ms
            );
        }
    }
    Ok((vec![l, r], block))
}

fn size(bytes: usize) -> String {
    if bytes >= 1024 * 1024 {
        format!("{:.1} MiB", bytes as f64 / 1048576.0)
    } else {
        format!("{:.1} KiB", bytes as f64 / 1024.0)
    }
}

/// The functions table of the printed report.
pub fn render(o: &mut String, f: &Functions, ms: fn(f64) -> String) {
    let _ = writeln!(
        o,
        "\nfunctions: deploy a zip through the management API (SigV4-signed), then call it (ms; x local = p50 over local's p50)"
    );
    let _ = writeln!(
        o,
        "{:<11} {:<16} {:<14} {:>9} {:>4} {:>8} {:>8} {:>8} {:>8} {:>8}  note",
        "measure", "through", "zip", "size", "n", "p50", "p90", "p99", "max", "x local"
    );
    for r in &f.rows {
        let figures = match &r.summary {
            Some(s) => format!(
                "{:>8} {:>8} {:>8} {:>8}",
                ms(s.p50_ms),
                ms(s.p90_ms),
                ms(s.p99_ms),
                ms(s.max_ms)
            ),
            None => format!("{:>8} {:>8} {:>8} {:>8}", "-", "-", "-", "-"),
        };
        let x = r.x_local.map_or("-".to_owned(), |x| format!("{x:.2}x"));
        let _ = writeln!(
            o,
            "{:<11} {:<16} {:<14} {:>9} {:>4} {figures} {x:>8}  {}",
            r.measure,
            r.through,
            r.zip,
            size(r.zip_bytes),
            r.summary.map_or(0, |s| s.n),
            r.note.as_deref().unwrap_or("")
        );
    }
    let ratio = |x: Option<f64>| x.map_or("-".to_owned(), |x| format!("{x:.2}x"));
    let _ = writeln!(
        o,
        "warm calls, registry mode over local mode: p50 {}, p99 {} (blocks of {} calls, alternating; registry_revalidate_ms {})",
        ratio(f.warm_ratio_p50),
        ratio(f.warm_ratio_p99),
        f.block,
        f.revalidate_ms
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(zip: &[u8]) -> Vec<(String, u64, String)> {
        let mut a = zip::ZipArchive::new(std::io::Cursor::new(zip)).unwrap();
        let mut out = Vec::new();
        for i in 0..a.len() {
            let mut f = a.by_index(i).unwrap();
            let mut text = String::new();
            if f.name().ends_with(".py") {
                f.read_to_string(&mut text).unwrap();
            }
            out.push((f.name().to_owned(), f.size(), text));
        }
        out
    }

    #[test]
    fn the_small_archive_is_the_hello_handler_with_its_revision() {
        let zip = hello_zip(7, false).unwrap();
        let e = entries(&zip);
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].0, "lambda_func.py");
        assert!(e[0].2.starts_with(HELLO), "{}", e[0].2);
        assert!(e[0].2.ends_with("# revision 7\n"), "{}", e[0].2);
        assert_ne!(zip, hello_zip(8, false).unwrap());
    }

    #[test]
    fn the_large_archive_carries_fresh_incompressible_data() {
        let a = hello_zip(1, true).unwrap();
        let b = hello_zip(1, true).unwrap();
        let e = entries(&a);
        assert_eq!(e.len(), 2);
        assert_eq!(e[0].0, "lambda_func.py");
        assert_eq!(
            (e[1].0.as_str(), e[1].1),
            ("data.bin", LARGE_DATA_BYTES as u64)
        );
        assert!(
            a.len() > LARGE_DATA_BYTES,
            "stored as is: {} bytes",
            a.len()
        );
        // Same revision, different random data: no two archives are the same.
        assert_ne!(a, b);
    }

    #[test]
    fn a_row_names_the_calls_that_answered_404_first() {
        let mut acc = Acc::new("first call", "registry mode", true);
        acc.add(Duration::from_millis(10), 100);
        acc.add(Duration::from_millis(30), 300);
        let row = acc.row(Some("cold start".to_owned()));
        assert_eq!(row.zip, "hello + 5 MiB");
        assert_eq!(row.zip_bytes, 200);
        assert_eq!(row.summary.map(|s| s.n), Some(2));
        assert_eq!(row.note.as_deref(), Some("cold start"));
        let mut acc = Acc::new("first call", "local mode", false);
        acc.add(Duration::from_millis(1), 10);
        acc.not_found = 3;
        acc.retried = 1;
        let row = acc.row(Some("cold start".to_owned()));
        assert_eq!(
            row.note.as_deref(),
            Some("cold start; 1 answered 404 first (3 in all)")
        );
    }
}
