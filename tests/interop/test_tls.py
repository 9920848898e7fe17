"""The `mlflow` client against `shipyard server` over TLS, with the client's own TLS settings.

MLflow's client turns three variables into `requests` arguments on every request
(`mlflow.utils.credentials`, `mlflow.utils.rest_utils`):
  MLFLOW_TRACKING_SERVER_CERT_PATH=ca.pem      verify="ca.pem" (that CA only; SAN must match the URI's host)
  MLFLOW_TRACKING_INSECURE_TLS=true            verify=False
  MLFLOW_TRACKING_CLIENT_CERT_PATH=client.pem  cert="client.pem" (certificate and unencrypted key in one PEM)

This module makes its own PKI (a CA, a server and a client certificate, plus an unrelated CA with a
client certificate of its own) and starts its own two servers, each with a temporary --home:
one with --tls-cert/--tls-key, one that also asks for client certificates (--tls-client-ca).
It does not use the session server of conftest.py.
"""
import datetime
import ipaddress
import os
import re
import socket
import ssl
import subprocess
import time
import uuid
from pathlib import Path

import mlflow
import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from mlflow import MlflowClient

from conftest import launch_own_server, own_server_env, stop_own_server

# Shipyard's own TLS listener: nothing to compare with in `mlflow server` (it has no TLS options).
pytestmark = pytest.mark.shipyard_only

REPO = Path(__file__).resolve().parents[2]
TLS_VARS = ("MLFLOW_TRACKING_SERVER_CERT_PATH", "MLFLOW_TRACKING_INSECURE_TLS", "MLFLOW_TRACKING_CLIENT_CERT_PATH")


# ---------------------------------------------------------------------------------------------
# Test PKI


def _name(cn):
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Shipyard interop"),
                      x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _key():
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key):
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _cert_pem(cert):
    return cert.public_bytes(serialization.Encoding.PEM)


def _make_ca(cn):
    key = _key()
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder()
            .subject_name(_name(cn)).issuer_name(_name(cn))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                         crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))
    return cert, key


def _issue(ca_cert, ca_key, cn, eku, sans=None):
    key = _key()
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (x509.CertificateBuilder()
               .subject_name(_name(cn)).issuer_name(ca_cert.subject)
               .public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(hours=1))
               .not_valid_after(now + datetime.timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
               .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                            data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                            crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
               .add_extension(x509.ExtendedKeyUsage([eku]), critical=False)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False))
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(ca_key, hashes.SHA256()), key


