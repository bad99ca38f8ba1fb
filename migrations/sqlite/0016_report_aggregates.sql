-- Per-interval totals for GET /api/reports/queues, /calls and /agents (src/api/reports.rs;
-- docs/adr/0009-report-aggregates.md, docs/schema.md). Grouping a month of a million call
-- records on a computed interval took 2-6 s; these tables hold one row per 15 minutes (Unix
-- seconds, a multiple of 900: UTC-aligned, as the reports' buckets) and key, and a report
-- whose range and interval are whole 15-minute multiples sums them instead.
--
-- Kept by triggers, in the same transaction as the row they count, so every write path is
-- covered: the store's writer, its spool replayed after an outage (late rows for old
-- intervals), crash recovery closing dangling calls, other nodes, and rows written by hand in
-- SQL. An UPDATE subtracts the old row's contribution and adds the new one's; a DELETE
-- subtracts. Rows whose timestamp does not parse are not counted (the report falls back to the
-- raw tables only for unaligned requests, see the ADR).
CREATE TABLE report_call_totals (
    bucket      INTEGER NOT NULL,          -- interval start, Unix seconds, multiple of 900
    direction   TEXT    NOT NULL,
    disposition TEXT    NOT NULL,          -- call_records.disposition, 'in_progress' while NULL
    calls       INTEGER NOT NULL DEFAULT 0,
    answered    INTEGER NOT NULL DEFAULT 0,
    talk_s      INTEGER NOT NULL DEFAULT 0, -- per call ROUND(ended_at - answered_at), summed
    PRIMARY KEY (bucket, direction, disposition)
);

-- queue_log rows with event enter, connect, abandon, timeout or complete, by queue.
-- sl_<N>s: connects with wait_ms <= N s, the service levels a report can be answered from.
CREATE TABLE report_queue_totals (
    queue     TEXT    NOT NULL,
    bucket    INTEGER NOT NULL,
    events    INTEGER NOT NULL DEFAULT 0,
    offered   INTEGER NOT NULL DEFAULT 0,
    answered  INTEGER NOT NULL DEFAULT 0,
    abandoned INTEGER NOT NULL DEFAULT 0,
    timed_out INTEGER NOT NULL DEFAULT 0,
    completed INTEGER NOT NULL DEFAULT 0,
    wait_ms   INTEGER NOT NULL DEFAULT 0, -- of the connects
    talk_ms   INTEGER NOT NULL DEFAULT 0, -- of the completes
    sl_10s    INTEGER NOT NULL DEFAULT 0,
    sl_15s    INTEGER NOT NULL DEFAULT 0,
    sl_20s    INTEGER NOT NULL DEFAULT 0,
    sl_30s    INTEGER NOT NULL DEFAULT 0,
    sl_45s    INTEGER NOT NULL DEFAULT 0,
    sl_60s    INTEGER NOT NULL DEFAULT 0,
    sl_90s    INTEGER NOT NULL DEFAULT 0,
    sl_120s   INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (queue, bucket)
);

-- queue_log rows with an agent and event connect or complete, by agent.
CREATE TABLE report_agent_totals (
    agent     TEXT    NOT NULL,
    bucket    INTEGER NOT NULL,
    answered  INTEGER NOT NULL DEFAULT 0,
    completed INTEGER NOT NULL DEFAULT 0,
    talk_ms   INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (agent, bucket)
);

CREATE TRIGGER report_call_totals_insert AFTER INSERT ON call_records
WHEN strftime('%s', NEW.started_at) IS NOT NULL
BEGIN
    INSERT INTO report_call_totals (bucket, direction, disposition, calls, answered, talk_s)
    VALUES ((CAST(strftime('%s', NEW.started_at) AS INTEGER) / 900) * 900, NEW.direction,
        COALESCE(NEW.disposition, 'in_progress'), 1,
        (CASE WHEN NEW.answered_at IS NOT NULL THEN 1 ELSE 0 END),
        (CASE WHEN NEW.answered_at IS NOT NULL AND NEW.ended_at IS NOT NULL
                 THEN COALESCE(CAST(ROUND((julianday(NEW.ended_at) - julianday(NEW.answered_at)) * 86400) AS INTEGER), 0) ELSE 0 END))
    ON CONFLICT (bucket, direction, disposition) DO UPDATE SET calls = calls + excluded.calls,
        answered = answered + excluded.answered, talk_s = talk_s + excluded.talk_s;
