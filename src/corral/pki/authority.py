"""The control plane's certificate authority: signs server CSRs and keeps revocations. The
agent never imports this module (`pki.keys` is its side).

The CA key and certificate are created at first start under `<data-dir>/pki/` (key 0600).
Server certificates carry the server id as CN, the org id as O and the env id as OU, so the
gateway can map a client certificate to its server without a lookup table.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from corral.errors import Conflict, InvalidInput
from corral.pki.keys import fingerprint_of, signed_by, write_private

_CA_VALIDITY = dt.timedelta(days=3650)
_MIN_RSA_BITS = 2048
REPLICA_PREFIX = "replica:"
REPLICA_ORGANIZATION = "corral-replica"
ALREADY_ROTATING = ("a CA rotation is already under way; retire the old CA first "
                    "(corral ca retire-old)")
NOT_ROTATING = "no CA rotation is under way"


@dataclass(frozen=True)
class IssuedCertificate:
    pem: str
    serial: str
    not_after: dt.datetime


@dataclass(frozen=True)
class ServerIdentity:
    server_id: int
    organization_id: str
    environment_id: str
    serial: str
    issuer: str = ""
    """Fingerprint of the CA that signed the certificate (which side of a rotation it is on)."""




class CertificateAuthority:
    def __init__(self, key: ec.EllipticCurvePrivateKey, certificate: x509.Certificate) -> None:
        self._key = key
        self.certificate = certificate

    @classmethod
    def load_or_create(cls, directory: Path, common_name: str = "Corral CA") -> CertificateAuthority:
        """The single-process default: the key and certificate in `<data-dir>/pki/`."""
        directory.mkdir(parents=True, exist_ok=True)
        key_path, cert_path = directory / "ca.key", directory / "ca.pem"
        if key_path.exists() and cert_path.exists():
            return cls.from_pem(key_path.read_bytes(), cert_path.read_bytes())
        ca = cls.create(common_name)
        write_private(key_path, ca.key_pem)
        ca.write_certificate(cert_path)
        return ca

    @classmethod
    def from_pem(cls, key_pem: bytes, cert_pem: bytes) -> CertificateAuthority:
        key = serialization.load_pem_private_key(key_pem, password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise TypeError("the CA key is not an EC private key")
        return cls(key, x509.load_pem_x509_certificate(cert_pem))

    @classmethod
    def create(cls, common_name: str = "Corral CA") -> CertificateAuthority:
        """A new CA; its subject carries the date so that two generations (a rotation) are
        told apart by name as well as by key."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        name = x509.Name(
            [
                x509.NameAttribute(NameOID.COMMON_NAME, common_name),
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Corral"),
                x509.NameAttribute(NameOID.SERIAL_NUMBER, now.strftime("%Y%m%dT%H%M%S%f")),
            ]
        )
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + _CA_VALIDITY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True, content_commitment=False, key_encipherment=False,
                    data_encipherment=False, key_agreement=False, key_cert_sign=True,
                    crl_sign=True, encipher_only=False, decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
            .sign(key, hashes.SHA256())
        )
        return cls(key, cert)

    @property
    def key_pem(self) -> bytes:
        return self._key.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption())

    def write_certificate(self, cert_path: Path) -> None:
        """Whole or absent: whoever reads ca.pem as soon as it appears (an operator's script, a
        test waiting for start-up) never sees half of it."""
        cert_path.parent.mkdir(parents=True, exist_ok=True)
        _write_whole(cert_path, self.certificate.public_bytes(serialization.Encoding.PEM))

    @property
    def fingerprint(self) -> str:
        """`sha256:<hex>` of the CA certificate: what `corral agent register --ca-fingerprint`
        pins when it must cross a network it does not trust."""
        return fingerprint_of(self.certificate)

    @property
    def certificate_pem(self) -> str:
        return self.certificate.public_bytes(serialization.Encoding.PEM).decode()

    def sign_server_csr(
        self,
        csr: x509.CertificateSigningRequest | str,
        *,
        server_id: int,
        organization_id: str,
        environment_id: str,
        validity_days: int,
        serial: int | None = None,
        not_after: dt.datetime | None = None,
    ) -> IssuedCertificate:
        """A CSR given as text is checked here (`load_csr`); a parsed one was checked by its
        caller. `serial` and `not_after` may be chosen beforehand (to record them first)."""
        request = load_csr(csr) if isinstance(csr, str) else csr
        subject = x509.Name(
            [
                x509.NameAttribute(NameOID.COMMON_NAME, str(server_id)),
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization_id),
                x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, environment_id),
            ]
        )
        key = request.public_key()
        if not isinstance(key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey):
            raise InvalidInput("signatureRequest must use an RSA or EC key")  # load_csr's rule
        return self._issue(
            subject, key, validity_days, ExtendedKeyUsageOID.CLIENT_AUTH,
            sans=None, serial=serial, not_after=not_after,
        )

    def issue_tls_server_certificate(
        self, hostnames: list[str], validity_days: int = 365
    ) -> tuple[IssuedCertificate, bytes]:
        """A certificate and key for the control plane's own TLS endpoints (the gateway)."""
        key = ec.generate_private_key(ec.SECP256R1())
        names: list[x509.GeneralName] = []
        for host in dict.fromkeys([*hostnames, "localhost", "127.0.0.1"]):
            try:
                names.append(x509.IPAddress(ipaddress.ip_address(host)))
            except ValueError:
                names.append(x509.DNSName(host))
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "corral-control-plane")])
        issued = self._issue(
            subject, key.public_key(), validity_days, ExtendedKeyUsageOID.SERVER_AUTH, sans=names
        )
        key_pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        return issued, key_pem

    def _issue(
        self,
        subject: x509.Name,
        public_key: ec.EllipticCurvePublicKey | rsa.RSAPublicKey,
        validity_days: int,
        usage: x509.ObjectIdentifier,
        sans: list[x509.GeneralName] | None,
        serial: int | None = None,
        not_after: dt.datetime | None = None,
    ) -> IssuedCertificate:
        now = dt.datetime.now(dt.UTC)
        not_after = not_after or now + dt.timedelta(days=validity_days)
        serial = serial or x509.random_serial_number()
        # valid a little before now, for clocks a little behind; little enough not to move
        # the renewal point (two thirds of the life) of a short certificate
        backdate = min(dt.timedelta(minutes=5), (not_after - now) / 10)
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self.certificate.subject)
            .public_key(public_key)
            .serial_number(serial)
            .not_valid_before(now - backdate)
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self._key.public_key()), False
            )
        )
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        cert = builder.sign(self._key, hashes.SHA256())
        return IssuedCertificate(
            pem=cert.public_bytes(serialization.Encoding.PEM).decode(),
            serial=format(serial, "x"),
            not_after=not_after,
        )

    def write_tls_pair(self, hostnames: list[str], directory: Path, stem: str) -> tuple[Path, Path]:
        """Issue a server certificate for our own endpoints and keep it as `<stem>.pem/.key`."""
        names = [n for n in hostnames if n and n not in ("0.0.0.0", "::")]
        issued, key = self.issue_tls_server_certificate(names)
        cert_path, key_path = directory / f"{stem}.pem", directory / f"{stem}.key"
        cert_path.write_text(issued.pem)
        write_private(key_path, key)
        return cert_path, key_path

    def issue_replica_certificate(self, replica_id: str) -> tuple[IssuedCertificate, bytes]:
        """A client certificate for one control-plane replica to call another's gateway (ADR
        0008). Agents cannot obtain one: the CA writes the subject of every server certificate
        itself (CN = a server id, O = an organization id)."""
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([
            x509.NameAttribute(NameOID.COMMON_NAME, f"{REPLICA_PREFIX}{replica_id}"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, REPLICA_ORGANIZATION),
        ])
        issued = self._issue(subject, key.public_key(), 365, ExtendedKeyUsageOID.CLIENT_AUTH,
                             sans=None)
        return issued, key.private_bytes(serialization.Encoding.PEM,
                                         serialization.PrivateFormat.PKCS8,
                                         serialization.NoEncryption())

    def identify_replica(self, cert: x509.Certificate) -> str:
        """The replica id of a (verified) replica certificate; InvalidInput for any other."""
        self._check_issued(cert)
        cn = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        org = cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
        if not (cn and org and org[0].value == REPLICA_ORGANIZATION
                and str(cn[0].value).startswith(REPLICA_PREFIX)):
            raise InvalidInput("certificate does not name a control-plane replica")
        return str(cn[0].value).removeprefix(REPLICA_PREFIX)

    def _check_issued(self, cert: x509.Certificate) -> None:
        ours = self.certificate.public_key()
        assert isinstance(ours, ec.EllipticCurvePublicKey), "the CA's key is an EC key"
        try:
            ours.verify(cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(hashes.SHA256()))
        except InvalidSignature as exc:
            raise InvalidInput("certificate was not issued by this control plane") from exc

    def identify(self, cert: x509.Certificate) -> ServerIdentity:
        """Map a (verified) client certificate to the server it was issued to."""
        subject = cert.subject

        def attr(oid: x509.ObjectIdentifier) -> str:
            values = subject.get_attributes_for_oid(oid)
            if not values:
                raise InvalidInput("certificate subject lacks a required attribute")
            return str(values[0].value)

        self._check_issued(cert)
        cn = attr(NameOID.COMMON_NAME)
        if not cn.isdigit():
            raise InvalidInput("certificate does not name a server")
        return ServerIdentity(
            server_id=int(cn),
            organization_id=attr(NameOID.ORGANIZATION_NAME),
            environment_id=attr(NameOID.ORGANIZATIONAL_UNIT_NAME),
            serial=format(cert.serial_number, "x"),
            issuer=self.fingerprint,
        )

    def issued(self, cert: x509.Certificate) -> bool:
        return cert.issuer == self.certificate.subject and signed_by(cert, self.certificate)


