//! Patients, clinicians, care teams and devices: the relations that decide who
//! may reach whose data.

use std::collections::HashMap;

use sqlx::Row;

use super::{batches, with_pool, Db, Store, StoreError};
use crate::clock::unix_ms;

/// Why a registration was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PeopleError {
    #[error("no such patient")]
    UnknownPatient,
    #[error("no such clinician")]
    UnknownClinician,
    #[error("the device belongs to another patient")]
    DeviceTaken,
}

/// A patient's device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    pub id: String,
    pub patient_id: String,
    pub kind: String,
}

fn is_fk_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.is_foreign_key_violation())
}

macro_rules! sql {
    ($pg:literal, $sqlite:literal) => {
        ($pg, $sqlite)
    };
}

const ADD_PATIENT: (&str, &str) = sql!(
    "INSERT INTO patients (id, created_ms) VALUES ($1, $2) ON CONFLICT (id) DO NOTHING",
    "INSERT INTO patients (id, created_ms) VALUES (?1, ?2) ON CONFLICT (id) DO NOTHING"
);
const ADD_CLINICIAN: (&str, &str) = sql!(
    "INSERT INTO clinicians (id, created_ms) VALUES ($1, $2) ON CONFLICT (id) DO NOTHING",
    "INSERT INTO clinicians (id, created_ms) VALUES (?1, ?2) ON CONFLICT (id) DO NOTHING"
);
const ASSIGN: (&str, &str) = sql!(
    "INSERT INTO care_team (patient_id, clinician_id, assigned_ms) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
    "INSERT INTO care_team (patient_id, clinician_id, assigned_ms) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING"
);
const ON_TEAM: (&str, &str) = sql!(
    "SELECT 1 AS yes FROM care_team WHERE patient_id = $1 AND clinician_id = $2",
    "SELECT 1 AS yes FROM care_team WHERE patient_id = ?1 AND clinician_id = ?2"
);
const TEAM: (&str, &str) = sql!(
    "SELECT clinician_id FROM care_team WHERE patient_id = $1 ORDER BY clinician_id COLLATE \"C\"",
    "SELECT clinician_id FROM care_team WHERE patient_id = ?1 ORDER BY clinician_id"
);
const PATIENTS_OF: (&str, &str) = sql!(
    "SELECT patient_id FROM care_team WHERE clinician_id = $1 ORDER BY patient_id COLLATE \"C\"",
    "SELECT patient_id FROM care_team WHERE clinician_id = ?1 ORDER BY patient_id"
);
const ADD_DEVICE: (&str, &str) = sql!(
    "INSERT INTO devices (id, patient_id, kind, registered_ms) VALUES ($1, $2, $3, $4) ON CONFLICT (id) DO NOTHING",
    "INSERT INTO devices (id, patient_id, kind, registered_ms) VALUES (?1, ?2, ?3, ?4) ON CONFLICT (id) DO NOTHING"
);
/// Devices by id, read together ([`super::lookups`]).
const DEVICES: (&str, &str) = sql!(
    "SELECT id, patient_id, kind FROM devices WHERE id = ANY($1)",
    "SELECT id, patient_id, kind FROM devices WHERE id IN (SELECT value FROM json_each(?1))"
);
const DEVICES_OF: (&str, &str) = sql!(
    "SELECT id, patient_id, kind FROM devices WHERE patient_id = $1 ORDER BY id COLLATE \"C\"",
    "SELECT id, patient_id, kind FROM devices WHERE patient_id = ?1 ORDER BY id"
);

