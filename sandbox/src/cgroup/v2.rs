//! The cgroup v2 manager: one directory in the unified hierarchy. Creating it enables the needed
//! controllers in every ancestor's `cgroup.subtree_control`, from the root down; processes only
//! ever go into the leaf ("no internal processes" rule).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::detect::V2_REQUIRED;
use super::fs::{self, CgroupFs, KillPlan};
use super::{check_rel, CgroupError, CgroupManager, Limits, Result};

/// A cgroup in the unified hierarchy.
#[derive(Debug)]
pub(crate) struct V2Cgroup {
    root: PathBuf,
    rel: PathBuf,
    /// `root/rel`, the only directory of this cgroup.
    dir: PathBuf,
    fs: Arc<dyn CgroupFs>,
}

impl V2Cgroup {
    pub(crate) fn new(root: &Path, rel: &Path, fs: Arc<dyn CgroupFs>) -> Self {
        Self {
            root: root.to_path_buf(),
            rel: rel.to_path_buf(),
            dir: root.join(rel),
            fs,
        }
    }

    /// The controllers to enable below the root: memory, pids, and cpu when the root offers it.
    fn wanted_controllers(&self, limits: &Limits) -> Result<Vec<&'static str>> {
        let file = self.root.join("cgroup.controllers");
        let text = fs::read(&*self.fs, &file)?;
        let available: Vec<&str> = text.split_whitespace().collect();
        let mut wanted = Vec::from(V2_REQUIRED);
        wanted.push("cpu");
        for c in wanted.iter().copied() {
            let needed = c != "cpu" || limits.cpu_quota.is_some();
            if needed && !available.contains(&c) {
                return Err(CgroupError::Controller {
                    path: file,
                    controller: c.to_string(),
                });
            }
        }
        wanted.retain(|c| available.contains(c));
        Ok(wanted)
    }

    /// Writes `+c` for each wanted controller not yet in `dir/cgroup.subtree_control`, in one write.
    fn enable(&self, dir: &Path, wanted: &[&str]) -> Result<()> {
        let file = dir.join("cgroup.subtree_control");
        let text = fs::read(&*self.fs, &file)?;
        let enabled: Vec<&str> = text.split_whitespace().collect();
        let missing: Vec<String> = wanted
            .iter()
            .filter(|c| !enabled.contains(c))
            .map(|c| format!("+{c}"))
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        fs::write(&*self.fs, &file, &missing.join(" "))
    }

    fn create_inner(&self, limits: &Limits) -> Result<()> {
        let fs = &*self.fs;
        let wanted = self.wanted_controllers(limits)?;
        let mut dir = self.root.clone();
        for component in self.rel.components() {
            self.enable(&dir, &wanted)?;
            dir.push(component);
            fs::mkdir(fs, &dir)?;
        }
        if let Some(bytes) = limits.memory_bytes {
            fs::write(fs, &self.dir.join("memory.max"), &bytes.to_string())?;
            let swap = self.dir.join("memory.swap.max");
            if fs.exists(&swap) {
                fs::write(fs, &swap, "0")?;
            }
        }
        if let Some(max) = limits.pids_max {
            fs::write(fs, &self.dir.join("pids.max"), &max.to_string())?;
        }
        if let Some((quota, period)) = limits.cpu_quota {
            fs::write(fs, &self.dir.join("cpu.max"), &format!("{quota} {period}"))?;
        }
        if let Some(rules) = &limits.devices {
            fs.attach_devices(&self.dir, rules)?;
        }
        Ok(())
    }

    /// Writes `value` to `cgroup.freeze` and waits until `cgroup.events` says `frozen <value>`.
    fn set_frozen(&self, value: &'static str) -> Result<bool> {
        let fs = &*self.fs;
        fs::write(fs, &self.dir.join("cgroup.freeze"), value)?;
        let want = format!("frozen {value}");
        fs::wait_for(
            fs,
            &self.dir.join("cgroup.events"),
            |events| events.lines().any(|l| l.trim() == want),
            None,
            fs::FREEZE_TIMEOUT,
        )
    }

    fn timeout(&self, state: &'static str) -> CgroupError {
        CgroupError::Timeout {
            path: self.dir.join("cgroup.events"),
            state,
            waited: fs::FREEZE_TIMEOUT,
        }
    }
}

