//! The transition table, driven event by event.

use super::*;

fn facts() -> Facts {
    Facts {
        deadlines: Deadlines {
            power_ms: 30_000,
            dhcp_ms: 120_000,
            kernel_ms: 60_000,
            config_ms: 60_000,
            install_ms: 600_000,
            reboot_ms: 300_000,
            ports_ms: 300_000,
        },
        stages: vec![
            StageFacts {
                name: "configure".into(),
                timeout_ms: 60_000,
                keep_going: false,
            },
            StageFacts {
                name: "smoke".into(),
                timeout_ms: 60_000,
                keep_going: true,
            },
        ],
        reboots: true,
        netboot_after: false,
        boot_retries: 0,
        before_stages: 0,
        rerun_interrupted: true,
        inspect: false,
    }
}

/// Apply events in order from a fresh run; return the phases and all effects.
fn drive(events: &[Event], f: &Facts) -> (Vec<String>, Vec<Effect>, RunState) {
    let mut run = RunState::new(0);
    let mut phases = vec![run.phase.name()];
    let mut effects = vec![];
    for (i, ev) in events.iter().enumerate() {
        let now = (i as i64 + 1) * 1000;
        if let Some(t) = step(&run, ev, f, now) {
            run = t.state;
            phases.push(run.phase.name());
            effects.extend(t.effects);
        } else {
            phases.push(format!("ignored:{}", run.phase.name()));
        }
    }
    (phases, effects, run)
}

fn ok(s: PowerStep) -> Event {
    Event::Bmc(s, Ok(()))
}

const HAPPY: &[Event] = &[];

fn happy() -> Vec<Event> {
    let _ = HAPPY;
    vec![
        Event::Start,
        Event::NetbootOn,
        ok(PowerStep::SetBootPxe),
        ok(PowerStep::PowerCycle),
        Event::DhcpSeen,
        Event::KernelServed,
        Event::ConfigServed,
        Event::InstallDone,
        Event::RebootSeen,
        Event::PortsUp,
        Event::StageDone(0, StageOutcome::Passed),
        Event::StageDone(1, StageOutcome::Passed),
    ]
}

#[test]
fn happy_path_visits_every_phase() {
    let (phases, effects, run) = drive(&happy(), &facts());
    assert_eq!(
        phases,
        [
            "queued",
            "locked",
            "bootdev",
            "power",
            "dhcp",
            "kernel",
            "config",
            "install",
            "reboot",
            "ports",
            "stage:0",
            "stage:1",
            "succeeded"
        ]
    );
    assert_eq!(run.phase, Phase::Succeeded);
    assert_eq!(run.reason, None);
    let kinds: Vec<&Effect> = effects
        .iter()
        .filter(|e| !matches!(e, Effect::Deadline { .. }))
        .collect();
    assert_eq!(
        kinds,
        [
            &Effect::NetbootOn,
            &Effect::Bmc(PowerStep::SetBootPxe),
            &Effect::Bmc(PowerStep::PowerCycle),
            &Effect::NetbootOff,
            &Effect::Bmc(PowerStep::SetBootDisk),
            &Effect::ProbePorts {
                until: 8000 + 300_000,
                after_down: true
            },
            &Effect::ProbePorts {
                until: 9000 + 300_000,
                after_down: false
            },
            &Effect::RunStage(0),
            &Effect::RunStage(1),
            &Effect::NetbootOff,
            &Effect::Finish,
        ]
    );
}

