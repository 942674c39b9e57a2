"""Independent X.509 path validation with Python `cryptography` (RFC 5280 with the CA/B Forum
server profile that `cryptography.x509.verification` implements, name constraints included).

Usage: verify_path.py ROOTS.pem INTERMEDIATES.pem LEAF.pem DNS_NAME [UNIX_TIME]
Prints the validated path, leaf first, one subject per line; exits 1 with the reason if the
path does not validate.
"""

import datetime
import sys

from cryptography import x509
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError


def load_all(path):
    with open(path, "rb") as f:
        data = f.read()
    return x509.load_pem_x509_certificates(data) if data.strip() else []


def main():
    roots, intermediates, leaf_path, name = sys.argv[1:5]
    leaf = load_all(leaf_path)[0]
    builder = PolicyBuilder().store(Store(load_all(roots)))
    if len(sys.argv) > 5:
        at = datetime.datetime.fromtimestamp(int(sys.argv[5]), tz=datetime.timezone.utc)
        builder = builder.time(at)
    verifier = builder.build_server_verifier(x509.DNSName(name))
    try:
        path = verifier.verify(leaf, load_all(intermediates))
    except VerificationError as e:
        print(f"path validation failed: {e}", file=sys.stderr)
        sys.exit(1)
    for cert in path:
        print(cert.subject.rfc4514_string())


if __name__ == "__main__":
    main()
