#!/usr/bin/env python3
"""Checks deploy/: the Kubernetes manifests and the compose file.

- every manifest in deploy/k8s validates against the Kubernetes JSON schemas
  (strict: unknown fields are errors) of the oldest and newest versions the
  `kubernetes-validate` package ships with offline (from PyPI; skipped with
  a notice if it is not installed, an error with --require-schema);
- structure: the StatefulSet, its headless Service, the client Service, the
  ConfigMap and the PodDisruptionBudget agree with each other (selectors
  and labels, service name, named ports, the probes (readiness: GET /readyz,
  liveness: GET /healthz, on the http port every router configuration
  serves), the Prometheus scrape annotations, the router id from the pod
  name, the config file per pod, non-root);
- the Secret of the routers' certificates (kustomization.yaml's
  secretGenerator, imitated here and validated like the manifests; also
  rendered by `kubectl kustomize` when kubectl is installed): mounted as a
  whole folder, group-readable only, it holds the mesh CA and every router's
  certificate and key, never the CA's key, from the files
  deploy/make-certs.sh --k8s writes;
- every router configuration in the ConfigMap parses as TOML, dials only
  routers of lower ordinal through the headless Service, runs the mesh over
  mutual TLS (inter-router listener with tls and client_cert = "required",
  every connector with tls, no allow_unauthenticated_routers) with its own
  certificate from the Secret, and passes `ferry check-config` (with
  --ferry BIN) on certificates made for the check by deploy/make-certs.sh;
- the compose file: routers, connectors by service name over TLS, each
  router's own certificate folder, distinct host ports, a health check on
  /readyz of the [http] endpoint deploy/ferry.toml configures, the `five` profile
  (and `docker-compose config` when installed); with --ferry, deploy/ferry.toml
  with each router's environment passes `ferry check-config`;
- the edge routers of compose's `edge` profile: deploy/ferry.toml has an edge
  listener over mutual TLS; deploy/edge.toml is an edge router's (mode edge,
  no inter-router or edge listener, the mesh's TLS profile, [http]); each
  edge mounts it and its own certificate folder, has its own id and host
  port, and dials two or more interior routers of the default set by service
  name on their edge listener, role edge, over TLS; its certificate names its
  id; with --ferry, deploy/edge.toml with each edge's environment passes
  `ferry check-config`;
- compose.broker.yaml: the broker (read-only, private network, its user from
  make-certs.sh's folder) and the same [[broker]] and brokered addresses for
  every interior router, a topic's broker dialed by one router only, none
  for the edges (with --ferry: check-config);
- with --image IMAGE: the StatefulSet's pods are imitated with plain
  containers of that image (pod names, the headless Service's DNS names as
  network aliases, the ConfigMap and the Secret (certificates made for the
  check) mounted read-only where the StatefulSet mounts them, a read-only
  root filesystem, the same environment), the routers must form a complete
  mesh over mutual TLS, and both probes must pass in every container (run
  with the image's ferry-probe); the containers and network
  (ferry-k8s-check-*) are removed.

Ends with 'N passed, N failed'; exit status 1 if anything failed.
Needs PyYAML (and kubernetes-validate for the schemas), and openssl for
deploy/make-certs.sh:
  pip install kubernetes-validate pyyaml      # or deploy/check-manifests.sh
"""

import argparse
import base64
import os
import posixpath
import re
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
K8S = os.path.join(HERE, "k8s")
MAKE_CERTS = os.path.join(HERE, "make-certs.sh")
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


def make_certs(tmp, replicas):
    """Certificates for the checks, made by deploy/make-certs.sh in tmp/k8s
    and tmp/compose (keys yours: only this process reads them on the host)."""
    me = "%d:%d" % (os.getuid(), os.getgid())
    out = {}
    for kind, args in (("k8s", ["--k8s", "--replicas", str(replicas)]), ("compose", ["--compose", "--owner", me])):
        d = os.path.join(tmp, kind)
        try:
            r = subprocess.run(["bash", MAKE_CERTS, *args, d], capture_output=True, text=True)
            ok, err = r.returncode == 0, r.stderr.strip()[-400:]
        except OSError as e:
            ok, err = False, str(e)
        if check(ok, "deploy/make-certs.sh %s makes certificates for the checks" % args[0], err):
            out[kind] = d
    return out


