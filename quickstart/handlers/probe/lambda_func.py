# Reports what the handler sees from inside its sandbox; the tests assert on this report.
import os
import socket


def writable(path):
    probe = os.path.join(path, ".probe-%d" % os.getpid())
    try:
        with open(probe, "w") as f:
            f.write("x")
        os.unlink(probe)
        return True
    except OSError:
        return False


def net_interfaces():
    with open("/proc/net/dev") as f:
        return sorted(line.split(":")[0].strip() for line in f.readlines()[2:])


def handler(event):
    with open("/proc/self/mountinfo") as f:
        mounts = [line.split()[4] for line in f]
    with open("/proc/self/cgroup") as f:
        cgroups = [line.strip() for line in f]
    if event.get("write_host"):
        with open("/host/" + event["write_host"], "w") as f:
            f.write("written from the sandbox\n")
    if event.get("print"):
        print(event["print"], flush=True)
    return {
        "pid": os.getpid(),
        "ppid": os.getppid(),
        "uid": os.getuid(),
        "gid": os.getgid(),
        "hostname": socket.gethostname(),
        "cwd": os.getcwd(),
        "mounts": mounts,
        "cgroups": cgroups,
        "pids_visible": sorted(int(p) for p in os.listdir("/proc") if p.isdigit()),
        "writable": {p: writable(p) for p in ("/", "/packages", "/handler", "/host", "/tmp", "/usr")},
        "dev": sorted(os.listdir("/dev")),
        "net_interfaces": net_interfaces(),
        "python": ".".join(map(str, __import__("sys").version_info[:3])),
        "lambda_name": os.environ.get("LAMBDA_NAME"),
        "event": event,
    }
