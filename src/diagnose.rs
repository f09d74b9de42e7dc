//! "Why didn't it boot?": a machine's last attempt as the chain of steps a
//! netboot goes through, the first one that never happened, and its likely
//! cause. Pure: it reads the machine's feed events (run transitions and boot
//! observations, oldest first) and nothing else.

/// A step of a reimage, in the order a machine goes through them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// The BMC set the boot device and power-cycled the machine.
    Power,
    /// A DHCP answer went out to the machine (its firmware or iPXE asked).
    Dhcp,
    /// iPXE fetched the machine's script.
    Script,
    /// The kernel and initrd were fetched.
    Kernel,
    /// The installer fetched its config (kickstart, preseed, user-data ...).
    Config,
    /// The installer called back: install done.
    Done,
    /// The machine came back from its own disk.
    LocalBoot,
    /// SSH and the profile's ports answered.
    Ports,
}

impl Step {
    pub const ALL: [Step; 8] = [
        Step::Power,
        Step::Dhcp,
        Step::Script,
        Step::Kernel,
        Step::Config,
        Step::Done,
        Step::LocalBoot,
        Step::Ports,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Step::Power => "power",
            Step::Dhcp => "dhcp",
            Step::Script => "script",
            Step::Kernel => "kernel",
            Step::Config => "config",
            Step::Done => "done",
            Step::LocalBoot => "local_boot",
            Step::Ports => "ports",
        }
    }

    /// What the step is, for people.
    pub fn label(self) -> &'static str {
        match self {
            Step::Power => "BMC set PXE boot and power-cycled",
            Step::Dhcp => "DHCP answered",
            Step::Script => "boot script fetched (iPXE script or GRUB config)",
            Step::Kernel => "kernel and initrd fetched",
            Step::Config => "installer config fetched",
            Step::Done => "installer called back (install done)",
            Step::LocalBoot => "came back from its own disk",
            Step::Ports => "SSH and service ports up",
        }
    }

    /// The likely cause when this is the first step that never happened.
    pub fn cause_if_missing(self) -> &'static str {
        match self {
            Step::Power => {
                "the BMC did not power-cycle the machine: check the BMC address, \
                 credentials and reachability (the run's power phase says why)"
            }
            Step::Dhcp => {
                "no DHCP answer went to this machine: no request was seen from its MAC \
                 (link or VLAN, the BMC's boot order not PXE first, or the MAC in \
                 systems.toml is not the boot NIC's), or it was ignored (wrong \
                 dhcp.mode, another server answering)"
            }
            Step::Script => {
                "DHCP answered but the boot script never came: the firmware could \
                 not load the boot loader (architecture mismatch, TFTP blocked, Secure \
                 Boot refusing an unsigned iPXE: set loader = \"grub\"), iPXE has no \
                 route to the HTTP port, or (loader = grub) shim or GRUB is missing \
                 from firmware_dir/grub/ (scripts/fetch-firmware.sh)"
            }
            Step::Kernel => {
                "the script was fetched but not the kernel: check the profile's kernel \
                 and initrd under the boot dir, and that the HTTP listener is reachable"
            }
            Step::Config => {
                "the kernel was fetched but the installer never asked for its config: \
                 the kernel did not boot (console, architecture, initrd), its command \
                 line lacks the config URL, or it asked from another address than the \
                 machine's reservation (configs go to that address only)"
            }
            Step::Done => {
                "the installer fetched its config but never called back: the install \
                 failed or its callback step is missing; see the serial console and the \
                 installer's logs"
            }
            Step::LocalBoot => {
                "the install finished but the machine did not come back from its disk: \
                 boot order after the install, or the boot loader was not installed"
            }
            Step::Ports => {
                "the machine booted from its disk but SSH or a service port never \
                 answered: its network configuration, sshd, or a firewall"
            }
        }
    }
}

