"""Checks contrib/k8s: every object against Kubernetes' own schemas (kubernetes-validate,
strict: unknown fields fail too), then the fields the deployment relies on and that no schema
can see (labels and selectors that must meet, ports that must agree with the worker's
settings and the balancer's configuration, the drain on stop).

Run by admin/tests/k8s_manifests.rs with the venv of tests/k8s/setup.sh:
    python tests/k8s/check.py contrib/k8s
Prints one line per check; exits 1 with the failures named. With --print-settings it prints
the workers' SETTINGS instead (the test hands them to `admin setconf`).
"""

import json
import re
import sys
from pathlib import Path

import kubernetes_validate
import yaml

FAILURES = []


def check(ok, what):
    print(("ok: " if ok else "FAILED: ") + what)
    if not ok:
        FAILURES.append(what)


def load(directory):
    objects = {}
    for name in ["namespace.yaml", "registry.yaml", "workers.yaml", "balancer.yaml"]:
        for doc in yaml.safe_load_all((directory / name).read_text()):
            if doc:
                objects[(doc["kind"], doc["metadata"]["name"])] = (name, doc)
    return objects


def schema_checks(objects, config_map, version):
    for (kind, name), (file, doc) in sorted(objects.items()):
        try:
            kubernetes_validate.validate(doc, version, strict=True)
            check(True, f"{file}: {kind} {name} matches the Kubernetes {version} schema")
        except kubernetes_validate.ValidationError as e:
            check(False, f"{file}: {kind} {name}: {e.message} at {list(e.path)}")
        except kubernetes_validate.utils.SchemaNotFoundError as e:
            check(False, f"{file}: {kind} {name}: no schema ({e})")
    kubernetes_validate.validate(config_map, version, strict=True)
    check(True, "the generated ConfigMap matches the schema")


def pod(doc):
    return doc["spec"]["template"]["spec"]


def container(doc):
    return pod(doc)["containers"][0]


def named_port(c, name):
    return next((p["containerPort"] for p in c.get("ports", []) if p["name"] == name), None)


def service_checks(objects, namespace):
    for (kind, name), (file, svc) in objects.items():
        if kind != "Service":
            continue
        check(svc["metadata"]["namespace"] == namespace, f"Service {name} is in {namespace}")
        workloads = [
            d
            for (k, _), (_, d) in objects.items()
            if k in ("Deployment", "DaemonSet")
            and all(
                d["spec"]["template"]["metadata"]["labels"].get(key) == value
                for key, value in svc["spec"]["selector"].items()
            )
        ]
        check(len(workloads) == 1, f"Service {name} selects exactly one workload's pods")
        for port in svc["spec"]["ports"]:
            target = port["targetPort"]
            check(
                all(named_port(container(w), target) for w in workloads),
                f"Service {name}: port {port['name']} targets the container port named {target}",
            )
    for (kind, name), (_, d) in objects.items():
        if kind in ("Deployment", "DaemonSet"):
            labels = d["spec"]["template"]["metadata"]["labels"]
            check(
                all(labels.get(k) == v for k, v in d["spec"]["selector"]["matchLabels"].items()),
                f"{kind} {name}: its selector matches its pods' labels",
            )


def worker_checks(objects, haproxy_cfg):
    _, ds = objects[("DaemonSet", "lambdaworker-worker")]
    spec, c = pod(ds), container(ds)
    script = c["args"][0]
    check(c["securityContext"].get("privileged") is True, "the worker runs privileged")
    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    state = next(v for v in spec["volumes"] if v["name"] == "state")
    check(
        state.get("hostPath", {}).get("path") == "/var/lib/lambdaworker"
        and mounts.get("state") == "/var/lib/lambdaworker",
        "the cluster's state is a hostPath at /var/lib/lambdaworker",
    )
    check('C=/var/lib/lambdaworker/cluster' in script, "the cluster directory is on that volume")
    env_values = {e["name"]: e.get("value") for e in c["env"]}
    s = json.loads(env_values["SETTINGS"])
    check('admin setconf --cluster "$C" "$SETTINGS"' in script, "the start script sets SETTINGS")
    http, agent = named_port(c, "http"), named_port(c, "agent")
    check(s.get("worker_port") == http == 5000, "worker_port is the container port http (5000)")
    check(s.get("agent_port") == agent == 6000, "agent_port is the container port agent (6000)")
    check(s.get("worker_host") == "0.0.0.0", "the worker listens on the pod's address")
    _, reg_svc = objects[("Service", "lambdaworker-registry")]
    reg_url = "http://{}.{}.svc.cluster.local:{}".format(
        reg_svc["metadata"]["name"], reg_svc["metadata"]["namespace"], reg_svc["spec"]["ports"][0]["port"]
    )
    check(s.get("registry") == reg_url, f"the workers pull from the registry Service ({reg_url})")
    check("{worker_id: $id," in script and '--arg id "$NODE_NAME"' in script, "worker_id is the node's name")
    env = {e["name"]: e.get("valueFrom", {}) for e in c["env"]}
    check(env["NODE_NAME"].get("fieldRef", {}).get("fieldPath") == "spec.nodeName", "NODE_NAME is the node's name")
    for probe in ("startupProbe", "readinessProbe"):
        get = c[probe]["httpGet"]
        check(get["path"] == "/status" and get["port"] == "http", f"{probe} is GET /status")
    check(c["readinessProbe"].get("failureThreshold") == 1, "one failed /status (draining) takes the pod out")
    pre = " ".join(c["lifecycle"]["preStop"]["exec"]["command"])
    check("kill -TERM 1" in pre, "preStop starts the drain (SIGTERM to the worker)")
    check("exec admin workers --cluster \"$C\" --foreground" in script, "the worker is the container's process 1")
    grace = spec["terminationGracePeriodSeconds"]
    check(
        grace * 1000 >= s.get("drain_delay_ms", 0) + 1000 * s.get("timeout_s", 60),
        f"the grace period ({grace} s) covers the drain and the longest call",
    )
    _, svc = objects[("Service", "lambdaworker-workers")]
    check(svc["spec"].get("clusterIP") == "None", "the workers' Service is headless (one DNS record per pod)")
    dns = "{}.{}.svc.cluster.local:{}".format(svc["metadata"]["name"], svc["metadata"]["namespace"], http)
    m = re.search(r"server-template \S+ \S+ (\S+) .*agent-port (\d+)", haproxy_cfg)
    check(m is not None and m.group(1) == dns, f"HAProxy resolves the workers' Service ({dns})")
    check(m is not None and int(m.group(2)) == agent, "HAProxy's agent checks use the agent port")


