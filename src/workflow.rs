//! A reimage run as a pure state machine: `step(run, event, facts, now)`
//! returns the next state and the effects to perform. No I/O, no clock (the
//! caller passes `now`), no randomness. The engine (`engine.rs`) performs the
//! effects, persists every transition, and feeds results back as events.
//!
//! Phases, in order (each with a deadline from the profile):
//! queued → [stage N… (`when = "before"`)] → locked → bootdev → power → dhcp
//! → kernel → config → install → reboot → ports → stage N… → succeeded |
//! failed | cancelled | timed_out. A missed deadline in dhcp, kernel, config
//! or install goes back to bootdev (a power-cycle) up to `boot_retries` times
//! (an installer that never called back is started again, as MAAS does on a
//! deploy timeout: its callback may have gone to a daemon that died).
//!
//! Restart rule: on start-up the engine loads every non-terminal run and sends
//! it `Event::Resume`; `step` re-derives the effects of the state it was in
//! (a run waiting for SSH re-probes, a BMC call is reissued, a stage that was
//! running is rerun or failed as the profile says, deadlines keep their
//! original due time).

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Phase {
    Queued,
    Locked,
    BootDev,
    Power,
    Dhcp,
    Kernel,
    Config,
    Install,
    /// An inspection run: the image runs, waiting for its facts report.
    Inspect,
    Reboot,
    Ports,
    Stage(usize),
    Succeeded,
    Failed,
    Cancelled,
    TimedOut,
}

impl Phase {
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            Phase::Succeeded | Phase::Failed | Phase::Cancelled | Phase::TimedOut
        )
    }

    /// The stored name (`stage:2` for stages).
    pub fn name(self) -> String {
        match self {
            Phase::Stage(i) => format!("stage:{i}"),
            p => p.simple_name().to_string(),
        }
    }

    /// The name without a stage's index (`stage`): a bounded label set.
    pub fn simple_name(self) -> &'static str {
        match self {
            Phase::Queued => "queued",
            Phase::Locked => "locked",
            Phase::BootDev => "bootdev",
            Phase::Power => "power",
            Phase::Dhcp => "dhcp",
            Phase::Kernel => "kernel",
            Phase::Config => "config",
            Phase::Install => "install",
            Phase::Inspect => "inspect",
            Phase::Reboot => "reboot",
            Phase::Ports => "ports",
            Phase::Stage(_) => "stage",
            Phase::Succeeded => "succeeded",
            Phase::Failed => "failed",
            Phase::Cancelled => "cancelled",
            Phase::TimedOut => "timed_out",
        }
    }

    pub fn parse(s: &str) -> Option<Phase> {
        if let Some(i) = s.strip_prefix("stage:") {
            return i.parse().ok().map(Phase::Stage);
        }
        Some(match s {
            "queued" => Phase::Queued,
            "locked" => Phase::Locked,
            "bootdev" => Phase::BootDev,
            "power" => Phase::Power,
            "dhcp" => Phase::Dhcp,
            "kernel" => Phase::Kernel,
            "config" => Phase::Config,
            "install" => Phase::Install,
            "inspect" => Phase::Inspect,
            "reboot" => Phase::Reboot,
            "ports" => Phase::Ports,
            "succeeded" => Phase::Succeeded,
            "failed" => Phase::Failed,
            "cancelled" => Phase::Cancelled,
            "timed_out" => Phase::TimedOut,
            _ => return None,
        })
    }

    /// A human description of what the run waits for in this phase.
    pub fn waiting_for(self) -> &'static str {
        match self {
            Phase::Queued => "a free slot and the machine lock",
            Phase::Locked => "the netboot switch",
            Phase::BootDev => "the BMC to set boot device PXE",
            Phase::Power => "the BMC to power-cycle the machine",
            Phase::Dhcp => "the machine's DHCP request",
            Phase::Kernel => "the kernel and initrd download",
            Phase::Config => "the installer to fetch its config",
            Phase::Install => "the install-done callback",
            Phase::Inspect => "the inspection image's hardware facts report",
            Phase::Reboot => "the reboot to the local disk",
            Phase::Ports => "SSH and the service ports",
            Phase::Stage(_) => "the stage command",
            _ => "nothing (finished)",
        }
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

