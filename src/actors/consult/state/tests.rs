//! The consult state's unit tests: its lifecycle and every refusal, chat
//! sequencing and deduplication, replay, and the window of recent lines.

use super::*;

#[test]
fn event_names_match_their_serialised_form() {
    let who = Party::Patient("p".into());
    let all = [
        Event::Requested {
            patient: "p".into(),
            reason: String::new(),
            at_ms: 0,
        },
        Event::Joined {
            who: who.clone(),
            at_ms: 0,
        },
        Event::Left {
            who: who.clone(),
            at_ms: 0,
        },
        Event::Chatted {
            line: ChatLine {
                seq: 1,
                author: who.clone(),
                client_message_id: "m".into(),
                text: "t".into(),
                at_ms: 0,
            },
        },
        Event::Ended {
            notes: String::new(),
            at_ms: 0,
        },
        Event::Cancelled { by: who, at_ms: 0 },
        Event::NoShow { at_ms: 0 },
    ];
    for e in all {
        assert_eq!(
            serde_json::to_value(&e).unwrap()["event"],
            e.name(),
            "{e:?}"
        );
    }
}

#[test]
fn refusal_codes_match_their_serialised_form() {
    let all = [
        ConsultError::NotFound,
        ConsultError::AlreadyRequested,
        ConsultError::NotParticipant,
        ConsultError::WrongState {
            action: "join".into(),
            status: Status::Ended,
        },
        ConsultError::TakenByAnotherClinician,
        ConsultError::Over,
        ConsultError::BadText { max: 1 },
        ConsultError::Unavailable,
        ConsultError::RequestIdReused,
    ];
    for e in all {
        let v = serde_json::to_value(&e).unwrap();
        assert_eq!(v["code"], e.code(), "{e:?}");
    }
}

fn patient() -> Party {
    Party::Patient("p-1".into())
}
fn doctor() -> Party {
    Party::Clinician("c-1".into())
}
fn other_doctor() -> Party {
    Party::Clinician("c-2".into())
}

/// Runs commands in order, applying accepted events; returns each result.
fn run(c: &mut Consult, commands: &[Command]) -> Vec<Result<Outcome, ConsultError>> {
    commands
        .iter()
        .enumerate()
        .map(|(i, cmd)| {
            c.decide(cmd, 1000 + i as u64).map(|(events, outcome)| {
                events.iter().for_each(|e| c.apply(e));
                outcome
            })
        })
        .collect()
}

fn requested() -> Consult {
    let mut c = Consult::default();
    run(
        &mut c,
        &[Command::Request {
            patient: "p-1".into(),
            reason: "palpitations".into(),
        }],
    );
    c
}

/// A chat command's answer: the line's sequence, and whether it was a retry.
fn line(seq: u64, duplicate: bool) -> Result<Outcome, ConsultError> {
    Ok(Outcome::Line { seq, duplicate })
}

fn chat(who: Party, id: &str, text: &str) -> Command {
    Command::Chat {
        who,
        client_message_id: id.into(),
        text: text.into(),
    }
}

#[test]
fn the_full_lifecycle_walks_every_state_in_order() {
    let mut c = requested();
    assert_eq!(c.status(), Some(Status::Requested));
    run(&mut c, &[Command::Join { who: patient() }]);
    assert_eq!(c.status(), Some(Status::Waiting));
    run(&mut c, &[Command::Join { who: doctor() }]);
    assert_eq!(c.status(), Some(Status::InProgress));
    let r = run(
        &mut c,
        &[chat(patient(), "a", "hello"), chat(doctor(), "b", "hi")],
    );
    assert_eq!(r, vec![line(1, false), line(2, false)]);
    run(
        &mut c,
        &[Command::End {
            who: doctor(),
            notes: "follow up in 2 weeks".into(),
        }],
    );
    assert_eq!(c.status(), Some(Status::Ended));
    assert_eq!(c.notes.as_deref(), Some("follow up in 2 weeks"));
}

