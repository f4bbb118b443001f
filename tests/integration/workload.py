"""A deterministic Python workload for the real_python3 tests: json, re, collections, a class
hierarchy, threads, sorting and string formatting, with enough allocation churn to exercise the
allocator (and, with PYTHONMALLOC=malloc, every object allocation goes through malloc)."""
import collections
import hashlib
import json
import queue
import re
import sys
import threading


class Shape:
    registry = collections.Counter()

    def __init__(self, name):
        self.name = name
        Shape.registry[type(self).__name__] += 1

    def area(self):
        raise NotImplementedError

    def describe(self):
        return f"{type(self).__name__}({self.name}) area={self.area():.3f}"


class Rectangle(Shape):
    def __init__(self, name, width, height):
        super().__init__(name)
        self.width, self.height = width, height

    def area(self):
        return self.width * self.height


class Square(Rectangle):
    def __init__(self, name, side):
        super().__init__(name, side, side)


class Circle(Shape):
    def __init__(self, name, radius):
        super().__init__(name)
        self.radius = radius

    def area(self):
        return 3.141592653589793 * self.radius ** 2


def make_shapes(count):
    shapes = []
    for i in range(count):
        kind = i % 3
        if kind == 0:
            shapes.append(Rectangle(f"r{i}", i % 17 + 1, i % 5 + 2))
        elif kind == 1:
            shapes.append(Square(f"s{i}", i % 11 + 1))
        else:
            shapes.append(Circle(f"c{i}", (i % 7 + 1) / 2))
    return shapes


def json_round_trips(shapes):
    documents = []
    for shape in shapes[:3000]:
        documents.append({"name": shape.name, "kind": type(shape).__name__, "area": round(shape.area(), 6),
                          "tags": [shape.name[:1], str(len(shape.name))], "nested": {"id": shape.name, "ok": True}})
    text = json.dumps(documents, sort_keys=True)
    loaded = json.loads(text)
    again = json.dumps(loaded, sort_keys=True, indent=1)
    return len(text), hashlib.sha256(again.encode()).hexdigest()


LOG_LINE = re.compile(r"^(?P<level>INFO|WARN|ERROR) \[(?P<module>[a-z_]+)\] took (?P<ms>\d+)ms(?: \((?P<note>[^)]*)\))?$")


def regex_work(lines):
    per_module = collections.defaultdict(list)
    levels = collections.Counter()
    for line in lines:
        match = LOG_LINE.match(line)
        if match is None:
            levels["unparsed"] += 1
            continue
        levels[match["level"]] += 1
        per_module[match["module"]].append(int(match["ms"]))
    words = collections.Counter(re.findall(r"[a-z]+", " ".join(lines)))
    replaced = re.sub(r"(\d+)ms", lambda m: f"{int(m.group(1)) * 1000}us", "\n".join(lines[:2000]))
    return levels, per_module, words.most_common(5), hashlib.sha256(replaced.encode()).hexdigest()


def make_log_lines(count):
    modules = ["parser", "net_io", "cache", "scheduler", "disk"]
    lines = []
    for i in range(count):
        level = ("INFO", "WARN", "ERROR")[i * 7 % 3]
        note = f" (retry {i % 4})" if i % 5 == 0 else ""
        if i % 97 == 0:
            lines.append(f"garbage line {i}")
        else:
            lines.append(f"{level} [{modules[i % 5]}] took {i * 37 % 1000}ms{note}")
    return lines


def threaded_work(thread_count, items):
    tasks = queue.Queue()
    results = queue.Queue()
    lock = threading.Lock()
    totals = {"processed": 0}

    def worker():
        while True:
            item = tasks.get()
            if item is None:
                return
            payload = [str(item * k) for k in range(50)]
            digest = hashlib.md5("|".join(payload).encode()).hexdigest()
            results.put((item, digest[:8], sum(len(p) for p in payload)))
            with lock:
                totals["processed"] += 1

    threads = [threading.Thread(target=worker) for _ in range(thread_count)]
    for thread in threads:
        thread.start()
    for item in range(items):
        tasks.put(item)
    for _ in threads:
        tasks.put(None)
    for thread in threads:
        thread.join()
    collected = sorted(results.get() for _ in range(items))
    return totals["processed"], hashlib.sha256(repr(collected).encode()).hexdigest()


def sorting_work(shapes):
    by_area = sorted(shapes, key=lambda s: (round(s.area(), 9), s.name))
    by_name = sorted((s.name for s in shapes), key=lambda n: (n[0], -int(n[1:])))
    numbers = [(i * 7919) % 10007 for i in range(100000)]
    numbers.sort()
    pairs = sorted(zip(numbers[::3], numbers[1::3]), reverse=True)
    return by_area[0].describe(), by_area[-1].describe(), by_name[:3], numbers[5000], pairs[:2]


def main():
    shapes = make_shapes(60000)
    print("shapes:", dict(sorted(Shape.registry.items())))
    total_area = sum(s.area() for s in shapes)
    print(f"total area: {total_area:,.4f}")
    length, digest = json_round_trips(shapes)
    print(f"json: {length} bytes, sha256 {digest[:16]}")
    levels, per_module, common, replaced = regex_work(make_log_lines(80000))
    print("levels:", dict(sorted(levels.items())))
    for module in sorted(per_module):
        values = per_module[module]
        print(f"  {module:<10} n={len(values):>5} mean={sum(values) / len(values):8.2f} max={max(values):4d}")
    print("common words:", common)
    print("regex replace sha256:", replaced[:16])
    processed, digest = threaded_work(4, 6000)
    print(f"threads: processed {processed}, sha256 {digest[:16]}")
    for line in sorting_work(shapes):
        print("sorted:", line)
    table = "\n".join("{:>6}|{:<8}|{:^10.3e}|{:#x}".format(i, f"row{i}", i ** 3.5, i * 255) for i in range(0, 400, 37))
    print(table)
    print("done", sys.version_info[0])


if __name__ == "__main__":
    main()
