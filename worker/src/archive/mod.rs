//! Reading code archives (`.zip` and `.tar.gz`) safely: to be written by the archive work.

/// Why an archive was refused; nothing was written.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("archive refused: {0}")]
    Refused(String),
}
