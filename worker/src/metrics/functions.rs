//! Per-function call metrics: calls by path kind and status, and call latency by start (cold or
//! warm). Bounded: the first `metrics_max_functions` functions seen get their own label; later
//! ones share the `other` entry, so a worker serving many functions exports a bounded number of
//! series.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use super::histogram::Histogram;

/// The label functions beyond the bound share.
pub const OTHER: &str = "other";

/// How a call came in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// `POST /runLambda/<name>`, the AWS Invoke API (RequestResponse).
    Sync,
    /// A queued event (`?async=1`, Invoke with `Event`), counted when it is accepted.
    Async,
    /// An HTTP function (`/run/<name>/...`).
    Http,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Sync => "sync",
            Kind::Async => "async",
            Kind::Http => "http",
        }
    }
}

/// The metrics of one function (or of `other`).
#[derive(Debug, Default)]
pub struct FunctionMetrics {
    /// Calls by (kind, HTTP status); at most 3 kinds times the statuses the API answers.
    calls: Mutex<BTreeMap<(Kind, u16), u64>>,
    pub cold: Histogram,
    pub warm: Histogram,
}

impl FunctionMetrics {
    pub fn count(&self, kind: Kind, status: u16) {
        let mut calls = self.calls.lock().unwrap_or_else(|p| p.into_inner());
        *calls.entry((kind, status)).or_default() += 1;
    }

    pub fn latency(&self, cold: bool, took: Duration) {
        if cold {
            self.cold.record(took)
        } else {
            self.warm.record(took)
        }
    }

    pub fn calls(&self) -> Vec<((Kind, u16), u64)> {
        let calls = self.calls.lock().unwrap_or_else(|p| p.into_inner());
        calls.iter().map(|(k, v)| (*k, *v)).collect()
    }
}

/// Every function's metrics, bounded (see the module docs).
#[derive(Debug)]
pub struct Functions {
    max: usize,
    table: RwLock<HashMap<String, Arc<FunctionMetrics>>>,
    other: Arc<FunctionMetrics>,
}

impl Functions {
    pub fn new(max: usize) -> Self {
        Self {
            max,
            table: RwLock::new(HashMap::new()),
            other: Arc::default(),
        }
    }

    /// The metrics `name` counts into: its own, or `other` once the table is full. A name seen
    /// before costs a read lock and no allocation.
    pub fn of(&self, name: &str) -> Arc<FunctionMetrics> {
        {
            let table = self.table.read().unwrap_or_else(|p| p.into_inner());
            if let Some(m) = table.get(name) {
                return Arc::clone(m);
            }
            if table.len() >= self.max {
                return Arc::clone(&self.other);
            }
        }
        let mut table = self.table.write().unwrap_or_else(|p| p.into_inner());
        if let Some(m) = table.get(name) {
            return Arc::clone(m);
        }
        if table.len() >= self.max {
            return Arc::clone(&self.other);
        }
        Arc::clone(table.entry(name.to_owned()).or_default())
    }

    /// Every function with its metrics, by name, `other` last (when anything counted there).
    pub fn all(&self) -> Vec<(String, Arc<FunctionMetrics>)> {
        let mut all: Vec<(String, Arc<FunctionMetrics>)> = {
            let table = self.table.read().unwrap_or_else(|p| p.into_inner());
            table
                .iter()
                .map(|(k, v)| (k.clone(), Arc::clone(v)))
                .collect()
        };
        all.sort_by(|a, b| a.0.cmp(&b.0));
        let other = &self.other;
        if !other.calls().is_empty()
            || other.cold.snapshot().count + other.warm.snapshot().count > 0
        {
            all.push((OTHER.to_owned(), Arc::clone(other)));
        }
        all
    }

    /// The metrics functions beyond the bound share.
    pub fn other(&self) -> Arc<FunctionMetrics> {
        Arc::clone(&self.other)
    }

    /// The metrics of `name` if it has its own.
    pub fn get(&self, name: &str) -> Option<Arc<FunctionMetrics>> {
        let table = self.table.read().unwrap_or_else(|p| p.into_inner());
        table.get(name).map(Arc::clone)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn functions_beyond_the_bound_share_other() {
        let f = Functions::new(2);
        f.of("a").count(Kind::Sync, 200);
        f.of("b").count(Kind::Http, 200);
        f.of("c").count(Kind::Sync, 404);
        f.of("d").count(Kind::Sync, 404);
        f.of("a").count(Kind::Sync, 200);
        let all = f.all();
        let names: Vec<&str> = all.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["a", "b", OTHER]);
        assert_eq!(all[0].1.calls(), [((Kind::Sync, 200), 2)]);
        assert_eq!(all[2].1.calls(), [((Kind::Sync, 404), 2)]);
        assert!(f.get("c").is_none());
        // Thousands of names keep the table at its bound.
        for i in 0..5000 {
            f.of(&format!("n{i}"))
                .latency(i % 2 == 0, Duration::from_millis(1));
        }
        assert_eq!(f.all().len(), 3);
    }
}