def cert_names(path):
    """The subject CN and DNS names of a PEM certificate (openssl)."""
    r = subprocess.run(["openssl", "x509", "-in", path, "-noout", "-subject", "-ext", "subjectAltName",
                        "-nameopt", "multiline"], capture_output=True, text=True)
    cn = re.findall(r"commonName\s*=\s*(\S+)", r.stdout)
    return set(cn[:1]) | set(re.findall(r"DNS:([^,\s]+)", r.stdout))


def generated_secrets(k8s_certs):
    """The Secrets of kustomization.yaml's secretGenerator, as documents
    (data from the files in k8s_certs, made by make-certs.sh --k8s, standing
    for deploy/k8s/certs), each with its {key: local file}."""
    with open(os.path.join(K8S, "kustomization.yaml")) as f:
        kust = yaml.safe_load(f)
    out = []
    for g in kust.get("secretGenerator", []):
        files = {}
        for spec in g.get("files", []):
            key, _, path = spec.rpartition("=")
            key = key or os.path.basename(path)
            local = os.path.join(K8S, path)
            if k8s_certs and path.startswith("certs/"):
                local = os.path.join(k8s_certs, path[len("certs/"):])
            files[key] = (path, local)
        data = {}
        for key, (_, local) in files.items():
            with open(local, "rb") as f:
                data[key] = base64.b64encode(f.read()).decode()
        doc = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": g["name"]},
               "type": g.get("type", "Opaque"), "data": data}
        out.append((doc, files))
    return out


def secret_checks(secrets, k8s_certs):
    with open(os.path.join(K8S, "kustomization.yaml")) as f:
        kust = yaml.safe_load(f)
    check(kust.get("generatorOptions", {}).get("disableNameSuffixHash") is True,
          "the Secret keeps its name (no hash suffix): new certificates reach running pods")
    for doc, files in secrets:
        name = doc["metadata"]["name"]
        check(not any(p.endswith("ca.key") for p, _ in files.values()), "Secret %s holds no CA key" % name)
        if k8s_certs:
            missing = [p for p, local in files.values() if not os.path.isfile(local)]
            check(not missing, "Secret %s: make-certs.sh --k8s writes every file it takes" % name, str(missing))
    if not shutil.which("kubectl"):
        print("note - kubectl not installed: `kubectl kustomize` not tried")
        return
    if not k8s_certs:
        return
    # kustomize itself, on a copy of deploy/k8s with the check's certificates.
    with tempfile.TemporaryDirectory(prefix="ferry-kustomize-") as tmp:
        shutil.copytree(K8S, os.path.join(tmp, "k8s"), ignore=shutil.ignore_patterns("certs"))
        shutil.copytree(k8s_certs, os.path.join(tmp, "k8s", "certs"))
        r = subprocess.run(["kubectl", "kustomize", os.path.join(tmp, "k8s")], capture_output=True, text=True,
                           timeout=60)
        if not check(r.returncode == 0, "kubectl kustomize renders deploy/k8s", r.stderr.strip()[-400:]):
            return
        rendered = [d for d in yaml.safe_load_all(r.stdout) if d]
        for doc, _ in secrets:
            got = next((d for d in rendered if d.get("kind") == "Secret"
                        and d["metadata"]["name"] == doc["metadata"]["name"]), None)
            decoded = lambda data: {k: base64.b64decode(v) for k, v in (data or {}).items()}
            check(got is not None and decoded(got.get("data")) == decoded(doc["data"]),
                  "kubectl kustomize makes Secret %s as imitated here" % doc["metadata"]["name"])


def tls_profile_checks(what, cfg):
    """The mesh over mutual TLS in one router configuration: returns the
    inter-router listener's profile (a dict) or None."""
    listeners = cfg.get("listener", [])
    inter = [x for x in listeners if x.get("role") == "inter-router"]
    profiles = {t["name"]: t for t in cfg.get("tls", [])}
    names = {x.get("tls") for x in inter}
    prof = profiles.get(next(iter(names))) if len(names) == 1 else None
    check(bool(inter) and prof is not None and all(x.get("client_cert") == "required" for x in inter),
          "%s: the inter-router listener is mutual TLS (tls, client_cert = \"required\")" % what)
    check(prof is not None and all(k in prof for k in ("cert", "key", "ca")),
          "%s: its TLS profile has cert, key and ca" % what)
    dials = cfg.get("connector", [])
    check(all(d.get("tls") is not None and d.get("tls") in names for d in dials),
          "%s: every connector dials over TLS with that profile" % what)
    check(not any(x.get("allow_unauthenticated_routers") for x in listeners + dials),
          "%s: no allow_unauthenticated_routers" % what)
    return prof


