//! `cardio simulate`: realistic load on a running node or cluster through
//! the public API, as the apps would put it there.
//!
//! - `devices` wearables, each pushing `rate` samples a second (heart rate
//!   and SpO2 from [`crate::synthetic`] series: a per-device baseline,
//!   noise, and for a seeded share of devices one sustained tachycardia
//!   episode), in one `pushSamples` batch a second; a small seeded share of
//!   samples is invalid on purpose and must come back rejected;
//! - `consults` live consults: the patient requests, clinician and patient
//!   join, they chat until the end, the clinician ends it;
//! - `clinicians` clinicians subscribed over WebSocket to their patients'
//!   alerts; the alert latency is from the start of the push that raised it
//!   to the alert's arrival.
//!
//! Setup registers the people and devices as admin (tokens minted with the
//! node's key from `CARDIO_JWT_SECRET` or the RS256 settings). Everything
//! generated follows from `--seed` ([`Plan`]); what the servers manage to
//! take is what the summary reports.

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::io::{IsTerminal, Write};
use std::rc::Rc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};

use crate::api::graphql::scalars::DateTime;
use crate::auth::Authenticator;
use crate::principal::{Principal, Role};
use crate::synthetic::Series;

mod summary;
use summary::quantile_ms;
pub use summary::{Stats, Summary};

/// What to simulate.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Base URLs of the nodes (`http://127.0.0.1:8080`); work is spread
    /// over them round-robin.
    pub urls: Vec<String>,
    pub devices: usize,
    /// Samples per second per device.
    pub rate: u32,
    pub consults: usize,
    pub clinicians: usize,
    pub duration: Duration,
    pub seed: u64,
    /// Share of devices with a tachycardia episode.
    pub episodes: f64,
    /// Length of an episode; alerts need it longer than the nodes'
    /// `CARDIO_ALERT_SUSTAIN`.
    pub episode: Duration,
    /// Share of samples made invalid on purpose.
    pub invalid: f64,
    /// Time between chat messages of a consult.
    pub chat_every: Duration,
}

/// One simulated device and its patient.
#[derive(Debug, Clone, PartialEq)]
pub struct DevicePlan {
    pub patient: String,
    pub clinician: String,
    pub heart_rate: f64,
    pub spo2: f64,
    /// Seconds from the start: the tachycardia episode, if any.
    pub episode: Option<(f64, f64)>,
    pub seed: u64,
}

/// Everything the run generates, from the seed alone.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub clinicians: Vec<String>,
    pub devices: Vec<DevicePlan>,
}

impl Plan {
    pub fn new(s: &Settings) -> Plan {
        let mut rng = fastrand::Rng::with_seed(s.seed);
        let clinicians: Vec<String> = (0..s.clinicians.max(1))
            .map(|k| format!("sim{}-c{k}", s.seed))
            .collect();
        let run = s.duration.as_secs_f64();
        let length = s.episode.as_secs_f64();
        let devices = (0..s.devices)
            .map(|i| {
                let episode = (rng.f64() < s.episodes).then(|| {
                    let start = rng.f64() * (run - length).max(0.0);
                    (start, start + length)
                });
                DevicePlan {
                    patient: format!("sim{}-p{i}", s.seed),
                    clinician: clinicians[i % clinicians.len()].clone(),
                    heart_rate: 58.0 + rng.f64() * 30.0,
                    spo2: 95.0 + rng.f64() * 4.0,
                    episode,
                    seed: rng.u64(..),
                }
            })
            .collect();
        Plan {
            clinicians,
            devices,
        }
    }
}