#[test]
fn each_waiting_phase_arms_its_deadline() {
    let f = facts();
    let mut run = RunState::new(0);
    let expect = [
        (Event::Start, None),
        (Event::NetbootOn, Some(30_000)),
        (ok(PowerStep::SetBootPxe), Some(30_000)),
        (ok(PowerStep::PowerCycle), Some(120_000)),
        (Event::DhcpSeen, Some(60_000)),
        (Event::KernelServed, Some(60_000)),
        (Event::ConfigServed, Some(600_000)),
        (Event::InstallDone, Some(300_000)),
        (Event::RebootSeen, Some(300_000)),
        (Event::PortsUp, Some(90_000)),
    ];
    for (i, (ev, d)) in expect.into_iter().enumerate() {
        let now = 1000 * (i as i64 + 1);
        let t = step(&run, &ev, &f, now).unwrap();
        let armed: Vec<i64> = t
            .effects
            .iter()
            .filter_map(|e| match e {
                Effect::Deadline { seq, at } => {
                    assert_eq!(*seq, t.state.seq);
                    Some(at - now)
                }
                _ => None,
            })
            .collect();
        assert_eq!(armed.first().copied(), d, "after {ev:?}");
        assert_eq!(t.state.due, d.map(|d| now + d));
        run = t.state;
    }
}

#[test]
fn missed_observations_do_not_stall() {
    // No DHCP observation (e.g. a relay we don't see): the kernel fetch moves it on.
    let (phases, _, _) = drive(
        &[
            Event::Start,
            Event::NetbootOn,
            ok(PowerStep::SetBootPxe),
            ok(PowerStep::PowerCycle),
            Event::ConfigServed,
            Event::InstallDone,
        ],
        &facts(),
    );
    assert_eq!(phases[4..], ["dhcp", "install", "reboot"]);
}

#[test]
fn machine_seen_before_the_power_call_returns() {
    // A fast machine calls back before the BMC's answer is processed.
    let (phases, _, _) = drive(
        &[
            Event::Start,
            Event::NetbootOn,
            ok(PowerStep::SetBootPxe),
            Event::DhcpSeen,
            Event::ConfigServed,
            Event::InstallDone,
            ok(PowerStep::PowerCycle),
        ],
        &facts(),
    );
    assert_eq!(
        phases[3..],
        ["power", "kernel", "install", "reboot", "ignored:reboot"]
    );
}

#[test]
fn bmc_failure_fails_in_power_phase() {
    let (phases, effects, run) = drive(
        &[
            Event::Start,
            Event::NetbootOn,
            Event::Bmc(
                PowerStep::SetBootPxe,
                Err("BMC unreachable: no answer from 10.77.0.2:623 within 10s".into()),
            ),
        ],
        &facts(),
    );
    assert_eq!(phases.last().unwrap(), "failed");
    assert_eq!(
        run.reason.as_deref(),
        Some("power: BMC unreachable: no answer from 10.77.0.2:623 within 10s")
    );
    assert!(effects.ends_with(&[Effect::NetbootOff, Effect::Finish]));
}

#[test]
fn deadline_current_times_out_stale_is_ignored() {
    let f = facts();
    let mut run = RunState::new(0);
    for ev in [
        Event::Start,
        Event::NetbootOn,
        ok(PowerStep::SetBootPxe),
        ok(PowerStep::PowerCycle),
    ] {
        run = step(&run, &ev, &f, 0).unwrap().state;
    }
    assert_eq!(run.phase, Phase::Dhcp);
    // The power phase's deadline falls after we left it: ignored.
    assert!(step(&run, &Event::Deadline(run.seq - 1), &f, 5).is_none());
    let t = step(&run, &Event::Deadline(run.seq), &f, 5).unwrap();
    assert_eq!(t.state.phase, Phase::TimedOut);
    assert_eq!(
        t.state.reason.as_deref(),
        Some("timed out in phase dhcp waiting for the machine's DHCP request")
    );
}

