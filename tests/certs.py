"""A private CA for the HTTPS tests, made with ``cryptography``: a root, an intermediate,
and server certificates whose file holds the chain (server, then intermediate), so a
client that trusts only the root accepts the server only if the whole chain is served.
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

_DAY = datetime.timedelta(days=1)


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _sign(
    subject: x509.Name,
    public_key: ec.EllipticCurvePublicKey,
    issuer: x509.Name,
    issuer_key: ec.EllipticCurvePrivateKey,
    extensions: list[tuple[x509.ExtensionType, bool]],
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _DAY)
        .not_valid_after(now + 30 * _DAY)
    )
    for extension, critical in extensions:
        builder = builder.add_extension(extension, critical)
    return builder.sign(issuer_key, hashes.SHA256())


def _ca_extensions(key: ec.EllipticCurvePrivateKey) -> list[tuple[x509.ExtensionType, bool]]:
    return [
        (x509.BasicConstraints(ca=True, path_length=None), True),
        (
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            True,
        ),
        (x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False),
    ]


@dataclass(frozen=True)
class ServerCert:
    chain: Path  # server certificate, then the intermediate
    key: Path
    serial: int


class PrivateCA:
    """A root CA (``ca_cert``, the file clients trust) with one intermediate CA."""

    def __init__(self, directory: Path, name: str = "regd test") -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self._root_key = ec.generate_private_key(ec.SECP256R1())
        root_name = _name(f"{name} root CA")
        root = _sign(
            root_name, self._root_key.public_key(), root_name, self._root_key, _ca_extensions(self._root_key)
        )
        self._intermediate_key = ec.generate_private_key(ec.SECP256R1())
        self._intermediate_name = _name(f"{name} intermediate CA")
        self._intermediate = _sign(
            self._intermediate_name,
            self._intermediate_key.public_key(),
            root_name,
            self._root_key,
            _ca_extensions(self._intermediate_key),
        )
        self.ca_cert = directory / "ca.crt"
        self.ca_cert.write_bytes(_pem(root))

    def issue(self, label: str, hosts: list[str]) -> ServerCert:
        """A server certificate for ``hosts`` (DNS names or IP addresses)."""
        key = ec.generate_private_key(ec.SECP256R1())
        names: list[x509.GeneralName] = []
        for host in hosts:
            try:
                names.append(x509.IPAddress(ipaddress.ip_address(host)))
            except ValueError:
                names.append(x509.DNSName(host))
        cert = _sign(
            _name(hosts[0]),
            key.public_key(),
            self._intermediate_name,
            self._intermediate_key,
            [
                (x509.SubjectAlternativeName(names), False),
                (x509.BasicConstraints(ca=False, path_length=None), True),
                (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False),
            ],
        )
        chain = self.directory / f"{label}.crt"
        key_path = self.directory / f"{label}.key"
        chain.write_bytes(_pem(cert) + _pem(self._intermediate))
        key_path.write_bytes(_key_pem(key))
        return ServerCert(chain, key_path, cert.serial_number)


def serial_of(der: bytes) -> int:
    """The serial number of a DER certificate (as ``SSLObject.getpeercert(True)`` gives)."""
    return x509.load_der_x509_certificate(der).serial_number
