-- Per-interval totals for GET /api/reports/queues, /calls and /agents. See
-- migrations/sqlite/0016_report_aggregates.sql and docs/adr/0009-report-aggregates.md.
-- Here the triggers are per statement (transition tables): a statement's rows are grouped
-- and each total row is upserted once (INSERT .. ON CONFLICT DO UPDATE SET x = x + excluded.x,
-- atomic between nodes writing at once), in key order so that two statements lock total rows
-- in the same order; an UPDATE's groups that do not change are not touched.
CREATE TABLE report_call_totals (
    bucket      BIGINT NOT NULL,
    direction   TEXT   NOT NULL,
    disposition TEXT   NOT NULL,
    calls       BIGINT NOT NULL DEFAULT 0,
    answered    BIGINT NOT NULL DEFAULT 0,
    talk_s      BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (bucket, direction, disposition)
);
CREATE TABLE report_queue_totals (
    queue     TEXT   NOT NULL,
    bucket    BIGINT NOT NULL,
    events    BIGINT NOT NULL DEFAULT 0,
    offered   BIGINT NOT NULL DEFAULT 0,
    answered  BIGINT NOT NULL DEFAULT 0,
    abandoned BIGINT NOT NULL DEFAULT 0,
    timed_out BIGINT NOT NULL DEFAULT 0,
    completed BIGINT NOT NULL DEFAULT 0,
    wait_ms   BIGINT NOT NULL DEFAULT 0,
    talk_ms   BIGINT NOT NULL DEFAULT 0,
    sl_10s    BIGINT NOT NULL DEFAULT 0,
    sl_15s    BIGINT NOT NULL DEFAULT 0,
    sl_20s    BIGINT NOT NULL DEFAULT 0,
    sl_30s    BIGINT NOT NULL DEFAULT 0,
    sl_45s    BIGINT NOT NULL DEFAULT 0,
    sl_60s    BIGINT NOT NULL DEFAULT 0,
    sl_90s    BIGINT NOT NULL DEFAULT 0,
    sl_120s   BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (queue, bucket)
);
CREATE TABLE report_agent_totals (
    agent     TEXT   NOT NULL,
    bucket    BIGINT NOT NULL,
    answered  BIGINT NOT NULL DEFAULT 0,
    completed BIGINT NOT NULL DEFAULT 0,
    talk_ms   BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (agent, bucket)
);

CREATE FUNCTION report_call_totals_apply() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO report_call_totals AS t (bucket, direction, disposition, calls, answered, talk_s)
SELECT bucket, direction, disposition, CAST(calls AS BIGINT), CAST(answered AS BIGINT), CAST(talk_s AS BIGINT) FROM (SELECT CAST(FLOOR(EXTRACT(EPOCH FROM started_at) / 900) AS BIGINT) * 900 AS bucket, direction, COALESCE(disposition, 'in_progress') AS disposition,
       COUNT(*) AS calls,
       SUM(CASE WHEN answered_at IS NOT NULL THEN 1 ELSE 0 END) AS answered,
       SUM(CASE WHEN answered_at IS NOT NULL AND ended_at IS NOT NULL THEN CAST(ROUND(EXTRACT(EPOCH FROM (ended_at - answered_at))) AS BIGINT) ELSE 0 END) AS talk_s
  FROM new_rows
 GROUP BY 1, 2, 3) g ORDER BY bucket, direction, disposition
ON CONFLICT (bucket, direction, disposition) DO UPDATE SET calls = t.calls + excluded.calls, answered = t.answered + excluded.answered, talk_s = t.talk_s + excluded.talk_s;
    ELSIF TG_OP = 'DELETE' THEN
        INSERT INTO report_call_totals AS t (bucket, direction, disposition, calls, answered, talk_s)