#[test]
fn stage_failure_stop_and_keep_going() {
    let mut ev = happy();
    ev[10] = Event::StageDone(0, StageOutcome::Failed("exit 2".into()));
    let (phases, _, run) = drive(&ev[..11], &facts());
    assert_eq!(phases.last().unwrap(), "failed");
    assert_eq!(
        run.reason.as_deref(),
        Some("stage configure failed: exit 2")
    );

    // smoke has keep_going: the run goes on to the end, then fails.
    let mut ev = happy();
    ev[11] = Event::StageDone(1, StageOutcome::TimedOut);
    let (phases, _, run) = drive(&ev, &facts());
    assert_eq!(phases.last().unwrap(), "failed");
    assert_eq!(run.reason.as_deref(), Some("a stage failed (keep_going)"));
}

#[test]
fn no_reboot_profile_goes_straight_to_ports() {
    let mut f = facts();
    f.reboots = false;
    f.stages.clear();
    let (phases, _, run) = drive(&happy()[..10], &f);
    assert_eq!(
        phases[7..],
        ["install", "ports", "ignored:ports", "succeeded"]
    );
    assert_eq!(run.phase, Phase::Succeeded);
}

#[test]
fn cancel_from_anywhere_and_terminal_is_final() {
    for n in 0..happy().len() {
        let mut ev = happy()[..n].to_vec();
        ev.push(Event::Cancel("by admin".into()));
        let (_, effects, run) = drive(&ev, &facts());
        assert_eq!(run.phase, Phase::Cancelled, "after {n} events");
        assert!(effects.ends_with(&[Effect::NetbootOff, Effect::Finish]));
        // Nothing moves a finished run.
        for e in happy() {
            assert!(step(&run, &e, &facts(), 99).is_none());
        }
    }
}

#[test]
fn out_of_order_events_are_ignored() {
    let f = facts();
    let run = RunState::new(0);
    for e in [
        Event::DhcpSeen,
        Event::PortsUp,
        Event::InstallDone,
        Event::StageDone(0, StageOutcome::Passed),
    ] {
        assert!(step(&run, &e, &f, 1).is_none(), "{e:?} moved a queued run");
    }
}

#[test]
fn resume_rederives_effects() {
    let f = facts();
    let mut run = RunState::new(0);
    let evs = happy();
    let mut seen = vec![];
    for (i, e) in evs.iter().enumerate() {
        let t = step(&run, &Event::Resume, &f, 50_000);
        seen.push((
            run.phase.name(),
            t.map(|t| (t.state.phase.name(), t.effects)),
        ));
        run = step(&run, e, &f, i as i64 * 1000).unwrap().state;
    }
    let get = |p: &str| seen.iter().find(|(q, _)| q == p).unwrap().1.clone();
    assert_eq!(get("queued"), None);
    let (ph, eff) = get("power").unwrap();
    assert_eq!(ph, "power");
    assert_eq!(eff[0], Effect::Bmc(PowerStep::PowerCycle));
    let (ph, eff) = get("ports").unwrap();
    assert_eq!(ph, "ports");
    assert!(matches!(eff[0], Effect::ProbePorts { .. }));
    let (ph, eff) = get("stage:0").unwrap();
    assert_eq!((ph.as_str(), &eff[0]), ("stage:0", &Effect::RunStage(0)));
    // Deadlines keep their original due time and seq.
    let (_, eff) = get("install").unwrap();
    assert!(matches!(eff[0], Effect::Deadline { at, .. } if at == 6000 + 600_000));

    let mut f2 = f.clone();
    f2.rerun_interrupted = false;
    let mut r = RunState::new(0);
    for e in &evs[..10] {
        r = step(&r, e, &f2, 0).unwrap().state;
    }
    let t = step(&r, &Event::Resume, &f2, 1).unwrap();
    assert_eq!(t.state.phase, Phase::Failed);
    assert_eq!(
        t.state.reason.as_deref(),
        Some("stage configure interrupted by a daemon restart")
    );
}

