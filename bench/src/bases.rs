//! The bases scenario: cold starts of hello functions on a custom base (a recipe base, the
//! default plus `jq`, built once per machine into the base cache), forked from that base's
//! zygotes and started fresh (`import_cache: false`), beside cold starts on the default base,
//! side by side in one run; every call is a function's first.

use std::fmt::Write as _;
use std::time::Instant;

use anyhow::{Context, Result};
use serde::Serialize;
use serde_json::json;

use crate::cluster::{BenchCluster, HELLO};
use crate::http::BlockingConn;
use crate::scenarios::{worker_patch, Plan};
use crate::stats::{median, ratio_rows};

/// The custom base the scenario makes.
const BASE: &str = "bench-jq";

/// What the scenario measured, in ms per first call.
#[derive(Debug, Clone, Serialize)]
pub struct Bases {
    /// The first cold start on the base in a worker: it starts the base's root zygote.
    pub first_on_base_ms: f64,
    pub base_forked_ms: Vec<f64>,
    pub base_fresh_ms: Vec<f64>,
    pub default_forked_ms: Vec<f64>,
    /// Time to make the base (`built`: apt ran; else the recipe came from the cache).
    pub create_s: f64,
    pub built: bool,
}

/// Runs the scenario on two workers of its own.
pub fn bases(cluster: &mut BenchCluster, plan: &Plan) -> Result<Bases> {
    use admin::bases::recipe;
    let n = if plan.calls < 10 { 3 } else { 20 };
    let bases_dir = cluster.template().bases();
    let plan_jq = recipe::Recipe::new("default", &["jq".to_owned()])?;
    let from = recipe::source(&bases_dir, &cluster.base(), "default")?;
    let cache = admin::cluster::base::default_cache_dir();
    let created = recipe::create(&bases_dir, &cache, BASE, &plan_jq, &from, &|_| {})
        .context("cannot make the bench's custom base (default + jq)")?;
    let on_base = format!(r#"{{"base": "{BASE}"}}"#);
    let add = |name: &str, config: &str| {
        cluster.add_files(name, &[("lambda_func.py", HELLO), ("lambda.json", config)])
    };
    add("base-first", &on_base)?;
    for i in 0..n {
        add(&format!("base-fork-{i}"), &on_base)?;
        add(&format!("base-fresh-{i}"), &on_base)?;
        add(&format!("default-fork-{i}"), "{}")?;
    }
    let mut out = Bases {
        first_on_base_ms: 0.0,
        base_forked_ms: Vec::new(),
        base_fresh_ms: Vec::new(),
        default_forked_ms: Vec::new(),
        create_s: created.seconds,
        built: created.built,
    };
    let timed = |conn: &mut BlockingConn, name: &str| -> Result<f64> {
        let t = Instant::now();
        conn.run(name, "{}")?;
        Ok(t.elapsed().as_secs_f64() * 1e3)
    };
    let mut w = cluster.start_worker(&worker_patch(json!({})))?;
    let mut conn = BlockingConn::connect(w.addr)?;
    out.first_on_base_ms = timed(&mut conn, "base-first")?;
    for i in 0..n {
        out.base_forked_ms
            .push(timed(&mut conn, &format!("base-fork-{i}"))?);
        out.default_forked_ms
            .push(timed(&mut conn, &format!("default-fork-{i}"))?);
    }
    let stats = conn.stats()?;
    w.stop()?;
    let on_base = stats["import_cache"]["zygotes"]
        .as_array()
        .map_or(0, |z| z.iter().filter(|z| z["base"] == BASE).count());
    anyhow::ensure!(
        on_base > 0,
        "no zygote ran on the custom base: {}",
        stats["import_cache"]
    );
    let mut w = cluster.start_worker(&worker_patch(json!({"import_cache": false})))?;
    let mut conn = BlockingConn::connect(w.addr)?;
    for i in 0..n {
        out.base_fresh_ms
            .push(timed(&mut conn, &format!("base-fresh-{i}"))?);
    }
    w.stop()?;
    eprintln!(
        "  cold start on a custom base: forked p50 {:.2} ms, fresh p50 {:.2} ms; default base forked p50 {:.2} ms ({n} functions each)",
        median(&out.base_forked_ms),
        median(&out.base_fresh_ms),
        median(&out.default_forked_ms)
    );
    Ok(out)
}

/// The bases table of the printed report.
pub fn render(o: &mut String, b: &Bases, ms: fn(f64) -> String) {
    let _ = writeln!(
        o,
        "\nbases: first calls of hello functions, on a custom base (default + jq, {} in {:.1} s) and on the default (ms, {} functions each)",
        if b.built { "built" } else { "from the cache" },
        b.create_s,
        b.base_forked_ms.len()
    );
    let _ = writeln!(
        o,
        "{:<28} {:>8} {:>8} {:>8}",
        "cold start", "p50", "max", "x fresh"
    );
    ratio_rows(
        o,
        (28, 7),
        &[
            ("custom base, forked", &b.base_forked_ms),
            ("custom base, fresh", &b.base_fresh_ms),
            ("default base, forked", &b.default_forked_ms),
        ],
        median(&b.base_fresh_ms),
        ms,
    );
    let _ = writeln!(
        o,
        "{:<28} {:>8}",
        "first on the base (its root)",
        ms(b.first_on_base_ms)
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_compares_with_fresh_starts() {
        let b = Bases {
            first_on_base_ms: 120.0,
            base_forked_ms: vec![10.0, 12.0, 8.0],
            base_fresh_ms: vec![40.0, 44.0, 42.0],
            default_forked_ms: vec![6.0, 7.0, 5.0],
            create_s: 8.5,
            built: true,
        };
        let mut o = String::new();
        render(&mut o, &b, |v| format!("{v:.1}"));
        assert!(o.contains("built in 8.5 s"), "{o}");
        assert!(
            o.contains("custom base, forked              10.0     12.0   0.238x"),
            "{o}"
        );
        assert!(
            o.contains("custom base, fresh               42.0     44.0   1.000x"),
            "{o}"
        );
        assert!(o.contains("first on the base (its root)    120.0"), "{o}");
    }
}