SELECT bucket, direction, disposition, -CAST(calls AS BIGINT), -CAST(answered AS BIGINT), -CAST(talk_s AS BIGINT) FROM (SELECT CAST(FLOOR(EXTRACT(EPOCH FROM started_at) / 900) AS BIGINT) * 900 AS bucket, direction, COALESCE(disposition, 'in_progress') AS disposition,
       COUNT(*) AS calls,
       SUM(CASE WHEN answered_at IS NOT NULL THEN 1 ELSE 0 END) AS answered,
       SUM(CASE WHEN answered_at IS NOT NULL AND ended_at IS NOT NULL THEN CAST(ROUND(EXTRACT(EPOCH FROM (ended_at - answered_at))) AS BIGINT) ELSE 0 END) AS talk_s
  FROM old_rows
 GROUP BY 1, 2, 3) g ORDER BY bucket, direction, disposition
ON CONFLICT (bucket, direction, disposition) DO UPDATE SET calls = t.calls + excluded.calls, answered = t.answered + excluded.answered, talk_s = t.talk_s + excluded.talk_s;
    ELSE
        INSERT INTO report_call_totals AS t (bucket, direction, disposition, calls, answered, talk_s)
SELECT bucket, direction, disposition, CAST(SUM(calls) AS BIGINT), CAST(SUM(answered) AS BIGINT), CAST(SUM(talk_s) AS BIGINT)
  FROM (SELECT * FROM (SELECT CAST(FLOOR(EXTRACT(EPOCH FROM started_at) / 900) AS BIGINT) * 900 AS bucket, direction, COALESCE(disposition, 'in_progress') AS disposition,
       COUNT(*) AS calls,
       SUM(CASE WHEN answered_at IS NOT NULL THEN 1 ELSE 0 END) AS answered,
       SUM(CASE WHEN answered_at IS NOT NULL AND ended_at IS NOT NULL THEN CAST(ROUND(EXTRACT(EPOCH FROM (ended_at - answered_at))) AS BIGINT) ELSE 0 END) AS talk_s
  FROM new_rows
 GROUP BY 1, 2, 3) n
        UNION ALL
        SELECT bucket, direction, disposition, -calls, -answered, -talk_s FROM (SELECT CAST(FLOOR(EXTRACT(EPOCH FROM started_at) / 900) AS BIGINT) * 900 AS bucket, direction, COALESCE(disposition, 'in_progress') AS disposition,
       COUNT(*) AS calls,
       SUM(CASE WHEN answered_at IS NOT NULL THEN 1 ELSE 0 END) AS answered,
       SUM(CASE WHEN answered_at IS NOT NULL AND ended_at IS NOT NULL THEN CAST(ROUND(EXTRACT(EPOCH FROM (ended_at - answered_at))) AS BIGINT) ELSE 0 END) AS talk_s
  FROM old_rows
 GROUP BY 1, 2, 3) o) d
 GROUP BY bucket, direction, disposition
HAVING SUM(calls) <> 0 OR SUM(answered) <> 0 OR SUM(talk_s) <> 0
 ORDER BY bucket, direction, disposition
ON CONFLICT (bucket, direction, disposition) DO UPDATE SET calls = t.calls + excluded.calls, answered = t.answered + excluded.answered, talk_s = t.talk_s + excluded.talk_s;
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER report_call_totals_insert AFTER INSERT ON call_records
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION report_call_totals_apply();
CREATE TRIGGER report_call_totals_update AFTER UPDATE ON call_records
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION report_call_totals_apply();
CREATE TRIGGER report_call_totals_delete AFTER DELETE ON call_records
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION report_call_totals_apply();

