use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use super::testing::*;
use super::*;

fn dest() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

fn is_empty(dir: &Path) -> bool {
    std::fs::read_dir(dir).unwrap().next().is_none()
}

fn mode(path: &Path) -> u32 {
    std::fs::symlink_metadata(path)
        .unwrap()
        .permissions()
        .mode()
        & 0o7777
}

/// Unpacking `archive` fails with a message holding `want`, and leaves `dest` empty.
fn refused(archive: &[u8], want: &str) -> ArchiveError {
    let d = dest();
    let e = unpack(archive, d.path()).unwrap_err();
    assert!(e.to_string().contains(want), "want {want:?}, got: {e}");
    assert!(is_empty(d.path()), "{e}: the destination is not empty");
    e
}

#[test]
fn a_good_zip_unpacks_with_modes() {
    let mut w = ::zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts = ::zip::write::SimpleFileOptions::default();
    w.start_file("lambda_func.py", opts.unix_permissions(0o4777))
        .unwrap();
    std::io::Write::write_all(&mut w, b"def handler(e):\n    return 1\n").unwrap();
    w.add_directory("lib/", opts.unix_permissions(0o777))
        .unwrap();
    w.start_file("lib/util.py", opts.unix_permissions(0o600))
        .unwrap();
    std::io::Write::write_all(&mut w, b"X = 1\n").unwrap();
    w.start_file(
        "bin/tool",
        opts.compression_method(::zip::CompressionMethod::Stored)
            .unix_permissions(0o700),
    )
    .unwrap();
    std::io::Write::write_all(&mut w, b"#!/bin/sh\n").unwrap();
    let bytes = w.finish().unwrap().into_inner();
    assert_eq!(kind(&bytes), Some(ArchiveKind::Zip));
    let d = dest();
    let got = unpack(&bytes, d.path()).unwrap();
    assert_eq!(
        got,
        Unpacked {
            files: 3,
            bytes: 29 + 6 + 10
        }
    );
    let p = d.path();
    assert_eq!(
        std::fs::read_to_string(p.join("lib/util.py")).unwrap(),
        "X = 1\n"
    );
    // Executable anywhere: 0755, setuid dropped; otherwise 0644; directories 0755.
    assert_eq!(mode(&p.join("lambda_func.py")), 0o755);
    assert_eq!(mode(&p.join("lib/util.py")), 0o644);
    assert_eq!(mode(&p.join("bin/tool")), 0o755);
    assert_eq!(mode(&p.join("lib")), 0o755);
    assert_eq!(mode(&p.join("bin")), 0o755);
}

#[test]
fn a_good_tar_gz_unpacks() {
    let bytes = tar_gz_entries(&[
        TarEntry::dir("./"),
        TarEntry::file("./lambda_func.py", b"def handler(e): pass\n"),
        TarEntry::file("packages.txt", b"six\n"),
        TarEntry::dir("pkg"),
        TarEntry {
            mode: 0o6755,
            ..TarEntry::file("pkg/run.sh", b"#!/bin/sh\n")
        },
    ]);
    assert_eq!(kind(&bytes), Some(ArchiveKind::TarGz));
    let d = dest();
    let got = unpack(&bytes, d.path()).unwrap();
    assert_eq!(got.files, 3);
    assert_eq!(got.bytes, 21 + 4 + 10);
    assert_eq!(mode(&d.path().join("pkg/run.sh")), 0o755);
    assert_eq!(mode(&d.path().join("packages.txt")), 0o644);
    assert_eq!(
        tree_listing(d.path()).len(),
        5,
        "{:?}",
        tree_listing(d.path())
    );
}

#[test]
fn a_luna_zip_unpacks() {
    let bytes = zip_of(&[
        (
            "lambda_main.py",
            Some(b"async def main(request):\n    return {'ok': request.json}\n"),
        ),
        ("requirements.txt", Some(b"six==1.16.0\n")),
        ("docs/", None),
        ("docs/lambda.html", Some(b"<h1>hello</h1>\n")),
        ("docs/lambda.yml", Some(b"openapi: 3.0.0\n")),
    ]);
    let d = dest();
    assert_eq!(unpack(&bytes, d.path()).unwrap().files, 4);
    for f in [
        "lambda_main.py",
        "requirements.txt",
        "docs/lambda.html",
        "docs/lambda.yml",
    ] {
        assert!(d.path().join(f).is_file(), "{f}");
    }
}

