"""The operator image, built and run without Docker: the Dockerfile built by buildah on a local
Debian base (hack/build-image.sh), then `stickyguard --help` and `stickyguard run` run from the
image's own root filesystem, read-only, as the image's non-root user (tests/imagerun.py), the
operator acting on a policy in the lab's real control plane with the lab's Prometheus."""

from __future__ import annotations

import os
import shutil
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

import imagerun
from operator_support import Fleet, condition, create_policy, get_policy, policy_body
from stickyguard_lab import testenv
from stickyguard_lab.controlplane import write_kubeconfig
from stickyguard_lab.kubectl import kubectl
from stickyguard_lab.operatorproc import OperatorProcess, install_crd, install_rbac
from stickyguard_lab.procs import Supervisor, free_port
from support import wait_for

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
TAG = "localhost/stickyguard:test"


@pytest.fixture(scope="module")
def image() -> Iterator[imagerun.Image]:
    if os.geteuid() != 0:
        pytest.skip("the CI image build and run need root (buildah with chroot isolation, mounts)")
    # STICKYGUARD_TEST_IMAGE: an image hack/build-image.sh just built (skips a second build).
    tag = os.environ.get("STICKYGUARD_TEST_IMAGE") or imagerun.build(TAG)
    ctr, img = imagerun.mount(tag)
    print(f"\nimage {tag}: {img.size}")
    try:
        yield img
    finally:
        imagerun.unmount(ctr)


def test_image_runs_the_cli_read_only_as_its_non_root_user(
    image: imagerun.Image, tmp_path: Path
) -> None:
    uid = image.user.partition(":")[0]
    assert uid.isdigit() and int(uid) != 0, f"image USER {image.user!r}: must be a non-root UID"
    assert image.cmd == ["stickyguard", "run"]
    out = imagerun.run(image, ["stickyguard", "--help"], tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("usage: stickyguard"), out.stdout
    # kopf names its peer identity after the user: the image's UID has no passwd entry.
    getuser = "import getpass; print(getpass.getuser())"
    who = imagerun.run(image, ["python3", "-c", getuser], tmp_path)
    assert who.returncode == 0, who.stderr
    for sub in ("analyze", "run", "status", "doctor", "simulate"):
        assert sub in out.stdout
    # The harness itself: the process really is that user, and / really is read-only.
    probe = imagerun.run(
        image,
        [
            "python3",
            "-c",
            "import os\ntry:\n open('/opt/x','w')\nexcept OSError as e:\n print(e.errno)\n"
            "print(os.getuid(), os.getgid(), os.getgroups())\nopen('/tmp/ok','w')",
        ],
        tmp_path,
    )
    assert probe.returncode == 0, probe.stderr
    erofs, ids = probe.stdout.split("\n")[:2]
    assert erofs == "30", probe.stdout  # EROFS: the root filesystem is read-only
    assert ids in (f"{uid} {uid} []", f"{uid} {uid} [{uid}]"), probe.stdout
    # The operator image carries no test ground.
    lab = imagerun.run(image, ["python3", "-c", "import stickyguard_lab"], tmp_path)
    assert lab.returncode != 0 and "No module named 'stickyguard_lab'" in lab.stderr


def _rendered_container(lab: testenv.LabEnv) -> tuple[dict[str, Any], dict[str, Any]]:
    out = kubectl(
        lab.binaries.kubectl, lab.kubeconfig, "kustomize", str(REPO / "manifests" / "base")
    )
    (dep,) = [d for d in yaml.safe_load_all(out.stdout) if d and d["kind"] == "Deployment"]
    return dep, dep["spec"]["template"]["spec"]["containers"][0]


def test_image_operator_acts_on_a_policy(
    image: imagerun.Image,
    lab: testenv.LabEnv,
    crd_installed: None,
    operator: OperatorProcess,
    core: client.CoreV1Api,
    apps: client.AppsV1Api,
    custom: client.CustomObjectsApi,
    namespace: str,
    tmp_path: Path,
) -> None:
    """The image's command with the rendered Deployment's args (ports moved to free ones, as
    this machine shares them), as the shipped ServiceAccount through a kubeconfig holding its
    token, mounted read-only as a Secret would be."""
    install_rbac(lab)
    install_crd(lab)
    dep, c = _rendered_container(lab)
    sa, sa_ns = dep["spec"]["template"]["spec"]["serviceAccountName"], dep["metadata"]["namespace"]
    token = kubectl(
        lab.binaries.kubectl, lab.kubeconfig, "create", "token", sa, "-n", sa_ns
    ).stdout.strip()
    # What a Secret volume would hold, as the container sees it: the token and the CA, owned
    # by the image's user (fsGroup), the CA's path inside the container.
    config = tmp_path / "config"
    config.mkdir()
    shutil.copy(lab.control_plane.pki.ca_cert, config / "ca.crt")
    kubeconfig = write_kubeconfig(
        config / "kubeconfig", lab.control_plane.server, lab.control_plane.pki, user=sa, token=token
    )
    body = yaml.safe_load(kubeconfig.read_text())
    body["clusters"][0]["cluster"]["certificate-authority"] = "/tmp/config/ca.crt"
    kubeconfig.write_text(yaml.safe_dump(body))
    uid = int(image.user.partition(":")[0])
    for f in (config / "ca.crt", kubeconfig):
        os.chown(f, uid, uid)
        f.chmod(0o400)
    ports = {a.split("=")[0]: free_port() for a in c["args"] if a.endswith(tuple("0123456789"))}
    args = [f"{flag}={port}" for flag, port in ports.items()]
    env = {
        "KUBECONFIG": "/tmp/config/kubeconfig",
        "STICKYGUARD_PROMETHEUS_URL": lab.prometheus.url,
        "POD_NAME": "stickyguard-image",
        "POD_NAMESPACE": sa_ns,
    }
    operator.kill()  # the image's replica must win the Lease to act
    sup = Supervisor(tmp_path)
    fleet = Fleet(lab, core, apps, namespace, replicas=3)
    try:
        child = sup.start("image", imagerun.argv(image, [*image.cmd, *args], tmp_path, env))
        create_policy(custom, policy_body("web", namespace, safety={"minReadyPods": 1}))
        # Gated pods turn Ready only when the leader marks them serving: it acts.
        try:
            fleet.wait_all_ready(timeout=120)
        except AssertionError as e:
            raise AssertionError(f"{e}\nthe image's operator:\n{child.log_tail(60)}") from None

        def evaluated() -> dict[str, Any] | None:
            cond = condition(get_policy(custom, namespace, "web"), "MetricsAvailable")
            return cond if cond and cond["status"] == "True" else None

        wait_for(
            evaluated,
            timeout=90,
            what="the policy evaluated with metrics by the image's operator",
            detail=lambda: child.log_tail(40),
        )
        url = f"http://127.0.0.1:{ports['--metrics-port']}/metrics"
        metrics = urllib.request.urlopen(url, timeout=5).read().decode()
        assert "stickyguard_leader 1.0" in metrics
        assert f'namespace="{namespace}",policy="web",result="ok"' in metrics
        assert child.alive(), child.log_tail(40)
    finally:
        fleet.close()
        sup.stop_all()
        operator.start()
        leases = client.CoordinationV1Api(core.api_client)
        wait_for(
            lambda: (
                leases.read_namespaced_lease("stickyguard-leader", sa_ns).spec.holder_identity
                == operator.name
            ),
            timeout=60,
            what="the session operator leads again",
        )
