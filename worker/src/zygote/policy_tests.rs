//! The import cache's policy ([`Policy`]) against a recording fake [`Maker`]: which zygote a
//! cold start forks from, when zygotes are made and retired, and that nothing waits behind a
//! zygote being started or forked. No root, no processes.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Condvar, Mutex};
use std::time::Duration;

use nix::errno::Errno;

use super::*;
use crate::zygote::{ChildFault, PrepareError, ZygoteFault, FORK_TIMEOUT, ROOT_RETRY};

#[derive(Debug)]
struct FakeZygote {
    id: u64,
    packages: Vec<String>,
    parent: Option<Arc<FakeZygote>>,
    forks: AtomicU64,
    retired: AtomicBool,
    /// The maker's record of retirements.
    retirements: Arc<Mutex<Vec<u64>>>,
}

impl Handle for FakeZygote {
    fn id(&self) -> u64 {
        self.id
    }
    fn pid(&self) -> i32 {
        1000 + self.id as i32
    }
    fn packages(&self) -> &[String] {
        &self.packages
    }
    fn parent_id(&self) -> Option<u64> {
        self.parent.as_ref().map(|p| p.id)
    }
    fn note_fork(&self) {
        self.forks.fetch_add(1, Ordering::Relaxed);
    }
    fn set_retired(&self) {
        self.retired.store(true, Ordering::Relaxed);
        self.retirements.lock().unwrap().push(self.id);
    }
}

/// What the fake was asked to do, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Call {
    StartRoot,
    ForkZygote { parent: u64, packages: Vec<String> },
    ForkHandler { zygote: u64 },
}

/// Holds a call until the test opens it; tells the test when the call has come.
#[derive(Debug, Default)]
struct Gate {
    state: Mutex<(bool, bool)>,
    cv: Condvar,
}

impl Gate {
    fn pass(&self) {
        let mut g = self.state.lock().unwrap();
        g.0 = true;
        self.cv.notify_all();
        while !g.1 {
            g = self.cv.wait(g).unwrap();
        }
    }

    fn wait_entered(&self) {
        let mut g = self.state.lock().unwrap();
        while !g.0 {
            let (next, timeout) = self.cv.wait_timeout(g, Duration::from_secs(5)).unwrap();
            assert!(!timeout.timed_out(), "the call never came");
            g = next;
        }
    }

    fn open(&self) {
        self.state.lock().unwrap().1 = true;
        self.cv.notify_all();
    }
}

#[derive(Debug, Default)]
struct FakeMaker {
    next_id: AtomicU64,
    calls: Mutex<Vec<Call>>,
    /// How many of the next root starts fail.
    root_failures: Mutex<u32>,
    /// Forks of a zygote for this set fail so.
    zygote_faults: Mutex<HashMap<Vec<String>, Fault>>,
    /// Handler forks from this zygote fail so.
    handler_faults: Mutex<HashMap<u64, Fault>>,
    /// Calls held until opened: the root start (the empty set), or the fork of a set's zygote.
    gates: Mutex<HashMap<Vec<String>, Arc<Gate>>>,
    /// Ids of the zygotes retired, in order.
    retirements: Arc<Mutex<Vec<u64>>>,
}

fn failure(fault: Fault, zygote: u64) -> ForkError {
    match fault {
        Fault::Worker => ForkError::Prepare(PrepareError::Socket {
            what: "create the reply socket",
            errno: Errno::EMFILE,
        }),
        Fault::Zygote => ForkError::Zygote {
            zygote,
            pid: 1000 + zygote as i32,
            source: ZygoteFault::Timeout(FORK_TIMEOUT),
        },
        Fault::Child => ForkError::Child {
            zygote,
            source: ChildFault::Failed {
                step: "attach /host".into(),
                reason: "Invalid argument".into(),
            },
        },
    }
}

impl FakeMaker {
    fn record(&self, call: Call) {
        self.calls.lock().unwrap().push(call);
    }

    fn gate(&self, set: &[String]) -> Arc<Gate> {
        let mut gates = self.gates.lock().unwrap();
        Arc::clone(gates.entry(set.to_vec()).or_default())
    }

    fn pass_gate(&self, set: &[String]) {
        let gate = self.gates.lock().unwrap().get(set).cloned();
        if let Some(g) = gate {
            g.pass();
        }
    }

