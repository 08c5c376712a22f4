"""Signatures made as cosign and notation make them, with ``cryptography`` (no cosign or
notation CLI is packaged here): cosign's simple-signing payload, base64 signature
annotation, ``sha256-<hex>.sig`` tag or referrer manifest; the Notary Project's JWS and
COSE_Sign1 envelopes with an ``x5c`` chain. Plus a small CA to issue certificates."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import cbor2
import orjson
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

if TYPE_CHECKING:  # importable without pytest: benchmarks/trust_bench.py signs with it too
    from tests.conftest import Client

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


SIMPLESIGNING = "application/vnd.dev.cosign.simplesigning.v1+json"
COSIGN_ARTIFACT = "application/vnd.dev.cosign.artifact.sig.v1+json"
NOTARY = "application/vnd.cncf.notary.signature"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
EMPTY = b"{}"
EMPTY_DESCRIPTOR = {"mediaType": "application/vnd.oci.empty.v1+json", "digest": sha256(EMPTY), "size": 2}
NOW = dt.datetime.now(dt.UTC)
DAY = dt.timedelta(days=1)


def ec_key(curve: ec.EllipticCurve | None = None) -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(curve or ec.SECP256R1())


def rsa_key(bits: int = 2048) -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


def public_pem(key: PrivateKey) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def pem(certificate: x509.Certificate) -> str:
    return certificate.public_bytes(serialization.Encoding.PEM).decode()


def der(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.DER)


# -- certificates ------------------------------------------------------------------------------


@dataclass
class Issued:
    key: PrivateKey
    certificate: x509.Certificate


def issue(
    name: str,
    key: PrivateKey,
    issuer: Issued | None = None,
    ca: bool = False,
    not_before: dt.datetime = NOW - DAY,
    not_after: dt.datetime = NOW + 30 * DAY,
) -> Issued:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.certificate.subject if issuer else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if not ca:
        builder = builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), False)
    signer = issuer.key if issuer else key
    algorithm = None if isinstance(signer, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    return Issued(key, builder.sign(signer, algorithm))


def ca(name: str = "Test Root CA") -> Issued:
    return issue(name, ec_key(), ca=True, not_before=NOW - 365 * DAY, not_after=NOW + 365 * DAY)


# -- cosign ------------------------------------------------------------------------------------


def simple_signing_payload(digest: str, reference: str = "registry.test/app") -> bytes:
    return orjson.dumps(
        {
            "critical": {
                "identity": {"docker-reference": reference},
                "image": {"docker-manifest-digest": digest},
                "type": "cosign container image signature",
            },
            "optional": None,
        }
    )


def cosign_sign(key: PrivateKey, payload: bytes) -> bytes:
    """As cosign signs: ECDSA (SHA-256, SHA-384 on P-384) DER, RSA PKCS#1 v1.5, Ed25519."""
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return key.sign(payload)
    if isinstance(key, rsa.RSAPrivateKey):
        return key.sign(payload, padding.PKCS1v15(), hashes.SHA256())
    algorithm = hashes.SHA384() if key.curve.name == "secp384r1" else hashes.SHA256()
    return key.sign(payload, ec.ECDSA(algorithm))


@dataclass
class Artifact:
    """A manifest and the blobs it needs."""

    manifest: bytes
    blobs: list[bytes] = field(default_factory=list)
    media_type: str = OCI_MANIFEST

    @property
    def digest(self) -> str:
        return sha256(self.manifest)


def cosign_layer(
    key: PrivateKey,
    digest: str,
    certificate: Issued | None = None,
    chain: list[x509.Certificate] | None = None,
    payload: bytes | None = None,
) -> tuple[dict[str, Any], bytes]:
    payload = payload if payload is not None else simple_signing_payload(digest)
    annotations = {"dev.cosignproject.cosign/signature": base64.b64encode(cosign_sign(key, payload)).decode()}
    if certificate is not None:
        annotations["dev.sigstore.cosign/certificate"] = pem(certificate.certificate)
        annotations["dev.sigstore.cosign/chain"] = "".join(pem(c) for c in chain or [])
    descriptor = {
        "mediaType": SIMPLESIGNING,
        "digest": sha256(payload),
        "size": len(payload),
        "annotations": annotations,
    }
    return descriptor, payload


def cosign_tag_signature(layers: list[tuple[dict[str, Any], bytes]], docker: bool = False) -> Artifact:
    """cosign's tag-scheme signature manifest (config like cosign's, one layer per signature)."""
    config = orjson.dumps({"architecture": "", "os": "", "config": {}, "rootfs": {"type": "layers"}})
    body = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json" if docker else OCI_MANIFEST,
        "config": {
            "mediaType": "application/vnd.docker.container.image.v1+json"
            if docker
            else "application/vnd.oci.image.config.v1+json",
            "digest": sha256(config),
            "size": len(config),
        },
        "layers": [d for d, _ in layers],
    }
    media_type = body["mediaType"]
    assert isinstance(media_type, str)
    return Artifact(orjson.dumps(body), [config, *(p for _, p in layers)], media_type)