END;

CREATE TRIGGER report_call_totals_delete AFTER DELETE ON call_records
WHEN strftime('%s', OLD.started_at) IS NOT NULL
BEGIN
    INSERT INTO report_call_totals (bucket, direction, disposition, calls, answered, talk_s)
    VALUES ((CAST(strftime('%s', OLD.started_at) AS INTEGER) / 900) * 900, OLD.direction,
        COALESCE(OLD.disposition, 'in_progress'), -1,
        -(CASE WHEN OLD.answered_at IS NOT NULL THEN 1 ELSE 0 END),
        -(CASE WHEN OLD.answered_at IS NOT NULL AND OLD.ended_at IS NOT NULL
                 THEN COALESCE(CAST(ROUND((julianday(OLD.ended_at) - julianday(OLD.answered_at)) * 86400) AS INTEGER), 0) ELSE 0 END))
    ON CONFLICT (bucket, direction, disposition) DO UPDATE SET calls = calls + excluded.calls,
        answered = answered + excluded.answered, talk_s = talk_s + excluded.talk_s;
END;

-- Only when a counted column changes (not for trunk, recording path, ...).
CREATE TRIGGER report_call_totals_update_old AFTER UPDATE OF started_at, direction, disposition,
    answered_at, ended_at ON call_records
WHEN strftime('%s', OLD.started_at) IS NOT NULL
BEGIN
    INSERT INTO report_call_totals (bucket, direction, disposition, calls, answered, talk_s)
    VALUES ((CAST(strftime('%s', OLD.started_at) AS INTEGER) / 900) * 900, OLD.direction,
        COALESCE(OLD.disposition, 'in_progress'), -1,
        -(CASE WHEN OLD.answered_at IS NOT NULL THEN 1 ELSE 0 END),
        -(CASE WHEN OLD.answered_at IS NOT NULL AND OLD.ended_at IS NOT NULL
                 THEN COALESCE(CAST(ROUND((julianday(OLD.ended_at) - julianday(OLD.answered_at)) * 86400) AS INTEGER), 0) ELSE 0 END))
    ON CONFLICT (bucket, direction, disposition) DO UPDATE SET calls = calls + excluded.calls,
        answered = answered + excluded.answered, talk_s = talk_s + excluded.talk_s;
END;

CREATE TRIGGER report_call_totals_update_new AFTER UPDATE OF started_at, direction, disposition,
    answered_at, ended_at ON call_records
WHEN strftime('%s', NEW.started_at) IS NOT NULL
BEGIN
    INSERT INTO report_call_totals (bucket, direction, disposition, calls, answered, talk_s)
    VALUES ((CAST(strftime('%s', NEW.started_at) AS INTEGER) / 900) * 900, NEW.direction,
        COALESCE(NEW.disposition, 'in_progress'), 1,
        (CASE WHEN NEW.answered_at IS NOT NULL THEN 1 ELSE 0 END),
        (CASE WHEN NEW.answered_at IS NOT NULL AND NEW.ended_at IS NOT NULL
                 THEN COALESCE(CAST(ROUND((julianday(NEW.ended_at) - julianday(NEW.answered_at)) * 86400) AS INTEGER), 0) ELSE 0 END))
    ON CONFLICT (bucket, direction, disposition) DO UPDATE SET calls = calls + excluded.calls,
        answered = answered + excluded.answered, talk_s = talk_s + excluded.talk_s;
END;

