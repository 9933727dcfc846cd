#!/usr/bin/env python3
"""A test double of the Kubernetes API server, for the parts Signet and kubectl use.

It speaks the real REST protocol:
- HTTPS with its own CA (written to --dir/ca.crt); bearer tokens; 401 and 403 as `v1.Status` bodies, with
  per-token namespace grants (RBAC-like refusals);
- discovery that real kubectl accepts: /version (reports 1.31, so gcloud's kubectl dispatcher picks a client that
  sends JSON), /api, /apis, /api/v1, /apis/events.k8s.io/v1, namespaces;
- Secrets: get, list (labelSelector equality, fieldSelector metadata.name), create (201; 409 AlreadyExists),
  replace (404 on a missing object; 409 Conflict on a stale resourceVersion; 422 when `type` changes), merge and
  strategic-merge patches (as merge patches: maps merge, null deletes), delete; `kubernetes.io/tls` validation (422
  Invalid with causes); resourceVersion, uid, creationTimestamp, generation;
- watches (`?watch=1&resourceVersion=&allowWatchBookmarks=true&timeoutSeconds=`) as chunked JSON lines, with
  BOOKMARK events and, for a resourceVersion older than the kept history, a single ERROR event (410 Expired);
- Events (events.k8s.io/v1 with its validation, and core/v1).
Faults through `POST /_admin/faults`: latency_ms, conflict_every (a 409 for every Nth write), error_every (500),
hang_every (no answer), down (503 for everything), and `POST /_admin/close-watches`, `POST /_admin/compact`.
`GET /_admin/stats` counts requests by verb and answer.

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
import socketserver
import ssl
import sys
import threading
import time
import urllib.parse
import uuid

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

HISTORY = 1000  # watch events kept; older resourceVersions get 410 Expired


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
        self.secrets = {}  # (namespace, name) -> object
        self.events = []  # Event objects
        self.version = 100
        self.history = []  # (resourceVersion int, type, namespace, object)
        self.compacted_before = 0
        self.faults = {"latency_ms": 0, "conflict_every": 0, "error_every": 0, "hang_every": 0, "down": False}
        self.write_counter = 0
        self.stats = {"requests": {}, "conflicts_injected": 0, "errors_injected": 0, "watches": 0}
        self.watch_generation = 0  # bumped to close every open watch

    def next_version(self) -> int:
        self.version += 1
        return self.version

    def record(self, kind, namespace, obj):
        self.history.append((int(obj["metadata"]["resourceVersion"]), kind, namespace, copy.deepcopy(obj)))
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
    for key, value in data.items():
        try:
            base64.b64decode(value, validate=True)
        except Exception:
            causes.append({"reason": "FieldValueInvalid", "message": "illegal base64 data", "field": f"data[{key}]"})
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


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "KubernetesDouble/1.0"
    disable_nagle_algorithm = True
    cluster: Cluster = None

    def log_message(self, format, *args):
        pass

    # -- plumbing ---------------------------------------------------------------------------------------------
    def read_body(self):
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
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
            namespace = self.authorize(parts)
            if parts in (["version"], ["version", ""]):
                return self.answer(200, {"major": "1", "minor": "31", "gitVersion": "v1.31.4", "platform": "linux/amd64"})
            if parts == ["api"]:
                return self.answer(200, {"kind": "APIVersions", "versions": ["v1"],
                                         "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}]})
            if parts == ["apis"]:
                return self.answer(200, {"kind": "APIGroupList", "apiVersion": "v1", "groups": [
                    {"name": "events.k8s.io", "versions": [{"groupVersion": "events.k8s.io/v1", "version": "v1"}],
                     "preferredVersion": {"groupVersion": "events.k8s.io/v1", "version": "v1"}}]})
            if parts == ["api", "v1"]:
                verbs = ["create", "delete", "get", "list", "patch", "update", "watch"]
                return self.answer(200, {"kind": "APIResourceList", "groupVersion": "v1", "resources": [
                    {"name": "secrets", "singularName": "secret", "namespaced": True, "kind": "Secret", "verbs": verbs},
                    {"name": "events", "singularName": "event", "namespaced": True, "kind": "Event", "verbs": verbs, "shortNames": ["ev"]},
                    {"name": "namespaces", "singularName": "namespace", "namespaced": False, "kind": "Namespace", "verbs": ["get", "list"], "shortNames": ["ns"]},
                ]})
            if parts == ["apis", "events.k8s.io", "v1"]:
                return self.answer(200, {"kind": "APIResourceList", "groupVersion": "events.k8s.io/v1", "resources": [
                    {"name": "events", "singularName": "event", "namespaced": True, "kind": "Event", "verbs": ["create", "get", "list"], "shortNames": ["ev"]}]})
            if parts[:3] == ["api", "v1", "namespaces"] and len(parts) == 4 and method == "GET":
                return self.answer(200, {"kind": "Namespace", "apiVersion": "v1", "metadata": {"name": parts[3]}, "status": {"phase": "Active"}})
            if parts == ["api", "v1", "secrets"] and method == "GET":
                return self.secrets_collection(None, query)
            if parts[:3] == ["api", "v1", "namespaces"] and len(parts) >= 5 and parts[4] == "secrets":
                if len(parts) == 5:
                    return self.secrets_collection(namespace, query) if method == "GET" else self.create_secret(namespace, faults)
                return self.secret(method, namespace, parts[5], query, faults)
            if (parts[:3] == ["apis", "events.k8s.io", "v1"] and parts[3:4] == ["namespaces"] and parts[5:] == ["events"]) or \
                    (parts[:3] == ["api", "v1", "namespaces"] and parts[4:] == ["events"]):
                return self.events(method, namespace, parts[0] == "apis", query)
            raise HTTPProblem(404, "NotFound", "the server could not find the requested resource")
        except HTTPProblem as problem:
            self.answer(problem.code, status(problem.code, problem.reason, problem.message, problem.details))
        except (BrokenPipeError, ConnectionResetError):
            pass

    def authorize(self, parts):
        header = self.headers.get("Authorization") or ""
        token = header[len("Bearer "):] if header.startswith("Bearer ") else None
        grants = self.cluster.tokens.get(token)
        if grants is None:
            raise HTTPProblem(401, "Unauthorized", "Unauthorized")
        namespace = parts[parts.index("namespaces") + 1] if "namespaces" in parts[:4] and len(parts) > parts.index("namespaces") + 1 else None
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

    # -- faults on writes -------------------------------------------------------------------------------------
    def write_fault(self, faults, name):
        with self.cluster.lock:
            self.cluster.write_counter += 1
            count = self.cluster.write_counter
            if faults["conflict_every"] and count % int(faults["conflict_every"]) == 0:
                self.cluster.stats["conflicts_injected"] += 1
                raise HTTPProblem(409, "Conflict", f'Operation cannot be fulfilled on secrets "{name}": the object has been modified; '
                                                   "please apply your changes to the latest version and try again",
                                  {"name": name, "kind": "secrets"})
            if faults["error_every"] and count % int(faults["error_every"]) == 0:
                self.cluster.stats["errors_injected"] += 1
                raise HTTPProblem(500, "InternalError", "Internal error occurred: etcdserver: request timed out")
            hang = faults["hang_every"] and count % int(faults["hang_every"]) == 0
        if hang:
            time.sleep(60)
            raise HTTPProblem(504, "Timeout", "Timeout: request did not complete within requested timeout")

    # -- secrets ----------------------------------------------------------------------------------------------
    def secrets_collection(self, namespace, query):
        if query.get("watch") in ("1", "true"):
            return self.watch(namespace, query)
        with self.cluster.lock:
            items = [copy.deepcopy(o) for (ns, _), o in sorted(self.cluster.secrets.items())
                     if (namespace is None or ns == namespace) and selected(o, query.get("labelSelector"), query.get("fieldSelector"))]
            version = str(self.cluster.version)
        self.answer(200, {"kind": "SecretList", "apiVersion": "v1", "metadata": {"resourceVersion": version}, "items": items})

    def create_secret(self, namespace, faults):
        body = self.read_body() or {}
        name = (body.get("metadata") or {}).get("name")
        if not name:
            raise HTTPProblem(422, "Invalid", 'Secret "" is invalid: metadata.name: Required value',
                              {"kind": "Secret", "causes": [{"reason": "FieldValueRequired", "message": "Required value", "field": "metadata.name"}]})
        self.write_fault(faults, name)
        secret = self.normalise(body, namespace, name)
        validate_secret(secret, name)
        with self.cluster.lock:
            if (namespace, name) in self.cluster.secrets:
                raise HTTPProblem(409, "AlreadyExists", f'secrets "{name}" already exists', {"name": name, "kind": "secrets"})
            secret["metadata"].update({"uid": str(uuid.uuid4()), "creationTimestamp": now_rfc3339(), "generation": 1,
                                       "resourceVersion": str(self.cluster.next_version())})
            self.cluster.secrets[(namespace, name)] = secret
            self.cluster.record("ADDED", namespace, secret)
        self.answer(201, secret)

    def normalise(self, body, namespace, name):
        secret = copy.deepcopy(body)
        secret["apiVersion"], secret["kind"] = "v1", "Secret"
        secret.setdefault("type", "Opaque")
        metadata = secret.setdefault("metadata", {})
        metadata["name"], metadata["namespace"] = name, namespace
        for field in ("uid", "creationTimestamp", "generation", "managedFields"):
            metadata.pop(field, None)
        string_data = secret.pop("stringData", None) or {}
        data = secret.get("data") or {}
        for key, value in string_data.items():
            data[key] = base64.b64encode(value.encode()).decode()
        if data:
            secret["data"] = data
        return secret

    def secret(self, method, namespace, name, query, faults):
        cluster = self.cluster
        if method == "GET":
            with cluster.lock:
                found = cluster.secrets.get((namespace, name))
                if found is None:
                    raise HTTPProblem(404, "NotFound", f'secrets "{name}" not found', {"name": name, "kind": "secrets"})
                return self.answer(200, copy.deepcopy(found))
        if method == "DELETE":
            self.write_fault(faults, name)
            with cluster.lock:
                found = cluster.secrets.pop((namespace, name), None)
                if found is None:
                    raise HTTPProblem(404, "NotFound", f'secrets "{name}" not found', {"name": name, "kind": "secrets"})
                found["metadata"]["resourceVersion"] = str(cluster.next_version())
                cluster.record("DELETED", namespace, found)
            body = status(200, "", "", {"name": name, "kind": "secrets", "uid": found["metadata"]["uid"]})
            body["status"] = "Success"
            return self.answer(200, body)
        if method not in ("PUT", "PATCH"):
            raise HTTPProblem(405, "MethodNotAllowed", f"{method} is not supported")
        body = self.read_body() or {}
        content_type = (self.headers.get("Content-Type") or "").split(";")[0]
        if method == "PATCH" and content_type not in ("application/merge-patch+json", "application/strategic-merge-patch+json"):
            raise HTTPProblem(415, "UnsupportedMediaType", f"the body of the request was in an unknown format - accepted media types include: "
                                                             "application/merge-patch+json, application/strategic-merge-patch+json")
        self.write_fault(faults, name)
        with cluster.lock:
            current = cluster.secrets.get((namespace, name))
            if current is None:
                raise HTTPProblem(404, "NotFound", f'secrets "{name}" not found', {"name": name, "kind": "secrets"})
            wanted = merge(current, body) if method == "PATCH" else body
            expected = (wanted.get("metadata") or {}).get("resourceVersion")
            if method == "PUT" and expected and expected != current["metadata"]["resourceVersion"]:
                raise HTTPProblem(409, "Conflict", f'Operation cannot be fulfilled on secrets "{name}": the object has been modified; '
                                                   "please apply your changes to the latest version and try again", {"name": name, "kind": "secrets"})
            updated = self.normalise(wanted, namespace, name)
            if updated.get("type") != current.get("type"):
                raise HTTPProblem(422, "Invalid", f'Secret "{name}" is invalid: type: Invalid value: "{updated.get("type")}": field is immutable',
                                  {"name": name, "kind": "Secret", "causes": [{"reason": "FieldValueInvalid", "message": "field is immutable", "field": "type"}]})
            validate_secret(updated, name)
            for field in ("uid", "creationTimestamp"):
                updated["metadata"][field] = current["metadata"][field]
            updated["metadata"]["generation"] = current["metadata"]["generation"]
            updated["metadata"]["resourceVersion"] = str(cluster.next_version())
            cluster.secrets[(namespace, name)] = updated
            cluster.record("MODIFIED", namespace, updated)
        self.answer(200, updated)

    def watch(self, namespace, query):
        cluster = self.cluster
        since = int(query.get("resourceVersion") or 0)
        bookmarks = query.get("allowWatchBookmarks") in ("1", "true")
        deadline = time.time() + float(query.get("timeoutSeconds") or 1800)
        with cluster.lock:
            cluster.stats["watches"] += 1
            generation = cluster.watch_generation
            if since == 0:
                since = cluster.version
            expired = since + 1 < cluster.compacted_before
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
                    pending = [(v, k, o) for v, k, ns, o in cluster.history
                               if v > since and (namespace is None or ns == namespace)
                               and selected(o, query.get("labelSelector"), query.get("fieldSelector"))]
                    if not pending:
                        cluster.lock.wait(timeout=0.2)
                    current = cluster.version
                for version, kind, obj in pending:
                    send({"type": kind, "object": obj})
                    since = version
                if bookmarks and time.time() - last_bookmark >= 1:
                    since = max(since, current)
                    send({"type": "BOOKMARK", "object": {"kind": "Secret", "apiVersion": "v1", "metadata": {"resourceVersion": str(since)}}})
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
            if len(event.get("note") or "") > 1024:
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
                cluster.compacted_before = cluster.version + 1
                cluster.history = []
                return self.answer(200, {"compactedBefore": cluster.compacted_before})
            if parts == ["stats"]:
                return self.answer(200, cluster.stats)
        raise HTTPProblem(404, "NotFound", "unknown admin route")


def make_tls(directory):
    """A CA and a server certificate for 127.0.0.1 and localhost, written to the directory."""
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kubernetes double CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
          .not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True).sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    import ipaddress
    cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kube-apiserver")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    pem = serialization.Encoding.PEM
    with open(os.path.join(directory, "ca.crt"), "wb") as f:
        f.write(ca.public_bytes(pem))
    with open(os.path.join(directory, "server.pem"), "wb") as f:
        f.write(cert.public_bytes(pem) + key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(os.path.join(directory, "server.pem"))
    return context


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def main():
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM, signal.SIGINT})
    parser = argparse.ArgumentParser()
    parser.add_argument("--dir", required=True)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--token", action="append", default=[], help="TOKEN=NS1,NS2 or TOKEN=*")
    arguments = parser.parse_args()
    tokens = {}
    for entry in arguments.token or ["admin=*"]:
        token, _, grants = entry.partition("=")
        tokens[token] = set((grants or "*").split(","))
    Handler.cluster = Cluster(tokens)
    os.makedirs(arguments.dir, exist_ok=True)
    server = Server(("127.0.0.1", arguments.port), Handler)
    server.socket = make_tls(arguments.dir).wrap_socket(server.socket, server_side=True)
    print(f"READY {server.server_address[1]}", flush=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    server.serve_forever()


if __name__ == "__main__":
    main()
