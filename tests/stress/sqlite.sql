-- SQLite workload for scripts/stress.sh: @ROWS@ rows (the script substitutes the number) inserted
-- in one transaction, indexed, then joins, group-by, window functions, an update and a delete,
-- and an integrity check. Deterministic: every row is computed from its number.
PRAGMA journal_mode = WAL;
PRAGMA cache_size = -8000;
CREATE TABLE accounts (id INTEGER PRIMARY KEY, owner TEXT NOT NULL, region TEXT NOT NULL, opened INTEGER NOT NULL);
CREATE TABLE transfers (id INTEGER PRIMARY KEY, account_id INTEGER NOT NULL REFERENCES accounts(id),
                        amount_cents INTEGER NOT NULL, memo TEXT NOT NULL, day INTEGER NOT NULL);

WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 5000)
INSERT INTO accounts SELECT i, printf('owner-%05d', i),
  CASE i % 6 WHEN 0 THEN 'north' WHEN 1 THEN 'south' WHEN 2 THEN 'east' WHEN 3 THEN 'west' WHEN 4 THEN 'centre' ELSE 'abroad' END,
  1990 + i % 35 FROM n;

BEGIN;
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < @ROWS@)
INSERT INTO transfers SELECT i, 1 + (i * 7919) % 5000, (i * 104729) % 200000 - 100000,
  'memo ' || substr('abcdefghijklmnopqrstuvwxyz', 1 + i % 26, 1 + i % 9) || ' #' || (i % 1009), i % 730 FROM n;
COMMIT;

CREATE INDEX transfers_by_account ON transfers(account_id, day);
CREATE INDEX transfers_by_memo ON transfers(memo);
ANALYZE;

.mode list
.separator |
SELECT 'rows', (SELECT count(*) FROM accounts), (SELECT count(*) FROM transfers);
SELECT 'by region', a.region, count(*), sum(t.amount_cents)
  FROM transfers t JOIN accounts a ON a.id = t.account_id GROUP BY a.region ORDER BY a.region;
SELECT 'top accounts', account_id, total FROM
  (SELECT account_id, sum(amount_cents) AS total FROM transfers GROUP BY account_id) ORDER BY total DESC, account_id LIMIT 5;
SELECT 'running', day, total, sum(total) OVER (ORDER BY day ROWS BETWEEN 6 PRECEDING AND CURRENT ROW)
  FROM (SELECT day, sum(amount_cents) AS total FROM transfers GROUP BY day) ORDER BY day LIMIT 10;
SELECT 'ranked', region, owner, rank FROM
  (SELECT a.region, a.owner, rank() OVER (PARTITION BY a.region ORDER BY count(*) DESC, a.id) AS rank
     FROM transfers t JOIN accounts a ON a.id = t.account_id GROUP BY a.id) WHERE rank <= 2 ORDER BY region, rank;
SELECT 'memos', count(DISTINCT memo), max(length(memo)) FROM transfers WHERE memo LIKE 'memo c%';
UPDATE transfers SET amount_cents = amount_cents + 1 WHERE day % 7 = 3;
DELETE FROM transfers WHERE amount_cents BETWEEN -1000 AND 1000;
SELECT 'after', count(*), sum(amount_cents), total(abs(amount_cents)) FROM transfers;
SELECT 'strings', length(group_concat(owner, ',')) FROM accounts WHERE region = 'east';
PRAGMA integrity_check;