/// The samples device `d` pushes for second `tick` of the run, whose wall
/// clock starts at `start_ms`: alternately heart rate and SpO2, `rate` of
/// them spread over the second; with how many were made invalid.
pub fn batch(d: &DevicePlan, tick: u64, start_ms: f64, s: &Settings) -> (Vec<Value>, u32) {
    let mut rng = fastrand::Rng::with_seed(d.seed ^ tick.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let t0 = tick as f64;
    let mut hr = Series::new(d.heart_rate, 1.0 / f64::from(s.rate.max(1)))
        .noise(1.5)
        .seed(d.seed ^ tick);
    if let Some((from, to)) = d.episode {
        hr = hr.episode(from - t0, to - t0, 150.0);
    }
    let spo2 = Series::new(d.spo2, 1.0 / f64::from(s.rate.max(1)))
        .noise(0.4)
        .seed(d.seed ^ tick ^ 1);
    let (hrs, sats) = (hr.samples(1.0), spo2.samples(1.0));
    let mut invalid = 0;
    let samples = (0..s.rate as usize)
        .map(|i| {
            let at_ms = start_ms + (t0 + i as f64 / f64::from(s.rate.max(1))) * 1000.0;
            let at = DateTime::from_ms(at_ms.round() as i64).to_rfc3339();
            let bad = rng.f64() < s.invalid;
            invalid += u32::from(bad);
            if i % 2 == 0 {
                let bpm = if bad { 900.0 } else { hrs[i].1 };
                json!({"metric": "HEART_RATE", "at": at, "value": bpm.round()})
            } else {
                let sat = if bad { 140.0 } else { sats[i].1.min(100.0) };
                json!({"metric": "SPO2", "at": at, "value": (sat * 10.0).round() / 10.0})
            }
        })
        .collect();
    (samples, invalid)
}

type Shared = Rc<RefCell<Stats>>;

/// When each device's recent pushes started, by the second of the run they
/// carry: an alert's time names the push that raised it.
type Pushes = Rc<RefCell<HashMap<String, VecDeque<(u64, Instant)>>>>;

pub(crate) struct Client {
    pub(crate) http: awc::Client,
    pub(crate) urls: Vec<String>,
    pub(crate) auth: Authenticator,
}

impl Client {
    pub(crate) fn token(&self, role: Role, subject: &str) -> String {
        self.auth
            .mint(
                &Principal {
                    subject: subject.to_owned(),
                    role,
                },
                Duration::from_secs(3600),
            )
            .expect("a token")
    }

    fn url(&self, i: usize) -> &str {
        &self.urls[i % self.urls.len()]
    }

    /// One operation; `Err(code)` for a transport failure or a GraphQL error.
    pub(crate) async fn gql(
        &self,
        node: usize,
        token: &str,
        query: &str,
        vars: Value,
    ) -> Result<Value, String> {
        let body = json!({"query": query, "variables": vars});
        let mut res = self
            .http
            .post(format!("{}/graphql", self.url(node)))
            .insert_header(("authorization", format!("Bearer {token}")))
            .send_json(&body)
            .await
            .map_err(|e| format!("HTTP {}", short(&e.to_string())))?;
        let v: Value = res
            .json()
            .limit(4 << 20)
            .await
            .map_err(|_| "BAD_RESPONSE".to_owned())?;
        match v["errors"][0]["extensions"]["code"].as_str() {
            Some(code) => Err(code.to_owned()),
            None if v.get("errors").is_some() => Err("ERROR".into()),
            None => Ok(v["data"].clone()),
        }
    }
}

fn short(s: &str) -> String {
    s.split(':').next().unwrap_or(s).chars().take(40).collect()
}

fn now_ms() -> f64 {
    crate::clock::unix_ms() as f64
}

fn elapsed_us(since: Instant) -> u32 {
    since.elapsed().as_micros().min(u128::from(u32::MAX)) as u32
}

/// Runs the simulation; the summary, or why it could not start.
pub async fn run(s: Settings, auth: Authenticator) -> Result<Summary, String> {
    if s.urls.is_empty() || s.devices == 0 || s.rate == 0 {
        return Err("need at least one --url, one device and a rate above 0".into());
    }
    let plan = Plan::new(&s);
    let connector = awc::Connector::new().limit(512);
    let client = Rc::new(Client {
        http: awc::Client::builder()
            .connector(connector)
            .timeout(Duration::from_secs(15))
            .finish(),
        urls: s.urls.clone(),
        auth,
    });
    let devices = setup(&client, &plan).await?;
    let stats: Shared = Rc::default();
    let last_push: Pushes = Rc::default();
    let start = Instant::now();
    let deadline = start + s.duration;
    let start_ms = now_ms();

    // Clinicians watch their patients' alerts.
    let mut watchers = Vec::new();
    for (k, clinician) in plan.clinicians.iter().enumerate() {
        let token = client.token(Role::Clinician, clinician);
        let url = client.url(k).replace("http://", "ws://");
        let (stats, last_push) = (Rc::clone(&stats), Rc::clone(&last_push));
        watchers.push(actix_rt::spawn(async move {
            let (watch, ends) = (Watch { start_ms, deadline }, (&stats, &last_push));
            if let Err(e) = watch_alerts(&url, &token, ends, watch).await {
                stats.borrow_mut().error("alerts subscription", &e);
            }
        }));
    }
    // Devices push once a second, spread over the second.
    let mut tasks = Vec::new();
    for (i, (d, device)) in plan.devices.iter().cloned().zip(devices).enumerate() {
        let (client, stats, last_push, s) = (
            Rc::clone(&client),
            Rc::clone(&stats),
            Rc::clone(&last_push),
            s.clone(),
        );
        let phase = Duration::from_millis((i as u64 * 1000) / s.devices as u64);
        tasks.push(actix_rt::spawn(async move {
            let token = client.token(Role::Patient, &d.patient);
            let mut every = tokio::time::interval_at(
                tokio::time::Instant::from_std(start + phase),
                Duration::from_secs(1),
            );
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            loop {
                // The second of the run from the schedule, not the clock: a
                // late wake-up must not push the same second twice.
                let scheduled = every.tick().await.into_std();
                if scheduled >= deadline {
                    break;
                }
                let tick = (scheduled - (start + phase)).as_secs();
                let (samples, invalid) = batch(&d, tick, start_ms, &s);
                let began = Instant::now();
                {
                    let mut pushes = last_push.borrow_mut();
                    let recent = pushes.entry(device.clone()).or_default();
                    recent.push_back((tick, began));
                    if recent.len() > 8 {
                        recent.pop_front();
                    }
                }
                let r = client
                    .gql(i, &token, PUSH, json!({"d": device, "s": samples}))
                    .await;
                let mut st = stats.borrow_mut();
                match r {
                    Ok(v) => {
                        st.pushes += 1;
                        st.injected_invalid += u64::from(invalid);
                        st.push_took(elapsed_us(began), tick == 0);
                        let p = &v["pushSamples"];
                        st.accepted += p["accepted"].as_u64().unwrap_or(0);
                        st.rejected += p["rejections"].as_array().map_or(0, |r| r.len() as u64);
                    }
                    Err(code) => st.error("pushSamples", &code),
                }
            }
        }));
    }
    // Consults: request, join, chat until the end, end.
    for j in 0..s.consults.min(plan.devices.len()) {
        let (client, stats, d, every) = (
            Rc::clone(&client),
            Rc::clone(&stats),
            plan.devices[j].clone(),
            s.chat_every,
        );
        tasks.push(actix_rt::spawn(async move {
            consult(&client, j, &d, every, deadline, &stats).await;
        }));
    }
    let progress = actix_rt::spawn(progress(Rc::clone(&stats), start, s.duration));
    for t in tasks {
        let _ = t.await;
    }
    progress.abort();
    // Alerts of the last pushes may still be on their way.
    let grace = Instant::now() + Duration::from_secs(2);
    while Instant::now() < grace && watchers.iter().any(|w| !w.is_finished()) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for w in watchers {
        w.abort();
    }
    let seconds = start
        .elapsed()
        .as_secs_f64()
        .min(s.duration.as_secs_f64())
        .max(0.001);
    let mut stats = stats.borrow_mut();
    Ok(Summary::of(&s, &mut stats, seconds))
}

const PUSH: &str = "mutation($d: ID!, $s: [SampleInput!]!) { pushSamples(deviceId: $d, samples: $s) { accepted rejections { index reason } } }";

/// Registers clinicians, patients (on their clinician's care team) and one
/// device each, as admin, in batches; the device ids in plan order.
async fn setup(client: &Client, plan: &Plan) -> Result<Vec<String>, String> {
    let admin = client.token(Role::Admin, "sim-admin");
    for chunk in plan.clinicians.chunks(50) {
        let fields: Vec<String> = chunk
            .iter()
            .enumerate()
            .map(|(i, c)| format!("c{i}: registerClinician(id: \"{c}\")"))
            .collect();
        let q = format!("mutation {{ {} }}", fields.join(" "));
        client
            .gql(0, &admin, &q, json!({}))
            .await
            .map_err(|e| format!("cannot register clinicians: {e}"))?;
    }
    let mut devices = Vec::with_capacity(plan.devices.len());
    for chunk in plan.devices.chunks(25) {
        let mut fields = Vec::new();
        for (i, d) in chunk.iter().enumerate() {
            fields.push(format!("p{i}: registerPatient(id: \"{}\")", d.patient));
            fields.push(format!(
                "a{i}: assignClinician(patientId: \"{}\", clinicianId: \"{}\")",
                d.patient, d.clinician
            ));
            fields.push(format!(
                "d{i}: registerDevice(patientId: \"{}\", kind: \"sim-wearable\")",
                d.patient
            ));
        }
        let q = format!("mutation {{ {} }}", fields.join(" "));
        let v = client
            .gql(0, &admin, &q, json!({}))
            .await
            .map_err(|e| format!("cannot register patients and devices: {e}"))?;
        for i in 0..chunk.len() {
            let id = v[format!("d{i}")]
                .as_str()
                .ok_or("registerDevice returned no id")?;
            devices.push(id.to_owned());
        }
    }
    Ok(devices)
}

/// The run's clock, as an alert watcher needs it.
struct Watch {
    /// Device time of second 0.
    start_ms: f64,
    deadline: Instant,
}

/// A clinician's alert subscription until the run's end.
async fn watch_alerts(
    url: &str,
    token: &str,
    (stats, pushes): (&Shared, &Pushes),
    run: Watch,
) -> Result<(), String> {
    use awc::ws;
    let (_, mut socket) = awc::Client::new()
        .ws(format!("{url}/graphql"))
        .protocols(["graphql-transport-ws"])
        .connect()
        .await
        .map_err(|e| format!("WebSocket {}", short(&e.to_string())))?;
    let init =
        json!({"type": "connection_init", "payload": {"authorization": format!("Bearer {token}")}});
    let subscribe = json!({"id": "alerts", "type": "subscribe", "payload": {"query": "subscription { alerts { deviceId change at } }"}});
    for m in [init, subscribe] {
        socket
            .send(ws::Message::Text(m.to_string().into()))
            .await
            .map_err(|_| "WebSocket send".to_owned())?;
    }
    let after = tokio::time::Instant::from_std(run.deadline + Duration::from_secs(2));
    loop {
        let frame = match tokio::time::timeout_at(after, socket.next()).await {
            Err(_) | Ok(None) => return Ok(()),
            Ok(Some(Err(_))) => return Err("WebSocket protocol".into()),
            Ok(Some(Ok(frame))) => frame,
        };
        match frame {
            ws::Frame::Text(body) => {
                let v: Value = serde_json::from_slice(&body).unwrap_or_default();
                match v["type"].as_str() {
                    Some("next") => {
                        let a = &v["payload"]["data"]["alerts"];
                        if a["change"] != "RAISED" {
                            continue;
                        }
                        let device = a["deviceId"].as_str().unwrap_or("");
                        // The push that carried the sample the alert is at.
                        let at = a["at"].as_str().and_then(|t| DateTime::parse(t).ok());
                        let at_ms = at.map_or(0.0, |t| t.ms() as f64);
                        let second = ((at_ms - run.start_ms) / 1000.0).floor().max(0.0) as u64;
                        let began = pushes.borrow().get(device).and_then(|recent| {
                            recent.iter().find(|(t, _)| *t == second).map(|(_, b)| *b)
                        });
                        let mut st = stats.borrow_mut();
                        st.alerts += 1;
                        if let Some(began) = began {
                            st.alert_us.push(elapsed_us(began));
                        }
                    }
                    Some("error") => {
                        let code = v["payload"][0]["extensions"]["code"]
                            .as_str()
                            .unwrap_or("ERROR");
                        return Err(code.to_owned());
                    }
                    _ => {}
                }
            }
            ws::Frame::Ping(p) => {
                let _ = socket.send(ws::Message::Pong(p)).await;
            }
            ws::Frame::Close(_) => return Err("closed by the server".into()),
            _ => {}
        }
    }
}

/// One consult from request to end, chatting every `every`.
async fn consult(
    client: &Client,
    j: usize,
    d: &DevicePlan,
    every: Duration,
    deadline: Instant,
    stats: &Shared,
) {
    let patient = client.token(Role::Patient, &d.patient);
    let clinician = client.token(Role::Clinician, &d.clinician);
    let request = "mutation($p: ID!, $r: ID!) { requestConsult(patientId: $p, reason: \"simulated follow-up\", requestId: $r) }";
    // One id per consult: a retry of this request would not open a second.
    let request_id = uuid::Uuid::new_v4().simple().to_string();
    let id = match client
        .gql(
            j,
            &patient,
            request,
            json!({"p": d.patient, "r": request_id}),
        )
        .await
    {
        Ok(v) => v["requestConsult"].as_str().unwrap_or_default().to_owned(),
        Err(code) => return stats.borrow_mut().error("requestConsult", &code),
    };
    stats.borrow_mut().consults_opened += 1;
    // The patient waits in the room; then the clinician comes in.
    let join = "mutation($c: ID!) { joinConsult(id: $c) }";
    for token in [&patient, &clinician] {
        if let Err(code) = client.gql(j, token, join, json!({"c": id})).await {
            return stats.borrow_mut().error("joinConsult", &code);
        }
    }
    let send = "mutation($c: ID!, $m: String!, $t: String!) { sendMessage(consultId: $c, clientMessageId: $m, text: $t) }";
    let mut n = 0u64;
    let mut next = Instant::now();
    while next + every < deadline {
        next += every;
        tokio::time::sleep_until(tokio::time::Instant::from_std(next)).await;
        let (token, text) = if n % 2 == 0 {
            (&patient, "my readings look steady today")
        } else {
            (&clinician, "thank you, keep the patch on")
        };
        let began = Instant::now();
        let vars = json!({"c": id, "m": format!("m{n}"), "t": text});
        match client.gql(j, token, send, vars).await {
            Ok(_) => {
                let mut st = stats.borrow_mut();
                st.messages += 1;
                st.message_us.push(elapsed_us(began));
            }
            Err(code) => stats.borrow_mut().error("sendMessage", &code),
        }
        n += 1;
    }
    let end = "mutation($c: ID!) { endConsult(id: $c, notes: \"simulated\") }";
    match client.gql(j, &clinician, end, json!({"c": id})).await {
        Ok(_) => stats.borrow_mut().consults_ended += 1,
        Err(code) => stats.borrow_mut().error("endConsult", &code),
    }
}

/// A live line on stderr: rewritten in place on a terminal, every 5 s otherwise.
async fn progress(stats: Shared, start: Instant, duration: Duration) {
    let tty = std::io::stderr().is_terminal();
    let mut every = tokio::time::interval(Duration::from_secs(if tty { 1 } else { 5 }));
    every.tick().await;
    let mut last = (0u64, Instant::now(), 0usize);
    loop {
        every.tick().await;
        let st = stats.borrow();
        let rate = (st.accepted - last.0) as f64 / last.1.elapsed().as_secs_f64();
        // The latency of the pushes answered since the last line.
        let mut recent = st.push_us.get(last.2..).unwrap_or_default().to_vec();
        let recent_p99 = quantile_ms(&mut recent, 0.99);
        last = (st.accepted, Instant::now(), st.push_us.len());
        let errors: u64 = st.errors.values().sum();
        let line = format!(
            "{:>4.0}/{:.0} s  pushes {} (p99 {:.0} ms)  samples {} ({:.0}/s)  rejected {}  alerts {}  messages {}  errors {}",
            start.elapsed().as_secs_f64(),
            duration.as_secs_f64(),
            st.pushes,
            recent_p99,
            st.accepted,
            rate,
            st.rejected,
            st.alerts,
            st.messages,
            errors
        );
        let mut err = std::io::stderr().lock();
        if tty {
            let _ = write!(err, "\r\x1b[K{line}");
        } else {
            let _ = writeln!(err, "{line}");
        }
        let _ = err.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(seed: u64) -> Settings {
        Settings {
            urls: vec!["http://127.0.0.1:8080".into()],
            devices: 50,
            rate: 50,
            consults: 5,
            clinicians: 4,
            duration: Duration::from_secs(60),
            seed,
            episodes: 0.2,
            episode: Duration::from_secs(20),
            invalid: 0.01,
            chat_every: Duration::from_secs(2),
        }
    }

    #[test]
    fn the_same_seed_generates_the_same_load() {
        let (a, b, c) = (
            Plan::new(&settings(7)),
            Plan::new(&settings(7)),
            Plan::new(&settings(8)),
        );
        assert_eq!(a, b);
        assert_ne!(a, c);
        let s = settings(7);
        for tick in [0, 13, 59] {
            assert_eq!(
                batch(&a.devices[3], tick, 1e12, &s),
                batch(&b.devices[3], tick, 1e12, &s)
            );
        }
        // About the asked share of devices has an episode, inside the run.
        let with: Vec<_> = a.devices.iter().filter_map(|d| d.episode).collect();
        assert!((3..=20).contains(&with.len()), "{}", with.len());
        assert!(with.iter().all(|(from, to)| *from >= 0.0 && *to <= 60.0));
    }

    #[test]
    fn batches_hold_rate_samples_in_order_with_the_episode_in_them() {
        let s = settings(3);
        let mut d = Plan::new(&s).devices[0].clone();
        d.episode = Some((10.0, 30.0));
        let (calm, _) = batch(&d, 2, 0.0, &s);
        let (fast, _) = batch(&d, 15, 0.0, &s);
        assert_eq!(calm.len(), 50);
        let at: Vec<i64> = calm
            .iter()
            .map(|x| DateTime::parse(x["at"].as_str().unwrap()).unwrap().ms())
            .collect();
        assert!(at.windows(2).all(|w| w[0] < w[1]));
        assert!(at[0] >= 2000 && at[49] < 3000);
        let bpm = |b: &[Value]| {
            b.iter()
                .filter(|x| x["metric"] == "HEART_RATE")
                .map(|x| x["value"].as_f64().unwrap())
                .filter(|v| *v < 300.0)
                .sum::<f64>()
                / 25.0
        };
        assert!(bpm(&calm) < 100.0, "{}", bpm(&calm));
        assert!(bpm(&fast) > 140.0, "{}", bpm(&fast));
        // Invalid samples at about the asked share over many batches.
        let invalid: u32 = (0..100).map(|t| batch(&d, t, 0.0, &s).1).sum();
        assert!((20..=90).contains(&invalid), "{invalid} of 5000");
    }
}
