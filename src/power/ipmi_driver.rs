//! `PowerDriver` over the native RMCP+ client (`power::ipmi`): one session per
//! call (open, raise privilege, command, close). The password is read from its
//! file or variable at each call and lives only in the session.

use super::ipmi::console::{SolConsole, SolTiming};
use super::ipmi::{
    BootDevice, BootTarget, ChassisControl, IpmiClient, IpmiError, IpmiTarget, Secret,
};
use super::{
    BootDev, BootSpec, BoxFut, ConsoleStream, PowerDriver, PowerError, PowerOp, PowerState,
};
use crate::inventory::Bmc;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct IpmiDriver {
    pub timeout: Duration,
    pub retries: u32,
    pub deadline: Duration,
}

impl Default for IpmiDriver {
    fn default() -> Self {
        IpmiDriver {
            timeout: Duration::from_millis(500),
            retries: 4,
            deadline: Duration::from_secs(10),
        }
    }
}

fn map(e: IpmiError) -> PowerError {
    match e {
        IpmiError::Unreachable { .. } => PowerError::Unreachable(e.to_string()),
        IpmiError::AuthFailed(_) => PowerError::Auth(e.to_string()),
        IpmiError::Rejected { .. } => PowerError::Rejected(e.to_string()),
        IpmiError::NotApplied(_) => PowerError::NotApplied(e.to_string()),
        IpmiError::Unsupported(_) => PowerError::Unsupported(e.to_string()),
        IpmiError::Protocol(_) | IpmiError::Io(_) => PowerError::Other(e.to_string()),
    }
}

impl IpmiDriver {
    async fn target(&self, bmc: &Bmc) -> Result<IpmiTarget, PowerError> {
        let addr = super::resolve(&bmc.address, 623).await?;
        let password = bmc.password.read().map_err(PowerError::Secret)?;
        let mut t = IpmiTarget::new(addr, bmc.username.clone(), Secret::from(password));
        t.cipher_suites = bmc.cipher_suites.clone();
        t.timeout = self.timeout;
        t.retries = self.retries;
        t.deadline = self.deadline;
        Ok(t)
    }

    async fn session(&self, bmc: &Bmc) -> Result<IpmiClient, PowerError> {
        let t = self.target(bmc).await?;
        let c = IpmiClient::connect(&t).await.map_err(map)?;
        if bmc.cipher_suites.first() != Some(&c.cipher_suite()) {
            tracing::info!(
                bmc = %bmc.address,
                suite = c.cipher_suite(),
                wanted = ?bmc.cipher_suites,
                "BMC refused the preferred cipher suite: fell back"
            );
        } else {
            tracing::debug!(bmc = %bmc.address, suite = c.cipher_suite(), "IPMI session open");
        }
        Ok(c)
    }
}

async fn finish<T>(c: IpmiClient, r: Result<T, IpmiError>) -> Result<T, PowerError> {
    // Close the session either way; a failed close does not fail the command.
    let _ = c.close().await;
    r.map_err(map)
}

impl PowerDriver for IpmiDriver {
    fn name(&self) -> &'static str {
        "ipmi"
    }

    /// Serial over LAN on a session of its own (`ipmi::console`).
    fn console<'a>(&'a self, bmc: &'a Bmc) -> BoxFut<'a, Result<ConsoleStream, PowerError>> {
        Box::pin(async move {
            let t = self.target(bmc).await?;
            let sol = SolConsole::open(&t, SolTiming::default())
                .await
                .map_err(map)?;
            let (output, input, stop) = sol.into_parts();
            Ok(ConsoleStream::new(
                output,
                input,
                Box::pin(async move { stop.close().await.map_err(map) }),
            ))
        })
    }

    fn status<'a>(&'a self, bmc: &'a Bmc) -> BoxFut<'a, Result<PowerState, PowerError>> {
        Box::pin(async move {
            let mut c = self.session(bmc).await?;
            let r = c.chassis_status().await;
            let st = finish(c, r).await?;
            Ok(if st.power_on {
                PowerState::On
            } else {
                PowerState::Off
            })
        })
    }

    fn power<'a>(&'a self, bmc: &'a Bmc, op: PowerOp) -> BoxFut<'a, Result<(), PowerError>> {
        Box::pin(async move {
            let ctl = match op {
                PowerOp::On => ChassisControl::PowerOn,
                PowerOp::Off => ChassisControl::PowerOff,
                PowerOp::Cycle => ChassisControl::PowerCycle,
                PowerOp::Reset => ChassisControl::HardReset,
                PowerOp::Soft => ChassisControl::SoftOff,
            };
            let mut c = self.session(bmc).await?;
            let r = c.chassis_control(ctl).await;
            finish(c, r).await
        })
    }

    fn set_boot<'a>(&'a self, bmc: &'a Bmc, b: BootSpec) -> BoxFut<'a, Result<(), PowerError>> {
        Box::pin(async move {
            let dev = BootDevice {
                target: match b.dev {
                    BootDev::Pxe => BootTarget::Pxe,
                    BootDev::Disk => BootTarget::Disk,
                },
                persistent: b.persistent,
                efi: b.efi,
            };
            let mut c = self.session(bmc).await?;
            // The client reads the setting back and fails with NotApplied if ignored.
            let r = c.set_boot_device(dev).await;
            finish(c, r).await
        })
    }

    fn get_boot<'a>(&'a self, bmc: &'a Bmc) -> BoxFut<'a, Result<BootSpec, PowerError>> {
        Box::pin(async move {
            let mut c = self.session(bmc).await?;
            let r = c.get_boot_device().await;
            let d = finish(c, r).await?;
            let dev = match d.target {
                BootTarget::Pxe => BootDev::Pxe,
                BootTarget::Disk => BootDev::Disk,
                other => {
                    return Err(PowerError::Unsupported(format!(
                        "boot device selector {} is neither PXE nor disk",
                        other.selector()
                    )))
                }
            };
            Ok(BootSpec {
                dev,
                persistent: d.persistent,
                efi: d.efi,
            })
        })
    }
}
