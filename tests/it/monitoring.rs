//! Monitoring through the public API of a real node (embedded defaults):
//! generated ECG pushed with `pushSamples`, a clinician told of asystole on
//! the `alerts` subscription, re-announced and escalated to the rest of the
//! care team until acknowledged (with a note), the beats and the raw strip
//! around the alarm read back; per-patient thresholds and a pause of
//! non-high alarms, set by the care team only.

use std::time::{Duration, Instant};

use crate::support::{iso, ms_of};
use cardio::principal::Role;
use cardio::synthetic::ecg::{generate, EcgScenario};
use serde_json::{json, Value};

use crate::api::{
    code, device_of, hr, maybe_event, now_ms, ok, people, send, serve_with, socket, token, Socket,
    PUSH,
};

/// ECG as one-second `pushSamples` inputs from `t0`.
pub(crate) fn ecg_inputs(samples: &[f32], hz: u32, t0: f64) -> Vec<Value> {
    samples
        .chunks(hz as usize)
        .enumerate()
        .map(|(i, c)| {
            json!({"metric": "ECG", "at": iso(t0 + i as f64 * 1000.0), "hz": hz,
                   "millivolts": c.iter().map(|v| f64::from(*v)).collect::<Vec<_>>()})
        })
        .collect()
}

/// The next event of subscription `id` on `ws` whose `change` is `change`,
/// within `wait`.
async fn event_with(ws: &mut Socket, id: &str, change: &str, wait: Duration) -> Option<Value> {
    let deadline = Instant::now() + wait;
    while Instant::now() < deadline {
        if let Some(e) = maybe_event(ws, id, deadline - Instant::now()).await {
            let e = e["data"]["alerts"].clone();
            if e["change"] == change {
                return Some(e);
            }
        }
    }
    None
}

/// Pushes hypertensive crises (and normal readings after each) until
/// subscription `id` reports one: the subscription is bound from then on.
pub(crate) async fn until_bound(
    a: &str,
    patient: &str,
    device: &str,
    ws: &mut Socket,
    id: &str,
    at: &mut f64,
) {
    for _ in 0..20 {
        let crisis = json!([{"metric": "BLOOD_PRESSURE", "at": iso(*at), "systolic": 200.0, "diastolic": 125.0}]);
        ok(a, patient, PUSH, json!({"d": device, "s": crisis})).await;
        let normal = json!([{"metric": "BLOOD_PRESSURE", "at": iso(*at + 500.0), "systolic": 120.0, "diastolic": 80.0}]);
        ok(a, patient, PUSH, json!({"d": device, "s": normal})).await;
        *at += 1_000.0;
        if event_with(ws, id, "RESOLVED", Duration::from_secs(1))
            .await
            .is_some()
        {
            return;
        }
    }
    panic!("subscription {id} never bound");
}

