//! Which Debian mirror `debootstrap` uses: `$LAMBDAWORKER_MIRROR`, else the Debian archive that apt
//! on this machine already uses, read from its sources (deb822 `*.sources` and one-line `*.list`).
//!
//! The parsers are pure functions over the files' text, so they are unit-tested on sample sources;
//! no mirror host name is written anywhere in the repository.

use std::path::{Path, PathBuf};

/// Environment variable that overrides the mirror.
pub const MIRROR_ENV: &str = "LAMBDAWORKER_MIRROR";

/// Debian suite names (codenames and aliases) that identify a Debian archive entry. Entries of other
/// repositories (vendor repositories with suites such as `nodistro` or `cloud-sdk-bookworm`) are
/// skipped.
const DEBIAN_SUITES: &[&str] = &[
    "buzz",
    "rex",
    "bo",
    "hamm",
    "slink",
    "potato",
    "woody",
    "sarge",
    "etch",
    "lenny",
    "squeeze",
    "wheezy",
    "jessie",
    "stretch",
    "buster",
    "bullseye",
    "bookworm",
    "trixie",
    "forky",
    "duke",
    "sid",
    "oldoldstable",
    "oldstable",
    "stable",
    "testing",
    "unstable",
];

/// One source entry: a deb822 paragraph or a one-line `deb ...` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceEntry {
    /// `deb`, `deb-src`.
    pub types: Vec<String>,
    pub uris: Vec<String>,
    pub suites: Vec<String>,
    /// False for `Enabled: no`.
    pub enabled: bool,
}

/// Parses a deb822 `.sources` file (paragraphs separated by blank lines; `#` comments; continuation
/// lines start with white space; field names are case-insensitive).
pub fn parse_deb822(text: &str) -> Vec<SourceEntry> {
    let mut entries = Vec::new();
    let mut fields: Vec<(String, String)> = Vec::new();
    let flush = |fields: &mut Vec<(String, String)>, entries: &mut Vec<SourceEntry>| {
        if fields.is_empty() {
            return;
        }
        let get = |name: &str| -> Vec<String> {
            fields
                .iter()
                .filter(|(k, _)| k.eq_ignore_ascii_case(name))
                .flat_map(|(_, v)| v.split_whitespace().map(str::to_owned))
                .collect()
        };
        let enabled = !fields
            .iter()
            .any(|(k, v)| k.eq_ignore_ascii_case("Enabled") && v.trim().eq_ignore_ascii_case("no"));
        entries.push(SourceEntry {
            types: get("Types"),
            uris: get("URIs"),
            suites: get("Suites"),
            enabled,
        });
        fields.clear();
    };
    for line in text.lines() {
        if line.trim_start().starts_with('#') {
            continue;
        }
        if line.trim().is_empty() {
            flush(&mut fields, &mut entries);
            continue;
        }
        if line.starts_with([' ', '\t']) {
            if let Some((_, value)) = fields.last_mut() {
                value.push(' ');
                value.push_str(line.trim());
            }
            continue;
        }
        if let Some((key, value)) = line.split_once(':') {
            fields.push((key.trim().to_owned(), value.trim().to_owned()));
        }
    }
    flush(&mut fields, &mut entries);
    entries
}

/// Parses one-line sources (`deb [opts] URI suite components...`, `#` comments).
pub fn parse_one_line(text: &str) -> Vec<SourceEntry> {
    let mut entries = Vec::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or_default();
        let mut tokens = line.split_whitespace();
        let Some(kind) = tokens.next() else {
            continue;
        };
        let mut rest: Vec<&str> = tokens.collect();
        // Options: `[arch=amd64 signed-by=...]`, possibly spread over several tokens (`[ a=b ]`).
        if rest.first().is_some_and(|t| t.starts_with('[')) {
            let end = rest.iter().position(|t| t.ends_with(']'));
            match end {
                Some(end) => {
                    rest.drain(..=end);
                }
                None => continue,
            }
        }
        let (Some(uri), Some(suite)) = (rest.first(), rest.get(1)) else {
            continue;
        };
        entries.push(SourceEntry {
            types: vec![kind.to_owned()],
            uris: vec![(*uri).to_owned()],
            suites: vec![(*suite).to_owned()],
            enabled: true,
        });
    }
    entries
}

