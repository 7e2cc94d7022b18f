-- Anomaly detection (LOG_FORMAT.md section 5): the model registry, one score per session and
-- detector, and one consolidated row per flagged session for dashboards.
-- Written by `logalyzer train` (models) and `logalyzer detect` (the other two), see
-- logalyzer/jobs/train.py and logalyzer/jobs/detect.py.

CREATE TABLE IF NOT EXISTS models (
    detector     text NOT NULL CHECK (detector IN ('lstm', 'ae')),
    version      integer NOT NULL CHECK (version > 0),
    created_at   timestamptz NOT NULL DEFAULT now(),
    threshold    double precision NOT NULL,
    config       jsonb NOT NULL DEFAULT '{}'::jsonb,
    metrics      jsonb NOT NULL DEFAULT '{}'::jsonb,
    trained_on   jsonb NOT NULL DEFAULT '{}'::jsonb,
    checkpoint   bytea NOT NULL,
    PRIMARY KEY (detector, version)
);
COMMENT ON TABLE models IS 'Trained detector versions; the newest version of a detector is the one used unless one is pinned';
COMMENT ON COLUMN models.threshold IS 'score above which a session is anomalous, from the training score distribution (see README)';
COMMENT ON COLUMN models.config IS 'the model''s config dataclass as JSON (also inside the checkpoint)';
COMMENT ON COLUMN models.metrics IS 'training metrics: losses per epoch, sessions/s, score quantiles, workers';
COMMENT ON COLUMN models.trained_on IS 'what it learnt from: session count, time range, devices';
COMMENT ON COLUMN models.checkpoint IS 'torch.save bytes of a self-describing checkpoint (config, vocabulary or scaler, threshold, state dict): kept in the database so any Ray node or Serve replica can load it';

CREATE TABLE IF NOT EXISTS anomalies (
    rxid           text NOT NULL,
    session_id     uuid NOT NULL,
    detector       text NOT NULL CHECK (detector IN ('lstm', 'ae')),
    model_version  integer NOT NULL,
    score          double precision NOT NULL,
    threshold      double precision NOT NULL,
    is_anomaly     boolean NOT NULL,
    details        jsonb NOT NULL DEFAULT '{}'::jsonb,
    scored_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (rxid, session_id, detector)
);
CREATE INDEX IF NOT EXISTS anomalies_flagged ON anomalies (detector) WHERE is_anomaly;
COMMENT ON TABLE anomalies IS 'One row per scored session and detector (re-scoring replaces it)';
COMMENT ON COLUMN anomalies.details IS 'what drove the score: top features (ae) or unexpected transitions (lstm)';

CREATE TABLE IF NOT EXISTS anomalies_consolidated (
    rxid            text NOT NULL,
    session_id      uuid NOT NULL,
    start_ts        timestamptz NOT NULL,
    lstm_score      double precision,
    ae_score        double precision,
    is_anomaly      boolean NOT NULL,
    detectors       text[] NOT NULL DEFAULT '{}',
    reasons         jsonb NOT NULL DEFAULT '{}'::jsonb,
    model_versions  jsonb NOT NULL DEFAULT '{}'::jsonb,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (rxid, session_id)
);
CREATE INDEX IF NOT EXISTS anomalies_consolidated_start ON anomalies_consolidated (start_ts);
COMMENT ON TABLE anomalies_consolidated IS 'One row per session that any detector flagged; ready for dashboards';
COMMENT ON COLUMN anomalies_consolidated.lstm_score IS 'LSTM score as a multiple of its threshold (> 1: above it); null when not scored';
COMMENT ON COLUMN anomalies_consolidated.ae_score IS 'autoencoder score as a multiple of its threshold';
COMMENT ON COLUMN anomalies_consolidated.is_anomaly IS 'the combined verdict (rule in logalyzer/jobs/detect.py)';
COMMENT ON COLUMN anomalies_consolidated.detectors IS 'detectors that flagged the session';
COMMENT ON COLUMN anomalies_consolidated.reasons IS '{"features": [...top features...], "transitions": [...unexpected events...]}';
COMMENT ON COLUMN anomalies_consolidated.model_versions IS '{"lstm": n, "ae": m}';