CREATE FUNCTION report_queue_totals_apply() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO report_queue_totals AS t (queue, bucket, events, offered, answered, abandoned, timed_out, completed, wait_ms, talk_ms, sl_10s, sl_15s, sl_20s, sl_30s, sl_45s, sl_60s, sl_90s, sl_120s)
SELECT queue, bucket, CAST(events AS BIGINT), CAST(offered AS BIGINT), CAST(answered AS BIGINT), CAST(abandoned AS BIGINT), CAST(timed_out AS BIGINT), CAST(completed AS BIGINT), CAST(wait_ms AS BIGINT), CAST(talk_ms AS BIGINT), CAST(sl_10s AS BIGINT), CAST(sl_15s AS BIGINT), CAST(sl_20s AS BIGINT), CAST(sl_30s AS BIGINT), CAST(sl_45s AS BIGINT), CAST(sl_60s AS BIGINT), CAST(sl_90s AS BIGINT), CAST(sl_120s AS BIGINT) FROM (SELECT queue, CAST(FLOOR(EXTRACT(EPOCH FROM at) / 900) AS BIGINT) * 900 AS bucket, COUNT(*) AS events,
       SUM(CASE WHEN event = 'enter' THEN 1 ELSE 0 END) AS offered,
       SUM(CASE WHEN event = 'connect' THEN 1 ELSE 0 END) AS answered,
       SUM(CASE WHEN event = 'abandon' THEN 1 ELSE 0 END) AS abandoned,
       SUM(CASE WHEN event = 'timeout' THEN 1 ELSE 0 END) AS timed_out,
       SUM(CASE WHEN event = 'complete' THEN 1 ELSE 0 END) AS completed,
       SUM(CASE WHEN event = 'connect' THEN COALESCE(wait_ms, 0) ELSE 0 END) AS wait_ms,
       SUM(CASE WHEN event = 'complete' THEN COALESCE(talk_ms, 0) ELSE 0 END) AS talk_ms,
       SUM(CASE WHEN event = 'connect' AND wait_ms <= 10000 THEN 1 ELSE 0 END) AS sl_10s,
       SUM(CASE WHEN event = 'connect' AND wait_ms <= 15000 THEN 1 ELSE 0 END) AS sl_15s,
       SUM(CASE WHEN event = 'connect' AND wait_ms <= 20000 THEN 1 ELSE 0 END) AS sl_20s,
       SUM(CASE WHEN event = 'connect' AND wait_ms <= 30000 THEN 1 ELSE 0 END) AS sl_30s,
       SUM(CASE WHEN event = 'connect' AND wait_ms <= 45000 THEN 1 ELSE 0 END) AS sl_45s,
       SUM(CASE WHEN event = 'connect' AND wait_ms <= 60000 THEN 1 ELSE 0 END) AS sl_60s,
       SUM(CASE WHEN event = 'connect' AND wait_ms <= 90000 THEN 1 ELSE 0 END) AS sl_90s,
       SUM(CASE WHEN event = 'connect' AND wait_ms <= 120000 THEN 1 ELSE 0 END) AS sl_120s
  FROM new_rows
 WHERE event IN ('enter', 'connect', 'abandon', 'timeout', 'complete')
 GROUP BY 1, 2) g ORDER BY queue, bucket
ON CONFLICT (queue, bucket) DO UPDATE SET events = t.events + excluded.events, offered = t.offered + excluded.offered, answered = t.answered + excluded.answered, abandoned = t.abandoned + excluded.abandoned, timed_out = t.timed_out + excluded.timed_out, completed = t.completed + excluded.completed, wait_ms = t.wait_ms + excluded.wait_ms, talk_ms = t.talk_ms + excluded.talk_ms, sl_10s = t.sl_10s + excluded.sl_10s, sl_15s = t.sl_15s + excluded.sl_15s, sl_20s = t.sl_20s + excluded.sl_20s, sl_30s = t.sl_30s + excluded.sl_30s, sl_45s = t.sl_45s + excluded.sl_45s, sl_60s = t.sl_60s + excluded.sl_60s, sl_90s = t.sl_90s + excluded.sl_90s, sl_120s = t.sl_120s + excluded.sl_120s;
    ELSIF TG_OP = 'DELETE' THEN
        INSERT INTO report_queue_totals AS t (queue, bucket, events, offered, answered, abandoned, timed_out, completed, wait_ms, talk_ms, sl_10s, sl_15s, sl_20s, sl_30s, sl_45s, sl_60s, sl_90s, sl_120s)
