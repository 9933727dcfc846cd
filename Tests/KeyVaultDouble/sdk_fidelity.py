#!/usr/bin/env python3
"""Proves the Key Vault double's fidelity with Microsoft's own SDK: azure-identity gets a token from the double's
Entra endpoint (client secret), azure-keyvault-keys creates keys, and CryptographyClient signs through the double
and verifies the signatures with the public key it downloaded (locally, as the SDK does).

Usage: sdk_fidelity.py VAULT_URL CA_FILE TENANT SECRET   (prints one line per check, exits non-zero on failure)
"""
import hashlib
import sys

from azure.identity import ClientSecretCredential
from azure.keyvault.keys import KeyClient
from azure.keyvault.keys.crypto import CryptographyClient, SignatureAlgorithm

vault_url, ca_file, tenant, secret = sys.argv[1:5]
authority = vault_url.split("://", 1)[1]  # the double is its own Entra authority
credential = ClientSecretCredential(tenant, "signet", secret, authority=authority,
                                    disable_instance_discovery=True, connection_verify=ca_file)
keys = KeyClient(vault_url, credential, verify_challenge_resource=False, connection_verify=ca_file)

cases = [("sdk-ec-p256", {"curve": "P-256"}, SignatureAlgorithm.es256, hashlib.sha256),
         ("sdk-ec-p384", {"curve": "P-384"}, SignatureAlgorithm.es384, hashlib.sha384),
         ("sdk-rsa", {"size": 2048}, SignatureAlgorithm.rs256, hashlib.sha256),
         ("sdk-rsa-pss", {"size": 2048}, SignatureAlgorithm.ps256, hashlib.sha256)]
failures = 0
for name, options, algorithm, hash_function in cases:
    key = keys.create_ec_key(name, **options) if "curve" in options else keys.create_rsa_key(name, **options)
    fetched = keys.get_key(name)
    assert fetched.id == key.id, (fetched.id, key.id)
    crypto = CryptographyClient(key, credential, verify_challenge_resource=False, connection_verify=ca_file)
    digest = hash_function(b"signed by the Key Vault double").digest()
    signed = crypto.sign(algorithm, digest)
    verified = crypto.verify(algorithm, digest, signed.signature).is_valid
    tampered = crypto.verify(algorithm, hash_function(b"something else").digest(), signed.signature).is_valid
    ok = verified and not tampered and signed.key_id == key.id
    failures += 0 if ok else 1
    print(f"{'ok' if ok else 'FAILED'} {name} {algorithm.value} signature={len(signed.signature)} bytes kid={signed.key_id}")

# As the real service, ES256 is refused for a P-384 key (the algorithm names the curve).
try:
    CryptographyClient(keys.get_key("sdk-ec-p384"), credential, verify_challenge_resource=False,
                       connection_verify=ca_file).sign(SignatureAlgorithm.es256, hashlib.sha256(b"mismatched").digest())
    print("FAILED ES256 with a P-384 key was not refused")
    failures += 1
except Exception as error:  # HttpResponseError (400 BadParameter)
    ok = type(error).__name__ == "HttpResponseError" and "incompatible" in str(error)
    print(f"{'ok' if ok else 'FAILED'} ES256 with a P-384 key -> {type(error).__name__}")
    failures += 0 if ok else 1

try:
    keys.get_key("no-such-key")
    print("FAILED missing key did not raise")
    failures += 1
except Exception as error:  # ResourceNotFoundError
    print(f"ok missing key -> {type(error).__name__}")
    failures += 0 if type(error).__name__ == "ResourceNotFoundError" else 1

sys.exit(1 if failures else 0)
