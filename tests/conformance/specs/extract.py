"""Write the parts of Azure's published OpenAPI documents that the conformance test holds our traffic to.

The documents live in Azure/azure-rest-api-specs (MIT, see LICENSE here). Whole, the ones we need
are several megabytes; this keeps, for each document, the operations in `SOURCES` and everything
they reference (definitions, parameters, in this and other documents, and every subtype of a
polymorphic definition), with documentation text (`description`, `summary`, examples) removed.
Every other value is copied unchanged, and the file keeps its upstream path so its relative
`$ref`s resolve as upstream. Each written document names its source in `x-source`.

    python tests/conformance/specs/extract.py --repo PATH_TO_A_CLONE   # rewrites the documents below

`PATH_TO_A_CLONE` is a git clone (a bare mirror will do) that has the commits named in `SOURCES`.
Documents whose source is `TRANSCRIBED` were not available as a clone at their api-version: they
were copied by hand from the upstream file at the named commit (same selection rule) and are only
checked here (`--check`: every `$ref` resolves, every operation in `SOURCES` is present).
"""

from __future__ import annotations

import argparse
import copy
import json
import posixpath
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
UPSTREAM = "Azure/azure-rest-api-specs"
LICENSE = "MIT"
# Documentation-only keys: dropped from the kept documents (they are most of the bytes).
DOC_KEYS = frozenset({"description", "summary", "x-ms-examples", "example", "examples", "externalDocs"})
# Documents outside a source's own folder (common-types) are read at this commit.
COMMON_TYPES_COMMIT = "0bf2827e429188a0590b7e62e7f117e26ad8d1a7"
TRANSCRIBED = "transcribed"

ARM_SUB = "/subscriptions/{subscriptionId}"
ARM_RG = ARM_SUB + "/resourceGroups/{resourceGroupName}"


@dataclass(frozen=True)
class Source:
    path: str  # under the repository root
    commit: str
    operations: dict[str, tuple[str, ...]] = field(default_factory=dict)  # path template -> methods
    how: str = "clone"  # "clone" (extracted by this script) or TRANSCRIBED


WEB = ARM_RG + "/providers/Microsoft.Web"
SITE = WEB + "/sites/{name}"
STORAGE = ARM_RG + "/providers/Microsoft.Storage/storageAccounts/{accountName}"
COSMOS = ARM_RG + "/providers/Microsoft.DocumentDB/databaseAccounts/{accountName}"
DTS = ARM_RG + "/providers/Microsoft.DurableTask/schedulers/{schedulerName}"

