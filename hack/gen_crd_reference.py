"""Generates docs/reference/stickypolicy.md from the CRD's OpenAPI schema (one source of truth).

Usage: python hack/gen_crd_reference.py [--check]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
CRD = REPO / "crds" / "stickypolicy.yaml"
OUT = REPO / "docs" / "reference" / "stickypolicy.md"


def _type(s: dict[str, Any]) -> str:
    t = s.get("type", "object")
    if t == "array":
        return f"[]{_type(s.get('items', {}))}"
    if t == "object" and "additionalProperties" in s:
        return "map[string]string"
    return str(t)


def _constraints(s: dict[str, Any]) -> str:
    c = []
    if "enum" in s:
        c.append("one of " + ", ".join(f"`{e}`" for e in s["enum"]))
    if "minimum" in s:
        c.append(f"{'>' if s.get('exclusiveMinimum') else '>='} {s['minimum']}")
    if "maximum" in s:
        c.append(f"{'<' if s.get('exclusiveMaximum') else '<='} {s['maximum']}")
    if "pattern" in s:
        c.append(f"pattern `{s['pattern']}`")
    for rule in s.get("x-kubernetes-validations", []):
        c.append(f"rule: {rule['message']}")
    return "; ".join(c)


def _rows(s: dict[str, Any], path: str, required: set[str]) -> list[str]:
    rows = []
    for name, sub in (s.get("properties") or {}).items():
        p = f"{path}.{name}" if path else name
        if "default" in sub:
            default = f"`{json.dumps(sub['default'])}`"
        else:
            default = "required" if name in required else ""
        desc = " ".join(str(sub.get("description", "")).split())
        rows.append(f"| `{p}` | {_type(sub)} | {default} | {desc} | {_constraints(sub)} |")
        child = sub.get("items", sub) if sub.get("type") == "array" else sub
        rows += _rows(
            child, p + ("[]" if sub.get("type") == "array" else ""), set(child.get("required", []))
        )
    return rows


def render() -> str:
    crd = yaml.safe_load(CRD.read_text())
    version = crd["spec"]["versions"][0]
    root = version["schema"]["openAPIV3Schema"]
    head = [
        "# StickyPolicy reference (stickyguard.dev/v1alpha1)",
        "",
        "Generated from `crds/stickypolicy.yaml` by `hack/gen_crd_reference.py`; do not edit.",
        "`kubectl explain stickypolicy.spec` shows the same text.",
        "",
        " ".join(root["description"].split()),
        "",
    ]
    out = head
    for section in ("spec", "status"):
        sub = root["properties"][section]
        out += [
            f"## {section}",
            "",
            " ".join(sub["description"].split()),
            "",
            "| field | type | default | description | constraints |",
            "| --- | --- | --- | --- | --- |",
        ]
        for rule in sub.get("x-kubernetes-validations", []):
            out.insert(len(out) - 2, f"Rule: {rule['message']}.\n")
        out += _rows(sub, section, set(sub.get("required", [])))
        out.append("")
    return "\n".join(out)


def main() -> int:
    text = render()
    if "--check" in sys.argv:
        if not OUT.exists() or OUT.read_text() != text:
            print(f"{OUT} is stale: run python hack/gen_crd_reference.py", file=sys.stderr)
            return 1
        return 0
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