/// One piece of evidence from the feed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Evidence<'a> {
    /// A run of this machine entered phase `to` (`queued`, `power`, `dhcp`, ...,
    /// `stage:N`, `succeeded`, `failed`, ...).
    Transition {
        to: &'a str,
        reason: Option<&'a str>,
    },
    /// A boot observation (`workflow::Observed::as_str`: `dhcp`, `script`,
    /// `local-script`, `kernel`, `config`, `done`, ...).
    Observed { what: &'a str },
}

/// A step of the chain: when it was first seen in the attempt, if it was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainStep {
    pub step: Step,
    pub at: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnosis {
    /// When the attempt began (its run's `queued`, else the first evidence).
    pub since: Option<i64>,
    /// Whether the attempt is a run (false: a netboot seen without one).
    pub run: bool,
    pub chain: Vec<ChainStep>,
    /// The first step that never happened (`None`: every step did).
    pub first_missing: Option<Step>,
    pub cause: Option<&'static str>,
    /// How the run ended, if it did: its final phase and reason.
    pub ended: Option<(String, Option<String>)>,
}

/// Which step a piece of evidence proves.
fn proves(e: &Evidence<'_>) -> Option<Step> {
    match *e {
        Evidence::Observed { what } => match what {
            "dhcp" | "dhcp-os" => Some(Step::Dhcp),
            "script" => Some(Step::Script),
            "kernel" => Some(Step::Kernel),
            "config" => Some(Step::Config),
            "done" => Some(Step::Done),
            "local-script" => Some(Step::LocalBoot),
            _ => None,
        },
        // Entering a phase proves the step the previous phase waited for.
        Evidence::Transition { to, .. } => match to {
            "dhcp" => Some(Step::Power),
            "kernel" => Some(Step::Dhcp),
            "config" => Some(Step::Kernel),
            "install" => Some(Step::Config),
            // An inspection run's image was fetched.
            "inspect" => Some(Step::Kernel),
            "reboot" => Some(Step::Done),
            "ports" => Some(Step::LocalBoot),
            t if t.starts_with("stage:") || t == "succeeded" => Some(Step::Ports),
            _ => None,
        },
    }
}

const TERMINAL: [&str; 4] = ["succeeded", "failed", "cancelled", "timed_out"];

