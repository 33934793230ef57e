//! Device access rules of a cgroup: which device nodes a sandbox may open (GPU sandboxes get
//! the NVIDIA nodes, every other only the few a sandbox's `/dev` holds).
//!
//! Cgroup v1 takes them as lines written to `devices.deny` (`a`: nothing) then
//! `devices.allow` (`c 195:* rwm`). Cgroup v2 has no such files: a `BPF_PROG_TYPE_CGROUP_DEVICE`
//! program attached to the cgroup decides each open and `mknod`, so [`program`] compiles the
//! rules into one (the same shape container runtimes generate: load the device type, access,
//! major and minor, then one block of comparisons per rule, allow on the first match, else
//! deny), and [`attach_v2`] loads and attaches it. The program is checked in the unit tests
//! by a small interpreter of the instructions it uses.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

use nix::errno::Errno;

/// A device type, as cgroups name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceKind {
    Char,
    Block,
}

/// One allowed device (or range: `None` matches any major or minor), with its access (`r`,
/// `w`, `m` for mknod).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceRule {
    pub kind: DeviceKind,
    pub major: Option<u32>,
    pub minor: Option<u32>,
    pub read: bool,
    pub write: bool,
    pub mknod: bool,
}

impl DeviceRule {
    /// A character device, read and write (no mknod: a sandbox makes no nodes).
    pub const fn char_rw(major: u32, minor: Option<u32>) -> Self {
        Self {
            kind: DeviceKind::Char,
            major: Some(major),
            minor,
            read: true,
            write: true,
            mknod: false,
        }
    }

    /// The v1 `devices.allow` line: `c 195:* rw`.
    pub fn v1_line(&self) -> String {
        let num = |n: Option<u32>| n.map_or_else(|| "*".to_owned(), |n| n.to_string());
        let kind = match self.kind {
            DeviceKind::Char => 'c',
            DeviceKind::Block => 'b',
        };
        let mut access = String::new();
        for (on, c) in [(self.read, 'r'), (self.write, 'w'), (self.mknod, 'm')] {
            if on {
                access.push(c);
            }
        }
        format!("{kind} {}:{} {access}", num(self.major), num(self.minor))
    }

    fn access_bits(&self) -> u32 {
        let bit = |on: bool, b: u32| if on { b } else { 0 };
        bit(self.mknod, ACC_MKNOD) | bit(self.read, ACC_READ) | bit(self.write, ACC_WRITE)
    }
}

/// The devices every sandbox may use: `null`, `zero`, `full`, `random`, `urandom`, `tty`,
/// `ptmx` and the pseudo-terminals; and `mknod` of any node (as container runtimes allow: the
/// sandbox's setup makes its `/dev` nodes after it joined its cgroup, and a node made is
/// still opened only under a read or write rule; handler code cannot call `mknod` at all).
pub fn default_rules() -> Vec<DeviceRule> {
    let mknod = |kind| DeviceRule {
        kind,
        major: None,
        minor: None,
        read: false,
        write: false,
        mknod: true,
    };
    vec![
        mknod(DeviceKind::Char),
        mknod(DeviceKind::Block),
        DeviceRule::char_rw(1, Some(3)),
        DeviceRule::char_rw(1, Some(5)),
        DeviceRule::char_rw(1, Some(7)),
        DeviceRule::char_rw(1, Some(8)),
        DeviceRule::char_rw(1, Some(9)),
        DeviceRule::char_rw(5, Some(0)),
        DeviceRule::char_rw(5, Some(2)),
        DeviceRule::char_rw(136, None),
    ]
}

// The kernel's bpf_cgroup_dev_ctx: access_type (device type in the low 16 bits, access in the
// high 16), major, minor; and its constants.
const DEV_BLOCK: u32 = 1;
const DEV_CHAR: u32 = 2;
const ACC_MKNOD: u32 = 1;
const ACC_READ: u32 = 2;
const ACC_WRITE: u32 = 4;

/// One eBPF instruction (`struct bpf_insn`).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Insn {
    pub code: u8,
    /// dst_reg in the low 4 bits, src_reg in the high 4.
    pub regs: u8,
    pub off: i16,
    pub imm: i32,
}

// Opcodes used: 32-bit loads from the context, 32-bit ALU with an immediate, jumps with an
// immediate or a register, mov, exit.
const LDX_W: u8 = 0x61; // BPF_LDX | BPF_MEM | BPF_W
const ALU_AND_K: u8 = 0x54; // BPF_ALU | BPF_AND | BPF_K
const ALU_RSH_K: u8 = 0x74; // BPF_ALU | BPF_RSH | BPF_K
const ALU_MOV_X: u8 = 0xbc; // BPF_ALU | BPF_MOV | BPF_X
const MOV64_K: u8 = 0xb7; // BPF_ALU64 | BPF_MOV | BPF_K
const JNE_K: u8 = 0x55; // BPF_JMP | BPF_JNE | BPF_K
const JNE_X: u8 = 0x5d; // BPF_JMP | BPF_JNE | BPF_X
const EXIT: u8 = 0x95;

const fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn {
        code,
        regs: (src << 4) | (dst & 0x0f),
        off,
        imm,
    }
}

/// The device program of `rules`: r2 = type, r3 = access, r4 = major, r5 = minor; per rule a
/// block that jumps to the next block on the first mismatch and returns 1 at its end; 0 when
/// no rule matched.
pub fn program(rules: &[DeviceRule]) -> Vec<Insn> {
    let mut p = vec![
        insn(LDX_W, 2, 1, 0, 0),
        insn(ALU_AND_K, 2, 0, 0, 0xffff),
        insn(LDX_W, 3, 1, 0, 0),
        insn(ALU_RSH_K, 3, 0, 0, 16),
        insn(LDX_W, 4, 1, 4, 0),
        insn(LDX_W, 5, 1, 8, 0),
    ];
    for rule in rules {
        let mut block = Vec::new();
        let kind = match rule.kind {
            DeviceKind::Char => DEV_CHAR,
            DeviceKind::Block => DEV_BLOCK,
        };
        block.push(insn(JNE_K, 2, 0, 0, kind as i32));
        // access must be a subset of the allowed bits: (r3 & allowed) == r3.
        block.push(insn(ALU_MOV_X, 1, 3, 0, 0));
        block.push(insn(ALU_AND_K, 1, 0, 0, rule.access_bits() as i32));
        block.push(insn(JNE_X, 1, 3, 0, 0));
        if let Some(major) = rule.major {
            block.push(insn(JNE_K, 4, 0, 0, major as i32));
        }
        if let Some(minor) = rule.minor {
            block.push(insn(JNE_K, 5, 0, 0, minor as i32));
        }
        block.push(insn(MOV64_K, 0, 0, 0, 1));
        block.push(insn(EXIT, 0, 0, 0, 0));
        // Each jump skips to the first instruction after this block.
        let len = block.len();
        for (i, ins) in block.iter_mut().enumerate() {
            if ins.code == JNE_K || ins.code == JNE_X {
                ins.off = (len - i - 1) as i16;
            }
        }
        p.extend(block);
    }
    p.push(insn(MOV64_K, 0, 0, 0, 0));
    p.push(insn(EXIT, 0, 0, 0, 0));
    p
}

/// Why a device program could not be attached.
#[derive(Debug, thiserror::Error)]
#[error("cannot {what} the device program of cgroup {}: {errno}{}", path.display(), if log.is_empty() { String::new() } else { format!(" (verifier: {log})") })]
pub struct AttachError {
    pub path: std::path::PathBuf,
    pub what: &'static str,
    pub errno: Errno,
    pub log: String,
}

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_ATTACH: libc::c_long = 8;
const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;
const BPF_F_ALLOW_MULTI: u32 = 2;

/// The head of `union bpf_attr` for `BPF_PROG_LOAD` (the kernel zero-fills what is not
/// passed).
#[repr(C)]
struct ProgLoad {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
}

/// `union bpf_attr` for `BPF_PROG_ATTACH`.
#[repr(C)]
struct ProgAttach {
    target_fd: u32,
    attach_bpf_fd: u32,
    attach_type: u32,
    attach_flags: u32,
}

