#!/usr/bin/env python3
"""A test double of the Kubernetes API server, for the parts Signet and kubectl use.

It speaks the real REST protocol:
- HTTPS with its own CA (written to --dir/ca.crt); bearer tokens; 401 and 403 as `v1.Status` bodies: static tokens
  with per-namespace grants, and service-account tokens minted with `"rbac": true`, which are authorized by the
  Roles, ClusterRoles and bindings loaded with `POST /_admin/rbac` (rendered manifests), evaluated as the API
  server's RBAC authorizer does (verbs, API groups, resources and subresources, resourceNames, non-resource URLs;
  discovery open to every authenticated user);
- discovery that real kubectl accepts: /version (reports 1.31, so gcloud's kubectl dispatcher picks a client that
  sends JSON), /api, /apis, /api/v1, /apis/events.k8s.io/v1, namespaces;
- Secrets: get, list (labelSelector equality, fieldSelector metadata.name), create (201; 409 AlreadyExists),
  replace (404 on a missing object; 409 Conflict on a stale resourceVersion; 422 when `type` changes), merge and
  strategic-merge patches (as merge patches: maps merge, null deletes; a resourceVersion in the patch is a
  precondition, 409 when stale), delete; Secret key names and the 1 MiB data limit (422); `kubernetes.io/tls` validation (422
  Invalid with causes); resourceVersion, uid, creationTimestamp, generation;
- watches (`?watch=1&resourceVersion=&allowWatchBookmarks=true&timeoutSeconds=`) as chunked JSON lines, with
  BOOKMARK events and, for a resourceVersion older than the kept history, a single ERROR event (410 Expired);
- Events (events.k8s.io/v1 with its validation, and core/v1);
- the same CRUD, watches and conflicts for Pods (stored, never run), Leases (coordination.k8s.io/v1), Istio Gateways (networking.istio.io/v1)
  and custom resources: applying a CustomResourceDefinition (apiextensions.k8s.io/v1) serves its resources, with
  the status subresource (`/status` writes only status, the main endpoint ignores it, generation counts spec
  changes) and server-side printing of its additionalPrinterColumns (the Table kubectl asks for);
- service-account tokens: `POST /_admin/token` mints an RS256 JWT as the API server would (projected, audience-bound,
  with the kubernetes.io claims), usable as a bearer token here; TokenReview (authentication.k8s.io/v1) checks
  them; `/.well-known/openid-configuration` and `/openid/v1/jwks` publish the key for offline validation.
Faults through `POST /_admin/faults`: latency_ms, conflict_every (a 409 for every Nth write), error_every (500),
hang_every (no answer), hang_names (no answer to creates and updates of objects with these names), down (503 for everything),
tokenreview_without_audiences (TokenReview answers lack status.audiences), and `POST /_admin/close-watches`, `POST /_admin/compact`.
`GET /_admin/stats` counts requests by verb and answer, lists by resource and namespace, watches, and watches answered
410 Expired.

Usage: kube_double.py --dir DIR [--port 0] [--token TOKEN=NS1,NS2|*] ...
It prints `READY <port>` on stdout once it listens.
"""
import argparse
import base64
import copy
import datetime
import http.server
import json
import os
import signal
import sys
import threading
import time
import urllib.parse
import uuid

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Doubles"))
import loopback_https  # noqa: E402  (shared with the other doubles)

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

HISTORY = 1000  # watch events kept; older resourceVersions get 410 Expired
ISSUER = "https://kubernetes.default.svc.cluster.local"
API_AUDIENCE = "https://kubernetes.default.svc.cluster.local"


class Resource:
    """One kind of object the double serves: where it lives in the REST tree and how it behaves."""

    def __init__(self, group, version, plural, kind, namespaced=True, singular=None, short_names=(), status=False,
                 columns=(), verbs=("create", "delete", "get", "list", "patch", "update", "watch"), categories=()):
        self.group, self.version, self.plural, self.kind = group, version, plural, kind
        self.namespaced, self.status, self.columns, self.verbs = namespaced, status, list(columns), list(verbs)
        self.singular = singular or kind.lower()
        self.short_names, self.categories = list(short_names), list(categories)

    @property
    def api_version(self):
        return f"{self.group}/{self.version}" if self.group else self.version

    def discovery(self):
        entry = {"name": self.plural, "singularName": self.singular, "namespaced": self.namespaced, "kind": self.kind,
                 "verbs": self.verbs}
        if self.short_names:
            entry["shortNames"] = self.short_names
        if self.categories:
            entry["categories"] = self.categories
        return entry


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def now_rfc3339() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class HTTPProblem(Exception):
    def __init__(self, code, reason, message, details=None):
        self.code, self.reason, self.message, self.details = code, reason, message, details or {}