CREATE TRIGGER report_queue_totals_insert AFTER INSERT ON queue_log
WHEN NEW.event IN ('enter', 'connect', 'abandon', 'timeout', 'complete') AND strftime('%s', NEW.at) IS NOT NULL
BEGIN
    INSERT INTO report_queue_totals (queue, bucket, events, offered, answered, abandoned, timed_out, completed, wait_ms, talk_ms, sl_10s, sl_15s, sl_20s, sl_30s, sl_45s, sl_60s, sl_90s, sl_120s)
    VALUES (NEW.queue,
        (CAST(strftime('%s', NEW.at) AS INTEGER) / 900) * 900,
        1,
        (CASE WHEN NEW.event = 'enter' THEN 1 ELSE 0 END),
        (CASE WHEN NEW.event = 'connect' THEN 1 ELSE 0 END),
        (CASE WHEN NEW.event = 'abandon' THEN 1 ELSE 0 END),
        (CASE WHEN NEW.event = 'timeout' THEN 1 ELSE 0 END),
        (CASE WHEN NEW.event = 'complete' THEN 1 ELSE 0 END),
        (CASE WHEN NEW.event = 'connect' THEN COALESCE(NEW.wait_ms, 0) ELSE 0 END),
        (CASE WHEN NEW.event = 'complete' THEN COALESCE(NEW.talk_ms, 0) ELSE 0 END),
        (CASE WHEN NEW.event = 'connect' AND NEW.wait_ms <= 10000 THEN 1 ELSE 0 END),
        (CASE WHEN NEW.event = 'connect' AND NEW.wait_ms <= 15000 THEN 1 ELSE 0 END),
        (CASE WHEN NEW.event = 'connect' AND NEW.wait_ms <= 20000 THEN 1 ELSE 0 END),
        (CASE WHEN NEW.event = 'connect' AND NEW.wait_ms <= 30000 THEN 1 ELSE 0 END),
        (CASE WHEN NEW.event = 'connect' AND NEW.wait_ms <= 45000 THEN 1 ELSE 0 END),
        (CASE WHEN NEW.event = 'connect' AND NEW.wait_ms <= 60000 THEN 1 ELSE 0 END),
        (CASE WHEN NEW.event = 'connect' AND NEW.wait_ms <= 90000 THEN 1 ELSE 0 END),
        (CASE WHEN NEW.event = 'connect' AND NEW.wait_ms <= 120000 THEN 1 ELSE 0 END))
    ON CONFLICT (queue, bucket) DO UPDATE SET events = events + excluded.events, offered = offered + excluded.offered, answered = answered + excluded.answered, abandoned = abandoned + excluded.abandoned, timed_out = timed_out + excluded.timed_out, completed = completed + excluded.completed, wait_ms = wait_ms + excluded.wait_ms, talk_ms = talk_ms + excluded.talk_ms, sl_10s = sl_10s + excluded.sl_10s, sl_15s = sl_15s + excluded.sl_15s, sl_20s = sl_20s + excluded.sl_20s, sl_30s = sl_30s + excluded.sl_30s, sl_45s = sl_45s + excluded.sl_45s, sl_60s = sl_60s + excluded.sl_60s, sl_90s = sl_90s + excluded.sl_90s, sl_120s = sl_120s + excluded.sl_120s;
END;

CREATE TRIGGER report_agent_totals_insert AFTER INSERT ON queue_log
WHEN NEW.agent IS NOT NULL AND NEW.event IN ('connect', 'complete') AND strftime('%s', NEW.at) IS NOT NULL
BEGIN
    INSERT INTO report_agent_totals (agent, bucket, answered, completed, talk_ms)
    VALUES (NEW.agent, (CAST(strftime('%s', NEW.at) AS INTEGER) / 900) * 900,
        (CASE WHEN NEW.event = 'connect' THEN 1 ELSE 0 END),
        (CASE WHEN NEW.event = 'complete' THEN 1 ELSE 0 END),
        (CASE WHEN NEW.event = 'complete' THEN COALESCE(NEW.talk_ms, 0) ELSE 0 END))
    ON CONFLICT (agent, bucket) DO UPDATE SET answered = answered + excluded.answered,
        completed = completed + excluded.completed, talk_ms = talk_ms + excluded.talk_ms;
END;

