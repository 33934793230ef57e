//! Rotation of numbered log files, shared by the worker's own log (`logging`) and the handler
//! logs (`logs::writer`): `X` becomes `X.1`, each `X.N` becomes `X.N+1`, and the one past the
//! number kept is replaced.

use std::path::PathBuf;

/// Shifts the files `path(0)`, `path(1)`, ... up by one, keeping `keep` rotated ones (`path(1)`
/// to `path(keep)`); with `keep` 0, `path(0)` is removed. Missing files in the middle are fine.
pub fn shift(path: impl Fn(u32) -> PathBuf, keep: u32) -> std::io::Result<()> {
    if keep == 0 {
        return match std::fs::remove_file(path(0)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        };
    }
    for n in (1..keep).rev() {
        match std::fs::rename(path(n), path(n + 1)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    std::fs::rename(path(0), path(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_move_up_and_the_oldest_goes() {
        let dir = tempfile::tempdir().unwrap();
        let path = |n: u32| {
            if n == 0 {
                dir.path().join("x")
            } else {
                dir.path().join(format!("x.{n}"))
            }
        };
        let read = |n| std::fs::read_to_string(path(n)).ok();
        for round in 0..4 {
            std::fs::write(path(0), format!("{round}")).unwrap();
            shift(path, 2).unwrap();
        }
        assert_eq!(
            (read(0), read(1), read(2), read(3)),
            (None, Some("3".into()), Some("2".into()), None)
        );
        std::fs::write(path(0), "x").unwrap();
        shift(path, 0).unwrap();
        assert_eq!(read(0), None);
        shift(path, 0).unwrap();
    }
}
