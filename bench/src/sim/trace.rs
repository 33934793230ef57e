//! The simulation's workloads: calls with arrival times, functions and run times, drawn from a
//! fixed seed so that every policy sees the same calls.
//!
//! - [`zipf`]: popularity Zipf(s) over the functions, Poisson arrivals, run times log-normal
//!   per function (median 20 ms across functions, σ 1.0; per call σ 0.3 around the function's).
//! - [`azure_like`]: shaped after the Azure Functions 2019 trace as Shahrad et al. describe it
//!   ("Serverless in the Wild", USENIX ATC 2020): invocation rates spread over orders of
//!   magnitude (log-normal weights, σ 2.5, so that a fifth of the functions take almost all
//!   calls), a third of the functions on timers (periodic), a fifth bursty, the rest Poisson;
//!   mean run times log-normal with the paper's fit (μ -0.38, σ 2.36, in seconds), kept within
//!   10 ms .. 60 s. The trace itself is not used (it is not available here); this is a
//!   synthetic workload with its published shape.
//!
//! In both, a fifth of the functions carry packages: their cold starts and first pulls cost
//! more (see [`super::Costs`]). A sandbox's memory is what an idle hello sandbox takes here
//! (1.9 MiB, the bench's density row), plus 30 MiB for a function with packages, plus a
//! working set: in the Zipf trace log-normal with median 8 MiB (σ 1.0), in the Azure-like one
//! from the Azure trace's memory fit (median 170 MiB, 90% below 400 MiB); at most 1.5 GiB. The rate is set so that the calls keep on average `busy`
//! sandboxes running.

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use rand_distr::{Distribution, Exp, LogNormal, Zipf};

/// One call.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Call {
    /// When it reaches the balancer, in ms from the start.
    pub at_ms: f64,
    pub function: usize,
    /// How long the handler runs once it has a sandbox.
    pub exec_ms: f64,
}

/// A workload: its calls in arrival order.
#[derive(Debug, Clone)]
pub struct Trace {
    pub name: &'static str,
    pub functions: usize,
    /// Whether each function carries packages (a costlier cold start).
    pub heavy: Vec<bool>,
    /// Each function's sandbox size, in MiB.
    pub memory_mb: Vec<f64>,
    pub calls: Vec<Call>,
}

/// Share of the functions that carry packages.
const HEAVY_SHARE: f64 = 0.2;

/// Sandbox sizes for functions with and without packages (see the module's doc).
fn memory(heavy: &[bool], median_mb: f64, sigma: f64, rng: &mut StdRng) -> Vec<f64> {
    let working_set = log_normal(median_mb.ln(), sigma);
    heavy
        .iter()
        .map(|&h| 1.9 + working_set.sample(rng).min(1536.0) + if h { 30.0 } else { 0.0 })
        .collect()
}

/// `calls` calls over `functions` functions, popularity Zipf(`s`).
pub fn zipf(functions: usize, calls: usize, s: f64, busy: f64, seed: u64) -> Trace {
    let functions = functions.max(1);
    let mut rng = StdRng::seed_from_u64(seed);
    let medians = log_normal(20f64.ln(), 1.0);
    let median_ms: Vec<f64> = (0..functions)
        .map(|_| medians.sample(&mut rng).clamp(1.0, 2000.0))
        .collect();
    let heavy: Vec<bool> = (0..functions)
        .map(|_| rng.random_bool(HEAVY_SHARE))
        .collect();
    let memory_mb = memory(&heavy, 8.0, 1.0, &mut rng);
    // The mean run time, weighted by popularity (Zipf: rank k has weight k^-s).
    const CALL_SIGMA: f64 = 0.3;
    let weights: Vec<f64> = (1..=functions).map(|k| (k as f64).powf(-s)).collect();
    let total: f64 = weights.iter().sum();
    let mean_exec = weights
        .iter()
        .zip(&median_ms)
        .map(|(w, m)| w / total * m * (CALL_SIGMA * CALL_SIGMA / 2.0).exp())
        .sum::<f64>();
    let gap = exp(busy.max(1e-9) / mean_exec);
    let rank = Zipf::new(functions as f64, s).unwrap_or_else(|_| unreachable_zipf());
    let per_call = log_normal(0.0, CALL_SIGMA);
    let mut at = 0.0;
    let calls = (0..calls)
        .map(|_| {
            at += gap.sample(&mut rng);
            // Zipf samples ranks 1..=n as floats.
            let function = (rank.sample(&mut rng) as usize).clamp(1, functions) - 1;
            Call {
                at_ms: at,
                function,
                exec_ms: median_ms[function] * per_call.sample(&mut rng),
            }
        })
        .collect();
    Trace {
        name: "zipf",
        functions,
        heavy,
        memory_mb,
        calls,
    }
}

/// How a function is triggered.
#[derive(Debug, Clone, Copy)]
enum Trigger {
    Timer,
    Bursty,
    Poisson,
}