    fn zygote(&self, packages: &[String], parent: Option<&Arc<FakeZygote>>) -> Arc<FakeZygote> {
        Arc::new(FakeZygote {
            id: self.next_id.fetch_add(1, Ordering::Relaxed) + 1,
            packages: packages.to_vec(),
            parent: parent.cloned(),
            forks: AtomicU64::new(0),
            retired: AtomicBool::new(false),
            retirements: Arc::clone(&self.retirements),
        })
    }
}

impl Maker for FakeMaker {
    type Zygote = FakeZygote;
    /// The id of the zygote the "sandbox" was forked from.
    type Sandbox = u64;
    type Request<'a> = ();

    fn start_root(&self) -> Result<Arc<FakeZygote>, StartError> {
        self.record(Call::StartRoot);
        self.pass_gate(&[]);
        let mut failures = self.root_failures.lock().unwrap();
        if *failures > 0 {
            *failures -= 1;
            return Err(StartError::Socket {
                zygote: 0,
                errno: Errno::EMFILE,
            });
        }
        Ok(self.zygote(&[], None))
    }

    fn fork_zygote(
        &self,
        parent: &Arc<FakeZygote>,
        packages: &[String],
    ) -> Result<Arc<FakeZygote>, ForkError> {
        self.record(Call::ForkZygote {
            parent: parent.id,
            packages: packages.to_vec(),
        });
        self.pass_gate(packages);
        if let Some(fault) = self.zygote_faults.lock().unwrap().get(packages) {
            return Err(failure(*fault, parent.id));
        }
        Ok(self.zygote(packages, Some(parent)))
    }

    fn fork_handler(&self, zygote: &Arc<FakeZygote>, _: &()) -> Result<u64, ForkError> {
        self.record(Call::ForkHandler { zygote: zygote.id });
        if let Some(fault) = self.handler_faults.lock().unwrap().get(&zygote.id) {
            return Err(failure(*fault, zygote.id));
        }
        Ok(zygote.id)
    }
}

fn cache(size: usize, min_starts: u64, package_zygotes: bool) -> Policy<FakeMaker> {
    Policy::new(
        FakeMaker::default(),
        Rules {
            size,
            min_starts,
            package_zygotes,
            root_retry: ROOT_RETRY,
        },
    )
}

fn set(packages: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = packages.iter().map(|p| format!("{p}/1")).collect();
    v.sort();
    v
}

/// A cold start of `packages`: the id of the zygote its sandbox was forked from.
fn cold(c: &Policy<FakeMaker>, packages: &[&str]) -> Option<u64> {
    c.fork_handler(&set(packages), &())
        .expect("the fork succeeds")
        .map(|(from, z)| {
            assert_eq!(from, z.id);
            from
        })
}

/// Ids of the live zygotes and the package set of each.
fn live(c: &Policy<FakeMaker>) -> Vec<(u64, Vec<String>)> {
    let s = c.lock();
    s.live
        .iter()
        .map(|l| (l.zygote.id, l.zygote.packages.clone()))
        .collect()
}

fn calls(c: &Policy<FakeMaker>) -> Vec<Call> {
    std::mem::take(&mut *c.maker.calls.lock().unwrap())
}

fn handler(zygote: u64) -> Call {
    Call::ForkHandler { zygote }
}

fn new_zygote(parent: u64, packages: &[&str]) -> Call {
    Call::ForkZygote {
        parent,
        packages: set(packages),
    }
}

/// Runs `probe` on its own thread and requires it to finish within 2 s while `gate` holds
/// another call (opened at once if not, so that a failing test ends instead of hanging).
fn without_waiting<T: Send>(gate: &Gate, probe: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|scope| {
        let (tx, rx) = mpsc::channel();
        scope.spawn(move || {
            let _ = tx.send(probe());
        });
        match rx.recv_timeout(Duration::from_secs(2)) {
            Ok(v) => v,
            Err(_) => {
                gate.open();
                panic!("the call waited for the held one");
            }
        }
    })
}

#[test]
fn without_package_zygotes_every_set_forks_from_the_root() {
    let c = cache(8, 1, false);
    c.start().unwrap();
    c.start().unwrap();
    for packages in [&["a"][..], &["a"], &["a", "b"], &[]] {
        assert_eq!(cold(&c, packages), Some(1));
    }
    assert_eq!(
        calls(&c),
        [
            Call::StartRoot,
            handler(1),
            handler(1),
            handler(1),
            handler(1)
        ]
    );
    assert_eq!(c.counters.forks.load(Ordering::Relaxed), 4);
    assert_eq!(c.counters.created.load(Ordering::Relaxed), 1);
}

