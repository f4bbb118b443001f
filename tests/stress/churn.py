"""Object churn for scripts/stress.sh: many short-lived Python objects of every common kind
(instances with and without __slots__, dicts, lists, tuples, sets, strings, bytes), reference
cycles left to the cycle collector, a large structure built and torn down repeatedly, json
round trips, and a few threads doing the same. With PYTHONMALLOC=malloc every object goes
through malloc and free. Deterministic (run with PYTHONHASHSEED=0): prints counts and checksums.

Usage: churn.py [ROUNDS]      (default 40)
"""
import gc
import hashlib
import json
import sys
import threading
import zlib


class Point:
    def __init__(self, x, y):
        self.x, self.y = x, y
        self.tags = {"x": x, "y": y}


class Slotted:
    __slots__ = ("key", "value", "next")

    def __init__(self, key, value, next_node):
        self.key, self.value, self.next = key, value, next_node


class Cyclic:
    def __init__(self, n):
        self.n = n
        self.partner = None
        self.payload = [n] * 8


def churn_round(seed):
    digest = hashlib.sha256()
    points = [Point(i, (i * seed) % 977) for i in range(4000)]
    index = {}
    for p in points:
        index.setdefault(p.y % 61, []).append(p)
    chain = None
    for i in range(3000):
        chain = Slotted(i, str(i * seed), chain)
    length = 0
    while chain is not None:
        length += len(chain.value)
        chain = chain.next
    for i in range(1500):  # garbage only the cycle collector can free
        a, b = Cyclic(i), Cyclic(i + 1)
        a.partner, b.partner = b, a
    words = [f"w{(i * 7919 + seed) % 5003}" for i in range(6000)]
    counts = {}
    for w in words:
        counts[w] = counts.get(w, 0) + 1
    text = json.dumps({"seed": seed, "counts": sorted(counts.items())[:300], "sizes": [len(v) for v in index.values()]})
    back = json.loads(text)
    blob = zlib.compress(text.encode() * 3)
    sets = [frozenset(range(i, i + 20)) for i in range(0, 2000, 7)]
    union = set().union(*sets)
    tuples = sorted((p.y, p.x) for p in points[::5])
    digest.update(text.encode())
    digest.update(str((length, len(back["counts"]), len(blob), len(union), tuples[:50])).encode())
    return digest.hexdigest()[:16], len(points) + length + len(words) + len(union)


def worker(seed, rounds, results, slot):
    total = 0
    digest = hashlib.sha256()
    for r in range(rounds):
        h, n = churn_round(seed * 1000 + r)
        digest.update(h.encode())
        total += n
    results[slot] = (digest.hexdigest()[:16], total)


def main():
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 40
    digest = hashlib.sha256()
    total = 0
    for r in range(rounds):
        h, n = churn_round(r)
        digest.update(h.encode())
        total += n
        if r % 10 == 9:
            gc.collect()
    print(f"main: {rounds} rounds, {total} objects, digest {digest.hexdigest()[:16]}")
    results = [None] * 3
    threads = [threading.Thread(target=worker, args=(t + 1, max(1, rounds // 4), results, t)) for t in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for t, (h, n) in enumerate(results):
        print(f"thread {t}: {n} objects, digest {h}")
    print(f"unreachable cycles collected at the end: {gc.collect() >= 0}")


if __name__ == "__main__":
    main()
