//! The cgroup v1 manager: one directory per used hierarchy (memory, pids, freezer required; cpu
//! and cpuacct when mounted). Co-mounted controllers (`cpu,cpuacct`) share one directory, which is
//! created, attached to and removed once.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::detect::V1_REQUIRED;
use super::fs::{self, CgroupFs, KillPlan};
use super::{check_rel, unique, CgroupError, CgroupManager, Limits, Result};

/// The v1 controllers this module uses, in the order their hierarchies are visited.
pub(crate) const CONTROLLERS: [&str; 6] =
    ["memory", "pids", "freezer", "cpu", "cpuacct", "devices"];

/// A cgroup in the v1 hierarchies.
#[derive(Debug)]
pub(crate) struct V1Cgroup {
    rel: PathBuf,
    /// Controller -> this cgroup's directory in that controller's hierarchy (mounted ones only).
    dirs: BTreeMap<&'static str, PathBuf>,
    /// (mount point, directory) of each used hierarchy, once per hierarchy.
    hierarchies: Vec<(PathBuf, PathBuf)>,
    fs: Arc<dyn CgroupFs>,
}

impl V1Cgroup {
    pub(crate) fn new(
        controllers: &BTreeMap<String, PathBuf>,
        rel: &Path,
        fs: Arc<dyn CgroupFs>,
    ) -> Self {
        let mut dirs = BTreeMap::new();
        for c in CONTROLLERS {
            if let Some(mount) = controllers.get(c) {
                dirs.insert(c, mount.join(rel));
            }
        }
        let mounts = unique(CONTROLLERS.iter().filter_map(|c| controllers.get(*c)));
        let hierarchies = mounts
            .into_iter()
            .map(|m| {
                let dir = m.join(rel);
                (m, dir)
            })
            .collect();
        Self {
            rel: rel.to_path_buf(),
            dirs,
            hierarchies,
            fs,
        }
    }

    /// Each used hierarchy's directory of this cgroup, once.
    fn unique_dirs(&self) -> Vec<PathBuf> {
        self.hierarchies.iter().map(|(_, d)| d.clone()).collect()
    }

    /// This cgroup's directory in `controller`'s hierarchy.
    fn dir(&self, controller: &str) -> Result<&Path> {
        self.dirs
            .get(controller)
            .map(PathBuf::as_path)
            .ok_or_else(|| CgroupError::Controller {
                path: self.rel.clone(),
                controller: controller.to_string(),
            })
    }

    fn check(&self) -> Result<()> {
        check_rel(&self.rel)?;
        for c in V1_REQUIRED {
            self.dir(c)?;
        }
        Ok(())
    }

    fn create_inner(&self, limits: &Limits) -> Result<()> {
        let fs = &*self.fs;
        for (mount, _) in &self.hierarchies {
            fs::mkdir_p(fs, mount, &self.rel)?;
        }
        if let Some(bytes) = limits.memory_bytes {
            self.set_memory(bytes)?;
        }
        if let Some(max) = limits.pids_max {
            fs::write(fs, &self.dir("pids")?.join("pids.max"), &max.to_string())?;
        }
        if let Some((quota, period)) = limits.cpu_quota {
            let dir = self.dir("cpu")?;
            fs::write(fs, &dir.join("cpu.cfs_period_us"), &period.to_string())?;
            fs::write(fs, &dir.join("cpu.cfs_quota_us"), &quota.to_string())?;
        }
        if let Some(rules) = &limits.devices {
            let dir = self.dir("devices")?;
            fs::write(fs, &dir.join("devices.deny"), "a")?;
            for rule in rules {
                fs::write(fs, &dir.join("devices.allow"), &rule.v1_line())?;
            }
        }
        Ok(())
    }

