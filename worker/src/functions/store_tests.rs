//! The store's operations and their errors, one process, one thread.

use std::path::{Path, PathBuf};

use super::*;
use crate::archive::testing::{tar_gz_of, tree_listing, zip_of};
use crate::lambda_config::{Entry, LambdaConfig, LayerRef};

pub(super) fn name(n: &str) -> LambdaName {
    LambdaName::parse(n).unwrap()
}

pub(super) fn registry() -> (tempfile::TempDir, PathBuf, DirStore) {
    let dir = tempfile::tempdir().unwrap();
    let reg = dir.path().join("registry");
    std::fs::create_dir(&reg).unwrap();
    let store = DirStore::open(&reg).unwrap();
    (dir, reg, store)
}

pub(super) fn handler(body: &str) -> Vec<u8> {
    zip_of(&[(
        "lambda_func.py",
        Some(format!("def handler(event):\n    return {body}\n").as_bytes()),
    )])
}

fn config(text: &str) -> LambdaConfig {
    LambdaConfig::parse(text).unwrap()
}

fn sha(bytes: &[u8]) -> String {
    crate::hex(&<sha2::Sha256 as sha2::Digest>::digest(bytes))
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap()
}

#[test]
fn create_get_and_list() {
    let (_d, reg, store) = registry();
    let archive = handler("1");
    let settings = config(r#"{"memory_mb": 256, "description": "one"}"#);
    let info = store.create(&name("f"), &archive, &settings).unwrap();
    assert_eq!(info.version, 1);
    assert_eq!(info.code_sha256, sha(&archive));
    assert_eq!(info.code_size, archive.len() as u64);
    assert_eq!(info.entry, Entry::default());
    assert_eq!(info.settings, settings);
    assert_eq!(info.config, settings);
    assert!(!info.has_docs);
    assert!(info.last_modified_ms > 0);
    assert_eq!(store.get(&name("f")).unwrap(), info);
    assert_eq!(store.list().unwrap(), vec![info.clone()]);
    // On disk: the code with its effective lambda.json and marker; archive and metadata.
    assert!(read(&reg.join("f/lambda_func.py")).contains("return 1"));
    assert_eq!(LambdaConfig::load(&reg.join("f")).unwrap(), settings);
    assert_eq!(
        read(&reg.join("f").join(REVISION_FILE)).trim(),
        info.revision_id
    );
    assert!(store.archive_path(&info.code_sha256).unwrap().is_file());
    assert!(reg.join(".store/functions/f.json").is_file());
    // The record round-trips for workers that pull code.
    let rec = store.record(&name("f")).unwrap();
    assert_eq!(
        FunctionRecord::from_json(&rec.to_json().unwrap())
            .unwrap()
            .into_info()
            .unwrap(),
        info
    );
}

#[test]
fn the_settings_go_over_the_archives_lambda_json() {
    let (_d, reg, store) = registry();
    let archive = zip_of(&[
        (
            "app.py",
            Some(b"def handler(event, context):\n    return 1\n"),
        ),
        (
            "lambda.json",
            Some(br#"{"entry": "app.handler", "memory_mb": 512, "timeout_s": 10}"#),
        ),
    ]);
    let info = store
        .create(&name("aws"), &archive, &config(r#"{"timeout_s": 30}"#))
        .unwrap();
    assert_eq!(info.entry.to_string(), "app.handler");
    assert_eq!(
        (info.config.memory_mb, info.config.timeout_s),
        (Some(512), Some(30))
    );
    assert_eq!(LambdaConfig::load(&reg.join("aws")).unwrap(), info.config);
    // New settings go over the archive's again (not over the old effective config).
    let info = store
        .update_settings(&name("aws"), &config(r#"{"memory_mb": 1024}"#), None)
        .unwrap();
    assert_eq!(
        (info.config.memory_mb, info.config.timeout_s),
        (Some(1024), Some(10))
    );
    assert_eq!(info.version, 2);
    assert_eq!(LambdaConfig::load(&reg.join("aws")).unwrap(), info.config);
    // An invalid lambda.json in an archive names the key; nothing changes.
    let before = tree_listing(&reg);
    let bad = zip_of(&[
        ("lambda_func.py", Some(b"x")),
        ("lambda.json", Some(br#"{"timeout_s": 901}"#)),
    ]);
    for result in [
        store.create(&name("bad"), &bad, &LambdaConfig::default()),
        store.update_code(&name("aws"), &bad, None),
    ] {
        match result {
            Err(StoreError::Invalid { key, message }) => {
                assert_eq!(key.as_deref(), Some("timeout_s"), "{message}");
                assert!(message.contains("lambda.json"), "{message}");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(tree_listing(&reg), before);
    }
}

#[test]
fn a_luna_zip_with_docs() {
    let (_d, _reg, store) = registry();
    let archive = zip_of(&[
        (
            "lambda_main.py",
            Some(b"async def main(request):\n    return {}\n"),
        ),
        ("requirements.txt", Some(b"six\n")),
        ("docs/lambda.html", Some(b"<h1>x</h1>")),
        ("docs/lambda.yml", Some(b"a: 1\n")),
    ]);
    let info = store
        .create(&name("luna"), &archive, &LambdaConfig::default())
        .unwrap();
    assert!(info.entry.is_luna());
    assert!(info.has_docs);
}

#[test]
fn updates_count_versions_and_keep_the_other_half() {
    let (_d, reg, store) = registry();
    let f = name("f");
    let settings = config(r#"{"environment": {"A": "1"}}"#);
    let v1 = store.create(&f, &handler("1"), &settings).unwrap();
    let v2 = store.update_code(&f, &tar_gz_of(&[("lambda_func.py", Some(b"two"))]), None);
    let v2 = v2.unwrap();
    assert_eq!(v2.version, 2);
    assert_ne!(v2.revision_id, v1.revision_id);
    assert_eq!(v2.settings, settings, "code updates keep settings");
    assert_eq!(read(&reg.join("f/lambda_func.py")), "two");
    let new_settings = config(r#"{"environment": {"A": "2"}}"#);
    let v3 = store.update_settings(&f, &new_settings, None).unwrap();
    assert_eq!(v3.version, 3);
    assert_eq!(v3.code_sha256, v2.code_sha256, "settings updates keep code");
    assert_eq!(read(&reg.join("f/lambda_func.py")), "two");
    assert_eq!(
        LambdaConfig::load(&reg.join("f")).unwrap().environment,
        new_settings.environment
    );
    assert_eq!(
        read(&reg.join("f").join(REVISION_FILE)).trim(),
        v3.revision_id
    );
    // The archive v1 used is no longer referred to: collected.
    assert!(store.archive_path(&v1.code_sha256).is_err());
    assert!(store.archive_path(&v2.code_sha256).is_ok());
}

#[test]
fn expected_revisions_are_checked() {
    let (_d, reg, store) = registry();
    let f = name("f");
    let v1 = store
        .create(&f, &handler("1"), &LambdaConfig::default())
        .unwrap();
    let before = tree_listing(&reg);
    for result in [
        store.update_code(&f, &handler("2"), Some("nope")),
        store.update_settings(&f, &config(r#"{"timeout_s": 3}"#), Some("nope")),
    ] {
        match result {
            Err(StoreError::RevisionMismatch {
                expected, actual, ..
            }) => {
                assert_eq!(
                    (expected.as_str(), actual.as_str()),
                    ("nope", v1.revision_id.as_str())
                )
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(tree_listing(&reg), before);
    let v2 = store
        .update_code(&f, &handler("2"), Some(&v1.revision_id))
        .unwrap();
    store
        .update_settings(&f, &LambdaConfig::default(), Some(&v2.revision_id))
        .unwrap();
}

#[test]
fn missing_and_existing_names() {
    let (_d, reg, store) = registry();
    let ghost = name("ghost");
    assert!(matches!(
        store.get(&ghost),
        Err(StoreError::FunctionNotFound { .. })
    ));
    assert!(matches!(
        store.update_code(&ghost, &handler("1"), None),
        Err(StoreError::FunctionNotFound { .. })
    ));
    assert!(matches!(
        store.update_settings(&ghost, &LambdaConfig::default(), None),
        Err(StoreError::FunctionNotFound { .. })
    ));
    assert!(matches!(
        store.delete(&ghost),
        Err(StoreError::FunctionNotFound { .. })
    ));
    store
        .create(&name("f"), &handler("1"), &LambdaConfig::default())
        .unwrap();
    // Managed, hand-written, a directory that is no function, a file: all taken.
    std::fs::create_dir(reg.join("hand")).unwrap();
    std::fs::write(reg.join("hand/lambda_func.py"), "x").unwrap();
    std::fs::create_dir(reg.join("empty")).unwrap();
    std::fs::write(reg.join("file"), "x").unwrap();
    let before = tree_listing(&reg);
    for n in ["f", "hand", "empty", "file"] {
        match store.create(&name(n), &handler("2"), &LambdaConfig::default()) {
            Err(StoreError::Exists { name }) => assert_eq!(name, n),
            other => panic!("{n}: {other:?}"),
        }
    }
    assert_eq!(tree_listing(&reg), before);
}

#[test]
fn delete_removes_code_metadata_and_archive() {
    let (_d, reg, store) = registry();
    let info = store
        .create(&name("f"), &handler("1"), &LambdaConfig::default())
        .unwrap();
    store.delete(&name("f")).unwrap();
    assert!(!reg.join("f").exists());
    assert!(!reg.join(".store/functions/f.json").exists());
    assert!(store.archive_path(&info.code_sha256).is_err());
    assert!(store.list().unwrap().is_empty());
    assert!(matches!(
        store.get(&name("f")),
        Err(StoreError::FunctionNotFound { .. })
    ));
    // The name is free again.
    assert_eq!(
        store
            .create(&name("f"), &handler("1"), &LambdaConfig::default())
            .unwrap()
            .version,
        1
    );
    // An archive two functions share stays until neither uses it.
    store
        .create(&name("g"), &handler("1"), &LambdaConfig::default())
        .unwrap();
    store.delete(&name("f")).unwrap();
    assert!(store.archive_path(&info.code_sha256).is_ok());
    store.delete(&name("g")).unwrap();
    assert!(store.archive_path(&info.code_sha256).is_err());
}

#[test]
fn a_bad_archive_changes_nothing() {
    let (_d, reg, store) = registry();
    store
        .create(&name("f"), &handler("1"), &LambdaConfig::default())
        .unwrap();
    let before = tree_listing(&reg);
    let bomb = crate::archive::testing::zip_bomb(1024);
    let marker = zip_of(&[("lambda_func.py", Some(b"x")), (REVISION_FILE, Some(b"r"))]);
    for (bytes, want) in [
        (bomb.clone(), "expands more than 100 times"),
        (zip_of(&[("../x", Some(b"x"))]), "`..`"),
        (b"junk".to_vec(), "not a .zip"),
        (marker, "keeps for itself"),
    ] {
        for result in [
            store.create(&name("g"), &bytes, &LambdaConfig::default()),
            store.update_code(&name("f"), &bytes, None),
        ] {
            let e = result.unwrap_err().to_string();
            assert!(e.contains(want), "{want}: {e}");
            assert_eq!(tree_listing(&reg), before, "{e}");
        }
    }
}

#[test]
fn layers_are_versioned_and_resolved() {
    let (_d, reg, store) = registry();
    let common = name("common");
    assert!(matches!(
        store.layer_versions(&common),
        Err(StoreError::LayerNotFound { version: None, .. })
    ));
    let l1 = store
        .publish_layer(
            &common,
            &zip_of(&[("python/six.py", Some(b"V = 1\n"))]),
            Some("six"),
            &["python3.12".to_owned()],
        )
        .unwrap();
    assert_eq!(l1.version, 1);
    assert_eq!(l1.description.as_deref(), Some("six"));
    let l2 = store
        .publish_layer(
            &common,
            &zip_of(&[("python/six.py", Some(b"V = 2\n"))]),
            None,
            &[],
        )
        .unwrap();
    assert_eq!(l2.version, 2);
    assert_eq!(
        store.layer_versions(&common).unwrap(),
        vec![l1.clone(), l2.clone()]
    );
    store
        .publish_layer(&name("other"), &zip_of(&[("x.py", Some(b"1"))]), None, &[])
        .unwrap();
    let latest = store.list_layers().unwrap();
    assert_eq!(latest.len(), 2);
    assert_eq!(latest[0], l2);
    // Where workers find them.
    let (v, dir) = layer_dir(&reg, &LayerRef::parse("common").unwrap()).unwrap();
    assert_eq!(v, 2);
    assert_eq!(read(&dir.join("python/six.py")), "V = 2\n");
    assert_eq!(
        read(
            &layer_dir(&reg, &LayerRef::parse("common:1").unwrap())
                .unwrap()
                .1
                .join("python/six.py")
        ),
        "V = 1\n"
    );
    // A function's unversioned layer is pinned to the latest at that moment.
    let settings = config(r#"{"layers": ["common", "other:1"]}"#);
    let info = store.create(&name("f"), &handler("1"), &settings).unwrap();
    let pinned: Vec<String> = info
        .config
        .layers
        .unwrap()
        .iter()
        .map(|l| l.to_string())
        .collect();
    assert_eq!(pinned, vec!["common:2", "other:1"]);
    assert_eq!(info.settings, settings, "the settings keep what was asked");
    // Missing layers or versions are refused naming them; nothing changes.
    let before = tree_listing(&reg);
    for (layers, want) in [
        (r#"["nope"]"#, "layer nope does not exist"),
        (r#"["common:7"]"#, "layer common has no version 7"),
    ] {
        let s = config(&format!(r#"{{"layers": {layers}}}"#));
        for result in [
            store.create(&name("g"), &handler("1"), &s),
            store.update_settings(&name("f"), &s, None),
        ] {
            match result {
                Err(StoreError::Invalid { key, message }) => {
                    assert_eq!(key.as_deref(), Some("layers"));
                    assert!(message.contains(want), "{message}");
                }
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(tree_listing(&reg), before);
    }
    // A bad layer archive changes nothing either.
    assert!(store
        .publish_layer(&common, &zip_of(&[("/abs", Some(b"x"))]), None, &[])
        .is_err());
    assert_eq!(tree_listing(&reg), before);
    // Fields are checked.
    let e = store
        .publish_layer(
            &common,
            &zip_of(&[("a", Some(b"x"))]),
            Some(&"d".repeat(300)),
            &[],
        )
        .unwrap_err();
    assert!(
        matches!(e, StoreError::Invalid { key: Some(ref k), .. } if k == "description"),
        "{e}"
    );
}

#[test]
fn layer_versions_are_bounded() {
    let (_d, reg, store) = registry();
    let root = reg.join(".store/layers/many");
    std::fs::create_dir_all(&root).unwrap();
    for n in 1..=MAX_LAYER_VERSIONS {
        std::fs::write(root.join(format!("{n}.json")), "{}").unwrap();
    }
    let e = store
        .publish_layer(&name("many"), &zip_of(&[("a", Some(b"x"))]), None, &[])
        .unwrap_err();
    assert!(e.to_string().contains("1000 versions"), "{e}");
}

#[test]
fn functions_are_bounded() {
    let (_d, reg, store) = registry();
    for i in 0..MAX_FUNCTIONS {
        std::fs::create_dir(reg.join(format!("d{i}"))).unwrap();
    }
    let e = store
        .create(&name("one-more"), &handler("1"), &LambdaConfig::default())
        .unwrap_err();
    assert!(e.to_string().contains("10000 functions"), "{e}");
    assert!(!reg.join("one-more").exists());
}

#[test]
fn archives_are_found_by_valid_hashes_only() {
    let (_d, _reg, store) = registry();
    let info = store
        .create(&name("f"), &handler("1"), &LambdaConfig::default())
        .unwrap();
    let path = store.archive_path(&info.code_sha256).unwrap();
    assert_eq!(std::fs::read(path).unwrap(), handler("1"));
    for bad in ["../../etc/passwd", "", &"A".repeat(64), &"a".repeat(63)] {
        assert!(
            matches!(store.archive_path(bad), Err(StoreError::Invalid { .. })),
            "{bad}"
        );
    }
    match store.archive_path(&"0".repeat(64)) {
        Err(StoreError::Io { source, .. }) => {
            assert_eq!(source.kind(), std::io::ErrorKind::NotFound)
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn hand_written_functions_are_listed_and_taken_over() {
    let (_d, reg, store) = registry();
    std::fs::create_dir(reg.join("hand")).unwrap();
    std::fs::write(
        reg.join("hand/lambda_func.py"),
        "def handler(e): return 1\n",
    )
    .unwrap();
    std::fs::write(reg.join("hand/lambda.json"), r#"{"timeout_s": 7}"#).unwrap();
    std::fs::create_dir(reg.join("luna")).unwrap();
    std::fs::write(
        reg.join("luna/lambda_main.py"),
        "async def main(r): return {}\n",
    )
    .unwrap();
    std::fs::create_dir(reg.join("broken")).unwrap();
    std::fs::write(reg.join("broken/lambda.json"), r#"{"memroy_mb": 1}"#).unwrap();
    std::fs::create_dir(reg.join("not-a-function")).unwrap();
    std::fs::write(reg.join("not-a-function/notes.txt"), "x").unwrap();
    std::fs::create_dir(reg.join(".hidden")).unwrap();
    std::fs::write(reg.join(".hidden/lambda_func.py"), "x").unwrap();
    store
        .create(&name("managed"), &handler("1"), &LambdaConfig::default())
        .unwrap();

    let list = store.list().unwrap();
    let names: Vec<&str> = list.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, vec!["broken", "hand", "luna", "managed"]);
    let hand = &list[1];
    assert_eq!(hand.version, 0);
    assert_eq!(hand.config.timeout_s, Some(7));
    assert_eq!(hand.settings, LambdaConfig::default());
    assert!(is_sha256_hex(&hand.code_sha256));
    assert!(list[2].entry.is_luna());
    assert!(list[0]
        .config
        .description
        .as_deref()
        .unwrap()
        .contains("memroy_mb"));
    assert!(matches!(
        store.get(&name("broken")),
        Err(StoreError::Invalid { .. })
    ));
    // The hash follows the files.
    let h1 = store.get(&name("hand")).unwrap().code_sha256;
    std::fs::write(
        reg.join("hand/lambda_func.py"),
        "def handler(e): return 2\n",
    )
    .unwrap();
    let h2 = store.get(&name("hand")).unwrap();
    assert_ne!(h1, h2.code_sha256);
    assert_eq!(h2.revision_id, h2.code_sha256);

    // New settings: the files are packed into an archive and the function becomes managed.
    let info = store
        .update_settings(
            &name("hand"),
            &config(r#"{"memory_mb": 256}"#),
            Some(&h2.revision_id),
        )
        .unwrap();
    assert_eq!(info.version, 1);
    assert_eq!(
        (info.config.memory_mb, info.config.timeout_s),
        (Some(256), Some(7))
    );
    assert!(read(&reg.join("hand/lambda_func.py")).contains("return 2"));
    assert!(store.archive_path(&info.code_sha256).is_ok());
    // New code for a hand-written function makes it managed too.
    let info = store
        .update_code(&name("luna"), &handler("3"), None)
        .unwrap();
    assert_eq!(
        (info.version, info.entry.to_string().as_str()),
        (1, "lambda_func.handler")
    );
    assert!(!reg.join("luna/lambda_main.py").exists());
    // Deleting a hand-written one removes its directory.
    store.delete(&name("broken")).unwrap();
    assert!(!reg.join("broken").exists());
    assert!(reg.join("not-a-function/notes.txt").exists());
}

#[test]
fn hand_written_links_are_not_taken_over() {
    let (_d, reg, store) = registry();
    std::fs::create_dir(reg.join("hand")).unwrap();
    std::fs::write(reg.join("hand/lambda_func.py"), "x").unwrap();
    std::os::unix::fs::symlink("/etc/passwd", reg.join("hand/leak")).unwrap();
    let before = tree_listing(&reg);
    let e = store
        .update_settings(&name("hand"), &LambdaConfig::default(), None)
        .unwrap_err();
    assert!(e.to_string().contains("leak is not a regular file"), "{e}");
    assert_eq!(tree_listing(&reg), before);
}

#[test]
fn opening_needs_a_registry_directory() {
    let dir = tempfile::tempdir().unwrap();
    assert!(DirStore::open(&dir.path().join("missing")).is_err());
    std::fs::write(dir.path().join("file"), "x").unwrap();
    assert!(DirStore::open(&dir.path().join("file")).is_err());
    let store = DirStore::open(dir.path()).unwrap();
    assert_eq!(store.registry_dir(), dir.path());
    let mode = |sub: &str| {
        let md = std::fs::metadata(dir.path().join(STORE_DIR).join(sub)).unwrap();
        std::os::unix::fs::PermissionsExt::mode(&md.permissions()) & 0o777
    };
    assert_eq!(mode("functions"), 0o700);
    assert_eq!(mode("archives"), 0o700);
    assert_eq!(mode("layers"), 0o755);
}

#[test]
fn a_gpu_function_is_refused_at_deploy_where_there_is_no_gpu() {
    let (_d, reg, store) = registry();
    let store = store.with_gpu(false);
    let gpu = config(r#"{"enable_gpu": true}"#);
    let err = store.create(&name("g"), &handler("1"), &gpu).unwrap_err();
    assert!(
        matches!(&err, StoreError::Invalid { key: Some(k), message } if k == "enable_gpu" && message.contains("no NVIDIA GPU")),
        "{err}"
    );
    assert!(!reg.join("g").exists(), "nothing was deployed");
    // Also when the archive's own lambda.json asks for it.
    let archive = zip_of(&[
        (
            "lambda_func.py",
            Some(b"def handler(e):\n    return 1\n".as_slice()),
        ),
        ("lambda.json", Some(br#"{"enable_gpu": true}"#.as_slice())),
    ]);
    assert!(store
        .create(&name("g"), &archive, &LambdaConfig::default())
        .is_err());
    // With a GPU it deploys.
    let store = store.with_gpu(true);
    store.create(&name("g"), &handler("1"), &gpu).unwrap();
}
