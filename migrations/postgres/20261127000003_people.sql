-- Patients, clinicians, care teams and devices: who may see whose data.
-- Profile fields that are PHI arrive with the API, encrypted at rest.
CREATE TABLE patients (
    id         TEXT   PRIMARY KEY,
    created_ms BIGINT NOT NULL
);

CREATE TABLE clinicians (
    id         TEXT   PRIMARY KEY,
    created_ms BIGINT NOT NULL
);

CREATE TABLE care_team (
    patient_id   TEXT   NOT NULL REFERENCES patients (id),
    clinician_id TEXT   NOT NULL REFERENCES clinicians (id),
    assigned_ms  BIGINT NOT NULL,
    PRIMARY KEY (patient_id, clinician_id)
);
CREATE INDEX care_team_by_clinician ON care_team (clinician_id);

CREATE TABLE devices (
    id            TEXT   PRIMARY KEY,
    patient_id    TEXT   NOT NULL REFERENCES patients (id),
    kind          TEXT   NOT NULL,
    registered_ms BIGINT NOT NULL
);
CREATE INDEX devices_by_patient ON devices (patient_id);