CREATE TRIGGER report_queue_totals_delete AFTER DELETE ON queue_log
WHEN OLD.event IN ('enter', 'connect', 'abandon', 'timeout', 'complete') AND strftime('%s', OLD.at) IS NOT NULL
BEGIN
    INSERT INTO report_queue_totals (queue, bucket, events, offered, answered, abandoned, timed_out, completed, wait_ms, talk_ms, sl_10s, sl_15s, sl_20s, sl_30s, sl_45s, sl_60s, sl_90s, sl_120s)
    VALUES (OLD.queue,
        (CAST(strftime('%s', OLD.at) AS INTEGER) / 900) * 900,
        -1,
        -(CASE WHEN OLD.event = 'enter' THEN 1 ELSE 0 END),
        -(CASE WHEN OLD.event = 'connect' THEN 1 ELSE 0 END),
        -(CASE WHEN OLD.event = 'abandon' THEN 1 ELSE 0 END),
        -(CASE WHEN OLD.event = 'timeout' THEN 1 ELSE 0 END),
        -(CASE WHEN OLD.event = 'complete' THEN 1 ELSE 0 END),
        -(CASE WHEN OLD.event = 'connect' THEN COALESCE(OLD.wait_ms, 0) ELSE 0 END),
        -(CASE WHEN OLD.event = 'complete' THEN COALESCE(OLD.talk_ms, 0) ELSE 0 END),
        -(CASE WHEN OLD.event = 'connect' AND OLD.wait_ms <= 10000 THEN 1 ELSE 0 END),
        -(CASE WHEN OLD.event = 'connect' AND OLD.wait_ms <= 15000 THEN 1 ELSE 0 END),
        -(CASE WHEN OLD.event = 'connect' AND OLD.wait_ms <= 20000 THEN 1 ELSE 0 END),
        -(CASE WHEN OLD.event = 'connect' AND OLD.wait_ms <= 30000 THEN 1 ELSE 0 END),
        -(CASE WHEN OLD.event = 'connect' AND OLD.wait_ms <= 45000 THEN 1 ELSE 0 END),
        -(CASE WHEN OLD.event = 'connect' AND OLD.wait_ms <= 60000 THEN 1 ELSE 0 END),
        -(CASE WHEN OLD.event = 'connect' AND OLD.wait_ms <= 90000 THEN 1 ELSE 0 END),
        -(CASE WHEN OLD.event = 'connect' AND OLD.wait_ms <= 120000 THEN 1 ELSE 0 END))
    ON CONFLICT (queue, bucket) DO UPDATE SET events = events + excluded.events, offered = offered + excluded.offered, answered = answered + excluded.answered, abandoned = abandoned + excluded.abandoned, timed_out = timed_out + excluded.timed_out, completed = completed + excluded.completed, wait_ms = wait_ms + excluded.wait_ms, talk_ms = talk_ms + excluded.talk_ms, sl_10s = sl_10s + excluded.sl_10s, sl_15s = sl_15s + excluded.sl_15s, sl_20s = sl_20s + excluded.sl_20s, sl_30s = sl_30s + excluded.sl_30s, sl_45s = sl_45s + excluded.sl_45s, sl_60s = sl_60s + excluded.sl_60s, sl_90s = sl_90s + excluded.sl_90s, sl_120s = sl_120s + excluded.sl_120s;
END;

CREATE TRIGGER report_agent_totals_delete AFTER DELETE ON queue_log
WHEN OLD.agent IS NOT NULL AND OLD.event IN ('connect', 'complete') AND strftime('%s', OLD.at) IS NOT NULL
BEGIN
    INSERT INTO report_agent_totals (agent, bucket, answered, completed, talk_ms)
    VALUES (OLD.agent, (CAST(strftime('%s', OLD.at) AS INTEGER) / 900) * 900,
        -(CASE WHEN OLD.event = 'connect' THEN 1 ELSE 0 END),
        -(CASE WHEN OLD.event = 'complete' THEN 1 ELSE 0 END),
        -(CASE WHEN OLD.event = 'complete' THEN COALESCE(OLD.talk_ms, 0) ELSE 0 END))
    ON CONFLICT (agent, bucket) DO UPDATE SET answered = answered + excluded.answered,
        completed = completed + excluded.completed, talk_ms = talk_ms + excluded.talk_ms;
END;

