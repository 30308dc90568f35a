"""The `aims` command's topics, each imported only when it runs.

A command loads what it runs: `aims status` imports the status board, not the review pack's
pandas nor the engine's Prefect, and `aims --help` imports no topic at all. Each topic is named
here by where it lives; its help for the listing is read from that module's source (the
`help=` of its Typer, or the command's docstring), so the listing never drifts from it.
"""

from __future__ import annotations

import ast
import functools
import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import typer

HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Topic:
    """`aims NAME`: the Typer app (or command function) `attr` of aims_core/cli/`module`.py."""

    module: str
    attr: str = "app"

    def load(self, name: str) -> click.Command:
        found: Any = getattr(importlib.import_module(f"aims_core.cli.{self.module}"), self.attr)
        if isinstance(found, typer.Typer):
            command: click.Command = typer.main.get_group(found)
        else:
            single = typer.Typer(add_completion=False)
            single.command(name)(found)
            command = typer.main.get_command(single)
        command.name = name
        return command

    @functools.cached_property
    def help(self) -> str:
        """The help the module gives it, read from its source without importing it."""
        tree = ast.parse((HERE / f"{self.module}.py").read_text("utf-8"))
        for node in tree.body:
            if isinstance(node, ast.FunctionDef) and node.name == self.attr:
                return ast.get_docstring(node) or ""
            if (
                isinstance(node, ast.Assign)
                and any(isinstance(t, ast.Name) and t.id == self.attr for t in node.targets)
                and isinstance(node.value, ast.Call)
            ):
                for keyword in node.value.keywords:
                    if keyword.arg == "help" and isinstance(keyword.value, ast.Constant):
                        return str(keyword.value.value)
        return ""


TOPICS: dict[str, Topic] = {
    # Commands first, then topics with commands of their own (as `aims --help` lists them).
    "init": Topic("db_cmd", "init"),
    "approve": Topic("approvals_cmd", "approve"),
    "reject": Topic("approvals_cmd", "reject"),
    "answer": Topic("asks_cmd", "answer"),
    "bridge": Topic("bridge_cmd", "bridge"),
    "up": Topic("up_cmd", "up"),
    "status": Topic("status_cmd", "status"),
    "config": Topic("config_cmd"),
    "db": Topic("db_cmd"),
    "catalog": Topic("catalog_cmd"),
    "soa": Topic("soa_cmd"),
    "org": Topic("org_cmd"),
    "people": Topic("people_cmd"),
    "systems": Topic("systems_cmd"),
    "risks": Topic("risks_cmd"),
    "raci": Topic("raci_cmd"),
    "evidence": Topic("evidence_cmd"),
    "gate": Topic("gate_cmd"),
    "impact": Topic("impact_cmd"),
    "gap": Topic("gap_cmd"),
    "plan": Topic("gap_cmd", "plan_app"),
    "demo": Topic("demo_cmd"),
    "approvals": Topic("approvals_cmd"),
    "asks": Topic("asks_cmd"),
    "notifications": Topic("notifications_cmd"),
    "capa": Topic("capa_cmd"),
    "incident": Topic("incident_cmd"),
    "incidents": Topic("incident_cmd", "incidents_app"),
    "training": Topic("training_cmd"),
    "policy": Topic("policy_cmd"),
    "vendor": Topic("vendor_cmd"),
    "audit": Topic("audit_cmd"),
    "review": Topic("review_cmd"),
    "context": Topic("context_cmd"),
}