def check_config(ferry_bin, what, path, env_extra):
    envv = {k: v for k, v in os.environ.items() if not k.upper().startswith("FERRY_")}
    envv.update(env_extra)
    r = subprocess.run([ferry_bin, "check-config", "-c", path], env=envv, capture_output=True, text=True)
    check(r.returncode == 0, "ferry check-config accepts %s" % what, r.stderr.strip())


def tls_env(cfg, prof, files):
    """FERRY_TLS__i__… pointing profile prof of cfg at local files."""
    i = [t["name"] for t in cfg.get("tls", [])].index(prof["name"])
    return {"FERRY_TLS__%d__%s" % (i, k.upper()): files[k] for k in ("cert", "key", "ca")}


def structure_checks(docs, secrets, ferry_bin, k8s_certs):
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
    check("http" in port_names, "container port http (metrics, health, readiness) is named")
    for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
        get = (c.get(probe) or {}).get("httpGet", {})
        check(get.get("path") == path and get.get("port") == "http",
              "%s asks the router's %s on its http port" % (probe, path), str(c.get(probe)))
    notes = pod["metadata"].get("annotations", {})
    check(notes.get("prometheus.io/scrape") == "true"
          and notes.get("prometheus.io/port") == str(port_names.get("http"))
          and notes.get("prometheus.io/path") == "/metrics",
          "pods are annotated for a Prometheus scrape of /metrics on the http port", str(notes))
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
    # The Secret with the routers' certificates.
    tls_vol = next((n for n, v in vols.items() if "secret" in v), None)
    check(tls_vol in mounts, "a Secret volume (the routers' certificates) is mounted")
    if tls_vol not in mounts:
        return
    tls_dir = mounts[tls_vol].rstrip("/")
    secret_name = vols[tls_vol]["secret"]["secretName"]
    secret = next((f for d, f in secrets if d["metadata"]["name"] == secret_name), None)
    check(secret is not None, "the mounted Secret %s is made by kustomization.yaml's secretGenerator" % secret_name)
    if secret is None:
        return
    check(not any(m.get("subPath") for m in c["volumeMounts"] if m["name"] == tls_vol),
          "the Secret is mounted as a folder, not subPath files (updates reach the pod)")
    mode = vols[tls_vol]["secret"].get("defaultMode", 0o644)
    check(mode & 0o007 == 0 and mode & 0o040 and sc.get("fsGroup") == sc.get("runAsGroup"),
          "the Secret's files are readable by the router's group only (defaultMode %o, fsGroup %s)" % (
              mode, sc.get("fsGroup")))
    paths = sorted(m["mountPath"].rstrip("/") + "/" for m in c["volumeMounts"])
    check(not any(b.startswith(a) for a, b in zip(paths, paths[1:])),
          "volume mounts do not nest (a mount point inside a read-only volume cannot be made)", str(paths))
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
        http = cfg.get("http", {})
        check(http.get("host") == "0.0.0.0" and http.get("port") == port_names.get("http"),
              "%s serves HTTP (probes, metrics) where the container port http says" % key, str(http))
        pod_name = "%s-%d" % (name, i)
        prof = tls_profile_checks(key, cfg)
        if prof is None or not all(k in prof for k in ("cert", "key", "ca")):
            continue
        own = {k: posixpath.basename(prof[k]) for k in ("cert", "key", "ca")}
        check(all(posixpath.dirname(prof[k]) == tls_dir and own[k] in secret for k in own),
              "%s: cert, key and ca are files of the Secret (%s)" % (key, tls_dir), str(prof))
        check(all(own[k] in secret for k in own)
              and secret[own["cert"]][0] == "certs/%s/cert.pem" % pod_name
              and secret[own["key"]][0] == "certs/%s/key.pem" % pod_name,
              "%s: the certificate and key are %s's own" % (key, pod_name))
        if not k8s_certs or not all(own[k] in secret for k in own):
            continue
        local = {k: secret[own[k]][1] for k in own}
        names = cert_names(local["cert"])
        dialed_as = {d["host"] for j in ordinals if j > i
                     for d in tomllib.loads(cm["data"]["%s-%d.toml" % (name, j)]).get("connector", [])
                     if d["host"].split(".")[0] == pod_name}
        check(pod_name in names and dialed_as <= names,
              "%s's certificate names it and the hosts it is dialed by (%s)" % (
                  pod_name, ", ".join(sorted(dialed_as)) or "none"), str(sorted(names)))
        if ferry_bin:
            with tempfile.NamedTemporaryFile("w", suffix=".toml") as f:
                f.write(cm["data"][key])
                f.flush()
                env = {"FERRY_ROUTER__ID": pod_name, **tls_env(cfg, prof, local)}
                check_config(ferry_bin, key, f.name, env)