CREATE TRIGGER report_queue_totals_update_old AFTER UPDATE ON queue_log
WHEN OLD.event IN ('enter', 'connect', 'abandon', 'timeout', 'complete') AND strftime('%s', OLD.at) IS NOT NULL
BEGIN
    INSERT INTO report_queue_totals (queue, bucket, events, offered, answered, abandoned, timed_out, completed, wait_ms, talk_ms, sl_10s, sl_15s, sl_20s, sl_30s, sl_45s, sl_60s, sl_90s, sl_120s)
    VALUES (OLD.queue,
        (CAST(strftime('%s', OLD.at) AS INTEGER) / 900) * 900,
        -1,
        -(CASE WHEN OLD.event = 'enter' THEN 1 ELSE 0 END),
        -(CASE WHEN OLD.event = 'connect' THEN 1 ELSE 0 END),
        -(CASE WHEN OLD.event = 'abandon' THEN 1 ELSE 0 END),
        -(CASE WHEN OLD.event = 'timeout' THEN 1 ELSE 0 END),
        -(CASE WHEN OLD.event = 'complete' THEN 1 ELSE 0 END),
        -(CASE WHEN OLD.event = 'connect' THEN COALESCE(OLD.wait_ms, 0) ELSE 0 END),
        -(CASE WHEN OLD.event = 'complete' THEN COALESCE(OLD.talk_ms, 0) ELSE 0 END),
        -(CASE WHEN OLD.event = 'connect' AND OLD.wait_ms <= 10000 THEN 1 ELSE 0 END),
        -(CASE WHEN OLD.event = 'connect' AND OLD.wait_ms <= 15000 THEN 1 ELSE 0 END),
        -(CASE WHEN OLD.event = 'connect' AND OLD.wait_ms <= 20000 THEN 1 ELSE 0 END),
        -(CASE WHEN OLD.event = 'connect' AND OLD.wait_ms <= 30000 THEN 1 ELSE 0 END),
        -(CASE WHEN OLD.event = 'connect' AND OLD.wait_ms <= 45000 THEN 1 ELSE 0 END),
        -(CASE WHEN OLD.event = 'connect' AND OLD.wait_ms <= 60000 THEN 1 ELSE 0 END),
        -(CASE WHEN OLD.event = 'connect' AND OLD.wait_ms <= 90000 THEN 1 ELSE 0 END),
        -(CASE WHEN OLD.event = 'connect' AND OLD.wait_ms <= 120000 THEN 1 ELSE 0 END))
    ON CONFLICT (queue, bucket) DO UPDATE SET events = events + excluded.events, offered = offered + excluded.offered, answered = answered + excluded.answered, abandoned = abandoned + excluded.abandoned, timed_out = timed_out + excluded.timed_out, completed = completed + excluded.completed, wait_ms = wait_ms + excluded.wait_ms, talk_ms = talk_ms + excluded.talk_ms, sl_10s = sl_10s + excluded.sl_10s, sl_15s = sl_15s + excluded.sl_15s, sl_20s = sl_20s + excluded.sl_20s, sl_30s = sl_30s + excluded.sl_30s, sl_45s = sl_45s + excluded.sl_45s, sl_60s = sl_60s + excluded.sl_60s, sl_90s = sl_90s + excluded.sl_90s, sl_120s = sl_120s + excluded.sl_120s;
END;

CREATE TRIGGER report_agent_totals_update_old AFTER UPDATE ON queue_log
WHEN OLD.agent IS NOT NULL AND OLD.event IN ('connect', 'complete') AND strftime('%s', OLD.at) IS NOT NULL
BEGIN
    INSERT INTO report_agent_totals (agent, bucket, answered, completed, talk_ms)
    VALUES (OLD.agent, (CAST(strftime('%s', OLD.at) AS INTEGER) / 900) * 900,
        -(CASE WHEN OLD.event = 'connect' THEN 1 ELSE 0 END),
        -(CASE WHEN OLD.event = 'complete' THEN 1 ELSE 0 END),
        -(CASE WHEN OLD.event = 'complete' THEN COALESCE(OLD.talk_ms, 0) ELSE 0 END))
    ON CONFLICT (agent, bucket) DO UPDATE SET answered = answered + excluded.answered,
        completed = completed + excluded.completed, talk_ms = talk_ms + excluded.talk_ms;
