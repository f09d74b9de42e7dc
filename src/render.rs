//! Template rendering: kickstart / preseed / autoinstall / cloud-init / iPXE
//! for a system of the inventory, from the compiled [`Templates`] it holds.
//! Pure: building the context and rendering do no I/O. Undefined variables
//! are errors.

use crate::inventory::{Inventory, Profile, System};
pub use crate::template::{
    RenderError, RenderKind, RunCtx, Templates, Urls, BUILTIN_GRUB, BUILTIN_IPXE,
};
use minijinja::value::Serde;
use serde_json::json;

fn prefix_len(mask: std::net::Ipv4Addr) -> u32 {
    u32::from(mask).count_ones()
}

impl Inventory {
    /// The rendering context for a system (what every template sees).
    pub fn context(&self, s: &System, p: &Profile, run: &RunCtx) -> serde_json::Value {
        let mac = s.primary_mac();
        let mut vars = serde_json::Map::new();
        for (k, v) in p.vars.iter().chain(s.vars.iter()) {
            vars.insert(k.clone(), serde_json::to_value(v).unwrap_or_default());
        }
        let initrd_names: Vec<String> = p
            .initrd
            .iter()
            .map(|i| i.rsplit('/').next().unwrap_or(i).to_string())
            .collect();
        json!({
            "system": {
                "name": s.name,
                "hostname": s.hostname,
                "fqdn": s.fqdn(),
                "mac": mac.to_string(),
                "mac_hyphen": mac.hyphenated(),
                "macs": s.macs.iter().map(|m| m.to_string()).collect::<Vec<_>>(),
                "ip": s.ip.to_string(),
                "netmask": s.netmask.to_string(),
                "prefix": prefix_len(s.netmask),
                "gateway": s.gateway.map(|g| g.to_string()),
                "dns": s.dns.iter().map(|d| d.to_string()).collect::<Vec<_>>(),
                "domain": s.domain,
            },
            "profile": {
                "name": p.name,
                "installer": p.installer.as_str(),
                "kernel": p.kernel,
                "initrd": p.initrd,
                "initrd_names": initrd_names,
                "wait_ports": p.wait_ports,
            },
            "urls": {
                "base": self.urls.base,
                "boot_ipxe": self.urls.boot_ipxe(),
                "ipxe": self.urls.ipxe(&mac),
                "config": self.urls.config(&mac),
                "kernel": self.urls.file(&p.kernel),
                "initrd": p.initrd.iter().map(|i| self.urls.file(i)).collect::<Vec<_>>(),
                "nocloud": self.urls.nocloud(&mac),
                "done": self.urls.done(&mac, &run.token),
                "facts": self.urls.facts(&mac, &run.token),
                "files": format!("{}/boot", self.urls.base),
            },
            "server": {
                "address": self.urls.address.to_string(),
                "http": self.urls.base,
            },
            "run": { "id": run.id, "token": run.token },
            "vars": vars,
            "facts": run.facts.as_deref().cloned().unwrap_or_else(|| json!({})),
        })
    }

    /// The profile a run uses: its override, else the system's.
    pub fn profile_for(&self, s: &System, run: &RunCtx) -> &Profile {
        run.profile
            .as_deref()
            .and_then(|n| self.profile(n))
            .unwrap_or_else(|| self.profile_of(s))
    }

    /// Render one kind for a system. `Ok(None)` when the profile has no such template.
    pub fn render(
        &self,
        s: &System,
        kind: RenderKind,
        run: &RunCtx,
    ) -> Result<Option<String>, RenderError> {
        self.render_kinds(s, run, &[kind])
            .pop()
            .map(|(_, r)| r)
            .unwrap_or(Ok(None))
    }

