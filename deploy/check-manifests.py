#!/usr/bin/env python3
"""Checks deploy/: the Kubernetes manifests and the compose file.

- every manifest in deploy/k8s validates against the Kubernetes JSON schemas
  (strict: unknown fields are errors) of the oldest and newest versions the
  `kubernetes-validate` package ships with offline (from PyPI; skipped with
  a notice if it is not installed, an error with --require-schema);
- structure: the StatefulSet, its headless Service, the client Service, the
  ConfigMap and the PodDisruptionBudget agree with each other (selectors
  and labels, service name, named ports, probes, the router id from the pod
  name, the config file per pod, non-root);
- every router configuration in the ConfigMap parses as TOML, dials only
  routers of lower ordinal through the headless Service, and passes
  `ferry check-config` (with --ferry BIN);
- the compose file: routers, connectors by service name, distinct host
  ports, the `five` profile (and `docker-compose config` when installed);
- with --image IMAGE: the StatefulSet's pods are imitated with plain
  containers of that image (pod names, the headless Service's DNS names as
  network aliases, the ConfigMap mounted read-only at /etc/ferry, a read-only
  root filesystem, the same environment and probe), and the routers must form
  a complete mesh; the containers and network (ferry-k8s-check-*) are removed.

Ends with 'N passed, N failed'; exit status 1 if anything failed.
Needs PyYAML (and kubernetes-validate for the schemas):
  pip install kubernetes-validate pyyaml      # or deploy/check-manifests.sh
"""

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
import tomllib

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
K8S = os.path.join(HERE, "k8s")
results = {"passed": 0, "failed": 0}


def check(ok, what, detail=""):
    if ok:
        results["passed"] += 1
        print("ok   - " + what)
    else:
        results["failed"] += 1
        print("FAIL - " + what + (": " + detail if detail else ""))
    return ok


def load_manifests():
    docs = []
    for name in sorted(os.listdir(K8S)):
        if name.endswith(".yaml") and name != "kustomization.yaml":
            with open(os.path.join(K8S, name)) as f:
                for d in yaml.safe_load_all(f):
                    if d is not None:
                        docs.append((name, d))
    return docs


def schema_checks(docs, require):
    try:
        import kubernetes_validate
    except ImportError:
        if require:
            check(False, "kubernetes-validate is installed", "pip install kubernetes-validate")
        else:
            print("note - kubernetes-validate not installed: schema validation skipped")
        return
    schema_dir = os.path.join(os.path.dirname(kubernetes_validate.__file__), "kubernetes-json-schema")
    versions = sorted(
        (tuple(int(x) for x in m.group(1).split(".")) for m in
         (re.match(r"v(\d+\.\d+\.\d+)-local-strict$", d) for d in os.listdir(schema_dir)) if m)
    )
    for v in sorted({versions[0], versions[-1]}):
        version = ".".join(map(str, v))
        for name, d in docs:
            what = "%s %s/%s valid for Kubernetes %s (strict)" % (name, d.get("kind"), d["metadata"]["name"], version)
            try:
                kubernetes_validate.validate(d, version, strict=True)
                check(True, what)
            except Exception as e:  # ValidationError and friends
                check(False, what, str(e).splitlines()[0])


def by_kind(docs, kind):
    return [d for _, d in docs if d.get("kind") == kind]