END;

CREATE TRIGGER report_queue_totals_update_new AFTER UPDATE ON queue_log
WHEN NEW.event IN ('enter', 'connect', 'abandon', 'timeout', 'complete') AND strftime('%s', NEW.at) IS NOT NULL
BEGIN
    INSERT INTO report_queue_totals (queue, bucket, events, offered, answered, abandoned, timed_out, completed, wait_ms, talk_ms, sl_10s, sl_15s, sl_20s, sl_30s, sl_45s, sl_60s, sl_90s, sl_120s)
    VALUES (NEW.queue,
        (CAST(strftime('%s', NEW.at) AS INTEGER) / 900) * 900,
        1,
        (CASE WHEN NEW.event = 'enter' THEN 1 ELSE 0 END),
        (CASE WHEN NEW.event = 'connect' THEN 1 ELSE 0 END),
        (CASE WHEN NEW.event = 'abandon' THEN 1 ELSE 0 END),
        (CASE WHEN NEW.event = 'timeout' THEN 1 ELSE 0 END),
        (CASE WHEN NEW.event = 'complete' THEN 1 ELSE 0 END),
        (CASE WHEN NEW.event = 'connect' THEN COALESCE(NEW.wait_ms, 0) ELSE 0 END),
        (CASE WHEN NEW.event = 'complete' THEN COALESCE(NEW.talk_ms, 0) ELSE 0 END),
        (CASE WHEN NEW.event = 'connect' AND NEW.wait_ms <= 10000 THEN 1 ELSE 0 END),
        (CASE WHEN NEW.event = 'connect' AND NEW.wait_ms <= 15000 THEN 1 ELSE 0 END),
        (CASE WHEN NEW.event = 'connect' AND NEW.wait_ms <= 20000 THEN 1 ELSE 0 END),
        (CASE WHEN NEW.event = 'connect' AND NEW.wait_ms <= 30000 THEN 1 ELSE 0 END),
        (CASE WHEN NEW.event = 'connect' AND NEW.wait_ms <= 45000 THEN 1 ELSE 0 END),
        (CASE WHEN NEW.event = 'connect' AND NEW.wait_ms <= 60000 THEN 1 ELSE 0 END),
        (CASE WHEN NEW.event = 'connect' AND NEW.wait_ms <= 90000 THEN 1 ELSE 0 END),
        (CASE WHEN NEW.event = 'connect' AND NEW.wait_ms <= 120000 THEN 1 ELSE 0 END))
    ON CONFLICT (queue, bucket) DO UPDATE SET events = events + excluded.events, offered = offered + excluded.offered, answered = answered + excluded.answered, abandoned = abandoned + excluded.abandoned, timed_out = timed_out + excluded.timed_out, completed = completed + excluded.completed, wait_ms = wait_ms + excluded.wait_ms, talk_ms = talk_ms + excluded.talk_ms, sl_10s = sl_10s + excluded.sl_10s, sl_15s = sl_15s + excluded.sl_15s, sl_20s = sl_20s + excluded.sl_20s, sl_30s = sl_30s + excluded.sl_30s, sl_45s = sl_45s + excluded.sl_45s, sl_60s = sl_60s + excluded.sl_60s, sl_90s = sl_90s + excluded.sl_90s, sl_120s = sl_120s + excluded.sl_120s;
END;

CREATE TRIGGER report_agent_totals_update_new AFTER UPDATE ON queue_log
WHEN NEW.agent IS NOT NULL AND NEW.event IN ('connect', 'complete') AND strftime('%s', NEW.at) IS NOT NULL
BEGIN
    INSERT INTO report_agent_totals (agent, bucket, answered, completed, talk_ms)
    VALUES (NEW.agent, (CAST(strftime('%s', NEW.at) AS INTEGER) / 900) * 900,
        (CASE WHEN NEW.event = 'connect' THEN 1 ELSE 0 END),
        (CASE WHEN NEW.event = 'complete' THEN 1 ELSE 0 END),
        (CASE WHEN NEW.event = 'complete' THEN COALESCE(NEW.talk_ms, 0) ELSE 0 END))
    ON CONFLICT (agent, bucket) DO UPDATE SET answered = answered + excluded.answered,
        completed = completed + excluded.completed, talk_ms = talk_ms + excluded.talk_ms;
