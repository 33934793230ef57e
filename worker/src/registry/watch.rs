//! Remembered lookups, forgotten the moment the registry changes: an inotify watch on the
//! registry directory, on each remembered lambda's directory and on its files.
//!
//! A change made through the file system (a write, a rename, a new or deleted file, a touched
//! mtime) queues its event before the system call that made it returns, so a call that starts
//! after an edit finishes reads the event first ([`Watch::cached`] drains the queue without
//! blocking) and looks the lambda up again: "edits take effect on the next call" holds, and the
//! warm path makes no `stat` at all.
//!
//! Rules:
//! - a lambda is remembered from its second lookup on (as nginx's `open_file_cache_min_uses`):
//!   a lambda called once (a stream of new lambdas, each cold) never pays for watches;
//! - a lookup is remembered only if no event arrived between adding its watches and its
//!   result (an edit racing the lookup is never lost);
//! - any event of a lambda's watches forgets that lambda; an event in the registry directory
//!   forgets the lambda it names; a queue overflow, or the registry directory itself moving,
//!   forgets everything;
//! - at most [`MAX_REMEMBERED`] lambdas are remembered (least recently used first out), with
//!   their watches;
//! - a lambda whose watches cannot be added (the watch limit, a file shared with another
//!   lambda) is simply not remembered: its calls look it up every time;
//! - only local file systems are watched ([`watchable`]): inotify does not see changes made
//!   by another machine on a network file system, so lookups there are never remembered.

use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use lru::LruCache;
use nix::errno::Errno;
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify, InotifyEvent, WatchDescriptor};
use nix::sys::statfs::FsType;

use crate::name::LambdaName;

/// The most lambdas remembered at once.
pub const MAX_REMEMBERED: usize = 1024;
/// The most lambdas known to have been looked up once (candidates for remembering).
const MAX_SEEN: usize = 4 * MAX_REMEMBERED;

/// What a change of a watched file or directory can look like.
fn changes() -> AddWatchFlags {
    AddWatchFlags::IN_MODIFY
        | AddWatchFlags::IN_ATTRIB
        | AddWatchFlags::IN_CREATE
        | AddWatchFlags::IN_DELETE
        | AddWatchFlags::IN_MOVED_FROM
        | AddWatchFlags::IN_MOVED_TO
        | AddWatchFlags::IN_DELETE_SELF
        | AddWatchFlags::IN_MOVE_SELF
        | AddWatchFlags::IN_DONT_FOLLOW
}

/// File systems whose every change inotify sees (local ones).
pub fn watchable(fs: FsType) -> bool {
    use nix::sys::statfs as fs_;
    const ZFS: FsType = FsType(0x2fc1_2fc1);
    const BCACHEFS: FsType = FsType(0xca45_1a4e);
    const RAMFS: FsType = FsType(0x8584_58f6);
    [
        fs_::EXT4_SUPER_MAGIC, // ext2, ext3 and ext4 share it
        fs_::XFS_SUPER_MAGIC,
        fs_::BTRFS_SUPER_MAGIC,
        fs_::TMPFS_MAGIC,
        fs_::OVERLAYFS_SUPER_MAGIC,
        fs_::F2FS_SUPER_MAGIC,
        ZFS,
        BCACHEFS,
        RAMFS,
    ]
    .contains(&fs)
}

/// One remembered lambda.
#[derive(Debug)]
struct Entry<T> {
    value: T,
    watches: Vec<WatchDescriptor>,
}

#[derive(Debug)]
struct State<T> {
    remembered: LruCache<LambdaName, Entry<T>>,
    /// Lambdas looked up once, not remembered yet.
    seen: LruCache<LambdaName, ()>,
    /// The lambda each watch of a remembered lambda belongs to.
    owners: HashMap<WatchDescriptor, LambdaName>,
    /// The registry directory's watch; `None` once it is gone (nothing is remembered then).
    registry: Option<WatchDescriptor>,
    /// Events seen so far (a lookup is remembered only if none came during it).
    events: u64,
}

