-- Clinically safe monitoring (issue 11).

-- What raised an alert and how it ended: the reading and the threshold it
-- crossed, the signal it was judged on (ECG-derived or device-reported heart
-- rate are separate rules), physiological or technical, why it resolved,
-- whether it was announced (a paused non-high alarm is recorded but not
-- announced), and when it was announced again or escalated.
ALTER TABLE alerts ADD COLUMN source TEXT;
ALTER TABLE alerts ADD COLUMN category TEXT NOT NULL DEFAULT 'physiological';
ALTER TABLE alerts ADD COLUMN reading REAL;
ALTER TABLE alerts ADD COLUMN threshold REAL;
ALTER TABLE alerts ADD COLUMN announced INTEGER NOT NULL DEFAULT 1;
ALTER TABLE alerts ADD COLUMN resolve_reason TEXT;
ALTER TABLE alerts ADD COLUMN reannounced_ms INTEGER;
ALTER TABLE alerts ADD COLUMN escalated_ms INTEGER;

-- An acknowledgement may carry a note.
ALTER TABLE alert_acks ADD COLUMN note TEXT;

-- Per-patient alarm settings set by a clinician of the care team (JSON of
-- the alarm engine's settings; absent: the node's defaults), and a pause of
-- the patient's non-high alarms until a time.
CREATE TABLE alarm_settings (
    patient_id      TEXT    PRIMARY KEY,
    settings        TEXT,
    paused_until_ms INTEGER,
    updated_by      TEXT    NOT NULL,
    updated_ms      INTEGER    NOT NULL
) STRICT;

-- One row per stored ECG chunk: where its samples are in the journal (for
-- strips around an alert) and the beats found in it (JSON of
-- [at_ms, rr_ms or null, kind]).
CREATE TABLE ecg_chunks (
    device_id TEXT    NOT NULL,
    start_ms  INTEGER    NOT NULL,
    end_ms    INTEGER    NOT NULL,
    hz        INTEGER    NOT NULL,
    seq       INTEGER    NOT NULL,
    beats     TEXT    NOT NULL,
    PRIMARY KEY (device_id, start_ms)
) STRICT;

-- Retention deletes by end time, with the raw samples.
CREATE INDEX ecg_chunks_by_end ON ecg_chunks (end_ms);

-- How much good ECG a heart-rate-from-ECG bucket covers, so that the minute
-- rate is beats counted over signal time (NULL for other series).
ALTER TABLE vitals_aggregates ADD COLUMN covered_ms INTEGER;

-- The old irregular-rhythm rule was an RR-irregularity screen for atrial
-- fibrillation: its episodes keep their meaning under the new kind.
UPDATE alerts SET kind = 'atrial_fibrillation', priority = 'low' WHERE kind = 'irregular_rhythm';