# What the providers and the control plane's own set-up call, per api-version the SDKs send.
SOURCES: tuple[Source, ...] = (
    Source(
        "specification/resources/resource-manager/Microsoft.Resources/stable/2025-04-01/resources.json",
        "2e5d83cb6120f521e833f7dfc56f6397592581dd",
        {ARM_SUB + "/resourcegroups/{resourceGroupName}": ("get", "head", "put", "patch", "delete"),
         ARM_SUB + "/resourcegroups": ("get",),
         "/{scope}/providers/Microsoft.Resources/tags/default": ("get", "put", "patch", "delete")},
    ),
    Source(
        "specification/msi/resource-manager/Microsoft.ManagedIdentity/stable/2024-11-30/ManagedIdentity.json",
        "4ac54c397635fa693874b598c993b8bf21b40e07",
        {ARM_RG + "/providers/Microsoft.ManagedIdentity/userAssignedIdentities/{resourceName}":
            ("get", "put", "patch", "delete")},
    ),
    Source(
        "specification/web/resource-manager/Microsoft.Web/stable/2025-05-01/AppServicePlans.json",
        "ea07d31e6b7788f8c62e5c993cb06e85a3f26466",
        {WEB + "/serverfarms/{name}": ("get", "put", "patch", "delete")},
    ),
    Source(
        "specification/web/resource-manager/Microsoft.Web/stable/2025-05-01/WebApps.json",
        "ea07d31e6b7788f8c62e5c993cb06e85a3f26466",
        {SITE: ("get", "put", "patch", "delete"),
         SITE + "/config/appsettings": ("put",),
         SITE + "/config/appsettings/list": ("post",),
         SITE + "/config/publishingcredentials/list": ("post",),
         SITE + "/config/web": ("get", "put", "patch"),
         SITE + "/basicPublishingCredentialsPolicies/scm": ("get", "put"),
         SITE + "/host/default/listkeys": ("post",),
         SITE + "/functions": ("get",),
         SITE + "/functions/{functionName}": ("get",),
         SITE + "/functions/{functionName}/listkeys": ("post",),
         SITE + "/syncfunctiontriggers": ("post",),
         SITE + "/extensions/onedeploy": ("get",),
         SITE + "/restart": ("post",)},
    ),
    Source(
        "specification/iothub/resource-manager/Microsoft.Devices/stable/2023-06-30/iothub.json",
        "8fa9b5051129dd4808c9be1f5b753af226b044db",
        {ARM_RG + "/providers/Microsoft.Devices/IotHubs/{resourceName}": ("get", "put", "patch", "delete"),
         ARM_RG + "/providers/Microsoft.Devices/IotHubs/{resourceName}/IotHubKeys/{keyName}/listkeys": ("post",),
         ARM_RG + "/providers/Microsoft.Devices/IotHubs/{resourceName}/listkeys": ("post",)},
    ),
    Source(
        "specification/eventgrid/resource-manager/Microsoft.EventGrid/stable/2025-02-15/EventGrid.json",
        "8a059231d92b10d87ffc3f18515516e84dae87cc",
        {ARM_RG + "/providers/Microsoft.EventGrid/systemTopics/{systemTopicName}": ("get", "put", "delete"),
         ARM_RG + "/providers/Microsoft.EventGrid/systemTopics/{systemTopicName}/eventSubscriptions/"
                  "{eventSubscriptionName}": ("get", "put", "delete"),
         ARM_RG + "/providers/Microsoft.EventGrid/topics/{topicName}": ("get", "put", "delete"),
         ARM_RG + "/providers/Microsoft.EventGrid/topics/{topicName}/listKeys": ("post",),
         "/{scope}/providers/Microsoft.EventGrid/eventSubscriptions/{eventSubscriptionName}": ("get", "put", "delete")},
    ),
    Source(
        "specification/digitaltwins/resource-manager/Microsoft.DigitalTwins/stable/2023-01-31/digitaltwins.json",
        "71e8a754d34d1af32bf81f23445f286422ca4c40",
        {ARM_RG + "/providers/Microsoft.DigitalTwins/digitalTwinsInstances/{resourceName}": ("get", "put", "delete")},
    ),
    Source(
        "specification/authorization/resource-manager/Microsoft.Authorization/stable/2022-04-01/"
        "authorization-RoleAssignmentsCalls.json",
        "d8bad7cbba37e83cf0c5d2026360d0fd4971b2fe",
        {"/{scope}/providers/Microsoft.Authorization/roleAssignments/{roleAssignmentName}": ("get", "put", "delete"),
         "/{scope}/providers/Microsoft.Authorization/roleAssignments": ("get",)},
    ),
    Source(
        "specification/authorization/resource-manager/Microsoft.Authorization/stable/2022-04-01/"
        "authorization-RoleDefinitionsCalls.json",
        "d8bad7cbba37e83cf0c5d2026360d0fd4971b2fe",
        {"/{scope}/providers/Microsoft.Authorization/roleDefinitions/{roleDefinitionId}": ("get",),
         "/{scope}/providers/Microsoft.Authorization/roleDefinitions": ("get",)},
    ),
    Source(
        "specification/dashboard/resource-manager/Microsoft.Dashboard/stable/2025-08-01/grafana.json",
        "a6ef905ba314503e8cfac82d63a2e790fae7991b",
        {ARM_RG + "/providers/Microsoft.Dashboard/grafana/{workspaceName}": ("get", "put", "patch", "delete")},
    ),
    Source(
        "specification/keyvault/resource-manager/Microsoft.KeyVault/stable/2023-07-01/keyvault.json",
        "b594fd4145904c9bbd018f4a2ddea75c7134aee7",
        {ARM_RG + "/providers/Microsoft.KeyVault/vaults/{vaultName}": ("get", "put", "patch", "delete")},
    ),
    Source(
        "specification/digitaltwins/data-plane/Microsoft.DigitalTwins/stable/2023-10-31/digitaltwins.json",
        "9761b41f0bd362f4200767efd5423d3bed16768f",
        {"/models": ("get", "post"),
         "/models/{id}": ("get", "patch", "delete"),
         "/query": ("post",),
         "/digitaltwins/{id}": ("get", "put", "patch", "delete"),
         "/digitaltwins/{id}/relationships/{relationshipId}": ("get", "put", "patch", "delete"),
         "/digitaltwins/{id}/relationships": ("get",),
         "/digitaltwins/{id}/incomingrelationships": ("get",),
         "/digitaltwins/{id}/telemetry": ("post",),
         "/digitaltwins/{id}/components/{componentPath}": ("get", "patch")},
    ),
    Source(
        "specification/storage/resource-manager/Microsoft.Storage/stable/2026-09-01/openapi.json",
        "01de4524d530f148d60de6b799779c01060ce40b",
        {STORAGE: ("get", "put", "delete"),
         STORAGE + "/listKeys": ("post",),
         STORAGE + "/blobServices/default/containers/{containerName}": ("get", "put", "delete")},
        how=TRANSCRIBED,
    ),
    Source(
        "specification/cosmos-db/resource-manager/Microsoft.DocumentDB/DocumentDB/stable/2026-03-15/openapi.json",
        "2021a6fa165cdc56776be2b45d09ee9481ac76b1",
        {COSMOS: ("get", "put", "delete"),
         COSMOS + "/listKeys": ("post",),
         COSMOS + "/sqlDatabases/{databaseName}": ("get", "put", "delete"),
         COSMOS + "/sqlDatabases/{databaseName}/containers/{containerName}": ("get", "put", "delete")},
        how=TRANSCRIBED,
    ),
    # The control plane's own resources (`install`), reached through the generic resources API.
    Source(
        "specification/operationalinsights/resource-manager/Microsoft.OperationalInsights/stable/2023-09-01/"
        "Workspaces.json",
        "0dcfa37f9e6838328ebfae44ceb216b6ee066949",
        {ARM_SUB + "/resourcegroups/{resourceGroupName}/providers/Microsoft.OperationalInsights/workspaces/"
                   "{workspaceName}": ("get", "put", "delete")},
        how=TRANSCRIBED,
    ),
    Source(
        "specification/applicationinsights/resource-manager/Microsoft.Insights/stable/2020-02-02/components_API.json",
        "0c3c7e2f4f0308a3f7ff3b9443e038a1f3525b8c",
        {ARM_RG + "/providers/Microsoft.Insights/components/{resourceName}": ("get", "put", "delete")},
        how=TRANSCRIBED,
    ),
    Source(
        "specification/durabletask/resource-manager/Microsoft.DurableTask/DurableTask/stable/2025-11-01/durabletask.json",
        "e9cfbef2297619c615e53d8b3f4c1626f831c2ef",
        {DTS: ("get", "put", "delete"),
         DTS + "/taskHubs/{taskHubName}": ("get", "put", "delete")},
        how=TRANSCRIBED,
    ),
)