SELECT queue, bucket, -CAST(events AS BIGINT), -CAST(offered AS BIGINT), -CAST(answered AS BIGINT), -CAST(abandoned AS BIGINT), -CAST(timed_out AS BIGINT), -CAST(completed AS BIGINT), -CAST(wait_ms AS BIGINT), -CAST(talk_ms AS BIGINT), -CAST(sl_10s AS BIGINT), -CAST(sl_15s AS BIGINT), -CAST(sl_20s AS BIGINT), -CAST(sl_30s AS BIGINT), -CAST(sl_45s AS BIGINT), -CAST(sl_60s AS BIGINT), -CAST(sl_90s AS BIGINT), -CAST(sl_120s AS BIGINT) FROM (SELECT queue, CAST(FLOOR(EXTRACT(EPOCH FROM at) / 900) AS BIGINT) * 900 AS bucket, COUNT(*) AS events,
       SUM(CASE WHEN event = 'enter' THEN 1 ELSE 0 END) AS offered,
       SUM(CASE WHEN event = 'connect' THEN 1 ELSE 0 END) AS answered,
       SUM(CASE WHEN event = 'abandon' THEN 1 ELSE 0 END) AS abandoned,
       SUM(CASE WHEN event = 'timeout' THEN 1 ELSE 0 END) AS timed_out,
       SUM(CASE WHEN event = 'complete' THEN 1 ELSE 0 END) AS completed,
       SUM(CASE WHEN event = 'connect' THEN COALESCE(wait_ms, 0) ELSE 0 END) AS wait_ms,
       SUM(CASE WHEN event = 'complete' THEN COALESCE(talk_ms, 0) ELSE 0 END) AS talk_ms,
       SUM(CASE WHEN event = 'connect' AND wait_ms <= 10000 THEN 1 ELSE 0 END) AS sl_10s,
       SUM(CASE WHEN event = 'connect' AND wait_ms <= 15000 THEN 1 ELSE 0 END) AS sl_15s,
       SUM(CASE WHEN event = 'connect' AND wait_ms <= 20000 THEN 1 ELSE 0 END) AS sl_20s,
       SUM(CASE WHEN event = 'connect' AND wait_ms <= 30000 THEN 1 ELSE 0 END) AS sl_30s,
       SUM(CASE WHEN event = 'connect' AND wait_ms <= 45000 THEN 1 ELSE 0 END) AS sl_45s,
       SUM(CASE WHEN event = 'connect' AND wait_ms <= 60000 THEN 1 ELSE 0 END) AS sl_60s,
       SUM(CASE WHEN event = 'connect' AND wait_ms <= 90000 THEN 1 ELSE 0 END) AS sl_90s,
       SUM(CASE WHEN event = 'connect' AND wait_ms <= 120000 THEN 1 ELSE 0 END) AS sl_120s
  FROM old_rows
 WHERE event IN ('enter', 'connect', 'abandon', 'timeout', 'complete')
 GROUP BY 1, 2) g ORDER BY queue, bucket
ON CONFLICT (queue, bucket) DO UPDATE SET events = t.events + excluded.events, offered = t.offered + excluded.offered, answered = t.answered + excluded.answered, abandoned = t.abandoned + excluded.abandoned, timed_out = t.timed_out + excluded.timed_out, completed = t.completed + excluded.completed, wait_ms = t.wait_ms + excluded.wait_ms, talk_ms = t.talk_ms + excluded.talk_ms, sl_10s = t.sl_10s + excluded.sl_10s, sl_15s = t.sl_15s + excluded.sl_15s, sl_20s = t.sl_20s + excluded.sl_20s, sl_30s = t.sl_30s + excluded.sl_30s, sl_45s = t.sl_45s + excluded.sl_45s, sl_60s = t.sl_60s + excluded.sl_60s, sl_90s = t.sl_90s + excluded.sl_90s, sl_120s = t.sl_120s + excluded.sl_120s;
    ELSE
        INSERT INTO report_queue_totals AS t (queue, bucket, events, offered, answered, abandoned, timed_out, completed, wait_ms, talk_ms, sl_10s, sl_15s, sl_20s, sl_30s, sl_45s, sl_60s, sl_90s, sl_120s)
