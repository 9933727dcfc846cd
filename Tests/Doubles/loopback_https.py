"""What every test double here needs to serve HTTPS on loopback: a throwaway CA whose certificate clients are given
(`<dir>/ca.crt`), a server certificate for localhost, 127.0.0.1 and ::1, and a threading HTTP server."""
import datetime
import http.server
import ipaddress
import os
import socketserver
import ssl

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def make_tls(directory: str, ca_name: str, server_name: str, dns_names=None) -> ssl.SSLContext:
    """Writes ca.crt and server.pem to `directory` and returns the server's TLS context. The certificate is for
    localhost, 127.0.0.1 and ::1, or for `dns_names` alone (an API server reached by an address its certificate
    does not name, as kubeconfigs with tls-server-name describe)."""
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    issuer = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, ca_name)])
    ca = (x509.CertificateBuilder().subject_name(issuer).issuer_name(issuer).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
          .not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True).sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    names = ([x509.DNSName(name) for name in dns_names] if dns_names else
             [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.IPAddress(ipaddress.ip_address("::1"))])
    cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, server_name)]))
            .issuer_name(issuer).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .sign(ca_key, hashes.SHA256()))
    pem = serialization.Encoding.PEM
    os.makedirs(directory, exist_ok=True)
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


def serve_https(directory: str, port: int, handler, ca_name: str, server_name: str, dns_names=None) -> Server:
    """A server on 127.0.0.1:`port` (0: any free port) speaking TLS with a fresh certificate."""
    server = Server(("127.0.0.1", port), handler)
    server.socket = make_tls(directory, ca_name, server_name, dns_names).wrap_socket(server.socket, server_side=True)
    return server
