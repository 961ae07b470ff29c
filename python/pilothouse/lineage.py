"""Lineage: where a version came from and where it went.

This module owns :class:`Lineage`, built from the registry's lineage record of one version:
the graph (nodes for the version, its run, the run's code commit and environment, the
training dataset, parent and child versions, deployments; edges between them), its tables
(a one-line description of each node, pandas tables of nodes, edges, params and metric
history) and its notebook view, and the export as OpenLineage run events.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pilothouse import _core, _html
from pilothouse.records import lineage_dict, time_of

__all__ = ["Lineage"]


class Lineage:
    """Where a version came from and where it went, as a graph and as tables.

    ``nodes`` are dicts with ``id``, ``kind`` (version, run, dataset, code, environment,
    deployment) and attributes; ``edges`` are ``(source, target, relation)``.
    """

    def __init__(self, record: dict[str, Any]) -> None:
        self.record = record
        self.version: dict[str, Any] = record["version"]
        self.run: dict[str, Any] | None = record.get("run")
        self.dataset: dict[str, Any] | None = record.get("dataset")
        self.parents: list[dict[str, Any]] = record.get("parents", [])
        self.children: list[str] = record.get("children", [])
        self.deployments: list[Any] = record.get("deployments", [])
        self.nodes: list[dict[str, Any]] = []
        self.edges: list[tuple[str, str, str]] = []
        self._build()

    @classmethod
    def _from(cls, record: _core.LineageRecord) -> Lineage:
        return cls(lineage_dict(record))

    def _build(self) -> None:
        v = self.version
        me = v["uri"]
        self.nodes.append({"id": me, "kind": "version", "sha256": v["sha256"]})
        if self.run:
            run_id = f"run:{self.run['id']}"
            code = self.run.get("code") or {}
            self.nodes.append(
                {
                    "id": run_id,
                    "kind": "run",
                    "name": self.run["name"],
                    "experiment": self.run["experiment"],
                    "status": self.run.get("status"),
                    "git_commit": code.get("git_commit"),
                    "git_dirty": code.get("git_dirty"),
                    "started_at": time_of(self.run.get("started_at")),
                    "ended_at": time_of(self.run.get("ended_at")),
                    "params": self.run["params"],
                    "metrics": self.run["metrics"],
                }
            )
            self.edges.append((run_id, me, "produced"))
            if code.get("git_commit"):
                code_id = f"git:{code['git_commit']}"
                self.nodes.append({"id": code_id, "kind": "code", **code})
                self.edges.append((code_id, run_id, "ran"))
            env_id = f"env:{self.run['id']}"
            self.nodes.append(
                {"id": env_id, "kind": "environment", **(self.run["environment"] or {})}
            )
            self.edges.append((env_id, run_id, "hosted"))
        if self.dataset:
            ds = f"dataset:{self.dataset['fingerprint']}"
            self.nodes.append({"id": ds, "kind": "dataset", "rows": self.dataset["rows"]})
            self.edges.append((ds, self.nodes[1]["id"] if self.run else me, "trained"))
            for other in self.dataset.get("versions", []):
                if other != me:
                    self.nodes.append({"id": other, "kind": "version"})
                    self.edges.append((ds, other, "trained"))
        child = me
        for parent in self.parents:
            self.nodes.append({"id": parent["uri"], "kind": "version", "sha256": parent["sha256"]})
            self.edges.append((parent["uri"], child, "retrained_into"))
            child = parent["uri"]
        for c in self.children:
            self.nodes.append({"id": c, "kind": "version"})
            self.edges.append((me, c, "retrained_into"))
        for d in self.deployments:
            self.nodes.append({"id": f"deployment:{d}", "kind": "deployment"})
            self.edges.append((me, f"deployment:{d}", "serves"))

    @property
    def upstream(self) -> list[dict[str, Any]]:
        targets = {self.version["uri"]}
        found: list[dict[str, Any]] = []
        changed = True
        while changed:
            changed = False
            for s, t, _ in self.edges:
                if t in targets and s not in targets:
                    targets.add(s)
                    changed = True
        for n in self.nodes:
            if n["id"] in targets and n["id"] != self.version["uri"]:
                found.append(n)
        return found

    def details(self, node: Mapping[str, Any]) -> str:
        """A node in one line: a run's name, experiment, status and code commit; a
        dataset's rows; a version's hash (and, for this version, when and by whom)."""
        kind = node.get("kind")
        parts: list[str] = []
        if kind == "run":
            parts.append(node.get("name") or "(unnamed run)")
            parts.append(f"experiment {node.get('experiment') or '—'}")
            parts.append(node.get("status") or "—")
            commit = node.get("git_commit")
            dirty = " (uncommitted changes)" if node.get("git_dirty") else ""
            parts.append(f"commit {commit[:12]}{dirty}" if commit else "no git commit")
        elif kind == "code":
            dirty = " (uncommitted changes)" if node.get("git_dirty") else ""
            parts.append(f"commit {node.get('git_commit')}{dirty}")
            if node.get("path"):
                parts.append(str(node["path"]))
        elif kind == "dataset":
            parts.append(f"{node.get('rows'):,} rows" if node.get("rows") is not None else "")
        elif kind == "environment":
            python = node.get("python")
            if python:
                parts.append(f"{node.get('implementation') or 'Python'} {python}")
            if node.get("platform"):
                parts.append(str(node["platform"]))
        elif kind == "version":
            if node.get("sha256"):
                parts.append(f"sha256 {node['sha256'][:12]}")
            if node["id"] == self.version["uri"]:
                created = time_of(self.version.get("created_at"))
                if created is not None:
                    by = self.version.get("created_by") or "—"
                    parts.append(f"created {created:%Y-%m-%d %H:%M} UTC by {by}")
                if self.version.get("aliases"):
                    parts.append("aliases " + " ".join(self.version["aliases"]))
        return ", ".join(p for p in parts if p)

    def summary(self) -> list[dict[str, str]]:
        """One row per node: ``id``, ``kind`` and ``details`` (see :meth:`details`)."""
        return [{"id": n["id"], "kind": n["kind"], "details": self.details(n)} for n in self.nodes]

    def tables(self) -> dict[str, Any]:
        """The graph as pandas tables: ``nodes`` (with a run's name, experiment, status and
        git commit, and a ``details`` line for every node), ``edges``, ``params``,
        ``metrics``."""
        import pandas as pd

        params = (self.run or {}).get("params", {})
        history = (self.run or {}).get("metric_history", {})
        return {
            "nodes": pd.DataFrame(
                [
                    {
                        "id": n["id"],
                        "kind": n["kind"],
                        **{k: n.get(k) for k in ("name", "experiment", "status", "git_commit")},
                        "details": self.details(n),
                    }
                    for n in self.nodes
                ],
                columns=["id", "kind", "name", "experiment", "status", "git_commit", "details"],
            ),
            "edges": pd.DataFrame(self.edges, columns=["source", "target", "relation"]),
            "params": pd.DataFrame(sorted(params.items()), columns=["key", "value"]),
            "metrics": pd.DataFrame(
                [
                    {"key": k, "step": p["step"], "value": p["value"], "at": time_of(p["at"])}
                    for k, points in history.items()
                    for p in points
                ],
                columns=["key", "step", "value", "at"],
            ),
        }

    def to_openlineage(self, namespace: str = "pilothouse") -> list[dict[str, Any]]:
        """OpenLineage run events (START and COMPLETE) for Marquez and similar."""
        run = self.run or {}
        run_id = run.get("id") or self.version["sha256"][:32]
        uid = f"{run_id[:8]}-{run_id[8:12]}-{run_id[12:16]}-{run_id[16:20]}-{run_id[20:32]}"
        job = {
            "namespace": namespace,
            "name": f"{run.get('experiment', 'registry')}.{run.get('name') or 'log_model'}",
        }
        producer = "https://pilothouse.invalid/registry"
        schema_url = "https://openlineage.io/spec/2-0-2/OpenLineage.json#/definitions/RunEvent"
        inputs = []
        if self.dataset:
            columns = (self.dataset.get("schema") or {}).get("columns", {})
            inputs.append(
                {
                    "namespace": namespace,
                    "name": f"dataset/{self.dataset['fingerprint']}",
                    "facets": {
                        "schema": {
                            "_producer": producer,
                            "_schemaURL": "https://openlineage.io/spec/facets/1-1-1/SchemaDatasetFacet.json",
                            "fields": [{"name": k, "type": t} for k, t in columns.items()],
                        }
                    },
                }
            )
        outputs = [{"namespace": namespace, "name": self.version["uri"], "facets": {}}]
        facets: dict[str, Any] = {}
        if run.get("params"):
            facets["pilothouse_params"] = {
                "_producer": producer,
                "_schemaURL": schema_url,
                **run["params"],
            }
        code = run.get("code") or {}
        if code.get("git_commit"):
            facets["sourceCodeLocation"] = {
                "_producer": producer,
                "_schemaURL": "https://openlineage.io/spec/facets/1-0-1/SourceCodeLocationJobFacet.json",
                "type": "git",
                "url": code.get("path") or "",
                "version": code["git_commit"],
            }
        events = []
        for kind, micros in (("START", run.get("started_at")), ("COMPLETE", run.get("ended_at"))):
            when = time_of(micros) or time_of(self.version["created_at"])
            events.append(
                {
                    "eventType": kind,
                    "eventTime": when.isoformat() if when else None,
                    "producer": producer,
                    "schemaURL": schema_url,
                    "run": {"runId": uid, "facets": facets},
                    "job": job,
                    "inputs": inputs,
                    "outputs": outputs if kind == "COMPLETE" else [],
                }
            )
        return events

    def _repr_html_(self) -> str:
        run = next((n for n in self.nodes if n["kind"] == "run"), None)
        nodes = [
            {"node": r["id"], "kind": r["kind"], "details": r["details"]} for r in self.summary()
        ]
        edges = [{"from": s, "relation": r, "to": t} for s, t, r in self.edges]
        return _html.box(
            f"Lineage of {self.version['uri']}",
            _html.Html(f"<br>run: {_html.escape(self.details(run))}") if run is not None else "",
            _html.dict_table(nodes, ("node", "kind", "details")),
            _html.dict_table(edges, ("from", "relation", "to")),
        )

    def __repr__(self) -> str:
        return f"Lineage({self.version['uri']!r}, nodes={len(self.nodes)}, edges={len(self.edges)})"