def referrer(
    artifact_type: str, layers: list[dict[str, Any]], blobs: list[bytes], subject: Artifact
) -> Artifact:
    body = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": artifact_type,
        "config": EMPTY_DESCRIPTOR,
        "layers": layers,
        "subject": {"mediaType": subject.media_type, "digest": subject.digest, "size": len(subject.manifest)},
    }
    return Artifact(orjson.dumps(body), [EMPTY, *blobs])


def cosign_referrer(layer: tuple[dict[str, Any], bytes], subject: Artifact) -> Artifact:
    return referrer(COSIGN_ARTIFACT, [layer[0]], [layer[1]], subject)


# -- notation ----------------------------------------------------------------------------------

_ALGS = {"PS256": (hashes.SHA256, -37), "PS384": (hashes.SHA384, -38), "PS512": (hashes.SHA512, -39)}
_ALGS |= {"ES256": (hashes.SHA256, -7), "ES384": (hashes.SHA384, -35), "ES512": (hashes.SHA512, -36)}


def alg_of(key: PrivateKey) -> str:
    if isinstance(key, rsa.RSAPrivateKey):
        return {2048: "PS256", 3072: "PS384", 4096: "PS512"}[key.key_size]
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return {"secp256r1": "ES256", "secp384r1": "ES384", "secp521r1": "ES512"}[key.curve.name]


def raw_sign(key: PrivateKey, alg: str, data: bytes) -> bytes:
    hash_type = _ALGS[alg][0]
    if isinstance(key, rsa.RSAPrivateKey):
        return key.sign(data, padding.PSS(padding.MGF1(hash_type()), hash_type().digest_size), hash_type())
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    r, s = decode_dss_signature(key.sign(data, ec.ECDSA(hash_type())))
    size = (key.curve.key_size + 7) // 8
    return r.to_bytes(size, "big") + s.to_bytes(size, "big")


def notation_payload(subject: Artifact, digest: str | None = None) -> bytes:
    target = {
        "mediaType": subject.media_type,
        "digest": digest or subject.digest,
        "size": len(subject.manifest),
    }
    return orjson.dumps({"targetArtifact": target})


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def jws_envelope(
    signer: Issued,
    chain: list[x509.Certificate],
    payload: bytes,
    signing_time: dt.datetime = NOW,
    extra_protected: dict[str, Any] | None = None,
    crit: list[str] | None = None,
    tamper: bool = False,
) -> bytes:
    alg = alg_of(signer.key)
    protected = {
        "alg": alg,
        "crit": crit or ["io.cncf.notary.signingScheme"],
        "cty": "application/vnd.cncf.notary.payload.v1+json",
        "io.cncf.notary.signingScheme": "notary.x509",
        "io.cncf.notary.signingTime": signing_time.strftime("%Y-%m-%dT%H:%M:%SZ"),
        **(extra_protected or {}),
    }
    protected_b64 = _b64url(json.dumps(protected).encode())
    payload_b64 = _b64url(payload)
    signature = raw_sign(signer.key, alg, f"{protected_b64}.{payload_b64}".encode())
    if tamper:
        payload_b64 = _b64url(payload.replace(b"sha256:", b"sha256:0", 1)[:-2] + b"}}")
    envelope = {
        "payload": payload_b64,
        "protected": protected_b64,
        "header": {
            "x5c": [base64.b64encode(der(c)).decode() for c in [signer.certificate, *chain]],
            "io.cncf.notary.signingAgent": "notation-go/1.1.0",
        },
        "signature": _b64url(signature),
    }
    return json.dumps(envelope).encode()


def cose_envelope(
    signer: Issued,
    chain: list[x509.Certificate],
    payload: bytes,
    signing_time: dt.datetime = NOW,
    crit: list[Any] | None = None,
    extra_protected: dict[Any, Any] | None = None,
    tamper: bool = False,
) -> bytes:
    alg = alg_of(signer.key)
    protected = {
        1: _ALGS[alg][1],
        2: crit or ["io.cncf.notary.signingScheme"],
        3: "application/vnd.cncf.notary.payload.v1+json",
        "io.cncf.notary.signingScheme": "notary.x509",
        "io.cncf.notary.signingTime": cbor2.CBORTag(1, int(signing_time.timestamp())),
        **(extra_protected or {}),
    }
    protected_bytes = cbor2.dumps(protected)
    to_be_signed = cbor2.dumps(["Signature1", protected_bytes, b"", payload])
    signature = raw_sign(signer.key, alg, to_be_signed)
    if tamper:
        payload = payload.replace(b'"size":', b'"size":1', 1)
    unprotected = {
        33: [der(c) for c in [signer.certificate, *chain]],
        "io.cncf.notary.signingAgent": "notation",
    }
    return cbor2.dumps(cbor2.CBORTag(18, [protected_bytes, unprotected, payload, signature]))


