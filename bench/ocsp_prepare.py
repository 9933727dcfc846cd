#!/usr/bin/env python3
"""Prepares the OCSP benchmark: issues COUNT certificates from Signet (plain HTTP, one pre-generated CSR body a line),
then writes, for wrk's get.lua, the GET paths of OCSP requests about them (SHA-1 CertIDs, as RFC 5019 clients send):
signet-cached.txt (no nonce: cached answers) and signet-nonce.txt (a nonce each: signed per request); the first
request's DER as post.der; and for the peer, `cfssl ocspserve`, a response for each certificate signed with the
intermediate's key (base64, one a line: cfssl's responses file).
"""
import base64
import datetime
import json
import os
import sys
import urllib.parse
import urllib.request

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp


def main():
    base, token, bodies_file, count, issuer_file, issuer_key_file, out = sys.argv[1:8]
    issuer = x509.load_pem_x509_certificate(open(issuer_file, "rb").read())
    issuer_key = serialization.load_pem_private_key(open(issuer_key_file, "rb").read(), password=None)
    now = datetime.datetime.now(datetime.timezone.utc)
    cached, nonced, responses, first = [], [], [], None
    with open(bodies_file) as bodies:
        for _, body in zip(range(int(count)), bodies):
            request = urllib.request.Request(f"{base}/v1/certificates", data=body.encode(), method="POST",
                                             headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
            with urllib.request.urlopen(request, timeout=30) as answer:
                chain = json.load(answer)["chain"]
            leaf = x509.load_pem_x509_certificate(chain.encode())
            def request(with_nonce):
                builder = ocsp.OCSPRequestBuilder().add_certificate(leaf, issuer, hashes.SHA1())
                if with_nonce:
                    builder = builder.add_extension(x509.OCSPNonce(os.urandom(16)), critical=False)
                return builder.build().public_bytes(serialization.Encoding.DER)
            def path(der):
                return "/ocsp/" + urllib.parse.quote(base64.b64encode(der).decode(), safe="")
            plain = request(False)
            first = first or plain
            cached.append(path(plain))
            nonced.append(path(request(True)))
            response = ocsp.OCSPResponseBuilder().add_response(
                cert=leaf, issuer=issuer, algorithm=hashes.SHA1(), cert_status=ocsp.OCSPCertStatus.GOOD,
                this_update=now, next_update=now + datetime.timedelta(days=1), revocation_time=None, revocation_reason=None,
            ).responder_id(ocsp.OCSPResponderEncoding.HASH, issuer).sign(issuer_key, hashes.SHA256())
            responses.append(base64.b64encode(response.public_bytes(serialization.Encoding.DER)).decode())
    for name, lines in [("signet-cached.txt", cached), ("signet-nonce.txt", nonced), ("cfssl-responses.txt", responses)]:
        with open(os.path.join(out, name), "w") as file:
            file.write("\n".join(lines) + "\n")
    with open(os.path.join(out, "post.der"), "wb") as file:
        file.write(first)


if __name__ == "__main__":
    main()
