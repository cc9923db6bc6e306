-- The Interface Exception Collector's tables, as the lab (and the drills' load generator) uses them.
CREATE TABLE IF NOT EXISTS interface_exceptions (
    id              bigserial PRIMARY KEY,
    transaction_id  text        NOT NULL UNIQUE,
    interface_type  text        NOT NULL,
    exception_reason text       NOT NULL,
    operation       text        NOT NULL,
    status          text        NOT NULL DEFAULT 'NEW'
                    CHECK (status IN ('NEW', 'ACKNOWLEDGED', 'RETRIED_SUCCESS', 'RETRIED_FAILED', 'ESCALATED', 'RESOLVED', 'CLOSED')),
    severity        text        NOT NULL DEFAULT 'MEDIUM' CHECK (severity IN ('LOW', 'MEDIUM', 'HIGH', 'CRITICAL')),
    category        text        NOT NULL DEFAULT 'BUSINESS_RULE',
    retryable       boolean     NOT NULL DEFAULT true,
    customer_id     text,
    retry_count     integer     NOT NULL DEFAULT 0,
    created_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
    updated_at      timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX IF NOT EXISTS interface_exceptions_created_at ON interface_exceptions (created_at);
CREATE INDEX IF NOT EXISTS interface_exceptions_status ON interface_exceptions (status);

CREATE TABLE IF NOT EXISTS retry_attempts (
    id              bigserial PRIMARY KEY,
    exception_id    bigint      NOT NULL REFERENCES interface_exceptions (id) ON DELETE CASCADE,
    attempt_number  integer     NOT NULL CHECK (attempt_number > 0),
    status          text        NOT NULL DEFAULT 'PENDING' CHECK (status IN ('PENDING', 'SUCCESS', 'FAILED')),
    initiated_by    text        NOT NULL DEFAULT 'system',
    initiated_at    timestamptz NOT NULL DEFAULT clock_timestamp(),
    completed_at    timestamptz,
    UNIQUE (exception_id, attempt_number)
);