#[test]
fn phase_names_round_trip() {
    for p in [
        Phase::Queued,
        Phase::Locked,
        Phase::BootDev,
        Phase::Power,
        Phase::Dhcp,
        Phase::Kernel,
        Phase::Config,
        Phase::Install,
        Phase::Inspect,
        Phase::Reboot,
        Phase::Ports,
        Phase::Stage(3),
        Phase::Succeeded,
        Phase::Failed,
        Phase::Cancelled,
        Phase::TimedOut,
    ] {
        assert_eq!(Phase::parse(&p.name()), Some(p));
    }
    assert_eq!(Phase::parse("stage:x"), None);
}

/// Every observation kind × every phase: the event the engine feeds `step`.
/// Columns: the kind, its UI name, the event in `Reboot`, the event in any
/// other phase.
#[test]
fn event_for_every_observation_and_phase() {
    use Observed as O;
    let table: &[(Observed, &str, Option<Event>, Option<Event>)] = &[
        (
            O::Dhcp,
            "dhcp",
            Some(Event::RebootSeen),
            Some(Event::DhcpSeen),
        ),
        (O::DhcpOs, "dhcp-os", None, Some(Event::DhcpSeen)),
        (O::Nak, "nak", None, None),
        (O::Tftp, "tftp", None, None),
        (O::Script, "script", None, None),
        (
            O::LocalScript,
            "local-script",
            Some(Event::RebootSeen),
            None,
        ),
        (
            O::Kernel,
            "kernel",
            Some(Event::KernelServed),
            Some(Event::KernelServed),
        ),
        (
            O::Config,
            "config",
            Some(Event::ConfigServed),
            Some(Event::ConfigServed),
        ),
        (O::Done, "done", None, None),
        (O::File, "file", None, None),
    ];
    let kinds: Vec<Observed> = table.iter().map(|r| r.0).collect();
    assert_eq!(
        kinds,
        Observed::ALL,
        "the table covers every kind, in order"
    );
    let phases = [
        Phase::Queued,
        Phase::Locked,
        Phase::BootDev,
        Phase::Power,
        Phase::Dhcp,
        Phase::Kernel,
        Phase::Config,
        Phase::Install,
        Phase::Reboot,
        Phase::Ports,
        Phase::Stage(0),
        Phase::Stage(3),
        Phase::Succeeded,
        Phase::Failed,
        Phase::Cancelled,
        Phase::TimedOut,
    ];
    for (seen, name, in_reboot, elsewhere) in table {
        assert_eq!(seen.as_str(), *name);
        for phase in phases {
            let want = if phase == Phase::Reboot {
                in_reboot
            } else {
                elsewhere
            };
            assert_eq!(
                event_for(*seen, phase).as_ref(),
                want.as_ref(),
                "{name} in {phase}"
            );
        }
    }
}

/// Events that bring a fresh run to the dhcp phase.
fn to_dhcp() -> Vec<Event> {
    vec![
        Event::Start,
        Event::NetbootOn,
        ok(PowerStep::SetBootPxe),
        ok(PowerStep::PowerCycle),
    ]
}

