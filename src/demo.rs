//! `cardio demo`: a node on the embedded defaults with something live to
//! look at, seeded through the node's own public GraphQL API as any client
//! would (the load generator's client, [`crate::simulate`]):
//!
//! - a care team: the clinician `demo-clinician` with six patients,
//!   `demo-p1` … `demo-p6`, each with one bedside monitor;
//! - every monitor pushes, once a second, the second just past: heart rate,
//!   SpO2 and blood pressure (1 Hz) and 250 Hz ECG from
//!   [`crate::synthetic::ecg`]; `demo-p3` alternates two minutes of atrial
//!   fibrillation at ~130/min with two of sinus rhythm, so its alarms (AF,
//!   then tachycardia) come and go; `demo-p4` has ectopic beats;
//! - one consult waiting for the clinician, requested by `demo-p2`.
//!
//! Seeding is idempotent: a second `cardio demo` on the same data finds the
//! people, devices and waiting consult it made and makes no more. The demo
//! refuses anything but the embedded defaults: it writes made-up patients.

use std::rc::Rc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::api::graphql::scalars::DateTime;
use crate::principal::Role;
use crate::simulate::Client;
use crate::synthetic::ecg::{generate, EcgScenario};

/// The demo's clinician.
pub const CLINICIAN: &str = "demo-clinician";
/// The patient whose consult waits.
pub const PATIENT: &str = "demo-p2";
/// The demo's operator.
pub const OPS: &str = "demo-ops";
/// The monitors' kind.
const KIND: &str = "demo-monitor";
/// ECG sample rate.
const HZ: usize = 250;
/// Seconds of ECG generated per patient, then played in a loop.
const LOOP_S: f64 = 240.0;

/// One demo patient's baseline.
#[derive(Debug, Clone)]
struct Bed {
    patient: &'static str,
    heart_rate: f64,
    spo2: f64,
    systolic: f64,
    diastolic: f64,
    /// The ECG rhythm: sinus at `heart_rate` unless it alternates AF.
    af: bool,
    pvc_every: Option<usize>,
}

const fn bed(patient: &'static str, hr: f64, spo2: f64, bp: (f64, f64)) -> Bed {
    Bed {
        patient,
        heart_rate: hr,
        spo2,
        systolic: bp.0,
        diastolic: bp.1,
        af: false,
        pvc_every: None,
    }
}

fn beds() -> Vec<Bed> {
    vec![
        bed("demo-p1", 72.0, 98.0, (118.0, 76.0)),
        bed(PATIENT, 64.0, 97.0, (124.0, 80.0)),
        Bed {
            af: true,
            ..bed("demo-p3", 78.0, 95.0, (135.0, 85.0))
        },
        Bed {
            pvc_every: Some(8),
            ..bed("demo-p4", 88.0, 96.0, (142.0, 90.0))
        },
        bed("demo-p5", 58.0, 99.0, (110.0, 70.0)),
        bed("demo-p6", 80.0, 94.0, (130.0, 82.0)),
    ]
}

/// Whether bed `b` is in atrial fibrillation at second `t` of its loop
/// (the first half of each loop).
fn in_af(b: &Bed, t: u64) -> bool {
    b.af && (t % LOOP_S as u64) < (LOOP_S as u64) / 2
}

/// The bed's ECG loop.
fn ecg_loop(b: &Bed, seed: u64) -> Vec<f32> {
    let mut s = EcgScenario::new(HZ as u32, seed);
    s.pvc_every = b.pvc_every;
    s = if b.af {
        s.af(130.0, LOOP_S / 2.0).sinus(b.heart_rate, LOOP_S / 2.0)
    } else {
        s.sinus(b.heart_rate, LOOP_S)
    };
    generate(&s).samples
}