#[actix_rt::test]
async fn a_clinician_is_told_of_asystole_escalated_until_acknowledged_and_reads_the_strip() {
    // Short re-announce and escalation delays so that the test waits seconds.
    let node = serve_with(&[
        ("CARDIO_ALERT_REANNOUNCE", "1s"),
        ("CARDIO_ALERT_ESCALATE", "2s"),
    ]);
    let a = &node.addr;
    people(
        a,
        &["p-1"],
        &["dr-1", "dr-2"],
        &[("p-1", "dr-1"), ("p-1", "dr-2")],
    )
    .await;
    let patient = token(Role::Patient, "p-1");
    let (dr1, dr2) = (
        token(Role::Clinician, "dr-1"),
        token(Role::Clinician, "dr-2"),
    );
    let device = device_of(a, "p-1", "ecg-patch").await;

    // dr-1 watches; dr-2 is told only of escalations.
    let fields = "alertId change kind category priority reading threshold at";
    let mut watching = socket(a, &dr1).await;
    send(&mut watching, json!({"id": "a", "type": "subscribe", "payload": {"query": format!("subscription {{ alerts {{ {fields} }} }}")}})).await;
    let mut backup = socket(a, &dr2).await;
    send(&mut backup, json!({"id": "e", "type": "subscribe", "payload": {"query": format!("subscription {{ alerts(escalatedOnly: true) {{ {fields} }} }}")}})).await;
    let mut vitals = socket(a, &dr1).await;
    send(&mut vitals, json!({"id": "v", "type": "subscribe", "payload": {"query": "subscription { vitals(patientId: \"p-1\") { ecg { heartRate quality asystole } } }"}})).await;
    let mut at = now_ms() - 200_000.0;
    until_bound(a, &patient, &device, &mut watching, "a", &mut at).await;

    // 30 s of sinus rhythm at 75/min, then the heart stops for 20 s.
    let ecg = generate(&EcgScenario::new(250, 21).sinus(75.0, 30.0).asystole(20.0));
    let last_beat = ecg.beats.last().unwrap().t;
    let t0 = at + 10_000.0;
    let mut raised = None;
    let mut heart_rates = Vec::new();
    for (i, chunk) in ecg_inputs(&ecg.samples, 250, t0).into_iter().enumerate() {
        let pushed = ok(a, &patient, PUSH, json!({"d": device, "s": [chunk]})).await;
        assert_eq!(pushed["pushSamples"]["accepted"], 1, "{pushed}");
        if let Some(v) = maybe_event(&mut vitals, "v", Duration::from_millis(200)).await {
            heart_rates.push((i, v["data"]["vitals"]["ecg"].clone()));
        }
        if raised.is_none() {
            raised = event_with(&mut watching, "a", "RAISED", Duration::from_millis(100)).await;
        }
    }
    let raised = match raised {
        Some(r) => r,
        None => event_with(&mut watching, "a", "RAISED", Duration::from_secs(5))
            .await
            .expect("an alarm raised"),
    };
    // Asystole may be preceded by a pause alarm (3 s without a beat).
    let raised = if raised["kind"] == "PAUSE" {
        event_with(&mut watching, "a", "RAISED", Duration::from_secs(5))
            .await
            .expect("asystole after the pause")
    } else {
        raised
    };
    assert_eq!(
        (&raised["kind"], &raised["priority"], &raised["category"]),
        (&json!("ASYSTOLE"), &json!("HIGH"), &json!("PHYSIOLOGICAL"))
    );
    let after = (ms_of(&raised["at"]) - t0) / 1000.0 - last_beat;
    assert!(after <= 6.0, "asystole {after:.1} s after the last beat");
    // The live view never showed a heart rate once the heart had stopped
    // for 4 s (null, not the last number).
    let stale: Vec<_> = heart_rates
        .iter()
        .filter(|(i, e)| (*i as f64) > last_beat + 5.0 && !e["heartRate"].is_null())
        .collect();
    assert!(stale.is_empty(), "a heart rate during asystole: {stale:?}");
    assert!(
        heart_rates.iter().any(|(i, e)| *i < 25
            && e["heartRate"]
                .as_f64()
                .is_some_and(|r| (r - 75.0).abs() < 5.0)),
        "a heart rate while the heart beat: {heart_rates:?}"
    );

    // Not acknowledged: announced again to dr-1, then escalated to dr-2.
    let alert = raised["alertId"].as_str().unwrap().to_owned();
    let again = event_with(&mut watching, "a", "REANNOUNCED", Duration::from_secs(9))
        .await
        .expect("re-announced");
    assert_eq!(again["alertId"], alert.as_str());
    let escalated = event_with(&mut backup, "e", "ESCALATED", Duration::from_secs(9))
        .await
        .expect("escalated to the rest of the care team");
    assert_eq!(
        (&escalated["alertId"], &escalated["kind"]),
        (&json!(alert), &json!("ASYSTOLE"))
    );

    // Acknowledged with a note, by the care team only.
    let ack = "mutation($id: ID!, $n: String) { acknowledgeAlert(id: $id, note: $n) }";
    assert_eq!(
        code(a, &patient, ack, json!({"id": alert, "n": "x"})).await,
        "FORBIDDEN"
    );
    let long = "x".repeat(1_001);
    assert_eq!(
        code(a, &dr1, ack, json!({"id": alert, "n": long})).await,
        "BAD_USER_INPUT"
    );
    ok(
        a,
        &dr1,
        ack,
        json!({"id": alert, "n": "patient seen, electrodes checked"}),
    )
    .await;
    let listed = ok(
        a,
        &dr2,
        "{ alerts(patientId: \"p-1\", status: ALL) { nodes { id kind priority acknowledgedBy acknowledgementNote escalatedAt reannouncedAt } } }",
        json!({}),
    )
    .await;
    let this = listed["alerts"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["id"] == alert.as_str())
        .expect("the asystole alert")
        .clone();
    assert_eq!(
        (&this["acknowledgedBy"], &this["acknowledgementNote"]),
        (&json!("dr-1"), &json!("patient seen, electrodes checked"))
    );
    assert!(this["escalatedAt"].is_string() && this["reannouncedAt"].is_string());

    // The beats of the sinus part, and none after the last.
    let beats = ok(
        a,
        &dr1,
        "query($f: DateTime!, $t: DateTime!) { beats(patientId: \"p-1\", from: $f, to: $t) { at rr kind } }",
        json!({"f": iso(t0), "t": iso(t0 + 50_000.0)}),
    )
    .await;
    let beats = beats["beats"].as_array().unwrap();
    let truth = ecg.beats_between(2.5, 30.0);
    let found = beats
        .iter()
        .filter(|b| (t0 + 2_500.0..t0 + 30_000.0).contains(&ms_of(&b["at"])))
        .count();
    assert!(
        found.abs_diff(truth) <= 1,
        "{found} beats found, {truth} true"
    );
    assert!(beats.iter().all(|b| b["kind"] == "NORMAL"));
    assert!(beats
        .iter()
        .all(|b| ms_of(&b["at"]) <= t0 + (last_beat + 0.2) * 1000.0));

    // The raw strip 10 s either side of the alarm.
    let strip = ok(
        a,
        &dr2,
        "query($id: ID!) { ecgStrip(alertId: $id) { from to segments { start hz millivolts } } }",
        json!({"id": alert}),
    )
    .await;
    let strip = &strip["ecgStrip"];
    let samples: usize = strip["segments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["millivolts"].as_array().unwrap().len())
        .sum();
    assert_eq!(strip["segments"].as_array().unwrap().len(), 1, "contiguous");
    assert!(samples.abs_diff(20 * 250) <= 2, "{samples} samples in 20 s");
    assert_eq!(ms_of(&strip["segments"][0]["start"]), ms_of(&strip["from"]));
    // Outside the care team: refused.
    people(a, &[], &["dr-3"], &[]).await;
    assert_eq!(
        code(
            a,
            &token(Role::Clinician, "dr-3"),
            "query($id: ID!) { ecgStrip(alertId: $id) { from } }",
            json!({"id": alert})
        )
        .await,
        "FORBIDDEN"
    );
    drop(node);
}

#[actix_rt::test]
async fn the_care_team_sets_a_patients_thresholds_and_pauses_non_high_alarms() {
    let node = serve_with(&[]);
    let a = &node.addr;
    people(a, &["p-1"], &["dr-1", "dr-2"], &[("p-1", "dr-1")]).await;
    let patient = token(Role::Patient, "p-1");
    let (dr1, dr2) = (
        token(Role::Clinician, "dr-1"),
        token(Role::Clinician, "dr-2"),
    );
    let device = device_of(a, "p-1", "watch").await;
    let set = "mutation($p: ID!, $t: AlarmThresholdsInput!) { setAlarmThresholds(patientId: $p, thresholds: $t) { custom thresholds { tachycardiaBpm sustainSeconds } updatedBy } }";
    let lower = json!({"p": "p-1", "t": {"tachycardiaBpm": 100.0, "sustainSeconds": 5}});
    // The patient, and a clinician outside the care team, may not.
    assert_eq!(code(a, &patient, set, lower.clone()).await, "FORBIDDEN");
    assert_eq!(code(a, &dr2, set, lower.clone()).await, "FORBIDDEN");
    // Inconsistent limits are refused with a reason.
    assert_eq!(
        code(
            a,
            &dr1,
            set,
            json!({"p": "p-1", "t": {"tachycardiaBpm": 30.0}})
        )
        .await,
        "BAD_USER_INPUT"
    );
    let v = ok(a, &dr1, set, lower).await;
    assert_eq!(
        v["setAlarmThresholds"],
        json!({"custom": true, "thresholds": {"tachycardiaBpm": 100.0, "sustainSeconds": 5}, "updatedBy": "dr-1"})
    );
    // The patient reads them back.
    let read = ok(
        a,
        &patient,
        "{ alarmSettings(patientId: \"p-1\") { custom thresholds { tachycardiaBpm bradycardiaBpm } pausedUntil } }",
        json!({}),
    )
    .await;
    assert_eq!(read["alarmSettings"]["thresholds"]["tachycardiaBpm"], 100.0);
    assert_eq!(read["alarmSettings"]["thresholds"]["bradycardiaBpm"], 40.0);

    // 110/min for 10 s is tachycardia for this patient (not with the node's 120).
    let t0 = now_ms() - 120_000.0;
    let episode: Vec<Value> = (0..10)
        .map(|i| hr(t0 + f64::from(i) * 1000.0, 110.0))
        .collect();
    let pushed = ok(a, &patient, PUSH, json!({"d": device, "s": episode})).await;
    assert_eq!(pushed["pushSamples"]["accepted"], 10);
    let q = "{ alerts(patientId: \"p-1\", status: ALL) { nodes { kind priority source reading threshold announced } } }";
    let alerts = ok(a, &dr1, q, json!({})).await;
    assert_eq!(
        alerts["alerts"]["nodes"],
        json!([{"kind": "TACHYCARDIA", "priority": "MEDIUM", "source": "PULSE_RATE", "reading": 110.0, "threshold": 100.0, "announced": true}])
    );

    // A pause is bounded, and only the care team pauses.
    let pause =
        "mutation($m: Int!) { pauseAlarms(patientId: \"p-1\", minutes: $m) { pausedUntil } }";
    assert_eq!(
        code(a, &dr1, pause, json!({"m": 31})).await,
        "BAD_USER_INPUT"
    );
    assert_eq!(
        code(a, &patient, pause, json!({"m": 10})).await,
        "FORBIDDEN"
    );
    // The longest pause, which must hold on the device's clock too (it lags
    // the node's: the readings below are two minutes old).
    let paused = ok(a, &dr1, pause, json!({"m": 30})).await;
    let until = ms_of(&paused["pauseAlarms"]["pausedUntil"]);
    assert!((until - (now_ms() + 1_800_000.0)).abs() < 5_000.0);
    // While paused: a medium alarm (SpO2 88 % for a minute) is recorded but
    // not announced; a high one (SpO2 80 % for 10 s) is announced.
    let t1 = t0 + 20_000.0;
    let spo2 = |from: f64, n: i32, value: f64| -> Vec<Value> {
        (0..n)
            .map(|i| json!({"metric": "SPO2", "at": iso(from + f64::from(i) * 1000.0), "value": value}))
            .collect()
    };
    ok(
        a,
        &patient,
        PUSH,
        json!({"d": device, "s": spo2(t1, 65, 88.0)}),
    )
    .await;
    ok(
        a,
        &patient,
        PUSH,
        json!({"d": device, "s": spo2(t1 + 65_000.0, 15, 80.0)}),
    )
    .await;
    let alerts = ok(a, &dr1, q, json!({})).await;
    let of = |kind: &str| -> Value {
        alerts["alerts"]["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["kind"] == kind)
            .unwrap_or_else(|| panic!("no {kind}: {alerts}"))
            .clone()
    };
    assert_eq!(
        (&of("LOW_SPO2")["priority"], &of("LOW_SPO2")["announced"]),
        (&json!("MEDIUM"), &json!(false))
    );
    assert_eq!(
        (
            &of("SEVERE_LOW_SPO2")["priority"],
            &of("SEVERE_LOW_SPO2")["announced"]
        ),
        (&json!("HIGH"), &json!(true))
    );
    // Resumed, and back to the node's thresholds.
    let resumed = ok(
        a,
        &dr1,
        "mutation { resumeAlarms(patientId: \"p-1\") { pausedUntil } }",
        json!({}),
    )
    .await;
    assert!(resumed["resumeAlarms"]["pausedUntil"].is_null());
    let reset = ok(
        a,
        &dr1,
        "mutation { resetAlarmThresholds(patientId: \"p-1\") { custom thresholds { tachycardiaBpm } } }",
        json!({}),
    )
    .await;
    assert_eq!(
        reset["resetAlarmThresholds"],
        json!({"custom": false, "thresholds": {"tachycardiaBpm": 120.0}})
    );
    drop(node);
}