#[test]
fn a_set_gets_its_zygote_after_min_starts_cold_starts() {
    let c = cache(8, 2, true);
    c.start().unwrap();
    assert_eq!(cold(&c, &["a"]), Some(1), "first cold start: from the root");
    assert_eq!(cold(&c, &["a"]), Some(2), "second: a zygote for the set");
    assert_eq!(cold(&c, &["a"]), Some(2), "then from it");
    // A superset forks from the largest subset, and needs its own starts.
    assert_eq!(cold(&c, &["a", "b"]), Some(2));
    assert_eq!(
        calls(&c),
        [
            Call::StartRoot,
            handler(1),
            new_zygote(1, &["a"]),
            handler(2),
            handler(2),
            handler(2)
        ]
    );
    assert_eq!(live(&c), [(1, set(&[])), (2, set(&["a"]))]);
    // Forking the zygote counts as a fork of the root.
    assert_eq!(c.counters.forks.load(Ordering::Relaxed), 5);
    assert_eq!(
        c.lock().demand.count(&set(&["a"])),
        1,
        "counting starts again"
    );
}

#[test]
fn the_best_zygote_is_the_largest_subset_most_recently_used_among_equals() {
    let c = cache(8, 1, true);
    let m = &c.maker;
    let mut s = c.lock();
    assert!(s.best(&set(&["a"])).is_none(), "no root, no zygote");
    let root = m.zygote(&[], None);
    let a = m.zygote(&set(&["a"]), Some(&root));
    let b = m.zygote(&set(&["b"]), Some(&root));
    let abc = m.zygote(&set(&["a", "b", "c"]), Some(&a));
    for z in [&root, &a, &b, &abc] {
        s.add(Arc::clone(z));
    }
    let best = |s: &State<FakeZygote>, p: &[&str]| s.best(&set(p)).map(|z| z.id);
    assert_eq!(
        best(&s, &["a", "b"]),
        Some(b.id),
        "equal sizes: the most recent"
    );
    s.used(&a, &c.counters);
    assert_eq!(best(&s, &["a", "b"]), Some(a.id));
    assert_eq!(best(&s, &["a", "b", "c", "d"]), Some(abc.id));
    assert_eq!(best(&s, &["c"]), Some(root.id));
    assert_eq!(best(&s, &[]), Some(root.id));
}

#[test]
fn a_full_cache_retires_the_least_recently_used_leaf() {
    let c = cache(3, 1, true);
    c.start().unwrap();
    assert_eq!(cold(&c, &["a"]), Some(2));
    // A sandbox forked from b/1's zygote, holding it.
    let (_, b) = c.fork_handler(&set(&["b"]), &()).unwrap().unwrap();
    assert_eq!(b.id, 3);
    assert_eq!(cold(&c, &["a"]), Some(2));
    // Full: b/1's is the least recently used leaf.
    assert_eq!(cold(&c, &["c"]), Some(4));
    assert_eq!(
        live(&c),
        [(1, set(&[])), (2, set(&["a"])), (4, set(&["c"]))]
    );
    assert_eq!(c.counters.retired.load(Ordering::Relaxed), 1);
    assert!(b.retired.load(Ordering::Relaxed));
    let retired: Vec<u64> = c.zygotes().retired.iter().map(|z| z.id).collect();
    assert_eq!(retired, [3], "retired, and alive while its sandbox is");
    drop(b);
    assert!(c.zygotes().retired.is_empty());
}

#[test]
fn a_zygote_with_children_is_no_leaf() {
    let c = cache(3, 1, true);
    c.start().unwrap();
    assert_eq!(cold(&c, &["a"]), Some(2));
    assert_eq!(cold(&c, &["a", "b"]), Some(3), "a child of a");
    assert_eq!(cold(&c, &["a", "b"]), Some(3));
    // a is the least recently used, but has a child: the leaf a/b goes.
    assert_eq!(cold(&c, &["c"]), Some(4));
    assert_eq!(
        live(&c),
        [(1, set(&[])), (2, set(&["a"])), (4, set(&["c"]))]
    );
}

#[test]
fn neither_the_root_nor_the_parent_forked_from_makes_room() {
    let c = cache(1, 1, true);
    c.start().unwrap();
    assert_eq!(cold(&c, &["a"]), Some(1), "only the root, which stays");
    let c = cache(2, 1, true);
    c.start().unwrap();
    assert_eq!(cold(&c, &["a"]), Some(2));
    // a/b would fork from a, the only leaf: a stays, and a/b forks from it.
    assert_eq!(cold(&c, &["a", "b"]), Some(2));
    assert_eq!(live(&c), [(1, set(&[])), (2, set(&["a"]))]);
    assert_eq!(
        calls(&c),
        [
            Call::StartRoot,
            new_zygote(1, &["a"]),
            handler(2),
            handler(2)
        ]
    );
}