/// Loads the program of `rules` and attaches it to the v2 cgroup directory `dir`
/// (`BPF_F_ALLOW_MULTI`: an ancestor's program, if any, still applies). The cgroup keeps the
/// program until it is removed. Blocking.
pub fn attach_v2(dir: &Path, rules: &[DeviceRule]) -> Result<(), AttachError> {
    let fail = |what, errno, log: String| AttachError {
        path: dir.to_owned(),
        what,
        errno,
        log,
    };
    let insns = program(rules);
    let license = c"GPL";
    let mut log = vec![0u8; 4096];
    let attr = ProgLoad {
        prog_type: BPF_PROG_TYPE_CGROUP_DEVICE,
        insn_cnt: insns.len() as u32,
        insns: insns.as_ptr() as u64,
        license: license.as_ptr() as u64,
        log_level: 1,
        log_size: log.len() as u32,
        log_buf: log.as_mut_ptr() as u64,
        kern_version: 0,
    };
    // SAFETY: `attr` points at live buffers (the instructions, the license, the log) for the
    // whole call and its size is passed; the kernel reads at most that many bytes of it.
    let prog = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_LOAD,
            &attr as *const ProgLoad,
            std::mem::size_of::<ProgLoad>(),
        )
    };
    if prog < 0 {
        let errno = Errno::last();
        let text = String::from_utf8_lossy(&log);
        return Err(fail(
            "load",
            errno,
            text.trim_end_matches('\0').trim().to_owned(),
        ));
    }
    // SAFETY: the kernel returned a new fd that nothing else owns.
    let prog = unsafe { OwnedFd::from_raw_fd(prog as i32) };
    let cgroup = std::fs::File::open(dir).map_err(|e| {
        fail(
            "open the cgroup for",
            e.raw_os_error().map_or(Errno::EIO, Errno::from_raw),
            String::new(),
        )
    })?;
    let attach = ProgAttach {
        target_fd: cgroup.as_raw_fd() as u32,
        attach_bpf_fd: prog.as_raw_fd() as u32,
        attach_type: BPF_CGROUP_DEVICE,
        attach_flags: BPF_F_ALLOW_MULTI,
    };
    // SAFETY: `attach` is a valid bpf_attr head of the size passed; both fds are open.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_ATTACH,
            &attach as *const ProgAttach,
            std::mem::size_of::<ProgAttach>(),
        )
    };
    if rc < 0 {
        return Err(fail("attach", Errno::last(), String::new()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `prog` on one device access, with the semantics of the instructions it uses.
    fn run(prog: &[Insn], kind: u32, access: u32, major: u32, minor: u32) -> u64 {
        let ctx = [kind | (access << 16), major, minor];
        let mut r = [0u64; 11];
        let mut pc = 0usize;
        loop {
            let i = prog[pc];
            let (dst, src) = ((i.regs & 0x0f) as usize, (i.regs >> 4) as usize);
            pc += 1;
            match i.code {
                LDX_W => {
                    assert_eq!(src, 1, "loads only from the context");
                    r[dst] = u64::from(ctx[(i.off / 4) as usize]);
                }
                ALU_AND_K => r[dst] = u64::from((r[dst] as u32) & (i.imm as u32)),
                ALU_RSH_K => r[dst] = u64::from((r[dst] as u32) >> i.imm),
                ALU_MOV_X => r[dst] = u64::from(r[src] as u32),
                MOV64_K => r[dst] = i.imm as u64,
                JNE_K if r[dst] != i.imm as u32 as u64 => pc += i.off as usize,
                JNE_X if r[dst] != r[src] => pc += i.off as usize,
                JNE_K | JNE_X => {}
                EXIT => return r[0],
                other => panic!("unexpected opcode {other:#x}"),
            }
        }
    }

    #[test]
    fn the_program_allows_exactly_the_rules() {
        let mut rules = default_rules();
        rules.push(DeviceRule::char_rw(195, None));
        rules.push(DeviceRule::char_rw(508, Some(0)));
        let p = program(&rules);
        let rw = ACC_READ | ACC_WRITE;
        let allowed = |kind, access, major, minor| run(&p, kind, access, major, minor) == 1;
        assert!(allowed(DEV_CHAR, rw, 1, 3), "/dev/null");
        assert!(allowed(DEV_CHAR, ACC_READ, 1, 9), "/dev/urandom, read");
        assert!(allowed(DEV_CHAR, rw, 136, 4), "a pts");
        assert!(allowed(DEV_CHAR, rw, 195, 0), "nvidia0");
        assert!(allowed(DEV_CHAR, rw, 195, 255), "nvidiactl");
        assert!(allowed(DEV_CHAR, rw, 508, 0), "nvidia-uvm");
        assert!(
            !allowed(DEV_CHAR, rw, 508, 1),
            "nvidia-uvm-tools is not listed"
        );
        assert!(
            allowed(DEV_CHAR, ACC_MKNOD, 1, 3),
            "the setup makes /dev/null"
        );
        assert!(allowed(DEV_BLOCK, ACC_MKNOD, 8, 0), "a node may be made...");
        assert!(!allowed(DEV_BLOCK, ACC_READ, 8, 0), "...but not opened");
        assert!(!allowed(DEV_CHAR, rw | ACC_MKNOD, 1, 3), "not both at once");
        assert!(!allowed(DEV_BLOCK, rw, 8, 0), "no disk");
        assert!(!allowed(DEV_CHAR, rw, 1, 1), "no /dev/mem");
        assert!(!allowed(DEV_CHAR, rw, 10, 200), "no tun");
        // Without rules, nothing.
        assert_eq!(run(&program(&[]), DEV_CHAR, rw, 1, 3), 0);
    }

    #[test]
    fn v1_lines() {
        assert_eq!(DeviceRule::char_rw(195, None).v1_line(), "c 195:* rw");
        assert_eq!(DeviceRule::char_rw(1, Some(3)).v1_line(), "c 1:3 rw");
        let block_any = DeviceRule {
            kind: DeviceKind::Block,
            major: None,
            minor: None,
            read: true,
            write: false,
            mknod: true,
        };
        assert_eq!(block_any.v1_line(), "b *:* rm");
    }
}
