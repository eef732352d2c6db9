"""The peers stickyguard is proven against build from the Go module proxy at their pins
(hack/build-peers.sh, through binaries.find_peer as every test that needs one) and start."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from stickyguard_lab.binaries import PEERS, find_peers, read_pins

pytestmark = pytest.mark.integration

# What each binary prints about itself without a cluster.
VERSION_ARGS = {
    "traefik": ["version"],
    "argo-rollouts": ["--help"],
    "flagger": ["-version"],
    "flux-source-controller": ["--help"],
    "flux-kustomize-controller": ["--help"],
}
SAYS = {
    "traefik": "Version:      {v}",
    "argo-rollouts": "--healthzPort",  # its --help; it has no offline version command
    "flagger": "Flagger version {v}",
    # The Flux controllers print no version offline; their --help names their own flags.
    "flux-source-controller": "--storage-adv-addr",
    "flux-kustomize-controller": "--override-manager",
}


@pytest.fixture(scope="module")
def binaries() -> dict[str, Path]:
    return find_peers(*PEERS)  # one build-peers.sh call: cold peers build in parallel


@pytest.mark.parametrize("peer", sorted(PEERS))
def test_peer_builds_at_its_pin_and_starts(peer: str, binaries: dict[str, Path]) -> None:
    binary = binaries[peer]
    version = read_pins()[PEERS[peer][0]]
    assert binary.parent.name == f"{peer}-{version}"
    out = subprocess.run(
        [str(binary), *VERSION_ARGS[peer]], capture_output=True, text=True, timeout=60, check=False
    )
    text = out.stdout + out.stderr
    assert out.returncode == 0, text
    assert SAYS[peer].format(v=version.removeprefix("v") if peer == "flagger" else version) in text