impl CgroupManager for V2Cgroup {
    fn path(&self) -> &Path {
        &self.rel
    }

    fn create(&self, limits: &Limits) -> Result<()> {
        check_rel(&self.rel)?;
        let result = fs::retry_if_parent_vanished(|| self.create_inner(limits));
        if result.is_err() {
            // Leave nothing half-made behind; the ancestors may be shared and stay.
            let _ = self.remove();
        }
        result
    }

    fn open_procs(&self) -> Result<Vec<File>> {
        check_rel(&self.rel)?;
        fs::open_procs(std::slice::from_ref(&self.dir))
    }

    fn add_task(&self, pid: i32) -> Result<()> {
        check_rel(&self.rel)?;
        fs::add_task(&*self.fs, std::slice::from_ref(&self.dir), pid)
    }

    fn pids(&self) -> Result<Vec<i32>> {
        check_rel(&self.rel)?;
        fs::pids_of(&*self.fs, std::slice::from_ref(&self.dir))
    }

    fn kill_all(&self) -> Result<()> {
        check_rel(&self.rel)?;
        let kill_file = Some(self.dir.join("cgroup.kill")).filter(|f| self.fs.exists(f));
        fs::kill_and_wait(
            &*self.fs,
            &KillPlan {
                dirs: std::slice::from_ref(&self.dir),
                kill_file,
                freeze: None,
                thaw: Vec::new(),
            },
        )
    }

    fn freeze(&self) -> Result<()> {
        check_rel(&self.rel)?;
        let frozen = self.set_frozen("1");
        if !matches!(frozen, Ok(true)) {
            // Do not leave the cgroup half frozen.
            let _ = self.fs.write(&self.dir.join("cgroup.freeze"), "0");
        }
        if frozen? {
            Ok(())
        } else {
            Err(self.timeout("frozen"))
        }
    }

    fn thaw(&self) -> Result<()> {
        check_rel(&self.rel)?;
        if self.set_frozen("0")? {
            Ok(())
        } else {
            Err(self.timeout("thawed"))
        }
    }

    fn memory_usage(&self) -> Result<u64> {
        check_rel(&self.rel)?;
        fs::read_u64(&*self.fs, &self.dir.join("memory.current"))
    }

    fn memory_peak(&self) -> Result<u64> {
        check_rel(&self.rel)?;
        fs::read_u64(&*self.fs, &self.dir.join("memory.peak"))
    }

    fn oom_kills(&self) -> Result<u64> {
        check_rel(&self.rel)?;
        fs::read_keyed(&*self.fs, &self.dir.join("memory.events"), "oom_kill")
    }

