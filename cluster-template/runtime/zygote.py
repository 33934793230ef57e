"""lambdaworker's zygote: an interpreter that has imported the runtime and a set of packages, and
forks new sandboxes on request (see docs/import-cache.md, whose steps follow this file's order).

The worker starts the root zygote as an ordinary sandbox (own cgroup, pid/mount/ipc/uts/net
namespaces, the base as a read-only root, its package view at /packages), with a SOCK_SEQPACKET
control socket as fd 3, the seccomp filters for its children in two parts (LAMBDA_SECCOMP_SPARE,
installed by each spare while it prepares; LAMBDA_SECCOMP_HANDLER, added by a handler child
after its mounts) and the /proc paths to mask in them in LAMBDA_PROC_MASK.

The protocol (version PROTOCOL; the worker's side is worker/src/zygote/protocol.rs, and the
worker reads the PROTOCOL line below before it starts a zygote). Each message is one JSON
object with fds attached (SCM_RIGHTS); every fd is named by its index in that array, and each
exactly once.

  {"protocol": 5, "kind": "cgroup", "procs": [0, ...], "link": N}, on the control socket: the
    cgroup.procs files (one per hierarchy) of a cgroup the worker prepared, and the spare's end
    of a socket pair whose other end the worker keeps; the zygote forks a spare child into the
    cgroup at once, and the spare waits for its request on the link.
  {"protocol": 5, "kind": "fork", "role": "handler" | "zygote",
   "fds": {"reply": 0, "host": 1, "handler": 2, "packages": [{"rel": "numpy/2.2.6", "fd": 3}],
           "layers": [{"name": "common", "fd": 4}], "volumes": [{"mount": "msg", "fd": 5}],
           "listen": 6, "stdout": 7, "stderr": 8},
   "env": [["KEY", "value"], ...], "net_ns": true, "tmp_mb": 64, "harden": {"uid": N, "gid": N}}:
    a fork request, sent by the worker straight to one spare on its link (the zygote is not on
    the way), with its fds: "reply" (a socket to report on),
    "host", "handler" (a handler's only), one per package, one per layer and one per volume
    access point (a handler's only; detached mounts made by the worker with open_tree, a
    volume's id-mapped and writable or not as its access point says; each names its own fd), "listen" (the handler's listening socket, or the new zygote's control socket),
    "stdout", "stderr". "env" is the sandbox's whole environment (the function's own variables
    and what the runtime reads among them). "harden" is a handler's.

decode() checks a message against this before anything acts on it (fd indices in range and
used once, the roles a request's role needs, no package or layer twice) and refuses it with
BadMessage.

A spare is pid 1 of a new pid namespace, in its prepared cgroup, with its own mount, ipc, uts
and network namespaces, /proc and /tmp. Given a request, it mounts /host, /handler and
/packages from the detached mounts, takes its stdio, environment and working directory, gives
up its privileges ("harden"), and reports {"status": "ready"} on the reply socket (the kernel
attaches its pid, as the worker sees it, to that message). A "handler" child then loads its
entry and serves calls exactly as runtime.py does (runtime.load_entry, with the environment of
the request); a "zygote" child imports the packages it was given and serves forks of its own. A child that fails reports
{"status": "failed", "step": "attach /host", "reason": "..."} and exits. A spare the zygote
could not fork closes its link: the worker's request then fails to send, and it retires the
zygote.

The zygote never runs handler code: it imports only the runtime and the modules of its packages.
"""

import sys

import _socket
import ctypes
import errno
import fcntl
import gc
import os
import resource
import signal
import struct

import runtime
import runtime_extras  # what (event, context) entries need, imported once for every fork

try:
    import runtime_http  # what wsgi and asgi entries need (it imports no more modules until one loads)
except ModuleNotFoundError as exc:  # a base installed without it: only HTTP entries fail, at load
    if exc.name != "runtime_http":
        raise

