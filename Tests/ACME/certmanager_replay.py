#!/usr/bin/env python3
"""Replays what cert-manager's ACME issuer sends (its fork of golang.org/x/crypto/acme), request by request, against
an ACME server, and fails on any answer cert-manager would not accept.

cert-manager cannot run here (no cluster), so this follows its code: pkg/issuer/acme/setup.go (RSA-2048 account key,
EAB with HS256, onlyReturnExisting), third_party/forked/acme (HEAD-only nonces, JWS RS256, exactly 201 on newOrder,
finalize then polling the Location it answered), pkg/controller/acmeorders and acmechallenges (POST-as-GET of each
authorization, the challenge answered with {}, authorization polling, chain download), and the http-01 solver pod
(acmesolver), which serves the key authorization itself.

Usage: certmanager_replay.py DIRECTORY_URL CA_FILE HTTP_PORT EAB_KID EAB_HMAC NAME...
Prints one JSON line: {"account", "order", "certificate", "chain"} or exits non-zero naming the first violation.
"""
import base64
import hashlib
import hmac
import http.server
import ipaddress
import json
import ssl
import sys
import threading
import time
import urllib.error
import urllib.request

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class Violation(Exception):
    pass


class Client:
    def __init__(self, directory_url, ca_file):
        self.context = ssl.create_default_context(cafile=ca_file)
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)  # setup.go: MinRSAKeySize
        numbers = self.key.public_key().public_numbers()
        self.jwk = {"e": b64(numbers.e.to_bytes((numbers.e.bit_length() + 7) // 8, "big")), "kty": "RSA",
                    "n": b64(numbers.n.to_bytes((numbers.n.bit_length() + 7) // 8, "big"))}
        self.kid = None
        self.directory = self.request("GET", directory_url)[2]
        for required in ("newNonce", "newAccount", "newOrder"):  # acme.go Discover refuses a directory without them
            if required not in self.directory:
                raise Violation(f"directory lacks {required}")
        profiles = self.directory.get("meta", {}).get("profiles", {})
        if not all(isinstance(v, str) for v in profiles.values()):
            raise Violation("meta.profiles must map names to strings (cert-manager decodes map[string]string)")

    def request(self, method, url, body=None):
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(url, data=data, method=method, headers={"User-Agent": "cert-manager-replay"})
        if data is not None:
            request.add_header("Content-Type", "application/jose+json")
        try:
            with urllib.request.urlopen(request, context=self.context, timeout=30) as response:
                raw = response.read()
                status, headers = response.status, response.headers
        except urllib.error.HTTPError as error:
            raw, status, headers = error.read(), error.code, error.headers
        content = raw
        if headers.get("Content-Type", "").startswith(("application/json", "application/problem+json")) and raw:
            content = json.loads(raw)
        return status, headers, content

    def nonce(self):
        # acme.go fetchNonce: HEAD only; "acme: nonce not found" without the header.
        status, headers, _ = self.request("HEAD", self.directory["newNonce"])
        nonce = headers.get("Replay-Nonce")
        if not nonce:
            raise Violation(f"HEAD newNonce answered {status} without Replay-Nonce")
        return nonce

    def post(self, url, payload, use_jwk=False):
        protected = {"alg": "RS256", "nonce": self.nonce(), "url": url}
        if use_jwk or self.kid is None:
            protected["jwk"] = self.jwk
        else:
            protected["kid"] = self.kid
        encoded_protected = b64(json.dumps(protected).encode())
        encoded_payload = "" if payload is None else b64(json.dumps(payload).encode())
        signature = self.key.sign(f"{encoded_protected}.{encoded_payload}".encode(), padding.PKCS1v15(), hashes.SHA256())
        status, headers, content = self.request("POST", url, {"protected": encoded_protected, "payload": encoded_payload, "signature": b64(signature)})
        if status < 400 and not headers.get("Replay-Nonce"):
            raise Violation(f"POST {url} answered {status} without Replay-Nonce")
        return status, headers, content

    def thumbprint(self):
        return b64(hashlib.sha256(json.dumps(self.jwk, separators=(",", ":"), sort_keys=True).encode()).digest())


def external_account_binding(client, kid, hmac_key):
    protected = b64(json.dumps({"alg": "HS256", "kid": kid, "url": client.directory["newAccount"]}).encode())
    payload = b64(json.dumps(client.jwk).encode())
    mac = hmac.new(base64.urlsafe_b64decode(hmac_key + "=" * (-len(hmac_key) % 4)), f"{protected}.{payload}".encode(), hashlib.sha256).digest()
    return {"protected": protected, "payload": payload, "signature": b64(mac)}


def serve_http01(port, responses):
    """cert-manager's acmesolver: answers /.well-known/acme-challenge/<token> with the key authorization."""
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            token = self.path.rsplit("/", 1)[-1]
            body = responses.get(token)
            self.send_response(200 if body else 404)
            self.end_headers()
            if body:
                self.wfile.write(body.encode())

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def poll(client, url, until, what):
    deadline = time.time() + 120  # acmechallenges: 2 minutes
    while time.time() < deadline:
        status, headers, content = client.post(url, None)
        if status != 200:
            raise Violation(f"polling {what} answered {status}: {content}")
        if until(content):
            return content
        time.sleep(float(headers.get("Retry-After", "1")))  # x/crypto: Retry-After, else 1 s
    raise Violation(f"{what} did not settle within 2 minutes")


def main():
    directory_url, ca_file, http_port, eab_kid, eab_hmac, *names = sys.argv[1:]
    client = Client(directory_url, ca_file)
    responses = {}
    solver = serve_http01(int(http_port), responses)

    # setup.go: register (ToS accepted automatically, EAB if configured); on 200 the account exists.
    account = {"termsOfServiceAgreed": True, "contact": ["mailto:platform@acme.test"]}
    if eab_kid != "-":
        account["externalAccountBinding"] = external_account_binding(client, eab_kid, eab_hmac)
    status, headers, content = client.post(client.directory["newAccount"], account, use_jwk=True)
    if status not in (200, 201) or not headers.get("Location"):
        raise Violation(f"newAccount answered {status} {content} (Location {headers.get('Location')})")
    client.kid = headers["Location"]
    # GetReg: onlyReturnExisting must find the same account.
    status, headers, _ = client.post(client.directory["newAccount"], {"onlyReturnExisting": True}, use_jwk=True)
    if status != 200 or headers.get("Location") != client.kid:
        raise Violation(f"onlyReturnExisting answered {status}, Location {headers.get('Location')}")

    # acmeorders/sync.go createOrder: identifiers = dnsNames (+ CN); AuthorizeOrder accepts exactly 201.
    # cert-manager sends spec.ipAddresses as identifiers of type ip (RFC 8738).
    def identifier(name):
        try:
            return {"type": "ip", "value": str(ipaddress.ip_address(name))}
        except ValueError:
            return {"type": "dns", "value": name}
    status, headers, order = client.post(client.directory["newOrder"], {"identifiers": [identifier(n) for n in names]})
    if status != 201:
        raise Violation(f"newOrder answered {status}, not 201: x/crypto would retry it as an error: {order}")
    order_url = headers.get("Location")
    if not order_url:
        raise Violation("newOrder without Location")

    for authorization_url in order["authorizations"]:
        status, _, authorization = client.post(authorization_url, None)
        if authorization["status"] == "valid":
            continue  # already valid: cert-manager creates no Challenge
        challenge = next((c for c in authorization["challenges"] if c["type"] == "http-01"), None)
        if challenge is None:
            raise Violation(f"no http-01 challenge in {authorization}")
        responses[challenge["token"]] = f"{challenge['token']}.{client.thumbprint()}"
        status, headers, answered = client.post(challenge["url"], {})  # Accept: POST {}
        if status not in (200, 202):
            raise Violation(f"challenge answer {status}: {answered}")
        # cert-manager polls the authorization, never the challenge.
        final = poll(client, authorization_url, lambda a: a["status"] != "pending", "authorization")
        if final["status"] != "valid":
            raise Violation(f"authorization ended {final['status']}: {final}")

    poll(client, order_url, lambda o: o["status"] in ("ready", "invalid"), "order")
    key = ec.generate_private_key(ec.SECP256R1())
    sans = [x509.IPAddress(ipaddress.ip_address(n)) if identifier(n)["type"] == "ip" else x509.DNSName(n) for n in names]
    dns_names = [n for n in names if identifier(n)["type"] == "dns"]
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, dns_names[0])] if dns_names else [])
    csr = (x509.CertificateSigningRequestBuilder().subject_name(subject)
           .add_extension(x509.SubjectAlternativeName(sans), critical=False)
           .sign(key, hashes.SHA256()))
    status, headers, finalized = client.post(order["finalize"], {"csr": b64(csr.public_bytes(serialization.Encoding.DER))})
    if status != 200:
        raise Violation(f"finalize answered {status}: {finalized}")
    if finalized["status"] != "valid":
        # CreateOrderCert: WaitOrder on the finalize answer's Location.
        if not headers.get("Location"):
            raise Violation("finalize answered a non-final order without Location: x/crypto cannot poll it")
        finalized = poll(client, headers["Location"], lambda o: o["status"] in ("valid", "invalid"), "finalized order")
    status, headers, chain = client.post(finalized["certificate"], None)
    if status != 200 or not headers.get("Content-Type", "").startswith("application/pem-certificate-chain"):
        raise Violation(f"certificate download answered {status} {headers.get('Content-Type')}")
    text = chain.decode()
    blocks = [b for b in text.split("-----END CERTIFICATE-----") if "BEGIN" in b]
    if "PRIVATE" in text or not blocks:
        raise Violation("the chain must hold CERTIFICATE blocks only")
    leaf = x509.load_pem_x509_certificate((blocks[0] + "-----END CERTIFICATE-----\n").encode())
    # certificaterequests/acme: the certificate's key must be the CSR's.
    if leaf.public_key().public_numbers() != key.public_key().public_numbers():
        raise Violation("the certificate's key is not the CSR's")
    solver.shutdown()
    print(json.dumps({"account": client.kid, "order": order_url, "certificate": finalized["certificate"], "chain": text}))


if __name__ == "__main__":
    try:
        main()
    except Violation as violation:
        print(f"VIOLATION: {violation}", file=sys.stderr)
        sys.exit(2)
