#!/usr/bin/env python3
"""Prepares the OCSP benchmark: issues COUNT certificates from Signet (plain HTTP, one pre-generated CSR body a line),
then writes, for wrk's get.lua, the GET paths of OCSP requests about them (SHA-1 CertIDs, as RFC 5019 clients send):
signet-cached.txt (no nonce: cached answers), signet-nonce.txt (a nonce each: signed per request) and
openssl-cached.txt (the same requests for `openssl ocsp -index`, which serves at /), plus that responder's index.txt.
"""
import base64
import json
import os
import sys
import urllib.parse
import urllib.request

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp


def main():
    base, token, bodies_file, count, issuer_file, out = sys.argv[1:7]
    issuer = x509.load_pem_x509_certificate(open(issuer_file, "rb").read())
    cached, nonced, peer, index = [], [], [], []
    with open(bodies_file) as bodies:
        for _, body in zip(range(int(count)), bodies):
            request = urllib.request.Request(f"{base}/v1/certificates", data=body.encode(), method="POST",
                                             headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
            with urllib.request.urlopen(request, timeout=30) as answer:
                chain = json.load(answer)["chain"]
            leaf = x509.load_pem_x509_certificate(chain.encode())
            def encoded(with_nonce):
                builder = ocsp.OCSPRequestBuilder().add_certificate(leaf, issuer, hashes.SHA1())
                if with_nonce:
                    builder = builder.add_extension(x509.OCSPNonce(os.urandom(16)), critical=False)
                der = builder.build().public_bytes(serialization.Encoding.DER)
                return urllib.parse.quote(base64.b64encode(der).decode(), safe="")
            cached.append("/ocsp/" + encoded(False))
            nonced.append("/ocsp/" + encoded(True))
            peer.append("/" + cached[-1][len("/ocsp/"):])
            expiry = leaf.not_valid_after_utc.strftime("%y%m%d%H%M%SZ")
            index.append(f"V\t{expiry}\t\t{leaf.serial_number:X}\tunknown\t/CN={leaf.subject.rfc4514_string()[3:]}")
    for name, lines in [("signet-cached.txt", cached), ("signet-nonce.txt", nonced), ("openssl-cached.txt", peer), ("index.txt", index)]:
        with open(os.path.join(out, name), "w") as file:
            file.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
