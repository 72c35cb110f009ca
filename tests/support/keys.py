"""RSA key pairs as Salt's minions make them (2048 bits, PEM)."""

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa


def _pub_pem(key):
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def new_pub():
    """Return the public key (PEM, SubjectPublicKeyInfo) of a fresh RSA-2048 key pair."""
    return _pub_pem(rsa.generate_private_key(public_exponent=65537, key_size=2048))


def key_file(directory, name):
    """
    Write a fresh RSA-2048 private key to ``directory/<name>.pem`` (as a
    minion's ``minion.pem``); return ``(path, public key PEM)``.
    """
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path = directory / f"{name}.pem"
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    return str(path), _pub_pem(key)
