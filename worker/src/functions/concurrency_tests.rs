//! Many threads, and several stores (as several processes have) on one registry; and a
//! worker's reader seeing old or new code, never a mix.

use std::io::Read;
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use super::store_tests::{handler, name, registry};
use super::*;
use crate::archive::testing::zip_of;
use crate::lambda_config::LambdaConfig;

#[test]
fn fifty_threads_create_and_update_their_own_functions() {
    let (_d, reg, store) = registry();
    std::thread::scope(|s| {
        for t in 0..50 {
            let store = &store;
            s.spawn(move || {
                let n = name(&format!("f{t}"));
                store
                    .create(&n, &handler(&format!("{t}")), &LambdaConfig::default())
                    .unwrap();
                store
                    .update_code(&n, &handler(&format!("{t} + 1")), None)
                    .unwrap();
                let s = LambdaConfig::parse(&format!(r#"{{"timeout_s": {}}}"#, t + 1)).unwrap();
                store.update_settings(&n, &s, None).unwrap();
            });
        }
    });
    let list = store.list().unwrap();
    assert_eq!(list.len(), 50);
    for info in list {
        let t: u64 = info.name.as_str()[1..].parse().unwrap();
        assert_eq!(info.version, 3);
        assert_eq!(info.config.timeout_s, Some(t + 1));
        let code = std::fs::read_to_string(reg.join(info.name.as_str()).join("lambda_func.py"));
        assert!(code.unwrap().contains(&format!("return {t} + 1")));
    }
    // Only the archives in use are kept.
    assert_eq!(
        std::fs::read_dir(reg.join(".store/archives"))
            .unwrap()
            .count(),
        50
    );
}

#[test]
fn fifty_threads_on_one_name_succeed_or_fail_cleanly() {
    let (_d, reg, store) = registry();
    let f = name("shared");
    let created = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for t in 0..50 {
            let (store, f, created) = (&store, &f, &created);
            s.spawn(move || {
                match store.create(f, &handler(&format!("{t}")), &LambdaConfig::default()) {
                    Ok(_) => {
                        created.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(StoreError::Exists { .. }) => {}
                    Err(e) => panic!("{e}"),
                }
            });
        }
    });
    assert_eq!(created.load(Ordering::Relaxed), 1);
    // Fifty updates of one function, half of them with a revision that goes stale.
    let mismatches = AtomicUsize::new(0);
    let start = store.get(&f).unwrap();
    std::thread::scope(|s| {
        for t in 0..50 {
            let (store, f, mismatches, start) = (&store, &f, &mismatches, &start);
            s.spawn(move || {
                let expected = (t % 2 == 0).then_some(start.revision_id.as_str());
                let result = if t % 3 == 0 {
                    let s = LambdaConfig::parse(&format!(r#"{{"timeout_s": {}}}"#, t + 1)).unwrap();
                    store.update_settings(f, &s, expected)
                } else {
                    store.update_code(f, &handler(&format!("{t}")), expected)
                };
                match result {
                    Ok(_) => {}
                    Err(StoreError::RevisionMismatch { .. }) => {
                        mismatches.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => panic!("{e}"),
                }
            });
        }
    });
    let end = store.get(&f).unwrap();
    let misses = mismatches.load(Ordering::Relaxed) as u64;
    assert_eq!(end.version, 1 + 50 - misses);
    assert!(
        misses >= 24,
        "at most one update with the first revision wins: {misses}"
    );
    let marker = std::fs::read_to_string(reg.join("shared").join(REVISION_FILE)).unwrap();
    assert_eq!(marker.trim(), end.revision_id);
}

#[test]
fn two_stores_on_one_registry_and_reopening_while_writing() {
    let (_d, reg, a) = registry();
    let b = DirStore::open(&reg).unwrap();
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        // Opening runs recovery: it must never disturb a live operation of another store.
        let (reg, stop) = (&reg, &stop);
        s.spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                DirStore::open(reg).unwrap();
            }
        });
        let mut writers = Vec::new();
        for (k, store) in [&a, &b].into_iter().enumerate() {
            writers.push(s.spawn(move || {
                for i in 0..15 {
                    let n = name(&format!("f{}", i % 5));
                    let archive = handler(&format!("{k} * {i}"));
                    match store.create(&n, &archive, &LambdaConfig::default()) {
                        Ok(_) | Err(StoreError::Exists { .. }) => {}
                        Err(e) => panic!("{e}"),
                    }
                    store.update_code(&n, &archive, None).unwrap();
                    store
                        .publish_layer(
                            &name("common"),
                            &zip_of(&[("m.py", Some(archive.as_slice()))]),
                            None,
                            &[],
                        )
                        .unwrap();
                }
            }));
        }
        for w in writers {
            w.join().unwrap();
        }
        stop.store(true, Ordering::Relaxed);
    });
    let versions = a.layer_versions(&name("common")).unwrap();
    let numbers: Vec<u64> = versions.iter().map(|v| v.version).collect();
    assert_eq!(numbers, (1..=30).collect::<Vec<_>>());
    for info in b.list().unwrap() {
        let dir = reg.join(info.name.as_str());
        let marker = std::fs::read_to_string(dir.join(REVISION_FILE)).unwrap();
        assert_eq!(marker.trim(), info.revision_id);
    }
    assert!(std::fs::read_dir(reg.join(".store/staging"))
        .unwrap()
        .next()
        .is_none());
}

