#!/usr/bin/env python3
"""JWS test vectors made the way ACME clients make them (Python `cryptography`, not Signet's code): flattened JSON
serialization, raw r||s ECDSA signatures, RFC 7638 thumbprints computed independently. Prints one JSON object."""
import base64
import hashlib
import json

from cryptography.hazmat.primitives import hashes, hmac
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa, utils
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def integer(value: int, length: int = 0) -> bytes:
    return value.to_bytes(length or (value.bit_length() + 7) // 8, "big")


def jwk_of(key):
    public = key.public_key()
    if isinstance(key, rsa.RSAPrivateKey):
        numbers = public.public_numbers()
        return {"kty": "RSA", "n": b64(integer(numbers.n)), "e": b64(integer(numbers.e))}, "RS256"
    if isinstance(key, ec.EllipticCurvePrivateKey):
        numbers, size = public.public_numbers(), (key.curve.key_size + 7) // 8
        curve = {256: "P-256", 384: "P-384"}[key.curve.key_size]
        return {"kty": "EC", "crv": curve, "x": b64(integer(numbers.x, size)), "y": b64(integer(numbers.y, size))}, \
            {256: "ES256", 384: "ES384"}[key.curve.key_size]
    return {"kty": "OKP", "crv": "Ed25519", "x": b64(public.public_bytes(Encoding.Raw, PublicFormat.Raw))}, "EdDSA"


def sign(key, alg, data, der=False):
    if alg == "RS256":
        return key.sign(data, padding.PKCS1v15(), hashes.SHA256())
    if alg == "PS256":  # RFC 7518 §3.5: MGF1 with SHA-256, salt as long as the hash
        return key.sign(data, padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32), hashes.SHA256())
    if alg in ("ES256", "ES384"):
        signature = key.sign(data, ec.ECDSA(hashes.SHA256() if alg == "ES256" else hashes.SHA384()))
        if der:
            return signature
        r, s = utils.decode_dss_signature(signature)
        size = (key.curve.key_size + 7) // 8
        return integer(r, size) + integer(s, size)
    return key.sign(data)


def jws(key, alg, header, payload, der=False):
    protected = b64(json.dumps(header).encode())
    encoded = b64(payload) if payload else ""
    return {"protected": protected, "payload": encoded, "signature": b64(sign(key, alg, f"{protected}.{encoded}".encode(), der))}


def thumbprint(jwk):
    required = {"RSA": ["e", "kty", "n"], "EC": ["crv", "kty", "x", "y"], "OKP": ["crv", "kty", "x"]}[jwk["kty"]]
    canonical = json.dumps({name: jwk[name] for name in required}, separators=(",", ":"), sort_keys=True)
    return b64(hashlib.sha256(canonical.encode()).digest())


url = "https://signet.test/acme/default/new-account"
keys = {"rsa": rsa.generate_private_key(public_exponent=65537, key_size=2048), "p256": ec.generate_private_key(ec.SECP256R1()),
        "p384": ec.generate_private_key(ec.SECP384R1()), "ed25519": ed25519.Ed25519PrivateKey.generate()}
payload = json.dumps({"termsOfServiceAgreed": True}).encode()
cases = {"keys": {}}
for name, key in keys.items():
    jwk, alg = jwk_of(key)
    cases["keys"][name] = {
        "alg": alg, "thumbprint": thumbprint(jwk),
        "withJWK": jws(key, alg, {"alg": alg, "nonce": "n1", "url": url, "jwk": jwk}, payload),
        "postAsGet": jws(key, alg, {"alg": alg, "nonce": "n2", "url": "https://signet.test/acme/default/acct/1", "kid": "https://signet.test/acme/default/acct/1"}, b""),
    }
rsa_jwk, _ = jwk_of(keys["rsa"])
p256_jwk, _ = jwk_of(keys["p256"])
cases["ps256"] = jws(keys["rsa"], "PS256", {"alg": "PS256", "nonce": "n", "url": url, "jwk": rsa_jwk}, payload)
cases["algorithmNotTheKeys"] = jws(keys["rsa"], "RS256", {"alg": "ES256", "nonce": "n", "url": url, "jwk": rsa_jwk}, payload)
cases["derSignature"] = jws(keys["p256"], "ES256", {"alg": "ES256", "nonce": "n", "url": url, "jwk": p256_jwk}, payload, der=True)
cases["none"] = {"protected": b64(json.dumps({"alg": "none", "nonce": "n", "url": url, "jwk": p256_jwk}).encode()), "payload": b64(payload), "signature": "AA"}
mac = hmac.HMAC(b"k" * 32, hashes.SHA256())
protected = b64(json.dumps({"alg": "HS256", "nonce": "n", "url": url, "kid": "x"}).encode())
mac.update(f"{protected}.{b64(payload)}".encode())
cases["hs256"] = {"protected": protected, "payload": b64(payload), "signature": b64(mac.finalize())}
cases["jwkAndKid"] = jws(keys["p256"], "ES256", {"alg": "ES256", "nonce": "n", "url": url, "jwk": p256_jwk, "kid": "https://x"}, payload)
weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)
weak_jwk, _ = jwk_of(weak)
cases["weakRSA"] = jws(weak, "RS256", {"alg": "RS256", "nonce": "n", "url": url, "jwk": weak_jwk}, payload)

# External Account Binding as certbot and lego make it: HS256 over the account JWK, no nonce, the newAccount url.
eab_key = bytes(range(32))
def binding(jwk, key_id="kid-1", mac_key=eab_key, header_url=url, nonce=None):
    header = {"alg": "HS256", "kid": key_id, "url": header_url}
    if nonce:
        header["nonce"] = nonce
    protected, encoded = b64(json.dumps(header).encode()), b64(json.dumps(jwk).encode())
    tag = hmac.HMAC(mac_key, hashes.SHA256())
    tag.update(f"{protected}.{encoded}".encode())
    return {"protected": protected, "payload": encoded, "signature": b64(tag.finalize())}
cases["eab"] = {"macKey": b64(eab_key), "url": url, "good": binding(p256_jwk), "wrongMAC": binding(p256_jwk, mac_key=b"x" * 32),
                "withNonce": binding(p256_jwk, nonce="n"), "otherURL": binding(p256_jwk, header_url=url + "x"),
                "otherKey": binding(rsa_jwk), "unknownKid": binding(p256_jwk, key_id="kid-2")}
print(json.dumps(cases))
