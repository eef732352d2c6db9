"""Flux, a real GitOps reconciler, next to the lab: a Git repository served over Git's smart
HTTP on loopback, and Flux's source-controller and kustomize-controller (built by
hack/build-peers.sh at the pins of hack/versions.env) running out of cluster against the lab's
apiserver.

`GitServer` runs `git http-backend` (Debian's git) as a CGI behind a small threaded HTTP server
on 127.0.0.1; `GitRepo` is a bare repository there with a working clone the test edits and
commits to. `start_flux` installs the controllers' CRDs (kept next to the binaries by
build-peers), the `flux-system` namespace, and starts both controllers: source-controller
serves its artifacts on a loopback port that it also advertises, so kustomize-controller
downloads them from there.

kustomize-controller logs each apply as JSON with the changeset (`"Deployment/ns/web":
"configured"` or `"unchanged"`); `applies` reads them, so a test can show that the objects it
applies never drift.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import urllib.request
from dataclasses import dataclass
from functools import partial
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from stickyguard_lab.binaries import find_peers, find_tool, peer_dir
from stickyguard_lab.kubectl import kubectl
from stickyguard_lab.procs import Child, Supervisor, free_port
from stickyguard_lab.testenv import LabEnv

NAMESPACE = "flux-system"
_GIT_ENV = {
    "GIT_AUTHOR_NAME": "lab",
    "GIT_AUTHOR_EMAIL": "lab@stickyguard.invalid",
    "GIT_COMMITTER_NAME": "lab",
    "GIT_COMMITTER_EMAIL": "lab@stickyguard.invalid",
}


def _git(*args: str, cwd: Path | None = None) -> str:
    proc = subprocess.run(
        [str(find_tool("git", "git")), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, **_GIT_ENV},
    )
    if proc.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)} failed: {proc.stderr}")
    return proc.stdout.strip()


class GitServer:
    """Bare repositories under `root`, served read-only over smart HTTP on loopback."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        backend = [str(find_tool("git", "git")), "http-backend"]
        project_root = str(root)

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                self._cgi()

            def do_POST(self) -> None:
                self._cgi()

            def _body(self) -> bytes:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    chunks: list[bytes] = []
                    while True:
                        size = int(self.rfile.readline().strip().split(b";")[0], 16)
                        if size == 0:
                            self.rfile.readline()
                            return b"".join(chunks)
                        chunks.append(self.rfile.read(size))
                        self.rfile.readline()
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def _cgi(self) -> None:
                path, _, query = self.path.partition("?")
                body = self._body() if self.command == "POST" else b""
                env = {
                    "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                    "GIT_PROJECT_ROOT": project_root,
                    "GIT_HTTP_EXPORT_ALL": "1",
                    "REQUEST_METHOD": self.command,
                    "PATH_INFO": path,
                    "QUERY_STRING": query,
                    "CONTENT_TYPE": self.headers.get("Content-Type", ""),
                    "CONTENT_LENGTH": str(len(body)),
                    "REMOTE_ADDR": self.client_address[0],
                }
                for header in ("Git-Protocol", "Content-Encoding"):
                    if self.headers.get(header):
                        env["HTTP_" + header.upper().replace("-", "_")] = self.headers[header]
                out = subprocess.run(backend, input=body, env=env, capture_output=True, check=False)
                head, sep, payload = out.stdout.partition(b"\r\n\r\n")
                if not sep:
                    head, sep, payload = out.stdout.partition(b"\n\n")
                status, headers = 200, []
                for line in head.decode("latin-1").splitlines():
                    key, _, value = line.partition(":")
                    if key.lower() == "status":
                        status = int(value.strip().split()[0])
                    elif key:
                        headers.append((key, value.strip()))
                if out.returncode != 0 and not out.stdout:
                    status, payload = 500, out.stderr
                self.send_response(status)
                for key, value in headers:
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: Any) -> None:
                return

        self.port = free_port()
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/{name}.git"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@dataclass
class GitRepo:
    """A bare repository served by `server` and a working clone (`work`) to commit to."""

    server: GitServer
    name: str
    work: Path

    @classmethod
    def create(cls, server: GitServer, name: str, work: Path) -> GitRepo:
        bare = server.root / f"{name}.git"
        _git("init", "--bare", "--initial-branch=main", str(bare))
        work.mkdir(parents=True, exist_ok=True)
        _git("init", "--initial-branch=main", cwd=work)
        _git("remote", "add", "origin", str(bare), cwd=work)
        return cls(server, name, work)

    @property
    def url(self) -> str:
        return self.server.url(self.name)

    def commit(self, message: str) -> str:
        """Commits everything in the working clone, pushes it, returns the commit id."""
        _git("add", "-A", cwd=self.work)
        _git("commit", "--quiet", "--allow-empty", "-m", message, cwd=self.work)
        _git("push", "--quiet", "origin", "main", cwd=self.work)
        return _git("rev-parse", "HEAD", cwd=self.work)