class Cluster:
    """Objects, history and faults, shared by the request threads."""

    def __init__(self, tokens):
        self.lock = threading.Condition()
        self.tokens = tokens  # token -> set of namespaces, or {"*"}
        self.objects = {}  # (group, plural, namespace, name) -> object
        self.resources = {(r.group, r.plural): r for r in [
            Resource("", "v1", "secrets", "Secret"),
            Resource("", "v1", "pods", "Pod", short_names=["po"]),
            Resource("coordination.k8s.io", "v1", "leases", "Lease"),
            Resource("networking.istio.io", "v1", "gateways", "Gateway", short_names=["gw"], categories=["istio-io", "networking-istio-io"]),
            Resource("apiextensions.k8s.io", "v1", "customresourcedefinitions", "CustomResourceDefinition", namespaced=False,
                     short_names=["crd", "crds"]),
            # Kubernetes' CSR API: cluster-scoped, with /status (the signer writes the certificate) and /approval
            # (kubectl certificate approve|deny writes the Approved or Denied condition).
            Resource("certificates.k8s.io", "v1", "certificatesigningrequests", "CertificateSigningRequest", namespaced=False,
                     short_names=["csr"], status=True, columns=[
                         {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
                         {"name": "SignerName", "type": "string", "jsonPath": ".spec.signerName"},
                         {"name": "Requestor", "type": "string", "jsonPath": ".spec.username"},
                         {"name": "RequestedDuration", "type": "string", "jsonPath": ".spec.expirationSeconds"},
                         {"name": "Condition", "type": "string", "jsonPath": ".status.conditions[*].type"}]),
        ]}
        self.signing_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.key_id = uuid.uuid4().hex[:16]
        self.events = []  # Event objects
        self.version = 100
        self.history = []  # (resourceVersion int, type, namespace, object)
        self.compacted_before = 0
        self.faults = {"latency_ms": 0, "conflict_every": 0, "error_every": 0, "hang_every": 0, "down": False, "hang_names": [],
                       # an API server that answers TokenReviews without status.audiences (one that ignores spec.audiences)
                       "tokenreview_without_audiences": False}
        self.write_counter = 0
        self.stats = {"requests": {}, "conflicts_injected": 0, "errors_injected": 0, "watches": 0}
        self.watch_generation = 0  # bumped to close every open watch
        self.revoked = set()  # jti of tokens minted as already invalidated (a deleted pod's)
        # RBAC, as POST /_admin/rbac loads it from rendered manifests: what tokens minted with "rbac": true may do.
        self.roles = {}  # (namespace, name) -> rules
        self.cluster_roles = {}  # name -> rules
        self.role_bindings = []  # RoleBinding objects
        self.cluster_role_bindings = []

    def next_version(self) -> int:
        self.version += 1
        return self.version

    def record(self, kind, namespace, obj, resource=("", "secrets")):
        if kind in ("ADDED", "MODIFIED"):  # writes that took effect, by object: what "written once" is counted by
            writes = self.stats.setdefault("writes", {})
            key = f'{resource[1]}/{namespace}/{obj["metadata"]["name"]}'
            writes[key] = writes.get(key, 0) + 1
        self.history.append((int(obj["metadata"]["resourceVersion"]), kind, namespace, copy.deepcopy(obj), resource))
        if len(self.history) > HISTORY:
            dropped = self.history.pop(0)
            self.compacted_before = dropped[0] + 1
        self.lock.notify_all()


def status(code, reason, message, details=None):
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure" if code >= 400 else "Success",
            "message": message, "reason": reason, "details": details or {}, "code": code}


def validate_secret(secret, name):
    causes = []
    data = secret.get("data") or {}
    total = 0
    for key, value in data.items():
        # The API server's rules for Secret keys: at most 253 of [-._a-zA-Z0-9], not "." or "..".
        if not key or len(key) > 253 or key in (".", "..") or not all(c.isascii() and (c.isalnum() or c in "-._") for c in key):
            causes.append({"reason": "FieldValueInvalid", "message": "a valid config key must consist of alphanumeric characters, '-', '_' or '.'",
                           "field": f"data[{key}]"})
        try:
            total += len(base64.b64decode(value, validate=True))
        except Exception:
            causes.append({"reason": "FieldValueInvalid", "message": "illegal base64 data", "field": f"data[{key}]"})
    if total > 1024 * 1024:
        causes.append({"reason": "FieldValueTooLong", "message": "Too long: must have at most 1048576 bytes", "field": "data"})
    if secret.get("type") == "kubernetes.io/tls":
        for key in ("tls.crt", "tls.key"):
            if key not in data:
                causes.append({"reason": "FieldValueRequired", "message": "Required value", "field": f"data[{key}]"})
    if causes:
        message = f'Secret "{name}" is invalid: ' + ", ".join(f'{c["field"]}: {c["message"]}' for c in causes)
        raise HTTPProblem(422, "Invalid", message, {"name": name, "kind": "Secret", "causes": causes})