def compose_checks(ferry_bin, compose_certs):
    path = os.path.join(HERE, "compose.yaml")
    with open(path) as f:
        c = yaml.safe_load(f)
    # The image's configuration, which every router of the compose mesh reads.
    base_path = os.path.join(HERE, "ferry.toml")
    with open(base_path, "rb") as f:
        base_cfg = tomllib.load(f)
    prof = tls_profile_checks("deploy/ferry.toml", base_cfg)
    tls_dir = None
    if prof is not None and all(k in prof for k in ("cert", "key", "ca")):
        tls_dir = posixpath.dirname(prof["cert"])
        check(all(posixpath.dirname(prof[k]) == tls_dir for k in ("cert", "key", "ca")),
              "deploy/ferry.toml: cert, key and ca in one folder (%s), mounted per router" % tls_dir)
    http = base_cfg.get("http", {})
    check(http.get("host") == "0.0.0.0" and isinstance(http.get("port"), int),
          "deploy/ferry.toml serves HTTP (probes, metrics) on every interface of the container", str(http))
    readyz = ["CMD", "/usr/bin/ferry-probe", "http://127.0.0.1:%s/readyz" % http.get("port")]
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
        check(svc.get("healthcheck", {}).get("test") == readyz,
              "compose: %s's health check asks /readyz" % s, str(svc.get("healthcheck")))
        if prof is None:
            continue
        check(all(env.get("FERRY_CONNECTOR__%d__TLS" % i) == prof["name"] for i in idx)
              and not any("ALLOW_UNAUTHENTICATED" in k.upper() for k in env),
              "compose: %s dials over TLS (profile %s), never unauthenticated" % (s, prof["name"]))
        vols = [re.fullmatch(r"(.*):(/[^:]*?)(?::(ro|rw))?", str(v)) for v in svc.get("volumes", [])]
        vols = [(m.group(1), m.group(2), m.group(3)) for m in vols if m]
        check(("./ferry.toml", "/etc/ferry/ferry.toml", "ro") in vols, "compose: %s mounts deploy/ferry.toml" % s)
        mine = [v for v in vols if v[1] == tls_dir]
        check(len(mine) == 1 and mine[0][0].endswith("/" + str(rid)) and mine[0][2] == "ro",
              "compose: %s mounts its own certificate folder (…/%s) at %s, read-only" % (s, rid, tls_dir),
              str(mine))
        if compose_certs and rid:
            local = {k: os.path.join(compose_certs, str(rid), posixpath.basename(prof[k])) for k in ("cert", "key", "ca")}
            names = cert_names(local["cert"])
            check({str(rid), s} <= names, "compose: %s's certificate names %s and %s (the host it is dialed by)" % (
                s, rid, s), str(sorted(names)))
            if ferry_bin:
                env_all = {k: str(v) for k, v in env.items()}
                env_all.update(tls_env(base_cfg, prof, local))
                check_config(ferry_bin, "deploy/ferry.toml with the environment of compose's %s" % s, base_path,
                             env_all)
    edge_checks(services, base, prof, tls_dir, base_cfg, host_ports, ids, ferry_bin, compose_certs)
    broker_path = os.path.join(HERE, "compose.broker.yaml")
    broker_checks(broker_path, services, routers, prof, base_cfg, ferry_bin, compose_certs)
    try:
        r = subprocess.run(["docker-compose", "-f", path, "--profile", "five", "--profile", "edge", "config", "-q"],
                           capture_output=True, text=True)
        check(r.returncode == 0, "compose: docker-compose config accepts the file", r.stderr.strip())
        r = subprocess.run(["docker-compose", "-f", path, "-f", broker_path, "--profile", "five", "--profile", "edge",
                            "config", "-q"], capture_output=True, text=True)
        check(r.returncode == 0, "compose: docker-compose config accepts it with compose.broker.yaml", r.stderr.strip())
    except FileNotFoundError:
        print("note - docker-compose not installed: its own check skipped")