#[test]
fn missed_boot_deadline_power_cycles_again_then_times_out() {
    let f = Facts {
        boot_retries: 2,
        ..facts()
    };
    let mut run = RunState::new(0);
    for ev in to_dhcp() {
        run = step(&run, &ev, &f, 0).unwrap().state;
    }
    // First miss (no DHCP): boot device and power again, said in the timeline.
    let t = step(&run, &Event::Deadline(run.seq), &f, 10).unwrap();
    assert_eq!((t.state.phase, t.state.boot_attempt), (Phase::BootDev, 1));
    assert_eq!(
        t.detail,
        "no sign of the machine's DHCP request in time: power-cycling again (boot retry 1 of 2)"
    );
    assert_eq!(
        t.effects,
        vec![
            Effect::Bmc(PowerStep::SetBootPxe),
            Effect::Deadline {
                seq: t.state.seq,
                at: 10 + 30_000
            }
        ]
    );
    run = t.state;
    for ev in [
        ok(PowerStep::SetBootPxe),
        ok(PowerStep::PowerCycle),
        Event::DhcpSeen,
    ] {
        run = step(&run, &ev, &f, 20).unwrap().state;
    }
    // Second miss, in kernel: retry 2 keeps the count across phases.
    assert_eq!((run.phase, run.boot_attempt), (Phase::Kernel, 1));
    let t = step(&run, &Event::Deadline(run.seq), &f, 30).unwrap();
    assert_eq!((t.state.phase, t.state.boot_attempt), (Phase::BootDev, 2));
    assert!(
        t.detail.contains("kernel and initrd download"),
        "{}",
        t.detail
    );
    run = t.state;
    // The boot retries survive a restart.
    let r = step(&run, &Event::Resume, &f, 31).unwrap();
    assert_eq!(r.state.boot_attempt, 2);
    for ev in [ok(PowerStep::SetBootPxe), ok(PowerStep::PowerCycle)] {
        run = step(&run, &ev, &f, 40).unwrap().state;
    }
    // Third miss: out of retries.
    let t = step(&run, &Event::Deadline(run.seq), &f, 50).unwrap();
    assert_eq!(t.state.phase, Phase::TimedOut);
    assert_eq!(
        t.state.reason.as_deref(),
        Some(
            "timed out in phase dhcp waiting for the machine's DHCP request (after 2 boot retries)"
        )
    );
}

#[test]
fn boot_retries_only_for_boot_evidence() {
    let f = Facts {
        boot_retries: 2,
        ..facts()
    };
    // No install-done callback in time: the machine netboots the installer
    // again (the callback may have gone to a daemon that died), then the
    // run times out with the retries said.
    let mut run = RunState::new(0);
    for ev in &happy()[..7] {
        run = step(&run, ev, &f, 0).unwrap().state;
    }
    assert_eq!(run.phase, Phase::Install);
    let t = step(&run, &Event::Deadline(run.seq), &f, 5).unwrap();
    assert_eq!(t.state.phase, Phase::BootDev);
    assert!(t.detail.contains("install-done callback"), "{}", t.detail);
    assert_eq!(t.state.boot_attempt, 1);
    // The reboot and ports deadlines: the installer called back, no retry.
    for (upto, phase) in [(8, Phase::Reboot), (9, Phase::Ports)] {
        let mut run = RunState::new(0);
        for ev in &happy()[..upto] {
            run = step(&run, ev, &f, 0).unwrap().state;
        }
        assert_eq!(run.phase, phase);
        let t = step(&run, &Event::Deadline(run.seq), &f, 5).unwrap();
        assert_eq!(t.state.phase, Phase::TimedOut, "{phase}");
    }
    // Nor a power call that fails.
    let mut run = RunState::new(0);
    for ev in &to_dhcp()[..3] {
        run = step(&run, ev, &f, 0).unwrap().state;
    }
    let t = step(
        &run,
        &Event::Bmc(PowerStep::PowerCycle, Err("x".into())),
        &f,
        1,
    )
    .unwrap();
    assert_eq!(t.state.phase, Phase::Failed);
}

fn with_before() -> Facts {
    let mut f = facts();
    f.stages.insert(
        0,
        StageFacts {
            name: "revoke-cert".into(),
            timeout_ms: 10_000,
            keep_going: false,
        },
    );
    f.before_stages = 1;
    f
}

