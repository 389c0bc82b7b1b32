"""The original envelope algorithm in Python, the peer of bench/envelope_bench.ts.

The `v2:` format of docs/envelope-format.md with `cryptography`'s AESGCM, as
the module vault replaces does it: `encrypt(text, key)` takes the key bytes,
draws a 12-byte nonce from os.urandom, seals the UTF-8 text with no associated
data and returns "v2:" + URL-safe base64 (padded) of nonce || ciphertext || tag;
`decrypt(value, key)` drops the prefix, decodes, checks the length and opens it.

Protocol (one line per command on stdin, one line of answer on stdout):
  key <base64url of 32 bytes>   -> ok
  check <value>                 -> the decryption of a vault value (base64url of its UTF-8)
  make <text-b64url>            -> one value encrypted here
  enc <n> <text-b64url>         -> seconds for n encrypts
  dec <n> <value>               -> seconds for n decrypts of that value
  quit
"""

import base64
import os
import sys
import time

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

PREFIX = "v2:"
NONCE_BYTES = 12


def encrypt(plaintext, key):
    nonce = os.urandom(NONCE_BYTES)
    sealed = AESGCM(key).encrypt(nonce, plaintext.encode("utf-8"), None)
    return PREFIX + base64.urlsafe_b64encode(nonce + sealed).decode("ascii")


def decrypt(value, key):
    if value.startswith(PREFIX):
        value = value[len(PREFIX):]
    data = base64.urlsafe_b64decode(value)
    if len(data) < NONCE_BYTES + 16:
        raise ValueError("too short")
    return AESGCM(key).decrypt(data[:NONCE_BYTES], data[NONCE_BYTES:], None).decode("utf-8")


def main():
    key = None
    for line in sys.stdin:
        parts = line.split()
        if not parts:
            continue
        cmd = parts[0]
        if cmd == "quit":
            break
        if cmd == "key":
            key = base64.urlsafe_b64decode(parts[1])
            out = "ok"
        elif cmd == "check":
            out = base64.urlsafe_b64encode(decrypt(parts[1], key).encode("utf-8")).decode("ascii")
        elif cmd == "make":
            out = encrypt(base64.urlsafe_b64decode(parts[1]).decode("utf-8"), key)
        elif cmd == "enc":
            n = int(parts[1])
            text = base64.urlsafe_b64decode(parts[2]).decode("utf-8")
            start = time.perf_counter()
            for _ in range(n):
                encrypt(text, key)
            out = repr(time.perf_counter() - start)
        elif cmd == "dec":
            n = int(parts[1])
            value = parts[2]
            start = time.perf_counter()
            for _ in range(n):
                decrypt(value, key)
            out = repr(time.perf_counter() - start)
        else:
            out = "error unknown command"
        sys.stdout.write(out + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
