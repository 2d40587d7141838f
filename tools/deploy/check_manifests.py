"""What deploy/kubernetes/ promises an operator and no schema can check:
- KEDA owns the worker's replica count: a Deployment that a ScaledObject scales sets none;
- every pod runs as the image's user, and the fsGroup can read its Secret's files;
- a pod with a read-only root filesystem that runs the worker has a writable /tmp;
- the shared settings hold what docs/security.md requires in production (a reply_to allow-list,
  verify-full TLS to PostgreSQL, no migrations from the worker);
- the migrate Job uses the owner's Secret, every other pod the least-privilege one;
- the Service, the PodDisruptionBudget and the ServiceMonitor select the worker's pods.

    python check_manifests.py
"""

import sys
from pathlib import Path

import yaml

MANIFESTS = Path(__file__).resolve().parents[2] / "deploy" / "kubernetes"
IMAGE_USER = 10001

problems = []


def check(condition, message):
    if not condition:
        problems.append(message)


def pod_specs(objects):
    for obj in objects:
        spec = obj.get("spec", {})
        if obj["kind"] == "CronJob":
            spec = spec["jobTemplate"]["spec"]
        if obj["kind"] in ("Deployment", "Job", "CronJob"):
            yield obj, spec["template"]


def check_pod(obj, template):
    where = f"{obj['kind']}/{obj['metadata']['name']}"
    spec = template["spec"]
    context = spec.get("securityContext", {})
    check(context.get("runAsUser") == IMAGE_USER, f"{where}: runAsUser is not {IMAGE_USER}")
    for volume in spec.get("volumes", []):
        if "secret" not in volume:
            continue
        mode = volume["secret"].get("defaultMode", 0o644)
        readable = mode & 0o004 or (context.get("fsGroup") is not None and mode & 0o040)
        check(readable, f"{where}: secret {volume['secret']['secretName']} mode {mode:04o} "
                        "is not readable by the pod's user (set fsGroup and a group-readable mode)")
        owner = volume["secret"]["secretName"] == "prereg-sync-owner"
        migrates = template["spec"]["containers"][0].get("args") == ["migrate"]
        check(owner == migrates, f"{where}: only the migrate Job may mount prereg-sync-owner")
    for container in spec["containers"]:
        read_only = container.get("securityContext", {}).get("readOnlyRootFilesystem")
        mounts = {m["mountPath"] for m in container.get("volumeMounts", [])}
        if read_only and container.get("args") == ["run"]:
            check("/tmp" in mounts, f"{where}: read-only root without a writable /tmp")


def main():
    objects = [
        doc
        for path in sorted(MANIFESTS.glob("*.yaml"))
        for doc in yaml.safe_load_all(path.read_text())
        if doc
    ]
    by_kind = {}
    for obj in objects:
        by_kind.setdefault(obj["kind"], []).append(obj)
    # The worker's own objects: the HTTP ingress (ingress-*.yaml) is another app beside it.
    worker = {
        kind: [o for o in objs
               if o["metadata"].get("labels", {}).get("app.kubernetes.io/name") != "prereg-sync-ingress"]
        for kind, objs in by_kind.items()
    }

    for scaled in by_kind.get("ScaledObject", []):
        target = scaled["spec"]["scaleTargetRef"]["name"]
        for deployment in by_kind["Deployment"]:
            if deployment["metadata"]["name"] == target:
                check("replicas" not in deployment["spec"],
                      f"Deployment/{target} sets replicas although KEDA scales it")
    for obj, template in pod_specs(objects):
        check_pod(obj, template)

    (settings,) = by_kind["ConfigMap"]
    data = settings["data"]
    check(data.get("PREREG_SYNC__AMQP__REPLY_TO_ALLOW"), "settings: no amqp.reply_to_allow")
    check(data.get("PREREG_SYNC__DATABASE__TLS__MODE") == "verify-full",
          "settings: database.tls.mode is not verify-full")
    check(data.get("PREREG_SYNC__DATABASE__MIGRATE_ON_START") == "false",
          "settings: the worker would migrate (its role has no DDL rights)")

    (deployment,) = worker["Deployment"]
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    selectors = [("Service", o["spec"]["selector"]) for o in worker["Service"]]
    selectors += [(k, o["spec"]["selector"]["matchLabels"])
                  for k in ("PodDisruptionBudget", "ServiceMonitor") for o in worker[k]]
    for kind, selector in selectors:
        check(selector.items() <= pod_labels.items(), f"{kind} does not select the worker's pods")
    (service,) = worker["Service"]
    check(service["metadata"]["labels"].items() >= selectors[-1][1].items(),
          "the ServiceMonitor does not select the Service")

    for problem in problems:
        print(f"FAIL {problem}")
    if problems:
        sys.exit(1)
    print(f"ok   {len(objects)} objects in {MANIFESTS.name}/")


if __name__ == "__main__":
    main()