SELECT queue, bucket, CAST(SUM(events) AS BIGINT), CAST(SUM(offered) AS BIGINT), CAST(SUM(answered) AS BIGINT), CAST(SUM(abandoned) AS BIGINT), CAST(SUM(timed_out) AS BIGINT), CAST(SUM(completed) AS BIGINT), CAST(SUM(wait_ms) AS BIGINT), CAST(SUM(talk_ms) AS BIGINT), CAST(SUM(sl_10s) AS BIGINT), CAST(SUM(sl_15s) AS BIGINT), CAST(SUM(sl_20s) AS BIGINT), CAST(SUM(sl_30s) AS BIGINT), CAST(SUM(sl_45s) AS BIGINT), CAST(SUM(sl_60s) AS BIGINT), CAST(SUM(sl_90s) AS BIGINT), CAST(SUM(sl_120s) AS BIGINT)
  FROM (SELECT * FROM (SELECT queue, CAST(FLOOR(EXTRACT(EPOCH FROM at) / 900) AS BIGINT) * 900 AS bucket, COUNT(*) AS events,
       SUM(CASE WHEN event = 'enter' THEN 1 ELSE 0 END) AS offered,
       SUM(CASE WHEN event = 'connect' THEN 1 ELSE 0 END) AS answered,
       SUM(CASE WHEN event = 'abandon' THEN 1 ELSE 0 END) AS abandoned,
       SUM(CASE WHEN event = 'timeout' THEN 1 ELSE 0 END) AS timed_out,
       SUM(CASE WHEN event = 'complete' THEN 1 ELSE 0 END) AS completed,
       SUM(CASE WHEN event = 'connect' THEN COALESCE(wait_ms, 0) ELSE 0 END) AS wait_ms,
       SUM(CASE WHEN event = 'complete' THEN COALESCE(talk_ms, 0) ELSE 0 END) AS talk_ms,
       SUM(CASE WHEN event = 'connect' AND wait_ms <= 10000 THEN 1 ELSE 0 END) AS sl_10s,
       SUM(CASE WHEN event = 'connect' AND wait_ms <= 15000 THEN 1 ELSE 0 END) AS sl_15s,
       SUM(CASE WHEN event = 'connect' AND wait_ms <= 20000 THEN 1 ELSE 0 END) AS sl_20s,
       SUM(CASE WHEN event = 'connect' AND wait_ms <= 30000 THEN 1 ELSE 0 END) AS sl_30s,
       SUM(CASE WHEN event = 'connect' AND wait_ms <= 45000 THEN 1 ELSE 0 END) AS sl_45s,
       SUM(CASE WHEN event = 'connect' AND wait_ms <= 60000 THEN 1 ELSE 0 END) AS sl_60s,
       SUM(CASE WHEN event = 'connect' AND wait_ms <= 90000 THEN 1 ELSE 0 END) AS sl_90s,
       SUM(CASE WHEN event = 'connect' AND wait_ms <= 120000 THEN 1 ELSE 0 END) AS sl_120s
  FROM new_rows
 WHERE event IN ('enter', 'connect', 'abandon', 'timeout', 'complete')
 GROUP BY 1, 2) n
        UNION ALL
        SELECT queue, bucket, -events, -offered, -answered, -abandoned, -timed_out, -completed, -wait_ms, -talk_ms, -sl_10s, -sl_15s, -sl_20s, -sl_30s, -sl_45s, -sl_60s, -sl_90s, -sl_120s FROM (SELECT queue, CAST(FLOOR(EXTRACT(EPOCH FROM at) / 900) AS BIGINT) * 900 AS bucket, COUNT(*) AS events,
       SUM(CASE WHEN event = 'enter' THEN 1 ELSE 0 END) AS offered,
       SUM(CASE WHEN event = 'connect' THEN 1 ELSE 0 END) AS answered,
       SUM(CASE WHEN event = 'abandon' THEN 1 ELSE 0 END) AS abandoned,
       SUM(CASE WHEN event = 'timeout' THEN 1 ELSE 0 END) AS timed_out,
       SUM(CASE WHEN event = 'complete' THEN 1 ELSE 0 END) AS completed,
       SUM(CASE WHEN event = 'connect' THEN COALESCE(wait_ms, 0) ELSE 0 END) AS wait_ms,
       SUM(CASE WHEN event = 'complete' THEN COALESCE(talk_ms, 0) ELSE 0 END) AS talk_ms,
       SUM(CASE WHEN event = 'connect' AND wait_ms <= 10000 THEN 1 ELSE 0 END) AS sl_10s,
       SUM(CASE WHEN event = 'connect' AND wait_ms <= 15000 THEN 1 ELSE 0 END) AS sl_15s,
       SUM(CASE WHEN event = 'connect' AND wait_ms <= 20000 THEN 1 ELSE 0 END) AS sl_20s,
       SUM(CASE WHEN event = 'connect' AND wait_ms <= 30000 THEN 1 ELSE 0 END) AS sl_30s,
       SUM(CASE WHEN event = 'connect' AND wait_ms <= 45000 THEN 1 ELSE 0 END) AS sl_45s,
       SUM(CASE WHEN event = 'connect' AND wait_ms <= 60000 THEN 1 ELSE 0 END) AS sl_60s,
       SUM(CASE WHEN event = 'connect' AND wait_ms <= 90000 THEN 1 ELSE 0 END) AS sl_90s,
       SUM(CASE WHEN event = 'connect' AND wait_ms <= 120000 THEN 1 ELSE 0 END) AS sl_120s
  FROM old_rows
 WHERE event IN ('enter', 'connect', 'abandon', 'timeout', 'complete')
 GROUP BY 1, 2) o) d
 GROUP BY queue, bucket