impl Store {
    fn pick(&self, (pg, sqlite): (&'static str, &'static str)) -> &'static str {
        self.dialect(pg, sqlite)
    }

    /// Registers a patient (again: no change).
    pub async fn register_patient(&self, id: &str) -> Result<(), StoreError> {
        let sql = self.pick(ADD_PATIENT);
        with_pool!(self, pool => sqlx::query(sql).bind(id).bind(unix_ms() as i64).execute(pool).await.map(|_| ()))?;
        Ok(())
    }

    /// Registers a clinician (again: no change).
    pub async fn register_clinician(&self, id: &str) -> Result<(), StoreError> {
        let sql = self.pick(ADD_CLINICIAN);
        with_pool!(self, pool => sqlx::query(sql).bind(id).bind(unix_ms() as i64).execute(pool).await.map(|_| ()))?;
        Ok(())
    }

    /// Puts a clinician on a patient's care team.
    pub async fn assign_clinician(
        &self,
        patient: &str,
        clinician: &str,
    ) -> Result<Result<(), PeopleError>, StoreError> {
        let sql = self.pick(ASSIGN);
        let done = with_pool!(self, pool => sqlx::query(sql)
            .bind(patient)
            .bind(clinician)
            .bind(unix_ms() as i64)
            .execute(pool)
            .await
            .map(|_| ()));
        match done {
            Ok(()) => Ok(Ok(())),
            Err(e) if is_fk_violation(&e) => {
                let known = self.patient_exists(patient).await?;
                Ok(Err(if known {
                    PeopleError::UnknownClinician
                } else {
                    PeopleError::UnknownPatient
                }))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Whether `patient` is registered.
    pub async fn patient_exists(&self, patient: &str) -> Result<bool, StoreError> {
        let (pg, sqlite) = (
            "SELECT 1 AS yes FROM patients WHERE id = $1",
            "SELECT 1 AS yes FROM patients WHERE id = ?1",
        );
        let sql = self.dialect(pg, sqlite);
        let found = with_pool!(self, pool => sqlx::query(sql).bind(patient).fetch_optional(pool).await.map(|r| r.is_some()))?;
        Ok(found)
    }

    /// Whether `clinician` is on `patient`'s care team.
    pub async fn on_care_team(&self, patient: &str, clinician: &str) -> Result<bool, StoreError> {
        let sql = self.pick(ON_TEAM);
        let found = with_pool!(self, pool => sqlx::query(sql).bind(patient).bind(clinician).fetch_optional(pool).await.map(|r| r.is_some()))?;
        Ok(found)
    }

    /// The clinicians on `patient`'s care team.
    pub async fn care_team(&self, patient: &str) -> Result<Vec<String>, StoreError> {
        let sql = self.pick(TEAM);
        let ids = with_pool!(self, pool => sqlx::query(sql)
            .bind(patient)
            .fetch_all(pool)
            .await
            .and_then(|rows| rows.iter().map(|r| r.try_get::<String, _>("clinician_id")).collect::<Result<Vec<_>, _>>()))?;
        Ok(ids)
    }

    /// The patients whose care team `clinician` is on.
    pub async fn patients_of(&self, clinician: &str) -> Result<Vec<String>, StoreError> {
        let sql = self.pick(PATIENTS_OF);
        let ids = with_pool!(self, pool => sqlx::query(sql)
            .bind(clinician)
            .fetch_all(pool)
            .await
            .and_then(|rows| rows.iter().map(|r| r.try_get::<String, _>("patient_id")).collect::<Result<Vec<_>, _>>()))?;
        Ok(ids)
    }

    /// Registers `device` as `patient`'s (again for the same patient: no change).
    pub async fn register_device(
        &self,
        device: &str,
        patient: &str,
        kind: &str,
    ) -> Result<Result<(), PeopleError>, StoreError> {
        let sql = self.pick(ADD_DEVICE);
        let done = with_pool!(self, pool => sqlx::query(sql)
            .bind(device)
            .bind(patient)
            .bind(kind)
            .bind(unix_ms() as i64)
            .execute(pool)
            .await
            .map(|_| ()));
        match done {
            Ok(()) => {}
            Err(e) if is_fk_violation(&e) => return Ok(Err(PeopleError::UnknownPatient)),
            Err(e) => return Err(e.into()),
        }
        match self.device(device).await? {
            Some(d) if d.patient_id == patient => Ok(Ok(())),
            _ => Ok(Err(PeopleError::DeviceTaken)),
        }
    }

    /// A registered device: read with the other devices asked meanwhile
    /// ([`super::lookups`]).
    pub async fn device(&self, device: &str) -> Result<Option<Device>, StoreError> {
        batches::ask(
            self,
            |s| &s.lookups.devices,
            device.to_owned(),
            Store::serve_devices,
        )
        .await
        .map_err(StoreError::Read)
    }

    /// A batch of [`Store::device`]s, in its order.
    async fn serve_devices(self, asked: Vec<String>) -> Result<Vec<Option<Device>>, StoreError> {
        let mut ids: Vec<&str> = asked.iter().map(String::as_str).collect();
        ids.sort_unstable();
        ids.dedup();
        let sql = self.pick(DEVICES);
        macro_rules! devices {
            ($pool:expr, $ids:expr) => {
                sqlx::query(sql)
                    .bind($ids)
                    .fetch_all($pool)
                    .await
                    .and_then(|rows| {
                        rows.iter()
                            .map(|r| {
                                Ok(Device {
                                    id: r.try_get("id")?,
                                    patient_id: r.try_get("patient_id")?,
                                    kind: r.try_get("kind")?,
                                })
                            })
                            .collect::<Result<Vec<_>, sqlx::Error>>()
                    })
            };
        }
        let found = match &*self.db {
            Db::Postgres(pool) => devices!(pool, &ids),
            Db::Sqlite(pool) => devices!(
                pool,
                serde_json::to_string(&ids).expect("strings serialise")
            ),
        };
        let found = found?;
        let by_id: HashMap<&str, &Device> = found.iter().map(|d| (d.id.as_str(), d)).collect();
        Ok(asked
            .iter()
            .map(|id| by_id.get(id.as_str()).map(|d| (*d).clone()))
            .collect())
    }

    /// `patient`'s devices.
    pub async fn devices_of(&self, patient: &str) -> Result<Vec<Device>, StoreError> {
        let sql = self.pick(DEVICES_OF);
        let found = with_pool!(self, pool => sqlx::query(sql)
            .bind(patient)
            .fetch_all(pool)
            .await
            .and_then(|rows| rows.iter().map(|r| Ok(Device {
                id: r.try_get("id")?,
                patient_id: r.try_get("patient_id")?,
                kind: r.try_get("kind")?,
            })).collect::<Result<Vec<_>, sqlx::Error>>()))?;
        Ok(found)
    }
}
