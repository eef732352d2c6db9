"""What `make demo` shows a person at the end: the before/after table for the terminal and a
small self-contained HTML page (inline SVG chart of users hurt over time, without and with
stickyguard, the fault and the drain marked). Both are pure functions of the demo report's
data (demo-report.json), so they are tested on fixed data without running the demo."""

from __future__ import annotations

import html
import math
from typing import Any

RUNS = (
    ("unmitigated", "without stickyguard", "#c0392b"),
    ("mitigated", "with stickyguard", "#1e8449"),
)
COLUMNS = (
    ("requests_bad_pct", "requests bad %"),
    ("users_affected_pct", "users affected %"),
    ("detection_seconds", "detection s"),
    ("healthy_pods_drained", "healthy pods drained"),
)


def _cell(value: Any) -> str:
    return "-" if value is None else str(value)


def table(report: dict[str, Any]) -> str:
    """The before/after table printed when the demo ends."""
    rows = [("", *(title for _, title in COLUMNS))]
    rows += [(name, *(_cell(report[name].get(k)) for k, _ in COLUMNS)) for name, _, _ in RUNS]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) for r in rows)


def _nice_ceiling(value: float) -> float:
    """The smallest of 1, 2, 2.5, 5 × 10^k at or above value, for a readable y axis."""
    if value <= 0:
        return 1.0
    base = 10 ** math.floor(math.log10(value))
    for m in (1, 2, 2.5, 5, 10):
        if m * base >= value:
            return float(m * base)
    return float(10 * base)


def chart_svg(report: dict[str, Any], width: int = 720, height: int = 340) -> str:
    """Share of users hurt so far against seconds of load, one step line per run."""
    left, right, top, bottom = 72, 20, 20, 64
    pw, ph = width - left - right, height - top - bottom
    series = {name: report[name].get("users_hurt_timeline") or [] for name, _, _ in RUNS}
    points = [p for s in series.values() for p in s]
    if not points:
        return '<p class="note">This report has no timeline (made by an older demo).</p>'
    x_max = float(max(p[0] for p in points)) or 1.0
    y_top = float(max(p[1] for p in points))
    y_step = _nice_ceiling(y_top / 4)
    y_ticks = max(1, math.ceil(y_top / y_step))
    y_max = y_step * y_ticks

    def x(t: float) -> float:
        return left + pw * t / x_max

    def y(v: float) -> float:
        return top + ph * (1 - v / y_max)

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" role="img" '
        'aria-label="share of users hurt over time, without and with stickyguard">',
        f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="#fafafa" stroke="#ccc"/>',
    ]
    for i in range(y_ticks + 1):
        v = y_step * i
        out.append(
            f'<line x1="{left}" x2="{left + pw}" y1="{y(v):.1f}" y2="{y(v):.1f}" stroke="#e5e5e5"/>'
            f'<text x="{left - 6}" y="{y(v) + 4:.1f}" text-anchor="end">{v:g}%</text>'
        )
    step = _nice_ceiling(x_max / 6)
    t = 0.0
    while t <= x_max + 1e-9:
        out.append(f'<text x="{x(t):.1f}" y="{top + ph + 18}" text-anchor="middle">{t:g}</text>')
        t += step
    out.append(
        f'<text x="{left + pw / 2}" y="{top + ph + 38}" text-anchor="middle">'
        "seconds of load</text>"
        f'<text transform="translate(16 {top + ph / 2}) rotate(-90)" text-anchor="middle">'
        "users hurt so far</text>"
    )
    fault = report["unmitigated"].get("fault_at_seconds")
    if fault is not None:
        out.append(_marker(x(fault), top, ph, "#7f8c8d", f"fault begins (t={fault:g} s)", "start"))
    mitigated = report["mitigated"]
    drained = mitigated.get("drained_at_seconds")
    if drained is not None:
        detection = mitigated.get("detection_seconds")
        label = "stickyguard drains the bad pod" + (
            f" ({detection:g} s after the fault)" if detection is not None else ""
        )
        out.append(_marker(x(drained), top + 16, ph - 16, "#1e8449", label, "start"))
    for name, _, colour in RUNS:
        s = series[name]
        if not s:
            continue
        # A step line: the count holds until the next sample.
        path = [f"M{x(s[0][0]):.1f},{y(s[0][1]):.1f}"]
        for t1, v1 in s[1:]:
            path.append(f"H{x(t1):.1f}V{y(v1):.1f}")
        out.append(
            f'<path d="{"".join(path)}" fill="none" stroke="{colour}" stroke-width="2.5" '
            f'data-run="{name}"/>'
        )
        last_t, last_v = s[-1]
        out.append(
            f'<text x="{x(last_t) - 4:.1f}" y="{y(last_v) - 6:.1f}" text-anchor="end" '
            f'fill="{colour}" font-weight="bold">{last_v:.1f}%</text>'
        )
    legend_y = height - 10
    lx = left
    for _, title, colour in RUNS:
        out.append(
            f'<rect x="{lx}" y="{legend_y - 9}" width="18" height="4" fill="{colour}"/>'
            f'<text x="{lx + 24}" y="{legend_y - 4}">{html.escape(title)}</text>'
        )
        lx += 190
    out.append("</svg>")
    return "\n".join(out)