/// Which deadline from the profile applies to a phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadlines {
    pub power_ms: i64,
    pub dhcp_ms: i64,
    pub kernel_ms: i64,
    pub config_ms: i64,
    pub install_ms: i64,
    pub reboot_ms: i64,
    pub ports_ms: i64,
}

/// What `step` needs to know about the run's profile (a pure copy).
#[derive(Debug, Clone, PartialEq)]
pub struct Facts {
    pub deadlines: Deadlines,
    /// Stage timeouts and keep_going flags, in order.
    pub stages: Vec<StageFacts>,
    /// The installer reboots into the installed system after its callback.
    pub reboots: bool,
    /// Power-cycles again when the boot evidence misses its deadline
    /// (phases dhcp, kernel, config) before the run times out.
    pub boot_retries: u32,
    /// `after_install = "netboot"`: the machine keeps netbooting the image
    /// after the run (diskless, live); no boot device disk at the callback.
    pub netboot_after: bool,
    /// The first `before_stages` of `stages` run before the boot device is
    /// set (the machine untouched); the rest once it is up.
    pub before_stages: usize,
    /// Rerun a stage interrupted by a restart (else fail the run).
    pub rerun_interrupted: bool,
    /// An inspection run (`rackboot inspect`): netboot the profile's image,
    /// wait for its facts report, power the machine off; no install, no
    /// stages.
    pub inspect: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct StageFacts {
    pub name: String,
    pub timeout_ms: i64,
    pub keep_going: bool,
}

/// The persistent state of a run (what the store holds, besides ids).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunState {
    pub phase: Phase,
    /// Bumped on every transition; deadlines carry it so stale ones are ignored.
    pub seq: u32,
    /// When the current phase was entered (ms since epoch).
    pub since: i64,
    /// When the current phase's deadline falls, if it has one.
    pub due: Option<i64>,
    /// A stage failed but had keep_going: the run fails at the end.
    pub stage_failed: bool,
    /// Boot retries used (power-cycles after a missed boot deadline).
    pub boot_attempt: u32,
    /// Why it failed / was cancelled / timed out.
    pub reason: Option<String>,
}

impl RunState {
    pub fn new(now: i64) -> RunState {
        RunState {
            phase: Phase::Queued,
            seq: 0,
            since: now,
            due: None,
            stage_failed: false,
            boot_attempt: 0,
            reason: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PowerStep {
    SetBootPxe,
    PowerCycle,
    /// One-time boot from disk after the install-done callback (read back).
    SetBootDisk,
    /// The end of an inspection run: the machine is powered off.
    PowerOff,
}

/// Inputs to the state machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The engine took the run out of the queue and holds the machine lock.
    Start,
    /// Netboot switched on for this run (persisted).
    NetbootOn,
    /// A BMC call finished.
    Bmc(PowerStep, Result<(), String>),
    /// The daemon answered the machine's DHCP.
    DhcpSeen,
    /// The machine fetched its per-MAC installer script, kernel or initrd.
    KernelServed,
    /// The installer fetched its config (kickstart / preseed / user-data).
    ConfigServed,
    /// The run's install-done callback arrived (token checked by the adapter).
    InstallDone,
    /// The machine's hardware facts report was stored (token and body
    /// checked by the adapter).
    FactsReported,
    /// After the callback: local-boot script served, or DHCP seen again.
    RebootSeen,
    /// SSH answered with a banner and every service port is open.
    PortsUp,
    /// The port probe gave up (its reason).
    PortsFailed(String),
    /// Stage `i` finished.
    StageDone(usize, StageOutcome),
    /// The deadline armed at transition `seq` fell.
    Deadline(u32),
    Cancel(String),
    /// The daemon restarted: re-derive the effects of the current phase.
    Resume,
    /// What happened to the run's serial console capture (refused, ended):
    /// a timeline note, never a change of phase.
    Console(String),
}

/// What the adapters saw a machine do (from an `observe::Observation`),
/// typed: the engine maps it to an [`Event`] with [`event_for`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Observed {
    /// A DHCP OFFER, ACK or proxy offer went out to it as network-boot
    /// firmware (PXE, UEFI HTTP boot or iPXE: a client-architecture option
    /// or iPXE's user class).
    Dhcp,
    /// A DHCP OFFER or ACK went out to it as an operating system (no
    /// client-architecture option, not iPXE): the installer, or the system
    /// booted from its disk. Not evidence of a network boot after the
    /// install callback.
    DhcpOs,
    /// A DHCP NAK went out to it.
    Nak,
    /// A TFTP transfer ended (by peer address: no MAC, no run).
    Tftp,
    /// Its per-MAC installer script was served.
    Script,
    /// Its local-boot script was served.
    LocalScript,
    /// Its kernel or an initrd was served.
    Kernel,
    /// Its installer config was served.
    Config,
    /// Its install-done callback arrived (the engine gets the checked
    /// callback as its own command).
    Done,
    /// Another static file was served.
    File,
}

impl Observed {
    pub const ALL: &'static [Observed] = &[
        Observed::Dhcp,
        Observed::DhcpOs,
        Observed::Nak,
        Observed::Tftp,
        Observed::Script,
        Observed::LocalScript,
        Observed::Kernel,
        Observed::Config,
        Observed::Done,
        Observed::File,
    ];