@dataclass(frozen=True)
class Authorities:
    """The CAs the control plane trusts: the one that signs, and during a rotation the one
    being retired (docs/certificates.md). Agents get both; the gateway presents a certificate
    of the older, which every agent already trusts, until the rotation ends."""

    signer: CertificateAuthority
    retiring: CertificateAuthority | None = None

    @property
    def trusted(self) -> list[CertificateAuthority]:
        return [self.signer] + ([self.retiring] if self.retiring is not None else [])

    @property
    def presenting(self) -> CertificateAuthority:
        return self.retiring or self.signer

    @property
    def bundle_pem(self) -> str:
        """Every trusted CA's certificate, the signer's first."""
        return "".join(ca.certificate_pem for ca in self.trusted)

    def write_bundle(self, path: Path) -> None:
        """Whole or absent (`ca.pem`: what operators, scripts and `agent register` trust)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        _write_whole(path, self.bundle_pem.encode())

    def _issuer(self, cert: x509.Certificate) -> CertificateAuthority:
        for ca in self.trusted:
            if ca.issued(cert):
                return ca
        raise InvalidInput("certificate was not issued by a CA this control plane trusts")

    def identify(self, cert: x509.Certificate) -> ServerIdentity:
        return self._issuer(cert).identify(cert)

    def identify_replica(self, cert: x509.Certificate) -> str:
        return self._issuer(cert).identify_replica(cert)


class FileAuthorities:
    """The CAs of a control plane without a master key, in `<data-dir>/pki/`: `ca.key` and
    `ca.pem` (the signer; `ca.pem` also carries the retiring CA's certificate, so it is the
    bundle operators and agents trust), and during a rotation `ca-retiring.key/.pem`. A
    rotation writes the new CA as `ca-next.*` first and renames it into place; `load` finishes
    one that a crash interrupted, or forgets one that never got that far."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def _path(self, stem: str, suffix: str) -> Path:
        return self.directory / f"{stem}.{suffix}"

    def load(self) -> Authorities:
        d = self.directory
        d.mkdir(parents=True, exist_ok=True)
        if self._path("ca-next", "pem").exists():
            if self._path("ca-next", "key").exists():
                os.replace(self._path("ca-next", "key"), self._path("ca", "key"))
            os.replace(self._path("ca-next", "pem"), self._path("ca", "pem"))
        elif self._path("ca-next", "key").exists():
            self._path("ca-next", "key").unlink()
            for suffix in ("key", "pem"):
                self._path("ca-retiring", suffix).unlink(missing_ok=True)
        signer = CertificateAuthority.load_or_create(d)
        retiring = None
        if self._path("ca-retiring", "key").exists() and self._path("ca-retiring", "pem").exists():
            retiring = CertificateAuthority.from_pem(self._path("ca-retiring", "key").read_bytes(),
                                                     self._path("ca-retiring", "pem").read_bytes())
        return Authorities(signer, retiring)

    def rotate(self) -> Authorities:
        current = self.load()
        if current.retiring is not None:
            raise Conflict(ALREADY_ROTATING)
        new = CertificateAuthority.create()
        self._write("ca-retiring", current.signer, current.signer.certificate_pem)
        self._write("ca-next", new, new.certificate_pem + current.signer.certificate_pem)
        os.replace(self._path("ca-next", "key"), self._path("ca", "key"))
        os.replace(self._path("ca-next", "pem"), self._path("ca", "pem"))
        return Authorities(new, current.signer)

    def retire(self) -> Authorities:
        current = self.load()
        if current.retiring is None:
            raise Conflict(NOT_ROTATING)
        _write_whole(self._path("ca", "pem"), current.signer.certificate_pem.encode())
        for suffix in ("key", "pem"):
            self._path("ca-retiring", suffix).unlink(missing_ok=True)
        return Authorities(current.signer)

    def _write(self, stem: str, ca: CertificateAuthority, pem: str) -> None:
        write_private(self._path(stem, "key"), ca.key_pem)
        _write_whole(self._path(stem, "pem"), pem.encode())


