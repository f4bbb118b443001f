-- A deterministic SQLite workload for the real_sqlite3 test: ~50,000 rows built with recursive
-- CTEs, indexes, joins, group-by and window queries, an update, a delete and a VACUUM.
PRAGMA journal_mode = WAL;
PRAGMA cache_size = -4000;
CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT NOT NULL, region TEXT NOT NULL, joined INTEGER);
CREATE TABLE orders (id INTEGER PRIMARY KEY, customer_id INTEGER NOT NULL REFERENCES customers(id),
                     amount_cents INTEGER NOT NULL, item TEXT NOT NULL, day INTEGER NOT NULL);

WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 2000)
INSERT INTO customers (id, name, region, joined)
SELECT i, printf('customer-%05d', i), CASE i % 5 WHEN 0 THEN 'north' WHEN 1 THEN 'south' WHEN 2 THEN 'east'
                                         WHEN 3 THEN 'west' ELSE 'centre' END, 2000 + i % 23
FROM n;

BEGIN;
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 50000)
INSERT INTO orders (id, customer_id, amount_cents, item, day)
SELECT i, 1 + (i * 7919) % 2000, 100 + (i * 104729) % 99900,
       'item-' || substr('abcdefghijklmnopqrstuvwxyz', 1 + i % 26, 1 + i % 7) || '-' || (i % 113), i % 365
FROM n;
COMMIT;

CREATE INDEX orders_by_customer ON orders(customer_id, day);
CREATE INDEX orders_by_item ON orders(item);
CREATE INDEX customers_by_region ON customers(region, joined);
ANALYZE;

.mode list
.separator |
SELECT 'rows', (SELECT count(*) FROM customers), (SELECT count(*) FROM orders);
SELECT 'total', sum(amount_cents), min(amount_cents), max(amount_cents) FROM orders;

SELECT c.region, count(*) AS orders, sum(o.amount_cents) AS cents, round(avg(o.amount_cents), 3)
FROM orders o JOIN customers c ON c.id = o.customer_id
GROUP BY c.region ORDER BY c.region;

SELECT c.name, count(o.id), sum(o.amount_cents)
FROM customers c JOIN orders o ON o.customer_id = c.id
WHERE c.joined BETWEEN 2005 AND 2010
GROUP BY c.id HAVING count(o.id) >= 25
ORDER BY sum(o.amount_cents) DESC, c.name LIMIT 10;

SELECT item, count(*), sum(amount_cents) FROM orders WHERE item LIKE 'item-abc%'
GROUP BY item ORDER BY count(*) DESC, item LIMIT 8;

SELECT day / 30 AS month, count(*), sum(amount_cents),
       sum(sum(amount_cents)) OVER (ORDER BY day / 30) AS running
FROM orders GROUP BY month ORDER BY month;

SELECT region, name, spent FROM (
  SELECT c.region, c.name, sum(o.amount_cents) AS spent,
         row_number() OVER (PARTITION BY c.region ORDER BY sum(o.amount_cents) DESC, c.name) AS rank
  FROM customers c JOIN orders o ON o.customer_id = c.id GROUP BY c.id)
WHERE rank <= 2 ORDER BY region, rank;

UPDATE orders SET amount_cents = amount_cents + 1 WHERE day % 7 = 0;
DELETE FROM orders WHERE customer_id % 10 = 3;
SELECT 'after update/delete', count(*), sum(amount_cents) FROM orders;
SELECT group_concat(name, ',') FROM (SELECT name FROM customers WHERE id % 397 = 0 ORDER BY name);
PRAGMA integrity_check;
VACUUM;
SELECT 'after vacuum', count(*) FROM orders;
