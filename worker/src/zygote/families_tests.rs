//! The families of custom bases ([`Families`]) against a fake [`BaseMaker`]: one family per
//! base, a base made again gets a new one, the least recently used family gives way, a base
//! that speaks another protocol has none, and retiring follows use across families. No root,
//! no processes.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::*;
use crate::bases::{BaseInfo, BaseRef};
use crate::name::LambdaName;
use crate::zygote::{ForkError, StartError};

#[derive(Debug)]
struct FakeZygote {
    id: u64,
    /// The base it runs on (`default` for the default one).
    base: String,
    packages: Vec<String>,
    parent: Option<u64>,
    retired: AtomicBool,
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
        self.parent
    }
    fn note_fork(&self) {}
    fn set_retired(&self) {
        self.retired.store(true, Ordering::Relaxed);
    }
}

#[derive(Debug, Clone)]
struct FakeMaker {
    base: String,
    next_id: Arc<AtomicU64>,
    /// Bases whose zygote program speaks another protocol.
    old: Arc<Vec<String>>,
    /// Every `for_base` call, by base name.
    asked: Arc<Mutex<Vec<String>>>,
}

impl FakeMaker {
    fn new(old: &[&str]) -> Self {
        Self {
            base: "default".into(),
            next_id: Arc::new(AtomicU64::new(1)),
            old: Arc::new(old.iter().map(|s| s.to_string()).collect()),
            asked: Arc::default(),
        }
    }

    fn zygote(&self, packages: &[String], parent: Option<u64>) -> Arc<FakeZygote> {
        Arc::new(FakeZygote {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            base: self.base.clone(),
            packages: packages.to_vec(),
            parent,
            retired: AtomicBool::new(false),
        })
    }
}

impl Maker for FakeMaker {
    type Zygote = FakeZygote;
    /// The zygote's base and id.
    type Sandbox = (String, u64);
    type Request<'a> = ();

    fn start_root(&self) -> Result<Arc<FakeZygote>, StartError> {
        Ok(self.zygote(&[], None))
    }

    fn fork_zygote(
        &self,
        parent: &Arc<FakeZygote>,
        packages: &[String],
    ) -> Result<Arc<FakeZygote>, ForkError> {
        Ok(self.zygote(packages, Some(parent.id)))
    }

    fn fork_handler(&self, zygote: &Arc<FakeZygote>, _: &()) -> Result<(String, u64), ForkError> {
        Ok((zygote.base.clone(), zygote.id))
    }
}

impl BaseMaker for FakeMaker {
    fn for_base(&self, base: &BaseRef) -> Option<Self> {
        let name = base.name.to_string();
        self.asked.lock().unwrap().push(name.clone());
        if self.old.contains(&name) {
            return None;
        }
        Some(Self {
            base: name,
            ..self.clone()
        })
    }
}

fn rules() -> Rules {
    Rules {
        size: 8,
        min_starts: 1,
        package_zygotes: true,
        root_retry: Duration::from_secs(10),
    }
}

fn base(name: &str, created: u64) -> BaseRef {
    BaseRef {
        name: LambdaName::parse(name).unwrap(),
        root: format!("/bases/{name}/rootfs").into(),
        info: BaseInfo {
            name: name.into(),
            origin: "test".into(),
            created,
            env: Vec::new(),
            workdir: None,
            python: "/usr/bin/python3".into(),
        },
    }
}

struct Cache {
    maker: FakeMaker,
    default: Policy<FakeMaker>,
    families: Families<FakeMaker>,
    /// The zygote of every sandbox forked, as live sandboxes hold them.
    held: Mutex<Vec<Arc<FakeZygote>>>,
}

impl Cache {
    fn new(old: &[&str]) -> Self {
        let maker = FakeMaker::new(old);
        Self {
            default: Policy::new(maker.clone(), rules()),
            maker,
            families: Families::default(),
            held: Mutex::default(),
        }
    }

    /// A cold start of `packages` on `base` (`None`: the default one): the zygote forked from.
    fn start(&self, on: Option<&BaseRef>, packages: &[&str]) -> Option<(String, u64)> {
        let want: Vec<String> = packages.iter().map(|s| s.to_string()).collect();
        let made = match on {
            None => {
                self.families.used_default();
                self.default.fork_handler(&want, &())
            }
            Some(b) => self
                .families
                .policy(b, &self.maker, &rules())?
                .fork_handler(&want, &()),
        };
        let (sandbox, zygote) = made.unwrap()?;
        self.held.lock().unwrap().push(zygote);
        Some(sandbox)
    }

