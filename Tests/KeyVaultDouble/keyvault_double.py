#!/usr/bin/env python3
"""A test double of Azure Key Vault's keys data plane and of Microsoft Entra ID's token endpoints.

It speaks the real wire protocol, as far as Signet and Microsoft's SDK use it:
- HTTPS only, with its own CA (written to --dir/ca.crt);
- a 401 challenge with `WWW-Authenticate: Bearer authorization=..., resource=...` to unauthenticated requests;
- Entra v2 token endpoint (`/{tenant}/oauth2/v2.0/token`) for client secrets and federated client assertions,
  its OpenID metadata, and the managed-identity (IMDS) endpoint `/metadata/identity/oauth2/token`;
- `POST /keys/{name}/create`, `GET /keys/{name}[/{version}]`, `POST /keys/{name}/{version}/sign` with real keys
  and real signatures (ES256/ES384 as raw r||s, RS256, PS256 with salt = digest length);
- Key Vault's error JSON, `x-ms-request-id` on every answer;
- faults set at run time through `POST /_admin/faults`: latency, 429 with Retry-After (every Nth sign), 5xx (at a
  rate or every Nth sign), dropped connections, an outage.
`GET /_admin/stats` reports what it served (`POST /_admin/stats/reset` zeroes it). Everything is in memory; one
process per test run.

Usage: keyvault_double.py --dir DIR [--port 0] [--client-secret S] [--tenant T]
It prints `READY <port>` on stdout once it listens.
"""
import argparse
import hashlib
import base64
import datetime
import http.server
import json
import os
import random
import signal
import sys
import threading
import time
import urllib.parse
import uuid

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Doubles"))
import loopback_https  # noqa: E402  (shared with the other doubles)

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def int_bytes(value: int, length: int) -> bytes:
    return value.to_bytes(length, "big")


class Vault:
    """Keys, tokens, faults and counters, shared by the request threads."""

    FEDERATION_AUDIENCE = "api://AzureADTokenExchange"

    def __init__(self, client_secret: str, tenant: str, client_id: str, federated_subject: str):
        self.lock = threading.Lock()
        self.keys = {}  # name -> list of (version, private key)
        self.tokens = {}  # access token -> (expiry in epoch seconds, tenant it was issued in)
        self.client_secret = client_secret
        self.tenant = tenant
        self.client_id = client_id
        # The app's federated identity credential: tokens from this issuer for this subject may stand in for a secret.
        self.federated_subject = federated_subject
        self.federation_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        # challenge_tenant: keys calls are challenged to another tenant, whose tokens alone they then accept;
        # wrong_signature: sign answers a well-formed signature of something else.
        self.faults = {"latency_ms": 0, "throttle_every": 0, "retry_after": 1, "error_rate": 0.0, "error_every": 0, "drop_rate": 0.0,
                       "down": False, "token_lifetime": 3600, "challenge_tenant": None, "wrong_signature": False}
        # sign_in_flight_max: most sign calls inside the vault at once; sign_per_second_max: most sign calls that
        # arrived within one whole second (what a quota would count).
        self.stats = {"sign": 0, "sign_ok": 0, "throttled": 0, "errors_5xx": 0, "dropped": 0, "tokens": 0,
                      "challenges": 0, "token_requests": {}, "sign_in_flight_max": 0, "sign_per_second_max": 0,
                      "get_key": 0, "wrong_signatures": 0, "expired_tokens": 0, "refused_assertions": 0, "token_tenants": {}}
        self.sign_counter = 0
        self.sign_in_flight = 0
        self.sign_second = (0, 0)  # (whole second, calls that arrived in it)

    def create_key(self, name: str, params: dict):
        kty = params.get("kty", "EC")
        if kty.startswith("EC"):
            curve = {"P-256": ec.SECP256R1(), "P-384": ec.SECP384R1(), "P-521": ec.SECP521R1()}.get(params.get("crv", "P-256"))
            if curve is None:
                raise BadParameter("Unsupported curve " + str(params.get("crv")))
            key = ec.generate_private_key(curve)
        elif kty.startswith("RSA"):
            key = rsa.generate_private_key(public_exponent=65537, key_size=int(params.get("key_size", 2048)))
        else:
            raise BadParameter("Unsupported key type " + kty)
        version = uuid.uuid4().hex
        with self.lock:
            self.keys.setdefault(name, []).append((version, key))
        return version, key

    def find(self, name: str, version: str | None):
        with self.lock:
            versions = self.keys.get(name)
            if not versions:
                return None
            if not version:
                return versions[-1]
            for candidate in versions:
                if candidate[0] == version:
                    return candidate
            return None


