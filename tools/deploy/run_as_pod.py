"""Runs the real binary as deploy/kubernetes/worker.yaml's pod would: as its runAsUser and
runAsGroup with the fsGroup as a supplementary group, its Secret's files owned by root and the
fsGroup with the Secret's defaultMode (what the kubelet does), its ConfigMap and env. The worker
must start, read both URL files and both CA files, and answer /healthz; `probe` as the same user
must succeed. As a control, the same files at 0400 (root only) must be refused with
"Permission denied", so the check can tell the two apart.

    python run_as_pod.py PATH/TO/prereg-sync

Run as root (it changes file owners and drops to the pod's user with setpriv). Nothing is
contacted: the URLs point at closed local ports; the worker keeps retrying them until stopped.
"""

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = ROOT / "deploy" / "kubernetes"
STARTUP_LIMIT_S = 60


def documents(name):
    return list(yaml.safe_load_all((MANIFESTS / name).read_text()))


def pod_spec():
    (deployment,) = [d for d in documents("worker.yaml") if d["kind"] == "Deployment"]
    return deployment["spec"]["template"]["spec"]


def secret_files(directory, mode, gid):
    """The Secret's keys as the kubelet writes them: root-owned, the fsGroup's, `mode`."""
    directory.mkdir()
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-nodes", "-keyout", str(directory / "ca.key"), "-out", str(directory / "ca.pem"),
         "-days", "1", "-subj", "/CN=prereg-sync test CA"],
        check=True, capture_output=True,
    )
    (directory / "ca.key").unlink()
    ca = (directory / "ca.pem").read_bytes()
    (directory / "ca.pem").unlink()
    contents = {
        "amqp-url": b"amqps://prereg:secret@127.0.0.1:1/%2f\n",
        "database-url": b"postgres://prereg:secret@127.0.0.1:1/mosip_prereg\n",
        "rabbitmq-ca.pem": ca,
        "postgres-ca.pem": ca,
    }
    for key, value in contents.items():
        path = directory / key
        path.write_bytes(value)
        os.chown(path, 0, gid)
        os.chmod(path, mode)
    os.chown(directory, 0, gid)
    os.chmod(directory, 0o750)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def environment(spec, container, mount, secrets, listen):
    (config_map,) = documents("settings.yaml")
    env = {"PATH": "/usr/bin:/bin", **config_map["data"]}
    env.update({item["name"]: item["value"] for item in container.get("env", [])})
    env = {k: v.replace(mount, str(secrets)) for k, v in env.items()}
    env["PREREG_SYNC__HTTP__LISTEN"] = listen
    return env


def healthy(url, worker):
    deadline = time.monotonic() + STARTUP_LIMIT_S
    while time.monotonic() < deadline:
        if worker.poll() is not None:
            return False
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return response.status == 200
        except OSError:
            time.sleep(0.2)
    return False


def main(binary):
    spec = pod_spec()
    context = spec["securityContext"]
    uid, gid, fs_group = context["runAsUser"], context["runAsGroup"], context["fsGroup"]
    (container,) = spec["containers"]
    (volume,) = [v for v in spec["volumes"] if "secret" in v]
    (mount,) = [m["mountPath"] for m in container["volumeMounts"] if m["name"] == volume["name"]]
    mode = volume["secret"]["defaultMode"]
    print(f"pod user {uid}:{gid}, fsGroup {fs_group}, secret files {mode:04o} under {mount}")

    work = Path(tempfile.mkdtemp(prefix="prereg-sync-pod-"))
    try:
        os.chmod(work, 0o755)
        shutil.copy(binary, work / "prereg-sync")
        os.chmod(work / "prereg-sync", 0o755)
        shutil.copytree(ROOT / "config", work / "config")
        as_pod = ["setpriv", f"--reuid={uid}", f"--regid={gid}", f"--groups={fs_group}",
                  "--inh-caps=-all", str(work / "prereg-sync")]
        port = free_port()
        secrets = work / "secrets"
        secret_files(secrets, mode, fs_group)
        env = environment(spec, container, mount, secrets, f"127.0.0.1:{port}")

        worker = subprocess.Popen(as_pod + container["args"], cwd=work, env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            ok = healthy(f"http://127.0.0.1:{port}/healthz", worker)
            probe = subprocess.run(as_pod + ["probe", "--path", "/healthz"], cwd=work, env=env,
                                   capture_output=True, text=True)
        finally:
            worker.terminate()
            _, stderr = worker.communicate(timeout=60)
        if not ok:
            sys.exit(f"FAIL: the worker did not answer /healthz as uid {uid}:\n{stderr.decode()}")
        if probe.returncode != 0:
            sys.exit(f"FAIL: probe as uid {uid} exited {probe.returncode}:\n{probe.stderr}")
        print(f"ok   worker started and answered /healthz as uid {uid}; {probe.stdout.strip()}")

        for key in secrets.iterdir():
            os.chown(key, 0, 0)
            os.chmod(key, 0o400)
        control = subprocess.run(as_pod + ["probe"], cwd=work, env=env,
                                 capture_output=True, text=True)
        if control.returncode == 0 or "Permission denied" not in control.stderr:
            sys.exit(f"FAIL: the control (files 0400 root:root) was not refused:\n{control.stderr}")
        print(f"ok   control: files 0400 root:root are refused ({control.stderr.strip()})")
    finally:
        shutil.rmtree(work)


if __name__ == "__main__":
    main(sys.argv[1])