/// Diagnose the last attempt in `events` (oldest first).
pub fn diagnose(events: &[(i64, Evidence<'_>)]) -> Diagnosis {
    // The last attempt starts at the last run's `queued`.
    let start = events
        .iter()
        .rposition(|(_, e)| matches!(e, Evidence::Transition { to: "queued", .. }));
    let run = start.is_some();
    let attempt = &events[start.unwrap_or(0)..];
    let mut at: [Option<i64>; Step::ALL.len()] = [None; Step::ALL.len()];
    let mut ended = None;
    for (t, e) in attempt {
        if let Some(s) = proves(e) {
            let i = s as usize;
            at[i] = at[i].or(Some(*t));
        }
        if let Evidence::Transition { to, reason } = e {
            if TERMINAL.contains(to) {
                // The run is over: what its machine did after is not its evidence.
                ended = Some((to.to_string(), reason.map(String::from)));
                break;
            }
        }
    }
    // A later step proves the earlier ones happened (e.g. iPXE ROMs reuse
    // the firmware's DHCP; a run resumed after a restart).
    let last_seen = at.iter().rposition(Option::is_some);
    let chain: Vec<ChainStep> = Step::ALL
        .iter()
        .filter(|s| run || **s != Step::Power)
        .map(|&s| ChainStep {
            step: s,
            at: at[s as usize],
        })
        .collect();
    let first_missing = chain
        .iter()
        .find(|c| c.at.is_none() && last_seen.is_none_or(|l| (c.step as usize) > l))
        .map(|c| c.step);
    Diagnosis {
        since: attempt.first().map(|(t, _)| *t),
        run,
        chain,
        first_missing,
        cause: first_missing.map(Step::cause_if_missing),
        ended,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tr(to: &'static str) -> Evidence<'static> {
        Evidence::Transition { to, reason: None }
    }
    fn ob(what: &'static str) -> Evidence<'static> {
        Evidence::Observed { what }
    }

    #[test]
    fn first_missing_step_by_table() {
        use Step::*;
        // A whole successful reimage, cut after N pieces of evidence: the
        // first step still missing at each cut.
        let full = [
            tr("queued"),
            tr("locked"),
            tr("power"),
            tr("dhcp"),
            ob("dhcp"),
            tr("kernel"),
            ob("script"),
            ob("kernel"),
            tr("config"),
            ob("config"),
            tr("install"),
            ob("done"),
            tr("reboot"),
            ob("local-script"),
            tr("ports"),
            tr("stage:0"),
            tr("succeeded"),
        ];
        let cuts: [(usize, Option<Step>); 10] = [
            (3, Some(Power)),
            (4, Some(Dhcp)),
            (6, Some(Script)),
            (7, Some(Kernel)),
            (9, Some(Config)),
            (11, Some(Done)),
            (13, Some(LocalBoot)),
            (14, Some(Ports)),
            (15, Some(Ports)),
            (17, None),
        ];
        let mut cases: Vec<(Vec<Evidence>, Option<Step>)> = cuts
            .iter()
            .map(|(n, want)| (full[..*n].to_vec(), *want))
            .collect();
        // Transitions alone prove the steps (observations dropped or pruned).
        let transitions: Vec<Evidence> = full
            .iter()
            .copied()
            .filter(|e| matches!(e, Evidence::Transition { .. }))
            .collect();
        cases.push((transitions, None));
        // No run: a netboot seen on its own has no power step.
        cases.push((vec![ob("dhcp")], Some(Script)));
        cases.push((vec![], Some(Dhcp)));
        for (i, (ev, want)) in cases.iter().enumerate() {
            let timed: Vec<(i64, Evidence)> = ev
                .iter()
                .enumerate()
                .map(|(t, e)| (t as i64 * 10, *e))
                .collect();
            let d = diagnose(&timed);
            assert_eq!(d.first_missing, *want, "case {i}: {ev:?}");
            assert_eq!(d.cause, want.map(Step::cause_if_missing), "case {i}");
        }
    }

    #[test]
    fn only_the_last_attempt_counts_and_its_end_is_kept() {
        let ev = vec![
            // A first run that went all the way.
            (1, tr("queued")),
            (2, tr("dhcp")),
            (3, ob("dhcp")),
            (4, ob("script")),
            (5, ob("kernel")),
            (6, tr("succeeded")),
            // The last one: the BMC failed.
            (10, tr("queued")),
            (11, tr("power")),
            (
                21,
                Evidence::Transition {
                    to: "failed",
                    reason: Some("power: BMC unreachable"),
                },
            ),
            // After the run: someone booted it by hand. Not the run's evidence.
            (30, ob("dhcp")),
            (31, ob("local-script")),
        ];
        let d = diagnose(&ev);
        assert_eq!(d.since, Some(10));
        assert!(d.run);
        assert_eq!(d.first_missing, Some(Step::Power));
        assert!(d.chain.iter().all(|c| c.at.is_none()));
        assert_eq!(
            d.ended,
            Some(("failed".into(), Some("power: BMC unreachable".into())))
        );
    }

    #[test]
    fn when_each_step_was_seen() {
        let d = diagnose(&[
            (100, tr("queued")),
            (150, tr("dhcp")),
            (170, ob("dhcp")),
            (175, ob("dhcp")),
        ]);
        let at = |s: Step| d.chain.iter().find(|c| c.step == s).unwrap().at;
        assert_eq!(at(Step::Power), Some(150));
        assert_eq!(at(Step::Dhcp), Some(170), "the first time it was seen");
        assert_eq!(at(Step::Script), None);
        assert_eq!(d.chain.len(), Step::ALL.len());
    }
}