def broker_checks(path, services, routers, prof, base_cfg, ferry_bin, compose_certs):
    """compose.broker.yaml: the broker beside the mesh, and every interior
    router configured for it (the same [[broker]] and brokered addresses)."""
    with open(path) as f:
        c = yaml.safe_load(f)
    over = c.get("services", {})
    broker = over.get("broker", {})
    check(broker.get("read_only") is True and broker.get("networks") == ["mesh"] and not broker.get("ports"),
          "compose.broker.yaml: the broker is read-only, on the private network only")
    check(any(str(v).endswith("/broker:/etc/rabbitmq/conf.d:ro") for v in broker.get("volumes", [])),
          "compose.broker.yaml: the broker reads its user from FERRY_CERTS/broker (conf.d)")
    envs = {s: (over.get(s) or {}).get("environment") for s in routers}
    check(all(envs.values()) and len({tuple(sorted(e.items())) for e in envs.values()}) == 1,
          "compose.broker.yaml: every interior router (%s) gets the same broker and addresses" % ", ".join(routers))
    env = next(iter(envs.values())) or {}
    brokers = {str(v): m.group(1) for k, v in env.items() for m in [re.fullmatch(r"FERRY_BROKER__(\d+)__NAME", k)] if m}
    topics = [str(env.get("FERRY_ADDRESS__%s__BROKER" % m.group(1))) for k, v in env.items()
              for m in [re.fullmatch(r"FERRY_ADDRESS__(\d+)__DISTRIBUTION", k)] if m and v == "topic"]
    check(all(t in brokers and len(str(env.get("FERRY_BROKER__%s__ROUTERS" % brokers[t], "")).split(",")) == 1
              and env.get("FERRY_BROKER__%s__ROUTERS" % brokers[t]) for t in topics),
          "compose.broker.yaml: a topic's broker is dialed by one router (one subscription, no copies)", str(topics))
    check(not any(s not in routers and s != "broker" for s in over),
          "compose.broker.yaml: no edge router is given the broker (an edge's clients reach it through the uplink)")
    if not (ferry_bin and compose_certs and prof is not None):
        return
    for s in routers:
        env_all = {k: str(v) for k, v in services[s].get("environment", {}).items()}
        env_all.update({k: str(v) for k, v in (envs[s] or {}).items()})
        for k in list(env_all):
            if re.fullmatch(r"FERRY_BROKER__\d+__PASSWORD_FILE", k):
                env_all[k] = os.path.join(compose_certs, "broker", "password")
        rid = env_all.get("FERRY_ROUTER__ID")
        local = {k: os.path.join(compose_certs, str(rid), posixpath.basename(prof[k])) for k in ("cert", "key", "ca")}
        env_all.update(tls_env(base_cfg, prof, local))
        check_config(ferry_bin, "deploy/ferry.toml with the environment of compose's %s and compose.broker.yaml" % s,
                     os.path.join(HERE, "ferry.toml"), env_all)