#[test]
fn retire_lru_spares_the_root_and_keep() {
    let c = cache(8, 1, true);
    c.start().unwrap();
    cold(&c, &["a"]);
    cold(&c, &["b"]);
    assert_eq!(c.retire_lru(Some(2)), Some(3));
    assert_eq!(c.retire_lru(None), Some(2));
    assert_eq!(c.retire_lru(None), None, "the root stays");
    assert_eq!(live(&c), [(1, set(&[]))]);
    assert_eq!(c.counters.retired.load(Ordering::Relaxed), 2);
}

#[test]
fn a_zygote_is_retired_only_for_its_own_fault() {
    let c = cache(8, 1, false);
    c.start().unwrap();
    for fault in [Fault::Worker, Fault::Child] {
        c.maker.handler_faults.lock().unwrap().insert(1, fault);
        let err = c.fork_handler(&set(&[]), &()).unwrap_err();
        assert_eq!(err.fault(), fault);
        assert_eq!(live(&c), [(1, set(&[]))], "{fault:?}: the zygote stays");
    }
    c.maker
        .handler_faults
        .lock()
        .unwrap()
        .insert(1, Fault::Zygote);
    let err = c.fork_handler(&set(&[]), &()).unwrap_err();
    assert!(err.to_string().contains("zygote 1 (pid 1001)"), "{err}");
    assert_eq!(live(&c), [], "a broken zygote is retired");
    assert!(
        c.zygotes().retired.is_empty(),
        "nothing held the broken zygote"
    );
    assert_eq!(c.counters.fork_failures.load(Ordering::Relaxed), 3);
    // The next cold start makes a new root.
    assert_eq!(cold(&c, &[]), Some(2));
    assert_eq!(
        calls(&c),
        [
            Call::StartRoot,
            handler(1),
            handler(1),
            handler(1),
            Call::StartRoot,
            handler(2)
        ]
    );
}

#[test]
fn a_failed_zygote_fork_falls_back_to_its_parent_or_a_fresh_sandbox() {
    let c = cache(8, 1, true);
    c.start().unwrap();
    c.maker
        .zygote_faults
        .lock()
        .unwrap()
        .insert(set(&["a"]), Fault::Child);
    assert_eq!(cold(&c, &["a"]), Some(1), "from the parent");
    assert_eq!(cold(&c, &["a"]), Some(1), "tried again, from the parent");
    c.maker
        .zygote_faults
        .lock()
        .unwrap()
        .insert(set(&["a"]), Fault::Zygote);
    assert_eq!(
        cold(&c, &["a"]),
        None,
        "the parent is retired: a fresh sandbox"
    );
    assert_eq!(
        calls(&c),
        [
            Call::StartRoot,
            new_zygote(1, &["a"]),
            handler(1),
            new_zygote(1, &["a"]),
            handler(1),
            new_zygote(1, &["a"])
        ]
    );
    assert_eq!(live(&c), []);
    assert!(c.lock().creating.is_empty());
}

#[test]
fn after_a_failed_root_start_cold_starts_wait_root_retry() {
    let mut c = cache(8, 1, false);
    c.rules.root_retry = Duration::from_millis(200);
    *c.maker.root_failures.lock().unwrap() = 1;
    assert!(matches!(c.start(), Err(StartError::Socket { .. })));
    assert_eq!(cold(&c, &["a"]), None, "no new try yet: a fresh sandbox");
    assert!(matches!(c.start(), Err(StartError::RecentlyFailed { .. })));
    assert_eq!(calls(&c), [Call::StartRoot]);
    std::thread::sleep(Duration::from_millis(250));
    assert_eq!(cold(&c, &["a"]), Some(1));
    assert_eq!(calls(&c), [Call::StartRoot, handler(1)]);
}

#[test]
fn while_the_root_starts_cold_starts_get_no_zygote() {
    let c = cache(8, 1, true);
    let gate = c.maker.gate(&[]);
    let (a, again, started) = std::thread::scope(|scope| {
        let starting = scope.spawn(|| c.start());
        gate.wait_entered();
        let (a, again) = without_waiting(&gate, || (cold(&c, &["a"]), c.start()));
        gate.open();
        (a, again, starting.join().unwrap())
    });
    assert_eq!(a, None);
    assert!(matches!(again, Err(StartError::Starting)), "{again:?}");
    started.unwrap();
    assert_eq!(
        cold(&c, &["a"]),
        Some(2),
        "then a/1's zygote, from the root"
    );
    assert_eq!(
        calls(&c),
        [Call::StartRoot, new_zygote(1, &["a"]), handler(2)]
    );
}