    /// The name in the UI's "observation" events.
    pub fn as_str(self) -> &'static str {
        match self {
            Observed::Dhcp => "dhcp",
            Observed::DhcpOs => "dhcp-os",
            Observed::Nak => "nak",
            Observed::Tftp => "tftp",
            Observed::Script => "script",
            Observed::LocalScript => "local-script",
            Observed::Kernel => "kernel",
            Observed::Config => "config",
            Observed::Done => "done",
            Observed::File => "file",
        }
    }
}

/// The event an observation is for a run in `phase`, if any. After the
/// install callback (`Reboot`), a network-boot DHCP or the local-boot script
/// means the machine came back through the network; an operating system's
/// DHCP then is the installed system booted from disk (the port probe
/// decides). `step` still decides whether the event applies to the phase.
pub fn event_for(seen: Observed, phase: Phase) -> Option<Event> {
    match (seen, phase) {
        (Observed::Dhcp | Observed::LocalScript, Phase::Reboot) => Some(Event::RebootSeen),
        (Observed::DhcpOs, Phase::Reboot) => None,
        (Observed::Dhcp | Observed::DhcpOs, _) => Some(Event::DhcpSeen),
        (Observed::Kernel, _) => Some(Event::KernelServed),
        (Observed::Config, _) => Some(Event::ConfigServed),
        (
            Observed::Nak
            | Observed::Tftp
            | Observed::Script
            | Observed::LocalScript
            | Observed::Done
            | Observed::File,
            _,
        ) => None,
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StageOutcome {
    Passed,
    Failed(String),
    TimedOut,
}

/// Work for the engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Switch the machine's netboot on (installer) with the run's token.
    NetbootOn,
    /// Switch it off (local boot from now on).
    NetbootOff,
    /// The run's netboot becomes a persistent one (`after_install =
    /// "netboot"`: diskless and live machines boot the image every time).
    NetbootPersist,
    Bmc(PowerStep),
    /// Arm a timer: send `Event::Deadline(seq)` at `at` (ms since epoch).
    Deadline {
        seq: u32,
        at: i64,
    },
    /// Probe SSH (banner) and the service ports until they answer or `until`.
    /// `after_down`: first see them closed (the installer's own SSH does not
    /// count: the machine must go down and come up again).
    ProbePorts {
        until: i64,
        after_down: bool,
    },
    /// Run stage `i` with its timeout.
    RunStage(usize),
    /// Terminal: release the machine lock, write the results (JUnit).
    Finish,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    pub state: RunState,
    pub effects: Vec<Effect>,
    /// One line for the timeline ("DHCP seen", "stage configure passed").
    pub detail: String,
}

/// The transition function. Total: an event that does not apply to the
/// current phase returns `None` (ignored; the engine counts it).
pub fn step(run: &RunState, ev: &Event, f: &Facts, now: i64) -> Option<Transition> {
    use Phase::*;
    if run.phase.is_terminal() {
        return None;
    }
    let to = |phase: Phase, detail: String, mut effects: Vec<Effect>| -> Option<Transition> {
        let seq = run.seq + 1;
        let due = deadline_for(phase, f).map(|d| now + d);
        if let Some(at) = due {
            effects.push(Effect::Deadline { seq, at });
        }
        Some(Transition {
            state: RunState {
                phase,
                seq,
                since: now,
                due,
                stage_failed: run.stage_failed,
                boot_attempt: run.boot_attempt,
                reason: None,
            },
            effects,
            detail,
        })
    };
    let end = |phase: Phase, reason: String| -> Option<Transition> {
        Some(Transition {
            state: RunState {
                phase,
                seq: run.seq + 1,
                since: now,
                due: None,
                stage_failed: run.stage_failed,
                boot_attempt: run.boot_attempt,
                reason: Some(reason.clone()),
            },
            effects: vec![release(f), Effect::Finish],
            detail: reason,
        })
    };
    match (run.phase, ev) {
        (_, Event::Cancel(why)) => end(Cancelled, format!("cancelled: {why}")),
        (_, Event::Console(what)) => note(run, what.clone()),
        // The boot evidence or the install-done callback did not come:
        // power-cycle again (boot device first: a one-time PXE setting was
        // used up by the failed boot).
        (p @ (Dhcp | Kernel | Config | Install), Event::Deadline(seq))
            if *seq == run.seq && run.boot_attempt < f.boot_retries =>
        {
            let n = run.boot_attempt + 1;
            let mut t = to(
                BootDev,
                format!(
                    "no sign of {} in time: power-cycling again (boot retry {n} of {})",
                    p.waiting_for(),
                    f.boot_retries
                ),
                vec![Effect::Bmc(PowerStep::SetBootPxe)],
            )?;
            t.state.boot_attempt = n;
            Some(t)
        }
        (p, Event::Deadline(seq)) if *seq == run.seq => end(
            TimedOut,
            match (p, run.boot_attempt) {
                (Dhcp | Kernel | Config | Install, n) if n > 0 => format!(
                    "timed out in phase {p} waiting for {} (after {n} boot retr{})",
                    p.waiting_for(),
                    if n == 1 { "y" } else { "ies" }
                ),
                _ => format!("timed out in phase {p} waiting for {}", p.waiting_for()),
            },
        ),
        (_, Event::Deadline(_)) => None,
        (p, Event::Resume) => resume(run, p, f, now),

        (Queued, Event::Start) if f.before_stages > 0 => {
            next_stage(run, f, now, 0, "machine locked".into())
        }
        (Queued, Event::Start) => to(Locked, "machine locked".into(), vec![Effect::NetbootOn]),
        (Locked, Event::NetbootOn) => to(
            BootDev,
            "netboot on: installer offered".into(),
            vec![Effect::Bmc(PowerStep::SetBootPxe)],
        ),
        (BootDev, Event::Bmc(PowerStep::SetBootPxe, Ok(()))) => to(
            Power,
            "boot device set to PXE".into(),
            vec![Effect::Bmc(PowerStep::PowerCycle)],
        ),
        (Power, Event::Bmc(PowerStep::PowerCycle, Ok(()))) => {
            to(Dhcp, "power cycled".into(), vec![])
        }
        (BootDev | Power, Event::Bmc(_, Err(e))) => end(Failed, format!("power: {e}")),

        (Power | Dhcp, Event::DhcpSeen) => to(Kernel, "DHCP seen".into(), vec![]),
        // An inspection run: the image is loading, then its report ends the
        // run and the machine is powered off (it also powers itself off).
        (Power | Dhcp | Kernel, Event::KernelServed) if f.inspect => {
            to(Inspect, "inspection image fetched".into(), vec![])
        }
        // The image fetched its inspection script (a missed kernel observation).
        (Power | Dhcp | Kernel, Event::ConfigServed) if f.inspect => {
            to(Inspect, "inspection script fetched".into(), vec![])
        }
        (Inspect, Event::ConfigServed | Event::InstallDone) => None,
        (Power | Dhcp | Kernel | Inspect, Event::FactsReported) if f.inspect => Some(Transition {
            state: RunState {
                phase: Succeeded,
                seq: run.seq + 1,
                since: now,
                due: None,
                stage_failed: false,
                boot_attempt: run.boot_attempt,
                reason: None,
            },
            effects: vec![release(f), Effect::Bmc(PowerStep::PowerOff), Effect::Finish],
            detail: "hardware facts reported: powering off".into(),
        }),
        (_, Event::FactsReported) => None,
        // The machine may be seen booting before the BMC call reports back (Power),
        // and a missed observation must not stall the run: later evidence moves it on.
        (Power | Dhcp | Kernel, Event::KernelServed) => {
            to(Config, "kernel/initrd fetched".into(), vec![])
        }
        (Power | Dhcp | Kernel | Config, Event::ConfigServed) => {
            to(Install, "installer config fetched".into(), vec![])
        }
        (Power | Dhcp | Kernel | Config | Install, Event::InstallDone) => {
            if f.reboots {
                // Straight to the disk on the next boot (one-time, through the
                // BMC); the local-boot script stays the fallback. The machine
                // is watched both ways: the network (RebootSeen) and its ports
                // going down and up (PortsUp).
                let mut eff = vec![release(f)];
                if !f.netboot_after {
                    eff.push(Effect::Bmc(PowerStep::SetBootDisk));
                }
                eff.push(Effect::ProbePorts {
                    until: now + f.deadlines.reboot_ms,
                    after_down: true,
                });
                let detail = if f.netboot_after {
                    "install-done callback: netboot stays on (after_install = netboot)"
                } else {
                    "install-done callback: netboot off"
                };
                to(Reboot, detail.into(), eff)
            } else {
                ports(
                    run,
                    f,
                    now,
                    if f.netboot_after {
                        "install-done callback: netboot stays on (after_install = netboot)"
                    } else {
                        "install-done callback: netboot off"
                    },
                    vec![release(f)],
                )
            }
        }
        (Reboot, Event::RebootSeen) => ports(
            run,
            f,
            now,
            "rebooted through the network (local-boot script)",
            vec![],
        ),
        (Reboot, Event::PortsUp) => next_stage(
            run,
            f,
            now,
            f.before_stages,
            "rebooted straight to the local disk (no network boot): SSH and service ports up"
                .into(),
        ),
        // The reboot deadline decides; the network path may still come.
        (Reboot, Event::PortsFailed(_)) => None,
        (Reboot, Event::Bmc(PowerStep::SetBootDisk, r)) => {
            let detail = match r {
                Ok(()) => "boot device set to disk for the next boot (read back)".to_string(),
                Err(e) => {
                    format!("boot device disk not set ({e}): the local-boot script is the fallback")
                }
            };
            note(run, detail)
        }

        (Ports, Event::PortsUp) => next_stage(
            run,
            f,
            now,
            f.before_stages,
            "SSH and service ports up".into(),
        ),
        (Ports, Event::PortsFailed(why)) => end(Failed, format!("ports: {why}")),

        (Stage(i), Event::StageDone(j, outcome)) if i == *j => {
            let name = f.stages.get(i).map(|s| s.name.as_str()).unwrap_or("?");
            // After the last "before" stage: on to the netboot switch.
            let next = |r: &RunState, detail: String| {
                if i + 1 == f.before_stages {
                    let mut t = to(Locked, detail, vec![Effect::NetbootOn])?;
                    t.state.stage_failed = r.stage_failed;
                    Some(t)
                } else {
                    next_stage(r, f, now, i + 1, detail)
                }
            };
            match outcome {
                StageOutcome::Passed => next(run, format!("stage {name} passed")),
                StageOutcome::Failed(_) | StageOutcome::TimedOut => {
                    let why = match outcome {
                        StageOutcome::Failed(w) => format!("stage {name} failed: {w}"),
                        _ => format!("stage {name} timed out"),
                    };
                    if f.stages.get(i).map(|s| s.keep_going).unwrap_or(false) {
                        let mut r = run.clone();
                        r.stage_failed = true;
                        next(&r, why)
                    } else {
                        end(Failed, why)
                    }
                }
            }
        }
        _ => None,
    }
}

/// What ends the run's netboot: off (local boot from now on), or a
/// persistent netboot of the image (`after_install = "netboot"`).
fn release(f: &Facts) -> Effect {
    if f.netboot_after {
        Effect::NetbootPersist
    } else {
        Effect::NetbootOff
    }
}

/// A line in the timeline without a change of phase (same deadline).
fn note(run: &RunState, detail: String) -> Option<Transition> {
    let seq = run.seq + 1;
    let mut effects = Vec::new();
    if let Some(at) = run.due {
        effects.push(Effect::Deadline { seq, at });
    }
    Some(Transition {
        state: RunState { seq, ..run.clone() },
        effects,
        detail,
    })
}

fn deadline_for(p: Phase, f: &Facts) -> Option<i64> {
    let d = &f.deadlines;
    Some(match p {
        Phase::BootDev | Phase::Power => d.power_ms,
        Phase::Dhcp => d.dhcp_ms,
        Phase::Kernel => d.kernel_ms,
        Phase::Config => d.config_ms,
        Phase::Install | Phase::Inspect => d.install_ms,
        Phase::Reboot => d.reboot_ms,
        Phase::Ports => d.ports_ms,
        // A stage's own timeout is enforced by the runner; the deadline is a backstop.
        Phase::Stage(i) => f.stages.get(i)?.timeout_ms + 30_000,
        _ => return None,
    })
}

fn ports(
    run: &RunState,
    f: &Facts,
    now: i64,
    detail: &str,
    mut eff: Vec<Effect>,
) -> Option<Transition> {
    let until = now + f.deadlines.ports_ms;
    eff.push(Effect::ProbePorts {
        until,
        after_down: false,
    });
    let seq = run.seq + 1;
    eff.push(Effect::Deadline { seq, at: until });
    Some(Transition {
        state: RunState {
            phase: Phase::Ports,
            seq,
            since: now,
            due: Some(until),
            stage_failed: run.stage_failed,
            boot_attempt: run.boot_attempt,
            reason: None,
        },
        effects: eff,
        detail: detail.to_string(),
    })
}

fn next_stage(run: &RunState, f: &Facts, now: i64, i: usize, detail: String) -> Option<Transition> {
    let seq = run.seq + 1;
    if i >= f.stages.len() {
        let (phase, reason) = if run.stage_failed {
            (
                Phase::Failed,
                Some("a stage failed (keep_going)".to_string()),
            )
        } else {
            (Phase::Succeeded, None)
        };
        return Some(Transition {
            state: RunState {
                phase,
                seq,
                since: now,
                due: None,
                stage_failed: run.stage_failed,
                boot_attempt: run.boot_attempt,
                reason,
            },
            effects: vec![release(f), Effect::Finish],
            detail,
        });
    }
    let at = now + deadline_for(Phase::Stage(i), f).unwrap_or(0);
    Some(Transition {
        state: RunState {
            phase: Phase::Stage(i),
            seq,
            since: now,
            due: Some(at),
            stage_failed: run.stage_failed,
            boot_attempt: run.boot_attempt,
            reason: None,
        },
        effects: vec![Effect::RunStage(i), Effect::Deadline { seq, at }],
        detail,
    })
}

/// Re-derive the effects of `p` after a restart. The state itself is kept
/// (same seq, same due time), except where work cannot be resumed.
fn resume(run: &RunState, p: Phase, f: &Facts, now: i64) -> Option<Transition> {
    let mut effects = match p {
        Phase::Queued => return None, // the queue picks it up again
        Phase::Locked => vec![Effect::NetbootOn],
        Phase::BootDev => vec![Effect::Bmc(PowerStep::SetBootPxe)],
        Phase::Power => vec![Effect::Bmc(PowerStep::PowerCycle)],
        Phase::Dhcp | Phase::Kernel | Phase::Config | Phase::Install | Phase::Inspect => vec![],
        // The machine may be up on its disk by now: no need to see it go down.
        Phase::Reboot => vec![Effect::ProbePorts {
            until: run.due.unwrap_or(now + f.deadlines.reboot_ms),
            after_down: false,
        }],
        Phase::Ports => vec![Effect::ProbePorts {
            until: run.due.unwrap_or(now + f.deadlines.ports_ms),
            after_down: false,
        }],
        Phase::Stage(i) => {
            if !f.rerun_interrupted {
                let name = f.stages.get(i).map(|s| s.name.as_str()).unwrap_or("?");
                return Some(Transition {
                    state: RunState {
                        phase: Phase::Failed,
                        seq: run.seq + 1,
                        since: now,
                        due: None,
                        stage_failed: true,
                        boot_attempt: run.boot_attempt,
                        reason: Some(format!("stage {name} interrupted by a daemon restart")),
                    },
                    effects: vec![release(f), Effect::Finish],
                    detail: format!("stage {name} interrupted by a daemon restart"),
                });
            }
            vec![Effect::RunStage(i)]
        }
        _ => return None,
    };
    if let Some(at) = run.due {
        effects.push(Effect::Deadline { seq: run.seq, at });
    }
    Some(Transition {
        state: run.clone(),
        effects,
        detail: format!("resumed in phase {p} after a daemon restart"),
    })
}

#[cfg(test)]
mod tests;
