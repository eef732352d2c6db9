"""The CRD's schema defaults and the policy model's defaults are one contract."""

from __future__ import annotations

from typing import Any

import yaml

from policies import CRD
from stickyguard.core.policy import parse_policy


def _spec_schema() -> dict[str, Any]:
    crd = yaml.safe_load(CRD.read_text())
    return crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]


def _apply_defaults(schema: dict[str, Any], value: Any) -> Any:
    """Applies OpenAPI defaults the way the apiserver does (objects that are present only)."""
    if schema.get("type") != "object" or not isinstance(value, dict):
        return value
    for name, sub in (schema.get("properties") or {}).items():
        if name not in value and "default" in sub:
            value[name] = sub["default"]
        if name not in value and sub.get("properties") and not sub.get("required"):
            value[name] = {}  # so nested defaults can be compared below
        if name in value:
            value[name] = _apply_defaults(sub, value[name])
    return value


def _every_property_described(schema: dict[str, Any], path: str) -> list[str]:
    missing = [] if schema.get("description") else [path]
    for name, sub in (schema.get("properties") or {}).items():
        missing += _every_property_described(sub, f"{path}.{name}")
    if "items" in schema:
        missing += [
            m
            for m in _every_property_described(schema["items"], f"{path}[]")
            if m != f"{path}[]" or schema["items"].get("type") == "object"
        ]
    return missing


def test_schema_defaults_equal_model_defaults() -> None:
    obj = {
        "metadata": {"name": "p", "namespace": "ns"},
        "spec": {"selector": {"matchLabels": {"app": "web"}}},
    }
    defaulted = {
        "metadata": obj["metadata"],
        "spec": _apply_defaults(_spec_schema(), yaml.safe_load(yaml.safe_dump(obj["spec"]))),
    }
    # Empty objects the walk created for comparison are harmless to the model.
    assert parse_policy(defaulted) == parse_policy(obj)


def test_every_field_has_a_description() -> None:
    crd = yaml.safe_load(CRD.read_text())
    root = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    missing = [m for m in _every_property_described(root, "") if m not in (".metadata",)]
    assert missing == []


def test_field_reference_is_generated_from_the_current_crd() -> None:
    import subprocess
    import sys

    from policies import REPO

    proc = subprocess.run(
        [sys.executable, str(REPO / "hack" / "gen_crd_reference.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
