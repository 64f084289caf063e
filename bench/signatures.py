"""Signature verification ceiling: ECDSA P-256 (the hub's choice) against Ed25519.

Run: .venv/bin/python bench/signatures.py [--seconds 2]
Prints verifications/s on one thread and on as many threads as cores, over a
2 KB message (a typical profile), in this process.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519


def rate(fn: Callable[[], None], seconds: float, threads: int) -> float:
    """Calls per second of ``fn`` on ``threads`` threads for about ``seconds``."""

    def loop() -> int:
        n, end = 0, time.perf_counter() + seconds
        while time.perf_counter() < end:
            for _ in range(50):
                fn()
            n += 50
        return n

    start = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        total = sum(pool.map(lambda _: loop(), range(threads)))
    return total / (time.perf_counter() - start)


def p256_verifier() -> Callable[[], None]:
    msg = os.urandom(2048)
    key = ec.generate_private_key(ec.SECP256R1())
    sig = key.sign(msg, ec.ECDSA(hashes.SHA256()))
    pub, algo = key.public_key(), ec.ECDSA(hashes.SHA256())
    return lambda: pub.verify(sig, msg, algo)


def ed25519_verifier() -> Callable[[], None]:
    msg = os.urandom(2048)
    key = ed25519.Ed25519PrivateKey.generate()
    sig = key.sign(msg)
    pub = key.public_key()
    return lambda: pub.verify(sig, msg)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=2.0)
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    for name, make in (("ECDSA P-256", p256_verifier), ("Ed25519", ed25519_verifier)):
        fn = make()
        one = rate(fn, args.seconds, 1)
        many = rate(fn, args.seconds, cores)
        print(f"{name:12} verify: {one:8.0f}/s on 1 thread, {many:8.0f}/s on {cores} threads")


if __name__ == "__main__":
    main()