def _write_whole(path: Path, data: bytes) -> None:
    partial = path.with_name(path.name + ".part")
    with open(partial, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(partial, path)












def load_csr(csr_pem: object) -> x509.CertificateSigningRequest:
    """Parse and check a CSR: RSA ≥ 2048 or EC P-256, self-signature valid."""
    if not isinstance(csr_pem, str) or "CERTIFICATE REQUEST" not in csr_pem:
        raise InvalidInput("signatureRequest is not a PEM certificate signing request")
    try:
        csr = x509.load_pem_x509_csr(_normalise_pem(csr_pem).encode())
    except ValueError as exc:
        raise InvalidInput("signatureRequest could not be parsed as a PEM CSR") from exc
    key = csr.public_key()
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < _MIN_RSA_BITS:
            raise InvalidInput(
                f"signatureRequest uses a {key.key_size}-bit RSA key; at least 2048 bits needed"
            )
    elif isinstance(key, ec.EllipticCurvePublicKey):
        if not isinstance(key.curve, ec.SECP256R1):
            raise InvalidInput(
                f"signatureRequest uses curve {key.curve.name}; only P-256 (secp256r1) is accepted"
            )
    else:
        raise InvalidInput("signatureRequest key type not accepted; use RSA ≥ 2048 or EC P-256")
    if not csr.is_signature_valid:
        raise InvalidInput("signatureRequest signature does not verify")
    return csr


def _normalise_pem(pem: str) -> str:
    """ARM's documentation shows CSRs with the line breaks stripped; restore them."""
    pem = pem.strip()
    begin, end = "-----BEGIN CERTIFICATE REQUEST-----", "-----END CERTIFICATE REQUEST-----"
    if "\n" in pem or not (pem.startswith(begin) and pem.endswith(end)):
        return pem
    body = pem[len(begin) : -len(end)].strip()
    lines = [body[i : i + 64] for i in range(0, len(body), 64)]
    return "\n".join([begin, *lines, end]) + "\n"
