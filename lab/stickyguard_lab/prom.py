"""Real Prometheus for tests and the demo (Debian's `prometheus` and `promtool`).

Two ways: `backfill` turns series into TSDB blocks with `promtool tsdb create-blocks-from
openmetrics` for deterministic queries at a fixed time; `start_prometheus` serves a TSDB and
scrapes live targets listed in file_sd files (written with `write_targets`).
"""

from __future__ import annotations

import json
import math
import re
import subprocess
import urllib.request
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from stickyguard_lab.binaries import Binaries
from stickyguard_lab.procs import Child, Supervisor, free_port

_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")


@dataclass(frozen=True)
class Series:
    """One time series: metric name, labels and (unix seconds, value) samples."""

    name: str
    labels: Mapping[str, str]
    samples: Sequence[tuple[float, float]] = field(default_factory=list)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _fmt(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


def to_openmetrics(series: Iterable[Series]) -> str:
    lines = []
    for s in series:
        if not _NAME.match(s.name):
            raise ValueError(f"invalid metric name {s.name!r}")
        labels = ",".join(f'{k}="{_escape(v)}"' for k, v in sorted(s.labels.items()))
        for ts, value in sorted(s.samples):
            lines.append(f"{s.name}{{{labels}}} {_fmt(value)} {ts:.3f}")
    lines.append("# EOF")
    return "\n".join(lines) + "\n"


def backfill(bins: Binaries, series: Iterable[Series], tsdb_dir: Path) -> None:
    """Writes the series as TSDB blocks into tsdb_dir."""
    tsdb_dir.mkdir(parents=True, exist_ok=True)
    src = tsdb_dir.parent / f"{tsdb_dir.name}.om"
    src.write_text(to_openmetrics(series))
    proc = subprocess.run(
        [str(bins.promtool), "tsdb", "create-blocks-from", "openmetrics", str(src), str(tsdb_dir)],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"promtool backfill failed: {proc.stderr or proc.stdout}")


def write_targets(targets_dir: Path, job: str, targets: Mapping[str, Mapping[str, str]]) -> None:
    """Writes the file_sd file of `job`: target address -> extra labels (e.g. pod, namespace)."""
    targets_dir.mkdir(parents=True, exist_ok=True)
    groups = [{"targets": [addr], "labels": dict(labels)} for addr, labels in targets.items()]
    tmp = targets_dir / f".{job}.json.tmp"
    tmp.write_text(json.dumps(groups))
    tmp.replace(targets_dir / f"{job}.json")  # atomic: Prometheus never reads half a file


@dataclass
class Prometheus:
    url: str
    child: Child
    targets_dir: Path

    def ready(self) -> bool:
        with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as resp:
            return bool(resp.status == 200)


def start_prometheus(
    sup: Supervisor,
    bins: Binaries,
    work_dir: Path,
    *,
    name: str = "prometheus",
    tsdb_dir: Path | None = None,
    scrape_interval: str = "1s",
    port: int | None = None,
) -> Prometheus:
    """Starts Prometheus on loopback (a free port unless given). It scrapes every target listed
    in the file_sd files work_dir/targets/*.json; honor_labels keeps the exporters' `pod`."""
    work_dir.mkdir(parents=True, exist_ok=True)
    targets_dir = work_dir / "targets"
    targets_dir.mkdir(exist_ok=True)
    cfg = {
        "global": {"scrape_interval": scrape_interval, "evaluation_interval": scrape_interval},
        "scrape_configs": [
            {
                "job_name": "lab",
                "honor_labels": True,
                "scrape_interval": scrape_interval,
                "file_sd_configs": [
                    {"files": [str(targets_dir / "*.json")], "refresh_interval": "1s"}
                ],
            }
        ],
    }
    (work_dir / "prometheus.yml").write_text(yaml.safe_dump(cfg))
    port = port or free_port()
    child = sup.start(
        name,
        [
            bins.prometheus,
            f"--config.file={work_dir / 'prometheus.yml'}",
            f"--storage.tsdb.path={tsdb_dir or work_dir / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--storage.tsdb.retention.time=100y",  # backfilled fixtures have old timestamps
            "--web.enable-lifecycle",
            "--log.level=warn",
        ],
    )
    prom = Prometheus(url=f"http://127.0.0.1:{port}", child=child, targets_dir=targets_dir)
    sup.wait_until(child, prom.ready, "Prometheus /-/ready")
    return prom