# --- reading documents -------------------------------------------------------------------------


class Upstream:
    """Documents of the upstream repository, read from a local clone at given commits. A
    transcribed document is read from its kept copy (its own closure is already there; the
    common documents it references are read from the clone, so they keep what it needs)."""

    def __init__(self, repo: Path) -> None:
        self.repo = repo
        self._cache: dict[tuple[str, str], dict[str, Any]] = {}
        for source in SOURCES:
            if source.how == TRANSCRIBED and kept_path(source.path).is_file():
                self._cache[(source.path, source.commit)] = json.loads(kept_path(source.path).read_text())

    def document(self, path: str, commit: str) -> dict[str, Any]:
        key = (path, commit)
        if key not in self._cache:
            text = subprocess.run(["git", "-C", str(self.repo), "show", f"{commit}:{path}"], check=True,
                                  capture_output=True, text=True).stdout
            self._cache[key] = json.loads(text)
        return self._cache[key]


def split_ref(ref: str, current: str) -> tuple[str, str]:
    """(document path, JSON pointer) that `ref` names, from the document `current`."""
    target, _, pointer = ref.partition("#")
    path = posixpath.normpath(posixpath.join(posixpath.dirname(current), target)) if target else current
    return path, pointer


def pointer_parts(pointer: str) -> list[str]:
    return [p.replace("~1", "/").replace("~0", "~") for p in pointer.strip("/").split("/") if p]