    /// (base, id, retired) of every zygote still held, by id.
    fn zygotes(&self) -> Vec<(String, u64, bool)> {
        let mut all: Vec<Arc<FakeZygote>> = self.default.zygotes().live;
        for p in self.families.policies() {
            let z = p.zygotes();
            all.extend(z.live);
            all.extend(z.retired);
        }
        let mut out: Vec<_> = all
            .iter()
            .map(|z| (z.base.clone(), z.id, z.retired.load(Ordering::Relaxed)))
            .collect();
        out.sort_by_key(|z| z.1);
        out
    }
}

#[test]
fn each_base_forks_from_a_root_of_its_own() {
    let c = Cache::new(&[]);
    let (a, b) = (base("pil", 1), base("img", 1));
    assert_eq!(c.start(None, &[]), Some(("default".into(), 1)));
    assert_eq!(c.start(Some(&a), &[]), Some(("pil".into(), 2)));
    assert_eq!(c.start(Some(&b), &[]), Some(("img".into(), 3)));
    // The same bases again: the same roots, no new family.
    assert_eq!(c.start(Some(&a), &[]), Some(("pil".into(), 2)));
    assert_eq!(c.start(None, &[]), Some(("default".into(), 1)));
    // A package zygote on a base is made from that base's root.
    assert_eq!(c.start(Some(&a), &["six/1"]), Some(("pil".into(), 4)));
    assert_eq!(*c.maker.asked.lock().unwrap(), ["pil", "img"]);
    assert_eq!(c.families.policies().len(), 2);
}

#[test]
fn a_base_made_again_gets_a_new_family_and_the_old_one_is_retired() {
    let c = Cache::new(&[]);
    let first = base("pil", 1);
    let held = c.start(Some(&first), &[]);
    assert_eq!(held, Some(("pil".into(), 1)));
    // Deleted and made again: same name, new `created`.
    let again = base("pil", 2);
    assert_eq!(c.start(Some(&again), &[]), Some(("pil".into(), 2)));
    assert_eq!(
        c.zygotes(),
        [("pil".into(), 1, true), ("pil".into(), 2, false)]
    );
}

#[test]
fn the_least_recently_used_family_gives_way() {
    let c = Cache::new(&[]);
    let bases: Vec<BaseRef> = (0..=BASE_FAMILIES)
        .map(|i| base(&format!("b{i}"), 1))
        .collect();
    for b in &bases[..BASE_FAMILIES] {
        c.start(Some(b), &[]);
    }
    // b0 used again: b1 is now the least recently used.
    c.start(Some(&bases[0]), &[]);
    c.start(Some(&bases[BASE_FAMILIES]), &[]);
    let live: Vec<String> = c
        .zygotes()
        .into_iter()
        .filter(|z| !z.2)
        .map(|z| z.0)
        .collect();
    assert_eq!(live, ["b0", "b2", "b3", "b4"]);
    assert!(c.zygotes().contains(&("b1".into(), 2, true)));
}

#[test]
fn a_base_speaking_another_protocol_starts_fresh_and_is_asked_once() {
    let c = Cache::new(&["old"]);
    let old = base("old", 1);
    assert_eq!(c.start(Some(&old), &[]), None);
    assert_eq!(c.start(Some(&old), &[]), None);
    assert_eq!(*c.maker.asked.lock().unwrap(), ["old"]);
    assert!(c.zygotes().is_empty());
}

#[test]
fn retiring_follows_use_across_families_and_keeps_the_default_root() {
    let c = Cache::new(&[]);
    let a = base("pil", 1);
    c.start(Some(&a), &[]); // 1: pil's root
    c.start(Some(&a), &["six/1"]); // 2: a leaf on pil
    c.start(None, &[]); // 3: the default root, used last
    let retire = || c.families.retire_lru(&c.default, None);
    // pil was used before the default base: its leaf goes first, then its root.
    assert_eq!(retire(), Some(2));
    assert_eq!(retire(), Some(1));
    // The default base's root is never retired.
    assert_eq!(retire(), None);
    // pil's family was closed with its root: a cold start on it makes a new one.
    assert_eq!(c.start(Some(&a), &[]), Some(("pil".into(), 4)));
    // `keep` is never retired.
    assert_eq!(c.families.retire_lru(&c.default, Some(4)), None);
}

#[test]
fn a_closed_cache_makes_no_family() {
    let c = Cache::new(&[]);
    let a = base("pil", 1);
    c.start(Some(&a), &[]);
    c.families.close();
    assert_eq!(c.start(Some(&a), &[]), None);
    assert_eq!(c.zygotes(), [("pil".into(), 1, true)]);
}