def matches(selector, labels):
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def structure_checks(docs, ferry_bin):
    kinds = {d.get("kind") for _, d in docs}
    for k in ("StatefulSet", "Service", "ConfigMap", "PodDisruptionBudget"):
        check(k in kinds, "a %s is defined" % k)
    with open(os.path.join(K8S, "kustomization.yaml")) as f:
        kust = yaml.safe_load(f)
    files = {n for n, _ in docs}
    check(set(kust.get("resources", [])) == files, "kustomization lists every manifest",
          "%s vs %s" % (sorted(kust.get("resources", [])), sorted(files)))
    if not kinds >= {"StatefulSet", "Service", "ConfigMap", "PodDisruptionBudget"}:
        return
    sts = by_kind(docs, "StatefulSet")[0]
    spec = sts["spec"]
    pod = spec["template"]
    labels = pod["metadata"]["labels"]
    check(matches(spec["selector"]["matchLabels"], labels), "StatefulSet selector matches its pod labels")
    services = {s["metadata"]["name"]: s for s in by_kind(docs, "Service")}
    headless = services.get(spec["serviceName"])
    check(headless is not None, "StatefulSet serviceName names a Service")
    if headless is None:
        return
    check(headless["spec"].get("clusterIP") == "None", "the mesh Service is headless")
    check(headless["spec"].get("publishNotReadyAddresses") is True,
          "the headless Service publishes routers before they are ready")
    clients = [s for n, s in services.items() if n != spec["serviceName"]]
    check(len(clients) == 1 and clients[0]["spec"].get("clusterIP") != "None", "one client Service")
    for s in services.values():
        check(matches(s["spec"]["selector"], labels), "Service %s selects the router pods" % s["metadata"]["name"])
    for p in by_kind(docs, "PodDisruptionBudget"):
        check(matches(p["spec"]["selector"]["matchLabels"], labels), "PodDisruptionBudget selects the router pods")
        check("maxUnavailable" in p["spec"] or "minAvailable" in p["spec"], "PodDisruptionBudget sets a bound")

    (c,) = pod["spec"]["containers"]
    env = {e["name"]: e for e in c.get("env", [])}
    port_names = {p["name"]: p["containerPort"] for p in c.get("ports", [])}
    rid = env.get("FERRY_ROUTER__ID", {})
    check(rid.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "metadata.name",
          "router id is the pod name (FERRY_ROUTER__ID from metadata.name)")
    check({"amqp", "inter-router"} <= set(port_names), "container ports amqp and inter-router are named")
    for s in services.values():
        for p in s["spec"]["ports"]:
            check(p["targetPort"] in port_names, "Service %s port %s targets a container port" % (
                s["metadata"]["name"], p["name"]))
    for probe in ("readinessProbe", "livenessProbe"):
        pr = c.get(probe)
        ok = pr is not None and (("tcpSocket" in pr and pr["tcpSocket"]["port"] in port_names)
                                 or ("exec" in pr and pr["exec"]["command"][0] == "/usr/bin/ferry-probe"))
        check(ok, "%s checks the router" % probe)
    sc = pod["spec"].get("securityContext", {})
    check(sc.get("runAsNonRoot") is True and sc.get("runAsUser", 0) != 0, "pods run as a non-root user")

    # The configuration file per pod.
    cfg_env = env.get("FERRY_CONFIG", {}).get("value", "")
    mounts = {m["name"]: m["mountPath"] for m in c.get("volumeMounts", [])}
    vols = {v["name"]: v for v in pod["spec"].get("volumes", [])}
    cms = {m["metadata"]["name"]: m for m in by_kind(docs, "ConfigMap")}
    mount = next((n for n, v in vols.items() if "configMap" in v), None)
    check(mount in mounts, "a ConfigMap volume is mounted")
    if mount not in mounts:
        return
    cm = cms.get(vols[mount]["configMap"]["name"])
    check(cm is not None, "the mounted ConfigMap is defined")
    check(cfg_env == mounts[mount].rstrip("/") + "/$(POD_NAME).toml" and "POD_NAME" in env
          and list(env).index("POD_NAME") < list(env).index("FERRY_CONFIG"),
          "FERRY_CONFIG names the pod's own entry of the ConfigMap", cfg_env)
    if cm is None:
        return
    name = sts["metadata"]["name"]
    entries = sorted(k for k in cm["data"] if re.fullmatch(re.escape(name) + r"-\d+\.toml", k))
    ordinals = sorted(int(k[len(name) + 1:-5]) for k in entries)
    check(ordinals == list(range(len(ordinals))) and len(ordinals) >= spec["replicas"],
          "ConfigMap has an entry for every pod (%d entries, %d replicas)" % (len(ordinals), spec["replicas"]))
    inter_port = port_names.get("inter-router")
    for i in ordinals:
        key = "%s-%d.toml" % (name, i)
        try:
            cfg = tomllib.loads(cm["data"][key])
        except tomllib.TOMLDecodeError as e:
            check(False, "%s parses as TOML" % key, str(e))
            continue
        dials = [x for x in cfg.get("connector", [])]
        want = ["%s-%d.%s" % (name, j, spec["serviceName"]) for j in range(i)]
        check([d["host"] for d in dials] == want and all(d["port"] == inter_port for d in dials),
              "%s dials %s" % (key, ", ".join(want) or "no one"), str([(d["host"], d["port"]) for d in dials]))
        listens = {(x.get("role", "normal"), x["port"]) for x in cfg.get("listener", [])}
        check(("normal", port_names["amqp"]) in listens and ("inter-router", inter_port) in listens,
              "%s listens where the container ports say" % key)
        check("id" not in cfg.get("router", {}), "%s leaves the id to FERRY_ROUTER__ID" % key)
        if ferry_bin:
            with tempfile.NamedTemporaryFile("w", suffix=".toml") as f:
                f.write(cm["data"][key])
                f.flush()
                envv = {k: v for k, v in os.environ.items() if not k.upper().startswith("FERRY_")}
                envv["FERRY_ROUTER__ID"] = "%s-%d" % (name, i)
                r = subprocess.run([ferry_bin, "check-config", "-c", f.name], env=envv,
                                   capture_output=True, text=True)
                check(r.returncode == 0, "ferry check-config accepts %s" % key, r.stderr.strip())