def resolve(doc: dict[str, Any], pointer: str) -> Any:
    node: Any = doc
    for part in pointer_parts(pointer):
        node = node[int(part)] if isinstance(node, list) else node[part]
    return node


def refs_in(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str):
            yield ref
        for value in node.values():
            yield from refs_in(value)
    elif isinstance(node, list):
        for value in node:
            yield from refs_in(value)


def strip_docs(node: Any, response: bool = False) -> Any:
    """`node` without documentation text. A response keeps its `description` (Swagger 2.0 requires it)."""
    if isinstance(node, dict):
        out = {}
        for k, v in node.items():
            # A property may itself be called "description": only drop documentation strings.
            documentation = k in DOC_KEYS and (isinstance(v, str) or k in ("x-ms-examples", "examples", "externalDocs"))
            if documentation and not (response and k == "description"):
                continue
            if k == "responses" and isinstance(v, dict):
                out[k] = {code: strip_docs(r, response=True) for code, r in v.items()}
            else:
                out[k] = strip_docs(v)
        return out
    if isinstance(node, list):
        return [strip_docs(v) for v in node]
    return node


# --- selecting ---------------------------------------------------------------------------------


class Extraction:
    """The kept parts of every document reached from the operations of `SOURCES`."""

    def __init__(self, upstream: Upstream) -> None:
        self.upstream = upstream
        self.commit_of: dict[str, str] = {}
        self.kept: dict[str, dict[str, Any]] = {}  # document path -> kept document

    def commit_for(self, path: str, referrer: str | None) -> str:
        if path not in self.commit_of:
            assert referrer is not None
            same_folder = posixpath.dirname(path) == posixpath.dirname(referrer)
            self.commit_of[path] = self.commit_of[referrer] if same_folder else COMMON_TYPES_COMMIT
        return self.commit_of[path]

    def full(self, path: str) -> dict[str, Any]:
        return self.upstream.document(path, self.commit_of[path])

    def out(self, path: str) -> dict[str, Any]:
        if path not in self.kept:
            full = self.full(path)
            self.kept[path] = {
                "swagger": full.get("swagger", "2.0"),
                "info": strip_docs({k: v for k, v in full["info"].items() if k in ("title", "version")}),
                "x-source": {"repository": UPSTREAM, "path": path, "commit": self.commit_of[path],
                             "license": LICENSE, "kept": "operations used and what they reference; no documentation text"},
                "paths": {},
            }
            for key in ("host", "basePath", "schemes", "consumes", "produces", "x-ms-parameterized-host",
                        "securityDefinitions", "security"):
                if key in full:
                    self.kept[path][key] = strip_docs(full[key])
        return self.kept[path]

    def add_source(self, source: Source) -> None:
        self.commit_of[source.path] = source.commit
        full = self.full(source.path)
        out = self.out(source.path)
        for template, methods in source.operations.items():
            item = full["paths"].get(template)
            if item is None:
                raise SystemExit(f"{source.path}@{source.commit}: no path {template}")
            kept_item = out["paths"].setdefault(template, {})
            if "parameters" in item:
                kept_item["parameters"] = strip_docs(item["parameters"])
            for method in methods:
                if method not in item:
                    raise SystemExit(f"{source.path}: {template} has no {method}")
                kept_item[method] = strip_docs(item[method])
            self.follow(source.path, kept_item)

    def follow(self, path: str, node: Any) -> None:
        for ref in refs_in(node):
            self.add_target(*split_ref(ref, path), referrer=path)

    def add_target(self, path: str, pointer: str, referrer: str) -> None:
        self.commit_for(path, referrer)
        parts = pointer_parts(pointer)
        if len(parts) != 2:
            raise SystemExit(f"{referrer}: $ref to {path}#{pointer}: only top-level sections are supported")
        section, name = parts
        out = self.out(path)
        kept_section = out.setdefault(section, {})
        if name in kept_section:
            return
        node = resolve(self.full(path), pointer)
        kept_section[name] = strip_docs(node)
        self.follow(path, node)
        if section == "definitions" and isinstance(node, dict) and "discriminator" in node:
            for sub_name in self.subtypes(path, name):
                self.add_target(path, f"/definitions/{sub_name}", referrer=path)

    def subtypes(self, path: str, base: str) -> list[str]:
        """Definitions of `path` whose `allOf` names `base` (Swagger 2.0 polymorphism)."""
        found = []
        for name, definition in self.full(path).get("definitions", {}).items():
            for part in definition.get("allOf", []) if isinstance(definition, dict) else []:
                ref = part.get("$ref") if isinstance(part, dict) else None
                if isinstance(ref, str) and split_ref(ref, path) == (path, f"/definitions/{base}"):
                    found.append(name)
        return found


