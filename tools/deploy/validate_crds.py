"""Validates the custom resources of deploy/kubernetes/ (KEDA, prometheus-operator) against
their CRDs' schemas, vendored in crd-schemas/ (see its README.md for their origin), strictly:
a field the schema does not list is an error, as `kubernetes-validate --strict` treats the
built-in kinds. The built-in kinds are kubernetes-validate's, and are skipped here; a custom
kind without a vendored schema is an error.

    python validate_crds.py FILE.yaml...
"""

import json
import sys
from pathlib import Path

import jsonschema
import yaml

SCHEMAS = Path(__file__).resolve().parent / "crd-schemas"
CUSTOM_GROUPS = ("keda.sh/", "monitoring.coreos.com/")


def strict(schema):
    """The schema with `additionalProperties: false` wherever it lists properties and neither
    allows other ones nor keeps unknown fields."""
    if isinstance(schema, dict):
        schema = {key: strict(value) for key, value in schema.items()}
        if (
            "properties" in schema
            and "additionalProperties" not in schema
            and not schema.get("x-kubernetes-preserve-unknown-fields")
        ):
            schema["additionalProperties"] = False
        return schema
    if isinstance(schema, list):
        return [strict(item) for item in schema]
    return schema


def schema_for(api_version, kind):
    group, version = api_version.split("/")
    path = SCHEMAS / f"{group}_{kind.lower()}_{version}.json"
    if not path.exists():
        sys.exit(f"no vendored schema for {api_version} {kind} ({path.name})")
    schema = strict(json.loads(path.read_text()))
    # The CRD schema leaves metadata to the API server: a name is the least it needs.
    schema["properties"]["metadata"] = {"type": "object", "required": ["name"]}
    return schema


def main(files):
    failures = checked = 0
    for file in files:
        for document in yaml.safe_load_all(Path(file).read_text()):
            if not document or not document["apiVersion"].startswith(CUSTOM_GROUPS):
                continue
            kind, name = document["kind"], document["metadata"].get("name")
            validator = jsonschema.Draft7Validator(schema_for(document["apiVersion"], kind))
            errors = sorted(validator.iter_errors(document), key=lambda e: list(e.path))
            for error in errors:
                path = ".".join(str(p) for p in error.path) or "(root)"
                print(f"FAIL {file} {kind}/{name} {path}: {error.message}")
            failures += len(errors)
            checked += 1
            if not errors:
                print(f"ok   {file} {kind}/{name}")
    if checked == 0:
        sys.exit("no custom resource found")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main(sys.argv[1:])
