#!/usr/bin/env python3
"""The gateway side of a test: feeds haproxy from a kubernetes.io/tls Secret, as Istio's SDS feeds Envoy.

Polls the Secret through the Kubernetes API (bearer token, the double's CA). When its serial annotation changes,
hands the new leaf+chain+key to haproxy through the runtime API (`set ssl cert` then `commit ssl cert`), which
swaps the certificate for new handshakes and keeps established connections. With --crl-file, a changed `ca.crl` goes
the same way (`set ssl crl-file` then `commit ssl crl-file`, as Istio's SDS updates Envoy's validation context) and
into the file too, since the runtime API changes memory only. Prints one line per push.
"""
import argparse
import base64
import json
import socket
import ssl
import sys
import time
import urllib.request


def runtime_api(sock_path, command):
    """One command on haproxy's runtime API; an unreachable socket answers with the error, so the caller's push fails
    and is tried again on the next poll instead of ending the feed."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(10)
            sock.connect(sock_path)
            sock.sendall(command.encode())
            answer = b""
            while chunk := sock.recv(65536):
                answer += chunk
        return answer.decode()
    except OSError as error:
        return f"runtime API unreachable: {error}"


def describe_crls(pem):
    """Each CRL's number and revoked serials, for the log."""
    try:
        from cryptography import x509
    except ImportError:
        return "?"
    parts = []
    for block in pem.split("-----END X509 CRL-----")[:-1]:
        crl = x509.load_pem_x509_crl((block + "-----END X509 CRL-----\n").strip().encode() + b"\n")
        number = crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
        parts.append(f"#{number} revoking [{', '.join(format(r.serial_number, 'x') for r in crl)}]")
    return "; ".join(parts)


def push_crl(sock_path, crl_file, pem):
    """Replaces haproxy's CRLs for crl_file in memory; True when committed."""
    began = runtime_api(sock_path, f"set ssl crl-file {crl_file} <<\n{pem.strip()}\n\n")
    committed = runtime_api(sock_path, f"commit ssl crl-file {crl_file}\n")
    if "Success" not in committed:
        print(f"crl push failed: {began.strip()} / {committed.strip()}", flush=True)
        return False
    return True


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--socket", required=True)
    parser.add_argument("--crl-file", help="the path haproxy loaded its crl-file from, kept equal to the Secret's ca.crl")
    parser.add_argument("--push-crl", help="push the CRLs (PEM) of this file into --crl-file once, and exit (a test's own CRL)")
    parser.add_argument("--api")
    parser.add_argument("--token")
    parser.add_argument("--cafile")
    parser.add_argument("--namespace")
    parser.add_argument("--secret")
    parser.add_argument("--cert-file", help="the path haproxy loaded the certificate from")
    options = parser.parse_args()
    if options.push_crl:
        with open(options.push_crl) as file:
            return 0 if push_crl(options.socket, options.crl_file, file.read()) else 1
    if not all([options.api, options.token, options.cafile, options.namespace, options.secret, options.cert_file]):
        parser.error("following a Secret needs --api, --token, --cafile, --namespace, --secret and --cert-file")

    context = ssl.create_default_context(cafile=options.cafile)
    url = f"{options.api}/api/v1/namespaces/{options.namespace}/secrets/{options.secret}"
    served = None
    served_crl = None
    while True:
        try:
            request = urllib.request.Request(url, headers={"Authorization": f"Bearer {options.token}"})
            with urllib.request.urlopen(request, context=context, timeout=5) as answer:
                secret = json.load(answer)
        except Exception as error:  # the API server may be down in a fault test; keep serving what we have
            print(f"read failed: {error}", flush=True)
            time.sleep(0.5)
            continue
        serial = secret["metadata"].get("annotations", {}).get("signet.dev/serial")
        if serial and serial != served:
            pem = base64.b64decode(secret["data"]["tls.crt"]).decode() + base64.b64decode(secret["data"]["tls.key"]).decode()
            began = runtime_api(options.socket, f"set ssl cert {options.cert_file} <<\n{pem.strip()}\n\n")
            committed = runtime_api(options.socket, f"commit ssl cert {options.cert_file}\n")
            if "Success" in committed:
                served = serial
                print(f"pushed {serial}", flush=True)
            else:
                print(f"push failed: {began.strip()} / {committed.strip()}", flush=True)
        crl = secret.get("data", {}).get("ca.crl")
        if options.crl_file and crl and crl != served_crl:
            pem = base64.b64decode(crl).decode()
            if push_crl(options.socket, options.crl_file, pem):
                with open(options.crl_file, "w") as file:
                    file.write(pem)
                served_crl = crl
                print(f"{time.strftime('%H:%M:%S')} pushed ca.crl: {describe_crls(pem)}", flush=True)
        time.sleep(0.5)


if __name__ == "__main__":
    sys.exit(main())