# sys.path as a fresh runtime starts with it (the children start from this, not from ours).
BASE_PATH = list(sys.path)
CONTROL_FD = 3
# The version of the protocol this file speaks (the worker reads this line; keep it one line).
PROTOCOL = 5
# The most fds and bytes one message may carry, and the most bytes of a report (the worker's
# protocol.rs has the same limits).
MAX_FDS = 250
MAX_MESSAGE = 1 << 16
MAX_REPORT = 4096

MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 0x1, 0x2, 0x4, 0x8
MS_REMOUNT, MS_BIND, MS_MOVE, MS_REC = 0x20, 0x1000, 0x2000, 0x4000
MNT_DETACH = 0x2
AT_FDCWD = -100
MOVE_MOUNT_F_EMPTY_PATH = 0x4
SYS_MOVE_MOUNT = 429  # x86_64 and aarch64 share it (the new mount API's numbers are common)
PR_SET_SECCOMP, PR_CAPBSET_DROP, PR_SET_NO_NEW_PRIVS = 22, 24, 38
SECCOMP_MODE_FILTER = 2
SIOCGIFFLAGS, SIOCSIFFLAGS = 0x8913, 0x8914
IFF_UP, IFF_RUNNING = 0x1, 0x40

libc = ctypes.CDLL(None, use_errno=True)
libc.mount.argtypes = (ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p)
libc.umount2.argtypes = (ctypes.c_char_p, ctypes.c_int)
libc.prctl.argtypes = (ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong)


class SockFprog(ctypes.Structure):
    _fields_ = (("len", ctypes.c_ushort), ("filter", ctypes.c_void_p))


