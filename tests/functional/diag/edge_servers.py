"""
Local stand-ins for the network an edge node sees, all on 127.0.0.1 only:

* :class:`ZmtpListener` -- accepts and sends a ZMTP 3 signature after ``delay``
  seconds (delay 0: a healthy master; delay > 0: a slow uplink; on loopback
  the kernel completes the TCP handshake itself, so only an answer the far
  end must send can stand in for a slow path);
* :class:`BlackHole` -- a listening socket whose accept queue is full, so new
  connects hang (nothing ever answers);
* :class:`Silent` -- accepts but never sends (a load balancer with no master);
* :func:`closed_port` -- a port nothing listens on (connect refused);
* :class:`HttpServer` -- http.server, optionally TLS with a test CA.
"""

import datetime
import http.server
import ipaddress
import socket
import ssl
import threading
import time

from saltext_edge.uplink import probe, quality

LOOPBACK = "127.0.0.1"


class _Acceptor:
    def __init__(self, host=LOOPBACK):
        self.host = host
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.conns = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self):
        self.sock.settimeout(0.1)
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.conns.append(conn)
            threading.Thread(target=self.handle, args=(conn,), daemon=True).start()

    def handle(self, conn):  # pragma: no cover - overridden
        pass

    @property
    def target(self):
        return quality.format_target(self.host, self.port)

    def close(self):
        self._stop.set()
        self._thread.join(2)
        self.sock.close()
        for conn in self.conns:
            try:
                conn.close()
            except OSError:
                pass


class ZmtpListener(_Acceptor):
    def __init__(self, delay=0.0, host=LOOPBACK):
        self.delay = delay
        super().__init__(host)

    def handle(self, conn):
        time.sleep(self.delay)
        try:
            conn.sendall(probe.ZMTP_SIGNATURE)
            time.sleep(1)
            conn.close()
        except OSError:
            pass


class Silent(_Acceptor):
    def handle(self, conn):
        time.sleep(30)


class BlackHole:
    """A listener whose accept queue is full: further connects never complete."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind((LOOPBACK, 0))
        self.sock.listen(0)
        self.port = self.sock.getsockname()[1]
        self.fillers = []
        for _ in range(8):
            c = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            c.setblocking(False)
            c.connect_ex((LOOPBACK, self.port))
            self.fillers.append(c)
        time.sleep(0.05)
        # prove it: a fresh connect must not complete
        c = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        c.settimeout(0.3)
        try:
            c.connect((LOOPBACK, self.port))
            hung = False
        except TimeoutError:
            hung = True
        finally:
            c.close()
        assert hung, "the accept-queue trick does not black-hole connects on this kernel"

    @property
    def target(self):
        return f"{LOOPBACK}:{self.port}"

    def close(self):
        for c in self.fillers:
            c.close()
        self.sock.close()


def closed_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind((LOOPBACK, 0))
    port = s.getsockname()[1]
    s.close()
    return port


def make_ca_and_cert(tmp_path):
    """A test CA and a server certificate for 127.0.0.1 signed by it (PEM paths)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "edge test CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, LOOPBACK)]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(LOOPBACK))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    ca_path = tmp_path / "ca.pem"
    cert_path = tmp_path / "server.pem"
    key_path = tmp_path / "server.key"
    ca_path.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return str(ca_path), str(cert_path), str(key_path)


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path.startswith("/slow"):
            time.sleep(5)
        status = 500 if self.path.startswith("/error") else 200
        body = b"ok\n"
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_HEAD = do_GET

    def log_message(self, *args):
        pass


class HttpServer:
    def __init__(self, certfile=None, keyfile=None):
        self.httpd = http.server.ThreadingHTTPServer((LOOPBACK, 0), _Handler)
        self.httpd.daemon_threads = True
        self.scheme = "http"
        if certfile:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(certfile, keyfile)
            self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
            self.scheme = "https"
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True
        )
        self.thread.start()

    def url(self, path="/"):
        return f"{self.scheme}://{LOOPBACK}:{self.port}{path}"

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()