def notation_signature(
    envelope: bytes, subject: Artifact, cose: bool = False, old_client: bool = False
) -> Artifact:
    media_type = "application/cose" if cose else "application/jose+json"
    layer = {"mediaType": media_type, "digest": sha256(envelope), "size": len(envelope)}
    if old_client:  # notation before OCI 1.1 artifactType: the config's media type says it
        body = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": NOTARY, "digest": sha256(EMPTY), "size": 2},
            "layers": [layer],
            "subject": {
                "mediaType": subject.media_type,
                "digest": subject.digest,
                "size": len(subject.manifest),
            },
        }
        return Artifact(orjson.dumps(body), [EMPTY, envelope])
    return referrer(NOTARY, [layer], [envelope], subject)


# -- pushing -----------------------------------------------------------------------------------


async def push(
    client: Client,
    name: str,
    artifact: Artifact,
    reference: str | None = None,
    headers: dict[str, str] | None = None,
) -> None:
    for blob in artifact.blobs:
        resp = await client.post(
            f"/v2/{name}/blobs/uploads/", params={"digest": sha256(blob)}, data=blob, headers=headers or {}
        )
        assert resp.status == 201, await resp.text()
    resp = await client.put(
        f"/v2/{name}/manifests/{reference or artifact.digest}",
        data=artifact.manifest,
        headers={"Content-Type": artifact.media_type, **(headers or {})},
    )
    assert resp.status == 201, await resp.text()


def image(seed: int = 0) -> Artifact:
    config = orjson.dumps({"architecture": "amd64", "os": "linux", "seed": seed})
    layer = f"layer {seed}".encode() * 10
    body = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": sha256(config),
            "size": len(config),
        },
        "layers": [
            {
                "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                "digest": sha256(layer),
                "size": len(layer),
            }
        ],
    }
    return Artifact(orjson.dumps(body), [config, layer])


def index(children: list[Artifact]) -> Artifact:
    body = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [
            {
                "mediaType": c.media_type,
                "digest": c.digest,
                "size": len(c.manifest),
                "platform": {"os": "linux", "architecture": a},
            }
            for c, a in zip(children, ["amd64", "arm64", "s390x"], strict=False)
        ],
    }
    return Artifact(orjson.dumps(body), [], OCI_INDEX)


# -- sigstore bundles (cosign 3) ----------------------------------------------------------------

SIGSTORE_BUNDLE = "application/vnd.dev.sigstore.bundle.v0.3+json"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _pae(payload_type: str, payload: bytes) -> bytes:
    return b"DSSEv1 %d %s %d %s" % (len(payload_type), payload_type.encode(), len(payload), payload)


def sigstore_bundle(
    key: PrivateKey,
    subject: Artifact,
    certificate: Issued | None = None,
    dsse: bool = True,
    about: str | None = None,
) -> bytes:
    """A bundle as cosign 3 attaches to an image: a DSSE-wrapped in-toto statement about
    the image (or a message signature over its manifest), with a key hint or a certificate."""
    material: dict[str, Any] = (
        {"certificate": {"rawBytes": base64.b64encode(der(certificate.certificate)).decode()}}
        if certificate
        else {"publicKey": {"hint": "release"}}
    )
    bundle: dict[str, Any] = {"mediaType": SIGSTORE_BUNDLE, "verificationMaterial": material}
    if dsse:
        hex_digest = (about or subject.digest).removeprefix("sha256:")
        statement = orjson.dumps(
            {
                "_type": "https://in-toto.io/Statement/v1",
                "subject": [{"name": "registry.test/app", "digest": {"sha256": hex_digest}}],
                "predicateType": "https://sigstore.dev/cosign/sign/v1",
                "predicate": {},
            }
        )
        payload_type = "application/vnd.in-toto+json"
        bundle["dsseEnvelope"] = {
            "payload": base64.b64encode(statement).decode(),
            "payloadType": payload_type,
            "signatures": [
                {"sig": base64.b64encode(cosign_sign(key, _pae(payload_type, statement))).decode()}
            ],
        }
    else:
        bundle["messageSignature"] = {
            "messageDigest": {
                "algorithm": "SHA2_256",
                "digest": base64.b64encode(hashlib.sha256(subject.manifest).digest()).decode(),
            },
            "signature": base64.b64encode(cosign_sign(key, subject.manifest)).decode(),
        }
    return orjson.dumps(bundle)


def bundle_referrer(data: bytes, subject: Artifact) -> Artifact:
    layer = {"mediaType": SIGSTORE_BUNDLE, "digest": sha256(data), "size": len(data)}
    return referrer(SIGSTORE_BUNDLE, [layer], [data], subject)