#[test]
fn every_invalid_transition_or_act_is_refused_with_its_reason() {
    use ConsultError::*;
    let unknown = Consult::default();
    assert_eq!(
        unknown
            .decide(&Command::Join { who: patient() }, 0)
            .unwrap_err(),
        NotFound
    );
    let c = requested();
    let cases: Vec<(Command, ConsultError)> = vec![
        (
            Command::Request {
                patient: "p-1".into(),
                reason: "x".into(),
            },
            AlreadyRequested,
        ),
        (
            Command::Join {
                who: Party::Patient("p-9".into()),
            },
            NotParticipant,
        ),
        (
            Command::Join { who: doctor() },
            WrongState {
                action: "join as clinician".into(),
                status: Status::Requested,
            },
        ),
        (
            chat(patient(), "a", "early"),
            WrongState {
                action: "chat in".into(),
                status: Status::Requested,
            },
        ),
        (
            Command::End {
                who: doctor(),
                notes: String::new(),
            },
            NotParticipant,
        ),
    ];
    for (cmd, err) in cases {
        assert_eq!(c.decide(&cmd, 0).unwrap_err(), err, "{cmd:?}");
    }
    let mut live = requested();
    run(
        &mut live,
        &[
            Command::Join { who: patient() },
            Command::Join { who: doctor() },
        ],
    );
    let cases: Vec<(Command, ConsultError)> = vec![
        (
            Command::Join {
                who: other_doctor(),
            },
            TakenByAnotherClinician,
        ),
        (
            Command::End {
                who: patient(),
                notes: String::new(),
            },
            NotParticipant,
        ),
        (
            Command::End {
                who: other_doctor(),
                notes: String::new(),
            },
            NotParticipant,
        ),
        (
            Command::Cancel { who: patient() },
            WrongState {
                action: "cancel".into(),
                status: Status::InProgress,
            },
        ),
        (chat(other_doctor(), "x", "hi"), NotParticipant),
        (chat(patient(), "x", ""), BadText { max: MAX_TEXT }),
        (
            chat(patient(), "x", &"a".repeat(MAX_TEXT + 1)),
            BadText { max: MAX_TEXT },
        ),
    ];
    for (cmd, err) in cases {
        assert_eq!(live.decide(&cmd, 0).unwrap_err(), err, "{cmd:?}");
    }
    run(
        &mut live,
        &[Command::End {
            who: doctor(),
            notes: "ok".into(),
        }],
    );
    for cmd in [
        chat(patient(), "late", "are you there?"),
        Command::End {
            who: doctor(),
            notes: String::new(),
        },
        Command::Cancel { who: patient() },
        Command::Join { who: patient() },
    ] {
        assert_eq!(live.decide(&cmd, 0).unwrap_err(), Over, "{cmd:?}");
    }
}

#[test]
fn chat_is_sequenced_deduplicated_and_resumable() {
    let mut c = requested();
    run(
        &mut c,
        &[
            Command::Join { who: patient() },
            Command::Join { who: doctor() },
        ],
    );
    let r = run(
        &mut c,
        &[
            chat(patient(), "m1", "one"),
            chat(patient(), "m1", "one again"),
            chat(doctor(), "m2", "two"),
        ],
    );
    assert_eq!(r, vec![line(1, false), line(1, true), line(2, false),]);
    assert_eq!(c.lines.len(), 2);
    // The same client id from another author is another message.
    let r = run(&mut c, &[chat(doctor(), "m1", "mine")]);
    assert_eq!(r, vec![line(3, false)]);
    let after_first: Vec<&str> = c.lines_after(1).iter().map(|l| l.text.as_str()).collect();
    assert_eq!(after_first, vec!["two", "mine"]);
    assert!(c.lines_after(99).is_empty());
}

