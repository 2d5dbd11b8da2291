#!/usr/bin/env python3
"""Captures real ClientHello messages as seeds for the client_hello fuzz target.

A raw TCP listener on 127.0.0.1 records the first handshake message each client sends
(curl, openssl s_client, Python's ssl with a TLS 1.3 resumption ticket) and writes it to
fuzz/corpus/client_hello/. A Chrome-like ClientHello with GREASE values is built by hand.
Run from the repository root: python3 fuzz/make-seeds.py
"""
import os
import socket
import ssl
import struct
import subprocess
import tempfile
import threading

OUT = os.path.join("fuzz", "corpus", "client_hello")


def read_client_hello(conn):
    """Reassembles the first handshake message from TLS records."""
    data = b""
    conn.settimeout(5)
    while True:
        header = b""
        while len(header) < 5:
            chunk = conn.recv(5 - len(header))
            if not chunk:
                return None
            header += chunk
        rtype, _, length = struct.unpack("!BHH", header)
        body = b""
        while len(body) < length:
            chunk = conn.recv(length - len(body))
            if not chunk:
                return None
            body += chunk
        if rtype != 22:
            return None
        data += body
        if len(data) >= 4:
            need = 4 + int.from_bytes(data[1:4], "big")
            if len(data) >= need:
                return data[:need]


def capture(name, run_client):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]
    result = {}

    def serve():
        conn, _ = listener.accept()
        result["hello"] = read_client_hello(conn)
        conn.close()

    t = threading.Thread(target=serve)
    t.start()
    try:
        run_client(port)
    except Exception:
        pass  # the listener hangs up after the ClientHello; clients complain
    t.join(10)
    listener.close()
    hello = result.get("hello")
    if hello:
        with open(os.path.join(OUT, name), "wb") as f:
            f.write(hello)
        print(f"{name}: {len(hello)} bytes")
    else:
        print(f"{name}: not captured")


def run(cmd):
    subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, timeout=10)


def python_resumption_hello(port):
    """A TLS 1.3 ClientHello carrying a PSK: get a ticket from a real server first."""
    with tempfile.TemporaryDirectory() as d:
        key, cert = os.path.join(d, "k.pem"), os.path.join(d, "c.pem")
        run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
             "-nodes", "-keyout", key, "-out", cert, "-subj", "/CN=localhost", "-days", "1"])
        sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        sctx.load_cert_chain(cert, key)
        real = socket.socket()
        real.bind(("127.0.0.1", 0))
        real.listen(1)

        def serve():
            c, _ = real.accept()
            with sctx.wrap_socket(c, server_side=True) as s:
                s.sendall(b"x")
                try:
                    s.recv(1)
                except OSError:
                    pass

        t = threading.Thread(target=serve)
        t.start()
        cctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        cctx.check_hostname = False
        cctx.verify_mode = ssl.CERT_NONE
        cctx.set_alpn_protocols(["h2", "http/1.1"])
        with cctx.wrap_socket(socket.create_connection(real.getsockname()),
                              server_hostname="localhost") as s:
            s.recv(1)
            session = s.session
            s.sendall(b"y")
        t.join(5)
        real.close()
        with cctx.wrap_socket(socket.create_connection(("127.0.0.1", port)),
                              server_hostname="localhost", session=session):
            pass


def ext(kind, body):
    return struct.pack("!HH", kind, len(body)) + body


def vec(width, body):
    return len(body).to_bytes(width, "big") + body


def chrome_like_hello():
    """Shaped like Chrome's: GREASE cipher, extensions, group and version."""
    grease = [bytes([b, b]) for b in (0x0A, 0x2A, 0x4A, 0x6A, 0x8A)]
    ciphers = grease[0] + bytes.fromhex("130113021303c02bc02fc02cc030cca9cca8c013c014009c009d002f0035")
    exts = b"".join([
        ext(int.from_bytes(grease[1], "big"), b""),
        ext(0, vec(2, b"\x00" + vec(2, b"www.example.com"))),
        ext(23, b""),
        ext(65281, b"\x00"),
        ext(10, vec(2, grease[2] + bytes.fromhex("001d00170018"))),
        ext(11, vec(1, b"\x00")),
        ext(35, b""),
        ext(16, vec(2, vec(1, b"h2") + vec(1, b"http/1.1"))),
        ext(5, b"\x01\x00\x00\x00\x00"),
        ext(13, vec(2, bytes.fromhex("040308040401050308050501080606010201"))),
        ext(18, b""),
        ext(51, vec(2, grease[2] + vec(2, b"\x00") + b"\x00\x1d" + vec(2, os.urandom(32)))),
        ext(45, vec(1, b"\x01")),
        ext(43, vec(1, grease[3] + b"\x03\x04\x03\x03")),
        ext(27, vec(1, b"\x00\x02")),
        ext(int.from_bytes(grease[4], "big"), b"\x00"),
        ext(21, b"\x00" * 20),
    ])
    body = b"\x03\x03" + os.urandom(32) + vec(1, os.urandom(32)) + vec(2, ciphers) + b"\x01\x00" + vec(2, exts)
    return b"\x01" + vec(3, body)


def main():
    os.makedirs(OUT, exist_ok=True)
    capture("curl-http2-tls13", lambda p: run(
        ["curl", "-sk", "--http2", "--max-time", "3", f"https://127.0.0.1:{p}/"]))
    capture("curl-http11-tls12", lambda p: run(
        ["curl", "-sk", "--http1.1", "--tlsv1.2", "--tls-max", "1.2", "--max-time", "3",
         f"https://127.0.0.1:{p}/"]))
    capture("s_client-h2-http11-tls13", lambda p: run(
        ["openssl", "s_client", "-connect", f"127.0.0.1:{p}", "-alpn", "h2,http/1.1", "-tls1_3"]))
    capture("s_client-only-h2-tls12", lambda p: run(
        ["openssl", "s_client", "-connect", f"127.0.0.1:{p}", "-alpn", "h2", "-tls1_2"]))
    capture("s_client-no-alpn", lambda p: run(
        ["openssl", "s_client", "-connect", f"127.0.0.1:{p}"]))
    capture("python-tls13-psk-resumption", python_resumption_hello)
    with open(os.path.join(OUT, "chrome-like-grease"), "wb") as f:
        f.write(chrome_like_hello())
    print("chrome-like-grease: built")


if __name__ == "__main__":
    main()