#[test]
fn a_set_being_made_forks_from_the_best_zygote_and_others_go_on() {
    let c = cache(8, 1, true);
    c.start().unwrap();
    let gate = c.maker.gate(&set(&["a"]));
    let (a, b, made) = std::thread::scope(|scope| {
        let making = scope.spawn(|| cold(&c, &["a"]));
        gate.wait_entered();
        let (a, b) = without_waiting(&gate, || (cold(&c, &["a"]), cold(&c, &["b"])));
        gate.open();
        (a, b, making.join().unwrap())
    });
    assert_eq!(a, Some(1), "a/1's zygote is being made: from the root");
    assert_eq!(b, Some(2), "b/1's zygote is made meanwhile");
    assert_eq!(made, Some(3));
    assert_eq!(
        calls(&c),
        [
            Call::StartRoot,
            new_zygote(1, &["a"]),
            handler(1),
            new_zygote(1, &["b"]),
            handler(2),
            handler(3)
        ]
    );
}

#[test]
fn zygotes_being_made_take_room_and_their_parents_stay() {
    let c = cache(2, 1, true);
    c.start().unwrap();
    let gate = c.maker.gate(&set(&["a"]));
    let (b, made) = std::thread::scope(|scope| {
        let making = scope.spawn(|| cold(&c, &["a"]));
        gate.wait_entered();
        let b = without_waiting(&gate, || cold(&c, &["b"]));
        gate.open();
        (b, making.join().unwrap())
    });
    assert_eq!(
        b,
        Some(1),
        "the root and a/1's zygote fill the cache; the root stays"
    );
    assert_eq!(made, Some(2));

    let c = cache(3, 1, true);
    c.start().unwrap();
    assert_eq!(cold(&c, &["a"]), Some(2));
    let gate = c.maker.gate(&set(&["a", "b"]));
    let (other, made) = std::thread::scope(|scope| {
        let making = scope.spawn(|| cold(&c, &["a", "b"]));
        gate.wait_entered();
        let other = without_waiting(&gate, || cold(&c, &["c"]));
        gate.open();
        (other, making.join().unwrap())
    });
    assert_eq!(
        other,
        Some(1),
        "full, and a/1's, the only leaf, is being forked from"
    );
    assert_eq!(made, Some(3));
    assert_eq!(
        live(&c),
        [(1, set(&[])), (2, set(&["a"])), (3, set(&["a", "b"]))]
    );
}

#[test]
fn demand_keeps_the_most_recently_counted_sets_only() {
    let mut d = Demand::default();
    let kept = set(&["kept"]);
    let first = set(&["first"]);
    d.count(&first);
    for i in 0..10_000 {
        d.count(&set(&[&format!("p{i}")]));
        if i % 100 == 0 {
            d.count(&kept);
        }
        assert!(d.len() <= DEMAND_LIMIT);
    }
    assert_eq!(d.len(), DEMAND_LIMIT);
    assert_eq!(d.order.len(), DEMAND_LIMIT);
    assert_eq!(d.count(&kept), 101, "counted recently: kept");
    assert_eq!(d.count(&first), 1, "the least recently counted went first");
    // Through the cache: 10 000 sets that never reach min_starts.
    let c = cache(8, 2, true);
    c.start().unwrap();
    for i in 0..10_000 {
        assert_eq!(cold(&c, &[&format!("p{i}")]), Some(1));
    }
    assert_eq!(c.lock().demand.len(), DEMAND_LIMIT);
}

#[test]
fn close_retires_every_zygote_and_those_still_being_made() {
    let c = cache(8, 1, true);
    c.start().unwrap();
    let gate = c.maker.gate(&set(&["a"]));
    let made = std::thread::scope(|scope| {
        let making = scope.spawn(|| cold(&c, &["a"]));
        gate.wait_entered();
        c.close();
        gate.open();
        making.join().unwrap()
    });
    assert_eq!(made, None, "closed meanwhile: a fresh sandbox");
    assert_eq!(
        *c.maker.retirements.lock().unwrap(),
        [1, 2],
        "the root, then the a/1 zygote as it came"
    );
    assert_eq!(live(&c), []);
    assert_eq!(cold(&c, &["b"]), None);
    assert!(matches!(c.start(), Err(StartError::Closed)));
    assert!(c.lock().creating.is_empty());
}