#[test]
fn an_absent_patient_becomes_a_no_show_and_a_present_one_does_not() {
    let mut c = requested();
    run(&mut c, &[Command::Join { who: patient() }]);
    run(&mut c, &[Command::NoShowCheck]);
    assert_eq!(
        c.status(),
        Some(Status::Waiting),
        "patient is in the waiting room"
    );
    run(
        &mut c,
        &[Command::Leave { who: patient() }, Command::NoShowCheck],
    );
    assert_eq!(c.status(), Some(Status::NoShow));
}

#[test]
fn a_waiting_consult_can_be_cancelled_by_a_participant() {
    let mut c = requested();
    run(
        &mut c,
        &[
            Command::Join { who: patient() },
            Command::Cancel { who: patient() },
        ],
    );
    assert_eq!(c.status(), Some(Status::Cancelled));
}

#[test]
fn replaying_the_events_rebuilds_the_same_state() {
    let mut c = requested();
    let mut events = vec![Event::Requested {
        patient: "p-1".into(),
        reason: "palpitations".into(),
        at_ms: 1000,
    }];
    for cmd in [
        Command::Join { who: patient() },
        Command::Join { who: doctor() },
        chat(doctor(), "z", "hello"),
    ] {
        let (evs, _) = c.decide(&cmd, 2000).unwrap();
        evs.iter().for_each(|e| c.apply(e));
        events.extend(evs);
    }
    let mut replayed = Consult::default();
    for e in &events {
        let json = serde_json::to_vec(e).unwrap();
        replayed.apply(&serde_json::from_slice(&json).unwrap());
    }
    assert_eq!(replayed, c);
}

#[test]
fn the_window_keeps_recent_lines_and_knows_what_it_cannot_see() {
    let mut c = requested();
    run(
        &mut c,
        &[
            Command::Join { who: patient() },
            Command::Join { who: doctor() },
        ],
    );
    let n = RECENT_LINES as u64 + 44;
    for i in 1..=n {
        run(&mut c, &[chat(patient(), &format!("m{i}"), "x")]);
    }
    assert_eq!(c.lines.len(), RECENT_LINES);
    assert_eq!(c.chat_len(), n);
    assert_eq!(c.lines[0].seq, n - RECENT_LINES as u64 + 1);
    // In the window: a duplicate, decided here.
    assert!(!c.may_have_sent_before(&patient(), &format!("m{n}")));
    // Out of it: the store must be asked; a stranger is refused anyway.
    assert!(c.may_have_sent_before(&patient(), "m1"));
    assert!(!c.may_have_sent_before(&other_doctor(), "m1"));
    assert_eq!(c.lines_after(n - 1).len(), 1);
    // The next line follows the last, not the window's length.
    let r = run(&mut c, &[chat(doctor(), "new", "y")]);
    assert_eq!(r, vec![line(n + 1, false)]);
}

#[test]
fn an_older_snapshot_with_the_whole_chat_loads_trimmed() {
    let mut c = requested();
    run(
        &mut c,
        &[
            Command::Join { who: patient() },
            Command::Join { who: doctor() },
        ],
    );
    let mut old = serde_json::to_value(&c).unwrap();
    // What the previous version saved: every line, no count.
    let lines: Vec<serde_json::Value> = (1..=300u64)
        .map(|i| {
            serde_json::to_value(ChatLine {
                seq: i,
                author: patient(),
                client_message_id: format!("m{i}"),
                text: "t".into(),
                at_ms: 0,
            })
            .unwrap()
        })
        .collect();
    old["lines"] = serde_json::Value::Array(lines);
    old.as_object_mut().unwrap().remove("chat_len");
    old["by_client_id"] = serde_json::json!({"p:p-1:m1": 1});
    let loaded: Consult = serde_json::from_value::<Consult>(old).unwrap().restored();
    assert_eq!(loaded.chat_len(), 300);
    assert_eq!(loaded.lines.len(), RECENT_LINES);
    assert!(!loaded.may_have_sent_before(&patient(), "m300"));
    assert!(loaded.may_have_sent_before(&patient(), "m1"));
}
