"""Times the textbook server's transform, data.decode().upper().encode(),
on the same input files the Rust micro-benchmark writes (--data-dir), and
prints one line per file in the Rust benchmark's format:

    TRANSFORM input=NAME bytes=N iterations=N seconds=S gbps=G

Usage: python3 transform_bench.py [--seconds S] FILE...
The median of 7 timed samples is reported, as on the Rust side.
"""
import argparse
import os
import sys
import time

SAMPLES = 7


def transform(data):
    return data.decode().upper().encode()


def measure(data, seconds):
    warm_until = time.perf_counter() + seconds / 10
    while time.perf_counter() < warm_until:
        transform(data)
    per_sample = seconds / SAMPLES
    rates = []
    total = 0
    for _ in range(SAMPLES):
        start = time.perf_counter()
        iterations = 0
        while True:
            for _ in range(4):
                transform(data)
            iterations += 4
            elapsed = time.perf_counter() - start
            if elapsed >= per_sample:
                break
        rates.append(iterations * len(data) / elapsed)
        total += iterations
    rates.sort()
    return total, rates[len(rates) // 2]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("files", nargs="+")
    args = parser.parse_args()
    if not 0.01 <= args.seconds <= 600:
        parser.error("--seconds must be in 0.01..600")
    for path in args.files:
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError as e:
            print(f"error: {path}: {e.strerror}", file=sys.stderr)
            return 1
        name = os.path.splitext(os.path.basename(path))[0]
        iterations, rate = measure(data, args.seconds)
        print(
            f"TRANSFORM input={name} bytes={len(data)} iterations={iterations} "
            f"seconds={args.seconds:.3f} gbps={rate / 1e9:.3f}",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