def load_filters(text):
    """The worker's seccomp filters (hex of raw struct sock_filter arrays, ':'-separated),
    decoded once in the zygote; its children inherit them ready to install."""
    filters = []
    for part in text.split(":"):
        if part:
            raw = bytes.fromhex(part)
            buf = ctypes.create_string_buffer(raw, len(raw))
            filters.append((buf, SockFprog(len(raw) // 8, ctypes.cast(buf, ctypes.c_void_p))))
    return filters


# The worker's seccomp policy in two parts (see sandbox/src/harden.rs): compiling a filter
# costs the kernel time in proportion to its length, so the long part goes in while a spare
# prepares, and only the short one while a call waits.
# The handler children's working directory: /host, or a custom base's image WorkingDir.
WORKDIR = os.environ.get("LAMBDA_WORKDIR") or "/host"
SECCOMP_SPARE = load_filters(os.environ.get("LAMBDA_SECCOMP_SPARE", ""))
SECCOMP_HANDLER = load_filters(os.environ.get("LAMBDA_SECCOMP_HANDLER", ""))
# True in a process that has the spare's part, and so in everything it forks later (a spare
# that becomes a zygote, and that zygote's spares).
spare_filters_on = False
# The /proc paths the worker masks in every sandbox ("name:file", "name:dir" or "name:ro",
# comma-separated): a spare mounts a new /proc and masks it alike.
PROC_MASK = [tuple(e.split(":", 1)) for e in os.environ.get("LAMBDA_PROC_MASK", "").split(",") if e]


class StepError(Exception):
    """A step of making a sandbox that failed: `step` says what was being done ("attach
    /host"), `reason` why it failed; the report carries both."""

    def __init__(self, step, reason):
        super().__init__("%s: %s" % (step, reason))
        self.step = step
        self.reason = reason


def check(rc, step):
    if rc != 0:
        raise StepError(step, os.strerror(ctypes.get_errno()))


def mount(source, target, fstype, flags, data, step):
    enc = lambda v: v.encode() if isinstance(v, str) else v
    check(libc.mount(enc(source), enc(target), enc(fstype), flags, enc(data)), step)


def detach(target):
    check(libc.umount2(target.encode(), MNT_DETACH), "detach the zygote's " + target)


def mount_view(where, entries):
    """A read-only tmpfs view at `where` over the base's empty directory, with each
    (relative path, detached mount fd) of `entries` attached at its place in it."""
    view = "mode=755,size=1m,nr_inodes=4096"
    mount("tmpfs", where, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, view, "mount the " + where + " view")
    for rel, fd in entries:
        target = where + "/" + rel
        try:
            os.makedirs(target, 0o755)
        except OSError as exc:
            raise StepError("make " + target, exc.strerror)
        attach(fd, target)
    ro = MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC
    mount(None, where, None, ro, None, "remount the " + where + " view read-only")


def attach(fd, target):
    rc = libc.syscall(
        ctypes.c_long(SYS_MOVE_MOUNT),
        ctypes.c_int(fd),
        ctypes.c_char_p(b""),
        ctypes.c_int(AT_FDCWD),
        ctypes.c_char_p(target.encode()),
        ctypes.c_uint(MOVE_MOUNT_F_EMPTY_PATH),
    )
    check(rc, "attach " + target)


def module_names(path):
    """Top-level modules and packages of one installed package directory."""
    names = []
    for entry in sorted(os.listdir(path)):
        if entry.startswith((".", "_")) or entry in ("bin", "__pycache__"):
            continue
        if entry.endswith((".dist-info", ".egg-info", ".libs", ".data", ".pth")):
            continue
        full = path + "/" + entry
        if os.path.isdir(full):
            if os.path.exists(full + "/__init__.py"):
                names.append(entry)
        elif entry.endswith(".py"):
            names.append(entry[:-3])
        elif entry.endswith(".so"):
            names.append(entry.split(".", 1)[0])
    return names


def import_packages(package_dirs):
    """Puts the packages on sys.path (as a handler will see them) and imports their modules."""
    sys.path[:] = BASE_PATH + runtime.package_paths(package_dirs) + list(runtime.SYSTEM_PATHS)
    imported, failed = [], []
    for path in package_dirs:
        for name in module_names(path):
            try:
                __import__(name)
                imported.append(name)
            except BaseException as exc:  # a module that refuses to load stays for the handler
                failed.append("%s (%s: %s)" % (name, type(exc).__name__, exc))
    # Everything imported so far stays as it is: the collector leaves these objects alone, so
    # children do not copy the pages it would otherwise write to.
    gc.collect()
    gc.freeze()
    print("zygote %d: imported %s" % (os.getpid(), ", ".join(imported) or "nothing"), file=sys.stderr)
    if failed:
        print("zygote %d: could not import %s" % (os.getpid(), "; ".join(failed)), file=sys.stderr)
    runtime.flush()


class BadMessage(Exception):
    """A message that does not follow the protocol (see the module docstring)."""


class Cgroup:
    """A cgroup the worker prepared for one more spare: the fds of its cgroup.procs files, and
    the spare's link (the socket its request comes on)."""

    __slots__ = ("procs", "link")

    def __init__(self, procs, link):
        self.procs = procs
        self.link = link


class Harden:
    """What a handler child gives up: the uid and gid it runs as."""

    __slots__ = ("uid", "gid")

    def __init__(self, uid, gid):
        self.uid = uid
        self.gid = gid


class Fork:
    """A fork request, its fd indices resolved to the fds that came with it.

    role: "handler" or "zygote"; reply, host, listen, stdout, stderr: fds; handler: an fd (a
    handler's) or None; packages: [(rel "name/version", fd), ...] sorted by rel; layers:
    [(name, fd), ...] in the function's order (a handler's); volumes: [(mount, fd), ...], each
    mount a path under /mnt (a handler's); env: [(key, value), ...]; net_ns,
    tmp_mb; harden: a Harden or None; fds: every fd of the message.
    """

    __slots__ = ("role", "reply", "host", "handler", "packages", "layers", "volumes", "listen",
                 "stdout", "stderr", "env", "net_ns", "tmp_mb", "harden", "fds")

    def rels(self):
        return [rel for rel, _ in self.packages]


class FdTable:
    """The fds that came with one message. The message names each by its index, exactly once."""

    __slots__ = ("fds", "used")

    def __init__(self, fds):
        self.fds = fds
        self.used = [None] * len(fds)

    def take(self, index, role):
        if type(index) is not int:
            raise BadMessage("%s: the fd index %r is not an integer" % (role, index))
        if not 0 <= index < len(self.fds):
            raise BadMessage("%s: fd index %d is out of range (%d fds came)" % (role, index, len(self.fds)))
        if self.used[index] is not None:
            raise BadMessage("fd index %d is named twice (%s and %s)" % (index, self.used[index], role))
        self.used[index] = role
        return self.fds[index]

    def check_all_named(self):
        for index, role in enumerate(self.used):
            if role is None:
                raise BadMessage("fd index %d came with the message but is not named in it" % index)


def field(obj, key, kind, where, default=BadMessage):
    """obj[key], checked to be a `kind` (bool is not an int here)."""
    if key not in obj or obj[key] is None:
        if default is BadMessage:
            raise BadMessage("%s: %r is missing" % (where, key))
        return default
    value = obj[key]
    if not isinstance(value, kind) or (kind is int and type(value) is bool):
        raise BadMessage("%s: %r is %r, not of type %s" % (where, key, value, kind.__name__))
    return value


def check_rel(rel):
    """A package's path under /packages: exactly `name/version`, nothing that leaves it."""
    parts = rel.split("/")
    if len(parts) != 2 or any(p in ("", ".", "..") or "\0" in p for p in parts):
        raise BadMessage("package path %r is not name/version" % rel)
    return rel


FORK_ROLES = ("reply", "host", "handler", "packages", "layers", "volumes", "listen", "stdout",
              "stderr")


def check_layer(name):
    """A layer's directory under /opt: one path component."""
    if name in ("", ".", "..") or "/" in name or "\0" in name:
        raise BadMessage("layer name %r is not one path component" % name)
    return name


def check_volume_mount(mount, others):
    """An access point's place under /mnt: normal names, not inside another's or around it."""
    parts = mount.split("/")
    if any(p in ("", ".", "..") or "\0" in p for p in parts):
        raise BadMessage("volume mount %r is not a path of normal names" % mount)
    for other in others:
        if (other + "/").startswith(mount + "/") or (mount + "/").startswith(other + "/"):
            raise BadMessage("volume mounts %r and %r nest" % (other, mount))
    return mount


def decode_fork(obj, table):
    req = Fork()
    req.role = field(obj, "role", str, "fork")
    if req.role not in ("handler", "zygote"):
        raise BadMessage("fork: unknown role %r" % req.role)
    fds = field(obj, "fds", dict, "fork")
    for key in fds:
        if key not in FORK_ROLES:
            raise BadMessage("fork: unknown fd role %r" % key)
    for role in ("reply", "host", "listen", "stdout", "stderr"):
        setattr(req, role, table.take(field(fds, role, int, "fork fds"), role))
    handler = field(fds, "handler", int, "fork fds", None)
    if (handler is None) != (req.role == "zygote"):
        raise BadMessage("fork: a %s request %s a handler fd" % (req.role, "without" if handler is None else "with"))
    req.handler = None if handler is None else table.take(handler, "handler")
    packages = {}
    for entry in field(fds, "packages", list, "fork fds"):
        if not isinstance(entry, dict):
            raise BadMessage("fork: package entry %r is not an object" % (entry,))
        rel = check_rel(field(entry, "rel", str, "package"))
        if rel in packages:
            raise BadMessage("package %s is named twice" % rel)
        packages[rel] = table.take(field(entry, "fd", int, "package " + rel), "package " + rel)
    req.packages = sorted(packages.items())
    req.layers = []
    for entry in field(fds, "layers", list, "fork fds"):
        if not isinstance(entry, dict):
            raise BadMessage("fork: layer entry %r is not an object" % (entry,))
        name = check_layer(field(entry, "name", str, "layer"))
        if any(name == n for n, _ in req.layers):
            raise BadMessage("layer %s is named twice" % name)
        req.layers.append((name, table.take(field(entry, "fd", int, "layer " + name), "layer " + name)))
    if req.layers and req.role == "zygote":
        raise BadMessage("fork: a zygote request with layers")
    req.volumes = []
    for entry in field(fds, "volumes", list, "fork fds"):
        if not isinstance(entry, dict):
            raise BadMessage("fork: volume entry %r is not an object" % (entry,))
        mount = check_volume_mount(field(entry, "mount", str, "volume"), [m for m, _ in req.volumes])
        req.volumes.append((mount, table.take(field(entry, "fd", int, "volume " + mount), "volume " + mount)))
    if req.volumes and req.role == "zygote":
        raise BadMessage("fork: a zygote request with volumes")
    req.env = []
    for item in field(obj, "env", list, "fork"):
        if not (isinstance(item, list) and len(item) == 2 and all(isinstance(v, str) for v in item)):
            raise BadMessage("fork: env entry %r is not [key, value]" % (item,))
        if not item[0] or "=" in item[0] or "\0" in item[0] + item[1]:
            raise BadMessage("fork: bad env key %r" % item[0])
        req.env.append((item[0], item[1]))
    req.net_ns = field(obj, "net_ns", bool, "fork")
    req.tmp_mb = field(obj, "tmp_mb", int, "fork")
    if req.tmp_mb < 1:
        raise BadMessage("fork: tmp_mb %d is not positive" % req.tmp_mb)
    harden = field(obj, "harden", dict, "fork", None)
    req.harden = None
    if harden is not None:
        req.harden = Harden(field(harden, "uid", int, "harden"), field(harden, "gid", int, "harden"))
    req.fds = table.fds
    return req


def decode(msg, fds):
    """The message `msg` that came with `fds`, as a Cgroup or a Fork. Raises BadMessage if it
    breaks the protocol; the fds are then still the caller's to close."""
    try:
        obj = runtime.loads(msg)
    except (ValueError, RecursionError) as exc:
        raise BadMessage("not JSON: %s" % exc)
    if not isinstance(obj, dict):
        raise BadMessage("not a JSON object")
    if obj.get("protocol") != PROTOCOL:
        raise BadMessage("protocol %r, but this zygote speaks %d" % (obj.get("protocol"), PROTOCOL))
    table = FdTable(fds)
    kind = obj.get("kind")
    if kind == "cgroup":
        procs = field(obj, "procs", list, "cgroup")
        if not procs:
            raise BadMessage("cgroup: no procs fd")
        procs = [table.take(index, "procs") for index in procs]
        out = Cgroup(procs, table.take(field(obj, "link", int, "cgroup"), "link"))
    elif kind == "fork":
        out = decode_fork(obj, table)
    else:
        raise BadMessage("unknown kind %r" % (kind,))
    table.check_all_named()
    return out


def receive(sock):
    """One message from `sock` as (bytes, [fd, ...]), or None when the other end closed it.
    A message cut short is refused (BadMessage) and its fds closed."""
    msg, ancdata, flags, _ = sock.recvmsg(MAX_MESSAGE, _socket.CMSG_SPACE(MAX_FDS * 4))
    fds = []
    for level, kind, data in ancdata:
        if level == _socket.SOL_SOCKET and kind == _socket.SCM_RIGHTS:
            fds.extend(struct.unpack("%di" % (len(data) // 4), data[: len(data) // 4 * 4]))
    if not msg and not fds:
        return None
    if flags & (_socket.MSG_TRUNC | _socket.MSG_CTRUNC):
        close_all(fds)
        raise BadMessage("a message larger than %d bytes or %d fds" % (MAX_MESSAGE, MAX_FDS))
    return msg, fds


def close_all(fds):
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass


def encode_report(status, step=None, reason=None):
    """A report as the worker reads it: {"status": "ready"}, or {"status": "failed", "step",
    "reason"} with the reason shortened until it fits in MAX_REPORT bytes."""
    if status == "ready":
        return runtime.dumps({"status": "ready"}).encode()
    step, reason = str(step)[:200], str(reason)
    while True:
        data = runtime.dumps({"status": "failed", "step": step, "reason": reason}).encode()
        if len(data) <= MAX_REPORT or not reason:
            return data
        reason = reason[: len(reason) // 2]


def report_failed(fd, step, reason):
    try:
        os.write(fd, encode_report("failed", step, reason))
    except OSError:
        pass


def bring_up_lo():
    sock = _socket.socket(_socket.AF_INET, _socket.SOCK_DGRAM)
    try:
        ifr = fcntl.ioctl(sock.fileno(), SIOCGIFFLAGS, struct.pack("16sH14x", b"lo", 0))
        flags = struct.unpack("16sH14x", ifr)[1] | IFF_UP | IFF_RUNNING
        fcntl.ioctl(sock.fileno(), SIOCSIFFLAGS, struct.pack("16sH14x", b"lo", flags))
    finally:
        sock.close()


def prepare(procs, tmp_mb, net_ns):
    """Steps 3-6 of docs/import-cache.md, in a spare child before any request: everything that
    does not depend on the lambda it will serve. Already pid 1 of a new pid namespace."""
    # 3. Join the cgroup the worker prepared for this spare, before anything is allocated, so
    # the sandbox pays for what follows (and the slow first write to a v1 cgroup.procs, which
    # waits for an RCU grace period, happens before any call waits for it).
    for fd in procs:
        try:
            os.write(fd, b"0")
        except OSError as exc:
            raise StepError("join the prepared cgroup", exc.strerror)
        os.close(fd)
    # 4. Signals: the zygote ignores SIGCHLD to reap its children; a sandbox must not.
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    # 5. Own mount, ipc, uts (and network) namespaces; own session; host name and lo.
    flags = os.CLONE_NEWNS | os.CLONE_NEWIPC | os.CLONE_NEWUTS
    if net_ns:
        flags |= os.CLONE_NEWNET
    try:
        os.unshare(flags)
    except OSError as exc:
        raise StepError("unshare namespaces", exc.strerror)
    os.setsid()
    _socket.sethostname("lambda")
    if net_ns:
        bring_up_lo()
    # 6. This mount namespace is a copy of the zygote's: a /proc for the new pid namespace, a
    # /tmp and a /dev/shm of its own, and nothing of the zygote's /host. In a user namespace
    # the kernel mounts a proc only while another one is visible in the namespace, so the new
    # one is mounted over /tmp first, then moved to /proc once the zygote's is gone.
    mount("proc", "/tmp", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, None, "mount /proc")
    detach("/proc")
    mount("/tmp", "/proc", None, MS_MOVE, None, "move the new /proc in place")
    mask_proc()
    detach("/tmp")
    mount("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777,size=%dm" % tmp_mb, "mount /tmp")
    detach("/dev/shm")
    shm = "mode=1777,size=%dm" % tmp_mb
    mount("tmpfs", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, shm, "mount /dev/shm")
    detach("/host")
    os.environ.clear()
    # Nothing gained by a later execve can exceed an empty bounding set; the capabilities this
    # spare still uses (for its mounts) stay until it changes uid in step 10.
    drop_bounding_set()
    # The seccomp allowlist plus the calls this spare still makes (attaching mounts) and a
    # zygote needs (unshare, setns, mount, sethostname): a handler child denies those in step 10.
    global spare_filters_on
    if not spare_filters_on:
        install_filters(SECCOMP_SPARE, "spare")
        spare_filters_on = True


def mask_proc():
    """Masks the new /proc exactly as the worker masks a fresh sandbox's (see ProcMask in
    sandbox/src/procmask.rs): files under /dev/null, directories under an empty read-only tmpfs,
    the kernel's tunables bound read-only."""
    for name, kind in PROC_MASK:
        path = "/proc/" + name
        if kind == "file":
            mount("/dev/null", path, None, MS_BIND, None, "mask " + path)
        elif kind == "dir":
            flags = MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC
            mount("tmpfs", path, "tmpfs", flags, "size=4k,nr_inodes=4,mode=555", "mask " + path)
        elif kind == "ro":
            mount(path, path, None, MS_BIND | MS_REC, None, "bind " + path)
            flags = MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC
            mount(None, path, None, flags, None, "remount %s read-only" % path)
        else:
            raise StepError("mask " + path, "unknown mask kind %r" % kind)


def install_filters(filters, part):
    if not filters:
        raise StepError("install the %s seccomp filter" % part, "the zygote was started without it")
    for _, prog in filters:
        rc = libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.addressof(prog), 0, 0)
        check(rc, "install the %s seccomp filter" % part)


def drop_bounding_set():
    for cap in range(64):
        if libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
            if ctypes.get_errno() == errno.EINVAL:
                break  # past the last capability of this kernel
            raise StepError("drop the capability bounding set", os.strerror(ctypes.get_errno()))


def become_sandbox(req, own_packages, tmp_mb, net_ns):
    """Steps 7-10 of docs/import-cache.md, once the request (a decoded Fork) has come."""
    if req.net_ns != net_ns:
        raise StepError("check the request", "its network mode differs from the zygote's")
    if req.tmp_mb != tmp_mb:
        size = "size=%dm" % req.tmp_mb
        mount(None, "/tmp", None, MS_REMOUNT | MS_NOSUID | MS_NODEV, size, "resize /tmp")
        flags = MS_REMOUNT | MS_NOSUID | MS_NODEV | MS_NOEXEC
        mount(None, "/dev/shm", None, flags, size, "resize /dev/shm")
    # 7. The sandbox's own directories, from the worker's detached mounts.
    attach(req.host, "/host")
    if req.handler is not None:
        attach(req.handler, "/handler")
    if req.rels() != own_packages:
        if own_packages:  # the root zygote has no view: /packages is the base's empty directory
            detach("/packages")
        mount_view("/packages", req.packages)  # each package with the fd the worker gave it
    if req.layers:  # a view of the function's layers over the base's empty /opt
        mount_view("/opt", req.layers)
    if req.volumes:  # the access points, each at its place in a view over the base's /mnt
        mount_view("/mnt", req.volumes)
    # 8. stdin from /dev/null, stdout and stderr from the worker's files, the listening socket
    # as fd 3, the reply socket as fd 4; every other fd (the zygote's control socket and its
    # namespace fd among them) is closed. Sources are first copied high, so no dup2 clobbers one.
    try:
        null = os.open("/dev/null", os.O_RDONLY)
        wanted = (null, req.stdout, req.stderr, req.listen, req.reply)
        high = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 1000) for fd in wanted]
        for target, fd in enumerate(high):
            os.dup2(fd, target)
    except OSError as exc:
        raise StepError("set up the file descriptors", exc.strerror)
    os.closerange(len(high), 1 << 20)
    req.reply = 4  # where a failure from here on is reported
    # 9. Environment and working directory, as the worker gives a fresh sandbox.
    for key, value in req.env:
        os.environ[key] = value
    try:
        os.chdir(WORKDIR)
    except OSError as exc:
        raise StepError("enter " + WORKDIR, exc.strerror)
    # 10. Give up privileges as a fresh sandbox does right before execve (docs/security.md).
    if req.harden is not None:
        give_up_privileges(req.harden)
    return ["/packages/" + rel for rel in req.rels()]


def give_up_privileges(h):
    """No supplementary groups, the unprivileged uid and gid (which clears every capability;
    the bounding set was emptied in step 6), no_new_privs, no core dumps, then the handler's
    part of the worker's seccomp filters (the spare's part is in place since step 6)."""
    uid, gid = h.uid, h.gid
    if uid == 0 or gid == 0:
        raise StepError("give up privileges", "refusing to run handler code as uid or gid 0")
    try:
        os.setgroups([])
        os.setresgid(gid, gid, gid)
        os.setresuid(uid, uid, uid)
    except OSError as exc:
        raise StepError("change to uid %d, gid %d" % (uid, gid), exc.strerror)
    check(libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "set no_new_privs")
    # No core dumps, and no raising the limit again (as sandbox/src/process.rs does).
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if not spare_filters_on:
        raise StepError("install the handler seccomp filter", "the spare's part is not in place")
    install_filters(SECCOMP_HANDLER, "handler")


def spare_main(link, procs, own_packages, tmp_mb, net_ns):
    """A spare child: prepares, waits for its one request on its link from the worker, becomes
    that sandbox, reports, then serves. Never returns."""
    try:
        prepare(procs, tmp_mb, net_ns)
        got = receive(link)
        if got is None:
            os._exit(0)
        try:
            req = decode(*got)
        except BadMessage:
            close_all(got[1])
            raise
        if not isinstance(req, Fork):
            close_all(got[1])
            raise BadMessage("a spare takes fork requests only")
    except BaseException as exc:
        print("zygote spare %d: %s" % (os.getpid(), exc), file=sys.stderr)
        runtime.flush()
        os._exit(1)
    try:
        package_dirs = become_sandbox(req, own_packages, tmp_mb, net_ns)
    except StepError as exc:
        report_failed(req.reply, exc.step, exc.reason)
        os._exit(1)
    except BaseException as exc:
        report_failed(req.reply, "become the sandbox", "%s: %s" % (type(exc).__name__, exc))
        os._exit(1)
    # 11. Report readiness; the worker reads this process's pid from the message's credentials.
    try:
        os.write(4, encode_report("ready"))
    finally:
        os.close(4)
    if req.role == "zygote":
        import_packages(package_dirs)
        serve(_socket.socket(fileno=CONTROL_FD), req.rels(), tmp_mb, net_ns)
    else:
        sys.path[:] = BASE_PATH
        entry = runtime.load_entry(package_dirs)
        runtime.serve(_socket.socket(fileno=runtime.LISTEN_FD), entry)


def fork_spare(control, own_pidns, cgroup, own_packages, tmp_mb, net_ns):
    """Step 1: a spare child, pid 1 of a new pid namespace, for the prepared cgroup (its procs
    fds), waiting on the link that came with it. The zygote keeps no copy of either."""
    link = _socket.socket(fileno=cgroup.link)
    try:
        os.unshare(os.CLONE_NEWPID)
        try:
            pid = os.fork()
        except BaseException:
            os.setns(own_pidns, os.CLONE_NEWPID)
            raise
        if pid == 0:
            try:
                control.close()
                os.close(own_pidns)
                spare_main(link, cgroup.procs, own_packages, tmp_mb, net_ns)
            finally:
                os._exit(1)
        # Back to the zygote's own pid namespace for its later children.
        os.setns(own_pidns, os.CLONE_NEWPID)
    finally:
        link.close()
        close_all(cgroup.procs)


def serve(control, own_packages, tmp_mb, net_ns):
    """Step 1: keep spare children ready, one per cgroup the worker hands over.

    Each Cgroup message (checked by decode() first) brings a prepared cgroup and the spare's
    link; the zygote forks the spare at once and keeps nothing of either. Requests go from the
    worker to the spares directly. A spare that cannot be forked is logged, and its link
    closed with it: the worker's request to it then fails, and the worker retires this
    zygote. A message that breaks the protocol is logged and its fds closed.
    """
    import warnings

    # Packages may have started threads (BLAS pools); forking is still what we mean to do.
    warnings.filterwarnings("ignore", category=DeprecationWarning, message=".*fork.*")
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # children are reaped by the kernel
    own_pidns = os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
    while True:
        runtime.flush()
        try:
            got = receive(control)
            if got is None:
                os._exit(0)
            try:
                req = decode(*got)
                if not isinstance(req, Cgroup):
                    raise BadMessage("a zygote takes cgroups only; fork requests go to a spare's link")
            except BadMessage:
                close_all(got[1])
                raise
        except InterruptedError:
            continue
        except BadMessage as exc:
            print("zygote: bad message: %s" % exc, file=sys.stderr)
            continue
        try:
            fork_spare(control, own_pidns, req, own_packages, tmp_mb, net_ns)
        except OSError as exc:
            print("zygote: cannot fork a spare: %s" % exc, file=sys.stderr)


def main():
    raw = os.environ.get("LAMBDA_PACKAGES", "")
    packages = sorted(p for p in raw.split(":") if p)
    tmp_mb = int(os.environ.get("LAMBDA_TMP_MB", "64"))
    net_ns = os.environ.get("LAMBDA_NET_NS", "1") == "1"
    import_packages(packages)
    serve(_socket.socket(fileno=CONTROL_FD), [p[len("/packages/"):] for p in packages], tmp_mb, net_ns)


if __name__ == "__main__":
    main()