def compose_checks():
    path = os.path.join(HERE, "compose.yaml")
    with open(path) as f:
        c = yaml.safe_load(f)
    services = c["services"]
    routers = sorted(s for s in services if s.startswith("router-"))
    base = [s for s in routers if not services[s].get("profiles")]
    five = [s for s in routers if "five" in services[s].get("profiles", [])]
    check(len(base) >= 3, "compose: at least 3 routers by default (%s)" % ", ".join(base))
    check(len(base) + len(five) == 5, "compose: profile five makes 5 routers")
    ids, host_ports = set(), set()
    for s in routers:
        svc = services[s]
        env = svc.get("environment", {})
        rid = env.get("FERRY_ROUTER__ID")
        check(rid and rid not in ids, "compose: %s has its own router id" % s)
        ids.add(rid)
        idx = sorted(int(m.group(1)) for k in env for m in [re.fullmatch(r"FERRY_CONNECTOR__(\d+)__HOST", k)] if m)
        check(idx == list(range(len(idx))), "compose: %s connector indexes follow each other" % s)
        peers = [env["FERRY_CONNECTOR__%d__HOST" % i] for i in idx]
        order = routers.index(s)
        # Dials every router before it (each pair joined once), by service name.
        check(peers == routers[:order] and all(str(env.get("FERRY_CONNECTOR__%d__PORT" % i)) == "5673" for i in idx),
              "compose: %s dials %s by service name" % (s, ", ".join(routers[:order]) or "no one"), str(peers))
        for p in svc.get("ports", []):
            m = re.fullmatch(r"(?:.*:)?(\$\{[^}]*\}|\d+):5672", str(p))
            check(m is not None, "compose: %s publishes its client port" % s, str(p))
            if m:
                check(m.group(1) not in host_ports, "compose: %s has its own host port" % s)
                host_ports.add(m.group(1))
        check(svc.get("networks") == ["mesh"], "compose: %s is on the private network" % s)
    try:
        r = subprocess.run(["docker-compose", "-f", path, "--profile", "five", "config", "-q"],
                           capture_output=True, text=True)
        check(r.returncode == 0, "compose: docker-compose config accepts the file", r.stderr.strip())
    except FileNotFoundError:
        print("note - docker-compose not installed: its own check skipped")