#[test]
fn a_single_top_directory_is_stripped_when_it_holds_the_code() {
    for bytes in [
        zip_of(&[
            ("hello-1.0/", None),
            ("hello-1.0/lambda_func.py", Some(b"x")),
            ("hello-1.0/lib/a.py", Some(b"y")),
        ]),
        tar_gz_of(&[
            ("hello/", None),
            ("hello/lambda_main.py", Some(b"x")),
            ("hello/hello/a.py", Some(b"y")),
        ]),
    ] {
        let d = dest();
        unpack(&bytes, d.path()).unwrap();
        let top: Vec<_> = std::fs::read_dir(d.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(top.len(), 2, "{top:?}");
        assert!(!top.iter().any(|n| n.starts_with(".strip")), "{top:?}");
    }
    // A layer's single `python/` directory stays.
    let d = dest();
    unpack(&zip_of(&[("python/six.py", Some(b"x"))]), d.path()).unwrap();
    assert!(d.path().join("python/six.py").is_file());
}

#[test]
fn unsafe_names_are_refused() {
    for (name, want) in [
        ("../evil.py", "`..`"),
        ("a/../../evil.py", "`..`"),
        ("/etc/evil.py", "absolute path"),
        ("a//b.py", "empty component"),
        ("a\\b.py", "Windows separator"),
    ] {
        refused(&zip_of(&[("ok.py", Some(b"x")), (name, Some(b"x"))]), want);
        refused(
            &tar_gz_of(&[("ok.py", Some(b"x")), (name, Some(b"x"))]),
            want,
        );
    }
    let mut nul = RawEntry::stored("a", b"x");
    nul.name = b"a\0b.py".to_vec();
    refused(
        &raw_zip(&[RawEntry::stored("ok.py", b"x"), nul]),
        "NUL byte",
    );
}

#[test]
fn duplicate_names_are_refused() {
    refused(
        &raw_zip(&[
            RawEntry::stored("lambda_func.py", b"one"),
            RawEntry::stored("lambda_func.py", b"two"),
        ]),
        "duplicate",
    );
    refused(
        &tar_gz_of(&[("a.py", Some(b"one")), ("./a.py", Some(b"two"))]),
        "duplicate",
    );
    // `a` and `a/`: one name, two entries.
    refused(
        &tar_gz_of(&[("a", None), ("a/", None), ("x", Some(b"1"))]),
        "duplicate",
    );
    // A file and a directory of the same name, either way round.
    refused(
        &zip_of(&[("a", Some(b"1")), ("a/", None)]),
        "both a file and a directory",
    );
    refused(
        &zip_of(&[("a/b.py", Some(b"1")), ("a", Some(b"2"))]),
        "both a file and a directory",
    );
    refused(
        &tar_gz_of(&[("a", Some(b"1")), ("a/b.py", Some(b"2"))]),
        "also a file",
    );
}

#[test]
fn links_devices_and_fifos_are_refused() {
    let mut link = RawEntry::stored("lambda_func.py", b"/etc/shadow");
    link.mode = 0o120_777;
    refused(&raw_zip(&[link]), "symbolic link");
    let mut fifo = RawEntry::stored("pipe", b"");
    fifo.mode = 0o010_644;
    refused(&raw_zip(&[RawEntry::stored("a.py", b"x"), fifo]), "device");
    for (kind, want) in [
        (tar::EntryType::Symlink, "symbolic link"),
        (tar::EntryType::Link, "hard link"),
        (tar::EntryType::Char, "device"),
        (tar::EntryType::Block, "device"),
        (tar::EntryType::Fifo, "device or FIFO"),
    ] {
        let bytes = tar_gz_entries(&[
            TarEntry::file("ok.py", b"x"),
            TarEntry {
                kind,
                link: Some("/etc/shadow"),
                ..TarEntry::file("lambda_func.py", b"")
            },
        ]);
        refused(&bytes, want);
    }
}

#[test]
fn encrypted_entries_and_other_methods_are_refused() {
    let mut enc = RawEntry::stored("secret.py", b"xxxxxxxxxxxxxxxx");
    enc.flags = 1;
    refused(&raw_zip(&[enc]), "encrypted");
    let mut bz = RawEntry::stored("a.py", b"xxxx");
    bz.method = 12;
    refused(&raw_zip(&[bz]), "only stored and deflated");
}

#[test]
fn damaged_or_foreign_bytes_are_refused() {
    refused(b"", "not a .zip or .tar.gz");
    refused(
        b"#!/bin/sh\necho hi\n",
        "not a .zip or .tar.gz archive (it starts with bytes 23 21",
    );
    let good = zip_of(&[("a.py", Some(b"print(1)\n"))]);
    refused(&good[..good.len() - 30], "damaged");
    let gz = tar_gz_of(&[("a.py", Some(&[7u8; 5000]))]);
    refused(&gz[..gz.len() / 2], "damaged");
    let mut flipped = zip_of(&[("a.py", Some(&[7u8; 5000]))]);
    flipped[40] ^= 0xff; // inside the deflated data
    let d = dest();
    assert!(unpack(&flipped, d.path()).is_err());
    assert!(is_empty(d.path()));
    refused(&zip_of(&[("empty/", None)]), "no files");
    refused(&tar_gz_of(&[]), "no files");
}

#[test]
fn a_destination_must_be_an_empty_directory() {
    let d = dest();
    std::fs::write(d.path().join("x"), "keep").unwrap();
    let e = unpack(&zip_of(&[("a.py", Some(b"1"))]), d.path()).unwrap_err();
    assert!(matches!(e, ArchiveError::Destination { .. }), "{e}");
    assert_eq!(std::fs::read_to_string(d.path().join("x")).unwrap(), "keep");
}

#[test]
fn sizes_and_counts_are_bounded() {
    refused(&vec![b'P'; MAX_ARCHIVE_BYTES + 1], "more than 52428800");
    // More entries than allowed: refused from the central directory, before any is read.
    let many: Vec<RawEntry> = (0..=MAX_ENTRIES)
        .map(|i| RawEntry::stored(&format!("f{i}"), b""))
        .collect();
    refused(&raw_zip(&many), "more than 10000 entries");
    let names: Vec<String> = (0..=MAX_ENTRIES).map(|i| format!("f{i}")).collect();
    let entries: Vec<TarEntry<'_>> = names.iter().map(|n| TarEntry::file(n, b"")).collect();
    refused(&tar_gz_entries(&entries), "more than 10000 entries");
    // A stored (uncompressible-ratio) zip that declares more than the total.
    let mut big = RawEntry::stored("big.bin", b"");
    big.size = (MAX_UNPACKED_BYTES + 1) as u32;
    big.data = vec![0u8; (MAX_UNPACKED_BYTES / MAX_RATIO) as usize + 1];
    refused(&raw_zip(&[big]), "unpacks to more than 256 MiB");
}

#[test]
fn a_zip_bomb_is_refused_quickly_without_writing() {
    let bomb = zip_bomb(1024); // 1 GiB of zeros
    assert!(bomb.len() < 2 << 20, "{} bytes", bomb.len());
    let start = Instant::now();
    let e = refused(&bomb, "entry \"zeros.bin\" expands more than 100 times");
    assert!(matches!(e, ArchiveError::EntryRatio { .. }));
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
    // The same construction at a size within the limits is a valid archive: the refusal is
    // for the ratio, not for damage.
    let small = raw_zip(&[zeros_entry(1)]);
    let d = dest();
    unpack(&small, d.path()).unwrap();
    assert_eq!(
        std::fs::metadata(d.path().join("zeros.bin")).unwrap().len(),
        1 << 20
    );
    // Many entries each under the per-entry check still trip the archive's total.
    let one = zeros_entry(1);
    let entries: Vec<RawEntry> = (0..300)
        .map(|i| RawEntry {
            name: format!("z{i}").into_bytes(),
            ..one.clone()
        })
        .collect();
    refused(
        &raw_zip(&entries),
        "the archive expands more than 100 times",
    );
}

#[test]
fn a_zip_entry_longer_than_declared_is_cut_and_refused() {
    // Declares 1000 bytes, holds 64 MiB of zeros: only what is declared is ever read.
    let (data, _) = deflated_zeros(64);
    let liar = RawEntry {
        name: b"liar.bin".to_vec(),
        method: 8,
        flags: 0,
        mode: 0o100_644,
        data,
        crc: 0,
        size: 1000,
    };
    let start = Instant::now();
    refused(&raw_zip(&[liar]), "larger than its header says");
    assert!(start.elapsed() < Duration::from_secs(2));
}

#[test]
fn a_tar_gz_bomb_is_refused_quickly_without_writing() {
    let bomb = tar_gz_bomb(1024);
    assert!(bomb.len() < 2 << 20, "{} bytes", bomb.len());
    let start = Instant::now();
    let e = refused(&bomb, "expands more than 100 times");
    assert!(
        matches!(&e, ArchiveError::TotalRatio { entry: Some(n), .. } if n == "zeros.bin"),
        "{e}"
    );
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
    // Valid at a small size.
    let d = dest();
    let got = unpack(&tar_gz_bomb(1), d.path()).unwrap();
    assert_eq!(got.bytes, 1 << 20);
}

#[test]
fn tar_gz_output_is_counted_not_only_declared_file_sizes() {
    // A pax extended header is no file: its size is no file size, but the tar reader holds it
    // in memory. The bytes out of gzip are capped all the same.
    let bomb = tar_gz_bomb_of(tar::EntryType::XHeader, 256);
    let start = Instant::now();
    let e = refused(&bomb, "expands more than 100 times");
    assert!(
        matches!(e, ArchiveError::TotalRatio { entry: None, .. }),
        "{e}"
    );
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
}