HAVING SUM(events) <> 0 OR SUM(offered) <> 0 OR SUM(answered) <> 0 OR SUM(abandoned) <> 0 OR SUM(timed_out) <> 0 OR SUM(completed) <> 0 OR SUM(wait_ms) <> 0 OR SUM(talk_ms) <> 0 OR SUM(sl_10s) <> 0 OR SUM(sl_15s) <> 0 OR SUM(sl_20s) <> 0 OR SUM(sl_30s) <> 0 OR SUM(sl_45s) <> 0 OR SUM(sl_60s) <> 0 OR SUM(sl_90s) <> 0 OR SUM(sl_120s) <> 0
 ORDER BY queue, bucket
ON CONFLICT (queue, bucket) DO UPDATE SET events = t.events + excluded.events, offered = t.offered + excluded.offered, answered = t.answered + excluded.answered, abandoned = t.abandoned + excluded.abandoned, timed_out = t.timed_out + excluded.timed_out, completed = t.completed + excluded.completed, wait_ms = t.wait_ms + excluded.wait_ms, talk_ms = t.talk_ms + excluded.talk_ms, sl_10s = t.sl_10s + excluded.sl_10s, sl_15s = t.sl_15s + excluded.sl_15s, sl_20s = t.sl_20s + excluded.sl_20s, sl_30s = t.sl_30s + excluded.sl_30s, sl_45s = t.sl_45s + excluded.sl_45s, sl_60s = t.sl_60s + excluded.sl_60s, sl_90s = t.sl_90s + excluded.sl_90s, sl_120s = t.sl_120s + excluded.sl_120s;
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER report_queue_totals_insert AFTER INSERT ON queue_log
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION report_queue_totals_apply();
CREATE TRIGGER report_queue_totals_update AFTER UPDATE ON queue_log
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION report_queue_totals_apply();
CREATE TRIGGER report_queue_totals_delete AFTER DELETE ON queue_log
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION report_queue_totals_apply();

CREATE FUNCTION report_agent_totals_apply() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO report_agent_totals AS t (agent, bucket, answered, completed, talk_ms)
SELECT agent, bucket, CAST(answered AS BIGINT), CAST(completed AS BIGINT), CAST(talk_ms AS BIGINT) FROM (SELECT agent, CAST(FLOOR(EXTRACT(EPOCH FROM at) / 900) AS BIGINT) * 900 AS bucket,
       SUM(CASE WHEN event = 'connect' THEN 1 ELSE 0 END) AS answered,
       SUM(CASE WHEN event = 'complete' THEN 1 ELSE 0 END) AS completed,
       SUM(CASE WHEN event = 'complete' THEN COALESCE(talk_ms, 0) ELSE 0 END) AS talk_ms
  FROM new_rows
 WHERE agent IS NOT NULL AND event IN ('connect', 'complete')
 GROUP BY 1, 2) g ORDER BY agent, bucket
ON CONFLICT (agent, bucket) DO UPDATE SET answered = t.answered + excluded.answered, completed = t.completed + excluded.completed, talk_ms = t.talk_ms + excluded.talk_ms;
    ELSIF TG_OP = 'DELETE' THEN
        INSERT INTO report_agent_totals AS t (agent, bucket, answered, completed, talk_ms)