    /// Render several kinds for a system with one context (built and
    /// converted once: the validation pass renders every kind of every system).
    pub fn render_kinds(
        &self,
        s: &System,
        run: &RunCtx,
        kinds: &[RenderKind],
    ) -> Vec<(RenderKind, Result<Option<String>, RenderError>)> {
        let p = self.profile_for(s, run);
        let mut ctx = self.context(s, p, run);
        let kernel_args = self.templates.render_inline(
            &format!("profile {}: kernel_args", p.name),
            &p.kernel_args,
            &minijinja::Value::from(Serde(&ctx)),
        );
        let kernel_args = match kernel_args {
            Ok(k) => k,
            Err(e) => return kinds.iter().map(|k| (*k, Err(e.clone()))).collect(),
        };
        ctx["kernel_args"] = serde_json::Value::String(kernel_args.clone());
        let value = minijinja::Value::from(Serde(&ctx));
        kinds
            .iter()
            .map(|&kind| {
                let name = match kind {
                    RenderKind::KernelArgs => return (kind, Ok(Some(kernel_args.clone()))),
                    RenderKind::Ipxe => p.ipxe_template.as_deref().unwrap_or(BUILTIN_IPXE),
                    RenderKind::Grub => BUILTIN_GRUB,
                    RenderKind::Config => match &p.template {
                        Some(t) => t,
                        None => return (kind, Ok(None)),
                    },
                    RenderKind::UserData => match &p.user_data {
                        Some(t) => t,
                        None => return (kind, Ok(None)),
                    },
                    RenderKind::MetaData => match &p.meta_data {
                        Some(t) => t,
                        None if p.user_data.is_some() => {
                            // NoCloud needs a meta-data document; default to the essentials.
                            return (
                                kind,
                                Ok(Some(format!(
                                    "instance-id: {}-{}\nlocal-hostname: {}\n",
                                    s.name, run.id, s.hostname
                                ))),
                            );
                        }
                        None => return (kind, Ok(None)),
                    },
                    RenderKind::VendorData => match &p.vendor_data {
                        Some(t) => t,
                        None => return (kind, Ok(None)),
                    },
                };
                (kind, self.templates.render(name, &value).map(Some))
            })
            .collect()
    }

    fn command_context(
        &self,
        s: &System,
        run: &RunCtx,
        extra: &[(&str, String)],
    ) -> minijinja::Value {
        let p = self.profile_for(s, run);
        let mut ctx = self.context(s, p, run);
        // Short names for the common facts: {{ ip }}, {{ hostname }}, {{ mac }}.
        ctx["ip"] = json!(s.ip.to_string());
        ctx["hostname"] = json!(s.hostname);
        ctx["mac"] = json!(s.primary_mac().to_string());
        for (k, v) in extra {
            ctx[*k] = json!(v);
        }
        minijinja::Value::from(Serde(&ctx))
    }

    /// Render a stage command with the machine's facts (and the run's).
    pub fn render_command(
        &self,
        s: &System,
        cmd: &str,
        run: &RunCtx,
        extra: &[(&str, String)],
    ) -> Result<String, RenderError> {
        let ctx = self.command_context(s, run, extra);
        self.templates.render_inline("stage command", cmd, &ctx)
    }

    /// Render every kind of one system once, with a preview run, and its
    /// profile's stage commands: what fails, one reason each (the config
    /// loader turns them into load errors).
    pub fn render_failures(&self, s: &System) -> Vec<String> {
        let mut out = Vec::new();
        let run = RunCtx::preview();
        let p = self.profile_of(s);
        for (kind, r) in self.render_kinds(s, &run, RenderKind::ALL) {
            if let Err(e) = r {
                out.push(format!(
                    "profile {:?}: {} fails to render: {e}",
                    p.name,
                    kind.as_str()
                ));
            }
        }
        let extra = [
            ("artifacts", "/tmp/artifacts".to_string()),
            ("ssh_key", "/tmp/key".to_string()),
        ];
        let cmd_ctx = (!p.stages.is_empty()).then(|| self.command_context(s, &run, &extra));
        for st in &p.stages {
            let ctx = cmd_ctx.as_ref().expect("stages present");
            if let Err(e) = self
                .templates
                .render_inline("stage command", &st.command, ctx)
            {
                out.push(format!(
                    "profile {:?}: stage {:?} command fails to render: {e}",
                    p.name, st.name
                ));
            }
        }
        out
    }
}