END;

-- Backfill from the rows already stored, so an upgraded database reports the same.
INSERT INTO report_call_totals (bucket, direction, disposition, calls, answered, talk_s)
SELECT (CAST(strftime('%s', started_at) AS INTEGER) / 900) * 900, direction, COALESCE(disposition, 'in_progress'), COUNT(*),
       SUM(CASE WHEN answered_at IS NOT NULL THEN 1 ELSE 0 END),
       SUM(CASE WHEN answered_at IS NOT NULL AND ended_at IS NOT NULL
                THEN COALESCE(CAST(ROUND((julianday(call_records.ended_at) - julianday(call_records.answered_at)) * 86400) AS INTEGER), 0) ELSE 0 END)
  FROM call_records WHERE strftime('%s', started_at) IS NOT NULL
 GROUP BY 1, 2, 3;
INSERT INTO report_queue_totals (queue, bucket, events, offered, answered, abandoned, timed_out, completed, wait_ms, talk_ms, sl_10s, sl_15s, sl_20s, sl_30s, sl_45s, sl_60s, sl_90s, sl_120s)
SELECT queue, (CAST(strftime('%s', at) AS INTEGER) / 900) * 900, COUNT(*),
       SUM(CASE WHEN event = 'enter' THEN 1 ELSE 0 END),
       SUM(CASE WHEN event = 'connect' THEN 1 ELSE 0 END),
       SUM(CASE WHEN event = 'abandon' THEN 1 ELSE 0 END),
       SUM(CASE WHEN event = 'timeout' THEN 1 ELSE 0 END),
       SUM(CASE WHEN event = 'complete' THEN 1 ELSE 0 END),
       SUM(CASE WHEN event = 'connect' THEN COALESCE(wait_ms, 0) ELSE 0 END),
       SUM(CASE WHEN event = 'complete' THEN COALESCE(talk_ms, 0) ELSE 0 END),
       SUM(CASE WHEN event = 'connect' AND wait_ms <= 10000 THEN 1 ELSE 0 END),
       SUM(CASE WHEN event = 'connect' AND wait_ms <= 15000 THEN 1 ELSE 0 END),
       SUM(CASE WHEN event = 'connect' AND wait_ms <= 20000 THEN 1 ELSE 0 END),
       SUM(CASE WHEN event = 'connect' AND wait_ms <= 30000 THEN 1 ELSE 0 END),
       SUM(CASE WHEN event = 'connect' AND wait_ms <= 45000 THEN 1 ELSE 0 END),
       SUM(CASE WHEN event = 'connect' AND wait_ms <= 60000 THEN 1 ELSE 0 END),
       SUM(CASE WHEN event = 'connect' AND wait_ms <= 90000 THEN 1 ELSE 0 END),
       SUM(CASE WHEN event = 'connect' AND wait_ms <= 120000 THEN 1 ELSE 0 END)
  FROM queue_log
 WHERE event IN ('enter', 'connect', 'abandon', 'timeout', 'complete') AND strftime('%s', at) IS NOT NULL
 GROUP BY 1, 2;
INSERT INTO report_agent_totals (agent, bucket, answered, completed, talk_ms)
SELECT agent, (CAST(strftime('%s', at) AS INTEGER) / 900) * 900,
       SUM(CASE WHEN event = 'connect' THEN 1 ELSE 0 END),
       SUM(CASE WHEN event = 'complete' THEN 1 ELSE 0 END),
       SUM(CASE WHEN event = 'complete' THEN COALESCE(talk_ms, 0) ELSE 0 END)
  FROM queue_log
 WHERE agent IS NOT NULL AND event IN ('connect', 'complete') AND strftime('%s', at) IS NOT NULL
 GROUP BY 1, 2;