/// Remembered lookups of one registry (see the module docs).
#[derive(Debug)]
pub struct Watch<T> {
    inotify: Inotify,
    state: Mutex<State<T>>,
}

impl<T: Clone> Watch<T> {
    /// A watch of the registry at `dir`; `None` when it cannot be watched (not a local file
    /// system, or inotify refused).
    pub fn new(dir: &Path) -> Option<Self> {
        let fs = nix::sys::statfs::statfs(dir).ok()?.filesystem_type();
        if !watchable(fs) {
            tracing::info!(registry = %dir.display(), fs_type = fs.0, "the registry is not on a local file system: every call looks its lambda up");
            return None;
        }
        let inotify = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC)
            .map_err(|e| tracing::warn!(error = %e, "inotify: lookups are not remembered"))
            .ok()?;
        let flags = changes() | AddWatchFlags::IN_ONLYDIR;
        let registry = inotify
            .add_watch(dir, flags)
            .map_err(|e| tracing::warn!(registry = %dir.display(), error = %e, "cannot watch the registry: lookups are not remembered"))
            .ok()?;
        let capacity = |n| NonZeroUsize::new(n).unwrap_or(NonZeroUsize::MIN);
        Some(Self {
            inotify,
            state: Mutex::new(State {
                remembered: LruCache::new(capacity(MAX_REMEMBERED)),
                seen: LruCache::new(capacity(MAX_SEEN)),
                owners: HashMap::new(),
                registry: Some(registry),
                events: 0,
            }),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State<T>> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The remembered value of `name`, if nothing changed since it was looked up. Never blocks:
    /// one non-blocking read of the event queue.
    pub fn cached(&self, name: &LambdaName) -> Option<T> {
        let mut state = self.lock();
        self.drain(&mut state);
        state.remembered.get(name).map(|e| e.value.clone())
    }

    /// Runs `lookup` (blocking) for the lambda whose directory is `dir` and whose files are
    /// `files`, remembering its value when it succeeds, nothing changed meanwhile, and the
    /// lambda was looked up before.
    pub fn remember<E>(
        &self,
        name: &LambdaName,
        dir: &Path,
        files: &[PathBuf],
        lookup: impl FnOnce() -> Result<T, E>,
    ) -> Result<T, E> {
        let before = {
            let mut state = self.lock();
            self.drain(&mut state);
            let again = state.seen.get(name).is_some() || state.remembered.contains(name);
            if !again {
                state.seen.put(name.clone(), ());
            }
            (again && state.registry.is_some()).then_some(state.events)
        };
        // Watches first, then the lookup: a change after this point is an event.
        let watches = before.and_then(|_| self.add_watches(dir, files));
        let value = lookup();
        let Some(watches) = watches else {
            return value;
        };
        let mut state = self.lock();
        self.drain(&mut state);
        let unchanged = before == Some(state.events);
        let shared = watches
            .iter()
            .any(|w| state.owners.get(w).is_some_and(|owner| owner != name));
        match &value {
            Ok(v) if unchanged && !shared => {
                // Remembered before (by a call that raced this one): its watches are the same
                // inodes' and so mostly the same; give back only the others.
                if let Some(old) = state.remembered.pop(name) {
                    let stale = old
                        .watches
                        .into_iter()
                        .filter(|w| !watches.contains(w))
                        .collect();
                    self.release(&mut state, stale);
                }
                state.seen.pop(name);
                for w in &watches {
                    state.owners.insert(*w, name.clone());
                }
                let entry = Entry {
                    value: v.clone(),
                    watches,
                };
                if let Some((old, evicted)) = state.remembered.push(name.clone(), entry) {
                    self.release(&mut state, evicted.watches);
                    state.seen.put(old, ());
                }
            }
            _ => self.release_unowned(&mut state, watches),
        }
        value
    }

    /// Watches `dir` and each of `files` that exists; `None` if one cannot be watched.
    fn add_watches(&self, dir: &Path, files: &[PathBuf]) -> Option<Vec<WatchDescriptor>> {
        let mut watches = Vec::with_capacity(files.len() + 1);
        let dir_watch = self
            .inotify
            .add_watch(dir, changes() | AddWatchFlags::IN_ONLYDIR);
        let mut failed = dir_watch.err();
        watches.extend(dir_watch.ok());
        for file in files {
            match self.inotify.add_watch(file, changes()) {
                Ok(w) => watches.push(w),
                // Not there: its creation is an event in the directory.
                Err(Errno::ENOENT) => {}
                Err(e) => failed = failed.or(Some(e)),
            }
        }
        match failed {
            None => Some(watches),
            Some(e) => {
                tracing::debug!(dir = %dir.display(), error = %e, "cannot watch a lambda: its lookups are not remembered");
                self.release_unowned(&mut self.lock(), watches);
                None
            }
        }
    }

    /// Reads every queued event and forgets what changed.
    fn drain(&self, state: &mut State<T>) {
        loop {
            match self.inotify.read_events() {
                Ok(events) if events.is_empty() => return,
                Ok(events) => {
                    for event in events {
                        self.apply(state, &event);
                    }
                }
                Err(Errno::EINTR) => {}
                // EAGAIN: the queue is empty. Any other error: forget everything, to be safe.
                Err(Errno::EAGAIN) => return,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the registry's events; forgetting every lookup");
                    self.forget_all(state);
                    state.events += 1;
                    return;
                }
            }
        }
    }

    fn apply(&self, state: &mut State<T>, event: &InotifyEvent) {
        // Every event counts, `IN_IGNORED` of a watch given back included: a lookup under way
        // may have been given the same watch, which no longer reports anything.
        state.events += 1;
        if event.mask.contains(AddWatchFlags::IN_Q_OVERFLOW) {
            tracing::warn!("the registry's event queue overflowed; forgetting every lookup");
            self.forget_all(state);
        } else if Some(event.wd) == state.registry {
            let gone = AddWatchFlags::IN_DELETE_SELF
                | AddWatchFlags::IN_MOVE_SELF
                | AddWatchFlags::IN_IGNORED;
            if event.mask.intersects(gone) {
                tracing::warn!(
                    "the registry directory moved or went away; lookups are no longer remembered"
                );
                state.registry = None;
                self.forget_all(state);
            } else if let Some(name) = event
                .name
                .as_ref()
                .and_then(|n| n.to_str())
                .and_then(|n| LambdaName::parse(n).ok())
            {
                self.forget(state, &name);
            }
        } else if let Some(name) = state.owners.get(&event.wd).cloned() {
            self.forget(state, &name);
        }
    }

    /// Forgets a remembered lambda; it stays a candidate, remembered again at its next lookup.
    fn forget(&self, state: &mut State<T>, name: &LambdaName) {
        if let Some(entry) = state.remembered.pop(name) {
            self.release(state, entry.watches);
            state.seen.put(name.clone(), ());
        }
    }

    fn forget_all(&self, state: &mut State<T>) {
        let names: Vec<LambdaName> = state.remembered.iter().map(|(n, _)| n.clone()).collect();
        for name in names {
            self.forget(state, &name);
        }
    }

    /// Removes the watches of a lookup that is not remembered, but those a remembered lambda
    /// uses (the same inode watched twice is one watch).
    fn release_unowned(&self, state: &mut State<T>, watches: Vec<WatchDescriptor>) {
        let unowned = watches
            .into_iter()
            .filter(|w| !state.owners.contains_key(w))
            .collect();
        self.release(state, unowned);
    }

    /// Removes watches.
    fn release(&self, state: &mut State<T>, watches: Vec<WatchDescriptor>) {
        for w in watches {
            state.owners.remove(&w);
            // EINVAL: already gone with its file.
            let _ = self.inotify.rm_watch(w);
        }
    }

    /// (lambdas remembered, watches held for them).
    pub fn size(&self) -> (usize, usize) {
        let state = self.lock();
        (state.remembered.len(), state.owners.len())
    }
}
