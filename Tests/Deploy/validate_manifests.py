#!/usr/bin/env python3
"""Offline validation of rendered manifests (`kubectl kustomize ... | validate_manifests.py -`).

Built-in kinds are checked by kubernetes-validate (the API's own OpenAPI schemas, strict: unknown fields are errors).
Custom resources are checked against the openAPIV3Schema of their CustomResourceDefinition when the stream holds
it (Signet's Certificate), or against a schema file given with --schema (Istio's Gateway, whose CRD is not
vendored). A document nothing can check is an error, so nothing passes unexamined. Exit status 1 on any failure.
"""
import argparse
import copy
import json
import sys

import jsonschema
import kubernetes_validate
import yaml


def structural_to_json_schema(schema):
    """A CRD's structural schema as JSON Schema: x-kubernetes-* extensions dropped, and objects with declared
    properties closed (the API server prunes unknown fields; here they are reported instead)."""
    schema = copy.deepcopy(schema)

    def walk(node):
        if not isinstance(node, dict):
            return node
        for key in [k for k in node if k.startswith("x-kubernetes-")]:
            node.pop(key)
        if node.get("type") == "object" and "properties" in node and "additionalProperties" not in node:
            node["additionalProperties"] = False
        for key in ("properties",):
            if key in node:
                node[key] = {name: walk(value) for name, value in node[key].items()}
        for key in ("items", "additionalProperties"):
            if isinstance(node.get(key), dict):
                node[key] = walk(node[key])
        return node

    walked = walk(schema)
    # metadata is an ObjectMeta, checked by the API server itself.
    if "properties" in walked and "metadata" in walked["properties"]:
        walked["properties"]["metadata"] = {"type": "object"}
    return walked


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("file", help="rendered manifests, or - for stdin")
    parser.add_argument("--kubernetes-version", default="1.31.0")
    parser.add_argument("--schema", action="append", default=[], help="apiVersion/Kind=path.json[#Kind] for kinds without a CRD here")
    options = parser.parse_args()

    text = sys.stdin.read() if options.file == "-" else open(options.file).read()
    documents = [d for d in yaml.safe_load_all(text) if d]
    schemas = {}  # apiVersion/Kind -> (schema, where it came from)
    for entry in options.schema:
        key, _, path = entry.partition("=")
        path, _, part = path.partition("#")  # file.json#Kind: one of several schemas sharing the file's definitions
        with open(path) as f:
            schema = json.load(f)
        if part:
            schema = dict(schema[part], definitions=schema.get("definitions", {}))
        schemas[key] = (schema, path)
    for document in documents:
        if document.get("kind") == "CustomResourceDefinition":
            spec = document["spec"]
            for version in spec["versions"]:
                if version.get("served"):
                    schemas[f'{spec["group"]}/{version["name"]}/{spec["names"]["kind"]}'] = (structural_to_json_schema(
                        version["schema"]["openAPIV3Schema"]), f'the CRD {document["metadata"]["name"]}')

    failures = 0
    for document in documents:
        kind, api_version = document.get("kind"), document.get("apiVersion")
        name = f'{kind} {(document.get("metadata") or {}).get("namespace", "")}/{(document.get("metadata") or {}).get("name")}'
        try:
            if f"{api_version}/{kind}" in schemas:
                schema, how = schemas[f"{api_version}/{kind}"]
                jsonschema.validate(document, schema)
            else:
                kubernetes_validate.validate(document, options.kubernetes_version, strict=True)
                how = f"Kubernetes {options.kubernetes_version}"
            print(f"ok      {name} ({how})")
        except (jsonschema.ValidationError, kubernetes_validate.ValidationError) as error:
            failures += 1
            path = "/".join(str(p) for p in getattr(error, "absolute_path", []) or getattr(getattr(error, "caught", None), "absolute_path", []))
            print(f"INVALID {name}: {getattr(error, 'message', error)} at {path or '(root)'}")
        except kubernetes_validate.SchemaNotFoundError as error:
            failures += 1
            print(f"UNCHECKED {name}: {error.message}")
    print(f"{len(documents)} documents, {failures} failing")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
