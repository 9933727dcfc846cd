#!/usr/bin/env python3
"""One TLS connection held open: a request now, and another on the same connection each time a line arrives on
stdin. Prints `status <code> serial <hex>` per request, or `closed` once the gateway has dropped the connection
(it is never re-opened: the point is to see whether the first one survives a certificate change)."""
import argparse
import socket
import ssl
import sys


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--name", required=True, help="SNI and Host, like curl --resolve")
    parser.add_argument("--cafile", required=True)
    options = parser.parse_args()

    context = ssl.create_default_context(cafile=options.cafile)
    raw = socket.create_connection((options.host, options.port), timeout=10)
    connection = context.wrap_socket(raw, server_hostname=options.name)
    serial = format(int(connection.getpeercert()["serialNumber"], 16), "x")
    reader = connection.makefile("rb")

    def request():
        connection.sendall(f"GET / HTTP/1.1\r\nHost: {options.name}\r\n\r\n".encode())
        status_line = reader.readline()
        if not status_line:
            print("closed", flush=True)
            return
        length = 0
        while (line := reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode().partition(":")
            if name.strip().lower() == "content-length":
                length = int(value)
        reader.read(length)
        print(f"status {status_line.split()[1].decode()} serial {serial}", flush=True)

    request()
    for _ in sys.stdin:
        try:
            request()
        except OSError as error:
            print(f"closed {error!r}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