    /// Memory limit, and the memory+swap limit equal to it (no swap) when swap accounting is on.
    /// The kernel keeps limit <= memsw at every step, so raising a limit must write memsw first.
    fn set_memory(&self, bytes: u64) -> Result<()> {
        let fs = &*self.fs;
        let dir = self.dir("memory")?;
        let limit = dir.join("memory.limit_in_bytes");
        let memsw = dir.join("memory.memsw.limit_in_bytes");
        let value = bytes.to_string();
        if !fs.exists(&memsw) {
            return fs::write(fs, &limit, &value);
        }
        match fs.write(&limit, &value) {
            Ok(()) => fs::write(fs, &memsw, &value),
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                fs::write(fs, &memsw, &value)?;
                fs::write(fs, &limit, &value)
            }
            Err(source) => Err(CgroupError::Write {
                path: limit,
                value,
                source,
            }),
        }
    }

    fn freezer_state(&self) -> Result<PathBuf> {
        Ok(self.dir("freezer")?.join("freezer.state"))
    }
}

impl CgroupManager for V1Cgroup {
    fn path(&self) -> &Path {
        &self.rel
    }

    fn create(&self, limits: &Limits) -> Result<()> {
        self.check()?;
        if limits.cpu_quota.is_some() {
            self.dir("cpu")?;
        }
        if limits.devices.is_some() {
            self.dir("devices")?;
        }
        let result = fs::retry_if_parent_vanished(|| self.create_inner(limits));
        if result.is_err() {
            // Leave nothing half-made behind; the ancestors may be shared and stay.
            let _ = self.remove();
        }
        result
    }

    fn open_procs(&self) -> Result<Vec<File>> {
        self.check()?;
        fs::open_procs(&self.unique_dirs())
    }

    fn add_task(&self, pid: i32) -> Result<()> {
        self.check()?;
        fs::add_task(&*self.fs, &self.unique_dirs(), pid)
    }

    fn pids(&self) -> Result<Vec<i32>> {
        check_rel(&self.rel)?;
        fs::pids_of(&*self.fs, &self.unique_dirs())
    }

    fn kill_all(&self) -> Result<()> {
        check_rel(&self.rel)?;
        let dirs = self.unique_dirs();
        let freezer_state = self.freezer_state().ok().filter(|s| self.fs.exists(s));
        fs::kill_and_wait(
            &*self.fs,
            &KillPlan {
                dirs: &dirs,
                kill_file: None,
                freeze: freezer_state.clone(),
                thaw: freezer_state.into_iter().collect(),
            },
        )
    }

    fn freeze(&self) -> Result<()> {
        check_rel(&self.rel)?;
        let fs = &*self.fs;
        let state = self.freezer_state()?;
        fs::write(fs, &state, "FROZEN")?;
        let frozen = fs::wait_for(
            fs,
            &state,
            |s| s.trim() == "FROZEN",
            Some((&state, "FROZEN")),
            fs::FREEZE_TIMEOUT,
        );
        if !matches!(frozen, Ok(true)) {
            // Do not leave the cgroup stuck in FREEZING.
            let _ = fs.write(&state, "THAWED");
        }
        if frozen? {
            Ok(())
        } else {
            Err(CgroupError::Timeout {
                path: state,
                state: "FROZEN",
                waited: fs::FREEZE_TIMEOUT,
            })
        }
    }

    fn thaw(&self) -> Result<()> {
        check_rel(&self.rel)?;
        let fs = &*self.fs;
        let state = self.freezer_state()?;
        fs::write(fs, &state, "THAWED")?;
        if fs::wait_for(
            fs,
            &state,
            |s| s.trim() == "THAWED",
            Some((&state, "THAWED")),
            fs::FREEZE_TIMEOUT,
        )? {
            Ok(())
        } else {
            Err(CgroupError::Timeout {
                path: state,
                state: "THAWED",
                waited: fs::FREEZE_TIMEOUT,
            })
        }
    }

    fn memory_usage(&self) -> Result<u64> {
        check_rel(&self.rel)?;
        fs::read_u64(
            &*self.fs,
            &self.dir("memory")?.join("memory.usage_in_bytes"),
        )
    }

    fn memory_peak(&self) -> Result<u64> {
        check_rel(&self.rel)?;
        fs::read_u64(
            &*self.fs,
            &self.dir("memory")?.join("memory.max_usage_in_bytes"),
        )
    }

    fn oom_kills(&self) -> Result<u64> {
        check_rel(&self.rel)?;
        let file = self.dir("memory")?.join("memory.oom_control");
        fs::read_keyed(&*self.fs, &file, "oom_kill")
    }

