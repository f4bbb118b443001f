#!/usr/bin/env python3
"""Generates the SQL script of the sqlite3 shell workload for the allocator benchmarks.

The benchmark measures `sqlite3 :memory: '.read FILE'`, not this generator: scripts/bench.sh runs
it once per size and keeps the output under build/bench/. The script creates a small shop schema,
inserts ORDERS orders (two line items each, so about three times ORDERS rows in all) as single-row
INSERT statements inside transactions of a few thousand rows — every statement is parsed and
prepared, which is where the shell's malloc churn comes from — then builds indexes and runs
joins, GROUP BYs, a window function and an UPDATE/DELETE pass. Every query orders its result and
formats its floats, so the output is identical for every allocator.

Usage: sqlite_workload.py [--orders N] [--batch N] > workload.sql
"""

import argparse
import random
import sys

WORDS = (
    "amber birch cedar dune ember fjord grove heath iris juniper kelp lotus moss nettle "
    "oak pine quartz reed sage thyme umber vale willow yarrow zinnia"
).split()
REGIONS = ["north", "south", "east", "west", "central"]

QUERIES = """
CREATE INDEX orders_customer ON orders(customer_id);
CREATE INDEX orders_day ON orders(day);
CREATE INDEX items_order ON order_items(order_id);
CREATE INDEX items_product ON order_items(product_id);
ANALYZE;

SELECT 'rows', (SELECT count(*) FROM customers), (SELECT count(*) FROM products),
       (SELECT count(*) FROM orders), (SELECT count(*) FROM order_items);

-- Revenue per region: a three-way join with GROUP BY.
SELECT c.region, count(DISTINCT o.id), printf('%.2f', sum(i.qty * p.price))
  FROM orders o JOIN customers c ON c.id = o.customer_id
  JOIN order_items i ON i.order_id = o.id JOIN products p ON p.id = i.product_id
 GROUP BY c.region ORDER BY c.region;

-- Best-selling categories per month.
SELECT o.day / 30 AS month, p.category, sum(i.qty) AS units
  FROM order_items i JOIN orders o ON o.id = i.order_id JOIN products p ON p.id = i.product_id
 GROUP BY month, p.category HAVING units > 0
 ORDER BY month, units DESC, p.category LIMIT 40;

-- Top customers, with their rank inside the region (window function over a grouped subquery).
SELECT region, name, printf('%.2f', spent), rnk FROM (
  SELECT c.region, c.name, sum(i.qty * p.price) AS spent,
         rank() OVER (PARTITION BY c.region ORDER BY sum(i.qty * p.price) DESC, c.id) AS rnk
    FROM customers c JOIN orders o ON o.customer_id = c.id
    JOIN order_items i ON i.order_id = o.id JOIN products p ON p.id = i.product_id
   GROUP BY c.id)
 WHERE rnk <= 3 ORDER BY region, rnk;

-- String-heavy GROUP BY: grouping on a computed text key.
SELECT substr(note, 1, instr(note || ' ', ' ') - 1) AS first_word, count(*), max(length(note))
  FROM orders GROUP BY first_word ORDER BY count(*) DESC, first_word LIMIT 10;

-- Churn inside the database: reprice, cancel, and re-aggregate.
BEGIN;
UPDATE products SET price = round(price * 1.07, 2) WHERE category IN ('oak', 'pine', 'sage');
DELETE FROM order_items WHERE order_id IN (SELECT id FROM orders WHERE day % 17 = 3);
DELETE FROM orders WHERE day % 17 = 3;
COMMIT;
SELECT count(*), printf('%.2f', sum(i.qty * p.price))
  FROM order_items i JOIN products p ON p.id = i.product_id;
SELECT c.region, count(*), sum(o.n) FROM customers c
  JOIN (SELECT customer_id, count(*) AS n FROM orders GROUP BY customer_id) o ON o.customer_id = c.id
 WHERE o.n < 12 GROUP BY c.region ORDER BY c.region;
"""


def emit(out, orders, batch):
    rng = random.Random(424242)
    customers = max(100, orders // 15)
    products = 2000
    out.write("PRAGMA journal_mode = OFF;\n")
    out.write(
        "CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT, region TEXT, joined INTEGER);\n"
        "CREATE TABLE products (id INTEGER PRIMARY KEY, name TEXT, category TEXT, price REAL);\n"
        "CREATE TABLE orders (id INTEGER PRIMARY KEY, customer_id INTEGER, day INTEGER, note TEXT);\n"
        "CREATE TABLE order_items (order_id INTEGER, product_id INTEGER, qty INTEGER);\n"
    )
    out.write("BEGIN;\n")
    for cid in range(1, customers + 1):
        name = "%s %s %d" % (rng.choice(WORDS), rng.choice(WORDS), cid)
        out.write("INSERT INTO customers VALUES (%d, '%s', '%s', %d);\n"
                  % (cid, name, rng.choice(REGIONS), rng.randrange(3650)))
    for pid in range(1, products + 1):
        out.write("INSERT INTO products VALUES (%d, '%s-%d', '%s', %.2f);\n"
                  % (pid, rng.choice(WORDS), pid, rng.choice(WORDS), 1 + rng.random() * 99))
    out.write("COMMIT;\n")
    for oid in range(1, orders + 1):
        if oid % batch == 1:
            out.write("BEGIN;\n")
        note = " ".join(rng.choice(WORDS) for _ in range(rng.randrange(1, 6)))
        out.write("INSERT INTO orders VALUES (%d, %d, %d, '%s');\n"
                  % (oid, rng.randrange(1, customers + 1), rng.randrange(365), note))
        for _ in range(2):
            out.write("INSERT INTO order_items VALUES (%d, %d, %d);\n"
                      % (oid, rng.randrange(1, products + 1), rng.randrange(1, 10)))
        if oid % batch == 0 or oid == orders:
            out.write("COMMIT;\n")
    out.write(QUERIES)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--orders", type=int, default=80000)
    parser.add_argument("--batch", type=int, default=5000, help="rows per transaction")
    args = parser.parse_args()
    if args.orders < 1 or args.batch < 1:
        parser.error("--orders and --batch must be positive")
    emit(sys.stdout, args.orders, args.batch)


if __name__ == "__main__":
    main()