def _marker(px: float, top: float, height: float, colour: str, label: str, anchor: str) -> str:
    return (
        f'<line x1="{px:.1f}" x2="{px:.1f}" y1="{top}" y2="{top + height}" stroke="{colour}" '
        f'stroke-dasharray="5 4" stroke-width="1.5"/>'
        f'<text x="{px + 5:.1f}" y="{top + 12}" fill="{colour}" text-anchor="{anchor}">'
        f"{html.escape(label)}</text>"
    )


def headline(report: dict[str, Any]) -> str:
    u, m = report["unmitigated"], report["mitigated"]
    return (
        f"Without stickyguard {u['users_affected_pct']:.1f}% of users got a degraded answer; "
        f"with it, {m['users_affected_pct']:.1f}%."
    )


def render_html(report: dict[str, Any]) -> str:
    """The whole page: no scripts, no external resources."""
    u = report["unmitigated"]
    settings = report.get("settings") or {}
    amp = f" (×{u['amplification']:.0f})" if u.get("amplification") else ""
    story = (
        f"A quality bug (HTTP 200, wrong answer) hit one pod of six for "
        f"{100 * float(settings.get('fault_rate', 0)):g}% of its answers, "
        f"{settings.get('fault_at', '?')} s into each run. "
        f"{settings.get('users', '?')} users with cookie jars were pinned to pods by Traefik's "
        "sticky cookies. "
        f"Only {u['requests_bad_pct']:g}% of requests were bad, yet "
        f"{u['users_affected_pct']:.1f}% of users were hurt{amp}: the same users kept landing on "
        "the bad pod. The incident was replayed twice on a real local cluster, operator off "
        "then on."
    )
    rows = "".join(
        f"<tr><th>{html.escape(title)}</th>"
        + "".join(f"<td>{html.escape(_cell(report[name].get(k)))}</td>" for k, _ in COLUMNS)
        + "</tr>"
        for name, title, _ in RUNS
    )
    head = "".join(f"<th>{html.escape(t)}</th>" for _, t in COLUMNS)
    elapsed = report.get("elapsed_seconds")
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>stickyguard demo report</title>
<style>
body {{ font-family: "DejaVu Sans", Arial, sans-serif; margin: 24px auto; max-width: 760px;
  color: #222; }}
h1 {{ font-size: 22px; margin-bottom: 4px; }}
p.lead {{ font-size: 17px; font-weight: bold; }}
table {{ border-collapse: collapse; margin: 12px 0; }}
th, td {{ border: 1px solid #ccc; padding: 4px 10px; text-align: right; }}
svg text {{ font-size: 12px; fill: #333; }}
.note {{ color: #666; font-size: 13px; }}
</style>
</head>
<body>
<h1>stickyguard demo: one bad pod, sticky users</h1>
<p class="lead">{html.escape(headline(report))}</p>
<p>{html.escape(story)}</p>
<table>
<tr><th></th>{head}</tr>
{rows}
</table>
{chart_svg(report)}
<p class="note">Made by <code>make demo</code> from demo-report.json
{f"in {elapsed:.0f} s" if isinstance(elapsed, int | float) else ""}.</p>
</body>
</html>
"""
