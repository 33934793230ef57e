//! Archives for tests: good ones through the `zip` and `tar` writers, hostile ones byte by byte
//! (names, types and sizes no writer would produce), and bombs.

use std::io::{Cursor, Write};

use flate2::{Compress, Compression, Crc, FlushCompress};

/// (name, contents); `None` contents make a directory.
pub type Entries<'a> = &'a [(&'a str, Option<&'a [u8]>)];

/// A deflated zip of `entries` written by the `zip` crate.
pub fn zip_of(entries: Entries<'_>) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .unix_permissions(0o644);
    for (name, contents) in entries {
        match contents {
            Some(data) => {
                w.start_file(*name, opts).unwrap();
                w.write_all(data).unwrap();
            }
            None => w.add_directory(*name, opts).unwrap(),
        }
    }
    w.finish().unwrap().into_inner()
}

/// A tar entry for [`tar_gz_of`].
#[derive(Debug, Clone)]
pub struct TarEntry<'a> {
    pub name: &'a str,
    pub kind: tar::EntryType,
    pub data: &'a [u8],
    pub mode: u32,
    pub link: Option<&'a str>,
}

impl<'a> TarEntry<'a> {
    pub fn file(name: &'a str, data: &'a [u8]) -> Self {
        Self {
            name,
            kind: tar::EntryType::Regular,
            data,
            mode: 0o644,
            link: None,
        }
    }

    pub fn dir(name: &'a str) -> Self {
        Self {
            name,
            kind: tar::EntryType::Directory,
            data: b"",
            mode: 0o755,
            link: None,
        }
    }
}