    fn remove(&self) -> Result<()> {
        check_rel(&self.rel)?;
        fs::remove_dirs(&*self.fs, &self.unique_dirs())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cgroup::fake::{FakeFs, Op};
    use crate::cgroup::CgroupSetup;

    const REL: &str = "lambdaworker/w-ab12/sb-7";
    /// The hierarchies a sandbox cgroup lives in on the hybrid fake.
    const USED: [&str; 6] = ["memory", "pids", "freezer", "cpu", "cpuacct", "devices"];
    const UNTOUCHED: [&str; 4] = ["cpuset", "blkio", "systemd", "unified"];

    fn limits() -> Limits {
        Limits {
            memory_bytes: Some(64 << 20),
            pids_max: Some(32),
            cpu_quota: Some((50_000, 100_000)),
            devices: None,
        }
    }

    fn manager(fake: &Arc<FakeFs>, setup: &CgroupSetup, rel: &str) -> Box<dyn CgroupManager> {
        setup.cgroup_with(Path::new(rel), fake.clone())
    }

    fn hybrid() -> (tempfile::TempDir, Arc<FakeFs>, Box<dyn CgroupManager>) {
        let tmp = tempfile::tempdir().unwrap();
        let (fake, setup) = FakeFs::v1_hybrid(tmp.path());
        let fake = Arc::new(fake);
        let cg = manager(&fake, &setup, REL);
        (tmp, fake, cg)
    }

    fn writes(ops: &[Op]) -> Vec<(String, String)> {
        ops.iter()
            .filter_map(|op| match op {
                Op::Write(p, v) => Some((p.clone(), v.clone())),
                _ => None,
            })
            .collect()
    }

    fn w(path: &str, value: &str) -> (String, String) {
        (path.to_string(), value.to_string())
    }

    #[test]
    fn create_makes_every_used_hierarchy_and_writes_limits() {
        let (_tmp, fake, cg) = hybrid();
        assert_eq!(cg.path(), Path::new(REL));
        cg.create(&limits()).unwrap();
        for h in USED {
            assert!(fake.path(&format!("{h}/{REL}")).is_dir(), "{h}");
        }
        for h in UNTOUCHED {
            assert!(
                !fake.path(&format!("{h}/lambdaworker")).exists(),
                "{h} was touched"
            );
        }
        let ops = fake.take_ops();
        let mkdirs: Vec<&Op> = ops.iter().filter(|o| matches!(o, Op::Mkdir(_))).collect();
        assert_eq!(mkdirs.len(), 3 * USED.len(), "{mkdirs:?}");
        assert_eq!(
            writes(&ops),
            [
                w(
                    "memory/lambdaworker/w-ab12/sb-7/memory.limit_in_bytes",
                    "67108864"
                ),
                w(
                    "memory/lambdaworker/w-ab12/sb-7/memory.memsw.limit_in_bytes",
                    "67108864"
                ),
                w("pids/lambdaworker/w-ab12/sb-7/pids.max", "32"),
                w("cpu/lambdaworker/w-ab12/sb-7/cpu.cfs_period_us", "100000"),
                w("cpu/lambdaworker/w-ab12/sb-7/cpu.cfs_quota_us", "50000"),
            ]
        );
        assert_eq!(
            fake.get(&format!("memory/{REL}/memory.limit_in_bytes")),
            "67108864\n"
        );
        assert_eq!(fake.get(&format!("pids/{REL}/pids.max")), "32");
    }

    #[test]
    fn create_without_limits_writes_nothing_and_is_repeatable() {
        let (_tmp, fake, cg) = hybrid();
        cg.create(&Limits::default()).unwrap();
        cg.create(&Limits::default()).unwrap();
        assert!(writes(&fake.take_ops()).is_empty());
        assert_eq!(fake.get(&format!("pids/{REL}/pids.max")), "max\n");
    }

    #[test]
    fn raising_the_memory_limit_writes_memsw_first() {
        let (_tmp, fake, cg) = hybrid();
        cg.create(&limits()).unwrap();
        fake.take_ops();
        let bigger = Limits {
            memory_bytes: Some(128 << 20),
            ..Limits::default()
        };
        cg.create(&bigger).unwrap();
        assert_eq!(
            writes(&fake.take_ops()),
            [
                w(
                    "memory/lambdaworker/w-ab12/sb-7/memory.memsw.limit_in_bytes",
                    "134217728"
                ),
                w(
                    "memory/lambdaworker/w-ab12/sb-7/memory.limit_in_bytes",
                    "134217728"
                ),
            ]
        );
    }

    #[test]
    fn no_swap_accounting_writes_only_the_memory_limit() {
        let tmp = tempfile::tempdir().unwrap();
        let (fake, setup) = FakeFs::v1_hybrid(tmp.path());
        let fake = Arc::new(fake.without_memsw());
        let cg = manager(&fake, &setup, REL);
        cg.create(&Limits {
            memory_bytes: Some(1 << 20),
            ..Limits::default()
        })
        .unwrap();
        assert_eq!(
            writes(&fake.take_ops()),
            [w(
                "memory/lambdaworker/w-ab12/sb-7/memory.limit_in_bytes",
                "1048576"
            )]
        );
    }

    #[test]
    fn comounted_cpu_and_cpuacct_are_one_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let (fake, setup) = FakeFs::v1_comounted(tmp.path());
        let fake = Arc::new(fake);
        let cg = manager(&fake, &setup, "lw/sb-1");
        cg.create(&limits()).unwrap();
        let mkdirs: Vec<String> = fake
            .take_ops()
            .into_iter()
            .filter_map(|o| match o {
                Op::Mkdir(p) => Some(p),
                _ => None,
            })
            .collect();
        assert_eq!(
            mkdirs,
            [
                "memory/lw",
                "memory/lw/sb-1",
                "pids/lw",
                "pids/lw/sb-1",
                "freezer/lw",
                "freezer/lw/sb-1",
                "cpu,cpuacct/lw",
                "cpu,cpuacct/lw/sb-1",
            ]
        );
        assert_eq!(fake.get("cpu,cpuacct/lw/sb-1/cpu.cfs_quota_us"), "50000");
        assert!(!fake.path("net_cls,net_prio/lw").exists());
        assert_eq!(cg.open_procs().unwrap().len(), 4);
        cg.add_task(42).unwrap();
        assert_eq!(fake.get("cpu,cpuacct/lw/sb-1/cgroup.procs"), "42\n");
        fake.take_ops();
        cg.kill_all().unwrap();
        cg.remove().unwrap();
        let ops = fake.take_ops();
        assert_eq!(
            ops.iter().filter(|o| matches!(o, Op::Kill(42))).count(),
            1,
            "{ops:?}"
        );
        assert_eq!(ops.iter().filter(|o| matches!(o, Op::Rmdir(_))).count(), 4);
    }

