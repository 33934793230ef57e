//! Restarting after a crash at each step of each operation, and after real `kill -9`s of a
//! process writing to the store.

use std::io::BufRead;
use std::path::Path;

use super::store_tests::{handler, name, registry};
use super::*;
use crate::archive::testing::{tree_listing, zip_of};
use crate::lambda_config::LambdaConfig;

/// The tree without `.store/staging` (which recovery empties).
fn listing_without_staging(reg: &Path) -> Vec<String> {
    tree_listing(reg)
        .into_iter()
        .filter(|l| !l.starts_with(".store/staging/"))
        .collect()
}

/// Copies directory `from` to a new directory `to` (files and directories only).
fn copy_tree(from: &Path, to: &Path) {
    for entry in walkdir::WalkDir::new(from) {
        let entry = entry.unwrap();
        let target = to.join(entry.path().strip_prefix(from).unwrap());
        if entry.file_type().is_dir() {
            std::fs::create_dir_all(&target).unwrap();
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// A staging directory as a crashed operation leaves it (nobody holds its lock).
fn leave_staging(reg: &Path, with_archive: Option<&[u8]>) {
    let dir = reg.join(".store/staging/12345-0-dead");
    std::fs::create_dir_all(dir.join("code/lib")).unwrap();
    std::fs::write(dir.join("code/lambda_func.py"), "half").unwrap();
    if let Some(bytes) = with_archive {
        std::fs::write(dir.join("archive"), &bytes[..bytes.len() / 2]).unwrap();
    }
}

/// Every managed function's directory matches its metadata, and every store invariant holds.
fn assert_consistent(reg: &Path) {
    let store = DirStore::open(reg).unwrap();
    assert!(
        std::fs::read_dir(reg.join(".store/staging"))
            .unwrap()
            .next()
            .is_none(),
        "staging left"
    );
    for dir in [".store/functions", ".store/archives"] {
        for e in std::fs::read_dir(reg.join(dir)).unwrap() {
            let n = e.unwrap().file_name().into_string().unwrap();
            assert!(!n.starts_with(".tmp-"), "temporary file {n} left in {dir}");
        }
    }
    for info in store.list().unwrap() {
        if info.version == 0 {
            continue;
        }
        let dir = reg.join(info.name.as_str());
        assert_eq!(
            std::fs::read_to_string(dir.join(REVISION_FILE))
                .unwrap()
                .trim(),
            info.revision_id,
            "{}",
            info.name
        );
        assert_eq!(LambdaConfig::load(&dir).unwrap(), info.config);
        // The code is the archive's, whole.
        let path = store.archive_path(&info.code_sha256).unwrap();
        let bytes = std::fs::read(path).unwrap();
        assert_eq!(
            crate::hex(&<sha2::Sha256 as sha2::Digest>::digest(&bytes)),
            info.code_sha256
        );
        let fresh = tempfile::tempdir().unwrap();
        materialize(&bytes, &info.config, &info.revision_id, fresh.path()).unwrap();
        assert_eq!(
            tree_listing(fresh.path()),
            tree_listing(&dir),
            "{}",
            info.name
        );
    }
}

#[test]
fn a_crash_while_unpacking_leaves_nothing() {
    let (_d, reg, store) = registry();
    store
        .create(&name("f"), &handler("1"), &LambdaConfig::default())
        .unwrap();
    let before = listing_without_staging(&reg);
    leave_staging(&reg, Some(&handler("2")));
    std::fs::write(reg.join(".store/staging/stray-file"), "x").unwrap();
    let store = DirStore::open(&reg).unwrap();
    assert_eq!(listing_without_staging(&reg), before);
    assert!(std::fs::read_dir(reg.join(".store/staging"))
        .unwrap()
        .next()
        .is_none());
    assert_eq!(store.get(&name("f")).unwrap().version, 1);
    assert_consistent(&reg);
}

#[test]
fn a_live_operations_staging_is_left_alone() {
    let (_d, reg, store) = registry();
    let held = store.lock().unwrap();
    let live = store.scratch_locked(&held).unwrap();
    drop(held);
    std::fs::write(live.path().join("archive"), "being written").unwrap();
    let _other = DirStore::open(&reg).unwrap();
    assert!(
        live.path().join("archive").is_file(),
        "a live staging directory was removed"
    );
    let path = live.path().to_owned();
    drop(live);
    assert!(!path.exists());
}

#[test]
fn a_crash_after_storing_the_archive_leaves_nothing() {
    let (_d, reg, store) = registry();
    store
        .create(&name("f"), &handler("1"), &LambdaConfig::default())
        .unwrap();
    let before = listing_without_staging(&reg);
    // Step 4 done (the archive at its address), step 5 (metadata) not.
    let orphan = handler("2");
    let sha = crate::hex(&<sha2::Sha256 as sha2::Digest>::digest(&orphan));
    std::fs::write(reg.join(".store/archives").join(&sha), &orphan).unwrap();
    leave_staging(&reg, None);
    let store = DirStore::open(&reg).unwrap();
    assert!(
        store.archive_path(&sha).is_err(),
        "the unreferenced archive stays"
    );
    assert_eq!(listing_without_staging(&reg), before);
}

#[test]
fn a_crash_while_writing_metadata_leaves_the_old_version() {
    let (_d, reg, store) = registry();
    let v1 = store
        .create(&name("f"), &handler("1"), &LambdaConfig::default())
        .unwrap();
    let before = listing_without_staging(&reg);
    std::fs::write(
        reg.join(".store/functions/.tmp-f.json-1-2-3"),
        "{\"format\": 1, \"na",
    )
    .unwrap();
    let store = DirStore::open(&reg).unwrap();
    assert_eq!(store.get(&name("f")).unwrap(), v1);
    assert_eq!(listing_without_staging(&reg), before);
}

#[test]
fn a_crash_between_metadata_and_exchange_rolls_forward() {
    let (d, reg, store) = registry();
    store
        .create(&name("f"), &handler("1"), &LambdaConfig::default())
        .unwrap();
    let old = d.path().join("old-f");
    copy_tree(&reg.join("f"), &old);
    let v2 = store.update_code(&name("f"), &handler("2"), None).unwrap();
    // Put the old directory back, as if the exchange had not happened.
    std::fs::remove_dir_all(reg.join("f")).unwrap();
    std::fs::rename(&old, reg.join("f")).unwrap();
    leave_staging(&reg, None);
    assert!(std::fs::read_to_string(reg.join("f/lambda_func.py"))
        .unwrap()
        .contains("return 1"));
    let store = DirStore::open(&reg).unwrap();
    assert!(std::fs::read_to_string(reg.join("f/lambda_func.py"))
        .unwrap()
        .contains("return 2"));
    assert_eq!(store.get(&name("f")).unwrap(), v2);
    assert_consistent(&reg);
    // And the store goes on working.
    assert_eq!(
        store
            .update_code(&name("f"), &handler("3"), None)
            .unwrap()
            .version,
        3
    );
}

#[test]
fn a_crash_between_metadata_and_rename_of_a_new_function_rolls_forward() {
    let (_d, reg, store) = registry();
    let v1 = store
        .create(&name("f"), &handler("1"), &LambdaConfig::default())
        .unwrap();
    std::fs::remove_dir_all(reg.join("f")).unwrap();
    let store = DirStore::open(&reg).unwrap();
    assert_eq!(store.get(&name("f")).unwrap(), v1);
    assert!(reg.join("f/lambda_func.py").is_file());
    assert_consistent(&reg);
}

#[test]
fn a_settings_change_cut_short_rolls_forward() {
    let (d, reg, store) = registry();
    let f = name("f");
    store
        .create(
            &f,
            &handler("1"),
            &LambdaConfig::parse(r#"{"timeout_s": 5}"#).unwrap(),
        )
        .unwrap();
    let old_config = std::fs::read(reg.join("f/lambda.json")).unwrap();
    let old_marker = std::fs::read(reg.join("f").join(REVISION_FILE)).unwrap();
    let v2 = store
        .update_settings(
            &f,
            &LambdaConfig::parse(r#"{"timeout_s": 9}"#).unwrap(),
            None,
        )
        .unwrap();
    // Metadata written, neither file renamed yet.
    std::fs::write(reg.join("f/lambda.json"), &old_config).unwrap();
    std::fs::write(reg.join("f").join(REVISION_FILE), &old_marker).unwrap();
    DirStore::open(&reg).unwrap();
    assert_eq!(
        LambdaConfig::load(&reg.join("f")).unwrap().timeout_s,
        Some(9)
    );
    assert_consistent(&reg);
    // lambda.json renamed, the marker not yet.
    let v3 = store
        .update_settings(
            &f,
            &LambdaConfig::parse(r#"{"timeout_s": 11}"#).unwrap(),
            None,
        )
        .unwrap();
    std::fs::write(
        reg.join("f").join(REVISION_FILE),
        format!("{}\n", v2.revision_id),
    )
    .unwrap();
    let store = DirStore::open(&reg).unwrap();
    assert_eq!(store.get(&f).unwrap(), v3);
    assert_consistent(&reg);
    drop(d);
}

#[test]
fn a_delete_cut_short_leaves_the_function_whole() {
    let (_d, reg, store) = registry();
    let v1 = store
        .create(&name("f"), &handler("1"), &LambdaConfig::default())
        .unwrap();
    // The code moved away, the metadata not yet removed.
    let away = reg.join(".store/staging/99-0-dead");
    std::fs::create_dir(&away).unwrap();
    std::fs::rename(reg.join("f"), away.join("deleted")).unwrap();
    let store = DirStore::open(&reg).unwrap();
    assert_eq!(store.get(&name("f")).unwrap(), v1);
    assert_consistent(&reg);
    store.delete(&name("f")).unwrap();
    assert!(DirStore::open(&reg).unwrap().list().unwrap().is_empty());
}

#[test]
fn a_layer_version_without_its_directory_is_unpacked_again() {
    let (_d, reg, store) = registry();
    let l = store
        .publish_layer(
            &name("common"),
            &zip_of(&[("python/m.py", Some(b"X = 1\n"))]),
            None,
            &[],
        )
        .unwrap();
    let dir = reg.join(".store/layers/common/1");
    std::fs::remove_dir_all(&dir).unwrap();
    std::fs::write(reg.join(".store/layers/common/.tmp-2.json-1"), "{").unwrap();
    let store = DirStore::open(&reg).unwrap();
    assert_eq!(
        std::fs::read_to_string(dir.join("python/m.py")).unwrap(),
        "X = 1\n"
    );
    assert!(!reg.join(".store/layers/common/.tmp-2.json-1").exists());
    assert_eq!(store.layer_versions(&name("common")).unwrap(), vec![l]);
}

#[test]
fn a_damaged_archive_is_not_used_to_restore() {
    let (_d, reg, store) = registry();
    let v1 = store
        .create(&name("f"), &handler("1"), &LambdaConfig::default())
        .unwrap();
    std::fs::write(store.archive_path(&v1.code_sha256).unwrap(), "garbage").unwrap();
    std::fs::remove_dir_all(reg.join("f")).unwrap();
    // Opening still works (the function is reported), nothing is made from a bad archive.
    let store = DirStore::open(&reg).unwrap();
    assert_eq!(store.get(&name("f")).unwrap(), v1);
    assert!(!reg.join("f").exists());
}

const KILL_TEST: &str = "functions::recover_tests::kill_9_during_writes_loses_nothing_acknowledged";
const CHILD_ENV: &str = "LAMBDAWORKER_STORE_KILL_CHILD";

/// Writes to the store from 8 threads until killed, printing `ack NAME VERSION SHA` after
/// each change the store acknowledged.
fn child_writer(reg: &Path) -> ! {
    let store = DirStore::open(reg).unwrap();
    let out = std::sync::Mutex::new(std::io::stdout());
    std::thread::scope(|s| {
        for t in 0..8 {
            let (store, out) = (&store, &out);
            s.spawn(move || {
                for i in 0u64.. {
                    let n = name(&format!("f{}", (t * 7 + i) % 12));
                    let body = format!("{t} + {i}");
                    let archive = zip_of(&[
                        (
                            "lambda_func.py",
                            Some(format!("def handler(e):\n    return {body}\n").as_bytes()),
                        ),
                        ("lib/data.txt", Some(body.repeat(500).as_bytes())),
                    ]);
                    let result = match i % 4 {
                        0 => store.create(&n, &archive, &LambdaConfig::default()),
                        3 => store.update_settings(
                            &n,
                            &LambdaConfig::parse(&format!(r#"{{"timeout_s": {}}}"#, 1 + i % 800))
                                .unwrap(),
                            None,
                        ),
                        _ => store.update_code(&n, &archive, None),
                    };
                    if let Ok(info) = result {
                        use std::io::Write;
                        let mut o = out.lock().unwrap();
                        let _ =
                            writeln!(o, "ack {} {} {}", info.name, info.version, info.revision_id);
                        let _ = o.flush();
                    }
                }
            });
        }
    });
    unreachable!("the writers loop until killed")
}

#[test]
fn kill_9_during_writes_loses_nothing_acknowledged() {
    if let Some(dir) = std::env::var_os(CHILD_ENV) {
        child_writer(Path::new(&dir));
    }
    let (_d, reg, _store) = registry();
    let mut acked: std::collections::HashMap<String, (u64, String)> = Default::default();
    for round in 0..4u64 {
        let mut child = std::process::Command::new(std::env::current_exe().unwrap())
            .args([KILL_TEST, "--exact", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, &reg)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            let mut lines = Vec::new();
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(rest) = line.strip_prefix("ack ") {
                    lines.push(rest.to_owned());
                }
            }
            lines
        });
        // Let it get going, then kill it at a moment that differs each round.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos() as u64;
        std::thread::sleep(std::time::Duration::from_millis(
            400 + (nanos + round * 137) % 600,
        ));
        child.kill().unwrap();
        child.wait().unwrap();
        let lines = reader.join().unwrap();
        assert!(
            !lines.is_empty(),
            "round {round}: the writer acknowledged nothing"
        );
        for line in lines {
            let mut parts = line.split(' ');
            let (n, v, r) = (
                parts.next().unwrap(),
                parts.next().unwrap(),
                parts.next().unwrap(),
            );
            let v: u64 = v.parse().unwrap();
            let e = acked.entry(n.to_owned()).or_insert((0, String::new()));
            if v > e.0 {
                *e = (v, r.to_owned());
            }
        }
        assert_consistent(&reg);
        let store = DirStore::open(&reg).unwrap();
        for (n, (version, revision)) in &acked {
            let info = store.get(&name(n)).unwrap();
            assert!(
                info.version >= *version,
                "{n}: acknowledged {version}, found {}",
                info.version
            );
            if info.version == *version {
                assert_eq!(&info.revision_id, revision, "{n}");
            }
        }
    }
}