class BadParameter(Exception):
    pass


def jwk(key, kid: str) -> dict:
    public = key.public_key()
    if isinstance(public, ec.EllipticCurvePublicKey):
        numbers = public.public_numbers()
        size = (public.curve.key_size + 7) // 8
        crv = {256: "P-256", 384: "P-384", 521: "P-521"}[public.curve.key_size]
        return {"kid": kid, "kty": "EC", "key_ops": ["sign", "verify"], "crv": crv,
                "x": b64url(int_bytes(numbers.x, size)), "y": b64url(int_bytes(numbers.y, size))}
    numbers = public.public_numbers()
    return {"kid": kid, "kty": "RSA", "key_ops": ["sign", "verify"],
            "n": b64url(int_bytes(numbers.n, (numbers.n.bit_length() + 7) // 8)),
            "e": b64url(int_bytes(numbers.e, (numbers.e.bit_length() + 7) // 8))}


def sign(key, alg: str, digest: bytes) -> bytes:
    expected = {"ES256": 32, "RS256": 32, "PS256": 32, "ES384": 48, "RS384": 48, "PS384": 48,
                "ES512": 64, "RS512": 64, "PS512": 64}.get(alg)
    # As Key Vault: an ECDSA algorithm names its curve, and a key of another curve does not sign with it.
    curves = {"ES256": "secp256r1", "ES384": "secp384r1", "ES512": "secp521r1"}
    if expected is None:
        raise BadParameter(f"Unsupported algorithm '{alg}'")
    if len(digest) != expected:
        raise BadParameter(f"Invalid length of 'value': {len(digest)} bytes. {alg} requires {expected} bytes, encoded with base64url.")
    hash_algorithm = {32: hashes.SHA256(), 48: hashes.SHA384(), 64: hashes.SHA512()}[expected]
    if alg.startswith("ES"):
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise BadParameter(f"Algorithm {alg} does not match the key type")
        if key.curve.name != curves[alg]:
            raise BadParameter(f"Key and signing algorithm are incompatible: {alg} requires curve {curves[alg]}, the key's is {key.curve.name}")
        der = key.sign(digest, ec.ECDSA(utils.Prehashed(hash_algorithm)))
        r, s = utils.decode_dss_signature(der)
        size = (key.curve.key_size + 7) // 8
        return int_bytes(r, size) + int_bytes(s, size)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise BadParameter(f"Algorithm {alg} does not match the key type")
    if alg.startswith("RS"):
        return key.sign(digest, padding.PKCS1v15(), utils.Prehashed(hash_algorithm))
    return key.sign(digest, padding.PSS(mgf=padding.MGF1(hash_algorithm), salt_length=expected), utils.Prehashed(hash_algorithm))


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "KeyVaultDouble/1.0"
    vault: Vault = None  # set by main
    base_url = ""

    # Headers and body go out in separate writes; without TCP_NODELAY, Nagle's algorithm holds the body back until
    # the client's delayed ACK (about 40 ms), a stall real Key Vault does not have.
    disable_nagle_algorithm = True

    def log_message(self, format, *args):  # quiet: tests read stats instead
        pass

    # -- plumbing ---------------------------------------------------------------------------------------------
    def body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def answer(self, status: int, payload=None, headers=None):
        data = b"" if payload is None else json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("x-ms-request-id", str(uuid.uuid4()))
        self.send_header("x-ms-keyvault-service-version", "1.9.0.0")
        if payload is not None:
            self.send_header("Content-Type", "application/json; charset=utf-8")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def error(self, status: int, code: str, message: str, inner: str | None = None, headers=None):
        error = {"code": code, "message": message}
        if inner:
            error["innererror"] = {"code": inner}
        self.answer(status, {"error": error}, headers)

    def do_GET(self):
        self.route("GET")

    def do_POST(self):
        self.route("POST")

    def route(self, method: str):
        url = urllib.parse.urlsplit(self.path)
        parts = [p for p in url.path.split("/") if p]
        query = urllib.parse.parse_qs(url.query)
        try:
            if parts[:1] == ["_admin"]:
                return self.admin(method, parts[1:])
            if len(parts) >= 3 and parts[1:3] == ["oauth2", "v2.0"] or parts[1:3] == ["v2.0", ".well-known"]:
                return self.entra(method, parts)
            if parts[:3] == ["metadata", "identity", "oauth2"]:
                return self.imds(query)
            if parts[:1] == ["keys"]:
                return self.keys(method, parts[1:], query)
            self.error(404, "NotFound", f"No route for {method} {url.path}")
        except BadParameter as problem:
            self.error(400, "BadParameter", str(problem))

    # -- admin -----------------------------------------------------------------------------------------------
    def admin(self, method, parts):
        vault = self.vault
        if parts == ["faults"] and method == "POST":
            with vault.lock:
                vault.faults.update(json.loads(self.body() or b"{}"))
                return self.answer(200, vault.faults)
        if parts == ["stats"]:
            with vault.lock:
                return self.answer(200, vault.stats)
        if parts == ["expire-tokens"] and method == "POST":
            with vault.lock:  # every access token handed out so far stops working, as at the end of its life
                vault.stats["expired_tokens"] += len(vault.tokens)
                vault.tokens.clear()
                return self.answer(200, {})
        if parts == ["federated-token"] and method == "POST":
            request = json.loads(self.body() or b"{}")
            return self.answer(200, {"token": self.federated_token(request)})
        if parts == ["stats", "reset"] and method == "POST":
            with vault.lock:
                for name, value in vault.stats.items():
                    vault.stats[name] = {} if isinstance(value, dict) else 0
                return self.answer(200, vault.stats)
        self.error(404, "NotFound", "unknown admin route")

    # -- Entra ID --------------------------------------------------------------------------------------------
    def entra(self, method, parts):
        tenant = parts[0]
        if parts[1:] == ["v2.0", ".well-known", "openid-configuration"]:
            base = f"{self.base_url}/{tenant}"
            return self.answer(200, {"token_endpoint": f"{base}/oauth2/v2.0/token", "issuer": f"{base}/v2.0",
                                     "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
                                     "tenant_region_scope": "NA"})
        if parts[1:] != ["oauth2", "v2.0", "token"] or method != "POST":
            return self.error(404, "NotFound", "unknown Entra route")
        form = urllib.parse.parse_qs(self.body().decode())
        field = lambda name: (form.get(name) or [""])[0]
        grant = field("grant_type")
        flow = None
        refusal = None
        with self.vault.lock:
            tenants = {self.vault.tenant} | ({self.vault.faults["challenge_tenant"]} if self.vault.faults["challenge_tenant"] else set())
        if tenant not in tenants:
            refusal = (400, "invalid_request", 90002, f"Tenant '{tenant}' not found.")
        elif field("client_id") != self.vault.client_id:
            refusal = (400, "unauthorized_client", 700016, f"Application with identifier '{field('client_id')}' was not found in the directory.")
        elif grant == "client_credentials" and field("client_secret"):
            flow = "client_secret"
            if field("client_secret") != self.vault.client_secret:
                refusal = (401, "invalid_client", 7000215, "Invalid client secret provided.")
        elif grant == "client_credentials" and field("client_assertion_type") == "urn:ietf:params:oauth:client-assertion-type:jwt-bearer":
            flow = "client_assertion"
            refusal = self.check_assertion(field("client_assertion"))
        else:
            refusal = (400, "unsupported_grant_type", 70003, "The app requested an unsupported grant type.")
        if refusal is None and "vault.azure.net" not in field("scope"):
            refusal = (400, "invalid_scope", 70011, "The provided value for the input parameter 'scope' is not valid.")
        if refusal is not None:
            code, error, number, description = refusal
            with self.vault.lock:
                self.vault.stats["refused_assertions"] += 1 if flow == "client_assertion" else 0
            return self.answer(code, {"error": error, "error_description": f"AADSTS{number}: {description}",
                                      "error_codes": [number], "timestamp": datetime.datetime.utcnow().isoformat() + "Z",
                                      "trace_id": str(uuid.uuid4()), "correlation_id": str(uuid.uuid4())})
        return self.issue_token(flow, {"token_type": "Bearer", "ext_expires_in": 3599}, tenant)

    def federation_issuer(self):
        return f"{self.base_url}/federation"

    def federated_token(self, request):
        """A projected service-account token as a cluster's OIDC issuer signs it (the issuer Entra trusts)."""
        now = int(time.time())
        claims = {"iss": request.get("issuer") or self.federation_issuer(), "sub": request.get("subject") or self.vault.federated_subject,
                  "aud": [request.get("audience") or Vault.FEDERATION_AUDIENCE], "iat": now, "nbf": now,
                  "exp": now + int(request.get("expiresIn", 3600))}
        signing_input = b64url(json.dumps({"alg": "RS256", "kid": "federation"}).encode()) + "." + b64url(json.dumps(claims).encode())
        key = self.vault.federation_key if not request.get("forged") else rsa.generate_private_key(public_exponent=65537, key_size=2048)
        return signing_input + "." + b64url(key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256()))

    def check_assertion(self, assertion):
        """What Entra checks of a federated client assertion: the issuer's signature, the issuer and subject of the
        app's federated credential, the token-exchange audience, and time."""
        try:
            header_text, claims_text, signature_text = assertion.split(".")
            self.vault.federation_key.public_key().verify(b64url_decode(signature_text), f"{header_text}.{claims_text}".encode(),
                                                          padding.PKCS1v15(), hashes.SHA256())
            claims = json.loads(b64url_decode(claims_text))
        except Exception:
            return (401, "invalid_client", 50027, "JWT token is invalid or malformed (the signature does not verify against the issuer's keys).")
        audiences = claims.get("aud") if isinstance(claims.get("aud"), list) else [claims.get("aud")]
        if claims.get("iss") != self.federation_issuer() or claims.get("sub") != self.vault.federated_subject:
            return (400, "invalid_client", 70021, "No matching federated identity record found for presented assertion.")
        if Vault.FEDERATION_AUDIENCE not in audiences:
            return (400, "invalid_client", 700212, "No matching federated identity record found for presented assertion audience.")
        if not (claims.get("nbf", 0) - 300 <= time.time() < claims.get("exp", 0)):
            return (400, "invalid_client", 700024, "Client assertion is not within its valid time range.")
        return None

    def imds(self, query):
        if self.headers.get("Metadata") != "true":
            return self.answer(400, {"error": "invalid_request", "error_description": "Required metadata header not specified"})
        if (query.get("resource") or [""])[0] != "https://vault.azure.net":
            return self.answer(400, {"error": "invalid_resource", "error_description": "AADSTS500011: resource not found"})
        return self.issue_token("managed_identity", {"token_type": "Bearer", "resource": "https://vault.azure.net",
                                                     "client_id": (query.get("client_id") or ["system"])[0]})

    def issue_token(self, flow, payload, tenant=None):
        vault = self.vault
        token = b64url(os.urandom(32))
        lifetime = int(vault.faults["token_lifetime"])
        tenant = tenant or vault.tenant
        with vault.lock:
            vault.tokens[token] = (time.time() + lifetime, tenant)
            vault.stats["token_tenants"][tenant] = vault.stats["token_tenants"].get(tenant, 0) + 1
            vault.stats["tokens"] += 1
            vault.stats["token_requests"][flow] = vault.stats["token_requests"].get(flow, 0) + 1
        payload.update({"access_token": token, "expires_in": lifetime})
        if flow == "managed_identity":  # IMDS sends numbers as strings
            payload.update({"expires_in": str(lifetime), "expires_on": str(int(time.time()) + lifetime)})
        self.answer(200, payload)

    # -- keys ------------------------------------------------------------------------------------------------
    def authorized(self) -> bool:
        header = self.headers.get("Authorization", "")
        token = header[7:] if header.startswith("Bearer ") else None
        with self.vault.lock:
            expiry, tenant = self.vault.tokens.get(token) if token and token in self.vault.tokens else (None, None)
            wanted = self.vault.faults["challenge_tenant"] or self.vault.tenant
        if expiry and expiry > time.time() and tenant == wanted:
            return True
        with self.vault.lock:
            self.vault.stats["challenges"] += 1
        self.error(401, "Unauthorized", "AKV10000: Request is missing a Bearer or PoP token.", headers={
            "WWW-Authenticate": f'Bearer authorization="{self.base_url}/{wanted}", resource="https://vault.azure.net"'})
        return False

    def keys(self, method, parts, query):
        self.body_bytes = self.body()  # read before any early answer so the connection stays usable
        with self.vault.lock:
            down = self.vault.faults["down"]
            if down:
                self.vault.stats["dropped"] += 1
        if down:  # the vault is unreachable: every keys call loses its connection
            self.close_connection = True
            self.connection.shutdown(2)
            return
        if not self.authorized():
            return
        if not (query.get("api-version") or [""])[0]:
            return self.error(400, "BadParameter", "The 'api-version' query parameter is missing.")
        if len(parts) == 2 and parts[1] == "create" and method == "POST":
            name = parts[0]
            if not name.replace("-", "").isalnum():
                raise BadParameter("The key name is invalid")
            version, key = self.vault.create_key(name, json.loads(self.body_bytes or b"{}"))
            return self.answer(200, self.bundle(name, version, key))
        if method == "GET" and len(parts) in (1, 2):
            with self.vault.lock:
                self.vault.stats["get_key"] += 1
            found = self.vault.find(parts[0], parts[1] if len(parts) == 2 else None)
            if not found:
                return self.error(404, "KeyNotFound", f"A key with (name/id) {'/'.join(parts)} was not found in this key vault.")
            return self.answer(200, self.bundle(parts[0], found[0], found[1]))
        if len(parts) == 3 and parts[2] == "sign" and method == "POST":
            return self.sign(parts[0], parts[1])
        self.error(404, "NotFound", "unknown keys route")

    def bundle(self, name, version, key):
        now = int(time.time())
        return {"key": jwk(key, f"{self.base_url}/keys/{name}/{version}"),
                "attributes": {"enabled": True, "created": now, "updated": now, "recoveryLevel": "Recoverable+Purgeable",
                               "recoverableDays": 90, "exportable": False}, "tags": {}}

    def sign(self, name, version):
        vault = self.vault
        with vault.lock:
            faults = dict(vault.faults)
            vault.stats["sign"] += 1
            vault.sign_counter += 1
            count = vault.sign_counter
            vault.sign_in_flight += 1
            vault.stats["sign_in_flight_max"] = max(vault.stats["sign_in_flight_max"], vault.sign_in_flight)
            second = int(time.time())
            arrived = vault.sign_second[1] + 1 if vault.sign_second[0] == second else 1
            vault.sign_second = (second, arrived)
            vault.stats["sign_per_second_max"] = max(vault.stats["sign_per_second_max"], arrived)
        try:
            return self.sign_admitted(name, version, faults, count)
        finally:
            with vault.lock:
                vault.sign_in_flight -= 1

    def sign_admitted(self, name, version, faults, count):
        vault = self.vault
        if faults["latency_ms"]:
            time.sleep(faults["latency_ms"] / 1000)
        if faults["drop_rate"] and random.random() < faults["drop_rate"]:
            with vault.lock:
                vault.stats["dropped"] += 1
            self.close_connection = True
            self.connection.shutdown(2)
            return
        if faults["throttle_every"] and count % int(faults["throttle_every"]) == 0:
            with vault.lock:
                vault.stats["throttled"] += 1
            return self.error(429, "Throttled", "Request was not processed because too many requests were received.",
                              headers={"Retry-After": str(faults["retry_after"])})
        if (faults["error_rate"] and random.random() < faults["error_rate"]) or \
                (faults["error_every"] and count % int(faults["error_every"]) == 0):
            with vault.lock:
                vault.stats["errors_5xx"] += 1
            return self.error(503, "ServiceUnavailable", "The service is temporarily unavailable.")
        found = vault.find(name, version)
        if not found:
            return self.error(404, "KeyNotFound", f"A key with (name/id) {name}/{version} was not found in this key vault.")
        request = json.loads(self.body_bytes or b"{}")
        digest = b64url_decode(request.get("value", ""))
        if faults["wrong_signature"]:
            with vault.lock:
                vault.stats["wrong_signatures"] += 1
            digest = hashlib.new({32: "sha256", 48: "sha384", 64: "sha512"}.get(len(digest), "sha256"), digest + b"tampered").digest()
        signature = sign(found[1], request.get("alg", ""), digest)
        with vault.lock:
            vault.stats["sign_ok"] += 1
        self.answer(200, {"kid": f"{self.base_url}/keys/{name}/{found[0]}", "value": b64url(signature)})


def main():
    # A launcher's worker thread may have SIGTERM blocked, and a blocked mask is inherited: unblock it so the
    # double stops when it is told to.
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM, signal.SIGINT})
    parser = argparse.ArgumentParser()
    parser.add_argument("--dir", required=True)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--client-secret", default="test-secret")
    parser.add_argument("--tenant", default="00000000-0000-0000-0000-000000000001")
    parser.add_argument("--client-id", default="signet", help="the app registration's client id")
    parser.add_argument("--federated-subject", default="system:serviceaccount:signet-system:signet",
                        help="the subject of the app's federated identity credential")
    arguments = parser.parse_args()
    os.makedirs(arguments.dir, exist_ok=True)
    Handler.vault = Vault(arguments.client_secret, arguments.tenant, arguments.client_id, arguments.federated_subject)
    server = loopback_https.serve_https(arguments.dir, arguments.port, Handler, "Key Vault double CA", "localhost")
    port = server.server_address[1]
    Handler.base_url = f"https://127.0.0.1:{port}"
    print(f"READY {port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