/// True for a suite that is a distribution's main suite (not security, updates, backports).
fn is_main_debian_suite(suite: &str) -> bool {
    let suite = suite.trim_end_matches('/');
    DEBIAN_SUITES.contains(&suite)
}

fn is_supported_uri(uri: &str) -> bool {
    ["http://", "https://", "ftp://", "file:"]
        .iter()
        .any(|scheme| uri.starts_with(scheme))
}

/// Picks the first Debian archive URI from apt source files given as `(file name, text)`, in apt's
/// reading order. A file whose name ends in `.sources` is deb822, any other one-line. Entries that
/// are disabled, `deb-src` only, or only list security/updates/backports suites are skipped.
pub fn pick_mirror(files: &[(String, String)]) -> Option<String> {
    files
        .iter()
        .flat_map(|(name, text)| {
            if name.ends_with(".sources") {
                parse_deb822(text)
            } else {
                parse_one_line(text)
            }
        })
        .filter(|e| e.enabled && e.types.iter().any(|t| t == "deb"))
        .filter(|e| e.suites.iter().any(|s| is_main_debian_suite(s)))
        .flat_map(|e| e.uris)
        .find(|uri| is_supported_uri(uri))
}

/// Reads apt's source files in apt's order: `sources.list`, then `sources.list.d/*.list` and
/// `*.sources` sorted by name. Unreadable or absent files are skipped.
pub fn read_apt_sources(apt_dir: &Path) -> Vec<(String, String)> {
    let mut paths: Vec<PathBuf> = vec![apt_dir.join("sources.list")];
    if let Ok(dir) = std::fs::read_dir(apt_dir.join("sources.list.d")) {
        let mut more: Vec<PathBuf> = dir
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.extension()
                    .is_some_and(|ext| ext == "list" || ext == "sources")
            })
            .collect();
        more.sort();
        paths.extend(more);
    }
    paths
        .into_iter()
        .filter_map(|p| {
            let text = std::fs::read_to_string(&p).ok()?;
            Some((p.to_string_lossy().into_owned(), text))
        })
        .collect()
}

