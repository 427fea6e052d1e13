"""Who is who in a closed Flower deployment: SuperNode keys, their fingerprints, which client each
key serves, and the TLS certificates of a throwaway local deployment.

A SuperNode's identity is its EC key pair (`flower-supernode --auth-supernode-private-key KEY`).
The operator registers its public key with the SuperLink (`flwr supernode register KEY.pub`) and
assigns it a client when writing the app (`python -m fedtextgrad.flower app --node K=KEY.pub`).
Keys are compared by their OpenSSH fingerprint: `ssh-keygen -lf KEY.pub` prints the same
`SHA256:...`, and the SuperLink hands the ServerApp every node's public key (`NodeInfo`)."""

from __future__ import annotations

import base64
import datetime
import hashlib
import ipaddress
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from fedtextgrad.errors import ConfigError

FINGERPRINT_PREFIX = "SHA256:"
_FINGERPRINT_LENGTH = len(FINGERPRINT_PREFIX) + 43  # base64 of 32 bytes, without padding


def fingerprint(public_key: bytes) -> str:
    """The OpenSSH SHA256 fingerprint of a public key, given in PEM (as the SuperLink stores
    it) or in OpenSSH form (a `.pub` file). Raises ValueError for anything else."""
    text = public_key.strip()
    try:
        if text.startswith(b"-----BEGIN"):
            key = serialization.load_pem_public_key(text)
        else:
            key = serialization.load_ssh_public_key(text)
        line = key.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    except (ValueError, TypeError, UnsupportedAlgorithm) as error:
        raise ValueError(f"not a public key: {error}") from None
    digest = hashlib.sha256(base64.b64decode(line.split()[1])).digest()
    return FINGERPRINT_PREFIX + base64.b64encode(digest).decode().rstrip("=")


def node_key(value: str) -> str:
    """A `--node` key: a `SHA256:` fingerprint as is, or the fingerprint of a public key file."""
    if value.startswith(FINGERPRINT_PREFIX):
        if len(value) != _FINGERPRINT_LENGTH:
            raise ConfigError(
                f"--node: '{value}' is not a SHA256 fingerprint: copy it whole from "
                "`ssh-keygen -lf KEY.pub`, or give the .pub file"
            )
        return value
    path = Path(value).expanduser()
    if not path.is_file():
        raise ConfigError(
            f"--node: '{value}' is neither a public key file nor a SHA256: fingerprint: give the "
            "SuperNode's .pub file (the one registered with `flwr supernode register`)"
        )
    try:
        return fingerprint(path.read_bytes())
    except ValueError:
        raise ConfigError(
            f"--node: {path} is not a public key: give the .pub file made by "
            "`ssh-keygen -t ecdsa -b 384`"
        ) from None


def assignments(options: Sequence[str], clients: int) -> dict[int, str]:
    """`--node K=KEY` options as {client: key fingerprint}: every client of the experiment gets
    exactly one key, and no key serves two clients."""
    assigned: dict[int, str] = {}
    for option in options:
        client, sep, key = option.partition("=")
        if not sep or not client.strip().isdecimal():
            raise ConfigError(
                f"--node '{option}' is not CLIENT=KEY: write e.g. --node 0=keys/client-0.pub"
            )
        number = int(client)
        if not 0 <= number < clients:
            raise ConfigError(
                f"--node {option}: the experiment has clients 0..{clients - 1}: fix the client id"
            )
        if number in assigned:
            raise ConfigError(f"--node: client {number} is given twice: give each client once")
        assigned[number] = node_key(key.strip())
    if len(set(assigned.values())) != len(assigned):
        raise ConfigError("--node: one key is given to two clients: give each its own key")
    if assigned and (missing := [c for c in range(clients) if c not in assigned]):
        raise ConfigError(
            f"--node: clients {missing} have no key: give every client its SuperNode's key"
        )
    return assigned


# -- keys and certificates of a throwaway local deployment ----------------------------------------


def write_node_key(path: Path) -> str:
    """A SuperNode key pair (EC P-384, as `ssh-keygen -t ecdsa -b 384` makes): `path` holds the
    private key (OpenSSH, mode 600), `path.pub` the public one. Returns its fingerprint."""
    key = ec.generate_private_key(ec.SECP384R1())
    path.parent.mkdir(parents=True, exist_ok=True)
    _write_private(
        path,
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.OpenSSH,
            serialization.NoEncryption(),
        ),
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    Path(f"{path}.pub").write_bytes(public + b"\n")
    return fingerprint(public)


def write_certificates(directory: Path, hosts: Iterable[str] = ("127.0.0.1", "localhost")) -> None:
    """A private CA (`ca.crt`) and a server certificate signed by it (`server.pem`,
    `server.key`) naming `hosts` (IP addresses and DNS names) in its subjectAltName."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fedtextgrad-local-ca")])
    ca = (
        _certificate(ca_name, ca_name, ca_key.public_key())
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    server_key = ec.generate_private_key(ec.SECP256R1())
    hosts = list(hosts)
    server = (
        _certificate(
            x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])]),
            ca_name,
            server_key.public_key(),
        )
        .add_extension(x509.SubjectAlternativeName([_host_name(h) for h in hosts]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    (directory / "ca.crt").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (directory / "server.pem").write_bytes(server.public_bytes(serialization.Encoding.PEM))
    _write_private(
        directory / "server.key",
        server_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )


def names_host(certificate: bytes, host: str) -> bool:
    """Whether a PEM certificate's subjectAltName names `host` (an IP address or a DNS name)."""
    cert = x509.load_pem_x509_certificate(certificate)
    try:
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return False
    return _host_name(host) in list(names)


def _certificate(subject: x509.Name, issuer: x509.Name, key) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=30))
    )


def _host_name(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def _write_private(path: Path, data: bytes) -> None:
    """Write a private key readable by its owner only, from the first byte on."""
    path.unlink(missing_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(data)