def edge_checks(services, interiors, prof, tls_dir, base_cfg, host_ports, ids, ferry_bin, compose_certs):
    """Compose's edge routers (profile "edge") and their configuration,
    deploy/edge.toml; the edge listener of deploy/ferry.toml."""
    edge_listeners = [x for x in base_cfg.get("listener", []) if x.get("role") == "edge"]
    check(len(edge_listeners) == 1 and prof is not None
          and edge_listeners[0].get("tls") == prof["name"] and edge_listeners[0].get("client_cert") == "required"
          and not edge_listeners[0].get("allow_unauthenticated_routers"),
          "deploy/ferry.toml: an edge listener, mutual TLS with the mesh profile (client_cert = \"required\")",
          str(edge_listeners))
    edge_port = edge_listeners[0].get("port") if edge_listeners else None
    edge_path = os.path.join(HERE, "edge.toml")
    try:
        with open(edge_path, "rb") as f:
            cfg = tomllib.load(f)
    except (OSError, tomllib.TOMLDecodeError) as e:
        check(False, "deploy/edge.toml parses as TOML", str(e))
        return
    check(cfg.get("router", {}).get("mode") == "edge" and "id" not in cfg.get("router", {}),
          "deploy/edge.toml: mode = \"edge\", the id left to FERRY_ROUTER__ID", str(cfg.get("router")))
    listeners = cfg.get("listener", [])
    check(all(x.get("role", "normal") == "normal" for x in listeners)
          and any(x.get("port") == 5672 for x in listeners),
          "deploy/edge.toml: clients on 5672, no inter-router or edge listener", str(listeners))
    eprof = {t["name"]: t for t in cfg.get("tls", [])}.get(prof["name"]) if prof else None
    check(eprof is not None and all(posixpath.dirname(eprof.get(k, "")) == tls_dir for k in ("cert", "key", "ca")),
          "deploy/edge.toml: TLS profile %s with cert, key and ca in %s" % (prof and prof["name"], tls_dir),
          str(eprof))
    check(not cfg.get("connector") and not any(x.get("allow_unauthenticated_routers") for x in listeners),
          "deploy/edge.toml: uplinks from the environment, no allow_unauthenticated_routers")
    http = cfg.get("http", {})
    check(http.get("host") == "0.0.0.0" and isinstance(http.get("port"), int),
          "deploy/edge.toml serves HTTP (probes, metrics) on every interface of the container", str(http))
    readyz = ["CMD", "/usr/bin/ferry-probe", "http://127.0.0.1:%s/readyz" % http.get("port")]
    edges = sorted(s for s, svc in services.items() if "edge" in svc.get("profiles", []))
    check(len(edges) >= 2 and all(not s.startswith("router-") for s in edges),
          "compose: profile edge makes edge routers (%s)" % ", ".join(edges))
    firsts = set()
    for s in edges:
        svc = services[s]
        env = svc.get("environment", {})
        rid = env.get("FERRY_ROUTER__ID")
        check(rid and rid not in ids, "compose: edge %s has its own router id" % s)
        ids.add(rid)
        idx = sorted(int(m.group(1)) for k in env for m in [re.fullmatch(r"FERRY_CONNECTOR__(\d+)__HOST", k)] if m)
        check(idx == list(range(len(idx))), "compose: edge %s connector indexes follow each other" % s)
        hosts = [env["FERRY_CONNECTOR__%d__HOST" % i] for i in idx]
        check(len(hosts) >= 2 and len(set(hosts)) == len(hosts) and set(hosts) <= set(interiors)
              and all(str(env.get("FERRY_CONNECTOR__%d__PORT" % i)) == str(edge_port) for i in idx)
              and all(env.get("FERRY_CONNECTOR__%d__ROLE" % i) == "edge" for i in idx),
              "compose: edge %s dials two or more interior routers (%s) on their edge listener (%s), role edge" % (
                  s, ", ".join(hosts), edge_port), str(env))
        if hosts:
            firsts.add(hosts[0])
            dep = svc.get("depends_on") or {}
            check(isinstance(dep, dict) and (dep.get(hosts[0]) or {}).get("condition") == "service_healthy",
                  "compose: edge %s starts once its first interior router (%s) is healthy" % (s, hosts[0]),
                  str(dep))
        check(prof is not None and all(env.get("FERRY_CONNECTOR__%d__TLS" % i) == prof["name"] for i in idx)
              and not any("ALLOW_UNAUTHENTICATED" in k.upper() for k in env),
              "compose: edge %s dials over TLS (profile %s), never unauthenticated" % (s, prof and prof["name"]))
        for p in svc.get("ports", []):
            m = re.fullmatch(r"(?:.*:)?(\$\{[^}]*\}|\d+):5672", str(p))
            check(m is not None, "compose: edge %s publishes its client port" % s, str(p))
            if m:
                check(m.group(1) not in host_ports, "compose: edge %s has its own host port" % s)
                host_ports.add(m.group(1))
        check(svc.get("networks") == ["mesh"], "compose: edge %s is on the private network" % s)
        check(svc.get("healthcheck", {}).get("test") == readyz,
              "compose: edge %s's health check asks /readyz" % s, str(svc.get("healthcheck")))
        vols = [re.fullmatch(r"(.*):(/[^:]*?)(?::(ro|rw))?", str(v)) for v in svc.get("volumes", [])]
        vols = [(m.group(1), m.group(2), m.group(3)) for m in vols if m]
        check(("./edge.toml", "/etc/ferry/ferry.toml", "ro") in vols, "compose: edge %s mounts deploy/edge.toml" % s)
        mine = [v for v in vols if v[1] == tls_dir]
        check(len(mine) == 1 and mine[0][0].endswith("/" + str(rid)) and mine[0][2] == "ro",
              "compose: edge %s mounts its own certificate folder (…/%s) at %s, read-only" % (s, rid, tls_dir),
              str(mine))
        if compose_certs and rid and eprof is not None:
            local = {k: os.path.join(compose_certs, str(rid), posixpath.basename(eprof[k])) for k in ("cert", "key", "ca")}
            check(os.path.isfile(local["cert"]) and str(rid) in cert_names(local["cert"]),
                  "compose: edge %s's certificate (make-certs.sh --compose) names %s" % (s, rid))
            if ferry_bin and os.path.isfile(local["cert"]):
                env_all = {k: str(v) for k, v in env.items()}
                env_all.update(tls_env(cfg, eprof, local))
                check_config(ferry_bin, "deploy/edge.toml with the environment of compose's edge %s" % s, edge_path,
                             env_all)
    check(len(firsts) >= 2 or len(edges) < 2, "compose: the edges' first uplinks go to different interior routers",
          str(sorted(firsts)))