#[test]
fn before_stages_run_first_and_the_rest_after_boot() {
    let f = with_before();
    let mut ev = vec![Event::Start, Event::StageDone(0, StageOutcome::Passed)];
    ev.extend(happy().into_iter().skip(1).take(9));
    ev.push(Event::StageDone(1, StageOutcome::Passed));
    ev.push(Event::StageDone(2, StageOutcome::Passed));
    let (phases, effects, run) = drive(&ev, &f);
    assert_eq!(
        phases,
        [
            "queued",
            "stage:0",
            "locked",
            "bootdev",
            "power",
            "dhcp",
            "kernel",
            "config",
            "install",
            "reboot",
            "ports",
            "stage:1",
            "stage:2",
            "succeeded"
        ]
    );
    assert_eq!(run.phase, Phase::Succeeded);
    // The before stage ran before anything touched the machine.
    let first_bmc = effects
        .iter()
        .position(|e| matches!(e, Effect::Bmc(_)))
        .unwrap();
    let stage0 = effects
        .iter()
        .position(|e| *e == Effect::RunStage(0))
        .unwrap();
    let netboot = effects
        .iter()
        .position(|e| *e == Effect::NetbootOn)
        .unwrap();
    assert!(stage0 < netboot && netboot < first_bmc);
    assert!(effects.contains(&Effect::RunStage(1)) && effects.contains(&Effect::RunStage(2)));
}

#[test]
fn failing_before_stage_fails_without_touching_power() {
    let f = with_before();
    let (phases, effects, run) = drive(
        &[
            Event::Start,
            Event::StageDone(0, StageOutcome::Failed("exit 1".into())),
        ],
        &f,
    );
    assert_eq!(phases, ["queued", "stage:0", "failed"]);
    assert_eq!(
        run.reason.as_deref(),
        Some("stage revoke-cert failed: exit 1")
    );
    assert!(!effects
        .iter()
        .any(|e| matches!(e, Effect::Bmc(_) | Effect::NetbootOn)));
    // keep_going: on to the boot, and the run fails at the end.
    let mut f = with_before();
    f.stages[0].keep_going = true;
    let mut ev = vec![Event::Start, Event::StageDone(0, StageOutcome::TimedOut)];
    ev.extend(happy().into_iter().skip(1).take(9));
    ev.push(Event::StageDone(1, StageOutcome::Passed));
    ev.push(Event::StageDone(2, StageOutcome::Passed));
    let (phases, _, run) = drive(&ev, &f);
    assert_eq!(phases[2], "locked");
    assert_eq!(run.phase, Phase::Failed);
    assert!(run.stage_failed);
}

#[test]
fn reboot_straight_to_disk_or_through_the_network() {
    let f = facts();
    let mut run = RunState::new(0);
    for ev in &happy()[..8] {
        run = step(&run, ev, &f, 0).unwrap().state;
    }
    assert_eq!(run.phase, Phase::Reboot);
    // The BMC's answer is a line in the timeline; the phase and its deadline stay.
    let t = step(&run, &ok(PowerStep::SetBootDisk), &f, 100).unwrap();
    assert_eq!(
        (t.state.phase, t.state.due, t.state.since),
        (Phase::Reboot, run.due, run.since)
    );
    assert_eq!(
        t.detail,
        "boot device set to disk for the next boot (read back)"
    );
    assert_eq!(
        t.effects,
        vec![Effect::Deadline {
            seq: t.state.seq,
            at: run.due.unwrap()
        }]
    );
    let refused = Event::Bmc(PowerStep::SetBootDisk, Err("read back: pxe".into()));
    let t2 = step(&run, &refused, &f, 100).unwrap();
    assert_eq!(
        t2.detail,
        "boot device disk not set (read back: pxe): the local-boot script is the fallback"
    );
    let run = t.state;
    // Disk: the ports went down and came up, no network boot seen.
    let t = step(&run, &Event::PortsUp, &f, 200).unwrap();
    assert_eq!(t.state.phase, Phase::Stage(0));
    assert!(
        t.detail.starts_with("rebooted straight to the local disk"),
        "{}",
        t.detail
    );
    // Network: the local-boot script (or DHCP) came first.
    let t = step(&run, &Event::RebootSeen, &f, 200).unwrap();
    assert_eq!(t.state.phase, Phase::Ports);
    assert_eq!(t.detail, "rebooted through the network (local-boot script)");
    // A probe that gave up in reboot is not the end: the deadline decides.
    assert!(step(&run, &Event::PortsFailed("x".into()), &f, 200).is_none());
}

