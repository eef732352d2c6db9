"""Running the lab's kubectl."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any


def kubectl(
    kubectl_bin: Path, kubeconfig: Path, *args: str, stdin: str | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [str(kubectl_bin), f"--kubeconfig={kubeconfig}", *args],
        input=stdin,
        capture_output=True,
        text=True,
        check=False,
    )
    if check and proc.returncode != 0:
        raise RuntimeError(f"kubectl {' '.join(args)} failed: {proc.stderr}")
    return proc


def apply(
    kubectl_bin: Path,
    kubeconfig: Path,
    source: Path | list[dict[str, Any]],
    namespace: str | None = None,
) -> None:
    """Server-side apply of a manifest file or of objects (into `namespace` when given, for
    files that name none, as a user would with `kubectl apply -n`)."""
    ns = [f"--namespace={namespace}"] if namespace else []
    if isinstance(source, Path):
        kubectl(kubectl_bin, kubeconfig, "apply", "--server-side", *ns, "-f", str(source))
    else:
        body = json.dumps({"apiVersion": "v1", "kind": "List", "items": source})
        kubectl(kubectl_bin, kubeconfig, "apply", "--server-side", *ns, "-f", "-", stdin=body)
