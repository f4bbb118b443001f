#!/usr/bin/env python3
"""Deterministic object-churn workload for the allocator benchmarks (scripts/bench.sh).

Each iteration builds a nested record of dicts, lists and strings, round-trips it through JSON,
reshapes it with the usual dict/list/str operations and folds the result into a CRC. About one
record in three is kept in a bounded insertion-ordered cache, so the heap holds a steady live set
of tens of MB while most objects die young; that mix (short-lived churn over a large, slowly
changing live set) is what makes a tracker pay for both its per-allocation path and its scans.

Run it under PYTHONMALLOC=malloc to send every object through malloc/free; under the default
pymalloc only large objects and arena refills do. The output is one line, identical for every
allocator, so the harness can tell a broken run from a slow one.

Usage: python_churn.py [ITERATIONS] [--cache-entries N]
"""

import argparse
import json
import random
import zlib

DEFAULT_ITERATIONS = 30000
DEFAULT_CACHE_ENTRIES = 8000

WORDS = (
    "alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike november "
    "oscar papa quebec romeo sierra tango uniform victor whiskey xray yankee zulu"
).split()


def make_record(rng, serial):
    """A nested record of a few hundred bytes to a few KB, shaped like decoded API payloads."""
    tags = [rng.choice(WORDS) + str(rng.randrange(1000)) for _ in range(rng.randrange(2, 10))]
    items = [
        {
            "sku": "%s-%05d" % (rng.choice(WORDS), rng.randrange(100000)),
            "qty": rng.randrange(1, 50),
            "price": round(rng.random() * 500.0, 2),
            "attrs": {rng.choice(WORDS): rng.randrange(100) for _ in range(rng.randrange(1, 5))},
        }
        for _ in range(rng.randrange(1, 8))
    ]
    return {
        "id": serial,
        "name": " ".join(rng.choice(WORDS) for _ in range(rng.randrange(2, 6))),
        "tags": tags,
        "items": items,
        "meta": {"version": rng.randrange(10), "flags": [rng.random() < 0.5 for _ in range(6)]},
        "blob": "".join(rng.choice(WORDS) for _ in range(rng.randrange(4, 40))),
    }


def reshape(record):
    """dict/list/str churn on a decoded record; returns a new, smaller summary object."""
    totals = {}
    for item in record["items"]:
        for key, value in item["attrs"].items():
            totals[key] = totals.get(key, 0) + value * item["qty"]
    words = record["name"].split()
    words.reverse()
    upper = [tag.upper() for tag in record["tags"]]
    return {
        "id": record["id"],
        "title": "/".join(words),
        "tags": sorted(upper),
        "totals": dict(sorted(totals.items())),
        "amount": round(sum(i["price"] * i["qty"] for i in record["items"]), 2),
        "blob_parts": record["blob"].split("a"),
    }


def run(iterations, cache_entries):
    rng = random.Random(20240601)
    cache = {}
    crc = 0
    kept = 0
    for serial in range(iterations):
        record = make_record(rng, serial)
        text = json.dumps(record, sort_keys=True)
        decoded = json.loads(text)
        summary = reshape(decoded)
        encoded = json.dumps(summary, separators=(",", ":"))
        crc = zlib.crc32(encoded.encode(), crc)

        if rng.random() < 0.35:
            # Keep both the decoded record and its summary alive: they die only on eviction.
            cache["k%d" % serial] = (decoded, summary, text)
            kept += 1
            if len(cache) > cache_entries:
                del cache[next(iter(cache))]  # oldest first: dicts keep insertion order

        if cache and rng.random() < 0.2:
            # Touch an older entry: mutate its nested lists so live objects also change size.
            key = "k%d" % rng.randrange(max(0, serial - 3 * cache_entries), serial + 1)
            entry = cache.get(key)
            if entry is not None:
                entry[0]["tags"].append(rng.choice(WORDS))
                entry[1]["blob_parts"] = entry[1]["blob_parts"][1:]
                crc = zlib.crc32(str(len(entry[0]["tags"])).encode(), crc)

    live = sum(len(text) for _, _, text in cache.values())
    print("python_churn iterations=%d kept=%d cached=%d live_text_bytes=%d crc32=%08x"
          % (iterations, kept, len(cache), live, crc))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("iterations", nargs="?", type=int, default=DEFAULT_ITERATIONS)
    parser.add_argument("--cache-entries", type=int, default=DEFAULT_CACHE_ENTRIES)
    args = parser.parse_args()
    if args.iterations < 1 or args.cache_entries < 1:
        parser.error("iterations and --cache-entries must be positive")
    run(args.iterations, args.cache_entries)


if __name__ == "__main__":
    main()