#[test]
fn after_install_netboot_keeps_the_image_and_sets_no_disk() {
    let f = Facts {
        netboot_after: true,
        ..facts()
    };
    let (phases, effects, run) = drive(&happy(), &f);
    assert_eq!(run.phase, Phase::Succeeded, "{phases:?}");
    assert!(!effects.contains(&Effect::NetbootOff), "{effects:?}");
    assert!(!effects.contains(&Effect::Bmc(PowerStep::SetBootDisk)));
    assert_eq!(
        effects
            .iter()
            .filter(|e| **e == Effect::NetbootPersist)
            .count(),
        2,
        "at the callback and at the end"
    );
    // A failed run keeps it too: a diskless machine has nothing else to boot.
    let (_, effects, run) = drive(&to_dhcp(), &f);
    let t = step(&run, &Event::Cancel("x".into()), &f, 9).unwrap();
    assert_eq!(t.effects, vec![Effect::NetbootPersist, Effect::Finish]);
    let _ = effects;
}

#[test]
fn console_news_is_a_note_in_any_running_phase() {
    let f = facts();
    let mut run = RunState::new(0);
    for ev in &happy()[..4] {
        run = step(&run, ev, &f, 0).unwrap().state;
        let ev = Event::Console("console: BMC refused SOL: disabled".into());
        let t = step(&run, &ev, &f, 50).unwrap();
        assert_eq!((t.state.phase, t.state.due), (run.phase, run.due));
        assert_eq!(t.detail, "console: BMC refused SOL: disabled");
        assert!(t
            .effects
            .iter()
            .all(|e| matches!(e, Effect::Deadline { .. })));
    }
    let done = step(&run, &Event::Cancel("x".into()), &f, 60)
        .unwrap()
        .state;
    assert!(step(&done, &Event::Console("late".into()), &f, 70).is_none());
}

/// An inspection run: netboot, the image loads, its facts report ends the
/// run with a power-off; no config, install, reboot or stages. A reimage
/// ignores a facts report; an inspection run that gets no report times out
/// in `inspect`.
#[test]
fn inspection_run_ends_at_its_facts_report_with_a_power_off() {
    let mut f = facts();
    f.inspect = true;
    f.stages.clear();
    let events = vec![
        Event::Start,
        Event::NetbootOn,
        ok(PowerStep::SetBootPxe),
        ok(PowerStep::PowerCycle),
        Event::DhcpSeen,
        Event::KernelServed,
        Event::ConfigServed,
        Event::FactsReported,
    ];
    let (phases, effects, run) = drive(&events, &f);
    assert_eq!(
        phases,
        [
            "queued",
            "locked",
            "bootdev",
            "power",
            "dhcp",
            "kernel",
            "inspect",
            "ignored:inspect",
            "succeeded"
        ]
    );
    assert_eq!(run.phase, Phase::Succeeded);
    let tail: Vec<&Effect> = effects.iter().rev().take(3).collect();
    assert_eq!(tail[0], &Effect::Finish);
    assert_eq!(tail[1], &Effect::Bmc(PowerStep::PowerOff));

    // The same report in a reimage changes nothing.
    let mut r = happy();
    r.insert(6, Event::FactsReported);
    let (phases, _, _) = drive(&r, &facts());
    assert_eq!(phases[7], "ignored:config");
    assert_eq!(phases.last().unwrap(), "succeeded");

    // No report: the install deadline ends it in `inspect`.
    let (_, _, run) = drive(&events[..6], &f);
    assert_eq!(run.phase, Phase::Inspect);
    let t = step(&run, &Event::Deadline(run.seq), &f, 10_000_000).unwrap();
    assert_eq!(t.state.phase, Phase::TimedOut);
    assert!(t.detail.contains("hardware facts report"), "{}", t.detail);
}
