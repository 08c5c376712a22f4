"""Certificate chains to trust anchors (RFC 5280 path validation, the parts a signature
needs): each certificate is issued by the next and valid at the signing time, every
issuer is a CA, and the path ends at an anchor: a certificate of the chain that is an
anchor itself (a root, or a self-signed signing certificate), or one an anchor issued.
"""

from __future__ import annotations

import datetime as dt

from cryptography import x509
from cryptography.exceptions import InvalidSignature

from regd.trust.verdict import VerificationError


def _subject(certificate: x509.Certificate) -> str:
    return certificate.subject.rfc4514_string()[:200]


def _valid_at(certificate: x509.Certificate, when: dt.datetime) -> None:
    if not certificate.not_valid_before_utc <= when <= certificate.not_valid_after_utc:
        raise VerificationError(
            f"certificate {_subject(certificate)} was not valid at the signing time {when.isoformat()} "
            f"(valid {certificate.not_valid_before_utc.isoformat()} to "
            f"{certificate.not_valid_after_utc.isoformat()})"
        )


def _is_ca(certificate: x509.Certificate) -> bool:
    try:
        return bool(certificate.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def _issued_by(child: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        child.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def verify_chain(
    chain: list[x509.Certificate], anchors: tuple[x509.Certificate, ...], when: dt.datetime
) -> None:
    """Raise VerificationError unless ``chain`` (leaf first) leads to one of ``anchors``
    with every certificate on the way valid at ``when``."""
    if not chain:
        raise VerificationError("the signature carries no certificate")
    if not anchors:
        raise VerificationError("the project has no x509-ca trust anchor")
    for i, certificate in enumerate(chain):
        _valid_at(certificate, when)
        if i > 0:
            if not _is_ca(certificate):
                raise VerificationError(f"certificate {_subject(certificate)} is not a CA but issues another")
            if not _issued_by(chain[i - 1], certificate):
                raise VerificationError(f"certificate {_subject(chain[i - 1])} is not issued by the next one")
        if certificate in anchors:
            return
    last = chain[-1]
    for anchor in anchors:
        if _is_ca(anchor) and _issued_by(last, anchor):
            _valid_at(anchor, when)
            return
    raise VerificationError(
        f"certificate chain of {_subject(chain[0])} leads to no trust anchor of the project"
    )
