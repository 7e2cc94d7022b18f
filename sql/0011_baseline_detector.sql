-- The naive baseline detector (logalyzer/core/baseline.py): a third detector kind in the model
-- registry and in the per-detector scores, so every evaluation measures the two learnt
-- detectors against it. It takes no part in the combined verdict (anomalies_consolidated) and
-- is never served (serving_models keeps its list).

ALTER TABLE models DROP CONSTRAINT IF EXISTS models_detector_check;
ALTER TABLE models ADD CONSTRAINT models_detector_check
    CHECK (detector IN ('lstm', 'ae', 'baseline'));

ALTER TABLE anomalies DROP CONSTRAINT IF EXISTS anomalies_detector_check;
ALTER TABLE anomalies ADD CONSTRAINT anomalies_detector_check
    CHECK (detector IN ('lstm', 'ae', 'baseline'));
COMMENT ON COLUMN anomalies.details IS 'what drove the score: top features (ae), unexpected transitions (lstm), or the measure with the largest |z| (baseline)';