    #[test]
    fn device_rules_deny_everything_then_allow_each() {
        let (_tmp, fake, cg) = hybrid();
        let rules = vec![
            crate::devices::DeviceRule::char_rw(1, Some(3)),
            crate::devices::DeviceRule::char_rw(195, None),
        ];
        cg.create(&Limits {
            devices: Some(rules),
            ..Limits::default()
        })
        .unwrap();
        let dir = format!("devices/{REL}");
        assert_eq!(
            writes(&fake.take_ops()),
            [
                w(&format!("{dir}/devices.deny"), "a"),
                w(&format!("{dir}/devices.allow"), "c 1:3 rw"),
                w(&format!("{dir}/devices.allow"), "c 195:* rw"),
            ]
        );
    }

    #[test]
    fn open_procs_and_add_task_cover_every_hierarchy() {
        let (_tmp, fake, cg) = hybrid();
        cg.create(&Limits::default()).unwrap();
        let files = cg.open_procs().unwrap();
        assert_eq!(files.len(), USED.len());
        for f in &files {
            let flags = nix::fcntl::fcntl(f, nix::fcntl::FcntlArg::F_GETFD).unwrap();
            assert_ne!(
                flags & libc::FD_CLOEXEC,
                0,
                "cgroup.procs must be close-on-exec"
            );
        }
        cg.add_task(4242).unwrap();
        for h in USED {
            assert_eq!(
                fake.get(&format!("{h}/{REL}/cgroup.procs")),
                "4242\n",
                "{h}"
            );
        }
    }