# --- checking ----------------------------------------------------------------------------------


def kept_path(path: str) -> Path:
    return HERE / path


def check(sources: tuple[Source, ...] = SOURCES) -> list[str]:
    """Problems with the kept documents: a missing operation, a `$ref` that does not resolve."""
    problems: list[str] = []
    docs: dict[str, dict[str, Any]] = {}
    for file in sorted(HERE.rglob("*.json")):
        docs[file.relative_to(HERE).as_posix()] = json.loads(file.read_text())
    for source in sources:
        doc = docs.get(source.path)
        if doc is None:
            problems.append(f"{source.path}: not kept")
            continue
        if doc.get("x-source", {}).get("commit") != source.commit:
            problems.append(f"{source.path}: kept from {doc.get('x-source', {}).get('commit')}, SOURCES says {source.commit}")
        for template, methods in source.operations.items():
            for method in methods:
                if method not in doc.get("paths", {}).get(template, {}):
                    problems.append(f"{source.path}: {method.upper()} {template} not kept")
    for path, doc in docs.items():
        for ref in refs_in(doc):
            target, pointer = split_ref(ref, path)
            try:
                resolve(docs[target], pointer)
            except (KeyError, IndexError, ValueError):
                problems.append(f"{path}: $ref {ref} does not resolve")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repo", type=Path, help="a clone of Azure/azure-rest-api-specs with the commits in SOURCES")
    parser.add_argument("--check", action="store_true", help="only check the kept documents")
    args = parser.parse_args(argv)
    if not args.check:
        if args.repo is None:
            parser.error("--repo is required unless --check")
        extraction = Extraction(Upstream(args.repo))
        for source in SOURCES:
            if source.how != TRANSCRIBED or kept_path(source.path).is_file():
                extraction.add_source(source)
        for path, doc in extraction.kept.items():
            transcribed = next((s for s in SOURCES if s.path == path and s.how == TRANSCRIBED), None)
            if transcribed is not None:
                doc["x-source"] = json.loads(kept_path(path).read_text())["x-source"]
            file = kept_path(path)
            file.parent.mkdir(parents=True, exist_ok=True)
            file.write_text(json.dumps(sort_sections(doc), indent=1) + "\n")
            print(f"wrote {path} ({len(doc.get('paths', {}))} paths, {len(doc.get('definitions', {}))} definitions)")
    problems = check()
    for problem in problems:
        print(problem, file=sys.stderr)
    return 1 if problems else 0


def sort_sections(doc: dict[str, Any]) -> dict[str, Any]:
    """Stable output: sections in upstream order, their entries sorted by name."""
    out = copy.copy(doc)
    for section in ("paths", "definitions", "parameters", "responses"):
        if section in out:
            out[section] = dict(sorted(out[section].items()))
    return out


if __name__ == "__main__":
    raise SystemExit(main())