/// Reads `file` through the directory `dir` (an `O_PATH` descriptor), `None` if it is gone.
fn read_at(dir: &impl AsFd, file: &str) -> Option<String> {
    use nix::fcntl::{openat, OFlag};
    let fd = openat(
        dir,
        file,
        OFlag::O_RDONLY | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .ok()?;
    let mut text = String::new();
    std::fs::File::from(fd).read_to_string(&mut text).ok()?;
    Some(text)
}

#[test]
fn a_reader_sees_old_or_new_code_never_a_mix() {
    let (_d, reg, store) = registry();
    let f = name("f");
    let code = |n: usize| {
        let v = format!("{n}\n");
        zip_of(&[
            (
                "lambda_func.py",
                Some(format!("V = {n}\ndef handler(e):\n    return V\n").as_bytes()),
            ),
            ("a.txt", Some(v.as_bytes())),
            ("lib/b.txt", Some(v.as_bytes())),
        ])
    };
    store
        .create(&f, &code(0), &LambdaConfig::default())
        .unwrap();
    let registry = crate::registry::Registry::new(reg.clone());
    let stop = AtomicBool::new(false);
    let (seen, gone) = (AtomicUsize::new(0), AtomicUsize::new(0));
    std::thread::scope(|s| {
        let (registry, stop, seen, gone, f, reg) = (&registry, &stop, &seen, &gone, &f, &reg);
        s.spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let handler = registry.lookup(f).unwrap();
                let (dir, _) = handler.open_dir().unwrap();
                match (read_at(&dir, "a.txt"), read_at(&dir, "lib/b.txt")) {
                    (Some(a), Some(b)) => {
                        assert_eq!(a, b, "one lookup saw two versions");
                        seen.fetch_add(1, Ordering::Relaxed);
                    }
                    // The old directory was removed after the exchange: gone, not mixed.
                    _ => {
                        gone.fetch_add(1, Ordering::Relaxed);
                    }
                }
                // lambda.json is always whole.
                let text = std::fs::read_to_string(reg.join("f/lambda.json")).unwrap();
                LambdaConfig::parse(&text).unwrap();
            }
        });
        for n in 1..=40 {
            store.update_code(f, &code(n), None).unwrap();
            let s = LambdaConfig::parse(&format!(
                r#"{{"timeout_s": {n}, "description": "{}"}}"#,
                "x".repeat(n * 5)
            ))
            .unwrap();
            store.update_settings(f, &s, None).unwrap();
        }
        stop.store(true, Ordering::Relaxed);
    });
    assert!(seen.load(Ordering::Relaxed) > 0);
    let last = std::fs::read_to_string(reg.join("f/a.txt")).unwrap();
    assert_eq!(last, "40\n");
    let _ = gone.load(Ordering::Relaxed);
}