def docker(*args, check_rc=True):
    r = subprocess.run(["docker", *args], capture_output=True, text=True)
    if check_rc and r.returncode != 0:
        raise RuntimeError("docker %s: %s" % (" ".join(args[:3]), r.stderr.strip()))
    return r.stdout.strip()


def k8s_in_docker(docs, image, replicas):
    """The StatefulSet's pods, imitated with containers: do they form a mesh?"""
    sts = by_kind(docs, "StatefulSet")[0]
    name, svc = sts["metadata"]["name"], sts["spec"]["serviceName"]
    cm = by_kind(docs, "ConfigMap")[0]
    (c,) = sts["spec"]["template"]["spec"]["containers"]
    probe = c["readinessProbe"]["exec"]["command"]
    prefix = "ferry-k8s-check-%d" % os.getpid()
    net = prefix
    tmp = tempfile.mkdtemp(prefix="ferry-k8s-check-")
    for k, v in cm["data"].items():
        with open(os.path.join(tmp, k), "w") as f:
            f.write(v)
        os.chmod(os.path.join(tmp, k), 0o644)
    os.chmod(tmp, 0o755)
    names = ["%s-%d" % (name, i) for i in range(replicas)]
    try:
        docker("network", "create", net)
        for pod in names:
            docker("run", "-d", "--name", "%s-%s" % (prefix, pod), "--network", net,
                   "--network-alias", "%s.%s" % (pod, svc), "--hostname", pod,
                   "--read-only", "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
                   "-v", "%s:/etc/ferry:ro" % tmp,
                   "-e", "POD_NAME=" + pod, "-e", "FERRY_ROUTER__ID=" + pod,
                   "-e", "FERRY_CONFIG=/etc/ferry/%s.toml" % pod, image, *c.get("args", []))
        deadline = time.time() + 45
        want = replicas - 1
        while True:
            counts = {p: subprocess.run(["docker", "logs", "%s-%s" % (prefix, p)], capture_output=True,
                                        text=True).stderr for p in names}
            counts = {p: len(set(re.findall(r"neighbour connected neighbor=(\S+)", log)))
                      for p, log in counts.items()}
            if all(n >= want for n in counts.values()) or time.time() > deadline:
                break
            time.sleep(0.5)
        check(all(n == want for n in counts.values()),
              "k8s pods in docker (%s): every router has %d neighbours" % (image, want), str(counts))
        for p in names:
            r = subprocess.run(["docker", "exec", "%s-%s" % (prefix, p), *probe], capture_output=True, text=True)
            check(r.returncode == 0, "k8s pods in docker: readiness probe passes on %s" % p, r.stderr.strip())
            user = docker("inspect", "-f", "{{.Config.User}}", "%s-%s" % (prefix, p))
            check(user not in ("", "0", "root"), "k8s pods in docker: %s runs as user %s" % (p, user))
    finally:
        for pod in names:
            docker("rm", "-f", "%s-%s" % (prefix, pod), check_rc=False)
        docker("network", "rm", net, check_rc=False)
        for k in cm["data"]:
            os.unlink(os.path.join(tmp, k))
        os.rmdir(tmp)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--require-schema", action="store_true", help="fail if kubernetes-validate is missing")
    ap.add_argument("--ferry", help="a ferry binary to run check-config on every router configuration")
    ap.add_argument("--image", help="also run the StatefulSet's pods as containers of this image")
    ap.add_argument("--replicas", type=int, default=3, help="pods to imitate with --image")
    a = ap.parse_args()
    docs = load_manifests()
    for name, d in docs:
        check(all(k in d for k in ("apiVersion", "kind", "metadata")) and d["metadata"].get("name"),
              "%s: %s has apiVersion, kind, metadata.name" % (name, d.get("kind")))
    schema_checks(docs, a.require_schema)
    structure_checks(docs, a.ferry)
    compose_checks()
    if a.image:
        try:
            k8s_in_docker(docs, a.image, a.replicas)
        except Exception as e:
            check(False, "k8s pods in docker", str(e))
    print("check-manifests: %d passed, %d failed" % (results["passed"], results["failed"]))
    return 1 if results["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