def registry_checks(objects):
    _, dep = objects[("Deployment", "lambdaworker-registry")]
    c = container(dep)
    script = c["args"][0]
    check(dep["spec"]["strategy"]["type"] == "Recreate", "the registry is recreated, never two at once")
    claim = next(v for v in pod(dep)["volumes"] if v["name"] == "state")["persistentVolumeClaim"]["claimName"]
    check(("PersistentVolumeClaim", claim) in objects, f"the registry's volume is the claim {claim}")
    check("--port 9000" in script and named_port(c, "registry") == 9000, "the registry serves port 9000")
    check("--foreground" in script and "--host 0.0.0.0" in script, "the registry serves the pods, in the foreground")
    check(c["readinessProbe"]["httpGet"]["path"] == "/status", "the registry's readiness is /status")
    for doc in (dep, objects[("DaemonSet", "lambdaworker-worker")][1]):
        refs = {
            e["valueFrom"]["secretKeyRef"]["key"]
            for e in container(doc)["env"]
            if "secretKeyRef" in e.get("valueFrom", {})
        }
        check(refs == {"access-key", "secret-key"}, f"{doc['metadata']['name']} takes both keys from the Secret")


def balancer_checks(objects, kustomization, haproxy_cfg):
    _, dep = objects[("Deployment", "lambdaworker-balancer")]
    c = container(dep)
    vol = next(v for v in pod(dep)["volumes"] if v["name"] == "config")
    gen = [g for g in kustomization["configMapGenerator"] if g["name"] == vol["configMap"]["name"]]
    check(gen and gen[0]["files"] == ["haproxy.cfg"], "the balancer's config is the ConfigMap made from haproxy.cfg")
    mount = next(m for m in c["volumeMounts"] if m["name"] == "config")["mountPath"]
    check(f"{mount}/haproxy.cfg" in c["args"], "HAProxy reads that file")
    bind = re.search(r"bind \S+:(\d+)", haproxy_cfg)
    check(bind is not None and int(bind.group(1)) == named_port(c, "http"), "HAProxy binds the container port http")
    check("retry-on conn-failure" in haproxy_cfg, "HAProxy retries only failed connections")
    check(c["readinessProbe"]["httpGet"]["path"] == "/status", "the balancer's readiness is /status")


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    directory = Path(args[0] if args else "contrib/k8s")
    if "--print-settings" in sys.argv:
        # The worker's SETTINGS, for the test to give to `admin setconf`.
        _, ds = load(directory)[("DaemonSet", "lambdaworker-worker")]
        print(next(e["value"] for e in container(ds)["env"] if e["name"] == "SETTINGS"))
        return
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    haproxy_cfg = (directory / "haproxy.cfg").read_text()
    objects = load(directory)
    files = {f for f, _ in objects.values()}
    check(sorted(kustomization["resources"]) == sorted(files), "kustomization.yaml lists every manifest")
    namespace = kustomization["namespace"]
    check(("Namespace", namespace) in objects, f"the namespace {namespace} is made")
    config_map = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "lambdaworker-haproxy", "namespace": namespace},
        "data": {"haproxy.cfg": haproxy_cfg},
    }
    schema_checks(objects, config_map, kubernetes_validate.latest_version())
    service_checks(objects, namespace)
    worker_checks(objects, haproxy_cfg)
    registry_checks(objects)
    balancer_checks(objects, kustomization, haproxy_cfg)
    if FAILURES:
        print(f"{len(FAILURES)} check(s) failed", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