def merge(target, patch):
    """RFC 7386 merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge(result.get(key), value)
    return result


def selected(obj, label_selector, field_selector):
    labels = obj["metadata"].get("labels") or {}
    for term in filter(None, (label_selector or "").split(",")):
        if "!=" in term:
            key, value = term.split("!=", 1)
            if labels.get(key) == value:
                return False
        elif "=" in term:
            key, value = term.replace("==", "=").split("=", 1)
            if labels.get(key) != value:
                return False
        elif labels.get(term) is None:
            return False
    for term in filter(None, (field_selector or "").split(",")):
        key, value = term.replace("==", "=").split("=", 1)
        if key == "metadata.name" and obj["metadata"]["name"] != value:
            return False
        if key == "metadata.namespace" and obj["metadata"].get("namespace") != value:
            return False
    return True


def json_path(obj, path):
    """The subset of kubectl's JSONPath that printer columns use: `.a.b`, `.list[0]`, `.list[*].f` (joined with
    commas, as the CSR's Condition column shows), `.list[?(@.k=="v")].f`."""
    import re
    current = [obj]
    every = False
    for token in re.findall(r'\.([A-Za-z0-9_-]+)|\[(\d+|\*)\]|\[\?\(@\.([A-Za-z0-9_]+)==["\']([^"\']*)["\']\)\]', path):
        field, index, key, value = token
        following = []
        for item in current:
            if field and isinstance(item, dict) and field in item:
                following.append(item[field])
            elif index == "*" and isinstance(item, list):
                every = True
                following.extend(item)
            elif index and index != "*" and isinstance(item, list) and int(index) < len(item):
                following.append(item[int(index)])
            elif key and isinstance(item, list):
                following.extend(e for e in item if isinstance(e, dict) and str(e.get(key)) == value)
        current = following
    if every:
        return ",".join(str(c) for c in current) if current else None
    return current[0] if current else None


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "KubernetesDouble/1.0"
    disable_nagle_algorithm = True
    cluster: Cluster = None

    def log_message(self, format, *args):
        pass

    # -- plumbing ---------------------------------------------------------------------------------------------
    def raw_body(self):
        """The request's body, read once: also when an answer comes before the handler wants it (a fault), so the
        connection stays in step for the next request, as a real API server's does."""
        if getattr(self, "_raw_body", None) is None:
            length = int(self.headers.get("Content-Length") or 0)
            self._raw_body = self.rfile.read(length) if length else b""
        return self._raw_body

    def read_body(self):
        raw = self.raw_body()
        if not raw:
            return None
        if raw[:4] == b"k8s\x00":
            raise HTTPProblem(415, "UnsupportedMediaType", "this double speaks JSON only")
        try:
            return json.loads(raw)
        except ValueError as error:
            raise HTTPProblem(400, "BadRequest", f"the body is not JSON: {error}")

    def answer(self, code, payload):
        data = json.dumps(payload).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Audit-Id", str(uuid.uuid4()))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        self.route("GET")

    def do_POST(self):
        self.route("POST")

    def do_PUT(self):
        self.route("PUT")

    def do_PATCH(self):
        self.route("PATCH")

    def do_DELETE(self):
        self.route("DELETE")

    def route(self, method):
        url = urllib.parse.urlsplit(self.path)
        parts = [p for p in url.path.split("/") if p]
        query = {k: v[-1] for k, v in urllib.parse.parse_qs(url.query).items()}
        cluster = self.cluster
        try:
            self._raw_body = None
            self.raw_body()
            if parts[:1] == ["_admin"]:
                return self.admin(method, parts[1:])
            with cluster.lock:
                faults = dict(cluster.faults)
                key = f"{method} {'/'.join(p if i < 4 else '*' for i, p in enumerate(parts[:5]))}"
                cluster.stats["requests"][key] = cluster.stats["requests"].get(key, 0) + 1
            if faults["down"]:
                raise HTTPProblem(503, "ServiceUnavailable", "the server is currently unable to handle the request")
            if faults["latency_ms"]:
                time.sleep(faults["latency_ms"] / 1000)
            if parts == [".well-known", "openid-configuration"]:
                return self.answer(200, {"issuer": ISSUER, "jwks_uri": f"https://127.0.0.1:{self.server.server_address[1]}/openid/v1/jwks",
                                         "response_types_supported": ["id_token"], "subject_types_supported": ["public"],
                                         "id_token_signing_alg_values_supported": ["RS256"]})
            if parts == ["openid", "v1", "jwks"]:
                return self.answer(200, {"keys": [self.jwk()]})
            namespace = self.authorize(parts)
            if parts in (["version"], ["version", ""]):
                return self.answer(200, {"major": "1", "minor": "31", "gitVersion": "v1.31.4", "platform": "linux/amd64"})
            if parts == ["api"]:
                return self.answer(200, {"kind": "APIVersions", "versions": ["v1"],
                                         "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}]})
            if parts == ["apis"]:
                return self.answer(200, {"kind": "APIGroupList", "apiVersion": "v1", "groups": self.groups()})
            if parts == ["api", "v1"]:
                verbs = ["create", "delete", "get", "list", "patch", "update", "watch"]
                return self.answer(200, {"kind": "APIResourceList", "groupVersion": "v1", "resources": [
                    {"name": "secrets", "singularName": "secret", "namespaced": True, "kind": "Secret", "verbs": verbs},
                    {"name": "pods", "singularName": "pod", "namespaced": True, "kind": "Pod", "verbs": verbs, "shortNames": ["po"]},
                    {"name": "events", "singularName": "event", "namespaced": True, "kind": "Event", "verbs": verbs, "shortNames": ["ev"]},
                    {"name": "namespaces", "singularName": "namespace", "namespaced": False, "kind": "Namespace", "verbs": ["get", "list"], "shortNames": ["ns"]},
                ]})
            if parts == ["apis", "events.k8s.io", "v1"]:
                return self.answer(200, {"kind": "APIResourceList", "groupVersion": "events.k8s.io/v1", "resources": [
                    {"name": "events", "singularName": "event", "namespaced": True, "kind": "Event", "verbs": ["create", "get", "list"], "shortNames": ["ev"]}]})
            if parts == ["apis", "authentication.k8s.io", "v1"]:
                return self.answer(200, {"kind": "APIResourceList", "groupVersion": "authentication.k8s.io/v1", "resources": [
                    {"name": "tokenreviews", "singularName": "tokenreview", "namespaced": False, "kind": "TokenReview", "verbs": ["create"]}]})
            if parts == ["apis", "authentication.k8s.io", "v1", "tokenreviews"] and method == "POST":
                return self.token_review()
            if len(parts) == 3 and parts[0] == "apis":
                with cluster.lock:
                    resources = [r.discovery() for r in cluster.resources.values() if r.group == parts[1] and r.version == parts[2]]
                if resources:
                    return self.answer(200, {"kind": "APIResourceList", "groupVersion": f"{parts[1]}/{parts[2]}", "resources": resources})
            if parts[:3] == ["api", "v1", "namespaces"] and len(parts) == 4 and method == "GET":
                return self.answer(200, {"kind": "Namespace", "apiVersion": "v1", "metadata": {"name": parts[3]}, "status": {"phase": "Active"}})
            if (parts[:3] == ["apis", "events.k8s.io", "v1"] and parts[3:4] == ["namespaces"] and parts[5:] == ["events"]) or \
                    (parts[:3] == ["api", "v1", "namespaces"] and parts[4:] == ["events"]):
                return self.events(method, namespace, parts[0] == "apis", query)
            located = self.locate(parts)
            if located is not None:
                resource, namespace, name, subresource = located
                if name is None:
                    if method == "GET":
                        return self.collection(resource, namespace, query)
                    if method == "POST":
                        return self.create(resource, namespace, faults)
                    raise HTTPProblem(405, "MethodNotAllowed", f"{method} is not supported")
                return self.item(resource, method, namespace, name, subresource, faults)
            raise HTTPProblem(404, "NotFound", "the server could not find the requested resource")
        except HTTPProblem as problem:
            self.answer(problem.code, status(problem.code, problem.reason, problem.message, problem.details))
        except (BrokenPipeError, ConnectionResetError):
            pass

    def groups(self):
        versions = {"events.k8s.io": ["v1"], "authentication.k8s.io": ["v1"]}
        with self.cluster.lock:
            for resource in self.cluster.resources.values():
                if resource.group and resource.version not in versions.setdefault(resource.group, []):
                    versions[resource.group].append(resource.version)
        return [{"name": group, "versions": [{"groupVersion": f"{group}/{v}", "version": v} for v in found],
                 "preferredVersion": {"groupVersion": f"{group}/{found[0]}", "version": found[0]}}
                for group, found in sorted(versions.items())]

    def locate(self, parts):
        """(resource, namespace, name, subresource) for a resource path, or None."""
        if parts[:2] == ["api", "v1"]:
            group, version, rest = "", "v1", parts[2:]
        elif parts[:1] == ["apis"] and len(parts) >= 4:
            group, version, rest = parts[1], parts[2], parts[3:]
        else:
            return None
        namespace = None
        if rest[:1] == ["namespaces"] and len(rest) >= 3:
            namespace, rest = rest[1], rest[2:]
        if not rest or len(rest) > 3:
            return None
        with self.cluster.lock:
            resource = self.cluster.resources.get((group, rest[0]))
        if resource is None or resource.version != version:
            return None
        name = rest[1] if len(rest) >= 2 else None
        subresource = rest[2] if len(rest) == 3 else None
        allowed = ("status", "approval") if resource.plural == "certificatesigningrequests" else ("status",)
        if subresource is not None and (subresource not in allowed or not resource.status):
            return None
        if resource.namespaced and namespace is None and name is not None:
            return None
        return resource, namespace, name, subresource

    def authorize(self, parts):
        header = self.headers.get("Authorization") or ""
        token = header[len("Bearer "):] if header.startswith("Bearer ") else None
        grants = self.cluster.tokens.get(token)
        if grants is None and token and token.count(".") == 2:
            claims = self.verify_jwt(token, None)
            if claims is not None:
                grants = self.cluster.tokens.get(claims.get("jti"))
        if grants is None:
            raise HTTPProblem(401, "Unauthorized", "Unauthorized")
        namespace = parts[parts.index("namespaces") + 1] if "namespaces" in parts[:4] and len(parts) > parts.index("namespaces") + 1 else None
        if isinstance(grants, tuple):  # ("rbac", user, groups): evaluated as the API server's RBAC authorizer does
            self.authorize_rbac(grants[1], grants[2], parts, namespace)
            return namespace
        if "*" in grants:
            return namespace
        if namespace is None and parts[:2] in (["api", "v1"], ["apis", "events.k8s.io"]) and len(parts) > 2:
            raise HTTPProblem(403, "Forbidden", f'{parts[2]} is forbidden: User "signet" cannot list resource "{parts[2]}" at the cluster scope')
        if namespace is not None and namespace not in grants and len(parts) > 4:
            resource = parts[4] if parts[0] == "api" else parts[5]
            raise HTTPProblem(403, "Forbidden",
                              f'{resource} is forbidden: User "signet" cannot access resource "{resource}" in API group "" in the namespace "{namespace}"',
                              {"kind": resource})
        return namespace

    # -- RBAC -------------------------------------------------------------------------------------------------------
    DISCOVERY = ("version", "api", "apis", "openapi", "healthz", "readyz", "livez")

    def attributes(self, parts, namespace):
        """(verb, group, resource, name) of a resource request, or (verb, None, path, None) of a non-resource one."""
        method = self.command
        url = urllib.parse.urlsplit(self.path)
        query = {k: v[-1] for k, v in urllib.parse.parse_qs(url.query).items()}
        located = self.locate(parts)
        if located is not None:
            resource, _, name, subresource = located
            group, plural = resource.group, resource.plural + (f"/{subresource}" if subresource else "")
        elif parts[:4] == ["apis", "authentication.k8s.io", "v1", "tokenreviews"]:
            group, plural, name = "authentication.k8s.io", "tokenreviews", None
        elif (parts[:3] == ["apis", "events.k8s.io", "v1"] and parts[3:4] == ["namespaces"]) or (parts[:3] == ["api", "v1", "namespaces"] and parts[4:5] == ["events"]):
            group, plural = ("events.k8s.io" if parts[0] == "apis" else ""), "events"
            name = parts[6] if parts[0] == "apis" and len(parts) > 6 else (parts[5] if parts[0] == "api" and len(parts) > 5 else None)
        elif parts[:3] == ["api", "v1", "namespaces"] and len(parts) == 4:
            group, plural, name = "", "namespaces", parts[3]
        else:
            return ({"GET": "get", "HEAD": "get", "POST": "post", "PUT": "put", "PATCH": "patch", "DELETE": "delete"}.get(method, method.lower()),
                    None, "/" + "/".join(parts), None)
        if method in ("GET", "HEAD"):
            verb = "get" if name else ("watch" if query.get("watch") in ("1", "true") else "list")
        else:
            verb = {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete" if name else "deletecollection"}.get(method, method.lower())
        return verb, group, plural, name

    @staticmethod
    def rule_allows(rule, verb, group, resource, name):
        if group is None:  # a non-resource URL
            urls = rule.get("nonResourceURLs") or []
            return (verb in rule.get("verbs", []) or "*" in rule.get("verbs", [])) and any(
                u == resource or (u.endswith("*") and resource.startswith(u[:-1])) for u in urls)
        if rule.get("nonResourceURLs"):
            return False
        return ((group in rule.get("apiGroups", []) or "*" in rule.get("apiGroups", []))
                and (resource in rule.get("resources", []) or "*" in rule.get("resources", []))
                and (verb in rule.get("verbs", []) or "*" in rule.get("verbs", []))
                and (not rule.get("resourceNames") or (name is not None and name in rule["resourceNames"])))

    @staticmethod
    def binds(binding, user, groups, namespace):
        for subject in binding.get("subjects") or []:
            kind = subject.get("kind")
            if kind == "ServiceAccount" and user == f"system:serviceaccount:{subject.get('namespace', namespace)}:{subject.get('name')}":
                return True
            if kind == "User" and subject.get("name") == user:
                return True
            if kind == "Group" and subject.get("name") in groups:
                return True
        return False

    def authorize_rbac(self, user, groups, parts, namespace):
        verb, group, resource, name = self.attributes(parts, namespace)
        if group is None and (parts[:1] == [] or parts[0] in self.DISCOVERY or parts[:2] in (["openid", "v1"], [".well-known", "openid-configuration"])):
            return  # discovery and the issuer documents are open to every authenticated user (system:discovery)
        cluster = self.cluster
        with cluster.lock:
            rules = []
            for binding in cluster.cluster_role_bindings:
                if self.binds(binding, user, groups, None):
                    rules += cluster.cluster_roles.get(binding["roleRef"]["name"]) or []
            if namespace is not None:
                for binding in cluster.role_bindings:
                    bound_in = binding["metadata"].get("namespace")
                    if bound_in != namespace or not self.binds(binding, user, groups, bound_in):
                        continue
                    reference = binding["roleRef"]
                    rules += (cluster.roles.get((bound_in, reference["name"])) if reference["kind"] == "Role"
                              else cluster.cluster_roles.get(reference["name"])) or []
        if any(self.rule_allows(rule, verb, group, resource, name) for rule in rules):
            return
        cluster.stats["rbac_denied"] = cluster.stats.get("rbac_denied", 0) + 1
        where = f' in the namespace "{namespace}"' if namespace else " at the cluster scope"
        subject = f'{resource} "{name}" is forbidden' if name else f"{resource} is forbidden"
        if group is None:
            raise HTTPProblem(403, "Forbidden", f'forbidden: User "{user}" cannot {verb} path "{resource}"')
        raise HTTPProblem(403, "Forbidden", f'{subject}: User "{user}" cannot {verb} resource "{resource}" in API group "{group}"{where}',
                          {"kind": resource, "name": name} if name else {"kind": resource})

    def load_rbac(self, objects):
        cluster = self.cluster
        for obj in objects:
            kind, metadata = obj.get("kind"), obj.get("metadata") or {}
            if kind == "Role":
                cluster.roles[(metadata.get("namespace"), metadata["name"])] = obj.get("rules") or []
            elif kind == "ClusterRole":
                cluster.cluster_roles[metadata["name"]] = obj.get("rules") or []
            elif kind == "RoleBinding":
                cluster.role_bindings.append(obj)
            elif kind == "ClusterRoleBinding":
                cluster.cluster_role_bindings.append(obj)

    # -- service-account tokens ---------------------------------------------------------------------------------
    def jwk(self):
        numbers = self.cluster.signing_key.public_key().public_numbers()
        def integer(value):
            return b64url(value.to_bytes((value.bit_length() + 7) // 8, "big"))
        return {"use": "sig", "kty": "RSA", "kid": self.cluster.key_id, "alg": "RS256", "n": integer(numbers.n), "e": integer(numbers.e)}

    def mint(self, request):
        now = int(time.time())
        namespace, account = request["namespace"], request["serviceAccount"]
        claims = {"iss": request.get("issuer", ISSUER), "aud": request.get("audiences") or [API_AUDIENCE],
                  "sub": f"system:serviceaccount:{namespace}:{account}", "iat": now, "nbf": now,
                  "exp": now + int(request.get("expirationSeconds", 3600)), "jti": str(uuid.uuid4()),
                  "kubernetes.io": {"namespace": namespace, "serviceaccount": {"name": account, "uid": str(uuid.uuid5(uuid.NAMESPACE_DNS, f"{namespace}/{account}"))},
                                    "pod": {"name": f"{account}-pod", "uid": str(uuid.uuid4())}}}
        header = {"alg": "RS256", "kid": self.cluster.key_id}
        signing_input = b64url(json.dumps(header).encode()) + "." + b64url(json.dumps(claims).encode())
        signature = self.cluster.signing_key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
        token = signing_input + "." + b64url(signature)
        with self.cluster.lock:
            if request.get("rbac"):
                user = claims["sub"]
                self.cluster.tokens[claims["jti"]] = ("rbac", user, {"system:serviceaccounts", f"system:serviceaccounts:{namespace}", "system:authenticated"})
            else:
                self.cluster.tokens[claims["jti"]] = set(request.get("grants") or [namespace])
            if request.get("revoked"):
                self.cluster.revoked.add(claims["jti"])
        return token

    def verify_jwt(self, token, audiences):
        """The claims of a token this double minted, if its signature, time and audience hold; else None."""
        try:
            header_text, claims_text, signature_text = token.split(".")
            self.cluster.signing_key.public_key().verify(b64url_decode(signature_text), f"{header_text}.{claims_text}".encode(),
                                                         padding.PKCS1v15(), hashes.SHA256())
            claims = json.loads(b64url_decode(claims_text))
        except Exception:
            return None
        if claims.get("exp", 0) < time.time() or claims.get("jti") in self.cluster.revoked:
            return None
        if audiences is not None and not set(audiences) & set(claims.get("aud") or []):
            return None
        return claims

    def token_review(self):
        review = self.read_body() or {}
        spec = review.get("spec") or {}
        audiences = spec.get("audiences") or [API_AUDIENCE]
        claims = self.verify_jwt(spec.get("token") or "", audiences)
        review["apiVersion"], review["kind"] = "authentication.k8s.io/v1", "TokenReview"
        review.setdefault("metadata", {})["creationTimestamp"] = None
        if claims is None:
            review["status"] = {"authenticated": False, "error": "[invalid bearer token, service account token has been invalidated]", "user": {}}
        else:
            info = claims["kubernetes.io"]
            namespace, account = info["namespace"], info["serviceaccount"]["name"]
            review["status"] = {"authenticated": True, "audiences": sorted(set(audiences) & set(claims["aud"])), "user": {
                "username": f"system:serviceaccount:{namespace}:{account}", "uid": info["serviceaccount"]["uid"],
                "groups": ["system:serviceaccounts", f"system:serviceaccounts:{namespace}", "system:authenticated"],
                "extra": {"authentication.kubernetes.io/pod-name": [info["pod"]["name"]],
                          "authentication.kubernetes.io/pod-uid": [info["pod"]["uid"]],
                          "authentication.kubernetes.io/credential-id": [f"JTI={claims['jti']}"]}}}
            with self.cluster.lock:
                if self.cluster.faults.get("tokenreview_without_audiences"):
                    review["status"].pop("audiences")
        self.answer(201, review)

    # -- faults on writes -------------------------------------------------------------------------------------
    def write_fault(self, faults, name, plural="secrets", deleting=False):
        with self.cluster.lock:
            self.cluster.write_counter += 1
            count = self.cluster.write_counter
            if faults["conflict_every"] and count % int(faults["conflict_every"]) == 0:
                self.cluster.stats["conflicts_injected"] += 1
                raise HTTPProblem(409, "Conflict", f'Operation cannot be fulfilled on {plural} "{name}": the object has been modified; '
                                                   "please apply your changes to the latest version and try again",
                                  {"name": name, "kind": plural})
            if faults["error_every"] and count % int(faults["error_every"]) == 0:
                self.cluster.stats["errors_injected"] += 1
                raise HTTPProblem(500, "InternalError", "Internal error occurred: etcdserver: request timed out")
            hang = (faults["hang_every"] and count % int(faults["hang_every"]) == 0) or (not deleting and name in (faults.get("hang_names") or []))
            if hang:
                self.cluster.stats["hangs_injected"] = self.cluster.stats.get("hangs_injected", 0) + 1
        if hang:
            time.sleep(60)
            raise HTTPProblem(504, "Timeout", "Timeout: request did not complete within requested timeout")

    # -- objects ----------------------------------------------------------------------------------------------
    def collection(self, resource, namespace, query):
        if query.get("watch") in ("1", "true"):
            return self.watch(resource, namespace, query)
        with self.cluster.lock:
            lists = self.cluster.stats.setdefault("lists", {})
            lists[f"{resource.plural}/{namespace or '*'}"] = lists.get(f"{resource.plural}/{namespace or '*'}", 0) + 1
            items = [copy.deepcopy(o) for (g, p, ns, _), o in sorted(self.cluster.objects.items())
                     if (g, p) == (resource.group, resource.plural) and (namespace is None or ns == namespace)
                     and selected(o, query.get("labelSelector"), query.get("fieldSelector"))]
            version = str(self.cluster.version)
        if resource.columns and "as=Table" in (self.headers.get("Accept") or ""):
            return self.answer(200, self.table(resource, items, version))
        self.answer(200, {"kind": resource.kind + "List", "apiVersion": resource.api_version, "metadata": {"resourceVersion": version}, "items": items})

    def table(self, resource, items, version):
        """meta.k8s.io/v1 Table: server-side printing with the CRD's additionalPrinterColumns."""
        columns = [{"name": "Name", "type": "string", "format": "name", "description": "Name", "priority": 0}] + [
            {"name": c["name"], "type": c.get("type", "string"), "format": c.get("format", ""), "description": c.get("description", ""),
             "priority": c.get("priority", 0)} for c in resource.columns]
        rows = [{"cells": [o["metadata"]["name"]] + [json_path(o, c["jsonPath"]) for c in resource.columns],
                 "object": {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": o["metadata"]}} for o in items]
        return {"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": {"resourceVersion": version}, "columnDefinitions": columns, "rows": rows}

    def create(self, resource, namespace, faults):
        body = self.read_body() or {}
        metadata = body.get("metadata") or {}
        name = metadata.get("name") or (metadata.get("generateName") + uuid.uuid4().hex[:5] if metadata.get("generateName") else None)
        if not name:
            raise HTTPProblem(422, "Invalid", f'{resource.kind} "" is invalid: metadata.name: Required value',
                              {"kind": resource.kind, "causes": [{"reason": "FieldValueRequired", "message": "Required value", "field": "metadata.name"}]})
        self.write_fault(faults, name, resource.plural)
        obj = self.normalise(resource, body, namespace, name)
        self.validate(resource, obj, name)
        if resource.status:
            obj.pop("status", None)
        key = (resource.group, resource.plural, namespace, name)
        with self.cluster.lock:
            if key in self.cluster.objects:
                raise HTTPProblem(409, "AlreadyExists", f'{resource.plural}{"." + resource.group if resource.group else ""} "{name}" already exists',
                                  {"name": name, "group": resource.group, "kind": resource.plural})
            obj["metadata"].update({"uid": str(uuid.uuid4()), "creationTimestamp": now_rfc3339(), "generation": 1,
                                    "resourceVersion": str(self.cluster.next_version())})
            self.cluster.objects[key] = obj
            self.cluster.record("ADDED", namespace, obj, (resource.group, resource.plural))
            if resource.plural == "customresourcedefinitions":
                self.install(obj)
        self.answer(201, obj)

    def normalise(self, resource, body, namespace, name):
        obj = copy.deepcopy(body)
        obj["apiVersion"], obj["kind"] = resource.api_version, resource.kind
        metadata = obj.setdefault("metadata", {})
        metadata["name"] = name
        if resource.namespaced:
            metadata["namespace"] = namespace
        else:
            metadata.pop("namespace", None)
        for field in ("uid", "creationTimestamp", "generation", "managedFields"):
            metadata.pop(field, None)
        if resource.plural == "secrets":
            obj.setdefault("type", "Opaque")
            string_data = obj.pop("stringData", None) or {}
            data = obj.get("data") or {}
            for key, value in string_data.items():
                data[key] = base64.b64encode(value.encode()).decode()
            if data:
                obj["data"] = data
        return obj

    def validate(self, resource, obj, name):
        if resource.plural == "secrets":
            validate_secret(obj, name)
        if resource.plural == "customresourcedefinitions":
            spec = obj.get("spec") or {}
            names = spec.get("names") or {}
            if name != f'{names.get("plural")}.{spec.get("group")}':
                raise HTTPProblem(422, "Invalid", f'CustomResourceDefinition "{name}" is invalid: metadata.name: Invalid value: must be spec.names.plural+"."+spec.group',
                                  {"kind": "CustomResourceDefinition", "name": name})
            if sum(1 for v in spec.get("versions") or [] if v.get("storage")) != 1:
                raise HTTPProblem(422, "Invalid", f'CustomResourceDefinition "{name}" is invalid: spec.versions: Invalid value: must have exactly one version marked as storage version',
                                  {"kind": "CustomResourceDefinition", "name": name})

    def install(self, crd):
        """Serves the custom resource a CRD defines (its served storage version)."""
        spec = crd["spec"]
        names = spec["names"]
        version = next(v for v in spec["versions"] if v.get("storage"))
        self.cluster.resources[(spec["group"], names["plural"])] = Resource(
            spec["group"], version["name"], names["plural"], names["kind"], namespaced=spec.get("scope") == "Namespaced",
            singular=names.get("singular"), short_names=names.get("shortNames", []), categories=names.get("categories", []),
            status="status" in (version.get("subresources") or {}), columns=version.get("additionalPrinterColumns") or [])

    def item(self, resource, method, namespace, name, subresource, faults):
        cluster = self.cluster
        key = (resource.group, resource.plural, namespace, name)
        not_found = HTTPProblem(404, "NotFound", f'{resource.plural}{"." + resource.group if resource.group else ""} "{name}" not found',
                                {"name": name, "group": resource.group, "kind": resource.plural})
        if method == "GET":
            with cluster.lock:
                found = cluster.objects.get(key)
                if found is None:
                    raise not_found
                found = copy.deepcopy(found)
            if resource.columns and subresource is None and "as=Table" in (self.headers.get("Accept") or ""):
                return self.answer(200, self.table(resource, [found], found["metadata"]["resourceVersion"]))
            return self.answer(200, found)
        if method == "DELETE":
            # kubectl sends DeleteOptions as a body: read with every body when the request arrived (raw_body).
            self.write_fault(faults, name, resource.plural, deleting=True)
            with cluster.lock:
                found = cluster.objects.pop(key, None)
                if found is None:
                    raise not_found
                found["metadata"]["resourceVersion"] = str(cluster.next_version())
                cluster.record("DELETED", namespace, found, (resource.group, resource.plural))
            body = status(200, "", "", {"name": name, "kind": resource.plural, "uid": found["metadata"]["uid"]})
            body["status"] = "Success"
            return self.answer(200, body)
        if method not in ("PUT", "PATCH"):
            raise HTTPProblem(405, "MethodNotAllowed", f"{method} is not supported")
        body = self.read_body() or {}
        content_type = (self.headers.get("Content-Type") or "").split(";")[0]
        accepted = ["application/merge-patch+json"] + (["application/strategic-merge-patch+json"] if not resource.group or resource.group in (
            "coordination.k8s.io",) else [])
        if method == "PATCH" and content_type not in accepted:
            raise HTTPProblem(415, "UnsupportedMediaType", "the body of the request was in an unknown format - accepted media types include: "
                              + ", ".join(accepted))
        self.write_fault(faults, name, resource.plural)
        with cluster.lock:
            current = cluster.objects.get(key)
            if current is None:
                raise not_found
            wanted = merge(current, body) if method == "PATCH" else body
            # A resourceVersion in the body is a precondition, for a patch as for a replace.
            expected = (body.get("metadata") or {}).get("resourceVersion") if isinstance(body, dict) else None
            if expected and expected != current["metadata"]["resourceVersion"]:
                raise HTTPProblem(409, "Conflict", f'Operation cannot be fulfilled on {resource.plural}{"." + resource.group if resource.group else ""} "{name}": '
                                  "the object has been modified; please apply your changes to the latest version and try again",
                                  {"name": name, "group": resource.group, "kind": resource.plural})
            updated = self.normalise(resource, wanted, namespace, name)
            if resource.status:
                # The status subresource splits the object: /status writes only status, the main endpoint all but it.
                if subresource in ("status", "approval"):
                    kept = copy.deepcopy(current)
                    kept["status"] = updated.get("status")
                    kept["metadata"]["resourceVersion"] = updated["metadata"].get("resourceVersion")
                    updated = self.normalise(resource, kept, namespace, name)
                elif "status" in current:
                    updated["status"] = current["status"]
                else:
                    updated.pop("status", None)
            if resource.plural == "secrets" and updated.get("type") != current.get("type"):
                raise HTTPProblem(422, "Invalid", f'Secret "{name}" is invalid: type: Invalid value: "{updated.get("type")}": field is immutable',
                                  {"name": name, "kind": "Secret", "causes": [{"reason": "FieldValueInvalid", "message": "field is immutable", "field": "type"}]})
            self.validate(resource, updated, name)
            for field in ("uid", "creationTimestamp"):
                updated["metadata"][field] = current["metadata"][field]
            generation = current["metadata"].get("generation", 1)
            if resource.status and subresource is None and updated.get("spec") != current.get("spec"):
                generation += 1
            updated["metadata"]["generation"] = generation
            updated["metadata"]["resourceVersion"] = str(cluster.next_version())
            cluster.objects[key] = updated
            cluster.record("MODIFIED", namespace, updated, (resource.group, resource.plural))
            if resource.plural == "customresourcedefinitions":
                self.install(updated)
        self.answer(200, updated)

    def watch(self, resource, namespace, query):
        cluster = self.cluster
        kind = (resource.group, resource.plural)
        since = int(query.get("resourceVersion") or 0)
        bookmarks = query.get("allowWatchBookmarks") in ("1", "true")
        deadline = time.time() + float(query.get("timeoutSeconds") or 1800)
        with cluster.lock:
            cluster.stats["watches"] += 1
            generation = cluster.watch_generation
            if since == 0:
                since = cluster.version
            expired = since + 1 < cluster.compacted_before
            if expired:
                cluster.stats["expired_watches"] = cluster.stats.get("expired_watches", 0) + 1
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

        def send(event):
            line = (json.dumps(event) + "\n").encode()
            self.wfile.write(f"{len(line):x}\r\n".encode() + line + b"\r\n")
            self.wfile.flush()

        try:
            if expired:
                send({"type": "ERROR", "object": status(410, "Expired", f"too old resource version: {since} ({cluster.compacted_before})")})
                return
            last_bookmark = time.time()
            while time.time() < deadline:
                with cluster.lock:
                    if cluster.watch_generation != generation:
                        return
                    pending = [(v, k, o) for v, k, ns, o, r in cluster.history
                               if v > since and r == kind and (namespace is None or ns == namespace)
                               and selected(o, query.get("labelSelector"), query.get("fieldSelector"))]
                    # A bookmark may only claim versions already scanned: take the version before waiting, since
                    # events that arrive during the wait are found by the next scan.
                    current = None if pending else cluster.version
                    if not pending:
                        cluster.lock.wait(timeout=0.2)
                for version, event_type, obj in pending:
                    send({"type": event_type, "object": obj})
                    since = version
                if bookmarks and current is not None and time.time() - last_bookmark >= 1:
                    since = max(since, current)
                    send({"type": "BOOKMARK", "object": {"kind": resource.kind, "apiVersion": resource.api_version, "metadata": {"resourceVersion": str(since)}}})
                    last_bookmark = time.time()
        finally:
            try:
                self.wfile.write(b"0\r\n\r\n")
                self.wfile.flush()
            except OSError:
                pass
            self.close_connection = True

    # -- events -----------------------------------------------------------------------------------------------
    def events(self, method, namespace, structured, query):
        cluster = self.cluster
        if method == "GET":
            with cluster.lock:
                items = [e for e in cluster.events if e["metadata"]["namespace"] == namespace]
            return self.answer(200, {"kind": "EventList", "apiVersion": "events.k8s.io/v1" if structured else "v1",
                                     "metadata": {"resourceVersion": str(cluster.version)}, "items": items})
        if method != "POST":
            raise HTTPProblem(405, "MethodNotAllowed", f"{method} is not supported")
        event = self.read_body() or {}
        metadata = event.setdefault("metadata", {})
        if structured:
            causes = [{"reason": "FieldValueRequired", "message": "Required value", "field": field}
                      for field in ("eventTime", "reportingController", "reportingInstance", "action", "reason") if not event.get(field)]
            if event.get("type") not in ("Normal", "Warning"):
                causes.append({"reason": "FieldValueNotSupported", "message": 'supported values: "Normal", "Warning"', "field": "type"})
            if len((event.get("note") or "").encode()) > 1024:  # the API server counts bytes, not characters
                causes.append({"reason": "FieldValueTooLong", "message": "may not be more than 1024 bytes", "field": "note"})
            if causes:
                raise HTTPProblem(422, "Invalid", f'Event "{metadata.get("name") or metadata.get("generateName", "")}" is invalid: '
                                  + ", ".join(f'{c["field"]}: {c["message"]}' for c in causes), {"kind": "Event", "causes": causes})
        with cluster.lock:
            metadata["name"] = metadata.get("name") or (metadata.get("generateName") or "event-") + uuid.uuid4().hex[:5]
            metadata.update({"namespace": namespace, "uid": str(uuid.uuid4()), "creationTimestamp": now_rfc3339(),
                             "resourceVersion": str(cluster.next_version())})
            cluster.events.append(event)
        self.answer(201, event)

    # -- admin ------------------------------------------------------------------------------------------------
    def admin(self, method, parts):
        cluster = self.cluster
        with cluster.lock:
            if parts == ["faults"] and method == "POST":
                cluster.faults.update(self.read_body() or {})
                return self.answer(200, cluster.faults)
            if parts == ["close-watches"] and method == "POST":
                cluster.watch_generation += 1
                cluster.lock.notify_all()
                return self.answer(200, {})
            if parts == ["compact"] and method == "POST":
                # As if other writes happened and etcd compacted past them: every resourceVersion handed out so far,
                # bookmarks included, is too old to resume a watch from. With closeWatches, the open watches end in
                # the same step, so no bookmark can carry a newer version in between.
                cluster.next_version()
                cluster.compacted_before = cluster.version + 1
                if (self.read_body() or {}).get("closeWatches"):
                    cluster.watch_generation += 1
                    cluster.lock.notify_all()
                cluster.history = []
                return self.answer(200, {"compactedBefore": cluster.compacted_before})
            if parts == ["stats"]:
                return self.answer(200, cluster.stats)
            if parts == ["rbac"] and method == "POST":
                objects = (self.read_body() or {}).get("objects") or []
                self.load_rbac(objects)
                return self.answer(200, {"roles": len(cluster.roles), "clusterRoles": len(cluster.cluster_roles),
                                         "roleBindings": len(cluster.role_bindings), "clusterRoleBindings": len(cluster.cluster_role_bindings)})
        if parts == ["token"] and method == "POST":
            return self.answer(200, {"token": self.mint(self.read_body() or {})})
        raise HTTPProblem(404, "NotFound", "unknown admin route")


def main():
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM, signal.SIGINT})
    parser = argparse.ArgumentParser()
    parser.add_argument("--dir", required=True)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--token", action="append", default=[], help="TOKEN=NS1,NS2 or TOKEN=*")
    parser.add_argument("--tls-dns-name", action="append", default=[], help="the only names of the serving certificate")
    arguments = parser.parse_args()
    tokens = {}
    for entry in arguments.token or ["admin=*"]:
        token, _, grants = entry.partition("=")
        tokens[token] = set((grants or "*").split(","))
    Handler.cluster = Cluster(tokens)
    os.makedirs(arguments.dir, exist_ok=True)
    server = loopback_https.serve_https(arguments.dir, arguments.port, Handler, "kubernetes double CA", "kube-apiserver",
                                        arguments.tls_dns_name or None)
    print(f"READY {server.server_address[1]}", flush=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    server.serve_forever()


if __name__ == "__main__":
    main()