    fn remove(&self) -> Result<()> {
        check_rel(&self.rel)?;
        fs::remove_dirs(&*self.fs, std::slice::from_ref(&self.dir))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cgroup::fake::{FakeFs, Op};
    use crate::cgroup::CgroupSetup;

    const REL: &str = "lambdaworker/w-ab12/sb-7";
    const ALL: &str = "cpuset cpu io memory hugetlb pids rdma misc";

    fn fake_v2(
        controllers: &str,
        tweak: impl FnOnce(FakeFs) -> FakeFs,
    ) -> (tempfile::TempDir, Arc<FakeFs>, CgroupSetup) {
        let tmp = tempfile::tempdir().unwrap();
        let (fake, setup) = FakeFs::v2(tmp.path(), controllers);
        (tmp, Arc::new(tweak(fake)), setup)
    }

    fn manager(fake: &Arc<FakeFs>, setup: &CgroupSetup, rel: &str) -> Box<dyn CgroupManager> {
        setup.cgroup_with(Path::new(rel), fake.clone())
    }

    #[test]
    fn oom_kills_read_memory_events() {
        let (_tmp, fake, setup) = fake_v2(ALL, |f| f);
        let cg = manager(&fake, &setup, REL);
        cg.create(&Limits::default()).unwrap();
        let file = format!("cgroup/{REL}/memory.events");
        fake.set(&file, "low 0\nhigh 0\nmax 5\noom 1\noom_kill 1\n");
        assert_eq!(cg.oom_kills().unwrap(), 1);
    }

    #[test]
    fn device_rules_attach_a_device_program() {
        let (_tmp, fake, setup) = fake_v2(ALL, |f| f);
        let cg = manager(&fake, &setup, REL);
        let rules = vec![crate::devices::DeviceRule::char_rw(195, None)];
        cg.create(&Limits {
            devices: Some(rules),
            ..Limits::default()
        })
        .unwrap();
        let ops = fake.take_ops();
        assert_eq!(
            ops.last(),
            Some(&Op::Devices(
                format!("cgroup/{REL}"),
                vec!["c 195:* rw".to_owned()]
            )),
            "{ops:?}"
        );
    }

    #[test]
    fn memory_peak_reads_memory_peak() {
        let (_tmp, fake, setup) = fake_v2(ALL, |f| f);
        let cg = manager(&fake, &setup, REL);
        cg.create(&Limits::default()).unwrap();
        fake.set(&format!("cgroup/{REL}/memory.peak"), "12288\n");
        assert_eq!(cg.memory_peak().unwrap(), 12288);
        // A kernel before 5.19 has no memory.peak: an error, not a 0.
        std::fs::remove_file(fake.path(&format!("cgroup/{REL}/memory.peak"))).unwrap();
        assert!(cg.memory_peak().is_err());
    }

    fn limits() -> Limits {
        Limits {
            memory_bytes: Some(64 << 20),
            pids_max: Some(32),
            cpu_quota: Some((50_000, 100_000)),
            devices: None,
        }
    }

    fn w(path: &str, value: &str) -> Op {
        Op::Write(path.to_string(), value.to_string())
    }

    fn mkdir(path: &str) -> Op {
        Op::Mkdir(path.to_string())
    }

    #[test]
    fn create_enables_controllers_from_the_root_down_then_writes_limits() {
        let (_tmp, fake, setup) = fake_v2(ALL, |f| f);
        let cg = manager(&fake, &setup, REL);
        cg.create(&limits()).unwrap();
        assert_eq!(
            fake.take_ops(),
            [
                w("cgroup/cgroup.subtree_control", "+memory +pids +cpu"),
                mkdir("cgroup/lambdaworker"),
                w(
                    "cgroup/lambdaworker/cgroup.subtree_control",
                    "+memory +pids +cpu"
                ),
                mkdir("cgroup/lambdaworker/w-ab12"),
                w(
                    "cgroup/lambdaworker/w-ab12/cgroup.subtree_control",
                    "+memory +pids +cpu"
                ),
                mkdir("cgroup/lambdaworker/w-ab12/sb-7"),
                w("cgroup/lambdaworker/w-ab12/sb-7/memory.max", "67108864"),
                w("cgroup/lambdaworker/w-ab12/sb-7/memory.swap.max", "0"),
                w("cgroup/lambdaworker/w-ab12/sb-7/pids.max", "32"),
                w("cgroup/lambdaworker/w-ab12/sb-7/cpu.max", "50000 100000"),
            ]
        );
        // The leaf enables nothing (processes go there), and has the controllers' files.
        assert_eq!(
            fake.get(&format!("cgroup/{REL}/cgroup.subtree_control")),
            "\n"
        );
        assert_eq!(
            fake.get(&format!("cgroup/{REL}/cgroup.controllers")),
            "cpu memory pids\n"
        );
        assert_eq!(fake.get(&format!("cgroup/{REL}/cpu.max")), "50000 100000");
    }

    #[test]
    fn controllers_already_enabled_are_skipped() {
        let (_tmp, fake, setup) = fake_v2(ALL, |f| f);
        fake.set("cgroup/cgroup.subtree_control", "memory pids\n");
        manager(&fake, &setup, REL)
            .create(&Limits::default())
            .unwrap();
        let ops = fake.take_ops();
        assert_eq!(ops[0], w("cgroup/cgroup.subtree_control", "+cpu"));
        // A sibling only needs its own mkdir.
        manager(&fake, &setup, "lambdaworker/w-ab12/sb-8")
            .create(&Limits::default())
            .unwrap();
        assert_eq!(fake.take_ops(), [mkdir("cgroup/lambdaworker/w-ab12/sb-8")]);
    }

    #[test]
    fn cpu_is_optional_unless_a_quota_is_asked_for() {
        let (_tmp, fake, setup) = fake_v2("io memory pids", |f| f.without_swap());
        let cg = manager(&fake, &setup, REL);
        cg.create(&Limits {
            memory_bytes: Some(1 << 20),
            ..Limits::default()
        })
        .unwrap();
        let ops = fake.take_ops();
        assert_eq!(ops[0], w("cgroup/cgroup.subtree_control", "+memory +pids"));
        // No memory.swap.max, so no swap write.
        assert_eq!(
            ops.last().unwrap(),
            &w("cgroup/lambdaworker/w-ab12/sb-7/memory.max", "1048576")
        );
        let err = manager(&fake, &setup, "lambdaworker/w-ab12/sb-8")
            .create(&limits())
            .unwrap_err();
        assert!(
            matches!(&err, CgroupError::Controller { controller, .. } if controller == "cpu"),
            "{err}"
        );
    }

    #[test]
    fn a_root_without_pids_is_an_error_naming_its_controllers_file() {
        let (_tmp, fake, setup) = fake_v2("cpu memory", |f| f);
        let err = manager(&fake, &setup, REL)
            .create(&Limits::default())
            .unwrap_err();
        match &err {
            CgroupError::Controller { path, controller } => {
                assert_eq!(controller, "pids");
                assert_eq!(path, &fake.path("cgroup/cgroup.controllers"));
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(fake.take_ops().is_empty());
    }

    #[test]
    fn a_failing_root_subtree_control_write_names_file_and_value() {
        let (_tmp, fake, setup) = fake_v2(ALL, |f| f);
        fake.fail_writes("cgroup/cgroup.subtree_control", libc::EBUSY);
        let err = manager(&fake, &setup, REL)
            .create(&Limits::default())
            .unwrap_err();
        match &err {
            CgroupError::Write { path, value, .. } => {
                assert_eq!(path, &fake.path("cgroup/cgroup.subtree_control"));
                assert_eq!(value, "+memory +pids +cpu");
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(err.to_string().contains("cgroup.subtree_control"), "{err}");
    }

    #[test]
    fn a_parent_holding_processes_cannot_enable_controllers() {
        // The "no internal processes" rule: the fake refuses like the kernel, and the error says where.
        let (_tmp, fake, setup) = fake_v2(ALL, |f| f);
        manager(&fake, &setup, "lambdaworker/w-ab12")
            .create(&Limits::default())
            .unwrap();
        fake.set("cgroup/lambdaworker/w-ab12/cgroup.procs", "77\n");
        let err = manager(&fake, &setup, REL)
            .create(&Limits::default())
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("lambdaworker/w-ab12/cgroup.subtree_control"),
            "{err}"
        );
    }

    #[test]
    fn freeze_and_thaw_use_cgroup_freeze_and_wait_for_events() {
        let (_tmp, fake, setup) = fake_v2(ALL, |f| f);
        let cg = manager(&fake, &setup, REL);
        cg.create(&Limits::default()).unwrap();
        fake.take_ops();
        cg.freeze().unwrap();
        assert!(fake
            .get(&format!("cgroup/{REL}/cgroup.events"))
            .contains("frozen 1\n"));
        cg.thaw().unwrap();
        assert!(fake
            .get(&format!("cgroup/{REL}/cgroup.events"))
            .contains("frozen 0\n"));
        assert_eq!(
            fake.take_ops(),
            [
                w("cgroup/lambdaworker/w-ab12/sb-7/cgroup.freeze", "1"),
                w("cgroup/lambdaworker/w-ab12/sb-7/cgroup.freeze", "0"),
            ]
        );
    }

    #[test]
    fn a_freeze_that_never_completes_times_out_and_unfreezes() {
        let (_tmp, fake, setup) = fake_v2(ALL, |f| f);
        let cg = manager(&fake, &setup, REL);
        cg.create(&Limits::default()).unwrap();
        fake.stuck_freeze();
        let err = cg.freeze().unwrap_err();
        assert!(matches!(err, CgroupError::Timeout { .. }), "{err}");
        assert!(err.to_string().contains("cgroup.events"), "{err}");
        assert!(fake.elapsed() >= fs::FREEZE_TIMEOUT);
        assert_eq!(fake.get(&format!("cgroup/{REL}/cgroup.freeze")), "0\n");
    }

    #[test]
    fn pids_and_memory_usage_parse() {
        let (_tmp, fake, setup) = fake_v2(ALL, |f| f);
        let cg = manager(&fake, &setup, REL);
        cg.create(&Limits::default()).unwrap();
        fake.set(&format!("cgroup/{REL}/cgroup.procs"), "30\n4\n0\n");
        // 0 is a process outside our pid namespace: it cannot be signalled, so it is left out.
        assert_eq!(cg.pids().unwrap(), [4, 30]);
        fake.set(&format!("cgroup/{REL}/memory.current"), "123456\n");
        assert_eq!(cg.memory_usage().unwrap(), 123_456);
        cg.add_task(99).unwrap();
        assert_eq!(cg.pids().unwrap(), [4, 30, 99]);
        assert_eq!(cg.open_procs().unwrap().len(), 1);
    }

    #[test]
    fn kill_all_uses_cgroup_kill_when_the_kernel_has_it() {
        let (_tmp, fake, setup) = fake_v2(ALL, |f| f);
        let cg = manager(&fake, &setup, REL);
        cg.create(&Limits::default()).unwrap();
        fake.set(&format!("cgroup/{REL}/cgroup.procs"), "10\n11\n");
        fake.take_ops();
        cg.kill_all().unwrap();
        assert_eq!(
            fake.take_ops(),
            [w("cgroup/lambdaworker/w-ab12/sb-7/cgroup.kill", "1")]
        );
        assert!(cg.pids().unwrap().is_empty());
    }

    #[test]
    fn kill_all_kills_pid_by_pid_without_cgroup_kill() {
        let (_tmp, fake, setup) = fake_v2(ALL, |f| f.without_kill_file());
        let cg = manager(&fake, &setup, REL);
        cg.create(&Limits::default()).unwrap();
        fake.set(&format!("cgroup/{REL}/cgroup.procs"), "10\n11\n");
        fake.take_ops();
        cg.kill_all().unwrap();
        assert_eq!(fake.take_ops(), [Op::Kill(10), Op::Kill(11)]);

        fake.set(&format!("cgroup/{REL}/cgroup.procs"), "12\n");
        fake.unkillable(12);
        let err = cg.kill_all().unwrap_err();
        assert!(
            matches!(&err, CgroupError::Alive { pids, .. } if pids == &[12]),
            "{err}"
        );
        assert!(err.to_string().contains(REL), "{err}");
    }

    #[test]
    fn remove_is_idempotent_and_leaves_parents() {
        let (_tmp, fake, setup) = fake_v2(ALL, |f| f);
        let cg = manager(&fake, &setup, REL);
        cg.create(&limits()).unwrap();
        fake.busy_rmdirs(2);
        cg.remove().unwrap();
        assert!(!fake.path(&format!("cgroup/{REL}")).exists());
        assert!(fake.path("cgroup/lambdaworker/w-ab12").is_dir());
        cg.remove().unwrap();
    }
}