class Pki:
    def __init__(self, root):
        root = Path(root)
        ca_cert, ca_key = _make_ca("Shipyard interop test CA")
        server_cert, server_key = _issue(
            ca_cert, ca_key, "shipyard test server", ExtendedKeyUsageOID.SERVER_AUTH,
            sans=[x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")])
        client_cert, client_key = _issue(ca_cert, ca_key, "alice", ExtendedKeyUsageOID.CLIENT_AUTH)
        other_ca_cert, other_ca_key = _make_ca("Unrelated CA")
        rogue_cert, rogue_key = _issue(other_ca_cert, other_ca_key, "mallory", ExtendedKeyUsageOID.CLIENT_AUTH)

        self.ca = root / "ca.pem"
        self.ca.write_bytes(_cert_pem(ca_cert))
        self.server_cert = root / "server.pem"
        self.server_cert.write_bytes(_cert_pem(server_cert))
        self.server_key = root / "server.key"
        self.server_key.write_bytes(_key_pem(server_key))
        # What MLFLOW_TRACKING_CLIENT_CERT_PATH takes: the certificate and its unencrypted key, one file.
        self.client = root / "client.pem"
        self.client.write_bytes(_cert_pem(client_cert) + _key_pem(client_key))
        self.other_ca = root / "other-ca.pem"
        self.other_ca.write_bytes(_cert_pem(other_ca_cert))
        self.rogue_client = root / "rogue-client.pem"
        self.rogue_client.write_bytes(_cert_pem(rogue_cert) + _key_pem(rogue_key))
        for key_file in (self.server_key, self.client, self.rogue_client):
            os.chmod(key_file, 0o600)


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return Pki(tmp_path_factory.mktemp("pki"))


# ---------------------------------------------------------------------------------------------
# Servers




class TlsServer:
    def __init__(self, proc, url, log_path):
        self.proc = proc
        self.url = url
        self.host, port = url.rsplit("//", 1)[1].rsplit(":", 1)
        self.port = int(port)
        self.log_path = log_path

    def log_tail(self, n=40):
        try:
            return "".join(open(self.log_path, errors="replace").readlines()[-n:])
        except OSError:
            return ""


def _start_server(workdir, pki, client_ca=None):
    workdir = Path(workdir)
    args = ["--host", "127.0.0.1", "--tls-cert", str(pki.server_cert), "--tls-key", str(pki.server_key)]
    if client_ca is not None:
        args += ["--tls-client-ca", str(client_ca)]
    log_path = workdir / "server.log"
    proc, url = launch_own_server(workdir / "home", args, own_server_env(), log_path)
    if url is None:
        raise RuntimeError(f"shipyard server exited with {proc.returncode}:\n{open(log_path).read()[-3000:]}")
    assert url.startswith("https://127.0.0.1:"), url
    return TlsServer(proc, url, log_path)


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory, pki):
    srv = _start_server(tmp_path_factory.mktemp("tls-server"), pki)
    yield srv
    stop_own_server(srv.proc)
    assert srv.proc.returncode == 0, srv.log_tail()


@pytest.fixture(scope="module")
def mtls_server(tmp_path_factory, pki):
    srv = _start_server(tmp_path_factory.mktemp("mtls-server"), pki, client_ca=pki.ca)
    yield srv
    stop_own_server(srv.proc)
    assert srv.proc.returncode == 0, srv.log_tail()


@pytest.fixture(autouse=True)
def no_tls_settings(monkeypatch):
    """Each test starts from no TLS setting at all; it sets what it needs."""
    for var in TLS_VARS:
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def fluent(monkeypatch):
    """Points the fluent API at a URL for one test, then puts back the global tracking URI."""
    from mlflow.tracking._tracking_service import utils as tracking_utils

    old = tracking_utils._tracking_uri

    def use(url):
        monkeypatch.setenv("MLFLOW_TRACKING_URI", url)  # set_tracking_uri overwrites it; monkeypatch restores it
        mlflow.set_tracking_uri(url)

    yield use
    while mlflow.active_run() is not None:
        mlflow.end_run()
    mlflow.set_tracking_uri(old)


def unique(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def _tls_error_text(exc):
    """The exception and its causes as one string (requests wraps urllib3 wraps ssl)."""
    parts, seen = [], set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        parts.append(f"{type(exc).__name__}: {exc}")
        exc = exc.__cause__ or exc.__context__
    return " | ".join(parts)


# ---------------------------------------------------------------------------------------------
# 1-3: server certificate checks of the client


def test_server_cert_path_round_trip(tls_server, pki, monkeypatch, fluent, tmp_path):
    monkeypatch.setenv("MLFLOW_TRACKING_SERVER_CERT_PATH", str(pki.ca))
    fluent(tls_server.url)
    client = MlflowClient(tracking_uri=tls_server.url)

    name = unique("tls-exp")
    exp_id = mlflow.create_experiment(name)
    assert client.get_experiment(exp_id).name == name

    note = tmp_path / "note.txt"
    note.write_text("carried over TLS\n")
    with mlflow.start_run(experiment_id=exp_id) as run:
        mlflow.log_param("alpha", "0.5")
        mlflow.log_metric("loss", 0.25, step=3)
        mlflow.log_artifact(str(note))
    rid = run.info.run_id

    got = client.get_run(rid)
    assert got.info.experiment_id == exp_id
    assert got.info.status == "FINISHED"
    # Proxied artifacts: the file goes through the HTTPS server, not straight to its disk.
    assert got.info.artifact_uri == f"mlflow-artifacts:/{exp_id}/{rid}/artifacts"
    assert got.data.params == {"alpha": "0.5"}
    assert got.data.metrics == {"loss": 0.25}
    history = client.get_metric_history(rid, "loss")
    assert [(m.value, m.step) for m in history] == [(0.25, 3)]

    listed = {f.path: f for f in client.list_artifacts(rid)}
    assert set(listed) == {"note.txt"}
    assert not listed["note.txt"].is_dir
    assert listed["note.txt"].file_size == len("carried over TLS\n")
    local = client.download_artifacts(rid, "note.txt", str(tmp_path / "out"))
    assert Path(local).read_text() == "carried over TLS\n"


@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")
def test_insecure_tls_skips_verification(tls_server, pki, monkeypatch):
    # Made with the CA, then read back with verification off (MLFLOW_TRACKING_INSECURE_TLS, no CA).
    monkeypatch.setenv("MLFLOW_TRACKING_SERVER_CERT_PATH", str(pki.ca))
    name = unique("tls-insecure")
    exp_id = MlflowClient(tracking_uri=tls_server.url).create_experiment(name)
    monkeypatch.delenv("MLFLOW_TRACKING_SERVER_CERT_PATH")

    monkeypatch.setenv("MLFLOW_TRACKING_INSECURE_TLS", "true")
    client = MlflowClient(tracking_uri=tls_server.url)
    found = client.search_experiments(filter_string=f"name = '{name}'")
    assert [(e.experiment_id, e.name) for e in found] == [(exp_id, name)]
    assert client.get_experiment_by_name(name).experiment_id == exp_id


def test_insecure_and_cert_path_together_are_refused_by_the_client(tls_server, pki, monkeypatch):
    # MLflow's own rule (MlflowHostCreds): both at once is a configuration error, before any request.
    monkeypatch.setenv("MLFLOW_TRACKING_SERVER_CERT_PATH", str(pki.ca))
    monkeypatch.setenv("MLFLOW_TRACKING_INSECURE_TLS", "true")
    with pytest.raises(mlflow.exceptions.MlflowException, match="MLFLOW_TRACKING_INSECURE_TLS"):
        MlflowClient(tracking_uri=tls_server.url).search_experiments()


def test_no_tls_setting_rejects_the_test_ca(tls_server):
    client = MlflowClient(tracking_uri=tls_server.url)
    with pytest.raises(Exception) as info:
        client.search_experiments()
    text = _tls_error_text(info.value)
    assert "CERTIFICATE_VERIFY_FAILED" in text or "certificate verify failed" in text, text


def test_another_ca_as_server_cert_path_is_rejected(tls_server, pki, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_SERVER_CERT_PATH", str(pki.other_ca))
    with pytest.raises(Exception) as info:
        MlflowClient(tracking_uri=tls_server.url).search_experiments()
    text = _tls_error_text(info.value)
    assert "certificate verify failed" in text.lower(), text


def test_plain_http_to_the_tls_port_gets_no_answer(tls_server, pki, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_SERVER_CERT_PATH", str(pki.ca))
    http_url = f"http://127.0.0.1:{tls_server.port}"
    with pytest.raises(Exception) as info:
        MlflowClient(tracking_uri=http_url).search_experiments()
    assert "API request to" in str(info.value) or isinstance(info.value, requests.RequestException), \
        _tls_error_text(info.value)

    # At the socket: the server answers an HTTP request with a TLS alert (content type 21) and
    # closes; never an HTTP status line.
    with socket.create_connection((tls_server.host, tls_server.port), timeout=10) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        data = b""
        while True:
            try:
                chunk = sock.recv(4096)
            except (ConnectionResetError, socket.timeout):
                break
            if not chunk:
                break
            data += chunk
    assert not data.startswith(b"HTTP/"), data[:200]
    assert data == b"" or data[0] == 0x15, data[:200]

    # And the same server still answers HTTPS afterwards.
    r = requests.get(f"{tls_server.url}/health", verify=str(pki.ca), timeout=10)
    assert r.status_code == 200


# ---------------------------------------------------------------------------------------------
# 4: client certificates (--tls-client-ca): optional, but verified when sent


def test_client_cert_accepted(mtls_server, pki, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_SERVER_CERT_PATH", str(pki.ca))
    monkeypatch.setenv("MLFLOW_TRACKING_CLIENT_CERT_PATH", str(pki.client))
    client = MlflowClient(tracking_uri=mtls_server.url)
    name = unique("mtls-alice")
    exp_id = client.create_experiment(name, tags={"who": "alice"})
    run = client.create_run(exp_id)
    client.log_param(run.info.run_id, "cert", "client.pem")
    client.set_terminated(run.info.run_id)
    got = client.get_run(run.info.run_id)
    assert got.data.params == {"cert": "client.pem"}
    assert got.info.status == "FINISHED"
    assert client.get_experiment(exp_id).tags["who"] == "alice"


def test_client_cert_is_optional(mtls_server, pki, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_SERVER_CERT_PATH", str(pki.ca))
    client = MlflowClient(tracking_uri=mtls_server.url)
    name = unique("mtls-anon")
    exp_id = client.create_experiment(name)
    found = client.search_experiments(filter_string=f"name = '{name}'")
    assert [(e.experiment_id, e.name) for e in found] == [(exp_id, name)]


def test_client_cert_from_another_ca_fails(mtls_server, pki, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_SERVER_CERT_PATH", str(pki.ca))
    monkeypatch.setenv("MLFLOW_TRACKING_CLIENT_CERT_PATH", str(pki.rogue_client))
    name = unique("mtls-rogue")
    with pytest.raises(Exception) as info:
        MlflowClient(tracking_uri=mtls_server.url).create_experiment(name)
    text = _tls_error_text(info.value)
    # The client sees the server's unknown_ca alert, or (when the alert races the request it has
    # already written) the connection's end: an SSLError either way.
    assert "API request to" in str(info.value), text
    assert re.search(r"SSLError|unknown.ca|EOF occurred|Connection(Reset|Aborted)", text, re.I), text

    # Nothing reached the store: the anonymous (no certificate) client does not find it.
    monkeypatch.delenv("MLFLOW_TRACKING_CLIENT_CERT_PATH")
    assert MlflowClient(tracking_uri=mtls_server.url).get_experiment_by_name(name) is None


def test_client_cert_handshake_at_the_socket(mtls_server, pki):
    """The server requests a certificate; a good one or none is served, one from another CA is refused."""
    def connect(cert_file):
        ctx = ssl.create_default_context(cafile=str(pki.ca))
        if cert_file is not None:
            ctx.load_cert_chain(str(cert_file))
        raw = socket.create_connection((mtls_server.host, mtls_server.port), timeout=10)
        return ctx.wrap_socket(raw, server_hostname="127.0.0.1")

    def read_all(tls):
        data = b""
        while True:
            chunk = tls.recv(4096)
            if not chunk:
                return data
            data += chunk

    for cert_file in (pki.client, None):
        with connect(cert_file) as tls:
            tls.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            assert read_all(tls).startswith(b"HTTP/1.1 200"), cert_file

    # In TLS 1.3 the client finishes its side of the handshake before the server has checked its
    # certificate; the refusal comes as the server's unknown_ca alert at the first read. (Nothing
    # is sent first, so that the server's close cannot turn into a reset that hides the alert.)
    with pytest.raises(ssl.SSLError, match="(?i)unknown.ca"):
        with connect(pki.rogue_client) as tls:
            read_all(tls)

    def tls12_only(cert_file):
        ctx = ssl.create_default_context(cafile=str(pki.ca))
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(str(cert_file))
        with socket.create_connection((mtls_server.host, mtls_server.port), timeout=10) as raw:
            with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
                return tls.version()

    # In TLS 1.2 the handshake itself fails.
    assert tls12_only(pki.client) == "TLSv1.2"
    with pytest.raises(ssl.SSLError, match="(?i)unknown.ca"):
        tls12_only(pki.rogue_client)


# ---------------------------------------------------------------------------------------------
# 5: protocol versions and ALPN


def _handshake(server, pki, configure):
    ctx = ssl.create_default_context(cafile=str(pki.ca))
    configure(ctx)
    with socket.create_connection((server.host, server.port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            return tls.version(), tls.selected_alpn_protocol()


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1:DeprecationWarning")
def test_tls_1_1_is_refused(tls_server, pki):
    def tls11(ctx):
        # Let this OpenSSL really offer TLS 1.0/1.1 (its default security level would refuse to
        # send such a ClientHello at all), so that the refusal is the server's.
        ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
        ctx.minimum_version = ssl.TLSVersion.TLSv1
        ctx.maximum_version = ssl.TLSVersion.TLSv1_1

    with pytest.raises(ssl.SSLError) as info:
        _handshake(tls_server, pki, tls11)
    # An alert received from the server (rustls answers handshake_failure), not a client-side
    # refusal such as "no protocols available".
    message = str(info.value).upper()
    assert "ALERT_HANDSHAKE_FAILURE" in message or "ALERT_PROTOCOL_VERSION" in message, message
    assert "NO_PROTOCOLS_AVAILABLE" not in message, message


def test_tls_1_2_and_1_3_are_served(tls_server, pki):
    def at_least_12(ctx):
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2

    def only(version):
        def configure(ctx):
            ctx.minimum_version = version
            ctx.maximum_version = version
        return configure

    assert _handshake(tls_server, pki, at_least_12)[0] == "TLSv1.3"
    assert _handshake(tls_server, pki, only(ssl.TLSVersion.TLSv1_2))[0] == "TLSv1.2"
    assert _handshake(tls_server, pki, only(ssl.TLSVersion.TLSv1_3))[0] == "TLSv1.3"


def test_alpn_selects_http_1_1(tls_server, pki):
    def offer_h2_first(ctx):
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.set_alpn_protocols(["h2", "http/1.1"])

    version, alpn = _handshake(tls_server, pki, offer_h2_first)
    assert alpn == "http/1.1"
    assert version in ("TLSv1.2", "TLSv1.3")

    def offer_http11(ctx):
        ctx.set_alpn_protocols(["http/1.1"])

    assert _handshake(tls_server, pki, offer_http11)[1] == "http/1.1"