/// A .tar.gz of `entries`, names written as given (even names `set_path` would refuse).
pub fn tar_gz_entries(entries: &[TarEntry<'_>]) -> Vec<u8> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), Compression::fast());
    let mut tar = tar::Builder::new(gz);
    for e in entries {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(e.kind);
        h.set_size(e.data.len() as u64);
        h.set_mode(e.mode);
        if let Some(link) = e.link {
            h.set_link_name(link).unwrap();
        }
        let field = &mut h.as_old_mut().name;
        field.fill(0);
        field[..e.name.len()].copy_from_slice(e.name.as_bytes());
        h.set_cksum();
        tar.append(&h, e.data).unwrap();
    }
    tar.into_inner().unwrap().finish().unwrap()
}

/// A .tar.gz of files and directories (`None` contents).
pub fn tar_gz_of(entries: Entries<'_>) -> Vec<u8> {
    let list: Vec<TarEntry<'_>> = entries
        .iter()
        .map(|(name, data)| match data {
            Some(d) => TarEntry::file(name, d),
            None => TarEntry::dir(name),
        })
        .collect();
    tar_gz_entries(&list)
}

/// One entry of a zip written byte by byte.
#[derive(Debug, Clone)]
pub struct RawEntry {
    pub name: Vec<u8>,
    /// 0 stored, 8 deflated, others as given.
    pub method: u16,
    /// General purpose flags (bit 0: encrypted).
    pub flags: u16,
    /// Unix mode, put in the high half of the external attributes.
    pub mode: u32,
    /// The data as stored (already compressed for method 8).
    pub data: Vec<u8>,
    pub crc: u32,
    /// The uncompressed size the headers declare.
    pub size: u32,
}

impl RawEntry {
    /// A stored regular file.
    pub fn stored(name: &str, data: &[u8]) -> Self {
        let mut crc = Crc::new();
        crc.update(data);
        Self {
            name: name.as_bytes().to_vec(),
            method: 0,
            flags: 0,
            mode: 0o100_644,
            data: data.to_vec(),
            crc: crc.sum(),
            size: data.len() as u32,
        }
    }
}

/// A zip of `entries` with its local headers, central directory and end record.
pub fn raw_zip(entries: &[RawEntry]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut central = Vec::new();
    for e in entries {
        let offset = out.len() as u32;
        let common = |v: &mut Vec<u8>| {
            v.extend_from_slice(&20u16.to_le_bytes()); // version needed
            v.extend_from_slice(&e.flags.to_le_bytes());
            v.extend_from_slice(&e.method.to_le_bytes());
            v.extend_from_slice(&0u32.to_le_bytes()); // time, date
            v.extend_from_slice(&e.crc.to_le_bytes());
            v.extend_from_slice(&(e.data.len() as u32).to_le_bytes());
            v.extend_from_slice(&e.size.to_le_bytes());
            v.extend_from_slice(&(e.name.len() as u16).to_le_bytes());
            v.extend_from_slice(&0u16.to_le_bytes()); // extra
        };
        out.extend_from_slice(b"PK\x03\x04");
        common(&mut out);
        out.extend_from_slice(&e.name);
        out.extend_from_slice(&e.data);
        central.extend_from_slice(b"PK\x01\x02");
        central.extend_from_slice(&(3u16 << 8 | 20).to_le_bytes()); // made by: unix
        common(&mut central);
        central.extend_from_slice(&0u16.to_le_bytes()); // comment
        central.extend_from_slice(&0u16.to_le_bytes()); // disk
        central.extend_from_slice(&0u16.to_le_bytes()); // internal attributes
        central.extend_from_slice(&(e.mode << 16).to_le_bytes());
        central.extend_from_slice(&offset.to_le_bytes());
        central.extend_from_slice(&e.name);
    }
    let cd_offset = out.len() as u32;
    out.extend_from_slice(&central);
    out.extend_from_slice(b"PK\x05\x06");
    out.extend_from_slice(&0u32.to_le_bytes()); // disks
    out.extend_from_slice(&(entries.len() as u16).to_le_bytes());
    out.extend_from_slice(&(entries.len() as u16).to_le_bytes());
    out.extend_from_slice(&(central.len() as u32).to_le_bytes());
    out.extend_from_slice(&cd_offset.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out
}

/// Raw deflate of `data` ending in a full flush: a piece that can be repeated and
/// concatenated (it refers to nothing before it and ends on a byte boundary).
fn deflate_piece(data: &[u8]) -> Vec<u8> {
    let mut c = Compress::new(Compression::best(), false);
    let mut out = Vec::with_capacity(data.len() / 100 + 1024);
    loop {
        let done = c.total_in() as usize;
        out.reserve(64 * 1024);
        c.compress_vec(&data[done..], &mut out, FlushCompress::Full)
            .unwrap();
        if c.total_in() as usize == data.len() && out.capacity() > out.len() {
            break;
        }
    }
    out
}

/// The final (empty) block that ends a raw deflate stream.
fn deflate_end() -> Vec<u8> {
    let mut c = Compress::new(Compression::best(), false);
    let mut out = Vec::with_capacity(64);
    c.compress_vec(&[], &mut out, FlushCompress::Finish)
        .unwrap();
    out
}

/// A raw deflate stream of `mib` MiB of zeros, its CRC-32 and length, made without
/// compressing (or holding) them all: one deflated MiB repeated.
pub fn deflated_zeros(mib: u64) -> (Vec<u8>, u32) {
    let mib_zeros = vec![0u8; 1 << 20];
    let piece = deflate_piece(&mib_zeros);
    let mut one = Crc::new();
    one.update(&mib_zeros);
    let mut crc = Crc::new();
    let mut stream = Vec::with_capacity(piece.len() * mib as usize + 16);
    for _ in 0..mib {
        stream.extend_from_slice(&piece);
        crc.combine(&one);
    }
    stream.extend_from_slice(&deflate_end());
    (stream, crc.sum())
}

/// `zeros.bin`: `mib` MiB of zeros, deflated, honestly declared.
pub fn zeros_entry(mib: u64) -> RawEntry {
    let (data, crc) = deflated_zeros(mib);
    RawEntry {
        name: b"zeros.bin".to_vec(),
        method: 8,
        flags: 0,
        mode: 0o100_644,
        data,
        crc,
        size: (mib << 20) as u32,
    }
}

/// A zip holding `lambda_func.py` and `zeros.bin`: `mib` MiB of zeros, honestly declared
/// (1 GiB packs into about 1 MB).
pub fn zip_bomb(mib: u64) -> Vec<u8> {
    let handler = RawEntry::stored("lambda_func.py", b"def handler(e):\n    return 1\n");
    raw_zip(&[handler, zeros_entry(mib)])
}

/// A .tar.gz holding one file of `mib` MiB of zeros, built from repeated deflate pieces.
pub fn tar_gz_bomb(mib: u64) -> Vec<u8> {
    tar_gz_bomb_of(tar::EntryType::Regular, mib)
}

/// A .tar.gz holding one entry of type `kind` with `mib` MiB of zeros as its data.
pub fn tar_gz_bomb_of(kind: tar::EntryType, mib: u64) -> Vec<u8> {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_size(mib << 20);
    h.set_mode(0o644);
    h.set_path("zeros.bin").unwrap();
    h.set_cksum();
    let header = h.as_bytes().to_vec();
    let end = vec![0u8; 1024];
    let mib_zeros = vec![0u8; 1 << 20];
    let (h_piece, z_piece, e_piece) = (
        deflate_piece(&header),
        deflate_piece(&mib_zeros),
        deflate_piece(&end),
    );
    let crc_of = |d: &[u8]| {
        let mut c = Crc::new();
        c.update(d);
        c
    };
    let mut crc = crc_of(&header);
    let one = crc_of(&mib_zeros);
    let mut out = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3];
    out.extend_from_slice(&h_piece);
    for _ in 0..mib {
        out.extend_from_slice(&z_piece);
        crc.combine(&one);
    }
    out.extend_from_slice(&e_piece);
    crc.combine(&crc_of(&end));
    out.extend_from_slice(&deflate_end());
    let total = 512 + (mib << 20) + 1024;
    out.extend_from_slice(&crc.sum().to_le_bytes());
    out.extend_from_slice(&(total as u32).to_le_bytes());
    out
}

/// Every path under `dir` with its type and contents, sorted: to compare a tree before and
/// after an operation.
pub fn tree_listing(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    for entry in walkdir::WalkDir::new(dir).sort_by_file_name() {
        let entry = entry.unwrap();
        let rel = entry
            .path()
            .strip_prefix(dir)
            .unwrap()
            .display()
            .to_string();
        let t = entry.file_type();
        let what = if t.is_dir() {
            "dir".to_owned()
        } else if t.is_file() {
            let data = std::fs::read(entry.path()).unwrap();
            let mut crc = Crc::new();
            crc.update(&data);
            format!("file {} {:08x}", data.len(), crc.sum())
        } else {
            "other".to_owned()
        };
        out.push(format!("{rel}: {what}"));
    }
    out
}