SELECT agent, bucket, -CAST(answered AS BIGINT), -CAST(completed AS BIGINT), -CAST(talk_ms AS BIGINT) FROM (SELECT agent, CAST(FLOOR(EXTRACT(EPOCH FROM at) / 900) AS BIGINT) * 900 AS bucket,
       SUM(CASE WHEN event = 'connect' THEN 1 ELSE 0 END) AS answered,
       SUM(CASE WHEN event = 'complete' THEN 1 ELSE 0 END) AS completed,
       SUM(CASE WHEN event = 'complete' THEN COALESCE(talk_ms, 0) ELSE 0 END) AS talk_ms
  FROM old_rows
 WHERE agent IS NOT NULL AND event IN ('connect', 'complete')
 GROUP BY 1, 2) g ORDER BY agent, bucket
ON CONFLICT (agent, bucket) DO UPDATE SET answered = t.answered + excluded.answered, completed = t.completed + excluded.completed, talk_ms = t.talk_ms + excluded.talk_ms;
    ELSE
        INSERT INTO report_agent_totals AS t (agent, bucket, answered, completed, talk_ms)
SELECT agent, bucket, CAST(SUM(answered) AS BIGINT), CAST(SUM(completed) AS BIGINT), CAST(SUM(talk_ms) AS BIGINT)
  FROM (SELECT * FROM (SELECT agent, CAST(FLOOR(EXTRACT(EPOCH FROM at) / 900) AS BIGINT) * 900 AS bucket,
       SUM(CASE WHEN event = 'connect' THEN 1 ELSE 0 END) AS answered,
       SUM(CASE WHEN event = 'complete' THEN 1 ELSE 0 END) AS completed,
       SUM(CASE WHEN event = 'complete' THEN COALESCE(talk_ms, 0) ELSE 0 END) AS talk_ms
  FROM new_rows
 WHERE agent IS NOT NULL AND event IN ('connect', 'complete')
 GROUP BY 1, 2) n
        UNION ALL
        SELECT agent, bucket, -answered, -completed, -talk_ms FROM (SELECT agent, CAST(FLOOR(EXTRACT(EPOCH FROM at) / 900) AS BIGINT) * 900 AS bucket,
       SUM(CASE WHEN event = 'connect' THEN 1 ELSE 0 END) AS answered,
       SUM(CASE WHEN event = 'complete' THEN 1 ELSE 0 END) AS completed,
       SUM(CASE WHEN event = 'complete' THEN COALESCE(talk_ms, 0) ELSE 0 END) AS talk_ms
  FROM old_rows
 WHERE agent IS NOT NULL AND event IN ('connect', 'complete')
 GROUP BY 1, 2) o) d
 GROUP BY agent, bucket
HAVING SUM(answered) <> 0 OR SUM(completed) <> 0 OR SUM(talk_ms) <> 0
 ORDER BY agent, bucket
ON CONFLICT (agent, bucket) DO UPDATE SET answered = t.answered + excluded.answered, completed = t.completed + excluded.completed, talk_ms = t.talk_ms + excluded.talk_ms;
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER report_agent_totals_insert AFTER INSERT ON queue_log
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION report_agent_totals_apply();
CREATE TRIGGER report_agent_totals_update AFTER UPDATE ON queue_log
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION report_agent_totals_apply();
CREATE TRIGGER report_agent_totals_delete AFTER DELETE ON queue_log
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION report_agent_totals_apply();

-- TRUNCATE fires no DELETE trigger: it empties the totals of the emptied table (SQLite has
-- no TRUNCATE; its DELETE without WHERE runs the row triggers).
CREATE FUNCTION report_totals_truncate() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_TABLE_NAME = 'call_records' THEN
        DELETE FROM report_call_totals;
    ELSE
        DELETE FROM report_queue_totals;
        DELETE FROM report_agent_totals;
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER report_call_totals_truncate AFTER TRUNCATE ON call_records
    FOR EACH STATEMENT EXECUTE FUNCTION report_totals_truncate();
