//! The provisioned scenario: the first call of a function whose module-level init takes a
//! while (2 s; 0.2 s in a smoke run), with `provisioned_concurrency: 1` and without, side by
//! side in one worker; several rounds, each with functions of their own.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use serde::Serialize;
use serde_json::json;

use crate::cluster::BenchCluster;
use crate::http::BlockingConn;
use crate::scenarios::{worker_patch, Plan};
use crate::stats::{median, ratio_rows};

/// What the scenario measured.
#[derive(Debug, Clone, Serialize)]
pub struct Provisioned {
    /// The handler's module-level sleep, in seconds.
    pub init_s: f64,
    /// First-call latency of each round, in ms.
    pub provisioned_ms: Vec<f64>,
    pub on_demand_ms: Vec<f64>,
}

fn handler(init_s: f64) -> String {
    format!("import time\ntime.sleep({init_s})\n\ndef handler(event):\n    return 'ready'\n")
}

/// Runs the scenario on a worker of its own.
pub fn provisioned(cluster: &mut BenchCluster, plan: &Plan) -> Result<Provisioned> {
    let smoke = plan.calls < 10;
    let (init_s, rounds) = if smoke { (0.2, 1) } else { (2.0, 3) };
    let code = handler(init_s);
    for r in 0..rounds {
        cluster.add_files(
            &format!("prov-{r}"),
            &[
                ("lambda_func.py", code.as_str()),
                ("lambda.json", r#"{"provisioned_concurrency": 1}"#),
            ],
        )?;
        cluster.add_files(&format!("demand-{r}"), &[("lambda_func.py", code.as_str())])?;
    }
    let mut w = cluster.start_worker(&worker_patch(json!({})))?;
    let mut conn = BlockingConn::connect(w.addr)?;
    // Wait until every provisioned function has its sandbox ready.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let stats = conn.stats()?;
        let ready = (0..rounds)
            .filter(|r| stats["lambdas"][format!("prov-{r}")]["provisioned"] == 1)
            .count();
        if ready == rounds {
            break;
        }
        if Instant::now() > deadline {
            bail!(
                "provisioned sandboxes not ready after 120 s: {}",
                stats["lambdas"]
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut out = Provisioned {
        init_s,
        provisioned_ms: Vec::new(),
        on_demand_ms: Vec::new(),
    };
    for r in 0..rounds {
        for (name, into) in [
            (format!("prov-{r}"), &mut out.provisioned_ms),
            (format!("demand-{r}"), &mut out.on_demand_ms),
        ] {
            let t = Instant::now();
            conn.run(&name, "{}")?;
            into.push(t.elapsed().as_secs_f64() * 1e3);
        }
    }
    eprintln!(
        "  first call: provisioned p50 {:.2} ms, on demand p50 {:.0} ms (init {init_s} s, {rounds} rounds)",
        median(&out.provisioned_ms),
        median(&out.on_demand_ms)
    );
    w.stop()?;
    Ok(out)
}

/// The provisioned table of the printed report.
pub fn render(o: &mut String, p: &Provisioned, ms: fn(f64) -> String) {
    let _ = writeln!(
        o,
        "\nprovisioned: the first call of a function whose module init sleeps {} s (ms, {} rounds)",
        p.init_s,
        p.provisioned_ms.len()
    );
    let _ = writeln!(
        o,
        "{:<24} {:>8} {:>8} {:>10}",
        "first call", "p50", "max", "x on demand"
    );
    ratio_rows(
        o,
        (24, 9),
        &[
            ("provisioned_concurrency 1", &p.provisioned_ms),
            ("on demand", &p.on_demand_ms),
        ],
        median(&p.on_demand_ms),
        ms,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_compares_with_on_demand() {
        let p = Provisioned {
            init_s: 2.0,
            provisioned_ms: vec![2.0, 3.0, 1.0],
            on_demand_ms: vec![2000.0, 2100.0, 2050.0],
        };
        let mut o = String::new();
        render(&mut o, &p, |v| format!("{v:.1}"));
        assert!(
            o.contains("provisioned_concurrency 1      2.0      3.0     0.001x"),
            "{o}"
        );
        assert!(
            o.contains("on demand                  2050.0   2100.0     1.000x"),
            "{o}"
        );
    }
}