def docker(*args, check_rc=True):
    r = subprocess.run(["docker", *args], capture_output=True, text=True)
    if check_rc and r.returncode != 0:
        raise RuntimeError("docker %s: %s" % (" ".join(args[:3]), r.stderr.strip()))
    return r.stdout.strip()


def k8s_in_docker(docs, secrets, image, replicas):
    """The StatefulSet's pods, imitated with containers: do they form a mesh?"""
    sts = by_kind(docs, "StatefulSet")[0]
    name, svc = sts["metadata"]["name"], sts["spec"]["serviceName"]
    cm = by_kind(docs, "ConfigMap")[0]
    pod_spec = sts["spec"]["template"]["spec"]
    (c,) = pod_spec["containers"]
    sc = pod_spec.get("securityContext", {})
    port_numbers = {p["name"]: p["containerPort"] for p in c.get("ports", [])}

    def probe_command(probe):
        """The probe's HTTP GET, as the image's ferry-probe makes it."""
        get = c[probe]["httpGet"]
        return ["/usr/bin/ferry-probe", "http://127.0.0.1:%d%s" % (port_numbers[get["port"]], get["path"])]

    probes = {p: probe_command(p) for p in ("readinessProbe", "livenessProbe")}
    env = {e["name"]: e.get("value") for e in c.get("env", [])}
    vols = {v["name"]: v for v in pod_spec["volumes"]}
    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    prefix = "ferry-k8s-check-%d" % os.getpid()
    net = prefix
    tmp = tempfile.mkdtemp(prefix="ferry-k8s-check-")
    os.chmod(tmp, 0o755)
    volume_args = []
    for vname, v in vols.items():
        d = os.path.join(tmp, vname)
        os.mkdir(d, 0o755)
        if "configMap" in v:
            for k, text in cm["data"].items():
                with open(os.path.join(d, k), "w") as f:
                    f.write(text)
                os.chmod(os.path.join(d, k), 0o644)
        elif "secret" in v:
            # As the kubelet lays out a Secret with fsGroup: root's files,
            # group fsGroup, mode defaultMode. Only root can give them away;
            # otherwise they are made readable by all (a note says so).
            (files,) = [f for doc, f in secrets if doc["metadata"]["name"] == v["secret"]["secretName"]]
            mode = v["secret"].get("defaultMode", 0o644)
            for k, (_, local) in files.items():
                dst = os.path.join(d, k)
                shutil.copyfile(local, dst)
                if os.getuid() == 0:
                    os.chown(dst, 0, sc.get("fsGroup", 0))
                    os.chmod(dst, mode)
                else:
                    os.chmod(dst, 0o444)
            if os.getuid() != 0:
                print("note - not root: the Secret's files are readable by all in this imitation")
        else:
            raise RuntimeError("volume %s: neither a ConfigMap nor a Secret" % vname)
        volume_args += ["-v", "%s:%s:ro" % (d, mounts[vname])]
    user = ["--user", "%d:%d" % (sc["runAsUser"], sc["runAsGroup"])]
    if "fsGroup" in sc:
        user += ["--group-add", str(sc["fsGroup"])]
    names = ["%s-%d" % (name, i) for i in range(replicas)]
    try:
        docker("network", "create", net)
        for pod in names:
            docker("run", "-d", "--name", "%s-%s" % (prefix, pod), "--network", net,
                   "--network-alias", "%s.%s" % (pod, svc), "--hostname", pod,
                   "--read-only", "--cap-drop", "ALL", "--security-opt", "no-new-privileges", *user,
                   *volume_args,
                   "-e", "POD_NAME=" + pod, "-e", "FERRY_ROUTER__ID=" + pod,
                   "-e", "FERRY_CONFIG=" + env["FERRY_CONFIG"].replace("$(POD_NAME)", pod),
                   image, *c.get("args", []))
        deadline = time.time() + 45
        want = replicas - 1
        while True:
            logs = {p: subprocess.run(["docker", "logs", "%s-%s" % (prefix, p)], capture_output=True,
                                      text=True).stderr for p in names}
            counts = {p: len(set(re.findall(r"neighbour (\S+) connected", log)))
                      for p, log in logs.items()}
            if all(n >= want for n in counts.values()) or time.time() > deadline:
                break
            time.sleep(0.5)
        check(all(n == want for n in counts.values()),
              "k8s pods in docker (%s): every router has %d neighbours" % (image, want), str(counts))
        for p, log in logs.items():
            peers = set(re.findall(r"neighbour (\S+) connected \([^)]*, TLS\)", log))
            check(peers == set(names) - {p},
                  "k8s pods in docker: %s's inter-router connections (mutual TLS) are up with the other pods" % p,
                  str(sorted(peers)))
        for p in names:
            for kind, probe in probes.items():
                # Ready once routing has converged: a few HELLOs after the
                # neighbours connected.
                until = time.time() + 15
                while True:
                    r = subprocess.run(["docker", "exec", "%s-%s" % (prefix, p), *probe], capture_output=True,
                                       text=True)
                    if r.returncode == 0 or time.time() > until:
                        break
                    time.sleep(0.5)
                check(r.returncode == 0, "k8s pods in docker: %s (%s) passes on %s" % (kind, probe[-1], p),
                      r.stderr.strip())
            user = docker("inspect", "-f", "{{.Config.User}}", "%s-%s" % (prefix, p))
            check(user not in ("", "0", "root") and not user.startswith("0:"),
                  "k8s pods in docker: %s runs as user %s" % (p, user))
    finally:
        for pod in names:
            docker("rm", "-f", "%s-%s" % (prefix, pod), check_rc=False)
        docker("network", "rm", net, check_rc=False)
        shutil.rmtree(tmp, ignore_errors=True)


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
    tmp = tempfile.mkdtemp(prefix="ferry-check-certs-")
    try:
        # Certificates for every router of the ConfigMap and of compose.
        entries = [k for cm in by_kind(docs, "ConfigMap") for k in cm.get("data", {})
                   if re.fullmatch(r".*-\d+\.toml", k)]
        certs = make_certs(tmp, max(len(entries), 1))
        try:
            secrets = generated_secrets(certs.get("k8s"))
        except (OSError, KeyError, ValueError) as e:
            check(False, "kustomization.yaml's secretGenerator reads its files", str(e))
            secrets = []
        schema_checks(docs + [("kustomization.yaml", d) for d, _ in secrets], a.require_schema)
        secret_checks(secrets, certs.get("k8s"))
        structure_checks(docs, secrets, a.ferry, certs.get("k8s"))
        compose_checks(a.ferry, certs.get("compose"))
        if a.image:
            try:
                k8s_in_docker(docs, secrets, a.image, a.replicas)
            except Exception as e:
                check(False, "k8s pods in docker", str(e))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print("check-manifests: %d passed, %d failed" % (results["passed"], results["failed"]))
    return 1 if results["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