CREATE TRIGGER report_queue_totals_truncate AFTER TRUNCATE ON queue_log
    FOR EACH STATEMENT EXECUTE FUNCTION report_totals_truncate();

-- Backfill from the rows already stored, so an upgraded database reports the same.
INSERT INTO report_call_totals (bucket, direction, disposition, calls, answered, talk_s)
SELECT CAST(FLOOR(EXTRACT(EPOCH FROM started_at) / 900) AS BIGINT) * 900 AS bucket, direction, COALESCE(disposition, 'in_progress') AS disposition,
       COUNT(*) AS calls,
       SUM(CASE WHEN answered_at IS NOT NULL THEN 1 ELSE 0 END) AS answered,
       SUM(CASE WHEN answered_at IS NOT NULL AND ended_at IS NOT NULL THEN CAST(ROUND(EXTRACT(EPOCH FROM (ended_at - answered_at))) AS BIGINT) ELSE 0 END) AS talk_s
  FROM call_records
 GROUP BY 1, 2, 3;
INSERT INTO report_queue_totals (queue, bucket, events, offered, answered, abandoned, timed_out, completed, wait_ms, talk_ms, sl_10s, sl_15s, sl_20s, sl_30s, sl_45s, sl_60s, sl_90s, sl_120s)
SELECT queue, CAST(FLOOR(EXTRACT(EPOCH FROM at) / 900) AS BIGINT) * 900 AS bucket, COUNT(*) AS events,
       SUM(CASE WHEN event = 'enter' THEN 1 ELSE 0 END) AS offered,
       SUM(CASE WHEN event = 'connect' THEN 1 ELSE 0 END) AS answered,
       SUM(CASE WHEN event = 'abandon' THEN 1 ELSE 0 END) AS abandoned,
       SUM(CASE WHEN event = 'timeout' THEN 1 ELSE 0 END) AS timed_out,
       SUM(CASE WHEN event = 'complete' THEN 1 ELSE 0 END) AS completed,
       SUM(CASE WHEN event = 'connect' THEN COALESCE(wait_ms, 0) ELSE 0 END) AS wait_ms,
       SUM(CASE WHEN event = 'complete' THEN COALESCE(talk_ms, 0) ELSE 0 END) AS talk_ms,
       SUM(CASE WHEN event = 'connect' AND wait_ms <= 10000 THEN 1 ELSE 0 END) AS sl_10s,
       SUM(CASE WHEN event = 'connect' AND wait_ms <= 15000 THEN 1 ELSE 0 END) AS sl_15s,
       SUM(CASE WHEN event = 'connect' AND wait_ms <= 20000 THEN 1 ELSE 0 END) AS sl_20s,
       SUM(CASE WHEN event = 'connect' AND wait_ms <= 30000 THEN 1 ELSE 0 END) AS sl_30s,
       SUM(CASE WHEN event = 'connect' AND wait_ms <= 45000 THEN 1 ELSE 0 END) AS sl_45s,
       SUM(CASE WHEN event = 'connect' AND wait_ms <= 60000 THEN 1 ELSE 0 END) AS sl_60s,
       SUM(CASE WHEN event = 'connect' AND wait_ms <= 90000 THEN 1 ELSE 0 END) AS sl_90s,
       SUM(CASE WHEN event = 'connect' AND wait_ms <= 120000 THEN 1 ELSE 0 END) AS sl_120s
  FROM queue_log
 WHERE event IN ('enter', 'connect', 'abandon', 'timeout', 'complete')
 GROUP BY 1, 2;
INSERT INTO report_agent_totals (agent, bucket, answered, completed, talk_ms)
SELECT agent, CAST(FLOOR(EXTRACT(EPOCH FROM at) / 900) AS BIGINT) * 900 AS bucket,
       SUM(CASE WHEN event = 'connect' THEN 1 ELSE 0 END) AS answered,
       SUM(CASE WHEN event = 'complete' THEN 1 ELSE 0 END) AS completed,
       SUM(CASE WHEN event = 'complete' THEN COALESCE(talk_ms, 0) ELSE 0 END) AS talk_ms
  FROM queue_log
 WHERE agent IS NOT NULL AND event IN ('connect', 'complete')
 GROUP BY 1, 2;