/// The samples bed `b` pushes for second `t` of its stream, which began
/// at `at_ms`.
fn second(b: &Bed, ecg: &[f32], t: u64, at_ms: i64, rng: &mut fastrand::Rng) -> Vec<Value> {
    let at = |offset_ms: i64| DateTime::from_ms(at_ms + offset_ms).to_rfc3339();
    let jitter = |rng: &mut fastrand::Rng, width: f64| (rng.f64() * 2.0 - 1.0) * width;
    let hr = if in_af(b, t) {
        130.0 + jitter(rng, 12.0)
    } else {
        b.heart_rate + jitter(rng, 2.0)
    };
    let spo2 = (b.spo2 + jitter(rng, 0.6)).min(100.0);
    let start = (t as usize * HZ) % ecg.len().max(1);
    let millivolts: Vec<f64> = (0..HZ)
        .map(|i| f64::from(ecg[(start + i) % ecg.len()]))
        .map(|mv| (mv * 1000.0).round() / 1000.0)
        .collect();
    vec![
        json!({"metric": "ECG", "at": at(0), "hz": HZ, "millivolts": millivolts}),
        json!({"metric": "HEART_RATE", "at": at(0), "value": hr.round()}),
        json!({"metric": "SPO2", "at": at(250), "value": (spo2 * 10.0).round() / 10.0}),
        json!({"metric": "BLOOD_PRESSURE", "at": at(500),
            "systolic": (b.systolic + jitter(rng, 4.0)).round(),
            "diastolic": (b.diastolic + jitter(rng, 3.0)).round()}),
    ]
}

const PUSH: &str = "mutation($d: ID!, $s: [SampleInput!]!) { pushSamples(deviceId: $d, samples: $s) { accepted rejections { index reason } } }";

/// Registers the care team and the monitors, and requests the waiting
/// consult, unless they are there; the monitors' ids, bed by bed.
async fn seed(client: &Client) -> Result<Vec<String>, String> {
    let admin = client.token(Role::Admin, "demo-admin");
    let clinician = client.token(Role::Clinician, CLINICIAN);
    let beds = beds();
    let mut fields = vec![format!("c: registerClinician(id: \"{CLINICIAN}\")")];
    for (i, b) in beds.iter().enumerate() {
        fields.push(format!("p{i}: registerPatient(id: \"{}\")", b.patient));
        fields.push(format!(
            "a{i}: assignClinician(patientId: \"{}\", clinicianId: \"{CLINICIAN}\")",
            b.patient
        ));
    }
    let q = format!("mutation {{ {} }}", fields.join(" "));
    client
        .gql(0, &admin, &q, json!({}))
        .await
        .map_err(|e| format!("cannot register the care team: {e}"))?;
    let mut devices = Vec::new();
    for b in &beds {
        let q = "query($p: ID!) { patient(id: $p) { devices { id kind } } }";
        let v = client
            .gql(0, &clinician, q, json!({"p": b.patient}))
            .await
            .map_err(|e| format!("cannot read a demo patient: {e}"))?;
        let known = v["patient"]["devices"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|d| d["kind"] == KIND)
            .and_then(|d| d["id"].as_str().map(str::to_owned));
        let id = match known {
            Some(id) => id,
            None => {
                let q =
                    "mutation($p: ID!, $k: String!) { registerDevice(patientId: $p, kind: $k) }";
                let v = client
                    .gql(0, &admin, q, json!({"p": b.patient, "k": KIND}))
                    .await
                    .map_err(|e| format!("cannot register a demo monitor: {e}"))?;
                v["registerDevice"]
                    .as_str()
                    .ok_or("registerDevice returned no id")?
                    .to_owned()
            }
        };
        devices.push(id);
    }
    // One consult waiting for the clinician (unless one still is).
    let q = "query($p: ID!) { patient(id: $p) { consults(status: [REQUESTED, WAITING], first: 1) { nodes { id } } } }";
    let v = client
        .gql(0, &clinician, q, json!({"p": PATIENT}))
        .await
        .map_err(|e| format!("cannot read the demo consults: {e}"))?;
    let waiting = v["patient"]["consults"]["nodes"]
        .as_array()
        .is_some_and(|n| !n.is_empty());
    if !waiting {
        let patient = client.token(Role::Patient, PATIENT);
        let q = "mutation($p: ID!, $r: String!, $id: ID!) { requestConsult(patientId: $p, reason: $r, requestId: $id) }";
        let reason = "Palpitations since this morning (demo)";
        // One id per seed: asked again (a retry) it answers the same consult.
        let id = format!("demo-{}", crate::clock::unix_ms());
        client
            .gql(0, &patient, q, json!({"p": PATIENT, "r": reason, "id": id}))
            .await
            .map_err(|e| format!("cannot request the demo consult: {e}"))?;
    }
    Ok(devices)
}