    #[test]
    fn pids_are_the_sorted_union_over_hierarchies() {
        let (_tmp, fake, cg) = hybrid();
        cg.create(&Limits::default()).unwrap();
        fake.set(&format!("memory/{REL}/cgroup.procs"), "12\n7\n");
        fake.set(&format!("pids/{REL}/cgroup.procs"), "7\n");
        fake.set(&format!("freezer/{REL}/cgroup.procs"), "3\n12\n");
        assert_eq!(cg.pids().unwrap(), [3, 7, 12]);

        fake.set(&format!("pids/{REL}/cgroup.procs"), "7\nbogus\n");
        let err = cg.pids().unwrap_err();
        assert!(
            err.to_string()
                .contains("pids/lambdaworker/w-ab12/sb-7/cgroup.procs"),
            "{err}"
        );
    }

    #[test]
    fn memory_usage_reads_usage_in_bytes() {
        let (_tmp, fake, cg) = hybrid();
        cg.create(&Limits::default()).unwrap();
        fake.set(&format!("memory/{REL}/memory.usage_in_bytes"), "4096\n");
        assert_eq!(cg.memory_usage().unwrap(), 4096);
        fake.set(&format!("memory/{REL}/memory.usage_in_bytes"), "lots\n");
        assert!(matches!(cg.memory_usage(), Err(CgroupError::Parse { .. })));
    }

    #[test]
    fn memory_peak_reads_max_usage_in_bytes() {
        let (_tmp, fake, cg) = hybrid();
        cg.create(&Limits::default()).unwrap();
        fake.set(&format!("memory/{REL}/memory.max_usage_in_bytes"), "8192\n");
        assert_eq!(cg.memory_peak().unwrap(), 8192);
        fake.set(&format!("memory/{REL}/memory.max_usage_in_bytes"), "?\n");
        assert!(matches!(cg.memory_peak(), Err(CgroupError::Parse { .. })));
    }

    #[test]
    fn oom_kills_read_the_oom_control_line() {
        let (_tmp, fake, cg) = hybrid();
        cg.create(&Limits::default()).unwrap();
        let file = format!("memory/{REL}/memory.oom_control");
        fake.set(&file, "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n");
        assert_eq!(cg.oom_kills().unwrap(), 2);
        fake.set(&file, "oom_kill_disable 0\nunder_oom 0\n");
        assert_eq!(
            cg.oom_kills().unwrap(),
            0,
            "kernels before 4.13 have no such line"
        );
        fake.set(&file, "oom_kill many\n");
        assert!(matches!(cg.oom_kills(), Err(CgroupError::Parse { .. })));
    }

    #[test]
    fn freeze_and_thaw_write_the_freezer_state() {
        let (_tmp, fake, cg) = hybrid();
        cg.create(&Limits::default()).unwrap();
        fake.take_ops();
        cg.freeze().unwrap();
        assert_eq!(
            fake.get(&format!("freezer/{REL}/freezer.state")),
            "FROZEN\n"
        );
        cg.thaw().unwrap();
        assert_eq!(
            fake.get(&format!("freezer/{REL}/freezer.state")),
            "THAWED\n"
        );
        assert_eq!(
            writes(&fake.take_ops()),
            [
                w("freezer/lambdaworker/w-ab12/sb-7/freezer.state", "FROZEN"),
                w("freezer/lambdaworker/w-ab12/sb-7/freezer.state", "THAWED"),
            ]
        );
    }