/// The mirror to build the base from: `$LAMBDAWORKER_MIRROR`, else apt's Debian archive.
pub fn find_mirror() -> Option<String> {
    if let Some(m) = std::env::var_os(MIRROR_ENV) {
        let m = m.to_string_lossy().trim().to_owned();
        if !m.is_empty() {
            return Some(m);
        }
    }
    pick_mirror(&read_apt_sources(Path::new("/etc/apt")))
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEB822: &str = "\
Types: deb
# http://snapshot.example/archive/debian/20250520T000000Z
URIs: http://mirror.example/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://mirror.example/debian-security
Suites: bookworm-security
Components: main
";

    fn files(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(n, t)| ((*n).to_owned(), (*t).to_owned()))
            .collect()
    }

    #[test]
    fn deb822_paragraphs_are_parsed() {
        let entries = parse_deb822(DEB822);
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].uris, ["http://mirror.example/debian"]);
        assert_eq!(entries[0].suites, ["bookworm", "bookworm-updates"]);
        assert_eq!(entries[1].suites, ["bookworm-security"]);
        assert!(entries.iter().all(|e| e.enabled && e.types == ["deb"]));
    }

    #[test]
    fn deb822_first_debian_archive_is_picked() {
        let got = pick_mirror(&files(&[(
            "/etc/apt/sources.list.d/debian.sources",
            DEB822,
        )]));
        assert_eq!(got.as_deref(), Some("http://mirror.example/debian"));
    }

    #[test]
    fn security_first_is_skipped() {
        let text = "\
Types: deb
URIs: http://security.example/debian-security
Suites: trixie-security trixie-updates
Components: main

types: deb
uris:
 http://mirror.example/debian
suites: trixie
components: main
";
        let got = pick_mirror(&files(&[("x.sources", text)]));
        assert_eq!(got.as_deref(), Some("http://mirror.example/debian"));
    }

    #[test]
    fn disabled_and_source_only_entries_are_skipped() {
        let text = "\
Types: deb
URIs: http://disabled.example/debian
Suites: trixie
Enabled: no

Types: deb-src
URIs: http://src.example/debian
Suites: trixie

Types: deb deb-src
URIs: http://mirror.example/debian
Suites: trixie
";
        let got = pick_mirror(&files(&[("a.sources", text)]));
        assert_eq!(got.as_deref(), Some("http://mirror.example/debian"));
    }

    #[test]
    fn vendor_repositories_are_skipped() {
        let vendor = "\
Types: deb
URIs: https://vendor.example/node_20.x
Suites: nodistro
Components: main
";
        let list = "deb https://vendor.example/apt cloud-sdk-bookworm main\n";
        let got = pick_mirror(&files(&[
            ("/etc/apt/sources.list", list),
            ("/etc/apt/sources.list.d/a.sources", vendor),
            ("/etc/apt/sources.list.d/debian.sources", DEB822),
        ]));
        assert_eq!(got.as_deref(), Some("http://mirror.example/debian"));
    }

    #[test]
    fn one_line_sources_are_parsed() {
        let text = "\
# comment
deb-src http://src.example/debian bookworm main
deb [arch=amd64 signed-by=/usr/share/keyrings/k.gpg] http://security.example/debian-security bookworm-security main
deb [ arch=amd64 ] http://mirror.example/debian bookworm main contrib # trailing comment
deb http://other.example/debian bookworm main
";
        let entries = parse_one_line(text);
        assert_eq!(entries.len(), 4);
        assert_eq!(entries[2].uris, ["http://mirror.example/debian"]);
        assert_eq!(entries[2].suites, ["bookworm"]);
        let got = pick_mirror(&files(&[("/etc/apt/sources.list", text)]));
        assert_eq!(got.as_deref(), Some("http://mirror.example/debian"));
    }

    #[test]
    fn old_style_security_suite_is_skipped() {
        let text = "deb http://security.example/debian-security buster/updates main\n\
                    deb http://mirror.example/debian buster main\n";
        let got = pick_mirror(&files(&[("sources.list", text)]));
        assert_eq!(got.as_deref(), Some("http://mirror.example/debian"));
    }

    #[test]
    fn nothing_usable_gives_none() {
        assert_eq!(pick_mirror(&[]), None);
        let text = "deb cdrom:[Debian GNU/Linux]/ bookworm main\nbroken line\n";
        assert_eq!(pick_mirror(&files(&[("sources.list", text)])), None);
    }

    #[test]
    fn apt_dir_is_read_in_apt_order() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path().join("sources.list.d");
        std::fs::create_dir(&d).unwrap();
        std::fs::write(d.join("b.sources"), DEB822).unwrap();
        std::fs::write(
            d.join("a.list"),
            "deb https://vendor.example/apt nodistro main\n",
        )
        .unwrap();
        std::fs::write(
            d.join("c.list.disabled"),
            "deb http://no.example/debian trixie main\n",
        )
        .unwrap();
        let read = read_apt_sources(tmp.path());
        let names: Vec<&str> = read
            .iter()
            .map(|(n, _)| n.rsplit('/').next().unwrap())
            .collect();
        assert_eq!(names, ["a.list", "b.sources"]);
        assert_eq!(
            pick_mirror(&read).as_deref(),
            Some("http://mirror.example/debian")
        );
    }
}