@dataclass
class Flux:
    source: Child
    kustomize: Child

    def applies(self) -> list[dict[str, Any]]:
        """kustomize-controller's apply records so far: each has `revision` and `output`
        (object -> created | configured | unchanged | deleted)."""
        out = []
        for line in self.kustomize.log.read_text(errors="replace").splitlines():
            if not line.startswith("{"):
                continue
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if isinstance(entry.get("output"), dict):
                out.append(entry)
        return out


def _healthy(port: int) -> bool:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as r:
        return bool(r.status == 200)


def install_crds(lab: LabEnv) -> None:
    """The controllers' CRDs at their pins, established."""
    crds = [
        p
        for peer in ("flux-source-controller", "flux-kustomize-controller")
        for p in sorted((peer_dir(peer) / "crds").glob("*.yaml"))
    ]
    k, cfg = lab.binaries.kubectl, lab.kubeconfig
    for crd in crds:
        kubectl(k, cfg, "apply", "--server-side", "--force-conflicts", "-f", str(crd))
    kubectl(k, cfg, "wait", "--for=condition=Established", "--timeout=60s", "crd", "--all")


def start_flux(lab: LabEnv, sup: Supervisor, work: Path) -> Flux:
    """Installs the CRDs and starts source-controller and kustomize-controller out of
    cluster with the lab's kubeconfig (watching every namespace)."""
    binaries = find_peers("flux-source-controller", "flux-kustomize-controller")
    install_crds(lab)
    k, cfg = lab.binaries.kubectl, lab.kubeconfig
    if kubectl(k, cfg, "get", "namespace", NAMESPACE, check=False).returncode != 0:
        kubectl(k, cfg, "create", "namespace", NAMESPACE)
    env = {
        "KUBECONFIG": str(cfg),
        "RUNTIME_NAMESPACE": NAMESPACE,
        "KUBERNETES_SERVICE_HOST": "",
        "KUBERNETES_SERVICE_PORT": "",
    }
    storage = free_port()
    (work / "artifacts").mkdir(parents=True, exist_ok=True)
    common = ["--watch-all-namespaces", "--log-level=info", "--concurrent=4"]
    children = []
    for peer, extra in (
        (
            "flux-source-controller",
            [
                f"--storage-path={work / 'artifacts'}",
                f"--storage-addr=127.0.0.1:{storage}",
                f"--storage-adv-addr=127.0.0.1:{storage}",
            ],
        ),
        ("flux-kustomize-controller", []),
    ):
        health = free_port()
        child = sup.start(
            peer,
            [
                binaries[peer],
                f"--metrics-addr=127.0.0.1:{free_port()}",
                f"--health-addr=127.0.0.1:{health}",
                *common,
                *extra,
            ],
            env=env,
        )
        sup.wait_until(child, partial(_healthy, health), f"{peer} ready", timeout=120)
        children.append(child)
    return Flux(*children)