    #[test]
    fn a_freeze_that_never_completes_times_out_and_thaws() {
        let (_tmp, fake, cg) = hybrid();
        cg.create(&Limits::default()).unwrap();
        fake.stuck_freeze();
        let err = cg.freeze().unwrap_err();
        assert!(
            matches!(
                err,
                CgroupError::Timeout {
                    state: "FROZEN",
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("freezer.state"), "{err}");
        assert!(fake.elapsed() >= fs::FREEZE_TIMEOUT);
        assert_eq!(
            fake.get(&format!("freezer/{REL}/freezer.state")),
            "THAWED\n"
        );
    }

    #[test]
    fn kill_all_freezes_kills_thaws_until_empty() {
        let (_tmp, fake, cg) = hybrid();
        cg.create(&Limits::default()).unwrap();
        for h in USED {
            fake.set(&format!("{h}/{REL}/cgroup.procs"), "100\n101\n");
        }
        fake.take_ops();
        cg.kill_all().unwrap();
        assert!(cg.pids().unwrap().is_empty());
        let ops = fake.take_ops();
        let state = "freezer/lambdaworker/w-ab12/sb-7/freezer.state".to_string();
        assert_eq!(ops[0], Op::Write(state.clone(), "FROZEN".into()));
        assert_eq!(&ops[1..3], [Op::Kill(100), Op::Kill(101)]);
        assert_eq!(ops[3], Op::Write(state, "THAWED".into()));
        // Killing a cgroup with nothing in it, or one that does not exist, is fine; an empty
        // one is not even frozen.
        fake.take_ops();
        cg.kill_all().unwrap();
        let ops = fake.take_ops();
        assert!(
            !ops.iter()
                .any(|op| matches!(op, Op::Write(..) | Op::Kill(_))),
            "{ops:?}"
        );
        cg.remove().unwrap();
        cg.kill_all().unwrap();
    }

    #[test]
    fn kill_all_names_the_survivors_after_the_deadline() {
        let (_tmp, fake, cg) = hybrid();
        cg.create(&Limits::default()).unwrap();
        fake.set(&format!("pids/{REL}/cgroup.procs"), "100\n101\n");
        fake.unkillable(101);
        let err = cg.kill_all().unwrap_err();
        match &err {
            CgroupError::Alive { path, pids, .. } => {
                assert_eq!(pids, &[101]);
                assert_eq!(path, &fake.path(&format!("pids/{REL}")));
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(fake.elapsed() >= fs::KILL_TIMEOUT);
        // Never left frozen.
        assert_eq!(
            fake.get(&format!("freezer/{REL}/freezer.state")),
            "THAWED\n"
        );
    }

    #[test]
    fn remove_is_idempotent_and_retries_busy() {
        let (_tmp, fake, cg) = hybrid();
        cg.create(&Limits::default()).unwrap();
        fake.busy_rmdirs(3);
        cg.remove().unwrap();
        for h in USED {
            assert!(!fake.path(&format!("{h}/{REL}")).exists(), "{h}");
            assert!(
                fake.path(&format!("{h}/lambdaworker/w-ab12")).is_dir(),
                "parents stay"
            );
        }
        cg.remove().unwrap();
    }

    #[test]
    fn remove_of_a_populated_cgroup_fails_naming_it() {
        let (_tmp, fake, cg) = hybrid();
        cg.create(&Limits::default()).unwrap();
        fake.set(&format!("memory/{REL}/cgroup.procs"), "9\n");
        let err = cg.remove().unwrap_err();
        assert!(matches!(err, CgroupError::Remove { .. }), "{err}");
        assert!(err.to_string().contains(&format!("memory/{REL}")), "{err}");
    }

    #[test]
    fn a_failed_limit_write_names_file_and_value_and_cleans_up() {
        let (_tmp, fake, cg) = hybrid();
        fake.fail_writes(&format!("pids/{REL}/pids.max"), libc::EACCES);
        let err = cg.create(&limits()).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("pids.max") && msg.contains("\"32\""), "{msg}");
        assert!(!fake.path(&format!("memory/{REL}")).exists());
    }

    #[test]
    fn missing_controllers_and_bad_paths_are_errors() {
        let tmp = tempfile::tempdir().unwrap();
        let (fake, setup) = FakeFs::v1_hybrid(tmp.path());
        let fake = Arc::new(fake);
        let CgroupSetup::V1 { mut controllers } = setup else {
            unreachable!()
        };
        controllers.remove("freezer");
        controllers.remove("cpu");
        let setup = CgroupSetup::V1 { controllers };
        let err = manager(&fake, &setup, REL)
            .create(&Limits::default())
            .unwrap_err();
        assert!(
            matches!(&err, CgroupError::Controller { controller, .. } if controller == "freezer"),
            "{err}"
        );
        for bad in ["", "/abs", "../up", "a/../b", "./a"] {
            let err = manager(&fake, &setup, bad).remove().unwrap_err();
            assert!(
                matches!(err, CgroupError::InvalidPath { .. }),
                "{bad}: {err}"
            );
        }
        assert!(fake.take_ops().is_empty());
    }
}