/// About `calls` calls over `functions` functions shaped like the Azure 2019 trace.
pub fn azure_like(functions: usize, calls: usize, busy: f64, seed: u64) -> Trace {
    let functions = functions.max(1);
    let mut rng = StdRng::seed_from_u64(seed);
    let weight = log_normal(0.0, 2.5);
    let run_s = log_normal(-0.38, 2.36);
    let spec: Vec<(f64, f64, Trigger, bool)> = (0..functions)
        .map(|_| {
            let trigger = match rng.random::<f64>() {
                u if u < 0.3 => Trigger::Timer,
                u if u < 0.5 => Trigger::Bursty,
                _ => Trigger::Poisson,
            };
            (
                weight.sample(&mut rng),
                (run_s.sample(&mut rng) * 1000.0).clamp(10.0, 60_000.0),
                trigger,
                rng.random_bool(HEAVY_SHARE),
            )
        })
        .collect();
    let total: f64 = spec.iter().map(|s| s.0).sum();
    let mean_exec: f64 = spec.iter().map(|s| s.0 / total * s.1).sum();
    // Calls per ms over all functions, and the span that gives about `calls` of them.
    let rate = busy.max(1e-9) / mean_exec;
    let horizon = calls as f64 / rate;
    const CALL_SIGMA: f64 = 0.5;
    let per_call = log_normal(-CALL_SIGMA * CALL_SIGMA / 2.0, CALL_SIGMA);
    const BURST: f64 = 8.0;
    let within_burst = exp(1.0 / 50.0);
    let mut out = Vec::with_capacity(calls + calls / 10);
    for (function, &(w, mean_ms, trigger, _)) in spec.iter().enumerate() {
        let r = rate * w / total;
        let mut push = |at: f64, rng: &mut StdRng| {
            out.push(Call {
                at_ms: at,
                function,
                exec_ms: mean_ms * per_call.sample(rng),
            })
        };
        match trigger {
            Trigger::Timer => {
                let period = 1.0 / r;
                let mut at = rng.random::<f64>() * period;
                while at < horizon {
                    push(at, &mut rng);
                    at += period;
                }
            }
            Trigger::Poisson => {
                let gap = exp(r);
                let mut at = gap.sample(&mut rng);
                while at < horizon {
                    push(at, &mut rng);
                    at += gap.sample(&mut rng);
                }
            }
            Trigger::Bursty => {
                // Bursts of geometric size (mean BURST), calls 50 ms apart on average inside.
                let gap = exp(r / BURST);
                let mut at = gap.sample(&mut rng);
                while at < horizon {
                    let mut t = at;
                    loop {
                        push(t, &mut rng);
                        if rng.random_bool(1.0 / BURST) {
                            break;
                        }
                        t += within_burst.sample(&mut rng);
                    }
                    at += gap.sample(&mut rng);
                }
            }
        }
    }
    out.sort_by(|a, b| a.at_ms.total_cmp(&b.at_ms));
    let heavy: Vec<bool> = spec.iter().map(|s| s.3).collect();
    Trace {
        name: "azure-like",
        functions,
        memory_mb: memory(&heavy, 170.0, 0.67, &mut rng),
        heavy,
        calls: out,
    }
}

/// LogNormal(μ, σ) for the fixed, valid parameters above.
fn log_normal(mu: f64, sigma: f64) -> LogNormal<f64> {
    LogNormal::new(mu, sigma.abs()).unwrap_or_else(|_| {
        LogNormal::new(0.0, 1.0).unwrap_or_else(|_| unreachable!("LogNormal(0, 1) is valid"))
    })
}

/// Exp(λ) for a positive, finite rate.
fn exp(lambda: f64) -> Exp<f64> {
    let lambda = if lambda.is_finite() && lambda > 0.0 {
        lambda
    } else {
        1.0
    };
    Exp::new(lambda).unwrap_or_else(|_| unreachable!("Exp of a positive rate is valid"))
}

fn unreachable_zipf() -> Zipf<f64> {
    unreachable!("Zipf of n >= 1 and s >= 0 is valid")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zipf_trace_is_sorted_reproducible_and_skewed() {
        let a = zipf(100, 20_000, 1.0, 10.0, 7);
        assert_eq!(a.calls, zipf(100, 20_000, 1.0, 10.0, 7).calls);
        assert_eq!(a.calls.len(), 20_000);
        assert!(a.calls.windows(2).all(|w| w[0].at_ms <= w[1].at_ms));
        let top = a.calls.iter().filter(|c| c.function == 0).count();
        // Rank 1 of Zipf(1) over 100 has 1/H(100) = 19% of the calls.
        assert!((3000..5000).contains(&top), "{top}");
        // The rate keeps about 10 sandboxes busy: sum of run times / span.
        let busy: f64 = a.calls.iter().map(|c| c.exec_ms).sum::<f64>()
            / a.calls.last().map(|c| c.at_ms).unwrap_or(1.0);
        assert!((6.0..15.0).contains(&busy), "{busy}");
    }

    #[test]
    fn azure_like_trace_concentrates_calls_on_few_functions() {
        let t = azure_like(1000, 50_000, 50.0, 11);
        let n = t.calls.len();
        assert!((30_000..80_000).contains(&n), "{n}");
        assert!(t.calls.windows(2).all(|w| w[0].at_ms <= w[1].at_ms));
        let mut per = vec![0usize; t.functions];
        for c in &t.calls {
            per[c.function] += 1;
        }
        per.sort_unstable_by(|a, b| b.cmp(a));
        let top_fifth: usize = per[..t.functions / 5].iter().sum();
        assert!(
            top_fifth as f64 > 0.9 * n as f64,
            "the top fifth has {top_fifth} of {n}"
        );
        assert!(t.calls.iter().all(|c| c.exec_ms > 0.0));
    }
}