/// Streams bed `b` from monitor `device` until the process ends.
async fn stream(client: Rc<Client>, b: Bed, device: String, seed: u64) {
    let ecg = ecg_loop(&b, seed);
    let token = client.token(Role::Patient, b.patient);
    let mut rng = fastrand::Rng::with_seed(seed);
    let start = Instant::now();
    let start_ms = crate::clock::unix_ms() as i64;
    let mut every = tokio::time::interval_at(
        tokio::time::Instant::from_std(start + Duration::from_secs(1)),
        Duration::from_secs(1),
    );
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut failures = 0u64;
    loop {
        // The second just past, by the schedule: a late tick skips seconds
        // (a gap) rather than pushing one twice.
        let tick = every.tick().await.into_std();
        let t = (tick - start).as_secs().saturating_sub(1);
        let samples = second(&b, &ecg, t, start_ms + t as i64 * 1000, &mut rng);
        let pushed = client
            .gql(0, &token, PUSH, json!({"d": device, "s": samples}))
            .await;
        if let Err(code) = pushed {
            failures += 1;
            // The first failure of a monitor, then every 60th: no flood.
            if failures % 60 == 1 {
                tracing::warn!(%code, failures, "a demo monitor's push failed");
            }
        }
    }
}

/// Seeds the demo through the node at `url` and starts its monitors;
/// returns once the seed is in (the monitors stream on, on this thread).
pub async fn start(url: String, auth: crate::auth::Authenticator) -> Result<(), String> {
    let client = Rc::new(Client {
        http: awc::Client::builder()
            .timeout(Duration::from_secs(15))
            .finish(),
        urls: vec![url],
        auth,
    });
    let devices = seed(&client).await?;
    for (i, (b, device)) in beds().into_iter().zip(devices).enumerate() {
        actix_rt::spawn(stream(Rc::clone(&client), b, device, 0xDE30 + i as u64));
    }
    tracing::info!(patients = beds().len(), "demo seeded; its monitors stream");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holds_every_vital_and_a_full_ecg_chunk_in_time_order() {
        let b = &beds()[2];
        let ecg = ecg_loop(b, 1);
        assert_eq!(ecg.len(), LOOP_S as usize * HZ);
        let mut rng = fastrand::Rng::with_seed(1);
        let s = second(b, &ecg, 3, 1_800_000_000_000, &mut rng);
        let metrics: Vec<&str> = s.iter().map(|x| x["metric"].as_str().unwrap()).collect();
        assert_eq!(metrics, ["ECG", "HEART_RATE", "SPO2", "BLOOD_PRESSURE"]);
        assert_eq!(s[0]["millivolts"].as_array().unwrap().len(), HZ);
        assert_eq!(s[0]["at"], "2027-01-15T08:00:00.000Z");
        // demo-p3 is in AF for the first half of its loop, fast.
        assert!(in_af(b, 3) && !in_af(b, 150) && in_af(b, 250));
        assert!(s[1]["value"].as_f64().unwrap() > 110.0);
        assert!(!beds()[0].af);
    }
}
